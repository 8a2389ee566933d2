/*
 * bridge.h — the daemon: wires MQTT in → route → spool → Kafka out.
 *
 * bridge.c is the one file that knows every stage; the stages never call
 * each other. main.c parses argv, loads the conf and calls bridge_run().
 */
#ifndef MQTT2KAFKA_BRIDGE_H
#define MQTT2KAFKA_BRIDGE_H

#include "bridge/conf.h"

#define M2K_VERSION "0.1.0"

/* Runs until SIGTERM/SIGINT (exit 0) or a fatal error. Borrows c. Returns
 * the process exit code: 0, 1 (runtime failure) or 78 (bad config). */
int bridge_run(const struct conf *c);

#endif
