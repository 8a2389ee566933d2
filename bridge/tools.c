/*
 * tools.c — the commands a field engineer runs next to the daemon (see
 * bridge.h): check a config, show where topics (and a payload) would go,
 * inspect the spool, read the running daemon's status. Part of the wiring:
 * it builds the same stages the daemon does (convert.c for route + decode,
 * the spool), so what it shows is what the daemon would do. Output goes to
 * stdout, errors to stderr; each returns the process exit code.
 */
#include "bridge/bridge.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/chunk.h"
#include "bridge/cli_reload.h"
#include "bridge/convert.h"
#include "bridge/http.h"
#include "bridge/mqtt_in.h"
#include "bridge/schemas.h"
#include "bridge/secret.h"
#include "bridge/units.h"
#include "spool/spool.h"

/* The loaded schemas for the stages build() makes; freed by unbuild(). */
static struct pb_schema *loaded;

static int build(const struct conf *c, struct convert **cv)
{
    char err[1024];
    struct convert_opts co = {
        .max_payload =
            c->mqtt.max_payload > 0 ? c->mqtt.max_payload : INT64_MAX,
    };
    *cv = NULL;
    if (schemas_load(c, &loaded, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return EX_CONFIG_CODE;
    }
    co.schemas = loaded;
    if (convert_new(c, &co, cv, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        pb_schema_free(loaded);
        loaded = NULL;
        return EX_CONFIG_CODE;
    }
    return 0;
}

static void unbuild(struct convert *cv)
{
    convert_free(cv);
    pb_schema_free(loaded);
    loaded = NULL;
}

/* metrics.listen is an address the HTTP server can bind (http.h). */
static int check_listen(const struct conf *c)
{
    char err[256];
    const char *l = c->metrics.listen;
    if (!l || !strcmp(l, "off") || !http_check_listen(l, err, sizeof err))
        return 0;
    fprintf(stderr, "%s:%d:%d: metrics.listen: %s\n", c->path,
            c->metrics.at_listen.line, c->metrics.at_listen.col, err);
    return EX_CONFIG_CODE;
}

int bridge_check_conf(const struct conf *c)
{
    struct convert *cv;
    int rc = check_listen(c);
    if (rc)
        return rc;
    rc = build(c, &cv);
    unbuild(cv);
    return rc;
}

/* ---- check ---------------------------------------------------------- */

static const char *on_full_name(int v)
{
    return v == CONF_BACKPRESSURE ? "backpressure" : "drop_oldest";
}

static void print_routes(const struct conf *c, const struct convert *cv)
{
    const char **filters;
    size_t nf = convert_filters(cv, &filters);
    printf("routes (first match wins):\n");
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        printf("  %zu. %s  (line %d)\n", i + 1, r->match, r->line);
        char pos[24];
        snprintf(pos, sizeof pos, "%zu", i + 1);
        if (strcmp(r->name, pos)) /* named, not by its position */
            printf("     name    %s\n", r->name);
        printf("     filter  %s\n", convert_filter(cv, i));
        printf("     topic   %s\n", r->topic);
        printf("     key     %s\n", r->key ? r->key : "(none)");
        if (r->lane != CONF_LANE_NORMAL)
            printf("     lane    %s\n",
                   r->lane == CONF_LANE_FAST ? "fast" : "bulk");
        if (strcmp(r->payload ? r->payload : "raw", "raw") ||
            r->format != CONF_FORMAT_RAW)
            printf("     payload %s  format %s%s%s\n", r->payload,
                   r->format == CONF_FORMAT_JSON        ? "json"
                   : r->format == CONF_FORMAT_ENVELOPE  ? "envelope"
                   : r->format == CONF_FORMAT_CONFLUENT ? "confluent"
                                                        : "raw",
                   r->split ? "  split " : "", r->split ? r->split : "");
        if (r->format == CONF_FORMAT_CONFLUENT)
            printf("     schema_id %lld  message_index %s\n",
                   (long long)r->schema_id,
                   r->message_index ? r->message_index : "(from the schema)");
    }
    printf("\nsubscriptions (qos %d):", c->mqtt.qos);
    for (size_t i = 0; i < nf; i++) {
        char f[512];
        if (mqtt_in_sub_filter(c->mqtt.share_group, filters[i], f, sizeof f) <
            0)
            snprintf(f, sizeof f, "%s", filters[i]); /* cut: shown only */
        printf(" %s", f);
    }
    printf("\n");
    if (c->mqtt.share_group)
        printf("shared in group %s: the broker gives each message to one "
               "bridge of the group; order per device across them is not "
               "kept\n",
               c->mqtt.share_group);
}

/* Where a secret comes from, never what it is. */
static const char *secret_from(const struct conf *c, const char *file_key,
                               const char *value, char *buf, size_t len)
{
    for (size_t i = 0; i < c->nfiles; i++)
        if (!strcmp(c->files[i].name, file_key)) {
            snprintf(buf, len, "from %s", c->files[i].written);
            return buf;
        }
    return value ? "in the config file" : "none";
}

static void print_mqtt_security(const struct conf *c)
{
    char a[4200];
    if (c->mqtt.username)
        printf("         login %s, password %s\n", c->mqtt.username,
               secret_from(c, "mqtt.password_file", c->mqtt.password, a,
                           sizeof a));
    if (!c->mqtt.tls.on)
        return;
    printf("         tls on: ca %s%s%s, host name verification %s\n",
           c->mqtt.tls.ca_file ? c->mqtt.tls.ca_file : "(the system's store)",
           c->mqtt.tls.cert_file ? ", client certificate " : "",
           c->mqtt.tls.cert_file ? c->mqtt.tls.cert_file : "",
           c->mqtt.tls.insecure_skip_hostname_verification
               ? "OFF (insecure_skip_hostname_verification)"
               : "on");
}

static void print_kafka_security(const struct conf *c)
{
    static const char *const names[] = {"plaintext", "ssl", "sasl_plaintext",
                                        "sasl_ssl"};
    char a[4200];
    const int p = c->kafka.security.protocol;
    if (!c->kafka.security.on)
        return;
    printf("         security %s", names[p & 3]);
    if (p == CONF_SEC_SASL_PLAINTEXT || p == CONF_SEC_SASL_SSL)
        printf(", SASL %s as %s, password %s", c->kafka.security.sasl_mechanism,
               c->kafka.security.username,
               secret_from(c, "kafka.security.password_file",
                           c->kafka.security.password, a, sizeof a));
    if (p == CONF_SEC_SSL || p == CONF_SEC_SASL_SSL)
        printf("\n         tls: ca %s%s%s, host name verification %s",
               c->kafka.security.ca_file ? c->kafka.security.ca_file
                                         : "(the system's store)",
               c->kafka.security.cert_file ? ", client certificate " : "",
               c->kafka.security.cert_file ? c->kafka.security.cert_file : "",
               c->kafka.security.insecure_skip_hostname_verification
                   ? "OFF (insecure_skip_hostname_verification)"
                   : "on");
    printf("\n");
}

/* Chunks larger than the fat lane's quarter of the byte window are cut
 * to it at start (br_chunk_limit): say so. */
static void print_chunk_note(const struct conf *c)
{
    char a[32], b[32];
    int64_t win = c->kafka.inflight_bytes;
    if (c->spool.max_bytes > 0 && c->spool.max_bytes / 4 < win)
        win = c->spool.max_bytes / 4;
    int64_t share = (int64_t)chunk_window_limit(win);
    if (c->kafka.chunk_bytes <= share)
        return;
    units_format_size(share, a, sizeof a);
    units_format_size(win, b, sizeof b);
    printf("         chunks of %s in effect: a quarter of the %s in flight "
           "less headers (kafka.chunk_bytes is more)\n",
           a, b);
}

static void print_summary(const struct conf *c, const struct convert *cv)
{
    char a[32], b[32], d[32];
    printf("%s: OK\n\n", c->path);
    printf("gateway  %s\n", c->gateway.id);
    printf("mqtt     %s:%d  client_id %s  protocol %s  qos %d  keepalive %ds  "
           "session_expiry %llds\n",
           c->mqtt.host, c->mqtt.port, c->mqtt.client_id,
           c->mqtt.protocol == 4 ? "3.1.1" : "5", c->mqtt.qos,
           c->mqtt.keepalive, (long long)c->mqtt.session_expiry);
    units_format_size(c->mqtt.max_payload, a, sizeof a);
    printf("         max_payload %s  reconnect_max %ds%s%s\n", a,
           c->mqtt.reconnect_max, c->mqtt.share_group ? "  share_group " : "",
           c->mqtt.share_group ? c->mqtt.share_group : "");
    print_mqtt_security(c);
    units_format_size(c->kafka.inflight_bytes, a, sizeof a);
    units_format_duration_ms(c->kafka.shutdown_timeout, b, sizeof b);
    printf("kafka    %s  compression %s  dead letters -> %s\n",
           c->kafka.brokers, c->kafka.compression, c->kafka.dead_letter_topic);
    units_format_size(c->kafka.chunk_bytes, d, sizeof d);
    printf("         in flight %lld records / %s  shutdown_timeout %s  "
           "chunks %s\n",
           (long long)c->kafka.inflight_records, a, b,
           c->kafka.chunk_bytes ? d : "off");
    print_chunk_note(c);
    if (c->kafka.drain_delay || c->kafka.drain_rate) {
        units_format_duration_ms(c->kafka.drain_delay, b, sizeof b);
        snprintf(d, sizeof d, "at most %lld records/s",
                 (long long)c->kafka.drain_rate);
        printf("         after an outage the backlog starts within %s, %s "
               "(the fast lane is not held)\n",
               c->kafka.drain_delay ? b : "0s (at once)",
               c->kafka.drain_rate ? d : "no cap");
    }
    print_kafka_security(c);
    for (size_t i = 0; i < c->kafka.nprops; i++)
        printf("         %s = %s\n", c->kafka.props[i].name,
               secret_name(c->kafka.props[i].name) ? SECRET_SHOWN
                                                   : c->kafka.props[i].value);
    units_format_size(c->spool.max_bytes, a, sizeof a);
    units_format_duration_ms(c->spool.max_age, b, sizeof b);
    printf("spool    %s  max_bytes %s  on_full %s  max_age %s  sync %s\n",
           c->spool.path, c->spool.max_bytes ? a : "unlimited",
           on_full_name(c->spool.on_full), c->spool.max_age ? b : "never",
           c->spool.sync == CONF_SYNC_NORMAL ? "normal" : "full");
    snprintf(d, sizeof d, "%ds", c->log.stats_interval);
    printf("log      level %s  stats every %s\n", c->log.level,
           c->log.stats_interval ? d : "(only on shutdown)");
    printf("schemas  built in (%s)%s",
           "iot.telemetry.v1, iot.bridge.v1, "
           "org.eclipse.tahu.protobuf",
           c->nschemas ? "; " : "\n");
    for (size_t i = 0; i < c->nschemas; i++)
        printf("%s%s", c->schemas[i], i + 1 < c->nschemas ? ", " : "\n");
    printf("metrics  %s\n\n", strcmp(c->metrics.listen, "off")
                                  ? c->metrics.listen
                                  : "off (no /metrics, /healthz, "
                                    "/ready)");
    print_routes(c, cv);
}

int bridge_check(const struct conf *c)
{
    struct convert *cv;
    int rc = build(c, &cv);
    if (rc == 0)
        print_summary(c, cv);
    unbuild(cv);
    return rc;
}

/* ---- route ---------------------------------------------------------- */

/* Why s is not a valid MQTT topic name, or NULL. */
static const char *bad_topic_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "it is empty";
    if (n > 65535)
        return "it is longer than 65535 bytes";
    if (strpbrk(s, "+#"))
        return "'+' and '#' are for subscription filters, not topic names";
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len = *p < 0x80         ? 1
                  : (*p >> 5) == 6  ? 2
                  : (*p >> 4) == 14 ? 3
                  : (*p >> 3) == 30 ? 4
                                    : 0;
        if (!len)
            return "it is not valid UTF-8";
        for (int i = 1; i < len; i++)
            if ((p[i] & 0xc0) != 0x80)
                return "it is not valid UTF-8";
        p += len;
    }
    return NULL;
}

