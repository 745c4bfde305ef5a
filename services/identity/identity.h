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
 *   api_clients.c, store_clients.c   OpenID Connect clients
 *   api_flow.c, store_flow.c         the OpenID Connect flow: sessions,
 *                                    codes, grants, tokens, consents, claims
 *   flow.c       pure rules of the flow (scopes, verdicts on codes and tokens)
 *   flow_redis.c what the flow keeps in Redis: SSO sessions, revocations
 *   api_totp.c   a person's own TOTP second factor
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
#include "kr_refresh.h"
#include "kr_rpc.h"
#include "password.h"
#include "throttle.h"
#include "totp.h"

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
    /* The OpenID Connect flow (docs/oidc.md), lifetimes in seconds. */
    int64_t sso_session_ttl_s;   /* KREIDE_SSO_SESSION_TTL: an SSO session, absolute */
    int64_t auth_code_ttl_s;     /* KREIDE_AUTH_CODE_TTL: an authorization code */
    int64_t access_token_ttl_s;  /* KREIDE_ACCESS_TOKEN_TTL: what the gateway signs for a grant */
    int64_t refresh_token_ttl_s; /* KREIDE_REFRESH_TOKEN_TTL: one refresh token, from its issue */
} ident_app;

/* -------------------------------------------------------- api_credentials.c */

/* The credential methods (IssueCode, EnrollWithCode, Authenticate); main.c
 * serves them after ident_methods. */
extern const kr_rpc_method ident_credential_methods[];
extern const size_t ident_credential_nmethods;

/* The outcome of a sign-in: the person, and how they proved it. */
typedef struct {
    const char *user_id;
    const char *username;
    const char *given_name;
    const char *family_name;
    const char *display_name;
    int64_t auth_time; /* Unix seconds */
    bool with_totp;    /* the second factor was checked too */
} ident_signed_in;

/* Checks a user name, a password and, when the account has TOTP switched
 * on, the code `totp`, throttled per account and per address: the sign-in
 * that Authenticate and StartSession share. Returns 0 with *out filled
 * (strings from ctx->arena), or the value of kr_rpc_fail() with one of:
 * UNAUTHENTICATED identity.bad_credentials (unknown name, no password,
 * wrong password), FAILED_PRECONDITION credentials.totp_required (the
 * password was right and the account needs a code: none given, or a wrong
 * or reused one, which counts as a failure), RESOURCE_EXHAUSTED
 * identity.throttled, UNAVAILABLE identity.throttle_unavailable or
 * identity.database. */
int ident_sign_in(kr_rpc_ctx *ctx, const char *username, const char *password, const char *totp, const char *client_address,
                  ident_signed_in *out);

/* For another guessable RPC of a signed-in person (DisableTotp): 0 when
 * the account's throttle lets an attempt through now, else the value of
 * kr_rpc_fail() (identity.throttled, identity.throttle_unavailable). */
int ident_throttle_account_allowed(kr_rpc_ctx *ctx, const char *username);

/* Counts a failed guess for the account (DisableTotp's wrong codes). */
void ident_throttle_account_failed(kr_rpc_ctx *ctx, const char *username);

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

/* True when a person whose roles at any school are `roles_anywhere`
 * (IDENT_ROLE_* bits) may set up a TOTP second factor for themself:
 * teachers, staff, heads and school admins; pupils and parents do not. */
bool ident_may_use_totp(unsigned roles_anywhere);

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
    bool has_totp;             /* TOTP is switched on: totp_secret holds the key */
    uint8_t totp_secret[IDENT_TOTP_SECRET_LEN];
    int64_t totp_last_step; /* IDENT_TOTP_NEVER when no code was used yet */
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

/* Marks a TOTP step used (see ident_sign_in); PRECONDITION when it, or a
 * later one, was used already. */
ident_store_result ident_store_use_totp_step(kr_rpc_ctx *ctx, const char *user_id, int64_t step);

/* A person's TOTP as SetupTotp, ConfirmTotp and DisableTotp need it. */
typedef struct {
    const char *username;
    unsigned roles_anywhere; /* IDENT_ROLE_* bits of every context the person holds */
    bool enabled;            /* totp_secret is set */
    uint8_t secret[IDENT_TOTP_SECRET_LEN];
    int64_t last_step; /* IDENT_TOTP_NEVER when none */
    bool pending;      /* a secret waits for its first code */
    uint8_t pending_secret[IDENT_TOTP_SECRET_LEN];
    int64_t pending_at; /* Unix seconds */
} ident_totp_state;

