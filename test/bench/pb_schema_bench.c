/*
 * pb_schema_bench.c — what a type loaded at run time costs against the same
 * type compiled in: unpack and free one ~110-byte acme.meter.v2.Reading
 * (reading_small in test/unit/fixtures/schema_cases.txt) with the
 * descriptor pb_schema built, or with protoc-c's. Also the nesting check
 * (pb_schema_check_depth) a caller runs before unpacking a recursive type.
 * Prints ns per message for each mode; under callgrind run one mode and
 * take the difference of two counts, which leaves out loading the schema:
 *
 *   valgrind --tool=callgrind build/bench/pb_schema_bench runtime 1000
 *   valgrind --tool=callgrind build/bench/pb_schema_bench runtime 21000
 *   (instructions of the second - the first) / 20000
 *
 * Run from the repository root (it reads the fixture and build/schema/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/meter/v2/reading.pb-c.h"
#include "bridge/pb_schema.h"

#ifndef SCHEMA_BUILD
#define SCHEMA_BUILD "build/schema"
#endif
#define CASES "test/unit/fixtures/schema_cases.txt"

/* The wire bytes of case name from the fixture file. */
static size_t payload(const char *name, unsigned char *out, size_t cap)
{
    FILE *f = fopen(CASES, "r");
    char line[8192];
    size_t n = 0;
    if (!f) {
        perror(CASES);
        exit(1);
    }
    while (fgets(line, sizeof line, f)) {
        char *tab = strrchr(line, '\t');
        if (strncmp(line, name, strlen(name)) || line[strlen(name)] != '\t' ||
            !tab)
            continue;
        for (char *h = tab + 1; h[0] > ' ' && h[1] > ' ' && n < cap; h += 2) {
            unsigned v;
            if (sscanf(h, "%2x", &v) != 1)
                break;
            out[n++] = (unsigned char)v;
        }
        break;
    }
    fclose(f);
    return n;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* n unpacks (and frees) of buf with d; mode 2: the depth check alone. */
static int run(const ProtobufCMessageDescriptor *d, const unsigned char *buf,
               size_t len, long n, int mode)
{
    for (long i = 0; i < n; i++) {
        ProtobufCMessage *m;
        if (mode == 2) {
            if (pb_schema_check_depth(d, buf, len, 64))
                return -1;
            continue;
        }
        if (!(m = protobuf_c_message_unpack(d, NULL, len, buf)))
            return -1;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const modes[] = {"runtime", "compiled", "check"};
    const char *only = argc > 1 ? argv[1] : NULL;
    long n = argc > 2 ? atol(argv[2]) : 200000;
    unsigned char buf[512];
    size_t len = payload("reading_small", buf, sizeof buf);
    struct pb_schema *s;
    const ProtobufCMessageDescriptor *rt;
    char err[512];

    if (pb_schema_new(&s) ||
        pb_schema_add_file(s, SCHEMA_BUILD "/all.desc", err, sizeof err) ||
        pb_schema_link(s, err, sizeof err)) {
        fprintf(stderr, "pb_schema_bench: %s\n", err);
        return 1;
    }
    rt = pb_schema_message(s, "acme.meter.v2.Reading");
    if (!len || !rt) {
        fprintf(stderr, "pb_schema_bench: no payload or type\n");
        return 1;
    }
    for (int m = 0; m < 3; m++) {
        const ProtobufCMessageDescriptor *d =
            m == 1 ? &acme__meter__v2__reading__descriptor : rt;
        double t0;
        if (only && strcmp(only, modes[m]))
            continue;
        t0 = now_ns();
        if (run(d, buf, len, n, m)) {
            fprintf(stderr, "pb_schema_bench: %s failed\n", modes[m]);
            return 1;
        }
        printf("%-8s %zu bytes: %.0f ns per message\n", modes[m], len,
               (now_ns() - t0) / (double)(n ? n : 1));
    }
    pb_schema_free(s);
    return 0;
}
