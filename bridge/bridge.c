/*
 * bridge.c — the daemon's data path: the one file that knows every stage.
 *
 *   MQTT in ──> route ──> decode ──> spool ──> Kafka out
 *   (mqtt_in)  (convert: route.c, payload.c)  (outbox, kafka_out)
 *      ^                               ^           │
 *      └── acks after the commit ──────┘<── delivery reports
 *
 * A message read from MQTT (its PUBACK only queued) is converted into
 * records, or a dead letter, and copied into the burst (batch.c); the
 * burst is put into the spool, whole messages per transaction; only when
 * all of it is stored are the PUBACKs written. If a part fails, the
 * connection is dropped with them unsent and the broker redelivers: the
 * parts already stored have their tags remembered (redeliver.c), so their
 * redelivery is acknowledged without storing them twice. Delivery reports
 * go to the outbox (outbox.c), which applies them to the spool. The stages
 * never call each other; they only meet here, through callbacks. daemon.c
 * opens them in order and turns the loop.
 *
 * Counting: every message is counted once, when its fate is final: stored
 * (stored++, spooled += its records), dead-lettered (its kind; spooled += 1,
 * the dead letter), acknowledged as a redelivery, or lost (a QoS 0 message
 * whose commit failed: the broker never sends those again); received
 * counts all four. Nothing is counted and then rolled back, and a message
 * in a burst not yet committed is in no counter. Messages and records
 * differ: a split message becomes several records, and from the spool on
 * (delivered, kafka_refused, the spool's drops) everything counts records.
 * A message that matched a route is also counted under that route
 * (route_received), and its records under it when delivered (the outbox).
 * observe.c shows all of it, and the README's "Metrics" section states
 * the identity these counters satisfy.
 *
 * Nothing stalls on one message: a message whose records (with headers,
 * envelope or JSON) are larger than one spool transaction holds becomes a
 * dead letter cut to fit, with error.original.size. A message the bridge
 * rejects (no route, captures that make an illegal topic name, payload
 * over mqtt.max_payload or the route's, a payload that does not decode or
 * lacks a field a template needs) is spooled to kafka.dead_letter_topic
 * with an error.reason header, and counted. A record Kafka refuses for
 * good stays in the spool's dead-letter table, visible with `mqtt2kafka
 * spool dead` and replayable.
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/log.h"
#include "bridge/record.h"

/* --- MQTT in → convert → batch ------------------------------------------ */

/* The headers every record made from m carries. */
static void base_headers(struct bridge *br, const struct mqtt_in_msg *m,
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
        if (record_hdr_add_user(h, m->props[i].name, m->props[i].value,
                                &br->renamed))
            log_warn("mqtt: user property '%s' on %s dropped: headers full",
                     m->props[i].name, m->topic);
}

/* Copies one record into the batch. -ENOSPC: the burst cannot hold this
 * message (it becomes a dead letter); out of memory: the burst is withheld
 * (acks unsent, the broker redelivers). */
static int hold(struct bridge *br, const struct mqtt_in_msg *m,
                const struct batch_rec *r)
{
    int rc = batch_add(&br->batch, r);
    if (rc && rc != -ENOSPC) {
        log_error("out of memory holding message from %s", m->topic);
        br->batch.failed = 1;
    }
    return rc;
}

/* What became of a message in the burst (batch_msg.fate). */
enum { FATE_STORED, FATE_DEAD, FATE_REDELIVERED };

static void end_msg(struct bridge *br, const struct mqtt_in_msg *m, int fate,
                    int kind, int64_t tag, int route)
{
    struct batch_msg bm = {
        .qos = m->qos, .fate = fate, .kind = kind, .tag = tag, .route = route};
    if (batch_end_msg(&br->batch, &bm))
        br->batch.failed = 1; /* cannot happen: read_burst keeps room */
}

