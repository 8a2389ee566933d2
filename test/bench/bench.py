#!/usr/bin/env python3
"""mqtt2kafka benchmarks: throughput, latency, drain, footprint, herd.

Usage: bench.py [--quick] [--only NAME[,NAME]] [--keep-stack]

Runs on a private test stack (its own folder and ports, see PORTS below;
the M2K_* variables of test/stack/stack.sh override them), so nobody else's
tests disturb the brokers and ours disturb nobody. Every scenario prints
table rows and appends JSON lines to test/bench/results/results.jsonl; the
last run is also written whole to results/latest.json, and plot.gp draws
results/throughput.png from it. Scenarios:

  throughput  100 devices, QoS 1, 100-byte SensorReadings, the rate stepped
              up (doubling, then bisecting) for each system side by side:
              ceiling (mosquitto_sub > /dev/null), pipe (mosquitto_sub |
              kcat -P), py (paho + confluent-kafka), mqtt2kafka with
              sync normal and sync full. A step "holds" when everything
              arrived and the queue did not grow (p99 publish -> Kafka
              append under HOLD_MS; for the ceiling: the subscriber got the
              last message within HOLD_MS of the publisher's last PUBACK).
  latency     half the sustained rate, both sync settings: p50/p99/p99.9
              from the reading's timestamp to Kafka's LogAppendTime; and
              the footprint of those runs (RSS, CPU s per million, disk
              bytes written per message).
  drain       a backlog spooled while Kafka is stopped, then Kafka back
              with live traffic at 10 % of the sustained rate (normal
              lane) and 20 msg/s on a fast-lane route; drain rate against
              librdkafka producing the same records (m2k-pub --kafka),
              and each lane's publish -> append latency during the drain.
  herd        1,000 clients connect at once and publish 200,000 messages
              as fast as they can (m2k-herd); time until all are in Kafka,
              the bridge's memory peak, nothing lost.
  smear       a fleet coming back: 4 (quick) or 10 gateways, each its own
              bridge and spool, hold a backlog the herd tool published
              while Kafka was stopped; Kafka comes back. Records per
              second at the broker without smearing, then with
              kafka.drain_delay and kafka.drain_rate.
  wear        bytes the daemon writes to storage per message (/proc/PID/io
              write_bytes, its log going to a pipe as to journald and
              its status file on tmpfs as in service) at 10, 100 and
              1,000 msg/s, 20 devices, QoS 1, 100-byte readings, Kafka
              healthy: spool.mode direct and always, sync normal and
              full; with GB/day at each rate.
  hostile     the bridge's memory peak under inputs built to make it grow:
              batches of 1,024 readings split into records that each carry
              16 KiB of user properties, 4 MiB payloads, and 20,000
              records with 16 KiB of headers while Kafka is paused (the
              in-flight window must count the headers).

Speeds are measured and reported; nothing here asserts one. Exit 0 unless a
scenario could not run (a tool failed, a broker did not come up).
"""
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = Path(os.environ.get("M2K_BUILD", ROOT / "build")).resolve()
STACK = ROOT / "test" / "stack" / "stack.sh"
RESULTS = Path(os.environ.get("M2K_BENCH_RESULTS", HERE / "results"))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

PORTS = {"M2K_MQTT_PORT": "38830", "M2K_KAFKA_PORT": "39092",
         "M2K_KAFKA_CONTROLLER_PORT": "39093"}
for k, v in PORTS.items():
    os.environ.setdefault(k, v)
os.environ.setdefault("M2K_STACK_DIR",
                      f"{tempfile.gettempdir()}/mqtt2kafka-bench-{os.getuid()}")
MQTT_PORT = int(os.environ["M2K_MQTT_PORT"])
KAFKA = f"127.0.0.1:{os.environ['M2K_KAFKA_PORT']}"

HOLD_MS = 500          # a queue that grows for a few seconds exceeds this
DEVICES = 100
SIZE = 100
CLK = os.sysconf("SC_CLK_TCK")

QUICK = {"step_s": 1.0, "start": 10000, "bisect": 0, "max_rate": 40000,
         "lat_s": 3.0, "backlog": 30000, "herd_clients": 100,
         "herd_msgs": 20000, "wear_s": 10}
FULL = {"step_s": 5.0, "start": 4000, "bisect": 2, "max_rate": 320000,
        "lat_s": 10.0, "backlog": 1000000, "herd_clients": 1000,
        "herd_msgs": 200000, "wear_s": 30}


def log(msg):
    print(msg, flush=True)


# --- processes ---------------------------------------------------------------

def proc_sample(pid):
    """RSS/HWM (KiB), CPU seconds, bytes written to storage, of pid."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(f[11]) + int(f[12])) / CLK
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            k, _, v = line.partition(":")
            if k == "write_bytes":
                out["write_bytes"] = int(v)
    except (OSError, ValueError, IndexError):
        pass
    return out


class Sampler(threading.Thread):
    """Samples a process every 0.2 s; keeps the peak RSS seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            s = proc_sample(self.pid)
            self.peak_kib = max(self.peak_kib, s.get("VmRSS", 0))

    def stop(self):
        self.done.set()
        self.join()


def run(cmd, timeout=300, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {r.returncode}: "
                           f"{r.stderr.strip()[-800:]}")
    return r


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in output: {text[-400:]}")


def stop_proc(p, timeout=30):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- the stack and the tools -------------------------------------------------

def stack(*args, check=True):
    return run(["bash", STACK, *args], timeout=200, check=check)


def warm_up(tpl):
    """One reading from device "warm00001" (not in any --acked file)."""
    pub(tpl, 0, 1, devices=1, extra=["--id-prefix", "warm"])


def topic(name):
    """A topic whose record timestamps are Kafka's append time."""
    run([PY, ROOT / "test/stack/kafka_topic.py", KAFKA, name, "1", "1",
         "--config", "message.timestamp.type=LogAppendTime"], timeout=60)


