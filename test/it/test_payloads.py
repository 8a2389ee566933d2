"""Payloads as devices send them, end to end through the real Mosquitto and
Kafka: a protobuf schema loaded at run time (a descriptor set made with
protoc, messages made by Python's protobuf: an independent encoder), JSON
payloads, Confluent's Schema Registry framing read back by confluent-kafka's
own ProtobufDeserializer, and Sparkplug B from pysparkplug's edge node. The
two PyPI packages run in a virtual environment test/stack/pyvenv.sh makes.
"""
import json
import os
import subprocess
import time

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, \
    message_factory, text_format

from bridge_util import Bridge

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "unit", "fixtures", "schema")
READING = "acme.meter.v2.Reading"


@pytest.fixture(scope="session")
def venv(stack):
    r = subprocess.run([str(stack.repo / "test" / "stack" / "pyvenv.sh")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def desc(tmp_path):
    """The acme test schema as one descriptor set, as a user makes it."""
    out = tmp_path / "schemas" / "acme.desc"
    out.parent.mkdir()
    subprocess.run(["protoc", f"--proto_path={SCHEMA}", "--proto_path=/usr/include",
                    "--include_imports", f"--descriptor_set_out={out}",
                    "acme/meter/v2/reading.proto"], check=True, timeout=30)
    return out


def pool_of(path):
    fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return pool


def message(pool, name, text):
    d = pool.FindMessageTypeByName(name)
    cls = (message_factory.GetMessageClass(d) if hasattr(message_factory, "GetMessageClass")
           else message_factory.MessageFactory(pool).GetPrototype(d))
    m = cls()
    text_format.Parse(text, m, descriptor_pool=pool)
    return m


def bridge(stack, tmp, uniq, routes, schemas=None, extra=None):
    br = Bridge(stack, tmp, uniq, routes=[("unused", "unused", None)], extra=extra)
    head = br.conf.read_text().split("routes:\n")[0]
    lines = [head.rstrip("\n")]
    if schemas:
        lines.append("schemas:")
        lines += [f"  - {json.dumps(str(s))}" for s in schemas]
    lines.append("routes:")
    for r in routes:
        items = list(r.items())
        lines.append(f"  - {items[0][0]}: {json.dumps(items[0][1])}")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in items[1:]]
    br.conf.write_text("\n".join(lines) + "\n")
    return br


def mqtt_pub(stack, topic, payload, retain=False):
    subprocess.run(["mosquitto_pub", "-h", stack.mqtt_host, "-p", str(stack.mqtt_port),
                    "-V", "5", "-q", "1", "-t", topic, "-s"] + (["-r"] if retain else []),
                   input=payload, check=True, timeout=20)


def tool(br, *args, payload=None):
    r = subprocess.run([br.bin, *args, "-c", str(br.conf)], capture_output=True,
                       timeout=30, input=payload)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def sort_maps(v):
    if isinstance(v, dict):
        return {k: sort_maps(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [sort_maps(x) for x in v]
    return v


def test_runtime_schema(stack, uniq, tmp_path, desc):
    """A user's .desc: check, schema list/show, route --payload-file, then
    records whose JSON is json_format's and whose key keeps a NUL."""
    t = f"it.{uniq}"
    br = bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/meters/{{site}}/{{device}}", "topic": f"{t}.meter.{{site}}",
         "payload": READING, "key": "{payload.device.serial}", "format": "json"},
    ], schemas=[desc.parent / "*.desc"])
    rc, out = tool(br, "check")
    assert rc == 0 and str(desc.parent / "*.desc") in out and READING in out, out
    rc, out = tool(br, "schema", "list")
    assert rc == 0 and READING in out and "acme/meter/v2/reading.proto" in out, out
    rc, out = tool(br, "schema", "show", READING)
    assert rc == 0 and "map<string, acme.meter.v2.Reading.Channel> channels = 6;" in out, out
    rc, out = tool(br, "schema", "show", "acme.Nope")
    assert rc == 1 and "no such type is loaded" in out, out

    pool = pool_of(desc)
    m = message(pool, READING,
                'serial: "MTR-1" device { serial: "S\\000N" revision: 2 } '
                'at { seconds: 1700000000 nanos: 5000000 } reading: 230.5 '
                'labels { key: 2 value: "b" } '
                'extra { fields { key: "k" value { bool_value: true } } } '
                'count64 { value: 12 } custom: 7 '
                'detail { [type.googleapis.com/acme.common.v1.Device] '
                '{ serial: "inner" revision: 1 } }')
    wire = m.SerializeToString()
    # one entry per map: the bridge sorts map keys, json_format does not
    want = json_format.MessageToDict(m, descriptor_pool=pool)
    pf = tmp_path / "reading.bin"
    pf.write_bytes(wire)
    rc, out = tool(br, "route", "--payload-file", str(pf), f"{uniq}/meters/north/m1")
    assert rc == 0 and f"decoded  {READING} " in out and '"customName":7' in out, out
    assert f"topic    {t}.meter.north" in out, out

    br.start()
    mqtt_pub(stack, f"{uniq}/meters/north/m1", wire)
    # a payload from a newer schema: field 111 is not in this one
    other = message(pool, READING, 'device { serial: "S2" revision: 1 }')
    mqtt_pub(stack, f"{uniq}/meters/south/m2", other.SerializeToString() + b"\xf8\x06\x01")
    recs = stack.consume(f"{t}.meter.north", 1)
    assert recs[0]["key"] == b"S\x00N"
    assert json.loads(recs[0]["value"]) == want
    assert recs[0]["value"] == json.dumps(want, separators=(",", ":"),
                                          ensure_ascii=False).encode()
    assert recs[0]["headers"]["content-type"] == \
        f"application/json; messageType={READING}".encode()
    south = stack.consume(f"{t}.meter.south", 1)[0]
    assert south["headers"]["m2k.unknown_fields"] == b"1", south["headers"]
    assert br.stop() == 0
    c = br.counters()
    assert c["unknown_fields"] == 1 and c["dead_lettered"] == 0, c


