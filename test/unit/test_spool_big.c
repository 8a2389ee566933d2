/*
 * test_spool_big.c — large records in the spool (spool_big.c): what the
 * fat lane relies on and what an operator sees.
 *
 * Written in parts over several transactions, invisible until committed;
 * read back part by part byte for byte; a half-written record is gone
 * after a reopen (the crash case) and its id is never handed out again;
 * acks, dead letters (listed with their size, bounded, replayed under the
 * same id, purged with their parts), drop_oldest (after bulk, before
 * normal, never the one in flight), expiry, the tags that recognise a
 * broker's redelivery, a record larger than the spool, and backpressure.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spool/spool.h"
#include "spool/spool_int.h" /* the handle's db: to make a commit fail */

struct fx {
    char dir[256], path[300];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/spool-big-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/spool.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
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

static struct spool *open_opts(const char *path, int64_t max_bytes,
                               enum spool_on_full on_full, int64_t max_age,
                               int64_t dead_max, const struct spool_clock *c)
{
    struct spool_opts o = {.path = path,
                           .max_bytes = max_bytes,
                           .max_age_ms = max_age,
                           .on_full = on_full,
                           .sync = SPOOL_SYNC_NORMAL,
                           .dead_max_records = dead_max,
                           .clock = c};
    struct spool *sp = NULL;
    char err[512];
    int rc = spool_open(&o, &sp, err, sizeof(err));
    if (rc)
        fprintf(stderr, "spool_open: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    return sp;
}

static struct spool *open_sp(const char *path)
{
    return open_opts(path, 0, SPOOL_DROP_OLDEST, 0, 0, NULL);
}

/* A payload whose every byte depends on its place and the seed. */
static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
    return p;
}

/* Begins a large record of n bytes in parts of pb, writes it in slices of
 * at most `slice` bytes (whole parts), and commits it unless stop_after
 * slices were written first (stop_after 0: all). Returns its id. */
static int64_t put_big(struct spool *sp, const unsigned char *data, size_t n,
                       size_t pb, size_t slice, int stop_after, int64_t tag)
{
    struct spool_rec r = {.topic = "cam.snap",
                          .key = "cam-7",
                          .key_len = 5,
                          .headers = "\x03hdr\x00\x01v",
                          .headers_len = 7,
                          .payload_len = n,
                          .recv_ms = 1000,
                          .route = 2,
                          .tag = tag};
    int64_t id = 0;
    assert_int_equal(spool_big_begin(sp, &r, pb, &id), 0);
    if (slice > spool_max_record(sp)) /* what one transaction holds */
        slice = spool_max_record(sp);
    size_t per = slice / pb * pb;
    int slices = 0;
    for (size_t off = 0; off < n; off += per) {
        size_t k = n - off < per ? n - off : per;
        assert_int_equal(
            spool_big_write(sp, id, (uint32_t)(off / pb), data + off, k), 0);
        if (++slices == stop_after)
            return id;
    }
    assert_int_equal(spool_big_commit(sp, id, "digest-of-it", 12), 0);
    return id;
}

/* Reads every part of the peeked record and compares with data. */
static void read_all(struct spool *sp, const struct spool_big *b,
                     const unsigned char *data)
{
    unsigned char *buf = malloc(b->part_bytes);
    int64_t at = 0;
    for (uint32_t i = 0; i < b->parts; i++) {
        size_t len = 0;
        assert_int_equal(spool_big_read(sp, b->id, i, buf, b->part_bytes, &len),
                         0);
        assert_memory_equal(buf, data + at, len);
        at += (int64_t)len;
    }
    assert_int_equal(at, b->len);
    free(buf);
}

static int64_t count(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_written_in_parts_visible_when_committed(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path);
    size_t n = 3 * 1000 * 1000 + 17, pb = 256 * 1024;
    unsigned char *data = pattern(n, 1);
    struct spool_stats st;
    struct spool_big b;
    int64_t id = put_big(sp, data, n, pb, 1 << 20, 2, 0);
    /* two slices written: nothing to see yet */
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(spool_big_backlog(sp), 0);
    assert_int_equal(spool_big_peek(sp, &b), 0);
    assert_int_equal(spool_big_commit(sp, id, "d", 1), -EINVAL); /* parts */
    for (size_t off = 8 * pb; off < n; off += 4 * pb) {
        size_t k = n - off < 4 * pb ? n - off : 4 * pb;
        assert_int_equal(
            spool_big_write(sp, id, (uint32_t)(off / pb), data + off, k), 0);
    }
    assert_int_equal(spool_big_commit(sp, id, "0123456789abcdef", 16), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.bytes, (int64_t)(n + 5 + 7));
    assert_int_equal(st.put_total, 1);
    assert_int_equal(spool_big_backlog(sp), 1);
    /* a restart keeps it, counted */
    spool_close(sp);
    sp = open_sp(f->path);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 1);
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, id);
    assert_string_equal(b.topic, "cam.snap");
    assert_int_equal(b.key_len, 5);
    assert_memory_equal(b.key, "cam-7", 5);
    assert_int_equal(b.headers_len, 7);
    assert_int_equal(b.len, (int64_t)n);
    assert_int_equal(b.part_bytes, pb);
    assert_int_equal(b.parts, (n + pb - 1) / pb);
    assert_int_equal(b.digest_len, 16);
    assert_memory_equal(b.digest, "0123456789abcdef", 16);
    assert_int_equal(b.recv_ms, 1000);
    assert_int_equal(b.route, 2);
    read_all(sp, &b, data);
    size_t len;
    unsigned char small[16];
    assert_int_equal(spool_big_read(sp, id, 0, small, sizeof small, &len),
                     -EINVAL);
    assert_int_equal(spool_big_read(sp, id, b.parts, small, sizeof small, &len),
                     -ENOENT);
    assert_int_equal(spool_big_ack(sp, id), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.acked_total, 1);
    assert_int_equal(spool_big_peek(sp, &b), 0);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"), 0);
    free(data);
}

