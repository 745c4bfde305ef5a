/* OAuth 2.0 / OpenID Connect protocol rules with no I/O (see oidc.h). */
#include <string.h>

#include "oidc.h"
#include "kr_oauth.h"
#include "kr_url.h"

const char *gw_oidc_strerror(int err)
{
    switch (err) {
    case GW_OIDC_OK:
        return "ok";
    case GW_OIDC_EMALFORMED:
        return "malformed";
    case GW_OIDC_EDUPLICATE:
        return "parameter given more than once";
    case GW_OIDC_ETOOBIG:
        return "too long";
    case GW_OIDC_ETOOMANY:
        return "too many parameters";
    case GW_OIDC_EENCODING:
        return "not UTF-8 text";
    case GW_OIDC_ESCHEME:
        return "redirect URI must use https (http only on a loopback address)";
    case GW_OIDC_EFRAGMENT:
        return "redirect URI must not have a fragment";
    case GW_OIDC_EMISMATCH:
        return "does not match";
    case GW_OIDC_EEXPIRED:
        return "expired";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------- encodings */

static int b64std_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Canonical standard base64 with padding (RFC 4648 section 4): a length that
 * is a multiple of four, '=' only at the end, no stray bits. `out` holds
 * len/4*3 bytes. Returns the decoded length, or -1. */
static ssize_t b64std_decode(const char *in, size_t len, unsigned char *out)
{
    if (len == 0 || len % 4 != 0)
        return -1;
    size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (size_t k = 0; k < 4; k++) {
            bool padding = i + 4 == len && k >= 4 - pad;
            v[k] = padding ? 0 : b64std_value(in[i + k]);
            if (v[k] < 0)
                return -1;
        }
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (i + 4 < len || pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (i + 4 < len || pad < 1)
            out[o++] = (unsigned char)w;
        if (i + 4 == len && ((pad == 1 && (v[2] & 3) != 0) || (pad == 2 && (v[1] & 15) != 0)))
            return -1; /* bits beyond the data: not the canonical encoding */
    }
    return (ssize_t)o;
}

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

/* Decodes form-urlencoded text into a NUL-terminated string from `pool`. */
static int form_decode(h2o_mem_pool_t *pool, const char *s, size_t len, char **out)
{
    char *d = h2o_mem_alloc_pool(pool, len + 1);
    long n = kr_url_decode(s, len, d, len + 1, KR_URL_FORM);
    if (n < 0) /* an escaped NUL is an encoding error, anything else malformed */
        return memmem(s, len, "%00", 3) != NULL ? GW_OIDC_EENCODING : GW_OIDC_EMALFORMED;
    if (!utf8_valid((const unsigned char *)d, (size_t)n))
        return GW_OIDC_EENCODING;
    *out = d;
    return GW_OIDC_OK;
}

/* ------------------------------------------------------------------ PKCE */

static bool pkce_unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* PKCE lives in libcommon (kr_oauth.h), since identity verifies the
 * verifier when a code is redeemed; these keep the gateway's error codes. */
bool gw_oidc_pkce_challenge_valid(const char *challenge, size_t len)
{
    return kr_oauth_pkce_challenge_valid(challenge, len);
}

int gw_oidc_pkce_verify(const char *verifier, size_t verifier_len, const char *challenge, size_t challenge_len)
{
    switch (kr_oauth_pkce_verify(verifier, verifier_len, challenge, challenge_len)) {
    case KR_OAUTH_OK:
        return GW_OIDC_OK;
    case KR_OAUTH_EMISMATCH:
        return GW_OIDC_EMISMATCH;
    default:
        return GW_OIDC_EMALFORMED;
    }
}

/* ---------------------------------------------------------- redirect URIs */

/* The rules live in libcommon (kr_oauth.h), since identity checks the same
 * URIs when a client is registered; these keep the gateway's error codes. */
int gw_oidc_redirect_uri_check(const char *uri, size_t len)
{
    switch (kr_oauth_redirect_uri_check(uri, len)) {
    case KR_OAUTH_OK:
        return GW_OIDC_OK;
    case KR_OAUTH_ETOOBIG:
        return GW_OIDC_ETOOBIG;
    case KR_OAUTH_ESCHEME:
        return GW_OIDC_ESCHEME;
    case KR_OAUTH_EFRAGMENT:
        return GW_OIDC_EFRAGMENT;
    default:
        return GW_OIDC_EMALFORMED;
    }
}

int gw_oidc_redirect_uri_match(const char *requested, size_t len, const char *const *registered, size_t nregistered)
{
    return kr_oauth_redirect_uri_match(requested, len, registered, nregistered);
}

/* Appends `s` percent-encoded: only unreserved characters stay. */
static size_t percent_encode(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (pkce_unreserved((char)*p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    return o;
}

h2o_iovec_t gw_oidc_redirect_build(h2o_mem_pool_t *pool, const char *redirect_uri, const gw_oidc_param *params, size_t n)
{
    size_t ulen = strlen(redirect_uri), cap = ulen + 1;
    for (size_t i = 0; i < n; i++)
        if (params[i].value != NULL)
            cap += 2 + 3 * (strlen(params[i].name) + strlen(params[i].value));
    char *out = h2o_mem_alloc_pool(pool, cap);
    memcpy(out, redirect_uri, ulen);
    size_t o = ulen;
    const char *q = memchr(redirect_uri, '?', ulen);
    /* The first separator: none after a bare '?' or a trailing '&'. */
    char sep = q == NULL ? '?' : (ulen > 0 && (redirect_uri[ulen - 1] == '?' || redirect_uri[ulen - 1] == '&')) ? '\0' : '&';
    for (size_t i = 0; i < n; i++) {
        if (params[i].value == NULL)
            continue;
        if (sep != '\0')
            out[o++] = sep;
        sep = '&';
        o += percent_encode(out + o, params[i].name);
        out[o++] = '=';
        o += percent_encode(out + o, params[i].value);
    }
    out[o] = '\0';
    return h2o_iovec_init(out, o);
}

h2o_iovec_t gw_oidc_redirect_code(h2o_mem_pool_t *pool, const char *redirect_uri, const char *code, const char *state,
                                  const char *issuer)
{
    gw_oidc_param p[] = {{"code", code}, {"state", state}, {"iss", issuer}};
    return gw_oidc_redirect_build(pool, redirect_uri, p, sizeof(p) / sizeof(p[0]));
}

h2o_iovec_t gw_oidc_redirect_error(h2o_mem_pool_t *pool, const char *redirect_uri, const char *error, const char *description,
                                   const char *state, const char *issuer)
{
    gw_oidc_param p[] = {{"error", error}, {"error_description", description}, {"state", state}, {"iss", issuer}};
    return gw_oidc_redirect_build(pool, redirect_uri, p, sizeof(p) / sizeof(p[0]));
}

/* ------------------------------------------------------------ parameters */

static bool listed(const char *const *names, const char *name)
{
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

int gw_oidc_form_parse(h2o_mem_pool_t *pool, const char *text, size_t len, const char *const *repeatable, gw_oidc_form *out,
                       const char **bad)
{
    out->n = 0;
    if (bad != NULL)
        *bad = NULL;
    if (len > GW_OIDC_FORM_MAX_BYTES)
        return GW_OIDC_ETOOBIG;
    size_t i = 0;
    while (i < len) {
        const char *pair = text + i;
        const char *amp = memchr(pair, '&', len - i);
        size_t plen = amp != NULL ? (size_t)(amp - pair) : len - i;
        i += plen + 1;
        if (plen == 0)
            continue;
        const char *eq = memchr(pair, '=', plen);
        size_t nlen = eq != NULL ? (size_t)(eq - pair) : plen;
        char *name, *value;
        int rv = form_decode(pool, pair, nlen, &name);
        if (rv != GW_OIDC_OK)
            return rv;
        if (name[0] == '\0')
            return GW_OIDC_EMALFORMED;
        if (bad != NULL)
            *bad = name;
        rv = eq != NULL ? form_decode(pool, eq + 1, plen - nlen - 1, &value) : form_decode(pool, "", 0, &value);
        if (rv != GW_OIDC_OK)
            return rv;
        if (value[0] == '\0') { /* RFC 6749 section 3.1: as if omitted */
            if (bad != NULL)
                *bad = NULL;
            continue;
        }
        if (gw_oidc_form_get(out, name) != NULL && !listed(repeatable, name))
            return GW_OIDC_EDUPLICATE;
        if (out->n == GW_OIDC_FORM_MAX_PARAMS)
            return GW_OIDC_ETOOMANY;
        out->params[out->n].name = name;
        out->params[out->n].value = value;
        out->n++;
        if (bad != NULL)
            *bad = NULL;
    }
    return GW_OIDC_OK;
}

const char *gw_oidc_form_get(const gw_oidc_form *form, const char *name)
{
    for (size_t i = 0; i < form->n; i++)
        if (strcmp(form->params[i].name, name) == 0)
            return form->params[i].value;
    return NULL;
}

/* ------------------------------------------------------ client credentials */

int gw_oidc_client_basic(h2o_mem_pool_t *pool, const char *header, size_t len, const char **client_id, const char **secret)
{
    *client_id = *secret = NULL;
    if (len > GW_OIDC_BASIC_MAX)
        return GW_OIDC_ETOOBIG;
    if (len < 6 || !h2o_lcstris(header, 5, H2O_STRLIT("basic")) || header[5] != ' ')
        return GW_OIDC_EMALFORMED;
    size_t at = 5;
    while (at < len && header[at] == ' ')
        at++;
    size_t end = len;
    while (end > at && (header[end - 1] == ' ' || header[end - 1] == '\t'))
        end--;
    unsigned char *raw = h2o_mem_alloc_pool(pool, (end - at) / 4 * 3 + 1);
    ssize_t n = b64std_decode(header + at, end - at, raw);
    if (n < 0)
        return GW_OIDC_EMALFORMED;
    const unsigned char *colon = memchr(raw, ':', (size_t)n);
    if (colon == NULL)
        return GW_OIDC_EMALFORMED;
    char *id, *pw;
    size_t idlen = (size_t)(colon - raw);
    int rv = form_decode(pool, (const char *)raw, idlen, &id);
    if (rv == GW_OIDC_OK)
        rv = form_decode(pool, (const char *)colon + 1, (size_t)n - idlen - 1, &pw);
    if (rv != GW_OIDC_OK)
        return rv;
    if (id[0] == '\0')
        return GW_OIDC_EMALFORMED;
    *client_id = id;
    *secret = pw;
    return GW_OIDC_OK;
}
