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
#include "bridge/schemas.h"
#include "bridge/stats.h"
#include "spool/spool.h"

#define BATCH_MAX_RECORDS 4096
#define BATCH_BASE_BYTES  (1u << 20)
#define BATCH_SOFT_BYTES  (8u << 20) /* commit once the batch holds this */
#define HDRS_CAP          16384      /* header blob per record */
#define EXPIRE_EVERY_MS   10000
#define STATUS_EVERY_MS   2000
#define GROUP_RECORDS     512 /* commit at once when a burst has this */
/* What became of a message in the burst (batch_msg.fate). */
enum { FATE_STORED, FATE_DEAD, FATE_REDELIVERED };

#define KV_PENDING_MAX 256 /* decode-stage state kept per burst */

/* A large message being stored (large.c): its payload is our one copy
 * until the spool has it all. */
struct evp_md_ctx_st;
struct br_large {
    int active;                /* staging; MQTT is not read meanwhile */
    int64_t id;                /* its large record in the spool */
    unsigned char *data;       /* the payload */
    size_t len, done;          /* bytes; bytes in the spool so far */
    size_t part;               /* the chunk size it is stored (and sent) in */
    struct evp_md_ctx_st *sha; /* SHA-256 of what is written so far */
    int rc;                    /* a slice failed: why (< 0) */
    int qos, route;
    int64_t tag;
    unsigned notes;
    int64_t slices, t0;
};

/* What a stored message adds to the counters besides itself
 * (batch_msg.notes). */
