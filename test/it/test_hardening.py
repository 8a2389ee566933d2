"""The ways the bridge once stopped forwarding, lost a message uncounted or
counted one twice, each driven through the daemon against the real brokers:
a full filesystem, a message larger than one spool transaction, a broker
host that drops SYNs, a route Kafka refuses for good, commits that fail part
way, a fatal producer error, devices forging the bridge's headers, secrets
in `check`.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge_util import Bridge, kill_all, pub, pub_background, verify
from conftest import REPO
from test_bridge import mosquitto_pub, wait_delivered


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs for the spool (root only): the gateway's SD card that
    logs and the broker share."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(path):
    """Takes every free byte of the filesystem path is on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512):
            blk = b"\1" * size
            try:
                while os.write(fd, blk) > 0:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def create_topic(stack, name, *config):
    cmd = [sys.executable, str(REPO / "test/stack/kafka_topic.py"), stack.kafka, name, "1"]
    for c in config:
        cmd += ["--config", c]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def full_disk_case(stack, uniq, tmp_path, disk, policy):
    """10,000 messages of about 510 bytes while Kafka is down, into a spool
    on a 3 MiB filesystem with max_bytes 64MiB; then someone else fills the
    disk; then Kafka comes back. Once, the deletes of delivered rows failed
    for good ("database or disk is full"), about 4,300 reached Kafka and
    input stayed blocked."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"path": str(disk / "spool.db"), "max_bytes": "64MiB",
                                 "on_full": policy, "sync": "normal"}})
    acked = tmp_path / "acked.txt"
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.kafka_ctl("stop")
    try:
        br.start()
        br.wait_log("the filesystem holding", 10)  # the cap follows the disk
        res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=5000,
                  size=510, acked=acked, timeout=180)
        assert res["acked"] == 10000
        if policy == "backpressure":
            br.wait_log("backpressure", 60)
        else:
            deadline = time.time() + 60
            while br.counters("stats").get("dropped_full", 0) == 0:
                assert time.time() < deadline, br.logtext()[-3000:]
                time.sleep(0.5)
        fill(disk / "filler")  # the broker's persistence, the logs, ...
    finally:
        stack.kafka_ctl("start")
    if policy == "backpressure":
        rc, v = verify(stack, topic, acked=acked, expect=10000, idle=20, timeout=240)
        assert v["missing"] == 0, (v.get("missing_detail"), br.logtext()[-3000:])
        assert v["records"] == 10000
    else:
        deadline = time.time() + 180
        while True:  # drained: everything received is delivered or dropped
            c = br.counters("stats")
            if c.get("received") == 10000 and c.get("backlog") == 0:
                break
            assert time.time() < deadline, (c, br.logtext()[-3000:])
            time.sleep(1)
    assert br.stop() == 0
    c = br.counters()
    assert c["delivered"] + c["dropped_full"] == 10000, c
    assert c["spool_max_bytes"] < 3 * 1024 * 1024, c  # capped to the disk
    log = br.all_logs()
    # acks never stalled: at most a few failures, each followed by recovery
    assert log.count("cannot delete") <= 2, log[-3000:]
    assert "released the" in log or "reserve" in log  # the reserve was given back
    return c


def test_full_filesystem_backpressure_loses_nothing(stack, uniq, tmp_path, small_disk):
    c = full_disk_case(stack, uniq, tmp_path, small_disk, "backpressure")
    assert c["dropped_full"] == 0


def test_full_filesystem_drop_oldest_counts(stack, uniq, tmp_path, small_disk):
    c = full_disk_case(stack, uniq, tmp_path, small_disk, "drop_oldest")
    assert c["dropped_full"] > 0


def test_record_larger_than_a_spool_put_cannot_stall(stack, uniq, tmp_path):
    """mqtt.max_payload 4MiB, but one spool transaction holds about 4.1 MB
    at this cap, and the record adds headers: such a message was refused by
    the spool, the connection dropped, the broker redelivered it, forever."""
    create_topic(stack, f"it.{uniq}.dead-letter", "max.message.bytes=8388608")
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"max_payload": "4MiB"}, "spool": {"max_bytes": "1GiB"},
                       "kafka": {"chunk_bytes": "off",  # one record, not chunks
                                 "properties": {"linger.ms": 5,
                                                "message.max.bytes": 8388608}}}).start()
    big = b"b" * (4 * 1024 * 1024)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-big", big,
                  props=[("note", "n" * 8000), ("more", "m" * 7000)])
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-next", "next")
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=60)
    assert [g["value"] for g in got] == [b"next"], br.logtext()[-2000:]
    dl = stack.consume(f"it.{uniq}.dead-letter", 1, timeout=30)
    assert dl[0]["headers"]["error.original.size"] == str(len(big)).encode()
    assert 0 < len(dl[0]["value"]) < len(big)
    wait_delivered(br, 2)
    assert br.stop() == 0
    c = br.counters()
    assert c["oversized"] == 1 and c["spool_errors"] == 0, c


def test_publish_above_the_announced_packet_size_is_never_read(stack, uniq, tmp_path):
    """MQTT 5: the bridge announces a maximum packet size derived from
    mqtt.max_payload (4 x it + 128 KiB), so the broker does not send it a
    16 MiB publish to be read whole and cut; the broker logs the drop."""
    br = Bridge(stack, tmp_path, uniq, extra={"mqtt": {"max_payload": "16KiB"}}).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-huge", b"h" * (16 << 20))
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-mid", b"m" * (40 << 10))
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-ok", "ok")
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in got] == [b"ok"]
    dl = stack.consume(f"it.{uniq}.dead-letter", 1, timeout=30)
    assert dl[0]["headers"]["error.original.size"] == str(40 << 10).encode()
    deadline = time.time() + 10
    while "Dropping too large outgoing PUBLISH" not in stack.log("mqtt", 400):
        assert time.time() < deadline, stack.log("mqtt")
        time.sleep(0.2)
    rss_kb = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{br.proc.pid}/status")
                           .read_text()).group(1))
    assert rss_kb < 16 * 1024, f"peak RSS {rss_kb} KiB: the 16 MiB publish was read"
    wait_delivered(br, 2)
    assert br.stop() == 0


def black_hole():
    """A loopback port whose SYNs are dropped: a listener with a full accept
    queue. Returns (port, sockets to close)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    held = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(s)
    time.sleep(0.2)
    return port, [ls] + held


