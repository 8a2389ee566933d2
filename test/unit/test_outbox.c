/*
 * test_outbox.c — the outbox's direct-path bookkeeping against a real
 * spool and a real producer (whose broker never answers: delivery reports
 * are played by calling outbox_delivered, as kafka_out's callback would).
 *
 * What a user would otherwise see go wrong: a burst's outcomes mixed up, a
 * record refused for good not reaching the dead letters, a burst started
 * while records of the last one are still out, and acks lost (once: written
 * past the end of their list) when the spool cannot delete for a while.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/fat.h"
#include "bridge/log.h"
#include "bridge/outbox.h"
#include "bridge/record.h"
#include "spool/spool_int.h" /* the handle's db: to make acks fail */

struct fx {
    char dir[64], path[128];
    struct spool *sp;
    struct kafka_out *k;
    struct outbox *ob;
};

static void no_report(void *ud, int64_t id, enum kafka_out_outcome o,
                      const char *reason, const struct kafka_out_echo *echo)
{
    (void)ud, (void)id, (void)o, (void)reason, (void)echo;
}

/* What kafka_out gives back with a report of a 1-byte record. */
static const struct kafka_out_echo one = {.bytes = 1, .route = -1};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/m2k-outbox-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/spool.db", f->dir);
    struct spool_opts so = {.path = f->path, .sync = SPOOL_SYNC_NORMAL};
    struct kafka_out_opts ko = {.brokers = "127.0.0.1:1", .queue_records = 4};
    struct kafka_out_cb cb = {.delivered = no_report};
    struct outbox_opts oo = {.inflight_records = 4, .inflight_bytes = 1 << 20};
    if (spool_open(&so, &f->sp, err, sizeof(err)) ||
        kafka_out_new(&ko, &cb, NULL, &f->k, err, sizeof(err)) ||
        outbox_new(f->sp, &oo, &f->ob))
        return -1;
    outbox_set_producer(f->ob, f->k);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];
    kafka_out_free(f->k);
    outbox_free(f->ob);
    spool_close(f->sp);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Opens a burst of n records under reserved ids and hands them over. */
static int64_t send_burst(struct fx *f, struct spool_rec *r, size_t n)
{
    int64_t first;
    char why[128];
    assert_int_equal(spool_reserve(f->sp, 65536, &first), 0);
    assert_int_equal(outbox_direct_begin(f->ob, first, n), 0);
    for (size_t i = 0; i < n; i++) {
        r[i] = (struct spool_rec){.id = first + (int64_t)i,
                                  .topic = "t",
                                  .payload = "x",
                                  .payload_len = 1,
                                  .recv_ms = 1};
        assert_int_equal(outbox_direct_send(f->ob, &r[i], why, sizeof(why)), 0);
    }
    return first;
}

static void test_outcomes_and_dead_letters(void **state)
{
    struct fx *f = *state;
    struct spool_rec r[3];
    struct outbox_direct_state st;
    int64_t first = send_burst(f, r, 3);
    outbox_direct_state(f->ob, &st);
    assert_int_equal(st.n, 3);
    assert_int_equal(st.pending, 3);
    outbox_delivered(f->ob, first, KAFKA_OUT_OK, NULL, &one);
    outbox_delivered(f->ob, first + 1, KAFKA_OUT_RETRY, "timed out", &one);
    outbox_delivered(f->ob, first + 2, KAFKA_OUT_DEAD, "too large", &one);
    outbox_direct_state(f->ob, &st);
    assert_int_equal(st.ok, 1);
    assert_int_equal(st.retry, 1);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(outbox_direct_outcome(f->ob, 1), OUTBOX_RETRY);
    /* the bridge spills the two not confirmed; the dead one goes to the
     * dead letters with Kafka's reason at the next flush */
    unsigned char infl[2] = {0, 1}, spilled[3] = {0, 1, 1};
    assert_int_equal(spool_spill(f->sp, r + 1, 2, infl), 0);
    outbox_direct_end(f->ob, spilled);
    assert_false(outbox_direct_busy(f->ob));
    outbox_flush(f->ob, 1000000, 1);
    struct spool_dead_rec d[4];
    assert_int_equal(spool_dead_list(f->sp, d, 4), 1);
    assert_true(d[0].id == first + 2);
    assert_string_equal(d[0].reason, "too large");
    assert_int_equal(spool_backlog(f->sp), 1); /* the retried one */
    assert_int_equal(outbox_inflight(f->ob), 0);
}

