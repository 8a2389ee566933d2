"""The test stack is real: these tests talk to the Mosquitto and Kafka
brokers that test/stack/stack.sh runs, and drive their faults.

Each test asserts what a user of the brokers would see: messages received,
acknowledgements, records with their exact bytes, errors that name the
broker. The secured listeners are proven with independent clients (kcat,
mosquitto_pub/sub, openssl s_client): each login works, and each bad
password or certificate is refused with its own error. Together they take
well under two minutes.
"""
import json
import os
import random
import pathlib
import socket
import subprocess
import threading
import time

import pytest

from conftest import SECURED, STACK_SH, StackError


def mqtt_args(stack):
    return ["-h", stack.mqtt_host, "-p", str(stack.mqtt_port)]


def run(cmd, timeout=30, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)


class Lines:
    """Collects a child's stdout lines in the background."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_for(self, text, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in ln for ln in self.lines):
                return True
            time.sleep(0.02)
        return False


# --- Mosquitto ------------------------------------------------------------------
def test_mqtt_qos1_publish_is_acknowledged_and_delivered(stack, uniq):
    topic = f"it/{uniq}"
    # stdbuf: mosquitto_sub block-buffers a pipe, hiding the SUBACK line.
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", *mqtt_args(stack), "-t", topic,
                            "-q", "1", "-C", "3", "-v", "-d", "-i", f"sub-{uniq}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Lines(sub)
    try:
        assert out.wait_for("SUBACK"), f"no SUBACK from {stack.mqtt}: {out.lines}"
        for i in range(3):
            pub = run(["mosquitto_pub", *mqtt_args(stack), "-t", topic, "-q", "1", "-d",
                       "-m", f"m{i}", "-i", f"pub-{uniq}"])
            assert pub.returncode == 0, pub.stderr
            assert b"received PUBACK" in pub.stdout, pub.stdout  # the broker's ack
        sub.wait(timeout=10)
    finally:
        sub.kill()
    out.t.join(timeout=5)
    got = [ln for ln in out.lines if ln.startswith(topic + " ")]
    assert got == [f"{topic} m0", f"{topic} m1", f"{topic} m2"]
    assert sub.returncode == 0


def test_mqtt_sys_counters_published(stack):
    # The bridge reads $SYS; the stack publishes it every second.
    p = run(["mosquitto_sub", *mqtt_args(stack), "-t", "$SYS/broker/version", "-C", "1",
             "-W", "5"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"mosquitto version"), p.stdout


def persistent_sub(stack, cid, topic, *extra, timeout=20):
    return run(["mosquitto_sub", *mqtt_args(stack), "-c", "-i", cid, "-q", "1", "-t", topic,
                *extra], timeout=timeout)


def test_mqtt_restart_keeps_persistent_session_and_queue(stack, uniq):
    topic, cid = f"it/{uniq}", f"keep-{uniq}"
    # Subscribe with a persistent session, then go away.
    assert persistent_sub(stack, cid, topic, "-E").returncode == 0
    # 1500 queued QoS 1 messages: more than Mosquitto's default queue of
    # 1000, which the stack raises so nothing is silently dropped.
    body = "".join(f"q{i}\n" for i in range(1500)).encode()
    pub = run(["mosquitto_pub", *mqtt_args(stack), "-t", topic, "-q", "1", "-l"], input=body)
    assert pub.returncode == 0, pub.stderr
    stack.mqtt_ctl("restart")
    p = persistent_sub(stack, cid, topic, "-C", "1500", "-W", "15")
    got = p.stdout.decode().split()
    assert len(got) == 1500, f"{len(got)} of 1500 queued messages survived the restart"
    assert got[0] == "q0" and got[-1] == "q1499"


def test_mqtt_stopped_refuses_then_restarts(stack, uniq):
    stack.mqtt_ctl("stop")
    p = run(["mosquitto_pub", *mqtt_args(stack), "-t", f"it/{uniq}", "-m", "x", "-q", "1"])
    assert p.returncode != 0
    assert b"refused" in p.stderr.lower() or b"error" in p.stderr.lower(), p.stderr
    stack.mqtt_ctl("start")
    p = run(["mosquitto_pub", *mqtt_args(stack), "-t", f"it/{uniq}", "-m", "x", "-q", "1"])
    assert p.returncode == 0, p.stderr


# --- Kafka ----------------------------------------------------------------------
def test_kafka_binary_roundtrip_with_key_and_headers(stack, uniq):
    topic = f"it-{uniq}"
    # Pseudo-random but fixed: kcat -J emits an invalid JSON escape for some
    # byte sequences, so fresh random bytes made this test flaky.
    noise = random.Random(20261122).randbytes(4096)
    values = [bytes(range(256)), bytes(range(255, -1, -1)), noise, b'"\\\n\x00{}']
    stack.produce(topic, values, key=b"dev-7", headers={"device": "dev-7", "ct": "a=b,c"})
    recs = stack.consume(topic, len(values), timeout=20)
    assert [r["value"] for r in recs] == values
    assert [r["offset"] for r in recs] == [0, 1, 2, 3]
    r = recs[0]
    assert r["topic"] == topic and r["partition"] == 0
    assert r["key"] == b"dev-7"
    assert r["headers"] == {"device": b"dev-7", "ct": b"a=b,c"}
    assert r["header_list"] == [("device", b"dev-7"), ("ct", b"a=b,c")]
    assert abs(r["timestamp"] / 1000 - time.time()) < 120


def test_kafka_payloads_with_unicode_line_breaks(stack, uniq):
    """NEL and LINE SEPARATOR inside a payload: kcat leaves them unescaped,
    and a reader splitting its output with str.splitlines() once lost the
    records that held them."""
    topic = f"it-{uniq}"
    values = [b"a\xc2\x85b", "c\u2028d\u2029e".encode(), b"f\x1cg\x1dh\x1ei",
              b"plain"]
    stack.produce(topic, values)
    recs = stack.consume(topic, len(values), timeout=20)
    assert [r["value"] for r in recs] == values


def test_kafka_null_key_and_count_timeout(stack, uniq):
    topic = f"it-{uniq}"
    stack.produce(topic, [b"one"])
    t0 = time.monotonic()
    recs = stack.consume(topic, 2, timeout=3)  # asks for more than there is
    assert time.monotonic() - t0 < 10
    assert [(r["key"], r["value"]) for r in recs] == [(None, b"one")]


def test_kafka_explicit_partitions(stack, uniq):
    topic = f"it-{uniq}"
    stack.create_topic(topic, partitions=3)
    meta = run(["kcat", "-b", stack.kafka, "-L", "-t", topic, "-J"])
    parts = json.loads(meta.stdout)["topics"][0]["partitions"]
    assert len(parts) == 3
    stack.produce(topic, [b"p2"], partition=2)
    stack.produce(topic, [b"p0"], partition=0)
    recs = stack.consume(topic, 2, timeout=20)
    assert sorted((r["partition"], r["value"]) for r in recs) == [(0, b"p0"), (2, b"p2")]


def test_kafka_paused_blackholes_then_recovers(stack, uniq):
    topic = f"it-{uniq}"
    stack.produce(topic, [b"before"])
    stack.kafka_ctl("pause")
    t0 = time.monotonic()
    with pytest.raises(StackError, match="failed"):
        stack.produce(topic, [b"while-paused"], timeout=2)
    assert time.monotonic() - t0 < 20  # bounded by the timeout, no hang
    stack.kafka_ctl("resume")
    stack.produce(topic, [b"after"], timeout=30)
    recs = stack.consume(topic, 2, timeout=20)
    assert [r["value"] for r in recs] == [b"before", b"after"]


def test_kafka_stopped_fails_clearly_and_restart_keeps_data(stack, uniq):
    topic = f"it-{uniq}"
    stack.produce(topic, [b"kept"])
    stack.kafka_ctl("stop")
    with pytest.raises(StackError) as e:
        stack.produce(topic, [b"lost"], timeout=3)
    assert stack.kafka in str(e.value) and "failed" in str(e.value)
    with pytest.raises(StackError) as e:
        stack.consume(topic, 1, timeout=5)
    assert "unreachable" in str(e.value) and stack.kafka in str(e.value)
    stack.kafka_ctl("start")
    stack.produce(topic, [b"again"], timeout=30)
    assert [r["value"] for r in stack.consume(topic, 2, timeout=20)] == [b"kept", b"again"]


# --- secured endpoints: Kafka ------------------------------------------------------
def x_args(props):
    """kcat arguments for librdkafka properties (bootstrap.servers -> -b)."""
    props = dict(props)
    args = ["-b", props.pop("bootstrap.servers")]
    for k, v in props.items():
        args += ["-X", f"{k}={v}"]
    return args


def kafka_refusal(props, timeout=20):
    """The first error librdkafka reports for a metadata request through
    `props` ("" when the request succeeds). Returns at that first error
    instead of waiting out kcat's metadata timeout."""
    p = subprocess.Popen(["kcat", "-L", *x_args(props), "-m", str(timeout)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for raw in p.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if "|FAIL|" in line:
                return line
        p.wait(timeout=5)
        return "" if p.returncode == 0 else f"(kcat exit {p.returncode}, no FAIL line)"
    finally:
        p.kill()
        p.wait()


def tls_verify(addr, ca, *how):
    """What openssl's own client says of the certificate at `addr`."""
    host, port = addr.rsplit(":", 1)
    p = run(["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(ca),
             "-verify_return_error", *how], stdin=subprocess.DEVNULL, timeout=20)
    return (p.stdout + p.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("endpoint", ["sasl_ssl", "sasl_plaintext"])
def test_kafka_sasl_roundtrip(stack, uniq, endpoint, mechanism):
    props = stack.kafka_props(endpoint, mechanism)
    topic = f"it-{uniq}"
    stack.produce(topic, [b"via-" + mechanism.encode(), b"two"], key="k", props=props)
    recs = stack.consume(topic, 2, timeout=20, props=props)
    assert [(r["key"], r["value"]) for r in recs] == [(b"k", b"via-" + mechanism.encode()),
                                                      (b"k", b"two")]
    # The same broker: the plain listener sees the records too.
    assert len(stack.consume(topic, 2, timeout=20)) == 2


def test_kafka_ssl_roundtrip_client_cert_optional(stack, uniq):
    topic = f"it-{uniq}"
    stack.produce(topic, [b"no-cert"], props=stack.kafka_props("ssl"))
    stack.produce(topic, [b"with-cert"], props=stack.kafka_props("ssl", cert="client"))
    recs = stack.consume(topic, 2, timeout=20, props=stack.kafka_props("ssl"))
    assert [r["value"] for r in recs] == [b"no-cert", b"with-cert"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_wrong_password_is_refused(stack, mechanism):
    err = kafka_refusal(stack.kafka_props("sasl_ssl", mechanism, password="not-the-password"))
    assert "SASL authentication error: Authentication failed" in err, err
    if mechanism != "PLAIN":
        assert f"invalid credentials with SASL mechanism {mechanism}" in err, err
    # The right password on the same listener works.
    assert kafka_refusal(stack.kafka_props("sasl_ssl", mechanism)) == ""


def test_kafka_scram_users_belong_to_their_mechanism(stack):
    stack.require("kafka_users:SCRAM-SHA-256", "kafka_users:SCRAM-SHA-512")
    props = stack.kafka_props("sasl_ssl", "SCRAM-SHA-256")
    user, pwfile = stack.kafka_users["SCRAM-SHA-512"]
    props.update({"sasl.username": user, "sasl.password": stack.secret(pwfile)})
    err = kafka_refusal(props)
    assert "Authentication failed" in err, err


def test_kafka_untrusted_ca_fails_verification(stack):
    stack.require("other_ca")
    err = kafka_refusal(stack.kafka_props("ssl", ca=stack.other_ca))
    # librdkafka words it "SSL handshake failed: ...certificate verify
    # failed..." or just "...certificate verify failed", by timing.
    assert "certificate verify failed" in err, err
    assert "unable to get local issuer certificate" in tls_verify(stack.kafka_ssl, stack.other_ca)
    assert "Verification: OK" in tls_verify(stack.kafka_ssl, stack.ca, "-verify_ip", "127.0.0.1")


def test_kafka_wrong_host_fails_hostname_check(stack):
    props = stack.kafka_props("ssl_wrong_host")
    err = kafka_refusal(props)
    assert "certificate verify failed" in err, err
    # Only the name is wrong: without the hostname check the chain verifies.
    assert kafka_refusal(dict(props, **{"ssl.endpoint.identification.algorithm": "none"})) == ""
    addr = stack.kafka_ssl_wrong_host
    assert "IP address mismatch" in tls_verify(addr, stack.ca, "-verify_ip", "127.0.0.1")
    assert "hostname mismatch" in tls_verify(addr, stack.ca, "-verify_hostname", "localhost")


def test_kafka_expired_server_cert_fails(stack):
    err = kafka_refusal(stack.kafka_props("ssl_expired"))
    assert "certificate verify failed" in err, err
    assert "certificate has expired" in tls_verify(stack.kafka_ssl_expired, stack.ca)


def test_kafka_mtls_requires_a_trusted_client_cert(stack, uniq):
    topic = f"it-{uniq}"
    props = stack.kafka_props("mtls", cert="client")
    stack.produce(topic, [b"mtls"], props=props)
    assert [r["value"] for r in stack.consume(topic, 1, timeout=20, props=props)] == [b"mtls"]
    # Java answers a missing certificate with a "bad certificate" alert, an
    # untrusted or expired one with "certificate unknown"; a client that
    # reads the closed socket before the alert sees a disconnect.
    for cert in (None, "other", "expired"):
        err = kafka_refusal(stack.kafka_props("mtls", cert=cert))
        assert "alert" in err or "Disconnected" in err, (cert, err)


# --- secured endpoints: Mosquitto --------------------------------------------------
def tls_args(stack, addr, ca=None, login=True, password=None, cert=None):
    host, port = addr.rsplit(":", 1)
    args = ["-h", host, "-p", port, "--cafile", str(ca or stack.ca)]
    if login:
        args += ["-u", stack.mqtt_user,
                 "-P", stack.secret(stack.mqtt_password_file) if password is None else password]
    if cert:
        prefix = "" if cert == "client" else cert + "_"
        args += ["--cert", str(getattr(stack, prefix + "client_cert")),
                 "--key", str(getattr(stack, prefix + "client_key"))]
    return args


def mqtt_roundtrip(conn, topic, uniq):
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", *conn, "-t", topic, "-q", "1",
                            "-C", "1", "-d", "-i", f"sub-{uniq}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Lines(sub)
    try:
        assert out.wait_for("SUBACK"), f"no SUBACK: {out.lines}"
        pub = run(["mosquitto_pub", *conn, "-t", topic, "-q", "1", "-d", "-m", "over-tls",
                   "-i", f"pub-{uniq}"])
        assert pub.returncode == 0, pub.stdout + pub.stderr
        assert b"received PUBACK" in pub.stdout, pub.stdout
        sub.wait(timeout=10)
    finally:
        sub.kill()
    out.t.join(timeout=5)
    assert "over-tls" in out.lines, out.lines


def mqtt_pub(args):
    return run(["mosquitto_pub", *args, "-t", "it/refused", "-m", "x", "-q", "1", "-d"],
               timeout=20)


def test_mqtt_tls_password_login(stack, uniq):
    stack.require("mqtt_tls", "mqtt_user", "mqtt_password_file", "ca")
    mqtt_roundtrip(tls_args(stack, stack.mqtt_tls), f"it/{uniq}", uniq)


def test_mqtt_tls_wrong_or_no_password_is_not_authorised(stack):
    stack.require("mqtt_tls", "mqtt_user", "ca")
    for args in (tls_args(stack, stack.mqtt_tls, password="not-the-password"),
                 tls_args(stack, stack.mqtt_tls, login=False)):
        p = mqtt_pub(args)
        assert p.returncode != 0
        assert b"Connection Refused: not authorised" in p.stdout + p.stderr, p.stdout + p.stderr


def test_mqtt_tls_listener_drops_plain_text(stack):
    stack.require("mqtt_tls")
    host, port = stack.mqtt_tls.rsplit(":", 1)
    p = mqtt_pub(["-h", host, "-p", port])
    assert p.returncode != 0
    assert b"CONNACK" not in p.stdout, p.stdout


def test_mqtt_untrusted_ca_wrong_host_and_expired_fail_verification(stack):
    stack.require("mqtt_tls", "mqtt_tls_wrong_host", "mqtt_tls_expired", "other_ca")
    cases = {
        "untrusted CA": (tls_args(stack, stack.mqtt_tls, ca=stack.other_ca),
                         "certificate verify failed"),
        "wrong host": (tls_args(stack, stack.mqtt_tls_wrong_host), "host name verification failed"),
        "expired": (tls_args(stack, stack.mqtt_tls_expired), "certificate verify failed"),
    }
    for name, (args, want) in cases.items():
        p = mqtt_pub(args)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        assert p.returncode != 0 and "A TLS error occurred" in out, (name, out)
        assert want in out, (name, out)
    # openssl names each cause.
    assert "unable to get local issuer certificate" in tls_verify(stack.mqtt_tls, stack.other_ca)
    assert "IP address mismatch" in tls_verify(stack.mqtt_tls_wrong_host, stack.ca,
                                                "-verify_ip", "127.0.0.1")
    assert "certificate has expired" in tls_verify(stack.mqtt_tls_expired, stack.ca)
    # Only the name is wrong on that listener.
    assert mqtt_pub(tls_args(stack, stack.mqtt_tls_wrong_host) + ["--insecure"]).returncode == 0


def test_mqtt_mtls_requires_a_trusted_client_cert(stack, uniq):
    stack.require("mqtt_mtls", "client_cert", "other_client_cert", "expired_client_cert")
    conn = tls_args(stack, stack.mqtt_mtls, login=False, cert="client")
    mqtt_roundtrip(conn, f"it/{uniq}", uniq)
    if not stack.external:  # the certificate's CN is the user name
        assert f"as sub-{uniq} (p2, c1, k60, u'm2k-client')" in stack.log("mqtt", 200)
    for cert in (None, "other", "expired"):
        p = mqtt_pub(tls_args(stack, stack.mqtt_mtls, login=False, cert=cert))
        assert p.returncode != 0, (cert, p.stdout)
        assert b"CONNACK" not in p.stdout, (cert, p.stdout)


# --- stack.sh itself -----------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_VARS = ["M2K_MQTT_PORT", "M2K_KAFKA_PORT", "M2K_KAFKA_CONTROLLER_PORT",
             "M2K_MQTT_TLS_PORT", "M2K_MQTT_MTLS_PORT", "M2K_MQTT_WRONG_HOST_PORT",
             "M2K_MQTT_EXPIRED_PORT", "M2K_KAFKA_SSL_PORT", "M2K_KAFKA_SASL_SSL_PORT",
             "M2K_KAFKA_SASL_PLAINTEXT_PORT", "M2K_KAFKA_MTLS_PORT",
             "M2K_KAFKA_WRONG_HOST_PORT", "M2K_KAFKA_EXPIRED_PORT"]


def own_stack_env(tmp_path, **ports):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT2KAFKA_TEST_")}
    env["M2K_STACK_DIR"] = str(tmp_path / "stack")
    taken = set()
    for var in PORT_VARS:
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        env[var] = str(port)
    env.update({k: str(v) for k, v in ports.items()})
    return env


def test_stack_port_in_use_fails_at_once(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = own_stack_env(tmp_path, M2K_MQTT_PORT=port)
        t0 = time.monotonic()
        p = run([str(STACK_SH), "mqtt", "start"], env=env)
    assert p.returncode != 0
    assert time.monotonic() - t0 < 10
    assert f"127.0.0.1:{port} is already in use" in p.stderr.decode(), p.stderr


@pytest.mark.skipif(bool(os.environ.get("MQTT2KAFKA_TEST_KAFKA")),
                    reason="external brokers: the local Kafka jars may not be installed")
def test_stack_kafka_not_ready_gives_up_with_log(tmp_path):
    env = own_stack_env(tmp_path, M2K_READY_TIMEOUT=1)
    try:
        t0 = time.monotonic()
        p = run([str(STACK_SH), "kafka", "start"], env=env, timeout=90)
        err = p.stderr.decode()
        assert p.returncode != 0
        assert time.monotonic() - t0 < 60
        assert "did not log 'Kafka Server started' within 1s" in err, err
        assert str(tmp_path / "stack" / "logs" / "kafka.log") in err
    finally:
        run([str(STACK_SH), "down"], env=env, timeout=60)


def test_stack_env_lines_are_sourceable():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT2KAFKA_TEST_")}
    p = run([str(STACK_SH), "env"], env=env)
    lines = p.stdout.decode().split()
    assert p.returncode == 0
    assert lines[0].startswith("MQTT2KAFKA_TEST_MQTT=127.0.0.1:")
    assert lines[1].startswith("MQTT2KAFKA_TEST_KAFKA=127.0.0.1:")
    assert pathlib.Path(STACK_SH).stat().st_mode & 0o111
    names = [ln.split("=", 1)[0] for ln in lines]
    assert set(names) == {"MQTT2KAFKA_TEST_MQTT", "MQTT2KAFKA_TEST_KAFKA", *SECURED,
                          *(f"MQTT2KAFKA_TEST_KAFKA_{m}_{x}" for x in ("USER", "PASSWORD_FILE")
                            for m in ("PLAIN", "SCRAM_SHA_256", "SCRAM_SHA_512"))}
    # Secured ports follow the plain ones unless set on their own.
    env.update(M2K_MQTT_PORT="40000", M2K_KAFKA_PORT="41000", M2K_KAFKA_SSL_PORT="42000")
    got = env_lines(env)
    assert got["MQTT2KAFKA_TEST_MQTT_TLS"] == "127.0.0.1:40001"
    assert got["MQTT2KAFKA_TEST_KAFKA_SASL_SSL"] == "127.0.0.1:41003"
    assert got["MQTT2KAFKA_TEST_KAFKA_SSL"] == "127.0.0.1:42000"
    # External brokers: only the variables the caller set are passed on.
    env.update(MQTT2KAFKA_TEST_MQTT="h:1", MQTT2KAFKA_TEST_KAFKA="h:2",
               MQTT2KAFKA_TEST_KAFKA_SASL_SSL="h:3")
    assert env_lines(env) == {"MQTT2KAFKA_TEST_MQTT": "h:1", "MQTT2KAFKA_TEST_KAFKA": "h:2",
                              "MQTT2KAFKA_TEST_KAFKA_SASL_SSL": "h:3"}


def test_stack_cluster_ids_never_look_like_options():
    # 1 draw in 64 starts with '-', which kafka-storage format read as an
    # option ("argument --cluster-id/-t: expected one argument"), failing a
    # start at random. 400 draws: the old generator failed this 99.8% of
    # the time.
    p = run(["bash", "-c", f"for i in $(seq 400); do {STACK_SH} cluster-id; done"],
            timeout=120)
    ids = p.stdout.decode().split()
    assert p.returncode == 0 and len(ids) == 400, p.stderr
    for i in ids:
        assert len(i) == 22 and i[0].isalnum(), i
        assert set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), i


def env_lines(env=None):
    p = run([str(STACK_SH), "env"], env=env)
    assert p.returncode == 0, p.stderr
    return dict(ln.split("=", 1) for ln in p.stdout.decode().split())


def test_stack_secrets_are_private_and_never_logged(stack):
    stack.require("ca", "client_key", "mqtt_password_file")
    if stack.external:
        pytest.skip("external brokers: their files are not the stack's")
    keys = [stack.client_key, stack.other_client_key, stack.expired_client_key,
            *stack.dir.glob("tls/*.key"), *stack.dir.glob("tls/*.keystore.pem"),
            *stack.dir.glob("credentials/*")]
    pwfiles = [stack.mqtt_password_file] + [f for _, f in stack.kafka_users.values()]
    for f in keys + pwfiles + [stack.dir / "kafka/server.properties",
                               stack.dir / "mosquitto/passwd"]:
        assert f.stat().st_mode & 0o777 == 0o600, f
    secrets = stack.secrets()
    assert len(secrets) == 4 and len(set(secrets)) == 4
    assert all(len(s) == 32 and set(s) <= set("0123456789abcdef") for s in secrets), secrets
    assert stack.ca.stat().st_mode & 0o077 == 0o044  # certificates are public
    for which in ("kafka", "mqtt"):
        log = stack.log(which, 100000)
        assert not [s for s in secrets if s in log], f"a password is in the {which} log"


def test_stack_server_certificate_names_loopback(stack):
    stack.require("ca")
    if stack.external:
        pytest.skip("external brokers: their certificates are not the stack's")
    text = run(["openssl", "x509", "-in", str(stack.dir / "tls/server.crt"), "-noout",
                "-ext", "subjectAltName"]).stdout.decode()
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text, text
    wrong = run(["openssl", "x509", "-in", str(stack.dir / "tls/wrong-host.crt"), "-noout",
                 "-ext", "subjectAltName"]).stdout.decode()
    assert "DNS:wrong.example" in wrong and "127.0.0.1" not in wrong, wrong


def test_stack_new_passwords_after_down(tmp_path):
    env = own_stack_env(tmp_path)
    try:
        p = run([str(STACK_SH), "mqtt", "start"], env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        info = env_lines(env)
        pwfile = pathlib.Path(info["MQTT2KAFKA_TEST_MQTT_PASSWORD_FILE"])
        first = pwfile.read_text()
        ca = pathlib.Path(info["MQTT2KAFKA_TEST_TLS_CA"]).read_bytes()
        assert run([str(STACK_SH), "down"], env=env, timeout=60).returncode == 0
        assert not pwfile.exists()
        p = run([str(STACK_SH), "mqtt", "start"], env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        assert pwfile.read_text() != first
        assert pathlib.Path(info["MQTT2KAFKA_TEST_TLS_CA"]).read_bytes() != ca
        host, port = info["MQTT2KAFKA_TEST_MQTT_TLS"].rsplit(":", 1)
        login = ["mosquitto_pub", "-h", host, "-p", port, "--cafile",
                 info["MQTT2KAFKA_TEST_TLS_CA"], "-u", info["MQTT2KAFKA_TEST_MQTT_USER"],
                 "-t", "x", "-m", "y", "-q", "1", "-P"]
        assert run(login + [first.strip()]).returncode != 0  # the old password is gone
        assert run(login + [pwfile.read_text().strip()]).returncode == 0
    finally:
        run([str(STACK_SH), "down"], env=env, timeout=60)
