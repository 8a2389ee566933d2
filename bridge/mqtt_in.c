/*
 * mqtt_in.c — one persistent MQTT session, read on our own terms.
 *
 * libmosquitto, run unthreaded, writes the PUBACK of a QoS 1 message before
 * it calls on_message: a crash after that loses a message the broker thinks
 * we have. With mosquitto_threaded_set(true), every outgoing packet is only
 * queued, and nothing reaches the socket until mosquitto_loop_write(). So
 * this module never calls mosquitto_loop() and never writes on its own: the
 * bridge reads a burst (mqtt_in_read), makes it durable, then writes
 * (mqtt_in_write). Acknowledgements can therefore only ever follow the commit
 * of what they acknowledge. When the commit fails, mqtt_in_abort() shuts the
 * socket down so the queued acknowledgements die with it and the broker
 * redelivers (libmosquitto empties its packet queue on reconnect).
 *
 * TLS uses a context of our own (mqtt_tls.c) so that a refused
 * certificate is reported with OpenSSL's reason. Every attempt that fails
 * leaves a cause in words (mqtt_in_cause): the broker's CONNACK refusal,
 * the certificate's verification error, the TLS alert or error that
 * libmosquitto logged, or what the closed connection suggests; the log
 * says it when it changes and every tenth attempt, not at every retry.
 *
 * mqtt_in_publish() queues a QoS 0 publish the same way: it leaves with the
 * next write, behind the acknowledgements before it.
 *
 * With a share group, every filter is subscribed as $share/<group>/<filter>
 * (MQTT 5 shared subscriptions; Mosquitto 2 takes them from 3.1.1 clients
 * too): the broker gives each message to one member of the group. The
 * session is persistent, so a subscription outlives the run that made it:
 * a filter no longer wanted (a route removed, the group changed) is
 * unsubscribed until the broker confirms it, across reconnects, and in a
 * group the plain form of each filter is unsubscribed at every connect, in
 * case an earlier run subscribed without the group (it would get every
 * message besides its share). New subscriptions go out before the old are
 * dropped: for a moment a message may come twice, never not at all.
 *
 * Depends on libmosquitto, mqtt_tls.c and libc; knows nothing of routes,
 * spool or Kafka. The broker's $SYS drop counter is handled here and never
 * reaches the message callback. Option strings and filters are copied.
 */
#include "bridge/mqtt_in.h"

#include <errno.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bridge/log.h"
#include "bridge/mqtt_tls.h"

#define SYS_DROPPED        "$SYS/broker/publish/messages/dropped"
#define CONNECT_TIMEOUT_MS 15000
#define BACKOFF_BASE_MS    500
#define SHARE_PREFIX       "$share/"
#define STALE_MAX          1024 /* old filters awaiting their UNSUBACK */

/* DIALING: a thread of its own resolves the host and connects (both can
 * block for minutes on a broken network); nothing else touches the client
 * meanwhile. CONNECTING: the CONNECT is queued, no CONNACK yet. */
enum conn_state { DISCONNECTED, DIALING, CONNECTING, CONNECTED };
/* dial_done: the thread runs; it is done; mqtt_in_free() left it alone */
enum { DIAL_RUNNING, DIAL_DONE, DIAL_ABANDONED };

struct mqtt_in {
    struct mosquitto *mosq;
    struct mqtt_in_opts o;
    struct mqtt_in_cb cb;
    void *ud;
    enum conn_state state;
    int attempts;        /* failed attempts since the last CONNACK */
    int64_t next_try_ms; /* when to try connecting again */
    int64_t connect_ms;  /* when the current attempt started */
    int64_t sys_dropped; /* last value of the broker's counter, -1 unknown */
    size_t delivered;    /* messages handed to the callback */
    int sub_mid;         /* the SUBSCRIBE carrying the route filters */
    /* the dialing thread: it writes dial_rc and dial_errno, then dial_done;
     * the loop reads them after joining it */
    pthread_t dialer;
    atomic_int dial_done;
    int dial_rc, dial_errno;
    mosquitto_property *dial_props;
    int warned_slow; /* the slow dial was said once */
    struct mqtt_tls *tls;
    char **filters; /* as subscribed ($share/g/f); o.filters points here */
    char **diff;    /* filters of the last SUBSCRIBE after a change */
    size_t ndiff;
    int diff_mid;
    /* subscribed once, no longer wanted: unsubscribed at every connect
     * until the UNSUBACK of stale_mid, which covered the first stale_sent */
    char **stale;
    size_t nstale, stale_sent;
    int stale_mid;
    /* this attempt: the TCP connection was made; the CONNACK refused */
    int tcp_up, refused;
    char tls_error[200]; /* the first OpenSSL error libmosquitto logged */
    char cause[400];     /* why we are not connected; "" when we are */
    char said[400];      /* the cause last logged */
};

