/*
 * spool.c — the SQLite store-and-forward queue between MQTT and Kafka.
 *
 * Depends on sqlite3 and libc only; it knows nothing of MQTT, Kafka or the
 * daemon. Everything below is the specification; the code follows it.
 *
 * THE FILE
 *
 * One SQLite database in WAL mode, page size 4096, user_version 1:
 *
 *   state(one=1, epoch, created_ms, last_id, put_total, acked_total,
 *         dropped_full, dropped_expired, dead_purged, rows, bytes)
 *   rec(id INTEGER PRIMARY KEY, recv_ms, route, size, topic, key, headers,
 *       payload, tag)
 *   dead(id INTEGER PRIMARY KEY, recv_ms, route, size, topic, key, headers,
 *        payload, reason, dead_ms)
 *
 * rec is the queue, ordered by id. The small columns come first so that a
 * scan of (id, recv_ms, size) never reads a payload's overflow pages. size
 * is key+headers+payload bytes. tag is the caller's (NULL when 0): the
 * bridge keeps the MQTT packet id and a payload hash there, to recognise a
 * broker's redelivery of a committed message after a crash. An ack keeps
 * the tags of rows among the newest TAGS_KEEP ids in tags(id, tag), pruned
 * in the same transaction (schema 2), so spool_recent() still sees them. epoch
 * is 16 random hex digits made with the file; (epoch, id) names a record for
 * consumers' deduplication.
 *
 * IDS ARE NEVER REUSED. Ids are assigned by this module, not by SQLite's
 * rowid (which hands out max(rowid)+1 again after the newest rows are
 * deleted). The invariant that makes that cheap: every transaction that
 * deletes rows from rec writes the state row with last_id = the highest id
 * assigned so far, and rows/bytes/put_total as of that commit. A put only
 * inserts and does not touch the state row (one page less per commit, which
 * is flash wear). So on open: next id = max(state.last_id, max(rec.id)) + 1,
 * and the rows with id > state.last_id — all put after the last state write,
 * none of them deleted since — are added to the counters by one range scan.
 *
 * ROW STATES
 *
 *   (absent) --put--> queued --peek--> in flight --ack--> (deleted)
 *                        ^                 |
 *                        +---nack/rewind---+--dead--> dead letter
 *   queued --drop_oldest / max_age--> (deleted, counted by reason); rows in
 *     flight are never dropped or expired: they may yet be delivered
 *   dead letter --replay--> queued under a NEW id (a new attempt: newest)
 *   dead letter --purge--> (deleted, counted as dead_purged)
 *
 * "In flight" is memory only (a hash set of ids plus the highest id handed
 * out since the last rewind, and a sorted list of nacked ids below it). A
 * restart therefore makes every stored row eligible again, in id order: the
 * at-least-once duplicates that consumers drop by (epoch, id).
 *
 * WHAT A CRASH LEAVES BEHIND
 *
 *   - during a put, before COMMIT: nothing of the batch (the WAL frames
 *     without a commit frame are ignored on recovery); the caller was not
 *     told it was durable, so the broker was not acknowledged.
 *   - after COMMIT returned: the whole batch. With sync FULL the WAL was
 *     fsync'ed before spool_put returned, so this holds through power loss.
 *     With sync NORMAL the WAL is in the OS page cache: a killed process
 *     (SIGKILL, abort, OOM) loses nothing, but a power cut may lose the last
 *     commits before the next checkpoint — never corrupting the file, only
 *     rolling it back to an earlier commit. That is the one thing the crash
 *     test (SIGKILL) cannot show.
 *   - during an ack: either the rows are still there (resent: a duplicate)
 *     or gone. Acks, dead-letter moves and expiry commit with
 *     synchronous=NORMAL even under sync FULL: losing one to a power cut
 *     only causes a duplicate, and the next put's fsync of the same WAL
 *     makes it durable anyway.
 *   - during a drop/expire/dead/replay/purge: all or nothing, with the
 *     counters in the same transaction, so counts match what is gone.
 *   - during a checkpoint: SQLite's WAL protocol; the WAL is replayed.
 *
 * PRAGMAS AND WHY
 *
 *   locking_mode=EXCLUSIVE  one process owns the spool; a second open fails
 *                           with "in use". It also keeps the WAL index in
 *                           heap memory: no -shm file, whose mmap'ed pages
 *                           the kernel would otherwise write back to flash.
 *   journal_mode=WAL        appends instead of journal+db rewrites; readers
 *                           never block the writer.
 *   synchronous             FULL (fsync each put commit) or NORMAL (fsync
 *                           only at checkpoints), per opts.sync.
 *   secure_delete=OFF       Debian builds SQLite with it on: zeroing every
 *                           freed cell would double the bytes written.
 *   max_page_count          the hard cap on the database file: max_bytes
 *                           minus the WAL budget. SQLite then refuses to
 *                           grow past it (SQLITE_FULL) whatever happens.
 *   wal_autocheckpoint,     the WAL is checkpointed at half its budget and
 *   journal_size_limit      truncated back to the budget after a reset; a
 *                           put is at most the other half, so database +
 *                           WAL stay under max_bytes.
 *   auto_vacuum=NONE        freed pages go to the freelist and are reused
 *                           by the next puts; the file never shrinks and
 *                           never grows while free pages exist.
 *   temp_store=MEMORY       no temp files on flash.
 *
 * SIZE CAP. Before each put the needed pages are estimated; if the used
 * pages (page_count - freelist_count) plus those exceed max_page_count,
 * drop_oldest deletes the oldest rows not yet handed out by peek (rows in
 * flight to Kafka may still be delivered: they are not "dropped") in one
 * range delete, freeing the
 * shortfall plus 1/32 of the cap so that the next puts are plain inserts;
 * backpressure refuses the put. If SQLite still hits the cap (the estimate
 * was short), the put is rolled back and retried with a bigger room.
 *
 * STARTUP. PRAGMA quick_check; SQLITE_CORRUPT/NOTADB or a failed check ->
 * the file (and its WAL) are renamed to "<path>.corrupt-<time>" (never
 * deleted), a fresh spool is made, stats.recovered is set and the event
 * is written to stderr and kept in spool_errmsg(). user_version older than
 * SPOOL_SCHEMA is migrated step by step; newer is refused.
 *
 * THREADS. Every public call takes the handle's mutex, so one writer thread
 * (put) and one reader thread (peek/ack) may share one handle; or one
 * thread may do both, as the bridge does. One handle per file: the
 * in-flight set lives in the handle, and EXCLUSIVE locking refuses a
 * second connection. SQLite allows one writer at a time anyway, so a
 * second handle would only add lock waits.
 */
