/*
 * spool.c — the SQLite store-and-forward queue between MQTT and Kafka.
 *
 * Depends on sqlite3 and libc only; it knows nothing of MQTT, Kafka or the
 * daemon. Everything below is the specification of the whole module; the
 * code follows it. This file holds put, spills, peek, expiry and stats;
 * the rest of the module:
 *
 *   spool_ack.c    what comes back from Kafka: ack, nack, rewind
 *   spool_open.c   open, check, set a corrupt file aside, migrate, load
 *   spool_dead.c   the dead-letter table: move, bound, list, replay, purge
 *   spool_txn.c    prepared statements, begin/commit/rollback, range deletes
 *   spool_disk.c   the filesystem: the cap in effect, the reserve
 *   spool_clock.c  the spool clock that ages are measured on
 *   spool_kv.c     small named values a caller keeps across restarts
 *   spool_vfs.c    the system's VFS, counting bytes written and fsyncs
 *   idset.c        the in-flight id set (pure)
 *   spool_int.h    the handle, shared by these files only
 *
 * THE FILE
 *
 * One SQLite database in WAL mode, page size 4096, user_version 4:
 *
 *   state(one=1, epoch, created_ms, last_id, put_total, acked_total,
 *         dropped_full, dropped_expired, dead_purged, rows, bytes,
 *         clock_ms, clock_wall_ms, dead_dropped_full, dead_dropped_expired)
 *   clock(id INTEGER PRIMARY KEY, off)          (schema 3, see TIME)
 *   kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID (schema 4, spool_kv.c)
 *   tags(id INTEGER PRIMARY KEY, tag)           (schema 2)
 *   rec(id INTEGER PRIMARY KEY, recv_ms, route, size, topic, key, headers,
 *       payload, tag)
 *   dead(id INTEGER PRIMARY KEY, recv_ms, route, size, topic, key, headers,
 *        payload, reason, dead_ms)
 *
 *   rec_fast, rec_bulk                          (schema 6, as rec; see LANES)
 *   big(id INTEGER PRIMARY KEY, state, recv_ms, route, size, len,
 *       part_bytes, parts, tag, digest, topic, key, headers)
 *   big_part(pid INTEGER PRIMARY KEY, data)     (schema 7, see LARGE RECORDS)
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
 * LANES. rec, rec_fast and rec_bulk are three queues (the normal, fast and
 * bulk lanes) that share one id sequence, so ids still grow in put order
 * across them and (epoch, id) names a record whatever its lane. Each lane
 * has its own in-flight set, hi and nacked list; a peek of one lane reads
 * only its table, so a backlog in one never slows another's peek. An ack or
 * a nack names ids only; both find the lane by its in-flight set, which
 * keeps each record's size, so a run of ids that all go is one delete on
 * its lane's table, counted from memory (spool_ack.c); ids not in flight
 * are counted from the rows and deleted from every lane's table (they are
 * unique). drop_oldest takes bulk's oldest rows first, then normal's, then
 * fast's; expiry looks at all three. The dead-letter table keeps each
 * row's lane (schema 6), and a replay puts it back there.
 *
 * LARGE RECORDS (spool_big.c). A payload larger than one put may be is
 * stored once, in parts: big holds the record without its payload, and
 * big_part its parts, rowid id * 65536 + part, each at most part_bytes.
 * spool_big_begin() inserts the row in state 0 (being written), invisible
 * to everything else; each spool_big_write() puts whole parts in a
 * transaction of its own, at most half the WAL budget, making room part by
 * part as a put does; spool_big_commit() turns it to state 1 (waiting) in
 * one small fsync'ed transaction with the counters and the state row. A
 * crash before the commit leaves a row in state 0: open deletes it and its
 * parts (nobody was told it was stored), and last_id stays past its id.
 * The parts are read one at a time with incremental blob I/O. Waiting
 * large records are a queue of their own, the fat lane, handed out one at
 * a time and held (big_out, memory only) while chunks of it are in
 * flight; they count in rows and bytes; drop_oldest takes the oldest one
 * not held after bulk's rows and before normal's; expiry takes them by
 * age, the held one excepted. A large dead letter is a row of
 * dead in lane 3 without a payload, the record staying in big in state 2;
 * a trigger deletes it (and its parts) with its dead row (bounds, expiry,
 * purge), and a replay turns it back to state 1 under the same id.
 * Deleting a record frees its pages without rewriting them
 * (secure_delete is off): a few pages of WAL whatever its size.
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
 *   dead letter --dead_max_records/bytes, dead_max_age--> (deleted, the
 *     oldest first, counted as dead_full / dead_expired): a route Kafka
 *     refuses for good cannot fill the spool and stall the others
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
 * SIZE CAP. The cap in effect is max_bytes, or what the filesystem can hold
 * at open when that is less (free space plus the spool's own files, less a
 * slack of 1% of the filesystem, 64 KiB to 64 MiB, left to others); 0 means
 * the filesystem alone. Out of it come the WAL's budget (an eighth, 256 KiB
 * to 8 MiB) and a reserve of the same size (see A FULL DISK); the rest is
 * max_page_count. Before each put the needed pages are estimated; if the
 * used pages (page_count - freelist_count) plus those exceed the cap now
 * (max_page_count, or less when the disk has less room left: the slack,
 * the WAL's growth and the reserve stay free), drop_oldest deletes the
 * oldest rows not yet handed out by peek (rows in flight to Kafka may
 * still be delivered: they are not "dropped") in one range delete, freeing
 * the shortfall plus 1/32 of the cap so that the next puts are plain
 * inserts; backpressure refuses the put. If SQLite still hits a cap (the
 * estimate was short, or the disk filled under us), the put is rolled back
 * and retried with a bigger room. One put holds at most half the WAL
 * budget (spool_fits, spool_max_record).
 *
 * A FULL DISK. The filesystem is shared (logs, the broker's persistence), so
 * it can fill before the cap. Deletes need WAL space too, and a spool that
 * cannot delete delivered rows cannot recover. So a reserve file
 * "<path>-reserve", the size of the WAL budget, is held; when an ack, a
 * dead-letter move or an expiry fails for want of disk, the reserve is
 * removed and the delete retried: it fits in what the reserve held. While
 * the reserve is missing the database does not grow; it is made again (at
 * most once a second) when the disk has room for it. Under drop_oldest a
 * full disk drops the oldest queued rows to make room for new ones; under
 * backpressure spool_full() says full.
 *
 * TIME. Ages (max_age, dead_max_age, stats.oldest_age_ms) are measured on
 * the spool clock, not the wall clock: while the spool is open it advances
 * with the monotonic clock, so a wall-clock step (a gateway without a
 * real-time clock syncs NTP and jumps by months, or boots back in time)
 * neither expires fresh rows nor keeps stale ones. Across a restart it
 * advances by the wall-clock time between its last write (state.clock_ms
 * at state.clock_wall_ms) and the open, or by nothing when the wall clock
 * went back. Rows keep their wall-clock receive time (Kafka's timestamp);
 * the clock table maps it: rows from id on were put when the spool clock
 * read recv_ms + off. A put whose wall clock has moved more than
 * CLOCK_JUMP_MS from the spool clock since the last segment starts a new
 * one (one row, in the put's transaction).
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
#include "spool/spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    return sp_pragma_int(sp, S_PAGES) - sp_pragma_int(sp, S_FREE);
}

/* The database's page cap now (max_bytes, or the disk's room). */
static int64_t cap_now(struct spool *sp)
{
    return sp_cap_pages(sp, sp_pragma_int(sp, S_PAGES));
}

