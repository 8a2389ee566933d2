/*
 * test_cli_reload.c — `mqtt2kafka reload` against the contract in
 * cli_reload.h: the status file's reload lines (written, read, cut, kept on
 * one line), and the command against a forked stand-in daemon that answers
 * SIGHUP the way the contract says (ok, refused, silent, exiting, an older
 * daemon without reload lines, a status file of another process).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge/cli_reload.h"
#include "bridge/conf.h"

static char dir[64];
static char status_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/m2k-reload-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(status_path, sizeof(status_path), "%s/status", dir);
    return 0;
}

static int teardown(void **state)
{
    char p[160];
    (void)state;
    snprintf(p, sizeof(p), "%s/status.tmp", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/conf.yaml", dir);
    unlink(p);
    unlink(status_path);
    rmdir(dir);
    return 0;
}

/* A status file as the daemon writes it: atomically, pid first. reload
 * lines only when result is not NULL (NULL: an older daemon). */
static void write_status(int pid, const char *state, int64_t seq,
                         const char *result, const char *error)
{
    char tmp[160], lines[2048] = "";
    snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    if (result)
        cli_reload_format(lines, sizeof(lines), seq, result,
                          seq ? 1767225600000 : 0, error, NULL);
    fprintf(f, "state=%s\npid=%d\nupdated_ms=1\ngateway=gw\n%sbacklog=0\n",
            state, pid, lines);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, status_path), 0);
}

/* ---- the status file's lines ---------------------------------------- */

static void test_parse(void **state)
{
    static const char text[] = "state=running\npid=4242\nupdated_ms=5\n"
                               "reload_seq=7\nreload=failed\n"
                               "reload_ms=1767225600123\n"
                               "reload_error=c.yaml:3:5: bad = value\n"
                               "reload_detail=\nunknown=x\nnoequals";
    struct cli_reload_status st;
    (void)state;
    cli_reload_parse(text, sizeof(text) - 1, &st);
    assert_int_equal(st.pid, 4242);
    assert_string_equal(st.state, "running");
    assert_true(st.has_seq);
    assert_int_equal(st.seq, 7);
    assert_string_equal(st.result, "failed");
    assert_int_equal(st.ms, 1767225600123);
    assert_string_equal(st.error, "c.yaml:3:5: bad = value");
    assert_string_equal(st.detail, "");
    /* an older daemon: no reload lines */
    cli_reload_parse("pid=1\nstate=running\n", 20, &st);
    assert_false(st.has_seq);
    assert_int_equal(st.pid, 1);
    /* not NUL-terminated, and a pid that is not one */
    cli_reload_parse("pid=-3\nreload_seq=29", 19, &st); /* len stops at 2 */
    assert_int_equal(st.pid, 0);
    assert_int_equal(st.seq, 2);
}

static void test_format_round_trip(void **state)
{
    char buf[2048], long_err[2000];
    struct cli_reload_status st;
    (void)state;
    int n = cli_reload_format(buf, sizeof(buf), 3, "failed", 1767225600000,
                              "f.yaml:1:2: one\nline\ttwo\r", "routes applied");
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    assert_non_null(strstr(buf, "reload_seq=3\nreload=failed\n"));
    cli_reload_parse(buf, (size_t)n, &st);
    assert_int_equal(st.seq, 3);
    assert_string_equal(st.error, "f.yaml:1:2: one line two ");
    assert_string_equal(st.detail, "routes applied");
    assert_int_equal(st.ms, 1767225600000);
    /* long text is cut to the cap, on both sides */
    memset(long_err, 'x', sizeof(long_err) - 1);
    long_err[sizeof(long_err) - 1] = '\0';
    n = cli_reload_format(buf, sizeof(buf), 4, "failed", 1, long_err, NULL);
    cli_reload_parse(buf, (size_t)n, &st);
    assert_int_equal(strlen(st.error), CLI_RELOAD_TEXT_MAX - 1);
    assert_int_equal(st.seq, 4);
}

static void test_print_last(void **state)
{
    char *text = NULL;
    size_t len = 0;
    struct cli_reload_status st;
    (void)state;
    FILE *f = open_memstream(&text, &len);
    static const char none[] = "reload_seq=0\nreload=none\n";
    static const char failed[] = "reload_seq=2\nreload=failed\n"
                                 "reload_ms=1767225600000\n"
                                 "reload_error=c.yaml:1:1: no\n";
    cli_reload_parse(none, sizeof(none) - 1, &st);
    cli_reload_print_last(&st, f); /* nothing: no reload yet */
    static const char ok[] = "reload_seq=3\nreload=ok\n"
                             "reload_ms=1767225600000\nreload_error=\n"
                             "reload_detail=routes applied\n";
    cli_reload_parse(failed, sizeof(failed) - 1, &st);
    cli_reload_print_last(&st, f);
    cli_reload_parse(ok, sizeof(ok) - 1, &st);
    cli_reload_print_last(&st, f);
    fclose(f);
    assert_string_equal(
        text,
        "  last reload failed at 2026-01-01 00:00:00 UTC: c.yaml:1:1: no\n"
        "  last reload ok at 2026-01-01 00:00:00 UTC: routes applied\n");
    free(text);
}

/* The fallback status path is log.status_file's default. */
static void test_fallback_is_the_default(void **state)
{
    static const char y[] = "gateway: {id: gw}\nroutes:\n"
                            "  - match: a/{x}\n    topic: t.{x}\n";
    struct conf c;
    char err[256];
    (void)state;
    assert_int_equal(
        conf_parse(y, sizeof(y) - 1, "t.yaml", &c, err, sizeof(err)), 0);
    assert_string_equal(c.log.status_file, CLI_RELOAD_STATUS_FALLBACK);
    conf_fini(&c);
}

