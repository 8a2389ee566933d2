"""The command line against config files: `check`, `route` and usage errors.

Runs the built binary (build/mqtt2kafka, or $M2K_BUILD/mqtt2kafka). These
tests need no brokers: they do not request the `stack` fixture.
"""
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("M2K_BUILD", REPO / "build"))
BIN = BUILD / "mqtt2kafka"
EXAMPLE = REPO / "conf" / "mqtt2kafka.yaml"

GOOD = """\
gateway:
  id: gw-test
routes:
  - match: sensors/{region}/{type}/{device}
    topic: iot.sensor.{region}.{type}
    key: "{device}"
  - match: gateways/{gateway}/events/#
    topic: iot.gateway.events
    key: "{gateway}"
"""


def m2k(*args, timeout=20):
    if not BIN.exists():
        pytest.fail(f"{BIN} is not built: run make first")
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def write(tmp_path, text, name="m2k.yaml"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


# (id, file text, line, column, words the message must contain)
BAD = [
    ("unknown-key", GOOD + "mqtt:\n  hots: 127.0.0.1\n", 11, 3,
     'unknown key "hots" in mqtt (did you mean "host"?)'),
    ("unknown-section", GOOD + "kafak:\n  brokers: x:9092\n", 10, 1,
     'unknown key "kafak" in the top level'),
    ("wrong-type", GOOD + "mqtt:\n  port: eighteen\n", 11, 9,
     'mqtt.port: expected an integer from 1 to 65535, got "eighteen"'),
    ("out-of-range", GOOD + "mqtt:\n  qos: 2\n", 11, 8, "mqtt.qos: 2 is out of range (0 to 1)"),
    ("bad-size", GOOD + "spool:\n  max_bytes: lots\n", 11, 14, "spool.max_bytes: expected a size"),
    ("bad-duration", GOOD + "spool:\n  max_age: 1y\n", 11, 12,
     "spool.max_age: expected a duration"),
    ("bad-enum", GOOD + "spool:\n  on_full: block\n", 11, 12,
     "expected one of drop_oldest | backpressure"),
    ("duplicate-key", GOOD + "mqtt:\n  port: 1\n  port: 2\n", 12, 3,
     'duplicate key "port" in mqtt (first set on line 11)'),
    ("missing-gateway", GOOD.replace("gateway:\n  id: gw-test\n", ""), 1, 1,
     "missing required key gateway.id"),
    ("missing-routes", "gateway:\n  id: g\n", 1, 1, "at least one route is required"),
    ("missing-topic", "gateway: {id: g}\nroutes:\n  - match: a/b\n", 3, 5,
     'route 1 is missing required key "topic"'),
    ("unknown-capture", GOOD.replace('key: "{device}"', 'key: "{devce}"'), 6, 10,
     "route 1 key template names {devce}, but match defines region, type, device"),
    ("illegal-topic-template", GOOD.replace("iot.sensor.{region}.{type}", "iot/sensor/{region}"),
     5, 12, "can only produce illegal Kafka topic names: '/' is not allowed"),
    ("bad-filter", GOOD.replace("gateways/{gateway}/events/#", "gateways/#/events"), 7, 12,
     "is not a valid MQTT filter: '#' must be a whole level and the last one"),
    ("unquoted-template", GOOD.replace('key: "{device}"', "key: {device}"), 6, 10,
     "a value that starts with '{' must be quoted"),
    ("yaml-syntax", GOOD + "mqtt:\n  host: [127.0.0.1\n", 12, 1, "YAML syntax error"),
    ("not-utf8", b"gateway:\n  id: g\xff\n", 2, 8, "not valid UTF-8"),
    ("owned-property", GOOD + "kafka:\n  properties:\n    acks: 1\n", 12, 5,
     '"acks" cannot be set here'),
]


@pytest.mark.parametrize("text,line,col,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exits_78_with_position(tmp_path, text, line, col, words):
    p = write(tmp_path, text)
    r = m2k("check", "-c", p)
    assert r.returncode == 78, r.stderr
    assert r.stdout == ""
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{p}:{line}:{col}: "), first
    assert words in first, first


def test_bad_config_also_stops_run_and_route(tmp_path):
    p = write(tmp_path, GOOD + "mqtt:\n  hots: x\n")
    for args in (["run", "-c", p], ["-c", p], ["route", "-c", p, "a/b"]):
        r = m2k(*args)
        assert r.returncode == 78, (args, r.stderr)
        assert f"{p}:11:3: unknown key" in r.stderr


def test_missing_file_exits_78(tmp_path):
    r = m2k("check", "-c", tmp_path / "nope.yaml")
    assert r.returncode == 78
    assert "nope.yaml: cannot open: No such file or directory" in r.stderr


def test_good_config_lists_routes(tmp_path):
    r = m2k("check", "-c", write(tmp_path, GOOD))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "OK" in out.splitlines()[0]
    assert "gateway  gw-test" in out
    assert "client_id mqtt2kafka-gw-test" in out
    assert "1. sensors/{region}/{type}/{device}  (line 4)" in out
    assert "filter  sensors/+/+/+" in out
    assert "topic   iot.sensor.{region}.{type}" in out
    assert "key     {device}" in out
    assert "2. gateways/{gateway}/events/#" in out
    assert "filter  gateways/+/events/#" in out
    assert "subscriptions (qos 1): sensors/+/+/+ gateways/+/events/#" in out


def test_example_config_passes_check():
    r = m2k("check", "-c", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "gateway  gw-0001" in r.stdout
    assert "max_bytes 1GiB  on_full drop_oldest  max_age 7d  sync full" in r.stdout


def test_check_keys_lists_every_key():
    r = m2k("check", "--keys")
    assert r.returncode == 0
    for key in ("gateway.id", "mqtt.session_expiry", "kafka.properties", "spool.on_full",
                "log.level", "routes[].match", "routes[].key"):
        assert key in r.stdout


def route(tmp_path, *topics):
    return m2k("route", "-c", write(tmp_path, GOOD), *topics)


def test_route_matching_topic(tmp_path):
    r = route(tmp_path, "sensors/eu-west/temp/dev-17", "gateways/gw9/events/boot/x")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split(None, 1) for line in r.stdout.splitlines()]
    assert lines[0] == ["sensors/eu-west/temp/dev-17"]
    assert lines[1] == ["route", "1. sensors/{region}/{type}/{device}"]
    assert lines[2] == ["topic", "iot.sensor.eu-west.temp"]
    assert lines[3] == ["key", "dev-17"]
    assert lines[4] == ["headers", "mqtt.topic=sensors/eu-west/temp/dev-17 mqtt.qos=1 "
                                   "gateway.id=gw-test"]
    assert lines[6] == ["route", "2. gateways/{gateway}/events/#"]
    assert lines[7] == ["topic", "iot.gateway.events"]
    assert lines[8] == ["key", "gw9"]


def test_route_non_matching_topic(tmp_path):
    r = route(tmp_path, "sensors/eu-west/temp/dev-17", "factory/line1")
    assert r.returncode == 1
    assert "factory/line1\n  no route matches" in r.stdout
    assert "topic    iot.sensor.eu-west.temp" in r.stdout  # the good one still shown


def test_route_illegal_captured_name(tmp_path):
    r = route(tmp_path, "sensors/eu west/temp/d1", "sensors/eu/t\u00fcr/d1")
    assert r.returncode == 1
    assert ("dead-letter -> mqtt2kafka.dead-letter: capture {region} = \"eu west\" puts ' ' "
            "into the Kafka topic") in r.stdout
    assert "capture {type} = \"t\u00fcr\" puts ? (a non-ASCII character)" in r.stdout


def test_route_invalid_topic_name(tmp_path):
    r = route(tmp_path, "sensors/+/temp/d1")
    assert r.returncode == 1
    assert "not a valid MQTT topic name" in r.stdout


@pytest.mark.parametrize("args", [["bogus"], ["check", "--frobnicate"], ["route"],
                                  ["check", "-c"], ["spool", "-c", EXAMPLE, "explode"]])
def test_usage_errors_exit_64(args):
    r = m2k(*args)
    assert r.returncode == 64, r.stderr
    assert "Usage: mqtt2kafka" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args", [["help"], ["-h"], ["--help"]])
def test_help_lists_commands(args):
    r = m2k(*args)
    assert r.returncode == 0
    for cmd in ("run", "check", "route", "spool", "version", "help"):
        assert f"\n  {cmd} " in r.stdout


def test_version():
    r = m2k("version")
    assert r.returncode == 0
    assert r.stdout.startswith("mqtt2kafka ")


def test_spool_without_a_spool_file(tmp_path):
    p = write(tmp_path, GOOD + f"spool:\n  path: {tmp_path / 'none.db'}\n")
    r = m2k("spool", "-c", p, "stats")
    assert r.returncode == 1
    assert "no spool at" in r.stderr
    assert not (tmp_path / "none.db").exists()  # looking does not create it
