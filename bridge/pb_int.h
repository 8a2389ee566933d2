/*
 * pb_int.h — what the protobuf toolkit's files (pb.c, pb_json.c) share:
 * the decoder's arena and output buffers, and field access by descriptor.
 * Nothing outside them includes it.
 */
#ifndef MQTT2KAFKA_PB_INT_H
#define MQTT2KAFKA_PB_INT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/pb.h"

#define CHUNK          (64u << 10)
#define FIELD_NAME_MAX 128

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct pb_buf {
    unsigned char *p;
    size_t len, cap;
    int full; /* a write would have passed PB_OUT_MAX */
};

struct pb {
    struct chunk *first; /* kept; the others are freed on reset */
    struct chunk *cur;   /* the chunk allocations come from */
    size_t total;        /* bytes in all chunks */
    int over;            /* an allocation was refused */
    ProtobufCAllocator alloc;
    struct pb_buf out, pack;
    const char *bad_field; /* JSON: the field whose string is not UTF-8 */
};

/* From the decoder's arena (freed all at once by the next unpack); NULL
 * past PB_ARENA_MAX. */
void *pb_arena_alloc(void *ud, size_t size);

/* Output buffers grow to at most PB_OUT_MAX; past it b->full is set and
 * writes are dropped. 0, or -1 (full). */
int pb_buf_room(struct pb_buf *b, size_t n);
void pb_put(struct pb_buf *b, const void *s, size_t n);
void pb_putc(struct pb_buf *b, char c);
void pb_puts(struct pb_buf *b, const char *s);

/* Field access by descriptor: where f lives in m, its count or has_ flag,
 * whether it is set the way protobuf-c's packer decides, and whether it is
 * a map (protoc's FooEntry convention). */
const void *pb_member(const ProtobufCMessage *m,
                      const ProtobufCFieldDescriptor *f);
const void *pb_quantifier(const ProtobufCMessage *m,
                          const ProtobufCFieldDescriptor *f);
int pb_zeroish(const ProtobufCFieldDescriptor *f, const void *p);
int pb_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
int pb_is_map(const ProtobufCFieldDescriptor *f);
const ProtobufCFieldDescriptor *
pb_field_by_name(const ProtobufCMessageDescriptor *d, const char *s, size_t n);

/* A number field's text (JSON's "NaN"/"Infinity" for nonfinite values);
 * *quoted: JSON needs quotes around it. At most 32 bytes. */
size_t pb_number_text(const ProtobufCFieldDescriptor *f, const void *p,
                      char *out, int *quoted);

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0; whether
 * s[0..n) is all valid UTF-8. */
size_t pb_utf8_len(const unsigned char *s, size_t n);
int pb_utf8_ok(const char *s, size_t n);

#endif
