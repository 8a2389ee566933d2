/*
 * test_batch.c — the burst buffer: records come back byte for byte after
 * the buffer moved (it grows by realloc: records keep offsets, not
 * pointers), rewinding drops exactly what came after the mark, the caps on
 * records and bytes refuse without damage, and a buffer grown by a big
 * burst shrinks back when cleared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bridge/batch.h"

static void fill(struct batch_rec *r, char *topic, char *val, size_t len, int i)
{
    snprintf(topic, 64, "t/%d", i);
    memset(val, 'a' + i % 26, len);
    *r = (struct batch_rec){.topic = topic,
                            .key = i % 2 ? "k" : NULL,
                            .key_len = i % 2 ? 1 : 0,
                            .headers = "hh",
                            .headers_len = 2,
                            .value = val,
                            .len = len,
                            .recv_ms = 1000 + i,
                            .route = i % 3,
                            .tag = i};
}

static void test_grows_and_keeps_bytes(void **state)
{
    struct batch b;
    static char val[200][3000];
    char topic[200][64];
    (void)state;
    assert_int_equal(batch_init(&b, 1000, 256, 1 << 24), 0);
    for (int i = 0; i < 200; i++) {
        struct batch_rec r;
        fill(&r, topic[i], val[i], (size_t)(i * 13 % 3000), i);
        assert_int_equal(batch_add(&b, &r), 0);
    }
    assert_true(b.cap > 256); /* it moved, probably several times */
    for (size_t i = 0; i < 200; i++) {
        struct batch_rec g;
        char want[64];
        batch_get(&b, i, &g);
        snprintf(want, sizeof want, "t/%zu", i);
        assert_string_equal(g.topic, want);
        assert_int_equal(g.len, i * 13 % 3000);
        assert_memory_equal(g.value, val[i], g.len);
        assert_int_equal(g.headers_len, 2);
        assert_memory_equal(g.headers, "hh", 2);
        if (i % 2) {
            assert_non_null(g.key);
            assert_memory_equal(g.key, "k", 1);
        } else {
            assert_null(g.key);
        }
        assert_int_equal(g.recv_ms, 1000 + (int64_t)i);
        assert_int_equal(g.route, (int)(i % 3));
        assert_int_equal(g.tag, (int64_t)i);
    }
    size_t grown = b.cap;
    batch_clear(&b);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.used, 0);
    assert_true(b.cap < grown);
    assert_int_equal(b.cap, 256);
    batch_fini(&b);
}

static void test_mark_rewind(void **state)
{
    struct batch b;
    char topic[10][64], val[10][100];
    struct batch_rec r, g;
    (void)state;
    assert_int_equal(batch_init(&b, 100, 64, 1 << 20), 0);
    for (int i = 0; i < 3; i++) {
        fill(&r, topic[i], val[i], 50, i);
        assert_int_equal(batch_add(&b, &r), 0);
    }
    struct batch_mark m = batch_mark(&b);
    for (int i = 3; i < 10; i++) {
        fill(&r, topic[i], val[i], 100, i);
        assert_int_equal(batch_add(&b, &r), 0);
    }
    batch_rewind(&b, m);
    assert_int_equal(b.n, 3);
    fill(&r, topic[9], val[9], 7, 9);
    assert_int_equal(batch_add(&b, &r), 0);
    batch_get(&b, 3, &g);
    assert_string_equal(g.topic, "t/9");
    assert_int_equal(g.len, 7);
    batch_get(&b, 2, &g);
    assert_string_equal(g.topic, "t/2");
    assert_memory_equal(g.value, val[2], 50);
    batch_fini(&b);
}

static void test_caps(void **state)
{
    struct batch b;
    char topic[64], val[1000];
    struct batch_rec r;
    (void)state;
    /* records */
    assert_int_equal(batch_init(&b, 2, 64, 1 << 20), 0);
    fill(&r, topic, val, 10, 0);
    assert_int_equal(batch_add(&b, &r), 0);
    assert_int_equal(batch_add(&b, &r), 0);
    assert_int_equal(batch_add(&b, &r), -ENOSPC);
    assert_int_equal(b.n, 2);
    batch_fini(&b);
    /* bytes: a record that would pass the limit is refused whole */
    assert_int_equal(batch_init(&b, 100, 64, 2500), 0);
    fill(&r, topic, val, 1000, 1);
    assert_int_equal(batch_add(&b, &r), 0);
    assert_int_equal(batch_add(&b, &r), 0);
    size_t used = b.used;
    assert_int_equal(batch_add(&b, &r), -ENOSPC);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.used, used);
    assert_true(b.cap <= 2500);
    fill(&r, topic, val, 100, 1);
    assert_int_equal(batch_add(&b, &r), 0); /* a smaller one still fits */
    assert_true(batch_size_of(&r) == strlen(topic) + 1 + 1 + 2 + 100);
    batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_keeps_bytes),
        cmocka_unit_test(test_mark_rewind),
        cmocka_unit_test(test_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
