/*
 * secret.h — pure: which configuration values and librdkafka properties
 * are secrets, so that nothing prints them (check, status, logs). A leaf:
 * libc only.
 */
#ifndef MQTT2KAFKA_SECRET_H
#define MQTT2KAFKA_SECRET_H

#define SECRET_SHOWN "(hidden)" /* what is printed instead of a secret */

/* 1 if a property or key named name may hold a secret: passwords, keys,
 * tokens, JAAS configs, anything named like one. Errs on the side of
 * hiding. */
int secret_name(const char *name);

#endif
