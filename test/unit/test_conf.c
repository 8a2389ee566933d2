/*
 * test_conf.c — the YAML loader: defaults, units, and every kind of error
 * with its exact "file:line:col: message".
 *
 * Run from the repository root (make unit does), so that the example
 * conf/mqtt2kafka.yaml can be found; M2K_ROOT overrides the root.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge/conf.h"
#include "bridge/route.h"

#define G "gateway:\n  id: gw-1\n"
#define R "routes:\n  - match: a/{x}\n    topic: t.{x}\n"

static char err[1024];

static int parse(const char *y, struct conf *c)
{
    return conf_parse(y, strlen(y), "t.yaml", c, err, sizeof err);
}

/* The error must start with "t.yaml:LINE:COL: " and contain msg. */
static void expect_error(const char *yaml, int line, int col, const char *msg)
{
    struct conf c;
    char where[64];
    int rc = parse(yaml, &c);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL for:\n%s\ngot %d (%s)", yaml, rc, err);
    snprintf(where, sizeof where, "t.yaml:%d:%d: ", line, col);
    if (strncmp(err, where, strlen(where)) || !strstr(err, msg))
        fail_msg("expected \"%s...%s\"\n     got \"%s\"", where, msg, err);
    assert_null(c.routes); /* the conf is left empty */
    assert_null(c.gateway.id);
}

/* Route i's MQTT filter, as the route stage compiles it from c. */
static const char *filter_of(const struct conf *c, size_t i)
{
    static char f[256];
    struct route_table *t;
    if (route_table_new(c, &t, err, sizeof err))
        fail_msg("route table: %s", err);
    snprintf(f, sizeof f, "%s", route_filter(t, i));
    route_table_free(t);
    return f;
}

static void test_defaults(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(parse(G R, &c), 0);
    assert_string_equal(c.path, "t.yaml");
    assert_string_equal(c.gateway.id, "gw-1");
    assert_string_equal(c.mqtt.host, "127.0.0.1");
    assert_int_equal(c.mqtt.port, 1883);
    assert_string_equal(c.mqtt.client_id, "mqtt2kafka-gw-1");
    assert_int_equal(c.mqtt.protocol, 5);
    assert_int_equal(c.mqtt.qos, 1);
    assert_int_equal(c.mqtt.keepalive, 30);
    assert_int_equal(c.mqtt.session_expiry, 86400);
    assert_int_equal(c.mqtt.reconnect_max, 30);
    assert_int_equal(c.mqtt.max_payload, 256 * 1024);
    assert_null(c.mqtt.username);
    assert_string_equal(c.kafka.brokers, "127.0.0.1:9092");
    assert_string_equal(c.kafka.compression, "lz4");
    assert_string_equal(c.kafka.dead_letter_topic, "mqtt2kafka.dead-letter");
    assert_int_equal(c.kafka.inflight_records, 10000);
    assert_int_equal(c.kafka.inflight_bytes, 16 * 1024 * 1024);
    assert_int_equal(c.kafka.shutdown_timeout, 10000);
    assert_int_equal(c.kafka.nprops, 0);
    assert_string_equal(c.spool.path, "/var/lib/mqtt2kafka/spool.db");
    assert_int_equal(c.spool.max_bytes, 1024LL * 1024 * 1024);
    assert_int_equal(c.spool.on_full, CONF_DROP_OLDEST);
    assert_int_equal(c.spool.max_age, 7LL * 86400 * 1000);
    assert_int_equal(c.spool.sync, CONF_SYNC_FULL);
    assert_int_equal(c.log.stats_interval, 60);
    assert_string_equal(c.log.level, "info");
    assert_int_equal(c.nroutes, 1);
    assert_string_equal(c.routes[0].match, "a/{x}");
    assert_string_equal(filter_of(&c, 0), "a/+");
    assert_string_equal(c.routes[0].topic, "t.{x}");
    assert_null(c.routes[0].key);
    assert_int_equal(c.routes[0].line, 4);
    assert_int_equal(c.routes[0].col, 5);
    conf_fini(&c);
    conf_fini(&c); /* twice is harmless */
}

