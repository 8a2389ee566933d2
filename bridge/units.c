/*
 * units.c — pure: sizes and durations (see units.h). libc only.
 */
#include "bridge/units.h"

#include <errno.h>
#include <stdio.h>
#include <strings.h>

struct unit {
    const char *name;
    int64_t mult;
};

static int parse_units(const char *s, const struct unit *u, int64_t plain,
                       int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    if (!s || *p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (*p == ' ')
        p++;
    int64_t mult = *p ? 0 : plain;
    for (; *p && u->name; u++)
        if (!strcasecmp(p, u->name))
            mult = u->mult;
    if (!mult || v > INT64_MAX / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

static const struct unit size_units[] = {{"B", 1},
                                         {"KB", 1000},
                                         {"MB", 1000000},
                                         {"GB", 1000000000},
                                         {"TB", 1000 * 1000000000LL},
                                         {"KiB", KiB},
                                         {"MiB", MiB},
                                         {"GiB", GiB},
                                         {"TiB", TiB},
                                         {NULL, 0}};
static const struct unit dur_units[] = {{"ms", 1},       {"s", 1000},
                                        {"m", 60000},    {"h", 3600000},
                                        {"d", 86400000}, {NULL, 0}};

int units_parse_size(const char *s, int64_t *out)
{
    return parse_units(s, size_units, 1, out);
}

int units_parse_duration_ms(const char *s, int64_t *out)
{
    return parse_units(s, dur_units, 1000, out); /* a plain number is seconds */
}

static void format_units(int64_t v, const struct unit *u, size_t n, char *buf,
                         size_t len)
{
    for (size_t i = n; i-- > 0;)
        if (v != 0 && v % u[i].mult == 0) {
            snprintf(buf, len, "%lld%s", (long long)(v / u[i].mult), u[i].name);
            return;
        }
    snprintf(buf, len, "%lld%s", (long long)v, u[0].name);
}

void units_format_size(int64_t bytes, char *buf, size_t len)
{
    static const struct unit u[] = {
        {"B", 1}, {"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"TiB", TiB}};
    format_units(bytes, u, 5, buf, len);
}

void units_format_duration_ms(int64_t ms, char *buf, size_t len)
{
    format_units(ms, dur_units, 5, buf, len);
}
