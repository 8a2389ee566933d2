/*
 * test_route.c — topic → route, Kafka topic and key: first match wins,
 * captures, '#', the '$' rule, illegal captured names, length limits, and
 * the union of subscription filters.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bridge/conf.h"
#include "bridge/route.h"

struct fx {
    struct conf c;
    struct route_table *t;
};

static struct fx *load(const char *routes)
{
    static struct fx fx;
    char y[4096], err[512];
    snprintf(y, sizeof y, "gateway: {id: gw}\nroutes:\n%s", routes);
    if (conf_parse(y, strlen(y), "t.yaml", &fx.c, err, sizeof err))
        fail_msg("conf: %s", err);
    if (route_table_new(&fx.c, &fx.t, err, sizeof err))
        fail_msg("route: %s", err);
    return &fx;
}

static void unload(struct fx *fx)
{
    route_table_free(fx->t);
    conf_fini(&fx->c);
}

static void expect_ok(struct fx *fx, const char *topic, int index,
                      const char *ktopic, const char *key)
{
    struct route_result r;
    enum route_status st = route_match(fx->t, topic, &r);
    if (st != ROUTE_OK)
        fail_msg("%s: status %d (%s)", topic, st, r.reason);
    assert_int_equal(r.index, index);
    assert_ptr_equal(r.route, &fx->c.routes[index]);
    assert_string_equal(r.topic, ktopic);
    if (key) {
        assert_true(r.has_key);
        assert_int_equal(r.key_len, strlen(key));
        assert_string_equal(r.key, key);
    } else {
        assert_false(r.has_key);
    }
}

static void expect_status(struct fx *fx, const char *topic,
                          enum route_status want, int index, const char *reason)
{
    struct route_result r;
    enum route_status st = route_match(fx->t, topic, &r);
    if (st != want || r.status != want)
        fail_msg("%s: status %d, wanted %d (%s)", topic, st, want, r.reason);
    assert_int_equal(r.index, index);
    if (!strstr(r.reason, reason))
        fail_msg("%s: reason \"%s\" lacks \"%s\"", topic, r.reason, reason);
}

static const char *example = "  - match: sensors/{region}/{type}/{device}\n"
                             "    topic: iot.sensor.{region}.{type}\n"
                             "    key: \"{device}\"\n"
                             "  - match: gateways/{gateway}/events/#\n"
                             "    topic: iot.gateway.events\n"
                             "    key: \"{gateway}\"\n"
                             "  - match: sensors/#\n"
                             "    topic: iot.sensor.other\n";

static void test_captures(void **state)
{
    (void)state;
    struct fx *fx = load(example);
    expect_ok(fx, "sensors/eu-west/temp/dev-17", 0, "iot.sensor.eu-west.temp",
              "dev-17");
    expect_ok(fx, "gateways/gw9/events/boot", 1, "iot.gateway.events", "gw9");
    expect_ok(fx, "gateways/gw9/events/a/b/c", 1, "iot.gateway.events", "gw9");
    /* a/# also matches its parent a (MQTT 4.7.1.2). */
    expect_ok(fx, "gateways/gw9/events", 1, "iot.gateway.events", "gw9");
    /* First match wins: route 3 only gets what route 1 does not match. */
    expect_ok(fx, "sensors/eu/temp", 2, "iot.sensor.other", NULL);
    expect_ok(fx, "sensors/eu/temp/dev/extra", 2, "iot.sensor.other", NULL);
    expect_ok(fx, "sensors", 2, "iot.sensor.other", NULL);
    expect_status(fx, "gateways/gw9/status", ROUTE_NO_MATCH, -1,
                  "no route matches");
    expect_status(fx, "other", ROUTE_NO_MATCH, -1, "no route matches");
    expect_status(fx, "Sensors/eu/temp/d", ROUTE_NO_MATCH, -1,
                  "no route matches");
    /* The key may be anything, even bytes a topic could not hold. */
    expect_ok(fx, "sensors/eu/temp/d\xc3\xbc 1", 0, "iot.sensor.eu.temp",
              "d\xc3\xbc 1");
    unload(fx);
}

