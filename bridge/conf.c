/*
 * conf.c — the YAML configuration: libyaml's document tree → struct conf,
 * through the key tables of conf_keys.c.
 *
 * The loader walks the document against the tables, so a key that is not
 * in a table is an error. Every error is "file:line:col: message" with
 * 1-based libyaml marks and says what was expected. What route templates
 * and payload types mean is not checked here but by the stages that use
 * them (route.c, payload.c), at the marks this loader keeps in each
 * struct conf_route: one grammar for templates, in route.c.
 *
 * Depends on libyaml and libc only. No global state: conf_parse() is safe
 * to call from a fuzzer in a loop.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "bridge/conf_int.h"
#include "bridge/units.h"

struct ctx {
    const char *name;
    const char *buf; /* the whole input, for reader errors' offsets */
    size_t len;
    yaml_document_t *doc;
    struct conf *c;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int
fail(struct ctx *x, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(x->err, x->errlen, "%s:%zu:%zu: ", x->name, m.line + 1,
                     m.column + 1);
    if (n >= 0 && (size_t)n < x->errlen) {
        va_start(ap, fmt);
        vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static struct conf_mark mark_of(yaml_mark_t m)
{
    return (struct conf_mark){(int)m.line + 1, (int)m.column + 1};
}

/* ---- values --------------------------------------------------------- */

static void store_int(void *p, size_t size, int64_t v)
{
    if (size == sizeof(int64_t))
        *(int64_t *)p = v;
    else
        *(int *)p = (int)v;
}

void conf_range_text(const struct key *k, char *buf, size_t len)
{
    char a[32], b[32];
    if (k->type == T_SIZE) {
        units_format_size(k->min, a, sizeof a);
        units_format_size(k->max, b, sizeof b);
    } else if (k->type == T_DUR_MS) {
        units_format_duration_ms(k->min, a, sizeof a);
        units_format_duration_ms(k->max, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%lld", (long long)k->min);
        snprintf(b, sizeof b, "%lld", (long long)k->max);
    }
    snprintf(buf, len, "%s to %s%s", a, b,
             k->type == T_DUR_S ? " seconds" : "");
}

void conf_choices_text(const struct kenum *e, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (; e->name && n < len; e++)
        n +=
            (size_t)snprintf(buf + n, len - n, "%s%s", n ? " | " : "", e->name);
}

static const char *const type_names[] = {
    [T_STR] = "a string",
    [T_INT] = "an integer",
    [T_SIZE] = "a size (e.g. 512MiB, 1GiB, 100MB, or bytes)",
    [T_DUR_S] = "a duration (e.g. 30s, 12h, or plain seconds)",
    [T_DUR_MS] = "a duration (e.g. 250ms, 10s, 7d, or plain seconds)",
    [T_ENUM] = "one of",
    [T_CHOICE] = "one of",
    [T_PROPS] = "a mapping of librdkafka property names to values",
};

static int kafka_name_ok(const char *s, char *bad)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
                    "6789._-",
                    *s)) {
            *bad = *s;
            return 0;
        }
    return 1;
}

/* Converts text for key k and stores it at base+off. On error writes what
 * was expected into why. Used for defaults and for the file alike. */
