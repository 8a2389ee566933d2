# shellcheck shell=bash
# The test stack's secured endpoints, sourced by stack.sh: certificates made
# with openssl, random passwords, and the listener settings that use them.
#
# Everything lives in the state folder and is made again after each `down`:
#   tls/ca.crt             the test CA every server and client certificate
#                          below chains to (except other-*)
#   tls/server.crt|key     CN localhost, SAN IP:127.0.0.1 and DNS:localhost
#   tls/client.crt|key     CN m2k-client, a client certificate (mTLS)
#   tls/other-ca.crt       a second CA no server trusts nor is signed by
#   tls/other-client.*     a client certificate from that untrusted CA
#   tls/wrong-host.*       a server certificate for wrong.example only
#   tls/expired-server.*   SAN 127.0.0.1/localhost, expired in 2020
#   tls/expired-client.*   CN m2k-client-expired, expired in 2020
#   tls/*.keystore.pem     Kafka's PEM keystores: encrypted key + chain
#   credentials/*.password one password per user, one trailing newline
# Keys and passwords are mode 0600. Passwords are 32 hex digits: safe in
# the storage tool's SCRAM syntax, a JAAS string and a password_file line.
#
# Listeners (all on 127.0.0.1; ports default to the plain port plus an
# offset, each overridable):
#   mosquitto  +1 TLS, password_file       +2 TLS, client certificate required
#              +3 TLS, wrong-host cert     +4 TLS, expired server cert
#   kafka      +2 SSL (client cert requested, not required)
#              +3 SASL_SSL  +4 SASL_PLAINTEXT  (PLAIN, SCRAM-SHA-256/512)
#              +5 SSL, client certificate required
#              +6 SSL, wrong-host cert     +7 SSL, expired server cert
# (Kafka's +1 is its controller.) The wrong-host and expired listeners ask
# for the same credentials as the good ones, so a client set up for the
# good one differs only in the port.

MQTT_TLS_PORT=${M2K_MQTT_TLS_PORT:-$((MQTT_PORT + 1))}
MQTT_MTLS_PORT=${M2K_MQTT_MTLS_PORT:-$((MQTT_PORT + 2))}
MQTT_WRONG_HOST_PORT=${M2K_MQTT_WRONG_HOST_PORT:-$((MQTT_PORT + 3))}
MQTT_EXPIRED_PORT=${M2K_MQTT_EXPIRED_PORT:-$((MQTT_PORT + 4))}
KAFKA_SSL_PORT=${M2K_KAFKA_SSL_PORT:-$((KAFKA_PORT + 2))}
KAFKA_SASL_SSL_PORT=${M2K_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 3))}
KAFKA_SASL_PLAINTEXT_PORT=${M2K_KAFKA_SASL_PLAINTEXT_PORT:-$((KAFKA_PORT + 4))}
KAFKA_MTLS_PORT=${M2K_KAFKA_MTLS_PORT:-$((KAFKA_PORT + 5))}
KAFKA_WRONG_HOST_PORT=${M2K_KAFKA_WRONG_HOST_PORT:-$((KAFKA_PORT + 6))}
KAFKA_EXPIRED_PORT=${M2K_KAFKA_EXPIRED_PORT:-$((KAFKA_PORT + 7))}

TLS=$DIR/tls
CREDS=$DIR/credentials
MQTT_USER=m2k-mqtt
KAFKA_PLAIN_USER=m2k-plain
KAFKA_SCRAM256_USER=m2k-scram256
KAFKA_SCRAM512_USER=m2k-scram512
CLIENT_CN=m2k-client

mqtt_secure_ports() { echo "$MQTT_TLS_PORT $MQTT_MTLS_PORT $MQTT_WRONG_HOST_PORT $MQTT_EXPIRED_PORT"; }
kafka_secure_ports() {
    echo "$KAFKA_SSL_PORT $KAFKA_SASL_SSL_PORT $KAFKA_SASL_PLAINTEXT_PORT $KAFKA_MTLS_PORT" \
        "$KAFKA_WRONG_HOST_PORT $KAFKA_EXPIRED_PORT"
}

