/*
 * cli_reload.h — `mqtt2kafka reload`: ask the running daemon to reread its
 * configuration and wait for its answer. The unit's ExecReload= runs it, so
 * `systemctl reload mqtt2kafka` needs no /bin/kill (procps) and fails when
 * the daemon refused the new config.
 *
 * The contract between the command and the daemon
 * -----------------------------------------------
 * The channel is the daemon's status file (log.status_file, "name=value"
 * lines, replaced atomically by rename). The daemon writes these lines in
 * every version of the file, from the first one on:
 *
 *   reload_seq=N       reload attempts finished since this process started
 *                      (0 until the first). Its presence tells the command
 *                      that the daemon reports reloads.
 *   reload=R           the result of attempt N: none (N = 0), ok or failed
 *   reload_ms=T        when attempt N finished, ms since the epoch (0: none)
 *   reload_error=TEXT  why attempt N was refused, "file:line:col: what";
 *                      empty unless failed
 *   reload_detail=TEXT optional: what the change did ("routes applied,
 *                      kafka producer recreated; restart needed: spool.path")
 *
 * TEXT is one line of at most CLI_RELOAD_TEXT_MAX - 1 bytes and never holds
 * a secret. cli_reload_format() writes the five lines (control characters
 * become spaces, long text is cut), so writer and reader share the names.
 *
 * On SIGHUP the daemon:
 *   1. sends sd_notify "RELOADING=1";
 *   2. rereads the config and every secret file; a config that does not
 *      load or does not fit is refused whole and the old one keeps running;
 *      a good one is applied (the watchdog keeps being fed meanwhile);
 *   3. writes the status file at once, not at its next periodic write, with
 *      reload_seq incremented and the other reload lines set. pid= stays
 *      the daemon's own pid;
 *   4. then sends "READY=1" (and a fresh STATUS=).
 * Signals that arrive together may be served by one attempt (one increment).
 * SIGHUP never stops the daemon. log.status_file itself needs a restart to
 * change: until then the daemon keeps writing the file it started with.
 *
 * The command:
 *   1. learns log.status_file from the config (-c FILE); if the config does
 *      not load it uses CLI_RELOAD_STATUS_FALLBACK, the key's default, and
 *      lets the daemon judge the config (only the daemon may be able to read
 *      every secret it names);
 *   2. takes the daemon's pid from its argument (ExecReload= passes
 *      $MAINPID), else from the status file's pid= (exit 3: not running);
 *   3. reads reload_seq (waiting up to CLI_RELOAD_PID_WAIT_MS for the file
 *      to show that pid: a daemon just started may not have written it);
 *   4. sends SIGHUP;
 *   5. without reload_seq in the file (an older daemon) says so and exits 0;
 *   6. else polls the file every CLI_RELOAD_POLL_MS until reload_seq changes,
 *      for at most its wait (CLI_RELOAD_WAIT_MS, below systemd's default
 *      90 s reload timeout), and prints the result.
 * Exit codes: 0 applied (or sent to a daemon that does not report), 78 the
 * daemon refused the config (and keeps the old one), 1 no answer (timeout,
 * the daemon exited or restarted, the status file cannot be followed), 3 not
 * running, 64 usage.
 */
#ifndef MQTT2KAFKA_CLI_RELOAD_H
#define MQTT2KAFKA_CLI_RELOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_RELOAD_STATUS_FALLBACK "/run/mqtt2kafka/status"
#define CLI_RELOAD_WAIT_MS         60000
#define CLI_RELOAD_PID_WAIT_MS     3000
#define CLI_RELOAD_POLL_MS         50
#define CLI_RELOAD_TEXT_MAX        512  /* reload_error=, reload_detail= */
#define CLI_RELOAD_FILE_MAX        8192 /* a status file is read up to this */

/* What the status file says about the daemon and its last reload. */
struct cli_reload_status {
    int pid;         /* pid=; 0 when absent */
    char state[32];  /* state=: running, backpressure, stopped, ... */
    int has_seq;     /* reload_seq= is there: the daemon reports reloads */
    int64_t seq;     /* reload_seq= */
    char result[16]; /* reload=: none, ok, failed */
    int64_t ms;      /* reload_ms= */
    char error[CLI_RELOAD_TEXT_MAX];  /* reload_error= */
    char detail[CLI_RELOAD_TEXT_MAX]; /* reload_detail= */
};

/* Parses status file text (len bytes, need not end in NUL) into *st, which
 * is zeroed first. Unknown lines are skipped; long values are cut. */
void cli_reload_parse(const char *buf, size_t len,
                      struct cli_reload_status *st);

/* Reads and parses the status file at path: 0, or -errno (*st zeroed). */
int cli_reload_read(const char *path, struct cli_reload_status *st);

/* For the daemon: the five reload lines of the status file, each ending in
 * '\n', into buf (cut like snprintf). result is "none", "ok" or "failed";
 * error and detail may be NULL. Returns what snprintf returns. */
int cli_reload_format(char *buf, size_t len, int64_t seq, const char *result,
                      int64_t ms, const char *error, const char *detail);

/* For `mqtt2kafka status`: one line about the last reload ("  last reload
 * ok at 2026-01-01 12:00:00 UTC: what it did" or "... failed at ...: why"),
 * nothing when there was none. */
void cli_reload_print_last(const struct cli_reload_status *st, FILE *out);

/* Steps 3 to 6 above: signals pid (> 0) and follows status_path for at most
 * wait_ms. Messages go to out and err. Returns the exit code. */
int cli_reload_signal(const char *status_path, int pid, int wait_ms, FILE *out,
                      FILE *err);

/* `mqtt2kafka reload [-c FILE] [PID]`: conf_path is FILE, pos the npos
 * positional arguments (borrowed). Returns the exit code. */
int cli_reload_main(const char *conf_path, int npos, char **pos);

#endif
