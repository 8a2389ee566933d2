/*
 * metrics.h — what the daemon answers at GET /metrics, /healthz and
 * /ready: a snapshot of plain numbers in, text out.
 *
 * Pure: the caller (observe.c) gathers the snapshot in the loop's thread
 * from the same place the status file and the STATUS= line take theirs
 * (br_gather), so the three never disagree; this file only names and
 * formats. libc, prom.h and the structs of stats.h, kstats.h and http.h.
 *
 * The names are a contract (dashboards, alerts, tests): extend, never
 * rename. Counters end in _total, units are seconds and bytes. Counters
 * without "spool_" in their name count this run (they start at 0 with the
 * process, as Prometheus expects of counters); mqtt2kafka_spool_*_total are
 * the spool file's own, kept across restarts and crashes. The README's
 * "Metrics" section lists them all and states the conservation identity
 * they satisfy.
 */
#ifndef MQTT2KAFKA_METRICS_H
#define MQTT2KAFKA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/http.h"
#include "bridge/kstats.h"
#include "bridge/prom.h"
#include "bridge/stats.h"

/* /healthz says 503 once the loop has not turned for this long. The loop
 * turns at least once a second when idle. */
#define METRICS_STALL_MS 5000

struct metrics_view {
    const struct stats *n;        /* this run's counters */
    const struct stats_gauges *g; /* the state now, the spool's counters */
    size_t nroutes;
    const char *const *route_names;  /* conf routes[].name */
    const int64_t *route_received;   /* messages that matched route i */
    const int64_t *route_delivered;  /* its records Kafka acknowledged */
    const struct prom_hist *latency; /* receive -> Kafka ack, seconds */
    const struct kstats *kafka;      /* NULL: no statistics yet */
    int64_t kafka_age_ms;            /* since the last statistics */
    const char *version, *librdkafka;
    double start_time_s; /* the process's start, s since the epoch */
    double cpu_s;        /* user + system CPU; < 0: unknown */
    int64_t rss_bytes;   /* resident memory; < 0: unknown */
    int64_t lag_ms;      /* since the loop last turned */
    int64_t turns, stalls;
    const struct http_info *http; /* the server answering */
};

/* The whole exposition; prom_finish() says whether it fitted. */
void metrics_write(struct prom *p, const struct metrics_view *v);

struct metrics_health {
    int64_t lag_ms;        /* since the loop last turned */
    int mqtt;              /* connected to the broker */
    const char *mqtt_why;  /* when not: the broker and why */
    const char *spool_why; /* NULL when the spool takes messages; else why */
    int stopping;          /* shutting down */
    int uplink;            /* -1 unknown, 0 down, 1 up (not a readiness) */
    int64_t backlog;       /* records waiting */
};

/* 200 "ok ..." while the loop turns; 503 with how long it stalled. */
void metrics_healthz(const struct metrics_health *h, struct http_response *res);
/* 200 when MQTT is connected and the spool takes messages (an uplink that
 * is down is still ready: spooling is the job); 503 with one line per
 * reason otherwise. */
void metrics_ready(const struct metrics_health *h, struct http_response *res);

#endif
