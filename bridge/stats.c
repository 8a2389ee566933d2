/*
 * stats.c — the counters as text (see stats.h). The names are a contract
 * (tests, `mqtt2kafka status`, operators' scripts): extend, never rename.
 */
#include "bridge/stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *uplink_name(int up)
{
    return up == 1 ? "up" : up == 0 ? "down" : "unknown";
}

struct kv {
    const char *name;
    int64_t v;
};

static size_t put_kv(char *buf, size_t len, const struct kv *kv, size_t n,
                     char sep)
{
    size_t off = 0;
    for (size_t i = 0; i < n && off < len; i++) {
        int k = snprintf(buf + off, len - off, "%s=%" PRId64 "%c", kv[i].name,
                         kv[i].v, sep);
        off += k > 0 ? (size_t)k : 0;
    }
    return off < len ? off : len;
}

void stats_format(const struct stats *n, const struct stats_gauges *g,
                  char *buf, size_t len, char sep)
{
    const struct kv kv[] = {
        {"received", n->received},
        {"spooled", n->spooled},
        {"delivered", n->delivered},
        {"dead_lettered", n->dead_lettered},
        {"unrouted", n->unrouted},
        {"bad_topic", n->bad_topic},
        {"oversized", n->oversized},
        {"empty", n->empty},
        {"bad_payload", n->bad_payload},
        {"missing_field", n->missing_field},
        {"kafka_refused", n->kafka_refused},
        {"dropped_full", g->dropped_full},
        {"expired", g->expired},
        {"retries", n->retries},
        {"spool_errors", n->spool_errors},
        {"broker_dropped", n->broker_dropped},
        {"redelivered", n->redelivered},
        {"dropped_qos0", n->dropped_qos0},
        {"props_renamed", n->props_renamed},
        {"unknown_fields", n->unknown_fields},
        {"spb_unresolved", n->spb_unresolved},
        {"spb_seq_gaps", n->spb_seq_gaps},
        {"spb_rebirths", n->spb_rebirths},
        {"backlog", g->backlog},
        {"backlog_bytes", g->backlog_bytes},
        {"oldest_s", g->oldest_s},
        {"dead_in_spool", g->dead_in_spool},
        {"spool_file_bytes", g->spool_file_bytes},
        {"spool_max_bytes", g->spool_max_bytes},
        {"dead_dropped", g->dead_dropped},
        {"dead_expired", g->dead_expired},
        {"direct", n->direct},
        {"spilled", n->spilled},
        {"stored", n->stored},
        {"reconnects", n->reconnects},
        {"kafka_reconnects", n->kafka_reconnects},
        {"drain_held_s", g->drain_held_s},
        {"drain_capped", g->drain_capped},
    };
    size_t off = put_kv(buf, len, kv, sizeof(kv) / sizeof(kv[0]), sep);
    if (off < len)
        snprintf(buf + off, len - off, "uplink=%s%cmqtt=%s%cpath=%s",
                 uplink_name(g->uplink), sep,
                 g->mqtt ? "connected" : "disconnected", sep,
                 g->direct ? "direct" : "spool");
}

void stats_format_spool(const struct stats_gauges *g, char *buf, size_t len,
                        char sep)
{
    const struct kv kv[] = {
        {"put_total", g->put_total},
        {"acked_total", g->acked_total},
        {"dead_dropped_full", g->dead_dropped},
        {"dead_purged", g->dead_purged},
        {"dropped_full_run", g->run_full},
        {"expired_run", g->run_expired},
        {"dead_dropped_full_run", g->run_dead_full},
        {"dead_expired_run", g->run_dead_expired},
        {"backlog_at_start", g->backlog_at_start},
        {"dead_at_start", g->dead_at_start},
        {"spool_bytes_written", g->written},
        {"spool_fsyncs", g->fsyncs},
        {"disk_bytes_written", g->disk_written},
    };
    size_t off = put_kv(buf, len, kv, sizeof(kv) / sizeof(kv[0]), sep);
    if (off && off <= len)
        buf[off - 1] = '\0'; /* no separator after the last */
}

void stats_status_line(const struct stats_gauges *g, char *buf, size_t len)
{
    const char *uc = g->uplink != 1 ? g->uplink_cause : NULL;
    const char *mc = !g->mqtt ? g->mqtt_cause : NULL;
    int n = snprintf(
        buf, len,
        "%suplink %s%s%.120s%s, mqtt %s%s%.120s%s, %s path, spool %" PRId64
        " records, %" PRId64 " dead letters",
        g->backpressure ? "backpressure (spool full), " : "",
        uplink_name(g->uplink), uc ? " (kafka: " : "", uc ? uc : "",
        uc ? ")" : "", g->mqtt ? "connected" : "disconnected",
        mc ? " (mqtt: " : "", mc ? mc : "", mc ? ")" : "",
        g->direct ? "direct" : "spool", g->backlog, g->dead_in_spool);
    if (n > 0 && (size_t)n < len && g->drain_held_s > 0)
        n += snprintf(buf + n, len - (size_t)n,
                      "; backlog drain starts in %" PRId64
                      " s (kafka.drain_delay)",
                      g->drain_held_s);
    else if (n > 0 && (size_t)n < len && g->drain_capped)
        n += snprintf(buf + n, len - (size_t)n,
                      "; backlog drain capped (kafka.drain_rate)");
    if (n > 0 && (size_t)n < len && g->metrics && !g->metrics_up &&
        strcmp(g->metrics, "off") != 0)
        snprintf(buf + n, len - (size_t)n, "; metrics not served (%s)",
                 g->metrics);
}

/* A cause as one status file line: control characters become spaces. */
static void put_line(FILE *f, const char *name, const char *v)
{
    fprintf(f, "%s=", name);
    for (; v && *v; v++)
        fputc((unsigned char)*v < 0x20 ? ' ' : *v, f);
    fputc('\n', f);
}

int stats_write_file(const char *path, const struct stats_ident *id,
                     const struct stats *n, const struct stats_gauges *g)
{
    char tmp[4200], body[2048], spool[800];
    int rc = 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    stats_format(n, g, body, sizeof(body), '\n');
    stats_format_spool(g, spool, sizeof(spool), '\n');
    fprintf(f,
            "state=%s\npid=%d\nupdated_ms=%" PRId64 "\nversion=%s\n"
            "gateway=%s\n%s\n%s\nmetrics=%s\nmetrics_up=%d\n"
            "metrics_retry_s=%" PRId64 "\n",
            id->state, id->pid, id->now_ms, id->version, id->gateway, body,
            spool, g->metrics ? g->metrics : "off", g->metrics_up,
            g->metrics_retry_s);
    put_line(f, "uplink_cause", g->uplink != 1 ? g->uplink_cause : NULL);
    put_line(f, "mqtt_cause", !g->mqtt ? g->mqtt_cause : NULL);
    if (id->extra)
        fputs(id->extra, f);
    if (fclose(f) != 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}
