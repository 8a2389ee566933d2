/*
 * log.h — one line per event on stderr, levels, and the two clocks.
 *
 * Under systemd (JOURNAL_STREAM set) lines carry a "<N>" priority prefix
 * that journald understands; otherwise they start with a UTC timestamp.
 */
#ifndef MQTT2KAFKA_LOG_H
#define MQTT2KAFKA_LOG_H

#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* "error", "warn", "info" or "debug"; anything else leaves it unchanged. */
void log_set_level(const char *name);
void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

int64_t log_now_ms(void);  /* monotonic, for timers */
int64_t log_wall_ms(void); /* ms since the epoch, for records */

#endif