/* Inside the put's transaction: make need pages fit under the cap. */
static int make_room(struct spool *sp, int64_t need)
{
    for (int tries = 0; tries < 16; tries++) {
        int64_t used = used_pages(sp), cap = cap_now(sp), cut, n, k = 0;
        if (used < 0)
            return sp_sqerr(sp, SQLITE_ERROR, "page count");
        if (used + need <= cap)
            return 0;
        if (sp->o.on_full == SPOOL_BACKPRESSURE)
            return sp_fail(
                sp, -ENOSPC,
                "spool %s is full (%s %" PRId64 " bytes): backpressure",
                sp->path,
                cap < sp->max_pages ? "the disk has room for" : "max_bytes",
                cap < sp->max_pages ? cap * PAGE : sp->max_bytes);
        /* the shortfall and 1/32 of the cap more, so the next puts are
         * plain inserts, but no more than one delete chunk (the WAL) */
        int64_t extra =
            cap / 32 * PAGE < sp->del_chunk ? cap / 32 * PAGE : sp->del_chunk;
        int64_t want = (used + need - cap + 1) * PAGE + extra;
        /* Records already handed to Kafka are not dropped: they may well
         * be delivered, and counting them as lost would be a lie. The
         * oldest of the rest go. */
        static const int order[SPOOL_LANES] = {
            SPOOL_LANE_BULK, SPOOL_LANE_NORMAL, SPOOL_LANE_FAST};
        int rc = 0, l = 0;
        n = 0;
        for (int i = 0; rc == 0 && n == 0 && i < SPOOL_LANES; i++) {
            l = order[i]; /* bulk's oldest go first, fast's last */
            if (l == SPOOL_LANE_NORMAL) { /* then a large record (fat lane) */
                rc = sp_big_drop(sp, &k);
                if (rc || k)
                    break;
            }
            rc = sp_scan_prefix(sp, l, sp->lane[l].hi, want, 0, INT64_MAX, &cut,
                                &n);
        }
        if (rc == 0 && n == 0 && k) /* a large record went: look again */
            continue;
        if (rc == 0 && n == 0)
            rc = sp_fail(sp, -ENOSPC,
                         "spool %s: the batch does not fit in max_bytes "
                         "%" PRId64 " beside the records in flight",
                         sp->path, sp->o.max_bytes);
        if (rc == 0)
            rc = sp_del_range(sp, l, sp->lane[l].hi + 1, cut, &k);
        if (rc)
            return rc;
        sp->c.dropped[SPOOL_DROP_FULL] += k;
    }
    return sp_fail(sp, -ENOSPC, "spool %s: could not make room", sp->path);
}

