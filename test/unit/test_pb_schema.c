/*
 * test_pb_schema.c — protobuf schemas loaded at run time (pb_schema.c).
 *
 * The test schema (fixtures/schema/, proto2 and proto3 files importing
 * each other and the well-known types) is compiled two ways by the build:
 * into descriptor sets by protoc (build/schema/) and into C by
 * protoc-c. The descriptors built at run time must agree with protoc-c's
 * field by field — numbers, labels, types, flags, defaults, and the struct
 * layout — and payloads written by Python's protobuf
 * (fixtures/schema_cases.txt, from make_schema_fixtures.py) must unpack to
 * the same values and pack again to the same bytes either way. Then what
 * is refused, with the error a user sees.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acme/common/v1/device.pb-c.h"
#include "acme/common/v1/units.pb-c.h"
#include "acme/meter/v2/reading.pb-c.h"
#include "bridge/pb_schema.h"
#include "google/protobuf/descriptor.pb-c.h"

#ifndef FIXTURES
#define FIXTURES "test/unit/fixtures"
#endif
#ifndef SCHEMA_BUILD
#define SCHEMA_BUILD "build/schema"
#endif

typedef Acme__Meter__V2__Reading Reading;
typedef Acme__Common__V1__Device Device;

/* ---- reading and comparing messages ---------------------------------- */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A registry with the named sets (under SCHEMA_BUILD) added and linked. */
static struct pb_schema *load(const char *first, ...)
{
    struct pb_schema *s;
    char err[512], path[256];
    va_list ap;
    assert_int_equal(pb_schema_new(&s), 0);
    va_start(ap, first);
    for (const char *n = first; n; n = va_arg(ap, const char *)) {
        snprintf(path, sizeof path, "%s/%s", SCHEMA_BUILD, n);
        if (pb_schema_add_file(s, path, err, sizeof err))
            fail_msg("%s", err);
    }
    va_end(ap);
    if (pb_schema_link(s, err, sizeof err))
        fail_msg("%s", err);
    return s;
}

static size_t unhex(const char *h, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; h[0] && h[1] && n < cap; h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        out[n++] = (unsigned char)v;
    }
    return n;
}

static size_t elt_size(ProtobufCType t)
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

static const void *at(const ProtobufCMessage *m, unsigned off)
{
    return (const char *)m + off;
}

static void msg_equal(const ProtobufCMessage *a, const ProtobufCMessage *b,
                      const char *path);

/* One value of field fa in a and fb in b (at pa, pb) is the same. */
static void value_equal(const ProtobufCFieldDescriptor *f, const void *pa,
                        const void *pb, const char *path)
{
    const ProtobufCBinaryData *ba = pa, *bb = pb;
    const char *sa, *sb;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        sa = *(char *const *)pa;
        sb = *(char *const *)pb;
        if (!sa || !sb)
            assert_ptr_equal(sa, sb);
        else if (strcmp(sa, sb))
            fail_msg("%s.%s: \"%s\" != \"%s\"", path, f->name, sa, sb);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        assert_int_equal(ba->len, bb->len);
        if (ba->len)
            assert_memory_equal(ba->data, bb->data, ba->len);
        return;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!*(void *const *)pa || !*(void *const *)pb)
            assert_ptr_equal(*(void *const *)pa, *(void *const *)pb);
        else
            msg_equal(*(ProtobufCMessage *const *)pa,
                      *(ProtobufCMessage *const *)pb, f->name);
        return;
    default:
        if (memcmp(pa, pb, elt_size(f->type)))
            fail_msg("%s.%s differs", path, f->name);
    }
}

/* a (read with its descriptor) and b (with its own) hold the same values:
 * the two descriptors of one type, one built at run time, one compiled. */
static void msg_equal(const ProtobufCMessage *a, const ProtobufCMessage *b,
                      const char *path)
{
    const ProtobufCMessageDescriptor *da = a->descriptor, *db = b->descriptor;
    assert_string_equal(da->name, db->name);
    assert_int_equal(da->n_fields, db->n_fields);
    for (unsigned i = 0; i < da->n_fields; i++) {
        const ProtobufCFieldDescriptor *fa = &da->fields[i],
                                       *fb = &db->fields[i];
        const void *pa = at(a, fa->offset), *pb = at(b, fb->offset);
        assert_int_equal(fa->id, fb->id);
        if (fa->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca = *(const uint32_t *)at(a, fa->quantifier_offset);
            assert_int_equal(ca,
                             *(const uint32_t *)at(b, fb->quantifier_offset));
            if (ca != fa->id)
                continue;
        } else if (fa->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)at(a, fa->quantifier_offset);
            assert_int_equal(n, *(const size_t *)at(b, fb->quantifier_offset));
            for (size_t k = 0; k < n; k++)
                value_equal(fa, *(char *const *)pa + k * elt_size(fa->type),
                            *(char *const *)pb + k * elt_size(fa->type), path);
            continue;
        } else if (fa->quantifier_offset) {
            assert_int_equal(
                *(const protobuf_c_boolean *)at(a, fa->quantifier_offset),
                *(const protobuf_c_boolean *)at(b, fb->quantifier_offset));
        }
        value_equal(fa, pa, pb, path);
    }
    assert_int_equal(a->n_unknown_fields, b->n_unknown_fields);
    for (unsigned i = 0; i < a->n_unknown_fields; i++) {
        assert_int_equal(a->unknown_fields[i].tag, b->unknown_fields[i].tag);
        assert_int_equal(a->unknown_fields[i].len, b->unknown_fields[i].len);
        assert_memory_equal(a->unknown_fields[i].data,
                            b->unknown_fields[i].data,
                            a->unknown_fields[i].len);
    }
}

/* A field of a runtime message by name: its descriptor and member. */
static const void *member(const ProtobufCMessage *m, const char *name,
                          const ProtobufCFieldDescriptor **f)
{
    *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!*f)
        fail_msg("%s has no field %s", m->descriptor->name, name);
    return at(m, (*f)->offset);
}

static int has(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f;
    const void *p = member(m, name, &f);
    assert_int_equal(f->label, PROTOBUF_C_LABEL_OPTIONAL);
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)p != NULL &&
               *(void *const *)p != f->default_value;
    assert_int_not_equal(f->quantifier_offset, 0);
    return *(const protobuf_c_boolean *)at(m, f->quantifier_offset);
}

static int32_t get_i32(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f;
    return *(const int32_t *)member(m, name, &f);
}

static const char *get_str(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f;
    return *(char *const *)member(m, name, &f);
}

/* ---- descriptors against protoc-c's ----------------------------------- */

