/*
 * test_kafka_out.c — the Kafka side hands back, in each delivery report, the
 * exact 64-bit spool id it was given, on 32-bit targets (armhf: a pointer is
 * 32 bits) as on 64-bit ones. A real broker cannot run inside the package
 * build under qemu, so the end-to-end case (spool put → peek → produce →
 * report → ack, ids above 2^32) uses librdkafka's in-process mock cluster;
 * the others need no broker at all (reports of purged records, a full pool).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/kafka_out.h"
#include "spool/spool.h"

#define MAXREP 4096

struct reports {
    int n, ok, retry, dead, up, nstats;
    int64_t ids[MAXREP];
    struct kafka_out_echo echo[MAXREP];
    char stats[256]; /* the start of the last statistics document */
};

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, const struct kafka_out_echo *e)
{
    struct reports *r = ud;
    (void)reason;
    if (r->n < MAXREP) {
        r->ids[r->n] = id;
        r->echo[r->n] = *e;
    }
    r->n++;
    r->ok += o == KAFKA_OUT_OK;
    r->retry += o == KAFKA_OUT_RETRY;
    r->dead += o == KAFKA_OUT_DEAD;
}

static void on_stats(void *ud, const char *json, size_t len)
{
    struct reports *r = ud;
    r->nstats++;
    snprintf(r->stats, sizeof r->stats, "%.*s", (int)len, json);
}

static void on_uplink(void *ud, int up, const char *reason)
{
    struct reports *r = ud;
    (void)reason;
    r->up = up;
}

static struct kafka_out *open_out(struct reports *r, const char *brokers,
                                  int mock, int64_t queue_records);
static struct kafka_out *open_stats(struct reports *r, const char *brokers,
                                    int mock, int64_t queue_records,
                                    int stats_ms)
{
    static const struct kafka_out_prop mockprops[] = {
        {"test.mock.num.brokers", "1"},
        {"linger.ms", "0"},
    };
    struct kafka_out_opts o = {
        .brokers = brokers,
        .compression = "none",
        .props = mock ? mockprops : NULL,
        .nprops = mock ? 2 : 0,
        .queue_records = queue_records,
        .stats_ms = stats_ms,
    };
    struct kafka_out_cb cb = {on_delivered, on_uplink, on_stats};
    struct kafka_out *k = NULL;
    char err[512];
    int rc = kafka_out_new(&o, &cb, r, &k, err, sizeof(err));
    if (rc)
        fail_msg("kafka_out_new: %s", err);
    return k;
}

static struct kafka_out *open_out(struct reports *r, const char *brokers,
                                  int mock, int64_t queue_records)
{
    return open_stats(r, brokers, mock, queue_records, 0);
}

/* The echo a record carries: derived from its id, 64-bit receive time. */
static struct kafka_out_echo echo_of(int64_t id)
{
    return (struct kafka_out_echo){.bytes = (size_t)(id % 1000) + 1,
                                   .recv_ms = id / 2 + (1LL << 41),
                                   .route = (int32_t)(id % 7) - 1};
}

static int produce(struct kafka_out *k, int64_t id, const char *topic)
{
    char err[256], val[32];
    struct kafka_out_hdr h = {"m2k.id", "x", 1};
    snprintf(val, sizeof(val), "v%lld", (long long)id);
    struct kafka_out_msg m = {
        .id = id,
        .topic = topic,
        .value = val,
        .len = strlen(val),
        .hdrs = &h,
        .nhdrs = 1,
        .timestamp_ms = 1,
        .echo = echo_of(id),
    };
    return kafka_out_produce(k, &m, err, sizeof(err));
}

static const int64_t big_ids[] = {
    (1LL << 31) - 1, 1LL << 31,        (1LL << 32) - 1, 1LL << 32,
    (1LL << 32) + 1, (1LL << 32) + 77, (1LL << 40) + 3, INT64_MAX - 1,
};
#define NBIG (sizeof(big_ids) / sizeof(big_ids[0]))

/* Without a broker: the records are purged on free and each report still
 * names its own id. */
static void test_purged_reports_carry_64bit_ids(void **state)
{
    struct reports r = {0};
    (void)state;
    struct kafka_out *k = open_out(&r, "127.0.0.1:1", 0, 100);
    for (size_t i = 0; i < NBIG; i++)
        assert_int_equal(produce(k, big_ids[i], "t"), 0);
    assert_int_equal(kafka_out_inflight(k), (int)NBIG);
    kafka_out_free(k);
    assert_int_equal(r.n, (int)NBIG);
    assert_int_equal(r.retry, (int)NBIG);
    for (size_t i = 0; i < NBIG; i++) {
        int seen = 0;
        for (int j = 0; j < r.n; j++)
            seen += r.ids[j] == big_ids[i];
        if (seen != 1)
            fail_msg("id %lld reported %d times", (long long)big_ids[i], seen);
    }
    for (int j = 0; j < r.n; j++) { /* each report its own record's echo */
        struct kafka_out_echo e = echo_of(r.ids[j]);
        assert_int_equal(r.echo[j].bytes, e.bytes);
        assert_true(r.echo[j].recv_ms == e.recv_ms);
        assert_int_equal(r.echo[j].route, e.route);
    }
}

