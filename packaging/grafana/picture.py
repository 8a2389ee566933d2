#!/usr/bin/env python3
"""Draws the dashboard's panels from a real run, into mqtt2kafka-panels.png.

Grafana itself is not needed: the run is scraped by a real Prometheus, and
every panel of mqtt2kafka.json is drawn with gnuplot from the same PromQL
(its $job, $instance and $__rate_interval filled in), queried through
Prometheus' HTTP API. So the picture shows what the dashboard shows.

The run (about 5 minutes, on the test stack: test/stack/stack.sh up, with
its M2K_* variables for a private one): two gateways, gw-a (600 msgs/s,
an 8 MiB spool that drops its oldest records when full, two bad messages
every 5 s) and gw-b (200 msgs/s, a 64 MiB spool with max_age 30 s and a
window of 2,000 records in flight, sync full); Kafka is stopped from 60 s
to about 120 s.

Usage: packaging/grafana/picture.py [OUT.png]   (make dashboard-picture)
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "test" / "it"))
from bridge_util import Bridge, pub_background  # noqa: E402
from metrics_util import Prometheus, free_port  # noqa: E402

STEP = 2  # seconds between points, = the scrape interval
UNITS = {"none": "", "short": "", "ops": "per second", "Bps": "bytes per second",
         "s": "seconds", "percentunit": "fraction of the cap"}
STACK_SH = REPO / "test" / "stack" / "stack.sh"


class Stack:
    """What Bridge and pub_background need of the test stack."""

    def __init__(self):
        env = dict(line.split("=", 1) for line in
                   subprocess.run([str(STACK_SH), "env"], capture_output=True,
                                  text=True, check=True).stdout.split() if "=" in line)
        self.mqtt = env["MQTT2KAFKA_TEST_MQTT"]
        self.mqtt_host, _, port = self.mqtt.rpartition(":")
        self.mqtt_port = int(port)
        self.kafka = env["MQTT2KAFKA_TEST_KAFKA"]
        self.build = Path(os.environ.get("M2K_BUILD", REPO / "build")).resolve()

    def kafka_ctl(self, action):
        subprocess.run([str(STACK_SH), "kafka", action], check=True, timeout=180,
                       capture_output=True)


def bad_messages(stack, uniq, stop):
    """A message with an illegal topic name and an empty one every 5 s."""
    base = ["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
            "-q", "1"]
    while not stop.wait(5):
        subprocess.run(base + ["-t", f"{uniq}/sensors/eu west/temp/d1", "-m", "x"],
                       timeout=20)
        subprocess.run(base + ["-t", f"{uniq}/sensors/eu/temp/d2", "-n"], timeout=20)


def run(work):
    stack = Stack()
    stamp = int(time.time()) % 100000
    gws = []
    for name, spool, sync, age, window in (("a", "8MiB", "normal", "1h", 10000),
                                           ("b", "64MiB", "full", "30s", 2000)):
        uniq = f"dash-{name}-{stamp}"
        port = free_port()
        (work / name).mkdir(parents=True, exist_ok=True)
        br = Bridge(stack, work / name, uniq, extra={
            "gateway": {"id": f"gw-{name}"},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "kafka": {"inflight_records": window,
                      "properties": {"linger.ms": 5, "statistics.interval.ms": 2000}},
            "spool": {"max_bytes": spool, "max_age": age, "sync": sync},
            "log": {"stats_interval": 10}})
        gws.append((name, uniq, port, br))
    prom = Prometheus(work / "prom", {"mqtt2kafka": [
        (f"127.0.0.1:{port}", {"instance": f"gw-{name}"}) for name, _, port, _ in gws]},
        interval=f"{STEP}s")
    feeds, stop = [], threading.Event()
    try:
        for _, _, _, br in gws:
            br.start()
        t0 = time.time()
        (_, ua, _, _), (_, ub, _, _) = gws
        feeds.append(pub_background(stack, f"{ua}/sensors/eu/temp/{{device}}", 20, 240,
                                    600, work / "a.acked"))
        feeds.append(pub_background(stack, f"{ub}/sensors/eu/temp/{{device}}", 10, 240,
                                    200, work / "b.acked"))
        bad = threading.Thread(target=bad_messages, args=(stack, ua, stop))
        bad.start()
        time.sleep(60)
        stack.kafka_ctl("stop")
        t_stop = time.time() - t0
        print("picture: Kafka stopped", flush=True)
        time.sleep(60)
        stack.kafka_ctl("start")  # returns when Kafka answers again
        t_back = time.time() - t0
        print("picture: Kafka started", flush=True)
        for f in feeds:
            f.communicate(timeout=300)
        stop.set()
        bad.join()
        time.sleep(20)
        t1 = time.time()
        return prom, t0, t1, f"Kafka stopped at {t_stop:.0f} s, back at {t_back:.0f} s"
    except BaseException:
        stop.set()
        prom.stop()
        raise
    finally:
        for f in feeds:
            if f.poll() is None:
                f.kill()
        for _, _, _, br in gws:
            br.stop()


def panels(dashboard):
    """(row title, [panels]) in the dashboard's order."""
    rows, cur = [], None
    for p in dashboard["panels"]:
        if p["type"] == "row":
            cur = (p["title"], [])
            rows.append(cur)
        else:
            cur[1].append(p)
    return rows


