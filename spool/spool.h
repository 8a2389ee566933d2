/*
 * spool.h — the SQLite store-and-forward queue between MQTT and Kafka.
 *
 * Every record the bridge accepts from MQTT is put here, durably, before the
 * MQTT broker is acknowledged, and leaves only when Kafka has confirmed it
 * (spool_ack) or it is moved to the dead-letter table (spool_dead). The file
 * format, row states and crash behaviour are described at the top of
 * spool.c. This module depends on sqlite3 and libc only: it knows nothing of
 * MQTT, Kafka or the daemon.
 *
 * Threads: one struct spool is used by one thread at a time. The bridge uses
 * one handle from its single event-loop thread for both puts and peeks.
 * (Every call also takes the handle's mutex, so a writer thread calling put
 * and a reader thread calling peek/ack may share one handle; pointers from
 * spool_peek stay valid until that thread's next peek.)
 *
 * Errors: functions return 0 or a negative errno: -ENOSPC (full under the
 * backpressure policy, or the disk is full), -EIO (an I/O error or SQLite
 * failure), -ENOMEM, -EINVAL. spool_errmsg() says more about the last one.
 */
#ifndef MQTT2KAFKA_SPOOL_H
#define MQTT2KAFKA_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct spool;

enum spool_sync {
    SPOOL_SYNC_FULL = 0, /* fsync on every commit: survives power loss */
    SPOOL_SYNC_NORMAL,   /* WAL, no fsync per commit: survives a crash */
};

enum spool_on_full {
    SPOOL_DROP_OLDEST = 0, /* make room by deleting the oldest records */
    SPOOL_BACKPRESSURE,    /* refuse new records with -ENOSPC */
};

/*
 * Lanes: separate first-in first-out queues in one spool, sharing one id
 * sequence (ids still grow in put order across lanes). Each lane is its own
 * table: a peek of one lane never reads past another's rows, so a backlog
 * in one cannot hold up another. What the lanes mean is the caller's (the
 * bridge: fast for live data, bulk for what may wait); the spool only
 * drops under drop_oldest from bulk first, then normal, then fast.
 */
enum spool_lane {
    SPOOL_LANE_NORMAL = 0, /* the default (a zeroed spool_rec) */
    SPOOL_LANE_FAST,
    SPOOL_LANE_BULK,
    SPOOL_LANES
};

/* The clocks the spool reads; NULL in spool_opts: the system's. Tests
 * inject their own to move time and to jump the wall clock. */
struct spool_clock {
    int64_t (*wall_ms)(void *ud); /* ms since the epoch; may jump */
    int64_t (*mono_ms)(void *ud); /* ms, only moves forward, never jumps */
    void *ud;
};

struct spool_opts {
    const char *path;
    int64_t max_bytes;  /* cap on the files, WAL included; 0: no cap (the
                         * filesystem's room is a cap in any case) */
    int64_t max_age_ms; /* records older than this expire; 0: never */
    enum spool_on_full on_full;
    enum spool_sync sync;
    /* The dead-letter table's own bounds (0: none): beyond them its oldest
     * rows are dropped and counted, so a route Kafka refuses for good
     * cannot fill the spool. */
    int64_t dead_max_records, dead_max_bytes, dead_max_age_ms;
    const struct spool_clock *clock;
};

/*
 * One record. For spool_put the caller fills everything but id; the spool
 * copies what it needs before returning. From spool_peek every pointer is
 * owned by the spool and valid until the next call on the same handle.
 * key, headers and payload are opaque bytes (headers is a blob the bridge
 * encodes); key may be NULL with key_len 0.
 */
struct spool_rec {
    int64_t id; /* out: the row id, > 0, never reused in one spool file */
    const char *topic;
    const void *key;
    size_t key_len;
    const void *headers;
    size_t headers_len;
    const void *payload;
    size_t payload_len;
    int64_t recv_ms; /* receive time, ms since the epoch */
    int32_t route;   /* index of the route that produced it, or -1 */
    int64_t tag;     /* opaque to the spool, stored with the row; 0: none */
    int lane;        /* enum spool_lane */
};

/* Why records left the spool without being delivered. */
enum spool_reason {
    SPOOL_DROP_FULL = 0,     /* dropped by drop_oldest to stay under the cap */
    SPOOL_DROP_EXPIRED,      /* older than max_age */
    SPOOL_DROP_DEAD_FULL,    /* dead letters beyond dead_max_records/bytes */
    SPOOL_DROP_DEAD_EXPIRED, /* dead letters older than dead_max_age */
    SPOOL_DROP__COUNT
};

