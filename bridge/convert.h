/*
 * convert.h — one MQTT message → the Kafka records it becomes, or the
 * reason it is a dead letter: the route stage and the decode stage, wired
 * together. The daemon (bridge.c) and `mqtt2kafka route` both call
 * convert_message(), so the tool shows exactly what the daemon would do.
 *
 * Pure: no I/O, no clock. Borrows the conf.
 */
#ifndef MQTT2KAFKA_CONVERT_H
#define MQTT2KAFKA_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/conf.h"
#include "bridge/route.h"

struct convert;

struct pb_schema;
struct convert_opts {
    int64_t max_payload; /* bytes: larger payloads dead-letter (cut) */
    const struct pb_schema *schemas; /* borrowed; NULL: the built-in types */
};

/* Builds and checks the route and decode stages for c: every route error
 * at its file:line:col. -EINVAL (err says where and why) or -ENOMEM. */
int convert_new(const struct conf *c, const struct convert_opts *o,
                struct convert **out, char *err, size_t errlen);
void convert_free(struct convert *cv); /* NULL is fine */

/* The subscription filters (borrowed), route i's filter, and the most
 * records one message can become. */
size_t convert_filters(const struct convert *cv, const char ***filters);
const char *convert_filter(const struct convert *cv, size_t i);
size_t convert_max_records(const struct convert *cv);

enum convert_kind { /* why a message is a dead letter */
                    CONVERT_OK = 0,
                    CONVERT_UNROUTED,    /* no route matches */
                    CONVERT_BAD_TOPIC,   /* the Kafka topic would be illegal or
                                            too long */
                    CONVERT_EMPTY,       /* empty payload */
                    CONVERT_OVERSIZED,   /* over mqtt.max_payload or the route's
                                          */
                    CONVERT_BAD_PAYLOAD, /* not the route's payload type */
                    CONVERT_MISSING_FIELD, /* a template's {payload.x} is not
                                              set */
};

struct convert_msg {   /* borrowed for the call */
    const char *topic; /* a valid MQTT topic name */
    const void *payload;
    size_t len;
    int qos;
    int64_t arrival_ms;
    const char *gateway_id;
};

#define CONVERT_HDRS_MAX 2
struct convert_hdr {
    const char *name, *value;
};

struct convert_rec { /* borrowed until the callback returns */
    const char *topic;
    const char *key; /* NULL when has_key is 0 */
    size_t key_len;
    int has_key;
    const void *value;
    size_t len;
    const char *content_type; /* NULL: no header */
    int route;
    struct convert_hdr hdrs[CONVERT_HDRS_MAX]; /* more headers: nhdrs */
    size_t nhdrs;
};

/* What to write instead of a message that cannot become records: its
 * first `keep` payload bytes (all, unless oversized), key if has_key. */
struct convert_dead {
    enum convert_kind kind; /* CONVERT_OK: records were emitted */
    int route;              /* the route that matched, or -1 */
    char why[256];          /* for error.reason */
    size_t keep;
    const char *key; /* borrowed from cv until the next call */
    size_t key_len;
    int has_key;
};

typedef int (*convert_emit_fn)(void *ud, const struct convert_rec *r);

/* Converts m: emits its records in order and sets dead->kind = CONVERT_OK;
 * or fills dead (emit may have been called for earlier elements of a split
 * message: the caller drops those, a message is all or nothing). Returns
 * 0, or what emit returned if not 0. */
int convert_message(struct convert *cv, const struct convert_msg *m,
                    convert_emit_fn emit, void *ud, struct convert_dead *dead);

/* What the message last converted asks of the wiring besides its
 * records (see payload_effects): counts, state to keep, a message to
 * publish. Valid until the next convert_message(). */
struct convert_effects {
    int64_t unknown_fields, unresolved;
    int seq_gap;
    const char *state_key;
    const void *state;
    size_t state_len;
    const char *publish_topic;
    const void *publish;
    size_t publish_len;
};
void convert_effects(const struct convert *cv, struct convert_effects *e);
/* Gives kept state back at start (keys under CONVERT_STATE_PREFIX). */
#define CONVERT_STATE_PREFIX "spb/"
int convert_restore(struct convert *cv, const char *key, const void *value,
                    size_t len);

/* Routes a topic alone (no payload), for `mqtt2kafka route`. */
enum route_status convert_route(struct convert *cv, const char *topic,
                                struct route_result *out);
/* 1 if route's messages are decoded; the payload as route's type in JSON
 * (see payload_describe). */
int convert_decodes(const struct convert *cv, int route);
int convert_describe(struct convert *cv, int route, const char *topic,
                     const void *data, size_t len, const char **type,
                     const void **json, size_t *jlen);

#endif
