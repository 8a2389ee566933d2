"""Fixtures for the integration tests: a real Mosquitto and a real Kafka.

The session fixture `stack` runs `test/stack/stack.sh up` once (a Mosquitto
from Debian's package and an Apache Kafka 3.9.1 KRaft broker, both on
127.0.0.1), and `stack.sh down` at the end, also when tests fail. When
MQTT2KAFKA_TEST_MQTT and MQTT2KAFKA_TEST_KAFKA are set (host:port each), those
brokers are used instead and nothing is started; the fault controls then skip
the test. If the brokers were already up before the session (a developer ran
`stack.sh up`), they are used and left running; test sessions running at the
same time share the stack and the last one out stops it.

The API other tests rely on:
  stack.mqtt_host, stack.mqtt_port, stack.mqtt ("host:port"), stack.kafka
  ("host:port"), stack.build, stack.repo, stack.dir (pathlib.Path),
  stack.external, stack.env (os.environ plus the MQTT2KAFKA_TEST_* pair)
  stack.kafka_ctl(action), stack.mqtt_ctl(action)
      start|stop|kill|pause|resume|restart; after every test a paused broker
      is resumed and a stopped one started again
  stack.create_topic(name, partitions=1)
  stack.consume(topic, count, timeout=30) -> list of record dicts
  stack.produce(topic, values, key=None, headers=None, timeout=10)
  stack.log(which) -> last lines of the broker's log
and the function fixture `uniq`, a short unique string per test.

Only the standard library and pytest; Kafka is reached through kcat.
"""
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STACK_SH = REPO / "test" / "stack" / "stack.sh"
KAFKA_VERSION = "3.9.1"

_events = []  # lines for the terminal summary: which brokers, started/stopped


class StackError(AssertionError):
    """A broker could not be reached or driven; the message says which."""


def _split(addr):
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def _text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def _raw(s):
    """kcat -J writes bytes >= 0x80 unescaped and escapes the rest as JSON:
    reading the line with surrogateescape and writing strings back the same
    way gives the exact bytes of any payload."""
    return None if s is None else s.encode("utf-8", "surrogateescape")


