/*
 * m2k-verify — reads Kafka topics from the beginning and checks that every
 * reading got there once and in order.
 *
 * Each record value is decoded by sniffing it: the text format
 * ("device=..;seq=..;ts=..;"), a JSON object (protobuf canonical JSON of a
 * SensorReading or ReadingBatch: "deviceId", "seq" as number or string),
 * an iot.bridge.v1.Envelope with a payload (decoded again, one level), a
 * SensorReading or a ReadingBatch (each reading counts). Anything else is
 * "undecodable". The Envelope is tried before the bare messages because it
 * is the only one that carries field 7 as bytes next to a varint field 3;
 * proto3 wire types keep SensorReading and ReadingBatch apart (field 2 is a
 * varint in one and a sub-message in the other).
 *
 * Per device it keeps one 32-bit word per sequence number (0 = not seen,
 * else a hash of the first copy's m2k.id header) and, with --acked, one
 * byte saying the broker acknowledged it; both are capped in total. Order
 * is judged on first copies only: a duplicate re-delivery is a duplicate,
 * not also an order violation. Latency (record timestamp minus the
 * reading's timestamp_ms) goes to a fixed-size histogram.
 *
 * Output: one JSON line on stdout; "seconds" is the whole run, "rate" is
 * records per second between the first and the last record. Exit 0 when
 * nothing is missing, nothing is out of order and -e (if given) was
 * reached; 1 otherwise; 2 on usage errors or when Kafka cannot be reached.
 *
 * Secured brokers: -X name=value sets any librdkafka property (as kcat's
 * -X: security.protocol, ssl.ca.location, sasl.mechanism, sasl.username,
 * ...) and -F FILE reads name=value lines from a file (so a password need
 * not be on a command line, where `ps` shows it). A property whose value
 * is refused is named, never its value.
 */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "envelope.pb-c.h"
#include "telemetry.pb-c.h"
#include "test/tools/tools.h"

typedef Iot__Telemetry__V1__SensorReading Reading;
typedef Iot__Telemetry__V1__ReadingBatch Batch;
typedef Iot__Bridge__V1__Envelope Envelope;

#define MAX_DEVICES    (1u << 20)
#define MAX_SEQ_SLOTS  (64ull << 20) /* all devices together, 5 bytes each */
#define MAX_ITEMS      4096          /* readings in one record */
#define MAX_PARTS      8             /* partitions tracked per device */
#define DETAIL_DEVICES 20
#define DETAIL_SEQS    20
#define SEQ_CHUNK      4096u

struct item {
    const char *dev;
    size_t dlen;
    uint64_t seq;
    int64_t ts; /* 0 when the format carries none */
};

struct part_max {
    int32_t part;
    uint64_t max;
};

struct dev {
    char *name;
    uint32_t hash;
    uint64_t lo;   /* seq of ids[0] */
    size_t span;   /* entries in ids/acked */
    uint32_t *ids; /* 0 unseen; 1 seen without m2k.id; else id hash | 2 */
    uint8_t *acked;
    uint64_t max_seen, missing;
    struct part_max pm[MAX_PARTS];
    unsigned npm;
};

#define MAX_PROPS 32

