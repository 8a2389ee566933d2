"""The direct path (spool.mode: direct, the default) end to end.

While Kafka keeps up and nothing waits in the spool, a message goes straight
to Kafka and its PUBACK follows Kafka's confirmation: nothing is written to
the spool. What Kafka has not confirmed within spool.direct_wait is spilled
into the spool and acknowledged then. These tests check what users see:
records in Kafka (m2k-verify: nothing missing, per-device order, duplicates
by kind), the counters (direct, spooled, spilled), the log, and that the
broker's queue for us never overflows because we hold acknowledgements —
with Mosquitto configured as Debian ships it.
"""
import os
import pwd
import socket
import subprocess
import time

import pytest

from bridge_util import Bridge, kill_all, pub, pub_background, verify


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


def wait_for(what, pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout}s")


def warm(stack, br, uniq, topic):
    """One reading first: a new producer's first record waits for its
    producer id, its connections and the topic's metadata, which can take
    longer than spool.direct_wait (the record is then spilled: counted)."""
    pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=1, count=1,
        extra=["--id-prefix", "warm"])
    stack.consume(topic, 1)
    wait_for("the warm-up reading delivered, the spool empty",
             lambda: (lambda c: c.get("backlog") == 0 and
                      c.get("delivered") == 1)(br.counters("stats")), 20)
    time.sleep(1.5)  # a spill turns the direct path off for a second
    return br.counters("stats")


def test_direct_path_writes_no_record_and_acks_after_kafka(stack, uniq, tmp_path):
    """At a gateway's rate with Kafka healthy, every record goes straight
    to Kafka: none is spooled, all are confirmed, each with a unique
    m2k.id; the forced-spool mode spools every one."""
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    br = Bridge(stack, tmp_path / "d", uniq).start()
    w = warm(stack, br, uniq, topic)
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=10,
              count=100, rate=200, acked=tmp_path / "acked.txt")
    assert res["acked"] == 1000
    rc, v = verify(stack, topic, acked=tmp_path / "acked.txt", expect=1000)
    assert rc == 0 and v["missing"] == 0 and v["duplicates"] == 0, v
    assert br.stop() == 0
    c = br.counters()
    assert c["direct"] - w["direct"] == 1000, (w, c)
    assert c["spooled"] == w["spooled"] and c["spilled"] == w["spilled"], c
    assert c["received"] == 1001 and c["delivered"] == 1001, c
    assert c["path"] == "direct", c
    ids = {r["headers"]["m2k.id"] for r in stack.consume(topic, 1001)}
    assert len(ids) == 1001

    forced = Bridge(stack, tmp_path / "a", uniq + "a",
                    extra={"spool": {"mode": "always"}}).start()
    pub(stack, f"{uniq}a/sensors/eu/temp/{{device}}", devices=2, count=50)
    rc, v = verify(stack, f"it.{uniq}a.sensor.eu.temp", expect=100)
    assert rc == 0, v
    assert forced.stop() == 0
    c = forced.counters()
    assert c["spooled"] == 100 and c["direct"] == 0, c
    assert c["path"] == "spool", c


def test_kafka_slow_crosses_to_the_spool_and_back(stack, uniq, tmp_path):
    """Kafka stalls (paused) again and again under load: unconfirmed
    messages cross into the spool, the spool drains, the direct path comes
    back. Nothing the broker acknowledged is missing, each device's
    readings stay in order, and duplicates (if any) carry a known m2k.id."""
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    br = Bridge(stack, tmp_path, uniq).start()
    acked = tmp_path / "acked.txt"
    publisher = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}",
                               20, 36, 300, acked)
    try:
        for _ in range(3):
            time.sleep(6)
            stack.kafka_ctl("pause")
            time.sleep(2)
            stack.kafka_ctl("resume")
    finally:
        stack.kafka_ctl("resume")
        out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err
    n = sum(1 for _ in open(acked))
    rc, v = verify(stack, topic, acked=acked, expect=n, idle=10, timeout=180)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["order_violations"] == 0, v
    assert v["dup_new_id"] == 0, v
    assert rc == 0
    wait_for("all delivered",
             lambda: br.counters("stats").get("delivered", 0) >= n, 60)
    assert br.stop() == 0
    c = br.counters()
    log = br.logtext()
    print(f"slow kafka: {n} acknowledged; direct {c['direct']}, spilled "
          f"{c['spilled']}, spooled {c['spooled']}; duplicates "
          f"{v['dup_same_id']} with the same m2k.id")
    assert c["spilled"] > 0 and c["direct"] > 0, c
    assert c["direct"] + c["spooled"] == c["received"], c
    assert log.count("not confirmed within") >= 2, log[-3000:]
    assert log.count("straight to Kafka") >= 3, log[-3000:]
    assert c["backlog"] == 0