int sp_make_room(struct spool *sp, int64_t need)
{
    return make_room(sp, need);
}

/* explicit: the ids are the caller's (spool_spill), below last_id. */
static int insert_all(struct spool *sp, struct spool_rec *r, size_t n,
                      int explicit)
{
    for (size_t i = 0; i < n; i++) {
        int lane = r[i].lane >= 0 && r[i].lane < SPOOL_LANES ? r[i].lane : 0;
        sqlite3_stmt *st = sp->lst[lane][L_INSERT];
        int64_t id = explicit ? r[i].id : sp->c.last_id + 1;
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
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return sp_sqerr(sp, rc, "insert");
        if (id > sp->c.last_id)
            sp->c.last_id = id;
        if (id > sp->top)
            sp->top = id;
        sp->c.rows++;
        sp->c.put_total++;
        sp->c.bytes +=
            (int64_t)(r[i].key_len + r[i].headers_len + r[i].payload_len);
    }
    return 0;
}

static int check_recs(struct spool *sp, const struct spool_rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!recs[i].topic || (!recs[i].payload && recs[i].payload_len) ||
            (!recs[i].key && recs[i].key_len) ||
            (!recs[i].headers && recs[i].headers_len))
            return sp_fail(sp, -EINVAL,
                           "spool_put: record %zu is"
                           " malformed (NULL with a length)",
                           i);
    return 0;
}

/* One attempt: make room, insert, note a clock jump, commit. A spill's
 * rows lie below last_id, where open's scan does not count them: its
 * transaction writes the state row. */
static int put_once(struct spool *sp, struct spool_rec *recs, size_t n,
                    int64_t need, int explicit)
{
    int rc = sp_begin(sp);
    if (rc == 0)
        rc = make_room(sp, need);
    if (rc == 0)
        rc = sp_clock_note(sp, explicit ? recs[0].id : sp->c.last_id + 1);
    if (rc == 0)
        rc = insert_all(sp, recs, n, explicit);
    if (explicit)
        sp->state_dirty = 1;
    if (rc == 0)
        rc = sp_commit(sp);
    sp_clock_commit(sp, rc == 0);
    if (rc)
        sp_rollback(sp);
    return rc;
}