static void test_unspilled_records_hold_the_next_burst(void **state)
{
    struct fx *f = *state;
    struct spool_rec r[2];
    int64_t first = send_burst(f, r, 2);
    outbox_direct_end(f->ob, NULL); /* the spill failed: nothing spilled */
    assert_true(outbox_direct_busy(f->ob));
    assert_int_equal(outbox_direct_begin(f->ob, first + 2, 1), -EBUSY);
    outbox_delivered(f->ob, first, KAFKA_OUT_OK, NULL, &one);
    assert_true(outbox_direct_busy(f->ob));
    outbox_delivered(f->ob, first + 1, KAFKA_OUT_RETRY, NULL, &one);
    assert_false(outbox_direct_busy(f->ob));
    assert_int_equal(outbox_inflight(f->ob), 0);
    assert_int_equal(spool_backlog(f->sp), 0); /* nothing was stored */
}

/* A burst larger than the window, spilled while with Kafka, confirmed
 * while the spool cannot delete: once the 5th ack was written past the
 * end of a list sized for the window. Every ack must be kept and applied
 * once the spool works again. (Run it under `make san` to see the old
 * overflow.) */
static void test_acks_kept_when_the_spool_cannot_delete(void **state)
{
    struct fx *f = *state;
    enum { N = 64 };
    static struct spool_rec r[N];
    unsigned char infl[N], spilled[N];
    int64_t first = send_burst(f, r, N);
    memset(infl, 1, sizeof(infl));
    memset(spilled, 1, sizeof(spilled));
    assert_int_equal(spool_spill(f->sp, r, N, infl), 0);
    outbox_direct_end(f->ob, spilled);
    assert_int_equal(sqlite3_exec(f->sp->db, "BEGIN", NULL, NULL, NULL), 0);
    for (int i = 0; i < N; i++)
        outbox_delivered(f->ob, first + i, KAFKA_OUT_OK, NULL, &one);
    /* (the failed ack's rollback ended that transaction already) */
    sqlite3_exec(f->sp->db, "ROLLBACK", NULL, NULL, NULL);
    outbox_flush(f->ob, 1000000, 1);
    assert_int_equal(spool_backlog(f->sp), 0);
    assert_int_equal(outbox_counters(f->ob)->delivered, N);
    assert_int_equal(outbox_inflight(f->ob), 0);
}

/* --- the fat lane: a large record as chunks ------------------------------ */

static int setup_fat(void **state)
{
    int rc = setup(state);
    struct fx *f = *state;
    struct outbox_opts oo = {
        .inflight_records = 8, .inflight_bytes = 1 << 20, .nroutes = 1};
    outbox_free(f->ob);
    if (rc || outbox_new(f->sp, &oo, &f->ob))
        return -1;
    outbox_set_producer(f->ob, f->k);
    return 0;
}

#define PART 65536

/* A committed large record of n bytes in parts of PART, key "cam-7". */
static int64_t put_large(struct fx *f, size_t n)
{
    unsigned char hb[64], *data = malloc(n);
    struct record_hdrs h = {.buf = hb, .cap = sizeof hb};
    record_hdr_add_str(&h, "mqtt.topic", "cam/7");
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 7);
    struct spool_rec r = {.topic = "cam",
                          .key = "cam-7",
                          .key_len = 5,
                          .headers = hb,
                          .headers_len = h.len,
                          .payload_len = n,
                          .recv_ms = 1,
                          .route = 0};
    int64_t id;
    unsigned char sha[32] = {1};
    assert_int_equal(spool_big_begin(f->sp, &r, PART, &id), 0);
    assert_int_equal(spool_big_write(f->sp, id, 0, data, n), 0);
    assert_int_equal(spool_big_commit(f->sp, id, sha, 32), 0);
    free(data);
    return id;
}

