/*
 * test_pb.c — the protobuf toolkit: JSON compared with protobuf's reference
 * printer (fixtures/json_cases.txt, from make_json_fixtures.py), pack and
 * unpack round trips, envelopes, split elements, template field text and
 * the checks of field paths, bad payloads, a batch of thousands.
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

#include "alltypes.pb-c.h"
#include "bridge/pb.h"
#include "bridge/pb_json.h"
#include "envelope.pb-c.h"
#include "telemetry.pb-c.h"

#ifndef FIXTURES
#define FIXTURES "test/unit/fixtures"
#endif

typedef Iot__Telemetry__V1__SensorReading Reading;
typedef Iot__Telemetry__V1__ReadingBatch Batch;
typedef Iot__Bridge__V1__Envelope Envelope;

static const ProtobufCMessageDescriptor *type_of(const char *name)
{
    if (!strcmp(name, "m2k.test.v1.AllTypes"))
        return &m2k__test__v1__all_types__descriptor;
    return pb_type(name);
}

static size_t unhex(const char *h, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; h[0] && h[1] && n < cap; h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        out[n++] = (unsigned char)v;
    }
    return n;
}

static void json_fixtures(void **state)
{
    (void)state;
    FILE *f = fopen(FIXTURES "/json_cases.txt", "r");
    struct pb *dc;
    char line[16384], why[256];
    unsigned char wire[4096];
    int cases = 0;
    assert_non_null(f);
    assert_int_equal(pb_new(&dc), 0);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *name = strtok(line, "\t"), *type = strtok(NULL, "\t");
        char *hex = strtok(NULL, "\t"), *want = strtok(NULL, "\t");
        if (want == NULL) { /* an empty message: no hex column */
            want = hex;
            hex = (char *)"";
        }
        assert_non_null(type);
        const ProtobufCMessageDescriptor *d = type_of(type);
        if (!d)
            fail_msg("%s: unknown type %s", name, type);
        size_t n = unhex(hex, wire, sizeof wire);
        const ProtobufCMessage *m;
        const void *js;
        size_t jl;
        if (pb_unpack(dc, d, wire, n, &m, why, sizeof why))
            fail_msg("%s: %s", name, why);
        if (pb_json(dc, m, &js, &jl, why, sizeof why))
            fail_msg("%s: %s", name, why);
        if (jl != strlen(want) || memcmp(js, want, jl))
            fail_msg("%s:\n  got  %.*s\n  want %s", name, (int)jl,
                     (const char *)js, want);

        /* round trip: pack what was decoded, decode it again, same JSON */
        const void *packed;
        size_t pl;
        char first[16384];
        memcpy(first, js, jl);
        assert_int_equal(pb_pack(dc, m, &packed, &pl), 0);
        unsigned char copy[4096];
        memcpy(copy, packed, pl);
        if (pb_unpack(dc, d, copy, pl, &m, why, sizeof why))
            fail_msg("%s: repacked: %s", name, why);
        assert_int_equal(pb_json(dc, m, &js, &jl, why, sizeof why), 0);
        if (memcmp(js, first, jl))
            fail_msg("%s: round trip changed the JSON: %.*s", name, (int)jl,
                     (const char *)js);
        cases++;
    }
    fclose(f);
    pb_free(dc);
    assert_true(cases >= 25);
}

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

static void bad_payloads(void **state)
{
    (void)state;
    struct pb *dc;
    const ProtobufCMessage *m;
    char why[256];
    unsigned char buf[256];
    const ProtobufCMessageDescriptor *d =
        pb_type("iot.telemetry.v1.SensorReading");
    assert_non_null(d);
    assert_int_equal(pb_new(&dc), 0);
    /* truncated: a length prefix longer than what follows */
    size_t n = pack_reading(buf, "dev-1", 1, 1.0);
    assert_int_equal(pb_unpack(dc, d, buf, n - 3, &m, why, sizeof why),
                     -EINVAL);
    assert_non_null(
        strstr(why, "is not a valid iot.telemetry.v1.SensorReading"));
    /* text is not protobuf */
    assert_int_equal(pb_unpack(dc, d, "{\"a\":1}", 7, &m, why, sizeof why),
                     -EINVAL);
    /* field 2 (an int64) sent as a length-delimited string: wrong wire type */
    static const unsigned char wt[] = {0x12, 0x01, 'x'};
    assert_int_equal(pb_unpack(dc, d, wt, sizeof wt, &m, why, sizeof why),
                     -EINVAL);
    /* unknown fields are kept, not an error */
    static const unsigned char unk[] = {0x0a, 0x01, 'd', 0xf8, 0x07, 0x05};
    assert_int_equal(pb_unpack(dc, d, unk, sizeof unk, &m, why, sizeof why), 0);
    const void *p;
    size_t pl;
    assert_int_equal(pb_pack(dc, m, &p, &pl), 0);
    assert_int_equal(pl, sizeof unk);
    /* a string that is not UTF-8 fails JSON, with the field's name */
    static const unsigned char bad8[] = {0x0a, 0x02, 0xc3, 0x28};
    assert_int_equal(pb_unpack(dc, d, bad8, sizeof bad8, &m, why, sizeof why),
                     0);
    assert_int_equal(pb_json(dc, m, &p, &pl, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "device_id"));
    char t[64];
    size_t tl;
    assert_int_equal(pb_field_text(m, "device_id", 9, t, sizeof t, &tl),
                     -EILSEQ);
    /* a batch of many empty readings costs arena, not a crash: 2 bytes on
     * the wire become a whole struct; past the cap it is refused */
    size_t big = 4u << 20;
    unsigned char *many = malloc(big + 16);
    assert_non_null(many);
    const ProtobufCMessageDescriptor *bd =
        pb_type("iot.telemetry.v1.ReadingBatch");
    for (size_t i = 0; i < big; i += 2) {
        many[i] = 0x12;
        many[i + 1] = 0x00;
    }
    assert_int_equal(pb_unpack(dc, bd, many, big, &m, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "decodes to more than"));
    free(many);
    /* and the decoder still works afterwards */
    assert_int_equal(pb_unpack(dc, d, buf, n, &m, why, sizeof why), 0);
    pb_free(dc);
}

