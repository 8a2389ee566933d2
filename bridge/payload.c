/*
 * payload.c — the decode stage between route and spool (see payload.h).
 *
 * Kept apart from bridge.c so that `mqtt2kafka route --payload-file` shows
 * exactly what the daemon would write: both call payload_process(). A
 * message becomes one record, or one per element of the split field; each
 * record's templates see the element's fields first and the whole
 * message's after (a reading in a batch may leave its device_id to the
 * batch). Nothing is emitted for an element before its templates and its
 * value were made, and any failure fails the whole message, so a message
 * is never half in Kafka and half in the dead-letter topic once the caller
 * drops what was emitted.
 */
#include "bridge/payload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/pb.h"
#include "bridge/pb_json.h"

struct plan {
    const ProtobufCMessageDescriptor *type; /* NULL: raw bytes */
    const ProtobufCFieldDescriptor *split;  /* NULL: the whole message */
    int format;                             /* enum conf_format */
    int on;                                 /* goes through payload_process */
    char ctype[320];                        /* content-type, "" for none */
};

struct payload {
    struct plan *plans;
    size_t n;
    size_t max_records;
    struct pb *dc;
};

int payload_new(const struct conf *c, struct payload **out, char *err,
                size_t errlen)
{
    struct payload *p = calloc(1, sizeof *p);
    char why[256];
    *out = NULL;
    if (!p ||
        !(p->plans = calloc(c->nroutes ? c->nroutes : 1, sizeof *p->plans)) ||
        pb_new(&p->dc)) {
        payload_free(p);
        snprintf(err, errlen, "payload: out of memory");
        return -ENOMEM;
    }
    p->n = c->nroutes;
    p->max_records = 1;
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        struct plan *pl = &p->plans[i];
        const char *elem;
        pl->format = r->format;
        pl->type = r->payload ? pb_type(r->payload) : NULL;
        if (r->payload && strcmp(r->payload, "raw") && !pl->type) {
            snprintf(err, errlen,
                     "%s:%d:%d: route %zu: unknown payload type %s",
                     c->path ? c->path : "<config>", r->line, r->col, i + 1,
                     r->payload);
            payload_free(p);
            return -EINVAL;
        }
        if (pl->type && r->split &&
            !(pl->split =
                  pb_split_field(pl->type, r->split, why, sizeof why))) {
            snprintf(err, errlen, "%s:%d:%d: route %zu: %s",
                     c->path ? c->path : "<config>", r->line, r->col, i + 1,
                     why);
            payload_free(p);
            return -EINVAL;
        }
        if (pl->split)
            p->max_records = PAYLOAD_SPLIT_MAX;
        pl->on = pl->type || pl->format != CONF_FORMAT_RAW;
        elem = pl->split
                   ? ((const ProtobufCMessageDescriptor *)pl->split->descriptor)
                         ->name
               : pl->type ? pl->type->name
                          : NULL;
        if (pl->format == CONF_FORMAT_JSON)
            snprintf(pl->ctype, sizeof pl->ctype,
                     "application/json; messageType=%s", elem);
        else if (pl->format == CONF_FORMAT_ENVELOPE)
            snprintf(pl->ctype, sizeof pl->ctype,
                     "application/x-protobuf; messageType=%s%s%s",
                     PB_ENVELOPE_TYPE, elem ? "; payloadType=" : "",
                     elem ? elem : "");
        else if (elem)
            snprintf(pl->ctype, sizeof pl->ctype,
                     "application/x-protobuf; messageType=%s", elem);
    }
    *out = p;
    return 0;
}

void payload_free(struct payload *p)
{
    if (!p)
        return;
    pb_free(p->dc);
    free(p->plans);
    free(p);
}

int payload_decodes(const struct payload *p, int route)
{
    return p && route >= 0 && (size_t)route < p->n && p->plans[route].on;
}

size_t payload_max_records(const struct payload *p)
{
    return p ? p->max_records : 1;
}

/* Where templates find {payload.x}: the element, then the whole message. */
struct scope {
    const ProtobufCMessage *elem, *whole;
};

static int field_text(void *ud, const char *path, size_t len, char *buf,
                      size_t cap, size_t *olen)
{
    const struct scope *s = ud;
    int rc = -ENOENT;
    if (s->elem)
        rc = pb_field_text(s->elem, path, len, buf, cap, olen);
    if ((rc == -ENOENT || rc == -EINVAL) && s->whole)
        rc = pb_field_text(s->whole, path, len, buf, cap, olen);
    return rc == -EINVAL ? -ENOENT : rc;
}

