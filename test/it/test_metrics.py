"""Observability end to end: the bridge's /metrics, /healthz and /ready
against a real Mosquitto, a real Kafka and a real Prometheus server.

What users see is checked: promtool accepts a live scrape; a Prometheus
started here scrapes the bridge under load and its HTTP API gives a
delivered count equal to the records in Kafka; the uplink, backlog and
readiness follow brokers that are stopped; the conservation identity holds
after dead letters, drops, expiry, split messages and a crash; `mqtt2kafka
status` shows the numbers /metrics shows; a stalled loop makes /healthz say
503; a port in use never stops forwarding; hostile HTTP clients do not
stall the flow of messages. Each bridge serves on a free port of its own.
"""
import json
import signal
import socket
import subprocess
import threading
import time

import pytest

import test_dashboard
from bridge_util import Bridge, kill_all, pub, pub_background, verify
from metrics_util import (Prometheus, free_port, http_get, identity,
                          lifetime_identity, promtool_check, scrape,
                          wait_metric)

READING_BATCH = "iot.telemetry.v1.ReadingBatch"


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


def metrics_bridge(stack, tmp, uniq, port, extra=None, routes=None, text_routes=None,
                   stats_ms=1000):
    """A Bridge serving metrics on `port`, librdkafka statistics every
    stats_ms. text_routes: route mappings written as given (name, payload,
    split, max_payload ...)."""
    ex = {"metrics": {"listen": f"127.0.0.1:{port}"},
          "kafka": {"properties": {"linger.ms": 5,
                                   "statistics.interval.ms": stats_ms}}}
    for sec, kv in (extra or {}).items():
        if sec == "kafka" and "properties" in kv:
            ex["kafka"]["properties"].update(kv["properties"])
            kv = {k: v for k, v in kv.items() if k != "properties"}
        ex.setdefault(sec, {}).update(kv)
    br = Bridge(stack, tmp, uniq, routes=routes, extra=ex)
    if text_routes:
        head = br.conf.read_text().split("routes:\n")[0]
        lines = [head + "routes:"]
        for r in text_routes:
            items = list(r.items())
            lines.append(f"  - {items[0][0]}: {json.dumps(items[0][1])}")
            lines += [f"    {k}: {json.dumps(v)}" for k, v in items[1:]]
        br.conf.write_text("\n".join(lines) + "\n")
    br.port = port
    return br


def mosquitto_pub(stack, topic, payload):
    cmd = ["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
           "-V", "5", "-q", "1", "-t", topic]
    if isinstance(payload, bytes):
        subprocess.run(cmd + ["-s"], input=payload, check=True, timeout=20)
    else:
        subprocess.run(cmd + ["-m", payload], check=True, timeout=20)


def status_numbers(br):
    """`mqtt2kafka status` as printed, with its numbers by phrase."""
    rc, out = br.status()
    assert rc == 0, out
    return out


