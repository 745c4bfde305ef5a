/*
 * kreidectl — the map of the program.
 *
 *   main.c      dispatch, usage, the environment
 *   options.c   the global options and the context they fill
 *   http.c      the JSON admin API over HTTP (libcurl), error reporting
 *   commands.c  one function per API command (school, carrier, user, ...)
 *   output.c    the short human-readable line per object
 *   keys.c      keygen and token: the install's signing key
 *   rpc.c       rpc: one RPC straight to a daemon's socket
 *
 * Exit status: 0 success, 1 usage or configuration, 3 the API refused
 * (its error code and message are printed), 4 the gateway could not be
 * reached.
 */
#ifndef KREIDECTL_H
#define KREIDECTL_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CTL_WUR __attribute__((warn_unused_result))

/* ------------------------------------------------------------ exit codes */

enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_USAGE = 1,   /* bad arguments, missing configuration, unreadable keys */
    CTL_EXIT_API = 3,     /* the gateway answered with an HTTP error */
    CTL_EXIT_CONNECT = 4, /* no answer: refused, unresolvable, timed out, TLS failure */
};

/* ------------------------------------------------------ global options */

/* The settings every API command shares; filled by main.c from the global
 * options and the environment. */
typedef struct {
    char url[1024];     /* base URL of the gateway, no trailing slash */
    const char *token;  /* bearer token to send, or NULL (no Authorization) */
    const char *keys;   /* a key directory to mint an operator token from, or NULL */
    bool json;          /* print the API's JSON replies as they are */
    unsigned page_size; /* items per page of a list, 1..500; 0 means 500 */
    char *_minted;      /* the token minted from `keys` (malloc), once needed */
    void *_curl;        /* the libcurl handle, kept so that pages reuse the connection */
} ctl_ctx;

/* getopt_long values of the global options, accepted before the command
 * and among its own options. */
enum {
    CTL_OPT_URL = 0x1000,
    CTL_OPT_TOKEN,
    CTL_OPT_KEYS,
    CTL_OPT_JSON,
    CTL_OPT_PAGE_SIZE,
};

/* The global options as `struct option` entries, to put at the end of every
 * command's table (before the terminating zero entry). */
/* clang-format off */
#define CTL_GLOBAL_OPTIONS                                                                                                         \
    {"url", required_argument, NULL, CTL_OPT_URL},                                                                                 \
    {"token", required_argument, NULL, CTL_OPT_TOKEN},                                                                             \
    {"keys", required_argument, NULL, CTL_OPT_KEYS},                                                                               \
    {"json", no_argument, NULL, CTL_OPT_JSON},                                                                                     \
    {"page-size", required_argument, NULL, CTL_OPT_PAGE_SIZE}
/* clang-format on */

/* Applies one global option `c` with its argument to `ctx`. Returns -1
 * when `c` is not a global option, CTL_EXIT_OK when it was applied, and
 * CTL_EXIT_USAGE (after saying why) when its argument is not valid. */
int ctl_global_option(ctl_ctx *ctx, int c, const char *arg) CTL_WUR;

/* Sets ctx->url from `url`, dropping trailing slashes. Returns CTL_EXIT_USAGE
 * (with a message on stderr) when it is not an http:// or https:// URL. */
int ctl_set_url(ctl_ctx *ctx, const char *url) CTL_WUR;

/* Frees what `ctx` owns. */
void ctl_ctx_clear(ctl_ctx *ctx);

/* ------------------------------------------------------------- keys.c */

/* Signs a bearer token with the newest key in `keys_dir`. `roles` and
 * `schools` are JSON arrays (borrowed) for the "roles" and "schools"
 * claims; `sub` may be NULL for a fresh UUIDv7. On success *out is a
 * malloc'd token the caller frees; on failure `err` says why. */
int ctl_mint_token(const char *keys_dir, const char *issuer, const char *audience, const char *sub, json_t *roles, json_t *schools,
                   const char *scope, long ttl, char **out, char *err, size_t errlen) CTL_WUR;

/* `kreidectl keygen DIR [KID]`; returns the exit status. */
int ctl_cmd_keygen(int argc, char **argv);

/* `kreidectl token ...`; returns the exit status. */
int ctl_cmd_token(int argc, char **argv);

/* -------------------------------------------------------------- rpc.c */

