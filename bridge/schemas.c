/*
 * schemas.c — the loaded protobuf schemas (schemas.h): the built-in set
 * the Makefile embeds (schemas_builtin_set, made by protoc-c from proto/)
 * and the `schemas:` entries of the configuration, each a path or a glob
 * pattern of FileDescriptorSet files, expanded in sorted order. One
 * registry for all, so the decode path has one kind of descriptor. A file
 * two sets carry (the same import) is loaded once; two different files of
 * one name are refused at the entry that brought the second; a type
 * defined twice or one no set defines, at the first entry (the sets are
 * linked together, so one may use another's types).
 *
 * Reads files (glob(3), pb_schema_add_file()); used by the daemon and the
 * tools at start, never per message.
 */
#include "bridge/schemas.h"

#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

extern const unsigned char schemas_builtin_set[];
extern const size_t schemas_builtin_len;

static int fresh(struct pb_schema **out, char *err, size_t errlen)
{
    int rc = pb_schema_new(out);
    if (rc) {
        snprintf(err, errlen, "schemas: out of memory");
        return rc;
    }
    pb_schema_set_flags(*out, PB_SCHEMA_STRING_BYTES);
    rc = pb_schema_add(*out, "(built in)", schemas_builtin_set,
                       schemas_builtin_len, err, errlen);
    if (rc) {
        pb_schema_free(*out);
        *out = NULL;
    }
    return rc;
}

int schemas_builtin(struct pb_schema **out, char *err, size_t errlen)
{
    int rc = fresh(out, err, errlen);
    if (!rc && (rc = pb_schema_link(*out, err, errlen))) {
        pb_schema_free(*out);
        *out = NULL;
    }
    return rc;
}

__attribute__((format(printf, 5, 6))) static int fail_at(const struct conf *c,
                                                         size_t i, char *err,
                                                         size_t errlen,
                                                         const char *fmt, ...)
{
    va_list ap;
    struct conf_mark m = c->at_schemas[i];
    int n = snprintf(err, errlen,
                     "%s:%d:%d: schemas[%zu]: ", c->path ? c->path : "<config>",
                     m.line, m.col, i + 1);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Expands entry i: 0 with g filled (at least one file), or an error. */
static int expand(const struct conf *c, size_t i, glob_t *g, char *err,
                  size_t errlen)
{
    int rc = glob(c->schemas[i], 0, NULL, g);
    if (rc == GLOB_NOMATCH)
        return fail_at(c, i, err, errlen,
                       "\"%.200s\" matches no file (make one with: protoc "
                       "--include_imports --descriptor_set_out=FILE.desc "
                       "FILE.proto)",
                       c->schemas[i]);
    if (rc == GLOB_NOSPACE)
        return fail_at(c, i, err, errlen, "out of memory");
    if (rc)
        return fail_at(c, i, err, errlen, "\"%.200s\" cannot be read: %s",
                       c->schemas[i], strerror(errno));
    return 0;
}

int schemas_load(const struct conf *c, struct pb_schema **out, char *err,
                 size_t errlen)
{
    char why[768];
    size_t files = 0;
    int rc = fresh(out, err, errlen);
    for (size_t i = 0; !rc && i < c->nschemas; i++) {
        glob_t g;
        if ((rc = expand(c, i, &g, err, errlen)))
            break;
        for (size_t k = 0; !rc && k < g.gl_pathc; k++) {
            if (++files > SCHEMAS_FILES_MAX)
                rc = fail_at(c, i, err, errlen,
                             "more than %d schema files in all",
                             SCHEMAS_FILES_MAX);
            else if ((rc = pb_schema_add_file(*out, g.gl_pathv[k], why,
                                              sizeof why)))
                fail_at(c, i, err, errlen, "%s", why);
        }
        globfree(&g);
    }
    /* one link for all: a set may use types another set defines */
    if (!rc && (rc = pb_schema_link(*out, why, sizeof why))) {
        if (c->nschemas)
            fail_at(c, 0, err, errlen, "%s", why);
        else
            snprintf(err, errlen, "%s", why);
    }
    if (rc) {
        pb_schema_free(*out);
        *out = NULL;
    }
    return rc;
}

void schemas_files(const struct conf *c, char *buf, size_t len)
{
    size_t n = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < c->nschemas && n < len; i++) {
        glob_t g;
        if (glob(c->schemas[i], 0, NULL, &g))
            continue;
        for (size_t k = 0; k < g.gl_pathc && n < len; k++)
            n += (size_t)snprintf(buf + n, len - n, "%s\n", g.gl_pathv[k]);
        globfree(&g);
    }
}
