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
 * Why the uplink is down is kept in words an operator can act on
 * (kafka_out_cause): "authentication failed (SASL SCRAM-SHA-512)",
 * "certificate verify failed: unable to get local issuer certificate", or
 * librdkafka's own reason without its broker prefix and timing. librdkafka
 * 2.0 only says "certificate verify failed"; the certificate verify
 * callback sees OpenSSL's error code, so it records it, and returns the
 * verdict OpenSSL would (see cert_verify). A new cause is logged once;
 * librdkafka's own FAIL lines, which repeat at every reconnect, go to the
 * debug level.
 *
 * Depends on librdkafka, OpenSSL's error strings and libc; knows nothing of
 * MQTT or the spool.
 */
#include "bridge/kafka_out.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <openssl/x509.h>
#include <pthread.h>
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
    int up;             /* -1 unknown, 0 down, 1 up */
    char mechanism[32]; /* sasl.mechanism, for the cause of a refusal */
    char cause[400];    /* why the uplink is down; "" when it is not */
    char said[400];     /* the cause last logged */
    /* the certificate verify callback's record, from librdkafka's threads */
    pthread_mutex_t lock;
    int verify_err, verify_depth, verify_fresh;
    char verify_broker[128];
};

static void set_uplink(struct kafka_out *k, int up, const char *reason)
{
    if (up)
        k->cause[0] = k->said[0] = '\0';
    if (k->up == up)
        return;
    k->up = up;
    if (k->cb.uplink)
        k->cb.uplink(k->ud, up, reason);
}

/* librdkafka's reason without "sasl_ssl://host:port/id: " in front and
 * "(after 5ms in state X, ...)" behind. */
static void tidy(const char *reason, char *buf, size_t len)
{
    /* the broker's name: "sasl_ssl://h:p/1" or "h:p/bootstrap", no spaces */
    const char *q = strstr(reason, ": ");
    const char *s = q && memchr(reason, '/', (size_t)(q - reason)) &&
                            !memchr(reason, ' ', (size_t)(q - reason))
                        ? q + 2
                        : reason;
    const char *e = strstr(s, " (after ");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    snprintf(buf, len, "%.*s", (int)n, s);
}

/* The reason after OpenSSL's "error:0A000086:SSL routines::". */
static const char *ssl_reason(const char *s)
{
    const char *p = strstr(s, "routines:");
    if (!p)
        return s;
    p = strchr(p + 9, ':');
    return p ? p + 1 : s;
}

/* Why a connection failed, in words; empty when it says nothing new. */
static void cause_of(struct kafka_out *k, int err, const char *reason,
                     char *buf, size_t len)
{
    char t[300];
    tidy(reason, t, sizeof(t));
    buf[0] = '\0';
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        if (strstr(t, "Authentication failed") || strstr(t, "credentials"))
            snprintf(buf, len, "authentication failed (SASL %s)",
                     k->mechanism[0] ? k->mechanism : "?");
        else
            snprintf(buf, len, "SASL error: %s", t);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__SSL) {
        int verr = 0, depth = 0;
        pthread_mutex_lock(&k->lock);
        if (k->verify_fresh) {
            verr = k->verify_err;
            depth = k->verify_depth;
            k->verify_fresh = 0;
        }
        pthread_mutex_unlock(&k->lock);
        if (verr)
            snprintf(buf, len, "certificate verify failed: %s%s",
                     X509_verify_cert_error_string(verr),
                     verr == X509_V_ERR_HOSTNAME_MISMATCH ||
                             verr == X509_V_ERR_IP_ADDRESS_MISMATCH
                         ? " (the broker's certificate does not name the host "
                           "we connect to)"
                     : depth > 0 ? " (in the broker's chain)"
                                 : "");
        else
            snprintf(buf, len, "TLS error: %s%s", ssl_reason(t),
                     strstr(t, "unexpected eof") || strstr(t, "wrong version")
                         ? " (is the port a TLS listener?)"
                         : "");
        return;
    }
    if (strstr(t, "incorrect security.protocol"))
        snprintf(buf, len,
                 "the broker closed the connection at once: "
                 "kafka.security.protocol does not match the listener (a TLS "
                 "or SASL listener reached in plaintext?)");
    else
        snprintf(buf, len, "%s", t);
}

