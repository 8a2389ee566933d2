/*
 * outbox.h — the Kafka half of the wiring: the spool drains into the
 * producer, and delivery outcomes flow back to the spool.
 *
 * Delivery reports arrive one record at a time (outbox_delivered, from
 * kafka_out's callback); their outcomes are kept and applied to the spool
 * in groups (outbox_flush): a success deletes the row, a transient error
 * makes it eligible again after a backoff, a permanent one moves it to the
 * dead-letter table. outbox_drain() hands the oldest spooled records to
 * the producer, within a window of records and bytes in flight. Nothing
 * overtakes a record put back, so order per partition holds.
 *
 * The direct path (see bridge.c): a burst goes to the producer before the
 * spool, under ids the bridge reserved in it. outbox_direct_begin() opens
 * the burst, outbox_direct_send() hands over its records in order, and
 * their reports only mark outcomes; outbox_direct_end() closes it: the
 * records the bridge then spilled into the spool (still with Kafka, or
 * refused for good) are from then on the spool's, reported like peeked
 * ones; a record it could not spill is only waited for.
 *
 * Knows spool.h, kafka_out.h and record.h; single-threaded (the loop's).
 */
#ifndef MQTT2KAFKA_OUTBOX_H
#define MQTT2KAFKA_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/kafka_out.h"
#include "bridge/prom.h"
#include "spool/spool.h"

struct outbox;

struct outbox_opts {
    int64_t inflight_records; /* window: records handed to Kafka */
    int64_t inflight_bytes;   /* window: their key + value bytes */
    size_t nroutes;           /* routes counted in route_delivered */
    /* Load smearing (kafka.drain_rate, kafka.drain_delay): see
     * outbox_uplink(). 0: off. */
    int64_t drain_rate;     /* records/s of an outage's backlog */
    int64_t drain_delay_ms; /* its drain starts within this, at random */
};

struct outbox_counters {   /* only ever grow, on success */
    int64_t delivered;     /* acked in the spool after Kafka confirmed */
    int64_t retries;       /* transient delivery failures */
    int64_t kafka_refused; /* moved to the spool's dead-letter table */
    int64_t chunks;        /* chunks of large records Kafka confirmed */
    /* Of delivered: by the route that made the record (nroutes entries;
     * dead letters to the topic have none). */
    int64_t *route_delivered;
    /* Of delivered: receive (the record's recv_ms) to Kafka's report, in
     * seconds, on the wall clock (a step back counts as 0). */
    struct prom_hist latency;
};

/* Borrows sp. 0 or -ENOMEM. */
int outbox_new(struct spool *sp, const struct outbox_opts *o,
               struct outbox **out);
void outbox_free(struct outbox *ob); /* NULL is fine */

/* The producer records go to (NULL: none, nothing is drained). */
void outbox_set_producer(struct outbox *ob, struct kafka_out *k);

/* kafka_out's delivered callback. */
void outbox_delivered(struct outbox *ob, int64_t id,
                      enum kafka_out_outcome outcome, const char *reason,
                      const struct kafka_out_echo *echo);
/* Applies kept outcomes to the spool when due (force: now). */
void outbox_flush(struct outbox *ob, int64_t now_ms, int force);
/* Hands spooled records to the producer, within the window. */
void outbox_drain(struct outbox *ob, int64_t now_ms);
/* The producer is gone (every record in it was reported): applies what
 * was kept and makes everything in flight eligible again. */
void outbox_reset(struct outbox *ob);

/* --- load smearing ---
 *
 * When the uplink comes back after an outage, the records spooled until
 * then (ids up to spool_top()) are the backlog; when it first comes up
 * after a start, what the spool held when it opened is. With kafka.drain_delay
 * its normal and bulk lanes wait a random time within it before they drain, and
 * with kafka.drain_rate they drain at most that many records a second; while
 * the uplink is down those lanes keep only a probe in flight, so a return
 * releases no window-sized burst. The fast lane is never held, and records
 * spooled after the uplink came back are not counted against the cap (they
 * follow their lane's backlog, in order). A fleet of gateways then spreads its
 * return over the delay instead of hitting the cluster at once. */

/* The uplink's state changed (1 up, 0 down, -1 not known). */
void outbox_uplink(struct outbox *ob, int up, int64_t now_ms);
/* Changes kafka.drain_rate / drain_delay (a reload): a held start is
 * redrawn within the new delay. */
void outbox_set_smearing(struct outbox *ob, int64_t rate, int64_t delay_ms,
                         int64_t now_ms);
struct outbox_smearing {
    int64_t held_ms; /* until the backlog's drain starts; 0: not held */
    int capped;      /* 1 while drain_rate limits an outage's backlog */
    int64_t mark;    /* the backlog: ids up to this; 0: none */
};
void outbox_smearing(const struct outbox *ob, int64_t now_ms,
                     struct outbox_smearing *st);

/* --- the direct path --- */

enum outbox_direct_outcome {
    OUTBOX_UNSENT = 0, /* not handed over (the producer's queue was full) */
    OUTBOX_PENDING,    /* with the producer, not reported yet */
    OUTBOX_OK,         /* confirmed by Kafka */
    OUTBOX_RETRY,      /* failed for now: send it again from the spool */
    OUTBOX_DEAD,       /* refused for good: a dead letter once spilled */
};

struct outbox_direct_state {
    size_t n, unsent, pending, ok, retry, dead;
};

/* Opens a burst of n records under ids first..first+n-1. -EBUSY while the
 * last one still waits for reports it could not spill; -ENOMEM. */
int outbox_direct_begin(struct outbox *ob, int64_t first, size_t n);
/* Hands record r (r->id: the next of the burst) to the producer. 0: sent;
 * -EINVAL: refused at once for good (OUTBOX_DEAD, why set); another
 * error: not sent (OUTBOX_UNSENT). */
int outbox_direct_send(struct outbox *ob, const struct spool_rec *r, char *why,
                       size_t whylen);
void outbox_direct_state(const struct outbox *ob,
                         struct outbox_direct_state *st);
/* The outcome of the burst's record i. */
enum outbox_direct_outcome outbox_direct_outcome(const struct outbox *ob,
                                                 size_t i);
/* Closes the burst. spilled[i] (NULL: none) says record i is now in the
 * spool: pending ones are the spool's in-flight records, dead ones are
 * moved to its dead letters at the next flush. Pending records not
 * spilled are waited for, and the next burst cannot begin before. */
void outbox_direct_end(struct outbox *ob, const unsigned char *spilled);
/* 1 while a burst is open or its unspilled records are still out. */
int outbox_direct_busy(const struct outbox *ob);

int64_t outbox_inflight(const struct outbox *ob);
/* Of those: chunks of large records (the fat lane, fat.h). */
int64_t outbox_inflight_chunks(const struct outbox *ob);
/* Records (and *bytes) the window has room for now. */
int64_t outbox_room(const struct outbox *ob, int64_t *bytes);
/* ms until outbox_flush or outbox_drain have work again, at most max. */
int outbox_wait_ms(const struct outbox *ob, int64_t now_ms, int max);
const struct outbox_counters *outbox_counters(const struct outbox *ob);

#endif
