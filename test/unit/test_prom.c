/*
 * test_prom.c — the Prometheus text writer: exact text for a counter whose
 * label values need escapes, gauges, a histogram; number spellings; a
 * full buffer and bad names are errors, never a cut text; and promtool
 * (Debian's prometheus package) accepts a whole exposition.
 *
 * promtool missing: the check is skipped, unless M2K_REQUIRE_PROMTOOL=1
 * (set by `make unit`), which makes it a failure.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge/prom.h"

static char buf[16384];

static const char *text(struct prom *p)
{
    size_t len;
    int rc = prom_finish(p, &len);
    if (rc)
        fail_msg("prom_finish: %d", rc);
    assert_int_equal(len, strlen(buf));
    return buf;
}

static void test_counter_escapes(void **state)
{
    struct prom p;
    const struct prom_label l[] = {{"route", "a\\b\"c\nd"}, {"side", "mqtt"}};
    (void)state;

    prom_init(&p, buf, sizeof buf);
    prom_family(&p, "m2k_msgs_total", PROM_COUNTER,
                "Messages, with a \\ and a\nnewline \"quoted\".");
    prom_u64(&p, "m2k_msgs_total", l, 2, 18446744073709551615u);
    prom_u64(&p, "m2k_msgs_total", l + 1, 1, 0);
    assert_string_equal(
        text(&p), "# HELP m2k_msgs_total Messages, with a \\\\ and a\\nnewline "
                  "\"quoted\".\n"
                  "# TYPE m2k_msgs_total counter\n"
                  "m2k_msgs_total{route=\"a\\\\b\\\"c\\nd\",side=\"mqtt\"} "
                  "18446744073709551615\n"
                  "m2k_msgs_total{side=\"mqtt\"} 0\n");
}

static void test_gauges(void **state)
{
    struct prom p;
    const struct prom_label v = {"version", "1.2.3"};
    const struct prom_label empty = {"x", NULL};
    (void)state;

    prom_init(&p, buf, sizeof buf);
    prom_family(&p, "m2k_spool_records", PROM_GAUGE, "Records.");
    prom_i64(&p, "m2k_spool_records", NULL, 0, -3);
    prom_family(&p, "m2k_age_seconds", PROM_GAUGE, NULL);
    prom_f64(&p, "m2k_age_seconds", NULL, 0, 12.5);
    prom_f64(&p, "m2k_age_seconds", &empty, 1, 3);
    prom_family(&p, "m2k_build_info", PROM_GAUGE, "Build.");
    prom_u64(&p, "m2k_build_info", &v, 1, 1);
    assert_string_equal(text(&p), "# HELP m2k_spool_records Records.\n"
                                  "# TYPE m2k_spool_records gauge\n"
                                  "m2k_spool_records -3\n"
                                  "# HELP m2k_age_seconds \n"
                                  "# TYPE m2k_age_seconds gauge\n"
                                  "m2k_age_seconds 12.5\n"
                                  "m2k_age_seconds{x=\"\"} 3\n"
                                  "# HELP m2k_build_info Build.\n"
                                  "# TYPE m2k_build_info gauge\n"
                                  "m2k_build_info{version=\"1.2.3\"} 1\n");
}

static void expect_num(double v, const char *want)
{
    char s[32];
    size_t n = prom_fmt_f64(s, sizeof s, v);
    assert_string_equal(s, want);
    assert_int_equal(n, strlen(want));
}

static void test_numbers(void **state)
{
    (void)state;
    expect_num(0, "0");
    expect_num(-0.0, "0");
    expect_num(42, "42");
    expect_num(-7, "-7");
    expect_num(0.1, "0.1");
    expect_num(0.005, "0.005");
    expect_num(1e-05, "1e-05");
    expect_num(2.5, "2.5");
    expect_num(1.0 / 3, "0.3333333333333333");
    expect_num(9007199254740992.0, "9007199254740992"); /* 2^53 */
    expect_num(9007199254740994.0, "9007199254740994"); /* past it */
    expect_num(1e300, "1e+300");
    expect_num(123456789012345678.0, "1.2345678901234568e+17");
    expect_num(1.7976931348623157e308, "1.7976931348623157e+308");
    expect_num(NAN, "NaN");
    expect_num(INFINITY, "+Inf");
    expect_num(-INFINITY, "-Inf");
    /* Every spelling reads back as the same double. */
    for (double v = 1e-9; v < 1e12; v *= 3.7) {
        char s[32];
        prom_fmt_f64(s, sizeof s, v);
        assert_true(strtod(s, NULL) == v);
    }
}

