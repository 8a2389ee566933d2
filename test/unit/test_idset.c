/*
 * test_idset.c — the spool's in-flight id set: membership through growth,
 * deletion in the middle of probe runs (no tombstones), ids past 2^32,
 * clear and fini; checked against a plain array model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "spool/idset.h"

static void test_add_has_del(void **state)
{
    struct idset s = {0};
    (void)state;
    assert_false(idset_has(&s, 1));
    assert_int_equal(idset_del(&s, 1), 0);
    for (int64_t i = 1; i <= 5000; i++)
        assert_int_equal(idset_add(&s, i * 7), 0);
    assert_int_equal(s.n, 5000);
    assert_int_equal(idset_add(&s, 7), 0); /* again: no change */
    assert_int_equal(s.n, 5000);
    for (int64_t i = 1; i <= 5000; i++) {
        assert_true(idset_has(&s, i * 7));
        assert_false(idset_has(&s, i * 7 + 1));
    }
    for (int64_t i = 1; i <= 5000; i += 2)
        assert_int_equal(idset_del(&s, i * 7), 1);
    assert_int_equal(s.n, 2500);
    for (int64_t i = 1; i <= 5000; i++)
        assert_int_equal(idset_has(&s, i * 7), i % 2 == 0);
    idset_clear(&s);
    assert_int_equal(s.n, 0);
    assert_false(idset_has(&s, 14));
    idset_fini(&s);
    idset_fini(&s); /* twice is harmless */
}

/* A random walk of adds and deletes against a model; ids cluster so that
 * probe runs are long, and straddle 2^32. */
static void test_model(void **state)
{
    enum { N = 4096, STEPS = 200000 };
    static unsigned char in[N];
    static uint32_t val[N];
    struct idset s = {0};
    uint64_t x = 88172645463325252ull;
    (void)state;
    memset(in, 0, sizeof in);
    for (int step = 0; step < STEPS; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = (size_t)(x % N);
        int64_t id = (1LL << 32) - N / 2 + (int64_t)k;
        if ((x >> 20) & 1) {
            /* a value that follows the id through shifts and growth */
            val[k] = (uint32_t)(x >> 33) | 1;
            assert_int_equal(idset_put(&s, id, val[k]), 0);
            in[k] = 1;
        } else {
            assert_int_equal(idset_del(&s, id), in[k]);
            in[k] = 0;
        }
        if (step % 10000 == 0) {
            size_t n = 0;
            for (size_t i = 0; i < N; i++) {
                n += in[i];
                uint32_t v = 0;
                int64_t id2 = (1LL << 32) - N / 2 + (int64_t)i;
                assert_int_equal(idset_has(&s, id2), in[i]);
                assert_int_equal(idset_get(&s, id2, &v), in[i]);
                if (in[i])
                    assert_int_equal(v, val[i]);
            }
            assert_int_equal(s.n, n);
        }
    }
    idset_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_has_del),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
