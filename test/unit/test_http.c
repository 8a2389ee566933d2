/*
 * test_http.c — the HTTP server in a poll() loop, with real sockets on
 * 127.0.0.1: what a scraper sees (GET, HEAD, 404, 405, 413, keep-alive, a
 * body over the cap), listen addresses, a port in use and the retry, and
 * hostile clients: one that stalls half-way, one that trickles, a 64 KiB
 * header, more connections than the limits. Meanwhile a good client is
 * still served, and the loop is never held: every http_run() is timed
 * and the longest is reported (and must stay far below the 1 s that a
 * blocking call would take here).
 *
 * The test is the loop: it polls http_fd() and its own client sockets,
 * and calls http_run() only as the header says (fd readable, or
 * http_timeout_ms() passed), so a dishonest timeout shows up as a
 * connection that is never closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bridge/http.h"
#include "bridge/prom.h"

/* A blocking call in http_run() would show as >= 1 s (the idle timeouts
 * used here); this bound only tells "never waits" from "waited". */
#define RUN_BOUND_US 250000

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- the application -------------------------------------------------- */

struct app {
    unsigned calls;
    char method[16], path[128];
};

static void handler(void *ud, const char *method, const char *path,
                    struct http_response *res)
{
    struct app *a = ud;
    a->calls++;
    snprintf(a->method, sizeof a->method, "%s", method);
    snprintf(a->path, sizeof a->path, "%s", path);
    if (strcmp(path, "/metrics") == 0) {
        struct prom p;
        size_t len;
        prom_init(&p, res->body, res->cap);
        prom_family(&p, "m2k_test_scrapes_total", PROM_COUNTER, "Scrapes.");
        prom_u64(&p, "m2k_test_scrapes_total", NULL, 0, 7);
        if (prom_finish(&p, &len)) {
            http_response_printf(res, 500, "metrics do not fit\n");
            return;
        }
        res->status = 200;
        res->len = len;
        res->content_type = PROM_CONTENT_TYPE;
    } else if (strcmp(path, "/healthz") == 0) {
        http_response_printf(res, 200, "ok\n");
    } else if (strcmp(path, "/big") == 0) {
        http_response_printf(res, 200, "%*s", (int)res->cap, "x");
    }
}

static const char metrics_body[] = "# HELP m2k_test_scrapes_total Scrapes.\n"
                                   "# TYPE m2k_test_scrapes_total counter\n"
                                   "m2k_test_scrapes_total 7\n";

/* --- the loop ---------------------------------------------------------- */

struct client {
    int fd;
    bool head; /* the response has no body */
    bool eof;  /* the server closed (0 read or an error) */
    int err;
    int64_t eof_us;
    size_t n, cap;
    char *in; /* cap bytes */
};

struct srv {
    struct http *h;
    struct app app;
    int64_t max_run_us;
    uint64_t runs;
};

/* Wall time includes being preempted (the machine may be busy); CPU
 * time is the work itself. */
static int64_t max_run_all_us, max_cpu_all_us;

static int64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void run(struct srv *s)
{
    int64_t t0 = now_us(), c0 = cpu_us(), dt, dc;
    http_run(s->h);
    dt = now_us() - t0;
    dc = cpu_us() - c0;
    s->runs++;
    if (dt > s->max_run_us)
        s->max_run_us = dt;
    if (dt > max_run_all_us)
        max_run_all_us = dt;
    if (dc > max_cpu_all_us)
        max_cpu_all_us = dc;
}