def pub(tpl, rate, per_device, devices=DEVICES, acked=None, fmt="proto",
        extra=(), check=True):
    cmd = [BUILD / "tools/m2k-pub", "-H", "127.0.0.1", "-p", MQTT_PORT,
           "-d", devices, "-n", per_device, "-r", int(rate), "-q", "1",
           "-s", SIZE, "-f", fmt, "-T", tpl, *extra]
    if acked:
        cmd += ["--acked", acked]
    r = run(cmd, timeout=900, check=check)
    return last_json(r.stdout)


def verify(ktopic, expect, acked=None, idle=3, timeout=300):
    cmd = [BUILD / "tools/m2k-verify", "-b", KAFKA, "-t", ktopic,
           "-e", expect, "--idle", idle, "--timeout", timeout]
    if acked:
        cmd += ["--acked", acked]
    r = run(cmd, timeout=timeout + 60, check=False)
    if r.returncode == 2:
        raise RuntimeError(f"m2k-verify: {r.stderr.strip()[-400:]}")
    return last_json(r.stdout)


def append_times(ktopic, first="beginning"):
    """(first, last) record timestamps of partition 0, in ms."""
    def one(offset):
        r = run(["kcat", "-C", "-b", KAFKA, "-t", ktopic, "-p", "0", "-o",
                 offset, "-c", "1", "-e", "-q", "-f", "%T\\n"], timeout=60)
        return int(r.stdout.split()[0])
    return one(first), one("-1")


# --- mqtt2kafka ---------------------------------------------------------------

class M2K:
    """One mqtt2kafka daemon with its own folder, config and spool."""

    def __init__(self, work, name, routes, sync="normal", brokers=KAFKA,
                 extra_kafka=None, mode=None, status=None):
        self.dir = Path(work) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "m2k.yaml"
        lines = [
            "gateway:", f"  id: bench-{name}",
            "mqtt:", "  host: 127.0.0.1", f"  port: {MQTT_PORT}",
            f"  client_id: m2kb-{name}-{os.getpid()}", "  protocol: 5",
            "  qos: 1", "  reconnect_max: 2",
            "kafka:", f"  brokers: \"{brokers}\"",
            f"  dead_letter_topic: m2kb.dead.{name}",
            "  shutdown_timeout: 10s",
        ]
        for k, v in (extra_kafka or {}).items():
            lines.append(f"  {k}: {v}")
        lines += [
            "spool:", f"  path: {self.dir / 'spool.db'}", "  max_bytes: 4GiB",
            f"  sync: {sync}", "  on_full: backpressure",
            *([f"  mode: {mode}"] if mode else []),
            "log:", "  stats_interval: 1",
            f"  status_file: {status or self.dir / 'status'}",
            "routes:",
        ]
        for match, ktopic, *lane in routes:
            lines += [f"  - match: \"{match}\"", f"    topic: \"{ktopic}\"",
                      "    key: \"{device}\""]
            if lane:
                lines.append(f"    lane: {lane[0]}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.logf = self.dir / "bridge.log"
        self.status_file = Path(status) if status else self.dir / "status"

    def start(self, piped=False):
        """piped: the daemon's output goes through a pipe (as to journald
        in service), so the log file's writes are not the daemon's."""
        self.log_fd = open(self.logf, "ab")
        self.proc = subprocess.Popen([BUILD / "mqtt2kafka", "run", "-c",
                                      self.conf],
                                     stdout=subprocess.PIPE if piped
                                     else self.log_fd,
                                     stderr=subprocess.STDOUT)
        if piped:
            def copy(src, dst):
                for chunk in iter(lambda: src.read1(65536), b""):
                    dst.write(chunk)
                    dst.flush()
            threading.Thread(target=copy, args=(self.proc.stdout, self.log_fd),
                             daemon=True).start()
        self.wait_log("mqtt: connected", 30)
        time.sleep(0.3)  # the SUBSCRIBE goes out right after CONNACK
        return self

    def warm(self, tpl):
        """One reading first, so the producer id, the connections and the
        topic's metadata are there before the clock runs (a bridge in
        service is warm)."""
        warm_up(tpl)
        self.wait_log("kafka: uplink up", 30)
        time.sleep(0.3)
        return self

    def text(self):
        return self.logf.read_text(errors="replace")

    def wait_log(self, needle, timeout, after=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text()[after:]:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mqtt2kafka exited: {self.text()[-1500:]}")
            time.sleep(0.1)
        raise RuntimeError(f"mqtt2kafka never logged {needle!r}: "
                           f"{self.text()[-1500:]}")

    def counters(self, which="stats"):
        out = {}
        for line in self.text().splitlines():
            if f" {which}: " in line:
                out = dict(kv.split("=", 1) for kv in
                           line.split(f" {which}: ", 1)[1].split() if "=" in kv)
        return {k: int(v) if v.lstrip("-").isdigit() else v
                for k, v in out.items()}

    def status(self):
        try:
            lines = self.status_file.read_text().splitlines()
        except OSError:
            return {}
        kv = dict(line.split("=", 1) for line in lines if "=" in line)
        return {k: int(v) if v.lstrip("-").isdigit() else v
                for k, v in kv.items()}

    def stop(self):
        stop_proc(self.proc)
        self.log_fd.close()
        return self.counters("final")


# --- scenario 1: throughput ---------------------------------------------------

class System:
    """One bridge under test; step() runs one rate step on fresh topics."""
    durable = False

    def __init__(self, b, name):
        self.b, self.name = b, name

    def topics(self, step):
        return (f"b/{self.b.run}/{self.name}/{step}/{{device}}",
                f"m2kb.{self.b.run}.{self.name}.{step}")

    def start(self, step):
        pass

    def stop(self):
        return {}

    def finish(self):
        """Called when the publisher is done, before reading Kafka."""

    def warm(self, step):
        """One message first, so connections and producer ids are set up
        before the clock runs (a running bridge is warm)."""
        warm_up(self.topics(step)[0])
        time.sleep(0.5)

    def step(self, rate):
        step = f"r{int(rate)}"
        tpl, ktopic = self.topics(step)
        per_dev = max(1, int(rate * self.b.cfg["step_s"] / DEVICES))
        n = per_dev * DEVICES
        topic(ktopic)
        self.start(step)
        acked = self.b.work / f"{self.name}-{step}.acked"
        try:
            self.warm(step)
            p = pub(tpl, rate, per_dev, acked=acked, fmt=self.fmt)
            self.finish()
            v = verify(ktopic, n, acked=acked, idle=3)
        finally:
            fp = self.stop()
        lat = v["latency_ms"]
        held = (v["missing"] == 0 and v["readings"] >= n
                and lat["p99"] <= HOLD_MS)
        return {"offered": rate, "published": p["rate"], "n": n,
                "missing": v["missing"], "dups": v["duplicates"],
                "p50": lat["p50"], "p99": lat["p99"], "p999": lat["p999"],
                "max": lat["max"], "held": held, **fp}

    fmt = "proto"


class Ceiling(System):
    def step(self, rate):
        step = f"r{int(rate)}"
        tpl, _ = self.topics(step)
        per_dev = max(1, int(rate * self.b.cfg["step_s"] / DEVICES))
        n = per_dev * DEVICES
        filt = tpl.replace("{device}", "#")
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p",
                                str(MQTT_PORT), "-q", "1", "-t", filt,
                                "-C", str(n)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        p = pub(tpl, rate, per_dev)
        t_end = time.monotonic()
        try:
            sub.wait(60)
            lag_ms = (time.monotonic() - t_end) * 1000
            got_all = True
        except subprocess.TimeoutExpired:
            sub.kill()
            sub.wait()
            lag_ms, got_all = 60000.0, False
        return {"offered": rate, "published": p["rate"], "n": n,
                "missing": 0 if got_all else None, "lag_ms": round(lag_ms),
                "held": got_all and lag_ms <= HOLD_MS}


class Pipe(System):
    fmt = "text"  # kcat -P splits on newlines: binary payloads would break

    def start(self, step):
        tpl, ktopic = self.topics(step)
        # line-buffered: a pipe makes stdio buffer 4 KiB, and the last
        # lines would wait there for the next message or the exit
        sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-h",
                                "127.0.0.1", "-p", str(MQTT_PORT), "-q", "1",
                                "-t", tpl.replace("{device}", "#")],
                               stdout=subprocess.PIPE)
        kc = subprocess.Popen(["kcat", "-P", "-b", KAFKA, "-t", ktopic],
                              stdin=sub.stdout)
        sub.stdout.close()
        self.procs = (sub, kc)
        time.sleep(0.5)

    def finish(self):
        # kcat -P holds the last lines it read until more come or stdin
        # ends: end it, as a script would, so they are produced
        time.sleep(0.5)
        self.stop()

    def stop(self):
        sub, kc = self.procs
        stop_proc(sub)
        try:
            kc.wait(30)
        except subprocess.TimeoutExpired:
            stop_proc(kc)
        return {}