/* The report kafka_out gives back with chunk i of record id (its window
 * bytes: key, value, the record's headers and the five m2k.* ones). */
static struct kafka_out_echo chunk_echo(struct fx *f, int64_t id, uint32_t i,
                                        uint32_t count, size_t n)
{
    char idstr[48], num[3][24];
    size_t len = i + 1 < count ? PART : n - (size_t)i * PART;
    spool_id_str(f->sp, id, idstr, sizeof idstr);
    snprintf(num[0], sizeof num[0], "%u", i);
    snprintf(num[1], sizeof num[1], "%u", count);
    snprintf(num[2], sizeof num[2], "%zu", n);
    size_t extra = 6 + strlen(idstr) + 9 + strlen(num[0]) + 10 +
                   strlen(num[1]) + 8 + strlen(num[2]) + 10 + 64;
    return (struct kafka_out_echo){.bytes = 5 + len + 3 + 10 + 2 + 5 + extra,
                                   .recv_ms = 1,
                                   .route = 0,
                                   .lane = FAT_LANE,
                                   .chunk = (int32_t)i};
}

/* Chunks go within the fat lane's share of the window (a quarter of the
 * bytes), small records beside them; every chunk confirmed: the record is
 * delivered once and leaves the spool. */
static void test_large_record_goes_as_chunks(void **state)
{
    struct fx *f = *state;
    size_t n = 5 * PART + 1000;
    int64_t id = put_large(f, n);
    struct spool_rec small[2] = {
        {.topic = "t", .payload = "s", .payload_len = 1},
        {.topic = "t", .payload = "s", .payload_len = 1}};
    assert_int_equal(spool_put(f->sp, small, 2), 0);
    outbox_drain(f->ob, 1000);
    /* 1 MiB / 4 = 256 KiB: three chunks of 64 KiB and their headers */
    assert_int_equal(outbox_inflight(f->ob), 3 + 2);
    uint32_t sent = 3;
    for (uint32_t i = 0; i < 6; i++) {
        struct kafka_out_echo e = chunk_echo(f, id, i, 6, n);
        outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e);
        outbox_flush(f->ob, 2000 + i * 100, 1);
        outbox_drain(f->ob, 2000 + i * 100);
        if (sent < 6)
            sent++; /* one out, the next one in */
        assert_int_equal(spool_big_backlog(f->sp), i < 5 ? 1 : 0);
    }
    assert_int_equal(outbox_counters(f->ob)->chunks, 6);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1);
    assert_int_equal(outbox_counters(f->ob)->route_delivered[0], 1);
    /* the two small ones are still out, nothing else */
    assert_int_equal(outbox_inflight(f->ob), 2);
    int64_t bytes;
    outbox_room(f->ob, &bytes);
    assert_true(bytes > (1 << 20) - 64); /* no chunk's bytes left over */
}

/* A chunk refused for good: the whole record to the dead letters, with
 * Kafka's reason, counted once; later reports of its chunks change
 * nothing. */
static void test_chunk_refused_dead_letters_the_record(void **state)
{
    struct fx *f = *state;
    size_t n = 4 * PART;
    int64_t id = put_large(f, n);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 3);
    struct kafka_out_echo e0 = chunk_echo(f, id, 0, 4, n);
    struct kafka_out_echo e1 = chunk_echo(f, id, 1, 4, n);
    struct kafka_out_echo e2 = chunk_echo(f, id, 2, 4, n);
    outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e0);
    outbox_delivered(f->ob, id, KAFKA_OUT_DEAD,
                     "Broker: Message size too large", &e1);
    outbox_flush(f->ob, 2000, 1);
    outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e2);
    outbox_flush(f->ob, 3000, 1);
    assert_int_equal(outbox_counters(f->ob)->kafka_refused, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 0);
    assert_int_equal(spool_big_backlog(f->sp), 0);
    struct spool_dead_rec d[2];
    assert_int_equal(spool_dead_list(f->sp, d, 2), 1);
    assert_true(d[0].id == id);
    assert_int_equal(d[0].payload_len, n);
    assert_non_null(strstr(d[0].reason, "chunk 1"));
    assert_non_null(strstr(d[0].reason, "Message size too large"));
    assert_int_equal(outbox_inflight(f->ob), 0);
}

