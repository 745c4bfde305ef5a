/*
 * kreide-identity — the identity daemon.
 *
 *   kreide-identity           apply pending migrations (unless disabled), then serve
 *   kreide-identity migrate   apply pending migrations and exit (the Helm Job)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codes.h"
#include "identity.h"
#include "kr_config.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_migrate.h"
#include "kr_pg.h"
#include "kr_redis.h"

#define VERSION "0.1.0"
#define DRAIN_LIMIT_S 20

typedef struct {
    const char *database_url;
    const char *internal_keys;
    const char *listen;
    const char *migrations_dir;
    const char *redis_url; /* NULL: roster events are not published */
    int workers;
    bool migrate_on_start;
    /* Credentials (docs/credentials.md); unused by `migrate`. */
    const char *code_pepper;
    const char *denylist_path;
    ident_argon2_params argon2;
    ident_throttle_params throttle;
    int64_t enrollment_code_ttl_s;
    int64_t reset_code_ttl_s;
    /* The OpenID Connect flow's lifetimes (docs/oidc.md). */
    int64_t sso_session_ttl_s;
    int64_t auth_code_ttl_s;
    int64_t access_token_ttl_s;
    int64_t refresh_token_ttl_s;
} settings;

/* The credential settings; only a serving daemon needs them. */
static void read_credential_settings(settings *s, kr_config *cfg)
{
    s->code_pepper = kr_config_str(cfg, "KREIDE_CODE_PEPPER", NULL, KR_CFG_REQUIRED | KR_CFG_SECRET);
    if (s->code_pepper != NULL && s->code_pepper[0] != '\0' && strlen(s->code_pepper) < IDENT_CODE_PEPPER_MIN)
        kr_config_fail(cfg, "KREIDE_CODE_PEPPER", "must be at least %d bytes (e.g. 32 random bytes, base64)",
                       IDENT_CODE_PEPPER_MIN);
    s->denylist_path = kr_config_str(cfg, "KREIDE_PASSWORD_DENYLIST", IDENT_DENYLIST_DEFAULT_PATH, 0);
    ident_argon2_params a = ident_argon2_defaults();
    a.memory_kib = (uint32_t)kr_config_int(cfg, "KREIDE_ARGON2_MEMORY_KIB", a.memory_kib, IDENT_ARGON2_MIN_MEMORY_KIB,
                                           IDENT_ARGON2_MAX_MEMORY_KIB);
    a.iterations = (uint32_t)kr_config_int(cfg, "KREIDE_ARGON2_ITERATIONS", a.iterations, 1, IDENT_ARGON2_MAX_ITERATIONS);
    a.lanes = (uint32_t)kr_config_int(cfg, "KREIDE_ARGON2_LANES", a.lanes, 1, IDENT_ARGON2_MAX_LANES);
    if (!ident_argon2_params_valid(&a))
        kr_config_fail(cfg, "KREIDE_ARGON2_MEMORY_KIB", "must hold at least 8 KiB per lane");
    s->argon2 = a;
    ident_throttle_params t = ident_throttle_defaults();
    const int64_t day = 24 * 3600;
    t.account_free = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ACCOUNT_FREE", t.account_free, 1, 1000);
    t.account_base_s = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ACCOUNT_BASE_S", t.account_base_s, 1, day);
    t.account_cap_s = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ACCOUNT_CAP_S", t.account_cap_s, 1, day);
    t.account_forget_s = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ACCOUNT_FORGET_S", t.account_forget_s, 1, day);
    t.addr_limit = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ADDR_LIMIT", t.addr_limit, 1, 1000000);
    t.addr_window_s = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ADDR_WINDOW_S", t.addr_window_s, 1, day);
    t.addr_block_s = (unsigned)kr_config_int(cfg, "KREIDE_THROTTLE_ADDR_BLOCK_S", t.addr_block_s, 1, day);
    if (!ident_throttle_params_valid(&t))
        kr_config_fail(cfg, "KREIDE_THROTTLE_ACCOUNT_CAP_S", "must not be below KREIDE_THROTTLE_ACCOUNT_BASE_S");
    s->throttle = t;
    s->enrollment_code_ttl_s = 3600 * kr_config_int(cfg, "KREIDE_CODE_TTL_HOURS", 72, 1, 24 * 90);
    s->reset_code_ttl_s = 3600 * kr_config_int(cfg, "KREIDE_RESET_CODE_TTL_HOURS", 24, 1, 24 * 90);
    /* The flow's lifetimes. The access-token one is the gateway's variable
     * with the gateway's bounds: identity records the expiry it signs. */
    s->sso_session_ttl_s = kr_config_int(cfg, "KREIDE_SSO_SESSION_TTL", IDENT_SSO_SESSION_TTL_DEFAULT, 300, 30 * day);
    s->auth_code_ttl_s = kr_config_int(cfg, "KREIDE_AUTH_CODE_TTL", IDENT_AUTH_CODE_TTL_DEFAULT, 10, 600);
    s->access_token_ttl_s = kr_config_int(cfg, "KREIDE_ACCESS_TOKEN_TTL", IDENT_ACCESS_TOKEN_TTL_DEFAULT, 60, day);
    s->refresh_token_ttl_s = kr_config_int(cfg, "KREIDE_REFRESH_TOKEN_TTL", IDENT_REFRESH_TOKEN_TTL_DEFAULT, 3600, 365 * day);
    if (s->refresh_token_ttl_s <= s->access_token_ttl_s)
        kr_config_fail(cfg, "KREIDE_REFRESH_TOKEN_TTL", "must be longer than KREIDE_ACCESS_TOKEN_TTL (%lld s)",
                       (long long)s->access_token_ttl_s);
}

