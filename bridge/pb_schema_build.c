/*
 * pb_schema_build.c — one DescriptorProto (or EnumDescriptorProto) → the
 * protobuf-c descriptor protoc-c would generate for it (see pb_schema.h):
 * fields sorted by number, an index by name, number ranges, flags, proto2
 * defaults, the struct layout; refusals name the file and the type.
 * pb_schema.c calls it per type and links the type names afterwards.
 *
 * The layout is protoc-c 1.4's for the struct it would generate, with this
 * compiler's sizes and alignments (so armhf and amd64 each get their own):
 * ProtobufCMessage first; then the fields outside real oneofs in
 * declaration order — repeated: size_t n_x, then the array pointer;
 * proto2 optional (and proto3 optional) scalar, enum and bytes:
 * protobuf_c_boolean has_x, then the value; anything else: the value
 * alone; then per real oneof, in declaration order, its case (an int-sized
 * enum) and a union of its members. Each member at the next offset its
 * alignment allows; the size rounded up to the largest alignment.
 * Synthetic oneofs (proto3 optional) are not oneofs to protobuf-c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/pb_schema_int.h"

#define LABEL_REPEAT                                                           \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED
#define LABEL_REQ                                                              \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED
#define LABEL_OPT                                                              \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL

/* ---- types --------------------------------------------------------------- */

/* descriptor.proto's field types (by number) in protobuf-c's terms. */
static const struct {
    const char *name;
    int pc; /* ProtobufCType, -1: not supported */
} ftypes[] = {
    [1] = {"double", PROTOBUF_C_TYPE_DOUBLE},
    [2] = {"float", PROTOBUF_C_TYPE_FLOAT},
    [3] = {"int64", PROTOBUF_C_TYPE_INT64},
    [4] = {"uint64", PROTOBUF_C_TYPE_UINT64},
    [5] = {"int32", PROTOBUF_C_TYPE_INT32},
    [6] = {"fixed64", PROTOBUF_C_TYPE_FIXED64},
    [7] = {"fixed32", PROTOBUF_C_TYPE_FIXED32},
    [8] = {"bool", PROTOBUF_C_TYPE_BOOL},
    [9] = {"string", PROTOBUF_C_TYPE_STRING},
    [10] = {"group", -1},
    [11] = {"message", PROTOBUF_C_TYPE_MESSAGE},
    [12] = {"bytes", PROTOBUF_C_TYPE_BYTES},
    [13] = {"uint32", PROTOBUF_C_TYPE_UINT32},
    [14] = {"enum", PROTOBUF_C_TYPE_ENUM},
    [15] = {"sfixed32", PROTOBUF_C_TYPE_SFIXED32},
    [16] = {"sfixed64", PROTOBUF_C_TYPE_SFIXED64},
    [17] = {"sint32", PROTOBUF_C_TYPE_SINT32},
    [18] = {"sint64", PROTOBUF_C_TYPE_SINT64},
};

#define NFTYPES (sizeof ftypes / sizeof ftypes[0])

const char *pb_schema_scalar_name(ProtobufCType t)
{
    for (size_t i = 1; i < NFTYPES; i++)
        if (ftypes[i].pc == (int)t)
            return ftypes[i].name;
    return "?";
}

static const char *const wkts[] = {
    [PB_SCHEMA_WKT_ANY] = "Any",
    [PB_SCHEMA_WKT_DURATION] = "Duration",
    [PB_SCHEMA_WKT_EMPTY] = "Empty",
    [PB_SCHEMA_WKT_FIELD_MASK] = "FieldMask",
    [PB_SCHEMA_WKT_STRUCT] = "Struct",
    [PB_SCHEMA_WKT_VALUE] = "Value",
    [PB_SCHEMA_WKT_LIST_VALUE] = "ListValue",
    [PB_SCHEMA_WKT_TIMESTAMP] = "Timestamp",
    [PB_SCHEMA_WKT_DOUBLE_VALUE] = "DoubleValue",
    [PB_SCHEMA_WKT_FLOAT_VALUE] = "FloatValue",
    [PB_SCHEMA_WKT_INT64_VALUE] = "Int64Value",
    [PB_SCHEMA_WKT_UINT64_VALUE] = "UInt64Value",
    [PB_SCHEMA_WKT_INT32_VALUE] = "Int32Value",
    [PB_SCHEMA_WKT_UINT32_VALUE] = "UInt32Value",
    [PB_SCHEMA_WKT_BOOL_VALUE] = "BoolValue",
    [PB_SCHEMA_WKT_STRING_VALUE] = "StringValue",
    [PB_SCHEMA_WKT_BYTES_VALUE] = "BytesValue",
};

