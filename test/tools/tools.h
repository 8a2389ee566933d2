/*
 * tools.h — small helpers shared by the test tools m2k-pub and m2k-verify.
 *
 * Header-only (every function is static inline) so each tool stays one
 * translation unit that the Makefile links on its own. Nothing here knows
 * MQTT, Kafka or the bridge: clocks, a token bucket, number parsing and JSON
 * string output.
 */
#ifndef MQTT2KAFKA_TEST_TOOLS_H
#define MQTT2KAFKA_TEST_TOOLS_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

#endif
