/*
 * notify.c — sd_notify(3) for the daemon: READY, STATUS, WATCHDOG, STOPPING.
 *
 * Depends on libsystemd and libc only. The state is process-wide, as the
 * notification socket is: one watchdog period, the time of the last ping,
 * the last status text (systemd keeps it; resending it every turn would
 * only cost a datagram each time).
 */
#include "bridge/notify.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static uint64_t watchdog_us;  /* 0: no watchdog */
static uint64_t last_ping_us; /* monotonic */
static char last_status[512];

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void notify_ready(void)
{
    uint64_t us = 0;
    /* > 0: the watchdog is on for this process; 0 or an error: it is off. */
    if (sd_watchdog_enabled(0, &us) > 0)
        watchdog_us = us;
    last_ping_us = mono_us();
    sd_notify(0, "READY=1");
}

void notify_status(const char *fmt, ...)
{
    char text[sizeof(last_status)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (strcmp(text, last_status) == 0)
        return;
    memcpy(last_status, text, sizeof(last_status));
    sd_notifyf(0, "STATUS=%s", text);
}

void notify_watchdog(void)
{
    uint64_t now;
    if (!watchdog_us)
        return;
    now = mono_us();
    if (now - last_ping_us < watchdog_us / 4)
        return;
    last_ping_us = now;
    sd_notify(0, "WATCHDOG=1");
}

void notify_reloading(void)
{
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)mono_us());
}

void notify_reloaded(void)
{
    if (last_status[0])
        sd_notifyf(0, "READY=1\nSTATUS=%s", last_status);
    else
        sd_notify(0, "READY=1");
}

void notify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}
