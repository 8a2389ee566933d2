#!/usr/bin/env bash
# The integration-test stack: a real Mosquitto broker (Debian's package) and
# a real Apache Kafka 3.9.1 broker (KRaft, single node, jars from Maven
# Central), both on 127.0.0.1 only, with all state in one temporary folder.
#
#   stack.sh up | down | status | env
#   stack.sh kafka|mqtt start|stop|kill|pause|resume|restart|log
#   stack.sh kafka topic NAME [PARTITIONS]
#
# stop = SIGTERM and wait; kill = SIGKILL; pause/resume = SIGSTOP/SIGCONT (an
# uplink that black-holes packets instead of refusing them); restart = stop +
# start, keeping data. `up` is idempotent (pid files); `down` stops both,
# deletes their data, certificates and passwords and keeps the logs, even
# after a test run crashed.
#
# Besides the plain, anonymous listeners both brokers offer secured ones
# (TLS, passwords, client certificates, and deliberately bad certificates),
# with certificates and passwords made at start; see secure.sh. `env` prints
# every endpoint and file as MQTT2KAFKA_TEST_*=value lines.
#
# Environment: M2K_MQTT_PORT (18830), M2K_KAFKA_PORT (19092),
# M2K_KAFKA_CONTROLLER_PORT (19093), the secured listeners' M2K_MQTT_*_PORT
# and M2K_KAFKA_*_PORT (see secure.sh), M2K_STACK_DIR (state folder),
# M2K_KAFKA_LIBS (Kafka jars cache), M2K_KAFKA_JVM_OPTS, M2K_READY_TIMEOUT (s).
# With MQTT2KAFKA_TEST_MQTT and MQTT2KAFKA_TEST_KAFKA both set (host:port),
# nothing is started: those brokers are used and the controls refuse.
#
# Every failure ends with a message naming what failed and its log; every
# wait is bounded: nothing here hangs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=3.9.1
MQTT_PORT=${M2K_MQTT_PORT:-18830}
KAFKA_PORT=${M2K_KAFKA_PORT:-19092}
CTRL_PORT=${M2K_KAFKA_CONTROLLER_PORT:-19093}
DIR=${M2K_STACK_DIR:-${TMPDIR:-/tmp}/mqtt2kafka-stack-$(id -u)}
LIBS=${M2K_KAFKA_LIBS:-$HOME/.cache/mqtt2kafka/kafka-$KAFKA_VERSION/libs}
READY_TIMEOUT=${M2K_READY_TIMEOUT:-90}
STOP_TIMEOUT=${M2K_STOP_TIMEOUT:-30}
# Start-up on 2 cores: the serial collector and a small heap cut the JVM's
# own work; C2 stays on so the broker is not the bottleneck of a benchmark.
KAFKA_JVM_OPTS=${M2K_KAFKA_JVM_OPTS:--Xmx512m -Xms256m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Xss512k}

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=secure.sh
. "$here/secure.sh"

external() { [ -n "${MQTT2KAFKA_TEST_MQTT:-}" ] && [ -n "${MQTT2KAFKA_TEST_KAFKA:-}" ]; }

# --- processes ------------------------------------------------------------
# pidof NAME: the pid in NAME.pid when that process is still ours, else "".
pid_of() {
    local f="$DIR/$1.pid" pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"; then
        echo "$pid"
    fi
}
kafka_pid() { pid_of kafka "kafka.Kafka $DIR/kafka/server.properties"; }
mqtt_pid() { pid_of mosquitto "mosquitto -c $DIR/mosquitto/mosquitto.conf"; }

# state PID: running | paused | (empty when gone)
proc_state() {
    local s
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
    s=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat")
    case $s in T | t) echo paused ;; Z) ;; *) echo running ;; esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port someone else holds: fail at once and name the holder.
check_port() {
    local port=$1 what=$2 holder=""
    port_open "$port" || return 0
    if command -v ss >/dev/null; then
        holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1)
    fi
    die "$what port 127.0.0.1:$port is already in use${holder:+ by $holder}; free it or set the M2K_*_PORT variables"
}

