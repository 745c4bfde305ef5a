/*
 * identity — the map of the identity daemon.
 *
 * The identity service owns carriers, schools, people, groups, credentials
 * and OpenID Connect state in its own PostgreSQL schema `identity`. Nothing
 * else reads those tables: other daemons ask over RPC (proto/identity.proto).
 *
 *   main.c     wiring: configuration, migrations, the RPC server, signals
 *   api.c      RPC handlers: validate input, ask policy, call the store
 *   check.c    input checks and the names enums are stored under
 *   policy.c   who may do what
 *   store.c    every SQL statement of the service
 *   events.c   roster events published to Redis after a change commits
 *   api_credentials.c    RPCs of codes, enrollment and sign-in
 *   store_credentials.c  their SQL
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
#include <stdint.h>

#include "codes.h"
#include "identity.pb-c.h"
#include "kr_rpc.h"
#include "password.h"
#include "throttle.h"

/* ------------------------------------------------------------------ api.c */

/* The method table served by the daemon. */
extern const kr_rpc_method ident_methods[];
extern const size_t ident_nmethods;

/* Per-worker Redis connections for the throttle (api_credentials.c). */
typedef struct st_ident_redis_pool_t ident_redis_pool;

/* What every handler finds in ctx->app. Read-only once the server runs. */
typedef struct st_ident_events_t ident_events;
typedef struct {
    ident_events *events; /* never NULL; may be disabled */
    /* Credentials (docs/credentials.md). */
    const ident_denylist *denylist; /* common passwords; NULL only in tests */
    const uint8_t *code_pepper;     /* HMAC key of one-time codes, >= IDENT_CODE_PEPPER_MIN bytes */
    size_t code_pepper_len;
    ident_argon2_params argon2;     /* for new hashes; older ones are rehashed at sign-in */
    ident_throttle_params throttle; /* brute-force limits */
    int64_t enrollment_code_ttl_s;  /* lifetime of enrollment codes */
    int64_t reset_code_ttl_s;       /* lifetime of reset codes */
    ident_redis_pool *redis;        /* NULL without Redis: throttled RPCs answer UNAVAILABLE */
    const char *dummy_hash;         /* verified for unknown users so timing reveals nothing */
} ident_app;

/* -------------------------------------------------------- api_credentials.c */

/* The credential methods (IssueCode, EnrollWithCode, Authenticate); main.c
 * serves them after ident_methods. */
extern const kr_rpc_method ident_credential_methods[];
extern const size_t ident_credential_nmethods;

/* A pool handing each worker thread its own Redis client for `url`.
 * Aborts on out-of-memory. Free after the RPC server's workers are gone. */
ident_redis_pool *ident_redis_pool_new(const char *url);

/* Closes every client and frees the pool (NULL ignored). */
void ident_redis_pool_free(ident_redis_pool *pool);

/* The calling thread's client, made on first use; NULL when the pool is
 * full or the URL is unusable. */
kr_redis *ident_redis_pool_get(ident_redis_pool *pool);

/* ----------------------------------------------------------------- check.c */

/* Counts UTF-8 characters; -1 when `s` is not valid UTF-8 or holds control
 * characters, which never belong in a name. */
long ident_text_length(const char *s);

/* A user name: 3..64 of [a-z0-9._-]. */
bool ident_username_valid(const char *s);

/* "" or a school year "YYYY/YY" whose second part is the year after the
 * first ("2026/27"). */
bool ident_school_year_valid(const char *s);

/* "" or a calendar date YYYY-MM-DD from 1900 on. */
bool ident_date_valid(const char *s);

/* The lower-case name a person role is stored and carried in tokens under
 * ("pupil" ... "school_admin"); NULL for UNSPECIFIED or unknown values. */
const char *ident_person_role_name(Kreide__Identity__PersonRole r);

/* The role stored under `name`; UNSPECIFIED when none. */
Kreide__Identity__PersonRole ident_person_role_parse(const char *name);

/* The Schulconnex role code a person role maps to when none is given:
 * pupil Lern, teacher Lehr, parent SorgBer, staff Extern, head Leit,
 * school_admin OrgAdmin; NULL for UNSPECIFIED. */
const char *ident_schulconnex_default(Kreide__Identity__PersonRole r);

/* True for the Schulconnex role codes Lern, Lehr, SorgBer, Leit, OrgAdmin
 * and Extern. */
