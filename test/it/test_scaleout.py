"""Scale-out: several bridges share one broker's load (mqtt.share_group).

Each bridge has its own client id, gateway id and spool, and subscribes
every route filter as $share/<group>/<filter>: the broker hands each
message to one member. What users see is checked: every reading the broker
acknowledged to the publisher is in Kafka once SIGKILL and restart are
over, each bridge carried a share (records in Kafka by their gateway.id
header), duplicates by kind (dup_same_id, dup_new_id), and the per-device
order across bridges, which the group does not keep, is reported, not
asserted. And the broker's behaviour the README relies on: a dead member's
share is not handed to the others; it waits for that member.
"""
import collections
import subprocess
import time

import pytest

from bridge_util import Bridge, kill_all, pub, verify

DEVICES, PER_DEVICE, RATE = 20, 1500, 2500  # 30,000 readings in about 12 s
BURST = 4096  # the receive maximum: at most one burst held per kill


@pytest.fixture(autouse=True)
def no_leftover_daemons():
    yield
    kill_all()


def members(stack, tmp_path, uniq, n, mode="direct"):
    """n bridges in one share group, each its own client id, gateway id
    and spool; the same routes, so the same Kafka topics."""
    return [Bridge(stack, tmp_path / f"b{i}", uniq,
                   extra={"gateway": {"id": f"gw-{uniq}-{i}"},
                          "mqtt": {"client_id": f"m2k-{uniq}-{i}",
                                   "share_group": f"g-{uniq}"},
                          "spool": {"mode": mode},
                          "log": {"stats_interval": 1}})
            for i in range(n)]


def run_counters(br, run):
    """One run's last counter line: `final:` after a clean stop, else the
    last `stats:` line (a SIGKILLed run writes no final line)."""
    last = {}
    for line in br.logtext(run).splitlines():
        for which in (" stats: ", " final: "):
            if which in line:
                last = dict(kv.split("=", 1) for kv in
                            line.split(which, 1)[1].split() if "=" in kv)
    return {k: int(v) for k, v in last.items() if v.isdigit()}


def shares(stack, topic, records, gateways):
    """Records in Kafka per gateway.id header, in the order of gateways.
    kcat prints the headers alone: the binary payloads stay out of it."""
    r = subprocess.run(["kcat", "-C", "-b", stack.kafka, "-t", topic,
                        "-o", "beginning", "-e", "-q", "-f", "%h\\n"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    by = collections.Counter()
    for line in r.stdout.decode().splitlines():
        h = dict(kv.split("=", 1) for kv in line.split(",") if "=" in kv)
        by[h.get("gateway.id")] += 1
    assert sum(by.values()) == records, (by, records)
    return [by.get(g, 0) for g in gateways]


@pytest.mark.parametrize("mode", ["direct", "always"])
def test_three_bridges_share_the_load_and_survive_a_kill(stack, uniq,
                                                         tmp_path, mode):
    """Three bridges in one group, 30,000 QoS 1 readings from 20 devices;
    one bridge is SIGKILLed mid-run and restarted. Nothing the broker
    acknowledged is missing; all three carried a share; with every message
    spooled first a duplicate carries an m2k.id Kafka has seen, on the
    direct path at most the one burst the kill found waiting for Kafka
    comes again with new ids."""
    t0 = time.time()
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    brs = [b.start() for b in members(stack, tmp_path, uniq, 3, mode)]
    assert "subscriptions shared in group g-" in brs[0].logtext()
    acked = tmp_path / "acked.txt"
    publisher = subprocess.Popen(
        [str(stack.build / "tools" / "m2k-pub"), "-H", stack.mqtt_host,
         "-p", str(stack.mqtt_port), "-d", str(DEVICES),
         "-n", str(PER_DEVICE), "-r", str(RATE), "-q", "1",
         "-T", f"{uniq}/sensors/eu/temp/{{device}}", "--acked", str(acked)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = brs[0]
    try:
        time.sleep(4)
        assert publisher.poll() is None, "the publisher ended before the kill"
        victim.kill()
        killed_at = time.time()
        time.sleep(2)
        victim.start()
        down_s = time.time() - killed_at
    finally:
        out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, f"{out}\n{err}"
    n = sum(1 for _ in open(acked))
    assert n == DEVICES * PER_DEVICE
    rc, v = verify(stack, topic, acked=acked, expect=n, idle=5, timeout=120)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["unique"] == n, v
    for b in brs:
        assert b.stop() == 0
    gws = [f"gw-{uniq}-{i}" for i in range(3)]
    per_gw = shares(stack, topic, v["records"], gws)
    first, second = run_counters(victim, 1), run_counters(victim, 2)
    received = [first.get("received", 0) + second.get("received", 0)] + \
        [run_counters(b, 1).get("received", 0) for b in brs[1:]]
    print(f"share group ({mode}): {n} acknowledged in {time.time() - t0:.0f} s; "
          f"records in Kafka per bridge {per_gw} (sum {sum(per_gw)}); "
          f"received counters {received} (the killed bridge: "
          f"{first.get('received', 0)} by its last stats line before the "
          f"SIGKILL, {second.get('received', 0)} after the restart, "
          f"{down_s:.1f} s down); duplicates {v['dup_same_id']} with a known "
          f"m2k.id, {v['dup_new_id']} with a new one; order violations "
          f"across bridges {v['order_violations']}")
    assert all(s > 0 for s in per_gw), per_gw
    assert sum(per_gw) >= n, per_gw
    assert all(r > 0 for r in received), received
    assert second.get("received", 0) > 0  # the restarted one took its share
    # per-device order across members is not kept: reported, not asserted
    assert "order_violations" in v
    if mode == "always":
        assert v["dup_new_id"] == 0, v
    else:
        assert v["dup_new_id"] <= BURST, v  # one kill, at most one burst


def test_a_dead_members_share_waits_for_it(stack, uniq, tmp_path):
    """What the README says of the broker (Debian's Mosquitto 2.0.11): a
    member that is gone but whose session lives on keeps its place in the
    group. Messages the broker picks it for are queued for its session, not
    handed to the others; they reach Kafka when it comes back."""
    topic = f"it.{uniq}.sensor.eu.temp"
    stack.create_topic(topic)
    a, b = [m.start() for m in members(stack, tmp_path, uniq, 2)]
    time.sleep(1)  # its SUBSCRIBE is written after the CONNACK
    b.kill()
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4,
              count=50, acked=acked)
    assert res["acked"] == 200
    _, v = verify(stack, topic, acked=acked, expect=200, idle=4, timeout=20)
    gws = [f"gw-{uniq}-0", f"gw-{uniq}-1"]
    print(f"one of two members dead: {v['unique']} of 200 in Kafka, "
          f"{v['missing']} waiting")
    assert 0 < v["unique"] < 200, (
        "the broker handed the dead member's share to the live one: the "
        "README's 'Scale-out' section no longer describes this broker", v)
    assert shares(stack, topic, v["records"], gws)[1] == 0
    b.start()
    rc, v = verify(stack, topic, acked=acked, expect=200, idle=4, timeout=60)
    assert v["missing"] == 0 and v["unique"] == 200, v
    per_gw = shares(stack, topic, v["records"], gws)
    print(f"after the restart: records per member {per_gw}")
    assert per_gw[1] > 0
    assert a.stop() == 0 and b.stop() == 0
