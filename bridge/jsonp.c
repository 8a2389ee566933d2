/*
 * jsonp.c — JSON payloads (jsonp.h) through jansson (Debian's
 * libjansson): jansson validates and parses, this file bounds what it may
 * cost and walks the result. jansson's allocator is process-wide; it is
 * set here once to one that counts, so a parse that would hold more than
 * JSONP_MEM_MAX fails (the one thread that decodes is the only user).
 * Numbers are written by numfmt.c. No I/O.
 */
#include "bridge/jsonp.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/numfmt.h"

struct jsonp {
    json_t *doc;
    unsigned char *out;
    size_t len, cap;
    int full;
};

/* ---- jansson's allocator: counted and capped ----------------------------- */

static size_t held;

static void *counted_malloc(size_t n)
{
    size_t *p;
    if (n > JSONP_MEM_MAX || held + n > JSONP_MEM_MAX ||
        !(p = malloc(n + sizeof(max_align_t))))
        return NULL;
    *p = n;
    held += n;
    return (char *)p + sizeof(max_align_t);
}

static void counted_free(void *q)
{
    if (!q)
        return;
    size_t *p = (size_t *)(void *)((char *)q - sizeof(max_align_t));
    held -= *p;
    free(p);
}

int jsonp_new(struct jsonp **out)
{
    static int set;
    if (!set) {
        json_set_alloc_funcs(counted_malloc, counted_free);
        set = 1;
    }
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void jsonp_free(struct jsonp *j)
{
    if (!j)
        return;
    json_decref(j->doc);
    free(j->out);
    free(j);
}

/* How deep arrays and objects nest, strings skipped; stops past max. */
static unsigned depth_of(const unsigned char *p, size_t n, unsigned max)
{
    unsigned d = 0, most = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"') {
            for (i++; i < n && p[i] != '"'; i++)
                if (p[i] == '\\')
                    i++;
        } else if (p[i] == '[' || p[i] == '{') {
            if (++d > most && (most = d) > max)
                return most;
        } else if ((p[i] == ']' || p[i] == '}') && d) {
            d--;
        }
    }
    return most;
}

int jsonp_parse(struct jsonp *j, const void *buf, size_t len, char *why,
                size_t whylen)
{
    json_error_t e;
    json_decref(j->doc);
    j->doc = NULL;
    if (depth_of(buf, len, JSONP_DEPTH_MAX) > JSONP_DEPTH_MAX) {
        snprintf(why, whylen, "invalid JSON: nested deeper than %d",
                 JSONP_DEPTH_MAX);
        return -EINVAL;
    }
    j->doc = json_loadb(
        buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
        &e);
    if (!j->doc) {
        if (held + len > JSONP_MEM_MAX / 2 && !strcmp(e.text, "out of memory"))
            snprintf(why, whylen,
                     "the JSON payload (%zu bytes) would take more than %u "
                     "MiB to hold",
                     len, JSONP_MEM_MAX >> 20);
        else
            snprintf(why, whylen, "invalid JSON at line %d, column %d: %s",
                     e.line, e.column, e.text);
        return -EINVAL;
    }
    return 0;
}

static json_t *find(json_t *v, const char *path, size_t len)
{
    const char *p = path, *end = path + len;
    while (v) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = (size_t)((dot ? dot : end) - p);
        if (!json_is_object(v))
            return NULL;
        v = json_object_getn(v, p, n);
        if (!dot)
            return v;
        p = dot + 1;
    }
    return NULL;
}

int jsonp_field_text(const struct jsonp *j, const char *path, size_t len,
                     char *buf, size_t cap, size_t *olen)
{
    json_t *v = j->doc ? find(j->doc, path, len) : NULL;
    char num[NUMFMT_MAX + 1];
    const char *s = num;
    size_t n;
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_NULL:
        return -ENOENT;
    case JSON_OBJECT:
    case JSON_ARRAY:
        return -EINVAL;
    case JSON_STRING:
        s = json_string_value(v);
        n = json_string_length(v);
        break;
    case JSON_INTEGER:
        n = numfmt_i64(num, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        n = numfmt_double(num, json_real_value(v));
        break;
    case JSON_TRUE:
        s = "true", n = 4;
        break;
    default:
        s = "false", n = 5;
        break;
    }
    if (n > cap)
        return -ENOSPC;
    memcpy(buf, s, n);
    *olen = n;
    return 0;
}

/* ---- compact output ------------------------------------------------------ */

static void put(struct jsonp *j, const void *s, size_t n)
{
    if (j->full)
        return;
    if (n > JSONP_OUT_MAX - j->len) {
        j->full = 1;
        return;
    }
    if (j->cap - j->len < n) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap - j->len < n)
            cap *= 2;
        unsigned char *p = realloc(j->out, cap);
        if (!p) {
            j->full = 1;
            return;
        }
        j->out = p;
        j->cap = cap;
    }
    memcpy(j->out + j->len, s, n);
    j->len += n;
}

static void str(struct jsonp *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    put(j, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        put(j, s + i - run, run);
        run = 0;
        char e[6] = {'\\', (char)c, 0, 0, 0, 0};
        if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            e[1] = c == '\n'   ? 'n'
                   : c == '\r' ? 'r'
                   : c == '\t' ? 't'
                   : c == '\b' ? 'b'
                               : 'f';
            put(j, e, 2);
        } else if (c < 0x20) {
            memcpy(e + 1, "u00", 3);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            put(j, e, 6);
        } else {
            put(j, e, 2);
        }
    }
    put(j, s + n - run, run);
    put(j, "\"", 1);
}

static void value(struct jsonp *j, json_t *v)
{
    char num[NUMFMT_MAX + 1];
    size_t i;
    const char *k;
    json_t *x;
    int first = 1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put(j, "{", 1);
        json_object_foreach(v, k, x)
        {
            if (!first)
                put(j, ",", 1);
            first = 0;
            str(j, k, strlen(k));
            put(j, ":", 1);
            value(j, x);
        }
        put(j, "}", 1);
        return;
    case JSON_ARRAY:
        put(j, "[", 1);
        json_array_foreach(v, i, x)
        {
            if (i)
                put(j, ",", 1);
            value(j, x);
        }
        put(j, "]", 1);
        return;
    case JSON_STRING:
        str(j, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        put(j, num, numfmt_i64(num, (int64_t)json_integer_value(v)));
        return;
    case JSON_REAL:
        put(j, num, numfmt_double(num, json_real_value(v)));
        return;
    case JSON_TRUE:
        put(j, "true", 4);
        return;
    case JSON_FALSE:
        put(j, "false", 5);
        return;
    default:
        put(j, "null", 4);
        return;
    }
}

int jsonp_compact(struct jsonp *j, const void **out, size_t *len)
{
    if (!j->doc)
        return -EINVAL;
    j->len = 0;
    j->full = 0;
    value(j, j->doc);
    if (j->full)
        return -EINVAL;
    *out = j->out;
    *len = j->len;
    return 0;
}
