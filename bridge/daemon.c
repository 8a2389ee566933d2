/*
 * daemon.c — the daemon's life: open the stages in order and wire their
 * callbacks to the data path (bridge.c), turn the one poll() loop, keep
 * the status file and the counter lines, and stop cleanly.
 *
 * One thread, one poll() loop. Each turn: signals; Kafka's delivery
 * reports (every turn: librdkafka's wake-up pipe only fires when its
 * queue goes from empty to non-empty); a burst of MQTT messages read and
 * converted; the burst committed when it is large or has waited
 * spool.commit_delay. Before sleeping: delivery outcomes applied to the
 * spool, the window refilled from it, backpressure, reconnects, expiry,
 * status. The metrics server's one fd (libmicrohttpd's epoll set) is
 * polled with the others and served first in a turn (observe.c). Nothing
 * here blocks: connects run in mqtt_in's own thread,
 * expiry and acks in bounded slices.
 *
 * Signals: SIGTERM and SIGINT stop; SIGHUP rereads the configuration
 * (reload.c, at the next turn, between bursts); SIGUSR1 logs the counters.
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bridge/chunk.h"
#include "bridge/cli_reload.h"
#include "bridge/log.h"
#include "bridge/notify.h"

/* --- counters, status, signals, the loop --------------------------------- */

static void log_counters(struct bridge *br, const char *when)
{
    struct stats n;
    struct stats_gauges g;
    char line[2048];
    br_gather(br, &n, &g);
    stats_format(&n, &g, line, sizeof(line), ' ');
    log_info("%s: %s", when, line);
}

/* The status file (on tmpfs by default: rewriting it every few seconds
 * costs no flash) and the unit's STATUS= line, from the same numbers. */
void br_write_status(struct bridge *br, const char *state)
{
    const char *path = br->c->log.status_file;
    struct stats n;
    struct stats_gauges g;
    char line[512], reload[2 * CLI_RELOAD_TEXT_MAX + 128];
    br_gather(br, &n, &g);
    stats_status_line(&g, line, sizeof(line));
    notify_status("%s", line);
    if (!path || !*path)
        return;
    /* the answer `mqtt2kafka reload` waits for, in every version */
    cli_reload_format(reload, sizeof(reload), br->reload_seq, br->reload_result,
                      br->reload_ms, br->reload_error, br->reload_detail);
    struct stats_ident id = {state,         M2K_VERSION,   br->c->gateway.id,
                             (int)getpid(), log_wall_ms(), reload};
    int rc = stats_write_file(path, &id, &n, &g);
    if (rc && !br->status_warned++)
        log_warn("status file %s: %s (mqtt2kafka status will not work)", path,
                 strerror(-rc));
}

static int open_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void on_signal(struct bridge *br, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            log_counters(br, "stats");
            continue;
        }
        if (si.ssi_signo == SIGHUP) { /* served between bursts */
            br->reload_pending = 1;
            continue;
        }
        log_info("signal %u: stopping", si.ssi_signo);
        br->stop = 1;
    }
}

/* Reads MQTT until dry or the batch is full. */
static void read_burst(struct bridge *br)
{
    /* each message read may become up to `per` records (split) */
    /* One message at a time while the burst has room for the largest one
     * could become: it is then always stored or dead-lettered whole. */
    size_t per = convert_max_records(br->cv);
    struct batch *b = &br->batch;
    /* a large message ends the burst: it is stored before more is read */
    while (!b->failed && !br->large.active && b->max - b->n >= per &&
           b->nmsgs < b->max_msgs && b->used < br->batch_bytes) {
        if (b->nmsgs == 0)
            br->batch_t0 = log_now_ms();
        if (mqtt_in_read(br->in, 1) <= 0)
            break;
    }
}

