/*
 * stats.c — the counters as text (see stats.h). The names are a contract
 * (tests, `mqtt2kafka status`, operators' scripts): extend, never rename.
 */
#include "bridge/stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

static const char *uplink_name(int up)
{
    return up == 1 ? "up" : up == 0 ? "down" : "unknown";
}

void stats_format(const struct stats *n, const struct stats_gauges *g,
                  char *buf, size_t len, char sep)
{
    const struct {
        const char *name;
        int64_t v;
    } kv[] = {
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
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]) && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s=%" PRId64 "%c",
                                kv[i].name, kv[i].v, sep);
    if (off < len)
        snprintf(buf + off, len - off, "uplink=%s%cmqtt=%s%cpath=%s",
                 uplink_name(g->uplink), sep,
                 g->mqtt ? "connected" : "disconnected", sep,
                 g->direct ? "direct" : "spool");
}

void stats_status_line(const struct stats_gauges *g, char *buf, size_t len)
{
    const char *uc = g->uplink != 1 ? g->uplink_cause : NULL;
    const char *mc = !g->mqtt ? g->mqtt_cause : NULL;
    snprintf(buf, len,
             "%suplink %s%s%.120s%s, mqtt %s%s%.120s%s, %s path, spool %" PRId64
             " records, %" PRId64 " dead letters",
             g->backpressure ? "backpressure (spool full), " : "",
             uplink_name(g->uplink), uc ? " (kafka: " : "", uc ? uc : "",
             uc ? ")" : "", g->mqtt ? "connected" : "disconnected",
             mc ? " (mqtt: " : "", mc ? mc : "", mc ? ")" : "",
             g->direct ? "direct" : "spool", g->backlog, g->dead_in_spool);
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
    char tmp[4200], body[1200];
    int rc = 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    stats_format(n, g, body, sizeof(body), '\n');
    fprintf(f,
            "state=%s\npid=%d\nupdated_ms=%" PRId64 "\nversion=%s\n"
            "gateway=%s\n%s\n",
            id->state, id->pid, id->now_ms, id->version, id->gateway, body);
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