/* ---- against a stand-in daemon -------------------------------------- */

/* How the stand-in answers SIGHUP. */
enum answer {
    ANSWER_OK,
    ANSWER_REFUSE,
    ANSWER_SILENT,
    ANSWER_EXIT,
    ANSWER_OLD
};

/* Forks a stand-in daemon: SIGHUP blocked before its status file shows its
 * pid; it then waits (at most 10 s) for SIGHUP and answers. Exit 0: it got
 * SIGHUP; 2: it did not. */
static pid_t stand_in(enum answer a)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    sigset_t set;
    siginfo_t si;
    struct timespec ts = {10, 0};
    int me = (int)getpid();
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    write_status(me, "running", 5, a == ANSWER_OLD ? NULL : "ok", NULL);
    if (sigtimedwait(&set, &si, &ts) != SIGHUP)
        _exit(2);
    struct timespec work = {0, 80 * 1000000L}; /* the reload takes a while */
    nanosleep(&work, NULL);
    if (a == ANSWER_OK)
        write_status(me, "running", 6, "ok", NULL);
    else if (a == ANSWER_REFUSE)
        write_status(me, "running", 6, "failed",
                     "/etc/m.yaml:4:3: unknown key \"rootes\"");
    else if (a == ANSWER_SILENT)
        nanosleep(&ts, NULL);
    _exit(0);
}

struct out {
    char *out, *err;
    size_t nout, nerr;
    FILE *fo, *fe;
};

static void out_open(struct out *o)
{
    memset(o, 0, sizeof(*o));
    o->fo = open_memstream(&o->out, &o->nout);
    o->fe = open_memstream(&o->err, &o->nerr);
    assert_true(o->fo && o->fe);
}

static void out_close(struct out *o)
{
    fclose(o->fo);
    fclose(o->fe);
}

static void out_free(struct out *o)
{
    free(o->out);
    free(o->err);
}

static int exit_code(pid_t pid)
{
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static void test_applied(void **state)
{
    struct out o;
    (void)state;
    pid_t pid = stand_in(ANSWER_OK);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 5000, o.fo, o.fe);
    out_close(&o);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o.out, "reloaded its configuration"));
    assert_string_equal(o.err, "");
    assert_int_equal(exit_code(pid), 0);
    out_free(&o);
}

static void test_refused(void **state)
{
    struct out o;
    (void)state;
    pid_t pid = stand_in(ANSWER_REFUSE);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 5000, o.fo, o.fe);
    out_close(&o);
    assert_int_equal(rc, EX_CONFIG_CODE);
    assert_non_null(strstr(o.err, "refused the new configuration"));
    assert_non_null(strstr(o.err, "/etc/m.yaml:4:3: unknown key \"rootes\""));
    assert_int_equal(exit_code(pid), 0);
    out_free(&o);
}

static void test_no_answer_is_bounded(void **state)
{
    struct out o;
    (void)state;
    pid_t pid = stand_in(ANSWER_SILENT);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 400, o.fo, o.fe);
    out_close(&o);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(o.err, "no answer from pid"));
    kill(pid, SIGKILL);
    exit_code(pid);
    out_free(&o);
}

static void test_daemon_exits(void **state)
{
    struct out o;
    (void)state;
    /* no zombie: a real daemon is not our child, and a zombie still
     * answers kill(pid, 0) */
    signal(SIGCHLD, SIG_IGN);
    pid_t pid = stand_in(ANSWER_EXIT);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 5000, o.fo, o.fe);
    out_close(&o);
    signal(SIGCHLD, SIG_DFL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(o.err, "exited during the reload"));
    out_free(&o);
}

static void test_older_daemon(void **state)
{
    struct out o;
    (void)state;
    pid_t pid = stand_in(ANSWER_OLD);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 5000, o.fo, o.fe);
    out_close(&o);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o.out, "does not report reload results"));
    assert_int_equal(exit_code(pid), 0); /* it got the SIGHUP */
    out_free(&o);
}

static void test_status_of_another_process(void **state)
{
    struct out o;
    (void)state;
    pid_t pid = stand_in(ANSWER_OK);
    /* wait for its file, then make it another process's */
    struct cli_reload_status st;
    for (int i = 0; i < 200; i++) {
        if (cli_reload_read(status_path, &st) == 0 && st.pid == (int)pid)
            break;
        usleep(10000);
    }
    write_status((int)getpid(), "running", 0, "none", NULL);
    out_open(&o);
    int rc = cli_reload_signal(status_path, (int)pid, 5000, o.fo, o.fe);
    out_close(&o);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(o.err, "is not its status file"));
    assert_int_equal(exit_code(pid), 0); /* signalled all the same */
    out_free(&o);
}

static void test_not_running(void **state)
{
    char conf[160];
    (void)state;
    snprintf(conf, sizeof(conf), "%s/conf.yaml", dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "gateway: {id: gw}\nlog: {status_file: %s}\nroutes:\n"
            "  - match: a/{x}\n    topic: t.{x}\n",
            status_path);
    fclose(f);
    unlink(status_path);
    assert_int_equal(cli_reload_main(conf, 0, NULL), 3); /* no file */
    write_status((int)getpid(), "stopped", 0, "none", NULL);
    assert_int_equal(cli_reload_main(conf, 0, NULL), 3); /* stopped */
    char *bad[] = {"12x"};
    assert_int_equal(cli_reload_main(conf, 1, bad), 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_print_last),
        cmocka_unit_test(test_fallback_is_the_default),
        cmocka_unit_test(test_applied),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_no_answer_is_bounded),
        cmocka_unit_test(test_daemon_exits),
        cmocka_unit_test(test_older_daemon),
        cmocka_unit_test(test_status_of_another_process),
        cmocka_unit_test(test_not_running),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