/* Reads the person's TOTP state; NOT_FOUND when no such user. */
ident_store_result ident_store_totp_state(kr_rpc_ctx *ctx, const char *user_id, ident_totp_state *out);

/* Stores a new pending secret, replacing an older pending one;
 * PRECONDITION when TOTP is switched on already. */
ident_store_result ident_store_totp_set_pending(kr_rpc_ctx *ctx, const char *user_id, const uint8_t secret[IDENT_TOTP_SECRET_LEN]);

/* Switches TOTP on with the pending secret `secret` (still the pending one,
 * TOTP still off) and the step of the first code; PRECONDITION otherwise. */
ident_store_result ident_store_totp_confirm(kr_rpc_ctx *ctx, const char *user_id, const uint8_t secret[IDENT_TOTP_SECRET_LEN],
                                            int64_t step);

/* Switches TOTP off with the step of a current code (later than the last
 * one used); PRECONDITION when it was off or the step was used. */
ident_store_result ident_store_totp_disable(kr_rpc_ctx *ctx, const char *user_id, int64_t step);

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

/* ============================================= The OpenID Connect flow
 *
 *   flow.c        pure rules: scope lists, token hashes, what a presented
 *                 code or refresh token deserves
 *   flow_redis.c  SSO sessions and access-token revocations in Redis
 *   api_flow.c    StartSession, GetSession, EndSession, IssueAuthCode,
 *                 RedeemAuthCode, RefreshGrant, RevokeRefreshToken,
 *                 GetUserClaims (the gateway only)
 *   store_flow.c  the SQL of codes, grants, tokens, consents and claims
 *   api_totp.c    SetupTotp, ConfirmTotp, DisableTotp (a person for themself)
 *
 * docs/oidc.md ("Identity's side of the flow") has the design.
 */

/* Random bytes of session tokens, codes and refresh tokens: 43 base64url
 * characters each. Only their SHA-256 is kept. */
#define IDENT_FLOW_TOKEN_BYTES 32
#define IDENT_FLOW_TOKEN_LEN 43
/* Most scopes in one request, and the longest nonce kept. */
#define IDENT_SCOPE_MAX 32
#define IDENT_NONCE_MAX 512

/* Lifetimes: defaults and bounds of the KREIDE_*_TTL settings (seconds). */
#define IDENT_SSO_SESSION_TTL_DEFAULT 43200
#define IDENT_AUTH_CODE_TTL_DEFAULT 60
#define IDENT_ACCESS_TOKEN_TTL_DEFAULT 600
#define IDENT_REFRESH_TOKEN_TTL_DEFAULT (30 * 86400)

/* Redis: a session is a hash under this prefix and the hex SHA-256 of its
 * token; revoked access tokens as the gateway records them (gateway.h's
 * GW_REVOKED_KEY_PREFIX and GW_REVOKED_CHANNEL, which must stay equal). */
#define IDENT_SSO_KEY_PREFIX "kreide:sso:"
#define IDENT_SSO_KEY_LEN (sizeof(IDENT_SSO_KEY_PREFIX) - 1 + 64)
#define IDENT_REVOKED_KEY_PREFIX "kreide:revoked:jti:"
#define IDENT_REVOKED_CHANNEL "kreide.tokens.revoked"
/* A revocation outlives the token by the gateway's clock leeway. */
#define IDENT_REVOKE_LEEWAY_S 30

/* ------------------------------------------------------------- flow.c */

/* A list of distinct scope tokens, in the order first given. Strings
 * borrowed from wherever they were parsed. */
typedef struct {
    size_t n;
    const char *v[IDENT_SCOPE_MAX];
} ident_scopes;

/* Splits a space-separated scope parameter (RFC 6749 section 3.3) into
 * `out`, dropping repeats; runs of spaces count as one. The tokens are
 * copied into `arena`. Returns 0, or -1 when a token is not a valid scope
 * token (kr_oauth_scope_token_valid) or there are more than IDENT_SCOPE_MAX
 * distinct ones. "" gives an empty list. */
int ident_scopes_parse(kr_arena *arena, const char *text, ident_scopes *out);