static void turn(struct bridge *br, int sfd, int timeout)
{
    /* While a direct burst waits for Kafka, MQTT is not read: its PUBACKs
     * would go out with the burst's. Not polled at all, or an error on the
     * socket (POLLERR comes whatever the events) would spin the loop. */
    int hold = br->direct_pending || br->large.active;
    struct pollfd pf[4] = {
        {.fd = sfd, .events = POLLIN},
        {.fd = kafka_out_fd(br->out), .events = POLLIN},
        {.fd = hold ? -1 : mqtt_in_fd(br->in), .events = 0},
        {.fd = br->http ? http_fd(br->http) : -1, .events = POLLIN},
    };
    if (!br->backpressure && !br->direct_pending)
        pf[2].events |= POLLIN;
    /* Queued PUBACKs of a burst still waiting to be committed cannot go out
     * anyway: no POLLOUT for them, or the loop would spin. */
    if (mqtt_in_want_write(br->in) && br->batch.nmsgs == 0 && !br->batch.failed)
        pf[2].events |= POLLOUT;
    if (poll(pf, 4, timeout) < 0 && errno != EINTR)
        log_error("poll: %s", strerror(errno));
    if (pf[0].revents)
        on_signal(br, sfd);
    /* Scrapes and health checks first, before this turn's work: a handler
     * sees how long ago the loop last turned (observe.c). */
    br_http_run(br);
    /* Every turn, not only when the pipe says so: the pipe is written only
     * when librdkafka's queue goes from empty to non-empty, and serving it
     * costs one lock when there is nothing to serve. */
    kafka_out_poll(br->out);
    br_direct_tick(br, log_now_ms());
    if (!br->direct_pending && pf[2].fd >= 0 &&
        pf[2].revents & (POLLIN | POLLHUP | POLLERR))
        read_burst(br);
    /* A large message read: a slice into the spool per turn (the loop
     * keeps serving Kafka), committed with its burst once all is there. */
    if (br->large.active) {
        if (br_large_step(br))
            br_commit(br);
        return;
    }
    /* Group commit: a burst is committed (and only then acknowledged) once
     * it is large, or its first message has waited spool.commit_delay, so
     * a trickle of messages does not cost a commit each. A lost connection
     * commits at once: the broker redelivers the burst after the
     * reconnect, and only committed tags are recognised. */
    size_t held = br->batch.nmsgs;
    int64_t now = log_now_ms();
    /* The direct path has no commit to share: the burst goes at once. */
    if (held > 0 && !br->direct_pending && br_direct_ready(br, now))
        br_commit(br);
    else if (br->batch.failed || br->batch.n >= GROUP_RECORDS ||
             held >= GROUP_RECORDS || br->batch.used >= br->batch_bytes / 2 ||
             (held > 0 && !mqtt_in_connected(br->in)) ||
             (held > 0 && now - br->batch_t0 >= br->c->spool.commit_delay))
        br_commit(br);
    else if (held == 0 && pf[2].fd >= 0 && pf[2].revents & POLLOUT)
        br_commit(br); /* nothing read: just sends what is queued */
}

/* A fatal librdkafka error: the idempotent producer can no longer keep
 * order, so it is replaced; what was in flight goes round again. */
static void restart_producer(struct bridge *br)
{
    log_error("kafka: restarting the producer after a fatal error");
    /* a reload's producer, if one waits, is the one to use now */
    struct kafka_out *next = br->out_next;
    br->out_next = NULL;
    if (br->kafka_no_recreate) { /* the test hook: as if creating failed */
        kafka_out_free(next);
        kafka_out_free(br->out);
        br->out = NULL;
        outbox_set_producer(br->ob, NULL);
        outbox_reset(br->ob);
        log_error("kafka: cannot recreate the producer: fault injection; "
                  "exiting");
        br->out_failed = 1;
        br->stop = 1;
    } else if (br_swap_producer(br, next) < 0) {
        log_error("kafka: cannot recreate the producer; exiting");
        br->out_failed = 1;
        br->stop = 1;
    }
}