/* `migrate_only` needs the database and nothing else: the migration Job
 * runs before the daemon's other secrets exist. */
static int read_settings(settings *s, kr_config *cfg, bool migrate_only)
{
    kr_log_level level = KR_LOG_INFO;
    const char *lvl = kr_config_str(cfg, "KREIDE_LOG_LEVEL", "info", 0);
    if (!kr_log_level_parse(lvl, &level))
        kr_config_fail(cfg, "KREIDE_LOG_LEVEL", "expected debug, info, warn or error, got '%s'", lvl);
    kr_log_init("identity", level);
    s->database_url = kr_config_str(cfg, "KREIDE_DATABASE_URL", NULL, KR_CFG_REQUIRED | KR_CFG_SECRET);
    s->internal_keys = kr_config_str(cfg, "KREIDE_INTERNAL_KEYS", NULL, (migrate_only ? 0 : KR_CFG_REQUIRED) | KR_CFG_SECRET);
    s->listen = kr_config_str(cfg, "KREIDE_IDENTITY_LISTEN", "tcp://127.0.0.1:7101", 0);
    s->migrations_dir = kr_config_str(cfg, "KREIDE_MIGRATIONS_DIR", "/usr/share/kreide/migrations/identity", 0);
    s->redis_url = kr_config_str(cfg, "KREIDE_REDIS_URL", NULL, KR_CFG_SECRET);
    s->workers = (int)kr_config_int(cfg, "KREIDE_WORKERS", 4, 1, 256);
    s->migrate_on_start = kr_config_bool(cfg, "KREIDE_MIGRATE_ON_START", true);
    if (!migrate_only)
        read_credential_settings(s, cfg);
    return kr_config_check(cfg, "kreide-identity") == 0 ? 0 : -1;
}

static int migrate(const settings *s)
{
    kr_pg *pg = kr_pg_new(s->database_url);
    kr_pg_set_application_name(pg, "kreide-identity-migrate");
    kr_migrate_report report = {0};
    char err[512];
    int rv = kr_migrate_run(pg, "identity", s->migrations_dir, &report, err, sizeof(err));
    kr_pg_free(pg);
    if (rv != 0) {
        kr_log(KR_LOG_ERROR, "migration failed", "error", err, NULL);
        return -1;
    }
    char applied[16], version[16];
    snprintf(applied, sizeof(applied), "%d", report.applied);
    snprintf(version, sizeof(version), "%d", report.current_version);
    kr_log(KR_LOG_INFO, "schema up to date", "schema", "identity", "applied", applied, "version", version, NULL);
    return 0;
}

/* Everything the credential RPCs share, loaded once before the workers
 * start. Returns -1 with the reason on stderr. */