static void test_bad_writes_refused(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path);
    size_t n = 1000 * 1000, pb = 64 * 1024;
    unsigned char *data = pattern(n, 2);
    struct spool_rec r = {.topic = "t", .payload_len = n};
    int64_t id;
    assert_int_equal(spool_big_begin(sp, &r, pb, &id), 0);
    /* a short part that is not the last, a part past the end, a slice
     * larger than one transaction holds */
    assert_int_equal(spool_big_write(sp, id, 0, data, pb + 10), -EINVAL);
    assert_int_equal(spool_big_write(sp, id, 16, data, pb), -EINVAL);
    size_t too = (spool_max_record(sp) / pb + 2) * pb;
    unsigned char *big = pattern(too, 3);
    assert_int_equal(spool_big_write(sp, id, 0, big, too), -EINVAL);
    free(big);
    /* not a record being written */
    assert_int_equal(spool_big_write(sp, id + 5, 0, data, pb), -ENOENT);
    assert_int_equal(spool_big_abort(sp, id), 0);
    assert_int_equal(spool_big_write(sp, id, 0, data, pb), -ENOENT);
    spool_close(sp);
    free(data);
}

/* spool_big_slice(): what one write takes, for any part size and cap:
 * that much is taken, one part more is refused. (A slice the write
 * refused once made the broker redeliver a message forever.) */
static void test_slice_is_what_one_write_takes(void **state)
{
    struct fx *f = *state;
    static const int64_t caps[] = {2 << 20, 32 << 20, 256 << 20};
    static const size_t parts[] = {16384, 65536, 131072, 262144, 100000};
    for (size_t c = 0; c < 3; c++) {
        struct spool *sp =
            open_opts(f->path, caps[c], SPOOL_DROP_OLDEST, 0, 0, NULL);
        for (size_t p = 0; p < 5; p++) {
            size_t pb = parts[p], per = spool_big_slice(sp, pb);
            if (pb > spool_max_record(sp))
                continue;
            assert_true(per >= pb && per % pb == 0);
            size_t n = per + pb;
            unsigned char *data = pattern(n, (unsigned)p);
            struct spool_rec r = {.topic = "t", .payload_len = n};
            int64_t id;
            assert_int_equal(spool_big_begin(sp, &r, pb, &id), 0);
            assert_int_equal(spool_big_write(sp, id, 0, data, n), -EINVAL);
            assert_int_equal(spool_big_write(sp, id, 0, data, per), 0);
            assert_int_equal(spool_big_abort(sp, id), 0);
            free(data);
        }
        spool_close(sp);
        unlink(f->path);
    }
}

/* A crash while a record is written: the next open removes it, nothing is
 * visible or counted, and its id is never handed out again. */
