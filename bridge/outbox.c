/*
 * outbox.c — spool → Kafka, and delivery reports → spool (see outbox.h).
 *
 * The spool is never called from inside a delivery report: reports only
 * fill the pending lists, and outbox_flush() applies them, so a peek's
 * pointers are never invalidated under drain's feet. A failed ack keeps
 * its ids for the next flush; should they fill up, everything in flight is
 * made eligible again (Kafka gets duplicates, the spool loses nothing). A
 * failed dead-letter move sends the record round again.
 */
#include "bridge/outbox.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "bridge/fat.h"
#include "bridge/log.h"
#include "bridge/record.h"

#define PEEK_MAX          512
#define HDRS_CAP          16384 /* header names of one record */
#define ACK_EVERY_MS      20    /* delivered records are acked in groups */
#define RETRY_HOLD_MIN_MS 500
#define RETRY_HOLD_MAX_MS 30000
#define DEAD_MAX          64
#define SMEAR_PROBE       64 /* normal+bulk in flight while the uplink is down */
#define SMEAR_FIRST_UP_MS 10000 /* a first up later: started in an outage */

struct outbox {
    struct spool *sp;
    struct kafka_out *k;
    struct outbox_opts o;
    struct outbox_counters n;
    int64_t inflight, inflight_bytes;
    int64_t lane_inflight[SPOOL_LANES]; /* records in flight, by lane */
    int backlog[SPOOL_LANES];           /* the lane's last peek found records */
    /* delivery outcomes waiting to be applied to the spool; a success
     * keeps its route and latency until its ack counts it */
    int64_t *acks, *retry, *ack_ms;
    int32_t *ack_route;
    size_t nacks, nretry, cap;
    int64_t dead_ids[DEAD_MAX];
    char dead_why[DEAD_MAX][96];
    size_t ndead;
    int64_t last_flush;
    int64_t ack_failures; /* acks failed in a row */
    int64_t hold_until;   /* no draining before (after transient errors) */
    int64_t hold_ms;
    /* the direct path's burst: ids d_first.., an outcome each */
    int64_t d_first;
    size_t d_n, d_sent, d_cap, d_orphans;
    unsigned char *d_out;
    int d_open, d_stopped;     /* d_stopped: a record was not sent */
    size_t d_why_at[DEAD_MAX]; /* reasons of records refused for good */
    char d_why[DEAD_MAX][96];
    size_t d_nwhy;
    struct fat *fat; /* large records, as chunks (fat.c) */
    /* load smearing (see outbox.h): the backlog is ids up to mark, its
     * normal and bulk lanes start at drain_at and spend tokens
     * (thousandths of a record) that drain_rate refills */
    int up, seen_up, was_down;
    int64_t mark, drain_at, tokens, tok_t;
    int64_t start_top; /* the spool's top when it opened with a backlog */
    int64_t opened_ms;
    int past[SPOOL_LANES]; /* the lane's backlog has gone out */
};

/* An outcome past the burst: spilled while with Kafka, now the spool's. */
#define OUTBOX_SPOOLED 9

int outbox_new(struct spool *sp, const struct outbox_opts *o,
               struct outbox **out)
{
    struct outbox *ob = calloc(1, sizeof *ob);
    *out = NULL;
    if (!ob)
        return -ENOMEM;
    ob->sp = sp;
    ob->o = *o;
    for (int l = 0; l < SPOOL_LANES; l++)
        ob->backlog[l] = 1; /* not known yet: owed its share */
    ob->up = -1;
    ob->start_top = spool_backlog(sp) > 0 ? spool_top(sp) : 0;
    ob->opened_ms = log_now_ms();
    /* delivered records wait for their ack group outside the window: the
     * lists grow when more wait (make_room) */
    ob->cap = (size_t)o->inflight_records + 1;
    static const double le[] = {PROM_LATENCY_BUCKETS};
    ob->acks = calloc(ob->cap, sizeof(int64_t));
    ob->retry = calloc(ob->cap, sizeof(int64_t));
    ob->ack_ms = calloc(ob->cap, sizeof(int64_t));
    ob->ack_route = calloc(ob->cap, sizeof(int32_t));
    ob->n.route_delivered = calloc(o->nroutes + 1, sizeof(int64_t));
    if (!ob->acks || !ob->retry || !ob->ack_ms || !ob->ack_route ||
        !ob->n.route_delivered || fat_new(sp, &ob->fat) ||
        prom_hist_init(&ob->n.latency, le, sizeof le / sizeof le[0])) {
        outbox_free(ob);
        return -ENOMEM;
    }
    *out = ob;
    return 0;
}

