/*
 * pb_schema.h — protobuf schemas loaded at run time (pure but for
 * pb_schema_add_file()'s read). A
 * FileDescriptorSet (`protoc --include_imports --descriptor_set_out=F
 * x.proto`) becomes protobuf-c message and enum descriptors that
 * protobuf_c_message_unpack(), _pack() and _free_unpacked() use exactly as
 * they use the ones protoc-c generates: same field order, flags, defaults,
 * and the struct layout protoc-c would give the type on this machine (so a
 * runtime message of a type that is also compiled in can be read through
 * the compiled struct).
 *
 * proto2 and proto3: nested messages and enums, oneofs, maps, repeated
 * fields packed or not, proto2 [default = ...], proto3 `optional`, imports
 * across files and sets (types are found by full name among all loaded
 * files; the order of files and sets does not matter). Refused when added,
 * naming the file and the type: groups, extensions (`extend` blocks),
 * editions, message_set_wire_format, and anything malformed. Recursive
 * types are fine. Custom options (an `extend` of one of
 * google.protobuf.*Options) are accepted and ignored: they only annotate
 * the schema, and real schemas use them.
 *
 * Use: pb_schema_new(), pb_schema_add()/_add_file() per set, then
 * pb_schema_link(); lookups see what was linked (more sets may be added
 * and linked later). Everything the registry hands out (descriptors,
 * names, infos) is owned by it and lives until pb_schema_free(); one
 * thread at a time. Input is bounded: the caps below are checked and named
 * in the error when passed.
 *
 * What protobuf-c's descriptors cannot carry (json_name, which type is a
 * well-known type or a map entry, oneof names, the proto2 default as
 * written) is in a struct pb_schema_msg that pb_schema_msg_info() finds
 * from the descriptor itself: a runtime message descriptor's reserved1
 * points to it (protobuf-c 1.4 never reads the reserved fields; generated
 * descriptors leave them NULL, so compiled types give NULL).
 *
 * protobuf-c notes a caller must know:
 * - message_init is NULL in runtime descriptors (protobuf-c's init hook
 *   gets no descriptor, so it cannot be generic). protobuf_c_message_unpack()
 *   then initialises by the descriptor itself; never call
 *   protobuf_c_message_init() with a runtime descriptor: use
 *   pb_schema_message_init().
 * - That generic init writes each field's default_value, a oneof member's
 *   too, into the oneof's union, and parsing another member then frees it:
 *   so oneof members have no default_value here (protoc-c gives proto2
 *   ones their [default] and proto3 strings ""); the text is in
 *   pb_schema_field.default_text. The only other difference from protoc-c:
 *   a proto2 optional enum field without [default] whose enum's first value
 *   is not 0 gets that value as default_value, which protoc-c's __init
 *   puts in place without one.
 * - protobuf-c's unpack recurses without a depth limit, and a recursive
 *   type (google.protobuf.Struct is one) lets a small payload nest deep
 *   enough to exhaust the stack: check with pb_schema_check_depth() first.
 * - proto3 `optional` fields (which protoc-c 1.4 cannot compile) get
 *   PROTOBUF_C_LABEL_OPTIONAL with a has_ member like proto2 optional
 *   fields, so presence survives unpack and pack; plain proto3 fields are
 *   PROTOBUF_C_LABEL_NONE (implicit presence).
 */
#ifndef MQTT2KAFKA_PB_SCHEMA_H
#define MQTT2KAFKA_PB_SCHEMA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#define PB_SCHEMA_INPUT_MAX  (16u << 20) /* bytes of one descriptor set */
#define PB_SCHEMA_MEM_MAX    (64u << 20) /* all one registry holds */
#define PB_SCHEMA_FILES_MAX  2048        /* .proto files, all sets */
#define PB_SCHEMA_TYPES_MAX  32768       /* messages and enums, all sets */
#define PB_SCHEMA_FIELDS_MAX 4096        /* fields of one message */
#define PB_SCHEMA_VALUES_MAX 16384       /* values of one enum */
#define PB_SCHEMA_NAME_MAX   512         /* a full name */
#define PB_SCHEMA_DEPTH_MAX  64 /* nesting of a descriptor set's messages */

