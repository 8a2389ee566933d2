/*
 * route.c — pure: an MQTT topic in; the route, Kafka topic and key out.
 *
 * route_table_new() compiles each route's `match` into levels (literal,
 * `+`, `{capture}`, trailing `#`) and its templates into segments (literal
 * text or a capture index), all pointing into the conf's strings, which the
 * table borrows. route_match() walks the levels of the incoming topic once,
 * remembers captures as (pointer, length) pairs on the stack, and renders
 * the templates into the caller's fixed buffers: no allocation, no I/O.
 *
 * Rules kept here: the first route that matches wins, even if its captures
 * then make an illegal Kafka topic name (that message dead-letters; it does
 * not fall through to a later route). A topic that starts with '$' is not
 * matched by a filter whose first level is a wildcard (MQTT 4.7.2).
 * Depends on conf.h's types only.
 */
#include "bridge/route.h"

#include <errno.h>
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

/* ---- compiling ------------------------------------------------------ */

static int compile_levels(struct croute *cr, const char *m, char *err,
                          size_t errlen)
{
    size_t n = 1;
    for (const char *p = m; *p; p++)
        n += *p == '/';
    if (!(cr->lv = calloc(n, sizeof *cr->lv)))
        return -ENOMEM;
    for (const char *lv = m;;) {
        const char *end = strchrnul(lv, '/');
        size_t len = (size_t)(end - lv);
        struct level *l = &cr->lv[cr->nlv++];
        if (len == 1 && *lv == '#') {
            l->kind = L_REST;
        } else if (len == 1 && *lv == '+') {
            l->kind = L_ANY;
        } else if (len >= 2 && lv[0] == '{' && lv[len - 1] == '}') {
            if (cr->ncap == CONF_MAX_CAPTURES) {
                snprintf(err, errlen, "too many captures in \"%s\"", m);
                return -EINVAL;
            }
            l->kind = L_CAP;
            l->cap = (int)cr->ncap;
            cr->capname[cr->ncap] = lv + 1;
            cr->caplen[cr->ncap++] = len - 2;
        } else {
            l->kind = L_LIT;
            l->s = lv;
            l->len = len;
        }
        if (!*end)
            return 0;
        lv = end + 1;
    }
}

static int compile_template(struct croute *cr, const char *t, struct seg **out,
                            size_t *nout, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *p = t; *p; p++)
        n += *p == '{';
    struct seg *sg = calloc(2 * n, sizeof *sg);
    if (!(*out = sg))
        return -ENOMEM;
    for (const char *p = t; *p;) {
        const char *open = strchr(p, '{');
        if (open != p) { /* literal up to the next '{' or the end */
            size_t len = open ? (size_t)(open - p) : strlen(p);
            sg[*nout] = (struct seg){p, len, -1};
            ++*nout;
            p += len;
            continue;
        }
        const char *close = strchr(p, '}');
        size_t len = close ? (size_t)(close - p - 1) : 0, i;
        size_t pl = sizeof PAYLOAD_PREFIX - 1;
        if (close && len > pl && !memcmp(p + 1, PAYLOAD_PREFIX, pl)) {
            sg[*nout] = (struct seg){p + 1 + pl, len - pl, SEG_FIELD};
            ++*nout;
            cr->fields = 1;
            p = close + 1;
            continue;
        }
        for (i = 0; close && i < cr->ncap; i++)
            if (cr->caplen[i] == len && !memcmp(cr->capname[i], p + 1, len))
                break;
        if (!close || i == cr->ncap) {
            snprintf(
                err, errlen,
                "template \"%s\" names a capture the match does not define", t);
            return -EINVAL;
        }
        sg[*nout] = (struct seg){p + 1, len, (int)i};
        ++*nout;
        p = close + 1;
    }
    return 0;
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
        const char *fi = t->r[i].r->filter;
        int drop = 0;
        for (size_t j = 0; j < t->n && !drop; j++) {
            const char *fj = t->r[j].r->filter;
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
        const struct conf_route *r = &c->routes[i];
        struct croute *cr = &t->r[i];
        char why[200] = "";
        t->n++;
        cr->r = r;
        if (!r->match || !r->filter || !r->topic) {
            snprintf(why, sizeof why, "route is missing match or topic");
            rc = -EINVAL;
        } else if (!(rc = compile_levels(cr, r->match, why, sizeof why)) &&
                   !(rc = compile_template(cr, r->topic, &cr->topic,
                                           &cr->ntopic, why, sizeof why)) &&
                   r->key) {
            rc = compile_template(cr, r->key, &cr->key, &cr->nkey, why,
                                  sizeof why);
        }
        if (rc == -EINVAL)
            snprintf(err, errlen, "%s:%d:%d: route %zu: %s",
                     c->path ? c->path : "<config>", r->line, r->col, i + 1,
                     why);
        if (rc)
            goto fail;
    }
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

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->r && i < t->n; i++) {
        free(t->r[i].lv);
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
