/*
 * pb.c — the protobuf toolkit: the message types the bridge knows, checks
 * of field paths and split fields against them, decoding into an arena,
 * presence as protobuf-c packs it, packing an element alone or into an
 * Envelope, and a field's text for templates. pb_json.c prints JSON and
 * numfmt.c the numbers. Depends on protobuf-c and the code generated from
 * proto/ only; no I/O, no global state. This is a library, not a stage:
 * the decode stage is payload.c.
 *
 * protobuf-c unpacks through our allocator: a bump arena (a 64 KiB first
 * chunk kept between messages, more chunks on demand up to PB_ARENA_MAX),
 * so a message costs no malloc and is dropped all at once.
 */
#include "bridge/pb.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/numfmt.h"
#include "bridge/pb_int.h"
#include "envelope.pb-c.h"
#include "telemetry.pb-c.h"

/* The compiled types the bridge knows; a new message in proto/ is one line. */
static const ProtobufCMessageDescriptor *const types[] = {
    &iot__telemetry__v1__sensor_reading__descriptor,
    &iot__telemetry__v1__reading_batch__descriptor,
    &iot__bridge__v1__envelope__descriptor,
};
#define NTYPES (sizeof types / sizeof types[0])

/* ---- types ---------------------------------------------------------- */

const ProtobufCMessageDescriptor *pb_type(const char *name)
{
    for (size_t i = 0; name && i < NTYPES; i++)
        if (!strcmp(types[i]->name, name))
            return types[i];
    return NULL;
}

void pb_type_names(char *buf, size_t len)
{
    size_t n = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < NTYPES && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
                              types[i]->name);
}

const ProtobufCFieldDescriptor *
pb_field_by_name(const ProtobufCMessageDescriptor *d, const char *s, size_t n)
{
    char name[FIELD_NAME_MAX];
    if (n == 0 || n >= sizeof name)
        return NULL;
    memcpy(name, s, n);
    name[n] = '\0';
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

int pb_field_path_check(const ProtobufCMessageDescriptor *d, const char *path,
                        size_t len, char *why, size_t whylen)
{
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = (size_t)((dot ? dot : end) - p);
        const ProtobufCFieldDescriptor *f = pb_field_by_name(d, p, n);
        if (!f) {
            snprintf(why, whylen, "%s has no field \"%.*s\"", d->name, (int)n,
                     p);
            return -EINVAL;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            snprintf(why, whylen,
                     "%s.%s is a repeated field (a template needs one value; "
                     "split: makes one record per element)",
                     d->name, f->name);
            return -EINVAL;
        }
        if (!dot) {
            if (f->type == PROTOBUF_C_TYPE_MESSAGE ||
                (f->type == PROTOBUF_C_TYPE_BYTES && !pb_is_text(d, f))) {
                snprintf(why, whylen,
                         "%s.%s is %s (a template needs a string, number, "
                         "bool or enum)",
                         d->name, f->name,
                         f->type == PROTOBUF_C_TYPE_BYTES ? "bytes"
                                                          : "a message");
                return -EINVAL;
            }
            return 0;
        }
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            snprintf(why, whylen,
                     "%s.%s is not a message, so it has no field \"%.*s\"",
                     d->name, f->name, (int)(end - dot - 1), dot + 1);
            return -EINVAL;
        }
        d = f->descriptor;
        p = dot + 1;
    }
}

const struct pb_schema_field *pb_finfo(const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f)
{
    const struct pb_schema_msg *info = pb_schema_msg_info(d);
    return info ? &info->fields[f - d->fields] : NULL;
}

int pb_is_text(const ProtobufCMessageDescriptor *d,
               const ProtobufCFieldDescriptor *f)
{
    const struct pb_schema_field *fi;
    if (f->type == PROTOBUF_C_TYPE_STRING)
        return 1;
    return f->type == PROTOBUF_C_TYPE_BYTES && (fi = pb_finfo(d, f)) &&
           fi->string;
}

const char *pb_text_at(const ProtobufCFieldDescriptor *f, const void *p,
                       size_t *len)
{
    if (f->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *bd = p;
        *len = bd->len;
        return bd->len ? (const char *)bd->data : "";
    }
    const char *s = *(const char *const *)p;
    *len = s ? strlen(s) : 0;
    return s ? s : "";
}

