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
 * Every protobuf type comes from the loaded schemas (the built-in ones
 * too), so one kind of descriptor is decoded here; Sparkplug B is decoded
 * with Tahu's schema from the same registry (spb.c) and JSON payloads are
 * validated by jansson (jsonp.c). Depends on those libraries and conf
 * types; no I/O.
 */
#include "bridge/payload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/jsonp.h"
#include "bridge/pb.h"
#include "bridge/pb_json.h"
#include "bridge/spb.h"

enum kind { K_RAW, K_PROTO, K_JSON, K_SPARKPLUG };

#define FRAME_MAX 64 /* Confluent's prefix: magic, id, message indexes */

struct plan {
    enum kind kind;
    const ProtobufCMessageDescriptor *type; /* K_PROTO */
    const ProtobufCFieldDescriptor *split;  /* K_PROTO: NULL, the whole */
    int split_metrics;                      /* K_SPARKPLUG: one per metric */
    int format;                             /* enum conf_format */
    int on;                                 /* goes through payload_decode */
    char ctype[320];                        /* content-type, "" for none */
    unsigned char frame[FRAME_MAX];         /* confluent: the prefix */
    size_t nframe;
};

struct payload {
    struct plan *plans;
    size_t n;
    size_t max_records;
    const struct pb_schema *schemas;
    struct pb *dc;
    struct jsonp *js;
    struct spb *spb;
    /* the message last decoded */
    int route;
    const ProtobufCMessage *msg, *const *el;
    size_t nel;
    int64_t unknown;
    char hunknown[24], hunresolved[24];
    unsigned char *framed; /* confluent: prefix + bytes */
    size_t framed_cap;
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

/* ---- confluent framing --------------------------------------------------- */

/* Confluent's varint: zig-zag, then 7 bits a byte, low first. */
static size_t zigzag(unsigned char *o, int64_t v)
{
    uint64_t u = v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
    size_t n = 0;
    do {
        o[n] = (unsigned char)(u & 0x7f);
        u >>= 7;
        if (u)
            o[n] |= 0x80;
        n++;
    } while (u);
    return n;
}

/* The indexes of type d in its file (outermost first) into idx: count. */
static size_t index_path(const ProtobufCMessageDescriptor *d, int64_t *idx,
                         size_t max)
{
    const struct pb_schema_msg *m = pb_schema_msg_info(d);
    size_t n = 0;
    for (const struct pb_schema_msg *q = m; q; q = q->outer)
        n++;
    if (n > max)
        return 0;
    size_t k = n;
    for (const struct pb_schema_msg *q = m; q; q = q->outer)
        idx[--k] = q->index;
    return n;
}

/* 0x00, the schema id (4 bytes, big-endian), the message indexes: their
 * count then each (all zig-zag varints), or a single 0 for [0]. */
static int frame(const struct conf *c, const struct conf_route *r, int no,
                 struct plan *pl, char *err, size_t errlen)
{
    int64_t idx[16];
    size_t n = 0, o = 0;
    if (!r->schema_id)
        return fail_at(c, r->at_format, err, errlen,
                       "route %d: format confluent needs schema_id (the "
                       "schema's id in the Schema Registry)",
                       no);
    if (r->message_index) {
        for (const char *s = r->message_index; *s;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s || v < 0 || v > 100000 || n == 16 ||
                (*end && *end != ','))
                return fail_at(c, r->at_message_index, err, errlen,
                               "route %d message_index: expected indexes "
                               "like \"0\" or \"1,0\", got \"%.40s\"",
                               no, r->message_index);
            idx[n++] = v;
            s = *end ? end + 1 : end;
        }
    } else if (!(n = index_path(pl->type, idx, 16))) {
        return fail_at(c, r->at_format, err, errlen,
                       "route %d: the message indexes of %s are not known "
                       "(set message_index)",
                       no, pl->type->name);
    }
    pl->frame[o++] = 0;
    for (int i = 3; i >= 0; i--)
        pl->frame[o++] = (unsigned char)(r->schema_id >> (8 * i));
    if (n == 1 && idx[0] == 0) {
        pl->frame[o++] = 0;
    } else {
        o += zigzag(pl->frame + o, (int64_t)n);
        for (size_t i = 0; i < n; i++)
            o += zigzag(pl->frame + o, idx[i]);
    }
    pl->nframe = o;
    return 0;
}