/* Before sleeping: apply delivery outcomes, refill the window, housekeeping. */
static int before_sleep(struct bridge *br, int64_t *next_stats,
                        int64_t *next_expire)
{
    int64_t now = log_now_ms();
    notify_watchdog();
    br_reload_step(br, now);
    br_loop_turned(br, now);
    outbox_flush(br->ob, now, 0);
    if (br->fault_chunks &&
        outbox_counters(br->ob)->chunks >= br->fault_chunks) {
        log_warn("fault injection: crash with a large record half produced "
                 "(%" PRId64 " chunks confirmed)",
                 outbox_counters(br->ob)->chunks);
        raise(SIGKILL);
    }
    if (br->kafka_fatal_at &&
        outbox_counters(br->ob)->delivered + br->n.direct >=
            br->kafka_fatal_at) {
        log_warn("fault injection: a fatal producer error");
        kafka_out_test_fatal(br->out);
        br->kafka_fatal_at = 0;
    }
    if (kafka_out_fatal(br->out)) {
        restart_producer(br);
        if (!br->out)
            return 0;
    }
    outbox_drain(br->ob, now);
    if (br->c->spool.on_full == CONF_BACKPRESSURE) {
        /* Stop reading before a put can fail, so the broker keeps the
         * messages queued instead of redelivering a refused burst. */
        int64_t burst =
            (int64_t)br->batch_bytes + br->max_payload + 4 * HDRS_CAP;
        int full = br->backpressure;
        if (now - br->room_checked >= 20) { /* statvfs and two PRAGMAs */
            int64_t room = spool_room(br->sp);
            br->room_checked = now;
            /* room for a whole burst to stop; for one more (at most a
             * burst's soft size: a large max_payload would otherwise ask
             * for more than the spool holds) to start again */
            int64_t more = burst < (int64_t)BATCH_SOFT_BYTES
                               ? burst
                               : (int64_t)BATCH_SOFT_BYTES;
            full = room < (br->backpressure ? burst + more : burst);
        }
        if (full && !br->backpressure)
            log_warn("spool full: backpressure, not reading MQTT");
        else if (!full && br->backpressure)
            log_info("spool has room again: reading MQTT");
        br->backpressure = full;
    }
    int wait = mqtt_in_tick(br->in, now, br->backpressure);
    if (now >= *next_expire) {
        /* A slice per turn: after a long outage millions may be due. */
        int k = spool_expire(br->sp);
        *next_expire = k > 0 ? now : now + EXPIRE_EVERY_MS;
    }
    if (now >= br->next_status) {
        br_write_status(br, br->backpressure ? "backpressure" : "running");
        br->next_status = now + STATUS_EVERY_MS;
    }
    if (br->c->log.stats_interval > 0 && now >= *next_stats) {
        log_counters(br, "stats");
        *next_stats = now + (int64_t)br->c->log.stats_interval * 1000;
    }
    wait = outbox_wait_ms(br->ob, now, wait);
    int dw = br_direct_wait_ms(br, now);
    if (dw >= 0 && dw < wait)
        wait = dw;
    if (br->next_status - now < wait) /* the status file on time */
        wait = (int)(br->next_status - now);
    if (br->http) { /* connection deadlines, a bind retry */
        int h = http_timeout_ms(br->http);
        if (h >= 0 && h < wait)
            wait = h;
    }
    if (br->large.active) /* the next slice at once */
        wait = 0;
    if (br->batch.nmsgs > 0 && !br->direct_pending) { /* a group commit */
        int64_t left = br->batch_t0 + br->c->spool.commit_delay - now;
        if (left < wait)
            wait = (int)(left > 0 ? left : 0);
    }
    return wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
}

/* SIGTERM: nothing more is read; what was read is already committed. The
 * acks for it go out, in-flight deliveries get a bounded time, and what is
 * not delivered stays in the spool for the next start. */
static void shutdown_gracefully(struct bridge *br)
{
    int64_t deadline = log_now_ms() + br->c->kafka.shutdown_timeout;
    notify_stopping();
    br_http_close(br); /* the port is free at once; nothing is served */
    /* A direct burst waits for Kafka (at most spool.direct_wait, then it
     * is spilled), so that its PUBACKs go out before the DISCONNECT. */
    while (br->direct_pending) {
        struct pollfd pf = {.fd = br->out ? kafka_out_fd(br->out) : -1,
                            .events = POLLIN};
        int w = br_direct_wait_ms(br, log_now_ms());
        poll(&pf, 1, w > 10 ? 10 : w);
        if (br->out)
            kafka_out_poll(br->out);
        br_direct_tick(br, log_now_ms());
    }
    while (br->large.active && !br_large_step(br))
        ; /* its PUBACK is queued: all of it into the spool first */
    br_commit(br);
    mqtt_in_close(br->in);
    while (outbox_inflight(br->ob) > 0 && log_now_ms() < deadline) {
        kafka_out_flush(br->out, 100);
        outbox_flush(br->ob, log_now_ms(), 1);
    }
    if (outbox_inflight(br->ob) > 0)
        log_warn("shutdown: %" PRId64
                 " records still in flight stay in the spool",
                 outbox_inflight(br->ob));
    kafka_out_free(br->out);
    br->out = NULL;
    outbox_flush(br->ob, log_now_ms(), 1);
    log_counters(br, "final");
    br_write_status(br, "stopped");
}

/* --- start ---------------------------------------------------------------- */