struct ctx {
    /* options */
    const char *brokers, *topics, *regex, *acked_path, *group;
    char *props[MAX_PROPS]; /* "name=value" from -X and -F */
    size_t nprops;
    uint64_t expect;
    double idle_s, timeout_s;
    /* devices: open addressing on dev.hash */
    struct dev **tab;
    size_t tab_cap, ndev;
    uint64_t slots_used;
    /* the record being decoded */
    struct item items[MAX_ITEMS];
    size_t nitems;
    int32_t cur_part;
    uint32_t cur_id;
    int64_t cur_ts;
    /* counts */
    uint64_t records, readings, unique, dups, dup_same, dup_new, order,
        undecodable, untracked, missing, acked_lines;
    struct tools_hist lat;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* ---- devices and their sequence tables --------------------------------- */

static int tab_grow(struct ctx *c)
{
    size_t cap = c->tab_cap ? c->tab_cap * 2 : 1024, i, j;
    struct dev **t = calloc(cap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (i = 0; i < c->tab_cap; i++) {
        if (!c->tab[i])
            continue;
        for (j = c->tab[i]->hash & (cap - 1); t[j]; j = (j + 1) & (cap - 1))
            ;
        t[j] = c->tab[i];
    }
    free(c->tab);
    c->tab = t;
    c->tab_cap = cap;
    return 0;
}

/* The device named name[0..n), created on first sight; NULL past the cap
 * or out of memory. */
static struct dev *dev_get(struct ctx *c, const char *name, size_t n)
{
    uint32_t h = tools_fnv32(name, n);
    size_t i;
    struct dev *d;

    if (c->ndev * 2 >= c->tab_cap && c->ndev < MAX_DEVICES && tab_grow(c))
        return NULL;
    for (i = h & (c->tab_cap - 1); (d = c->tab[i]);
         i = (i + 1) & (c->tab_cap - 1))
        if (d->hash == h && strlen(d->name) == n && !memcmp(d->name, name, n))
            return d;
    if (c->ndev >= MAX_DEVICES)
        return NULL;
    d = calloc(1, sizeof *d);
    if (!d || !(d->name = strndup(name, n))) {
        free(d);
        return NULL;
    }
    d->hash = h;
    c->tab[i] = d;
    c->ndev++;
    return d;
}

/* Makes seq addressable in d's tables; -ENOSPC past the global cap. */
static int dev_reach(struct ctx *c, struct dev *d, uint64_t seq)
{
    uint64_t lo = d->lo, hi = d->lo + d->span, nlo, nhi;
    size_t nspan, shift;
    uint32_t *ids;
    uint8_t *ack;

    if (d->span && seq >= lo && seq < hi)
        return 0;
    nlo = d->span ? (seq < lo ? seq / SEQ_CHUNK * SEQ_CHUNK : lo)
                  : seq / SEQ_CHUNK * SEQ_CHUNK;
    nhi = d->span ? (seq >= hi ? seq + 1 : hi) : seq + 1;
    if (d->span && nhi > hi && nhi - nlo < 2 * d->span)
        nhi = nlo + 2 * d->span; /* grow geometrically upwards */
    nhi = (nhi + SEQ_CHUNK - 1) / SEQ_CHUNK * SEQ_CHUNK;
    if (nhi - nlo - d->span + c->slots_used > MAX_SEQ_SLOTS)
        return -ENOSPC;
    nspan = (size_t)(nhi - nlo);
    shift = d->span ? (size_t)(lo - nlo) : 0;
    ids = calloc(nspan, sizeof *ids);
    ack = calloc(nspan, 1);
    if (!ids || !ack) {
        free(ids);
        free(ack);
        return -ENOMEM;
    }
    if (d->span) {
        memcpy(ids + shift, d->ids, d->span * sizeof *ids);
        memcpy(ack + shift, d->acked, d->span);
    }
    free(d->ids);
    free(d->acked);
    c->slots_used += nspan - d->span;
    d->ids = ids;
    d->acked = ack;
    d->lo = nlo;
    d->span = nspan;
    return 0;
}

/* Counts one reading of a record from partition part. */
static void account(struct ctx *c, const struct item *it, int32_t part,
                    uint32_t id, int64_t rec_ts)
{
    struct dev *d = dev_get(c, it->dev, it->dlen);
    uint32_t *slot;
    unsigned i;

    c->readings++;
    if (it->ts > 0 && rec_ts > 0)
        tools_hist_add(&c->lat, rec_ts - it->ts);
    if (!d || dev_reach(c, d, it->seq)) {
        c->untracked++;
        return;
    }
    slot = &d->ids[it->seq - d->lo];
    if (*slot) {
        c->dups++;
        if (*slot != 1 && id != 1)
            (*(*slot == id ? &c->dup_same : &c->dup_new))++;
        return;
    }
    *slot = id;
    c->unique++;
    if (it->seq > d->max_seen)
        d->max_seen = it->seq;
    for (i = 0; i < d->npm && d->pm[i].part != part; i++)
        ;
    if (i == d->npm && d->npm < MAX_PARTS)
        d->pm[d->npm++] = (struct part_max){part, 0};
    if (i < d->npm) {
        if (it->seq < d->pm[i].max)
            c->order++;
        else
            d->pm[i].max = it->seq;
    }
}

/* ---- decoding ---------------------------------------------------------- */

static void item_add(struct ctx *c, const char *dev, size_t dlen, uint64_t seq,
                     int64_t ts)
{
    if (c->nitems < MAX_ITEMS && dlen > 0 && seq > 0)
        c->items[c->nitems++] = (struct item){dev, dlen, seq, ts};
}

/* "device=<id>;seq=<n>;ts=<ms>;" with anything after it. */
static int decode_text(struct ctx *c, const char *p, size_t n)
{
    const char *end = p + n, *dev = NULL;
    size_t dlen = 0;
    uint64_t seq = 0;
    int64_t ts = 0;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *eq = memchr(p, '=', (size_t)((semi ? semi : end) - p));
        if (!semi)
            semi = end;
        if (eq) {
            size_t kl = (size_t)(eq - p);
            if (kl == 6 && !memcmp(p, "device", 6)) {
                dev = eq + 1;
                dlen = (size_t)(semi - dev);
            } else if (kl == 3 && !memcmp(p, "seq", 3)) {
                seq = strtoull(eq + 1, NULL, 10);
            } else if (kl == 2 && !memcmp(p, "ts", 2)) {
                ts = strtoll(eq + 1, NULL, 10);
            }
        }
        p = semi + 1;
    }
    if (!dev || !dlen || !seq)
        return -EINVAL;
    item_add(c, dev, dlen, seq, ts);
    return 0;
}

static int j_object(struct ctx *c, struct tools_jp *j, int depth)
{
    const char *k, *dev = NULL;
    size_t kn, dlen = 0, first = c->nitems, i;
    int64_t seq = 0, ts = 0;

    if (depth > 2 || tools_jlit(j, '{'))
        return -EINVAL;
    if (!tools_jlit(j, '}'))
        return -EINVAL;
    do {
        if (tools_jstr(j, &k, &kn) || tools_jlit(j, ':'))
            return -EINVAL;
        if (tools_jkey(k, kn, "deviceId", "device_id")) {
            if (tools_jstr(j, &dev, &dlen))
                return -EINVAL;
        } else if (tools_jkey(k, kn, "seq", "seq")) {
            if (tools_jint(j, &seq))
                return -EINVAL;
        } else if (tools_jkey(k, kn, "timestampMs", "timestamp_ms")) {
            if (tools_jint(j, &ts))
                return -EINVAL;
        } else if (tools_jkey(k, kn, "readings", "readings")) {
            if (tools_jlit(j, '['))
                return -EINVAL;
            if (tools_jlit(j, ']')) {
                do {
                    if (j_object(c, j, depth + 1))
                        return -EINVAL;
                } while (!tools_jlit(j, ','));
                if (tools_jlit(j, ']'))
                    return -EINVAL;
            }
        } else if (tools_jskip(j, depth + 1)) {
            return -EINVAL;
        }
    } while (!tools_jlit(j, ','));
    if (tools_jlit(j, '}'))
        return -EINVAL;
    for (i = first; i < c->nitems; i++) /* batch readings may omit it */
        if (c->items[i].dlen == 0 || !c->items[i].dev) {
            c->items[i].dev = dev;
            c->items[i].dlen = dlen;
        }
    if (seq > 0)
        item_add(c, dev, dlen, (uint64_t)seq, ts);
    return c->nitems > first ? 0 : -EINVAL;
}

/* Accounts the pending items of the current record; call it while the
 * memory they point into is still alive. */
static void flush(struct ctx *c)
{
    size_t i;
    for (i = 0; i < c->nitems; i++)
        account(c, &c->items[i], c->cur_part, c->cur_id, c->cur_ts);
    c->nitems = 0;
}

static void item_from_reading(struct ctx *c, const Reading *r, const char *hint)
{
    const char *dev = r->device_id[0] ? r->device_id : hint;
    item_add(c, dev, dev ? strlen(dev) : 0, r->seq, r->timestamp_ms);
}

static int decode(struct ctx *c, const uint8_t *v, size_t n, int depth,
                  const char *hint);

static int decode_proto(struct ctx *c, const uint8_t *v, size_t n, int depth,
                        const char *hint)
{
    Reading *r;
    Batch *b;
    size_t i;
    int rc = -EINVAL;

    if (depth == 0) {
        Envelope *e = iot__bridge__v1__envelope__unpack(NULL, n, v);
        bool env = e &&
                   e->body_case == IOT__BRIDGE__V1__ENVELOPE__BODY_PAYLOAD &&
                   (e->arrival_ms || e->content_type[0]);
        if (env)
            rc = decode(c, e->payload.data, e->payload.len, depth + 1,
                        e->device_id[0] ? e->device_id : hint);
        if (e)
            iot__bridge__v1__envelope__free_unpacked(e, NULL);
        if (env)
            return rc;
    }
    r = iot__telemetry__v1__sensor_reading__unpack(NULL, n, v);
    if (r) {
        item_from_reading(c, r, hint);
        rc = c->nitems ? 0 : -EINVAL;
        flush(c);
        iot__telemetry__v1__sensor_reading__free_unpacked(r, NULL);
        return rc;
    }
    b = iot__telemetry__v1__reading_batch__unpack(NULL, n, v);
    if (!b)
        return -EINVAL;
    for (i = 0; i < b->n_readings; i++)
        item_from_reading(c, b->readings[i],
                          b->device_id[0] ? b->device_id : hint);
    rc = c->nitems ? 0 : -EINVAL;
    flush(c);
    iot__telemetry__v1__reading_batch__free_unpacked(b, NULL);
    return rc;
}

/* Decodes one value and accounts its readings; -EINVAL if none. */
static int decode(struct ctx *c, const uint8_t *v, size_t n, int depth,
                  const char *hint)
{
    struct tools_jp j = {(const char *)v, (const char *)v + n};
    size_t i;

    c->nitems = 0;
    if (n >= 7 && !memcmp(v, "device=", 7)) {
        if (decode_text(c, (const char *)v, n))
            return -EINVAL;
        flush(c);
        return 0;
    }
    tools_jws(&j);
    if (j.p < j.end && *j.p == '{') {
        if (j_object(c, &j, 0) || (tools_jws(&j), j.p != j.end)) {
            c->nitems = 0;
            return -EINVAL;
        }
        for (i = 0; i < c->nitems; i++)
            if (!c->items[i].dev && hint) {
                c->items[i].dev = hint;
                c->items[i].dlen = strlen(hint);
            }
        flush(c);
        return 0;
    }
    return decode_proto(c, v, n, depth, hint);
}

/* ---- input ------------------------------------------------------------- */

static void on_record(struct ctx *c, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_timestamp_type_t tt;
    const void *val = NULL;
    size_t vlen = 0;

    c->records++;
    c->cur_part = m->partition;
    c->cur_ts = rd_kafka_message_timestamp(m, &tt);
    c->cur_id = 1;
    if (!rd_kafka_message_headers(m, &hdrs) &&
        !rd_kafka_header_get_last(hdrs, "m2k.id", &val, &vlen) && val)
        c->cur_id = tools_fnv32(val, vlen) | 2u;
    if (!m->payload || decode(c, m->payload, m->len, 0, NULL))
        c->undecodable++;
}

/* Reads "<device> <seq>" lines into the acked tables. */
static int load_acked(struct ctx *c)
{
    FILE *f = fopen(c->acked_path, "r");
    char line[512];
    unsigned long lineno = 0;
    int rc = 0;

    if (!f) {
        fprintf(stderr, "m2k-verify: %s: %s\n", c->acked_path, strerror(errno));
        return -errno;
    }
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        uint64_t seq;
        struct dev *d;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (!sp || sp == line || tools_parse_u64(sp + 1, 1, UINT64_MAX, &seq)) {
            fprintf(stderr, "m2k-verify: %s:%lu: expected \"<device> <seq>\"\n",
                    c->acked_path, lineno);
            rc = -EINVAL;
            break;
        }
        d = dev_get(c, line, (size_t)(sp - line));
        if (!d || dev_reach(c, d, seq)) {
            fprintf(stderr, "m2k-verify: %s: too many devices or seqs\n",
                    c->acked_path);
            rc = -ENOSPC;
            break;
        }
        if (!d->acked[seq - d->lo])
            c->acked_lines++;
        d->acked[seq - d->lo] = 1;
    }
    fclose(f);
    return rc;
}

