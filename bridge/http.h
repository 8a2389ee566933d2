/*
 * http.h — a small HTTP/1.1 server for the daemon's own poll() loop:
 * GET and HEAD only, one synchronous handler, hard limits.
 *
 * No thread: the server is one file descriptor (http_fd()) that the
 * caller polls for POLLIN next to its others, and a deadline
 * (http_timeout_ms()); http_run() does what is ready and never waits.
 * The handler runs inside http_run(), in the caller's thread, so it reads
 * the caller's state without locks.
 *
 * A port that is in use is not fatal: http_start() fails with -EADDRINUSE
 * and a message that names the address, and http_run() tries to bind again
 * every retry_s seconds until it works.
 *
 * Listen addresses ("off" is the caller's business, not an address):
 *   127.0.0.1:9464   one IPv4 address       localhost:9464  = 127.0.0.1
 *   [::1]:9464       one IPv6 address (IPv6 only); [fe80::1%eth0]:9464
 *   0.0.0.0:9464     every IPv4 address     [::]:9464       every IPv6 one
 *   :9464            every address, IPv6 and IPv4 (IPv4 only when the
 *                    kernel has no IPv6), as Prometheus' own ":9090"
 * Host names other than localhost are refused (no DNS lookup in the loop).
 * Port 0 takes a free port; http_info() tells which.
 */
#ifndef MQTT2KAFKA_HTTP_H
#define MQTT2KAFKA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http;

struct http_limits {
    unsigned max_conns;  /* connections at once; more wait in the backlog */
    unsigned max_per_ip; /* more from one address are closed at once */
    unsigned idle_s;     /* a connection silent this long is closed */
    unsigned request_ms; /* a request and its response, counted from the
                            connection or the previous response: longer
                            (a client trickling bytes) is cut */
    size_t conn_mem;     /* per connection: request line, headers, I/O
                            buffers; a larger header gets 431 */
    size_t body_max;     /* the handler's response buffer */
    unsigned backlog;    /* listen(2) backlog */
    unsigned retry_s;    /* a failed bind is retried this often; 0: never */
};

/* 16 connections, 4 per address, 5 s idle, 10 s per request, 16 KiB per
 * connection, 1 MiB body, backlog 16, retry every 30 s. */
void http_limits_default(struct http_limits *l);

struct http_response {
    int status;               /* preset to 404 */
    const char *content_type; /* static string; preset text/plain UTF-8 */
    char *body;               /* the server's buffer, cap bytes */
    size_t cap;
    size_t len;
};

/* Called for GET and HEAD only (anything else gets 405, a request with a
 * body 413, before any handler). path is the URL path without the query,
 * percent-decoded. Fill res; for HEAD build the same body (its length goes
 * in Content-Length). A status left at 404 with no body says "not
 * found". res and path are borrowed for the call. */
typedef void (*http_handler_fn)(void *ud, const char *method, const char *path,
                                struct http_response *res);

/* Sets status and a text/plain body from a format. -ENOSPC when the text
 * did not fit: then the response is a 500 that says so. */
int http_response_printf(struct http_response *res, int status, const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));

/* Checks a listen address without binding (for the config loader). */
int http_check_listen(const char *listen, char *err, size_t errlen);

/* Parses listen and allocates the body buffer; does not bind (call
 * http_start()). lim NULL: the defaults. -EINVAL with a message for a bad
 * address or limit. The caller frees with http_free(). */
int http_new(const char *listen, const struct http_limits *lim,
             http_handler_fn fn, void *ud, struct http **out, char *err,
             size_t errlen);
/* Stops if listening, then frees; NULL is fine. */
void http_free(struct http *h);

/* Binds and starts serving now. 0 (also when already listening), or a
 * negative errno: -EADDRINUSE, -EACCES (a port below 1024),
 * -EADDRNOTAVAIL (not this host's address), -ENOMEM, ...; http_error()
 * then says what, naming the address, and http_run() retries. */
int http_start(struct http *h);
/* Closes every connection and the socket; no retry until http_start(). */
void http_stop(struct http *h);

/* The fd to poll for POLLIN; -1 while not listening. It changes when the
 * server (re)starts: read it again every turn. */
int http_fd(const struct http *h);
/* How long the caller may poll before http_run() is due: -1 no limit,
 * 0 now. Counts idle and request deadlines, and the next bind retry. */
int http_timeout_ms(const struct http *h);
/* Call when http_fd() is readable or http_timeout_ms() has passed (every
 * turn is fine too). Never blocks; the handler runs from here. Returns 0,
 * or, when a bind retry was due: 1 if it now listens, a negative errno if
 * it failed again (http_error() says why). */
int http_run(struct http *h);

/* The last bind error, "" while listening. Valid until the next call. */
const char *http_error(const struct http *h);

struct http_info {
    bool listening;
    char address[80];    /* as bound, e.g. "127.0.0.1:9464", "[::]:9464" */
    unsigned conns;      /* open connections */
    uint64_t requests;   /* handed to the handler */
    uint64_t refused;    /* 405 and 413 */
    uint64_t cut;        /* connections closed by the request deadline */
    int64_t retry_in_ms; /* next bind attempt while not listening; -1 none */
};
void http_info(const struct http *h, struct http_info *out);

#endif