def test_schema_errors(stack, uniq, tmp_path, desc):
    br = bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/m/{{device}}", "topic": "t", "payload": "acme.meter.v2.Nope"},
    ], schemas=[desc])
    rc, out = tool(br, "check")
    assert rc == 78 and ":" in out and 'unknown message type "acme.meter.v2.Nope"' in out, out
    line = next(i for i, l in enumerate(br.conf.read_text().splitlines(), 1)
                if "acme.meter.v2.Nope" in l)
    assert f"m2k.yaml:{line}:14: route 1 payload" in out, out
    br = bridge(stack, tmp_path, uniq, [{"match": "a", "topic": "t"}],
                schemas=[tmp_path / "none" / "*.desc"])
    rc, out = tool(br, "check")
    assert rc == 78 and "matches no file" in out, out
    proto = tmp_path / "x.proto"
    proto.write_text('syntax = "proto3";\nmessage X {}\n')
    br = bridge(stack, tmp_path, uniq, [{"match": "a", "topic": "t"}], schemas=[proto])
    rc, out = tool(br, "check")
    assert rc == 78 and "not a descriptor set but text (a .proto file?" in out, out


def test_json_payloads(stack, uniq, tmp_path):
    t = f"it.{uniq}"
    br = bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/devices/{{device}}/json", "topic": f"{t}.json.{{payload.meta.site}}",
         "payload": "json", "key": "{payload.meta.id}", "format": "json"},
        {"match": f"{uniq}/raw/{{device}}", "topic": f"{t}.raw", "payload": "json"},
    ]).start()
    mqtt_pub(stack, f"{uniq}/devices/d1/json",
             b'{ "meta": {"site": "north", "id": "dev-1"},\n "v": [1.50, 2, null] }')
    mqtt_pub(stack, f"{uniq}/devices/d1/json", b'{"meta": {"site": "north"')
    mqtt_pub(stack, f"{uniq}/devices/d1/json", b'{"meta": {"site": "north"}}')
    mqtt_pub(stack, f"{uniq}/raw/d2", b'{ "a" : 1 }')
    rec = stack.consume(f"{t}.json.north", 1)[0]
    assert rec["key"] == b"dev-1"
    assert rec["value"] == b'{"meta":{"site":"north","id":"dev-1"},"v":[1.5,2,null]}'
    assert rec["headers"]["content-type"] == b"application/json"
    assert stack.consume(f"{t}.raw", 1)[0]["value"] == b'{ "a" : 1 }'
    dead = stack.consume(f"{t}.dead-letter", 2)
    reasons = sorted(d["headers"]["error.reason"].decode() for d in dead)
    assert reasons[0].startswith("invalid JSON at line 1, column 25: "), reasons
    assert reasons[1] == "payload field meta.id is not set (the Kafka key template needs it)"
    assert br.stop() == 0
    c = br.counters()
    assert c["bad_payload"] == 1 and c["missing_field"] == 1 and c["spooled"] == 4, c


