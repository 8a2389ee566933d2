/*
 * numfmt.c — pure: numbers as Python's json_format prints them (see
 * numfmt.h). Integers and the common doubles x/10^k without printf (half
 * the cost of the JSON path); the rest through %.*e and strtod, searching
 * the shortest precision that reads back.
 */
#include "bridge/numfmt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decimal digits of v, no terminator; returns the count (at most 20). */
size_t numfmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t numfmt_i64(char *out, int64_t v)
{
    if (v >= 0)
        return numfmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + numfmt_u64(out + 1, 0 - (uint64_t)v);
}

/* The common case without printf: v = x / 10^k exactly for some k <= 9
 * and |x| < 10^15. Then the decimal x.10^-k reads back as v, has at most
 * 15 digits, and so is the shortest (see fmt_double). 0 if not found. */
static size_t fmt_double_fast(char *out, double v)
{
    static const double p10[] = {1,   1e1, 1e2, 1e3, 1e4,
                                 1e5, 1e6, 1e7, 1e8, 1e9};
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k <= 9; k++) {
        double y = a * p10[k];
        if (y >= 1e15) /* 16 digits and more are not unique: printf */
            return 0;
        uint64_t x = (uint64_t)(y + 0.5);
        if ((double)x / p10[k] != a)
            continue;
        char d[24];
        size_t nd = numfmt_u64(d, x), o = 0,
               ip = nd > (size_t)k ? nd - (size_t)k : 0;
        if (v < 0)
            out[o++] = '-';
        if (ip == 0)
            out[o++] = '0';
        memcpy(out + o, d, ip);
        o += ip;
        out[o++] = '.';
        for (size_t z = nd; z < (size_t)k; z++)
            out[o++] = '0'; /* 0.00ddd */
        memcpy(out + o, d + ip, nd - ip);
        o += nd - ip;
        if (k == 0)
            out[o++] = '0'; /* 21.0 */
        return o;
    }
    return 0;
}

/* The shortest decimal that reads back as v (finite), in Python's repr
 * layout: fixed notation with at least one decimal for exponents -4..15,
 * else d.ddde+XX. Writes at most 32 bytes. */
size_t numfmt_double(char *out, double v)
{
    char tmp[40], digits[24];
    int prec, exp10, nd = 0;
    size_t o = fmt_double_fast(out, v);
    if (o)
        return o;
    /* A decimal of at most 15 digits that reads back is the 15-digit
     * rounding with its trailing zeros dropped (DBL_DIG = 15). Subnormals
     * have fewer digits of precision: those are searched from 1. */
    for (prec = v != 0 && fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    const char *p = tmp;
    if (*p == '-') {
        out[o++] = '-';
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = -1; i > exp10; i--)
                out[o++] = '0';
            memcpy(out + o, digits, (size_t)nd);
            o += (size_t)nd;
        } else {
            for (int i = 0; i <= exp10; i++)
                out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1) {
                memcpy(out + o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
                o += (size_t)(nd - exp10 - 1);
            } else {
                out[o++] = '0';
            }
        }
        return o;
    }
    out[o++] = digits[0];
    if (nd > 1) {
        out[o++] = '.';
        memcpy(out + o, digits + 1, (size_t)(nd - 1));
        o += (size_t)(nd - 1);
    }
    o += (size_t)snprintf(out + o, 8, "e%c%02d", exp10 < 0 ? '-' : '+',
                          abs(exp10));
    return o;
}

/* A float: the shortest %g text (6 digits at least) that reads back as the
 * same float, then printed as a double. */
size_t numfmt_float(char *out, float f)
{
    char tmp[40];
    double d = f;
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)f);
        d = strtod(tmp, NULL);
        if ((float)d == f)
            break;
    }
    return numfmt_double(out, d);
}
