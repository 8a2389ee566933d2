/*
 * pb_json_wkt.c — the well-known types in protobuf's JSON mapping, as
 * Python's json_format prints them (the reference the tests compare
 * with): Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional
 * digits; Duration as "1.500s"; the wrappers as their bare value;
 * Struct, Value and ListValue as plain JSON; FieldMask as its paths in
 * lowerCamelCase joined by commas; Empty as {}; Any as {"@type": url,
 * ...} with its value decoded as the type the URL names, found among the
 * loaded schemas (pb_set_schema). What json_format refuses is refused
 * here too, with why: a Timestamp outside years 1..9999, a Duration out
 * of range or with mismatched signs, a FieldMask path that does not map
 * to lowerCamelCase, an Any whose type is not loaded.
 *
 * Only runtime descriptors (pb_schema.h) are marked as well-known types,
 * so fields are found by number in them. Part of the JSON printer
 * (pb_json.c); no I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bridge/pb_int.h"

#define SECONDS_MIN  (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define SECONDS_MAX  253402300799LL   /* 9999-12-31T23:59:59Z */
#define DURATION_MAX 315576000000LL   /* 10,000 years */
#define NANOS        1000000000LL

static const ProtobufCFieldDescriptor *field_no(const ProtobufCMessage *m,
                                                unsigned id)
{
    return protobuf_c_message_descriptor_get_field(m->descriptor, id);
}

/* Field id of m as an integer (0 when the type lacks it). */
static int64_t int_field(const ProtobufCMessage *m, unsigned id)
{
    const ProtobufCFieldDescriptor *f = field_no(m, id);
    const void *p;
    if (!f)
        return 0;
    p = pb_member(m, f);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return *(const int64_t *)p;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return *(const int32_t *)p;
    default:
        return 0;
    }
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* ".500", ".000100", ".000000001" or nothing, as json_format cuts it. */
static void fraction(struct pb_buf *b, int64_t nanos)
{
    char t[16];
    int n;
    if (nanos == 0)
        return;
    if (nanos % 1000000 == 0)
        n = snprintf(t, sizeof t, ".%03" PRId64, nanos / 1000000);
    else if (nanos % 1000 == 0)
        n = snprintf(t, sizeof t, ".%06" PRId64, nanos / 1000);
    else
        n = snprintf(t, sizeof t, ".%09" PRId64, nanos);
    pb_put(b, t, (size_t)n);
}