#include "spool/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_SCHEMA 2
#define PAGE         4096
#define FRAME        (PAGE + 24)  /* a WAL frame: header + page */
#define ROW_OVERHEAD 40           /* record header + small columns, bytes */
#define MIN_BYTES    (1 << 20)    /* smallest max_bytes accepted */
#define INFLIGHT_MAX (1 << 20)    /* cap on records in flight */
#define ARENA_MAX    (256u << 20) /* cap on one peek's copied bytes */
#define ACK_MAX      (1 << 20)    /* cap on ids in one ack/nack call */
#define EXPIRE_CHUNK 50000        /* rows per expiry transaction */
#define TAGS_KEEP    8192         /* ids back whose tags outlive their ack */

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_INSERT,
    S_PEEK,
    S_PEEK_ONE,
    S_SUM,
    S_DEL,
    S_SCAN,
    S_STATE,
    S_PAGES,
    S_FREE,
    S_SYNC_FULL,
    S_SYNC_NORMAL,
    S_RECENT,
    S_KEEP_TAGS,
    S_PRUNE_TAGS,
    S__COUNT
};

static const char *const sql_text[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT] = "INSERT INTO rec(id,recv_ms,route,size,topic,key,headers,"
                 "payload,tag) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    [S_PEEK] = "SELECT id,recv_ms,route,topic,key,headers,payload FROM rec"
               " WHERE id>?1 ORDER BY id",
    [S_PEEK_ONE] = "SELECT id,recv_ms,route,topic,key,headers,payload FROM"
                   " rec WHERE id=?1",
    [S_SUM] = "SELECT count(*),total(size) FROM rec WHERE id BETWEEN ?1"
              " AND ?2",
    [S_DEL] = "DELETE FROM rec WHERE id BETWEEN ?1 AND ?2",
    [S_SCAN] = "SELECT id,recv_ms,size,length(topic) FROM rec WHERE id>?1"
               " ORDER BY id",
    [S_STATE] = "UPDATE state SET last_id=?1,put_total=?2,acked_total=?3,"
                "dropped_full=?4,dropped_expired=?5,dead_purged=?6,rows=?7,"
                "bytes=?8",
    [S_PAGES] = "PRAGMA page_count",
    [S_FREE] = "PRAGMA freelist_count",
    [S_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [S_RECENT] = "SELECT id,tag FROM rec WHERE tag IS NOT NULL UNION ALL"
                 " SELECT id,tag FROM tags ORDER BY id DESC LIMIT ?1",
    [S_KEEP_TAGS] = "INSERT OR REPLACE INTO tags(id,tag) SELECT id,tag FROM"
                    " rec WHERE id BETWEEN ?1 AND ?2 AND tag IS NOT NULL",
    [S_PRUNE_TAGS] = "DELETE FROM tags WHERE id<=?1",
};

/* Counters kept in memory and written to the state row; c is the working
 * copy inside a transaction, saved the committed one. */
struct counters {
    int64_t last_id, put_total, acked_total, purged, rows, bytes, dead;
    int64_t dropped[SPOOL_DROP__COUNT];
};

struct idset { /* open addressing, linear probing; 0 marks an empty slot */
    int64_t *slot;
    size_t cap, n;
};

struct spool {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    struct spool_opts o;
    char *path;
    char epoch[17];
    struct counters c, saved;
    int state_dirty;     /* this transaction deleted rows: write state */
    int sync_now;        /* -1 unknown, else the synchronous level set */
    int64_t max_pages;   /* 0: no cap */
    int64_t batch_pages; /* most pages one put may need (WAL half) */
    struct idset inflight;
    int64_t hi;      /* highest id handed out since the last rewind */
    int64_t *nacked; /* sorted eligible ids below hi */
    size_t nnacked, nacked_head, nacked_cap;
    int64_t *scratch;
    size_t scratch_cap;
    unsigned char *arena, *dead_arena;
    size_t arena_cap, dead_arena_cap;
    int recovered;
    char err[512];
};

static int fail_msg(struct spool *sp, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_msg(struct spool *sp, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp->err, sizeof(sp->err), fmt, ap);
    va_end(ap);
    return rc;
}

/* Maps a SQLite failure to a negative errno and remembers why. */
static int sqerr(struct spool *sp, int rc, const char *what)
{
    int e = -EIO;
    switch (rc & 0xff) {
    case SQLITE_FULL:
        e = -ENOSPC;
        break;
    case SQLITE_NOMEM:
        e = -ENOMEM;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        e = -EBUSY;
        break;
    default:
        break;
    }
    return fail_msg(sp, e, "spool %s: %s: %s (sqlite %d)", sp->path, what,
                    sqlite3_errmsg(sp->db), rc);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the in-flight set ---------------------------------------------------- */

static size_t hslot(const struct idset *s, int64_t id)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) &
           (s->cap - 1);
}

static int idset_add(struct idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        struct idset g = {NULL, s->cap ? s->cap * 2 : 1024, 0};
        g.slot = calloc(g.cap, sizeof(*g.slot));
        if (!g.slot)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                idset_add(&g, s->slot[i]);
        free(s->slot);
        *s = g;
    }
    size_t i = hslot(s, id);
    while (s->slot[i] && s->slot[i] != id)
        i = (i + 1) & (s->cap - 1);
    if (!s->slot[i])
        s->n++;
    s->slot[i] = id;
    return 0;
}

