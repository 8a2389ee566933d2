/*
 * test_chunk.c — chunk.c: how a large payload is cut, the headers every
 * chunk carries, and putting chunks back together as `mqtt2kafka
 * reassemble` does: in any order, repeated, with what is missing named by
 * index and what does not belong refused.
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

#include "bridge/chunk.h"
#include "bridge/record.h"

static const unsigned char sha[CHUNK_SHA256_LEN] = {
    0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
    0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0xff, 0x0f,
    0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5};

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(chunk_count(20000000, 512 * 1024), 39);
    assert_int_equal(chunk_count(512 * 1024, 512 * 1024), 1);
    assert_int_equal(chunk_count(512 * 1024 + 1, 512 * 1024), 2);
    assert_int_equal(chunk_count(1, 16384), 1);
    assert_int_equal(chunk_count(0, 16384), 0);
    assert_int_equal(chunk_count(100, 0), 0);
    assert_int_equal(chunk_count((int64_t)CHUNK_COUNT_MAX * 10, 10),
                     CHUNK_COUNT_MAX);
    assert_int_equal(chunk_count((int64_t)CHUNK_COUNT_MAX * 10 + 1, 10), 0);
}

/* The headers a chunk gets, as text, parse back to what they said. */
/* A chunk is cut to the fat lane's quarter of the byte window less room
 * for headers, never below the size that still cuts the largest payload
 * (256 MiB) into at most CHUNK_COUNT_MAX chunks. */
static void test_window_limit(void **state)
{
    (void)state;
    assert_int_equal(chunk_window_limit(16 << 20), (4 << 20) - 2048);
    assert_int_equal(chunk_window_limit(64 * 1024), 16 * 1024 - 2048);
    assert_int_equal(chunk_window_limit(0), 4096);
    assert_true(chunk_count(268435455, chunk_window_limit(64 * 1024)) > 0);
    assert_true(chunk_count(268435455, chunk_window_limit(1)) > 0);
}

static void test_text_and_parse(void **state)
{
    (void)state;
    struct chunk_text t;
    chunk_text(&t, 7, 39, 20000000, sha);
    assert_string_equal(t.index, "7");
    assert_string_equal(t.count, "39");
    assert_string_equal(t.size, "20000000");
    assert_string_equal(t.sha256, "0001abcdef102030405060708090a0b0c0d0e0f0"
                                  "ff0f1e2d3c4b5a69788796a5");
    struct chunk_kv h[] = {
        {"mqtt.topic", "cam/7", 5},
        {CHUNK_HDR_ID, "86f82584b17e184d-12", 19},
        {CHUNK_HDR_INDEX, t.index, strlen(t.index)},
        {CHUNK_HDR_COUNT, t.count, strlen(t.count)},
        {CHUNK_HDR_SIZE, t.size, strlen(t.size)},
        {CHUNK_HDR_SHA256, t.sha256, strlen(t.sha256)},
    };
    struct chunk_meta m;
    char why[128];
    assert_int_equal(chunk_parse(h, 6, &m, why, sizeof why), 1);
    assert_string_equal(m.id, "86f82584b17e184d-12");
    assert_int_equal(m.index, 7);
    assert_int_equal(m.count, 39);
    assert_int_equal(m.size, 20000000);
    assert_memory_equal(m.sha256, sha, CHUNK_SHA256_LEN);
    /* a record that is no chunk */
    assert_int_equal(chunk_parse(h, 2, &m, why, sizeof why), 0);
    /* the names are the bridge's own: a device cannot forge them */
    assert_true(record_reserved_name(CHUNK_HDR_INDEX));
    assert_true(record_reserved_name(CHUNK_HDR_SHA256));
    assert_true(record_reserved_name("M2K.Chunks"));
}