static void test_values(void **state)
{
    struct conf c;
    (void)state;
    const char *y = G R "mqtt:\n  client_id: fixed\n  protocol: 3.1.1\n  qos: "
                        "0\n  keepalive: 1m\n"
                        "  session_expiry: 2d\n  username: u\n  password: "
                        "\"\"\n  max_payload: 1MB\n"
                        "kafka:\n  compression: zstd\n  shutdown_timeout: "
                        "250ms\n  inflight_bytes: 512KiB\n"
                        "  properties:\n    linger.ms: 5\n    "
                        "ssl.endpoint.identification.algorithm: none\n"
                        "    enable.ssl.certificate.verification: false\n"
                        "spool:\n  max_bytes: 0\n  on_full: backpressure\n  "
                        "max_age: 12h\n  sync: normal\n"
                        "log:\n  stats_interval: 0\n  level: debug\n";
    assert_int_equal(parse(y, &c), 0);
    assert_string_equal(c.mqtt.client_id, "fixed");
    assert_int_equal(c.mqtt.protocol, 4);
    assert_int_equal(c.mqtt.qos, 0);
    assert_int_equal(c.mqtt.keepalive, 60);
    assert_int_equal(c.mqtt.session_expiry, 2 * 86400);
    assert_string_equal(c.mqtt.username, "u");
    assert_string_equal(c.mqtt.password, "");
    assert_int_equal(c.mqtt.max_payload, 1000000);
    assert_string_equal(c.kafka.compression, "zstd");
    assert_int_equal(c.kafka.shutdown_timeout, 250);
    assert_int_equal(c.kafka.inflight_bytes, 512 * 1024);
    assert_int_equal(c.kafka.nprops, 3);
    assert_string_equal(c.kafka.props[0].name, "linger.ms");
    assert_string_equal(c.kafka.props[0].value, "5");
    assert_int_equal(c.kafka.props[0].line, 20);
    assert_string_equal(c.kafka.props[2].value, "false");
    assert_int_equal(c.spool.max_bytes, 0);
    assert_int_equal(c.spool.on_full, CONF_BACKPRESSURE);
    assert_int_equal(c.spool.max_age, 12LL * 3600 * 1000);
    assert_int_equal(c.spool.sync, CONF_SYNC_NORMAL);
    assert_int_equal(c.log.stats_interval, 0);
    assert_string_equal(c.log.level, "debug");
    conf_fini(&c);

    assert_int_equal(parse(G R "mqtt:\n  protocol: 311\n", &c), 0);
    assert_int_equal(c.mqtt.protocol, 4);
    conf_fini(&c);
    /* Flow style works the same. */
    assert_int_equal(
        parse("{gateway: {id: g}, routes: [{match: '#', topic: all}]}", &c), 0);
    assert_string_equal(filter_of(&c, 0), "#");
    conf_fini(&c);
}

static void test_key_errors(void **state)
{
    (void)state;
    expect_error(G R "mqtt:\n  hots: x\n", 7, 3,
                 "unknown key \"hots\" in mqtt (did you mean \"host\"?); "
                 "expected one of: host, "
                 "port, client_id");
    expect_error(G R "mqtt:\n  port: 1\n  port: 2\n", 8, 3,
                 "duplicate key \"port\" in mqtt (first set on line 7)");
    expect_error(
        G R "kafak:\n  brokers: x\n", 6, 1,
        "unknown key \"kafak\" in the top level (did you mean \"kafka\"?)");
    expect_error(G R "mqtt: {}\nmqtt: {}\n", 7, 1,
                 "duplicate section \"mqtt\"");
    expect_error(
        G R "kafka:\n  properties:\n    linger.ms: 1\n    linger.ms: 2\n", 9, 5,
        "duplicate key \"linger.ms\" in kafka.properties (first set on line "
        "8)");
    expect_error(G R "kafka:\n  properties:\n    acks: 1\n", 8, 5,
                 "\"acks\" cannot be set here");
}