static void test_half_written_gone_after_a_crash(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path);
    size_t n = 2 * 1000 * 1000, pb = 128 * 1024;
    unsigned char *data = pattern(n, 4);
    int64_t id = put_big(sp, data, n, pb, 512 * 1024, 1, 0);
    spool_close(sp); /* as a crash leaves it: written, not committed */
    assert_true(count(f->path, "SELECT count(*) FROM big_part") > 0);
    sp = open_sp(f->path);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.put_total, 0);
    struct spool_rec r = {.topic = "t", .payload = "p", .payload_len = 1};
    assert_int_equal(spool_put(sp, &r, 1), 0);
    assert_true(r.id > id);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big"), 0);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"), 0);
    /* and with the process killed for real */
    pid_t pid = fork();
    if (pid == 0) {
        struct spool *c = open_sp(f->path);
        put_big(c, data, n, pb, 512 * 1024, 2, 0);
        _exit(0); /* no close, no commit */
    }
    int status;
    waitpid(pid, &status, 0);
    sp = open_sp(f->path);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 1);
    assert_int_equal(spool_big_backlog(sp), 0);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"), 0);
    free(data);
}

static void test_dead_listed_bounded_replayed_purged(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_opts(f->path, 0, SPOOL_DROP_OLDEST, 0, 2, NULL);
    size_t n = 700 * 1000, pb = 100 * 1000;
    unsigned char *data = pattern(n, 5);
    int64_t a = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    struct spool_big b;
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(spool_big_dead(sp, a, "MSG_SIZE_TOO_LARGE"), 0);
    assert_int_equal(spool_big_dead(sp, a, "again"), -ENOENT);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_bytes, (int64_t)(n + 12));
    struct spool_dead_rec d[4];
    assert_int_equal(spool_dead_list(sp, d, 4), 1);
    assert_int_equal(d[0].id, a);
    assert_int_equal(d[0].payload_len, n);
    assert_string_equal(d[0].reason, "MSG_SIZE_TOO_LARGE");
    assert_string_equal(d[0].topic, "cam.snap");
    /* replayed under the same id, whole */
    assert_int_equal(spool_dead_replay(sp), 1);
    assert_int_equal(spool_big_backlog(sp), 1);
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, a);
    read_all(sp, &b, data);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.dead, 0);
    /* dead_max_records 2: the third dead letter drops the oldest, parts and
     * all */
    int64_t bb = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    int64_t c = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    assert_int_equal(spool_big_dead(sp, a, "x"), 0);
    assert_int_equal(spool_big_dead(sp, bb, "x"), 0);
    assert_int_equal(spool_big_dead(sp, c, "x"), 0);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 2);
    assert_int_equal(st.dropped[SPOOL_DROP_DEAD_FULL], 1);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big"), 2);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"), 14);
    sp = open_opts(f->path, 0, SPOOL_DROP_OLDEST, 0, 2, NULL);
    assert_int_equal(spool_dead_purge(sp), 2);
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.records, 0);
    /* the whole life: put = acked + dropped + purged + records + dead */
    assert_int_equal(st.put_total, st.acked_total +
                                       st.dropped[SPOOL_DROP_DEAD_FULL] +
                                       st.dead_purged + st.records + st.dead);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big"), 0);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"), 0);
    free(data);
}

/* A full spool under drop_oldest: bulk's oldest go first, then a large
 * record, then normal's; the large record in flight stays. */
static void test_drop_oldest_order(void **state)
{
    struct fx *f = *state;
    struct spool *sp =
        open_opts(f->path, 8 << 20, SPOOL_DROP_OLDEST, 0, 0, NULL);
    size_t n = 1500 * 1000, pb = 100 * 1000;
    unsigned char *data = pattern(n, 6);
    int64_t first = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    int64_t second = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    struct spool_big b;
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, first);
    spool_big_hold(sp, first); /* chunks of it in flight */
    char pay[2000];
    memset(pay, 'n', sizeof pay);
    struct spool_rec r[50];
    for (int i = 0; i < 50; i++)
        r[i] = (struct spool_rec){.topic = "t",
                                  .payload = pay,
                                  .payload_len = sizeof pay,
                                  .lane = i < 10 ? SPOOL_LANE_BULK
                                                 : SPOOL_LANE_NORMAL};
    struct spool_stats st;
    int64_t dropped_bulk = 0;
    for (int round = 0; round < 200; round++) {
        assert_int_equal(spool_put(sp, r, 50), 0);
        assert_int_equal(spool_stats(sp, &st), 0);
        if (st.dropped[SPOOL_DROP_FULL] && !dropped_bulk)
            dropped_bulk = st.dropped[SPOOL_DROP_FULL];
        if (spool_big_backlog(sp) < 2)
            break;
    }
    /* the second large record went, the first (in flight) stays */
    assert_int_equal(spool_big_backlog(sp), 1);
    assert_true(dropped_bulk > 0);
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, first);
    assert_int_equal(spool_big_read(sp, second, 0, pay, sizeof pay, &n),
                     -ENOENT);
    /* the put total holds: nothing counted twice or lost */
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.put_total,
                     st.acked_total + st.dropped[SPOOL_DROP_FULL] + st.records);
    spool_close(sp);
    free(data);
}

