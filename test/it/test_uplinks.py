"""Uplinks for the field: TLS and logins on both sides, secrets out of the
YAML, failures an operator can read, and reload (SIGHUP) without loss,
against the stack's secured listeners (certificates and passwords made with
openssl when it starts).

Each test runs its own daemon and checks what an operator or a consumer
sees: records in Kafka (m2k-verify through the same secured listener),
`mqtt2kafka status`, the status file, the log, the sd_notify messages
(NOTIFY_SOCKET), the exit codes of `mqtt2kafka reload` and `check`. After
every test, every output it produced (logs, status files, command output,
notifications) is searched for every password the stack and the test made:
none may appear.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from bridge_util import Bridge, kill_all, pub, pub_background, write_config
from conftest import StackError

SASL_CASES = [("sasl_ssl", "PLAIN"), ("sasl_ssl", "SCRAM-SHA-256"),
              ("sasl_ssl", "SCRAM-SHA-512"), ("sasl_plaintext", "SCRAM-SHA-512"),
              ("sasl_plaintext", "PLAIN")]

MADE_UP = ["wr0ng-pa55word-for-the-test", "an0ther-wr0ng-one-x7"]


# --- every output of a test, and no secret in any -----------------------------
class Outputs:
    def __init__(self, tmp_path):
        self.tmp, self.texts, self.n = pathlib.Path(tmp_path), [], 0

    def add(self, what, text):
        self.texts.append((what, text if isinstance(text, str) else
                           text.decode("utf-8", "replace")))
        return text

    def run(self, cmd, **kw):
        """Runs cmd; keeps stdout and stderr. -> CompletedProcess (text)."""
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                           timeout=kw.pop("timeout", 90), **kw)
        self.add(" ".join(map(str, cmd)), p.stdout + p.stderr)
        return p

    def files(self):
        """Everything the daemons wrote: logs and status files."""
        for f in self.tmp.rglob("*"):
            if f.is_file() and (f.name.startswith("bridge-") or f.name == "status" or
                                f.suffix == ".notify"):
                yield str(f), f.read_text(errors="replace")


def leaks(o, secrets):
    """Where any of secrets shows in what o collected: [(where, secret)]."""
    return [(what, s) for what, text in list(o.texts) + list(o.files())
            for s in secrets if s in text]


@pytest.fixture
def out(stack, tmp_path):
    o = Outputs(tmp_path)
    yield o
    kill_all()
    secrets = [s for s in stack.secrets() + MADE_UP if s]
    keystore = stack.dir / "tls" / "keystore.password"
    if keystore.exists():
        secrets.append(stack.secret(keystore))
    found = leaks(o, secrets)
    assert not found, f"a secret was printed: {[w for w, _ in found]}"
    o.texts.clear()


def test_the_secret_search_finds_a_printed_secret(tmp_path):
    """The check every test ends with can fail: a secret in a daemon's log,
    a status file or a command's output is found."""
    o = Outputs(tmp_path)
    assert leaks(o, MADE_UP) == []
    (tmp_path / "bridge-1.log").write_text(f"info  login with {MADE_UP[0]}\n")
    (tmp_path / "status").write_text("uplink=down\n")
    o.add("mqtt2kafka check", f"password {MADE_UP[1]}")
    assert sorted(s for _, s in leaks(o, MADE_UP)) == sorted(MADE_UP)


# --- helpers ---------------------------------------------------------------------
def private(path, text):
    """A secret file as an admin makes it: mode 0600, one newline."""
    path = pathlib.Path(path)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def kafka_section(stack, endpoint, mechanism=None, password_file=None, ca=None,
                  cert=None):
    """The bridge's kafka keys for the stack's secured listener `endpoint`."""
    addr = getattr(stack, "kafka_" + endpoint)
    if addr is None:
        stack.require("kafka_" + endpoint)
    proto = {"mtls": "ssl", "ssl_wrong_host": "ssl", "ssl_expired": "ssl"}.get(endpoint,
                                                                              endpoint)
    sec = {"protocol": proto}
    if mechanism:
        stack.require("kafka_users:" + mechanism)
        user, pwfile = stack.kafka_users[mechanism]
        sec.update(sasl_mechanism=mechanism, username=user,
                   password_file=str(password_file or pwfile))
    if proto in ("ssl", "sasl_ssl"):
        stack.require("ca")
        sec["ca_file"] = str(ca or stack.ca)
    if cert:
        sec["cert_file"], sec["key_file"] = str(stack.client_cert), str(stack.client_key)
    return {"brokers": addr, "security": sec}


