"""Reads records in Confluent's Schema Registry wire format with
confluent-kafka's own ProtobufDeserializer (an independent decoder, from
PyPI), run in the test venv (test/stack/pyvenv.sh):

    python confluent_decode.py SET.desc TYPE < values.json

values.json: a list of hex strings (record values). Prints a JSON list:
per value its schema id, message indexes (as confluent-kafka parses the
framing) and the decoded message as protobuf's JSON mapping.
"""
import io
import json
import sys

from confluent_kafka.schema_registry import prefix_schema_id_deserializer
from confluent_kafka.schema_registry.common.serde import SchemaId
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass


def main():
    with open(sys.argv[1], "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    cls = GetMessageClass(pool.FindMessageTypeByName(sys.argv[2]))
    de = ProtobufDeserializer(cls, {})
    out = []
    for h in json.load(sys.stdin):
        data = bytes.fromhex(h)
        sid = SchemaId("PROTOBUF")
        prefix_schema_id_deserializer(data, None, sid)
        msg = de(data, None)
        out.append({"id": sid.id, "indexes": sid.message_indexes,
                    "message": json_format.MessageToDict(msg)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
