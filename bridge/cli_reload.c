/*
 * cli_reload.c — `mqtt2kafka reload`: SIGHUP to the running daemon, then
 * its answer from the status file. The protocol is in cli_reload.h.
 *
 * A command, not a stage: it uses the config loader (for log.status_file)
 * and libc, never the daemon's modules. It is the unit's ExecReload=, so it
 * runs in the unit's sandbox as the service user: nothing here needs more
 * than reading the config and the status file and signalling a process of
 * the same user. Every wait is bounded; every buffer has a cap.
 */
#include "bridge/cli_reload.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/conf.h"

#define EX_USAGE_CODE  64
#define EX_NOT_RUNNING 3 /* LSB "program is not running", as `status` */

static const char *prog = "mqtt2kafka";

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* A process with this pid exists (EPERM: it does, but is not ours). */
static int alive(int pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* n bytes of v into dst (cap bytes with the NUL), cut if longer. */
static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int64_t to_int64(const char *v, size_t n)
{
    char num[32];
    copy_value(num, sizeof(num), v, n);
    return strtoll(num, NULL, 10);
}

void cli_reload_parse(const char *buf, size_t len, struct cli_reload_status *st)
{
    const char *p = buf, *end = buf + len;
    memset(st, 0, sizeof(*st));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(eol - p));
        if (eq) {
            size_t klen = (size_t)(eq - p), vlen = (size_t)(eol - eq - 1);
            const char *v = eq + 1;
#define KEY(k) (klen == sizeof(k) - 1 && !memcmp(p, k, klen))
            if (KEY("pid")) {
                int64_t pid = to_int64(v, vlen);
                st->pid = pid > 0 && pid <= INT32_MAX ? (int)pid : 0;
            } else if (KEY("state")) {
                copy_value(st->state, sizeof(st->state), v, vlen);
            } else if (KEY("reload_seq")) {
                st->has_seq = 1;
                st->seq = to_int64(v, vlen);
            } else if (KEY("reload")) {
                copy_value(st->result, sizeof(st->result), v, vlen);
            } else if (KEY("reload_ms")) {
                st->ms = to_int64(v, vlen);
            } else if (KEY("reload_error")) {
                copy_value(st->error, sizeof(st->error), v, vlen);
            } else if (KEY("reload_detail")) {
                copy_value(st->detail, sizeof(st->detail), v, vlen);
            }
#undef KEY
        }
        p = eol + 1;
    }
}

int cli_reload_read(const char *path, struct cli_reload_status *st)
{
    char buf[CLI_RELOAD_FILE_MAX];
    size_t len;
    int rc = 0;
    FILE *f = fopen(path, "r");

    memset(st, 0, sizeof(*st));
    if (!f)
        return -errno;
    len = fread(buf, 1, sizeof(buf), f);
    if (ferror(f))
        rc = -EIO;
    fclose(f);
    if (rc == 0)
        cli_reload_parse(buf, len, st);
    return rc;
}

