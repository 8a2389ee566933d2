"""Large messages (the fat lane): kafka.chunk_bytes.

A payload above kafka.chunk_bytes is stored once in the spool and produced
as ordered chunk records on one partition, each with m2k.id, m2k.chunk,
m2k.chunks, m2k.size and m2k.sha256; `mqtt2kafka reassemble` puts them
together again. What users see, against a real Mosquitto and a real Kafka:

- three 20 MB payloads (mqtt.max_payload raised to 32 MiB) come back byte
  for byte, while small messages on another route keep reaching Kafka
  during the drain (their publish -> append latency is printed, with the
  daemon's peak RSS);
- a set with a chunk missing, one with a corrupt chunk, and one sent twice
  in reverse order: the tool names the missing id and index, the checksum
  mismatch, and skips the repeats (exit 1, 1, 0);
- a SIGKILL while a large message is half written to the spool, and one
  while it is half produced: nothing is lost, the repeats carry the same
  m2k.id and m2k.chunk;
- a chunk Kafka refuses for good: the whole message in the spool's dead
  letters with the reason, counted.
"""
import collections
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge_util import Bridge, kill_all, pub_background, verify

MB20 = 20_000_000


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


def make_topic(stack, name, *configs):
    cmd = [sys.executable, str(stack.repo / "test/stack/kafka_topic.py"),
           stack.kafka, name, "1", "1"]
    for c in configs:
        cmd += ["--config", c]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def publish_file(stack, topic, path):
    """One QoS 1 MQTT 5 publish of a file's bytes (mosquitto_pub -f)."""
    subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p",
                    str(stack.mqtt_port), "-V", "mqttv5", "-q", "1", "-t",
                    topic, "-f", str(path)],
                   check=True, capture_output=True, timeout=120)


def payload_file(tmp_path, name, size, seed):
    data = hashlib.shake_256(seed.encode()).digest(size)
    p = tmp_path / name
    p.write_bytes(data)
    return p, data


def config(uniq, topic, **kafka):
    routes = [(f"{uniq}/cam/{{cam}}", topic, "{cam}"),
              (f"{uniq}/sensors/{{region}}/{{type}}/{{device}}",
               f"it.{uniq}.sensor.{{region}}.{{type}}", "{device}")]
    extra = {"mqtt": {"max_payload": "32MiB"},
             "kafka": dict({"chunk_bytes": "512KiB"}, **kafka),
             "spool": {"max_bytes": "512MiB"}}
    return routes, extra


def reassemble(br, stack, topic, out, *args):
    r = subprocess.run([br.bin, "reassemble", "--brokers", stack.kafka,
                        "--timeout", "60", *args, topic, str(out)],
                       capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def wait_large_delivered(br, n, timeout=120):
    deadline = time.time() + timeout
    while br.all_logs().count(" delivered: ") < n:
        assert time.time() < deadline, br.all_logs()[-3000:]
        time.sleep(0.2)


def status_kb(pid, field):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(field + r":\s+(\d+)", text).group(1))


def chunk_records(stack, topic):
    """(m2k.id, m2k.chunk, append ms) of the topic's chunk records, all of
    them (read to its end)."""
    r = subprocess.run(["kcat", "-C", "-b", stack.kafka, "-t", topic, "-o",
                        "beginning", "-e", "-q", "-f", "%T %h\\n"],
                       capture_output=True, text=True, timeout=120, check=True)
    out = []
    for line in r.stdout.splitlines():
        ts, _, hdrs = line.partition(" ")
        h = dict(kv.split("=", 1) for kv in hdrs.split(",") if "=" in kv)
        out.append((h["m2k.id"], int(h["m2k.chunk"]), int(ts)))
    return out


def append_times(stack, topic):
    r = subprocess.run(["kcat", "-C", "-b", stack.kafka, "-t", topic, "-o",
                        "beginning", "-e", "-q", "-f", "%T\\n"],
                       capture_output=True, text=True, timeout=120, check=True)
    return [int(x) for x in r.stdout.split()]


