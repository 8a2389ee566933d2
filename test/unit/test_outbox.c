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

#include "bridge/outbox.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outcomes_and_dead_letters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_unspilled_records_hold_the_next_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_acks_kept_when_the_spool_cannot_delete, setup, teardown),
    };
    return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
