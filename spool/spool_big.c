/*
 * spool_big.c — large records: the fat lane's queue (see spool.h and
 * "LARGE RECORDS" in spool.c).
 *
 * A large record is one row of big (topic, key, headers, sizes, digest)
 * and its payload in parts, rows of big_part whose rowid is
 * id * SPOOL_BIG_PARTS_MAX + part: one B-tree, no index, a part found by
 * its rowid and read with incremental blob I/O straight into the caller's
 * buffer. The row's state: 0 being written (invisible; what a crash leaves
 * is removed at open), 1 waiting, 2 dead (its dead-letter row in dead has
 * lane SP_LANE_BIG and no payload; a trigger deletes the record with it).
 *
 * Each write is a transaction of whole parts within the WAL's budget, so a
 * payload of any size never makes one transaction larger than a put may
 * be, and room is made (or refused) part by part as for a put. Deleting a
 * record only frees its parts' pages (secure_delete is off), a few pages
 * of WAL whatever its size.
 *
 * sqlite3 and libc only; called with the handle's mutex taken here.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(SP_LANE_BIG == 3, "the dead_big trigger names lane 3");
_Static_assert(SPOOL_BIG_PARTS_MAX == 65536, "the trigger names 65536");

#define ID_MAX      (INT64_MAX / SPOOL_BIG_PARTS_MAX - 1)
#define DIGEST_MAX  64
#define STATE_WRITE 0
#define STATE_WAIT  1
#define STATE_DEAD  2

static int64_t pid_of(int64_t id, uint32_t part)
{
    return id * SPOOL_BIG_PARTS_MAX + (int64_t)part;
}

/* Prepares sql and binds up to three integers (the rest by the caller). */
static int prep(struct spool *sp, const char *sql, sqlite3_stmt **st, int64_t a,
                int64_t b, int64_t c)
{
    int rc = sqlite3_prepare_v2(sp->db, sql, -1, st, NULL);
    if (rc)
        return sp_sqerr(sp, rc, sql);
    int n = sqlite3_bind_parameter_count(*st);
    if (n >= 1)
        sqlite3_bind_int64(*st, 1, a);
    if (n >= 2)
        sqlite3_bind_int64(*st, 2, b);
    if (n >= 3)
        sqlite3_bind_int64(*st, 3, c);
    return 0;
}

/* Runs sql with up to three integers; *out: the first column of its row,
 * or the rows it changed. */
static int exec3(struct spool *sp, const char *sql, int64_t a, int64_t b,
                 int64_t c, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = prep(sp, sql, &st, a, b, c);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE && out) /* a query with no row: 0 */
        *out = sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes(sp->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, sql);
    return 0;
}

/* Inside a transaction: deletes record id and its parts. */
static int delete_record(struct spool *sp, int64_t id)
{
    int rc = exec3(sp, "DELETE FROM big_part WHERE pid BETWEEN ?1 AND ?2",
                   pid_of(id, 0), pid_of(id, SPOOL_BIG_PARTS_MAX - 1), 0, NULL);
    if (rc == 0)
        rc = exec3(sp, "DELETE FROM big WHERE id=?1", id, 0, 0, NULL);
    return rc;
}

/* Inside a transaction: a waiting record leaves the queue (delivered,
 * dropped, expired): deleted, counted out of rows and bytes. */
static int take_out(struct spool *sp, int64_t id, int64_t size)
{
    int rc = delete_record(sp, id);
    if (rc == 0) {
        sp->c.rows--;
        sp->c.big--;
        sp->c.bytes -= size;
        sp->state_dirty = 1;
    }
    return rc;
}

int sp_big_open(struct spool *sp)
{
    int64_t waiting = 0, id = 0;
    int rc =
        exec3(sp, "SELECT count(*) FROM big WHERE state=1", 0, 0, 0, &waiting);
    if (rc)
        return rc;
    sp->saved.big = sp->c.big = waiting;
    /* A crash while a record was written: it was never visible, nobody
     * was told it was stored. Best effort: should this fail (a full
     * disk), it stays invisible and is tried again at the next open. */
    while (exec3(sp, "SELECT id FROM big WHERE state=0 ORDER BY id LIMIT 1", 0,
                 0, 0, &id) == 0 &&
           id > 0) {
        if (sp_begin(sp))
            break;
        sp->state_dirty = 1; /* last_id stays past its id */
        if (delete_record(sp, id) || sp_commit(sp)) {
            sp_rollback(sp);
            break;
        }
        fprintf(stderr,
                "mqtt2kafka: spool %s: removed large record %" PRId64
                " left half written by a crash (its message was not "
                "acknowledged)\n",
                sp->path, id);
        id = 0;
    }
    return 0;
}

