/*
 * numfmt.h — pure: numbers as text, the way Python's json_format prints
 * them (the reference the JSON tests compare with): integers in decimal,
 * doubles in the shortest form that reads back the same, floats first
 * rounded to the shortest text that reads back as the same float. No
 * terminator is written; each returns the length. libc only.
 */
#ifndef MQTT2KAFKA_NUMFMT_H
#define MQTT2KAFKA_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

#define NUMFMT_MAX 32 /* the longest text any of these writes */

size_t numfmt_u64(char *out, uint64_t v);
size_t numfmt_i64(char *out, int64_t v);
/* v finite. Fixed notation with at least one decimal ("21.0", "1e-05" is
 * the exception below 1e-4 and from 1e16 up: d.ddde+XX). */
size_t numfmt_double(char *out, double v);
size_t numfmt_float(char *out, float f);

#endif
