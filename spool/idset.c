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

int idset_add(struct idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        struct idset g = {NULL, s->cap ? s->cap * 2 : 1024, 0};
        g.slot = calloc(g.cap, sizeof(*g.slot));
        if (!g.slot)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                idset_add(&g, s->slot[i]);
        free(s->slot);
        *s = g;
    }
    size_t i = hslot(s, id);
    while (s->slot[i] && s->slot[i] != id)
        i = (i + 1) & (s->cap - 1);
    if (!s->slot[i])
        s->n++;
    s->slot[i] = id;
    return 0;
}

/* Removes id, shifting later members of its probe run back (no tombstones). */
int idset_del(struct idset *s, int64_t id)
{
    if (!s->n)
        return 0;
    size_t m = s->cap - 1, i = hslot(s, id);
    while (s->slot[i] != id) {
        if (!s->slot[i])
            return 0;
        i = (i + 1) & m;
    }
    for (size_t j = (i + 1) & m; s->slot[j]; j = (j + 1) & m) {
        size_t h = hslot(s, s->slot[j]);
        /* move j to the hole at i unless its home lies in (i, j] */
        if (((j - h) & m) >= ((j - i) & m)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    s->slot[i] = 0;
    s->n--;
    return 1;
}

int idset_has(const struct idset *s, int64_t id)
{
    if (!s->n)
        return 0;
    size_t i = hslot(s, id);
    while (s->slot[i]) {
        if (s->slot[i] == id)
            return 1;
        i = (i + 1) & (s->cap - 1);
    }
    return 0;
}

void idset_clear(struct idset *s)
{
    if (s->slot)
        memset(s->slot, 0, s->cap * sizeof(*s->slot));
    s->n = 0;
}

void idset_fini(struct idset *s)
{
    free(s->slot);
    memset(s, 0, sizeof(*s));
}