struct pb_schema;

/* The well-known types the JSON mapping prints in their own way. */
enum pb_schema_wkt {
    PB_SCHEMA_WKT_NONE = 0,
    PB_SCHEMA_WKT_ANY,
    PB_SCHEMA_WKT_DURATION,
    PB_SCHEMA_WKT_EMPTY,
    PB_SCHEMA_WKT_FIELD_MASK,
    PB_SCHEMA_WKT_STRUCT,
    PB_SCHEMA_WKT_VALUE,
    PB_SCHEMA_WKT_LIST_VALUE,
    PB_SCHEMA_WKT_TIMESTAMP,
    PB_SCHEMA_WKT_DOUBLE_VALUE, /* the wrappers, in wrappers.proto's order */
    PB_SCHEMA_WKT_FLOAT_VALUE,
    PB_SCHEMA_WKT_INT64_VALUE,
    PB_SCHEMA_WKT_UINT64_VALUE,
    PB_SCHEMA_WKT_INT32_VALUE,
    PB_SCHEMA_WKT_UINT32_VALUE,
    PB_SCHEMA_WKT_BOOL_VALUE,
    PB_SCHEMA_WKT_STRING_VALUE,
    PB_SCHEMA_WKT_BYTES_VALUE,
};

/* What a field's descriptor does not say; parallel to desc->fields. */
struct pb_schema_field {
    const char *json_name;    /* protoc's json_name (or lowerCamelCase) */
    const char *type_name;    /* message or enum type, full, no dot; NULL */
    const char *default_text; /* proto2 [default = x] as in the set; NULL */
    int oneof;                /* index in oneofs; -1 (proto3 optional too) */
    int proto3_optional;      /* proto3 `optional`: explicit presence */
    int string; /* a string field held as bytes (PB_SCHEMA_STRING_BYTES):
                   desc says PROTOBUF_C_TYPE_BYTES, the text is UTF-8 */
};

/* What a message's descriptor does not say. */
struct pb_schema_msg {
    const ProtobufCMessageDescriptor *desc;
    const char *file; /* the .proto file that defines it */
    int syntax;       /* 2 or 3 */
    enum pb_schema_wkt wkt;
    int map_entry; /* option map_entry: the type of a map<K, V> field */
    int recursive; /* reaches a type that contains itself, so a payload can
                      nest without bound: pb_schema_check_depth() first */
    unsigned n_oneofs;
    const char *const *oneofs;            /* real oneofs' names, by index */
    const struct pb_schema_field *fields; /* [desc->n_fields] */
    /* Where the type is in its file, as Confluent's message indexes count
     * it: the position among the file's top-level messages, then among
     * each enclosing message's nested ones. */
    const struct pb_schema_msg *outer; /* the enclosing message, or NULL */
    unsigned index;                    /* among its siblings, from 0 */
};

/* One loaded type: exactly one of msg and enm is set. */
struct pb_schema_type {
    const char *name; /* full name, no leading dot */
    const char *file; /* the .proto file */
    int syntax;       /* 2 or 3 */
    const ProtobufCMessageDescriptor *msg;
    const ProtobufCEnumDescriptor *enm;
};

/* An empty registry: 0 or -ENOMEM. pb_schema_free(NULL) is fine. */
int pb_schema_new(struct pb_schema **out);

/* Options, set before the first pb_schema_add(). PB_SCHEMA_STRING_BYTES:
 * string fields become PROTOBUF_C_TYPE_BYTES in the descriptors (with
 * pb_schema_field.string set), so unpack keeps a string's length and an
 * embedded NUL does not cut it short (protobuf-c's strings are C strings);
 * optional ones get a has_ member, defaults are ProtobufCBinaryData. The
 * wire format is the same. The struct layout is then no longer protoc-c's
 * for types with string fields. */
