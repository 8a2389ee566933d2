/*
 * test_redeliver.c — recognising a broker's redelivery of committed
 * messages: only right after a resumed session, only tags among the last
 * `recent` committed, and the first new message ends the check. The
 * 65,536 packet ids wrap; a repeated identical heartbeat under a new id is
 * never taken for a redelivery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "bridge/redeliver.h"

static int64_t tag(int mid, const char *payload)
{
    return redeliver_tag("s/x", payload, strlen(payload), 1, mid);
}

static void test_tags(void **state)
{
    (void)state;
    assert_int_equal(redeliver_tag("t", "p", 1, 0, 5), 0); /* QoS 0 */
    assert_int_equal(redeliver_tag("t", "p", 1, 1, 0), 0);
    assert_int_equal(redeliver_tag("t", "p", 1, 1, 65536), 0);
    int64_t a = tag(7, "hello");
    assert_true(a > 0);
    assert_int_equal(redeliver_mid(a), 7);
    assert_true(a != tag(8, "hello"));
    assert_true(a != tag(7, "hellp"));
    assert_true(a != redeliver_tag("s/y", "hello", 5, 1, 7));
    assert_true(a == tag(7, "hello"));
    assert_int_equal(redeliver_mid(tag(65535, "x")), 65535);
}

static void test_resumed_session_only(void **state)
{
    struct redeliver *rd;
    (void)state;
    assert_int_equal(redeliver_new(4, &rd), 0);
    redeliver_remember(rd, tag(1, "a"));
    redeliver_remember(rd, tag(2, "b"));
    /* a new session: nothing is a redelivery */
    redeliver_session(rd, 0);
    assert_int_equal(redeliver_check(rd, 1, tag(1, "a")), 0);
    /* resumed: the resends match until the first new message */
    redeliver_session(rd, 1);
    assert_int_equal(redeliver_check(rd, 1, tag(1, "a")), 1);
    assert_int_equal(redeliver_check(rd, 2, tag(2, "b")), 1);
    assert_int_equal(redeliver_check(rd, 3, tag(3, "c")), 0);
    assert_int_equal(redeliver_check(rd, 2, tag(2, "b")), 0); /* over */
    redeliver_free(rd);
    redeliver_free(NULL);
}

static void test_window(void **state)
{
    struct redeliver *rd;
    (void)state;
    assert_int_equal(redeliver_new(3, &rd), 0);
    for (int mid = 1; mid <= 5; mid++)
        redeliver_remember(rd, tag(mid, "x"));
    redeliver_remember(rd, tag(5, "x")); /* split records share a tag */
    redeliver_session(rd, 1);
    /* 1 and 2 fell out of the window of 3 */
    assert_int_equal(redeliver_check(rd, 1, tag(1, "x")), 0);
    redeliver_session(rd, 1);
    assert_int_equal(redeliver_check(rd, 3, tag(3, "x")), 1);
    assert_int_equal(redeliver_check(rd, 4, tag(4, "x")), 1);
    assert_int_equal(redeliver_check(rd, 5, tag(5, "x")), 1);
    redeliver_free(rd);
}

/* 67,000 identical heartbeats: packet ids wrap, the same payload comes
 * back under an id used 65,535 messages ago. After a reconnect, the next
 * heartbeat (a new id, not among the recent) is new. */
static void test_wrap(void **state)
{
    struct redeliver *rd;
    (void)state;
    assert_int_equal(redeliver_new(4096, &rd), 0);
    int mid = 0;
    for (int i = 0; i < 67000; i++) {
        mid = mid % 65535 + 1;
        redeliver_remember(rd, tag(mid, "beat"));
    }
    redeliver_session(rd, 1);
    int next = mid % 65535 + 1; /* used 65,535 messages ago: forgotten */
    assert_int_equal(redeliver_check(rd, next, tag(next, "beat")), 0);
    redeliver_session(rd, 1);
    assert_int_equal(redeliver_check(rd, mid, tag(mid, "beat")), 1);
    redeliver_free(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_resumed_session_only),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
