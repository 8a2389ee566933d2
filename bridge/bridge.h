/*
 * bridge.h — what the daemon exposes to main.c: run it, or one of the
 * tools that build the same stages without running (tools.c).
 *
 * bridge.c is the one file that knows every stage; the stages never call
 * each other. main.c parses argv, loads the conf and calls these. Each
 * returns the process exit code: 0, 1 (runtime failure), 3 (status: not
 * running) or 78 (bad config, with file:line:col on stderr).
 */
#ifndef MQTT2KAFKA_BRIDGE_H
#define MQTT2KAFKA_BRIDGE_H

#include "bridge/conf.h"

#define M2K_VERSION "0.1.0"

/* Runs until SIGTERM/SIGINT (exit 0) or a fatal error. Borrows c. */
int bridge_run(const struct conf *c);

/* Builds the route and decode stages from c: 0, or 78 with every route
 * error at its file:line:col (what the YAML loader alone does not check). */
int bridge_check_conf(const struct conf *c);
/* `check`: the resolved config, routes and subscriptions on stdout. */
int bridge_check(const struct conf *c);
/* `route`: where each MQTT topic (and the payload in payload_file, if not
 * NULL) would go. 1 if any would not be routed or would dead-letter. */
int bridge_route(const struct conf *c, char *const *topics, int ntopics,
                 const char *payload_file);
/* `schema list` (what: "list"): the loaded descriptor sets and types;
 * `schema show TYPE` (what: "show"): its definition. 78 when the schemas
 * do not load, 1 for an unknown type. */
int bridge_schema(const struct conf *c, const char *what, const char *type);
/* `spool stats` and `spool dead list|replay|purge` (what: "stats" or
 * "dead"; sub: "list", "replay" or "purge"). */
int bridge_spool(const struct conf *c, const char *what, const char *sub);
/* `status`: the running daemon's state from its status file; 3 when it is
 * not running. */
int bridge_status(const struct conf *c);

/* `reassemble`: large messages put together again from the chunk records
 * of topic (README, "Large messages"). c may be NULL when brokers is set.
 * 0 when every message seen is complete and checked, 1 otherwise (what is
 * missing is said on stderr, by m2k.id and chunk index). */
struct reassemble_opts {
    const char *topic;
    const char *out;     /* a directory (DIR/<m2k.id>), or "-": stdout */
    const char *brokers; /* NULL: the config's kafka.brokers */
    const char *id;      /* NULL: every message; else only this m2k.id */
    int timeout_s;       /* to read the topic to its end */
};
int bridge_reassemble(const struct conf *c, const struct reassemble_opts *o);

/* The spool's options from the conf (the daemon and the tools alike). */
struct spool_opts;
void bridge_spool_opts(const struct conf *c, struct spool_opts *so);

#endif
