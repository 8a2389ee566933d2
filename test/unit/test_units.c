/*
 * test_units.c — sizes and durations as people write them in a config and
 * read them in a summary.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "bridge/units.h"

static void test_units(void **state)
{
    int64_t v;
    (void)state;
    assert_int_equal(units_parse_size("1GiB", &v), 0);
    assert_int_equal(v, 1073741824LL);
    assert_int_equal(units_parse_size("512MiB", &v), 0);
    assert_int_equal(v, 512LL << 20);
    assert_int_equal(units_parse_size("100MB", &v), 0);
    assert_int_equal(v, 100000000LL);
    assert_int_equal(units_parse_size("1000", &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(units_parse_size("4 KiB", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(units_parse_size("1.5GiB", &v), -EINVAL);
    assert_int_equal(units_parse_size("GiB", &v), -EINVAL);
    assert_int_equal(units_parse_size("-1", &v), -EINVAL);
    assert_int_equal(units_parse_size("1XB", &v), -EINVAL);
    assert_int_equal(units_parse_size("99999999999TiB", &v), -EINVAL);
    assert_int_equal(units_parse_size("", &v), -EINVAL);

    assert_int_equal(units_parse_duration_ms("7d", &v), 0);
    assert_int_equal(v, 7LL * 86400000);
    assert_int_equal(units_parse_duration_ms("12h", &v), 0);
    assert_int_equal(v, 12LL * 3600000);
    assert_int_equal(units_parse_duration_ms("30m", &v), 0);
    assert_int_equal(v, 30LL * 60000);
    assert_int_equal(units_parse_duration_ms("45s", &v), 0);
    assert_int_equal(v, 45000);
    assert_int_equal(units_parse_duration_ms("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(units_parse_duration_ms("30", &v), 0); /* plain: seconds */
    assert_int_equal(v, 30000);
    assert_int_equal(units_parse_duration_ms("1y", &v), -EINVAL);
    assert_int_equal(units_parse_duration_ms("s", &v), -EINVAL);

    char buf[32];
    units_format_size(1073741824LL, buf, sizeof buf);
    assert_string_equal(buf, "1GiB");
    units_format_size(1000, buf, sizeof buf);
    assert_string_equal(buf, "1000B");
    units_format_duration_ms(604800000LL, buf, sizeof buf);
    assert_string_equal(buf, "7d");
    units_format_duration_ms(1500, buf, sizeof buf);
    assert_string_equal(buf, "1500ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