static enum pb_schema_wkt wkt_of(const char *full)
{
    const char *pre = "google.protobuf.";
    if (strncmp(full, pre, strlen(pre)))
        return PB_SCHEMA_WKT_NONE;
    for (size_t i = 1; i < sizeof wkts / sizeof wkts[0]; i++)
        if (!strcmp(full + strlen(pre), wkts[i]))
            return (enum pb_schema_wkt)i;
    return PB_SCHEMA_WKT_NONE;
}

static char *camel(struct arena *a, const char *s, int up)
{
    char *p = arena_alloc(a, strlen(s) + 1);
    if (p)
        camel_into(s, up, p);
    return p;
}

static int add_type(struct ctx *c, const char *name, struct msgb *mb,
                    struct enumb *eb)
{
    struct pb_schema *s = c->s;
    struct rtype *t;
    if (s->ntypes == PB_SCHEMA_TYPES_MAX)
        return pb_schema_fail(c, -EFBIG, name,
                              "more than %d types in all schemas",
                              PB_SCHEMA_TYPES_MAX);
    if (s->ntypes == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct rtype *nt = realloc(s->types, cap * sizeof *nt);
        if (!nt)
            return pb_schema_nomem(c);
        s->types = nt;
        s->cap = cap;
    }
    t = &s->types[s->ntypes++];
    memset(t, 0, sizeof *t);
    t->pub.name = name;
    t->pub.file = c->file->name;
    t->pub.syntax = c->file->syntax;
    t->pub.msg = mb ? &mb->d : NULL;
    t->pub.enm = eb ? &eb->d : NULL;
    t->mb = mb;
    t->eb = eb;
    t->file = c->file;
    return 0;
}

/* ---- enums --------------------------------------------------------------- */

struct vord {
    int value;
    unsigned decl, final;
    const char *name;
};

static int vord_by_value(const void *a, const void *b)
{
    const struct vord *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->decl < y->decl ? -1 : x->decl > y->decl;
}

static int vord_by_name(const void *a, const void *b)
{
    return strcmp(((const struct vord *)a)->name,
                  ((const struct vord *)b)->name);
}

/* Number ranges as protoc-c writes them: runs of consecutive numbers, then
 * a sentinel {0, n}. nums sorted, distinct. Returns the number of runs. */
static unsigned ranges(const int *nums, unsigned n, ProtobufCIntRange *r)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i == 0 || nums[i] != nums[i - 1] + 1) {
            r[k].start_value = nums[i];
            r[k].orig_index = i;
            k++;
        }
    }
    r[k].start_value = 0;
    r[k].orig_index = n;
    return k;
}