def test_promtool_accepts_a_live_scrape_and_status_agrees(stack, uniq, tmp_path):
    br = metrics_bridge(stack, tmp_path, uniq, 0,  # port 0: any free one
                        extra={"mqtt": {"max_payload": "1KiB"}}).start()
    port = br.metrics_port
    assert port > 0
    s = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=3, count=100)
    assert s["acked"] == 300
    mosquitto_pub(stack, f"{uniq}/sensors/eu west/temp/dev-1", "bad topic")
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-2", b"y" * 5000)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-3", "")
    m = wait_metric(port, lambda m: m["mqtt2kafka_messages_delivered_total"] >= 303
                    and m["mqtt2kafka_spool_records"] == 0
                    and m.by("mqtt2kafka_kafka_broker_up", "broker"),
                    "all delivered and librdkafka statistics in")
    rc, out = promtool_check(m.text)
    assert rc == 0 and out == "", out

    assert m["mqtt2kafka_messages_received_total"] == 303
    assert m["mqtt2kafka_messages_stored_total"] == 300
    dead = m.by("mqtt2kafka_messages_dead_lettered_total", "reason")
    assert (dead["bad_topic"], dead["oversized"], dead["empty"]) == (1, 1, 1)
    assert m["mqtt2kafka_messages_delivered_total"] == 303
    assert m.get("mqtt2kafka_route_messages_received_total", route="1") == 303
    assert m.get("mqtt2kafka_route_messages_delivered_total", route="1") == 300
    assert m.get("mqtt2kafka_route_messages_received_total", route="2") == 0
    assert m["mqtt2kafka_delivery_latency_seconds_count"] == 303
    assert m["mqtt2kafka_uplink_up"] == 1 and m["mqtt2kafka_mqtt_connected"] == 1
    up = m.by("mqtt2kafka_kafka_broker_up", "broker")
    assert list(up.values()) == [1.0], up
    info = [dict(k[1]) for k in m.samples if k[0] == "mqtt2kafka_build_info"]
    assert len(info) == 1 and info[0]["version"] and info[0]["librdkafka"], info
    assert m["mqtt2kafka_spool_bytes_written_total"] > 303 * 100
    assert identity(m) == (0, 0, 0)
    assert lifetime_identity(m) == 0

    # `mqtt2kafka status` reads the same numbers (the file is rewritten
    # every 2 s; nothing moves now)
    time.sleep(2.5)
    out = status_numbers(br)
    m = scrape(port)
    assert (f"received {m['mqtt2kafka_messages_received_total']:.0f}, delivered "
            f"{m['mqtt2kafka_messages_delivered_total']:.0f}, redelivered by the broker 0"
            in out), out
    assert "dead-lettered 3 (unrouted 0, bad topic 1, oversized 1, empty 1," in out, out
    assert (f"backlog {m['mqtt2kafka_spool_records']:.0f} records, "
            f"{m['mqtt2kafka_spool_bytes']:.0f} bytes") in out, out
    assert (f"since the spool was made: put "
            f"{m['mqtt2kafka_spool_records_put_total']:.0f}, delivered "
            f"{m['mqtt2kafka_spool_records_acked_total']:.0f}") in out, out
    assert "uplink up, mqtt connected" in out
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out
    # the counter line in the log has the same names and values
    assert br.stop() == 0
    c = br.counters()
    assert (c["received"], c["delivered"], c["stored"], c["bad_topic"]) == (303, 303, 300, 1)


