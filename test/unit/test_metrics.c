/*
 * test_metrics.c — what /metrics, /healthz and /ready say for a snapshot:
 * every family the contract names, each number where it belongs (a
 * number in the snapshot shows up once, under its own name), route labels,
 * Kafka brokers, a whole exposition accepted by `promtool check metrics`
 * (Debian's prometheus package; skipped when missing unless
 * M2K_REQUIRE_PROMTOOL=1, as `make unit` sets), and the health answers.
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

#include "bridge/metrics.h"

static char buf[256 * 1024];

/* A snapshot where every counter has its own value, so a number found in
 * the text tells which field it came from. */
static struct stats sn = {
    .received = 1001,
    .spooled = 1002,
    .delivered = 1003,
    .unrouted = 1004,
    .bad_topic = 1005,
    .oversized = 1006,
    .empty = 1007,
    .bad_payload = 1008,
    .missing_field = 1009,
    .kafka_refused = 1010,
    .retries = 1011,
    .spool_errors = 1012,
    .broker_dropped = 1013,
    .reconnects = 1014,
    .redelivered = 1015,
    .dropped_qos0 = 1016,
    .props_renamed = 1017,
    .stored = 1018,
    .kafka_reconnects = 1019,
};
static struct stats_gauges sg = {
    .dropped_full = 2001,
    .expired = 2002,
    .backlog = 2003,
    .backlog_bytes = 2004,
    .dead_in_spool = 2006,
    .spool_file_bytes = 2007,
    .uplink = 0,
    .mqtt = 1,
    .backpressure = 0,
    .dead_dropped = 2008,
    .dead_expired = 2009,
    .dead_purged = 2010,
    .put_total = 2011,
    .acked_total = 2012,
    .run_full = 2013,
    .run_expired = 2014,
    .run_dead_full = 2015,
    .run_dead_expired = 2016,
    .backlog_at_start = 2017,
    .dead_at_start = 2018,
    .written = 2019,
    .fsyncs = 2020,
    .disk_written = 2021,
    .oldest_ms = 2022500,
    .inflight = 2023,
    .dead_bytes = 2024,
    .spool_max_bytes = 2025,
};

static const char *render(const struct metrics_view *v)
{
    struct prom p;
    size_t len;
    prom_init(&p, buf, sizeof buf);
    metrics_write(&p, v);
    assert_int_equal(prom_finish(&p, &len), 0);
    assert_int_equal(len, strlen(buf));
    return buf;
}

/* The line "name value" (name with its labels) must be in the text. */
static void has(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("missing line: %s", line);
}

static struct metrics_view base_view(struct kstats *k, struct prom_hist *h)
{
    static const double le[] = {PROM_LATENCY_BUCKETS};
    static const char *const names[] = {"1", "temps", "line:2.a-b"};
    static const int64_t rec[] = {301, 302, 303}, del[] = {401, 402, 403};
    static const char doc[] =
        "{\"msg_cnt\": 77, \"brokers\": {\"k1:9092/1\": {\"nodeid\": 1,"
        " \"state\": \"UP\", \"connects\": 2, \"disconnects\": 1,"
        " \"waitresp_cnt\": 3, \"rtt\": {\"cnt\": 4, \"sum\": 8000,"
        " \"p50\": 1500, \"p95\": 2500, \"p99\": 3000}},"
        " \"k2:9092/2\": {\"nodeid\": 2, \"state\": \"DOWN\"}}}";
    char err[128];
    prom_hist_init(h, le, sizeof le / sizeof le[0]);
    prom_hist_observe(h, 0.02);
    prom_hist_observe(h, 7200);
    memset(k, 0, sizeof *k);
    assert_int_equal(kstats_update(k, doc, strlen(doc), err, sizeof err), 0);
    return (struct metrics_view){
        .n = &sn,
        .g = &sg,
        .nroutes = 3,
        .route_names = names,
        .route_received = rec,
        .route_delivered = del,
        .latency = h,
        .kafka = k,
        .kafka_age_ms = 1500,
        .version = "9.9.9",
        .librdkafka = "2.0.2",
        .start_time_s = 1700000000.25,
        .cpu_s = 1.5,
        .rss_bytes = 12345678,
        .lag_ms = 250,
        .turns = 3001,
        .stalls = 3002,
    };
}

