/*
 * spb.c — Sparkplug B payloads (spb.h). The payload is decoded with the
 * runtime descriptors of Tahu's schema (the built-in descriptor set), and
 * its fields are read by number through protobuf-c's field descriptors,
 * so there is one kind of descriptor in the decode path. Alias tables are
 * sorted arrays per scope ("group/edge" or "group/edge/device"), found by
 * binary search; births are rare, lookups per DATA metric. Everything is
 * capped (scopes, aliases per scope, bytes of names).
 *
 * The persisted form of a scope (spb_effects, spb_restore): a version
 * byte 1, then per alias: alias (u64), datatype (u32), name length (u32),
 * each little-endian, and the name's bytes.
 *
 * Part of the protobuf toolkit's family (it uses the decoder's arena and
 * output buffer, pb_int.h). No I/O, no clock.
 */
#include "bridge/spb.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/jsonp.h"
#include "bridge/numfmt.h"
#include "bridge/pb_int.h"

#define KEY_MAX 400

enum { NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH, NCMD, DCMD, STATE };
static const char *const types[] = {"NBIRTH", "NDATA", "NDEATH",
                                    "DBIRTH", "DDATA", "DDEATH",
                                    "NCMD",   "DCMD",  "STATE"};

/* Payload and Metric fields by number. */
enum { P_TIMESTAMP = 1, P_METRICS, P_SEQ, P_UUID, P_BODY };
enum {
    M_NAME = 1,
    M_ALIAS,
    M_TIMESTAMP,
    M_DATATYPE,
    M_HISTORICAL,
    M_TRANSIENT,
    M_NULL,
    M_METADATA,
    M_PROPERTIES,
    M_INT = 10,
    M_LONG,
    M_FLOAT,
    M_DOUBLE,
    M_BOOL,
    M_STRING,
    M_BYTES,
    M_DATASET,
    M_TEMPLATE,
    M_EXTENSION,
};
enum { DT_INT8 = 1, DT_INT16, DT_INT32, DT_INT64, DT_BOOLEAN = 11 };

struct alias {
    uint64_t alias;
    uint32_t datatype;
    uint32_t len;
    char *name;
};

struct scope {
    char *key; /* group/edge[/device] */
    struct alias *a;
    size_t n;
};

struct node {  /* an edge node: its seq and when it was last asked */
    char *key; /* group/edge */
    int seq;   /* the last seq seen, -1: none since the start */
    int64_t asked_ms;
    int asked;
};

struct spb {
    const ProtobufCMessageDescriptor *payload, *metric;
    const ProtobufCEnumDescriptor *datatype;
    struct scope *scopes; /* sorted by key */
    size_t nscopes;
    struct node *nodes; /* sorted by key */
    size_t nnodes;
    size_t names;   /* bytes of all names */
    size_t aliases; /* of all scopes */
    int rebirth;
    int64_t interval;
    struct jsonp *state_json;
    /* the message last decoded */
    int type;
    const char *part[4]; /* group, edge, device; STATE: host */
    size_t plen[4];
    const ProtobufCMessage *msg;
    const ProtobufCMessage *const *mets;
    size_t nmets;
    const char **mname; /* per metric: resolved name (NULL unresolved) */
    size_t *mnlen;
    uint32_t *mtype; /* per metric: datatype, 0 unknown */
    const void *raw; /* STATE: the payload */
    size_t rawlen;
    struct spb_effects fx;
    char state_key[KEY_MAX + 8], rebirth_topic[KEY_MAX + 16];
    unsigned char *blob; /* a scope's persisted form; the NCMD payload */
    size_t bloblen;
    unsigned char *ncmd;
    size_t ncmdlen;
};

/* ---- set-up -------------------------------------------------------------- */

int spb_new(const struct pb_schema *s, struct spb **out)
{
    struct spb *sp = calloc(1, sizeof *sp);
    *out = NULL;
    if (!sp)
        return -ENOMEM;
    sp->payload = pb_schema_message(s, SPB_PAYLOAD_TYPE);
    sp->metric = pb_schema_message(s, SPB_PAYLOAD_TYPE ".Metric");
    sp->datatype = pb_schema_enum(s, "org.eclipse.tahu.protobuf.DataType");
    if (!sp->payload || !sp->metric || !sp->datatype) {
        free(sp);
        return -ENOENT;
    }
    if (jsonp_new(&sp->state_json)) {
        free(sp);
        return -ENOMEM;
    }
    sp->rebirth = 1;
    sp->interval = 30000;
    *out = sp;
    return 0;
}