static void enum_equal(const ProtobufCEnumDescriptor *r,
                       const ProtobufCEnumDescriptor *c)
{
    assert_int_equal(r->magic, PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC);
    assert_string_equal(r->name, c->name);
    assert_string_equal(r->short_name, c->short_name);
    assert_string_equal(r->package_name, c->package_name);
    assert_int_equal(r->n_values, c->n_values);
    for (unsigned i = 0; i < c->n_values; i++) {
        assert_string_equal(r->values[i].name, c->values[i].name);
        assert_int_equal(r->values[i].value, c->values[i].value);
    }
    assert_int_equal(r->n_value_names, c->n_value_names);
    for (unsigned i = 0; i < c->n_value_names; i++) {
        assert_string_equal(r->values_by_name[i].name,
                            c->values_by_name[i].name);
        assert_int_equal(r->values_by_name[i].index,
                         c->values_by_name[i].index);
    }
    assert_int_equal(r->n_value_ranges, c->n_value_ranges);
    assert_memory_equal(r->value_ranges, c->value_ranges,
                        (c->n_value_ranges + 1) * sizeof *c->value_ranges);
}

/* f's default in r and c: the same value (and for proto3 strings the same
 * pointer, which protobuf-c compares with). */
static void default_equal(const char *msg, const ProtobufCFieldDescriptor *r,
                          const ProtobufCFieldDescriptor *c)
{
    const ProtobufCBinaryData *br = r->default_value, *bc = c->default_value;
    if (r->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        /* none for a oneof member: protobuf-c's generic init would write
         * it into the union (see pb_schema.h) */
        assert_null(r->default_value);
        return;
    }
    if (!c->default_value) {
        /* protoc-c's __init gives a proto2 enum field the value declared
         * first; the runtime descriptor says so with a default (its init
         * gives the same, checked in init_equal) */
        if (r->default_value && r->type == PROTOBUF_C_TYPE_ENUM &&
            r->label == PROTOBUF_C_LABEL_OPTIONAL) {
            const ProtobufCEnumDescriptor *e = r->descriptor;
            assert_non_null(protobuf_c_enum_descriptor_get_value(
                e, *(const int *)r->default_value));
            return;
        }
        if (r->default_value)
            fail_msg("%s.%s: a default protoc-c does not have", msg, r->name);
        return;
    }
    if (!r->default_value)
        fail_msg("%s.%s: no default", msg, r->name);
    switch (c->type) {
    case PROTOBUF_C_TYPE_STRING:
        assert_string_equal(r->default_value, c->default_value);
        if (c->default_value == (const void *)protobuf_c_empty_string)
            assert_ptr_equal(r->default_value, c->default_value);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        assert_int_equal(br->len, bc->len);
        assert_memory_equal(br->data, bc->data, bc->len);
        assert_non_null(br->data);
        break;
    default:
        if (memcmp(r->default_value, c->default_value, elt_size(c->type)))
            fail_msg("%s.%s: default differs", msg, r->name);
    }
}

/* A message initialised either way holds the same bytes (but the
 * descriptor pointer, and default strings and bytes, which are the same
 * text at other addresses): same layout, same defaults in place. */
static void init_equal(const ProtobufCMessageDescriptor *r,
                       const ProtobufCMessageDescriptor *c)
{
    unsigned char *mr = calloc(1, r->sizeof_message);
    unsigned char *mc = calloc(1, c->sizeof_message);
    size_t skip = sizeof(void *);
    assert_non_null(mr);
    assert_non_null(mc);
    c->message_init((ProtobufCMessage *)mc);
    pb_schema_message_init(r, (ProtobufCMessage *)mr);
    assert_ptr_equal(((ProtobufCMessage *)mr)->descriptor, r);
    for (unsigned i = 0; i < c->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &c->fields[i];
        unsigned char *pr = mr + f->offset, *pc = mc + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        if (f->type == PROTOBUF_C_TYPE_STRING && *(char **)pr && *(char **)pc) {
            assert_string_equal(*(char **)pr, *(char **)pc);
            memcpy(pr, pc, sizeof(char *));
        } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
            ProtobufCBinaryData *br = (void *)pr, *bc = (void *)pc;
            assert_int_equal(br->len, bc->len);
            if (br->len)
                assert_memory_equal(br->data, bc->data, br->len);
            memcpy(pr, pc, sizeof *bc);
        }
    }
    for (size_t i = skip; i < c->sizeof_message; i++)
        if (mr[i] != mc[i])
            fail_msg("%s: init differs at byte %zu", c->name, i);
    free(mr);
    free(mc);
}

static int seen(const void **list, size_t *n, const void *p)
{
    for (size_t i = 0; i < *n; i++)
        if (list[i] == p)
            return 1;
    list[(*n)++] = p;
    return 0;
}

/* The runtime descriptor of c's type agrees with c, and so on for every
 * type c reaches. */
