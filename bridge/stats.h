/*
 * stats.h — the daemon's counters and how they are shown: the log's
 * counter line, the status file `mqtt2kafka status` reads, and the short
 * line for `systemctl status`. One format for all, so they never disagree.
 * Pure but for stats_write_file(); libc only.
 */
#ifndef MQTT2KAFKA_STATS_H
#define MQTT2KAFKA_STATS_H

#include <stddef.h>
#include <stdint.h>

struct stats {
    int64_t received;       /* messages handed over by the broker */
    int64_t spooled;        /* records committed to the spool */
    int64_t delivered;      /* records Kafka confirmed (direct included) */
    int64_t dead_lettered;  /* routed to kafka.dead_letter_topic */
    int64_t unrouted;       /*   of those: no route matched */
    int64_t bad_topic;      /*   of those: illegal Kafka topic from captures */
    int64_t oversized;      /*   of those: payload over mqtt.max_payload */
    int64_t empty;          /*   of those: empty payload */
    int64_t bad_payload;    /*   of those: not the route's payload type */
    int64_t missing_field;  /*   of those: a template's payload field unset */
    int64_t kafka_refused;  /* moved to the spool's dead-letter table */
    int64_t retries;        /* transient delivery failures */
    int64_t spool_errors;   /* batches the spool refused (acks withheld) */
    int64_t broker_dropped; /* the broker's own drop counter went up by */
    int64_t reconnects;
    int64_t redelivered;      /* broker redeliveries of committed messages */
    int64_t dropped_qos0;     /* QoS 0 messages lost: their commit failed */
    int64_t props_renamed;    /* device properties named like the bridge's */
    int64_t unknown_fields;   /* messages with fields their type lacks */
    int64_t spb_unresolved;   /* Sparkplug messages with unknown aliases */
    int64_t spb_seq_gaps;     /* Sparkplug seq jumps */
    int64_t spb_rebirths;     /* rebirth requests sent to edge nodes */
    int64_t direct;           /* records Kafka confirmed on the direct path,
                               * never written to the spool */
    int64_t spilled;          /* records the direct path put into the spool
                               * (not confirmed in time; in spooled too) */
    int64_t stored;           /* messages whose records were committed for
                               * their route, to the spool or to Kafka
                               * directly (spooled and direct count records:
                               * split and dead letters) */
    int64_t kafka_reconnects; /* times the uplink went from up to down */
};

/* This run's counters are `struct stats` (they start at 0 with the
 * process). The spool keeps its own since its file was made, across
 * restarts and crashes: the "lifetime" ones below. */
struct stats_gauges { /* the state now, from the spool and the links */
    int64_t dropped_full, expired;      /* since the spool file was made */
    int64_t dead_dropped, dead_expired; /* dead letters beyond their bounds */
    int64_t spool_max_bytes; /* the cap in effect (the disk may lower it) */
    int64_t backlog, backlog_bytes, oldest_s, dead_in_spool, spool_file_bytes;
    int uplink;       /* -1 unknown, 0 down, 1 up */
    int mqtt;         /* 1 connected */
    int backpressure; /* not reading MQTT: the spool is full */
    int direct;       /* 1: bursts go straight to Kafka (spool.mode) */
    /* load smearing: an outage's backlog waits this long yet for its
     * random start (kafka.drain_delay); 1 while kafka.drain_rate caps it */
    int64_t drain_held_s;
    int drain_capped;
    /* why the uplink or the MQTT link is down, one line without secrets
     * ("authentication failed (SASL SCRAM-SHA-512)"); NULL: none known */
    const char *uplink_cause, *mqtt_cause;
    /* the spool since its file was made (dead_dropped, dead_expired,
     * dropped_full and expired above too) */
    int64_t dead_purged, put_total, acked_total;
    /* the spool in this run (since it was opened) */
    int64_t run_full, run_expired, run_dead_full, run_dead_expired;
    int64_t backlog_at_start, dead_at_start;
    int64_t written, fsyncs; /* bytes the spool wrote, its fsyncs */
    int64_t disk_written;    /* the process's write_bytes; -1 unknown */
    /* the spool now */
    int64_t oldest_ms; /* age of the oldest record, ms (oldest_s rounded) */
    int64_t inflight, dead_bytes;
    /* the metrics endpoint: its address, "off", or why it is not served */
    const char *metrics;
    int metrics_up;          /* listening */
    int64_t metrics_retry_s; /* not listening: next bind in; -1 none */
};

/* "name=value" pairs separated by sep, then uplink= and mqtt=. Truncates
 * to len like snprintf. The counter log line. */
void stats_format(const struct stats *n, const struct stats_gauges *g,
                  char *buf, size_t len, char sep);
/* The spool's lifetime and this run's spool counters, "name=value" pairs
 * separated by sep (the status file has them after stats_format's). */
void stats_format_spool(const struct stats_gauges *g, char *buf, size_t len,
                        char sep);
/* "uplink up, mqtt connected, direct path, spool 3 records, 0 dead
 * letters"; a link that is down with a known cause says it: "uplink down
 * (kafka: authentication failed (SASL PLAIN)), ..."; then "; metrics not
 * served (why)" when they are not. */
void stats_status_line(const struct stats_gauges *g, char *buf, size_t len);

struct stats_ident { /* who writes the status file */
    const char *state, *version, *gateway;
    int pid;
    int64_t now_ms;
    const char *extra; /* more "name=value\n" lines, or NULL */
};

/* Replaces the status file atomically (a temporary file, then rename), so
 * a reader never sees half of it: the identity lines, then the counters
 * one per line, the spool's, uplink_cause= and mqtt_cause= (empty when
 * none), metrics=, then id->extra. 0, or -errno. */
int stats_write_file(const char *path, const struct stats_ident *id,
                     const struct stats *n, const struct stats_gauges *g);

#endif