int pb_schema_build_enum(struct ctx *c, const char *scope, const EnumPB *e)
{
    struct arena *a = &c->s->mem;
    const char *full;
    struct enumb *eb;
    struct vord *v;
    ProtobufCEnumValue *vals;
    ProtobufCEnumValueIndex *byname;
    ProtobufCIntRange *r;
    int *nums;
    unsigned n = (unsigned)e->n_value, nu = 0;

    if (!ident_ok(e->name))
        return pb_schema_fail(c, -EINVAL, scope[0] ? scope : NULL,
                              "an enum has no valid name (\"%s\")",
                              e->name ? e->name : "");
    if (!(full = join(a, scope, e->name)))
        return a->over
                   ? pb_schema_nomem(c)
                   : pb_schema_fail(c, -EINVAL, scope, "enum name too long");
    if (e->n_value == 0)
        return pb_schema_fail(c, -EINVAL, full, "an enum without values");
    if (e->n_value > PB_SCHEMA_VALUES_MAX)
        return pb_schema_fail(c, -EFBIG, full, "more than %d enum values",
                              PB_SCHEMA_VALUES_MAX);
    if (!(v = arena_alloc(&c->scratch, n * sizeof *v)) ||
        !(nums = arena_alloc(&c->scratch, n * sizeof *nums)) ||
        !(eb = arena_zalloc(a, sizeof *eb)) ||
        !(vals = arena_alloc(a, n * sizeof *vals)) ||
        !(byname = arena_alloc(a, n * sizeof *byname)) ||
        !(r = arena_alloc(a, (n + 1) * sizeof *r)))
        return pb_schema_nomem(c);
    for (unsigned i = 0; i < n; i++) {
        const Google__Protobuf__EnumValueDescriptorProto *ev = e->value[i];
        if (!ident_ok(ev->name))
            return pb_schema_fail(c, -EINVAL, full,
                                  "value %u has no valid name", i);
        if (!(v[i].name = arena_strdup(a, ev->name)))
            return pb_schema_nomem(c);
        v[i].value = ev->number;
        v[i].decl = i;
    }
    qsort(v, n, sizeof *v, vord_by_value);
    for (unsigned i = 0; i < n; i++) {
        if (i == 0 || v[i].value != v[i - 1].value) {
            vals[nu].name = vals[nu].c_name = v[i].name;
            vals[nu].value = v[i].value;
            nums[nu++] = v[i].value;
        }
        v[i].final = nu - 1;
        if (v[i].decl == 0)
            eb->first = &vals[nu - 1].value;
    }
    qsort(v, n, sizeof *v, vord_by_name);
    for (unsigned i = 0; i < n; i++) {
        if (i && !strcmp(v[i].name, v[i - 1].name))
            return pb_schema_fail(c, -EINVAL, full, "value %s defined twice",
                                  v[i].name);
        byname[i].name = v[i].name;
        byname[i].index = v[i].final;
    }
    eb->d.magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC;
    eb->d.name = full;
    eb->d.short_name = eb->d.c_name = full + (scope[0] ? strlen(scope) + 1 : 0);
    eb->d.package_name = c->file->package;
    eb->d.n_values = nu;
    eb->d.values = vals;
    eb->d.n_value_names = n;
    eb->d.values_by_name = byname;
    eb->d.n_value_ranges = ranges(nums, nu, r);
    eb->d.value_ranges = r;
    return add_type(c, full, NULL, eb);
}

/* ---- fields: layout ------------------------------------------------------ */

struct place {
    size_t off, align;
};

static unsigned put(struct place *p, size_t size, size_t align)
{
    size_t at = (p->off + align - 1) / align * align;
    p->off = at + size;
    if (align > p->align)
        p->align = align;
    return (unsigned)at;
}

/* Size and alignment of one value of t in the struct (or in an array). */
static void slot(ProtobufCType t, size_t *size, size_t *align)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: /* protoc-c forces its enums to int size */
        *size = sizeof(int32_t);
        *align = _Alignof(int32_t);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *size = sizeof(int64_t);
        *align = _Alignof(int64_t);
        return;
    case PROTOBUF_C_TYPE_FLOAT:
        *size = sizeof(float);
        *align = _Alignof(float);
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        *size = sizeof(double);
        *align = _Alignof(double);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        *size = sizeof(protobuf_c_boolean);
        *align = _Alignof(protobuf_c_boolean);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        *size = sizeof(ProtobufCBinaryData);
        *align = _Alignof(ProtobufCBinaryData);
        return;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        *size = sizeof(void *);
        *align = _Alignof(void *);
        return;
    }
    *size = *align = 1;
}

/* What build_fields() knows of a field in declaration order. */
struct fwork {
    const FieldPB *pb;
    ProtobufCFieldDescriptor fd;
    struct pb_schema_field info;
};

/* A real oneof's case member and union. */
struct uni {
    size_t size, align; /* of its largest member, its most aligned */
    unsigned q, at;     /* offsets of the case and the union */
};

/* Places the members of the fields in w (declaration order) and sets each
 * fd.offset and fd.quantifier_offset; the message's size in *size. u has
 * room for noneofs entries. */
