/*
 * record.h — the headers of a Kafka-bound record, packed into the opaque
 * blob the spool stores, and unpacked without copying when it drains.
 *
 * Blob format, repeated: u8 name length, name bytes, u16 value length
 * (big-endian), value bytes. Names over 255 bytes or values over 65535 bytes
 * do not fit and are refused at encode time.
 */
#ifndef MQTT2KAFKA_RECORD_H
#define MQTT2KAFKA_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define RECORD_MAX_HDRS 48

struct record_hdrs {
    unsigned char *buf;
    size_t len, cap; /* cap is fixed at init: a hard limit */
};

/* Appends one header; -ENOSPC when the blob is full or the header too long. */
int record_hdr_add(struct record_hdrs *h, const char *name, const void *value,
                   size_t len);
int record_hdr_add_str(struct record_hdrs *h, const char *name,
                       const char *value);
int record_hdr_add_i64(struct record_hdrs *h, const char *name, int64_t v);

struct record_hdr {   /* one header unpacked: pointers into the blob */
    const char *name; /* NUL-terminated, in the caller's names area */
    const void *value;
    size_t len;
};

/* Names the bridge writes are reserved: a device's MQTT 5 user property
 * named like one (case-insensitively: m2k.*, mqtt.*, error.*, gateway.*,
 * kafka.*, received.ms, content-type) cannot forge it. */
#define RECORD_USER_PREFIX "user."
int record_reserved_name(const char *name);
/* Appends a device's property: under its own name, or as "user.<name>"
 * when the name is reserved (*renamed is then incremented). As
 * record_hdr_add(). */
int record_hdr_add_user(struct record_hdrs *h, const char *name,
                        const char *value, int64_t *renamed);

/* Unpacks a blob into out (at most max headers; names are copied into
 * names, with terminators). Returns the count, or -EINVAL for a malformed
 * blob or one that does not fit. */
int record_hdrs_decode(const void *blob, size_t len, struct record_hdr *out,
                       size_t max, char *names, size_t names_cap);

#endif