void spb_free(struct spb *sp)
{
    if (!sp)
        return;
    for (size_t i = 0; i < sp->nscopes; i++) {
        for (size_t k = 0; k < sp->scopes[i].n; k++)
            free(sp->scopes[i].a[k].name);
        free(sp->scopes[i].a);
        free(sp->scopes[i].key);
    }
    for (size_t i = 0; i < sp->nnodes; i++)
        free(sp->nodes[i].key);
    free(sp->scopes);
    free(sp->nodes);
    free(sp->blob);
    free(sp->ncmd);
    jsonp_free(sp->state_json);
    free(sp);
}

void spb_set_rebirth(struct spb *sp, int on, int64_t interval_ms)
{
    sp->rebirth = on;
    sp->interval = interval_ms;
}

size_t spb_metrics(const struct spb *sp)
{
    return sp->nmets;
}

/* ---- field access by number ---------------------------------------------- */

static const ProtobufCFieldDescriptor *fld(const ProtobufCMessage *m,
                                           unsigned id)
{
    return protobuf_c_message_descriptor_get_field(m->descriptor, id);
}

/* An optional scalar field's value if set: 1, else 0. */
static int get_u64(const ProtobufCMessage *m, unsigned id, uint64_t *v)
{
    const ProtobufCFieldDescriptor *f = fld(m, id);
    if (!f || !pb_present(m, f))
        return 0;
    const void *p = pb_member(m, f);
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64:
        *v = *(const uint64_t *)p;
        return 1;
    case PROTOBUF_C_TYPE_UINT32:
        *v = *(const uint32_t *)p;
        return 1;
    case PROTOBUF_C_TYPE_BOOL:
        *v = *(const protobuf_c_boolean *)p != 0;
        return 1;
    default:
        return 0;
    }
}

static const char *get_text(const ProtobufCMessage *m, unsigned id, size_t *len)
{
    const ProtobufCFieldDescriptor *f = fld(m, id);
    if (!f || !pb_present(m, f))
        return NULL;
    return pb_text_at(f, pb_member(m, f), len);
}

/* ---- scopes and nodes ---------------------------------------------------- */

static int key_cmp(const char *a, const char *b)
{
    return strcmp(a, b);
}

/* Index of key in a sorted array of structs whose first member is a char
 * *key; *found says whether it is there (else: where it goes). */
