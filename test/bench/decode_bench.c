/*
 * decode_bench.c — the cost of the payload path per message, for a
 * 100-byte SensorReading like m2k-pub's: decode, the key from a payload
 * field, then the value in each format (raw: nothing more; envelope;
 * json). Prints ns per message for each; under callgrind, run one mode
 * (decode_bench MODE N) and divide the instruction count by N:
 *
 *   valgrind --tool=callgrind build/bench/decode_bench json 100000
 *
 * A third argument "runtime" uses the type as the daemon does, loaded at
 * run time from the embedded descriptor set (schemas.h, strings kept as
 * bytes), instead of protoc-c's compiled descriptor:
 *
 *   build/bench/decode_bench json 100000 runtime
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/pb.h"
#include "bridge/pb_json.h"
#include "bridge/schemas.h"
#include "telemetry.pb-c.h"

static size_t reading(unsigned char *buf, size_t want)
{
    Iot__Telemetry__V1__SensorReading r;
    Iot__Telemetry__V1__SensorReading__LabelsEntry l, *lp = &l;
    char pad[128];
    iot__telemetry__v1__sensor_reading__init(&r);
    iot__telemetry__v1__sensor_reading__labels_entry__init(&l);
    r.device_id = (char *)"dev-00042";
    r.timestamp_ms = 1700000000123;
    r.metric = (char *)"temperature";
    r.value = 21.3;
    r.unit = (char *)"C";
    r.seq = 123456;
    l.key = (char *)"pad";
    l.value = pad;
    r.labels = &lp;
    r.n_labels = 1;
    memset(pad, 'x', sizeof pad);
    for (size_t n = 1; n < sizeof pad; n++) { /* grow the label to the size */
        pad[n] = '\0';
        if (iot__telemetry__v1__sensor_reading__get_packed_size(&r) >= want)
            break;
        pad[n] = 'x';
    }
    return iot__telemetry__v1__sensor_reading__pack(&r, buf);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One message through the payload path; returns bytes of output. */
static size_t one(struct pb *dc, const ProtobufCMessageDescriptor *d,
                  const unsigned char *buf, size_t len, int mode)
{
    const ProtobufCMessage *m;
    const void *out = buf;
    size_t olen = len, klen;
    char why[256], key[64];
    if (pb_unpack(dc, d, buf, len, &m, why, sizeof why) ||
        pb_field_text(m, "device_id", 9, key, sizeof key, &klen))
        abort();
    if (mode == 1) {
        struct pb_envelope e = {
            key, "gw-1", "sensors/eu/temp/dev-00042", d->name, 1700000000000, 1,
            buf, len};
        if (pb_envelope(dc, &e, &out, &olen))
            abort();
    } else if (mode == 2 && pb_json(dc, m, &out, &olen, why, sizeof why)) {
        abort();
    }
    return olen;
}

int main(int argc, char **argv)
{
    static const char *const modes[] = {"raw", "envelope", "json"};
    unsigned char buf[256];
    size_t len = reading(buf, 100), sink = 0;
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    const ProtobufCMessageDescriptor *d =
        pb_type("iot.telemetry.v1.SensorReading");
    struct pb_schema *s = NULL;
    struct pb *dc;
    char err[256];
    if (argc > 3 && !strcmp(argv[3], "runtime")) {
        if (schemas_builtin(&s, err, sizeof err))
            return 1;
        d = pb_schema_message(s, "iot.telemetry.v1.SensorReading");
    }
    if (pb_new(&dc))
        return 1;
    for (int mode = 0; mode < 3; mode++) {
        if (argc > 1 && strcmp(argv[1], modes[mode]))
            continue;
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            sink += one(dc, d, buf, len, mode);
        double ns = (now_ns() - t0) / (double)n;
        printf("%-8s %zu-byte reading: %.0f ns/message (decode + key%s), %zu "
               "bytes out\n",
               modes[mode], len, ns, mode ? " + value" : "",
               one(dc, d, buf, len, mode));
    }
    pb_free(dc);
    pb_schema_free(s);
    return sink == 0;
}