/* One spool put can hold records first..first+n of the batch. */
static int fits(void *ud, size_t first, size_t n)
{
    struct bridge *br = ud;
    for (size_t i = first; i < first + n; i++) {
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
    return spool_fits(br->sp, br->put + first, n);
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

/* A message that cannot become records goes to the dead-letter topic: its
 * MQTT topic, its bytes (cut to what one spool transaction holds, the
 * original size in a header) and why. */
static void dead_letter(struct bridge *br, const struct mqtt_in_msg *m,
                        const struct convert_dead *d, int64_t now, int64_t tag)
{
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    const char *topic = br->c->kafka.dead_letter_topic;
    size_t keep = d->keep, key = d->has_key ? d->key_len : 0;
    size_t over = strlen(topic) + 1 + key + HDRS_CAP + 256;
    size_t room = br->max_record > over ? br->max_record - over : 0;
    if (keep > room)
        keep = room;
    log_debug("dead-letter: %s: %s", m->topic, d->why);
    base_headers(br, m, &h, now, d->why, NULL);
    if (keep < m->len) /* a dead letter must fit one spool transaction */
        record_hdr_add_i64(&h, "error.original.size", (int64_t)m->len);
    struct batch_rec r = {
        .topic = topic,
        .key = d->has_key ? d->key : NULL,
        .key_len = key,
        .headers = h.buf,
        .headers_len = h.len,
        .value = m->payload,
        .len = keep,
        .recv_ms = now,
        .route = -1,
        .tag = tag,
    };
    if (hold(br, m, &r) == 0)
        end_msg(br, m, FATE_DEAD, d->kind, tag, d->route);
    else
        br->batch.failed = 1;
}

void br_on_message(void *ud, const struct mqtt_in_msg *m)
{
    struct bridge *br = ud;
    int64_t now = log_wall_ms();

    if (br->batch.failed) { /* withheld anyway: the broker redelivers, */
        br->lost_qos0 += m->qos == 0; /* but not QoS 0 */
        return;
    }
    int64_t tag = redeliver_tag(m->topic, m->payload, m->len, m->qos, m->mid);
    if (redeliver_check(br->rd, m->mid, tag)) {
        end_msg(br, m, FATE_REDELIVERED, 0, tag, -1); /* stored already */
        return;
    }
    struct batch_mark mark = batch_mark(&br->batch);
    struct emit_ctx e = {br, m, now, tag};
    struct convert_msg cm = {m->topic, m->payload, m->len,
                             m->qos,   now,        br->c->gateway.id};
    struct convert_dead d;
    int rc = convert_message(br->cv, &cm, emit_record, &e, &d);
    if (rc && br->batch.failed)
        return; /* out of memory: the burst is withheld */
    size_t n = br->batch.n - mark.n;
    int route = d.route;
    if (rc == 0 && d.kind == CONVERT_OK) {
        if (fits(br, mark.n, n)) {
            end_msg(br, m, FATE_STORED, 0, tag, route);
            return;
        }
        rc = -ENOSPC;
    }
    if (rc) { /* headers, envelope or JSON made it too large to store */
        d = (struct convert_dead){
            .kind = CONVERT_OVERSIZED, .route = route, .keep = m->len};
        snprintf(d.why, sizeof d.why,
                 "its records (with their headers) are larger than one spool "
                 "transaction holds (%zu bytes)",
                 br->max_record);
    }
    batch_rewind(&br->batch, mark); /* none of its records: all or nothing */
    dead_letter(br, m, &d, now, tag);
}

void br_on_mqtt_state(void *ud, int connected, int session_present,
                      const char *reason)
{
    struct bridge *br = ud;
    const struct conf *c = br->c;
    if (connected) {
        redeliver_session(br->rd, session_present);
        log_info("mqtt: connected to %s:%d as %s (%s)", c->mqtt.host,
                 c->mqtt.port, c->mqtt.client_id,
                 session_present ? "session resumed" : "new session");
        br->mqtt_why[0] = '\0';
        return;
    }
    br->n.reconnects++;
    snprintf(br->mqtt_why, sizeof br->mqtt_why, "connection to %s:%d lost: %s",
             c->mqtt.host, c->mqtt.port, reason ? reason : "unknown");
    log_warn("mqtt: connection to %s:%d lost: %s", c->mqtt.host, c->mqtt.port,
             reason ? reason : "unknown");
}

void br_on_broker_dropped(void *ud, int64_t old, int64_t now)
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
void br_fault_point(struct bridge *br, int after_commit)
{
    if (br->fault_after >= 0 && br->fault_after_commit == after_commit &&
        br->n.received >= br->fault_after) {
        log_warn("fault injection: crash %s commit (%" PRId64 " received)",
                 after_commit ? "after" : "before", br->n.received);
        raise(SIGKILL);
    }
}

/* A message of the burst is committed: count it, once, on success. */
static void count_msg(struct bridge *br, const struct batch_msg *m)
{
    br->n.received++;
    if (m->fate == FATE_REDELIVERED) {
        br->n.redelivered++; /* only the ack goes out */
        return;
    }
    if (m->fate == FATE_DEAD)
        count_dead(&br->n, m->kind);
    else
        br->n.stored++;
    if (m->route >= 0 && (size_t)m->route < br->c->nroutes)
        br->route_received[m->route]++;
    br->n.spooled += (int64_t)m->n;
    if (m->tag)
        redeliver_remember(br->rd, m->tag);
}

/* Puts the burst into the spool, whole messages per transaction; returns
 * the number of messages stored (all, or those before a failure). */
static size_t put_burst(struct bridge *br, int *rc)
{
    struct batch *b = &br->batch;
    size_t done = 0;
    fits(br, 0, b->n); /* fills br->put */
    while (done < b->nmsgs) {
        size_t k = batch_part(b, done, fits, br);
        size_t first = b->msgs[done].first;
        size_t end = b->msgs[k - 1].first + b->msgs[k - 1].n;
        if (end > first &&
            (*rc = spool_put(br->sp, br->put + first, end - first)) < 0)
            break;
        /* counted and remembered at once: should a later part fail, the
         * broker's redelivery of these is recognised */
        for (size_t i = done; i < k; i++)
            count_msg(br, &b->msgs[i]);
        done = k;
    }
    return done;
}

/* Commits the burst; writes the PUBACKs only if all of it was stored. */
void br_commit(struct bridge *br)
{
    struct batch *b = &br->batch;
    int rc = 0;
    if (b->nmsgs == 0 && !b->failed && !br->lost_qos0)
        goto write;
    br_fault_point(br, 0);
    size_t done = put_burst(br, &rc);
    /* What was not stored the broker sends again, but for QoS 0: gone. */
    for (size_t i = done; i < b->nmsgs; i++)
        br->lost_qos0 += b->msgs[i].qos == 0;
    br->n.received += br->lost_qos0;
    br->n.dropped_qos0 += br->lost_qos0;
    if (br->lost_qos0)
        log_warn("mqtt: %" PRId64 " QoS 0 messages lost: they could not be "
                 "stored and the broker does not send them again",
                 br->lost_qos0);
    br->lost_qos0 = 0;
    if (rc < 0 || b->failed) {
        br->n.spool_errors++;
        if (rc == -ENOSPC && br->c->spool.on_full == CONF_BACKPRESSURE) {
            if (!br->backpressure)
                log_warn("spool full: backpressure, not reading MQTT");
            br->backpressure = 1;
        } else {
            log_error("spool: cannot store %zu messages: %s", b->nmsgs - done,
                      rc < 0 ? spool_errmsg(br->sp) : "out of memory");
            br->spool_failing = 1;
            snprintf(br->spool_why, sizeof br->spool_why, "cannot store: %s",
                     rc < 0 ? spool_errmsg(br->sp) : "out of memory");
        }
        mqtt_in_abort(br->in, "the batch could not be stored");
        batch_clear(b);
        return;
    }
    br->spool_failing = 0;
    br_fault_point(br, 1);
    batch_clear(b);
write:
    mqtt_in_write(br->in);
}

/* --- Kafka out ------------------------------------------------------------ */

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, const struct kafka_out_echo *echo)
{
    struct bridge *br = ud;
    outbox_delivered(br->ob, id, o, reason, echo);
}

static void on_uplink(void *ud, int up, const char *reason)
{
    struct bridge *br = ud;
    struct spool_stats st = {0};
    if (br->uplink == up)
        return;
    if (br->uplink == 1 && up == 0)
        br->n.kafka_reconnects++;
    br->uplink = up;
    spool_stats(br->sp, &st);
    if (up)
        log_info("kafka: uplink up; backlog %" PRId64 " records", st.records);
    else
        log_warn("kafka: uplink down (%s); spooling, backlog %" PRId64
                 " records",
                 reason ? reason : "brokers unreachable", st.records);
}

/* librdkafka's statistics; they can tell the uplink is up before any
 * record was sent (an idle gateway after a start). */
static void on_stats(void *ud, const char *json, size_t len)
{
    struct bridge *br = ud;
    if (br_take_kafka_stats(br, json, len) && br->uplink == -1)
        on_uplink(br, 1, NULL);
}

int br_kafka_open(struct bridge *br, char *err, size_t errlen)
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
        .stats_ms = strcmp(c->metrics.listen, "off") ? KAFKA_STATS_MS : 0,
    };
    struct kafka_out_cb kcb = {
        .delivered = on_delivered, .uplink = on_uplink, .stats = on_stats};
    int rc = kafka_out_new(&ko, &kcb, br, &br->out, err, errlen);
    outbox_set_producer(br->ob, br->out);
    return rc;
}
