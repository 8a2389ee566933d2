/*
 * pb_json.c — a decoded protobuf message in protobuf's canonical JSON
 * mapping (pb_json.h), by walking protobuf-c's descriptors: for every field
 * presence is decided the way protobuf-c's packer does (what is printed is
 * what would be on the wire), then the value is written by its type.
 * Runtime descriptors (pb_schema.h) add what protobuf-c's cannot say:
 * json_name, map entries, strings kept as bytes, proto2's closed enums,
 * and the well-known types, which pb_json_wkt.c prints in their own form.
 * Numbers come from numfmt.c. No I/O; output goes to the decoder's capped
 * buffer.
 */
#include "bridge/pb_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/numfmt.h"
#include "bridge/pb_int.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
size_t pb_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

int pb_utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = p[i] < 0x80 ? 1 : pb_utf8_len(p + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/* A JSON string; -1 if s is not UTF-8. Escapes what Python's json.dumps
 * escapes with ensure_ascii=False: " \ and the C0 controls (a NUL as
 * \u0000: a string is its bytes, with their length). */
int pb_json_str(struct pb_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0;
    pb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            size_t l = c < 0x80 ? 1 : pb_utf8_len(p + i, n - i);
            if (!l)
                return -1;
            i += l;
            run += l;
            continue;
        }
        pb_put(b, p + i - run, run);
        run = 0;
        char e[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        pb_put(b, e, el);
        i++;
    }
    pb_put(b, p + n - run, run);
    pb_putc(b, '"');
    return 0;
}