/* text as one line: control characters become spaces; cut to cap. */
static void one_line(char *dst, size_t cap, const char *text)
{
    size_t i = 0;
    for (; text && text[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)text[i];
        dst[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    dst[i] = '\0';
}

int cli_reload_format(char *buf, size_t len, int64_t seq, const char *result,
                      int64_t ms, const char *error, const char *detail)
{
    char e[CLI_RELOAD_TEXT_MAX], d[CLI_RELOAD_TEXT_MAX];
    one_line(e, sizeof(e), error);
    one_line(d, sizeof(d), detail);
    return snprintf(buf, len,
                    "reload_seq=%" PRId64 "\nreload=%s\nreload_ms=%" PRId64
                    "\nreload_error=%s\nreload_detail=%s\n",
                    seq, result, ms, e, d);
}

void cli_reload_print_last(const struct cli_reload_status *st, FILE *out)
{
    char when[64] = "?";
    time_t t = (time_t)(st->ms / 1000);
    struct tm tm;
    if (!st->has_seq || st->seq <= 0)
        return;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    const char *why = st->error[0] ? st->error : st->detail;
    fprintf(out, "  last reload %s at %s%s%s\n", st->result, when,
            why[0] ? ": " : "", why);
}

/* Prints what the daemon answered; returns the exit code. */
static int report(const struct cli_reload_status *st, int pid, int64_t took,
                  FILE *out, FILE *err)
{
    if (!strcmp(st->result, "ok")) {
        fprintf(out,
                "%s: pid %d reloaded its configuration (%" PRId64 " ms)%s%s\n",
                prog, pid, took, st->detail[0] ? ": " : "", st->detail);
        return 0;
    }
    if (!strcmp(st->result, "failed")) {
        fprintf(err,
                "%s: pid %d refused the new configuration and keeps running "
                "the old one: %s\n",
                prog, pid, st->error[0] ? st->error : "(no reason given)");
        return EX_CONFIG_CODE;
    }
    fprintf(err, "%s: pid %d reports no reload result (reload=%s)\n", prog, pid,
            st->result);
    return 1;
}

/* The daemon's status before the signal: waits (bounded) for the file to
 * show pid, as a daemon that has just started may not have written it. */
static int read_before(const char *path, int pid, struct cli_reload_status *st)
{
    int64_t t0 = mono_ms();
    int rc;
    for (;;) {
        rc = cli_reload_read(path, st);
        if (rc == 0 && st->pid == pid)
            return 0;
        if (mono_ms() - t0 >= CLI_RELOAD_PID_WAIT_MS || !alive(pid))
            return rc ? rc : -ESRCH;
        sleep_ms(CLI_RELOAD_POLL_MS);
    }
}

int cli_reload_signal(const char *status_path, int pid, int wait_ms, FILE *out,
                      FILE *err)
{
    struct cli_reload_status before, now;
    int rc = status_path ? read_before(status_path, pid, &before) : 0;
    int64_t t0 = mono_ms();

    if (kill(pid, SIGHUP)) {
        int e = errno;
        fprintf(err, "%s: cannot signal pid %d: %s\n", prog, pid, strerror(e));
        return e == ESRCH ? EX_NOT_RUNNING : 1;
    }
    if (!status_path) {
        fprintf(out,
                "%s: sent SIGHUP to pid %d; log.status_file is off, so its "
                "log alone tells the result\n",
                prog, pid);
        return 0;
    }
    if (rc) {
        fprintf(err,
                "%s: sent SIGHUP to pid %d, but cannot follow the result: "
                "%s %s\n",
                prog, pid, status_path,
                rc == -ESRCH ? "is not its status file (did log.status_file "
                               "change? a restart applies it)"
                             : strerror(-rc));
        return 1;
    }
    if (!before.has_seq) {
        fprintf(out,
                "%s: sent SIGHUP to pid %d; this daemon does not report "
                "reload results (see its log)\n",
                prog, pid);
        return 0;
    }
    while (mono_ms() - t0 < wait_ms) {
        sleep_ms(CLI_RELOAD_POLL_MS);
        if (cli_reload_read(status_path, &now) == 0 && now.pid == pid &&
            now.has_seq && now.seq != before.seq)
            return report(&now, pid, mono_ms() - t0, out, err);
        if (!alive(pid)) {
            fprintf(err, "%s: pid %d exited during the reload\n", prog, pid);
            return 1;
        }
    }
    fprintf(err,
            "%s: no answer from pid %d within %d s; %s will show the "
            "result when it comes\n",
            prog, pid, wait_ms / 1000, status_path);
    return 1;
}

/* A PID argument: 1 .. INT32_MAX, digits only. */
static int parse_pid(const char *s, int *pid)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > INT32_MAX)
        return -EINVAL;
    *pid = (int)v;
    return 0;
}

int cli_reload_main(const char *conf_path, int npos, char **pos)
{
    char path[4096], err[1024];
    const char *status = path;
    struct conf c;
    int pid = 0;

    if (npos > 1 || (npos == 1 && parse_pid(pos[0], &pid))) {
        fprintf(stderr,
                "%s: reload takes one optional argument, a PID; got "
                "\"%s\"\n",
                prog, pos[npos - 1]);
        return EX_USAGE_CODE;
    }
    int loaded =
        conf_load_ex(conf_path, CONF_ENV_LENIENT, &c, err, sizeof(err)) == 0;
    int rc;
    if (loaded) {
        if (!c.log.status_file || !*c.log.status_file)
            status = NULL;
        else
            snprintf(path, sizeof(path), "%s", c.log.status_file);
        conf_fini(&c);
    } else {
        /* The daemon judges the config and answers in its status file;
         * the loader's message here only helps when it does not. */
        snprintf(path, sizeof(path), "%s", CLI_RELOAD_STATUS_FALLBACK);
    }
    if (!pid && !status) {
        fprintf(stderr, "%s: log.status_file is off: give the daemon's PID\n",
                prog);
        return EX_USAGE_CODE;
    }
    if (!pid) {
        struct cli_reload_status st;
        if (cli_reload_read(status, &st) || !strcmp(st.state, "stopped") ||
            !alive(st.pid))
            printf("%s: not running (no live daemon in %s)\n", prog, status);
        else
            pid = st.pid;
    }
    rc =
        pid ? cli_reload_signal(status, pid, CLI_RELOAD_WAIT_MS, stdout, stderr)
            : EX_NOT_RUNNING;
    if (!loaded && rc != 0 && rc != EX_CONFIG_CODE)
        fprintf(stderr,
                "%s: (followed %s, the default log.status_file: "
                "the config does not load here: %s)\n",
                prog, CLI_RELOAD_STATUS_FALLBACK, err);
    return rc;
}
