/*
 * conf_value.c — one configuration value from text: strings, integers,
 * sizes, durations and choices, checked against their key's range, for
 * defaults and for the file alike (conf_int.h). Nothing here knows YAML;
 * messages say what was expected and never repeat a secret (K_SECRET keys
 * are strings, and string errors do not quote the value). libc only.
 */
#include "bridge/conf_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/units.h"

void conf_store_int(void *p, size_t size, int64_t v)
{
    if (size == sizeof(int64_t))
        *(int64_t *)p = v;
    else
        *(int *)p = (int)v;
}

void conf_range_text(const struct key *k, char *buf, size_t len)
{
    char a[32], b[32];
    if (k->type == T_SIZE) {
        units_format_size(k->min, a, sizeof a);
        units_format_size(k->max, b, sizeof b);
    } else if (k->type == T_DUR_MS) {
        units_format_duration_ms(k->min, a, sizeof a);
        units_format_duration_ms(k->max, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%lld", (long long)k->min);
        snprintf(b, sizeof b, "%lld", (long long)k->max);
    }
    snprintf(buf, len, "%s to %s%s", a, b,
             k->type == T_DUR_S ? " seconds" : "");
}

void conf_choices_text(const struct kenum *e, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (; e->name && n < len; e++)
        n +=
            (size_t)snprintf(buf + n, len - n, "%s%s", n ? " | " : "", e->name);
}

static const char *const type_names[] = {
    [T_STR] = "a string",
    [T_INT] = "an integer",
    [T_SIZE] = "a size (e.g. 512MiB, 1GiB, 100MB, or bytes)",
    [T_DUR_S] = "a duration (e.g. 30s, 12h, or plain seconds)",
    [T_DUR_MS] = "a duration (e.g. 250ms, 10s, 7d, or plain seconds)",
    [T_ENUM] = "one of",
    [T_CHOICE] = "one of",
    [T_PROPS] = "a mapping of librdkafka property names to values",
    [T_FILE] = "a file name (or credential:NAME)",
    [T_SECTION] = "a mapping",
};

static int kafka_name_ok(const char *s, char *bad)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
                    "6789._-",
                    *s)) {
            *bad = *s;
            return 0;
        }
    return 1;
}

/* An MQTT 5 share name ($share/<name>/<filter>): the first of '/', '+'
 * and '#' in it, or 0 when there is none. Empty means "not shared". */
static char share_bad(const char *s)
{
    const char *b = strpbrk(s, "/+#");
    return b ? *b : 0;
}

/* A systemd credential name: no '/', not "." or "..", not empty. */
static int credential_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
                    "6789._-@:",
                    *s))
            return 0;
    return 1;
}

/* Converts text for key k and stores it at base+off. On error writes what
 * was expected into why. Used for defaults and for the file alike. */
int conf_set_text(const struct key *k, const char *s, void *base, char *why,
                  size_t wlen)
{
    void *p = (char *)base + k->off;
    int64_t v = 0;
    char buf[128];
    int rc;

    switch (k->type) {
    case T_STR:
    case T_FILE:
    case T_CHOICE: {
        size_t n = strlen(s);
        if (k->type == T_CHOICE) {
            const struct kenum *e = k->enums;
            while (e->name && strcmp(e->name, s))
                e++;
            if (!e->name) {
                conf_choices_text(k->enums, buf, sizeof buf);
                snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf,
                         s);
                return -EINVAL;
            }
        } else if (n == 0 && !(k->flags & K_EMPTY_OK)) {
            snprintf(why, wlen, "expected a non-empty string");
            return -EINVAL;
        } else if ((int64_t)n > k->max) {
            snprintf(why, wlen, "expected a string of %d to %lld characters",
                     k->flags & K_EMPTY_OK ? 0 : 1, (long long)k->max);
            return -EINVAL;
        }
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                snprintf(why, wlen, "control characters are not allowed");
                return -EINVAL;
            }
        if (k->type == T_FILE && !strncmp(s, "credential:", 11) &&
            !credential_ok(s + 11)) {
            snprintf(why, wlen,
                     "expected credential:NAME, NAME as given to systemd's "
                     "LoadCredential= (letters, digits, . _ -)");
            return -EINVAL;
        }
        char bad = '?';
        if ((k->flags & K_TOPIC) && !kafka_name_ok(s, &bad)) {
            snprintf(why, wlen,
                     "\"%.60s\" is not a legal Kafka topic name ('%c' is not "
                     "allowed: "
                     "use only A-Z a-z 0-9 . _ -)",
                     s, bad);
            return -EINVAL;
        }
        if ((k->flags & K_SHARE) && (bad = share_bad(s))) {
            snprintf(why, wlen,
                     "\"%.60s\" is not a share name ('%c' is not allowed: "
                     "the broker reads $share/<name>/<filter>; use e.g. "
                     "letters, digits, . _ -)",
                     s, bad);
            return -EINVAL;
        }
        char *d = strdup(s);
        if (!d)
            return -ENOMEM;
        free(*(char **)p);
        *(char **)p = d;
        return 0;
    }
    case T_ENUM:
        for (const struct kenum *e = k->enums; e->name; e++)
            if (!strcmp(e->name, s)) {
                conf_store_int(p, k->size, e->val);
                return 0;
            }
        conf_choices_text(k->enums, buf, sizeof buf);
        snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf, s);
        return -EINVAL;
    case T_INT: {
        char *end;
        errno = 0;
        long long ll = strtoll(s, &end, 10);
        rc = (*s && !*end && errno == 0 && *s != ' ') ? 0 : -EINVAL;
        v = ll;
        break;
    }
    case T_SIZE:
        if ((k->flags & K_OFF) && !strcmp(s, "off")) {
            conf_store_int(p, k->size, 0);
            return 0;
        }
        rc = units_parse_size(s, &v);
        break;
    case T_DUR_S:
    case T_DUR_MS:
        rc = units_parse_duration_ms(s, &v);
        if (rc == 0 && k->type == T_DUR_S) {
            if (v % 1000) {
                snprintf(why, wlen, "expected whole seconds, got \"%.60s\"", s);
                return -EINVAL;
            }
            v /= 1000;
        }
        break;
    default:
        snprintf(why, wlen, "internal: no text form");
        return -EINVAL;
    }
    conf_range_text(k, buf, sizeof buf);
    if (rc) {
        snprintf(why, wlen, "expected %s from %s%s, got \"%.60s\"",
                 conf_type_name(k->type), buf,
                 k->flags & K_OFF ? ", or off" : "", s);
        return -EINVAL;
    }
    if (v < k->min || v > k->max) {
        snprintf(why, wlen, "%.60s is out of range (%s%s)", s, buf,
                 k->flags & K_OFF ? ", or off" : "");
        return -EINVAL;
    }
    conf_store_int(p, k->size, v);
    return 0;
}

const char *conf_type_name(enum ktype t)
{
    return t < sizeof type_names / sizeof type_names[0] && type_names[t]
               ? type_names[t]
               : "a value";
}