/* A chunk that failed for now goes again, after the back-off, under the
 * same record; the others are not sent twice. A new producer (a reset)
 * sends what was in flight again. */
static void test_chunk_retried(void **state)
{
    struct fx *f = *state;
    size_t n = 2 * PART;
    int64_t id = put_large(f, n);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    struct kafka_out_echo e0 = chunk_echo(f, id, 0, 2, n);
    struct kafka_out_echo e1 = chunk_echo(f, id, 1, 2, n);
    outbox_delivered(f->ob, id, KAFKA_OUT_RETRY, "timed out", &e0);
    outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e1);
    outbox_flush(f->ob, 1000, 1);
    assert_int_equal(outbox_inflight(f->ob), 0);
    outbox_drain(f->ob, (int64_t)1 << 50);       /* past any back-off */
    assert_int_equal(outbox_inflight(f->ob), 1); /* chunk 0 only */
    outbox_reset(f->ob); /* the producer went: chunk 0 goes again */
    outbox_drain(f->ob, (int64_t)1 << 50);
    assert_int_equal(outbox_inflight(f->ob), 1);
    outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e0);
    outbox_flush(f->ob, (int64_t)1 << 50, 1);
    assert_int_equal(spool_big_backlog(f->sp), 0);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1);
}

/* The fixture with a spool whose records expire after a minute (a large
 * record's recv_ms of 1 is long past) and a byte window of win. */
static int setup_fat_window(void **state, int64_t max_age, int64_t win)
{
    int rc = setup(state);
    struct fx *f = *state;
    char err[256];
    struct spool_opts so = {
        .path = f->path, .sync = SPOOL_SYNC_NORMAL, .max_age_ms = max_age};
    struct outbox_opts oo = {
        .inflight_records = 16, .inflight_bytes = win, .nroutes = 1};
    outbox_free(f->ob);
    spool_close(f->sp);
    if (rc || spool_open(&so, &f->sp, err, sizeof(err)) ||
        outbox_new(f->sp, &oo, &f->ob))
        return -1;
    outbox_set_producer(f->ob, f->k);
    return 0;
}

static int setup_fat_aged(void **state)
{
    return setup_fat_window(state, 60000, 1 << 20);
}

static int setup_fat_narrow(void **state)
{
    return setup_fat_window(state, 0, 64 * 1024);
}

/* Kafka is down: the chunks of the record the fat lane holds came back
 * failed, nothing of it is in flight. It expires like any record (counted
 * once, as expired), the lane forgets it and takes the next one. While
 * its chunks were in flight it did not expire. */