def test_large_messages_reassembled_while_small_ones_flow(stack, uniq, tmp_path):
    cam, sensors = f"it.{uniq}.cam", f"it.{uniq}.sensor.eu.temp"
    make_topic(stack, cam, "message.timestamp.type=LogAppendTime")
    make_topic(stack, sensors, "message.timestamp.type=LogAppendTime")
    routes, extra = config(uniq, cam)
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra).start()
    rss_start = status_kb(br.proc.pid, "VmRSS")
    files = [payload_file(tmp_path, f"cam-{i}.bin", MB20, f"{uniq}-{i}")
             for i in range(3)]
    small = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}", 2, 12,
                           20, tmp_path / "small.acked")
    time.sleep(1)
    for i, (path, _) in enumerate(files):
        publish_file(stack, f"{uniq}/cam/cam-{i}", path)
        time.sleep(1.5)
    out, err = small.communicate(timeout=90)
    assert small.returncode == 0, err
    wait_large_delivered(br, 3)
    rss_peak = status_kb(br.proc.pid, "VmHWM")
    rc, v = verify(stack, sensors, acked=tmp_path / "small.acked", idle=5)
    assert rc == 0 and v["missing"] == 0 and v["order_violations"] == 0, v

    got = tmp_path / "got"
    got.mkdir()
    rc, so, se = reassemble(br, stack, cam, got)
    assert rc == 0, se
    assert "3 complete (60000000 bytes), 0 incomplete, 0 bad" in se, se
    back = sorted(p.read_bytes() for p in got.iterdir())
    assert back == sorted(d for _, d in files), "not byte for byte"
    # one chunk per 512 KiB, all of a message on one partition, its key
    recs = chunk_records(stack, cam)
    per = collections.Counter(i for i, _, _ in recs)
    assert sorted(per.values()) == [39, 39, 39], per

    # small messages appended while a large one's chunks were: not held up
    spans = {}
    for mid, _, ts in recs:
        lo, hi = spans.get(mid, (ts, ts))
        spans[mid] = (min(lo, ts), max(hi, ts))
    small_ts = append_times(stack, sensors)
    during = sum(1 for t in small_ts
                 if any(lo < t < hi for lo, hi in spans.values()))
    drain_ms = [hi - lo for lo, hi in spans.values()]
    stored_ms = [int(x) for x in re.findall(r"large message of 20000000 bytes "
                                            r"stored as record \d+ in (\d+) ms",
                                            br.logtext())]
    lat = v["latency_ms"]
    print(f"3 x 20 MB stored in {stored_ms} ms (MQTT not read meanwhile), "
          f"as 39 chunks each, drained in {drain_ms} ms; "
          f"{during} of {len(small_ts)} small messages appended during a "
          f"drain; small publish -> append p50 {lat['p50']} ms, p99 "
          f"{lat['p99']} ms, max {lat['max']} ms; daemon RSS "
          f"{rss_start // 1024} MiB at start, peak {rss_peak // 1024} MiB")
    assert during > 0 or max(drain_ms) < 100, "no small message during a drain"
    assert lat["p99"] <= 2000, lat
    # what one 20 MB message costs, not three: inside the MQTT callback
    # libmosquitto holds two copies (its packet and its message) and we make
    # ours; after the callback only ours, until it is in the spool
    assert rss_peak - rss_start < 4 * MB20 // 1024, (rss_start, rss_peak)
    assert br.stop() == 0
    c = br.counters()
    assert c["kafka_refused"] == 0 and c["dead_lettered"] == 0, c
    assert c["backlog"] == 0, c


