/*
 * decode.c — pure: payload bytes → protobuf message → JSON, Envelope,
 * packed element, template text. Depends on protobuf-c and the code
 * generated from proto/ only; no I/O, no global state.
 *
 * protobuf-c unpacks through our allocator: a bump arena (a 64 KiB first
 * chunk kept between messages, more chunks on demand up to
 * DECODE_ARENA_MAX), so a message costs no malloc and is dropped all at
 * once. The JSON printer walks the descriptors: for every field it decides
 * presence the way protobuf-c's packer does (so what is printed is what
 * would be on the wire), then writes the value by its type. Its number
 * format follows Python's json_format (the reference the unit tests compare
 * with): doubles in the shortest text that reads back the same, floats
 * first rounded to the shortest text that reads back as the same float.
 */
#include "bridge/decode.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "telemetry.pb-c.h"

/* The compiled types the bridge knows; a new message in proto/ is one line. */
static const ProtobufCMessageDescriptor *const types[] = {
    &iot__telemetry__v1__sensor_reading__descriptor,
    &iot__telemetry__v1__reading_batch__descriptor,
    &iot__bridge__v1__envelope__descriptor,
};
#define NTYPES (sizeof types / sizeof types[0])

#define CHUNK          (64u << 10)
#define FIELD_NAME_MAX 128

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct buf {
    unsigned char *p;
    size_t len, cap;
    int full; /* a write would have passed DECODE_OUT_MAX */
};

struct decode {
    struct chunk *first; /* kept; the others are freed on reset */
    struct chunk *cur;   /* the chunk allocations come from */
    size_t total;        /* bytes in all chunks */
    int over;            /* an allocation was refused */
    ProtobufCAllocator alloc;
    struct buf out, pack;
    const char *bad_field; /* JSON: the field whose string is not UTF-8 */
};

/* ---- types ---------------------------------------------------------- */

const ProtobufCMessageDescriptor *decode_type(const char *name)
{
    for (size_t i = 0; name && i < NTYPES; i++)
        if (!strcmp(types[i]->name, name))
            return types[i];
    return NULL;
}

void decode_type_names(char *buf, size_t len)
{
    size_t n = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < NTYPES && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
                              types[i]->name);
}