def mqtt_section(stack, addr, password_file=None, ca=None, cert=False, login=True):
    host, port = addr.rsplit(":", 1)
    m = {"host": host, "port": int(port), "tls": {"ca_file": str(ca or stack.ca)}}
    if login:
        m.update(username=stack.mqtt_user,
                 password_file=str(password_file or stack.mqtt_password_file))
    if cert:
        m["tls"].update(cert_file=str(stack.client_cert), key_file=str(stack.client_key))
    return m


def verify_props(tmp_path, props):
    """A -F file for m2k-verify: the password never on a command line."""
    f = tmp_path / "verify.properties"
    f.write_text("".join(f"{k}={v}\n" for k, v in props.items()
                         if k != "bootstrap.servers"))
    f.chmod(0o600)
    return f


def verify(out, stack, tmp_path, topics, props=None, acked=None, expect=None, idle=5,
           timeout=120):
    """m2k-verify, through a secured listener when props are given."""
    cmd = [stack.build / "tools" / "m2k-verify", "-t",
           ",".join(topics) if isinstance(topics, list) else topics,
           "--idle", str(idle), "--timeout", str(timeout)]
    if props:
        cmd += ["-b", props["bootstrap.servers"], "-F", verify_props(tmp_path, props)]
    else:
        cmd += ["-b", stack.kafka]
    if acked:
        cmd += ["--acked", acked]
    if expect:
        cmd += ["-e", str(expect)]
    p = out.run(cmd, timeout=timeout + 30)
    assert p.stdout.strip(), f"m2k-verify printed nothing: {p.stderr}"
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def nothing_in(stack, topic):
    """No record in topic (which may not even exist)."""
    try:
        return stack.consume(topic, 1, timeout=3) == []
    except StackError as e:
        return "Unknown topic" in str(e)


def status_file(br):
    p = br.tmp / "status"
    return dict(l.split("=", 1) for l in p.read_text().splitlines() if "=" in l) \
        if p.exists() else {}


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.25)


def wait_status(br, key, want, timeout=30):
    last = {}

    def ok():
        last.update(status_file(br))
        return want in last.get(key, "")
    try:
        return wait_for(ok, timeout, f"{key} with {want!r}")
    except AssertionError as e:
        raise AssertionError(f"{e}: status file {last}\n{br.logtext()[-3000:]}") from None


def counter(br, name):
    v = status_file(br).get(name, "0")
    return int(v) if v.lstrip("-").isdigit() else 0


def reload(out, br, want_rc=0):
    p = out.run([br.bin, "reload", "-c", br.conf], timeout=90)
    assert p.returncode == want_rc, p.stdout + p.stderr + br.logtext()[-3000:]
    return p.stdout + p.stderr


def status(out, br):
    p = out.run([br.bin, "status", "-c", br.conf])
    return p.returncode, p.stdout + p.stderr


class Notify:
    """A NOTIFY_SOCKET of our own: what the daemon tells systemd."""

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "n.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs, self.log = [], open(tmp_path / "daemon.notify", "a")
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.stop = False
        self.t.start()

    def _pump(self):
        while not self.stop:
            try:
                m = self.sock.recv(8192).decode("utf-8", "replace")
            except (socket.timeout, OSError):
                continue
            self.msgs.append(m)
            self.log.write(m + "\n---\n")
            self.log.flush()

    def statuses(self):
        return [l[7:] for m in self.msgs for l in m.splitlines() if l.startswith("STATUS=")]

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()
        self.log.close()


# --- each mechanism delivers ----------------------------------------------------------
@pytest.mark.parametrize("endpoint,mechanism", [("ssl", None), ("mtls", None)] + SASL_CASES,
                         ids=["ssl", "mtls"] + [f"{e}-{m}" for e, m in SASL_CASES])
