/* The browser's side of the OpenID Connect provider: the authorization
 * endpoint (OpenID Connect Core 1.0 section 3.1.2), the login, enrollment
 * and consent forms, and RP-Initiated Logout 1.0.
 *
 * The gateway keeps no state between the pages: the pending authorization
 * request travels sealed in the forms' `request` field (oidc_flow.c), the
 * SSO session is identity's (in Redis) and reaches us as the `kreide_sso`
 * cookie, and every form carries a CSRF token that must equal the
 * `kreide_csrf` cookie (double submit). Every identity call is made as the
 * gateway itself (a SERVICE caller "gateway" in a sealed envelope),
 * asynchronously on the request's loop.
 *
 * Until a request's redirect URI matched one registered for its client,
 * every error is a page here; afterwards errors go back to the client
 * (RFC 6749 section 4.1.2.1) with `state` and `iss` (RFC 9207). */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "identity.pb-c.h"
#include "kr_log.h"
#include "oidc.h"

#define IDENTITY "kreide.identity.Identity/"
#define COOKIE_CSRF "kreide_csrf"
/* Longest session token taken from a cookie; identity's are 43 characters. */
#define SSO_TOKEN_MAX 128
/* Accounts one browser keeps signed in at once (siblings sharing a
 * device): the SSO cookie holds their session tokens, newest first,
 * separated by '.', which base64url never contains. */
#define SSO_MAX_SESSIONS 4

/* ------------------------------------------------------------ the flow */

/* One browser request waiting for identity. Lives outside the request's
 * pool because the request may be gone (the browser gave up) when identity
 * answers; every string it points to is in the request's pool and is read
 * only while the request lives. */
typedef struct st_flow_t flow;
typedef void (*flow_step)(flow *f, h2o_req_t *req, kr_rpc_result *res);

typedef struct {
    flow *f;
} flow_guard;

typedef enum { AFTER_LOGIN_HOME, AFTER_LOGIN_AUTHORIZE } after_login;

struct st_flow_t {
    h2o_req_t *req; /* NULL while nobody waits, or once the request was disposed */
    flow_guard *guard;
    gw_thread *thread;
    flow_step next;
    /* the pending authorization request, when there is one */
    gw_oidc_authz authz;
    const char *sso; /* the session chosen from the cookie, or the new session's token */
    /* the cookie's sessions, newest first, and the choosing among them */
    const char *sso_tokens[SSO_MAX_SESSIONS];
    size_t nsso, sso_at;
    int64_t sso_expires; /* the latest end of those seen */
    const char *sso_want;
    void (*sso_found)(flow *f, h2o_req_t *req, const Kreide__Identity__SessionInfo *s);
    void (*sso_none)(flow *f, h2o_req_t *req);
    void (*sso_unavailable)(flow *f, h2o_req_t *req);
    /* login and enrollment */
    const char *username;
    const char *password;
    /* logout */
    gw_oidc_form params;
    const char *client_id, *client_name, *post_logout_uri, *state, *hint, *hint_sub;
    gw_lang lang;
    bool waiting; /* an identity call is in flight */
    bool has_authz;
    bool sso_changed; /* one was found ended: the cookie is written again */
    bool ending_all;  /* logout: every session of the cookie ends */
    bool consent_given;
    bool asked_totp; /* the form had the TOTP field */
    bool enrolling;  /* the form was the enrollment page */
    bool confirmed;  /* logout: posted from our own confirmation page */
};

static void on_request_disposed(void *arg)
{
    flow_guard *g = arg;
    if (g->f != NULL)
        g->f->req = NULL;
}

static flow *flow_new(h2o_req_t *req, gw_lang lang)
{
    flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    f->thread = gw_thread_of(req);
    f->lang = lang;
    f->guard = h2o_mem_alloc_shared(&req->pool, sizeof(flow_guard), on_request_disposed);
    f->guard->f = NULL;
    return f;
}

static kr_rpc_client *identity_client(void)
{
    for (size_t i = 0; i < gw.nservices; i++)
        if (strcmp(gw.services[i].name, "identity") == 0)
            return gw.services[i].client;
    abort(); /* main.c always configures identity */
}

static void on_identity_done(void *arg, kr_rpc_result *res)
{
    flow *f = arg;
    h2o_req_t *req = f->req;
    f->waiting = false;
    if (req != NULL) {
        f->req = NULL;
        f->guard->f = NULL;
        f->next(f, req, res);
    }
    kr_rpc_result_free(res);
    if (!f->waiting)
        free(f);
}

/* Calls identity's `method` as the gateway; `next` gets the answer on this
 * loop, or never when the request is gone by then. */
static void identity_call(flow *f, h2o_req_t *req, const char *method, const ProtobufCMessage *in, flow_step next)
{
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    protobuf_c_message_pack(in, body);
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = GW_OWN_CLIENT_ID;
    kr_rpc_request rq = {
        .method = method,
        .request_id = gw_request_id(req),
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
        .alone = gw_rpc_alone(method),
    };
    f->next = next;
    f->req = req;
    f->guard->f = f;
    f->waiting = true;
    kr_rpc_h2o_call(f->thread->rpc, identity_client(), &rq, on_identity_done, f);
}

/* Starts a flow's first call; the flow frees itself when done. */
static void flow_start(flow *f, h2o_req_t *req, const char *method, const ProtobufCMessage *in, flow_step next)
{
    identity_call(f, req, method, in, next);
}

static bool transport_failed(const kr_rpc_result *res)
{
    return res->status == KREIDE__STATUS__UNAVAILABLE || res->status == KREIDE__STATUS__DEADLINE_EXCEEDED;
}

static bool code_is(const kr_rpc_result *res, const char *code)
{
    return res->error_code != NULL && strcmp(res->error_code, code) == 0;
}

/* ------------------------------------------------------------- requests */

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static bool is_get(h2o_req_t *req)
{
    return method_is(req, "GET") || method_is(req, "HEAD");
}

static bool is_form_post(h2o_req_t *req)
{
    if (!method_is(req, "POST"))
        return false;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char form[] = "application/x-www-form-urlencoded";
    size_t n = sizeof(form) - 1;
    return v.len >= n && h2o_lcstris(v.base, n, form, n) && (v.len == n || v.base[n] == ';' || v.base[n] == ' ');
}

