/*
 * conf_env.c — ${NAME} in configuration values: the environment of the
 * process, as systemd's Environment= and EnvironmentFile= set it.
 *
 * The grammar is small on purpose: "${NAME}" with NAME a shell variable
 * name ([A-Za-z_][A-Za-z0-9_]*), replaced by the variable's value; "$${"
 * is a literal "${"; any other '$' is itself. No defaults, no nesting, no
 * recursion: a value that holds "${" after expansion is not expanded
 * again. Pure but for getenv(); libc only.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EXPANDED_MAX 65536 /* bytes of one expanded value */

static int name_char(char ch, int first)
{
    return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (!first && ch >= '0' && ch <= '9');
}

/* Appends n bytes of s to the growing *buf; -ENOMEM or -E2BIG. */
static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > EXPANDED_MAX)
        return -E2BIG;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -ENOMEM;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

int conf_env_expand(const char *s, unsigned flags, char **out, char *why,
                    size_t wlen, void (*unset)(void *ud, const char *name),
                    void *ud)
{
    char *buf = NULL, name[128];
    size_t len = 0, cap = 0;
    int rc = put(&buf, &len, &cap, "", 0);

    *out = NULL;
    while (rc == 0 && *s) {
        const char *d = strchr(s, '$');
        if (!d) {
            rc = put(&buf, &len, &cap, s, strlen(s));
            break;
        }
        rc = put(&buf, &len, &cap, s, (size_t)(d - s));
        if (rc)
            break;
        if (d[1] == '$' && d[2] == '{') { /* $${: a literal ${ */
            rc = put(&buf, &len, &cap, "${", 2);
            s = d + 3;
            continue;
        }
        if (d[1] != '{') { /* a lone $ */
            rc = put(&buf, &len, &cap, "$", 1);
            s = d + 1;
            continue;
        }
        const char *p = d + 2, *end = strchr(p, '}');
        size_t n = end ? (size_t)(end - p) : 0;
        int ok = end && n > 0 && n < sizeof name && name_char(p[0], 1);
        for (size_t i = 1; ok && i < n; i++)
            ok = name_char(p[i], 0);
        if (!ok) {
            snprintf(why, wlen,
                     "expected ${NAME} with NAME made of letters, digits and "
                     "_ (write $${ for a literal ${)");
            free(buf);
            return -EINVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        const char *v = getenv(name);
        if (v) {
            rc = put(&buf, &len, &cap, v, strlen(v));
        } else if (flags & CONF_ENV_LENIENT) {
            if (unset)
                unset(ud, name);
            rc = put(&buf, &len, &cap, d, n + 3);
        } else {
            snprintf(why, wlen, "the environment variable %s is not set", name);
            free(buf);
            return -EINVAL;
        }
        s = end + 1;
    }
    if (rc == -E2BIG) {
        snprintf(why, wlen, "longer than %d bytes once ${...} is expanded",
                 EXPANDED_MAX);
        free(buf);
        return -EINVAL;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}
