"""A Sparkplug B edge node made with pysparkplug (an independent
implementation from PyPI), driven by a script: run in the test venv
(test/stack/pyvenv.sh) as

    python spb_edge.py HOST PORT GROUP EDGE < steps.json

steps.json is a list; each step one of
    {"pub": "NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH", "device": null,
     "seq": 0, "metrics": [{"name": "Temp" or null, "alias": 1,
     "datatype": "DOUBLE", "value": 21.5}]}
    {"wait_ncmd": SECONDS}   wait for an NCMD to this edge node
    {"sleep": SECONDS}
Every NCMD received is printed as one JSON line: its metrics' name,
datatype and value, as pysparkplug decodes them. Publishes are QoS 1.
"""
import json
import sys
import threading
import time

import pysparkplug as spb


def metric(m, ts):
    return spb.Metric(timestamp=ts, name=m.get("name"),
                      datatype=spb.DataType[m["datatype"]],
                      value=m.get("value"), alias=m.get("alias"))


def main():
    host, port, group, edge = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    steps = json.load(sys.stdin)
    got = threading.Event()
    client = spb.Client(client_id=f"edge-{group}-{edge}")

    def on_ncmd(_client, message):
        out = [{"name": m.name, "datatype": m.datatype.name, "value": m.value}
               for m in message.payload.metrics]
        print(json.dumps({"ncmd": str(message.topic), "metrics": out}), flush=True)
        got.set()

    client.subscribe(spb.Topic(message_type=spb.MessageType.NCMD, group_id=group,
                               edge_node_id=edge), spb.QoS.AT_LEAST_ONCE, on_ncmd)
    up = threading.Event()
    client.connect(host, port=port, blocking=False, callback=lambda c: up.set())
    if not up.wait(10):
        sys.exit("edge: no connection to the broker")
    time.sleep(0.5)  # the NCMD subscription is in place
    for st in steps:
        if "sleep" in st:
            time.sleep(st["sleep"])
            continue
        if "wait_ncmd" in st:
            if not got.wait(st["wait_ncmd"]):
                print(json.dumps({"ncmd": None}), flush=True)
            continue
        ts = spb.get_current_timestamp()
        kind = st["pub"]
        ms = tuple(metric(m, ts) for m in st.get("metrics", []))
        mt = spb.MessageType[kind]
        topic = spb.Topic(message_type=mt, group_id=group, edge_node_id=edge,
                          device_id=st.get("device"))
        if kind == "NDEATH":
            payload = spb.NDeath(timestamp=ts, bd_seq_metric=ms[0])
        elif kind == "DDEATH":
            payload = spb.DDeath(timestamp=ts, seq=st["seq"])
        else:
            cls = {"NBIRTH": spb.NBirth, "DBIRTH": spb.DBirth,
                   "NDATA": spb.NData, "DDATA": spb.DData}[kind]
            payload = cls(timestamp=ts, seq=st["seq"], metrics=ms)
        client.publish(spb.Message(topic=topic, payload=payload,
                                   qos=spb.QoS.AT_LEAST_ONCE, retain=False),
                       include_dtypes=True)
        time.sleep(0.2)
    time.sleep(1)
    client.disconnect()


if __name__ == "__main__":
    main()
