/*
 * test_spool.c — unit tests for spool/: what the bridge and an operator
 * see. Order and peek windows, ack of ranges and sparse sets, nack, restart,
 * ids that are never reused, dead letters, the size cap under both
 * policies, max_age, corrupt files, a newer schema, two threads on one
 * handle, and (as root) a full disk on a small tmpfs.
 *
 * Each test works in its own temporary directory, removed afterwards.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"

struct fx {
    char dir[256];
    char path[300];
    int mounted;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/spool-test-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/spool.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->mounted)
        umount(f->dir);
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A clock the test moves: wall may jump, mono only goes forward. */
struct fake_clock {
    int64_t wall, mono;
};
static int64_t fake_wall(void *ud)
{
    return ((struct fake_clock *)ud)->wall;
}
static int64_t fake_mono(void *ud)
{
    return ((struct fake_clock *)ud)->mono;
}
static struct fake_clock fclk;
static const struct spool_clock fake = {fake_wall, fake_mono, &fclk};
static const struct spool_clock *use_clock; /* NULL: the system's */

static struct spool *open_sp(const char *path, int64_t max_bytes,
                             enum spool_on_full on_full, int64_t max_age)
{
    struct spool_opts o = {.path = path,
                           .max_bytes = max_bytes,
                           .max_age_ms = max_age,
                           .on_full = on_full,
                           .sync = SPOOL_SYNC_NORMAL,
                           .clock = use_clock};
    struct spool *sp = NULL;
    char err[512];
    int rc = spool_open(&o, &sp, err, sizeof(err));
    if (rc)
        fprintf(stderr, "spool_open: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    return sp;
}

/* Puts n records whose payload starts with "seq=<seq0+i>;", padded with
 * 'x' to len bytes (at least the prefix). ids gets the assigned ids. */
static int put_seq(struct spool *sp, int seq0, int n, size_t len,
                   int64_t recv_ms, int64_t *ids)
{
    struct spool_rec r[256];
    assert_true(n <= 256 && len <= 8192);
    char(*own)[8192] = malloc((size_t)n * 8192);
    for (int i = 0; i < n; i++) {
        char pre[32];
        int k = snprintf(pre, sizeof(pre), "seq=%d;", seq0 + i);
        memset(own[i], 'x', len);
        memcpy(own[i], pre, (size_t)k);
        memset(&r[i], 0, sizeof(r[i]));
        r[i].topic = "factory/line1/temp";
        r[i].key = "gw-7";
        r[i].key_len = 4;
        r[i].headers = "h:v";
        r[i].headers_len = 3;
        r[i].payload = own[i];
        r[i].payload_len = len > (size_t)k ? len : (size_t)k;
        r[i].recv_ms = recv_ms;
        r[i].route = i % 3;
    }
    int rc = spool_put(sp, r, (size_t)n);
    for (int i = 0; rc == 0 && ids && i < n; i++)
        ids[i] = r[i].id;
    free(own);
    return rc;
}

static int seq_of(const struct spool_rec *r)
{
    int s = -1;
    char b[32] = "";
    memcpy(b, r->payload, r->payload_len < 31 ? r->payload_len : 31);
    sscanf(b, "seq=%d;", &s);
    return s;
}

/* Peeks everything eligible; returns the count, ids and seqs in order. */
static int drain(struct spool *sp, int64_t *ids, int *seqs, int max)
{
    struct spool_rec r[100];
    int n = 0, k;
    while ((k = spool_peek(sp, r, 100, SIZE_MAX)) > 0) {
        for (int i = 0; i < k; i++, n++) {
            assert_true(n < max);
            ids[n] = r[i].id;
            if (seqs)
                seqs[n] = seq_of(&r[i]);
        }
    }
    assert_int_equal(k, 0);
    return n;
}

static void test_order_and_windows(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[10];
    int64_t ids[10];
    assert_int_equal(put_seq(sp, 0, 10, 100, 1234, ids), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ids[i], i + 1);

    assert_int_equal(spool_peek(sp, r, 3, SIZE_MAX), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].id, i + 1);
        assert_int_equal(seq_of(&r[i]), i);
        assert_string_equal(r[i].topic, "factory/line1/temp");
        assert_int_equal(r[i].key_len, 4);
        assert_memory_equal(r[i].key, "gw-7", 4);
        assert_int_equal(r[i].headers_len, 3);
        assert_memory_equal(r[i].headers, "h:v", 3);
        assert_int_equal(r[i].payload_len, 100);
        assert_int_equal(r[i].recv_ms, 1234);
        assert_int_equal(r[i].route, i % 3);
    }
    /* byte budget: 107 bytes a record, 250 allows two */
    assert_int_equal(spool_peek(sp, r, 10, 250), 2);
    assert_int_equal(r[0].id, 4);
    assert_int_equal(r[1].id, 5);
    /* a budget smaller than one record still hands out one */
    assert_int_equal(spool_peek(sp, r, 10, 10), 1);
    assert_int_equal(r[0].id, 6);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 4);
    assert_int_equal(r[3].id, 10);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 0);

    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 10);
    assert_int_equal(st.bytes, 10 * 107);
    assert_int_equal(st.inflight, 10);
    assert_int_equal(st.oldest_ms, 1234);
    assert_int_equal(st.put_total, 10);
    assert_true(st.file_bytes > 0);
    spool_close(sp);
}

static void test_ack_ranges_and_sparse(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[100];
    int64_t ids[100], acks[100], got[100];
    size_t na = 0;
    assert_int_equal(put_seq(sp, 0, 100, 50, 1, ids), 0);
    assert_int_equal(spool_peek(sp, r, 100, SIZE_MAX), 100);
    for (int64_t i = 50; i >= 1; i--) /* a range, given backwards */
        acks[na++] = i;
    acks[na++] = 7; /* a duplicate */
    assert_int_equal(spool_ack(sp, acks, na), 0);
    na = 0;
    for (int64_t i = 52; i <= 100; i += 2) /* sparse */
        acks[na++] = i;
    acks[na++] = 5000; /* unknown ids are fine */
    assert_int_equal(spool_ack(sp, acks, na), 0);

    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 25);
    assert_int_equal(st.bytes, 25 * 57);
    assert_int_equal(st.acked_total, 75);
    assert_int_equal(st.inflight, 25);

    spool_rewind(sp);
    assert_int_equal(drain(sp, got, NULL, 100), 25);
    for (int i = 0; i < 25; i++)
        assert_int_equal(got[i], 51 + 2 * i);
    spool_close(sp);
}

/* Tags survive a reopen and an ack; spool_recent lists the newest tagged
 * rows first, skipping untagged ones. */
static void test_tags_recent(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[4];
    for (int i = 0; i < 4; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].topic = "t";
        r[i].payload = "p";
        r[i].payload_len = 1;
        r[i].tag = i == 2 ? 0 : (int64_t)(1000 + i); /* row 3: untagged */
    }
    assert_int_equal(spool_put(sp, r, 4), 0);
    int64_t ack = r[0].id;
    assert_int_equal(spool_ack(sp, &ack, 1), 0);
    spool_close(sp);

    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t ids[8], tags[8];
    /* the acked row's tag is kept too: its PUBACK may have died with a
     * crashed process after Kafka had it */
    assert_int_equal(spool_recent(sp, ids, tags, 8), 3);
    assert_int_equal(ids[0], r[3].id);
    assert_int_equal(tags[0], 1003);
    assert_int_equal(ids[1], r[1].id);
    assert_int_equal(tags[1], 1001);
    assert_int_equal(ids[2], r[0].id);
    assert_int_equal(tags[2], 1000);
    assert_int_equal(spool_recent(sp, ids, tags, 1), 1);
    spool_close(sp);
}

