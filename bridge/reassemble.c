/*
 * reassemble.c — `mqtt2kafka reassemble`: large messages back from the
 * chunk records the fat lane produced (chunk.h has the header format).
 *
 * Reads every partition of a topic from its start to where it ended when
 * the command started (librdkafka, no consumer group, nothing committed),
 * places each chunk into a file of its own message by m2k.id at the offset
 * its index and length give (pwrite: a payload is never held in memory),
 * and once a message has all its chunks checks its size and SHA-256 and
 * writes it out: DIR/<m2k.id>, or to stdout. Repeats (the at-least-once
 * copies a crash or a retry sends again, same m2k.id and m2k.chunk) are
 * skipped. What is missing is reported by id and index, and the exit code
 * says whether everything seen was whole: 0 all complete and checked, 1
 * something missing, inconsistent or unreadable (or the topic could not be
 * read to its end in time), 64 usage, 78 bad config.
 *
 * A tool: knows the conf (for kafka.brokers, kafka.properties and
 * kafka.security), librdkafka, OpenSSL's SHA-256 and chunk.h.
 */
#include "bridge/bridge_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/chunk.h"

#define OPEN_MAX    4096  /* messages being put together at once */
#define DONE_MAX    65536 /* ids of complete messages remembered */
#define MISSING_SAY 32    /* missing indexes listed per message */

struct msg {
    struct chunk_set set;
    int fd;
    char path[4200];
    int bad; /* inconsistent: reported, its chunks ignored */
};

