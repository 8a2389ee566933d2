/*
 * metrics.c — the /metrics exposition and the /healthz and /ready answers
 * from one snapshot (see metrics.h). Pure: no I/O, no clock.
 *
 * The identity the counters satisfy at every scrape (README, "Metrics"),
 * for this run, with m = mqtt2kafka_ and dead(r), dropped(r) the families
 * by reason:
 *
 *   m_messages_received_total = m_messages_stored_total
 *       + dead(unrouted, bad_topic, oversized, empty, bad_payload,
 *              missing_field) + m_messages_redelivered_total
 *       + dropped(qos0_lost)
 *   m_spool_records_at_start + m_records_spooled_total
 *       + m_records_direct_total
 *       = m_messages_delivered_total + dead(kafka_refused)
 *       + dropped(spool_full, expired) + m_spool_records
 *   m_spool_dead_letters_at_start + dead(kafka_refused)
 *       = m_spool_dead_letters + dropped(dead_full, dead_expired)
 *
 * and for the spool file's whole life, across crashes:
 *
 *   m_spool_records_put_total = m_spool_records_acked_total
 *       + m_spool_records_dropped_total (all reasons)
 *       + m_spool_dead_letters_purged_total + m_spool_records
 *       + m_spool_dead_letters
 *
 * Everything is read in the loop's thread between two turns, so the
 * numbers of one scrape are one instant.
 */
#include "bridge/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define M "mqtt2kafka_"

struct lv { /* one labelled sample */
    const char *label;
    int64_t v;
};

static void one(struct prom *p, const char *name, enum prom_type t,
                const char *help, int64_t v)
{
    prom_family(p, name, t, help);
    prom_i64(p, name, NULL, 0, v);
}

static void one_f(struct prom *p, const char *name, enum prom_type t,
                  const char *help, double v)
{
    prom_family(p, name, t, help);
    prom_f64(p, name, NULL, 0, v);
}

