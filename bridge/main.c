/*
 * main.c — argv → one subcommand from a table, in the manner of wg(8).
 *
 *   mqtt2kafka [run] [-c FILE]          run the bridge (the default)
 *   mqtt2kafka check [-c FILE]          validate, print the resolved config
 *   mqtt2kafka check --keys             every key, its default and meaning
 *   mqtt2kafka route [-c FILE] [--payload-file F] TOPIC...
 *                                       where MQTT topics (and a payload) go
 *   mqtt2kafka reload [-c FILE] [PID]  the running daemon rereads its config
 *   mqtt2kafka spool [-c FILE] stats | dead [list] | dead replay | dead purge
 *   mqtt2kafka version | help
 *
 * Exit codes follow sysexits.h: 64 for a usage error, 78 for a bad config,
 * 1 for a runtime failure (or, for `route`, a topic that would not be
 * routed). Only `run` starts the daemon; the other commands are tools for a
 * field engineer and work while the daemon is stopped.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "bridge/cli_reload.h"
#include "bridge/conf.h"
#include "bridge/decode.h"
#include "bridge/payload.h"
#include "bridge/route.h"
#include "spool/spool.h"

#define EX_USAGE_CODE 64

static const char *prog = "mqtt2kafka";

struct opts {
    const char *conf;
    int keys;                 /* check --keys */
    const char *payload_file; /* route --payload-file */
    int npos;
    char **pos; /* positional arguments, borrowed from argv */
};

struct cmd {
    const char *name;
    int (*fn)(struct opts *o);
    const char *args;
    const char *help;
};

static int cmd_run(struct opts *o);
static int cmd_check(struct opts *o);
static int cmd_route(struct opts *o);
static int cmd_spool(struct opts *o);
static int cmd_status(struct opts *o);
static int cmd_version(struct opts *o);
static int cmd_help(struct opts *o);
static int cmd_reload(struct opts *o)
{
    return cli_reload_main(o->conf, o->npos, o->pos);
}

static const struct cmd cmds[] = {
    {"run", cmd_run, "[-c FILE]", "run the bridge (the default command)"},
    {"check", cmd_check, "[-c FILE] | --keys",
     "validate a config and print what it resolves to"},
    {"route", cmd_route, "[-c FILE] [--payload-file F] TOPIC...",
     "show the route, Kafka topic, key and headers "
     "for MQTT topics"},
    {"status", cmd_status, "[-c FILE]",
     "the running daemon's state: uplink, backlog, drops (exit 3: not "
     "running)"},
    {"reload", cmd_reload, "[-c FILE] [PID]",
     "make the running daemon reread its config (exit 78: it refused it)"},
    {"spool", cmd_spool, "[-c FILE] stats | dead [list|replay|purge]",
     "inspect the spool: backlog, dead letters, drops"},
    {"version", cmd_version, "", "print the version"},
    {"help", cmd_help, "", "this list"},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [COMMAND] [-c FILE] [ARGS]\n\nCommands:\n", prog);
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(f, "  %-8s %-43s %s\n", cmds[i].name, cmds[i].args,
                cmds[i].help);
    fprintf(f,
            "\nFILE defaults to %s. Exit codes: 0 ok, 1 failure, 64 usage, 78 "
            "bad config.\n",
            CONF_DEFAULT_PATH);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt,
                                                             ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    usage(stderr);
    return EX_USAGE_CODE;
}

/* -c FILE, -cFILE, --config FILE, --config=FILE, --keys, -h, --help, "--". */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    int dashdash = 0;
    o->conf = CONF_DEFAULT_PATH;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || !a[1]) {
            o->pos[o->npos++] = argv[i];
        } else if (!strcmp(a, "--")) {
            dashdash = 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", a);
            o->conf = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            o->conf = a + 9;
        } else if (!strncmp(a, "-c", 2)) {
            o->conf = a + 2;
        } else if (!strcmp(a, "--payload-file")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", a);
            o->payload_file = argv[++i];
        } else if (!strncmp(a, "--payload-file=", 15)) {
            o->payload_file = a + 15;
        } else if (!strcmp(a, "--keys")) {
            o->keys = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        } else {
            return usage_error("unknown option %s", a);
        }
    }
    return 0;
}