/* The query of a GET, or the form body of a POST. */
static int read_params(h2o_req_t *req, gw_oidc_form *form)
{
    const char *bad = NULL;
    if (is_get(req)) {
        if (req->query_at == SIZE_MAX) {
            form->n = 0;
            return GW_OIDC_OK;
        }
        return gw_oidc_form_parse(&req->pool, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1, NULL, form,
                                  &bad);
    }
    return gw_oidc_form_parse(&req->pool, req->entity.base != NULL ? req->entity.base : "", req->entity.len, NULL, form, &bad);
}

/* The first cookie called `name` in any Cookie header (HTTP/2 sends one
 * header per cookie), copied into the pool; NULL when there is none. */
static const char *cookie(h2o_req_t *req, const char *name)
{
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
        h2o_iovec_t v, h = req->headers.entries[i].value;
        if (gw_oidc_cookie_find(h.base, h.len, name, &v))
            return h2o_strdup(&req->pool, v.base, v.len).base;
    }
    return NULL;
}

static bool token_chars(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n > 0 && n <= SSO_TOKEN_MAX;
}

/* The SSO cookie's session tokens, newest first, into f->sso_tokens;
 * pieces that cannot be tokens are left out. */
static size_t sso_cookie_tokens(h2o_req_t *req, flow *f)
{
    f->nsso = 0;
    f->sso_at = 0;
    const char *v = cookie(req, GW_SSO_COOKIE);
    while (v != NULL && *v != '\0' && f->nsso < SSO_MAX_SESSIONS) {
        const char *dot = strchr(v, '.');
        size_t n = dot != NULL ? (size_t)(dot - v) : strlen(v);
        if (token_chars(v, n))
            f->sso_tokens[f->nsso++] = h2o_strdup(&req->pool, v, n).base;
        v = dot != NULL ? dot + 1 : NULL;
    }
    return f->nsso;
}
static bool secure_cookies(void)
{
    return strncmp(gw.issuer, "https:", 6) == 0;
}

static void set_cookie(h2o_req_t *req, h2o_iovec_t value)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, value.base, value.len);
}

/* The session cookie: sent on top-level navigations from other sites (the
 * relying party's redirect here), hence Lax, never to scripts. */
static void set_sso_cookie(h2o_req_t *req, const char *token, int64_t expires_at)
{
    int64_t max_age = expires_at - kr_now_ms() / 1000;
    set_cookie(req,
               gw_oidc_cookie_build(&req->pool, GW_SSO_COOKIE, token, "/", max_age > 0 ? max_age : 0, "Lax", secure_cookies()));
}

static void clear_sso_cookie(h2o_req_t *req)
{
    set_cookie(req, gw_oidc_cookie_build(&req->pool, GW_SSO_COOKIE, "", "/", 0, "Lax", secure_cookies()));
}

/* Writes the cookie with f's sessions (clears it when none is left). */
static void write_sso_cookie(flow *f, h2o_req_t *req)
{
    if (f->nsso == 0) {
        clear_sso_cookie(req);
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < f->nsso; i++)
        len += strlen(f->sso_tokens[i]) + 1;
    char *v = h2o_mem_alloc_pool(&req->pool, len), *p = v;
    for (size_t i = 0; i < f->nsso; i++) {
        size_t n = strlen(f->sso_tokens[i]);
        memcpy(p, f->sso_tokens[i], n);
        p += n;
        *p++ = i + 1 < f->nsso ? '.' : '\0';
    }
    set_sso_cookie(req, v, f->sso_expires);
}

/* Forgets session `i` of the cookie. */
static void drop_session(flow *f, size_t i)
{
    if (i >= f->nsso)
        return;
    memmove(&f->sso_tokens[i], &f->sso_tokens[i + 1], (f->nsso - i - 1) * sizeof(f->sso_tokens[0]));
    f->nsso--;
    f->sso_changed = true;
}

static size_t session_index(const flow *f, const char *token)
{
    for (size_t i = 0; i < f->nsso; i++)
        if (token != NULL && strcmp(f->sso_tokens[i], token) == 0)
            return i;
    return SIZE_MAX;
}

/* The CSRF token for a page's form: the browser's cookie when it has one
 * of the right shape, else a new one. Lax rather than Strict: the cookie
 * then also comes along on the relying party's redirect here, so a second
 * sign-in in another tab keeps it instead of replacing it under the first
 * tab's form. The check does not rest on SameSite: a cross-site page can
 * neither read the cookie nor set it for us. */
static const char *page_csrf(h2o_req_t *req)
{
    const char *have = cookie(req, COOKIE_CSRF);
    if (have != NULL && gw_oidc_csrf_shape(have, strlen(have)))
        return have;
    char *token = h2o_mem_alloc_pool(&req->pool, GW_OIDC_CSRF_LEN + 1);
    gw_oidc_csrf_new(token);
    set_cookie(req, gw_oidc_cookie_build(&req->pool, COOKIE_CSRF, token, "/oidc", -1, "Lax", secure_cookies()));
    return token;
}

/* The double-submit check of a posted form. */
static bool csrf_ok(h2o_req_t *req, const gw_oidc_form *form)
{
    const char *have = cookie(req, COOKIE_CSRF);
    return have != NULL && gw_oidc_csrf_valid(have, strlen(have), gw_oidc_form_get(form, "csrf"));
}

/* ------------------------------------------------------------- answers */

static void send_redirect(h2o_req_t *req, h2o_iovec_t location)
{
    gw_add_common_headers(req);
    req->res.status = 303;
    req->res.reason = "See Other";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, location.base, location.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = 0;
    h2o_send_inline(req, "", 0);
}

/* An error back to the client, whose redirect URI matched. */
static void redirect_error(h2o_req_t *req, const gw_oidc_authz *a, const char *error, const char *description)
{
    kr_log(KR_LOG_INFO, "authorization refused", "client_id", a->client_id, "error", error, NULL);
    send_redirect(req, gw_oidc_redirect_error(&req->pool, a->redirect_uri, error, description, a->state, gw.issuer));
}

static void error_page(h2o_req_t *req, int status, gw_lang lang, gw_html_msg msg, const char *code)
{
    gw_oidc_send_error_page(req, status, lang, msg, code);
}

static const char *seal(h2o_req_t *req, const gw_oidc_authz *a)
{
    return gw_oidc_authz_seal(&req->pool, gw.internal_keys, a, kr_now_ms() / 1000).base;
}

typedef struct {
    const char *username;
    gw_html_msg error;
    bool totp;
    long wait_seconds;
    int status;
} login_view;