/* Under sync NORMAL a put's commit is not on disk until the next
 * checkpoint, yet its ids may reach Kafka before that: a power cut could
 * take the rows back and the ids would be handed out again, to other
 * records. So ids are handed out below a ceiling written with an fsync,
 * raised by ID_BLOCK at a time (one small write per ID_BLOCK records). */
static int raise_ceiling(struct spool *sp, int64_t want)
{
    if (want <= sp->ceiling)
        return 0;
    int64_t to = want + ID_BLOCK;
    int rc = sp_set_sync(sp, 1);
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc == 0) {
        sqlite3_bind_int64(sp->st[S_CEILING], 1, to);
        rc = sp_run(sp, S_CEILING);
        if (rc == 0)
            rc = sp_commit(sp);
        else
            sp_rollback(sp);
    }
    if (rc == 0)
        sp->ceiling = to;
    return rc;
}

static int put_locked(struct spool *sp, struct spool_rec *recs, size_t n,
                      int explicit)
{
    int rc = check_recs(sp, recs, n);
    if (rc)
        return rc;
    int64_t need = estimate_pages(recs, n);
    if (need > sp->batch_pages)
        return sp_fail(sp, -EINVAL,
                       "spool_put: a batch of %zu records (~%" PRId64
                       " pages) is larger than one put may be under "
                       "the cap of %" PRId64 " bytes (%" PRId64
                       " pages); split it",
                       n, need, sp->max_bytes, sp->batch_pages);
    sp_reserve_restore(sp);
    if (!explicit && sp->o.sync != SPOOL_SYNC_FULL)
        rc = raise_ceiling(sp, sp->c.last_id + (int64_t)n);
    if (rc == 0)
        rc = sp_set_sync(sp, sp->o.sync == SPOOL_SYNC_FULL);
    for (int attempt = 0; rc == 0; attempt++) {
        rc = put_once(sp, recs, n, need + attempt * (sp->max_pages / 16 + 4),
                      explicit);
        if (rc != -ENOSPC)
            break;
        /* SQLite hit a cap the estimate missed (or the disk filled under
         * us): drop_oldest makes more room and tries again. */
        if (sp->o.on_full == SPOOL_BACKPRESSURE || attempt >= 3)
            return sp_fail(sp, -ENOSPC,
                           "spool %s is full (%" PRId64
                           " bytes in effect); nothing of this batch was "
                           "stored, nothing stored is lost",
                           sp->path, sp->max_bytes);
        rc = 0;
    }
    if (rc || explicit)
        return rc;
    for (size_t i = 0; i < n; i++)
        recs[i].id = sp->c.last_id - (int64_t)(n - 1 - i);
    return 0;
}

int spool_fits(struct spool *sp, const struct spool_rec *recs, size_t n)
{
    return estimate_pages(recs, n) <= sp->batch_pages;
}

size_t spool_max_record(struct spool *sp)
{
    /* estimate_pages() of one record of b bytes is at most
     * 3 + (b + PAGE - 9) / (PAGE - 8) + 1 */
    int64_t b = (sp->batch_pages - 5) * (PAGE - 8) - ROW_OVERHEAD;
    return b > 0 ? (size_t)b : 0;
}

int spool_put(struct spool *sp, struct spool_rec *recs, size_t n)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&sp->mu);
    int rc = put_locked(sp, recs, n, 0);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* --- reserved ids, spills --------------------------------------------------
 */