/* True when the list holds `name`. */
bool ident_scopes_has(const ident_scopes *s, const char *name);

/* True when every scope of `s` is in `list` (n entries). */
bool ident_scopes_within(const ident_scopes *s, char *const *list, size_t n);

/* Removes `name` from the list when present. */
void ident_scopes_remove(ident_scopes *s, const char *name);

/* The scopes joined by single spaces, in `arena`. */
char *ident_scopes_join(kr_arena *arena, const ident_scopes *s);

/* True when `s` has the shape of our session tokens, codes and refresh
 * tokens: IDENT_FLOW_TOKEN_LEN characters of the base64url alphabet. */
bool ident_flow_token_valid(const char *s);

/* A new random token of IDENT_FLOW_TOKEN_BYTES as base64url into `out`
 * (IDENT_FLOW_TOKEN_LEN + 1 bytes). */
void ident_flow_token_new(char out[IDENT_FLOW_TOKEN_LEN + 1]);

/* SHA-256 of the token's text. */
void ident_flow_token_hash(const char *token, uint8_t out[32]);

/* The Redis key of the session whose token is `token`:
 * IDENT_SSO_KEY_PREFIX and the hex SHA-256 of the token. */
void ident_session_key(const char *token, char out[IDENT_SSO_KEY_LEN + 1]);

/* The message published on IDENT_REVOKED_CHANNEL, exactly as the gateway's
 * /oidc/revoke sends it: {"jti":"<jti>","until":<until>}. Caller frees. */
char *ident_revocation_json(const char *jti, int64_t until);

/* What a presented authorization code deserves (RFC 6749 section 4.1.3,
 * RFC 7636 section 4.6), in the order checked. */
typedef enum {
    IDENT_AUTHCODE_OK = 0,
    IDENT_AUTHCODE_UNKNOWN,        /* no such code */
    IDENT_AUTHCODE_OTHER_CLIENT,   /* issued to another client: nothing changes */
    IDENT_AUTHCODE_REPLAYED,       /* used before: its grant is revoked */
    IDENT_AUTHCODE_EXPIRED,        /* past its lifetime: deleted */
    IDENT_AUTHCODE_WRONG_REDIRECT, /* another redirect_uri: the code is used up */
    IDENT_AUTHCODE_WRONG_VERIFIER, /* PKCE failed, or a verifier without a challenge: used up */
} ident_authcode_verdict;

/* The stored facts about a code that the verdict depends on. */
typedef struct {
    const char *client_id;
    const char *redirect_uri;
    const char *code_challenge; /* NULL or "" when the request had none */
    int64_t expires_at;         /* Unix seconds */
    bool used;
} ident_authcode_facts;

/* Judges a redemption by `client_id` with `redirect_uri` and
 * `code_verifier` ("" for none) at `now`. */
ident_authcode_verdict ident_authcode_judge(const ident_authcode_facts *f, const char *client_id, const char *redirect_uri,
                                            const char *code_verifier, int64_t now);

/* A static English reason for a verdict, for the invalid_grant message. */
const char *ident_authcode_verdict_text(ident_authcode_verdict v);

/* What a presented refresh token deserves, in the order checked. */
typedef enum {
    IDENT_REFRESH_OK = 0,
    IDENT_REFRESH_UNKNOWN,      /* no such token */
    IDENT_REFRESH_OTHER_CLIENT, /* issued to another client: nothing changes */
    IDENT_REFRESH_REVOKED,      /* its family was revoked */
    IDENT_REFRESH_REUSED,       /* rotated before: the family is revoked */
    IDENT_REFRESH_EXPIRED,      /* past its lifetime: deleted */
} ident_refresh_verdict;

typedef struct {
    const char *client_id; /* the grant's */
    int64_t expires_at;
    bool used;
    bool revoked; /* the grant was revoked */
} ident_refresh_facts;

ident_refresh_verdict ident_refresh_judge(const ident_refresh_facts *f, const char *client_id, int64_t now);

/* A static English reason for a verdict. */
const char *ident_refresh_verdict_text(ident_refresh_verdict v);

/* ------------------------------------------------------- flow_redis.c */

/* An SSO session as Redis keeps it (strings borrowed or from an arena). */
typedef struct {
    const char *session_id;
    const char *user_id;
    const char *username;
    int64_t auth_time;
    int64_t expires_at;
    const char *amr; /* space-separated: "pwd" or "pwd otp" */
} ident_session;

