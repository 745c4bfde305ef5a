/*
 * kreide-messaging — the messaging daemon.
 *
 *   kreide-messaging           apply pending migrations (unless disabled), then serve
 *   kreide-messaging migrate   apply pending migrations and exit (the Helm Job)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kr_config.h"
#include "kr_log.h"
#include "kr_migrate.h"
#include "kr_pg.h"
#include "kr_redis.h"
#include "messaging.h"

#define VERSION "0.1.0"
#define DRAIN_LIMIT_S 20

typedef struct {
    const char *database_url;
    const char *internal_keys;
    const char *listen;
    const char *migrations_dir;
    const char *redis_url; /* NULL: no realtime announcements, no roster events */
    const char *identity_url;
    int workers;
    bool migrate_on_start;
    int64_t identity_timeout_ms;
    int reconcile_s;
    int sweep_s;
} settings;

/* `migrate_only` needs the database and nothing else. */
static int read_settings(settings *s, kr_config *cfg, bool migrate_only)
{
    kr_log_level level = KR_LOG_INFO;
    const char *lvl = kr_config_str(cfg, "KREIDE_LOG_LEVEL", "info", 0);
    if (!kr_log_level_parse(lvl, &level))
        kr_config_fail(cfg, "KREIDE_LOG_LEVEL", "expected debug, info, warn or error, got '%s'", lvl);
    kr_log_init("messaging", level);
    s->database_url = kr_config_str(cfg, "KREIDE_DATABASE_URL", NULL, KR_CFG_REQUIRED | KR_CFG_SECRET);
    s->internal_keys = kr_config_str(cfg, "KREIDE_INTERNAL_KEYS", NULL, (migrate_only ? 0 : KR_CFG_REQUIRED) | KR_CFG_SECRET);
    s->listen = kr_config_str(cfg, "KREIDE_MESSAGING_LISTEN", "tcp://127.0.0.1:7102", 0);
    s->migrations_dir = kr_config_str(cfg, "KREIDE_MIGRATIONS_DIR", "/usr/share/kreide/migrations/messaging", 0);
    s->redis_url = kr_config_str(cfg, "KREIDE_REDIS_URL", NULL, KR_CFG_SECRET);
    s->identity_url = kr_config_str(cfg, "KREIDE_IDENTITY_URL", "tcp://127.0.0.1:7101", 0);
    s->workers = (int)kr_config_int(cfg, "KREIDE_WORKERS", 4, 1, 256);
    s->migrate_on_start = kr_config_bool(cfg, "KREIDE_MIGRATE_ON_START", true);
    s->identity_timeout_ms = kr_config_int(cfg, "KREIDE_RPC_TIMEOUT_MS", 5000, 50, 120000);
    s->reconcile_s = (int)kr_config_int(cfg, "KREIDE_MESSAGING_RECONCILE_S", 900, 1, 7 * 86400);
    s->sweep_s = (int)kr_config_int(cfg, "KREIDE_MESSAGING_SWEEP_S", 3600, 1, 7 * 86400);
    if (s->redis_url != NULL && s->redis_url[0] == '\0')
        s->redis_url = NULL;
    return kr_config_check(cfg, "kreide-messaging") == 0 ? 0 : -1;
}

static int migrate(const settings *s)
{
    kr_pg *pg = kr_pg_new(s->database_url);
    kr_pg_set_application_name(pg, "kreide-messaging-migrate");
    kr_migrate_report report = {0};
    char err[512];
    int rv = kr_migrate_run(pg, "messaging", s->migrations_dir, &report, err, sizeof(err));
    kr_pg_free(pg);
    if (rv != 0) {
        kr_log(KR_LOG_ERROR, "migration failed", "error", err, NULL);
        return -1;
    }
    char applied[16], version[16];
    snprintf(applied, sizeof(applied), "%d", report.applied);
    snprintf(version, sizeof(version), "%d", report.current_version);
    kr_log(KR_LOG_INFO, "schema up to date", "schema", "messaging", "applied", applied, "version", version, NULL);
    return 0;
}

