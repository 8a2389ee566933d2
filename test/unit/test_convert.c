/*
 * test_convert.c — the route and decode stages wired together (convert.c,
 * payload.c): keys and topics from payload fields, split batches, formats,
 * dead-letter kinds and reasons, and the config errors the stages report
 * at file:line:col.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bridge/conf.h"
#include "bridge/convert.h"
#include "envelope.pb-c.h"
#include "telemetry.pb-c.h"

typedef Iot__Telemetry__V1__SensorReading Reading;
typedef Iot__Telemetry__V1__ReadingBatch Batch;
typedef Iot__Bridge__V1__Envelope Envelope;

static size_t pack_reading(unsigned char *buf, const char *dev, uint64_t seq,
                           double v)
{
    Reading r;
    iot__telemetry__v1__sensor_reading__init(&r);
    r.device_id = (char *)dev;
    r.seq = seq;
    r.value = v;
    r.metric = (char *)"temperature";
    r.timestamp_ms = 1700000000000;
    return iot__telemetry__v1__sensor_reading__pack(&r, buf);
}

/* ---- the payload stage: routes + decode -------------------------------- */

struct got {
    int n;
    char topic[8][256], key[8][256], ctype[8][128];
    unsigned char value[8][1024];
    size_t len[8];
    int has_key[8];
};

static int collect(void *ud, const struct convert_rec *r)
{
    struct got *g = ud;
    if (g->n == 8)
        return -ENOSPC;
    snprintf(g->topic[g->n], 256, "%s", r->topic);
    snprintf(g->key[g->n], 256, "%.*s", (int)r->key_len, r->key ? r->key : "");
    snprintf(g->ctype[g->n], 128, "%s", r->content_type ? r->content_type : "");
    g->has_key[g->n] = r->has_key;
    memcpy(g->value[g->n], r->value, r->len < 1024 ? r->len : 1024);
    g->len[g->n] = r->len;
    g->n++;
    return 0;
}

struct stage {
    struct conf c;
    struct convert *cv;
};

static void stage_load(struct stage *s, const char *routes)
{
    char y[4096], err[512];
    snprintf(y, sizeof y, "gateway: {id: gw}\nroutes:\n%s", routes);
    if (conf_parse(y, strlen(y), "t.yaml", &s->c, err, sizeof err))
        fail_msg("conf: %s", err);
    struct convert_opts o = {.max_payload = 1 << 20};
    if (convert_new(&s->c, &o, &s->cv, err, sizeof err))
        fail_msg("convert: %s", err);
}

static void stage_free(struct stage *s)
{
    convert_free(s->cv);
    conf_fini(&s->c);
}

/* Converts one message: 0 when it became records, -EINVAL with *kind and
 * why when it is a dead letter. */
static int run(struct stage *s, const char *topic, const void *data, size_t len,
               struct got *g, enum convert_kind *kind, char *why, size_t whylen)
{
    struct convert_dead d;
    memset(g, 0, sizeof *g);
    struct convert_msg m = {.topic = topic,
                            .payload = data,
                            .len = len,
                            .qos = 1,
                            .arrival_ms = 99,
                            .gateway_id = "gw"};
    assert_int_equal(convert_message(s->cv, &m, collect, g, &d), 0);
    *kind = d.kind;
    snprintf(why, whylen, "%s", d.why);
    return d.kind == CONVERT_OK ? 0 : -EINVAL;
}