# launch NAME LOG CMD...: start CMD detached from our terminal and pipes,
# writing its own pid before exec so the pid file is exact.
launch() {
    local name=$1 log=$2
    shift 2
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/$name.pid" "$@" </dev/null >>"$log" 2>&1 9>&- &
    local i
    for i in $(seq 50); do [ -s "$DIR/$name.pid" ] && return 0; sleep 0.02; done
    die "$name did not start (see $log)"
}

# stop_pid PID NAME: SIGTERM (after SIGCONT, a paused process cannot exit),
# then a bounded wait, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 i
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq $((STOP_TIMEOUT * 10))); do
        [ -n "$(proc_state "$pid")" ] || return 0
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid"
}

wait_gone() {
    local i
    for i in $(seq 100); do [ -n "$(proc_state "$1")" ] || return 0; sleep 0.05; done
}

# A JVM's main thread turns zombie while its other threads still hold the
# sockets: a start right after must wait for the ports, not the pid.
wait_ports_free() {
    local i p busy
    for i in $(seq 100); do
        busy=""
        for p in "$@"; do port_open "$p" && busy=$p; done
        [ -z "$busy" ] && return 0
        sleep 0.05
    done
}

fail_with_log() {
    local msg=$1 log=$2
    {
        printf 'stack: error: %s\n' "$msg"
        printf 'stack: last lines of %s:\n' "$log"
        tail -n 25 "$log" 2>/dev/null | sed 's/^/    /'
    } >&2
    exit 1
}

# --- tools ----------------------------------------------------------------
need_tools() {
    local missing=() c
    for c in "$@"; do command -v "$c" >/dev/null || missing+=("$c"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && [ -x "$here/deps.sh" ]; then
        say "installing what is missing for: ${missing[*]}"
        "$here/deps.sh" test || die "deps.sh could not install: ${missing[*]}"
        return 0
    fi
    local pkgs=() p
    for c in "${missing[@]}"; do
        case $c in
        mosquitto) p=mosquitto ;; mosquitto_pub | mosquitto_sub) p=mosquitto-clients ;;
        mosquitto_passwd) p=mosquitto ;;
        java) p=default-jre-headless ;; mvn) p=maven ;; *) p=$c ;;
        esac
        pkgs+=("$p")
    done
    die "missing ${missing[*]}; fix: sudo apt-get install ${pkgs[*]} (or sudo $here/deps.sh test)"
}

mosquitto_bin() {
    command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}

# The broker's jars: resolved once from Maven Central into a cache.
kafka_fetch() {
    compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null && return 0
    need_tools mvn
    mkdir -p "$LIBS" "$DIR/logs"
    local log="$DIR/logs/maven.log"
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (once)"
    if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS" >"$log" 2>&1; then
        rm -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar"
        fail_with_log "downloading Kafka $KAFKA_VERSION with Maven failed" "$log"
    fi
    compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null ||
        fail_with_log "Maven ran but $LIBS has no kafka_2.13-$KAFKA_VERSION.jar" "$log"
}

# --- mosquitto ------------------------------------------------------------
mqtt_conf() {
    local d="$DIR/mosquitto"
    mkdir -p "$d"
    mqtt_passwd
    cat >"$d/mosquitto.conf" <<EOF
# Written by stack.sh; regenerated on every start.
# Each listener has its own login rules.
per_listener_settings true
$(mqtt_secure_conf)

# Plain and anonymous. Listeners open in this order: once this one
# accepts, all do.
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
# Mosquitto refuses to run as root unless told which user to be.
user $(id -un)
# Sessions and queued QoS 1/2 messages survive a restart (saved on SIGTERM
# and every few seconds, so a SIGKILL loses at most that much).
persistence true
persistence_location $d/
autosave_interval 5
# The default (1000 per client) silently drops what is queued for an absent
# or slow subscriber, which a test would misread as loss by the bridge.
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 100
# The bridge reads the \$SYS counters.
sys_interval 1
log_dest stdout
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages true
EOF
}

