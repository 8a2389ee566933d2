/*
 * spool_int.h — what the spool's own files share; nothing outside spool/
 * includes it. The format, row states and crash behaviour are specified at
 * the top of spool.c; this header only holds the handle, the prepared
 * statements and the transaction helpers (spool_txn.c) they all use.
 *
 * Every function here expects the handle's mutex held, except where said.
 */
#ifndef MQTT2KAFKA_SPOOL_INT_H
#define MQTT2KAFKA_SPOOL_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/idset.h"
#include "spool/spool.h"

#define SPOOL_SCHEMA  7
#define PAGE          4096
#define FRAME         (PAGE + 24)  /* a WAL frame: header + page */
#define ROW_OVERHEAD  40           /* record header + small columns, bytes */
#define MIN_BYTES     (1 << 20)    /* smallest max_bytes accepted */
#define INFLIGHT_MAX  (1 << 20)    /* cap on records in flight */
#define ARENA_MAX     (256u << 20) /* cap on one peek's copied bytes */
#define ACK_MAX       (1 << 20)    /* cap on ids in one ack/nack call */
#define CLOCK_JUMP_MS 2000  /* a wall-clock step larger than this is a jump */
#define SEG_MAX       4096  /* clock segments kept in memory */
#define TAGS_KEEP     8192  /* ids back whose tags outlive their ack */
#define ID_BLOCK      65536 /* ids a raised ceiling allows (sync NORMAL) */
/* The dead-letter table's lane for a large record (spool_big.c): its row
 * there holds no payload, the big table keeps it (schema 7). */
#define SP_LANE_BIG SPOOL_LANES

/* Statements on one lane's table (lane_sql, made per lane at setup). */
enum {
    L_INSERT,
    L_PEEK,
    L_PEEK_ONE,
    L_SUM,
    L_DEL,
    L_SCAN,
    L_KEEP_TAGS,
    L__COUNT
};
extern const char *const lane_sql[L__COUNT];
/* lane_sql[which] for lane's table, into buf. */
void sp_lane_sql(char *buf, size_t len, int which, int lane);
/* The table of each lane: rec (normal, as before lanes), rec_fast,
 * rec_bulk. */
extern const char *const sp_lane_table[SPOOL_LANES];

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_STATE,
    S_PAGES,
    S_FREE,
    S_RECENT,
    S_PRUNE_TAGS,
    S_CEILING,
    S__COUNT
};

/* The text of each prepared statement (spool_txn.c), for setup and errors. */
extern const char *const sp_sql[S__COUNT];

/* Counters kept in memory and written to the state row; c is the working
 * copy inside a transaction, saved the committed one. */
struct counters {
    int64_t last_id, put_total, acked_total, purged, rows, bytes, dead;
    int64_t dead_bytes; /* not in the state row: summed from dead at open */
    int64_t big;        /* of rows: large ones (not in the state row) */
    int64_t dropped[SPOOL_DROP__COUNT];
};

/* The handle's own VFS (spool_vfs.c): the system's, counting writes. */
struct spool_vfs {
    sqlite3_vfs vfs;   /* registered under name while real is set */
    sqlite3_vfs *real; /* the VFS underneath; NULL: not registered */
    char name[40];
    int64_t written; /* bytes written to the spool's files since open */
    int64_t syncs;   /* fsyncs of them since open */
};

/* A clock segment: rows from id on were put when the spool clock read
 * recv_ms + off (see "TIME" in spool.c). */
struct seg {
    int64_t id, off;
};

/* A lane's place in memory: what peek handed out (see ROW STATES). */
struct sp_lane {
    struct idset inflight; /* ids handed out by peek */
    int64_t hi;            /* highest id handed out since the last rewind */
    int64_t *nacked;       /* sorted eligible ids below hi */
    size_t nnacked, nacked_head, nacked_cap;
};

struct spool {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    sqlite3_stmt *lst[SPOOL_LANES][L__COUNT];
    struct sp_lane lane[SPOOL_LANES];
    struct spool_opts o;
    char *path;
    char epoch[17];
    struct counters c, saved;
    int state_dirty;     /* this transaction deleted rows: write state */
    int sync_now;        /* -1 unknown, else the synchronous level set */
    int64_t max_pages;   /* the cap on the database file, in pages */
    int64_t batch_pages; /* most pages one put may need (WAL half) */
    /* the disk (spool_disk.c) */
    int64_t max_bytes;      /* the cap in effect on database + WAL */
    int64_t wal_budget;     /* bytes the WAL may take */
    int64_t del_chunk;      /* bytes of rows one delete transaction takes */
    int64_t slack;          /* bytes of the filesystem left to others */
    int64_t reserve_bytes;  /* the reserve file's size */
    int reserve_held;       /* the reserve file exists at full size */
    char *reserve_path;     /* <path>-reserve */
    int64_t reserve_try_ms; /* monotonic: when to try to restore it */
    /* the spool clock (spool_clock.c) */
    int64_t clk_base, mono_base; /* clock = clk_base + mono - mono_base */
    int64_t last_wall, last_mono;
    struct seg *segs;
    size_t nseg;
    struct seg seg_pending; /* written by the open put; id 0: none */
    int jumps;
    int64_t top;     /* the highest id a row was put under */
    int64_t ceiling; /* durable: no id above it was handed out */
    int64_t *scratch;
    size_t scratch_cap;
    uint64_t *bits; /* sorting acked ids: a bit per id of their span */
    size_t bits_cap;
    int ack_counted; /* an ack counted rows the in-flight sizes did not
                      * know: acks read the sizes from the rows since */
    unsigned char *arena, *dead_arena;
    size_t arena_cap, dead_arena_cap;
    /* large records (spool_big.c) */
    int64_t big_out; /* the one held (spool_big_hold); 0: none */
    unsigned char *big_arena;
    size_t big_arena_cap;
    int recovered;
    struct spool_vfs vfs;
    char err[512];
};