static void test_names_and_numbers(void **state)
{
    struct kstats k;
    struct prom_hist h;
    struct http_info hi = {.conns = 2, .requests = 3003, .cut = 3004};
    (void)state;
    struct metrics_view v = base_view(&k, &h);
    v.http = &hi;
    const char *t = render(&v);
    has(t, "mqtt2kafka_messages_received_total 1001");
    has(t, "mqtt2kafka_messages_stored_total 1018");
    has(t, "mqtt2kafka_messages_redelivered_total 1015");
    has(t, "mqtt2kafka_records_spooled_total 1002");
    has(t, "mqtt2kafka_messages_delivered_total 1003");
    has(t, "mqtt2kafka_messages_dead_lettered_total{reason=\"unrouted\"} 1004");
    has(t,
        "mqtt2kafka_messages_dead_lettered_total{reason=\"bad_topic\"} 1005");
    has(t,
        "mqtt2kafka_messages_dead_lettered_total{reason=\"oversized\"} 1006");
    has(t, "mqtt2kafka_messages_dead_lettered_total{reason=\"empty\"} 1007");
    has(t, "mqtt2kafka_messages_dead_lettered_total{reason=\"bad_payload\"} "
           "1008");
    has(t, "mqtt2kafka_messages_dead_lettered_total{reason=\"missing_field\"} "
           "1009");
    has(t, "mqtt2kafka_messages_dead_lettered_total{reason=\"kafka_refused\"} "
           "1010");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"qos0_lost\"} 1016");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"spool_full\"} 2013");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"expired\"} 2014");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"dead_full\"} 2015");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"dead_expired\"} 2016");
    has(t, "mqtt2kafka_messages_dropped_total{reason=\"broker\"} 1013");
    has(t, "mqtt2kafka_delivery_retries_total 1011");
    has(t, "mqtt2kafka_spool_errors_total 1012");
    has(t, "mqtt2kafka_reconnects_total{side=\"mqtt\"} 1014");
    has(t, "mqtt2kafka_reconnects_total{side=\"kafka\"} 1019");
    has(t, "mqtt2kafka_mqtt_properties_renamed_total 1017");
    has(t, "mqtt2kafka_route_messages_received_total{route=\"1\"} 301");
    has(t, "mqtt2kafka_route_messages_received_total{route=\"line:2.a-b\"} "
           "303");
    has(t, "mqtt2kafka_route_messages_delivered_total{route=\"temps\"} 402");
    has(t, "mqtt2kafka_delivery_latency_seconds_bucket{le=\"0.025\"} 1");
    has(t, "mqtt2kafka_delivery_latency_seconds_bucket{le=\"3600\"} 1");
    has(t, "mqtt2kafka_delivery_latency_seconds_bucket{le=\"14400\"} 2");
    has(t, "mqtt2kafka_delivery_latency_seconds_count 2");
    has(t, "mqtt2kafka_spool_records 2003");
    has(t, "mqtt2kafka_spool_bytes 2004");
    has(t, "mqtt2kafka_spool_max_bytes 2025");
    has(t, "mqtt2kafka_spool_oldest_age_seconds 2022.5");
    has(t, "mqtt2kafka_spool_inflight_records 2023");
    has(t, "mqtt2kafka_spool_file_bytes 2007");
    has(t, "mqtt2kafka_spool_dead_letters 2006");
    has(t, "mqtt2kafka_spool_dead_letter_bytes 2024");
    has(t, "mqtt2kafka_spool_records_at_start 2017");
    has(t, "mqtt2kafka_spool_dead_letters_at_start 2018");
    has(t, "mqtt2kafka_spool_bytes_written_total 2019");
    has(t, "mqtt2kafka_spool_fsyncs_total 2020");
    has(t, "mqtt2kafka_disk_bytes_written_total 2021");
    has(t, "mqtt2kafka_spool_records_put_total 2011");
    has(t, "mqtt2kafka_spool_records_acked_total 2012");
    has(t, "mqtt2kafka_spool_records_dropped_total{reason=\"full\"} 2001");
    has(t, "mqtt2kafka_spool_records_dropped_total{reason=\"expired\"} 2002");
    has(t, "mqtt2kafka_spool_records_dropped_total{reason=\"dead_full\"} 2008");
    has(t, "mqtt2kafka_spool_records_dropped_total{reason=\"dead_expired\"} "
           "2009");
    has(t, "mqtt2kafka_spool_dead_letters_purged_total 2010");
    has(t, "mqtt2kafka_mqtt_connected 1");
    has(t, "mqtt2kafka_uplink_up 0");
    has(t, "mqtt2kafka_backpressure 0");
    has(t, "mqtt2kafka_kafka_statistics_age_seconds 1.5");
    has(t, "mqtt2kafka_kafka_queue_records 77");
    has(t, "mqtt2kafka_kafka_broker_up{broker=\"k1:9092/1\"} 1");
    has(t, "mqtt2kafka_kafka_broker_up{broker=\"k2:9092/2\"} 0");
    has(t, "mqtt2kafka_kafka_broker_requests_in_flight{broker=\"k1:9092/1\"} "
           "3");
    has(t, "mqtt2kafka_kafka_broker_connects_total{broker=\"k1:9092/1\"} 2");
    has(t, "mqtt2kafka_kafka_broker_disconnects_total{broker=\"k1:9092/1\"} "
           "1");
    has(t, "mqtt2kafka_kafka_broker_rtt_seconds{broker=\"k1:9092/1\","
           "quantile=\"0.99\"} 0.003");
    has(t, "mqtt2kafka_kafka_broker_rtt_seconds{broker=\"k2:9092/2\","
           "quantile=\"0.5\"} NaN");
    has(t, "mqtt2kafka_kafka_broker_rtt_seconds_sum{broker=\"k1:9092/1\"} "
           "0.008");
    has(t, "mqtt2kafka_kafka_broker_rtt_seconds_count{broker=\"k1:9092/1\"} "
           "4");
    has(t, "mqtt2kafka_build_info{version=\"9.9.9\",librdkafka=\"2.0.2\"} 1");
    has(t, "process_start_time_seconds 1700000000.25");
    has(t, "process_cpu_seconds_total 1.5");
    has(t, "process_resident_memory_bytes 12345678");
    has(t, "mqtt2kafka_loop_lag_seconds 0.25");
    has(t, "mqtt2kafka_loop_turns_total 3001");
    has(t, "mqtt2kafka_loop_stalls_total 3002");
    has(t, "mqtt2kafka_http_connections 2");
    has(t, "mqtt2kafka_http_requests_total 3003");
    has(t, "mqtt2kafka_http_cut_total 3004");
    has(t, "# TYPE mqtt2kafka_delivery_latency_seconds histogram");
    has(t, "# TYPE mqtt2kafka_kafka_broker_rtt_seconds summary");
    has(t, "# TYPE mqtt2kafka_spool_records gauge");
}