static void test_type_errors(void **state)
{
    (void)state;
    expect_error(G R "mqtt:\n  port: abc\n", 7, 9,
                 "mqtt.port: expected an integer from 1 to 65535, got \"abc\"");
    expect_error(G R "mqtt:\n  port: 70000\n", 7, 9,
                 "mqtt.port: 70000 is out of range (1 to 65535)");
    expect_error(G R "mqtt:\n  qos: 2\n", 7, 8,
                 "mqtt.qos: 2 is out of range (0 to 1)");
    expect_error(G R "mqtt:\n  host: [a, b]\n", 7, 9,
                 "expected a string for mqtt.host, got a list");
    expect_error(G R "mqtt:\n  host:\n", 7, 8,
                 "expected a string for mqtt.host, got nothing");
    expect_error(G R "mqtt:\n  protocol: 4\n", 7, 13,
                 "mqtt.protocol: expected one of 5 | 3.1.1 | 311, got \"4\"");
    expect_error(G R "mqtt:\n  keepalive: 250ms\n", 7, 14,
                 "mqtt.keepalive: expected whole seconds, got \"250ms\"");
    expect_error(G R "spool:\n  max_bytes: 1.5GiB\n", 7, 14,
                 "spool.max_bytes: expected a size");
    expect_error(G R "spool:\n  max_age: 1y\n", 7, 12,
                 "spool.max_age: expected a duration");
    expect_error(G R "spool:\n  on_full: drop\n", 7, 12,
                 "spool.on_full: expected one of drop_oldest | backpressure, "
                 "got \"drop\"");
    expect_error(G R "spool:\n  sync: off\n", 7, 9,
                 "expected one of full | normal");
    expect_error(
        G R "kafka:\n  compression: brotli\n", 7, 16,
        "expected one of none | gzip | snappy | lz4 | zstd, got \"brotli\"");
    expect_error(G R "kafka:\n  inflight_bytes: 1KiB\n", 7, 19,
                 "kafka.inflight_bytes: 1KiB is out of range (64KiB to 1GiB)");
    expect_error(
        G R "kafka:\n  dead_letter_topic: dead/letters\n", 7, 22,
        "\"dead/letters\" is not a legal Kafka topic name ('/' is not allowed");
    expect_error(
        G R "kafka:\n  properties: [a]\n", 7, 15,
        "expected a mapping of librdkafka property names to values for "
        "kafka.properties, got a list");
    expect_error(G R "log: 5\n", 6, 6,
                 "expected a mapping of keys for log, got a scalar");
    expect_error("- a\n", 1, 1,
                 "expected a mapping with sections gateway, mqtt");
}

static void test_required(void **state)
{
    (void)state;
    expect_error(R, 1, 1, "missing required key gateway.id");
    expect_error("gateway: {}\n" R, 1, 10, "gateway.id is required");
    expect_error("gateway:\n" R, 1, 1, "gateway.id is required");
    expect_error(G, 1, 1, "missing routes: at least one route is required");
    expect_error(G "routes: []\n", 3, 9, "at least one route is required");
    expect_error(G "routes:\n  - topic: t\n", 4, 5,
                 "route 1 is missing required key \"match\"");
    expect_error(G "routes:\n  - match: a\n    topic: t\n  - match: b\n", 6, 5,
                 "route 2 is missing required key \"topic\"");
    expect_error(G "routes:\n  - a/b\n", 4, 5,
                 "expected route 1 as a mapping with match, topic and key, got "
                 "a scalar");
    expect_error(G "routes:\n  - match: a\n    topic: t\n    partition: 1\n", 6,
                 5, "unknown key \"partition\" in route 1");
    expect_error("", 1, 1, "the configuration is empty");
}

static void test_route_key_errors(void **state)
{
    (void)state;
    expect_error(G "routes:\n  - match: \"\"\n    topic: t\n", 4, 12,
                 "route 1.match: expected a non-empty string");
    expect_error(G "routes:\n  - match: a/{x}\n    key: {x}\n    topic: t\n", 5,
                 10,
                 "expected a string for route 1.key, got a mapping (a value "
                 "that starts with "
                 "'{' must be quoted");
}

/* routes[].lane and spool.mode: defaults, values, a bad one named at
 * file:line:col. */
