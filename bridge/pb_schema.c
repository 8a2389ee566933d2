/*
 * pb_schema.c — FileDescriptorSets → protobuf-c descriptors at run time
 * (see pb_schema.h): the registry, sets and files, the link, lookups.
 * pb_schema_build.c makes each message's and enum's descriptor;
 * pb_schema_text.c prints them and checks nesting. Depends on protobuf-c
 * and the code protoc-c generates from Debian's
 * google/protobuf/descriptor.proto, nothing of the bridge; no I/O but
 * pb_schema_add_file()'s read.
 *
 * A set goes in three steps:
 *  1. pb_schema_add(): a depth check (protobuf-c's unpack recurses), then
 *     protobuf-c unpacks the set into a scratch arena dropped at the end.
 *  2. Each file is checked (its name seen before: the same content is
 *     skipped, other content refused; syntax; extensions), and each message
 *     and enum gets its descriptor in the registry's arena, type references
 *     kept as names. An add that fails leaves the registry as it was (what
 *     it allocated stays in the arena until the free).
 *  3. pb_schema_link(): all types sorted by name, a name defined twice
 *     refused, every message and enum field pointed at its type, enum
 *     defaults resolved, recursive types marked.
 *
 * Invariants: a registry's strings and descriptors live in its arena and
 * never move; the types array (malloc'd) is sorted by name up to nlinked.
 */
#include "bridge/pb_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/pb_schema_int.h"

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

int pb_schema_fail(struct ctx *c, int rc, const char *type, const char *fmt,
                   ...)
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

