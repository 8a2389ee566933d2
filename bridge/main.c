/*
 * main.c — argv → one subcommand from a table, in the manner of wg(8).
 *
 *   mqtt2kafka [run] [-c FILE]          run the bridge (the default)
 *   mqtt2kafka check [-c FILE]          validate, print the resolved config
 *   mqtt2kafka check --keys             every key, its default and meaning
 *   mqtt2kafka route [-c FILE] [--payload-file F] TOPIC...
 *                                       where MQTT topics (and a payload) go
 *   mqtt2kafka reload [-c FILE] [PID]  the running daemon rereads its config
 *   mqtt2kafka spool [-c FILE] stats | dead [list] | dead replay | dead purge
 *   mqtt2kafka schema [-c FILE] list | show TYPE   the loaded protobuf types
 *   mqtt2kafka reassemble [-c FILE] [--brokers B] [--id ID] [--timeout S]
 *              TOPIC DIR|-                  large messages from their chunks
 *   mqtt2kafka version | help
 *
 * Exit codes follow sysexits.h: 64 for a usage error, 78 for a bad config,
 * 1 for a runtime failure (or, for `route`, a topic that would not be
 * routed). Only `run` starts the daemon; the other commands are tools for a
 * field engineer and work while the daemon is stopped. Knows the conf and
 * what bridge.h exposes, no stage.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge.h"
#include "bridge/cli_reload.h"
#include "bridge/conf.h"
#include "bridge/log.h"

#define EX_USAGE_CODE 64

static const char *prog = "mqtt2kafka";

struct opts {
    const char *conf;
    int conf_given;           /* -c was given */
    const char *brokers;      /* reassemble --brokers */
    const char *id;           /* reassemble --id */
    int timeout_s;            /* reassemble --timeout */
    int keys;                 /* check --keys */
    const char *payload_file; /* route --payload-file */
    int npos;
    char **pos; /* positional arguments, borrowed from argv */
};

struct cmd {
    const char *name;
    int (*fn)(struct opts *o);
    const char *args;
    const char *help;
};

static int cmd_run(struct opts *o);
static int cmd_check(struct opts *o);
static int cmd_route(struct opts *o);
static int cmd_spool(struct opts *o);
static int cmd_schema(struct opts *o);
static int cmd_status(struct opts *o);
static int cmd_version(struct opts *o);
static int cmd_help(struct opts *o);
static int cmd_reassemble(struct opts *o);
static int cmd_reload(struct opts *o)
{
    return cli_reload_main(o->conf, o->npos, o->pos);
}

static const struct cmd cmds[] = {
    {"run", cmd_run, "[-c FILE]", "run the bridge (the default command)"},
    {"check", cmd_check, "[-c FILE] | --keys",
     "validate a config and print what it resolves to"},
    {"route", cmd_route, "[-c FILE] [--payload-file F] TOPIC...",
     "show the route, Kafka topic, key and headers "
     "for MQTT topics"},
    {"status", cmd_status, "[-c FILE]",
     "the running daemon's state: uplink, backlog, drops (exit 3: not "
     "running)"},
    {"reload", cmd_reload, "[-c FILE] [PID]",
     "make the running daemon reread its config (exit 78: it refused it)"},
    {"spool", cmd_spool, "[-c FILE] stats | dead [list|replay|purge]",
     "inspect the spool: backlog, dead letters, drops"},
    {"schema", cmd_schema, "[-c FILE] list | show TYPE",
     "the protobuf types the config loads (built in and schemas:)"},
    {"reassemble", cmd_reassemble,
     "[-c FILE] [--brokers B] [--id ID] [--timeout S] TOPIC DIR|-",
     "large messages put together from their chunks (exit 1: some "
     "missing)"},
    {"version", cmd_version, "", "print the version"},
    {"help", cmd_help, "", "this list"},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [COMMAND] [-c FILE] [ARGS]\n\nCommands:\n", prog);
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(f, "  %-10s %-43s %s\n", cmds[i].name, cmds[i].args,
                cmds[i].help);
    fprintf(f,
            "\nFILE defaults to %s. Exit codes: 0 ok, 1 failure, 64 usage, 78 "
            "bad config.\n",
            CONF_DEFAULT_PATH);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt,
                                                             ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    usage(stderr);
    return EX_USAGE_CODE;
}

/* --name VALUE or --name=VALUE: 1 (*val set, *i moved), 0 not this
 * option, -1 the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name,
                     const char **val)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n])
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

/* The options of reassemble: 1 taken, 0 not one of them, 64 a usage
 * error. */