static void test_parse_refuses_malformed(void **state)
{
    (void)state;
    char hex[65];
    memset(hex, 'a', 64);
    hex[64] = 0;
    struct {
        const char *id, *idx, *cnt, *size, *sha, *want;
    } cases[] = {
        {NULL, "0", "2", "10", hex, "m2k.id"},
        {"a/b", "0", "2", "10", hex, "file name"},
        {"x", "0", "0", "10", hex, "m2k.chunks"},
        {"x", "2", "2", "10", hex, "m2k.chunk"},
        {"x", "-1", "2", "10", hex, "m2k.chunk"},
        {"x", "0", "2", "1", hex, "m2k.size"},
        {"x", "0", "2", "1x", hex, "m2k.size"},
        {"x", "0", "2", "10", "abc", "m2k.sha256"},
        {"x", "0", "2", "10", NULL, "m2k.sha256"},
    };
    hex[3] = 'g';
    cases[7].sha = "abc";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chunk_kv h[5];
        size_t n = 0;
        if (cases[i].id)
            h[n++] = (struct chunk_kv){CHUNK_HDR_ID, cases[i].id,
                                       strlen(cases[i].id)};
        h[n++] = (struct chunk_kv){CHUNK_HDR_INDEX, cases[i].idx,
                                   strlen(cases[i].idx)};
        h[n++] = (struct chunk_kv){CHUNK_HDR_COUNT, cases[i].cnt,
                                   strlen(cases[i].cnt)};
        h[n++] = (struct chunk_kv){CHUNK_HDR_SIZE, cases[i].size,
                                   strlen(cases[i].size)};
        if (cases[i].sha)
            h[n++] = (struct chunk_kv){CHUNK_HDR_SHA256, cases[i].sha,
                                       strlen(cases[i].sha)};
        struct chunk_meta m;
        char why[128] = "";
        assert_int_equal(chunk_parse(h, n, &m, why, sizeof why), -EINVAL);
        if (!strstr(why, cases[i].want))
            fail_msg("case %zu: \"%s\" does not name %s", i, why,
                     cases[i].want);
    }
    /* hex with a non-hex digit */
    struct chunk_kv h[] = {{CHUNK_HDR_ID, "x", 1},
                           {CHUNK_HDR_INDEX, "0", 1},
                           {CHUNK_HDR_COUNT, "2", 1},
                           {CHUNK_HDR_SIZE, "10", 2},
                           {CHUNK_HDR_SHA256, hex, 64}};
    struct chunk_meta m;
    char why[128];
    assert_int_equal(chunk_parse(h, 5, &m, why, sizeof why), -EINVAL);
}

static struct chunk_meta meta(uint32_t index, uint32_t count, int64_t size)
{
    struct chunk_meta m = {.index = index, .count = count, .size = size};
    snprintf(m.id, sizeof m.id, "e-1");
    memcpy(m.sha256, sha, CHUNK_SHA256_LEN);
    return m;
}

/* 10 bytes in chunks of 4: 4 + 4 + 2, arriving last first and repeated;
 * what is missing is named, a repeat skipped, the places right. */
static void test_set_places_any_order(void **state)
{
    (void)state;
    struct chunk_set s;
    struct chunk_meta m = meta(2, 3, 10);
    int64_t at;
    uint32_t miss[4];
    char why[128];
    assert_int_equal(chunk_set_init(&s, &m), 0);
    assert_int_equal(chunk_set_add(&s, &m, 2, &at, why, sizeof why), 1);
    assert_int_equal(at, 8);
    assert_int_equal(chunk_set_missing(&s, miss, 4), 2);
    assert_int_equal(miss[0], 0);
    assert_int_equal(miss[1], 1);
    m.index = 0;
    assert_int_equal(chunk_set_add(&s, &m, 4, &at, why, sizeof why), 1);
    assert_int_equal(at, 0);
    assert_int_equal(chunk_set_add(&s, &m, 4, &at, why, sizeof why), 0);
    assert_int_equal(s.dups, 1);
    assert_false(chunk_set_complete(&s));
    assert_int_equal(chunk_set_missing(&s, miss, 4), 1);
    assert_int_equal(miss[0], 1);
    m.index = 1;
    assert_int_equal(chunk_set_add(&s, &m, 4, &at, why, sizeof why), 1);
    assert_int_equal(at, 4);
    assert_true(chunk_set_complete(&s));
    assert_int_equal(chunk_set_missing(&s, miss, 4), 0);
    chunk_set_fini(&s);
}

