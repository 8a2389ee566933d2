/*
 * spool_open.c — opening a spool file: checking it (a corrupt one is set
 * aside, never deleted), creating or migrating the schema, loading the
 * counters, preparing the statements; and closing it. The rules are in
 * spool.c ("STARTUP", "IDS ARE NEVER REUSED", "PRAGMAS AND WHY").
 *
 * sqlite3 and libc only.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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
    /* 2 -> 3: the spool clock and its segments (see "TIME" in spool.c),
     * dead letters dropped by their own bounds */
    "CREATE TABLE clock(id INTEGER PRIMARY KEY, off INTEGER NOT NULL);"
    "INSERT INTO clock(id,off) VALUES(0,0);"
    "ALTER TABLE state ADD COLUMN clock_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE state ADD COLUMN clock_wall_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE state ADD COLUMN dead_dropped_full INTEGER NOT NULL"
    " DEFAULT 0;"
    "ALTER TABLE state ADD COLUMN dead_dropped_expired INTEGER NOT NULL"
    " DEFAULT 0;",
    /* 3 -> 4: small named values a caller keeps (spool_kv.c) */
    "CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
    /* 4 -> 5: the ids handed out are below a durable ceiling (see IDS) */
    "ALTER TABLE state ADD COLUMN id_ceiling INTEGER NOT NULL DEFAULT 0;",
    /* 5 -> 6: lanes (see LANES): rec is the normal lane */
    "CREATE TABLE rec_fast(id INTEGER PRIMARY KEY, recv_ms INTEGER NOT NULL,"
    " route INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL,"
    " key BLOB, headers BLOB, payload BLOB, tag INTEGER);"
    "CREATE TABLE rec_bulk(id INTEGER PRIMARY KEY, recv_ms INTEGER NOT NULL,"
    " route INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL,"
    " key BLOB, headers BLOB, payload BLOB, tag INTEGER);"
    "ALTER TABLE dead ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;",
    /* 6 -> 7: large records and their parts (spool_big.c); a large dead
     * letter's row in dead (lane 3) has no payload: deleting it deletes
     * the large record, unless a replay queued it again */
    "CREATE TABLE big(id INTEGER PRIMARY KEY, state INTEGER NOT NULL,"
    " recv_ms INTEGER NOT NULL, route INTEGER NOT NULL,"
    " size INTEGER NOT NULL, len INTEGER NOT NULL,"
    " part_bytes INTEGER NOT NULL, parts INTEGER NOT NULL, tag INTEGER,"
    " digest BLOB, topic TEXT NOT NULL, key BLOB, headers BLOB);"
    "CREATE TABLE big_part(pid INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TRIGGER dead_big AFTER DELETE ON dead WHEN old.lane=3 AND"
    " (SELECT state FROM big WHERE id=old.id)=2 BEGIN"
    " DELETE FROM big_part WHERE pid BETWEEN old.id*65536 AND"
    " old.id*65536+65535; DELETE FROM big WHERE id=old.id; END;",
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
                r = (uint64_t)sp_now_ms() ^ ((uint64_t)getpid() << 40);
            snprintf(sql, sizeof(sql),
                     "INSERT INTO state(one,epoch,created_ms)"
                     " VALUES(1,'%016" PRIx64 "',%" PRId64 ")",
                     r, sp_now_ms());
            rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%" PRId64, v + 1);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sp_sqerr(sp, rc, "creating or migrating the schema");
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
    int rc = sp_vfs_register(&sp->vfs);
    if (rc == SQLITE_OK)
        rc = sqlite3_open_v2(sp->path, &sp->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             sp->vfs.name);
    if (rc)
        return sp_sqerr(sp, rc, "open"), rc;
    sqlite3_extended_result_codes(sp->db, 1);
    rc = sqlite3_exec(sp->db,
                      "PRAGMA locking_mode=EXCLUSIVE; PRAGMA page_size=4096;",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA journal_mode=WAL", NULL, txt, sizeof(txt));
    if (rc == SQLITE_OK && strcmp(txt, "wal") != 0)
        return sp_fail(sp, 0, "journal_mode is %s, not wal", txt),
               SQLITE_CANTOPEN;
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA quick_check", NULL, txt, sizeof(txt));
    if (rc == SQLITE_OK && strcmp(txt, "ok") != 0) {
        sp_fail(sp, 0, "quick_check: %s", txt);
        return SQLITE_CORRUPT;
    }
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "PRAGMA user_version", &ver, NULL, 0);
    if (rc == SQLITE_OK)
        rc = query1(sp->db, "SELECT count(*) FROM sqlite_schema", &ntab, NULL,
                    0);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_BUSY)
            sp_fail(sp, 0, "spool %s is in use by another process", sp->path);
        else
            sp_sqerr(sp, rc, "check");
        return rc;
    }
    if (ver > SPOOL_SCHEMA || (ver == 0 && ntab > 0)) {
        sp_fail(sp, 0,
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
    sp_fail(sp, 0, "spool %s was corrupt (%s); %s %s and started a fresh spool",
            sp->path, why, rc == 0 ? "moved it to" : "COULD NOT move it to",
            to);
    fprintf(stderr, "mqtt2kafka: %s\n", sp->err);
}

/* The PRAGMAs that follow from the cap in effect (sp_disk_plan), and the
 * prepared statements. */
static int setup(struct spool *sp)
{
    int64_t ckpt = (sp->wal_budget / FRAME - 8) / 2;
    char sql[512];
    snprintf(sql, sizeof(sql),
             "PRAGMA secure_delete=OFF; PRAGMA temp_store=MEMORY;"
             "PRAGMA auto_vacuum=NONE; PRAGMA wal_autocheckpoint=%" PRId64 ";"
             "PRAGMA journal_size_limit=%" PRId64 "; PRAGMA synchronous=%s;",
             ckpt, sp->wal_budget,
             sp->o.sync == SPOOL_SYNC_FULL ? "FULL" : "NORMAL");
    int rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
    sp->sync_now = sp->o.sync == SPOOL_SYNC_FULL;
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%" PRId64,
                 sp->max_pages);
        rc = query1(sp->db, sql, NULL, NULL, 0);
    }
    for (int i = 0; rc == SQLITE_OK && i < S__COUNT; i++)
        rc = sqlite3_prepare_v3(sp->db, sp_sql[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &sp->st[i], NULL);
    for (int l = 0; rc == SQLITE_OK && l < SPOOL_LANES; l++)
        for (int i = 0; rc == SQLITE_OK && i < L__COUNT; i++) {
            sp_lane_sql(sql, sizeof(sql), i, l);
            rc = sqlite3_prepare_v3(sp->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &sp->lst[l][i], NULL);
        }
    if (rc)
        return sp_sqerr(sp, rc, "setup");
    return 0;
}

