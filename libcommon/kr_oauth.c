/* OAuth 2.0 rules shared by the gateway and identity (see kr_oauth.h). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "kr_id.h"
#include "kr_oauth.h"
#include "kr_url.h"

const char *kr_oauth_strerror(int err)
{
    switch (err) {
    case KR_OAUTH_OK:
        return "ok";
    case KR_OAUTH_EMALFORMED:
        return "malformed";
    case KR_OAUTH_ETOOBIG:
        return "too long";
    case KR_OAUTH_ESCHEME:
        return "redirect URI must use https (http only on a loopback address)";
    case KR_OAUTH_EFRAGMENT:
        return "redirect URI must not have a fragment";
    case KR_OAUTH_EMISMATCH:
        return "does not match";
    default:
        return "unknown error";
    }
}

/* ---------------------------------------------------------- redirect URIs */

static bool unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* Characters RFC 3986 allows in a URI outside the host's brackets, apart
 * from '%' (checked with its two hex digits) and '#' (refused earlier). */
static bool uri_char(char c)
{
    return unreserved(c) || (c != '\0' && strchr(":/?@!$&'()*+,;=", c) != NULL);
}

/* The parts of a URI that passed the character checks: the scheme's length,
 * the host's span (with brackets for IPv6), and where the authority ends
 * (the start of the path, the query, or the end). */
typedef struct {
    size_t scheme_len;
    size_t host_at, host_len;
    size_t authority_end;
} uri_parts;

static int uri_split(const char *uri, size_t len, uri_parts *p)
{
    size_t i = 0;
    if (len == 0 || !(uri[0] >= 'a' && uri[0] <= 'z'))
        return KR_OAUTH_EMALFORMED;
    while (i < len && ((uri[i] >= 'a' && uri[i] <= 'z') || (uri[i] >= '0' && uri[i] <= '9') || uri[i] == '+' || uri[i] == '-' ||
                       uri[i] == '.'))
        i++;
    if (len - i < 3 || memcmp(uri + i, "://", 3) != 0)
        return KR_OAUTH_EMALFORMED;
    p->scheme_len = i;
    p->host_at = i + 3;
    size_t end = p->host_at;
    while (end < len && uri[end] != '/' && uri[end] != '?')
        end++;
    p->authority_end = end;
    const char *a = uri + p->host_at;
    size_t alen = end - p->host_at;
    if (alen == 0 || memchr(a, '@', alen) != NULL)
        return KR_OAUTH_EMALFORMED;
    size_t hlen;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (close == NULL || close == a + 1)
            return KR_OAUTH_EMALFORMED;
        hlen = (size_t)(close - a) + 1;
        for (size_t k = 1; k + 1 < hlen; k++)
            if (!((a[k] >= '0' && a[k] <= '9') || (a[k] >= 'a' && a[k] <= 'f') || a[k] == ':' || a[k] == '.'))
                return KR_OAUTH_EMALFORMED;
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - a) : alen;
        if (hlen == 0)
            return KR_OAUTH_EMALFORMED;
        for (size_t k = 0; k < hlen; k++)
            if (!((a[k] >= 'a' && a[k] <= 'z') || (a[k] >= '0' && a[k] <= '9') || a[k] == '-' || a[k] == '.'))
                return KR_OAUTH_EMALFORMED; /* upper case too: hosts are compared byte for byte */
    }
    p->host_len = hlen;
    if (hlen < alen) {
        /* ":port", 1..65535, digits only */
        if (a[hlen] != ':' || alen - hlen < 2 || alen - hlen > 6)
            return KR_OAUTH_EMALFORMED;
        long port = 0;
        for (size_t k = hlen + 1; k < alen; k++) {
            if (a[k] < '0' || a[k] > '9')
                return KR_OAUTH_EMALFORMED;
            port = port * 10 + (a[k] - '0');
        }
        if (port < 1 || port > 65535)
            return KR_OAUTH_EMALFORMED;
    }
    for (size_t k = end; k < len; k++)
        if (uri[k] == '[' || uri[k] == ']')
            return KR_OAUTH_EMALFORMED;
    return KR_OAUTH_OK;
}

static bool span_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

int kr_oauth_redirect_uri_check(const char *uri, size_t len)
{
    if (uri == NULL || len == 0)
        return KR_OAUTH_EMALFORMED;
    if (len > KR_OAUTH_REDIRECT_URI_MAX)
        return KR_OAUTH_ETOOBIG;
    if (memchr(uri, '#', len) != NULL)
        return KR_OAUTH_EFRAGMENT;
    for (size_t i = 0; i < len; i++) {
        if (uri[i] == '%') {
            if (i + 2 >= len || kr_url_hex_digit(uri[i + 1]) < 0 || kr_url_hex_digit(uri[i + 2]) < 0)
                return KR_OAUTH_EMALFORMED;
        } else if (!uri_char(uri[i]) && uri[i] != '[' && uri[i] != ']') {
            return KR_OAUTH_EMALFORMED;
        }
    }
    uri_parts p;
    int rv = uri_split(uri, len, &p);
    if (rv != KR_OAUTH_OK)
        return rv;
    if (span_is(uri, p.scheme_len, "https"))
        return KR_OAUTH_OK;
    if (!span_is(uri, p.scheme_len, "http"))
        return KR_OAUTH_ESCHEME;
    const char *host = uri + p.host_at;
    if (span_is(host, p.host_len, "127.0.0.1") || span_is(host, p.host_len, "[::1]") || span_is(host, p.host_len, "localhost"))
        return KR_OAUTH_OK;
    return KR_OAUTH_ESCHEME;
}

