/*
 * spb.h — Sparkplug B payloads (`payload: sparkplug`), a library of the
 * decode stage like pb.h: the topic namespace, the payload decoded with
 * Eclipse Tahu's schema (proto/sparkplug_b.proto, from the loaded
 * schemas), metric aliases resolved from BIRTH messages, seq checked,
 * rebirth requests made, and the record's JSON. Pure: no I/O, no clock
 * (the caller gives the time); the caller persists and publishes what
 * spb_effects() says.
 *
 * Topics: spBv1.0/<group>/<NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|
 * DCMD>/<edge>[/<device>] (a device for the D types only) and
 * spBv1.0/STATE/<host>. A BIRTH sets its scope's aliases (an NBIRTH the
 * edge node's, a DBIRTH the device's) to the metrics it names: alias →
 * name and datatype. A DATA or CMD metric that carries only an alias gets
 * its name and datatype from there; one whose alias no BIRTH defined is
 * "unresolved": the record still goes out (its name null), and when
 * rebirth is on the edge node is asked for a rebirth, at most once per
 * interval. seq runs 0..255 per edge node from its NBIRTH: a jump is a
 * gap. STATE payloads (JSON, or ONLINE/OFFLINE text) are passed on.
 *
 * The JSON of a record (documented in the README):
 *   {"topic":{"namespace":"spBv1.0","group":G,"type":T,"edge":E,
 *    "device":D},"timestamp":ms,"seq":n,"uuid":..,"body":base64,
 *    "metrics":[{"name":N,"alias":a,"timestamp":ms,"datatype":"Double",
 *    "value":v,"historical":true,"transient":true,"properties":{..},
 *    "metadata":{..}}, ...]}
 * absent members are left out; "name" is null for an unresolved alias;
 * with split (one record per metric) "metric" holds the one metric
 * instead of "metrics". A STATE record: {"topic":{"namespace":"spBv1.0",
 * "type":"STATE","host":H},"state":<the JSON payload, or its text>}.
 */
#ifndef MQTT2KAFKA_SPB_H
#define MQTT2KAFKA_SPB_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/pb.h"
#include "bridge/pb_schema.h"

#define SPB_NAMESPACE    "spBv1.0"
#define SPB_PAYLOAD_TYPE "org.eclipse.tahu.protobuf.Payload"
#define SPB_SCOPES_MAX   4096        /* edge nodes and devices with aliases */
#define SPB_ALIASES_MAX  65536       /* aliases one BIRTH defines */
#define SPB_ALIASES_ALL  1000000     /* aliases of all scopes together */
#define SPB_NAMES_MAX    (16u << 20) /* bytes of metric names, all scopes */
#define SPB_STATE_PREFIX "spb/"      /* keys of the persisted alias tables */

struct spb;

/* Finds Sparkplug's types in s (borrowed). 0; -ENOENT when s lacks them;
 * -ENOMEM. */
int spb_new(const struct pb_schema *s, struct spb **out);
void spb_free(struct spb *sp);
void spb_set_rebirth(struct spb *sp, int on, int64_t interval_ms);

/* Decodes one message (dc holds the payload until its next unpack). 0, or
 * -EINVAL with why: not a Sparkplug topic, or not a valid payload. */
int spb_decode(struct spb *sp, struct pb *dc, const char *topic,
               const void *data, size_t len, int64_t now_ms, char *why,
               size_t whylen);
/* Metrics of the message last decoded (0 for STATE). */
size_t spb_metrics(const struct spb *sp);

/* The record's JSON: the whole payload (metric -1) or one metric of it
 * (split). Borrowed from sp until the next call. 0 or -EINVAL with why. */
int spb_json(struct spb *sp, struct pb *dc, long metric, const void **out,
             size_t *len, char *why, size_t whylen);

/* {payload.x} for templates: group, edge, device, type, host, seq, and
 * with a metric (split) name, alias, datatype. As pb_field_text(). */
int spb_field_text(const struct spb *sp, long metric, const char *path,
                   size_t len, char *buf, size_t cap, size_t *olen);

/* What the message last decoded asks of the caller. */
struct spb_effects {
    int64_t unresolved; /* metrics whose alias no BIRTH defined */
    int seq_gap;        /* its seq did not follow the edge node's last */
    /* a BIRTH changed a scope's aliases: keep them (key, blob) */
    const char *state_key;
    const void *state;
    size_t state_len;
    /* ask the edge node for a rebirth: publish this (QoS 0) */
    const char *rebirth_topic;
    const void *rebirth;
    size_t rebirth_len;
};
void spb_effects(const struct spb *sp, struct spb_effects *e);

/* Brings back a scope's aliases kept under key (from spb_effects). 0, or
 * -EINVAL for a blob or key this build cannot read (skip it). */
int spb_restore(struct spb *sp, const char *key, const void *blob, size_t len);

#endif
