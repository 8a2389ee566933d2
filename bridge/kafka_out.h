/*
 * kafka_out.h — the Kafka side: produce a record that carries a spool id;
 * get (id, outcome) back in a delivery report.
 *
 * Nothing here decides what leaves the spool: the caller acks a record only
 * on a successful report for it. Reports, errors and fatal states are
 * served from kafka_out_poll(), in the caller's thread; kafka_out_fd()
 * becomes readable when there is something to serve.
 */
#ifndef MQTT2KAFKA_KAFKA_OUT_H
#define MQTT2KAFKA_KAFKA_OUT_H

#include <stddef.h>
#include <stdint.h>

struct kafka_out;

struct kafka_out_prop {
    const char *name, *value;
};

struct kafka_out_opts {
    const char *brokers;
    const char *compression;
    const struct kafka_out_prop *props; /* passed verbatim, after defaults */
    size_t nprops;
    int64_t queue_records; /* librdkafka's queue must hold the window */
    int stats_ms;          /* statistics.interval.ms (cb.stats); 0: none. A
                            * property of that name in props wins. */
};

struct kafka_out_hdr {
    const char *name;
    const void *value;
    size_t len;
};

/* The caller's own values, kept with a record in flight and given back
 * with its report. */
struct kafka_out_echo {
    size_t bytes;    /* its size of the record, for its window */
    int64_t recv_ms; /* when the record was received (latency) */
    int32_t route;   /* the route that made it, or -1 */
    int lane;        /* the caller's queue it came from */
    int32_t chunk;   /* the caller's: a chunk's index (fat.c) */
};

struct kafka_out_msg {
    int64_t id; /* returned in the report */
    const char *topic;
    const void *key; /* NULL: no key */
    size_t key_len;
    const void *value;
    size_t len;
    const struct kafka_out_hdr *hdrs;
    size_t nhdrs;
    int64_t timestamp_ms;       /* record timestamp (CreateTime) */
    struct kafka_out_echo echo; /* given back in the report */
};

enum kafka_out_outcome {
    KAFKA_OUT_OK = 0,
    KAFKA_OUT_RETRY, /* transient: keep it, try again later */
    KAFKA_OUT_DEAD,  /* Kafka will never take it: dead-letter it */
};

struct kafka_out_cb {
    /* One call per produced record; reason is NULL on success; echo is
     * what the caller gave with it (kafka_out_msg.echo), borrowed for the
     * call. */
    void (*delivered)(void *ud, int64_t id, enum kafka_out_outcome outcome,
                      const char *reason, const struct kafka_out_echo *echo);
    /* The uplink changed: up = 1 after a success, 0 when brokers are down
     * or refuse us (credentials, TLS); called again with 0 when the
     * cause (reason) of a down uplink changes. */
    void (*uplink)(void *ud, int up, const char *reason);
    /* librdkafka's statistics, a JSON document (borrowed for the call),
     * every opts.stats_ms, from kafka_out_poll(). NULL: not wanted. */
    void (*stats)(void *ud, const char *json, size_t len);
};

/* Creates the producer (idempotent, acks=all). err says what a bad property
 * was. The caller frees with kafka_out_free(). */
int kafka_out_new(const struct kafka_out_opts *o, const struct kafka_out_cb *cb,
                  void *ud, struct kafka_out **out, char *err, size_t errlen);
/* Purges what is still queued (reported as KAFKA_OUT_RETRY) and frees. */
void kafka_out_free(struct kafka_out *k);

/* 0: queued (a report will follow). -ENOBUFS: the local queue is full,
 * try later. -EINVAL: refused at once for good (reason in err); no report
 * follows. */
int kafka_out_produce(struct kafka_out *k, const struct kafka_out_msg *m,
                      char *err, size_t errlen);

int kafka_out_fd(const struct kafka_out *k);
/* Serves queued reports and errors; returns how many events. */
int kafka_out_poll(struct kafka_out *k);
/* 1 if librdkafka hit a fatal error (the idempotent producer can no longer
 * guarantee order): free it, make everything in flight eligible again, and
 * create a new one. */
int kafka_out_fatal(const struct kafka_out *k);
/* Test hook: raise a fatal error as librdkafka would (an idempotence
 * guarantee broken), so that kafka_out_fatal() says so. */
void kafka_out_test_fatal(struct kafka_out *k);

/* Waits up to timeout_ms for in-flight records; returns how many remain. */
int kafka_out_flush(struct kafka_out *k, int timeout_ms);
/* Records handed to librdkafka and not yet reported. */
int kafka_out_inflight(const struct kafka_out *k);
/* Why the uplink is not up, in words ("authentication failed (SASL
 * SCRAM-SHA-512)", "certificate verify failed: certificate has expired",
 * "Connection refused"); NULL when it is up or nothing failed yet. Valid
 * until the next kafka_out_poll(). */
const char *kafka_out_cause(const struct kafka_out *k);
/* -1 unknown (nothing delivered or refused yet), 0 down, 1 up. */
int kafka_out_up(const struct kafka_out *k);
/* librdkafka's version, e.g. "2.0.2". */
const char *kafka_out_version(void);

#endif
