/*
 * bridge.c — the daemon: the one file that knows every stage.
 *
 *   MQTT in ──> route ──> decode ──> spool ──> Kafka out
 *   (mqtt_in)  (convert: route.c, payload.c)  (outbox, kafka_out)
 *      ^                               ^           │
 *      └── acks after the commit ──────┘<── delivery reports
 *
 * One thread, one poll() loop. Each turn:
 *   1. read a burst of MQTT messages (their PUBACKs are only queued),
 *      convert each one into records (or a dead letter) and copy them into
 *      the batch;
 *   2. put the batch into the spool in one transaction; only when that
 *      returns are the PUBACKs written (on failure the connection is dropped
 *      with them unsent, and the broker redelivers);
 *   3. serve Kafka's delivery reports (outbox.c applies them to the spool);
 *   4. before sleeping: apply those outcomes, drain the spool into Kafka
 *      within the window, housekeeping.
 * The stages never call each other; they only meet here, through
 * callbacks. Files that help this one and know no stage of their own:
 * batch.c (the burst), redeliver.c (broker redeliveries after a crash),
 * stats.c (counters), convert.c (route + decode) and outbox.c (spool +
 * Kafka out) are the two halves of the wiring this file holds together.
 *
 * A message the bridge itself rejects (no route, captures that make an
 * illegal topic name, payload over mqtt.max_payload or the route's, a
 * payload that does not decode or lacks a field a template needs) is not
 * dropped: it is spooled to kafka.dead_letter_topic with an error.reason
 * header, and counted. A record Kafka refuses for good stays in the
 * spool's dead-letter table, visible with `mqtt2kafka spool dead` and
 * replayable.
 */
#include "bridge/bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bridge/batch.h"
#include "bridge/convert.h"
#include "bridge/kafka_out.h"
#include "bridge/log.h"
#include "bridge/mqtt_in.h"
#include "bridge/notify.h"
#include "bridge/outbox.h"
#include "bridge/record.h"
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
    struct spool_rec *put; /* the batch as spool records, at commit */
    struct stats n;
    struct stats n_read;    /* as before the burst being read: restored if
                             * the burst is withheld, so nothing is counted
                             * twice when the broker redelivers it */
    int64_t max_payload;    /* mqtt.max_payload, capped to fit one put */
    int64_t batch_t0;       /* when the burst's first message was read */
    int uplink;             /* -1 unknown, 0 down, 1 up */
    int backpressure;       /* not reading MQTT: the spool is full */
    int64_t fault_after;    /* test hook: crash around a commit, see below */
    int fault_after_commit; /* 0: before the commit, 1: after it */
    size_t batch_bytes;     /* commit once the batch holds this much */
    int status_warned;
    int64_t next_status; /* when to rewrite the status file */
    int stop;
};

/* --- MQTT in → convert → batch ------------------------------------------ */

/* The headers every record made from m carries. */
static void base_headers(const struct bridge *br, const struct mqtt_in_msg *m,
                         struct record_hdrs *h, int64_t now, const char *why,
                         const char *content_type)
{
    if (record_hdr_add_str(h, "mqtt.topic", m->topic))
        log_warn("mqtt: a %zu-byte topic does not fit the headers",
                 strlen(m->topic));
    record_hdr_add_i64(h, "mqtt.qos", m->qos);
    record_hdr_add_i64(h, "mqtt.retain", m->retain);
    record_hdr_add_str(h, "gateway.id", br->c->gateway.id);
    record_hdr_add_i64(h, "received.ms", now);
    if (content_type)
        record_hdr_add_str(h, "content-type", content_type);
    if (why)
        record_hdr_add_str(h, "error.reason", why);
    for (size_t i = 0; i < m->nprops; i++)
        if (record_hdr_add_str(h, m->props[i].name, m->props[i].value))
            log_warn("mqtt: user property '%s' on %s dropped: headers full",
                     m->props[i].name, m->topic);
}

/* Copies one record into the batch. On failure the batch is withheld
 * (acks unsent, the broker redelivers). */
static int hold(struct bridge *br, const struct mqtt_in_msg *m,
                const struct batch_rec *r)
{
    int rc = batch_add(&br->batch, r);
    if (rc == -ENOSPC)
        log_warn("batch full (%zu records): withholding it", br->batch.n);
    else if (rc)
        log_error("out of memory holding message from %s", m->topic);
    if (rc)
        br->batch.failed = 1;
    return rc;
}