/* A runtime type says whether it is a map entry. protoc names the entry
 * type of map field "foo_bar" FooBarEntry, nested in the message, with
 * key = 1 and value = 2; for compiled types that is the only mark. */
int pb_is_map(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *e = f->descriptor;
    const struct pb_schema_msg *info;
    char want[FIELD_NAME_MAX + 8];
    size_t o = 0;
    int up = 1;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && (info = pb_schema_msg_info(e)))
        return info->map_entry && f->label == PROTOBUF_C_LABEL_REPEATED;
    if (f->label != PROTOBUF_C_LABEL_REPEATED ||
        f->type != PROTOBUF_C_TYPE_MESSAGE || e->n_fields != 2 ||
        e->fields[0].id != 1 || e->fields[1].id != 2 ||
        strcmp(e->fields[0].name, "key") || strcmp(e->fields[1].name, "value"))
        return 0;
    for (const char *s = f->name; *s && o < FIELD_NAME_MAX; s++) {
        if (*s == '_') {
            up = 1;
            continue;
        }
        want[o++] = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 32) : *s;
        up = 0;
    }
    memcpy(want + o, "Entry", 6);
    return !strcmp(e->short_name, want);
}

const ProtobufCFieldDescriptor *
pb_split_field(const ProtobufCMessageDescriptor *d, const char *name, char *why,
               size_t whylen)
{
    const ProtobufCFieldDescriptor *f = pb_field_by_name(d, name, strlen(name));
    if (!f)
        snprintf(why, whylen, "%s has no field \"%s\"", d->name, name);
    else if (f->label != PROTOBUF_C_LABEL_REPEATED ||
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        snprintf(why, whylen, "%s.%s is not a repeated message field", d->name,
                 f->name);
    else if (pb_is_map(f))
        snprintf(why, whylen, "%s.%s is a map, not a list", d->name, f->name);
    else
        return f;
    return NULL;
}

/* ---- the arena -------------------------------------------------------- */

void *pb_arena_alloc(void *ud, size_t size)
{
    struct pb *dc = ud;
    struct chunk *c = dc->cur;
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    if (c->cap - c->used < size) {
        size_t cap = size > CHUNK ? size : CHUNK;
        if (size > PB_ARENA_MAX || dc->total + cap > PB_ARENA_MAX ||
            !(c = malloc(sizeof *c + cap))) {
            dc->over = 1;
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = dc->first->next; /* the first chunk stays first */
        dc->first->next = c;
        dc->total += cap;
        /* Allocate from the new chunk from now on, not the full first one
         * (which would cost a chunk per allocation). A single allocation
         * larger than CHUNK gets a chunk of its own and stays current only
         * until the next one does not fit. */
        dc->cur = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

static void arena_free(void *ud, void *p)
{
    (void)ud; /* everything goes at the next reset */
    (void)p;
}

static void arena_reset(struct pb *dc)
{
    struct chunk *c = dc->first->next;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    dc->first->next = NULL;
    dc->first->used = 0;
    dc->cur = dc->first;
    dc->total = dc->first->cap;
    dc->over = 0;
}

int pb_new(struct pb **out)
{
    struct pb *dc = calloc(1, sizeof *dc);
    *out = NULL;
    if (!dc || !(dc->first = malloc(sizeof *dc->first + CHUNK))) {
        free(dc);
        return -ENOMEM;
    }
    dc->first->next = NULL;
    dc->first->cap = CHUNK;
    dc->first->used = 0;
    dc->cur = dc->first;
    dc->total = CHUNK;
    dc->alloc = (ProtobufCAllocator){pb_arena_alloc, arena_free, dc};
    *out = dc;
    return 0;
}

void pb_set_schema(struct pb *dc, const struct pb_schema *s)
{
    dc->schema = s;
}

void pb_free(struct pb *dc)
{
    if (!dc)
        return;
    arena_reset(dc);
    free(dc->first);
    free(dc->out.p);
    free(dc->pack.p);
    free(dc);
}

static int tags_ok(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > PB_DEPTH_MAX)
        return 0;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)m + f->offset;
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)((const char *)m +
                                                       f->quantifier_offset);
            const ProtobufCMessage *const *el =
                *(const ProtobufCMessage *const *const *)p;
            for (size_t j = 0; j < n; j++)
                if (!tags_ok(el[j], depth + 1))
                    return 0;
        } else if (pb_present(m, f)) { /* a oneof's member shares its storage */
            const ProtobufCMessage *sub =
                *(const ProtobufCMessage *const *)(const void *)p;
            if (sub && !tags_ok(sub, depth + 1))
                return 0;
        }
    }
    return 1;
}

