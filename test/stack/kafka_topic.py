#!/usr/bin/env python3
"""Create a Kafka topic with N partitions, without a JVM (stdlib only).

Usage: kafka_topic.py HOST:PORT TOPIC [PARTITIONS] [REPLICATION] [--config K=V]...

Speaks two requests of the Kafka wire protocol directly: CreateTopics v2
(non-flexible encoding; brokers 0.11 to 3.9 accept it) and Metadata v4
(which can say "do not auto-create"), then waits until every partition of
the topic has a leader, so a producer started right after finds it ready.
A topic that already exists with the same partition count is not an error
(its configs are then left as they are). --config sets a topic config, e.g.
message.timestamp.type=LogAppendTime.
Exit codes: 0 ready, 1 refused by the broker or timed out, 2 broker
unreachable.
"""
import socket
import struct
import sys
import time

CREATE_TOPICS, METADATA = 19, 3
TOPIC_ALREADY_EXISTS = 36


class Wire:
    def __init__(self, addr, timeout=10.0):
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
        self.corr = 0

    def call(self, api, version, body):
        self.corr += 1
        client = b"mqtt2kafka-stack"
        head = struct.pack(">hhih", api, version, self.corr, len(client)) + client
        msg = head + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        corr = struct.unpack(">i", data[:4])[0]
        if corr != self.corr:
            raise IOError(f"correlation id {corr}, expected {self.corr}")
        return Reader(data[4:])

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise IOError("broker closed the connection")
            buf += chunk
        return buf


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.i)
        self.i += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.i:self.i + n].decode("utf-8", "replace")
        self.i += n
        return s


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def create(wire, topic, partitions, replication, configs=()):
    body = struct.pack(">i", 1) + string(topic)
    body += struct.pack(">ihi", partitions, replication, 0)  # no assignments
    body += struct.pack(">i", len(configs))
    for name, value in configs:
        body += string(name) + string(value)
    body += struct.pack(">ib", 15000, 0)  # timeout_ms, validate_only
    r = wire.call(CREATE_TOPICS, 2, body)
    r.take(">i")  # throttle
    for _ in range(r.take(">i")):
        name, err, msg = r.string(), r.take(">h"), r.string()
        if name == topic:
            return err, msg
    return -1, "topic missing from the response"


def partitions_ready(wire, topic):
    """(partition count, all have a leader) or (0, False) when unknown."""
    body = struct.pack(">i", 1) + string(topic) + struct.pack(">b", 0)
    r = wire.call(METADATA, 4, body)
    r.take(">i")  # throttle
    for _ in range(r.take(">i")):  # brokers
        r.take(">i"); r.string(); r.take(">i"); r.string()
    r.string()  # cluster id
    r.take(">i")  # controller
    for _ in range(r.take(">i")):
        err, name, _internal = r.take(">h"), r.string(), r.take(">b")
        count, led = 0, True
        for _ in range(r.take(">i")):
            _perr, _idx, leader = r.take(">h"), r.take(">i"), r.take(">i")
            for _ in range(2):  # replicas, isr
                for _ in range(r.take(">i")):
                    r.take(">i")
            count += 1
            led = led and leader >= 0
        if name == topic and err == 0:
            return count, led
    return 0, False


def main(argv):
    configs = []
    while "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or "=" not in argv[i + 1]:
            print("kafka_topic: --config needs NAME=VALUE", file=sys.stderr)
            return 1
        configs.append(tuple(argv[i + 1].split("=", 1)))
        del argv[i:i + 2]
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 1
    addr, topic = argv[1], argv[2]
    partitions = int(argv[3]) if len(argv) > 3 else 1
    replication = int(argv[4]) if len(argv) > 4 else 1
    try:
        wire = Wire(addr)
        err, msg = create(wire, topic, partitions, replication, configs)
        if err not in (0, TOPIC_ALREADY_EXISTS):
            print(f"kafka_topic: creating {topic!r} on {addr} failed: error {err}: {msg}", file=sys.stderr)
            return 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            count, led = partitions_ready(wire, topic)
            if count and led:
                if err == TOPIC_ALREADY_EXISTS and count != partitions:
                    print(f"kafka_topic: {topic!r} already exists with {count} partitions, not {partitions}",
                          file=sys.stderr)
                    return 1
                print(f"topic {topic} ready: {count} partition(s)")
                return 0
            time.sleep(0.1)
        print(f"kafka_topic: {topic!r} on {addr} has no leader after 15s", file=sys.stderr)
        return 1
    except (OSError, struct.error) as e:
        print(f"kafka_topic: Kafka at {addr} unreachable or broken reply: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
