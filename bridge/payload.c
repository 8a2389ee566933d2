/*
 * payload.c — the decode stage between route and spool (see payload.h).
 *
 * A message becomes one record, or one per element of the split field;
 * each record's templates see the element's fields first and the whole
 * message's after (a reading in a batch may leave its device_id to the
 * batch). The wiring (convert.c) renders the templates through
 * payload_field_text() between payload_decode() and payload_value(), so
 * this stage never calls the route stage, and `mqtt2kafka route
 * --payload-file` shows exactly what the daemon would write.
 *
 * Depends on the protobuf toolkit (pb.h, pb_json.h) and conf types; no I/O.
 */
#include "bridge/payload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/pb.h"
#include "bridge/pb_json.h"

struct plan {
    const ProtobufCMessageDescriptor *type; /* NULL: raw bytes */
    const ProtobufCFieldDescriptor *split;  /* NULL: the whole message */
    int format;                             /* enum conf_format */
    int on;                                 /* goes through payload_decode */
    char ctype[320];                        /* content-type, "" for none */
};

struct payload {
    struct plan *plans;
    size_t n;
    size_t max_records;
    struct pb *dc;
    /* the message last decoded */
    const ProtobufCMessage *msg, *const *el;
    size_t nel;
};

__attribute__((format(printf, 5, 6))) static int
fail_at(const struct conf *c, struct conf_mark m, char *err, size_t errlen,
        const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "%s:%d:%d: ", c->path ? c->path : "<config>",
                     m.line, m.col);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* payload, format and split of route no agree with each other and with
 * the schemas. */
static int compile_plan(const struct conf *c, const struct conf_route *r,
                        int no, struct plan *pl, char *err, size_t errlen)
{
    char why[256], names[512];
    const char *elem;
    pl->format = r->format;
    pl->type =
        r->payload && strcmp(r->payload, "raw") ? pb_type(r->payload) : NULL;
    if (r->payload && strcmp(r->payload, "raw") && !pl->type) {
        pb_type_names(names, sizeof names);
        return fail_at(c, r->at_payload, err, errlen,
                       "route %d payload: unknown message type \"%.80s\"; "
                       "expected raw or one of: %s",
                       no, r->payload, names);
    }
    if (r->format == CONF_FORMAT_JSON && !pl->type)
        return fail_at(c, r->at_format, err, errlen,
                       "route %d: format json needs a payload message type "
                       "(payload: raw cannot be transcoded)",
                       no);
    if (r->split && !pl->type)
        return fail_at(c, r->at_split, err, errlen,
                       "route %d: split needs a payload message type to find "
                       "the field \"%.60s\" in",
                       no, r->split);
    if (r->split &&
        !(pl->split = pb_split_field(pl->type, r->split, why, sizeof why)))
        return fail_at(c, r->at_split, err, errlen, "route %d split: %s", no,
                       why);
    pl->on = pl->type || pl->format != CONF_FORMAT_RAW;
    elem =
        pl->split
            ? ((const ProtobufCMessageDescriptor *)pl->split->descriptor)->name
        : pl->type ? pl->type->name
                   : NULL;
    if (pl->format == CONF_FORMAT_JSON)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/json; messageType=%s", elem);
    else if (pl->format == CONF_FORMAT_ENVELOPE)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/x-protobuf; messageType=%s%s%s", PB_ENVELOPE_TYPE,
                 elem ? "; payloadType=" : "", elem ? elem : "");
    else if (elem)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/x-protobuf; messageType=%s", elem);
    return 0;
}

