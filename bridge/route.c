/*
 * route.c — pure: an MQTT topic in; the route, Kafka topic and key out.
 *
 * The template language lives here and only here. route_table_new()
 * checks and compiles each route's `match` into levels (literal, `+`,
 * `{capture}`, trailing `#`) and its MQTT filter, and its templates into
 * segments (literal text, a capture index, or a {payload.path} field),
 * pointing into the conf's strings, which the table borrows. Errors name
 * the file, line and column the loader kept for each value. route_match() walks
 * the levels of the incoming topic once, remembers captures as (pointer,
 * length) pairs on the stack, and renders the templates into the caller's fixed
 * buffers: no allocation, no I/O.
 *
 * Rules kept here: the first route that matches wins, even if its captures
 * then make an illegal Kafka topic name (that message dead-letters; it does
 * not fall through to a later route). A topic that starts with '$' is not
 * matched by a filter whose first level is a wildcard (MQTT 4.7.2).
 * Depends on conf.h's types only.
 */
#include "bridge/route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum lkind { L_LIT, L_ANY, L_CAP, L_REST };

struct level {
    enum lkind kind;
    const char *s; /* L_LIT: the text, not NUL-terminated */
    size_t len;
    int cap; /* L_CAP: capture index */
};

#define SEG_LIT   (-1)
#define SEG_FIELD (-2) /* {payload.path}: s is the path */

struct seg {
    const char *s; /* literal text, the capture's name, or a field path */
    size_t len;
    int cap; /* capture index, SEG_LIT or SEG_FIELD */
};

struct croute {
    const struct conf_route *r;
    char *filter; /* the MQTT subscription filter: sensors/+/+/+ */
    struct level *lv;
    size_t nlv;
    struct seg *topic, *key;
    size_t ntopic, nkey;
    const char *capname[CONF_MAX_CAPTURES];
    size_t caplen[CONF_MAX_CAPTURES];
    size_t ncap;
    int fields; /* a template names {payload.x} */
};

struct route_table {
    const char *path; /* the config file, for messages */
    struct croute *r;
    size_t n;
    const char **filters;
    size_t nfilters;
};

#define PAYLOAD_PREFIX "payload."

/* Legal in a Kafka topic name: [A-Za-z0-9._-]. */
static int kchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* How many leading bytes of s[0..n) are legal. */
static size_t kspan(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && kchar((unsigned char)s[i]))
        i++;
    return i;
}

int route_kafka_topic_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ROUTE_TOPIC_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    return kspan(s, n) == n;
}

/* ---- compiling: the template grammar ------------------------------- */

