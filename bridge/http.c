/*
 * http.c — the metrics and health endpoints' HTTP server: libmicrohttpd
 * (MHD) driven from the caller's poll() loop, with no thread of its own.
 *
 * Depends on libmicrohttpd, libc and log.h only; knows nothing of the
 * daemon. How MHD is driven, from its 0.9.75 header and source:
 *
 *  - MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD is MHD's
 *    "external polling" mode with epoll: MHD keeps its listen socket and
 *    every connection in one epoll set of its own, and that set's fd
 *    (MHD_DAEMON_INFO_EPOLL_FD) is the single fd the caller polls. No
 *    thread is started in this mode (the unit test counts them).
 *  - MHD_run() is MHD_run_wait(d, 0): one epoll_wait() with timeout 0, at
 *    most 10 accept()s, reads and writes on ready non-blocking sockets,
 *    idle timeouts, then cleanup. It never waits.
 *  - MHD_get_timeout() gives the longest the caller may poll; 0 when MHD
 *    has work pending that no fd will announce (its edge-triggered "ready"
 *    list), and then MHD_run() must follow at once.
 *
 * The listen socket is ours (MHD_OPTION_LISTEN_SOCKET): we parse and bind
 * it, so a port in use is a clear -EADDRINUSE, a specific IPv6 address is
 * IPv6 only, and no SO_REUSEPORT lets a second bridge share (and split)
 * the port. MHD owns it from then on and closes it in MHD_stop_daemon().
 *
 * The limits and who enforces them:
 *  - max_conns (MHD_OPTION_CONNECTION_LIMIT): at the limit MHD takes the
 *    listen socket out of its epoll set, so further clients wait in the
 *    kernel's backlog (then SYNs are dropped) and the loop stays idle.
 *  - max_per_ip (MHD_OPTION_PER_IP_CONNECTION_LIMIT): accepted and closed
 *    at once, so one address cannot hold every slot.
 *  - idle_s (MHD_OPTION_CONNECTION_TIMEOUT): a client silent this long is
 *    closed (the classic slowloris that sends half a request and waits).
 *  - request_ms (here): MHD's timeout restarts on every byte, so a client
 *    trickling one byte a second would live for ever. Each connection has
 *    a slot with the time its current request began (its accept, or the
 *    end of the previous response); past request_ms we shutdown() the
 *    socket and MHD closes it on its next turn. The slots are MHD's
 *    per-connection "socket context", set and cleared in its connection
 *    notifications; MHD closes a connection's fd only after the CLOSED
 *    notification, so a slot never names a reused fd.
 *  - conn_mem (MHD_OPTION_CONNECTION_MEMORY_LIMIT): one pool per
 *    connection holds the request line, headers and I/O buffers; a header
 *    that does not fit gets "431 Request Header Fields Too Large" (414 for
 *    a URI) and the connection is closed, so memory stays at
 *    max_conns x conn_mem.
 *  - Request bodies: a request that announces one (Content-Length other
 *    than 0, or Transfer-Encoding) gets 413 from the first handler call,
 *    before MHD reads any of it; MHD then discards the rest and closes.
 *    Methods other than GET and HEAD get 405 the same way.
 *  - body_max: the handler writes into one buffer of that size; a response
 *    that does not fit is a 500. MHD sends a copy, so a slow reader does
 *    not hold the buffer.
 */
#include "bridge/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/log.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"

struct listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool dual; /* ":port": IPv6 and IPv4, or IPv4 alone without IPv6 */
};

/* One per connection MHD holds; see the header comment. */
struct slot {
    bool used, cut;
    int fd;
    int64_t since_ms; /* when its current request began */
};

struct http {
    char listen[80]; /* as given, for messages */
    struct listen_addr addr;
    struct http_limits lim;
    http_handler_fn fn;
    void *ud;

    struct MHD_Daemon *d; /* NULL while not listening */
    int epfd;
    char bound[80];
    struct slot *slots; /* lim.max_conns */
    char *body;         /* lim.body_max */

    unsigned closed; /* connections closed, for http_run() */
    bool retrying;
    int64_t next_try_ms;
    char err[256];