/* The id pool is as large as librdkafka's queue: one more record waits. */
static void test_pool_full_is_enobufs(void **state)
{
    struct reports r = {0};
    (void)state;
    struct kafka_out *k = open_out(&r, "127.0.0.1:1", 0, 10);
    int i, rc = 0;
    for (i = 0; i < 100000 && (rc = produce(k, (1LL << 33) + i, "t")) == 0; i++)
        ;
    assert_int_equal(rc, -ENOBUFS);
    assert_int_equal(i, 2000);
    kafka_out_free(k);
    assert_int_equal(r.n, 2000);
    assert_true(r.ids[0] >= (1LL << 33) && r.ids[1999] >= (1LL << 33));
}

/* Serves reports until n arrived or 20 s passed. */
static void wait_reports(struct kafka_out *k, struct reports *r, int n)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (r->n < n) {
        struct pollfd pf = {.fd = kafka_out_fd(k), .events = POLLIN};
        poll(&pf, 1, 100);
        kafka_out_poll(k);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 20)
            fail_msg("%d of %d delivery reports after 20 s", r->n, n);
    }
}

/* The whole path the bridge takes: put into the spool with ids past 2^32,
 * peek, produce, deliver, ack: the spool ends empty. On armhf with ids cut
 * to 32 bits the acks deleted nothing and the rows stayed in flight. */
static void test_spool_to_kafka_ids_above_2_32(void **state)
{
    char dir[256], path[300], sql[128];
    const char *tmp = getenv("TMPDIR");
    (void)state;
    snprintf(dir, sizeof(dir), "%s/kafka-out-test-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/spool.db", dir);
    struct spool_opts so = {.path = path, .sync = SPOOL_SYNC_NORMAL};
    struct spool *sp;
    char err[512];
    assert_int_equal(spool_open(&so, &sp, err, sizeof(err)), 0);
    spool_close(sp);
    sqlite3 *db;
    snprintf(sql, sizeof(sql), "UPDATE state SET last_id=%lld",
             (long long)((1LL << 32) - 3));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(spool_open(&so, &sp, err, sizeof(err)), 0);

    struct spool_rec recs[8];
    for (int i = 0; i < 8; i++)
        recs[i] = (struct spool_rec){
            .topic = "big-ids", .payload = "p", .payload_len = 1, .recv_ms = 1};
    assert_int_equal(spool_put(sp, recs, 8), 0);
    assert_true(recs[7].id == (1LL << 32) + 5);

    struct reports r = {0};
    struct kafka_out *k = open_out(&r, "127.0.0.1:1", 1, 100);
    struct spool_rec out[8];
    assert_int_equal(spool_peek(sp, out, 8, SIZE_MAX), 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(produce(k, out[i].id, out[i].topic), 0);
    wait_reports(k, &r, 8);
    assert_int_equal(r.ok, 8);
    for (int i = 0; i < 8; i++) { /* each id once (partitions may reorder) */
        int seen = 0;
        for (int j = 0; j < r.n; j++)
            seen += r.ids[j] == recs[i].id;
        assert_int_equal(seen, 1);
    }
    for (int j = 0; j < r.n; j++)
        assert_true(r.echo[j].recv_ms == echo_of(r.ids[j]).recv_ms);
    assert_int_equal(spool_ack(sp, r.ids, (size_t)r.n), 0);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.acked_total, 8);
    kafka_out_free(k);
    spool_close(sp);

    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* librdkafka's statistics reach the callback, in the poller's thread,
 * every stats_ms; none without stats_ms. */
static void test_statistics(void **state)
{
    struct reports r = {0}, none = {0};
    struct timespec t0, t;
    (void)state;
    struct kafka_out *k = open_stats(&r, "127.0.0.1:1", 1, 100, 100);
    struct kafka_out *q = open_out(&none, "127.0.0.1:1", 1, 100);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct pollfd pf = {.fd = kafka_out_fd(k), .events = POLLIN};
        poll(&pf, 1, 50);
        kafka_out_poll(k);
        kafka_out_poll(q);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (r.nstats < 3 && t.tv_sec - t0.tv_sec < 10);
    assert_true(r.nstats >= 3);
    assert_int_equal(none.nstats, 0);
    assert_int_equal(strncmp(r.stats, "{ \"name\": \"mqtt2kafka#producer", 30),
                     0);
    assert_non_null(kafka_out_version());
    assert_true(kafka_out_version()[0] >= '1');
    kafka_out_free(k);
    kafka_out_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purged_reports_carry_64bit_ids),
        cmocka_unit_test(test_pool_full_is_enobufs),
        cmocka_unit_test(test_spool_to_kafka_ids_above_2_32),
        cmocka_unit_test(test_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