struct ra {
    const struct reassemble_opts *o;
    rd_kafka_t *rk;
    int32_t nparts;
    int64_t *hi, *lo;
    int *done_part;
    struct msg *msgs;
    size_t nmsgs;
    char (*done)[CHUNK_ID_MAX + 1];
    size_t ndone;
    int64_t complete, complete_bytes, incomplete, bad, dups, others;
    int failed;
    char tmpdir[4096];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_prop(rd_kafka_conf_t *kc, const char *name, const char *value)
{
    char why[512];
    if (rd_kafka_conf_set(kc, name, value, why, sizeof why) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mqtt2kafka reassemble: %s: %s\n", name, why);
        return -1;
    }
    return 0;
}

/* The consumer: the config's brokers, properties and security, or the
 * brokers given. */
static rd_kafka_t *consumer(const struct conf *c, const char *brokers)
{
    struct kafka_out_prop sec[16];
    char why[512], group[64];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    snprintf(group, sizeof group, "mqtt2kafka-reassemble-%d", (int)getpid());
    if (set_prop(kc, "group.id", group) ||
        set_prop(kc, "enable.auto.commit", "false") ||
        set_prop(kc, "enable.auto.offset.store", "false") ||
        set_prop(kc, "client.id", "mqtt2kafka-reassemble") ||
        set_prop(kc, "enable.partition.eof", "true") ||
        set_prop(kc, "fetch.message.max.bytes", "16777216"))
        goto fail;
    if (c) {
        for (size_t i = 0; i < c->kafka.nprops; i++)
            /* producer-only properties are not for a consumer */
            if (rd_kafka_conf_set(kc, c->kafka.props[i].name,
                                  c->kafka.props[i].value, why,
                                  sizeof why) != RD_KAFKA_CONF_OK)
                fprintf(stderr,
                        "mqtt2kafka reassemble: note: kafka.properties %s "
                        "ignored: %s\n",
                        c->kafka.props[i].name, why);
        size_t n = br_security_props(c, sec);
        for (size_t i = 0; i < n; i++)
            if (set_prop(kc, sec[i].name, sec[i].value))
                goto fail;
    }
    if (set_prop(kc, "bootstrap.servers",
                 brokers ? brokers
                 : c     ? c->kafka.brokers
                         : "127.0.0.1:9092"))
        goto fail;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, why, sizeof why);
    if (!rk) {
        fprintf(stderr, "mqtt2kafka reassemble: %s\n", why);
        goto fail;
    }
    return rk;
fail:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

/* Partitions and their offsets now; assigns them from their start. */
static int assign(struct ra *r, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->rk, r->o->topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, t, &md, timeout_ms);
    rd_kafka_topic_destroy(t);
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "mqtt2kafka reassemble: topic %s: %s\n", r->o->topic,
                rd_kafka_err2str(e ? e
                                 : md && md->topic_cnt
                                     ? md->topics[0].err
                                     : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    r->nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    r->hi = calloc((size_t)r->nparts + 1, sizeof *r->hi);
    r->lo = calloc((size_t)r->nparts + 1, sizeof *r->lo);
    r->done_part = calloc((size_t)r->nparts + 1, sizeof *r->done_part);
    if (!r->hi || !r->lo || !r->done_part)
        return -1;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(r->nparts);
    for (int32_t p = 0; p < r->nparts; p++) {
        e = rd_kafka_query_watermark_offsets(r->rk, r->o->topic, p, &r->lo[p],
                                             &r->hi[p], timeout_ms);
        if (e) {
            fprintf(stderr,
                    "mqtt2kafka reassemble: topic %s partition %d: %s\n",
                    r->o->topic, p, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        if (r->hi[p] <= r->lo[p]) {
            r->done_part[p] = 1; /* empty */
            continue;
        }
        rd_kafka_topic_partition_list_add(l, r->o->topic, p)->offset = r->lo[p];
    }
    e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        fprintf(stderr, "mqtt2kafka reassemble: assign: %s\n",
                rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static struct msg *find(struct ra *r, const char *id)
{
    for (size_t i = 0; i < r->nmsgs; i++)
        if (!strcmp(r->msgs[i].set.m.id, id))
            return &r->msgs[i];
    return NULL;
}

static int is_done(const struct ra *r, const char *id)
{
    for (size_t i = r->ndone; i-- > 0;)
        if (!strcmp(r->done[i], id))
            return 1;
    return 0;
}

static void forget(struct ra *r, struct msg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    if (m->path[0])
        unlink(m->path);
    chunk_set_fini(&m->set);
    *m = r->msgs[--r->nmsgs];
}

/* The file's SHA-256 equals the chunks' m2k.sha256. */
static int sha_ok(int fd, const unsigned char want[CHUNK_SHA256_LEN],
                  int64_t size)
{
    static unsigned char buf[1 << 16];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int64_t at = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    int ok = x && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1;
    while (ok && at < size) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)at);
        if (n <= 0)
            ok = 0;
        else {
            ok = EVP_DigestUpdate(x, buf, (size_t)n) == 1;
            at += n;
        }
    }
    ok = ok && EVP_DigestFinal_ex(x, md, &mdlen) == 1 &&
         mdlen == CHUNK_SHA256_LEN && !memcmp(md, want, CHUNK_SHA256_LEN);
    EVP_MD_CTX_free(x);
    return ok;
}

static int copy_out(int fd, int64_t size)
{
    static unsigned char buf[1 << 16];
    for (int64_t at = 0; at < size;) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)at);
        if (n <= 0 || fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return -1;
        at += n;
    }
    return fflush(stdout) ? -1 : 0;
}

