/*
 * spool_disk.c — the spool and the filesystem it lives on (see "SIZE CAP"
 * and "A FULL DISK" in spool.c).
 *
 * An SD card is shared with logs and the broker's own persistence, so the
 * disk can fill before max_bytes is reached. Two rules keep the spool able
 * to recover: it never grows into the last free space (the slack, the
 * WAL's own growth and the reserve stay free), and a reserve file the size
 * of the WAL's budget is held so that, should the disk fill anyway, the
 * reserve is given back and the deletes of delivered rows still commit.
 * libc and sqlite3 only.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SLACK_MIN   (64 << 10)
#define SLACK_MAX   (64 << 20)
#define BUDGET_MIN  (256 << 10)
#define BUDGET_MAX  (8 << 20)
#define RESERVE_TRY 1000 /* ms between attempts to restore the reserve */

/* Free bytes for us on the spool's filesystem, and its size; -1 unknown. */
static int64_t disk_free(const struct spool *sp, int64_t *total)
{
    char dir[4096];
    struct statvfs v;
    snprintf(dir, sizeof(dir), "%s", sp->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    if (statvfs(dir, &v) != 0)
        return -1;
    if (total)
        *total = (int64_t)v.f_blocks * (int64_t)v.f_frsize;
    return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int sp_disk_plan(struct spool *sp)
{
    int64_t total = 0, avail = disk_free(sp, &total);
    int64_t mine = sp_file_size(sp->path, "") + sp_file_size(sp->path, "-wal") +
                   sp_file_size(sp->reserve_path, "");
    int64_t cap = sp->o.max_bytes;
    sp->slack = clamp(total / 100, SLACK_MIN, SLACK_MAX);
    if (avail >= 0) {
        int64_t room = avail + mine - sp->slack;
        if (!cap || room < cap)
            cap = room;
    } else if (!cap) {
        cap = (int64_t)1 << 40; /* statvfs failed: no known limit */
    }
    /* The WAL's budget, and as much again as reserve, come out of it. */
    sp->wal_budget = clamp(cap / 8, BUDGET_MIN, BUDGET_MAX);
    /* Deleting rows rewrites their pages and may rebalance neighbours:
     * a quarter of the budget in rows keeps a delete inside it. */
    sp->del_chunk = sp->wal_budget / 4;
    sp->reserve_bytes = sp->wal_budget;
    if (cap - sp->wal_budget - sp->reserve_bytes < MIN_BYTES / 2)
        return sp_fail(sp, -ENOSPC,
                       "spool %s: the filesystem has room for only %" PRId64
                       " bytes (%" PRId64 " free); the spool needs at least "
                       "%d",
                       sp->path, cap > 0 ? cap : 0, avail, MIN_BYTES);
    sp->max_bytes = cap;
    sp->max_pages = (cap - sp->wal_budget - sp->reserve_bytes) / PAGE;
    sp->batch_pages = (sp->wal_budget / FRAME - 8) / 2 - 4;
    return 0;
}

int64_t sp_cap_pages(struct spool *sp, int64_t page_count)
{
    int64_t avail = disk_free(sp, NULL);
    if (avail < 0)
        return sp->max_pages;
    int64_t wal_room = sp->wal_budget - sp_file_size(sp->path, "-wal");
    int64_t spare = avail - sp->slack - (wal_room > 0 ? wal_room : 0) -
                    (sp->reserve_held ? 0 : sp->reserve_bytes);
    int64_t disk = page_count + (spare > 0 ? spare / PAGE : 0);
    return disk < sp->max_pages ? disk : sp->max_pages;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sp_reserve_restore(struct spool *sp)
{
    if (sp->reserve_held || mono_ms() < sp->reserve_try_ms)
        return;
    sp->reserve_try_ms = mono_ms() + RESERVE_TRY;
    int64_t have = sp_file_size(sp->reserve_path, "");
    int64_t avail = disk_free(sp, NULL);
    if (avail >= 0 && avail - sp->slack < sp->reserve_bytes - have)
        return; /* not yet: the disk is still too full */
    int fd = open(sp->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int rc = posix_fallocate(fd, 0, (off_t)sp->reserve_bytes);
    if (rc == EOPNOTSUPP || rc == EINVAL) { /* no fallocate: write zeros */
        static const char zero[4096];
        rc = 0;
        for (off_t o = 0; rc == 0 && o < (off_t)sp->reserve_bytes;
             o += (off_t)sizeof(zero))
            if (pwrite(fd, zero, sizeof(zero), o) != (ssize_t)sizeof(zero))
                rc = errno;
            else
                sp->vfs.written += (int64_t)sizeof(zero); /* flash wear */
    }
    if (rc == 0 && fsync(fd) == 0 &&
        sp_file_size(sp->reserve_path, "") >= sp->reserve_bytes)
        sp->reserve_held = 1;
    close(fd);
    if (!sp->reserve_held)
        unlink(sp->reserve_path); /* a partial reserve only takes room */
}

int sp_reserve_release(struct spool *sp)
{
    if (!sp->reserve_held && sp_file_size(sp->reserve_path, "") == 0)
        return 0;
    unlink(sp->reserve_path);
    sp->reserve_held = 0;
    sp->reserve_try_ms = mono_ms() + RESERVE_TRY;
    fprintf(stderr,
            "mqtt2kafka: spool %s: the disk is full; released the %" PRId64
            "-byte reserve so delivered records can be deleted\n",
            sp->path, sp->reserve_bytes);
    return 1;
}
