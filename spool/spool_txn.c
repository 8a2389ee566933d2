/*
 * spool_txn.c — the spool's prepared statements and the transaction
 * helpers every spool file uses: one place for how a change is begun,
 * counted, committed or rolled back (see "IDS ARE NEVER REUSED" in
 * spool.c for why a commit that deleted rows writes the state row).
 *
 * sqlite3 and libc only; called with the handle's mutex held.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *const sp_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_STATE] = "UPDATE state SET last_id=?1,put_total=?2,acked_total=?3,"
                "dropped_full=?4,dropped_expired=?5,dead_purged=?6,rows=?7,"
                "dead_dropped_full=?9,dead_dropped_expired=?10,clock_ms=?11,"
                "clock_wall_ms=?12,"
                "bytes=?8",
    [S_PAGES] = "PRAGMA page_count",
    [S_FREE] = "PRAGMA freelist_count",
    [S_RECENT] = "SELECT id,tag FROM rec WHERE tag IS NOT NULL UNION ALL"
                 " SELECT id,tag FROM rec_fast WHERE tag IS NOT NULL UNION"
                 " ALL SELECT id,tag FROM rec_bulk WHERE tag IS NOT NULL"
                 " UNION ALL SELECT id,tag FROM big WHERE tag IS NOT NULL"
                 " AND state=1"
                 " UNION ALL SELECT id,tag FROM tags ORDER BY id DESC"
                 " LIMIT ?1",
    [S_PRUNE_TAGS] = "DELETE FROM tags WHERE id<=?1",
    [S_CEILING] = "UPDATE state SET id_ceiling=?1",
};

const char *const sp_lane_table[SPOOL_LANES] = {
    [SPOOL_LANE_NORMAL] = "rec",
    [SPOOL_LANE_FAST] = "rec_fast",
    [SPOOL_LANE_BULK] = "rec_bulk",
};

/* %s is the lane's table. */
const char *const lane_sql[L__COUNT] = {
    [L_INSERT] = "INSERT INTO %s(id,recv_ms,route,size,topic,key,headers,"
                 "payload,tag) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    [L_PEEK] = "SELECT id,recv_ms,route,topic,key,headers,payload FROM %s"
               " WHERE id>?1 ORDER BY id",
    [L_PEEK_ONE] = "SELECT id,recv_ms,route,topic,key,headers,payload FROM"
                   " %s WHERE id=?1",
    [L_SUM] = "SELECT count(*),total(size) FROM %s WHERE id BETWEEN ?1"
              " AND ?2",
    [L_DEL] = "DELETE FROM %s WHERE id BETWEEN ?1 AND ?2",
    [L_SCAN] = "SELECT id,recv_ms,size,length(topic) FROM %s WHERE id>?1"
               " ORDER BY id",
    [L_KEEP_TAGS] = "INSERT OR REPLACE INTO tags(id,tag) SELECT id,tag FROM"
                    " %s WHERE id BETWEEN ?1 AND ?2 AND tag IS NOT NULL",
};

void sp_lane_sql(char *buf, size_t len, int which, int lane)
{
    const char *t = lane_sql[which], *at = strstr(t, "%s");
    snprintf(buf, len, "%.*s%s%s", (int)(at - t), t, sp_lane_table[lane],
             at + 2);
}

int sp_lane_of(const struct spool *sp, int64_t id)
{
    for (int l = 0; l < SPOOL_LANES; l++)
        if (idset_has(&sp->lane[l].inflight, id))
            return l;
    return -1;
}

int sp_fail(struct spool *sp, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp->err, sizeof(sp->err), fmt, ap);
    va_end(ap);
    return rc;
}

/* Maps a SQLite failure to a negative errno and remembers why. */
int sp_sqerr(struct spool *sp, int rc, const char *what)
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
    return sp_fail(sp, e, "spool %s: %s: %s (sqlite %d)", sp->path, what,
                   sqlite3_errmsg(sp->db), rc);
}

int64_t sp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- small SQLite helpers --------------------------------------------------
 */

int sp_run(struct spool *sp, int which)
{
    sqlite3_stmt *st = sp->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sp_sqerr(sp, rc, sp_sql[which]);
    return 0;
}

