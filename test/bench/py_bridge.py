#!/usr/bin/env python3
"""The baseline a user would write: paho-mqtt in, confluent-kafka out.

Usage: py_bridge.py MQTT_HOST:PORT KAFKA_BROKERS FILTER TOPIC_PREFIX

Subscribes to FILTER at QoS 1 and produces every message to
TOPIC_PREFIX + <second to last topic level>, keyed by the last level
(the device). No spool: paho acknowledges a message as soon as the callback
returns, while the record may still sit in librdkafka's queue. That is the
point of the comparison, not an oversight. Stops on SIGTERM after flushing.
"""
import signal
import sys

import paho.mqtt.client as mqtt
from confluent_kafka import Producer


def main(argv):
    mqtt_addr, brokers, filt, prefix = argv[1:5]
    host, _, port = mqtt_addr.rpartition(":")
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})

    def on_connect(client, userdata, flags, rc):
        client.subscribe(filt, qos=1)

    def on_message(client, userdata, msg):
        levels = msg.topic.split("/")
        while True:
            try:
                producer.produce(prefix + levels[-2], msg.payload,
                                 key=levels[-1])
                break
            except BufferError:  # librdkafka's queue is full: wait a bit
                producer.poll(0.05)
        producer.poll(0)

    client = mqtt.Client(client_id="", clean_session=True)
    client.max_inflight_messages_set(100)
    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect(host, int(port), keepalive=30)
    client.loop_forever()
    producer.flush(10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
