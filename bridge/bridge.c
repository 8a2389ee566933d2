/*
 * bridge.c — the data path in: MQTT messages become records in the burst.
 *
 *   MQTT in ──> route ──> decode ──> burst ──> commit.c: Kafka or spool
 *   (mqtt_in)  (convert: route.c, payload.c)  (outbox, kafka_out, spool)
 *      ^                                            │
 *      └── PUBACKs once the burst is durable ───────┘
 *
 * A message read from MQTT (its PUBACK only queued) is converted into
 * records, or a dead letter, and copied into the burst (batch.c). commit.c
 * then makes the burst durable — straight to Kafka on the direct path, or
 * into the spool, whole messages per transaction — and only then are the
 * PUBACKs written. If that fails, the connection is dropped with them
 * unsent and the broker redelivers: the messages already durable have
 * their tags remembered (redeliver.c), so their redelivery is acknowledged
 * without storing them twice. Delivery reports go to the outbox
 * (outbox.c). The stages never call each other; they only meet here and in
 * commit.c, through callbacks. daemon.c opens them in order and turns the
 * loop.
 *
 * Counting (in commit.c): every message is counted once, when its fate is
 * final: stored (stored++; its records in spooled, or direct when Kafka
 * confirmed them straight), dead-lettered (its kind; its one record the
 * same way), acknowledged as a redelivery, or lost (a QoS 0 message whose
 * commit failed: the broker never sends those again); received counts all
 * four. Nothing is counted and then rolled back, and a message
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

static void end_msg_notes(struct bridge *br, const struct mqtt_in_msg *m,
                          int fate, int kind, int64_t tag, int route,
                          unsigned notes)
{
    struct batch_msg bm = {.qos = m->qos,
                           .fate = fate,
                           .kind = kind,
                           .tag = tag,
                           .route = route,
                           .notes = notes};
    if (batch_end_msg(&br->batch, &bm))
        br->batch.failed = 1; /* cannot happen: read_burst keeps room */
}

static void end_msg(struct bridge *br, const struct mqtt_in_msg *m, int fate,
                    int kind, int64_t tag, int route)
{
    end_msg_notes(br, m, fate, kind, tag, route, 0);
}

struct emit_ctx { /* one message on its way through convert_message() */
    struct bridge *br;
    const struct mqtt_in_msg *m;
    int64_t now, tag;
    int large;    /* its record is a large one, being staged (large.c) */
    int large_rc; /* why it could not be */
};

/* A record over kafka.chunk_bytes: the message's only one, stored once in
 * the spool slice by slice and produced as chunks (large.c, fat.c). A
 * split message with such an element is a dead letter: its records must
 * go all or none, and a large one is stored on its own. */
static int emit_large(struct emit_ctx *e, const struct batch_rec *r)
{
    int rc = -E2BIG;
    if (!e->large && !batch_open_records(&e->br->batch))
        rc = br_large_take(e->br, e->m, r, e->tag);
    if (rc == 0)
        e->large = 1;
    else
        e->large_rc = rc;
    return rc;
}

