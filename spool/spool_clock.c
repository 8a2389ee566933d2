/*
 * spool_clock.c — the spool clock: the time that record ages and expiry
 * are measured on (see "TIME" in spool.c).
 *
 * It advances with the monotonic clock while the spool is open, so an NTP
 * step of the wall clock (a Raspberry Pi without a real-time clock jumps by
 * months at its first sync) neither expires fresh records nor keeps stale
 * ones. Rows keep their wall-clock receive time (Kafka's timestamp); the
 * clock segments say, per id range, how that time maps onto the spool
 * clock. sqlite3 and libc only.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t sys_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sp_wall(struct spool *sp)
{
    const struct spool_clock *c = sp->o.clock;
    return c ? c->wall_ms(c->ud) : sys_ms(CLOCK_REALTIME);
}

static int64_t mono(struct spool *sp)
{
    const struct spool_clock *c = sp->o.clock;
    return c ? c->mono_ms(c->ud) : sys_ms(CLOCK_MONOTONIC);
}

int64_t sp_clock(struct spool *sp)
{
    int64_t m = mono(sp);
    return sp->clk_base + (m - sp->mono_base);
}

int sp_clock_load(struct spool *sp, int64_t clock_ms, int64_t clock_wall_ms)
{
    int64_t wall = sp_wall(sp);
    sqlite3_stmt *st = NULL;
    /* Across a restart the clock moves by the wall-clock time between the
     * last write and now, unless the wall clock went back since (a boot
     * without a real-time clock): then by nothing. */
    if (clock_ms <= 0)
        sp->clk_base = wall;
    else
        sp->clk_base =
            clock_ms + (wall > clock_wall_ms ? wall - clock_wall_ms : 0);
    sp->mono_base = mono(sp);
    free(sp->segs);
    sp->nseg = 0;
    if (!(sp->segs = calloc(SEG_MAX, sizeof(*sp->segs))))
        return SQLITE_NOMEM;
    int rc = sqlite3_prepare_v2(sp->db, "SELECT id,off FROM clock ORDER BY id",
                                -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sp->nseg == SEG_MAX) { /* keep the newest */
            memmove(sp->segs, sp->segs + 1, (SEG_MAX - 1) * sizeof(*sp->segs));
            sp->nseg--;
        }
        sp->segs[sp->nseg].id = sqlite3_column_int64(st, 0);
        sp->segs[sp->nseg++].off = sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_OK)
        return rc;
    if (sp->nseg == 0) { /* a file of schema 2 carried no segments */
        sp->segs[0] = (struct seg){0, 0};
        sp->nseg = 1;
    }
    sp->last_wall = wall;
    sp->last_mono = sp->mono_base;
    return SQLITE_OK;
}

int sp_clock_note(struct spool *sp, int64_t first_id)
{
    int64_t off = sp_clock(sp) - sp_wall(sp);
    int64_t cur = sp->segs[sp->nseg - 1].off;
    sp->seg_pending.id = 0;
    if (off - cur <= CLOCK_JUMP_MS && cur - off <= CLOCK_JUMP_MS)
        return 0;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        sp->db, "INSERT OR REPLACE INTO clock(id,off) VALUES(?1,?2)", -1, &st,
        NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, first_id);
        sqlite3_bind_int64(st, 2, off);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_DONE)
        return sp_sqerr(sp, rc, "clock segment");
    sp->seg_pending = (struct seg){first_id, off};
    return 0;
}

void sp_clock_commit(struct spool *sp, int ok)
{
    if (ok && sp->seg_pending.id) {
        if (sp->nseg == SEG_MAX) {
            memmove(sp->segs, sp->segs + 1, (SEG_MAX - 1) * sizeof(*sp->segs));
            sp->nseg--;
        }
        sp->segs[sp->nseg++] = sp->seg_pending;
        sp->jumps++;
    }
    sp->seg_pending.id = 0;
}

int64_t sp_row_time(const struct spool *sp, int64_t id, int64_t recv_ms)
{
    size_t lo = 0, hi = sp->nseg; /* the last segment with seg.id <= id */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (sp->segs[mid].id <= id)
            lo = mid;
        else
            hi = mid;
    }
    return recv_ms + sp->segs[lo].off;
}