class NotifySocket:
    """A datagram socket standing in for systemd's: the daemon's sd_notify
    messages (READY=1, STATUS=...) arrive here when NOTIFY_SOCKET names it."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.status = None
        self.done = threading.Event()
        # read all the time, as systemd does: sd_notify() blocks once a
        # datagram socket's queue (10 messages) is full
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done.is_set():
            try:
                msg = self.sock.recv(4096).decode()
            except (socket.timeout, BlockingIOError):
                continue
            for line in msg.splitlines():
                if line.startswith("STATUS="):
                    self.status = line[len("STATUS="):]

    def drain(self):
        return self.status

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def test_systemd_status_line_reads_the_same_numbers(stack, uniq, tmp_path):
    """The STATUS= line systemd shows, read from a notify socket of our own,
    says what /metrics says: uplink, MQTT, the backlog, the dead letters;
    and, while the metrics port is taken, that they are not served."""
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    ns = NotifySocket(tmp_path / "notify")
    br = metrics_bridge(stack, tmp_path, uniq, port,
                        extra={"kafka": {"properties": {"message.max.bytes": 5000}}})
    try:
        br.start(env={"NOTIFY_SOCKET": ns.path})
        deadline = time.time() + 10
        while time.time() < deadline and "metrics not served" not in (ns.drain() or ""):
            time.sleep(0.3)
        assert ns.status.startswith("uplink "), ns.status
        assert ns.status.endswith(
            f"; metrics not served (cannot listen on 127.0.0.1:{port}: Address "
            "already in use (another process serves on that port))"), ns.status
    finally:
        squatter.close()
    br.wait_log("(bound now)", 45)
    pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=20)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/big", b"B" * 6000)  # refused
    m = wait_metric(port, lambda m: m["mqtt2kafka_messages_delivered_total"] == 40
                    and m["mqtt2kafka_spool_dead_letters"] == 1, "delivered")
    time.sleep(2.5)  # the status is sent every 2 s
    line = ns.drain()
    m = scrape(port)
    path = "direct" if "direct path" in line else "spool"
    assert line == (f"uplink up, mqtt connected, {path} path, spool "
                    f"{m['mqtt2kafka_spool_records']:.0f} records, "
                    f"{m['mqtt2kafka_spool_dead_letters']:.0f} dead letters"), line
    assert m["mqtt2kafka_uplink_up"] == 1 and m["mqtt2kafka_mqtt_connected"] == 1
    assert br.stop() == 0
    ns.close()


def test_prometheus_scrapes_under_load(stack, uniq, tmp_path):
    """A real Prometheus scrapes every second while 30,000 messages flow
    for 10 s (every query of the Grafana dashboard finds data in it);
    its API then gives the delivered count, equal to the records in Kafka,
    and its samples saw the count rise in between."""
    port = free_port()
    br = metrics_bridge(stack, tmp_path, uniq, port).start()
    prom = Prometheus(tmp_path / "prom", {"m2k": [f"127.0.0.1:{port}"]})
    try:
        deadline = time.time() + 30
        while not prom.query('up{job="m2k"} == 1') and time.time() < deadline:
            time.sleep(0.5)  # its first scrape
        assert prom.query('up{job="m2k"}')[0][1] == 1
        t0 = time.time()
        s = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=10, count=3000,
                rate=3000, size=100)
        assert s["acked"] == 30000
        wait_metric(port, lambda m: m["mqtt2kafka_spool_records"] == 0
                    and m["mqtt2kafka_messages_delivered_total"] == 30000,
                    "30000 delivered")
        time.sleep(3)  # a few scrapes after the last delivery
        t1 = time.time()
        rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", expect=30000, idle=5)
        assert rc == 0 and v["records"] == 30000, v
        res = prom.query('mqtt2kafka_messages_delivered_total{job="m2k"}')
        assert len(res) == 1, res
        labels, value = res[0]
        assert value == v["records"], (value, v)
        assert labels["instance"] == f"127.0.0.1:{port}"
        assert prom.query('up{job="m2k"}')[0][1] == 1
        # it scraped while the load ran: values strictly between 0 and the end
        series = prom.query_range('mqtt2kafka_messages_delivered_total{job="m2k"}',
                                  t0, t1, "1s")[0][1]
        mid = [x for _, x in series if 0 < x < 30000]
        assert len(mid) >= 5, series
        rate = prom.query('max_over_time(rate(mqtt2kafka_messages_delivered_total'
                          f'{{job="m2k"}}[5s])[{int(t1 - t0) + 5}s:1s])')
        assert rate and rate[0][1] > 500, rate
        # every query of the Grafana dashboard finds its series
        for title, q in test_dashboard.queries(test_dashboard.load(), job="m2k",
                                               interval="5s"):
            assert prom.query(q), f"dashboard panel {title!r}: no data for {q}"
        print(f"\nprometheus: {len(series)} samples over {t1 - t0:.1f}s, "
              f"{len(mid)} mid-load; peak delivered rate {rate[0][1]:.0f}/s")
    finally:
        prom.stop()
    assert br.stop() == 0


def test_kafka_stopped_uplink_down_backlog_grows_still_ready(stack, uniq, tmp_path):
    port = free_port()
    br = metrics_bridge(stack, tmp_path, uniq, port).start()
    wait_metric(port, lambda m: m["mqtt2kafka_uplink_up"] == 1, "uplink up")
    stack.kafka_ctl("stop")
    try:
        feed = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}", 2, 12, 100,
                              tmp_path / "acked.txt")
        m1 = wait_metric(port, lambda m: m["mqtt2kafka_uplink_up"] == 0
                         and m["mqtt2kafka_spool_records"] > 0, "uplink down", 30)
        assert m1.get("mqtt2kafka_reconnects_total", side="kafka") >= 1
        time.sleep(3)
        m2 = scrape(port)
        assert m2["mqtt2kafka_uplink_up"] == 0
        assert m2["mqtt2kafka_spool_records"] > m1["mqtt2kafka_spool_records"]
        assert m2["mqtt2kafka_spool_oldest_age_seconds"] > \
            m1["mqtt2kafka_spool_oldest_age_seconds"] + 2
        assert m2["mqtt2kafka_spool_bytes"] > m1["mqtt2kafka_spool_bytes"]
        status, body, _ = http_get(port, "/ready")
        assert status == 200, body
        assert body.startswith("ready (uplink down: spooling, "), body
        assert http_get(port, "/healthz")[0] == 200
        assert identity(m2) == (0, 0, 0)
        feed.communicate(timeout=60)
    finally:
        stack.kafka_ctl("start")
    m = wait_metric(port, lambda m: m["mqtt2kafka_uplink_up"] == 1
                    and m["mqtt2kafka_spool_records"] == 0, "drained", 120)
    assert m["mqtt2kafka_spool_oldest_age_seconds"] == 0
    assert identity(m) == (0, 0, 0)
    assert br.stop() == 0


def test_mqtt_stopped_not_ready_with_reason(stack, uniq, tmp_path):
    port = free_port()
    br = metrics_bridge(stack, tmp_path, uniq, port).start()
    assert http_get(port, "/ready")[0] == 200
    stack.mqtt_ctl("stop")
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            status, body, _ = http_get(port, "/ready")
            if status == 503:
                break
            time.sleep(0.3)
        assert status == 503, body
        assert body.startswith("not ready:\nmqtt: connection to "
                               f"{stack.mqtt_host}:{stack.mqtt_port} lost"), body
        assert http_get(port, "/healthz")[0] == 200  # the loop still turns
        m = scrape(port)
        assert m["mqtt2kafka_mqtt_connected"] == 0
        assert m.get("mqtt2kafka_reconnects_total", side="mqtt") == 1
    finally:
        stack.mqtt_ctl("start")
    deadline = time.time() + 40
    while time.time() < deadline and http_get(port, "/ready")[0] != 200:
        time.sleep(0.5)
    assert http_get(port, "/ready")[0] == 200
    assert br.stop() == 0


def test_conservation_after_dead_letters_drops_split_and_a_crash(stack, uniq,
                                                                 tmp_path):
    """Run 1 (Kafka stopped): messages expire, the full spool drops the
    oldest, and the daemon dies by SIGKILL between a commit and its
    acknowledgements. Run 2: the broker redelivers; dead letters (bad topic,
    empty, oversized), split batches and records Kafka refuses arrive; Kafka
    comes back and the spool drains. The identity holds for run 2 at every
    scrape, the spool's lifetime identity across both runs, and what the
    spool says it delivered is what Kafka holds."""
    port = free_port()
    t = f"it.{uniq}"
    routes = [
        {"match": f"{uniq}/sensors/{{region}}/{{type}}/{{device}}",
         "topic": f"{t}.sensor.{{region}}.{{type}}", "key": "{device}",
         "name": "sensors", "max_payload": "2KiB"},
        {"match": f"{uniq}/batch/{{device}}", "topic": f"{t}.batch",
         "payload": READING_BATCH, "split": "readings", "name": "batches"},
        {"match": f"{uniq}/big/{{device}}", "topic": f"{t}.big", "name": "big"},
    ]
    br = metrics_bridge(
        stack, tmp_path, uniq, port, text_routes=routes,
        extra={"mqtt": {"max_payload": "64KiB"},
               "kafka": {"inflight_records": 200,
                         "properties": {"message.max.bytes": 5000}},
               "spool": {"max_bytes": "2MiB", "on_full": "drop_oldest",
                         "max_age": "12s"}})
    stack.kafka_ctl("stop")
    try:
        # run 1: 3000 expire, then 6000 more overflow the 2 MiB spool; the
        # daemon kills itself after a commit once 7000 were received
        br.start(env={"MQTT2KAFKA_FAULT": "crash-after-commit@7000"})
        a = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=3, count=1000,
                size=400)
        assert a["acked"] == 3000
        wait_metric(port, lambda m: m.get("mqtt2kafka_messages_dropped_total",
                                          reason="expired") > 0, "expiry", 40)
        # at a steady rate: at full speed thousands of PUBACKs could still
        # be queued at the SIGKILL, more than the 2 MiB spool holds, and
        # the broker's first redelivery then is a message the spool has
        # dropped since: recognition (which stops at the first stranger)
        # would see none
        b = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=3, count=2000,
                size=400, extra=["--start-seq", "1001", "-r", "3000"])
        assert b["acked"] == 6000
        br.proc.wait(30)
        assert br.proc.returncode == -signal.SIGKILL
        assert "fault injection: crash after commit" in br.logtext()

        # while it is down: dead letters, split batches, and records larger
        # than the producer's message.max.bytes (5000) but under the 8 KiB
        # a message may have with a 2 MiB spool
        for topic, payload in [(f"{uniq}/sensors/eu west/temp/d1", "bad topic"),
                               (f"{uniq}/sensors/eu/temp/d2", ""),
                               (f"{uniq}/sensors/eu/temp/d3", b"z" * 5000),
                               (f"{uniq}/big/d4", b"B" * 6000),
                               (f"{uniq}/big/d5", b"C" * 6000)]:
            mosquitto_pub(stack, topic, payload)
        bt = pub(stack, f"{uniq}/batch/{{device}}", devices=2, count=20, size=100,
                 extra=["-f", "batch"])
        assert bt["acked"] == 40 and bt["readings_acked"] == 400
        published = 3000 + 6000 + 5 + 40
        records_put = 3000 + 6000 + 5 + 400

        # run 2, Kafka still down: the identity at a scrape mid-way
        br.start()
        m = wait_metric(port, lambda m: m["mqtt2kafka_messages_received_total"]
                        + 7000 >= published, "the rest received", 60)
        assert m["mqtt2kafka_uplink_up"] == 0
        assert identity(m) == (0, 0, 0)
        assert lifetime_identity(m) == 0
    finally:
        stack.kafka_ctl("start")
    m = wait_metric(port, lambda m: m["mqtt2kafka_spool_records"] == 0
                    and m["mqtt2kafka_uplink_up"] == 1, "the spool drained", 180)
    assert identity(m) == (0, 0, 0), m.text
    assert lifetime_identity(m) == 0, m.text
    dead = m.by("mqtt2kafka_messages_dead_lettered_total", "reason")
    dropped = m.by("mqtt2kafka_messages_dropped_total", "reason")
    assert (dead["bad_topic"], dead["empty"], dead["oversized"]) == (1, 1, 1), dead
    assert dead["kafka_refused"] == 2 and m["mqtt2kafka_spool_dead_letters"] == 2
    assert m.get("mqtt2kafka_route_messages_received_total", route="batches") == 40
    assert m["mqtt2kafka_messages_redelivered_total"] > 0  # the crash's burst
    # split: 40 batch messages became 400 records
    assert m.get("mqtt2kafka_route_messages_delivered_total", route="batches") == 400
    # the spool's counters cover both runs, the one that crashed included
    assert m["mqtt2kafka_spool_records_put_total"] == records_put, m.text
    lifetime_dropped = m.by("mqtt2kafka_spool_records_dropped_total", "reason")
    assert lifetime_dropped["expired"] > 0 and lifetime_dropped["full"] > 0, m.text
    assert m["mqtt2kafka_spool_records_acked_total"] == \
        records_put - sum(lifetime_dropped.values()) - 2
    # Kafka holds what the spool says it delivered: Kafka was down when the
    # daemon crashed, so no record went twice
    acked = m["mqtt2kafka_spool_records_acked_total"]
    ids = set()
    for topic in (f"{t}.sensor.eu.temp", f"{t}.batch", f"{t}.dead-letter"):
        for r in stack.consume(topic, int(acked) + 1, timeout=5):
            ids.add(r["headers"]["m2k.id"])
    assert len(ids) == acked, (len(ids), acked)
    assert br.stop() == 0
    print(f"\nconservation: published {published} messages = {records_put} records; "
          f"expired {lifetime_dropped['expired']:.0f}, dropped full "
          f"{lifetime_dropped['full']:.0f}, refused 2, delivered {acked:.0f}; run 2 "
          f"redelivered {m['mqtt2kafka_messages_redelivered_total']:.0f}")


def test_healthz_503_after_a_stalled_loop(stack, uniq, tmp_path):
    """SIGSTOP holds the whole process for 7 s: the request that waited
    through it is answered 503 with how long, and one 2 s later 200."""
    port = free_port()
    br = metrics_bridge(stack, tmp_path, uniq, port).start()
    assert http_get(port, "/healthz")[0] == 200
    result = {}

    def ask():
        result["r"] = http_get(port, "/healthz", timeout=30)

    br.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1)
        th = threading.Thread(target=ask)
        th.start()
        time.sleep(6)
    finally:
        br.proc.send_signal(signal.SIGCONT)
    th.join(30)
    status, body, _ = result["r"]
    assert status == 503, body
    assert body.startswith("stalled: the loop did not turn for "), body
    stalled = float(body.split(" for ")[1].split()[0])
    assert 6 <= stalled < 12, body
    time.sleep(2.5)  # a stall is told for 2 s after it ended
    status, body, _ = http_get(port, "/healthz")
    assert status == 200 and body.startswith("ok: the loop turned"), body
    assert scrape(port)["mqtt2kafka_loop_stalls_total"] >= 1
    assert "s since the last turn" in br.logtext()
    assert br.stop() == 0


def test_metrics_port_in_use_never_stops_forwarding(stack, uniq, tmp_path):
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    br = metrics_bridge(stack, tmp_path, uniq, port)
    try:
        br.start()
        assert (f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
                in br.logtext()), br.logtext()
        s = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=50)
        assert s["acked"] == 100
        rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", expect=100)
        assert rc == 0 and v["records"] == 100, v
        time.sleep(2.5)
        rc, out = br.status()
        assert rc == 0
        assert (f"metrics: NOT SERVED: cannot listen on 127.0.0.1:{port}: Address "
                "already in use (another process serves on that port); trying again "
                "in " in out), out
    finally:
        squatter.close()
    br.wait_log("(bound now)", 45)
    status, body, _ = http_get(port, "/ready")
    assert status == 200, body
    assert scrape(port)["mqtt2kafka_messages_delivered_total"] == 100
    time.sleep(2.5)
    assert f"metrics: http://127.0.0.1:{port}/metrics" in br.status()[1]
    assert br.stop() == 0


def test_metrics_off(stack, uniq, tmp_path):
    br = Bridge(stack, tmp_path, uniq, extra={"metrics": {"listen": "off"}}).start()
    assert "metrics:" not in br.logtext()
    time.sleep(2.5)
    rc, out = br.status()
    assert rc == 0 and "metrics: off" in out, out
    assert br.stop() == 0


# --- hostile clients ---------------------------------------------------------

def slowloris(port, stop, src, n=4):
    """n connections that send a request one header byte every 0.3 s."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), 2, (src, 0))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            pass
    while not stop.is_set():
        for s in list(socks):
            try:
                s.sendall(b"X")
            except OSError:
                socks.remove(s)
                try:
                    s2 = socket.create_connection(("127.0.0.1", port), 2, (src, 0))
                    s2.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    socks.append(s2)
                except OSError:
                    pass
        time.sleep(0.3)
    for s in socks:
        s.close()


