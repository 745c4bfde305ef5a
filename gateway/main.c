/*
 * kreide-gateway — the HTTP front of Kreide.
 *
 * Configuration comes from the environment (see the README's table). Each
 * thread runs its own h2o event loop on its own SO_REUSEPORT socket; the main
 * thread only waits for SIGTERM/SIGINT and then asks every loop to drain.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway.h"
#include "static.h"
#include "identity.pb-c.h"
#include "messaging.pb-c.h"
#include "kr_config.h"
#include "kr_log.h"
#include "oidc.h"

#define DRAIN_MS 5000

static h2o_globalconf_t config;
static struct addrinfo *listen_ai;
static gw_thread *threads;
static int nthreads;
static atomic_int stopping;

static gw_service services[] = {
    {"identity", &kreide__identity__identity__descriptor, NULL},
    {"messaging", &kreide__messaging__messaging__descriptor, NULL},
};

/* ------------------------------------------------------------ listening */

static int open_listener(char *err, size_t errlen)
{
    int fd = socket(listen_ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (bind(fd, listen_ai->ai_addr, listen_ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "cannot listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    gw_thread *t = listener->data;
    /* Accept a bounded batch per wakeup so one loop cannot starve on accepts. */
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            break;
        h2o_accept(&t->accept_ctx, sock);
    }
}

/* --------------------------------------------------------------- loops */

typedef struct {
    h2o_multithread_message_t super;
} stop_message;

static h2o_multithread_receiver_t *stop_receivers;

static void on_stop(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    gw_thread *t = &threads[receiver - stop_receivers];
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        free(m);
    }
    if (t->listener != NULL) {
        h2o_socket_read_stop(t->listener);
        h2o_socket_close(t->listener);
        t->listener = NULL;
    }
    h2o_context_request_shutdown(&t->super);
    gw_ws_shutdown(t);
}

static bool drained(gw_thread *t)
{
    return h2o_linklist_is_empty(&t->super.http1._conns) && h2o_linklist_is_empty(&t->super.http2._conns) &&
           kr_rpc_h2o_pending(t->rpc) == 0 && gw_ws_count(t) == 0;
}

static void *loop_main(void *arg)
{
    gw_thread *t = arg;
    h2o_evloop_t *loop = t->super.loop;
    while (!atomic_load(&stopping))
        h2o_evloop_run(loop, 1000);
    /* Draining: no new connections; finish what is in flight. */
    uint64_t deadline = h2o_now(loop) + DRAIN_MS;
    while (!drained(t) && h2o_now(loop) < deadline)
        h2o_evloop_run(loop, 50);
    return NULL;
}

static int setup_thread(gw_thread *t, int index, char *err, size_t errlen)
{
    h2o_context_init(&t->super, h2o_evloop_create(), &config);
    t->index = index;
    t->queue = t->super.queue;
    t->rpc = kr_rpc_h2o_new(t->super.loop, t->queue);
    t->jwt_cache = kr_jwt_cache_new(4096);
    if (gw_revocations_start(t, err, errlen) != 0 || gw_ws_start(t, err, errlen) != 0)
        return -1;
    t->accept_ctx.ctx = &t->super;
    t->accept_ctx.hosts = config.hosts;
    h2o_multithread_register_receiver(t->queue, &stop_receivers[index], on_stop);
    int fd = open_listener(err, errlen);
    if (fd < 0)
        return -1;
    t->listener = h2o_evloop_socket_create(t->super.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    t->listener->data = t;
    h2o_socket_read_start(t->listener, on_accept);
    return 0;
}

/* --------------------------------------------------------------- config */

static int parse_addr(const char *addr, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0') {
        snprintf(err, errlen, "expected host:port, got '%s'", addr);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int rv = getaddrinfo(host, colon + 1, &hints, &listen_ai);
    if (rv != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", addr, gai_strerror(rv));
        return -1;
    }
    return 0;
}

static kr_jwt_keyset *load_jwt_keys(kr_config *cfg, const char *dir, const char *active)
{
    if (dir == NULL)
        return NULL;
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[256];
    if (kr_jwt_keyset_load_dir(ks, dir, err, sizeof(err)) != 0) {
        kr_config_fail(cfg, "KREIDE_JWT_KEYS_DIR", "%s", err);
        kr_jwt_keyset_free(ks);
        return NULL;
    }
    if (active != NULL && kr_jwt_keyset_set_active(ks, active) != 0) {
        kr_config_fail(cfg, "KREIDE_JWT_ACTIVE_KID", "no private key '%s' in %s", active, dir);
        kr_jwt_keyset_free(ks);
        return NULL;
    }
    return ks;
}

int main(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "usage: kreide-gateway (configured by KREIDE_* environment variables)\n");
        return 2;
    }
    kr_rpc_block_signals();
    kr_config *cfg = kr_config_new();
    kr_log_level level = KR_LOG_INFO;
    const char *lvl = kr_config_str(cfg, "KREIDE_LOG_LEVEL", "info", 0);
    if (!kr_log_level_parse(lvl, &level))
        kr_config_fail(cfg, "KREIDE_LOG_LEVEL", "expected debug, info, warn or error, got '%s'", lvl);
    kr_log_init("gateway", level);

    const char *addr = kr_config_str(cfg, "KREIDE_HTTP_ADDR", "127.0.0.1:8080", 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = (int)kr_config_int(cfg, "KREIDE_HTTP_THREADS", ncpu > 0 ? ncpu : 1, 1, 256);
    gw.max_body = (size_t)kr_config_int(cfg, "KREIDE_MAX_BODY_BYTES", 1 << 20, 1024, 64 << 20);
    gw.rpc_timeout_ms = kr_config_int(cfg, "KREIDE_RPC_TIMEOUT_MS", 5000, 50, 120000);
    const char *internal = kr_config_str(cfg, "KREIDE_INTERNAL_KEYS", NULL, KR_CFG_REQUIRED | KR_CFG_SECRET);
    const char *identity_url = kr_config_str(cfg, "KREIDE_IDENTITY_URL", "tcp://127.0.0.1:7101", 0);
    const char *messaging_url = kr_config_str(cfg, "KREIDE_MESSAGING_URL", "tcp://127.0.0.1:7102", 0);
    const char *jwt_dir = kr_config_str(cfg, "KREIDE_JWT_KEYS_DIR", NULL, 0);
    const char *jwt_active = kr_config_str(cfg, "KREIDE_JWT_ACTIVE_KID", NULL, 0);
    gw.issuer = kr_config_str(cfg, "KREIDE_ISSUER", "http://127.0.0.1:8080", 0);
    gw.audience = kr_config_str(cfg, "KREIDE_JWT_AUDIENCE", "kreide", 0);
    const char *static_dir = kr_config_str(cfg, "KREIDE_STATIC_DIR", NULL, 0);
    const char *portal_config = kr_config_str(cfg, "KREIDE_PORTAL_CONFIG", NULL, 0);
    gw.redis_url = kr_config_str(cfg, "KREIDE_REDIS_URL", NULL, KR_CFG_SECRET);
    gw.access_token_ttl = kr_config_int(cfg, "KREIDE_ACCESS_TOKEN_TTL", 600, 60, 86400);
    gw.client_cache_ttl_ms = kr_config_int(cfg, "KREIDE_CLIENT_CACHE_TTL", 30, 0, 3600) * 1000;
    gw.ws_gap_ms = kr_config_int(cfg, "KREIDE_WS_GAP_MS", 2000, 50, 60000);

    char err[512];
    if (parse_addr(addr, err, sizeof(err)) != 0)
        kr_config_fail(cfg, "KREIDE_HTTP_ADDR", "%s", err);
    kr_keyring *keys = NULL;
    if (internal != NULL && kr_keyring_parse(internal, &keys, err, sizeof(err)) != 0)
        kr_config_fail(cfg, "KREIDE_INTERNAL_KEYS", "%s", err);
    gw.internal_keys = keys;
    gw.jwt_keys = load_jwt_keys(cfg, jwt_dir, jwt_active);
    if (gw.redis_url != NULL && gw.redis_url[0] == '\0')
        gw.redis_url = NULL;
    kr_redis_target redis_target;
    if (gw.redis_url != NULL && kr_redis_url_parse(gw.redis_url, &redis_target, err, sizeof(err)) != 0)
        kr_config_fail(cfg, "KREIDE_REDIS_URL", "%s", err);
    struct stat st;
    if (static_dir != NULL && (stat(static_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        kr_config_fail(cfg, "KREIDE_STATIC_DIR", "'%s' is not a directory", static_dir);
    if (kr_config_check(cfg, "kreide-gateway") != 0)
        return 1;

    services[0].client = NULL;
    if (kr_rpc_client_new("identity", identity_url, keys, &services[0].client, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreide-gateway: KREIDE_IDENTITY_URL: %s\n", err);
        return 1;
    }
    services[1].client = NULL;
    if (kr_rpc_client_new("messaging", messaging_url, keys, &services[1].client, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreide-gateway: KREIDE_MESSAGING_URL: %s\n", err);
        return 1;
    }
    gw.services = services;
    gw.nservices = sizeof(services) / sizeof(services[0]);
    if (gw_routes_init(services, gw.nservices, err, sizeof(err)) != 0) {
        kr_log(KR_LOG_ERROR, "bad route table", "error", err, NULL);
        return 1;
    }
    json_t *doc = gw_openapi_build(gw.issuer);
    gw.openapi_json = json_dumps(doc, JSON_COMPACT);
    gw.openapi_len = strlen(gw.openapi_json);
    json_decref(doc);
    gw_oidc_init(gw.issuer, gw.jwt_keys);

    /* h2o refuses bodies beyond its own limit before any handler runs, with a
     * plain-text 413; it gets headroom so the API's JSON 413 answers first. */
    h2o_config_init(&config);
    config.max_request_entity_size = gw.max_body * 2;
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    gw_ops_register(host);
    gw_oidc_register(host);
    gw_ws_register(host);
    h2o_pathconf_t *api = h2o_config_register_path(host, "/api", 0);
    gw_api_register(api);
    gw_access_log_register(api);
    if (static_dir != NULL) {
        gw_static_register(host, static_dir, portal_config != NULL && portal_config[0] != '\0' ? portal_config : NULL);
    } else {
        h2o_pathconf_t *root = h2o_config_register_path(host, "/", 0);
        gw_api_register(root); /* answers a JSON 404 for everything */
        gw_access_log_register(root);
    }

    threads = calloc((size_t)nthreads, sizeof(gw_thread));
    stop_receivers = calloc((size_t)nthreads, sizeof(*stop_receivers));
    if (threads == NULL || stop_receivers == NULL)
        abort();
    gw.threads = threads;
    gw.nthreads = (size_t)nthreads;
    if (gw.redis_url != NULL)
        kr_log(KR_LOG_INFO, "token revocations shared through Redis", "channel", GW_REVOKED_CHANNEL, NULL);
    else
        kr_log(KR_LOG_WARN, "KREIDE_REDIS_URL is not set: token revocations reach only this process", NULL);
    for (int i = 0; i < nthreads; i++) {
        if (setup_thread(&threads[i], i, err, sizeof(err)) != 0) {
            kr_log(KR_LOG_ERROR, "cannot start", "addr", addr, "error", err, NULL);
            return 1;
        }
    }
    pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
    if (tids == NULL)
        abort();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&tids[i], NULL, loop_main, &threads[i]);
    char nbuf[16];
    snprintf(nbuf, sizeof(nbuf), "%d", nthreads);
    kr_log(KR_LOG_INFO, "listening", "addr", addr, "threads", nbuf, NULL);

    kr_rpc_wait_signal();
    kr_log(KR_LOG_INFO, "draining", NULL);
    /* Bound the whole shutdown: nng 1.5 can hang closing a connection on
     * which a message is arriving (see kr_rpc_server_drain). */
    alarm(DRAIN_MS / 1000 + 10);
    atomic_store(&stopping, 1);
    for (int i = 0; i < nthreads; i++) {
        stop_message *m = calloc(1, sizeof(*m));
        if (m == NULL)
            abort();
        h2o_multithread_send_message(&stop_receivers[i], &m->super);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    kr_log(KR_LOG_INFO, "stopped", NULL);
    /* h2o's loops and contexts are left to process exit: h2o 2.2 offers no
     * teardown of a context whose connections were cut off by the drain. */
    for (int i = 0; i < nthreads; i++)
        kr_jwt_cache_free(threads[i].jwt_cache);
    for (size_t i = 0; i < gw.nservices; i++)
        kr_rpc_client_free(services[i].client);
    free(tids);
    free(gw.openapi_json);
    gw_oidc_free();
    kr_jwt_keyset_free((kr_jwt_keyset *)gw.jwt_keys);
    kr_keyring_free(keys);
    kr_config_free(cfg);
    freeaddrinfo(listen_ai);
    return 0;
}