static void test_nack_order(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[20];
    int64_t ids[10];
    assert_int_equal(put_seq(sp, 0, 10, 20, 1, ids), 0);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 10);
    int64_t nk[] = {7, 3, 3, 42};
    assert_int_equal(spool_nack(sp, nk, 4), 0);
    assert_int_equal(put_seq(sp, 10, 2, 20, 1, ids), 0);
    /* nacked first, in id order, then the new records */
    assert_int_equal(spool_peek(sp, r, 1, SIZE_MAX), 1);
    assert_int_equal(r[0].id, 3);
    assert_int_equal(spool_peek(sp, r, 20, SIZE_MAX), 3);
    assert_int_equal(r[0].id, 7);
    assert_int_equal(r[1].id, 11);
    assert_int_equal(r[2].id, 12);
    assert_int_equal(spool_peek(sp, r, 20, SIZE_MAX), 0);
    /* an acked record that was nacked is not handed out again */
    int64_t a = 3;
    assert_int_equal(spool_nack(sp, &a, 1), 0);
    assert_int_equal(spool_ack(sp, &a, 1), 0);
    assert_int_equal(spool_peek(sp, r, 20, SIZE_MAX), 0);
    spool_close(sp);
}

static void test_restart_resumes_ids_never_reused(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[20];
    int64_t ids[10], got[20];
    int seqs[20];
    char epoch[17], idbuf[40];
    snprintf(epoch, sizeof(epoch), "%s", spool_epoch(sp));
    assert_int_equal(strlen(epoch), 16);
    spool_id_str(sp, 42, idbuf, sizeof(idbuf));
    char want[40];
    snprintf(want, sizeof(want), "%s-42", epoch);
    assert_string_equal(idbuf, want);

    assert_int_equal(put_seq(sp, 0, 10, 30, 1, ids), 0);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 10);
    int64_t newest[] = {9, 10};
    assert_int_equal(spool_ack(sp, newest, 2), 0);
    spool_close(sp);

    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_string_equal(spool_epoch(sp), epoch);
    /* everything that was in flight is eligible again, in order */
    assert_int_equal(drain(sp, got, seqs, 20), 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(got[i], i + 1);
        assert_int_equal(seqs[i], i);
    }
    /* the newest rows were deleted: their ids still are not reused (under
     * sync normal a restart goes above the ceiling: see "IDS") */
    assert_int_equal(put_seq(sp, 10, 1, 30, 1, ids), 0);
    assert_true(ids[0] > 10);
    spool_close(sp);

    /* a put after the last state write, then a restart: still counted */
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 9);
    assert_int_equal(st.put_total, 11);
    assert_int_equal(st.acked_total, 2);
    assert_int_equal(st.bytes, 9 * 37);
    int64_t a = ids[0], was = ids[0];
    assert_int_equal(spool_ack(sp, &a, 1), 0);
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(put_seq(sp, 11, 1, 30, 1, ids), 0);
    assert_true(ids[0] > was);
    spool_close(sp);
}

static void test_dead_letters(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[10];
    struct spool_dead_rec d[10];
    struct spool_stats st;
    int64_t ids[5], got[10];
    int seqs[10];
    assert_int_equal(put_seq(sp, 0, 5, 40, 77, ids), 0);
    assert_int_equal(spool_peek(sp, r, 5, SIZE_MAX), 5);
    assert_int_equal(spool_dead(sp, 2, "message too large"), 0);
    assert_int_equal(spool_dead(sp, 4, "topic authorization failed"), 0);
    assert_int_equal(spool_dead(sp, 99, "x"), -ENOENT);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 2);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.inflight, 3);

    assert_int_equal(spool_dead_list(sp, d, 10), 2);
    assert_int_equal(d[0].id, 4); /* newest first */
    assert_string_equal(d[0].reason, "topic authorization failed");
    assert_int_equal(d[1].id, 2);
    assert_string_equal(d[1].reason, "message too large");
    assert_string_equal(d[1].topic, "factory/line1/temp");
    assert_int_equal(d[1].recv_ms, 77);
    assert_int_equal(d[1].payload_len, 40);
    assert_true(d[1].dead_ms > 0);

    /* dead letters survive a restart, as do their counts */
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 2);
    assert_int_equal(drain(sp, got, NULL, 10), 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 5);

    /* replay: back in the queue under new ids, after everything else */
    assert_int_equal(spool_dead_replay(sp), 2);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.records, 5);
    assert_int_equal(drain(sp, got, seqs, 10), 2);
    assert_true(got[0] > 5);
    assert_int_equal(seqs[0], 1);
    assert_true(got[1] == got[0] + 1);
    assert_int_equal(seqs[1], 3);

    /* purge deletes, and says how many */
    assert_int_equal(spool_dead(sp, got[0], "again"), 0);
    assert_int_equal(spool_dead_purge(sp), 1);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.dead_purged, 1);
    assert_int_equal(st.records, 4);
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead_purged, 1);
    assert_int_equal(st.records, 4);
    /* ids are not reused after a replay either */
    assert_int_equal(put_seq(sp, 5, 1, 40, 77, ids), 0);
    assert_true(ids[0] > got[1]);
    spool_close(sp);
}

/* The spool's lifetime identity, which every metric of it rests on: what
 * was put is acked, dropped (full, expired, dead letters over their
 * bounds), purged, still queued or a dead letter. A replay moves rows from
 * dead letters back into the queue and cancels out. It holds after every
 * step and across a restart. */
static int64_t unaccounted(struct spool *sp)
{
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    int64_t out = st.acked_total + st.dead_purged + st.records + st.dead;
    for (int r = 0; r < SPOOL_DROP__COUNT; r++)
        out += st.dropped[r];
    return st.put_total - out;
}

static void test_lifetime_identity(void **state)
{
    struct fx *f = *state;
    struct spool_opts o = {.path = f->path,
                           .max_bytes = 2 << 20,
                           .max_age_ms = 1000,
                           .on_full = SPOOL_DROP_OLDEST,
                           .sync = SPOOL_SYNC_NORMAL,
                           .dead_max_records = 3,
                           .dead_max_age_ms = 5000,
                           .clock = &fake};
    struct spool *sp;
    struct spool_rec r[64];
    struct spool_stats st;
    char err[256];
    fclk = (struct fake_clock){.wall = 1700000000000, .mono = 1000};
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    for (int b = 0; b < 60; b++) /* 3 MB through 2 MB: drops */
        assert_int_equal(put_seq(sp, b * 50, 50, 1000, fclk.wall, NULL), 0);
    assert_int_equal(unaccounted(sp), 0);
    int k = spool_peek(sp, r, 64, SIZE_MAX);
    assert_int_equal(k, 64);
    int64_t ids[64];
    for (int i = 0; i < 50; i++)
        ids[i] = r[i].id;
    assert_int_equal(spool_ack(sp, ids, 50), 0);
    for (int i = 50; i < 56; i++) /* 6 dead letters, 3 kept */
        assert_int_equal(spool_dead(sp, r[i].id, "refused"), 0);
    spool_nack(sp, &r[56].id, 8);
    assert_int_equal(unaccounted(sp), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.dropped[SPOOL_DROP_FULL] > 0);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_FULL], 3);
    spool_close(sp);

    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    assert_int_equal(unaccounted(sp), 0);
    assert_int_equal(spool_dead_replay(sp), 3);
    assert_int_equal(unaccounted(sp), 0);
    k = spool_peek(sp, r, 2, SIZE_MAX);
    assert_int_equal(spool_dead(sp, r[0].id, "again"), 0);
    assert_int_equal(spool_dead(sp, r[1].id, "again"), 0);
    assert_int_equal(spool_dead_purge(sp), 2);
    assert_int_equal(unaccounted(sp), 0);
    fclk.mono += 2000; /* the rest expire */
    fclk.wall += 2000;
    while (spool_expire(sp) > 0) /* in slices: again while any went */
        ;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.dropped[SPOOL_DROP_EXPIRED] > 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(unaccounted(sp), 0);
    spool_close(sp);
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    assert_int_equal(unaccounted(sp), 0);
    spool_close(sp);
}

/* What the spool writes, for flash wear: at least every byte of every
 * record, not wildly more; fsyncs follow the sync mode; each handle counts
 * its own file. */
