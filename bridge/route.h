/*
 * route.h — pure: an MQTT topic in, a route, Kafka topic and key out.
 *
 * A route's `match` is an MQTT topic pattern in which `{name}` captures one
 * level (like `+`) and a trailing `#` matches the rest. Captures fill the
 * topic and key templates. Routes are tried in order; the first match wins.
 * No I/O, no allocation in route_match(): it runs once per message.
 */
#ifndef MQTT2KAFKA_ROUTE_H
#define MQTT2KAFKA_ROUTE_H

#include <stddef.h>

#include "bridge/conf.h"

#define ROUTE_TOPIC_MAX 249 /* Kafka's limit on a topic name */
#define ROUTE_KEY_MAX   1024

struct route_table;

/* Checks and compiles the routes of a loaded conf: a match is a valid MQTT
 * filter with whole-level {name} captures; templates name only captures the
 * match defines (or {payload.x}); a Kafka topic template's literal text
 * could make a legal name. The table borrows c: keep the conf alive while
 * the table is. -EINVAL with "file:line:col: route N ..." in err, or
 * -ENOMEM. */
int route_table_new(const struct conf *c, struct route_table **out, char *err,
                    size_t errlen);
void route_table_free(struct route_table *t);

/* Checks a {payload.path} a template names against route's payload type:
 * 0; -ENOENT when the route does not decode its payload; -EINVAL with why
 * when the path is not a single value of the type. */
typedef int (*route_check_fn)(void *ud, int route, const char *path, size_t len,
                              char *why, size_t whylen);
/* Calls fn for every {payload.x} of every template, in route order; the
 * first failure is "file:line:col: route N topic|key template ...". */
int route_table_check_fields(const struct route_table *t, route_check_fn fn,
                             void *ud, char *err, size_t errlen);

/* Route i's MQTT subscription filter ({x} -> +), or NULL. */
const char *route_filter(const struct route_table *t, size_t i);

/* The subscription filters, one per route, duplicates and filters covered
 * by another (a/# covers a/b) removed. Borrowed from the table. */
size_t route_table_filters(const struct route_table *t, const char ***filters);

enum route_status {
    ROUTE_OK = 0,
    ROUTE_NO_MATCH,  /* no route matches the topic */
    ROUTE_BAD_TOPIC, /* the captures make an illegal Kafka topic name */
    ROUTE_TOO_LONG,  /* topic or key longer than the limit */
    ROUTE_NO_FIELD,  /* route_expand: a payload field is not set */
    ROUTE_BAD_FIELD, /* route_expand: a payload field is not UTF-8 */
};

struct route_span {
    const char *s;
    size_t len;
};

struct route_result {
    enum route_status status;
    int index; /* the route that matched, or -1 */
    const struct conf_route *route;
    char topic[ROUTE_TOPIC_MAX + 1];
    char key[ROUTE_KEY_MAX + 1];
    size_t key_len;
    int has_key;
    int pending; /* templates name {payload.x}: see route_expand */
    struct route_span caps[CONF_MAX_CAPTURES]; /* borrowed from the topic */
    char reason[160]; /* for anything but ROUTE_OK, a sentence */
};

/* Routes one MQTT topic (a NUL-terminated, valid UTF-8 topic name). When
 * the route's templates name payload fields, topic and key are left empty
 * and out->pending is set: the caller decodes and calls route_expand(). */
enum route_status route_match(const struct route_table *t, const char *topic,
                              struct route_result *out);

/* Gives a payload field's text for a template: the dotted path after
 * "payload." (not NUL-terminated), written into buf (at most cap bytes).
 * 0; -ENOENT not set; -ENOSPC too long; -EILSEQ not UTF-8. */
typedef int (*route_field_fn)(void *ud, const char *path, size_t len, char *buf,
                              size_t cap, size_t *olen);

/* Renders r's topic and key again (r from route_match() with ROUTE_OK, the
 * MQTT topic still alive), captures and payload fields (through fn) alike.
 * Can be called once per split element. No allocation. */
enum route_status route_expand(const struct route_table *t,
                               struct route_result *r, route_field_fn fn,
                               void *ud);

/* 1 if s is a legal Kafka topic name: [A-Za-z0-9._-], 1..249, not "." or
 * "..". */
int route_kafka_topic_ok(const char *s);

#endif
