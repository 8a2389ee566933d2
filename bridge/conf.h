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
 *
 * Secrets: every secret has a value key (mqtt.password) and a *_file key
 * (mqtt.password_file). String values may name environment variables,
 * ${NAME}; a file key may name a systemd credential, credential:NAME
 * ($CREDENTIALS_DIRECTORY/NAME). Parsing never opens a file: the loader
 * only records where each file key is (struct conf_file), and
 * conf_load_files() reads them, so the tools that need no secret (status,
 * spool, reload) work where the secrets cannot be read. Nothing here
 * prints a secret's value, not even in an error.
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
#define CONF_MAX_CAPTURES 16   /* {name} captures in one match */
#define CONF_MAX_FILES    16   /* keys naming a file in one conf */
#define CONF_MAX_UNSET    8    /* unset ${NAME}s remembered (lenient) */
#define CONF_MAX_SECRET   4096 /* bytes of a secret file */
#define CONF_MAX_SCHEMAS  64   /* entries of schemas: */

/* conf_parse_ex()/conf_load_ex() flags. LENIENT: a ${NAME} whose variable
 * is not set stays as written and is listed in conf.unset instead of being
 * an error: for the tools that run outside the service's environment. */
#define CONF_ENV_LENIENT 1u
/* conf_load_files() flags. CHECK: a file that cannot be resolved here (a
 * credential without $CREDENTIALS_DIRECTORY, an unexpanded ${NAME}) is a
 * note, not an error: `check` outside the service. */
#define CONF_FILES_CHECK 1u

enum conf_format {
    CONF_FORMAT_RAW,
    CONF_FORMAT_ENVELOPE,
    CONF_FORMAT_JSON,
    CONF_FORMAT_CONFLUENT, /* Schema Registry framing (schema_id) */
};
enum conf_on_full { CONF_DROP_OLDEST = 0, CONF_BACKPRESSURE };
enum conf_sync { CONF_SYNC_FULL = 0, CONF_SYNC_NORMAL };
enum conf_spool_mode { CONF_SPOOL_DIRECT = 0, CONF_SPOOL_ALWAYS };
/* routes[].lane: the spool queue a route's records wait in (the same
 * numbers as spool.h's lanes). */
enum conf_lane { CONF_LANE_NORMAL = 0, CONF_LANE_FAST, CONF_LANE_BULK };
enum conf_security { /* kafka.security.protocol */
                     CONF_SEC_PLAINTEXT = 0,
                     CONF_SEC_SSL,
                     CONF_SEC_SASL_PLAINTEXT,
                     CONF_SEC_SASL_SSL,
};

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
    int64_t schema_id;   /* format confluent: the registry's id; 0: none */
    char *message_index; /* format confluent: "1,0"; NULL: from the schema */
    int lane;            /* enum conf_lane */
    int line, col;       /* where the route starts in the file */
    /* where each value is (the route's start when the key is absent) */
    struct conf_mark at_match, at_topic, at_key, at_payload, at_format,
        at_split, at_schema_id, at_message_index, at_name;
};

struct conf_prop { /* a librdkafka property, passed through verbatim */
    char *name;
    char *value;
    int line, col;
};

/* A key whose value names a file (ca_file, key_file, password_file, ...),
 * recorded by the loader, read by conf_load_files(). */
#define CONF_FILE_PRIVATE                                                      \
    1u                      /* a secret or a private key: refused when any     \
                               user may read it */
#define CONF_FILE_SECRET 2u /* its contents are the value of another key */
struct conf_file {
    char name[48];     /* the key, "mqtt.tls.ca_file" */
    int line, col;     /* where its value is */
    size_t off;        /* the path (char *) in struct conf */
    size_t secret_off; /* CONF_FILE_SECRET: where its contents go */
    unsigned flags;
    char *written;   /* the value as written: credential:NAME, a path */
    uint64_t digest; /* of the contents, once read */
    int read;        /* 1 once conf_load_files() read it */
};

