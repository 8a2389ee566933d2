"""Running the mqtt2kafka daemon and the test tools from integration tests.

A test gets a Bridge with its own config file, spool and topic namespace
(everything prefixed with a unique string), so tests sharing one Mosquitto
and one Kafka never see each other's data.
"""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path


def write_config(path, stack, uniq, spool, routes=None, extra=None):
    """Writes a config for this test's namespace; returns the path."""
    if routes is None:
        routes = [
            (f"{uniq}/sensors/{{region}}/{{type}}/{{device}}",
             f"it.{uniq}.sensor.{{region}}.{{type}}", "{device}"),
            (f"{uniq}/gateways/{{gateway}}/events/#",
             f"it.{uniq}.gateway.events", "{gateway}"),
        ]
    extra = extra or {}
    sections = {
        "gateway": {"id": f"gw-{uniq}"},
        "mqtt": {"host": stack.mqtt_host, "port": stack.mqtt_port,
                 "client_id": f"m2k-{uniq}", "protocol": 5, "qos": 1,
                 "keepalive": 10, "reconnect_max": 2},
        "kafka": {"brokers": stack.kafka, "compression": "lz4",
                  "dead_letter_topic": f"it.{uniq}.dead-letter",
                  "shutdown_timeout": "5s",
                  "properties": {"linger.ms": 5}},
        "spool": {"path": str(spool), "max_bytes": "256MiB",
                  "on_full": "drop_oldest", "max_age": "7d", "sync": "normal"},
        "log": {"stats_interval": 2, "level": "info",
                "status_file": str(Path(spool).parent / "status")},
        # a free port of its own (the default 9464 may be taken by another
        # bridge on this machine); Bridge.metrics_port says which
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for sec, kv in extra.items():
        sections.setdefault(sec, {}).update(kv)
    lines = []
    for sec, kv in sections.items():
        lines.append(f"{sec}:")
        for k, v in kv.items():
            if isinstance(v, dict):
                lines.append(f"  {k}:")
                for k2, v2 in v.items():
                    lines.append(f"    {k2}: {json.dumps(v2)}")
            else:
                lines.append(f"  {k}: {json.dumps(v)}")
    lines.append("routes:")
    for match, topic, key in routes:
        lines.append(f"  - match: {json.dumps(match)}")
        lines.append(f"    topic: {json.dumps(topic)}")
        if key is not None:
            lines.append(f"    key: {json.dumps(key)}")
    Path(path).write_text("\n".join(lines) + "\n")
    return path


LIVE = []  # every daemon started, so a failed test cannot leak one


def kill_all():
    """Kills daemons a test left running (called after each test)."""
    while LIVE:
        LIVE.pop().kill()


class Bridge:
    """One mqtt2kafka daemon under test."""

    def __init__(self, stack, tmp, uniq, routes=None, extra=None, env=None):
        self.stack, self.uniq, self.tmp = stack, uniq, Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.spool = self.tmp / "spool.db"
        self.conf = write_config(self.tmp / "m2k.yaml", stack, uniq,
                                 self.spool, routes, extra)
        self.bin = str(stack.build / "mqtt2kafka")
        self.proc = None
        self.env = dict(os.environ, **(env or {}))
        self.runs = 0

    @property
    def log_path(self):
        return self.tmp / f"bridge-{self.runs}.log"

    def start(self, env=None, wait_connected=True):
        self.runs += 1
        e = dict(self.env, **(env or {}))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.bin, "run", "-c", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=e)
        if self not in LIVE:
            LIVE.append(self)
        if wait_connected:
            self.wait_log("mqtt: connected", 20)
        return self

    def logtext(self, run=None):
        p = self.tmp / f"bridge-{run or self.runs}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def all_logs(self):
        return "".join(self.logtext(i) for i in range(1, self.runs + 1))

    def wait_log(self, needle, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.logtext():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"bridge exited ({self.proc.returncode}) before logging "
                    f"{needle!r}:\n{self.logtext()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"bridge never logged {needle!r} in {timeout}s:\n"
                             f"{self.logtext()[-3000:]}")

    def stop(self, timeout=30):
        """SIGTERM; returns the exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("bridge did not exit within %ds of SIGTERM"
                                 % timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def counters(self, which="final"):
        """The last `final:` (or `stats:`) counter line as a dict."""
        out = {}
        for line in self.all_logs().splitlines():
            if f" {which}: " in line:
                out = dict(kv.split("=", 1) for kv in
                           line.split(f" {which}: ", 1)[1].split()
                           if "=" in kv)
        return {k: (int(v) if v.lstrip("-").isdigit() else v)
                for k, v in out.items()}

    @property
    def metrics_port(self):
        """The port the running daemon serves /metrics on (from its log)."""
        m = re.findall(r"metrics: http://[^ ]*:(\d+)/metrics", self.logtext())
        assert m, f"no metrics address in the log:\n{self.logtext()[-2000:]}"
        return int(m[-1])

    def status(self):
        """`mqtt2kafka status`: (exit code, output)."""
        r = subprocess.run([self.bin, "status", "-c", str(self.conf)],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def spool_stats(self):
        r = subprocess.run([self.bin, "spool", "-c", str(self.conf), "stats"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout


def pub(stack, topic_template, devices=5, count=100, rate=0, qos=1, size=0,
        acked=None, extra=(), timeout=120, check=True):
    """Runs m2k-pub; returns its JSON summary."""
    cmd = [str(stack.build / "tools" / "m2k-pub"), "-H", stack.mqtt_host,
           "-p", str(stack.mqtt_port), "-d", str(devices), "-n", str(count),
           "-r", str(rate), "-q", str(qos), "-T", topic_template]
    if size:
        cmd += ["-s", str(size)]
    if acked:
        cmd += ["--acked", str(acked)]
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"m2k-pub failed: {r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def pub_background(stack, topic_template, devices, seconds, rate, acked):
    """Starts m2k-pub publishing at QoS 1 for `seconds`; returns the Popen
    (communicate() waits for it)."""
    return subprocess.Popen(
        [str(stack.build / "tools" / "m2k-pub"), "-H", stack.mqtt_host,
         "-p", str(stack.mqtt_port), "-d", str(devices), "-t", str(seconds),
         "-r", str(rate), "-q", "1", "-T", topic_template,
         "--acked", str(acked)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def verify(stack, topics, acked=None, expect=None, idle=5, timeout=120):
    """Runs m2k-verify; returns (exit code, JSON summary)."""
    cmd = [str(stack.build / "tools" / "m2k-verify"), "-b", stack.kafka,
           "-t", ",".join(topics) if isinstance(topics, list) else topics,
           "--idle", str(idle), "--timeout", str(timeout)]
    if acked:
        cmd += ["--acked", str(acked)]
    if expect:
        cmd += ["-e", str(expect)]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout + 30)
    assert r.stdout.strip(), f"m2k-verify printed nothing: {r.stderr}"
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])