void outbox_free(struct outbox *ob)
{
    if (!ob)
        return;
    free(ob->acks);
    free(ob->retry);
    free(ob->d_out);
    free(ob->ack_ms);
    free(ob->ack_route);
    free(ob->n.route_delivered);
    fat_free(ob->fat);
    free(ob);
}

void outbox_set_producer(struct outbox *ob, struct kafka_out *k)
{
    ob->k = k;
}

static void apply(struct outbox *ob)
{
    if (ob->nacks) {
        if (spool_ack(ob->sp, ob->acks, ob->nacks) == 0) {
            if (ob->ack_failures)
                log_info("spool: acks work again (%" PRId64 " failed)",
                         ob->ack_failures);
            ob->n.delivered += (int64_t)ob->nacks;
            for (size_t i = 0; i < ob->nacks; i++) {
                int32_t r = ob->ack_route[i];
                if (r >= 0 && (size_t)r < ob->o.nroutes)
                    ob->n.route_delivered[r]++;
                prom_hist_observe(&ob->n.latency,
                                  (double)ob->ack_ms[i] / 1000.0);
            }
            ob->nacks = 0;
            ob->ack_failures = 0;
        } else if (ob->ack_failures++ % 500 == 0) {
            log_error("spool: cannot delete %zu delivered records, retrying "
                      "(draining waits): %s",
                      ob->nacks, spool_errmsg(ob->sp));
        }
    }
    for (size_t i = 0; i < ob->ndead; i++) {
        log_error("kafka refused record %" PRId64 " for good: %s",
                  ob->dead_ids[i], ob->dead_why[i]);
        if (spool_dead(ob->sp, ob->dead_ids[i], ob->dead_why[i]) == 0)
            ob->n.kafka_refused++;
        else
            spool_nack(ob->sp, &ob->dead_ids[i], 1);
    }
    ob->ndead = 0;
    if (ob->nretry) {
        spool_nack(ob->sp, ob->retry, ob->nretry);
        ob->nretry = 0;
    }
    struct fat_done fd;
    if (fat_apply(ob->fat, &fd) && fd.delivered) { /* one record */
        ob->n.delivered++;
        if (fd.route >= 0 && (size_t)fd.route < ob->o.nroutes)
            ob->n.route_delivered[fd.route]++;
        prom_hist_observe(&ob->n.latency, (double)fd.latency_ms / 1000.0);
    } else if (fd.dead) {
        ob->n.kafka_refused++;
    }
}

void outbox_flush(struct outbox *ob, int64_t now, int force)
{
    /* Acks are a transaction too: apply them in groups, every ACK_EVERY_MS
     * (or sooner when many wait, or anything else does). */
    if (force || now - ob->last_flush >= ACK_EVERY_MS ||
        ob->nacks >= ob->cap / 2 || ob->ndead || ob->nretry) {
        apply(ob);
        ob->last_flush = now;
    }
}

/* A record Kafka confirmed straight (the direct path): counted under its
 * route and in the latency histogram at once, as an ack would. */
static void confirmed(struct outbox *ob, const struct kafka_out_echo *echo)
{
    int64_t ms = log_wall_ms() - echo->recv_ms;
    if (echo->route >= 0 && (size_t)echo->route < ob->o.nroutes)
        ob->n.route_delivered[echo->route]++;
    prom_hist_observe(&ob->n.latency, (double)(ms > 0 ? ms : 0) / 1000.0);
}

/* A transient failure: back off before sending again, doubling up to a
 * cap, once per hold, not once per report (a window of reports that
 * failed together once held the drain for the full cap). */