int payload_new(const struct conf *c, struct payload **out, char *err,
                size_t errlen)
{
    struct payload *p = calloc(1, sizeof *p);
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
        int rc = compile_plan(c, &c->routes[i], (int)i + 1, &p->plans[i], err,
                              errlen);
        if (rc) {
            payload_free(p);
            return rc;
        }
        if (p->plans[i].split)
            p->max_records = PAYLOAD_SPLIT_MAX;
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

const char *payload_content_type(const struct payload *p, int route)
{
    if (!p || route < 0 || (size_t)route >= p->n || !p->plans[route].ctype[0])
        return NULL;
    return p->plans[route].ctype;
}

int payload_field_check(void *ud, int route, const char *path, size_t len,
                        char *why, size_t whylen)
{
    const struct payload *p = ud;
    char why2[256];
    if (route < 0 || (size_t)route >= p->n || !p->plans[route].type)
        return -ENOENT;
    const struct plan *pl = &p->plans[route];
    if (pl->split && pb_field_path_check(pl->split->descriptor, path, len, why2,
                                         sizeof why2) == 0)
        return 0;
    if (pb_field_path_check(pl->type, path, len, why, whylen) == 0)
        return 0;
    if (pl->split)
        snprintf(why, whylen, "%s", why2);
    return -EINVAL;
}

int payload_decode(struct payload *p, int route, const void *data, size_t len,
                   enum payload_error *kind, char *why, size_t whylen)
{
    const struct plan *pl = &p->plans[route];
    p->msg = NULL;
    p->el = &p->msg;
    p->nel = 1;
    *kind = PAYLOAD_OK;
    if (pl->type &&
        pb_unpack(p->dc, pl->type, data, len, &p->msg, why, whylen)) {
        *kind = PAYLOAD_UNDECODABLE;
        return -EINVAL;
    }
    if (pl->split) {
        p->nel = pb_elements(p->msg, pl->split, &p->el);
        if (p->nel == 0 || p->nel > PAYLOAD_SPLIT_MAX) {
            snprintf(why, whylen,
                     "the payload's %s field has %zu elements (split needs 1 "
                     "to %d)",
                     pl->split->name, p->nel, PAYLOAD_SPLIT_MAX);
            *kind = PAYLOAD_UNDECODABLE;
            return -EINVAL;
        }
    }
    return (int)p->nel;
}

void payload_element(const struct payload *p, size_t i,
                     struct payload_elem *out)
{
    out->elem = i < p->nel ? p->el[i] : NULL;
    out->whole = p->el != &p->msg ? p->msg : NULL;
}

/* Where templates find {payload.x}: the element, then the whole message. */
int payload_field_text(void *ud, const char *path, size_t len, char *buf,
                       size_t cap, size_t *olen)
{
    const struct payload_elem *s = ud;
    int rc = -ENOENT;
    if (s->elem)
        rc = pb_field_text(s->elem, path, len, buf, cap, olen);
    if ((rc == -ENOENT || rc == -EINVAL) && s->whole)
        rc = pb_field_text(s->whole, path, len, buf, cap, olen);
    return rc == -EINVAL ? -ENOENT : rc;
}

int payload_value(struct payload *p, int route, size_t i,
                  const struct payload_msg *m, const void **value, size_t *len,
                  char *why, size_t whylen)
{
    const struct plan *pl = &p->plans[route];
    struct payload_elem s;
    const void *body = m->data;
    size_t blen = m->len;
    int rc;
    payload_element(p, i, &s);
    if (pl->format == CONF_FORMAT_JSON)
        return pb_json(p->dc, s.elem, value, len, why, whylen);
    if (pl->split && (rc = pb_pack(p->dc, s.elem, &body, &blen))) {
        snprintf(why, whylen, "an element of %s is too large to pack",
                 pl->split->name);
        return -EINVAL;
    }
    if (pl->format == CONF_FORMAT_RAW) {
        *value = body;
        *len = blen;
        return 0;
    }
    char dev[256];
    size_t dlen = 0;
    if (s.elem &&
        payload_field_text(&s, "device_id", 9, dev, sizeof dev - 1, &dlen) == 0)
        dev[dlen] = '\0';
    else
        snprintf(dev, sizeof dev, "%.*s", m->key ? (int)m->key_len : 0,
                 m->key ? m->key : "");
    struct pb_envelope e = {
        .device_id = dev,
        .gateway_id = m->gateway_id,
        .mqtt_topic = m->topic,
        .content_type =
            s.elem ? ((const ProtobufCMessage *)s.elem)->descriptor->name
                   : NULL,
        .arrival_ms = m->arrival_ms,
        .qos = (uint32_t)m->qos,
        .payload = body,
        .len = blen,
    };
    if ((rc = pb_envelope(p->dc, &e, value, len))) {
        snprintf(why, whylen, "the envelope would be too large");
        return -EINVAL;
    }
    return 0;
}

int payload_describe(struct payload *p, int route, const void *data, size_t len,
                     const char **type, const void **json, size_t *jlen)
{
    const ProtobufCMessage *m;
    char why[256];
    if (route < 0 || (size_t)route >= p->n || !p->plans[route].type)
        return -EINVAL;
    *type = p->plans[route].type->name;
    if (pb_unpack(p->dc, p->plans[route].type, data, len, &m, why,
                  sizeof why) ||
        pb_json(p->dc, m, json, jlen, why, sizeof why))
        return -EINVAL;
    return 0;
}
