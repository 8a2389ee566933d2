/*
 * redeliver.c — the ring of recently committed tags (see redeliver.h).
 *
 * last[mid] holds the tag committed last with that packet id, if it is
 * still among the `recent` newest; ring[] holds those tags in commit
 * order, so the one that falls out of the window is forgotten in last[]
 * too. Both are fixed at creation: no allocation per message.
 */
#include "bridge/redeliver.h"

#include <errno.h>
#include <stdlib.h>

struct redeliver {
    int64_t *last; /* [packet id]: tag, if among the recent */
    int64_t *ring; /* the recent tags in commit order */
    size_t cap, head, n;
    int checking; /* session resumed: still in the resend phase */
};

int redeliver_new(size_t recent, struct redeliver **out)
{
    struct redeliver *rd = calloc(1, sizeof *rd);
    *out = NULL;
    if (!rd || !(rd->last = calloc(REDELIVER_MIDS, sizeof *rd->last)) ||
        !(rd->ring = calloc(recent ? recent : 1, sizeof *rd->ring))) {
        redeliver_free(rd);
        return -ENOMEM;
    }
    rd->cap = recent ? recent : 1;
    *out = rd;
    return 0;
}

void redeliver_free(struct redeliver *rd)
{
    if (!rd)
        return;
    free(rd->last);
    free(rd->ring);
    free(rd);
}

/* (packet id, 47-bit FNV-1a of topic NUL payload). */
int64_t redeliver_tag(const char *topic, const void *payload, size_t len,
                      int qos, int mid)
{
    uint64_t h = 14695981039346656037u;
    const unsigned char *p = (const unsigned char *)topic;
    if (qos == 0 || mid <= 0 || mid >= REDELIVER_MIDS)
        return 0;
    do {
        h = (h ^ *p) * 1099511628211u;
    } while (*p++);
    p = payload;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return (int64_t)((uint64_t)mid << REDELIVER_HASH_BITS |
                     (h & ((1ull << REDELIVER_HASH_BITS) - 1)));
}

int redeliver_mid(int64_t tag)
{
    return (int)((uint64_t)tag >> REDELIVER_HASH_BITS);
}

void redeliver_remember(struct redeliver *rd, int64_t tag)
{
    size_t last = (rd->head + rd->cap - 1) % rd->cap;
    if (!tag || (rd->n && rd->ring[last] == tag))
        return;
    if (rd->n == rd->cap) {
        int64_t old = rd->ring[rd->head];
        if (rd->last[redeliver_mid(old)] == old)
            rd->last[redeliver_mid(old)] = 0;
    } else {
        rd->n++;
    }
    rd->ring[rd->head] = tag;
    rd->head = (rd->head + 1) % rd->cap;
    rd->last[redeliver_mid(tag)] = tag;
}

void redeliver_session(struct redeliver *rd, int resumed)
{
    rd->checking = resumed;
}

int redeliver_check(struct redeliver *rd, int mid, int64_t tag)
{
    if (!rd->checking)
        return 0;
    if (tag && mid > 0 && mid < REDELIVER_MIDS && rd->last[mid] == tag)
        return 1;
    rd->checking = 0;
    return 0;
}