static void test_bytes_written(void **state)
{
    struct fx *f = *state;
    char other[400];
    snprintf(other, sizeof other, "%s/other.db", f->dir);
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool *sp2 = open_sp(other, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_stats a, b, c;
    assert_int_equal(spool_stats(sp, &a), 0);
    assert_int_equal(spool_stats(sp2, &c), 0);
    for (int i = 0; i < 20; i++) /* 20 commits of 50 x 1000 bytes */
        assert_int_equal(put_seq(sp, i * 50, 50, 1000, 1, NULL), 0);
    assert_int_equal(spool_stats(sp, &b), 0);
    int64_t w = b.bytes_written - a.bytes_written;
    assert_true(w >= 20 * 50 * 1000);
    assert_true(w < 3 * 20 * 50 * 1000);
    assert_true(b.syncs - a.syncs < 20); /* sync normal: not one per put */
    /* the WAL grew by what was written (no checkpoint yet) */
    assert_true(b.file_bytes <= a.file_bytes + w + 65536);
    struct spool_stats c2;
    assert_int_equal(spool_stats(sp2, &c2), 0);
    assert_int_equal(c2.bytes_written, c.bytes_written);
    spool_close(sp2);
    spool_close(sp);

    /* sync full: a put's commit fsyncs */
    struct spool_opts o = {.path = f->path, .sync = SPOOL_SYNC_FULL};
    char err[256];
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    assert_int_equal(spool_stats(sp, &a), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(put_seq(sp, i, 1, 100, 1, NULL), 0);
    assert_int_equal(spool_stats(sp, &b), 0);
    assert_true(b.syncs - a.syncs >= 10);
    assert_true(b.bytes_written - a.bytes_written >= 10 * 4096);
    spool_close(sp);
}

static void test_cap_drop_oldest(void **state)
{
    struct fx *f = *state;
    const int64_t cap = 2 << 20;
    struct spool *sp = open_sp(f->path, cap, SPOOL_DROP_OLDEST, 0);
    struct spool_stats st;
    int64_t ids[50], last = 0, *got = malloc(20000 * sizeof(*got));
    int64_t *flying = malloc(1000 * sizeof(*flying));
    int *seqs = malloc(20000 * sizeof(*seqs));
    for (int b = 0; b < 200; b++) { /* 10 MB through a 2 MB spool */
        assert_int_equal(put_seq(sp, b * 50, 50, 1000, 1, ids), 0);
        last = ids[49];
        assert_int_equal(spool_stats(sp, &st), 0);
        assert_true(st.file_bytes <= cap);
        assert_false(spool_full(sp)); /* never under drop_oldest */
        if (b == 30) { /* the oldest 1000 go in flight: never dropped */
            struct spool_rec *r = malloc(1000 * sizeof(*r));
            assert_int_equal(spool_peek(sp, r, 1000, SIZE_MAX), 1000);
            for (int i = 0; i < 1000; i++)
                flying[i] = r[i].id;
            free(r);
        }
    }
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.dropped[SPOOL_DROP_FULL] > 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 0);
    assert_int_equal(st.records + st.dropped[SPOOL_DROP_FULL], 10000);
    assert_int_equal(st.put_total, 10000);
    assert_true(st.records > 1000);      /* most of the cap holds data */
    assert_int_equal(st.inflight, 1000); /* in flight: kept, not dropped */
    assert_string_equal(spool_reason_name(SPOOL_DROP_FULL), "full");

    /* Kafka confirms the ones in flight */
    assert_int_equal(spool_ack(sp, flying, 1000), 0);
    free(flying);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.inflight, 0);

    /* what is left is the newest, contiguous, in order */
    int n = drain(sp, got, seqs, 20000);
    assert_int_equal(n, st.records);
    assert_int_equal(got[n - 1], last);
    for (int i = 0; i < n; i++) {
        assert_int_equal(got[i], last - n + 1 + i);
        assert_int_equal(seqs[i], 10000 - n + i);
    }
    spool_close(sp);
    sp = open_sp(f->path, cap, SPOOL_DROP_OLDEST, 0);
    struct spool_stats st2;
    assert_int_equal(spool_stats(sp, &st2), 0);
    assert_int_equal(st2.dropped[SPOOL_DROP_FULL], st.dropped[SPOOL_DROP_FULL]);
    assert_int_equal(st2.records, st.records);
    assert_true(st2.file_bytes <= cap);
    /* a batch too big for one put under this cap is refused, not split */
    int rc = put_seq(sp, 0, 200, 8000, 1, NULL);
    assert_int_equal(rc, -EINVAL);
    spool_close(sp);
    free(got);
    free(seqs);
}

static void test_cap_backpressure(void **state)
{
    struct fx *f = *state;
    const int64_t cap = 1 << 20;
    struct spool *sp = open_sp(f->path, cap, SPOOL_BACKPRESSURE, 0);
    struct spool_stats st;
    struct spool_rec r[100];
    int64_t ids[20];
    int ok = 0, rc = 0;
    assert_false(spool_full(sp));
    for (int b = 0; b < 1000 && (rc = put_seq(sp, ok, 20, 1000, 1, ids)) == 0;
         b++)
        ok += 20;
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(spool_errmsg(sp), "full"));
    assert_true(spool_full(sp));
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, ok);
    assert_int_equal(st.dropped[SPOOL_DROP_FULL], 0);
    assert_true(st.file_bytes <= cap);
    assert_true(ok > 300);

    /* the Kafka side drains some: the bridge may read MQTT again */
    int k = spool_peek(sp, r, 100, SIZE_MAX);
    assert_int_equal(k, 100);
    int64_t acks[100];
    for (int i = 0; i < k; i++)
        acks[i] = r[i].id;
    assert_int_equal(spool_ack(sp, acks, 100), 0);
    assert_false(spool_full(sp));
    assert_int_equal(put_seq(sp, ok, 20, 1000, 1, ids), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, ok - 100 + 20);
    assert_true(st.file_bytes <= cap);
    spool_close(sp);
}

static void test_max_age(void **state)
{
    struct fx *f = *state;
    int64_t now = wall_ms(), ids[5], flying[2];
    fclk = (struct fake_clock){now, 1000000};
    use_clock = &fake;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 1000);
    struct spool_stats st;
    struct spool_rec r[10];
    assert_int_equal(spool_expire(sp), 0); /* empty: nothing to do */
    assert_int_equal(put_seq(sp, 0, 5, 10, now - 5000, ids), 0);
    assert_int_equal(put_seq(sp, 5, 5, 10, now - 500, ids), 0);
    /* two old ones in flight: they may yet be delivered, so they stay */
    assert_int_equal(spool_peek(sp, r, 2, SIZE_MAX), 2);
    flying[0] = r[0].id;
    flying[1] = r[1].id;
    assert_int_equal(spool_expire(sp), 3);
    assert_int_equal(spool_expire(sp), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 3);
    assert_int_equal(st.dropped[SPOOL_DROP_FULL], 0);
    assert_int_equal(st.records, 7);
    assert_int_equal(st.inflight, 2);
    assert_string_equal(spool_reason_name(SPOOL_DROP_EXPIRED), "expired");
    assert_int_equal(spool_ack(sp, flying, 2), 0); /* delivered after all */
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 5);
    assert_int_equal(st.oldest_ms, now - 500);
    assert_int_equal(st.oldest_age_ms, 500);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 5);
    assert_int_equal(seq_of(&r[0]), 5);
    fclk.wall += 1000;
    fclk.mono += 1000;
    assert_int_equal(spool_expire(sp), 0); /* all in flight */
    spool_rewind(sp);
    assert_int_equal(spool_expire(sp), 5);
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 1000);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 8);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.oldest_ms, 0);
    spool_close(sp);
    use_clock = NULL;
}

/* A gateway without a real-time clock: the wall clock steps by a month at
 * the first NTP sync, or back to an old date at boot. Neither expires a
 * fresh record nor keeps a stale one: ages run on the spool clock. */
