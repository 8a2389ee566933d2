/*
 * mqtt_tls.c — the MQTT connection's TLS context (see mqtt_tls.h).
 *
 * TLS 1.2 at least; the peer verified (SSL_VERIFY_PEER) against the given
 * CA file or the system's store, and against the host we dial, set as the
 * expected host or IP address on the context's X509_VERIFY_PARAM (every
 * SSL made from it inherits it). The verify callback only notes the first
 * error OpenSSL reports and returns OpenSSL's own verdict.
 */
#include "bridge/mqtt_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mqtt_tls {
    SSL_CTX *ctx;
    char host[256];
    int verify_err;   /* X509_V_OK, or the first error of the handshake */
    int verify_depth; /* where in the chain */
    char why[320];    /* the text of verify_err */
    const char *key_password; /* only while the key is loaded */
};

static int ex_index = -1; /* our pointer in the SSL_CTX */

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct mqtt_tls *t =
        ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index) : NULL;
    if (!ok && t && t->verify_err == X509_V_OK) {
        t->verify_err = X509_STORE_CTX_get_error(x);
        t->verify_depth = X509_STORE_CTX_get_error_depth(x);
    }
    return ok; /* OpenSSL's verdict, unchanged */
}

static int password_cb(char *buf, int size, int rwflag, void *ud)
{
    struct mqtt_tls *t = ud;
    (void)rwflag;
    if (!t->key_password || size <= 0)
        return 0;
    size_t n = strlen(t->key_password);
    if (n >= (size_t)size)
        return 0;
    memcpy(buf, t->key_password, n);
    return (int)n;
}

/* OpenSSL's reason for the last failure, for a message. */
static const char *ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

static int load(struct mqtt_tls *t, const struct mqtt_tls_opts *o, char *err,
                size_t errlen)
{
    char why[160];
    if (o->ca_file
            ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1
            : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        snprintf(err, errlen,
                 "mqtt: TLS: cannot load the CA certificates%s%s: %s",
                 o->ca_file ? " from " : " of the system",
                 o->ca_file ? o->ca_file : "", ossl_reason(why, sizeof why));
        return -EINVAL;
    }
    if (!o->cert_file)
        return 0;
    if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
        snprintf(err, errlen,
                 "mqtt: TLS: cannot load the client certificate %s: %s",
                 o->cert_file, ossl_reason(why, sizeof why));
        return -EINVAL;
    }
    t->key_password = o->key_password;
    SSL_CTX_set_default_passwd_cb(t->ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(t->ctx, t);
    int ok =
        SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) == 1;
    t->key_password = NULL;
    SSL_CTX_set_default_passwd_cb(t->ctx, NULL);
    SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
    if (!ok) {
        snprintf(err, errlen, "mqtt: TLS: cannot load the private key %s: %s%s",
                 o->key_file, ossl_reason(why, sizeof why),
                 o->key_password
                     ? ""
                     : " (an encrypted key needs key_password_file)");
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        snprintf(err, errlen,
                 "mqtt: TLS: the private key %s does not belong to the "
                 "certificate %s",
                 o->key_file, o->cert_file);
        ERR_clear_error();
        return -EINVAL;
    }
    return 0;
}

/* The host the certificate must name: an IP address as an IP (its
 * subjectAltName IP entry), anything else as a DNS name. */
static int expect_host(struct mqtt_tls *t, const char *host)
{
    X509_VERIFY_PARAM *p = SSL_CTX_get0_param(t->ctx);
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(p, host) == 1 ? 0 : -EINVAL;
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(p, host, 0) == 1 ? 0 : -EINVAL;
}

int mqtt_tls_new(const struct mqtt_tls_opts *o, struct mqtt_tls **out,
                 char *err, size_t errlen)
{
    struct mqtt_tls *t = calloc(1, sizeof(*t));
    int rc = -ENOMEM;
    *out = NULL;
    if (!t)
        return -ENOMEM;
    ERR_clear_error();
    if (ex_index < 0)
        ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ex_index < 0 || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "mqtt: TLS: out of memory");
        goto fail;
    }
    snprintf(t->host, sizeof(t->host), "%s", o->host);
    SSL_CTX_set_ex_data(t->ctx, ex_index, t);
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_cb);
    if ((rc = load(t, o, err, errlen)))
        goto fail;
    if (!o->no_hostname_check && expect_host(t, o->host)) {
        snprintf(err, errlen, "mqtt: TLS: cannot check the host name %s",
                 o->host);
        rc = -EINVAL;
        goto fail;
    }
    mqtt_tls_reset(t);
    *out = t;
    return 0;
fail:
    mqtt_tls_free(t);
    return rc;
}

void mqtt_tls_free(struct mqtt_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx); /* libmosquitto holds its own reference */
    free(t);
}

void *mqtt_tls_ctx(struct mqtt_tls *t)
{
    return t->ctx;
}

void mqtt_tls_reset(struct mqtt_tls *t)
{
    t->verify_err = X509_V_OK;
    t->verify_depth = 0;
    t->why[0] = '\0';
}

const char *mqtt_tls_verify_error(struct mqtt_tls *t)
{
    struct mqtt_tls *w = t;
    if (t->verify_err == X509_V_OK)
        return NULL;
    const char *r = X509_verify_cert_error_string(t->verify_err);
    if (t->verify_err == X509_V_ERR_HOSTNAME_MISMATCH ||
        t->verify_err == X509_V_ERR_IP_ADDRESS_MISMATCH)
        snprintf(w->why, sizeof(w->why),
                 "%s (the broker's certificate is not for %s)", r, t->host);
    else if (t->verify_depth > 0)
        snprintf(w->why, sizeof(w->why), "%s (in the broker's chain, %d up)", r,
                 t->verify_depth);
    else
        snprintf(w->why, sizeof(w->why), "%s", r);
    return w->why;
}

void mqtt_tls_reason(const char *line, char *buf, size_t len)
{
    const char *p = strstr(line, "::");
    if (p) {
        p += 2;
    } else if ((p = strrchr(line, ':'))) {
        p++;
        while (*p == ' ')
            p++;
    } else {
        p = line;
    }
    snprintf(buf, len, "%s", p);
}
