/*
 * record.c — pack and unpack record headers (format in record.h).
 *
 * Names are stored without a terminator, but librdkafka wants C strings, so
 * decode copies the names (only) into a caller-owned scratch area.
 */
#include "bridge/record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int record_hdr_add(struct record_hdrs *h, const char *name, const void *value,
                   size_t len)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 255 || len > 65535 ||
        h->len + 3 + nlen + len > h->cap)
        return -ENOSPC;
    unsigned char *p = h->buf + h->len;
    *p++ = (unsigned char)nlen;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = (unsigned char)(len >> 8);
    *p++ = (unsigned char)(len & 0xff);
    if (len)
        memcpy(p, value, len);
    h->len += 3 + nlen + len;
    return 0;
}

int record_hdr_add_str(struct record_hdrs *h, const char *name,
                       const char *value)
{
    return record_hdr_add(h, name, value, strlen(value));
}

int record_hdr_add_i64(struct record_hdrs *h, const char *name, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    return record_hdr_add(h, name, buf, (size_t)n);
}

int record_hdrs_decode(const void *blob, size_t len, struct record_hdr *out,
                       size_t max, char *names, size_t names_cap)
{
    const unsigned char *p = blob, *end = p + len;
    size_t n = 0, used = 0;
    while (p < end) {
        size_t nlen = *p++;
        if (n == max || (size_t)(end - p) < nlen + 2 ||
            used + nlen + 1 > names_cap)
            return -EINVAL;
        memcpy(names + used, p, nlen);
        names[used + nlen] = '\0';
        out[n].name = names + used;
        used += nlen + 1;
        p += nlen;
        size_t vlen = (size_t)p[0] << 8 | p[1];
        p += 2;
        if ((size_t)(end - p) < vlen)
            return -EINVAL;
        out[n].value = p;
        out[n].len = vlen;
        p += vlen;
        n++;
    }
    return (int)n;
}

int record_reserved_name(const char *name)
{
    static const char *const prefixes[] = {"m2k.", "mqtt.", "error.",
                                           "gateway.", "kafka."};
    static const char *const names[] = {"received.ms", "content-type"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncasecmp(name, prefixes[i], strlen(prefixes[i])))
            return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(name, names[i]))
            return 1;
    return 0;
}

int record_hdr_add_user(struct record_hdrs *h, const char *name,
                        const char *value, int64_t *renamed)
{
    char buf[256];
    if (!record_reserved_name(name))
        return record_hdr_add_str(h, name, value);
    int n = snprintf(buf, sizeof(buf), RECORD_USER_PREFIX "%s", name);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -ENOSPC;
    (*renamed)++;
    return record_hdr_add_str(h, buf, value);
}