def test_unanswering_broker_host_does_not_block_the_loop(stack, uniq, tmp_path):
    """A broker host that drops SYNs: the connect once ran in the loop's own
    thread and blocked it for about two minutes (past the watchdog; no
    draining, no status). The loop keeps turning: the status file keeps
    being rewritten, Kafka keeps draining, SIGTERM stops the daemon at once."""
    port, held = black_hole()
    try:
        br = Bridge(stack, tmp_path, uniq, extra={"mqtt": {"port": port}})
        br.start(wait_connected=False)
        status = tmp_path / "status"
        deadline = time.time() + 15
        while not status.exists():
            assert time.time() < deadline, br.logtext()
            time.sleep(0.2)
        first = int(re.search(r"updated_ms=(\d+)", status.read_text()).group(1))
        time.sleep(5)
        later = int(re.search(r"updated_ms=(\d+)", status.read_text()).group(1))
        assert later - first >= 3000, "the loop stopped turning"
        rc, out = br.status()
        assert "mqtt disconnected" in out
        t0 = time.time()
        assert br.stop(timeout=10) == 0
        assert time.time() - t0 < 5
    finally:
        for s in held:
            s.close()


def test_refused_route_cannot_fill_the_spool(stack, uniq, tmp_path):
    """A route Kafka refuses for good (its topic takes at most 200 bytes):
    its records go to the spool's dead-letter table, which keeps its own
    bound (the oldest beyond it dropped and counted), and the other routes
    keep flowing."""
    create_topic(stack, f"it.{uniq}.sensor.eu.small", "max.message.bytes=200")
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"dead_max_records": 5}}).start()
    for i in range(12):
        mosquitto_pub(stack, f"{uniq}/sensors/eu/small/dev-{i}", "x" * 600)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-ok", "still flowing")
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in got] == [b"still flowing"]
    deadline = time.time() + 60
    while br.counters("stats").get("kafka_refused", 0) < 12:
        assert time.time() < deadline, br.logtext()[-3000:]
        time.sleep(0.5)
    assert br.stop() == 0
    c = br.counters()
    assert c["kafka_refused"] == 12
    assert c["dead_in_spool"] == 5 and c["dead_dropped"] == 7, c
    rc, out = br.status()
    assert "dead letters dropped 7" in out


def stats_series(br):
    return [dict(kv.split("=", 1) for kv in line.split(" stats: ", 1)[1].split() if "=" in kv)
            for line in br.all_logs().splitlines() if " stats: " in line]


