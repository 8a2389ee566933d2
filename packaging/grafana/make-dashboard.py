#!/usr/bin/env python3
"""Writes mqtt2kafka.json, the Grafana dashboard for a fleet of bridges.

The dashboard is made here rather than by hand so that its panels and
their PromQL stay readable in one place; `packaging/grafana/picture.py`
and the integration tests read the JSON this writes and run every query
against a real Prometheus. Grafana's dashboard JSON model (schema 38,
Grafana 10): an `__inputs` entry asks for the Prometheus data source on
import, `job` and `instance` are query variables over
mqtt2kafka_build_info, every panel is a time series or a stat panel.

Usage: make-dashboard.py [OUT]  (default: mqtt2kafka.json next to it)
"""
import json
import sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SEL = 'job=~"$job",instance=~"$instance"'
RATE = "$__rate_interval"

# (title, unit, [(PromQL, legend)], description, width, height, kind)
ROWS = [
    ("Links", [
        ("Uplink up (Kafka takes records)", "none",
         [(f"mqtt2kafka_uplink_up{{{SEL}}}", "{{instance}}")],
         "1 while Kafka takes records. 0 while the bridge spools: nothing is "
         "lost, the backlog grows.", 8, 6, "state"),
        ("MQTT connected", "none",
         [(f"mqtt2kafka_mqtt_connected{{{SEL}}}", "{{instance}}")],
         "1 while connected to the gateway's broker. /ready answers 503 while "
         "it is 0.", 8, 6, "state"),
        ("Kafka broker round trip (p99)", "s",
         [(f'mqtt2kafka_kafka_broker_rtt_seconds{{{SEL},quantile="0.99"}}',
           "{{instance}} {{broker}}")],
         "librdkafka's request round-trip time to each broker, 99th "
         "percentile of its last statistics interval.", 8, 6, "ts"),
    ]),
    ("Backlog", [
        ("Spool backlog (records)", "short",
         [(f"mqtt2kafka_spool_records{{{SEL}}}", "{{instance}}")],
         "Records waiting for Kafka, in flight included.", 8, 8, "ts"),
        ("Oldest record's age", "s",
         [(f"mqtt2kafka_spool_oldest_age_seconds{{{SEL}}}", "{{instance}}")],
         "How far behind the bridge is. Records older than spool.max_age "
         "expire (see Drops).", 8, 8, "ts"),
        ("Spool fill", "percentunit",
         [(f"mqtt2kafka_spool_file_bytes{{{SEL}}} / "
           f"mqtt2kafka_spool_max_bytes{{{SEL}}}", "{{instance}}")],
         "The spool's files against its cap in effect. At the cap, "
         "drop_oldest drops the oldest records and backpressure stops "
         "reading MQTT.", 8, 8, "ts"),
    ]),
    ("Flow", [
        ("Messages in and records out (per second)", "ops",
         [(f"sum by (instance) (rate(mqtt2kafka_messages_received_total{{{SEL}}}[{RATE}]))",
           "{{instance}} received"),
          (f"sum by (instance) (rate(mqtt2kafka_messages_delivered_total{{{SEL}}}[{RATE}]))",
           "{{instance}} delivered")],
         "MQTT messages taken (when their burst was committed) and Kafka "
         "records acknowledged. A split message is one in, several out.",
         12, 8, "ts"),
        ("Delivered by route (per second)", "ops",
         [(f"sum by (instance, route) "
           f"(rate(mqtt2kafka_route_messages_delivered_total{{{SEL}}}[{RATE}]))",
           "{{instance}} {{route}}")],
         "Records acknowledged by Kafka, by route (routes[].name, default "
         "its position).", 12, 8, "ts"),
    ]),
    ("Losses", [
        ("Drops by reason", "short",
         [(f"sum by (instance, reason) "
           f"(increase(mqtt2kafka_messages_dropped_total{{{SEL}}}[{RATE}]))",
           "{{instance}} {{reason}}")],
         "spool_full: dropped by drop_oldest; expired: older than max_age; "
         "qos0_lost; dead_full, dead_expired: dead letters over their "
         "bounds; broker: dropped by the MQTT broker before the bridge got "
         "them.", 12, 8, "bars"),
        ("Dead letters by reason", "short",
         [(f"sum by (instance, reason) "
           f"(increase(mqtt2kafka_messages_dead_lettered_total{{{SEL}}}[{RATE}]))",
           "{{instance}} {{reason}}")],
         "Messages sent to the dead-letter topic (unrouted, bad_topic, "
         "oversized, empty, bad_payload, missing_field) and records Kafka "
         "refused for good (kafka_refused, kept in the spool: `mqtt2kafka "
         "spool dead`).", 12, 8, "bars"),
    ]),
    ("Latency and wear", [
        ("Receive to Kafka acknowledgement", "s",
         [(f"histogram_quantile({q}, sum by (instance, le) "
           f"(rate(mqtt2kafka_delivery_latency_seconds_bucket{{{SEL}}}[{RATE}])))",
           "{{instance}} p" + p) for q, p in (("0.5", "50"), ("0.99", "99"))],
         "From the MQTT message's arrival to Kafka's acknowledgement of its "
         "record; records that waited out an outage count their wait.",
         12, 8, "ts"),
        ("Flash written (bytes per second)", "Bps",
         [(f"rate(mqtt2kafka_spool_bytes_written_total{{{SEL}}}[{RATE}])",
           "{{instance}} spool"),
          (f"rate(mqtt2kafka_disk_bytes_written_total{{{SEL}}}[{RATE}])",
           "{{instance}} process (kernel)")],
         "What the spool writes to its files (SQLite's writes) and what the "
         "kernel counts the process as writing to disk (whole pages). An SD "
         "card's life is bytes written.", 12, 8, "ts"),
    ]),
]


