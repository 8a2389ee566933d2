#!/usr/bin/env bash
# make demo: the whole path on one machine. Brings up a local Mosquitto and
# Kafka (test/stack), runs mqtt2kafka with conf/mqtt2kafka.yaml (brokers and
# spool pointed at the local stack), starts a simulated fleet of devices,
# and shows records arriving on the Kafka topics. Ctrl-C (or DEMO_SECONDS)
# ends it and tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${M2K_BUILD:-build}
SECS=${DEMO_SECONDS:-30}
DEMO=$(mktemp -d "${TMPDIR:-/tmp}/mqtt2kafka-demo.XXXXXX")
pids=()

cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    test/stack/stack.sh down >/dev/null 2>&1 || true
    echo "demo: stopped; bridge log and spool kept in $DEMO"
}
trap cleanup EXIT INT TERM

test/stack/deps.sh test
test/stack/stack.sh up
eval "$(test/stack/stack.sh env)"
mqtt_host=${MQTT2KAFKA_TEST_MQTT%:*} mqtt_port=${MQTT2KAFKA_TEST_MQTT##*:}

# The example config, pointed at the local stack and a spool in $DEMO.
sed -e "s|^\(  host:\).*|\1 $mqtt_host|" \
    -e "s|^\(  port:\).*|\1 $mqtt_port|" \
    -e "s|^\(  brokers:\).*|\1 $MQTT2KAFKA_TEST_KAFKA|" \
    -e "s|^\(  path:\).*|\1 $DEMO/spool.db|" \
    -e "s|^\(  stats_interval:\).*|\1 5|" \
    conf/mqtt2kafka.yaml > "$DEMO/mqtt2kafka.yaml"
sed -i "/^log:/a\\  status_file: $DEMO/status" "$DEMO/mqtt2kafka.yaml"

echo "demo: routes in conf/mqtt2kafka.yaml:"
"$B/mqtt2kafka" check -c "$DEMO/mqtt2kafka.yaml" | sed 's/^/  /'

"$B/mqtt2kafka" run -c "$DEMO/mqtt2kafka.yaml" 2> "$DEMO/bridge.log" &
pids+=($!)
sleep 1
echo "demo: 20 simulated devices publish protobuf readings at 100 msg/s for ${SECS}s"
"$B/tools/m2k-pub" -H "$mqtt_host" -p "$mqtt_port" -d 20 -r 100 -t "$SECS" \
    -q 1 -T 'sensors/eu/temp/{device}' > "$DEMO/pub.json" 2>/dev/null &
pids+=($!)

test/stack/stack.sh kafka topic iot.sensor.eu.temp 3 >/dev/null
echo "demo: records arriving on Kafka topic iot.sensor.eu.temp (Ctrl-C to stop):"
timeout "$((SECS + 5))" kcat -C -q -b "$MQTT2KAFKA_TEST_KAFKA" \
    -t iot.sensor.eu.temp -o end \
    -f '  partition %p offset %o  key %k  %S bytes  headers: %h\n' || true

echo
echo "demo: what an operator sees (mqtt2kafka status):"
"$B/mqtt2kafka" status -c "$DEMO/mqtt2kafka.yaml" | sed 's/^/  /' || true