int spool_reserve(struct spool *sp, int64_t n, int64_t *first)
{
    if (n < 1 || n > SPOOL_RESERVE_MAX)
        return sp_fail(sp, -EINVAL, "spool_reserve: %" PRId64 " ids", n);
    pthread_mutex_lock(&sp->mu);
    int rc = sp_set_sync(sp, 1); /* a reused id would name two records */
    if (rc == 0)
        rc = sp_begin(sp);
    if (rc == 0) {
        *first = sp->c.last_id + 1;
        sp->c.last_id += n;
        sp->state_dirty = 1;
        rc = sp_commit(sp);
    }
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

static size_t rec_size(const struct spool_rec *r)
{
    return r->key_len + r->headers_len + r->payload_len;
}

/* A record's size as the in-flight set keeps it: size + 1, 0 if it does
 * not fit (then its ack reads the rows: sp_del_range). */
static uint32_t size_val(int64_t size)
{
    return size >= 0 && size < (int64_t)UINT32_MAX ? (uint32_t)size + 1 : 0;
}

/* The rows of a lane in (lo, top] that nobody handed out become in flight
 * and are nacked; hi moves to top. */
static int spill_lane(struct spool *sp, int l, int64_t top)
{
    struct sp_lane *ln = &sp->lane[l];
    int64_t lo = ln->hi, waiting[256];
    size_t k = 0;
    int rc = 0, step;
    if (top <= lo)
        return 0;
    sqlite3_stmt *st = sp->lst[l][L_SCAN];
    ln->hi = top;
    sqlite3_bind_int64(st, 1, lo);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id > top)
            break;
        if (idset_has(&ln->inflight, id))
            continue;
        if (idset_put(&ln->inflight, id, size_val(sqlite3_column_int64(st, 2))))
            rc = -ENOMEM;
        else
            waiting[k++] = id;
        if (k == sizeof(waiting) / sizeof(waiting[0])) {
            rc = sp_nack_locked(sp, waiting, k);
            k = 0;
        }
    }
    sqlite3_reset(st);
    if (rc == 0 && k)
        rc = sp_nack_locked(sp, waiting, k);
    return rc;
}

/* After a spill's commit: its rows in flight join the in-flight set, and
 * hi moves past them (nothing above hi is in flight: drop_oldest and
 * expiry take rows above it). Every row at or below the new hi that is not
 * in flight — the spill's others, and any row that was waiting between the
 * old hi and the new — is listed as nacked, so it is handed out, in id
 * order. */
static int spill_mark(struct spool *sp, const struct spool_rec *recs, size_t n,
                      const unsigned char *inflight)
{
    int64_t top[SPOOL_LANES] = {0}, waiting[256];
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int l = recs[i].lane;
        if (recs[i].id > top[l])
            top[l] = recs[i].id;
        if (inflight[i])
            rc = idset_put(&sp->lane[l].inflight, recs[i].id,
                           size_val((int64_t)rec_size(&recs[i])))
                     ? -ENOMEM
                     : 0;
    }
    /* the others of the spill: those at or below their lane's hi now
     * (the scan of (hi, top] below finds the rest, and rows nobody handed
     * out there) */
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (inflight[i] || recs[i].id > sp->lane[recs[i].lane].hi)
            continue;
        if (idset_put(&sp->lane[recs[i].lane].inflight, recs[i].id,
                      size_val((int64_t)rec_size(&recs[i]))))
            rc = -ENOMEM;
        else
            waiting[k++] = recs[i].id;
        if (k == sizeof(waiting) / sizeof(waiting[0])) {
            rc = sp_nack_locked(sp, waiting, k);
            k = 0;
        }
    }
    if (rc == 0 && k)
        rc = sp_nack_locked(sp, waiting, k);
    for (int l = 0; rc == 0 && l < SPOOL_LANES; l++)
        rc = spill_lane(sp, l, top[l]);
    if (rc) /* committed all the same: make every row eligible again (the
             * producer may send some twice, nothing is lost) */
        sp_rewind_locked(sp);
    return 0;
}