    uint64_t requests, refused, cut;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void http_limits_default(struct http_limits *l)
{
    l->max_conns = 16;
    l->max_per_ip = 4;
    l->idle_s = 5;
    l->request_ms = 10000;
    l->conn_mem = 16 * 1024;
    l->body_max = 1024 * 1024;
    l->backlog = 16;
    l->retry_s = 30;
}

/* --- listen addresses -------------------------------------------------- */

static int parse_port(const char *s, uint16_t *port)
{
    unsigned v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 5)
            return -EINVAL;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* "addr%zone": the zone is an interface name or index. */
static int parse_v6(char *host, struct sockaddr_in6 *a)
{
    char *zone = strchr(host, '%');
    if (zone) {
        *zone++ = '\0';
        a->sin6_scope_id = if_nametoindex(zone);
        if (!a->sin6_scope_id) {
            char *end;
            unsigned long v = strtoul(zone, &end, 10);
            if (!*zone || *end || v == 0 || v > UINT32_MAX)
                return -EINVAL;
            a->sin6_scope_id = (uint32_t)v;
        }
    }
    return inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? 0 : -EINVAL;
}

static int parse_listen(const char *s, struct listen_addr *a, char *err,
                        size_t errlen)
{
    char host[64];
    const char *port_s, *colon;
    size_t hl;
    uint16_t port;
    bool v6 = false;

    memset(a, 0, sizeof *a);
    if (!s || !*s) {
        snprintf(err, errlen,
                 "empty listen address (want host:port, "
                 "e.g. 127.0.0.1:9464)");
        return -EINVAL;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen,
                     "listen address '%s': want [IPv6 address]:port", s);
            return -EINVAL;
        }
        hl = (size_t)(close - s - 1);
        memcpy(host, s + 1, hl < sizeof host ? hl : 0);
        port_s = close + 2;
        v6 = true;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            snprintf(err, errlen,
                     "listen address '%s' has no port (want host:port, "
                     "e.g. 127.0.0.1:9464)",
                     s);
            return -EINVAL;
        }
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl)) {
            snprintf(err, errlen,
                     "listen address '%s': an IPv6 address goes in "
                     "brackets, e.g. [::1]:9464",
                     s);
            return -EINVAL;
        }
        memcpy(host, s, hl < sizeof host ? hl : 0);
        port_s = colon + 1;
    }
    if (hl >= sizeof host) {
        snprintf(err, errlen, "listen address '%.*s...': host too long", 40, s);
        return -EINVAL;
    }
    host[hl] = '\0';
    if (parse_port(port_s, &port)) {
        snprintf(err, errlen,
                 "listen address '%s': the port must be a number from 0 "
                 "to 65535",
                 s);
        return -EINVAL;
    }

    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a->ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        a->len = sizeof *a6;
        if (parse_v6(host, a6) == 0)
            return 0;
        snprintf(err, errlen,
                 "listen address '%s': '%s' is not an IPv6 "
                 "address (with an optional %%interface)",
                 s, host);
        return -EINVAL;
    }
    if (!*host) { /* ":port": every address */
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a->ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        a6->sin6_addr = in6addr_any;
        a->len = sizeof *a6;
        a->dual = true;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&a->ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a->len = sizeof *a4;
    if (strcmp(host, "localhost") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
        snprintf(err, errlen,
                 "listen address '%s': '%s' is not an IPv4 address (use "
                 "a numeric address, [IPv6], localhost, or :port for "
                 "every address; names are not looked up)",
                 s, host);
        return -EINVAL;
    }
    return 0;
}

int http_check_listen(const char *listen, char *err, size_t errlen)
{
    struct listen_addr a;
    return parse_listen(listen, &a, err, errlen);
}

static void fmt_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(a6->sin6_port));
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(a4->sin_port));
    }
}