int conf_set_text(const struct key *k, const char *s, void *base, char *why,
                  size_t wlen)
{
    void *p = (char *)base + k->off;
    int64_t v = 0;
    char buf[128];
    int rc;

    switch (k->type) {
    case T_STR:
    case T_CHOICE: {
        size_t n = strlen(s);
        if (k->type == T_CHOICE) {
            const struct kenum *e = k->enums;
            while (e->name && strcmp(e->name, s))
                e++;
            if (!e->name) {
                conf_choices_text(k->enums, buf, sizeof buf);
                snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf,
                         s);
                return -EINVAL;
            }
        } else if (n == 0 && !(k->flags & K_EMPTY_OK)) {
            snprintf(why, wlen, "expected a non-empty string");
            return -EINVAL;
        } else if ((int64_t)n > k->max) {
            snprintf(why, wlen, "expected a string of %d to %lld characters",
                     k->flags & K_EMPTY_OK ? 0 : 1, (long long)k->max);
            return -EINVAL;
        }
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                snprintf(why, wlen, "control characters are not allowed");
                return -EINVAL;
            }
        char bad = '?';
        if ((k->flags & K_TOPIC) && !kafka_name_ok(s, &bad)) {
            snprintf(why, wlen,
                     "\"%.60s\" is not a legal Kafka topic name ('%c' is not "
                     "allowed: "
                     "use only A-Z a-z 0-9 . _ -)",
                     s, bad);
            return -EINVAL;
        }
        char *d = strdup(s);
        if (!d)
            return -ENOMEM;
        free(*(char **)p);
        *(char **)p = d;
        return 0;
    }
    case T_ENUM:
        for (const struct kenum *e = k->enums; e->name; e++)
            if (!strcmp(e->name, s)) {
                store_int(p, k->size, e->val);
                return 0;
            }
        conf_choices_text(k->enums, buf, sizeof buf);
        snprintf(why, wlen, "expected one of %s, got \"%.60s\"", buf, s);
        return -EINVAL;
    case T_INT: {
        char *end;
        errno = 0;
        long long ll = strtoll(s, &end, 10);
        rc = (*s && !*end && errno == 0 && *s != ' ') ? 0 : -EINVAL;
        v = ll;
        break;
    }
    case T_SIZE:
        rc = units_parse_size(s, &v);
        break;
    case T_DUR_S:
    case T_DUR_MS:
        rc = units_parse_duration_ms(s, &v);
        if (rc == 0 && k->type == T_DUR_S) {
            if (v % 1000) {
                snprintf(why, wlen, "expected whole seconds, got \"%.60s\"", s);
                return -EINVAL;
            }
            v /= 1000;
        }
        break;
    default:
        snprintf(why, wlen, "internal: no text form");
        return -EINVAL;
    }
    conf_range_text(k, buf, sizeof buf);
    if (rc) {
        snprintf(why, wlen, "expected %s from %s, got \"%.60s\"",
                 type_names[k->type], buf, s);
        return -EINVAL;
    }
    if (v < k->min || v > k->max) {
        snprintf(why, wlen, "%.60s is out of range (%s)", s, buf);
        return -EINVAL;
    }
    store_int(p, k->size, v);
    return 0;
}

static int apply_defaults(const struct key *keys, void *base)
{
    char why[160];
    for (const struct key *k = keys; k->name; k++)
        if (k->def && conf_set_text(k, k->def, base, why, sizeof why))
            return -ENOMEM; /* the defaults are tested: only strdup can fail */
    return 0;
}

static void free_strings(const struct key *keys, void *base)
{
    for (const struct key *k = keys; k->name; k++)
        if (k->type == T_STR || k->type == T_CHOICE) {
            char **p = (char **)((char *)base + k->off);
            free(*p);
            *p = NULL;
        }
}

/* ---- the tree ------------------------------------------------------- */

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return is_null(n) ? "nothing" : "a scalar";
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* Small edit distance, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[40];
    if (la >= 40 || lb >= 40)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0]++;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* "unknown key" with the nearest name and the list of valid ones. */
static int unknown_key(struct ctx *x, yaml_mark_t m, const char *where,
                       const char *name, const char *const *names,
                       size_t stride, size_t n)
{
    char list[512], hint[96] = "";
    size_t len = 0, best = 3;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *v =
            *(const char *const *)(const void *)((const char *)names +
                                                 i * stride);
        size_t d = distance(name, v);
        if (d < best) {
            best = d;
            snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", v);
        }
        if (len < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                    len ? ", " : "", v);
    }
    return fail(x, m, "unknown key \"%.60s\" in %s%s; expected one of: %s",
                name, where, hint, list);
}