def test_kafka_mechanism_delivers(stack, uniq, tmp_path, out, endpoint, mechanism):
    kafka = kafka_section(stack, endpoint, mechanism, cert=endpoint == "mtls")
    br = Bridge(stack, tmp_path, uniq, extra={"kafka": kafka}).start()
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4, count=50, acked=acked)
    assert res["acked"] == 200
    props = stack.kafka_props(endpoint if endpoint != "mtls" else "mtls", mechanism,
                              cert="client" if endpoint == "mtls" else None)
    rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp", props, acked, 200)
    assert (v["missing"], v["duplicates"]) == (0, 0), v
    assert rc == 0
    wait_status(br, "delivered", "200")
    rc, text = status(out, br)
    assert rc == 0 and "uplink up, mqtt connected" in text, text
    p = out.run([br.bin, "check", "-c", br.conf])
    assert p.returncode == 0, p.stderr
    if mechanism:
        assert f"security {kafka['security']['protocol']}, SASL {mechanism} as " in p.stdout
        assert f"password from {kafka['security']['password_file']}" in p.stdout
    assert br.stop() == 0


@pytest.mark.parametrize("mode", ["password_file", "client_cert", "env_password"])
def test_mqtt_tls_delivers(stack, uniq, tmp_path, out, mode):
    stack.require("mqtt_tls", "mqtt_mtls", "ca", "client_cert")
    env = {}
    if mode == "client_cert":
        mqtt = mqtt_section(stack, stack.mqtt_mtls, cert=True, login=False)
    else:
        mqtt = mqtt_section(stack, stack.mqtt_tls)
    if mode == "env_password":  # ${NAME} in a value, as EnvironmentFile= gives it
        del mqtt["password_file"]
        mqtt["password"] = "${M2K_IT_MQTT_PASSWORD}"
        env["M2K_IT_MQTT_PASSWORD"] = stack.secret(stack.mqtt_password_file)
    br = Bridge(stack, tmp_path, uniq, extra={"mqtt": mqtt}, env=env)
    br.conf.chmod(0o600)
    br.start()
    assert f"connected to {mqtt['host']}:{mqtt['port']}" in br.logtext()
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=4, count=50, acked=acked)
    assert res["acked"] == 200
    rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=200)
    assert (v["missing"], v["duplicates"]) == (0, 0), v
    # the tools need no secret and show none
    p = out.run([br.bin, "check", "-c", br.conf], env=dict(os.environ, **env))
    assert p.returncode == 0 and "tls on: ca " in p.stdout, p.stdout + p.stderr
    assert br.stop() == 0


# --- failures an operator can read, and reload fixes them ---------------------------------
def test_wrong_kafka_password_spools_then_reload_delivers(stack, uniq, tmp_path, out):
    pw = private(tmp_path / "kafka.password", MADE_UP[0])
    kafka = kafka_section(stack, "sasl_ssl", "SCRAM-SHA-512", password_file=pw)
    notify = Notify(tmp_path)
    try:
        br = Bridge(stack, tmp_path, uniq, extra={"kafka": kafka},
                    env={"NOTIFY_SOCKET": notify.path}).start()
        acked = tmp_path / "acked.txt"
        res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=3, count=50,
                  acked=acked)
        assert res["acked"] == 150
        # spooling, and every place says why
        cause = "authentication failed (SASL SCRAM-SHA-512)"
        wait_status(br, "uplink_cause", cause)
        wait_for(lambda: counter(br, "backlog") == 150, 30, "150 records spooled")
        assert counter(br, "delivered") == 0
        rc, text = status(out, br)
        assert rc == 0 and f"uplink down: kafka: {cause}" in text, text
        assert f"kafka: {cause}" in br.logtext()
        want = f"uplink down (kafka: {cause}), mqtt connected"
        wait_for(lambda: any(want in s for s in notify.statuses()), 15,
                 f"STATUS= with {want!r} (got {notify.statuses()[-3:]})")
        # the right password, and a reload: everything is delivered
        n0 = len(notify.msgs)
        shutil.copyfile(stack.kafka_users["SCRAM-SHA-512"][1], pw)
        text = reload(out, br)
        assert "reloaded its configuration" in text and "kafka producer recreated" in text
        rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp",
                       stack.kafka_props("sasl_ssl", "SCRAM-SHA-512"), acked, 150)
        assert v["missing"] == 0 and v["dup_new_id"] == 0, v
        wait_status(br, "delivered", "150")
        assert "uplink_cause" in status_file(br) and not status_file(br)["uplink_cause"]
        rc, text = status(out, br)
        assert "last reload ok at " in text and "kafka producer recreated" in text, text
        # sd_notify: RELOADING=1, then READY=1
        after = "\n".join(notify.msgs[n0:])
        assert "RELOADING=1" in after and "READY=1" in after.split("RELOADING=1", 1)[1], after
        assert br.stop() == 0
        c = br.counters()
        assert (c["spooled"], c["delivered"], c["backlog"]) == (150, 150, 0), c
    finally:
        notify.close()


