/*
 * test_record.c — the header blob the spool stores: headers come back as
 * they went in, limits refuse instead of truncating, and a malformed blob
 * is reported, never read past its end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "bridge/record.h"

static void test_round_trip(void **state)
{
    unsigned char buf[512];
    struct record_hdrs h = {.buf = buf, .cap = sizeof buf};
    struct record_hdr out[8];
    char names[256];
    (void)state;
    assert_int_equal(record_hdr_add_str(&h, "mqtt.topic", "a/b"), 0);
    assert_int_equal(record_hdr_add_i64(&h, "received.ms", -1700000000000), 0);
    assert_int_equal(record_hdr_add(&h, "bin", "\0\1\2", 3), 0);
    assert_int_equal(record_hdr_add(&h, "empty", "", 0), 0);
    int n = record_hdrs_decode(h.buf, h.len, out, 8, names, sizeof names);
    assert_int_equal(n, 4);
    assert_string_equal(out[0].name, "mqtt.topic");
    assert_int_equal(out[0].len, 3);
    assert_memory_equal(out[0].value, "a/b", 3);
    assert_string_equal(out[1].name, "received.ms");
    assert_int_equal(out[1].len, 14);
    assert_memory_equal(out[1].value, "-1700000000000", 14);
    assert_int_equal(out[2].len, 3);
    assert_memory_equal(out[2].value, "\0\1\2", 3);
    assert_string_equal(out[3].name, "empty");
    assert_int_equal(out[3].len, 0);
}

static void test_limits(void **state)
{
    unsigned char buf[64];
    struct record_hdrs h = {.buf = buf, .cap = sizeof buf};
    char big[300];
    struct record_hdr out[2];
    char names[16];
    (void)state;
    memset(big, 'n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(record_hdr_add_str(&h, big, "v"), -ENOSPC); /* name */
    assert_int_equal(record_hdr_add(&h, "", "v", 1), -ENOSPC);
    assert_int_equal(record_hdr_add(&h, "v", big, 70000), -ENOSPC);
    assert_int_equal(record_hdr_add(&h, "a", big, 60), 0);
    assert_int_equal(record_hdr_add(&h, "b", "x", 1), -ENOSPC); /* full */
    assert_int_equal(h.len, 64);
    /* more headers than room, or names longer than the scratch */
    unsigned char two[32];
    struct record_hdrs h2 = {.buf = two, .cap = sizeof two};
    assert_int_equal(record_hdr_add_str(&h2, "x", "1"), 0);
    assert_int_equal(record_hdr_add_str(&h2, "y", "2"), 0);
    assert_int_equal(record_hdrs_decode(two, h2.len, out, 1, names, 16),
                     -EINVAL);
    assert_int_equal(record_hdrs_decode(two, h2.len, out, 2, names, 3),
                     -EINVAL);
    assert_int_equal(record_hdrs_decode(two, h2.len, out, 2, names, 16), 2);
}

static void test_malformed(void **state)
{
    struct record_hdr out[4];
    char names[64];
    (void)state;
    /* a name length past the end */
    assert_int_equal(record_hdrs_decode("\x09mqt", 4, out, 4, names, 64),
                     -EINVAL);
    /* a value length past the end */
    assert_int_equal(
        record_hdrs_decode("\x01k\x00\x09vv", 6, out, 4, names, 64), -EINVAL);
    /* cut inside the value length */
    assert_int_equal(record_hdrs_decode("\x01k\x00", 3, out, 4, names, 64),
                     -EINVAL);
    assert_int_equal(record_hdrs_decode("", 0, out, 4, names, 64), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
