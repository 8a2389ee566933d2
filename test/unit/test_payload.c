/*
 * test_payload.c — the decode stage with runtime schemas: the JSON of
 * runtime-loaded types compared byte for byte with protobuf's reference
 * printer (fixtures/runtime_json_cases.txt, and json_cases.txt for the
 * built-in types, now loaded from the embedded descriptor set); a string
 * with a NUL whole in JSON and keys and refused in a topic; unknown fields
 * counted and flagged; JSON payloads; Confluent framing; Sparkplug B
 * births, aliases, rebirth requests and kept state; schemas: errors at
 * file:line:col.
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
#include "bridge/pb.h"
#include "bridge/pb_json.h"
#include "bridge/schemas.h"
#include "bridge/spb.h"

#ifndef FIXTURES
#define FIXTURES "test/unit/fixtures"
#endif
#ifndef SCHEMA_BUILD
#define SCHEMA_BUILD "build/schema"
#endif

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

/* The built-in set plus the test schemas, strings as bytes, linked. */
static struct pb_schema *registry(void)
{
    struct pb_schema *s;
    char err[512];
    struct conf c = {0};
    char *files[] = {SCHEMA_BUILD "/json.desc", SCHEMA_BUILD "/alltypes.desc"};
    struct conf_mark marks[2] = {{1, 1}, {2, 1}};
    c.path = "test.yaml";
    c.schemas = files;
    c.at_schemas = marks;
    c.nschemas = 2;
    int rc = schemas_load(&c, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void check_file(struct pb_schema *s, const char *path)
{
    FILE *f = fopen(path, "r");
    static char line[1 << 16];
    static unsigned char wire[1 << 15];
    struct pb *dc;
    int cases = 0;
    assert_non_null(f);
    assert_int_equal(pb_new(&dc), 0);
    pb_set_schema(dc, s);
    while (fgets(line, sizeof line, f)) {
        char *name, *type, *hex, *want, *save;
        const ProtobufCMessage *m;
        const void *js;
        size_t jl;
        char why[256];
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        name = strtok_r(line, "\t", &save);
        type = strtok_r(NULL, "\t", &save);
        hex = strtok_r(NULL, "\t", &save);
        want = strtok_r(NULL, "\t", &save);
        if (!want) { /* an empty message: no hex */
            want = hex;
            hex = "";
        }
        const ProtobufCMessageDescriptor *d = pb_schema_message(s, type);
        assert_non_null(d);
        size_t n = unhex(hex, wire, sizeof wire);
        int rc = pb_unpack(dc, d, wire, n, &m, why, sizeof why);
        if (rc == 0)
            rc = pb_json(dc, m, &js, &jl, why, sizeof why);
        if (!strcmp(want, "ERROR")) {
            if (rc == 0)
                fail_msg("%s: want an error, got %.*s", name, (int)jl,
                         (const char *)js);
        } else if (rc || jl != strlen(want) || memcmp(js, want, jl)) {
            fail_msg("%s:\n want %s\n got  %.*s", name, want,
                     rc ? (int)strlen(why) : (int)jl,
                     rc ? why : (const char *)js);
        }
        cases++;
    }
    fclose(f);
    pb_free(dc);
    assert_true(cases > 10);
}

static void runtime_json(void **state)
{
    struct pb_schema *s = registry();
    (void)state;
    check_file(s, FIXTURES "/runtime_json_cases.txt");
    check_file(s, FIXTURES "/json_cases.txt"); /* built in, byte-identical */
    pb_schema_free(s);
}

/* ---- through convert: the wiring of route + decode ----------------------- */

struct got {
    int n;
    char topic[256], key[256], value[4096], hdr[2][64];
    size_t key_len, len;
};

static int grab(void *ud, const struct convert_rec *r)
{
    struct got *g = ud;
    g->n++;
    snprintf(g->topic, sizeof g->topic, "%s", r->topic);
    memcpy(g->key, r->key ? r->key : "", r->key_len);
    g->key_len = r->key_len;
    memcpy(g->value, r->value, r->len < sizeof g->value ? r->len : 0);
    g->len = r->len;
    for (size_t i = 0; i < r->nhdrs && i < 2; i++)
        snprintf(g->hdr[i], sizeof g->hdr[i], "%s=%s", r->hdrs[i].name,
                 r->hdrs[i].value);
    return 0;
}

struct fx {
    struct conf c;
    struct pb_schema *s;
    struct convert *cv;
};

static void build(struct fx *x, const char *yaml)
{
    char err[1024];
    struct convert_opts o = {.max_payload = 1 << 20};
    int rc = conf_parse(yaml, strlen(yaml), "t.yaml", &x->c, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    if ((rc = schemas_load(&x->c, &x->s, err, sizeof err)) == 0) {
        o.schemas = x->s;
        rc = convert_new(&x->c, &o, &x->cv, err, sizeof err);
    }
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

static void unbuild(struct fx *x)
{
    convert_free(x->cv);
    pb_schema_free(x->s);
    conf_fini(&x->c);
}

static int convert(struct fx *x, const char *topic, const void *p, size_t len,
                   struct got *g, struct convert_dead *d)
{
    struct convert_msg m = {topic, p, len, 1, 1700000000000, "gw"};
    memset(g, 0, sizeof *g);
    return convert_message(x->cv, &m, grab, g, d);
}

#define HEAD                                                                   \
    "gateway: {id: gw}\nschemas: [\"" SCHEMA_BUILD "/json.desc\"]\nroutes:\n"

static void nul_in_strings(void **state)
{
    struct fx x = {0};
    struct got g;
    struct convert_dead d;
    /* acme.meter.v2.Wkt {note: "a\0b", device {serial: "x\0y"}} */
    static const unsigned char wire[] = {0xaa, 0x01, 0x03, 'a',  0,    'b',
                                         0xc2, 0x01, 0x08, 0x0a, 0x03, 'x',
                                         0,    'y',  0xd8, 0x01, 0x01};
    (void)state;
    build(&x, HEAD "  - {match: w/#, topic: t, payload: acme.meter.v2.Wkt,\n"
                   "     key: \"{payload.device.serial}\", format: json}\n"
                   "  - {match: v/#, topic: \"t.{payload.note}\",\n"
                   "     payload: acme.meter.v2.Wkt}\n");
    convert(&x, "w/1", wire, sizeof wire, &g, &d);
    assert_int_equal(d.kind, CONVERT_OK);
    assert_int_equal(g.key_len, 3);
    assert_memory_equal(g.key, "x\0y", 3);
    assert_non_null(strstr(g.value, "\"note\":\"a\\u0000b\""));
    convert(&x, "v/1", wire, sizeof wire, &g, &d);
    assert_int_equal(d.kind, CONVERT_BAD_TOPIC);
    assert_non_null(strstr(d.why, "payload field {payload.note}"));
    unbuild(&x);
}

/* Custom options (extends of google.protobuf.*Options, at the top and
 * nested) are accepted and ignored; the annotated type works. */
static void custom_options(void **state)
{
    struct pb_schema *s = registry();
    struct pb *dc;
    const ProtobufCMessage *m;
    const void *js;
    size_t jl;
    char why[256];
    static const unsigned char wire[] = {0x0a, 0x09, 0x09, 0,    0,    0,   0,
                                         0,    0,    0xf8, 0x3f, 0x11, 0,   0,
                                         0,    0,    0,    0,    0x00, 0x40};
    (void)state;
    const ProtobufCMessageDescriptor *d =
        pb_schema_message(s, "acme.meter.v2.Annotated");
    assert_non_null(d);
    assert_int_equal(pb_new(&dc), 0);
    assert_int_equal(pb_unpack(dc, d, wire, sizeof wire, &m, why, sizeof why),
                     0);
    assert_int_equal(pb_json(dc, m, &js, &jl, why, sizeof why), 0);
    assert_int_equal(jl, strlen("{\"inner\":{\"watts\":1.5},\"volts\":2.0}"));
    assert_memory_equal(js, "{\"inner\":{\"watts\":1.5},\"volts\":2.0}", jl);
    pb_free(dc);
    pb_schema_free(s);
}

static void unknown_fields(void **state)
{
    struct fx x = {0};
    struct got g;
    struct convert_dead d;
    struct convert_effects e;
    /* SensorReading {device_id: "d"} + field 99 (varint) + field 98 */
    static const unsigned char wire[] = {0x0a, 0x01, 'd',  0x98, 0x06,
                                         0x01, 0x90, 0x06, 0x02};
    (void)state;
    build(&x, HEAD "  - {match: r/#, topic: t, payload: "
                   "iot.telemetry.v1.SensorReading, format: json}\n");
    convert(&x, "r/1", wire, sizeof wire, &g, &d);
    assert_int_equal(d.kind, CONVERT_OK);
    assert_string_equal(g.hdr[0], "m2k.unknown_fields=2");
    convert_effects(x.cv, &e);
    assert_int_equal(e.unknown_fields, 2);
    unbuild(&x);
}

static void json_payloads(void **state)
{
    struct fx x = {0};
    struct got g;
    struct convert_dead d;
    static const char doc[] = "{ \"meta\": {\"id\": \"dev\\u0000 7\", "
                              "\"n\": 12}, \"v\": [1.50, 2e2, true, null] }";
    (void)state;
    build(&x, HEAD "  - {match: j/#, topic: \"iot.{payload.meta.n}\", "
                   "payload: json, key: \"{payload.meta.id}\", format: json}\n"
                   "  - {match: r/#, topic: raw, payload: json}\n");
    convert(&x, "j/1", doc, sizeof doc - 1, &g, &d);
    assert_int_equal(d.kind, CONVERT_OK);
    assert_string_equal(g.topic, "iot.12");
    assert_int_equal(g.key_len, 6);
    assert_memory_equal(g.key, "dev\0 7", 6);
    assert_int_equal(g.len,
                     strlen("{\"meta\":{\"id\":\"dev\\u0000 7\",\"n\":12},"
                            "\"v\":[1.5,200.0,true,null]}"));
    assert_memory_equal(g.value,
                        "{\"meta\":{\"id\":\"dev\\u0000 7\",\"n\":12},"
                        "\"v\":[1.5,200.0,true,null]}",
                        g.len);
    convert(&x, "r/1", doc, sizeof doc - 1, &g, &d); /* raw: as it came */
    assert_int_equal(g.len, sizeof doc - 1);
    convert(&x, "j/1", "{\"meta\": {\"id\": 1}", 18, &g, &d);
    assert_int_equal(d.kind, CONVERT_BAD_PAYLOAD);
    assert_non_null(strstr(d.why, "invalid JSON at line 1"));
    convert(&x, "j/1", "{\"a\":1,\"a\":2}", 13, &g, &d);
    assert_int_equal(d.kind, CONVERT_BAD_PAYLOAD);
    convert(&x, "j/1", "{\"meta\":{}}", 11, &g, &d);
    assert_int_equal(d.kind, CONVERT_MISSING_FIELD);
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    convert(&x, "j/1", deep, 200, &g, &d);
    assert_int_equal(d.kind, CONVERT_BAD_PAYLOAD);
    assert_non_null(strstr(d.why, "nested deeper than 64"));
    unbuild(&x);
}

static void confluent_framing(void **state)
{
    struct fx x = {0};
    struct got g;
    struct convert_dead d;
    static const unsigned char wire[] = {0x0a, 0x01, 'd'};
    (void)state;
    build(&x, HEAD "  - {match: a/#, topic: t, payload: "
                   "iot.telemetry.v1.SensorReading,\n"
                   "     format: confluent, schema_id: 258}\n"
                   "  - {match: b/#, topic: t, payload: "
                   "acme.meter.v2.Reading.Channel,\n"
                   "     format: confluent, schema_id: 7}\n"
                   "  - {match: c/#, topic: t, payload: acme.meter.v2.Wkt,\n"
                   "     format: confluent, schema_id: 7, message_index: "
                   "\"3,0\"}\n");
    convert(&x, "a/1", wire, 3, &g, &d);
    assert_int_equal(g.len, 9);
    assert_memory_equal(g.value,
                        "\0\0\0\x01\x02\0\x0a\x01"
                        "d",
                        9);
    /* Reading is the file's first message, Channel its first nested one:
     * [0, 0] is count 2, then 0, 0, zig-zag: 04 00 00 */
    convert(&x, "b/1", "", 0, &g, &d);
    convert(&x, "b/1", "\x0a\x01x", 3, &g, &d);
    assert_memory_equal(g.value, "\0\0\0\0\x07\x04\x00\x00\x0a\x01x", 11);
    convert(&x, "c/1", "", 0, &g, &d);
    convert(&x, "c/1", "\xba\x01\x01x", 4, &g, &d);
    assert_memory_equal(g.value, "\0\0\0\0\x07\x04\x06\x00", 8);
    unbuild(&x);
    memset(&x, 0, sizeof x);
    char err[512];
    const char *bad = HEAD "  - {match: c/#, topic: t, payload: "
                           "acme.meter.v2.Wkt,\n"
                           "     format: confluent}\n";
    assert_int_equal(
        conf_parse(bad, strlen(bad), "t.yaml", &x.c, err, sizeof err), 0);
    assert_int_equal(schemas_load(&x.c, &x.s, err, sizeof err), 0);
    struct convert_opts o = {.max_payload = 1 << 20, .schemas = x.s};
    assert_int_equal(convert_new(&x.c, &o, &x.cv, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "t.yaml:5:14: route 1: format confluent "
                                "needs schema_id"));
    pb_schema_free(x.s);
    conf_fini(&x.c);
}

static void schema_errors(void **state)
{
    struct conf c;
    struct pb_schema *s;
    struct convert *cv;
    char err[1024];
    struct convert_opts o = {.max_payload = 1 << 20};
    (void)state;
    const char *y = "gateway: {id: gw}\nschemas:\n  - /nonexistent/*.desc\n"
                    "routes:\n  - {match: a, topic: t}\n";
    assert_int_equal(conf_parse(y, strlen(y), "t.yaml", &c, err, sizeof err),
                     0);
    assert_int_equal(schemas_load(&c, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "t.yaml:3:5: schemas[1]: \"/nonexistent/"
                                "*.desc\" matches no file"));
    conf_fini(&c);
    y = HEAD "  - {match: a, topic: t, payload: acme.meter.v2.Nope}\n";
    assert_int_equal(conf_parse(y, strlen(y), "t.yaml", &c, err, sizeof err),
                     0);
    assert_int_equal(schemas_load(&c, &s, err, sizeof err), 0);
    o.schemas = s;
    assert_int_equal(convert_new(&c, &o, &cv, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "t.yaml:4:35: route 1 payload: unknown "
                                "message type \"acme.meter.v2.Nope\""));
    conf_fini(&c);
    y = HEAD "  - {match: a, topic: t, payload: acme.meter.v2.Wkt, key: "
             "\"{payload.nope}\"}\n";
    assert_int_equal(conf_parse(y, strlen(y), "t.yaml", &c, err, sizeof err),
                     0);
    assert_int_equal(convert_new(&c, &o, &cv, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "acme.meter.v2.Wkt has no field \"nope\""));
    conf_fini(&c);
    pb_schema_free(s);
}

/* ---- Sparkplug ----------------------------------------------------------- */

/* A Payload: timestamp 1, seq, metrics with (name, alias, datatype,
 * double value). name NULL: alias only. */
static size_t spb_payload(unsigned char *o, int seq, const char *name,
                          unsigned alias, double v)
{
    unsigned char m[128];
    size_t n = 0, k = 0;
    if (name) {
        m[k++] = 0x0a;
        m[k++] = (unsigned char)strlen(name);
        memcpy(m + k, name, strlen(name));
        k += strlen(name);
        m[k++] = 0x20; /* datatype */
        m[k++] = 10;   /* Double */
    }
    m[k++] = 0x10; /* alias */
    m[k++] = (unsigned char)alias;
    m[k++] = 0x69; /* double_value, fixed64 */
    memcpy(m + k, &v, 8);
    k += 8;
    o[n++] = 0x08;
    o[n++] = 0x01;
    o[n++] = 0x12;
    o[n++] = (unsigned char)k;
    memcpy(o + n, m, k);
    n += k;
    o[n++] = 0x18;
    o[n++] = (unsigned char)seq;
    return n;
}

static void sparkplug(void **state)
{
    struct fx x = {0}, y = {0};
    struct got g;
    struct convert_dead d;
    struct convert_effects e;
    unsigned char p[256];
    size_t n;
    (void)state;
    build(&x, HEAD "  - {match: \"spBv1.0/#\", topic: \"sp.{payload.group}\",\n"
                   "     payload: sparkplug, format: json, key: "
                   "\"{payload.edge}\"}\n");
    /* DATA before any BIRTH: forwarded unresolved, a rebirth asked */
    n = spb_payload(p, 1, NULL, 5, 21.5);
    convert(&x, "spBv1.0/G1/NDATA/E1", p, n, &g, &d);
    assert_int_equal(d.kind, CONVERT_OK);
    assert_string_equal(g.topic, "sp.G1");
    assert_string_equal(g.hdr[0], "m2k.sparkplug.unresolved=1");
    assert_non_null(strstr(g.value, "\"name\":null,\"alias\":5"));
    convert_effects(x.cv, &e);
    assert_string_equal(e.publish_topic, "spBv1.0/G1/NCMD/E1");
    assert_non_null(
        memmem(e.publish, e.publish_len, "Node Control/Rebirth", 20));
    /* asked once per interval */
    convert(&x, "spBv1.0/G1/NDATA/E1", p, n, &g, &d);
    convert_effects(x.cv, &e);
    assert_null(e.publish_topic);
    /* the BIRTH names alias 5; DATA then resolves it */
    n = spb_payload(p, 0, "Temp", 5, 20.0);
    convert(&x, "spBv1.0/G1/NBIRTH/E1", p, n, &g, &d);
    convert_effects(x.cv, &e);
    assert_string_equal(e.state_key, "spb/G1/E1");
    n = spb_payload(p, 1, NULL, 5, 22.25);
    convert(&x, "spBv1.0/G1/NDATA/E1", p, n, &g, &d);
    assert_string_equal(g.value,
                        "{\"topic\":{\"namespace\":\"spBv1.0\",\"type\":"
                        "\"NDATA\",\"group\":\"G1\",\"edge\":\"E1\"},"
                        "\"timestamp\":1,\"seq\":1,\"metrics\":[{\"name\":"
                        "\"Temp\",\"alias\":5,\"datatype\":\"Double\","
                        "\"value\":22.25}]}");
    assert_string_equal(g.hdr[0], "");
    n = spb_payload(p, 3, NULL, 5, 1.0); /* seq 2 lost */
    convert(&x, "spBv1.0/G1/NDATA/E1", p, n, &g, &d);
    convert_effects(x.cv, &e);
    assert_int_equal(e.seq_gap, 1);
    /* the kept state resolves in a new instance (a restart) */
    n = spb_payload(p, 0, "Temp", 5, 20.0);
    convert(&x, "spBv1.0/G1/NBIRTH/E1", p, n, &g, &d);
    convert_effects(x.cv, &e);
    build(&y, HEAD "  - {match: \"spBv1.0/#\", topic: sp, payload: "
                   "sparkplug, format: json, split: metrics}\n");
    assert_int_equal(convert_restore(y.cv, e.state_key, e.state, e.state_len),
                     0);
    n = spb_payload(p, 1, NULL, 5, 2.0);
    convert(&y, "spBv1.0/G1/NDATA/E1", p, n, &g, &d);
    assert_non_null(strstr(g.value, "\"metric\":{\"name\":\"Temp\""));
    /* STATE, a bad topic */
    convert(&y, "spBv1.0/STATE/host1", "{\"online\":true}", 15, &g, &d);
    assert_non_null(strstr(g.value, "\"state\":{\"online\":true}"));
    convert(&y, "spBv1.0/G1/NOPE/E1", p, n, &g, &d);
    assert_int_equal(d.kind, CONVERT_BAD_PAYLOAD);
    unbuild(&x);
    unbuild(&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runtime_json),   cmocka_unit_test(custom_options),
        cmocka_unit_test(nul_in_strings), cmocka_unit_test(unknown_fields),
        cmocka_unit_test(json_payloads),  cmocka_unit_test(confluent_framing),
        cmocka_unit_test(schema_errors),  cmocka_unit_test(sparkplug),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
