/*
 * html — the server-rendered pages of sign-in: login, consent, error,
 * enrollment, the logout confirmation and the signed-out page, in German
 * and English.
 *
 * Pages need no JavaScript and load nothing else: one inline style sheet,
 * forms that post to the gateway. Every dynamic string goes through
 * gw_html_escape, in text and in (always double-quoted) attribute values
 * alike. Pages are rendered into a memory pool (the request's), at most
 * GW_HTML_MAX_BYTES each. Serve them with the headers of
 * GW_HTML_CSP and `X-Frame-Options: DENY`.
 */
#ifndef GW_HTML_H
#define GW_HTML_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest rendered page, in bytes. */
#define GW_HTML_MAX_BYTES 65536

/* The Content-Security-Policy of every page: nothing may load, inline
 * styles only, forms post only to us, no framing. */
#define GW_HTML_CSP "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

/* Error codes of the renderers. */
typedef enum {
    GW_HTML_OK = 0,
    GW_HTML_ETOOBIG, /* the page would exceed GW_HTML_MAX_BYTES */
} gw_html_err;

/* ------------------------------------------------------------- languages */

typedef enum {
    GW_LANG_DE = 0, /* the default */
    GW_LANG_EN = 1,
} gw_lang;

/* The BCP 47 tag of a language ("de", "en"), for <html lang> and
 * Content-Language. */
const char *gw_html_lang_tag(gw_lang lang);

/* Chooses the page language. `ui_locales` (the OpenID Connect request
 * parameter: space-separated tags in order of preference; may be NULL) wins
 * when one of its tags is German or English. Otherwise `accept_language`
 * (the header, RFC 9110 section 12.5.4; may be NULL) decides: each supported
 * language gets the q-value of the most specific range naming its primary
 * subtag ("de-AT" counts for "de", as in RFC 4647 lookup), else that of "*";
 * the highest non-zero q wins, a tie goes to the range listed first, and
 * with no usable preference the answer is German. At most the first 32
 * ranges of a header of at most 1024 bytes are read; malformed ranges are
 * skipped. */
gw_lang gw_html_lang_negotiate(const char *ui_locales, size_t ui_len, const char *accept_language, size_t al_len);

/* -------------------------------------------------------------- escaping */

/* Escapes text for HTML element content and double- or single-quoted
 * attribute values: & < > " ' become entities. Bytes that are not UTF-8,
 * NUL and the C0 controls other than tab, line feed and carriage return
 * become U+FFFD. NULL is the empty string. The result is NUL-terminated and
 * comes from `pool`. */
h2o_iovec_t gw_html_escape(h2o_mem_pool_t *pool, const char *s, size_t len);

/* -------------------------------------------------------------- messages */

/* Texts a page can show, each in both languages. */
typedef enum {
    GW_HTML_MSG_NONE = 0,
    /* form errors (login, enrollment) */
    GW_HTML_MSG_BAD_CREDENTIALS,   /* user name or password wrong */
    GW_HTML_MSG_TOO_MANY_ATTEMPTS, /* brute-force delay in force */
    GW_HTML_MSG_FORM_EXPIRED,      /* CSRF token missing or stale */
    GW_HTML_MSG_BAD_CODE,          /* enrollment code wrong or expired */
    GW_HTML_MSG_PASSWORDS_DIFFER,  /* the two new passwords differ */
    GW_HTML_MSG_WEAK_PASSWORD,     /* refused by the password policy */
    /* error pages */
    GW_HTML_MSG_UNKNOWN_CLIENT,   /* no such client_id */
    GW_HTML_MSG_BAD_REDIRECT_URI, /* redirect_uri not registered: never redirect */
    GW_HTML_MSG_BAD_REQUEST,      /* malformed request */
    GW_HTML_MSG_NOT_FOUND,        /* no such page */
    GW_HTML_MSG_METHOD,           /* method not allowed */
    GW_HTML_MSG_UNAVAILABLE,      /* a service did not answer */
    /* added with the sign-in flow */
    GW_HTML_MSG_TOTP_REQUIRED,   /* form: the account has a second factor; password again plus the code */
    GW_HTML_MSG_SIGN_IN_AGAIN,   /* form: the session ended while the person was on a page */
    GW_HTML_MSG_BAD_LOGOUT_URI,  /* error page: post_logout_redirect_uri not registered: never redirect */
    GW_HTML_MSG_REQUEST_EXPIRED, /* error page: the pending sign-in is older than its limit */
    GW_HTML_MSG_BAD_TOTP,        /* form: the second factor's code was wrong */
    GW_HTML_MSG_COUNT_,          /* number of messages; not a message */
} gw_html_msg;

