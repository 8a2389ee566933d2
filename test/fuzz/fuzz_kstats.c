/*
 * fuzz_kstats.c — libFuzzer target: any bytes → kstats_update, twice (the
 * second carries the first's totals forward). Nothing may crash, leak or
 * read out of bounds; a refusal leaves the state as it was; every broker
 * kept has a NUL-terminated name and state. Built by `make fuzz`, seeded
 * with a real librdkafka statistics document.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "bridge/kstats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct kstats k, before;
    char err[256];
    memset(&k, 0, sizeof k);
    for (int round = 0; round < 2; round++) {
        before = k;
        if (kstats_update(&k, (const char *)data, size, err, sizeof err)) {
            assert(memcmp(&k, &before, sizeof k) == 0);
            assert(memchr(err, 0, sizeof err));
            continue;
        }
        assert(k.nbrokers <= KSTATS_MAX_BROKERS);
        for (size_t i = 0; i < k.nbrokers; i++) {
            assert(memchr(k.b[i].name, 0, sizeof k.b[i].name));
            assert(memchr(k.b[i].state, 0, sizeof k.b[i].state));
            assert(k.b[i].rtt_count >= 0);
        }
    }
    return 0;
}
