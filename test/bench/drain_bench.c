/*
 * drain_bench.c — the backlog drain on its own: the spool drained through
 * the outbox into a producer, against librdkafka producing the same records
 * without us, both into librdkafka's in-process mock cluster, so the
 * numbers are the bridge's CPU and nothing of a broker or a network.
 *
 *   build/bench/drain_bench [-n records] [-p payload_bytes] [-d dir] [-m mode]
 *
 * mode "drain" (default) fills a spool with n 100-byte records carrying
 * the bridge's usual headers, then times outbox_drain/flush until all are
 * acked; "librdkafka" produces the same n records (same headers, an m2k.id
 * each) straight from memory; "both" runs both and prints the ratio. Under
 * callgrind (`valgrind --tool=callgrind --collect-atstart=no
 * --toggle-collect=drain_all`) the instruction counts per record are
 * stable on a noisy machine. Numbers are reported, never asserted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "bridge/kafka_out.h"
#include "bridge/outbox.h"
#include "bridge/record.h"
#include "spool/spool.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void)
{
    return (int64_t)(now_s() * 1000);
}

static struct outbox *ob_global;
static double drain_cpu; /* the drain thread's CPU seconds */

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_delivered(void *ud, int64_t id, enum kafka_out_outcome o,
                         const char *reason, const struct kafka_out_echo *echo)
{
    (void)ud;
    outbox_delivered(ob_global, id, o, reason, echo);
}

/* The headers the bridge puts on a record. */
static size_t headers(unsigned char *buf, size_t cap, int i)
{
    struct record_hdrs h = {.buf = buf, .cap = cap};
    char dev[32];
    snprintf(dev, sizeof(dev), "sensors/eu/temp/dev-%05d", i % 100);
    record_hdr_add_str(&h, "mqtt.topic", dev);
    record_hdr_add_i64(&h, "mqtt.qos", 1);
    record_hdr_add_i64(&h, "mqtt.retain", 0);
    record_hdr_add_str(&h, "gateway.id", "gw-bench");
    record_hdr_add_i64(&h, "received.ms", 1700000000000LL + i);
    return h.len;
}

/* The timed part, one function for callgrind's --toggle-collect. */
__attribute__((noinline)) static void drain_all(struct spool *sp,
                                                struct kafka_out *k,
                                                struct outbox *ob, int n)
{
    while (outbox_counters(ob)->delivered < n) {
        outbox_drain(ob, now_ms());
        kafka_out_flush(k, 1);
        kafka_out_poll(k);
        outbox_flush(ob, now_ms(), 1);
    }
    (void)sp;
}

__attribute__((noinline)) static void produce_all(rd_kafka_t *rk, int n,
                                                  size_t plen)
{
    static char payload[4096];
    unsigned char hb[512];
    memset(payload, 'x', sizeof(payload));
    for (int i = 0; i < n; i++) {
        char key[16], id[48];
        size_t hl = headers(hb, sizeof(hb), i);
        struct record_hdr rh[RECORD_MAX_HDRS];
        char names[512];
        int nh = record_hdrs_decode(hb, hl, rh, RECORD_MAX_HDRS, names,
                                    sizeof(names));
        rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)nh + 1);
        for (int j = 0; j < nh; j++)
            rd_kafka_header_add(h, rh[j].name, -1, rh[j].value,
                                (ssize_t)rh[j].len);
        snprintf(id, sizeof(id), "0123456789abcdef-%d", i + 1);
        rd_kafka_header_add(h, "m2k.id", -1, id, -1);
        snprintf(key, sizeof(key), "dev-%05d", i % 100);
        while (rd_kafka_producev(
                   rk, RD_KAFKA_V_TOPIC("bench"), RD_KAFKA_V_KEY(key, 9),
                   RD_KAFKA_V_VALUE(payload, plen),
                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 1);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
}