static size_t find_key(const void *arr, size_t n, size_t size, const char *key,
                       int *found)
{
    size_t lo = 0, hi = n;
    *found = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *k = *(const char *const *)(const void *)((const char *)arr +
                                                             mid * size);
        int c = key_cmp(k, key);
        if (!c) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct scope *scope_get(struct spb *sp, const char *key)
{
    int found;
    size_t i =
        find_key(sp->scopes, sp->nscopes, sizeof *sp->scopes, key, &found);
    return found ? &sp->scopes[i] : NULL;
}

/* The scope key, made a new one if needed (emptied): NULL past a cap. */
static struct scope *scope_put(struct spb *sp, const char *key)
{
    int found;
    size_t i =
        find_key(sp->scopes, sp->nscopes, sizeof *sp->scopes, key, &found);
    struct scope *s;
    if (found) {
        s = &sp->scopes[i];
        for (size_t k = 0; k < s->n; k++) {
            sp->names -= s->a[k].len;
            free(s->a[k].name);
        }
        sp->aliases -= s->n;
        free(s->a);
        s->a = NULL;
        s->n = 0;
        return s;
    }
    if (sp->nscopes >= SPB_SCOPES_MAX)
        return NULL;
    s = realloc(sp->scopes, (sp->nscopes + 1) * sizeof *s);
    if (!s)
        return NULL;
    sp->scopes = s;
    memmove(&s[i + 1], &s[i], (sp->nscopes - i) * sizeof *s);
    s[i] = (struct scope){.key = strdup(key)};
    if (!s[i].key) {
        memmove(&s[i], &s[i + 1], (sp->nscopes - i) * sizeof *s);
        return NULL;
    }
    sp->nscopes++;
    return &s[i];
}

static struct node *node_get(struct spb *sp, const char *key)
{
    int found;
    size_t i = find_key(sp->nodes, sp->nnodes, sizeof *sp->nodes, key, &found);
    struct node *n;
    if (found)
        return &sp->nodes[i];
    if (sp->nnodes >= SPB_SCOPES_MAX)
        return NULL;
    if (!(n = realloc(sp->nodes, (sp->nnodes + 1) * sizeof *n)))
        return NULL;
    sp->nodes = n;
    memmove(&n[i + 1], &n[i], (sp->nnodes - i) * sizeof *n);
    n[i] = (struct node){.key = strdup(key), .seq = -1};
    if (!n[i].key) {
        memmove(&n[i], &n[i + 1], (sp->nnodes - i) * sizeof *n);
        return NULL;
    }
    sp->nnodes++;
    return &n[i];
}

static int alias_cmp(const void *a, const void *b)
{
    const struct alias *x = a, *y = b;
    return x->alias < y->alias ? -1 : x->alias > y->alias;
}

static const struct alias *alias_get(const struct scope *s, uint64_t alias)
{
    struct alias k = {.alias = alias};
    return s && s->n ? bsearch(&k, s->a, s->n, sizeof k, alias_cmp) : NULL;
}

/* Adds (alias, name, datatype) to s (sorted afterwards by the caller). */
static int alias_add(struct spb *sp, struct scope *s, uint64_t alias,
                     uint32_t dt, const char *name, size_t len)
{
    struct alias *a;
    if (s->n >= SPB_ALIASES_MAX || sp->aliases >= SPB_ALIASES_ALL ||
        len > UINT32_MAX || sp->names + len > SPB_NAMES_MAX)
        return -ENOSPC;
    if (!(a = realloc(s->a, (s->n + 1) * sizeof *a)))
        return -ENOMEM;
    s->a = a;
    a = &a[s->n];
    if (!(a->name = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(a->name, name, len);
    a->alias = alias;
    a->datatype = dt;
    a->len = (uint32_t)len;
    sp->names += len;
    sp->aliases++;
    s->n++;
    return 0;
}

static void sort_dedup(struct scope *s, size_t *names, size_t *aliases)
{
    size_t o = 0;
    if (s->n > 1)
        qsort(s->a, s->n, sizeof *s->a, alias_cmp);
    for (size_t i = 0; i < s->n; i++) { /* the last of one alias wins */
        if (i + 1 < s->n && s->a[i + 1].alias == s->a[i].alias) {
            *names -= s->a[i].len;
            (*aliases)--;
            free(s->a[i].name);
            continue;
        }
        s->a[o++] = s->a[i];
    }
    s->n = o;
}

/* ---- persisted form --------------------------------------------------------
 */

static void le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t unle(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int serialise(struct spb *sp, const struct scope *s)
{
    size_t n = 1;
    for (size_t i = 0; i < s->n; i++)
        n += 16 + s->a[i].len;
    unsigned char *p = realloc(sp->blob, n);
    if (!p)
        return -ENOMEM;
    sp->blob = p;
    *p++ = 1;
    for (size_t i = 0; i < s->n; i++) {
        le(p, s->a[i].alias, 8);
        le(p + 8, s->a[i].datatype, 4);
        le(p + 12, s->a[i].len, 4);
        memcpy(p + 16, s->a[i].name, s->a[i].len);
        p += 16 + s->a[i].len;
    }
    sp->bloblen = n;
    return 0;
}

int spb_restore(struct spb *sp, const char *key, const void *blob, size_t len)
{
    const unsigned char *p = blob, *end = p + len;
    size_t pl = sizeof SPB_STATE_PREFIX - 1;
    struct scope *s;
    if (strncmp(key, SPB_STATE_PREFIX, pl) || strlen(key) > KEY_MAX + pl ||
        len < 1 || *p++ != 1 || !(s = scope_put(sp, key + pl)))
        return -EINVAL;
    while (end - p >= 16) {
        uint64_t nl = unle(p + 12, 4);
        if ((uint64_t)(end - p - 16) < nl ||
            alias_add(sp, s, unle(p, 8), (uint32_t)unle(p + 8, 4),
                      (const char *)p + 16, (size_t)nl))
            break;
        p += 16 + nl;
    }
    sort_dedup(s, &sp->names, &sp->aliases);
    return p == end ? 0 : -EINVAL;
}

/* ---- topics -------------------------------------------------------------- */

static int parse_topic(struct spb *sp, const char *t, char *why, size_t wl)
{
    const char *lv[6];
    size_t ll[6], n = 0;
    for (const char *p = t;;) {
        const char *e = strchrnul(p, '/');
        if (n == 6)
            goto bad;
        lv[n] = p;
        ll[n++] = (size_t)(e - p);
        if (!*e)
            break;
        p = e + 1;
    }
    if (ll[0] != 7 || memcmp(lv[0], SPB_NAMESPACE, 7))
        goto bad;
    memset(sp->part, 0, sizeof sp->part);
    memset(sp->plen, 0, sizeof sp->plen);
    if (n == 3 && ll[1] == 5 && !memcmp(lv[1], "STATE", 5) && ll[2]) {
        sp->type = STATE;
        sp->part[3] = lv[2];
        sp->plen[3] = ll[2];
        return 0;
    }
    if (n < 4 || !ll[1] || !ll[3])
        goto bad;
    for (sp->type = 0; sp->type < STATE; sp->type++)
        if (strlen(types[sp->type]) == ll[2] &&
            !memcmp(types[sp->type], lv[2], ll[2]))
            break;
    if (sp->type == STATE)
        goto bad;
    int dev = types[sp->type][0] == 'D';
    if (n != (size_t)(4 + dev) || (dev && !ll[4]))
        goto bad;
    for (int i = 0; i < 2 + dev; i++) {
        sp->part[i] = lv[1 + (i ? i + 1 : 0)];
        sp->plen[i] = ll[1 + (i ? i + 1 : 0)];
    }
    if (sp->plen[0] + sp->plen[1] + sp->plen[2] + 2 > KEY_MAX)
        goto bad;
    return 0;
bad:
    snprintf(why, wl,
             "not a Sparkplug B topic (spBv1.0/<group>/<type>/<edge>"
             "[/<device>] or spBv1.0/STATE/<host>)");
    return -EINVAL;
}

static void scope_key(const struct spb *sp, int dev, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s/%.*s%s%.*s", (int)sp->plen[0], sp->part[0],
             (int)sp->plen[1], sp->part[1], dev ? "/" : "",
             dev ? (int)sp->plen[2] : 0, dev ? sp->part[2] : "");
}

/* ---- rebirth: an NCMD, packed through the runtime descriptors ------------ */

static void set_field(ProtobufCMessage *m, unsigned id, const void *v,
                      size_t size)
{
    const ProtobufCFieldDescriptor *f = fld(m, id);
    char *base = (char *)m;
    memcpy(base + f->offset, v, size);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(void *)(base + f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(void *)(base + f->quantifier_offset) = 1;
}

static int make_rebirth(struct spb *sp, int64_t now_ms)
{
    static const char name[] = "Node Control/Rebirth";
    _Alignas(max_align_t) unsigned char pbuf[512], mbuf[512];
    ProtobufCMessage *p = (ProtobufCMessage *)(void *)pbuf;
    ProtobufCMessage *m = (ProtobufCMessage *)(void *)mbuf;
    ProtobufCMessage *mets[1] = {m};
    ProtobufCBinaryData nm = {sizeof name - 1, (uint8_t *)(uintptr_t)name};
    uint64_t ts = (uint64_t)now_ms;
    uint32_t dt = DT_BOOLEAN;
    protobuf_c_boolean yes = 1;
    size_t one = 1;
    if (sp->payload->sizeof_message > sizeof pbuf ||
        sp->metric->sizeof_message > sizeof mbuf)
        return -ENOMEM;
    pb_schema_message_init(sp->payload, p);
    pb_schema_message_init(sp->metric, m);
    set_field(m, M_NAME, &nm, sizeof nm);
    set_field(m, M_TIMESTAMP, &ts, sizeof ts);
    set_field(m, M_DATATYPE, &dt, sizeof dt);
    set_field(m, M_BOOL, &yes, sizeof yes);
    set_field(p, P_TIMESTAMP, &ts, sizeof ts);
    const ProtobufCFieldDescriptor *f = fld(p, P_METRICS);
    *(size_t *)(void *)((char *)p + f->quantifier_offset) = one;
    *(ProtobufCMessage ***)(void *)((char *)p + f->offset) = mets;
    size_t n = protobuf_c_message_get_packed_size(p);
    unsigned char *b = realloc(sp->ncmd, n);
    if (!b)
        return -ENOMEM;
    sp->ncmd = b;
    sp->ncmdlen = protobuf_c_message_pack(p, b);
    snprintf(sp->rebirth_topic, sizeof sp->rebirth_topic,
             SPB_NAMESPACE "/%.*s/NCMD/%.*s", (int)sp->plen[0], sp->part[0],
             (int)sp->plen[1], sp->part[1]);
    sp->fx.rebirth_topic = sp->rebirth_topic;
    sp->fx.rebirth = sp->ncmd;
    sp->fx.rebirth_len = sp->ncmdlen;
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

/* A BIRTH: its scope's aliases are the metrics it names. */
static void birth(struct spb *sp, const char *key)
{
    struct scope *s = scope_put(sp, key);
    if (!s)
        return; /* past the cap: its DATA stays unresolved */
    for (size_t i = 0; i < sp->nmets; i++) {
        uint64_t alias, dt = 0;
        size_t nl;
        const char *name = get_text(sp->mets[i], M_NAME, &nl);
        if (!name || !get_u64(sp->mets[i], M_ALIAS, &alias))
            continue;
        get_u64(sp->mets[i], M_DATATYPE, &dt);
        if (alias_add(sp, s, alias, (uint32_t)dt, name, nl))
            break;
    }
    sort_dedup(s, &sp->names, &sp->aliases);
    if (serialise(sp, s) == 0) {
        snprintf(sp->state_key, sizeof sp->state_key, "%s%s", SPB_STATE_PREFIX,
                 key);
        sp->fx.state_key = sp->state_key;
        sp->fx.state = sp->blob;
        sp->fx.state_len = sp->bloblen;
    }
}

/* Each metric's name and datatype: its own, else its alias's. */
static void resolve(struct spb *sp, struct pb *dc, const char *key)
{
    const struct scope *s = scope_get(sp, key);
    sp->mname = pb_arena_alloc(dc, (sp->nmets + 1) * sizeof *sp->mname);
    sp->mnlen = pb_arena_alloc(dc, (sp->nmets + 1) * sizeof *sp->mnlen);
    sp->mtype = pb_arena_alloc(dc, (sp->nmets + 1) * sizeof *sp->mtype);
    if (!sp->mname || !sp->mnlen || !sp->mtype) {
        sp->nmets = 0;
        return;
    }
    for (size_t i = 0; i < sp->nmets; i++) {
        uint64_t alias, dt = 0;
        int has_alias = get_u64(sp->mets[i], M_ALIAS, &alias);
        const struct alias *a = has_alias ? alias_get(s, alias) : NULL;
        sp->mname[i] = get_text(sp->mets[i], M_NAME, &sp->mnlen[i]);
        if (!sp->mname[i] && a) {
            sp->mname[i] = a->name ? a->name : "";
            sp->mnlen[i] = a->len;
        }
        if (!sp->mname[i])
            sp->fx.unresolved++;
        if (!get_u64(sp->mets[i], M_DATATYPE, &dt) && a)
            dt = a->datatype;
        sp->mtype[i] = (uint32_t)dt;
    }
}

/* seq: 0 at an NBIRTH, then +1 (mod 256) for each message of the edge
 * node but NDEATH. */
static void check_seq(struct spb *sp, struct node *nd)
{
    uint64_t seq;
    if (!nd || sp->type == NDEATH || sp->type == NCMD || sp->type == DCMD)
        return;
    if (!get_u64(sp->msg, P_SEQ, &seq) || seq > 255) {
        nd->seq = -1;
        return;
    }
    if (sp->type != NBIRTH && nd->seq >= 0 &&
        seq != (uint64_t)((nd->seq + 1) % 256))
        sp->fx.seq_gap = 1;
    nd->seq = (int)seq;
}

int spb_decode(struct spb *sp, struct pb *dc, const char *topic,
               const void *data, size_t len, int64_t now_ms, char *why,
               size_t whylen)
{
    char key[KEY_MAX + 1], nkey[KEY_MAX + 1];
    int rc;
    memset(&sp->fx, 0, sizeof sp->fx);
    sp->msg = NULL;
    sp->mets = NULL;
    sp->nmets = 0;
    if ((rc = parse_topic(sp, topic, why, whylen)))
        return rc;
    if (sp->type == STATE) {
        sp->raw = data;
        sp->rawlen = len;
        return 0;
    }
    if ((rc = pb_unpack(dc, sp->payload, data, len, &sp->msg, why, whylen)))
        return rc;
    sp->nmets = pb_elements(sp->msg, fld(sp->msg, P_METRICS), &sp->mets);
    int dev = types[sp->type][0] == 'D';
    scope_key(sp, dev, key, sizeof key);
    scope_key(sp, 0, nkey, sizeof nkey);
    struct node *nd = node_get(sp, nkey);
    check_seq(sp, nd);
    if (sp->type == NBIRTH || sp->type == DBIRTH)
        birth(sp, key);
    resolve(sp, dc, key);
    if (sp->fx.unresolved && sp->rebirth && nd &&
        (sp->type == NDATA || sp->type == DDATA) &&
        (!nd->asked || now_ms - nd->asked_ms >= sp->interval) &&
        make_rebirth(sp, now_ms) == 0) {
        nd->asked = 1;
        nd->asked_ms = now_ms;
    }
    return 0;
}

void spb_effects(const struct spb *sp, struct spb_effects *e)
{
    *e = sp->fx;
}

/* ---- JSON ---------------------------------------------------------------- */

static void kv(struct pb_buf *b, int *first, const char *name)
{
    if (!*first)
        pb_putc(b, ',');
    *first = 0;
    pb_putc(b, '"');
    pb_puts(b, name);
    pb_put(b, "\":", 2);
}

static void num_u(struct pb_buf *b, uint64_t v)
{
    char t[NUMFMT_MAX];
    pb_put(b, t, numfmt_u64(t, v));
}

static void num_i(struct pb_buf *b, int64_t v)
{
    char t[NUMFMT_MAX];
    pb_put(b, t, numfmt_i64(t, v));
}

static int text(struct pb *dc, struct pb_buf *b, const char *s, size_t n,
                const char *what)
{
    if (pb_json_str(b, s, n)) {
        dc->bad_field = what;
        return -1;
    }
    return 0;
}

/* A sub-message (properties, metadata, a DataSet, a Template) in the
 * canonical JSON mapping, copied from the decoder's buffer. */
static int sub_json(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m)
{
    if (!m) {
        pb_put(b, "{}", 2);
        return 0;
    }
    return pb_json_msg(dc, b, m, 2);
}

/* A float or double as in the JSON mapping. */
static void real(struct pb_buf *b, const ProtobufCMessage *m, unsigned id)
{
    const ProtobufCFieldDescriptor *f = fld(m, id);
    char t[48];
    int q;
    size_t n = pb_number_text(f, pb_member(m, f), t, &q);
    if (q)
        pb_putc(b, '"');
    pb_put(b, t, n);
    if (q)
        pb_putc(b, '"');
}

static int metric_value(struct pb *dc, struct pb_buf *b,
                        const ProtobufCMessage *m, uint32_t dt)
{
    const ProtobufCFieldDescriptor *f = fld(m, M_INT);
    uint32_t which = *(const uint32_t *)pb_quantifier(m, f);
    uint64_t v, isnull = 0;
    size_t n;
    const char *s;
    get_u64(m, M_NULL, &isnull);
    if (isnull || !which) {
        pb_put(b, "null", 4);
        return 0;
    }
    f = fld(m, which);
    const void *p = pb_member(m, f);
    switch (which) {
    case M_INT:
        v = *(const uint32_t *)p;
        if (dt == DT_INT8)
            num_i(b, (int8_t)v);
        else if (dt == DT_INT16)
            num_i(b, (int16_t)v);
        else if (dt == DT_INT32)
            num_i(b, (int32_t)v);
        else
            num_u(b, v);
        return 0;
    case M_LONG:
        v = *(const uint64_t *)p;
        if (dt == DT_INT64 || dt == DT_INT8 || dt == DT_INT16 || dt == DT_INT32)
            num_i(b, (int64_t)v);
        else
            num_u(b, v);
        return 0;
    case M_FLOAT:
    case M_DOUBLE:
        real(b, m, which);
        return 0;
    case M_BOOL:
        pb_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false");
        return 0;
    case M_STRING:
        s = pb_text_at(f, p, &n);
        return text(dc, b, s, n, "string_value");
    case M_BYTES: {
        const ProtobufCBinaryData *bd = p;
        pb_json_base64(b, bd->data, bd->len);
        return 0;
    }
    case M_DATASET:
    case M_TEMPLATE:
        return sub_json(dc, b, *(const ProtobufCMessage *const *)p);
    default:
        pb_put(b, "{}", 2);
        return 0;
    }
}

static int metric_json(struct spb *sp, struct pb *dc, struct pb_buf *b,
                       size_t i)
{
    const ProtobufCMessage *m = sp->mets[i];
    const ProtobufCFieldDescriptor *f;
    uint64_t v;
    int first = 1;
    pb_putc(b, '{');
    kv(b, &first, "name");
    if (!sp->mname[i])
        pb_put(b, "null", 4);
    else if (text(dc, b, sp->mname[i], sp->mnlen[i], "name"))
        return -1;
    if (get_u64(m, M_ALIAS, &v))
        kv(b, &first, "alias"), num_u(b, v);
    if (get_u64(m, M_TIMESTAMP, &v))
        kv(b, &first, "timestamp"), num_u(b, v);
    if (sp->mtype[i]) {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
            sp->datatype, (int)sp->mtype[i]);
        kv(b, &first, "datatype");
        if (ev) {
            pb_putc(b, '"');
            pb_puts(b, ev->name);
            pb_putc(b, '"');
        } else {
            num_u(b, sp->mtype[i]);
        }
    }
    kv(b, &first, "value");
    if (metric_value(dc, b, m, sp->mtype[i]))
        return -1;
    if (get_u64(m, M_HISTORICAL, &v) && v)
        kv(b, &first, "historical"), pb_puts(b, "true");
    if (get_u64(m, M_TRANSIENT, &v) && v)
        kv(b, &first, "transient"), pb_puts(b, "true");
    if ((f = fld(m, M_PROPERTIES)) && pb_present(m, f)) {
        kv(b, &first, "properties");
        if (sub_json(dc, b, *(const ProtobufCMessage *const *)pb_member(m, f)))
            return -1;
    }
    if ((f = fld(m, M_METADATA)) && pb_present(m, f)) {
        kv(b, &first, "metadata");
        if (sub_json(dc, b, *(const ProtobufCMessage *const *)pb_member(m, f)))
            return -1;
    }
    pb_putc(b, '}');
    return 0;
}

static int topic_json(struct spb *sp, struct pb *dc, struct pb_buf *b)
{
    static const char *const names[] = {"group", "edge", "device", "host"};
    int first = 1;
    pb_puts(b, "{\"topic\":{\"namespace\":\"" SPB_NAMESPACE "\",\"type\":\"");
    pb_puts(b, types[sp->type]);
    pb_putc(b, '"');
    first = 0;
    for (int i = 0; i < 4; i++) {
        if (!sp->part[i])
            continue;
        kv(b, &first, names[i]);
        if (text(dc, b, sp->part[i], sp->plen[i], names[i]))
            return -1;
    }
    pb_putc(b, '}');
    return 0;
}

static int state_json(struct spb *sp, struct pb *dc, struct pb_buf *b)
{
    char why[160];
    const void *js;
    size_t jl;
    pb_put(b, ",\"state\":", 9);
    if (jsonp_parse(sp->state_json, sp->raw, sp->rawlen, why, sizeof why) ==
            0 &&
        jsonp_compact(sp->state_json, &js, &jl) == 0) {
        pb_put(b, js, jl);
        return 0;
    }
    return text(dc, b, sp->raw, sp->rawlen, "state");
}

int spb_json(struct spb *sp, struct pb *dc, long metric, const void **out,
             size_t *len, char *why, size_t whylen)
{
    struct pb_buf *b = &dc->out;
    uint64_t v;
    size_t n;
    const char *s;
    int first = 0, rc = 0;
    b->len = 0;
    b->full = 0;
    dc->bad_field = NULL;
    dc->err[0] = '\0';
    rc = topic_json(sp, dc, b);
    if (!rc && sp->type == STATE)
        rc = state_json(sp, dc, b);
    else if (!rc) {
        if (get_u64(sp->msg, P_TIMESTAMP, &v))
            kv(b, &first, "timestamp"), num_u(b, v);
        if (get_u64(sp->msg, P_SEQ, &v))
            kv(b, &first, "seq"), num_u(b, v);
        if ((s = get_text(sp->msg, P_UUID, &n)) &&
            (kv(b, &first, "uuid"), text(dc, b, s, n, "uuid")))
            rc = -1;
        const ProtobufCFieldDescriptor *f = fld(sp->msg, P_BODY);
        if (!rc && pb_present(sp->msg, f)) {
            const ProtobufCBinaryData *bd = pb_member(sp->msg, f);
            kv(b, &first, "body");
            pb_json_base64(b, bd->data, bd->len);
        }
        if (!rc && metric >= 0) {
            kv(b, &first, "metric");
            rc = (size_t)metric < sp->nmets
                     ? metric_json(sp, dc, b, (size_t)metric)
                     : -1;
        } else if (!rc) {
            kv(b, &first, "metrics");
            pb_putc(b, '[');
            for (size_t i = 0; !rc && i < sp->nmets; i++) {
                if (i)
                    pb_putc(b, ',');
                rc = metric_json(sp, dc, b, i);
            }
            pb_putc(b, ']');
        }
    }
    pb_putc(b, '}');
    if (rc || b->full) {
        if (dc->bad_field)
            snprintf(why, whylen, "Sparkplug %s is not valid UTF-8",
                     dc->bad_field);
        else if (b->full)
            snprintf(why, whylen, "the JSON would be larger than %u MiB",
                     PB_OUT_MAX >> 20);
        else
            snprintf(why, whylen, "Sparkplug payload: %s",
                     dc->err[0] ? dc->err : "cannot be written as JSON");
        return -EINVAL;
    }
    *out = b->p;
    *len = b->len;
    return 0;
}

int spb_field_text(const struct spb *sp, long metric, const char *path,
                   size_t len, char *buf, size_t cap, size_t *olen)
{
    static const char *const names[] = {"group", "edge", "device", "host"};
    const char *s = NULL;
    char t[NUMFMT_MAX];
    size_t n = 0;
    uint64_t v;
    for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == len && !memcmp(path, names[i], len)) {
            if (!sp->part[i])
                return -ENOENT;
            s = sp->part[i], n = sp->plen[i];
        }
    if (!s && len == 4 && !memcmp(path, "type", 4))
        s = types[sp->type], n = strlen(s);
    else if (!s && len == 3 && !memcmp(path, "seq", 3)) {
        if (!sp->msg || !get_u64(sp->msg, P_SEQ, &v))
            return -ENOENT;
        s = t, n = numfmt_u64(t, v);
    } else if (!s && len == 4 && !memcmp(path, "name", 4)) {
        if (metric < 0 || (size_t)metric >= sp->nmets || !sp->mname[metric])
            return -ENOENT;
        s = sp->mname[metric], n = sp->mnlen[metric];
        if (!pb_utf8_ok(s, n))
            return -EILSEQ;
    } else if (!s) {
        return -ENOENT;
    }
    if (n > cap)
        return -ENOSPC;
    memcpy(buf, s, n);
    *olen = n;
    return 0;
}
