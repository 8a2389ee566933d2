/*
 * large.c — a large message in: stored once in the spool, a slice per
 * turn of the loop, made visible with its burst's commit (part of the
 * wiring: bridge.c hands it over, commit.c publishes it).
 *
 *   on_message: value > kafka.chunk_bytes ──> our one copy of the payload,
 *       a large record begun in the spool (invisible), MQTT not read
 *   each turn:  a slice of whole parts (at most what one put holds) into
 *       the spool, its own transaction, hashed (SHA-256) as it goes
 *   staged:     the burst's commit: its other records are put, then the
 *       large record is committed (fsync'ed, with its SHA-256), counted,
 *       and only then do the PUBACKs go out
 *
 * Why slices across turns and not all at once in the callback: a payload
 * of tens of MB takes seconds to write on an SD card, and nothing in the
 * loop may block that long (Kafka's reports, the watchdog, /healthz). Why
 * MQTT is not read meanwhile: the large message's PUBACK is queued behind
 * everything read before it and would leave with the next write. A large
 * message always goes through the spool, never the direct path: Kafka
 * takes it as chunks, streamed from the spool by the fat lane (fat.c).
 *
 * What a failure leaves: a slice the spool refuses (full under
 * backpressure, a full disk, an I/O error) ends the staging: what was
 * written is deleted, and the commit fails as a put does (the connection
 * drops with the PUBACKs unsent, the broker sends the message again); a
 * crash leaves an invisible record that the next open deletes. A message
 * larger than the spool can ever hold is dead-lettered instead (cut, as
 * any oversized message).
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/chunk.h"
#include "bridge/log.h"

static void release(struct br_large *lg)
{
    free(lg->data);
    EVP_MD_CTX_free(lg->sha);
    memset(lg, 0, sizeof *lg);
}

int br_large_take(struct bridge *br, const struct mqtt_in_msg *m,
                  const struct batch_rec *r, int64_t tag)
{
    struct br_large *lg = &br->large;
    int rc;
    if (lg->active)
        return -EBUSY; /* cannot happen: MQTT is not read meanwhile */
    memset(lg, 0, sizeof *lg);
    struct spool_rec sr = {.topic = r->topic,
                           .key = r->key,
                           .key_len = r->key ? r->key_len : 0,
                           .headers = r->headers,
                           .headers_len = r->headers_len,
                           .payload_len = r->len,
                           .recv_ms = r->recv_ms,
                           .route = r->route,
                           .tag = tag};
    if (!(lg->data = malloc(r->len)) || !(lg->sha = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(lg->sha, EVP_sha256(), NULL) != 1) {
        release(lg);
        return -ENOMEM;
    }
    memcpy(lg->data, r->value, r->len);
    if ((rc = spool_big_begin(br->sp, &sr, br->chunk_bytes, &lg->id)) < 0) {
        release(lg);
        return rc;
    }
    lg->active = 1;
    lg->len = r->len;
    lg->part = br->chunk_bytes;
    lg->qos = m->qos;
    lg->tag = tag;
    lg->route = r->route;
    lg->t0 = log_now_ms();
    log_debug("mqtt: large message of %zu bytes on %s: staging it in the "
              "spool as record %" PRId64,
              lg->len, m->topic, lg->id);
    return 0;
}

int br_large_step(struct bridge *br)
{
    struct br_large *lg = &br->large;
    if (!lg->active || lg->rc || lg->done == lg->len)
        return 1;
    size_t per = spool_big_slice(br->sp, lg->part);
    if (per == 0)
        per = lg->part; /* cannot be: the chunk size fits one put */
    size_t n = lg->len - lg->done < per ? lg->len - lg->done : per;
    int rc = spool_big_write(br->sp, lg->id, (uint32_t)(lg->done / lg->part),
                             lg->data + lg->done, n);
    if (rc == 0 && EVP_DigestUpdate(lg->sha, lg->data + lg->done, n) != 1)
        rc = -ENOMEM;
    if (rc) {
        lg->rc = rc;
        log_warn("spool: cannot store a large message of %zu bytes: %s",
                 lg->len,
                 rc == -ENOMEM ? "out of memory" : spool_errmsg(br->sp));
        return 1;
    }
    lg->done += n;
    lg->slices++;
    if (br->fault_large_slices && lg->slices >= br->fault_large_slices) {
        log_warn("fault injection: crash with a large message half staged "
                 "(%zu of %zu bytes)",
                 lg->done, lg->len);
        raise(SIGKILL);
    }
    return lg->done == lg->len;
}

int br_large_publish(struct bridge *br)
{
    struct br_large *lg = &br->large;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = lg->rc;
    if (rc == 0 && lg->done != lg->len)
        rc = -EINVAL; /* a caller's bug: not staged yet */
    if (rc == 0 && (EVP_DigestFinal_ex(lg->sha, md, &mdlen) != 1 ||
                    mdlen != CHUNK_SHA256_LEN))
        rc = -ENOMEM;
    if (rc == 0)
        rc = spool_big_commit(br->sp, lg->id, md, mdlen);
    if (rc) {
        br_large_abort(br);
        return rc;
    }
    log_info("mqtt: large message of %zu bytes stored as record %" PRId64
             " in %" PRId64 " ms",
             lg->len, lg->id, log_now_ms() - lg->t0);
    release(lg);
    return 0;
}

void br_large_abort(struct bridge *br)
{
    struct br_large *lg = &br->large;
    if (!lg->active)
        return;
    if (spool_big_abort(br->sp, lg->id) < 0) /* the next open will */
        log_warn("spool: cannot delete a large record left half written: %s",
                 spool_errmsg(br->sp));
    release(lg);
}