int64_t pb_unknown_fields(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int64_t n = (int64_t)m->n_unknown_fields;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const ProtobufCMessage *const *el;
            size_t k = pb_elements(m, f, &el);
            for (size_t j = 0; j < k; j++)
                n += pb_unknown_fields(el[j]);
        } else if (pb_present(m, f)) {
            const ProtobufCMessage *sub =
                *(const ProtobufCMessage *const *)pb_member(m, f);
            if (sub)
                n += pb_unknown_fields(sub);
        }
    }
    return n;
}

int pb_unpack(struct pb *dc, const ProtobufCMessageDescriptor *d,
              const void *buf, size_t len, const ProtobufCMessage **out,
              char *why, size_t whylen)
{
    const struct pb_schema_msg *info = pb_schema_msg_info(d);
    arena_reset(dc);
    *out = NULL;
    /* protobuf-c recurses without a limit: a type that can contain itself
     * is checked first, without allocating */
    if (info && info->recursive &&
        pb_schema_check_depth(d, buf, len, PB_DEPTH_MAX) == -ELOOP) {
        snprintf(why, whylen,
                 "the payload (%zu bytes) nests deeper than %d messages as %s",
                 len, PB_DEPTH_MAX, d->name);
        return -EINVAL;
    }
    *out = protobuf_c_message_unpack(d, &dc->alloc, len, buf);
    if (*out && tags_ok(*out, 0))
        return 0;
    *out = NULL;
    if (dc->over)
        snprintf(why, whylen,
                 "the payload (%zu bytes) decodes to more than %u MiB as %s",
                 len, PB_ARENA_MAX >> 20, d->name);
    else
        snprintf(why, whylen, "the payload (%zu bytes) is not a valid %s", len,
                 d->name);
    return -EINVAL;
}

size_t pb_elements(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                   const ProtobufCMessage *const **elems)
{
    const char *base = (const char *)m;
    *elems = *(const ProtobufCMessage *const *const *)(const void *)(base +
                                                                     f->offset);
    return *(const size_t *)(const void *)(base + f->quantifier_offset);
}

/* ---- presence ----------------------------------------------------------- */

const void *pb_member(const ProtobufCMessage *m,
                      const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->offset;
}

const void *pb_quantifier(const ProtobufCMessage *m,
                          const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->quantifier_offset;
}

int pb_zeroish(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p == 0;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(const void *const *)p == NULL;
    }
    return 1;
}

/* 1 if singular field f is set in m, by the rules protobuf-c packs by. */
int pb_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = pb_member(m, f);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)pb_quantifier(m, f) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE ||
            f->type == PROTOBUF_C_TYPE_STRING) {
            const void *ptr = *(const void *const *)p;
            return ptr && ptr != f->default_value;
        }
        return *(const protobuf_c_boolean *)pb_quantifier(m, f) != 0;
    case PROTOBUF_C_LABEL_NONE:
        return !pb_zeroish(f, p);
    case PROTOBUF_C_LABEL_REPEATED:
        return *(const size_t *)pb_quantifier(m, f) > 0;
    }
    return 0;
}

/* ---- output buffers --------------------------------------------------- */

