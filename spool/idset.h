/*
 * idset.h — pure: a set of positive 64-bit ids (open addressing, linear
 * probing, deletion without tombstones). The spool keeps the ids of
 * records in flight here. 0 marks an empty slot, so 0 is never a member.
 */
#ifndef MQTT2KAFKA_IDSET_H
#define MQTT2KAFKA_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct idset { /* open addressing, linear probing; 0 marks an empty slot */
    int64_t *slot;
    size_t cap, n;
};

/* Adds id (> 0); the table doubles when half full. 0 or -ENOMEM. */
int idset_add(struct idset *s, int64_t id);
/* Removes id; 1 if it was a member, else 0. */
int idset_del(struct idset *s, int64_t id);
/* 1 if id is a member. */
int idset_has(const struct idset *s, int64_t id);
/* Empties the set, keeping its table. */
void idset_clear(struct idset *s);
void idset_fini(struct idset *s);

#endif
