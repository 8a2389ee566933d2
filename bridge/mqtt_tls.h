/*
 * mqtt_tls.h — the TLS client context of the MQTT connection, made with
 * OpenSSL and handed to libmosquitto (MOSQ_OPT_SSL_CTX).
 *
 * Why our own context rather than mosquitto_tls_set(): verification is
 * OpenSSL's own (the chain, the dates, and the host name through
 * X509_VERIFY_PARAM, exactly what `openssl s_client -verify_hostname`
 * checks), and its verify callback lets us keep OpenSSL's reason when it
 * fails ("unable to get local issuer certificate", "certificate has
 * expired", "IP address mismatch") where libmosquitto only says "A TLS
 * error occurred". The callback changes no verdict: it records and
 * returns OpenSSL's.
 *
 * A leaf of mqtt_in: OpenSSL and libc only. One context per client; its
 * record of the last failure is written during a handshake (the dialing
 * thread or the loop, never both at once: see mqtt_in.c) and read after.
 */
#ifndef MQTT2KAFKA_MQTT_TLS_H
#define MQTT2KAFKA_MQTT_TLS_H

#include <stddef.h>

struct mqtt_tls;

struct mqtt_tls_opts {
    const char *host;    /* what the certificate must name (a name or IP) */
    const char *ca_file; /* PEM; NULL: the system's store */
    const char *cert_file, *key_file; /* our certificate (mTLS), or NULL */
    const char *key_password;         /* of an encrypted key, or NULL */
    int no_hostname_check;            /* insecure: the chain only */
};

/* Builds the context: loads the CAs, the client certificate and key (which
 * must match). -EINVAL with err naming the file and OpenSSL's reason, or
 * -ENOMEM. Borrows nothing. */
int mqtt_tls_new(const struct mqtt_tls_opts *o, struct mqtt_tls **out,
                 char *err, size_t errlen);
void mqtt_tls_free(struct mqtt_tls *t); /* NULL is fine */

/* The SSL_CTX * for mosquitto_void_option(MOSQ_OPT_SSL_CTX). */
void *mqtt_tls_ctx(struct mqtt_tls *t);

/* Forgets the last failure: call before each connection attempt. */
void mqtt_tls_reset(struct mqtt_tls *t);
/* Why OpenSSL refused the server's certificate in the last handshake
 * ("unable to get local issuer certificate"), with the host for a name
 * mismatch; NULL when it did not. Valid until the next reset. */
const char *mqtt_tls_verify_error(struct mqtt_tls *t);

/* "certificate verify failed" from an OpenSSL error line as libmosquitto
 * logs it ("OpenSSL Error[0]: error:0A000086:SSL routines::certificate
 * verify failed"): the reason after the last "::" or ':' field. Pure. */
void mqtt_tls_reason(const char *line, char *buf, size_t len);

#endif