struct conf_unset { /* a ${NAME} left as written (CONF_ENV_LENIENT) */
    char name[64];
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
        char *username;
        char *password;      /* a secret: from the file or password_file */
        char *password_file; /* its path once loaded; see conf_file */
        int64_t max_payload; /* bytes; larger payloads dead-letter */
        /* NULL or "": plain subscriptions; else each filter is subscribed
         * as $share/<share_group>/<filter> (no '/', '+', '#' in it) */
        char *share_group;
        struct {
            int on;          /* the mapping is present: TLS */
            char *ca_file;   /* NULL: the system's store */
            char *cert_file; /* client certificate (mTLS), with key_file */
            char *key_file;
            char *key_password, *key_password_file; /* an encrypted key */
            int insecure_skip_hostname_verification;
        } tls;
    } mqtt;
    struct {
        char *brokers;
        char *compression;        /* lz4 */
        char *dead_letter_topic;  /* mqtt2kafka.dead-letter */
        int64_t inflight_records; /* window of records in flight (10000) */
        int64_t inflight_bytes;   /* window of bytes in flight (16 MiB) */
        int64_t chunk_bytes;      /* larger payloads go as chunks; 0: off */
        int64_t drain_rate;       /* records/s of an outage's backlog; 0 */
        int64_t drain_delay;      /* ms: its drain starts at random within */
        int shutdown_timeout;     /* ms to wait for deliveries on exit */
        struct conf_prop *props;
        size_t nprops;
        struct {
            int on;               /* the mapping is present */
            int protocol;         /* enum conf_security */
            char *sasl_mechanism; /* PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 */
            char *username, *password, *password_file;
            char *ca_file, *cert_file, *key_file;
            char *key_password, *key_password_file;
            int insecure_skip_hostname_verification;
        } security;
    } kafka;
    struct {
        char *path;
        int64_t max_bytes;
        int on_full;      /* enum conf_on_full */
        int64_t max_age;  /* ms; 0: never */
        int sync;         /* enum conf_sync */
        int commit_delay; /* ms a burst may wait to grow (group commit) */
        int mode;         /* enum conf_spool_mode */
        int direct_wait;  /* ms the direct path waits for Kafka */
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
    struct {
        int rebirth;              /* ask an edge node for its BIRTH (1) */
        int64_t rebirth_interval; /* ms between two asks of one edge node */
    } sparkplug;
    char **schemas; /* descriptor set files or globs (schemas.h) */
    struct conf_mark *at_schemas;
    size_t nschemas;
    struct conf_route *routes;
    size_t nroutes;
    struct conf_file files[CONF_MAX_FILES];
    size_t nfiles;
    struct conf_unset unset[CONF_MAX_UNSET];
    size_t nunset; /* may exceed CONF_MAX_UNSET: only the first are kept */
};

/* Loads path into *c (zeroed first; defaults applied). On error returns
 * -EINVAL (bad content) or -errno (unreadable) with "file:line:col: msg" in
 * err; *c is left empty. The caller frees with conf_fini(). A ${NAME} of
 * an unset variable is an error. */
int conf_load(const char *path, struct conf *c, char *err, size_t errlen);
/* The same for a buffer; name is used in messages. */
int conf_parse(const char *buf, size_t len, const char *name, struct conf *c,
               char *err, size_t errlen);
/* With flags (CONF_ENV_LENIENT). */
int conf_load_ex(const char *path, unsigned flags, struct conf *c, char *err,
                 size_t errlen);
int conf_parse_ex(const char *buf, size_t len, const char *name, unsigned flags,
                  struct conf *c, char *err, size_t errlen);
void conf_fini(struct conf *c);

/* Reads every file the conf names (conf_files.c): resolves credential:NAME,
 * refuses a secret or key file that any user may read, fills each secret
 * from its *_file (one trailing newline stripped), and records a digest of
 * every file for conf_diff(). Errors are "file:line:col: key: why" (-EINVAL
 * or -errno); with CONF_FILES_CHECK what cannot be resolved here goes to
 * note() (may be NULL) instead. Warns through note() about an inline
 * secret in a config file any user may read. */
int conf_load_files(struct conf *c, unsigned flags,
                    void (*note)(void *ud, const char *text), void *ud,
                    char *err, size_t errlen);

/* Expands ${NAME} in s (conf_env.c): "$${" is a literal "${". Unset
 * variables are an error, or with CONF_ENV_LENIENT stay as written and are
 * passed to unset(). *out is malloc'ed (caller frees). 0, -EINVAL (why
 * says what was wrong) or -ENOMEM. */
int conf_env_expand(const char *s, unsigned flags, char **out, char *why,
                    size_t wlen, void (*unset)(void *ud, const char *name),
                    void *ud);

/* What a change of a key does to a running daemon on reload (SIGHUP). */
enum conf_effect {
    CONF_AT_ONCE = 0, /* applied at once, nothing restarts */
    CONF_ROUTES,      /* the route stage is swapped between bursts */
    CONF_MQTT,        /* the MQTT connection is made again */
    CONF_KAFKA,       /* in-flight records settle, a new producer */
    CONF_RESTART,     /* kept until the daemon restarts */
};
/* The effect of changing key ("mqtt.tls.ca_file", "routes"), and its
 * name for people ("at once", "reconnect", ...). */
enum conf_effect conf_key_effect(const char *key);
const char *conf_effect_name(enum conf_effect e);

/* Calls changed(ud, key) for each key whose value differs between a and b
 * (conf_diff.c): files by their contents too (once conf_load_files() read
 * them), "routes" once for any change to the routes. Returns the count. */
int conf_diff(const struct conf *a, const struct conf *b,
              void (*changed)(void *ud, const char *key), void *ud);
/* Sets key in to to its value in from (for keys that need a restart: the
 * running value stays). 0, -ENOENT (no such key) or -ENOMEM. */
int conf_keep(struct conf *to, const struct conf *from, const char *key);

/* Writes every key with its type, default, what a reload does with a
 * change and help text (for `mqtt2kafka check --keys` and the man page). */
void conf_print_keys(FILE *f);

#endif