/* A bound, listening, non-blocking socket, or a negative errno. */
static int open_listener(const struct listen_addr *a, unsigned backlog,
                         struct sockaddr_storage *bound)
{
    struct listen_addr v4any;
    const struct listen_addr *use = a;
    int one = 1, fd, rc;
    socklen_t blen = sizeof *bound;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && a->dual && errno == EAFNOSUPPORT) {
        /* No IPv6 in this kernel: ":port" is every IPv4 address. */
        struct sockaddr_in *a4 = (struct sockaddr_in *)&v4any.ss;
        memset(&v4any, 0, sizeof v4any);
        a4->sin_family = AF_INET;
        a4->sin_port = ((const struct sockaddr_in6 *)&a->ss)->sin6_port;
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        v4any.len = sizeof *a4;
        use = &v4any;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0)
        return -errno;
    /* SO_REUSEADDR: a restart binds while old connections sit in
     * TIME_WAIT; on Linux it never lets two listeners share a port. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (use->ss.ss_family == AF_INET6) {
        int v6only = use->dual ? 0 : 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, (const struct sockaddr *)&use->ss, use->len) < 0 ||
        listen(fd, (int)backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)bound, &blen) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* --- MHD callbacks ------------------------------------------------------ */

__attribute__((format(printf, 2, 0))) static void
on_log(void *cls, const char *fmt, va_list ap)
{
    char line[256];
    size_t n;
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* Hostile clients make MHD talk a lot: debug level only. */
    log_debug("http: %s", line);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sctx,
                          enum MHD_ConnectionNotificationCode what)
{
    struct http *h = cls;
    struct slot *s = *sctx;

    if (what == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (s)
            s->used = false;
        *sctx = NULL;
        h->closed++;
        return;
    }
    /* MHD admits at most max_conns, so a slot is free. */
    for (unsigned i = 0; i < h->lim.max_conns; i++) {
        const union MHD_ConnectionInfo *ci;
        s = &h->slots[i];
        if (s->used)
            continue;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        s->used = true;
        s->cut = false;
        s->fd = ci ? ci->connect_fd : -1;
        s->since_ms = mono_ms();
        *sctx = s;
        return;
    }
}

/* A request ended: the next one on this connection starts its clock. */
static void on_completed(void *cls, struct MHD_Connection *c, void **rctx,
                         enum MHD_RequestTerminationCode toe)
{
    const union MHD_ConnectionInfo *ci;
    (void)cls, (void)rctx, (void)toe;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        ((struct slot *)ci->socket_context)->since_ms = mono_ms();
}

static enum MHD_Result reply(struct MHD_Connection *c, int status,
                             const char *type, const char *body, size_t len,
                             bool allow)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    char *copy = malloc(len ? len : 1);

    if (!copy)
        return MHD_NO; /* MHD closes the connection */
    memcpy(copy, body, len);
    r = MHD_create_response_from_buffer_with_free_callback(len, copy, free);
    if (!r) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool has_body(struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return true;
    return cl && strcmp(cl, "0") != 0;
}

static enum MHD_Result serve(struct http *h, struct MHD_Connection *c,
                             const char *method, const char *path)
{
    struct http_response res = {.status = 404,
                                .content_type = TEXT_PLAIN,
                                .body = h->body,
                                .cap = h->lim.body_max,
                                .len = 0};

    h->fn(h->ud, method, path, &res);
    h->requests++;
    if (res.len > res.cap || res.status < 200 || res.status > 599)
        http_response_printf(&res, 500, "the handler gave a bad response\n");
    else if (res.status == 404 && res.len == 0)
        http_response_printf(&res, 404, "not found\n");
    return reply(c, res.status,
                 res.content_type ? res.content_type : TEXT_PLAIN, res.body,
                 res.len, false);
}

/* MHD calls this when the headers are in (*rctx NULL), then once per
 * piece of body, then once more with *upload_size 0. A response queued in
 * the first call is sent at once and the connection closed after it, so
 * refusals go there; an answer goes in the last call, which keeps the
 * connection open for the next scrape. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **rctx)
{
    static const char seen = 0;
    struct http *h = cls;
    (void)version, (void)upload;

    if (!*rctx) {
        *rctx = (void *)&seen;
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
            static const char msg[] = "method not allowed (GET, HEAD)\n";
            h->refused++;
            return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT_PLAIN, msg,
                         sizeof msg - 1, true);
        }
        if (has_body(c)) {
            static const char msg[] = "a request body is not accepted\n";
            h->refused++;
            return reply(c, MHD_HTTP_CONTENT_TOO_LARGE, TEXT_PLAIN, msg,
                         sizeof msg - 1, false);
        }
        return MHD_YES;
    }
    if (*upload_size) /* refused above; MHD knows a body only from them */
        return MHD_NO;
    return serve(h, c, method, url);
}