static void test_histogram(void **state)
{
    static const double le[] = {0.1, 1, 10};
    const struct prom_label l = {"route", "r0"};
    struct prom_hist h;
    struct prom p;
    (void)state;

    assert_int_equal(prom_hist_init(&h, le, 3), 0);
    prom_hist_observe(&h, 0.05);
    prom_hist_observe(&h, 0.1); /* le is inclusive */
    prom_hist_observe(&h, 0.5);
    prom_hist_observe(&h, 20);
    prom_hist_observe(&h, NAN); /* ignored */
    prom_init(&p, buf, sizeof buf);
    prom_family(&p, "m2k_latency_seconds", PROM_HISTOGRAM, "Latency.");
    prom_hist_write(&p, "m2k_latency_seconds", &l, 1, &h);
    prom_hist_write(&p, "m2k_latency_seconds", NULL, 0, &h);
    assert_string_equal(
        text(&p), "# HELP m2k_latency_seconds Latency.\n"
                  "# TYPE m2k_latency_seconds histogram\n"
                  "m2k_latency_seconds_bucket{route=\"r0\",le=\"0.1\"} 2\n"
                  "m2k_latency_seconds_bucket{route=\"r0\",le=\"1\"} 3\n"
                  "m2k_latency_seconds_bucket{route=\"r0\",le=\"10\"} 3\n"
                  "m2k_latency_seconds_bucket{route=\"r0\",le=\"+Inf\"} 4\n"
                  "m2k_latency_seconds_sum{route=\"r0\"} 20.65\n"
                  "m2k_latency_seconds_count{route=\"r0\"} 4\n"
                  "m2k_latency_seconds_bucket{le=\"0.1\"} 2\n"
                  "m2k_latency_seconds_bucket{le=\"1\"} 3\n"
                  "m2k_latency_seconds_bucket{le=\"10\"} 3\n"
                  "m2k_latency_seconds_bucket{le=\"+Inf\"} 4\n"
                  "m2k_latency_seconds_sum 20.65\n"
                  "m2k_latency_seconds_count 4\n");
}

static void test_hist_init_checks(void **state)
{
    static const double bad_order[] = {1, 1};
    static const double inf[] = {1, INFINITY};
    static const double lat[] = {PROM_LATENCY_BUCKETS};
    double many[PROM_HIST_MAX + 1];
    struct prom_hist h;
    (void)state;

    for (size_t i = 0; i <= PROM_HIST_MAX; i++)
        many[i] = (double)i;
    assert_int_equal(prom_hist_init(&h, bad_order, 2), -EINVAL);
    assert_int_equal(prom_hist_init(&h, inf, 2), -EINVAL);
    assert_int_equal(prom_hist_init(&h, many, 0), -EINVAL);
    assert_int_equal(prom_hist_init(&h, many, PROM_HIST_MAX + 1), -EINVAL);
    assert_int_equal(prom_hist_init(&h, many, PROM_HIST_MAX), 0);
    assert_int_equal(prom_hist_init(&h, lat, sizeof lat / sizeof lat[0]), 0);
    prom_hist_observe(&h, 1e9); /* above every bound: +Inf only */
    assert_int_equal(h.bucket[h.n], 1);
    assert_int_equal(h.count, 1);
}

/* A text that does not fit is an error, and the writer never writes past
 * its buffer; it stays NUL-terminated. */
static void test_full_buffer(void **state)
{
    char small[64 + 8];
    struct prom p;
    size_t len = 99;
    (void)state;

    memset(small, '#', sizeof small);
    prom_init(&p, small, 64);
    prom_family(&p, "m2k_a_total", PROM_COUNTER, "A counter.");
    prom_u64(&p, "m2k_a_total", NULL, 0, 1);
    prom_u64(&p, "m2k_a_total", NULL, 0, 2);
    assert_int_equal(prom_finish(&p, &len), -ENOSPC);
    assert_int_equal(len, 0);
    assert_true(memchr(small, '\0', 64) != NULL);
    for (size_t i = 64; i < sizeof small; i++)
        assert_int_equal(small[i], '#');
}

static void expect_einval(void (*write)(struct prom *))
{
    struct prom p;
    prom_init(&p, buf, sizeof buf);
    write(&p);
    assert_int_equal(prom_finish(&p, NULL), -EINVAL);
}

static void w_counter_no_total(struct prom *p)
{
    prom_family(p, "m2k_messages", PROM_COUNTER, "x");
}
static void w_bad_metric(struct prom *p)
{
    prom_u64(p, "2m2k", NULL, 0, 1);
}
static void w_bad_metric_dash(struct prom *p)
{
    prom_u64(p, "m2k-x", NULL, 0, 1);
}
static void w_reserved_label(struct prom *p)
{
    const struct prom_label l = {"__name__", "x"};
    prom_u64(p, "m2k_x", &l, 1, 1);
}
static void w_bad_label(struct prom *p)
{
    const struct prom_label l = {"a:b", "x"};
    prom_u64(p, "m2k_x", &l, 1, 1);
}
static void w_le_label(struct prom *p)
{
    static const double le[] = {1};
    const struct prom_label l = {"le", "x"};
    struct prom_hist h;
    prom_hist_init(&h, le, 1);
    prom_hist_write(p, "m2k_h", &l, 1, &h);
}

static void test_bad_names(void **state)
{
    (void)state;
    expect_einval(w_counter_no_total);
    expect_einval(w_bad_metric);
    expect_einval(w_bad_metric_dash);
    expect_einval(w_reserved_label);
    expect_einval(w_bad_label);
    expect_einval(w_le_label);
}

/* --- promtool ----------------------------------------------------------- */