def panel(pid, title, unit, targets, desc, x, y, w, h, kind):
    p = {
        "id": pid,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e,
                     "legendFormat": leg, "range": True}
                    for i, (e, leg) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
    }
    if kind == "state":
        p["type"] = "state-timeline"
        p["fieldConfig"]["defaults"].update({
            "min": 0, "max": 1,
            "mappings": [{"type": "value", "options": {
                "0": {"text": "down", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1}}}],
            "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": [
                {"color": "red", "value": None}, {"color": "green", "value": 1}]},
        })
        p["options"] = {"showValue": "never", "mergeValues": True,
                        "legend": {"showLegend": False}}
    else:
        p["type"] = "timeseries"
        custom = {"drawStyle": "bars" if kind == "bars" else "line",
                  "fillOpacity": 60 if kind == "bars" else 10,
                  "lineWidth": 1, "spanNulls": False,
                  "stacking": {"mode": "normal" if kind == "bars" else "none"}}
        p["fieldConfig"]["defaults"]["custom"] = custom
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def variable(name, query, label):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query, "refresh": 2, "multi": True, "includeAll": True,
        "allValue": ".*", "current": {}, "sort": 1, "hide": 0,
    }


def dashboard():
    panels, y, pid = [], 0, 1
    for row, items in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid += 1
        y += 1
        x = 0
        for title, unit, targets, desc, w, h, kind in items:
            panels.append(panel(pid, title, unit, targets, desc, x, y, w, h, kind))
            pid += 1
            x += w
        y += max(h for *_, h, _ in items)
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                      "description": "The Prometheus that scrapes the bridges",
                      "type": "datasource", "pluginId": "prometheus",
                      "pluginName": "Prometheus"}],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus",
             "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "state-timeline", "name": "State timeline",
             "version": ""}],
        "title": "mqtt2kafka",
        "uid": "mqtt2kafka",
        "description": "MQTT-to-Kafka bridges on edge gateways: uplink, backlog and "
                       "its age, rates, drops and dead letters by reason, latency, "
                       "flash wear. Metrics: the bridge's GET /metrics (README, "
                       "\"Metrics\").",
        "tags": ["mqtt2kafka", "mqtt", "kafka", "edge"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 38,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {"list": [
            variable("job", "label_values(mqtt2kafka_build_info, job)", "job"),
            variable("instance",
                     'label_values(mqtt2kafka_build_info{job=~"$job"}, instance)',
                     "gateway"),
        ]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "mqtt2kafka.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    main()