static void test_wildcards(void **state)
{
    (void)state;
    struct fx *fx =
        load("  - match: a/+/{x}\n    topic: t.{x}\n    key: k-{x}-k\n"
             "  - match: \"#\"\n    topic: all\n");
    expect_ok(fx, "a/b/c", 0, "t.c", "k-c-k");
    /* Empty levels are levels: "+" and captures match them. */
    expect_ok(fx, "a//c", 0, "t.c", "k-c-k");
    expect_ok(fx, "a/b/", 0, "t.", "k--k");
    expect_ok(fx, "x/y", 1, "all", NULL);
    /* '#' and '+' first do not match topics that start with '$'. */
    expect_status(fx, "$SYS/broker/load", ROUTE_NO_MATCH, -1,
                  "no route matches");
    unload(fx);

    fx = load("  - match: $SYS/broker/#\n    topic: sys\n  - match: +/x\n    "
              "topic: px\n");
    expect_ok(fx, "$SYS/broker/publish/messages/dropped", 0, "sys", NULL);
    expect_status(fx, "$foo/x", ROUTE_NO_MATCH, -1, "no route matches");
    expect_ok(fx, "foo/x", 1, "px", NULL);
    unload(fx);
}

static void test_empty_capture(void **state)
{
    (void)state;
    /* A name made only of captures can come out empty, "." or "..". */
    struct fx *fx = load("  - match: a/{x}\n    topic: \"{x}\"\n");
    expect_status(fx, "a/", ROUTE_BAD_TOPIC, 0, "not a legal name");
    expect_status(fx, "a/..", ROUTE_BAD_TOPIC, 0,
                  "\"..\", which is not a legal name");
    expect_ok(fx, "a/x.y", 0, "x.y", NULL);
    unload(fx);
}

static void test_illegal_captures(void **state)
{
    (void)state;
    struct fx *fx = load(example);
    expect_status(
        fx, "sensors/eu west/temp/d1", ROUTE_BAD_TOPIC, 0,
        "capture {region} = \"eu west\" puts ' ' into the Kafka topic");
    expect_status(
        fx, "sensors/eu/t\xc3\xbcr/d1", ROUTE_BAD_TOPIC, 0,
        "capture {type} = \"t\xc3\xbcr\" puts ? (a non-ASCII character)");
    expect_status(fx, "sensors/eu/a:b/d1", ROUTE_BAD_TOPIC, 0, "puts ':'");
    /* A bad capture that only goes into the key is fine. */
    expect_ok(fx, "gateways/g w/events/x", 1, "iot.gateway.events", "g w");
    unload(fx);
}

static void test_too_long(void **state)
{
    char topic[600], want[300];
    (void)state;
    struct fx *fx =
        load("  - match: a/{x}\n    topic: p.{x}\n    key: \"{x}{x}{x}{x}\"\n");
    memset(want, 'z', 247);
    want[247] = '\0';
    snprintf(topic, sizeof topic, "a/%s", want); /* p. + 247 = 249: the limit */
    memmove(want + 2, want, 248);
    memcpy(want, "p.", 2);
    struct route_result r;
    assert_int_equal(route_match(fx->t, topic, &r), ROUTE_OK);
    assert_string_equal(r.topic, want);
    assert_int_equal(strlen(r.topic), 249);
    assert_int_equal(r.key_len, 4 * 247);
    unload(fx);
}

