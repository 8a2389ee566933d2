/*
 * prom.c — Prometheus text exposition format 0.0.4, written into a fixed
 * buffer, and a fixed-bucket histogram.
 *
 * Leaf module: libc and libm only; knows nothing of the daemon. The
 * format, as Prometheus' text parser reads it:
 *
 *   # HELP <name> <text, with \\ and \n escaped>
 *   # TYPE <name> counter|gauge|histogram|summary|untyped
 *   <name>{<label>="<value, with \\ \" and \n escaped>",...} <value>
 *
 * Values are Go float64 literals: "NaN", "+Inf", "-Inf", or a number. A
 * histogram is the family <name> with samples <name>_bucket (one per upper
 * bound "le", cumulative, the last one le="+Inf" equal to the count),
 * <name>_sum and <name>_count.
 *
 * Invariants: p->buf is NUL-terminated after every call; once p->err is
 * set nothing more is written, so a full buffer costs nothing per line.
 * Numbers are printed with snprintf in the C locale's format: the daemon
 * never calls setlocale(), so the decimal point is always '.'.
 */
#include "bridge/prom.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_init(struct prom *p, char *buf, size_t cap)
{
    p->buf = buf;
    p->cap = cap;
    p->len = 0;
    p->err = cap ? 0 : -ENOSPC;
    if (cap)
        buf[0] = '\0';
}

int prom_finish(const struct prom *p, size_t *len)
{
    if (len)
        *len = p->err ? 0 : p->len;
    return p->err;
}

static void fail(struct prom *p, int err)
{
    if (!p->err)
        p->err = err;
}

/* Appends n bytes, or marks the text cut; one byte stays for the NUL. */
static void put(struct prom *p, const char *s, size_t n)
{
    if (p->err)
        return;
    if (n >= p->cap - p->len) {
        fail(p, -ENOSPC);
        return;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

static void puts_(struct prom *p, const char *s)
{
    put(p, s, strlen(s));
}

/* Escapes backslash and newline, and the double quote too when quoted. */
static void put_escaped(struct prom *p, const char *s, int quoted)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quoted)
            esc = "\\\"";
        if (!esc)
            continue;
        put(p, run, (size_t)(s - run));
        put(p, esc, 2);
        run = s + 1;
    }
    put(p, run, (size_t)(s - run));
}

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* */
static int metric_name_ok(const char *s)
{
    if (!s || !(is_alpha_(*s) || *s == ':'))
        return 0;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return 0;
    return 1;
}

/* Label names: [a-zA-Z_][a-zA-Z0-9_]*; "__" starts reserved names. */
static int label_name_ok(const char *s)
{
    if (!s || !is_alpha_(*s) || strncmp(s, "__", 2) == 0)
        return 0;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s)))
            return 0;
    return 1;
}

static void put_name(struct prom *p, const char *name)
{
    if (!metric_name_ok(name)) {
        fail(p, -EINVAL);
        return;
    }
    puts_(p, name);
}

static const char *const type_names[] = {"counter", "gauge", "histogram",
                                         "untyped", "summary"};

void prom_family(struct prom *p, const char *name, enum prom_type type,
                 const char *help)
{
    size_t n = name ? strlen(name) : 0;
    if ((unsigned)type > PROM_SUMMARY ||
        (type == PROM_COUNTER &&
         (n < 6 || strcmp(name + n - 6, "_total") != 0))) {
        fail(p, -EINVAL);
        return;
    }
    puts_(p, "# HELP ");
    put_name(p, name);
    put(p, " ", 1);
    put_escaped(p, help ? help : "", 0);
    puts_(p, "\n# TYPE ");
    put_name(p, name);
    put(p, " ", 1);
    puts_(p, type_names[type]);
    put(p, "\n", 1);
}

/* name{l1="v1",...,extra="xv"} — extra (the histogram's "le") may be NULL. */
static void put_series(struct prom *p, const char *name, const char *suffix,
                       const struct prom_label *l, size_t nl, const char *extra,
                       const char *xv)
{
    put_name(p, name);
    if (suffix)
        puts_(p, suffix);
    if (!nl && !extra)
        return;
    put(p, "{", 1);
    for (size_t i = 0; i < nl; i++) {
        if (!label_name_ok(l[i].name) ||
            (extra && strcmp(l[i].name, extra) == 0)) {
            fail(p, -EINVAL);
            return;
        }
        if (i)
            put(p, ",", 1);
        puts_(p, l[i].name);
        put(p, "=\"", 2);
        put_escaped(p, l[i].value ? l[i].value : "", 1);
        put(p, "\"", 1);
    }
    if (extra) {
        if (nl)
            put(p, ",", 1);
        puts_(p, extra);
        put(p, "=\"", 2);
        puts_(p, xv);
        put(p, "\"", 1);
    }
    put(p, "}", 1);
}

static void put_value(struct prom *p, const char *v)
{
    put(p, " ", 1);
    puts_(p, v);
    put(p, "\n", 1);
}

void prom_u64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, v);
    put_series(p, name, NULL, l, nl, NULL, NULL);
    put_value(p, num);
}

void prom_i64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, int64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, v);
    put_series(p, name, NULL, l, nl, NULL, NULL);
    put_value(p, num);
}

void prom_f64(struct prom *p, const char *name, const struct prom_label *l,
              size_t nl, double v)
{
    char num[32];
    prom_fmt_f64(num, sizeof num, v);
    put_series(p, name, NULL, l, nl, NULL, NULL);
    put_value(p, num);
}

size_t prom_fmt_f64(char *out, size_t cap, double v)
{
    int n;
    if (isnan(v))
        n = snprintf(out, cap, "NaN");
    else if (isinf(v))
        n = snprintf(out, cap, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (v == 0)
        n = snprintf(out, cap, "0"); /* not "-0" */
    else if (v == trunc(v) && fabs(v) <= 9007199254740992.0)
        n = snprintf(out, cap, "%.0f", v);
    else {
        /* The shortest of 15, 16, 17 significant digits that reads back
         * as the same double; 17 always does. */
        n = 0;
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
    return n < 0 ? 0 : (size_t)n;
}

/* --- histogram ------------------------------------------------------- */

int prom_hist_init(struct prom_hist *h, const double *le, size_t n)
{
    memset(h, 0, sizeof *h);
    if (n == 0 || n > PROM_HIST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(le[i]) || (i && !(le[i] > le[i - 1])))
            return -EINVAL;
        h->le[i] = le[i];
    }
    h->n = n;
    return 0;
}

void prom_hist_observe(struct prom_hist *h, double v)
{
    size_t i = 0;
    if (isnan(v))
        return;
    while (i < h->n && v > h->le[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void prom_hist_write(struct prom *p, const char *name,
                     const struct prom_label *l, size_t nl,
                     const struct prom_hist *h)
{
    char num[32], le[32];
    uint64_t cum = 0;

    for (size_t i = 0; i <= h->n; i++) {
        cum += h->bucket[i];
        if (i < h->n)
            prom_fmt_f64(le, sizeof le, h->le[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        snprintf(num, sizeof num, "%" PRIu64, cum);
        put_series(p, name, "_bucket", l, nl, "le", le);
        put_value(p, num);
    }
    prom_fmt_f64(num, sizeof num, h->sum);
    put_series(p, name, "_sum", l, nl, NULL, NULL);
    put_value(p, num);
    snprintf(num, sizeof num, "%" PRIu64, h->count);
    put_series(p, name, "_count", l, nl, NULL, NULL);
    put_value(p, num);
}
