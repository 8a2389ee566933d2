/*
 * pb.h — the protobuf toolkit (a library, not a stage; the decode stage is
 * payload.h): payload bytes → a decoded protobuf message, and the forms
 * the bridge writes: an Envelope, one element of a repeated field packed
 * alone, a field's text for templates; pb_json.h prints the message's
 * canonical JSON.
 *
 * Everything works from protobuf-c's descriptors: the ones protoc-c
 * compiled from proto/ (pb_type()) and the ones pb_schema.h builds at run
 * time from descriptor sets, whose side information (json_name, maps,
 * well-known types, strings kept as bytes) is used where it exists. A
 * type that can nest without bound is depth-checked before protobuf-c
 * unpacks it. No I/O. A decoder owns an arena (the
 * decoded message lives there until the next pb_unpack()) and two
 * output buffers; each has a hard cap, so a hostile payload costs at most
 * PB_ARENA_MAX + 2 * PB_OUT_MAX bytes.
 */
#ifndef MQTT2KAFKA_PB_H
#define MQTT2KAFKA_PB_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define PB_ARENA_MAX     (32u << 20) /* a decoded message, all its parts */
#define PB_OUT_MAX       (16u << 20) /* one JSON text, envelope or element */
#define PB_DEPTH_MAX     64          /* nesting of messages in JSON */
#define PB_ENVELOPE_TYPE "iot.bridge.v1.Envelope"

struct pb;

/* A compiled message type by its full name ("iot.telemetry.v1.SensorReading"),
 * or NULL. pb_type_names() writes "a, b, c" for messages. */
const ProtobufCMessageDescriptor *pb_type(const char *name);
void pb_type_names(char *buf, size_t len);

/* Checks a dotted field path ("device_id", "meta.site") in type d for use
 * in a template: every step but the last a singular message field, the
 * last a singular string, number, bool or enum. 0, or -EINVAL with why. */
int pb_field_path_check(const ProtobufCMessageDescriptor *d, const char *path,
                        size_t len, char *why, size_t whylen);

/* The repeated message field name of d, for `split`; NULL with why if it
 * is not one (maps are not: they have no order a consumer could rely on). */
const ProtobufCFieldDescriptor *
pb_split_field(const ProtobufCMessageDescriptor *d, const char *name, char *why,
               size_t whylen);

/* A decoder: -ENOMEM or 0. pb_free(NULL) is fine. */
int pb_new(struct pb **out);
void pb_free(struct pb *dc);

struct pb_schema;
/* The schemas a google.protobuf.Any's type is looked up in, for JSON
 * (borrowed; NULL: an Any with a value cannot be printed). */
void pb_set_schema(struct pb *dc, const struct pb_schema *s);

/* Fields of m and of every message in it that its type does not know (a
 * payload of another type often "decodes" into them). */
int64_t pb_unknown_fields(const ProtobufCMessage *m);

/* Decodes len bytes as type d. *out lives in dc's arena until the next
 * pb_unpack() or pb_free(). 0, or -EINVAL with why (not a valid
 * message, or one that would take more than PB_ARENA_MAX to hold). */
int pb_unpack(struct pb *dc, const ProtobufCMessageDescriptor *d,
              const void *buf, size_t len, const ProtobufCMessage **out,
              char *why, size_t whylen);

/* The elements of repeated message field f of m: count, and the array
 * through *elems (borrowed from m). */
size_t pb_elements(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                   const ProtobufCMessage *const **elems);

/* The text of field path (as checked by pb_field_path_check) in m, for
 * a template: strings as they are (valid UTF-8), integers in decimal, bools
 * true/false, enums by name, floating point as in JSON. Writes at most cap
 * bytes, no terminator. 0; -ENOENT when the field is not set (an empty
 * string, an unset message on the way, another member of its oneof); -ENOSPC
 * when longer than cap; -EILSEQ for a string that is not UTF-8; -EINVAL for
 * a path m's type does not have. */
int pb_field_text(const ProtobufCMessage *m, const char *path, size_t pathlen,
                  char *buf, size_t cap, size_t *len);

/* m packed on its own (split elements in raw and envelope format), into
 * dc's second buffer: borrowed until the next pb_pack(). */
int pb_pack(struct pb *dc, const ProtobufCMessage *m, const void **out,
            size_t *len);

/* What an iot.bridge.v1.Envelope carries. */
struct pb_envelope {
    const char *device_id, *gateway_id, *mqtt_topic,
        *content_type; /* NULL: "" */
    int64_t arrival_ms;
    uint32_t qos;
    const void *payload; /* the body; may point into pb_pack()'s buffer */
    size_t len;
};

/* The packed Envelope, borrowed from dc until the next call that writes
 * output. 0 or -EINVAL (larger than PB_OUT_MAX) / -ENOMEM. */
int pb_envelope(struct pb *dc, const struct pb_envelope *e, const void **out,
                size_t *len);

#endif
