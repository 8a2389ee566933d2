/*
 * fat.c — the fat lane: a large record from the spool to Kafka as chunks
 * (see fat.h, chunk.h).
 *
 * State of the record in hand: a byte per chunk (unsent, in flight,
 * confirmed), the lowest index that may be unsent, and what the reports
 * decided (all confirmed, or refused for good and why).
 *
 * The spool is told to hold the record (spool_big_hold) only while chunks
 * of it are in flight or Kafka has them all: while Kafka is down it is a
 * record like any other, dropped by drop_oldest or expired (the spool
 * counts it). The lane then finds it gone (-ENOENT) and forgets it; one
 * gone after Kafka confirmed every chunk counts as delivered, once. Memory: the
 * record's small columns, one part buffer and that byte per chunk (at
 * most SPOOL_BIG_PARTS_MAX); librdkafka copies each chunk it is handed
 * and frees it on its report, so what the process holds of a payload is
 * bounded by the fat lane's share of the window.
 *
 * Every chunk goes to the record's key, or, for a record without one, to
 * its m2k.id as the key, so that the default partitioner puts all of them
 * on one partition, in order. A chunk that fails for now is sent again
 * (after the outbox's back-off); later chunks may then be in Kafka before
 * it: a consumer places chunks by index, never by arrival.
 */
#include "bridge/fat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/chunk.h"
#include "bridge/log.h"
#include "bridge/record.h"

#define NAMES_CAP 16384 /* header names of the record */

enum { UNSENT = 0, INFLIGHT, CONFIRMED };

struct fat {
    struct spool *sp;
    /* the record in hand; id 0: none */
    int64_t id;
    char *topic;
    unsigned char *key, *hdrs;
    size_t key_len, hdrs_len, topic_cap, key_cap, hdrs_cap;
    int64_t len, recv_ms;
    size_t part_bytes;
    uint32_t parts, next, confirmed;
    int32_t route;
    unsigned char sha[CHUNK_SHA256_LEN];
    char idstr[48];
    unsigned char *st; /* a byte per chunk */
    uint32_t out;      /* its chunks in flight */
    int held;          /* the spool holds it (spool_big_hold) */
    int dead;
    char why[256];
    /* chunks in flight, of any record (reports of one done with count) */
    int64_t inflight, inflight_bytes;
    unsigned char *buf; /* one part */
    size_t buf_cap;
    int64_t t0; /* when its first chunk went (monotonic) */
};

int fat_new(struct spool *sp, struct fat **out)
{
    struct fat *f = calloc(1, sizeof *f);
    *out = NULL;
    if (!f)
        return -ENOMEM;
    f->sp = sp;
    *out = f;
    return 0;
}

void fat_free(struct fat *f)
{
    if (!f)
        return;
    free(f->topic);
    free(f->key);
    free(f->hdrs);
    free(f->st);
    free(f->buf);
    free(f);
}

/* Copies n bytes into *dst (grown to *cap), NUL-terminated. */
static int keep(unsigned char **dst, size_t *cap, const void *src, size_t n)
{
    if (n + 1 > *cap) {
        unsigned char *p = realloc(*dst, n + 1);
        if (!p)
            return -ENOMEM;
        *dst = p;
        *cap = n + 1;
    }
    if (n)
        memcpy(*dst, src, n);
    (*dst)[n] = 0;
    return 0;
}

/* Holds the record in hand in the spool while chunks of it are in flight
 * or all are confirmed; lets it go otherwise. */
static void settle(struct fat *f)
{
    int want = f->id && (f->out > 0 || f->confirmed == f->parts);
    if (want != f->held)
        spool_big_hold(f->sp, want ? f->id : 0);
    f->held = want;
}

static void drop_record(struct fat *f)
{
    if (f->held)
        spool_big_hold(f->sp, 0);
    f->held = 0;
    f->id = 0;
    f->out = 0;
    f->dead = 0;
    f->why[0] = '\0';
}

