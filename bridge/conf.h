/*
 * conf.h — the YAML configuration, loaded through a key table.
 *
 * conf_load() reads a file, conf_parse() a buffer (so a fuzzer can call it).
 * Unknown keys, wrong types and bad values are errors that name
 * "file:line:column: what was expected". The keys are a contract with
 * users: extend them, never rename them.
 *
 * The loader knows YAML and the key tables, nothing else: what a route's
 * templates and payload type mean is checked by the route and decode
 * stages when they are built from the conf (route.h, payload.h), at the
 * marks kept here, so each grammar lives in one place.
 */
#ifndef MQTT2KAFKA_CONF_H
#define MQTT2KAFKA_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EX_CONFIG_CODE                                                         \
    78 /* sysexits.h EX_CONFIG: the exit code of a bad config */
#define CONF_DEFAULT_PATH "/etc/mqtt2kafka/mqtt2kafka.yaml"
#define CONF_MAX_FILE     (1024 * 1024) /* conf_load refuses larger files */
#define CONF_MAX_ROUTES   256
#define CONF_MAX_PROPS    256
#define CONF_MAX_CAPTURES 16 /* {name} captures in one match */

enum conf_format { CONF_FORMAT_RAW, CONF_FORMAT_ENVELOPE, CONF_FORMAT_JSON };
enum conf_on_full { CONF_DROP_OLDEST = 0, CONF_BACKPRESSURE };
enum conf_sync { CONF_SYNC_FULL = 0, CONF_SYNC_NORMAL };

struct conf_mark { /* a place in the file, 1-based, for error messages */
    int line, col;
};

struct conf_route {
    char *name;          /* metrics label; default its 1-based position */
    char *match;         /* as written: sensors/{region}/{type}/{device} */
    char *topic;         /* Kafka topic template: iot.sensor.{region}.{type} */
    char *key;           /* key template, or NULL for no key */
    char *payload;       /* "raw" or a protobuf message type (payload.h) */
    int format;          /* enum conf_format */
    char *split;         /* a repeated message field of payload, or NULL */
    int64_t max_payload; /* bytes; 0: mqtt.max_payload */
    int line, col;       /* where the route starts in the file */
    /* where each value is (the route's start when the key is absent) */
    struct conf_mark at_match, at_topic, at_key, at_payload, at_format,
        at_split, at_name;
};

struct conf_prop { /* a librdkafka property, passed through verbatim */
    char *name;
    char *value;
    int line, col;
};

struct conf {
    char *path; /* the file it came from */
    struct {
        char *id;
    } gateway;
    struct {
        char *host;
        int port;
        char *client_id;
        int protocol; /* 5 or 4 (3.1.1) */
        int qos;
        int keepalive;
        int64_t session_expiry; /* seconds */
        int reconnect_max;      /* seconds, cap of the backoff (30) */
        char *username, *password;
        int64_t max_payload; /* bytes; larger payloads dead-letter */
    } mqtt;
    struct {
        char *brokers;
        char *compression;        /* lz4 */
        char *dead_letter_topic;  /* mqtt2kafka.dead-letter */
        int64_t inflight_records; /* window of records in flight (10000) */
        int64_t inflight_bytes;   /* window of bytes in flight (16 MiB) */
        int shutdown_timeout;     /* ms to wait for deliveries on exit */
        struct conf_prop *props;
        size_t nprops;
    } kafka;
    struct {
        char *path;
        int64_t max_bytes;
        int on_full;      /* enum conf_on_full */
        int64_t max_age;  /* ms; 0: never */
        int sync;         /* enum conf_sync */
        int commit_delay; /* ms a burst may wait to grow (group commit) */
        int64_t dead_max_records, dead_max_bytes, dead_max_age; /* ms */
    } spool;
    struct {
        char *listen; /* host:port of /metrics, /healthz, /ready; "off" */
        struct conf_mark at_listen; /* where it is (checked by the user
                                     * of the address, http.h) */
    } metrics;
    struct {
        int stats_interval; /* seconds between counter log lines */
        char *level;        /* error | warn | info | debug */
        char *status_file;  /* state for `mqtt2kafka status`; "": none */
    } log;
    struct conf_route *routes;
    size_t nroutes;
};

/* Loads path into *c (zeroed first; defaults applied). On error returns
 * -EINVAL (bad content) or -errno (unreadable) with "file:line:col: msg" in
 * err; *c is left empty. The caller frees with conf_fini(). */
int conf_load(const char *path, struct conf *c, char *err, size_t errlen);
/* The same for a buffer; name is used in messages. */
int conf_parse(const char *buf, size_t len, const char *name, struct conf *c,
               char *err, size_t errlen);
void conf_fini(struct conf *c);

/* Writes every key with its type, range, default and help text (for
 * `mqtt2kafka check --keys` and the man page). */
void conf_print_keys(FILE *f);

#endif