static void retry_later(struct outbox *ob)
{
    ob->n.retries++;
    if (log_now_ms() >= ob->hold_until) {
        ob->hold_ms = ob->hold_ms ? ob->hold_ms * 2 : RETRY_HOLD_MIN_MS;
        if (ob->hold_ms > RETRY_HOLD_MAX_MS)
            ob->hold_ms = RETRY_HOLD_MAX_MS;
        ob->hold_until = log_now_ms() + ob->hold_ms;
    }
}

/* A report for a record of the direct burst, or one it left unspilled:
 * 1 if it was one. */
static int direct_report(struct outbox *ob, int64_t id,
                         enum kafka_out_outcome o, const char *reason,
                         const struct kafka_out_echo *echo)
{
    if (!(ob->d_open || ob->d_orphans) || id < ob->d_first ||
        id - ob->d_first >= (int64_t)ob->d_n)
        return 0;
    size_t i = (size_t)(id - ob->d_first);
    if (ob->d_out[i] != OUTBOX_PENDING)
        return 0; /* spooled since: the spool's record */
    if (o == KAFKA_OUT_OK) {
        ob->hold_ms = 0;
        confirmed(ob, echo);
    }
    if (!ob->d_open) { /* not spilled: the broker sends its message again */
        ob->d_orphans--;
        ob->d_out[i] = o == KAFKA_OUT_OK ? OUTBOX_OK : OUTBOX_RETRY;
        return 1;
    }
    switch (o) {
    case KAFKA_OUT_OK:
        ob->d_out[i] = OUTBOX_OK;
        break;
    case KAFKA_OUT_RETRY:
        ob->d_out[i] = OUTBOX_RETRY;
        retry_later(ob);
        break;
    case KAFKA_OUT_DEAD:
        ob->d_out[i] = OUTBOX_DEAD;
        if (ob->d_nwhy < DEAD_MAX) {
            ob->d_why_at[ob->d_nwhy] = i;
            snprintf(ob->d_why[ob->d_nwhy++], sizeof(ob->d_why[0]), "%s",
                     reason ? reason : "refused");
        }
        break;
    }
    return 1;
}

/* The lists hold a window's worth; should applying them fail with a
 * list full (the spool cannot delete for now), they grow rather than
 * drop an outcome. */
static int make_room(struct outbox *ob)
{
    if (ob->nacks < ob->cap && ob->nretry < ob->cap)
        return 0;
    size_t cap = ob->cap * 2;
    int64_t *a = realloc(ob->acks, cap * sizeof(int64_t));
    if (a)
        ob->acks = a;
    int64_t *r = a ? realloc(ob->retry, cap * sizeof(int64_t)) : NULL;
    if (r)
        ob->retry = r;
    int64_t *ms = r ? realloc(ob->ack_ms, cap * sizeof(int64_t)) : NULL;
    if (ms)
        ob->ack_ms = ms;
    int32_t *rt = ms ? realloc(ob->ack_route, cap * sizeof(int32_t)) : NULL;
    if (rt)
        ob->ack_route = rt;
    if (!rt)
        return -ENOMEM;
    ob->cap = cap;
    return 0;
}

void outbox_delivered(struct outbox *ob, int64_t id, enum kafka_out_outcome o,
                      const char *reason, const struct kafka_out_echo *echo)
{
    int64_t ms;
    ob->inflight--;
    ob->inflight_bytes -= (int64_t)echo->bytes;
    if (echo->lane >= 0 && echo->lane < SPOOL_LANES)
        ob->lane_inflight[echo->lane]--;
    if (echo->lane == FAT_LANE) { /* a chunk of a large record */
        fat_report(ob->fat, id, o, reason, echo);
        if (o == KAFKA_OUT_OK) {
            ob->n.chunks++;
            ob->hold_ms = 0;
        } else if (o == KAFKA_OUT_RETRY)
            retry_later(ob);
        return;
    }
    if (direct_report(ob, id, o, reason, echo))
        return;
    if (ob->nacks == ob->cap || ob->nretry == ob->cap || ob->ndead == DEAD_MAX)
        apply(ob);
    if (make_room(ob)) {
        /* no memory for the outcome: the record stays in the spool, in
         * flight until the next rewind (a new producer, a restart), and
         * is sent again then: a duplicate under the same id, no loss */
        log_error("out of memory keeping a delivery outcome: record %" PRId64
                  " will be sent again",
                  id);
        return;
    }
    switch (o) {
    case KAFKA_OUT_OK:
        ms = log_wall_ms() - echo->recv_ms;
        ob->ack_ms[ob->nacks] = ms > 0 ? ms : 0;
        ob->ack_route[ob->nacks] = echo->route;
        ob->acks[ob->nacks++] = id;
        ob->hold_ms = 0;
        break;
    case KAFKA_OUT_RETRY:
        ob->retry[ob->nretry++] = id;
        retry_later(ob);
        break;
    case KAFKA_OUT_DEAD:
        ob->dead_ids[ob->ndead] = id;
        snprintf(ob->dead_why[ob->ndead], sizeof(ob->dead_why[0]), "%s",
                 reason ? reason : "refused");
        ob->ndead++;
        break;
    }
}

