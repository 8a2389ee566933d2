/*
 * conf_files.c — the files a configuration names: certificates, private
 * keys and secrets (see conf.h, struct conf_file).
 *
 * Each file key's value is a path, or credential:NAME for a systemd
 * credential ($CREDENTIALS_DIRECTORY/NAME, what LoadCredential= gives the
 * service). A file that holds a secret or a private key must not be
 * readable (or writable) by any user: a password file left at mode 0644 is
 * refused with its name and what to do, rather than used. A *_file secret
 * is read into the key it stands for, with one trailing newline ("\n" or
 * "\r\n") stripped; certificates are only read to fingerprint them, so a
 * reload can tell a renewed certificate from an unchanged one.
 *
 * Each file is opened once and checked through its descriptor (fstat), so
 * what is checked is what is read. Messages name the file and the key at
 * file:line:col, never a secret's bytes. libc only.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERT_MAX (1024 * 1024) /* bytes of a certificate or key file */

struct fctx {
    struct conf *c;
    const struct conf_file *f;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int ferr(struct fctx *x,
                                                      const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(x->err, x->errlen, "%s:%d:%d: %s: ", x->c->path,
                     x->f->line, x->f->col, x->f->name);
    if (n >= 0 && (size_t)n < x->errlen) {
        va_start(ap, fmt);
        vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static void notef(void (*note)(void *, const char *), void *ud, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));
static void notef(void (*note)(void *, const char *), void *ud, const char *fmt,
                  ...)
{
    char text[1024];
    va_list ap;
    if (!note)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    note(ud, text);
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The path to open for value v: v, or the credential's. -ENOENT when a
 * credential cannot be resolved here (no $CREDENTIALS_DIRECTORY). */
static int resolve(const char *v, char *path, size_t len)
{
    if (strncmp(v, "credential:", 11)) {
        snprintf(path, len, "%s", v);
        return 0;
    }
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return -ENOENT;
    if ((size_t)snprintf(path, len, "%s/%s", dir, v + 11) >= len)
        return -ENAMETOOLONG;
    return 0;
}

/* Reads the whole file (at most max bytes) into a malloc'ed buffer,
 * checking the descriptor it reads: a regular file, and private when the
 * key says so. */
static int slurp(struct fctx *x, const char *path, size_t max,
                 unsigned char **out, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return ferr(x, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ferr(x, "%s is not a regular file", path);
    }
    if ((x->f->flags & CONF_FILE_PRIVATE) &&
        (st.st_mode & (S_IROTH | S_IWOTH))) {
        close(fd);
        return ferr(x,
                    "%s holds a %s and any user can %s it (mode %04o): "
                    "refused. Make it private: chmod o-rwx %s (e.g. owner "
                    "root, group mqtt2kafka, mode 0640)",
                    path,
                    x->f->flags & CONF_FILE_SECRET ? "secret" : "private key",
                    st.st_mode & S_IROTH ? "read" : "change",
                    (unsigned)(st.st_mode & 07777), path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return ferr(x, "%s is larger than %zu bytes", path, max);
    }
    unsigned char *buf = malloc(max + 1);
    size_t n = 0;
    ssize_t r = 0;
    while (buf && n <= max && (r = read(fd, buf + n, max + 1 - n)) > 0)
        n += (size_t)r;
    int e = errno;
    close(fd);
    if (!buf)
        return -ENOMEM;
    if (r < 0 || n > max) {
        memset(buf, 0, n);
        free(buf);
        return r < 0 ? ferr(x, "cannot read %s: %s", path, strerror(e))
                     : ferr(x, "%s is larger than %zu bytes", path, max);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A secret file's text: one trailing newline off; one line, no control
 * characters; into the key it stands for. */
static int set_secret(struct fctx *x, const char *path, unsigned char *buf,
                      size_t n)
{
    char **dst = (char **)((char *)x->c + x->f->secret_off);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    if (n == 0)
        return ferr(x, "%s is empty", path);
    for (size_t i = 0; i < n; i++)
        if (buf[i] < 0x20 || buf[i] == 0x7f)
            return ferr(x,
                        "%s holds more than one line or a control character "
                        "(only one trailing newline is allowed)",
                        path);
    char *v = malloc(n + 1);
    if (!v)
        return -ENOMEM;
    memcpy(v, buf, n);
    v[n] = '\0';
    if (*dst) {
        memset(*dst, 0, strlen(*dst));
        free(*dst);
    }
    *dst = v;
    return 0;
}

static int load_one(struct fctx *x, unsigned flags,
                    void (*note)(void *, const char *), void *ud)
{
    struct conf_file *f = (struct conf_file *)x->f;
    char **value = (char **)((char *)x->c + f->off);
    char path[4200];
    unsigned char *buf = NULL;
    size_t n = 0;

    if (strstr(f->written, "${")) { /* lenient: a variable not set here */
        notef(note, ud,
              "%s:%d:%d: %s: %s names a variable that is not set here; not "
              "checked",
              x->c->path, f->line, f->col, f->name, f->written);
        return 0;
    }
    int rc = resolve(f->written, path, sizeof path);
    if (rc == -ENOENT && (flags & CONF_FILES_CHECK)) {
        notef(note, ud,
              "%s:%d:%d: %s: %s is a systemd credential: it is checked when "
              "the service starts (no $CREDENTIALS_DIRECTORY here)",
              x->c->path, f->line, f->col, f->name, f->written);
        return 0;
    }
    if (rc == -ENOENT)
        return ferr(x,
                    "%s: $CREDENTIALS_DIRECTORY is not set (a credential "
                    "comes from the unit's LoadCredential=%s:FILE)",
                    f->written, f->written + 11);
    if (rc)
        return ferr(x, "%s: the credential's path is too long", f->written);
    rc =
        slurp(x, path, f->flags & CONF_FILE_SECRET ? CONF_MAX_SECRET : CERT_MAX,
              &buf, &n);
    if (rc)
        return rc;
    f->digest = fnv1a(fnv1a(14695981039346656037ULL,
                            (const unsigned char *)path, strlen(path) + 1),
                      buf, n);
    if (f->flags & CONF_FILE_SECRET)
        rc = set_secret(x, path, buf, n);
    memset(buf, 0, n);
    free(buf);
    if (rc)
        return rc;
    if (strcmp(*value, path)) { /* the credential's real path */
        char *p = strdup(path);
        if (!p)
            return -ENOMEM;
        free(*value);
        *value = p;
    }
    f->read = 1;
    return 0;
}

/* An inline secret in a file any user may read: said, not refused (the
 * daemon may not be able to fix the mode). */
static void warn_inline(const struct conf *c,
                        void (*note)(void *, const char *), void *ud)
{
    struct stat st;
    const char *inline_key =
        c->mqtt.password && *c->mqtt.password && !c->mqtt.password_file
            ? "mqtt.password"
        : c->kafka.security.password && !c->kafka.security.password_file
            ? "kafka.security.password"
            : NULL;
    if (inline_key && stat(c->path, &st) == 0 && (st.st_mode & S_IROTH))
        notef(note, ud,
              "%s holds %s and any user can read it (mode %04o): use %s_file "
              "with a private file, or chmod o-r %s",
              c->path, inline_key, (unsigned)(st.st_mode & 07777), inline_key,
              c->path);
}

int conf_load_files(struct conf *c, unsigned flags,
                    void (*note)(void *ud, const char *text), void *ud,
                    char *err, size_t errlen)
{
    struct fctx x = {c, NULL, err, errlen};
    if (errlen)
        err[0] = '\0';
    for (size_t i = 0; i < c->nfiles; i++) {
        x.f = &c->files[i];
        int rc = load_one(&x, flags, note, ud);
        if (rc == -ENOMEM && errlen && !err[0])
            snprintf(err, errlen, "%s: out of memory", c->path);
        if (rc)
            return rc;
    }
    warn_inline(c, note, ud);
    return 0;
}
