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
 * Nested mappings (mqtt.tls, kafka.security) are walked the same way with
 * their own tables. String values go through ${NAME} expansion
 * (conf_env.c) before they are checked. A key naming a file is only
 * recorded here (struct conf_file); conf_files.c reads it. Combinations the
 * tables alone cannot express (a certificate without its key, SASL keys
 * without a SASL protocol) are checked once the whole file is read, at the
 * place of the key that does not fit.
 *
 * Depends on libyaml and libc only. No global state: conf_parse() is safe
 * to call from a fuzzer in a loop. A secret's value is never part of a
 * message.
 */
#include "bridge/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "bridge/conf_int.h"

struct ctx {
    const char *name;
    const char *buf; /* the whole input, for reader errors' offsets */
    size_t len;
    yaml_document_t *doc;
    struct conf *c;
    char *err;
    size_t errlen;
    unsigned flags;  /* CONF_ENV_LENIENT */
    yaml_mark_t cur; /* the value being expanded, for conf.unset */
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
        if (k->type == T_STR || k->type == T_CHOICE || k->type == T_FILE) {
            char **p = (char **)((char *)base + k->off);
            if (k->flags & K_SECRET && *p) /* no copy left in the heap */
                memset(*p, 0, strlen(*p));
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

static int expand(struct ctx *x, yaml_node_t *vn, const char *what, char **out);

static int parse_props(struct ctx *x, yaml_node_t *map)
{
    struct conf *c = x->c;
    if (is_null(map))
        return 0;
    if (map->type != YAML_MAPPING_NODE)
        return fail(x, map->start_mark,
                    "expected %s for kafka.properties, got %s",
                    conf_type_name(T_PROPS), kind(map));
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
        char what[160];
        snprintf(what, sizeof what, "kafka.properties: %.100s", scalar(kn));
        int rc = expand(x, vn, what, &p->value);
        if (rc)
            return rc;
        p->name = strdup(scalar(kn));
        p->line = (int)kn->start_mark.line + 1;
        p->col = (int)kn->start_mark.column + 1;
        c->kafka.nprops++;
        if (!p->name || !p->value)
            return -ENOMEM;
    }
    return 0;
}

static void note_unset(void *ud, const char *name)
{
    struct ctx *x = ud;
    struct conf *c = x->c;
    for (size_t i = 0; i < c->nunset && i < CONF_MAX_UNSET; i++)
        if (!strcmp(c->unset[i].name, name))
            return;
    if (c->nunset < CONF_MAX_UNSET) {
        struct conf_unset *u = &c->unset[c->nunset];
        snprintf(u->name, sizeof u->name, "%s", name);
        u->line = (int)x->cur.line + 1;
        u->col = (int)x->cur.column + 1;
    }
    c->nunset++;
}

/* ${NAME} expansion of a scalar, for string values; *out is malloc'ed. */
static int expand(struct ctx *x, yaml_node_t *vn, const char *what, char **out)
{
    char why[160];
    x->cur = vn->start_mark;
    int rc = conf_env_expand(scalar(vn), x->flags, out, why, sizeof why,
                             note_unset, x);
    if (rc == -EINVAL)
        return fail(x, vn->start_mark, "%s: %s", what, why);
    return rc;
}

static int apply_mapping(struct ctx *x, yaml_node_t *map,
                         const struct key *keys, void *base, const char *where,
                         unsigned *seen);

/* A key naming a file: where it is, so conf_files.c can read it and name
 * it in errors. A T_FILE x_file with K_SECRET fills key x of its table. */
static int record_file(struct ctx *x, const struct key *keys,
                       const struct key *k, yaml_node_t *vn, void *base,
                       const char *where)
{
    struct conf *c = x->c;
    if (c->nfiles == CONF_MAX_FILES)
        return fail(x, vn->start_mark, "too many file keys (at most %d)",
                    CONF_MAX_FILES);
    struct conf_file *f = &c->files[c->nfiles];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s.%s", where, k->name);
    f->line = (int)vn->start_mark.line + 1;
    f->col = (int)vn->start_mark.column + 1;
    f->off = k->off;
    f->flags = k->flags & K_PRIVATE ? CONF_FILE_PRIVATE : 0;
    size_t n = strlen(k->name);
    if (k->flags & K_SECRET && n > 5 && !strcmp(k->name + n - 5, "_file")) {
        for (const struct key *t = keys; t->name; t++)
            if (strlen(t->name) == n - 5 && !strncmp(t->name, k->name, n - 5)) {
                f->flags |= CONF_FILE_SECRET;
                f->secret_off = t->off;
            }
    }
    if (!(f->written = strdup(*(char **)((char *)base + k->off))))
        return -ENOMEM;
    c->nfiles++;
    return 0;
}

static int set_section(struct ctx *x, const struct key *k, yaml_node_t *vn,
                       void *base, const char *where)
{
    char sub[64];
    unsigned seen;
    snprintf(sub, sizeof sub, "%s.%s", where, k->name);
    const struct key *keys = conf_subsection(sub);
    if (!keys)
        return fail(x, vn->start_mark, "internal: no table for %s", sub);
    conf_store_int((char *)base + k->off, k->size, 1);
    int rc = apply_mapping(x, vn, keys, base, sub, &seen);
    for (size_t i = 0; rc == 0 && keys[i].name; i++)
        if ((keys[i].flags & K_REQUIRED) && !(seen & (1u << i)))
            rc = fail(x, vn->start_mark, "%s needs key \"%s\" (%s)", sub,
                      keys[i].name, keys[i].help);
    return rc;
}

static int set_node(struct ctx *x, const struct key *keys, const struct key *k,
                    yaml_node_t *vn, void *base, const char *where)
{
    char why[320], choices[128], what[96];
    if (k->type == T_PROPS)
        return parse_props(x, vn);
    if (k->type == T_SECTION)
        return set_section(x, k, vn, base, where);
    if (vn->type != YAML_SCALAR_NODE || is_null(vn)) {
        choices[0] = '\0';
        if (k->enums)
            conf_choices_text(k->enums, choices, sizeof choices);
        const char *hint = "";
        if (vn->type == YAML_MAPPING_NODE && k->type == T_STR)
            hint = " (a value that starts with '{' must be quoted: \"{name}\")";
        return fail(x, vn->start_mark, "expected %s%s%s for %s.%s, got %s%s",
                    conf_type_name(k->type), *choices ? " " : "", choices,
                    where, k->name, kind(vn), hint);
    }
    snprintf(what, sizeof what, "%s.%s", where, k->name);
    char *text = NULL;
    int rc = 0;
    if (k->type == T_STR || k->type == T_FILE || k->type == T_CHOICE)
        if ((rc = expand(x, vn, what, &text)))
            return rc; /* the message is written */
    rc = conf_set_text(k, text ? text : scalar(vn), base, why, sizeof why);
    if (text && k->flags & K_SECRET)
        memset(text, 0, strlen(text));
    free(text);
    if (rc == -EINVAL)
        return fail(x, vn->start_mark, "%s: %s", what, why);
    if (rc == 0 && k->type == T_FILE)
        rc = record_file(x, keys, k, vn, base, where);
    return rc;
}

static yaml_node_t *find_value(struct ctx *x, yaml_node_t *map,
                               const char *name);

/* A secret is given inline or from its file, not both. */
static int one_of_each(struct ctx *x, yaml_node_t *map, const struct key *keys,
                       const char *where, unsigned seen)
{
    for (size_t i = 0; keys[i].name; i++) {
        size_t n = strlen(keys[i].name);
        if (keys[i].type != T_FILE || !(keys[i].flags & K_SECRET) ||
            !(seen & (1u << i)) || n <= 5)
            continue;
        for (size_t j = 0; keys[j].name; j++)
            if (strlen(keys[j].name) == n - 5 &&
                !strncmp(keys[j].name, keys[i].name, n - 5) &&
                (seen & (1u << j)))
                return fail(x, find_value(x, map, keys[i].name)->start_mark,
                            "%s.%s: set %s or %s, not both", where,
                            keys[i].name, keys[j].name, keys[i].name);
    }
    return 0;
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
            rc = set_node(x, keys, &keys[ki],
                          yaml_document_get_node(x->doc, pr->value), base,
                          where);
        if (rc)
            return rc;
        *seen |= 1u << ki;
    }
    return one_of_each(x, map, keys, where, *seen);
}

