/*
 * spool_bench.c — throughput and bytes written per record of the spool.
 *
 *   build/bench/spool_bench [-d dir] [-n records] [-p payload_bytes]
 *
 * For each sync setting and batch size it runs the bridge's steady state:
 * put a batch (one transaction), peek it, ack it; then an outage: put
 * everything first (Kafka down), then drain it. It prints records/s and the
 * bytes written per record from /proc/self/io: write_bytes is what reached
 * the block layer (flash wear), wchar what SQLite handed to write(). The
 * directory must be on a real disk (not tmpfs) for write_bytes to mean
 * anything; it defaults to the current directory. Numbers are reported,
 * never asserted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"

#define MAX_BATCH 1000

struct io {
    int64_t wchar, write_bytes;
};

static struct io io_now(void)
{
    struct io v = {0, 0};
    char line[128];
    FILE *f = fopen("/proc/self/io", "r");
    while (f && fgets(line, sizeof(line), f)) {
        long long x;
        if (sscanf(line, "wchar: %lld", &x) == 1)
            v.wchar = x;
        else if (sscanf(line, "write_bytes: %lld", &x) == 1)
            v.write_bytes = x;
    }
    if (f)
        fclose(f);
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct spool_rec recs[MAX_BATCH], out[MAX_BATCH];
static int64_t ids[MAX_BATCH];
static char payload[MAX_BATCH][4096];

static void fill(int n, size_t plen)
{
    for (int i = 0; i < n; i++) {
        memset(&recs[i], 0, sizeof(recs[i]));
        recs[i].topic = "site/gw1/sensors/temp";
        recs[i].key = "sensor-7";
        recs[i].key_len = 8;
        recs[i].headers = "ct=proto;v=1;rt=3";
        recs[i].headers_len = 16;
        snprintf(payload[i], sizeof(payload[i]), "%08x", rand());
        memset(payload[i] + 8, 'a' + i % 26, plen - 8);
        recs[i].payload = payload[i];
        recs[i].payload_len = plen;
        recs[i].recv_ms = 1700000000000;
        recs[i].route = 0;
    }
}

static int drain(struct spool *sp, int batch, int64_t *done)
{
    int k;
    while ((k = spool_peek(sp, out, (size_t)batch, SIZE_MAX)) > 0) {
        for (int i = 0; i < k; i++)
            ids[i] = out[i].id;
        if (spool_ack(sp, ids, (size_t)k))
            return -1;
        *done += k;
    }
    return k;
}

static void report(const char *what, const char *sync, int batch, int64_t n,
                   double dt, struct io a, struct io b, int64_t file)
{
    printf("%-8s %-6s %6d %9" PRId64 " %11.0f %11.1f %11.1f %10" PRId64 "\n",
           what, sync, batch, n, (double)n / dt,
           (double)(b.write_bytes - a.write_bytes) / (double)n,
           (double)(b.wchar - a.wchar) / (double)n, file);
    fflush(stdout);
}

static int run(const char *dir, enum spool_sync sync, int batch, int64_t n,
               size_t plen, int outage)
{
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/spool-bench-%d.db", dir, (int)getpid());
    struct spool_opts o = {.path = path, .on_full = SPOOL_DROP_OLDEST, .sync = sync};
    struct spool *sp;
    int rc = spool_open(&o, &sp, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "spool_open: %s\n", err);
        return 1;
    }
    const char *sn = sync == SPOOL_SYNC_FULL ? "full" : "normal";
    fill(batch, plen);
    struct io a = io_now();
    double t0 = now_s();
    int64_t done = 0;
    for (int64_t put = 0; put < n && rc == 0; put += batch) {
        rc = spool_put(sp, recs, (size_t)batch);
        if (rc == 0 && !outage)
            rc = drain(sp, batch, &done);
    }
    if (rc == 0 && outage) {
        struct spool_stats st;
        spool_stats(sp, &st);
        report("fill", sn, batch, n, now_s() - t0, a, io_now(), st.file_bytes);
        a = io_now();
        t0 = now_s();
        rc = drain(sp, batch, &done);
    }
    struct spool_stats st;
    spool_stats(sp, &st);
    if (rc == 0)
        report(outage ? "drain" : "steady", sn, batch, done, now_s() - t0, a,
               io_now(), st.file_bytes);
    else
        fprintf(stderr, "failed: %d %s\n", rc, spool_errmsg(sp));
    spool_close(sp);
    unlink(path);
    char wal[600];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    return rc != 0;
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int64_t n = 200000;
    size_t plen = 100;
    int c;
    while ((c = getopt(argc, argv, "d:n:p:")) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            n = atoll(optarg);
            break;
        case 'p':
            plen = (size_t)atol(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-d dir] [-n records] [-p bytes]\n",
                    argv[0]);
            return 2;
        }
    }
    if (plen < 8 || plen > sizeof(payload[0]) || n < MAX_BATCH) {
        fprintf(stderr, "payload 8..4096 bytes, records >= %d\n", MAX_BATCH);
        return 2;
    }
    printf("# %zu-byte payloads (+8 key, +16 headers, +21 topic) in %s\n", plen,
           dir);
    printf("%-8s %-6s %6s %9s %11s %11s %11s %10s\n", "phase", "sync", "batch",
           "records", "records/s", "disk B/rec", "write B/rec", "file B");
    int fail = 0;
    static const int batches[] = {1000, 100, 10};
    for (int s = 0; s < 2; s++) {
        enum spool_sync sync = s ? SPOOL_SYNC_FULL : SPOOL_SYNC_NORMAL;
        for (size_t b = 0; b < sizeof(batches) / sizeof(*batches); b++) {
            /* small batches under fsync: bound the run time */
            int64_t m = batches[b] < 100 ? n / 10 : n;
            fail |= run(dir, sync, batches[b], m, plen, 0);
        }
        fail |= run(dir, sync, MAX_BATCH, n, plen, 1);
    }
    return fail;
}
