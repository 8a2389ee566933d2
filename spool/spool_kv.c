/*
 * spool_kv.c — small named values kept in the spool file (table kv,
 * schema 4), for a caller's state that must survive a restart alongside
 * the queue (the bridge keeps Sparkplug B alias tables there). Generic:
 * keys are text, values opaque bytes; nothing here knows what they mean.
 *
 * Each call is its own transaction (one statement in SQLite's autocommit,
 * or BEGIN..COMMIT for spool_kv_put_n), under the handle's mutex, with the
 * handle's synchronous level. Calls are rare (a device's birth; the
 * bridge gathers a burst's into one spool_kv_put_n), so statements are
 * prepared per call.
 *
 * sqlite3 and libc only.
 */
#include <errno.h>
#include <string.h>

#include "spool/spool_int.h"

static int key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    return n > 0 && n <= SPOOL_KV_KEY_MAX;
}

/* Prepares sql and binds key (and v) to ?1 (?2). */
static int prep(struct spool *sp, const char *sql, const char *key,
                const void *v, size_t len, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(sp->db, sql, -1, st, NULL);
    if (rc)
        return sp_sqerr(sp, rc, "kv");
    sqlite3_bind_text(*st, 1, key, -1, SQLITE_STATIC);
    if (v)
        sqlite3_bind_blob(*st, 2, len ? v : "", (int)len, SQLITE_STATIC);
    return 0;
}

static int run(struct spool *sp, const char *sql, const char *key,
               const void *v, size_t len)
{
    sqlite3_stmt *st;
    int rc;
    pthread_mutex_lock(&sp->mu);
    rc = prep(sp, sql, key, v, len, &st);
    if (rc == 0) {
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE)
            rc = (s & 0xff) == SQLITE_FULL ? sp_fail(sp, -ENOSPC, "kv: full")
                                           : sp_sqerr(sp, s, "kv");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_kv_put(struct spool *sp, const char *key, const void *v, size_t len)
{
    if (!key_ok(key) || len > SPOOL_KV_MAX)
        return -EINVAL;
    return run(sp, "INSERT OR REPLACE INTO kv(k,v) VALUES(?1,?2)", key,
               v ? v : "", len);
}

int spool_kv_put_n(struct spool *sp, const struct spool_kv *kv, size_t n)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, s;
    for (size_t i = 0; i < n; i++)
        if (!key_ok(kv[i].key) || kv[i].len > SPOOL_KV_MAX)
            return -EINVAL;
    pthread_mutex_lock(&sp->mu);
    if ((s = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)))
        rc = sp_sqerr(sp, s, "kv");
    else if ((s = sqlite3_prepare_v2(
                  sp->db, "INSERT OR REPLACE INTO kv(k,v) VALUES(?1,?2)", -1,
                  &st, NULL)))
        rc = sp_sqerr(sp, s, "kv");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_text(st, 1, kv[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, kv[i].len ? kv[i].v : "", (int)kv[i].len,
                          SQLITE_STATIC);
        if ((s = sqlite3_step(st)) != SQLITE_DONE)
            rc = (s & 0xff) == SQLITE_FULL ? sp_fail(sp, -ENOSPC, "kv: full")
                                           : sp_sqerr(sp, s, "kv");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == 0 && (s = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL)))
        rc = sp_sqerr(sp, s, "kv");
    if (rc && !sqlite3_get_autocommit(sp->db))
        sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_kv_del(struct spool *sp, const char *key)
{
    if (!key_ok(key))
        return -EINVAL;
    return run(sp, "DELETE FROM kv WHERE k=?1", key, NULL, 0);
}

int spool_kv_get(struct spool *sp, const char *key, void *buf, size_t cap,
                 size_t *len)
{
    sqlite3_stmt *st;
    int rc;
    if (!key_ok(key))
        return -EINVAL;
    pthread_mutex_lock(&sp->mu);
    rc = prep(sp, "SELECT v FROM kv WHERE k=?1", key, NULL, 0, &st);
    if (rc == 0) {
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            *len = n;
            if (n > cap)
                rc = -ENOSPC;
            else if (n)
                memcpy(buf, sqlite3_column_blob(st, 0), n);
        } else {
            rc = s == SQLITE_DONE ? -ENOENT : sp_sqerr(sp, s, "kv");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_kv_list(struct spool *sp, const char *prefix, spool_kv_fn fn,
                  void *ud)
{
    sqlite3_stmt *st;
    size_t pl = strlen(prefix);
    int rc, s;
    pthread_mutex_lock(&sp->mu);
    rc = prep(sp, "SELECT k,v FROM kv WHERE substr(k,1,?2)=?1 ORDER BY k",
              prefix, NULL, 0, &st);
    if (rc == 0) {
        sqlite3_bind_int64(st, 2, (sqlite3_int64)pl);
        while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            const void *v = sqlite3_column_blob(st, 1);
            size_t n = (size_t)sqlite3_column_bytes(st, 1);
            if (k)
                rc = fn(ud, k, v ? v : "", n);
        }
        if (rc == 0 && s != SQLITE_DONE)
            rc = sp_sqerr(sp, s, "kv");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&sp->mu);
    return rc;
}