int spool_spill(struct spool *sp, struct spool_rec *recs, size_t n,
                const unsigned char *inflight)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&sp->mu);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (recs[i].id <= 0 || recs[i].id > sp->c.last_id || recs[i].lane < 0 ||
            recs[i].lane >= SPOOL_LANES || (i && recs[i].id <= recs[i - 1].id))
            rc = sp_fail(sp, -EINVAL,
                         "spool_spill: id %" PRId64
                         " was not reserved or is out of order",
                         recs[i].id);
    if (rc == 0)
        rc = put_locked(sp, recs, n, 1);
    if (rc == 0)
        rc = spill_mark(sp, recs, n, inflight);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int64_t spool_backlog(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int64_t n = sp->saved.rows;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

int64_t spool_top(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int64_t top = sp->top;
    pthread_mutex_unlock(&sp->mu);
    return top;
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

int64_t spool_room(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    sp_reserve_restore(sp);
    int64_t pages = cap_now(sp) - used_pages(sp) - 4;
    pthread_mutex_unlock(&sp->mu);
    /* the inverse of estimate_pages: an eighth of a page is overhead */
    return pages > 0 ? pages * (PAGE - 100) / 9 * 8 : 0;
}

int spool_full(struct spool *sp)
{
    int full = 0;
    pthread_mutex_lock(&sp->mu);
    if (sp->o.on_full == SPOOL_BACKPRESSURE) {
        int64_t headroom = sp->max_pages / 64 > 8 ? sp->max_pages / 64 : 8;
        sp_reserve_restore(sp);
        full = used_pages(sp) + headroom > cap_now(sp);
    }
    pthread_mutex_unlock(&sp->mu);
    return full;
}

/* --- peek ------------------------------------------------------------------
 */

/* Copies column col into the arena; returns its offset, or SIZE_MAX. */
static size_t copy_col(struct spool *sp, sqlite3_stmt *st, int col,
                       size_t *used, size_t *len, int nul)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col), off = *used;
    if (sp_arena_fit(&sp->arena, &sp->arena_cap, off + n + 1))
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
        return sp_fail(sp, -ENOMEM,
                       "spool_peek: record %" PRId64
                       " does not fit the peek buffer cap",
                       r->id);
    r->topic = (const char *)(uintptr_t)o[0];
    r->key = (const void *)(uintptr_t)o[1];
    r->headers = (const void *)(uintptr_t)o[2];
    r->payload = (const void *)(uintptr_t)o[3];
    return 0;
}

/* Takes up to max rows of one lane into recs (offsets into the arena:
 * from *used on, its bytes counted in *bytes), nacked ones first. Returns
 * how many, or < 0. */
static int peek_lane(struct spool *sp, int l, struct spool_rec *recs,
                     size_t max, size_t max_bytes, size_t *used, size_t *bytes)
{
    struct sp_lane *ln = &sp->lane[l];
    size_t n = 0, head0 = ln->nacked_head, added = 0;
    int64_t hi0 = ln->hi;
    int rc = 0, step = SQLITE_DONE;
    /* nacked ids first: they are older than anything above hi */
    sqlite3_stmt *st = sp->lst[l][L_PEEK_ONE];
    while (rc == 0 && n < max && ln->nacked_head < ln->nnacked) {
        sqlite3_bind_int64(st, 1, ln->nacked[ln->nacked_head]);
        step = sqlite3_step(st);
        if (step == SQLITE_ROW &&
            (rc = take_row(sp, st, &recs[n], used)) == 0) {
            if (*bytes && *bytes + rec_size(&recs[n]) > max_bytes) {
                sqlite3_reset(st);
                goto done;
            }
            *bytes += rec_size(&recs[n++]);
        } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = sp_sqerr(sp, step, "peek");
        }
        sqlite3_reset(st);
        if (rc == 0)
            ln->nacked_head++;
    }
    st = sp->lst[l][L_PEEK];
    sqlite3_bind_int64(st, 1, ln->hi);
    while (rc == 0 && n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = take_row(sp, st, &recs[n], used)))
            break;
        if (*bytes && *bytes + rec_size(&recs[n]) > max_bytes)
            break;
        *bytes += rec_size(&recs[n]);
        ln->hi = recs[n++].id;
    }
    if (rc == 0 && n < max && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = sp_sqerr(sp, step, "peek");
    sqlite3_reset(st);
done:
    for (; rc == 0 && added < n; added++) {
        recs[added].lane = l;
        if (idset_put(&ln->inflight, recs[added].id,
                      size_val((int64_t)rec_size(&recs[added])))) {
            rc = -ENOMEM;
            break;
        }
    }
    if (rc) { /* none of it was handed out: the next peek takes it again */
        while (added--)
            idset_del(&ln->inflight, recs[added].id);
        ln->hi = hi0;
        ln->nacked_head = head0;
        return rc;
    }
    if (ln->nacked_head == ln->nnacked)
        ln->nacked_head = ln->nnacked = 0;
    return (int)n;
}

static size_t inflight_n(const struct spool *sp)
{
    size_t n = 0;
    for (int l = 0; l < SPOOL_LANES; l++)
        n += sp->lane[l].inflight.n;
    return n;
}

