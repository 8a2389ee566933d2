/*
 * reload.c — SIGHUP: the daemon rereads its configuration and every file
 * it names, and applies what changed with the least disruption, without
 * losing or counting twice anything it acknowledged. Part of the wiring:
 * it knows the stages as daemon.c does.
 *
 * An attempt, in the loop's thread, between bursts:
 *   1. RELOADING=1. The file is loaded as at start (the environment, the
 *      secret and key files, the routes and payload types); the stages a
 *      change needs are built from it before anything is touched: the
 *      route stage always (it is cheap), a new MQTT client when an mqtt.*
 *      key changed, a new producer when a kafka.* key did. Any error
 *      refuses the whole file: what was built is dropped and the running
 *      configuration stays, with the error (file:line:col) in the log and
 *      the status file.
 *   2. conf_diff() names what changed; each key's effect (conf_keys.c):
 *        at once   read where it is used (log level, dead-letter topic,
 *                  commit delay, gateway id, shutdown timeout)
 *        routes    the route stage is swapped; the MQTT subscriptions
 *                  follow, on the same session (mqtt.share_group too:
 *                  the shared forms are subscribed, then the old ones
 *                  unsubscribed)
 *        reconnect the MQTT client is replaced: DISCONNECT after the acks of
 *                  what is committed, then a new connection (same client
 *                  id: the session and its queue resume)
 *        producer  the old producer stops taking records; the ones in
 *                  flight settle (while the uplink is up, for at most the
 *                  old kafka.shutdown_timeout), then it is freed (what is
 *                  left goes round again: the spool keeps every record
 *                  until Kafka confirmed it) and the new one takes over
 *        restart   keeps its running value (the spool's file and limits,
 *                  the status file, the in-flight window); the answer says
 *                  a restart is needed
 *   3. The burst read so far is committed first, so no message is between
 *      the old route stage and the new one, and the new configuration
 *      replaces the old.
 *   4. When nothing waits (or the old producer has settled): the status
 *      file is written at once with the answer (reload_seq, reload, ...:
 *      cli_reload.h), then READY=1.
 * Signals that arrive meanwhile make one more attempt after this one.
 */
#include "bridge/bridge_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/cli_reload.h"
#include "bridge/log.h"
#include "bridge/notify.h"

#define KEYS_TEXT 400 /* the changed keys, for the log and the answer */

struct plan {
    unsigned effects; /* 1u << enum conf_effect */
    char changed[KEYS_TEXT], restart[KEYS_TEXT];
    size_t nchanged;
    struct conf *next; /* the new conf, to keep restart keys in */
    const struct conf *now;
    int keep_failed;
};

static void add_name(char *list, size_t len, const char *key)
{
    size_t n = strlen(list);
    if (n + strlen(key) + 3 < len)
        snprintf(list + n, len - n, "%s%s", n ? ", " : "", key);
    else if (n + 4 < len && strcmp(list + n - 3, "..."))
        snprintf(list + n, len - n, "...");
}

static void on_change(void *ud, const char *key)
{
    struct plan *p = ud;
    enum conf_effect e = conf_key_effect(key);
    p->nchanged++;
    add_name(p->changed, sizeof(p->changed), key);
    if (e == CONF_RESTART) {
        /* the running value stays in force: br->c must say what is */
        if (conf_keep(p->next, p->now, key))
            p->keep_failed = 1;
        add_name(p->restart, sizeof(p->restart), key);
    }
    p->effects |= 1u << e;
}

static void note_log(void *ud, const char *text)
{
    (void)ud;
    log_warn("reload: %s", text);
}

/* The answer of this attempt: the status file at once, then READY=1. */
static void answer(struct bridge *br, int ok, const char *error,
                   const char *detail)
{
    br->reload_seq++;
    br->reload_ms = log_wall_ms();
    snprintf(br->reload_result, sizeof(br->reload_result), "%s",
             ok ? "ok" : "failed");
    snprintf(br->reload_error, sizeof(br->reload_error), "%s",
             error ? error : "");
    snprintf(br->reload_detail, sizeof(br->reload_detail), "%s",
             detail ? detail : "");
    br_write_status(br, br->backpressure ? "backpressure" : "running");
    notify_reloaded();
}

int br_swap_producer(struct bridge *br, struct kafka_out *next)
{
    char err[512];
    kafka_out_free(br->out); /* what is in flight is reported as retry */
    br->out = NULL;
    outbox_set_producer(br->ob, NULL);
    outbox_reset(br->ob); /* ...and goes round again, in order */
    if (!next && br_kafka_new(br, br->c, &next, err, sizeof(err)) < 0) {
        log_error("kafka: cannot create the producer: %s", err);
        return -1;
    }
    br->out = next;
    br->uplink = kafka_out_up(next);
    outbox_set_producer(br->ob, next);
    return 0;
}

/* Everything the new conf needs, built before anything changes. */
struct built {
    struct conf *c;
    struct convert *cv;
    struct mqtt_in *in;
    struct kafka_out *out;
};

static void drop(struct built *b)
{
    mqtt_in_free(b->in);
    kafka_out_free(b->out);
    convert_free(b->cv);
    conf_fini(b->c);
    free(b->c);
}