static void test_large_record_expires_while_kafka_is_down(void **state)
{
    struct fx *f = *state;
    size_t n = 2 * PART;
    int64_t id = put_large(f, n);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    outbox_flush(f->ob, 1000, 1);
    assert_int_equal(spool_expire(f->sp), 0); /* in flight: kept */
    struct kafka_out_echo e0 = chunk_echo(f, id, 0, 2, n);
    struct kafka_out_echo e1 = chunk_echo(f, id, 1, 2, n);
    outbox_delivered(f->ob, id, KAFKA_OUT_RETRY, "timed out", &e0);
    outbox_delivered(f->ob, id, KAFKA_OUT_RETRY, "timed out", &e1);
    outbox_flush(f->ob, 2000, 1);
    assert_int_equal(outbox_inflight(f->ob), 0);
    assert_int_equal(spool_expire(f->sp), 1);
    struct spool_stats st;
    assert_int_equal(spool_stats(f->sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 1);
    assert_int_equal(spool_big_backlog(f->sp), 0);
    int64_t id2 = put_large(f, n);
    outbox_drain(f->ob, (int64_t)1 << 50); /* past any back-off */
    outbox_drain(f->ob, (int64_t)1 << 50);
    assert_int_equal(outbox_inflight(f->ob), 2); /* the next one's chunks */
    for (uint32_t i = 0; i < 2; i++) {
        struct kafka_out_echo e = chunk_echo(f, id2, i, 2, n);
        outbox_delivered(f->ob, id2, KAFKA_OUT_OK, NULL, &e);
    }
    outbox_flush(f->ob, (int64_t)1 << 50, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1);
    assert_int_equal(outbox_counters(f->ob)->kafka_refused, 0);
    assert_int_equal(spool_big_backlog(f->sp), 0);
}

/* Every chunk confirmed, but deleting the record fails once (an I/O
 * error): it is not lost to expiry meanwhile, the next flush deletes it,
 * delivered once, and the next large record goes. */
static void test_large_record_delivered_after_a_failed_ack(void **state)
{
    struct fx *f = *state;
    size_t n = 2 * PART;
    int64_t id = put_large(f, n);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    for (uint32_t i = 0; i < 2; i++) {
        struct kafka_out_echo e = chunk_echo(f, id, i, 2, n);
        outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e);
    }
    assert_int_equal(
        sqlite3_exec(f->sp->db,
                     "CREATE TEMP TRIGGER boom BEFORE UPDATE ON main.state "
                     "BEGIN SELECT RAISE(ABORT,'injected'); END;",
                     NULL, NULL, NULL),
        0);
    outbox_flush(f->ob, 2000, 1);
    assert_int_equal(
        sqlite3_exec(f->sp->db, "DROP TRIGGER temp.boom", NULL, NULL, NULL), 0);
    assert_int_equal(outbox_counters(f->ob)->delivered, 0);
    assert_int_equal(spool_expire(f->sp), 0); /* Kafka has it: kept */
    outbox_flush(f->ob, 3000, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1);
    int64_t id2 = put_large(f, n);
    outbox_drain(f->ob, 4000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    for (uint32_t i = 0; i < 2; i++) {
        struct kafka_out_echo e = chunk_echo(f, id2, i, 2, n);
        outbox_delivered(f->ob, id2, KAFKA_OUT_OK, NULL, &e);
    }
    outbox_flush(f->ob, 5000, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 2);
    struct spool_stats st;
    assert_int_equal(spool_stats(f->sp, &st), 0);
    assert_int_equal(st.dropped[SPOOL_DROP_EXPIRED], 0);
    assert_int_equal(st.acked_total, 2);
}

/* Every chunk confirmed, then the record is gone from the spool before
 * its ack (purged by hand): Kafka has it, it counts as delivered once,
 * and the fat lane goes on with the next one instead of retrying. */
static void test_large_record_gone_before_its_ack(void **state)
{
    struct fx *f = *state;
    size_t n = 2 * PART;
    int64_t id = put_large(f, n);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    for (uint32_t i = 0; i < 2; i++) {
        struct kafka_out_echo e = chunk_echo(f, id, i, 2, n);
        outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e);
    }
    assert_int_equal(
        sqlite3_exec(f->sp->db, "DELETE FROM big", NULL, NULL, NULL), 0);
    outbox_flush(f->ob, 2000, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1);
    int64_t id2 = put_large(f, n);
    outbox_drain(f->ob, 3000);
    assert_int_equal(outbox_inflight(f->ob), 2);
    for (uint32_t i = 0; i < 2; i++) {
        struct kafka_out_echo e = chunk_echo(f, id2, i, 2, n);
        outbox_delivered(f->ob, id2, KAFKA_OUT_OK, NULL, &e);
    }
    outbox_flush(f->ob, 4000, 1);
    assert_int_equal(outbox_counters(f->ob)->delivered, 2);
}

