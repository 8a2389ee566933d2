/*
 * units.h — pure: sizes and durations as people write them in a config
 * and read them in a summary. Shared by the config loader and the CLI.
 */
#ifndef MQTT2KAFKA_UNITS_H
#define MQTT2KAFKA_UNITS_H

#include <stddef.h>
#include <stdint.h>

#define KiB ((int64_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)
#define TiB (GiB * 1024)

/* Parses "1GiB", "512MB", "1024" into bytes; "7d", "12h", "30m", "45s",
 * "250ms" into ms (a plain number is seconds). 0 or -EINVAL. */
int units_parse_size(const char *s, int64_t *out);
int units_parse_duration_ms(const char *s, int64_t *out);
/* The reverse, for summaries: "1GiB", "300B"; "7d", "250ms". Never fails;
 * truncates to len like snprintf. */
void units_format_size(int64_t bytes, char *buf, size_t len);
void units_format_duration_ms(int64_t ms, char *buf, size_t len);

#endif