static void layout(struct fwork *w, unsigned n, struct uni *u, unsigned noneofs,
                   size_t *size)
{
    struct place p = {sizeof(ProtobufCMessage), _Alignof(ProtobufCMessage)};
    size_t sz, al;
    for (unsigned k = 0; k < noneofs; k++)
        u[k] = (struct uni){0, 1, 0, 0};
    for (unsigned i = 0; i < n; i++) {
        ProtobufCFieldDescriptor *fd = &w[i].fd;
        int k = w[i].info.oneof;
        slot(fd->type, &sz, &al);
        if (k >= 0) {
            u[k].size = sz > u[k].size ? sz : u[k].size;
            u[k].align = al > u[k].align ? al : u[k].align;
        } else if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            fd->quantifier_offset = put(&p, sizeof(size_t), _Alignof(size_t));
            fd->offset = put(&p, sizeof(void *), _Alignof(void *));
        } else {
            if (fd->label == PROTOBUF_C_LABEL_OPTIONAL &&
                fd->type != PROTOBUF_C_TYPE_STRING &&
                fd->type != PROTOBUF_C_TYPE_MESSAGE)
                fd->quantifier_offset = put(&p, sizeof(protobuf_c_boolean),
                                            _Alignof(protobuf_c_boolean));
            fd->offset = put(&p, sz, al);
        }
    }
    for (unsigned k = 0; k < noneofs; k++) {
        u[k].q = put(&p, sizeof(uint32_t), _Alignof(uint32_t));
        u[k].at =
            put(&p, (u[k].size + u[k].align - 1) / u[k].align * u[k].align,
                u[k].align);
    }
    for (unsigned i = 0; i < n; i++) {
        if (w[i].info.oneof >= 0) {
            w[i].fd.quantifier_offset = u[w[i].info.oneof].q;
            w[i].fd.offset = u[w[i].info.oneof].at;
        }
    }
    *size = (p.off + p.align - 1) / p.align * p.align;
}

/* ---- fields: defaults ---------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reads a C-escaped bytes default (protobuf's CEscape writes \n \r \t \"
 * \' \\ and octal \NNN; \xHH and the other C escapes are read too). */
static int unescape(struct arena *a, const char *s, ProtobufCBinaryData *out)
{
    static const char from[] = "abfnrtv\\'\"?", to[] = "\a\b\f\n\r\t\v\\'\"?";
    uint8_t *p = arena_alloc(a, strlen(s) + 1);
    size_t n = 0;
    if (!p)
        return -ENOMEM;
    while (*s) {
        const char *e;
        unsigned v = 0;
        int k = 0;
        if (*s != '\\') {
            p[n++] = (uint8_t)*s++;
            continue;
        }
        s++;
        if (*s && (e = strchr(from, *s))) {
            v = (unsigned char)to[e - from];
            s++;
        } else if (*s == 'x') {
            for (s++; k < 2 && hexval(*s) >= 0; k++, s++)
                v = v * 16 + (unsigned)hexval(*s);
            if (!k)
                return -EINVAL;
        } else {
            for (; k < 3 && *s >= '0' && *s <= '7'; k++, s++)
                v = v * 8 + (unsigned)(*s - '0');
            if (!k || v > 255)
                return -EINVAL;
        }
        p[n++] = (uint8_t)v;
    }
    out->len = n;
    out->data = p;
    return 0;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    if (!strcmp(s, "inf") || !strcmp(s, "-inf") || !strcmp(s, "nan")) {
        *out = s[0] == 'n' ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    if (!*s || strchr(s, 'n') || strchr(s, 'N') || strchr(s, 'x') ||
        strchr(s, 'X'))
        return -EINVAL; /* inf/nan spelled otherwise, hex floats */
    *out = strtod(s, &end);
    return *end ? -EINVAL : 0;
}

/* The default value of a proto2 field from its text: stored in the arena,
 * typed as protobuf-c reads it. Enum defaults wait for pb_schema_link(). */
static int parse_default(struct arena *a, const char *s, ProtobufCType t,
                         const void **out)
{
    union {
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        float f;
        double d;
        protobuf_c_boolean b;
    } v;
    size_t size, align;
    void *p;
    int64_t i;
    uint64_t u;
    double d;
    switch (t) {
    case PROTOBUF_C_TYPE_STRING:
        return (*out = arena_strdup(a, s)) ? 0 : -ENOMEM;
    case PROTOBUF_C_TYPE_BYTES:
        if (!(p = arena_alloc(a, sizeof(ProtobufCBinaryData))))
            return -ENOMEM;
        *out = p;
        return unescape(a, s, p);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (parse_i64(s, INT32_MIN, INT32_MAX, &i))
            return -EINVAL;
        v.i32 = (int32_t)i;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (parse_i64(s, INT64_MIN, INT64_MAX, &v.i64))
            return -EINVAL;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (parse_u64(s, UINT32_MAX, &u))
            return -EINVAL;
        v.u32 = (uint32_t)u;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (parse_u64(s, UINT64_MAX, &v.u64))
            return -EINVAL;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        if (parse_double(s, &d))
            return -EINVAL;
        v.f = isfinite(d) ? strtof(s, NULL) : (float)d; /* rounded once */
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (parse_double(s, &v.d))
            return -EINVAL;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(s, "true") && strcmp(s, "false"))
            return -EINVAL;
        v.b = s[0] == 't';
        break;
    default:
        return -EINVAL;
    }
    slot(t, &size, &align);
    if (!(p = arena_alloc(a, size)))
        return -ENOMEM;
    memcpy(p, &v, size);
    *out = p;
    return 0;
}

