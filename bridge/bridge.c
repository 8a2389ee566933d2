/*
 * bridge.c — the daemon: the one file that knows every stage.
 *
 *   MQTT in ──> route ──> spool ──> Kafka out
 *      ^                    ^           │
 *      └── acks after ──────┘<── delivery reports
 *          the commit
 *
 * One thread, one poll() loop. Each turn:
 *   1. read a burst of MQTT messages (their PUBACKs are only queued),
 *      route each one and copy it into the batch;
 *   2. put the batch into the spool in one transaction; only when that
 *      returns are the PUBACKs written (on failure the connection is dropped
 *      with them unsent, and the broker redelivers);
 *   3. serve Kafka's delivery reports: a success acks the spool row, a
 *      transient error makes it eligible again, a permanent one moves it to
 *      the dead-letter table;
 *   4. before sleeping: apply those acks, then drain the spool into Kafka
 *      within a window of records and bytes in flight.
 * The stages never call each other; they only meet here, through callbacks.
 *
 * Redelivery after a crash. A batch can be committed and the process die
 * before its PUBACKs reach the socket; the broker then sends those messages
 * again (same packet ids, first thing after the session resumes). Each
 * spooled row carries a tag, (packet id, hash of topic and payload), and the
 * bridge remembers the tags of the last MQTT_IN_RECEIVE_MAX committed
 * messages (reloaded from the spool at start). Right after a resumed
 * session, a message whose tag is among them is acknowledged without being
 * stored again, so Kafka sees it once, under its first m2k.id. Why this
 * cannot swallow a new message: the broker numbers packet ids in sequence,
 * may have at most MQTT_IN_RECEIVE_MAX of them unacknowledged (we announce
 * that receive maximum), and so resends only ids among the last that many;
 * a new message takes the next id, which is not among them. The first
 * message that does not match ends the check until the next reconnect.
 * (MQTT 3.1.1 has no receive maximum: there the broker's
 * max_inflight_messages must not exceed it.)
 *
 * A route may decode its payload (payload.c): one MQTT message then becomes
 * one record or, with split, several, all in the same batch, or none of
 * them when it cannot be decoded.
 *
 * A message the bridge itself rejects (no route, captures that make an
 * illegal topic name, payload over mqtt.max_payload or the route's, a
 * payload that does not decode or lacks a field a template needs) is not
 * dropped: it is
 * spooled to kafka.dead_letter_topic with an error.reason header, and
 * counted. A record Kafka refuses for good stays in the spool's dead-letter
 * table, visible with `mqtt2kafka spool dead` and replayable.
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

#include "bridge/kafka_out.h"
#include "bridge/log.h"
#include "bridge/mqtt_in.h"
#include "bridge/notify.h"
#include "bridge/payload.h"
#include "bridge/record.h"
#include "bridge/route.h"
#include "spool/spool.h"

#define BATCH_MAX_RECORDS 4096
#define BATCH_SOFT_BYTES  (8u << 20) /* commit once the batch holds this */
#define HDRS_CAP          16384      /* header blob per record */
#define PEEK_MAX          512
#define EXPIRE_EVERY_MS   10000
#define STATUS_EVERY_MS   2000
#define GROUP_RECORDS     512 /* commit at once when a burst has this */
#define ACK_EVERY_MS      20  /* delivered records are acked in groups */
#define RETRY_HOLD_MIN_MS 500
#define RETRY_HOLD_MAX_MS 30000
#define MIDS              65536               /* MQTT packet ids are 16 bits */
#define RECENT            MQTT_IN_RECEIVE_MAX /* committed tags remembered */
#define TAG_HASH_BITS     47

struct counters {
    int64_t received;       /* messages handed over by the broker */
    int64_t spooled;        /* committed to the spool */
    int64_t delivered;      /* acknowledged by Kafka and acked in the spool */
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
    int64_t redelivered; /* broker redeliveries of committed messages */
};

/* Records read from MQTT and not yet committed. Everything points into buf,
 * which is rebuilt each turn. */
struct batch {
    struct spool_rec recs[BATCH_MAX_RECORDS];
    size_t n;
    int failed; /* a message could not be held: withhold the whole batch */
    unsigned char *buf;
    size_t used, cap;
};