/* One peeked record to the producer: 0 (in flight), -EINVAL (refused for
 * good, why set) or another error (put back). */
static int produce(struct outbox *ob, const struct spool_rec *r, char *why,
                   size_t whylen)
{
    struct record_hdr rh[RECORD_MAX_HDRS];
    struct kafka_out_hdr hdrs[RECORD_MAX_HDRS + 1];
    char names[HDRS_CAP], idbuf[48];
    int nh = record_hdrs_decode(r->headers, r->headers_len, rh, RECORD_MAX_HDRS,
                                names, sizeof(names));
    if (nh < 0)
        nh = 0; /* cannot happen for blobs we wrote; send bare */
    for (int i = 0; i < nh; i++)
        hdrs[i] = (struct kafka_out_hdr){rh[i].name, rh[i].value, rh[i].len};
    spool_id_str(ob->sp, r->id, idbuf, sizeof(idbuf));
    hdrs[nh++] = (struct kafka_out_hdr){"m2k.id", idbuf, strlen(idbuf)};
    /* The window counts what librdkafka holds: key, value and headers. */
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
        .echo = {.bytes = r->key_len + r->payload_len + r->headers_len +
                          strlen(idbuf),
                 .recv_ms = r->recv_ms,
                 .route = r->route,
                 .lane = r->lane},
    };
    int rc = kafka_out_produce(ob->k, &km, why, whylen);
    if (rc == 0) {
        ob->inflight++;
        if (r->lane >= 0 && r->lane < SPOOL_LANES)
            ob->lane_inflight[r->lane]++;
        ob->inflight_bytes += (int64_t)km.echo.bytes;
    }
    return rc;
}

/* The part of the window lane l may take now: what is free, less what
 * the lanes after it in priority are owed (each with a backlog is owed its
 * share of the window, less what it has in flight) and, for normal and
 * bulk, the fast lane's share, kept free for live data. */
static int64_t lane_room(const struct outbox *ob, int l, int64_t room)
{
    static const int after[SPOOL_LANES][2] = {
        [SPOOL_LANE_FAST] = {SPOOL_LANE_NORMAL, SPOOL_LANE_BULK},
        [SPOOL_LANE_NORMAL] = {SPOOL_LANE_BULK, SPOOL_LANE_FAST},
        [SPOOL_LANE_BULK] = {-1, SPOOL_LANE_FAST},
    };
    for (int i = 0; i < 2; i++) {
        int m = after[l][i];
        if (m < 0 || (m != SPOOL_LANE_FAST && !ob->backlog[m]))
            continue;
        int64_t owed =
            ob->o.inflight_records / (m == SPOOL_LANE_NORMAL ? 4 : 8) -
            ob->lane_inflight[m];
        if (owed > 0)
            room -= owed;
    }
    return room;
}

/* The fat lane's share of the byte window (a quarter), less what it has
 * in flight: owed to it while it has a large record to send, so the other
 * lanes leave it room and it never starves; it never takes more, so a 20
 * MB record never holds up small ones. */
static int64_t fat_owed(const struct outbox *ob)
{
    int64_t owed = ob->o.inflight_bytes / 4 - fat_inflight_bytes(ob->fat);
    return fat_busy(ob->fat) && owed > 0 ? owed : 0;
}