class PyBridge(System):
    def start(self, step):
        tpl, _ = self.topics(step)
        self.proc = subprocess.Popen(
            [PY, HERE / "py_bridge.py", f"127.0.0.1:{MQTT_PORT}", KAFKA,
             tpl.replace("{device}", "#"), f"m2kb.{self.b.run}.{self.name}."])
        time.sleep(1.0)  # imports and the SUBSCRIBE
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()

    def stop(self):
        s = proc_sample(self.proc.pid)
        self.sampler.stop()
        stop_proc(self.proc)
        return {"cpu_s": s.get("cpu_s"), "rss_kib": s.get("VmRSS")}


class Mqtt2Kafka(System):
    durable = True

    def __init__(self, b, name, sync):
        super().__init__(b, name)
        self.sync = sync

    def start(self, step):
        tpl, ktopic = self.topics(step)
        self.m = M2K(self.b.work, f"{self.name}-{step}", [(tpl, ktopic)],
                     sync=self.sync).start()
        self.sampler = Sampler(self.m.proc.pid)
        self.sampler.start()

    def warm(self, step):
        self.m.warm(self.topics(step)[0])
        self.s0 = proc_sample(self.m.proc.pid)

    def stop(self):
        # every record is in Kafka (verify saw them); let the last acks land
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.m.status().get("backlog"):
            time.sleep(0.2)
        s1 = proc_sample(self.m.proc.pid)
        self.sampler.stop()
        c = self.m.stop()
        return {"cpu_s": round(s1["cpu_s"] - self.s0["cpu_s"], 2),
                "write_bytes": s1["write_bytes"] - self.s0["write_bytes"],
                "rss_kib": s1["VmRSS"], "hwm_kib": s1["VmHWM"],
                "spooled": c.get("spooled"), "delivered": c.get("delivered"),
                "dropped": (c.get("dropped_full") or 0)
                + (c.get("expired") or 0)}


def sustained(rows):
    """The step that held with the highest published rate."""
    ok = [r for r in rows if r["held"]]
    return max(ok, key=lambda r: r["published"]) if ok else None