static void show_login(h2o_req_t *req, flow *f, login_view v)
{
    const gw_oidc_authz *a = f != NULL && f->has_authz ? &f->authz : NULL;
    gw_lang lang = f != NULL ? f->lang : GW_LANG_DE;
    gw_html_login p = {
        .form = {.lang = lang, .csrf_token = page_csrf(req), .request = a != NULL ? seal(req, a) : NULL, .error = v.error},
        .client_name = a != NULL ? a->client_name : NULL,
        .username = v.username != NULL ? v.username
                    : a != NULL        ? a->login_hint
                                       : NULL,
        .totp = v.totp,
        .wait_seconds = v.wait_seconds,
    };
    h2o_iovec_t page;
    if (gw_html_render_login(&req->pool, &p, &page) != GW_HTML_OK) {
        error_page(req, 400, lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return;
    }
    gw_oidc_send_page(req, v.status != 0 ? v.status : 200, lang, page);
}

static void show_consent(h2o_req_t *req, flow *f)
{
    const gw_oidc_authz *a = &f->authz;
    char *copy = h2o_strdup(&req->pool, a->scope, SIZE_MAX).base;
    size_t n = 1;
    for (const char *p = copy; *p != '\0'; p++)
        n += *p == ' ';
    const char **scopes = h2o_mem_alloc_pool(&req->pool, n * sizeof(*scopes));
    n = 0;
    for (char *save = NULL, *s = strtok_r(copy, " ", &save); s != NULL; s = strtok_r(NULL, " ", &save))
        scopes[n++] = s;
    gw_html_consent p = {
        .form = {.lang = f->lang, .csrf_token = page_csrf(req), .request = seal(req, a)},
        .client_name = a->client_name != NULL ? a->client_name : a->client_id,
        .scopes = scopes,
        .nscopes = n,
    };
    h2o_iovec_t page;
    if (gw_html_render_consent(&req->pool, &p, &page) != GW_HTML_OK) {
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return;
    }
    gw_oidc_send_page(req, 200, f->lang, page);
}

/* Opens the form's sealed `request`; false after answering with an error
 * page when it is missing (and `required`), altered or expired. */
static bool open_request(h2o_req_t *req, flow *f, const gw_oidc_form *form, bool required)
{
    const char *sealed = gw_oidc_form_get(form, "request");
    if (sealed == NULL) {
        if (!required)
            return true;
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return false;
    }
    int rv = gw_oidc_authz_unseal(&req->pool, gw.internal_keys, sealed, strlen(sealed), kr_now_ms() / 1000, &f->authz);
    if (rv == GW_OIDC_EEXPIRED) {
        error_page(req, 400, f->lang, GW_HTML_MSG_REQUEST_EXPIRED, "request_expired");
        return false;
    }
    if (rv != GW_OIDC_OK) {
        kr_log(KR_LOG_WARN, "a sign-in form came back with an altered request", "error", gw_oidc_strerror(rv), NULL);
        error_page(req, 403, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return false;
    }
    f->has_authz = true;
    f->lang = gw_oidc_lang(req, f->authz.ui_locales);
    return true;
}

/* The links between the login and enrollment pages carry the pending
 * request in the query; a stale or altered one is simply dropped. */
static void carried_request(h2o_req_t *req, flow *f, const gw_oidc_form *query)
{
    const char *sealed = gw_oidc_form_get(query, "request");
    if (sealed != NULL &&
        gw_oidc_authz_unseal(&req->pool, gw.internal_keys, sealed, strlen(sealed), kr_now_ms() / 1000, &f->authz) == GW_OIDC_OK) {
        f->has_authz = true;
        f->lang = gw_oidc_lang(req, f->authz.ui_locales);
    }
}

/* ------------------------------------------------- issuing the code */

static void need_login(flow *f, h2o_req_t *req, gw_html_msg why);

static void on_code(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    const gw_oidc_authz *a = &f->authz;
    if (res->status == KREIDE__STATUS__OK) {
        Kreide__Identity__AuthCode *code = kreide__identity__auth_code__unpack(NULL, res->body_len, res->body);
        if (code == NULL || code->code == NULL || code->code[0] == '\0') {
            if (code != NULL)
                kreide__identity__auth_code__free_unpacked(code, NULL);
            redirect_error(req, a, "server_error", "the authorization code could not be read");
            return;
        }
        kr_log(KR_LOG_INFO, "authorization code issued", "client_id", a->client_id, NULL);
        send_redirect(req, gw_oidc_redirect_code(&req->pool, a->redirect_uri, code->code, a->state, gw.issuer));
        kreide__identity__auth_code__free_unpacked(code, NULL);
        return;
    }
    if (code_is(res, "oidc.consent_required")) {
        if (a->prompt & GW_OIDC_PROMPT_NONE)
            redirect_error(req, a, "consent_required", "the person has not allowed this client these scopes");
        else
            show_consent(req, f);
        return;
    }
    if (res->status == KREIDE__STATUS__NOT_FOUND || res->status == KREIDE__STATUS__UNAUTHENTICATED) {
        /* The session ended between the pages. */
        size_t i = session_index(f, f->sso);
        if (i != SIZE_MAX) {
            drop_session(f, i);
            write_sso_cookie(f, req);
        } else {
            clear_sso_cookie(req);
        }
        need_login(f, req, GW_HTML_MSG_SIGN_IN_AGAIN);
        return;
    }
    if (transport_failed(res)) {
        redirect_error(req, a, "temporarily_unavailable", "sign-in is unavailable for a moment");
        return;
    }
    if (code_is(res, "oidc.access_denied"))
        redirect_error(req, a, "access_denied", "this client is for the people of its own school only");
    else if (code_is(res, "oidc.invalid_scope"))
        redirect_error(req, a, "invalid_scope", "the scope is not allowed for this client");
    else if (code_is(res, "oidc.unauthorized_client") || res->status == KREIDE__STATUS__PERMISSION_DENIED)
        redirect_error(req, a, "unauthorized_client", "this client may not use the authorization code flow");
    else if (code_is(res, "oidc.invalid_request") || res->status == KREIDE__STATUS__INVALID_ARGUMENT)
        redirect_error(req, a, "invalid_request", "the authorization request is not valid");
    else {
        kr_log(KR_LOG_ERROR, "IssueAuthCode failed", "error", res->error_code, "message", res->message, NULL);
        redirect_error(req, a, "server_error", "the authorization code could not be issued");
    }
}

/* The person is signed in (f->sso): the code, or the consent page. */
static void issue_code(flow *f, h2o_req_t *req)
{
    const gw_oidc_authz *a = &f->authz;
    /* prompt=consent asks again, except for the installation's own apps,
     * which never ask. */
    if (!f->consent_given && (a->prompt & GW_OIDC_PROMPT_CONSENT) && !a->first_party) {
        show_consent(req, f);
        return;
    }
    Kreide__Identity__IssueAuthCodeRequest in = KREIDE__IDENTITY__ISSUE_AUTH_CODE_REQUEST__INIT;
    in.session_token = (char *)f->sso;
    in.client_id = (char *)a->client_id;
    in.redirect_uri = (char *)a->redirect_uri;
    in.scope = (char *)a->scope;
    in.nonce = (char *)(a->nonce != NULL ? a->nonce : "");
    in.code_challenge = (char *)(a->code_challenge != NULL ? a->code_challenge : "");
    in.code_challenge_method = (char *)(a->code_challenge_method != NULL ? a->code_challenge_method : "");
    in.consent_given = f->consent_given;
    identity_call(f, req, IDENTITY "IssueAuthCode", &in.base, on_code);
}

/* No usable session: the login page, or login_required for prompt=none. */
static void need_login(flow *f, h2o_req_t *req, gw_html_msg why)
{
    if (f->authz.prompt & GW_OIDC_PROMPT_NONE) {
        redirect_error(req, &f->authz, "login_required", "nobody is signed in");
        return;
    }
    show_login(req, f, (login_view){.error = why});
}

/* --------------------------------------------- choosing a cookie's session */

static void ask_session(flow *f, h2o_req_t *req);

/* Whether a session is the one wanted: anyone's when `want` is NULL, else
 * the person named by user name or id (a login_hint, an id_token_hint's
 * sub). Never another person's. */
static bool session_is(const Kreide__Identity__SessionInfo *s, const char *want)
{
    return want == NULL || (s->username != NULL && strcasecmp(s->username, want) == 0) ||
           (s->user_id != NULL && strcasecmp(s->user_id, want) == 0);
}

static void on_session_asked(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status == KREIDE__STATUS__OK) {
        Kreide__Identity__SessionInfo *s = kreide__identity__session_info__unpack(NULL, res->body_len, res->body);
        if (s == NULL) {
            f->sso_unavailable(f, req);
            return;
        }
        if (s->expires_at > f->sso_expires)
            f->sso_expires = s->expires_at;
        if (session_is(s, f->sso_want)) {
            f->sso = f->sso_tokens[f->sso_at];
            if (f->sso_changed)
                write_sso_cookie(f, req);
            f->sso_found(f, req, s);
            kreide__identity__session_info__free_unpacked(s, NULL);
            return;
        }
        kreide__identity__session_info__free_unpacked(s, NULL);
        f->sso_at++;
    } else if (transport_failed(res) || res->status == KREIDE__STATUS__INTERNAL) {
        f->sso_unavailable(f, req);
        return;
    } else {
        drop_session(f, f->sso_at); /* unknown, expired or ended */
    }
    ask_session(f, req);
}

static void ask_session(flow *f, h2o_req_t *req)
{
    if (f->sso_at >= f->nsso) {
        f->sso = NULL;
        if (f->sso_changed)
            write_sso_cookie(f, req);
        f->sso_none(f, req);
        return;
    }
    Kreide__Identity__GetSessionRequest in = KREIDE__IDENTITY__GET_SESSION_REQUEST__INIT;
    in.session_token = (char *)f->sso_tokens[f->sso_at];
    identity_call(f, req, IDENTITY "GetSession", &in.base, on_session_asked);
}

/* Finds, among the cookie's sessions (sso_cookie_tokens), the newest one of
 * the person `want` (anyone's when NULL) and calls `found` with it as
 * f->sso, or `none`; sessions found ended on the way are dropped from the
 * cookie. `unavailable` when identity cannot say. */
static void choose_session(flow *f, h2o_req_t *req, const char *want,
                           void (*found)(flow *, h2o_req_t *, const Kreide__Identity__SessionInfo *),
                           void (*none)(flow *, h2o_req_t *), void (*unavailable)(flow *, h2o_req_t *))
{
    f->sso_want = want;
    f->sso_found = found;
    f->sso_none = none;
    f->sso_unavailable = unavailable;
    f->sso_at = 0;
    ask_session(f, req);
}

/* ------------------------------------------------------------ authorize */

static void authorize_with(flow *f, h2o_req_t *req, const Kreide__Identity__SessionInfo *s)
{
    int64_t age = kr_now_ms() / 1000 - s->auth_time;
    /* max_age=0 asks for a sign-in now, like prompt=login. */
    int64_t max_age = f->authz.max_age;
    if ((f->authz.prompt & GW_OIDC_PROMPT_LOGIN) || max_age == 0 || (max_age > 0 && age > max_age)) {
        need_login(f, req, GW_HTML_MSG_NONE);
        return;
    }
    issue_code(f, req);
}

static void authorize_without(flow *f, h2o_req_t *req)
{
    need_login(f, req, GW_HTML_MSG_NONE);
}

static void authorize_unavailable(flow *f, h2o_req_t *req)
{
    redirect_error(req, &f->authz, "temporarily_unavailable", "sign-in is unavailable for a moment");
}

static void on_client(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status != KREIDE__STATUS__OK) {
        if (transport_failed(res) || res->status == KREIDE__STATUS__INTERNAL)
            error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
        else
            error_page(req, 400, f->lang, GW_HTML_MSG_UNKNOWN_CLIENT, "invalid_client");
        return;
    }
    Kreide__Identity__OidcClient *cl = kreide__identity__oidc_client__unpack(NULL, res->body_len, res->body);
    if (cl == NULL) {
        error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
        return;
    }
    gw_oidc_authz *a = &f->authz;
    if (cl->disabled || strcmp(cl->client_id, a->client_id) != 0) {
        kreide__identity__oidc_client__free_unpacked(cl, NULL);
        error_page(req, 400, f->lang, GW_HTML_MSG_UNKNOWN_CLIENT, "invalid_client");
        return;
    }
    if (gw_oidc_redirect_uri_match(a->redirect_uri, strlen(a->redirect_uri), (const char *const *)cl->redirect_uris,
                                   cl->n_redirect_uris) < 0) {
        kreide__identity__oidc_client__free_unpacked(cl, NULL);
        kr_log(KR_LOG_WARN, "authorization request with an unregistered redirect_uri", "client_id", a->client_id, NULL);
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REDIRECT_URI, "invalid_request");
        return;
    }
    bool code_grant = false;
    for (size_t i = 0; i < cl->n_grant_types; i++)
        code_grant = code_grant || strcmp(cl->grant_types[i], "authorization_code") == 0;
    gw_oidc_client_view view = {
        .is_public = cl->type == KREIDE__IDENTITY__CLIENT_TYPE__PUBLIC,
        .authorization_code = code_grant,
        .scopes = (const char *const *)cl->scopes,
        .nscopes = cl->n_scopes,
    };
    const char *error = NULL, *description = NULL;
    int rv = gw_oidc_authz_check(&req->pool, &f->params, &view, a, &error, &description);
    a->client_name = h2o_strdup(&req->pool, cl->name, SIZE_MAX).base;
    a->first_party = cl->first_party;
    kreide__identity__oidc_client__free_unpacked(cl, NULL);
    if (rv != 0) {
        redirect_error(req, a, error, description);
        return;
    }
    f->lang = gw_oidc_lang(req, a->ui_locales);
    if (gw_oidc_authz_seal(&req->pool, gw.internal_keys, a, 0).len > GW_OIDC_SEALED_MAX) {
        redirect_error(req, a, "invalid_request", "the request is too large");
        return;
    }
    /* The session of the person the client names (login_hint), or the
     * newest one when it names nobody. */
    if (sso_cookie_tokens(req, f) == 0) {
        need_login(f, req, GW_HTML_MSG_NONE);
        return;
    }
    choose_session(f, req, a->login_hint, authorize_with, authorize_without, authorize_unavailable);
}

