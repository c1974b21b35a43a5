/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coffer command: dispatch to subcommands, and the shared set-up of the
 * token and database from the environment. Secrets never come from argv:
 * the PIN is read from its configured source by p11.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/mcp.h"

#include "coffer/log.h"
#include "coffer/secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: coffer <command> [arguments]\n"
    "\n"
    "Through the API (cofferd), as the client certificate or bearer token given:\n"
    "  put ORG/PROJECT/NAME --type T --tier TIER (--key NAME... | --from-file NAME=PATH... |\n"
    "      --stdin) [--ttl D | --expires-at T] [--description S] [--grant G]...\n"
    "      [--expire-on-phase-end PHASE]  store a credential or a new version; values are\n"
    "                                  read from the terminal, files or stdin, never argv\n"
    "  get ORG/PROJECT/NAME            a credential's metadata (never its values)\n"
    "  list ORG/PROJECT                the credentials you may see\n"
    "  access ORG/PROJECT/NAME --purpose TEXT [--key NAME]\n"
    "                                  print the values (one raw with --key)\n"
    "  revoke ORG/PROJECT/NAME --reason TEXT\n"
    "  phase ORG/PROJECT PHASE         move a project to another phase\n"
    "  request create|list|show|fulfil|deny ...   the credential request flow\n"
    "  approve ORG/PROJECT/NAME --agent TYPE/INSTANCE --until T [--from T]\n"
    "  token create ORG --principal agent/T/I|admin/N [--ttl D] | token revoke ORG ID\n"
    "      --reason TEXT                bearer tokens\n"
    "  Each takes --addr URL, --cacert FILE, --cert FILE --client-key FILE or --token T\n"
    "  (else COFFER_ADDR, COFFER_CACERT, COFFER_CLIENT_CERT and COFFER_CLIENT_KEY, or\n"
    "  COFFER_TOKEN) and --json. Exit 0 done, 1 refused, 2 usage or trouble.\n"
    "  See docs/admin.md.\n"
    "  exec --purpose TEXT --env VAR=ORG/PROJECT/CREDENTIAL:KEY... [connection options]\n"
    "      -- COMMAND [ARG...]         run COMMAND (no shell) with each VAR set to a key's\n"
    "                                  value, in its environment only; one access per\n"
    "                                  credential; COFFER_* variables are not passed on.\n"
    "                                  Exit: COMMAND's, else 1 refused, 2 usage or trouble,\n"
    "                                  126/127 COMMAND not runnable. See docs/agents.md.\n"
    "  mcp [--org ORG] [--project PROJECT] [connection options]\n"
    "                                  a Model Context Protocol server on stdin/stdout for\n"
    "                                  agent runtimes: list, request and use credentials;\n"
    "                                  never returns a value. See docs/agents.md.\n"
    "\n"
    "On the host that reaches the token and the database:\n"
    "  demo [DIR]                      provision the embedded default in DIR and show the\n"
    "                                  envelope, lazy rotation and tamper detection\n"
    "  org create NAME                 create an org and its first org key\n"
    "  org add-project ORG NAME        add a project to an org\n"
    "  policy validate FILE...         check policy files (docs/policy.md); exit 1 on problems\n"
    "  policy apply FILE...            make the files the policy in force, printing changes\n"
    "  policy show ORG                 print the policy in force as YAML\n"
    "  project phase ORG/PROJECT PHASE move a project to another phase, in the database directly\n"
    "  keys status [ORG]               key versions, KCVs, states and rotation progress\n"
    "  keys rotate-org ORG             make a new org key version current\n"
    "  keys rotate-mk                  make a new master key version current\n"
    "  keys sweep [--batch N]          rewrap every row still under an older version\n"
    "  keys retire-org ORG VERSION     retire an org key version that wraps nothing\n"
    "  keys retire-mk VERSION          retire a master key version that wraps nothing\n"
    "  keys destroy-mk VERSION         destroy a retired master key version in the token\n"
    "  keys destroy-org ORG VERSION    destroy a retired org key version (its wrapped key\n"
    "                                  is overwritten; backups keep it until its MK goes)\n"
    "  keys shred-org ORG              crypto-shred an org (asks for its name on stdin): its\n"
    "                                  credentials become unreadable, backups included\n"
    "  keys create-audit-key           create the next audit signing key (ECDSA P-256) in the\n"
    "                                  token, record it as current, print its fingerprint\n"
    "\n"
    "Security officers, on the host that reaches the token (docs/officers.md):\n"
    "  ceremony init --quorum M --officer NAME...   the first ceremony: enrol officers, set\n"
    "                                  the quorum, create or record MK v1, the audit signing\n"
    "                                  key and the token MAC key\n"
    "  ceremony officer list           officers and the quorum\n"
    "  ceremony prepare KIND [ARGS] [--expires-in D]   write a plan for officers to approve:\n"
    "                                  officer-add NAME | officer-remove NAME | set-quorum M |\n"
    "                                  rotate-mk | retire-mk V | retire-org ORG V |\n"
    "                                  destroy-mk V | destroy-org ORG V | shred-org ORG\n"
    "                                  (D: 30m default, 24h max)\n"
    "  ceremony approve PLAN --officer NAME --sha256 HEX   approve with a passphrase\n"
    "  ceremony run PLAN               run an approved plan; print the signed transcript\n"
    "  ceremony rotate-org-key ORG     an admin's org key rotation, with a transcript\n"
    "  ceremony show ID [--fingerprint HEX]   re-print a transcript and verify its signature\n"
    "  Passphrases are read with echo off, or one line each from stdin when it is not a\n"
    "  terminal.\n"
    "\n"
    "For auditors (as COFFER_AUDITOR_DSN; no token needed):\n"
    "  audit verify [--fingerprint HEX] check every event hash, the chain and every signature\n"
    "  audit verify --file EXPORT      verify an export offline\n"
    "  audit export [--since T] [--until T] [--org ORG] [--format jsonl|csv] [--output F]\n"
    "                                  events with the checkpoint proofs that verify them\n"
    "  audit prune --through-checkpoint N --export FILE   (as COFFER_DATABASE_OWNER) remove\n"
    "                                  exported events; the checkpoints stay\n"
    "\n"
    "  db bootstrap DBNAME             create roles and database (superuser conninfo in\n"
    "                                  COFFER_DATABASE_SUPERUSER)\n"
    "  db migrate                      apply migrations (conninfo in COFFER_DATABASE_OWNER)\n"
    "  version                         print the version\n"
    "\n"
    "The token and database come from COFFER_PKCS11_MODULE, COFFER_TOKEN_URI,\n"
    "COFFER_PIN_SOURCE and COFFER_DATABASE; `source DIR/env.sh` sets them for the\n"
    "embedded default. See docs/operators.md.\n";