def test_confluent_framing(stack, uniq, tmp_path, desc, venv):
    t = f"it.{uniq}"
    br = bridge(stack, tmp_path, uniq, [
        {"match": f"{uniq}/r/{{device}}", "topic": f"{t}.sr", "payload": READING,
         "format": "confluent", "schema_id": 42},
        {"match": f"{uniq}/c/{{device}}", "topic": f"{t}.sr.channel",
         "payload": "acme.meter.v2.Reading.Channel", "format": "confluent",
         "schema_id": 43},
    ], schemas=[desc]).start()
    pool = pool_of(desc)
    r = message(pool, READING, 'serial: "MTR-9" reading: 1.5 labels { key: 3 value: "c" }')
    ch = message(pool, "acme.meter.v2.Reading.Channel", 'name: "ch" count: 4')
    mqtt_pub(stack, f"{uniq}/r/m1", r.SerializeToString())
    mqtt_pub(stack, f"{uniq}/c/m1", ch.SerializeToString())
    vals = [stack.consume(f"{t}.sr", 1)[0]["value"].hex()]
    out = subprocess.run([venv, os.path.join(HERE, "py", "confluent_decode.py"), str(desc),
                          READING], input=json.dumps(vals), capture_output=True, text=True,
                         timeout=60, check=True)
    got = json.loads(out.stdout)[0]
    assert got["id"] == 42 and got["indexes"] == [0], got
    assert got["message"] == json_format.MessageToDict(r), got
    vals = [stack.consume(f"{t}.sr.channel", 1)[0]["value"].hex()]
    out = subprocess.run([venv, os.path.join(HERE, "py", "confluent_decode.py"), str(desc),
                          "acme.meter.v2.Reading.Channel"], input=json.dumps(vals),
                         capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)[0]
    assert got["id"] == 43 and got["indexes"] == [0, 0], got
    assert got["message"] == {"name": "ch", "count": "4"}, got
    assert br.stop() == 0


def edge(stack, venv, group, node, steps, timeout=60):
    return subprocess.run([venv, os.path.join(HERE, "py", "spb_edge.py"), stack.mqtt_host,
                           str(stack.mqtt_port), group, node], input=json.dumps(steps),
                          capture_output=True, text=True, timeout=timeout)


def spb_records(stack, topic, n):
    recs = stack.consume(topic, n, timeout=60)
    return [(r, json.loads(r["value"])) for r in recs]


