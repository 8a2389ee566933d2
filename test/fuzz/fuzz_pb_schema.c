/*
 * fuzz_pb_schema.c — libFuzzer target for the run-time schema loader: any
 * bytes as a FileDescriptorSet → pb_schema_add() and _link(). Nothing may
 * crash, leak or read out of bounds, and what is accepted must be a schema
 * protobuf-c can use: for every message type, the same bytes (when they do
 * not nest too deep) unpack or not without harm, and what unpacks packs
 * again to bytes that unpack and pack to the same; a message initialised
 * with its defaults packs and unpacks; `show` prints every type.
 *
 *   make fuzz          (all targets, FUZZ_SECONDS each, clang)
 *
 * The seed corpus is the test schema's descriptor sets (build/schema/).
 * Built with -DFUZZ_MAIN (any compiler) it is a plain program that runs
 * the files named on its command line through the same function.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/pb_schema.h"

#define TYPES_MAX 64 /* message types tried per input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* m packed, unpacked and packed again: the same bytes. */
static void round_trip(const ProtobufCMessageDescriptor *d,
                       const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m), n2;
    uint8_t *a = malloc(n + 1), *b;
    ProtobufCMessage *again;
    if (!a || protobuf_c_message_pack(m, a) != n)
        abort();
    if (pb_schema_check_depth(d, a, n, 100) ||
        !(again = protobuf_c_message_unpack(d, NULL, n, a)))
        abort();
    n2 = protobuf_c_message_get_packed_size(again);
    if (n2 != n || !(b = malloc(n2 + 1)) ||
        protobuf_c_message_pack(again, b) != n || memcmp(a, b, n))
        abort();
    protobuf_c_message_free_unpacked(again, NULL);
    free(a);
    free(b);
}

/* protobuf-c packs a message only when its required strings and messages
 * are set: a new one of d packs if they have defaults. */
static int packs_when_new(const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REQUIRED && !f->default_value &&
            (f->type == PROTOBUF_C_TYPE_STRING ||
             f->type == PROTOBUF_C_TYPE_MESSAGE))
            return 0;
    }
    return 1;
}

static void try_type(const struct pb_schema *s, const struct pb_schema_type *t,
                     const uint8_t *data, size_t size)
{
    static char text[1 << 16];
    const ProtobufCMessageDescriptor *d = t->msg;
    ProtobufCMessage *m;
    size_t len;
    if (pb_schema_show(s, t->name, text, sizeof text, &len) < 0 &&
        len < sizeof text)
        abort();
    if (!d)
        return;
    if (packs_when_new(d)) {
        if (!(m = calloc(1, d->sizeof_message)))
            abort();
        pb_schema_message_init(d, m);
        round_trip(d, m);
        free(m);
    }
    if (pb_schema_check_depth(d, data, size, 50) == 0 &&
        (m = protobuf_c_message_unpack(d, NULL, size, data))) {
        round_trip(d, m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pb_schema *s;
    char err[512];
    if (pb_schema_new(&s))
        return 0;
    if (!pb_schema_add(s, "fuzz.desc", data, size, err, sizeof err) &&
        !pb_schema_link(s, err, sizeof err)) {
        size_t n = pb_schema_count(s);
        for (size_t i = 0; i < n && i < TYPES_MAX; i++)
            try_type(s, pb_schema_type_at(s, i), data, size);
    } else if (!err[0]) {
        abort(); /* every refusal says why */
    }
    pb_schema_free(s);
    return 0;
}

#ifdef FUZZ_MAIN
int main(int argc, char **argv)
{
    static uint8_t buf[1 << 24];
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