/* ---- plans --------------------------------------------------------------- */

/* The payload type of route no: raw, json, sparkplug or a loaded type. */
static int plan_kind(const struct conf *c, const struct conf_route *r, int no,
                     struct payload *p, struct plan *pl, char *err,
                     size_t errlen)
{
    const char *t = r->payload ? r->payload : "raw";
    int rc;
    pl->kind = K_RAW;
    if (!strcmp(t, "raw"))
        return 0;
    if (!strcmp(t, "json")) {
        pl->kind = K_JSON;
        return p->js || !(rc = jsonp_new(&p->js)) ? 0 : rc;
    }
    if (!strcmp(t, "sparkplug")) {
        pl->kind = K_SPARKPLUG;
        if (!p->spb && (rc = spb_new(p->schemas, &p->spb)))
            return rc == -ENOMEM ? rc
                                 : fail_at(c, r->at_payload, err, errlen,
                                           "route %d payload: the Sparkplug "
                                           "B schema is not loaded",
                                           no);
        spb_set_rebirth(p->spb, c->sparkplug.rebirth,
                        c->sparkplug.rebirth_interval);
        return 0;
    }
    pl->kind = K_PROTO;
    if ((pl->type = pb_schema_message(p->schemas, t)))
        return 0;
    const struct pb_schema_type *ty = pb_schema_find(p->schemas, t);
    return fail_at(
        c, r->at_payload, err, errlen,
        "route %d payload: %s \"%.80s\"; expected raw, json, "
        "sparkplug or a message type of the loaded schemas (see "
        "mqtt2kafka schema list)",
        no, ty ? "not a message type but an enum:" : "unknown message type", t);
}

/* payload, format and split of route no agree with each other and with
 * the schemas. */
static int compile_plan(const struct conf *c, const struct conf_route *r,
                        int no, struct payload *p, struct plan *pl, char *err,
                        size_t errlen)
{
    char why[256];
    const char *elem = NULL;
    int rc;
    pl->format = r->format;
    if ((rc = plan_kind(c, r, no, p, pl, err, errlen)))
        return rc;
    if (r->format == CONF_FORMAT_JSON && pl->kind == K_RAW)
        return fail_at(c, r->at_format, err, errlen,
                       "route %d: format json needs a payload type "
                       "(payload: raw cannot be transcoded)",
                       no);
    if (r->format == CONF_FORMAT_CONFLUENT && pl->kind != K_PROTO)
        return fail_at(c, r->at_format, err, errlen,
                       "route %d: format confluent needs a protobuf message "
                       "type as payload",
                       no);
    if (r->split && pl->kind != K_PROTO &&
        !(pl->kind == K_SPARKPLUG && !strcmp(r->split, "metrics")))
        return fail_at(c, r->at_split, err, errlen,
                       "route %d: split needs a protobuf message type (or "
                       "sparkplug with split: metrics) to find the field "
                       "\"%.60s\" in",
                       no, r->split);
    if (r->split && pl->kind == K_SPARKPLUG) {
        if (r->format != CONF_FORMAT_JSON)
            return fail_at(c, r->at_split, err, errlen,
                           "route %d: split: metrics of a Sparkplug payload "
                           "needs format json",
                           no);
        pl->split_metrics = 1;
    } else if (r->split && !(pl->split = pb_split_field(pl->type, r->split, why,
                                                        sizeof why))) {
        return fail_at(c, r->at_split, err, errlen, "route %d split: %s", no,
                       why);
    }
    if (r->format == CONF_FORMAT_CONFLUENT)
        if ((rc = frame(c, r, no, pl, err, errlen)))
            return rc;
    pl->on = pl->kind != K_RAW || pl->format != CONF_FORMAT_RAW;
    if (pl->kind == K_PROTO)
        elem = pl->split
                   ? ((const ProtobufCMessageDescriptor *)pl->split->descriptor)
                         ->name
                   : pl->type->name;
    else if (pl->kind == K_SPARKPLUG)
        elem = SPB_PAYLOAD_TYPE;
    if (pl->kind == K_JSON && pl->format != CONF_FORMAT_ENVELOPE)
        snprintf(pl->ctype, sizeof pl->ctype, "application/json");
    else if (pl->format == CONF_FORMAT_JSON)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/json; messageType=%s", elem);
    else if (pl->format == CONF_FORMAT_ENVELOPE)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/x-protobuf; messageType=%s%s%s", PB_ENVELOPE_TYPE,
                 elem ? "; payloadType=" : "",
                 elem                 ? elem
                 : pl->kind == K_JSON ? "application/json"
                                      : "");
    else if (pl->format == CONF_FORMAT_CONFLUENT)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/vnd.confluent.protobuf; messageType=%s; "
                 "schemaId=%" PRId64,
                 elem, r->schema_id);
    else if (elem)
        snprintf(pl->ctype, sizeof pl->ctype,
                 "application/x-protobuf; messageType=%s", elem);
    return 0;
}