static void message_equal(const struct pb_schema *s,
                          const ProtobufCMessageDescriptor *c,
                          const void **done, size_t *ndone, int *count)
{
    const ProtobufCMessageDescriptor *r = pb_schema_message(s, c->name);
    const struct pb_schema_msg *info;
    if (seen(done, ndone, c))
        return;
    (*count)++;
    if (!r)
        fail_msg("%s not loaded", c->name);
    info = pb_schema_msg_info(r);
    assert_non_null(info);
    assert_ptr_equal(info->desc, r);
    assert_int_equal(r->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    assert_string_equal(r->short_name, c->short_name);
    assert_string_equal(r->package_name, c->package_name);
    assert_null(r->message_init);
    if (r->sizeof_message != c->sizeof_message)
        fail_msg("%s: sizeof %zu, protoc-c %zu", c->name, r->sizeof_message,
                 c->sizeof_message);
    assert_int_equal(r->n_fields, c->n_fields);
    assert_int_equal(r->n_field_ranges, c->n_field_ranges);
    if (c->n_fields) {
        assert_memory_equal(r->fields_sorted_by_name, c->fields_sorted_by_name,
                            c->n_fields * sizeof(unsigned));
        assert_memory_equal(r->field_ranges, c->field_ranges,
                            (c->n_field_ranges + 1) * sizeof *c->field_ranges);
    }
    for (unsigned i = 0; i < c->n_fields; i++) {
        const ProtobufCFieldDescriptor *fr = &r->fields[i], *fc = &c->fields[i];
        assert_string_equal(fr->name, fc->name);
        assert_int_equal(fr->id, fc->id);
        assert_int_equal(fr->label, fc->label);
        assert_int_equal(fr->type, fc->type);
        if (fr->offset != fc->offset ||
            fr->quantifier_offset != fc->quantifier_offset)
            fail_msg("%s.%s: offset %u/%u, protoc-c %u/%u", c->name, fc->name,
                     fr->offset, fr->quantifier_offset, fc->offset,
                     fc->quantifier_offset);
        if (fr->flags != fc->flags)
            fail_msg("%s.%s: flags %#x, protoc-c %#x", c->name, fc->name,
                     fr->flags, fc->flags);
        default_equal(c->name, fr, fc);
        assert_non_null(info->fields[i].json_name);
        if (fc->type == PROTOBUF_C_TYPE_MESSAGE) {
            assert_string_equal(
                ((const ProtobufCMessageDescriptor *)fr->descriptor)->name,
                ((const ProtobufCMessageDescriptor *)fc->descriptor)->name);
            assert_ptr_equal(fr->descriptor,
                             pb_schema_message(s, info->fields[i].type_name));
            message_equal(s, fc->descriptor, done, ndone, count);
        } else if (fc->type == PROTOBUF_C_TYPE_ENUM) {
            assert_ptr_equal(fr->descriptor,
                             pb_schema_enum(s, info->fields[i].type_name));
            if (!seen(done, ndone, fc->descriptor)) {
                (*count)++;
                enum_equal(fr->descriptor, fc->descriptor);
            }
        } else {
            assert_null(fr->descriptor);
            assert_null(info->fields[i].type_name);
        }
    }
    init_equal(r, c);
}

static void descriptors_match_protoc_c(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    const void *done[256];
    size_t ndone = 0;
    int count = 0;
    (void)state;
    message_equal(s, &acme__meter__v2__batch__descriptor, done, &ndone, &count);
    message_equal(s, &acme__common__v1__device__descriptor, done, &ndone,
                  &count);
    /* Batch reaches Reading, Device, their nested types and map entries,
     * and the well-known types Reading uses, Struct/Value/ListValue too */
    assert_int_equal(count, 24); /* 19 messages, 5 enums */
    enum_equal(pb_schema_enum(s, "acme.common.v1.Region"),
               &acme__common__v1__region__descriptor);
    pb_schema_free(s);
}

/* ---- loading, lookups, side information ---------------------------- */

static void lookups_and_infos(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    const ProtobufCMessageDescriptor *r =
        pb_schema_message(s, "acme.meter.v2.Reading");
    const struct pb_schema_msg *info = pb_schema_msg_info(r), *e;
    const ProtobufCFieldDescriptor *f;
    size_t n = pb_schema_count(s), maps = 0;
    (void)state;

    assert_non_null(r);
    assert_null(pb_schema_message(s, ".acme.meter.v2.Reading"));
    assert_null(pb_schema_message(s, "acme.meter.v2"));
    assert_null(pb_schema_message(s, "acme.meter.v2.Reading.Status"));
    assert_non_null(pb_schema_enum(s, "acme.meter.v2.Reading.Status"));
    assert_null(pb_schema_enum(s, "acme.meter.v2.Reading"));
    assert_null(pb_schema_msg_info(&acme__meter__v2__reading__descriptor));
    assert_null(pb_schema_msg_info(NULL));

    /* every type, sorted by name, each exactly one of message and enum */
    assert_true(n > 30);
    for (size_t i = 0; i < n; i++) {
        const struct pb_schema_type *t = pb_schema_type_at(s, i);
        assert_true((t->msg != NULL) != (t->enm != NULL));
        if (i)
            assert_true(strcmp(pb_schema_type_at(s, i - 1)->name, t->name) < 0);
        if (t->msg)
            maps += pb_schema_msg_info(t->msg)->map_entry != 0;
    }
    assert_null(pb_schema_type_at(s, n));
    assert_int_equal(maps, 4); /* channels, labels, stamps, Struct.fields */

    assert_string_equal(info->file, "acme/meter/v2/reading.proto");
    assert_int_equal(info->syntax, 3);
    assert_int_equal(info->wkt, PB_SCHEMA_WKT_NONE);
    assert_int_equal(info->n_oneofs, 2);
    assert_string_equal(info->oneofs[0], "value");
    assert_string_equal(info->oneofs[1], "source");
    f = protobuf_c_message_descriptor_get_field_by_name(r, "custom");
    assert_string_equal(info->fields[f - r->fields].json_name, "customName");
    f = protobuf_c_message_descriptor_get_field_by_name(r, "any_value");
    assert_string_equal(info->fields[f - r->fields].json_name, "anyValue");
    assert_string_equal(info->fields[f - r->fields].type_name,
                        "google.protobuf.Value");
    f = protobuf_c_message_descriptor_get_field_by_name(r, "gateway");
    assert_int_equal(info->fields[f - r->fields].oneof, 1);
    f = protobuf_c_message_descriptor_get_field_by_name(r, "channels");
    e = pb_schema_msg_info(f->descriptor);
    assert_true(e->map_entry);
    assert_string_equal(e->desc->name, "acme.meter.v2.Reading.ChannelsEntry");

    static const struct {
        const char *name;
        enum pb_schema_wkt wkt;
    } wkts[] = {
        {"google.protobuf.Any", PB_SCHEMA_WKT_ANY},
        {"google.protobuf.Duration", PB_SCHEMA_WKT_DURATION},
        {"google.protobuf.Empty", PB_SCHEMA_WKT_EMPTY},
        {"google.protobuf.FieldMask", PB_SCHEMA_WKT_FIELD_MASK},
        {"google.protobuf.Struct", PB_SCHEMA_WKT_STRUCT},
        {"google.protobuf.Value", PB_SCHEMA_WKT_VALUE},
        {"google.protobuf.ListValue", PB_SCHEMA_WKT_LIST_VALUE},
        {"google.protobuf.Timestamp", PB_SCHEMA_WKT_TIMESTAMP},
        {"google.protobuf.DoubleValue", PB_SCHEMA_WKT_DOUBLE_VALUE},
        {"google.protobuf.FloatValue", PB_SCHEMA_WKT_FLOAT_VALUE},
        {"google.protobuf.Int64Value", PB_SCHEMA_WKT_INT64_VALUE},
        {"google.protobuf.UInt64Value", PB_SCHEMA_WKT_UINT64_VALUE},
        {"google.protobuf.Int32Value", PB_SCHEMA_WKT_INT32_VALUE},
        {"google.protobuf.UInt32Value", PB_SCHEMA_WKT_UINT32_VALUE},
        {"google.protobuf.BoolValue", PB_SCHEMA_WKT_BOOL_VALUE},
        {"google.protobuf.StringValue", PB_SCHEMA_WKT_STRING_VALUE},
        {"google.protobuf.BytesValue", PB_SCHEMA_WKT_BYTES_VALUE},
        {"google.protobuf.Struct.FieldsEntry", PB_SCHEMA_WKT_NONE},
        {"acme.common.v1.Device", PB_SCHEMA_WKT_NONE},
    };
    static const struct {
        const char *name;
        int recursive;
    } rec[] = {
        {"acme.meter.v2.Reading", 1},
        {"acme.meter.v2.Batch", 1},
        {"acme.meter.v2.Reading.Channel", 1},
        {"acme.common.v1.Device", 1},
        {"acme.meter.v2.Config", 1},
        {"google.protobuf.Struct", 1},
        {"google.protobuf.Value", 1},
        {"google.protobuf.ListValue", 1},
        {"acme.common.v1.Device.GeoPoint", 0},
        {"google.protobuf.Timestamp", 0},
        {"acme.meter.v2.Reading.StampsEntry", 0},
        {"acme.meter.v2.Reading.LabelsEntry", 0},
        {"acme.meter.v2.Reading.ChannelsEntry", 1},
    };
    for (size_t i = 0; i < sizeof rec / sizeof rec[0]; i++) {
        const struct pb_schema_type *t = pb_schema_find(s, rec[i].name);
        if (!t || !t->msg)
            fail_msg("%s not loaded", rec[i].name);
        if (pb_schema_msg_info(t->msg)->recursive != rec[i].recursive)
            fail_msg("%s: recursive %d", rec[i].name, !rec[i].recursive);
    }
    assert_int_equal(pb_schema_find(s, "acme.common.v1.Unit")->syntax, 3);
    assert_int_equal(pb_schema_find(s, "acme.common.v1.Region")->syntax, 2);
    assert_string_equal(pb_schema_find(s, "acme.common.v1.Region")->file,
                        "acme/common/v1/device.proto");
    assert_null(pb_schema_find(s, "acme.common.v1"));
    assert_null(pb_schema_find(s, NULL));

    for (size_t i = 0; i < sizeof wkts / sizeof wkts[0]; i++) {
        const ProtobufCMessageDescriptor *d =
            pb_schema_message(s, wkts[i].name);
        if (!d)
            fail_msg("%s not loaded", wkts[i].name);
        assert_int_equal(pb_schema_msg_info(d)->wkt, wkts[i].wkt);
    }
    pb_schema_free(s);
}

/* ---- payloads from Python's protobuf ------------------------------------ */

static const ProtobufCMessageDescriptor *compiled(const char *name)
{
    if (!strcmp(name, "acme.meter.v2.Reading"))
        return &acme__meter__v2__reading__descriptor;
    if (!strcmp(name, "acme.meter.v2.Batch"))
        return &acme__meter__v2__batch__descriptor;
    if (!strcmp(name, "acme.common.v1.Device"))
        return &acme__common__v1__device__descriptor;
    return NULL; /* Config: protoc-c 1.4 cannot compile proto3 optional */
}

/* What the Python script set in reading_full, read through protoc-c's
 * struct: the runtime layout is the compiled one. */
static void check_reading_full(const Reading *r)
{
    assert_string_equal(r->serial, "MTR-42");
    assert_int_equal(r->device->location_case,
                     ACME__COMMON__V1__DEVICE__LOCATION_SITE);
    assert_string_equal(r->device->site, "basement");
    assert_int_equal(r->device->revision, 7);
    assert_string_equal(r->device->model, "unknown \"model\""); /* default */
    assert_int_equal(r->n_samples, 4);
    assert_true(r->samples[0] == 1.5 && r->samples[3] == 1e300);
    assert_true(signbit(r->samples[2]));
    assert_int_equal(r->n_deltas, 4);
    assert_int_equal(r->deltas[3], INT32_MIN);
    assert_int_equal(r->n_channels, 2);
    assert_string_equal(r->channels[0]->key, "a");
    assert_string_equal(r->channels[0]->value->children[0]->children[0]->name,
                        "A1x");
    assert_string_equal(r->channels[1]->value->parent->serial, "inner");
    assert_int_equal(r->n_labels, 2);
    assert_int_equal(r->labels[0]->key, -7);
    assert_int_equal(r->value_case, ACME__METER__V2__READING__VALUE_READING);
    assert_true(r->reading == 230.5);
    assert_int_equal(r->status, ACME__METER__V2__READING__STATUS__FAILED);
    assert_int_equal(r->unit, ACME__COMMON__V1__UNIT__WATT);
    assert_int_equal(r->seq, -1);
    assert_true(r->f64 == UINT64_MAX);
    assert_int_equal(r->sf32, INT32_MIN);
    assert_true(r->flag);
    assert_true(r->temperature == -12.75f);
    assert_int_equal(r->u32, UINT32_MAX);
    assert_int_equal(r->n_units, 3);
    assert_int_equal(r->units[2], 99); /* proto3 enums are open */
    assert_int_equal(r->payload.len, 2);
    assert_int_equal(r->custom, -5);
    assert_int_equal(r->source_case, ACME__METER__V2__READING__SOURCE_GATEWAY);
    assert_string_equal(r->gateway, "gw-1");
    assert_string_equal(r->history[1]->history[0]->serial, "older");
    assert_int_equal(r->at->seconds, 1700000000);
    assert_int_equal(r->at->nanos, 123000000);
    assert_int_equal(r->period->nanos, -5);
    assert_non_null(r->limit);
    assert_true(r->limit->value == 0.0);
    assert_string_equal(r->detail->type_url,
                        "type.googleapis.com/acme.common.v1.Device");
    assert_int_equal(r->mask->n_paths, 2);
    assert_non_null(r->nothing);
    assert_int_equal(r->extra->n_fields, 3);
    assert_string_equal(r->extra->fields[1]->key, "b");
    assert_int_equal(r->extra->fields[1]->value->list_value->n_values, 4);
    assert_int_equal(r->count64->value, -3);
    assert_int_equal(r->n_stamps, 2);
    assert_int_equal(r->stamps[1]->value->nanos, 2);
}

/* Config has no compiled twin: read through the runtime descriptor. */
static void check_config(const char *name, const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f;
    if (!strcmp(name, "config_zeroes")) {
        /* explicit presence: set to zero is not unset */
        assert_true(has(m, "threshold"));
        assert_int_equal(get_i32(m, "threshold"), 0);
        assert_true(has(m, "label"));
        assert_string_equal(get_str(m, "label"), "");
        assert_true(has(m, "status") && has(m, "key") && has(m, "on") &&
                    has(m, "scale") && has(m, "device"));
        assert_int_equal(get_i32(m, "plain"), 0);
        assert_string_equal(get_str(m, "name"), "");
    } else if (!strcmp(name, "config_absent")) {
        assert_false(has(m, "threshold") || has(m, "label") ||
                     has(m, "status") || has(m, "key") || has(m, "on") ||
                     has(m, "scale") || has(m, "device"));
        assert_null(get_str(m, "label"));
        assert_int_equal(get_i32(m, "plain"), 5);
        member(m, "auto", &f);
        assert_int_equal(*(const uint32_t *)at(m, f->quantifier_offset), 5);
        assert_string_equal(get_str(m, "auto"), "");
    } else if (!strcmp(name, "config_values")) {
        assert_int_equal(get_i32(m, "threshold"), -7);
        assert_int_equal(get_i32(m, "status"), 2);
        assert_string_equal(get_str(m, "label"), "L");
        member(m, "fixed", &f);
        assert_int_equal(*(const uint32_t *)at(m, f->quantifier_offset), 4);
    }
}

static void python_payloads(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    FILE *f = fopen(FIXTURES "/schema_cases.txt", "r");
    char line[8192];
    unsigned char wire[4096], out1[4096], out2[4096];
    int cases = 0, configs = 0;
    (void)state;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *name = strtok(line, "\t"), *type = strtok(NULL, "\t");
        char *canon = strtok(NULL, "\t"), *hex = strtok(NULL, "\t");
        const ProtobufCMessageDescriptor *rd = pb_schema_message(s, type);
        const ProtobufCMessageDescriptor *cd = compiled(type);
        size_t n = unhex(hex ? hex : "", wire, sizeof wire), n1, n2;
        ProtobufCMessage *mr, *mc;
        assert_non_null(rd);
        assert_int_equal(pb_schema_check_depth(rd, wire, n, 64), 0);
        mr = protobuf_c_message_unpack(rd, NULL, n, wire);
        if (!mr)
            fail_msg("%s: the runtime descriptor does not unpack it", name);
        n1 = protobuf_c_message_pack(mr, out1);
        assert_int_equal(n1, protobuf_c_message_get_packed_size(mr));
        if (canon[0] == '1' && (n1 != n || memcmp(out1, wire, n)))
            fail_msg("%s: packed again differs from Python's bytes", name);
        if (cd) {
            mc = protobuf_c_message_unpack(cd, NULL, n, wire);
            assert_non_null(mc);
            msg_equal(mr, mc, name);
            n2 = protobuf_c_message_pack(mc, out2);
            if (n1 != n2 || memcmp(out1, out2, n1))
                fail_msg("%s: runtime and compiled pack differently", name);
            protobuf_c_message_free_unpacked(mc, NULL);
        } else {
            check_config(name, mr);
            configs++;
        }
        if (!strcmp(name, "reading_full"))
            check_reading_full((const Reading *)mr);
        if (!strcmp(name, "reading_unknown"))
            assert_int_equal(mr->n_unknown_fields, 1);
        protobuf_c_message_free_unpacked(mr, NULL);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 19);
    assert_int_equal(configs, 4);
    pb_schema_free(s);
}