void bridge_spool_opts(const struct conf *c, struct spool_opts *so)
{
    *so = (struct spool_opts){
        .path = c->spool.path,
        .max_bytes = c->spool.max_bytes,
        .max_age_ms = c->spool.max_age,
        .on_full = c->spool.on_full == CONF_BACKPRESSURE ? SPOOL_BACKPRESSURE
                                                         : SPOOL_DROP_OLDEST,
        .sync = c->spool.sync == CONF_SYNC_NORMAL ? SPOOL_SYNC_NORMAL
                                                  : SPOOL_SYNC_FULL,
        .dead_max_records = c->spool.dead_max_records,
        .dead_max_bytes = c->spool.dead_max_bytes,
        .dead_max_age_ms = c->spool.dead_max_age,
    };
}

static int open_spool(struct bridge *br, char *err, size_t errlen)
{
    const struct conf *c = br->c;
    struct spool_opts so;
    bridge_spool_opts(c, &so);
    if (spool_open(&so, &br->sp, err, errlen) < 0)
        return -1;
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    br->spool_start = st; /* this run's counters start from here */
    if (!c->spool.max_bytes || st.max_bytes < c->spool.max_bytes)
        log_warn("spool: the filesystem holding %s has room for %" PRId64
                 " bytes%s; the spool keeps under that (and leaves a "
                 "%" PRId64 "-byte reserve for deletes)",
                 c->spool.path, st.max_bytes,
                 c->spool.max_bytes ? ", less than spool.max_bytes" : "",
                 st.reserve_bytes);
    if (st.recovered)
        log_error("spool: %s was corrupt; it was set aside and a fresh "
                  "spool started",
                  c->spool.path);
    log_info("spool: %s (%s), %" PRId64 " records waiting, %" PRId64
             " dead letters",
             c->spool.path,
             c->spool.sync == CONF_SYNC_FULL ? "sync full" : "sync normal",
             st.records, st.dead);
    return 0;
}

/* The tags of the newest rows still spooled, remembered oldest first. */
static void load_tags(struct bridge *br)
{
    int64_t *ids = calloc(MQTT_IN_RECEIVE_MAX, sizeof(int64_t));
    int64_t *tags = calloc(MQTT_IN_RECEIVE_MAX, sizeof(int64_t));
    int n =
        ids && tags ? spool_recent(br->sp, ids, tags, MQTT_IN_RECEIVE_MAX) : 0;
    for (int i = n - 1; i >= 0; i--)
        redeliver_remember(br->rd, tags[i]);
    free(ids);
    free(tags);
}

static int restore_one(void *ud, const char *key, const void *v, size_t len)
{
    struct bridge *br = ud;
    if (convert_restore(br->cv, key, v, len) == 0)
        br->restored++;
    return 0;
}

/* What the decode stage kept in the spool (Sparkplug aliases) comes back. */
static void load_state(struct bridge *br)
{
    if (spool_kv_list(br->sp, CONVERT_STATE_PREFIX, restore_one, br) < 0)
        log_warn("spool: cannot read the kept state: %s", spool_errmsg(br->sp));
    if (br->restored)
        log_info("sparkplug: %zu alias tables restored from the spool",
                 br->restored);
}

/* What one message's record may be to fit one spool put, dead letters
 * included. */
static int64_t one_put(const struct bridge *br)
{
    int64_t most = (int64_t)br->batch_bytes / 2;
    if ((int64_t)br->max_record - 2 * HDRS_CAP < most)
        most = (int64_t)br->max_record - 2 * HDRS_CAP;
    return most > 0 ? most : 1;
}

/* The byte window in flight: kafka.inflight_bytes, but drop_oldest never
 * drops what is in flight, so the window must leave most of the spool
 * droppable: at most a quarter of its cap. */
static int64_t window_bytes(const struct bridge *br, const struct conf *c)
{
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    int64_t w = c->kafka.inflight_bytes;
    if (st.max_bytes / 4 < w)
        w = st.max_bytes / 4;
    return w;
}

