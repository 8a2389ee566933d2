/*
 * test_mqtt_in.c — the MQTT side's contract against a real Mosquitto that
 * the test starts on a free loopback port (skipped where the broker is not
 * installed, as in the package build): messages reach the callback with
 * their QoS, packet id and user properties; nothing is acknowledged until
 * mqtt_in_write(), so after mqtt_in_abort() the broker sends the same
 * messages again on the resumed session, and after a write it does not.
 * Subscriptions change on a live session; a failed attempt leaves a cause
 * an operator can read (a refused login, a port that closes on us, a TLS
 * context that cannot load its CA). With a share group the broker splits
 * the messages between the members, a session an earlier run left with
 * plain subscriptions gets only its share, and leaving the group on a live
 * session takes effect at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bridge/log.h"
#include "bridge/mqtt_in.h"
#include "bridge/mqtt_tls.h"

#define MOSQUITTO "/usr/sbin/mosquitto"

struct fx {
    pid_t broker;
    int port;
    int locked_port; /* a listener that wants a user name and password */
    char dir[64];
};

struct got {
    int n, connected, resumed, props;
    int committed;  /* messages the test made "durable": writes may go */
    int autocommit; /* each message is "durable" as it arrives */
    int mids[64];
    char payload[64][32];
};

static void on_message(void *ud, const struct mqtt_in_msg *m)
{
    struct got *g = ud;
    if (g->n < 64) {
        g->mids[g->n] = m->mid;
        snprintf(g->payload[g->n], 32, "%.*s", (int)m->len,
                 (const char *)m->payload);
    }
    g->n++;
    if (g->autocommit)
        g->committed = g->n;
    for (size_t i = 0; i < m->nprops; i++)
        if (!strcmp(m->props[i].name, "site") &&
            !strcmp(m->props[i].value, "north"))
            g->props++;
}