static void pump(struct client *c)
{
    while (!c->eof) {
        ssize_t r = recv(c->fd, c->in + c->n, c->cap - 1 - c->n, 0);
        if (r > 0) {
            c->n += (size_t)r;
            c->in[c->n] = '\0';
            if (c->n == c->cap - 1)
                break;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        c->eof = true;
        c->err = r < 0 ? errno : 0;
        c->eof_us = now_us();
    }
}

/* One turn: poll the server and the clients for at most cap_ms, then
 * http_run() if its fd was readable or its timeout passed. */
static void turn(struct srv *s, struct client **cl, size_t ncl, int cap_ms)
{
    struct pollfd pf[256];
    int t = http_timeout_ms(s->h), fd = http_fd(s->h), wait = cap_ms, r;
    int64_t due = t >= 0 ? now_us() + (int64_t)t * 1000 : INT64_MAX;
    size_t n = 0;

    assert_true(ncl < 255);
    if (t >= 0 && t < wait)
        wait = t;
    if (fd >= 0)
        pf[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
    for (size_t i = 0; i < ncl; i++)
        pf[n++] = (struct pollfd){.fd = cl[i]->eof ? -1 : cl[i]->fd,
                                  .events = POLLIN};
    r = poll(pf, n, wait);
    assert_true(r >= 0 || errno == EINTR);
    if ((fd >= 0 && (pf[0].revents & POLLIN)) || now_us() >= due)
        run(s);
    for (size_t i = 0; i < ncl; i++)
        pump(cl[i]);
}

static void spin(struct srv *s, struct client **cl, size_t ncl, int ms)
{
    int64_t end = now_us() + (int64_t)ms * 1000;
    while (now_us() < end)
        turn(s, cl, ncl, 10);
}

static size_t content_length(const struct client *c)
{
    const char *p = strcasestr(c->in, "\r\nContent-Length:");
    return p ? strtoul(p + 17, NULL, 10) : 0;
}

static bool complete(const struct client *c)
{
    const char *end = strstr(c->in, "\r\n\r\n");
    if (c->eof)
        return true;
    if (!end)
        return false;
    if (c->head)
        return true;
    return c->n >= (size_t)(end + 4 - c->in) + content_length(c);
}

/* Runs turns until c has a whole response or the server closed it;
 * returns the time it took in ms, or -1 after max_ms. */
static int wait_response(struct srv *s, struct client *c, struct client **more,
                         size_t nmore, int max_ms)
{
    struct client *all[256];
    int64_t t0 = now_us(), end = t0 + (int64_t)max_ms * 1000;
    all[0] = c;
    for (size_t i = 0; i < nmore; i++)
        all[i + 1] = more[i];
    while (!complete(c)) {
        if (now_us() >= end)
            return -1;
        turn(s, all, nmore + 1, 10);
    }
    return (int)((now_us() - t0) / 1000);
}

static int cli_open(uint16_t port, const char *src)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (src) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &b.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof b), 0);
    }
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        assert_int_equal(errno, EINPROGRESS);
    return fd;
}

/* cap: the most of a response kept (the flood's clients keep little, so
 * the test's own memory does not hide the server's). */
static struct client *cli_new_cap(uint16_t port, const char *src, size_t cap)
{
    struct client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->in = calloc(1, cap);
    assert_non_null(c->in);
    c->cap = cap;
    c->fd = cli_open(port, src);
    return c;
}

static struct client *cli_new(uint16_t port, const char *src)
{
    return cli_new_cap(port, src, 65536);
}

static void cli_free(struct client *c)
{
    if (c) {
        close(c->fd);
        free(c->in);
        free(c);
    }
}

/* Sends all of s, turning the loop while the socket is full; false if
 * the server closed first. */
static bool cli_send(struct srv *s, struct client *c, const char *data,
                     size_t len)
{
    size_t off = 0;
    int64_t end = now_us() + 3000000;
    while (off < len && now_us() < end) {
        ssize_t w = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != ENOTCONN)
            return false;
        turn(s, &c, 1, 5);
        if (c->eof)
            return false;
    }
    return off == len;
}

static int status_of(const struct client *c)
{
    int st = 0;
    if (sscanf(c->in, "HTTP/1.%*d %d", &st) != 1)
        return 0;
    return st;
}

static const char *body_of(const struct client *c)
{
    const char *end = strstr(c->in, "\r\n\r\n");
    return end ? end + 4 : "";
}