/* Days since 1970-01-01 → y, m, d (proleptic Gregorian). */
static void civil(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t z = days + 719468, era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int timestamp(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m)
{
    int64_t sec = int_field(m, 1), nanos = int_field(m, 2);
    int64_t total = sec + floor_div(nanos, NANOS), y;
    int64_t ns = nanos - floor_div(nanos, NANOS) * NANOS;
    int mo, d, n;
    char t[40];
    if (sec > SECONDS_MAX + 1 || sec < SECONDS_MIN - 1 || total < SECONDS_MIN ||
        total > SECONDS_MAX)
        return pb_json_fail(dc,
                            "Timestamp %" PRId64 "s %" PRId64
                            "ns is outside years 1 to 9999",
                            sec, nanos);
    int64_t sod = total - floor_div(total, 86400) * 86400;
    civil(floor_div(total, 86400), &y, &mo, &d);
    n = snprintf(t, sizeof t, "\"%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, mo,
                 d, (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    pb_put(b, t, (size_t)n);
    fraction(b, ns);
    pb_put(b, "Z\"", 2);
    return 0;
}

static int duration(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m)
{
    int64_t sec = int_field(m, 1), nanos = int_field(m, 2);
    char t[32];
    int n;
    if (sec < -DURATION_MAX || sec > DURATION_MAX)
        return pb_json_fail(
            dc, "Duration of %" PRId64 " seconds is outside +-315576000000",
            sec);
    if (nanos <= -NANOS || nanos >= NANOS || (nanos < 0 && sec > 0) ||
        (nanos > 0 && sec < 0))
        return pb_json_fail(dc,
                            "Duration %" PRId64 "s %" PRId64
                            "ns is not valid (nanos out of range or of "
                            "another sign)",
                            sec, nanos);
    n = snprintf(t, sizeof t, "\"%s%" PRId64, sec < 0 || nanos < 0 ? "-" : "",
                 sec < 0 ? -sec : sec);
    pb_put(b, t, (size_t)n);
    fraction(b, nanos < 0 ? -nanos : nanos);
    pb_put(b, "s\"", 2);
    return 0;
}

/* paths, each snake_case → lowerCamelCase, joined by commas. */
static int field_mask(struct pb *dc, struct pb_buf *b,
                      const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f = field_no(m, 1);
    size_t n = f ? *(const size_t *)pb_quantifier(m, f) : 0, total = 0, o = 0;
    const char *arr = f ? *(const char *const *)pb_member(m, f) : NULL;
    size_t sz = f ? pb_json_elem_size(f->type) : 0, len;
    char *out;
    for (size_t i = 0; i < n; i++)
        total += (pb_text_at(f, arr + i * sz, &len), len) + 1;
    if (!(out = pb_arena_alloc(dc, total + 1))) {
        b->full = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = pb_text_at(f, arr + i * sz, &len);
        int under = 0, w = len > 60 ? 60 : (int)len;
        if (i)
            out[o++] = ',';
        for (size_t j = 0; j < len; j++) {
            char c = s[j];
            if (c >= 'A' && c <= 'Z')
                return pb_json_fail(dc,
                                    "FieldMask path \"%.*s\" has an upper "
                                    "case letter",
                                    w, s);
            if (under && !(c >= 'a' && c <= 'z'))
                return pb_json_fail(dc,
                                    "FieldMask path \"%.*s\": a '_' must be "
                                    "followed by a lower case letter",
                                    w, s);
            if (c == '_') {
                under = 1;
                continue;
            }
            out[o++] = under ? (char)(c - 32) : c;
            under = 0;
        }
        if (under)
            return pb_json_fail(dc, "FieldMask path \"%.*s\" ends in '_'", w,
                                s);
    }
    if (pb_json_str(b, out, o)) {
        dc->bad_field = f->name;
        return -1;
    }
    return 0;
}

/* Value: its kind's value, null when none is set. */
static int value(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                 int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (pb_present(m, f))
            return pb_json_value(dc, b, d, f, pb_member(m, f), depth);
    }
    pb_put(b, "null", 4);
    return 0;
}

/* A repeated or map field's JSON alone: ListValue's values, Struct's
 * fields. */
static int only_field(struct pb *dc, struct pb_buf *b,
                      const ProtobufCMessage *m, int depth, int map)
{
    const ProtobufCFieldDescriptor *f = field_no(m, 1);
    size_t n = f ? *(const size_t *)pb_quantifier(m, f) : 0;
    const ProtobufCMessage *const *el =
        f ? *(const ProtobufCMessage *const *const *)pb_member(m, f) : NULL;
    if (map)
        return pb_json_map(dc, b, f, el, n, depth);
    pb_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            pb_putc(b, ',');
        if (pb_json_msg(dc, b, el[i], depth + 1))
            return -1;
    }
    pb_putc(b, ']');
    return 0;
}

static int any(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
               int depth)
{
    const ProtobufCFieldDescriptor *uf = field_no(m, 1), *vf = field_no(m, 2);
    const ProtobufCBinaryData *v;
    const ProtobufCMessageDescriptor *d;
    const struct pb_schema_msg *info;
    const ProtobufCMessage *sub;
    size_t ulen;
    const char *url, *name;
    char type[PB_SCHEMA_NAME_MAX + 1];
    int first = 0;
    if (!uf || !vf || vf->type != PROTOBUF_C_TYPE_BYTES)
        return pb_json_fail(dc, "google.protobuf.Any is not as expected");
    url = pb_text_at(uf, pb_member(m, uf), &ulen);
    v = pb_member(m, vf);
    if (!ulen && !v->len) {
        pb_put(b, "{}", 2);
        return 0;
    }
    name = memrchr(url, '/', ulen);
    name = name ? name + 1 : url;
    snprintf(type, sizeof type, "%.*s", (int)(url + ulen - name), name);
    if (!dc->schema || memchr(url, 0, ulen) ||
        !(d = pb_schema_message(dc->schema, type)))
        return pb_json_fail(dc,
                            "google.protobuf.Any holds a %.80s, a type that "
                            "is not among the loaded schemas",
                            type);
    info = pb_schema_msg_info(d);
    if (info && info->recursive &&
        pb_schema_check_depth(d, v->data, v->len,
                              (unsigned)(PB_DEPTH_MAX - depth)) == -ELOOP)
        return pb_json_fail(dc, "%s in an Any is nested too deep", type);
    if (!(sub = protobuf_c_message_unpack(d, &dc->alloc, v->len, v->data)))
        return pb_json_fail(dc,
                            "the value of a google.protobuf.Any is not a "
                            "valid %.80s",
                            type);
    pb_put(b, "{\"@type\":", 9);
    if (pb_json_str(b, url, ulen)) {
        dc->bad_field = uf->name;
        return -1;
    }
    if (info && info->wkt != PB_SCHEMA_WKT_NONE) {
        pb_put(b, ",\"value\":", 9);
        if (pb_json_wkt(dc, b, sub, info->wkt, depth + 1))
            return -1;
    } else if (pb_json_fields(dc, b, sub, depth + 1, &first)) {
        return -1;
    }
    pb_putc(b, '}');
    return 0;
}

int pb_json_wkt(struct pb *dc, struct pb_buf *b, const ProtobufCMessage *m,
                enum pb_schema_wkt wkt, int depth)
{
    const ProtobufCFieldDescriptor *f;
    if (depth > PB_DEPTH_MAX)
        return pb_json_fail(dc, "%s is nested deeper than %d messages",
                            m->descriptor->name, PB_DEPTH_MAX);
    switch (wkt) {
    case PB_SCHEMA_WKT_NONE:
        return pb_json_msg(dc, b, m, depth);
    case PB_SCHEMA_WKT_ANY:
        return any(dc, b, m, depth);
    case PB_SCHEMA_WKT_DURATION:
        return duration(dc, b, m);
    case PB_SCHEMA_WKT_TIMESTAMP:
        return timestamp(dc, b, m);
    case PB_SCHEMA_WKT_EMPTY:
        pb_put(b, "{}", 2);
        return 0;
    case PB_SCHEMA_WKT_FIELD_MASK:
        return field_mask(dc, b, m);
    case PB_SCHEMA_WKT_STRUCT:
        return only_field(dc, b, m, depth, 1);
    case PB_SCHEMA_WKT_LIST_VALUE:
        return only_field(dc, b, m, depth, 0);
    case PB_SCHEMA_WKT_VALUE:
        return value(dc, b, m, depth);
    default: /* the wrappers: their value, even at its default */
        if (!(f = field_no(m, 1)))
            return pb_json_fail(dc, "%s has no value field",
                                m->descriptor->name);
        return pb_json_value(dc, b, m->descriptor, f, pb_member(m, f), depth);
    }
}