/* ---- routes --------------------------------------------------------- */

/* The value of key name in mapping map, or NULL. */
static yaml_node_t *find_value(struct ctx *x, yaml_node_t *map,
                               const char *name)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pr->key);
        if (kn->type == YAML_SCALAR_NODE && !strcmp(scalar(kn), name))
            return yaml_document_get_node(x->doc, pr->value);
    }
    return NULL;
}

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
    r->at_schema_id = value_mark(x, rn, "schema_id");
    r->at_message_index = value_mark(x, rn, "message_index");
    r->at_name = value_mark(x, rn, "name");
    return 0;
}

/* schemas: a list of descriptor set files or glob patterns. */
static int parse_schemas(struct ctx *x, yaml_node_t *seq)
{
    struct conf *c = x->c;
    if (is_null(seq))
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, seq->start_mark,
                    "expected a list of descriptor set files for schemas "
                    "(\"- /etc/mqtt2kafka/schemas/*.desc\"), got %s",
                    kind(seq));
    size_t n =
        (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n > CONF_MAX_SCHEMAS)
        return fail(x, seq->start_mark, "too many schemas (%zu; at most %d)", n,
                    CONF_MAX_SCHEMAS);
    if (!n)
        return 0;
    if (!(c->schemas = calloc(n, sizeof *c->schemas)) ||
        !(c->at_schemas = calloc(n, sizeof *c->at_schemas)))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *v =
            yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);
        if (v->type != YAML_SCALAR_NODE || is_null(v) || !*scalar(v))
            return fail(x, v->start_mark,
                        "schemas[%zu]: expected a file name or glob pattern, "
                        "got %s",
                        i + 1, kind(v));
        if (strlen(scalar(v)) > 4096)
            return fail(x, v->start_mark,
                        "schemas[%zu]: longer than 4096 characters", i + 1);
        c->at_schemas[i] = mark_of(v->start_mark);
        if (!(c->schemas[i] = strdup(scalar(v))))
            return -ENOMEM;
        c->nschemas++;
    }
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