int payload_new(const struct conf *c, const struct pb_schema *s,
                struct payload **out, char *err, size_t errlen)
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
    p->schemas = s;
    pb_set_schema(p->dc, s);
    p->n = c->nroutes;
    p->max_records = 1;
    for (size_t i = 0; i < c->nroutes; i++) {
        int rc = compile_plan(c, &c->routes[i], (int)i + 1, p, &p->plans[i],
                              err, errlen);
        if (rc) {
            if (rc == -ENOMEM)
                snprintf(err, errlen, "payload: out of memory");
            payload_free(p);
            return rc;
        }
        if (p->plans[i].split || p->plans[i].split_metrics)
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
    jsonp_free(p->js);
    spb_free(p->spb);
    free(p->framed);
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

/* ---- templates ----------------------------------------------------------- */

static const char *const spb_fields[] = {"group", "edge", "device", "type",
                                         "host",  "seq",  "name"};

int payload_field_check(void *ud, int route, const char *path, size_t len,
                        char *why, size_t whylen)
{
    const struct payload *p = ud;
    char why2[256];
    if (route < 0 || (size_t)route >= p->n || p->plans[route].kind == K_RAW)
        return -ENOENT;
    const struct plan *pl = &p->plans[route];
    if (pl->kind == K_JSON) /* any path: the payload says at run time */
        return 0;
    if (pl->kind == K_SPARKPLUG) {
        for (size_t i = 0; i < sizeof spb_fields / sizeof *spb_fields; i++)
            if (strlen(spb_fields[i]) == len &&
                !memcmp(spb_fields[i], path, len) &&
                (i < 6 || pl->split_metrics))
                return 0;
        snprintf(why, whylen,
                 "a Sparkplug payload has group, edge, device, type, host "
                 "and seq%s",
                 pl->split_metrics ? ", and with split name" : "");
        return -EINVAL;
    }
    if (pl->split && pb_field_path_check(pl->split->descriptor, path, len, why2,
                                         sizeof why2) == 0)
        return 0;
    if (pb_field_path_check(pl->type, path, len, why, whylen) == 0)
        return 0;
    if (pl->split)
        snprintf(why, whylen, "%s", why2);
    return -EINVAL;
}

/* ---- decoding ------------------------------------------------------------ */

static int decode_proto(struct payload *p, const struct plan *pl,
                        const struct payload_in *in, char *why, size_t whylen)
{
    if (pb_unpack(p->dc, pl->type, in->data, in->len, &p->msg, why, whylen))
        return -EINVAL;
    p->unknown = pb_unknown_fields(p->msg);
    if (pl->split) {
        p->nel = pb_elements(p->msg, pl->split, &p->el);
        if (p->nel == 0 || p->nel > PAYLOAD_SPLIT_MAX) {
            snprintf(why, whylen,
                     "the payload's %s field has %zu elements (split needs 1 "
                     "to %d)",
                     pl->split->name, p->nel, PAYLOAD_SPLIT_MAX);
            return -EINVAL;
        }
    }
    return 0;
}

int payload_decode(struct payload *p, int route, const struct payload_in *in,
                   enum payload_error *kind, char *why, size_t whylen)
{
    const struct plan *pl = &p->plans[route];
    int rc = 0;
    p->route = route;
    p->msg = NULL;
    p->el = &p->msg;
    p->nel = 1;
    p->unknown = 0;
    *kind = PAYLOAD_OK;
    switch (pl->kind) {
    case K_PROTO:
        rc = decode_proto(p, pl, in, why, whylen);
        break;
    case K_JSON:
        rc = jsonp_parse(p->js, in->data, in->len, why, whylen);
        break;
    case K_SPARKPLUG:
        rc = spb_decode(p->spb, p->dc, in->topic, in->data, in->len, in->now_ms,
                        why, whylen);
        if (!rc && pl->split_metrics) {
            p->nel = spb_metrics(p->spb);
            if (p->nel > PAYLOAD_SPLIT_MAX) {
                snprintf(why, whylen,
                         "the Sparkplug payload has %zu metrics (split takes "
                         "at most %d)",
                         p->nel, PAYLOAD_SPLIT_MAX);
                rc = -EINVAL;
            }
            if (!p->nel)
                p->nel = 1; /* STATE, or no metrics: the payload alone */
        }
        break;
    case K_RAW:
        break;
    }
    if (rc) {
        *kind = PAYLOAD_UNDECODABLE;
        return -EINVAL;
    }
    return (int)p->nel;
}

size_t payload_headers(struct payload *p, struct payload_hdr *out)
{
    size_t n = 0;
    struct payload_effects e;
    payload_effects(p, &e);
    if (e.unknown_fields) {
        snprintf(p->hunknown, sizeof p->hunknown, "%" PRId64, e.unknown_fields);
        out[n++] = (struct payload_hdr){"m2k.unknown_fields", p->hunknown};
    }
    if (e.unresolved) {
        snprintf(p->hunresolved, sizeof p->hunresolved, "%" PRId64,
                 e.unresolved);
        out[n++] =
            (struct payload_hdr){"m2k.sparkplug.unresolved", p->hunresolved};
    }
    return n;
}

void payload_effects(const struct payload *p, struct payload_effects *e)
{
    memset(e, 0, sizeof *e);
    e->unknown_fields = p->unknown;
    if (p->n && p->plans[p->route].kind == K_SPARKPLUG) {
        struct spb_effects x;
        spb_effects(p->spb, &x);
        e->unresolved = x.unresolved;
        e->seq_gap = x.seq_gap;
        e->state_key = x.state_key;
        e->state = x.state;
        e->state_len = x.state_len;
        e->publish_topic = x.rebirth_topic;
        e->publish = x.rebirth;
        e->publish_len = x.rebirth_len;
    }
}

int payload_restore(struct payload *p, const char *key, const void *value,
                    size_t len)
{
    if (!p->spb)
        return -EINVAL;
    return spb_restore(p->spb, key, value, len);
}

void payload_element(const struct payload *p, size_t i,
                     struct payload_elem *out)
{
    const struct plan *pl = &p->plans[p->route];
    out->elem = NULL;
    out->whole = NULL;
    out->p = p;
    out->i = (long)i;
    if (pl->kind == K_PROTO) {
        out->elem = i < p->nel ? p->el[i] : NULL;
        out->whole = p->el != &p->msg ? p->msg : NULL;
    }
    if (pl->kind == K_SPARKPLUG && !pl->split_metrics)
        out->i = -1;
}

/* Where templates find {payload.x}: the element, then the whole message. */
int payload_field_text(void *ud, const char *path, size_t len, char *buf,
                       size_t cap, size_t *olen)
{
    const struct payload_elem *s = ud;
    const struct payload *p = s->p;
    int rc = -ENOENT;
    if (p && p->plans[p->route].kind == K_JSON) {
        rc = jsonp_field_text(p->js, path, len, buf, cap, olen);
        return rc == -EINVAL ? -ENOENT : rc; /* an object is no key */
    }
    if (p && p->plans[p->route].kind == K_SPARKPLUG)
        return spb_field_text(p->spb, s->i, path, len, buf, cap, olen);
    if (s->elem)
        rc = pb_field_text(s->elem, path, len, buf, cap, olen);
    if ((rc == -ENOENT || rc == -EINVAL) && s->whole)
        rc = pb_field_text(s->whole, path, len, buf, cap, olen);
    return rc == -EINVAL ? -ENOENT : rc;
}

/* ---- values -------------------------------------------------------------- */

static int framed(struct payload *p, const struct plan *pl, const void *body,
                  size_t blen, const void **value, size_t *len)
{
    size_t n = pl->nframe + blen;
    if (n > p->framed_cap) {
        unsigned char *b = realloc(p->framed, n);
        if (!b)
            return -ENOMEM;
        p->framed = b;
        p->framed_cap = n;
    }
    memcpy(p->framed, pl->frame, pl->nframe);
    if (blen)
        memcpy(p->framed + pl->nframe, body, blen);
    *value = p->framed;
    *len = n;
    return 0;
}

static int envelope(struct payload *p, const struct payload_msg *m,
                    const struct payload_elem *s, const char *ctype,
                    const void *body, size_t blen, const void **value,
                    size_t *len, char *why, size_t whylen)
{
    char dev[256];
    size_t dlen = 0;
    if (s->elem && payload_field_text((void *)s, "device_id", 9, dev,
                                      sizeof dev - 1, &dlen) == 0)
        dev[dlen] = '\0';
    else
        snprintf(dev, sizeof dev, "%.*s", m->key ? (int)m->key_len : 0,
                 m->key ? m->key : "");
    struct pb_envelope e = {
        .device_id = dev,
        .gateway_id = m->gateway_id,
        .mqtt_topic = m->topic,
        .content_type = ctype,
        .arrival_ms = m->arrival_ms,
        .qos = (uint32_t)m->qos,
        .payload = body,
        .len = blen,
    };
    if (pb_envelope(p->dc, &e, value, len)) {
        snprintf(why, whylen, "the envelope would be too large");
        return -EINVAL;
    }
    return 0;
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
    if (pl->kind == K_JSON && pl->format == CONF_FORMAT_JSON) {
        if (jsonp_compact(p->js, value, len)) {
            snprintf(why, whylen, "the JSON would be too large to write");
            return -EINVAL;
        }
        return 0;
    }
    if (pl->kind == K_SPARKPLUG && pl->format == CONF_FORMAT_JSON)
        return spb_json(p->spb, p->dc, s.i, value, len, why, whylen);
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
    if (pl->format == CONF_FORMAT_CONFLUENT) {
        if (framed(p, pl, body, blen, value, len)) {
            snprintf(why, whylen, "out of memory framing the record");
            return -EINVAL;
        }
        return 0;
    }
    return envelope(p, m, &s,
                    s.elem
                        ? ((const ProtobufCMessage *)s.elem)->descriptor->name
                    : pl->kind == K_SPARKPLUG ? SPB_PAYLOAD_TYPE
                    : pl->kind == K_JSON      ? "application/json"
                                              : NULL,
                    body, blen, value, len, why, whylen);
}

int payload_describe(struct payload *p, int route, const struct payload_in *in,
                     const char **type, const void **json, size_t *jlen)
{
    const struct plan *pl;
    enum payload_error kind;
    char why[256];
    if (route < 0 || (size_t)route >= p->n)
        return -EINVAL;
    pl = &p->plans[route];
    if (pl->kind == K_RAW ||
        payload_decode(p, route, in, &kind, why, sizeof why) < 0)
        return -EINVAL;
    switch (pl->kind) {
    case K_JSON:
        *type = "json";
        return jsonp_compact(p->js, json, jlen);
    case K_SPARKPLUG:
        *type = "sparkplug";
        return spb_json(p->spb, p->dc, -1, json, jlen, why, sizeof why);
    default:
        *type = pl->type->name;
        return pb_json(p->dc, p->msg, json, jlen, why, sizeof why);
    }
}