static const ProtobufCFieldDescriptor *
field_by_name(const ProtobufCMessageDescriptor *d, const char *s, size_t n)
{
    char name[FIELD_NAME_MAX];
    if (n == 0 || n >= sizeof name)
        return NULL;
    memcpy(name, s, n);
    name[n] = '\0';
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

int decode_field_path_check(const ProtobufCMessageDescriptor *d,
                            const char *path, size_t len, char *why,
                            size_t whylen)
{
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = (size_t)((dot ? dot : end) - p);
        const ProtobufCFieldDescriptor *f = field_by_name(d, p, n);
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
                f->type == PROTOBUF_C_TYPE_BYTES) {
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

/* protoc names the entry type of map field "foo_bar" FooBarEntry, nested in
 * the message, with key = 1 and value = 2; protobuf-c keeps no other mark. */
static int is_map(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *e = f->descriptor;
    char want[FIELD_NAME_MAX + 8];
    size_t o = 0;
    int up = 1;
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
decode_split_field(const ProtobufCMessageDescriptor *d, const char *name,
                   char *why, size_t whylen)
{
    const ProtobufCFieldDescriptor *f = field_by_name(d, name, strlen(name));
    if (!f)
        snprintf(why, whylen, "%s has no field \"%s\"", d->name, name);
    else if (f->label != PROTOBUF_C_LABEL_REPEATED ||
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        snprintf(why, whylen, "%s.%s is not a repeated message field", d->name,
                 f->name);
    else if (is_map(f))
        snprintf(why, whylen, "%s.%s is a map, not a list", d->name, f->name);
    else
        return f;
    return NULL;
}

/* ---- the arena -------------------------------------------------------- */

static void *arena_alloc(void *ud, size_t size)
{
    struct decode *dc = ud;
    struct chunk *c = dc->cur;
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    if (c->cap - c->used < size) {
        size_t cap = size > CHUNK ? size : CHUNK;
        if (size > DECODE_ARENA_MAX || dc->total + cap > DECODE_ARENA_MAX ||
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

static void arena_reset(struct decode *dc)
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

int decode_new(struct decode **out)
{
    struct decode *dc = calloc(1, sizeof *dc);
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
    dc->alloc = (ProtobufCAllocator){arena_alloc, arena_free, dc};
    *out = dc;
    return 0;
}

void decode_free(struct decode *dc)
{
    if (!dc)
        return;
    arena_reset(dc);
    free(dc->first);
    free(dc->out.p);
    free(dc->pack.p);
    free(dc);
}

static int present(const ProtobufCMessage *m,
                   const ProtobufCFieldDescriptor *f);

/* protobuf-c keeps a field numbered 0 (written as a non-minimal varint)
 * as an unknown field, then packs it as a tag it cannot read back. Field
 * number 0 is never valid: such a payload is refused. */
static int tags_ok(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > DECODE_DEPTH_MAX)
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
        } else if (present(m, f)) { /* a oneof's member shares its storage */
            const ProtobufCMessage *sub =
                *(const ProtobufCMessage *const *)(const void *)p;
            if (sub && !tags_ok(sub, depth + 1))
                return 0;
        }
    }
    return 1;
}

int decode_unpack(struct decode *dc, const ProtobufCMessageDescriptor *d,
                  const void *buf, size_t len, const ProtobufCMessage **out,
                  char *why, size_t whylen)
{
    arena_reset(dc);
    *out = protobuf_c_message_unpack(d, &dc->alloc, len, buf);
    if (*out && tags_ok(*out, 0))
        return 0;
    *out = NULL;
    if (dc->over)
        snprintf(why, whylen,
                 "the payload (%zu bytes) decodes to more than %u MiB as %s",
                 len, DECODE_ARENA_MAX >> 20, d->name);
    else
        snprintf(why, whylen, "the payload (%zu bytes) is not a valid %s", len,
                 d->name);
    return -EINVAL;
}

size_t decode_elements(const ProtobufCMessage *m,
                       const ProtobufCFieldDescriptor *f,
                       const ProtobufCMessage *const **elems)
{
    const char *base = (const char *)m;
    *elems = *(const ProtobufCMessage *const *const *)(const void *)(base +
                                                                     f->offset);
    return *(const size_t *)(const void *)(base + f->quantifier_offset);
}

/* ---- presence ----------------------------------------------------------- */

static const void *member(const ProtobufCMessage *m,
                          const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->offset;
}

static const void *quantifier(const ProtobufCMessage *m,
                              const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->quantifier_offset;
}

static int zeroish(const ProtobufCFieldDescriptor *f, const void *p)
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
static int present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = member(m, f);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)quantifier(m, f) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE ||
            f->type == PROTOBUF_C_TYPE_STRING) {
            const void *ptr = *(const void *const *)p;
            return ptr && ptr != f->default_value;
        }
        return *(const protobuf_c_boolean *)quantifier(m, f) != 0;
    case PROTOBUF_C_LABEL_NONE:
        return !zeroish(f, p);
    case PROTOBUF_C_LABEL_REPEATED:
        return *(const size_t *)quantifier(m, f) > 0;
    }
    return 0;
}

/* ---- output buffers --------------------------------------------------- */