struct emit_ctx { /* one message on its way through convert_message() */
    struct bridge *br;
    const struct mqtt_in_msg *m;
    int64_t now, tag;
};

static int emit_record(void *ud, const struct convert_rec *v)
{
    struct emit_ctx *e = ud;
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    base_headers(e->br, e->m, &h, e->now, NULL, v->content_type);
    struct batch_rec r = {
        .topic = v->topic,
        .key = v->has_key ? v->key : NULL,
        .key_len = v->key_len,
        .headers = h.buf,
        .headers_len = h.len,
        .value = v->value,
        .len = v->len,
        .recv_ms = e->now,
        .route = v->route,
        .tag = e->tag,
    };
    return hold(e->br, e->m, &r);
}

/* Counts a dead letter by its kind. */
static void count_dead(struct stats *n, enum convert_kind kind)
{
    n->dead_lettered++;
    switch (kind) {
    case CONVERT_UNROUTED:
        n->unrouted++;
        break;
    case CONVERT_BAD_TOPIC:
        n->bad_topic++;
        break;
    case CONVERT_EMPTY:
        n->empty++;
        break;
    case CONVERT_OVERSIZED:
        n->oversized++;
        break;
    case CONVERT_MISSING_FIELD:
        n->missing_field++;
        break;
    case CONVERT_BAD_PAYLOAD:
    case CONVERT_OK:
        n->bad_payload++;
        break;
    }
}

static void on_message(void *ud, const struct mqtt_in_msg *m)
{
    struct bridge *br = ud;
    int64_t now = log_wall_ms();

    br->n.received++;
    if (br->batch.failed)
        return; /* the batch is withheld anyway; the broker redelivers */
    int64_t tag = redeliver_tag(m->topic, m->payload, m->len, m->qos, m->mid);
    if (redeliver_check(br->rd, m->mid, tag)) {
        br->n.redelivered++; /* stored already: only the ack goes out */
        return;
    }
    struct batch_mark mark = batch_mark(&br->batch);
    struct emit_ctx e = {br, m, now, tag};
    struct convert_msg cm = {m->topic, m->payload, m->len,
                             m->qos,   now,        br->c->gateway.id};
    struct convert_dead d;
    if (convert_message(br->cv, &cm, emit_record, &e, &d))
        return; /* the batch is withheld */
    if (d.kind == CONVERT_OK)
        return;
    batch_rewind(&br->batch, mark); /* none of its records: all or nothing */
    count_dead(&br->n, d.kind);
    log_debug("dead-letter: %s: %s", m->topic, d.why);
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    base_headers(br, m, &h, now, d.why, NULL);
    if (d.keep < m->len) /* a dead letter must fit one spool transaction */
        record_hdr_add_i64(&h, "error.original.size", (int64_t)m->len);
    struct batch_rec r = {
        .topic = br->c->kafka.dead_letter_topic,
        .key = d.has_key ? d.key : NULL,
        .key_len = d.key_len,
        .headers = h.buf,
        .headers_len = h.len,
        .value = m->payload,
        .len = d.keep,
        .recv_ms = now,
        .route = -1,
        .tag = tag,
    };
    hold(br, m, &r);
}

static void on_mqtt_state(void *ud, int connected, int session_present,
                          const char *reason)
{
    struct bridge *br = ud;
    const struct conf *c = br->c;
    if (connected) {
        redeliver_session(br->rd, session_present);
        log_info("mqtt: connected to %s:%d as %s (%s)", c->mqtt.host,
                 c->mqtt.port, c->mqtt.client_id,
                 session_present ? "session resumed" : "new session");
        return;
    }
    br->n.reconnects++;
    log_warn("mqtt: connection to %s:%d lost: %s", c->mqtt.host, c->mqtt.port,
             reason ? reason : "unknown");
}

static void on_broker_dropped(void *ud, int64_t old, int64_t now)
{
    struct bridge *br = ud;
    br->n.broker_dropped += now - old;
    log_warn("mqtt: the broker dropped %" PRId64
             " messages (its $SYS counter is now %" PRId64
             "): raise max_queued_messages in mosquitto.conf",
             now - old, now);
}

