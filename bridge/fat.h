/*
 * fat.h — the fat lane: large records from the spool to Kafka, as ordered
 * chunk records on one partition (chunk.h says what a consumer sees).
 *
 * One large record at a time, first in first out, its parts read from the
 * spool one at a time (spool_big_read) as the window lets a chunk go: the
 * daemon never holds the whole payload. The outbox owns it: it gives the
 * fat lane its share of the window, routes the chunks' delivery reports
 * here (kafka_out_echo.lane FAT_LANE), and applies the outcome to the
 * spool between reports. A record whose every chunk Kafka confirmed is
 * acked (one record delivered); a chunk refused for good moves the whole
 * record to the spool's dead letters with the reason; a transient failure
 * sends that chunk again. Copies sent again, by a retry or after a
 * restart, carry the same m2k.id and m2k.chunk.
 *
 * Knows spool.h, kafka_out.h, record.h and chunk.h; single-threaded (the
 * loop's).
 */
#ifndef MQTT2KAFKA_FAT_H
#define MQTT2KAFKA_FAT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/kafka_out.h"
#include "spool/spool.h"

/* kafka_out_echo.lane of a chunk: after the spool's lanes. */
#define FAT_LANE SPOOL_LANES

struct fat;

/* Borrows sp. 0 or -ENOMEM. */
int fat_new(struct spool *sp, struct fat **out);
void fat_free(struct fat *f); /* NULL is fine */

/* Hands chunks of the oldest large record to k while room_records and
 * room_bytes allow, but always one when none is in flight (the lane is
 * never starved). *records, *bytes: what it put in flight (the caller
 * counts them in its window). 0, or < 0 when the spool failed. */
int fat_drain(struct fat *f, struct kafka_out *k, int64_t room_records,
              int64_t room_bytes, int64_t *records, int64_t *bytes);

/* A chunk's delivery report, as kafka_out gave it: only marks it (the
 * spool is not called from a report). */
void fat_report(struct fat *f, int64_t id, enum kafka_out_outcome o,
                const char *reason, const struct kafka_out_echo *echo);

/* What fat_apply() did with the record in hand. */
struct fat_done {
    int delivered;      /* acked: every chunk confirmed */
    int dead;           /* moved to the dead letters */
    int64_t latency_ms; /* receive to the last confirmation (delivered) */
    int32_t route;
};
/* Applies the reports to the spool; 1 when the record is done with
 * (*done says how; neither: it was gone from the spool, dropped or
 * expired, and counted there), 0 when nothing changed. A record whose
 * every chunk Kafka confirmed counts as delivered even when the spool no
 * longer has it. */
int fat_apply(struct fat *f, struct fat_done *done);

/* The producer is gone (its records were reported): chunks still marked
 * in flight go again. */
void fat_reset(struct fat *f);

/* Bytes (key, value, headers) of chunks in flight; chunks in flight. */
int64_t fat_inflight_bytes(const struct fat *f);
int64_t fat_inflight(const struct fat *f);
/* 1 while a large record is in hand or waits in the spool. */
int fat_busy(const struct fat *f);

#endif