/* proto2 defaults read back when the fields are not on the wire, and are
 * not written again (has_ stays 0). */
static void proto2_defaults(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    const ProtobufCMessageDescriptor *d =
        pb_schema_message(s, "acme.common.v1.Device");
    static const unsigned char wire[] = {0x0a, 0x01, 'x', 0xd8, 0x01, 0x05};
    unsigned char out[64];
    Device *m;
    (void)state;
    m = (Device *)protobuf_c_message_unpack(d, NULL, sizeof wire, wire);
    assert_non_null(m);
    assert_string_equal(m->serial, "x");
    assert_int_equal(m->revision, 5);
    assert_string_equal(m->model, "unknown \"model\"");
    assert_false(m->has_firmware);
    assert_int_equal(m->firmware, 7);
    assert_int_equal(m->kind, ACME__COMMON__V1__DEVICE__KIND__GATEWAY);
    assert_int_equal(m->kind_plain, ACME__COMMON__V1__DEVICE__KIND__SENSOR);
    assert_int_equal(m->secret.len, 5);
    assert_memory_equal(m->secret.data, "\001\002ab\377", 5);
    assert_true(m->scale == 1.5);
    assert_true(isinf(m->gain) && m->gain < 0);
    assert_true(m->ratio == 0.1f);
    assert_int_equal(m->offset, -42);
    assert_true(m->enabled);
    assert_true(m->big == INT64_MIN);
    assert_true(m->ubig == UINT64_MAX);
    assert_true(isnan(m->nan_value));
    assert_int_equal(m->delta, -3);
    assert_int_equal(m->level, INT32_MIN);
    assert_int_equal(m->count, UINT32_MAX);
    assert_int_equal(m->empty_blob.len, 0);
    assert_non_null(m->empty_blob.data);
    assert_int_equal(m->location_case,
                     ACME__COMMON__V1__DEVICE__LOCATION__NOT_SET);
    assert_int_equal(protobuf_c_message_pack(&m->base, out), sizeof wire);
    assert_memory_equal(out, wire, sizeof wire);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* a required field missing: refused, as with the compiled type */
    assert_null(protobuf_c_message_unpack(d, NULL, 3, wire));
    assert_null(protobuf_c_message_unpack(&acme__common__v1__device__descriptor,
                                          NULL, 3, wire));
    pb_schema_free(s);
}

