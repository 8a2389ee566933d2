/*
 * kafka_out.c — an idempotent librdkafka producer, served from our loop.
 *
 * Each record carries its spool id through the message opaque; the
 * delivery report hands it back with one of three outcomes. The opaque is
 * a pointer-sized field (32 bits on armhf), so the 64-bit id never travels
 * in it: it points at a slot of a fixed pool that holds the id until the
 * report comes back, with the caller's echo (its window size, the
 * receive time and route, for latency and per-route counts). Permanent
 * errors (too
 * large, invalid or unknown topic, not authorized) are told apart from
 * transient ones, because only the caller can decide to move a record to
 * the dead-letter table; everything else is "retry", and the record stays
 * in the spool. librdkafka's main queue wakes our poll() through a pipe
 * (rd_kafka_queue_io_event_enable), so delivery reports are served in the
 * event-loop thread and never race the spool.
 *
 * Depends on librdkafka and libc; knows nothing of MQTT or the spool.
 */
#include "bridge/kafka_out.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/log.h"
#include "bridge/secret.h"

#define MAX_HDRS 64

/* An id in flight. Free slots form a list through next. The pool never
 * moves (librdkafka holds pointers into it), so its size is fixed at
 * creation: as many slots as librdkafka's queue may hold records. */
struct slot {
    int64_t id;
    struct kafka_out_echo echo;
    struct slot *next;
};

struct kafka_out {
    rd_kafka_t *rk;
    struct slot *slots, *free_slots;
    size_t nslots;
    rd_kafka_queue_t *mainq;
    struct kafka_out_cb cb;
    void *ud;
    int pipefd[2]; /* [0] polled by the loop, [1] written by librdkafka */
    int inflight;
    int fatal;
    int up; /* -1 unknown, 0 down, 1 up */
};

static void set_uplink(struct kafka_out *k, int up, const char *reason)
{
    if (k->up == up)
        return;
    k->up = up;
    if (k->cb.uplink)
        k->cb.uplink(k->ud, up, reason);
}

/* Errors after which retrying the same record can never succeed. With
 * message.timeout.ms=0 librdkafka retries what is retriable itself, in
 * order, so a broker error that still reaches a delivery report is there to
 * stay (a bad timestamp from a gateway whose clock is wrong, a policy the
 * topic enforces, ...), but for the few that a finite timeout set by the
 * user may surface. Local errors (timed out, purged, transport) are
 * transient, but for those that describe the record itself. */
static int permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
        return 0;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
        return 1;
    default:
        return err > 0;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    struct kafka_out *k = opaque;
    struct slot *sl = m->_private;
    int64_t id = sl->id;
    struct kafka_out_echo echo = sl->echo;
    (void)rk;
    sl->next = k->free_slots;
    k->free_slots = sl;
    k->inflight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_uplink(k, 1, NULL);
        k->cb.delivered(k->ud, id, KAFKA_OUT_OK, NULL, &echo);
        return;
    }
    k->cb.delivered(k->ud, id,
                    permanent(m->err) ? KAFKA_OUT_DEAD : KAFKA_OUT_RETRY,
                    rd_kafka_err2str(m->err), &echo);
}

/* Served from rd_kafka_poll(), in the caller's thread; 0: librdkafka
 * frees the JSON. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct kafka_out *k = opaque;
    (void)rk;
    if (k->cb.stats)
        k->cb.stats(k->ud, json, len);
    return 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_out *k = opaque;
    char buf[512];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        log_error("kafka: fatal producer error: %s", buf);
        k->fatal = 1;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        set_uplink(k, 0, reason);
        return;
    }
    /* Connection churn is normal while the uplink is down; say it once. */
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT && k->up == 0)
        return;
    log_debug("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
              reason);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    if (level <= 3)
        log_error("kafka: %s: %s", fac, buf);
    else if (level <= 4)
        log_warn("kafka: %s: %s", fac, buf);
    else
        log_debug("kafka: %s: %s", fac, buf);
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value,
               char *err, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) ==
        RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "kafka property %s=%s: %s", name,
             secret_name(name) ? SECRET_SHOWN : value, why);
    return -EINVAL;
}