/* Test hooks for the two windows around a commit. With
 * MQTT2KAFKA_FAULT=crash-before-commit[@N] the daemon kills itself after
 * reading a burst (once N messages were received) and before committing
 * it: the broker must redeliver the burst. With crash-after-commit[@N] it
 * dies after the commit and before the PUBACKs are written: the broker
 * redelivers messages that are already stored, and they must not be
 * stored twice. */
static void fault_point(struct bridge *br, int after_commit)
{
    if (br->fault_after >= 0 && br->fault_after_commit == after_commit &&
        br->n.received >= br->fault_after) {
        log_warn("fault injection: crash %s commit (%" PRId64 " received)",
                 after_commit ? "after" : "before", br->n.received);
        raise(SIGKILL);
    }
}

/* One put, or halves when the spool says the batch is too large for one
 * transaction under its size cap. */
static int put_split(struct spool *sp, struct spool_rec *r, size_t n)
{
    int rc = spool_put(sp, r, n);
    if (rc == -EINVAL && n > 1) {
        rc = put_split(sp, r, n / 2);
        if (rc == 0)
            rc = put_split(sp, r + n / 2, n - n / 2);
    }
    return rc;
}

/* The batch as spool records (pointers into the batch's buffer). */
static void batch_to_spool(struct bridge *br)
{
    for (size_t i = 0; i < br->batch.n; i++) {
        struct batch_rec v;
        batch_get(&br->batch, i, &v);
        br->put[i] = (struct spool_rec){
            .topic = v.topic,
            .key = v.key,
            .key_len = v.key_len,
            .headers = v.headers,
            .headers_len = v.headers_len,
            .payload = v.value,
            .payload_len = v.len,
            .recv_ms = v.recv_ms,
            .route = v.route,
            .tag = v.tag,
        };
    }
}

/* Commits the batch; writes the PUBACKs only if that worked. */
static void commit(struct bridge *br)
{
    struct batch *b = &br->batch;
    int rc;
    if (b->n == 0 && !b->failed)
        goto write;
    fault_point(br, 0);
    batch_to_spool(br);
    rc = b->failed ? -ENOMEM : put_split(br->sp, br->put, b->n);
    if (rc < 0) {
        /* The broker redelivers the burst: count it when it is stored. */
        int64_t reconnects = br->n.reconnects, dropped = br->n.broker_dropped;
        br->n = br->n_read;
        br->n.reconnects = reconnects;
        br->n.broker_dropped = dropped;
        br->n.spool_errors++;
        if (rc == -ENOSPC && br->c->spool.on_full == CONF_BACKPRESSURE) {
            if (!br->backpressure)
                log_warn("spool full: backpressure, not reading MQTT");
            br->backpressure = 1;
        } else {
            log_error("spool: cannot store %zu messages: %s", b->n,
                      spool_errmsg(br->sp));
        }
        mqtt_in_abort(br->in, "the batch could not be stored");
        batch_clear(b);
        return;
    }
    br->n.spooled += (int64_t)b->n;
    for (size_t i = 0; i < b->n; i++)
        if (br->put[i].tag)
            redeliver_remember(br->rd, br->put[i].tag);
    fault_point(br, 1);
    batch_clear(b);
write:
    mqtt_in_write(br->in);
}

/* --- Kafka out ------------------------------------------------------------ */

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, size_t bytes)
{
    struct bridge *br = ud;
    outbox_delivered(br->ob, id, o, reason, bytes);
}

static void on_uplink(void *ud, int up, const char *reason)
{
    struct bridge *br = ud;
    struct spool_stats st = {0};
    if (br->uplink == up)
        return;
    br->uplink = up;
    spool_stats(br->sp, &st);
    if (up)
        log_info("kafka: uplink up; backlog %" PRId64 " records", st.records);
    else
        log_warn("kafka: uplink down (%s); spooling, backlog %" PRId64
                 " records",
                 reason ? reason : "brokers unreachable", st.records);
}