/* A message made in C with a runtime type: proto3 optional at zero is
 * written, a plain proto3 field at zero is not. */
static void proto3_optional_pack(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    const ProtobufCMessageDescriptor *d =
        pb_schema_message(s, "acme.meter.v2.Config");
    const ProtobufCFieldDescriptor *f;
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    unsigned char out[64];
    (void)state;
    pb_schema_message_init(d, m);
    assert_int_equal(protobuf_c_message_get_packed_size(m), 0);
    f = protobuf_c_message_descriptor_get_field_by_name(d, "threshold");
    assert_int_equal(f->label, PROTOBUF_C_LABEL_OPTIONAL);
    *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    f = protobuf_c_message_descriptor_get_field_by_name(d, "plain");
    assert_int_equal(f->label, PROTOBUF_C_LABEL_NONE);
    f = protobuf_c_message_descriptor_get_field_by_name(d, "label");
    *(const char **)((char *)m + f->offset) = "";
    assert_int_equal(protobuf_c_message_pack(m, out), 4);
    assert_memory_equal(out, "\x08\x00\x1a\x00", 4);
    free(m);
    pb_schema_free(s);
}

/* ---- several sets, any order ----------------------------------------------
 */

static void sets_in_any_order(void **state)
{
    static const char *const orders[][4] = {
        {"meter.desc", "device.desc", "wkt.desc", NULL},
        {"wkt.desc", "meter.desc", "device.desc", NULL},
        {"all.desc", "device.desc", "wkt.desc", NULL}, /* files twice */
        {"device.desc", "all.desc", "all.desc", NULL},
    };
    static const unsigned char wire[] = {0x0a, 0x01, 'r',  0x12, 0x06, 0x0a,
                                         0x01, 'd',  0xd8, 0x01, 0x02};
    (void)state;
    for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++) {
        struct pb_schema *s =
            load(orders[i][0], orders[i][1], orders[i][2], NULL);
        const ProtobufCMessageDescriptor *d =
            pb_schema_message(s, "acme.meter.v2.Reading");
        Reading *r =
            (Reading *)protobuf_c_message_unpack(d, NULL, sizeof wire, wire);
        assert_non_null(r);
        assert_string_equal(r->device->serial, "d");
        assert_int_equal(r->device->revision, 2);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_non_null(pb_schema_message(s, "google.protobuf.Timestamp"));
        pb_schema_free(s);
    }
}

/* ---- refusals ----------------------------------------------------------- */

/* Adds buf as set "test.desc" and links; the error (of the add, or else of
 * the link) must contain want. */