/* Removes id, shifting later members of its probe run back (no tombstones). */
static int idset_del(struct idset *s, int64_t id)
{
    if (!s->n)
        return 0;
    size_t m = s->cap - 1, i = hslot(s, id);
    while (s->slot[i] != id) {
        if (!s->slot[i])
            return 0;
        i = (i + 1) & m;
    }
    for (size_t j = (i + 1) & m; s->slot[j]; j = (j + 1) & m) {
        size_t h = hslot(s, s->slot[j]);
        /* move j to the hole at i unless its home lies in (i, j] */
        if (((j - h) & m) >= ((j - i) & m)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    s->slot[i] = 0;
    s->n--;
    return 1;
}

/* --- small SQLite helpers --------------------------------------------------
 */

static int run(struct spool *sp, int which)
{
    sqlite3_stmt *st = sp->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sqerr(sp, rc, sql_text[which]);
    return 0;
}

static int64_t pragma_int(struct spool *sp, int which)
{
    sqlite3_stmt *st = sp->st[which];
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

static int set_sync(struct spool *sp, int full)
{
    if (sp->sync_now == full)
        return 0;
    int rc = run(sp, full ? S_SYNC_FULL : S_SYNC_NORMAL);
    if (rc == 0)
        sp->sync_now = full;
    return rc;
}

static int begin(struct spool *sp)
{
    sp->state_dirty = 0;
    sp->c = sp->saved;
    return run(sp, S_BEGIN);
}

static void rollback(struct spool *sp)
{
    if (!sqlite3_get_autocommit(sp->db))
        run(sp, S_ROLLBACK);
    sp->c = sp->saved;
}

/* Writes the state row if this transaction deleted rows, then commits. */
static int commit(struct spool *sp)
{
    int rc = 0;
    if (sp->state_dirty) {
        sqlite3_stmt *st = sp->st[S_STATE];
        sqlite3_bind_int64(st, 1, sp->c.last_id);
        sqlite3_bind_int64(st, 2, sp->c.put_total);
        sqlite3_bind_int64(st, 3, sp->c.acked_total);
        sqlite3_bind_int64(st, 4, sp->c.dropped[SPOOL_DROP_FULL]);
        sqlite3_bind_int64(st, 5, sp->c.dropped[SPOOL_DROP_EXPIRED]);
        sqlite3_bind_int64(st, 6, sp->c.purged);
        sqlite3_bind_int64(st, 7, sp->c.rows);
        sqlite3_bind_int64(st, 8, sp->c.bytes);
        rc = run(sp, S_STATE);
    }
    if (rc == 0)
        rc = run(sp, S_COMMIT);
    if (rc) {
        int save = rc;
        char msg[sizeof(sp->err)];
        memcpy(msg, sp->err, sizeof(msg));
        rollback(sp);
        memcpy(sp->err, msg, sizeof(msg));
        return save;
    }
    sp->saved = sp->c;
    return 0;
}

/* Deletes rows [lo, hi] inside the open transaction; counts them. */
static int del_range(struct spool *sp, int64_t lo, int64_t hi, int64_t *rows)
{
    sqlite3_stmt *st = sp->st[S_SUM];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    int64_t k = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t b = rc == SQLITE_ROW ? (int64_t)sqlite3_column_double(st, 1) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return sqerr(sp, rc, "sum");
    *rows = k;
    if (!k)
        return 0;
    st = sp->st[S_DEL];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    if ((rc = run(sp, S_DEL)))
        return rc;
    sp->c.rows -= k;
    sp->c.bytes -= b;
    sp->state_dirty = 1;
    return 0;
}

/*
 * Walks rec from the oldest row after id `from` and returns in *cut the id
 * of the last row of the prefix that either covers want_bytes of pages
 * (want_bytes > 0) or is older than older_ms (older_ms > 0), at most
 * max_rows rows.
 */
static int scan_prefix(struct spool *sp, int64_t from, int64_t want_bytes,
                       int64_t older_ms, int64_t max_rows, int64_t *cut,
                       int64_t *n)
{
    sqlite3_stmt *st = sp->st[S_SCAN];
    int64_t got = 0;
    int rc = SQLITE_DONE;
    *cut = 0;
    *n = 0;
    sqlite3_bind_int64(st, 1, from);
    while (*n < max_rows && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (older_ms && sqlite3_column_int64(st, 1) >= older_ms)
            break;
        *cut = sqlite3_column_int64(st, 0);
        (*n)++;
        got += sqlite3_column_int64(st, 2) + sqlite3_column_int64(st, 3) +
               ROW_OVERHEAD;
        if (want_bytes && got >= want_bytes)
            break;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqerr(sp, rc, "scan");
    return 0;
}

/* --- open: schema, migration, corruption ---------------------------------- */

/* migrations[v] turns a user_version v file into v+1; [0] creates it. */
static const char *const migrations[SPOOL_SCHEMA] = {
    "CREATE TABLE state(one INTEGER PRIMARY KEY CHECK(one=1),"
    " epoch TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " last_id INTEGER NOT NULL DEFAULT 0,"
    " put_total INTEGER NOT NULL DEFAULT 0,"
    " acked_total INTEGER NOT NULL DEFAULT 0,"
    " dropped_full INTEGER NOT NULL DEFAULT 0,"
    " dropped_expired INTEGER NOT NULL DEFAULT 0,"
    " dead_purged INTEGER NOT NULL DEFAULT 0,"
    " rows INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE rec(id INTEGER PRIMARY KEY, recv_ms INTEGER NOT NULL,"
    " route INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL,"
    " key BLOB, headers BLOB, payload BLOB, tag INTEGER);"
    "CREATE TABLE dead(id INTEGER PRIMARY KEY, recv_ms INTEGER NOT NULL,"
    " route INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL,"
    " key BLOB, headers BLOB, payload BLOB, reason TEXT NOT NULL,"
    " dead_ms INTEGER NOT NULL);",
    /* 1 -> 2: the tags of recently acked rows (see spool_recent) */
    "CREATE TABLE tags(id INTEGER PRIMARY KEY, tag INTEGER NOT NULL);",
};

static int is_corrupt(int rc)
{
    return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

/* Runs one statement, storing the first column of the first row. */
static int query1(sqlite3 *db, const char *sql, int64_t *i, char *txt,
                  size_t txtlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (i)
            *i = sqlite3_column_int64(st, 0);
        if (txt)
            snprintf(txt, txtlen, "%s",
                     (const char *)sqlite3_column_text(st, 0));
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int create_or_migrate(struct spool *sp, int64_t ver)
{
    char sql[128];
    int rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (int64_t v = ver; rc == SQLITE_OK && v < SPOOL_SCHEMA; v++) {
        rc = sqlite3_exec(sp->db, migrations[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK && v == 0) {
            uint64_t r = 0;
            if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
                r = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 40);
            snprintf(sql, sizeof(sql),
                     "INSERT INTO state(one,epoch,created_ms)"
                     " VALUES(1,'%016" PRIx64 "',%" PRId64 ")",
                     r, now_ms());
            rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%" PRId64, v + 1);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqerr(sp, rc, "creating or migrating the schema");
        sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/*
 * Opens the file, checks it and brings the schema up to date. Returns a
 * SQLite code; a corrupt file gives SQLITE_CORRUPT, anything else that is
 * not the file's fault its own code. *msg says what happened.
 */
static int open_db(struct spool *sp)
{
    char txt[256] = "";
    int64_t ver = 0, ntab = 0;
    int rc = sqlite3_open_v2(
        sp->path, &sp->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc)
        return sqerr(sp, rc, "open"), rc;
    sqlite3_extended_result_codes(sp->db, 1);
    rc = sqlite3_exec(sp->db,
                      "PRAGMA locking_mode=EXCLUSIVE; PRAGMA page_size=4096;",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA journal_mode=WAL", NULL, txt, sizeof(txt));
    if (rc == SQLITE_OK && strcmp(txt, "wal") != 0)
        return fail_msg(sp, 0, "journal_mode is %s, not wal", txt),
               SQLITE_CANTOPEN;
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA quick_check", NULL, txt, sizeof(txt));
    if (rc == SQLITE_OK && strcmp(txt, "ok") != 0) {
        fail_msg(sp, 0, "quick_check: %s", txt);
        return SQLITE_CORRUPT;
    }
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA user_version", &ver, NULL, 0);
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "SELECT count(*) FROM sqlite_schema", &ntab, NULL,
                    0);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_BUSY)
            fail_msg(sp, 0, "spool %s is in use by another process", sp->path);
        else
            sqerr(sp, rc, "check");
        return rc;
    }
    if (ver > SPOOL_SCHEMA || (ver == 0 && ntab > 0)) {
        fail_msg(sp, 0,
                 "spool %s: schema version %" PRId64 " is not one this "
                 "build knows (1..%d); refusing to touch it",
                 sp->path, ver, SPOOL_SCHEMA);
        return SQLITE_MISMATCH;
    }
    return ver < SPOOL_SCHEMA ? create_or_migrate(sp, ver) : SQLITE_OK;
}

/* Renames the corrupt file and its WAL aside; never deletes them. */
static void set_aside(struct spool *sp, const char *why)
{
    char to[4096], from[4096], stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(to, sizeof(to), "%s.corrupt-%s", sp->path, stamp);
    for (int i = 1; access(to, F_OK) == 0 && i < 1000; i++)
        snprintf(to, sizeof(to), "%s.corrupt-%s-%d", sp->path, stamp, i);
    int rc = rename(sp->path, to);
    snprintf(from, sizeof(from), "%s-wal", sp->path);
    char towal[4200];
    snprintf(towal, sizeof(towal), "%s-wal", to);
    if (access(from, F_OK) == 0)
        rename(from, towal);
    snprintf(from, sizeof(from), "%s-shm", sp->path);
    unlink(from); /* derived from the WAL; no data of its own */
    fail_msg(
        sp, 0, "spool %s was corrupt (%s); %s %s and started a fresh spool",
        sp->path, why, rc == 0 ? "moved it to" : "COULD NOT move it to", to);
    fprintf(stderr, "mqtt2kafka: %s\n", sp->err);
}

static int setup(struct spool *sp)
{
    int64_t budget = 8 << 20, ckpt = 1000;
    char sql[512];
    if (sp->o.max_bytes) {
        budget = sp->o.max_bytes / 8;
        budget = budget < (256 << 10) ? (256 << 10)
                 : budget > (8 << 20) ? (8 << 20)
                                      : budget;
        ckpt = (budget / FRAME - 8) / 2;
        sp->max_pages = (sp->o.max_bytes - budget) / PAGE;
        sp->batch_pages = ckpt - 4;
    }
    snprintf(sql, sizeof(sql),
             "PRAGMA secure_delete=OFF; PRAGMA temp_store=MEMORY;"
             "PRAGMA auto_vacuum=NONE; PRAGMA wal_autocheckpoint=%" PRId64 ";"
             "PRAGMA journal_size_limit=%" PRId64 "; PRAGMA synchronous=%s;",
             ckpt, budget, sp->o.sync == SPOOL_SYNC_FULL ? "FULL" : "NORMAL");
    int rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
    sp->sync_now = sp->o.sync == SPOOL_SYNC_FULL;
    if (rc == SQLITE_OK && sp->max_pages) {
        snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%" PRId64,
                 sp->max_pages);
        rc = query1(sp->db, sql, NULL, NULL, 0);
    }
    for (int i = 0; rc == SQLITE_OK && i < S__COUNT; i++)
        rc = sqlite3_prepare_v3(sp->db, sql_text[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &sp->st[i], NULL);
    if (rc)
        return sqerr(sp, rc, "setup");
    return 0;
}

/* Loads the counters: the state row plus the rows put after it was written. */
static int load_state(struct spool *sp)
{
    struct counters *c = &sp->saved;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        sp->db,
        "SELECT epoch,last_id,put_total,acked_total,dropped_full,"
        "dropped_expired,dead_purged,rows,bytes,"
        "(SELECT count(*) FROM dead) FROM state",
        -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(sp->epoch, sizeof(sp->epoch), "%s",
                 (const char *)sqlite3_column_text(st, 0));
        c->last_id = sqlite3_column_int64(st, 1);
        c->put_total = sqlite3_column_int64(st, 2);
        c->acked_total = sqlite3_column_int64(st, 3);
        c->dropped[SPOOL_DROP_FULL] = sqlite3_column_int64(st, 4);
        c->dropped[SPOOL_DROP_EXPIRED] = sqlite3_column_int64(st, 5);
        c->purged = sqlite3_column_int64(st, 6);
        c->rows = sqlite3_column_int64(st, 7);
        c->bytes = sqlite3_column_int64(st, 8);
        c->dead = sqlite3_column_int64(st, 9);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT; /* the state row is gone */
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(sp->db,
                                "SELECT count(*),total(size),max(id) FROM rec"
                                " WHERE id>?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, c->last_id);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t k = sqlite3_column_int64(st, 0);
            c->rows += k;
            c->put_total += k;
            c->bytes += (int64_t)sqlite3_column_double(st, 1);
            if (k)
                c->last_id = sqlite3_column_int64(st, 2);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    sp->c = sp->saved;
    if (rc)
        return sqerr(sp, rc, "loading state"), rc;
    return SQLITE_OK;
}

static void close_db(struct spool *sp)
{
    for (int i = 0; i < S__COUNT; i++) {
        sqlite3_finalize(sp->st[i]);
        sp->st[i] = NULL;
    }
    sqlite3_close(sp->db);
    sp->db = NULL;
}

static int try_open(struct spool *sp)
{
    int rc = open_db(sp);
    if (rc == SQLITE_OK)
        rc = load_state(sp);
    if (rc == SQLITE_OK)
        rc = setup(sp) ? SQLITE_ERROR : SQLITE_OK;
    return rc;
}

int spool_open(const struct spool_opts *opts, struct spool **out, char *err,
               size_t errlen)
{
    struct spool *sp = NULL;
    int rc = -EINVAL;
    *out = NULL;
    if (!opts || !opts->path || !*opts->path || opts->max_bytes < 0 ||
        (opts->max_bytes && opts->max_bytes < MIN_BYTES) ||
        opts->max_age_ms < 0) {
        snprintf(err, errlen,
                 "spool: bad options (path required; max_bytes"
                 " 0 or >= %d; max_age >= 0)",
                 MIN_BYTES);
        return -EINVAL;
    }
    sp = calloc(1, sizeof(*sp));
    if (!sp || !(sp->path = strdup(opts->path))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "spool: out of memory");
        goto fail;
    }
    pthread_mutex_init(&sp->mu, NULL);
    sp->o = *opts;
    sp->o.path = sp->path;
    int src = try_open(sp);
    if (is_corrupt(src)) {
        char why[sizeof(sp->err)];
        snprintf(why, sizeof(why), "%s", sp->err);
        close_db(sp);
        set_aside(sp, why);
        char keep[sizeof(sp->err)];
        memcpy(keep, sp->err, sizeof(keep));
        memset(&sp->saved, 0, sizeof(sp->saved));
        src = try_open(sp);
        if (src == SQLITE_OK)
            memcpy(sp->err, keep, sizeof(keep));
        sp->recovered = 1;
    }
    if (src != SQLITE_OK) {
        rc = (src & 0xff) == SQLITE_BUSY       ? -EBUSY
             : (src & 0xff) == SQLITE_MISMATCH ? -EINVAL
             : (src & 0xff) == SQLITE_FULL     ? -ENOSPC
                                               : -EIO;
        snprintf(err, errlen, "%s", sp->err);
        goto fail;
    }
    *out = sp;
    if (err && errlen)
        snprintf(err, errlen, "%s", sp->recovered ? sp->err : "");
    return 0;
fail:
    spool_close(sp);
    return rc;
}

void spool_close(struct spool *sp)
{
    if (!sp)
        return;
    if (sp->db)
        close_db(sp);
    pthread_mutex_destroy(&sp->mu);
    free(sp->inflight.slot);
    free(sp->nacked);
    free(sp->scratch);
    free(sp->arena);
    free(sp->dead_arena);
    free(sp->path);
    free(sp);
}

const char *spool_epoch(const struct spool *sp)
{
    return sp->epoch;
}

void spool_id_str(const struct spool *sp, int64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s-%" PRId64, sp->epoch, id);
}

const char *spool_errmsg(const struct spool *sp)
{
    return sp->err;
}

/* --- put ------------------------------------------------------------------ */

/* Pages a batch will take, on the generous side; the cap is the judge. */
static int64_t estimate_pages(const struct spool_rec *r, size_t n)
{
    int64_t small = 0, pages = 2;
    for (size_t i = 0; i < n; i++) {
        int64_t b = (int64_t)(r[i].key_len + r[i].headers_len +
                              r[i].payload_len + strlen(r[i].topic)) +
                    ROW_OVERHEAD;
        if (b > PAGE - 100)
            pages += (b + PAGE - 9) / (PAGE - 8) + 1;
        else
            small += b;
    }
    return pages + (small + small / 8 + PAGE - 1) / PAGE;
}

static int64_t used_pages(struct spool *sp)
{
    return pragma_int(sp, S_PAGES) - pragma_int(sp, S_FREE);
}

/* Inside the put's transaction: make need pages fit under the cap. */
static int make_room(struct spool *sp, int64_t need)
{
    for (int tries = 0; tries < 16; tries++) {
        int64_t used = used_pages(sp), cut, n, k;
        if (used < 0)
            return sqerr(sp, SQLITE_ERROR, "page count");
        if (used + need <= sp->max_pages)
            return 0;
        if (sp->o.on_full == SPOOL_BACKPRESSURE)
            return fail_msg(sp, -ENOSPC,
                            "spool %s is full (max_bytes %" PRId64
                            "): backpressure",
                            sp->path, sp->o.max_bytes);
        int64_t want =
            (used + need - sp->max_pages + sp->max_pages / 32 + 1) * PAGE;
        /* Records already handed to Kafka are not dropped: they may well
         * be delivered, and counting them as lost would be a lie. The
         * oldest of the rest go. */
        int rc = scan_prefix(sp, sp->hi, want, 0, INT64_MAX, &cut, &n);
        if (rc == 0 && n == 0)
            rc = fail_msg(sp, -ENOSPC,
                          "spool %s: the batch does not fit in max_bytes "
                          "%" PRId64 " beside the records in flight",
                          sp->path, sp->o.max_bytes);
        if (rc == 0)
            rc = del_range(sp, sp->hi + 1, cut, &k);
        if (rc)
            return rc;
        sp->c.dropped[SPOOL_DROP_FULL] += k;
    }
    return fail_msg(sp, -ENOSPC, "spool %s: could not make room", sp->path);
}

static int insert_all(struct spool *sp, struct spool_rec *r, size_t n)
{
    sqlite3_stmt *st = sp->st[S_INSERT];
    for (size_t i = 0; i < n; i++) {
        int64_t id = sp->c.last_id + 1;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, r[i].recv_ms);
        sqlite3_bind_int(st, 3, r[i].route);
        sqlite3_bind_int64(
            st, 4,
            (int64_t)(r[i].key_len + r[i].headers_len + r[i].payload_len));
        sqlite3_bind_text(st, 5, r[i].topic, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 6, r[i].key ? r[i].key : "", r[i].key_len,
                            SQLITE_STATIC);
        sqlite3_bind_blob64(st, 7, r[i].headers ? r[i].headers : "",
                            r[i].headers_len, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 8, r[i].payload ? r[i].payload : "",
                            r[i].payload_len, SQLITE_STATIC);
        if (r[i].tag)
            sqlite3_bind_int64(st, 9, r[i].tag);
        else
            sqlite3_bind_null(st, 9);
        int rc = run(sp, S_INSERT);
        if (rc)
            return rc;
        sp->c.last_id = id;
        sp->c.rows++;
        sp->c.put_total++;
        sp->c.bytes +=
            (int64_t)(r[i].key_len + r[i].headers_len + r[i].payload_len);
    }
    return 0;
}

/* After an SQLITE_FULL: was it our cap (1) or the disk (0)? */
static int hit_cap(struct spool *sp, int64_t need)
{
    return sp->max_pages && used_pages(sp) + need > sp->max_pages - 2;
}

static int put_locked(struct spool *sp, struct spool_rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!recs[i].topic || (!recs[i].payload && recs[i].payload_len) ||
            (!recs[i].key && recs[i].key_len) ||
            (!recs[i].headers && recs[i].headers_len))
            return fail_msg(sp, -EINVAL,
                            "spool_put: record %zu is"
                            " malformed (NULL with a length)",
                            i);
    int64_t need = estimate_pages(recs, n);
    if (sp->max_pages && need > sp->batch_pages)
        return fail_msg(sp, -EINVAL,
                        "spool_put: a batch of %zu records (~%" PRId64
                        " pages) is larger than one put may be under "
                        "max_bytes %" PRId64 " (%" PRId64 " pages); split it",
                        n, need, sp->o.max_bytes, sp->batch_pages);
    int rc = set_sync(sp, sp->o.sync == SPOOL_SYNC_FULL);
    for (int attempt = 0; rc == 0; attempt++) {
        int64_t extra = attempt * (sp->max_pages / 16 + 4);
        rc = begin(sp);
        if (rc == 0 && sp->max_pages)
            rc = make_room(sp, need + extra);
        if (rc == 0)
            rc = insert_all(sp, recs, n);
        if (rc == 0)
            rc = commit(sp);
        if (rc == 0)
            break;
        if (rc != -ENOSPC) {
            rollback(sp);
            return rc;
        }
        int cap = hit_cap(sp, need);
        rollback(sp);
        if (!cap)
            return fail_msg(sp, -ENOSPC,
                            "spool %s: the disk is full; nothing of this "
                            "batch was stored, nothing stored is lost",
                            sp->path);
        if (sp->o.on_full == SPOOL_BACKPRESSURE || attempt >= 3)
            return fail_msg(sp, -ENOSPC,
                            "spool %s is full (max_bytes %" PRId64 ")",
                            sp->path, sp->o.max_bytes);
        rc = 0;
    }
    for (size_t i = 0; i < n; i++)
        recs[i].id = sp->c.last_id - (int64_t)(n - 1 - i);
    return 0;
}

int spool_put(struct spool *sp, struct spool_rec *recs, size_t n)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&sp->mu);
    int rc = put_locked(sp, recs, n);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_recent(struct spool *sp, int64_t *ids, int64_t *tags, size_t max)
{
    int n = 0, rc;
    pthread_mutex_lock(&sp->mu);
    sqlite3_stmt *st = sp->st[S_RECENT];
    sqlite3_bind_int64(st, 1, (int64_t)max);
    while ((size_t)n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        tags[n] = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&sp->mu);
    return n;
}

int spool_full(struct spool *sp)
{
    int full = 0;
    pthread_mutex_lock(&sp->mu);
    if (sp->max_pages && sp->o.on_full == SPOOL_BACKPRESSURE) {
        int64_t headroom = sp->max_pages / 64 > 8 ? sp->max_pages / 64 : 8;
        full = used_pages(sp) + headroom > sp->max_pages;
    }
    pthread_mutex_unlock(&sp->mu);
    return full;
}

/* --- peek, ack, nack --------------------------------------------------------
 */

static int arena_fit(unsigned char **a, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    if (need > ARENA_MAX)
        return -ENOMEM;
    size_t c = *cap ? *cap : 65536;
    while (c < need)
        c *= 2;
    unsigned char *p = realloc(*a, c);
    if (!p)
        return -ENOMEM;
    *a = p;
    *cap = c;
    return 0;
}

/* Copies column col into the arena; returns its offset, or SIZE_MAX. */
static size_t copy_col(struct spool *sp, sqlite3_stmt *st, int col,
                       size_t *used, size_t *len, int nul)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col), off = *used;
    if (arena_fit(&sp->arena, &sp->arena_cap, off + n + 1))
        return SIZE_MAX;
    if (n)
        memcpy(sp->arena + off, p, n);
    if (nul)
        sp->arena[off + n] = 0;
    *used = off + n + (size_t)nul;
    *len = n;
    return off;
}

/* Takes the current row of st into r (offsets into the arena for now). */
static int take_row(struct spool *sp, sqlite3_stmt *st, struct spool_rec *r,
                    size_t *used)
{
    size_t tl, o[4];
    r->id = sqlite3_column_int64(st, 0);
    r->recv_ms = sqlite3_column_int64(st, 1);
    r->route = sqlite3_column_int(st, 2);
    o[0] = copy_col(sp, st, 3, used, &tl, 1);
    o[1] = copy_col(sp, st, 4, used, &r->key_len, 0);
    o[2] = copy_col(sp, st, 5, used, &r->headers_len, 0);
    o[3] = copy_col(sp, st, 6, used, &r->payload_len, 0);
    if (o[0] == SIZE_MAX || o[1] == SIZE_MAX || o[2] == SIZE_MAX ||
        o[3] == SIZE_MAX)
        return fail_msg(sp, -ENOMEM,
                        "spool_peek: record %" PRId64
                        " does not fit the peek buffer cap",
                        r->id);
    r->topic = (const char *)(uintptr_t)o[0];
    r->key = (const void *)(uintptr_t)o[1];
    r->headers = (const void *)(uintptr_t)o[2];
    r->payload = (const void *)(uintptr_t)o[3];
    return 0;
}

static size_t rec_size(const struct spool_rec *r)
{
    return r->key_len + r->headers_len + r->payload_len;
}

static int peek_locked(struct spool *sp, struct spool_rec *recs, size_t max,
                       size_t max_bytes)
{
    size_t n = 0, used = 0, bytes = 0;
    int rc = 0, step = SQLITE_DONE;
    if (max > INFLIGHT_MAX - sp->inflight.n)
        max = INFLIGHT_MAX - sp->inflight.n;
    /* nacked ids first: they are older than anything above hi */
    sqlite3_stmt *st = sp->st[S_PEEK_ONE];
    while (rc == 0 && n < max && sp->nacked_head < sp->nnacked) {
        sqlite3_bind_int64(st, 1, sp->nacked[sp->nacked_head]);
        step = sqlite3_step(st);
        if (step == SQLITE_ROW &&
            (rc = take_row(sp, st, &recs[n], &used)) == 0) {
            if (n && bytes + rec_size(&recs[n]) > max_bytes) {
                sqlite3_reset(st);
                goto done;
            }
            bytes += rec_size(&recs[n++]);
        } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = sqerr(sp, step, "peek");
        }
        sqlite3_reset(st);
        if (rc == 0)
            sp->nacked_head++;
    }
    st = sp->st[S_PEEK];
    sqlite3_bind_int64(st, 1, sp->hi);
    while (rc == 0 && n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = take_row(sp, st, &recs[n], &used)))
            break;
        if (n && bytes + rec_size(&recs[n]) > max_bytes)
            break;
        bytes += rec_size(&recs[n]);
        sp->hi = recs[n++].id;
    }
    if (rc == 0 && n < max && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = sqerr(sp, step, "peek");
    sqlite3_reset(st);
done:
    if (sp->nacked_head == sp->nnacked)
        sp->nacked_head = sp->nnacked = 0;
    for (size_t i = 0; i < n; i++) {
        struct spool_rec *r = &recs[i];
        r->topic = (const char *)sp->arena + (uintptr_t)r->topic;
        r->key = sp->arena + (uintptr_t)r->key;
        r->headers = sp->arena + (uintptr_t)r->headers;
        r->payload = sp->arena + (uintptr_t)r->payload;
        if (rc == 0 && idset_add(&sp->inflight, r->id))
            rc = -ENOMEM;
    }
    return rc ? rc : (int)n;
}