static int kafka_open(struct bridge *br, char *err, size_t errlen)
{
    const struct conf *c = br->c;
    struct kafka_out_prop props[CONF_MAX_PROPS];
    for (size_t i = 0; i < c->kafka.nprops && i < CONF_MAX_PROPS; i++)
        props[i] = (struct kafka_out_prop){c->kafka.props[i].name,
                                           c->kafka.props[i].value};
    struct kafka_out_opts ko = {
        .brokers = c->kafka.brokers,
        .compression = c->kafka.compression,
        .props = props,
        .nprops = c->kafka.nprops,
        .queue_records = c->kafka.inflight_records,
    };
    struct kafka_out_cb kcb = {.delivered = on_delivered, .uplink = on_uplink};
    int rc = kafka_out_new(&ko, &kcb, br, &br->out, err, errlen);
    outbox_set_producer(br->ob, br->out);
    return rc;
}

/* --- counters, status, signals, the loop --------------------------------- */

static void gather(struct bridge *br, struct stats *n, struct stats_gauges *g)
{
    struct spool_stats st = {0};
    const struct outbox_counters *o = outbox_counters(br->ob);
    spool_stats(br->sp, &st);
    *n = br->n;
    n->delivered = o->delivered;
    n->retries = o->retries;
    n->kafka_refused = o->kafka_refused;
    *g = (struct stats_gauges){
        .dropped_full = st.dropped[SPOOL_DROP_FULL],
        .expired = st.dropped[SPOOL_DROP_EXPIRED],
        .backlog = st.records,
        .backlog_bytes = st.bytes,
        .oldest_s = st.oldest_ms ? (log_wall_ms() - st.oldest_ms) / 1000 : 0,
        .dead_in_spool = st.dead,
        .spool_file_bytes = st.file_bytes,
        .uplink = br->uplink,
        .mqtt = br->in && mqtt_in_connected(br->in),
        .backpressure = br->backpressure,
    };
}

static void log_counters(struct bridge *br, const char *when)
{
    struct stats n;
    struct stats_gauges g;
    char line[1024];
    gather(br, &n, &g);
    stats_format(&n, &g, line, sizeof(line), ' ');
    log_info("%s: %s", when, line);
}

/* The status file (on tmpfs by default: rewriting it every few seconds
 * costs no flash) and the unit's STATUS= line, from the same numbers. */
static void write_status(struct bridge *br, const char *state)
{
    const char *path = br->c->log.status_file;
    struct stats n;
    struct stats_gauges g;
    char line[256];
    gather(br, &n, &g);
    stats_status_line(&g, line, sizeof(line));
    notify_status("%s", line);
    if (!path || !*path)
        return;
    struct stats_ident id = {state, M2K_VERSION, br->c->gateway.id,
                             (int)getpid(), log_wall_ms()};
    int rc = stats_write_file(path, &id, &n, &g);
    if (rc && !br->status_warned++)
        log_warn("status file %s: %s (mqtt2kafka status will not work)", path,
                 strerror(-rc));
}

static int open_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void on_signal(struct bridge *br, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            log_counters(br, "stats");
            continue;
        }
        log_info("signal %u: stopping", si.ssi_signo);
        br->stop = 1;
    }
}

/* Reads MQTT until dry or the batch is full. */
static void read_burst(struct bridge *br)
{
    /* each message read may become up to `per` records (split) */
    size_t per = convert_max_records(br->cv), room;
    if (br->batch.n == 0)
        br->n_read = br->n;
    while (!br->batch.failed &&
           (room = (BATCH_MAX_RECORDS - br->batch.n) / per) > 0 &&
           br->batch.used < br->batch_bytes) {
        size_t before = br->batch.n;
        if (br->batch.n == 0)
            br->batch_t0 = log_now_ms();
        if (mqtt_in_read(br->in, room < 64 ? room : 64) <= 0 ||
            br->batch.n == before)
            break;
    }
}

