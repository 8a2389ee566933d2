/*
 * pb_schema_int.h — private to pb_schema*.c: the registry's insides, shared
 * by pb_schema.c (registry, sets and files, link, lookups),
 * pb_schema_build.c (one message or enum → its protobuf-c descriptor) and
 * pb_schema_text.c (show, the depth check). Nothing else includes it.
 */
#ifndef MQTT2KAFKA_PB_SCHEMA_INT_H
#define MQTT2KAFKA_PB_SCHEMA_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/pb_schema.h"
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

/* ---- the arena: bump allocation, freed all at once, capped --------------- */

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

static inline void *arena_alloc(struct arena *a, size_t n)
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

static inline void *arena_zalloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

static inline char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static inline char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

static inline void arena_fini(struct arena *a)
{
    while (a->head) {
        struct chunk *c = a->head;
        a->head = c->next;
        free(c);
    }
    a->total = 0;
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
    ProtobufCMessageDescriptor d; /* first: a descriptor is its msgb */
    struct pb_schema_msg info;
    ProtobufCFieldDescriptor *fields;
    struct pb_schema_field *finfo;
    int state; /* pb_schema_link()'s walk: 0 new, 1 on the stack, 2 done */
};

struct enumb {
    ProtobufCEnumDescriptor d;
    const int *first; /* the value declared first: a proto2 field's
                         default (not looked up by number: protobuf-c's
                         range lookup cannot find INT32_MAX) */
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
    int broken;     /* a link failed */
    unsigned flags; /* PB_SCHEMA_STRING_BYTES */
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
int pb_schema_fail(struct ctx *c, int rc, const char *type, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
/* -EFBIG past PB_SCHEMA_MEM_MAX, else -ENOMEM, with the error. */
int pb_schema_nomem(struct ctx *c);

/* pb_schema_build.c: message m (or enum e), nested in scope (the package
 * or the enclosing message's full name), into the registry's arena and its
 * types: 0 or an error through pb_schema_fail(). */
int pb_schema_build_message(struct ctx *c, const char *scope, const MsgPB *m,
                            const struct pb_schema_msg *outer, unsigned index);
int pb_schema_build_enum(struct ctx *c, const char *scope, const EnumPB *e);

/* "int32", "string", ... for a field type. */
const char *pb_schema_scalar_name(ProtobufCType t);

/* ---- names --------------------------------------------------------------- */

static inline int ident_ok(const char *s)
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
static inline int dotted_ok(const char *s)
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

static inline char *join(struct arena *a, const char *scope, const char *name)
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

/* s without '_', the letter after one upper case (and the first letter
 * too when up): protoc-c's short_name, protobuf's json_name. out has room
 * for strlen(s) + 1. */
static inline void camel_into(const char *s, int up, char *out)
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

/* An `extend` of google.protobuf.FileOptions, MessageOptions, ...: a
 * custom option, which only annotates the schema. */
static inline int custom_option(const char *extendee)
{
    static const char pfx[] = ".google.protobuf.";
    size_t n = extendee ? strlen(extendee) : 0;
    return n > sizeof pfx + 6 && !strncmp(extendee, pfx, sizeof pfx - 1) &&
           !strcmp(extendee + n - 7, "Options");
}

static inline int packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
           t != PROTOBUF_C_TYPE_MESSAGE;
}

#endif
