"""Protobuf payloads end to end: devices publish real SensorReading and
ReadingBatch messages to the real Mosquitto, the bridge decodes them, and
what lands in Kafka is checked the way consumers see it: m2k-verify decodes
every record (raw protobuf, Envelope, JSON) and counts readings per device;
keys, content-type headers and dead letters are read with kcat.
"""
import json
import subprocess
import time

from bridge_util import Bridge, pub, verify

READING = "iot.telemetry.v1.SensorReading"
BATCH = "iot.telemetry.v1.ReadingBatch"


def proto_bridge(stack, tmp, uniq, routes):
    """A Bridge whose routes carry payload/format/split keys."""
    br = Bridge(stack, tmp, uniq, routes=[("unused", "unused", None)])
    head = br.conf.read_text().split("routes:\n")[0]
    lines = [head + "routes:"]
    for r in routes:
        items = list(r.items())
        lines.append(f"  - {items[0][0]}: {json.dumps(items[0][1])}")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in items[1:]]
    br.conf.write_text("\n".join(lines) + "\n")
    return br


def encode(type_name, text):
    """A message from protobuf text format, through protoc-c --encode."""
    r = subprocess.run(["protoc-c", "--proto_path=proto", f"--encode={type_name}",
                        "telemetry.proto"], input=text.encode(), capture_output=True,
                       check=True, timeout=20)
    return r.stdout


def mqtt_pub(stack, topic, payload):
    subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
                    "-V", "5", "-q", "1", "-t", topic, "-s"], input=payload,
                   check=True, timeout=20)


def wait_counter(br, name, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if br.counters("stats").get(name, 0) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} never reached {n}: {br.counters('stats')}\n"
                         f"{br.logtext()[-2000:]}")


def test_formats_keys_and_split(stack, uniq, tmp_path):
    t = f"it.{uniq}"
    br = proto_bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/raw/{{device}}", "topic": f"{t}.raw",
         "payload": READING, "key": "{payload.device_id}", "format": "raw"},
        {"match": f"{uniq}/env/{{device}}", "topic": f"{t}.env",
         "payload": READING, "key": "{payload.device_id}", "format": "envelope"},
        {"match": f"{uniq}/json/{{device}}", "topic": f"{t}.json.{{payload.metric}}",
         "payload": READING, "key": "{payload.device_id}", "format": "json"},
        {"match": f"{uniq}/batch/{{device}}", "topic": f"{t}.batch",
         "payload": BATCH, "split": "readings", "key": "{payload.device_id}",
         "format": "json"},
    ]).start()
    devices, per = 4, 50
    for fmt in ("raw", "env", "json"):
        s = pub(stack, f"{uniq}/{fmt}/{{device}}", devices=devices, count=per, size=100)
        assert s["acked"] == devices * per, s
    # batches of 10 readings: one MQTT message, ten Kafka records
    s = pub(stack, f"{uniq}/batch/{{device}}", devices=devices, count=per, size=100,
            extra=["-f", "batch"])

    want = devices * per
    for topic in (f"{t}.raw", f"{t}.env", f"{t}.json.temperature"):
        rc, v = verify(stack, topic, expect=want, timeout=90)
        assert rc == 0 and v["readings"] == want and v["undecodable"] == 0, (topic, v)
        assert v["records"] == want and v["devices"] == devices, (topic, v)
    rc, v = verify(stack, f"{t}.batch", expect=s["readings_acked"], timeout=90)
    assert rc == 0 and v["undecodable"] == 0, v
    assert v["records"] == v["readings"] == s["readings_acked"] > s["acked"], (v, s)

    # keys from the payload's device_id; content-type names format and type
    raw = stack.consume(f"{t}.raw", 1)[0]
    assert raw["key"].startswith(b"dev") and \
        raw["headers"]["content-type"] == f"application/x-protobuf; messageType={READING}".encode()
    env = stack.consume(f"{t}.env", 1)[0]
    assert env["headers"]["content-type"] == (
        "application/x-protobuf; messageType=iot.bridge.v1.Envelope; "
        f"payloadType={READING}").encode()
    js = stack.consume(f"{t}.json.temperature", 1)[0]
    assert js["headers"]["content-type"] == f"application/json; messageType={READING}".encode()
    body = json.loads(js["value"])
    assert body["deviceId"].encode() == js["key"] and body["metric"] == "temperature"
    assert isinstance(body["seq"], str) and isinstance(body["timestampMs"], str)
    for rec in stack.consume(f"{t}.batch", 10):
        assert json.loads(rec["value"])["deviceId"].encode() == rec["key"]
    assert br.stop() == 0
    c = br.counters()
    assert c["dead_lettered"] == 0 and c["bad_payload"] == 0, c


