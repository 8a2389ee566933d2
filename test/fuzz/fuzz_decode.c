/*
 * fuzz_decode.c — libFuzzer target for the payload path: any bytes → decode
 * as one of the known message types (the first byte picks it) → JSON,
 * template field text, split elements packed alone, an Envelope around it.
 * Nothing may crash, leak or read out of bounds, and what decodes must
 * survive a round trip: packed again and decoded again, it prints the same
 * JSON; and the JSON is well-formed enough to start with '{' and end with '}'.
 *
 *   make fuzz          (both targets, FUZZ_SECONDS each, clang)
 *
 * Built with -DFUZZ_MAIN (any compiler) it is a plain program that runs
 * the files named on its command line through the same function.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alltypes.pb-c.h"
#include "bridge/pb.h"
#include "bridge/pb_json.h"
#include "telemetry.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *pick(uint8_t b)
{
    static const char *const names[] = {"iot.telemetry.v1.SensorReading",
                                        "iot.telemetry.v1.ReadingBatch",
                                        "iot.bridge.v1.Envelope"};
    if (b % 4 == 3)
        return &m2k__test__v1__all_types__descriptor;
    return pb_type(names[b % 4]);
}

static void fields(const ProtobufCMessage *m)
{
    static const char *const paths[] = {
        "device_id", "seq",        "value", "timestamp_ms", "metric", "color",
        "fl",        "inner.name", "c_num", "qos",          "flag"};
    char buf[64];
    size_t len;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (pb_field_text(m, paths[i], strlen(paths[i]), buf, sizeof buf,
                              &len) == 0 &&
            len > sizeof buf)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pb *dc;
    const ProtobufCMessageDescriptor *d;
    const ProtobufCMessage *m;
    const void *js, *p, *e;
    size_t jl, pl, el;
    char why[256], *first = NULL;

    if (size < 1 || (!dc && pb_new(&dc)))
        return 0;
    d = pick(data[0]);
    if (pb_unpack(dc, d, data + 1, size - 1, &m, why, sizeof why))
        return 0;
    fields(m);
    if (pb_json(dc, m, &js, &jl, why, sizeof why) == 0) {
        const char *j = js;
        if (jl < 2 || j[0] != '{' || j[jl - 1] != '}')
            abort();
        if (!(first = malloc(jl)))
            return 0;
        memcpy(first, js, jl);
    }
    const ProtobufCFieldDescriptor *sf =
        protobuf_c_message_descriptor_get_field_by_name(d, "readings");
    if (!sf)
        sf = protobuf_c_message_descriptor_get_field_by_name(d, "r_inner");
    if (sf) {
        const ProtobufCMessage *const *els;
        size_t n = pb_elements(m, sf, &els);
        for (size_t i = 0; i < n && i < 64; i++) {
            fields(els[i]);
            if (pb_pack(dc, els[i], &p, &pl) == 0) {
                struct pb_envelope env = {.device_id = "d",
                                              .payload = p,
                                              .len = pl,
                                              .content_type =
                                                  els[i]->descriptor->name};
                if (pb_envelope(dc, &env, &e, &el))
                    abort();
            }
        }
    }
    /* round trip: what decoded packs, decodes again, prints the same */
    if (pb_pack(dc, m, &p, &pl) == 0) {
        uint8_t *copy = malloc(pl ? pl : 1);
        if (copy) {
            memcpy(copy, p, pl);
            if (pb_unpack(dc, d, copy, pl, &m, why, sizeof why))
                abort();
            if (first && (pb_json(dc, m, &js, &jl, why, sizeof why) ||
                          memcmp(js, first, jl)))
                abort();
            free(copy);
        }
    }
    free(first);
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