/* Checks the keys of a mapping node are scalars, known and not repeated;
 * returns the index into keys of pair i through *ki. */
static int mapping_key(struct ctx *x, yaml_node_t *map, yaml_node_pair_t *pair,
                       const struct key *keys, const char *where, size_t *ki)
{
    yaml_node_t *kn = yaml_document_get_node(x->doc, pair->key);
    if (kn->type != YAML_SCALAR_NODE)
        return fail(x, kn->start_mark, "expected a key name in %s, got %s",
                    where, kind(kn));
    size_t n = 0;
    while (keys[n].name)
        n++;
    for (*ki = 0; *ki < n && strcmp(keys[*ki].name, scalar(kn)); ++*ki)
        ;
    if (*ki == n)
        return unknown_key(x, kn->start_mark, where, scalar(kn), &keys[0].name,
                           sizeof keys[0], n);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
        yaml_node_t *qn = yaml_document_get_node(x->doc, q->key);
        if (qn->type == YAML_SCALAR_NODE && !strcmp(scalar(qn), scalar(kn)))
            return fail(x, kn->start_mark,
                        "duplicate key \"%s\" in %s (first set on line %zu)",
                        scalar(kn), where, qn->start_mark.line + 1);
    }
    return 0;
}

static int parse_props(struct ctx *x, yaml_node_t *map)
{
    struct conf *c = x->c;
    if (is_null(map))
        return 0;
    if (map->type != YAML_MAPPING_NODE)
        return fail(x, map->start_mark,
                    "expected %s for kafka.properties, got %s",
                    type_names[T_PROPS], kind(map));
    size_t n =
        (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n > CONF_MAX_PROPS)
        return fail(x, map->start_mark,
                    "too many kafka.properties (at most %d)", CONF_MAX_PROPS);
    c->kafka.props = calloc(n ? n : 1, sizeof *c->kafka.props);
    if (!c->kafka.props)
        return -ENOMEM;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pr->value);
        if (kn->type != YAML_SCALAR_NODE || is_null(kn))
            return fail(x, kn->start_mark,
                        "expected a librdkafka property name, got %s",
                        kind(kn));
        for (size_t i = 0; i < conf_nowned_props; i++)
            if (!strcmp(scalar(kn), conf_owned_props[i][0]))
                return fail(x, kn->start_mark,
                            "kafka.properties: \"%s\" cannot be set here: %s",
                            conf_owned_props[i][0], conf_owned_props[i][1]);
        for (size_t i = 0; i < c->kafka.nprops; i++)
            if (!strcmp(c->kafka.props[i].name, scalar(kn)))
                return fail(x, kn->start_mark,
                            "duplicate key \"%s\" in kafka.properties (first "
                            "set on line %d)",
                            scalar(kn), c->kafka.props[i].line);
        if (vn->type != YAML_SCALAR_NODE || is_null(vn))
            return fail(x, vn->start_mark,
                        "expected a value for kafka property \"%s\" (a string "
                        "or number), got %s",
                        scalar(kn), kind(vn));
        struct conf_prop *p = &c->kafka.props[c->kafka.nprops];
        p->name = strdup(scalar(kn));
        p->value = strdup(scalar(vn));
        p->line = (int)kn->start_mark.line + 1;
        p->col = (int)kn->start_mark.column + 1;
        c->kafka.nprops++;
        if (!p->name || !p->value)
            return -ENOMEM;
    }
    return 0;
}