static void test_clock_jumps(void **state)
{
    struct fx *f = *state;
    const int64_t day = 86400000, max_age = 7 * day;
    struct spool_stats st;
    int64_t ids[10];
    fclk = (struct fake_clock){1700000000000, 5000};
    use_clock = &fake;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, max_age);
    assert_int_equal(put_seq(sp, 0, 5, 10, fclk.wall, ids), 0);
    /* NTP steps the wall clock 30 days forward: nothing is a day old */
    fclk.wall += 30 * day;
    fclk.mono += 1000;
    assert_int_equal(spool_expire(sp), 0);
    assert_int_equal(put_seq(sp, 5, 5, 10, fclk.wall, ids), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 10);
    assert_true(st.oldest_age_ms < 2000);
    assert_int_equal(st.clock_jumps, 1);
    /* a week later (by time passing), the first five expire, not the rest */
    fclk.wall += max_age - 500;
    fclk.mono += max_age - 500;
    assert_int_equal(spool_expire(sp), 5);
    fclk.wall += 1000;
    fclk.mono += 1000;
    assert_int_equal(spool_expire(sp), 5);
    /* the wall clock steps back a year: new records still age and go */
    fclk.wall -= 365 * day;
    assert_int_equal(put_seq(sp, 10, 3, 10, fclk.wall, ids), 0);
    fclk.wall += max_age + 1000;
    fclk.mono += max_age + 1000;
    assert_int_equal(spool_expire(sp), 3);
    /* across a restart the clock keeps the time the wall clock says went
     * by, but not a step back */
    assert_int_equal(put_seq(sp, 13, 2, 10, fclk.wall, ids), 0);
    spool_close(sp);
    fclk.wall += 6 * day; /* down for six days */
    fclk.mono = 1;        /* a reboot restarts the monotonic clock */
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, max_age);
    assert_int_equal(spool_expire(sp), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.oldest_age_ms >= 6 * day &&
                st.oldest_age_ms < 6 * day + 5000);
    spool_close(sp);
    fclk.wall -= 100 * day; /* rebooted without a clock: back in time */
    fclk.mono = 1;
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, max_age);
    assert_int_equal(spool_expire(sp), 0);
    fclk.mono += day + 10000; /* a day more: seven in all */
    assert_int_equal(spool_expire(sp), 2);
    spool_close(sp);
    use_clock = NULL;
}

/* After a long outage millions may be due: one call deletes a slice. */
static void test_expire_in_slices(void **state)
{
    struct fx *f = *state;
    fclk = (struct fake_clock){1700000000000, 5000};
    use_clock = &fake;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 1000);
    for (int i = 0; i < 60; i++)
        assert_int_equal(put_seq(sp, i * 200, 200, 10, fclk.wall, NULL), 0);
    fclk.mono += 5000;
    assert_int_equal(spool_expire(sp), SPOOL_EXPIRE_MAX);
    assert_int_equal(spool_expire(sp), SPOOL_EXPIRE_MAX);
    assert_int_equal(spool_expire(sp), 12000 - 2 * SPOOL_EXPIRE_MAX);
    assert_int_equal(spool_expire(sp), 0);
    spool_close(sp);
    use_clock = NULL;
}

/* Kafka refuses a route for good: its dead letters keep their own bounds,
 * the oldest beyond them dropped and counted. */
static void test_dead_bounds(void **state)
{
    struct fx *f = *state;
    struct spool_opts o = {.path = f->path,
                           .sync = SPOOL_SYNC_NORMAL,
                           .dead_max_records = 3,
                           .dead_max_age_ms = 10000,
                           .clock = &fake};
    struct spool *sp;
    struct spool_stats st;
    struct spool_rec r[10];
    char err[512];
    fclk = (struct fake_clock){1700000000000, 5000};
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    assert_int_equal(put_seq(sp, 0, 5, 100, fclk.wall, NULL), 0);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(spool_dead(sp, r[i].id, "not authorized"), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 3);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_FULL], 2);
    assert_int_equal(st.dead_bytes, 3 * (100 + 4 + 3));
    assert_int_equal(st.records, 0);
    struct spool_dead_rec d[5];
    assert_int_equal(spool_dead_list(sp, d, 5), 3); /* the newest stay */
    assert_string_equal(spool_reason_name(SPOOL_DROP_DEAD_FULL), "dead_full");
    fclk.mono += 11000;
    assert_int_equal(spool_expire(sp), 3);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.dead_bytes, 0);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_EXPIRED], 3);
    spool_close(sp);
    /* the counts survive a restart; a bytes bound works the same */
    o.dead_max_records = 0;
    o.dead_max_bytes = 250;
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), 0);
    assert_int_equal(put_seq(sp, 0, 4, 100, fclk.wall, NULL), 0);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(spool_dead(sp, r[i].id, "too large"), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 2);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_FULL], 4);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_EXPIRED], 3);
    spool_close(sp);
}

static int count_corrupt_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, "spool.db.corrupt-") &&
            !strstr(e->d_name, "-wal"))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void scribble(const char *path, off_t off, size_t len)
{
    unsigned char junk[4096];
    memset(junk, 0xA5, sizeof(junk));
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, len, off), (ssize_t)len);
    close(fd);
}

static void corrupt_case(struct fx *f, off_t off, size_t len)
{
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t ids[100];
    char old_epoch[17];
    snprintf(old_epoch, sizeof(old_epoch), "%s", spool_epoch(sp));
    for (int i = 0; i < 5; i++)
        assert_int_equal(put_seq(sp, i * 100, 100, 200, 1, ids), 0);
    spool_close(sp);
    scribble(f->path, off, len);

    struct spool_opts o = {.path = f->path, .sync = SPOOL_SYNC_NORMAL};
    char err[512];
    assert_int_equal(spool_open(&o, &sp, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "corrupt"));
    assert_non_null(strstr(spool_errmsg(sp), "moved it to"));
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.recovered, 1);
    assert_int_equal(st.records, 0);
    assert_string_not_equal(spool_epoch(sp), old_epoch);
    assert_int_equal(count_corrupt_files(f->dir), 1);
    /* the fresh spool works */
    struct spool_rec r[10];
    assert_int_equal(put_seq(sp, 0, 3, 10, 1, ids), 0);
    assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 3);
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.recovered, 0);
    assert_int_equal(st.records, 3);
    spool_close(sp);
}

static void test_corrupt_header(void **state)
{
    corrupt_case(*state, 0, 100);
}

static void test_corrupt_page(void **state)
{
    corrupt_case(*state, 4 * 4096, 4096);
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    spool_close(open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0));
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), 0);
    sqlite3_close(db);
    struct spool_opts o = {.path = f->path, .sync = SPOOL_SYNC_NORMAL};
    struct spool *sp = (struct spool *)1;
    char err[512];
    assert_int_equal(spool_open(&o, &sp, err, sizeof(err)), -EINVAL);
    assert_null(sp);
    assert_non_null(strstr(err, "schema version 99"));
    assert_int_equal(count_corrupt_files(f->dir), 0);
    /* bad options are refused too */
    o.max_bytes = 1000;
    assert_int_equal(spool_open(&o, &sp, err, sizeof(err)), -EINVAL);
}

/* A schema 1 file (before tags outlived their ack) is migrated on open:
 * its records, counters and epoch are kept, and acks then keep tags. */
/* Acks must free a full spool even when the rows carry tags: keeping the
 * tags needs room, and a full spool has none (a deadlock once: acks failed,
 * so the spool stayed full). */
static void test_full_spool_acks_with_tags(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 1 << 20, SPOOL_BACKPRESSURE, 0);
    static char pay[40];
    memset(pay, 'x', sizeof(pay));
    int puts = 0, rc;
    do {
        struct spool_rec r[20];
        for (int i = 0; i < 20; i++) {
            memset(&r[i], 0, sizeof(r[i]));
            r[i].topic = "t";
            r[i].payload = pay;
            r[i].payload_len = sizeof(pay);
            r[i].tag = (int64_t)(puts * 20 + i + 1);
        }
        rc = spool_put(sp, r, 20);
        puts++;
    } while (rc == 0 && puts < 10000);
    assert_int_equal(rc, -ENOSPC);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    int64_t *ids = malloc((size_t)st.records * sizeof(*ids));
    struct spool_rec *r = malloc((size_t)st.records * sizeof(*r));
    int n = spool_peek(sp, r, (size_t)st.records, SIZE_MAX);
    assert_int_equal(n, st.records);
    for (int i = 0; i < n; i++)
        ids[i] = r[i].id;
    assert_int_equal(spool_ack(sp, ids, (size_t)n), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_false(spool_full(sp));
    struct spool_rec one = {.topic = "t", .payload = pay, .payload_len = 10};
    assert_int_equal(spool_put(sp, &one, 1), 0);
    free(ids);
    free(r);
    spool_close(sp);
}