static int load(struct opts *o, struct conf *c)
{
    char err[1024];
    if (conf_load(o->conf, c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return EX_CONFIG_CODE;
    }
    return 0;
}

/* ---- run ------------------------------------------------------------ */

static int cmd_run(struct opts *o)
{
    struct conf c;
    int rc;
    if (o->npos)
        return usage_error("run takes no arguments, got \"%s\"", o->pos[0]);
    if ((rc = load(o, &c)))
        return rc;
    rc = bridge_run(&c);
    conf_fini(&c);
    return rc;
}

/* ---- check ---------------------------------------------------------- */

static const char *on_full_name(int v)
{
    return v == SPOOL_BACKPRESSURE ? "backpressure" : "drop_oldest";
}

static void print_summary(const struct conf *c, const struct route_table *t)
{
    char a[32], b[32], d[32];
    const char **filters;
    size_t nf = route_table_filters(t, &filters);

    printf("%s: OK\n\n", c->path);
    printf("gateway  %s\n", c->gateway.id);
    printf("mqtt     %s:%d  client_id %s  protocol %s  qos %d  keepalive %ds  "
           "session_expiry %llds\n",
           c->mqtt.host, c->mqtt.port, c->mqtt.client_id,
           c->mqtt.protocol == 4 ? "3.1.1" : "5", c->mqtt.qos,
           c->mqtt.keepalive, (long long)c->mqtt.session_expiry);
    conf_format_size(c->mqtt.max_payload, a, sizeof a);
    printf("         max_payload %s  reconnect_max %ds%s\n", a,
           c->mqtt.reconnect_max, c->mqtt.username ? "  (with username)" : "");
    conf_format_size(c->kafka.inflight_bytes, a, sizeof a);
    conf_format_duration_ms(c->kafka.shutdown_timeout, b, sizeof b);
    printf("kafka    %s  compression %s  dead letters -> %s\n",
           c->kafka.brokers, c->kafka.compression, c->kafka.dead_letter_topic);
    printf("         in flight %lld records / %s  shutdown_timeout %s\n",
           (long long)c->kafka.inflight_records, a, b);
    for (size_t i = 0; i < c->kafka.nprops; i++)
        printf("         %s = %s\n", c->kafka.props[i].name,
               c->kafka.props[i].value);
    conf_format_size(c->spool.max_bytes, a, sizeof a);
    conf_format_duration_ms(c->spool.max_age, b, sizeof b);
    printf("spool    %s  max_bytes %s  on_full %s  max_age %s  sync %s\n",
           c->spool.path, c->spool.max_bytes ? a : "unlimited",
           on_full_name(c->spool.on_full), c->spool.max_age ? b : "never",
           c->spool.sync == SPOOL_SYNC_NORMAL ? "normal" : "full");
    snprintf(d, sizeof d, "%ds", c->log.stats_interval);
    printf("log      level %s  stats every %s\n\n", c->log.level,
           c->log.stats_interval ? d : "(only on shutdown)");
    printf("routes (first match wins):\n");
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        printf("  %zu. %s  (line %d)\n", i + 1, r->match, r->line);
        printf("     filter  %s\n", r->filter);
        printf("     topic   %s\n", r->topic);
        printf("     key     %s\n", r->key ? r->key : "(none)");
        if (strcmp(r->payload ? r->payload : "raw", "raw") ||
            r->format != CONF_FORMAT_RAW)
            printf("     payload %s  format %s%s%s\n", r->payload,
                   r->format == CONF_FORMAT_JSON       ? "json"
                   : r->format == CONF_FORMAT_ENVELOPE ? "envelope"
                                                       : "raw",
                   r->split ? "  split " : "", r->split ? r->split : "");
    }
    printf("\nsubscriptions (qos %d):", c->mqtt.qos);
    for (size_t i = 0; i < nf; i++)
        printf(" %s", filters[i]);
    printf("\n");
}