static void field_text(void **state)
{
    (void)state;
    struct pb *dc;
    const ProtobufCMessage *m;
    char why[256], t[64];
    size_t tl;
    unsigned char buf[256];
    const ProtobufCMessageDescriptor *d =
        pb_type("iot.telemetry.v1.SensorReading");
    assert_int_equal(pb_new(&dc), 0);
    size_t n = pack_reading(buf, "dev-9", 42, 20.5);
    assert_int_equal(pb_unpack(dc, d, buf, n, &m, why, sizeof why), 0);
#define TEXT(path, want)                                                       \
    do {                                                                       \
        assert_int_equal(                                                      \
            pb_field_text(m, path, strlen(path), t, sizeof t, &tl), 0);        \
        assert_int_equal(tl, strlen(want));                                    \
        assert_memory_equal(t, want, tl);                                      \
    } while (0)
    TEXT("device_id", "dev-9");
    TEXT("seq", "42");
    TEXT("value", "20.5");
    TEXT("timestamp_ms", "1700000000000");
    assert_int_equal(pb_field_text(m, "unit", 4, t, sizeof t, &tl), -ENOENT);
    assert_int_equal(pb_field_text(m, "nope", 4, t, sizeof t, &tl), -EINVAL);
    assert_int_equal(pb_field_text(m, "device_id", 9, t, 3, &tl), -ENOSPC);

    /* paths through messages, enums, oneofs */
    M2k__Test__V1__AllTypes a;
    M2k__Test__V1__Inner in;
    m2k__test__v1__all_types__init(&a);
    m2k__test__v1__inner__init(&in);
    in.name = (char *)"inner-name";
    a.color = M2K__TEST__V1__COLOR__GREEN;
    a.choice_case = M2K__TEST__V1__ALL_TYPES__CHOICE_C_NUM;
    a.c_num = 0;
    m = &a.base;
    assert_int_equal(pb_field_text(m, "inner.name", 10, t, sizeof t, &tl),
                     -ENOENT);
    a.inner = &in;
    TEXT("inner.name", "inner-name");
    TEXT("color", "GREEN");
    TEXT("c_num", "0");
    TEXT("flag", "false");
    assert_int_equal(pb_field_text(m, "c_text", 6, t, sizeof t, &tl), -ENOENT);

    /* what the config loader accepts in templates */
    const ProtobufCMessageDescriptor *ad =
        &m2k__test__v1__all_types__descriptor;
    assert_int_equal(pb_field_path_check(ad, "inner.n", 7, why, sizeof why), 0);
    assert_int_equal(pb_field_path_check(ad, "r_i32", 5, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "repeated"));
    assert_int_equal(pb_field_path_check(ad, "blob", 4, why, sizeof why),
                     -EINVAL);
    assert_int_equal(pb_field_path_check(ad, "inner", 5, why, sizeof why),
                     -EINVAL);
    assert_int_equal(pb_field_path_check(ad, "i32.x", 5, why, sizeof why),
                     -EINVAL);
    assert_int_equal(pb_field_path_check(ad, "nope", 4, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "has no field \"nope\""));
    assert_non_null(pb_split_field(ad, "r_inner", why, sizeof why));
    assert_null(pb_split_field(ad, "m_str", why, sizeof why));
    assert_non_null(strstr(why, "map"));
    assert_null(pb_split_field(ad, "r_i32", why, sizeof why));
    pb_free(dc);
}

