/*
 * pb_schema.c — FileDescriptorSets → protobuf-c descriptors at run time
 * (see pb_schema.h). Depends on protobuf-c and the code protoc-c generates
 * from Debian's google/protobuf/descriptor.proto, nothing of the bridge; no
 * I/O but pb_schema_add_file()'s read.
 *
 * A set goes in three steps:
 *  1. pb_schema_add(): a depth check (protobuf-c's unpack recurses), then
 *     protobuf-c unpacks the set into a scratch arena dropped at the end.
 *  2. Each file is checked, and each message and enum gets its descriptor
 *     in the registry's arena: fields sorted by number, an index by name,
 *     number ranges, flags, proto2 defaults, the struct layout. Type
 *     references stay names. An add that fails leaves the registry as it
 *     was (what it allocated stays in the arena until the free).
 *  3. pb_schema_link(): all types sorted by name, a name defined twice
 *     refused, every message and enum field pointed at its type.
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
 *
 * Invariants: a registry's strings and descriptors live in its arena and
 * never move; the types array (malloc'd) is sorted by name up to nlinked.
 */
#include "bridge/pb_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "google/protobuf/descriptor.pb-c.h"

/* protoc-c's names for descriptor.proto's messages, shortened. */
typedef Google__Protobuf__FileDescriptorSet SetPB;
typedef Google__Protobuf__FileDescriptorProto FilePB;
typedef Google__Protobuf__DescriptorProto MsgPB;
typedef Google__Protobuf__FieldDescriptorProto FieldPB;
typedef Google__Protobuf__EnumDescriptorProto EnumPB;

#define CHUNK      (64u << 10)
#define IDENT_MAX  128
#define NUMBER_MAX 536870911 /* 2^29 - 1, the largest field number */
#define ALIGN      _Alignof(max_align_t)
#define LABEL_REPEAT                                                           \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED
#define LABEL_REQ                                                              \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED
#define LABEL_OPT                                                              \
    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL

/* ---- the arena ---------------------------------------------------------- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
};

struct arena {
    struct chunk *head;
    size_t total, max;
    int over; /* an allocation passed max */
};

