/*
 * log.c — the daemon's log lines and clocks. Leaf module: libc only.
 */
#include "bridge/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum log_level level = LOG_LVL_INFO;
static int journald = -1;

void log_set_level(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0)
            level = (enum log_level)i;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const int syslog_prio[] = {3, 4, 6, 7};
    static const char *const tags[] = {"error", "warn", "info", "debug"};
    char line[2048];
    va_list ap;

    if (lvl > level)
        return;
    if (journald < 0)
        journald = getenv("JOURNAL_STREAM") != NULL;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (journald) {
        fprintf(stderr, "<%d>%s\n", syslog_prio[lvl], line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
            tm.tm_sec, ts.tv_nsec / 1000000, tags[lvl], line);
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t log_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t log_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}