static void test_too_long_limits(void **state)
{
    char topic[600], cap[300];
    (void)state;
    struct fx *fx =
        load("  - match: a/{x}\n    topic: p.{x}\n    key: \"{x}{x}{x}{x}\"\n");
    memset(cap, 'z', 248);
    cap[248] = '\0';
    snprintf(topic, sizeof topic, "a/%s", cap); /* p. + 248 = 250 > 249 */
    expect_status(fx, topic, ROUTE_TOO_LONG, 0,
                  "the Kafka topic would be longer than 249");
    cap[200] = '\0';
    snprintf(topic, sizeof topic, "a/%s", cap); /* key 800: fits */
    expect_status(fx, topic, ROUTE_OK, 0, "");
    unload(fx);
    fx = load(
        "  - match: a/{x}\n    topic: p\n    key: \"{x}{x}{x}{x}{x}{x}\"\n");
    expect_status(fx, topic, ROUTE_TOO_LONG, 0,
                  "the Kafka key would be longer than 1024");
    unload(fx);
}

static void expect_filters(const char *routes, const char *want)
{
    struct fx *fx = load(routes);
    const char **f;
    char got[512] = "";
    size_t n = route_table_filters(fx->t, &f);
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s",
                 i ? " " : "", f[i]);
    assert_string_equal(got, want);
    unload(fx);
}

#define RT(m) "  - match: " m "\n    topic: t\n"

static void test_filters(void **state)
{
    (void)state;
    expect_filters(example, "gateways/+/events/# sensors/#");
    expect_filters(RT("a/b") RT("a/b") RT("c"), "a/b c");
    expect_filters(RT("a/{x}") RT("a/+"), "a/+");
    expect_filters(RT("a/b") RT("a/+") RT("a/#"), "a/#");
    expect_filters(RT("a") RT("a/#"), "a/#");   /* a/# covers its parent */
    expect_filters(RT("a/+") RT("a"), "a/+ a"); /* a/+ does not */
    expect_filters(RT("+/b") RT("a/+"), "+/b a/+");
    expect_filters(RT("\"#\"") RT("a/b/c") RT("x/+/#"), "#");
    /* '#' does not cover $SYS topics; a literal $SYS filter stays. */
    expect_filters(RT("\"#\"") RT("$SYS/#"), "# $SYS/#");
    expect_filters(RT("+/#") RT("$SYS/x"), "+/# $SYS/x");
    expect_filters(RT("a/+/c") RT("a/b/+"), "a/+/c a/b/+");
}

static void test_kafka_names(void **state)
{
    char s[300];
    (void)state;
    assert_true(route_kafka_topic_ok("iot.sensor.eu-west_1"));
    assert_false(route_kafka_topic_ok(""));
    assert_false(route_kafka_topic_ok("."));
    assert_false(route_kafka_topic_ok(".."));
    assert_true(route_kafka_topic_ok("..."));
    assert_false(route_kafka_topic_ok("a/b"));
    assert_false(route_kafka_topic_ok("a b"));
    assert_false(route_kafka_topic_ok("\xc3\xbc"));
    memset(s, 'a', 249);
    s[249] = '\0';
    assert_true(route_kafka_topic_ok(s));
    s[249] = 'a';
    s[250] = '\0';
    assert_false(route_kafka_topic_ok(s));
}

#define G "gateway:\n  id: gw-1\n"

/* The config loads (the YAML is fine) but the route stage refuses it: the
 * error starts with "t.yaml:LINE:COL: " and contains msg. */
static void expect_error(const char *yaml, int line, int col, const char *msg)
{
    struct conf c;
    struct route_table *t = NULL;
    char err[1024], where[64];
    if (conf_parse(yaml, strlen(yaml), "t.yaml", &c, err, sizeof err))
        fail_msg("the loader refused:\n%s\n%s", yaml, err);
    int rc = route_table_new(&c, &t, err, sizeof err);
    conf_fini(&c);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL for:\n%s\ngot %d (%s)", yaml, rc, err);
    assert_null(t);
    snprintf(where, sizeof where, "t.yaml:%d:%d: ", line, col);
    if (strncmp(err, where, strlen(where)) || !strstr(err, msg))
        fail_msg("expected \"%s...%s\"\n     got \"%s\"", where, msg, err);
}

