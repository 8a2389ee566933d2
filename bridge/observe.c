/*
 * observe.c — how the running daemon is seen: one snapshot of its counters
 * and state (br_gather) that the counter log line, the status file, the
 * systemd STATUS= line and GET /metrics all read, so they never disagree;
 * the HTTP endpoints (/metrics, /healthz, /ready) served from the loop;
 * librdkafka's statistics; the loop's own pulse.
 *
 * Part of the daemon (bridge_int.h): everything here runs in the loop's
 * thread, between two turns, so a scrape reads one instant and needs no
 * lock. A scrape costs a spool_stats() (two stat() calls and one indexed
 * row), three small /proc reads and the formatting of a few hundred
 * lines into the server's buffer; it never waits on anything.
 *
 * /healthz and a stalled loop: the handler runs inside the loop, so a loop
 * that is stuck answers nothing at all (the client times out, and
 * systemd's watchdog restarts the daemon). What the handler can tell is
 * how long the loop went without turning: the time since its last turn,
 * or, for STALL_ANSWER_MS after a stall ended, that stall's length (the
 * loop turns at least once a second, so a gap over METRICS_STALL_MS is a
 * stall: blocked in a call, the process stopped or starved). The requests
 * that waited through a stall are served in the first turns after it, and
 * libmicrohttpd may need a turn or two to get to them: they get 503, and
 * requests after STALL_ANSWER_MS get 200 again.
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/log.h"
#include "bridge/metrics.h"

#define HTTP_BODY_MAX   (256u << 10) /* the largest /metrics we serve */
#define STALL_ANSWER_MS 2000 /* a stall is told this long after it ended */

/* --- the snapshot --------------------------------------------------------- */

