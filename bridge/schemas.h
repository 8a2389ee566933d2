/*
 * schemas.h — the protobuf schemas the bridge decodes with: the built-in
 * types (every .proto file in proto/, embedded in the binary as one descriptor
 * set) and the descriptor sets the configuration's `schemas:` names, all
 * loaded the same way into one registry (pb_schema.h), strings kept as
 * bytes so an embedded NUL survives. The daemon and the tools load them
 * at start; the decode stage borrows the registry.
 */
#ifndef MQTT2KAFKA_SCHEMAS_H
#define MQTT2KAFKA_SCHEMAS_H

#include <stddef.h>

#include "bridge/conf.h"
#include "bridge/pb_schema.h"

#define SCHEMAS_FILES_MAX 256 /* files all `schemas:` entries may match */

/* The built-in types alone, linked (pure: no I/O). 0 or -ENOMEM / -EINVAL
 * with err. The caller frees with pb_schema_free(). */
int schemas_builtin(struct pb_schema **out, char *err, size_t errlen);

/* The built-in types and every file the conf's `schemas:` entries name
 * (a path or a glob pattern; each must match at least one file), linked.
 * Errors name the entry's file:line:col and the set's own error. */
int schemas_load(const struct conf *c, struct pb_schema **out, char *err,
                 size_t errlen);

/* The files the entries matched, in load order, one per line, for
 * `mqtt2kafka schema list` (at most len bytes, like snprintf). */
void schemas_files(const struct conf *c, char *buf, size_t len);

#endif