/* The certificate verify callback (librdkafka's threads): OpenSSL has
 * judged the certificate; x509_error is its verdict (0: valid). We note a
 * failure and return exactly that verdict: with SSL_VERIFY_PEER and no
 * callback OpenSSL returns its preverify result, which is 0 precisely
 * when it has set an error, since we never let an error pass. */
static int cert_verify(rd_kafka_t *rk, const char *broker_name,
                       int32_t broker_id, int *x509_error, int depth,
                       const char *buf, size_t size, char *errstr,
                       size_t errstr_size, void *opaque)
{
    struct kafka_out *k = opaque;
    (void)rk, (void)broker_id, (void)buf, (void)size;
    if (*x509_error == X509_V_OK)
        return 1;
    pthread_mutex_lock(&k->lock);
    k->verify_err = *x509_error;
    k->verify_depth = depth;
    k->verify_fresh = 1;
    snprintf(k->verify_broker, sizeof(k->verify_broker), "%s", broker_name);
    pthread_mutex_unlock(&k->lock);
    snprintf(errstr, errstr_size, "%s",
             X509_verify_cert_error_string(*x509_error));
    return 0;
}

/* A connection failed: keep the cause; a refusal (credentials, TLS) takes
 * the uplink down at once, as retrying will not change it. */
static void conn_failed(struct kafka_out *k, int err, const char *reason)
{
    char c[400];
    cause_of(k, err, reason, c, sizeof(c));
    if (!c[0])
        return;
    int refused = err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                  err == RD_KAFKA_RESP_ERR__SSL;
    if (k->up == 1 && !refused) { /* one broker of several: not yet down */
        log_debug("kafka: %s", c);
        return;
    }
    snprintf(k->cause, sizeof(k->cause), "%s", c);
    if (strcmp(k->said, k->cause)) {
        char t[400];
        tidy(reason, t, sizeof(t));
        memcpy(k->said, k->cause, sizeof(k->said));
        log_warn("kafka: %s%s%s", k->cause, strcmp(t, k->cause) ? " -- " : "",
                 strcmp(t, k->cause) ? t : "");
        if (k->up == 0 && k->cb.uplink) /* down already: the cause changed */
            k->cb.uplink(k->ud, 0, k->cause);
    }
    if (refused)
        set_uplink(k, 0, k->cause);
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
        set_uplink(k, 0, k->cause[0] ? k->cause : reason);
        return;
    }
    log_debug("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
              reason);
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        err == RD_KAFKA_RESP_ERR__SSL || err == RD_KAFKA_RESP_ERR__RESOLVE)
        conn_failed(k, err, reason);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    /* A failed connection: repeated at every reconnect, and the error
     * callback turns it into the cause, said once. */
    if (!strcmp(fac, "FAIL") || !strcmp(fac, "SSLCERTVRFY"))
        log_debug("kafka: %s: %s", fac, buf);
    else if (level <= 3)
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
    for (size_t i = 0; i < o->nprops; i++) {
        if (set(conf, o->props[i].name, o->props[i].value, err, errlen))
            goto fail;
        if (!strncmp(o->props[i].name, "sasl.mechanism", 14))
            snprintf(k->mechanism, sizeof(k->mechanism), "%s",
                     o->props[i].value);
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_ssl_cert_verify_cb(conf, cert_verify);
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
    pthread_mutex_init(&k->lock, NULL);
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
    pthread_mutex_destroy(&k->lock);
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

void kafka_out_test_fatal(struct kafka_out *k)
{
    rd_kafka_test_fatal_error(k->rk,
                              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                              "fault injection");
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

const char *kafka_out_cause(const struct kafka_out *k)
{
    return k->up != 1 && k->cause[0] ? k->cause : NULL;
}

int kafka_out_up(const struct kafka_out *k)
{
    return k->up;
}

const char *kafka_out_version(void)
{
    return rd_kafka_version_str();
}