/* Loads the counters: the state row plus the rows put after it was written. */
static int load_state(struct spool *sp)
{
    struct counters *c = &sp->saved;
    sqlite3_stmt *st = NULL;
    int64_t clock_ms = 0, clock_wall_ms = 0;
    int rc = sqlite3_prepare_v2(
        sp->db,
        "SELECT epoch,last_id,put_total,acked_total,dropped_full,"
        "dropped_expired,dead_purged,rows,bytes,"
        "(SELECT count(*) FROM dead),(SELECT total(size) FROM dead),"
        "dead_dropped_full,dead_dropped_expired,clock_ms,clock_wall_ms,"
        "id_ceiling,max(coalesce((SELECT max(id) FROM rec),0),"
        "coalesce((SELECT max(id) FROM rec_fast),0),"
        "coalesce((SELECT max(id) FROM rec_bulk),0),"
        "coalesce((SELECT max(id) FROM big),0)),"
        "(SELECT max(id) FROM tags) FROM state",
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
        c->dead_bytes = (int64_t)sqlite3_column_double(st, 10);
        c->dropped[SPOOL_DROP_DEAD_FULL] = sqlite3_column_int64(st, 11);
        c->dropped[SPOOL_DROP_DEAD_EXPIRED] = sqlite3_column_int64(st, 12);
        clock_ms = sqlite3_column_int64(st, 13);
        clock_wall_ms = sqlite3_column_int64(st, 14);
        sp->ceiling = sqlite3_column_int64(st, 15);
        sp->top = sqlite3_column_int64(st, 16);
        if (sqlite3_column_int64(st, 17) > sp->top)
            sp->top = sqlite3_column_int64(st, 17);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT; /* the state row is gone */
    }
    sqlite3_finalize(st);
    st = NULL;
    int64_t last = c->last_id;
    for (int l = 0; rc == SQLITE_OK && l < SPOOL_LANES; l++) {
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*),total(size),max(id) FROM %s WHERE id>?1",
                 sp_lane_table[l]);
        rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, last);
            if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t k = sqlite3_column_int64(st, 0);
                c->rows += k;
                c->put_total += k;
                c->bytes += (int64_t)sqlite3_column_double(st, 1);
                if (k && sqlite3_column_int64(st, 2) > c->last_id)
                    c->last_id = sqlite3_column_int64(st, 2);
                rc = SQLITE_OK;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    /* ids up to the ceiling may have been handed out (and reached Kafka)
     * in commits a power cut took back: never again */
    if (c->last_id < sp->ceiling)
        c->last_id = sp->ceiling;
    sp->c = sp->saved;
    if (rc == SQLITE_OK)
        rc = sp_clock_load(sp, clock_ms, clock_wall_ms);
    if (rc)
        return sp_sqerr(sp, rc, "loading state"), rc;
    return SQLITE_OK;
}

