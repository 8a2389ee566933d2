/*
 * m2k-pub — a simulated device fleet for mqtt2kafka's tests and benchmarks.
 *
 * Devices "<prefix>00001".."<prefix>NNNNN" each publish numbered readings
 * (seq from 1 or --start-seq) to MQTT over -c connections, or straight to
 * Kafka with --kafka. Every message it hands over is remembered by its MQTT
 * message id (or a librdkafka opaque slot) until the broker acknowledges it:
 * QoS 1 on PUBACK, QoS 2 on PUBCOMP, QoS 0 once written to the socket, Kafka
 * on a successful delivery report. --acked FILE lists "<device> <seq>" per
 * acknowledged reading, which m2k-verify then checks against Kafka.
 *
 * Invariants: one thread per connection, and a device lives on exactly one
 * connection, so each device's messages leave in publish order. At most
 * --inflight messages per connection are unacknowledged, so libmosquitto's
 * and librdkafka's queues stay bounded. Rate limiting is a token bucket per
 * connection (rate / connections), smooth down to a few milliseconds.
 *
 * Output: one JSON line on stdout; progress and errors on stderr. Exit 0 when
 * everything sent was acknowledged, 1 if not, 2 on usage errors.
 */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

#include "telemetry.pb-c.h"
#include "test/tools/tools.h"

#define BATCH_READINGS     10
#define MAX_DEVICES        100000u
#define MAX_CONNS          64u
#define MAX_PAYLOAD        (1024u * 1024u)
#define MAX_PREFIX         32u
#define MID_SLOTS          65536u
#define MAX_MQTT_INFLIGHT  32768u
#define MAX_KAFKA_INFLIGHT 1000000u
#define BURST              64

typedef Iot__Telemetry__V1__SensorReading Reading;
typedef Iot__Telemetry__V1__SensorReading__LabelsEntry Label;
typedef Iot__Telemetry__V1__ReadingBatch Batch;

enum fmt { FMT_PROTO, FMT_BATCH, FMT_TEXT, FMT_FIXED };

struct opts {
    const char *host;
    int port;
    unsigned devices;
    uint64_t per_device; /* messages per device, 0 with -t */
    double seconds;      /* -t, 0 with -n */
    double rate;         /* total messages/s, 0 = unlimited */
    int qos;
    size_t size;
    const char *topic_tpl;
    unsigned conns;
    int version;
    enum fmt fmt;
    const char *acked_path;
    uint64_t skip_seq;
    const char *fixed; /* -f fixed:STRING: every message is exactly this */
    const char *prefix;
    uint64_t start_seq;
    const char *kafka;
    const char *kafka_topic;
    unsigned inflight;
    double wait_s;
    const char *like_bridge; /* --like-bridge GW: the bridge's records */
};

struct device {
    char name[MAX_PREFIX + 16];
    char *topic;
    uint64_t next; /* next seq to send */
    uint64_t end;  /* first seq not to send */
};

/* What one unacknowledged message carried: seqs [first, last] of dev,
 * minus --skip-seq on device 0. */
struct slot {
    uint64_t first;
    uint64_t last;
    uint32_t dev;
    uint8_t used;
    int16_t early_rc; /* an ack that came before publish() returned */
};

struct tally {
    uint64_t sent, acked, failed, readings_sent, readings_acked, bytes;
};

struct payload {
    uint8_t *buf;
    size_t len;
    char *pad; /* MAX_PAYLOAD 'x' characters */
};

/* One sender: an MQTT connection or the Kafka producer. */
struct sender {
    struct fleet *f;
    unsigned idx;
    unsigned *devs; /* devices still sending; swap-removed when done */
    unsigned live;
    unsigned cursor;
    struct slot *slots;
    unsigned nslots;
    unsigned *free_slots; /* Kafka only: stack of free slot indexes */
    unsigned nfree;
    unsigned outstanding;
    struct tally t;
    struct payload p;
    struct tools_bucket bucket;
    struct mosquitto *mosq;
    rd_kafka_t *rk;
    bool sock, ready, refused, ever_ready, lost;
    double give_up; /* stop trying to (re)connect after this */
    unsigned complaints;
    uint64_t produced; /* --like-bridge: the m2k.id sequence */
};

