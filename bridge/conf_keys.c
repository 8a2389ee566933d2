/*
 * conf_keys.c — every configuration key: name, type, default, range and
 * help, one table per section and one for a route, in the manner of Fluent
 * Bit's config maps. conf.c walks the YAML document against these tables,
 * so a key that is not here is an error, and `check --keys` prints them.
 * Defaults are written as text and go through the same converters as the
 * file, so what the help says is what the loader does. The names are a
 * contract with users: extend, never rename.
 *
 * A nested mapping (mqtt.tls, kafka.security) is a T_SECTION key of its
 * section whose own table is in conf_subsections under "section.key". What
 * a change of each key does on reload is here too (conf_key_effect), so
 * `check --keys`, the daemon and the documentation agree.
 */
#include "bridge/conf_int.h"

#include <stdio.h>
#include <string.h>

#include "bridge/units.h"

#define CF(f) offsetof(struct conf, f), sizeof(((struct conf *)0)->f)
#define RF(f)                                                                  \
    offsetof(struct conf_route, f), sizeof(((struct conf_route *)0)->f)

static const struct kenum e_protocol[] = {
    {"5", 5}, {"3.1.1", 4}, {"311", 4}, {NULL, 0}};
static const struct kenum e_on_full[] = {{"drop_oldest", CONF_DROP_OLDEST},
                                         {"backpressure", CONF_BACKPRESSURE},
                                         {NULL, 0}};
static const struct kenum e_spool_mode[] = {
    {"direct", CONF_SPOOL_DIRECT}, {"always", CONF_SPOOL_ALWAYS}, {NULL, 0}};
static const struct kenum e_lane[] = {{"normal", CONF_LANE_NORMAL},
                                      {"fast", CONF_LANE_FAST},
                                      {"bulk", CONF_LANE_BULK},
                                      {NULL, 0}};
static const struct kenum e_sync[] = {
    {"full", CONF_SYNC_FULL}, {"normal", CONF_SYNC_NORMAL}, {NULL, 0}};
static const struct kenum e_compression[] = {{"none", 0},   {"gzip", 0},
                                             {"snappy", 0}, {"lz4", 0},
                                             {"zstd", 0},   {NULL, 0}};
static const struct kenum e_level[] = {
    {"error", 0}, {"warn", 0}, {"info", 0}, {"debug", 0}, {NULL, 0}};
static const struct kenum e_bool[] = {{"false", 0}, {"true", 1}, {"no", 0},
                                      {"yes", 1},   {"on", 1},   {"off", 0},
                                      {NULL, 0}};
static const struct kenum e_security[] = {
    {"plaintext", CONF_SEC_PLAINTEXT},
    {"ssl", CONF_SEC_SSL},
    {"sasl_plaintext", CONF_SEC_SASL_PLAINTEXT},
    {"sasl_ssl", CONF_SEC_SASL_SSL},
    {NULL, 0}};
static const struct kenum e_mechanism[] = {
    {"PLAIN", 0}, {"SCRAM-SHA-256", 0}, {"SCRAM-SHA-512", 0}, {NULL, 0}};

#define INSECURE_HELP                                                          \
    "true turns the check that the server's certificate names the host we "    \
    "connect to OFF: anyone with a certificate from a trusted CA can then "    \
    "pose as the broker. Only for a broker reached by an address its "         \
    "certificate lacks"

