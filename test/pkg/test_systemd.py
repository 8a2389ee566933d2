"""The amd64 package under a real systemd 252: a clean Debian 12 root with
systemd (and no procps) booted with systemd-nspawn, the package installed
in it and its unit driven with systemctl against the test stack. Start, the
STATUS= line, the sandbox, the watchdog (fed, and a stopped loop killed and
restarted), `systemctl reload` (applied, and a bad config refused), a config
whose secrets come from LoadCredential= (credential:NAME), stop.

How the container is driven (the machine needs no systemd of its own, no
machined and no D-Bus):

  NOTIFY_SOCKET=<ours> systemd-nspawn -D ROOT -b --register=no --keep-unit \\
      -M NAME --notify-ready=yes --console=read-only

nspawn tells our notification socket the container's init pid
(X_NSPAWN_LEADER_PID=) and, with --notify-ready=yes, READY=1 once the
container's systemd has booted. Commands then run inside with
`nsenter -t LEADER -a` (every namespace of the container: its mounts, pids
and its systemd's private socket, so systemctl and journalctl work as
root without D-Bus). `machinectl` and `systemd-run --machine` need a
registered machine, which --register=no does not make. nspawn shares the
host's network (no --private-network), so the daemon inside reaches the
test brokers on the host's loopback. SIGTERM to nspawn powers the container
off cleanly. M2K_NSPAWN_OPTS replaces "--register=no --keep-unit" (a host
whose systemd must delegate a cgroup may need other options).

The tests are steps of one life cycle and run in file order on one machine.
"""
import os
import pathlib
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
CONF = "/etc/mqtt2kafka/mqtt2kafka.yaml"
UNIT = "mqtt2kafka.service"
DROPIN = "/etc/systemd/system/mqtt2kafka.service.d"
STATE = {}  # what one step leaves for the next


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.2)