/* The byte window the other lanes (and the direct path) see, against
 * ob->inflight_bytes: with a large record to send, a quarter is the fat
 * lane's and its chunks count only against that quarter. Its one chunk
 * always in flight may be more than the quarter (more than the whole
 * window, even): it never eats into the rest, so small records never
 * wait for a large one. */
static int64_t others_window(const struct outbox *ob)
{
    int64_t w = ob->o.inflight_bytes;
    if (!fat_busy(ob->fat))
        return w;
    return w - w / 4 + fat_inflight_bytes(ob->fat);
}

static void drain_fat(struct outbox *ob)
{
    int64_t recs, bytes;
    int64_t room = ob->o.inflight_records - ob->inflight;
    if (fat_drain(ob->fat, ob->k, room, fat_owed(ob), &recs, &bytes) < 0)
        log_error("spool: cannot read a large record: %s",
                  spool_errmsg(ob->sp));
    ob->inflight += recs;
    ob->inflight_bytes += bytes;
}

/* --- load smearing ------------------------------------------------------- */

static int smearing(const struct outbox *ob)
{
    return ob->o.drain_rate > 0 || ob->o.drain_delay_ms > 0;
}

/* Tokens at now, at most a tenth of a second's worth (one record at least):
 * the cap is a rate, not a budget saved up while held. */
static int64_t tokens_at(const struct outbox *ob, int64_t now)
{
    int64_t cap = ob->o.drain_rate * 100 > 1000 ? ob->o.drain_rate * 100 : 1000;
    int64_t t = ob->tokens;
    if (now > ob->tok_t)
        t += (now - ob->tok_t) * ob->o.drain_rate;
    return t < cap ? t : cap;
}

/* A backlog is held now (lane_past clears the mark once both lanes are
 * past it; nothing is held while the uplink is down: the probe runs). */
static int smear_active(const struct outbox *ob)
{
    return ob->mark && ob->up == 1;
}

static int backlog_held(const struct outbox *ob, int l)
{
    return l != SPOOL_LANE_FAST && ob->mark && !ob->past[l];
}

/* Lane l's backlog has gone out (or it had none): its records from now on
 * are live; with both lanes past, nothing is held. */
static void lane_past(struct outbox *ob, int l)
{
    ob->past[l] = 1;
    if (ob->mark && ob->past[SPOOL_LANE_NORMAL] && ob->past[SPOOL_LANE_BULK]) {
        log_info("kafka: the backlog of the outage has gone out; the drain "
                 "is no longer held");
        ob->mark = 0;
    }
}

/* 1 while lane l still has a record of the backlog waiting (in flight
 * ones are not: a lane whose backlog is all with Kafka holds nothing). */
static int lane_waits(struct outbox *ob, int l)
{
    int64_t next = spool_lane_next(ob->sp, l);
    if (next < 0)
        return 1; /* cannot tell: as before */
    if (next == 0 || next > ob->mark) {
        lane_past(ob, l);
        return 0;
    }
    return 1;
}

/* Narrows lane l's room by the smearing rules; 1 when the lane's backlog
 * is being held or capped (what is peeked is then spent by
 * smear_spent). */
static int smear_limit(struct outbox *ob, int l, int64_t now, int64_t *room)
{
    if (l == SPOOL_LANE_FAST || !smearing(ob))
        return 0;
    if (ob->up != 1) { /* a probe finds the uplink back, no burst follows */
        int64_t left = SMEAR_PROBE - ob->lane_inflight[SPOOL_LANE_NORMAL] -
                       ob->lane_inflight[SPOOL_LANE_BULK];
        if (*room > left)
            *room = left;
        return 0;
    }
    if (!backlog_held(ob, l) || !lane_waits(ob, l))
        return 0;
    if (now < ob->drain_at) {
        *room = 0;
        return 1;
    }
    if (ob->o.drain_rate > 0) {
        ob->tokens = tokens_at(ob, now);
        ob->tok_t = now;
        if (*room > ob->tokens / 1000)
            *room = ob->tokens / 1000;
    }
    return 1;
}

static void smear_spent(struct outbox *ob, int l, const struct spool_rec *r,
                        int n)
{
    int64_t spent = 0;
    for (int i = 0; i < n; i++)
        if (r[i].id <= ob->mark)
            spent++;
    if (ob->o.drain_rate > 0)
        ob->tokens -= spent * 1000;
    /* past the backlog: live records now (a peek of none says nothing:
     * the spool may have refused for the in-flight cap) */
    if (n > 0 && spent < n)
        lane_past(ob, l);
}