static void turn(struct bridge *br, int sfd, int timeout)
{
    struct pollfd pf[3] = {
        {.fd = sfd, .events = POLLIN},
        {.fd = kafka_out_fd(br->out), .events = POLLIN},
        {.fd = mqtt_in_fd(br->in), .events = 0},
    };
    if (!br->backpressure)
        pf[2].events |= POLLIN;
    /* Queued PUBACKs of a burst still waiting to be committed cannot go out
     * anyway: no POLLOUT for them, or the loop would spin. */
    if (mqtt_in_want_write(br->in) && br->batch.n == 0 && !br->batch.failed)
        pf[2].events |= POLLOUT;
    if (poll(pf, 3, timeout) < 0 && errno != EINTR)
        log_error("poll: %s", strerror(errno));
    if (pf[0].revents)
        on_signal(br, sfd);
    /* Every turn, not only when the pipe says so: the pipe is written only
     * when librdkafka's queue goes from empty to non-empty, and serving it
     * costs one lock when there is nothing to serve. */
    kafka_out_poll(br->out);
    if (pf[2].fd >= 0 && pf[2].revents & (POLLIN | POLLHUP | POLLERR))
        read_burst(br);
    /* Group commit: a burst is committed (and only then acknowledged) once
     * it is large, or its first message has waited spool.commit_delay, so
     * a trickle of messages does not cost a commit each. A lost connection
     * commits at once: the broker redelivers the burst after the
     * reconnect, and only committed tags are recognised. */
    if (br->batch.failed || br->batch.n >= GROUP_RECORDS ||
        br->batch.used >= br->batch_bytes / 2 ||
        (br->batch.n > 0 && !mqtt_in_connected(br->in)) ||
        (br->batch.n > 0 &&
         log_now_ms() - br->batch_t0 >= br->c->spool.commit_delay))
        commit(br);
    else if (br->batch.n == 0 && pf[2].fd >= 0 && pf[2].revents & POLLOUT)
        commit(br); /* nothing read: just sends what is queued */
}

/* A fatal librdkafka error: the idempotent producer can no longer keep
 * order, so it is replaced; what was in flight goes round again. */
static void restart_producer(struct bridge *br)
{
    char err[512];
    log_error("kafka: restarting the producer after a fatal error");
    kafka_out_free(br->out); /* reports everything in flight as retry */
    br->out = NULL;
    outbox_set_producer(br->ob, NULL);
    outbox_reset(br->ob);
    if (kafka_open(br, err, sizeof(err)) < 0) {
        log_error("%s", err);
        br->stop = 1;
    }
}

/* Before sleeping: apply delivery outcomes, refill the window, housekeeping. */
static int before_sleep(struct bridge *br, int64_t *next_stats,
                        int64_t *next_expire)
{
    int64_t now = log_now_ms();
    notify_watchdog();
    outbox_flush(br->ob, now, 0);
    if (kafka_out_fatal(br->out)) {
        restart_producer(br);
        if (!br->out)
            return 0;
    }
    outbox_drain(br->ob, now);
    if (br->c->spool.on_full == CONF_BACKPRESSURE) {
        /* Stop reading before a put can fail, so the broker keeps the
         * messages queued instead of redelivering a refused burst. */
        int full = spool_full(br->sp);
        if (full && !br->backpressure)
            log_warn("spool full: backpressure, not reading MQTT");
        else if (!full && br->backpressure)
            log_info("spool has room again: reading MQTT");
        br->backpressure = full;
    }
    int wait = mqtt_in_tick(br->in, now, br->backpressure);
    if (now >= *next_expire) {
        /* A slice per turn: after a long outage millions may be due. */
        int k = spool_expire(br->sp);
        *next_expire = k >= SPOOL_EXPIRE_MAX ? now : now + EXPIRE_EVERY_MS;
    }
    if (now >= br->next_status) {
        write_status(br, br->backpressure ? "backpressure" : "running");
        br->next_status = now + STATUS_EVERY_MS;
    }
    if (br->c->log.stats_interval > 0 && now >= *next_stats) {
        log_counters(br, "stats");
        *next_stats = now + (int64_t)br->c->log.stats_interval * 1000;
    }
    wait = outbox_wait_ms(br->ob, now, wait);
    if (br->batch.n > 0) { /* a burst waits for its group commit */
        int64_t left = br->batch_t0 + br->c->spool.commit_delay - now;
        if (left < wait)
            wait = (int)(left > 0 ? left : 0);
    }
    return wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
}

/* SIGTERM: nothing more is read; what was read is already committed. The
 * acks for it go out, in-flight deliveries get a bounded time, and what is
 * not delivered stays in the spool for the next start. */
static void shutdown_gracefully(struct bridge *br)
{
    int64_t deadline = log_now_ms() + br->c->kafka.shutdown_timeout;
    notify_stopping();
    commit(br);
    mqtt_in_close(br->in);
    while (outbox_inflight(br->ob) > 0 && log_now_ms() < deadline) {
        kafka_out_flush(br->out, 100);
        outbox_flush(br->ob, log_now_ms(), 1);
    }
    if (outbox_inflight(br->ob) > 0)
        log_warn("shutdown: %" PRId64
                 " records still in flight stay in the spool",
                 outbox_inflight(br->ob));
    kafka_out_free(br->out);
    br->out = NULL;
    outbox_flush(br->ob, log_now_ms(), 1);
    log_counters(br, "final");
    write_status(br, "stopped");
}

