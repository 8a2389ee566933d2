/*
 * notify.h — tell the service manager how the daemon is doing (sd_notify).
 *
 * A leaf module: libsystemd and libc only, no bridge header. Outside
 * systemd (no $NOTIFY_SOCKET) every call is a cheap no-op, so the daemon
 * runs the same by hand, under a test, or as a Type=notify unit.
 */
#ifndef MQTT2KAFKA_NOTIFY_H
#define MQTT2KAFKA_NOTIFY_H

/* READY=1: the stages are open and the loop is about to start. Also reads
 * the watchdog period (WatchdogSec=) once, for notify_watchdog(). */
void notify_ready(void);

/* STATUS=<text> for `systemctl status`, printf-style (cut at 511 bytes).
 * Sent only when the text changed since the last call. */
__attribute__((format(printf, 1, 2))) void notify_status(const char *fmt, ...);

/* WATCHDOG=1 when the unit has a watchdog; call it every turn of the loop.
 * It pings at most once per quarter of the period, so a loop that turns
 * at least every half period keeps the service alive. */
void notify_watchdog(void);

/* RELOADING=1 (with MONOTONIC_USEC=, which newer systemd wants): the
 * daemon rereads its configuration. */
void notify_reloading(void);

/* READY=1 after a reload, with the last STATUS= sent again. */
void notify_reloaded(void);

/* STOPPING=1: the daemon is shutting down on a signal. */
void notify_stopping(void);

#endif