static int credentials_setup(const settings *s, ident_app *app, ident_denylist **dl, char *dummy, size_t dummylen)
{
    char err[512];
    if (ident_denylist_load(s->denylist_path, dl, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreide-identity: KREIDE_PASSWORD_DENYLIST: %s\n", err);
        return -1;
    }
    char sizebuf[24];
    snprintf(sizebuf, sizeof(sizebuf), "%zu", ident_denylist_size(*dl));
    kr_log(KR_LOG_INFO, "password deny-list loaded", "path", s->denylist_path, "entries", sizebuf, NULL);
    /* A hash of a random password: verified for unknown user names so they
     * cost the same time as real ones. */
    uint8_t random[24];
    kr_random_bytes(random, sizeof(random));
    char throwaway[2 * sizeof(random) + 1];
    for (size_t i = 0; i < sizeof(random); i++)
        snprintf(throwaway + 2 * i, 3, "%02x", random[i]);
    int rc = ident_password_hash(&s->argon2, throwaway, strlen(throwaway), dummy, dummylen);
    if (rc != IDENT_PW_OK) {
        fprintf(stderr, "kreide-identity: argon2id: %s\n", ident_pw_strerror(rc));
        ident_denylist_free(*dl);
        *dl = NULL;
        return -1;
    }
    app->denylist = *dl;
    app->code_pepper = (const uint8_t *)s->code_pepper;
    app->code_pepper_len = strlen(s->code_pepper);
    app->argon2 = s->argon2;
    app->throttle = s->throttle;
    app->enrollment_code_ttl_s = s->enrollment_code_ttl_s;
    app->reset_code_ttl_s = s->reset_code_ttl_s;
    app->dummy_hash = dummy;
    app->sso_session_ttl_s = s->sso_session_ttl_s;
    app->auth_code_ttl_s = s->auth_code_ttl_s;
    app->access_token_ttl_s = s->access_token_ttl_s;
    app->refresh_token_ttl_s = s->refresh_token_ttl_s;
    if (s->redis_url != NULL && s->redis_url[0] != '\0')
        app->redis = ident_redis_pool_new(s->redis_url);
    else
        kr_log(KR_LOG_WARN, "sign-in and enrollment refused: KREIDE_REDIS_URL is not set, so guessing cannot be throttled", NULL);
    return 0;
}

/* Serves until SIGTERM/SIGINT; returns the exit status. */
static int serve(const settings *s)
{
    kr_keyring *keys = NULL;
    char err[512];
    if (kr_keyring_parse(s->internal_keys, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreide-identity: KREIDE_INTERNAL_KEYS: %s\n", err);
        return 1;
    }
    if (s->migrate_on_start && migrate(s) != 0) {
        kr_keyring_free(keys);
        return 1;
    }
    if (s->redis_url != NULL && s->redis_url[0] != '\0') {
        kr_redis_target target;
        if (kr_redis_url_parse(s->redis_url, &target, err, sizeof(err)) != 0) {
            fprintf(stderr, "kreide-identity: KREIDE_REDIS_URL: %s\n", err);
            kr_keyring_free(keys);
            return 1;
        }
    }
    ident_app app = {.events = NULL};
    ident_denylist *denylist = NULL;
    char dummy[IDENT_PASSWORD_HASH_MAX];
    if (credentials_setup(s, &app, &denylist, dummy, sizeof(dummy)) != 0) {
        kr_keyring_free(keys);
        return 1;
    }
    app.events = ident_events_new(s->redis_url, IDENT_EVENTS_CHANNEL);
    if (ident_events_enabled(app.events))
        kr_log(KR_LOG_INFO, "roster events on", "channel", IDENT_EVENTS_CHANNEL, NULL);
    else
        kr_log(KR_LOG_WARN, "roster events off: KREIDE_REDIS_URL is not set", NULL);
    /* The directory's methods, then the credentials', the flow's, TOTP's. */
    const struct {
        const kr_rpc_method *m;
        size_t n;
    } tables[] = {
        {ident_methods, ident_nmethods},
        {ident_credential_methods, ident_credential_nmethods},
        {ident_flow_methods, ident_flow_nmethods},
        {ident_totp_methods, ident_totp_nmethods},
    };
    size_t nmethods = 0;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        nmethods += tables[i].n;
    kr_rpc_method *methods = calloc(nmethods, sizeof(*methods));
    if (methods == NULL)
        abort();
    for (size_t i = 0, at = 0; i < sizeof(tables) / sizeof(tables[0]); at += tables[i].n, i++)
        memcpy(methods + at, tables[i].m, tables[i].n * sizeof(*methods));
    kr_rpc_server_opts opts = {
        .service = &kreide__identity__identity__descriptor,
        .methods = methods,
        .nmethods = nmethods,
        .listen_url = s->listen,
        .workers = s->workers,
        .database_url = s->database_url,
        .keys = keys,
        .app = &app,
        .version = VERSION,
    };
    kr_rpc_server *srv;
    if (kr_rpc_server_start(&opts, &srv, err, sizeof(err)) != 0) {
        kr_log(KR_LOG_ERROR, "cannot start", "error", err, NULL);
        ident_events_free(app.events);
        ident_redis_pool_free(app.redis);
        ident_denylist_free(denylist);
        free(methods);
        kr_keyring_free(keys);
        return 1;
    }
    kr_log(KR_LOG_INFO, "serving", "listen", s->listen, "version", VERSION, NULL);
    int sig = kr_rpc_wait_signal();
    kr_log(KR_LOG_INFO, "draining", "signal", sig == 2 ? "SIGINT" : "SIGTERM", NULL);
    /* nng 1.5 can hang closing a connection on which a message is arriving
     * (see kr_rpc_server_drain): a drain that takes too long ends by SIGALRM. */
    alarm(DRAIN_LIMIT_S);
    kr_rpc_server_drain(srv);
    ident_events_free(app.events);
    ident_redis_pool_free(app.redis);
    ident_denylist_free(denylist);
    free(methods);
    kr_keyring_free(keys);
    kr_log(KR_LOG_INFO, "stopped", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    bool migrate_only = argc > 1 && strcmp(argv[1], "migrate") == 0;
    if (argc > 2 || (argc == 2 && !migrate_only)) {
        fprintf(stderr, "usage: kreide-identity [migrate]\n");
        return 2;
    }
    kr_rpc_block_signals();
    kr_config *cfg = kr_config_new();
    settings s;
    int rc;
    if (read_settings(&s, cfg, migrate_only) != 0)
        rc = 1;
    else if (migrate_only)
        rc = migrate(&s) == 0 ? 0 : 1;
    else
        rc = serve(&s);
    kr_config_free(cfg);
    return rc;
}
