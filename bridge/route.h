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
#define ROUTE_KEY_MAX 1024

struct route_table;

/* Compiles the routes of a loaded conf. The table borrows c->routes: keep
 * the conf alive while the table is. Errors are "file:line:col: msg" (the
 * loader already checks templates, so this fails only on ENOMEM). */
int route_table_new(const struct conf *c, struct route_table **out, char *err,
                    size_t errlen);
void route_table_free(struct route_table *t);

/* The subscription filters, one per route, duplicates and filters covered
 * by another (a/# covers a/b) removed. Borrowed from the table. */
size_t route_table_filters(const struct route_table *t, const char ***filters);

enum route_status {
    ROUTE_OK = 0,
    ROUTE_NO_MATCH,      /* no route matches the topic */
    ROUTE_BAD_TOPIC,     /* the captures make an illegal Kafka topic name */
    ROUTE_TOO_LONG,      /* topic or key longer than the limit */
};

struct route_result {
    enum route_status status;
    int index;                 /* the route that matched, or -1 */
    const struct conf_route *route;
    char topic[ROUTE_TOPIC_MAX + 1];
    char key[ROUTE_KEY_MAX + 1];
    size_t key_len;
    int has_key;
    char reason[160];          /* for anything but ROUTE_OK, a sentence */
};

/* Routes one MQTT topic (a NUL-terminated, valid UTF-8 topic name). */
enum route_status route_match(const struct route_table *t, const char *topic,
                              struct route_result *out);

/* 1 if s is a legal Kafka topic name: [A-Za-z0-9._-], 1..249, not "." or
 * "..". */
int route_kafka_topic_ok(const char *s);

#endif