/* Before librdkafka's first statistics, and unknown process numbers: the
 * families that would be empty or wrong are left out. */
static void test_without_optional_parts(void **state)
{
    struct kstats k;
    struct prom_hist h;
    (void)state;
    struct metrics_view v = base_view(&k, &h);
    struct stats_gauges g2 = sg;
    g2.disk_written = -1;
    g2.uplink = 1;
    v.g = &g2;
    v.kafka = NULL;
    v.cpu_s = -1;
    v.rss_bytes = -1;
    const char *t = render(&v);
    assert_null(strstr(t, "kafka_broker"));
    assert_null(strstr(t, "process_cpu_seconds_total"));
    assert_null(strstr(t, "process_resident_memory_bytes"));
    assert_null(strstr(t, "disk_bytes_written"));
    assert_null(strstr(t, "http_requests"));
    has(t, "mqtt2kafka_uplink_up 1");
}

/* --- promtool ------------------------------------------------------------ */

static int promtool(const char *txt, char *out, size_t outlen)
{
    char in_path[] = "/tmp/test_metrics_XXXXXX", cmd[256];
    int fd = mkstemp(in_path), st;
    FILE *f;
    size_t n;
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

static void test_promtool_accepts(void **state)
{
    struct kstats k;
    struct prom_hist h;
    struct http_info hi = {.conns = 1};
    char out[8192];
    const char *req = getenv("M2K_REQUIRE_PROMTOOL");
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        if (req && !strcmp(req, "1"))
            fail_msg("promtool not found: apt-get install prometheus");
        skip();
    }
    struct metrics_view v = base_view(&k, &h);
    v.http = &hi;
    int rc = promtool(render(&v), out, sizeof out);
    if (rc != 0)
        fail_msg("promtool check metrics: exit %d:\n%s", rc, out);
    /* and it says nothing at all: no lint warning either */
    assert_string_equal(out, "");
}