struct fleet {
    struct opts o;
    struct device *devs;
    FILE *acked_f;
    double deadline; /* -t: when to stop publishing */
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* ---- payloads ---------------------------------------------------------- */

/* Peeks at the next message's seqs for device di without consuming them;
 * *next is where the device continues once it was sent. */
static unsigned take_seqs(const struct fleet *f, unsigned di, uint64_t *seqs,
                          uint64_t *next)
{
    const struct device *d = &f->devs[di];
    unsigned per = f->o.fmt == FMT_BATCH ? BATCH_READINGS : 1, n = 0;
    uint64_t s = d->next;
    while (n < per && s < d->end) {
        if (!(di == 0 && s == f->o.skip_seq))
            seqs[n++] = s;
        s++; /* a skipped seq moves on to the following one */
    }
    *next = s;
    return n;
}

static void reading_fill(Reading *r, char *dev, uint64_t seq, int64_t ts)
{
    iot__telemetry__v1__sensor_reading__init(r);
    r->device_id = dev;
    r->timestamp_ms = ts;
    r->metric = (char *)"temperature";
    r->value = 20.0 + (double)(seq % 100) / 10.0;
    r->unit = (char *)"C";
    r->seq = seq;
}

static size_t msg_size(const ProtobufCMessage *m)
{
    return protobuf_c_message_get_packed_size(m);
}

/* Sizes the "pad" label so m packs to at least want bytes (as close as the
 * varint lengths allow); returns the pad length, NUL already placed. */
static size_t fit_pad(struct payload *p, const ProtobufCMessage *m, Reading *r,
                      Label *l, size_t want)
{
    size_t sz, n;
    r->n_labels = 0;
    sz = msg_size(m);
    if (sz >= want)
        return 0;
    l->value = p->pad;
    r->n_labels = 1;
    n = want - sz;
    p->pad[n] = '\0';
    while ((sz = msg_size(m)) > want && n > 0) {
        p->pad[n] = 'x';
        p->pad[--n] = '\0';
    }
    if (sz < want) {
        p->pad[n] = 'x';
        p->pad[++n] = '\0';
    }
    return n;
}

static void payload_build(const struct opts *o, struct payload *p, char *dev,
                          const uint64_t *seqs, unsigned n, int64_t ts)
{
    Reading rs[BATCH_READINGS], *rp[BATCH_READINGS];
    Label label = IOT__TELEMETRY__V1__SENSOR_READING__LABELS_ENTRY__INIT;
    Label *lp = &label;
    Batch b = IOT__TELEMETRY__V1__READING_BATCH__INIT;
    const ProtobufCMessage *m = &rs[0].base;
    size_t padn, i;

    if (o->fmt == FMT_FIXED) { /* like heartbeats: the same bytes each time */
        p->len =
            strlen(o->fixed) < MAX_PAYLOAD ? strlen(o->fixed) : MAX_PAYLOAD;
        memcpy(p->buf, o->fixed, p->len);
        return;
    }
    if (o->fmt == FMT_TEXT) {
        int w = snprintf((char *)p->buf, MAX_PAYLOAD,
                         "device=%s;seq=%" PRIu64 ";ts=%" PRId64 ";", dev,
                         seqs[0], ts);
        p->len = (size_t)w;
        if (o->size >= p->len + 6) {
            size_t fill = o->size - p->len - 5;
            memcpy(p->buf + p->len, "pad=", 4);
            memcpy(p->buf + p->len + 4, p->pad, fill);
            p->buf[p->len + 4 + fill] = ';';
            p->len = o->size;
        }
        return;
    }
    for (i = 0; i < n; i++) {
        reading_fill(&rs[i], dev, seqs[i], ts);
        rp[i] = &rs[i];
    }
    label.key = (char *)"pad";
    rs[0].labels = &lp;
    if (o->fmt == FMT_BATCH) {
        b.device_id = dev;
        b.n_readings = n;
        b.readings = rp;
        m = &b.base;
    }
    padn = fit_pad(p, m, &rs[0], &label, o->size);
    p->len = protobuf_c_message_pack(m, p->buf);
    p->pad[padn] = 'x';
}

/* ---- acknowledgements -------------------------------------------------- */

/* Settles slot idx: err NULL = acknowledged, else why it failed. */
static void complete(struct sender *s, unsigned idx, const char *err)
{
    struct fleet *f = s->f;
    struct slot *sl = &s->slots[idx];
    uint64_t q;

    if (err) {
        s->t.failed++;
        if (s->complaints++ < 5)
            fprintf(stderr, "m2k-pub: %s rejected a message: %s\n",
                    s->rk ? "kafka" : "broker", err);
    } else {
        s->t.acked++;
        for (q = sl->first; q <= sl->last; q++) {
            if (sl->dev == 0 && q == f->o.skip_seq)
                continue;
            s->t.readings_acked++;
            if (f->acked_f)
                fprintf(f->acked_f, "%s %" PRIu64 "\n", f->devs[sl->dev].name,
                        q);
        }
    }
    sl->used = 0;
    sl->early_rc = -1;
    s->outstanding--;
    if (s->free_slots)
        s->free_slots[s->nfree++] = idx;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    struct sender *s = obj;
    (void)mosq;
    (void)props;
    if (mid < 0 || (unsigned)mid >= MID_SLOTS)
        return;
    if (!s->slots[mid].used) {
        /* QoS 0: written out inside mosquitto_publish(), before we knew
         * the mid. publish_one() completes it. */
        s->slots[mid].early_rc = (int16_t)rc;
        return;
    }
    complete(s, (unsigned)mid, rc >= 0x80 ? mosquitto_reason_string(rc) : NULL);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct sender *s = obj;
    (void)mosq;
    (void)flags;
    (void)props;
    if (rc == 0) {
        s->ready = s->ever_ready = true;
        return;
    }
    fprintf(stderr, "m2k-pub: connection %u refused: %s\n", s->idx,
            s->f->o.version == 5 ? mosquitto_reason_string(rc)
                                 : mosquitto_connack_string(rc));
    s->refused = true;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct sender *s = opaque;
    (void)rk;
    complete(s, (unsigned)(uintptr_t)m->_private,
             m->err ? rd_kafka_err2str(m->err) : NULL);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque)
{
    struct sender *s = opaque;
    (void)rk;
    (void)err;
    if (s->complaints++ < 5)
        fprintf(stderr, "m2k-pub: kafka: %s\n", reason);
}

/* ---- sending ----------------------------------------------------------- */

static bool publishing(const struct sender *s)
{
    if (stopping || s->live == 0)
        return false;
    return s->f->deadline <= 0 || tools_mono() < s->f->deadline;
}

static void retire(struct sender *s, unsigned pos)
{
    s->devs[pos] = s->devs[--s->live];
    if (s->cursor >= s->live)
        s->cursor = 0;
}

/* With --like-bridge, the headers mqtt2kafka puts on such a record (the
 * MQTT topic, QoS, retain, gateway, receive time, m2k.id), so librdkafka
 * alone sends the same records the bridge does; else none. */
static rd_kafka_headers_t *bridge_headers(struct sender *s,
                                          const struct device *d)
{
    const struct opts *o = &s->f->o;
    char v[48];
    if (!o->like_bridge)
        return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "mqtt.topic", -1, d->topic, -1);
    rd_kafka_header_add(h, "mqtt.qos", -1, o->qos ? "1" : "0", 1);
    rd_kafka_header_add(h, "mqtt.retain", -1, "0", 1);
    rd_kafka_header_add(h, "gateway.id", -1, o->like_bridge, -1);
    snprintf(v, sizeof v, "%lld", (long long)tools_now_ms());
    rd_kafka_header_add(h, "received.ms", -1, v, -1);
    snprintf(v, sizeof v, "0123456789abcdef-%llu",
             (unsigned long long)++s->produced);
    rd_kafka_header_add(h, "m2k.id", -1, v, -1);
    return h;
}

