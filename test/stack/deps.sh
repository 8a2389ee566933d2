#!/usr/bin/env bash
# Installs what building and testing mqtt2kafka needs, from Debian 12's own
# packages, when it is missing. As root it runs apt-get; otherwise it prints
# the exact line to run and fails. Usage: deps.sh [build|test|bench]
# (bench = test + what `make bench` uses; not needed by `make test`)
set -euo pipefail

# libprotobuf-dev: descriptor.proto and the well-known types' .proto files
# (run-time schemas); protobuf-compiler: protoc, for the schema tests' sets
build_pkgs=(make gcc pkg-config libmosquitto-dev librdkafka-dev libprotobuf-c-dev libjansson-dev
            protobuf-c-compiler libprotobuf-dev protobuf-compiler libsqlite3-dev
            libyaml-dev libsystemd-dev libmicrohttpd-dev libssl-dev
            libcmocka-dev
            clang libclang-rt-14-dev)  # clang + its runtimes: make fuzz (libFuzzer)
test_pkgs=(mosquitto mosquitto-clients kcat default-jre-headless maven
           python3 python3-pytest python3-protobuf python3-venv sqlite3 procps iproute2
           prometheus  # promtool check metrics; a real scraper
           openssl)    # the test stack's certificates
bench_pkgs=(gnuplot-nox python3-paho-mqtt python3-confluent-kafka binutils)

want=("${build_pkgs[@]}")
case ${1:-test} in
test) want+=("${test_pkgs[@]}") ;;
bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "mqtt2kafka: missing packages: ${missing[*]}" >&2
    echo "  fix: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# An old or empty package list makes apt-get fail to find anything.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
