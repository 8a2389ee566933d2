"""The amd64 package in a clean Debian 12 root: install, check the shipped
config, run the unit's ExecStart as the mqtt2kafka user against the test
stack and see a record reach Kafka, upgrade (conffile edits kept), remove
(spool kept), purge (spool gone).

The tests are steps of one life cycle and run in file order on one root.
"""
import shlex
import shutil
import signal
import subprocess
import time

import pytest

CONF = "/etc/mqtt2kafka/mqtt2kafka.yaml"
UNIT = "/lib/systemd/system/mqtt2kafka.service"
SPOOL = "/var/lib/mqtt2kafka/spool.db"
STATE = {}  # what one step leaves for the next


def deb_version(deb):
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                          text=True, check=True).stdout.strip()


def installed_version(root):
    p = root.run("dpkg-query", "-W", "-f=${Status} ${Version}", "mqtt2kafka", check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def owner(root, path):
    p = root.run("stat", "-c", "%U:%G %a", path)
    return p.stdout.strip()


def test_install(root, debs):
    deb, _ = debs
    shutil.copyfile(deb, root.file("/tmp") / deb.name)
    root.apt("install", f"/tmp/{deb.name}")
    assert installed_version(root) == f"install ok installed {deb_version(deb)}"
    # the daemon reports the package's version (one place: the changelog)
    out = root.run("mqtt2kafka", "version").stdout
    assert deb_version(deb).split("+")[0] in out
    assert root.run("getent", "passwd", "mqtt2kafka").stdout.startswith("mqtt2kafka:")
    assert owner(root, "/var/lib/mqtt2kafka") == "mqtt2kafka:mqtt2kafka 750"
    # may hold broker passwords: root and the service's group only
    assert owner(root, CONF) == "root:mqtt2kafka 640"
    conffiles = root.run("dpkg-query", "-W", "-f=${Conffiles}", "mqtt2kafka").stdout
    assert CONF in conffiles
    unit = root.file(UNIT).read_text()
    for line in ("Type=notify", "User=mqtt2kafka", "StateDirectory=mqtt2kafka",
                 "RuntimeDirectory=mqtt2kafka", "Restart=on-failure", "ProtectSystem=strict"):
        assert line in unit.splitlines(), line
    assert any(l.startswith("WatchdogSec=") for l in unit.splitlines())
    # not enabled on install: the route map needs editing first
    assert not root.file("/etc/systemd/system/multi-user.target.wants/mqtt2kafka.service").exists()


def test_shipped_config_checks(root):
    p = root.run("mqtt2kafka", "check", "-c", CONF, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "gw-0001" in p.stdout


def test_man_page_names_every_key(root):
    keys = [l.split()[0] for l in root.run("mqtt2kafka", "check", "--keys").stdout.splitlines()[1:]
            if l.strip()]
    assert len(keys) > 20
    man = root.run("zcat", "/usr/share/man/man1/mqtt2kafka.1.gz").stdout
    missing = [k for k in keys if f".B {k}\n" not in man]
    assert not missing, f"mqtt2kafka(1) does not describe: {missing}"
    cmds = [l.split()[0] for l in root.run("mqtt2kafka", "help").stdout.splitlines()
            if l.startswith("  ")]
    assert "run" in cmds and "status" in cmds
    assert not [c for c in cmds if f".B {c}" not in man and f".BR {c}" not in man]


def write_config(root, stack, uniq):
    text = f"""# edited on the gateway: this must survive an upgrade ({uniq})
gateway:
  id: gw-{uniq}
mqtt:
  host: {stack.mqtt_host}
  port: {stack.mqtt_port}
  client_id: m2k-{uniq}
  reconnect_max: 2s
kafka:
  brokers: {stack.kafka}
  dead_letter_topic: it.{uniq}.dead-letter
  shutdown_timeout: 5s
spool:
  path: {SPOOL}
  sync: normal
log:
  stats_interval: 2
routes:
  - match: {uniq}/sensors/{{region}}/{{type}}/{{device}}
    topic: it.{uniq}.sensor.{{region}}.{{type}}
    key: "{{device}}"
"""
    root.file(CONF).write_text(text)
    return text


def exec_start(root):
    for line in root.file(UNIT).read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.split("=", 1)[1])
    raise AssertionError("no ExecStart= in the unit")


def start_daemon(root, log):
    # what RuntimeDirectory= would make before ExecStart
    root.run("install", "-d", "-o", "mqtt2kafka", "-g", "mqtt2kafka", "-m", "0755",
             "/run/mqtt2kafka")
    cmd = ["chroot", "--userspec=mqtt2kafka:mqtt2kafka", str(root.path)] + exec_start(root)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s")


def test_execstart_as_service_user_delivers_to_kafka(root, stack, uniq, tmp_path):
    STATE["conf"] = write_config(root, stack, uniq)
    assert root.run("mqtt2kafka", "check", "-c", CONF, check=False).returncode == 0
    logf = tmp_path / "daemon.log"
    with open(logf, "wb") as log:
        proc = start_daemon(root, log)
        try:
            wait_for(lambda: b"mqtt: connected" in logf.read_bytes() or proc.poll() is not None,
                     30, f"the daemon logged 'mqtt: connected':\n{logf.read_text()}")
            assert proc.poll() is None, logf.read_text()
            time.sleep(1)  # the subscription follows the connection
            topic = f"{uniq}/sensors/eu-west/temp/dev-17"
            subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
                            "-q", "1", "-t", topic, "-m", f"hello from {uniq}"],
                           check=True, timeout=30)
            recs = stack.consume(f"it.{uniq}.sensor.eu-west.temp", 1, timeout=60)
            assert recs, f"no record reached Kafka:\n{logf.read_text()}"
            r = recs[0]
            assert r["value"] == f"hello from {uniq}".encode()
            assert r["key"] == b"dev-17"
            assert r["headers"]["gateway.id"] == f"gw-{uniq}".encode()
            assert r["headers"]["mqtt.topic"] == topic.encode()
            # `mqtt2kafka status` reads the daemon's status file in /run
            status = {}

            def delivered():
                status["p"] = root.run("mqtt2kafka", "status", check=False)
                return status["p"].returncode == 0 and "delivered 1," in status["p"].stdout
            wait_for(delivered, 15, f"`mqtt2kafka status` saying delivered 1: {status}")
            assert "mqtt connected" in status["p"].stdout
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
    assert rc == 0, logf.read_text()
    assert owner(root, SPOOL).startswith("mqtt2kafka:mqtt2kafka")
    STATE["spool_size"] = root.file(SPOOL).stat().st_size


