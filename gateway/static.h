/*
 * static — the portal's files (docs/portal.md): the built single-page app
 * from KREIDE_STATIC_DIR at "/", index.html for the app's own routes, JSON
 * 404s for missing files and for paths of the gateway's own, the portal's
 * security and cache headers, and /portal-config.json.
 */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include <h2o.h>

/* The portal's Content Security Policy: everything from its own origin, no
 * inline scripts or styles, no framing (docs/portal.md). */
#define GW_PORTAL_CSP                                                                                                              \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "         \
    "manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* The longest path that may still be one of the app's routes. */
#define GW_STATIC_MAX_ROUTE 512

typedef enum {
    GW_STATIC_NOT_FOUND = 0, /* a missing file or a path of the gateway's own: 404 */
    GW_STATIC_APP_ROUTE,     /* a route of the single-page app: answered with its index.html */
} gw_static_kind;

/* What the portal's fallback does with a normalized path that no file
 * matched: /api, /oidc, /.well-known, /assets, the operational endpoints
 * and paths whose last segment has a dot (a file name) are never the app's. */
gw_static_kind gw_static_classify(const char *path, size_t len);

/* The Cache-Control of a portal path: content-hashed /assets/ for a year,
 * everything else revalidated each time. A static string. */
const char *gw_static_cache_control(const char *path, size_t len);

/* Registers the portal at "/": the files of `dir`, its index.html for the
 * app's routes, JSON 404s for everything else, and the portal's headers on
 * every answer; with `config_file` (may be NULL, may not exist yet), that
 * file at /portal-config.json, uncached. Call once, before the loops start. */
void gw_static_register(h2o_hostconf_t *hostconf, const char *dir, const char *config_file);

#endif
