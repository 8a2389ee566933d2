/*
 * kstats.h — librdkafka's statistics (the JSON document its stats_cb
 * hands over every statistics.interval.ms) reduced to what the metrics
 * show: each broker's state and round-trip time, and the producer's queue.
 *
 * Pure: a buffer in, a struct out (so a fuzzer can call it); jansson and
 * libc only. The round-trip times librdkafka reports are those of one
 * window (since its previous document); kstats_update() adds each window's
 * count and sum to running totals kept per broker name, so the totals grow
 * like Prometheus counters while the quantiles are the last window's.
 */
#ifndef MQTT2KAFKA_KSTATS_H
#define MQTT2KAFKA_KSTATS_H

#include <stddef.h>
#include <stdint.h>

#define KSTATS_MAX_BROKERS 32 /* more are counted in `dropped`, not kept */
#define KSTATS_MAX_JSON    (8u << 20) /* a larger document is refused */

struct kstats_broker {
    char name[128]; /* as librdkafka names it: "host:port/nodeid" */
    int32_t nodeid; /* -1: a bootstrap address not yet matched to a node */
    char state[16]; /* INIT, DOWN, CONNECT, AUTH, UP, ... */
    int up;         /* state is UP */
    /* round-trip time of the last window, seconds; NaN: no request */
    double rtt_p50, rtt_p95, rtt_p99, rtt_avg;
    /* every window so far: requests timed and their total, seconds */
    int64_t rtt_count;
    double rtt_sum;
    int64_t connects, disconnects; /* since the producer was made */
    int64_t waitresp;              /* requests awaiting a response */
    int64_t req_timeouts;          /* since the producer was made */
};

struct kstats {
    int64_t updates;  /* documents taken */
    int64_t msg_cnt;  /* records in librdkafka's queues */
    int64_t msg_size; /* their bytes */
    size_t nbrokers;
    size_t dropped; /* brokers beyond KSTATS_MAX_BROKERS in the last doc */
    struct kstats_broker b[KSTATS_MAX_BROKERS];
};

/* Replaces k's state with the document's, carrying each broker's running
 * RTT totals forward by name (a broker gone from the document is gone
 * from k). 0, or -EINVAL (not such a document: err says why; k is left as
 * it was). Brokers of source "internal" and "logical" are left out. */
int kstats_update(struct kstats *k, const char *json, size_t len, char *err,
                  size_t errlen);

#endif