# Two listeners on one port would fail later and less clearly.
check_distinct_ports() {
    local all seen=" " p
    all="$MQTT_PORT $(mqtt_secure_ports) $KAFKA_PORT $CTRL_PORT $(kafka_secure_ports)"
    for p in $all; do
        case $seen in *" $p "*) die "port $p is given to two listeners; check the M2K_*_PORT variables" ;; esac
        seen="$seen$p "
    done
}

# --- certificates -------------------------------------------------------------
tls_cnf() {
    local d=$1
    cat <<EOF
# Written by stack.sh: the test CAs and the extensions of each certificate.
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[wrong_host_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_test]
certificate = $d/ca.crt
private_key = $d/ca.key
database = $d/ca.db/test.index
new_certs_dir = $d/ca.db
rand_serial = yes
unique_subject = no
default_md = sha256
policy = any
[ca_other]
certificate = $d/other-ca.crt
private_key = $d/other-ca.key
database = $d/ca.db/other.index
new_certs_dir = $d/ca.db
rand_serial = yes
unique_subject = no
default_md = sha256
policy = any
[any]
commonName = supplied
EOF
}

# ossl ARGS...: openssl, quiet unless it fails.
ossl() {
    local out
    out=$(openssl "$@" 2>&1) || die "openssl $1 failed: $out"
}

key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

# mkca DIR NAME CN
mkca() {
    key "$1/$2.key"
    ossl req -x509 -new -config "$1/openssl.cnf" -extensions ca_ext -key "$1/$2.key" \
        -subj "/CN=$3" -days 3650 -out "$1/$2.crt"
}

# leaf DIR NAME CN CA-SECTION EXT-SECTION [expired]
leaf() {
    local d=$1 name=$2 dates=(-days 365)
    [ "${6:-}" = expired ] && dates=(-startdate 20200101000000Z -enddate 20200201000000Z)
    key "$d/$name.key"
    ossl req -new -config "$d/openssl.cnf" -key "$d/$name.key" -subj "/CN=$3" -out "$d/$name.csr"
    ossl ca -batch -notext -config "$d/openssl.cnf" -name "$4" -extensions "$5" \
        "${dates[@]}" -in "$d/$name.csr" -out "$d/$name.crt"
    rm -f "$d/$name.csr"
}

# Kafka reads a PEM keystore file only with an encrypted PKCS#8 key
# (ssl.key.password); the certificate follows the key. Like Mosquitto's,
# without the CA: a client that trusts another CA then sees "unable to get
# local issuer certificate", not "self-signed certificate in chain". PBES1 with 3DES, because
# Java 17 cannot read openssl's default PBES2 ("PBES2 SecretKeyFactory not
# available"); a test key, so the weak cipher does not matter.
keystore() {
    local d=$1 name=$2
    ossl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in "$d/$name.key" -passout "file:$d/keystore.password" \
        -out "$d/$name.keystore.pem"
    cat "$d/$name.crt" >>"$d/$name.keystore.pem"
}