/* lane < 0: fast, then normal, then bulk. */
static int peek_locked(struct spool *sp, int lane, struct spool_rec *recs,
                       size_t max, size_t max_bytes)
{
    static const int order[SPOOL_LANES] = {SPOOL_LANE_FAST, SPOOL_LANE_NORMAL,
                                           SPOOL_LANE_BULK};
    size_t n = 0, used = 0, bytes = 0, have = inflight_n(sp);
    int rc = 0;
    if (max > INFLIGHT_MAX - have)
        max = INFLIGHT_MAX - have;
    for (int i = 0; rc >= 0 && i < SPOOL_LANES && n < max; i++) {
        if (lane >= 0 && order[i] != lane)
            continue;
        rc = peek_lane(sp, order[i], recs + n, max - n, max_bytes, &used,
                       &bytes);
        if (rc > 0)
            n += (size_t)rc;
    }
    /* a lane failed after others gave records: those go back (nacked,
     * first in line), since the caller gets none */
    for (size_t i = 0; rc < 0 && i < n; i++)
        if (sp_nack_locked(sp, &recs[i].id, 1)) {
            sp_rewind_locked(sp); /* no memory: all again, none stranded */
            break;
        }
    /* pointers only now: the arena may have moved while it grew */
    for (size_t i = 0; i < n; i++) {
        struct spool_rec *r = &recs[i];
        r->topic = (const char *)sp->arena + (uintptr_t)r->topic;
        r->key = sp->arena + (uintptr_t)r->key;
        r->headers = sp->arena + (uintptr_t)r->headers;
        r->payload = sp->arena + (uintptr_t)r->payload;
    }
    return rc < 0 ? rc : (int)n;
}

int64_t spool_lane_next(struct spool *sp, int lane)
{
    if (lane < 0 || lane >= SPOOL_LANES)
        return -EINVAL;
    pthread_mutex_lock(&sp->mu);
    struct sp_lane *ln = &sp->lane[lane];
    int64_t id = 0;
    if (ln->nacked_head < ln->nnacked) {
        id = ln->nacked[ln->nacked_head];
    } else {
        sqlite3_stmt *st = sp->lst[lane][L_PEEK];
        sqlite3_bind_int64(st, 1, ln->hi);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
        else if (step != SQLITE_DONE)
            id = sp_sqerr(sp, step, "peek");
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&sp->mu);
    return id;
}