def test_wrong_mqtt_password_then_reload_delivers(stack, uniq, tmp_path, out):
    stack.require("mqtt_tls", "mqtt_password_file")
    pw = private(tmp_path / "mqtt.password", stack.secret(stack.mqtt_password_file))
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": mqtt_section(stack, stack.mqtt_tls, password_file=pw)})
    br.start()  # the broker now keeps a session for us
    assert br.stop() == 0
    private(pw, MADE_UP[1])
    br.start(wait_connected=False)
    cause = "not authorized (bad username or password)"
    br.wait_log(f"mqtt: cannot connect to {stack.mqtt_tls}: {cause}", 20)
    wait_status(br, "mqtt_cause", cause)
    rc, text = status(out, br)
    assert f"mqtt down: mqtt: {cause}" in text, text
    # meanwhile the broker queues for our session; nothing reaches the bridge
    acked = tmp_path / "acked.txt"
    res = pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=50, acked=acked)
    assert res["acked"] == 100
    time.sleep(2)
    assert counter(br, "received") == 0
    private(pw, stack.secret(stack.mqtt_password_file))
    text = reload(out, br)
    assert "mqtt reconnected" in text, text
    rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=100)
    assert (v["missing"], v["duplicates"]) == (0, 0), v
    assert br.stop() == 0


MQTT_BAD = [
    ("untrusted_ca", "mqtt_tls", "other_ca",
     "certificate verify failed: unable to get local issuer certificate"),
    ("wrong_host", "mqtt_tls_wrong_host", None,
     "certificate verify failed: IP address mismatch (the broker's certificate is not for "
     "127.0.0.1)"),
    ("expired", "mqtt_tls_expired", None, "certificate verify failed: certificate has expired"),
]


@pytest.mark.parametrize("case,listener,ca,cause", MQTT_BAD, ids=[c[0] for c in MQTT_BAD])
def test_mqtt_bad_certificate_named_nothing_acknowledged(stack, uniq, tmp_path, out, case,
                                                        listener, ca, cause):
    stack.require("mqtt_tls", listener, "other_ca")
    good = mqtt_section(stack, stack.mqtt_tls)
    br = Bridge(stack, tmp_path, uniq, extra={"mqtt": good}).start()  # our session
    assert br.stop() == 0
    bad = mqtt_section(stack, getattr(stack, listener),
                       ca=getattr(stack, ca) if ca else None)
    conf_good = br.conf.read_text()
    br = Bridge(stack, tmp_path, uniq, extra={"mqtt": bad})
    br.start(wait_connected=False)
    wait_status(br, "mqtt_cause", cause)
    assert cause in br.logtext()
    # the broker keeps what is published: nothing reaches the bridge, nothing
    # is acknowledged by it
    acked = tmp_path / "acked.txt"
    assert pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=25,
               acked=acked)["acked"] == 50
    time.sleep(2)
    assert counter(br, "received") == 0 and counter(br, "spooled") == 0
    rc, text = status(out, br)
    assert f"mqtt down: mqtt: {cause}" in text, text
    br.conf.write_text(conf_good)  # the right listener and CA: a reload
    assert "mqtt reconnected" in reload(out, br)
    rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=50)
    assert (v["missing"], v["duplicates"]) == (0, 0), v
    assert br.stop() == 0