int pb_schema_nomem(struct ctx *c)
{
    if (c->s->mem.over || c->scratch.over)
        return pb_schema_fail(c, -EFBIG, NULL,
                              "the schemas need more than %u MiB in memory",
                              PB_SCHEMA_MEM_MAX >> 20);
    return pb_schema_fail(c, -ENOMEM, NULL, "out of memory");
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

void pb_schema_set_flags(struct pb_schema *s, unsigned flags)
{
    s->flags = flags;
}

void pb_schema_free(struct pb_schema *s)
{
    if (!s)
        return;
    arena_fini(&s->mem);
    free(s->types);
    free(s);
}

/* ---- sets and files ------------------------------------------------------ */

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
        return pb_schema_fail(c, -EINVAL, NULL, "a file without a valid name");
    if (!(f = arena_zalloc(a, sizeof *f)) ||
        !(f->name = arena_strdup(a, fd->name)))
        return pb_schema_nomem(c);
    f->set = c->set;
    c->file = f;
    if (!fd->syntax || !fd->syntax[0] || !strcmp(fd->syntax, "proto2"))
        f->syntax = 2;
    else if (!strcmp(fd->syntax, "proto3"))
        f->syntax = 3;
    else if (!strcmp(fd->syntax, "editions"))
        return pb_schema_fail(
            c, -EINVAL, first_type(c, fd),
            "editions are not supported (syntax \"editions\"; "
            "write the file as proto2 or proto3)");
    else
        return pb_schema_fail(c, -EINVAL, first_type(c, fd),
                              "unknown syntax \"%.40s\"", fd->syntax);
    f->size = protobuf_c_message_get_packed_size(&fd->base);
    if (!(packed = arena_alloc(&c->scratch, f->size)))
        return pb_schema_nomem(c);
    protobuf_c_message_pack(&fd->base, packed);
    f->hash = fnv1a(packed, f->size);
    if ((old = file_named(s, f->name))) {
        if (old->hash == f->hash && old->size == f->size)
            return 0; /* the same file again: an import both sets carry */
        return pb_schema_fail(c, -EINVAL, NULL,
                              "differs from the file of that name "
                              "in %s",
                              old->set);
    }
    if (s->nfiles == PB_SCHEMA_FILES_MAX)
        return pb_schema_fail(c, -EFBIG, NULL,
                              "more than %d files in all schemas",
                              PB_SCHEMA_FILES_MAX);
    for (size_t i = 0; i < fd->n_extension; i++)
        if (!custom_option(fd->extension[i]->extendee))
            return pb_schema_fail(
                c, -EINVAL,
                fd->extension[i]->extendee ? fd->extension[i]->extendee + 1
                                           : "?",
                "extended by field %s = %d (extensions are not "
                "supported)",
                fd->extension[i]->name ? fd->extension[i]->name : "?",
                fd->extension[i]->number);
    if (fd->package && fd->package[0] && !dotted_ok(fd->package))
        return pb_schema_fail(c, -EINVAL, NULL,
                              "package \"%.80s\" is not a valid name",
                              fd->package);
    if (!(f->package = arena_strdup(a, fd->package ? fd->package : "")))
        return pb_schema_nomem(c);
    for (size_t i = 0; i < fd->n_message_type; i++)
        if ((rc = pb_schema_build_message(c, f->package, fd->message_type[i],
                                          NULL, (unsigned)i)))
            return rc;
    for (size_t i = 0; i < fd->n_enum_type; i++)
        if ((rc = pb_schema_build_enum(c, f->package, fd->enum_type[i])))
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
        return pb_schema_fail(&c, -EBUSY, NULL,
                              "the schemas failed to link before");
    if (len > PB_SCHEMA_INPUT_MAX)
        return pb_schema_fail(&c, -EFBIG, NULL,
                              "%zu bytes, more than the %u MiB a "
                              "descriptor set may have",
                              len, PB_SCHEMA_INPUT_MAX >> 20);
    if (!(c.set = arena_strdup(&s->mem, name)))
        return pb_schema_nomem(&c);
    rc = pb_schema_check_depth(
        &google__protobuf__file_descriptor_set__descriptor, buf, len,
        PB_SCHEMA_DEPTH_MAX);
    if (rc == -ELOOP)
        return pb_schema_fail(&c, -EINVAL, NULL,
                              "types nested more than %d deep",
                              PB_SCHEMA_DEPTH_MAX);
    if (rc || !(set = (SetPB *)protobuf_c_message_unpack(
                    &google__protobuf__file_descriptor_set__descriptor, &al,
                    len, buf))) {
        if (c.scratch.over) {
            arena_fini(&c.scratch);
            return pb_schema_nomem(&c);
        }
        arena_fini(&c.scratch);
        if (looks_like_text(buf, len))
            return pb_schema_fail(
                &c, -EINVAL, NULL,
                "not a descriptor set but text (a .proto file? make "
                "one with: protoc --include_imports "
                "--descriptor_set_out=FILE.desc FILE.proto)");
        return pb_schema_fail(&c, -EINVAL, NULL,
                              "not a descriptor set (truncated or "
                              "not protobuf)");
    }
    if (set->base.n_unknown_fields)
        rc = pb_schema_fail(&c, -EINVAL, NULL,
                            "not a descriptor set (unknown fields)");
    else if (!set->n_file)
        rc = pb_schema_fail(&c, -EINVAL, NULL,
                            "not a descriptor set (no files)");
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

/* ---- link ---------------------------------------------------------------- */

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
            return pb_schema_fail(c, -EINVAL, t->pub.name,
                                  "field %s = %u: unknown type %s", fd->name,
                                  fd->id, fi->type_name);
        if (want_msg != (to->mb != NULL))
            return pb_schema_fail(c, -EINVAL, t->pub.name,
                                  "field %s = %u: %s is not %s", fd->name,
                                  fd->id, fi->type_name,
                                  want_msg ? "a message" : "an enum");
        fd->descriptor =
            want_msg ? (const void *)&to->mb->d : (const void *)&to->eb->d;
        if (want_msg)
            continue;
        if (fi->default_text) {
            ev = protobuf_c_enum_descriptor_get_value_by_name(&to->eb->d,
                                                              fi->default_text);
            if (!ev)
                return pb_schema_fail(
                    c, -EINVAL, t->pub.name,
                    "field %s = %u: default %s is not a value of %s", fd->name,
                    fd->id, fi->default_text, fi->type_name);
            if (fi->oneof < 0) /* see field() */
                fd->default_value = &ev->value;
        } else if (mb->info.syntax == 2 &&
                   fd->label == PROTOBUF_C_LABEL_OPTIONAL &&
                   !(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   *to->eb->first != 0) {
            /* protoc-c's __init gives the value declared first */
            fd->default_value = to->eb->first;
        }
    }
    return 0;
}

