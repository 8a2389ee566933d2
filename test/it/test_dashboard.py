"""The Grafana dashboard (packaging/grafana/mqtt2kafka.json) as Grafana and
Prometheus will read it: made by make-dashboard.py without drift, a
Prometheus data source asked for on import, job and instance variables,
panels on the 24-column grid without overlaps, and every query valid
PromQL (promtool check rules). test_metrics.py runs every query against a
real Prometheus scraping a real bridge. No broker is needed here.
"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "packaging" / "grafana"


def load():
    return json.loads((GRAFANA / "mqtt2kafka.json").read_text())


def queries(dash, job="mqtt2kafka", interval="1m"):
    """(panel title, PromQL with the variables filled in) of every target."""
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield p["title"], (t["expr"].replace("$job", job)
                               .replace("$instance", ".*")
                               .replace("$__rate_interval", interval))


def test_made_by_its_generator(tmp_path):
    out = tmp_path / "d.json"
    subprocess.run([sys.executable, str(GRAFANA / "make-dashboard.py"), str(out)],
                   check=True, timeout=30)
    assert out.read_text() == (GRAFANA / "mqtt2kafka.json").read_text(), \
        "mqtt2kafka.json differs from what make-dashboard.py writes: run it"


def test_inputs_variables_and_layout():
    d = load()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["job", "instance"]
    cells = set()
    titles = []
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps"
                cells.add((x, y))
        titles.append(p["title"])
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert 'job=~"$job"' in t["expr"] and 'instance=~"$instance"' in t["expr"], t
    assert len(titles) == len(set(titles))
    want = {"uplink", "backlog", "age", "drops", "dead letters", "latency", "flash",
            "in and", "route"}
    text = " ".join(titles).lower()
    assert all(w in text for w in want), titles


def test_every_query_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{i}", "expr": q}
        for i, (_, q) in enumerate(queries(load()))]}]}
    f = tmp_path / "rules.yml"
    f.write_text(json.dumps(rules))  # JSON is YAML
    r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules['groups'][0]['rules'])} rules found" in r.stdout