mqtt_start() {
    local pid log="$DIR/logs/mosquitto.log" bin i p
    pid=$(mqtt_pid)
    if [ -n "$pid" ]; then
        [ "$(proc_state "$pid")" = paused ] && say "mosquitto (pid $pid) is paused"
        return 0
    fi
    need_tools mosquitto_pub mosquitto_sub mosquitto_passwd
    bin=$(mosquitto_bin)
    [ -n "$bin" ] || need_tools mosquitto
    bin=$(mosquitto_bin)
    check_distinct_ports
    check_port "$MQTT_PORT" "MQTT"
    for p in $(mqtt_secure_ports); do check_port "$p" "MQTT (TLS)"; done
    secure_ensure
    mqtt_conf
    mkdir -p "$DIR/logs"
    echo "--- start $(date -Is)" >>"$log"
    rm -f "$DIR/mosquitto.pid"
    # Line-buffered, so its log shows a refused login as it happens.
    launch mosquitto "$log" stdbuf -oL "$bin" -c "$DIR/mosquitto/mosquitto.conf"
    pid=$(cat "$DIR/mosquitto.pid")
    for i in $(seq 100); do
        port_open "$MQTT_PORT" && {
            say "mosquitto $(mqtt_version) up on 127.0.0.1:$MQTT_PORT, TLS on $(mqtt_secure_ports | tr ' ' ,) (pid $pid, log $log)"
            return 0
        }
        [ -n "$(proc_state "$pid")" ] || fail_with_log "mosquitto exited during start-up" "$log"
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    fail_with_log "mosquitto did not open 127.0.0.1:$MQTT_PORT within 10s" "$log"
}

mqtt_version() { "$(mosquitto_bin)" -h 2>/dev/null | sed -n 's/^mosquitto version \(.*\)/\1/p' | head -1; }

# --- kafka ----------------------------------------------------------------
kafka_conf() {
    local d="$DIR/kafka"
    mkdir -p "$d/data"
    (umask 077 && rm -f "$d/server.properties" && cat >"$d/server.properties") <<EOF
# Written by stack.sh; regenerated on every start. Holds passwords: 0600.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
listeners=$(kafka_listeners),CONTROLLER://127.0.0.1:$CTRL_PORT
advertised.listeners=$(kafka_listeners)
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$(kafka_protocol_map)
log.dirs=$d/data
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.threads=1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.segment.bytes=67108864
# After a SIGKILL the old registration must expire before the broker can
# register again: 9 s by default, which every restart-after-kill would pay.
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
$(kafka_secure_conf)
EOF
    cat >"$d/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.storage.internals.log.LogConfig=WARN
EOF
}

# Sets JAVA to the JVM command line (the classpath wildcard is Java's own).
java_cmd() {
    local opts
    read -r -a opts <<<"$KAFKA_JVM_OPTS"
    JAVA=(java "${opts[@]}" -Djava.awt.headless=true
        "-Dlog4j.configuration=file:$DIR/kafka/log4j.properties"
        "-Dkafka.logs.dir=$DIR/logs" -cp "$LIBS/*")
}

# A cluster id: 16 random bytes, base64url without padding. One that starts
# with '-' (1 draw in 64) is read as an option by the storage tool
# ("argument --cluster-id/-t: expected one argument"), so such a draw (and
# one starting with '_', for symmetry) is made again.
cluster_id() {
    local id=-
    while [ "${id#[-_]}" != "$id" ]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    done
    echo "$id"
}

# Formats once per set of credentials: the SCRAM users are created here.
# Data formatted for other credentials (or by an older stack.sh, before
# there were any) is wiped first, as `down` would have.
kafka_format() {
    local log="$DIR/logs/kafka.log" id stamp="$DIR/kafka/credentials.stamp" scram
    if [ -s "$DIR/kafka/data/meta.properties" ]; then
        cmp -s "$stamp" "$CREDS/stamp" && return 0
        say "kafka data in $DIR/kafka/data predates the current credentials; formatting it again"
        rm -rf "$DIR/kafka/data"
        mkdir -p "$DIR/kafka/data"
    fi
    id=$(cluster_id)
    mapfile -t scram < <(kafka_scram_args)
    echo "--- format $(date -Is) cluster $id" >>"$log"
    java_cmd
    if ! timeout 60 "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" \
        -c "$DIR/kafka/server.properties" "${scram[@]}" >>"$log" 2>&1; then
        fail_with_log "formatting Kafka storage in $DIR/kafka/data failed" "$log"
    fi
    cp "$CREDS/stamp" "$stamp"
}