KAFKA_BAD = [
    ("untrusted_ca", "ssl", "other_ca",
     "certificate verify failed: unable to get local issuer certificate"),
    ("wrong_host", "ssl_wrong_host", None,
     "certificate verify failed: IP address mismatch (the broker's certificate does not "
     "name the host we connect to)"),
    ("expired", "ssl_expired", None, "certificate verify failed: certificate has expired"),
]


@pytest.mark.parametrize("case,endpoint,ca,cause", KAFKA_BAD, ids=[c[0] for c in KAFKA_BAD])
def test_kafka_bad_certificate_named_nothing_delivered(stack, uniq, tmp_path, out, case,
                                                      endpoint, ca, cause):
    stack.require("other_ca")
    kafka = kafka_section(stack, endpoint, ca=getattr(stack, ca) if ca else None)
    br = Bridge(stack, tmp_path, uniq, extra={"kafka": kafka}).start()
    acked = tmp_path / "acked.txt"
    assert pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=2, count=25,
               acked=acked)["acked"] == 50
    wait_status(br, "uplink_cause", cause)
    wait_for(lambda: counter(br, "backlog") == 50, 30, "50 records spooled")
    assert counter(br, "delivered") == 0
    assert f"kafka: {cause}" in br.logtext()
    rc, text = status(out, br)
    assert f"uplink down: kafka: {cause}" in text, text
    assert nothing_in(stack, f"it.{uniq}.sensor.eu.temp")
    # the good listener and CA: a reload delivers what waited
    good = kafka_section(stack, "ssl")
    br.conf.write_text(br.conf.read_text()
                       .replace(kafka["brokers"], good["brokers"])
                       .replace(kafka["security"]["ca_file"], good["security"]["ca_file"]))
    assert "kafka producer recreated" in reload(out, br)
    rc, v = verify(out, stack, tmp_path, f"it.{uniq}.sensor.eu.temp", acked=acked, expect=50)
    assert (v["missing"], v["duplicates"]) == (0, 0), v
    assert br.stop() == 0


def test_plain_text_to_a_tls_port_is_named(stack, uniq, tmp_path, out):
    stack.require("mqtt_tls", "kafka_ssl")
    host, port = stack.mqtt_tls.rsplit(":", 1)
    br = Bridge(stack, tmp_path, uniq,
                extra={"mqtt": {"host": host, "port": int(port)},
                       "kafka": {"brokers": stack.kafka_ssl}})
    br.start(wait_connected=False)
    wait_status(br, "mqtt_cause", f"is {port} a TLS port? then mqtt.tls is needed")
    pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=1, count=1)
    wait_status(br, "uplink_cause", "the broker closed the connection at once: "
                "kafka.security.protocol does not match the listener")
    rc, text = status(out, br)
    assert "mqtt down: mqtt: the broker closed the connection before answering" in text, text
    assert br.stop() == 0