/* For an http URI on a loopback IP literal: the length of "http://host" and
 * where the part after the port starts. False for every other URI. */
static bool loopback_ip_split(const char *uri, size_t len, size_t *head, size_t *rest)
{
    uri_parts p;
    if (uri_split(uri, len, &p) != KR_OAUTH_OK || !span_is(uri, p.scheme_len, "http"))
        return false;
    const char *host = uri + p.host_at;
    if (!span_is(host, p.host_len, "127.0.0.1") && !span_is(host, p.host_len, "[::1]"))
        return false;
    *head = p.host_at + p.host_len;
    *rest = p.authority_end;
    return true;
}

int kr_oauth_redirect_uri_match(const char *requested, size_t len, const char *const *registered, size_t nregistered)
{
    if (kr_oauth_redirect_uri_check(requested, len) != KR_OAUTH_OK)
        return -1;
    for (size_t i = 0; i < nregistered; i++)
        if (registered[i] != NULL && strlen(registered[i]) == len && memcmp(registered[i], requested, len) == 0)
            return (int)i;
    /* RFC 8252 section 7.3: a native app listens on whatever port it got. */
    size_t rhead, rrest;
    if (!loopback_ip_split(requested, len, &rhead, &rrest))
        return -1;
    for (size_t i = 0; i < nregistered; i++) {
        if (registered[i] == NULL)
            continue;
        size_t glen = strlen(registered[i]), ghead, grest;
        if (!loopback_ip_split(registered[i], glen, &ghead, &grest))
            continue;
        if (ghead == rhead && memcmp(registered[i], requested, ghead) == 0 && glen - grest == len - rrest &&
            memcmp(registered[i] + grest, requested + rrest, len - rrest) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------ PKCE */

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    const char *p = c != '\0' ? strchr(b64url_alphabet, c) : NULL;
    return p != NULL ? (int)(p - b64url_alphabet) : -1;
}

bool kr_oauth_pkce_challenge_valid(const char *challenge, size_t len)
{
    if (challenge == NULL || len != KR_OAUTH_PKCE_CHALLENGE_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (b64url_value(challenge[i]) < 0)
            return false;
    /* 43 characters carry 258 bits for 256: the last two must be zero. */
    return (b64url_value(challenge[len - 1]) & 3) == 0;
}

int kr_oauth_pkce_verify(const char *verifier, size_t verifier_len, const char *challenge, size_t challenge_len)
{
    if (verifier == NULL || verifier_len < KR_OAUTH_PKCE_VERIFIER_MIN || verifier_len > KR_OAUTH_PKCE_VERIFIER_MAX)
        return KR_OAUTH_EMALFORMED;
    for (size_t i = 0; i < verifier_len; i++)
        if (!unreserved(verifier[i]))
            return KR_OAUTH_EMALFORMED;
    if (!kr_oauth_pkce_challenge_valid(challenge, challenge_len))
        return KR_OAUTH_EMALFORMED;
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (EVP_Digest(verifier, verifier_len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != sizeof(digest))
        return KR_OAUTH_EMALFORMED;
    char computed[KR_OAUTH_B64URL_LEN(32) + 1];
    size_t n = kr_oauth_b64url_encode(digest, sizeof(digest), computed);
    if (n != KR_OAUTH_PKCE_CHALLENGE_LEN || CRYPTO_memcmp(computed, challenge, KR_OAUTH_PKCE_CHALLENGE_LEN) != 0)
        return KR_OAUTH_EMISMATCH;
    return KR_OAUTH_OK;
}

/* ---------------------------------------------------------------- scopes */

bool kr_oauth_scope_token_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > KR_OAUTH_SCOPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ identifiers */

size_t kr_oauth_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

void kr_oauth_random_b64url(char *out, size_t nbytes)
{
    unsigned char buf[64];
    size_t done = 0;
    /* Encoded in chunks of whole 3-byte groups so the text is contiguous. */
    while (nbytes - done > 0) {
        size_t chunk = nbytes - done > 63 ? 63 : nbytes - done;
        kr_random_bytes(buf, chunk);
        out += kr_oauth_b64url_encode(buf, chunk, out);
        done += chunk;
    }
    *out = '\0';
}