/* Pages n bytes of parts take, generously (as estimate_pages in spool.c). */
static int64_t part_pages(size_t n, size_t part_bytes)
{
    int64_t parts = (int64_t)((n + part_bytes - 1) / part_bytes);
    return 2 + (int64_t)(n / (PAGE - 8)) + 2 * parts;
}

size_t spool_big_slice(struct spool *sp, size_t part_bytes)
{
    size_t k = 0;
    if (!part_bytes)
        return 0;
    pthread_mutex_lock(&sp->mu);
    while (k < SPOOL_BIG_PARTS_MAX &&
           part_pages((k + 1) * part_bytes, part_bytes) <= sp->batch_pages)
        k++;
    pthread_mutex_unlock(&sp->mu);
    return k * part_bytes;
}

int64_t spool_big_max(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int64_t m = sp->max_pages / 2 * (PAGE - 8);
    pthread_mutex_unlock(&sp->mu);
    return m;
}

static int begin_locked(struct spool *sp, const struct spool_rec *r,
                        size_t part_bytes, int64_t *id)
{
    char sql[256];
    sqlite3_stmt *st;
    if (!r->topic || (!r->key && r->key_len) ||
        (!r->headers && r->headers_len) || part_bytes == 0 ||
        r->payload_len == 0)
        return sp_fail(sp, -EINVAL, "spool_big_begin: bad record");
    uint64_t parts = (r->payload_len + part_bytes - 1) / part_bytes;
    int64_t max = sp->max_pages / 2 * (PAGE - 8);
    if (parts > SPOOL_BIG_PARTS_MAX)
        return sp_fail(sp, -EINVAL,
                       "spool_big_begin: %zu bytes in parts of %zu are more "
                       "than %d parts",
                       r->payload_len, part_bytes, SPOOL_BIG_PARTS_MAX);
    if ((int64_t)r->payload_len > max)
        return sp_fail(sp, -EFBIG,
                       "a large record of %zu bytes is more than the spool "
                       "holds (%" PRId64 " bytes: half its cap in effect)",
                       r->payload_len, max);
    if (sp->c.last_id >= ID_MAX)
        return sp_fail(sp, -EINVAL, "spool_big_begin: ids exhausted");
    int rc = sp_set_sync(sp, 0); /* invisible until committed */
    if (rc == 0)
        rc = sp_begin(sp);
    int64_t nid = sp->c.last_id + 1;
    if (rc == 0)
        rc = sp_clock_note(sp, nid);
    snprintf(sql, sizeof(sql),
             "INSERT INTO big(id,state,recv_ms,route,size,len,part_bytes,"
             "parts,tag,topic,key,headers) VALUES(?1,0,?2,?3,?4,?5,?6,?7,?8,"
             "?9,?10,?11)");
    if (rc == 0 && (rc = prep(sp, sql, &st, nid, r->recv_ms, r->route)) == 0) {
        sqlite3_bind_int64(
            st, 4, (int64_t)(r->key_len + r->headers_len + r->payload_len));
        sqlite3_bind_int64(st, 5, (int64_t)r->payload_len);
        sqlite3_bind_int64(st, 6, (int64_t)part_bytes);
        sqlite3_bind_int64(st, 7, (int64_t)parts);
        if (r->tag)
            sqlite3_bind_int64(st, 8, r->tag);
        sqlite3_bind_text(st, 9, r->topic, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 10, r->key ? r->key : "", r->key_len,
                            SQLITE_STATIC);
        sqlite3_bind_blob64(st, 11, r->headers ? r->headers : "",
                            r->headers_len, SQLITE_STATIC);
        int step = sqlite3_step(st);
        sqlite3_finalize(st);
        if (step != SQLITE_DONE)
            rc = sp_sqerr(sp, step, "big insert");
    }
    if (rc == 0) {
        sp->c.last_id = nid;
        rc = sp_commit(sp);
    }
    sp_clock_commit(sp, rc == 0);
    if (rc) {
        sp_rollback(sp);
        return rc;
    }
    if (nid > sp->top)
        sp->top = nid;
    *id = nid;
    return 0;
}