bool ident_schulconnex_valid(const char *code);

/* Stored names of group kinds ("class", "course", "club", "staff",
 * "parents") and member roles ("member", "leader"); NULL / UNSPECIFIED
 * when unknown. */
const char *ident_group_kind_name(Kreide__Identity__GroupKind k);
Kreide__Identity__GroupKind ident_group_kind_parse(const char *name);
const char *ident_member_role_name(Kreide__Identity__MemberRole r);
Kreide__Identity__MemberRole ident_member_role_parse(const char *name);

/* ---------------------------------------------------------------- policy.c */

/* Per-school roles as bits; tokens name them in `schools[].roles`. */
enum {
    IDENT_ROLE_PUPIL = 1u << 0,
    IDENT_ROLE_TEACHER = 1u << 1,
    IDENT_ROLE_PARENT = 1u << 2,
    IDENT_ROLE_STAFF = 1u << 3,
    IDENT_ROLE_HEAD = 1u << 4,
    IDENT_ROLE_SCHOOL_ADMIN = 1u << 5,
};

/* Roles that see the whole school: its directory, groups and members. */
#define IDENT_ROLES_WHOLE_SCHOOL (IDENT_ROLE_TEACHER | IDENT_ROLE_STAFF | IDENT_ROLE_HEAD | IDENT_ROLE_SCHOOL_ADMIN)

/* A school as policy needs it: its id and its carrier's ("" when none). */
typedef struct {
    const char *id;
    const char *carrier_id;
} ident_school_ref;

/* Whom a caller sees in one school's directory; several may hold. */
typedef struct {
    bool whole_school;                 /* everyone with a context there */
    bool classmates_and_teachers;      /* people sharing a group with the caller */
    bool childrens_teachers_and_staff; /* leaders of the caller's children's groups, and staff */
} ident_directory_scope;

/* True when the caller holds the installation-wide operator role (carrier
 * and state operators provisioning schools). */
bool ident_is_operator(const Kreide__Caller *caller);

/* True when the caller's installation-wide roles include
 * "carrier_admin:<carrier_id>" (carrier_id a UUID, compared without case). */
bool ident_is_carrier_admin(const Kreide__Caller *caller, const char *carrier_id);

/* The IDENT_ROLE_* bit of a role name, 0 for unknown names. */
unsigned ident_role_bit(const char *name);

/* The caller's roles at one school, as IDENT_ROLE_* bits (0: no context). */
unsigned ident_caller_roles_at(const Kreide__Caller *caller, const char *school_id);

/* True when the caller is the person `user_id`. */
bool ident_is_self(const Kreide__Caller *caller, const char *user_id);

/* True when the caller may create carriers (operators). */
bool ident_may_create_carrier(const Kreide__Caller *caller);

/* True when the caller may create a school of `carrier_id` ("" = none):
 * operators, and admins of that carrier. */
bool ident_may_create_school(const Kreide__Caller *caller, const char *carrier_id);

/* True when the caller may list every school of the installation. */
bool ident_may_list_schools(const Kreide__Caller *caller);

/* True when the caller manages the school's users, person contexts,
 * groups, memberships and guardianships: operators, admins of its carrier,
 * and its school admins. */
bool ident_may_manage_school(const Kreide__Caller *caller, const ident_school_ref *school);

/* True when the caller has any standing at the school (manages it or holds
 * a context there). Without it, the school's groups and people do not exist
 * for the caller. */
bool ident_has_school_access(const Kreide__Caller *caller, const ident_school_ref *school);

/* True when the caller may list the school's groups and their members:
 * managers, and its teachers, staff, heads and school admins. */
bool ident_may_read_school(const Kreide__Caller *caller, const ident_school_ref *school);

/* True when the caller may add or remove a member with `target_role` in a
 * group of the school: managers always; a teacher of the school only plain
 * members, and only in a group the teacher leads. */
bool ident_may_change_member(const Kreide__Caller *caller, const ident_school_ref *school, bool caller_leads_group,
                             Kreide__Identity__MemberRole target_role);

/* Whom the caller sees in the school's directory. */
ident_directory_scope ident_directory_scope_for(const Kreide__Caller *caller, const ident_school_ref *school);

/* True when the scope shows anybody at all. */
bool ident_directory_scope_any(ident_directory_scope scope);