static void stage_keys_split_formats(void **state)
{
    (void)state;
    struct stage s;
    struct got g;
    enum convert_kind kind;
    char why[256];
    unsigned char buf[1024];
    stage_load(&s, "  - match: r/{region}/{device}\n"
                   "    topic: t.{region}.{payload.metric}\n"
                   "    payload: iot.telemetry.v1.SensorReading\n"
                   "    key: \"{payload.device_id}/{payload.seq}\"\n"
                   "    format: json\n"
                   "  - match: b/{device}\n"
                   "    topic: batches\n"
                   "    payload: iot.telemetry.v1.ReadingBatch\n"
                   "    split: readings\n"
                   "    key: \"{payload.device_id}\"\n"
                   "    format: envelope\n"
                   "  - match: raw/{device}\n"
                   "    topic: raw\n"
                   "    key: \"{device}\"\n"
                   "    format: envelope\n");
    assert_false(convert_decodes(s.cv, -1));
    size_t n = pack_reading(buf, "dev-3", 5, 1.5);
    assert_int_equal(run(&s, "r/eu/x", buf, n, &g, &kind, why, sizeof why), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.topic[0], "t.eu.temperature");
    assert_string_equal(g.key[0], "dev-3/5");
    assert_string_equal(
        g.ctype[0],
        "application/json; messageType=iot.telemetry.v1.SensorReading");
    assert_int_equal(
        g.len[0],
        strlen("{\"deviceId\":\"dev-3\",\"timestampMs\":\"1700000000000\","
               "\"metric\":\"temperature\",\"value\":1.5,\"seq\":\"5\"}"));

    /* a missing template field dead-letters, with the field named */
    Reading r;
    iot__telemetry__v1__sensor_reading__init(&r);
    r.device_id = (char *)"dev-4";
    n = iot__telemetry__v1__sensor_reading__pack(&r, buf);
    assert_int_equal(run(&s, "r/eu/x", buf, n, &g, &kind, why, sizeof why),
                     -EINVAL);
    assert_int_equal(kind, CONVERT_MISSING_FIELD);
    assert_non_null(strstr(why, "metric"));
    /* a field that puts an illegal character into the topic */
    r.metric = (char *)"temp/x";
    n = iot__telemetry__v1__sensor_reading__pack(&r, buf);
    assert_int_equal(run(&s, "r/eu/x", buf, n, &g, &kind, why, sizeof why),
                     -EINVAL);
    assert_int_equal(kind, CONVERT_BAD_TOPIC);
    /* not a SensorReading at all */
    assert_int_equal(
        run(&s, "r/eu/x", "\xff\xff", 2, &g, &kind, why, sizeof why), -EINVAL);
    assert_int_equal(kind, CONVERT_BAD_PAYLOAD);

    /* split: one record per reading, key from the reading or the batch */
    Reading rs[3], *rp[3];
    Batch b;
    iot__telemetry__v1__reading_batch__init(&b);
    for (int i = 0; i < 3; i++) {
        iot__telemetry__v1__sensor_reading__init(&rs[i]);
        rs[i].seq = (uint64_t)i + 1;
        rs[i].device_id = (char *)(i == 1 ? "" : "dev-x");
        rp[i] = &rs[i];
    }
    b.device_id = (char *)"dev-batch";
    b.n_readings = 3;
    b.readings = rp;
    n = iot__telemetry__v1__reading_batch__pack(&b, buf);
    assert_int_equal(run(&s, "b/d", buf, n, &g, &kind, why, sizeof why), 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.key[0], "dev-x");
    assert_string_equal(g.key[1], "dev-batch"); /* the reading has none */
    assert_string_equal(g.key[2], "dev-x");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(g.topic[i], "batches");
        assert_string_equal(g.ctype[i],
                            "application/x-protobuf; "
                            "messageType=iot.bridge.v1.Envelope; "
                            "payloadType=iot.telemetry.v1.SensorReading");
        Envelope *e =
            iot__bridge__v1__envelope__unpack(NULL, g.len[i], g.value[i]);
        assert_non_null(e);
        assert_string_equal(e->device_id, i == 1 ? "dev-batch" : "dev-x");
        assert_string_equal(e->mqtt_topic, "b/d");
        assert_string_equal(e->gateway_id, "gw");
        assert_int_equal(e->arrival_ms, 99);
        Reading *rr = iot__telemetry__v1__sensor_reading__unpack(
            NULL, e->payload.len, e->payload.data);
        assert_non_null(rr);
        assert_int_equal(rr->seq, (uint64_t)i + 1);
        iot__telemetry__v1__sensor_reading__free_unpacked(rr, NULL);
        iot__bridge__v1__envelope__free_unpacked(e, NULL);
    }
    /* an empty batch has nothing to split: dead letter, not silence */
    b.n_readings = 0;
    n = iot__telemetry__v1__reading_batch__pack(&b, buf);
    assert_int_equal(run(&s, "b/d", buf, n, &g, &kind, why, sizeof why),
                     -EINVAL);
    assert_int_equal(kind, CONVERT_BAD_PAYLOAD);
    assert_non_null(strstr(why, "readings"));

    /* raw payload in an envelope: bytes kept as they are */
    assert_int_equal(run(&s, "raw/d7", "hello", 5, &g, &kind, why, sizeof why),
                     0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.key[0], "d7");
    Envelope *e = iot__bridge__v1__envelope__unpack(NULL, g.len[0], g.value[0]);
    assert_non_null(e);
    assert_int_equal(e->payload.len, 5);
    assert_memory_equal(e->payload.data, "hello", 5);
    assert_string_equal(e->content_type, "");
    assert_string_equal(
        g.ctype[0],
        "application/x-protobuf; messageType=iot.bridge.v1.Envelope");
    iot__bridge__v1__envelope__free_unpacked(e, NULL);
    stage_free(&s);
}

static void conf_errors(void **state)
{
    (void)state;
    static const struct {
        const char *routes, *want;
    } bad[] = {
        {"  - {match: a, topic: t, payload: iot.Nope}\n",
         "unknown message type"},
        {"  - {match: a, topic: t, format: json}\n", "format json needs"},
        {"  - {match: a, topic: t, split: readings}\n", "split needs"},
        {"  - {match: a, topic: t, payload: iot.telemetry.v1.ReadingBatch, "
         "split: device_id}\n",
         "not a repeated message field"},
        {"  - {match: a, topic: t, key: \"{payload.seq}\"}\n", "payload"},
        {"  - {match: a, topic: t, payload: iot.telemetry.v1.SensorReading, "
         "key: \"{payload.nope}\"}\n",
         "has no field \"nope\""},
        {"  - {match: a, topic: t, payload: iot.telemetry.v1.SensorReading, "
         "key: \"{payload.labels}\"}\n",
         "repeated"},
        {"  - {match: a, topic: t, format: xml}\n",
         "expected one of raw | envelope | json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char y[1024], err[512];
        struct conf c;
        snprintf(y, sizeof y, "gateway: {id: gw}\nroutes:\n%s", bad[i].routes);
        struct convert *cv = NULL;
        struct convert_opts o = {.max_payload = 1 << 20};
        int rc = conf_parse(y, strlen(y), "t.yaml", &c, err, sizeof err);
        if (rc == 0) {
            rc = convert_new(&c, &o, &cv, err, sizeof err);
            convert_free(cv);
            conf_fini(&c);
        }
        if (rc == 0)
            fail_msg("accepted: %s", bad[i].routes);
        if (!strstr(err, bad[i].want) || strncmp(err, "t.yaml:3:", 9))
            fail_msg("%s: error \"%s\" lacks \"%s\"", bad[i].routes, err,
                     bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stage_keys_split_formats),
        cmocka_unit_test(conf_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