def test_missing_and_corrupt_chunks_reported(stack, uniq, tmp_path):
    """A real large message's chunks copied to other topics: one chunk left
    out, one corrupted, all sent twice in reverse order."""
    cam = f"it.{uniq}.cam"
    routes, extra = config(uniq, cam)
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra).start()
    path, data = payload_file(tmp_path, "snap.bin", 3_000_000, uniq)
    publish_file(stack, f"{uniq}/cam/cam-9", path)
    wait_large_delivered(br, 1)
    assert br.stop() == 0
    recs = stack.consume(cam, 6, timeout=60)
    assert len(recs) == 6
    mid = recs[0]["headers"]["m2k.id"].decode()
    assert {r["headers"]["m2k.id"].decode() for r in recs} == {mid}
    assert [int(r["headers"]["m2k.chunk"]) for r in recs] == list(range(6))
    assert all(r["key"] == b"cam-9" for r in recs)
    assert recs[0]["headers"]["m2k.sha256"].decode() == hashlib.sha256(data).hexdigest()
    assert recs[0]["headers"]["m2k.size"] == b"3000000"
    assert recs[0]["headers"]["mqtt.topic"] == f"{uniq}/cam/cam-9".encode()

    def copy(topic, records, corrupt=None):
        for r in records:
            value = r["value"]
            if corrupt is not None and int(r["headers"]["m2k.chunk"]) == corrupt:
                value = bytes([value[0] ^ 1]) + value[1:]
            hdrs = {k: v for k, v in r["header_list"]}
            stack.produce(topic, [value], key=r["key"], headers=hdrs)

    missing, corrupt, twice = (f"it.{uniq}.{n}" for n in ("missing", "corrupt", "twice"))
    copy(missing, [r for r in recs if r["headers"]["m2k.chunk"] != b"3"])
    copy(corrupt, recs, corrupt=4)
    copy(twice, list(reversed(recs)) + list(reversed(recs)))

    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, missing, out)
    assert rc == 1, se
    assert f"{mid}: incomplete: 1 of 6 chunks missing: 3" in se, se
    assert not any(p.name == mid for p in out.iterdir())
    rc, so, se = reassemble(br, stack, corrupt, out)
    assert rc == 1, se
    assert f"{mid}: SHA-256 mismatch" in se, se
    assert not any(p.name == mid for p in out.iterdir())
    rc, so, se = reassemble(br, stack, twice, out)
    assert rc == 0, se
    assert "1 complete (3000000 bytes), 0 incomplete, 0 bad, 6 repeated" in se, se
    assert (out / mid).read_bytes() == data
    assert so.split() == [mid, "3000000", str(out / mid)]
    # to stdout, one message by its id
    r = subprocess.run([br.bin, "reassemble", "--brokers", stack.kafka, "--id",
                        mid, twice, "-"], capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout == data, r.stderr.decode()
    print(f"missing chunk reported: {mid} chunk 3")


def test_crash_while_half_written(stack, uniq, tmp_path):
    """SIGKILL after the first slice of a 20 MB message is in the spool,
    before it is committed: it was not acknowledged, so the broker sends it
    again; the half-written record is removed at the next start and never
    reaches Kafka; the message arrives once, whole."""
    cam = f"it.{uniq}.cam"
    routes, extra = config(uniq, cam)
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra)
    br.start(env={"MQTT2KAFKA_FAULT": "crash-large-write@1"})
    path, data = payload_file(tmp_path, "snap.bin", MB20, uniq)
    publish_file(stack, f"{uniq}/cam/cam-1", path)
    br.proc.wait(timeout=60)
    assert br.proc.returncode == -9, br.logtext()[-2000:]
    assert "crash with a large message half staged" in br.logtext()
    br.start()
    wait_large_delivered(br, 1)
    assert "left half written by a crash" in br.logtext(), br.logtext()[-3000:]
    assert br.stop() == 0
    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, cam, out)
    assert rc == 0, se
    assert "1 complete (20000000 bytes), 0 incomplete, 0 bad, 0 repeated" in se, se
    assert [p.read_bytes() for p in out.iterdir()] == [data]
    assert len({i for i, _, _ in chunk_records(stack, cam)}) == 1


def test_crash_while_half_produced(stack, uniq, tmp_path):
    """SIGKILL once Kafka confirmed 10 of a message's 39 chunks: it was
    acknowledged to the broker, so the spool has it; after the restart all
    its chunks go again. The repeats carry the same m2k.id and m2k.chunk,
    and the tool skips them."""
    cam = f"it.{uniq}.cam"
    routes, extra = config(uniq, cam)
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra)
    br.start(env={"MQTT2KAFKA_FAULT": "crash-large-sent@10"})
    path, data = payload_file(tmp_path, "snap.bin", MB20, uniq)
    publish_file(stack, f"{uniq}/cam/cam-2", path)
    br.proc.wait(timeout=60)
    assert br.proc.returncode == -9, br.logtext()[-2000:]
    br.start()
    wait_large_delivered(br, 1)
    assert br.stop() == 0
    assert br.counters()["received"] == 0  # not sent again by the broker
    recs = chunk_records(stack, cam)
    ids = {i for i, _, _ in recs}
    seen = collections.Counter((i, n) for i, n, _ in recs)
    assert len(ids) == 1, ids
    assert set(n for _, n in seen) == set(range(39))
    repeated = sum(k - 1 for k in seen.values())
    assert repeated >= 10, seen
    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, cam, out)
    assert rc == 0, se
    assert f"1 complete (20000000 bytes), 0 incomplete, 0 bad, {repeated} repeated" in se, se
    assert [p.read_bytes() for p in out.iterdir()] == [data]
    print(f"half produced: {repeated} chunks sent twice, same m2k.id and index")


