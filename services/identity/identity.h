/*
 * identity — the map of the identity daemon.
 *
 * The identity service owns carriers, schools, people, groups, credentials
 * and OpenID Connect state in its own PostgreSQL schema `identity`. Nothing
 * else reads those tables: other daemons ask over RPC (proto/identity.proto).
 *
 *   main.c     wiring: configuration, migrations, the RPC server, signals
 *   api.c      RPC handlers: validate input, ask policy, call the store
 *   policy.c   who may do what
 *   store.c    every SQL statement of the service
 *
 * Credential building blocks, each with its own header:
 *   password.h  argon2id hashes and the password policy
 *   codes.h     one-time enrollment and reset codes
 *   totp.h      the TOTP second factor
 *   throttle.h  brute-force protection in Redis
 */
#ifndef IDENTITY_H
#define IDENTITY_H

#include <stdbool.h>

#include "identity.pb-c.h"
#include "kr_rpc.h"

/* ------------------------------------------------------------------ api.c */

/* The method table served by the daemon. */
extern const kr_rpc_method ident_methods[];
extern const size_t ident_nmethods;

/* ---------------------------------------------------------------- policy.c */

/* True when the caller holds the installation-wide operator role (carrier
 * and state operators provisioning schools). */
bool ident_is_operator(const Kreide__Caller *caller);

/* True when the caller may create schools. */
bool ident_may_create_school(const Kreide__Caller *caller);

/* True when the caller may list every school of the installation. */
bool ident_may_list_schools(const Kreide__Caller *caller);

/* ----------------------------------------------------------------- store.c */

typedef enum {
    IDENT_STORE_OK = 0,
    IDENT_STORE_NOT_FOUND,
    IDENT_STORE_CONFLICT, /* a unique value is taken */
    IDENT_STORE_ERROR,    /* database unreachable or failing; logged */
} ident_store_result;

/* Inserts a school with a new id; fills `out` (strings from ctx->arena). */
ident_store_result ident_store_create_school(kr_rpc_ctx *ctx, const char *name, const char *kennung,
                                             Kreide__Identity__SchoolKind kind, Kreide__Identity__School *out);

/* Reads one school by id (a validated UUID). */
ident_store_result ident_store_get_school(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__School *out);

/* Lists up to `limit` schools whose lower-cased name starts with the
 * lower-cased `prefix` (may be ""), ordered by id, after `after_id` ("" =
 * from the start). Sets *more when further rows exist. */
ident_store_result ident_store_list_schools(kr_rpc_ctx *ctx, const char *prefix, const char *after_id, unsigned limit,
                                            Kreide__Identity__School ***out, size_t *n, bool *more);

#endif