/* Takes the spool's oldest large record in hand. 1, 0 (none), < 0. */
static int take(struct fat *f)
{
    struct spool_big b;
    int rc = spool_big_peek(f->sp, &b);
    if (rc <= 0)
        return rc;
    if (keep((unsigned char **)&f->topic, &f->topic_cap, b.topic,
             strlen(b.topic)) ||
        keep(&f->key, &f->key_cap, b.key, b.key_len) ||
        keep(&f->hdrs, &f->hdrs_cap, b.headers, b.headers_len))
        return -ENOMEM;
    if (b.part_bytes + 1 > f->buf_cap) {
        unsigned char *p = realloc(f->buf, b.part_bytes + 1);
        if (!p)
            return -ENOMEM;
        f->buf = p;
        f->buf_cap = b.part_bytes + 1;
    }
    unsigned char *st = realloc(f->st, b.parts ? b.parts : 1);
    if (!st)
        return -ENOMEM;
    f->st = st;
    memset(f->st, UNSENT, b.parts);
    f->id = b.id;
    f->key_len = b.key_len;
    f->hdrs_len = b.headers_len;
    f->len = b.len;
    f->recv_ms = b.recv_ms;
    f->route = b.route;
    f->part_bytes = b.part_bytes;
    f->parts = b.parts;
    f->next = f->confirmed = f->out = 0;
    f->dead = 0;
    f->t0 = log_now_ms();
    spool_id_str(f->sp, b.id, f->idstr, sizeof f->idstr);
    if (b.digest_len == CHUNK_SHA256_LEN)
        memcpy(f->sha, b.digest, CHUNK_SHA256_LEN);
    else { /* cannot happen for records we wrote: refuse, visibly */
        f->dead = 1;
        snprintf(f->why, sizeof f->why,
                 "large record without a SHA-256 (a %zu-byte digest)",
                 b.digest_len);
    }
    if (b.parts != chunk_count(b.len, b.part_bytes) && !f->dead) {
        f->dead = 1;
        snprintf(f->why, sizeof f->why,
                 "large record of %" PRId64 " bytes has %" PRIu32
                 " parts of %zu",
                 b.len, b.parts, b.part_bytes);
    }
    log_info("kafka: large record %s (%" PRId64 " bytes to %s) goes as %" PRIu32
             " chunks",
             f->idstr, f->len, f->topic, f->parts);
    return 1;
}

/* Refuses the record for good: the next apply moves it to the dead
 * letters, with why. */
__attribute__((format(printf, 2, 3))) static void refuse(struct fat *f,
                                                         const char *fmt, ...)
{
    va_list ap;
    if (f->dead)
        return;
    f->dead = 1;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
}

/* Chunk i to the producer. 0 sent (*bytes), 1 not now, -1 refused. */
static int send_chunk(struct fat *f, struct kafka_out *k, uint32_t i,
                      int64_t *bytes)
{
    struct record_hdr rh[RECORD_MAX_HDRS];
    struct kafka_out_hdr h[RECORD_MAX_HDRS + 5];
    struct chunk_text t;
    char names[NAMES_CAP], why[256];
    size_t len = 0;
    if (!f->held) /* before the read: from then on it cannot go */
        spool_big_hold(f->sp, f->id);
    f->held = 1;
    int rc = spool_big_read(f->sp, f->id, i, f->buf, f->buf_cap, &len);
    if (rc == -ENOENT) { /* dropped, expired or purged: counted there */
        log_warn("kafka: large record %s is no longer in the spool "
                 "(dropped, expired or purged)",
                 f->idstr);
        drop_record(f);
        return 1;
    }
    if (rc) {
        refuse(f, "the spool cannot read its part %" PRIu32 ": %s", i,
               spool_errmsg(f->sp));
        return -1;
    }
    int nh = record_hdrs_decode(f->hdrs, f->hdrs_len, rh, RECORD_MAX_HDRS,
                                names, sizeof names);
    if (nh < 0)
        nh = 0; /* cannot happen for blobs we wrote; send bare */
    for (int j = 0; j < nh; j++)
        h[j] = (struct kafka_out_hdr){rh[j].name, rh[j].value, rh[j].len};
    chunk_text(&t, i, f->parts, f->len, f->sha);
    size_t n = (size_t)nh, extra = 0;
    h[n++] = (struct kafka_out_hdr){CHUNK_HDR_ID, f->idstr, strlen(f->idstr)};
    h[n++] = (struct kafka_out_hdr){CHUNK_HDR_INDEX, t.index, strlen(t.index)};
    h[n++] = (struct kafka_out_hdr){CHUNK_HDR_COUNT, t.count, strlen(t.count)};
    h[n++] = (struct kafka_out_hdr){CHUNK_HDR_SIZE, t.size, strlen(t.size)};
    h[n++] =
        (struct kafka_out_hdr){CHUNK_HDR_SHA256, t.sha256, strlen(t.sha256)};
    for (size_t j = (size_t)nh; j < n; j++)
        extra += strlen(h[j].name) + h[j].len;
    /* one partition for all: the key, or the record's id as the key */
    const void *key = f->key_len ? (const void *)f->key : f->idstr;
    size_t key_len = f->key_len ? f->key_len : strlen(f->idstr);
    struct kafka_out_msg km = {
        .id = f->id,
        .topic = f->topic,
        .key = key,
        .key_len = key_len,
        .value = f->buf,
        .len = len,
        .hdrs = h,
        .nhdrs = n,
        .timestamp_ms = f->recv_ms,
        .echo = {.bytes = key_len + len + f->hdrs_len + extra,
                 .recv_ms = f->recv_ms,
                 .route = f->route,
                 .lane = FAT_LANE,
                 .chunk = (int32_t)i},
    };
    rc = kafka_out_produce(k, &km, why, sizeof why);
    if (rc == -EINVAL) {
        log_error("kafka refused chunk %" PRIu32 " of large record %s: %s", i,
                  f->idstr, why);
        refuse(f, "Kafka refused chunk %" PRIu32 ": %s", i, why);
        return -1;
    }
    if (rc)
        return 1; /* the producer's queue is full: later */
    f->st[i] = INFLIGHT;
    f->out++;
    f->inflight++;
    f->inflight_bytes += (int64_t)km.echo.bytes;
    *bytes = (int64_t)km.echo.bytes;
    return 0;
}