/* ---- what the tables cannot say ---------------------------------------- */

/* The node of "a.b" under the root (a section's key), or NULL. */
static yaml_node_t *node_at(struct ctx *x, yaml_node_t *root, const char *a,
                            const char *b)
{
    yaml_node_t *n = find_value(x, root, a);
    return n && b ? find_value(x, n, b) : n;
}

/* The place of key name in mapping map, else of map itself. */
static yaml_mark_t mark_at(struct ctx *x, yaml_node_t *map, const char *name)
{
    yaml_node_t *v = map ? find_value(x, map, name) : NULL;
    return v ? v->start_mark : map ? map->start_mark : (yaml_mark_t){0, 0, 0};
}

/* A client certificate needs its key, and a key passphrase a key. */
static int check_cert_pair(struct ctx *x, yaml_node_t *map, const char *where,
                           const char *cert, const char *key, int has_pw)
{
    if (cert && !key)
        return fail(x, mark_at(x, map, "cert_file"),
                    "%s.cert_file needs %s.key_file (the certificate's private "
                    "key)",
                    where, where);
    if (key && !cert)
        return fail(x, mark_at(x, map, "key_file"),
                    "%s.key_file needs %s.cert_file (the certificate it "
                    "belongs to)",
                    where, where);
    if (has_pw && !key)
        return fail(x,
                    mark_at(x, map,
                            find_value(x, map, "key_password")
                                ? "key_password"
                                : "key_password_file"),
                    "%s: a key passphrase needs %s.key_file", where, where);
    return 0;
}

static int check_mqtt(struct ctx *x, yaml_node_t *root)
{
    struct conf *c = x->c;
    yaml_node_t *m = node_at(x, root, "mqtt", NULL);
    if ((c->mqtt.password || find_value(x, m, "password_file")) &&
        !c->mqtt.username)
        return fail(
            x, mark_at(x, m, c->mqtt.password ? "password" : "password_file"),
            "mqtt: a password needs mqtt.username");
    if (!c->mqtt.tls.on)
        return 0;
    yaml_node_t *t = node_at(x, root, "mqtt", "tls");
    if (!find_value(x, m, "port"))
        c->mqtt.port = 8883; /* MQTT over TLS */
    return check_cert_pair(
        x, t, "mqtt.tls", c->mqtt.tls.cert_file, c->mqtt.tls.key_file,
        c->mqtt.tls.key_password || find_value(x, t, "key_password_file"));
}

/* librdkafka properties kafka.security sets; with it they are refused in
 * kafka.properties, so one place says how the brokers are reached. */
static const char *const security_props[] = {
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
};