/* ---- fields -------------------------------------------------------------- */

struct ford {
    int32_t number;
    unsigned decl;
    const char *name;
};

static int ford_by_number(const void *a, const void *b)
{
    const struct ford *x = a, *y = b;
    return x->number < y->number ? -1 : x->number > y->number;
}

static int ford_by_name(const void *a, const void *b)
{
    return strcmp(((const struct ford *)a)->name,
                  ((const struct ford *)b)->name);
}

/* Which of m's oneofs are real (not a proto3 optional's synthetic one):
 * real[k] is the index among the real ones, or -1. */
static int oneofs(struct ctx *c, struct msgb *mb, const MsgPB *m, int *real)
{
    const char *full = mb->d.name;
    const char **names;
    unsigned nreal = 0, *members, *opt;
    size_t k, no = m->n_oneof_decl;
    if (no > m->n_field)
        return pb_schema_fail(c, -EINVAL, full, "more oneofs than fields");
    if (!(names = arena_alloc(&c->s->mem, (no + 1) * sizeof *names)) ||
        !(members = arena_zalloc(&c->scratch, (no + 1) * sizeof *members)) ||
        !(opt = arena_zalloc(&c->scratch, (no + 1) * sizeof *opt)))
        return pb_schema_nomem(c);
    for (size_t i = 0; i < m->n_field; i++) {
        const FieldPB *f = m->field[i];
        if (!f->has_oneof_index || f->oneof_index < 0 ||
            (size_t)f->oneof_index >= no)
            continue; /* field() refuses a bad index */
        members[f->oneof_index]++;
        opt[f->oneof_index] += f->has_proto3_optional && f->proto3_optional;
    }
    for (k = 0; k < no; k++) {
        const char *name = m->oneof_decl[k]->name;
        if (!ident_ok(name))
            return pb_schema_fail(c, -EINVAL, full,
                                  "oneof %zu has no valid name", k);
        if (!members[k])
            return pb_schema_fail(c, -EINVAL, full, "oneof %s has no fields",
                                  name);
        if (opt[k] && (members[k] != 1 || c->file->syntax != 3))
            return pb_schema_fail(
                c, -EINVAL, full,
                "oneof %s: a proto3 optional field must be alone in "
                "its oneof, in a proto3 file",
                name);
        real[k] = opt[k] ? -1 : (int)nreal;
        if (!opt[k] && !(names[nreal++] = arena_strdup(&c->s->mem, name)))
            return pb_schema_nomem(c);
    }
    mb->info.n_oneofs = nreal;
    mb->info.oneofs = names;
    return 0;
}

/* A field in declaration order into w: checks, label, type, flags,
 * default (but for enums), oneof. */