struct spool_stats {
    int64_t records;   /* rows waiting (in flight included) */
    int64_t bytes;     /* payload+key+headers bytes of those rows */
    int64_t inflight;  /* handed out by peek, not yet acked or nacked */
    int64_t oldest_ms; /* recv_ms of the oldest waiting row; 0: none */
    int64_t dead;      /* rows in the dead-letter table */
    int64_t dropped[SPOOL_DROP__COUNT]; /* since the file was created */
    int64_t put_total;     /* records put since the file was created */
    int64_t acked_total;   /* records acked since the file was created */
    int64_t file_bytes;    /* database + WAL on disk */
    int recovered;         /* 1 if open found a corrupt file and set it aside */
    int64_t dead_purged;   /* dead letters deleted by spool_dead_purge */
    int64_t dead_bytes;    /* key+headers+payload bytes of the dead letters */
    int64_t oldest_age_ms; /* the oldest waiting row's age (spool clock) */
    int64_t max_bytes;     /* the cap in effect: max_bytes, or less when the
                            * filesystem could not hold that much at open */
    int64_t room_bytes;    /* what may still be put before the cap or the
                            * disk is reached (free pages included) */
    int64_t reserve_bytes; /* the disk reserve that keeps deletes possible */
    int reserve_held;      /* 0: released (the disk filled up) */
    int clock_jumps;       /* wall-clock jumps seen since open */
    int64_t bytes_written; /* bytes written to the spool's files since open
                            * (database, WAL, reserve): what SQLite hands
                            * the kernel, before page rounding */
    int64_t syncs;         /* fsyncs of the spool's files since open */
};

/*
 * Opens (creating if needed) the spool at opts->path. Checks it with
 * PRAGMA quick_check; a corrupt file is renamed to "<path>.corrupt-<time>"
 * (never deleted), a fresh spool is started and stats.recovered is set.
 * Migrates an older schema. On failure *out is NULL and err says why.
 */
int spool_open(const struct spool_opts *opts, struct spool **out, char *err,
               size_t errlen);
void spool_close(struct spool *sp); /* NULL is fine */

/* The random epoch of this spool file: 16 hex digits, NUL-terminated. The
 * pair (epoch, id) names a record uniquely and stably: see spool_id_str(). */
const char *spool_epoch(const struct spool *sp);
/* Writes "<epoch>-<id>" into buf (at least 40 bytes). */
void spool_id_str(const struct spool *sp, int64_t id, char *buf, size_t len);

/*
 * Appends n records in one transaction. Returns 0 once the batch is durable
 * as opts.sync promises, with ids written back to recs[i].id. Under
 * drop_oldest, older rows are deleted (and counted) to make room; under
 * backpressure a full spool returns -ENOSPC and stores nothing. A failure
 * stores nothing of the batch and loses nothing stored before.
 */
int spool_put(struct spool *sp, struct spool_rec *recs, size_t n);

/*
 * Ids for records that go to Kafka before (or without) being put here — the
 * bridge's direct path: n ids from *first on, never assigned by spool_put
 * or reserved again, not even after a crash (one small transaction, always
 * fsync'ed: a reused id would name two records). Puts after it take ids
 * above the block.
 */
#define SPOOL_RESERVE_MAX (1LL << 32)
int spool_reserve(struct spool *sp, int64_t n, int64_t *first);

/*
 * Puts records under ids the caller took from spool_reserve (recs[i].id,
 * increasing) in one transaction, like spool_put otherwise: whole or not
 * at all, room made under drop_oldest, -ENOSPC under backpressure. Where
 * inflight[i] is set the record is already in the producer's hands: it is
 * stored in flight, as if peeked (ack, nack, dead apply to it as usual);
 * the others are eligible at once, in id order.
 */
int spool_spill(struct spool *sp, struct spool_rec *recs, size_t n,
                const unsigned char *inflight);

/* Records waiting (in flight included), as spool_stats().records, but
 * cheap: no query, no file sizes. */
int64_t spool_backlog(struct spool *sp);
/* The highest id a record was put under: every record spooled so far has
 * an id at most this (records put later, and direct ones, have higher). */
int64_t spool_top(struct spool *sp);

/*
 * Hands out up to max records, oldest first, that are not in flight, whose
 * key+headers+payload add up to at most max_bytes (at least one record is
 * returned if any is eligible, however large). They are in flight until
 * acked, nacked or moved to dead letters. Returns how many (>= 0) or < 0;
 * a peek that fails hands out nothing and leaves nothing in flight (the
 * next peek takes the same records). recs is caller-owned, with room for
 * max entries.
 */