static void close_db(struct spool *sp)
{
    for (int i = 0; i < S__COUNT; i++) {
        sqlite3_finalize(sp->st[i]);
        sp->st[i] = NULL;
    }
    for (int l = 0; l < SPOOL_LANES; l++)
        for (int i = 0; i < L__COUNT; i++) {
            sqlite3_finalize(sp->lst[l][i]);
            sp->lst[l][i] = NULL;
        }
    sqlite3_close(sp->db);
    sp->db = NULL;
}

static int try_open(struct spool *sp)
{
    int rc = open_db(sp);
    if (rc == SQLITE_OK)
        rc = load_state(sp);
    if (rc == SQLITE_OK && sp_disk_plan(sp))
        rc = SQLITE_FULL;
    if (rc == SQLITE_OK)
        rc = setup(sp) ? SQLITE_ERROR : SQLITE_OK;
    if (rc == SQLITE_OK)
        sp_reserve_restore(sp);
    if (rc == SQLITE_OK && sp_big_open(sp))
        rc = SQLITE_IOERR;
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
    if (!sp || !(sp->path = strdup(opts->path)) ||
        asprintf(&sp->reserve_path, "%s-reserve", opts->path) < 0) {
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
    if (sp->db && sp->st[S_STATE]) { /* keep the clock for the next start */
        if (sp_begin(sp) == 0) {
            sp->state_dirty = 1;
            if (sp_commit(sp))
                sp_rollback(sp);
        }
    }
    if (sp->db)
        close_db(sp);
    sp_vfs_unregister(&sp->vfs);
    pthread_mutex_destroy(&sp->mu);
    for (int l = 0; l < SPOOL_LANES; l++) {
        idset_fini(&sp->lane[l].inflight);
        free(sp->lane[l].nacked);
    }
    free(sp->scratch);
    free(sp->bits);
    free(sp->arena);
    free(sp->dead_arena);
    free(sp->big_arena);
    free(sp->segs);
    free(sp->path);
    free(sp->reserve_path);
    free(sp);
}

const char *spool_epoch(const struct spool *sp)
{
    return sp->epoch;
}

/* By hand: once per record produced, where snprintf was a twentieth of
 * the drain's time. */
void spool_id_str(const struct spool *sp, int64_t id, char *buf, size_t len)
{
    char d[24];
    size_t e = strlen(sp->epoch), k = 0;
    uint64_t u = id < 0 ? 0 - (uint64_t)id : (uint64_t)id;
    do
        d[k++] = (char)('0' + u % 10);
    while ((u /= 10) && k < sizeof(d));
    if (id < 0)
        d[k++] = '-';
    if (!len)
        return;
    if (e + 1 + k >= len) { /* does not fit: as snprintf would cut it */
        snprintf(buf, len, "%s-%" PRId64, sp->epoch, id);
        return;
    }
    memcpy(buf, sp->epoch, e);
    buf[e++] = '-';
    while (k)
        buf[e++] = d[--k];
    buf[e] = 0;
}

const char *spool_errmsg(const struct spool *sp)
{
    return sp->err;
}