kafka_start() {
    local pid log="$DIR/logs/kafka.log" t0 from i p
    pid=$(kafka_pid)
    if [ -n "$pid" ]; then
        [ "$(proc_state "$pid")" = paused ] && say "kafka (pid $pid) is paused"
        return 0
    fi
    need_tools java
    kafka_fetch
    check_distinct_ports
    check_port "$KAFKA_PORT" "Kafka"
    check_port "$CTRL_PORT" "Kafka controller"
    for p in $(kafka_secure_ports); do check_port "$p" "Kafka (secured)"; done
    mkdir -p "$DIR/logs"
    secure_ensure
    kafka_conf
    kafka_format
    echo "--- start $(date -Is)" >>"$log"
    from=$(($(stat -c %s "$log") + 1))
    t0=$(date +%s%N)
    rm -f "$DIR/kafka.pid"
    java_cmd
    launch kafka "$log" "${JAVA[@]}" kafka.Kafka "$DIR/kafka/server.properties"
    pid=$(cat "$DIR/kafka.pid")
    for i in $(seq $((READY_TIMEOUT * 10))); do
        if tail -c +"$from" "$log" | grep -q 'Kafka Server started'; then
            say "kafka $KAFKA_VERSION up on 127.0.0.1:$KAFKA_PORT, secured on $(kafka_secure_ports | tr ' ' ,) in $((($(date +%s%N) - t0) / 1000000)) ms (pid $pid, log $log)"
            return 0
        fi
        [ -n "$(proc_state "$pid")" ] || fail_with_log "kafka exited during start-up" "$log"
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    fail_with_log "kafka did not log 'Kafka Server started' within ${READY_TIMEOUT}s" "$log"
}

kafka_topic() {
    local name=${1:?usage: stack.sh kafka topic NAME [PARTITIONS]} parts=${2:-1}
    python3 "$here/kafka_topic.py" "$(kafka_addr)" "$name" "$parts"
}

kafka_addr() { echo "${MQTT2KAFKA_TEST_KAFKA:-127.0.0.1:$KAFKA_PORT}"; }
mqtt_addr() { echo "${MQTT2KAFKA_TEST_MQTT:-127.0.0.1:$MQTT_PORT}"; }

# --- per-broker controls ----------------------------------------------------
control() {
    local which=$1 action=${2:-}
    local name pid log
    local ports
    case $which in
    kafka) name=kafka log="$DIR/logs/kafka.log" pid=$(kafka_pid) ports="$KAFKA_PORT $CTRL_PORT $(kafka_secure_ports)" ;;
    mqtt) name=mosquitto log="$DIR/logs/mosquitto.log" pid=$(mqtt_pid) ports="$MQTT_PORT $(mqtt_secure_ports)" ;;
    esac
    case $action in
    log) tail -n "${M2K_LOG_LINES:-60}" "$log" 2>/dev/null || die "no log yet at $log"; return 0 ;;
    topic) [ "$which" = kafka ] || die "topics are a Kafka thing"; shift 2; kafka_topic "$@"; return ;;
    esac
    external && die "brokers are external (MQTT2KAFKA_TEST_*); '$which $action' is not available"
    case $action in
    start) lock; "${which}_start" ;;
    stop) [ -n "$pid" ] && { stop_pid "$pid" "$name"; wait_ports_free $ports; }
        rm -f "$DIR/$name.pid"; say "$name stopped" ;;
    kill) [ -n "$pid" ] && { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid"; wait_ports_free $ports; }
        rm -f "$DIR/$name.pid"; say "$name killed" ;;
    pause) [ -n "$pid" ] || die "$name is not running"; kill -STOP "$pid"; say "$name paused (pid $pid)" ;;
    resume) [ -n "$pid" ] || die "$name is not running"; kill -CONT "$pid"; say "$name resumed (pid $pid)" ;;
    restart) [ -n "$pid" ] && { stop_pid "$pid" "$name"; wait_ports_free $ports; }
        rm -f "$DIR/$name.pid"; "${which}_start" ;;
    *)
        local extra=""
        [ "$which" = kafka ] && extra="|topic NAME [PARTITIONS]"
        die "usage: stack.sh $which start|stop|kill|pause|resume|restart|log$extra"
        ;;
    esac
}

