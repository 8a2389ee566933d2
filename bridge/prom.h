/*
 * prom.h — a writer for the Prometheus text exposition format 0.0.4 into a
 * caller's fixed buffer, and a fixed-bucket histogram.
 *
 * Leaf module: libc and libm only. The writer never allocates and never
 * writes past its buffer; a sample that does not fit, or a name that is not
 * a legal metric or label name, marks the whole text as bad, and
 * prom_finish() says so: a cut or malformed exposition is never served as
 * if it were whole. The caller keeps the samples of one family together,
 * after that family's prom_family() line pair.
 */
#ifndef MQTT2KAFKA_PROM_H
#define MQTT2KAFKA_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Content-Type of what the writer produces. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A summary's samples are the caller's: name{quantile="0.5"} ...,
 * name_sum and name_count. */
enum prom_type {
    PROM_COUNTER,
    PROM_GAUGE,
    PROM_HISTOGRAM,
    PROM_UNTYPED,
    PROM_SUMMARY
};

struct prom_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value; /* any UTF-8; escaped on output; NULL reads as "" */
};

struct prom {
    char *buf; /* borrowed; always NUL-terminated within cap */
    size_t cap;
    size_t len;
    int err; /* 0, -ENOSPC (did not fit) or -EINVAL (bad name) */
};

/* Writes into buf[0..cap); cap must be at least 1. */
void prom_init(struct prom *p, char *buf, size_t cap);
/* 0 and the text's length in *len when every line fitted and every name
 * was legal; otherwise -ENOSPC or -EINVAL (the first error met). */
int prom_finish(const struct prom *p, size_t *len);

/* "# HELP name help" and "# TYPE name type". help may hold any text:
 * backslash and newline are escaped. A counter's name must end in
 * "_total" (-EINVAL otherwise). */
void prom_family(struct prom *p, const char *name, enum prom_type type,
                 const char *help);

/* One sample line: name{labels} value. nl may be 0 (labels NULL). */
void prom_u64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, uint64_t v);
void prom_i64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, int64_t v);
void prom_f64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, double v);

/* Formats v as Prometheus reads it back exactly: integral values of at most
 * 2^53 without a fraction ("42", "-3"), others in the shortest form that
 * round-trips ("0.1", "1e-05", "1.7976931348623157e+308"), and "NaN",
 * "+Inf", "-Inf". Returns the length (always < 32); out holds >= 32 bytes. */
size_t prom_fmt_f64(char *out, size_t cap, double v);

/* --- histogram ------------------------------------------------------- */

#define PROM_HIST_MAX 24 /* finite upper bounds; +Inf is implicit */

/* Delivery latency from milliseconds to hours (a spool can hold records
 * through a long outage), in seconds; minutes finer, since outages of a
 * few minutes are common and a quantile is interpolated within a bucket. */
#define PROM_LATENCY_BUCKETS                                                   \
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, \
        600, 900, 1800, 3600, 14400, 86400

/* Caller-owned; no allocation. Counts are per bucket (not cumulative) so
 * observe touches one slot; prom_hist_write() sums them on output. */
struct prom_hist {
    size_t n;                           /* finite bounds in le[] */
    double le[PROM_HIST_MAX];           /* strictly ascending, finite */
    uint64_t bucket[PROM_HIST_MAX + 1]; /* bucket[n]: above every bound */
    uint64_t count;
    double sum;
};

/* -EINVAL if n is 0 or over PROM_HIST_MAX, or the bounds are not finite
 * and strictly ascending. */
int prom_hist_init(struct prom_hist *h, const double *le, size_t n);
/* O(n). NaN is ignored (it would turn _sum into NaN for good). */
void prom_hist_observe(struct prom_hist *h, double v);
/* name_bucket{...,le="..."} for each bound and +Inf (cumulative), then
 * name_sum and name_count. The family line is the caller's:
 * prom_family(p, name, PROM_HISTOGRAM, help). */
void prom_hist_write(struct prom *p, const char *name,
                     const struct prom_label *l, size_t nl,
                     const struct prom_hist *h);

#endif