/* Marks the message types that reach a type containing itself: a DFS
 * without recursion (the chain of types can be as long as there are
 * types). An edge back to a type on the stack closes a cycle; what reaches
 * a marked type is marked when its frame is popped. */
static int mark_recursive(struct pb_schema *s)
{
    struct frame {
        struct msgb *mb;
        unsigned next; /* the field to look at next */
    } *st = malloc((s->ntypes + 1) * sizeof *st);
    size_t top;
    if (!st)
        return -ENOMEM;
    for (size_t i = 0; i < s->ntypes; i++)
        if (s->types[i].mb) {
            s->types[i].mb->state = 0;
            s->types[i].mb->info.recursive = 0;
        }
    for (size_t i = 0; i < s->ntypes; i++) {
        if (!s->types[i].mb || s->types[i].mb->state)
            continue;
        st[0] = (struct frame){s->types[i].mb, 0};
        st[0].mb->state = 1;
        for (top = 1; top;) {
            struct frame *f = &st[top - 1];
            const ProtobufCFieldDescriptor *fd;
            struct msgb *to;
            if (f->next == f->mb->d.n_fields) {
                f->mb->state = 2;
                if (--top && f->mb->info.recursive)
                    st[top - 1].mb->info.recursive = 1;
                continue;
            }
            fd = &f->mb->fields[f->next++];
            if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
                continue;
            to = (struct msgb *)(uintptr_t)fd->descriptor; /* d is first */
            if (to->state == 1)
                f->mb->info.recursive = 1;
            else if (to->state == 2)
                f->mb->info.recursive |= to->info.recursive;
            else {
                to->state = 1;
                st[top++] = (struct frame){to, 0};
            }
        }
    }
    free(st);
    return 0;
}

int pb_schema_link(struct pb_schema *s, char *err, size_t errlen)
{
    struct ctx c = {.s = s, .err = err, .errlen = errlen, .set = "schemas"};
    int rc;
    if (s->broken)
        return pb_schema_fail(&c, -EBUSY, NULL,
                              "the schemas failed to link before");
    s->broken = 1; /* until this link is through */
    if (s->ntypes) /* a set may define no types at all */
        qsort(s->types, s->ntypes, sizeof *s->types, rtype_by_name);
    for (size_t i = 1; i < s->ntypes; i++) {
        const struct rtype *a = &s->types[i - 1], *b = &s->types[i];
        if (strcmp(a->pub.name, b->pub.name))
            continue;
        c.file = b->file;
        c.set = b->file->set;
        return pb_schema_fail(&c, -EINVAL, b->pub.name,
                              "defined again (first in %s: %s)", a->file->set,
                              a->file->name);
    }
    for (size_t i = 0; i < s->ntypes; i++) /* again for old ones: the same */
        if (s->types[i].mb && (rc = link_fields(&c, &s->types[i])))
            return rc;
    if (mark_recursive(s))
        return pb_schema_nomem(&c);
    s->nlinked = s->ntypes;
    s->broken = 0;
    return 0;
}

/* ---- lookups ------------------------------------------------------------- */

const struct pb_schema_type *pb_schema_find(const struct pb_schema *s,
                                            const char *name)
{
    const struct rtype *t = name ? find(s, s->nlinked, name) : NULL;
    return t ? &t->pub : NULL;
}

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
