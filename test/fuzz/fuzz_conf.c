/*
 * fuzz_conf.c — libFuzzer target: any bytes → conf_parse → route_table_new
 * → route_match on a few topics. Nothing may crash, leak or read out of
 * bounds; a parse either succeeds with a usable table or fails with a
 * "name:line:col: " message.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *       test/fuzz/fuzz_conf.c bridge/conf.c bridge/route.c -lyaml -o fuzz_conf
 *   ./fuzz_conf -max_len=4096 conf/
 *
 * Built with -DFUZZ_MAIN (any compiler) it is a plain program that runs
 * the files named on its command line through the same function.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/conf.h"
#include "bridge/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const topics[] = {"a", "a/b/c", "sensors/eu/temp/d1", "$SYS/x", "a//",
                                         "x/y z/\xc3\xbc"};
    struct conf c;
    struct route_table *t = NULL;
    struct route_result r;
    const char **filters;
    char err[512];

    if (conf_parse((const char *)data, size, "fuzz", &c, err, sizeof err)) {
        if (strncmp(err, "fuzz:", 5))
            abort(); /* every parse error names the input */
        return 0;
    }
    if (route_table_new(&c, &t, err, sizeof err) == 0) {
        size_t n = route_table_filters(t, &filters);
        if (n == 0 || n > c.nroutes)
            abort();
        for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
            if (route_match(t, topics[i], &r) == ROUTE_OK && !route_kafka_topic_ok(r.topic))
                abort();
        route_table_free(t);
    } else {
        abort(); /* the loader checked the routes: only ENOMEM may fail */
    }
    conf_fini(&c);
    return 0;
}

#ifdef FUZZ_MAIN
int main(int argc, char **argv)
{
    static uint8_t buf[CONF_MAX_FILE];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    return 0;
}
#endif
