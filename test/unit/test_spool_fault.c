/*
 * test_spool_fault.c — a peek that fails part-way hands out nothing and
 * strands nothing: the in-flight set refuses a member (no memory) in the
 * middle of a peek, and the next peek must take every record again, in
 * order. The link wraps idset_put (see the Makefile).
 */
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

#include "spool/idset.h"
#include "spool/spool.h"

int __real_idset_put(struct idset *s, int64_t id, uint32_t v);
int __wrap_idset_put(struct idset *s, int64_t id, uint32_t v);

static int fail_in = -1; /* the n-th add from now fails; -1: none */

int __wrap_idset_put(struct idset *s, int64_t id, uint32_t v)
{
    if (fail_in >= 0 && fail_in-- == 0)
        return -ENOMEM;
    return __real_idset_put(s, id, v);
}

struct fx {
    char dir[64], path[128];
    struct spool *sp;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/spool-fault-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/spool.db", f->dir);
    struct spool_opts o = {.path = f->path, .sync = SPOOL_SYNC_NORMAL};
    char err[512];
    assert_int_equal(spool_open(&o, &f->sp, err, sizeof(err)), 0);
    fail_in = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[200];
    spool_close(f->sp);
    const char *sfx[] = {"", "-wal", "-shm", "-reserve"};
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void put(struct spool *sp, int lane, int seq)
{
    char pay[32];
    snprintf(pay, sizeof(pay), "seq=%d;", seq);
    struct spool_rec r = {.topic = "t",
                          .payload = pay,
                          .payload_len = strlen(pay),
                          .recv_ms = 1,
                          .lane = lane};
    assert_int_equal(spool_put(sp, &r, 1), 0);
}

static int seq_of(const struct spool_rec *r)
{
    int s = -1;
    char b[32] = "";
    memcpy(b, r->payload, r->payload_len < 31 ? r->payload_len : 31);
    sscanf(b, "seq=%d;", &s);
    return s;
}

static int64_t inflight(struct spool *sp)
{
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    return st.inflight;
}

/* The drain's peek (one lane): the fifth record cannot be marked in
 * flight. Before, hi had moved past all ten: the next peek found none and
 * four were in flight that nobody had. */
static void test_lane_peek_fails_midway(void **state)
{
    struct fx *f = *state;
    struct spool_rec r[16];
    for (int i = 0; i < 10; i++)
        put(f->sp, SPOOL_LANE_NORMAL, i);
    fail_in = 4;
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     -ENOMEM);
    assert_int_equal(inflight(f->sp), 0);
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(seq_of(&r[i]), i);
    assert_int_equal(inflight(f->sp), 10);
}

/* Records sent round again (nacked) and a peek that fails taking them. */
static void test_nacked_peek_fails_midway(void **state)
{
    struct fx *f = *state;
    struct spool_rec r[16];
    for (int i = 0; i < 10; i++)
        put(f->sp, SPOOL_LANE_NORMAL, i);
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     10);
    int64_t back[4] = {r[3].id, r[4].id, r[5].id, r[6].id};
    assert_int_equal(spool_nack(f->sp, back, 4), 0);
    fail_in = 2;
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     -ENOMEM);
    assert_int_equal(inflight(f->sp), 6);
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(seq_of(&r[i]), 3 + i);
    assert_int_equal(spool_peek_lane(f->sp, SPOOL_LANE_NORMAL, r, 16, SIZE_MAX),
                     0);
}

/* A peek of all lanes: the fast lane's records were taken, then the
 * normal lane failed. The caller gets nothing, so the fast ones go back
 * too, first in line. */
static void test_all_lanes_peek_fails_midway(void **state)
{
    struct fx *f = *state;
    struct spool_rec r[16];
    for (int i = 0; i < 3; i++)
        put(f->sp, SPOOL_LANE_FAST, i);
    for (int i = 3; i < 6; i++)
        put(f->sp, SPOOL_LANE_NORMAL, i);
    fail_in = 4; /* three fast ones, then the normal lane's second */
    assert_int_equal(spool_peek(f->sp, r, 16, SIZE_MAX), -ENOMEM);
    assert_int_equal(inflight(f->sp), 0);
    assert_int_equal(spool_peek(f->sp, r, 16, SIZE_MAX), 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(seq_of(&r[i]), i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lane_peek_fails_midway, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nacked_peek_fails_midway, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_all_lanes_peek_fails_midway, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