typedef enum {
    IDENT_REDIS_OK = 0,
    IDENT_REDIS_NOT_FOUND, /* no such session, or expired */
    IDENT_REDIS_ERROR,     /* Redis unreachable or answering oddly; logged */
} ident_redis_result;

/* Stores a session under `key` for `ttl_s` seconds (one atomic script). */
ident_redis_result ident_session_put(kr_redis *r, const char *key, const ident_session *s, int64_t ttl_s);

/* Reads the session under `key` live at `now` into `out` (strings from
 * `arena`). */
ident_redis_result ident_session_get(kr_redis *r, kr_arena *arena, const char *key, int64_t now, ident_session *out);

/* Deletes the session under `key` (absent is fine). */
ident_redis_result ident_session_delete(kr_redis *r, const char *key);

/* Revokes an access token exactly as the gateway's /oidc/revoke does:
 * SET IDENT_REVOKED_KEY_PREFIX<jti> 1 EX (until - now) and PUBLISH
 * {"jti","until"} on IDENT_REVOKED_CHANNEL, in one script; `until` is the
 * token's exp plus IDENT_REVOKE_LEEWAY_S. */
ident_redis_result ident_revoke_jti(kr_redis *r, const char *jti, int64_t until, int64_t now);

/* ------------------------------------------------------- store_flow.c */

/* The consent of a person for a client covers every scope of `s`. */
ident_store_result ident_store_consent_covers(kr_rpc_ctx *ctx, const char *user_id, const char *client_id, const ident_scopes *s,
                                              bool *covers);

/* Records that the person allowed `s` to the client, merged with what was
 * allowed before. */
ident_store_result ident_store_consent_merge(kr_rpc_ctx *ctx, const char *user_id, const char *client_id, const ident_scopes *s);

/* An authorization code to store (its hash) or as stored. */
typedef struct {
    const char *client_id;
    const char *user_id;
    const char *redirect_uri;
    const char *scope;
    const char *nonce;          /* "" for none */
    const char *code_challenge; /* "" for none */
    const char *session_id;
    int64_t auth_time;
    int64_t expires_at;
} ident_authcode_row;

/* Inserts a code. NOT_FOUND when the user or client is gone. */
ident_store_result ident_store_insert_code(kr_rpc_ctx *ctx, const uint8_t hash[32], const ident_authcode_row *c);

/* What a new grant records and answers. */
typedef struct {
    const char *grant_id;
    const char *access_jti;
    int64_t access_expires_at;
    const char *refresh_token; /* NULL: none issued */
    int64_t refresh_expires_at;
} ident_issued;

/* A recorded access token that is still valid. */
typedef struct {
    const char *jti;
    int64_t expires_at;
} ident_live_jti;

/* What a redemption did: the verdict, the code's row, what was issued
 * (OK), or the access tokens to revoke (REPLAYED). */
typedef struct {
    ident_authcode_verdict verdict;
    ident_authcode_row code;
    ident_issued issued;
    const char *grant_id;   /* REPLAYED: the grant the code started, now revoked */
    ident_live_jti *revoke; /* from ctx->arena */
    size_t nrevoke;
} ident_redeemed;

/* Redeems a code in one transaction (the row locked): judges it with
 * ident_authcode_judge and acts on the verdict — on OK marks it used, creates
 * the grant, records the access token (lifetime access_ttl_s) and, when
 * `refresh_ttl_s` > 0 and the code's scope has offline_access, a refresh
 * token; on REPLAYED revokes the grant and
 * lists its live access tokens; on EXPIRED deletes the code; on a wrong
 * redirect URI or verifier marks it used. */
ident_store_result ident_store_redeem_code(kr_rpc_ctx *ctx, const uint8_t hash[32], const char *client_id, const char *redirect_uri,
                                           const char *code_verifier, int64_t now, int64_t access_ttl_s, int64_t refresh_ttl_s,
                                           ident_redeemed *out);

/* A grant as a refresh needs it. */
typedef struct {
    const char *grant_id;
    const char *client_id;
    const char *user_id;
    const char *scope;
    const char *session_id;
    int64_t auth_time;
} ident_grant_row;