size_t br_chunk_limit(const struct bridge *br, const struct conf *c)
{
    int64_t most = one_put(br);
    if (c->kafka.chunk_bytes <= 0)
        return 0;
    if (c->kafka.chunk_bytes > most) {
        log_warn("kafka.chunk_bytes %" PRId64 " is more than one spool "
                 "transaction holds under the spool's cap; using %" PRId64,
                 c->kafka.chunk_bytes, most);
    } else {
        most = c->kafka.chunk_bytes;
    }
    /* a chunk beyond the fat lane's quarter of the window would hold
     * more in flight than the window allows (said once, not at reloads
     * that change nothing) */
    int64_t win = window_bytes(br, c);
    int64_t share = (int64_t)chunk_window_limit(win);
    if (most > share) {
        if ((size_t)share != br->chunk_bytes)
            log_warn("kafka.chunk_bytes %" PRId64 " is more than a quarter "
                     "of the byte window in flight (%" PRId64 " bytes, "
                     "kafka.inflight_bytes) less headers; using %" PRId64,
                     c->kafka.chunk_bytes, win, share);
        most = share;
    }
    return (size_t)most;
}

int64_t br_payload_limit(const struct bridge *br, const struct conf *c)
{
    /* One message must fit one spool put; with chunks, a larger one is
     * stored in parts (large.c), up to what the spool holds of one. */
    int64_t most =
        c->kafka.chunk_bytes > 0 ? spool_big_max(br->sp) : one_put(br);
    int64_t max = c->mqtt.max_payload > 0 ? c->mqtt.max_payload : INT64_MAX;
    if (max > most) {
        max = most > 0 ? most : 1;
        if (c->mqtt.max_payload > 0)
            log_warn("mqtt.max_payload %" PRId64 " is more than %s under the "
                     "spool's cap; using %" PRId64,
                     c->mqtt.max_payload,
                     c->kafka.chunk_bytes > 0
                         ? "the spool holds of one large message"
                         : "one spool transaction holds",
                     max);
    }
    return max;
}

/* Sizes that follow from the spool's cap in effect, computed once. */
static void size_limits(struct bridge *br, int64_t *win_bytes)
{
    const struct conf *c = br->c;
    struct spool_stats st = {0};
    spool_stats(br->sp, &st);
    br->max_record = spool_max_record(br->sp);
    /* A burst stays below the headroom spool_full() keeps (1/64 of the
     * cap): 1/128 of it, 8 MiB at most. */
    br->batch_bytes = BATCH_SOFT_BYTES;
    if ((size_t)(st.max_bytes / 128) < br->batch_bytes)
        br->batch_bytes = (size_t)(st.max_bytes / 128);
    br->max_payload = br_payload_limit(br, c);
    br->chunk_bytes = br_chunk_limit(br, c);
    *win_bytes = window_bytes(br, c);
}

static int open_stages(struct bridge *br)
{
    const struct conf *c = br->c;
    char err[512] = "out of memory";
    int64_t win_bytes;
    if (open_spool(br, err, sizeof(err)) < 0)
        goto fail;
    size_limits(br, &win_bytes);
    struct convert_opts co = {.max_payload = br->max_payload};
    struct outbox_opts oo = {c->kafka.inflight_records, win_bytes, c->nroutes,
                             c->kafka.drain_rate, c->kafka.drain_delay};
    /* The burst may pass its soft size by one message as large as a put
     * holds, and never more. */
    if (batch_init(&br->batch, BATCH_MAX_RECORDS, BATCH_BASE_BYTES,
                   br->batch_bytes + br->max_record + 2 * HDRS_CAP) ||
        !(br->put = calloc(BATCH_MAX_RECORDS, sizeof(*br->put))) ||
        !(br->spill = calloc(BATCH_MAX_RECORDS, sizeof(*br->spill))) ||
        !(br->spill_at = calloc(BATCH_MAX_RECORDS, sizeof(size_t))) ||
        !(br->spill_infl = calloc(BATCH_MAX_RECORDS, 1)) ||
        !(br->spilled = calloc(BATCH_MAX_RECORDS, 1)) ||
        !(br->route_received = calloc(c->nroutes + 1, sizeof(int64_t))) ||
        !(br->route_names = calloc(c->nroutes + 1, sizeof(char *))) ||
        redeliver_new(MQTT_IN_RECEIVE_MAX, &br->rd) ||
        outbox_new(br->sp, &oo, &br->ob) < 0)
        goto fail;
    if (schemas_load(c, &br->schemas, err, sizeof(err)) < 0)
        goto fail;
    co.schemas = br->schemas;
    if (convert_new(c, &co, &br->cv, err, sizeof(err)) < 0 ||
        br_kafka_open(br, err, sizeof(err)) < 0)
        goto fail;
    load_tags(br);
    load_state(br);
    for (size_t i = 0; i < c->nroutes; i++)
        br->route_names[i] = c->routes[i].name;
    return 0;
fail:
    log_error("%s", err);
    return -1;
}