class Stack:
    def __init__(self, mqtt, kafka, external):
        self.mqtt = mqtt
        self.mqtt_host, self.mqtt_port = _split(mqtt)
        self.kafka = kafka
        self.external = external
        self.repo = REPO
        self.build = pathlib.Path(os.environ.get("M2K_BUILD", REPO / "build")).resolve()
        self.dir = pathlib.Path(os.environ.get(
            "M2K_STACK_DIR",
            pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"mqtt2kafka-stack-{os.getuid()}"))
        self.env = dict(os.environ, MQTT2KAFKA_TEST_MQTT=mqtt, MQTT2KAFKA_TEST_KAFKA=kafka)
        self._touched = set()

    # --- stack.sh ---------------------------------------------------------
    def sh(self, *args, timeout=180, check=True):
        try:
            p = subprocess.run([str(STACK_SH), *args], capture_output=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise StackError(f"stack.sh {' '.join(args)} did not finish in {timeout}s:\n"
                             f"{_text(e.stdout)}{_text(e.stderr)}") from None
        out = _text(p.stdout) + _text(p.stderr)
        if check and p.returncode != 0:
            raise StackError(f"stack.sh {' '.join(args)} failed (exit {p.returncode}):\n{out}")
        return out

    def _ctl(self, which, action):
        if self.external:
            pytest.skip(f"brokers are external (MQTT2KAFKA_TEST_*): cannot {action} {which}")
        if action not in ("start", "stop", "kill", "pause", "resume", "restart"):
            raise ValueError(f"unknown action {action!r}")
        self._touched.add(which)
        return self.sh(which, action, timeout=150)

    def kafka_ctl(self, action):
        return self._ctl("kafka", action)

    def mqtt_ctl(self, action):
        return self._ctl("mqtt", action)

    def heal(self):
        """Put brokers a test paused or stopped back to running."""
        if self.external or not self._touched:
            return
        for which in sorted(self._touched):
            self.sh(which, "resume", check=False)
            self.sh(which, "start", timeout=150)
        self._touched.clear()

    def log(self, which, lines=60):
        name = {"kafka": "kafka", "mqtt": "mosquitto"}[which]
        path = self.dir / "logs" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {path})"

    # --- Kafka through kcat ------------------------------------------------
    def create_topic(self, name, partitions=1):
        p = subprocess.run([sys.executable, str(REPO / "test/stack/kafka_topic.py"), self.kafka,
                            name, str(partitions)], capture_output=True, timeout=60)
        if p.returncode != 0:
            raise StackError(_text(p.stderr).strip() or f"creating topic {name} failed")

    def consume(self, topic, count, timeout=30):
        """Up to `count` records of `topic` from the beginning (all
        partitions); returns early when `count` are in, else what arrived
        within `timeout` seconds. Raises StackError when Kafka is unreachable,
        so a dead broker is not misread as lost messages."""
        cmd = ["kcat", "-C", "-b", self.kafka, "-t", topic, "-o", "beginning", "-c", str(count),
               "-J", "-u", "-q", "-X", "topic.metadata.refresh.interval.ms=1000"]
        recs, err = [], ""
        deadline = time.monotonic() + timeout
        while True:
            out, err, rc, timed_out = _run_bounded(cmd, max(deadline - time.monotonic(), 0.1))
            recs = _parse_kcat_json(out)
            # A topic that does not exist yet (the bridge has not written it)
            # is waited for, not an error.
            if rc != 0 and not timed_out and "Unknown topic" in err and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            break
        if len(recs) < count and _unreachable(err):
            raise StackError(f"Kafka at {self.kafka} is unreachable (read {len(recs)}/{count} "
                             f"records of {topic!r}): {_last_error(err)}")
        if len(recs) < count and not timed_out and rc != 0:
            raise StackError(f"kcat could not consume {topic!r} from {self.kafka} "
                             f"(exit {rc}): {_last_error(err)}")
        return recs

    def produce(self, topic, values, key=None, headers=None, timeout=10, partition=None):
        """Write each of `values` (bytes or str, non-empty) as one record and
        wait for Kafka's acknowledgement; raises StackError when Kafka did not
        take them all within `timeout` seconds."""
        vals = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        if any(len(v) == 0 for v in vals):
            raise ValueError("kcat skips empty values; produce non-empty ones")
        delim = b""
        while not delim or any(delim in v for v in vals):
            delim = b"\x1e" + secrets.token_hex(12).encode() + b"\x1f"
        cmd = ["kcat", "-P", "-b", self.kafka, "-t", topic, "-D", delim.decode(),
               "-X", f"message.timeout.ms={int(timeout * 1000)}"]
        if key is not None:
            cmd += ["-k", key.decode() if isinstance(key, bytes) else str(key)]
        if partition is not None:
            cmd += ["-p", str(partition)]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}={v.decode() if isinstance(v, bytes) else v}"]
        data = b"".join(v + delim for v in vals)
        try:
            p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            raise StackError(f"kcat producing to {topic!r} on {self.kafka} hung "
                             f"past {timeout + 15}s") from None
        err = _text(p.stderr)
        if p.returncode != 0 or "Delivery failed" in err:
            raise StackError(f"producing {len(vals)} record(s) to {topic!r} on Kafka at "
                             f"{self.kafka} failed (kcat exit {p.returncode}): {_last_error(err)}")


# --- kcat helpers -------------------------------------------------------------
def _run_bounded(cmd, timeout):
    """Run cmd; on timeout stop it with SIGTERM (kcat then flushes what it
    has) and return the partial output. -> (stdout bytes, stderr, rc, timed_out)"""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
        return out, _text(err), p.returncode, False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return out, _text(err), p.returncode, True


def _parse_kcat_json(out):
    recs = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        if not line.startswith("{"):
            continue
        try:
            j = json.loads(line)
        except ValueError:
            continue  # a line cut by the timeout
        flat = j.get("headers") or []
        hlist = [(_raw(flat[i]).decode("utf-8", "replace"), _raw(flat[i + 1]))
                 for i in range(0, len(flat) - 1, 2)]
        recs.append({
            "topic": j["topic"], "partition": j["partition"], "offset": j["offset"],
            "key": _raw(j.get("key")), "value": _raw(j.get("payload")),
            "headers": dict(hlist), "header_list": hlist, "timestamp": j.get("ts"),
        })
    return recs