static void test_lane_and_mode_keys(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(parse(G "routes:\n  - match: a\n    topic: t\n"
                             "  - match: b\n    topic: u\n    lane: fast\n"
                             "  - match: c\n    topic: v\n    lane: bulk\n",
                           &c),
                     0);
    assert_int_equal(c.routes[0].lane, CONF_LANE_NORMAL);
    assert_int_equal(c.routes[1].lane, CONF_LANE_FAST);
    assert_int_equal(c.routes[2].lane, CONF_LANE_BULK);
    assert_int_equal(c.spool.mode, CONF_SPOOL_DIRECT);
    assert_int_equal(c.spool.direct_wait, 250);
    conf_fini(&c);
    assert_int_equal(parse(G "spool:\n  mode: always\n  direct_wait: 1s\n"
                             "routes:\n  - match: a\n    topic: t\n",
                           &c),
                     0);
    assert_int_equal(c.spool.mode, CONF_SPOOL_ALWAYS);
    assert_int_equal(c.spool.direct_wait, 1000);
    conf_fini(&c);
    expect_error(G "routes:\n  - match: a\n    topic: t\n    lane: urgent\n", 6,
                 11, "expected one of normal | fast | bulk, got \"urgent\"");
    expect_error(G R "spool:\n  mode: never\n", 7, 9,
                 "spool.mode: expected one of direct | always, got \"never\"");
    expect_error(G R "spool:\n  direct_wait: 5ms\n", 7, 16,
                 "spool.direct_wait: 5ms is out of range");
}

/* kafka.chunk_bytes: a size, or off; out of range named with "or off". */
static void test_chunk_bytes_key(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(parse(G R, &c), 0);
    assert_int_equal(c.kafka.chunk_bytes, 512 * 1024);
    conf_fini(&c);
    assert_int_equal(parse(G R "kafka:\n  chunk_bytes: off\n", &c), 0);
    assert_int_equal(c.kafka.chunk_bytes, 0);
    conf_fini(&c);
    assert_int_equal(parse(G R "kafka:\n  chunk_bytes: 1MiB\n", &c), 0);
    assert_int_equal(c.kafka.chunk_bytes, 1 << 20);
    conf_fini(&c);
    expect_error(G R "kafka:\n  chunk_bytes: 8KiB\n", 7, 16,
                 "kafka.chunk_bytes: 8KiB is out of range (16KiB to 16MiB, "
                 "or off)");
    expect_error(G R "kafka:\n  chunk_bytes: none\n", 7, 16,
                 "or off, got \"none\"");
}

/* metrics.listen and the routes' metric labels. */
static void test_metrics_keys(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(parse(G R, &c), 0);
    assert_string_equal(c.metrics.listen, "127.0.0.1:9464");
    assert_string_equal(c.routes[0].name, "1");
    conf_fini(&c);
    assert_int_equal(parse(G "metrics:\n  listen: off\n"
                             "routes:\n  - match: a\n    topic: t\n"
                             "  - match: b\n    topic: u\n    name: b-2.x:y\n"
                             "  - match: c\n    topic: v\n",
                           &c),
                     0);
    assert_string_equal(c.metrics.listen, "off");
    assert_int_equal(c.metrics.at_listen.line, 4);
    assert_int_equal(c.metrics.at_listen.col, 11);
    assert_string_equal(c.routes[0].name, "1");
    assert_string_equal(c.routes[1].name, "b-2.x:y");
    assert_string_equal(c.routes[2].name, "3");
    conf_fini(&c);
    expect_error(G "routes:\n  - match: a\n    topic: t\n"
                   "  - match: b\n    topic: u\n    name: \"1\"\n",
                 8, 11,
                 "route 2: name \"1\" is already route 1's (a route without "
                 "a name is named by its position)");
    expect_error(G "routes:\n  - match: a\n    topic: t\n    name: a b\n", 6,
                 11, "route 1: name \"a b\" may hold letters, digits");
    expect_error(G "routes:\n  - match: a\n    topic: t\n    name: \"\"\n", 6,
                 11, "route 1.name: expected a non-empty string");
    expect_error(G R "metrics:\n  port: 1\n", 7, 3,
                 "unknown key \"port\" in metrics");
}

static void count_change(void *ud, const char *key)
{
    if (!strcmp(key, "mqtt.share_group"))
        (*(int *)ud)++;
}

/* mqtt.share_group: off by default and when empty; a share name without
 * '/', '+' or '#', refused where it is written; a change of it is applied
 * on the same session, like the routes. */