def fill(expr):
    return (expr.replace('job=~"$job"', 'job="mqtt2kafka"')
            .replace(',instance=~"$instance"', "")
            .replace("$__rate_interval", f"{4 * STEP}s"))


def legend(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def draw(prom, t0, t1, what, out, work):
    dash = json.loads((Path(__file__).with_name("mqtt2kafka.json")).read_text())
    rows = panels(dash)
    ncols = max(len(ps) for _, ps in rows)
    gp = [f'set terminal pngcairo size {560 * ncols},{330 * len(rows)} font "sans,9"',
          f'set output "{out}"',
          f'set multiplot layout {len(rows)},{ncols} title "mqtt2kafka dashboard '
          f'panels, drawn from a real run through Prometheus ({what})" '
          f'font "sans,12"',
          "set termoption noenhanced", "set grid",
          "set key top left font \",8\" noopaque", 'set xlabel "seconds"']
    n = 0
    for _, ps in rows:
        for p in ps:
            unit = p["fieldConfig"]["defaults"].get("unit", "")
            bars = p["fieldConfig"]["defaults"].get("custom", {}).get(
                "drawStyle") == "bars"
            plots = []
            for t in p["targets"]:
                for labels, values in prom.query_range(fill(t["expr"]), t0, t1,
                                                       f"{STEP}s"):
                    if bars and not any(v for _, v in values if v == v):
                        continue  # a reason that never happened
                    n += 1
                    f = work / f"series{n}.dat"
                    # NaN (nothing to compute, as in an outage) and missing
                    # points are gaps, as Grafana draws them
                    rows, last = [], None
                    for ts, v in values:
                        if v != v or (last is not None and ts - last > 2 * STEP):
                            rows.append("\n")
                        if v == v:
                            rows.append(f"{ts - t0:.0f} {v}\n")
                        last = ts
                    f.write_text("".join(rows))
                    title = legend(t["legendFormat"], labels).replace('"', "'")
                    style = "steps lw 1.5" if bars else "lines lw 1.5"
                    plots.append(f'"{f}" using 1:2 with {style} title "{title}"')
            gp.append(f'set title "{p["title"]}" font "sans,10"')
            gp.append(f'set ylabel "{UNITS.get(unit, unit)}"')
            gp.append("set yrange [0:*]" if unit != "percentunit" else "set yrange [0:1]")
            gp.append(f"set xrange [0:{t1 - t0:.0f}]")
            if plots:
                gp.append("plot " + ", ".join(plots))
            else:
                gp.append('set label 1 "no data" at graph 0.45,0.5\nplot NaN notitle\n'
                          "unset label 1")
        for _ in range(ncols - len(ps)):
            gp.append("set multiplot next")
    gp.append("unset multiplot")
    script = work / "panels.gp"
    script.write_text("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", str(script)], check=True)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else
               Path(__file__).with_name("mqtt2kafka-panels.png")).resolve()
    with tempfile.TemporaryDirectory(prefix="m2k-picture-") as d:
        work = Path(d)
        prom, t0, t1, what = run(work)
        try:
            draw(prom, t0, t1, what, out, work)
        finally:
            prom.stop()
    print(f"picture: {out}")


if __name__ == "__main__":
    main()
