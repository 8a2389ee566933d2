/*
 * spool_dead.c — the dead-letter table: records Kafka refused for good are
 * moved here with a reason (spool_dead), listed, replayed under new ids, or
 * purged. Each is one transaction with its counters (see spool.c).
 *
 * sqlite3 and libc only.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* --- dead letters, expiry, stats -------------------------------------------
 */

static int exec_bind(struct spool *sp, const char *sql, int64_t a, int64_t b,
                     const char *txt, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
    if (rc)
        return sp_sqerr(sp, rc, sql);
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
        return sp_sqerr(sp, rc, sql);
    return 0;
}

/* Inside a transaction: the oldest dead letters beyond the table's bounds
 * go, counted as dead_full. */
int sp_dead_bound(struct spool *sp)
{
    int64_t over_n =
        sp->o.dead_max_records && sp->c.dead > sp->o.dead_max_records
            ? sp->c.dead - sp->o.dead_max_records
            : 0;
    int64_t over_b =
        sp->o.dead_max_bytes && sp->c.dead_bytes > sp->o.dead_max_bytes
            ? sp->c.dead_bytes - sp->o.dead_max_bytes
            : 0;
    int64_t k = 0, b = 0, cut = 0;
    int rc = SQLITE_DONE;
    sqlite3_stmt *st;
    if (!over_n && !over_b)
        return 0;
    if (sqlite3_prepare_v2(sp->db, "SELECT id,size FROM dead ORDER BY id", -1,
                           &st, NULL) != SQLITE_OK)
        return sp_sqerr(sp, SQLITE_ERROR, "dead bound");
    while ((k < over_n || b < over_b) &&
           (rc = sqlite3_step(st)) == SQLITE_ROW) {
        cut = sqlite3_column_int64(st, 0);
        b += sqlite3_column_int64(st, 1);
        k++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "dead bound");
    rc = exec_bind(sp, "DELETE FROM dead WHERE id<=?1", cut, 0, NULL, NULL);
    if (rc == 0) {
        sp->c.dead -= k;
        sp->c.dead_bytes -= b;
        sp->c.dropped[SPOOL_DROP_DEAD_FULL] += k;
        sp->state_dirty = 1;
    }
    return rc;
}

/* The lane that holds id: the one whose in-flight set has it, else the
 * table that has the row; -1 if none. */
static int lane_with(struct spool *sp, int64_t id)
{
    int l = sp_lane_of(sp, id);
    for (int i = 0; l < 0 && i < SPOOL_LANES; i++) {
        char sql[64];
        int64_t has = 0;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE id=?1",
                 sp_lane_table[i]);
        if (exec_bind(sp, sql, id, 0, NULL, &has) == 0 && has)
            l = i;
    }
    return l;
}

static int dead_once(struct spool *sp, int64_t id, const char *reason)
{
    int64_t moved = 0, gone = 0, size = 0;
    int l = lane_with(sp, id);
    char sql[256];
    if (l < 0)
        return sp_fail(sp, -ENOENT, "spool_dead: no record %" PRId64, id);
    snprintf(sql, sizeof(sql),
             "INSERT INTO dead(id,recv_ms,route,size,topic,key,headers,"
             "payload,dead_ms,reason,lane) SELECT id,recv_ms,route,size,"
             "topic,key,headers,payload,?2,?3,%d FROM %s WHERE id=?1",
             l, sp_lane_table[l]);
    int rc = sp_begin(sp);
    if (rc == 0)
        rc = exec_bind(sp, sql, id, sp_wall(sp), reason ? reason : "unknown",
                       &moved);
    if (rc == 0 && moved == 0)
        rc = sp_fail(sp, -ENOENT, "spool_dead: no record %" PRId64, id);
    if (rc == 0)
        rc = exec_bind(sp, "SELECT size FROM dead WHERE id=?1", id, 0, NULL,
                       &size);
    if (rc == 0)
        rc = sp_del_range(sp, l, id, id, &gone);
    if (rc == 0) {
        sp->c.dead++;
        sp->c.dead_bytes += size;
        rc = sp_dead_bound(sp);
    }
    if (rc == 0)
        rc = sp_commit(sp);
    else
        sp_rollback(sp);
    return rc;
}

static int dead_locked(struct spool *sp, int64_t id, const char *reason)
{
    int rc = sp_set_sync(sp, 0);
    if (rc == 0)
        rc = dead_once(sp, id, reason);
    if (rc == -ENOSPC && sp_reserve_release(sp)) /* the disk filled up */
        rc = dead_once(sp, id, reason);
    if (rc == 0)
        for (int l = 0; l < SPOOL_LANES; l++)
            idset_del(&sp->lane[l].inflight, id);
    return rc;
}

