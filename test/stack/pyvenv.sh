#!/usr/bin/env bash
# Makes (once) the Python virtual environment some integration tests run
# their independent implementations in, from PyPI with pip, and prints its
# python. Debian's python3-venv makes it; nothing outside it is touched.
#   pysparkplug     an Eclipse Sparkplug B edge node (test_payloads.py)
#   confluent-kafka Confluent's ProtobufDeserializer (Schema Registry framing)
# M2K_VENV overrides the place (default ~/.cache/mqtt2kafka/venv).
set -euo pipefail
venv=${M2K_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mqtt2kafka/venv}
want=(pysparkplug==0.6.1 "confluent-kafka[protobuf,schemaregistry]==2.16.1"
      protobuf==7.36.2 paho-mqtt==1.6.1)
stamp="$venv/.m2k-$(printf '%s\n' "${want[@]}" | md5sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    /usr/bin/python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
    touch "$stamp"
fi
echo "$venv/bin/python"