def test_upgrade_keeps_conffile_edits(root, debs):
    _, new = debs
    assert "conf" in STATE, "needs the ExecStart step"
    shutil.copyfile(new, root.file("/tmp") / new.name)
    root.apt("install", f"/tmp/{new.name}")
    assert installed_version(root) == f"install ok installed {deb_version(new)}"
    assert root.file(CONF).read_text() == STATE["conf"]
    assert owner(root, CONF) == "root:mqtt2kafka 640"
    assert root.file(SPOOL).exists()
    assert root.run("mqtt2kafka", "check", "-c", CONF, check=False).returncode == 0


def test_remove_keeps_spool_and_config(root):
    root.apt("remove", "mqtt2kafka")
    assert not root.file("/usr/bin/mqtt2kafka").exists()
    assert installed_version(root).startswith("deinstall ok config-files")
    assert root.file(SPOOL).exists(), "remove must keep the spool"
    assert root.file(CONF).read_text() == STATE["conf"]


def test_purge_deletes_spool_and_config(root):
    root.apt("purge", "mqtt2kafka")
    assert installed_version(root) == ""
    assert not root.file("/var/lib/mqtt2kafka").exists(), "purge must delete the spool"
    assert not root.file(CONF).exists()
    assert root.run("dpkg-statoverride", "--list", CONF, check=False).returncode != 0