/* Hands one message of the next device in turn to `send`. Returns 0 when
 * it went out (or the device had nothing left), 1 to retry later. */
static int publish_one(struct sender *s)
{
    struct fleet *f = s->f;
    unsigned pos = s->cursor, di = s->devs[pos], idx = 0;
    struct device *d = &f->devs[di];
    uint64_t seqs[BATCH_READINGS], next;
    unsigned n = take_seqs(f, di, seqs, &next);
    int mid = 0, rc;

    if (n == 0) {
        d->next = next;
        retire(s, pos);
        return 0;
    }
    payload_build(&f->o, &s->p, d->name, seqs, n, tools_now_ms());
    if (s->mosq) {
        rc = mosquitto_publish(s->mosq, &mid, d->topic, (int)s->p.len, s->p.buf,
                               f->o.qos, false);
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
            s->lost = true;
            return 1;
        }
        idx = (unsigned)mid % MID_SLOTS;
    } else {
        rd_kafka_headers_t *h = bridge_headers(s, d);
        idx = s->free_slots[--s->nfree];
        rc = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(f->o.kafka_topic),
                               RD_KAFKA_V_KEY(d->name, strlen(d->name)),
                               RD_KAFKA_V_VALUE(s->p.buf, s->p.len),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_OPAQUE((void *)(uintptr_t)idx),
                               RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (rc) {
            if (h) /* not taken */
                rd_kafka_headers_destroy(h);
            s->free_slots[s->nfree++] = idx;
            if (rc == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(s->rk, 10);
                return 1;
            }
        }
    }
    if (rc) {
        s->t.failed++;
        if (s->complaints++ < 5)
            fprintf(stderr, "m2k-pub: publish failed: %s\n",
                    s->mosq ? mosquitto_strerror(rc)
                            : rd_kafka_err2str((rd_kafka_resp_err_t)rc));
    } else {
        struct slot *sl = &s->slots[idx];
        int16_t early = s->mosq ? sl->early_rc : -1;
        if (sl->used) {
            fprintf(stderr, "m2k-pub: message id %u reused while in flight\n",
                    idx);
            s->outstanding--;
            s->t.failed++;
        }
        sl->used = 1;
        sl->dev = di;
        sl->first = seqs[0];
        sl->last = seqs[n - 1];
        s->outstanding++;
        s->t.sent++;
        s->t.readings_sent += n;
        s->t.bytes += s->p.len;
        if (early >= 0)
            complete(s, idx,
                     early >= 0x80 ? mosquitto_reason_string(early) : NULL);
    }
    d->next = next;
    if (d->next >= d->end)
        retire(s, pos);
    else if (++s->cursor >= s->live)
        s->cursor = 0;
    return 0;
}