static bool exact_path(h2o_req_t *req, const char *path)
{
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path)))
        return true;
    error_page(req, 404, gw_oidc_lang(req, NULL), GW_HTML_MSG_NOT_FOUND, "not_found");
    return false;
}

static int on_authorize(h2o_handler_t *self, h2o_req_t *req)
{
    if (!exact_path(req, "/oidc/authorize"))
        return 0;
    gw_lang lang = gw_oidc_lang(req, NULL);
    /* OpenID Connect Core 1.0 section 3.1.2.1: GET, or POST as a form. */
    if (!is_get(req) && !method_is(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
        error_page(req, 405, lang, GW_HTML_MSG_METHOD, "method_not_allowed");
        return 0;
    }
    if (!is_get(req) && !is_form_post(req)) {
        error_page(req, 400, lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return 0;
    }
    flow *f = flow_new(req, lang);
    if (read_params(req, &f->params) != GW_OIDC_OK) {
        /* A repeated or malformed parameter: redirect_uri cannot be trusted. */
        free(f);
        error_page(req, 400, lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return 0;
    }
    f->lang = gw_oidc_lang(req, gw_oidc_form_get(&f->params, "ui_locales"));
    const char *why = NULL;
    if (gw_oidc_authz_begin(&f->params, &f->authz, &why) != 0) {
        gw_lang l = f->lang;
        free(f);
        kr_log(KR_LOG_INFO, "authorization request refused", "why", why, NULL);
        error_page(req, 400, l, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return 0;
    }
    f->has_authz = true;
    Kreide__Identity__GetClientRequest in = KREIDE__IDENTITY__GET_CLIENT_REQUEST__INIT;
    in.client_id = (char *)f->authz.client_id;
    flow_start(f, req, IDENTITY "GetClient", &in.base, on_client);
    return 0;
}

/* ---------------------------------------------------------------- login */

/* "try again in N seconds" in identity's throttle message; 0 when absent. */
static long retry_seconds(const char *message)
{
    const char *p = message != NULL ? strstr(message, "try again in ") : NULL;
    if (p == NULL)
        return 0;
    long v = strtol(p + 13, NULL, 10);
    return v > 0 && v < 86400 ? v : 0;
}

static void after_session_started(flow *f, h2o_req_t *req)
{
    if (f->has_authz) {
        issue_code(f, req);
        return;
    }
    /* A sign-in of the portal itself. */
    send_redirect(req, h2o_iovec_init(H2O_STRLIT("/")));
}

static void on_started(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status == KREIDE__STATUS__OK) {
        Kreide__Identity__SessionInfo *s = kreide__identity__session_info__unpack(NULL, res->body_len, res->body);
        if (s == NULL || s->session_token == NULL || s->session_token[0] == '\0') {
            if (s != NULL)
                kreide__identity__session_info__free_unpacked(s, NULL);
            show_login(req, f, (login_view){.username = f->username, .error = GW_HTML_MSG_UNAVAILABLE, .status = 503});
            return;
        }
        f->sso = h2o_strdup(&req->pool, s->session_token, SIZE_MAX).base;
        /* The new session first; the others stay (another account of
         * this browser), the oldest going when there are too many. */
        sso_cookie_tokens(req, f);
        size_t at = session_index(f, f->sso);
        if (at != SIZE_MAX)
            drop_session(f, at);
        if (f->nsso == SSO_MAX_SESSIONS)
            f->nsso--;
        memmove(&f->sso_tokens[1], &f->sso_tokens[0], f->nsso * sizeof(f->sso_tokens[0]));
        f->sso_tokens[0] = f->sso;
        f->nsso++;
        f->sso_expires = s->expires_at;
        write_sso_cookie(f, req);
        kr_log(KR_LOG_INFO, "signed in", "user_id", s->user_id, "session_id", s->session_id, NULL);
        kreide__identity__session_info__free_unpacked(s, NULL);
        after_session_started(f, req);
        return;
    }
    login_view v = {.username = f->username, .totp = f->asked_totp};
    if (res->status == KREIDE__STATUS__FAILED_PRECONDITION && res->error_code != NULL &&
        strstr(res->error_code, "totp_required") != NULL) {
        /* Asked for when the password was right: first without a code,
         * then with a wrong one. */
        v.error = f->asked_totp ? GW_HTML_MSG_BAD_TOTP : GW_HTML_MSG_TOTP_REQUIRED;
        v.totp = true;
    } else if (res->status == KREIDE__STATUS__RESOURCE_EXHAUSTED) {
        v.error = GW_HTML_MSG_TOO_MANY_ATTEMPTS;
        v.wait_seconds = retry_seconds(res->message);
        v.status = 429;
        if (v.wait_seconds > 0) {
            char *ra = h2o_mem_alloc_pool(&req->pool, 24);
            int n = snprintf(ra, 24, "%ld", v.wait_seconds);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, (size_t)n);
        }
    } else if (res->status == KREIDE__STATUS__UNAUTHENTICATED || res->status == KREIDE__STATUS__INVALID_ARGUMENT ||
               res->status == KREIDE__STATUS__NOT_FOUND) {
        /* One message for every wrong part: nothing tells which it was. */
        v.error = GW_HTML_MSG_BAD_CREDENTIALS;
    } else {
        kr_log(KR_LOG_WARN, "sign-in could not be checked", "error", res->error_code, NULL);
        v.error = GW_HTML_MSG_UNAVAILABLE;
        v.status = 503;
    }
    show_login(req, f, v);
}

/* Signs in with f->username and f->password (and the TOTP code). */
static void start_session(flow *f, h2o_req_t *req, const char *totp)
{
    Kreide__Identity__StartSessionRequest in = KREIDE__IDENTITY__START_SESSION_REQUEST__INIT;
    in.username = (char *)f->username;
    in.password = (char *)f->password;
    in.totp = (char *)(totp != NULL ? totp : "");
    in.client_address = (char *)gw_peer_address(req);
    identity_call(f, req, IDENTITY "StartSession", &in.base, on_started);
}

/* The TOTP code without the spaces apps show in the middle. */
static const char *totp_digits(h2o_req_t *req, const char *typed)
{
    if (typed == NULL)
        return NULL;
    char *out = h2o_mem_alloc_pool(&req->pool, strlen(typed) + 1);
    size_t o = 0;
    for (const char *p = typed; *p != '\0'; p++)
        if (*p != ' ')
            out[o++] = *p;
    out[o] = '\0';
    return o > 0 ? out : NULL;
}

/* Reads a posted form up to the CSRF check; NULL after answering. */
static flow *posted_form(h2o_req_t *req, gw_oidc_form *form)
{
    gw_lang lang = gw_oidc_lang(req, NULL);
    if (!is_form_post(req) || read_params(req, form) != GW_OIDC_OK) {
        error_page(req, 400, lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return NULL;
    }
    /* Before anything else: a form we did not render changes nothing. */
    if (!csrf_ok(req, form)) {
        kr_log(KR_LOG_WARN, "a form was posted without a matching CSRF token", NULL);
        error_page(req, 403, lang, GW_HTML_MSG_FORM_EXPIRED, "csrf");
        return NULL;
    }
    return flow_new(req, lang);
}

static int on_login(h2o_handler_t *self, h2o_req_t *req)
{
    if (!exact_path(req, "/oidc/login"))
        return 0;
    if (is_get(req)) {
        /* The portal's own sign-in, or the way back from enrollment. */
        gw_oidc_form q;
        if (read_params(req, &q) != GW_OIDC_OK) {
            error_page(req, 400, gw_oidc_lang(req, NULL), GW_HTML_MSG_BAD_REQUEST, "invalid_request");
            return 0;
        }
        flow f = {.lang = gw_oidc_lang(req, gw_oidc_form_get(&q, "ui_locales"))};
        carried_request(req, &f, &q);
        const char *hint = gw_oidc_form_get(&q, "login_hint");
        show_login(req, &f, (login_view){.username = hint != NULL && strlen(hint) <= GW_OIDC_LOGIN_HINT_MAX ? hint : NULL});
        return 0;
    }
    if (!method_is(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
        error_page(req, 405, gw_oidc_lang(req, NULL), GW_HTML_MSG_METHOD, "method_not_allowed");
        return 0;
    }
    gw_oidc_form form;
    flow *f = posted_form(req, &form);
    if (f == NULL)
        return 0;
    if (!open_request(req, f, &form, false)) {
        free(f);
        return 0;
    }
    f->username = gw_oidc_form_get(&form, "username");
    f->password = gw_oidc_form_get(&form, "password");
    f->asked_totp = gw_oidc_form_get(&form, "totp") != NULL;
    if (f->username == NULL || f->password == NULL || strlen(f->username) > 256) {
        show_login(req, f, (login_view){.username = f->username, .error = GW_HTML_MSG_BAD_CREDENTIALS, .totp = f->asked_totp});
        free(f);
        return 0;
    }
    start_session(f, req, totp_digits(req, gw_oidc_form_get(&form, "totp")));
    return 0;
}

/* -------------------------------------------------------------- consent */

static void consent_with(flow *f, h2o_req_t *req, const Kreide__Identity__SessionInfo *s)
{
    (void)s;
    issue_code(f, req);
}

static void consent_without(flow *f, h2o_req_t *req)
{
    need_login(f, req, GW_HTML_MSG_SIGN_IN_AGAIN);
}

static int on_consent(h2o_handler_t *self, h2o_req_t *req)
{
    if (!exact_path(req, "/oidc/consent"))
        return 0;
    if (!method_is(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        error_page(req, 405, gw_oidc_lang(req, NULL), GW_HTML_MSG_METHOD, "method_not_allowed");
        return 0;
    }
    gw_oidc_form form;
    flow *f = posted_form(req, &form);
    if (f == NULL)
        return 0;
    if (!open_request(req, f, &form, true)) {
        free(f);
        return 0;
    }
    const char *decision = gw_oidc_form_get(&form, "decision");
    if (decision != NULL && strcmp(decision, "deny") == 0) {
        redirect_error(req, &f->authz, "access_denied", "the person did not allow access");
        free(f);
        return 0;
    }
    if (decision == NULL || strcmp(decision, "allow") != 0) {
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        free(f);
        return 0;
    }
    if (sso_cookie_tokens(req, f) == 0) {
        need_login(f, req, GW_HTML_MSG_SIGN_IN_AGAIN);
        free(f);
        return 0;
    }
    f->consent_given = true;
    /* The same session the authorization request chose. */
    choose_session(f, req, f->authz.login_hint, consent_with, consent_without, authorize_unavailable);
    if (!f->waiting)
        free(f);
    return 0;
}

/* ----------------------------------------------------------- enrollment */

static void show_enroll(h2o_req_t *req, flow *f, const char *username, gw_html_msg error, int status)
{
    gw_html_enroll p = {
        .form = {.lang = f->lang,
                 .csrf_token = page_csrf(req),
                 .request = f->has_authz ? seal(req, &f->authz) : NULL,
                 .error = error},
        .username = username != NULL ? username
                    : f->has_authz   ? f->authz.login_hint
                                     : NULL,
    };
    h2o_iovec_t page;
    if (gw_html_render_enroll(&req->pool, &p, &page) != GW_HTML_OK) {
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return;
    }
    gw_oidc_send_page(req, status != 0 ? status : 200, f->lang, page);
}

static void on_enrolled(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status == KREIDE__STATUS__OK) {
        kr_log(KR_LOG_INFO, "password set on the enrollment page", NULL);
        /* Signed in with the new password at once. */
        start_session(f, req, NULL);
        return;
    }
    gw_html_msg msg = GW_HTML_MSG_UNAVAILABLE;
    int status = 503;
    if (res->status == KREIDE__STATUS__RESOURCE_EXHAUSTED) {
        msg = GW_HTML_MSG_TOO_MANY_ATTEMPTS;
        status = 429;
    } else if (res->status == KREIDE__STATUS__INVALID_ARGUMENT && res->error_code != NULL &&
               strncmp(res->error_code, "password.", 9) == 0) {
        msg = GW_HTML_MSG_WEAK_PASSWORD;
        status = 200;
    } else if (res->status == KREIDE__STATUS__INVALID_ARGUMENT || res->status == KREIDE__STATUS__NOT_FOUND) {
        msg = GW_HTML_MSG_BAD_CODE;
        status = 200;
    } else {
        kr_log(KR_LOG_WARN, "enrollment could not be checked", "error", res->error_code, NULL);
    }
    show_enroll(req, f, f->username, msg, status);
}

static int on_enroll(h2o_handler_t *self, h2o_req_t *req)
{
    if (!exact_path(req, "/oidc/enroll"))
        return 0;
    if (is_get(req)) {
        gw_oidc_form q;
        if (read_params(req, &q) != GW_OIDC_OK) {
            error_page(req, 400, gw_oidc_lang(req, NULL), GW_HTML_MSG_BAD_REQUEST, "invalid_request");
            return 0;
        }
        flow f = {.lang = gw_oidc_lang(req, gw_oidc_form_get(&q, "ui_locales"))};
        carried_request(req, &f, &q);
        const char *hint = gw_oidc_form_get(&q, "login_hint");
        show_enroll(req, &f, hint != NULL && strlen(hint) <= GW_OIDC_LOGIN_HINT_MAX ? hint : NULL, GW_HTML_MSG_NONE, 200);
        return 0;
    }
    if (!method_is(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
        error_page(req, 405, gw_oidc_lang(req, NULL), GW_HTML_MSG_METHOD, "method_not_allowed");
        return 0;
    }
    gw_oidc_form form;
    flow *f = posted_form(req, &form);
    if (f == NULL)
        return 0;
    if (!open_request(req, f, &form, false)) {
        free(f);
        return 0;
    }
    f->enrolling = true;
    f->username = gw_oidc_form_get(&form, "username");
    f->password = gw_oidc_form_get(&form, "new_password");
    const char *code = gw_oidc_form_get(&form, "code"), *again = gw_oidc_form_get(&form, "new_password2");
    if (f->username == NULL || code == NULL || f->password == NULL || strlen(f->username) > 256) {
        show_enroll(req, f, f->username, GW_HTML_MSG_BAD_CODE, 200);
        free(f);
        return 0;
    }
    if (again == NULL || strcmp(again, f->password) != 0) {
        show_enroll(req, f, f->username, GW_HTML_MSG_PASSWORDS_DIFFER, 200);
        free(f);
        return 0;
    }
    Kreide__Identity__EnrollWithCodeRequest in = KREIDE__IDENTITY__ENROLL_WITH_CODE_REQUEST__INIT;
    in.username = (char *)f->username;
    in.code = (char *)code;
    in.password = (char *)f->password;
    in.client_address = (char *)gw_peer_address(req);
    flow_start(f, req, IDENTITY "EnrollWithCode", &in.base, on_enrolled);
    return 0;
}

/* --------------------------------------------------------------- logout */

/* Signed out: the way back the client asked for, or a page. */
/* Answers a logout: the cookie keeps the sessions still in f (none when
 * all ended), then the relying party's page or ours. */
static void logout_done(flow *f, h2o_req_t *req)
{
    write_sso_cookie(f, req);
    if (f->post_logout_uri != NULL) {
        gw_oidc_param p[] = {{"state", f->state}};
        send_redirect(req, gw_oidc_redirect_build(&req->pool, f->post_logout_uri, p, 1));
        return;
    }
    gw_html_signed_out s = {.lang = f->lang};
    h2o_iovec_t page;
    if (gw_html_render_signed_out(&req->pool, &s, &page) != GW_HTML_OK) {
        error_page(req, 500, f->lang, GW_HTML_MSG_UNAVAILABLE, "server_error");
        return;
    }
    gw_oidc_send_page(req, 200, f->lang, page);
}

static void end_next(flow *f, h2o_req_t *req);

static void on_ended(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status != KREIDE__STATUS__OK) {
        kr_log(KR_LOG_WARN, "a session could not be ended", "error", res->error_code, NULL);
        error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
        return;
    }
    kr_log(KR_LOG_INFO, "signed out", "client_id", f->client_id, NULL);
    drop_session(f, session_index(f, f->sso));
    f->sso = NULL;
    end_next(f, req);
}

/* Ends f->sso, or with f->ending_all every session of the cookie one
 * after the other; then logout_done. */
static void end_next(flow *f, h2o_req_t *req)
{
    if (f->ending_all && f->nsso > 0)
        f->sso = f->sso_tokens[0];
    if (f->sso == NULL) {
        logout_done(f, req);
        return;
    }
    Kreide__Identity__GetSessionRequest in = KREIDE__IDENTITY__GET_SESSION_REQUEST__INIT;
    in.session_token = (char *)f->sso;
    identity_call(f, req, IDENTITY "EndSession", &in.base, on_ended);
}

/* Every session of this browser. */
static void end_all(flow *f, h2o_req_t *req)
{
    f->ending_all = true;
    f->sso = NULL;
    end_next(f, req);
}

/* RP-Initiated Logout 1.0 section 2: ask the person, with the original
 * parameters posted back. */
static void confirm_logout(flow *f, h2o_req_t *req)
{
    gw_html_hidden fields[] = {
        {"id_token_hint", f->hint},
        {"client_id", f->client_id},
        {"post_logout_redirect_uri", f->post_logout_uri},
        {"state", f->state},
        {"ui_locales", gw_oidc_form_get(&f->params, "ui_locales")},
    };
    gw_html_logout p = {
        .form = {.lang = f->lang, .csrf_token = page_csrf(req)},
        .client_name = f->client_name,
        .fields = fields,
        .nfields = sizeof(fields) / sizeof(fields[0]),
    };
    h2o_iovec_t page;
    if (gw_html_render_logout(&req->pool, &p, &page) != GW_HTML_OK) {
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return;
    }
    gw_oidc_send_page(req, 200, f->lang, page);
}

/* The hint's person is signed in here: that is their wish, and only their
 * session ends; the browser's other accounts stay signed in. */
static void logout_with(flow *f, h2o_req_t *req, const Kreide__Identity__SessionInfo *s)
{
    (void)s;
    end_next(f, req);
}

/* The hint names nobody signed in here: a forged hint must not end
 * anyone else's session, so whoever is here is asked; confirmed on our own
 * page, the person wants this browser signed out. */
static void logout_without(flow *f, h2o_req_t *req)
{
    if (f->confirmed)
        end_all(f, req);
    else if (f->nsso > 0)
        confirm_logout(f, req);
    else
        logout_done(f, req);
}

static void logout_unavailable(flow *f, h2o_req_t *req)
{
    error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
}

static void logout_session(flow *f, h2o_req_t *req)
{
    if (sso_cookie_tokens(req, f) == 0) {
        /* A cross-site POST arrives without the (Lax) session cookie:
         * whether someone is signed in shows only on our own page. */
        if (!f->confirmed && method_is(req, "POST")) {
            confirm_logout(f, req);
            return;
        }
        logout_done(f, req);
        return;
    }
    if (f->hint_sub != NULL) {
        choose_session(f, req, f->hint_sub, logout_with, logout_without, logout_unavailable);
        return;
    }
    if (f->confirmed) {
        end_all(f, req);
        return;
    }
    confirm_logout(f, req);
}

static void on_logout_client(flow *f, h2o_req_t *req, kr_rpc_result *res)
{
    if (res->status != KREIDE__STATUS__OK) {
        if (transport_failed(res) || res->status == KREIDE__STATUS__INTERNAL)
            error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
        else
            error_page(req, 400, f->lang, GW_HTML_MSG_UNKNOWN_CLIENT, "invalid_client");
        return;
    }
    Kreide__Identity__OidcClient *cl = kreide__identity__oidc_client__unpack(NULL, res->body_len, res->body);
    if (cl == NULL) {
        error_page(req, 503, f->lang, GW_HTML_MSG_UNAVAILABLE, "temporarily_unavailable");
        return;
    }
    bool ok = f->post_logout_uri == NULL ||
              gw_oidc_redirect_uri_match(f->post_logout_uri, strlen(f->post_logout_uri),
                                         (const char *const *)cl->post_logout_redirect_uris, cl->n_post_logout_redirect_uris) >= 0;
    f->client_name = h2o_strdup(&req->pool, cl->name, SIZE_MAX).base;
    kreide__identity__oidc_client__free_unpacked(cl, NULL);
    if (!ok) {
        kr_log(KR_LOG_WARN, "logout with an unregistered post_logout_redirect_uri", "client_id", f->client_id, NULL);
        error_page(req, 400, f->lang, GW_HTML_MSG_BAD_LOGOUT_URI, "invalid_request");
        return;
    }
    logout_session(f, req);
}

static int on_logout(h2o_handler_t *self, h2o_req_t *req)
{
    if (!exact_path(req, "/oidc/logout"))
        return 0;
    gw_lang lang = gw_oidc_lang(req, NULL);
    if (!is_get(req) && !method_is(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
        error_page(req, 405, lang, GW_HTML_MSG_METHOD, "method_not_allowed");
        return 0;
    }
    flow *f = flow_new(req, lang);
    if ((!is_get(req) && !is_form_post(req)) || read_params(req, &f->params) != GW_OIDC_OK) {
        free(f);
        error_page(req, 400, lang, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return 0;
    }
    const gw_oidc_form *p = &f->params;
    f->lang = gw_oidc_lang(req, gw_oidc_form_get(p, "ui_locales"));
    /* Our own confirmation form carries the CSRF token; a relying party's
     * request does not. */
    f->confirmed = method_is(req, "POST") && gw_oidc_form_get(p, "csrf") != NULL;
    if (f->confirmed && !csrf_ok(req, p)) {
        gw_lang l = f->lang;
        free(f);
        kr_log(KR_LOG_WARN, "a logout was posted without a matching CSRF token", NULL);
        error_page(req, 403, l, GW_HTML_MSG_FORM_EXPIRED, "csrf");
        return 0;
    }
    f->client_id = gw_oidc_form_get(p, "client_id");
    f->post_logout_uri = gw_oidc_form_get(p, "post_logout_redirect_uri");
    f->state = gw_oidc_form_get(p, "state");
    f->hint = gw_oidc_form_get(p, "id_token_hint");
    const char *bad = NULL;
    if ((f->client_id != NULL && strlen(f->client_id) > GW_OIDC_CLIENT_ID_MAX) ||
        (f->state != NULL && strlen(f->state) > GW_OIDC_STATE_MAX))
        bad = "malformed";
    if (bad == NULL && f->hint != NULL) {
        kr_jwt_claims c;
        if (gw_oidc_id_token_hint(gw.jwt_keys, gw.issuer, gw.audience, f->hint, f->client_id, &c) != KR_JWT_OK) {
            bad = "id_token_hint";
        } else {
            f->hint_sub = h2o_strdup(&req->pool, c.sub, SIZE_MAX).base;
            if (f->client_id == NULL)
                f->client_id = h2o_strdup(&req->pool, c.aud, SIZE_MAX).base;
            kr_jwt_claims_clear(&c);
        }
    }
    /* Section 3: no redirect without knowing whose URI it must be. */
    if (bad == NULL && f->post_logout_uri != NULL && f->client_id == NULL)
        bad = "post_logout_redirect_uri without client_id";
    if (bad != NULL) {
        gw_lang l = f->lang;
        free(f);
        kr_log(KR_LOG_INFO, "logout request refused", "why", bad, NULL);
        error_page(req, 400, l, GW_HTML_MSG_BAD_REQUEST, "invalid_request");
        return 0;
    }
    if (f->client_id != NULL) {
        Kreide__Identity__GetClientRequest in = KREIDE__IDENTITY__GET_CLIENT_REQUEST__INIT;
        in.client_id = (char *)f->client_id;
        flow_start(f, req, IDENTITY "GetClient", &in.base, on_logout_client);
        return 0;
    }
    logout_session(f, req);
    if (!f->waiting)
        free(f);
    return 0;
}

/* --------------------------------------------------------- registration */

static void register_handler(h2o_hostconf_t *hostconf, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(hostconf, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = fn;
    gw_access_log_register(pc);
}

void gw_oidc_authorize_register(h2o_hostconf_t *hostconf)
{
    register_handler(hostconf, "/oidc/authorize", on_authorize);
    register_handler(hostconf, "/oidc/login", on_login);
    register_handler(hostconf, "/oidc/consent", on_consent);
    register_handler(hostconf, "/oidc/enroll", on_enroll);
    register_handler(hostconf, "/oidc/logout", on_logout);
}