/* Where a route is being compiled, for "file:line:col: route N ..." */
struct ctx {
    const char *file;
    int no; /* 1-based route number */
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int
fail(const struct ctx *x, struct conf_mark m, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(x->err, x->errlen, "%s:%d:%d: ", x->file, m.line, m.col);
    if (n >= 0 && (size_t)n < x->errlen) {
        va_start(ap, fmt);
        vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int ident_ok(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
            return 0;
    return 1;
}

/* One level of a match: checks it is a valid MQTT filter level with at
 * most a whole-level {capture}, and adds it to cr's levels and filter. */
static int match_level(const struct ctx *x, struct croute *cr, const char *lv,
                       size_t n, int last, char *f, size_t *o)
{
    const char *s = cr->r->match;
    struct conf_mark m = cr->r->at_match;
    struct level *l = &cr->lv[cr->nlv++];
    if (memchr(lv, '#', n) && (n != 1 || !last))
        return fail(x, m,
                    "route %d match \"%.80s\" is not a valid MQTT filter: "
                    "'#' must be a whole level and the last one",
                    x->no, s);
    if (memchr(lv, '+', n) && n != 1)
        return fail(x, m,
                    "route %d match \"%.80s\" is not a valid MQTT filter: "
                    "'+' must be a whole level",
                    x->no, s);
    if (n >= 2 && lv[0] == '{' && lv[n - 1] == '}') {
        if (!ident_ok(lv + 1, n - 2))
            return fail(x, m,
                        "route %d match: capture \"%.*s\" is not a valid name "
                        "(letters, digits and _, not starting with a digit)",
                        x->no, (int)n, lv);
        for (size_t i = 0; i < cr->ncap; i++)
            if (cr->caplen[i] == n - 2 &&
                !memcmp(cr->capname[i], lv + 1, n - 2))
                return fail(x, m, "route %d match captures {%.*s} twice", x->no,
                            (int)(n - 2), lv + 1);
        if (cr->ncap == CONF_MAX_CAPTURES)
            return fail(x, m, "route %d match has more than %d captures", x->no,
                        CONF_MAX_CAPTURES);
        l->kind = L_CAP;
        l->cap = (int)cr->ncap;
        cr->capname[cr->ncap] = lv + 1;
        cr->caplen[cr->ncap++] = n - 2;
        f[(*o)++] = '+';
        return 0;
    }
    if (memchr(lv, '{', n) || memchr(lv, '}', n))
        return fail(x, m,
                    "route %d match \"%.80s\": a capture must be a whole "
                    "level, like sensors/{device}/data",
                    x->no, s);
    l->kind = n == 1 && *lv == '#'   ? L_REST
              : n == 1 && *lv == '+' ? L_ANY
                                     : L_LIT;
    l->s = lv;
    l->len = n;
    memcpy(f + *o, lv, n);
    *o += n;
    return 0;
}

/* The match: its levels and captures, and the MQTT filter ({x} -> +). */
static int compile_match(const struct ctx *x, struct croute *cr)
{
    const char *m = cr->r->match;
    size_t n = 1, o = 0;
    for (const char *p = m; *p; p++)
        n += *p == '/';
    if (!(cr->lv = calloc(n, sizeof *cr->lv)) ||
        !(cr->filter = malloc(strlen(m) + 1)))
        return -ENOMEM;
    for (const char *lv = m;;) {
        const char *end = strchrnul(lv, '/');
        int rc =
            match_level(x, cr, lv, (size_t)(end - lv), !*end, cr->filter, &o);
        if (rc)
            return rc;
        if (!*end)
            break;
        cr->filter[o++] = '/';
        lv = end + 1;
    }
    cr->filter[o] = '\0';
    return 0;
}

static void caps_text(const struct croute *cr, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    if (cr->ncap == 0)
        snprintf(buf, len, "no captures");
    for (size_t i = 0; i < cr->ncap && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%.*s", i ? ", " : "",
                              (int)cr->caplen[i], cr->capname[i]);
}

/* A literal character of a topic template: legal in a Kafka topic name. */
static int topic_char(const struct ctx *x, struct conf_mark m, const char *t,
                      char c)
{
    if (kchar((unsigned char)c))
        return 0;
    if ((unsigned char)c >= 0x80)
        return fail(x, m,
                    "route %d topic template \"%.80s\" can only produce "
                    "illegal Kafka topic names: non-ASCII characters are not "
                    "allowed (use only A-Z a-z 0-9 . _ -)",
                    x->no, t);
    return fail(x, m,
                "route %d topic template \"%.80s\" can only produce illegal "
                "Kafka topic names: '%c' is not allowed (use only A-Z a-z 0-9 "
                ". _ -)",
                x->no, t, c);
}

/* A template: literal text, {capture} of the match, or {payload.path} (a
 * field of the decoded payload, checked by route_table_check_fields). For
 * a Kafka topic, the literal text must be able to make a legal name. */
static int compile_template(const struct ctx *x, struct croute *cr,
                            const char *t, struct conf_mark m, int topic,
                            struct seg **out, size_t *nout)
{
    const char *what = topic ? "topic" : "key";
    size_t n = 1, lit = 0, ncap = 0, pl = sizeof PAYLOAD_PREFIX - 1;
    char names[256];
    for (const char *p = t; *p; p++)
        n += *p == '{';
    struct seg *sg = calloc(2 * n, sizeof *sg);
    if (!(*out = sg))
        return -ENOMEM;
    for (const char *p = t; *p;) {
        if (*p == '}')
            return fail(x, m, "route %d %s template \"%.80s\": '}' without '{'",
                        x->no, what, t);
        if (*p != '{') { /* literal up to the next brace or the end */
            size_t len = strcspn(p, "{}");
            for (size_t i = 0; topic && i < len; i++)
                if (topic_char(x, m, t, p[i]))
                    return -EINVAL;
            sg[(*nout)++] = (struct seg){p, len, SEG_LIT};
            lit += len;
            p += len;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close)
            return fail(x, m,
                        "route %d %s template \"%.80s\": '{' is not closed",
                        x->no, what, t);
        size_t len = (size_t)(close - p - 1), i;
        ncap++;
        if (len > pl && !memcmp(p + 1, PAYLOAD_PREFIX, pl)) {
            sg[(*nout)++] = (struct seg){p + 1 + pl, len - pl, SEG_FIELD};
            cr->fields = 1;
            p = close + 1;
            continue;
        }
        for (i = 0; i < cr->ncap; i++)
            if (cr->caplen[i] == len && !memcmp(cr->capname[i], p + 1, len))
                break;
        if (i == cr->ncap) {
            caps_text(cr, names, sizeof names);
            return fail(x, m,
                        "route %d %s template names {%.*s}, but match defines "
                        "%s",
                        x->no, what, (int)len, p + 1, names);
        }
        sg[(*nout)++] = (struct seg){p + 1, len, (int)i};
        p = close + 1;
    }
    size_t max = topic ? ROUTE_TOPIC_MAX : ROUTE_KEY_MAX;
    if (lit > max)
        return fail(x, m,
                    "route %d %s template is %zu characters long before any "
                    "capture (at most %zu)",
                    x->no, what, lit, max);
    if (topic && ncap == 0 && (!strcmp(t, ".") || !strcmp(t, "..")))
        return fail(x, m,
                    "route %d topic \"%s\" is not a legal Kafka topic name",
                    x->no, t);
    return 0;
}

static int compile_route(const struct ctx *x, struct croute *cr)
{
    const struct conf_route *r = cr->r;
    int rc;
    if (!r->match || !r->topic)
        return fail(x, (struct conf_mark){r->line, r->col},
                    "route %d is missing match or topic", x->no);
    if (!*r->match)
        return fail(x, r->at_match,
                    "route %d.match: expected a non-empty string", x->no);
    if ((rc = compile_match(x, cr)))
        return rc;
    if ((rc = compile_template(x, cr, r->topic, r->at_topic, 1, &cr->topic,
                               &cr->ntopic)))
        return rc;
    if (r->key)
        rc = compile_template(x, cr, r->key, r->at_key, 0, &cr->key, &cr->nkey);
    return rc;
}

/* 1 if every topic that filter b matches is also matched by filter a. */
static int covers(const char *a, const char *b)
{
    int first = 1;
    for (;;) {
        const char *ae = strchrnul(a, '/'), *be = strchrnul(b, '/');
        size_t al = (size_t)(ae - a), bl = (size_t)(be - b);
        int awild = (al == 1 && (*a == '+' || *a == '#'));
        if (first && awild && *b == '$')
            return 0; /* wildcards do not match $-topics; b's literal does */
        if (al == 1 && *a == '#')
            return 1;
        if (bl == 1 && *b == '#')
            return 0;
        if (!(al == 1 && *a == '+') && (al != bl || memcmp(a, b, al)))
            return 0;
        if (!*ae ||
            !*be) /* a ends: covers only if b ends too, or a's next is # */
            return !*ae ? !*be : !strcmp(ae, "/#");
        a = ae + 1;
        b = be + 1;
        first = 0;
    }
}

static int build_filters(struct route_table *t)
{
    if (!(t->filters = calloc(t->n ? t->n : 1, sizeof *t->filters)))
        return -ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        const char *fi = t->r[i].filter;
        int drop = 0;
        for (size_t j = 0; j < t->n && !drop; j++) {
            const char *fj = t->r[j].filter;
            if (j != i && covers(fj, fi) && (!covers(fi, fj) || j < i))
                drop = 1;
        }
        if (!drop)
            t->filters[t->nfilters++] = fi;
    }
    return 0;
}

int route_table_new(const struct conf *c, struct route_table **out, char *err,
                    size_t errlen)
{
    struct route_table *t = calloc(1, sizeof *t);
    int rc = -ENOMEM;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (!t || !(t->r = calloc(c->nroutes ? c->nroutes : 1, sizeof *t->r)))
        goto fail;
    for (size_t i = 0; i < c->nroutes; i++) {
        struct ctx x = {c->path ? c->path : "<config>", (int)i + 1, err,
                        errlen};
        t->n++;
        t->r[i].r = &c->routes[i];
        if ((rc = compile_route(&x, &t->r[i])))
            goto fail;
    }
    t->path = c->path ? c->path : "<config>";
    if ((rc = build_filters(t)))
        goto fail;
    *out = t;
    return 0;
fail:
    if (rc == -ENOMEM && errlen)
        snprintf(err, errlen, "route table: out of memory");
    route_table_free(t);
    return rc;
}

/* The {payload.x} references of one template, through fn. */
static int check_segs(const struct ctx *x, const struct croute *cr,
                      const struct seg *sg, size_t n, const char *what,
                      struct conf_mark m, route_check_fn fn, void *ud)
{
    char why[256];
    for (size_t i = 0; i < n; i++) {
        if (sg[i].cap != SEG_FIELD)
            continue;
        why[0] = '\0';
        int rc = fn(ud, x->no - 1, sg[i].s, sg[i].len, why, sizeof why);
        if (rc == -ENOENT)
            return fail(x, m,
                        "route %d %s template names {payload.%.*s}, but the "
                        "route does not decode its payload (set payload: to a "
                        "message type)",
                        x->no, what, (int)sg[i].len, sg[i].s);
        if (rc)
            return fail(x, m, "route %d %s template {payload.%.*s}: %s", x->no,
                        what, (int)sg[i].len, sg[i].s, why);
    }
    (void)cr;
    return 0;
}

int route_table_check_fields(const struct route_table *t, route_check_fn fn,
                             void *ud, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct croute *cr = &t->r[i];
        struct ctx x = {t->path, (int)i + 1, err, errlen};
        int rc = check_segs(&x, cr, cr->topic, cr->ntopic, "topic",
                            cr->r->at_topic, fn, ud);
        if (!rc)
            rc = check_segs(&x, cr, cr->key, cr->nkey, "key", cr->r->at_key, fn,
                            ud);
        if (rc)
            return rc;
    }
    return 0;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->r && i < t->n; i++) {
        free(t->r[i].lv);
        free(t->r[i].filter);
        free(t->r[i].topic);
        free(t->r[i].key);
    }
    free(t->r);
    free(t->filters);
    free(t);
}

