/*
 * payload.h — the decode stage: a routed MQTT message on a route that
 * decodes its payload → the Kafka records it becomes.
 *
 * Per route (compiled once from the conf): the payload type, the split
 * field, the format and the content-type header. Per message: decode,
 * take the elements of the split field (or the message itself), render
 * the route's templates with each element's fields, and hand each record
 * to a callback. A payload that cannot become records is reported with a
 * kind and a sentence for the dead-letter topic's error.reason. Uses
 * route.h and pb.h; no I/O.
 */
#ifndef MQTT2KAFKA_PAYLOAD_H
#define MQTT2KAFKA_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/conf.h"
#include "bridge/route.h"

#define PAYLOAD_SPLIT_MAX                                                      \
    1024 /* records from one message; more: dead letter                        \
          */

enum payload_error {
    PAYLOAD_OK = 0,
    PAYLOAD_UNDECODABLE, /* not the route's type, a bad string, nothing to split
                          */
    PAYLOAD_MISSING_FIELD, /* a template's {payload.x} is not set */
    PAYLOAD_BAD_TOPIC,     /* the topic it makes is illegal or too long */
};

struct payload;

/* Compiles the routes of a loaded (and so checked) conf; borrows it. */
int payload_new(const struct conf *c, struct payload **out, char *err,
                size_t errlen);
void payload_free(struct payload *p);

/* 1 if messages on route index go through payload_process(): the route
 * decodes, or its format is not raw. 0 for -1 (no route). */
int payload_decodes(const struct payload *p, int route);
/* The most records one message can become: 1 without split routes. */
size_t payload_max_records(const struct payload *p);

struct payload_msg { /* borrowed for the call */
    const char *topic;
    const void *data;
    size_t len;
    int qos;
    int64_t arrival_ms;
    const char *gateway_id;
};

struct payload_rec { /* borrowed until the callback returns */
    const char *topic;
    const char *key; /* NULL when has_key is 0 */
    size_t key_len;
    int has_key;
    const void *value;
    size_t len;
    const char *content_type; /* NULL: no header (raw bytes, raw format) */
};

typedef int (*payload_emit_fn)(void *ud, const struct payload_rec *r);

/* Turns m into records on route rr (from route_match() with ROUTE_OK; its
 * topic and key are rewritten) and calls emit for each, in order. Returns
 * 0; -EINVAL with *kind and why when the message must dead-letter (emit
 * may have been called for earlier elements: the caller drops those);
 * or what emit returned, if not 0. */
int payload_process(struct payload *p, const struct route_table *t,
                    struct route_result *rr, const struct payload_msg *m,
                    payload_emit_fn emit, void *ud, enum payload_error *kind,
                    char *why, size_t whylen);

#endif
