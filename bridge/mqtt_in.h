/*
 * mqtt_in.h — the MQTT side: one persistent session on the gateway's broker.
 *
 * The contract that keeps data safe: mqtt_in_read() hands messages to the
 * callback and *queues* their acknowledgements; nothing is sent to the
 * broker until mqtt_in_write(). The caller makes the batch durable between
 * the two. If it cannot (spool full, disk error), mqtt_in_abort() drops the
 * connection with the acknowledgements unsent, so the broker redelivers.
 *
 * The connection may use TLS (the broker's certificate and host name
 * verified by OpenSSL, optionally a client certificate) and a user name
 * and password. When an attempt fails, mqtt_in_cause() says why in words
 * an operator can act on: "not authorized (bad username or password)",
 * "certificate verify failed: unable to get local issuer certificate",
 * "the broker closed the connection before answering (a TLS listener?)".
 */
#ifndef MQTT2KAFKA_MQTT_IN_H
#define MQTT2KAFKA_MQTT_IN_H

#include <stddef.h>
#include <stdint.h>

struct mqtt_in;

struct mqtt_in_opts {
    const char *host;
    int port;
    const char *client_id;
    int protocol; /* 5 or 4 (3.1.1) */
    int qos;
    int keepalive;                   /* s */
    int64_t session_expiry;          /* s, MQTT 5 */
    int reconnect_max;               /* s, cap of the backoff */
    const char *username, *password; /* NULL: none */
    uint32_t max_packet; /* MQTT 5 maximum packet size we accept; 0: none */
    const char *const *filters; /* subscriptions, renewed on every connect */
    size_t nfilters;
    /* NULL or "": the filters as they are. Else each is subscribed as
     * $share/<share_group>/<filter> (a shared subscription: the broker
     * gives each message to one member of the group). */
    const char *share_group;
    int watch_sys_drops; /* also subscribe to the broker's drop counter */
    /* TLS: on when tls is 1. ca_file NULL: the system's CA store. A client
     * certificate needs its key; key_password for an encrypted key. */
    int tls;
    const char *ca_file, *cert_file, *key_file, *key_password;
    int tls_no_hostname_check; /* insecure: the chain only */
};

struct mqtt_in_prop { /* an MQTT 5 user property */
    const char *name;
    const char *value;
};

#define MQTT_IN_MAX_PROPS 32
/* The MQTT 5 receive maximum we announce: the broker may have at most this
 * many QoS>0 messages unacknowledged with us. */
#define MQTT_IN_RECEIVE_MAX 4096

/* One message, borrowed until the callback returns: copy what you keep. */
struct mqtt_in_msg {
    const char *topic;
    const void *payload;
    size_t len;
    int qos;
    int retain;
    int mid; /* packet id: a redelivery after reconnect keeps it */
    const struct mqtt_in_prop *props;
    size_t nprops;
};

struct mqtt_in_cb {
    void (*message)(void *ud, const struct mqtt_in_msg *m);
    /* connected: 1 on CONNACK (session_present says whether the broker
     * kept our session), 0 on a lost connection (reason is a sentence). */
    void (*state)(void *ud, int connected, int session_present,
                  const char *reason);
    /* The broker's $SYS dropped-messages counter went from old to now. */
    void (*broker_dropped)(void *ud, int64_t old, int64_t now);
};

/* Creates the client; it connects on the first mqtt_in_tick(). Copies o's
 * strings (and the filters). -ENOMEM or -EINVAL (err says why: a CA file,
 * certificate or key that does not load, named). */
int mqtt_in_new(const struct mqtt_in_opts *o, const struct mqtt_in_cb *cb,
                void *ud, struct mqtt_in **out, char *err, size_t errlen);
void mqtt_in_free(struct mqtt_in *m); /* NULL is fine; no DISCONNECT sent */

/* The socket to poll, or -1 while disconnected. */
int mqtt_in_fd(const struct mqtt_in *m);
/* 1 when queued packets wait for mqtt_in_write(). */
int mqtt_in_want_write(const struct mqtt_in *m);
int mqtt_in_connected(const struct mqtt_in *m);
/* Why the connection is down: the last failed attempt's or lost
 * connection's cause, one line without secrets; NULL while connected or
 * before the first attempt ended. Valid until the next call into m. */
const char *mqtt_in_cause(const struct mqtt_in *m);

/* The longest share group name; mqtt_in_new() refuses a longer one. */
#define MQTT_IN_SHARE_GROUP_MAX 128

/* 1 when group is a usable share name: 1 to MQTT_IN_SHARE_GROUP_MAX
 * bytes, no '/', '+', '#' or control character. */
int mqtt_in_share_group_ok(const char *group);
/* The form filter is subscribed in: "$share/<group>/<filter>", or filter
 * when group is NULL or "". Written to buf; its length, or -ENOSPC. */
int mqtt_in_sub_filter(const char *group, const char *filter, char *buf,
                       size_t len);

/* Replaces the subscriptions (copied): while connected, subscribes to the
 * new filters, then unsubscribes from the ones no longer wanted (never a
 * moment without a subscription); after any reconnect the whole list is
 * subscribed. What is no longer wanted is unsubscribed until the broker
 * confirms it, also across a reconnect, so no old subscription stays in
 * the persistent session. 0 or -ENOMEM. */
int mqtt_in_set_filters(struct mqtt_in *m, const char *const *filters,
                        size_t n);
/* The same with a share group (NULL or "": none): a changed group is a
 * change of every subscription, made on the same session. 0, -EINVAL (a
 * bad group name) or -ENOMEM. */
int mqtt_in_set_subscriptions(struct mqtt_in *m, const char *share_group,
                              const char *const *filters, size_t n);

/* Reads until the socket is dry or max messages were handed over. Returns
 * the number of messages, or < 0 when the connection was lost (the state
 * callback has been told; reconnecting is mqtt_in_tick()'s job). */
int mqtt_in_read(struct mqtt_in *m, size_t max);
/* Sends what is queued, acknowledgements included. Call it only when every
 * message read so far is durable. */
int mqtt_in_write(struct mqtt_in *m);
/* Drops the connection without sending what is queued. */
void mqtt_in_abort(struct mqtt_in *m, const char *why);
/* Keepalive and reconnect with capped exponential backoff and jitter.
 * paused: do not reconnect (backpressure). The name lookup and TCP connect
 * run in a short-lived thread of their own, so a broker host that does not
 * answer never blocks the caller. Returns ms until it wants to be called
 * again. */
int mqtt_in_tick(struct mqtt_in *m, int64_t now_ms, int paused);
/* Queues a QoS 0 publish (a Sparkplug rebirth request): it goes out with
 * the next mqtt_in_write(), after the acknowledgements queued before it;
 * never blocks. 0; -ENOTCONN when not connected (nothing is kept for
 * later); -EINVAL, -ENOMEM from libmosquitto. */
int mqtt_in_publish(struct mqtt_in *m, const char *topic, const void *payload,
                    size_t len);
/* Sends DISCONNECT (after what is queued) and closes, for shutdown. */
void mqtt_in_close(struct mqtt_in *m);

#endif
