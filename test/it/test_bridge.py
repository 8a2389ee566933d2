"""The bridge end to end: real Mosquitto in, real Kafka out.

Each test runs its own mqtt2kafka daemon with its own spool, MQTT client id
and topic namespace, publishes with m2k-pub or mosquitto_pub, and checks what
users would see: records in Kafka with their keys and headers (m2k-verify for
counts, gaps, duplicates and order), the daemon's exit codes and counters.
"""
import random
import re
import socket
import subprocess
import time

import pytest

from bridge_util import Bridge, kill_all, pub, pub_background, verify


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


@pytest.fixture(params=["direct", "always"])
def mode(request):
    """spool.mode: the no-loss tests run on the direct path (the default)
    and with every message spooled first."""
    return request.param


def mosquitto_pub(stack, topic, payload, props=(), qos=1, retain=False):
    cmd = ["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
           "-V", "5", "-q", str(qos), "-t", topic]
    if isinstance(payload, bytes):
        cmd += ["-s"]
    else:
        cmd += ["-m", payload]
        payload = None
    for k, v in props:
        cmd += ["-D", "publish", "user-property", k, v]
    if retain:
        cmd += ["-r"]
    subprocess.run(cmd, input=payload, check=True, timeout=20)


def wait_delivered(br, n, timeout=90):
    """Waits until the daemon's stats line says n records were delivered."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = br.counters("stats")
        if c.get("delivered", 0) >= n:
            return c
        time.sleep(0.5)
    raise AssertionError(f"only {br.counters('stats').get('delivered')} of "
                         f"{n} delivered in {timeout}s:\n{br.logtext()[-2000:]}")


def test_mapping_topics_keys_headers(stack, uniq, tmp_path):
    br = Bridge(stack, tmp_path, uniq).start()
    t0 = int(time.time() * 1000)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-7", "21.5",
                  props=[("site", "north"), ("fw", "1.2")])
    mosquitto_pub(stack, f"{uniq}/sensors/us/hum/dev-8", "40")
    mosquitto_pub(stack, f"{uniq}/gateways/gw-3/events/boot/cold", "up")

    rec = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert len(rec) == 1, "the eu/temp reading never reached Kafka"
    r = rec[0]
    assert r["key"] == b"dev-7"
    assert r["value"] == b"21.5"
    h = r["headers"]
    assert h["mqtt.topic"] == f"{uniq}/sensors/eu/temp/dev-7".encode()
    assert h["mqtt.qos"] == b"1"
    assert h["mqtt.retain"] == b"0"
    assert h["gateway.id"] == f"gw-{uniq}".encode()
    assert t0 - 5000 <= int(h["received.ms"]) <= int(time.time() * 1000)
    assert re.fullmatch(rb"[0-9a-f]{16}-[0-9]+", h["m2k.id"]), h["m2k.id"]
    assert h["site"] == b"north" and h["fw"] == b"1.2"

    hum = stack.consume(f"it.{uniq}.sensor.us.hum", 1, timeout=30)
    assert [x["key"] for x in hum] == [b"dev-8"]
    ev = stack.consume(f"it.{uniq}.gateway.events", 1, timeout=30)
    assert [(x["key"], x["value"]) for x in ev] == [(b"gw-3", b"up")]
    assert ev[0]["headers"]["mqtt.topic"] == \
        f"{uniq}/gateways/gw-3/events/boot/cold".encode()

    wait_delivered(br, 3)
    time.sleep(2.5)  # the status file is rewritten every 2 s
    rc, out = br.status()
    assert rc == 0, out
    assert "uplink up, mqtt connected" in out
    assert "backlog 0 records" in out and "received 3, delivered 3" in out
    assert br.stop() == 0
    c = br.counters()
    assert c["received"] == 3 and c["delivered"] == 3 and c["backlog"] == 0
    rc, out = br.status()
    assert rc == 3 and "not running" in out, out


def test_mqtt_311_session(stack, uniq, tmp_path):
    """protocol 3.1.1: same mapping, a persistent session kept while the
    bridge is stopped (messages published meanwhile arrive after restart)."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"protocol": "3.1.1"}}).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-1", "one")
    assert [r["value"] for r in stack.consume(
        f"it.{uniq}.sensor.eu.temp", 1)] == [b"one"]
    assert br.stop() == 0
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-1", "while-away")
    br.start()
    assert "session resumed" in br.logtext()
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 2)
    assert [r["value"] for r in got] == [b"one", b"while-away"]
    assert got[1]["key"] == b"dev-1"
    assert br.stop() == 0