/* All chunks are there: check, write out, remember the id as done. */
static void finish(struct ra *r, struct msg *m)
{
    struct chunk_set *s = &m->set;
    struct stat sb;
    char to[4200];
    if (fstat(m->fd, &sb) || sb.st_size != s->m.size) {
        fprintf(stderr, "%s: size %lld, not m2k.size %" PRId64 "\n", s->m.id,
                (long long)sb.st_size, s->m.size);
        r->bad++;
    } else if (!sha_ok(m->fd, s->m.sha256, s->m.size)) {
        fprintf(stderr,
                "%s: SHA-256 mismatch: the chunks put together are "
                "not the payload m2k.sha256 names\n",
                s->m.id);
        r->bad++;
    } else if (!strcmp(r->o->out, "-")) {
        if (copy_out(m->fd, s->m.size)) {
            fprintf(stderr, "%s: cannot write to stdout\n", s->m.id);
            r->failed = 1;
        }
        r->complete++;
        r->complete_bytes += s->m.size;
    } else {
        snprintf(to, sizeof to, "%.4000s/%s", r->o->out, s->m.id);
        if (rename(m->path, to)) {
            fprintf(stderr, "%s: cannot write %s: %s\n", s->m.id, to,
                    strerror(errno));
            r->failed = 1;
        } else {
            m->path[0] = '\0';
            printf("%s %" PRId64 " %s\n", s->m.id, s->m.size, to);
            r->complete++;
            r->complete_bytes += s->m.size;
        }
    }
    if (r->ndone < DONE_MAX)
        snprintf(r->done[r->ndone++], CHUNK_ID_MAX + 1, "%s", s->m.id);
    forget(r, m);
}

/* A new message: its file. */
static struct msg *start(struct ra *r, const struct chunk_meta *meta)
{
    if (r->nmsgs == OPEN_MAX) {
        fprintf(stderr,
                "mqtt2kafka reassemble: more than %d messages "
                "incomplete at once; giving up\n",
                OPEN_MAX);
        r->failed = 1;
        return NULL;
    }
    struct msg *m = &r->msgs[r->nmsgs];
    memset(m, 0, sizeof *m);
    m->fd = -1;
    const char *dir = strcmp(r->o->out, "-") ? r->o->out : r->tmpdir;
    /* a name of its own: two runs putting the same message together
     * (into one TMPDIR) never write one file */
    snprintf(m->path, sizeof m->path, "%.4000s/.%s.XXXXXX", dir, meta->id);
    if (chunk_set_init(&m->set, meta))
        return NULL;
    m->fd = mkostemp(m->path, O_CLOEXEC);
    if (m->fd < 0) {
        fprintf(stderr, "mqtt2kafka reassemble: %s: %s\n", m->path,
                strerror(errno));
        chunk_set_fini(&m->set);
        r->failed = 1;
        return NULL;
    }
    r->nmsgs++;
    return m;
}