static int cmd_check(struct opts *o)
{
    struct conf c;
    struct route_table *t = NULL;
    char err[512];
    int rc;
    if (o->keys) {
        conf_print_keys(stdout);
        return 0;
    }
    if (o->npos)
        return usage_error("check takes no arguments, got \"%s\"", o->pos[0]);
    if ((rc = load(o, &c)))
        return rc;
    if (route_table_new(&c, &t, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        conf_fini(&c);
        return EX_CONFIG_CODE;
    }
    print_summary(&c, t);
    route_table_free(t);
    conf_fini(&c);
    return 0;
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
        fprintf(stderr, "%s: %s: %s\n", prog, path,
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

static int print_rec(void *ud, const struct payload_rec *r)
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

/* The payload as the route's type, in JSON, when it decodes. */
static void print_decoded(const struct conf_route *r, const void *data,
                          size_t len)
{
    const ProtobufCMessageDescriptor *d = decode_type(r->payload);
    struct decode *dc;
    const ProtobufCMessage *m;
    const void *js;
    size_t jl;
    char why[256];
    if (!d || decode_new(&dc))
        return;
    if (decode_unpack(dc, d, data, len, &m, why, sizeof why) == 0 &&
        decode_json(dc, m, &js, &jl, why, sizeof why) == 0)
        printf("  decoded  %s %.*s\n", d->name, (int)jl, (const char *)js);
    decode_free(dc);
}

static int route_one(const struct conf *c, const struct route_table *t,
                     struct payload *pl, const char *topic, const void *data,
                     size_t len)
{
    struct route_result r;
    const char *bad = bad_topic_name(topic);
    printf("%s\n", topic);
    if (bad) {
        printf("  rejected: not a valid MQTT topic name: %s\n", bad);
        return 1;
    }
    if (route_match(t, topic, &r) == ROUTE_NO_MATCH) {
        printf("  no route matches: the bridge does not subscribe to it\n");
        return 1;
    }
    printf("  route    %d. %s\n", r.index + 1, r.route->match);
    if (r.status != ROUTE_OK) {
        printf("  dead-letter -> %s: %s\n", c->kafka.dead_letter_topic,
               r.reason);
        return 1;
    }
    if (data && payload_decodes(pl, r.index)) {
        char why[256];
        enum payload_error kind;
        int n = 0;
        struct payload_msg pm = {topic,       data, len,
                                 c->mqtt.qos, 0,    c->gateway.id};
        print_decoded(r.route, data, len);
        printf("  headers  mqtt.topic=%s mqtt.qos=%d gateway.id=%s\n", topic,
               c->mqtt.qos, c->gateway.id);
        if (payload_process(pl, t, &r, &pm, print_rec, &n, &kind, why,
                            sizeof why)) {
            printf("  dead-letter -> %s: %s\n", c->kafka.dead_letter_topic,
                   why);
            return 1;
        }
        return 0;
    }
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

static int cmd_route(struct opts *o)
{
    struct conf c;
    struct route_table *t = NULL;
    struct payload *pl = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
    char err[512];
    int rc, missed = 0;
    if (!o->npos)
        return usage_error("%s", "route needs at least one MQTT topic");
    if ((rc = load(o, &c)))
        return rc;
    if (route_table_new(&c, &t, err, sizeof err) ||
        payload_new(&c, &pl, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        route_table_free(t);
        conf_fini(&c);
        return EX_CONFIG_CODE;
    }
    if (o->payload_file &&
        !(data = read_file(o->payload_file, (size_t)c.mqtt.max_payload, &len)))
        missed = 1;
    for (int i = 0; i < o->npos && (data || !o->payload_file); i++)
        missed += route_one(&c, t, pl, o->pos[i], data, len);
    free(data);
    payload_free(pl);
    route_table_free(t);
    conf_fini(&c);
    return missed ? 1 : 0;
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
    conf_format_size(st.file_bytes, a, sizeof a);
    conf_format_size(c->spool.max_bytes, b, sizeof b);
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

static int cmd_spool(struct opts *o)
{
    struct conf c;
    struct spool *sp = NULL;
    char err[512];
    const char *what = o->npos > 0 ? o->pos[0] : "stats";
    const char *sub = o->npos > 1 ? o->pos[1] : "list";
    int rc;

    if (strcmp(what, "stats") && strcmp(what, "dead"))
        return usage_error("unknown spool command \"%s\"", what);
    if (o->npos > (strcmp(what, "dead") ? 1 : 2) ||
        (strcmp(sub, "list") && strcmp(sub, "replay") && strcmp(sub, "purge")))
        return usage_error("unexpected argument \"%s\"", o->pos[o->npos - 1]);
    if ((rc = load(o, &c)))
        return rc;
    struct spool_opts so = {c.spool.path, c.spool.max_bytes, c.spool.max_age,
                            (enum spool_on_full)c.spool.on_full,
                            (enum spool_sync)c.spool.sync};
    if (access(c.spool.path, F_OK)) {
        fprintf(
            stderr,
            "%s: no spool at %s (the bridge creates it when it first starts)\n",
            prog, c.spool.path);
        rc = 1;
    } else if (spool_open(&so, &sp, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", c.spool.path, err);
        rc = 1;
    } else if (!strcmp(what, "stats")) {
        rc = spool_stats_print(sp, &c);
    } else if (!strcmp(sub, "list")) {
        rc = spool_dead_print(sp);
    } else {
        int n = !strcmp(sub, "replay") ? spool_dead_replay(sp)
                                       : spool_dead_purge(sp);
        if (n < 0)
            fprintf(stderr, "%s: %s\n", c.spool.path, spool_errmsg(sp));
        else
            printf("%s %d dead letter%s\n",
                   !strcmp(sub, "replay") ? "replayed" : "purged", n,
                   n == 1 ? "" : "s");
        rc = n < 0;
    }
    spool_close(sp);
    conf_fini(&c);
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

/* Reads what the daemon wrote to log.status_file. Exit 0 when it is running
 * and the file is fresh, 3 when it is not running (the LSB status code). */
static int cmd_status(struct opts *o)
{
    struct conf c;
    char buf[4096], *lines[128];
    size_t n = 0;
    int rc;

    if (o->npos)
        return usage_error("unexpected argument \"%s\"", o->pos[0]);
    if ((rc = load(o, &c)))
        return rc;
    FILE *f = c.log.status_file && *c.log.status_file
                  ? fopen(c.log.status_file, "r")
                  : NULL;
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[len] = '\0';
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l && n < 128;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    if (n == 0) {
        printf("mqtt2kafka: not running (no status in %s)\n",
               c.log.status_file && *c.log.status_file ? c.log.status_file
                                                       : "(status_file off)");
        conf_fini(&c);
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
    printf("  uplink %s, mqtt %s\n", status_get(lines, n, "uplink", "?"),
           status_get(lines, n, "mqtt", "?"));
    printf("  backlog %s records, %s bytes, oldest %ss; spool file %s bytes\n",
           status_get(lines, n, "backlog", "?"),
           status_get(lines, n, "backlog_bytes", "?"),
           status_get(lines, n, "oldest_s", "?"),
           status_get(lines, n, "spool_file_bytes", "?"));
    printf("  received %s, delivered %s, redelivered by the broker %s\n",
           status_get(lines, n, "received", "?"),
           status_get(lines, n, "delivered", "?"),
           status_get(lines, n, "redelivered", "?"));
    printf("  dead-lettered %s (unrouted %s, bad topic %s, oversized %s, empty "
           "%s, "
           "bad payload %s, missing field %s); refused by Kafka %s\n",
           status_get(lines, n, "dead_lettered", "?"),
           status_get(lines, n, "unrouted", "?"),
           status_get(lines, n, "bad_topic", "?"),
           status_get(lines, n, "oversized", "?"),
           status_get(lines, n, "empty", "?"),
           status_get(lines, n, "bad_payload", "?"),
           status_get(lines, n, "missing_field", "?"),
           status_get(lines, n, "kafka_refused", "?"));
    printf("  dropped: spool full %s, expired %s, by the broker %s\n",
           status_get(lines, n, "dropped_full", "?"),
           status_get(lines, n, "expired", "?"),
           status_get(lines, n, "broker_dropped", "?"));
    conf_fini(&c);
    return running ? 0 : 3;
}

/* ---- the rest ------------------------------------------------------- */

static int cmd_version(struct opts *o)
{
    (void)o;
    printf("%s %s\n", prog, M2K_VERSION);
    return 0;
}

static int cmd_help(struct opts *o)
{
    (void)o;
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const struct cmd *cmd = &cmds[0]; /* run */
    struct opts o = {0};
    int first = 1;

    if (argc > 1 && argv[1][0] != '-') {
        for (cmd = cmds; cmd < cmds + NCMDS && strcmp(cmd->name, argv[1]);
             cmd++)
            ;
        if (cmd == cmds + NCMDS)
            return usage_error("unknown command \"%s\"", argv[1]);
        first = 2;
    } else if (argc > 1 && !strcmp(argv[1], "--version")) {
        return cmd_version(&o);
    }
    if (!(o.pos = calloc((size_t)argc, sizeof *o.pos)))
        return 1;
    int rc = parse_opts(argc - first, argv + first, &o);
    if (rc == 0)
        rc = cmd->fn(&o);
    else if (rc < 0)
        rc = 0; /* --help */
    free(o.pos);
    return rc;
}