static int set_node(struct ctx *x, const struct key *k, yaml_node_t *vn,
                    void *base, const char *where)
{
    char why[320], choices[128];
    if (k->type == T_PROPS)
        return parse_props(x, vn);
    if (vn->type != YAML_SCALAR_NODE || is_null(vn)) {
        choices[0] = '\0';
        if (k->enums)
            conf_choices_text(k->enums, choices, sizeof choices);
        const char *hint = "";
        if (vn->type == YAML_MAPPING_NODE && k->type == T_STR)
            hint = " (a value that starts with '{' must be quoted: \"{name}\")";
        return fail(x, vn->start_mark, "expected %s%s%s for %s.%s, got %s%s",
                    type_names[k->type], *choices ? " " : "", choices, where,
                    k->name, kind(vn), hint);
    }
    int rc = conf_set_text(k, scalar(vn), base, why, sizeof why);
    if (rc == -EINVAL)
        return fail(x, vn->start_mark, "%s.%s: %s", where, k->name, why);
    return rc;
}

/* Applies a mapping node to base through keys; *seen marks which keys were
 * given. where names the mapping in messages ("mqtt", "route 2"). */
static int apply_mapping(struct ctx *x, yaml_node_t *map,
                         const struct key *keys, void *base, const char *where,
                         unsigned *seen)
{
    *seen = 0;
    if (is_null(map))
        return 0;
    if (map->type != YAML_MAPPING_NODE)
        return fail(x, map->start_mark,
                    "expected a mapping of keys for %s, got %s", where,
                    kind(map));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        size_t ki = 0;
        int rc = mapping_key(x, map, pr, keys, where, &ki);
        if (!rc)
            rc = set_node(x, &keys[ki],
                          yaml_document_get_node(x->doc, pr->value), base,
                          where);
        if (rc)
            return rc;
        *seen |= 1u << ki;
    }
    return 0;
}

/* ---- routes --------------------------------------------------------- */

/* Where the value of key name is in mapping map, 1-based; the mapping's own
 * start when the key is absent. */
static struct conf_mark value_mark(struct ctx *x, yaml_node_t *map,
                                   const char *name)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        if (kn->type == YAML_SCALAR_NODE && !strcmp(scalar(kn), name))
            return mark_of(
                yaml_document_get_node(x->doc, pr->value)->start_mark);
    }
    return mark_of(map->start_mark);
}

static int parse_route(struct ctx *x, yaml_node_t *rn, int no,
                       struct conf_route *r)
{
    char where[32];
    unsigned seen;
    snprintf(where, sizeof where, "route %d", no);
    r->line = (int)rn->start_mark.line + 1;
    r->col = (int)rn->start_mark.column + 1;
    if (rn->type != YAML_MAPPING_NODE)
        return fail(x, rn->start_mark,
                    "expected route %d as a mapping with match, topic and "
                    "key, got %s",
                    no, kind(rn));
    int rc = apply_defaults(conf_route_keys, r);
    if (!rc)
        rc = apply_mapping(x, rn, conf_route_keys, r, where, &seen);
    if (rc)
        return rc;
    for (size_t i = 0; conf_route_keys[i].name; i++)
        if ((conf_route_keys[i].flags & K_REQUIRED) && !(seen & (1u << i)))
            return fail(x, rn->start_mark,
                        "route %d is missing required key \"%s\" (%s)", no,
                        conf_route_keys[i].name, conf_route_keys[i].help);
    r->at_match = value_mark(x, rn, "match");
    r->at_topic = value_mark(x, rn, "topic");
    r->at_key = value_mark(x, rn, "key");
    r->at_payload = value_mark(x, rn, "payload");
    r->at_format = value_mark(x, rn, "format");
    r->at_split = value_mark(x, rn, "split");
    r->at_name = value_mark(x, rn, "name");
    return 0;
}

/* A route's metrics label: given, or its position; unique, and made of
 * characters any dashboard and query language takes as they are. */