static void draw_start(struct outbox *ob, int64_t now)
{
    int64_t d = ob->o.drain_delay_ms;
    uint64_t r = 0;
    /* from the kernel: gateways that boot together after a site's power
     * cut, with no clock yet, must not draw the same delay */
    if (d > 0 && getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint64_t)random() << 31 ^ (uint64_t)random();
    ob->drain_at = now + (d > 0 ? (int64_t)(r % (uint64_t)(d + 1)) : 0);
    if (ob->tok_t < ob->drain_at) { /* the cap starts empty at the start */
        ob->tokens = 0;
        ob->tok_t = ob->drain_at;
    }
}

void outbox_uplink(struct outbox *ob, int up, int64_t now)
{
    ob->up = up;
    if (up == 0)
        ob->was_down = 1;
    if (up != 1)
        return;
    /* back after an outage, or first up since the start; not a new
     * producer's first report (a reload): -1 then 1 */
    int back = ob->was_down || !ob->seen_up;
    /* after a start, the backlog is what the spool held when it opened
     * (what a restart or a power cut left): records of this run are not
     * held, or every start would hold its first second's data; unless
     * the uplink took long to come up (a start during an outage) */
    int64_t mark = ob->seen_up || now - ob->opened_ms > SMEAR_FIRST_UP_MS
                       ? spool_top(ob->sp)
                       : ob->start_top;
    ob->seen_up = 1;
    ob->was_down = 0;
    if (!back || !smearing(ob) || spool_backlog(ob->sp) == 0 || !mark)
        return;
    int again = ob->mark != 0; /* a flap while held: the start stays */
    ob->mark = mark > ob->mark ? mark : ob->mark;
    ob->past[SPOOL_LANE_NORMAL] = ob->past[SPOOL_LANE_BULK] = 0;
    int wn = lane_waits(ob, SPOOL_LANE_NORMAL);
    int wb = lane_waits(ob, SPOOL_LANE_BULK);
    if ((!wn && !wb) || again)
        return; /* only the fast or the fat lane has a backlog; or held */
    ob->tokens = 0;
    ob->tok_t = now;
    draw_start(ob, now);
    char rate[48] = "no cap";
    if (ob->o.drain_rate > 0)
        snprintf(rate, sizeof rate, "at most %" PRId64 " records/s",
                 ob->o.drain_rate);
    log_info(
        "kafka: the backlog (records up to %" PRId64
        ") starts draining in %.1f s (at random within kafka.drain_delay), "
        "%s (kafka.drain_rate); the fast lane is not held",
        ob->mark, (double)(ob->drain_at - now) / 1000.0, rate);
}

void outbox_set_smearing(struct outbox *ob, int64_t rate, int64_t delay_ms,
                         int64_t now)
{
    int redraw = delay_ms != ob->o.drain_delay_ms;
    if (now >= ob->tok_t) { /* not before a held start: no saved budget */
        ob->tokens = tokens_at(ob, now);
        ob->tok_t = now;
    }
    ob->o.drain_rate = rate;
    ob->o.drain_delay_ms = delay_ms;
    if (!smearing(ob))
        ob->mark = 0;
    else if (redraw && ob->mark && now < ob->drain_at)
        draw_start(ob, now);
}

void outbox_smearing(const struct outbox *ob, int64_t now,
                     struct outbox_smearing *st)
{
    int held = smear_active(ob);
    *st = (struct outbox_smearing){
        .held_ms = held && now < ob->drain_at ? ob->drain_at - now : 0,
        .capped = held && now >= ob->drain_at && ob->o.drain_rate > 0,
        .mark = ob->mark,
    };
}