tls_make() {
    local d="$TLS.new"
    rm -rf "$d"
    mkdir -p "$d/ca.db"
    : >"$d/ca.db/test.index"
    : >"$d/ca.db/other.index"
    tls_cnf "$d" >"$d/openssl.cnf"
    mkca "$d" ca "mqtt2kafka test CA"
    mkca "$d" other-ca "mqtt2kafka untrusted test CA"
    leaf "$d" server localhost ca_test server_ext
    leaf "$d" wrong-host wrong.example ca_test wrong_host_ext
    leaf "$d" expired-server localhost ca_test server_ext expired
    leaf "$d" client "$CLIENT_CN" ca_test client_ext
    leaf "$d" expired-client "$CLIENT_CN-expired" ca_test client_ext expired
    leaf "$d" other-client "$CLIENT_CN-other" ca_other client_ext
    password >"$d/keystore.password"
    keystore "$d" server
    keystore "$d" wrong-host
    keystore "$d" expired-server
    rm -rf "$d/ca.db"
    # Certificates are public; keys and passwords are not.
    chmod 0755 "$d"
    chmod 0644 "$d"/*.crt "$d/openssl.cnf"
    chmod 0600 "$d"/*.key "$d"/*.password "$d"/*.keystore.pem
    mv "$d" "$TLS"
}

# --- credentials -----------------------------------------------------------------
password() { openssl rand -hex 16; }

creds_make() {
    local d="$CREDS.new" u
    rm -rf "$d"
    mkdir -p "$d"
    for u in mqtt kafka-plain kafka-scram-sha-256 kafka-scram-sha-512; do
        password >"$d/$u.password"
    done
    # Ties the Kafka data formatted with these SCRAM users to them.
    openssl rand -hex 8 >"$d/stamp"
    chmod 0600 "$d"/*
    mv "$d" "$CREDS"
}

secret() { head -n 1 "$CREDS/$1.password"; }

# Certificates and passwords, made when missing (under stack.sh's lock).
secure_ensure() {
    [ -s "$TLS/keystore.password" ] && [ -s "$CREDS/stamp" ] && return 0
    need_tools openssl
    umask 077
    mkdir -p "$DIR"
    [ -s "$TLS/keystore.password" ] || { rm -rf "$TLS"; tls_make; }
    [ -s "$CREDS/stamp" ] || { rm -rf "$CREDS"; creds_make; }
    umask 022
}

secure_remove() { rm -rf "$TLS" "$TLS.new" "$CREDS" "$CREDS.new"; }

# --- mosquitto ---------------------------------------------------------------------
# The hashed password file, from the plain one, without the password on a
# command line.
mqtt_passwd() {
    local f="$DIR/mosquitto/passwd"
    (umask 077 && printf '%s:%s\n' "$MQTT_USER" "$(secret mqtt)" >"$f.new")
    mosquitto_passwd -U "$f.new" >/dev/null 2>&1 || die "mosquitto_passwd could not hash $f.new"
    mv "$f.new" "$f"
}

# The secured listeners (per_listener_settings is on).
mqtt_secure_conf() {
    local p="$DIR/mosquitto/passwd"
    cat <<EOF
# TLS, login with user name and password.
listener $MQTT_TLS_PORT 127.0.0.1
certfile $TLS/server.crt
keyfile $TLS/server.key
allow_anonymous false
password_file $p

# TLS, a client certificate from the test CA is required; its CN is the
# user name.
listener $MQTT_MTLS_PORT 127.0.0.1
certfile $TLS/server.crt
keyfile $TLS/server.key
cafile $TLS/ca.crt
require_certificate true
use_identity_as_username true
allow_anonymous false

# As the password listener, but the certificate names wrong.example only.
listener $MQTT_WRONG_HOST_PORT 127.0.0.1
certfile $TLS/wrong-host.crt
keyfile $TLS/wrong-host.key
allow_anonymous false
password_file $p

# As the password listener, but the certificate expired in 2020.
listener $MQTT_EXPIRED_PORT 127.0.0.1
certfile $TLS/expired-server.crt
keyfile $TLS/expired-server.key
allow_anonymous false
password_file $p
EOF
}

# --- kafka ---------------------------------------------------------------------------
kafka_listeners() {
    local h=127.0.0.1
    echo "PLAINTEXT://$h:$KAFKA_PORT,SSL://$h:$KAFKA_SSL_PORT,SASL_SSL://$h:$KAFKA_SASL_SSL_PORT,SASL_PLAINTEXT://$h:$KAFKA_SASL_PLAINTEXT_PORT,MTLS://$h:$KAFKA_MTLS_PORT,WRONG_HOST://$h:$KAFKA_WRONG_HOST_PORT,EXPIRED://$h:$KAFKA_EXPIRED_PORT"
}

kafka_secure_conf() {
    local l jaas
    cat <<EOF
# Secured listeners. The controller and the broker's own traffic stay on
# PLAINTEXT.
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/server.keystore.pem
ssl.key.password=$(head -n 1 "$TLS/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.crt
listener.name.ssl.ssl.client.auth=requested
listener.name.mtls.ssl.client.auth=required
listener.name.wrong_host.ssl.keystore.location=$TLS/wrong-host.keystore.pem
listener.name.expired.ssl.keystore.location=$TLS/expired-server.keystore.pem
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
EOF
    jaas="org.apache.kafka.common.security"
    for l in sasl_ssl sasl_plaintext; do
        cat <<EOF
listener.name.$l.plain.sasl.jaas.config=$jaas.plain.PlainLoginModule required user_$KAFKA_PLAIN_USER="$(secret kafka-plain)";
listener.name.$l.scram-sha-256.sasl.jaas.config=$jaas.scram.ScramLoginModule required;
listener.name.$l.scram-sha-512.sasl.jaas.config=$jaas.scram.ScramLoginModule required;
EOF
    done
    # One network thread for each of the extra listeners: they carry
    # little, and threads cost start-up time on 2 cores.
    for l in ssl sasl_ssl sasl_plaintext mtls wrong_host expired; do
        echo "listener.name.$l.num.network.threads=1"
    done
}

kafka_protocol_map() {
    echo "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,MTLS:SSL,WRONG_HOST:SSL,EXPIRED:SSL"
}

# The storage tool's arguments that create the SCRAM users, one a line.
kafka_scram_args() {
    printf '%s\n' --add-scram "SCRAM-SHA-256=[name=$KAFKA_SCRAM256_USER,password=$(secret kafka-scram-sha-256)]" \
        --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM512_USER,password=$(secret kafka-scram-sha-512)]"
}

# --- what tests see ---------------------------------------------------------------
secure_env_lines() {
    local h=127.0.0.1
    cat <<EOF
MQTT2KAFKA_TEST_MQTT_TLS=$h:$MQTT_TLS_PORT
MQTT2KAFKA_TEST_MQTT_MTLS=$h:$MQTT_MTLS_PORT
MQTT2KAFKA_TEST_MQTT_TLS_WRONG_HOST=$h:$MQTT_WRONG_HOST_PORT
MQTT2KAFKA_TEST_MQTT_TLS_EXPIRED=$h:$MQTT_EXPIRED_PORT
MQTT2KAFKA_TEST_MQTT_USER=$MQTT_USER
MQTT2KAFKA_TEST_MQTT_PASSWORD_FILE=$CREDS/mqtt.password
MQTT2KAFKA_TEST_KAFKA_SSL=$h:$KAFKA_SSL_PORT
MQTT2KAFKA_TEST_KAFKA_SASL_SSL=$h:$KAFKA_SASL_SSL_PORT
MQTT2KAFKA_TEST_KAFKA_SASL_PLAINTEXT=$h:$KAFKA_SASL_PLAINTEXT_PORT
MQTT2KAFKA_TEST_KAFKA_MTLS=$h:$KAFKA_MTLS_PORT
MQTT2KAFKA_TEST_KAFKA_SSL_WRONG_HOST=$h:$KAFKA_WRONG_HOST_PORT
MQTT2KAFKA_TEST_KAFKA_SSL_EXPIRED=$h:$KAFKA_EXPIRED_PORT
MQTT2KAFKA_TEST_KAFKA_PLAIN_USER=$KAFKA_PLAIN_USER
MQTT2KAFKA_TEST_KAFKA_PLAIN_PASSWORD_FILE=$CREDS/kafka-plain.password
MQTT2KAFKA_TEST_KAFKA_SCRAM_SHA_256_USER=$KAFKA_SCRAM256_USER
MQTT2KAFKA_TEST_KAFKA_SCRAM_SHA_256_PASSWORD_FILE=$CREDS/kafka-scram-sha-256.password
MQTT2KAFKA_TEST_KAFKA_SCRAM_SHA_512_USER=$KAFKA_SCRAM512_USER
MQTT2KAFKA_TEST_KAFKA_SCRAM_SHA_512_PASSWORD_FILE=$CREDS/kafka-scram-sha-512.password
MQTT2KAFKA_TEST_TLS_CA=$TLS/ca.crt
MQTT2KAFKA_TEST_TLS_CLIENT_CERT=$TLS/client.crt
MQTT2KAFKA_TEST_TLS_CLIENT_KEY=$TLS/client.key
MQTT2KAFKA_TEST_TLS_OTHER_CA=$TLS/other-ca.crt
MQTT2KAFKA_TEST_TLS_OTHER_CLIENT_CERT=$TLS/other-client.crt
MQTT2KAFKA_TEST_TLS_OTHER_CLIENT_KEY=$TLS/other-client.key
MQTT2KAFKA_TEST_TLS_EXPIRED_CLIENT_CERT=$TLS/expired-client.crt
MQTT2KAFKA_TEST_TLS_EXPIRED_CLIENT_KEY=$TLS/expired-client.key
EOF
}
