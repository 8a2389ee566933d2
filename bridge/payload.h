/*
 * payload.h — the decode stage: the payload of a routed MQTT message on a
 * route that decodes it → the values of the Kafka records it becomes.
 *
 * Per route (compiled and checked once from the conf): the payload type,
 * the split field, the format and the content-type header. Per message:
 * payload_decode() decodes it and takes the elements of the split field
 * (or the message itself); payload_field_text() gives an element's fields
 * to the route's templates; payload_value() makes an element's record
 * value in the route's format. A payload that cannot become records is
 * reported with a kind and a sentence for the dead-letter topic's
 * error.reason.
 *
 * Payload kinds: raw (not decoded), a protobuf message type from the
 * loaded schemas (pb_schema.h; the built-in types are among them), json
 * (jsonp.h) and sparkplug (spb.h). Formats: raw, envelope, json, and
 * confluent (Schema Registry framing: 0x00, the schema id, the message
 * indexes, the protobuf bytes).
 *
 * A stage: it knows the protobuf toolkit (pb.h, spb.h, jsonp.h) and the
 * conf types, and no other stage; no I/O. What a message asks of the
 * wiring besides its records (Sparkplug state to keep, a rebirth request
 * to publish) is in payload_effects().
 */
#ifndef MQTT2KAFKA_PAYLOAD_H
#define MQTT2KAFKA_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/conf.h"
#include "bridge/pb_schema.h"

#define PAYLOAD_SPLIT_MAX                                                      \
    1024 /* records from one message; more: dead letter                        \
          */

enum payload_error {
    PAYLOAD_OK = 0,
    PAYLOAD_UNDECODABLE,   /* not the route's type, a bad string, no elements */
    PAYLOAD_MISSING_FIELD, /* a template's {payload.x} is not set */
    PAYLOAD_BAD_TOPIC,     /* the topic it makes is illegal or too long */
};

struct payload;

/* Compiles and checks the routes of a loaded conf (the payload type
 * exists in s, format json and split have a type to work on, split names a
 * repeated message field, confluent has a schema_id); borrows c and s.
 * -EINVAL with "file:line:col: route N ..." in err, or -ENOMEM. */
int payload_new(const struct conf *c, const struct pb_schema *s,
                struct payload **out, char *err, size_t errlen);
void payload_free(struct payload *p);

/* 1 if messages on route go through payload_decode(): the route decodes,
 * or its format is not raw. 0 for -1 (no route). */
int payload_decodes(const struct payload *p, int route);
/* The most records one message can become: 1 without split routes. */
size_t payload_max_records(const struct payload *p);
/* The content-type header of route's records, or NULL for none. */
const char *payload_content_type(const struct payload *p, int route);

/* Checks a template's {payload.path} for route (see route_check_fn): with
 * split, in the element first, then in the whole message. 0; -ENOENT when
 * the route does not decode; -EINVAL with why. */
int payload_field_check(void *p, int route, const char *path, size_t len,
                        char *why, size_t whylen);

struct payload_in { /* one MQTT message, borrowed for the call */
    const char *topic;
    const void *data;
    size_t len;
    int64_t now_ms; /* its arrival: Sparkplug's rebirth interval */
};

/* Decodes in as route's type. Returns how many records it becomes (1,
 * or the elements of the split field) or -EINVAL with *kind and why. The
 * decoded message lives in p until the next payload_decode(). */
int payload_decode(struct payload *p, int route, const struct payload_in *in,
                   enum payload_error *kind, char *why, size_t whylen);

/* Headers of the records of the message last decoded, besides the
 * content-type: m2k.unknown_fields (fields its type does not define),
 * m2k.sparkplug.unresolved (metrics whose alias no BIRTH named). */
#define PAYLOAD_HDRS_MAX 2
struct payload_hdr {
    const char *name, *value;
};
size_t payload_headers(struct payload *p, struct payload_hdr *out);

/* What the message last decoded asks of the wiring. */
struct payload_effects {
    int64_t unknown_fields; /* as the header */
    int64_t unresolved;     /* Sparkplug metrics */
    int seq_gap;            /* Sparkplug seq did not follow */
    const char *state_key;  /* Sparkplug aliases to keep (spool_kv) */
    const void *state;
    size_t state_len;
    const char *publish_topic; /* a rebirth request to publish, QoS 0 */
    const void *publish;
    size_t publish_len;
};
void payload_effects(const struct payload *p, struct payload_effects *e);
/* Gives back what payload_effects() asked to keep, at start. 0, or
 * -EINVAL for a key or value this build does not read (skip it). */
int payload_restore(struct payload *p, const char *key, const void *value,
                    size_t len);
/* The prefix of the keys payload_effects() keeps things under. */
#define PAYLOAD_STATE_PREFIX "spb/"

/* Element i of the message last decoded, for route_expand()'s field
 * callback (payload_field_text, with this as its user data). */
struct payload_elem {
    const void *elem, *whole; /* ProtobufCMessage; whole: NULL without split */
    const struct payload *p;  /* JSON and Sparkplug look there */
    long i;                   /* the element; -1: the whole message */
};
void payload_element(const struct payload *p, size_t i,
                     struct payload_elem *out);
int payload_field_text(void *elem, const char *path, size_t len, char *buf,
                       size_t cap, size_t *olen);

struct payload_msg { /* what an Envelope carries besides the body */
    const char *topic;
    const void *data;
    size_t len;
    int qos;
    int64_t arrival_ms;
    const char *gateway_id;
    const char *key; /* the record's key: the Envelope's device id unless */
    size_t key_len;  /* the element has a device_id field */
};

/* Element i's record value in route's format: borrowed from p until the
 * next call. 0, or -EINVAL with why (too large, a string that is not
 * UTF-8 in JSON). */
int payload_value(struct payload *p, int route, size_t i,
                  const struct payload_msg *m, const void **value, size_t *len,
                  char *why, size_t whylen);

/* The whole payload as route's type in JSON, for `mqtt2kafka route`;
 * *type is its type's name. 0, or -EINVAL when it does not decode. */
int payload_describe(struct payload *p, int route, const struct payload_in *in,
                     const char **type, const void **json, size_t *jlen);

#endif