int spool_peek(struct spool *sp, struct spool_rec *recs, size_t max,
               size_t max_bytes)
{
    if (max > INT32_MAX)
        max = INT32_MAX;
    pthread_mutex_lock(&sp->mu);
    int rc = peek_locked(sp, -1, recs, max, max_bytes);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_peek_lane(struct spool *sp, int lane, struct spool_rec *recs,
                    size_t max, size_t max_bytes)
{
    if (lane < 0 || lane >= SPOOL_LANES)
        return -EINVAL;
    if (max > INT32_MAX)
        max = INT32_MAX;
    pthread_mutex_lock(&sp->mu);
    int rc = peek_locked(sp, lane, recs, max, max_bytes);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

/* --- expiry, stats ---------------------------------------------------------
 */

/* The last id of the oldest rows of table `from_sql` (after id `after`)
 * put before cutoff on the spool clock, at most max rows. */
static int scan_old(struct spool *sp, sqlite3_stmt *st, int64_t after,
                    int64_t cutoff, int64_t max, int64_t *cut, int64_t *n)
{
    int rc;
    int64_t bytes = 0;
    *cut = 0;
    *n = 0;
    sqlite3_bind_int64(st, 1, after);
    while (*n < max && bytes < sp->del_chunk &&
           (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (sp_row_time(sp, id, sqlite3_column_int64(st, 1)) >= cutoff)
            break;
        *cut = id;
        bytes += sqlite3_column_int64(st, 2);
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "expiry scan");
    return 0;
}

/* Queued rows older than max_age. Like drop_oldest, expiry leaves what is
 * in flight alone: it may yet be delivered (or comes back by nack, and
 * expires then). */
static int expire_lane(struct spool *sp, int l, int64_t now, int64_t max)
{
    int64_t cut, n, k = 0;
    if (!sp->o.max_age_ms || max <= 0)
        return 0;
    int rc = scan_old(sp, sp->lst[l][L_SCAN], sp->lane[l].hi,
                      now - sp->o.max_age_ms, max, &cut, &n);
    if (rc || n == 0)
        return rc;
    rc = sp_begin(sp);
    if (rc == 0)
        rc = sp_del_range(sp, l, sp->lane[l].hi + 1, cut, &k);
    if (rc == 0) {
        sp->c.dropped[SPOOL_DROP_EXPIRED] += k;
        rc = sp_commit(sp);
    } else {
        sp_rollback(sp);
    }
    return rc ? rc : (int)k;
}

static int expire_rows(struct spool *sp, int64_t now, int64_t max)
{
    int k = 0;
    for (int l = 0; l < SPOOL_LANES && k < max; l++) {
        int r = expire_lane(sp, l, now, max - k);
        if (r < 0)
            return r;
        k += r;
    }
    return k;
}

static int expire_locked(struct spool *sp)
{
    int64_t now = sp_clock(sp);
    int rc = sp_set_sync(sp, 0);
    if (rc)
        return rc;
    int a = expire_rows(sp, now, SPOOL_EXPIRE_MAX);
    if (a == -ENOSPC && sp_reserve_release(sp))
        a = expire_rows(sp, now, SPOOL_EXPIRE_MAX);
    if (a >= 0 && sp->o.max_age_ms) { /* and large records */
        int f = sp_big_expire(sp, now - sp->o.max_age_ms, SPOOL_EXPIRE_MAX - a);
        a = f < 0 ? f : a + f;
    }
    if (a < 0)
        return a;
    int b = sp_dead_expire(sp, now, SPOOL_EXPIRE_MAX - a);
    if (b == -ENOSPC && sp_reserve_release(sp))
        b = sp_dead_expire(sp, now, SPOOL_EXPIRE_MAX - a);
    return b < 0 ? b : a + b;
}

int spool_expire(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    int rc = expire_locked(sp);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_stats(struct spool *sp, struct spool_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&sp->mu);
    const struct counters *c = &sp->saved;
    st->records = c->rows;
    st->bytes = c->bytes;
    st->inflight = (int64_t)inflight_n(sp);
    st->dead = c->dead;
    memcpy(st->dropped, c->dropped, sizeof(st->dropped));
    st->put_total = c->put_total;
    st->acked_total = c->acked_total;
    st->dead_purged = c->purged;
    st->recovered = sp->recovered;
    st->file_bytes =
        sp_file_size(sp->path, "") + sp_file_size(sp->path, "-wal");
    st->dead_bytes = c->dead_bytes;
    st->max_bytes = sp->max_bytes;
    st->reserve_bytes = sp->reserve_bytes;
    st->reserve_held = sp->reserve_held;
    st->clock_jumps = sp->jumps;
    st->bytes_written = sp->vfs.written;
    st->syncs = sp->vfs.syncs;
    int64_t pages = sp_pragma_int(sp, S_PAGES);
    int64_t room = sp_cap_pages(sp, pages) - used_pages(sp);
    st->room_bytes = room > 0 ? room * PAGE : 0;
    int rc = 0;
    for (int l = 0; l < SPOOL_LANES && rc == 0; l++) { /* the oldest of all */
        sqlite3_stmt *q = sp->lst[l][L_SCAN];
        sqlite3_bind_int64(q, 1, 0);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            int64_t recv = sqlite3_column_int64(q, 1);
            int64_t age = sp_clock(sp) -
                          sp_row_time(sp, sqlite3_column_int64(q, 0), recv);
            if (age > st->oldest_age_ms || !st->oldest_ms) {
                st->oldest_ms = recv;
                st->oldest_age_ms = age;
            }
        } else if (step != SQLITE_DONE) {
            rc = sp_sqerr(sp, step, "stats");
        }
        sqlite3_reset(q);
    }
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
    case SPOOL_DROP_DEAD_FULL:
        return "dead_full";
    case SPOOL_DROP_DEAD_EXPIRED:
        return "dead_expired";
    default:
        return "unknown";
    }
}