def _unreachable(err):
    return any(s in err for s in ("Connection refused", "brokers are down",
                                  "Broker transport failure", "Failed to query metadata"))


def _last_error(err):
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    return lines[-1] if lines else "(kcat printed nothing)"


# --- fixtures -------------------------------------------------------------------
def _say(config, line):
    _events.append(line)
    capman = config.pluginmanager.getplugin("capturemanager")
    tr = config.pluginmanager.getplugin("terminalreporter")
    if capman is not None and tr is not None:
        with capman.global_and_fixture_disabled():
            tr.write_line(line)


def _mqtt_version():
    for exe in ("mosquitto", "/usr/sbin/mosquitto"):
        try:
            p = subprocess.run([exe, "-h"], capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        for ln in _text(p.stdout).splitlines():
            if ln.startswith("mosquitto version"):
                return ln.split()[-1]
    return "?"


@pytest.fixture(scope="session")
def stack(request):
    mqtt = os.environ.get("MQTT2KAFKA_TEST_MQTT")
    kafka = os.environ.get("MQTT2KAFKA_TEST_KAFKA")
    if mqtt and kafka:
        s = Stack(mqtt, kafka, external=True)
        _say(request.config, f"stack: using EXTERNAL brokers: Mosquitto at {mqtt}, Kafka at {kafka}")
        yield s
        return

    env = dict(line.split("=", 1) for line in Stack("x:0", "x:0", False).sh("env").split()
               if "=" in line)
    s = Stack(env["MQTT2KAFKA_TEST_MQTT"], env["MQTT2KAFKA_TEST_KAFKA"], external=False)
    # Sessions that share the default stack hold a lease each; the last one
    # out stops it. A stack that was up with no lease (a developer's own
    # `stack.sh up`) is used and left running.
    leases = s.dir / "leases"
    lease = leases / str(os.getpid())
    running = s.sh("status", check=False).count(" running ") == 2
    others = _live_leases(leases)
    manual = running and not others
    if not manual:  # before `up`, so a session arriving meanwhile sees it
        leases.mkdir(parents=True, exist_ok=True)
        lease.touch()
    if manual:
        _say(request.config, f"stack: brokers already running (started by hand, left up): "
                             f"Mosquitto at {s.mqtt}, Kafka at {s.kafka} (logs in {s.dir}/logs)")
    else:
        # Idempotent, and it waits on stack.sh's lock for a session that is
        # starting the brokers right now.
        try:
            out = s.sh("up", timeout=600)
        except StackError:
            lease.unlink(missing_ok=True)
            if not _live_leases(leases):
                s.sh("down", check=False)
            raise
        _events.extend(out.splitlines())
        if " up on " in out:
            _say(request.config, f"stack: started a real Mosquitto {_mqtt_version()} on {s.mqtt} "
                                 f"and a real Apache Kafka {KAFKA_VERSION} (KRaft) on {s.kafka}; "
                                 f"logs in {s.dir}/logs")
        else:
            _say(request.config, f"stack: sharing the running Mosquitto at {s.mqtt} and Kafka at "
                                 f"{s.kafka} with another test session")
    try:
        yield s
    finally:
        lease.unlink(missing_ok=True)
        if manual or os.environ.get("M2K_KEEP_STACK"):
            pass
        elif _live_leases(leases):
            _say(request.config, "stack: another test session still uses the brokers; left up")
        else:
            s.sh("down", check=False, timeout=120)
            _say(request.config, f"stack: stopped Mosquitto ({s.mqtt}) and Kafka ({s.kafka})")


def _live_leases(leases):
    live = []
    for f in leases.glob("*") if leases.is_dir() else []:
        try:
            os.kill(int(f.name), 0)
            live.append(f)
        except (ValueError, ProcessLookupError):
            f.unlink(missing_ok=True)
        except PermissionError:
            live.append(f)
    return live


@pytest.fixture(autouse=True)
def _stack_heal(request):
    """After a test that drove a broker, resume it / start it again so the
    next test does not inherit a paused or stopped broker."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").heal()


@pytest.fixture
def uniq(request):
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:24].strip("-")
    return f"{base}-{secrets.token_hex(3)}"


def pytest_terminal_summary(terminalreporter):
    if _events:
        terminalreporter.section("brokers used")
        for line in _events:
            terminalreporter.write_line(line)