int pb_buf_room(struct pb_buf *b, size_t n)
{
    if (b->full)
        return -1;
    if (n <= b->cap - b->len)
        return 0;
    if (n > PB_OUT_MAX - b->len) {
        b->full = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    if (cap > PB_OUT_MAX)
        cap = PB_OUT_MAX;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->full = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void pb_put(struct pb_buf *b, const void *s, size_t n)
{
    if (pb_buf_room(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

void pb_putc(struct pb_buf *b, char c)
{
    if (b->len < b->cap || pb_buf_room(b, 1) == 0)
        b->p[b->len++] = (unsigned char)c;
}

void pb_puts(struct pb_buf *b, const char *s)
{
    pb_put(b, s, strlen(s));
}

/* A number's text; nonfinite values as JSON's "NaN", "Infinity". quoted:
 * whether the caller must add quotes (JSON) around it. */
size_t pb_number_text(const ProtobufCFieldDescriptor *f, const void *p,
                      char *out, int *quoted)
{
    double d = 0;
    *quoted = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return numfmt_i64(out, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return numfmt_u64(out, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *quoted = 1;
        return numfmt_i64(out, *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *quoted = 1;
        return numfmt_u64(out, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return (size_t)sprintf(
            out, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_FLOAT:
        d = *(const float *)p;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        d = *(const double *)p;
        break;
    default:
        return 0;
    }
    if (isnan(d) || isinf(d)) {
        *quoted = 1;
        return (size_t)sprintf(out, "%s",
                               isnan(d) ? "NaN"
                               : d < 0  ? "-Infinity"
                                        : "Infinity");
    }
    return f->type == PROTOBUF_C_TYPE_FLOAT
               ? numfmt_float(out, *(const float *)p)
               : numfmt_double(out, d);
}

/* ---- packing ---------------------------------------------------------- */

static int pack_into(struct pb_buf *b, const ProtobufCMessage *m,
                     const void **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    b->len = 0;
    b->full = 0;
    if (pb_buf_room(b, n ? n : 1))
        return n > PB_OUT_MAX ? -EINVAL : -ENOMEM;
    b->len = protobuf_c_message_pack(m, b->p);
    *out = b->p;
    *len = b->len;
    return 0;
}

int pb_pack(struct pb *dc, const ProtobufCMessage *m, const void **out,
            size_t *len)
{
    return pack_into(&dc->pack, m, out, len);
}

int pb_envelope(struct pb *dc, const struct pb_envelope *e, const void **out,
                size_t *len)
{
    Iot__Bridge__V1__Envelope env;
    iot__bridge__v1__envelope__init(&env);
    env.device_id = (char *)(e->device_id ? e->device_id : "");
    env.gateway_id = (char *)(e->gateway_id ? e->gateway_id : "");
    env.arrival_ms = e->arrival_ms;
    env.mqtt_topic = (char *)(e->mqtt_topic ? e->mqtt_topic : "");
    env.qos = e->qos;
    env.content_type = (char *)(e->content_type ? e->content_type : "");
    env.body_case = IOT__BRIDGE__V1__ENVELOPE__BODY_PAYLOAD;
    env.payload.data = (uint8_t *)(uintptr_t)e->payload;
    env.payload.len = e->len;
    return pack_into(&dc->out, &env.base, out, len);
}

/* ---- template text ---------------------------------------------------- */

/* Fields that can be unset even when they hold 0: oneof members, optional. */
static int explicit_presence(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
           f->label == PROTOBUF_C_LABEL_OPTIONAL;
}

int pb_field_text(const ProtobufCMessage *m, const char *path, size_t pathlen,
                  char *buf, size_t cap, size_t *len)
{
    const char *p = path, *end = path + pathlen;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const ProtobufCFieldDescriptor *f =
            pb_field_by_name(m->descriptor, p, (size_t)((dot ? dot : end) - p));
        if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
            return -EINVAL;
        if (dot) {
            if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                return -EINVAL;
            if (!pb_present(m, f))
                return -ENOENT;
            m = *(const ProtobufCMessage *const *)pb_member(m, f);
            p = dot + 1;
            continue;
        }
        const void *v = pb_member(m, f);
        char num[48];
        const char *s = num;
        size_t n;
        int quoted;
        if (pb_is_text(m->descriptor, f)) {
            /* proto3 cannot tell "" from unset: neither makes a key */
            if (!pb_present(m, f) || pb_zeroish(f, v))
                return -ENOENT;
            s = pb_text_at(f, v, &n); /* a NUL in it stays: keys are bytes */
            if (!pb_utf8_ok(s, n))
                return -EILSEQ;
        } else if (f->type == PROTOBUF_C_TYPE_ENUM) {
            if (explicit_presence(f) && !pb_present(m, f))
                return -ENOENT;
            const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                f->descriptor, *(const int *)v);
            if (ev) {
                s = ev->name;
                n = strlen(s);
            } else {
                n = (size_t)sprintf(num, "%d", *(const int *)v);
            }
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE ||
                   f->type == PROTOBUF_C_TYPE_BYTES) {
            return -EINVAL;
        } else {
            /* numbers: 0 is a value (proto3 has no "unset" for them) */
            if (explicit_presence(f) && !pb_present(m, f))
                return -ENOENT;
            n = pb_number_text(f, v, num, &quoted);
        }
        if (n > cap)
            return -ENOSPC;
        memcpy(buf, s, n);
        *len = n;
        return 0;
    }
}