static void on_state(void *ud, int connected, int session, const char *why)
{
    struct got *g = ud;
    (void)why;
    g->connected = connected;
    if (connected)
        g->resumed = session;
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char conf[128];
    if (access(MOSQUITTO, X_OK) != 0) {
        free(f);
        *state = NULL;
        return 0;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/m2k-mqtt-in-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->port = free_port();
    do
        f->locked_port = free_port();
    while (f->locked_port == f->port);
    snprintf(conf, sizeof conf, "%s/m.conf", f->dir);
    FILE *c = fopen(conf, "w");
    fprintf(c,
            "per_listener_settings true\n"
            "listener %d 127.0.0.1\nallow_anonymous true\n"
            "listener %d 127.0.0.1\nallow_anonymous false\n",
            f->port, f->locked_port);
    fclose(c);
    f->broker = fork();
    if (f->broker == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(MOSQUITTO, MOSQUITTO, "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) { /* ready when it accepts */
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)f->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            break;
        usleep(50000);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[128];
    if (!f)
        return 0;
    kill(f->broker, SIGTERM);
    waitpid(f->broker, NULL, 0);
    snprintf(p, sizeof p, "%s/m.conf", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Publishes n QoS 1 messages "m<i>" with a user property, and waits for
 * the broker's acknowledgements. */
static void publish(int port, const char *topic, int n)
{
    struct mosquitto *p = mosquitto_new(NULL, true, NULL);
    mosquitto_property *props = NULL;
    char msg[32];
    mosquitto_int_option(p, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    assert_int_equal(mosquitto_connect(p, "127.0.0.1", port, 10), 0);
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "site",
                                       "north");
    for (int i = 0; i < n; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        assert_int_equal(mosquitto_publish_v5(p, NULL, topic, (int)strlen(msg),
                                              msg, 1, false, props),
                         0);
    }
    for (int i = 0; i < 50; i++)
        mosquitto_loop(p, 20, 1);
    mosquitto_property_free_all(&props);
    mosquitto_disconnect(p);
    mosquitto_loop(p, 20, 1);
    mosquitto_destroy(p);
}

/* Turns the client's loop as the daemon does, until want messages arrived
 * and it is connected, or ms passed. Queued packets (CONNECT, SUBSCRIBE,
 * PINGREQ) are written only while every message received is "committed",
 * as the daemon writes only after a commit: a PUBACK never leaves early. */
static void pump_for(struct mqtt_in *in, struct got *g, int want, int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        mqtt_in_tick(in, log_now_ms(), 0);
        if (g->n == g->committed && mqtt_in_want_write(in))
            mqtt_in_write(in);
        int fd = mqtt_in_fd(in);
        if (fd >= 0) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            if (poll(&pf, 1, 20) > 0)
                mqtt_in_read(in, 64);
        } else {
            usleep(20000);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((g->n < want || !g->connected) &&
             (t.tv_sec - t0.tv_sec) * 1000 +
                     (t.tv_nsec - t0.tv_nsec) / 1000000 <
                 ms);
}

static void pump(struct mqtt_in *in, struct got *g, int want)
{
    pump_for(in, g, want, 5000);
}

static struct mqtt_in *client_at(int port, struct got *g, const char **filters)
{
    struct mqtt_in_opts o = {.host = "127.0.0.1",
                             .port = port,
                             .client_id = "m2k-unit",
                             .protocol = 5,
                             .qos = 1,
                             .keepalive = 10,
                             .session_expiry = 600,
                             .reconnect_max = 1,
                             .filters = filters,
                             .nfilters = 1};
    struct mqtt_in_cb cb = {.message = on_message, .state = on_state};
    struct mqtt_in *in;
    char err[256];
    assert_int_equal(mqtt_in_new(&o, &cb, g, &in, err, sizeof err), 0);
    return in;
}

static struct mqtt_in *client(struct fx *f, struct got *g, const char **filters)
{
    return client_at(f->port, g, filters);
}

static void test_acks_only_on_write(void **state)
{
    struct fx *f = *state;
    const char *filters[] = {"unit/#"};
    struct got g = {0};
    if (!f)
        skip(); /* no broker installed */
    struct mqtt_in *in = client(f, &g, filters);
    pump(in, &g, 0); /* connect and subscribe */
    assert_int_equal(g.connected, 1);
    pump_for(in, &g, 1, 300); /* the SUBSCRIBE goes out */
    publish(f->port, "unit/a", 5);
    pump(in, &g, 5);
    assert_int_equal(g.n, 5);
    assert_int_equal(g.props, 5);
    assert_string_equal(g.payload[0], "m0");
    assert_true(g.mids[0] > 0);
    /* not durable: drop the connection with the PUBACKs unsent */
    mqtt_in_abort(in, "test");
    assert_int_equal(g.connected, 0);
    memset(&g, 0, sizeof g);
    pump(in, &g, 5); /* reconnects: the session resumes, all 5 again */
    assert_int_equal(g.resumed, 1);
    assert_int_equal(g.n, 5);
    assert_string_equal(g.payload[4], "m4");
    /* durable now: acknowledge, and a reconnect brings nothing back */
    g.committed = g.n;
    assert_int_equal(mqtt_in_write(in), 0);
    pump_for(in, &g, 99, 300);
    mqtt_in_abort(in, "test");
    memset(&g, 0, sizeof g);
    pump(in, &g, 0);
    assert_int_equal(g.connected, 1);
    pump_for(in, &g, 99, 1500);
    assert_int_equal(g.n, 0);
    mqtt_in_close(in);
    mqtt_in_free(in);
}

/* A broker host that drops SYNs (here: a listener whose accept queue is
 * full, so the kernel drops new SYNs): connect() would block for about
 * two minutes. The loop must keep turning meanwhile. Once, the connect ran
 * in the loop's thread and stalled everything past the watchdog. */
static void test_connect_never_blocks(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    const char *filters[] = {"unit/#"};
    struct got g = {0};
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 0), 0);
    getsockname(ls, (struct sockaddr *)&a, &alen);
    int fill[3];
    for (int i = 0; i < 3; i++) { /* fill the accept queue */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(100000);
    struct fx f = {.port = ntohs(a.sin_port)};
    struct mqtt_in *in = client(&f, &g, filters);
    struct timespec t0, t1;
    int64_t worst = 0;
    for (int i = 0; i < 30; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        mqtt_in_tick(in, log_now_ms(), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t us = (t1.tv_sec - t0.tv_sec) * 1000000 +
                     (t1.tv_nsec - t0.tv_nsec) / 1000;
        if (us > worst)
            worst = us;
        usleep(10000);
    }
    print_message("longest mqtt_in_tick while the connect hangs: %lld us\n",
                  (long long)worst);
    assert_true(worst < 200000);
    assert_int_equal(g.connected, 0);
    assert_int_equal(mqtt_in_fd(in), -1);
    mqtt_in_free(in); /* the dialing thread is left to give up alone */
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(ls);
}

/* Subscriptions follow a new route map on the live session: a new filter
 * is subscribed, a dropped one unsubscribed; the caller's array is copied. */
static void test_filters_change(void **state)
{
    struct fx *f = *state;
    char a[] = "unit/a/#";
    const char *filters[] = {a};
    const char *next[] = {"unit/b/#", "unit/c"};
    struct got g = {0};
    if (!f)
        skip();
    struct mqtt_in *in = client(f, &g, filters);
    strcpy(a, "unit/x/#"); /* ours to change: the client kept a copy */
    pump(in, &g, 0);
    pump_for(in, &g, 1, 300);
    publish(f->port, "unit/a/1", 1);
    pump(in, &g, 1);
    assert_int_equal(g.n, 1);
    g.committed = g.n;
    assert_int_equal(mqtt_in_set_filters(in, next, 2), 0);
    pump_for(in, &g, 99, 300); /* SUBSCRIBE and UNSUBSCRIBE go out */
    publish(f->port, "unit/a/2", 1);
    publish(f->port, "unit/b/2", 2);
    publish(f->port, "unit/c", 1);
    pump(in, &g, 4);
    assert_int_equal(g.n, 4);
    assert_int_equal(g.connected, 1); /* the session was never dropped */
    assert_string_equal(g.payload[1], "m0");
    assert_string_equal(g.payload[3], "m0");
    g.committed = g.n;
    mqtt_in_close(in);
    mqtt_in_free(in);
}

static void wait_cause(struct mqtt_in *in, struct got *g, const char *want)
{
    for (int i = 0; i < 100; i++) {
        pump_for(in, g, 0, 50);
        const char *c = mqtt_in_cause(in);
        if (c && strstr(c, want))
            return;
    }
    fail_msg("no cause with \"%s\"; last: %s", want,
             mqtt_in_cause(in) ? mqtt_in_cause(in) : "(none)");
}

/* A client with its own id in a share group (NULL: none), every message
 * acknowledged as it comes. */
static struct mqtt_in *member(struct fx *f, struct got *g, const char *id,
                              const char *group, const char **filters)
{
    struct mqtt_in_opts o = {.host = "127.0.0.1",
                             .port = f->port,
                             .client_id = id,
                             .protocol = 5,
                             .qos = 1,
                             .keepalive = 10,
                             .session_expiry = 600,
                             .reconnect_max = 1,
                             .filters = filters,
                             .nfilters = 1,
                             .share_group = group};
    struct mqtt_in_cb cb = {.message = on_message, .state = on_state};
    struct mqtt_in *in;
    char err[256];
    g->autocommit = 1;
    assert_int_equal(mqtt_in_new(&o, &cb, g, &in, err, sizeof err), 0);
    return in;
}

/* Turns both clients until together they have want messages (and are
 * connected), or ms passed. */
static void pump2(struct mqtt_in *a, struct got *ga, struct mqtt_in *b,
                  struct got *gb, int want, int ms)
{
    for (int t = 0; t < ms; t += 40) {
        pump_for(a, ga, 0, 20);
        pump_for(b, gb, 0, 20);
        if (ga->connected && gb->connected && ga->n + gb->n >= want)
            return;
    }
}

static void test_share_group_names(void **state)
{
    char buf[64];
    (void)state;
    assert_int_equal(mqtt_in_sub_filter("g1", "a/+/#", buf, sizeof buf), 15);
    assert_string_equal(buf, "$share/g1/a/+/#");
    assert_int_equal(mqtt_in_sub_filter(NULL, "a/#", buf, sizeof buf), 3);
    assert_string_equal(buf, "a/#");
    assert_int_equal(mqtt_in_sub_filter("", "a/#", buf, sizeof buf), 3);
    assert_int_equal(mqtt_in_sub_filter("g", "a/#", buf, 8), -ENOSPC);
    assert_true(mqtt_in_share_group_ok("bridges.site-1"));
    assert_false(mqtt_in_share_group_ok(""));
    assert_false(mqtt_in_share_group_ok(NULL));
    assert_false(mqtt_in_share_group_ok("a/b"));
    assert_false(mqtt_in_share_group_ok("a+"));
    assert_false(mqtt_in_share_group_ok("#"));
    assert_false(mqtt_in_share_group_ok("a\tb"));
    /* refused by the client too, not only by the config loader */
    const char *filters[] = {"unit/#"};
    struct mqtt_in_opts o = {.host = "127.0.0.1",
                             .port = 1883,
                             .client_id = "m2k-unit",
                             .protocol = 5,
                             .qos = 1,
                             .keepalive = 10,
                             .reconnect_max = 1,
                             .filters = filters,
                             .nfilters = 1,
                             .share_group = "a/b"};
    struct mqtt_in_cb cb = {.message = on_message, .state = on_state};
    struct mqtt_in *in;
    struct got g = {0};
    char err[256];
    assert_int_equal(mqtt_in_new(&o, &cb, &g, &in, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "share group \"a/b\" is not a share name"));
}

static void test_share_group(void **state)
{
    struct fx *f = *state;
    const char *filters[] = {"unit/s/#"};
    struct got ga = {0}, gb = {0};
    if (!f)
        skip();
    /* an earlier run of "m2k-a" subscribed without a group; its session
     * keeps that subscription */
    struct mqtt_in *a = member(f, &ga, "m2k-a", NULL, filters);
    pump(a, &ga, 0);
    pump_for(a, &ga, 99, 300);
    mqtt_in_close(a);
    mqtt_in_free(a);
    memset(&ga, 0, sizeof ga);
    /* now two members of group g1 */
    a = member(f, &ga, "m2k-a", "g1", filters);
    struct mqtt_in *b = member(f, &gb, "m2k-b", "g1", filters);
    pump2(a, &ga, b, &gb, 0, 3000);
    assert_int_equal(ga.resumed, 1);
    pump2(a, &ga, b, &gb, 99, 300); /* SUBSCRIBE, UNSUBSCRIBE go out */
    publish(f->port, "unit/s/1", 20);
    pump2(a, &ga, b, &gb, 20, 5000);
    pump2(a, &ga, b, &gb, 99, 500); /* nothing more comes */
    print_message("shared: m2k-a got %d, m2k-b %d of 20\n", ga.n, gb.n);
    assert_int_equal(ga.n + gb.n, 20); /* each message once: no plain copy */
    assert_true(ga.n > 0 && gb.n > 0);
    /* m2k-a leaves the group on its live session: it gets every message,
     * and m2k-b, alone in the group, every message too */
    ga.n = gb.n = ga.committed = gb.committed = 0;
    assert_int_equal(mqtt_in_set_subscriptions(a, NULL, filters, 1), 0);
    assert_int_equal(mqtt_in_set_subscriptions(a, "x/y", filters, 1), -EINVAL);
    pump2(a, &ga, b, &gb, 99, 300);
    publish(f->port, "unit/s/2", 10);
    pump2(a, &ga, b, &gb, 20, 5000);
    pump2(a, &ga, b, &gb, 99, 500);
    assert_int_equal(ga.n, 10);
    assert_int_equal(gb.n, 10);
    assert_int_equal(ga.connected, 1);
    /* and the old shared subscription does not come back on a reconnect */
    mqtt_in_abort(a, "test");
    ga.n = gb.n = ga.committed = gb.committed = 0;
    pump2(a, &ga, b, &gb, 0, 3000);
    pump2(a, &ga, b, &gb, 99, 300);
    publish(f->port, "unit/s/3", 10);
    pump2(a, &ga, b, &gb, 20, 5000);
    pump2(a, &ga, b, &gb, 99, 500);
    assert_int_equal(ga.n, 10);
    assert_int_equal(gb.n, 10);
    mqtt_in_close(a);
    mqtt_in_close(b);
    mqtt_in_free(a);
    mqtt_in_free(b);
}

static void test_failure_causes(void **state)
{
    struct fx *f = *state;
    const char *filters[] = {"unit/#"};
    struct got g = {0};
    char cause[80];
    if (!f)
        skip();
    /* the broker wants a login */
    struct mqtt_in *in = client_at(f->locked_port, &g, filters);
    assert_null(mqtt_in_cause(in));
    wait_cause(in, &g,
               "not authorized (bad username or password); no "
               "mqtt.username is set");
    assert_int_equal(g.connected, 0);
    mqtt_in_free(in);
    /* nobody listens */
    in = client_at(free_port(), &g, filters);
    wait_cause(in, &g, "Connection refused");
    mqtt_in_free(in);
    /* a port that closes on us before any CONNACK (a TLS listener does) */
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 4), 0);
    getsockname(ls, (struct sockaddr *)&a, &alen);
    in = client_at(ntohs(a.sin_port), &g, filters);
    snprintf(cause, sizeof cause, "is %d a TLS port? then mqtt.tls is needed",
             ntohs(a.sin_port));
    for (int i = 0; i < 100 && !mqtt_in_cause(in); i++) {
        pump_for(in, &g, 0, 20);
        int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        if (c >= 0)
            close(c);
    }
    wait_cause(in, &g, cause);
    mqtt_in_free(in);
    close(ls);
}

static void test_tls_context_errors(void **state)
{
    const char *filters[] = {"unit/#"};
    struct mqtt_in_opts o = {.host = "127.0.0.1",
                             .port = 8883,
                             .client_id = "m2k-unit",
                             .protocol = 5,
                             .qos = 1,
                             .keepalive = 10,
                             .reconnect_max = 1,
                             .filters = filters,
                             .nfilters = 1,
                             .tls = 1,
                             .ca_file = "/nonexistent/ca.crt"};
    struct mqtt_in_cb cb = {.message = on_message, .state = on_state};
    struct mqtt_in *in;
    struct got g = {0};
    char err[256], reason[64];
    (void)state;
    assert_int_equal(mqtt_in_new(&o, &cb, &g, &in, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "cannot load the CA certificates from "
                                "/nonexistent/ca.crt"));
    o.ca_file = NULL; /* the system's store */
    assert_int_equal(mqtt_in_new(&o, &cb, &g, &in, err, sizeof err), 0);
    mqtt_in_free(in);
    mqtt_tls_reason("OpenSSL Error[0]: error:0A000086:SSL "
                    "routines::certificate verify failed",
                    reason, sizeof reason);
    assert_string_equal(reason, "certificate verify failed");
    mqtt_tls_reason("error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert "
                    "unknown ca",
                    reason, sizeof reason);
    assert_string_equal(reason, "tlsv1 alert unknown ca");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_never_blocks),
        cmocka_unit_test(test_tls_context_errors),
        cmocka_unit_test(test_share_group_names),
        cmocka_unit_test_setup_teardown(test_share_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_causes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acks_only_on_write, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