void outbox_drain(struct outbox *ob, int64_t now)
{
    static const int order[SPOOL_LANES] = {SPOOL_LANE_FAST, SPOOL_LANE_NORMAL,
                                           SPOOL_LANE_BULK};
    struct spool_rec recs[PEEK_MAX];
    int64_t refused[8], putback[PEEK_MAX];
    char refused_why[8][256], why[256];
    size_t nrefused = 0, nputback = 0;

    if (!ob->k || now < ob->hold_until || ob->ack_failures)
        return;
    drain_fat(ob);
    int64_t win_bytes = others_window(ob);
    /* Each lane first-in first-out, fast before normal before bulk, in
     * a window they share. The window is what librdkafka holds: a
     * delivered record whose ack waits for the next group (ACK_EVERY_MS)
     * no longer counts (it did once, and a drain then stood still for
     * most of every ack period: 0.21x librdkafka's own rate). */
    for (int li = 0; li < SPOOL_LANES && !nputback && !nrefused; li++) {
        int l = order[li];
        for (;;) {
            int64_t room =
                lane_room(ob, l, ob->o.inflight_records - ob->inflight);
            int held = smear_limit(ob, l, now, &room);
            if (room <= 0 || ob->inflight_bytes >= win_bytes)
                break;
            int n = spool_peek_lane(ob->sp, l, recs,
                                    (size_t)(room < PEEK_MAX ? room : PEEK_MAX),
                                    (size_t)(win_bytes - ob->inflight_bytes));
            ob->backlog[l] = n > 0;
            if (held)
                smear_spent(ob, l, recs, n);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++) {
                struct spool_rec *r = &recs[i];
                if (nputback) { /* nothing overtakes a record put back */
                    putback[nputback++] = r->id;
                    continue;
                }
                int rc = produce(ob, r, why, sizeof(why));
                if (rc == -EINVAL && nrefused < 8) {
                    snprintf(refused_why[nrefused], sizeof(refused_why[0]),
                             "%s", why);
                    refused[nrefused++] = r->id;
                    log_error("kafka refused record %" PRId64 " to %s: %s",
                              r->id, r->topic, why);
                } else if (rc) {
                    putback[nputback++] = r->id; /* queue full: later */
                }
            }
            if (nputback || nrefused)
                break;
        }
    }
    /* The peeked records are gone now: the spool may be called again. */
    for (size_t i = 0; i < nrefused; i++)
        if (spool_dead(ob->sp, refused[i], refused_why[i]) == 0)
            ob->n.kafka_refused++;
        else { /* in line again, in order, after a pause */
            spool_nack(ob->sp, &refused[i], 1);
            ob->hold_until = now + RETRY_HOLD_MIN_MS;
        }
    if (nputback)
        spool_nack(ob->sp, putback, nputback);
}

void outbox_reset(struct outbox *ob)
{
    apply(ob);
    spool_rewind(ob->sp);
    ob->inflight = ob->inflight_bytes = 0;
    memset(ob->lane_inflight, 0, sizeof(ob->lane_inflight));
    fat_reset(ob->fat);
    /* the purge of the old producer is no delivery failure: the new one
     * starts at once */
    ob->hold_until = ob->hold_ms = 0;
}

/* --- the direct path ------------------------------------------------------ */

int outbox_direct_begin(struct outbox *ob, int64_t first, size_t n)
{
    if (ob->d_open || ob->d_orphans)
        return -EBUSY;
    if (n > ob->d_cap) {
        unsigned char *p = realloc(ob->d_out, n);
        if (!p)
            return -ENOMEM;
        ob->d_out = p;
        ob->d_cap = n;
    }
    memset(ob->d_out, OUTBOX_UNSENT, n);
    ob->d_first = first;
    ob->d_n = n;
    ob->d_sent = ob->d_nwhy = 0;
    ob->d_open = 1;
    ob->d_stopped = 0;
    return 0;
}

int outbox_direct_send(struct outbox *ob, const struct spool_rec *r, char *why,
                       size_t whylen)
{
    if (!ob->d_open || ob->d_sent >= ob->d_n ||
        r->id != ob->d_first + (int64_t)ob->d_sent)
        return -ERANGE; /* a caller's bug: not the next of the burst */
    size_t i = ob->d_sent++;
    /* Nothing overtakes a record that was not sent: it goes through the
     * spool, and so do all after it. */
    int rc = ob->k && !ob->d_stopped ? produce(ob, r, why, whylen) : -EAGAIN;
    if (rc == 0) {
        ob->d_out[i] = OUTBOX_PENDING;
    } else if (rc == -EINVAL) {
        ob->d_out[i] = OUTBOX_DEAD;
        if (ob->d_nwhy < DEAD_MAX) {
            ob->d_why_at[ob->d_nwhy] = i;
            snprintf(ob->d_why[ob->d_nwhy++], sizeof(ob->d_why[0]), "%s", why);
        }
    } else {
        ob->d_stopped = 1;
    }
    return rc;
}