size_t route_table_filters(const struct route_table *t, const char ***filters)
{
    *filters = t->filters;
    return t->nfilters;
}

const char *route_filter(const struct route_table *t, size_t i)
{
    return i < t->n ? t->r[i].filter : NULL;
}

/* ---- matching ------------------------------------------------------- */

static int match_levels(const struct croute *cr, const char *topic,
                        struct route_span *caps)
{
    const char *p = topic;
    if (*topic == '$' && cr->nlv && cr->lv[0].kind != L_LIT)
        return 0;
    for (size_t i = 0; i < cr->nlv; i++) {
        const struct level *l = &cr->lv[i];
        if (l->kind == L_REST) /* also matches the parent: a/# matches a */
            return 1;
        if (!p)
            return 0;
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (l->kind == L_LIT && (len != l->len || memcmp(p, l->s, len)))
            return 0;
        if (l->kind == L_CAP)
            caps[l->cap] = (struct route_span){p, len};
        p = *end ? end + 1 : NULL;
    }
    return p == NULL;
}

/* Renders segments into buf (capacity max+1). For a Kafka topic, checks
 * each captured or payload byte. Sets out->status and reason on failure. */
static int render(const struct croute *cr, const struct seg *sg, size_t n,
                  route_field_fn fn, void *ud, char *buf, size_t max,
                  size_t *olen, int topic, struct route_result *out)
{
    const char *what = topic ? "topic" : "key";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const struct seg *s = &sg[i];
        const char *src = s->cap == SEG_LIT ? s->s
                          : s->cap >= 0     ? out->caps[s->cap].s
                                            : buf + o;
        size_t len = s->cap == SEG_LIT ? s->len
                     : s->cap >= 0     ? out->caps[s->cap].len
                                       : 0;
        if (s->cap == SEG_FIELD) {
            int rc =
                fn ? fn(ud, s->s, s->len, buf + o, max - o, &len) : -ENOENT;
            if (rc == -ENOENT || rc == -EILSEQ) {
                out->status = rc == -ENOENT ? ROUTE_NO_FIELD : ROUTE_BAD_FIELD;
                snprintf(
                    out->reason, sizeof out->reason,
                    "payload field %.*s %s (the Kafka %s template needs it)",
                    (int)s->len, s->s,
                    rc == -ENOENT ? "is not set" : "is not valid UTF-8", what);
                return -1;
            }
            if (rc)
                len = max - o + 1; /* too long: reported below */
        }
        if (len > max - o) {
            out->status = ROUTE_TOO_LONG;
            snprintf(out->reason, sizeof out->reason,
                     "the Kafka %s would be longer than %zu bytes", what, max);
            return -1;
        }
        if (topic && s->cap != SEG_LIT) {
            size_t ok = kspan(src, len);
            if (ok < len) {
                unsigned char c = (unsigned char)src[ok];
                int field = s->cap == SEG_FIELD;
                out->status = ROUTE_BAD_TOPIC;
                snprintf(
                    out->reason, sizeof out->reason,
                    "%s {%s%.*s} = \"%.*s\" puts %s%c%s into the Kafka topic "
                    "(only A-Z a-z 0-9 . _ - are legal)",
                    field ? "payload field" : "capture",
                    field ? PAYLOAD_PREFIX : "",
                    field ? (int)s->len : (int)cr->caplen[s->cap],
                    field ? s->s : cr->capname[s->cap],
                    len > 40 ? 40 : (int)len, src, c < 0x80 ? "'" : "",
                    c < 0x80 ? c : '?',
                    c < 0x80 ? "'" : " (a non-ASCII character)");
                return -1;
            }
        }
        if (s->cap != SEG_FIELD)
            memcpy(buf + o, src, len);
        o += len;
    }
    buf[o] = '\0';
    *olen = o;
    return 0;
}