#define PB_SCHEMA_STRING_BYTES 1u
void pb_schema_set_flags(struct pb_schema *s, unsigned flags);
void pb_schema_free(struct pb_schema *s);

/* Adds the files of one serialized FileDescriptorSet (buf borrowed for the
 * call). name (the set's path, for errors) is copied. A file already added
 * with the same name and content (a set made with --include_imports
 * carries the files it imports) is skipped. Types stay invisible until
 * pb_schema_link(). 0; -EINVAL with err "name: file: type X: what is
 * wrong" (or "name: what" for the set as a whole); -EFBIG past a cap;
 * -ENOMEM; -EBUSY after a failed link. A failed add leaves the registry
 * as it was. */
int pb_schema_add(struct pb_schema *s, const char *name, const void *buf,
                  size_t len, char *err, size_t errlen);

/* pb_schema_add() for the set in a file: also -errno when it cannot be
 * read, -EFBIG when larger than PB_SCHEMA_INPUT_MAX. */
int pb_schema_add_file(struct pb_schema *s, const char *path, char *err,
                       size_t errlen);

/* Resolves the type names of the files added since the last link among all
 * added files, and makes all types visible. 0, or -EINVAL with err (an
 * unknown type, a message where an enum is wanted, a name defined twice,
 * an unknown enum default); after an error the registry is only good for
 * pb_schema_free(). */
int pb_schema_link(struct pb_schema *s, char *err, size_t errlen);

/* A linked type by full name ("acme.meter.v2.Reading", no leading dot), or
 * NULL. Borrowed from s. */
const ProtobufCMessageDescriptor *pb_schema_message(const struct pb_schema *s,
                                                    const char *name);
const ProtobufCEnumDescriptor *pb_schema_enum(const struct pb_schema *s,
                                              const char *name);

/* A linked type of either kind by full name, or NULL. */
const struct pb_schema_type *pb_schema_find(const struct pb_schema *s,
                                            const char *name);

/* The linked types sorted by name (map entry types included: see
 * pb_schema_msg_info()->map_entry): i < pb_schema_count(s). Valid until
 * the next pb_schema_add() or _link(). */
size_t pb_schema_count(const struct pb_schema *s);
const struct pb_schema_type *pb_schema_type_at(const struct pb_schema *s,
                                               size_t i);

/* The side information of a runtime message descriptor, or NULL for any
 * other descriptor (a compiled one). */
const struct pb_schema_msg *
pb_schema_msg_info(const ProtobufCMessageDescriptor *d);

/* Type name's definition as .proto-like text (`schema show`): the file and
 * syntax, then each field with label, type, name, number and options, in
 * number order, oneof members grouped. Writes at most cap bytes with a
 * terminator; *len gets the full length (as snprintf). 0; -ENOENT no such
 * type; -ENOSPC when cap was too small. */
int pb_schema_show(const struct pb_schema *s, const char *name, char *buf,
                   size_t cap, size_t *len);

/* Initialises m (d->sizeof_message bytes) as protobuf-c's generated
 * __init() would: zero, m->descriptor = d, defaults in place. For any
 * descriptor; protobuf_c_message_init() needs a generated one. */
void pb_schema_message_init(const ProtobufCMessageDescriptor *d,
                            ProtobufCMessage *m);

/* Checks that len bytes of message type d nest no deeper than max_depth
 * messages (d itself is depth 1), without allocating. 0; -ELOOP when
 * deeper; -EBADMSG when the wire format is broken on the way (unpack would
 * refuse it too). */
int pb_schema_check_depth(const ProtobufCMessageDescriptor *d, const void *buf,
                          size_t len, unsigned max_depth);

#endif