int spool_peek(struct spool *sp, struct spool_rec *recs, size_t max,
               size_t max_bytes);
/* The same for one lane only (spool_peek takes fast, then normal, then
 * bulk). recs[i].lane is set. */
/* The id lane's next peek would hand out first (records in flight are
 * not waiting); 0: none waits; < 0: an error. */
int64_t spool_lane_next(struct spool *sp, int lane);
int spool_peek_lane(struct spool *sp, int lane, struct spool_rec *recs,
                    size_t max, size_t max_bytes);

/* Deletes delivered records. ids in any order; ranges are cheap. */
int spool_ack(struct spool *sp, const int64_t *ids, size_t n);
/* Makes in-flight records eligible again; they are handed out again in id
 * order before any record newer than them. */
int spool_nack(struct spool *sp, const int64_t *ids, size_t n);
/* Every in-flight record becomes eligible again (after an uplink loss). */
void spool_rewind(struct spool *sp);

/* Moves one record to the dead-letter table with a reason. */
int spool_dead(struct spool *sp, int64_t id, const char *reason);

/* Dead letters: list (newest first, up to max; strings valid until the next
 * call), move all back to the queue (replay), or delete them (purge). */
struct spool_dead_rec {
    int64_t id;
    const char *topic;
    const char *reason;
    int64_t recv_ms;
    int64_t dead_ms;
    size_t payload_len;
};
int spool_dead_list(struct spool *sp, struct spool_dead_rec *out, size_t max);
int spool_dead_replay(struct spool *sp); /* returns how many, or < 0 */
int spool_dead_purge(struct spool *sp);  /* returns how many, or < 0 */

/* Deletes records older than max_age, and dead letters older than
 * dead_max_age (counted as expired), at most SPOOL_EXPIRE_MAX rows per
 * call (and no more bytes than one delete transaction holds), so a long
 * outage or a clock jump never stalls the caller: call again while it
 * returns more than 0. Ages are measured on the spool
 * clock (spool.c, "TIME"), which a wall-clock jump does not move. Cheap
 * when there is nothing to do. Returns how many, or < 0. */
#define SPOOL_EXPIRE_MAX 5000
int spool_expire(struct spool *sp);

/* 1 if one spool_put() can hold these records (its limit under the cap's
 * WAL budget), 0 if they must be split or refused. */
int spool_fits(struct spool *sp, const struct spool_rec *recs, size_t n);
/* The record size (key+headers+payload+topic) one put holds at least, alone:
 * a record this large or smaller always fits. SIZE_MAX without a cap. */
size_t spool_max_record(struct spool *sp);

int spool_stats(struct spool *sp, struct spool_stats *st);

/* A short name for a drop reason ("full", "expired", "dead_full",
 * "dead_expired"), for logs and metrics. */
const char *spool_reason_name(enum spool_reason r);

/* The newest rows that carry a tag, newest first: up to max (id, tag)
 * pairs. Returns how many. */
int spool_recent(struct spool *sp, int64_t *ids, int64_t *tags, size_t max);

/* 1 when a put would be refused under backpressure right now. */
int spool_full(struct spool *sp);
/* Bytes of records (key+headers+payload+topic) that still fit under the
 * cap in effect now, free pages included, before drop_oldest would have to
 * drop or backpressure refuse. */
int64_t spool_room(struct spool *sp);

const char *spool_errmsg(const struct spool *sp);

/*
 * Large records (spool_big.c): a payload too large for one put, stored
 * once, in parts of part_bytes, each spool_big_write() its own
 * transaction, into a record that stays invisible until spool_big_commit()
 * (a crash before leaves nothing: open removes the half-written record).
 * The parts are read back one at a time with incremental blob I/O, so
 * neither side ever holds the whole payload. Large records are a queue of
 * their own (the fat lane), first in first out, one handed out at a time;
 * they share the id sequence, the cap, drop_oldest (after bulk, before
 * normal), expiry, stats and the dead letters with the lanes.
 */
#define SPOOL_BIG_PARTS_MAX 65536
struct spool_big { /* from spool_big_peek: pointers valid until the next
                    * spool_big_* call on the handle */
    int64_t id;
    const char *topic;
    const void *key; /* NULL: none */
    size_t key_len;
    const void *headers;
    size_t headers_len;
    int64_t len;       /* payload bytes */
    size_t part_bytes; /* every part but the last holds this many */
    uint32_t parts;
    const void *digest; /* what spool_big_commit() was given */
    size_t digest_len;
    int64_t recv_ms;
    int32_t route;
};

