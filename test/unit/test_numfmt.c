/*
 * test_numfmt.c — numbers as Python prints them (repr of a float, the form
 * protobuf's json_format uses): the expected texts below are what Python 3
 * printed for the same values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bridge/numfmt.h"

static void expect_double(double v, const char *want)
{
    char out[NUMFMT_MAX + 1];
    size_t n = numfmt_double(out, v);
    assert_true(n <= NUMFMT_MAX);
    out[n] = '\0';
    if (strcmp(out, want))
        fail_msg("%a: got \"%s\", want \"%s\"", v, out, want);
}

static void test_doubles(void **state)
{
    (void)state;
    expect_double(0.0, "0.0");
    expect_double(21.0, "21.0");
    expect_double(21.3, "21.3");
    expect_double(-0.5, "-0.5");
    expect_double(1e-05, "1e-05");
    expect_double(0.0001, "0.0001");
    expect_double(123456789012345.0, "123456789012345.0");
    expect_double(1e15, "1000000000000000.0");
    expect_double(1e16, "1e+16");
    expect_double(1.7976931348623157e308, "1.7976931348623157e+308");
    expect_double(5e-324, "5e-324");
    expect_double(2.2250738585072014e-308, "2.2250738585072014e-308");
    expect_double(0.1 + 0.2, "0.30000000000000004");
    expect_double(-1234.5678, "-1234.5678");
    expect_double(3e-07, "3e-07");
    expect_double(100.0, "100.0");
    expect_double(9007199254740992.0, "9007199254740992.0");
}

static void test_floats_and_ints(void **state)
{
    char out[NUMFMT_MAX + 1];
    size_t n;
    (void)state;
    n = numfmt_float(out, 0.1f);
    assert_memory_equal(out, "0.1", n);
    assert_int_equal(n, 3);
    n = numfmt_float(out, 3.14159f);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "3.14159", n);
    n = numfmt_float(out, 1e-7f);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "1e-07", n);
    n = numfmt_float(out, 16777216.0f);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "16777216.0", n);
    n = numfmt_i64(out, INT64_MIN);
    assert_int_equal(n, 20);
    assert_memory_equal(out, "-9223372036854775808", n);
    n = numfmt_u64(out, UINT64_MAX);
    assert_int_equal(n, 20);
    assert_memory_equal(out, "18446744073709551615", n);
    n = numfmt_i64(out, 0);
    assert_int_equal(n, 1);
    assert_memory_equal(out, "0", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_floats_and_ints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
