/*
 * kreidectl — the operators' command-line client of the JSON admin API.
 *
 *   kreidectl [--url URL] [--token TOKEN | --keys DIR] [--json] [--page-size N] NOUN VERB [options]
 *       One API call (or, for lists, every page of one). The gateway is at
 *       --url, else KREIDE_URL, else http://127.0.0.1:8080. The bearer token
 *       is --token, else one minted for an operator from the install's
 *       signing key in --keys DIR, else KREIDE_TOKEN, else one minted from
 *       KREIDE_JWT_KEYS_DIR; without any, requests go without a token. With
 *       --json the API's JSON reply is printed as it came; otherwise one
 *       short line per object. Lists are read page by page (--page-size
 *       items each, 500 unless given) to the end. Run without arguments for
 *       the commands.
 *
 *   kreidectl keygen [--alg ES256|RS256] [--if-missing] DIR [KID]
 *       Creates a signing key DIR/KID.pem readable only by its owner: a P-256
 *       key for ES256 (the default; KID defaults to the current date and
 *       time, e.g. k20261122064700) or an RSA-2048 key for RS256 (KID
 *       rsa20261122064700). The gateway loads every key in
 *       KREIDE_JWT_KEYS_DIR; the newest ES256 key signs, and the RSA key signs
 *       the ID tokens of clients registered for RS256. --if-missing does
 *       nothing when DIR already holds a private key of that algorithm.
 *
 *   kreidectl token [--sub ID] [--role ROLE]... [--school ID[:ROLE[+ROLE]]]...
 *                   [--scope "A B"] [--ttl SECONDS] [--keys DIR]
 *       Prints a bearer token signed with the gateway's key (read from
 *       --keys or KREIDE_JWT_KEYS_DIR), for operators who hold the key on a
 *       local install, e.g. `--role operator` to provision schools or
 *       `--role carrier_admin:<carrier id>` for a carrier's admin. Issuer and
 *       audience come from KREIDE_ISSUER / KREIDE_JWT_AUDIENCE as for the
 *       gateway.
 *
 *   kreidectl rpc URL METHOD [JSON] [--role ROLE]... [--user ID] [--service CLIENT_ID] [--no-seal]
 *       Sends one RPC straight to a daemon's socket, like the gateway would,
 *       and prints the reply: for operators debugging a service, and for the
 *       tests showing that a service refuses envelopes that are not sealed
 *       with the internal key (KREIDE_INTERNAL_KEYS). METHOD is
 *       "kreide.identity.Identity/GetSchool"; JSON is the input message.
 *       The caller is a person (USER) unless --service makes it a SERVICE
 *       caller with that client id (--service gateway: as the gateway).
 *
 * Exit status: 0 done, 1 usage or configuration, 3 the API refused (its
 * error code and message go to stderr), 4 the gateway could not be reached.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "kreidectl.h"

static int usage(void)
{
    fprintf(stderr, "usage: kreidectl [--url URL] [--token TOKEN | --keys DIR] [--json] [--page-size N] COMMAND [options]\n\n"
                    "commands of the admin API:\n");
    for (const ctl_command *c = ctl_commands; c->noun != NULL; c++)
        fprintf(stderr, "  %s %s %s\n", c->noun, c->verb, c->usage);
    fprintf(stderr, "\nkeys and debugging:\n"
                    "  keygen [--alg ES256|RS256] [--if-missing] DIR [KID]\n"
                    "  token [--sub ID] [--role ROLE]... [--school ID[:ROLE[+ROLE]]]... [--scope S] [--ttl SECONDS] [--keys DIR]\n"
                    "  rpc URL METHOD [JSON] [--role ROLE]... [--user ID] [--service CLIENT_ID] [--no-seal]\n\n"
                    "The gateway is --url, else $KREIDE_URL, else http://127.0.0.1:8080. The token is --token, or\n"
                    "one minted for an operator from the signing keys in --keys DIR (a local install: .run/jwt),\n"
                    "else $KREIDE_TOKEN, else one minted from $KREIDE_JWT_KEYS_DIR.\n"
                    "Exit status: 0 done, 1 usage or configuration, 3 the API refused, 4 no connection.\n");
    return CTL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    /* The older commands keep their own options. */
    if (strcmp(argv[1], "keygen") == 0)
        return ctl_cmd_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return ctl_cmd_token(argc - 1, argv + 1);
    if (strcmp(argv[1], "rpc") == 0)
        return ctl_cmd_rpc(argc - 1, argv + 1);

    ctl_ctx ctx = {0};
    const char *env_url = getenv("KREIDE_URL");
    if (ctl_set_url(&ctx, env_url && *env_url ? env_url : "http://127.0.0.1:8080") != CTL_EXIT_OK)
        return CTL_EXIT_USAGE;
    const char *env_token = getenv("KREIDE_TOKEN"), *env_keys = getenv("KREIDE_JWT_KEYS_DIR");
    if (env_token && *env_token)
        ctx.token = env_token;
    else if (env_keys && *env_keys)
        ctx.keys = env_keys;

    /* Global options before the command; "+" stops at the first operand. */
    static const struct option opts[] = {CTL_GLOBAL_OPTIONS, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        int g = ctl_global_option(&ctx, c, optarg);
        if (g < 0)
            return usage();
        if (g != CTL_EXIT_OK)
            return g;
    }
    if (argc - optind < 2)
        return usage();
    const char *noun = argv[optind], *verb = argv[optind + 1];
    const ctl_command *cmd = NULL;
    bool noun_known = false;
    for (const ctl_command *k = ctl_commands; k->noun != NULL; k++) {
        if (strcmp(k->noun, noun) == 0) {
            noun_known = true;
            if (strcmp(k->verb, verb) == 0)
                cmd = k;
        }
    }
    if (cmd == NULL) {
        fprintf(stderr, "kreidectl: no command '%s%s%s'\n", noun, noun_known ? " " : "", noun_known ? verb : "");
        return usage();
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "kreidectl: cannot start libcurl\n");
        return CTL_EXIT_USAGE;
    }
    int rc = cmd->run(&ctx, cmd, argc - optind - 1, argv + optind + 1);
    ctl_ctx_clear(&ctx);
    curl_global_cleanup();
    return rc;
}