static int kv_collect(void *ud, const char *key, const void *v, size_t len)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s=%.*s;", key, (int)len, (const char *)v);
    return 0;
}

/* Named values: put, replace, get, list by prefix, delete; they survive a
 * reopen, and bad keys and sizes are refused. */
static void test_kv(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    char buf[16], all[256] = "";
    size_t len;
    assert_int_equal(spool_kv_put(sp, "spb/g/e", "ab\0c", 4), 0);
    assert_int_equal(spool_kv_put(sp, "spb/g/e", "xyz", 3), 0);
    assert_int_equal(spool_kv_put(sp, "spb/g/e/d", "", 0), 0);
    assert_int_equal(spool_kv_put(sp, "other", "1", 1), 0);
    assert_int_equal(spool_kv_get(sp, "nope", buf, sizeof buf, &len), -ENOENT);
    assert_int_equal(spool_kv_get(sp, "spb/g/e", buf, 2, &len), -ENOSPC);
    assert_int_equal(len, 3);
    assert_int_equal(spool_kv_put(sp, "", "x", 1), -EINVAL);
    spool_close(sp);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_kv_get(sp, "spb/g/e", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "xyz", 3);
    assert_int_equal(spool_kv_list(sp, "spb/", kv_collect, all), 0);
    assert_string_equal(all, "spb/g/e=xyz;spb/g/e/d=;");
    assert_int_equal(spool_kv_del(sp, "spb/g/e"), 0);
    assert_int_equal(spool_kv_del(sp, "spb/g/e"), 0);
    all[0] = '\0';
    assert_int_equal(spool_kv_list(sp, "", kv_collect, all), 0);
    assert_string_equal(all, "other=1;spb/g/e/d=;");
    struct spool_kv kv[2] = {{"a", "1", 1}, {"other", "22", 2}};
    assert_int_equal(spool_kv_put_n(sp, kv, 2), 0);
    kv[1].key = ""; /* all or none */
    kv[0].v = "9";
    assert_int_equal(spool_kv_put_n(sp, kv, 2), -EINVAL);
    all[0] = '\0';
    assert_int_equal(spool_kv_list(sp, "", kv_collect, all), 0);
    assert_string_equal(all, "a=1;other=22;spb/g/e/d=;");
    spool_close(sp);
}

static void test_migrate_v1(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t ids[5];
    assert_int_equal(put_seq(sp, 0, 5, 20, 1, ids), 0);
    char epoch[17];
    snprintf(epoch, sizeof(epoch), "%s", spool_epoch(sp));
    spool_close(sp);
    sqlite3 *db; /* turn it back into what version 1 wrote */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "DROP TRIGGER dead_big; DROP TABLE big;"
                     "DROP TABLE big_part;"
                     "DROP TABLE tags; DROP TABLE clock; DROP TABLE kv;"
                     "ALTER TABLE state DROP COLUMN clock_ms;"
                     "ALTER TABLE state DROP COLUMN clock_wall_ms;"
                     "ALTER TABLE state DROP COLUMN dead_dropped_full;"
                     "ALTER TABLE state DROP COLUMN dead_dropped_expired;"
                     "ALTER TABLE state DROP COLUMN id_ceiling;"
                     "DROP TABLE rec_fast; DROP TABLE rec_bulk;"
                     "ALTER TABLE dead DROP COLUMN lane;"
                     "PRAGMA user_version=1",
                     NULL, NULL, NULL),
        0);
    sqlite3_close(db);

    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_string_equal(spool_epoch(sp), epoch);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 5);
    assert_int_equal(st.put_total, 5);
    struct spool_rec r = {
        .topic = "t", .payload = "p", .payload_len = 1, .tag = 77};
    assert_int_equal(spool_put(sp, &r, 1), 0);
    assert_int_equal(spool_ack(sp, &r.id, 1), 0);
    int64_t rid, rtag;
    assert_int_equal(spool_recent(sp, &rid, &rtag, 1), 1);
    assert_int_equal(rtag, 77);
    spool_close(sp);
}

/* Moves the spool's id counter to next-1, as months of traffic would:
 * the next put gets id next. */
static void set_last_id(const char *path, int64_t last)
{
    sqlite3 *db;
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE state SET last_id=%lld,id_ceiling=0",
             (long long)last);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Ids past 2^31 and 2^32 (25 and 50 days at 1,000 msg/s) are put, handed
 * out, nacked, handed out again in order, acked and never reused, on 32-bit
 * targets as on 64-bit ones. */
static void test_ids_above_2_32(void **state)
{
    struct fx *f = *state;
    const int64_t bases[] = {(1LL << 31) - 5, (1LL << 32) - 5, (1LL << 53) - 5};
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
        spool_close(sp);
        set_last_id(f->path, bases[b]);
        sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
        int64_t ids[20], got[40];
        assert_int_equal(put_seq(sp, 0, 20, 50, 1, ids), 0);
        for (int i = 0; i < 20; i++)
            assert_true(ids[i] == bases[b] + 1 + i);
        assert_int_equal(drain(sp, got, NULL, 40), 20);
        for (int i = 0; i < 20; i++)
            assert_true(got[i] == ids[i]);
        /* ids on both sides of the boundary come back, in id order */
        int64_t back[3] = {ids[12], ids[3], ids[5]};
        assert_int_equal(spool_nack(sp, back, 3), 0);
        struct spool_rec r[10];
        assert_int_equal(spool_peek(sp, r, 10, SIZE_MAX), 3);
        assert_true(r[0].id == ids[3] && r[1].id == ids[5] &&
                    r[2].id == ids[12]);
        assert_int_equal(spool_ack(sp, got, 20), 0);
        struct spool_stats st;
        assert_int_equal(spool_stats(sp, &st), 0);
        assert_int_equal(st.records, 0);
        assert_int_equal(st.inflight, 0);
        assert_int_equal(st.acked_total, 20);
        spool_close(sp);
        /* a restart continues above them */
        sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
        int64_t next;
        assert_int_equal(put_seq(sp, 0, 1, 10, 1, &next), 0);
        assert_true(next > ids[19]);
        char buf[48];
        spool_id_str(sp, next, buf, sizeof(buf));
        char want[32];
        snprintf(want, sizeof(want), "-%lld", (long long)next);
        assert_non_null(strstr(buf, want));
        assert_int_equal(drain(sp, got, NULL, 40), 1);
        assert_int_equal(spool_ack(sp, got, 1), 0);
        spool_close(sp);
        unlink(f->path);
        char wal[320];
        snprintf(wal, sizeof(wal), "%s-wal", f->path);
        unlink(wal);
    }
}