/* --- health -------------------------------------------------------------- */

static struct http_response res;
static char body[4096];

static void reset(void)
{
    res = (struct http_response){
        .status = 404, .body = body, .cap = sizeof body, .len = 0};
    body[0] = '\0';
}

static void test_healthz(void **state)
{
    struct metrics_health h = {.lag_ms = 120};
    (void)state;
    reset();
    metrics_healthz(&h, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(body, "ok: the loop turned 0.120 s ago\n");
    reset();
    h.lag_ms = METRICS_STALL_MS;
    metrics_healthz(&h, &res);
    assert_int_equal(res.status, 200);
    reset();
    h.lag_ms = 7300;
    metrics_healthz(&h, &res);
    assert_int_equal(res.status, 503);
    assert_string_equal(body, "stalled: the loop did not turn for 7.3 s (more "
                              "than 5 s)\n");
}

static void test_ready(void **state)
{
    struct metrics_health h = {.mqtt = 1, .uplink = 1};
    (void)state;
    reset();
    metrics_ready(&h, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(body, "ready\n");
    /* an uplink that is down is still ready: spooling is the job */
    reset();
    h.uplink = 0;
    h.backlog = 42;
    metrics_ready(&h, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(body, "ready (uplink down: spooling, 42 records "
                              "waiting)\n");
    reset();
    h.mqtt = 0;
    h.mqtt_why = "connection to 127.0.0.1:1883 lost: connection refused";
    metrics_ready(&h, &res);
    assert_int_equal(res.status, 503);
    assert_string_equal(body, "not ready:\nmqtt: connection to "
                              "127.0.0.1:1883 lost: connection refused\n");
    reset();
    h.spool_why = "full (spool.on_full: backpressure)";
    h.stopping = 1;
    metrics_ready(&h, &res);
    assert_int_equal(res.status, 503);
    assert_string_equal(body, "not ready:\nstopping\nmqtt: connection to "
                              "127.0.0.1:1883 lost: connection refused\n"
                              "spool: full (spool.on_full: backpressure)\n");
    reset();
    h = (struct metrics_health){
        .mqtt = 1, .uplink = -1, .spool_why = "cannot store: disk I/O error"};
    metrics_ready(&h, &res);
    assert_int_equal(res.status, 503);
    assert_string_equal(body, "not ready:\nspool: cannot store: disk I/O "
                              "error\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_numbers),
        cmocka_unit_test(test_without_optional_parts),
        cmocka_unit_test(test_promtool_accepts),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