static void test_route_errors(void **state)
{
    (void)state;
    expect_error(
        G "routes:\n  - match: a/{x}\n    topic: t\n    key: \"{devce}\"\n", 6,
        10, "route 1 key template names {devce}, but match defines x");
    expect_error(
        G
        "routes:\n  - match: s/{region}/{type}/{device}\n    topic: t.{typ}\n",
        5, 12,
        "route 1 topic template names {typ}, but match defines region, type, "
        "device");
    expect_error(
        G "routes:\n  - match: a/b\n    topic: t.{x}\n", 5, 12,
        "route 1 topic template names {x}, but match defines no captures");
    expect_error(G "routes:\n  - match: a/{x}\n    topic: iot/sensor/{x}\n", 5,
                 12,
                 "route 1 topic template \"iot/sensor/{x}\" can only produce "
                 "illegal Kafka "
                 "topic names: '/' is not allowed");
    expect_error(G "routes:\n  - match: a\n    topic: \"t\xc3\xbc\"\n", 5, 12,
                 "non-ASCII characters are not allowed");
    expect_error(G "routes:\n  - match: a/#/b\n    topic: t\n", 4, 12,
                 "route 1 match \"a/#/b\" is not a valid MQTT filter: '#' must "
                 "be a whole "
                 "level and the last one");
    expect_error(G "routes:\n  - match: a/b#\n    topic: t\n", 4, 12,
                 "'#' must be a whole");
    expect_error(G "routes:\n  - match: a/+b\n    topic: t\n", 4, 12,
                 "is not a valid MQTT filter: '+' must be a whole level");
    expect_error(G "routes:\n  - match: a/x{y}\n    topic: t\n", 4, 12,
                 "a capture must be a whole level");
    expect_error(G "routes:\n  - match: a/{1x}\n    topic: t\n", 4, 12,
                 "capture \"{1x}\" is not a valid name");
    expect_error(G "routes:\n  - match: a/{x}/{x}\n    topic: t\n", 4, 12,
                 "route 1 match captures {x} twice");
    expect_error(G "routes:\n  - match: a/{x}\n    topic: t.{x\n", 5, 12,
                 "'{' is not closed");
    expect_error(G "routes:\n  - match: a/{x}\n    topic: t}\n", 5, 12,
                 "'}' without '{'");
    expect_error(G "routes:\n  - match: a\n    topic: ..\n", 5, 12,
                 "route 1 topic \"..\" is not a legal Kafka topic name");

    char y[1024], lit[300];
    memset(lit, 'a', 250);
    lit[250] = '\0';
    snprintf(y, sizeof y, G "routes:\n  - match: a/{x}\n    topic: %s{x}\n",
             lit);
    expect_error(
        y, 5, 12,
        "route 1 topic template is 250 characters long before any capture "
        "(at most 249)");
}

static void test_bad_conf(void **state)
{
    /* A hand-built conf the loader never checked: refused, not crashed. */
    struct conf_route r = {.match = "a/{x}",
                           .topic = "t.{y}",
                           .line = 3,
                           .col = 5,
                           .at_topic = {4, 12}};
    struct conf c = {0};
    struct route_table *t = (struct route_table *)&c;
    char err[256];
    (void)state;
    c.path = (char *)"h.yaml";
    c.routes = &r;
    c.nroutes = 1;
    assert_int_equal(route_table_new(&c, &t, err, sizeof err), -EINVAL);
    assert_null(t);
    assert_non_null(
        strstr(err, "h.yaml:4:12: route 1 topic template names {y}, but match "
                    "defines x"));
    route_table_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captures),
        cmocka_unit_test(test_wildcards),
        cmocka_unit_test(test_empty_capture),
        cmocka_unit_test(test_illegal_captures),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_too_long_limits),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_kafka_names),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_bad_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