int spool_big_begin(struct spool *sp, const struct spool_rec *r,
                    size_t part_bytes, int64_t *id)
{
    pthread_mutex_lock(&sp->mu);
    int rc = begin_locked(sp, r, part_bytes, id);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* The record's part size and count, when it is in state `want`. */
static int shape(struct spool *sp, int64_t id, int want, size_t *part_bytes,
                 uint32_t *parts, int64_t *len)
{
    sqlite3_stmt *st;
    int rc = prep(sp, "SELECT state,part_bytes,parts,len FROM big WHERE id=?1",
                  &st, id, 0, 0);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_int(st, 0) == want) {
        *part_bytes = (size_t)sqlite3_column_int64(st, 1);
        *parts = (uint32_t)sqlite3_column_int64(st, 2);
        *len = sqlite3_column_int64(st, 3);
    } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
        rc = sp_fail(sp, -ENOENT, "no large record %" PRId64 " in that state",
                     id);
    } else {
        rc = sp_sqerr(sp, step, "big shape");
    }
    sqlite3_finalize(st);
    return rc;
}

static int write_parts(struct spool *sp, int64_t id, uint32_t first,
                       const unsigned char *data, size_t n, size_t pb,
                       uint32_t parts, int64_t len)
{
    sqlite3_stmt *st;
    int rc =
        prep(sp, "INSERT INTO big_part(pid,data) VALUES(?1,?2)", &st, 0, 0, 0);
    for (size_t off = 0; rc == 0 && off < n; off += pb, first++) {
        size_t k = n - off < pb ? n - off : pb;
        int64_t at = (int64_t)first * (int64_t)pb;
        int64_t want = len - at < (int64_t)pb ? len - at : (int64_t)pb;
        if (first >= parts || (int64_t)k != want) /* short: the last only */
            rc = sp_fail(sp, -EINVAL,
                         "spool_big_write: part %" PRIu32 " of record %" PRId64
                         " does not fit its shape",
                         first, id);
        else {
            sqlite3_bind_int64(st, 1, pid_of(id, first));
            sqlite3_bind_blob64(st, 2, data + off, k, SQLITE_STATIC);
            int step = sqlite3_step(st);
            sqlite3_reset(st);
            if (step != SQLITE_DONE)
                rc = sp_sqerr(sp, step, "big part insert");
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int write_locked(struct spool *sp, int64_t id, uint32_t first,
                        const void *data, size_t n)
{
    size_t pb = 0;
    uint32_t parts = 0;
    int64_t len = 0;
    int rc = shape(sp, id, STATE_WRITE, &pb, &parts, &len);
    if (rc)
        return rc;
    int64_t need = part_pages(n, pb);
    if (need > sp->batch_pages)
        return sp_fail(sp, -EINVAL,
                       "spool_big_write: %zu bytes are more than one "
                       "transaction holds",
                       n);
    sp_reserve_restore(sp);
    rc = sp_set_sync(sp, 0);
    for (int attempt = 0; rc == 0; attempt++) {
        rc = sp_begin(sp);
        if (rc == 0)
            rc = sp_make_room(sp, need + attempt * (sp->max_pages / 16 + 4));
        if (rc == 0)
            rc = write_parts(sp, id, first, data, n, pb, parts, len);
        if (rc == 0)
            rc = sp_commit(sp);
        if (rc == 0)
            break;
        sp_rollback(sp);
        /* the estimate was short or the disk filled under us: drop_oldest
         * makes more room and tries again */
        if (rc != -ENOSPC || sp->o.on_full == SPOOL_BACKPRESSURE ||
            attempt >= 3)
            break;
        rc = 0;
    }
    return rc;
}

int spool_big_write(struct spool *sp, int64_t id, uint32_t first,
                    const void *data, size_t n)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&sp->mu);
    int rc = write_locked(sp, id, first, data, n);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int commit_locked(struct spool *sp, int64_t id, const void *digest,
                         size_t dlen)
{
    size_t pb;
    uint32_t parts;
    int64_t len, have = 0, size = 0;
    sqlite3_stmt *st;
    if (dlen > DIGEST_MAX || (!digest && dlen))
        return sp_fail(sp, -EINVAL, "spool_big_commit: digest too long");
    int rc = shape(sp, id, STATE_WRITE, &pb, &parts, &len);
    if (rc == 0)
        rc = exec3(
            sp, "SELECT count(*) FROM big_part WHERE pid BETWEEN ?1 AND ?2",
            pid_of(id, 0), pid_of(id, SPOOL_BIG_PARTS_MAX - 1), 0, &have);
    if (rc == 0 && have != (int64_t)parts)
        rc = sp_fail(sp, -EINVAL,
                     "spool_big_commit: record %" PRId64 " has %" PRId64
                     " of %" PRIu32 " parts",
                     id, have, parts);
    /* its id may reach Kafka at once: never taken back by a power cut */
    if (rc == 0)
        rc = sp_set_sync(sp, 1);
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc == 0)
        rc = exec3(sp, "SELECT size FROM big WHERE id=?1", id, 0, 0, &size);
    if (rc == 0 &&
        (rc = prep(sp, "UPDATE big SET state=1,digest=?2 WHERE id=?1", &st, id,
                   0, 0)) == 0) {
        sqlite3_bind_blob64(st, 2, digest ? digest : "", dlen, SQLITE_STATIC);
        int step = sqlite3_step(st);
        sqlite3_finalize(st);
        if (step != SQLITE_DONE)
            rc = sp_sqerr(sp, step, "big commit");
    }
    if (rc == 0) {
        sp->c.rows++;
        sp->c.big++;
        sp->c.put_total++;
        sp->c.bytes += size;
        sp->state_dirty = 1; /* rows in the state row: open counts them */
        rc = sp_commit(sp);
    } else {
        sp_rollback(sp);
    }
    return rc;
}

int spool_big_commit(struct spool *sp, int64_t id, const void *digest,
                     size_t len)
{
    pthread_mutex_lock(&sp->mu);
    int rc = commit_locked(sp, id, digest, len);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int abort_locked(struct spool *sp, int64_t id)
{
    int64_t state = -1;
    int rc = sp_set_sync(sp, 0);
    if (rc == 0)
        rc = exec3(sp, "SELECT state FROM big WHERE id=?1", id, 0, 0, &state);
    if (rc || state != STATE_WRITE)
        return rc;
    rc = sp_begin(sp);
    if (rc == 0) {
        sp->state_dirty = 1; /* last_id stays past its id */
        rc = delete_record(sp, id);
    }
    if (rc == 0)
        rc = sp_commit(sp);
    else
        sp_rollback(sp);
    if (rc == -ENOSPC && sp_reserve_release(sp))
        return abort_locked(sp, id);
    return rc;
}

int spool_big_abort(struct spool *sp, int64_t id)
{
    pthread_mutex_lock(&sp->mu);
    int rc = abort_locked(sp, id);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void spool_big_hold(struct spool *sp, int64_t id)
{
    pthread_mutex_lock(&sp->mu);
    sp->big_out = id > 0 ? id : 0;
    pthread_mutex_unlock(&sp->mu);
}

int64_t spool_big_backlog(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int64_t n = sp->saved.big;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

/* Copies column col of st into the big arena at *used; its offset. */
static size_t keep_col(struct spool *sp, sqlite3_stmt *st, int col,
                       size_t *used, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col), off = *used;
    if (sp_arena_fit(&sp->big_arena, &sp->big_arena_cap, off + n + 1))
        return SIZE_MAX;
    if (n)
        memcpy(sp->big_arena + off, p, n);
    sp->big_arena[off + n] = 0;
    *used = off + n + 1;
    *len = n;
    return off;
}

static int peek_locked(struct spool *sp, struct spool_big *out)
{
    sqlite3_stmt *st;
    size_t used = 0, o[4], l[4];
    int rc = prep(sp,
                  "SELECT id,recv_ms,route,len,part_bytes,parts,topic,key,"
                  "headers,digest FROM big WHERE state=1 ORDER BY id LIMIT 1",
                  &st, 0, 0, 0);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(st, 0);
        out->recv_ms = sqlite3_column_int64(st, 1);
        out->route = sqlite3_column_int(st, 2);
        out->len = sqlite3_column_int64(st, 3);
        out->part_bytes = (size_t)sqlite3_column_int64(st, 4);
        out->parts = (uint32_t)sqlite3_column_int64(st, 5);
        for (int i = 0; i < 4; i++)
            if ((o[i] = keep_col(sp, st, 6 + i, &used, &l[i])) == SIZE_MAX)
                rc = sp_fail(sp, -ENOMEM, "spool_big_peek: out of memory");
        if (rc == 0) {
            out->topic = (const char *)sp->big_arena + o[0];
            out->key = l[1] ? sp->big_arena + o[1] : NULL;
            out->key_len = l[1];
            out->headers = sp->big_arena + o[2];
            out->headers_len = l[2];
            out->digest = sp->big_arena + o[3];
            out->digest_len = l[3];
            rc = 1;
        }
    } else if (step != SQLITE_DONE) {
        rc = sp_sqerr(sp, step, "big peek");
    }
    sqlite3_finalize(st);
    return rc;
}

int spool_big_peek(struct spool *sp, struct spool_big *out)
{
    pthread_mutex_lock(&sp->mu);
    int rc = sp->saved.big ? peek_locked(sp, out) : 0;
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int read_locked(struct spool *sp, int64_t id, uint32_t part, void *buf,
                       size_t cap, size_t *len)
{
    sqlite3_blob *b = NULL;
    int rc = sqlite3_blob_open(sp->db, "main", "big_part", "data",
                               pid_of(id, part), 0, &b);
    if (rc != SQLITE_OK) {
        sqlite3_blob_close(b);
        if ((rc & 0xff) == SQLITE_ERROR) /* no such row */
            return sp_fail(sp, -ENOENT,
                           "large record %" PRId64 " has no part %" PRIu32, id,
                           part);
        return sp_sqerr(sp, rc, "big part open");
    }
    int n = sqlite3_blob_bytes(b);
    if (n < 0 || (size_t)n > cap) {
        sqlite3_blob_close(b);
        return sp_fail(sp, -EINVAL,
                       "part %" PRIu32 " of large record %" PRId64
                       " is larger (%d bytes) than the buffer",
                       part, id, n);
    }
    rc = sqlite3_blob_read(b, buf, n, 0);
    sqlite3_blob_close(b);
    if (rc != SQLITE_OK)
        return sp_sqerr(sp, rc, "big part read");
    *len = (size_t)n;
    return 0;
}

int spool_big_read(struct spool *sp, int64_t id, uint32_t part, void *buf,
                   size_t cap, size_t *len)
{
    pthread_mutex_lock(&sp->mu);
    int rc = read_locked(sp, id, part, buf, cap, len);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* The state and size of record id; -ENOENT when absent. */
static int state_of(struct spool *sp, int64_t id, int64_t *state, int64_t *size)
{
    sqlite3_stmt *st;
    int rc = prep(sp, "SELECT state,size FROM big WHERE id=?1", &st, id, 0, 0);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *state = sqlite3_column_int64(st, 0);
        *size = sqlite3_column_int64(st, 1);
    } else {
        rc = step == SQLITE_DONE
                 ? sp_fail(sp, -ENOENT, "no large record %" PRId64, id)
                 : sp_sqerr(sp, step, "big state");
    }
    sqlite3_finalize(st);
    return rc;
}

static int ack_once(struct spool *sp, int64_t id)
{
    int64_t state = 0, size = 0;
    int rc = state_of(sp, id, &state, &size);
    if (rc == 0 && state != STATE_WAIT)
        rc =
            sp_fail(sp, -ENOENT, "large record %" PRId64 " is not waiting", id);
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc)
        return rc;
    /* its tag outlives it, as a lane's row's does (spool_recent) */
    if (id >= sp->top - TAGS_KEEP)
        rc = exec3(sp,
                   "INSERT OR REPLACE INTO tags(id,tag) SELECT id,tag FROM big"
                   " WHERE id=?1 AND tag IS NOT NULL",
                   id, 0, 0, NULL);
    if (rc == 0)
        rc = take_out(sp, id, size);
    if (rc == 0) {
        sp->c.acked_total++;
        rc = sp_commit(sp);
    }
    if (rc) /* still there: still held, if it was */
        sp_rollback(sp);
    else if (sp->big_out == id)
        sp->big_out = 0;
    return rc;
}

int spool_big_ack(struct spool *sp, int64_t id)
{
    pthread_mutex_lock(&sp->mu);
    int rc = sp_set_sync(sp, 0);
    if (rc == 0)
        rc = ack_once(sp, id);
    if (rc == -ENOSPC && sp_reserve_release(sp))
        rc = ack_once(sp, id);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static int dead_once(struct spool *sp, int64_t id, const char *reason)
{
    int64_t state = 0, size = 0, moved = 0;
    sqlite3_stmt *st;
    int rc = state_of(sp, id, &state, &size);
    if (rc == 0 && state != STATE_WAIT)
        rc =
            sp_fail(sp, -ENOENT, "large record %" PRId64 " is not waiting", id);
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc)
        return rc;
    rc = prep(sp,
              "INSERT INTO dead(id,recv_ms,route,size,topic,key,headers,"
              "payload,dead_ms,reason,lane) SELECT id,recv_ms,route,size,"
              "topic,key,headers,NULL,?2,?3,3 FROM big WHERE id=?1",
              &st, id, sp_wall(sp), 0);
    if (rc == 0) {
        sqlite3_bind_text(st, 3, reason ? reason : "unknown", -1,
                          SQLITE_STATIC);
        int step = sqlite3_step(st);
        moved = sqlite3_changes(sp->db);
        sqlite3_finalize(st);
        if (step != SQLITE_DONE)
            rc = sp_sqerr(sp, step, "big dead");
        else if (moved != 1)
            rc = sp_fail(sp, -ENOENT, "no large record %" PRId64, id);
    }
    if (rc == 0)
        rc = exec3(sp, "UPDATE big SET state=2 WHERE id=?1", id, 0, 0, NULL);
    if (rc == 0) {
        sp->c.rows--;
        sp->c.big--;
        sp->c.bytes -= size;
        sp->c.dead++;
        sp->c.dead_bytes += size;
        sp->state_dirty = 1;
        rc = sp_dead_bound(sp);
    }
    if (rc == 0)
        rc = sp_commit(sp);
    else
        sp_rollback(sp);
    if (rc == 0 && sp->big_out == id)
        sp->big_out = 0;
    return rc;
}

int spool_big_dead(struct spool *sp, int64_t id, const char *reason)
{
    pthread_mutex_lock(&sp->mu);
    int rc = sp_set_sync(sp, 0);
    if (rc == 0)
        rc = dead_once(sp, id, reason);
    if (rc == -ENOSPC && sp_reserve_release(sp))
        rc = dead_once(sp, id, reason);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* The oldest waiting record not held (in flight): its id and size; 0:
 * none. */
static int oldest(struct spool *sp, int64_t *id, int64_t *recv_ms,
                  int64_t *size)
{
    sqlite3_stmt *st;
    int rc = prep(sp,
                  "SELECT id,recv_ms,size FROM big WHERE state=1 AND id<>?1"
                  " ORDER BY id LIMIT 1",
                  &st, sp->big_out, 0, 0);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    *id = 0;
    if (step == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *recv_ms = sqlite3_column_int64(st, 1);
        *size = sqlite3_column_int64(st, 2);
    } else if (step != SQLITE_DONE) {
        rc = sp_sqerr(sp, step, "big oldest");
    }
    sqlite3_finalize(st);
    return rc;
}

int sp_big_drop(struct spool *sp, int64_t *rows)
{
    int64_t id, recv, size;
    *rows = 0;
    if (!sp->c.big)
        return 0;
    int rc = oldest(sp, &id, &recv, &size);
    if (rc || !id)
        return rc;
    rc = take_out(sp, id, size);
    if (rc == 0) {
        sp->c.dropped[SPOOL_DROP_FULL]++;
        *rows = 1;
    }
    return rc;
}

int sp_big_expire(struct spool *sp, int64_t cutoff, int64_t max)
{
    int64_t id, recv, size, k = 0;
    int rc = 0;
    while (rc == 0 && k < max && sp->saved.big) {
        rc = oldest(sp, &id, &recv, &size);
        if (rc || !id || sp_row_time(sp, id, recv) >= cutoff)
            break;
        rc = sp_begin(sp);
        if (rc == 0)
            rc = take_out(sp, id, size);
        if (rc == 0) {
            sp->c.dropped[SPOOL_DROP_EXPIRED]++;
            rc = sp_commit(sp);
        } else {
            sp_rollback(sp);
        }
        k += rc == 0;
    }
    return rc ? rc : (int)k;
}