static void test_backpressure_and_too_large(void **state)
{
    struct fx *f = *state;
    struct spool *sp =
        open_opts(f->path, 8 << 20, SPOOL_BACKPRESSURE, 0, 0, NULL);
    size_t n = 2 * 1000 * 1000, pb = 100 * 1000, per = 4 * pb;
    struct spool_rec r = {.topic = "t",
                          .payload_len = (size_t)spool_big_max(sp) + 1};
    int64_t id;
    assert_int_equal(spool_big_begin(sp, &r, pb, &id), -EFBIG);
    unsigned char *data = pattern(n, 7);
    /* until one does not fit: refused, nothing stored is lost */
    int rc = 0, committed = 0;
    r.payload_len = n;
    while (rc == 0 && committed < 10) {
        assert_int_equal(spool_big_begin(sp, &r, pb, &id), 0);
        for (size_t off = 0; rc == 0 && off < n; off += per) {
            size_t k = n - off < per ? n - off : per;
            rc = spool_big_write(sp, id, (uint32_t)(off / pb), data + off, k);
        }
        if (rc == 0 && (rc = spool_big_commit(sp, id, NULL, 0)) == 0)
            committed++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(committed >= 1);
    assert_int_equal(spool_big_abort(sp, id), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, committed);
    assert_int_equal(st.dropped[SPOOL_DROP_FULL], 0);
    spool_close(sp);
    assert_int_equal(count(f->path, "SELECT count(*) FROM big_part"),
                     committed * 20);
    free(data);
}

static void test_expired_on_the_spool_clock(void **state)
{
    struct fx *f = *state;
    fclk = (struct fake_clock){.wall = 1700000000000, .mono = 5000};
    struct spool *sp =
        open_opts(f->path, 0, SPOOL_DROP_OLDEST, 60000, 0, &fake);
    size_t n = 300 * 1000, pb = 100 * 1000;
    unsigned char *data = pattern(n, 8);
    struct spool_rec r = {.topic = "t", .payload_len = n, .recv_ms = fclk.wall};
    int64_t id;
    assert_int_equal(spool_big_begin(sp, &r, pb, &id), 0);
    assert_int_equal(spool_big_write(sp, id, 0, data, n), 0);
    assert_int_equal(spool_big_commit(sp, id, NULL, 0), 0);
    fclk.mono += 30000;
    assert_int_equal(spool_expire(sp), 0);
    assert_int_equal(spool_big_backlog(sp), 1);
    fclk.mono += 31000;
    assert_int_equal(spool_expire(sp), 1);
    assert_int_equal(spool_big_backlog(sp), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 1);
    assert_int_equal(st.records, 0);
    spool_close(sp);
    free(data);
}

/* The fat lane has taken the oldest large record but nothing of it is in
 * flight (Kafka is down): under drop_oldest a second large message that
 * does not fit beside it is stored, the first one dropped and counted. */
static void test_taken_large_record_dropped_for_a_new_one(void **state)
{
    struct fx *f = *state;
    struct spool *sp =
        open_opts(f->path, 8 << 20, SPOOL_DROP_OLDEST, 0, 0, NULL);
    size_t pb = 64 * 1024, n = (size_t)spool_big_max(sp) - 1024;
    size_t slice = spool_big_slice(sp, pb);
    unsigned char *data = pattern(n, 10);
    int64_t first = put_big(sp, data, n, pb, slice, 0, 0);
    struct spool_big b;
    assert_int_equal(spool_big_peek(sp, &b), 1); /* the fat lane took it */
    assert_int_equal(b.id, first);
    char pay[2000];
    memset(pay, 's', sizeof pay);
    struct spool_rec r[20];
    for (int i = 0; i < 20; i++)
        r[i] = (struct spool_rec){
            .topic = "t", .payload = pay, .payload_len = sizeof pay};
    assert_int_equal(spool_put(sp, r, 20), 0);
    int64_t second = put_big(sp, data, n, pb, slice, 0, 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_true(st.dropped[SPOOL_DROP_FULL] >= 1);
    assert_int_equal(spool_big_backlog(sp), 1);
    size_t len;
    assert_int_equal(spool_big_read(sp, first, 0, pay, sizeof pay, &len),
                     -ENOENT);
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, second);
    assert_int_equal(st.put_total,
                     st.acked_total + st.dropped[SPOOL_DROP_FULL] + st.records);
    spool_close(sp);
    free(data);
}

/* A large record taken by the fat lane with nothing of it in flight
 * still expires with max_age, counted as expired. */
static void test_taken_large_record_expires(void **state)
{
    struct fx *f = *state;
    fclk = (struct fake_clock){.wall = 1700000000000, .mono = 5000};
    struct spool *sp =
        open_opts(f->path, 0, SPOOL_DROP_OLDEST, 60000, 0, &fake);
    size_t n = 300 * 1000, pb = 100 * 1000;
    unsigned char *data = pattern(n, 11);
    int64_t id = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    struct spool_big b;
    assert_int_equal(spool_big_peek(sp, &b), 1);
    assert_int_equal(b.id, id);
    fclk.mono += 61000;
    assert_int_equal(spool_expire(sp), 1);
    assert_int_equal(spool_big_backlog(sp), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 1);
    assert_int_equal(st.records, 0);
    spool_close(sp);
    free(data);
}

/* A record Kafka has (held) whose ack fails to commit stays held: expiry
 * leaves it alone and the next ack deletes it, counted once. */
static void test_held_record_stays_held_after_a_failed_ack(void **state)
{
    struct fx *f = *state;
    fclk = (struct fake_clock){.wall = 1700000000000, .mono = 5000};
    struct spool *sp =
        open_opts(f->path, 0, SPOOL_DROP_OLDEST, 60000, 0, &fake);
    size_t n = 300 * 1000, pb = 100 * 1000;
    unsigned char *data = pattern(n, 12);
    int64_t id = put_big(sp, data, n, pb, 1 << 20, 0, 0);
    struct spool_big b;
    assert_int_equal(spool_big_peek(sp, &b), 1);
    spool_big_hold(sp, id);
    assert_int_equal(
        sqlite3_exec(sp->db,
                     "CREATE TEMP TRIGGER boom BEFORE UPDATE ON main.state "
                     "BEGIN SELECT RAISE(ABORT,'injected'); END;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_true(spool_big_ack(sp, id) < 0);
    assert_int_equal(
        sqlite3_exec(sp->db, "DROP TRIGGER temp.boom", NULL, NULL, NULL),
        SQLITE_OK);
    fclk.mono += 61000;
    assert_int_equal(spool_expire(sp), 0); /* still held */
    assert_int_equal(spool_big_ack(sp, id), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.acked_total, 1);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 0);
    assert_int_equal(st.records, 0);
    spool_close(sp);
    free(data);
}

/* The tag of a committed large record (and of a delivered one) is seen by
 * spool_recent: a broker's redelivery after a crash is recognised. */
static void test_tags_recognised(void **state)
{
    struct fx *f = *state;
    struct spool *sp = open_sp(f->path);
    size_t n = 200 * 1000, pb = 64 * 1024;
    unsigned char *data = pattern(n, 9);
    int64_t half = put_big(sp, data, n, pb, 1 << 20, 1, 41);
    (void)half;
    int64_t id = put_big(sp, data, n, pb, 1 << 20, 0, 42);
    int64_t ids[4], tags[4];
    assert_int_equal(spool_recent(sp, ids, tags, 4), 1);
    assert_int_equal(ids[0], id);
    assert_int_equal(tags[0], 42);
    assert_int_equal(spool_big_ack(sp, id), 0);
    assert_int_equal(spool_recent(sp, ids, tags, 4), 1);
    assert_int_equal(tags[0], 42);
    spool_close(sp);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_written_in_parts_visible_when_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_writes_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slice_is_what_one_write_takes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_written_gone_after_a_crash,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_dead_listed_bounded_replayed_purged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_oldest_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_and_too_large, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_on_the_spool_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tags_recognised, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_taken_large_record_dropped_for_a_new_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taken_large_record_expires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_held_record_stays_held_after_a_failed_ack, setup, teardown),
    };
    return cmocka_run_group_tests_name("spool_big", tests, NULL, NULL);
}