def test_failed_commits_lose_nothing_count_once(stack, uniq, tmp_path):
    """Every third spool put fails (fault injection) while QoS 1 messages
    flow and Kafka delivers; a burst is stored in parts, so a failure can
    leave the first parts stored. Nothing is lost (the broker redelivers
    what was not stored), the stored parts' redeliveries are recognised (no
    duplicate under a new m2k.id), and no counter ever goes back: once, a
    failed commit rolled back delivered, retries and kafka_refused counted
    while the burst waited, and stored parts came back under new ids."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"max_bytes": "2MiB", "mode": "always"},
                       "log": {"stats_interval": 1}},
                env={"MQTT2KAFKA_FAULT": "fail-put@3"}).start()
    acked = tmp_path / "acked.txt"
    q1 = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}", 5, 8, 300, acked)
    q1.communicate(timeout=60)
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked, idle=10, timeout=120)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["dup_new_id"] == 0, v
    deadline = time.time() + 60
    while br.counters("stats").get("backlog", 1) != 0:
        assert time.time() < deadline
        time.sleep(0.5)
    time.sleep(2)
    assert br.stop() == 0
    c = br.counters()
    assert c["spool_errors"] > 0, "the fault was not injected"
    assert c["received"] == c["spooled"] + c["redelivered"], c
    assert c["delivered"] == c["spooled"] == v["records"], (c, v["records"])
    for name in ("received", "spooled", "delivered", "retries", "redelivered"):
        vals = [int(s[name]) for s in stats_series(br) if name in s]
        assert vals == sorted(vals), (name, vals)


def test_qos0_lost_in_a_failed_commit_is_counted(stack, uniq, tmp_path):
    """The broker never resends a QoS 0 message: one whose commit failed
    is gone, and was once gone without a trace. Every QoS 0 message the
    bridge received is in Kafka or counted as dropped_qos0."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"qos": 0}, "spool": {"mode": "always"}},
                env={"MQTT2KAFKA_FAULT": "fail-put@2"}).start()
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=500,
              rate=200, qos=0, size=200)
    assert res["sent"] == 1000
    time.sleep(3)
    assert br.stop() == 0
    c = br.counters()
    assert c["dropped_qos0"] > 0, c
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1000, timeout=15)
    assert len(got) == c["spooled"] == c["delivered"], (len(got), c)
    assert c["received"] == c["spooled"] + c["dropped_qos0"], c


def test_fatal_producer_error_recreates_it_without_loss(stack, uniq, tmp_path):
    br = Bridge(stack, tmp_path, uniq, env={"MQTT2KAFKA_FAULT": "kafka-fatal@200"}).start()
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4, count=250,
              rate=400, acked=acked)
    assert res["acked"] == 1000
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=1000, idle=8)
    assert v["missing"] == 0 and v.get("dup_new_id", 0) == 0, v
    assert "restarting the producer" in br.logtext()
    assert br.stop() == 0


def test_producer_that_cannot_be_recreated_exits_nonzero(stack, uniq, tmp_path):
    """Once it exited 0, and Restart=on-failure did not restart it."""
    br = Bridge(stack, tmp_path, uniq,
                env={"MQTT2KAFKA_FAULT": "kafka-fatal-norecreate@1"}).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-1", "one")
    rc = br.proc.wait(timeout=60)
    assert rc not in (0, 78), rc
    assert "cannot recreate the producer" in br.logtext()


def test_devices_cannot_forge_bridge_headers(stack, uniq, tmp_path):
    br = Bridge(stack, tmp_path, uniq).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-7", "21.5",
                  props=[("m2k.id", "forged"), ("MQTT.Topic", "elsewhere"),
                         ("content-type", "text/evil"), ("site", "north")])
    r = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)[0]
    names = [n for n, _ in r["header_list"]]
    assert names.count("m2k.id") == 1 and names.count("mqtt.topic") == 1, names
    assert re.fullmatch(rb"[0-9a-f]{16}-[0-9]+", r["headers"]["m2k.id"])
    assert r["headers"]["mqtt.topic"] == f"{uniq}/sensors/eu/temp/dev-7".encode()
    assert "content-type" not in names
    assert r["headers"]["user.m2k.id"] == b"forged"
    assert r["headers"]["user.MQTT.Topic"] == b"elsewhere"
    assert r["headers"]["user.content-type"] == b"text/evil"
    assert r["headers"]["site"] == b"north"
    wait_delivered(br, 1)
    assert br.stop() == 0
    assert br.counters()["props_renamed"] == 3


def test_check_and_errors_never_print_secrets(tmp_path):
    m2k = str(Path(os.environ.get("M2K_BUILD", REPO / "build")) / "mqtt2kafka")
    secret = "s3cr3t-" + os.urandom(6).hex()
    conf = tmp_path / "m.yaml"
    conf.write_text(f"""gateway: {{id: gw}}
spool: {{path: "{tmp_path / 'spool.db'}"}}
log: {{status_file: ""}}
mqtt: {{username: u, password: "{secret}"}}
kafka:
  properties:
    sasl.password: "{secret}"
    ssl.key.password: "{secret}"
    sasl.jaas.config: "x password={secret}"
routes:
  - match: "a/{{x}}"
    topic: t
""")
    r = subprocess.run([m2k, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    assert "sasl.password = (hidden)" in r.stdout
    # a property librdkafka refuses is named, its secret value is not
    conf.write_text(conf.read_text().replace("sasl.password", "sasl.passwordx"))
    p = subprocess.run([m2k, "run", "-c", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert "sasl.passwordx" in p.stderr and secret not in p.stdout + p.stderr