int64_t sp_pragma_int(struct spool *sp, int which)
{
    sqlite3_stmt *st = sp->st[which];
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

int sp_set_sync(struct spool *sp, int full)
{
    if (sp->sync_now == full)
        return 0;
    /* Executed, never prepared: a PRAGMA takes effect when it is compiled,
     * so stepping a prepared "synchronous=FULL" again changes nothing, and
     * merely preparing "synchronous=NORMAL" (or SQLite re-preparing it
     * after a schema change) would switch the connection to NORMAL. */
    int rc = sqlite3_exec(
        sp->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
        NULL, NULL, NULL);
    if (rc)
        return sp_sqerr(sp, rc, "PRAGMA synchronous");
    sp->sync_now = full;
    return 0;
}

int sp_begin(struct spool *sp)
{
    sp->state_dirty = 0;
    sp->c = sp->saved;
    return sp_run(sp, S_BEGIN);
}

void sp_rollback(struct spool *sp)
{
    if (!sqlite3_get_autocommit(sp->db))
        sp_run(sp, S_ROLLBACK);
    sp->c = sp->saved;
}

/* Writes the state row if this transaction deleted rows, then commits. */
int sp_commit(struct spool *sp)
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
        sqlite3_bind_int64(st, 9, sp->c.dropped[SPOOL_DROP_DEAD_FULL]);
        sqlite3_bind_int64(st, 10, sp->c.dropped[SPOOL_DROP_DEAD_EXPIRED]);
        sqlite3_bind_int64(st, 11, sp_clock(sp));
        sqlite3_bind_int64(st, 12, sp_wall(sp));
        rc = sp_run(sp, S_STATE);
    }
    if (rc == 0)
        rc = sp_run(sp, S_COMMIT);
    if (rc) {
        int save = rc;
        char msg[sizeof(sp->err)];
        memcpy(msg, sp->err, sizeof(msg));
        sp_rollback(sp);
        memcpy(sp->err, msg, sizeof(msg));
        return save;
    }
    sp->saved = sp->c;
    return 0;
}

/* Deletes one lane's rows [lo, hi] inside the open transaction. */
static int del_lane(struct spool *sp, int lane, int64_t lo, int64_t hi,
                    int64_t *rows)
{
    sqlite3_stmt *st = sp->lst[lane][L_SUM];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    int64_t k = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t b = rc == SQLITE_ROW ? (int64_t)sqlite3_column_double(st, 1) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return sp_sqerr(sp, rc, "sum");
    *rows += k;
    if (!k)
        return 0;
    st = sp->lst[lane][L_DEL];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "delete");
    sp->c.rows -= k;
    sp->c.bytes -= b;
    sp->state_dirty = 1;
    return 0;
}

/* The fast way, for rows in flight whose sizes the spool kept: no pass
 * over the rows to count them first (that was a third of an ack). */
int sp_del_known(struct spool *sp, int lane, int64_t lo, int64_t hi,
                 int64_t rows, int64_t bytes)
{
    sqlite3_stmt *st = sp->lst[lane][L_DEL];
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "delete");
    if (sqlite3_changes64(sp->db) != rows)
        return sp_fail(sp, -ESTALE,
                       "ack: %" PRId64 " rows in flight in %" PRId64
                       "..%" PRId64 ", the table held %lld",
                       rows, lo, hi, (long long)sqlite3_changes64(sp->db));
    sp->c.rows -= rows;
    sp->c.bytes -= bytes;
    sp->state_dirty = 1;
    return 0;
}

/* Deletes rows [lo, hi] inside the open transaction; counts them. Ids are
 * unique across lanes, so a range of ids that all go is safe to delete in
 * every lane (lane -1). */
int sp_del_range(struct spool *sp, int lane, int64_t lo, int64_t hi,
                 int64_t *rows)
{
    int rc = 0;
    *rows = 0;
    for (int l = 0; rc == 0 && l < SPOOL_LANES; l++)
        if (lane < 0 || lane == l)
            rc = del_lane(sp, l, lo, hi, rows);
    return rc;
}

/*
 * Walks lane's table from the oldest row after id `from` and returns in *cut
 * the id of the last row of the prefix that either covers want_bytes of pages
 * (want_bytes > 0) or is older than older_ms (older_ms > 0), at most
 * max_rows rows.
 */
int sp_scan_prefix(struct spool *sp, int lane, int64_t from, int64_t want_bytes,
                   int64_t older_ms, int64_t max_rows, int64_t *cut, int64_t *n)
{
    sqlite3_stmt *st = sp->lst[lane][L_SCAN];
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
        return sp_sqerr(sp, rc, "scan");
    return 0;
}

int sp_arena_fit(unsigned char **a, size_t *cap, size_t need)
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

int64_t sp_file_size(const char *path, const char *suffix)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}