def scenario_throughput(b):
    cfg = b.cfg
    systems = [Ceiling(b, "ceiling"), Pipe(b, "pipe"), PyBridge(b, "py"),
               Mqtt2Kafka(b, "normal", "normal"), Mqtt2Kafka(b, "full", "full")]
    rows = {s.name: [] for s in systems}
    live = list(systems)
    limited = set()
    rate = cfg["start"]

    def one(s, r):
        res = s.step(r)
        res["system"] = s.name
        rows[s.name].append(res)
        b.emit("throughput", res)
        log(f"  {s.name:8} offered {r:>7.0f}/s published {res['published']:>8.0f}/s"
            f"  {'holds' if res['held'] else 'QUEUES'}  "
            + (f"lag {res['lag_ms']} ms" if "lag_ms" in res else
               f"p99 {res['p99']} ms missing {res['missing']}"))
        best = sustained(rows[s.name][:-1])
        if (res["held"] and res["published"] < 0.9 * r and best
                and res["published"] < 1.1 * best["published"]):
            limited.add(s.name)  # held, but the publisher could not go faster
        return res["held"]

    # doubling, all systems side by side at each rate
    while live and rate <= cfg["max_rate"]:
        for s in list(live):
            if not one(s, rate) or s.name in limited:
                live.remove(s)
        rate *= 2
    # bisect between the last rate that held and the first that did not
    for s in systems:
        for _ in range(cfg["bisect"]):
            good = sustained(rows[s.name])
            bad = [r["offered"] for r in rows[s.name] if not r["held"]]
            if s.name in limited or not bad:
                break
            lo = good["offered"] if good else 0
            hi = min(bad)
            if not good:
                lo = hi / 2
            one(s, round((lo + hi) / 2, -2))
    out = {}
    for s in systems:
        best = sustained(rows[s.name])
        if best and best["published"] >= 0.9 * best["offered"]:
            limited.discard(s.name)
        out[s.name] = {"rate": best["published"] if best else 0,
                       "offered": best["offered"] if best else 0,
                       "publisher_limited": s.name in limited,
                       "steps": rows[s.name]}
    b.summary["throughput"] = out
    return out


# --- scenario 2 + 4: latency at half load, footprint ---------------------------