static int check_kafka(struct ctx *x, yaml_node_t *root)
{
    static const char *const sasl_keys[] = {"sasl_mechanism", "username",
                                            "password", "password_file"};
    static const char *const tls_keys[] = {
        "ca_file",           "cert_file",
        "key_file",          "key_password",
        "key_password_file", "insecure_skip_hostname_verification"};
    struct conf *c = x->c;
    if (!c->kafka.security.on)
        return 0;
    yaml_node_t *s = node_at(x, root, "kafka", "security");
    int p = c->kafka.security.protocol;
    int sasl = p == CONF_SEC_SASL_PLAINTEXT || p == CONF_SEC_SASL_SSL;
    int tls = p == CONF_SEC_SSL || p == CONF_SEC_SASL_SSL;
    const char *pname = p == CONF_SEC_SSL              ? "ssl"
                        : p == CONF_SEC_SASL_PLAINTEXT ? "sasl_plaintext"
                        : p == CONF_SEC_SASL_SSL       ? "sasl_ssl"
                                                       : "plaintext";
    for (size_t i = 0; !sasl && i < sizeof sasl_keys / sizeof *sasl_keys; i++)
        if (find_value(x, s, sasl_keys[i]))
            return fail(x, mark_at(x, s, sasl_keys[i]),
                        "kafka.security.%s is for the sasl_ssl and "
                        "sasl_plaintext protocols (protocol is %s)",
                        sasl_keys[i], pname);
    for (size_t i = 0; !tls && i < sizeof tls_keys / sizeof *tls_keys; i++)
        if (find_value(x, s, tls_keys[i]))
            return fail(x, mark_at(x, s, tls_keys[i]),
                        "kafka.security.%s is for the ssl and sasl_ssl "
                        "protocols (protocol is %s)",
                        tls_keys[i], pname);
    if (sasl && !c->kafka.security.sasl_mechanism)
        return fail(x, s->start_mark,
                    "kafka.security: protocol %s needs sasl_mechanism (PLAIN | "
                    "SCRAM-SHA-256 | SCRAM-SHA-512)",
                    pname);
    if (sasl && !c->kafka.security.username)
        return fail(x, s->start_mark,
                    "kafka.security: protocol %s needs username", pname);
    if (sasl && !c->kafka.security.password &&
        !find_value(x, s, "password_file"))
        return fail(x, s->start_mark,
                    "kafka.security: protocol %s needs password_file (or "
                    "password)",
                    pname);
    int rc =
        check_cert_pair(x, s, "kafka.security", c->kafka.security.cert_file,
                        c->kafka.security.key_file,
                        c->kafka.security.key_password ||
                            find_value(x, s, "key_password_file"));
    if (rc)
        return rc;
    for (size_t i = 0; i < c->kafka.nprops; i++)
        for (size_t j = 0; j < sizeof security_props / sizeof *security_props;
             j++)
            if (!strcmp(c->kafka.props[i].name, security_props[j]))
                return fail(x,
                            (yaml_mark_t){0, (size_t)c->kafka.props[i].line - 1,
                                          (size_t)c->kafka.props[i].col - 1},
                            "kafka.properties: \"%s\" cannot be set here when "
                            "kafka.security is: kafka.security says how the "
                            "brokers are reached",
                            security_props[j]);
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
                 : !strcmp(conf_sections[i].name, "schemas")
                     ? parse_schemas(x, vn)
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
    int rc = check_mqtt(x, root);
    if (!rc)
        rc = check_kafka(x, root);
    if (rc)
        return rc;
    if (c->mqtt.share_group && !*c->mqtt.share_group) { /* "": off */
        free(c->mqtt.share_group);
        c->mqtt.share_group = NULL;
    }
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
    return conf_parse_ex(buf, len, name, 0, c, err, errlen);
}

int conf_parse_ex(const char *buf, size_t len, const char *name, unsigned flags,
                  struct conf *c, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t doc, extra;
    struct ctx x = {name ? name : "<config>",
                    buf,
                    len,
                    &doc,
                    c,
                    err,
                    errlen,
                    flags,
                    {0, 0, 0}};
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
    for (size_t i = 0; i < conf_nsubsections; i++)
        if (apply_defaults(conf_subsections[i].keys, c))
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
    return conf_load_ex(path, 0, c, err, errlen);
}

int conf_load_ex(const char *path, unsigned flags, struct conf *c, char *err,
                 size_t errlen)
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
    rc = conf_parse_ex(buf, n, path, flags, c, err, errlen);
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
    for (size_t i = 0; i < conf_nsubsections; i++)
        free_strings(conf_subsections[i].keys, c);
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i].written);
    for (size_t i = 0; i < c->nroutes; i++) {
        free_strings(conf_route_keys, &c->routes[i]);
    }
    for (size_t i = 0; i < c->kafka.nprops; i++) {
        free(c->kafka.props[i].name);
        if (c->kafka.props[i].value)
            memset(c->kafka.props[i].value, 0, strlen(c->kafka.props[i].value));
        free(c->kafka.props[i].value);
    }
    free(c->kafka.props);
    for (size_t i = 0; i < c->nschemas; i++)
        free(c->schemas[i]);
    free(c->schemas);
    free(c->at_schemas);
    free(c->routes);
    free(c->path);
    memset(c, 0, sizeof *c);
}
