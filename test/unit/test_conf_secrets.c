/*
 * test_conf_secrets.c — the configuration's uplink keys: the nested
 * mappings mqtt.tls and kafka.security, ${NAME} expansion, the files a
 * config names (secrets read from *_file, credential:NAME, refused when
 * any user can read them), what a reload compares (conf_diff, conf_keep,
 * conf_key_effect), and that no message ever holds a secret's value.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge/conf.h"

#define G      "gateway:\n  id: gw-1\n"
#define R      "routes:\n  - match: a/{x}\n    topic: t.{x}\n"
#define SECRET "pa55-w0rd-xyz"

static char err[1024];
static char dir[64];

static int parse(const char *y, struct conf *c)
{
    return conf_parse(y, strlen(y), "t.yaml", c, err, sizeof err);
}

static void expect_error(const char *yaml, int line, int col, const char *msg)
{
    struct conf c;
    char where[64];
    int rc = parse(yaml, &c);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL for:\n%s\ngot %d (%s)", yaml, rc, err);
    snprintf(where, sizeof where, "t.yaml:%d:%d: ", line, col);
    if (strncmp(err, where, strlen(where)) || !strstr(err, msg))
        fail_msg("expected \"%s...%s\"\n     got \"%s\"", where, msg, err);
    if (strstr(err, SECRET))
        fail_msg("the error shows a secret: %s", err);
}

/* dir/name with text and mode; returns the path (static). */
static const char *file(const char *name, const char *text, mode_t mode)
{
    static char path[8][128];
    static int n;
    char *p = path[n++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/m2k-secrets-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void test_tls_and_security_values(void **state)
{
    struct conf c;
    (void)state;
    assert_int_equal(parse(G R, &c), 0);
    assert_int_equal(c.mqtt.tls.on, 0);
    assert_int_equal(c.kafka.security.on, 0);
    assert_int_equal(c.mqtt.port, 1883);
    assert_int_equal(c.nfiles, 0);
    conf_fini(&c);

    const char *y = G R "mqtt:\n  username: bridge\n"
                        "  password_file: /etc/m2k/mqtt.pw\n"
                        "  tls:\n    ca_file: /etc/m2k/ca.crt\n"
                        "    cert_file: /etc/m2k/gw.crt\n"
                        "    key_file: credential:gw-key\n"
                        "kafka:\n  security:\n    protocol: sasl_ssl\n"
                        "    sasl_mechanism: SCRAM-SHA-512\n"
                        "    username: gw-0001\n"
                        "    password_file: /etc/m2k/kafka.pw\n"
                        "    insecure_skip_hostname_verification: true\n";
    assert_int_equal(parse(y, &c), 0);
    assert_int_equal(c.mqtt.tls.on, 1);
    assert_int_equal(c.mqtt.port, 8883); /* TLS: the MQTT over TLS port */
    assert_string_equal(c.mqtt.username, "bridge");
    assert_null(c.mqtt.password); /* not read by the parser */
    assert_string_equal(c.mqtt.password_file, "/etc/m2k/mqtt.pw");
    assert_string_equal(c.mqtt.tls.ca_file, "/etc/m2k/ca.crt");
    assert_string_equal(c.mqtt.tls.key_file, "credential:gw-key");
    assert_int_equal(c.mqtt.tls.insecure_skip_hostname_verification, 0);
    assert_int_equal(c.kafka.security.on, 1);
    assert_int_equal(c.kafka.security.protocol, CONF_SEC_SASL_SSL);
    assert_string_equal(c.kafka.security.sasl_mechanism, "SCRAM-SHA-512");
    assert_int_equal(c.kafka.security.insecure_skip_hostname_verification, 1);
    assert_int_equal(c.nfiles, 5);
    assert_string_equal(c.files[0].name, "mqtt.password_file");
    assert_int_equal(c.files[0].line, 8);
    assert_int_equal(c.files[0].col, 18);
    assert_int_equal(c.files[0].flags, CONF_FILE_PRIVATE | CONF_FILE_SECRET);
    assert_string_equal(c.files[1].name, "mqtt.tls.ca_file");
    assert_int_equal(c.files[1].flags, 0);
    assert_string_equal(c.files[3].name, "mqtt.tls.key_file");
    assert_int_equal(c.files[3].flags, CONF_FILE_PRIVATE);
    assert_string_equal(c.files[4].name, "kafka.security.password_file");
    conf_fini(&c);

    /* an explicit port wins; `tls:` alone is TLS with the system's CAs */
    assert_int_equal(parse(G R "mqtt:\n  port: 1884\n  tls:\n", &c), 0);
    assert_int_equal(c.mqtt.tls.on, 1);
    assert_int_equal(c.mqtt.port, 1884);
    assert_null(c.mqtt.tls.ca_file);
    conf_fini(&c);
    assert_int_equal(
        parse(G R "kafka:\n  security:\n    protocol: ssl\n  properties:\n"
                  "    ssl.cipher.suites: HIGH\n",
              &c),
        0);
    assert_int_equal(c.kafka.security.protocol, CONF_SEC_SSL);
    conf_fini(&c);
}

static void test_tls_and_security_errors(void **state)
{
    (void)state;
    expect_error(G R "mqtt:\n  tls:\n    cafile: x\n", 8, 5,
                 "unknown key \"cafile\" in mqtt.tls (did you mean "
                 "\"ca_file\"?)");
    expect_error(G R "mqtt:\n  tls: yes\n", 7, 8,
                 "expected a mapping of keys for mqtt.tls, got a scalar");
    expect_error(G R "mqtt:\n  tls:\n    cert_file: a.crt\n", 8, 16,
                 "mqtt.tls.cert_file needs mqtt.tls.key_file");
    expect_error(G R "mqtt:\n  tls:\n    key_file: a.key\n", 8, 15,
                 "mqtt.tls.key_file needs mqtt.tls.cert_file");
    expect_error(G R "mqtt:\n  username: u\n  password: " SECRET
                     "\n  password_file: p\n",
                 9, 18, "mqtt.password_file: set password or password_file");
    expect_error(G R "mqtt:\n  password_file: p\n", 7, 18,
                 "mqtt: a password needs mqtt.username");
    expect_error(G R "mqtt:\n  tls:\n    insecure_skip_hostname_verification: "
                     "maybe\n",
                 8, 42, "expected one of false | true | no | yes");
    expect_error(G R "mqtt:\n  tls:\n    ca_file: credential:../x\n", 8, 14,
                 "expected credential:NAME");
    expect_error(G R "kafka:\n  security:\n    username: u\n", 8, 5,
                 "kafka.security needs key \"protocol\"");
    expect_error(G R "kafka:\n  security:\n    protocol: tls\n", 8, 15,
                 "expected one of plaintext | ssl | sasl_plaintext | sasl_ssl");
    expect_error(G R "kafka:\n  security:\n    protocol: ssl\n"
                     "    username: u\n",
                 9, 15,
                 "kafka.security.username is for the sasl_ssl and "
                 "sasl_plaintext protocols (protocol is ssl)");
    expect_error(G R "kafka:\n  security:\n    protocol: sasl_plaintext\n"
                     "    sasl_mechanism: PLAIN\n    username: u\n"
                     "    password: " SECRET "\n    ca_file: ca.crt\n",
                 12, 14,
                 "kafka.security.ca_file is for the ssl and sasl_ssl "
                 "protocols (protocol is sasl_plaintext)");
    expect_error(G R "kafka:\n  security:\n    protocol: sasl_ssl\n"
                     "    username: u\n    password_file: p\n",
                 8, 5, "protocol sasl_ssl needs sasl_mechanism");
    expect_error(G R "kafka:\n  security:\n    protocol: sasl_ssl\n"
                     "    sasl_mechanism: SCRAM-SHA-1\n",
                 9, 21,
                 "expected one of PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512");
    expect_error(G R "kafka:\n  security:\n    protocol: sasl_ssl\n"
                     "    sasl_mechanism: PLAIN\n    username: u\n",
                 8, 5, "protocol sasl_ssl needs password_file");
    expect_error(G R "kafka:\n  security:\n    protocol: ssl\n"
                     "  properties:\n    sasl.password: " SECRET "\n",
                 10, 5,
                 "kafka.properties: \"sasl.password\" cannot be set here when "
                 "kafka.security is");
}

static void test_env(void **state)
{
    struct conf c;
    (void)state;
    setenv("M2K_T_HOST", "broker.example", 1);
    setenv("M2K_T_PW", SECRET, 1);
    unsetenv("M2K_T_UNSET");
    assert_int_equal(parse(G R "mqtt:\n  host: ${M2K_T_HOST}\n  username: u\n"
                               "  password: ${M2K_T_PW}\n"
                               "  client_id: a$b-$${x}-${M2K_T_HOST}x\n"
                               "kafka:\n  properties:\n    linger.ms: "
                               "\"${M2K_T_HOST}\"\n",
                           &c),
                     0);
    assert_string_equal(c.mqtt.host, "broker.example");
    assert_string_equal(c.mqtt.password, SECRET);
    assert_string_equal(c.mqtt.client_id, "a$b-${x}-broker.examplex");
    assert_string_equal(c.kafka.props[0].value, "broker.example");
    conf_fini(&c);
    /* an unset variable is an error where it is used; never the value */
    expect_error(G R "mqtt:\n  host: ${M2K_T_UNSET}\n", 7, 9,
                 "mqtt.host: the environment variable M2K_T_UNSET is not set");
    expect_error(G R "mqtt:\n  host: a${M2K_T_HOST\n", 7, 9,
                 "mqtt.host: expected ${NAME}");
    expect_error(G R "mqtt:\n  host: ${1X}\n", 7, 9, "expected ${NAME}");
    expect_error(G R "mqtt:\n  host: \"${}\"\n", 7, 9, "expected ${NAME}");
    /* expansion first, then the key's own check */
    setenv("M2K_T_EMPTY", "", 1);
    expect_error(G R "mqtt:\n  host: ${M2K_T_EMPTY}\n", 7, 9,
                 "mqtt.host: expected a non-empty string");
    /* lenient: left as written, listed with its place */
    const char *y = G R "mqtt:\n  host: ${M2K_T_UNSET}\n"
                        "kafka:\n  brokers: x${M2K_T_UNSET}:1\n";
    assert_int_equal(conf_parse_ex(y, strlen(y), "t.yaml", CONF_ENV_LENIENT, &c,
                                   err, sizeof err),
                     0);
    assert_string_equal(c.mqtt.host, "${M2K_T_UNSET}");
    assert_string_equal(c.kafka.brokers, "x${M2K_T_UNSET}:1");
    assert_int_equal(c.nunset, 1);
    assert_string_equal(c.unset[0].name, "M2K_T_UNSET");
    assert_int_equal(c.unset[0].line, 7);
    assert_int_equal(c.unset[0].col, 9);
    conf_fini(&c);
}

static void note_count(void *ud, const char *text)
{
    int *n = ud;
    (*n)++;
    if (strstr(text, SECRET))
        fail_msg("a note shows a secret: %s", text);
}

/* Parses y (with %s for paths) and loads its files. */
static int load_files(const char *yaml, struct conf *c, unsigned flags,
                      int *notes)
{
    int rc = parse(yaml, c);
    if (rc)
        fail_msg("parse: %s", err);
    rc = conf_load_files(c, flags, note_count, notes, err, sizeof err);
    if (rc && strstr(err, SECRET))
        fail_msg("the error shows a secret: %s", err);
    return rc;
}

static void test_secret_files(void **state)
{
    struct conf c;
    char y[2048];
    int notes = 0;
    (void)state;
    const char *pw = file("mqtt.pw", SECRET "\n", 0600);
    const char *kpw = file("kafka.pw", SECRET "-k\r\n", 0640);
    const char *ca = file("ca.crt", "-----BEGIN CERTIFICATE-----\n", 0644);
    snprintf(y, sizeof y,
             G R "mqtt:\n  username: u\n  password_file: %s\n  tls:\n"
                 "    ca_file: %s\n"
                 "kafka:\n  security:\n    protocol: sasl_ssl\n"
                 "    sasl_mechanism: PLAIN\n    username: u\n"
                 "    password_file: %s\n",
             pw, ca, kpw);
    assert_int_equal(load_files(y, &c, 0, &notes), 0);
    assert_string_equal(c.mqtt.password, SECRET); /* the newline is off */
    assert_string_equal(c.kafka.security.password, SECRET "-k");
    assert_int_equal(c.files[0].read, 1);
    assert_true(c.files[1].digest != 0);
    assert_int_equal(notes, 0);
    conf_fini(&c);

    /* a secret any user can read is refused, named, with what to do */
    chmod(pw, 0644);
    assert_int_equal(load_files(y, &c, 0, &notes), -EINVAL);
    if (!strstr(err, "t.yaml:8:18: mqtt.password_file: ") ||
        !strstr(err, "holds a secret and any user can read it (mode 0644)") ||
        !strstr(err, "chmod o-rwx"))
        fail_msg("got %s", err);
    conf_fini(&c);
    chmod(pw, 0602); /* writable by anyone: as bad */
    assert_int_equal(load_files(y, &c, CONF_FILES_CHECK, &notes), -EINVAL);
    assert_non_null(strstr(err, "any user can change it"));
    conf_fini(&c);
    chmod(pw, 0600);

    /* empty, two lines, missing */
    file("mqtt.pw", "\n", 0600);
    assert_int_equal(load_files(y, &c, 0, &notes), -EINVAL);
    assert_non_null(strstr(err, "mqtt.pw is empty"));
    conf_fini(&c);
    file("mqtt.pw", SECRET "\nsecond\n", 0600);
    assert_int_equal(load_files(y, &c, 0, &notes), -EINVAL);
    assert_non_null(strstr(err, "holds more than one line"));
    conf_fini(&c);
    unlink(pw);
    assert_int_equal(load_files(y, &c, 0, &notes), -EINVAL);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "No such file or directory"));
    conf_fini(&c);
}