static void test_share_group(void **state)
{
    struct conf a, b;
    int changed = 0;
    (void)state;
    assert_int_equal(parse(G R, &a), 0);
    assert_null(a.mqtt.share_group);
    conf_fini(&a);
    assert_int_equal(parse(G R "mqtt:\n  share_group: \"\"\n", &a), 0);
    assert_null(a.mqtt.share_group); /* "": off */
    assert_int_equal(parse(G R "mqtt:\n  share_group: bridges.site-1_a\n", &b),
                     0);
    assert_string_equal(b.mqtt.share_group, "bridges.site-1_a");
    assert_int_equal(conf_diff(&a, &b, count_change, &changed), 1);
    assert_int_equal(changed, 1);
    assert_int_equal(conf_key_effect("mqtt.share_group"), CONF_ROUTES);
    assert_int_equal(conf_key_effect("mqtt.host"), CONF_MQTT);
    conf_fini(&a);
    conf_fini(&b);
    expect_error(G R "mqtt:\n  share_group: site/a\n", 7, 16,
                 "mqtt.share_group: \"site/a\" is not a share name ('/' is "
                 "not allowed");
    expect_error(G R "mqtt:\n  share_group: a+\n", 7, 16,
                 "('+' is not allowed");
    expect_error(G R "mqtt:\n  share_group: \"#\"\n", 7, 16,
                 "('#' is not allowed");
    expect_error(G R "mqtt:\n  share_group: [a]\n", 7, 16,
                 "expected a string for mqtt.share_group, got a list");
    char y[512], name[130];
    memset(name, 'g', 129);
    name[129] = '\0';
    snprintf(y, sizeof y, G R "mqtt:\n  share_group: %s\n", name);
    expect_error(y, 7, 16,
                 "mqtt.share_group: expected a string of 0 to 128 characters");
    name[128] = '\0'; /* 128: the longest */
    snprintf(y, sizeof y, G R "mqtt:\n  share_group: %s\n", name);
    assert_int_equal(parse(y, &a), 0);
    assert_int_equal(strlen(a.mqtt.share_group), 128);
    conf_fini(&a);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_error(G R "  bad: [\n", 6, 3,
                 "YAML syntax error: did not find expected '-'");
    expect_error("gateway:\n  id: a\n  - b\n", 3, 3, "YAML syntax error:");
    expect_error("gateway: {id: [}\n", 1, 16, "YAML syntax error:");
    expect_error("gateway:\n  id: g\xff\n", 2, 8,
                 "the file is not valid UTF-8 text");
    expect_error(G R "---\nx: 1\n", 7, 1, "expected one YAML document");
    expect_error(G R "mqtt:\n  host: *nope\n", 7, 9,
                 "YAML syntax error: found undefined alias");
}

static void test_example_file(void **state)
{
    struct conf c;
    char path[512];
    const char *root = getenv("M2K_ROOT");
    (void)state;
    snprintf(path, sizeof path, "%s%sconf/mqtt2kafka.yaml", root ? root : "",
             root ? "/" : "");
    int rc = conf_load(path, &c, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(c.gateway.id, "gw-0001");
    assert_int_equal(c.mqtt.port, 1883);
    assert_int_equal(c.spool.max_age, 7LL * 86400000);
    assert_true(c.nroutes >= 2);
    assert_string_equal(c.routes[0].match, "sensors/{region}/{type}/{device}");
    assert_string_equal(filter_of(&c, 0), "sensors/+/+/+");
    assert_string_equal(c.routes[0].topic, "iot.sensor.{region}.{type}");
    assert_string_equal(c.routes[0].key, "{device}");
    assert_string_equal(filter_of(&c, 1), "gateways/+/events/#");
    conf_fini(&c);
}

static void test_load_errors(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(conf_load("/nonexistent/m2k.yaml", &c, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/m2k.yaml: cannot open"));
    char path[] = "/tmp/m2k-test-confXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < CONF_MAX_FILE / 16 + 1; i++)
        fputs("# padding......\n", f);
    fclose(f);
    assert_int_equal(conf_load(path, &c, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "larger than"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_chunk_bytes_key),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_route_key_errors),
        cmocka_unit_test(test_metrics_keys),
        cmocka_unit_test(test_lane_and_mode_keys),
        cmocka_unit_test(test_share_group),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