/* ------------------------------------------- refresh families (flow_redis.c)
 *
 * Refresh token families in Redis (docs/oidc.md, "Refresh tokens"), which
 * keeps their rotation state while PostgreSQL keeps the grant and whether
 * it was revoked:
 *   IDENT_RT_TOKEN_PREFIX<hex SHA-256 of a token>  its grant id, until the
 *       token would expire (rotated ones too, so reuse is recognised)
 *   IDENT_RT_FAMILY_PREFIX<grant id>  a hash: client, user, scope, sid,
 *       auth_time, cur (the current token's hash), exp (its expiry), ttl
 *       (a token's lifetime), claims, cver, cuntil (the claims it carries,
 *       below),
 *       pg_until (the grant's refresh_until in PostgreSQL), epoch (the
 *       run_id of the Redis process that wrote it), revoked (a reason)
 *   IDENT_RT_JTIS_PREFIX<grant id>  a list of "<jti> <exp>": the access
 *       tokens refreshes issued, to revoke with the family */
#define IDENT_RT_TOKEN_PREFIX KR_RT_TOKEN_PREFIX
#define IDENT_RT_FAMILY_PREFIX KR_RT_FAMILY_PREFIX
#define IDENT_RT_JTIS_PREFIX KR_RT_JTIS_PREFIX
#define IDENT_RT_TOKEN_KEY_LEN (sizeof(IDENT_RT_TOKEN_PREFIX) - 1 + 64)
/* A counter identity increments after every change of the directory that
 * can change a person's claims (a context, a membership). A family carries
 * the claims of its person (packed Kreide__Identity__UserClaims, field
 * `claims`) with the counter's value when they were read (`cver`) and until
 * when they hold (`cuntil`: the next midnight, when memberships may start
 * or end, or an hour at most); the gateway's fast rotation uses them only
 * while the counter has not moved (gateway/oidc_token.c). */
#define IDENT_CLAIMS_VERSION_KEY KR_CLAIMS_VERSION_KEY
/* Longest time carried claims hold even without a change of the counter. */
#define IDENT_CLAIMS_MAX_AGE_S 3600

/* The Redis key of a refresh token whose SHA-256 is `hash`. */
void ident_rt_token_key(const uint8_t hash[32], char out[IDENT_RT_TOKEN_KEY_LEN + 1]);

/* Starts the family of grant `g` (client, user, scope, session, auth_time)
 * whose current token has the key `token_key`, expiring at `expires_at`;
 * the keys live `ttl_s` seconds. `pg_until` is the grant's refresh_until
 * in PostgreSQL. */
ident_redis_result ident_family_put(kr_redis *r, const ident_grant_row *g, const char *token_key, int64_t expires_at, int64_t ttl_s,
                                    int64_t pg_until);

/* A rotation: the presented token (its key), the client presenting it, a
 * narrowed scope ("" for none), the new token's key and lifetime, and the
 * access token to record. */
typedef struct {
    const char *token_key;
    const char *client_id;
    int64_t now;
    const char *narrow_scope;
    const char *new_token_key;
    int64_t refresh_ttl_s;
    const char *access_jti;
    int64_t access_expires_at;
} ident_rt_rotation;

/* What a rotation found; strings from the arena. */
typedef struct {
    ident_refresh_verdict verdict;
    bool lost;             /* UNKNOWN because another Redis process wrote the family */
    bool scope_too_wide;   /* OK, but the narrowing asked for more: nothing changed */
    ident_grant_row grant; /* OK, REVOKED, REUSED (and grant_id alone when lost) */
    int64_t pg_until;
    ident_live_jti *revoke; /* REUSED: the access tokens refreshes issued */
    size_t nrevoke;
} ident_rt_rotated;

/* Judges a presented refresh token and, when it is good, rotates it in one
 * script: the new token becomes the family's current one and the access
 * token is recorded. REUSED marks the family revoked. Never re-sent after a
 * broken connection (IDENT_REDIS_ERROR then). */
ident_redis_result ident_family_rotate(kr_redis *r, kr_arena *arena, const ident_rt_rotation *in, ident_rt_rotated *out);

/* Stores the person's claims (packed, `len` bytes) in the family, read
 * when the claims counter was `version` and holding until `until`, unless
 * the family rotated past the token of `token_key` meanwhile. */
