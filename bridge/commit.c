/*
 * commit.c — how a burst read from MQTT becomes durable before its PUBACKs
 * go out: two paths, and the switch between them.
 *
 *   direct  records ──> Kafka ──confirmed──> PUBACKs         (no write)
 *                         │ not within spool.direct_wait, refused,
 *                         │ the uplink lost, or shutting down
 *                         └──> spill: the unconfirmed records into the
 *                              spool, under the same ids ──> PUBACKs
 *   spool   group commit into the spool ──> PUBACKs; the outbox drains it
 *
 * The promise is the same on both: a message is acknowledged to the broker
 * only once Kafka has confirmed every record it became (acks=all) or the
 * spool has committed the rest. While a direct burst waits, MQTT is not
 * read (the broker keeps what comes next, within the receive maximum), so
 * the PUBACKs that go out are always those of messages that are durable.
 *
 * When: a burst goes direct only while spool.mode is direct, the uplink is
 * known to be up (a delivery succeeded since the producer started or the
 * uplink was last lost: a new producer's first record waits for its
 * producer id and metadata, longer than a direct burst should hold its
 * PUBACKs), nothing waits in the spool or is in flight from it
 * (so records of one key reach Kafka in order across the switch, both
 * ways; the fat lane's large records are a queue of their own and do not
 * count), and the direct path is not backing off after a spill. A spill
 * turns it off for a second, doubling while spills keep coming within a
 * minute of turning it on again (up to a minute): Kafka slower than the
 * deadline would otherwise cost a full deadline per burst.
 *
 * Ids: direct records carry ids from blocks reserved in the spool (one
 * small fsync'ed write per DIRECT_BLOCK records), so m2k.id is unique and
 * a spilled record keeps the id it was sent with. A block is given up when
 * the spool path puts records (they take ids above it), so ids grow with
 * time. What the direct path cannot keep is the id of a message whose
 * PUBACK was held when the process died: the broker sends it again and it
 * gets a new id (README, "Durability").
 *
 * Counting, as for the spool path: a message is counted once, when it is
 * durable (stored, spilled or confirmed) or lost; records Kafka confirmed
 * directly are counted as `direct` when the report arrives.
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/log.h"

_Static_assert((int)CONF_LANE_NORMAL == (int)SPOOL_LANE_NORMAL &&
                   (int)CONF_LANE_FAST == (int)SPOOL_LANE_FAST &&
                   (int)CONF_LANE_BULK == (int)SPOOL_LANE_BULK,
               "routes[].lane is the spool's lane");

#define DIRECT_BLOCK      65536 /* ids reserved at once */
#define DIRECT_OFF_MIN_MS 1000
#define DIRECT_OFF_MAX_MS 60000
#define DIRECT_CALM_MS    60000 /* a direct stretch this long resets it */

/* One spool put can hold records first..first+n of the batch. */
int br_fits(void *ud, size_t first, size_t n)
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
            .lane = v.route >= 0 && (size_t)v.route < br->c->nroutes
                        ? br->c->routes[v.route].lane
                        : SPOOL_LANE_NORMAL,
        };
    }
    return spool_fits(br->sp, br->put + first, n);
}