static int fail(enum payload_error *kind, enum payload_error k, char *why,
                size_t whylen, const char *reason)
{
    *kind = k;
    snprintf(why, whylen, "%s", reason);
    return -EINVAL;
}

/* One element (or the message) → the record value. */
static int value_of(struct payload *p, const struct plan *pl,
                    const struct payload_msg *m, const struct scope *s,
                    const struct route_result *rr, struct payload_rec *rec,
                    char *why, size_t whylen)
{
    const void *body = m->data;
    size_t blen = m->len;
    int rc;
    if (pl->format == CONF_FORMAT_JSON)
        return pb_json(p->dc, s->elem, &rec->value, &rec->len, why, whylen);
    if (pl->split && (rc = pb_pack(p->dc, s->elem, &body, &blen))) {
        snprintf(why, whylen, "an element of %s is too large to pack",
                 pl->split->name);
        return rc;
    }
    if (pl->format == CONF_FORMAT_RAW) {
        rec->value = body;
        rec->len = blen;
        return 0;
    }
    char dev[256];
    size_t dlen = 0;
    if (s->elem &&
        field_text((void *)s, "device_id", 9, dev, sizeof dev - 1, &dlen) == 0)
        dev[dlen] = '\0';
    else
        snprintf(dev, sizeof dev, "%.*s", rr->has_key ? (int)rr->key_len : 0,
                 rr->key);
    struct pb_envelope e = {
        .device_id = dev,
        .gateway_id = m->gateway_id,
        .mqtt_topic = m->topic,
        .content_type = s->elem ? s->elem->descriptor->name : NULL,
        .arrival_ms = m->arrival_ms,
        .qos = (uint32_t)m->qos,
        .payload = body,
        .len = blen,
    };
    if ((rc = pb_envelope(p->dc, &e, &rec->value, &rec->len)))
        snprintf(why, whylen, "the envelope would be too large");
    return rc;
}

int payload_process(struct payload *p, const struct route_table *t,
                    struct route_result *rr, const struct payload_msg *m,
                    payload_emit_fn emit, void *ud, enum payload_error *kind,
                    char *why, size_t whylen)
{
    const struct plan *pl = &p->plans[rr->index];
    const ProtobufCMessage *msg = NULL, *const *el = &msg;
    size_t n = 1;
    char tmp[192];
    *kind = PAYLOAD_OK;
    if (pl->type &&
        pb_unpack(p->dc, pl->type, m->data, m->len, &msg, why, whylen)) {
        *kind = PAYLOAD_UNDECODABLE;
        return -EINVAL;
    }
    if (pl->split) {
        n = pb_elements(msg, pl->split, &el);
        if (n == 0 || n > PAYLOAD_SPLIT_MAX) {
            snprintf(
                tmp, sizeof tmp,
                "the payload's %s field has %zu elements (split needs 1 to %d)",
                pl->split->name, n, PAYLOAD_SPLIT_MAX);
            return fail(kind, PAYLOAD_UNDECODABLE, why, whylen, tmp);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct scope s = {el[i], pl->split ? msg : NULL};
        struct payload_rec rec = {0};
        if (rr->pending) {
            enum route_status st = route_expand(t, rr, field_text, &s);
            if (st != ROUTE_OK)
                return fail(kind,
                            st == ROUTE_NO_FIELD    ? PAYLOAD_MISSING_FIELD
                            : st == ROUTE_BAD_FIELD ? PAYLOAD_UNDECODABLE
                                                    : PAYLOAD_BAD_TOPIC,
                            why, whylen, rr->reason);
        }
        if (value_of(p, pl, m, &s, rr, &rec, why, whylen)) {
            *kind = PAYLOAD_UNDECODABLE;
            return -EINVAL;
        }
        rec.topic = rr->topic;
        rec.has_key = rr->has_key;
        rec.key = rr->has_key ? rr->key : NULL;
        rec.key_len = rr->key_len;
        rec.content_type = pl->ctype[0] ? pl->ctype : NULL;
        int rc = emit(ud, &rec);
        if (rc)
            return rc;
    }
    return 0;
}