void outbox_direct_state(const struct outbox *ob,
                         struct outbox_direct_state *st)
{
    *st = (struct outbox_direct_state){.n = ob->d_open ? ob->d_n : 0};
    for (size_t i = 0; i < st->n; i++)
        switch (ob->d_out[i]) {
        case OUTBOX_UNSENT:
            st->unsent++;
            break;
        case OUTBOX_PENDING:
            st->pending++;
            break;
        case OUTBOX_OK:
            st->ok++;
            break;
        case OUTBOX_RETRY:
            st->retry++;
            break;
        case OUTBOX_DEAD:
            st->dead++;
            break;
        }
}

enum outbox_direct_outcome outbox_direct_outcome(const struct outbox *ob,
                                                 size_t i)
{
    return i < ob->d_n ? (enum outbox_direct_outcome)ob->d_out[i]
                       : OUTBOX_UNSENT;
}

/* Why record i of the burst was refused. */
static const char *direct_why(const struct outbox *ob, size_t i)
{
    for (size_t k = 0; k < ob->d_nwhy; k++)
        if (ob->d_why_at[k] == i)
            return ob->d_why[k];
    return "refused by Kafka";
}

void outbox_direct_end(struct outbox *ob, const unsigned char *spilled)
{
    if (!ob->d_open)
        return;
    for (size_t i = 0; i < ob->d_n; i++) {
        int mine = spilled && spilled[i];
        if (ob->d_out[i] == OUTBOX_PENDING) {
            if (mine)
                ob->d_out[i] = OUTBOX_SPOOLED;
            else
                ob->d_orphans++;
        } else if (ob->d_out[i] == OUTBOX_DEAD && mine) {
            if (ob->ndead == DEAD_MAX)
                apply(ob);
            ob->dead_ids[ob->ndead] = ob->d_first + (int64_t)i;
            snprintf(ob->dead_why[ob->ndead++], sizeof(ob->dead_why[0]), "%s",
                     direct_why(ob, i));
        }
    }
    ob->d_open = 0;
}

int outbox_direct_busy(const struct outbox *ob)
{
    return ob->d_open || ob->d_orphans;
}

int64_t outbox_room(const struct outbox *ob, int64_t *bytes)
{
    *bytes = others_window(ob) - ob->inflight_bytes;
    return ob->o.inflight_records - ob->inflight - (int64_t)ob->nacks;
}

int64_t outbox_inflight(const struct outbox *ob)
{
    return ob->inflight;
}

int64_t outbox_inflight_chunks(const struct outbox *ob)
{
    return fat_inflight(ob->fat);
}

int outbox_wait_ms(const struct outbox *ob, int64_t now, int max)
{
    int wait = max;
    if (ob->hold_until > now && ob->hold_until - now < wait)
        wait = (int)(ob->hold_until - now);
    if ((ob->nacks || fat_busy(ob->fat)) && wait > ACK_EVERY_MS)
        wait = ACK_EVERY_MS; /* pending acks are applied soon */
    int64_t tokens = smear_active(ob) ? tokens_at(ob, now) : 0;
    if (smear_active(ob)) {
        int64_t w = -1; /* the held backlog's next turn */
        if (now < ob->drain_at)
            w = ob->drain_at - now;
        else if (ob->o.drain_rate > 0 && tokens < 1000) {
            w = (1000 - tokens + ob->o.drain_rate - 1) / ob->o.drain_rate;
            if (w < 10)
                w = 10; /* a turn per record at 2,000/s costs a loop each */
        }
        if (w >= 0 && w < wait)
            wait = w < 1 ? 1 : (int)w;
    }
    return wait;
}

const struct outbox_counters *outbox_counters(const struct outbox *ob)
{
    return &ob->n;
}
