/*
 * idset.h — pure: a set of positive 64-bit ids (open addressing, linear
 * probing, deletion without tombstones), each with a small value. The
 * spool keeps the ids of records in flight here, with their sizes, so an
 * ack knows what it frees without reading the rows again. 0 marks an empty
 * slot, so 0 is never a member; a value of 0 means "not known".
 */
#ifndef MQTT2KAFKA_IDSET_H
#define MQTT2KAFKA_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct idset { /* open addressing, linear probing; 0 marks an empty slot */
    int64_t *slot;
    uint32_t *val; /* slot[i]'s value */
    size_t cap, n;
};

/* Adds id (> 0) with value 0; the table doubles when half full. 0 or
 * -ENOMEM. */
int idset_add(struct idset *s, int64_t id);
/* Adds id, or sets its value if a member. 0 or -ENOMEM. */
int idset_put(struct idset *s, int64_t id, uint32_t v);
/* Removes id; 1 if it was a member, else 0. */
int idset_del(struct idset *s, int64_t id);
/* 1 if id is a member. */
int idset_has(const struct idset *s, int64_t id);
/* 1 and its value in *v if id is a member, else 0. */
int idset_get(const struct idset *s, int64_t id, uint32_t *v);
/* Empties the set, keeping its table. */
void idset_clear(struct idset *s);
void idset_fini(struct idset *s);

#endif