static double run_drain(const char *dir, int n, size_t plen)
{
    char path[512], err[600];
    snprintf(path, sizeof(path), "%s/drain_bench.db", dir);
    unlink(path);
    snprintf(err, sizeof(err), "%s-wal", path);
    unlink(err);
    struct spool_opts so = {.path = path, .sync = SPOOL_SYNC_NORMAL};
    struct spool *sp;
    if (spool_open(&so, &sp, err, sizeof(err))) {
        fprintf(stderr, "drain_bench: %s\n", err);
        exit(1);
    }
    static char payload[4096];
    memset(payload, 'x', sizeof(payload));
    static struct spool_rec r[1000];
    static unsigned char hb[1000][512];
    static char key[1000][16];
    for (int done = 0; done < n;) {
        int b = n - done < 1000 ? n - done : 1000;
        for (int i = 0; i < b; i++) {
            snprintf(key[i], sizeof(key[i]), "dev-%05d", (done + i) % 100);
            r[i] = (struct spool_rec){
                .topic = "bench",
                .key = key[i],
                .key_len = 9,
                .headers = hb[i],
                .headers_len = headers(hb[i], sizeof(hb[i]), done + i),
                .payload = payload,
                .payload_len = plen,
                .recv_ms = 1700000000000LL,
            };
        }
        if (spool_put(sp, r, (size_t)b)) {
            fprintf(stderr, "drain_bench: %s\n", spool_errmsg(sp));
            exit(1);
        }
        done += b;
    }
    struct kafka_out *k;
    struct kafka_out_prop props[] = {{"test.mock.num.brokers", "1"}};
    struct kafka_out_opts ko = {.brokers = "127.0.0.1:1",
                                .compression = "none",
                                .props = props,
                                .nprops = 1,
                                .queue_records = 10000};
    struct kafka_out_cb cb = {.delivered = on_delivered};
    struct outbox_opts oo = {.inflight_records = 10000,
                             .inflight_bytes = 16 << 20};
    if (outbox_new(sp, &oo, &ob_global) ||
        kafka_out_new(&ko, &cb, NULL, &k, err, sizeof(err))) {
        fprintf(stderr, "drain_bench: %s\n", err);
        exit(1);
    }
    outbox_set_producer(ob_global, k);
    double t0 = now_s(), c0 = thread_cpu_s();
    drain_all(sp, k, ob_global, n);
    double dt = now_s() - t0;
    drain_cpu = thread_cpu_s() - c0;
    kafka_out_free(k);
    outbox_free(ob_global);
    spool_close(sp);
    unlink(path);
    return n / dt;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *o)
{
    (void)rk, (void)m, (void)o;
}

static double run_librdkafka(int n, size_t plen)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
    rd_kafka_conf_set(conf, "compression.codec", "none", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "drain_bench: %s\n", err);
        exit(1);
    }
    double t0 = now_s();
    produce_all(rk, n, plen);
    double dt = now_s() - t0;
    rd_kafka_destroy(rk);
    return n / dt;
}

int main(int argc, char **argv)
{
    int n = 200000, opt;
    size_t plen = 100;
    const char *dir = ".", *mode = "both";
    while ((opt = getopt(argc, argv, "n:p:d:m:")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'p':
            plen = (size_t)atoi(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'm':
            mode = optarg;
            break;
        default:
            fprintf(stderr, "usage: drain_bench [-n records] [-p payload_bytes]"
                            " [-d dir] [-m drain|librdkafka|both]\n");
            return 2;
        }
    }
    if (plen > 4096 || n < 1)
        return 2;
    double d = 0, l = 0;
    if (strcmp(mode, "librdkafka"))
        d = run_drain(dir, n, plen);
    if (strcmp(mode, "drain"))
        l = run_librdkafka(n, plen);
    printf("{\"records\":%d,\"payload\":%zu,\"drain_per_s\":%.0f,"
           "\"drain_cpu_us_per_record\":%.2f,"
           "\"librdkafka_per_s\":%.0f,\"ratio\":%.2f}\n",
           n, plen, d, drain_cpu * 1e6 / n, l, d && l ? d / l : 0.0);
    return 0;
}