static bool has_header(const struct client *c, const char *line)
{
    char want[256];
    snprintf(want, sizeof want, "\r\n%s\r\n", line);
    return strcasestr(c->in, want) != NULL;
}

/* A request on a new connection; the response in the returned client. */
static struct client *request(struct srv *s, uint16_t port, const char *req)
{
    struct client *c = cli_new(port, NULL);
    c->head = strncmp(req, "HEAD ", 5) == 0;
    assert_true(cli_send(s, c, req, strlen(req)));
    if (wait_response(s, c, NULL, 0, 3000) < 0)
        fail_msg("no response to %.40s", req);
    return c;
}

static uint16_t port_of(const struct http *h)
{
    struct http_info in;
    const char *colon;
    http_info(h, &in);
    colon = strrchr(in.address, ':');
    assert_non_null(colon);
    return (uint16_t)atoi(colon + 1);
}

static struct srv *srv_new(const char *listen, const struct http_limits *l)
{
    struct srv *s = calloc(1, sizeof *s);
    char err[256];
    assert_non_null(s);
    if (http_new(listen, l, handler, &s->app, &s->h, err, sizeof err))
        fail_msg("http_new: %s", err);
    if (http_start(s->h))
        fail_msg("http_start: %s", http_error(s->h));
    return s;
}

static void srv_free(struct srv *s)
{
    http_free(s->h);
    free(s);
}

static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* --- what a scraper sees ------------------------------------------------ */

