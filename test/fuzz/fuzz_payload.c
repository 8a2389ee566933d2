/*
 * fuzz_payload.c — libFuzzer target for the decode stage as the daemon
 * runs it (convert_message): JSON payloads (jansson, templates, compact
 * output), Sparkplug B (topics, payloads, births, aliases, rebirth
 * requests, the JSON and the per-metric split) and a runtime-loaded
 * protobuf type full of well-known types (Any, Struct, Timestamp, ...) in
 * JSON and in Confluent's framing. The first byte picks the MQTT topic
 * (and so the route); the rest is the payload. The state the Sparkplug
 * path keeps carries over from input to input, as in the daemon, and what
 * it asks to keep must be read back by a fresh instance. Nothing may
 * crash, leak or read out of bounds; a record's JSON value must start
 * with '{' and end with '}'.
 *
 *   make fuzz
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/conf.h"
#include "bridge/convert.h"
#include "bridge/schemas.h"

#ifndef SCHEMA_DESC
#define SCHEMA_DESC "build/schema/json.desc"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char yaml[] =
    "gateway: {id: gw}\n"
    "schemas: [\"" SCHEMA_DESC "\"]\n"
    "routes:\n"
    "  - {match: j/#, topic: \"j.{payload.a.b}\", payload: json, key: "
    "\"{payload.k}\", format: json}\n"
    "  - {match: e/#, topic: e, payload: json, format: envelope}\n"
    "  - {match: \"spBv1.0/+/+/{edge}/#\", topic: \"s.{payload.group}\", "
    "payload: sparkplug, format: json, key: \"{payload.edge}\"}\n"
    "  - {match: \"spBv1.0/STATE/+\", topic: st, payload: sparkplug, format: "
    "json}\n"
    "  - {match: m/#, topic: m, payload: sparkplug, format: json, split: "
    "metrics, key: \"{payload.name}\"}\n"
    "  - {match: w/#, topic: w, payload: acme.meter.v2.Wkt, format: json, "
    "key: \"{payload.note}\"}\n"
    "  - {match: r/#, topic: r, payload: acme.meter.v2.Reading, format: "
    "json, key: \"{payload.device.serial}\"}\n"
    "  - {match: c/#, topic: c, payload: acme.meter.v2.Reading, format: "
    "confluent, schema_id: 9}\n"
    "  - {match: k/#, topic: k, payload: acme.meter.v2.Keys, format: json}\n";

static const char *const topics[] = {
    "j/1",
    "e/1",
    "spBv1.0/G/NBIRTH/E",
    "spBv1.0/G/NDATA/E",
    "spBv1.0/G/DBIRTH/E/D",
    "spBv1.0/G/DDATA/E/D",
    "spBv1.0/G/NDEATH/E",
    "spBv1.0/G/NCMD/E",
    "spBv1.0/STATE/h",
    "spBv1.0/G/BAD/E",
    "m/1",
    "w/1",
    "r/1",
    "c/1",
    "k/1",
    "spBv1.0/G/DDATA/E",
};
#define NTOPICS (sizeof topics / sizeof topics[0])

static int check(void *ud, const struct convert_rec *r)
{
    const unsigned char *v = r->value;
    (void)ud;
    if (r->content_type && !strncmp(r->content_type, "application/json", 16) &&
        (r->len < 2 || v[0] != '{' || v[r->len - 1] != '}'))
        abort();
    return 0;
}

static struct conf c;
static struct pb_schema *s;

static struct convert *make(void)
{
    struct convert *cv;
    char err[1024];
    struct convert_opts o = {.max_payload = 1 << 20, .schemas = s};
    if (convert_new(&c, &o, &cv, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return cv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct convert *cv, *fresh;
    static int64_t now = 1700000000000;
    char err[1024];
    if (!cv) {
        if (conf_parse(yaml, sizeof yaml - 1, "fuzz", &c, err, sizeof err) ||
            schemas_load(&c, &s, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
        cv = make();
        fresh = make();
    }
    if (size < 1)
        return 0;
    struct convert_msg m = {topics[data[0] % NTOPICS], data + 1, size - 1, 1,
                            now += 1000, "gw"};
    struct convert_dead d;
    struct convert_effects e;
    convert_message(cv, &m, check, NULL, &d);
    convert_effects(cv, &e);
    if (e.state_key && convert_restore(fresh, e.state_key, e.state,
                                       e.state_len) != 0)
        abort(); /* what one instance keeps another must read */
    if (e.publish_topic && (!e.publish_len || strncmp(e.publish_topic,
                                                      "spBv1.0/", 8)))
        abort();
    return 0;
}

#ifdef FUZZ_MAIN
int main(int argc, char **argv)
{
    static uint8_t buf[1 << 20];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    return 0;
}
#endif
