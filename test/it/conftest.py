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
  stack.external, stack.env (os.environ plus every MQTT2KAFKA_TEST_* line
  of `stack.sh env`)
  stack.kafka_ctl(action), stack.mqtt_ctl(action)
      start|stop|kill|pause|resume|restart; after every test a paused broker
      is resumed and a stopped one started again
  stack.create_topic(name, partitions=1)
  stack.consume(topic, count, timeout=30, props=None) -> list of record dicts
  stack.produce(topic, values, key=None, headers=None, timeout=10,
                partition=None, props=None)
      props: librdkafka properties (stack.kafka_props) to use a secured
      listener instead of the plain one
  stack.log(which) -> last lines of the broker's log
and the function fixture `uniq`, a short unique string per test.

The secured endpoints ("host:port"; None when absent, as with external
brokers that do not name them in the same MQTT2KAFKA_TEST_* variables):
  stack.mqtt_tls             TLS, stack.mqtt_user + stack.mqtt_password_file
  stack.mqtt_mtls            TLS, a client certificate is required (the
                             user name is its CN, m2k-client)
  stack.mqtt_tls_wrong_host  as mqtt_tls, certificate for wrong.example only
  stack.mqtt_tls_expired     as mqtt_tls, certificate expired in 2020
  stack.kafka_ssl            SSL, a client certificate is requested, not
                             required
  stack.kafka_mtls           SSL, a client certificate is required
  stack.kafka_sasl_ssl, stack.kafka_sasl_plaintext
                             SASL PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
  stack.kafka_ssl_wrong_host, stack.kafka_ssl_expired   as kafka_ssl, with
                             the bad certificates above
  stack.kafka_users          {mechanism: (user name, password file)}
  stack.ca                   the CA all good server and client certificates
                             chain to; stack.client_cert, stack.client_key
  stack.other_ca             a CA nothing chains to; stack.other_client_cert
                             and _key: a client certificate from it
  stack.expired_client_cert, stack.expired_client_key
  (files are pathlib.Path; keys and password files are mode 0600; the
  passwords are new after every `stack.sh down`)
  stack.secret(path) -> the password in a password file
  stack.secrets() -> every password of the stack, to assert none is printed
  stack.require(*names) -> skips the test unless those attributes are set
      (a name "kafka_users:SCRAM-SHA-512" asks for that mechanism's user)
  stack.kafka_props(endpoint, mechanism=None, password=None, ca=None,
                    cert=None) -> librdkafka properties for a secured
      listener: endpoint "ssl", "mtls", "sasl_ssl", ...; cert "client",
      "other" or "expired"

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


# `stack.sh env` name -> Stack attribute; the value is "host:port" or a file.
SECURED = {
    "MQTT2KAFKA_TEST_MQTT_TLS": "mqtt_tls",
    "MQTT2KAFKA_TEST_MQTT_MTLS": "mqtt_mtls",
    "MQTT2KAFKA_TEST_MQTT_TLS_WRONG_HOST": "mqtt_tls_wrong_host",
    "MQTT2KAFKA_TEST_MQTT_TLS_EXPIRED": "mqtt_tls_expired",
    "MQTT2KAFKA_TEST_MQTT_USER": "mqtt_user",
    "MQTT2KAFKA_TEST_MQTT_PASSWORD_FILE": "mqtt_password_file",
    "MQTT2KAFKA_TEST_KAFKA_SSL": "kafka_ssl",
    "MQTT2KAFKA_TEST_KAFKA_SASL_SSL": "kafka_sasl_ssl",
    "MQTT2KAFKA_TEST_KAFKA_SASL_PLAINTEXT": "kafka_sasl_plaintext",
    "MQTT2KAFKA_TEST_KAFKA_MTLS": "kafka_mtls",
    "MQTT2KAFKA_TEST_KAFKA_SSL_WRONG_HOST": "kafka_ssl_wrong_host",
    "MQTT2KAFKA_TEST_KAFKA_SSL_EXPIRED": "kafka_ssl_expired",
    "MQTT2KAFKA_TEST_TLS_CA": "ca",
    "MQTT2KAFKA_TEST_TLS_CLIENT_CERT": "client_cert",
    "MQTT2KAFKA_TEST_TLS_CLIENT_KEY": "client_key",
    "MQTT2KAFKA_TEST_TLS_OTHER_CA": "other_ca",
    "MQTT2KAFKA_TEST_TLS_OTHER_CLIENT_CERT": "other_client_cert",
    "MQTT2KAFKA_TEST_TLS_OTHER_CLIENT_KEY": "other_client_key",
    "MQTT2KAFKA_TEST_TLS_EXPIRED_CLIENT_CERT": "expired_client_cert",
    "MQTT2KAFKA_TEST_TLS_EXPIRED_CLIENT_KEY": "expired_client_key",
}
KAFKA_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _raw(s):
    """kcat -J writes bytes >= 0x80 unescaped and escapes the rest as JSON:
    reading the line with surrogateescape and writing strings back the same
    way gives the exact bytes of any payload."""
    return None if s is None else s.encode("utf-8", "surrogateescape")


class Stack:
    def __init__(self, mqtt, kafka, external, info=None):
        """info: the MQTT2KAFKA_TEST_* variables (`stack.sh env`, or the
        environment for external brokers) naming the secured endpoints."""
        self.mqtt = mqtt
        self.mqtt_host, self.mqtt_port = _split(mqtt)
        self.kafka = kafka
        self.external = external
        self.repo = REPO
        self.build = pathlib.Path(os.environ.get("M2K_BUILD", REPO / "build")).resolve()
        self.dir = pathlib.Path(os.environ.get(
            "M2K_STACK_DIR",
            pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"mqtt2kafka-stack-{os.getuid()}"))
        info = {k: v for k, v in (info or {}).items() if k.startswith("MQTT2KAFKA_TEST_") and v}
        self.env = dict(os.environ, **info)
        self.env.update(MQTT2KAFKA_TEST_MQTT=mqtt, MQTT2KAFKA_TEST_KAFKA=kafka)
        for name, attr in SECURED.items():
            v = info.get(name)
            if v and (name.endswith("_FILE") or name.startswith("MQTT2KAFKA_TEST_TLS_")):
                v = pathlib.Path(v)
            setattr(self, attr, v)
        self.kafka_users = {}
        for mech in KAFKA_MECHANISMS:
            key = "MQTT2KAFKA_TEST_KAFKA_" + mech.replace("-", "_")
            if info.get(key + "_USER") and info.get(key + "_PASSWORD_FILE"):
                self.kafka_users[mech] = (info[key + "_USER"],
                                          pathlib.Path(info[key + "_PASSWORD_FILE"]))
        self._touched = set()

    # --- secured endpoints -------------------------------------------------
    def require(self, *names):
        """Skip the test unless the stack offers all these attributes (or
        "kafka_users:MECHANISM")."""
        missing = []
        for n in names:
            mech = n.partition(":")[2]
            if (mech and mech not in self.kafka_users) or (not mech and not getattr(self, n)):
                missing.append(n)
        if missing:
            pytest.skip(f"the test brokers offer no {', '.join(missing)} "
                        f"(external brokers without the MQTT2KAFKA_TEST_* variables for them)")

    @staticmethod
    def secret(path):
        """The password in a password file (one trailing newline stripped)."""
        text = pathlib.Path(path).read_text()
        return text[:-1] if text.endswith("\n") else text

    def secrets(self):
        """Every password of the stack: none may show in any output."""
        files = [f for _, f in self.kafka_users.values()]
        if self.mqtt_password_file:
            files.append(self.mqtt_password_file)
        return [self.secret(f) for f in files]

    def kafka_props(self, endpoint, mechanism=None, password=None, ca=None, cert=None):
        """librdkafka properties for the secured listener `endpoint` ("ssl",
        "mtls", "sasl_ssl", "sasl_plaintext", "ssl_wrong_host",
        "ssl_expired"): the stack's CA (or `ca`), the user of `mechanism`
        with its password (or `password`), and the client certificate
        `cert` ("client", "other", "expired")."""
        addr = getattr(self, "kafka_" + endpoint)
        if addr is None:
            self.require("kafka_" + endpoint)
        sasl = endpoint.startswith("sasl_")
        if sasl != (mechanism is not None):
            raise ValueError(f"{endpoint}: a SASL mechanism goes with the sasl_* endpoints only")
        props = {"bootstrap.servers": addr, "security.protocol": endpoint.upper()
                 if sasl else "SSL"}
        if endpoint != "sasl_plaintext":
            self.require("ca")
            props["ssl.ca.location"] = str(ca or self.ca)
        if sasl:
            self.require("kafka_users:" + mechanism)
            user, pwfile = self.kafka_users[mechanism]
            props.update({"sasl.mechanism": mechanism, "sasl.username": user,
                          "sasl.password": self.secret(pwfile) if password is None else password})
        if cert:
            prefix = "" if cert == "client" else cert + "_"
            self.require(prefix + "client_cert", prefix + "client_key")
            props["ssl.certificate.location"] = str(getattr(self, prefix + "client_cert"))
            props["ssl.key.location"] = str(getattr(self, prefix + "client_key"))
        return props

    def _kcat_conn(self, props):
        """kcat's -b and -X arguments, and the address for messages."""
        if not props:
            return ["-b", self.kafka], self.kafka
        props = dict(props)
        addr = props.pop("bootstrap.servers", self.kafka)
        args = ["-b", addr]
        for k, v in props.items():
            args += ["-X", f"{k}={v}"]
        return args, addr

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

    def consume(self, topic, count, timeout=30, props=None):
        """Up to `count` records of `topic` from the beginning (all
        partitions); returns early when `count` are in, else what arrived
        within `timeout` seconds. Raises StackError when Kafka is unreachable,
        so a dead broker is not misread as lost messages."""
        conn, addr = self._kcat_conn(props)
        cmd = ["kcat", "-C", *conn, "-t", topic, "-o", "beginning", "-c", str(count),
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
            raise StackError(f"Kafka at {addr} is unreachable (read {len(recs)}/{count} "
                             f"records of {topic!r}): {_last_error(err)}")
        if len(recs) < count and not timed_out and rc != 0:
            raise StackError(f"kcat could not consume {topic!r} from {addr} "
                             f"(exit {rc}): {_last_error(err)}")
        return recs

    def produce(self, topic, values, key=None, headers=None, timeout=10, partition=None,
                props=None):
        """Write each of `values` (bytes or str, non-empty) as one record and
        wait for Kafka's acknowledgement; raises StackError when Kafka did not
        take them all within `timeout` seconds."""
        vals = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        if any(len(v) == 0 for v in vals):
            raise ValueError("kcat skips empty values; produce non-empty ones")
        delim = b""
        while not delim or any(delim in v for v in vals):
            delim = b"\x1e" + secrets.token_hex(12).encode() + b"\x1f"
        conn, addr = self._kcat_conn(props)
        cmd = ["kcat", "-P", *conn, "-t", topic, "-D", delim.decode(),
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
            raise StackError(f"kcat producing to {topic!r} on {addr} hung "
                             f"past {timeout + 15}s") from None
        err = _text(p.stderr)
        if p.returncode != 0 or "Delivery failed" in err:
            raise StackError(f"producing {len(vals)} record(s) to {topic!r} on Kafka at "
                             f"{addr} failed (kcat exit {p.returncode}): {_last_error(err)}")


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
    # split on "\n" only: splitlines() also splits on \x1c-\x1e and \x85,
    # which a binary payload holds (kcat escapes only the JSON controls)
    for line in out.decode("utf-8", "surrogateescape").split("\n"):
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
    """The line that names the cause: librdkafka's last FAIL line (refused,
    TLS, authentication) rather than kcat's summary after it."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    fails = [ln for ln in lines if "|FAIL|" in ln]
    return (fails or lines or ["(kcat printed nothing)"])[-1]


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
        s = Stack(mqtt, kafka, external=True, info=os.environ)
        _say(request.config, f"stack: using EXTERNAL brokers: Mosquitto at {mqtt}, Kafka at {kafka}")
        yield s
        return

    env = dict(line.split("=", 1) for line in Stack("x:0", "x:0", False).sh("env").split()
               if "=" in line)
    s = Stack(env["MQTT2KAFKA_TEST_MQTT"], env["MQTT2KAFKA_TEST_KAFKA"], external=False,
              info=env)
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
