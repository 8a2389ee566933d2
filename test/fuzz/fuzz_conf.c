/*
 * fuzz_conf.c — libFuzzer target: any bytes → conf_parse → convert_new (the
 * route and decode stages check what the loader does not) → route_match on
 * a few topics. Nothing may crash, leak or read out of bounds; a config
 * either loads into a usable table or fails with a "name:line:col: "
 * message. Built by `make fuzz`.
 *
 * Built with -DFUZZ_MAIN (any compiler) it is a plain program that runs
 * the files named on its command line through the same function.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/conf.h"
#include "bridge/convert.h"
#include "bridge/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const topics[] = {
        "a", "a/b/c", "sensors/eu/temp/d1", "$SYS/x", "a//", "x/y z/\xc3\xbc"};
    struct conf c;
    struct convert *cv = NULL;
    struct convert_opts o = {.max_payload = 1 << 20};
    struct route_result r;
    const char **filters;
    char err[512];

    if (conf_parse((const char *)data, size, "fuzz", &c, err, sizeof err)) {
        if (strncmp(err, "fuzz:", 5))
            abort(); /* every parse error names the input */
        return 0;
    }
    int rc = convert_new(&c, &o, &cv, err, sizeof err);
    if (rc == 0) {
        size_t n = convert_filters(cv, &filters);
        if (n == 0 || n > c.nroutes)
            abort();
        for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
            if (convert_route(cv, topics[i], &r) == ROUTE_OK && !r.pending &&
                !route_kafka_topic_ok(r.topic))
                abort();
        convert_free(cv);
    } else if (rc != -EINVAL || strncmp(err, "fuzz:", 5)) {
        abort(); /* a route error names the input and its place too */
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
