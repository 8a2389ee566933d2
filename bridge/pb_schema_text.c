/*
 * pb_schema_text.c — a loaded type as .proto-like text (`schema show`), and
 * the nesting check protobuf-c's unpack needs before a recursive type (see
 * pb_schema.h). Reads descriptors only; works for compiled ones too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bridge/pb_schema_int.h"

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
    if (fi && fi->string)
        return "string";
    return fi && fi->type_name ? fi->type_name : pb_schema_scalar_name(f->type);
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
        show_default(o, fi->string ? PROTOBUF_C_TYPE_STRING : f->type,
                     fi->default_text);
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

static void show_enum(struct out *o, const struct pb_schema_type *t)
{
    const ProtobufCEnumDescriptor *d = t->enm;
    outf(o, "// %s (proto%d)\nenum %s {\n", t->file, t->syntax, d->name);
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
    const struct pb_schema_type *t = pb_schema_find(s, name);
    struct out o = {buf, 0, cap};
    if (cap)
        buf[0] = '\0';
    *len = 0;
    if (!t)
        return -ENOENT;
    if (t->msg)
        show_message(&o, pb_schema_msg_info(t->msg));
    else
        show_enum(&o, t);
    *len = o.len;
    return o.len < cap ? 0 : -ENOSPC;
}

/* ---- nesting ------------------------------------------------------------- */

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