/* Records the reason for the last failure; returns rc. */
int sp_fail(struct spool *sp, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a SQLite failure to a negative errno and remembers why. */
int sp_sqerr(struct spool *sp, int rc, const char *what);
int64_t sp_now_ms(void); /* wall clock, ms since the epoch */

/* Steps prepared statement `which` once; 0 or a negative errno. */
int sp_run(struct spool *sp, int which);
/* The first column of prepared statement `which` (a PRAGMA); -1 on error. */
int64_t sp_pragma_int(struct spool *sp, int which);
/* PRAGMA synchronous=FULL (1) or NORMAL (0), when not already so. */
int sp_set_sync(struct spool *sp, int full);
/* A write transaction: sp->c starts as sp->saved; commit writes the state
 * row if rows were deleted (sp->state_dirty) and makes sp->c the saved
 * counters; rollback restores them. */
int sp_begin(struct spool *sp);
int sp_commit(struct spool *sp);
void sp_rollback(struct spool *sp);
/* Deletes lane's rows [lo, hi] (every lane's: lane -1) inside the open
 * transaction; *rows says how many. */
int sp_del_range(struct spool *sp, int lane, int64_t lo, int64_t hi,
                 int64_t *rows);
/* Deletes lane's rows [lo, hi], which are rows records whose sizes add up
 * to bytes: -ESTALE (nothing counted) if the table held another number. */
int sp_del_known(struct spool *sp, int lane, int64_t lo, int64_t hi,
                 int64_t rows, int64_t bytes);
/* In lane's table: the last id of the oldest prefix after `from` covering
 * want_bytes, or of rows older than older_ms, at most max_rows rows (see
 * spool_txn.c). */
int sp_scan_prefix(struct spool *sp, int lane, int64_t from, int64_t want_bytes,
                   int64_t older_ms, int64_t max_rows, int64_t *cut,
                   int64_t *n);
/* The lane whose in-flight set holds id, or -1. */
int sp_lane_of(const struct spool *sp, int64_t id);
/* spool_ack.c, with the handle's mutex held: nacks ids (back to their
 * lanes' nacked lists); forgets everything in flight. */
int sp_nack_locked(struct spool *sp, const int64_t *ids, size_t n);
void sp_rewind_locked(struct spool *sp);
/* Grows a copy arena to hold need bytes, up to ARENA_MAX; 0 or -ENOMEM. */
int sp_arena_fit(unsigned char **a, size_t *cap, size_t need);
int64_t sp_file_size(const char *path, const char *suffix);

/* Inside a put's transaction: makes need pages fit under the cap
 * (drop_oldest drops, backpressure refuses), as a put does (spool.c). */
int sp_make_room(struct spool *sp, int64_t need);
/* Inside a transaction: drops the dead letters beyond their bounds. */
int sp_dead_bound(struct spool *sp);

/* Large records (spool_big.c). At open, after the statements: removes
 * what a crash left half written, counts the waiting ones. Inside a put's
 * transaction under drop_oldest: drops the oldest waiting large record not
 * in flight, counted (*rows: 1), or none (*rows: 0). Expiry: deletes the
 * waiting ones older than cutoff on the spool clock (at most max);
 * returns how many, or < 0. */
int sp_big_open(struct spool *sp);
int sp_big_drop(struct spool *sp, int64_t *rows);
int sp_big_expire(struct spool *sp, int64_t cutoff, int64_t max);

/* Dead letters older than max age (on the spool clock now), at most max:
 * deleted and counted (spool_dead.c). Returns how many, or < 0. */
int sp_dead_expire(struct spool *sp, int64_t now, int64_t max);

/* The disk (spool_disk.c). sp_disk_plan() sets the cap in effect, the WAL
 * budget, the reserve's size and the page limits from opts.max_bytes and
 * what the filesystem can hold, before the PRAGMAs are set. -ENOSPC with
 * why when the filesystem cannot hold even MIN_BYTES. */
int sp_disk_plan(struct spool *sp);
/* The database's page cap right now: the configured one, or less when the
 * filesystem has less room (leaving the slack, the WAL's growth and the
 * reserve). page_count: the file's current size in pages. */
int64_t sp_cap_pages(struct spool *sp, int64_t page_count);
/* Makes the reserve file when it is missing and the disk has room for it
 * (tried at most once a second). */
void sp_reserve_restore(struct spool *sp);
/* The disk filled up: removes the reserve so deletes can proceed. 1 if
 * there was one to remove. */
int sp_reserve_release(struct spool *sp);

/* Registers the handle's counting VFS (once; again after unregister).
 * A SQLite code. */
int sp_vfs_register(struct spool_vfs *v);
/* After the last connection that used it is closed. */
void sp_vfs_unregister(struct spool_vfs *v);

/* The spool clock (spool_clock.c): ms that only advance with time passing;
 * a wall-clock jump does not move it. */
int64_t sp_wall(struct spool *sp);
int64_t sp_clock(struct spool *sp);
/* At open: the clock from the state row (and the time the spool was shut
 * down, when the wall clock did not go back since), the segments. */
int sp_clock_load(struct spool *sp, int64_t clock_ms, int64_t clock_wall_ms);
/* In a put's transaction: a new segment when the wall clock jumped since
 * the last one (from id first_id on). sp_clock_commit() after the commit. */
int sp_clock_note(struct spool *sp, int64_t first_id);
void sp_clock_commit(struct spool *sp, int ok);
/* The spool-clock time at which row id (received at recv_ms) was put. */
int64_t sp_row_time(const struct spool *sp, int64_t id, int64_t recv_ms);

#endif