/* A file's bytes (at most max), for --payload-file. */
static unsigned char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = f ? malloc(max + 1) : NULL;
    *len = buf ? fread(buf, 1, max + 1, f) : 0;
    if (!f || !buf || ferror(f) || *len > max) {
        fprintf(stderr, "mqtt2kafka: %s: %s\n", path,
                !f          ? strerror(errno)
                : !buf      ? "out of memory"
                : ferror(f) ? "cannot read"
                            : "larger than mqtt.max_payload");
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

static void print_value(const char *label, const void *v, size_t len, int text)
{
    const unsigned char *p = v;
    if (text) {
        printf("  %-8s %.*s\n", label, (int)len, (const char *)v);
        return;
    }
    printf("  %-8s %zu bytes:", label, len);
    for (size_t i = 0; i < len && i < 48; i++)
        printf(" %02x", p[i]);
    printf("%s\n", len > 48 ? " ..." : "");
}

static int print_rec(void *ud, const struct convert_rec *r)
{
    int *n = ud;
    printf("  record %d\n", ++*n);
    printf("    topic    %s\n", r->topic);
    if (r->has_key)
        printf("    key      %.*s\n", (int)r->key_len, r->key);
    else
        printf("    key      (none)\n");
    if (r->content_type)
        printf("    content-type %s\n", r->content_type);
    print_value("  value", r->value, r->len,
                r->content_type &&
                    !strncmp(r->content_type, "application/json", 16));
    return 0;
}

/* A decoding route with a payload: what convert_message() makes of it. */
static int route_decoded(const struct conf *c, struct convert *cv,
                         const struct route_result *r, const char *topic,
                         const void *data, size_t len)
{
    const char *type;
    const void *js;
    size_t jl;
    int n = 0;
    if (convert_describe(cv, r->index, topic, data, len, &type, &js, &jl) == 0)
        printf("  decoded  %s %.*s\n", type, (int)jl, (const char *)js);
    printf("  headers  mqtt.topic=%s mqtt.qos=%d gateway.id=%s\n", topic,
           c->mqtt.qos, c->gateway.id);
    struct convert_msg m = {topic, data, len, c->mqtt.qos, 0, c->gateway.id};
    struct convert_dead d;
    struct convert_effects e;
    convert_message(cv, &m, print_rec, &n, &d);
    convert_effects(cv, &e);
    if (e.unknown_fields)
        printf("  note     %lld fields the type does not define (wrong "
               "schema?): header m2k.unknown_fields\n",
               (long long)e.unknown_fields);
    if (e.unresolved)
        printf("  note     %lld Sparkplug metrics with an alias no BIRTH "
               "named: header m2k.sparkplug.unresolved\n",
               (long long)e.unresolved);
    if (d.kind != CONVERT_OK) {
        printf("  dead-letter -> %s: %s\n", c->kafka.dead_letter_topic, d.why);
        return 1;
    }
    return 0;
}

static int route_one(const struct conf *c, struct convert *cv,
                     const char *topic, const void *data, size_t len)
{
    struct route_result r;
    const char *bad = bad_topic_name(topic);
    printf("%s\n", topic);
    if (bad) {
        printf("  rejected: not a valid MQTT topic name: %s\n", bad);
        return 1;
    }
    if (convert_route(cv, topic, &r) == ROUTE_NO_MATCH) {
        printf("  no route matches: the bridge does not subscribe to it\n");
        return 1;
    }
    printf("  route    %d. %s\n", r.index + 1, r.route->match);
    if (r.status != ROUTE_OK) {
        printf("  dead-letter -> %s: %s\n", c->kafka.dead_letter_topic,
               r.reason);
        return 1;
    }
    if (data && convert_decodes(cv, r.index))
        return route_decoded(c, cv, &r, topic, data, len);
    if (r.pending) {
        printf("  topic    %s  (payload fields: give --payload-file)\n",
               r.route->topic);
        printf("  key      %s\n", r.route->key ? r.route->key : "(none)");
    } else {
        printf("  topic    %s\n", r.topic);
        if (r.has_key)
            printf("  key      %.*s\n", (int)r.key_len, r.key);
        else
            printf("  key      (none)\n");
    }
    printf("  headers  mqtt.topic=%s mqtt.qos=%d gateway.id=%s\n", topic,
           c->mqtt.qos, c->gateway.id);
    if (data)
        print_value("value", data, len, 0);
    return 0;
}

int bridge_route(const struct conf *c, char *const *topics, int ntopics,
                 const char *payload_file)
{
    struct convert *cv = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
    int missed = 0, rc = build(c, &cv);
    if (rc)
        return rc;
    if (payload_file &&
        !(data = read_file(payload_file, (size_t)c->mqtt.max_payload, &len)))
        missed = 1;
    for (int i = 0; i < ntopics && (data || !payload_file); i++)
        missed += route_one(c, cv, topics[i], data, len);
    free(data);
    unbuild(cv);
    return missed ? 1 : 0;
}

/* ---- schema --------------------------------------------------------- */

int bridge_schema(const struct conf *c, const char *what, const char *type)
{
    char err[1024], *buf;
    size_t len, cap = 1 << 20;
    int rc;
    if (schemas_load(c, &loaded, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return EX_CONFIG_CODE;
    }
    if (!strcmp(what, "list")) {
        schemas_files(c, err, sizeof err);
        printf("descriptor sets: (built in)\n%s", err);
        for (size_t i = 0; i < pb_schema_count(loaded); i++) {
            const struct pb_schema_type *t = pb_schema_type_at(loaded, i);
            const struct pb_schema_msg *m =
                t->msg ? pb_schema_msg_info(t->msg) : NULL;
            if (m && m->map_entry)
                continue;
            printf("%-8s %-48s %s (proto%d)\n", t->msg ? "message" : "enum",
                   t->name, t->file, t->syntax);
        }
        rc = 0;
    } else if (!(buf = malloc(cap))) {
        rc = 1;
    } else {
        rc = pb_schema_show(loaded, type, buf, cap, &len);
        if (rc == 0)
            fwrite(buf, 1, len, stdout);
        else
            fprintf(stderr,
                    "mqtt2kafka: %s: %s (mqtt2kafka schema list shows the "
                    "loaded types)\n",
                    type,
                    rc == -ENOENT ? "no such type is loaded" : "too large");
        free(buf);
        rc = rc ? 1 : 0;
    }
    pb_schema_free(loaded);
    loaded = NULL;
    return rc;
}

/* ---- spool ---------------------------------------------------------- */

/* "3d 4h", "12m 5s", "40s": how long ago then_ms was. */
static void age_text(int64_t then_ms, char *buf, size_t len)
{
    static const struct {
        const char *name;
        int64_t s;
    } u[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t s = now > then_ms ? (now - then_ms) / 1000 : 0;
    size_t i = 0;
    while (i < 3 && s < u[i].s)
        i++;
    if (i < 3 && s % u[i].s)
        snprintf(buf, len, "%lld%s %lld%s", (long long)(s / u[i].s), u[i].name,
                 (long long)(s % u[i].s / u[i + 1].s), u[i + 1].name);
    else
        snprintf(buf, len, "%lld%s", (long long)(s / u[i].s), u[i].name);
}

static int spool_stats_print(struct spool *sp, const struct conf *c)
{
    struct spool_stats st;
    char a[32], b[32], age[32];
    if (spool_stats(sp, &st)) {
        fprintf(stderr, "%s: %s\n", c->spool.path, spool_errmsg(sp));
        return 1;
    }
    units_format_size(st.file_bytes, a, sizeof a);
    units_format_size(c->spool.max_bytes, b, sizeof b);
    printf("spool     %s (%s on disk, cap %s, on_full %s)\n", c->spool.path, a,
           c->spool.max_bytes ? b : "none", on_full_name(c->spool.on_full));
    if (st.oldest_ms)
        age_text(st.oldest_ms, age, sizeof age);
    printf("waiting   %lld records, %lld bytes, oldest %s%s\n",
           (long long)st.records, (long long)st.bytes, st.oldest_ms ? age : "-",
           st.oldest_ms ? " ago" : "");
    printf("in flight %lld\n", (long long)st.inflight);
    printf("dead      %lld\n", (long long)st.dead);
    printf("dropped   %lld (spool full)\n",
           (long long)st.dropped[SPOOL_DROP_FULL]);
    printf("expired   %lld (older than max_age)\n",
           (long long)st.dropped[SPOOL_DROP_EXPIRED]);
    printf("totals    %lld put, %lld delivered\n", (long long)st.put_total,
           (long long)st.acked_total);
    if (st.recovered)
        printf("note      the file was corrupt and was set aside; this is a "
               "fresh spool\n");
    return 0;
}

static int spool_dead_print(struct spool *sp)
{
    enum { MAX = 100 };
    struct spool_dead_rec *d = calloc(MAX, sizeof *d);
    char age[32];
    if (!d)
        return 1;
    int n = spool_dead_list(sp, d, MAX);
    if (n < 0) {
        fprintf(stderr, "spool: %s\n", spool_errmsg(sp));
        free(d);
        return 1;
    }
    printf("%d dead letter%s%s\n", n, n == 1 ? "" : "s",
           n == MAX ? " (newest 100 shown)" : "");
    for (int i = 0; i < n; i++) {
        age_text(d[i].dead_ms, age, sizeof age);
        printf("  %lld  %s ago  %s  %zu bytes  %s\n", (long long)d[i].id, age,
               d[i].topic, d[i].payload_len, d[i].reason);
    }
    free(d);
    return 0;
}

int bridge_spool(const struct conf *c, const char *what, const char *sub)
{
    struct spool *sp = NULL;
    char err[512];
    int rc;
    struct spool_opts so;
    bridge_spool_opts(c, &so);
    if (access(c->spool.path, F_OK)) {
        fprintf(stderr,
                "mqtt2kafka: no spool at %s (the bridge creates it when it "
                "first starts)\n",
                c->spool.path);
        return 1;
    }
    if (spool_open(&so, &sp, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", c->spool.path, err);
        return 1;
    }
    if (!strcmp(what, "stats")) {
        rc = spool_stats_print(sp, c);
    } else if (!strcmp(sub, "list")) {
        rc = spool_dead_print(sp);
    } else {
        int n = !strcmp(sub, "replay") ? spool_dead_replay(sp)
                                       : spool_dead_purge(sp);
        if (n < 0)
            fprintf(stderr, "%s: %s\n", c->spool.path, spool_errmsg(sp));
        else
            printf("%s %d dead letter%s\n",
                   !strcmp(sub, "replay") ? "replayed" : "purged", n,
                   n == 1 ? "" : "s");
        rc = n < 0;
    }
    spool_close(sp);
    return rc;
}

/* ---- status --------------------------------------------------------- */

/* A value from the status file's "name=value" lines, or def. */
static const char *status_get(char *const *lines, size_t n, const char *name,
                              const char *def)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (!strncmp(lines[i], name, len) && lines[i][len] == '=')
            return lines[i] + len + 1;
    return def;
}

static void status_print(char *const *l, size_t n)
{
    const char *uc = status_get(l, n, "uplink_cause", "");
    const char *mc = status_get(l, n, "mqtt_cause", "");
    printf("  uplink %s, mqtt %s\n", status_get(l, n, "uplink", "?"),
           status_get(l, n, "mqtt", "?"));
    if (*uc)
        printf("  uplink down: kafka: %s\n", uc);
    if (*mc)
        printf("  mqtt down: mqtt: %s\n", mc);
    printf("  backlog %s records, %s bytes, oldest %ss; spool file %s bytes\n",
           status_get(l, n, "backlog", "?"),
           status_get(l, n, "backlog_bytes", "?"),
           status_get(l, n, "oldest_s", "?"),
           status_get(l, n, "spool_file_bytes", "?"));
    const char *held = status_get(l, n, "drain_held_s", "0");
    if (strcmp(held, "0") != 0)
        printf("  the outage's backlog starts draining in %s s "
               "(kafka.drain_delay); the fast lane is not held\n",
               held);
    else if (!strcmp(status_get(l, n, "drain_capped", "0"), "1"))
        printf("  the outage's backlog drains capped (kafka.drain_rate); "
               "the fast lane is not\n");
    printf("  received %s, delivered %s, redelivered by the broker %s\n",
           status_get(l, n, "received", "?"),
           status_get(l, n, "delivered", "?"),
           status_get(l, n, "redelivered", "?"));
    printf("  dead-lettered %s (unrouted %s, bad topic %s, oversized %s, empty "
           "%s, bad payload %s, missing field %s); refused by Kafka %s\n",
           status_get(l, n, "dead_lettered", "?"),
           status_get(l, n, "unrouted", "?"),
           status_get(l, n, "bad_topic", "?"),
           status_get(l, n, "oversized", "?"), status_get(l, n, "empty", "?"),
           status_get(l, n, "bad_payload", "?"),
           status_get(l, n, "missing_field", "?"),
           status_get(l, n, "kafka_refused", "?"));
    printf("  dropped: spool full %s, expired %s (since the spool was "
           "made), by the broker %s\n",
           status_get(l, n, "dropped_full", "?"),
           status_get(l, n, "expired", "?"),
           status_get(l, n, "broker_dropped", "?"));
    printf("  this run: stored %s, records spooled %s, straight to Kafka "
           "%s (spilled %s), QoS 0 lost %s; dropped: spool full %s, expired "
           "%s, dead letters %s + %s expired\n",
           status_get(l, n, "stored", "?"), status_get(l, n, "spooled", "?"),
           status_get(l, n, "direct", "?"), status_get(l, n, "spilled", "?"),
           status_get(l, n, "dropped_qos0", "?"),
           status_get(l, n, "dropped_full_run", "?"),
           status_get(l, n, "expired_run", "?"),
           status_get(l, n, "dead_dropped_full_run", "?"),
           status_get(l, n, "dead_expired_run", "?"));
    printf("  since the spool was made: put %s, delivered %s, dead letters "
           "dropped %s + %s expired, purged %s\n",
           status_get(l, n, "put_total", "?"),
           status_get(l, n, "acked_total", "?"),
           status_get(l, n, "dead_dropped_full", "?"),
           status_get(l, n, "dead_expired", "?"),
           status_get(l, n, "dead_purged", "?"));
    printf("  spool cap in effect %s bytes; device properties renamed %s\n",
           status_get(l, n, "spool_max_bytes", "?"),
           status_get(l, n, "props_renamed", "?"));
    printf("  flash: the spool wrote %s bytes (%s fsyncs) this run; "
           "the process wrote %s bytes to disk\n",
           status_get(l, n, "spool_bytes_written", "?"),
           status_get(l, n, "spool_fsyncs", "?"),
           status_get(l, n, "disk_bytes_written", "?"));
    const char *m = status_get(l, n, "metrics", "off");
    if (!strcmp(m, "off"))
        printf("  metrics: off\n");
    else if (!strcmp(status_get(l, n, "metrics_up", "0"), "1"))
        printf("  metrics: http://%s/metrics\n", m);
    else
        printf("  metrics: NOT SERVED: %s; trying again in %s s\n", m,
               status_get(l, n, "metrics_retry_s", "?"));
}

/* Reads what the daemon wrote to log.status_file. Exit 0 when it is running
 * and the file is fresh, 3 when it is not running (the LSB status code). */
int bridge_status(const struct conf *c)
{
    char buf[CLI_RELOAD_FILE_MAX + 1], *lines[160];
    struct cli_reload_status rs;
    size_t n = 0;
    const char *path = c->log.status_file;
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[len] = '\0';
    cli_reload_parse(buf, len, &rs);
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l && n < 160;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    if (n == 0) {
        printf("mqtt2kafka: not running (no status in %s)\n",
               path && *path ? path : "(status_file off)");
        return 3;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long age_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 -
                       atoll(status_get(lines, n, "updated_ms", "0"));
    const char *state = status_get(lines, n, "state", "?");
    int pid = atoi(status_get(lines, n, "pid", "0"));
    int alive = pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
    int running = strcmp(state, "stopped") && alive && age_ms < 30000;
    printf("mqtt2kafka %s: %s (pid %d, updated %.1fs ago)\n",
           status_get(lines, n, "gateway", "?"),
           running ? state : "not running", pid, (double)age_ms / 1000.0);
    status_print(lines, n);
    cli_reload_print_last(&rs, stdout);
    return running ? 0 : 3;
}
