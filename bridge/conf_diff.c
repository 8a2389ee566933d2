/*
 * conf_diff.c — what changed between two configurations, key by key, for
 * the daemon's reload: it walks the same key tables as the loader, so a
 * key added to a table is compared without more code. Files are compared
 * by what they hold (conf_load_files() fingerprints them): a certificate
 * renewed in place, or a password file rewritten, is a change of its key.
 * Names only: a secret's value never leaves the conf. libc only.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/conf_int.h"

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int64_t int_at(const void *base, const struct key *k)
{
    const char *p = (const char *)base + k->off;
    if (k->size == sizeof(int64_t))
        return *(const int64_t *)(const void *)p;
    return *(const int *)(const void *)p;
}

static const char *str_at(const void *base, const struct key *k)
{
    return *(char *const *)(const void *)((const char *)base + k->off);
}

static const struct conf_file *file_of(const struct conf *c, const char *name)
{
    for (size_t i = 0; i < c->nfiles; i++)
        if (!strcmp(c->files[i].name, name))
            return &c->files[i];
    return NULL;
}

/* 1 when key k (full name) has the same value in a and b. */
static int same(const struct conf *a, const struct conf *b, const struct key *k,
                const char *name)
{
    switch (k->type) {
    case T_STR:
    case T_CHOICE:
        return str_eq(str_at(a, k), str_at(b, k));
    case T_FILE: {
        const struct conf_file *fa = file_of(a, name), *fb = file_of(b, name);
        if (!str_eq(str_at(a, k), str_at(b, k)) || !fa != !fb)
            return 0;
        return !fa || (fa->read == fb->read && fa->digest == fb->digest &&
                       str_eq(fa->written, fb->written));
    }
    case T_PROPS:
        if (a->kafka.nprops != b->kafka.nprops)
            return 0;
        for (size_t i = 0; i < a->kafka.nprops; i++)
            if (!str_eq(a->kafka.props[i].name, b->kafka.props[i].name) ||
                !str_eq(a->kafka.props[i].value, b->kafka.props[i].value))
                return 0;
        return 1;
    default:
        return int_at(a, k) == int_at(b, k);
    }
}

static int routes_same(const struct conf *a, const struct conf *b)
{
    if (a->nroutes != b->nroutes)
        return 0;
    for (size_t i = 0; i < a->nroutes; i++)
        for (const struct key *k = conf_route_keys; k->name; k++) {
            const void *ra = &a->routes[i], *rb = &b->routes[i];
            if (k->type == T_STR || k->type == T_CHOICE
                    ? !str_eq(str_at(ra, k), str_at(rb, k))
                    : int_at(ra, k) != int_at(rb, k))
                return 0;
        }
    return 1;
}

struct diff {
    const struct conf *a, *b;
    void (*changed)(void *, const char *);
    void *ud;
    int n;
};

static void diff_key(void *ud, const struct key *k, const char *name)
{
    struct diff *d = ud;
    if (!same(d->a, d->b, k, name)) {
        d->n++;
        d->changed(d->ud, name);
    }
}

int conf_diff(const struct conf *a, const struct conf *b,
              void (*changed)(void *ud, const char *key), void *ud)
{
    struct diff d = {a, b, changed, ud, 0};
    conf_each_key(diff_key, &d);
    if (!routes_same(a, b)) {
        d.n++;
        changed(ud, "routes");
    }
    return d.n;
}

struct keep {
    struct conf *to;
    const struct conf *from;
    const char *key;
    int rc;
};

static void keep_key(void *ud, const struct key *k, const char *name)
{
    struct keep *kp = ud;
    if (strcmp(name, kp->key))
        return;
    char *p = (char *)kp->to + k->off;
    const char *q = (const char *)kp->from + k->off;
    switch (k->type) {
    case T_STR:
    case T_CHOICE:
    case T_FILE: {
        const char *v = *(char *const *)(const void *)q;
        char *d = v ? strdup(v) : NULL;
        if (v && !d) {
            kp->rc = -ENOMEM;
            return;
        }
        free(*(char **)(void *)p);
        *(char **)(void *)p = d;
        break;
    }
    case T_PROPS: /* never needs a restart; not kept */
        kp->rc = -ENOENT;
        return;
    default:
        memcpy(p, q, k->size);
    }
    kp->rc = 0;
}

int conf_keep(struct conf *to, const struct conf *from, const char *key)
{
    struct keep kp = {to, from, key, -ENOENT};
    conf_each_key(keep_key, &kp);
    return kp.rc;
}
