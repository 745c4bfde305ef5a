/* The JSON admin API over HTTP with libcurl: one easy handle per run (so
 * that paged lists reuse the connection), bodies capped at CTL_MAX_REPLY,
 * errors reported with the API's own code and message. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "kreidectl.h"

long ctl_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                     *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (n + need >= outlen)
            return -1;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (n >= outlen)
        return -1;
    out[n] = '\0';
    return (long)n;
}

typedef struct {
    char *data;
    size_t len, cap;
    bool too_big;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n > CTL_MAX_REPLY) {
        s->too_big = true;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (d == NULL)
            abort();
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* The bearer token to send: the one given, or one minted from the key
 * directory for an operator, valid for five minutes. */
static int bearer(ctl_ctx *ctx, const char **out)
{
    *out = ctx->token;
    if (ctx->token != NULL || ctx->keys == NULL)
        return CTL_EXIT_OK;
    if (ctx->_minted == NULL) {
        const char *issuer = getenv("KREIDE_ISSUER") ? getenv("KREIDE_ISSUER") : ctx->url;
        const char *audience = getenv("KREIDE_JWT_AUDIENCE") ? getenv("KREIDE_JWT_AUDIENCE") : "kreide";
        json_t *roles = json_pack("[s]", "operator"), *schools = json_array();
        char err[256];
        int rv = ctl_mint_token(ctx->keys, issuer, audience, NULL, roles, schools, NULL, 300, &ctx->_minted, err, sizeof(err));
        json_decref(roles);
        json_decref(schools);
        if (rv != 0) {
            fprintf(stderr, "kreidectl: --keys %s: %s\n", ctx->keys, err);
            return CTL_EXIT_USAGE;
        }
    }
    *out = ctx->_minted;
    return CTL_EXIT_OK;
}

int ctl_http(ctl_ctx *ctx, const char *method, const char *path, json_t *body, ctl_reply *reply)
{
    memset(reply, 0, sizeof(*reply));
    const char *tok;
    int rc = bearer(ctx, &tok);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (ctx->_curl == NULL && (ctx->_curl = curl_easy_init()) == NULL) {
        snprintf(reply->error, sizeof(reply->error), "cannot start libcurl");
        return CTL_EXIT_CONNECT;
    }
    CURL *c = ctx->_curl;
    curl_easy_reset(c);

    size_t ulen = strlen(ctx->url) + strlen(path) + 1;
    char *url = malloc(ulen);
    char *auth = NULL, *payload = NULL;
    if (url == NULL)
        abort();
    snprintf(url, ulen, "%s%s", ctx->url, path);
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    if (tok != NULL) {
        size_t alen = strlen(tok) + 32;
        auth = malloc(alen);
        if (auth == NULL)
            abort();
        snprintf(auth, alen, "Authorization: Bearer %s", tok);
        headers = curl_slist_append(headers, auth);
    }
    if (body != NULL) {
        payload = json_dumps(body, JSON_COMPACT);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    }
    sink s = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kreidectl");

    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply->status);
        reply->body = s.data;
        reply->len = s.len;
        if (s.data != NULL)
            reply->json = json_loadb(s.data, s.len, 0, NULL);
        rc = CTL_EXIT_OK;
    } else {
        if (s.too_big)
            snprintf(reply->error, sizeof(reply->error), "%s: the reply is larger than %u bytes", url, CTL_MAX_REPLY);
        else
            snprintf(reply->error, sizeof(reply->error), "%s: %s", url, curl_easy_strerror(cc));
        free(s.data);
        rc = CTL_EXIT_CONNECT;
    }
    curl_slist_free_all(headers);
    free(payload);
    free(auth);
    free(url);
    return rc;
}

void ctl_reply_clear(ctl_reply *reply)
{
    free(reply->body);
    json_decref(reply->json);
    memset(reply, 0, sizeof(*reply));
}

/* A string member of `o`, or "" when absent or not a string. */
static const char *str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

void ctl_report_error(FILE *f, const char *method, const char *path, const ctl_reply *reply)
{
    const json_t *err = json_object_get(reply->json, "error");
    if (!json_is_object(err)) {
        /* Not the gateway's error shape: a proxy in between, most likely. */
        int n = 0;
        while (reply->body != NULL && n < 200 && reply->body[n] != '\0' && reply->body[n] != '\n')
            n++;
        fprintf(f, "kreidectl: %s %s: HTTP %ld%s%.*s\n", method, path, reply->status, n ? ": " : "", n,
                reply->body ? reply->body : "");
        return;
    }
    const char *code = str(err, "code"), *field = str(err, "field");
    fprintf(f, "kreidectl: %s (%s%s%s, HTTP %ld)\n", str(err, "message"), code, *field ? ", field " : "", field, reply->status);
    if (reply->status == 404 && strcmp(code, "api.not_found") == 0)
        fprintf(f, "kreidectl: this gateway has no route %s %s; it is older than this kreidectl\n", method, path);
}

int ctl_call(ctl_ctx *ctx, const char *method, const char *path, json_t *body, ctl_reply *reply)
{
    int rc = ctl_http(ctx, method, path, body, reply);
    if (rc == CTL_EXIT_CONNECT) {
        fprintf(stderr, "kreidectl: cannot reach the gateway: %s\n", reply->error);
        return rc;
    }
    if (rc != CTL_EXIT_OK)
        return rc;
    if (reply->status >= 200 && reply->status < 300 && json_is_object(reply->json))
        return CTL_EXIT_OK;
    if (ctx->json && reply->body != NULL)
        printf("%s\n", reply->body);
    if (reply->status >= 200 && reply->status < 300) {
        fprintf(stderr, "kreidectl: %s %s: HTTP %ld without a JSON object\n", method, path, reply->status);
        return CTL_EXIT_API;
    }
    ctl_report_error(stderr, method, path, reply);
    return CTL_EXIT_API;
}