# --- reload ------------------------------------------------------------------------------
def test_reload_under_load_routes_and_credentials(stack, uniq, tmp_path, out):
    """Routes changed and Kafka credentials rotated mid-stream: nothing the
    broker acknowledged is missing, a duplicate only ever repeats a record
    with its m2k.id, and the counters add up."""
    stack.require("kafka_users:SCRAM-SHA-256", "kafka_users:SCRAM-SHA-512")
    routes_a = [(f"{uniq}/sensors/{{region}}/{{type}}/{{device}}",
                 f"it.{uniq}.a.{{type}}", "{device}")]
    routes_b = [(f"{uniq}/sensors/{{region}}/{{type}}/{{device}}",
                 f"it.{uniq}.b.{{type}}", "{device}"),
                (f"{uniq}/extra/{{device}}", f"it.{uniq}.extra", "{device}")]
    k256 = kafka_section(stack, "sasl_ssl", "SCRAM-SHA-256")
    k512 = kafka_section(stack, "sasl_ssl", "SCRAM-SHA-512")
    br = Bridge(stack, tmp_path, uniq, routes=routes_a, extra={"kafka": k256}).start()
    acked = tmp_path / "acked.txt"
    publisher = pub_background(stack, f"{uniq}/sensors/eu/temp/{{device}}", 8, 24, 600,
                               acked)
    steps = [(4, routes_b, k256, "routes applied"),
             (9, routes_b, k512, "kafka producer recreated"),
             (14, routes_a, k256, "routes applied; kafka producer recreated"),
             (19, routes_b, k512, "routes applied; kafka producer recreated")]
    t0 = time.monotonic()
    try:
        for at, routes, kafka, what in steps:
            time.sleep(max(0, at - (time.monotonic() - t0)))
            write_config(br.conf, stack, uniq, br.spool, routes, {"kafka": kafka})
            text = reload(out, br)
            assert what in text, text
    finally:
        o, e = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, e
    n = sum(1 for _ in open(acked))
    assert n > 5000, n
    pub(stack, f"{uniq}/extra/{{device}}", devices=2, count=10)  # the added route
    topics = [f"it.{uniq}.a.temp", f"it.{uniq}.b.temp"]
    props = stack.kafka_props("sasl_ssl", "SCRAM-SHA-512")
    rc, v = verify(out, stack, tmp_path, topics, props, acked, n, idle=10, timeout=180)
    assert v["missing"] == 0, v.get("missing_detail")
    assert v["dup_new_id"] == 0, v  # a duplicate repeats a record, m2k.id and all
    assert len(stack.consume(f"it.{uniq}.extra", 20, timeout=30, props=props)) == 20
    wait_for(lambda: counter(br, "backlog") == 0, 60, "an empty spool")
    assert br.stop() == 0
    c = br.counters()
    assert c["received"] == n + 20 and c["spooled"] == n + 20, (c, n)
    assert c["delivered"] == c["spooled"] and c["dead_lettered"] == 0, c
    assert br.logtext().count("reload: applied") == 4
    print(f"reload under load: {n} acknowledged, 4 reloads, {v['duplicates']} duplicates "
          f"(all with a known m2k.id), {v['order_violations']} order changes across topics")


def test_reload_refuses_a_bad_config_whole(stack, uniq, tmp_path, out):
    br = Bridge(stack, tmp_path, uniq).start()
    good = br.conf.read_text()
    # a file the daemon's loader refuses at a place: unknown key
    br.conf.write_text(good.replace("  keepalive: 10\n", "  keepalive: 10\n  hots: x\n"))
    line = good.split("\n").index("  keepalive: 10") + 2
    br.proc.send_signal(signal.SIGHUP)
    wait_status(br, "reload", "failed")
    st = status_file(br)
    assert st["reload_seq"] == "1", st
    assert st["reload_error"].startswith(f"{br.conf}:{line}:3: unknown key \"hots\" in mqtt"), st
    assert f"reload: refused, the running configuration stays: {br.conf}:{line}:3:" in \
        br.logtext()
    br.conf.write_text(good)  # `status` reads the config too
    rc, text = status(out, br)
    assert re.search(rf"last reload failed at .*: {re.escape(str(br.conf))}:{line}:3:", text)
    # a file that loads here but not in the daemon: a secret any user can read
    pw = tmp_path / "open.password"
    pw.write_text("x\n")
    pw.chmod(0o644)
    br.conf.write_text(good.replace("  keepalive: 10\n",
                                    f"  keepalive: 10\n  username: u\n  password_file: {pw}\n"))
    text = reload(out, br, want_rc=78)
    assert "refused the new configuration and keeps running the old one" in text, text
    assert f"{pw} holds a secret and any user can read it (mode 0644)" in text, text
    # the old one still runs: messages flow
    br.conf.write_text(good)
    pub(stack, f"{uniq}/sensors/eu/temp/{{device}}", devices=1, count=5)
    assert len(stack.consume(f"it.{uniq}.sensor.eu.temp", 5, timeout=30)) == 5
    assert "no change" in reload(out, br)
    assert br.stop() == 0


