"""The test tools against the real brokers: m2k-pub and m2k-verify.

Every benchmark and bridge test trusts these two programs, so here they are
checked against independent witnesses: mosquitto_sub for what m2k-pub puts
on MQTT, records written by kcat (stack.produce) for what m2k-verify reads.
"""
import json
import socket
import subprocess
import threading
import time

import pytest


def _tool(stack, name):
    path = stack.build / "tools" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make build/tools/{name}`")
    return str(path)


def _run(cmd, timeout=60):
    """Runs a tool; returns (exit code, its JSON line or None, stderr)."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    out = json.loads(lines[-1]) if lines else None
    return p.returncode, out, p.stderr, time.monotonic() - t0


def _acked(path):
    pairs = [tuple(ln.split()) for ln in path.read_text().splitlines()]
    return [(d, int(s)) for d, s in pairs]


def _verify(stack, topic, *args, timeout=60):
    return _run([_tool(stack, "m2k-verify"), "-b", stack.kafka, "-t", topic,
                 "--idle", "5", "--timeout", "40", *args], timeout=timeout)


# --- m2k-pub over MQTT -----------------------------------------------------------
def test_pub_qos1_every_message_acked_and_received_in_order(stack, uniq, tmp_path):
    root = f"m2ktools/{uniq}"
    devices, per = 5, 200
    total = devices * per
    sub = subprocess.Popen(  # line-buffered, so SUBACK shows as it happens
        ["stdbuf", "-oL", "mosquitto_sub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port), "-q", "1",
         "-t", f"{root}/#", "-C", str(total), "-W", "40", "-d", "-F", "M2K %t %p"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, subscribed = [], threading.Event()

    def reader():
        for ln in sub.stdout:
            if "SUBACK" in ln:
                subscribed.set()
            lines.append(ln.rstrip("\n"))
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert subscribed.wait(10), "mosquitto_sub did not subscribe:\n" + "\n".join(lines)

    acked = tmp_path / "acked.txt"
    rc, out, err, _ = _run([_tool(stack, "m2k-pub"), "-H", stack.mqtt_host,
                            "-p", str(stack.mqtt_port), "-d", str(devices), "-n", str(per),
                            "-q", "1", "-f", "text", "-s", "80", "-T", root + "/{device}",
                            "--acked", str(acked)])
    assert rc == 0, err
    assert (out["sent"], out["acked"], out["failed"]) == (total, total, 0), out
    pairs = _acked(acked)
    assert len(pairs) == total and len(set(pairs)) == total
    assert set(pairs) == {(f"dev-{d:05d}", s) for d in range(1, devices + 1)
                          for s in range(1, per + 1)}

    sub.wait(timeout=45)
    t.join(5)
    got = {}
    for ln in lines:
        if not ln.startswith("M2K "):
            continue
        _, topic, payload = ln.split(" ", 2)
        fields = dict(kv.split("=", 1) for kv in payload.split(";") if "=" in kv)
        assert topic == f"{root}/{fields['device']}"
        assert len(payload) == 80
        got.setdefault(fields["device"], []).append(int(fields["seq"]))
    assert sum(len(v) for v in got.values()) == total, "mosquitto_sub missed messages"
    for dev, seqs in got.items():
        assert seqs == list(range(1, per + 1)), f"{dev} arrived out of order or incomplete"


def test_pub_unreachable_broker_exits_1(stack):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err, secs = _run([_tool(stack, "m2k-pub"), "-p", str(port), "-d", "1",
                               "-n", "1", "--wait", "1"], timeout=20)
    assert rc == 1
    assert out["acked"] == 0
    assert "Connection refused" in err
    assert secs < 10


def test_pub_usage_error_exits_2(stack):
    rc, out, err, _ = _run([_tool(stack, "m2k-pub"), "-q", "3"])
    assert rc == 2 and out is None
    assert "usage:" in err


# --- m2k-pub --kafka + m2k-verify --------------------------------------------------
@pytest.mark.parametrize("fmt,readings", [("proto", 1), ("batch", 10), ("text", 1)])
def test_kafka_produce_then_verify_finds_every_record(stack, uniq, tmp_path, fmt, readings):
    topic = f"m2ktools-{uniq}"
    stack.create_topic(topic, 2)
    acked = tmp_path / "acked.txt"
    devices, per = 4, 100
    rc, out, err, _ = _run([_tool(stack, "m2k-pub"), "--kafka", stack.kafka,
                            "--kafka-topic", topic, "-d", str(devices), "-n", str(per),
                            "-f", fmt, "-s", "150", "--acked", str(acked)])
    assert rc == 0, err
    assert out["acked"] == devices * per and out["readings_acked"] == devices * per * readings
    assert len(_acked(acked)) == devices * per * readings

    rc, v, err, _ = _verify(stack, topic, "--acked", str(acked),
                            "-e", str(devices * per * readings))
    assert rc == 0, (v, err)
    assert v["records"] == devices * per
    assert v["readings"] == devices * per * readings
    assert v["devices"] == devices
    assert (v["missing"], v["duplicates"], v["order_violations"], v["undecodable"]) == (0, 0, 0, 0)
    assert v["missing_detail"] == []
    assert v["latency_ms"]["count"] == devices * per * readings


def test_verify_reports_the_skipped_seq(stack, uniq, tmp_path):
    topic = f"m2ktools-{uniq}"
    stack.create_topic(topic)
    acked = tmp_path / "acked.txt"
    rc, out, err, _ = _run([_tool(stack, "m2k-pub"), "--kafka", stack.kafka,
                            "--kafka-topic", topic, "-d", "3", "-n", "20",
                            "--skip-seq", "7", "--acked", str(acked)])
    assert rc == 0, err
    assert out["acked"] == 59
    assert ("dev-00001", 7) not in _acked(acked)

    # Without --acked the gap in 1..max is what is missing.
    rc, v, err, _ = _verify(stack, topic, "-e", "59")
    assert rc == 1, (v, err)
    assert v["records"] == 59 and v["missing"] == 1
    assert v["missing_detail"] == [{"device": "dev-00001", "missing": 1, "seqs": [7]}]

    # With --acked only what the broker acknowledged counts: seq 7 never was.
    rc, v, err, _ = _verify(stack, topic, "-e", "59", "--acked", str(acked))
    assert rc == 0, (v, err)
    assert v["missing"] == 0


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb(num, value):
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def test_verify_counts_duplicates_order_and_undecodable(stack, uniq):
    topic = f"m2ktools-{uniq}"
    stack.create_topic(topic)
    ts = int(time.time() * 1000)
    text = lambda dev, seq: f"device={dev};seq={seq};ts={ts};"
    stack.produce(topic, [text("d1", 1)], key="d1", headers={"m2k.id": "a"})
    stack.produce(topic, [text("d1", 1)], key="d1", headers={"m2k.id": "a"})  # same id
    stack.produce(topic, [text("d1", 1)], key="d1", headers={"m2k.id": "b"})  # new id
    stack.produce(topic, [text("d1", 3), text("d1", 2)], key="d1")  # 2 after 3
    stack.produce(topic, ['{"deviceId":"d2","seq":"1","timestampMs":"%d"}' % ts,
                          '{"deviceId": "d2", "seq": 2, "metric": "t"}'], key="d2")
    reading = _pb(1, b"d3") + _pb(2, ts) + _pb(3, b"temperature") + _pb(6, 1)
    envelope = (_pb(1, b"d3") + _pb(3, ts) + _pb(6, b"iot.telemetry.v1.SensorReading")
                + _pb(7, reading))
    stack.produce(topic, [envelope, b"certainly not a reading"], key="d3")

    rc, v, err, _ = _verify(stack, topic, "-e", "9")
    assert rc == 1, (v, err)  # the order violation
    assert (v["records"], v["readings"], v["devices"]) == (9, 8, 3), v
    assert v["undecodable"] == 1
    assert v["duplicates"] == 2
    assert (v["dup_same_id"], v["dup_new_id"]) == (1, 1)
    assert v["order_violations"] == 1
    assert v["missing"] == 0


# --- m2k-verify without a broker ---------------------------------------------------
def test_verify_exits_2_when_kafka_is_not_there(stack):
    # Refused (a stopped broker) and black-holed (a hung one: the port
    # accepts, nothing answers). Both on ports of our own, so the shared
    # broker keeps serving the other tests.
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        refused = dead.getsockname()[1]
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    try:
        for port in (refused, hole.getsockname()[1]):
            rc, v, err, secs = _run([_tool(stack, "m2k-verify"), "-b", f"127.0.0.1:{port}",
                                     "-t", "whatever", "--timeout", "4"], timeout=30)
            assert rc == 2, err
            assert v is None
            assert "cannot reach Kafka" in err
            assert secs < 10, f"took {secs:.1f}s past --timeout 4"
    finally:
        hole.close()