int spool_peek(struct spool *sp, struct spool_rec *recs, size_t max,
               size_t max_bytes)
{
    if (max > INT32_MAX)
        max = INT32_MAX;
    pthread_mutex_lock(&sp->mu);
    int rc = peek_locked(sp, recs, max, max_bytes);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Copies ids into scratch, sorted and without duplicates; returns count. */
static size_t sorted_ids(struct spool *sp, const int64_t *ids, size_t n)
{
    if (n > sp->scratch_cap) {
        int64_t *p = realloc(sp->scratch, n * sizeof(*p));
        if (!p)
            return SIZE_MAX;
        sp->scratch = p;
        sp->scratch_cap = n;
    }
    memcpy(sp->scratch, ids, n * sizeof(*ids));
    qsort(sp->scratch, n, sizeof(*ids), cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!k || sp->scratch[i] != sp->scratch[k - 1])
            sp->scratch[k++] = sp->scratch[i];
    return k;
}

/* Copies the tags of rows lo..hi to the tags table, inside a savepoint:
 * best effort, never in the way of the ack. A full spool has no room for
 * them (SQLITE_FULL), and the ack is what makes room. Returns 0 (kept),
 * 1 (no room: go on without) or -EAGAIN (SQLite rolled the whole
 * transaction back: ack again without keeping tags). */
static int keep_tags(struct spool *sp, int64_t lo, int64_t hi)
{
    if (sqlite3_exec(sp->db, "SAVEPOINT keep", NULL, NULL, NULL) != SQLITE_OK)
        return 1;
    sqlite3_stmt *st = sp->st[S_KEEP_TAGS];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        sqlite3_exec(sp->db, "RELEASE keep", NULL, NULL, NULL);
        return 0;
    }
    if (sqlite3_get_autocommit(sp->db))
        return -EAGAIN;
    sqlite3_exec(sp->db, "ROLLBACK TO keep", NULL, NULL, NULL);
    sqlite3_exec(sp->db, "RELEASE keep", NULL, NULL, NULL);
    return 1;
}