def test_acks_only_what_is_durable(stack, uniq, tmp_path, mode):
    """The daemon dies between reading a burst and committing it (fault
    injection point; on the direct path: with the records handed to the
    producer and the PUBACKs held). Had it acknowledged those messages
    before they were durable, the broker would not redeliver them and they
    would be missing."""
    stack.create_topic(f"it.{uniq}.sensor.eu.temp")
    br = Bridge(stack, tmp_path, uniq, extra={"spool": {"mode": mode}})
    br.start(env={"MQTT2KAFKA_FAULT": "crash-before-commit@150"})
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4,
              count=100, acked=acked)
    assert res["acked"] == 400
    br.proc.wait(30)
    assert br.proc.returncode == -9, "the fault point never fired"
    assert "fault injection: crash before commit" in br.logtext()

    br.start()  # no fault: the broker redelivers the uncommitted burst
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked,
                   expect=400)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["order_violations"] == 0
    assert rc == 0
    assert br.stop() == 0


def test_redelivery_of_committed_burst_not_stored_twice(stack, uniq,
                                                       tmp_path, mode):
    """The daemon dies after committing a burst but before its PUBACKs are
    written. The broker redelivers the burst when the session resumes; the
    bridge must recognise it and not spool it again, so Kafka sees each
    message once (a second copy would carry a new m2k.id).

    On the direct path the burst was confirmed by Kafka, not committed:
    nothing on disk remembers it, so its redelivery is sent again under new
    ids — the one case the README's durability section names. Counted
    here: at most one burst."""
    stack.create_topic(f"it.{uniq}.sensor.eu.temp")
    br = Bridge(stack, tmp_path, uniq, extra={"spool": {"mode": mode}})
    br.start(env={"MQTT2KAFKA_FAULT": "crash-after-commit@150"})
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4,
              count=100, acked=acked)
    assert res["acked"] == 400
    br.proc.wait(30)
    assert br.proc.returncode == -9, "the fault point never fired"
    assert "fault injection: crash after commit" in br.logtext()

    br.start()
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked,
                   expect=400)
    assert v["missing"] == 0, v.get("missing_detail")
    assert rc == 0
    assert br.stop() == 0
    c = br.counters()
    if mode == "always":
        assert v["duplicates"] == 0, v
        assert c["redelivered"] > 0, "the broker redelivered nothing?"
    else:
        print(f"direct path, crash after Kafka confirmed a burst: "
              f"{v['dup_new_id']} duplicates with a new m2k.id, "
              f"{c['redelivered']} redeliveries recognised")
        assert v["dup_same_id"] == 0, v
        assert v["dup_new_id"] + c["redelivered"] > 0, (v, c)
        assert v["dup_new_id"] <= 4096, v  # one burst: the receive maximum


def publish_same(stack, topic, n, payload="1"):
    """n identical QoS 1 messages on one topic, like a heartbeat."""
    return pub(stack, topic, devices=1, count=n,
               extra=["-f", f"fixed:{payload}"])


def wait_counter(br, name, n, timeout=60):
    deadline = time.time() + timeout
    while br.counters("stats").get(name, 0) < n:
        assert time.time() < deadline, \
            f"{name} stuck at {br.counters('stats').get(name)}, want {n}"
        time.sleep(0.5)


