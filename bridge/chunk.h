/*
 * chunk.h — pure: a large payload as ordered chunk records, and the
 * headers a consumer needs to put it together again (README, "What lands
 * in Kafka"; mqtt2kafka(1), reassemble).
 *
 * A payload of size bytes cut into chunks of chunk_bytes becomes
 * chunk_count() records, in order, on one partition; every one carries
 * the message's own headers and:
 *
 *   m2k.id      the message's id (the same in every chunk, and in every
 *               copy a crash or a retry sends again)
 *   m2k.chunk   the chunk's index, 0-based, decimal
 *   m2k.chunks  how many chunks, decimal
 *   m2k.size    the whole payload's size in bytes, decimal
 *   m2k.sha256  the whole payload's SHA-256, 64 lowercase hex digits
 *
 * Chunk i holds bytes [i * L, i * L + its length) of the payload, L being
 * the length of every chunk but the last; the last holds the rest. The
 * names are reserved: a device's MQTT 5 property cannot forge them
 * (record.h). A chunk_set puts one payload's chunks in their places and
 * says what is missing. libc only: no I/O, no hashing.
 */
#ifndef MQTT2KAFKA_CHUNK_H
#define MQTT2KAFKA_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#define CHUNK_HDR_ID     "m2k.id"
#define CHUNK_HDR_INDEX  "m2k.chunk"
#define CHUNK_HDR_COUNT  "m2k.chunks"
#define CHUNK_HDR_SIZE   "m2k.size"
#define CHUNK_HDR_SHA256 "m2k.sha256"
#define CHUNK_SHA256_LEN 32
#define CHUNK_ID_MAX     63    /* bytes of an m2k.id we accept */
#define CHUNK_COUNT_MAX  65536 /* chunks of one payload */

/* How many chunks a payload of size bytes (> 0) makes; 0 if chunk_bytes
 * is 0 or more than CHUNK_COUNT_MAX would be needed. */
uint32_t chunk_count(int64_t size, size_t chunk_bytes);

/* The most payload bytes per chunk a byte window of win_bytes in flight
 * allows: a quarter of it (the fat lane's share) less CHUNK_HDRS_ROOM for
 * the key and headers, at least CHUNK_MIN_BYTES (which still cuts the
 * largest payload, 256 MiB, into at most CHUNK_COUNT_MAX chunks). */
#define CHUNK_HDRS_ROOM 2048
#define CHUNK_MIN_BYTES 4096
size_t chunk_window_limit(int64_t win_bytes);

/* The header values of chunk index of count, as text. */
struct chunk_text {
    char index[12], count[12], size[24], sha256[2 * CHUNK_SHA256_LEN + 1];
};
void chunk_text(struct chunk_text *t, uint32_t index, uint32_t count,
                int64_t size, const unsigned char sha256[CHUNK_SHA256_LEN]);

/* One header of a record read back (name NUL-terminated; value not). */
struct chunk_kv {
    const char *name;
    const void *value;
    size_t len;
};

struct chunk_meta { /* a chunk's headers, parsed */
    char id[CHUNK_ID_MAX + 1];
    uint32_t index, count;
    int64_t size;
    unsigned char sha256[CHUNK_SHA256_LEN];
};

/* 1: a chunk (m is filled); 0: not a chunk (no m2k.chunk header); -EINVAL:
 * a chunk whose headers are missing or malformed (why says which). The
 * last value of a header given twice counts. */
int chunk_parse(const struct chunk_kv *h, size_t n, struct chunk_meta *m,
                char *why, size_t whylen);

/* One payload being put together. */
struct chunk_set {
    struct chunk_meta m; /* of the first chunk seen */
    size_t part;         /* the length of every chunk but the last; 0 unknown */
    size_t last_len;     /* the last chunk's; 0 unknown */
    uint32_t got;        /* distinct chunks placed */
    int64_t dups;        /* chunks seen again */
    unsigned char *seen; /* a bit per chunk */
};

/* Starts a set from its first chunk's meta. 0 or -ENOMEM. */
int chunk_set_init(struct chunk_set *s, const struct chunk_meta *m);
void chunk_set_fini(struct chunk_set *s);
/* Places a chunk of len bytes: 1 new (*offset: where its bytes go), 0 a
 * copy of one placed before (the at-least-once repeat: skip it), -EINVAL
 * when it cannot belong to this payload (count, size or checksum differ,
 * or its length or place does not fit): why says how. */
int chunk_set_add(struct chunk_set *s, const struct chunk_meta *m, size_t len,
                  int64_t *offset, char *why, size_t whylen);
/* 1 when every chunk is placed. */
int chunk_set_complete(const struct chunk_set *s);
/* The indexes still missing, in order: up to max of them into out; returns
 * how many are missing in all. */
uint32_t chunk_set_missing(const struct chunk_set *s, uint32_t *out,
                           size_t max);

#endif
