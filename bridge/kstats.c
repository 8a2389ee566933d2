/*
 * kstats.c — librdkafka's statistics JSON to struct kstats (see kstats.h).
 *
 * The document's shape (librdkafka's STATISTICS.md): a top-level object
 * with msg_cnt, msg_size and "brokers", an object of broker name ->
 * {nodeid, source, state, connects, disconnects, waitresp_cnt,
 * req_timeouts, rtt: {cnt, sum, avg, p50, p95, p99, ...}}, times in
 * microseconds. A field that is missing or of another type reads as 0; a
 * document that is not an object with a "brokers" object is refused. The
 * parse is jansson's (a depth limit of its own); we bound the size.
 */
#include "bridge/kstats.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int64_t num(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d > -9e18 && d < 9e18 ? (int64_t)d : 0;
    }
    return 0;
}

static const char *str(const json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? s : "";
}

/* A window's quantile in seconds, NaN when the window timed nothing. */
static double quantile_s(const json_t *rtt, const char *q, int64_t cnt)
{
    return cnt > 0 ? (double)num(rtt, q) / 1e6 : NAN;
}

static void take_broker(struct kstats_broker *b, const char *name,
                        const json_t *o)
{
    const json_t *rtt = json_object_get(o, "rtt");
    int64_t cnt = num(rtt, "cnt");
    snprintf(b->name, sizeof b->name, "%s", name);
    snprintf(b->state, sizeof b->state, "%s", str(o, "state"));
    b->nodeid = (int32_t)num(o, "nodeid");
    b->up = strcmp(b->state, "UP") == 0;
    b->rtt_p50 = quantile_s(rtt, "p50", cnt);
    b->rtt_p95 = quantile_s(rtt, "p95", cnt);
    b->rtt_p99 = quantile_s(rtt, "p99", cnt);
    b->rtt_avg = quantile_s(rtt, "avg", cnt);
    b->rtt_count = cnt > 0 ? cnt : 0; /* this window; totals added later */
    b->rtt_sum = cnt > 0 ? (double)num(rtt, "sum") / 1e6 : 0;
    b->connects = num(o, "connects");
    b->disconnects = num(o, "disconnects");
    b->waitresp = num(o, "waitresp_cnt");
    b->req_timeouts = num(o, "req_timeouts");
}

static const struct kstats_broker *find(const struct kstats *k,
                                        const char *name)
{
    for (size_t i = 0; i < k->nbrokers; i++)
        if (strcmp(k->b[i].name, name) == 0)
            return &k->b[i];
    return NULL;
}

static int parse(const json_t *root, const struct kstats *old, struct kstats *n)
{
    const json_t *brokers = json_object_get(root, "brokers");
    const char *name;
    json_t *o;
    if (!json_is_object(root) || !json_is_object(brokers))
        return -EINVAL;
    n->updates = old->updates + 1;
    n->msg_cnt = num(root, "msg_cnt");
    n->msg_size = num(root, "msg_size");
    json_object_foreach((json_t *)brokers, name, o)
    {
        const char *src = str(o, "source");
        if (!json_is_object(o) || !strcmp(src, "internal") ||
            !strcmp(src, "logical"))
            continue;
        if (n->nbrokers == KSTATS_MAX_BROKERS) {
            n->dropped++;
            continue;
        }
        struct kstats_broker *b = &n->b[n->nbrokers++];
        take_broker(b, name, o);
        const struct kstats_broker *was = find(old, b->name);
        if (was) {
            b->rtt_count += was->rtt_count;
            b->rtt_sum += was->rtt_sum;
        }
    }
    return 0;
}

int kstats_update(struct kstats *k, const char *json, size_t len, char *err,
                  size_t errlen)
{
    struct kstats n; /* 8 KiB */
    json_error_t je;
    json_t *root;
    int rc;
    if (len > KSTATS_MAX_JSON) {
        snprintf(err, errlen, "statistics document of %zu bytes (at most %u)",
                 len, KSTATS_MAX_JSON);
        return -EINVAL;
    }
    root = json_loadb(json, len, 0, &je);
    if (!root) {
        snprintf(err, errlen, "statistics: %s at line %d, column %d", je.text,
                 je.line, je.column);
        return -EINVAL;
    }
    memset(&n, 0, sizeof n);
    rc = parse(root, k, &n);
    json_decref(root);
    if (rc) {
        snprintf(err, errlen, "statistics: not an object with \"brokers\"");
        return rc;
    }
    *k = n;
    return 0;
}