static void envelope_and_elements(void **state)
{
    (void)state;
    struct pb *dc;
    const ProtobufCMessage *m;
    char why[256];
    unsigned char buf[1024];
    Reading rs[3], *rp[3];
    Batch b;
    iot__telemetry__v1__reading_batch__init(&b);
    for (int i = 0; i < 3; i++) {
        iot__telemetry__v1__sensor_reading__init(&rs[i]);
        rs[i].seq = (uint64_t)i + 1;
        rs[i].device_id = (char *)(i == 1 ? "" : "dev-b");
        rp[i] = &rs[i];
    }
    b.device_id = (char *)"dev-b";
    b.n_readings = 3;
    b.readings = rp;
    size_t n = iot__telemetry__v1__reading_batch__pack(&b, buf);
    const ProtobufCMessageDescriptor *bd =
        pb_type("iot.telemetry.v1.ReadingBatch");
    const ProtobufCFieldDescriptor *sf =
        pb_split_field(bd, "readings", why, sizeof why);
    assert_non_null(sf);
    assert_int_equal(pb_new(&dc), 0);
    assert_int_equal(pb_unpack(dc, bd, buf, n, &m, why, sizeof why), 0);
    const ProtobufCMessage *const *el;
    assert_int_equal(pb_elements(m, sf, &el), 3);
    for (size_t i = 0; i < 3; i++) {
        const void *p, *e;
        size_t pl, el_len;
        assert_int_equal(pb_pack(dc, el[i], &p, &pl), 0);
        Reading *r = iot__telemetry__v1__sensor_reading__unpack(NULL, pl, p);
        assert_non_null(r);
        assert_int_equal(r->seq, i + 1);
        iot__telemetry__v1__sensor_reading__free_unpacked(r, NULL);
        struct pb_envelope de = {.device_id = "dev-b",
                                 .gateway_id = "gw-1",
                                 .mqtt_topic = "s/t",
                                 .content_type = el[i]->descriptor->name,
                                 .arrival_ms = 1234,
                                 .qos = 1,
                                 .payload = p,
                                 .len = pl};
        assert_int_equal(pb_envelope(dc, &de, &e, &el_len), 0);
        Envelope *env = iot__bridge__v1__envelope__unpack(NULL, el_len, e);
        assert_non_null(env);
        assert_string_equal(env->device_id, "dev-b");
        assert_string_equal(env->gateway_id, "gw-1");
        assert_string_equal(env->mqtt_topic, "s/t");
        assert_string_equal(env->content_type,
                            "iot.telemetry.v1.SensorReading");
        assert_int_equal(env->arrival_ms, 1234);
        assert_int_equal(env->qos, 1);
        assert_int_equal(env->body_case,
                         IOT__BRIDGE__V1__ENVELOPE__BODY_PAYLOAD);
        assert_int_equal(env->payload.len, pl);
        r = iot__telemetry__v1__sensor_reading__unpack(NULL, env->payload.len,
                                                       env->payload.data);
        assert_non_null(r);
        assert_int_equal(r->seq, i + 1);
        iot__telemetry__v1__sensor_reading__free_unpacked(r, NULL);
        iot__bridge__v1__envelope__free_unpacked(env, NULL);
    }
    pb_free(dc);
}

/* A batch of thousands of readings fits the arena easily. Once, every
 * allocation after the first 64 KiB took a fresh 64 KiB chunk, so such a
 * batch was refused as "more than 32 MiB" (found by the fuzzer). */
static void big_batch_fits_arena(void **state)
{
    (void)state;
    enum { N = 3000 };
    Iot__Telemetry__V1__SensorReading *rs = calloc(N, sizeof *rs);
    Iot__Telemetry__V1__SensorReading **rp = calloc(N, sizeof *rp);
    assert_non_null(rs);
    assert_non_null(rp);
    for (int i = 0; i < N; i++) {
        iot__telemetry__v1__sensor_reading__init(&rs[i]);
        rs[i].device_id = (char *)"dev-1";
        rs[i].seq = (uint64_t)i + 1;
        rp[i] = &rs[i];
    }
    Iot__Telemetry__V1__ReadingBatch b =
        IOT__TELEMETRY__V1__READING_BATCH__INIT;
    b.device_id = (char *)"dev-1";
    b.n_readings = N;
    b.readings = rp;
    size_t len = iot__telemetry__v1__reading_batch__get_packed_size(&b);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    iot__telemetry__v1__reading_batch__pack(&b, buf);

    struct pb *dc;
    const ProtobufCMessage *m;
    char why[256] = "";
    assert_int_equal(pb_new(&dc), 0);
    int rc = pb_unpack(dc, &iot__telemetry__v1__reading_batch__descriptor, buf,
                       len, &m, why, sizeof why);
    if (rc)
        fprintf(stderr, "%s\n", why);
    assert_int_equal(rc, 0);
    const Iot__Telemetry__V1__ReadingBatch *got = (const void *)m;
    assert_int_equal(got->n_readings, N);
    assert_int_equal(got->readings[N - 1]->seq, N);
    pb_free(dc);
    free(buf);
    free(rp);
    free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_fixtures),
        cmocka_unit_test(bad_payloads),
        cmocka_unit_test(field_text),
        cmocka_unit_test(envelope_and_elements),
        cmocka_unit_test(big_batch_fits_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