static void test_second_open_refused(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(put_seq(sp, 0, 1, 10, 1, NULL), 0);
    struct spool_opts o = {.path = f->path, .sync = SPOOL_SYNC_NORMAL};
    struct spool *sp2 = NULL;
    char err[512];
    assert_int_equal(spool_open(&o, &sp2, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(count_corrupt_files(f->dir), 0);
    spool_close(sp);
}

/* One writer thread and one reader thread sharing a handle. */
struct duo {
    struct spool *sp;
    int total;
    int64_t acked;
    int order_ok;
};

static void *reader(void *arg)
{
    struct duo *d = arg;
    struct spool_rec r[200];
    int64_t ids[200], prev = 0;
    d->order_ok = 1;
    while (d->acked < d->total) {
        int k = spool_peek(d->sp, r, 200, 64 * 1024);
        if (k < 0)
            break;
        for (int i = 0; i < k; i++) {
            if (r[i].id <= prev || seq_of(&r[i]) != (int)r[i].id - 1)
                d->order_ok = 0;
            prev = ids[i] = r[i].id;
        }
        if (k && spool_ack(d->sp, ids, (size_t)k))
            break;
        d->acked += k;
        if (!k)
            usleep(100);
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    struct fx *f = *state;
    struct duo d = {open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0), 20000, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &d), 0);
    for (int b = 0; b < d.total / 100; b++)
        assert_int_equal(put_seq(d.sp, b * 100, 100, 100, 1, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(d.acked, d.total);
    assert_true(d.order_ok);
    struct spool_stats st;
    assert_int_equal(spool_stats(d.sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.acked_total, d.total);
    spool_close(d.sp);
}

/* Mounts a small tmpfs on the fixture's directory (root only). */
static int small_disk(struct fx *f, const char *size)
{
    char opt[32];
    if (geteuid() != 0)
        return 0; /* needs root to mount a small tmpfs */
    snprintf(opt, sizeof(opt), "size=%s", size);
    if (mount("tmpfs", f->dir, "tmpfs", 0, opt) != 0) {
        fprintf(stderr, "disk-full test skipped: mount tmpfs: %s\n",
                strerror(errno));
        return 0;
    }
    f->mounted = 1;
    return 1;
}

/* Writes a file that takes every free byte of the filesystem. */
static void fill_disk(const char *path)
{
    static char blk[65536];
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    memset(blk, 1, sizeof(blk));
    while (write(fd, blk, sizeof(blk)) > 0)
        ;
    while (write(fd, blk, 512) > 0)
        ;
    close(fd);
}

/* The filesystem is smaller than max_bytes: the cap in effect is what it
 * can hold, said in the stats. */
static void test_cap_follows_the_disk(void **state)
{
    struct fx *f = *state;
    struct spool_stats st;
    if (!small_disk(f, "3m"))
        skip();
    struct spool *sp = open_sp(f->path, 64 << 20, SPOOL_BACKPRESSURE, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.max_bytes < 3 << 20);
    assert_true(st.max_bytes > 2 << 20);
    assert_true(st.reserve_held);
    /* it fills to its cap and says so, leaving the filesystem some room */
    int ok = 0, rc = 0;
    for (int b = 0; b < 500 && (rc = put_seq(sp, ok, 20, 500, 1, NULL)) == 0;
         b++)
        ok += 20;
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(spool_full(sp), 1);
    struct statvfs v;
    assert_int_equal(statvfs(f->dir, &v), 0);
    assert_true((int64_t)v.f_bavail * (int64_t)v.f_frsize >= 32 << 10);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, ok);
    spool_close(sp);
}

/* The disk fills up (logs, the broker's own files) before max_bytes is
 * reached. Nothing stored is lost; the deletes of delivered records still
 * commit (the reserve is given back for them); drop_oldest keeps taking new
 * records by dropping old ones, backpressure refuses them until acks made
 * room; once space returns the reserve is taken again. Once, the deletes
 * failed for good with "database or disk is full" and input stalled. */
static void disk_full_case(struct fx *f, enum spool_on_full policy)
{
    char filler[600];
    struct spool_stats st;
    struct spool_rec r[100];
    int64_t ids[200];
    if (!small_disk(f, "4m"))
        skip();
    snprintf(filler, sizeof(filler), "%s/filler", f->dir);
    struct spool *sp = open_sp(f->path, 0, policy, 0);
    int ok = 0;
    for (int b = 0; b < 10; b++, ok += 20)
        assert_int_equal(put_seq(sp, ok, 20, 1000, 1, NULL), 0);
    spool_close(sp); /* the WAL is folded in and removed: it must grow again */
    sp = open_sp(f->path, 0, policy, 0);
    fill_disk(filler);

    /* deliver 100: the delete needs WAL space the disk no longer has */
    assert_int_equal(spool_peek(sp, r, 100, SIZE_MAX), 100);
    for (int i = 0; i < 100; i++)
        ids[i] = r[i].id;
    int rc = spool_ack(sp, ids, 100);
    if (rc)
        fail_msg("ack on a full disk: %s", spool_errmsg(sp));
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, ok - 100);
    assert_int_equal(st.reserve_held, 0);

    /* new records: dropped oldest or refused, never an error for good */
    int put = 0;
    for (int b = 0; b < 50; b++) {
        rc = put_seq(sp, ok + put, 20, 1000, 1, NULL);
        if (rc)
            break;
        put += 20;
    }
    assert_int_equal(spool_stats(sp, &st), 0);
    if (policy == SPOOL_DROP_OLDEST) {
        assert_int_equal(rc, 0);
        assert_true(st.dropped[SPOOL_DROP_FULL] > 0);
        assert_int_equal(st.records + st.dropped[SPOOL_DROP_FULL],
                         ok - 100 + put);
    } else {
        assert_int_equal(rc, -ENOSPC);
        assert_int_equal(spool_full(sp), 1);
        assert_int_equal(st.dropped[SPOOL_DROP_FULL], 0);
        assert_int_equal(st.records, ok - 100 + put);
    }

    /* space comes back: the reserve is taken again, puts go on */
    unlink(filler);
    sleep(1); /* the reserve is retried at most once a second */
    assert_int_equal(put_seq(sp, 100000, 20, 1000, 1, NULL), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.reserve_held, 1);
    assert_int_equal(spool_full(sp), 0);
    /* every record stored is still there, in order */
    int64_t *all = malloc(4000 * sizeof(*all));
    int *seqs = malloc(4000 * sizeof(*seqs));
    int n = drain(sp, all, seqs, 4000);
    assert_int_equal(n, st.records);
    for (int i = 1; i < n; i++)
        assert_true(seqs[i] > seqs[i - 1]);
    assert_int_equal(seqs[n - 1], 100019);
    free(all);
    free(seqs);
    spool_close(sp);
}

static void test_disk_full_drop_oldest(void **state)
{
    disk_full_case(*state, SPOOL_DROP_OLDEST);
}

static void test_disk_full_backpressure(void **state)
{
    disk_full_case(*state, SPOOL_BACKPRESSURE);
}

/* --- reserved ids and spills (the bridge's direct path) ---------------------
 */

/* n records "seq=<seq0+i>" under ids first.., tagged 500+seq. */
static int spill_seq(struct spool *sp, int seq0, int n, int64_t first,
                     const unsigned char *inflight)
{
    struct spool_rec r[64];
    char own[64][32];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(own[i], sizeof(own[i]), "seq=%d;", seq0 + i);
        r[i] = (struct spool_rec){.id = first + i,
                                  .topic = "factory/line1/temp",
                                  .payload = own[i],
                                  .payload_len = strlen(own[i]),
                                  .recv_ms = wall_ms(),
                                  .tag = 500 + seq0 + i};
    }
    return spool_spill(sp, r, (size_t)n, inflight);
}

static void test_reserve_ids(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t ids[4], first = 0, again = 0;
    assert_int_equal(put_seq(sp, 0, 2, 10, wall_ms(), ids), 0);
    assert_int_equal(spool_reserve(sp, 1000, &first), 0);
    assert_true(first > ids[1]);
    assert_int_equal(put_seq(sp, 2, 1, 10, wall_ms(), ids + 2), 0);
    assert_true(ids[2] >= first + 1000); /* puts go above the block */
    spool_close(sp);
    /* the block survives a restart (and a crash: it was committed) */
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(put_seq(sp, 3, 1, 10, wall_ms(), ids + 3), 0);
    assert_true(ids[3] > ids[2]);
    assert_int_equal(spool_reserve(sp, 10, &again), 0);
    assert_true(again > ids[3]);
    assert_int_equal(spool_reserve(sp, 0, &again), -EINVAL);
    spool_close(sp);
}

static void test_spill(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t first, ids[16];
    int seqs[16];
    struct spool_stats st;
    assert_int_equal(spool_reserve(sp, 100, &first), 0);
    /* records 0..5 of a burst: 0, 1, 3 are with the producer, 2, 4, 5 not
     * (refused for now, or never sent) */
    unsigned char fl[6] = {1, 1, 0, 1, 0, 0};
    assert_int_equal(spill_seq(sp, 0, 6, first, fl), 0);
    assert_int_equal(spool_backlog(sp), 6);
    spool_stats(sp, &st);
    assert_int_equal(st.records, 6);
    assert_int_equal(st.inflight, 3); /* with Kafka; the others wait */
    /* only the ones not in flight come out of peek, in id order */
    assert_int_equal(drain(sp, ids, seqs, 16), 3);
    assert_int_equal(seqs[0], 2);
    assert_int_equal(seqs[1], 4);
    assert_int_equal(seqs[2], 5);
    assert_int_equal(ids[0], first + 2);
    /* a report for a spilled record acks it; a failed one comes back */
    int64_t a[2] = {first, first + 1}, b = first + 3;
    assert_int_equal(spool_ack(sp, a, 2), 0);
    assert_int_equal(spool_nack(sp, &b, 1), 0);
    assert_int_equal(drain(sp, ids, seqs, 16), 1);
    assert_int_equal(seqs[0], 3);
    /* ids outside a reserved block, or out of order, are refused */
    assert_int_equal(spill_seq(sp, 10, 1, first + 1000, fl), -EINVAL);
    unsigned char none[2] = {0, 0};
    struct spool_rec r2[2] = {
        {.id = first + 20, .topic = "t", .payload = "x", .payload_len = 1},
        {.id = first + 19, .topic = "t", .payload = "y", .payload_len = 1}};
    assert_int_equal(spool_spill(sp, r2, 2, none), -EINVAL);
    /* a put after a spill goes above the block and after the spill */
    assert_int_equal(put_seq(sp, 6, 1, 10, wall_ms(), ids), 0);
    assert_true(ids[0] >= first + 100);
    spool_close(sp);
    /* after a restart the counters hold what is there (the spill wrote
     * them: its rows are below last_id), and everything is eligible in
     * id order */
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    spool_stats(sp, &st);
    assert_int_equal(st.records, 5);
    assert_int_equal(st.put_total, 7);
    assert_int_equal(drain(sp, ids, seqs, 16), 5);
    int want[5] = {2, 3, 4, 5, 6};
    for (int i = 0; i < 5; i++)
        assert_int_equal(seqs[i], want[i]);
    /* the tags of spilled rows are there for the redelivery check, and
     * outlive their ack though the block moved last_id far ahead */
    assert_int_equal(spool_ack(sp, ids, 5), 0);
    int64_t rid[8], tags[8];
    assert_int_equal(spool_recent(sp, rid, tags, 8), 6); /* put_seq: none */
    assert_int_equal(tags[0], 505);
    assert_int_equal(tags[5], 500);
    spool_close(sp);
}

/* A crash can eat the PUBACK of a spilled message after Kafka confirmed
 * it: its tag must outlive the ack, though the reserved block put
 * last_id far beyond the newest TAGS_KEEP ids. */
static void test_spill_tags_kept(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t first, rid[8], tags[8];
    unsigned char fl[3] = {1, 1, 1};
    assert_int_equal(spool_reserve(sp, 100000, &first), 0);
    assert_int_equal(spill_seq(sp, 0, 3, first, fl), 0);
    int64_t a[3] = {first, first + 1, first + 2};
    assert_int_equal(spool_ack(sp, a, 3), 0);
    assert_int_equal(spool_backlog(sp), 0);
    assert_int_equal(spool_recent(sp, rid, tags, 8), 3);
    assert_int_equal(tags[0], 502);
    spool_close(sp);
}

/* drop_oldest never drops a spilled record the producer holds. */
static void test_spill_inflight_not_dropped(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 1 << 20, SPOOL_DROP_OLDEST, 0);
    int64_t first, ids[256];
    unsigned char fl[4] = {1, 1, 1, 1};
    assert_int_equal(spool_reserve(sp, 100, &first), 0);
    assert_int_equal(spill_seq(sp, 0, 4, first, fl), 0);
    /* fill past the cap: the oldest eligible rows go, not the spill */
    for (int i = 0; i < 100; i++)
        assert_int_equal(put_seq(sp, 100 + i * 4, 4, 4000, wall_ms(), NULL), 0);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_true(st.dropped[SPOOL_DROP_FULL] > 0);
    int64_t a[4] = {first, first + 1, first + 2, first + 3};
    int64_t before = st.acked_total;
    assert_int_equal(spool_ack(sp, a, 4), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.acked_total - before, 4); /* all four were there */
    (void)ids;
    spool_close(sp);
}