int http_response_printf(struct http_response *res, int status, const char *fmt,
                         ...)
{
    static const char cut[] = "response too large\n";
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(res->body, res->cap, fmt, ap);
    va_end(ap);
    res->content_type = TEXT_PLAIN;
    if (n >= 0 && (size_t)n < res->cap) {
        res->status = status;
        res->len = (size_t)n;
        return 0;
    }
    res->status = 500;
    res->len = 0;
    if (res->cap >= sizeof cut) {
        memcpy(res->body, cut, sizeof cut);
        res->len = sizeof cut - 1;
    }
    return -ENOSPC;
}

/* --- lifecycle ---------------------------------------------------------- */

static int check_limits(const struct http_limits *l, char *err, size_t errlen)
{
    const char *what = NULL;
    if (l->max_conns < 1 || l->max_conns > 1024)
        what = "max_conns must be 1..1024";
    else if (l->max_per_ip > l->max_conns)
        what = "max_per_ip must be 0 (no limit) .. max_conns";
    else if (l->idle_s < 1 || l->idle_s > 3600)
        what = "idle_s must be 1..3600";
    else if (l->request_ms < 100 || l->request_ms > 3600000)
        what = "request_ms must be 100..3600000";
    else if (l->conn_mem < 4096 || l->conn_mem > 1024 * 1024)
        what = "conn_mem must be 4 KiB..1 MiB";
    else if (l->body_max < 64 || l->body_max > 64 * 1024 * 1024)
        what = "body_max must be 64 B..64 MiB";
    else if (l->backlog < 1 || l->backlog > 4096)
        what = "backlog must be 1..4096";
    if (!what)
        return 0;
    snprintf(err, errlen, "http limits: %s", what);
    return -EINVAL;
}

int http_new(const char *listen, const struct http_limits *lim,
             http_handler_fn fn, void *ud, struct http **out, char *err,
             size_t errlen)
{
    struct http *h;
    int rc;

    *out = NULL;
    h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    if (lim)
        h->lim = *lim;
    else
        http_limits_default(&h->lim);
    rc = check_limits(&h->lim, err, errlen);
    if (rc == 0)
        rc = parse_listen(listen, &h->addr, err, errlen);
    if (rc)
        goto fail;
    snprintf(h->listen, sizeof h->listen, "%s", listen);
    h->fn = fn;
    h->ud = ud;
    h->epfd = -1;
    h->slots = calloc(h->lim.max_conns, sizeof *h->slots);
    h->body = malloc(h->lim.body_max);
    if (!h->slots || !h->body) {
        snprintf(err, errlen, "http: out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    *out = h;
    return 0;
fail:
    http_free(h);
    return rc;
}

void http_free(struct http *h)
{
    if (!h)
        return;
    http_stop(h);
    free(h->slots);
    free(h->body);
    free(h);
}

static int start_failed(struct http *h, int rc, const char *why)
{
    snprintf(h->err, sizeof h->err, "cannot listen on %s: %s%s", h->listen, why,
             rc == -EADDRINUSE ? " (another process serves on that port)" : "");
    h->retrying = h->lim.retry_s > 0;
    h->next_try_ms = mono_ms() + (int64_t)h->lim.retry_s * 1000;
    return rc;
}

/* MHD_start_daemon() closes the socket we pass on some failure paths and
 * not on others: close it only if the fd is still that socket. */
static void close_if_same(int fd, const struct stat *st0)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_ino == st0->st_ino &&
        st.st_dev == st0->st_dev)
        close(fd);
}