static int name_route(struct ctx *x, struct conf_route *routes, size_t i)
{
    struct conf_route *r = &routes[i];
    yaml_mark_t at = {0, (size_t)r->at_name.line - 1,
                      (size_t)r->at_name.col - 1};
    if (!r->name) {
        char pos[24];
        snprintf(pos, sizeof pos, "%zu", i + 1);
        if (!(r->name = strdup(pos)))
            return -ENOMEM;
    }
    size_t bad = strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                 "QRSTUVWXYZ0123456789_.:-");
    if (r->name[bad])
        return fail(x, at,
                    "route %zu: name \"%s\" may hold letters, digits, "
                    "'_', '.', ':' and '-' only",
                    i + 1, r->name);
    for (size_t j = 0; j < i; j++)
        if (!strcmp(routes[j].name, r->name))
            return fail(x, at,
                        "route %zu: name \"%s\" is already route %zu's (a "
                        "route without a name is named by its position)",
                        i + 1, r->name, j + 1);
    return 0;
}

static int parse_routes(struct ctx *x, yaml_node_t *seq)
{
    struct conf *c = x->c;
    if (seq->type != YAML_SEQUENCE_NODE && !is_null(seq))
        return fail(x, seq->start_mark,
                    "expected a list of routes (\"- match: ...\"), got %s",
                    kind(seq));
    size_t n = is_null(seq) ? 0
                            : (size_t)(seq->data.sequence.items.top -
                                       seq->data.sequence.items.start);
    if (n == 0)
        return fail(x, seq->start_mark, "at least one route is required");
    if (n > CONF_MAX_ROUTES)
        return fail(x, seq->start_mark, "too many routes (%zu; at most %d)", n,
                    CONF_MAX_ROUTES);
    c->routes = calloc(n, sizeof *c->routes);
    if (!c->routes)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c->nroutes++;
        yaml_node_t *rn =
            yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);
        int rc = parse_route(x, rn, (int)i + 1, &c->routes[i]);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = name_route(x, c->routes, i);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- top level ------------------------------------------------------ */

static int parse_root(struct ctx *x, yaml_node_t *root)
{
    struct conf *c = x->c;
    unsigned given = 0, seen;
    if (root->type != YAML_MAPPING_NODE)
        return fail(x, root->start_mark,
                    "expected a mapping with sections gateway, mqtt, "
                    "kafka, spool, log, metrics and routes, got %s",
                    kind(root));
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pr->value);
        size_t i = 0;
        if (kn->type != YAML_SCALAR_NODE)
            return fail(x, kn->start_mark, "expected a section name, got %s",
                        kind(kn));
        while (i < conf_nsections && strcmp(conf_sections[i].name, scalar(kn)))
            i++;
        if (i == conf_nsections)
            return unknown_key(x, kn->start_mark, "the top level", scalar(kn),
                               &conf_sections[0].name, sizeof conf_sections[0],
                               conf_nsections);
        if (given & (1u << i))
            return fail(x, kn->start_mark, "duplicate section \"%s\"",
                        conf_sections[i].name);
        given |= 1u << i;
        int rc = conf_sections[i].keys
                     ? apply_mapping(x, vn, conf_sections[i].keys, c,
                                     conf_sections[i].name, &seen)
                     : parse_routes(x, vn);
        if (rc)
            return rc;
        if (!strcmp(conf_sections[i].name, "metrics") && !is_null(vn))
            c->metrics.at_listen = value_mark(x, vn, "listen");
        if (conf_sections[i].keys == conf_gateway_keys && !(seen & 1u))
            return fail(x, is_null(vn) ? kn->start_mark : vn->start_mark,
                        "gateway.id is required (%s)",
                        conf_gateway_keys[0].help);
    }
    if (!c->gateway.id)
        return fail(x, root->start_mark, "missing required key gateway.id (%s)",
                    conf_gateway_keys[0].help);
    if (!c->nroutes)
        return fail(x, root->start_mark,
                    "missing routes: at least one route is required");
    if (!c->mqtt.client_id) {
        size_t n = strlen(c->gateway.id) + sizeof "mqtt2kafka-";
        if (!(c->mqtt.client_id = malloc(n)))
            return -ENOMEM;
        snprintf(c->mqtt.client_id, n, "mqtt2kafka-%s", c->gateway.id);
    }
    return 0;
}

