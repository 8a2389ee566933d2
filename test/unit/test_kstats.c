/*
 * test_kstats.c — librdkafka's statistics as the metrics read them: a
 * document a real Kafka 3.9 broker's producer wrote
 * (fixtures/rdkafka_stats.json, librdkafka 2.0), running RTT totals over
 * windows, which brokers are kept, and refusals that leave the state as
 * it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/kstats.h"

#define FIXTURE "test/unit/fixtures/rdkafka_stats.json"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(1 << 20);
    assert_non_null(f);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

static void test_real_document(void **state)
{
    struct kstats k = {0};
    char err[256];
    size_t len;
    char *doc = slurp(FIXTURE, &len);
    (void)state;
    assert_int_equal(kstats_update(&k, doc, len, err, sizeof err), 0);
    assert_int_equal(k.updates, 1);
    assert_int_equal(k.msg_cnt, 196);
    assert_int_equal(k.nbrokers, 1);
    const struct kstats_broker *b = &k.b[0];
    assert_string_equal(b->name, "127.0.0.1:39192/1");
    assert_int_equal(b->nodeid, 1);
    assert_string_equal(b->state, "UP");
    assert_true(b->up);
    assert_true(fabs(b->rtt_p99 - 0.013183) < 1e-9);
    assert_true(fabs(b->rtt_avg - 0.013120) < 1e-9);
    assert_int_equal(b->rtt_count, 1);
    assert_true(fabs(b->rtt_sum - 0.013120) < 1e-9);
    assert_int_equal(b->connects, 1);
    assert_int_equal(b->disconnects, 0);
    /* the next window adds to the totals; quantiles are the window's */
    assert_int_equal(kstats_update(&k, doc, len, err, sizeof err), 0);
    assert_int_equal(k.updates, 2);
    assert_int_equal(k.b[0].rtt_count, 2);
    assert_true(fabs(k.b[0].rtt_sum - 0.026240) < 1e-9);
    assert_true(fabs(k.b[0].rtt_p99 - 0.013183) < 1e-9);
    free(doc);
}

static const char brokers_doc[] =
    "{\"msg_cnt\": 3, \"msg_size\": 30, \"brokers\": {"
    " \"k1:9092/bootstrap\": {\"nodeid\": -1, \"source\": \"configured\","
    "   \"state\": \"CONNECT\", \"connects\": 0, \"rtt\": {\"cnt\": 0}},"
    " \"k2:9092/2\": {\"nodeid\": 2, \"source\": \"learned\", \"state\":"
    "   \"UP\", \"connects\": 4, \"disconnects\": 3, \"waitresp_cnt\": 7,"
    "   \"rtt\": {\"cnt\": 4, \"sum\": 4000, \"p50\": 900, \"p95\": 1500,"
    "   \"p99\": 1600, \"avg\": 1000}},"
    " \":0/internal\": {\"nodeid\": -1, \"source\": \"internal\"},"
    " \"GroupCoordinator\": {\"nodeid\": 2, \"source\": \"logical\"}}}";

static void test_which_brokers(void **state)
{
    struct kstats k = {0};
    char err[256];
    (void)state;
    assert_int_equal(
        kstats_update(&k, brokers_doc, strlen(brokers_doc), err, sizeof err),
        0);
    assert_int_equal(k.nbrokers, 2); /* internal and logical left out */
    assert_int_equal(k.msg_size, 30);
    const struct kstats_broker *boot = NULL, *two = NULL;
    for (size_t i = 0; i < k.nbrokers; i++) {
        if (!strcmp(k.b[i].name, "k1:9092/bootstrap"))
            boot = &k.b[i];
        if (!strcmp(k.b[i].name, "k2:9092/2"))
            two = &k.b[i];
    }
    assert_non_null(boot);
    assert_non_null(two);
    assert_false(boot->up);
    assert_int_equal(boot->nodeid, -1);
    assert_true(isnan(boot->rtt_p99)); /* nothing timed: no quantile */
    assert_int_equal(boot->rtt_count, 0);
    assert_true(two->up);
    assert_int_equal(two->waitresp, 7);
    assert_int_equal(two->disconnects, 3);
    assert_true(fabs(two->rtt_p50 - 0.0009) < 1e-12);
    assert_true(fabs(two->rtt_sum - 0.004) < 1e-12);

    /* a broker gone from the document is gone, totals and all */
    static const char only_boot[] =
        "{\"brokers\": {\"k1:9092/bootstrap\": {\"nodeid\": -1,"
        " \"state\": \"DOWN\"}}}";
    assert_int_equal(
        kstats_update(&k, only_boot, strlen(only_boot), err, sizeof err), 0);
    assert_int_equal(k.nbrokers, 1);
    assert_string_equal(k.b[0].state, "DOWN");
    assert_int_equal(
        kstats_update(&k, brokers_doc, strlen(brokers_doc), err, sizeof err),
        0);
    for (size_t i = 0; i < k.nbrokers; i++)
        if (!strcmp(k.b[i].name, "k2:9092/2"))
            assert_int_equal(k.b[i].rtt_count, 4);
}

static void test_cap_on_brokers(void **state)
{
    struct kstats k = {0};
    char err[256], *doc = malloc(1 << 16);
    size_t n = (size_t)sprintf(doc, "{\"brokers\": {");
    (void)state;
    for (int i = 0; i < 40; i++)
        n += (size_t)sprintf(doc + n,
                             "%s\"b%d:9092/%d\": {\"nodeid\": %d, \"state\":"
                             " \"UP\"}",
                             i ? "," : "", i, i, i);
    n += (size_t)sprintf(doc + n, "}}");
    assert_int_equal(kstats_update(&k, doc, n, err, sizeof err), 0);
    assert_int_equal(k.nbrokers, KSTATS_MAX_BROKERS);
    assert_int_equal(k.dropped, 40 - KSTATS_MAX_BROKERS);
    free(doc);
}

static void test_refusals_change_nothing(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"brokers\": 3}",
        "{\"brokers\": {",
        "not json",
        "{\"brokers\": {}} trailing",
        "\"brokers\"",
    };
    struct kstats k = {0}, before;
    char err[256];
    (void)state;
    assert_int_equal(
        kstats_update(&k, brokers_doc, strlen(brokers_doc), err, sizeof err),
        0);
    before = k;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            kstats_update(&k, bad[i], strlen(bad[i]), err, sizeof err),
            -EINVAL);
        assert_true(strlen(err) > 0);
        assert_memory_equal(&k, &before, sizeof k);
    }
    /* too large to parse at all */
    assert_int_equal(
        kstats_update(&k, brokers_doc, KSTATS_MAX_JSON + 1, err, sizeof err),
        -EINVAL);
    assert_non_null(strstr(err, "bytes"));
    /* wrong types read as zero, not as a refusal */
    static const char odd[] =
        "{\"msg_cnt\": \"x\", \"brokers\": {\"b\": {\"nodeid\": \"2\","
        " \"state\": 5, \"rtt\": [1, 2]}, \"c\": 7}}";
    assert_int_equal(kstats_update(&k, odd, strlen(odd), err, sizeof err), 0);
    assert_int_equal(k.nbrokers, 1);
    assert_int_equal(k.msg_cnt, 0);
    assert_string_equal(k.b[0].state, "");
    assert_false(k.b[0].up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_document),
        cmocka_unit_test(test_which_brokers),
        cmocka_unit_test(test_cap_on_brokers),
        cmocka_unit_test(test_refusals_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