int fat_drain(struct fat *f, struct kafka_out *k, int64_t room_records,
              int64_t room_bytes, int64_t *records, int64_t *bytes)
{
    *records = *bytes = 0;
    if (!k)
        return 0;
    if (!f->id) {
        if (spool_big_backlog(f->sp) == 0)
            return 0;
        int rc = take(f);
        if (rc <= 0)
            return rc;
    }
    while (f->id && !f->dead && f->next < f->parts) {
        if (f->st[f->next] != UNSENT) {
            f->next++;
            continue;
        }
        /* a chunk when the room allows, and one always when none is out */
        int64_t size = (int64_t)f->part_bytes + (int64_t)f->hdrs_len;
        if (f->inflight > 0 &&
            (room_records - *records < 1 || room_bytes - *bytes < size))
            break;
        int64_t b = 0;
        if (send_chunk(f, k, f->next, &b))
            break;
        (*records)++;
        *bytes += b;
        f->next++;
    }
    settle(f);
    return 0;
}

void fat_report(struct fat *f, int64_t id, enum kafka_out_outcome o,
                const char *reason, const struct kafka_out_echo *echo)
{
    f->inflight--;
    f->inflight_bytes -= (int64_t)echo->bytes;
    if (id != f->id || echo->chunk < 0 || (uint32_t)echo->chunk >= f->parts)
        return; /* a record done with already */
    uint32_t i = (uint32_t)echo->chunk;
    if (f->st[i] != INFLIGHT)
        return;
    f->out--;
    switch (o) {
    case KAFKA_OUT_OK:
        f->st[i] = CONFIRMED;
        f->confirmed++;
        break;
    case KAFKA_OUT_RETRY:
        f->st[i] = UNSENT;
        if (i < f->next)
            f->next = i;
        break;
    case KAFKA_OUT_DEAD:
        f->st[i] = UNSENT;
        refuse(f, "Kafka refused chunk %" PRIu32 ": %s", i,
               reason ? reason : "refused");
        break;
    }
}

int fat_apply(struct fat *f, struct fat_done *done)
{
    memset(done, 0, sizeof *done);
    if (!f->id)
        return 0;
    settle(f); /* nothing of it in flight: the spool may drop it */
    if (f->dead) {
        int rc = spool_big_dead(f->sp, f->id, f->why);
        if (rc == -ENOENT) { /* dropped or expired meanwhile: counted */
            log_warn("kafka: large record %s refused (%s) but no longer in "
                     "the spool",
                     f->idstr, f->why);
            drop_record(f);
            return 1;
        }
        if (rc < 0) {
            log_error("spool: cannot move large record %s to the dead "
                      "letters, retrying: %s",
                      f->idstr, spool_errmsg(f->sp));
            return 0;
        }
        log_error("kafka: large record %s (%" PRId64 " bytes to %s) moved to "
                  "the spool's dead letters: %s",
                  f->idstr, f->len, f->topic, f->why);
        done->dead = 1;
        done->route = f->route;
        drop_record(f);
        return 1;
    }
    if (f->confirmed < f->parts)
        return 0;
    int rc = spool_big_ack(f->sp, f->id);
    if (rc == -ENOENT) /* Kafka has it all, the spool no more (purged) */
        log_warn("kafka: large record %s delivered but no longer in the "
                 "spool",
                 f->idstr);
    else if (rc < 0) {
        log_error("spool: cannot delete delivered large record %s, "
                  "retrying: %s",
                  f->idstr, spool_errmsg(f->sp));
        return 0;
    }
    int64_t ms = log_wall_ms() - f->recv_ms;
    log_info("kafka: large record %s delivered: %" PRIu32 " chunks, %" PRId64
             " bytes in %" PRId64 " ms",
             f->idstr, f->parts, f->len, log_now_ms() - f->t0);
    done->delivered = 1;
    done->latency_ms = ms > 0 ? ms : 0;
    done->route = f->route;
    drop_record(f);
    return 1;
}

void fat_reset(struct fat *f)
{
    for (uint32_t i = 0; f->id && i < f->parts; i++)
        if (f->st[i] == INFLIGHT) {
            f->st[i] = UNSENT;
            if (i < f->next)
                f->next = i;
        }
    f->inflight = f->inflight_bytes = 0;
    f->out = 0;
    settle(f);
}

int64_t fat_inflight_bytes(const struct fat *f)
{
    return f->inflight_bytes;
}

int64_t fat_inflight(const struct fat *f)
{
    return f->inflight;
}

int fat_busy(const struct fat *f)
{
    return f->id != 0 || spool_big_backlog(f->sp) > 0;
}