def test_sparkplug(stack, uniq, tmp_path, venv):
    """An edge node (pysparkplug) that the bridge meets mid-session: its DATA
    comes out unresolved and it is asked for a rebirth (it reads our NCMD);
    after its BIRTH, DATA with aliases only comes out named and typed, also
    after the bridge restarts (the aliases are kept in the spool); a seq gap
    is counted; DEATH and STATE are forwarded."""
    g, e = f"G{uniq}", "E1"
    t = f"it.{uniq}.sp"
    br = bridge(stack, tmp_path, uniq, [
        {"match": f"spBv1.0/{g}/+/{{edge}}/#", "topic": f"{t}.{{payload.group}}",
         "payload": "sparkplug", "format": "json", "key": "{edge}"},
        {"match": "spBv1.0/STATE/{host}", "topic": f"{t}.state", "payload": "sparkplug",
         "format": "json"},
    ], extra={"sparkplug": {"rebirth": True, "rebirth_interval": "10s"}}).start()
    temp = {"name": None, "alias": 1, "datatype": "DOUBLE", "value": 21.5}
    r = edge(stack, venv, g, e, [
        {"pub": "NDATA", "seq": 5, "metrics": [temp]},
        {"wait_ncmd": 15},
        {"pub": "NBIRTH", "seq": 0, "metrics": [
            {"name": "Temp", "alias": 1, "datatype": "DOUBLE", "value": 20.0},
            {"name": "Count", "alias": 2, "datatype": "INT8", "value": 3},
            {"name": "bdSeq", "datatype": "INT64", "value": 0}]},
        {"pub": "DBIRTH", "device": "D1", "seq": 1, "metrics": [
            {"name": "Pressure", "alias": 3, "datatype": "FLOAT", "value": 1.0}]},
        {"pub": "NDATA", "seq": 2, "metrics": [
            dict(temp, value=22.25), {"name": None, "alias": 2, "datatype": "INT8",
                                      "value": -5}]},
        {"pub": "DDATA", "device": "D1", "seq": 3, "metrics": [
            {"name": None, "alias": 3, "datatype": "FLOAT", "value": 1.5}]},
        {"pub": "NDATA", "seq": 7, "metrics": [dict(temp, value=23.0)]},
    ])
    assert r.returncode == 0, r.stderr
    ncmd = json.loads(r.stdout.splitlines()[0])
    assert ncmd["ncmd"] == f"spBv1.0/{g}/NCMD/{e}", r.stdout
    assert ncmd["metrics"] == [{"name": "Node Control/Rebirth", "datatype": "BOOLEAN",
                                "value": True}], ncmd
    recs = spb_records(stack, f"{t}.{g}", 7)  # our NCMD is forwarded too
    by = [(x["topic"]["type"], x) for _, x in recs]
    types = [k for k, _ in by]
    assert types == ["NDATA", "NCMD", "NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDATA"], types
    first_rec, first = recs[0]
    assert first_rec["headers"]["m2k.sparkplug.unresolved"] == b"1"
    assert first["metrics"][0]["name"] is None and first["metrics"][0]["alias"] == 1
    assert first_rec["key"] == e.encode()
    nd = by[4][1]
    assert [(m["name"], m["datatype"], m["value"]) for m in nd["metrics"]] == \
        [("Temp", "Double", 22.25), ("Count", "Int8", -5)], nd
    assert nd["topic"] == {"namespace": "spBv1.0", "type": "NDATA", "group": g, "edge": e}
    dd = by[5][1]
    assert dd["topic"]["device"] == "D1" and dd["metrics"][0]["name"] == "Pressure" \
        and dd["metrics"][0]["value"] == 1.5, dd
    assert "m2k.sparkplug.unresolved" not in recs[4][0]["headers"]
    assert br.stop() == 0
    c = br.counters()
    assert c["spb_unresolved"] == 1 and c["spb_rebirths"] == 1 and c["spb_seq_gaps"] == 1, c

    # a restart: the aliases come back from the spool, no BIRTH needed
    br.start()
    br.wait_log("alias tables restored from the spool", 10)
    r = edge(stack, venv, g, e, [
        {"pub": "NDATA", "seq": 8, "metrics": [dict(temp, value=24.5)]},
        {"pub": "NDEATH", "metrics": [{"name": "bdSeq", "datatype": "INT64", "value": 0}]},
    ])
    assert r.returncode == 0, r.stderr
    mqtt_pub(stack, "spBv1.0/STATE/host1", b'{"online": true, "timestamp": 1}')
    recs = spb_records(stack, f"{t}.{g}", 9)[7:]
    assert recs[0][1]["metrics"][0]["name"] == "Temp" and \
        recs[0][1]["metrics"][0]["value"] == 24.5, recs[0][1]
    assert recs[1][1]["topic"]["type"] == "NDEATH" and \
        recs[1][1]["metrics"][0]["name"] == "bdSeq", recs[1][1]
    state = spb_records(stack, f"{t}.state", 1)[0][1]
    assert state == {"topic": {"namespace": "spBv1.0", "type": "STATE", "host": "host1"},
                     "state": {"online": True, "timestamp": 1}}, state
    assert br.stop() == 0
    c = br.counters()
    assert c["spb_unresolved"] == 0 and c["spb_rebirths"] == 0, c