/* Deletes the sorted ids in scratch[0..k) in one transaction, range by
 * range. keep: first keep the tags of the newest rows (see spool_recent):
 * a PUBACK can die with a crashed process after its row was delivered, and
 * the broker's redelivery must still be recognised after the restart. */
static int ack_ranges(struct spool *sp, size_t k, int keep)
{
    int rc = begin(sp);
    if (rc == 0 && keep) { /* old tags go first: that frees room too */
        sqlite3_bind_int64(sp->st[S_PRUNE_TAGS], 1, sp->c.last_id - TAGS_KEEP);
        rc = run(sp, S_PRUNE_TAGS);
    }
    for (size_t i = 0; rc == 0 && i < k;) {
        size_t j = i;
        while (j + 1 < k && sp->scratch[j + 1] == sp->scratch[j] + 1)
            j++;
        int64_t gone = 0, lo = sp->scratch[i], hi = sp->scratch[j];
        if (keep && hi > sp->c.last_id - TAGS_KEEP) {
            int r = keep_tags(sp, lo, hi);
            if (r < 0) {
                rollback(sp);
                return -EAGAIN;
            }
            keep = r == 0;
        }
        rc = del_range(sp, lo, hi, &gone);
        sp->c.acked_total += gone;
        i = j + 1;
    }
    if (rc == 0)
        rc = commit(sp);
    else
        rollback(sp);
    return rc;
}