static void test_credentials(void **state)
{
    struct conf c;
    char y[1024], cred[128];
    int notes = 0;
    (void)state;
    snprintf(y, sizeof y,
             G R "mqtt:\n  username: u\n  password_file: credential:mqtt-pw\n"
                 "  tls:\n    cert_file: credential:gw.crt\n"
                 "    key_file: credential:gw.key\n");
    unsetenv("CREDENTIALS_DIRECTORY");
    /* check outside the service: noted, not refused */
    assert_int_equal(load_files(y, &c, CONF_FILES_CHECK, &notes), 0);
    assert_int_equal(notes, 3);
    assert_null(c.mqtt.password);
    conf_fini(&c);
    /* the daemon without LoadCredential=: refused */
    assert_int_equal(load_files(y, &c, 0, &notes), -EINVAL);
    assert_non_null(strstr(err, "t.yaml:8:18: mqtt.password_file: "
                                "credential:mqtt-pw: $CREDENTIALS_DIRECTORY "
                                "is not set"));
    conf_fini(&c);
    /* as systemd gives them: a folder of files mode 0400 */
    snprintf(cred, sizeof cred, "%s/creds", dir);
    mkdir(cred, 0700);
    setenv("CREDENTIALS_DIRECTORY", cred, 1);
    file("creds/mqtt-pw", SECRET, 0400);
    file("creds/gw.crt", "cert", 0400);
    file("creds/gw.key", "key", 0400);
    assert_int_equal(load_files(y, &c, 0, &notes), 0);
    assert_string_equal(c.mqtt.password, SECRET);
    char want[256];
    snprintf(want, sizeof want, "%s/gw.key", cred);
    assert_string_equal(c.mqtt.tls.key_file, want); /* the path to open */
    assert_string_equal(c.files[2].written, "credential:gw.key");
    conf_fini(&c);
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_inline_secret_warning(void **state)
{
    struct conf c;
    char y[512];
    int notes = 0;
    (void)state;
    snprintf(y, sizeof y, G R "mqtt:\n  username: u\n  password: " SECRET "\n");
    const char *p = file("inline.yaml", y, 0644);
    assert_int_equal(conf_load(p, &c, err, sizeof err), 0);
    assert_int_equal(
        conf_load_files(&c, 0, note_count, &notes, err, sizeof err), 0);
    assert_int_equal(notes, 1); /* said, never printed */
    conf_fini(&c);
    chmod(p, 0640);
    notes = 0;
    assert_int_equal(conf_load(p, &c, err, sizeof err), 0);
    assert_int_equal(
        conf_load_files(&c, 0, note_count, &notes, err, sizeof err), 0);
    assert_int_equal(notes, 0);
    conf_fini(&c);
}

struct changes {
    char names[16][64];
    int n;
};

static void on_change(void *ud, const char *key)
{
    struct changes *ch = ud;
    if (ch->n < 16)
        snprintf(ch->names[ch->n], 64, "%s", key);
    ch->n++;
}

static int changed(const struct changes *ch, const char *key)
{
    for (int i = 0; i < ch->n && i < 16; i++)
        if (!strcmp(ch->names[i], key))
            return 1;
    return 0;
}

static void test_diff_and_keep(void **state)
{
    struct conf a, b;
    struct changes ch = {0};
    char y[1024];
    int notes = 0;
    (void)state;
    const char *pw = file("d.pw", SECRET "\n", 0600);
    snprintf(y, sizeof y,
             G R "mqtt:\n  username: u\n  password_file: %s\n"
                 "spool:\n  path: /a.db\n",
             pw);
    assert_int_equal(load_files(y, &a, 0, &notes), 0);
    assert_int_equal(load_files(y, &b, 0, &notes), 0);
    assert_int_equal(conf_diff(&a, &b, on_change, &ch), 0);
    conf_fini(&b);
    /* the same path, a new password: both keys change */
    file("d.pw", SECRET "-2\n", 0600);
    assert_int_equal(load_files(y, &b, 0, &notes), 0);
    assert_int_equal(conf_diff(&a, &b, on_change, &ch), 2);
    assert_true(changed(&ch, "mqtt.password"));
    assert_true(changed(&ch, "mqtt.password_file"));
    conf_fini(&b);
    memset(&ch, 0, sizeof ch);
    file("d.pw", SECRET "\n", 0600);
    snprintf(y, sizeof y,
             G "routes:\n  - match: b/{x}\n    topic: t.{x}\n"
               "mqtt:\n  username: u\n  password_file: %s\n"
               "spool:\n  path: /b.db\n  commit_delay: 9ms\n"
               "kafka:\n  properties:\n    linger.ms: 7\n",
             pw);
    assert_int_equal(load_files(y, &b, 0, &notes), 0);
    assert_int_equal(conf_diff(&a, &b, on_change, &ch), 4);
    assert_true(changed(&ch, "routes"));
    assert_true(changed(&ch, "spool.path"));
    assert_true(changed(&ch, "spool.commit_delay"));
    assert_true(changed(&ch, "kafka.properties"));
    /* a restart key keeps its running value */
    assert_int_equal(conf_keep(&b, &a, "spool.path"), 0);
    assert_string_equal(b.spool.path, "/a.db");
    assert_int_equal(conf_keep(&b, &a, "spool.commit_delay"), 0);
    assert_int_equal(b.spool.commit_delay, 5);
    assert_int_equal(conf_keep(&b, &a, "no.such"), -ENOENT);
    conf_fini(&a);
    conf_fini(&b);
}

static void test_effects(void **state)
{
    (void)state;
    assert_int_equal(conf_key_effect("routes"), CONF_ROUTES);
    assert_int_equal(conf_key_effect("gateway.id"), CONF_AT_ONCE);
    assert_int_equal(conf_key_effect("mqtt.tls.ca_file"), CONF_MQTT);
    assert_int_equal(conf_key_effect("mqtt.password"), CONF_MQTT);
    assert_int_equal(conf_key_effect("kafka.security.password_file"),
                     CONF_KAFKA);
    assert_int_equal(conf_key_effect("kafka.properties"), CONF_KAFKA);
    assert_int_equal(conf_key_effect("kafka.dead_letter_topic"), CONF_AT_ONCE);
    assert_int_equal(conf_key_effect("kafka.inflight_records"), CONF_RESTART);
    assert_int_equal(conf_key_effect("spool.path"), CONF_RESTART);
    assert_int_equal(conf_key_effect("spool.commit_delay"), CONF_AT_ONCE);
    assert_int_equal(conf_key_effect("log.level"), CONF_AT_ONCE);
    assert_int_equal(conf_key_effect("log.status_file"), CONF_RESTART);
    assert_int_equal(conf_key_effect("logx.y"), CONF_RESTART);
    assert_int_equal(conf_key_effect("future.key"), CONF_RESTART);
    assert_string_equal(conf_effect_name(CONF_MQTT), "reconnect");
}

static void test_keys_listed(void **state)
{
    char *text = NULL;
    size_t len = 0;
    (void)state;
    FILE *f = open_memstream(&text, &len);
    conf_print_keys(f);
    fclose(f);
    const char *want[] = {"mqtt.password_file",
                          "mqtt.tls ",
                          "mqtt.tls.ca_file",
                          "mqtt.tls.insecure_skip_hostname_verification",
                          "kafka.security.protocol",
                          "kafka.security.sasl_mechanism",
                          "kafka.security.password_file",
                          "kafka.security.key_file"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(text, want[i]))
            fail_msg("check --keys lacks %s", want[i]);
    assert_non_null(strstr(text, "on reload"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_and_security_values),
        cmocka_unit_test(test_tls_and_security_errors),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_inline_secret_warning),
        cmocka_unit_test(test_diff_and_keep),
        cmocka_unit_test(test_effects),
        cmocka_unit_test(test_keys_listed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