/* True when the caller may issue a one-time code of `purpose` for a person
 * whose roles at the school are `target_roles` (IDENT_ROLE_* bits, non-zero):
 * operators always; admins of the school's carrier for the school's school
 * admins; the school's admins for anyone there; a teacher of the school only
 * RESET codes for pupils of a group the teacher leads
 * (`caller_leads_target`). Pupils and parents never. */
bool ident_may_issue_code(const Kreide__Caller *caller, const ident_school_ref *school, Kreide__Identity__CodePurpose purpose,
                          unsigned target_roles, bool caller_leads_target);

/* ---------------------------------------------------------------- events.c */

/* One roster change. Strings are borrowed for the call. */
typedef struct {
    const char *type; /* "group.created", "membership.added", "membership.removed" */
    const char *school_id;
    const char *group_id;
    const char *user_id; /* NULL for group events */
    const char *role;    /* member role; NULL for group events */
} ident_event;

/* Channel every roster event is published on. */
#define IDENT_EVENTS_CHANNEL "kreide.identity.events"

/* Creates the publisher; `redis_url` NULL or "" turns publishing off.
 * Aborts on out-of-memory. Free with ident_events_free after the RPC
 * server's workers are gone. */
ident_events *ident_events_new(const char *redis_url, const char *channel);

/* True when events are published. */
bool ident_events_enabled(const ident_events *ev);

/* Closes every thread's Redis connection and frees `ev` (NULL ignored). */
void ident_events_free(ident_events *ev);

/* The event as one compact JSON object with keys at, group_id, role,
 * school_id, type, user_id (absent values as ""), `at` RFC 3339 UTC with
 * milliseconds. Caller frees; NULL on out-of-memory. */
char *ident_event_json(const ident_event *e, int64_t at_ms);

/* Publishes on the calling thread's own connection; call only after the
 * change committed. Never fails the caller: a failure is logged and counted
 * (kreide_identity_events_failed_total). */
void ident_events_publish(ident_events *ev, const ident_event *e);

/* ----------------------------------------------------------------- store.c */

/* Every store function fills its output with strings from ctx->arena. */
typedef enum {
    IDENT_STORE_OK = 0,
    IDENT_STORE_NOT_FOUND,    /* no such row, or a referenced row is missing */
    IDENT_STORE_CONFLICT,     /* a unique value is taken */
    IDENT_STORE_PRECONDITION, /* the people involved lack the context the change needs */
    IDENT_STORE_ERROR,        /* database unreachable or failing; logged */
} ident_store_result;

/* Inserts a school with a new id; `carrier_id` "" for none (NOT_FOUND when
 * the carrier does not exist). */
ident_store_result ident_store_create_school(kr_rpc_ctx *ctx, const char *name, const char *kennung,
                                             Kreide__Identity__SchoolKind kind, const char *carrier_id,
                                             Kreide__Identity__School *out);

/* Reads one school by id (a validated UUID). */
ident_store_result ident_store_get_school(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__School *out);

/* Reads a school's id and carrier, for policy. */
ident_store_result ident_store_school_ref(kr_rpc_ctx *ctx, const char *id, ident_school_ref *out);

/* Lists up to `limit` schools whose lower-cased name starts with the
 * lower-cased `prefix` (may be ""), ordered by id, after `after_id` ("" =
 * from the start). Sets *more when further rows exist. */
ident_store_result ident_store_list_schools(kr_rpc_ctx *ctx, const char *prefix, const char *after_id, unsigned limit,
                                            Kreide__Identity__School ***out, size_t *n, bool *more);

/* Inserts a carrier with a new id. */
ident_store_result ident_store_create_carrier(kr_rpc_ctx *ctx, const char *name, Kreide__Identity__Carrier *out);

/* Inserts a user and its person contexts in one transaction (validated
 * input; `schulconnex[i]` is the code of contexts[i]). CONFLICT when the user
 * name or a context is taken, NOT_FOUND when a context's school does not
 * exist; then *failed_context is the context's index, else SIZE_MAX. */
ident_store_result ident_store_create_user(kr_rpc_ctx *ctx, const Kreide__Identity__CreateUserRequest *in, const char *display_name,
                                           const char *const *schulconnex, Kreide__Identity__User *out, size_t *failed_context);

/* Reads a user with every person context; *schools gets one entry per
 * context (same order) with the school's carrier, for policy. */