/* `kreidectl rpc URL METHOD [JSON] ...`; returns the exit status. */
int ctl_cmd_rpc(int argc, char **argv);

/* ------------------------------------------------------------- http.c */

/* One HTTP exchange with the gateway. */
typedef struct {
    long status;     /* HTTP status; 0 when no answer came */
    char *body;      /* the reply body, NUL-terminated (malloc), or NULL */
    size_t len;      /* bytes in `body` */
    json_t *json;    /* the body parsed as JSON, or NULL when it is not JSON */
    char error[256]; /* why no answer came, when status is 0 */
} ctl_reply;

/* Largest reply body kreidectl accepts. */
#define CTL_MAX_REPLY (16u << 20)

/* Percent-encodes `in` for a path segment or a query value (RFC 3986
 * unreserved characters stay as they are). Returns the length written, or -1
 * when `out` (of `outlen` bytes, NUL included) is too small. */
long ctl_escape(const char *in, char *out, size_t outlen) CTL_WUR;

/* Sends `method` `path` (starting with "/api/") to ctx->url with `body` (a
 * JSON object, borrowed, or NULL) and the caller's bearer token, minting one
 * from ctx->keys first when needed. Fills `reply` (clear it with
 * ctl_reply_clear) and returns CTL_EXIT_OK when an answer came, whatever its
 * status, CTL_EXIT_CONNECT when none did, CTL_EXIT_USAGE when no token can
 * be minted. */
int ctl_http(ctl_ctx *ctx, const char *method, const char *path, json_t *body, ctl_reply *reply) CTL_WUR;

/* ctl_http, then: on a 2xx reply with a JSON body returns CTL_EXIT_OK;
 * otherwise prints why to stderr (the API's error code and message, or the
 * connection failure; with --json the error body also goes to stdout) and
 * returns the exit status to end with. */
int ctl_call(ctl_ctx *ctx, const char *method, const char *path, json_t *body, ctl_reply *reply) CTL_WUR;

/* Releases what `reply` holds. */
void ctl_reply_clear(ctl_reply *reply);

/* Writes the one-line report of an HTTP error reply to `f`: the API's
 * message, code, field and status, plus a hint when the gateway has no such
 * route at all. */
void ctl_report_error(FILE *f, const char *method, const char *path, const ctl_reply *reply);

/* ----------------------------------------------------------- output.c */

/* The kinds of object the human output knows. */
typedef enum {
    CTL_OBJ_SCHOOL,
    CTL_OBJ_CARRIER,
    CTL_OBJ_USER,
    CTL_OBJ_GROUP,
    CTL_OBJ_MEMBERSHIP,
    CTL_OBJ_MEMBER,
    CTL_OBJ_GUARDIANSHIP,
    CTL_OBJ_PERSON,
    CTL_OBJ_CODE,
    CTL_OBJ_CLIENT,
    CTL_OBJ_CONTEXT,
} ctl_obj;

/* Writes one line (two for a client with a secret) describing `o`, a JSON
 * object as the API returns it, e.g.
 *   school 0192… "Kita Sonnenschein" KITA kennung 12345 */
void ctl_print_object(FILE *f, ctl_obj kind, const json_t *o);

/* Maps a command-line word to the API's enum name through `table` (pairs
 * of word and enum name, NULL-terminated), without regard to case; also
 * accepts the enum name itself. NULL when the word is not in the table. */
const char *ctl_enum_name(const char *const *table, const char *word);

/* Word tables for ctl_enum_name. */
extern const char *const ctl_school_kinds[];
extern const char *const ctl_person_roles[];
extern const char *const ctl_group_kinds[];
extern const char *const ctl_code_purposes[];
extern const char *const ctl_client_types[];

/* --------------------------------------------------------- commands.c */

/* An API command: `kreidectl NOUN VERB [options]`. */
typedef struct ctl_command ctl_command;
struct ctl_command {
    const char *noun;
    const char *verb;
    /* Runs the command; argv[0] is the verb, options follow. Returns the
     * exit status. */
    int (*run)(ctl_ctx *ctx, const ctl_command *self, int argc, char **argv);
    const char *usage; /* the options, for the usage text */
};

/* Prints `self`'s usage line to stderr and returns CTL_EXIT_USAGE. */
int ctl_command_usage(const ctl_command *self);

/* Every API command, ending with a zero entry. */
extern const ctl_command ctl_commands[];

#endif
