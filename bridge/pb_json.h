/*
 * pb_json.h — a decoded message in protobuf's canonical JSON mapping.
 * Part of the protobuf toolkit (pb.h); pure, no I/O.
 */
#ifndef MQTT2KAFKA_PB_JSON_H
#define MQTT2KAFKA_PB_JSON_H

#include <stddef.h>

#include "bridge/pb.h"

/* m in protobuf's canonical JSON mapping, compact: lowerCamelCase names,
 * fields in number order, fields at their default omitted, 64-bit integers
 * as strings, bytes as base64, enums by name, NaN/Infinity as strings,
 * floating point in the shortest form that reads back the same (as
 * Python's json_format prints it), map keys sorted (the last of duplicate
 * keys wins). The text is borrowed from dc until the next call that
 * writes output. 0, or -EINVAL with why (a string that is not UTF-8,
 * nesting deeper than PB_DEPTH_MAX, longer than PB_OUT_MAX). */
int pb_json(struct pb *dc, const ProtobufCMessage *m, const void **out,
            size_t *len, char *why, size_t whylen);

#endif