static int64_t count_rows(const char *path, const char *table)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[64];
    int64_t n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Once, a reserved block held the tags' cut-off back for as long as the
 * spool path ran: every acked row's tag was kept, without end. */
static void test_tags_bounded_after_a_reserve(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t first, ids[256];
    assert_int_equal(spool_reserve(sp, 65536, &first), 0);
    for (int round = 0; round < 100; round++) {
        struct spool_rec r[256];
        for (int i = 0; i < 256; i++)
            r[i] = (struct spool_rec){
                .topic = "t", .payload = "p", .payload_len = 1, .tag = 7};
        assert_int_equal(spool_put(sp, r, 256), 0);
        for (int i = 0; i < 256; i++)
            ids[i] = r[i].id;
        assert_int_equal(drain(sp, ids, NULL, 256), 256);
        assert_int_equal(spool_ack(sp, ids, 256), 0);
    }
    spool_close(sp);
    int64_t tags = count_rows(f->path, "tags");
    assert_true(tags >= 8192 && tags <= 8192 + 256);
}

/* A spill whose ids lie below what peek already handed out: its rows that
 * are not with the producer must still be handed out. */
static void test_spill_below_hi(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t first, ids[8], got[8];
    int seqs[8];
    assert_int_equal(spool_reserve(sp, 100, &first), 0);
    assert_int_equal(put_seq(sp, 10, 2, 10, wall_ms(), ids), 0);
    assert_true(ids[0] > first + 99);
    assert_int_equal(drain(sp, got, NULL, 8), 2); /* hi is above the block */
    unsigned char fl[3] = {1, 0, 0};
    assert_int_equal(spill_seq(sp, 0, 3, first, fl), 0);
    assert_int_equal(drain(sp, got, seqs, 8), 2);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);
    assert_int_equal(spool_backlog(sp), 5);
    spool_close(sp);
}

/* Under sync normal a power cut can take back commits whose ids Kafka
 * already has; the next start must not hand those ids out again. The
 * rollback is played behind the spool's back: the newest rows deleted and
 * the state row as the last delete transaction before them left it. */
static void test_ids_not_reused_after_rollback(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    int64_t ids[10], again;
    assert_int_equal(put_seq(sp, 0, 5, 10, wall_ms(), ids), 0);
    assert_int_equal(put_seq(sp, 5, 5, 10, wall_ms(), ids + 5), 0);
    spool_close(sp);
    sqlite3 *db;
    char sql[96];
    snprintf(sql, sizeof(sql),
             "DELETE FROM rec WHERE id>%lld; UPDATE state SET last_id=%lld",
             (long long)ids[4], (long long)ids[4]);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(put_seq(sp, 10, 1, 10, wall_ms(), &again), 0);
    assert_true(again > ids[9]);
    spool_close(sp);
}

/* --- lanes ------------------------------------------------------------- */

/* Puts one record "lane=<l>;seq=<seq>" into lane l; returns its id. */
static int64_t put_lane(struct spool *sp, int l, int seq)
{
    char p[32];
    snprintf(p, sizeof(p), "seq=%d;", seq);
    struct spool_rec r = {.topic = "t",
                          .payload = p,
                          .payload_len = strlen(p),
                          .recv_ms = wall_ms(),
                          .lane = l,
                          .tag = 900 + seq};
    assert_int_equal(spool_put(sp, &r, 1), 0);
    return r.id;
}