static int lib_refs;

static void schedule_retry(struct mqtt_in *m);
static int has(char *const *l, size_t n, const char *f);

int mqtt_in_share_group_ok(const char *group)
{
    size_t n = group ? strlen(group) : 0;
    if (n == 0 || n > MQTT_IN_SHARE_GROUP_MAX || strpbrk(group, "/+#"))
        return 0;
    for (const char *q = group; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return 0;
    return 1;
}

int mqtt_in_sub_filter(const char *group, const char *filter, char *buf,
                       size_t len)
{
    int n = group && *group
                ? snprintf(buf, len, SHARE_PREFIX "%s/%s", group, filter)
                : snprintf(buf, len, "%s", filter);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* The subscribed form of filter, malloc'ed; NULL when out of memory. */
static char *sub_form(const char *group, const char *filter)
{
    size_t len =
        strlen(filter) + (group ? strlen(group) : 0) + sizeof(SHARE_PREFIX) + 1;
    char *f = malloc(len);
    if (f && mqtt_in_sub_filter(group, filter, f, len) < 0) {
        free(f);
        f = NULL;
    }
    return f;
}

__attribute__((format(printf, 2, 3))) static void
set_cause(struct mqtt_in *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->cause, sizeof(m->cause), fmt, ap);
    va_end(ap);
}

/* libmosquitto's sentences ("The connection was lost.") as a clause:
 * "the connection was lost". */
static const char *clause(const char *why, char *buf, size_t len)
{
    size_t n;
    if (!why)
        return NULL;
    snprintf(buf, len, "%s", why);
    n = strlen(buf);
    if (n && buf[n - 1] == '.')
        buf[n - 1] = '\0';
    if (buf[0] >= 'A' && buf[0] <= 'Z' && buf[1] >= 'a' && buf[1] <= 'z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

/* An attempt ended before the CONNACK accepted it: why, in words. */
static void attempt_failed(struct mqtt_in *m, const char *why)
{
    const char *v = m->tls ? mqtt_tls_verify_error(m->tls) : NULL;
    char c[200];
    if (m->refused) /* on_connect said why */
        return;
    if (!m->tcp_up)
        set_cause(m, "%s", why ? why : "cannot connect");
    else if (v)
        set_cause(m, "certificate verify failed: %s", v);
    else if (m->tls_error[0] && strstr(m->tls_error, "alert"))
        set_cause(
            m, "the broker refused the TLS connection: %s%s", m->tls_error,
            strstr(m->tls_error, "certificate required")
                ? " (it requires a client certificate: mqtt.tls.cert_file "
                  "and key_file)"
            : strstr(m->tls_error, "certificate") ||
                    strstr(m->tls_error, "unknown ca")
                ? " (it does not accept our client certificate, "
                  "mqtt.tls.cert_file)"
                : "");
    else if (m->tls_error[0] && (strstr(m->tls_error, "wrong version") ||
                                 strstr(m->tls_error, "unexpected eof")))
        set_cause(m, "TLS error: %s (does port %d speak TLS?)", m->tls_error,
                  m->o.port);
    else if (m->tls_error[0])
        set_cause(m, "TLS error: %s", m->tls_error);
    else if (!m->o.tls)
        set_cause(m,
                  "the broker closed the connection before answering "
                  "CONNECT: is %d a TLS port? then mqtt.tls is needed",
                  m->o.port);
    else
        set_cause(m, "%s before the broker answered",
                  why ? clause(why, c, sizeof(c)) : "closed");
}

/* Says a failed attempt when its cause is new, and every tenth time. */
static void say_failure(struct mqtt_in *m)
{
    if (!strcmp(m->said, m->cause) && m->attempts % 10 != 0)
        return;
    memcpy(m->said, m->cause, sizeof(m->said));
    log_warn("mqtt: cannot connect to %s:%d: %s (attempt %d; retrying in "
             "%.1f s)",
             m->o.host, m->o.port, m->cause, m->attempts,
             (double)(m->next_try_ms - log_now_ms()) / 1000.0);
}

static void set_state(struct mqtt_in *m, enum conn_state s, int session,
                      const char *why)
{
    static const char *const names[] = {"disconnected", "dialing", "connecting",
                                        "connected"};
    if (m->state == s)
        return;
    log_debug("mqtt: %s -> %s", names[m->state], names[s]);
    enum conn_state old = m->state;
    m->state = s;
    if (s == CONNECTED) {
        m->cause[0] = m->said[0] = '\0';
        m->cb.state(m->ud, 1, session, NULL);
    } else if (old == CONNECTED) {
        char c[200];
        const char *w = why ? clause(why, c, sizeof(c)) : "closed";
        set_cause(m, "connection lost: %s", w);
        m->cb.state(m->ud, 0, 0, w);
    } else if (s == DISCONNECTED) {
        attempt_failed(m, why);
    }
    if (s == DISCONNECTED) {
        schedule_retry(m);
        if (old != CONNECTED)
            say_failure(m);
    }
}

/* Capped exponential backoff with jitter in [d/2, d], so a fleet of gateways
 * whose broker restarts does not come back in lockstep. */
static void schedule_retry(struct mqtt_in *m)
{
    int64_t now_ms = log_now_ms();
    int64_t cap = (int64_t)m->o.reconnect_max * 1000;
    int64_t d = BACKOFF_BASE_MS;
    for (int i = 0; i < m->attempts && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    d = d / 2 + (int64_t)(random() % (d / 2 + 1));
    m->attempts++;
    m->next_try_ms = now_ms + d;
}

/* Unsubscribes what was subscribed once and is no longer wanted (queued,
 * like every packet). The list is kept until the broker confirms it:
 * a connection lost first would leave the subscription in the session. */
static void send_stale(struct mqtt_in *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nstale; i++) /* wanted again: not stale */
        if (has(m->filters, m->o.nfilters, m->stale[i]))
            free(m->stale[i]);
        else
            m->stale[k++] = m->stale[i];
    m->nstale = k;
    m->stale_sent = 0;
    if (!k)
        return;
    if (mosquitto_unsubscribe_multiple(m->mosq, &m->stale_mid, (int)k, m->stale,
                                       NULL) == MOSQ_ERR_SUCCESS)
        m->stale_sent = k;
}

/* In a share group: the filters' plain forms, which an earlier run without
 * the group may have left in the session. Unknown ones are harmless. */
static void unsubscribe_plain(struct mqtt_in *m)
{
    size_t skip = strlen(SHARE_PREFIX) + strlen(m->o.share_group) + 1;
    char **plain = calloc(m->o.nfilters ? m->o.nfilters : 1, sizeof(*plain));
    if (!plain)
        return;
    for (size_t i = 0; i < m->o.nfilters; i++)
        plain[i] = m->filters[i] + skip;
    if (m->o.nfilters)
        mosquitto_unsubscribe_multiple(m->mosq, NULL, (int)m->o.nfilters, plain,
                                       NULL);
    free(plain);
}

static void on_unsubscribe(struct mosquitto *mosq, void *ud, int mid,
                           const mosquitto_property *props)
{
    struct mqtt_in *m = ud;
    (void)mosq, (void)props;
    if (mid != m->stale_mid || !m->stale_sent)
        return;
    for (size_t i = 0; i < m->stale_sent; i++)
        free(m->stale[i]);
    memmove(m->stale, m->stale + m->stale_sent,
            (m->nstale - m->stale_sent) * sizeof(*m->stale));
    m->nstale -= m->stale_sent;
    m->stale_sent = 0;
}

static void on_connect(struct mosquitto *mosq, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    struct mqtt_in *m = ud;
    (void)props;
    if (rc != 0) {
        int auth = m->o.protocol == 5
                       ? rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
                             rc == MQTT_RC_NOT_AUTHORIZED
                       : rc == 4 || rc == 5;
        m->refused = 1;
        if (auth)
            set_cause(m, "not authorized (bad username or password)%s",
                      m->o.username ? "" : "; no mqtt.username is set");
        else
            set_cause(m, "the broker refused the connection: %s",
                      m->o.protocol == 5 ? mosquitto_reason_string(rc)
                                         : mosquitto_connack_string(rc));
        return; /* the broker closes; on_disconnect follows */
    }
    /* Never trust the broker to have kept our subscriptions. */
    int qos = m->o.qos;
    /* MQTT 5: retained messages only for a subscription the session did
     * not have, or every reconnect would send them to Kafka again. */
    int opts = m->o.protocol == 5 ? MQTT_SUB_OPT_SEND_RETAIN_NEW : 0;
    rc = mosquitto_subscribe_multiple(mosq, &m->sub_mid, (int)m->o.nfilters,
                                      m->filters, qos, opts, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        log_error("mqtt: subscribe failed: %s", mosquitto_strerror(rc));
    send_stale(m);
    if (m->o.share_group)
        unsubscribe_plain(m);
    if (m->o.watch_sys_drops)
        mosquitto_subscribe(mosq, NULL, SYS_DROPPED, 0);
    m->attempts = 0;
    set_state(m, CONNECTED, flags & 1, NULL);
}

static void on_subscribe(struct mosquitto *mosq, void *ud, int mid, int n,
                         const int *granted, const mosquitto_property *props)
{
    struct mqtt_in *m = ud;
    char *const *f = mid == m->sub_mid && n == (int)m->o.nfilters ? m->filters
                     : mid == m->diff_mid && n == (int)m->ndiff   ? m->diff
                                                                  : NULL;
    (void)mosq, (void)props;
    if (!f)
        return; /* the $SYS subscription: optional */
    for (int i = 0; i < n; i++) {
        if (granted[i] >= 0x80)
            log_error("mqtt: broker refused subscription '%s' (reason %d)",
                      f[i], granted[i]);
        else if (granted[i] < m->o.qos)
            log_warn("mqtt: subscription '%s' granted QoS %d, asked %d", f[i],
                     granted[i], m->o.qos);
    }
}

static void on_disconnect(struct mosquitto *mosq, void *ud, int rc,
                          const mosquitto_property *props)
{
    struct mqtt_in *m = ud;
    (void)mosq, (void)props;
    set_state(m, DISCONNECTED, 0, rc == 0 ? "closed" : mosquitto_strerror(rc));
}

static void sys_dropped(struct mqtt_in *m, const struct mosquitto_message *msg)
{
    char buf[32];
    size_t n = (size_t)msg->payloadlen < sizeof(buf) - 1
                   ? (size_t)msg->payloadlen
                   : sizeof(buf) - 1;
    memcpy(buf, msg->payload, n);
    buf[n] = '\0';
    int64_t now = strtoll(buf, NULL, 10);
    if (m->sys_dropped >= 0 && now > m->sys_dropped && m->cb.broker_dropped)
        m->cb.broker_dropped(m->ud, m->sys_dropped, now);
    m->sys_dropped = now;
}

static void on_message(struct mosquitto *mosq, void *ud,
                       const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct mqtt_in *m = ud;
    struct mqtt_in_prop up[MQTT_IN_MAX_PROPS];
    size_t nup = 0;
    (void)mosq;

    if (msg->topic[0] == '$' && strcmp(msg->topic, SYS_DROPPED) == 0) {
        sys_dropped(m, msg);
        return;
    }
    /* User properties become Kafka headers; libmosquitto allocates each
     * pair, so they are freed once the callback has copied them. */
    const mosquitto_property *p = props;
    int skip = 0;
    while (nup < MQTT_IN_MAX_PROPS) {
        char *name = NULL, *value = NULL;
        p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY,
                                                &name, &value, skip);
        if (!p)
            break;
        up[nup].name = name;
        up[nup].value = value;
        nup++;
        skip = 1;
    }
    struct mqtt_in_msg im = {
        .topic = msg->topic,
        .payload = msg->payload,
        .len = (size_t)msg->payloadlen,
        .qos = msg->qos,
        .retain = msg->retain,
        .mid = msg->mid,
        .props = up,
        .nprops = nup,
    };
    m->delivered++;
    m->cb.message(m->ud, &im);
    for (size_t i = 0; i < nup; i++) {
        free((char *)up[i].name);
        free((char *)up[i].value);
    }
}

/* libmosquitto's own log: its OpenSSL errors name a TLS failure. */
static void on_log(struct mosquitto *mosq, void *ud, int level, const char *str)
{
    struct mqtt_in *m = ud;
    (void)mosq;
    if (!(level & MOSQ_LOG_ERR))
        return;
    if (!strncmp(str, "OpenSSL Error[", 14) && !m->tls_error[0])
        mqtt_tls_reason(str, m->tls_error, sizeof(m->tls_error));
    log_debug("mqtt: libmosquitto: %s", str);
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

/* The filters as subscribed (with the group's prefix), owned. */
static char **copy_subs(const char *group, const char *const *l, size_t n)
{
    char **c = calloc(n ? n : 1, sizeof(*c));
    for (size_t i = 0; c && i < n; i++)
        if (!(c[i] = sub_form(group, l[i]))) {
            free_list(c, i);
            return NULL;
        }
    return c;
}

/* The option strings become ours: the conf they came from may go. */
static int copy_opts(struct mqtt_in *m, const struct mqtt_in_opts *o)
{
    const char **s[] = {&m->o.host,     &m->o.client_id,    &m->o.username,
                        &m->o.password, &m->o.ca_file,      &m->o.cert_file,
                        &m->o.key_file, &m->o.key_password, &m->o.share_group};
    m->o = *o;
    if (m->o.share_group && !*m->o.share_group)
        m->o.share_group = NULL; /* "": none */
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if (*s[i] && !(*s[i] = strdup(*s[i])))
            return -ENOMEM;
    if (!(m->filters = copy_subs(m->o.share_group, o->filters, o->nfilters)))
        return -ENOMEM;
    m->o.filters = (const char *const *)m->filters;
    return 0;
}

static void free_opts(struct mqtt_in *m)
{
    char *s[] = {(char *)m->o.host,       (char *)m->o.client_id,
                 (char *)m->o.username,   (char *)m->o.password,
                 (char *)m->o.ca_file,    (char *)m->o.cert_file,
                 (char *)m->o.key_file,   (char *)m->o.key_password,
                 (char *)m->o.share_group};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if (s[i] && (i == 3 || i == 7)) /* secrets: no copy left behind */
            memset(s[i], 0, strlen(s[i]));
        free(s[i]);
    }
    free_list(m->filters, m->o.nfilters);
    free_list(m->diff, m->ndiff);
    free_list(m->stale, m->nstale);
}

static int start_tls(struct mqtt_in *m, char *err, size_t errlen)
{
    struct mqtt_tls_opts to = {
        .host = m->o.host,
        .ca_file = m->o.ca_file,
        .cert_file = m->o.cert_file,
        .key_file = m->o.key_file,
        .key_password = m->o.key_password,
        .no_hostname_check = m->o.tls_no_hostname_check,
    };
    int rc = mqtt_tls_new(&to, &m->tls, err, errlen);
    if (rc)
        return rc;
    /* Ours as it is: libmosquitto 2.0 would otherwise apply its own
     * defaults over it (and want its own cafile). */
    if (mosquitto_int_option(m->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) !=
            MOSQ_ERR_SUCCESS ||
        mosquitto_void_option(m->mosq, MOSQ_OPT_SSL_CTX,
                              mqtt_tls_ctx(m->tls)) != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "mqtt: this libmosquitto has no TLS");
        return -EINVAL;
    }
    if (m->o.tls_no_hostname_check)
        log_warn("mqtt: TLS host name verification is OFF "
                 "(mqtt.tls.insecure_skip_hostname_verification): any "
                 "certificate the CA signed is taken for %s",
                 m->o.host);
    return 0;
}

int mqtt_in_new(const struct mqtt_in_opts *o, const struct mqtt_in_cb *cb,
                void *ud, struct mqtt_in **out, char *err, size_t errlen)
{
    struct mqtt_in *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return -ENOMEM;
    if (lib_refs++ == 0)
        mosquitto_lib_init();
    m->cb = *cb;
    m->ud = ud;
    m->sys_dropped = -1;
    if (o->share_group && *o->share_group &&
        !mqtt_in_share_group_ok(o->share_group)) {
        snprintf(err, errlen,
                 "mqtt: share group \"%.60s\" is not a share name (1 to %d "
                 "characters, no '/', '+' or '#')",
                 o->share_group, MQTT_IN_SHARE_GROUP_MAX);
        mqtt_in_free(m);
        return -EINVAL;
    }
    if (copy_opts(m, o)) {
        snprintf(err, errlen, "mqtt: out of memory");
        mqtt_in_free(m);
        return -ENOMEM;
    }
    o = &m->o;
    /* clean_session false: the broker keeps our session while we are away. */
    m->mosq = mosquitto_new(o->client_id, false, m);
    if (!m->mosq) {
        snprintf(err, errlen, "mqtt: cannot create client '%s': %s",
                 o->client_id, strerror(errno));
        mqtt_in_free(m);
        return -EINVAL;
    }
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         o->protocol == 5 ? MQTT_PROTOCOL_V5
                                          : MQTT_PROTOCOL_V311);
    /* The whole point: queue every outgoing packet until loop_write. */
    mosquitto_threaded_set(m->mosq, true);
    if (o->protocol == 5)
        /* How many unacknowledged QoS>0 messages the broker may send us:
         * one spool commit acknowledges a burst, so the burst may be large,
         * and the bridge's redelivery check relies on this bound. */
        mosquitto_int_option(m->mosq, MOSQ_OPT_RECEIVE_MAXIMUM,
                             MQTT_IN_RECEIVE_MAX);
    if (o->username)
        mosquitto_username_pw_set(m->mosq, o->username, o->password);
    mosquitto_log_callback_set(m->mosq, on_log);
    if (o->tls) {
        int rc = start_tls(m, err, errlen);
        if (rc) {
            mqtt_in_free(m);
            return rc;
        }
    }
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    mosquitto_unsubscribe_v5_callback_set(m->mosq, on_unsubscribe);
    if (o->share_group)
        log_info("mqtt: subscriptions shared in group %s ($share/%s/...): "
                 "the broker gives each message to one member",
                 o->share_group, o->share_group);
    *out = m;
    return 0;
}

/* Everything but the library's reference. */
static void destroy(struct mqtt_in *m)
{
    mosquitto_property_free_all(&m->dial_props);
    if (m->mosq)
        mosquitto_destroy(m->mosq); /* closes a socket the dial opened */
    mqtt_tls_free(m->tls);
    free_opts(m);
    free(m);
}

void mqtt_in_free(struct mqtt_in *m)
{
    int running = DIAL_RUNNING;
    if (!m)
        return;
    if (m->state == DIALING && atomic_compare_exchange_strong(
                                   &m->dial_done, &running, DIAL_ABANDONED)) {
        /* The dialing thread may hang in connect() for minutes: it frees
         * the client when it returns (a reload must not leave a live
         * connection behind). The library stays initialised for it. */
        pthread_detach(m->dialer);
        return;
    }
    if (m->state == DIALING)
        pthread_join(m->dialer, NULL);
    destroy(m);
    if (--lib_refs == 0)
        mosquitto_lib_cleanup();
}

static int live(const struct mqtt_in *m)
{
    return m->state == CONNECTING || m->state == CONNECTED;
}

int mqtt_in_fd(const struct mqtt_in *m)
{
    return live(m) ? mosquitto_socket(m->mosq) : -1;
}

int mqtt_in_want_write(const struct mqtt_in *m)
{
    return live(m) && mosquitto_want_write(m->mosq);
}

int mqtt_in_connected(const struct mqtt_in *m)
{
    return m->state == CONNECTED;
}

const char *mqtt_in_cause(const struct mqtt_in *m)
{
    return m->state == CONNECTED || !m->cause[0] ? NULL : m->cause;
}

static int has(char *const *l, size_t n, const char *f)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(l[i], f))
            return 1;
    return 0;
}

