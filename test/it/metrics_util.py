"""Reading the bridge's metrics endpoint, and a real Prometheus server.

scrape() parses the Prometheus text format the way a scraper does (the
samples; HELP and TYPE lines are checked by promtool elsewhere). The
Prometheus class runs Debian's `prometheus` on loopback with its own data
directory, scraping the given targets, and queries its HTTP API.
"""
import http.client
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(port, path, timeout=10, host="127.0.0.1"):
    """(status, body text, content type)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), r.getheader("Content-Type")
    finally:
        c.close()


def parse(text):
    """{(name, frozenset of (label, value)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class Metrics:
    """One scrape: m["name"], m["name", reason="x"], m.sum("name")."""

    def __init__(self, text):
        self.text = text
        self.samples = parse(text)

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            raise KeyError(f"{name}{labels} not in the scrape")
        return self.samples[key]

    def __getitem__(self, name):
        return self.get(name)

    def by(self, name, label):
        return {dict(k[1]).get(label): v for k, v in self.samples.items() if k[0] == name}

    def sum(self, name):
        return sum(v for k, v in self.samples.items() if k[0] == name)


def scrape(port, timeout=10):
    status, body, ctype = http_get(port, "/metrics", timeout)
    assert status == 200, body
    assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
    return Metrics(body)


def wait_metric(port, cond, what, timeout=60, every=0.5):
    """Scrapes until cond(Metrics) is true; returns that scrape."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = scrape(port)
            if cond(last):
                return last
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(every)
    raise AssertionError(f"never {what} in {timeout}s; last scrape:\n"
                         f"{last.text if last else '(none)'}")


def identity(m):
    """The conservation identity's terms for this run (README, "Metrics"):
    returns the three differences, each 0 when it holds."""
    dead = m.by("mqtt2kafka_messages_dead_lettered_total", "reason")
    dropped = m.by("mqtt2kafka_messages_dropped_total", "reason")
    topic_dead = sum(v for r, v in dead.items() if r != "kafka_refused")
    messages = (m["mqtt2kafka_messages_received_total"]
                - m["mqtt2kafka_messages_stored_total"] - topic_dead
                - m["mqtt2kafka_messages_redelivered_total"] - dropped["qos0_lost"])
    records = (m["mqtt2kafka_spool_records_at_start"]
               + m["mqtt2kafka_records_spooled_total"]
               + m["mqtt2kafka_records_direct_total"]
               - m["mqtt2kafka_messages_delivered_total"] - dead["kafka_refused"]
               - dropped["spool_full"] - dropped["expired"]
               - m["mqtt2kafka_spool_records"])
    dead_table = (m["mqtt2kafka_spool_dead_letters_at_start"] + dead["kafka_refused"]
                  - m["mqtt2kafka_spool_dead_letters"] - dropped["dead_full"]
                  - dropped["dead_expired"])
    return messages, records, dead_table


def lifetime_identity(m):
    """The spool file's own identity, across restarts and crashes."""
    return (m["mqtt2kafka_spool_records_put_total"]
            - m["mqtt2kafka_spool_records_acked_total"]
            - m.sum("mqtt2kafka_spool_records_dropped_total")
            - m["mqtt2kafka_spool_dead_letters_purged_total"]
            - m["mqtt2kafka_spool_records"] - m["mqtt2kafka_spool_dead_letters"])


def promtool_check(text):
    """`promtool check metrics`: (exit code, output)."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


class Prometheus:
    """Debian's prometheus on 127.0.0.1, its own data dir, scraping
    `targets` ({job: ["host:port" or ("host:port", {label: value}), ...]})
    every `interval`."""

    def __init__(self, workdir, targets, interval="1s"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        jobs = []
        for job, addrs in targets.items():
            static = ""
            for a in addrs:
                addr, labels = (a, {}) if isinstance(a, str) else a
                static += f"      - targets: {json.dumps([addr])}\n"
                if labels:
                    static += f"        labels: {json.dumps(labels)}\n"
            jobs.append(f"  - job_name: {json.dumps(job)}\n"
                        f"    static_configs:\n{static}")
        (self.dir / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {interval}\nscrape_configs:\n" + "".join(jobs))
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or "/usr/bin/prometheus",
             f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if http_get(self.port, "/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise AssertionError("prometheus did not start:\n"
                             + (self.dir / "prometheus.log").read_text()[-3000:])

    def api(self, path, **params):
        q = urllib.parse.urlencode(params)
        status, body, _ = http_get(self.port, f"/api/v1/{path}?{q}", timeout=30)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", body
        return doc["data"]

    def query(self, expr, at=None):
        """[(labels dict, float)] of an instant query."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr, start, end, step):
        data = self.api("query_range", query=expr, start=f"{start:.3f}",
                        end=f"{end:.3f}", step=step)
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
                for r in data["result"]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