static int field(struct ctx *c, const char *msg, const FieldPB *f,
                 const int *real, size_t noneof_decl, struct fwork *w)
{
    struct arena *a = &c->s->mem;
    ProtobufCFieldDescriptor *fd = &w->fd;
    int p3 = c->file->syntax == 3, p3opt;
    const char *nm = f->name;

    if (!ident_ok(nm))
        return pb_schema_fail(c, -EINVAL, msg,
                              "a field has no valid name (\"%s\")",
                              nm ? nm : "");
    if (!f->has_number || f->number < 1 || f->number > NUMBER_MAX)
        return pb_schema_fail(c, -EINVAL, msg, "field %s has no valid number",
                              nm);
    if (!f->has_type || f->type < 1 || (size_t)f->type >= NFTYPES)
        return pb_schema_fail(c, -EINVAL, msg,
                              "field %s = %d has no valid type", nm, f->number);
    if (ftypes[f->type].pc < 0)
        return pb_schema_fail(
            c, -EINVAL, msg,
            "field %s = %d is a group (groups are not supported: "
            "use a nested message)",
            nm, f->number);
    if (f->extendee)
        return pb_schema_fail(c, -EINVAL, msg,
                              "field %s = %d extends %s (extensions "
                              "are not supported)",
                              nm, f->number, f->extendee);
    fd->name = arena_strdup(a, nm);
    fd->id = (uint32_t)f->number;
    fd->type = (ProtobufCType)ftypes[f->type].pc;
    if (fd->type == PROTOBUF_C_TYPE_STRING &&
        (c->s->flags & PB_SCHEMA_STRING_BYTES)) {
        fd->type = PROTOBUF_C_TYPE_BYTES; /* keeps the length: see .h */
        w->info.string = 1;
    }
    p3opt = f->has_proto3_optional && f->proto3_optional;
    w->info.proto3_optional = p3opt;
    w->info.oneof = -1;
    if (f->has_oneof_index) {
        if (f->oneof_index < 0 || (size_t)f->oneof_index >= noneof_decl)
            return pb_schema_fail(c, -EINVAL, msg, "field %s = %d: no oneof %d",
                                  nm, f->number, f->oneof_index);
        w->info.oneof = real[f->oneof_index];
    } else if (p3opt) {
        return pb_schema_fail(
            c, -EINVAL, msg, "field %s = %d: proto3 optional without its oneof",
            nm, f->number);
    }
    if (!f->has_label || f->label == LABEL_OPT)
        fd->label =
            p3 && !p3opt ? PROTOBUF_C_LABEL_NONE : PROTOBUF_C_LABEL_OPTIONAL;
    else if (f->label == LABEL_REQ || f->label == LABEL_REPEAT)
        fd->label = f->label == LABEL_REQ ? PROTOBUF_C_LABEL_REQUIRED
                                          : PROTOBUF_C_LABEL_REPEATED;
    else
        return pb_schema_fail(
            c, -EINVAL, msg, "field %s = %d has no valid label", nm, f->number);
    if (w->info.oneof >= 0 && fd->label != PROTOBUF_C_LABEL_OPTIONAL &&
        fd->label != PROTOBUF_C_LABEL_NONE)
        return pb_schema_fail(c, -EINVAL, msg,
                              "field %s = %d: a oneof member must be "
                              "singular",
                              nm, f->number);
    if (w->info.oneof >= 0)
        fd->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED && packable(fd->type) &&
        (f->options && f->options->has_packed ? f->options->packed : p3))
        fd->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
    if (f->options && f->options->has_deprecated && f->options->deprecated)
        fd->flags |= PROTOBUF_C_FIELD_FLAG_DEPRECATED;
    w->info.json_name =
        f->json_name ? arena_strdup(a, f->json_name) : camel(a, nm, 0);
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE ||
        fd->type == PROTOBUF_C_TYPE_ENUM) {
        if (!f->type_name || f->type_name[0] != '.' ||
            !dotted_ok(f->type_name + 1))
            return pb_schema_fail(
                c, -EINVAL, msg,
                "field %s = %d: type name \"%s\" is not a full name", nm,
                f->number, f->type_name ? f->type_name : "");
        w->info.type_name = arena_strdup(a, f->type_name + 1);
    }
    if (f->default_value) {
        if (p3 || fd->label == PROTOBUF_C_LABEL_REPEATED ||
            fd->type == PROTOBUF_C_TYPE_MESSAGE)
            return pb_schema_fail(
                c, -EINVAL, msg,
                "field %s = %d: a default value is allowed only on "
                "singular proto2 scalar fields",
                nm, f->number);
        w->info.default_text = arena_strdup(a, f->default_value);
        if (w->info.string) {
            ProtobufCBinaryData *bd = arena_alloc(a, sizeof *bd);
            if (!bd ||
                !(bd->data = (uint8_t *)arena_strdup(a, f->default_value)))
                return pb_schema_nomem(c);
            bd->len = strlen(f->default_value);
            fd->default_value = bd;
        } else if (fd->type != PROTOBUF_C_TYPE_ENUM &&
                   parse_default(a, f->default_value, fd->type,
                                 &fd->default_value))
            return a->over ? pb_schema_nomem(c)
                           : pb_schema_fail(
                                 c, -EINVAL, msg,
                                 "field %s = %d: bad default value \"%s\"", nm,
                                 f->number, f->default_value);
    } else if (p3 && !p3opt && fd->type == PROTOBUF_C_TYPE_STRING) {
        fd->default_value = &protobuf_c_empty_string; /* as protoc-c */
    }
    /* protobuf-c's own init (message_init is NULL) writes every default,
     * a oneof member's too, into the oneof's union; parsing a string or
     * message member of it then frees or merges that as if it had been
     * allocated. protoc-c's __init leaves the union zero: so no default
     * for oneof members (the text stays in default_text). */
    if (w->info.oneof >= 0)
        fd->default_value = NULL;
    if (!fd->name || !w->info.json_name ||
        (w->info.type_name == NULL && (fd->type == PROTOBUF_C_TYPE_MESSAGE ||
                                       fd->type == PROTOBUF_C_TYPE_ENUM)))
        return pb_schema_nomem(c);
    return 0;
}

