/*
 * bridge_int.h — the daemon's state, shared by its two files and nothing
 * else: bridge.c (the data path: MQTT in -> convert -> spool, delivery
 * reports -> outbox) and daemon.c (start, the loop, status, stop).
 */
#ifndef MQTT2KAFKA_BRIDGE_INT_H
#define MQTT2KAFKA_BRIDGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/batch.h"
#include "bridge/bridge.h"
#include "bridge/convert.h"
#include "bridge/http.h"
#include "bridge/kafka_out.h"
#include "bridge/kstats.h"
#include "bridge/mqtt_in.h"
#include "bridge/outbox.h"
#include "bridge/redeliver.h"
#include "bridge/stats.h"
#include "spool/spool.h"

#define BATCH_MAX_RECORDS 4096
#define BATCH_BASE_BYTES  (1u << 20)
#define BATCH_SOFT_BYTES  (8u << 20) /* commit once the batch holds this */
#define HDRS_CAP          16384      /* header blob per record */
#define EXPIRE_EVERY_MS   10000
#define STATUS_EVERY_MS   2000
#define GROUP_RECORDS     512 /* commit at once when a burst has this */
struct bridge {
    const struct conf *c;
    struct convert *cv; /* route + decode: message → records */
    struct spool *sp;
    struct mqtt_in *in;
    struct kafka_out *out;
    struct outbox *ob; /* spool → Kafka, delivery reports → spool */
    struct redeliver *rd;
    struct batch batch;
    struct spool_rec *put;  /* the batch as spool records, at commit */
    struct stats n;         /* counted once, when a message is committed */
    int64_t lost_qos0;      /* QoS 0 messages of a withheld burst */
    int64_t renamed;        /* device properties renamed (reserved names) */
    int64_t max_payload;    /* mqtt.max_payload, capped to fit one put */
    size_t max_record;      /* the largest record one spool put holds */
    int64_t batch_t0;       /* when the burst's first message was read */
    int uplink;             /* -1 unknown, 0 down, 1 up */
    int backpressure;       /* not reading MQTT: the spool is full */
    int64_t fault_after;    /* test hook: crash around a commit, see below */
    int fault_after_commit; /* 0: before the commit, 1: after it */
    size_t batch_bytes;     /* commit once the batch holds this much */
    int status_warned;
    int out_failed;      /* the producer could not be recreated */
    int64_t next_status; /* when to rewrite the status file */
    int stop;
    /* how it is seen (observe.c) */
    struct http *http;              /* NULL: metrics.listen off */
    const char **route_names;       /* conf routes[].name, by index */
    int64_t *route_received;        /* messages that matched route i */
    struct spool_stats spool_start; /* the spool when this run opened it */
    struct kstats kstats;           /* librdkafka's last statistics */
    int64_t kstats_ms;              /* when they came (monotonic); 0 */
    int kstats_warned;              /* a bad document was logged */
    int64_t start_ms;               /* wall clock at start */
    int64_t turn_ms, turns, stalls; /* the loop's pulse (monotonic) */
    int64_t stall_ms, stall_end_ms; /* the last stall: length, end */
    char mqtt_why[256];             /* why MQTT is not connected */
    int spool_failing;              /* the last commit failed */
    char spool_why[256];            /* and why */
    char metrics_state[320];        /* the endpoint's address or error */
};

/* bridge.c: the data path. The mqtt_in callbacks; the group commit (the
 * burst into the spool, then the PUBACKs); the producer with its
 * callbacks; the test hook around a commit. */
void br_on_message(void *ud, const struct mqtt_in_msg *m);
void br_on_mqtt_state(void *ud, int connected, int session_present,
                      const char *reason);
void br_on_broker_dropped(void *ud, int64_t old, int64_t now);
void br_commit(struct bridge *br);
int br_kafka_open(struct bridge *br, char *err, size_t errlen);
void br_fault_point(struct bridge *br, int after_commit);

/* observe.c: the one snapshot the log line, the status file, STATUS= and
 * /metrics read; the HTTP endpoints; the loop's pulse. */
#define KAFKA_STATS_MS 10000 /* statistics.interval.ms with metrics on */
void br_gather(struct bridge *br, struct stats *n, struct stats_gauges *g);
/* Every turn (before sleeping): counts turns, and stalls over 5 s. */
void br_loop_turned(struct bridge *br, int64_t now_ms);
/* librdkafka's statistics; 1 if some broker is UP. */
int br_take_kafka_stats(struct bridge *br, const char *json, size_t len);
/* Creates and starts the server (metrics.listen off: none); a port in use
 * is logged and retried. -1 only for an address it cannot use at all. */
int br_http_open(struct bridge *br);
/* Every turn: serve what is ready, retry a failed bind when due. */
void br_http_run(struct bridge *br);
void br_http_close(struct bridge *br);

#endif