static int buf_room(struct buf *b, size_t n)
{
    if (b->full)
        return -1;
    if (n <= b->cap - b->len)
        return 0;
    if (n > DECODE_OUT_MAX - b->len) {
        b->full = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    if (cap > DECODE_OUT_MAX)
        cap = DECODE_OUT_MAX;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->full = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(struct buf *b, const void *s, size_t n)
{
    if (buf_room(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void putc_(struct buf *b, char c)
{
    if (b->len < b->cap || buf_room(b, 1) == 0)
        b->p[b->len++] = (unsigned char)c;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* ---- numbers as Python's json_format prints them ---------------------- */

/* Decimal digits of v, no terminator; returns the count (at most 20). */
static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_i64(char *out, int64_t v)
{
    if (v >= 0)
        return fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + fmt_u64(out + 1, 0 - (uint64_t)v);
}

/* The common case without printf: v = x / 10^k exactly for some k <= 9
 * and |x| < 10^15. Then the decimal x.10^-k reads back as v, has at most
 * 15 digits, and so is the shortest (see fmt_double). 0 if not found. */
static size_t fmt_double_fast(char *out, double v)
{
    static const double p10[] = {1,   1e1, 1e2, 1e3, 1e4,
                                 1e5, 1e6, 1e7, 1e8, 1e9};
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k <= 9; k++) {
        double y = a * p10[k];
        if (y >= 1e15) /* 16 digits and more are not unique: printf */
            return 0;
        uint64_t x = (uint64_t)(y + 0.5);
        if ((double)x / p10[k] != a)
            continue;
        char d[24];
        size_t nd = fmt_u64(d, x), o = 0,
               ip = nd > (size_t)k ? nd - (size_t)k : 0;
        if (v < 0)
            out[o++] = '-';
        if (ip == 0)
            out[o++] = '0';
        memcpy(out + o, d, ip);
        o += ip;
        out[o++] = '.';
        for (size_t z = nd; z < (size_t)k; z++)
            out[o++] = '0'; /* 0.00ddd */
        memcpy(out + o, d + ip, nd - ip);
        o += nd - ip;
        if (k == 0)
            out[o++] = '0'; /* 21.0 */
        return o;
    }
    return 0;
}

/* The shortest decimal that reads back as v (finite), in Python's repr
 * layout: fixed notation with at least one decimal for exponents -4..15,
 * else d.ddde+XX. Writes at most 32 bytes. */
static size_t fmt_double(char *out, double v)
{
    char tmp[40], digits[24];
    int prec, exp10, nd = 0;
    size_t o = fmt_double_fast(out, v);
    if (o)
        return o;
    /* A decimal of at most 15 digits that reads back is the 15-digit
     * rounding with its trailing zeros dropped (DBL_DIG = 15). Subnormals
     * have fewer digits of precision: those are searched from 1. */
    for (prec = v != 0 && fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    const char *p = tmp;
    if (*p == '-') {
        out[o++] = '-';
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = -1; i > exp10; i--)
                out[o++] = '0';
            memcpy(out + o, digits, (size_t)nd);
            o += (size_t)nd;
        } else {
            for (int i = 0; i <= exp10; i++)
                out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1) {
                memcpy(out + o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
                o += (size_t)(nd - exp10 - 1);
            } else {
                out[o++] = '0';
            }
        }
        return o;
    }
    out[o++] = digits[0];
    if (nd > 1) {
        out[o++] = '.';
        memcpy(out + o, digits + 1, (size_t)(nd - 1));
        o += (size_t)(nd - 1);
    }
    o += (size_t)snprintf(out + o, 8, "e%c%02d", exp10 < 0 ? '-' : '+',
                          abs(exp10));
    return o;
}

/* A float: the shortest %g text (6 digits at least) that reads back as the
 * same float, then printed as a double. */
static size_t fmt_float(char *out, float f)
{
    char tmp[40];
    double d = f;
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)f);
        d = strtod(tmp, NULL);
        if ((float)d == f)
            break;
    }
    return fmt_double(out, d);
}

/* A number's text; nonfinite values as JSON's "NaN", "Infinity". quoted:
 * whether the caller must add quotes (JSON) around it. */
static size_t number_text(const ProtobufCFieldDescriptor *f, const void *p,
                          char *out, int *quoted)
{
    double d = 0;
    *quoted = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return fmt_i64(out, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return fmt_u64(out, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *quoted = 1;
        return fmt_i64(out, *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *quoted = 1;
        return fmt_u64(out, *(const uint64_t *)p);
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
    return f->type == PROTOBUF_C_TYPE_FLOAT ? fmt_float(out, *(const float *)p)
                                            : fmt_double(out, d);
}

/* ---- JSON ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
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

static int utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = p[i] < 0x80 ? 1 : utf8_len(p + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/* A JSON string; -1 if s is not UTF-8. Escapes what Python's json.dumps
 * escapes with ensure_ascii=False: " \ and the C0 controls. */
static int json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0;
    putc_(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            size_t l = c < 0x80 ? 1 : utf8_len(p + i, n - i);
            if (!l)
                return -1;
            i += l;
            run += l;
            continue;
        }
        put(b, p + i - run, run);
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
        put(b, e, el);
        i++;
    }
    put(b, p + n - run, run);
    putc_(b, '"');
    return 0;
}

static void json_base64(struct buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = (n + 2) / 3 * 4;
    putc_(b, '"');
    if (buf_room(b, out))
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
    putc_(b, '"');
}

/* lowerCamelCase as protoc's json_name: drop '_', capitalise what follows. */
static void json_name(struct buf *b, const char *name)
{
    int up = 0;
    putc_(b, '"');
    for (const char *s = name; *s; s++) {
        if (*s == '_') {
            up = 1;
            continue;
        }
        putc_(b, up && *s >= 'a' && *s <= 'z' ? (char)(*s - 32) : *s);
        up = 0;
    }
    put(b, "\":", 2);
}

static int json_msg(struct decode *dc, struct buf *b, const ProtobufCMessage *m,
                    int depth);

/* One value of field f stored at p. */
static int json_value(struct decode *dc, struct buf *b,
                      const ProtobufCFieldDescriptor *f, const void *p,
                      int depth)
{
    char num[48];
    int quoted;
    size_t n;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        if (json_str(b, s ? s : "", s ? strlen(s) : 0)) {
            dc->bad_field = f->name;
            return -1;
        }
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        json_base64(b, bd->data, bd->len);
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        if (!sub) { /* a map entry without its value: the default message */
            put(b, "{}", 2);
            return 0;
        }
        return json_msg(dc, b, sub, depth + 1);
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev) {
            putc_(b, '"');
            puts_(b, ev->name);
            putc_(b, '"');
        } else { /* proto3: an unknown value prints as its number */
            put(b, num, (size_t)sprintf(num, "%d", v));
        }
        return 0;
    }
    default:
        n = number_text(f, p, num, &quoted);
        if (quoted)
            putc_(b, '"');
        put(b, num, n);
        if (quoted)
            putc_(b, '"');
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

/* A map: entries sorted by key text, the last of equal keys wins. */
static int json_map(struct decode *dc, struct buf *b,
                    const ProtobufCFieldDescriptor *f,
                    const ProtobufCMessage *const *ents, size_t n, int depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    struct mkey *k = arena_alloc(dc, n * sizeof *k);
    if (!k) {
        b->full = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const void *kp = member(ents[i], kf);
        k[i].idx = i;
        if (kf->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(const char *const *)kp;
            k[i].s = s ? s : "";
            k[i].len = strlen(k[i].s);
        } else {
            char num[48], *t;
            int quoted;
            size_t len = number_text(kf, kp, num, &quoted);
            if (!(t = arena_alloc(dc, len))) {
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
    putc_(b, '{');
    for (size_t i = 0, first = 1; i < n; i++) {
        if (i + 1 < n && k[i + 1].len == k[i].len &&
            !memcmp(k[i + 1].s, k[i].s, k[i].len))
            continue; /* a later entry has the same key */
        if (!first)
            putc_(b, ',');
        first = 0;
        if (json_str(b, k[i].s, k[i].len)) {
            dc->bad_field = f->name;
            return -1;
        }
        putc_(b, ':');
        if (json_value(dc, b, vf, member(ents[k[i].idx], vf), depth))
            return -1;
    }
    putc_(b, '}');
    return 0;
}

static int json_msg(struct decode *dc, struct buf *b, const ProtobufCMessage *m,
                    int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int first = 1;
    if (depth > DECODE_DEPTH_MAX)
        return -1;
    putc_(b, '{');
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!present(m, f))
            continue;
        if (!first)
            putc_(b, ',');
        first = 0;
        json_name(b, f->name);
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (json_value(dc, b, f, member(m, f), depth))
                return -1;
            continue;
        }
        size_t n = *(const size_t *)quantifier(m, f);
        const char *arr = *(const char *const *)member(m, f);
        if (is_map(f)) {
            if (json_map(dc, b, f,
                         (const ProtobufCMessage *const *)(const void *)arr, n,
                         depth))
                return -1;
            continue;
        }
        size_t sz = type_size(f->type);
        putc_(b, '[');
        for (size_t j = 0; j < n; j++) {
            if (j)
                putc_(b, ',');
            if (json_value(dc, b, f, arr + j * sz, depth))
                return -1;
        }
        putc_(b, ']');
        if (b->full)
            return -1;
    }
    putc_(b, '}');
    return b->full ? -1 : 0;
}

int decode_json(struct decode *dc, const ProtobufCMessage *m, const void **out,
                size_t *len, char *why, size_t whylen)
{
    struct buf *b = &dc->out;
    b->len = 0;
    b->full = 0;
    dc->bad_field = NULL;
    if (json_msg(dc, b, m, 0) || b->full) {
        if (dc->bad_field)
            snprintf(why, whylen, "field %s of %s is not valid UTF-8",
                     dc->bad_field, m->descriptor->name);
        else if (b->full)
            snprintf(why, whylen,
                     "the JSON form of %s would be larger than %u MiB",
                     m->descriptor->name, DECODE_OUT_MAX >> 20);
        else
            snprintf(why, whylen, "%s is nested deeper than %d messages",
                     m->descriptor->name, DECODE_DEPTH_MAX);
        return -EINVAL;
    }
    *out = b->p;
    *len = b->len;
    return 0;
}

/* ---- packing ---------------------------------------------------------- */

static int pack_into(struct buf *b, const ProtobufCMessage *m, const void **out,
                     size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    b->len = 0;
    b->full = 0;
    if (buf_room(b, n ? n : 1))
        return n > DECODE_OUT_MAX ? -EINVAL : -ENOMEM;
    b->len = protobuf_c_message_pack(m, b->p);
    *out = b->p;
    *len = b->len;
    return 0;
}

int decode_pack(struct decode *dc, const ProtobufCMessage *m, const void **out,
                size_t *len)
{
    return pack_into(&dc->pack, m, out, len);
}

int decode_envelope(struct decode *dc, const struct decode_envelope *e,
                    const void **out, size_t *len)
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

int decode_field_text(const ProtobufCMessage *m, const char *path,
                      size_t pathlen, char *buf, size_t cap, size_t *len)
{
    const char *p = path, *end = path + pathlen;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const ProtobufCFieldDescriptor *f =
            field_by_name(m->descriptor, p, (size_t)((dot ? dot : end) - p));
        if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
            return -EINVAL;
        if (dot) {
            if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                return -EINVAL;
            if (!present(m, f))
                return -ENOENT;
            m = *(const ProtobufCMessage *const *)member(m, f);
            p = dot + 1;
            continue;
        }
        const void *v = member(m, f);
        char num[48];
        const char *s = num;
        size_t n;
        int quoted;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            /* proto3 cannot tell "" from unset: neither makes a key */
            if (!present(m, f) || zeroish(f, v))
                return -ENOENT;
            s = *(const char *const *)v;
            n = strlen(s);
            if (!utf8_ok(s, n))
                return -EILSEQ;
        } else if (f->type == PROTOBUF_C_TYPE_ENUM) {
            if (explicit_presence(f) && !present(m, f))
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
            if (explicit_presence(f) && !present(m, f))
                return -ENOENT;
            n = number_text(f, v, num, &quoted);
        }
        if (n > cap)
            return -ENOSPC;
        memcpy(buf, s, n);
        *len = n;
        return 0;
    }
}