static void test_get_head_404(void **state)
{
    struct srv *s;
    struct client *c;
    int before = threads();
    (void)state;

    s = srv_new("127.0.0.1:0", NULL);
    /* External polling: MHD started no thread. */
    assert_int_equal(threads(), before);

    c = request(s, port_of(s->h),
                "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n"
                "Connection: close\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    assert_string_equal(body_of(c), metrics_body);
    assert_true(has_header(c, "Content-Type: " PROM_CONTENT_TYPE));
    assert_string_equal(s->app.method, "GET");
    assert_string_equal(s->app.path, "/metrics");
    cli_free(c);

    c = request(s, port_of(s->h), "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    assert_string_equal(body_of(c), "");
    assert_int_equal(content_length(c), strlen(metrics_body));
    assert_string_equal(s->app.method, "HEAD");
    cli_free(c);

    c = request(s, port_of(s->h),
                "GET /nope HTTP/1.0\r\n\r\n"); /* HTTP/1.0 closes */
    assert_int_equal(status_of(c), 404);
    assert_string_equal(body_of(c), "not found\n");
    cli_free(c);

    c = request(s, port_of(s->h), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    assert_string_equal(body_of(c), "ok\n");
    assert_true(has_header(c, "Content-Type: text/plain; charset=utf-8"));
    cli_free(c);
    assert_int_equal(s->app.calls, 4);
    srv_free(s);
}

static void test_405_413(void **state)
{
    static const char *const reqs[] = {
        "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        "DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
        "PUT /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    struct srv *s = srv_new("127.0.0.1:0", NULL);
    struct http_info in;
    struct client *c;
    (void)state;

    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        c = request(s, port_of(s->h), reqs[i]);
        if (status_of(c) != 405)
            fail_msg("%.20s: %s", reqs[i], c->in);
        assert_true(has_header(c, "Allow: GET, HEAD"));
        cli_free(c);
    }
    /* A body, even on a GET, is refused before it is read. */
    c = request(s, port_of(s->h),
                "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                "\r\nhello");
    assert_int_equal(status_of(c), 413);
    cli_free(c);
    c = request(s, port_of(s->h),
                "GET /metrics HTTP/1.1\r\nHost: t\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(status_of(c), 413);
    cli_free(c);

    assert_int_equal(s->app.calls, 0); /* the handler never saw them */
    http_info(s->h, &in);
    assert_int_equal(in.refused, 6);
    assert_int_equal(in.requests, 0);
    srv_free(s);
}

static void test_keepalive_and_cap(void **state)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    struct http_limits l;
    struct srv *s;
    struct client *c;
    (void)state;

    http_limits_default(&l);
    l.body_max = 4096;
    s = srv_new("127.0.0.1:0", &l);
    /* Two scrapes on one connection: it stays open between them. */
    c = cli_new(port_of(s->h), NULL);
    assert_true(cli_send(s, c, req, sizeof req - 1));
    assert_true(wait_response(s, c, NULL, 0, 3000) >= 0);
    assert_int_equal(status_of(c), 200);
    assert_false(c->eof);
    c->n = 0;
    c->in[0] = '\0';
    assert_true(cli_send(s, c, req, sizeof req - 1));
    assert_true(wait_response(s, c, NULL, 0, 3000) >= 0);
    assert_int_equal(status_of(c), 200);
    assert_string_equal(body_of(c), metrics_body);
    cli_free(c);

    /* A body over the cap is a 500, not a cut text. */
    c = request(s, port_of(s->h), "GET /big HTTP/1.0\r\n\r\n");
    assert_int_equal(status_of(c), 500);
    assert_string_equal(body_of(c), "response too large\n");
    cli_free(c);
    srv_free(s);
}

/* --- listen addresses and a port in use ---------------------------------- */

static void test_listen_addresses(void **state)
{
    static const char *const good[] = {
        "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464",    ":9464",
        "localhost:9464", "[::]:0",     "[fe80::1%1]:9464"};
    static const struct {
        const char *addr, *says;
    } bad[] = {
        {"", "empty"},
        {"127.0.0.1", "no port"},
        {"127.0.0.1:", "port"},
        {"127.0.0.1:65536", "port"},
        {"127.0.0.1:-1", "port"},
        {"127.0.0.1:94a", "port"},
        {"::1:9464", "brackets"},
        {"[::1]9464", "[IPv6 address]:port"},
        {"[::1:9464", "[IPv6 address]:port"},
        {"[127.0.0.1]:9464", "not an IPv6"},
        {"example.org:9464", "names are not looked up"},
        {"127.1:9464", "not an IPv4"},
        {"off", "no port"},
    };
    char err[256];
    struct http *h;
    (void)state;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (http_check_listen(good[i], err, sizeof err))
            fail_msg("%s: %s", good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(http_check_listen(bad[i].addr, err, sizeof err),
                         -EINVAL);
        if (!strstr(err, bad[i].says))
            fail_msg("'%s': '%s' does not say '%s'", bad[i].addr, err,
                     bad[i].says);
    }
    assert_int_equal(http_new("nope", NULL, handler, NULL, &h, err, sizeof err),
                     -EINVAL);
    assert_null(h);
}

/* ":port" serves IPv4 clients too (dual stack, or IPv4 alone). */
static void test_every_address(void **state)
{
    struct srv *s = srv_new(":0", NULL);
    struct http_info in;
    struct client *c;
    (void)state;

    http_info(s->h, &in);
    assert_true(in.listening);
    assert_true(strncmp(in.address, "[::]:", 5) == 0 ||
                strncmp(in.address, "0.0.0.0:", 8) == 0);
    c = request(s, port_of(s->h), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    cli_free(c);
    srv_free(s);
}

static void test_port_in_use(void **state)
{
    struct srv *a = srv_new("127.0.0.1:0", NULL), b = {0};
    struct http_limits l;
    struct http_info in;
    struct client *c;
    char addr[64], err[256];
    int t;
    int64_t t0;
    (void)state;

    snprintf(addr, sizeof addr, "127.0.0.1:%u", port_of(a->h));
    http_limits_default(&l);
    l.retry_s = 1;
    if (http_new(addr, &l, handler, &b.app, &b.h, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(http_start(b.h), -EADDRINUSE);
    if (!strstr(http_error(b.h), addr) || !strstr(http_error(b.h), "in use"))
        fail_msg("message: %s", http_error(b.h));
    print_message("  port in use: \"%s\"\n", http_error(b.h));
    assert_int_equal(http_fd(b.h), -1);
    t = http_timeout_ms(b.h);
    assert_true(t > 0 && t <= 1000);
    http_info(b.h, &in);
    assert_false(in.listening);
    assert_true(in.retry_in_ms >= 0 && in.retry_in_ms <= 1000);

    /* The first server is unharmed. */
    c = request(a, port_of(a->h), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    cli_free(c);

    /* Not due yet: nothing tried. Due: a retry while the port is still
     * taken fails again, and says so; then it waits retry_s again. */
    assert_int_equal(http_run(b.h), 0);
    usleep((useconds_t)(http_timeout_ms(b.h) + 20) * 1000);
    assert_int_equal(http_run(b.h), -EADDRINUSE);
    assert_true(strstr(http_error(b.h), "in use") != NULL);
    assert_int_equal(http_run(b.h), 0);
    t = http_timeout_ms(b.h);
    assert_true(t > 900 && t <= 1000);

    /* The port comes free: the next retry binds, within retry_s. */
    srv_free(a);
    t0 = now_us();
    while (http_fd(b.h) < 0 && now_us() - t0 < 3000000)
        turn(&b, NULL, 0, 50);
    assert_true(http_fd(b.h) >= 0);
    assert_string_equal(http_error(b.h), "");
    print_message("  bound %lld ms after the port came free\n",
                  (long long)(now_us() - t0) / 1000);
    c = request(&b, port_of(b.h), "GET /metrics HTTP/1.0\r\n\r\n");
    assert_int_equal(status_of(c), 200);
    cli_free(c);
    http_free(b.h);
}

/* --- hostile clients ----------------------------------------------------- */

static const char good_req[] = "GET /metrics HTTP/1.0\r\n\r\n";

/* Half a request, then silence: closed after idle_s, while another client
 * is served at once. */
static void test_slowloris(void **state)
{
    static const char half[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: ";
    struct http_limits l;
    struct srv *s;
    struct client *slow, *good;
    int ms;
    int64_t t0;
    (void)state;

    http_limits_default(&l);
    l.idle_s = 2;
    s = srv_new("127.0.0.1:0", &l);
    slow = cli_new(port_of(s->h), NULL);
    t0 = now_us();
    assert_true(cli_send(s, slow, half, sizeof half - 1));
    spin(s, &slow, 1, 200);
    assert_false(slow->eof);

    good = cli_new(port_of(s->h), NULL);
    assert_true(cli_send(s, good, good_req, sizeof good_req - 1));
    ms = wait_response(s, good, &slow, 1, 3000);
    assert_true(ms >= 0);
    assert_int_equal(status_of(good), 200);
    print_message("  good client served in %d ms beside a slowloris\n", ms);
    assert_true(ms < 1000); /* not after the slowloris' timeout */

    while (!slow->eof && now_us() - t0 < 5000000)
        turn(s, &slow, 1, 50);
    assert_true(slow->eof);
    ms = (int)((slow->eof_us - t0) / 1000);
    print_message("  slowloris closed after %d ms (idle_s 2)\n", ms);
    assert_true(ms >= 1900 && ms < 3500);
    assert_int_equal(slow->n, 0); /* no response, just closed */
    print_message("  max http_run: %lld us over %llu runs\n",
                  (long long)s->max_run_us, (unsigned long long)s->runs);
    assert_true(s->max_run_us < RUN_BOUND_US);
    cli_free(slow);
    cli_free(good);
    srv_free(s);
}

/* One byte every 150 ms never trips the idle timeout; the request
 * deadline cuts it. */
static void test_trickle(void **state)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Long: "
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    struct http_limits l;
    struct http_info in;
    struct srv *s;
    struct client *slow, *good;
    int64_t t0, next;
    size_t sent = 0;
    (void)state;

    http_limits_default(&l);
    l.idle_s = 1;
    l.request_ms = 1500;
    s = srv_new("127.0.0.1:0", &l);
    slow = cli_new(port_of(s->h), NULL);
    t0 = next = now_us();
    while (!slow->eof && now_us() - t0 < 4000000) {
        if (now_us() >= next && sent < sizeof req - 1) {
            if (send(slow->fd, req + sent, 1, MSG_NOSIGNAL) == 1)
                sent++;
            next += 150000;
        }
        turn(s, &slow, 1, 20);
    }
    assert_true(slow->eof);
    print_message("  trickling client cut after %lld ms, %zu bytes sent\n",
                  (long long)(slow->eof_us - t0) / 1000, sent);
    assert_true(slow->eof_us - t0 >= 1400000 && slow->eof_us - t0 < 2500000);
    http_info(s->h, &in);
    assert_int_equal(in.cut, 1);

    good = request(s, port_of(s->h), good_req);
    assert_int_equal(status_of(good), 200);
    assert_true(s->max_run_us < RUN_BOUND_US);
    cli_free(slow);
    cli_free(good);
    srv_free(s);
}

/* 64 KiB of header: refused (431) and closed without reading it all; the
 * memory does not grow however often it is tried. */
static void test_huge_header(void **state)
{
    static char req[70000];
    struct srv *s = srv_new("127.0.0.1:0", NULL);
    struct http_info in;
    long rss0 = 0, rss1;
    size_t n;
    int statuses[3] = {0};
    (void)state;

    n = (size_t)snprintf(req, sizeof req,
                         "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'a', 65536);
    n += 65536;
    memcpy(req + n, "\r\n\r\n", 4);
    n += 4;

    for (int i = 0; i < 40; i++) {
        struct client *c = cli_new(port_of(s->h), NULL);
        int64_t t0 = now_us();
        (void)cli_send(s, c, req, n); /* the server may close mid-way */
        while (!c->eof && now_us() - t0 < 3000000)
            turn(s, &c, 1, 10);
        assert_true(c->eof); /* closed by the server, not by a timeout */
        assert_true(now_us() - t0 < 900000);
        if (status_of(c) == 431)
            statuses[0]++;
        else if (status_of(c) == 0)
            statuses[1]++; /* reset before the 431 could be read */
        else
            statuses[2]++;
        cli_free(c);
        if (i == 9)
            rss0 = rss_kib();
    }
    rss1 = rss_kib();
    print_message("  64 KiB header: %d x 431, %d x reset, RSS %ld -> %ld KiB "
                  "over 30 more tries\n",
                  statuses[0], statuses[1], rss0, rss1);
    assert_int_equal(statuses[2], 0);
    assert_true(statuses[0] > 0);
#ifndef __SANITIZE_ADDRESS__ /* ASan holds freed memory in quarantine */
    assert_true(rss1 - rss0 < 512);
#endif
    spin(s, NULL, 0, 50);
    http_info(s->h, &in);
    assert_int_equal(in.conns, 0);
    assert_int_equal(s->app.calls, 0);
    assert_true(s->max_run_us < RUN_BOUND_US);

    /* The same for a 64 KiB URL: 414. */
    {
        struct client *c = cli_new(port_of(s->h), NULL);
        memcpy(req, "GET /", 5);
        memset(req + 5, 'u', 65536);
        memcpy(req + 5 + 65536, " HTTP/1.1\r\n\r\n", 13);
        (void)cli_send(s, c, req, 5 + 65536 + 13);
        while (!c->eof)
            turn(s, &c, 1, 10);
        assert_true(status_of(c) == 414 || status_of(c) == 0);
        cli_free(c);
    }
    srv_free(s);
}

static bool all_open(struct client **c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (c[i]->eof)
            return false;
    return true;
}

/* Over the per-address limit: closed at once. Over the total: they wait in
 * the backlog, unserved, until the idle timeout frees a slot. The loop
 * keeps turning throughout. */
static void test_connection_limits(void **state)
{
    struct http_limits l;
    struct http_info in;
    struct srv *s;
    struct client *c[64], *late;
    char src[32];
    int ms;
    int64_t t0;
    (void)state;

    http_limits_default(&l);
    l.max_conns = 4;
    l.max_per_ip = 2;
    l.idle_s = 1;
    s = srv_new("127.0.0.1:0", &l);

    /* Per address: 2 held, 10 more closed at once (12: within the
     * backlog, so no SYN is dropped and retried a second later). */
    for (size_t i = 0; i < 12; i++)
        c[i] = cli_new(port_of(s->h), NULL);
    t0 = now_us();
    spin(s, c, 12, 300);
    assert_true(all_open(c, 2));
    for (size_t i = 2; i < 12; i++) {
        assert_true(c[i]->eof);
        assert_true(c[i]->eof_us - t0 < 300000);
    }
    http_info(s->h, &in);
    assert_int_equal(in.conns, 2);
    for (size_t i = 0; i < 12; i++)
        cli_free(c[i]);
    spin(s, NULL, 0, 50);

    /* In total: 4 silent clients from 4 addresses hold every slot. */
    for (size_t i = 0; i < 4; i++) {
        snprintf(src, sizeof src, "127.0.0.%zu", i + 2);
        c[i] = cli_new(port_of(s->h), src);
    }
    t0 = now_us();
    spin(s, c, 4, 100);
    http_info(s->h, &in);
    assert_int_equal(in.conns, 4);
    late = cli_new(port_of(s->h), "127.0.0.9");
    c[4] = late;
    assert_true(cli_send(s, late, good_req, sizeof good_req - 1));
    spin(s, c, 5, 300);
    assert_int_equal(late->n, 0); /* waiting in the backlog */
    ms = wait_response(s, late, c, 4, 3000);
    assert_true(ms >= 0);
    assert_int_equal(status_of(late), 200);
    print_message("  client over the limit served %lld ms after the slots "
                  "filled (idle_s 1)\n",
                  (long long)(now_us() - t0) / 1000);
    assert_true(now_us() - t0 >= 900000);
    for (size_t i = 0; i < 5; i++)
        cli_free(c[i]);

    print_message("  max http_run: %lld us over %llu runs\n",
                  (long long)s->max_run_us, (unsigned long long)s->runs);
    assert_true(s->max_run_us < RUN_BOUND_US);
    srv_free(s);
}

/* 200 half requests from one address, and a good client from another:
 * served at once. */
static void test_flood(void **state)
{
    enum { N = 200 };
    static const char half[] = "GET /metrics HTTP/1.1\r\n";
    struct client *c[N + 1];
    struct srv *s;
    long rss0, rss1;
    int ms;
    (void)state;

    s = srv_new("127.0.0.1:0", NULL);
    rss0 = rss_kib();
    for (size_t i = 0; i < N; i++) {
        c[i] = cli_new_cap(port_of(s->h), NULL, 256);
        (void)send(c[i]->fd, half, sizeof half - 1, MSG_NOSIGNAL);
        if (i % 8 == 7)
            turn(s, c, i + 1, 0);
    }
    spin(s, c, N, 300);
    c[N] = cli_new(port_of(s->h), "127.0.0.9");
    assert_true(cli_send(s, c[N], good_req, sizeof good_req - 1));
    ms = wait_response(s, c[N], c, N, 20000);
    rss1 = rss_kib();
    assert_true(ms >= 0);
    assert_int_equal(status_of(c[N]), 200);
    print_message("  flood of %d half requests: good client served after "
                  "%d ms; max http_run %lld us; RSS %ld -> %ld KiB\n",
                  N, ms, (long long)s->max_run_us, rss0, rss1);
    assert_true(s->max_run_us < RUN_BOUND_US);
    for (size_t i = 0; i <= N; i++)
        cli_free(c[i]);
    srv_free(s);
}

static int report(void **state)
{
    (void)state;
    print_message("test_http: longest http_run() in all tests: %lld us "
                  "(%lld us of CPU); RSS %ld KiB\n",
                  (long long)max_run_all_us, (long long)max_cpu_all_us,
                  rss_kib());
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_head_404),
        cmocka_unit_test(test_405_413),
        cmocka_unit_test(test_keepalive_and_cap),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_every_address),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_trickle),
        cmocka_unit_test(test_huge_header),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_flood),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