static void refused(const void *buf, size_t len, const char *want, int rc)
{
    struct pb_schema *s;
    char err[512] = "";
    int got;
    assert_int_equal(pb_schema_new(&s), 0);
    got = pb_schema_add(s, "test.desc", buf, len, err, sizeof err);
    if (!got)
        got = pb_schema_link(s, err, sizeof err);
    if (got != rc || !strstr(err, want))
        fail_msg("rc %d (want %d), error \"%s\"; want \"%s\"", got, rc, err,
                 want);
    pb_schema_free(s);
}

static void refused_file(const char *name, const char *want)
{
    char path[256];
    size_t len;
    unsigned char *buf;
    snprintf(path, sizeof path, "%s/%s", SCHEMA_BUILD, name);
    buf = slurp(path, &len);
    refused(buf, len, want, -EINVAL);
    free(buf);
}

static void refuses_groups_and_extensions(void **state)
{
    (void)state;
    refused_file("bad-group.desc",
                 "test.desc: bad/group.proto: type acme.bad.Grouped: field "
                 "item = 2 is a group (groups are not supported: use a "
                 "nested message)");
    refused_file("bad-extend.desc",
                 "test.desc: bad/extend.proto: type acme.bad.Base: extended "
                 "by field more = 100 (extensions are not supported)");
    refused_file("bad-nested-extend.desc",
                 "test.desc: bad/nested-extend.proto: type acme.bad.Holder: "
                 "extends acme.bad.Open with field extra = 100 (extensions "
                 "are not supported)");
}

/* device.desc changed by fn, packed again, must be refused with want. */
static void mutated(void (*fn)(Google__Protobuf__FileDescriptorSet *),
                    const char *want)
{
    size_t len;
    unsigned char *buf = slurp(SCHEMA_BUILD "/device.desc", &len), *out;
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, len, buf);
    assert_non_null(set);
    fn(set);
    out = malloc(google__protobuf__file_descriptor_set__get_packed_size(set));
    assert_non_null(out);
    len = google__protobuf__file_descriptor_set__pack(set, out);
    refused(out, len, want, -EINVAL);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    free(out);
    free(buf);
}

static Google__Protobuf__FileDescriptorProto *
device_file(Google__Protobuf__FileDescriptorSet *set)
{
    for (size_t i = 0; i < set->n_file; i++)
        if (!strcmp(set->file[i]->name, "acme/common/v1/device.proto"))
            return set->file[i];
    fail_msg("no device.proto");
    return NULL;
}

/* The field of a message in device.proto with this name. */
static Google__Protobuf__FieldDescriptorProto *
device_field(Google__Protobuf__FileDescriptorSet *set, const char *name)
{
    Google__Protobuf__FileDescriptorProto *f = device_file(set);
    for (size_t i = 0; i < f->n_message_type; i++)
        for (size_t j = 0; j < f->message_type[i]->n_field; j++)
            if (!strcmp(f->message_type[i]->field[j]->name, name))
                return f->message_type[i]->field[j];
    fail_msg("no field %s", name);
    return NULL;
}

/* Sets *field (a string of an unpacked message) to a copy of s. */
static void set_str(char **field, const char *s)
{
    free(*field);
    *field = strdup(s);
    assert_non_null(*field);
}

static void to_editions(Google__Protobuf__FileDescriptorSet *set)
{
    set_str(&device_file(set)->syntax, "editions");
}

static void unknown_type(Google__Protobuf__FileDescriptorSet *set)
{
    set_str(&device_field(set, "parent")->type_name, ".acme.common.v1.Nope");
}

static void enum_as_message(Google__Protobuf__FileDescriptorSet *set)
{
    set_str(&device_field(set, "parent")->type_name, ".acme.common.v1.Region");
}

static void bad_enum_default(Google__Protobuf__FileDescriptorSet *set)
{
    set_str(&device_field(set, "kind")->default_value, "NOPE");
}

static void bad_default(Google__Protobuf__FileDescriptorSet *set)
{
    set_str(&device_field(set, "firmware")->default_value, "-1");
}

static void same_number(Google__Protobuf__FileDescriptorSet *set)
{
    device_field(set, "model")->number = 1;
}

static void group_type(Google__Protobuf__FileDescriptorSet *set)
{
    device_field(set, "parent")->type =
        GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP;
}

/* An enum whose first value is INT32_MAX (protobuf-c's number lookup
 * cannot find it) still gives a proto2 field its default. */
static void enum_first_value_max(void **state)
{
    size_t len;
    unsigned char *buf = slurp(SCHEMA_BUILD "/device.desc", &len), *out;
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, len, buf);
    Google__Protobuf__FileDescriptorProto *f = device_file(set);
    struct pb_schema *s;
    char err[512];
    const ProtobufCFieldDescriptor *fd;
    (void)state;
    f->message_type[0]->enum_type[0]->value[0]->number = INT32_MAX;
    out = malloc(google__protobuf__file_descriptor_set__get_packed_size(set));
    assert_non_null(out);
    len = google__protobuf__file_descriptor_set__pack(set, out);
    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(pb_schema_add(s, "max.desc", out, len, err, sizeof err),
                     0);
    if (pb_schema_link(s, err, sizeof err))
        fail_msg("%s", err);
    fd = protobuf_c_message_descriptor_get_field_by_name(
        pb_schema_message(s, "acme.common.v1.Device"), "kind_plain");
    assert_non_null(fd->default_value);
    assert_int_equal(*(const int *)fd->default_value, INT32_MAX);
    pb_schema_free(s);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    free(out);
    free(buf);
}

static void refuses_malformed(void **state)
{
    (void)state;
    mutated(to_editions, "test.desc: acme/common/v1/device.proto: type "
                         "acme.common.v1.Device: editions are not supported");
    mutated(unknown_type, "test.desc: acme/common/v1/device.proto: type "
                          "acme.common.v1.Device: field parent = 14: unknown "
                          "type acme.common.v1.Nope");
    mutated(enum_as_message, "type acme.common.v1.Device: field parent = 14: "
                             "acme.common.v1.Region is not a message");
    mutated(bad_enum_default, "type acme.common.v1.Device: field kind = 4: "
                              "default NOPE is not a value of "
                              "acme.common.v1.Device.Kind");
    mutated(bad_default, "type acme.common.v1.Device: field firmware = 3: "
                         "bad default value \"-1\"");
    mutated(same_number, "type acme.common.v1.Device: fields serial and "
                         "model have the same number 1");
    mutated(group_type, "type acme.common.v1.Device: field parent = 14 is a "
                        "group");
}