ident_store_result ident_store_get_user(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__User *out, ident_school_ref **schools);

/* Inserts one person context (`role` a stored role name). NOT_FOUND when the
 * user or school does not exist, CONFLICT when the context exists. */
ident_store_result ident_store_add_context(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, const char *role,
                                           const char *schulconnex, Kreide__Identity__PersonContext *out);

/* Inserts a group (`kind` a stored kind name; `school_year` may be "").
 * CONFLICT when the name is taken for that school and year. */
ident_store_result ident_store_create_group(kr_rpc_ctx *ctx, const char *school_id, const char *kind, const char *name,
                                            const char *school_year, Kreide__Identity__Group *out);

/* The school (with carrier) a group belongs to. */
ident_store_result ident_store_group_school(kr_rpc_ctx *ctx, const char *group_id, ident_school_ref *out);

/* Lists a school's groups by id, paged like ident_store_list_schools;
 * `school_year` "" for every year. */
ident_store_result ident_store_list_groups(kr_rpc_ctx *ctx, const char *school_id, const char *school_year, const char *after_id,
                                           unsigned limit, Kreide__Identity__Group ***out, size_t *n, bool *more);

/* The role of a user's membership (with `today_only`, only one valid
 * today); NOT_FOUND when none. */
ident_store_result ident_store_member_role(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                           bool today_only, Kreide__Identity__MemberRole *role);

/* Adds a membership (`role` a stored name; dates "" for open ends).
 * PRECONDITION when the user has no context at the school, CONFLICT when
 * already a member. */
ident_store_result ident_store_add_member(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                          const char *role, const char *valid_from, const char *valid_to,
                                          Kreide__Identity__Membership *out);

/* Deletes a membership and says which role it had; NOT_FOUND when none. */
ident_store_result ident_store_remove_member(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                             Kreide__Identity__MemberRole *removed_role);

/* Lists a group's members with their names, by user id, paged. */
ident_store_result ident_store_list_members(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *after_id,
                                            unsigned limit, Kreide__Identity__Member ***out, size_t *n, bool *more);

/* Links a parent to a pupil at a school. PRECONDITION unless the parent
 * holds a parent context and the child a pupil context there, CONFLICT
 * when the link exists. */
ident_store_result ident_store_add_guardianship(kr_rpc_ctx *ctx, const char *school_id, const char *parent_id, const char *child_id,
                                                Kreide__Identity__Guardianship *out);

/* Searches the people of one school that `scope` lets `caller_id` see, by
 * prefix of given name, family name or user name (case-insensitive),
 * ordered by family name, given name and id, after the user `after_id`
 * ("" = from the start). Each entry carries the person's roles there. */
ident_store_result ident_store_search(kr_rpc_ctx *ctx, const char *school_id, const char *prefix, ident_directory_scope scope,
                                      const char *caller_id, const char *after_id, unsigned limit,
                                      Kreide__Identity__DirectoryEntry ***out, size_t *n, bool *more);

/* ------------------------------------------------------ store_credentials.c */

/* The stored name of a code purpose ("enrollment", "reset"); NULL for
 * UNSPECIFIED or unknown values. */
const char *ident_code_purpose_name(Kreide__Identity__CodePurpose p);

/* The user's roles at one school as IDENT_ROLE_* bits (0: no context). */
ident_store_result ident_store_roles_at(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, unsigned *roles);

/* True (in *leads) when `leader_id` leads, today, a group of the school in
 * which `member_id` is a member today. */
ident_store_result ident_store_leads_member(kr_rpc_ctx *ctx, const char *school_id, const char *leader_id, const char *member_id,
                                            bool *leads);

/* Stores a new code (its HMAC) in one transaction that first retires the
 * person's live code of the same purpose. `issued_by` "" for none.
 * *expires_at gets the expiry as RFC 3339 UTC. */
ident_store_result ident_store_issue_code(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, const char *purpose,
                                          const uint8_t *hash, const char *issued_by, int64_t ttl_s, const char **expires_at);

/* What sign-in and enrollment need of a user found by user name. */
typedef struct {
    const char *id;
    const char *username;
    const char *given_name;
    const char *family_name;
    const char *display_name;
    const char *password_hash; /* NULL when none is set */
} ident_login_user;

