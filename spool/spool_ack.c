/*
 * spool_ack.c — what comes back from Kafka (see spool.c for the whole
 * module): acks delete delivered rows, nacks send records round again, a
 * rewind forgets what was in flight.
 *
 * An ack is a transaction of range deletes, one per run of consecutive
 * ids. The ids come in delivery order, a sorted run per partition's batch,
 * interleaved; a bitmap over their span sorts them. A run whose records
 * are all in one lane's in-flight set, with the sizes the peek kept there,
 * is one DELETE on that lane's table, its rows and bytes counted from
 * memory and checked against sqlite3_changes(); any other run (ids handed
 * out before a rewind, a size that did not fit) counts its rows with a
 * SELECT first and deletes from every lane (ids are unique across lanes).
 * Should a count ever disagree, the transaction is rolled back and every
 * later ack counts from the rows. Deletes go in chunks the disk reserve
 * holds (spool_disk.c); recent rows' tags are kept for spool_recent().
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A group of acks spans a window of ids, a few runs of them (one per
 * partition's batch) interleaved: a bit per id of the span sorts them and
 * drops duplicates in O(n + span / 64), where qsort took a tenth of an
 * ack. -1 when the span is too sparse for it (or no memory). */
static int bit_sort(struct spool *sp, const int64_t *ids, size_t n, int64_t lo,
                    int64_t hi)
{
    if (lo <= 0 || (uint64_t)hi - (uint64_t)lo >= 16 * (uint64_t)n + 4096)
        return -1; /* ids are positive; lo > 0 keeps hi - lo in range */
    size_t words = (size_t)((uint64_t)(hi - lo) / 64 + 1);
    if (words > sp->bits_cap) {
        uint64_t *b = realloc(sp->bits, words * sizeof(*b));
        if (!b)
            return -1;
        sp->bits = b;
        sp->bits_cap = words;
    }
    memset(sp->bits, 0, words * sizeof(*sp->bits));
    for (size_t i = 0; i < n; i++) {
        uint64_t o = (uint64_t)(ids[i] - lo);
        sp->bits[o / 64] |= 1ull << (o % 64);
    }
    return 0;
}

/* The ids bit_sort marked, in order, into scratch; how many. */
static size_t sorted_bits(struct spool *sp, int64_t lo, int64_t hi)
{
    size_t k = 0, words = (size_t)((uint64_t)(hi - lo) / 64 + 1);
    for (size_t w = 0; w < words; w++)
        for (uint64_t x = sp->bits[w]; x; x &= x - 1)
            sp->scratch[k++] = lo + (int64_t)(w * 64) + __builtin_ctzll(x);
    return k;
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
    size_t up = 1; /* delivery reports come mostly in order: no sort then */
    int64_t lo = ids[0], hi = ids[0];
    while (up < n && ids[up - 1] <= ids[up])
        up++;
    for (size_t i = 0; up < n && i < n; i++) {
        lo = ids[i] < lo ? ids[i] : lo;
        hi = ids[i] > hi ? ids[i] : hi;
    }
    if (up < n && bit_sort(sp, ids, n, lo, hi) == 0)
        return n ? sorted_bits(sp, lo, hi) : 0;
    if (up < n)
        qsort(sp->scratch, n, sizeof(*ids), cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!k || sp->scratch[i] != sp->scratch[k - 1])
            sp->scratch[k++] = sp->scratch[i];
    return k;
}

/* The lowest id whose tags outlive its ack: the newest TAGS_KEEP ids a
 * row was put under (not last_id: a block of ids reserved for the direct
 * path moves it far ahead of the rows spilled into the block). */