/* All of m's fields into mb: in number order, index by name, ranges,
 * layout. */
static int build_fields(struct ctx *c, struct msgb *mb, const MsgPB *m)
{
    struct arena *a = &c->s->mem;
    unsigned n = (unsigned)m->n_field;
    struct fwork *w;
    struct ford *ord;
    unsigned *byname;
    int *nums, *real, rc;
    ProtobufCIntRange *r;
    struct uni *u;
    size_t size;

    if (m->n_field > PB_SCHEMA_FIELDS_MAX)
        return pb_schema_fail(c, -EFBIG, mb->d.name, "more than %d fields",
                              PB_SCHEMA_FIELDS_MAX);
    if (!(w = arena_zalloc(&c->scratch, (n + 1) * sizeof *w)) ||
        !(ord = arena_alloc(&c->scratch, (n + 1) * sizeof *ord)) ||
        !(nums = arena_alloc(&c->scratch, (n + 1) * sizeof *nums)) ||
        !(real =
              arena_alloc(&c->scratch, (m->n_oneof_decl + 1) * sizeof *real)) ||
        !(u = arena_alloc(&c->scratch, (m->n_oneof_decl + 1) * sizeof *u)) ||
        !(mb->fields = arena_zalloc(a, (n + 1) * sizeof *mb->fields)) ||
        !(mb->finfo = arena_zalloc(a, (n + 1) * sizeof *mb->finfo)) ||
        !(byname = arena_alloc(a, (n + 1) * sizeof *byname)) ||
        !(r = arena_alloc(a, (n + 1) * sizeof *r)))
        return pb_schema_nomem(c);
    if ((rc = oneofs(c, mb, m, real)))
        return rc;
    for (unsigned i = 0; i < n; i++) {
        if ((rc = field(c, mb->d.name, m->field[i], real, m->n_oneof_decl,
                        &w[i])))
            return rc;
        ord[i].number = m->field[i]->number;
        ord[i].decl = i;
    }
    layout(w, n, u, mb->info.n_oneofs, &size);
    qsort(ord, n, sizeof *ord, ford_by_number);
    for (unsigned j = 0; j < n; j++) {
        if (j && ord[j].number == ord[j - 1].number)
            return pb_schema_fail(c, -EINVAL, mb->d.name,
                                  "fields %s and %s have the same number %d",
                                  w[ord[j - 1].decl].fd.name,
                                  w[ord[j].decl].fd.name, ord[j].number);
        mb->fields[j] = w[ord[j].decl].fd;
        mb->finfo[j] = w[ord[j].decl].info;
        nums[j] = ord[j].number;
        ord[j].decl = j; /* from here: the index in number order */
        ord[j].name = mb->fields[j].name;
    }
    qsort(ord, n, sizeof *ord, ford_by_name);
    for (unsigned j = 0; j < n; j++) {
        if (j && !strcmp(ord[j].name, ord[j - 1].name))
            return pb_schema_fail(c, -EINVAL, mb->d.name,
                                  "field %s defined twice", ord[j].name);
        byname[j] = ord[j].decl;
    }
    mb->d.sizeof_message = size;
    mb->d.n_fields = n;
    mb->d.fields = n ? mb->fields : NULL;
    mb->d.fields_sorted_by_name = n ? byname : NULL;
    mb->d.n_field_ranges = ranges(nums, n, r);
    mb->d.field_ranges = n ? r : NULL;
    mb->info.fields = mb->finfo;
    return 0;
}

