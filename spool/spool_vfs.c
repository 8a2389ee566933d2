/*
 * spool_vfs.c — what the spool writes: a thin SQLite VFS over the system's
 * default one that counts the bytes written to the spool's files (the
 * database and its WAL) and the fsyncs, for the flash-wear metrics.
 *
 * Every call goes straight to the VFS underneath ("unix" on Linux); the
 * shim only adds to two counters after a write or a sync succeeded. One
 * shim per handle, registered under a name of its own ("m2k-spool-<ptr>")
 * with the handle's counters as its app data, so two spools in one process
 * never mix their counts. The counters are read and written under the
 * handle's mutex: SQLite runs a handle's I/O in the thread that holds it.
 *
 * What is counted is what SQLite hands the kernel (pwrite's byte count),
 * not what reaches the flash: the kernel writes whole pages, and the card
 * its own erase blocks. The daemon also reports the kernel's own count
 * for the process (/proc/self/io write_bytes) next to this one.
 *
 * sqlite3 and libc only.
 */
#include "spool/spool_int.h"

#include <stdio.h>
#include <string.h>

struct cfile { /* our file: the real one follows it, at REAL_OFF */
    sqlite3_file base;
    struct spool_vfs *v;
    sqlite3_file *real;
};
/* The real file holds 64-bit fields: keep it 16-byte aligned (a 32-bit
 * struct cfile is 12 bytes). */
#define REAL_OFF ((sizeof(struct cfile) + 15) & ~(size_t)15)

#define REAL(f) (((struct cfile *)(f))->real)
#define RM(f)   (REAL(f)->pMethods)

static int c_close(sqlite3_file *f)
{
    return RM(f) ? RM(f)->xClose(REAL(f)) : SQLITE_OK;
}

static int c_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return RM(f)->xRead(REAL(f), buf, n, off);
}

static int c_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int rc = RM(f)->xWrite(REAL(f), buf, n, off);
    if (rc == SQLITE_OK)
        ((struct cfile *)f)->v->written += n;
    return rc;
}

static int c_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return RM(f)->xTruncate(REAL(f), size);
}

static int c_sync(sqlite3_file *f, int flags)
{
    int rc = RM(f)->xSync(REAL(f), flags);
    if (rc == SQLITE_OK)
        ((struct cfile *)f)->v->syncs++;
    return rc;
}

static int c_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return RM(f)->xFileSize(REAL(f), size);
}

static int c_lock(sqlite3_file *f, int lock)
{
    return RM(f)->xLock(REAL(f), lock);
}

static int c_unlock(sqlite3_file *f, int lock)
{
    return RM(f)->xUnlock(REAL(f), lock);
}

static int c_reserved(sqlite3_file *f, int *out)
{
    return RM(f)->xCheckReservedLock(REAL(f), out);
}

static int c_control(sqlite3_file *f, int op, void *arg)
{
    return RM(f)->xFileControl(REAL(f), op, arg);
}

static int c_sector(sqlite3_file *f)
{
    return RM(f)->xSectorSize(REAL(f));
}

static int c_devchar(sqlite3_file *f)
{
    return RM(f)->xDeviceCharacteristics(REAL(f));
}

/* Versions 2 and 3 of the methods; the shim only offers them when the
 * real file does (c_open picks the table). */
static int c_shm_map(sqlite3_file *f, int pg, int sz, int ext,
                     void volatile **p)
{
    return RM(f)->xShmMap(REAL(f), pg, sz, ext, p);
}

static int c_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return RM(f)->xShmLock(REAL(f), off, n, flags);
}

static void c_shm_barrier(sqlite3_file *f)
{
    RM(f)->xShmBarrier(REAL(f));
}

static int c_shm_unmap(sqlite3_file *f, int del)
{
    return RM(f)->xShmUnmap(REAL(f), del);
}

static int c_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
    return RM(f)->xFetch(REAL(f), off, n, p);
}

static int c_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return RM(f)->xUnfetch(REAL(f), off, p);
}