const struct key conf_gateway_keys[] = {
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
     "login name for the broker (optional)"},
    {"password", T_STR, NULL, CF(mqtt.password), 0, 65535, NULL,
     K_EMPTY_OK | K_SECRET,
     "its password, in this file (discouraged: use password_file)"},
    {"password_file", T_FILE, NULL, CF(mqtt.password_file), 1, 4096, NULL,
     K_PRIVATE | K_SECRET,
     "a file holding the password (one trailing newline is stripped), or "
     "credential:NAME (systemd LoadCredential=); others must not be able to "
     "read it"},
    {"max_payload", T_SIZE, "256KiB", CF(mqtt.max_payload), 1, 268435455, NULL,
     0, "larger payloads go to the dead-letter topic"},
    {"share_group", T_STR, NULL, CF(mqtt.share_group), 0, 128, NULL,
     K_EMPTY_OK | K_SHARE,
     "several bridges, each with its own client_id and spool, share the "
     "load: every route filter is subscribed as $share/<group>/<filter> and "
     "the broker gives each message to one of them; per-device order across "
     "bridges is not kept; empty or absent: off"},
    {"tls", T_SECTION, NULL, CF(mqtt.tls.on), 0, 0, NULL, 0,
     "present: connect with TLS (port default 8883); verifies the broker's "
     "certificate and host name"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key mqtt_tls_keys[] = {
    {"ca_file", T_FILE, NULL, CF(mqtt.tls.ca_file), 1, 4096, NULL, 0,
     "the CA certificates (PEM) that sign the broker's certificate; default: "
     "the system's store"},
    {"cert_file", T_FILE, NULL, CF(mqtt.tls.cert_file), 1, 4096, NULL, 0,
     "our client certificate (PEM, chain allowed), for brokers that require "
     "one; with key_file"},
    {"key_file", T_FILE, NULL, CF(mqtt.tls.key_file), 1, 4096, NULL, K_PRIVATE,
     "its private key (PEM); others must not be able to read it"},
    {"key_password", T_STR, NULL, CF(mqtt.tls.key_password), 0, 1024, NULL,
     K_SECRET, "the key's passphrase, in this file (discouraged)"},
    {"key_password_file", T_FILE, NULL, CF(mqtt.tls.key_password_file), 1, 4096,
     NULL, K_PRIVATE | K_SECRET,
     "a file holding the key's passphrase, or credential:NAME"},
    {"insecure_skip_hostname_verification", T_ENUM, "false",
     CF(mqtt.tls.insecure_skip_hostname_verification), 0, 0, e_bool, 0,
     INSECURE_HELP},
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
    {"chunk_bytes", T_SIZE, "512KiB", CF(kafka.chunk_bytes), 16 * KiB, 16 * MiB,
     NULL, K_OFF,
     "payloads above this size are stored once and produced as ordered "
     "chunks of it on one partition (m2k.chunk headers), streamed from the "
     "spool; off: they dead-letter as any payload over what one spool "
     "transaction holds"},
    {"drain_rate", T_INT, "0", CF(kafka.drain_rate), 0, 10000000, NULL, 0,
     "records/s cap on draining an outage's backlog (normal and bulk lanes); "
     "the fast lane and records that arrive after the uplink is back are "
     "not counted; 0: no cap"},
    {"drain_delay", T_DUR_MS, "0s", CF(kafka.drain_delay), 0, 86400000LL, NULL,
     0,
     "after an outage or a start, the backlog starts draining at a random "
     "moment within this (a fleet coming back spreads its load); the fast "
     "lane is not held; 0s: at once"},
    {"shutdown_timeout", T_DUR_MS, "10s", CF(kafka.shutdown_timeout), 0, 600000,
     NULL, 0, "how long to wait for deliveries on exit"},
    {"properties", T_PROPS, NULL, 0, 0, 0, 0, NULL, 0,
     "any librdkafka property, passed through verbatim"},
    {"security", T_SECTION, NULL, CF(kafka.security.on), 0, 0, NULL, 0,
     "TLS and SASL for the brokers (default: plaintext)"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct key kafka_security_keys[] = {
    {"protocol", T_ENUM, NULL, CF(kafka.security.protocol), 0, 0, e_security,
     K_REQUIRED, "how to reach the brokers"},
    {"sasl_mechanism", T_CHOICE, NULL, CF(kafka.security.sasl_mechanism), 0, 0,
     e_mechanism, 0, "the SASL mechanism (sasl_ssl, sasl_plaintext)"},
    {"username", T_STR, NULL, CF(kafka.security.username), 1, 1024, NULL, 0,
     "the SASL user name"},
    {"password", T_STR, NULL, CF(kafka.security.password), 0, 1024, NULL,
     K_SECRET, "its password, in this file (discouraged: use password_file)"},
    {"password_file", T_FILE, NULL, CF(kafka.security.password_file), 1, 4096,
     NULL, K_PRIVATE | K_SECRET,
     "a file holding the SASL password (one trailing newline is stripped), "
     "or credential:NAME (systemd LoadCredential=); others must not be able "
     "to read it"},
    {"ca_file", T_FILE, NULL, CF(kafka.security.ca_file), 1, 4096, NULL, 0,
     "the CA certificates (PEM) that sign the brokers' certificates; default: "
     "the system's store"},
    {"cert_file", T_FILE, NULL, CF(kafka.security.cert_file), 1, 4096, NULL, 0,
     "our client certificate (PEM), for brokers that require one (mTLS); "
     "with key_file"},
    {"key_file", T_FILE, NULL, CF(kafka.security.key_file), 1, 4096, NULL,
     K_PRIVATE, "its private key (PEM); others must not be able to read it"},
    {"key_password", T_STR, NULL, CF(kafka.security.key_password), 0, 1024,
     NULL, K_SECRET, "the key's passphrase, in this file (discouraged)"},
    {"key_password_file", T_FILE, NULL, CF(kafka.security.key_password_file), 1,
     4096, NULL, K_PRIVATE | K_SECRET,
     "a file holding the key's passphrase, or credential:NAME"},
    {"insecure_skip_hostname_verification", T_ENUM, "false",
     CF(kafka.security.insecure_skip_hostname_verification), 0, 0, e_bool, 0,
     INSECURE_HELP},
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
    {"mode", T_ENUM, "direct", CF(spool.mode), 0, 0, e_spool_mode, 0,
     "direct: while Kafka keeps up and nothing waits in the spool, messages "
     "go straight to Kafka and are acknowledged on its confirmation, "
     "writing nothing; the spool takes what Kafka has not confirmed within "
     "direct_wait. always: every message is committed to the spool before "
     "it is acknowledged"},
    {"direct_wait", T_DUR_MS, "250ms", CF(spool.direct_wait), 10, 10000, NULL,
     0,
     "how long the direct path waits for Kafka's confirmation before the "
     "messages go into the spool (and are acknowledged)"},
    {"dead_max_records", T_INT, "100000", CF(spool.dead_max_records), 0,
     1000000000, NULL, 0,
     "records Kafka refused for good kept in the spool's dead-letter table; "
     "beyond it the oldest are dropped (counted); 0: no limit"},
    {"dead_max_bytes", T_SIZE, "64MiB", CF(spool.dead_max_bytes), 0, 16 * TiB,
     NULL, 0,
     "bytes the dead-letter table may hold; the oldest beyond it are dropped "
     "(counted); 0: no limit"},
    {"dead_max_age", T_DUR_MS, "30d", CF(spool.dead_max_age), 0,
     3650 * 86400000LL, NULL, 0,
     "dead letters older than this are dropped (counted); 0: never"},
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

static const struct key metrics_keys[] = {
    {"listen", T_STR, "127.0.0.1:9464", CF(metrics.listen), 1, 80, NULL, 0,
     "where GET /metrics (Prometheus), /healthz and /ready are served: "
     "host:port ([v6]:port; :port for every address), or off"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

static const struct kenum e_format[] = {{"raw", CONF_FORMAT_RAW},
                                        {"envelope", CONF_FORMAT_ENVELOPE},
                                        {"json", CONF_FORMAT_JSON},
                                        {"confluent", CONF_FORMAT_CONFLUENT},
                                        {NULL, 0}};

static const struct key sparkplug_keys[] = {
    {"rebirth", T_ENUM, "true", CF(sparkplug.rebirth), 0, 0, e_bool, 0,
     "ask an edge node for a rebirth (an NCMD with Node Control/Rebirth) when "
     "its DATA names an alias no BIRTH defined"},
    {"rebirth_interval", T_DUR_MS, "30s", CF(sparkplug.rebirth_interval), 1000,
     86400000, NULL, 0, "at most one rebirth request per edge node this often"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

/* One line per route key. */
const struct key conf_route_keys[] = {
    {"match", T_STR, NULL, RF(match), 1, 65535, NULL, K_REQUIRED,
     "MQTT topic pattern; {name} captures a level, a trailing # the rest"},
    {"topic", T_STR, NULL, RF(topic), 1, 4096, NULL, K_REQUIRED,
     "Kafka topic template, e.g. iot.sensor.{region}"},
    {"key", T_STR, NULL, RF(key), 1, 4096, NULL, 0,
     "Kafka key template (default: no key)"},
    {"payload", T_STR, "raw", RF(payload), 1, 255, NULL, 0,
     "raw (no decoding), json (validated JSON), sparkplug (Sparkplug B), or "
     "a protobuf message type, built in or from schemas:, e.g. "
     "iot.telemetry.v1.SensorReading; "
     "templates may then name {payload.field}"},
    {"format", T_ENUM, "raw", RF(format), 0, 0, e_format, 0,
     "the record value: the payload bytes, an iot.bridge.v1.Envelope, JSON "
     "(needs payload), or protobuf in Confluent's Schema Registry framing "
     "(needs schema_id)"},
    {"split", T_STR, NULL, RF(split), 1, 255, NULL, 0,
     "a repeated message field of the payload (an array of a JSON payload, "
     "metrics for Sparkplug): one Kafka record per element"},
    {"max_payload", T_SIZE, "0", RF(max_payload), 0, 268435455, NULL, 0,
     "larger payloads on this route dead-letter; 0: mqtt.max_payload applies"},
    {"schema_id", T_INT, NULL, RF(schema_id), 1, 2147483647, NULL, 0,
     "format confluent: the schema's id in the Schema Registry"},
    {"message_index", T_STR, NULL, RF(message_index), 1, 255, NULL, 0,
     "format confluent: the type's message indexes in its .proto file, e.g. "
     "\"1,0\" (default: found from the loaded schema)"},
    {"name", T_STR, NULL, RF(name), 1, 64, NULL, 0,
     "the route's label in metrics (letters, digits, _ . : -; unique); "
     "default its position, 1 for the first"},
    {"lane", T_ENUM, "normal", RF(lane), 0, 0, e_lane, 0,
     "the spool queue its records wait in when they cannot go straight to "
     "Kafka: fast (live data: never waits behind the others' backlog), "
     "normal, or bulk (yields to normal); each first-in first-out"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};

const struct section conf_sections[] = {
    {"gateway", conf_gateway_keys},
    {"mqtt", mqtt_keys},
    {"kafka", kafka_keys},
    {"spool", spool_keys},
    {"log", log_keys},
    {"sparkplug", sparkplug_keys},
    {"metrics", metrics_keys},
    {"schemas", NULL},
    {"routes", NULL},
};
const size_t conf_nsections = sizeof conf_sections / sizeof conf_sections[0];

const struct section conf_subsections[] = {
    {"mqtt.tls", mqtt_tls_keys},
    {"kafka.security", kafka_security_keys},
};
const size_t conf_nsubsections =
    sizeof conf_subsections / sizeof conf_subsections[0];

const struct key *conf_subsection(const char *name)
{
    for (size_t i = 0; i < conf_nsubsections; i++)
        if (!strcmp(conf_subsections[i].name, name))
            return conf_subsections[i].keys;
    return NULL;
}

static void each_key(const char *prefix, const struct key *keys,
                     void (*fn)(void *, const struct key *, const char *),
                     void *ud)
{
    char name[96];
    for (const struct key *k = keys; k->name; k++) {
        snprintf(name, sizeof name, "%s.%s", prefix, k->name);
        fn(ud, k, name);
        if (k->type == T_SECTION && conf_subsection(name))
            each_key(name, conf_subsection(name), fn, ud);
    }
}

void conf_each_key(void (*fn)(void *, const struct key *, const char *),
                   void *ud)
{
    for (size_t i = 0; i < conf_nsections; i++)
        if (conf_sections[i].keys)
            each_key(conf_sections[i].name, conf_sections[i].keys, fn, ud);
}

/* What a reload does with a changed key: the first rule whose prefix is
 * the key, or the key's start up to a dot, wins. A key no rule names needs
 * a restart (the safe answer for keys added later). The daemon applies
 * these (reload.c); README.md and mqtt2kafka(1) describe them. */
static const struct {
    const char *prefix;
    enum conf_effect effect;
} effects[] = {
    {"gateway.id", CONF_AT_ONCE},
    {"mqtt.share_group", CONF_ROUTES}, /* on the same session */
    {"mqtt", CONF_MQTT},
    {"kafka.dead_letter_topic", CONF_AT_ONCE},
    {"kafka.shutdown_timeout", CONF_AT_ONCE},
    {"kafka.drain_rate", CONF_AT_ONCE},
    {"kafka.drain_delay", CONF_AT_ONCE},
    {"kafka.inflight_records", CONF_RESTART},
    {"kafka.inflight_bytes", CONF_RESTART},
    {"kafka", CONF_KAFKA},
    {"spool.commit_delay", CONF_AT_ONCE},
    {"spool.mode", CONF_AT_ONCE},
    {"spool.direct_wait", CONF_AT_ONCE},
    {"spool", CONF_RESTART},
    {"log.status_file", CONF_RESTART},
    {"log", CONF_AT_ONCE},
    {"routes", CONF_ROUTES},
};

enum conf_effect conf_key_effect(const char *key)
{
    for (size_t i = 0; i < sizeof effects / sizeof effects[0]; i++) {
        size_t n = strlen(effects[i].prefix);
        if (!strncmp(key, effects[i].prefix, n) &&
            (key[n] == '\0' || key[n] == '.' || key[n] == '['))
            return effects[i].effect;
    }
    return CONF_RESTART;
}

const char *conf_effect_name(enum conf_effect e)
{
    switch (e) {
    case CONF_AT_ONCE:
        return "at once";
    case CONF_ROUTES:
        return "new routes";
    case CONF_MQTT:
        return "reconnect";
    case CONF_KAFKA:
        return "new producer";
    case CONF_RESTART:
        break;
    }
    return "restart";
}

/* Property names the bridge owns: the promise depends on them. */
const char *const conf_owned_props[][2] = {
    {"enable.idempotence", "the bridge always enables idempotence"},
    {"acks", "the bridge always uses acks=all"},
    {"bootstrap.servers", "use kafka.brokers"},
    {"metadata.broker.list", "use kafka.brokers"},
    {"compression.type", "use kafka.compression"},
    {"compression.codec", "use kafka.compression"},
};
const size_t conf_nowned_props =
    sizeof conf_owned_props / sizeof conf_owned_props[0];

static void print_table(FILE *f, const char *prefix, const struct key *keys)
{
    char def[64], range[96], name[64];
    for (const struct key *k = keys; k->name; k++) {
        const char *t = k->type == T_STR       ? "string"
                        : k->type == T_INT     ? "integer"
                        : k->type == T_SIZE    ? "size"
                        : k->type == T_DUR_S   ? "duration (s)"
                        : k->type == T_DUR_MS  ? "duration"
                        : k->type == T_PROPS   ? "mapping"
                        : k->type == T_SECTION ? "mapping"
                        : k->type == T_FILE    ? "file"
                                               : "choice";
        range[0] = '\0';
        if (k->enums)
            conf_choices_text(k->enums, range, sizeof range);
        else if (k->type != T_STR && k->type != T_PROPS && k->type != T_FILE &&
                 k->type != T_SECTION)
            conf_range_text(k, range, sizeof range);
        if (k->flags & K_OFF)
            snprintf(range + strlen(range), sizeof range - strlen(range),
                     ", or off");
        snprintf(def, sizeof def, "%s",
                 k->flags & K_REQUIRED ? "required"
                 : k->def              ? k->def
                                       : "-");
        snprintf(name, sizeof name, "%s%s", prefix, k->name);
        fprintf(f, "  %-36s %-12s %-14s %-12s %s%s%s\n", name, t, def,
                conf_effect_name(conf_key_effect(name)), k->help,
                *range ? "; " : "", range);
        if (k->type == T_SECTION && conf_subsection(name)) {
            char sub[sizeof name + 1];
            snprintf(sub, sizeof sub, "%s.", name);
            print_table(f, sub, conf_subsection(name));
        }
    }
}

void conf_print_keys(FILE *f)
{
    char prefix[32];
    fprintf(f, "  %-36s %-12s %-14s %-12s %s\n", "key", "type", "default",
            "on reload", "meaning");
    for (size_t i = 0; i < conf_nsections; i++) {
        if (!strcmp(conf_sections[i].name, "schemas")) {
            fprintf(f, "  %-26s %-12s %-14s %s\n", "schemas[]", "string", "-",
                    "a FileDescriptorSet file or glob (protoc "
                    "--include_imports --descriptor_set_out=F x.proto); its "
                    "types can be a route's payload");
            continue;
        }
        snprintf(prefix, sizeof prefix, "%s%s", conf_sections[i].name,
                 conf_sections[i].keys ? "." : "[].");
        print_table(f, prefix,
                    conf_sections[i].keys ? conf_sections[i].keys
                                          : conf_route_keys);
    }
}