/* kafka.inflight_bytes below one chunk: small records still go beside
 * the chunk in flight, all through a large record's transfer. */
static void test_small_records_flow_when_window_below_a_chunk(void **state)
{
    struct fx *f = *state;
    size_t n = 4 * PART;
    int64_t id = put_large(f, n);
    for (uint32_t i = 0; i < 4; i++) {
        struct spool_rec small[2] = {
            {.topic = "t", .payload = "s", .payload_len = 1},
            {.topic = "t", .payload = "s", .payload_len = 1}};
        assert_int_equal(spool_put(f->sp, small, 2), 0);
        outbox_drain(f->ob, 1000 + i);
        assert_int_equal(outbox_inflight_chunks(f->ob), 1);
        assert_int_equal(outbox_inflight(f->ob), 1 + 2); /* the small ones */
        struct kafka_out_echo e = chunk_echo(f, id, i, 4, n);
        outbox_delivered(f->ob, id, KAFKA_OUT_OK, NULL, &e);
        outbox_delivered(f->ob, small[0].id, KAFKA_OUT_OK, NULL, &one);
        outbox_delivered(f->ob, small[1].id, KAFKA_OUT_OK, NULL, &one);
        outbox_flush(f->ob, 1000 + i, 1);
        assert_int_equal(outbox_inflight(f->ob), 0);
    }
    assert_int_equal(outbox_counters(f->ob)->chunks, 4);
    assert_int_equal(outbox_counters(f->ob)->delivered, 1 + 8);
    assert_int_equal(spool_big_backlog(f->sp), 0);
}

/* --- load smearing --- */

static const struct outbox_opts smear_opts = {.inflight_records = 1000,
                                              .inflight_bytes = 1 << 20,
                                              .drain_rate = 100,
                                              .drain_delay_ms = 5000};

static int setup_smear(void **state)
{
    int rc = setup(state);
    struct fx *f = *state;
    char err[256];
    struct kafka_out_opts ko = {.brokers = "127.0.0.1:1",
                                .queue_records = 10000};
    struct kafka_out_cb cb = {.delivered = no_report};
    outbox_free(f->ob);
    kafka_out_free(f->k);
    if (rc || kafka_out_new(&ko, &cb, NULL, &f->k, err, sizeof(err)) ||
        outbox_new(f->sp, &smear_opts, &f->ob))
        return -1;
    outbox_set_producer(f->ob, f->k);
    return 0;
}

/* The daemon starts again over the spool as it is (a new outbox). */
static void restart(struct fx *f)
{
    outbox_free(f->ob);
    assert_int_equal(outbox_new(f->sp, &smear_opts, &f->ob), 0);
    outbox_set_producer(f->ob, f->k);
}

static void put_n(struct fx *f, int lane, size_t n)
{
    struct spool_rec r[400];
    assert_true(n <= 400);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct spool_rec){
            .topic = "t", .payload = "x", .payload_len = 1, .lane = lane};
    assert_int_equal(spool_put(f->sp, r, n), 0);
}

/* After the uplink comes up with a backlog: the fast lane goes at once,
 * normal waits for its random start within drain_delay, then drains at
 * drain_rate; records spooled after the uplink came back are not capped. */