#define METHODS(v)                                                             \
    {                                                                          \
        v, c_close, c_read, c_write, c_truncate, c_sync, c_size, c_lock,       \
            c_unlock, c_reserved, c_control, c_sector, c_devchar,              \
            v >= 2 ? c_shm_map : NULL, v >= 2 ? c_shm_lock : NULL,             \
            v >= 2 ? c_shm_barrier : NULL, v >= 2 ? c_shm_unmap : NULL,        \
            v >= 3 ? c_fetch : NULL, v >= 3 ? c_unfetch : NULL                 \
    }
static const sqlite3_io_methods methods[3] = {METHODS(1), METHODS(2),
                                              METHODS(3)};

#define VREAL(vfs) (((struct spool_vfs *)(vfs)->pAppData)->real)

static int c_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
                  int flags, int *out)
{
    struct cfile *cf = (struct cfile *)f;
    sqlite3_vfs *real = VREAL(vfs);
    cf->v = vfs->pAppData;
    cf->real = (sqlite3_file *)((char *)f + REAL_OFF);
    cf->base.pMethods = NULL;
    int rc = real->xOpen(real, name, cf->real, flags, out);
    /* SQLite calls xClose when pMethods is set, even after a failure: set
     * ours exactly when the real file has methods to close it with. */
    if (cf->real->pMethods) {
        int v = cf->real->pMethods->iVersion;
        cf->base.pMethods = &methods[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
    }
    return rc;
}

static int c_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
    return VREAL(vfs)->xDelete(VREAL(vfs), name, sync);
}

static int c_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return VREAL(vfs)->xAccess(VREAL(vfs), name, flags, out);
}

static int c_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return VREAL(vfs)->xFullPathname(VREAL(vfs), name, n, out);
}

static void *c_dlopen(sqlite3_vfs *vfs, const char *name)
{
    return VREAL(vfs)->xDlOpen(VREAL(vfs), name);
}

static void c_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
    VREAL(vfs)->xDlError(VREAL(vfs), n, msg);
}

static void (*c_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    return VREAL(vfs)->xDlSym(VREAL(vfs), h, sym);
}

static void c_dlclose(sqlite3_vfs *vfs, void *h)
{
    VREAL(vfs)->xDlClose(VREAL(vfs), h);
}

static int c_random(sqlite3_vfs *vfs, int n, char *out)
{
    return VREAL(vfs)->xRandomness(VREAL(vfs), n, out);
}

static int c_sleep(sqlite3_vfs *vfs, int us)
{
    return VREAL(vfs)->xSleep(VREAL(vfs), us);
}

static int c_time(sqlite3_vfs *vfs, double *out)
{
    return VREAL(vfs)->xCurrentTime(VREAL(vfs), out);
}

static int c_lasterr(sqlite3_vfs *vfs, int n, char *out)
{
    return VREAL(vfs)->xGetLastError(VREAL(vfs), n, out);
}

static int c_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    sqlite3_vfs *r = VREAL(vfs);
    if (r->iVersion >= 2 && r->xCurrentTimeInt64)
        return r->xCurrentTimeInt64(r, out);
    double d;
    int rc = r->xCurrentTime(r, &d);
    *out = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

int sp_vfs_register(struct spool_vfs *v)
{
    if (v->real)
        return SQLITE_OK; /* still registered from a first try */
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (!real)
        return SQLITE_ERROR;
    snprintf(v->name, sizeof v->name, "m2k-spool-%p", (void *)v);
    v->real = real;
    v->vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)REAL_OFF + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = v->name,
        .pAppData = v,
        .xOpen = c_open,
        .xDelete = c_delete,
        .xAccess = c_access,
        .xFullPathname = c_fullpath,
        .xDlOpen = c_dlopen,
        .xDlError = c_dlerror,
        .xDlSym = c_dlsym,
        .xDlClose = c_dlclose,
        .xRandomness = c_random,
        .xSleep = c_sleep,
        .xCurrentTime = c_time,
        .xGetLastError = c_lasterr,
        .xCurrentTimeInt64 = c_time64,
    };
    int rc = sqlite3_vfs_register(&v->vfs, 0);
    if (rc != SQLITE_OK)
        v->real = NULL;
    return rc;
}

void sp_vfs_unregister(struct spool_vfs *v)
{
    if (!v->real)
        return;
    sqlite3_vfs_unregister(&v->vfs);
    v->real = NULL;
}