# --- whole stack ------------------------------------------------------------
up() {
    if external; then
        say "using external brokers: MQTT $(mqtt_addr), Kafka $(kafka_addr) (nothing started)"
        return 0
    fi
    mkdir -p "$DIR/logs"
    mqtt_start
    kafka_start
    check_secured
}

# Brokers that an older stack.sh started (still running) lack the secured
# listeners; a restart of that broker adds them.
check_secured() {
    grep -q "^listener $MQTT_TLS_PORT " "$DIR/mosquitto/mosquitto.conf" 2>/dev/null ||
        say "warning: the running mosquitto has no TLS listeners (an older stack.sh started it); 'stack.sh mqtt restart' adds them"
    grep -q "SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT" "$DIR/kafka/server.properties" 2>/dev/null ||
        say "warning: the running kafka has no secured listeners (an older stack.sh started it); 'stack.sh kafka restart' adds them"
}

down() {
    external && { say "external brokers: nothing to stop"; return 0; }
    local pid
    pid=$(mqtt_pid)
    [ -n "$pid" ] && stop_pid "$pid" mosquitto
    pid=$(kafka_pid)
    [ -n "$pid" ] && stop_pid "$pid" kafka
    # shellcheck disable=SC2046 # the port lists are split on purpose
    wait_ports_free "$MQTT_PORT" "$KAFKA_PORT" "$CTRL_PORT" $(mqtt_secure_ports) $(kafka_secure_ports)
    rm -f "$DIR/mosquitto.pid" "$DIR/kafka.pid"
    # Data, certificates and passwords go; logs stay for whoever needs to
    # read why a test failed.
    rm -rf "$DIR/kafka/data" "$DIR/kafka/credentials.stamp" "$DIR/mosquitto/mosquitto.db" \
        "$DIR/mosquitto/passwd"
    secure_remove
    say "stack down (logs kept in $DIR/logs)"
}

status() {
    if external; then
        echo "mqtt  external $(mqtt_addr)"
        echo "kafka external $(kafka_addr)"
        return 0
    fi
    local p s rc=0
    p=$(mqtt_pid); s=$(proc_state "$p")
    echo "mqtt  ${s:-stopped} 127.0.0.1:$MQTT_PORT${p:+ pid $p} log $DIR/logs/mosquitto.log"
    [ "$s" = running ] || rc=1
    p=$(kafka_pid); s=$(proc_state "$p")
    echo "kafka ${s:-stopped} 127.0.0.1:$KAFKA_PORT${p:+ pid $p} log $DIR/logs/kafka.log"
    [ "$s" = running ] || rc=1
    return $rc
}

# With external brokers, only what the caller gave is passed on.
env_lines() {
    echo "MQTT2KAFKA_TEST_MQTT=$(mqtt_addr)"
    echo "MQTT2KAFKA_TEST_KAFKA=$(kafka_addr)"
    if external; then
        env | grep -E '^MQTT2KAFKA_TEST_[A-Z0-9_]+=' | grep -vE '^MQTT2KAFKA_TEST_(MQTT|KAFKA)=' | sort || true
    else
        secure_env_lines
    fi
}

# Two test sessions sharing the default ports take turns to start and stop.
lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    command -v flock >/dev/null || return 0
    flock -w 180 9 || die "another stack.sh held $DIR/.lock for 180s"
}

case ${1:-} in
up) lock; up ;;
down) lock; down ;;
status) status ;;
env) env_lines ;;
cluster-id) cluster_id ;; # for the test that every id is safe
kafka | mqtt) control "$@" ;;
*)
    sed -n '2,/^set -e/s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