struct pending { /* delivery outcomes waiting to be applied to the spool */
    int64_t *acks, *retry;
    size_t nacks, nretry, cap;
    int64_t dead_ids[64];
    char dead_why[64][96];
    size_t ndead;
};

struct bridge {
    const struct conf *c;
    struct route_table *routes;
    struct payload *payload; /* routes that decode: payload → records */
    struct spool *sp;
    struct mqtt_in *in;
    struct kafka_out *out;
    struct batch batch;
    struct pending pend;
    struct counters n;
    struct counters n_read; /* as before the burst being read: restored if
                             * the burst is withheld, so nothing is counted
                             * twice when the broker redelivers it */
    int64_t max_payload;    /* mqtt.max_payload, capped to fit one put */
    int64_t batch_t0;       /* when the burst's first message was read */
    int64_t last_flush;     /* when delivery outcomes were last applied */
    int64_t inflight, inflight_bytes;
    int uplink;         /* -1 unknown, 0 down, 1 up */
    int backpressure;   /* not reading MQTT: the spool is full */
    int64_t hold_until; /* no draining before (after transient errors) */
    int64_t hold_ms;
    int64_t fault_after;    /* test hook: crash around a commit, see below */
    int fault_after_commit; /* 0: before the commit, 1: after it */
    size_t batch_bytes;     /* commit once the batch holds this much */
    int64_t win_bytes;      /* the in-flight byte window actually used */
    int64_t *last_tag;      /* [packet id]: tag, if among the RECENT last */
    int64_t recent[RECENT]; /* those tags in commit order, a ring */
    size_t recent_head, recent_n;
    int dedupe; /* session resumed: still in the resend phase */
    int status_warned;
    int64_t next_status; /* when to rewrite the status file */
    int stop;
};

/* --- MQTT in → route → batch -------------------------------------------- */

static void *batch_copy(struct batch *b, const void *p, size_t len)
{
    if (b->used + len > b->cap) {
        /* Only one burst lives here; grow to fit, a message at a time. */
        size_t cap = b->cap * 2 > b->used + len ? b->cap * 2 : b->used + len;
        unsigned char *nb = realloc(b->buf, cap);
        if (!nb)
            return NULL;
        /* Rebase the pointers already handed out, including those of the
         * record being built (recs[n]: zeroed, then filled field by field,
         * so its topic and headers may point into the old buffer). */
        for (size_t i = 0; i <= b->n && i < BATCH_MAX_RECORDS; i++) {
            struct spool_rec *r = &b->recs[i];
#define REBASE(f)                                                              \
    if (r->f)                                                                  \
    r->f = (const void *)(nb + ((const unsigned char *)r->f - b->buf))
            REBASE(topic);
            REBASE(key);
            REBASE(headers);
            REBASE(payload);
#undef REBASE
        }
        b->buf = nb;
        b->cap = cap;
    }
    void *dst = b->buf + b->used;
    if (len)
        memcpy(dst, p, len);
    b->used += len;
    return dst;
}

/* (packet id, 47-bit FNV-1a of topic NUL payload); 0 for QoS 0, which is
 * never redelivered. */
