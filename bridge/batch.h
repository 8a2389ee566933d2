/*
 * batch.h — pure: the burst of records read from MQTT and waiting for
 * their group commit, copied into one buffer.
 *
 * Records refer to their bytes by offset, never by pointer, so the buffer
 * may move when it grows; batch_get() makes pointers only when they are
 * used, valid until the next batch_add() or batch_clear(). The buffer has
 * a hard cap, and shrinks back to its base size when cleared after a
 * large burst. libc only.
 */
#ifndef MQTT2KAFKA_BATCH_H
#define MQTT2KAFKA_BATCH_H

#include <stddef.h>
#include <stdint.h>

struct batch_rec {     /* in: borrowed for the call; out: see batch_get */
    const char *topic; /* NUL-terminated */
    const void *key;   /* NULL: no key */
    size_t key_len;
    const void *headers;
    size_t headers_len;
    const void *value;
    size_t len;
    int64_t recv_ms;
    int32_t route;
    int64_t tag;
};

struct batch_ent; /* a held record: offsets into buf */

struct batch {
    struct batch_ent *ents;
    size_t n, max;      /* records held; cap on records */
    unsigned char *buf; /* their bytes */
    size_t used, cap;   /* bytes held; allocated */
    size_t base, limit; /* initial size; hard cap on bytes */
    int failed;         /* the owner's flag: a message could not be held */
};

/* max records, base bytes allocated at once, at most limit bytes. 0 or
 * -ENOMEM. */
int batch_init(struct batch *b, size_t max, size_t base, size_t limit);
void batch_fini(struct batch *b);

/* Copies r in. 0; -ENOSPC when max records or limit bytes would be passed
 * (nothing is added); -ENOMEM. */
int batch_add(struct batch *b, const struct batch_rec *r);
/* Record i, pointers into the buffer. */
void batch_get(const struct batch *b, size_t i, struct batch_rec *out);
/* Bytes record r would take in the buffer. */
size_t batch_size_of(const struct batch_rec *r);

/* A point to go back to: everything added after it is dropped. */
struct batch_mark {
    size_t n, used;
};
struct batch_mark batch_mark(const struct batch *b);
void batch_rewind(struct batch *b, struct batch_mark m);
/* Empties the batch (and its failed flag); a buffer grown past base goes
 * back to base. */
void batch_clear(struct batch *b);

#endif
