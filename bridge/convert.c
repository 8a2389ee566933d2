/*
 * convert.c — one MQTT message → records or a dead letter (convert.h).
 *
 * The wiring of the two pure stages: route.c matches the topic and renders
 * the templates, payload.c decodes the payload and makes each record's
 * value. Neither calls the other; this file passes payload.c's field
 * callback to route_expand() between the two. The order of the checks is
 * the order a user reads in error.reason: no route or an illegal topic
 * first, then an empty or oversized payload, then decoding.
 *
 * Knows route.h and payload.h; no I/O.
 */
#include "bridge/convert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/payload.h"
#include "bridge/schemas.h"

struct convert {
    const struct conf *c;
    struct convert_opts o;
    struct route_table *routes;
    struct payload *payload;
    struct pb_schema *own;  /* the built-in types, when given none */
    int decoded;            /* the last message went through payload */
    struct route_result rr; /* the message being converted */
};

int convert_new(const struct conf *c, const struct convert_opts *o,
                struct convert **out, char *err, size_t errlen)
{
    struct convert *cv = calloc(1, sizeof *cv);
    int rc;
    *out = NULL;
    if (!cv) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    cv->c = c;
    cv->o = *o;
    if (!o->schemas && (rc = schemas_builtin(&cv->own, err, errlen))) {
        convert_free(cv);
        return rc;
    }
    if ((rc = route_table_new(c, &cv->routes, err, errlen)) ||
        (rc = payload_new(c, o->schemas ? o->schemas : cv->own, &cv->payload,
                          err, errlen)) ||
        (rc = route_table_check_fields(cv->routes, payload_field_check,
                                       cv->payload, err, errlen))) {
        convert_free(cv);
        return rc;
    }
    *out = cv;
    return 0;
}

void convert_free(struct convert *cv)
{
    if (!cv)
        return;
    route_table_free(cv->routes);
    payload_free(cv->payload);
    pb_schema_free(cv->own);
    free(cv);
}

size_t convert_filters(const struct convert *cv, const char ***filters)
{
    return route_table_filters(cv->routes, filters);
}

const char *convert_filter(const struct convert *cv, size_t i)
{
    return route_filter(cv->routes, i);
}

size_t convert_max_records(const struct convert *cv)
{
    return payload_max_records(cv->payload);
}

enum route_status convert_route(struct convert *cv, const char *topic,
                                struct route_result *out)
{
    return route_match(cv->routes, topic, out);
}

int convert_decodes(const struct convert *cv, int route)
{
    return payload_decodes(cv->payload, route);
}

int convert_describe(struct convert *cv, int route, const char *topic,
                     const void *data, size_t len, const char **type,
                     const void **json, size_t *jlen)
{
    struct payload_in in = {topic, data, len, 0};
    return payload_describe(cv->payload, route, &in, type, json, jlen);
}

void convert_effects(const struct convert *cv, struct convert_effects *e)
{
    struct payload_effects p;
    memset(e, 0, sizeof *e);
    if (!cv->decoded)
        return;
    payload_effects(cv->payload, &p);
    *e = (struct convert_effects){
        .unknown_fields = p.unknown_fields,
        .unresolved = p.unresolved,
        .seq_gap = p.seq_gap,
        .state_key = p.state_key,
        .state = p.state,
        .state_len = p.state_len,
        .publish_topic = p.publish_topic,
        .publish = p.publish,
        .publish_len = p.publish_len,
    };
}

int convert_restore(struct convert *cv, const char *key, const void *value,
                    size_t len)
{
    return payload_restore(cv->payload, key, value, len);
}

static int dead(struct convert_dead *d, enum convert_kind kind, const char *why,
                size_t keep)
{
    d->kind = kind;
    snprintf(d->why, sizeof d->why, "%s", why);
    d->keep = keep;
    return 0;
}