static void test_backlog_held_then_capped(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    put_n(f, SPOOL_LANE_NORMAL, 300);
    put_n(f, SPOOL_LANE_FAST, 2);
    restart(f); /* what a restart finds is the backlog */
    int64_t t = 1000000;
    outbox_uplink(f->ob, 1, t); /* first up after a start */
    outbox_smearing(f->ob, t, &sm);
    assert_true(sm.mark > 0);
    assert_true(sm.held_ms >= 0 && sm.held_ms <= 5000);
    int64_t start = t + sm.held_ms;
    outbox_drain(f->ob, t);
    assert_int_equal(outbox_inflight(f->ob), 2); /* the fast lane only */
    if (sm.held_ms > 0) {
        outbox_drain(f->ob, start - 1);
        assert_int_equal(outbox_inflight(f->ob), 2);
        assert_true(outbox_wait_ms(f->ob, start - 1, 60000) <= 1);
        outbox_smearing(f->ob, start - 1, &sm);
        assert_int_equal(sm.held_ms, 1);
        assert_int_equal(sm.capped, 0);
    }
    /* two seconds at 100 records/s, drained every 10 ms */
    for (t = start; t <= start + 2000; t += 10)
        outbox_drain(f->ob, t);
    int64_t n = outbox_inflight(f->ob) - 2;
    assert_in_range(n, 195, 205);
    outbox_smearing(f->ob, t, &sm);
    assert_int_equal(sm.capped, 1);
    assert_int_equal(sm.held_ms, 0);
    /* the rest of the backlog, then records spooled since go uncapped */
    for (; t <= start + 3100; t += 10)
        outbox_drain(f->ob, t);
    assert_int_equal(outbox_inflight(f->ob), 302);
    put_n(f, SPOOL_LANE_NORMAL, 300);
    outbox_drain(f->ob, t);
    assert_int_equal(outbox_inflight(f->ob), 602);
    outbox_smearing(f->ob, t, &sm);
    assert_int_equal(sm.capped, 0);
    assert_int_equal(sm.mark, 0);
}

/* While the uplink is down, normal and bulk keep only a probe in flight
 * (a return releases no window-sized burst); fast is not limited. A
 * return that is not after an outage (a new producer) holds nothing. */
static void test_probe_while_down(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    /* what this run spooled before the uplink first came up is not held
     * (the spool was empty at the start) */
    put_n(f, SPOOL_LANE_NORMAL, 10);
    outbox_uplink(f->ob, 1, 1000);
    outbox_smearing(f->ob, 1000, &sm);
    assert_int_equal(sm.mark, 0);
    outbox_drain(f->ob, 1000);
    assert_int_equal(outbox_inflight(f->ob), 10);
    outbox_uplink(f->ob, 0, 2000);
    put_n(f, SPOOL_LANE_NORMAL, 300);
    put_n(f, SPOOL_LANE_BULK, 100);
    put_n(f, SPOOL_LANE_FAST, 100);
    outbox_drain(f->ob, 3000); /* 10 + 54 normal and bulk, 100 fast */
    assert_int_equal(outbox_inflight(f->ob), 64 + 100);
    outbox_uplink(f->ob, -1, 4000); /* not known: still a probe */
    outbox_drain(f->ob, 4000);
    assert_int_equal(outbox_inflight(f->ob), 64 + 100);
    outbox_uplink(f->ob, 1, 5000); /* back after an outage: held */
    outbox_smearing(f->ob, 5000, &sm);
    assert_true(sm.mark > 0);
    /* drain_rate and drain_delay off (a reload): nothing is held */
    outbox_set_smearing(f->ob, 0, 0, 5000);
    outbox_drain(f->ob, 5000);
    assert_int_equal(outbox_inflight(f->ob), 510);
}

/* A lane with no backlog is not held: a restart that left only bulk
 * records lets this run's normal records go at once; with a normal
 * backlog under the cap, live bulk records are not held behind it. */
static void test_lane_without_backlog_not_held(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    put_n(f, SPOOL_LANE_BULK, 5);
    restart(f);
    int64_t t = log_now_ms();
    outbox_uplink(f->ob, 1, t);
    outbox_smearing(f->ob, t, &sm);
    assert_true(sm.mark > 0);
    put_n(f, SPOOL_LANE_NORMAL, 10);
    outbox_drain(f->ob, t);
    assert_int_equal(outbox_inflight(f->ob), 10);
}