static int reassemble_opt(int argc, char **argv, int *i, struct opts *o)
{
    const char *v = NULL;
    int r = opt_value(argc, argv, i, "--brokers", &o->brokers);
    if (r == 0)
        r = opt_value(argc, argv, i, "--id", &o->id);
    if (r == 0 && (r = opt_value(argc, argv, i, "--timeout", &v)) == 1) {
        char *end;
        long t = strtol(v, &end, 10);
        if (*end || t < 1 || t > 86400)
            return usage_error("--timeout takes seconds (1 to 86400), not "
                               "\"%s\"",
                               v);
        o->timeout_s = (int)t;
    }
    if (r < 0)
        return usage_error("%s needs a value", argv[*i]);
    return r;
}

/* -c FILE, -cFILE, --config FILE, --config=FILE, --keys, -h, --help, "--",
 * and reassemble's options. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    int dashdash = 0, r;
    o->conf = CONF_DEFAULT_PATH;
    o->timeout_s = 60;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && a[0] == '-' && a[1] &&
            (r = reassemble_opt(argc, argv, &i, o)) != 0) {
            if (r != 1)
                return r;
        } else if (dashdash || a[0] != '-' || !a[1]) {
            o->pos[o->npos++] = argv[i];
        } else if (!strcmp(a, "--")) {
            dashdash = 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", a);
            o->conf = argv[++i];
            o->conf_given = 1;
        } else if (!strncmp(a, "--config=", 9)) {
            o->conf = a + 9;
            o->conf_given = 1;
        } else if (!strncmp(a, "-c", 2)) {
            o->conf = a + 2;
            o->conf_given = 1;
        } else if (!strcmp(a, "--payload-file")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", a);
            o->payload_file = argv[++i];
        } else if (!strncmp(a, "--payload-file=", 15)) {
            o->payload_file = a + 15;
        } else if (!strcmp(a, "--keys")) {
            o->keys = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        } else {
            return usage_error("unknown option %s", a);
        }
    }
    return 0;
}

/* How much of the config a command needs. The tools read the YAML only,
 * and a ${NAME} the shell lacks stays as written (the service's
 * environment may have it); `check` reads the files too, noting what only
 * the service can read; `run` needs everything. */
enum load_how { LOAD_TOOL, LOAD_CHECK, LOAD_RUN };

static void note_stderr(void *ud, const char *text)
{
    (void)ud;
    fprintf(stderr, "%s: note: %s\n", prog, text);
}

static void note_log(void *ud, const char *text)
{
    (void)ud;
    log_warn("%s", text);
}

/* Loads and checks the whole config: the YAML, the files it names (for
 * check and run), then what the stages make of it (routes, payload types),
 * so every command refuses a bad file the same way. */