void pb_json_base64(struct pb_buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = (n + 2) / 3 * 4;
    pb_putc(b, '"');
    if (pb_buf_room(b, out))
        return;
    unsigned char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = (unsigned char)tab[v >> 18];
        *o++ = (unsigned char)tab[(v >> 12) & 63];
        *o++ = (unsigned char)tab[(v >> 6) & 63];
        *o++ = (unsigned char)tab[v & 63];
    }
    if (i < n) {
        uint32_t v =
            (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = (unsigned char)tab[v >> 18];
        *o++ = (unsigned char)tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? (unsigned char)tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len += out;
    pb_putc(b, '"');
}

/* lowerCamelCase as protoc's json_name: drop '_', capitalise what follows
 * (compiled types; runtime ones carry protoc's own json_name). */
static void json_name(struct pb_buf *b, const ProtobufCMessageDescriptor *d,
                      const ProtobufCFieldDescriptor *f)
{
    const struct pb_schema_field *fi = pb_finfo(d, f);
    int up = 0;
    pb_putc(b, '"');
    if (fi) { /* protoc's json_name needs no escaping: letters and digits */
        pb_puts(b, fi->json_name);
        pb_put(b, "\":", 2);
        return;
    }
    for (const char *s = f->name; *s; s++) {
        if (*s == '_') {
            up = 1;
            continue;
        }
        pb_putc(b, up && *s >= 'a' && *s <= 'z' ? (char)(*s - 32) : *s);
        up = 0;
    }
    pb_put(b, "\":", 2);
}

/* proto2 enums are closed: protobuf's reference implementation keeps a
 * value its enum does not define among the unknown fields, so the field
 * is not set (and a repeated field lacks that element). */
static int enum_hidden(const ProtobufCMessageDescriptor *d,
                       const ProtobufCFieldDescriptor *f, const void *p)
{
    const struct pb_schema_msg *info = pb_schema_msg_info(d);
    return f->type == PROTOBUF_C_TYPE_ENUM && info && info->syntax == 2 &&
           !protobuf_c_enum_descriptor_get_value(f->descriptor,
                                                 *(const int *)p);
}

int pb_json_fail(struct pb *dc, const char *fmt, ...)
{
    va_list ap;
    if (!dc->err[0]) {
        va_start(ap, fmt);
        vsnprintf(dc->err, sizeof dc->err, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int pb_json_value(struct pb *dc, struct pb_buf *b,
                  const ProtobufCMessageDescriptor *d,
                  const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    char num[48];
    int quoted;
    size_t n;
    if (pb_is_text(d, f)) {
        const char *s = pb_text_at(f, p, &n);
        if (pb_json_str(b, s, n)) {
            dc->bad_field = f->name;
            return -1;
        }
        return 0;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        pb_json_base64(b, bd->data, bd->len);
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        if (!sub) /* a map entry without its value: the default message */
            return pb_json_default(dc, b, f->descriptor, depth + 1);
        return pb_json_msg(dc, b, sub, depth + 1);
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(ed, v);
        if (!strcmp(ed->name, "google.protobuf.NullValue")) {
            pb_put(b, "null", 4);
        } else if (ev) {
            pb_putc(b, '"');
            pb_puts(b, ev->name);
            pb_putc(b, '"');
        } else { /* proto3: an unknown value prints as its number */
            pb_put(b, num, (size_t)sprintf(num, "%d", v));
        }
        return 0;
    }
    default:
        n = pb_number_text(f, p, num, &quoted);
        if (quoted)
            pb_putc(b, '"');
        pb_put(b, num, n);
        if (quoted)
            pb_putc(b, '"');
        return 0;
    }
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

size_t pb_json_elem_size(ProtobufCType t)
{
    return type_size(t);
}

struct mkey {
    const char *s; /* the key's JSON text (string keys: the string itself) */
    size_t len, idx;
};

static int mkey_cmp(const void *a, const void *b)
{
    const struct mkey *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int pb_json_map(struct pb *dc, struct pb_buf *b,
                const ProtobufCFieldDescriptor *f,
                const ProtobufCMessage *const *ents, size_t n, int depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    struct mkey *k = pb_arena_alloc(dc, n * sizeof *k);
    if (!k) {
        b->full = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const void *kp = pb_member(ents[i], kf);
        k[i].idx = i;
        if (pb_is_text(ed, kf)) {
            k[i].s = pb_text_at(kf, kp, &k[i].len);
        } else {
            char num[48], *t;
            int quoted;
            size_t len = pb_number_text(kf, kp, num, &quoted);
            if (!(t = pb_arena_alloc(dc, len))) {
                b->full = 1;
                return -1;
            }
            memcpy(t, num, len);
            k[i].s = t;
            k[i].len = len;
        }
    }
    if (n > 1)
        qsort(k, n, sizeof *k, mkey_cmp);
    pb_putc(b, '{');
    for (size_t i = 0, first = 1; i < n; i++) {
        if (i + 1 < n && k[i + 1].len == k[i].len &&
            !memcmp(k[i + 1].s, k[i].s, k[i].len))
            continue; /* a later entry has the same key */
        const void *vp = pb_member(ents[k[i].idx], vf);
        if (enum_hidden(ed, vf, vp))
            continue;
        if (!first)
            pb_putc(b, ',');
        first = 0;
        if (pb_json_str(b, k[i].s, k[i].len)) {
            dc->bad_field = f->name;
            return -1;
        }
        pb_putc(b, ':');
        if (pb_json_value(dc, b, ed, vf, vp, depth))
            return -1;
    }
    pb_putc(b, '}');
    return 0;
}

/* The fields of m, each as "name":value, after *first (0: a comma goes
 * before the first one). */
int pb_json_fields(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                   int depth, int *first)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!pb_present(m, f))
            continue;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (enum_hidden(d, f, pb_member(m, f)))
                continue;
            if (!*first)
                pb_putc(b, ',');
            *first = 0;
            json_name(b, d, f);
            if (pb_json_value(dc, b, d, f, pb_member(m, f), depth))
                return -1;
            continue;
        }
        size_t n = *(const size_t *)pb_quantifier(m, f);
        const char *arr = *(const char *const *)pb_member(m, f);
        if (!*first)
            pb_putc(b, ',');
        *first = 0;
        json_name(b, d, f);
        if (pb_is_map(f)) {
            if (pb_json_map(dc, b, f,
                            (const ProtobufCMessage *const *)(const void *)arr,
                            n, depth))
                return -1;
            continue;
        }
        size_t sz = type_size(f->type);
        pb_putc(b, '[');
        for (size_t j = 0, k = 0; j < n; j++) {
            if (enum_hidden(d, f, arr + j * sz))
                continue;
            if (k++)
                pb_putc(b, ',');
            if (pb_json_value(dc, b, d, f, arr + j * sz, depth))
                return -1;
        }
        pb_putc(b, ']');
        if (b->full)
            return -1;
    }
    return b->full ? -1 : 0;
}

int pb_json_msg(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                int depth)
{
    const struct pb_schema_msg *info = pb_schema_msg_info(m->descriptor);
    int first = 1;
    if (depth > PB_DEPTH_MAX)
        return pb_json_fail(dc, "%s is nested deeper than %d messages",
                            m->descriptor->name, PB_DEPTH_MAX);
    if (info && info->wkt != PB_SCHEMA_WKT_NONE)
        return pb_json_wkt(dc, b, m, info->wkt, depth);
    pb_putc(b, '{');
    if (pb_json_fields(dc, b, m, depth, &first))
        return -1;
    pb_putc(b, '}');
    return b->full ? -1 : 0;
}

/* The JSON of a message of type d with nothing set: {}, or a well-known
 * type's own form of its default ("1970-01-01T00:00:00Z", 0, null). */
int pb_json_default(struct pb *dc, struct pb_buf *b,
                    const ProtobufCMessageDescriptor *d, int depth)
{
    const struct pb_schema_msg *info = pb_schema_msg_info(d);
    ProtobufCMessage *m;
    if (!info || info->wkt == PB_SCHEMA_WKT_NONE) {
        pb_put(b, "{}", 2);
        return 0;
    }
    if (!(m = pb_arena_alloc(dc, d->sizeof_message))) {
        b->full = 1;
        return -1;
    }
    pb_schema_message_init(d, m);
    return pb_json_msg(dc, b, m, depth);
}

int pb_json(struct pb *dc, const ProtobufCMessage *m, const void **out,
            size_t *len, char *why, size_t whylen)
{
    struct pb_buf *b = &dc->out;
    b->len = 0;
    b->full = 0;
    dc->bad_field = NULL;
    dc->err[0] = '\0';
    if (pb_json_msg(dc, b, m, 0) || b->full) {
        if (dc->bad_field)
            snprintf(why, whylen, "field %s of %s is not valid UTF-8",
                     dc->bad_field, m->descriptor->name);
        else if (b->full)
            snprintf(why, whylen,
                     "the JSON form of %s would be larger than %u MiB",
                     m->descriptor->name, PB_OUT_MAX >> 20);
        else
            snprintf(why, whylen, "%s", dc->err);
        return -EINVAL;
    }
    *out = b->p;
    *len = b->len;
    return 0;
}