/* Moves the filters of the current list that next lacks to the stale
 * list (they are unsubscribed until the broker confirms). */
static void retire(struct mqtt_in *m, char *const *next, size_t n)
{
    size_t gone = 0;
    for (size_t i = 0; i < m->o.nfilters; i++)
        if (!has(next, n, m->filters[i])) {
            if (m->nstale >= STALE_MAX) {
                log_warn("mqtt: too many old subscriptions to remove; '%s' "
                         "may stay in the broker's session",
                         m->filters[i]);
                continue;
            }
            m->stale[m->nstale++] = m->filters[i];
            m->filters[i] = NULL; /* the stale list owns it now */
            gone++;
        }
    if (gone && m->state == CONNECTED)
        log_info("mqtt: unsubscribing from %zu filter%s", gone,
                 gone == 1 ? "" : "s");
}

int mqtt_in_set_subscriptions(struct mqtt_in *m, const char *group,
                              const char *const *filters, size_t n)
{
    char *g = NULL, **next, **add;
    size_t nadd = 0;
    if (group && !*group)
        group = NULL;
    if (group && !mqtt_in_share_group_ok(group))
        return -EINVAL;
    if (group && !(g = strdup(group)))
        return -ENOMEM;
    next = copy_subs(group, filters, n);
    add = calloc(n ? n : 1, sizeof(char *));
    char **stale = realloc(m->stale, STALE_MAX * sizeof(char *));
    if (stale)
        m->stale = stale;
    int rc = next && add && stale ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!has(m->filters, m->o.nfilters, next[i]) &&
            !(add[nadd++] = strdup(next[i])))
            rc = -ENOMEM;
    if (rc) {
        free(g);
        free_list(next, n);
        free_list(add, nadd);
        return rc;
    }
    /* the new ones first: a message is never without a subscription */
    free_list(m->diff, m->ndiff);
    m->diff = add;
    m->ndiff = nadd;
    if (m->state == CONNECTED && nadd) {
        int opts = m->o.protocol == 5 ? MQTT_SUB_OPT_SEND_RETAIN_NEW : 0;
        int r = mosquitto_subscribe_multiple(m->mosq, &m->diff_mid, (int)nadd,
                                             add, m->o.qos, opts, NULL);
        log_info("mqtt: subscribed to %zu more filter%s%s", nadd,
                 nadd == 1 ? "" : "s",
                 r == MOSQ_ERR_SUCCESS ? "" : " (failed: after a reconnect)");
    }
    retire(m, next, n);
    free_list(m->filters, m->o.nfilters);
    m->filters = next;
    m->o.filters = (const char *const *)next;
    m->o.nfilters = n;
    free((char *)m->o.share_group);
    m->o.share_group = g;
    if (m->state == CONNECTED)
        send_stale(m);
    return 0;
}