/* --- start ---------------------------------------------------------------- */

void bridge_spool_opts(const struct conf *c, struct spool_opts *so)
{
    *so = (struct spool_opts){
        .path = c->spool.path,
        .max_bytes = c->spool.max_bytes,
        .max_age_ms = c->spool.max_age,
        .on_full = c->spool.on_full == CONF_BACKPRESSURE ? SPOOL_BACKPRESSURE
                                                         : SPOOL_DROP_OLDEST,
        .sync = c->spool.sync == CONF_SYNC_NORMAL ? SPOOL_SYNC_NORMAL
                                                  : SPOOL_SYNC_FULL,
        .dead_max_records = c->spool.dead_max_records,
        .dead_max_bytes = c->spool.dead_max_bytes,
        .dead_max_age_ms = c->spool.dead_max_age,
    };
}

static int open_spool(struct bridge *br, char *err, size_t errlen)
{
    const struct conf *c = br->c;
    struct spool_opts so;
    bridge_spool_opts(c, &so);
    if (spool_open(&so, &br->sp, err, errlen) < 0)
        return -1;
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    if (!c->spool.max_bytes || st.max_bytes < c->spool.max_bytes)
        log_warn("spool: the filesystem holding %s has room for %" PRId64
                 " bytes%s; the spool keeps under that (and leaves a "
                 "%" PRId64 "-byte reserve for deletes)",
                 c->spool.path, st.max_bytes,
                 c->spool.max_bytes ? ", less than spool.max_bytes" : "",
                 st.reserve_bytes);
    if (st.recovered)
        log_error("spool: %s was corrupt; it was set aside and a fresh "
                  "spool started",
                  c->spool.path);
    log_info("spool: %s (%s), %" PRId64 " records waiting, %" PRId64
             " dead letters",
             c->spool.path,
             c->spool.sync == CONF_SYNC_FULL ? "sync full" : "sync normal",
             st.records, st.dead);
    return 0;
}

/* The tags of the newest rows still spooled, remembered oldest first. */
static void load_tags(struct bridge *br)
{
    int64_t *ids = calloc(MQTT_IN_RECEIVE_MAX, sizeof(int64_t));
    int64_t *tags = calloc(MQTT_IN_RECEIVE_MAX, sizeof(int64_t));
    int n =
        ids && tags ? spool_recent(br->sp, ids, tags, MQTT_IN_RECEIVE_MAX) : 0;
    for (int i = n - 1; i >= 0; i--)
        redeliver_remember(br->rd, tags[i]);
    free(ids);
    free(tags);
}

/* Sizes that depend on the spool's cap, computed once. */
static void size_limits(struct bridge *br, int64_t *win_bytes)
{
    const struct conf *c = br->c;
    /* A burst must fit one spool transaction and stay below the headroom
     * spool_full() keeps (1/64 of the cap): 1/128 of it, 8 MiB at most. */
    br->batch_bytes = BATCH_SOFT_BYTES;
    if (c->spool.max_bytes > 0 &&
        (size_t)(c->spool.max_bytes / 128) < br->batch_bytes)
        br->batch_bytes = (size_t)(c->spool.max_bytes / 128);
    /* One message, dead letters included, must fit one spool put. */
    br->max_payload = c->mqtt.max_payload > 0 ? c->mqtt.max_payload : INT64_MAX;
    if (br->max_payload > (int64_t)br->batch_bytes / 2) {
        br->max_payload = (int64_t)br->batch_bytes / 2;
        if (c->mqtt.max_payload > 0)
            log_warn("mqtt.max_payload %" PRId64 " is more than one spool "
                     "transaction holds under spool.max_bytes; using %" PRId64,
                     c->mqtt.max_payload, br->max_payload);
    }
    /* drop_oldest never drops what is in flight, so the window must leave
     * most of the spool droppable: at most a quarter of its cap. */
    *win_bytes = c->kafka.inflight_bytes;
    if (c->spool.max_bytes > 0 && c->spool.max_bytes / 4 < *win_bytes)
        *win_bytes = c->spool.max_bytes / 4;
}