static int64_t keep_from(const struct spool *sp)
{
    return sp->top - TAGS_KEEP;
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
    int rc = SQLITE_DONE;
    for (int l = 0; rc == SQLITE_DONE && l < SPOOL_LANES; l++) {
        sqlite3_stmt *st = sp->lst[l][L_KEEP_TAGS];
        sqlite3_bind_int64(st, 1, lo);
        sqlite3_bind_int64(st, 2, hi);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
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

/* Deletes sorted ids from scratch[*at] on, range by range, in one
 * transaction of at most sp->del_chunk bytes of rows (so that it fits the
 * WAL's budget, and on a full disk the reserve), and moves *at past them.
 * keep: first keep the tags of the newest rows (see spool_recent): a
 * PUBACK can die with a crashed process after its row was delivered, and
 * the broker's redelivery must still be recognised after the restart. */
/* The lane whose in-flight set holds id with its size (size + 1 in *v),
 * or -1. */
static int known_lane(const struct spool *sp, int64_t id, uint32_t *v)
{
    for (int l = 0; l < SPOOL_LANES; l++)
        if (idset_get(&sp->lane[l].inflight, id, v))
            return *v ? l : -1;
    return -1;
}

static int ack_chunk(struct spool *sp, size_t k, size_t *at, int keep)
{
    size_t i = *at;
    int rc = sp_begin(sp);
    if (rc == 0 && keep) { /* old tags go first: that frees room too */
        sqlite3_bind_int64(sp->st[S_PRUNE_TAGS], 1, keep_from(sp));
        rc = sp_run(sp, S_PRUNE_TAGS);
    }
    int64_t bytes0 = sp->c.bytes;
    while (rc == 0 && i < k && bytes0 - sp->c.bytes < sp->del_chunk) {
        size_t j = i;
        uint32_t v = 0;
        int64_t known = 0;
        int l = sp->ack_counted ? -1 : known_lane(sp, sp->scratch[i], &v);
        if (l >= 0) { /* one lane's, sizes known: no counting pass */
            known = v - 1;
            while (j + 1 < k && sp->scratch[j + 1] == sp->scratch[j] + 1 &&
                   j - i < 256 &&
                   idset_get(&sp->lane[l].inflight, sp->scratch[j + 1], &v) &&
                   v) {
                known += v - 1;
                j++;
            }
        } else {
            while (j + 1 < k && sp->scratch[j + 1] == sp->scratch[j] + 1 &&
                   j - i < 256)
                j++;
        }
        int64_t gone = 0, lo = sp->scratch[i], hi = sp->scratch[j];
        if (keep && hi >= keep_from(sp)) {
            int r = keep_tags(sp, lo, hi);
            if (r < 0) {
                sp_rollback(sp);
                return -EAGAIN;
            }
            keep = r == 0;
        }
        if (l >= 0) {
            gone = (int64_t)(j - i + 1);
            rc = sp_del_known(sp, l, lo, hi, gone, known);
            if (rc == -ESTALE) { /* not the rows it kept: count from now on */
                sp->ack_counted = 1;
                sp_rollback(sp);
                return -ESTALE;
            }
        } else {
            rc = sp_del_range(sp, -1, lo, hi, &gone);
        }
        sp->c.acked_total += gone;
        i = j + 1;
    }
    if (rc == 0)
        rc = sp_commit(sp);
    else
        sp_rollback(sp);
    if (rc == 0)
        *at = i;
    return rc;
}

/* ack_chunk, and once more should the kept sizes disagree with the
 * table: that one counts from the rows (ack_counted is set), so it cannot
 * disagree again. After any of ack_locked's retries alike, or a full disk
 * would spend its reserve on the attempt that was rolled back. */
static int chunk_counted(struct spool *sp, size_t k, size_t *at, int keep)
{
    int rc = ack_chunk(sp, k, at, keep);
    return rc == -ESTALE ? ack_chunk(sp, k, at, keep) : rc;
}

static int ack_locked(struct spool *sp, const int64_t *ids, size_t n)
{
    if (n > ACK_MAX)
        return sp_fail(sp, -EINVAL, "spool_ack: more than %d ids", ACK_MAX);
    size_t k = sorted_ids(sp, ids, n), at = 0;
    if (k == SIZE_MAX)
        return -ENOMEM;
    int rc = sp_set_sync(sp, 0), released = 0;
    while (rc == 0 && at < k) {
        size_t from = at;
        rc = chunk_counted(sp, k, &at, 1);
        if (rc == -EAGAIN)
            rc = chunk_counted(sp, k, &at, 0);
        if (rc == -ENOSPC && !released && sp_reserve_release(sp)) {
            released = 1; /* the disk filled up: the reserve holds a chunk */
            rc = chunk_counted(sp, k, &at, 0);
        }
        for (size_t i = from; rc == 0 && i < at; i++)
            for (int l = 0; l < SPOOL_LANES; l++)
                if (idset_del(&sp->lane[l].inflight, sp->scratch[i]))
                    break;
    }
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

/* Makes room in a lane's nacked list for n more; 0 or -ENOMEM. */
static int nacked_room(struct sp_lane *ln, size_t n)
{
    size_t live = ln->nnacked - ln->nacked_head;
    if (live + n > ln->nacked_cap) {
        size_t c = live + n < 1024 ? 1024 : live + n;
        int64_t *p = malloc(c * sizeof(*p));
        if (!p)
            return -ENOMEM;
        if (live)
            memcpy(p, ln->nacked + ln->nacked_head, live * sizeof(*p));
        free(ln->nacked);
        ln->nacked = p;
        ln->nacked_cap = c;
    } else if (live) {
        memmove(ln->nacked, ln->nacked + ln->nacked_head,
                live * sizeof(*ln->nacked));
    }
    ln->nacked_head = 0;
    ln->nnacked = live;
    return 0;
}

int sp_nack_locked(struct spool *sp, const int64_t *ids, size_t n)
{
    if (n > ACK_MAX)
        return sp_fail(sp, -EINVAL, "spool_nack: more than %d ids", ACK_MAX);
    for (int l = 0; l < SPOOL_LANES; l++)
        if (nacked_room(&sp->lane[l], n))
            return -ENOMEM;
    int touched[SPOOL_LANES] = {0};
    for (size_t i = 0; i < n; i++)
        for (int l = 0; l < SPOOL_LANES; l++) {
            struct sp_lane *ln = &sp->lane[l];
            if (idset_del(&ln->inflight, ids[i])) {
                ln->nacked[ln->nnacked++] = ids[i];
                touched[l] = 1;
                break;
            }
        }
    for (int l = 0; l < SPOOL_LANES; l++)
        if (touched[l])
            qsort(sp->lane[l].nacked, sp->lane[l].nnacked, sizeof(*ids),
                  cmp_id);
    return 0;
}

int spool_nack(struct spool *sp, const int64_t *ids, size_t n)
{
    pthread_mutex_lock(&sp->mu);
    int rc = sp_nack_locked(sp, ids, n);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void sp_rewind_locked(struct spool *sp)
{
    for (int l = 0; l < SPOOL_LANES; l++) {
        idset_clear(&sp->lane[l].inflight);
        sp->lane[l].nacked_head = sp->lane[l].nnacked = 0;
        sp->lane[l].hi = 0;
    }
}

void spool_rewind(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    sp_rewind_locked(sp);
    pthread_mutex_unlock(&sp->mu);
}