enum { NOTE_UNKNOWN = 1, NOTE_UNRESOLVED = 2, NOTE_SEQ_GAP = 4 };
struct bridge {
    const struct conf *c;      /* the config in effect */
    struct conf *own;          /* c when a reload loaded it (ours to free) */
    struct convert *cv;        /* route + decode: message → records */
    struct pb_schema *schemas; /* the loaded protobuf schemas */
    struct spool *sp;
    struct mqtt_in *in;
    struct kafka_out *out;
    struct outbox *ob; /* spool → Kafka, delivery reports → spool */
    struct redeliver *rd;
    struct batch batch;
    struct spool_rec *put; /* the batch as spool records, at commit */
    /* the direct path (commit.c) */
    struct spool_rec *spill; /* a spill's records */
    size_t *spill_at;        /* their index in the batch */
    unsigned char *spill_infl, *spilled;
    int64_t ids_next, ids_end; /* the reserved block's ids left */
    int direct_pending;        /* a burst waits for Kafka, PUBACKs held */
    int direct;                /* the last burst went direct */
    int64_t direct_t0;         /* when it was sent */
    int64_t direct_since;      /* when the direct path was taken again */
    int64_t direct_off_until, direct_off_ms; /* backing off after a spill */
    struct stats n;      /* counted once, when a message is committed */
    int64_t lost_qos0;   /* QoS 0 messages of a withheld burst */
    int64_t renamed;     /* device properties renamed (reserved names) */
    int64_t max_payload; /* mqtt.max_payload, capped to fit one put (or,
                          * with chunks, what the spool holds of one) */
    size_t chunk_bytes;  /* kafka.chunk_bytes in effect; 0: off */
    struct br_large large;
    size_t max_record;    /* the largest record one spool put holds */
    int64_t batch_t0;     /* when the burst's first message was read */
    int uplink;           /* -1 unknown, 0 down, 1 up */
    int backpressure;     /* not reading MQTT: the spool is full */
    int64_t room_checked; /* when the spool's room was last asked */
    /* test hooks (MQTT2KAFKA_FAULT, see daemon.c set_fault) */
    int64_t fault_after;    /* crash around a commit after this many read */
    int fault_after_commit; /* 0: before the commit, 1: after it */
    int64_t read;           /* messages read, for the hooks */
    int64_t fail_put_every; /* every Nth spool put fails (-EIO); 0: none */
    int64_t puts;
    int64_t kafka_fatal_at;     /* a fatal producer error after N delivered */
    int kafka_no_recreate;      /* and the new producer cannot be made */
    int64_t fault_large_slices; /* crash once a large message has this many
                                 * slices in the spool, not committed */
    int64_t fault_chunks;       /* crash once this many chunks were
                                 * confirmed */
    size_t batch_bytes;         /* commit once the batch holds this much */
    int status_warned;
    int out_failed;      /* the producer could not be recreated */
    int64_t next_status; /* when to rewrite the status file */
    int stop;
    size_t restored; /* kept state entries given back at start */
    /* state the decode stage asked to keep, written with the burst's
     * commit in one transaction (the last value of each key) */
    struct spool_kv kv[KV_PENDING_MAX];
    size_t nkv;
    /* reload (reload.c): SIGHUP seen; the last attempt's answer for the
     * status file (cli_reload.h); a new producer waiting for the records
     * in flight in the old one to settle, and until when */
    int reload_pending;
    int64_t reload_seq, reload_ms;
    char reload_result[8];
    char reload_error[512], reload_detail[512];
    struct kafka_out *out_next;
    int64_t settle_until;
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

/* bridge.c: the data path in. The mqtt_in callbacks (a message converted
 * into the burst); the producer with its callbacks. */
void br_on_message(void *ud, const struct mqtt_in_msg *m);
void br_on_mqtt_state(void *ud, int connected, int session_present,
                      const char *reason);
void br_on_broker_dropped(void *ud, int64_t old, int64_t now);
/* A producer for conf c (kafka.properties, then kafka.security) whose
 * callbacks feed br's outbox; br_kafka_open() makes it br->out. */
int br_kafka_new(struct bridge *br, const struct conf *c,
                 struct kafka_out **out, char *err, size_t errlen);
int br_kafka_open(struct bridge *br, char *err, size_t errlen);
/* kafka.security as librdkafka properties (at most 12; secrets borrowed
 * from c); the producer's and `reassemble`'s consumer's. */
size_t br_security_props(const struct conf *c, struct kafka_out_prop *p);
/* An MQTT client for conf c subscribed to cv's filters, its callbacks
 * wired to br; it copies what it keeps of c. */
int br_mqtt_new(struct bridge *br, const struct conf *c,
                const struct convert *cv, struct mqtt_in **out, char *err,
                size_t errlen);

/* commit.c: the burst made durable, then its PUBACKs: straight to Kafka
 * (the direct path, spilling into the spool what is not confirmed in
 * time) or committed to the spool; the test hook around a commit. */
void br_commit(struct bridge *br);
/* A direct burst: done when Kafka confirmed it all; spilled when the
 * deadline passed, a record failed or the uplink went down. */
void br_direct_tick(struct bridge *br, int64_t now);
/* 1 when the burst read may go straight to Kafka now. */
int br_direct_ready(struct bridge *br, int64_t now);
/* ms until the direct burst's deadline; -1: none waits. */
int br_direct_wait_ms(const struct bridge *br, int64_t now);
/* One spool put can hold records first..first+n of the batch (fills
 * br->put for them). */
int br_fits(void *ud, size_t first, size_t n);
void br_fault_point(struct bridge *br, int after_commit);
void br_kv_flush(struct bridge *br);

/* daemon.c: the status file and STATUS= line now; the largest payload c
 * lets through, given the spool's cap (warns when it cuts c's); the chunk
 * size in effect (kafka.chunk_bytes, at most what one put holds; 0: off). */
void br_write_status(struct bridge *br, const char *state);
int64_t br_payload_limit(const struct bridge *br, const struct conf *c);
size_t br_chunk_limit(const struct bridge *br, const struct conf *c);

/* large.c: a message whose record is over the chunk size. take: our copy
 * of r's value, a large record begun in the spool (-EFBIG: more than the
 * spool can ever hold: dead-letter it; -ENOMEM; a spool error). step: one
 * slice into the spool; 1 once it is all there or failed. publish: the
 * record committed (with its SHA-256), our copy freed; < 0: it failed and
 * is gone. abort: what was staged is deleted. */
int br_large_take(struct bridge *br, const struct mqtt_in_msg *m,
                  const struct batch_rec *r, int64_t tag);
int br_large_step(struct bridge *br);
int br_large_publish(struct bridge *br);
void br_large_abort(struct bridge *br);

/* reload.c: SIGHUP's work, in the loop, between bursts. Starts an attempt
 * when one is pending, finishes one waiting for its producer; now is
 * log_now_ms(). */
void br_reload_step(struct bridge *br, int64_t now);
/* Replaces br->out by next (or a new producer for br->c when next is
 * NULL): what was in flight in the old one goes round again. 0, or -1
 * when no producer could be made. */
int br_swap_producer(struct bridge *br, struct kafka_out *next);

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