ident_redis_result ident_family_claims(kr_redis *r, const char *grant_id, const char *token_key, const uint8_t *claims, size_t len,
                                       const char *version, int64_t until);

/* The claims counter's value ("0" before the first change), in `arena`. */
ident_redis_result ident_claims_version(kr_redis *r, kr_arena *arena, const char **version);

/* Increments the claims counter: call after a change that can alter what
 * claims say commits. */
ident_redis_result ident_claims_changed(kr_redis *r);

/* Records in the family that PostgreSQL's refresh_until is now `until`. */
ident_redis_result ident_family_extended(kr_redis *r, const char *grant_id, int64_t until);

/* Marks a family revoked (an earlier reason stays) and hands over the
 * access tokens its refreshes issued (arena). A missing family is fine. */
ident_redis_result ident_family_revoke(kr_redis *r, kr_arena *arena, const char *grant_id, const char *reason,
                                       ident_live_jti **jtis, size_t *n);

/* What ident_family_find says of a token's family (strings from the
 * arena). */
typedef struct {
    const char *grant_id;
    const char *client_id;
    const char *user_id;
    const char *scope;
    const char *claims_version; /* the claims counter now */
} ident_rt_found;

/* The family of a token's key, whatever its state; NOT_FOUND when Redis
 * knows none. */
ident_redis_result ident_family_find(kr_redis *r, kr_arena *arena, const char *token_key, ident_rt_found *out);

/* What PostgreSQL says of a grant a refresh rotated in Redis. */
typedef struct {
    bool revoked;             /* the grant was revoked (its family must end) */
    bool client_ok;           /* the client is enabled and registered for refresh_token */
    const char *id_token_alg; /* the client's */
    int64_t next_midnight;    /* when today's memberships may change by date alone */
} ident_grant_state;

/* In one statement: the grant `grant_id` of `client_id` and `user_id`
 * (state into *state) and the person's claims (names with `names`, schools
 * always). NOT_FOUND when the grant or the person is gone. */
ident_store_result ident_store_grant_claims(kr_rpc_ctx *ctx, const char *grant_id, const char *client_id, const char *user_id,
                                            bool names, Kreide__Identity__UserClaims *out, ident_grant_state *state);

/* Revokes a grant (kept if it already was; reason code_replayed,
 * refresh_reused or revoked_by_client) and lists its access tokens recorded
 * in PostgreSQL that are still valid at `now`. */
ident_store_result ident_store_revoke_grant(kr_rpc_ctx *ctx, const char *grant_id, const char *reason, int64_t now,
                                            ident_live_jti **revoke, size_t *nrevoke);

/* Marks (or clears) that Redis has not heard of the grant's revocation. */
ident_store_result ident_store_redis_pending(kr_rpc_ctx *ctx, const char *grant_id, bool pending);

/* Up to `limit` grants whose revocation Redis has not heard of, with their
 * reasons (arena). */
ident_store_result ident_store_list_redis_pending(kr_rpc_ctx *ctx, int limit, const char ***grant_ids, const char ***reasons,
                                                  size_t *n);

/* Moves the grant's refresh_until to `until` (a family lives on in Redis
 * past what PostgreSQL was told). */
ident_store_result ident_store_extend_grant(kr_rpc_ctx *ctx, const char *grant_id, int64_t until);

/* The claims of a person: names with `names`, schools (with roles,
 * Schulconnex roles and the groups of memberships valid today) with
 * `schools`. NOT_FOUND when no such user. */
ident_store_result ident_store_user_claims(kr_rpc_ctx *ctx, const char *user_id, bool names, bool schools,
                                           Kreide__Identity__UserClaims *out);

/* Deletes up to `limit` rows of each kind that nothing needs any more:
 * expired codes without a grant, expired access tokens, and grants with
 * neither access tokens nor a family that may still refresh. Rows another transaction holds are skipped. */
ident_store_result ident_store_flow_cleanup(kr_rpc_ctx *ctx, int limit);

/* ---------------------------------------------------- api_flow.c, api_totp.c */

/* The flow's methods and the TOTP methods; main.c serves them after the
 * credential methods. */
extern const kr_rpc_method ident_flow_methods[];
extern const size_t ident_flow_nmethods;
extern const kr_rpc_method ident_totp_methods[];
extern const size_t ident_totp_nmethods;

#endif