def test_bad_payloads_dead_letter(stack, uniq, tmp_path):
    t = f"it.{uniq}"
    br = proto_bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/r/{{device}}", "topic": f"{t}.r",
         "payload": READING, "key": "{payload.device_id}", "format": "json",
         "max_payload": "1KiB"},
        {"match": f"{uniq}/b/{{device}}", "topic": f"{t}.b",
         "payload": BATCH, "split": "readings", "key": "{payload.device_id}"},
    ]).start()
    good = encode(READING, 'device_id: "dev-1" seq: 1 metric: "m"')
    nodev = encode(READING, 'seq: 2 metric: "m"')
    badutf = encode(READING, 'device_id: "\\303\\050" seq: 3')
    # a batch whose second reading has no device_id and the batch none either
    halfbad = encode(BATCH, 'readings { device_id: "d" seq: 1 } readings { seq: 2 }')
    empty = encode(BATCH, 'device_id: "d"')
    sent = [("r/a", b"\xff\xff\xff not protobuf", "is not a valid " + READING),
            ("r/a", nodev, "payload field device_id is not set"),
            ("r/a", badutf, "not valid UTF-8"),
            ("r/a", good + b"x" * 2000, "max_payload"),
            ("b/a", halfbad, "payload field device_id is not set"),
            ("b/a", empty, "readings field has 0 elements"),
            ("r/a", good, None)]
    for topic, payload, _ in sent:
        mqtt_pub(stack, f"{uniq}/{topic}", payload)

    ok = stack.consume(f"{t}.r", 1)
    assert [r["key"] for r in ok] == [b"dev-1"]
    dead = stack.consume(f"{t}.dead-letter", 6, timeout=60)
    assert len(dead) == 6, dead
    for rec, (topic, payload, why) in zip(dead, [x for x in sent if x[2]]):
        assert rec["headers"]["mqtt.topic"] == f"{uniq}/{topic}".encode()
        assert why in rec["headers"]["error.reason"].decode(), (why, rec["headers"])
        if why == "max_payload":  # cut to the limit, the size in a header
            assert rec["value"] == payload[:1024], len(rec["value"])
            assert rec["headers"]["error.original.size"] == str(len(payload)).encode()
        else:
            assert rec["value"] == payload  # the original bytes
    wait_counter(br, "dead_lettered", 6)
    assert br.stop() == 0
    c = br.counters()
    assert c["bad_payload"] == 3 and c["missing_field"] == 2 and c["oversized"] == 1, c
    # 6 dead letters and the good reading: nothing of the half-bad batch
    assert c["dead_lettered"] == 6 and c["delivered"] == 7, c


def test_route_payload_file(stack, uniq, tmp_path):
    br = proto_bridge(stack, tmp_path, uniq, [
        {"match": "s/{device}", "topic": "t.{payload.metric}", "payload": READING,
         "key": "{payload.device_id}", "format": "json"},
        {"match": "b/{device}", "topic": "batches", "payload": BATCH,
         "split": "readings", "key": "{payload.device_id}", "format": "envelope"},
    ])
    f = tmp_path / "p.bin"
    f.write_bytes(encode(READING, 'device_id: "dev-7" seq: 3 value: 21.5 metric: "temp"'))

    def route(*args):
        r = subprocess.run([br.bin, "route", "-c", str(br.conf), *args],
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stdout + r.stderr

    rc, out = route("--payload-file", str(f), "s/x")
    assert rc == 0, out
    assert "topic    t.temp" in out and "key      dev-7" in out, out
    assert '{"deviceId":"dev-7","metric":"temp","value":21.5,"seq":"3"}' in out, out
    # a SensorReading read as a ReadingBatch: the wire format allows it
    # (same field 1), but there are no readings to split
    rc, out = route("--payload-file", str(f), "b/x")
    assert rc == 1 and "dead-letter" in out and "readings field has 0 elements" in out, out
    f.write_bytes(encode(BATCH, 'device_id: "b" readings { seq: 1 } readings { seq: 2 }'))
    rc, out = route("--payload-file", str(f), "b/x")
    assert rc == 0 and out.count("topic    batches") == 2, out
    assert "payloadType=" + READING in out, out
    rc, out = route("--payload-file", str(tmp_path / "missing.bin"), "s/x")
    assert rc == 1 and "missing.bin" in out, out