static void *arena_alloc(struct arena *a, size_t n)
{
    struct chunk *c = a->head;
    n = n ? (n + ALIGN - 1) & ~(size_t)(ALIGN - 1) : ALIGN;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK ? n : CHUNK;
        if (n > a->max || a->total + cap > a->max ||
            !(c = malloc(sizeof *c + cap))) {
            a->over = 1;
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    c->used += n;
    return c->data + c->used - n;
}

static void *arena_zalloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

static void arena_fini(struct arena *a)
{
    while (a->head) {
        struct chunk *c = a->head;
        a->head = c->next;
        free(c);
    }
    a->total = 0;
}

/* protobuf-c's allocator interface on an arena: free is a no-op. */
static void *pc_alloc(void *ud, size_t n)
{
    return arena_alloc(ud, n);
}

static void pc_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

/* ---- the registry -------------------------------------------------------- */

struct file {
    struct file *next;
    const char *name, *set, *package;
    int syntax;
    uint64_t hash; /* of the FileDescriptorProto as packed again */
    size_t size;
};

struct msgb { /* a message being built; d.reserved1 = &info */
    ProtobufCMessageDescriptor d;
    struct pb_schema_msg info;
    ProtobufCFieldDescriptor *fields;
    struct pb_schema_field *finfo;
};

struct enumb {
    ProtobufCEnumDescriptor d;
    int first; /* the value declared first: a proto2 field's default */
};

struct rtype {
    struct pb_schema_type pub;
    struct msgb *mb; /* exactly one of mb, eb */
    struct enumb *eb;
    const struct file *file;
};

struct pb_schema {
    struct arena mem;
    struct file *files;
    size_t nfiles;
    struct rtype *types; /* sorted by name up to nlinked */
    size_t ntypes, nlinked, cap;
    int broken; /* a link failed */
};

/* One pb_schema_add(): where errors are, and the scratch arena. */
struct ctx {
    struct pb_schema *s;
    struct arena scratch;
    const char *set;
    const struct file *file;
    char *err;
    size_t errlen;
};

/* "set: file: type T: what" (file and type when known); returns rc. */
static int fail(struct ctx *c, int rc, const char *type, const char *fmt, ...)
{
    size_t n = 0;
    va_list ap;
    if (!c->errlen)
        return rc;
    n += (size_t)snprintf(c->err, c->errlen, "%s: ", c->set);
    if (c->file && n < c->errlen)
        n += (size_t)snprintf(c->err + n, c->errlen - n, "%s: ", c->file->name);
    if (type && n < c->errlen)
        n += (size_t)snprintf(c->err + n, c->errlen - n, "type %s: ", type);
    if (n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int nomem(struct ctx *c)
{
    if (c->s->mem.over || c->scratch.over)
        return fail(c, -EFBIG, NULL,
                    "the schemas need more than %u MiB in memory",
                    PB_SCHEMA_MEM_MAX >> 20);
    return fail(c, -ENOMEM, NULL, "out of memory");
}

int pb_schema_new(struct pb_schema **out)
{
    struct pb_schema *s = calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return -ENOMEM;
    s->mem.max = PB_SCHEMA_MEM_MAX;
    return 0;
}

void pb_schema_free(struct pb_schema *s)
{
    if (!s)
        return;
    arena_fini(&s->mem);
    free(s->types);
    free(s);
}

/* ---- names and types ------------------------------------------------------
 */

static int ident_ok(const char *s)
{
    size_t n = 0;
    if (!s ||
        !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n <= IDENT_MAX;
}

/* A dotted name: identifiers joined by single dots. */
static int dotted_ok(const char *s)
{
    char part[IDENT_MAX + 1];
    if (strlen(s) > PB_SCHEMA_NAME_MAX)
        return 0;
    for (;;) {
        size_t n = strcspn(s, ".");
        if (n > IDENT_MAX)
            return 0;
        memcpy(part, s, n);
        part[n] = '\0';
        if (!ident_ok(part))
            return 0;
        if (!s[n])
            return 1;
        s += n + 1;
    }
}

static char *join(struct arena *a, const char *scope, const char *name)
{
    size_t ns = strlen(scope), nn = strlen(name);
    char *p;
    if (!ns)
        return arena_strdup(a, name);
    if (ns + 1 + nn > PB_SCHEMA_NAME_MAX)
        return NULL;
    if ((p = arena_alloc(a, ns + nn + 2)))
        snprintf(p, ns + nn + 2, "%s.%s", scope, name);
    return p;
}

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

static const char *pc_type_name(ProtobufCType t)
{
    for (size_t i = 1; i < NFTYPES; i++)
        if (ftypes[i].pc == (int)t)
            return ftypes[i].name;
    return "?";
}

static int packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
           t != PROTOBUF_C_TYPE_MESSAGE;
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

/* s without '_', the letter after one upper case (and the first letter
 * too when up): protoc-c's short_name, protobuf's json_name. out has room
 * for strlen(s) + 1. */
static void camel_into(const char *s, int up, char *out)
{
    for (; *s; s++) {
        if (*s == '_') {
            up = 1;
            continue;
        }
        *out++ = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 32) : *s;
        up = 0;
    }
    *out = '\0';
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
        return fail(c, -EFBIG, name, "more than %d types in all schemas",
                    PB_SCHEMA_TYPES_MAX);
    if (s->ntypes == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct rtype *nt = realloc(s->types, cap * sizeof *nt);
        if (!nt)
            return nomem(c);
        s->types = nt;
        s->cap = cap;
    }
    t = &s->types[s->ntypes++];
    memset(t, 0, sizeof *t);
    t->pub.name = name;
    t->pub.file = c->file->name;
    t->pub.msg = mb ? &mb->d : NULL;
    t->pub.enm = eb ? &eb->d : NULL;
    t->mb = mb;
    t->eb = eb;
    t->file = c->file;
    return 0;
}

/* ---- enums ----------------------------------------------------------------
 */

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

static int build_enum(struct ctx *c, const char *scope, const EnumPB *e)
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
        return fail(c, -EINVAL, scope[0] ? scope : NULL,
                    "an enum has no valid name (\"%s\")",
                    e->name ? e->name : "");
    if (!(full = join(a, scope, e->name)))
        return a->over ? nomem(c)
                       : fail(c, -EINVAL, scope, "enum name too long");
    if (e->n_value == 0)
        return fail(c, -EINVAL, full, "an enum without values");
    if (e->n_value > PB_SCHEMA_VALUES_MAX)
        return fail(c, -EFBIG, full, "more than %d enum values",
                    PB_SCHEMA_VALUES_MAX);
    if (!(v = arena_alloc(&c->scratch, n * sizeof *v)) ||
        !(nums = arena_alloc(&c->scratch, n * sizeof *nums)) ||
        !(eb = arena_zalloc(a, sizeof *eb)) ||
        !(vals = arena_alloc(a, n * sizeof *vals)) ||
        !(byname = arena_alloc(a, n * sizeof *byname)) ||
        !(r = arena_alloc(a, (n + 1) * sizeof *r)))
        return nomem(c);
    for (unsigned i = 0; i < n; i++) {
        const Google__Protobuf__EnumValueDescriptorProto *ev = e->value[i];
        if (!ident_ok(ev->name))
            return fail(c, -EINVAL, full, "value %u has no valid name", i);
        if (!(v[i].name = arena_strdup(a, ev->name)))
            return nomem(c);
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
            eb->first = v[i].value;
    }
    qsort(v, n, sizeof *v, vord_by_name);
    for (unsigned i = 0; i < n; i++) {
        if (i && !strcmp(v[i].name, v[i - 1].name))
            return fail(c, -EINVAL, full, "value %s defined twice", v[i].name);
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

/* ---- fields: layout -------------------------------------------------------
 */

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

/* ---- fields: defaults ------------------------------------------------------
 */

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

/* ---- fields ---------------------------------------------------------------
 */

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
        return fail(c, -EINVAL, full, "more oneofs than fields");
    if (!(names = arena_alloc(&c->s->mem, (no + 1) * sizeof *names)) ||
        !(members = arena_zalloc(&c->scratch, (no + 1) * sizeof *members)) ||
        !(opt = arena_zalloc(&c->scratch, (no + 1) * sizeof *opt)))
        return nomem(c);
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
            return fail(c, -EINVAL, full, "oneof %zu has no valid name", k);
        if (!members[k])
            return fail(c, -EINVAL, full, "oneof %s has no fields", name);
        if (opt[k] && (members[k] != 1 || c->file->syntax != 3))
            return fail(c, -EINVAL, full,
                        "oneof %s: a proto3 optional field must be alone in "
                        "its oneof, in a proto3 file",
                        name);
        real[k] = opt[k] ? -1 : (int)nreal;
        if (!opt[k] && !(names[nreal++] = arena_strdup(&c->s->mem, name)))
            return nomem(c);
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
        return fail(c, -EINVAL, msg, "a field has no valid name (\"%s\")",
                    nm ? nm : "");
    if (!f->has_number || f->number < 1 || f->number > NUMBER_MAX)
        return fail(c, -EINVAL, msg, "field %s has no valid number", nm);
    if (!f->has_type || f->type < 1 || (size_t)f->type >= NFTYPES)
        return fail(c, -EINVAL, msg, "field %s = %d has no valid type", nm,
                    f->number);
    if (ftypes[f->type].pc < 0)
        return fail(c, -EINVAL, msg,
                    "field %s = %d is a group (groups are not supported: "
                    "use a nested message)",
                    nm, f->number);
    if (f->extendee)
        return fail(c, -EINVAL, msg,
                    "field %s = %d extends %s (extensions "
                    "are not supported)",
                    nm, f->number, f->extendee);
    fd->name = arena_strdup(a, nm);
    fd->id = (uint32_t)f->number;
    fd->type = (ProtobufCType)ftypes[f->type].pc;
    p3opt = f->has_proto3_optional && f->proto3_optional;
    w->info.proto3_optional = p3opt;
    w->info.oneof = -1;
    if (f->has_oneof_index) {
        if (f->oneof_index < 0 || (size_t)f->oneof_index >= noneof_decl)
            return fail(c, -EINVAL, msg, "field %s = %d: no oneof %d", nm,
                        f->number, f->oneof_index);
        w->info.oneof = real[f->oneof_index];
    } else if (p3opt) {
        return fail(c, -EINVAL, msg,
                    "field %s = %d: proto3 optional without its oneof", nm,
                    f->number);
    }
    if (!f->has_label || f->label == LABEL_OPT)
        fd->label =
            p3 && !p3opt ? PROTOBUF_C_LABEL_NONE : PROTOBUF_C_LABEL_OPTIONAL;
    else if (f->label == LABEL_REQ || f->label == LABEL_REPEAT)
        fd->label = f->label == LABEL_REQ ? PROTOBUF_C_LABEL_REQUIRED
                                          : PROTOBUF_C_LABEL_REPEATED;
    else
        return fail(c, -EINVAL, msg, "field %s = %d has no valid label", nm,
                    f->number);
    if (w->info.oneof >= 0 && fd->label != PROTOBUF_C_LABEL_OPTIONAL &&
        fd->label != PROTOBUF_C_LABEL_NONE)
        return fail(c, -EINVAL, msg,
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
            return fail(c, -EINVAL, msg,
                        "field %s = %d: type name \"%s\" is not a full name",
                        nm, f->number, f->type_name ? f->type_name : "");
        w->info.type_name = arena_strdup(a, f->type_name + 1);
    }
    if (f->default_value) {
        if (p3 || fd->label == PROTOBUF_C_LABEL_REPEATED ||
            fd->type == PROTOBUF_C_TYPE_MESSAGE)
            return fail(c, -EINVAL, msg,
                        "field %s = %d: a default value is allowed only on "
                        "singular proto2 scalar fields",
                        nm, f->number);
        w->info.default_text = arena_strdup(a, f->default_value);
        if (fd->type != PROTOBUF_C_TYPE_ENUM &&
            parse_default(a, f->default_value, fd->type, &fd->default_value))
            return a->over ? nomem(c)
                           : fail(c, -EINVAL, msg,
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
        return nomem(c);
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
        return fail(c, -EFBIG, mb->d.name, "more than %d fields",
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
        return nomem(c);
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
            return fail(c, -EINVAL, mb->d.name,
                        "fields %s and %s have the same number %d",
                        w[ord[j - 1].decl].fd.name, w[ord[j].decl].fd.name,
                        ord[j].number);
        mb->fields[j] = w[ord[j].decl].fd;
        mb->finfo[j] = w[ord[j].decl].info;
        nums[j] = ord[j].number;
        ord[j].decl = j; /* from here: the index in number order */
        ord[j].name = mb->fields[j].name;
    }
    qsort(ord, n, sizeof *ord, ford_by_name);
    for (unsigned j = 0; j < n; j++) {
        if (j && !strcmp(ord[j].name, ord[j - 1].name))
            return fail(c, -EINVAL, mb->d.name, "field %s defined twice",
                        ord[j].name);
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

/* ---- messages and files ---------------------------------------------------
 */

static int map_entry_ok(const struct msgb *mb)
{
    const ProtobufCFieldDescriptor *f = mb->d.fields;
    return mb->d.n_fields == 2 && f[0].id == 1 && f[1].id == 2 &&
           !strcmp(f[0].name, "key") && !strcmp(f[1].name, "value") &&
           f[0].label != PROTOBUF_C_LABEL_REPEATED &&
           f[1].label != PROTOBUF_C_LABEL_REPEATED;
}

static int build_message(struct ctx *c, const char *scope, const MsgPB *m)
{
    struct arena *a = &c->s->mem;
    struct msgb *mb;
    const char *full;
    int rc;

    if (!ident_ok(m->name))
        return fail(c, -EINVAL, scope[0] ? scope : NULL,
                    "a message has no valid name (\"%s\")",
                    m->name ? m->name : "");
    if (!(full = join(a, scope, m->name)))
        return a->over ? nomem(c)
                       : fail(c, -EINVAL, scope, "message name too long");
    if (m->n_extension)
        return fail(c, -EINVAL, full,
                    "extends %s with field %s = %d (extensions are not "
                    "supported)",
                    m->extension[0]->extendee ? m->extension[0]->extendee + 1
                                              : "?",
                    m->extension[0]->name ? m->extension[0]->name : "?",
                    m->extension[0]->number);
    if (m->options && m->options->has_message_set_wire_format &&
        m->options->message_set_wire_format)
        return fail(c, -EINVAL, full,
                    "message_set_wire_format is not "
                    "supported");
    if (!(mb = arena_zalloc(a, sizeof *mb)))
        return nomem(c);
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
    mb->info.map_entry =
        m->options && m->options->has_map_entry && m->options->map_entry;
    if (!mb->d.short_name)
        return nomem(c);
    if ((rc = build_fields(c, mb, m)))
        return rc;
    if (mb->info.map_entry && !map_entry_ok(mb))
        return fail(c, -EINVAL, full,
                    "a map entry type needs fields key = 1 "
                    "and value = 2");
    if ((rc = add_type(c, full, mb, NULL)))
        return rc;
    for (size_t i = 0; i < m->n_nested_type; i++)
        if ((rc = build_message(c, full, m->nested_type[i])))
            return rc;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if ((rc = build_enum(c, full, m->enum_type[i])))
            return rc;
    return 0;
}

/* The first type a file defines, to name one in a file-wide error. */
static const char *first_type(struct ctx *c, const FilePB *fd)
{
    const char *name = NULL;
    if (fd->n_message_type)
        name = fd->message_type[0]->name;
    else if (fd->n_enum_type)
        name = fd->enum_type[0]->name;
    if (!name || !ident_ok(name) || (fd->package && !dotted_ok(fd->package)))
        return NULL;
    return join(&c->scratch, fd->package ? fd->package : "", name);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    while (n--)
        h = (h ^ *p++) * 1099511628211ull;
    return h;
}

static struct file *file_named(struct pb_schema *s, const char *name)
{
    for (struct file *f = s->files; f; f = f->next)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

static int add_proto_file(struct ctx *c, const FilePB *fd)
{
    struct pb_schema *s = c->s;
    struct arena *a = &s->mem;
    struct file *f, *old;
    uint8_t *packed;
    int rc;

    c->file = NULL;
    if (!fd->name || !fd->name[0] || strlen(fd->name) > PB_SCHEMA_NAME_MAX)
        return fail(c, -EINVAL, NULL, "a file without a valid name");
    if (!(f = arena_zalloc(a, sizeof *f)) ||
        !(f->name = arena_strdup(a, fd->name)))
        return nomem(c);
    f->set = c->set;
    c->file = f;
    if (!fd->syntax || !fd->syntax[0] || !strcmp(fd->syntax, "proto2"))
        f->syntax = 2;
    else if (!strcmp(fd->syntax, "proto3"))
        f->syntax = 3;
    else if (!strcmp(fd->syntax, "editions"))
        return fail(c, -EINVAL, first_type(c, fd),
                    "editions are not supported (syntax \"editions\"; "
                    "write the file as proto2 or proto3)");
    else
        return fail(c, -EINVAL, first_type(c, fd), "unknown syntax \"%.40s\"",
                    fd->syntax);
    f->size = protobuf_c_message_get_packed_size(&fd->base);
    if (!(packed = arena_alloc(&c->scratch, f->size)))
        return nomem(c);
    protobuf_c_message_pack(&fd->base, packed);
    f->hash = fnv1a(packed, f->size);
    if ((old = file_named(s, f->name))) {
        if (old->hash == f->hash && old->size == f->size)
            return 0; /* the same file again: an import both sets carry */
        return fail(c, -EINVAL, NULL,
                    "differs from the file of that name "
                    "in %s",
                    old->set);
    }
    if (s->nfiles == PB_SCHEMA_FILES_MAX)
        return fail(c, -EFBIG, NULL, "more than %d files in all schemas",
                    PB_SCHEMA_FILES_MAX);
    if (fd->n_extension)
        return fail(c, -EINVAL,
                    fd->extension[0]->extendee ? fd->extension[0]->extendee + 1
                                               : "?",
                    "extended by field %s = %d (extensions are not "
                    "supported)",
                    fd->extension[0]->name ? fd->extension[0]->name : "?",
                    fd->extension[0]->number);
    if (fd->package && fd->package[0] && !dotted_ok(fd->package))
        return fail(c, -EINVAL, NULL, "package \"%.80s\" is not a valid name",
                    fd->package);
    if (!(f->package = arena_strdup(a, fd->package ? fd->package : "")))
        return nomem(c);
    for (size_t i = 0; i < fd->n_message_type; i++)
        if ((rc = build_message(c, f->package, fd->message_type[i])))
            return rc;
    for (size_t i = 0; i < fd->n_enum_type; i++)
        if ((rc = build_enum(c, f->package, fd->enum_type[i])))
            return rc;
    f->next = s->files;
    s->files = f;
    s->nfiles++;
    return 0;
}

/* 1 if the first bytes look like text: a .proto given for a .desc. */
static int looks_like_text(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n && i < 64; i++)
        if ((p[i] < 0x20 || p[i] > 0x7e) && p[i] != '\n' && p[i] != '\r' &&
            p[i] != '\t')
            return 0;
    return i > 0;
}

int pb_schema_add(struct pb_schema *s, const char *name, const void *buf,
                  size_t len, char *err, size_t errlen)
{
    struct ctx c = {.s = s, .err = err, .errlen = errlen};
    ProtobufCAllocator al = {pc_alloc, pc_free, &c.scratch};
    struct file *files = s->files;
    size_t nfiles = s->nfiles, ntypes = s->ntypes;
    SetPB *set;
    int rc;

    c.set = name;
    c.scratch.max = PB_SCHEMA_MEM_MAX;
    if (s->broken)
        return fail(&c, -EBUSY, NULL, "the schemas failed to link before");
    if (len > PB_SCHEMA_INPUT_MAX)
        return fail(&c, -EFBIG, NULL,
                    "%zu bytes, more than the %u MiB a "
                    "descriptor set may have",
                    len, PB_SCHEMA_INPUT_MAX >> 20);
    if (!(c.set = arena_strdup(&s->mem, name)))
        return nomem(&c);
    rc = pb_schema_check_depth(
        &google__protobuf__file_descriptor_set__descriptor, buf, len,
        PB_SCHEMA_DEPTH_MAX);
    if (rc == -ELOOP)
        return fail(&c, -EINVAL, NULL, "types nested more than %d deep",
                    PB_SCHEMA_DEPTH_MAX);
    if (rc || !(set = (SetPB *)protobuf_c_message_unpack(
                    &google__protobuf__file_descriptor_set__descriptor, &al,
                    len, buf))) {
        if (c.scratch.over) {
            arena_fini(&c.scratch);
            return nomem(&c);
        }
        arena_fini(&c.scratch);
        if (looks_like_text(buf, len))
            return fail(&c, -EINVAL, NULL,
                        "not a descriptor set but text (a .proto file? make "
                        "one with: protoc --include_imports "
                        "--descriptor_set_out=FILE.desc FILE.proto)");
        return fail(&c, -EINVAL, NULL,
                    "not a descriptor set (truncated or "
                    "not protobuf)");
    }
    if (set->base.n_unknown_fields)
        rc = fail(&c, -EINVAL, NULL, "not a descriptor set (unknown fields)");
    else if (!set->n_file)
        rc = fail(&c, -EINVAL, NULL, "not a descriptor set (no files)");
    for (size_t i = 0; !rc && i < set->n_file; i++)
        rc = add_proto_file(&c, set->file[i]);
    arena_fini(&c.scratch);
    if (rc) { /* as it was; what the arena got stays until the free */
        s->files = files;
        s->nfiles = nfiles;
        s->ntypes = ntypes;
    }
    return rc;
}

int pb_schema_add_file(struct pb_schema *s, const char *path, char *err,
                       size_t errlen)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    if (fd < 0 || fstat(fd, &st)) {
        rc = -errno;
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        goto fail;
    }
    if (!(buf = malloc(PB_SCHEMA_INPUT_MAX + 1u))) {
        rc = -ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, PB_SCHEMA_INPUT_MAX + 1u - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0 || (n += (size_t)r) > PB_SCHEMA_INPUT_MAX)
            break;
    }
    close(fd);
    rc = pb_schema_add(s, path, buf, n, err, errlen);
    free(buf);
    return rc;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

/* ---- link -----------------------------------------------------------------
 */

static int rtype_by_name(const void *a, const void *b)
{
    return strcmp(((const struct rtype *)a)->pub.name,
                  ((const struct rtype *)b)->pub.name);
}

static struct rtype *find(const struct pb_schema *s, size_t n, const char *name)
{
    struct rtype key = {.pub.name = name};
    if (!n)
        return NULL;
    return bsearch(&key, s->types, n, sizeof key, rtype_by_name);
}

static int link_fields(struct ctx *c, struct rtype *t)
{
    struct msgb *mb = t->mb;
    c->file = t->file;
    c->set = t->file->set;
    for (unsigned i = 0; i < mb->d.n_fields; i++) {
        ProtobufCFieldDescriptor *fd = &mb->fields[i];
        const struct pb_schema_field *fi = &mb->finfo[i];
        const struct rtype *to;
        int want_msg = fd->type == PROTOBUF_C_TYPE_MESSAGE;
        const ProtobufCEnumValue *ev;
        if (!fi->type_name)
            continue;
        if (!(to = find(c->s, c->s->ntypes, fi->type_name)))
            return fail(c, -EINVAL, t->pub.name,
                        "field %s = %u: unknown type %s", fd->name, fd->id,
                        fi->type_name);
        if (want_msg != (to->mb != NULL))
            return fail(c, -EINVAL, t->pub.name, "field %s = %u: %s is not %s",
                        fd->name, fd->id, fi->type_name,
                        want_msg ? "a message" : "an enum");
        fd->descriptor =
            want_msg ? (const void *)&to->mb->d : (const void *)&to->eb->d;
        if (want_msg)
            continue;
        if (fi->default_text) {
            ev = protobuf_c_enum_descriptor_get_value_by_name(&to->eb->d,
                                                              fi->default_text);
            if (!ev)
                return fail(c, -EINVAL, t->pub.name,
                            "field %s = %u: default %s is not a value of %s",
                            fd->name, fd->id, fi->default_text, fi->type_name);
            if (fi->oneof < 0) /* see field() */
                fd->default_value = &ev->value;
        } else if (mb->info.syntax == 2 &&
                   fd->label == PROTOBUF_C_LABEL_OPTIONAL &&
                   !(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   to->eb->first != 0) {
            /* protoc-c's __init gives the value declared first */
            ev =
                protobuf_c_enum_descriptor_get_value(&to->eb->d, to->eb->first);
            fd->default_value = &ev->value;
        }
    }
    return 0;
}

int pb_schema_link(struct pb_schema *s, char *err, size_t errlen)
{
    struct ctx c = {.s = s, .err = err, .errlen = errlen, .set = "schemas"};
    int rc;
    if (s->broken)
        return fail(&c, -EBUSY, NULL, "the schemas failed to link before");
    s->broken = 1; /* until this link is through */
    qsort(s->types, s->ntypes, sizeof *s->types, rtype_by_name);
    for (size_t i = 1; i < s->ntypes; i++) {
        const struct rtype *a = &s->types[i - 1], *b = &s->types[i];
        if (strcmp(a->pub.name, b->pub.name))
            continue;
        c.file = b->file;
        c.set = b->file->set;
        return fail(&c, -EINVAL, b->pub.name, "defined again (first in %s: %s)",
                    a->file->set, a->file->name);
    }
    for (size_t i = 0; i < s->ntypes; i++) /* again for old ones: the same */
        if (s->types[i].mb && (rc = link_fields(&c, &s->types[i])))
            return rc;
    s->nlinked = s->ntypes;
    s->broken = 0;
    return 0;
}

/* ---- lookups ------------------------------------------------------------- */

const ProtobufCMessageDescriptor *pb_schema_message(const struct pb_schema *s,
                                                    const char *name)
{
    const struct rtype *t = name ? find(s, s->nlinked, name) : NULL;
    return t ? t->pub.msg : NULL;
}

const ProtobufCEnumDescriptor *pb_schema_enum(const struct pb_schema *s,
                                              const char *name)
{
    const struct rtype *t = name ? find(s, s->nlinked, name) : NULL;
    return t ? t->pub.enm : NULL;
}

size_t pb_schema_count(const struct pb_schema *s)
{
    return s->nlinked;
}

const struct pb_schema_type *pb_schema_type_at(const struct pb_schema *s,
                                               size_t i)
{
    return i < s->nlinked ? &s->types[i].pub : NULL;
}

const struct pb_schema_msg *
pb_schema_msg_info(const ProtobufCMessageDescriptor *d)
{
    const struct pb_schema_msg *info = d ? d->reserved1 : NULL;
    return info && info->desc == d ? info : NULL;
}

/* ---- show ---------------------------------------------------------------- */

struct out {
    char *p;
    size_t len, cap;
};

static void outf(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(o->len < o->cap ? o->p + o->len : NULL,
                  o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static const char *type_text(const ProtobufCFieldDescriptor *f,
                             const struct pb_schema_field *fi)
{
    return fi && fi->type_name ? fi->type_name : pc_type_name(f->type);
}

/* A default as it would be written in a .proto: strings quoted and
 * escaped, bytes quoted (the set has them escaped already). */
static void show_default(struct out *o, ProtobufCType t, const char *text)
{
    if (t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES) {
        outf(o, "%s", text);
        return;
    }
    outf(o, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (t == PROTOBUF_C_TYPE_BYTES ||
            (*p >= 0x20 && *p != 0x7f && *p != '"' && *p != '\\'))
            outf(o, "%c", *p);
        else if (*p == '"' || *p == '\\')
            outf(o, "\\%c", *p);
        else
            outf(o, "\\%03o", *p);
    }
    outf(o, "\"");
}

static void show_field(struct out *o, const struct pb_schema_msg *info,
                       unsigned i, const char *indent)
{
    const ProtobufCFieldDescriptor *f = &info->desc->fields[i];
    const struct pb_schema_field *fi = &info->fields[i];
    const struct pb_schema_msg *e = f->type == PROTOBUF_C_TYPE_MESSAGE
                                        ? pb_schema_msg_info(f->descriptor)
                                        : NULL;
    const char *label = "", *sep = " [";
    char derived[IDENT_MAX + 1];

    if (e && e->map_entry && f->label == PROTOBUF_C_LABEL_REPEATED) {
        outf(o, "%smap<%s, %s> %s = %u;\n", indent,
             type_text(&e->desc->fields[0], &e->fields[0]),
             type_text(&e->desc->fields[1], &e->fields[1]), f->name, f->id);
        return;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        label = "repeated ";
    else if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        label = "required ";
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && fi->oneof < 0)
        label = "optional ";
    outf(o, "%s%s%s %s = %u", indent, label, type_text(f, fi), f->name, f->id);
    if (fi->default_text) {
        outf(o, "%sdefault = ", sep);
        show_default(o, f->type, fi->default_text);
        sep = ", ";
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED && packable(f->type) &&
        !(f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) != (info->syntax == 2)) {
        outf(o, "%spacked = %s", sep,
             f->flags & PROTOBUF_C_FIELD_FLAG_PACKED ? "true" : "false");
        sep = ", ";
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_DEPRECATED) {
        outf(o, "%sdeprecated = true", sep);
        sep = ", ";
    }
    camel_into(f->name, 0, derived); /* names are checked identifiers */
    if (strcmp(derived, fi->json_name)) {
        outf(o, "%sjson_name = \"%s\"", sep, fi->json_name);
        sep = ", ";
    }
    outf(o, "%s;\n", sep[0] == ',' ? "]" : "");
}

static void show_message(struct out *o, const struct pb_schema_msg *info)
{
    const ProtobufCMessageDescriptor *d = info->desc;
    outf(o, "// %s (proto%d)%s\nmessage %s {\n", info->file, info->syntax,
         info->map_entry ? ", the entry type of a map field" : "", d->name);
    for (unsigned i = 0; i < d->n_fields; i++) {
        int k = info->fields[i].oneof, first = 1;
        if (k < 0) {
            show_field(o, info, i, "  ");
            continue;
        }
        for (unsigned j = 0; j < i; j++)
            first &= info->fields[j].oneof != k;
        if (!first)
            continue;
        outf(o, "  oneof %s {\n", info->oneofs[k]);
        for (unsigned j = i; j < d->n_fields; j++)
            if (info->fields[j].oneof == k)
                show_field(o, info, j, "    ");
        outf(o, "  }\n");
    }
    outf(o, "}\n");
}

static void show_enum(struct out *o, const struct rtype *t)
{
    const ProtobufCEnumDescriptor *d = t->pub.enm;
    outf(o, "// %s (proto%d)\nenum %s {\n", t->file->name, t->file->syntax,
         d->name);
    for (unsigned i = 0; i < d->n_values; i++)
        for (unsigned j = 0; j < d->n_value_names; j++)
            if (d->values_by_name[j].index == i)
                outf(o, "  %s = %d;\n", d->values_by_name[j].name,
                     d->values[i].value);
    outf(o, "}\n");
}

int pb_schema_show(const struct pb_schema *s, const char *name, char *buf,
                   size_t cap, size_t *len)
{
    const struct rtype *t = name ? find(s, s->nlinked, name) : NULL;
    struct out o = {buf, 0, cap};
    if (cap)
        buf[0] = '\0';
    *len = 0;
    if (!t)
        return -ENOENT;
    if (t->mb)
        show_message(&o, &t->mb->info);
    else
        show_enum(&o, t);
    *len = o.len;
    return o.len < cap ? 0 : -ENOSPC;
}

/* ---- messages -------------------------------------------------------------
 */

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

/* A varint at p (at most n bytes): its length, or 0 if broken. */
static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80))
            return i + 1;
    }
    return 0;
}

int pb_schema_check_depth(const ProtobufCMessageDescriptor *d, const void *buf,
                          size_t len, unsigned max_depth)
{
    const uint8_t *p = buf;
    if (max_depth == 0)
        return -ELOOP;
    while (len) {
        uint64_t key, v;
        size_t n = varint(p, len, &key), m = 0;
        const ProtobufCFieldDescriptor *f = NULL;
        int rc;
        if (!n)
            return -EBADMSG;
        p += n;
        len -= n;
        switch (key & 7) {
        case 0:
            m = varint(p, len, &v);
            break;
        case 1:
            m = len >= 8 ? 8 : 0;
            break;
        case 5:
            m = len >= 4 ? 4 : 0;
            break;
        case 2:
            if (!(n = varint(p, len, &v)) || v > len - n)
                return -EBADMSG;
            m = n + (size_t)v;
            if ((key >> 3) <= NUMBER_MAX)
                f = protobuf_c_message_descriptor_get_field(
                    d, (unsigned)(key >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                (rc = pb_schema_check_depth(f->descriptor, p + n, (size_t)v,
                                            max_depth - 1)))
                return rc;
            break;
        }
        if (!m)
            return -EBADMSG;
        p += m;
        len -= m;
    }
    return 0;
}