/* The text of a message in a language; never NULL ("" for NONE). */
const char *gw_html_msg_text(gw_html_msg msg, gw_lang lang);

/* ----------------------------------------------------------------- pages */

/* Fields every form page carries. Strings may be NULL (left out). */
typedef struct {
    gw_lang lang;
    const char *csrf_token; /* hidden field "csrf" */
    const char *request;    /* hidden field "request": the pending authorization request, sealed */
    gw_html_msg error;      /* shown above the form with role="alert"; NONE: no error */
} gw_html_form;

/* The login page: user name and password (and the TOTP code when `totp`),
 * posting to /oidc/login. */
typedef struct {
    gw_html_form form;
    const char *client_name; /* "to continue to ..."; NULL: not shown */
    const char *username;    /* pre-filled user name (login_hint, or the last attempt) */
    bool totp;               /* show the field for the second factor (`totp`) */
    /* With form.error GW_HTML_MSG_TOO_MANY_ATTEMPTS: the seconds to wait,
     * said in the message; 0: not known. */
    long wait_seconds;
} gw_html_login;

/* The consent page: which client asks for what, posting decision=allow or
 * decision=deny to /oidc/consent. */
typedef struct {
    gw_html_form form;
    const char *client_name;   /* required */
    const char *const *scopes; /* requested scopes; known ones are explained, others shown as they are */
    size_t nscopes;
} gw_html_consent;

/* The enrollment page: user name, one-time code and the new password
 * twice, posting to /oidc/enroll. */
typedef struct {
    gw_html_form form;
    const char *username;
} gw_html_enroll;

/* A hidden form field: `name` and `value` are both escaped. */
typedef struct {
    const char *name;
    const char *value; /* NULL: the field is left out */
} gw_html_hidden;

/* The logout confirmation (OpenID Connect RP-Initiated Logout 1.0 section
 * 2: the provider asks before it ends a session when it cannot tell that
 * the person wants that), posting to /oidc/logout with the csrf field and
 * the original parameters as hidden fields. */
typedef struct {
    gw_html_form form;       /* form.request is not used */
    const char *client_name; /* the application that asked; NULL: not shown */
    const gw_html_hidden *fields;
    size_t nfields;
} gw_html_logout;

/* The page after a logout that has no way back to an application. */
typedef struct {
    gw_lang lang;
} gw_html_signed_out;

/* An error page: a message, what to do, and the identifiers support needs.
 * It has no link or form leading back to the client. */
typedef struct {
    gw_lang lang;
    gw_html_msg message;
    const char *code;       /* machine-readable error code shown in small print; may be NULL */
    const char *request_id; /* the request id, for support; may be NULL */
} gw_html_error;

/* Renders a page into `pool`; on success *out is the NUL-terminated page.
 * Returns GW_HTML_OK or GW_HTML_ETOOBIG (then *out is empty). */
int gw_html_render_login(h2o_mem_pool_t *pool, const gw_html_login *page, h2o_iovec_t *out) __attribute__((warn_unused_result));
int gw_html_render_consent(h2o_mem_pool_t *pool, const gw_html_consent *page, h2o_iovec_t *out) __attribute__((warn_unused_result));
int gw_html_render_enroll(h2o_mem_pool_t *pool, const gw_html_enroll *page, h2o_iovec_t *out) __attribute__((warn_unused_result));
int gw_html_render_error(h2o_mem_pool_t *pool, const gw_html_error *page, h2o_iovec_t *out) __attribute__((warn_unused_result));
int gw_html_render_logout(h2o_mem_pool_t *pool, const gw_html_logout *page, h2o_iovec_t *out) __attribute__((warn_unused_result));
int gw_html_render_signed_out(h2o_mem_pool_t *pool, const gw_html_signed_out *page, h2o_iovec_t *out)
    __attribute__((warn_unused_result));

#endif