/* Topic and key of route cr into out, from out->caps and fn's fields. */
static enum route_status render_all(const struct croute *cr, route_field_fn fn,
                                    void *ud, struct route_result *out)
{
    size_t len;
    out->status = ROUTE_OK;
    out->has_key = 0;
    out->key_len = 0;
    if (render(cr, cr->topic, cr->ntopic, fn, ud, out->topic, ROUTE_TOPIC_MAX,
               &len, 1, out))
        return out->status;
    if (!route_kafka_topic_ok(out->topic)) {
        out->status = ROUTE_BAD_TOPIC;
        snprintf(out->reason, sizeof out->reason,
                 "the Kafka topic would be \"%.40s\", "
                 "which is not a legal name",
                 out->topic);
        return out->status;
    }
    if (cr->r->key) {
        if (render(cr, cr->key, cr->nkey, fn, ud, out->key, ROUTE_KEY_MAX,
                   &out->key_len, 0, out))
            return out->status;
        out->has_key = 1;
    }
    return ROUTE_OK;
}

enum route_status route_match(const struct route_table *t, const char *topic,
                              struct route_result *out)
{
    out->index = -1;
    out->route = NULL;
    out->topic[0] = out->key[0] = out->reason[0] = '\0';
    out->key_len = 0;
    out->has_key = 0;
    out->pending = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct croute *cr = &t->r[i];
        if (!match_levels(cr, topic, out->caps))
            continue;
        out->index = (int)i;
        out->route = cr->r;
        out->status = ROUTE_OK;
        if (cr->fields) {
            out->pending = 1; /* rendered by route_expand, with the payload */
            return ROUTE_OK;
        }
        return render_all(cr, NULL, NULL, out);
    }
    out->status = ROUTE_NO_MATCH;
    snprintf(out->reason, sizeof out->reason, "no route matches");
    return ROUTE_NO_MATCH;
}

enum route_status route_expand(const struct route_table *t,
                               struct route_result *r, route_field_fn fn,
                               void *ud)
{
    if (r->index < 0 || (size_t)r->index >= t->n)
        return r->status;
    r->reason[0] = '\0';
    return render_all(&t->r[r->index], fn, ud, r);
}
