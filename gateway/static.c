/* The portal's files: the built single-page app under "/", index.html for
 * the app's own routes, its security and cache headers, and the portal's
 * configuration document (docs/portal.md). */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "static.h"

/* Prefixes that belong to the gateway itself, never to the app: a path
 * under one of them that no handler took is a 404, not the app's page. */
static const char *const reserved[] = {
    "/api", "/oidc", "/.well-known", "/assets", "/healthz", "/readyz", "/metrics", "/portal-config.json",
};

static bool has_prefix(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    /* "/api" covers "/api" and "/api/..." but not "/apiary". */
    return len >= n && memcmp(path, prefix, n) == 0 && (len == n || path[n] == '/');
}

gw_static_kind gw_static_classify(const char *path, size_t len)
{
    if (len == 0 || path[0] != '/' || len > GW_STATIC_MAX_ROUTE)
        return GW_STATIC_NOT_FOUND;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (has_prefix(path, len, reserved[i]))
            return GW_STATIC_NOT_FOUND;
    /* The last segment names a file when it has a dot (sw.js, icon.png): a
     * missing file must be a 404, or a stale page would load HTML as code. */
    size_t last = len;
    while (last > 0 && path[last - 1] != '/')
        last--;
    if (memchr(path + last, '.', len - last) != NULL)
        return GW_STATIC_NOT_FOUND;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x21 || c == 0x7f || c == '\\')
            return GW_STATIC_NOT_FOUND;
    }
    return GW_STATIC_APP_ROUTE;
}

const char *gw_static_cache_control(const char *path, size_t len)
{
    /* Vite names every file under /assets/ by a hash of its content. */
    if (has_prefix(path, len, "/assets") && len > sizeof("/assets/") - 1)
        return "public, max-age=31536000, immutable";
    /* index.html, the service worker, the manifest and the icons: asked
     * again each time, so that a new release reaches every device. */
    return "no-cache";
}

/* ------------------------------------------------------------ handlers */

static char *index_path;

static int on_fallback(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    if (gw_static_classify(req->path_normalized.base, req->path_normalized.len) != GW_STATIC_APP_ROUTE) {
        gw_send_error(req, 404, "static.not_found", "no such file", NULL);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        gw_send_error(req, 405, "static.method_not_allowed", "the portal's pages answer GET and HEAD", NULL);
        return 0;
    }
    if (h2o_file_send(req, 200, "OK", index_path, h2o_iovec_init(H2O_STRLIT("text/html; charset=utf-8")), 0) != 0) {
        gw_send_error(req, 404, "static.not_found", "the portal is not built", NULL);
        return 0;
    }
    return 0;
}

static int on_config_missing(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    gw_send_error(req, 404, "static.not_configured", "the portal's client is not registered on this server", NULL);
    return 0;
}

/* ------------------------------------------------------------- headers */

static void set_if_absent(h2o_req_t *req, const char *name, size_t nlen, const char *value)
{
    if (h2o_find_header_by_str(&req->res.headers, name, nlen, -1) >= 0)
        return;
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, value, strlen(value));
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    const char *path = req->path_normalized.base;
    size_t len = req->path_normalized.len;
    set_if_absent(req, H2O_STRLIT("content-security-policy"), GW_PORTAL_CSP);
    set_if_absent(req, H2O_STRLIT("x-content-type-options"), "nosniff");
    set_if_absent(req, H2O_STRLIT("x-frame-options"), "DENY");
    set_if_absent(req, H2O_STRLIT("referrer-policy"), "no-referrer");
    set_if_absent(req, H2O_STRLIT("cross-origin-opener-policy"), "same-origin");
    set_if_absent(req, H2O_STRLIT("cache-control"),
                  has_prefix(path, len, "/portal-config.json") ? "no-store" : gw_static_cache_control(path, len));
    h2o_setup_next_ostream(req, slot);
}

static void register_headers(h2o_pathconf_t *pc)
{
    h2o_filter_t *f = h2o_create_filter(pc, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}

static void define_type(h2o_mimemap_t *mimemap, const char *ext, const char *mime)
{
    h2o_mime_attributes_t attr;
    h2o_mimemap_get_default_attributes(mime, &attr);
    h2o_mimemap_define_mimetype(mimemap, ext, mime, &attr);
}

void gw_static_register(h2o_hostconf_t *hostconf, const char *dir, const char *config_file)
{
    h2o_mimemap_t *mimemap = h2o_mimemap_create();
    /* h2o 2.2 does not know the manifest's type; served as octet-stream,
     * browsers would ignore it. */
    define_type(mimemap, "webmanifest", "application/manifest+json");
    define_type(mimemap, "js", "text/javascript; charset=utf-8");
    define_type(mimemap, "json", "application/json");

    if (config_file != NULL) {
        /* Read at each request (h2o opens the file anew), so a seed that
         * registers the portal's client after the start is seen at once. */
        h2o_pathconf_t *pc = h2o_config_register_path(hostconf, "/portal-config.json", 0);
        h2o_file_register_file(pc, config_file, h2o_mimemap_get_type_by_extension(mimemap, h2o_iovec_init(H2O_STRLIT("json"))),
                               H2O_FILE_FLAG_NO_ETAG);
        h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
        h->on_req = on_config_missing; /* when the file is not there (yet) */
        register_headers(pc);
        gw_access_log_register(pc);
    }

    h2o_pathconf_t *root = h2o_config_register_path(hostconf, "/", 0);
    static const char *index_files[] = {"index.html", NULL};
    h2o_file_register(root, dir, index_files, mimemap, 0);
    h2o_mem_release_shared(mimemap);
    size_t n = strlen(dir);
    index_path = malloc(n + sizeof("/index.html"));
    if (index_path == NULL)
        abort();
    memcpy(index_path, dir, n);
    memcpy(index_path + n, "/index.html", sizeof("/index.html"));
    /* The file handler passes paths it has no file for to the next one. */
    h2o_handler_t *h = h2o_create_handler(root, sizeof(*h));
    h->on_req = on_fallback;
    register_headers(root);
    gw_access_log_register(root);
}