static int build(struct bridge *br, struct built *b, struct plan *p, char *err,
                 size_t errlen)
{
    const char *path = br->c->path;
    if (!(b->c = calloc(1, sizeof(*b->c)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (conf_load_ex(path, 0, b->c, err, errlen) ||
        conf_load_files(b->c, 0, note_log, NULL, err, errlen))
        return -1;
    p->next = b->c;
    p->now = br->c;
    conf_diff(br->c, b->c, on_change, p);
    if (p->keep_failed) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct convert_opts co = {.max_payload = br_payload_limit(br, b->c)};
    if (convert_new(b->c, &co, &b->cv, err, errlen) < 0)
        return -1;
    if ((p->effects & (1u << CONF_MQTT)) &&
        br_mqtt_new(br, b->c, b->cv, &b->in, err, errlen) < 0)
        return -1;
    if ((p->effects & (1u << CONF_KAFKA)) &&
        br_kafka_new(br, b->c, &b->out, err, errlen) < 0)
        return -1;
    return 0;
}

static void describe(const struct plan *p, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
#define SAY(...)                                                               \
    do {                                                                       \
        if (n < len)                                                           \
            n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__);              \
    } while (0)
    if (!p->nchanged)
        SAY("no change");
    if (p->effects & (1u << CONF_ROUTES))
        SAY("%sroutes applied", n ? "; " : "");
    if (p->effects & (1u << CONF_AT_ONCE))
        SAY("%ssettings applied", n ? "; " : "");
    if (p->effects & (1u << CONF_MQTT))
        SAY("%smqtt reconnected", n ? "; " : "");
    if (p->effects & (1u << CONF_KAFKA))
        SAY("%skafka producer recreated", n ? "; " : "");
    if (p->restart[0])
        SAY("%srestart needed: %s", n ? "; " : "", p->restart);
#undef SAY
}

/* Applies what was built: nothing here can fail. */
static void apply(struct bridge *br, struct built *b, const struct plan *p)
{
    const char **filters;
    size_t nf = convert_filters(b->cv, &filters);
    br_commit(br); /* the burst so far belongs to the old routes */
    struct convert *old_cv = br->cv;
    br->cv = b->cv;
    if (b->in) {
        if (strcmp(br->c->mqtt.client_id, b->c->mqtt.client_id))
            log_warn("reload: mqtt.client_id is now %s: what the broker "
                     "queued for %s is no longer read",
                     b->c->mqtt.client_id, br->c->mqtt.client_id);
        else if (!strcmp(br->c->mqtt.host, b->c->mqtt.host) &&
                 br->c->mqtt.port == b->c->mqtt.port)
            /* the same session goes on: drop its old subscriptions (a
             * changed share group, routes) before the DISCONNECT */
            mqtt_in_set_subscriptions(br->in, b->c->mqtt.share_group, filters,
                                      nf);
        mqtt_in_close(br->in); /* DISCONNECT after the acks */
        mqtt_in_free(br->in);
        br->in = b->in;
    } else if (mqtt_in_set_subscriptions(br->in, b->c->mqtt.share_group,
                                         filters, nf) < 0) {
        log_error("reload: out of memory changing the subscriptions; they "
                  "change at the next reconnect");
    }
    convert_free(old_cv);
    if (b->out) {
        br->out_next = b->out;
        outbox_set_producer(br->ob, NULL); /* the old one takes no more */
        br->settle_until = log_now_ms() + br->c->kafka.shutdown_timeout;
    }
    br->max_payload = br_payload_limit(br, b->c);
    br->chunk_bytes = br_chunk_limit(br, b->c);
    struct conf *old = br->own;
    br->c = br->own = b->c;
    conf_fini(old);
    free(old);
    log_set_level(br->c->log.level);
    outbox_set_smearing(br->ob, br->c->kafka.drain_rate,
                        br->c->kafka.drain_delay, log_now_ms());
    if (p->nchanged)
        log_info("reload: changed: %s", p->changed);
}

static void attempt(struct bridge *br)
{
    struct built b = {0};
    struct plan p = {0};
    char err[CLI_RELOAD_TEXT_MAX], detail[CLI_RELOAD_TEXT_MAX];
    notify_reloading();
    br->reload_pending = 0;
    err[0] = '\0';
    if (build(br, &b, &p, err, sizeof(err)) < 0) {
        drop(&b);
        log_error("reload: refused, the running configuration stays: %s", err);
        answer(br, 0, err, NULL);
        return;
    }
    apply(br, &b, &p);
    describe(&p, detail, sizeof(detail));
    snprintf(br->reload_detail, sizeof(br->reload_detail), "%s", detail);
    if (br->out_next) { /* answered once the old producer settled */
        log_info("reload: applied (%s); %" PRId64
                 " records in flight settle first",
                 detail, outbox_inflight(br->ob));
        return;
    }
    log_info("reload: applied (%s)", detail);
    answer(br, 1, NULL, detail);
}

void br_reload_step(struct bridge *br, int64_t now)
{
    /* Not while a direct burst waits for Kafka: its PUBACKs are queued
     * and an MQTT reconnect would send them first. */
    if (br->reload_pending && !br->out_next && !br->direct_pending &&
        !br->large.active)
        attempt(br);
    if (br->out_next) {
        /* While the uplink is up, the records in flight get their reports
         * (a bounded time); when it is down they would wait for nothing. */
        if (outbox_inflight(br->ob) > 0 && br->uplink == 1 &&
            now < br->settle_until)
            return;
        struct kafka_out *next = br->out_next;
        int64_t left = outbox_inflight(br->ob);
        br->out_next = NULL;
        br_swap_producer(br, next);
        if (left)
            log_info("reload: %" PRId64 " records still in flight go to the "
                     "new producer",
                     left);
        char detail[CLI_RELOAD_TEXT_MAX];
        snprintf(detail, sizeof(detail), "%s", br->reload_detail);
        answer(br, 1, NULL, detail);
    }
}
