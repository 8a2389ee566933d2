/*
 * m2k-herd — a thundering herd for the benchmarks: many MQTT clients connect
 * at once (a gateway's devices coming back after an outage) and each
 * publishes its readings at QoS 1 as fast as the broker takes them.
 *
 * One thread drives every client through libmosquitto's non-threaded API
 * (one poll() over all sockets), so a thousand clients cost a thousand
 * sockets, not a thousand threads. Client i is device "<prefix><i>"; its
 * readings are SensorReadings with seq 1..n, so m2k-verify can check them.
 * A client publishes as soon as its CONNACK arrives; libmosquitto holds the
 * messages beyond --inflight until PUBACKs make room.
 *
 * Output: one JSON line on stdout: start_ms (wall clock of the first
 * connect), connect_s (until every CONNACK), publish_s (until every PUBACK).
 * Exit 0 when every message was acknowledged, 1 if not, 2 on usage errors.
 */
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>

#include <mosquitto.h>

#include "telemetry.pb-c.h"
#include "test/tools/tools.h"

#define MAX_CLIENTS 10000u
#define MAX_SIZE    4096u

typedef Iot__Telemetry__V1__SensorReading Reading;

struct client {
    struct mosquitto *m;
    char name[48];
    char *topic;
    bool connected, published;
    unsigned acked;
};

struct herd {
    const char *host, *tpl, *prefix;
    int port;
    unsigned n_clients, per_client, inflight;
    size_t size;
    double timeout_s;
    struct client *cl;
    unsigned connected, done;
    uint64_t acked, sent, failed;
};

static struct herd H;

static size_t pack(const char *dev, uint64_t seq, size_t want, uint8_t *out)
{
    Reading r = IOT__TELEMETRY__V1__SENSOR_READING__INIT;
    char metric[MAX_SIZE];
    size_t base, pad;

    r.device_id = (char *)dev;
    r.timestamp_ms = tools_now_ms();
    r.metric = (char *)"temperature";
    r.value = 20.0 + (double)(seq % 100) / 10.0;
    r.unit = (char *)"C";
    r.seq = seq;
    base = iot__telemetry__v1__sensor_reading__get_packed_size(&r);
    pad = want > base ? want - base : 0;
    if (pad) { /* a longer metric name brings the reading to the size */
        memset(metric, 'x', pad + 11);
        memcpy(metric, "temperature", 11);
        metric[pad + 11] = '\0';
        r.metric = metric;
    }
    return iot__telemetry__v1__sensor_reading__pack(&r, out);
}

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    struct client *c = ud;
    uint8_t buf[MAX_SIZE + 64];
    (void)m;
    if (rc != 0) {
        fprintf(stderr, "m2k-herd: %s refused: %s\n", c->name,
                mosquitto_connack_string(rc));
        return;
    }
    if (!c->connected)
        H.connected++;
    c->connected = true;
    if (c->published)
        return;
    c->published = true;
    for (unsigned s = 1; s <= H.per_client; s++) {
        size_t len = pack(c->name, s, H.size, buf);
        if (mosquitto_publish(c->m, NULL, c->topic, (int)len, buf, 1, false) ==
            MOSQ_ERR_SUCCESS)
            H.sent++;
        else
            H.failed++;
    }
}

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
    struct client *c = ud;
    (void)m;
    (void)mid;
    H.acked++;
    if (++c->acked == H.per_client)
        H.done++;
}

static void usage(FILE *out)
{
    fputs("usage: m2k-herd [-H host] [-p port] [-c clients] [-n "
          "msgs-per-client]\n"
          "        [-s bytes] [-T topic-template] [--id-prefix P] [--inflight "
          "N]\n"
          "        [--timeout S]\n"
          "Defaults: -H 127.0.0.1 -p 1883 -c 1000 -n 200 -s 100 -T "
          "'herd/{device}'\n"
          "--inflight 100 --timeout 120. Prints one JSON line.\n",
          out);
}

