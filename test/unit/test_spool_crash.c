/*
 * test_spool_crash.c — the spool keeps what it said was durable through
 * SIGKILL at random moments.
 *
 * A child process opens the spool and loops: put a batch of random size,
 * then write to a pipe "records <first id>..+n (run r, seqs s..) are
 * durable"; now and then peek the oldest records, ack them and write "acked
 * up to id". The parent kills the child with SIGKILL after a random few
 * milliseconds, many times, and after each kill reopens the spool and
 * checks what a user would see:
 *   - every record reported durable and not reported acked is there,
 *     exactly once, with the payload it was put with;
 *   - the records are in put order (ids rise, and so do (run, seq));
 *   - nothing reported acked came back;
 *   - the record count in stats matches what peek hands out.
 * Run for sync FULL and sync NORMAL. SIGKILL keeps the OS page cache, so
 * both must pass; what only a power cut would show (NORMAL losing its last
 * commits) is not tested here — see the header of spool.c.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"

#define KILLS      30
#define MAX_EXPECT 400000

struct msg {      /* written whole: smaller than PIPE_BUF */
    int32_t type; /* 'P' put durable, 'I' about to ack up to id, 'A' acked */
    int32_t run;
    int64_t id;  /* P: first id of the batch; A: highest id acked */
    int64_t seq; /* P: seq of the first record */
    int64_t n;   /* P: records in the batch */
};