def huge_headers(port, stop, src, counts):
    """Requests with a 1 MiB header, again and again."""
    line = b"X-Big: " + b"a" * (1 << 20) + b"\r\n"
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), 2, (src, 0))
            s.settimeout(2)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
            counts["huge"] += 1
            s.recv(100)
            s.close()
        except OSError:
            counts["huge_err"] += 1
            time.sleep(0.05)


def many_connections(port, stop, n=400):
    """n connections opened at once (non-blocking) from many source
    addresses and held idle; the server takes its 16, the kernel's backlog
    a few, the rest retry their SYNs."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((f"127.0.{1 + i // 200}.{10 + i % 200}", 0))
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            s.close()
    stop.wait()
    for s in socks:
        s.close()


def test_hostile_clients_do_not_stall_messages(stack, uniq, tmp_path):
    """At a steady 1,000 messages a second: 4 s quiet, then 12 s of
    slowloris (12 addresses, 4 connections each, a byte every 0.3 s: the
    server cuts a request after 10 s), 4 s of requests with 1 MiB headers
    (4 addresses, in a loop), 4 s of 400 idle connections at once, a scrape
    loop throughout, then 4 s quiet. Every
    message reaches Kafka, and the receive times the bridge stamped show
    no gap over 1 s: the loop kept reading MQTT while it was attacked."""
    port = free_port()
    br = metrics_bridge(stack, tmp_path, uniq, port).start()
    acked = tmp_path / "acked.txt"
    feed = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}", 10, 28, 1000,
                          acked)
    time.sleep(4)
    counts = {"huge": 0, "huge_err": 0, "scrapes": 0, "scrape_fail": 0}
    scrape_ms = []
    done = threading.Event()

    def scraper():
        while not done.is_set():
            t0 = time.time()
            try:
                http_get(port, "/metrics", timeout=15)
                counts["scrapes"] += 1
                scrape_ms.append((time.time() - t0) * 1000)
            except OSError:
                counts["scrape_fail"] += 1
            time.sleep(0.2)

    phases = [
        ("slowloris", 12, [(slowloris, (port, f"127.0.3.{i}"))
                           for i in range(1, 13)]),
        ("huge headers", 4, [(huge_headers, (port, f"127.0.4.{i}", counts))
                             for i in range(1, 5)]),
        ("400 connections", 4, [(many_connections, (port,))]),
    ]
    sc = threading.Thread(target=scraper)
    sc.start()
    windows = []
    for name, secs, attackers in phases:
        stop = threading.Event()
        ths = [threading.Thread(target=f, args=(a[0], stop) + a[1:])
               for f, a in attackers]
        t0 = time.time()
        for th in ths:
            th.start()
        time.sleep(secs)
        stop.set()
        for th in ths:
            th.join(30)
            assert not th.is_alive(), name
        windows.append((name, t0, time.time()))
    done.set()
    sc.join(30)
    out, err = feed.communicate(timeout=60)
    s = json.loads(out.strip().splitlines()[-1])
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked,
                   expect=s["acked"], idle=5)
    assert v["missing"] == 0 and rc == 0, v
    assert br.proc.poll() is None
    # receive times (the records' timestamps) through the attack
    recs = stack.consume(f"it.{uniq}.sensor.eu.temp", s["acked"], timeout=60)
    ts = sorted(r["timestamp"] for r in recs)
    gaps = max(b - a for a, b in zip(ts, ts[1:]))
    t_attack = windows[0][1]
    before = sum(1 for x in ts if (t_attack - 4) * 1000 <= x < t_attack * 1000) / 4
    rates = ", ".join(
        f"{name} {sum(1 for x in ts if a * 1000 <= x < b * 1000) / (b - a):.0f}/s"
        for name, a, b in windows)
    # the server recovers once the attackers are gone
    m = wait_metric(port, lambda m: True, "a scrape after the attack", 20)
    print(f"\nhostile: {s['acked']} messages; largest receive gap {gaps} ms; "
          f"{before:.0f}/s before, {rates}; {counts['huge']} huge-header requests "
          f"({counts['huge_err']} unanswered or reset); {counts['scrapes']} scrapes "
          f"({counts['scrape_fail']} failed), slowest {max(scrape_ms or [0]):.0f} ms; "
          f"the server cut {m['mqtt2kafka_http_cut_total']:.0f} slow connections")
    assert gaps < 1000, f"a {gaps} ms gap in receive times"
    assert m["mqtt2kafka_http_cut_total"] > 0  # the slowloris ones
    assert counts["huge"] > 0
    assert br.stop() == 0
