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
    int n, ok, retry, dead, up;
    int64_t ids[MAXREP];
};

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, size_t bytes)
{
    struct reports *r = ud;
    (void)reason, (void)bytes;
    if (r->n < MAXREP)
        r->ids[r->n] = id;
    r->n++;
    r->ok += o == KAFKA_OUT_OK;
    r->retry += o == KAFKA_OUT_RETRY;
    r->dead += o == KAFKA_OUT_DEAD;
}

static void on_uplink(void *ud, int up, const char *reason)
{
    struct reports *r = ud;
    (void)reason;
    r->up = up;
}

static struct kafka_out *open_out(struct reports *r, const char *brokers,
                                  int mock, int64_t queue_records)
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
    };
    struct kafka_out_cb cb = {on_delivered, on_uplink};
    struct kafka_out *k = NULL;
    char err[512];
    int rc = kafka_out_new(&o, &cb, r, &k, err, sizeof(err));
    if (rc)
        fail_msg("kafka_out_new: %s", err);
    return k;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purged_reports_carry_64bit_ids),
        cmocka_unit_test(test_pool_full_is_enobufs),
        cmocka_unit_test(test_spool_to_kafka_ids_above_2_32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