/* Reads a user by (lower-case) user name; NOT_FOUND when none. */
ident_store_result ident_store_login_user(kr_rpc_ctx *ctx, const char *username, ident_login_user *out);

/* A code as stored, found by its HMAC among the user's codes. */
typedef struct {
    const char *id;
    ident_code_record rec; /* used_at also set for a retired code */
} ident_stored_code;

/* Finds the user's newest code with this HMAC; NOT_FOUND when none. */
ident_store_result ident_store_find_code(kr_rpc_ctx *ctx, const char *user_id, const uint8_t *hash, ident_stored_code *out);

/* In one transaction: marks the code used (PRECONDITION when it was used,
 * retired or expired meanwhile) and sets the user's password hash. */
ident_store_result ident_store_use_code(kr_rpc_ctx *ctx, const char *code_id, const char *user_id, const char *password_hash);

/* Replaces a user's password hash (after a rehash at sign-in). */
ident_store_result ident_store_set_password_hash(kr_rpc_ctx *ctx, const char *user_id, const char *password_hash);

/* The user's schools with roles and Schulconnex codes, by school id. */
ident_store_result ident_store_auth_schools(kr_rpc_ctx *ctx, const char *user_id, Kreide__Identity__AuthenticatedSchool ***out,
                                            size_t *n);

/* ================================================== OpenID Connect clients
 *
 *   api_clients.c    CreateClient, GetClient, AuthenticateClient; the input
 *                    checks of a registration
 *   store_clients.c  the SQL of identity.oidc_clients
 *   policy.c         who may register and read clients (end of the file)
 */

/* Bytes of randomness in a client id (22 base64url characters) and in a
 * confidential client's secret (43). */
#define IDENT_CLIENT_ID_BYTES 16
#define IDENT_CLIENT_SECRET_BYTES 32
/* Most redirect URIs, grant types and scopes one client registers. */
#define IDENT_CLIENT_MAX_URIS 16
#define IDENT_CLIENT_MAX_SCOPES 32

/* The client id the gateway puts into the envelopes of its own calls. */
#define IDENT_GATEWAY_CLIENT_ID "gateway"

/* The handlers of CreateClient, GetClient and AuthenticateClient, for
 * api.c's method table (KR_RPC_ENTRY with ident_create_client etc.). */
int ident_create_client_rpc(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out);
int ident_get_client_rpc(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out);
int ident_authenticate_client_rpc(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out);

/* True when `s` can be a client id this service hands out: 22 characters of
 * the base64url alphabet. */
bool ident_client_id_valid(const char *s);

/* True when every entry is one of authorization_code, refresh_token,
 * client_credentials and none repeats. */
bool ident_grant_types_valid(char *const *grants, size_t n);

/* True when the list holds `name`. */
bool ident_list_has(char *const *list, size_t n, const char *name);

/* True when the caller is the gateway itself (a SERVICE caller with client
 * id "gateway" and no user), as in the envelopes of the OIDC endpoints. */
bool ident_is_gateway(const Kreide__Caller *caller);

/* True when the caller may register a client for `school` (NULL: an
 * installation-wide client): operators; for a school, also its carrier's
 * admins. */
bool ident_may_create_client(const Kreide__Caller *caller, const ident_school_ref *school);

/* True when the caller may read the registration of client `client_id` of
 * `school` (NULL: installation-wide): operators, the school's carrier
 * admins, the gateway, and the client itself (a service token issued to
 * it). */
bool ident_may_read_client(const Kreide__Caller *caller, const ident_school_ref *school, const char *client_id);

/* A client as stored, with what authentication needs. */
typedef struct {
    Kreide__Identity__OidcClient client; /* strings from ctx->arena */
    bool has_secret;
    unsigned char secret_hash[32]; /* SHA-256 of the secret when has_secret */
    const char *carrier_id;        /* the school's carrier, "" when none or no school */
} ident_stored_client;

/* Inserts a client (validated input; `secret_hash` NULL for public
 * clients). CONFLICT when the id is taken, NOT_FOUND when the school does
 * not exist. */
ident_store_result ident_store_create_client(kr_rpc_ctx *ctx, const Kreide__Identity__OidcClient *c,
                                             const unsigned char secret_hash[32]);

/* Reads a client by id (a valid client id). NOT_FOUND when none. */
ident_store_result ident_store_get_client(kr_rpc_ctx *ctx, const char *client_id, ident_stored_client *out);

#endif