/* Runs `promtool check metrics` on text; its exit status, its output in
 * out. -1: promtool could not be run. */
static int promtool(const char *txt, char *out, size_t outlen)
{
    char in_path[] = "/tmp/test_prom_XXXXXX";
    char cmd[256];
    FILE *f;
    size_t n;
    int fd = mkstemp(in_path), st;

    if (fd < 0)
        return -1;
    if (write(fd, txt, strlen(txt)) != (ssize_t)strlen(txt)) {
        close(fd);
        unlink(in_path);
        return -1;
    }
    close(fd);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", in_path);
    f = popen(cmd, "r");
    if (!f) {
        unlink(in_path);
        return -1;
    }
    n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    st = pclose(f);
    unlink(in_path);
    if (!WIFEXITED(st) || WEXITSTATUS(st) == 127)
        return -1;
    return WEXITSTATUS(st);
}

static int have_promtool(void)
{
    const char *req = getenv("M2K_REQUIRE_PROMTOOL");
    if (system("command -v promtool >/dev/null 2>&1") == 0)
        return 1;
    if (req && strcmp(req, "1") == 0)
        fail_msg("promtool not found: apt-get install prometheus "
                 "(test/stack/deps.sh installs it)");
    return 0;
}

/* An exposition shaped like the daemon's: counters with reasons, gauges,
 * a build_info, route labels with every character that needs escaping,
 * a histogram with the latency buckets. */
static void write_sample(struct prom *p)
{
    static const double lat[] = {PROM_LATENCY_BUCKETS};
    static const char *const reasons[] = {"spool_full", "expired", "qos0"};
    const struct prom_label route[] = {{"route", "plant \"A\"\\line\n2"},
                                       {"route", "1"}};
    const struct prom_label ver = {"version", "0.9.0"};
    struct prom_hist h;

    prom_hist_init(&h, lat, sizeof lat / sizeof lat[0]);
    for (int i = 0; i < 1000; i++)
        prom_hist_observe(&h, 0.001 * i * i);

    prom_family(p, "mqtt2kafka_messages_received_total", PROM_COUNTER,
                "Messages taken from MQTT.");
    prom_u64(p, "mqtt2kafka_messages_received_total", NULL, 0, 123456);
    prom_family(p, "mqtt2kafka_messages_dropped_total", PROM_COUNTER,
                "Messages dropped, by reason.");
    for (size_t i = 0; i < 3; i++) {
        const struct prom_label l = {"reason", reasons[i]};
        prom_u64(p, "mqtt2kafka_messages_dropped_total", &l, 1, i * 7);
    }
    prom_family(p, "mqtt2kafka_route_received_total", PROM_COUNTER,
                "Messages per route.");
    prom_u64(p, "mqtt2kafka_route_received_total", &route[0], 1, 5);
    prom_u64(p, "mqtt2kafka_route_received_total", &route[1], 1, 6);
    prom_family(p, "mqtt2kafka_spool_bytes", PROM_GAUGE, "Bytes in the spool.");
    prom_i64(p, "mqtt2kafka_spool_bytes", NULL, 0, 1 << 20);
    prom_family(p, "mqtt2kafka_spool_oldest_age_seconds", PROM_GAUGE,
                "Age of the oldest record, or NaN when empty.");
    prom_f64(p, "mqtt2kafka_spool_oldest_age_seconds", NULL, 0, NAN);
    prom_family(p, "mqtt2kafka_kafka_rtt_seconds", PROM_GAUGE,
                "Round trip, +Inf when unknown.");
    prom_f64(p, "mqtt2kafka_kafka_rtt_seconds", NULL, 0, INFINITY);
    prom_family(p, "mqtt2kafka_delivery_latency_seconds", PROM_HISTOGRAM,
                "Receive to Kafka acknowledgement.");
    prom_hist_write(p, "mqtt2kafka_delivery_latency_seconds", NULL, 0, &h);
    prom_family(p, "mqtt2kafka_build_info", PROM_GAUGE, "Build.");
    prom_u64(p, "mqtt2kafka_build_info", &ver, 1, 1);
}

static void test_promtool_accepts(void **state)
{
    char out[4096];
    struct prom p;
    int rc;
    (void)state;

    if (!have_promtool())
        skip();
    prom_init(&p, buf, sizeof buf);
    write_sample(&p);
    rc = promtool(text(&p), out, sizeof out);
    if (rc != 0)
        fail_msg("promtool: exit %d: %s\n--- text ---\n%s", rc, out, buf);
    assert_string_equal(out, "");
}

/* The check can fail: promtool does refuse a broken exposition. */
static void test_promtool_refuses(void **state)
{
    char out[4096];
    (void)state;

    if (!have_promtool())
        skip();
    assert_int_not_equal(
        promtool("# TYPE a gauge\na{x=\"q\"q\"} 1\n", out, sizeof out), 0);
    assert_int_not_equal(
        promtool("# HELP b x\n# TYPE b counter\nb 1\n", out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_escapes),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_hist_init_checks),
        cmocka_unit_test(test_full_buffer),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_promtool_accepts),
        cmocka_unit_test(test_promtool_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
