/*
 * conf.c — the YAML configuration: libyaml's document tree → struct conf.
 *
 * Every key lives in a table (name, type, default, offset, range, help),
 * one table per section and one for a route, in the manner of Fluent Bit's
 * config maps. The loader walks the document against the tables, so a key
 * that is not in a table is an error, and `check --keys` prints the tables.
 * Defaults are written as text and go through the same converters as the
 * file, so what the help says is what the loader does.
 *
 * Every error is "file:line:col: message" with 1-based libyaml marks and
 * says what was expected. Routes are checked here, once, so that a config
 * that loads can route: a match is a valid MQTT filter with `{name}`
 * captures, templates name only captures the match defines, and a Kafka
 * topic template's literal parts could make a legal Kafka topic name.
 *
 * Depends on libyaml and libc only (and spool.h for two enum values,
 * pb.h to check payload types and the fields templates name). No
 * global state: conf_parse() is safe to call from a fuzzer in a loop.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "bridge/pb.h"
#include "spool/spool.h"

enum ktype {
    T_STR,    /* char *                                          */
    T_INT,    /* int or int64_t, plain integer in [min, max]      */
    T_SIZE,   /* int64_t bytes: "1GiB", "100MB", "1000"           */
    T_DUR_S,  /* int or int64_t seconds: "12h", "30" (= seconds)  */
    T_DUR_MS, /* int or int64_t ms: "10s", "250ms", "7d"          */
    T_ENUM,   /* int: one of enums[].name, stored as enums[].val  */
    T_CHOICE, /* char *: one of enums[].name, stored as text      */
    T_PROPS,  /* kafka.properties: any name → text, verbatim      */
};

#define K_REQUIRED 1u
#define K_EMPTY_OK 2u
#define K_TOPIC    4u /* the value must be a legal Kafka topic name */

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

#define CF(f) offsetof(struct conf, f), sizeof(((struct conf *)0)->f)
#define RF(f)                                                                  \
    offsetof(struct conf_route, f), sizeof(((struct conf_route *)0)->f)
#define KiB ((int64_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)
#define TiB (GiB * 1024)

static const struct kenum e_protocol[] = {
    {"5", 5}, {"3.1.1", 4}, {"311", 4}, {NULL, 0}};
static const struct kenum e_on_full[] = {{"drop_oldest", SPOOL_DROP_OLDEST},
                                         {"backpressure", SPOOL_BACKPRESSURE},
                                         {NULL, 0}};
static const struct kenum e_sync[] = {
    {"full", SPOOL_SYNC_FULL}, {"normal", SPOOL_SYNC_NORMAL}, {NULL, 0}};
static const struct kenum e_compression[] = {{"none", 0},   {"gzip", 0},
                                             {"snappy", 0}, {"lz4", 0},
                                             {"zstd", 0},   {NULL, 0}};
static const struct kenum e_level[] = {
    {"error", 0}, {"warn", 0}, {"info", 0}, {"debug", 0}, {NULL, 0}};

