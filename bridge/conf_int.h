/*
 * conf_int.h — the key tables (conf_keys.c) and the loader (conf.c) that
 * walks the YAML document against them. Nothing else includes it.
 */
#ifndef MQTT2KAFKA_CONF_INT_H
#define MQTT2KAFKA_CONF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/conf.h"

enum ktype {
    T_STR,     /* char *                                          */
    T_INT,     /* int or int64_t, plain integer in [min, max]      */
    T_SIZE,    /* int64_t bytes: "1GiB", "100MB", "1000"           */
    T_DUR_S,   /* int or int64_t seconds: "12h", "30" (= seconds)  */
    T_DUR_MS,  /* int or int64_t ms: "10s", "250ms", "7d"          */
    T_ENUM,    /* int: one of enums[].name, stored as enums[].val  */
    T_CHOICE,  /* char *: one of enums[].name, stored as text      */
    T_PROPS,   /* kafka.properties: any name → text, verbatim      */
    T_FILE,    /* char *: a path, or credential:NAME (conf_file)   */
    T_SECTION, /* int: 1 when the nested mapping is there; its keys
                  are conf_subsections' "section.key" entry        */
};

#define K_REQUIRED 1u
#define K_EMPTY_OK 2u
#define K_TOPIC    4u /* the value must be a legal Kafka topic name */
#define K_SECRET   8u /* a secret: never printed, never in an error */
#define K_PRIVATE                                                              \
    16u /* T_FILE: a secret or private key file: others                        \
           must not be able to read it; a T_FILE named                         \
           "x_file" with K_SECRET fills key "x" */

/* an MQTT 5 share name ($share/<name>/): no '/', '+' or '#' */
#define K_SHARE 32u
#define K_OFF   64u /* T_SIZE: "off" is accepted and stored as 0 */

struct kenum {
    const char *name;
    int val;
};

struct key {
    const char *name;
    enum ktype type;
    const char *def; /* default as the user would write it; NULL: none */
    size_t off, size;
    int64_t min, max;
    const struct kenum *enums; /* {NULL} terminated */
    unsigned flags;
    const char *help;
};

struct section {
    const char *name;
    const struct key *keys; /* NULL: routes */
};

extern const struct key conf_gateway_keys[], conf_route_keys[];
extern const struct section conf_sections[];
extern const size_t conf_nsections;
/* The nested mappings, named "section.key" (mqtt.tls, kafka.security). */
extern const struct section conf_subsections[];
extern const size_t conf_nsubsections;
/* The keys of the nested mapping named name ("mqtt.tls"), or NULL. */
const struct key *conf_subsection(const char *name);

/* Calls fn for every key of the scalar sections and their nested
 * mappings, with its full name ("mqtt.tls.ca_file"); not routes. */
void conf_each_key(void (*fn)(void *ud, const struct key *k, const char *name),
                   void *ud);
/* librdkafka property names the bridge owns, with why: {name, why}. */
extern const char *const conf_owned_props[][2];
extern const size_t conf_nowned_props;

/* Converts default or file text for key k and stores it at base + k->off;
 * on error why says what was expected. -EINVAL or -ENOMEM. */
int conf_set_text(const struct key *k, const char *s, void *base, char *why,
                  size_t wlen);
/* Stores v as an int or an int64_t, as size says. */
void conf_store_int(void *p, size_t size, int64_t v);
/* "a string", "a size (e.g. ...)", for messages. */
const char *conf_type_name(enum ktype t);
/* "from 1 to 65535", "64KiB to 1GiB"; "a | b | c". */
void conf_range_text(const struct key *k, char *buf, size_t len);
void conf_choices_text(const struct kenum *e, char *buf, size_t len);

#endif
