/*
 * redeliver.h — pure: recognising a broker's redelivery of a message that
 * is already committed to the spool.
 *
 * A batch can be committed and the process die before its PUBACKs reach
 * the socket; the broker then sends those messages again (same packet ids,
 * first thing after the session resumes). Each committed message has a tag,
 * (packet id, 47-bit hash of topic and payload), and the tags of the last
 * `recent` committed messages are remembered (the caller reloads them from
 * the spool at start). Right after a resumed session, a message whose tag
 * is among them is a redelivery: acknowledge it, do not store it again.
 *
 * Why this cannot swallow a new message: the broker numbers packet ids in
 * sequence, may have at most `recent` of them unacknowledged (the receive
 * maximum we announce), and so resends only ids among the last that many;
 * a new message takes the next id, which is not among them. The first
 * message that does not match ends the check until the next resumed
 * session. (MQTT 3.1.1 has no receive maximum: there the broker's
 * max_inflight_messages must not exceed it.) libc only.
 */
#ifndef MQTT2KAFKA_REDELIVER_H
#define MQTT2KAFKA_REDELIVER_H

#include <stddef.h>
#include <stdint.h>

#define REDELIVER_HASH_BITS 47
#define REDELIVER_MIDS      65536 /* MQTT packet ids are 16 bits */

struct redeliver;

/* Remembers the last `recent` tags. 0 or -ENOMEM. */
int redeliver_new(size_t recent, struct redeliver **out);
void redeliver_free(struct redeliver *rd); /* NULL is fine */

/* The tag of a message: 0 for QoS 0 (never redelivered) and ids out of
 * range. */
int64_t redeliver_tag(const char *topic, const void *payload, size_t len,
                      int qos, int mid);
/* The packet id a tag carries. */
int redeliver_mid(int64_t tag);

/* A committed message's tag (in commit order). The records of one split
 * message share a tag: remembered once. */
void redeliver_remember(struct redeliver *rd, int64_t tag);
/* A (re)connect: resumed = the broker kept our session, so redeliveries
 * may follow. */
void redeliver_session(struct redeliver *rd, int resumed);
/* 1 if a message with this packet id and tag is a redelivery of a
 * committed one; 0 (and the check ends) otherwise. */
int redeliver_check(struct redeliver *rd, int mid, int64_t tag);

#endif