/* Counts a dead letter by its kind. */
static void count_dead(struct stats *n, int kind)
{
    n->dead_lettered++;
    switch ((enum convert_kind)kind) {
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

/* Test hooks for the two windows around a commit. With
 * MQTT2KAFKA_FAULT=crash-before-commit[@N] the daemon kills itself after
 * reading a burst (once N messages were received) and before committing
 * it — on the direct path: with the records handed to the producer, the
 * PUBACKs held: the broker must redeliver the burst. With
 * crash-after-commit[@N] it dies after the commit (direct: after Kafka
 * confirmed all) and before the PUBACKs are written: the broker
 * redelivers messages that are already durable. */
void br_fault_point(struct bridge *br, int after_commit)
{
    if (br->fault_after >= 0 && br->fault_after_commit == after_commit &&
        br->read >= br->fault_after) {
        log_warn("fault injection: crash %s commit (%" PRId64 " read)",
                 after_commit ? "after" : "before", br->read);
        raise(SIGKILL);
    }
}

/* A message of the burst is durable: count it, once, on success. spooled:
 * how many of its records the spool took; direct: how many Kafka had
 * confirmed straight. */
static void count_msg(struct bridge *br, const struct batch_msg *m,
                      size_t spooled, size_t direct)
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
    br->n.unknown_fields += (m->notes & NOTE_UNKNOWN) != 0;
    br->n.spb_unresolved += (m->notes & NOTE_UNRESOLVED) != 0;
    br->n.spb_seq_gaps += (m->notes & NOTE_SEQ_GAP) != 0;
    br->n.spooled += (int64_t)spooled;
    br->n.direct += (int64_t)direct;
    if (m->tag)
        redeliver_remember(br->rd, m->tag);
}

/* The spool could not take what the burst needed: the connection goes,
 * with the PUBACKs unsent, and the broker sends the messages again. */
static void put_failed(struct bridge *br, int rc, size_t left)
{
    br->n.spool_errors++;
    if (rc == -ENOSPC && br->c->spool.on_full == CONF_BACKPRESSURE) {
        if (!br->backpressure)
            log_warn("spool full: backpressure, not reading MQTT");
        br->backpressure = 1;
    } else {
        log_error("spool: cannot store %zu messages: %s", left,
                  rc < 0 ? spool_errmsg(br->sp) : "out of memory");
        br->spool_failing = 1; /* /ready says so until a put works */
        snprintf(br->spool_why, sizeof br->spool_why, "cannot store: %s",
                 rc < 0 ? spool_errmsg(br->sp) : "out of memory");
    }
    mqtt_in_abort(br->in, "the batch could not be stored");
}

/* What was not made durable the broker sends again, but for QoS 0: gone. */
static void count_lost_qos0(struct bridge *br)
{
    br->n.received += br->lost_qos0;
    br->n.dropped_qos0 += br->lost_qos0;
    if (br->lost_qos0)
        log_warn("mqtt: %" PRId64 " QoS 0 messages lost: they could not be "
                 "stored and the broker does not send them again",
                 br->lost_qos0);
    br->lost_qos0 = 0;
}

/* The fault hook for spool puts (MQTT2KAFKA_FAULT=fail-put@N). */
static int put_fault(struct bridge *br)
{
    if (br->fail_put_every && ++br->puts % br->fail_put_every == 0) {
        log_warn("fault injection: spool put %" PRId64 " fails", br->puts);
        return -EIO;
    }
    return 0;
}

/* --- the spool path ------------------------------------------------------ */

/* Puts the burst into the spool, whole messages per transaction; returns
 * the number of messages stored (all, or those before a failure). */
static size_t put_burst(struct bridge *br, int *rc)
{
    struct batch *b = &br->batch;
    size_t done = 0;
    br_fits(br, 0, b->n); /* fills br->put */
    while (done < b->nmsgs) {
        size_t k = batch_part(b, done, br_fits, br);
        size_t first = b->msgs[done].first;
        size_t end = b->msgs[k - 1].first + b->msgs[k - 1].n;
        if (end > first && (*rc = put_fault(br)) < 0)
            break;
        if (end > first &&
            (*rc = spool_put(br->sp, br->put + first, end - first)) < 0)
            break;
        if (end > first) /* the spool's ids are above the reserved block */
            br->ids_next = br->ids_end = 0;
        /* counted and remembered at once: should a later part fail, the
         * broker's redelivery of these is recognised */
        for (size_t i = done; i < k; i++)
            count_msg(br, &b->msgs[i], b->msgs[i].n, 0);
        done = k;
    }
    return done;
}

/* The burst's large message, once its records are stored: committed in
 * the spool and counted (a record spooled), or, when the burst or the
 * large record failed, deleted (the broker sends it again; a QoS 0 one is
 * lost). Returns 0 or why it failed. */
static int large_commit(struct bridge *br, int ok)
{
    struct br_large *lg = &br->large;
    struct batch_msg m = {.qos = lg->qos,
                          .fate = FATE_STORED,
                          .tag = lg->tag,
                          .route = lg->route,
                          .notes = lg->notes};
    int rc = lg->rc;
    if (!lg->active)
        return 0;
    if (!ok || rc) {
        br->lost_qos0 += lg->qos == 0;
        br_large_abort(br);
        return rc;
    }
    if ((rc = put_fault(br)) == 0 && (rc = br_large_publish(br)) == 0) {
        count_msg(br, &m, 1, 0);
        br->ids_next = br->ids_end = 0; /* its id is above the block */
    } else {
        br_large_abort(br);
        br->lost_qos0 += m.qos == 0;
    }
    return rc;
}

static void spool_commit(struct bridge *br)
{
    struct batch *b = &br->batch;
    int rc = 0;
    br_fault_point(br, 0);
    size_t done = put_burst(br, &rc);
    for (size_t i = done; i < b->nmsgs; i++)
        br->lost_qos0 += b->msgs[i].qos == 0;
    /* a large message is the burst's last: stored after all the rest */
    int lrc = large_commit(br, rc == 0 && !b->failed && done == b->nmsgs);
    if (rc == 0 && lrc < 0)
        rc = lrc;
    count_lost_qos0(br);
    if (rc < 0 || b->failed) {
        put_failed(br, rc, b->nmsgs - done + (lrc < 0));
        batch_clear(b);
        return;
    }
    br->spool_failing = 0;
    br_fault_point(br, 1);
    batch_clear(b);
    br_kv_flush(br);
    mqtt_in_write(br->in);
}

/* --- the direct path ----------------------------------------------------- */

/* 1 when the burst may go straight to Kafka: all of it fits the window
 * (what a spill hands over must fit the outbox's lists). */
int br_direct_ready(struct bridge *br, int64_t now)
{
    int64_t bytes, room;
    /* (a reload waiting to apply takes the spool path: it must not find
     * PUBACKs held when it reconnects) */
    if (br->c->spool.mode != CONF_SPOOL_DIRECT || !br->out ||
        br->large.active || /* a large message goes through the spool */
        br->reload_pending || br->out_next || br->uplink != 1 || br->stop ||
        br->batch.failed || br->batch.n == 0 || now < br->direct_off_until ||
        !mqtt_in_connected(br->in) || outbox_direct_busy(br->ob) ||
        /* the fat lane's chunks are their own queue: a large message
         * draining (minutes on a slow uplink) keeps no one off this path */
        outbox_inflight(br->ob) != outbox_inflight_chunks(br->ob) ||
        spool_backlog(br->sp) != spool_big_backlog(br->sp))
        return 0;
    room = outbox_room(br->ob, &bytes);
    return (int64_t)br->batch.n <= room && (int64_t)br->batch.used <= bytes;
}

/* Hands the burst's records to the producer under reserved ids. 0: they
 * are out, the PUBACKs wait for br_direct_tick(); < 0: nothing was sent,
 * the spool path takes the burst. */
static int direct_send(struct bridge *br, int64_t now)
{
    struct batch *b = &br->batch;
    char why[256];
    if (br->ids_end - br->ids_next < (int64_t)b->n) {
        int64_t first, want = DIRECT_BLOCK;
        if (spool_reserve(br->sp, want, &first) < 0) {
            log_warn("spool: cannot reserve ids for the direct path: %s",
                     spool_errmsg(br->sp));
            return -1;
        }
        br->ids_next = first;
        br->ids_end = first + want;
    }
    if (outbox_direct_begin(br->ob, br->ids_next, b->n) < 0)
        return -1;
    br_fits(br, 0, b->n); /* the records as the spool would take them */
    for (size_t i = 0; i < b->n; i++) {
        br->put[i].id = br->ids_next + (int64_t)i;
        if (outbox_direct_send(br->ob, &br->put[i], why, sizeof(why)) ==
            -EINVAL)
            log_error("kafka refused record %" PRId64 " to %s: %s",
                      br->put[i].id, br->put[i].topic, why);
    }
    br->ids_next += (int64_t)b->n;
    br->direct_t0 = now;
    br->direct_pending = 1;
    if (!br->direct) {
        log_info("kafka keeps up and the spool is empty: messages go "
                 "straight to Kafka");
        br->direct = 1;
        br->direct_since = now;
    }
    br_fault_point(br, 0);
    return 0;
}

/* All of the burst confirmed: its PUBACKs go out; nothing was written. */
static void direct_done(struct bridge *br)
{
    struct batch *b = &br->batch;
    br_fault_point(br, 1);
    for (size_t i = 0; i < b->nmsgs; i++)
        count_msg(br, &b->msgs[i], 0, b->msgs[i].n);
    outbox_direct_end(br->ob, NULL);
    br->direct_pending = 0;
    batch_clear(b);
    br_kv_flush(br); /* the decode stage's state, before the PUBACKs */
    mqtt_in_write(br->in);
}

/* Stages the records of message m that Kafka has not confirmed into
 * br->spill (from *n on); returns how many. */
static size_t stage_msg(struct bridge *br, const struct batch_msg *m, size_t *n)
{
    size_t k = 0;
    for (size_t r = m->first; r < m->first + m->n; r++) {
        enum outbox_direct_outcome o = outbox_direct_outcome(br->ob, r);
        if (o == OUTBOX_OK)
            continue;
        br->spill[*n + k] = br->put[r];
        br->spill_at[*n + k] = r;
        /* still with Kafka, or refused for good (moved to the dead
         * letters next): in flight; the others go out again from it */
        br->spill_infl[*n + k] = o == OUTBOX_PENDING || o == OUTBOX_DEAD;
        k++;
    }
    *n += k;
    return k;
}

/* Not confirmed in time (or refused, or the uplink lost): what Kafka has
 * not confirmed goes into the spool, whole messages per transaction, and
 * the PUBACKs go out. Records still with the producer stay there: their
 * reports now delete the spool's copies. */
static void direct_spill(struct bridge *br, int64_t now, const char *why)
{
    struct batch *b = &br->batch;
    size_t i = 0, stored = 0;
    int rc = 0;
    memset(br->spilled, 0, b->n);
    while (i < b->nmsgs && rc == 0) {
        size_t n = 0, k = i;
        /* the longest run of messages whose staged records fit one put */
        while (k < b->nmsgs) {
            size_t before = n;
            stage_msg(br, &b->msgs[k], &n);
            if (k > i && n > before && !spool_fits(br->sp, br->spill, n)) {
                n = before;
                break;
            }
            k++;
        }
        if (n && (rc = put_fault(br)) == 0)
            rc = spool_spill(br->sp, br->spill, n, br->spill_infl);
        if (rc < 0)
            break;
        for (size_t j = 0; j < n; j++)
            br->spilled[br->spill_at[j]] = 1;
        br->n.spilled += (int64_t)n;
        stored += n;
        for (size_t m = i; m < k; m++) {
            size_t mine = 0;
            for (size_t r = b->msgs[m].first;
                 r < b->msgs[m].first + b->msgs[m].n; r++)
                mine += br->spilled[r];
            count_msg(br, &b->msgs[m], mine, b->msgs[m].n - mine);
        }
        i = k;
    }
    /* A part could not be stored: the connection goes and the broker
     * sends everything from there again (its redelivery check stops at
     * the first message it does not know), so nothing from there is
     * counted, not even a message Kafka confirmed whole: it comes back
     * and is stored. QoS 0 messages are not sent again: lost, unless
     * Kafka has them whole. */
    for (size_t m = i; m < b->nmsgs; m++) {
        size_t ok = 0;
        for (size_t r = b->msgs[m].first; r < b->msgs[m].first + b->msgs[m].n;
             r++)
            ok += outbox_direct_outcome(br->ob, r) == OUTBOX_OK;
        if (b->msgs[m].qos == 0 && ok == b->msgs[m].n)
            count_msg(br, &b->msgs[m], 0, ok);
        else
            br->lost_qos0 += b->msgs[m].qos == 0;
    }
    count_lost_qos0(br);
    outbox_direct_end(br->ob, br->spilled);
    br->direct_pending = 0;
    br->direct = 0;
    /* off for a while, longer when it keeps happening */
    br->direct_off_ms =
        now - br->direct_since < DIRECT_CALM_MS && br->direct_off_ms
            ? br->direct_off_ms * 2
            : DIRECT_OFF_MIN_MS;
    if (br->direct_off_ms > DIRECT_OFF_MAX_MS)
        br->direct_off_ms = DIRECT_OFF_MAX_MS;
    br->direct_off_until = now + br->direct_off_ms;
    log_warn("kafka: %s; %zu records into the spool, messages go through "
             "the spool until it is empty (and %" PRId64 " s at least)",
             why, stored, br->direct_off_ms / 1000);
    if (rc < 0) {
        put_failed(br, rc, b->nmsgs - i);
        batch_clear(b);
        return;
    }
    if (stored)
        br->spool_failing = 0;
    br_fault_point(br, 1);
    batch_clear(b);
    br_kv_flush(br);
    mqtt_in_write(br->in);
}

void br_direct_tick(struct bridge *br, int64_t now)
{
    if (!br->direct_pending)
        return;
    struct outbox_direct_state st;
    char why[128];
    outbox_direct_state(br->ob, &st);
    if (st.ok == st.n) {
        direct_done(br);
        return;
    }
    if (st.unsent)
        snprintf(why, sizeof(why),
                 "%zu records found the producer's queue "
                 "full",
                 st.unsent);
    else if (st.retry)
        snprintf(why, sizeof(why), "%zu records failed", st.retry);
    else if (br->uplink == 0)
        snprintf(why, sizeof(why), "the uplink is down");
    else if (now - br->direct_t0 >= br->c->spool.direct_wait)
        snprintf(why, sizeof(why), "%zu records not confirmed within %d ms",
                 st.pending, br->c->spool.direct_wait);
    else if (st.pending == 0)
        snprintf(why, sizeof(why), "%zu records refused", st.dead);
    else
        return; /* still waiting */
    direct_spill(br, now, why);
}

int br_direct_wait_ms(const struct bridge *br, int64_t now)
{
    if (!br->direct_pending)
        return -1;
    int64_t left = br->direct_t0 + br->c->spool.direct_wait - now;
    return left > 0 ? (int)left : 0;
}

/* --- the commit ---------------------------------------------------------- */

/* Makes the burst durable, straight to Kafka or through the spool; writes
 * the PUBACKs once it is. */
void br_commit(struct bridge *br)
{
    struct batch *b = &br->batch;
    int64_t now = log_now_ms();
    if (br->direct_pending)
        return; /* its PUBACKs wait for Kafka; nothing was read since */
    if (br->large.active && !br->large.rc && br->large.done < br->large.len)
        return; /* its PUBACKs wait until the spool has all of it */
    if (b->nmsgs == 0 && !b->failed && !br->lost_qos0 && !br->large.active) {
        mqtt_in_write(br->in);
        return;
    }
    if (br_direct_ready(br, now) && direct_send(br, now) == 0)
        return;
    if (br->direct && b->n > 0) {
        log_info("messages go through the spool");
        br->direct = 0;
    }
    spool_commit(br);
}