/* Serves until SIGTERM/SIGINT; returns the exit status. */
/* Health/Check: ready only with a connection to identity. */
static bool identity_ready(void *app, const char **why)
{
    const msg_app *a = app;
    if (msg_identity_connected(a->identity))
        return true;
    *why = "messaging cannot reach the identity service";
    return false;
}

static int serve(const settings *s)
{
    kr_keyring *keys = NULL;
    char err[512];
    if (kr_keyring_parse(s->internal_keys, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreide-messaging: KREIDE_INTERNAL_KEYS: %s\n", err);
        return 1;
    }
    if (s->redis_url != NULL) {
        kr_redis_target target;
        if (kr_redis_url_parse(s->redis_url, &target, err, sizeof(err)) != 0) {
            fprintf(stderr, "kreide-messaging: KREIDE_REDIS_URL: %s\n", err);
            kr_keyring_free(keys);
            return 1;
        }
    }
    msg_identity *identity = msg_identity_new(s->identity_url, keys, s->identity_timeout_ms, err, sizeof(err));
    if (identity == NULL) {
        fprintf(stderr, "kreide-messaging: KREIDE_IDENTITY_URL: %s\n", err);
        kr_keyring_free(keys);
        return 1;
    }
    if (s->migrate_on_start && migrate(s) != 0) {
        msg_identity_free(identity);
        kr_keyring_free(keys);
        return 1;
    }
    msg_app app = {.events = msg_events_new(s->redis_url), .identity = identity};
    app.batch = msg_batch_new(app.events, (size_t)s->workers);
    if (msg_events_enabled(app.events))
        kr_log(KR_LOG_INFO, "events announced", "channel", MSG_EVENTS_CHANNEL, NULL);
    else
        kr_log(KR_LOG_WARN, "events not announced and roster events not followed: KREIDE_REDIS_URL is not set", NULL);
    size_t nmethods = msg_room_nmethods + msg_message_nmethods + msg_moderation_nmethods;
    kr_rpc_method *methods = calloc(nmethods, sizeof(*methods));
    if (methods == NULL)
        abort();
    memcpy(methods, msg_room_methods, msg_room_nmethods * sizeof(*methods));
    memcpy(methods + msg_room_nmethods, msg_message_methods, msg_message_nmethods * sizeof(*methods));
    memcpy(methods + msg_room_nmethods + msg_message_nmethods, msg_moderation_methods, msg_moderation_nmethods * sizeof(*methods));
    msg_sync_opts sync_opts = {.redis_url = s->redis_url,
                               .database_url = s->database_url,
                               .reconcile_interval_s = s->reconcile_s,
                               .sweep_interval_s = s->sweep_s};
    app.sync = msg_sync_start(&sync_opts, identity, app.events);
    kr_rpc_server_opts opts = {
        .service = &kreide__messaging__messaging__descriptor,
        .methods = methods,
        .nmethods = nmethods,
        .listen_url = s->listen,
        .workers = s->workers,
        .database_url = s->database_url,
        .keys = keys,
        .app = &app,
        .version = VERSION,
        .ready = identity_ready,
    };
    kr_rpc_server *srv;
    if (kr_rpc_server_start(&opts, &srv, err, sizeof(err)) != 0) {
        kr_log(KR_LOG_ERROR, "cannot start", "error", err, NULL);
        msg_sync_stop(app.sync);
        msg_batch_free(app.batch);
        msg_events_free(app.events);
        msg_identity_free(identity);
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
    msg_sync_stop(app.sync);
    msg_batch_free(app.batch);
    msg_events_free(app.events);
    msg_identity_free(identity);
    free(methods);
    kr_keyring_free(keys);
    kr_log(KR_LOG_INFO, "stopped", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    bool migrate_only = argc > 1 && strcmp(argv[1], "migrate") == 0;
    if (argc > 2 || (argc == 2 && !migrate_only)) {
        fprintf(stderr, "usage: kreide-messaging [migrate]\n");
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
