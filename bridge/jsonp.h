/*
 * jsonp.h — JSON payloads (`payload: json`): validate a payload with
 * jansson, find a dotted path in it for templates, and write it again
 * compactly. A library of the decode stage (payload.c), like pb.h; no I/O.
 *
 * Valid means RFC 8259 JSON as jansson reads it, any value at the top,
 * UTF-8, no duplicate keys in an object, numbers that fit a 64-bit
 * integer or a double, nested at most JSONP_DEPTH_MAX deep (checked
 * before parsing, so a hostile payload cannot recurse deep), and at most
 * JSONP_MEM_MAX bytes of parsed values. "\u0000" in a string is allowed
 * and kept.
 */
#ifndef MQTT2KAFKA_JSONP_H
#define MQTT2KAFKA_JSONP_H

#include <stddef.h>

#define JSONP_DEPTH_MAX 64
#define JSONP_MEM_MAX   (32u << 20) /* jansson's allocations, all values */
#define JSONP_OUT_MAX   (16u << 20)

struct jsonp;

int jsonp_new(struct jsonp **out); /* 0 or -ENOMEM */
void jsonp_free(struct jsonp *j);  /* NULL is fine */

/* Parses len bytes; the document lives in j until the next parse. 0, or
 * -EINVAL with why ("invalid JSON at line 1, column 7: ..."). */
int jsonp_parse(struct jsonp *j, const void *buf, size_t len, char *why,
                size_t whylen);

/* The text of path ("meta.id": object members by name) in the document,
 * for a template: a string as it is, a number as JSON writes it, true or
 * false. At most cap bytes, no terminator. 0; -ENOENT absent or null;
 * -EINVAL an object or array; -ENOSPC longer than cap. */
int jsonp_field_text(const struct jsonp *j, const char *path, size_t len,
                     char *buf, size_t cap, size_t *olen);

/* The document written again compactly: no spaces, members in their
 * order, strings with only the escapes JSON needs (UTF-8 as is),
 * integers as they were, other numbers in the shortest form that reads
 * back the same. Borrowed from j until the next call. 0 or -EINVAL. */
int jsonp_compact(struct jsonp *j, const void **out, size_t *len);

#endif
