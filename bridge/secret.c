/*
 * secret.c — names that may hold secrets (see secret.h). A name is one when
 * any dot-, dash- or underscore-separated word of it is one of the words
 * below, or it contains "passw": sasl.password, ssl.key.password,
 * ssl.keystore.password, sasl.oauthbearer.client.secret,
 * sasl.jaas.config, ssl.key.pem, mqtt.password, ...
 */
#include "bridge/secret.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

int secret_name(const char *name)
{
    static const char *const words[] = {
        "password", "passwd", "pass",    "secret",     "token",
        "jaas",     "key",    "private", "credential", "credentials",
        "pem",      "pwd",    "auth",    "apikey",     "cookie",
    };
    char w[64];
    size_t n = 0;
    if (!name)
        return 0;
    if (strcasestr(name, "passw"))
        return 1;
    for (const char *p = name;; p++) {
        if (*p && *p != '.' && *p != '_' && *p != '-') {
            if (n < sizeof(w) - 1)
                w[n++] = (char)tolower((unsigned char)*p);
            continue;
        }
        w[n] = '\0';
        for (size_t i = 0; n && i < sizeof(words) / sizeof(words[0]); i++)
            if (!strcmp(w, words[i]))
                return 1;
        n = 0;
        if (!*p)
            return 0;
    }
}