static int load_doc(struct ctx *x, yaml_parser_t *p, yaml_document_t *doc)
{
    if (!yaml_parser_load(p, doc)) {
        yaml_mark_t m = p->problem_mark;
        if (p->error == YAML_MEMORY_ERROR)
            return -ENOMEM;
        if (p->error == YAML_READER_ERROR) {
            /* The reader gives a byte offset, not a mark. */
            m.line = m.column = 0;
            for (size_t i = 0; i < p->problem_offset && i < x->len; i++) {
                if (x->buf[i] == '\n') {
                    m.line++;
                    m.column = 0;
                } else if (((unsigned char)x->buf[i] & 0xc0) != 0x80) {
                    m.column++;
                }
            }
            return fail(x, m, "the file is not valid UTF-8 text: %s",
                        p->problem ? p->problem : "bad byte");
        }
        if (p->context)
            return fail(x, m,
                        "YAML syntax error: %s (%s that started on line %zu)",
                        p->problem, p->context, p->context_mark.line + 1);
        return fail(x, m, "YAML syntax error: %s",
                    p->problem ? p->problem : "unknown");
    }
    return 0;
}

int conf_parse(const char *buf, size_t len, const char *name, struct conf *c,
               char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t doc, extra;
    struct ctx x = {name ? name : "<config>", buf, len, &doc, c, err, errlen};
    yaml_mark_t start = {0, 0, 0};
    int rc = -ENOMEM, have_doc = 0;

    memset(c, 0, sizeof *c);
    if (errlen)
        err[0] = '\0';
    if (!yaml_parser_initialize(&p))
        return -ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!(c->path = strdup(x.name)))
        goto fail;
    for (size_t i = 0; i < conf_nsections; i++)
        if (conf_sections[i].keys && apply_defaults(conf_sections[i].keys, c))
            goto fail;
    if ((rc = load_doc(&x, &p, &doc)))
        goto fail;
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = fail(
            &x, start,
            "the configuration is empty: gateway.id and routes are required");
        goto fail;
    }
    if ((rc = parse_root(&x, root)))
        goto fail;
    /* A second document would be silently ignored: say so instead. */
    x.doc = &extra;
    if ((rc = load_doc(&x, &p, &extra)))
        goto fail;
    root = yaml_document_get_root_node(&extra);
    if (root) {
        rc = fail(&x, root->start_mark,
                  "expected one YAML document; remove the '---' and "
                  "what follows");
        yaml_document_delete(&extra);
        goto fail;
    }
    yaml_document_delete(&extra);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return 0;
fail:
    if (rc == -ENOMEM && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", x.name);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    conf_fini(c);
    return rc;
}

int conf_load(const char *path, struct conf *c, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    int rc;
    FILE *f = fopen(path, "rb");

    memset(c, 0, sizeof *c);
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    if (!(buf = malloc(CONF_MAX_FILE + 1))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    n = fread(buf, 1, CONF_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto fail;
    }
    if (n > CONF_MAX_FILE) {
        rc = -EFBIG;
        snprintf(err, errlen,
                 "%s: larger than %d bytes: is this the configuration file?",
                 path, CONF_MAX_FILE);
        goto fail;
    }
    rc = conf_parse(buf, n, path, c, err, errlen);
fail:
    free(buf);
    fclose(f);
    return rc;
}

void conf_fini(struct conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < conf_nsections; i++)
        if (conf_sections[i].keys)
            free_strings(conf_sections[i].keys, c);
    for (size_t i = 0; i < c->nroutes; i++) {
        free_strings(conf_route_keys, &c->routes[i]);
    }
    for (size_t i = 0; i < c->kafka.nprops; i++) {
        free(c->kafka.props[i].name);
        free(c->kafka.props[i].value);
    }
    free(c->kafka.props);
    free(c->routes);
    free(c->path);
    memset(c, 0, sizeof *c);
}