/* ---- Kafka ------------------------------------------------------------- */

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque)
{
    static unsigned complaints;
    (void)rk;
    (void)err;
    (void)opaque;
    if (complaints++ < 5)
        fprintf(stderr, "m2k-verify: kafka: %s\n", reason);
}

static rd_kafka_t *consumer_new(struct ctx *c)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256], group[64];
    const char *g = c->group;
    rd_kafka_t *rk;

    if (!g) {
        snprintf(group, sizeof group, "m2k-verify-%ld-%" PRId64, (long)getpid(),
                 tools_now_ms());
        g = group;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err,
                          sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", g, err, sizeof err) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err,
                          sizeof err) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                          sizeof err) ||
        rd_kafka_conf_set(conf, "topic.metadata.refresh.interval.ms", "1000",
                          err, sizeof err) ||
        rd_kafka_conf_set(conf, "log.connection.close", "false", err,
                          sizeof err)) {
        fprintf(stderr, "m2k-verify: kafka config: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; i < c->nprops; i++) {
        char *eq = strchr(c->props[i], '=');
        *eq = '\0';
        int bad = rd_kafka_conf_set(conf, c->props[i], eq + 1, err,
                                    sizeof err) != RD_KAFKA_CONF_OK;
        *eq = '=';
        if (bad) {
            fprintf(stderr, "m2k-verify: kafka property %.*s: %s\n",
                    (int)(eq - c->props[i]), c->props[i], err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "m2k-verify: kafka: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Partitions of topic: >0, 0 when it does not exist (yet), <0 on error. */
static int topic_parts(rd_kafka_t *rk, const char *topic, int tmo_ms)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    int n = 0;

    if (!rkt)
        return -EINVAL;
    err = rd_kafka_metadata(rk, 0, rkt, &md, tmo_ms);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        fprintf(stderr, "m2k-verify: metadata for %s: %s\n", topic,
                rd_kafka_err2str(err));
        return -EIO;
    }
    if (md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Assigns every partition of the -t topics at the beginning, waiting up to
 * the idle time for topics that do not exist yet. */
static int assign_topics(struct ctx *c, rd_kafka_t *rk, double deadline)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    char *list = strdup(c->topics), *save = NULL, *t;
    int rc = 0, n, p;

    if (!list) {
        rd_kafka_topic_partition_list_destroy(l);
        return -ENOMEM;
    }
    for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while ((n = topic_parts(rk, t, 5000)) == 0 && !stopping &&
               tools_mono() < deadline)
            tools_sleep(0.5);
        if (n < 0) {
            rc = -EIO;
            goto out;
        }
        if (n == 0)
            fprintf(stderr, "m2k-verify: topic %s does not exist\n", t);
        for (p = 0; p < n; p++)
            rd_kafka_topic_partition_list_add(l, t, p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    }
    if (rd_kafka_assign(rk, l)) {
        fprintf(stderr, "m2k-verify: cannot assign partitions\n");
        rc = -EIO;
    }
out:
    free(list);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int subscribe_regex(struct ctx *c, rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    size_t n = strlen(c->regex) + 2;
    char *re = malloc(n);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__NOENT;

    if (re) {
        /* librdkafka treats a subscription as a regex when it starts
         * with '^'. */
        snprintf(re, n, "%s%s", c->regex[0] == '^' ? "" : "^", c->regex);
        rd_kafka_topic_partition_list_add(l, re, RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(rk, l);
        if (err)
            fprintf(stderr, "m2k-verify: subscribe %s: %s\n", re,
                    rd_kafka_err2str(err));
    }
    free(re);
    rd_kafka_topic_partition_list_destroy(l);
    return err ? -EIO : 0;
}

/* Consumes until -e is reached and 1 s is quiet, --idle passes without a
 * record, or --timeout; returns seconds between first and last record. */
static double consume(struct ctx *c, rd_kafka_t *rk, double t0)
{
    double last = tools_mono(), first = 0, now;
    unsigned complaints = 0;
    rd_kafka_message_t *m;

    for (;;) {
        now = tools_mono();
        if (stopping || now - t0 > c->timeout_s || now - last >= c->idle_s)
            break;
        if (c->expect && c->readings + c->undecodable >= c->expect &&
            now - last >= 1.0)
            break;
        m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            on_record(c, m);
            last = tools_mono();
            if (first == 0)
                first = last;
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                   complaints++ < 5) {
            fprintf(stderr, "m2k-verify: %s\n", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    return first > 0 ? last - first : 0;
}

/* ---- report ------------------------------------------------------------ */

static int by_name(const void *a, const void *b)
{
    return strcmp((*(struct dev *const *)a)->name,
                  (*(struct dev *const *)b)->name);
}

/* Counts d's missing seqs (acknowledged but absent with --acked, else gaps
 * in 1..max); writes the first `limit` to out as a JSON list body. */
static uint64_t dev_missing(const struct ctx *c, const struct dev *d,
                            unsigned limit, FILE *out)
{
    uint64_t n = 0, s;
    size_t k;
    bool acked = c->acked_path != NULL;

    if (!acked) {
        for (s = 1; s < d->lo && s <= d->max_seen; s++, n++)
            if (out && n < limit)
                fprintf(out, "%s%" PRIu64, n ? "," : "", s);
    }
    for (k = 0; k < d->span; k++) {
        s = d->lo + k;
        if (acked ? !d->acked[k] : (s == 0 || s > d->max_seen))
            continue;
        if (d->ids[k])
            continue;
        if (out && n < limit)
            fprintf(out, "%s%" PRIu64, n ? "," : "", s);
        n++;
    }
    return n;
}

static void report(struct ctx *c, double secs, double active)
{
    struct dev **all = calloc(c->ndev ? c->ndev : 1, sizeof *all);
    size_t i, n = 0, shown = 0, seen_devs = 0, missing_devs = 0;

    for (i = 0; i < c->tab_cap; i++)
        if (c->tab[i] && all)
            all[n++] = c->tab[i];
    if (all)
        qsort(all, n, sizeof *all, by_name);
    for (i = 0; i < n; i++) {
        all[i]->missing = dev_missing(c, all[i], 0, NULL);
        c->missing += all[i]->missing;
        seen_devs += all[i]->max_seen > 0;
        missing_devs += all[i]->missing > 0;
    }
    printf("{\"records\":%" PRIu64 ",\"readings\":%" PRIu64
           ",\"devices\":%zu,\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64
           ",\"order_violations\":%" PRIu64 ",\"undecodable\":%" PRIu64
           ",\"dup_same_id\":%" PRIu64 ",\"dup_new_id\":%" PRIu64,
           c->records, c->readings, seen_devs, c->missing, c->dups, c->order,
           c->undecodable, c->dup_same, c->dup_new);
    printf(",\"unique\":%" PRIu64 ",\"untracked\":%" PRIu64
           ",\"missing_devices\":%zu",
           c->unique, c->untracked, missing_devs);
    if (c->acked_path)
        printf(",\"acked\":%" PRIu64, c->acked_lines);
    if (c->expect)
        printf(",\"expected\":%" PRIu64, c->expect);
    printf(",\"latency_ms\":{\"count\":%" PRIu64 ",\"p50\":%" PRId64
           ",\"p99\":%" PRId64 ",\"p999\":%" PRId64 ",\"max\":%" PRId64 "}",
           c->lat.n, tools_hist_pct(&c->lat, 0.50),
           tools_hist_pct(&c->lat, 0.99), tools_hist_pct(&c->lat, 0.999),
           c->lat.max);
    printf(",\"missing_detail\":[");
    for (i = 0; i < n && shown < DETAIL_DEVICES; i++) {
        if (!all[i]->missing)
            continue;
        printf("%s{\"device\":", shown++ ? "," : "");
        tools_json_str(stdout, all[i]->name, strlen(all[i]->name));
        printf(",\"missing\":%" PRIu64 ",\"seqs\":[", all[i]->missing);
        dev_missing(c, all[i], DETAIL_SEQS, stdout);
        printf("]}");
    }
    printf("],\"seconds\":%.3f,\"rate\":%.1f}\n", secs,
           active > 0 ? (double)c->records / active : 0.0);
    fflush(stdout);
    free(all);
}

/* ---- main -------------------------------------------------------------- */

/* One name=value property (copied); -1 when malformed or too many. */
static int add_prop(struct ctx *c, const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    if (!eq || eq == s || c->nprops == MAX_PROPS)
        return -1;
    if (!(c->props[c->nprops] = strndup(s, n)))
        return -1;
    c->nprops++;
    return 0;
}

/* -F FILE: name=value lines; blank lines and # comments skipped. */
static int add_prop_file(struct ctx *c, const char *path)
{
    char line[4096];
    int bad = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "m2k-verify: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (!bad && fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        if (n && line[0] != '#')
            bad = add_prop(c, line, n);
    }
    fclose(f);
    if (bad)
        fprintf(stderr, "m2k-verify: %s: expected name=value lines\n", path);
    return bad;
}

static void usage(FILE *out)
{
    fputs("usage: m2k-verify -b BROKERS (-t topic[,topic...] | -R regex) "
          "[--acked FILE]\n"
          "        [-e expect-count] [--idle S] [--timeout S] [--group G]\n"
          "        [-X name=value]... [-F properties-file]\n"
          "Reads the topics from the beginning and checks every device's "
          "sequence numbers.\n"
          "Prints one JSON line; exit 0 when nothing is missing or out of "
          "order, 1 if something\nis, 2 on usage errors or when Kafka cannot "
          "be reached. Defaults: --idle 5 --timeout 120.\n",
          out);
}

enum { OPT_ACKED = 256, OPT_IDLE, OPT_TIMEOUT, OPT_GROUP };

static int parse_args(struct ctx *c, int argc, char **argv)
{
    static const struct option longs[] = {
        {"acked", required_argument, NULL, OPT_ACKED},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"group", required_argument, NULL, OPT_GROUP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int o, bad = 0;

    c->idle_s = 5;
    c->timeout_s = 120;
    while ((o = getopt_long(argc, argv, "b:t:R:e:X:F:h", longs, NULL)) != -1) {
        switch (o) {
        case 'X':
            if (add_prop(c, optarg, strlen(optarg))) {
                fprintf(stderr,
                        "m2k-verify: -X wants name=value (at most %d)\n",
                        MAX_PROPS);
                bad = 1;
            }
            break;
        case 'F':
            bad |= add_prop_file(c, optarg) != 0;
            break;
        case 'b':
            c->brokers = optarg;
            break;
        case 't':
            c->topics = optarg;
            break;
        case 'R':
            c->regex = optarg;
            break;
        case 'e':
            bad |= tools_parse_u64(optarg, 1, UINT64_MAX, &c->expect);
            break;
        case OPT_ACKED:
            c->acked_path = optarg;
            break;
        case OPT_IDLE:
            bad |= tools_parse_double(optarg, 1e6, &c->idle_s);
            break;
        case OPT_TIMEOUT:
            bad |= tools_parse_double(optarg, 1e6, &c->timeout_s);
            break;
        case OPT_GROUP:
            c->group = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            bad = 1;
        }
    }
    if (bad || optind < argc || !c->brokers || !c->topics == !c->regex ||
        c->idle_s <= 0 || c->timeout_s <= 0) {
        fprintf(stderr, "m2k-verify: %s\n",
                bad                       ? "bad option value"
                : !c->brokers             ? "-b BROKERS is required"
                : !c->topics == !c->regex ? "give one of -t topics or -R regex"
                                          : "bad arguments");
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ctx *c = calloc(1, sizeof *c);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk = NULL;
    double t0 = tools_mono(), active, tmo;
    size_t i;
    int rc = 2;

    if (!c)
        return 2;
    if (parse_args(c, argc, argv)) {
        usage(stderr);
        goto fail;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (c->acked_path && load_acked(c))
        goto fail;
    rk = consumer_new(c);
    if (!rk)
        goto fail;
    /* A broker that is down must not hold us past --timeout. */
    tmo = c->timeout_s < 10 ? c->timeout_s : 10;
    err = rd_kafka_metadata(rk, 0, NULL, &md, (int)(tmo * 1000));
    if (err) {
        fprintf(stderr, "m2k-verify: cannot reach Kafka at %s: %s\n",
                c->brokers, rd_kafka_err2str(err));
        goto fail;
    }
    rd_kafka_metadata_destroy(md);
    if (c->topics ? assign_topics(c, rk, t0 + c->idle_s)
                  : subscribe_regex(c, rk))
        goto fail;
    active = consume(c, rk, t0);
    report(c, tools_mono() - t0, active);
    rc = (c->missing || c->order || (c->expect && c->unique < c->expect)) ? 1
                                                                          : 0;
    if (c->expect && c->unique < c->expect)
        fprintf(stderr,
                "m2k-verify: %" PRIu64 " distinct readings, expected %" PRIu64
                "\n",
                c->unique, c->expect);
fail:
    /* Nothing was committed; leaving the group politely could wait on a
     * broker that is gone. */
    if (rk)
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    for (i = 0; i < c->tab_cap; i++) {
        if (!c->tab[i])
            continue;
        free(c->tab[i]->name);
        free(c->tab[i]->ids);
        free(c->tab[i]->acked);
        free(c->tab[i]);
    }
    free(c->tab);
    free(c);
    return rc;
}