static void test_live_bulk_not_held_behind_normal_backlog(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    put_n(f, SPOOL_LANE_NORMAL, 300);
    restart(f);
    int64_t t = log_now_ms();
    outbox_uplink(f->ob, 1, t);
    outbox_smearing(f->ob, t, &sm);
    int64_t start = t + sm.held_ms;
    put_n(f, SPOOL_LANE_BULK, 10); /* live */
    outbox_drain(f->ob, t);
    assert_int_equal(outbox_inflight(f->ob), 10);
    for (t = start; t <= start + 2000; t += 10)
        outbox_drain(f->ob, t);
    assert_in_range(outbox_inflight(f->ob), 205, 215);
}

/* An uplink that flaps while the backlog is held keeps its start (a
 * rolling restart of the brokers once held it over and over); status
 * says nothing is held while the uplink is down (the probe runs). */
static void test_flap_keeps_the_start(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    put_n(f, SPOOL_LANE_NORMAL, 50);
    restart(f);
    int64_t t = log_now_ms();
    outbox_uplink(f->ob, 1, t);
    outbox_smearing(f->ob, t, &sm);
    int64_t at = t + sm.held_ms, m0 = sm.mark;
    for (int i = 0; i < 20; i++) {
        put_n(f, SPOOL_LANE_NORMAL, 1);
        outbox_uplink(f->ob, 0, t + i);
        outbox_smearing(f->ob, t + i, &sm);
        assert_int_equal(sm.held_ms, 0);
        assert_int_equal(sm.capped, 0);
        outbox_uplink(f->ob, 1, t + i);
        outbox_smearing(f->ob, t + i, &sm);
        assert_int_equal(t + i + sm.held_ms, at);
    }
    assert_int_equal(sm.mark, m0 + 20); /* what the flaps spooled joins */
}

/* A reload while the start is held saves no budget: at 2,000/s, 200 ms
 * after the start about 400 records have gone, not a bucket more; and the
 * loop is not woken every millisecond for two records. */
static void test_reload_while_held_no_burst(void **state)
{
    struct fx *f = *state;
    struct outbox_smearing sm;
    put_n(f, SPOOL_LANE_NORMAL, 400);
    put_n(f, SPOOL_LANE_NORMAL, 400);
    restart(f);
    int64_t t = log_now_ms();
    outbox_uplink(f->ob, 1, t);
    outbox_set_smearing(f->ob, 2000, 5000, t);
    outbox_smearing(f->ob, t, &sm);
    t += sm.held_ms;
    int turns = 0;
    for (int64_t end = t + 200; t < end; turns++) {
        outbox_drain(f->ob, t);
        t += outbox_wait_ms(f->ob, t, 1000);
    }
    assert_in_range(outbox_inflight(f->ob), 380, 420);
    assert_in_range(turns, 1, 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outcomes_and_dead_letters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_unspilled_records_hold_the_next_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_acks_kept_when_the_spool_cannot_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_record_goes_as_chunks,
                                        setup_fat, teardown),
        cmocka_unit_test_setup_teardown(
            test_chunk_refused_dead_letters_the_record, setup_fat, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_retried, setup_fat,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_large_record_expires_while_kafka_is_down, setup_fat_aged,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_large_record_delivered_after_a_failed_ack, setup_fat_aged,
            teardown),
        cmocka_unit_test_setup_teardown(test_large_record_gone_before_its_ack,
                                        setup_fat, teardown),
        cmocka_unit_test_setup_teardown(
            test_small_records_flow_when_window_below_a_chunk, setup_fat_narrow,
            teardown),
        cmocka_unit_test_setup_teardown(test_backlog_held_then_capped,
                                        setup_smear, teardown),
        cmocka_unit_test_setup_teardown(test_probe_while_down, setup_smear,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lane_without_backlog_not_held,
                                        setup_smear, teardown),
        cmocka_unit_test_setup_teardown(
            test_live_bulk_not_held_behind_normal_backlog, setup_smear,
            teardown),
        cmocka_unit_test_setup_teardown(test_flap_keeps_the_start, setup_smear,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_while_held_no_burst,
                                        setup_smear, teardown),
    };
    return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