static int64_t tag_of(const struct mqtt_in_msg *m)
{
    uint64_t h = 14695981039346656037u;
    const unsigned char *p = (const unsigned char *)m->topic;
    if (m->qos == 0 || m->mid <= 0 || m->mid >= MIDS)
        return 0;
    do {
        h = (h ^ *p) * 1099511628211u;
    } while (*p++);
    p = m->payload;
    for (size_t i = 0; i < m->len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return (int64_t)((uint64_t)m->mid << TAG_HASH_BITS |
                     (h & ((1ull << TAG_HASH_BITS) - 1)));
}

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
static int batch_add(struct bridge *br, const struct mqtt_in_msg *m,
                     const struct payload_rec *v, const struct record_hdrs *h,
                     int64_t now, int route, int64_t tag)
{
    struct batch *b = &br->batch;
    if (b->n >= BATCH_MAX_RECORDS) {
        log_warn("batch full (%d records): withholding it", BATCH_MAX_RECORDS);
        b->failed = 1;
        return -ENOSPC;
    }
    struct spool_rec *r = &b->recs[b->n];
    memset(r, 0, sizeof(*r));
    r->topic = batch_copy(b, v->topic, strlen(v->topic) + 1);
    r->headers = batch_copy(b, h->buf, h->len);
    r->headers_len = h->len;
    r->payload = batch_copy(b, v->value, v->len);
    r->payload_len = v->len;
    if (v->has_key) {
        r->key = batch_copy(b, v->key, v->key_len);
        r->key_len = v->key_len;
    }
    r->recv_ms = now;
    r->route = route;
    r->tag = tag;
    if (!r->topic || !r->headers || !r->payload || (v->has_key && !r->key)) {
        /* Out of memory: the whole batch is withheld, acks unsent. */
        log_error("out of memory holding message from %s", m->topic);
        b->failed = 1;
        return -ENOMEM;
    }
    b->n++;
    return 0;
}

struct emit_ctx { /* one message on its way through payload_process() */
    struct bridge *br;
    const struct mqtt_in_msg *m;
    int64_t now, tag;
    int route;
};

static int emit_record(void *ud, const struct payload_rec *v)
{
    struct emit_ctx *e = ud;
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    base_headers(e->br, e->m, &h, e->now, NULL, v->content_type);
    return batch_add(e->br, e->m, v, &h, e->now, e->route, e->tag);
}

/* A route that decodes: the records, or 1 with why set (dead letter), or
 * -1 when the batch is withheld. */
static int decode_message(struct bridge *br, const struct mqtt_in_msg *m,
                          struct route_result *rr, int64_t now, int64_t tag,
                          char *why, size_t whylen)
{
    struct batch *b = &br->batch;
    size_t n0 = b->n, used0 = b->used;
    struct emit_ctx e = {br, m, now, tag, rr->index};
    struct payload_msg pm = {m->topic, m->payload, m->len,
                             m->qos,   now,        br->c->gateway.id};
    enum payload_error kind;
    int rc = payload_process(br->payload, br->routes, rr, &pm, emit_record, &e,
                             &kind, why, whylen);
    if (rc == 0)
        return 0;
    b->n = n0; /* none of its records: all or nothing */
    b->used = used0;
    if (rc != -EINVAL || b->failed)
        return -1;
    if (kind == PAYLOAD_MISSING_FIELD)
        br->n.missing_field++;
    else if (kind == PAYLOAD_BAD_TOPIC)
        br->n.bad_topic++;
    else
        br->n.bad_payload++;
    rr->has_key = 0;
    return 1;
}

static void on_message(void *ud, const struct mqtt_in_msg *m)
{
    struct bridge *br = ud;
    const struct conf *c = br->c;
    struct route_result rr;
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    const char *why = NULL;
    char reason[256];
    int64_t now = log_wall_ms();
    size_t keep = m->len; /* payload bytes kept: oversized ones are cut */

    br->n.received++;
    if (br->batch.failed)
        return; /* the batch is withheld anyway; the broker redelivers */
    int64_t tag = tag_of(m);
    if (br->dedupe) {
        if (tag && br->last_tag[m->mid] == tag) {
            br->n.redelivered++; /* stored already: only the ack goes out */
            return;
        }
        br->dedupe = 0;
    }
    route_match(br->routes, m->topic, &rr);
    if (rr.status != ROUTE_OK) {
        why = rr.reason;
        if (rr.status == ROUTE_NO_MATCH)
            br->n.unrouted++;
        else
            br->n.bad_topic++;
    } else if (m->len == 0) {
        why = "empty payload";
        br->n.empty++;
    } else if ((int64_t)m->len > br->max_payload) {
        snprintf(rr.reason, sizeof(rr.reason),
                 "payload of %zu bytes exceeds mqtt.max_payload (%" PRId64 ")",
                 m->len, br->max_payload);
        why = rr.reason;
        keep = (size_t)br->max_payload;
        br->n.oversized++;
    } else if (rr.route->max_payload > 0 &&
               (int64_t)m->len > rr.route->max_payload) {
        snprintf(rr.reason, sizeof(rr.reason),
                 "payload of %zu bytes exceeds route %d's max_payload (%" PRId64
                 ")",
                 m->len, rr.index + 1, rr.route->max_payload);
        why = rr.reason;
        keep = (size_t)rr.route->max_payload;
        br->n.oversized++;
    } else if (payload_decodes(br->payload, rr.index)) {
        int rc = decode_message(br, m, &rr, now, tag, reason, sizeof(reason));
        if (rc <= 0)
            return; /* spooled, or the batch is withheld */
        why = reason;
    }
    if (why) {
        br->n.dead_lettered++;
        log_debug("dead-letter: %s: %s", m->topic, why);
    }
    base_headers(br, m, &h, now, why, NULL);
    if (keep < m->len) /* a dead letter must fit one spool transaction */
        record_hdr_add_i64(&h, "error.original.size", (int64_t)m->len);
    struct payload_rec v = {
        .topic = why ? c->kafka.dead_letter_topic : rr.topic,
        .key = rr.key,
        .key_len = rr.key_len,
        .has_key = rr.status == ROUTE_OK && rr.has_key,
        .value = m->payload,
        .len = keep,
    };
    batch_add(br, m, &v, &h, now, why ? -1 : rr.index, tag);
}

static void on_mqtt_state(void *ud, int connected, int session_present,
                          const char *reason)
{
    struct bridge *br = ud;
    const struct conf *c = br->c;
    if (connected) {
        br->dedupe = session_present;
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

/* Adds a committed message's tag to the ring of the RECENT last; the tag
 * that falls out is forgotten, so only those can ever match. */
static void remember(struct bridge *br, int64_t tag)
{
    size_t last = (br->recent_head + RECENT - 1) % RECENT;
    if (br->recent_n && br->recent[last] == tag)
        return; /* the records of one split message share a tag */
    if (br->recent_n == RECENT) {
        int64_t old = br->recent[br->recent_head];
        uint64_t mid = (uint64_t)old >> TAG_HASH_BITS;
        if (br->last_tag[mid] == old)
            br->last_tag[mid] = 0;
    } else {
        br->recent_n++;
    }
    br->recent[br->recent_head] = tag;
    br->recent_head = (br->recent_head + 1) % RECENT;
    br->last_tag[(uint64_t)tag >> TAG_HASH_BITS] = tag;
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

/* Commits the batch; writes the PUBACKs only if that worked. */
static void commit(struct bridge *br)
{
    struct batch *b = &br->batch;
    int rc;
    if (b->n == 0 && !b->failed)
        goto write;
    fault_point(br, 0);
    rc = b->failed ? -ENOMEM : put_split(br->sp, b->recs, b->n);
    if (rc < 0) {
        /* The broker redelivers the burst: count it when it is stored. */
        int64_t reconnects = br->n.reconnects, dropped = br->n.broker_dropped;
        br->n = br->n_read;
        br->n.reconnects = reconnects;
        br->n.broker_dropped = dropped;
        br->n.spool_errors++;
        if (rc == -ENOSPC && br->c->spool.on_full == SPOOL_BACKPRESSURE) {
            if (!br->backpressure)
                log_warn("spool full: backpressure, not reading MQTT");
            br->backpressure = 1;
        } else {
            log_error("spool: cannot store %zu messages: %s", b->n,
                      spool_errmsg(br->sp));
        }
        mqtt_in_abort(br->in, "the batch could not be stored");
        b->n = 0;
        b->used = 0;
        b->failed = 0;
        return;
    }
    br->n.spooled += (int64_t)b->n;
    for (size_t i = 0; i < b->n; i++)
        if (b->recs[i].tag)
            remember(br, b->recs[i].tag);
    fault_point(br, 1);
    b->n = 0;
    b->used = 0;
write:
    mqtt_in_write(br->in);
}

/* --- Kafka out: delivery reports → spool -------------------------------- */

/* Applies delivery outcomes to the spool. A failed ack keeps its ids
 * pending for the next turn; should they fill up, everything in flight is
 * made eligible again (Kafka gets duplicates, the spool loses nothing). A
 * failed dead-letter move sends the record round again. */
static void flush_pending(struct bridge *br)
{
    struct pending *p = &br->pend;
    if (p->nacks) {
        if (spool_ack(br->sp, p->acks, p->nacks) == 0) {
            br->n.delivered += (int64_t)p->nacks;
            p->nacks = 0;
        } else if (p->nacks == p->cap) {
            log_error("spool: acks keep failing (%s); %zu delivered records "
                      "will be sent again",
                      spool_errmsg(br->sp), p->nacks);
            p->nacks = 0;
            spool_rewind(br->sp);
        } else {
            log_error("spool: ack failed, retrying: %s", spool_errmsg(br->sp));
        }
    }
    for (size_t i = 0; i < p->ndead; i++) {
        log_error("kafka refused record %" PRId64 " for good: %s",
                  p->dead_ids[i], p->dead_why[i]);
        if (spool_dead(br->sp, p->dead_ids[i], p->dead_why[i]) == 0)
            br->n.kafka_refused++;
        else
            spool_nack(br->sp, &p->dead_ids[i], 1);
    }
    p->ndead = 0;
    if (p->nretry) {
        spool_nack(br->sp, p->retry, p->nretry);
        p->nretry = 0;
    }
}

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, size_t bytes)
{
    struct bridge *br = ud;
    struct pending *p = &br->pend;
    br->inflight--;
    br->inflight_bytes -= (int64_t)bytes;
    if (p->nacks == p->cap || p->nretry == p->cap || p->ndead == 64)
        flush_pending(br);
    switch (o) {
    case KAFKA_OUT_OK:
        p->acks[p->nacks++] = id;
        br->hold_ms = 0;
        break;
    case KAFKA_OUT_RETRY:
        p->retry[p->nretry++] = id;
        br->n.retries++;
        /* Back off before sending them again, doubling up to a cap. */
        br->hold_ms = br->hold_ms ? br->hold_ms * 2 : RETRY_HOLD_MIN_MS;
        if (br->hold_ms > RETRY_HOLD_MAX_MS)
            br->hold_ms = RETRY_HOLD_MAX_MS;
        br->hold_until = log_now_ms() + br->hold_ms;
        break;
    case KAFKA_OUT_DEAD:
        p->dead_ids[p->ndead] = id;
        snprintf(p->dead_why[p->ndead], sizeof(p->dead_why[0]), "%s",
                 reason ? reason : "refused");
        p->ndead++;
        break;
    }
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

/* Hands the oldest spooled records to Kafka, within the window. */
static void drain(struct bridge *br)
{
    const struct conf *c = br->c;
    struct spool_rec recs[PEEK_MAX];
    struct kafka_out_hdr hdrs[RECORD_MAX_HDRS + 1];
    char names[HDRS_CAP], idbuf[48], why[256];
    int64_t refused[8], putback[PEEK_MAX];
    char refused_why[8][256];
    size_t nrefused = 0, nputback = 0;

    if (log_now_ms() < br->hold_until)
        return;
    while (br->inflight < c->kafka.inflight_records &&
           br->inflight_bytes < br->win_bytes) {
        int64_t room = c->kafka.inflight_records - br->inflight;
        int n = spool_peek(br->sp, recs,
                           (size_t)(room < PEEK_MAX ? room : PEEK_MAX),
                           (size_t)(br->win_bytes - br->inflight_bytes));
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            struct spool_rec *r = &recs[i];
            if (nputback) { /* nothing overtakes a record put back */
                putback[nputback++] = r->id;
                continue;
            }
            int nh = record_hdrs_decode(r->headers, r->headers_len, hdrs,
                                        RECORD_MAX_HDRS, names, sizeof(names));
            if (nh < 0)
                nh = 0; /* cannot happen for blobs we wrote; send bare */
            spool_id_str(br->sp, r->id, idbuf, sizeof(idbuf));
            hdrs[nh++] = (struct kafka_out_hdr){"m2k.id", idbuf, strlen(idbuf)};
            struct kafka_out_msg km = {
                .id = r->id,
                .topic = r->topic,
                .key = r->key_len ? r->key : NULL,
                .key_len = r->key_len,
                .value = r->payload,
                .len = r->payload_len,
                .hdrs = hdrs,
                .nhdrs = (size_t)nh,
                .timestamp_ms = r->recv_ms,
            };
            int rc = kafka_out_produce(br->out, &km, why, sizeof(why));
            if (rc == 0) {
                br->inflight++;
                br->inflight_bytes += (int64_t)(r->key_len + r->payload_len);
            } else if (rc == -EINVAL && nrefused < 8) {
                snprintf(refused_why[nrefused], sizeof(refused_why[0]), "%s",
                         why);
                refused[nrefused++] = r->id;
                log_error("kafka refused record %" PRId64 " to %s: %s", r->id,
                          r->topic, why);
            } else {
                putback[nputback++] = r->id; /* queue full: later */
            }
        }
        if (nputback || nrefused)
            break;
    }
    /* The peeked records are gone now: the spool may be called again. */
    for (size_t i = 0; i < nrefused; i++)
        if (spool_dead(br->sp, refused[i], refused_why[i]) == 0)
            br->n.kafka_refused++;
    if (nputback)
        spool_nack(br->sp, putback, nputback);
}

/* --- timers, signals, the loop ------------------------------------------ */

/* The counters as "name=value" pairs, separated by sep: one format for the
 * log line and the status file, so the two never disagree. */
static void format_counters(struct bridge *br, char *buf, size_t len, char sep)
{
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    int64_t age = st.oldest_ms ? (log_wall_ms() - st.oldest_ms) / 1000 : 0;
    const struct {
        const char *name;
        int64_t v;
    } kv[] = {
        {"received", br->n.received},
        {"spooled", br->n.spooled},
        {"delivered", br->n.delivered},
        {"dead_lettered", br->n.dead_lettered},
        {"unrouted", br->n.unrouted},
        {"bad_topic", br->n.bad_topic},
        {"oversized", br->n.oversized},
        {"empty", br->n.empty},
        {"bad_payload", br->n.bad_payload},
        {"missing_field", br->n.missing_field},
        {"kafka_refused", br->n.kafka_refused},
        {"dropped_full", st.dropped[SPOOL_DROP_FULL]},
        {"expired", st.dropped[SPOOL_DROP_EXPIRED]},
        {"retries", br->n.retries},
        {"spool_errors", br->n.spool_errors},
        {"broker_dropped", br->n.broker_dropped},
        {"redelivered", br->n.redelivered},
        {"backlog", st.records},
        {"backlog_bytes", st.bytes},
        {"oldest_s", age},
        {"dead_in_spool", st.dead},
        {"spool_file_bytes", st.file_bytes},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]) && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s=%" PRId64 "%c",
                                kv[i].name, kv[i].v, sep);
    if (off < len)
        snprintf(buf + off, len - off, "uplink=%s%cmqtt=%s",
                 br->uplink == 1   ? "up"
                 : br->uplink == 0 ? "down"
                                   : "unknown",
                 sep, mqtt_in_connected(br->in) ? "connected" : "disconnected");
}

static void log_counters(struct bridge *br, const char *when)
{
    char line[1024];
    format_counters(br, line, sizeof(line), ' ');
    log_info("%s: %s", when, line);
}

/* The status file: the counters one per line, replaced atomically (write a
 * temporary file, rename) so a reader never sees half of it. It lives on
 * tmpfs (/run) by default: rewriting it every few seconds costs no flash. */
static void write_status(struct bridge *br, const char *state)
{
    const char *path = br->c->log.status_file;
    char tmp[4200], body[1200];
    if (!path || !*path)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        if (!br->status_warned++)
            log_warn("status file %s: %s (mqtt2kafka status will not work)",
                     tmp, strerror(errno));
        return;
    }
    format_counters(br, body, sizeof(body), '\n');
    fprintf(f,
            "state=%s\npid=%d\nupdated_ms=%" PRId64 "\nversion=%s\n"
            "gateway=%s\n%s\n",
            state, (int)getpid(), log_wall_ms(), M2K_VERSION, br->c->gateway.id,
            body);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        unlink(tmp);
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
    if (pf[2].fd >= 0 && pf[2].revents & (POLLIN | POLLHUP | POLLERR)) {
        /* read until dry or the batch is full */
        /* each message read may become up to `per` records (split) */
        size_t per = payload_max_records(br->payload), room;
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
    /* Group commit: a burst is committed (and only then acknowledged) once
     * it is large, or its first message has waited spool.commit_delay, so
     * a trickle of messages does not cost a commit each. */
    /* A lost connection commits at once: the broker redelivers the burst
     * after the reconnect, and only committed tags are recognised. */
    if (br->batch.failed || br->batch.n >= GROUP_RECORDS ||
        br->batch.used >= br->batch_bytes / 2 ||
        (br->batch.n > 0 && !mqtt_in_connected(br->in)) ||
        (br->batch.n > 0 &&
         log_now_ms() - br->batch_t0 >= br->c->spool.commit_delay))
        commit(br);
    else if (br->batch.n == 0 && pf[2].fd >= 0 && pf[2].revents & POLLOUT)
        commit(br); /* nothing read: just sends what is queued */
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
    return kafka_out_new(&ko, &kcb, br, &br->out, err, errlen);
}

/* The same counters, short, for `systemctl status` (sd_notify STATUS=). */
static void status_line(struct bridge *br)
{
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    notify_status("%suplink %s, mqtt %s, spool %" PRId64 " records, %" PRId64
                  " dead letters",
                  br->backpressure ? "backpressure (spool full), " : "",
                  br->uplink == 1   ? "up"
                  : br->uplink == 0 ? "down"
                                    : "unknown",
                  mqtt_in_connected(br->in) ? "connected" : "disconnected",
                  st.records, st.dead);
}

/* Before sleeping: apply delivery outcomes, refill the window, housekeeping. */
static int before_sleep(struct bridge *br, int64_t *next_stats,
                        int64_t *next_expire)
{
    int64_t now = log_now_ms();
    notify_watchdog();
    /* Acks are a transaction too: apply them in groups, every ACK_EVERY_MS
     * (or sooner when many wait, or anything else does). */
    if (now - br->last_flush >= ACK_EVERY_MS ||
        br->pend.nacks >= br->pend.cap / 2 || br->pend.ndead ||
        br->pend.nretry) {
        flush_pending(br);
        br->last_flush = now;
    }
    if (kafka_out_fatal(br->out)) {
        char err[512];
        log_error("kafka: restarting the producer after a fatal error");
        kafka_out_free(br->out); /* reports everything in flight as retry */
        br->out = NULL;
        flush_pending(br);
        spool_rewind(br->sp);
        br->inflight = br->inflight_bytes = 0;
        if (kafka_open(br, err, sizeof(err)) < 0) {
            log_error("%s", err);
            br->stop = 1;
            return 0;
        }
    }
    drain(br);
    if (br->c->spool.on_full == SPOOL_BACKPRESSURE) {
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
        spool_expire(br->sp, log_wall_ms());
        *next_expire = now + EXPIRE_EVERY_MS;
    }
    if (now >= br->next_status) {
        write_status(br, br->backpressure ? "backpressure" : "running");
        status_line(br);
        br->next_status = now + STATUS_EVERY_MS;
    }
    if (br->c->log.stats_interval > 0 && now >= *next_stats) {
        log_counters(br, "stats");
        *next_stats = now + (int64_t)br->c->log.stats_interval * 1000;
    }
    if (br->hold_until > now && br->hold_until - now < wait)
        wait = (int)(br->hold_until - now);
    if (br->batch.n > 0) { /* a burst waits for its group commit */
        int64_t left = br->batch_t0 + br->c->spool.commit_delay - now;
        if (left < wait)
            wait = (int)(left > 0 ? left : 0);
    }
    if (br->pend.nacks && wait > ACK_EVERY_MS)
        wait = ACK_EVERY_MS; /* pending acks are applied soon */
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
    while (br->inflight > 0 && log_now_ms() < deadline) {
        kafka_out_flush(br->out, 100);
        flush_pending(br);
    }
    if (br->inflight > 0)
        log_warn("shutdown: %" PRId64
                 " records still in flight stay in the spool",
                 br->inflight);
    kafka_out_free(br->out);
    br->out = NULL;
    flush_pending(br);
    log_counters(br, "final");
    write_status(br, "stopped");
}

static int open_stages(struct bridge *br, const char ***filters,
                       size_t *nfilters)
{
    const struct conf *c = br->c;
    char err[512];
    struct spool_opts so = {
        .path = c->spool.path,
        .max_bytes = c->spool.max_bytes,
        .max_age_ms = c->spool.max_age,
        .on_full = (enum spool_on_full)c->spool.on_full,
        .sync = (enum spool_sync)c->spool.sync,
    };
    if (route_table_new(c, &br->routes, err, sizeof(err)) < 0 ||
        payload_new(c, &br->payload, err, sizeof(err)) < 0)
        goto fail;
    *nfilters = route_table_filters(br->routes, filters);
    if (spool_open(&so, &br->sp, err, sizeof(err)) < 0)
        goto fail;
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    if (st.recovered)
        log_error("spool: %s was corrupt; it was set aside and a fresh "
                  "spool started",
                  c->spool.path);
    log_info("spool: %s (%s), %" PRId64 " records waiting, %" PRId64
             " dead letters",
             c->spool.path,
             c->spool.sync == SPOOL_SYNC_FULL ? "sync full" : "sync normal",
             st.records, st.dead);
    if (kafka_open(br, err, sizeof(err)) < 0)
        goto fail;
    return 0;
fail:
    log_error("%s", err);
    return -1;
}

/* The tags of the newest rows still spooled, remembered oldest first. */
static void load_tags(struct bridge *br)
{
    int64_t *ids = calloc(RECENT, sizeof(int64_t));
    int64_t *tags = calloc(RECENT, sizeof(int64_t));
    int n = ids && tags ? spool_recent(br->sp, ids, tags, RECENT) : 0;
    for (int i = n - 1; i >= 0; i--)
        remember(br, tags[i]);
    free(ids);
    free(tags);
}

int bridge_run(const struct conf *c)
{
    struct bridge *br = calloc(1, sizeof(*br));
    const char **filters = NULL;
    size_t nfilters = 0;
    int sfd = -1, rc = 1;
    char err[512];

    if (!br)
        return 1;
    br->c = c;
    br->uplink = -1;
    br->fault_after = -1;
    const char *fault = getenv("MQTT2KAFKA_FAULT");
    if (fault && (strncmp(fault, "crash-before-commit", 19) == 0 ||
                  strncmp(fault, "crash-after-commit", 18) == 0)) {
        const char *at = strchr(fault, '@');
        br->fault_after = at ? strtoll(at + 1, NULL, 10) : 1;
        br->fault_after_commit = fault[6] == 'a';
    }
    log_set_level(c->log.level);
    srandom((unsigned)(log_wall_ms() ^ getpid()));
    br->pend.cap = (size_t)c->kafka.inflight_records + 1;
    br->pend.acks = calloc(br->pend.cap, sizeof(int64_t));
    br->pend.retry = calloc(br->pend.cap, sizeof(int64_t));
    br->batch.cap = 1u << 20;
    br->batch.buf = malloc(br->batch.cap);
    br->last_tag = calloc(MIDS, sizeof(int64_t));
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
    br->win_bytes = c->kafka.inflight_bytes;
    if (c->spool.max_bytes > 0 && c->spool.max_bytes / 4 < br->win_bytes)
        br->win_bytes = c->spool.max_bytes / 4;
    if (!br->pend.acks || !br->pend.retry || !br->batch.buf || !br->last_tag)
        goto out;
    if (open_stages(br, &filters, &nfilters) < 0)
        goto out;
    load_tags(br);

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
        goto out;
    }
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
    kafka_out_free(br->out);
    mqtt_in_free(br->in);
    spool_close(br->sp);
    route_table_free(br->routes);
    payload_free(br->payload);
    free(br->pend.acks);
    free(br->pend.retry);
    free(br->batch.buf);
    free(br->last_tag);
    free(br);
    return rc;
}