static int parse(int argc, char **argv)
{
    static const struct option lo[] = {
        {"id-prefix", required_argument, NULL, 'P'},
        {"inflight", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int ch;
    H = (struct herd){.host = "127.0.0.1",
                      .port = 1883,
                      .n_clients = 1000,
                      .per_client = 200,
                      .size = 100,
                      .tpl = "herd/{device}",
                      .prefix = "herd",
                      .inflight = 100,
                      .timeout_s = 120};
    while ((ch = getopt_long(argc, argv, "H:p:c:n:s:T:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'H':
            H.host = optarg;
            break;
        case 'T':
            H.tpl = optarg;
            break;
        case 'P':
            H.prefix = optarg;
            break;
        case 'p':
            if (tools_parse_u64(optarg, 1, 65535, &v))
                return -1;
            H.port = (int)v;
            break;
        case 'c':
            if (tools_parse_u64(optarg, 1, MAX_CLIENTS, &v))
                return -1;
            H.n_clients = (unsigned)v;
            break;
        case 'n':
            if (tools_parse_u64(optarg, 1, 1000000, &v))
                return -1;
            H.per_client = (unsigned)v;
            break;
        case 's':
            if (tools_parse_u64(optarg, 1, MAX_SIZE, &v))
                return -1;
            H.size = (size_t)v;
            break;
        case 'i':
            if (tools_parse_u64(optarg, 1, 65535, &v))
                return -1;
            H.inflight = (unsigned)v;
            break;
        case 'w':
            if (tools_parse_double(optarg, 3600, &H.timeout_s))
                return -1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    return optind == argc && strlen(H.prefix) < 32 ? 0 : -1;
}

/* One pass over every socket: read, write, keepalive. */
static void drive(struct pollfd *pf, double *next_misc)
{
    unsigned i;
    for (i = 0; i < H.n_clients; i++) {
        struct mosquitto *m = H.cl[i].m;
        pf[i].fd = mosquitto_socket(m);
        pf[i].events = POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0);
        pf[i].revents = 0;
    }
    if (poll(pf, H.n_clients, 50) < 0)
        return;
    for (i = 0; i < H.n_clients; i++) {
        struct mosquitto *m = H.cl[i].m;
        if (pf[i].fd < 0)
            continue;
        if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
            mosquitto_loop_read(m, 1);
        if (mosquitto_want_write(m))
            mosquitto_loop_write(m, 1);
    }
    if (tools_mono() >= *next_misc) {
        for (i = 0; i < H.n_clients; i++)
            mosquitto_loop_misc(H.cl[i].m);
        *next_misc = tools_mono() + 0.1;
    }
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    struct pollfd *pf;
    double t0, t_conn = 0, t_pub = 0, next_misc = 0;
    int64_t start_ms;
    unsigned i;
    int rc = 0;

    if (parse(argc, argv)) {
        usage(stderr);
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    mosquitto_lib_init();
    H.cl = calloc(H.n_clients, sizeof *H.cl);
    pf = calloc(H.n_clients, sizeof *pf);
    if (!H.cl || !pf)
        return 1;
    for (i = 0; i < H.n_clients; i++) {
        struct client *c = &H.cl[i];
        snprintf(c->name, sizeof c->name, "%s%05u", H.prefix, i + 1);
        c->topic = tools_subst(H.tpl, c->name);
        c->m = mosquitto_new(c->name, true, c);
        if (!c->topic || !c->m)
            return 1;
        mosquitto_int_option(c->m, MOSQ_OPT_SEND_MAXIMUM, (int)H.inflight);
        mosquitto_max_inflight_messages_set(c->m, H.inflight);
        mosquitto_connect_callback_set(c->m, on_connect);
        mosquitto_publish_callback_set(c->m, on_publish);
    }
    start_ms = tools_now_ms();
    t0 = tools_mono();
    for (i = 0; i < H.n_clients; i++)
        if (mosquitto_connect(H.cl[i].m, H.host, H.port, 60) !=
            MOSQ_ERR_SUCCESS)
            fprintf(stderr, "m2k-herd: %s: cannot connect\n", H.cl[i].name);
    while (H.done < H.n_clients && tools_mono() - t0 < H.timeout_s) {
        drive(pf, &next_misc);
        if (!t_conn && H.connected == H.n_clients)
            t_conn = tools_mono() - t0;
    }
    t_pub = tools_mono() - t0;
    if (H.done < H.n_clients) {
        fprintf(stderr, "m2k-herd: timed out: %u of %u clients done\n", H.done,
                H.n_clients);
        rc = 1;
    }
    printf("{\"clients\":%u,\"connected\":%u,\"sent\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"start_ms\":%" PRId64
           ",\"connect_s\":%.3f,\"publish_s\":%.3f}\n",
           H.n_clients, H.connected, H.sent, H.acked, H.failed, start_ms,
           t_conn, t_pub);
    for (i = 0; i < H.n_clients; i++) {
        mosquitto_disconnect(H.cl[i].m);
        mosquitto_loop_write(H.cl[i].m, 1);
        mosquitto_destroy(H.cl[i].m);
        free(H.cl[i].topic);
    }
    free(H.cl);
    free(pf);
    mosquitto_lib_cleanup();
    return rc;
}