static int emit_record(void *ud, const struct convert_rec *v)
{
    struct emit_ctx *e = ud;
    unsigned char hbuf[HDRS_CAP];
    struct record_hdrs h = {.buf = hbuf, .cap = sizeof(hbuf)};
    base_headers(e->br, e->m, &h, e->now, NULL, v->content_type);
    for (size_t i = 0; i < v->nhdrs; i++)
        record_hdr_add_str(&h, v->hdrs[i].name, v->hdrs[i].value);
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
    if (e->large || (e->br->chunk_bytes && v->len > e->br->chunk_bytes))
        return emit_large(e, &r);
    return hold(e->br, e->m, &r);
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
    /* with chunks on, max_payload may be tens of MB: a dead letter is cut
     * to a chunk, a size the user has made sure Kafka takes */
    if (br->chunk_bytes && keep > br->chunk_bytes)
        keep = br->chunk_bytes;
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

/* Writes the state gathered since the last flush in one transaction. It
 * is a cache (Sparkplug aliases): a failure only costs a rebirth later. */
void br_kv_flush(struct bridge *br)
{
    if (br->nkv && spool_kv_put_n(br->sp, br->kv, br->nkv) < 0)
        log_warn("spool: cannot keep %zu state entries: %s", br->nkv,
                 spool_errmsg(br->sp));
    for (size_t i = 0; i < br->nkv; i++) {
        free((char *)br->kv[i].key);
        free((void *)br->kv[i].v);
    }
    br->nkv = 0;
}

/* Holds a copy of (key, v) for the next flush; a key held already gets the
 * new value. */
static void kv_hold(struct bridge *br, const char *key, const void *v,
                    size_t len)
{
    size_t i = 0;
    char *k = NULL;
    void *c;
    while (i < br->nkv && strcmp(br->kv[i].key, key))
        i++;
    if (i == KV_PENDING_MAX) {
        br_kv_flush(br);
        i = 0;
    }
    if (!(c = malloc(len ? len : 1)) || (i == br->nkv && !(k = strdup(key)))) {
        free(c);
        log_warn("out of memory keeping %s", key);
        return;
    }
    memcpy(c, v, len);
    if (i == br->nkv)
        br->kv[br->nkv++].key = k;
    else
        free((void *)br->kv[i].v);
    br->kv[i].v = c;
    br->kv[i].len = len;
}

/* What a converted message asks besides its records: Sparkplug aliases to
 * keep in the spool (with the burst's commit) and a rebirth request to
 * publish. Returns the notes to count if it is stored. */
static unsigned side_effects(struct bridge *br)
{
    struct convert_effects e;
    convert_effects(br->cv, &e);
    if (e.state_key)
        kv_hold(br, e.state_key, e.state, e.state_len);
    if (e.publish_topic) {
        if (mqtt_in_publish(br->in, e.publish_topic, e.publish,
                            e.publish_len) == 0) {
            br->n.spb_rebirths++;
            log_info("sparkplug: asked for a rebirth on %s", e.publish_topic);
        }
    }
    return (e.unknown_fields ? NOTE_UNKNOWN : 0) |
           (e.unresolved ? NOTE_UNRESOLVED : 0) |
           (e.seq_gap ? NOTE_SEQ_GAP : 0);
}

void br_on_message(void *ud, const struct mqtt_in_msg *m)
{
    struct bridge *br = ud;
    int64_t now = log_wall_ms();
    br->read++;

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
    struct emit_ctx e = {br, m, now, tag, 0, 0};
    struct convert_msg cm = {m->topic, m->payload, m->len,
                             m->qos,   now,        br->c->gateway.id};
    struct convert_dead d;
    int rc = convert_message(br->cv, &cm, emit_record, &e, &d);
    if (e.large && (rc || d.kind != CONVERT_OK))
        br_large_abort(br); /* not one large record after all */
    if (e.large_rc && e.large_rc != -EFBIG && e.large_rc != -E2BIG) {
        log_error(
            "spool: cannot begin a large message of %zu bytes: %s", m->len,
            e.large_rc == -ENOMEM ? "out of memory" : spool_errmsg(br->sp));
        br->batch.failed = 1; /* as a put that fails: the broker redelivers */
        br->lost_qos0 += m->qos == 0; /* but not QoS 0: lost, counted */
        return;
    }
    if (rc && br->batch.failed)
        return; /* out of memory: the burst is withheld */
    size_t n = br->batch.n - mark.n;
    unsigned notes = side_effects(br);
    int route = d.route;
    if (e.large && rc == 0 && d.kind == CONVERT_OK) {
        /* staged a slice per turn; MQTT is not read until it is stored */
        br->large.notes = notes;
        br->large.route = route;
        return;
    }
    if (rc == 0 && d.kind == CONVERT_OK) {
        if (br_fits(br, mark.n, n)) {
            end_msg_notes(br, m, FATE_STORED, 0, tag, route, notes);
            return;
        }
        rc = -ENOSPC;
    }
    if (rc) { /* headers, envelope or JSON made it too large to store */
        d = (struct convert_dead){
            .kind = CONVERT_OVERSIZED, .route = route, .keep = m->len};
        if (e.large_rc == -EFBIG)
            snprintf(d.why, sizeof d.why,
                     "payload of %zu bytes is more than the spool holds of "
                     "one large message (%" PRId64 ")",
                     m->len, spool_big_max(br->sp));
        else if (e.large_rc == -E2BIG)
            snprintf(d.why, sizeof d.why,
                     "a split message with an element over kafka.chunk_bytes "
                     "(%zu)",
                     br->chunk_bytes);
        else
            snprintf(d.why, sizeof d.why,
                     "its records (with their headers) are larger than one "
                     "spool transaction holds (%zu bytes)",
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
    if (br->uplink == up) /* down still, with a new cause: kafka_out said */
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
    outbox_uplink(br->ob, up, log_now_ms()); /* may hold the backlog */
}

/* librdkafka's statistics; they can tell the uplink is up before any
 * record was sent (an idle gateway after a start). */
static void on_stats(void *ud, const char *json, size_t len)
{
    struct bridge *br = ud;
    if (br_take_kafka_stats(br, json, len) && br->uplink == -1)
        on_uplink(br, 1, NULL);
}

/* kafka.security as librdkafka properties, after kafka.properties (the
 * loader refuses a property both set). Returns how many. */
size_t br_security_props(const struct conf *c, struct kafka_out_prop *p)
{
    static const char *const protocols[] = {"plaintext", "ssl",
                                            "sasl_plaintext", "sasl_ssl"};
    const int proto = c->kafka.security.protocol;
    size_t n = 0;
    if (!c->kafka.security.on)
        return 0;
    p[n++] = (struct kafka_out_prop){"security.protocol", protocols[proto & 3]};
    if (proto == CONF_SEC_SASL_PLAINTEXT || proto == CONF_SEC_SASL_SSL) {
        p[n++] = (struct kafka_out_prop){"sasl.mechanism",
                                         c->kafka.security.sasl_mechanism};
        p[n++] = (struct kafka_out_prop){"sasl.username",
                                         c->kafka.security.username};
        p[n++] = (struct kafka_out_prop){"sasl.password",
                                         c->kafka.security.password};
    }
    if (proto != CONF_SEC_SSL && proto != CONF_SEC_SASL_SSL)
        return n;
    if (c->kafka.security.ca_file)
        p[n++] = (struct kafka_out_prop){"ssl.ca.location",
                                         c->kafka.security.ca_file};
    if (c->kafka.security.cert_file) {
        p[n++] = (struct kafka_out_prop){"ssl.certificate.location",
                                         c->kafka.security.cert_file};
        p[n++] = (struct kafka_out_prop){"ssl.key.location",
                                         c->kafka.security.key_file};
    }
    if (c->kafka.security.key_password)
        p[n++] = (struct kafka_out_prop){"ssl.key.password",
                                         c->kafka.security.key_password};
    p[n++] = (struct kafka_out_prop){
        "ssl.endpoint.identification.algorithm",
        c->kafka.security.insecure_skip_hostname_verification ? "none"
                                                              : "https"};
    return n;
}

int br_kafka_new(struct bridge *br, const struct conf *c,
                 struct kafka_out **out, char *err, size_t errlen)
{
    struct kafka_out_prop props[CONF_MAX_PROPS + 16];
    size_t n = 0;
    for (size_t i = 0; i < c->kafka.nprops && i < CONF_MAX_PROPS; i++)
        props[n++] = (struct kafka_out_prop){c->kafka.props[i].name,
                                             c->kafka.props[i].value};
    n += br_security_props(c, props + n);
    struct kafka_out_opts ko = {
        .brokers = c->kafka.brokers,
        .compression = c->kafka.compression,
        .props = props,
        .nprops = n,
        .queue_records = c->kafka.inflight_records,
        .stats_ms = strcmp(c->metrics.listen, "off") ? KAFKA_STATS_MS : 0,
    };
    struct kafka_out_cb kcb = {
        .delivered = on_delivered, .uplink = on_uplink, .stats = on_stats};
    if (c->kafka.security.insecure_skip_hostname_verification)
        log_warn("kafka: TLS host name verification is OFF "
                 "(kafka.security.insecure_skip_hostname_verification): any "
                 "certificate the CA signed is taken for the brokers");
    return kafka_out_new(&ko, &kcb, br, out, err, errlen);
}

int br_kafka_open(struct bridge *br, char *err, size_t errlen)
{
    int rc = br_kafka_new(br, br->c, &br->out, err, errlen);
    outbox_set_producer(br->ob, br->out);
    return rc;
}

/* --- MQTT in ------------------------------------------------------------ */

/* The MQTT 5 maximum packet size we announce: a publish up to four times
 * mqtt.max_payload is still read and dead-lettered (cut, with its size);
 * the broker drops a larger one (and logs "Dropping too large outgoing
 * PUBLISH"), so it is never read into memory whole. */
static uint32_t max_packet(const struct conf *c)
{
    int64_t m = c->mqtt.max_payload > 0 ? 4 * c->mqtt.max_payload : 0;
    /* With chunks max_payload may be tens of MB: a publish over it is read
     * (and dead-lettered) up to 16 MiB more, not four times as much. */
    if (c->kafka.chunk_bytes && m > c->mqtt.max_payload + (16 << 20))
        m = c->mqtt.max_payload + (16 << 20);
    if (m <= 0 || m > (int64_t)UINT32_MAX - 131072)
        return 0;
    return (uint32_t)m + 131072; /* topic, properties, headers */
}

int br_mqtt_new(struct bridge *br, const struct conf *c,
                const struct convert *cv, struct mqtt_in **out, char *err,
                size_t errlen)
{
    const char **filters = NULL;
    size_t nfilters = convert_filters(cv, &filters);
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
        .max_packet = max_packet(c),
        .filters = filters,
        .nfilters = nfilters,
        .share_group = c->mqtt.share_group,
        .watch_sys_drops = 1,
        .tls = c->mqtt.tls.on,
        .ca_file = c->mqtt.tls.ca_file,
        .cert_file = c->mqtt.tls.cert_file,
        .key_file = c->mqtt.tls.key_file,
        .key_password = c->mqtt.tls.key_password,
        .tls_no_hostname_check =
            c->mqtt.tls.insecure_skip_hostname_verification,
    };
    struct mqtt_in_cb mcb = {.message = br_on_message,
                             .state = br_on_mqtt_state,
                             .broker_dropped = br_on_broker_dropped};
    return mqtt_in_new(&mo, &mcb, br, out, err, errlen);
}