static void labelled(struct prom *p, const char *name, enum prom_type t,
                     const char *help, const char *label, const struct lv *lv,
                     size_t n)
{
    prom_family(p, name, t, help);
    for (size_t i = 0; i < n; i++) {
        const struct prom_label l = {label, lv[i].label};
        prom_i64(p, name, &l, 1, lv[i].v);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* MQTT in, the spool, Kafka out: this run's counters. */
static void write_flow(struct prom *p, const struct metrics_view *v)
{
    const struct stats *n = v->n;
    const struct stats_gauges *g = v->g;
    one(p, M "messages_received_total", PROM_COUNTER,
        "MQTT messages taken, counted when their burst was committed: "
        "stored, dead-lettered, acknowledged as a redelivery, or lost (QoS 0)",
        n->received);
    one(p, M "messages_stored_total", PROM_COUNTER,
        "Messages whose records were made durable for their route: "
        "committed to the spool, or confirmed by Kafka on the direct path",
        n->stored);
    one(p, M "messages_redelivered_total", PROM_COUNTER,
        "Broker redeliveries of messages already stored (acknowledged, not "
        "stored again)",
        n->redelivered);
    one(p, M "records_spooled_total", PROM_COUNTER,
        "Records committed to the spool: one per stored message (one per "
        "element of a split one) and one per dead letter to the topic",
        n->spooled);
    one(p, M "records_direct_total", PROM_COUNTER,
        "Records Kafka confirmed on the direct path, never written to the "
        "spool (spool.mode: direct)",
        n->direct);
    one(p, M "records_spilled_total", PROM_COUNTER,
        "Records the direct path put into the spool, not confirmed within "
        "spool.direct_wait (counted in records_spooled_total too)",
        n->spilled);
    one(p, M "messages_delivered_total", PROM_COUNTER,
        "Records Kafka acknowledged: straight on the direct path, or from "
        "the spool, which then deleted them (a split message counts once "
        "per record)",
        n->delivered);
    const struct lv dead[] = {
        {"unrouted", n->unrouted},
        {"bad_topic", n->bad_topic},
        {"oversized", n->oversized},
        {"empty", n->empty},
        {"bad_payload", n->bad_payload},
        {"missing_field", n->missing_field},
        {"kafka_refused", n->kafka_refused},
    };
    labelled(p, M "messages_dead_lettered_total", PROM_COUNTER,
             "Messages sent to kafka.dead_letter_topic instead, by reason; "
             "kafka_refused: records Kafka refused for good, kept in the "
             "spool's dead-letter table",
             "reason", dead, N(dead));
    const struct lv dropped[] = {
        {"qos0_lost", n->dropped_qos0},        {"spool_full", g->run_full},
        {"expired", g->run_expired},           {"dead_full", g->run_dead_full},
        {"dead_expired", g->run_dead_expired}, {"broker", n->broker_dropped},
    };
    labelled(p, M "messages_dropped_total", PROM_COUNTER,
             "Messages lost, by reason: QoS 0 messages whose commit failed; "
             "records the spool dropped when full (drop_oldest) or expired "
             "(max_age); dead letters over the table's bounds; broker: what "
             "the MQTT broker itself dropped before we got it ($SYS)",
             "reason", dropped, N(dropped));
    one(p, M "delivery_retries_total", PROM_COUNTER,
        "Transient delivery failures (the record is sent again)", n->retries);
    one(p, M "spool_errors_total", PROM_COUNTER,
        "Bursts the spool refused (their acknowledgements withheld: the "
        "broker sends them again)",
        n->spool_errors);
    one(p, M "mqtt_properties_renamed_total", PROM_COUNTER,
        "Device user properties renamed because they used a name the bridge "
        "writes",
        n->props_renamed);
    const struct lv side[] = {{"mqtt", n->reconnects},
                              {"kafka", n->kafka_reconnects}};
    labelled(p, M "reconnects_total", PROM_COUNTER,
             "Connections lost (and retried): MQTT, or every Kafka broker "
             "(the uplink went down)",
             "side", side, N(side));
}

static void write_routes(struct prom *p, const struct metrics_view *v)
{
    static const char *const fam[2] = {M "route_messages_received_total",
                                       M "route_messages_delivered_total"};
    static const char *const help[2] = {
        "Messages that matched the route (stored or dead-lettered), by the "
        "route's name (routes[].name, default its position)",
        "Records of the route that Kafka acknowledged"};
    for (int k = 0; k < 2; k++) {
        const int64_t *c = k ? v->route_delivered : v->route_received;
        prom_family(p, fam[k], PROM_COUNTER, help[k]);
        for (size_t i = 0; i < v->nroutes; i++) {
            const struct prom_label l = {"route", v->route_names[i]};
            prom_i64(p, fam[k], &l, 1, c[i]);
        }
    }
    prom_family(p, M "delivery_latency_seconds", PROM_HISTOGRAM,
                "Receive (from MQTT) to Kafka's acknowledgement, on the wall "
                "clock, of every delivered record");
    prom_hist_write(p, M "delivery_latency_seconds", NULL, 0, v->latency);
}

/* The spool: now, this run, and since its file was made. */
static void write_spool(struct prom *p, const struct metrics_view *v)
{
    const struct stats_gauges *g = v->g;
    one(p, M "spool_records", PROM_GAUGE,
        "Records waiting in the spool (in flight to Kafka included)",
        g->backlog);
    one(p, M "spool_bytes", PROM_GAUGE,
        "Key, header and value bytes of the waiting records", g->backlog_bytes);
    one(p, M "spool_max_bytes", PROM_GAUGE,
        "The spool's cap in effect (spool.max_bytes, or less when the disk "
        "has less room)",
        g->spool_max_bytes);
    one_f(p, M "spool_oldest_age_seconds", PROM_GAUGE,
          "Age of the oldest waiting record (0 when none), on a clock that "
          "wall-clock steps do not move",
          (double)g->oldest_ms / 1000.0);
    one(p, M "spool_inflight_records", PROM_GAUGE,
        "Records handed to Kafka and not yet acknowledged", g->inflight);
    one(p, M "spool_file_bytes", PROM_GAUGE, "The spool's database and WAL",
        g->spool_file_bytes);
    one(p, M "spool_dead_letters", PROM_GAUGE,
        "Records in the spool's dead-letter table (Kafka refused them; "
        "`mqtt2kafka spool dead` lists and replays them)",
        g->dead_in_spool);
    one(p, M "spool_dead_letter_bytes", PROM_GAUGE,
        "Bytes of the dead-letter table's records", g->dead_bytes);
    one(p, M "spool_records_at_start", PROM_GAUGE,
        "Records waiting when this run opened the spool", g->backlog_at_start);
    one(p, M "spool_dead_letters_at_start", PROM_GAUGE,
        "Dead letters in the table when this run opened the spool",
        g->dead_at_start);
    one(p, M "spool_bytes_written_total", PROM_COUNTER,
        "Bytes this run wrote to the spool's files (database, WAL), as "
        "SQLite hands them to the kernel: flash wear",
        g->written);
    one(p, M "spool_fsyncs_total", PROM_COUNTER,
        "fsyncs of the spool's files in this run", g->fsyncs);
    if (g->disk_written >= 0)
        one(p, M "disk_bytes_written_total", PROM_COUNTER,
            "Bytes the kernel counted this process as writing to disk "
            "(/proc/self/io write_bytes: whole pages, 0 on tmpfs)",
            g->disk_written);
    one(p, M "spool_records_put_total", PROM_COUNTER,
        "Records put into the spool since its file was made", g->put_total);
    one(p, M "spool_records_acked_total", PROM_COUNTER,
        "Records deleted after Kafka acknowledged them, since the spool file "
        "was made",
        g->acked_total);
    const struct lv dropped[] = {{"full", g->dropped_full},
                                 {"expired", g->expired},
                                 {"dead_full", g->dead_dropped},
                                 {"dead_expired", g->dead_expired}};
    labelled(p, M "spool_records_dropped_total", PROM_COUNTER,
             "Records the spool dropped since its file was made, by reason",
             "reason", dropped, N(dropped));
    one(p, M "spool_dead_letters_purged_total", PROM_COUNTER,
        "Dead letters deleted by `mqtt2kafka spool dead purge`, since the "
        "spool file was made",
        g->dead_purged);
}

static void write_broker_rtt(struct prom *p, const struct kstats *k)
{
    static const char *const qn[3] = {"0.5", "0.95", "0.99"};
    prom_family(p, M "kafka_broker_rtt_seconds", PROM_SUMMARY,
                "Request round-trip time per broker (librdkafka's statistics): "
                "quantiles of the last statistics interval, NaN when nothing "
                "was timed; _sum and _count over the producer's life");
    for (size_t i = 0; i < k->nbrokers; i++) {
        const struct kstats_broker *b = &k->b[i];
        const double q[3] = {b->rtt_p50, b->rtt_p95, b->rtt_p99};
        for (int j = 0; j < 3; j++) {
            const struct prom_label l[2] = {{"broker", b->name},
                                            {"quantile", qn[j]}};
            prom_f64(p, M "kafka_broker_rtt_seconds", l, 2, q[j]);
        }
        const struct prom_label l = {"broker", b->name};
        prom_f64(p, M "kafka_broker_rtt_seconds_sum", &l, 1, b->rtt_sum);
        prom_i64(p, M "kafka_broker_rtt_seconds_count", &l, 1, b->rtt_count);
    }
}

/* Links: MQTT, the uplink, and each Kafka broker from librdkafka. */
static void write_links(struct prom *p, const struct metrics_view *v)
{
    const struct stats_gauges *g = v->g;
    const struct kstats *k = v->kafka;
    one(p, M "mqtt_connected", PROM_GAUGE, "1 while connected to the broker",
        g->mqtt);
    one(p, M "uplink_up", PROM_GAUGE,
        "1 while Kafka takes records (0 when down or not yet known)",
        g->uplink == 1);
    one(p, M "backpressure", PROM_GAUGE,
        "1 while MQTT is not read because the spool is full (on_full: "
        "backpressure)",
        g->backpressure);
    one(p, M "drain_held_seconds", PROM_GAUGE,
        "Until an outage's backlog starts draining, at random within "
        "kafka.drain_delay (0: not held)",
        g->drain_held_s);
    one(p, M "drain_capped", PROM_GAUGE,
        "1 while kafka.drain_rate caps the drain of an outage's backlog",
        g->drain_capped);
    if (!k)
        return;
    one_f(p, M "kafka_statistics_age_seconds", PROM_GAUGE,
          "Since librdkafka's last statistics (statistics.interval.ms)",
          (double)v->kafka_age_ms / 1000.0);
    one(p, M "kafka_queue_records", PROM_GAUGE,
        "Records inside librdkafka, waiting or in flight", k->msg_cnt);
    static const char *const fam[] = {
        M "kafka_broker_up", M "kafka_broker_requests_in_flight",
        M "kafka_broker_connects_total", M "kafka_broker_disconnects_total"};
    static const char *const help[] = {
        "1 while librdkafka's connection to the broker is UP",
        "Requests sent to the broker and awaiting a response",
        "Connections to the broker made by this producer",
        "Connections to the broker lost by this producer"};
    for (size_t f = 0; f < N(fam); f++) {
        prom_family(p, fam[f], f < 2 ? PROM_GAUGE : PROM_COUNTER, help[f]);
        for (size_t i = 0; i < k->nbrokers; i++) {
            const struct kstats_broker *b = &k->b[i];
            const int64_t val[] = {b->up, b->waitresp, b->connects,
                                   b->disconnects};
            const struct prom_label l = {"broker", b->name};
            prom_i64(p, fam[f], &l, 1, val[f]);
        }
    }
    write_broker_rtt(p, k);
}

/* The process, the loop, the HTTP server answering this. */
static void write_process(struct prom *p, const struct metrics_view *v)
{
    const struct prom_label l[2] = {{"version", v->version},
                                    {"librdkafka", v->librdkafka}};
    prom_family(p, M "build_info", PROM_GAUGE,
                "1, labelled with the version and librdkafka's");
    prom_i64(p, M "build_info", l, 2, 1);
    one_f(p, "process_start_time_seconds", PROM_GAUGE,
          "Start time of the process since the epoch, in seconds",
          v->start_time_s);
    if (v->cpu_s >= 0)
        one_f(p, "process_cpu_seconds_total", PROM_COUNTER,
              "User and system CPU time spent, in seconds", v->cpu_s);
    if (v->rss_bytes >= 0)
        one(p, "process_resident_memory_bytes", PROM_GAUGE,
            "Resident memory size, in bytes", v->rss_bytes);
    one_f(p, M "loop_lag_seconds", PROM_GAUGE,
          "Since the loop last turned, when this was written (/healthz says "
          "503 past 5 s)",
          (double)v->lag_ms / 1000.0);
    one(p, M "loop_turns_total", PROM_COUNTER, "Turns of the poll loop",
        v->turns);
    one(p, M "loop_stalls_total", PROM_COUNTER,
        "Turns that came more than 5 s after the one before", v->stalls);
    if (!v->http)
        return;
    one(p, M "http_connections", PROM_GAUGE,
        "Open connections to this endpoint", v->http->conns);
    one(p, M "http_requests_total", PROM_COUNTER,
        "Requests answered by this endpoint", (int64_t)v->http->requests);
    one(p, M "http_refused_total", PROM_COUNTER,
        "Requests refused (a method other than GET or HEAD, or a body)",
        (int64_t)v->http->refused);
    one(p, M "http_cut_total", PROM_COUNTER,
        "Connections closed because a request took too long (slow clients)",
        (int64_t)v->http->cut);
}

void metrics_write(struct prom *p, const struct metrics_view *v)
{
    write_flow(p, v);
    write_routes(p, v);
    write_spool(p, v);
    write_links(p, v);
    write_process(p, v);
}

void metrics_healthz(const struct metrics_health *h, struct http_response *res)
{
    double s = (double)h->lag_ms / 1000.0;
    if (h->lag_ms > METRICS_STALL_MS)
        http_response_printf(res, 503,
                             "stalled: the loop did not turn for %.1f s "
                             "(more than %d s)\n",
                             s, METRICS_STALL_MS / 1000);
    else
        http_response_printf(res, 200, "ok: the loop turned %.3f s ago\n", s);
}

void metrics_ready(const struct metrics_health *h, struct http_response *res)
{
    char why[1024];
    size_t n = 0;
    why[0] = '\0';
    if (h->stopping)
        n += (size_t)snprintf(why + n, sizeof why - n, "stopping\n");
    if (!h->mqtt && n < sizeof why)
        n += (size_t)snprintf(why + n, sizeof why - n, "mqtt: %s\n",
                              h->mqtt_why ? h->mqtt_why : "not connected");
    if (h->spool_why && n < sizeof why)
        n += (size_t)snprintf(why + n, sizeof why - n, "spool: %s\n",
                              h->spool_why);
    if (n) {
        http_response_printf(res, 503, "not ready:\n%s", why);
        return;
    }
    if (h->uplink == 1)
        http_response_printf(res, 200, "ready\n");
    else
        http_response_printf(
            res, 200,
            "ready (uplink %s: spooling, %" PRId64 " records waiting)\n",
            h->uplink == 0 ? "down" : "not yet known", h->backlog);
}