def test_repeated_payloads_after_resume_are_new_messages(stack, uniq,
                                                          tmp_path, mode):
    """Heartbeats repeat the same payload on the same topic. After a
    resumed session, the redelivery check must not mistake new ones for
    redeliveries of old ones, even when packet ids have wrapped (65,535)."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"mode": mode}}).start()
    topic = f"{uniq}/sensors/eu/heartbeat/dev-1"
    publish_same(stack, topic, 66000)
    wait_counter(br, "received", 66000)
    stack.mqtt_ctl("restart")
    br.wait_log("session resumed", 30)
    publish_same(stack, topic, 1100)
    wait_counter(br, "received", 67100)
    wait_counter(br, "delivered", 67100, timeout=120)
    assert br.stop() == 0
    c = br.counters()
    assert c["spooled"] + c["direct"] == 67100, c
    assert c["redelivered"] == 0, c


def test_uplink_outage_stop_then_blackhole(stack, uniq, tmp_path, mode):
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"mode": mode}}).start()
    acked = tmp_path / "acked.txt"
    topic = f"it.{uniq}.sensor.eu.temp"
    publisher = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}",
                               10, 75, 200, acked)
    try:
        time.sleep(5)
        stack.kafka_ctl("stop")
        time.sleep(30)
        stack.kafka_ctl("start")
        time.sleep(5)
        stack.kafka_ctl("pause")  # black hole: packets vanish, no refusals
        time.sleep(30)
        stack.kafka_ctl("resume")
    finally:
        stack.kafka_ctl("resume")
        out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err
    n = sum(1 for _ in open(acked))
    assert n > 10000, f"publisher got only {n} acknowledgements"
    rc, v = verify(stack, topic, acked=acked, expect=n, idle=30, timeout=180)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["order_violations"] == 0
    assert rc == 0
    c = wait_delivered(br, n)
    assert "uplink down" in br.logtext()
    assert br.stop() == 0
    final = br.counters()
    assert final["backlog"] == 0, final
    assert final["received"] >= n


def test_crash_storm(stack, uniq, tmp_path, mode):
    """SIGKILL the daemon 10 times under QoS 1 load: nothing the broker
    acknowledged to a publisher is missing, each device's readings are in
    order. With every message spooled first, duplicates carry an m2k.id
    already seen. On the direct path a kill usually finds a burst with
    Kafka and its PUBACKs held: the broker resends it and it gets new ids,
    counted here (at most one burst per kill)."""
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"mode": mode}}).start()
    acked = tmp_path / "acked.txt"
    publisher = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}",
                               20, 30, 1000, acked)
    rnd = random.Random(uniq)
    kills = 0
    try:
        while kills < 10:
            time.sleep(rnd.uniform(0.5, 2.5))
            br.kill()
            kills += 1
            br.start(wait_connected=False)
    finally:
        out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err
    n = sum(1 for _ in open(acked))
    rc, v = verify(stack, topic, acked=acked, expect=n, timeout=180)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["order_violations"] == 0
    print(f"crash storm ({mode}): {n} acknowledged, {v['dup_same_id']} "
          f"duplicates with a known m2k.id, {v['dup_new_id']} with a new one")
    if mode == "always":
        assert v["dup_new_id"] == 0, v
    else:
        assert v["dup_new_id"] <= kills * 4096, v
    assert br.stop() == 0
    if mode == "direct":
        assert "straight to Kafka" in br.all_logs()


def test_mosquitto_restart_mid_stream(stack, uniq, tmp_path, mode):
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"mode": mode}}).start()
    acked = tmp_path / "acked.txt"
    publisher = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}",
                               5, 8, 300, acked)
    time.sleep(3)
    stack.mqtt_ctl("restart")
    publisher.communicate(timeout=60)  # it may fail: only acked ones count
    br.wait_log("session resumed", 30)
    # and the subscriptions were renewed: new messages flow again
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=1,
              count=50, acked=tmp_path / "after.txt",
              extra=["--id-prefix", "late-"])
    assert res["acked"] == 50
    with open(acked, "a") as f:
        f.write(open(tmp_path / "after.txt").read())
    n = sum(1 for _ in open(acked))
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=n)
    assert v["missing"] == 0, v.get("missing_detail")
    assert rc == 0
    assert br.stop() == 0


def test_spool_full_drop_oldest_counts(stack, uniq, tmp_path, mode):
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"max_bytes": "2MiB", "mode": mode,
                                 "on_full": "drop_oldest"}})
    stack.kafka_ctl("stop")
    try:
        br.start()
        res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2,
                  count=5000, size=400)
        assert res["acked"] == 10000
        deadline = time.time() + 30
        while br.counters("stats").get("received", 0) < 10000:
            assert time.time() < deadline, br.logtext()[-2000:]
            time.sleep(0.5)
    finally:
        stack.kafka_ctl("start")
    c = br.counters("stats")
    time.sleep(3)
    assert br.stop() == 0
    final = br.counters()
    dropped = final["dropped_full"]
    assert dropped > 0, "a 2 MiB spool cannot hold 4 MB: something was dropped"
    # every received message is delivered or counted as dropped
    assert final["delivered"] + dropped + final["backlog"] == \
        final["received"], final
    br.start()
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp",
                   expect=10000 - dropped, idle=8)
    assert v["records"] == 10000 - dropped
    # the newest survived: drop_oldest keeps the last sequence numbers
    assert all(d["seqs"][-1] < 5000 for d in v["missing_detail"]), v
    assert br.stop() == 0


def test_spool_full_backpressure_loses_nothing(stack, uniq, tmp_path, mode):
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"max_bytes": "2MiB", "mode": mode,
                                 "on_full": "backpressure"}})
    acked = tmp_path / "acked.txt"
    stack.kafka_ctl("stop")
    try:
        br.start()
        res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2,
                  count=5000, size=400, acked=acked)
        assert res["acked"] == 10000
        br.wait_log("backpressure", 30)
    finally:
        stack.kafka_ctl("start")
    rc, v = verify(stack, f"it.{uniq}.sensor.eu.temp", acked=acked,
                   expect=10000, idle=30, timeout=180)
    assert v["missing"] == 0, v.get("missing_detail")
    assert rc == 0
    assert "reading MQTT" in br.logtext()
    assert br.stop() == 0
    assert br.counters()["dropped_full"] == 0


def raw_publish_invalid_utf8(stack):
    """A PUBLISH whose topic is not UTF-8: the broker must refuse it."""
    s = socket.create_connection((stack.mqtt_host, stack.mqtt_port), 5)
    cid = b"m2k-badutf8"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(var)]) + var)
    s.recv(4)  # CONNACK
    topic = b"bad/\xff\xfe/topic"
    body = len(topic).to_bytes(2, "big") + topic + b"x"
    s.sendall(bytes([0x30, len(body)]) + body)
    time.sleep(0.3)
    s.close()


def test_bad_input_dead_lettered_and_counted(stack, uniq, tmp_path):
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"max_payload": "1KiB"}}).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu west/temp/dev-1", "x")
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-2", b"y" * 5000)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-3", "")
    raw_publish_invalid_utf8(stack)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-4", "good")

    good = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in good] == [b"good"], "good data held up"
    dl = stack.consume(f"it.{uniq}.dead-letter", 3, timeout=30)
    by_topic = {d["headers"]["mqtt.topic"].decode(): d for d in dl}
    bad_name = by_topic[f"{uniq}/sensors/eu west/temp/dev-1"]
    assert b"illegal" in bad_name["headers"]["error.reason"] or \
        b"Kafka topic" in bad_name["headers"]["error.reason"]
    assert bad_name["value"] == b"x"
    big = by_topic[f"{uniq}/sensors/eu/temp/dev-2"]
    assert b"max_payload" in big["headers"]["error.reason"]
    # the first max_payload bytes, and the size it had
    assert big["value"] == b"y" * 1024
    assert big["headers"]["error.original.size"] == b"5000"
    empty = by_topic[f"{uniq}/sensors/eu/temp/dev-3"]
    assert b"empty" in empty["headers"]["error.reason"]

    assert br.proc.poll() is None, "the daemon must keep running"
    wait_delivered(br, 4)
    assert br.stop() == 0
    c = br.counters()
    assert c["dead_lettered"] == 3 and c["bad_topic"] == 1
    assert c["oversized"] == 1 and c["empty"] == 1


def test_kafka_refused_record_kept_visible_replayable(stack, uniq, tmp_path):
    """A record Kafka will never take (larger than the producer's and the
    broker's limit) stays in the spool's dead-letter table with the reason,
    and does not hold up the messages behind it."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"max_payload": "4MiB"},
                       "kafka": {"chunk_bytes": "off"},  # one record, not chunks
                       "spool": {"max_bytes": "1GiB"}}).start()
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-big", b"z" * 1500000)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-ok", "after")
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in got] == [b"after"]
    wait_delivered(br, 1)
    assert br.stop() == 0
    assert br.counters()["kafka_refused"] == 1

    spool = [br.bin, "spool", "-c", str(br.conf)]
    r = subprocess.run(spool + ["dead", "list"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"{uniq}.sensor.eu.temp" in r.stdout
    assert "too large" in r.stdout.lower(), r.stdout
    r = subprocess.run(spool + ["dead", "replay"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "replayed 1" in r.stdout, r.stdout + r.stderr
    # replayed: sent again on the next start, refused again, still kept
    br.start()
    br.wait_log("kafka refused record", 30)
    assert br.stop() == 0
    assert br.counters()["kafka_refused"] == 1
    assert br.counters()["dead_in_spool"] == 1


def test_oversized_message_cannot_stall_input(stack, uniq, tmp_path):
    """A payload larger than one spool transaction may hold (a 2 MiB spool)
    once made the bridge drop the connection, get it redelivered, and drop
    it again, forever: nothing behind it got through. It must be
    dead-lettered (cut to what fits) and the next message delivered."""
    br = Bridge(stack, tmp_path, uniq,
                extra={"spool": {"max_bytes": "2MiB"},
                       "kafka": {"chunk_bytes": "off"}}).start()
    assert "using 8192" in br.logtext()  # max_payload capped to one put
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-huge", b"h" * 300000)
    mosquitto_pub(stack, f"{uniq}/sensors/eu/temp/dev-next", "next")
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in got] == [b"next"]
    dl = stack.consume(f"it.{uniq}.dead-letter", 1, timeout=30)
    assert dl[0]["headers"]["error.original.size"] == b"300000"
    assert len(dl[0]["value"]) == 8192
    assert br.stop() == 0
    assert br.counters()["oversized"] == 1
