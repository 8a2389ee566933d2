/*
 * chunk.c — chunk headers and putting chunks together (see chunk.h).
 *
 * Pure and libc only: the daemon's fat lane formats the headers, the
 * reassemble tool parses them and places each chunk. A chunk's place is
 * computed from its own length and index alone (every chunk but the last
 * is L bytes long, the last holds the rest), so chunks may arrive in any
 * order, repeated, and nothing but a bit per chunk is held.
 */
#include "bridge/chunk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t chunk_count(int64_t size, size_t chunk_bytes)
{
    if (size <= 0 || chunk_bytes == 0)
        return 0;
    int64_t n = (size - 1) / (int64_t)chunk_bytes + 1;
    return n > CHUNK_COUNT_MAX ? 0 : (uint32_t)n;
}

size_t chunk_window_limit(int64_t win_bytes)
{
    int64_t most = win_bytes / 4 - CHUNK_HDRS_ROOM;
    return most > CHUNK_MIN_BYTES ? (size_t)most : CHUNK_MIN_BYTES;
}

void chunk_text(struct chunk_text *t, uint32_t index, uint32_t count,
                int64_t size, const unsigned char sha256[CHUNK_SHA256_LEN])
{
    static const char hex[] = "0123456789abcdef";
    snprintf(t->index, sizeof t->index, "%" PRIu32, index);
    snprintf(t->count, sizeof t->count, "%" PRIu32, count);
    snprintf(t->size, sizeof t->size, "%" PRId64, size);
    for (int i = 0; i < CHUNK_SHA256_LEN; i++) {
        t->sha256[2 * i] = hex[sha256[i] >> 4];
        t->sha256[2 * i + 1] = hex[sha256[i] & 15];
    }
    t->sha256[2 * CHUNK_SHA256_LEN] = '\0';
}

/* A decimal number of at most 19 digits, no sign, no blanks. */
static int number(const void *v, size_t len, int64_t max, int64_t *out)
{
    const char *s = v;
    int64_t n = 0;
    if (len == 0 || len > 19)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        n = n * 10 + (s[i] - '0');
    }
    if (n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

static int unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int bad(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return -EINVAL;
}

int chunk_parse(const struct chunk_kv *h, size_t n, struct chunk_meta *m,
                char *why, size_t whylen)
{
    const struct chunk_kv *id = NULL, *idx = NULL, *cnt = NULL, *size = NULL,
                          *sha = NULL;
    int64_t v;
    for (size_t i = 0; i < n; i++) {
        const char *k = h[i].name;
        if (!strcmp(k, CHUNK_HDR_ID))
            id = &h[i];
        else if (!strcmp(k, CHUNK_HDR_INDEX))
            idx = &h[i];
        else if (!strcmp(k, CHUNK_HDR_COUNT))
            cnt = &h[i];
        else if (!strcmp(k, CHUNK_HDR_SIZE))
            size = &h[i];
        else if (!strcmp(k, CHUNK_HDR_SHA256))
            sha = &h[i];
    }
    if (!idx)
        return 0;
    memset(m, 0, sizeof *m);
    if (!id || id->len == 0 || id->len > CHUNK_ID_MAX)
        return bad(why, whylen, "no m2k.id, or one too long");
    for (size_t i = 0; i < id->len; i++) {
        char c = ((const char *)id->value)[i];
        if (c <= ' ' || c == '/' || c == 0x7f)
            return bad(why, whylen,
                       "m2k.id has characters a file name "
                       "cannot have");
    }
    memcpy(m->id, id->value, id->len);
    if (!cnt || number(cnt->value, cnt->len, CHUNK_COUNT_MAX, &v) || v < 1)
        return bad(why, whylen, "m2k.chunks missing or not a count");
    m->count = (uint32_t)v;
    if (number(idx->value, idx->len, CHUNK_COUNT_MAX, &v) || v >= m->count)
        return bad(why, whylen, "m2k.chunk is not an index below m2k.chunks");
    m->index = (uint32_t)v;
    if (!size || number(size->value, size->len, INT64_MAX, &v) || v < m->count)
        return bad(why, whylen, "m2k.size missing or too small");
    m->size = v;
    if (!sha || sha->len != 2 * CHUNK_SHA256_LEN)
        return bad(why, whylen, "m2k.sha256 missing or not 64 hex digits");
    for (int i = 0; i < CHUNK_SHA256_LEN; i++) {
        int a = unhex(((const char *)sha->value)[2 * i]);
        int b = unhex(((const char *)sha->value)[2 * i + 1]);
        if (a < 0 || b < 0)
            return bad(why, whylen, "m2k.sha256 is not hex");
        m->sha256[i] = (unsigned char)(a << 4 | b);
    }
    return 1;
}

int chunk_set_init(struct chunk_set *s, const struct chunk_meta *m)
{
    memset(s, 0, sizeof *s);
    s->m = *m;
    s->seen = calloc((m->count + 7) / 8, 1);
    return s->seen ? 0 : -ENOMEM;
}

void chunk_set_fini(struct chunk_set *s)
{
    free(s->seen);
    memset(s, 0, sizeof *s);
}

int chunk_set_add(struct chunk_set *s, const struct chunk_meta *m, size_t len,
                  int64_t *offset, char *why, size_t whylen)
{
    const uint32_t last = s->m.count - 1;
    if (m->count != s->m.count || m->size != s->m.size ||
        memcmp(m->sha256, s->m.sha256, CHUNK_SHA256_LEN))
        return bad(why, whylen,
                   "its m2k.chunks, m2k.size or m2k.sha256 "
                   "differ from the other chunks'");
    if (len == 0 || (int64_t)len > s->m.size)
        return bad(why, whylen, "its length does not fit m2k.size");
    if (m->index < last) {
        /* L: the payload is count chunks of L, the last one shorter or
         * equal */
        int64_t l = (int64_t)len;
        if ((int64_t)last * l >= s->m.size || s->m.size - (int64_t)last * l > l)
            return bad(why, whylen,
                       "its length does not make m2k.chunks "
                       "chunks of m2k.size");
        if ((s->part && s->part != len) ||
            (s->last_len && l * last + (int64_t)s->last_len != s->m.size))
            return bad(why, whylen,
                       "its length differs from the other "
                       "chunks'");
        s->part = len;
        *offset = (int64_t)m->index * l;
    } else {
        if (s->last_len && s->last_len != len) /* before the copy check */
            return bad(why, whylen,
                       "its length differs from the last chunk's seen "
                       "before");
        if (s->part &&
            (int64_t)last * (int64_t)s->part + (int64_t)len != s->m.size)
            return bad(why, whylen,
                       "the last chunk's length does not end "
                       "at m2k.size");
        *offset = s->m.size - (int64_t)len;
        s->last_len = len;
    }
    unsigned char bit = (unsigned char)(1u << (m->index & 7));
    if (s->seen[m->index / 8] & bit) {
        s->dups++;
        return 0;
    }
    s->seen[m->index / 8] |= bit;
    s->got++;
    return 1;
}

int chunk_set_complete(const struct chunk_set *s)
{
    return s->got == s->m.count;
}

uint32_t chunk_set_missing(const struct chunk_set *s, uint32_t *out, size_t max)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->m.count; i++)
        if (!(s->seen[i / 8] & (1u << (i & 7)))) {
            if (n < max)
                out[n] = i;
            n++;
        }
    return n;
}