def scenario_latency(b, tp):
    res = {}
    # spool.mode direct (the default) and always (every message committed
    # to the spool before its PUBACK), each with both sync settings
    for mode, sync in (("direct", "normal"), ("direct", "full"),
                       ("always", "normal"), ("always", "full")):
        rate = max(1000, round(tp.get(sync, {}).get("offered", 20000) / 2, -2))
        name = f"lat-{mode}-{sync}"
        ktopic = f"m2kb.{b.run}.{name}"
        tpl = f"b/{b.run}/{name}/{{device}}"
        topic(ktopic)
        m = M2K(b.work, name, [(tpl, ktopic)], sync=sync,
                mode=mode).start().warm(tpl)
        # a second at the rate first, not measured: the first row of a run
        # otherwise pays a cold broker (its p99 three times the others')
        pub(tpl, rate, max(1, int(rate / DEVICES)),
            extra=["--id-prefix", "warm"])
        sampler = Sampler(m.proc.pid)
        sampler.start()
        s0 = proc_sample(m.proc.pid)
        per_dev = max(1, int(rate * b.cfg["lat_s"] / DEVICES))
        n = per_dev * DEVICES
        acked = b.work / f"{name}.acked"
        p = pub(tpl, rate, per_dev, acked=acked)
        steady = proc_sample(m.proc.pid)["VmRSS"]
        v = verify(ktopic, n, acked=acked, idle=3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and m.status().get("backlog"):
            time.sleep(0.2)
        time.sleep(1.5)  # one more status/stats turn: acks committed
        s1 = proc_sample(m.proc.pid)
        sampler.stop()
        c = m.stop()
        lat = v["latency_ms"]
        r = {"mode": mode, "sync": sync, "rate": rate, "published": p["rate"], "n": n,
             "missing": v["missing"], "duplicates": v["duplicates"],
             "p50": lat["p50"], "p99": lat["p99"], "p999": lat["p999"],
             "max": lat["max"], "rss_steady_kib": steady,
             "rss_peak_kib": max(s1["VmHWM"], sampler.peak_kib),
             "cpu_s_per_million": round((s1["cpu_s"] - s0["cpu_s"]) / n * 1e6, 2),
             "write_bytes_per_msg": round((s1["write_bytes"] - s0["write_bytes"]) / n, 1),
             "delivered": c.get("delivered"),
             "spool_file_bytes": c.get("spool_file_bytes")}
        res[sync if mode == "direct" else f"{mode}-{sync}"] = r
        b.emit("latency", r)
        log(f"  {mode:6} sync {sync:6} {rate:>7.0f}/s  p50 {r['p50']} ms  p99 {r['p99']} ms"
            f"  p99.9 {r['p999']} ms  missing {r['missing']}  RSS {steady // 1024} MiB"
            f" (peak {r['rss_peak_kib'] // 1024})  CPU {r['cpu_s_per_million']} s/M"
            f"  disk {r['write_bytes_per_msg']} B/msg")
    b.summary["latency"] = res
    return res


# --- scenario 3: backlog drain -------------------------------------------------

DRAIN_KAFKA = json.loads(os.environ.get("M2K_BENCH_DRAIN_KAFKA", "{}"))


def scenario_drain(b, tp):
    cfg = b.cfg
    total = cfg["backlog"]
    per_dev = total // DEVICES
    total = per_dev * DEVICES
    sustained_rate = tp.get("normal", {}).get("offered", 20000)
    live_rate = max(100, round(sustained_rate / 10, -1))
    kt_back, kt_live, kt_ceil, kt_fast = (f"m2kb.{b.run}.drain.backlog",
                                          f"m2kb.{b.run}.drain.live",
                                          f"m2kb.{b.run}.drain.ceiling",
                                          f"m2kb.{b.run}.drain.fast")
    kt_bare = f"m2kb.{b.run}.drain.bare"
    for t in (kt_back, kt_live, kt_ceil, kt_fast, kt_bare):
        topic(t)
    # librdkafka's own rate, same records (the bridge's headers, lz4 and
    # partitioner: --like-bridge), same broker, just before; and bare
    # records (no headers, no compression), as this bench measured before
    # 2 December
    lk = pub(f"b/{b.run}/back/{{device}}", 0, per_dev,
             extra=["--kafka", KAFKA, "--kafka-topic", kt_ceil,
                    "--like-bridge", "bench-drain"])
    t0, t1 = append_times(kt_ceil)
    ceil_rate = total / max((t1 - t0) / 1000, 1e-3)
    log(f"  librdkafka alone, same records: {total} records, "
        f"{lk['rate']:.0f}/s (publisher), {ceil_rate:.0f}/s (append times)")
    lb = pub(f"x/{{device}}", 0, per_dev,
             extra=["--kafka", KAFKA, "--kafka-topic", kt_bare])
    t0, t1 = append_times(kt_bare)
    bare_rate = total / max((t1 - t0) / 1000, 1e-3)
    log(f"  librdkafka alone, bare records: {lb['rate']:.0f}/s (publisher), "
        f"{bare_rate:.0f}/s (append times)")

    m = M2K(b.work, "drain", [(f"b/{b.run}/back/{{device}}", kt_back),
                              (f"b/{b.run}/live/{{device}}", kt_live),
                              (f"b/{b.run}/fast/{{device}}", kt_fast, "fast")],
            sync="normal", extra_kafka=DRAIN_KAFKA).start().warm(
                f"b/{b.run}/back/{{device}}")
    warm_up(f"b/{b.run}/live/{{device}}")
    warm_up(f"b/{b.run}/fast/{{device}}")
    sampler = Sampler(m.proc.pid)
    sampler.start()
    stack("kafka", "stop")
    try:
        m.wait_log("uplink down", 30)
        down_at = len(m.text())
        tf = time.monotonic()
        p = pub(f"b/{b.run}/back/{{device}}", 0, per_dev)
        fill_s = time.monotonic() - tf
        deadline = time.monotonic() + 120
        while m.status().get("spooled", 0) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        spooled = m.status().get("spooled", 0)
        log(f"  spooled {spooled} readings with Kafka down in {fill_s:.1f} s "
            f"({p['rate']:.0f}/s published); spool file "
            f"{m.status().get('spool_file_bytes', 0) // 1048576} MiB")
        live_secs = 600
        live_n = int(live_rate * live_secs / DEVICES)
        live_acked = b.work / "drain-live.acked"
        livep = subprocess.Popen(
            [BUILD / "tools/m2k-pub", "-H", "127.0.0.1", "-p", str(MQTT_PORT),
             "-d", str(DEVICES), "-n", str(live_n), "-r", str(live_rate),
             "-q", "1", "-s", str(SIZE), "-T", f"b/{b.run}/live/{{device}}",
             "--acked", live_acked], stdout=subprocess.PIPE, text=True)
    finally:
        stack("kafka", "start")
    # live data in the fast lane, 20 msg/s, from the moment the bridge has
    # the uplink back (librdkafka's reconnect backoff, up to 10 s, is not
    # the lanes' doing) until the backlog has drained
    m.wait_log("kafka: uplink up", 60, after=down_at)
    fast_acked = b.work / "drain-fast.acked"
    fastp = subprocess.Popen(
        [BUILD / "tools/m2k-pub", "-H", "127.0.0.1", "-p", str(MQTT_PORT),
         "-d", "2", "-n", "100000", "-r", "20", "-q", "1", "-s", str(SIZE),
         "-T", f"b/{b.run}/fast/{{device}}", "--acked", fast_acked],
        stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        st = m.status()
        if st.get("delivered", 0) >= total and st.get("backlog", 1) < live_rate:
            break
        time.sleep(0.5)
    time.sleep(2)
    for p_ in (livep, fastp):
        p_.send_signal(signal.SIGINT)
        p_.wait(30)
    first, last = append_times(kt_back, "1")  # after the warm-up reading
    drain_rate = total / max((last - first) / 1000, 1e-3)
    vb = verify(kt_back, total, idle=3)
    vl = verify(kt_live, 1, acked=live_acked, idle=3)
    vf = verify(kt_fast, 1, acked=fast_acked, idle=3)
    s1 = proc_sample(m.proc.pid)
    sampler.stop()
    c = m.stop()
    r = {"backlog": total, "spooled": spooled, "fill_s": round(fill_s, 1),
         "drain_s": round((last - first) / 1000, 2),
         "drain_rate": round(drain_rate), "live_rate": live_rate,
         "librdkafka_rate": round(ceil_rate),
         "librdkafka_pub_rate": round(lk["rate"]),
         "ratio": round(drain_rate / ceil_rate, 2),
         "librdkafka_bare_rate": round(bare_rate),
         "ratio_bare": round(drain_rate / bare_rate, 2),
         "backlog_missing": vb["missing"], "backlog_dups": vb["duplicates"],
         "live_missing": vl["missing"], "live_p50": vl["latency_ms"]["p50"],
         "live_p99": vl["latency_ms"]["p99"],
         "fast_records": vf["records"], "fast_missing": vf["missing"],
         "fast_p50": vf["latency_ms"]["p50"],
         "fast_p99": vf["latency_ms"]["p99"],
         "rss_peak_kib": max(s1["VmHWM"], sampler.peak_kib),
         "dropped": (c.get("dropped_full") or 0) + (c.get("expired") or 0)}
    b.emit("drain", r)
    b.summary["drain"] = r
    log(f"  drained {total} in {r['drain_s']} s = {r['drain_rate']}/s with live "
        f"{live_rate}/s; librdkafka alone {r['librdkafka_rate']}/s (same "
        f"records), ratio {r['ratio']}; bare records "
        f"{r['librdkafka_bare_rate']}/s, ratio {r['ratio_bare']}; missing {vb['missing']}+{vl['missing']}+"
        f"{vf['missing']}; live (normal lane) p99 {r['live_p99']} ms; fast "
        f"lane at 20/s during the drain: p50 {r['fast_p50']} ms, p99 "
        f"{r['fast_p99']} ms")
    return r


# --- scenario 5: thundering herd ------------------------------------------------

def scenario_herd(b):
    clients, msgs = b.cfg["herd_clients"], b.cfg["herd_msgs"]
    per = msgs // clients
    ktopic = f"m2kb.{b.run}.herd"
    topic(ktopic)
    m = M2K(b.work, "herd", [(f"b/{b.run}/herd/{{device}}", ktopic)],
            sync="normal").start().warm(f"b/{b.run}/herd/{{device}}")
    sampler = Sampler(m.proc.pid)
    sampler.start()
    s0 = proc_sample(m.proc.pid)
    h = last_json(run([BUILD / "bench/m2k-herd", "-p", MQTT_PORT, "-c",
                       clients, "-n", per, "-s", SIZE, "-T",
                       f"b/{b.run}/herd/{{device}}"], timeout=300).stdout)
    v = verify(ktopic, clients * per, idle=3)
    first, last = append_times(ktopic)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and m.status().get("backlog"):
        time.sleep(0.2)
    s1 = proc_sample(m.proc.pid)
    sampler.stop()
    m.stop()
    r = {"clients": clients, "messages": clients * per,
         "connect_s": h["connect_s"], "publish_s": h["publish_s"],
         "absorb_s": round((last - h["start_ms"]) / 1000, 2),
         "missing": v["missing"], "duplicates": v["duplicates"],
         "rss_before_kib": s0["VmRSS"],
         "rss_peak_kib": max(s1["VmHWM"], sampler.peak_kib),
         "rss_after_kib": s1["VmRSS"]}
    b.emit("herd", r)
    b.summary["herd"] = r
    log(f"  {clients} clients connected in {r['connect_s']} s, published "
        f"{r['messages']} in {r['publish_s']} s; all in Kafka after "
        f"{r['absorb_s']} s; missing {r['missing']}; RSS peak "
        f"{r['rss_peak_kib'] // 1024} MiB")
    return r


# --- scenario 6: a fleet coming back (load smearing) ---------------------------

def all_append_ms(ktopic):
    r = run(["kcat", "-C", "-b", KAFKA, "-t", ktopic, "-o", "beginning", "-e",
             "-q", "-f", "%T\\n"], timeout=300)
    return sorted(int(x) for x in r.stdout.split())


def scenario_smear(b):
    """G gateways (bridges, a spool each) hold a backlog spooled while Kafka
    was away, filled by the herd tool; Kafka comes back and all of them
    drain at once. Without smearing, then with kafka.drain_delay and
    kafka.drain_rate: the records per second the broker takes, at the peak
    and over time."""
    quick = b.mode == "quick"
    g, clients, per = ((4, 50, 100) if quick else (10, 100, 200))
    n = clients * per
    delay_s, rate = (5, n // 5) if quick else (20, n // 10)
    rows = []
    for name, extra in (("at-once", {}),
                        ("smeared", {"drain_delay": f"{delay_s}s",
                                     "drain_rate": rate})):
        ktopic = f"m2kb.{b.run}.smear.{name}"
        tpl = f"b/{b.run}/smear-{name}/{{device}}"
        topic(ktopic)
        stack("kafka", "stop")
        bridges = []
        try:
            for i in range(g):
                bridges.append(M2K(b.work, f"smear-{name}-{i}",
                                   [(tpl, ktopic)], extra_kafka=extra).start())
            h = last_json(run([BUILD / "bench/m2k-herd", "-p", MQTT_PORT, "-c",
                               clients, "-n", per, "-s", SIZE, "-T", tpl],
                              timeout=300).stdout)
            deadline = time.monotonic() + 120
            while (min(m.counters().get("received", 0) for m in bridges) < n
                   and time.monotonic() < deadline):
                time.sleep(0.5)
        finally:
            t_back = int(time.time() * 1000)
            stack("kafka", "start")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if all(m.status().get("delivered", 0) >= n for m in bridges):
                break
            time.sleep(0.5)
        for m in bridges:
            m.stop()
        ts = all_append_ms(ktopic)
        per_s = {}
        for t in ts:
            per_s[(t - t_back) // 1000] = per_s.get((t - t_back) // 1000, 0) + 1
        secs = max(per_s) + 1 if per_s else 0
        peak = max(per_s.values()) if per_s else 0
        r = {"variant": name, "gateways": g, "backlog_each": n,
             "herd_publish_s": h["publish_s"], "drain_delay_s":
             delay_s if extra else 0, "drain_rate": rate if extra else 0,
             "records": len(ts), "missing": g * n - len(ts),
             "peak_per_s": peak, "seconds_until_all_in": secs,
             "per_second": [per_s.get(i, 0) for i in range(min(secs, 120))]}
        rows.append(r)
        b.emit("smear", r)
        log(f"  {name:8} {g} gateways x {n} spooled: peak {peak} records/s "
            f"at the broker, all {len(ts)} in {secs} s after Kafka came "
            f"back (missing {r['missing']})")
        log("           per second: " + " ".join(str(c) for c in
                                                  r["per_second"][:40]))
    b.summary["smear"] = rows
    return rows


# --- scenario 5: flash wear --------------------------------------------------------

WEAR_RATES = (10, 100, 1000)
WEAR_DEVICES = 20


def scenario_wear(b):
    """Bytes written per message in steady state, Kafka healthy."""
    secs = b.cfg["wear_s"]
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else b.work
    rows = []
    for mode in ("direct", "always"):
        for sync in ("normal", "full"):
            name = f"wear-{mode}-{sync}"
            tpl = f"b/{b.run}/{name}/{{device}}"
            ktopic = f"m2kb.{b.run}.{name}"
            topic(ktopic)
            m = M2K(b.work, name, [(tpl, ktopic)], sync=sync, mode=mode,
                    status=shm / f"m2kb-{b.run}-{name}.status")
            m.start(piped=True).warm(tpl)
            time.sleep(1)
            seq = 1
            for rate in WEAR_RATES:
                per_dev = max(1, int(rate * secs / WEAR_DEVICES))
                s0 = proc_sample(m.proc.pid)
                t0 = time.monotonic()
                p = pub(tpl, rate, per_dev, devices=WEAR_DEVICES,
                        extra=["--start-seq", str(seq)])
                # the last acks and any group commit land inside the window
                time.sleep(1)
                s1 = proc_sample(m.proc.pid)
                dt = time.monotonic() - t0
                seq += per_dev
                n = per_dev * WEAR_DEVICES
                wb = s1["write_bytes"] - s0["write_bytes"]
                r = {"mode": mode, "sync": sync, "rate": rate, "n": n,
                     "published": p["rate"], "seconds": round(dt, 1),
                     "write_bytes": wb,
                     "bytes_per_msg": round(wb / n, 1),
                     "gb_per_day": round(wb / dt * 86400 / 1e9, 2)}
                rows.append(r)
                b.emit("wear", r)
                log(f"  {mode:6} sync {sync:6} {rate:>5}/s  "
                    f"{r['bytes_per_msg']:>8} B/msg  {r['gb_per_day']:>7} GB/day")
            c = m.stop()
            m.status_file.unlink(missing_ok=True)
            log(f"  {mode:6} sync {sync:6} counters: direct {c.get('direct')}, "
                f"spooled {c.get('spooled')}, spilled {c.get('spilled')}")
    b.summary["wear"] = rows
    log("")
    log("| rate | direct, sync normal | direct, sync full | always, sync "
        "normal | always, sync full |")
    log("| ---: | ---: | ---: | ---: | ---: |")
    for rate in WEAR_RATES:
        cells = []
        for mode in ("direct", "always"):
            for sync in ("normal", "full"):
                r = next(x for x in rows if x["mode"] == mode and
                         x["sync"] == sync and x["rate"] == rate)
                cells.append(f"{r['bytes_per_msg']} B ({r['gb_per_day']} "
                             f"GB/day)")
        log(f"| {rate} msg/s | " + " | ".join(cells) + " |")
    return rows


# --- scenario 6: hostile inputs -----------------------------------------------

def hostile_publish(topic_name, payloads, props, qos=1):
    """Publishes payloads with MQTT 5 user properties (paho)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    c = mqtt.Client(client_id=f"m2kb-hostile-pub-{os.getpid()}",
                    protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", MQTT_PORT)
    c.loop_start()
    pr = Properties(PacketTypes.PUBLISH)
    pr.UserProperty = props
    infos = [c.publish(topic_name, p, qos=qos, properties=pr) for p in payloads]
    for i in infos:
        i.wait_for_publish(60)
    c.loop_stop()
    c.disconnect()


def reading_batch(n):
    """A ReadingBatch of n readings, packed (protoc --python_out at run time)."""
    out = Path(tempfile.mkdtemp(prefix="m2kb-pb-"))
    run(["protoc", f"--proto_path={ROOT / 'proto'}", f"--python_out={out}",
         ROOT / "proto/telemetry.proto"])
    sys.path.insert(0, str(out))
    import telemetry_pb2
    b = telemetry_pb2.ReadingBatch(device_id="hostile")
    for i in range(n):
        b.readings.add(device_id="d", seq=i + 1, value=i * 0.5, metric="t")
    return b.SerializeToString()


def scenario_hostile(b):
    run_id = b.run
    m = M2K(b.work, "hostile",
            [(f"b/{run_id}/hostile/raw/{{device}}", f"m2kb.{run_id}.hostile.raw")])
    text = m.conf.read_text().replace("  qos: 1\n", "  qos: 1\n  max_payload: 4MiB\n")
    text += (f"  - match: \"b/{run_id}/hostile/batch/{{device}}\"\n"
             f"    topic: m2kb.{run_id}.hostile.batch\n"
             "    payload: iot.telemetry.v1.ReadingBatch\n"
             "    split: readings\n    format: json\n")
    m.conf.write_text(text)
    m.start()
    sampler = Sampler(m.proc.pid)
    sampler.start()
    base = proc_sample(m.proc.pid)
    props = [(f"p{i:02d}", "v" * 500) for i in range(32)]  # 16 KiB of headers
    r = {"rss_start_kib": base.get("VmRSS", 0)}
    batch = reading_batch(1024)
    hostile_publish(f"b/{run_id}/hostile/batch/dev", [batch] * 50, props)
    time.sleep(3)
    r["batch_1024x16KiB_bytes"] = len(batch)
    r["rss_after_split_kib"] = sampler.peak_kib
    hostile_publish(f"b/{run_id}/hostile/raw/big", [b"B" * (4 << 20)] * 20, [])
    time.sleep(3)
    r["rss_after_4MiB_kib"] = sampler.peak_kib
    stack("kafka", "pause")
    try:
        hostile_publish(f"b/{run_id}/hostile/raw/hdr", [b"h" * 100] * 20000, props)
        time.sleep(5)
        r["rss_window_with_headers_kib"] = sampler.peak_kib
    finally:
        stack("kafka", "resume")
    time.sleep(5)
    end = proc_sample(m.proc.pid)
    sampler.stop()
    c = m.stop()
    r.update({"rss_peak_kib": max(end.get("VmHWM", 0), sampler.peak_kib),
              "rss_end_kib": end.get("VmRSS", 0),
              "oversized": c.get("oversized"), "received": c.get("received")})
    b.emit("hostile", r)
    b.summary["hostile"] = r
    log(f"  RSS start {r['rss_start_kib'] // 1024} MiB; after 50 split batches "
        f"of 1,024 x 16 KiB headers {r['rss_after_split_kib'] // 1024} MiB; "
        f"after 20 x 4 MiB {r['rss_after_4MiB_kib'] // 1024} MiB; 20,000 x 16 KiB "
        f"headers with Kafka paused {r['rss_window_with_headers_kib'] // 1024} MiB; "
        f"peak {r['rss_peak_kib'] // 1024} MiB")
    return r


# --- static footprint and the machine -------------------------------------------

def machine():
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    osr = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osr = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(int(mem) / 2**20),
            "os": osr, "kernel": platform.release(),
            "load_at_start": os.getloadavg()[0]}


def binary_size():
    exe = BUILD / "mqtt2kafka"
    with tempfile.NamedTemporaryFile() as t:
        run(["strip", "-o", t.name, exe])
        stripped = os.path.getsize(t.name)
    return {"binary_bytes": os.path.getsize(exe), "stripped_bytes": stripped}


# --- the run ---------------------------------------------------------------------

class Bench:
    def __init__(self, quick):
        self.cfg = QUICK if quick else FULL
        self.mode = "quick" if quick else "full"
        self.run = time.strftime("%m%d%H%M%S")
        self.work = Path(tempfile.mkdtemp(prefix="m2k-bench-"))
        self.summary = {"mode": self.mode, "run": self.run,
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "machine": machine()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(RESULTS / "results.jsonl", "a")

    def emit(self, scenario, row):
        self.jsonl.write(json.dumps({"run": self.run, "mode": self.mode,
                                     "scenario": scenario, **row}) + "\n")
        self.jsonl.flush()


def main(argv):
    if "--plot" in argv:  # redraw from a results file
        plot(json.loads(Path(argv[argv.index("--plot") + 1]).read_text()))
        return 0
    quick = "--quick" in argv
    keep = "--keep-stack" in argv
    only = None
    if "--only" in argv:
        only = set(argv[argv.index("--only") + 1].split(","))
    b = Bench(quick)
    t_start = time.monotonic()
    log(f"bench ({b.mode}): private stack in {os.environ['M2K_STACK_DIR']}, "
        f"MQTT :{MQTT_PORT}, Kafka {KAFKA}; work in {b.work}")
    stack("up")
    rc = 0
    try:
        b.summary["binary"] = binary_size()
        tp = {}
        if not only or "throughput" in only:
            log("== throughput (100 devices, QoS 1, 100-byte readings)")
            tp = scenario_throughput(b)
        if not only or "latency" in only:
            log("== latency and footprint at half the sustained rate")
            scenario_latency(b, tp)
        if not only or "drain" in only:
            log("== backlog drain")
            scenario_drain(b, tp)
        if not only or "herd" in only:
            log("== thundering herd")
            scenario_herd(b)
        if not only or "smear" in only:
            log("== a fleet coming back: load smearing")
            scenario_smear(b)
        if not only or "wear" in only:
            log("== flash wear: bytes written per message, Kafka healthy")
            scenario_wear(b)
        if not only or "hostile" in only:
            log("== memory under hostile inputs")
            scenario_hostile(b)
    except (RuntimeError, subprocess.TimeoutExpired, KeyError) as e:
        import traceback
        traceback.print_exc()
        log(f"bench: error: {e!r}")
        rc = 1
    finally:
        b.summary["seconds"] = round(time.monotonic() - t_start)
        if not keep:
            stack("down", check=False)
    report(b)
    return rc


def plot(summary, out=None):
    """The data files and, with gnuplot, throughput.png."""
    out = Path(out or RESULTS)
    tp = summary.get("throughput")
    if not tp:
        return
    with open(out / "sustained.dat", "w") as f:
        for name, t in tp.items():
            f.write(f"{name} {t['rate']:.0f}\n")
    with open(out / "steps.dat", "w") as f:
        for name in ("pipe", "py", "normal", "full"):
            f.write(f"{name} published p99\n")
            for r in sorted(tp.get(name, {}).get("steps", []),
                            key=lambda r: r["published"]):
                f.write(f"{r['offered']} {r['published']:.0f} "
                        f"{max(r['p99'], 1)} {int(r['held'])}\n")
            f.write("\n\n")
    m = summary.get("machine", {})
    title = (f"mqtt2kafka {summary.get('mode')} run {summary.get('date')}: "
             f"{m.get('cores')} cores, {m.get('cpu')}")
    if subprocess.run(["sh", "-c", "command -v gnuplot"],
                      capture_output=True).returncode != 0:
        log("bench: gnuplot not installed: no PNG (test/stack/deps.sh bench)")
        return
    r = subprocess.run(["gnuplot", "-e", f"dir='{out}'; title='{title}'",
                        HERE / "plot.gp"], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"bench: gnuplot failed: {r.stderr.strip()[-400:]}")


def ratio(a, c):
    return round(a / c, 2) if a and c else None


def report(b):
    s = b.summary
    tp = s.get("throughput", {})
    if tp:
        ceil = tp.get("ceiling", {}).get("rate")
        s["ratios"] = {f"{m2k}/{base}": ratio(tp[m2k]["rate"], tp[base]["rate"])
                       for m2k in ("normal", "full") if m2k in tp
                       for base in ("ceiling", "pipe", "py") if base in tp}
        log("")
        log("| system | sustained msgs/s | × ceiling |")
        log("| --- | ---: | ---: |")
        for name, t in tp.items():
            lim = " (publisher limit)" if t["publisher_limited"] else ""
            log(f"| {name} | {t['rate']:.0f}{lim} | {ratio(t['rate'], ceil)} |")
        log(f"ratios: {json.dumps(s['ratios'])}")
    (RESULTS / ("latest-quick.json" if b.mode == "quick" else "latest.json")
     ).write_text(json.dumps(s, indent=1) + "\n")
    if b.mode == "full":
        plot(s)
    log(f"bench: {s['seconds']} s; results in {RESULTS}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