static int open_stages(struct bridge *br)
{
    const struct conf *c = br->c;
    char err[512];
    int64_t win_bytes;
    size_limits(br, &win_bytes);
    struct convert_opts co = {.max_payload = br->max_payload};
    struct outbox_opts oo = {c->kafka.inflight_records, win_bytes};
    if (batch_init(&br->batch, BATCH_MAX_RECORDS, BATCH_BASE_BYTES,
                   SIZE_MAX / 2) ||
        !(br->put = calloc(BATCH_MAX_RECORDS, sizeof(*br->put))) ||
        redeliver_new(MQTT_IN_RECEIVE_MAX, &br->rd)) {
        log_error("out of memory");
        return -1;
    }
    if (convert_new(c, &co, &br->cv, err, sizeof(err)) < 0 ||
        open_spool(br, err, sizeof(err)) < 0 ||
        (outbox_new(br->sp, &oo, &br->ob) < 0 &&
         snprintf(err, sizeof(err), "out of memory")) ||
        kafka_open(br, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    load_tags(br);
    return 0;
}

static int open_mqtt(struct bridge *br)
{
    const struct conf *c = br->c;
    const char **filters = NULL;
    char err[512];
    size_t nfilters = convert_filters(br->cv, &filters);
    struct mqtt_in_opts mo = {
        .host = c->mqtt.host,
        .port = c->mqtt.port,
        .client_id = c->mqtt.client_id,
        .protocol = c->mqtt.protocol,
        .qos = c->mqtt.qos,
        .keepalive = c->mqtt.keepalive,
        .session_expiry = c->mqtt.session_expiry,
        .reconnect_max = c->mqtt.reconnect_max,
        .username = c->mqtt.username,
        .password = c->mqtt.password,
        .filters = filters,
        .nfilters = nfilters,
        .watch_sys_drops = 1,
    };
    struct mqtt_in_cb mcb = {.message = on_message,
                             .state = on_mqtt_state,
                             .broker_dropped = on_broker_dropped};
    if (mqtt_in_new(&mo, &mcb, br, &br->in, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

static void set_fault(struct bridge *br)
{
    const char *fault = getenv("MQTT2KAFKA_FAULT");
    br->fault_after = -1;
    if (fault && (strncmp(fault, "crash-before-commit", 19) == 0 ||
                  strncmp(fault, "crash-after-commit", 18) == 0)) {
        const char *at = strchr(fault, '@');
        br->fault_after = at ? strtoll(at + 1, NULL, 10) : 1;
        br->fault_after_commit = fault[6] == 'a';
    }
}

static void close_all(struct bridge *br)
{
    kafka_out_free(br->out);
    mqtt_in_free(br->in);
    outbox_free(br->ob);
    spool_close(br->sp);
    convert_free(br->cv);
    redeliver_free(br->rd);
    batch_fini(&br->batch);
    free(br->put);
    free(br);
}

int bridge_run(const struct conf *c)
{
    struct bridge *br = calloc(1, sizeof(*br));
    int sfd = -1, rc = 1;

    if (!br)
        return 1;
    br->c = c;
    br->uplink = -1;
    set_fault(br);
    log_set_level(c->log.level);
    srandom((unsigned)(log_wall_ms() ^ getpid()));
    if (open_stages(br) < 0 || open_mqtt(br) < 0)
        goto out;
    sfd = open_signals();
    if (sfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        goto out;
    }
    log_info("mqtt2kafka %s: gateway %s, %zu routes, mqtt %s:%d, kafka %s",
             M2K_VERSION, c->gateway.id, c->nroutes, c->mqtt.host, c->mqtt.port,
             c->kafka.brokers);
    notify_ready();

    int64_t next_stats = log_now_ms() + (int64_t)c->log.stats_interval * 1000;
    int64_t next_expire = 0;
    while (!br->stop) {
        int wait = before_sleep(br, &next_stats, &next_expire);
        if (!br->out)
            break; /* the producer could not be recreated */
        turn(br, sfd, wait);
    }
    shutdown_gracefully(br);
    rc = 0;
out:
    if (sfd >= 0)
        close(sfd);
    close_all(br);
    return rc;
}