int mqtt_in_set_filters(struct mqtt_in *m, const char *const *filters, size_t n)
{
    return mqtt_in_set_subscriptions(m, m->o.share_group, filters, n);
}

int mqtt_in_read(struct mqtt_in *m, size_t max)
{
    size_t before = m->delivered;
    if (!live(m))
        return -ENOTCONN;
    while (m->delivered - before < max) {
        /* loop_read returns after each packet or on EAGAIN; errno tells
         * which, so the socket is read until dry without a poll per packet */
        errno = 0;
        int rc = mosquitto_loop_read(m->mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0) {
            set_state(m, DISCONNECTED, 0, mosquitto_strerror(rc));
            return -ECONNRESET;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
    }
    return (int)(m->delivered - before);
}

int mqtt_in_write(struct mqtt_in *m)
{
    if (!live(m) || !mosquitto_want_write(m->mosq))
        return 0;
    int rc = mosquitto_loop_write(m->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0) {
        set_state(m, DISCONNECTED, 0, mosquitto_strerror(rc));
        return -ECONNRESET;
    }
    return 0;
}

void mqtt_in_abort(struct mqtt_in *m, const char *why)
{
    if (!live(m))
        return;
    int fd = mosquitto_socket(m->mosq);
    if (fd < 0)
        return;
    log_warn("mqtt: dropping the connection unacknowledged: %s", why);
    /* Shut the socket before libmosquitto can write what it queued; the next
     * read sees EOF and libmosquitto closes and forgets the queue. */
    shutdown(fd, SHUT_RDWR);
    mosquitto_loop_read(m->mosq, 1);
    set_state(m, DISCONNECTED, 0, why);
}

static void *dial(void *arg)
{
    struct mqtt_in *m = arg;
    /* Name lookup, TCP connect and the start of TLS: blocking, but in this
     * thread only. The CONNECT packet is only queued (threaded mode). */
    m->dial_rc = mosquitto_connect_bind_v5(m->mosq, m->o.host, m->o.port,
                                           m->o.keepalive, NULL, m->dial_props);
    m->dial_errno = errno;
    if (atomic_exchange(&m->dial_done, DIAL_DONE) == DIAL_ABANDONED)
        destroy(m); /* mqtt_in_free() left it to us */
    return NULL;
}

static void try_connect(struct mqtt_in *m, int64_t now_ms)
{
    mosquitto_property_free_all(&m->dial_props);
    if (m->o.protocol == 5 && m->o.session_expiry > 0) {
        uint32_t se = m->o.session_expiry > UINT32_MAX
                          ? UINT32_MAX
                          : (uint32_t)m->o.session_expiry;
        mosquitto_property_add_int32(&m->dial_props,
                                     MQTT_PROP_SESSION_EXPIRY_INTERVAL, se);
    }
    /* The broker never sends us a packet larger than this: a 256 MiB
     * publish is not read into memory to be cut. */
    if (m->o.protocol == 5 && m->o.max_packet)
        mosquitto_property_add_int32(
            &m->dial_props, MQTT_PROP_MAXIMUM_PACKET_SIZE, m->o.max_packet);
    atomic_store(&m->dial_done, DIAL_RUNNING);
    m->connect_ms = now_ms;
    m->warned_slow = 0;
    m->tcp_up = m->refused = 0;
    m->tls_error[0] = '\0';
    if (m->tls)
        mqtt_tls_reset(m->tls);
    if (pthread_create(&m->dialer, NULL, dial, m) != 0) {
        log_error("mqtt: cannot start a thread to connect: %s",
                  strerror(errno));
        schedule_retry(m);
        return;
    }
    set_state(m, DIALING, 0, NULL);
}

/* The dialing thread is done: connected (the CONNECT waits to be written)
 * or not. */
static void dialed(struct mqtt_in *m)
{
    int rc = m->dial_rc;
    char why[256];
    pthread_join(m->dialer, NULL);
    if (rc == MOSQ_ERR_SUCCESS) {
        m->tcp_up = 1;
        set_state(m, CONNECTING, 0, NULL);
        return;
    }
    /* a TLS failure here happened after the TCP connect */
    m->tcp_up = rc == MOSQ_ERR_TLS;
    snprintf(why, sizeof(why), "%s",
             rc == MOSQ_ERR_ERRNO ? strerror(m->dial_errno)
             : rc == MOSQ_ERR_EAI ? gai_strerror(m->dial_errno)
                                  : mosquitto_strerror(rc));
    set_state(m, DISCONNECTED, 0, why); /* and the next try is scheduled */
}

int mqtt_in_tick(struct mqtt_in *m, int64_t now_ms, int paused)
{
    switch (m->state) {
    case DISCONNECTED:
        if (paused)
            return 1000;
        if (now_ms >= m->next_try_ms)
            try_connect(m, now_ms);
        if (m->state == DISCONNECTED)
            return (int)(m->next_try_ms - now_ms);
        return 100;
    case DIALING:
        if (atomic_load(&m->dial_done) == DIAL_DONE) {
            dialed(m);
            return 0;
        }
        if (now_ms - m->connect_ms > CONNECT_TIMEOUT_MS && !m->warned_slow++)
            log_warn("mqtt: connecting to %s:%d has not finished in %d s "
                     "(the name lookup or the TCP connect hangs); still "
                     "trying",
                     m->o.host, m->o.port, CONNECT_TIMEOUT_MS / 1000);
        return 100;
    case CONNECTING:
        if (now_ms - m->connect_ms > CONNECT_TIMEOUT_MS) {
            mqtt_in_abort(m, "no CONNACK in time");
        }
        return 100;
    case CONNECTED:
        if (mosquitto_loop_misc(m->mosq) != MOSQ_ERR_SUCCESS ||
            mosquitto_socket(m->mosq) < 0)
            set_state(m, DISCONNECTED, 0, "keepalive timeout");
        return 1000;
    }
    return 1000;
}

int mqtt_in_publish(struct mqtt_in *m, const char *topic, const void *payload,
                    size_t len)
{
    int rc;
    if (m->state != CONNECTED)
        return -ENOTCONN;
    if (len > (size_t)INT32_MAX)
        return -EINVAL;
    /* threaded mode: queued only, written by mqtt_in_write() */
    rc = mosquitto_publish_v5(m->mosq, NULL, topic, (int)len, payload, 0, false,
                              NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        return 0;
    log_warn("mqtt: cannot publish to %s: %s", topic, mosquitto_strerror(rc));
    return rc == MOSQ_ERR_NOMEM ? -ENOMEM : -EINVAL;
}

void mqtt_in_close(struct mqtt_in *m)
{
    if (!live(m))
        return;
    m->state = DISCONNECTED; /* ours: not a lost connection */
    mosquitto_disconnect(m->mosq);
    mosquitto_loop_write(m->mosq, 1);
}