/* A "name: value" number from a /proc file; -1 when it is not there. */
static int64_t proc_field(const char *path, const char *name)
{
    char line[256];
    size_t n = strlen(name);
    int64_t v = -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, n) && line[n] == ':') {
            v = strtoll(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Why the metrics are not served, their address, or "off"; when the next
 * bind is tried (-1: none). */
static const char *metrics_state(struct bridge *br, int *up, int64_t *retry_s)
{
    struct http_info hi;
    *up = 0;
    *retry_s = -1;
    if (!br->http)
        return "off";
    http_info(br->http, &hi);
    *up = hi.listening;
    snprintf(br->metrics_state, sizeof br->metrics_state, "%s",
             hi.listening ? hi.address : http_error(br->http));
    if (!hi.listening && hi.retry_in_ms >= 0)
        *retry_s = (hi.retry_in_ms + 999) / 1000;
    return br->metrics_state;
}

void br_gather(struct bridge *br, struct stats *n, struct stats_gauges *g)
{
    struct spool_stats st = {0};
    const struct spool_stats *s0 = &br->spool_start;
    const struct outbox_counters *o = outbox_counters(br->ob);
    struct outbox_smearing sm;
    spool_stats(br->sp, &st);
    outbox_smearing(br->ob, log_now_ms(), &sm);
    *n = br->n;
    n->props_renamed = br->renamed;
    n->delivered = o->delivered + br->n.direct;
    n->retries = o->retries;
    n->kafka_refused = o->kafka_refused;
    *g = (struct stats_gauges){
        .dropped_full = st.dropped[SPOOL_DROP_FULL],
        .expired = st.dropped[SPOOL_DROP_EXPIRED],
        .backlog = st.records,
        .backlog_bytes = st.bytes,
        .oldest_s = st.records ? st.oldest_age_ms / 1000 : 0,
        .dead_in_spool = st.dead,
        .spool_file_bytes = st.file_bytes,
        .uplink = br->uplink,
        .mqtt = br->in && mqtt_in_connected(br->in),
        .backpressure = br->backpressure,
        .direct = br->direct,
        .drain_held_s = (sm.held_ms + 999) / 1000,
        .drain_capped = sm.capped,
        .uplink_cause = br->out ? kafka_out_cause(br->out) : NULL,
        .mqtt_cause = br->in ? mqtt_in_cause(br->in) : NULL,
        .dead_dropped = st.dropped[SPOOL_DROP_DEAD_FULL],
        .dead_expired = st.dropped[SPOOL_DROP_DEAD_EXPIRED],
        .spool_max_bytes = st.max_bytes,
        .dead_purged = st.dead_purged,
        .put_total = st.put_total,
        .acked_total = st.acked_total,
        .run_full = st.dropped[SPOOL_DROP_FULL] - s0->dropped[SPOOL_DROP_FULL],
        .run_expired =
            st.dropped[SPOOL_DROP_EXPIRED] - s0->dropped[SPOOL_DROP_EXPIRED],
        .run_dead_full = st.dropped[SPOOL_DROP_DEAD_FULL] -
                         s0->dropped[SPOOL_DROP_DEAD_FULL],
        .run_dead_expired = st.dropped[SPOOL_DROP_DEAD_EXPIRED] -
                            s0->dropped[SPOOL_DROP_DEAD_EXPIRED],
        .backlog_at_start = s0->records,
        .dead_at_start = s0->dead,
        .written = st.bytes_written,
        .fsyncs = st.syncs,
        .disk_written = proc_field("/proc/self/io", "write_bytes"),
        .oldest_ms = st.records ? st.oldest_age_ms : 0,
        .inflight = st.inflight,
        .dead_bytes = st.dead_bytes,
    };
    g->metrics = metrics_state(br, &g->metrics_up, &g->metrics_retry_s);
}

/* --- the loop's pulse ----------------------------------------------------- */

void br_loop_turned(struct bridge *br, int64_t now)
{
    if (br->turn_ms && now - br->turn_ms > METRICS_STALL_MS) {
        br->stalls++;
        br->stall_ms = now - br->turn_ms;
        br->stall_end_ms = now;
        log_warn("loop: %.1f s since the last turn (blocked, or the process "
                 "was stopped)",
                 (double)(now - br->turn_ms) / 1000.0);
    }
    br->turn_ms = now;
    br->turns++;
}

/* --- librdkafka's statistics ---------------------------------------------- */

int br_take_kafka_stats(struct bridge *br, const char *json, size_t len)
{
    char err[256];
    if (kstats_update(&br->kstats, json, len, err, sizeof err)) {
        if (!br->kstats_warned++)
            log_warn("kafka: %s", err);
        return 0;
    }
    br->kstats_ms = log_now_ms();
    for (size_t i = 0; i < br->kstats.nbrokers; i++)
        if (br->kstats.b[i].up)
            return 1;
    return 0;
}

/* --- the endpoints -------------------------------------------------------- */

static void process_stats(double *cpu_s, int64_t *rss)
{
    char buf[1024], *p;
    unsigned long long ut, st;
    long long pages;
    long tck = sysconf(_SC_CLK_TCK), psz = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    *cpu_s = -1;
    *rss = -1;
    if (f)
        fclose(f);
    buf[n] = '\0';
    /* after "(comm)": state is field 3, utime 14, stime 15, rss 24 */
    p = strrchr(buf, ')');
    if (p && tck > 0 &&
        sscanf(p + 2,
               "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s "
               "%*s %*s %*s %*s %*s %*s %lld",
               &ut, &st, &pages) == 3) {
        *cpu_s = (double)(ut + st) / (double)tck;
        *rss = pages * psz;
    }
}

static void serve_metrics(struct bridge *br, struct http_response *res)
{
    struct stats n;
    struct stats_gauges g;
    struct http_info hi;
    const struct outbox_counters *o = outbox_counters(br->ob);
    struct prom p;
    size_t len;
    br_gather(br, &n, &g);
    http_info(br->http, &hi);
    struct metrics_view v = {
        .n = &n,
        .g = &g,
        .nroutes = br->c->nroutes,
        .route_names = br->route_names,
        .route_received = br->route_received,
        .route_delivered = o->route_delivered,
        .latency = &o->latency,
        .kafka = br->kstats_ms ? &br->kstats : NULL,
        .kafka_age_ms = log_now_ms() - br->kstats_ms,
        .version = M2K_VERSION,
        .librdkafka = kafka_out_version(),
        .start_time_s = (double)br->start_ms / 1000.0,
        .lag_ms = log_now_ms() - br->turn_ms,
        .turns = br->turns,
        .stalls = br->stalls,
        .http = &hi,
    };
    process_stats(&v.cpu_s, &v.rss_bytes);
    prom_init(&p, res->body, res->cap);
    metrics_write(&p, &v);
    if (prom_finish(&p, &len)) {
        http_response_printf(res, 500,
                             "the metrics did not fit %zu bytes (or a name "
                             "is not legal)\n",
                             res->cap);
        return;
    }
    res->status = 200;
    res->len = len;
    res->content_type = PROM_CONTENT_TYPE;
}

static void health(struct bridge *br, struct metrics_health *h)
{
    struct spool_stats st = {0};
    const struct conf *c = br->c;
    spool_stats(br->sp, &st);
    int64_t now = log_now_ms();
    *h = (struct metrics_health){
        .lag_ms = now - br->turn_ms,
        .mqtt = br->in && mqtt_in_connected(br->in),
        .stopping = br->stop,
        .uplink = br->uplink,
        .backlog = st.records,
    };
    if (br->stall_end_ms && now - br->stall_end_ms < STALL_ANSWER_MS &&
        br->stall_ms > h->lag_ms)
        h->lag_ms = br->stall_ms; /* a stall that just ended */
    if (!h->mqtt) {
        if (!br->mqtt_why[0])
            snprintf(br->mqtt_why, sizeof br->mqtt_why,
                     "not connected to %s:%d yet", c->mqtt.host, c->mqtt.port);
        h->mqtt_why = br->mqtt_why;
    }
    if (br->backpressure)
        h->spool_why = "full (spool.on_full: backpressure): MQTT is not read "
                       "until Kafka takes records";
    else if (br->spool_failing)
        h->spool_why = br->spool_why;
}

static void on_http(void *ud, const char *method, const char *path,
                    struct http_response *res)
{
    struct bridge *br = ud;
    struct metrics_health h;
    (void)method; /* GET or HEAD: the same body */
    if (!strcmp(path, "/metrics")) {
        serve_metrics(br, res);
    } else if (!strcmp(path, "/healthz")) {
        health(br, &h);
        metrics_healthz(&h, res);
    } else if (!strcmp(path, "/ready")) {
        health(br, &h);
        metrics_ready(&h, res);
    } else if (!strcmp(path, "/")) {
        http_response_printf(res, 200,
                             "mqtt2kafka %s, gateway %s: /metrics /healthz "
                             "/ready\n",
                             M2K_VERSION, br->c->gateway.id);
    }
}

int br_http_open(struct bridge *br)
{
    struct http_limits lim;
    char err[256];
    const char *listen = br->c->metrics.listen;
    br->start_ms = log_wall_ms();
    br->turn_ms = log_now_ms();
    if (!listen || !strcmp(listen, "off"))
        return 0;
    http_limits_default(&lim);
    lim.body_max = HTTP_BODY_MAX;
    if (http_new(listen, &lim, on_http, br, &br->http, err, sizeof err)) {
        log_error("metrics: %s", err);
        return -1;
    }
    if (http_start(br->http) == 0) {
        struct http_info hi;
        http_info(br->http, &hi);
        log_info("metrics: http://%s/metrics, /healthz, /ready", hi.address);
    } else
        log_warn("metrics: %s; forwarding goes on without them, binding "
                 "again every 30 s",
                 http_error(br->http));
    return 0;
}

void br_http_run(struct bridge *br)
{
    struct http_info hi;
    if (!br->http)
        return;
    int rc = http_run(br->http);
    if (rc == 1) {
        http_info(br->http, &hi);
        log_info("metrics: http://%s/metrics, /healthz, /ready (bound now)",
                 hi.address);
    } else if (rc < 0) {
        log_debug("metrics: %s", http_error(br->http));
    }
}

void br_http_close(struct bridge *br)
{
    http_free(br->http);
    br->http = NULL;
}