static void take(struct ra *r, const rd_kafka_message_t *km)
{
    rd_kafka_headers_t *h = NULL;
    struct chunk_kv kv[64];
    struct chunk_meta meta;
    char why[256];
    size_t n = 0;
    if (rd_kafka_message_headers(km, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *v;
        size_t len;
        for (size_t i = 0;
             n < 64 && !rd_kafka_header_get_all(h, i, &name, &v, &len); i++)
            kv[n++] = (struct chunk_kv){name, v ? v : "", len};
    }
    int rc = chunk_parse(kv, n, &meta, why, sizeof why);
    if (rc == 0 || (rc == 1 && r->o->id && strcmp(meta.id, r->o->id))) {
        r->others++;
        return;
    }
    if (rc < 0) {
        fprintf(stderr, "partition %d offset %" PRId64 ": a bad chunk: %s\n",
                km->partition, km->offset, why);
        r->bad++;
        return;
    }
    if (is_done(r, meta.id)) {
        r->dups++;
        return;
    }
    struct msg *m = find(r, meta.id);
    if (!m && !(m = start(r, &meta)))
        return;
    if (m->bad)
        return;
    int64_t at;
    rc = chunk_set_add(&m->set, &meta, km->len, &at, why, sizeof why);
    if (rc < 0) {
        fprintf(stderr,
                "%s: chunk %" PRIu32 " (partition %d offset %" PRId64 "): %s\n",
                meta.id, meta.index, km->partition, km->offset, why);
        m->bad = 1;
        r->bad++;
        return;
    }
    if (rc == 0) {
        r->dups++;
        return;
    }
    if (pwrite(m->fd, km->payload, km->len, (off_t)at) != (ssize_t)km->len) {
        fprintf(stderr, "%s: cannot write %s: %s\n", meta.id, m->path,
                strerror(errno));
        r->failed = 1;
        m->bad = 1;
        return;
    }
    if (chunk_set_complete(&m->set))
        finish(r, m);
}

static int all_read(const struct ra *r)
{
    for (int32_t p = 0; p < r->nparts; p++)
        if (!r->done_part[p])
            return 0;
    return 1;
}

static void read_all(struct ra *r, int64_t deadline)
{
    while (!all_read(r) && !r->failed && mono_ms() < deadline) {
        rd_kafka_message_t *km = rd_kafka_consumer_poll(r->rk, 200);
        if (!km)
            continue;
        if (km->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* nothing more now (the end may be below hi: compaction,
             * transactions' markers) */
            if (km->partition >= 0 && km->partition < r->nparts &&
                km->offset >= r->hi[km->partition] - 1)
                r->done_part[km->partition] = 1;
        } else if (km->err) {
            fprintf(stderr, "mqtt2kafka reassemble: %s\n",
                    rd_kafka_message_errstr(km));
            if (km->err != RD_KAFKA_RESP_ERR__TRANSPORT)
                r->failed = 1;
        } else if (km->partition >= 0 && km->partition < r->nparts &&
                   km->offset < r->hi[km->partition]) {
            take(r, km);
            if (km->offset + 1 >= r->hi[km->partition])
                r->done_part[km->partition] = 1;
        }
        rd_kafka_message_destroy(km);
    }
}

/* What is still missing, by id and index. */
static void report(struct ra *r, int64_t deadline)
{
    uint32_t miss[MISSING_SAY];
    if (!all_read(r) && mono_ms() >= deadline) {
        fprintf(stderr,
                "mqtt2kafka reassemble: timed out before the end of %s\n",
                r->o->topic);
        r->failed = 1;
    }
    while (r->nmsgs) {
        struct msg *m = &r->msgs[r->nmsgs - 1];
        if (!m->bad) {
            uint32_t k = chunk_set_missing(&m->set, miss, MISSING_SAY);
            fprintf(stderr,
                    "%s: incomplete: %" PRIu32 " of %" PRIu32
                    " chunks missing:",
                    m->set.m.id, k, m->set.m.count);
            for (uint32_t i = 0; i < k && i < MISSING_SAY; i++)
                fprintf(stderr, " %" PRIu32, miss[i]);
            fprintf(stderr, "%s\n", k > MISSING_SAY ? " ..." : "");
            r->incomplete++;
        }
        forget(r, m);
    }
    fprintf(stderr,
            "reassemble: %" PRId64 " complete (%" PRId64 " bytes), %" PRId64
            " incomplete, %" PRId64 " bad, %" PRId64
            " repeated chunks skipped, "
            "%" PRId64 " other records\n",
            r->complete, r->complete_bytes, r->incomplete, r->bad, r->dups,
            r->others);
}

int bridge_reassemble(const struct conf *c, const struct reassemble_opts *o)
{
    struct ra r = {.o = o};
    int rc = 1;
    struct stat sb;
    if (strcmp(o->out, "-") && (stat(o->out, &sb) || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "mqtt2kafka reassemble: %s is not a directory\n",
                o->out);
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(r.tmpdir, sizeof r.tmpdir, "%s", tmp && *tmp ? tmp : "/tmp");
    r.msgs = calloc(OPEN_MAX, sizeof *r.msgs);
    r.done = calloc(DONE_MAX, sizeof *r.done);
    if (!r.msgs || !r.done || !(r.rk = consumer(c, o->brokers)))
        goto out;
    int64_t deadline = mono_ms() + (int64_t)o->timeout_s * 1000;
    if (assign(&r, o->timeout_s * 1000) < 0)
        goto out;
    read_all(&r, deadline);
    report(&r, deadline);
    rc = r.failed || r.incomplete || r.bad ? 1 : 0;
out:
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    while (r.nmsgs)
        forget(&r, &r.msgs[r.nmsgs - 1]);
    free(r.msgs);
    free(r.done);
    free(r.hi);
    free(r.lo);
    free(r.done_part);
    return rc;
}
