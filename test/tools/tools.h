/*
 * tools.h — small helpers shared by the test tools m2k-pub and m2k-verify.
 *
 * Header-only (every function is static inline) so each tool stays one
 * translation unit that the Makefile links on its own. Nothing here knows
 * MQTT, Kafka or the bridge: clocks, a token bucket, number parsing, a hash,
 * JSON string output and a minimal JSON reader.
 */
#ifndef MQTT2KAFKA_TEST_TOOLS_H
#define MQTT2KAFKA_TEST_TOOLS_H

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Wall clock in ms since the epoch (what timestamps in records use). */
static inline int64_t tools_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic clock in seconds, for durations and deadlines. */
static inline double tools_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void tools_sleep(double seconds)
{
    struct timespec ts;
    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/*
 * A token bucket: `rate` tokens a second, holding at most `burst`, so a
 * sender spreads its messages evenly instead of sending a second's worth at
 * once. rate <= 0 means unlimited.
 */
struct tools_bucket {
    double rate;
    double burst;
    double tokens;
    double last;
};

static inline void tools_bucket_init(struct tools_bucket *b, double rate)
{
    b->rate = rate;
    /* About 5 ms worth, but at least one message. */
    b->burst = rate / 200.0 < 1.0 ? 1.0 : rate / 200.0;
    b->tokens = 1.0;
    b->last = tools_mono();
}

/* Takes one token if there is one: returns 1; else 0 and *wait_s (when not
 * NULL) is how long until the next token. */
static inline int tools_bucket_take(struct tools_bucket *b, double *wait_s)
{
    double now;
    if (b->rate <= 0)
        return 1;
    now = tools_mono();
    b->tokens += (now - b->last) * b->rate;
    b->last = now;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    if (wait_s)
        *wait_s = (1.0 - b->tokens) / b->rate;
    return 0;
}

/* Parses a whole unsigned decimal number in [min, max]; 0 or -EINVAL. */
static inline int tools_parse_u64(const char *s, uint64_t min, uint64_t max,
                                  uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

/* Parses a whole non-negative decimal (fractions allowed) up to max. */
static inline int tools_parse_double(const char *s, double max, double *out)
{
    char *end = NULL;
    double v;
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Writes s (len bytes) as a JSON string, escaping what JSON requires. */
static inline void tools_json_str(FILE *f, const char *s, size_t len)
{
    size_t i;
    fputc('"', f);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/*
 * A latency histogram of fixed size: 1 ms buckets below 10 s, 100 ms
 * buckets up to 1000 s, one bucket above; the maximum is kept exactly.
 * Negative samples (clock skew) count as 0.
 */
#define TOOLS_HIST_FINE   10000
#define TOOLS_HIST_COARSE 9900

struct tools_hist {
    uint64_t hist[TOOLS_HIST_FINE + TOOLS_HIST_COARSE + 1];
    uint64_t n;
    int64_t max;
};

static inline void tools_hist_add(struct tools_hist *c, int64_t ms)
{
    size_t b;
    if (ms < 0)
        ms = 0;
    if (ms > c->max)
        c->max = ms;
    if (ms < TOOLS_HIST_FINE)
        b = (size_t)ms;
    else if (ms < TOOLS_HIST_FINE + (int64_t)TOOLS_HIST_COARSE * 100)
        b = TOOLS_HIST_FINE + (size_t)((ms - TOOLS_HIST_FINE) / 100);
    else
        b = TOOLS_HIST_FINE + TOOLS_HIST_COARSE;
    c->hist[b]++;
    c->n++;
}

static inline int64_t tools_hist_pct(const struct tools_hist *c, double p)
{
    uint64_t rank = (uint64_t)(p * (double)c->n), seen = 0;
    size_t b;
    if (c->n == 0)
        return 0;
    if (rank >= c->n)
        rank = c->n - 1;
    for (b = 0; b <= TOOLS_HIST_FINE + TOOLS_HIST_COARSE; b++) {
        seen += c->hist[b];
        if (seen > rank)
            break;
    }
    if (b < TOOLS_HIST_FINE)
        return (int64_t)b;
    if (b < TOOLS_HIST_FINE + TOOLS_HIST_COARSE)
        return TOOLS_HIST_FINE + (int64_t)(b - TOOLS_HIST_FINE) * 100;
    return c->max;
}

/* tpl with every "{device}" replaced by dev; caller frees; NULL if out of
 * memory. */
static inline char *tools_subst(const char *tpl, const char *dev)
{
    size_t n = strlen(tpl) + 1, dl = strlen(dev), i = 0;
    const char *p;
    char *t;
    for (p = strstr(tpl, "{device}"); p; p = strstr(p + 8, "{device}"))
        n += dl;
    t = malloc(n);
    if (!t)
        return NULL;
    for (p = tpl; *p;) {
        if (strncmp(p, "{device}", 8) == 0) {
            memcpy(t + i, dev, dl);
            i += dl;
            p += 8;
        } else {
            t[i++] = *p++;
        }
    }
    t[i] = '\0';
    return t;
}

/* FNV-1a, for hash tables and to compare ids cheaply. */
static inline uint32_t tools_fnv32(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t h = 2166136261u;
    while (n--)
        h = (h ^ *s++) * 16777619u;
    return h;
}

/*
 * A minimal JSON reader: enough to pull a few keys out of an object (such as
 * protobuf canonical JSON) and to skip everything else. Strings come back
 * as their raw bytes, escapes left as they are.
 */
struct tools_jp {
    const char *p, *end;
};

static inline void tools_jws(struct tools_jp *j)
{
    while (j->p < j->end && isspace((unsigned char)*j->p))
        j->p++;
}

static inline int tools_jlit(struct tools_jp *j, char ch)
{
    tools_jws(j);
    if (j->p < j->end && *j->p == ch) {
        j->p++;
        return 0;
    }
    return -EINVAL;
}

/* A string's raw bytes (escapes left as they are). */
static inline int tools_jstr(struct tools_jp *j, const char **s, size_t *n)
{
    if (tools_jlit(j, '"'))
        return -EINVAL;
    *s = j->p;
    while (j->p < j->end && *j->p != '"')
        j->p += (*j->p == '\\' && j->p + 1 < j->end) ? 2 : 1;
    if (j->p >= j->end)
        return -EINVAL;
    *n = (size_t)(j->p - *s);
    j->p++;
    return 0;
}

static inline int tools_jskip(struct tools_jp *j, int depth)
{
    const char *s;
    size_t n;
    char close;
    tools_jws(j);
    if (j->p >= j->end || depth > 32)
        return -EINVAL;
    if (*j->p == '"')
        return tools_jstr(j, &s, &n);
    if (*j->p != '{' && *j->p != '[') {
        while (j->p < j->end && !strchr(",}] \t\r\n", *j->p))
            j->p++;
        return 0;
    }
    close = *j->p == '{' ? '}' : ']';
    j->p++;
    if (!tools_jlit(j, close))
        return 0;
    do {
        if (close == '}' && (tools_jstr(j, &s, &n) || tools_jlit(j, ':')))
            return -EINVAL;
        if (tools_jskip(j, depth + 1))
            return -EINVAL;
    } while (!tools_jlit(j, ','));
    return tools_jlit(j, close);
}

/* A number or a string holding one (int64/uint64 are strings in proto3
 * JSON). */
static inline int tools_jint(struct tools_jp *j, int64_t *out)
{
    const char *s;
    size_t n;
    char buf[32];
    tools_jws(j);
    if (j->p < j->end && *j->p == '"') {
        if (tools_jstr(j, &s, &n))
            return -EINVAL;
    } else {
        s = j->p;
        if (tools_jskip(j, 0))
            return -EINVAL;
        n = (size_t)(j->p - s);
    }
    if (n == 0 || n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtoll(buf, NULL, 10);
    return 0;
}

static inline bool tools_jkey(const char *k, size_t n, const char *a,
                              const char *b)
{
    return (strlen(a) == n && !memcmp(k, a, n)) ||
           (strlen(b) == n && !memcmp(k, b, n));
}

#endif