/* The commands that are clients of the API (api_cmd.c). */
static const char *const api_commands[] = {"put",   "get",     "list",    "access", "revoke",
                                           "phase", "request", "approve", "token"};

int cli_fail(const char *what, enum coffer_err r)
{
    const char *d = coffer_err_detail();

    fprintf(stderr, "coffer: %s: %s%s%s\n", what, coffer_err_str(r), d[0] != '\0' ? ": " : "", d);
    return 1;
}

enum coffer_err cli_parse_version(const char *s, uint32_t *out)
{
    char *end = NULL;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || errno != 0 || *end != '\0' || v > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "'%s' is not a version (1 to %d)", s, INT32_MAX);
    }
    *out = (uint32_t)v;
    return COFFER_OK;
}

static const char *need_env(const char *name, enum coffer_err *r)
{
    const char *v = getenv(name);

    if ((v == NULL || v[0] == '\0') && *r == COFFER_OK) {
        *r = coffer_err_set(COFFER_E_CONFIG,
                            "%s is not set (source DIR/env.sh of the embedded "
                            "default, or see docs/operators.md)",
                            name);
    }
    return v;
}

enum coffer_err cli_open(struct cli_ctx *c)
{
    enum coffer_err r = COFFER_OK;

    memset(c, 0, sizeof(*c));
    c->p11cfg.module = need_env("COFFER_PKCS11_MODULE", &r);
    c->p11cfg.token_uri = need_env("COFFER_TOKEN_URI", &r);
    c->p11cfg.pin_source = need_env("COFFER_PIN_SOURCE", &r);
    c->db_app = need_env("COFFER_DATABASE", &r);
    c->p11cfg.pool_size = 2;
    if (r != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_open(&c->p11cfg, &c->p11)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_open(c->db_app, &c->st)) != COFFER_OK ||
        (r = coffer_keys_new(c->p11, &c->k)) != COFFER_OK) {
        cli_close(c);
        return r;
    }
    return COFFER_OK;
}

enum coffer_err cli_open_db(struct cli_ctx *c)
{
    enum coffer_err r = COFFER_OK;

    memset(c, 0, sizeof(*c));
    c->db_app = need_env("COFFER_DATABASE", &r);
    if (r != COFFER_OK) {
        return r;
    }
    return coffer_store_open(c->db_app, &c->st);
}

void cli_close(struct cli_ctx *c)
{
    coffer_keys_free(&c->k);
    coffer_store_close(&c->st);
    coffer_p11_close(&c->p11);
}

int main(int argc, char **argv)
{
    enum coffer_err r;

    if ((r = coffer_wipe_libraries()) != COFFER_OK || (r = coffer_harden_process()) != COFFER_OK) {
        return cli_fail("hardening the process", r);
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("coffer %s\n", COFFER_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "demo") == 0) {
        return cli_demo(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "keys") == 0) {
        return cli_keys(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "org") == 0) {
        return cli_org(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "policy") == 0) {
        return cli_policy(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "project") == 0) {
        return cli_project(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "db") == 0) {
        return cli_db(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "audit") == 0) {
        return cli_audit(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "ceremony") == 0) {
        return cli_ceremony(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "exec") == 0) {
        return cli_exec(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "mcp") == 0) {
        return cli_mcp(argc - 1, argv + 1);
    }
    for (size_t i = 0; i < sizeof(api_commands) / sizeof(api_commands[0]); i++) {
        if (strcmp(argv[1], api_commands[i]) == 0) {
            return cli_api(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "coffer: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