static int open_mqtt(struct bridge *br)
{
    char err[512];
    if (br_mqtt_new(br, br->c, br->cv, &br->in, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

/* Test hooks, MQTT2KAFKA_FAULT=NAME[@N]:
 *   crash-before-commit@N, crash-after-commit@N  SIGKILL around the first
 *       commit once N messages were read;
 *   fail-put@N          every Nth spool put of a burst fails (-EIO);
 *   kafka-fatal@N       a fatal producer error once N records were
 *                       delivered: the producer is recreated;
 *   kafka-fatal-norecreate@N  the same, and recreating it fails;
 *   crash-large-write@N  SIGKILL once a large message has N slices in the
 *                       spool, before it is committed (nor acknowledged);
 *   crash-large-sent@N   SIGKILL once Kafka confirmed N chunks. */
static void set_fault(struct bridge *br)
{
    const char *fault = getenv("MQTT2KAFKA_FAULT");
    const char *at = fault ? strchr(fault, '@') : NULL;
    int64_t n = at ? strtoll(at + 1, NULL, 10) : 1;
    br->fault_after = -1;
    if (!fault)
        return;
    if (!strncmp(fault, "crash-before-commit", 19) ||
        !strncmp(fault, "crash-after-commit", 18)) {
        br->fault_after = n;
        br->fault_after_commit = fault[6] == 'a';
    } else if (!strncmp(fault, "fail-put", 8)) {
        br->fail_put_every = n > 0 ? n : 1;
    } else if (!strncmp(fault, "crash-large-write", 17)) {
        br->fault_large_slices = n > 0 ? n : 1;
    } else if (!strncmp(fault, "crash-large-sent", 16)) {
        br->fault_chunks = n > 0 ? n : 1;
    } else if (!strncmp(fault, "kafka-fatal", 11)) {
        br->kafka_fatal_at = n > 0 ? n : 1;
        br->kafka_no_recreate = strstr(fault, "norecreate") != NULL;
    }
}

static void close_all(struct bridge *br)
{
    if (br->sp) {
        br_kv_flush(br);
        br_large_abort(br);
    }
    kafka_out_free(br->out_next);
    br_http_close(br);
    kafka_out_free(br->out);
    mqtt_in_free(br->in);
    outbox_free(br->ob);
    spool_close(br->sp);
    convert_free(br->cv);
    pb_schema_free(br->schemas);
    redeliver_free(br->rd);
    batch_fini(&br->batch);
    free(br->put);
    free(br->spill);
    free(br->spill_at);
    free(br->spill_infl);
    free(br->spilled);
    conf_fini(br->own);
    free(br->own);
    free(br->route_received);
    free(br->route_names);
    free(br);
}

int bridge_run(const struct conf *c)
{
    struct bridge *br = calloc(1, sizeof(*br));
    int sfd = -1, rc = 1;

    if (!br)
        return 1;
    br->c = c;
    br->uplink = -1;
    snprintf(br->reload_result, sizeof(br->reload_result), "none");
    set_fault(br);
    log_set_level(c->log.level);
    srandom((unsigned)(log_wall_ms() ^ getpid()));
    if (open_stages(br) < 0 || open_mqtt(br) < 0 || br_http_open(br) < 0)
        goto out;
    sfd = open_signals();
    if (sfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        goto out;
    }
    log_info("mqtt2kafka %s: gateway %s, %zu routes, mqtt %s:%d, kafka %s",
             M2K_VERSION, c->gateway.id, c->nroutes, c->mqtt.host, c->mqtt.port,
             c->kafka.brokers);
    notify_ready();

    int64_t next_stats = log_now_ms() + (int64_t)c->log.stats_interval * 1000;
    int64_t next_expire = 0;
    while (!br->stop) {
        int wait = before_sleep(br, &next_stats, &next_expire);
        if (!br->out)
            break; /* the producer could not be recreated */
        turn(br, sfd, wait);
    }
    shutdown_gracefully(br);
    /* Not 0 when the producer could not be recreated, so that systemd's
     * Restart=on-failure starts the daemon again; not 78 either. */
    rc = br->out_failed ? 1 : 0;
out:
    if (sfd >= 0)
        close(sfd);
    close_all(br);
    return rc;
}
