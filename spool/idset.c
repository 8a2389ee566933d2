/*
 * idset.c — pure: the in-flight id set (see idset.h). libc only.
 */
#include "spool/idset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t hslot(const struct idset *s, int64_t id)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) &
           (s->cap - 1);
}

/* The slot of id, or of the empty slot where it would go. */
static size_t find(const struct idset *s, int64_t id)
{
    size_t i = hslot(s, id);
    while (s->slot[i] && s->slot[i] != id)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int grow(struct idset *s)
{
    struct idset g = {NULL, NULL, s->cap ? s->cap * 2 : 1024, 0};
    g.slot = calloc(g.cap, sizeof(*g.slot));
    g.val = calloc(g.cap, sizeof(*g.val));
    if (!g.slot || !g.val) {
        free(g.slot);
        free(g.val);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i]) {
            size_t j = find(&g, s->slot[i]);
            g.slot[j] = s->slot[i];
            g.val[j] = s->val[i];
            g.n++;
        }
    free(s->slot);
    free(s->val);
    *s = g;
    return 0;
}

int idset_put(struct idset *s, int64_t id, uint32_t v)
{
    if ((s->n + 1) * 2 > s->cap && grow(s))
        return -ENOMEM;
    size_t i = find(s, id);
    if (!s->slot[i])
        s->n++;
    s->slot[i] = id;
    s->val[i] = v;
    return 0;
}

int idset_add(struct idset *s, int64_t id)
{
    return idset_put(s, id, 0);
}

/* Removes id, shifting later members of its probe run back (no tombstones). */
int idset_del(struct idset *s, int64_t id)
{
    if (!s->n)
        return 0;
    size_t m = s->cap - 1, i = find(s, id);
    if (!s->slot[i])
        return 0;
    for (size_t j = (i + 1) & m; s->slot[j]; j = (j + 1) & m) {
        size_t h = hslot(s, s->slot[j]);
        /* move j to the hole at i unless its home lies in (i, j] */
        if (((j - h) & m) >= ((j - i) & m)) {
            s->slot[i] = s->slot[j];
            s->val[i] = s->val[j];
            i = j;
        }
    }
    s->slot[i] = 0;
    s->val[i] = 0;
    s->n--;
    return 1;
}

int idset_get(const struct idset *s, int64_t id, uint32_t *v)
{
    if (!s->n)
        return 0;
    size_t i = find(s, id);
    if (!s->slot[i])
        return 0;
    if (v)
        *v = s->val[i];
    return 1;
}

int idset_has(const struct idset *s, int64_t id)
{
    return idset_get(s, id, NULL);
}

void idset_clear(struct idset *s)
{
    if (s->slot) {
        memset(s->slot, 0, s->cap * sizeof(*s->slot));
        memset(s->val, 0, s->cap * sizeof(*s->val));
    }
    s->n = 0;
}

void idset_fini(struct idset *s)
{
    free(s->slot);
    free(s->val);
    memset(s, 0, sizeof(*s));
}