static int load(struct opts *o, struct conf *c, enum load_how how)
{
    char err[1024];
    int rc;
    if (conf_load_ex(o->conf, how == LOAD_RUN ? 0 : CONF_ENV_LENIENT, c, err,
                     sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return EX_CONFIG_CODE;
    }
    if (how == LOAD_CHECK)
        for (size_t i = 0; i < c->nunset && i < CONF_MAX_UNSET; i++)
            fprintf(stderr,
                    "%s: note: %s:%d:%d: ${%s} is not set here; the service's "
                    "environment must set it\n",
                    prog, c->path, c->unset[i].line, c->unset[i].col,
                    c->unset[i].name);
    if (how != LOAD_TOOL &&
        conf_load_files(c, how == LOAD_CHECK ? CONF_FILES_CHECK : 0,
                        how == LOAD_RUN ? note_log : note_stderr, NULL, err,
                        sizeof err)) {
        fprintf(stderr, "%s\n", err);
        conf_fini(c);
        return EX_CONFIG_CODE;
    }
    if ((rc = bridge_check_conf(c)))
        conf_fini(c);
    return rc;
}

/* ---- commands ------------------------------------------------------- */

static int cmd_run(struct opts *o)
{
    struct conf c;
    int rc;
    if (o->npos)
        return usage_error("run takes no arguments, got \"%s\"", o->pos[0]);
    if ((rc = load(o, &c, LOAD_RUN)))
        return rc;
    rc = bridge_run(&c);
    conf_fini(&c);
    return rc;
}

static int cmd_check(struct opts *o)
{
    struct conf c;
    int rc;
    if (o->keys) {
        conf_print_keys(stdout);
        return 0;
    }
    if (o->npos)
        return usage_error("check takes no arguments, got \"%s\"", o->pos[0]);
    if ((rc = load(o, &c, LOAD_CHECK)))
        return rc;
    rc = bridge_check(&c);
    conf_fini(&c);
    return rc;
}

static int cmd_route(struct opts *o)
{
    struct conf c;
    int rc;
    if (!o->npos)
        return usage_error("%s", "route needs at least one MQTT topic");
    if ((rc = load(o, &c, LOAD_TOOL)))
        return rc;
    rc = bridge_route(&c, o->pos, o->npos, o->payload_file);
    conf_fini(&c);
    return rc;
}

static int cmd_spool(struct opts *o)
{
    struct conf c;
    const char *what = o->npos > 0 ? o->pos[0] : "stats";
    const char *sub = o->npos > 1 ? o->pos[1] : "list";
    int rc;

    if (strcmp(what, "stats") && strcmp(what, "dead"))
        return usage_error("unknown spool command \"%s\"", what);
    if (o->npos > (strcmp(what, "dead") ? 1 : 2) ||
        (strcmp(sub, "list") && strcmp(sub, "replay") && strcmp(sub, "purge")))
        return usage_error("unexpected argument \"%s\"", o->pos[o->npos - 1]);
    if ((rc = load(o, &c, LOAD_TOOL)))
        return rc;
    rc = bridge_spool(&c, what, sub);
    conf_fini(&c);
    return rc;
}

static int cmd_schema(struct opts *o)
{
    struct conf c;
    const char *what = o->npos > 0 ? o->pos[0] : "list";
    int rc;
    if (strcmp(what, "list") && strcmp(what, "show"))
        return usage_error("unknown schema command \"%s\"", what);
    if (!strcmp(what, "show") && o->npos != 2)
        return usage_error("%s", "schema show needs one TYPE");
    if (!strcmp(what, "list") && o->npos > 1)
        return usage_error("unexpected argument \"%s\"", o->pos[1]);
    if ((rc = load(o, &c, LOAD_TOOL)))
        return rc;
    rc = bridge_schema(&c, what, o->npos > 1 ? o->pos[1] : NULL);
    conf_fini(&c);
    return rc;
}

static int cmd_status(struct opts *o)
{
    struct conf c;
    int rc;
    if (o->npos)
        return usage_error("unexpected argument \"%s\"", o->pos[0]);
    if ((rc = load(o, &c, LOAD_TOOL)))
        return rc;
    rc = bridge_status(&c);
    conf_fini(&c);
    return rc;
}

static int cmd_reassemble(struct opts *o)
{
    struct conf c;
    int rc;
    if (o->npos != 2)
        return usage_error("%s", "reassemble needs a TOPIC and a DIR (or - "
                                 "for stdout)");
    struct reassemble_opts ro = {.topic = o->pos[0],
                                 .out = o->pos[1],
                                 .brokers = o->brokers,
                                 .id = o->id,
                                 .timeout_s = o->timeout_s};
    if (o->brokers && !o->conf_given)
        return bridge_reassemble(NULL, &ro);
    /* the config's brokers and credentials (its files read, as run) */
    if ((rc = load(o, &c, LOAD_RUN)))
        return rc;
    rc = bridge_reassemble(&c, &ro);
    conf_fini(&c);
    return rc;
}

/* ---- the rest ------------------------------------------------------- */

static int cmd_version(struct opts *o)
{
    (void)o;
    printf("%s %s\n", prog, M2K_VERSION);
    return 0;
}

static int cmd_help(struct opts *o)
{
    (void)o;
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const struct cmd *cmd = &cmds[0]; /* run */
    struct opts o = {0};
    int first = 1;

    if (argc > 1 && argv[1][0] != '-') {
        for (cmd = cmds; cmd < cmds + NCMDS && strcmp(cmd->name, argv[1]);
             cmd++)
            ;
        if (cmd == cmds + NCMDS)
            return usage_error("unknown command \"%s\"", argv[1]);
        first = 2;
    } else if (argc > 1 && !strcmp(argv[1], "--version")) {
        return cmd_version(&o);
    }
    if (!(o.pos = calloc((size_t)argc, sizeof *o.pos)))
        return 1;
    int rc = parse_opts(argc - first, argv + first, &o);
    if (rc == 0 && cmd->fn != cmd_reassemble && (o.brokers || o.id))
        rc = usage_error("--brokers and --id are reassemble's");
    if (rc == 0)
        rc = cmd->fn(&o);
    else if (rc < 0)
        rc = 0; /* --help */
    free(o.pos);
    return rc;
}