int http_start(struct http *h)
{
    struct sockaddr_storage bound;
    const union MHD_DaemonInfo *di;
    struct stat st;
    int fd;

    if (h->d)
        return 0;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES)
        return start_failed(h, -ENOTSUP, "libmicrohttpd lacks epoll");
    fd = open_listener(&h->addr, h->lim.backlog, &bound);
    if (fd < 0)
        return start_failed(h, fd, strerror(-fd));
    fstat(fd, &st);
    /* The logger goes first so MHD prints nothing of its own. */
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_log, h, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, h->lim.max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->lim.max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, h->lim.idle_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->lim.conn_mem,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->d) {
        close_if_same(fd, &st);
        return start_failed(h, -EIO,
                            "libmicrohttpd did not start (debug log says "
                            "why)");
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    h->epfd = di ? di->epoll_fd : -1;
    if (h->epfd < 0) {
        http_stop(h);
        return start_failed(h, -EIO, "libmicrohttpd gave no epoll fd");
    }
    fmt_addr(&bound, h->bound, sizeof h->bound);
    h->err[0] = '\0';
    h->retrying = false;
    return 0;
}

void http_stop(struct http *h)
{
    if (h->d)
        MHD_stop_daemon(h->d); /* CLOSED notifications free the slots */
    h->d = NULL;
    h->epfd = -1;
    h->bound[0] = '\0';
    h->retrying = false;
}

/* --- the loop ----------------------------------------------------------- */

int http_fd(const struct http *h)
{
    return h->d ? h->epfd : -1;
}

static int clamp_ms(int64_t ms)
{
    return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

int http_timeout_ms(const struct http *h)
{
    MHD_UNSIGNED_LONG_LONG t;
    int64_t now = mono_ms();
    int ms = -1;

    if (!h->d)
        return h->retrying ? clamp_ms(h->next_try_ms - now) : -1;
    if (MHD_get_timeout(h->d, &t) == MHD_YES)
        ms = t > INT_MAX ? INT_MAX : (int)t;
    for (unsigned i = 0; i < h->lim.max_conns; i++) {
        const struct slot *s = &h->slots[i];
        int left;
        if (!s->used || s->cut)
            continue;
        left = clamp_ms(s->since_ms + h->lim.request_ms - now);
        if (ms < 0 || left < ms)
            ms = left;
    }
    return ms;
}

/* shutdown(), not close(): MHD still owns the fd; it sees the hang-up on
 * its next epoll_wait() and closes the connection itself. */
static void cut_overdue(struct http *h, int64_t now)
{
    for (unsigned i = 0; i < h->lim.max_conns; i++) {
        struct slot *s = &h->slots[i];
        if (!s->used || s->cut || s->fd < 0 ||
            now - s->since_ms < (int64_t)h->lim.request_ms)
            continue;
        shutdown(s->fd, SHUT_RDWR);
        s->cut = true;
        h->cut++;
        log_debug("http: a request took over %u ms; connection closed",
                  h->lim.request_ms);
    }
}

int http_run(struct http *h)
{
    unsigned closed;

    if (!h->d) {
        int rc;
        if (!h->retrying || mono_ms() < h->next_try_ms)
            return 0;
        rc = http_start(h);
        return rc == 0 ? 1 : rc;
    }
    cut_overdue(h, mono_ms());
    closed = h->closed;
    MHD_run(h->d);
    /* At max_conns MHD takes its listen socket out of the epoll set and
     * puts it back only at the start of its next run, while
     * MHD_get_timeout() does not ask for one: a connection that closed
     * here would leave clients in the backlog until some other event.
     * A second run puts the socket back and accepts them. */
    if (h->closed != closed)
        MHD_run(h->d);
    return 0;
}

const char *http_error(const struct http *h)
{
    return h->err;
}

void http_info(const struct http *h, struct http_info *out)
{
    const union MHD_DaemonInfo *di = NULL;

    memset(out, 0, sizeof *out);
    out->listening = h->d != NULL;
    snprintf(out->address, sizeof out->address, "%s",
             h->d ? h->bound : h->listen);
    if (h->d)
        di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    out->conns = di ? di->num_connections : 0;
    out->requests = h->requests;
    out->refused = h->refused;
    out->cut = h->cut;
    out->retry_in_ms = -1;
    if (!h->d && h->retrying) {
        int64_t left = h->next_try_ms - mono_ms();
        out->retry_in_ms = left < 0 ? 0 : left;
    }
}
