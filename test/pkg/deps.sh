#!/usr/bin/env bash
# Installs what building and checking the Debian package needs, from Debian
# 12's own packages, when it is missing. As root it runs apt-get; otherwise
# it prints the exact line to run and fails.
#
#   deps.sh          debhelper, lintian, debootstrap, systemd-container (the
#                    host package; systemd-nspawn boots the test root)
#   deps.sh ARCH...  also the cross toolchain, the :ARCH build libraries and
#                    qemu-user-static for each foreign ARCH (arm64, armhf)
set -euo pipefail

host=$(dpkg --print-architecture)
# libprotobuf-dev (descriptor.proto) and protobuf-compiler are build
# architecture tools and data: never needed as :ARCH.
want=(make gcc pkg-config dpkg-dev debhelper fakeroot lintian debootstrap
      systemd-container protobuf-c-compiler libmosquitto-dev librdkafka-dev
      libprotobuf-c-dev libprotobuf-dev protobuf-compiler libsqlite3-dev
      libyaml-dev libsystemd-dev libmicrohttpd-dev libjansson-dev libcmocka-dev)
libs=(libmosquitto-dev librdkafka-dev libprotobuf-c-dev libsqlite3-dev
      libyaml-dev libsystemd-dev libmicrohttpd-dev libjansson-dev libcmocka-dev)
foreign=()
for a in "$@"; do
    [ "$a" = "$host" ] && continue
    case $a in
    arm64 | armhf) ;;
    *) echo "deps: unknown architecture '$a' (arm64, armhf, $host)" >&2; exit 64 ;;
    esac
    foreign+=("$a")
    want+=("crossbuild-essential-$a" qemu-user-static)
    for l in "${libs[@]}"; do want+=("$l:$a"); done
done

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "mqtt2kafka: missing packages: ${missing[*]}" >&2
    [ ${#foreign[@]} -gt 0 ] && echo "  fix: sudo dpkg --add-architecture ${foreign[*]}" >&2
    echo "  fix: sudo apt-get update && sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
added=()
for a in "${foreign[@]}"; do
    dpkg --print-foreign-architectures | grep -qx "$a" && continue
    dpkg --add-architecture "$a"
    added+=("$a")
done
# An architecture we added but could not install for is taken out again:
# left in, a mirror that lacks its index would fail every apt-get update.
undo() {
    for a in "${added[@]}"; do
        dpkg-query -W -f='${Package}\n' "*:$a" 2>/dev/null | grep -q . || dpkg --remove-architecture "$a"
    done
}
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A mirror caught mid-sync fails an index now and then: try again.
for try in 1 2 3; do
    apt-get update -qq && break
    # An index that stays stale is left out; apt-get install says if a
    # package we need was in it.
    [ $try -eq 3 ] && { echo "deps: apt-get update failed 3 times; going on with the lists it got" >&2; break; }
    sleep $((try * 10))
done
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    undo
    echo "deps: could not install ${missing[*]}" >&2
    exit 1
fi