def test_sigterm_with_a_direct_burst_waiting(stack, uniq, tmp_path):
    """SIGTERM while Kafka sits on a direct burst: the burst is spilled,
    its PUBACKs go out before the DISCONNECT, the daemon exits 0 within its
    time, and the next start delivers it."""
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    br = Bridge(stack, tmp_path, uniq).start()
    pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=1, count=1)
    stack.consume(topic, 1)
    acked = tmp_path / "acked.txt"
    stack.kafka_ctl("pause")
    try:
        res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2,
                  count=50, acked=acked, extra=["--start-seq", "2"])
        assert res["acked"] == 100
        t0 = time.monotonic()
        assert br.stop() == 0
        assert time.monotonic() - t0 < 8
    finally:
        stack.kafka_ctl("resume")
    c = br.counters()
    # (what it had not read when SIGTERM came waits in its broker session)
    assert c["received"] >= 2 and c["spilled"] >= 1, c
    br.start()
    rc, v = verify(stack, topic, acked=acked, expect=100)
    assert v["missing"] == 0 and rc == 0, v
    assert br.stop() == 0


# --- Mosquitto as Debian ships it ----------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stock_mosquitto(tmp_path):
    """A private Mosquitto with Debian's packaged settings: persistence on,
    autosave every 30 minutes, max_queued_messages 1000, max_inflight 20
    (the defaults Debian's mosquitto.conf leaves in place)."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    port = free_port()
    conf = d / "mosquitto.conf"
    # (Debian's package runs it as user mosquitto; here: as whoever runs
    # the tests, who owns the folder)
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
                    f"persistence true\npersistence_location {d}/\n"
                    f"log_dest file {d}/mosquitto.log\n")
    p = subprocess.Popen(["mosquitto", "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            assert time.time() < deadline, "mosquitto did not start"
            time.sleep(0.1)

    class M:
        host, log = "127.0.0.1", d / "mosquitto.log"
    M.port = port
    yield M
    p.terminate()
    p.wait(10)


def test_stock_mosquitto_kafka_outage_loses_nothing(stack, uniq, tmp_path,
                                                    stock_mosquitto):
    """A 60 s Kafka outage at 100 msg/s behind a Mosquitto with Debian's
    limits (1,000 queued, 20 in flight): a bridge that held the PUBACKs
    until Kafka came back would let the broker's queue overflow. Ours
    spills after spool.direct_wait and keeps the broker's queue empty —
    for an MQTT 5 and an MQTT 3.1.1 session at once."""
    class S:  # the stack, with the stock broker in front
        pass
    s = S()
    s.__dict__.update(stack.__dict__)
    s.mqtt_host, s.mqtt_port = stock_mosquitto.host, stock_mosquitto.port
    s.mqtt = f"{s.mqtt_host}:{s.mqtt_port}"
    s.build = stack.build
    bridges, pubs = [], []
    for proto in ("5", "3.1.1"):
        u = f"{uniq}{proto[0]}"
        stack.create_topic(f"it.{u}.sensor.eu.temp")
        b = Bridge(s, tmp_path / proto, u,
                   extra={"mqtt": {"protocol": proto}}).start()
        bridges.append((u, b))
    for u, _ in bridges:
        pubs.append(pub_background(s, f"{u}/sensors/eu/temp/{{device}}",
                                   5, 80, 100, tmp_path / f"{u}.acked"))
    try:
        time.sleep(8)
        stack.kafka_ctl("stop")
        time.sleep(60)
        stack.kafka_ctl("start")
    finally:
        stack.kafka_ctl("start")
        done = [p.communicate(timeout=120) for p in pubs]
    for (u, b), p, (out, err) in zip(bridges, pubs, done):
        assert p.returncode == 0, err
        acked = tmp_path / f"{u}.acked"
        n = sum(1 for _ in open(acked))
        assert n >= 7500, f"only {n} acknowledged to the publisher"
        rc, v = verify(stack, f"it.{u}.sensor.eu.temp", acked=acked,
                       expect=n, idle=15, timeout=240)
        assert v["missing"] == 0, v.get("missing_detail")
        assert v["order_violations"] == 0, v
        assert rc == 0
        assert b.stop() == 0
        c = b.counters()
        print(f"stock mosquitto, {u}: {n} of {n} in Kafka; direct "
              f"{c['direct']}, spilled {c['spilled']}, spooled {c['spooled']}")
        assert c["broker_dropped"] == 0, c
        assert c["spilled"] > 0 and c["direct"] > 0, c
    log = stock_mosquitto.log.read_text(errors="replace")
    assert "Outgoing messages are being dropped" not in log, log[-2000:]