/* Starts a large record: r's topic, key, headers, recv_ms, route, tag and
 * lane are kept; r->payload_len is its whole size (r->payload is not
 * read). *id: its id from the shared sequence. -EFBIG when it could never
 * fit under the cap in effect (spool_big_max), -EINVAL. */
int spool_big_begin(struct spool *sp, const struct spool_rec *r,
                    size_t part_bytes, int64_t *id);
/* Writes the parts from part `first` on: n bytes of data, whole parts (the
 * record's last part may be short), in one transaction of at most
 * spool_max_record() bytes. Room is made as for a put (drop_oldest; under
 * backpressure -ENOSPC). */
int spool_big_write(struct spool *sp, int64_t id, uint32_t first,
                    const void *data, size_t n);
/* Every part written: the record becomes visible, with its digest
 * (opaque, at most 64 bytes), durable (fsync'ed whatever opts.sync says:
 * its id may reach Kafka at once). -EINVAL when parts are missing. */
int spool_big_commit(struct spool *sp, int64_t id, const void *digest,
                     size_t len);
/* Gives up a record not yet committed: what was written is deleted. */
int spool_big_abort(struct spool *sp, int64_t id);
/* The most bytes of parts of part_bytes one spool_big_write() takes: a
 * multiple of part_bytes, at least one part (0 if not even one fits). */
size_t spool_big_slice(struct spool *sp, size_t part_bytes);
/* The largest payload spool_big_begin() takes now (a half of the cap). */
int64_t spool_big_max(struct spool *sp);
/* Committed large records waiting (in flight included); cheap. */
int64_t spool_big_backlog(struct spool *sp);
/* The oldest waiting large record: 1 (out filled), 0 (none), < 0. Taking
 * it protects nothing: drop_oldest and expiry may take it (a read then
 * says -ENOENT) unless it is held. */
int spool_big_peek(struct spool *sp, struct spool_big *out);
/* Holds record id (0: none): drop_oldest and expiry leave it alone, as
 * they do the lanes' records in flight, until it is acked or dead or
 * another one (or none) is held. The caller holds it only while chunks of
 * it are in Kafka's hands, so a record Kafka cannot take for now is
 * dropped and expires like any other. One at a time. */
void spool_big_hold(struct spool *sp, int64_t id);
/* Reads part `part` of record id into buf (cap: at least part_bytes);
 * *len its size. -ENOENT: the record is gone (dropped, expired). */
int spool_big_read(struct spool *sp, int64_t id, uint32_t part, void *buf,
                   size_t cap, size_t *len);
/* Delivered: deleted, counted as acked. */
int spool_big_ack(struct spool *sp, int64_t id);
/* Refused for good: moved to the dead-letter table with reason (listed,
 * bounded, purged like the others; a replay queues it again under the
 * same id). */
int spool_big_dead(struct spool *sp, int64_t id, const char *reason);

/*
 * Small named values the caller keeps across restarts (spool_kv.c): a
 * key (1..SPOOL_KV_KEY_MAX bytes of text) → opaque bytes (at most
 * SPOOL_KV_MAX). Each call is its own transaction, durable as opts.sync
 * says. They count against the spool's cap like anything else (-ENOSPC
 * when it is reached). The spool does not look inside them.
 */
#define SPOOL_KV_KEY_MAX 512
#define SPOOL_KV_MAX     (1u << 20)
int spool_kv_put(struct spool *sp, const char *key, const void *v, size_t len);
/* n values in one transaction (one commit, one fsync): all or none. */
struct spool_kv {
    const char *key;
    const void *v;
    size_t len;
};
int spool_kv_put_n(struct spool *sp, const struct spool_kv *kv, size_t n);
/* Copies key's value into buf (at most cap bytes; *len gets its size).
 * 0; -ENOENT no such key; -ENOSPC cap too small. */
int spool_kv_get(struct spool *sp, const char *key, void *buf, size_t cap,
                 size_t *len);
int spool_kv_del(struct spool *sp, const char *key); /* 0 even if absent */
/* Calls fn for every key that starts with prefix, in key order (the
 * pointers live until fn returns); a non-zero return from fn stops it and
 * is returned. */
typedef int (*spool_kv_fn)(void *ud, const char *key, const void *v,
                           size_t len);
int spool_kv_list(struct spool *sp, const char *prefix, spool_kv_fn fn,
                  void *ud);

#endif