static int ack_locked(struct spool *sp, const int64_t *ids, size_t n)
{
    if (n > ACK_MAX)
        return fail_msg(sp, -EINVAL, "spool_ack: more than %d ids", ACK_MAX);
    size_t k = sorted_ids(sp, ids, n);
    if (k == SIZE_MAX)
        return -ENOMEM;
    int rc = set_sync(sp, 0);
    if (rc == 0)
        rc = ack_ranges(sp, k, 1);
    if (rc == -EAGAIN)
        rc = ack_ranges(sp, k, 0);
    for (size_t i = 0; rc == 0 && i < k; i++)
        idset_del(&sp->inflight, sp->scratch[i]);
    return rc;
}

int spool_ack(struct spool *sp, const int64_t *ids, size_t n)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&sp->mu);
    int rc = ack_locked(sp, ids, n);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int nack_locked(struct spool *sp, const int64_t *ids, size_t n)
{
    if (n > ACK_MAX)
        return fail_msg(sp, -EINVAL, "spool_nack: more than %d ids", ACK_MAX);
    size_t live = sp->nnacked - sp->nacked_head;
    if (live + n > sp->nacked_cap) {
        size_t c = live + n < 1024 ? 1024 : live + n;
        int64_t *p = malloc(c * sizeof(*p));
        if (!p)
            return -ENOMEM;
        memcpy(p, sp->nacked + sp->nacked_head, live * sizeof(*p));
        free(sp->nacked);
        sp->nacked = p;
        sp->nacked_cap = c;
    } else {
        memmove(sp->nacked, sp->nacked + sp->nacked_head, live * sizeof(*ids));
    }
    sp->nacked_head = 0;
    sp->nnacked = live;
    for (size_t i = 0; i < n; i++)
        if (idset_del(&sp->inflight, ids[i]))
            sp->nacked[sp->nnacked++] = ids[i];
    qsort(sp->nacked, sp->nnacked, sizeof(*ids), cmp_id);
    return 0;
}