def test_chunk_refused_dead_letters_the_message(stack, uniq, tmp_path):
    """A topic whose max.message.bytes is below the chunk size: Kafka
    refuses the first chunk for good; the whole message goes to the
    spool's dead letters with the reason, counted, and a small message
    behind it is delivered."""
    cam = f"it.{uniq}.cam"
    make_topic(stack, cam, "max.message.bytes=100000")
    routes, extra = config(uniq, cam)
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra).start()
    path, data = payload_file(tmp_path, "snap.bin", 3_000_000, uniq)
    publish_file(stack, f"{uniq}/cam/cam-3", path)
    br.wait_log("moved to the spool's dead letters", 60)
    subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p",
                    str(stack.mqtt_port), "-q", "1", "-t",
                    f"{uniq}/sensors/eu/temp/dev-1", "-m", "after"],
                   check=True, timeout=30)
    got = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=30)
    assert [g["value"] for g in got] == [b"after"]
    assert br.stop() == 0
    c = br.counters()
    assert c["kafka_refused"] == 1 and c["dead_in_spool"] == 1, c
    r = subprocess.run([br.bin, "spool", "-c", str(br.conf), "dead", "list"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert cam in r.stdout and "3000000" in r.stdout, r.stdout
    assert "too large" in r.stdout.lower(), r.stdout


def full_spool_case(stack, uniq, tmp_path, on_full):
    """Kafka away, a 64 MiB spool (about 50 MB for records), three 20 MB
    messages; then Kafka back. Returns (bridge, payloads, reassembled)."""
    cam = f"it.{uniq}.cam"
    make_topic(stack, cam)
    routes, extra = config(uniq, cam)
    extra["spool"] = {"max_bytes": "64MiB", "on_full": on_full}
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra)
    files = [payload_file(tmp_path, f"cam-{i}.bin", MB20, f"{uniq}-{i}")
             for i in range(3)]
    stack.kafka_ctl("stop")
    try:
        br.start()
        for i, (path, _) in enumerate(files):
            publish_file(stack, f"{uniq}/cam/cam-{i}", path)
        # stored (or dropped) while Kafka is away; under backpressure the
        # third waits in the broker
        time.sleep(5)
        before = br.status()[1]
    finally:
        stack.kafka_ctl("start")
    wait_large_delivered(br, 2, timeout=180)
    return br, files, before


def test_full_spool_drop_oldest_drops_a_large_message(stack, uniq, tmp_path):
    """drop_oldest: the third message needs room; the oldest large record
    not in flight (the second: the first is with the producer) is dropped
    and counted; the first and the third arrive whole."""
    br, files, _ = full_spool_case(stack, uniq, tmp_path, "drop_oldest")
    assert br.stop() == 0
    c = br.counters()
    assert c["dropped_full"] == 1 and c["received"] == 3, c
    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, f"it.{uniq}.cam", out)
    assert rc == 0, se
    got = sorted(p.read_bytes() for p in out.iterdir())
    assert got == sorted([files[0][1], files[2][1]])


def test_full_spool_backpressure_keeps_the_third_in_the_broker(stack, uniq, tmp_path):
    """backpressure: with room for less than another large message, MQTT is
    not read; the broker keeps the third until Kafka drains the spool;
    nothing is dropped, all three arrive whole."""
    br, files, before = full_spool_case(stack, uniq, tmp_path, "backpressure")
    wait_large_delivered(br, 3, timeout=180)
    assert "backpressure" in br.logtext(), br.logtext()[-3000:]
    assert br.stop() == 0
    c = br.counters()
    assert c["dropped_full"] == 0 and c["received"] == 3, c
    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, f"it.{uniq}.cam", out)
    assert rc == 0, se
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(d for _, d in files)


def test_larger_than_the_spool_holds_is_dead_lettered(stack, uniq, tmp_path):
    """A 32 MiB spool holds a large message of at most half its cap (about
    12 MB): mqtt.max_payload is lowered to that, with a warning; a 20 MB
    message is dead-lettered (cut, its size in a header, counted as
    oversized); a 5 MB one is delivered as chunks."""
    cam = f"it.{uniq}.cam"
    routes, extra = config(uniq, cam)
    extra["spool"] = {"max_bytes": "32MiB"}
    br = Bridge(stack, tmp_path, uniq, routes=routes, extra=extra).start()
    assert "more than the spool holds of one large message" in br.logtext()
    big, _ = payload_file(tmp_path, "big.bin", MB20, uniq + "b")
    ok, data = payload_file(tmp_path, "ok.bin", 5_000_000, uniq + "o")
    publish_file(stack, f"{uniq}/cam/cam-4", big)
    publish_file(stack, f"{uniq}/cam/cam-5", ok)
    dl = stack.consume(f"it.{uniq}.dead-letter", 1, timeout=60)
    assert dl[0]["headers"]["error.original.size"] == str(MB20).encode()
    assert b"max_payload" in dl[0]["headers"]["error.reason"]
    assert 0 < len(dl[0]["value"]) <= 512 * 1024  # cut to a chunk
    wait_large_delivered(br, 1)
    assert br.stop() == 0
    c = br.counters()
    assert c["oversized"] == 1 and c["received"] == 2, c
    out = tmp_path / "out"
    out.mkdir()
    rc, so, se = reassemble(br, stack, cam, out)
    assert rc == 0, se
    assert [p.read_bytes() for p in out.iterdir()] == [data]