/* Publishes what the bucket and the in-flight cap allow; returns how long
 * to wait for the network before trying again (0 = go on at once). */
static double publish_burst(struct sender *s)
{
    double wait = 0;
    int i;
    for (i = 0; i < BURST; i++) {
        if (!publishing(s))
            return 0;
        if (s->outstanding >= s->f->o.inflight)
            return 0.05;
        if (!tools_bucket_take(&s->bucket, &wait))
            return wait;
        if (publish_one(s))
            return 0.01;
    }
    return 0;
}

/* Keeps the connection up: connects, reconnects with a pause, waits for
 * CONNACK. Returns false when this connection should give up. */
static bool mqtt_keep_up(struct sender *s, double *next_try)
{
    double now = tools_mono();
    int rc;
    if (s->refused || now > s->give_up) {
        if (!s->refused)
            fprintf(stderr, "m2k-pub: connection %u: giving up on %s:%d\n",
                    s->idx, s->f->o.host, s->f->o.port);
        return false;
    }
    if (!s->sock) {
        if (now < *next_try) {
            tools_sleep(*next_try - now);
            return true;
        }
        rc = s->ever_ready
                 ? mosquitto_reconnect(s->mosq)
                 : mosquitto_connect(s->mosq, s->f->o.host, s->f->o.port, 30);
        if (rc != MOSQ_ERR_SUCCESS) {
            if (s->complaints++ < 3)
                fprintf(stderr, "m2k-pub: connect %s:%d: %s\n", s->f->o.host,
                        s->f->o.port,
                        rc == MOSQ_ERR_ERRNO ? strerror(errno)
                                             : mosquitto_strerror(rc));
            *next_try = now + 0.5;
            return true;
        }
        s->sock = true;
    }
    if (!s->ready) {
        rc = mosquitto_loop(s->mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            s->sock = false;
    }
    return true;
}

static void mqtt_lost(struct sender *s, int rc)
{
    unsigned i;
    if (s->complaints++ < 3)
        fprintf(stderr, "m2k-pub: connection %u lost: %s\n", s->idx,
                mosquitto_strerror(rc));
    s->sock = s->ready = s->lost = false;
    s->give_up = tools_mono() + s->f->o.wait_s;
    if (s->f->o.qos > 0)
        return; /* libmosquitto resends QoS>0 messages on reconnect */
    for (i = 0; i < MID_SLOTS; i++)
        s->slots[i].used = 0;
    s->outstanding = 0;
}

static void *mqtt_main(void *arg)
{
    struct sender *s = arg;
    const struct opts *o = &s->f->o;
    double next_try = 0, drain_end = 0;
    int rc, ms;

    s->give_up = tools_mono() + o->wait_s;
    for (;;) {
        bool pub = publishing(s);
        if (!pub && drain_end == 0)
            drain_end = tools_mono() + o->wait_s;
        if (!pub && (s->outstanding == 0 || tools_mono() > drain_end))
            break;
        if (!s->ready) {
            if (!mqtt_keep_up(s, &next_try))
                break;
            continue;
        }
        ms = 0;
        if (pub) {
            double w = publish_burst(s);
            ms = w > 0 ? (int)(w * 1000.0 + 0.999) : 0;
        } else {
            ms = 50;
        }
        if (s->lost) {
            mqtt_lost(s, MOSQ_ERR_NO_CONN);
            continue;
        }
        rc = mosquitto_loop(s->mosq, ms, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            mqtt_lost(s, rc);
    }
    if (s->sock) {
        mosquitto_disconnect(s->mosq);
        mosquitto_loop(s->mosq, 100, 1);
    }
    return NULL;
}

static int kafka_run(struct sender *s)
{
    const struct opts *o = &s->f->o;
    char err[256], tmo[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int wait_ms = (int)(o->wait_s * 1000.0);

    snprintf(tmo, sizeof tmo, "%d", wait_ms < 30000 ? 30000 : wait_ms);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->kafka, err,
                          sizeof err) ||
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                          sizeof err) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err) ||
        rd_kafka_conf_set(conf, "client.id", "m2k-pub", err, sizeof err) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", tmo, err, sizeof err) ||
        /* the bridge's producer settings besides */
        (o->like_bridge &&
         (rd_kafka_conf_set(conf, "compression.codec", "lz4", err,
                            sizeof err) ||
          rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err,
                            sizeof err)))) {
        fprintf(stderr, "m2k-pub: kafka config: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, s);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) {
        fprintf(stderr, "m2k-pub: kafka: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    while (publishing(s)) {
        double w = 0;
        if (s->nfree == 0 || s->outstanding >= o->inflight) {
            rd_kafka_poll(s->rk, 10);
            continue;
        }
        w = publish_burst(s);
        rd_kafka_poll(s->rk, w > 0 ? (int)(w * 1000.0 + 0.999) : 0);
    }
    rd_kafka_flush(s->rk, wait_ms);
    if (s->outstanding) {
        rd_kafka_purge(s->rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(s->rk, 100);
    }
    rd_kafka_destroy(s->rk);
    return 0;
}

/* ---- setup ------------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs("usage: m2k-pub [-H host] [-p port] [-d devices] "
          "[-n msgs-per-device | -t seconds]\n"
          "        [-r total-rate/s, 0 = unlimited] [-q 0|1|2] "
          "[-s payload-bytes] [-T topic-template]\n"
          "        [-c connections] [-V 5|311] [-f proto|batch|text|fixed:STR] "
          "[--acked FILE] [--skip-seq N]\n"
          "        [--id-prefix P] [--start-seq N] "
          "[--kafka BROKERS --kafka-topic T]\n"
          "        [--inflight N] [--wait S] [--like-bridge GATEWAY-ID]\n"
          "Defaults: -H 127.0.0.1 -p 1883 -d 10 -n 100 -q 1 "
          "-T 'sensors/eu/temp/{device}' -f proto.\n"
          "Prints one JSON line; exit 0 when all sent was acknowledged, 1 if "
          "not, 2 on usage errors.\n",
          out);
}

enum {
    OPT_ACKED = 256,
    OPT_SKIP,
    OPT_PREFIX,
    OPT_START,
    OPT_KAFKA,
    OPT_KTOPIC,
    OPT_INFLIGHT,
    OPT_WAIT,
    OPT_LIKE
};

static int parse_opt(struct opts *o, int c, const char *a)
{
    uint64_t v = 0;
    switch (c) {
    case 'H':
        o->host = a;
        return 0;
    case 'p':
        if (tools_parse_u64(a, 1, 65535, &v))
            return -EINVAL;
        o->port = (int)v;
        return 0;
    case 'd':
        if (tools_parse_u64(a, 1, MAX_DEVICES, &v))
            return -EINVAL;
        o->devices = (unsigned)v;
        return 0;
    case 'n':
        return tools_parse_u64(a, 1, UINT64_MAX / 64, &o->per_device);
    case 't':
        return tools_parse_double(a, 1e7, &o->seconds);
    case 'r':
        return tools_parse_double(a, 1e9, &o->rate);
    case 'q':
        if (tools_parse_u64(a, 0, 2, &v))
            return -EINVAL;
        o->qos = (int)v;
        return 0;
    case 's':
        if (tools_parse_u64(a, 0, MAX_PAYLOAD - 64, &v))
            return -EINVAL;
        o->size = (size_t)v;
        return 0;
    case 'T':
        o->topic_tpl = a;
        return 0;
    case 'c':
        if (tools_parse_u64(a, 1, MAX_CONNS, &v))
            return -EINVAL;
        o->conns = (unsigned)v;
        return 0;
    case 'V':
        if (strcmp(a, "5") && strcmp(a, "311"))
            return -EINVAL;
        o->version = atoi(a);
        return 0;
    case 'f':
        if (!strcmp(a, "proto"))
            o->fmt = FMT_PROTO;
        else if (!strcmp(a, "batch"))
            o->fmt = FMT_BATCH;
        else if (!strcmp(a, "text"))
            o->fmt = FMT_TEXT;
        else if (!strncmp(a, "fixed:", 6)) {
            o->fmt = FMT_FIXED;
            o->fixed = a + 6;
        } else
            return -EINVAL;
        return 0;
    case OPT_ACKED:
        o->acked_path = a;
        return 0;
    case OPT_SKIP:
        return tools_parse_u64(a, 1, UINT64_MAX / 2, &o->skip_seq);
    case OPT_PREFIX:
        if (strlen(a) > MAX_PREFIX)
            return -EINVAL;
        o->prefix = a;
        return 0;
    case OPT_START:
        return tools_parse_u64(a, 1, UINT64_MAX / 4, &o->start_seq);
    case OPT_KAFKA:
        o->kafka = a;
        return 0;
    case OPT_KTOPIC:
        o->kafka_topic = a;
        return 0;
    case OPT_INFLIGHT:
        if (tools_parse_u64(a, 1, MAX_KAFKA_INFLIGHT, &v))
            return -EINVAL;
        o->inflight = (unsigned)v;
        return 0;
    case OPT_WAIT:
        return tools_parse_double(a, 1e6, &o->wait_s);
    case OPT_LIKE:
        o->like_bridge = a;
        return 0;
    default:
        return -EINVAL;
    }
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {
        {"acked", required_argument, NULL, OPT_ACKED},
        {"skip-seq", required_argument, NULL, OPT_SKIP},
        {"id-prefix", required_argument, NULL, OPT_PREFIX},
        {"start-seq", required_argument, NULL, OPT_START},
        {"kafka", required_argument, NULL, OPT_KAFKA},
        {"kafka-topic", required_argument, NULL, OPT_KTOPIC},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"wait", required_argument, NULL, OPT_WAIT},
        {"like-bridge", required_argument, NULL, OPT_LIKE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c, has_n = 0;

    *o = (struct opts){.host = "127.0.0.1",
                       .port = 1883,
                       .devices = 10,
                       .qos = 1,
                       .topic_tpl = "sensors/eu/temp/{device}",
                       .version = 311,
                       .prefix = "dev-",
                       .start_seq = 1,
                       .wait_s = 10};
    while ((c = getopt_long(argc, argv, "H:p:d:n:t:r:q:s:T:c:V:f:h", longs,
                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (c == 'n')
            has_n = 1;
        if (c == '?' || parse_opt(o, c, optarg)) {
            if (c != '?')
                fprintf(stderr, "m2k-pub: bad value for -%c: %s\n",
                        c < 256 ? c : '-', optarg);
            return -EINVAL;
        }
    }
    if (optind < argc || (has_n && o->seconds > 0)) {
        fprintf(stderr, "m2k-pub: %s\n",
                optind < argc ? "unexpected argument"
                              : "-n and -t exclude each other");
        return -EINVAL;
    }
    if (!!o->kafka != !!o->kafka_topic) {
        fprintf(stderr, "m2k-pub: --kafka needs --kafka-topic\n");
        return -EINVAL;
    }
    if (!has_n && o->seconds <= 0)
        o->per_device = 100;
    if (o->conns == 0)
        o->conns = o->devices < 4 ? o->devices : 4;
    if (o->conns > o->devices)
        o->conns = o->devices;
    if (o->kafka)
        o->conns = 1;
    if (o->inflight == 0)
        o->inflight = o->kafka ? 50000 : 1000;
    if (!o->kafka && o->inflight > MAX_MQTT_INFLIGHT)
        o->inflight = MAX_MQTT_INFLIGHT;
    return 0;
}

static int fleet_init(struct fleet *f)
{
    const struct opts *o = &f->o;
    unsigned per = o->fmt == FMT_BATCH ? BATCH_READINGS : 1, i;

    f->devs = calloc(o->devices, sizeof *f->devs);
    if (!f->devs)
        return -ENOMEM;
    for (i = 0; i < o->devices; i++) {
        struct device *d = &f->devs[i];
        snprintf(d->name, sizeof d->name, "%s%05u", o->prefix, i + 1);
        d->topic = tools_subst(o->topic_tpl, d->name);
        if (!d->topic)
            return -ENOMEM;
        d->next = o->start_seq;
        d->end =
            o->per_device ? o->start_seq + o->per_device * per : UINT64_MAX;
    }
    if (o->acked_path) {
        f->acked_f = fopen(o->acked_path, "w");
        if (!f->acked_f) {
            fprintf(stderr, "m2k-pub: %s: %s\n", o->acked_path,
                    strerror(errno));
            return -errno;
        }
    }
    return 0;
}

static int sender_init(struct sender *s, struct fleet *f, unsigned idx)
{
    const struct opts *o = &f->o;
    unsigned i;
    char id[MAX_PREFIX + 48];

    s->f = f;
    s->idx = idx;
    s->devs = calloc(o->devices / o->conns + 1, sizeof *s->devs);
    s->nslots = o->kafka ? o->inflight : MID_SLOTS;
    s->slots = calloc(s->nslots, sizeof *s->slots);
    s->p.buf = malloc(MAX_PAYLOAD);
    s->p.pad = malloc(MAX_PAYLOAD + 1);
    if (o->kafka)
        s->free_slots = calloc(s->nslots, sizeof *s->free_slots);
    if (!s->devs || !s->slots || !s->p.buf || !s->p.pad ||
        (o->kafka && !s->free_slots))
        return -ENOMEM;
    memset(s->p.pad, 'x', MAX_PAYLOAD);
    s->p.pad[MAX_PAYLOAD] = '\0';
    for (i = 0; i < s->nslots; i++) {
        s->slots[i].early_rc = -1;
        if (s->free_slots)
            s->free_slots[s->nfree++] = s->nslots - 1 - i;
    }
    for (i = idx; i < o->devices; i += o->conns)
        s->devs[s->live++] = i;
    tools_bucket_init(&s->bucket, o->rate / o->conns);
    if (o->kafka)
        return 0;
    snprintf(id, sizeof id, "%spub-%ld-%u", o->prefix, (long)getpid(), idx);
    s->mosq = mosquitto_new(id, true, s);
    if (!s->mosq)
        return -ENOMEM;
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         o->version == 5 ? MQTT_PROTOCOL_V5
                                         : MQTT_PROTOCOL_V311);
    /* v3.1.1: our cap; v5: libmosquitto also honours the broker's
     * receive-maximum from CONNACK. */
    mosquitto_max_inflight_messages_set(s->mosq, o->inflight);
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_publish_v5_callback_set(s->mosq, on_publish);
    return 0;
}

static void sender_fini(struct sender *s)
{
    if (s->mosq)
        mosquitto_destroy(s->mosq);
    free(s->devs);
    free(s->slots);
    free(s->free_slots);
    free(s->p.buf);
    free(s->p.pad);
}

static void report(const struct fleet *f, const struct tally *t, double secs)
{
    static const char *fmts[] = {"proto", "batch", "text"};
    const struct opts *o = &f->o;
    printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"seconds\":%.3f,\"rate\":%.1f,\"readings_sent\":%" PRIu64
           ",\"readings_acked\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"devices\":%u,\"connections\":%u,\"qos\":%d,\"format\":\"%s\""
           ",\"mode\":\"%s\"}\n",
           t->sent, t->acked, t->failed, secs,
           secs > 0 ? (double)t->acked / secs : 0.0, t->readings_sent,
           t->readings_acked, t->bytes, o->devices, o->conns, o->qos,
           fmts[o->fmt], o->kafka ? "kafka" : "mqtt");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct fleet f = {0};
    struct sender *ss = NULL;
    pthread_t *th = NULL;
    struct tally sum = {0};
    double t0, secs;
    unsigned i, started = 0;
    int rc = 1;

    if (parse_args(&f.o, argc, argv)) {
        usage(stderr);
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    mosquitto_lib_init();
    ss = calloc(f.o.conns, sizeof *ss);
    th = calloc(f.o.conns, sizeof *th);
    if (!ss || !th || fleet_init(&f))
        goto fail;
    for (i = 0; i < f.o.conns; i++)
        if (sender_init(&ss[i], &f, i))
            goto fail;
    t0 = tools_mono();
    if (f.o.seconds > 0)
        f.deadline = t0 + f.o.seconds;
    if (f.o.kafka) {
        if (kafka_run(&ss[0]))
            goto fail;
    } else {
        for (started = 0; started < f.o.conns; started++)
            if (pthread_create(&th[started], NULL, mqtt_main, &ss[started]))
                break;
        for (i = 0; i < started; i++)
            pthread_join(th[i], NULL);
    }
    secs = tools_mono() - t0;
    for (i = 0; i < f.o.conns; i++) {
        sum.sent += ss[i].t.sent;
        sum.acked += ss[i].t.acked;
        sum.failed += ss[i].t.failed;
        sum.readings_sent += ss[i].t.readings_sent;
        sum.readings_acked += ss[i].t.readings_acked;
        sum.bytes += ss[i].t.bytes;
    }
    report(&f, &sum, secs);
    rc = (sum.sent > 0 && sum.acked == sum.sent && sum.failed == 0) ? 0 : 1;
    if (sum.acked < sum.sent)
        fprintf(stderr,
                "m2k-pub: %" PRIu64 " of %" PRIu64
                " messages not acknowledged\n",
                sum.sent - sum.acked, sum.sent);
fail:
    if (f.acked_f && fclose(f.acked_f)) {
        fprintf(stderr, "m2k-pub: %s: %s\n", f.o.acked_path, strerror(errno));
        rc = 1;
    }
    for (i = 0; ss && i < f.o.conns; i++)
        sender_fini(&ss[i]);
    for (i = 0; f.devs && i < f.o.devices; i++)
        free(f.devs[i].topic);
    free(f.devs);
    free(ss);
    free(th);
    mosquitto_lib_cleanup();
    return rc;
}