int sp_dead_expire(struct spool *sp, int64_t now, int64_t max)
{
    sqlite3_stmt *st;
    int64_t k = 0, b = 0, cut = 0;
    int rc = SQLITE_DONE;
    if (!sp->o.dead_max_age_ms || max <= 0 || sp->c.dead == 0)
        return 0;
    if (sqlite3_prepare_v2(sp->db,
                           "SELECT id,recv_ms,size FROM dead ORDER BY id", -1,
                           &st, NULL) != SQLITE_OK)
        return sp_sqerr(sp, SQLITE_ERROR, "dead expiry");
    while (k < max && b < sp->del_chunk &&
           (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (sp_row_time(sp, id, sqlite3_column_int64(st, 1)) >=
            now - sp->o.dead_max_age_ms)
            break;
        cut = id;
        b += sqlite3_column_int64(st, 2);
        k++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "dead expiry");
    if (k == 0)
        return 0;
    rc = sp_begin(sp);
    if (rc == 0)
        rc = exec_bind(sp, "DELETE FROM dead WHERE id<=?1", cut, 0, NULL, NULL);
    if (rc == 0) {
        sp->c.dead -= k;
        sp->c.dead_bytes -= b;
        sp->c.dropped[SPOOL_DROP_DEAD_EXPIRED] += k;
        sp->state_dirty = 1;
        rc = sp_commit(sp);
    } else {
        sp_rollback(sp);
    }
    return rc ? rc : (int)k;
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
                                "SELECT id,recv_ms,dead_ms,coalesce(length("
                                "payload),(SELECT len FROM big WHERE "
                                "big.id=dead.id),0),"
                                "topic,reason FROM dead ORDER BY dead_ms DESC,"
                                " id DESC LIMIT ?1",
                                -1, &st, NULL);
    if (rc)
        return sp_sqerr(sp, rc, "dead list");
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
            if (sp_arena_fit(&sp->dead_arena, &sp->dead_arena_cap,
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
        return sp_sqerr(sp, rc, "dead list");
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
    int rc = sp_set_sync(sp, sp->o.sync == SPOOL_SYNC_FULL);
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc == 0)
        rc = exec_bind(sp, "SELECT total(size) FROM dead", 0, 0, NULL, &bytes);
    /* new ids in the dead letters' order, each back into its lane */
    for (int l = 0; rc == 0 && l < SPOOL_LANES; l++) {
        char sql[400];
        int64_t got = 0;
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s(id,recv_ms,route,size,topic,key,headers,"
                 "payload) SELECT nid,recv_ms,route,size,topic,key,headers,"
                 "payload FROM (SELECT ?1+row_number() OVER (ORDER BY id)"
                 " AS nid,* FROM dead WHERE lane<%d) WHERE lane=?2",
                 sp_lane_table[l], SP_LANE_BIG);
        rc = exec_bind(sp, sql, sp->c.last_id, l, NULL, &got);
        k += got;
    }
    /* large records are queued again under their own ids (their parts
     * stay where they are); the trigger then leaves them alone */
    int64_t big = 0;
    if (rc == 0)
        rc = exec_bind(sp,
                       "UPDATE big SET state=1 WHERE state=2 AND id IN "
                       "(SELECT id FROM dead WHERE lane=?1)",
                       SP_LANE_BIG, 0, NULL, &big);
    if (rc == 0)
        rc = exec_bind(sp, "DELETE FROM dead", 0, 0, NULL, NULL);
    if (rc == 0) {
        sp->c.last_id += k;
        sp->c.rows += k + big;
        sp->c.big += big;
        sp->c.bytes += bytes;
        sp->c.dead = 0;
        sp->c.dead_bytes = 0;
        sp->state_dirty = 1;
        rc = sp_commit(sp);
    } else {
        sp_rollback(sp);
    }
    if (rc == -ENOSPC)
        sp_fail(sp, rc,
                "spool %s: the dead letters do not fit; nothing "
                "replayed",
                sp->path);
    return rc ? rc : (int)(k + big);
}

int spool_dead_replay(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int rc = replay_locked(sp);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* In chunks of about one delete transaction, so a large table can be
 * purged on a full disk too. */
static int purge_locked(struct spool *sp)
{
    int64_t total = 0;
    int rc = sp_set_sync(sp, 0);
    while (rc == 0 && sp->c.dead > 0) {
        int64_t k = 0, avg = sp->c.dead_bytes / sp->c.dead + ROW_OVERHEAD;
        int64_t rows = sp->del_chunk / (avg > 0 ? avg : 1) + 1;
        rc = sp_begin(sp);
        if (rc == 0)
            rc = exec_bind(sp,
                           "DELETE FROM dead WHERE id IN (SELECT id FROM dead"
                           " ORDER BY id LIMIT ?1)",
                           rows, 0, NULL, &k);
        if (rc == 0 && k == 0)
            k = sp->c.dead; /* the counters were off: the table is empty */
        if (rc == 0) {
            sp->c.purged += k;
            sp->c.dead -= k;
            sp->c.dead_bytes = sp->c.dead > 0
                                   ? sp->c.dead_bytes - k * (avg - ROW_OVERHEAD)
                                   : 0;
            if (sp->c.dead_bytes < 0)
                sp->c.dead_bytes = 0;
            sp->state_dirty = 1;
            rc = sp_commit(sp);
        } else {
            sp_rollback(sp);
        }
        if (rc == -ENOSPC && sp_reserve_release(sp))
            rc = 0; /* and go on: the reserve holds a chunk */
        else if (rc == 0)
            total += k;
    }
    return rc ? rc : (int)total;
}

int spool_dead_purge(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int rc = purge_locked(sp);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}