static void refuses_garbage(void **state)
{
    size_t len;
    unsigned char *buf = slurp(SCHEMA_BUILD "/all.desc", &len);
    static const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x00,
                                         0x13, 0x37, 0x99, 0x01, 0x02};
    static const char text[] = "syntax = \"proto3\";\nmessage A {}\n";
    (void)state;
    refused(buf, len / 2,
            "test.desc: not a descriptor set (truncated or not "
            "protobuf)",
            -EINVAL);
    refused(buf, len - 1,
            "test.desc: not a descriptor set (truncated or not "
            "protobuf)",
            -EINVAL);
    refused(junk, sizeof junk, "test.desc: not a descriptor set", -EINVAL);
    refused(text, sizeof text - 1,
            "test.desc: not a descriptor set but text "
            "(a .proto file? make one with: protoc "
            "--include_imports",
            -EINVAL);
    refused("", 0, "test.desc: not a descriptor set (no files)", -EINVAL);
    refused("\x10\x01", 2, "test.desc: not a descriptor set (unknown fields)",
            -EINVAL);
    free(buf);
}

/* A FileDescriptorSet whose messages nest depth deep (file, then message
 * types in nested_type): protobuf-c would recurse that deep. */
static size_t nested_set(unsigned char *out, size_t cap, int depth)
{
    size_t n = 0;
    unsigned char *tmp = malloc(cap);
    assert_non_null(tmp);
    out[n++] = 0x0a; /* DescriptorProto.name = "M" */
    out[n++] = 0x01;
    out[n++] = 'M';
    for (int i = 0; i < depth; i++) {
        /* nested_type = 3, then the file's message_type = 4, then file = 1 */
        unsigned char tag = i == depth - 1   ? 0x0a
                            : i == depth - 2 ? 0x22
                                             : 0x1a;
        size_t h = 0;
        if (tag == 0x0a) { /* the file gets a name first */
            memmove(out + 9, out, n);
            memcpy(out, "\x0a\x07x.proto", 9);
            n += 9;
        }
        tmp[h++] = tag;
        for (size_t v = n;; v >>= 7) {
            tmp[h++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            if (v <= 0x7f)
                break;
        }
        assert_true(h + n <= cap);
        memmove(out + h, out, n);
        memcpy(out, tmp, h);
        n += h;
        if (tag == 0x1a) { /* the enclosing message gets a name too */
            memmove(out + 3, out, n);
            memcpy(out, "\x0a\x01M", 3);
            n += 3;
        }
    }
    free(tmp);
    return n;
}

static void refuses_past_caps(void **state)
{
    struct pb_schema *s;
    char err[256];
    unsigned char *big = calloc(1, PB_SCHEMA_INPUT_MAX + 1u), buf[4096];
    size_t n;
    (void)state;
    assert_non_null(big);
    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(pb_schema_add(s, "big.desc", big, PB_SCHEMA_INPUT_MAX + 1u,
                                   err, sizeof err),
                     -EFBIG);
    assert_string_equal(err, "big.desc: 16777217 bytes, more than the 16 MiB "
                             "a descriptor set may have");
    free(big);
    pb_schema_free(s);

    /* 16 MiB of empty files: far more than PB_SCHEMA_MEM_MAX once decoded */
    big = malloc(PB_SCHEMA_INPUT_MAX);
    assert_non_null(big);
    for (size_t i = 0; i < PB_SCHEMA_INPUT_MAX; i += 2)
        memcpy(big + i, "\x0a\x00", 2);
    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(pb_schema_add(s, "wide.desc", big, PB_SCHEMA_INPUT_MAX,
                                   err, sizeof err),
                     -EFBIG);
    assert_string_equal(err, "wide.desc: the schemas need more than 64 MiB "
                             "in memory");
    pb_schema_free(s);

    /* one file more than PB_SCHEMA_FILES_MAX */
    n = 0;
    for (int i = 0; i <= PB_SCHEMA_FILES_MAX; i++) {
        char name[16];
        int k = snprintf(name, sizeof name, "f%d", i);
        size_t at = n;
        big[n++] = 0x0a;
        big[n++] = (unsigned char)(k + 2);
        big[n++] = 0x0a;
        big[n++] = (unsigned char)k;
        memcpy(big + n, name, (size_t)k);
        n += (size_t)k;
        assert_true(n - at < 32);
    }
    refused(big, n, "test.desc: f2048: more than 2048 files in all schemas",
            -EFBIG);
    free(big);

    /* a file that defines no types links, and has none */
    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(
        pb_schema_add(s, "e.desc", "\x0a\x05\x0a\x03x.p", 7, err, sizeof err),
        0);
    assert_int_equal(pb_schema_link(s, err, sizeof err), 0);
    assert_int_equal(pb_schema_count(s), 0);
    assert_null(pb_schema_message(s, "x"));
    pb_schema_free(s);

    n = nested_set(buf, sizeof buf, 40); /* fine */
    assert_int_equal(pb_schema_new(&s), 0);
    if (pb_schema_add(s, "deep.desc", buf, n, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(pb_schema_link(s, err, sizeof err), 0);
    assert_non_null(pb_schema_message(s,
                                      "M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M."
                                      "M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M.M"));
    pb_schema_free(s);
    n = nested_set(buf, sizeof buf, 500);
    refused(buf, n, "test.desc: types nested more than 64 deep", -EINVAL);

    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(
        pb_schema_add_file(s, SCHEMA_BUILD "/none.desc", err, sizeof err),
        -ENOENT);
    assert_string_equal(err,
                        SCHEMA_BUILD "/none.desc: No such file or directory");
    pb_schema_free(s);
}

static void twice_and_after_errors(void **state)
{
    struct pb_schema *s;
    char err[512];
    size_t len;
    unsigned char *buf = slurp(SCHEMA_BUILD "/device.desc", &len);
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, len, buf);
    unsigned char out[4096];
    size_t n;
    (void)state;

    /* a failed add leaves the registry as it was */
    assert_int_equal(pb_schema_new(&s), 0);
    assert_int_equal(
        pb_schema_add(s, "bad.desc", buf, len / 2, err, sizeof err), -EINVAL);
    assert_int_equal(
        pb_schema_add_file(s, SCHEMA_BUILD "/bad-group.desc", err, sizeof err),
        -EINVAL);
    assert_int_equal(pb_schema_add(s, "device.desc", buf, len, err, sizeof err),
                     0);
    assert_int_equal(pb_schema_link(s, err, sizeof err), 0);
    assert_non_null(pb_schema_message(s, "acme.common.v1.Device"));
    assert_null(pb_schema_message(s, "acme.bad.Grouped"));

    /* the same file name with other content */
    set_str(&set->file[0]->package, "acme.common.v2");
    n = google__protobuf__file_descriptor_set__pack(set, out);
    assert_int_equal(pb_schema_add(s, "other.desc", out, n, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "other.desc: acme/common/v1/units.proto: differs "
                             "from the file of that name in device.desc");

    /* the same types from a file of another name */
    set_str(&set->file[0]->package, "acme.common.v1");
    set_str(&set->file[0]->name, "acme/common/v1/units-copy.proto");
    n = google__protobuf__file_descriptor_set__pack(set, out);
    assert_int_equal(pb_schema_add(s, "copy.desc", out, n, err, sizeof err), 0);
    assert_int_equal(pb_schema_link(s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ": type acme.common.v1.Unit: defined again "
                                "(first in "));
    assert_int_equal(pb_schema_add(s, "device.desc", buf, len, err, sizeof err),
                     -EBUSY);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    pb_schema_free(s);
    free(buf);
}

/* ---- show ---------------------------------------------------------------- */

static void shows_definitions(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    char buf[8192], small[16];
    size_t len;
    (void)state;
    assert_int_equal(
        pb_schema_show(s, "acme.meter.v2.Reading", buf, sizeof buf, &len), 0);
    assert_int_equal(len, strlen(buf));
    static const char *const reading[] = {
        "// acme/meter/v2/reading.proto (proto3)\n"
        "message acme.meter.v2.Reading {\n"
        "  string serial = 1;\n"
        "  acme.common.v1.Device device = 2;\n"
        "  google.protobuf.Timestamp at = 3;\n"
        "  repeated double samples = 4;\n"
        "  repeated sint32 deltas = 5 [packed = false];\n"
        "  map<string, acme.meter.v2.Reading.Channel> channels = 6;\n"
        "  map<int32, string> labels = 7;\n"
        "  oneof value {\n"
        "    double reading = 8;\n"
        "    string error = 9;\n"
        "    acme.meter.v2.Reading.Channel single = 10;\n"
        "    bytes raw = 11;\n"
        "    acme.meter.v2.Reading.Status state = 12;\n"
        "  }\n"
        "  acme.meter.v2.Reading.Status status = 13;\n",
        "  repeated acme.common.v1.Unit units = 29;\n",
        "  int32 custom = 101 [json_name = \"customName\"];\n"
        "  oneof source {\n"
        "    string gateway = 102;\n"
        "    int32 port = 103;\n"
        "  }\n"
        "  repeated acme.meter.v2.Reading history = 1000;\n"
        "  map<string, google.protobuf.Timestamp> stamps = 1001;\n"
        "}\n",
    };
    for (size_t i = 0; i < sizeof reading / sizeof reading[0]; i++)
        if (!strstr(buf, reading[i]))
            fail_msg("show lacks:\n%s\nin:\n%s", reading[i], buf);

    assert_int_equal(
        pb_schema_show(s, "acme.common.v1.Device", buf, sizeof buf, &len), 0);
    static const char *const device[] = {
        "// acme/common/v1/device.proto (proto2)\n"
        "message acme.common.v1.Device {\n"
        "  required string serial = 1;\n"
        "  optional string model = 2 [default = \"unknown \\\"model\\\"\"];\n"
        "  optional uint32 firmware = 3 [default = 7];\n"
        "  optional acme.common.v1.Device.Kind kind = 4 [default = GATEWAY];\n",
        "  optional bytes secret = 6 [default = \"\\001\\002ab\\377\"];\n",
        "  optional float gain = 8 [default = -inf];\n",
        "  repeated int32 ports = 12 [packed = true];\n"
        "  repeated fixed32 masks = 13;\n",
        "  oneof location {\n"
        "    string site = 15;\n"
        "    acme.common.v1.Device.GeoPoint point = 16;\n"
        "    acme.common.v1.Region region_only = 17 [default = REGION_US];\n"
        "  }\n",
        "  optional sfixed64 stamp = 22 [deprecated = true];\n",
        "  optional int32 far_away = 536870911;\n}\n",
    };
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++)
        if (!strstr(buf, device[i]))
            fail_msg("show lacks:\n%s\nin:\n%s", device[i], buf);

    assert_int_equal(
        pb_schema_show(s, "acme.meter.v2.Config", buf, sizeof buf, &len), 0);
    assert_non_null(strstr(buf, "  optional int32 threshold = 1;\n"
                                "  int32 plain = 2;\n"
                                "  optional string label = 3;\n"
                                "  oneof mode {\n"));

    assert_int_equal(
        pb_schema_show(s, "acme.common.v1.Region", buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "// acme/common/v1/device.proto (proto2)\n"
                             "enum acme.common.v1.Region {\n"
                             "  REGION_TEST = -1;\n"
                             "  REGION_EU = 1;\n"
                             "  REGION_EUROPE = 1;\n"
                             "  REGION_US = 2;\n"
                             "  REGION_ASIA = 10;\n"
                             "}\n");
    assert_int_equal(
        pb_schema_show(s, "acme.common.v1.Region", small, sizeof small, &len),
        -ENOSPC);
    assert_int_equal(len, strlen(buf));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(pb_schema_show(s, "acme.Nope", buf, sizeof buf, &len),
                     -ENOENT);
    pb_schema_free(s);
}

/* ---- nesting ------------------------------------------------------------- */

static void depth_check(void **state)
{
    struct pb_schema *s = load("all.desc", NULL);
    const ProtobufCMessageDescriptor *d =
        pb_schema_message(s, "acme.meter.v2.Reading");
    unsigned char buf[1024];
    size_t n = 0;
    ProtobufCMessage *m;
    (void)state;
    /* history { history { ... } } 200 deep: 3 bytes a level */
    for (int i = 0; i < 200; i++) {
        memmove(buf + 3, buf, n);
        buf[0] = 0xc2; /* field 1000, length-delimited */
        buf[1] = 0x3e;
        buf[2] = (unsigned char)n;
        n += 3;
        if (n > 127)
            break;
    }
    /* the loop stops before a length needs two bytes: 43 levels */
    assert_int_equal(pb_schema_check_depth(d, buf, n, 64), 0);
    assert_int_equal(pb_schema_check_depth(d, buf, n, 44), 0);
    assert_int_equal(pb_schema_check_depth(d, buf, n, 43), -ELOOP);
    assert_int_equal(pb_schema_check_depth(d, buf, n - 1, 64), -EBADMSG);
    assert_int_equal(pb_schema_check_depth(d, "\x0b", 1, 64), -EBADMSG);
    m = protobuf_c_message_unpack(d, NULL, n, buf);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    /* works for compiled descriptors too */
    assert_int_equal(pb_schema_check_depth(
                         &acme__meter__v2__reading__descriptor, buf, n, 43),
                     -ELOOP);
    pb_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptors_match_protoc_c),
        cmocka_unit_test(lookups_and_infos),
        cmocka_unit_test(python_payloads),
        cmocka_unit_test(proto2_defaults),
        cmocka_unit_test(proto3_optional_pack),
        cmocka_unit_test(sets_in_any_order),
        cmocka_unit_test(refuses_groups_and_extensions),
        cmocka_unit_test(enum_first_value_max),
        cmocka_unit_test(refuses_malformed),
        cmocka_unit_test(refuses_garbage),
        cmocka_unit_test(refuses_past_caps),
        cmocka_unit_test(twice_and_after_errors),
        cmocka_unit_test(shows_definitions),
        cmocka_unit_test(depth_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