int spool_nack(struct spool *sp, const int64_t *ids, size_t n)
{
    pthread_mutex_lock(&sp->mu);
    int rc = nack_locked(sp, ids, n);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void spool_rewind(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    if (sp->inflight.slot)
        memset(sp->inflight.slot, 0,
               sp->inflight.cap * sizeof(*sp->inflight.slot));
    sp->inflight.n = 0;
    sp->nacked_head = sp->nnacked = 0;
    sp->hi = 0;
    pthread_mutex_unlock(&sp->mu);
}

/* --- dead letters, expiry, stats -------------------------------------------
 */

static int exec_bind(struct spool *sp, const char *sql, int64_t a, int64_t b,
                     const char *txt, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
    if (rc)
        return sqerr(sp, rc, sql);
    if (sqlite3_bind_parameter_count(st) >= 1)
        sqlite3_bind_int64(st, 1, a);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, b);
    if (sqlite3_bind_parameter_count(st) >= 3)
        sqlite3_bind_text(st, 3, txt, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE && out)
        *out = sqlite3_changes(sp->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqerr(sp, rc, sql);
    return 0;
}

static int dead_locked(struct spool *sp, int64_t id, const char *reason)
{
    int64_t moved = 0, gone = 0;
    int rc = set_sync(sp, 0);
    if (rc == 0)
        rc = begin(sp);
    if (rc == 0)
        rc = exec_bind(sp,
                       "INSERT INTO dead(id,recv_ms,route,size,topic,key,"
                       "headers,payload,dead_ms,reason) SELECT id,recv_ms,"
                       "route,size,topic,key,headers,payload,?2,?3 FROM rec"
                       " WHERE id=?1",
                       id, now_ms(), reason ? reason : "unknown", &moved);
    if (rc == 0 && moved == 0)
        rc = fail_msg(sp, -ENOENT, "spool_dead: no record %" PRId64, id);
    if (rc == 0)
        rc = del_range(sp, id, id, &gone);
    if (rc == 0) {
        sp->c.dead++;
        rc = commit(sp);
    } else {
        rollback(sp);
    }
    if (rc == 0)
        idset_del(&sp->inflight, id);
    return rc;
}

int spool_dead(struct spool *sp, int64_t id, const char *reason)
{
    pthread_mutex_lock(&sp->mu);
    int rc = dead_locked(sp, id, reason);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int dead_list_locked(struct spool *sp, struct spool_dead_rec *out,
                            size_t max)
{
    sqlite3_stmt *st;
    size_t n = 0, used = 0;
    int rc = sqlite3_prepare_v2(sp->db,
                                "SELECT id,recv_ms,dead_ms,length(payload),"
                                "topic,reason FROM dead ORDER BY dead_ms DESC,"
                                " id DESC LIMIT ?1",
                                -1, &st, NULL);
    if (rc)
        return sqerr(sp, rc, "dead list");
    sqlite3_bind_int64(st, 1, (int64_t)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        struct spool_dead_rec *d = &out[n++];
        d->id = sqlite3_column_int64(st, 0);
        d->recv_ms = sqlite3_column_int64(st, 1);
        d->dead_ms = sqlite3_column_int64(st, 2);
        d->payload_len = (size_t)sqlite3_column_int64(st, 3);
        size_t off[2];
        for (int c = 0; c < 2; c++) {
            const unsigned char *t = sqlite3_column_text(st, 4 + c);
            size_t tl = (size_t)sqlite3_column_bytes(st, 4 + c);
            if (arena_fit(&sp->dead_arena, &sp->dead_arena_cap,
                          used + tl + 1)) {
                sqlite3_finalize(st);
                return -ENOMEM;
            }
            memcpy(sp->dead_arena + used, t ? t : (const unsigned char *)"",
                   tl);
            sp->dead_arena[used + tl] = 0;
            off[c] = used;
            used += tl + 1;
        }
        d->topic = (const char *)(uintptr_t)off[0];
        d->reason = (const char *)(uintptr_t)off[1];
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqerr(sp, rc, "dead list");
    for (size_t i = 0; i < n; i++) {
        out[i].topic = (const char *)sp->dead_arena + (uintptr_t)out[i].topic;
        out[i].reason = (const char *)sp->dead_arena + (uintptr_t)out[i].reason;
    }
    return (int)n;
}

int spool_dead_list(struct spool *sp, struct spool_dead_rec *out, size_t max)
{
    if (max > INT32_MAX)
        max = INT32_MAX;
    pthread_mutex_lock(&sp->mu);
    int rc = dead_list_locked(sp, out, max);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* Replayed records get new ids after every other: they are new attempts. */
static int replay_locked(struct spool *sp)
{
    int64_t k = 0, bytes = 0;
    int rc = set_sync(sp, sp->o.sync == SPOOL_SYNC_FULL);
    if (rc == 0)
        rc = begin(sp);
    if (rc == 0)
        rc = exec_bind(sp, "SELECT total(size) FROM dead", 0, 0, NULL, &bytes);
    if (rc == 0)
        rc = exec_bind(sp,
                       "INSERT INTO rec(id,recv_ms,route,size,topic,key,"
                       "headers,payload) SELECT ?1+row_number() OVER (ORDER"
                       " BY id),recv_ms,route,size,topic,key,headers,payload"
                       " FROM dead",
                       sp->c.last_id, 0, NULL, &k);
    if (rc == 0)
        rc = exec_bind(sp, "DELETE FROM dead", 0, 0, NULL, NULL);
    if (rc == 0) {
        sp->c.last_id += k;
        sp->c.rows += k;
        sp->c.bytes += bytes;
        sp->c.dead = 0;
        sp->state_dirty = 1;
        rc = commit(sp);
    } else {
        rollback(sp);
    }
    if (rc == -ENOSPC)
        fail_msg(sp, rc,
                 "spool %s: the dead letters do not fit; nothing "
                 "replayed",
                 sp->path);
    return rc ? rc : (int)k;
}

int spool_dead_replay(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int rc = replay_locked(sp);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int purge_locked(struct spool *sp)
{
    int64_t k = 0;
    int rc = set_sync(sp, 0);
    if (rc == 0)
        rc = begin(sp);
    if (rc == 0)
        rc = exec_bind(sp, "DELETE FROM dead", 0, 0, NULL, &k);
    if (rc == 0) {
        sp->c.purged += k;
        sp->c.dead = 0;
        sp->state_dirty = 1;
        rc = commit(sp);
    } else {
        rollback(sp);
    }
    return rc ? rc : (int)k;
}

int spool_dead_purge(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int rc = purge_locked(sp);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int expire_locked(struct spool *sp, int64_t now)
{
    int64_t total = 0, cut, n, k;
    if (!sp->o.max_age_ms)
        return 0;
    int rc = set_sync(sp, 0);
    do {
        if (rc == 0)
            /* Like drop_oldest, expiry leaves what is in flight alone: it
             * may yet be delivered (or comes back by nack, and expires). */
            rc = scan_prefix(sp, sp->hi, 0, now - sp->o.max_age_ms,
                             EXPIRE_CHUNK, &cut, &n);
        if (rc || n == 0)
            break;
        rc = begin(sp);
        if (rc == 0)
            rc = del_range(sp, sp->hi + 1, cut, &k);
        if (rc == 0) {
            sp->c.dropped[SPOOL_DROP_EXPIRED] += k;
            rc = commit(sp);
        } else {
            rollback(sp);
        }
        if (rc == 0) {
            total += k;
        }
    } while (rc == 0 && n == EXPIRE_CHUNK && total < INT32_MAX - EXPIRE_CHUNK);
    return rc ? rc : (int)total;
}

int spool_expire(struct spool *sp, int64_t now_ms_)
{
    pthread_mutex_lock(&sp->mu);
    int rc = expire_locked(sp, now_ms_);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int64_t file_size(const char *path, const char *suffix)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

int spool_stats(struct spool *sp, struct spool_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&sp->mu);
    const struct counters *c = &sp->saved;
    st->records = c->rows;
    st->bytes = c->bytes;
    st->inflight = (int64_t)sp->inflight.n;
    st->dead = c->dead;
    memcpy(st->dropped, c->dropped, sizeof(st->dropped));
    st->put_total = c->put_total;
    st->acked_total = c->acked_total;
    st->dead_purged = c->purged;
    st->recovered = sp->recovered;
    st->file_bytes = file_size(sp->path, "") + file_size(sp->path, "-wal");
    sqlite3_stmt *q = sp->st[S_SCAN];
    sqlite3_bind_int64(q, 1, 0);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        st->oldest_ms = sqlite3_column_int64(q, 1);
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rc = sqerr(sp, rc, "stats");
    else
        rc = 0;
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

const char *spool_reason_name(enum spool_reason r)
{
    switch (r) {
    case SPOOL_DROP_FULL:
        return "full";
    case SPOOL_DROP_EXPIRED:
        return "expired";
    default:
        return "unknown";
    }
}
