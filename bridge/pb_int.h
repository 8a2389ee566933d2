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
#include "bridge/pb_schema.h"

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
    const struct pb_schema *schema; /* Any's types; NULL: none */
    char err[192];                  /* JSON: why, when not bad_field */
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
/* What the runtime schema says of field f of d (NULL for a compiled
 * descriptor), and whether f holds text: a string, or a string kept as
 * bytes (PB_SCHEMA_STRING_BYTES). */
const struct pb_schema_field *pb_finfo(const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f);
int pb_is_text(const ProtobufCMessageDescriptor *d,
               const ProtobufCFieldDescriptor *f);
/* The text of a text field's value at p (either kind): pointer, length. */
const char *pb_text_at(const ProtobufCFieldDescriptor *f, const void *p,
                       size_t *len);
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

/* ---- the JSON printer's parts (pb_json.c, pb_json_wkt.c) ---------------- */

/* Each returns 0, or -1 with dc->bad_field or dc->err set (or the buffer
 * full). depth counts messages, capped at PB_DEPTH_MAX. */
int pb_json_msg(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                int depth);
int pb_json_fields(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                   int depth, int *first);
int pb_json_value(struct pb *dc, struct pb_buf *b,
                  const ProtobufCMessageDescriptor *d,
                  const ProtobufCFieldDescriptor *f, const void *p, int depth);
int pb_json_map(struct pb *dc, struct pb_buf *b,
                const ProtobufCFieldDescriptor *f,
                const ProtobufCMessage *const *ents, size_t n, int depth);
int pb_json_default(struct pb *dc, struct pb_buf *b,
                    const ProtobufCMessageDescriptor *d, int depth);
int pb_json_str(struct pb_buf *b, const char *s, size_t n);
void pb_json_base64(struct pb_buf *b, const unsigned char *p, size_t n);
size_t pb_json_elem_size(ProtobufCType t);
int pb_json_fail(struct pb *dc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A well-known type in its own JSON form (pb_json_wkt.c). */
int pb_json_wkt(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                enum pb_schema_wkt wkt, int depth);

#endif
