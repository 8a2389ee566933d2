/*
 * decode.h — pure: payload bytes → a decoded protobuf message, and the
 * forms the bridge writes: the message's canonical JSON, an Envelope, one
 * element of a repeated field packed alone, a field's text for templates.
 *
 * Everything works from protobuf-c's descriptors, so every message type
 * compiled from proto/ is handled without code of its own; decode_type()
 * lists the types the bridge knows. No I/O. A decoder owns an arena (the
 * decoded message lives there until the next decode_unpack()) and two
 * output buffers; each has a hard cap, so a hostile payload costs at most
 * DECODE_ARENA_MAX + 2 * DECODE_OUT_MAX bytes.
 */
#ifndef MQTT2KAFKA_DECODE_H
#define MQTT2KAFKA_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define DECODE_ARENA_MAX     (32u << 20) /* a decoded message, all its parts */
#define DECODE_OUT_MAX       (16u << 20) /* one JSON text, envelope or element */
#define DECODE_DEPTH_MAX     64          /* nesting of messages in JSON */
#define DECODE_ENVELOPE_TYPE "iot.bridge.v1.Envelope"

struct decode;

/* A compiled message type by its full name ("iot.telemetry.v1.SensorReading"),
 * or NULL. decode_type_names() writes "a, b, c" for messages. */
const ProtobufCMessageDescriptor *decode_type(const char *name);
void decode_type_names(char *buf, size_t len);

/* Checks a dotted field path ("device_id", "meta.site") in type d for use
 * in a template: every step but the last a singular message field, the
 * last a singular string, number, bool or enum. 0, or -EINVAL with why. */
int decode_field_path_check(const ProtobufCMessageDescriptor *d,
                            const char *path, size_t len, char *why,
                            size_t whylen);

/* The repeated message field name of d, for `split`; NULL with why if it
 * is not one (maps are not: they have no order a consumer could rely on). */
const ProtobufCFieldDescriptor *
decode_split_field(const ProtobufCMessageDescriptor *d, const char *name,
                   char *why, size_t whylen);

/* A decoder: -ENOMEM or 0. decode_free(NULL) is fine. */
int decode_new(struct decode **out);
void decode_free(struct decode *dc);

/* Decodes len bytes as type d. *out lives in dc's arena until the next
 * decode_unpack() or decode_free(). 0, or -EINVAL with why (not a valid
 * message, or one that would take more than DECODE_ARENA_MAX to hold). */
int decode_unpack(struct decode *dc, const ProtobufCMessageDescriptor *d,
                  const void *buf, size_t len, const ProtobufCMessage **out,
                  char *why, size_t whylen);

/* The elements of repeated message field f of m: count, and the array
 * through *elems (borrowed from m). */
size_t decode_elements(const ProtobufCMessage *m,
                       const ProtobufCFieldDescriptor *f,
                       const ProtobufCMessage *const **elems);

/* The text of field path (as checked by decode_field_path_check) in m, for
 * a template: strings as they are (valid UTF-8), integers in decimal, bools
 * true/false, enums by name, floating point as in JSON. Writes at most cap
 * bytes, no terminator. 0; -ENOENT when the field is not set (an empty
 * string, an unset message on the way, another member of its oneof); -ENOSPC
 * when longer than cap; -EILSEQ for a string that is not UTF-8; -EINVAL for
 * a path m's type does not have. */
int decode_field_text(const ProtobufCMessage *m, const char *path,
                      size_t pathlen, char *buf, size_t cap, size_t *len);

/* m in protobuf's canonical JSON mapping, compact: lowerCamelCase names,
 * fields in number order, fields at their default omitted, 64-bit integers
 * as strings, bytes as base64, enums by name, NaN/Infinity as strings,
 * floating point in the shortest form that reads back the same (as
 * Python's json_format prints it), map keys sorted (the last of duplicate
 * keys wins). The text is borrowed from dc until the next call that
 * writes output. 0, or -EINVAL with why (a string that is not UTF-8,
 * nesting deeper than DECODE_DEPTH_MAX, longer than DECODE_OUT_MAX). */
int decode_json(struct decode *dc, const ProtobufCMessage *m, const void **out,
                size_t *len, char *why, size_t whylen);

/* m packed on its own (split elements in raw and envelope format), into
 * dc's second buffer: borrowed until the next decode_pack(). */
int decode_pack(struct decode *dc, const ProtobufCMessage *m, const void **out,
                size_t *len);

/* What an iot.bridge.v1.Envelope carries. */
struct decode_envelope {
    const char *device_id, *gateway_id, *mqtt_topic,
        *content_type; /* NULL: "" */
    int64_t arrival_ms;
    uint32_t qos;
    const void *payload; /* the body; may point into decode_pack()'s buffer */
    size_t len;
};

/* The packed Envelope, borrowed from dc until the next call that writes
 * output. 0 or -EINVAL (larger than DECODE_OUT_MAX) / -ENOMEM. */
int decode_envelope(struct decode *dc, const struct decode_envelope *e,
                    const void **out, size_t *len);

#endif