struct want {
    int64_t id, seq;
    int run;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void child(const char *path, enum spool_sync sync, int run, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct spool_opts o = {.path = path, .sync = sync};
    struct spool *sp;
    char err[256];
    if (spool_open(&o, &sp, err, sizeof(err)))
        _exit(3);
    srand((unsigned)run * 7919u + 1);
    static char pay[100][400];
    struct spool_rec r[100], pk[150];
    int64_t seq = 0, ids[150];
    for (int it = 0;; it++) {
        int n = 1 + rand() % 100;
        for (int i = 0; i < n; i++) {
            int k = snprintf(pay[i], sizeof(pay[i]), "r=%d s=%" PRId64 ";", run,
                             seq + i);
            size_t len = (size_t)k + (size_t)(rand() % 300);
            memset(pay[i] + k, 'p', len - (size_t)k);
            memset(&r[i], 0, sizeof(r[i]));
            r[i].topic = "crash/test";
            r[i].payload = pay[i];
            r[i].payload_len = len;
            r[i].recv_ms = it;
            r[i].route = -1;
        }
        if (spool_put(sp, r, (size_t)n))
            _exit(4);
        struct msg m = {'P', run, r[0].id, seq, n};
        if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
            _exit(5);
        seq += n;
        if (it % 3 == 2) {
            int k = spool_peek(sp, pk, 150, SIZE_MAX);
            if (k < 0)
                _exit(6);
            for (int i = 0; i < k; i++)
                ids[i] = pk[i].id;
            /* say what may vanish before it does: a kill may fall between
             * the ack's commit and the report that it is done */
            struct msg in = {'I', run, k ? ids[k - 1] : 0, 0, 0};
            if (k && write(fd, &in, sizeof(in)) != (ssize_t)sizeof(in))
                _exit(5);
            if (k && spool_ack(sp, ids, (size_t)k))
                _exit(7);
            struct msg a = {'A', run, k ? ids[k - 1] : 0, 0, 0};
            if (k && write(fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
                _exit(5);
        }
    }
}

struct state {
    struct want *want;
    size_t nwant;
    int64_t acked;  /* every id <= this was reported acked */
    int64_t acking; /* ids <= this may be acked (the child said it would) */
    int64_t reported;
};

static void take(struct state *s, const struct msg *m)
{
    if (m->type == 'A') {
        if (m->id > s->acked)
            s->acked = m->id;
        return;
    }
    if (m->type == 'I') {
        if (m->id > s->acking)
            s->acking = m->id;
        return;
    }
    for (int64_t i = 0; i < m->n; i++) {
        assert_true(s->nwant < MAX_EXPECT);
        s->want[s->nwant++] = (struct want){m->id + i, m->seq + i, m->run};
    }
    s->reported += m->n;
}

/* Reads whatever the child wrote until the deadline or EOF. */
static void pump(int fd, struct state *s, int64_t deadline)
{
    struct msg m;
    for (;;) {
        int left = deadline < 0 ? 1000 : (int)(deadline - mono_ms());
        if (left < 0)
            return;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return;
        ssize_t k = read(fd, &m, sizeof(m));
        if (k <= 0)
            return;
        assert_int_equal(k, sizeof(m));
        take(s, &m);
    }
}

/* Reopens the spool and checks what the user would see. */
static void verify(const char *path, enum spool_sync sync, struct state *s)
{
    struct spool_opts o = {.path = path, .sync = sync};
    struct spool *sp;
    char err[256];
    assert_int_equal(spool_open(&o, &sp, err, sizeof(err)), 0);
    struct spool_rec r[500];
    size_t w = 0, seen = 0;
    int64_t prev_id = 0, prev_run = -1, prev_seq = -1;
    /* what was (maybe) acked need not be there */
    size_t keep = 0;
    for (size_t i = 0; i < s->nwant; i++)
        if (s->want[i].id > s->acking)
            s->want[keep++] = s->want[i];
    s->nwant = keep;
    int k;
    while ((k = spool_peek(sp, r, 500, SIZE_MAX)) > 0) {
        for (int i = 0; i < k; i++, seen++) {
            int run = -1;
            int64_t seq = -1;
            char b[48] = "";
            memcpy(b, r[i].payload,
                   r[i].payload_len < 47 ? r[i].payload_len : 47);
            assert_int_equal(sscanf(b, "r=%d s=%" SCNd64 ";", &run, &seq), 2);
            assert_true(r[i].id > prev_id);  /* once, in order */
            assert_true(r[i].id > s->acked); /* acks stay done */
            assert_true(run > prev_run || (run == prev_run && seq > prev_seq));
            prev_id = r[i].id;
            prev_run = run;
            prev_seq = seq;
            if (w < s->nwant && s->want[w].id == r[i].id) {
                assert_int_equal(s->want[w].run, run);
                assert_int_equal(s->want[w].seq, seq);
                w++;
            }
        }
    }
    assert_int_equal(k, 0);
    if (w != s->nwant)
        fail_msg("durable record id %" PRId64 " (run %d seq %" PRId64
                 ") is missing after SIGKILL",
                 s->want[w].id, s->want[w].run, s->want[w].seq);
    struct spool_stats st;
    assert_int_equal(spool_stats(sp, &st), 0);
    assert_int_equal(st.records, (int64_t)seen);
    spool_close(sp);
}

static void crash_loop(enum spool_sync sync)
{
    char dir[256], path[300];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/spool-crash-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/spool.db", dir);
    struct state s = {calloc(MAX_EXPECT, sizeof(struct want)), 0, 0, 0, 0};
    srand((unsigned)time(NULL));
    int killed_mid = 0;
    for (int run = 0; run < KILLS; run++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(path, sync, run, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* let it run 5..60 ms, reading its reports as they come */
        pump(fds[0], &s, mono_ms() + 5 + rand() % 56);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("child exited with %d instead of being killed",
                     WEXITSTATUS(status));
        killed_mid++;
        pump(fds[0], &s, -1); /* the rest, up to EOF */
        close(fds[0]);
        verify(path, sync, &s);
    }
    fprintf(stderr,
            "# sync %s: %d kills, %" PRId64 " records reported"
            " durable, all present; acked up to id %" PRId64 "\n",
            sync == SPOOL_SYNC_FULL ? "full" : "normal", killed_mid, s.reported,
            s.acked);
    assert_true(s.reported > KILLS); /* the child really made progress */
    free(s.want);
    char p[400];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_crash_sync_full(void **state)
{
    (void)state;
    crash_loop(SPOOL_SYNC_FULL);
}

static void test_crash_sync_normal(void **state)
{
    (void)state;
    crash_loop(SPOOL_SYNC_NORMAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_sync_full),
        cmocka_unit_test(test_crash_sync_normal),
    };
    return cmocka_run_group_tests_name("spool_crash", tests, NULL, NULL);
}
