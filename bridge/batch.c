/*
 * batch.c — the burst waiting for its group commit (see batch.h).
 *
 * Invariant: every offset in ents[0..n) is below used, and used <= cap <=
 * limit. Growing doubles the buffer (at most to limit); realloc may move
 * it, which is why nothing here keeps a pointer into it.
 */
#include "bridge/batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct batch_ent {
    size_t topic, key, headers, value; /* offsets into buf */
    size_t topic_len, key_len, headers_len, len;
    int has_key;
    int64_t recv_ms;
    int32_t route;
    int64_t tag;
};

int batch_init(struct batch *b, size_t max, size_t base, size_t limit)
{
    memset(b, 0, sizeof *b);
    if (base > limit)
        base = limit;
    b->ents = calloc(max ? max : 1, sizeof *b->ents);
    b->msgs = calloc(max ? max : 1, sizeof *b->msgs);
    b->buf = malloc(base ? base : 1);
    if (!b->ents || !b->msgs || !b->buf) {
        batch_fini(b);
        return -ENOMEM;
    }
    b->max = b->max_msgs = max;
    b->cap = b->base = base;
    b->limit = limit;
    return 0;
}

void batch_fini(struct batch *b)
{
    free(b->ents);
    free(b->msgs);
    free(b->buf);
    memset(b, 0, sizeof *b);
}

size_t batch_size_of(const struct batch_rec *r)
{
    return strlen(r->topic) + 1 + (r->key ? r->key_len : 0) + r->headers_len +
           r->len;
}

static int room(struct batch *b, size_t need)
{
    if (need > b->limit - b->used)
        return -ENOSPC;
    if (need <= b->cap - b->used)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->used < need)
        cap = cap > b->limit / 2 ? b->limit : cap * 2;
    unsigned char *p = realloc(b->buf, cap);
    if (!p)
        return -ENOMEM;
    b->buf = p;
    b->cap = cap;
    return 0;
}

static size_t put(struct batch *b, const void *p, size_t len)
{
    size_t off = b->used;
    if (len)
        memcpy(b->buf + off, p, len);
    b->used += len;
    return off;
}

int batch_add(struct batch *b, const struct batch_rec *r)
{
    if (b->n >= b->max)
        return -ENOSPC;
    int rc = room(b, batch_size_of(r));
    if (rc)
        return rc;
    struct batch_ent *e = &b->ents[b->n++];
    size_t tl = strlen(r->topic);
    e->topic = put(b, r->topic, tl + 1);
    e->topic_len = tl;
    e->has_key = r->key != NULL;
    e->key_len = r->key ? r->key_len : 0;
    e->key = put(b, r->key, e->key_len);
    e->headers_len = r->headers_len;
    e->headers = put(b, r->headers, r->headers_len);
    e->len = r->len;
    e->value = put(b, r->value, r->len);
    e->recv_ms = r->recv_ms;
    e->route = r->route;
    e->tag = r->tag;
    return 0;
}

void batch_get(const struct batch *b, size_t i, struct batch_rec *out)
{
    const struct batch_ent *e = &b->ents[i];
    out->topic = (const char *)b->buf + e->topic;
    out->key = e->has_key ? b->buf + e->key : NULL;
    out->key_len = e->key_len;
    out->headers = b->buf + e->headers;
    out->headers_len = e->headers_len;
    out->value = b->buf + e->value;
    out->len = e->len;
    out->recv_ms = e->recv_ms;
    out->route = e->route;
    out->tag = e->tag;
}

static size_t owned(const struct batch *b)
{
    if (!b->nmsgs)
        return 0;
    const struct batch_msg *last = &b->msgs[b->nmsgs - 1];
    return last->first + last->n;
}

size_t batch_open_records(const struct batch *b)
{
    return b->n - owned(b);
}

int batch_end_msg(struct batch *b, const struct batch_msg *m)
{
    if (b->nmsgs >= b->max_msgs)
        return -ENOSPC;
    size_t first = owned(b);
    struct batch_msg *e = &b->msgs[b->nmsgs++];
    *e = *m;
    e->first = first;
    e->n = b->n - first;
    return 0;
}

size_t batch_part(const struct batch *b, size_t from, batch_fits_fn fits,
                  void *ud)
{
    size_t k = from;
    if (from >= b->nmsgs)
        return from;
    size_t first = b->msgs[from].first;
    do {
        const struct batch_msg *m = &b->msgs[k];
        if (k > from && m->n && !fits(ud, first, m->first + m->n - first))
            break;
        k++;
    } while (k < b->nmsgs);
    return k;
}

struct batch_mark batch_mark(const struct batch *b)
{
    return (struct batch_mark){b->n, b->used, b->nmsgs};
}

void batch_rewind(struct batch *b, struct batch_mark m)
{
    if (m.n <= b->n && m.used <= b->used && m.nmsgs <= b->nmsgs) {
        b->n = m.n;
        b->used = m.used;
        b->nmsgs = m.nmsgs;
    }
}

void batch_clear(struct batch *b)
{
    b->n = 0;
    b->nmsgs = 0;
    b->used = 0;
    b->failed = 0;
    if (b->cap > b->base) { /* a burst of big messages is over: give it back */
        unsigned char *p = realloc(b->buf, b->base ? b->base : 1);
        if (p) {
            b->buf = p;
            b->cap = b->base;
        }
    }
}