class Machine:
    """A Debian root booted by systemd-nspawn; commands run in it with
    nsenter."""

    def __init__(self, path, name, log):
        self.path, self.name, self.log = pathlib.Path(path), name, pathlib.Path(log)
        self.proc = None
        self.leader = None

    def file(self, path):
        """The host's path of a file of the root (not of the container's
        tmpfs mounts: /tmp, /run)."""
        return self.path / str(path).lstrip("/")

    def boot(self, timeout=60):
        sockdir = tempfile.mkdtemp(prefix="m2k-notify-")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(f"{sockdir}/notify")
            sock.settimeout(0.5)
            opts = shlex.split(os.environ.get("M2K_NSPAWN_OPTS", "--register=no --keep-unit"))
            cmd = ["systemd-nspawn", "-D", str(self.path), "-b", *opts, "-M", self.name,
                   "--notify-ready=yes", "--console=read-only"]
            env = dict(os.environ, NOTIFY_SOCKET=f"{sockdir}/notify")
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env)
            ready = False
            deadline = time.monotonic() + timeout
            while not ready and time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    msg = sock.recv(4096).decode(errors="replace")
                except socket.timeout:
                    continue
                for line in msg.splitlines():
                    if line.startswith("X_NSPAWN_LEADER_PID="):
                        self.leader = int(line.split("=", 1)[1])
                    ready = ready or line == "READY=1"
            if not ready or not self.leader:
                rc = self.proc.poll()
                raise AssertionError(f"the container did not boot within {timeout}s (nspawn "
                                     f"{'running' if rc is None else f'exited {rc}'}):\n"
                                     f"{self.log.read_text(errors='replace')[-3000:]}")
        finally:
            sock.close()
            shutil.rmtree(sockdir, ignore_errors=True)
        # READY=1 is sent when the boot's jobs are done; "running" also
        # says that none of them failed
        p = self.run("systemctl", "is-system-running", "--wait", timeout=60, check=False)
        if p.stdout.strip() != "running":
            failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
            raise AssertionError(f"the container's systemd is {p.stdout.strip()!r}:\n{failed}")

    def run(self, *cmd, timeout=60, check=True, input=None):
        """Runs cmd in the container as root; a CompletedProcess with text."""
        pre = ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
               "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"]
        p = subprocess.run(pre + [str(c) for c in cmd], capture_output=True, text=True,
                           timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n"
                                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def show(self, *props):
        out = self.run("systemctl", "show", UNIT, *[f"--property={p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cursor(self):
        """The journal's position now, for journal(after=)."""
        out = self.run("journalctl", "-n", "1", "--show-cursor", "-o", "cat", "--no-pager").stdout
        return out.rsplit("-- cursor: ", 1)[1].strip()

    def journal(self, after):
        return self.run("journalctl", "-u", UNIT, "-o", "cat", "--no-pager",
                        f"--after-cursor={after}").stdout

    def wait_journal(self, after, pattern, timeout=15):
        """The unit's journal since `after` once it matches the regex."""
        last = {}

        def seen():
            last["j"] = self.journal(after)
            return re.search(pattern, last["j"])
        try:
            wait_for(seen, timeout, f"journal line /{pattern}/")
        except AssertionError as e:
            raise AssertionError(f"{e}; the unit's journal:\n{last.get('j', '')[-3000:]}") from None
        return last["j"]

    def poweroff(self, timeout=30):
        """SIGTERM to nspawn: the container's systemd shuts down. Returns
        nspawn's exit code (SIGKILL after timeout: -9)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            # nspawn leaves its (empty) propagation folder on a /run that is
            # not a tmpfs
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)


@pytest.fixture(scope="module")
def machine():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="m2k-nspawn-"))
    m = Machine(tmp / "root", f"m2k-{secrets.token_hex(4)}", tmp / "boot.log")
    try:
        subprocess.run([str(HERE / "rootfs.sh"), str(m.path), "systemd"], check=True, timeout=1200)
        t0 = time.monotonic()
        m.boot()
        STATE["boot_s"] = time.monotonic() - t0
        yield m
    finally:
        m.poweroff()
        subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)], check=False)


def write_config(m, stack, uniq, extra=""):
    text = f"""gateway:
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
  sync: normal
log:
  stats_interval: 0
routes:
  - match: {uniq}/sensors/{{region}}/{{type}}/{{device}}
    topic: it.{uniq}.sensor.{{region}}.{{type}}
    key: "{{device}}"
{extra}"""
    m.file(CONF).write_text(text)
    return text


def dropin(m, name, text):
    d = m.file(DROPIN)
    d.mkdir(parents=True, exist_ok=True)
    if text is None:
        (d / name).unlink(missing_ok=True)
    else:
        (d / name).write_text(text)
    m.run("systemctl", "daemon-reload")


def test_boot_and_install(machine, debs):
    deb, _ = debs
    # a minimal system: no procps, so no /bin/kill
    assert machine.run("dpkg-query", "-W", "procps", check=False).returncode != 0
    assert not machine.file("/usr/bin/kill").exists() and not machine.file("/bin/kill").exists()
    assert machine.run("systemctl", "--version").stdout.startswith("systemd 252 ")
    shutil.copyfile(deb, machine.file("/root") / deb.name)
    machine.run("apt-get", "update", "-q", timeout=300)
    machine.run("apt-get", "install", "-y", "-q", "--no-install-recommends",
                f"/root/{deb.name}", timeout=600)
    assert machine.file("/usr/bin/kill").exists() is False, "the package must not pull procps"
    p = machine.show("LoadState", "UnitFileState", "ActiveState", "ExecReload")
    assert p["LoadState"] == "loaded"
    assert p["UnitFileState"] == "disabled"  # the route map needs editing first
    assert p["ActiveState"] == "inactive"
    assert "/usr/bin/mqtt2kafka" in p["ExecReload"] and "kill" not in p["ExecReload"]


def test_start_status_line_and_delivery(machine, stack, uniq):
    STATE["uniq"] = uniq
    STATE["conf"] = write_config(machine, stack, uniq)
    cur = machine.cursor()
    t0 = time.monotonic()
    machine.run("systemctl", "start", UNIT, timeout=60)  # Type=notify: returns on READY=1
    STATE["start_s"] = time.monotonic() - t0
    p = machine.show("ActiveState", "SubState", "WatchdogUSec")
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), p
    assert p["WatchdogUSec"] == "30s"
    machine.wait_journal(cur, r"mqtt: connected to ")
    time.sleep(1)  # the subscription follows the connection
    topic = f"{uniq}/sensors/eu-west/temp/dev-17"
    subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port), "-q", "1",
                    "-t", topic, "-m", f"hello from {uniq}"], check=True, timeout=30)
    recs = stack.consume(f"it.{uniq}.sensor.eu-west.temp", 1, timeout=60)
    assert recs and recs[0]["value"] == f"hello from {uniq}".encode(), machine.journal(cur)
    # what `systemctl status` shows: the daemon's STATUS= line
    # (the first record to a new topic may wait for its metadata longer
    # than spool.direct_wait and be spilled: either path)
    want = re.compile(r"uplink up, mqtt connected, (direct|spool) path, spool 0 records, "
                      r"0 dead letters")
    wait_for(lambda: want.fullmatch(machine.show("StatusText")["StatusText"]), 15,
             f"StatusText {want.pattern!r} (now {machine.show('StatusText')})")
    text = machine.show("StatusText")["StatusText"]
    assert f'Status: "{text}"' in machine.run("systemctl", "status", UNIT, "--no-pager",
                                               check=False).stdout
    st = machine.run("mqtt2kafka", "status", check=False)
    assert st.returncode == 0 and "delivered 1," in st.stdout, st.stdout


def test_sandbox_holds(machine):
    pid = machine.show("MainPID")["MainPID"]
    status = dict(l.split(":", 1) for l in machine.run("cat", f"/proc/{pid}/status").stdout.splitlines())
    assert status["Uid"].split()[0] == machine.run("id", "-u", "mqtt2kafka").stdout.strip()
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a system call filter
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    # PrivateUsers=yes: a user namespace that maps root and the service user only
    assert len(machine.run("cat", f"/proc/{pid}/uid_map").stdout.splitlines()) == 2
    # ProtectSystem=strict, ProtectHome=yes: seen from the service's own mount
    # namespace, read-only mounts (even root cannot write there)
    def touch(path, user=None):
        su = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
        return machine.run("nsenter", "-t", pid, "-m", *su, "sh", "-c",
                           f"touch {path}/m2k-probe && rm {path}/m2k-probe", check=False)
    for path in ("/etc", "/etc/mqtt2kafka", "/usr", "/var", "/var/cache", "/home", "/root"):
        p = touch(path)
        assert p.returncode != 0 and "Read-only file system" in p.stderr, (path, p.stderr)
    # the service user writes its spool, status file and private /tmp and
    # /var/tmp only
    for path in ("/var/lib/mqtt2kafka", "/run/mqtt2kafka", "/tmp", "/var/tmp"):
        p = touch(path, "mqtt2kafka")
        assert p.returncode == 0, (path, p.stderr)
    for path in ("/etc/mqtt2kafka", "/var/lib", "/etc"):
        p = touch(path, "mqtt2kafka")
        assert p.returncode != 0, (path, p.stderr)
    # PrivateTmp=yes: its /tmp and /var/tmp are not the system's
    for path in ("/tmp", "/var/tmp"):
        machine.run("nsenter", "-t", pid, "-m", "touch", f"{path}/m2k-private")
        assert machine.run("test", "-e", f"{path}/m2k-private", check=False).returncode != 0
    # systemd's own verdict on the unit it runs (deb-check also rates the file offline)
    out = machine.run("systemd-analyze", "security", UNIT, "--no-pager").stdout
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert level <= 1.1, out


def test_watchdog_is_fed_and_a_stopped_loop_is_restarted(machine):
    # a short watchdog, to see in seconds what WatchdogSec=30s does
    dropin(machine, "test-watchdog.conf", "[Service]\nWatchdogSec=3s\nRestartSec=1s\n")
    try:
        machine.run("systemctl", "restart", UNIT, timeout=60)
        p0 = machine.show("MainPID", "NRestarts", "WatchdogUSec", "WatchdogTimestampMonotonic")
        assert p0["WatchdogUSec"] == "3s"
        time.sleep(7)  # more than twice the period: the loop keeps pinging
        p1 = machine.show("MainPID", "NRestarts", "ActiveState", "WatchdogTimestampMonotonic")
        assert (p1["MainPID"], p1["NRestarts"], p1["ActiveState"]) == \
            (p0["MainPID"], p0["NRestarts"], "active"), (p0, p1)
        assert int(p1["WatchdogTimestampMonotonic"]) > int(p0["WatchdogTimestampMonotonic"])
        # a loop that stops turning: systemd aborts it and starts it again
        cur = machine.cursor()
        machine.run("sh", "-c", f"kill -STOP {p0['MainPID']}")  # the shell's kill: no procps
        want = int(p0["NRestarts"]) + 1

        def restarted():
            p = machine.show("NRestarts", "ActiveState", "SubState")
            return int(p["NRestarts"]) == want and \
                (p["ActiveState"], p["SubState"]) == ("active", "running")
        wait_for(restarted, 20, "a restart after the watchdog timeout")
        j = machine.wait_journal(cur, r"Watchdog timeout \(limit 3s\)!")
        assert f"Killing process {p0['MainPID']} (mqtt2kafka) with signal SIGABRT" in j, j
        assert "Failed with result 'watchdog'" in j, j
        assert machine.show("MainPID")["MainPID"] != p0["MainPID"]
    finally:
        dropin(machine, "test-watchdog.conf", None)
    machine.run("systemctl", "restart", UNIT, timeout=60)
    assert machine.show("WatchdogUSec")["WatchdogUSec"] == "30s"


def test_reload_without_procps(machine):
    assert not machine.file("/usr/bin/kill").exists()
    pid = machine.show("MainPID")["MainPID"]
    cur = machine.cursor()
    p = machine.run("systemctl", "reload", UNIT, timeout=120, check=False)
    j = machine.journal(cur)
    assert p.returncode == 0, p.stderr + j
    assert "203/EXEC" not in j
    q = machine.show("MainPID", "ActiveState", "SubState")
    assert (q["MainPID"], q["ActiveState"], q["SubState"]) == (pid, "active", "running"), q
    # the daemon got the SIGHUP: it answered the reload (or, before it could
    # reload, logged its counters on SIGHUP)
    j = machine.wait_journal(cur, rf"pid {pid} reloaded its configuration|stats: received=")
    assert re.search(rf"pid {pid}\b.*(reloaded its configuration|does not report reload results)",
                     j), j


def test_reload_refuses_a_bad_config_and_keeps_running(machine, stack):
    pid = machine.show("MainPID")["MainPID"]
    good = STATE["conf"]
    try:
        # line 20 of the file: an unknown key is refused whole
        write_config(machine, stack, STATE["uniq"], extra="bogus_key: 1\n")
        cur = machine.cursor()
        p = machine.run("systemctl", "reload", UNIT, timeout=120, check=False)
        j = machine.journal(cur)
        assert p.returncode != 0, j
        assert "refused the new configuration" in j and f"{CONF}:20:" in j, j
        q = machine.show("MainPID", "ActiveState")
        assert (q["MainPID"], q["ActiveState"]) == (pid, "active"), q
    finally:
        machine.file(CONF).write_text(good)
    # (`status` reads log.status_file from the config: the good one again)
    st = machine.run("mqtt2kafka", "status", check=False).stdout
    assert re.search(rf"last reload failed at .*: {re.escape(CONF)}:20:", st), st
    cur = machine.cursor()
    machine.run("systemctl", "reload", UNIT, timeout=120)
    assert f"pid {pid} reloaded its configuration" in machine.journal(cur)
    assert "last reload ok at " in machine.run("mqtt2kafka", "status").stdout


def test_load_credential_is_readable_by_the_service_user_only(machine):
    # for the daemon's `credential:NAME` values: a root-only file, handed to
    # the service by systemd as $CREDENTIALS_DIRECTORY/NAME
    secret = secrets.token_hex(16) + "\n"
    src = machine.file("/etc/mqtt2kafka/test.secret")
    src.write_text(secret)
    src.chmod(0o600)
    cksum = subprocess.run(["cksum"], input=secret, capture_output=True, text=True,
                           check=True).stdout.strip()
    # ExecStartPre= runs as the service user in the unit's sandbox; it
    # leaves a checksum, never the secret
    dropin(machine, "test-credential.conf",
           "[Service]\nLoadCredential=m2k-test:/etc/mqtt2kafka/test.secret\n"
           "ExecStartPre=/bin/sh -c 'cksum < \"$CREDENTIALS_DIRECTORY/m2k-test\" "
           "> /run/mqtt2kafka/credential.cksum'\n")
    try:
        machine.run("systemctl", "restart", UNIT, timeout=60)
        assert machine.show("ActiveState")["ActiveState"] == "active"
        assert machine.run("cat", "/run/mqtt2kafka/credential.cksum").stdout.strip() == cksum
        pid = machine.show("MainPID")["MainPID"]
        env = machine.run("cat", f"/proc/{pid}/environ").stdout.split("\0")
        assert "CREDENTIALS_DIRECTORY=/run/credentials/mqtt2kafka.service" in env
        cred = "/run/credentials/mqtt2kafka.service/m2k-test"
        assert machine.run("stat", "-c", "%U %a", cred).stdout.split() == ["mqtt2kafka", "400"]

        def cat_as(user, path):
            return machine.run("setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                               "cat", path, check=False)
        assert cat_as("nobody", cred).returncode != 0
        assert cat_as("mqtt2kafka", cred).stdout == secret
        # without the credential the service user cannot read the file
        assert "Permission denied" in cat_as("mqtt2kafka", "/etc/mqtt2kafka/test.secret").stderr
    finally:
        dropin(machine, "test-credential.conf", None)
        src.unlink()
    machine.run("systemctl", "restart", UNIT, timeout=60)


def test_a_config_with_load_credential_runs(machine, stack):
    """The way the README says to keep secrets: root-only files handed to
    the service with LoadCredential=, named credential:NAME in the config.
    TLS and logins on both sides, through the stack's secured listeners."""
    stack.require("mqtt_tls", "mqtt_password_file", "kafka_sasl_ssl", "ca",
                  "kafka_users:SCRAM-SHA-512")
    uniq = STATE["uniq"]
    user, kpw = stack.kafka_users["SCRAM-SHA-512"]
    secrets_ = [stack.secret(kpw), stack.secret(stack.mqtt_password_file)]
    etc = machine.file("/etc/mqtt2kafka")
    shutil.copyfile(stack.ca, etc / "ca.crt")
    (etc / "ca.crt").chmod(0o644)
    for name, src in (("kafka.password", kpw), ("mqtt.password", stack.mqtt_password_file)):
        shutil.copyfile(src, etc / name)
        (etc / name).chmod(0o600)  # root's only: the service user cannot read it
    host, port = stack.mqtt_tls.rsplit(":", 1)
    conf = STATE["conf"].replace(
        f"  port: {stack.mqtt_port}\n",
        f"  port: {port}\n  username: {stack.mqtt_user}\n"
        f"  password_file: credential:mqtt-password\n"
        f"  tls:\n    ca_file: /etc/mqtt2kafka/ca.crt\n").replace(
        f"  brokers: {stack.kafka}\n",
        f"  brokers: {stack.kafka_sasl_ssl}\n  security:\n    protocol: sasl_ssl\n"
        f"    sasl_mechanism: SCRAM-SHA-512\n    username: {user}\n"
        f"    password_file: credential:kafka-password\n"
        f"    ca_file: /etc/mqtt2kafka/ca.crt\n")
    assert "credential:kafka-password" in conf and "credential:mqtt-password" in conf
    machine.file(CONF).write_text(conf)
    dropin(machine, "credentials.conf",
           "[Service]\nLoadCredential=kafka-password:/etc/mqtt2kafka/kafka.password\n"
           "LoadCredential=mqtt-password:/etc/mqtt2kafka/mqtt.password\n")
    outputs = []
    try:
        # check, as an admin runs it: the credentials are named, not read
        p = machine.run("mqtt2kafka", "check", check=False)
        outputs.append(p.stdout + p.stderr)
        assert p.returncode == 0, p.stderr
        assert "credential:kafka-password is a systemd credential" in p.stderr
        assert "SASL SCRAM-SHA-512 as " + user + ", password from credential:kafka-password" \
            in p.stdout
        cur = machine.cursor()
        machine.run("systemctl", "restart", UNIT, timeout=60)
        machine.wait_journal(cur, rf"mqtt: connected to {re.escape(stack.mqtt_tls)} ")
        time.sleep(1)
        subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
                        "-q", "1", "-t", f"{uniq}/sensors/eu/temp/dev-9", "-m", "via-tls-sasl"],
                       check=True, timeout=30)
        props = stack.kafka_props("sasl_ssl", "SCRAM-SHA-512")
        recs = stack.consume(f"it.{uniq}.sensor.eu.temp", 1, timeout=60, props=props)
        assert [r["value"] for r in recs] == [b"via-tls-sasl"], machine.journal(cur)
        want = re.compile(r"uplink up, mqtt connected, (direct|spool) path, spool 0 "
                          r"records, 0 dead letters")
        wait_for(lambda: want.fullmatch(machine.show("StatusText")["StatusText"]), 15,
                 f"StatusText {want.pattern!r} (now {machine.show('StatusText')})")
        p = machine.run("systemctl", "reload", UNIT, timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        st = machine.run("mqtt2kafka", "status").stdout
        assert "last reload ok at " in st and "no change" in st, st
        outputs += [st, machine.journal(cur)]
        assert not [s for s in secrets_ for o in outputs if s in o], "a secret was printed"
    finally:
        dropin(machine, "credentials.conf", None)
        machine.file(CONF).write_text(STATE["conf"])
        for name in ("kafka.password", "mqtt.password", "ca.crt"):
            (etc / name).unlink(missing_ok=True)
    machine.run("systemctl", "restart", UNIT, timeout=60)


def test_stop_exits_cleanly(machine):
    cur = machine.cursor()
    t0 = time.monotonic()
    machine.run("systemctl", "stop", UNIT, timeout=60)
    STATE["stop_s"] = time.monotonic() - t0
    p = machine.show("ActiveState", "Result", "ExecMainStatus")
    # Result= would be exit-code, signal or timeout otherwise
    assert (p["ActiveState"], p["Result"], p["ExecMainStatus"]) == ("inactive", "success", "0"), p
    j = machine.wait_journal(cur, r"Deactivated successfully")
    assert "final: received=" in j, j
    assert machine.run("mqtt2kafka", "status", check=False).returncode == 3


def test_poweroff(machine):
    t0 = time.monotonic()
    assert machine.poweroff() == 0, machine.log.read_text(errors="replace")[-2000:]
    print(f"systemd: boot {STATE.get('boot_s', 0):.1f}s, start {STATE.get('start_s', 0):.1f}s, "
          f"stop {STATE.get('stop_s', 0):.1f}s, poweroff {time.monotonic() - t0:.1f}s")