/* ---- messages ------------------------------------------------------------ */

static int map_entry_ok(const struct msgb *mb)
{
    const ProtobufCFieldDescriptor *f = mb->d.fields;
    return mb->d.n_fields == 2 && f[0].id == 1 && f[1].id == 2 &&
           !strcmp(f[0].name, "key") && !strcmp(f[1].name, "value") &&
           f[0].label != PROTOBUF_C_LABEL_REPEATED &&
           f[1].label != PROTOBUF_C_LABEL_REPEATED;
}

int pb_schema_build_message(struct ctx *c, const char *scope, const MsgPB *m,
                            const struct pb_schema_msg *outer, unsigned index)
{
    struct arena *a = &c->s->mem;
    struct msgb *mb;
    const char *full;
    int rc;

    if (!ident_ok(m->name))
        return pb_schema_fail(c, -EINVAL, scope[0] ? scope : NULL,
                              "a message has no valid name (\"%s\")",
                              m->name ? m->name : "");
    if (!(full = join(a, scope, m->name)))
        return a->over
                   ? pb_schema_nomem(c)
                   : pb_schema_fail(c, -EINVAL, scope, "message name too long");
    for (size_t i = 0; i < m->n_extension; i++)
        if (!custom_option(m->extension[i]->extendee))
            return pb_schema_fail(
                c, -EINVAL, full,
                "extends %s with field %s = %d (extensions are not "
                "supported)",
                m->extension[i]->extendee ? m->extension[i]->extendee + 1 : "?",
                m->extension[i]->name ? m->extension[i]->name : "?",
                m->extension[i]->number);
    if (m->options && m->options->has_message_set_wire_format &&
        m->options->message_set_wire_format)
        return pb_schema_fail(c, -EINVAL, full,
                              "message_set_wire_format is not "
                              "supported");
    if (!(mb = arena_zalloc(a, sizeof *mb)))
        return pb_schema_nomem(c);
    mb->d.magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
    mb->d.name = mb->d.c_name = full;
    mb->d.short_name = camel(a, m->name, 1);
    mb->d.package_name = c->file->package;
    mb->d.message_init = NULL; /* protobuf-c initialises by descriptor */
    mb->d.reserved1 = &mb->info;
    mb->info.desc = &mb->d;
    mb->info.file = c->file->name;
    mb->info.syntax = c->file->syntax;
    mb->info.wkt = wkt_of(full);
    mb->info.outer = outer;
    mb->info.index = index;
    mb->info.map_entry =
        m->options && m->options->has_map_entry && m->options->map_entry;
    if (!mb->d.short_name)
        return pb_schema_nomem(c);
    if ((rc = build_fields(c, mb, m)))
        return rc;
    if (mb->info.map_entry && !map_entry_ok(mb))
        return pb_schema_fail(c, -EINVAL, full,
                              "a map entry type needs fields key = 1 "
                              "and value = 2");
    if ((rc = add_type(c, full, mb, NULL)))
        return rc;
    for (size_t i = 0; i < m->n_nested_type; i++)
        if ((rc = pb_schema_build_message(c, full, m->nested_type[i], &mb->info,
                                          (unsigned)i)))
            return rc;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if ((rc = pb_schema_build_enum(c, full, m->enum_type[i])))
            return rc;
    return 0;
}

void pb_schema_message_init(const ProtobufCMessageDescriptor *d,
                            ProtobufCMessage *m)
{
    memset(m, 0, d->sizeof_message);
    m->descriptor = d;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *at = (char *)m + f->offset;
        size_t size, align;
        if (!f->default_value || f->label == PROTOBUF_C_LABEL_REPEATED ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue; /* generated __init leaves a oneof's union zero */
        if (f->type == PROTOBUF_C_TYPE_STRING ||
            f->type == PROTOBUF_C_TYPE_MESSAGE) {
            *(const void **)(void *)at = f->default_value; /* aligned */
            continue;
        }
        slot(f->type, &size, &align);
        memcpy(at, f->default_value, size);
    }
}