def test_sigusr1_logs_counters_sighup_does_not_stop(stack, uniq, tmp_path, out):
    br = Bridge(stack, tmp_path, uniq,
                extra={"log": {"stats_interval": 0, "status_file": str(tmp_path / "status")}}
                ).start()
    br.proc.send_signal(signal.SIGUSR1)
    br.wait_log(" stats: received=0", 10)
    br.conf.write_text(br.conf.read_text().replace("level: \"info\"", "level: \"debug\""))
    br.proc.send_signal(signal.SIGHUP)
    br.wait_log("reload: changed: log.level", 10)
    assert br.proc.poll() is None
    assert "settings applied" in status_file(br).get("reload_detail", "")
    # a restart-only key keeps its running value, and the answer says so
    br.conf.write_text(br.conf.read_text().replace("max_bytes: \"256MiB\"",
                                                   "max_bytes: \"128MiB\""))
    assert "restart needed: spool.max_bytes" in reload(out, br)
    assert br.stop() == 0


# --- secrets in the config and the tools -------------------------------------------------------
def test_check_names_secret_files_never_their_contents(stack, uniq, tmp_path, out):
    stack.require("kafka_users:PLAIN")
    kpw = private(tmp_path / "k.password", MADE_UP[0])
    creds = tmp_path / "creds"
    creds.mkdir()
    private(creds / "mqtt-pw", MADE_UP[1])
    (creds / "mqtt-pw").chmod(0o400)
    kafka = kafka_section(stack, "sasl_ssl", "PLAIN", password_file=kpw)
    kafka["properties"] = {"linger.ms": 5,
                           "sasl.oauthbearer.client.secret": "${M2K_IT_KEYPASS}"}
    br = Bridge(stack, tmp_path, uniq, extra={
        "kafka": kafka, "mqtt": {"username": "bridge", "password_file": "credential:mqtt-pw"}})
    br.conf.chmod(0o600)
    env = dict(os.environ, M2K_IT_KEYPASS=MADE_UP[0])
    # outside the service: the credential is noted, not read
    p = out.run([br.bin, "check", "-c", br.conf], env=env)
    assert p.returncode == 0, p.stderr
    assert "credential:mqtt-pw is a systemd credential: it is checked when the service " \
           "starts" in p.stderr
    assert "login bridge, password from credential:mqtt-pw" in p.stdout
    assert f"password from {kpw}" in p.stdout
    # kafka.properties named like a secret: hidden
    assert "sasl.oauthbearer.client.secret = (hidden)" in p.stdout
    # as the service sees it
    p = out.run([br.bin, "check", "-c", br.conf],
                env=dict(env, CREDENTIALS_DIRECTORY=str(creds)))
    assert p.returncode == 0 and "note:" not in p.stderr, p.stderr
    # a variable the shell lacks: the tools still work, check says so
    p = out.run([br.bin, "check", "-c", br.conf])
    assert p.returncode == 0 and "${M2K_IT_KEYPASS} is not set here" in p.stderr, p.stderr
    # a secret others can read: refused at its place, with what to do
    kpw.chmod(0o644)
    p = out.run([br.bin, "check", "-c", br.conf], env=env)
    assert p.returncode == 78
    assert re.search(rf"^{re.escape(str(br.conf))}:\d+:\d+: kafka.security.password_file: "
                     rf"{re.escape(str(kpw))} holds a secret and any user can read it "
                     r"\(mode 0644\): refused\. Make it private: chmod o-rwx", p.stderr, re.M), \
        p.stderr
    # and the daemon does not start with it (exit 78: systemd does not retry)
    p = out.run([br.bin, "run", "-c", br.conf],
                env=dict(env, CREDENTIALS_DIRECTORY=str(creds)), timeout=30)
    assert p.returncode == 78 and "any user can read it" in p.stderr, p.stderr
    # nor without the credential it names
    kpw.chmod(0o600)
    p = out.run([br.bin, "run", "-c", br.conf], env=env, timeout=30)
    assert p.returncode == 78, p.stderr
    assert "mqtt.password_file: credential:mqtt-pw: $CREDENTIALS_DIRECTORY is not set" \
        in p.stderr, p.stderr
    kpw.chmod(0o600)
    p = out.run([br.bin, "check", "--keys"])
    assert "kafka.security.password_file" in p.stdout and "on reload" in p.stdout
