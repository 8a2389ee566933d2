/*
 * test_stats.c — the counter line, the status file and the systemd status
 * line: names and values as operators' scripts and `mqtt2kafka status`
 * read them, and the file replaced whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/stats.h"

static void test_line(void **state)
{
    struct stats n = {.received = 10,
                      .spooled = 9,
                      .delivered = 8,
                      .dead_lettered = 1,
                      .unrouted = 1,
                      .redelivered = 2};
    struct stats_gauges g = {.dropped_full = 3,
                             .backlog = 4,
                             .spool_file_bytes = 4096,
                             .uplink = 1,
                             .mqtt = 1};
    char buf[1024];
    (void)state;
    stats_format(&n, &g, buf, sizeof buf, ' ');
    assert_non_null(strstr(buf, "received=10 spooled=9 delivered=8 "
                                "dead_lettered=1 unrouted=1 bad_topic=0 "));
    assert_non_null(strstr(buf, " dropped_full=3 expired=0 "));
    assert_non_null(strstr(
        buf, " redelivered=2 dropped_qos0=0 props_renamed=0 unknown_fields=0 "
             "spb_unresolved=0 spb_seq_gaps=0 spb_rebirths=0 backlog=4 "));
    assert_non_null(
        strstr(buf, " spool_file_bytes=4096 spool_max_bytes=0 dead_dropped=0 "
                    "dead_expired=0 direct=0 spilled=0 stored=0 reconnects=0 "
                    "kafka_reconnects=0 drain_held_s=0 drain_capped=0 "
                    "uplink=up mqtt=connected path=spool"));
    g.uplink = -1;
    g.mqtt = 0;
    stats_format(&n, &g, buf, sizeof buf, '\n');
    assert_non_null(strstr(buf, "\nuplink=unknown\nmqtt=disconnected"));
    /* truncation is safe */
    stats_format(&n, &g, buf, 20, ' ');
    assert_int_equal(strlen(buf), 19);

    stats_status_line(&g, buf, sizeof buf);
    assert_string_equal(buf, "uplink unknown, mqtt disconnected, spool path, "
                             "spool 4 records, 0 dead letters");
    g.backpressure = 1;
    g.uplink = 0;
    stats_status_line(&g, buf, sizeof buf);
    assert_string_equal(buf, "backpressure (spool full), uplink down, mqtt "
                             "disconnected, spool path, spool 4 records, 0 "
                             "dead letters");
    g.backpressure = 0;
    g.uplink = 1;
    g.mqtt = 1;
    g.direct = 1;
    stats_status_line(&g, buf, sizeof buf);
    assert_string_equal(buf, "uplink up, mqtt connected, direct path, spool 4 "
                             "records, 0 dead letters");
    /* metrics: said only when they should be served and are not */
    g.uplink = 0;
    g.mqtt = 0;
    g.direct = 0;
    g.metrics = "127.0.0.1:9464";
    g.metrics_up = 1;
    stats_status_line(&g, buf, sizeof buf);
    assert_null(strstr(buf, "metrics"));
    g.metrics = "off";
    g.metrics_up = 0;
    stats_status_line(&g, buf, sizeof buf);
    assert_null(strstr(buf, "metrics"));
    g.metrics = "cannot listen on 127.0.0.1:9464: Address already in use";
    stats_status_line(&g, buf, sizeof buf);
    assert_string_equal(buf, "uplink down, mqtt disconnected, spool path, "
                             "spool 4 records, 0 dead letters; metrics not "
                             "served (cannot listen on 127.0.0.1:9464: "
                             "Address already in use)");
}

static void test_spool_line(void **state)
{
    struct stats_gauges g = {.put_total = 10,
                             .acked_total = 7,
                             .run_full = 2,
                             .backlog_at_start = 5,
                             .written = 4096,
                             .disk_written = -1};
    char buf[1024];
    (void)state;
    stats_format_spool(&g, buf, sizeof buf, ' ');
    assert_string_equal(
        buf, "put_total=10 acked_total=7 dead_dropped_full=0 "
             "dead_purged=0 dropped_full_run=2 expired_run=0 "
             "dead_dropped_full_run=0 dead_expired_run=0 backlog_at_start=5 "
             "dead_at_start=0 spool_bytes_written=4096 spool_fsyncs=0 "
             "disk_bytes_written=-1");
    stats_format_spool(&g, buf, 12, ' ');
    assert_int_equal(strlen(buf), 11);
}

static void test_file(void **state)
{
    char path[] = "/tmp/m2k-stats-XXXXXX", tmp[64], text[2048];
    struct stats n = {.received = 5};
    struct stats_gauges g = {.uplink = 0};
    struct stats_ident id = {"running", "9.9",         "gw-1",
                             1234,      1700000000000, NULL};
    (void)state;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(stats_write_file(path, &id, &n, &g), 0);
    FILE *f = fopen(path, "r");
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    assert_non_null(strstr(text, "state=running\npid=1234\n"
                                 "updated_ms=1700000000000\nversion=9.9\n"
                                 "gateway=gw-1\nreceived=5\n"));
    assert_non_null(strstr(text,
                           "\nuplink=down\nmqtt=disconnected\npath=spool\n"
                           "put_total=0\n"));
    assert_non_null(strstr(text, "\ndisk_bytes_written=0\nmetrics=off\n"
                                 "metrics_up=0\nmetrics_retry_s=0\n"));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
    unlink(path);
    assert_true(stats_write_file("/nonexistent/dir/status", &id, &n, &g) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_spool_line),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