static rd_kafka_conf_t *make_conf(struct kafka_out *k,
                                  const struct kafka_out_opts *o, char *err,
                                  size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char qsize[32], stats[16];
    /* queue.buffering.max.messages must hold the whole in-flight window */
    snprintf(qsize, sizeof(qsize), "%zu", k->nslots);
    snprintf(stats, sizeof(stats), "%d", o->stats_ms > 0 ? o->stats_ms : 0);
    const struct kafka_out_prop defaults[] = {
        {"bootstrap.servers", o->brokers},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.codec", o->compression ? o->compression : "lz4"},
        /* where Java clients put a key, so consumers agree on partitions */
        {"partitioner", "murmur2_random"},
        {"linger.ms", "5"},
        /* No deadline: during an outage records wait in order inside
         * librdkafka instead of timing out one by one and coming back out
         * of order. spool.max_age is the age limit. */
        {"message.timeout.ms", "0"},
        {"queue.buffering.max.messages", qsize},
        {"client.id", "mqtt2kafka"},
        {"statistics.interval.ms", stats},
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (set(conf, defaults[i].name, defaults[i].value, err, errlen))
            goto fail;
    for (size_t i = 0; i < o->nprops; i++)
        if (set(conf, o->props[i].name, o->props[i].value, err, errlen))
            goto fail;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int kafka_out_new(const struct kafka_out_opts *o, const struct kafka_out_cb *cb,
                  void *ud, struct kafka_out **out, char *err, size_t errlen)
{
    struct kafka_out *k = calloc(1, sizeof(*k));
    rd_kafka_conf_t *conf = NULL;
    char why[512];

    *out = NULL;
    if (!k)
        return -ENOMEM;
    k->cb = *cb;
    k->ud = ud;
    k->up = -1;
    k->pipefd[0] = k->pipefd[1] = -1;
    k->nslots = o->queue_records > 1000 ? (size_t)o->queue_records * 2 : 2000;
    if (!(k->slots = calloc(k->nslots, sizeof(*k->slots)))) {
        snprintf(err, errlen, "kafka: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < k->nslots; i++)
        k->slots[i].next = i + 1 < k->nslots ? &k->slots[i + 1] : NULL;
    k->free_slots = k->slots;
    if (pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "kafka: pipe: %s", strerror(errno));
        goto fail;
    }
    conf = make_conf(k, o, err, errlen);
    if (!conf)
        goto fail;
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka: cannot create producer: %s", why);
        goto fail;
    }
    k->mainq = rd_kafka_queue_get_main(k->rk);
    rd_kafka_queue_io_event_enable(k->mainq, k->pipefd[1], "1", 1);
    *out = k;
    return 0;
fail:
    kafka_out_free(k);
    return -EINVAL;
}

void kafka_out_free(struct kafka_out *k)
{
    if (!k)
        return;
    if (k->rk) {
        /* Whatever is still queued is reported as purged (a retry), so the
         * caller's in-flight accounting ends at zero. */
        rd_kafka_purge(k->rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
        rd_kafka_queue_destroy(k->mainq);
        rd_kafka_destroy_flags(k->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    if (k->pipefd[0] >= 0)
        close(k->pipefd[0]);
    if (k->pipefd[1] >= 0)
        close(k->pipefd[1]);
    free(k->slots);
    free(k);
}

int kafka_out_produce(struct kafka_out *k, const struct kafka_out_msg *m,
                      char *err, size_t errlen)
{
    struct slot *sl = k->free_slots;
    if (!sl)
        return -ENOBUFS; /* as many in flight as librdkafka's queue holds */
    sl->id = m->id;
    sl->echo = m->echo;
    rd_kafka_headers_t *h = rd_kafka_headers_new(m->nhdrs);
    for (size_t i = 0; i < m->nhdrs; i++)
        rd_kafka_header_add(h, m->hdrs[i].name, -1, m->hdrs[i].value,
                            (ssize_t)m->hdrs[i].len);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(m->topic),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE((void *)m->value, m->len),
        RD_KAFKA_V_TIMESTAMP(m->timestamp_ms), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(sl), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->free_slots = sl->next;
        k->inflight++;
        return 0; /* h now belongs to the message */
    }
    rd_kafka_headers_destroy(h);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return -ENOBUFS;
    snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return permanent(e) ? -EINVAL : -EAGAIN;
}

int kafka_out_fd(const struct kafka_out *k)
{
    return k->pipefd[0];
}

int kafka_out_poll(struct kafka_out *k)
{
    char buf[64];
    int n = 0, r;
    while (read(k->pipefd[0], buf, sizeof(buf)) > 0)
        ;
    while ((r = rd_kafka_poll(k->rk, 0)) > 0)
        n += r;
    return n;
}

int kafka_out_fatal(const struct kafka_out *k)
{
    return k->fatal;
}

int kafka_out_flush(struct kafka_out *k, int timeout_ms)
{
    rd_kafka_flush(k->rk, timeout_ms);
    kafka_out_poll(k);
    return k->inflight;
}

int kafka_out_inflight(const struct kafka_out *k)
{
    return k->inflight;
}

const char *kafka_out_version(void)
{
    return rd_kafka_version_str();
}