static void test_lanes(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    struct spool_rec r[16];
    int64_t ids[12];
    /* interleaved: normal 0..3, fast 4..7, bulk 8..11, by turns */
    for (int i = 0; i < 12; i++)
        ids[i] = put_lane(sp,
                          i % 3 == 0   ? SPOOL_LANE_NORMAL
                          : i % 3 == 1 ? SPOOL_LANE_FAST
                                       : SPOOL_LANE_BULK,
                          i);
    for (int i = 1; i < 12; i++)
        assert_true(ids[i] > ids[i - 1]); /* one id sequence */
    /* one lane's peek sees only its own rows, in order */
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_FAST, r, 16, SIZE_MAX), 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seq_of(&r[i]), 1 + 3 * i);
        assert_int_equal(r[i].lane, SPOOL_LANE_FAST);
    }
    /* a fast record comes back: it is handed out again, not a normal one */
    int64_t back = ids[4];
    assert_int_equal(spool_nack(sp, &back, 1), 0);
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_NORMAL, r, 2, SIZE_MAX), 2);
    assert_int_equal(seq_of(&r[0]), 0);
    assert_int_equal(seq_of(&r[1]), 3);
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_FAST, r, 16, SIZE_MAX), 1);
    assert_int_equal(seq_of(&r[0]), 4);
    /* spool_peek: fast first, then normal, then bulk */
    assert_int_equal(spool_peek(sp, r, 16, SIZE_MAX), 6);
    assert_int_equal(seq_of(&r[0]), 6);
    assert_int_equal(seq_of(&r[1]), 9);
    assert_int_equal(r[2].lane, SPOOL_LANE_BULK);
    assert_int_equal(seq_of(&r[2]), 2);
    /* acks across lanes in one call; a dead letter keeps its lane */
    int64_t acks[3] = {ids[0], ids[1], ids[2]};
    assert_int_equal(spool_ack(sp, acks, 3), 0);
    assert_int_equal(spool_dead(sp, ids[5], "refused"), 0); /* bulk */
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 8);
    assert_int_equal(st.dead, 1);
    spool_close(sp);
    /* after a restart: counts, and each lane's rows eligible again */
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 8);
    assert_int_equal(spool_dead_replay(sp), 1);
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_BULK, r, 16, SIZE_MAX), 3);
    assert_int_equal(seq_of(&r[0]), 8);
    assert_int_equal(seq_of(&r[1]), 11);
    assert_int_equal(seq_of(&r[2]), 5); /* replayed: last, in its lane */
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_FAST, r, 16, SIZE_MAX), 3);
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     3);
    /* the tags of all lanes are seen, newest first */
    int64_t rid[16], tags[16];
    assert_true(spool_recent(sp, rid, tags, 16) >= 9);
    assert_int_equal(tags[0], 900 + 11); /* (a replayed row has no tag) */
    assert_int_equal(tags[1], 900 + 10);
    spool_close(sp);
}

/* The rows' sizes as the tables hold them (the spool closed). */
static void table_totals(const char *path, int64_t *rows, int64_t *bytes)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT count(*),total(size) FROM (SELECT size FROM"
                           " rec UNION ALL SELECT size FROM rec_fast UNION ALL"
                           " SELECT size FROM rec_bulk)",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *rows = sqlite3_column_int64(st, 0);
    *bytes = (int64_t)sqlite3_column_double(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Acks count what they free from the sizes kept with the records in
 * flight (no pass over the rows): records of all three lanes, of many
 * sizes, interleaved; acks in delivery order (a run per partition),
 * with duplicates, unknown ids, and ids handed out again after a rewind.
 * The counts must match the tables exactly, before and after a reopen. */
static void test_ack_counts_from_memory(void **state)
{
    enum { N = 3000 };
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    static char pay[N][300];
    static int64_t ids[N], acks[N + 64];
    static struct spool_rec r[N];
    int64_t bytes = 0;
    for (int i = 0; i < N; i++) {
        size_t len = 1 + (size_t)(i * 37 % 300);
        memset(pay[i], 'a' + i % 26, len);
        r[i] = (struct spool_rec){.topic = "t/x",
                                  .key = "k",
                                  .key_len = (size_t)(i % 2),
                                  .payload = pay[i],
                                  .payload_len = len,
                                  .recv_ms = wall_ms(),
                                  .lane = (i / 7) % 3};
        bytes += (int64_t)(r[i].key_len + len);
    }
    for (int i = 0; i < N; i += 100)
        assert_int_equal(spool_put(sp, r + i, 100), 0);
    for (int i = 0; i < N; i++)
        ids[i] = r[i].id;
    struct spool_rec pk[512];
    int got = 0, k;
    while ((k = spool_peek(sp, pk, 512, SIZE_MAX)) > 0)
        got += k;
    assert_int_equal(got, N);
    /* the first 2,000 acked as 4 partitions report them: i % 4 runs */
    size_t na = 0;
    int64_t freed = 0;
    for (int part = 0; part < 4; part++)
        for (int i = part; i < 2000; i += 4)
            acks[na++] = ids[i];
    acks[na++] = ids[10];             /* a duplicate */
    acks[na++] = ids[N - 1] + 100000; /* unknown */
    /* ids no spool hands out: no harm (their span once overflowed the
     * sort's bitmap: a write far outside it) */
    int64_t bogus[] = {INT64_MAX, INT64_MIN, 3 - INT64_MAX, 0};
    assert_int_equal(spool_ack(sp, bogus, 4), 0);
    for (int i = 0; i < 2000; i++)
        freed += (int64_t)(r[i].key_len + r[i].payload_len);
    assert_int_equal(spool_ack(sp, acks, na), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, N - 2000);
    assert_int_equal(st.bytes, bytes - freed);
    /* a rewind forgets what was in flight: acks of ids handed out before
     * count from the rows; some are handed out again first */
    spool_rewind(sp);
    assert_true(spool_peek(sp, pk, 100, SIZE_MAX) > 0);
    na = 0;
    for (int i = 2000; i < N; i += 2)
        acks[na++] = ids[i];
    for (int i = 2000; i < N; i += 2)
        freed += (int64_t)(r[i].key_len + r[i].payload_len);
    assert_int_equal(spool_ack(sp, acks, na), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, N - 2500);
    assert_int_equal(st.bytes, bytes - freed);
    assert_int_equal(st.acked_total, 2500);
    spool_close(sp);
    int64_t trows, tbytes;
    table_totals(f->path, &trows, &tbytes);
    assert_int_equal(trows, N - 2500);
    assert_int_equal(tbytes, bytes - freed);
    sp = open_sp(f->path, 0, SPOOL_DROP_OLDEST, 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, N - 2500);
    assert_int_equal(st.bytes, bytes - freed);
    spool_close(sp);
}

/* drop_oldest takes bulk first, then normal; fast last. */
static void test_lanes_drop_order(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path, 1 << 20, SPOOL_DROP_OLDEST, 0);
    char big[2000];
    memset(big, 'x', sizeof(big));
    int64_t fast[20];
    for (int i = 0; i < 20; i++) {
        struct spool_rec r[3];
        for (int l = 0; l < 3; l++)
            r[l] = (struct spool_rec){.topic = "t",
                                      .payload = big,
                                      .payload_len = sizeof(big),
                                      .recv_ms = wall_ms(),
                                      .lane = l};
        assert_int_equal(spool_put(sp, r, 3), 0);
        fast[i] = r[SPOOL_LANE_FAST].id;
    }
    /* normal-lane puts until something had to go */
    struct spool_stats st;
    for (int i = 0; i < 400; i++) {
        struct spool_rec r = {.topic = "t",
                              .payload = big,
                              .payload_len = sizeof(big),
                              .recv_ms = wall_ms()};
        assert_int_equal(spool_put(sp, &r, 1), 0);
        assert_int_equal(spool_stats(sp, &st), 0);
        if (st.dropped[SPOOL_DROP_FULL] >= 20)
            break;
    }
    assert_true(st.dropped[SPOOL_DROP_FULL] >= 20);
    struct spool_rec r[32];
    /* bulk went first; the fast lane is whole */
    assert_int_equal(spool_peek_lane(sp, SPOOL_LANE_FAST, r, 32, SIZE_MAX), 20);
    assert_true(r[0].id == fast[0]);
    assert_true(spool_peek_lane(sp, SPOOL_LANE_BULK, r, 32, SIZE_MAX) < 20);
    spool_close(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_windows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ack_ranges_and_sparse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nack_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_ids_never_reused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime_identity, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bytes_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_drop_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_jumps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_spool_acks_with_tags, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ids_above_2_32, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spill_inflight_not_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spill_tags_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_bounded_after_a_reserve,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spill_below_hi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_not_reused_after_rollback,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_counts_from_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lanes_drop_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_follows_the_disk, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_drop_oldest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_backpressure, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("spool", tests, NULL, NULL);
}