/* Chunks that cannot be of this payload are refused, with why. */
/* The last chunk seen again with another length (two producers of one
 * id, a corrupt copy): refused, and the length kept is the first one's,
 * so the right chunks still fit. */
static void test_conflicting_last_chunk_refused(void **state)
{
    (void)state;
    struct chunk_set s;
    struct chunk_meta m = meta(2, 3, 100);
    int64_t at;
    char why[128];
    assert_int_equal(chunk_set_init(&s, &m), 0);
    assert_int_equal(chunk_set_add(&s, &m, 30, &at, why, sizeof why), 1);
    assert_int_equal(chunk_set_add(&s, &m, 20, &at, why, sizeof why), -EINVAL);
    assert_int_equal(chunk_set_add(&s, &m, 30, &at, why, sizeof why), 0);
    m.index = 0;
    assert_int_equal(chunk_set_add(&s, &m, 35, &at, why, sizeof why), 1);
    m.index = 1;
    assert_int_equal(chunk_set_add(&s, &m, 35, &at, why, sizeof why), 1);
    assert_true(chunk_set_complete(&s));
    chunk_set_fini(&s);
}

static void test_set_refuses_what_does_not_fit(void **state)
{
    (void)state;
    struct chunk_set s;
    struct chunk_meta m = meta(0, 3, 100); /* L in 34..49 */
    int64_t at;
    char why[128];
    assert_int_equal(chunk_set_init(&s, &m), 0);
    assert_int_equal(chunk_set_add(&s, &m, 50, &at, why, sizeof why),
                     -EINVAL); /* 2 * 50 = 100: no room for a third */
    assert_int_equal(chunk_set_add(&s, &m, 33, &at, why, sizeof why),
                     -EINVAL); /* 33 * 2 + 34 > 3 chunks */
    assert_int_equal(chunk_set_add(&s, &m, 40, &at, why, sizeof why), 1);
    m.index = 1;
    assert_int_equal(chunk_set_add(&s, &m, 41, &at, why, sizeof why),
                     -EINVAL); /* not the length of the others */
    m.index = 2;
    assert_int_equal(chunk_set_add(&s, &m, 21, &at, why, sizeof why),
                     -EINVAL); /* 40 + 40 + 21 != 100 */
    assert_int_equal(chunk_set_add(&s, &m, 20, &at, why, sizeof why), 1);
    assert_int_equal(at, 80);
    struct chunk_meta other = meta(1, 3, 101);
    assert_int_equal(chunk_set_add(&s, &other, 40, &at, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "m2k.size"));
    other = meta(1, 3, 100);
    other.sha256[0] ^= 1;
    assert_int_equal(chunk_set_add(&s, &other, 40, &at, why, sizeof why),
                     -EINVAL);
    chunk_set_fini(&s);
    /* the last one first fixes L for the rest */
    m = meta(2, 3, 100);
    assert_int_equal(chunk_set_init(&s, &m), 0);
    assert_int_equal(chunk_set_add(&s, &m, 30, &at, why, sizeof why), 1);
    assert_int_equal(at, 70);
    m.index = 0;
    assert_int_equal(chunk_set_add(&s, &m, 40, &at, why, sizeof why), -EINVAL);
    assert_int_equal(chunk_set_add(&s, &m, 35, &at, why, sizeof why), 1);
    chunk_set_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_window_limit),
        cmocka_unit_test(test_text_and_parse),
        cmocka_unit_test(test_parse_refuses_malformed),
        cmocka_unit_test(test_set_places_any_order),
        cmocka_unit_test(test_set_refuses_what_does_not_fit),
        cmocka_unit_test(test_conflicting_last_chunk_refused),
    };
    return cmocka_run_group_tests_name("chunk", tests, NULL, NULL);
}
