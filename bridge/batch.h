/*
 * batch.h — pure: the burst of records read from MQTT and waiting for
 * their group commit, copied into one buffer.
 *
 * Records refer to their bytes by offset, never by pointer, so the buffer
 * may move when it grows; batch_get() makes pointers only when they are
 * used, valid until the next batch_add() or batch_clear(). The buffer has
 * a hard cap, and shrinks back to its base size when cleared after a
 * large burst.
 *
 * The batch also keeps the MQTT messages the records came from, in order
 * (batch_end_msg): a message owns the records added since the one before
 * (none for a broker redelivery that is only acknowledged), so the owner
 * can commit whole messages only and count each one once, on success.
 * libc only.
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

struct batch_msg {   /* one MQTT message of the burst */
    size_t first, n; /* its records: ents[first .. first + n) */
    int qos;
    int fate;       /* the owner's: stored, dead-lettered, redelivered, ... */
    int kind;       /* the owner's: why it was dead-lettered */
    int64_t tag;    /* the owner's: redelivery tag */
    unsigned notes; /* the owner's: what else to count when it is stored */
    int route;      /* the owner's: the route it matched, or -1 */
};

struct batch {
    struct batch_ent *ents;
    size_t n, max; /* records held; cap on records */
    struct batch_msg *msgs;
    size_t nmsgs, max_msgs;
    unsigned char *buf; /* their bytes */
    size_t used, cap;   /* bytes held; allocated */
    size_t base, limit; /* initial size; hard cap on bytes */
    int failed;         /* the owner's flag: a message could not be held */
};

/* max records (and messages), base bytes allocated at once, at most limit
 * bytes. 0 or -ENOMEM. */
int batch_init(struct batch *b, size_t max, size_t base, size_t limit);
void batch_fini(struct batch *b);

/* Copies r in. 0; -ENOSPC when max records or limit bytes would be passed
 * (nothing is added); -ENOMEM. */
int batch_add(struct batch *b, const struct batch_rec *r);
/* Record i, pointers into the buffer. */
void batch_get(const struct batch *b, size_t i, struct batch_rec *out);
/* Bytes record r would take in the buffer. */
size_t batch_size_of(const struct batch_rec *r);

/* Ends the current message: the records added since the last one are its
 * (m->first and m->n are set here). 0, or -ENOSPC when max messages are
 * held. */
int batch_end_msg(struct batch *b, const struct batch_msg *m);
/* Records not yet owned by a message (the one being converted). */
size_t batch_open_records(const struct batch *b);

/* The longest run of whole messages from message `from` whose records fit
 * together (fits(ud, first, n) says whether records first..first+n do),
 * but at least one message: returns the message index after the run. */
typedef int (*batch_fits_fn)(void *ud, size_t first, size_t n);
size_t batch_part(const struct batch *b, size_t from, batch_fits_fn fits,
                  void *ud);

/* A point to go back to: everything added after it is dropped. */
struct batch_mark {
    size_t n, used, nmsgs;
};
struct batch_mark batch_mark(const struct batch *b);
void batch_rewind(struct batch *b, struct batch_mark m);
/* Empties the batch (records, messages, the failed flag); a buffer grown
 * past base goes back to base. */
void batch_clear(struct batch *b);

#endif