/* A route that decodes: every element's record, or a dead letter. */
static int decoded(struct convert *cv, const struct convert_msg *m,
                   convert_emit_fn emit, void *ud, struct convert_dead *d)
{
    struct route_result *rr = &cv->rr;
    enum payload_error kind;
    struct payload_in in = {m->topic, m->payload, m->len, m->arrival_ms};
    struct payload_hdr hdrs[PAYLOAD_HDRS_MAX];
    cv->decoded = 1;
    int n = payload_decode(cv->payload, rr->index, &in, &kind, d->why,
                           sizeof d->why);
    size_t nh = n < 0 ? 0 : payload_headers(cv->payload, hdrs);
    d->has_key = 0; /* a dead letter of a decoding route has no key */
    d->keep = m->len;
    if (n < 0) {
        d->kind = kind == PAYLOAD_MISSING_FIELD ? CONVERT_MISSING_FIELD
                  : kind == PAYLOAD_BAD_TOPIC   ? CONVERT_BAD_TOPIC
                                                : CONVERT_BAD_PAYLOAD;
        return 0;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
        struct payload_elem el;
        payload_element(cv->payload, i, &el);
        if (rr->pending) {
            enum route_status st =
                route_expand(cv->routes, rr, payload_field_text, &el);
            if (st != ROUTE_OK)
                return dead(d,
                            st == ROUTE_NO_FIELD    ? CONVERT_MISSING_FIELD
                            : st == ROUTE_BAD_FIELD ? CONVERT_BAD_PAYLOAD
                                                    : CONVERT_BAD_TOPIC,
                            rr->reason, m->len);
        }
        struct payload_msg pm = {
            m->topic,
            m->payload,
            m->len,
            m->qos,
            m->arrival_ms,
            m->gateway_id,
            rr->has_key ? rr->key : NULL,
            rr->key_len,
        };
        struct convert_rec rec = {
            .topic = rr->topic,
            .key = rr->has_key ? rr->key : NULL,
            .key_len = rr->key_len,
            .has_key = rr->has_key,
            .content_type = payload_content_type(cv->payload, rr->index),
            .route = rr->index,
        };
        for (size_t k = 0; k < nh && k < CONVERT_HDRS_MAX; k++)
            rec.hdrs[rec.nhdrs++] =
                (struct convert_hdr){hdrs[k].name, hdrs[k].value};
        if (payload_value(cv->payload, rr->index, i, &pm, &rec.value, &rec.len,
                          d->why, sizeof d->why)) {
            d->kind = CONVERT_BAD_PAYLOAD;
            return 0;
        }
        int rc = emit(ud, &rec);
        if (rc)
            return rc;
    }
    return 0;
}

int convert_message(struct convert *cv, const struct convert_msg *m,
                    convert_emit_fn emit, void *ud, struct convert_dead *d)
{
    struct route_result *rr = &cv->rr;
    const struct conf_route *r;
    char why[200];
    memset(d, 0, sizeof *d);
    cv->decoded = 0;
    route_match(cv->routes, m->topic, rr);
    d->route = rr->index;
    d->key = rr->key;
    d->key_len = rr->key_len;
    d->has_key = rr->status == ROUTE_OK && rr->has_key;
    if (rr->status != ROUTE_OK)
        return dead(d,
                    rr->status == ROUTE_NO_MATCH ? CONVERT_UNROUTED
                                                 : CONVERT_BAD_TOPIC,
                    rr->reason, m->len);
    r = rr->route;
    if (m->len == 0)
        return dead(d, CONVERT_EMPTY, "empty payload", 0);
    if ((int64_t)m->len > cv->o.max_payload) {
        snprintf(why, sizeof why,
                 "payload of %zu bytes exceeds mqtt.max_payload (%" PRId64 ")",
                 m->len, cv->o.max_payload);
        return dead(d, CONVERT_OVERSIZED, why, (size_t)cv->o.max_payload);
    }
    if (r->max_payload > 0 && (int64_t)m->len > r->max_payload) {
        snprintf(why, sizeof why,
                 "payload of %zu bytes exceeds route %d's max_payload (%" PRId64
                 ")",
                 m->len, rr->index + 1, r->max_payload);
        return dead(d, CONVERT_OVERSIZED, why, (size_t)r->max_payload);
    }
    if (payload_decodes(cv->payload, rr->index))
        return decoded(cv, m, emit, ud, d);
    struct convert_rec rec = {
        .topic = rr->topic,
        .key = rr->has_key ? rr->key : NULL,
        .key_len = rr->key_len,
        .has_key = rr->has_key,
        .value = m->payload,
        .len = m->len,
        .route = rr->index,
    };
    return emit(ud, &rec);
}