static const struct key gateway_keys[] = {
    {"id", T_STR, NULL, CF(gateway.id), 1, 128, NULL, K_REQUIRED,
     "this gateway's unique name; sent as the gateway.id Kafka header"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key mqtt_keys[] = {
    {"host", T_STR, "127.0.0.1", CF(mqtt.host), 1, 255, NULL, 0,
     "the local MQTT broker"},
    {"port", T_INT, "1883", CF(mqtt.port), 1, 65535, NULL, 0, "its TCP port"},
    {"client_id", T_STR, NULL, CF(mqtt.client_id), 1, 65535, NULL, 0,
     "fixed client id, so the broker keeps our session while we are away "
     "(default mqtt2kafka-<gateway.id>)"},
    {"protocol", T_ENUM, "5", CF(mqtt.protocol), 0, 0, e_protocol, 0,
     "MQTT protocol version"},
    /* Not 2: libmosquitto 2.0 sends PUBREC before it hands the message over,
     * so a crash in between loses it. At 1, QoS 2 publishes reach us at 1. */
    {"qos", T_INT, "1", CF(mqtt.qos), 0, 1, NULL, 0,
     "subscription QoS: 1 (at least once; QoS 2 publishes arrive at 1) or 0 "
     "(may lose)"},
    {"keepalive", T_DUR_S, "30", CF(mqtt.keepalive), 5, 65535, NULL, 0,
     "seconds between pings when idle"},
    {"session_expiry", T_DUR_S, "86400", CF(mqtt.session_expiry), 0,
     4294967295LL, NULL, 0,
     "seconds the broker keeps our session and queued messages (MQTT 5)"},
    {"reconnect_max", T_DUR_S, "30", CF(mqtt.reconnect_max), 1, 3600, NULL, 0,
     "cap of the reconnect backoff, in seconds"},
    {"username", T_STR, NULL, CF(mqtt.username), 0, 65535, NULL, K_EMPTY_OK,
     "optional"},
    {"password", T_STR, NULL, CF(mqtt.password), 0, 65535, NULL, K_EMPTY_OK,
     "optional"},
    {"max_payload", T_SIZE, "256KiB", CF(mqtt.max_payload), 1, 268435455, NULL,
     0, "larger payloads go to the dead-letter topic"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key kafka_keys[] = {
    {"brokers", T_STR, "127.0.0.1:9092", CF(kafka.brokers), 1, 4096, NULL, 0,
     "bootstrap brokers, host:port[,host:port...]"},
    {"compression", T_CHOICE, "lz4", CF(kafka.compression), 0, 0, e_compression,
     0, "compression of record batches"},
    {"dead_letter_topic", T_STR, "mqtt2kafka.dead-letter",
     CF(kafka.dead_letter_topic), 1, 249, NULL, K_TOPIC,
     "where messages the bridge rejects go, with an error.reason header"},
    {"inflight_records", T_INT, "10000", CF(kafka.inflight_records), 1, 1000000,
     NULL, 0, "at most this many records awaiting delivery"},
    {"inflight_bytes", T_SIZE, "16MiB", CF(kafka.inflight_bytes), 64 * KiB,
     1 * GiB, NULL, 0, "at most this many bytes awaiting delivery"},
    {"shutdown_timeout", T_DUR_MS, "10s", CF(kafka.shutdown_timeout), 0, 600000,
     NULL, 0, "how long to wait for deliveries on exit"},
    {"properties", T_PROPS, NULL, 0, 0, 0, 0, NULL, 0,
     "any librdkafka property, passed through verbatim"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key spool_keys[] = {
    {"path", T_STR, "/var/lib/mqtt2kafka/spool.db", CF(spool.path), 1, 4096,
     NULL, 0, "the SQLite spool file"},
    {"max_bytes", T_SIZE, "1GiB", CF(spool.max_bytes), 0, 16 * TiB, NULL, 0,
     "cap on the spool's files on disk; 0: no cap"},
    {"on_full", T_ENUM, "drop_oldest", CF(spool.on_full), 0, 0, e_on_full, 0,
     "when full: drop the oldest records, or stop reading MQTT"},
    {"max_age", T_DUR_MS, "7d", CF(spool.max_age), 0, 3650 * 86400000LL, NULL,
     0, "records older than this expire (counted); 0: never"},
    {"sync", T_ENUM, "full", CF(spool.sync), 0, 0, e_sync, 0,
     "full survives power loss; normal survives a crash"},
    {"commit_delay", T_DUR_MS, "5ms", CF(spool.commit_delay), 0, 1000, NULL, 0,
     "how long received messages may wait to be committed (and acknowledged) "
     "together: "
     "fewer, larger commits write less to flash"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key log_keys[] = {
    {"stats_interval", T_DUR_S, "60", CF(log.stats_interval), 0, 86400, NULL, 0,
     "seconds between counter log lines; 0: only on shutdown"},
    {"level", T_CHOICE, "info", CF(log.level), 0, 0, e_level, 0,
     "log verbosity"},
    {"status_file", T_STR, "/run/mqtt2kafka/status", CF(log.status_file), 0,
     4096, NULL, K_EMPTY_OK,
     "where the daemon keeps its state for `mqtt2kafka status` (tmpfs); empty: "
     "none"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct kenum e_format[] = {{"raw", CONF_FORMAT_RAW},
                                        {"envelope", CONF_FORMAT_ENVELOPE},
                                        {"json", CONF_FORMAT_JSON},
                                        {NULL, 0}};

/* One line per route key. */
static const struct key route_keys[] = {
    {"match", T_STR, NULL, RF(match), 1, 65535, NULL, K_REQUIRED,
     "MQTT topic pattern; {name} captures a level, a trailing # the rest"},
    {"topic", T_STR, NULL, RF(topic), 1, 4096, NULL, K_REQUIRED,
     "Kafka topic template, e.g. iot.sensor.{region}"},
    {"key", T_STR, NULL, RF(key), 1, 4096, NULL, 0,
     "Kafka key template (default: no key)"},
    {"payload", T_STR, "raw", RF(payload), 1, 255, NULL, 0,
     "raw (no decoding) or the payload's protobuf type, e.g. "
     "iot.telemetry.v1.SensorReading; "
     "templates may then name {payload.field}"},
    {"format", T_ENUM, "raw", RF(format), 0, 0, e_format, 0,
     "the record value: the payload bytes, an iot.bridge.v1.Envelope, or JSON "
     "(needs payload)"},
    {"split", T_STR, NULL, RF(split), 1, 255, NULL, 0,
     "a repeated message field of the payload: one Kafka record per element"},
    {"max_payload", T_SIZE, "0", RF(max_payload), 0, 268435455, NULL, 0,
     "larger payloads on this route dead-letter; 0: mqtt.max_payload applies"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

struct section {
    const char *name;
    const struct key *keys; /* NULL: routes */
};

static const struct section sections[] = {
    {"gateway", gateway_keys}, {"mqtt", mqtt_keys}, {"kafka", kafka_keys},
    {"spool", spool_keys},     {"log", log_keys},   {"routes", NULL},
};
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* Property names the bridge owns: the promise depends on them. */
static const char *const owned_props[][2] = {
    {"enable.idempotence", "the bridge always enables idempotence"},
    {"acks", "the bridge always uses acks=all"},
    {"bootstrap.servers", "use kafka.brokers"},
    {"metadata.broker.list", "use kafka.brokers"},
    {"compression.type", "use kafka.compression"},
    {"compression.codec", "use kafka.compression"},
};

struct ctx {
    const char *name;
    const char *buf; /* the whole input, for reader errors' offsets */
    size_t len;
    yaml_document_t *doc;
    struct conf *c;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int
fail(struct ctx *x, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(x->err, x->errlen, "%s:%zu:%zu: ", x->name, m.line + 1,
                     m.column + 1);
    if (n >= 0 && (size_t)n < x->errlen) {
        va_start(ap, fmt);
        vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* ---- units ---------------------------------------------------------- */

struct unit {
    const char *name;
    int64_t mult;
};

static int parse_units(const char *s, const struct unit *u, int64_t plain,
                       int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    if (!s || *p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (*p == ' ')
        p++;
    int64_t mult = *p ? 0 : plain;
    for (; *p && u->name; u++)
        if (!strcasecmp(p, u->name))
            mult = u->mult;
    if (!mult || v > INT64_MAX / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

static const struct unit size_units[] = {{"B", 1},
                                         {"KB", 1000},
                                         {"MB", 1000000},
                                         {"GB", 1000000000},
                                         {"TB", 1000 * 1000000000LL},
                                         {"KiB", KiB},
                                         {"MiB", MiB},
                                         {"GiB", GiB},
                                         {"TiB", TiB},
                                         {NULL, 0}};
static const struct unit dur_units[] = {{"ms", 1},       {"s", 1000},
                                        {"m", 60000},    {"h", 3600000},
                                        {"d", 86400000}, {NULL, 0}};

int conf_parse_size(const char *s, int64_t *out)
{
    return parse_units(s, size_units, 1, out);
}

int conf_parse_duration_ms(const char *s, int64_t *out)
{
    return parse_units(s, dur_units, 1000, out); /* a plain number is seconds */
}

static void format_units(int64_t v, const struct unit *u, size_t n, char *buf,
                         size_t len)
{
    for (size_t i = n; i-- > 0;)
        if (v != 0 && v % u[i].mult == 0) {
            snprintf(buf, len, "%lld%s", (long long)(v / u[i].mult), u[i].name);
            return;
        }
    snprintf(buf, len, "%lld%s", (long long)v, u[0].name);
}

void conf_format_size(int64_t bytes, char *buf, size_t len)
{
    static const struct unit u[] = {
        {"B", 1}, {"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"TiB", TiB}};
    format_units(bytes, u, 5, buf, len);
}

void conf_format_duration_ms(int64_t ms, char *buf, size_t len)
{
    format_units(ms, dur_units, 5, buf, len);
}

/* ---- values --------------------------------------------------------- */

static void store_int(void *p, size_t size, int64_t v)
{
    if (size == sizeof(int64_t))
        *(int64_t *)p = v;
    else
        *(int *)p = (int)v;
}

static void range_text(const struct key *k, char *buf, size_t len)
{
    char a[32], b[32];
    if (k->type == T_SIZE) {
        conf_format_size(k->min, a, sizeof a);
        conf_format_size(k->max, b, sizeof b);
    } else if (k->type == T_DUR_MS) {
        conf_format_duration_ms(k->min, a, sizeof a);
        conf_format_duration_ms(k->max, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%lld", (long long)k->min);
        snprintf(b, sizeof b, "%lld", (long long)k->max);
    }
    snprintf(buf, len, "%s to %s%s", a, b,
             k->type == T_DUR_S ? " seconds" : "");
}

static void choices_text(const struct kenum *e, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (; e->name && n < len; e++)
        n +=
            (size_t)snprintf(buf + n, len - n, "%s%s", n ? " | " : "", e->name);
}

static const char *const type_names[] = {
    [T_STR] = "a string",
    [T_INT] = "an integer",
    [T_SIZE] = "a size (e.g. 512MiB, 1GiB, 100MB, or bytes)",
    [T_DUR_S] = "a duration (e.g. 30s, 12h, or plain seconds)",
    [T_DUR_MS] = "a duration (e.g. 250ms, 10s, 7d, or plain seconds)",
    [T_ENUM] = "one of",
    [T_CHOICE] = "one of",
    [T_PROPS] = "a mapping of librdkafka property names to values",
};

static int kafka_name_ok(const char *s, char *bad)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
                    "6789._-",
                    *s)) {
            *bad = *s;
            return 0;
        }
    return 1;
}

/* Converts text for key k and stores it at base+off. On error writes what
 * was expected into why. Used for defaults and for the file alike. */
static int set_text(const struct key *k, const char *s, void *base, char *why,
                    size_t wlen)
{
    void *p = (char *)base + k->off;
    int64_t v = 0;
    char buf[128];
    int rc;

    switch (k->type) {
    case T_STR:
    case T_CHOICE: {
        size_t n = strlen(s);
        if (k->type == T_CHOICE) {
            const struct kenum *e = k->enums;
            while (e->name && strcmp(e->name, s))
                e++;
            if (!e->name) {
                choices_text(k->enums, buf, sizeof buf);
                snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf,
                         s);
                return -EINVAL;
            }
        } else if (n == 0 && !(k->flags & K_EMPTY_OK)) {
            snprintf(why, wlen, "expected a non-empty string");
            return -EINVAL;
        } else if ((int64_t)n > k->max) {
            snprintf(why, wlen, "expected a string of %d to %lld characters",
                     k->flags & K_EMPTY_OK ? 0 : 1, (long long)k->max);
            return -EINVAL;
        }
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                snprintf(why, wlen, "control characters are not allowed");
                return -EINVAL;
            }
        char bad = '?';
        if ((k->flags & K_TOPIC) && !kafka_name_ok(s, &bad)) {
            snprintf(why, wlen,
                     "\"%.60s\" is not a legal Kafka topic name ('%c' is not "
                     "allowed: "
                     "use only A-Z a-z 0-9 . _ -)",
                     s, bad);
            return -EINVAL;
        }
        char *d = strdup(s);
        if (!d)
            return -ENOMEM;
        free(*(char **)p);
        *(char **)p = d;
        return 0;
    }
    case T_ENUM:
        for (const struct kenum *e = k->enums; e->name; e++)
            if (!strcmp(e->name, s)) {
                store_int(p, k->size, e->val);
                return 0;
            }
        choices_text(k->enums, buf, sizeof buf);
        snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf, s);
        return -EINVAL;
    case T_INT: {
        char *end;
        errno = 0;
        long long ll = strtoll(s, &end, 10);
        rc = (*s && !*end && errno == 0 && *s != ' ') ? 0 : -EINVAL;
        v = ll;
        break;
    }
    case T_SIZE:
        rc = conf_parse_size(s, &v);
        break;
    case T_DUR_S:
    case T_DUR_MS:
        rc = conf_parse_duration_ms(s, &v);
        if (rc == 0 && k->type == T_DUR_S) {
            if (v % 1000) {
                snprintf(why, wlen, "expected whole seconds, got \"%.60s\"", s);
                return -EINVAL;
            }
            v /= 1000;
        }
        break;
    default:
        snprintf(why, wlen, "internal: no text form");
        return -EINVAL;
    }
    range_text(k, buf, sizeof buf);
    if (rc) {
        snprintf(why, wlen, "expected %s from %s, got \"%.60s\"",
                 type_names[k->type], buf, s);
        return -EINVAL;
    }
    if (v < k->min || v > k->max) {
        snprintf(why, wlen, "%.60s is out of range (%s)", s, buf);
        return -EINVAL;
    }
    store_int(p, k->size, v);
    return 0;
}

static int apply_defaults(const struct key *keys, void *base)
{
    char why[160];
    for (const struct key *k = keys; k->name; k++)
        if (k->def && set_text(k, k->def, base, why, sizeof why))
            return -ENOMEM; /* the defaults are tested: only strdup can fail */
    return 0;
}

static void free_strings(const struct key *keys, void *base)
{
    for (const struct key *k = keys; k->name; k++)
        if (k->type == T_STR || k->type == T_CHOICE) {
            char **p = (char **)((char *)base + k->off);
            free(*p);
            *p = NULL;
        }
}

/* ---- the tree ------------------------------------------------------- */

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return is_null(n) ? "nothing" : "a scalar";
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* Small edit distance, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[40];
    if (la >= 40 || lb >= 40)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0]++;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* "unknown key" with the nearest name and the list of valid ones. */
static int unknown_key(struct ctx *x, yaml_mark_t m, const char *where,
                       const char *name, const char *const *names,
                       size_t stride, size_t n)
{
    char list[512], hint[96] = "";
    size_t len = 0, best = 3;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *v =
            *(const char *const *)(const void *)((const char *)names +
                                                 i * stride);
        size_t d = distance(name, v);
        if (d < best) {
            best = d;
            snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", v);
        }
        if (len < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                    len ? ", " : "", v);
    }
    return fail(x, m, "unknown key \"%.60s\" in %s%s; expected one of: %s",
                name, where, hint, list);
}

/* Checks the keys of a mapping node are scalars, known and not repeated;
 * returns the index into keys of pair i through *ki. */
static int mapping_key(struct ctx *x, yaml_node_t *map, yaml_node_pair_t *pair,
                       const struct key *keys, const char *where, size_t *ki)
{
    yaml_node_t *kn = yaml_document_get_node(x->doc, pair->key);
    if (kn->type != YAML_SCALAR_NODE)
        return fail(x, kn->start_mark, "expected a key name in %s, got %s",
                    where, kind(kn));
    size_t n = 0;
    while (keys[n].name)
        n++;
    for (*ki = 0; *ki < n && strcmp(keys[*ki].name, scalar(kn)); ++*ki)
        ;
    if (*ki == n)
        return unknown_key(x, kn->start_mark, where, scalar(kn), &keys[0].name,
                           sizeof keys[0], n);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
        yaml_node_t *qn = yaml_document_get_node(x->doc, q->key);
        if (qn->type == YAML_SCALAR_NODE && !strcmp(scalar(qn), scalar(kn)))
            return fail(x, kn->start_mark,
                        "duplicate key \"%s\" in %s (first set on line %zu)",
                        scalar(kn), where, qn->start_mark.line + 1);
    }
    return 0;
}

static int parse_props(struct ctx *x, yaml_node_t *map)
{
    struct conf *c = x->c;
    if (is_null(map))
        return 0;
    if (map->type != YAML_MAPPING_NODE)
        return fail(x, map->start_mark,
                    "expected %s for kafka.properties, got %s",
                    type_names[T_PROPS], kind(map));
    size_t n =
        (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n > CONF_MAX_PROPS)
        return fail(x, map->start_mark,
                    "too many kafka.properties (at most %d)", CONF_MAX_PROPS);
    c->kafka.props = calloc(n ? n : 1, sizeof *c->kafka.props);
    if (!c->kafka.props)
        return -ENOMEM;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pr->value);
        if (kn->type != YAML_SCALAR_NODE || is_null(kn))
            return fail(x, kn->start_mark,
                        "expected a librdkafka property name, got %s",
                        kind(kn));
        for (size_t i = 0; i < sizeof owned_props / sizeof owned_props[0]; i++)
            if (!strcmp(scalar(kn), owned_props[i][0]))
                return fail(x, kn->start_mark,
                            "kafka.properties: \"%s\" cannot be set here: %s",
                            owned_props[i][0], owned_props[i][1]);
        for (size_t i = 0; i < c->kafka.nprops; i++)
            if (!strcmp(c->kafka.props[i].name, scalar(kn)))
                return fail(x, kn->start_mark,
                            "duplicate key \"%s\" in kafka.properties (first "
                            "set on line %d)",
                            scalar(kn), c->kafka.props[i].line);
        if (vn->type != YAML_SCALAR_NODE || is_null(vn))
            return fail(x, vn->start_mark,
                        "expected a value for kafka property \"%s\" (a string "
                        "or number), got %s",
                        scalar(kn), kind(vn));
        struct conf_prop *p = &c->kafka.props[c->kafka.nprops];
        p->name = strdup(scalar(kn));
        p->value = strdup(scalar(vn));
        p->line = (int)kn->start_mark.line + 1;
        p->col = (int)kn->start_mark.column + 1;
        c->kafka.nprops++;
        if (!p->name || !p->value)
            return -ENOMEM;
    }
    return 0;
}

static int set_node(struct ctx *x, const struct key *k, yaml_node_t *vn,
                    void *base, const char *where)
{
    char why[320], choices[128];
    if (k->type == T_PROPS)
        return parse_props(x, vn);
    if (vn->type != YAML_SCALAR_NODE || is_null(vn)) {
        choices[0] = '\0';
        if (k->enums)
            choices_text(k->enums, choices, sizeof choices);
        const char *hint = "";
        if (vn->type == YAML_MAPPING_NODE && k->type == T_STR)
            hint = " (a value that starts with '{' must be quoted: \"{name}\")";
        return fail(x, vn->start_mark, "expected %s%s%s for %s.%s, got %s%s",
                    type_names[k->type], *choices ? " " : "", choices, where,
                    k->name, kind(vn), hint);
    }
    int rc = set_text(k, scalar(vn), base, why, sizeof why);
    if (rc == -EINVAL)
        return fail(x, vn->start_mark, "%s.%s: %s", where, k->name, why);
    return rc;
}

/* Applies a mapping node to base through keys; *seen marks which keys were
 * given. where names the mapping in messages ("mqtt", "route 2"). */
static int apply_mapping(struct ctx *x, yaml_node_t *map,
                         const struct key *keys, void *base, const char *where,
                         unsigned *seen)
{
    *seen = 0;
    if (is_null(map))
        return 0;
    if (map->type != YAML_MAPPING_NODE)
        return fail(x, map->start_mark,
                    "expected a mapping of keys for %s, got %s", where,
                    kind(map));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        size_t ki = 0;
        int rc = mapping_key(x, map, pr, keys, where, &ki);
        if (!rc)
            rc = set_node(x, &keys[ki],
                          yaml_document_get_node(x->doc, pr->value), base,
                          where);
        if (rc)
            return rc;
        *seen |= 1u << ki;
    }
    return 0;
}

/* ---- routes --------------------------------------------------------- */

struct caps {
    size_t n;
    const char *name[CONF_MAX_CAPTURES];
    size_t len[CONF_MAX_CAPTURES];
};

static int ident_ok(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
            return 0;
    return 1;
}

/* Checks a match and writes its filter ({x} → +) into r->filter. */
static int compile_match(struct ctx *x, struct conf_route *r, int no,
                         yaml_mark_t m, struct caps *caps)
{
    const char *s = r->match;
    size_t len = strlen(s), o = 0;
    char *f = malloc(len + 1);
    if (!f)
        return -ENOMEM;
    r->filter = f;
    caps->n = 0;
    for (const char *lv = s;;) {
        const char *end = strchrnul(lv, '/');
        size_t n = (size_t)(end - lv);
        if (memchr(lv, '#', n) && (n != 1 || *end))
            return fail(x, m,
                        "route %d match \"%.80s\" is not a valid MQTT filter: "
                        "'#' must be "
                        "a whole level and the last one",
                        no, s);
        if (memchr(lv, '+', n) && n != 1)
            return fail(x, m,
                        "route %d match \"%.80s\" is not a valid MQTT filter: "
                        "'+' must be "
                        "a whole level",
                        no, s);
        if (n >= 2 && lv[0] == '{' && lv[n - 1] == '}') {
            if (!ident_ok(lv + 1, n - 2))
                return fail(
                    x, m,
                    "route %d match: capture \"%.*s\" is not a valid name "
                    "(letters, digits and _, not starting with a digit)",
                    no, (int)n, lv);
            for (size_t i = 0; i < caps->n; i++)
                if (caps->len[i] == n - 2 &&
                    !memcmp(caps->name[i], lv + 1, n - 2))
                    return fail(x, m, "route %d match captures {%.*s} twice",
                                no, (int)(n - 2), lv + 1);
            if (caps->n == CONF_MAX_CAPTURES)
                return fail(x, m, "route %d match has more than %d captures",
                            no, CONF_MAX_CAPTURES);
            caps->name[caps->n] = lv + 1;
            caps->len[caps->n++] = n - 2;
            f[o++] = '+';
        } else if (memchr(lv, '{', n) || memchr(lv, '}', n)) {
            return fail(
                x, m,
                "route %d match \"%.80s\": a capture must be a whole level, "
                "like sensors/{device}/data",
                no, s);
        } else {
            memcpy(f + o, lv, n);
            o += n;
        }
        if (!*end)
            break;
        f[o++] = '/';
        lv = end + 1;
    }
    f[o] = '\0';
    return 0;
}

static void caps_text(const struct caps *caps, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    if (caps->n == 0)
        snprintf(buf, len, "no captures");
    for (size_t i = 0; i < caps->n && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%.*s", i ? ", " : "",
                              (int)caps->len[i], caps->name[i]);
}

/* The payload type of r (NULL for raw) and, with split, its element type. */
static const ProtobufCMessageDescriptor *
payload_types(const struct conf_route *r,
              const ProtobufCMessageDescriptor **elem)
{
    char why[8];
    const ProtobufCMessageDescriptor *d = pb_type(r->payload);
    const ProtobufCFieldDescriptor *f =
        d && r->split ? pb_split_field(d, r->split, why, 1) : NULL;
    *elem = f ? f->descriptor : NULL;
    return d;
}

/* {payload.path} in a template: the route decodes, and the path names a
 * scalar field of the payload (with split: of the element, or else of the
 * whole message, which is where a field missing in an element is taken). */
static int check_field_ref(struct ctx *x, const struct conf_route *r, int no,
                           const char *what, const char *path, size_t n,
                           yaml_mark_t m)
{
    char why[256], why2[256];
    const ProtobufCMessageDescriptor *elem, *d = payload_types(r, &elem);
    if (!d)
        return fail(
            x, m,
            "route %d %s template names {payload.%.*s}, but the route does not "
            "decode its payload (set payload: to a message type)",
            no, what, (int)n, path);
    if (elem && pb_field_path_check(elem, path, n, why2, sizeof why2) == 0)
        return 0;
    if (pb_field_path_check(d, path, n, why, sizeof why) == 0)
        return 0;
    return fail(x, m, "route %d %s template {payload.%.*s}: %s", no, what,
                (int)n, path, elem ? why2 : why);
}

/* Checks a template: captures exist, braces close, and for a Kafka topic
 * that its literal text could be part of a legal name. */
static int check_template(struct ctx *x, int no, const char *what,
                          const char *t, yaml_mark_t m, const struct caps *caps,
                          int topic, const struct conf_route *r)
{
    size_t lit = 0, ncap = 0;
    char names[256];
    for (const char *p = t; *p; p++) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e)
                return fail(x, m,
                            "route %d %s template \"%.80s\": '{' is not closed",
                            no, what, t);
            size_t n = (size_t)(e - p - 1), i;
            if (n > 8 && !memcmp(p + 1, "payload.", 8)) {
                if (check_field_ref(x, r, no, what, p + 9, n - 8, m))
                    return -EINVAL;
                ncap++;
                p = e;
                continue;
            }
            for (i = 0; i < caps->n; i++)
                if (caps->len[i] == n && !memcmp(caps->name[i], p + 1, n))
                    break;
            if (i == caps->n) {
                caps_text(caps, names, sizeof names);
                return fail(
                    x, m,
                    "route %d %s template names {%.*s}, but match defines %s",
                    no, what, (int)n, p + 1, names);
            }
            ncap++;
            p = e;
            continue;
        }
        if (*p == '}')
            return fail(x, m, "route %d %s template \"%.80s\": '}' without '{'",
                        no, what, t);
        lit++;
        if (topic && !strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW"
                             "XYZ0123456789._-",
                             *p)) {
            if ((unsigned char)*p >= 0x80)
                return fail(x, m,
                            "route %d topic template \"%.80s\" can only "
                            "produce illegal "
                            "Kafka topic names: non-ASCII characters are not "
                            "allowed (use only "
                            "A-Z a-z 0-9 . _ -)",
                            no, t);
            return fail(
                x, m,
                "route %d topic template \"%.80s\" can only produce illegal "
                "Kafka "
                "topic names: '%c' is not allowed (use only A-Z a-z 0-9 . _ -)",
                no, t, *p);
        }
    }
    size_t max = topic ? 249 : 1024;
    if (lit > max)
        return fail(
            x, m,
            "route %d %s template is %zu characters long before any capture "
            "(at most %zu)",
            no, what, lit, max);
    if (topic && ncap == 0 && (!strcmp(t, ".") || !strcmp(t, "..")))
        return fail(x, m,
                    "route %d topic \"%s\" is not a legal Kafka topic name", no,
                    t);
    return 0;
}

static yaml_mark_t value_mark(struct ctx *x, yaml_node_t *map, const char *name)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        if (kn->type == YAML_SCALAR_NODE && !strcmp(scalar(kn), name))
            return yaml_document_get_node(x->doc, pr->value)->start_mark;
    }
    return map->start_mark;
}

/* payload, format and split agree with each other and with the schemas. */
static int check_payload(struct ctx *x, yaml_node_t *rn, int no,
                         const struct conf_route *r)
{
    char why[256], names[512];
    const ProtobufCMessageDescriptor *d = NULL;
    if (strcmp(r->payload, "raw") && !(d = pb_type(r->payload))) {
        pb_type_names(names, sizeof names);
        return fail(x, value_mark(x, rn, "payload"),
                    "route %d payload: unknown message type "
                    "\"%.80s\"; expected raw or one of: %s",
                    no, r->payload, names);
    }
    if (r->format == CONF_FORMAT_JSON && !d)
        return fail(x, value_mark(x, rn, "format"),
                    "route %d: format json needs a payload "
                    "message type (payload: raw cannot be transcoded)",
                    no);
    if (r->split && !d)
        return fail(x, value_mark(x, rn, "split"),
                    "route %d: split needs a payload message "
                    "type to find the field \"%.60s\" in",
                    no, r->split);
    if (r->split && !pb_split_field(d, r->split, why, sizeof why))
        return fail(x, value_mark(x, rn, "split"), "route %d split: %s", no,
                    why);
    return 0;
}

static int parse_route(struct ctx *x, yaml_node_t *rn, int no,
                       struct conf_route *r)
{
    char where[32];
    unsigned seen;
    struct caps caps;
    snprintf(where, sizeof where, "route %d", no);
    r->line = (int)rn->start_mark.line + 1;
    r->col = (int)rn->start_mark.column + 1;
    if (rn->type != YAML_MAPPING_NODE)
        return fail(x, rn->start_mark,
                    "expected route %d as a mapping with match, topic and "
                    "key, got %s",
                    no, kind(rn));
    int rc = apply_defaults(route_keys, r);
    if (!rc)
        rc = apply_mapping(x, rn, route_keys, r, where, &seen);
    if (rc)
        return rc;
    for (size_t i = 0; route_keys[i].name; i++)
        if ((route_keys[i].flags & K_REQUIRED) && !(seen & (1u << i)))
            return fail(x, rn->start_mark,
                        "route %d is missing required key \"%s\" (%s)", no,
                        route_keys[i].name, route_keys[i].help);
    rc = compile_match(x, r, no, value_mark(x, rn, "match"), &caps);
    if (!rc)
        rc = check_payload(x, rn, no, r);
    if (!rc)
        rc = check_template(x, no, "topic", r->topic,
                            value_mark(x, rn, "topic"), &caps, 1, r);
    if (!rc && r->key)
        rc = check_template(x, no, "key", r->key, value_mark(x, rn, "key"),
                            &caps, 0, r);
    return rc;
}

static int parse_routes(struct ctx *x, yaml_node_t *seq)
{
    struct conf *c = x->c;
    if (seq->type != YAML_SEQUENCE_NODE && !is_null(seq))
        return fail(x, seq->start_mark,
                    "expected a list of routes (\"- match: ...\"), got %s",
                    kind(seq));
    size_t n = is_null(seq) ? 0
                            : (size_t)(seq->data.sequence.items.top -
                                       seq->data.sequence.items.start);
    if (n == 0)
        return fail(x, seq->start_mark, "at least one route is required");
    if (n > CONF_MAX_ROUTES)
        return fail(x, seq->start_mark, "too many routes (%zu; at most %d)", n,
                    CONF_MAX_ROUTES);
    c->routes = calloc(n, sizeof *c->routes);
    if (!c->routes)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c->nroutes++;
        yaml_node_t *rn =
            yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);
        int rc = parse_route(x, rn, (int)i + 1, &c->routes[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- top level ------------------------------------------------------ */

static int parse_root(struct ctx *x, yaml_node_t *root)
{
    struct conf *c = x->c;
    unsigned given = 0, seen;
    if (root->type != YAML_MAPPING_NODE)
        return fail(x, root->start_mark,
                    "expected a mapping with sections gateway, mqtt, "
                    "kafka, spool, log and routes, got %s",
                    kind(root));
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pr->value);
        size_t i = 0;
        if (kn->type != YAML_SCALAR_NODE)
            return fail(x, kn->start_mark, "expected a section name, got %s",
                        kind(kn));
        while (i < NSECTIONS && strcmp(sections[i].name, scalar(kn)))
            i++;
        if (i == NSECTIONS)
            return unknown_key(x, kn->start_mark, "the top level", scalar(kn),
                               &sections[0].name, sizeof sections[0],
                               NSECTIONS);
        if (given & (1u << i))
            return fail(x, kn->start_mark, "duplicate section \"%s\"",
                        sections[i].name);
        given |= 1u << i;
        int rc = sections[i].keys ? apply_mapping(x, vn, sections[i].keys, c,
                                                  sections[i].name, &seen)
                                  : parse_routes(x, vn);
        if (rc)
            return rc;
        if (sections[i].keys == gateway_keys && !(seen & 1u))
            return fail(x, is_null(vn) ? kn->start_mark : vn->start_mark,
                        "gateway.id is required (%s)", gateway_keys[0].help);
    }
    if (!c->gateway.id)
        return fail(x, root->start_mark, "missing required key gateway.id (%s)",
                    gateway_keys[0].help);
    if (!c->nroutes)
        return fail(x, root->start_mark,
                    "missing routes: at least one route is required");
    if (!c->mqtt.client_id) {
        size_t n = strlen(c->gateway.id) + sizeof "mqtt2kafka-";
        if (!(c->mqtt.client_id = malloc(n)))
            return -ENOMEM;
        snprintf(c->mqtt.client_id, n, "mqtt2kafka-%s", c->gateway.id);
    }
    return 0;
}

static int load_doc(struct ctx *x, yaml_parser_t *p, yaml_document_t *doc)
{
    if (!yaml_parser_load(p, doc)) {
        yaml_mark_t m = p->problem_mark;
        if (p->error == YAML_MEMORY_ERROR)
            return -ENOMEM;
        if (p->error == YAML_READER_ERROR) {
            /* The reader gives a byte offset, not a mark. */
            m.line = m.column = 0;
            for (size_t i = 0; i < p->problem_offset && i < x->len; i++) {
                if (x->buf[i] == '\n') {
                    m.line++;
                    m.column = 0;
                } else if (((unsigned char)x->buf[i] & 0xc0) != 0x80) {
                    m.column++;
                }
            }
            return fail(x, m, "the file is not valid UTF-8 text: %s",
                        p->problem ? p->problem : "bad byte");
        }
        if (p->context)
            return fail(x, m,
                        "YAML syntax error: %s (%s that started on line %zu)",
                        p->problem, p->context, p->context_mark.line + 1);
        return fail(x, m, "YAML syntax error: %s",
                    p->problem ? p->problem : "unknown");
    }
    return 0;
}

int conf_parse(const char *buf, size_t len, const char *name, struct conf *c,
               char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t doc, extra;
    struct ctx x = {name ? name : "<config>", buf, len, &doc, c, err, errlen};
    yaml_mark_t start = {0, 0, 0};
    int rc = -ENOMEM, have_doc = 0;

    memset(c, 0, sizeof *c);
    if (errlen)
        err[0] = '\0';
    if (!yaml_parser_initialize(&p))
        return -ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!(c->path = strdup(x.name)))
        goto fail;
    for (size_t i = 0; i < NSECTIONS; i++)
        if (sections[i].keys && apply_defaults(sections[i].keys, c))
            goto fail;
    if ((rc = load_doc(&x, &p, &doc)))
        goto fail;
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = fail(
            &x, start,
            "the configuration is empty: gateway.id and routes are required");
        goto fail;
    }
    if ((rc = parse_root(&x, root)))
        goto fail;
    /* A second document would be silently ignored: say so instead. */
    x.doc = &extra;
    if ((rc = load_doc(&x, &p, &extra)))
        goto fail;
    root = yaml_document_get_root_node(&extra);
    if (root) {
        rc = fail(&x, root->start_mark,
                  "expected one YAML document; remove the '---' and "
                  "what follows");
        yaml_document_delete(&extra);
        goto fail;
    }
    yaml_document_delete(&extra);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return 0;
fail:
    if (rc == -ENOMEM && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", x.name);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    conf_fini(c);
    return rc;
}

int conf_load(const char *path, struct conf *c, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    int rc;
    FILE *f = fopen(path, "rb");

    memset(c, 0, sizeof *c);
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    if (!(buf = malloc(CONF_MAX_FILE + 1))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    n = fread(buf, 1, CONF_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto fail;
    }
    if (n > CONF_MAX_FILE) {
        rc = -EFBIG;
        snprintf(err, errlen,
                 "%s: larger than %d bytes: is this the configuration file?",
                 path, CONF_MAX_FILE);
        goto fail;
    }
    rc = conf_parse(buf, n, path, c, err, errlen);
fail:
    free(buf);
    fclose(f);
    return rc;
}

void conf_fini(struct conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NSECTIONS; i++)
        if (sections[i].keys)
            free_strings(sections[i].keys, c);
    for (size_t i = 0; i < c->nroutes; i++) {
        free_strings(route_keys, &c->routes[i]);
        free(c->routes[i].filter);
    }
    for (size_t i = 0; i < c->kafka.nprops; i++) {
        free(c->kafka.props[i].name);
        free(c->kafka.props[i].value);
    }
    free(c->kafka.props);
    free(c->routes);
    free(c->path);
    memset(c, 0, sizeof *c);
}

static void print_table(FILE *f, const char *prefix, const struct key *keys)
{
    char def[64], range[96], name[64];
    for (const struct key *k = keys; k->name; k++) {
        const char *t = k->type == T_STR      ? "string"
                        : k->type == T_INT    ? "integer"
                        : k->type == T_SIZE   ? "size"
                        : k->type == T_DUR_S  ? "duration (s)"
                        : k->type == T_DUR_MS ? "duration"
                        : k->type == T_PROPS  ? "mapping"
                                              : "choice";
        range[0] = '\0';
        if (k->enums)
            choices_text(k->enums, range, sizeof range);
        else if (k->type != T_STR && k->type != T_PROPS)
            range_text(k, range, sizeof range);
        snprintf(def, sizeof def, "%s",
                 k->flags & K_REQUIRED ? "required"
                 : k->def              ? k->def
                                       : "-");
        snprintf(name, sizeof name, "%s%s", prefix, k->name);
        fprintf(f, "  %-26s %-12s %-14s %s%s%s\n", name, t, def, k->help,
                *range ? "; " : "", range);
    }
}

void conf_print_keys(FILE *f)
{
    char prefix[32];
    fprintf(f, "  %-26s %-12s %-14s %s\n", "key", "type", "default", "meaning");
    for (size_t i = 0; i < NSECTIONS; i++) {
        snprintf(prefix, sizeof prefix, "%s%s", sections[i].name,
                 sections[i].keys ? "." : "[].");
        print_table(f, prefix,
                    sections[i].keys ? sections[i].keys : route_keys);
    }
}
