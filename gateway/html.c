/* Server-rendered sign-in pages (see html.h). */
#include <stdio.h>
#include <string.h>

#include "html.h"

/* ------------------------------------------------------------- languages */

const char *gw_html_lang_tag(gw_lang lang)
{
    return lang == GW_LANG_EN ? "en" : "de";
}

/* The supported language a tag's primary subtag names, or -1. */
static int tag_lang(const char *tag, size_t len)
{
    size_t n = 0;
    while (n < len && tag[n] != '-')
        n++;
    if (n == 2 && h2o_lcstris(tag, 2, H2O_STRLIT("de")))
        return GW_LANG_DE;
    if (n == 2 && h2o_lcstris(tag, 2, H2O_STRLIT("en")))
        return GW_LANG_EN;
    return -1;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A language range: "*" or 1*8ALPHA *("-" 1*8alphanum) (RFC 4647 section 2.1). */
static bool range_valid(const char *r, size_t len)
{
    if (len == 1 && r[0] == '*')
        return true;
    size_t run = 0;
    bool first = true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || r[i] == '-') {
            if (run == 0 || run > 8)
                return false;
            run = 0;
            first = false;
            continue;
        }
        char c = r[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!(alpha || (!first && c >= '0' && c <= '9')))
            return false;
        run++;
    }
    return true;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), as 0..1000. */
static int parse_qvalue(const char *s, size_t len)
{
    if (len == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000;
    if (len == 1)
        return q;
    if (s[1] != '.' || len > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9' || (q == 1000 && s[i] != '0'))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q;
}

/* Splits one element of the header into its range and q-value; false when
 * the element is malformed. */
static bool parse_element(const char *e, size_t len, const char **range, size_t *rlen, int *q)
{
    while (len > 0 && is_ows(e[0]))
        e++, len--;
    while (len > 0 && is_ows(e[len - 1]))
        len--;
    const char *semi = memchr(e, ';', len);
    size_t n = semi != NULL ? (size_t)(semi - e) : len;
    while (n > 0 && is_ows(e[n - 1]))
        n--;
    if (!range_valid(e, n))
        return false;
    *range = e;
    *rlen = n;
    *q = 1000;
    if (semi == NULL)
        return true;
    const char *p = semi + 1, *end = e + len;
    while (p < end && is_ows(*p))
        p++;
    if (end - p < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
        return false;
    *q = parse_qvalue(p + 2, (size_t)(end - p - 2));
    return *q >= 0;
}

gw_lang gw_html_lang_negotiate(const char *ui_locales, size_t ui_len, const char *accept_language, size_t al_len)
{
    /* OpenID Connect Core 1.0 section 3.1.2.1: ui_locales, in order. */
    for (size_t i = 0; ui_locales != NULL && i < ui_len;) {
        size_t j = i;
        while (j < ui_len && ui_locales[j] != ' ')
            j++;
        int l = tag_lang(ui_locales + i, j - i);
        if (l >= 0 && range_valid(ui_locales + i, j - i))
            return (gw_lang)l;
        i = j + 1;
    }
    if (accept_language == NULL || al_len > 1024)
        return GW_LANG_DE;
    int q[2] = {-1, -1}, pos[2] = {0, 0}, star_q = -1, star_pos = 0;
    size_t at = 0;
    for (int index = 0; index < 32 && at < al_len; index++) {
        const char *comma = memchr(accept_language + at, ',', al_len - at);
        size_t elen = comma != NULL ? (size_t)(comma - (accept_language + at)) : al_len - at;
        const char *range;
        size_t rlen;
        int rq;
        if (parse_element(accept_language + at, elen, &range, &rlen, &rq)) {
            int l = rlen == 1 && range[0] == '*' ? -1 : tag_lang(range, rlen);
            if (rlen == 1 && range[0] == '*') {
                if (rq > star_q)
                    star_q = rq, star_pos = index;
            } else if (l >= 0 && rq > q[l]) {
                q[l] = rq;
                pos[l] = index;
            }
        }
        at += elen + 1;
    }
    for (int l = 0; l < 2; l++)
        if (q[l] < 0)
            q[l] = star_q, pos[l] = star_pos;
    if (q[GW_LANG_EN] > 0 &&
        (q[GW_LANG_EN] > q[GW_LANG_DE] || (q[GW_LANG_EN] == q[GW_LANG_DE] && pos[GW_LANG_EN] < pos[GW_LANG_DE])))
        return GW_LANG_EN;
    return GW_LANG_DE;
}

/* -------------------------------------------------------------- escaping */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 3, cp = c & 0x07;
    else
        return 0;
    if (len <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

h2o_iovec_t gw_html_escape(h2o_mem_pool_t *pool, const char *s, size_t len)
{
    if (s == NULL)
        len = 0;
    /* "&quot;" is the longest replacement of one byte. */
    char *out = h2o_mem_alloc_pool(pool, len * 6 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        size_t n = rep == NULL ? utf8_seq((const unsigned char *)s + i, len - i) : 1;
        if (rep == NULL && (n == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f))
            rep = "\xef\xbf\xbd", n = 1; /* U+FFFD REPLACEMENT CHARACTER */
        if (rep != NULL) {
            size_t rl = strlen(rep);
            memcpy(out + o, rep, rl);
            o += rl;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
        }
        i += n;
    }
    out[o] = '\0';
    return h2o_iovec_init(out, o);
}

/* -------------------------------------------------------------- messages */

static const char *const messages[GW_HTML_MSG_COUNT_][2] = {
    [GW_HTML_MSG_NONE] = {"", ""},
    [GW_HTML_MSG_BAD_CREDENTIALS] = {"Benutzername oder Passwort ist falsch.", "The user name or password is wrong."},
    [GW_HTML_MSG_TOO_MANY_ATTEMPTS] = {"Zu viele Versuche. Bitte kurz warten und dann noch einmal versuchen.",
                                       "Too many attempts. Please wait a little and then try again."},
    [GW_HTML_MSG_FORM_EXPIRED] = {"Das Formular ist abgelaufen. Bitte noch einmal versuchen.",
                                  "This form has expired. Please try again."},
    [GW_HTML_MSG_BAD_CODE] = {"Der Code stimmt nicht oder ist abgelaufen. Eine Lehrkraft oder die Schulverwaltung kann einen neuen "
                              "ausgeben.",
                              "The code is wrong or has expired. A teacher or the school office can issue a new one."},
    [GW_HTML_MSG_PASSWORDS_DIFFER] = {"Die beiden Passwörter sind nicht gleich.", "The two passwords are not the same."},
    [GW_HTML_MSG_WEAK_PASSWORD] = {"Dieses Passwort ist zu kurz oder zu leicht zu erraten. Ein längeres wählen, zum Beispiel aus "
                                   "mehreren Wörtern.",
                                   "This password is too short or too easy to guess. Choose a longer one, for example several "
                                   "words."},
    [GW_HTML_MSG_UNKNOWN_CLIENT] = {"Diese Anwendung ist hier nicht bekannt.", "This application is not known here."},
    [GW_HTML_MSG_BAD_REDIRECT_URI] = {"Die Anwendung hat eine Rücksprungadresse angegeben, die nicht für sie eingetragen ist. "
                                      "Aus Sicherheitsgründen geht es hier nicht weiter.",
                                      "The application gave a return address that is not registered for it. For your safety, "
                                      "sign-in stops here."},
    [GW_HTML_MSG_BAD_REQUEST] = {"Die Anfrage ist unvollständig oder fehlerhaft.", "The request is incomplete or malformed."},
    [GW_HTML_MSG_NOT_FOUND] = {"Diese Seite gibt es nicht.", "This page does not exist."},
    [GW_HTML_MSG_METHOD] = {"Diese Seite kann so nicht aufgerufen werden.", "This page cannot be used that way."},
    [GW_HTML_MSG_UNAVAILABLE] = {"Die Anmeldung ist gerade nicht erreichbar. Bitte später noch einmal versuchen.",
                                 "Sign-in is not available right now. Please try again later."},
    [GW_HTML_MSG_TOTP_REQUIRED] = {"Dieser Zugang ist zusätzlich mit einer Authenticator-App geschützt. Bitte das Passwort noch "
                                   "einmal und den Code aus der App eingeben.",
                                   "This account is also protected with an authenticator app. Please enter the password again "
                                   "and the code from the app."},
    [GW_HTML_MSG_SIGN_IN_AGAIN] = {"Die Anmeldung ist inzwischen abgelaufen. Bitte noch einmal anmelden.",
                                   "Your sign-in has expired in the meantime. Please sign in again."},
    [GW_HTML_MSG_BAD_LOGOUT_URI] = {"Die Anwendung hat für die Abmeldung eine Rücksprungadresse angegeben, die nicht für sie "
                                    "eingetragen ist. Aus Sicherheitsgründen geht es hier nicht weiter.",
                                    "The application gave a return address for signing out that is not registered for it. For "
                                    "your safety, it stops here."},
    [GW_HTML_MSG_BAD_TOTP] = {"Der Code aus der App stimmt nicht. Bitte das Passwort noch einmal und den aktuellen Code eingeben.",
                              "The code from the app is not right. Please enter the password again and the current code."},
    [GW_HTML_MSG_REQUEST_EXPIRED] = {"Die Anmeldung hat zu lange gedauert und ist abgelaufen.",
                                     "Signing in took too long and has expired."},
};

const char *gw_html_msg_text(gw_html_msg msg, gw_lang lang)
{
    if ((int)msg < 0 || msg >= GW_HTML_MSG_COUNT_ || messages[msg][0] == NULL)
        return "";
    return messages[msg][lang == GW_LANG_EN ? 1 : 0];
}

/* The fixed texts of the pages: T(lang, "Deutsch", "English"). */
#define T(lang, de, en) ((lang) == GW_LANG_EN ? (en) : (de))

/* ---------------------------------------------------------------- buffer */

typedef struct {
    h2o_mem_pool_t *pool;
    char *base;
    size_t len, cap;
    bool overflow;
} page_buf;

static void put_n(page_buf *b, const char *s, size_t n)
{
    if (b->overflow)
        return;
    if (b->len + n + 1 > b->cap) {
        if (b->len + n + 1 > GW_HTML_MAX_BYTES) {
            b->overflow = true;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > GW_HTML_MAX_BYTES)
            cap = GW_HTML_MAX_BYTES;
        char *nb = h2o_mem_alloc_pool(b->pool, cap);
        memcpy(nb, b->base, b->len);
        b->base = nb;
        b->cap = cap;
    }
    memcpy(b->base + b->len, s, n);
    b->len += n;
    b->base[b->len] = '\0';
}

/* Fixed markup: never pass user data here. */
static void put(page_buf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

/* Any text that did not come from this file. */
static void put_text(page_buf *b, const char *s)
{
    h2o_iovec_t e = gw_html_escape(b->pool, s, s != NULL ? strlen(s) : 0);
    put_n(b, e.base, e.len);
}

static void buf_init(page_buf *b, h2o_mem_pool_t *pool)
{
    b->pool = pool;
    b->cap = 8192;
    b->base = h2o_mem_alloc_pool(pool, b->cap);
    b->base[0] = '\0';
    b->len = 0;
    b->overflow = false;
}

static int buf_finish(page_buf *b, h2o_iovec_t *out)
{
    if (b->overflow) {
        *out = h2o_iovec_init("", 0);
        return GW_HTML_ETOOBIG;
    }
    *out = h2o_iovec_init(b->base, b->len);
    return GW_HTML_OK;
}

/* --------------------------------------------------------------- layout */

/* Colours: text #1b1b1b on #fff is 17:1; the button blue #0b4f8a with
 * white text is 8:1; error text #7a0014 on #fdecee is 11:1; the focus ring
 * is black (or white on the button) with a yellow halo, visible on every
 * background used. */
static const char style[] =
    "*{box-sizing:border-box}"
    "html{color-scheme:light}"
    "body{margin:0;background:#eef0f3;color:#1b1b1b;"
    "font:1.0625rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",sans-serif}"
    "main{max-width:28rem;margin:2rem auto;padding:2rem;background:#fff;border:1px solid #b9bec7;border-radius:.5rem}"
    "@media (max-width:30rem){main{margin:0;border:0;border-radius:0;min-height:100vh;padding:1.25rem}}"
    ".brand{margin:0 0 1rem;font-weight:700;letter-spacing:.04em;color:#0b4f8a}"
    "h1{font-size:1.6rem;line-height:1.25;margin:0 0 1rem}"
    "label{display:block;font-weight:600;margin:1.25rem 0 .25rem}"
    ".hint{margin:.1rem 0 .35rem;color:#454b54;font-size:.95rem}"
    "input{width:100%;padding:.6rem .7rem;font:inherit;color:inherit;background:#fff;border:2px solid #5b6270;border-radius:.3rem}"
    "button{font:inherit;font-weight:600;padding:.65rem 1.3rem;margin:1.5rem .5rem 0 0;border:2px solid #0b4f8a;"
    "border-radius:.3rem;background:#0b4f8a;color:#fff;cursor:pointer}"
    "button.secondary{background:#fff;color:#0b4f8a}"
    "button:hover{background:#083a66;border-color:#083a66;color:#fff}"
    ":focus-visible{outline:3px solid #1b1b1b;outline-offset:2px;box-shadow:0 0 0 6px #ffd200}"
    "input:focus-visible{border-color:#1b1b1b}"
    "a{color:#0b4f8a;text-underline-offset:.15em}"
    ".error{margin:0 0 1rem;padding:.75rem 1rem;border-left:5px solid #b00020;background:#fdecee;color:#7a0014;font-weight:600}"
    "ul.scopes{padding-left:1.2rem}ul.scopes li{margin:.35rem 0}"
    "code{font-size:.95em;background:#eef0f3;padding:0 .2em;border-radius:.2em}"
    ".small{font-size:.9rem;color:#454b54}"
    "footer{margin-top:2rem}";

static void page_open(page_buf *b, gw_lang lang, const char *title)
{
    put(b, "<!DOCTYPE html>\n<html lang=\"");
    put(b, gw_html_lang_tag(lang));
    put(b, "\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<meta name=\"referrer\" content=\"no-referrer\">\n<meta name=\"robots\" content=\"noindex\">\n<title>");
    put(b, title);
    put(b, " – Kreide</title>\n<style>");
    put(b, style);
    put(b, "</style>\n</head>\n<body>\n<main>\n<p class=\"brand\">Kreide</p>\n<h1>");
    put(b, title);
    put(b, "</h1>\n");
}

static void page_close(page_buf *b)
{
    put(b, "</main>\n</body>\n</html>\n");
}

/* The error slot: announced to screen readers when the page loads with it.
 * `text` (fixed markup, may be NULL) replaces the message's own text. */
static void form_error_text(page_buf *b, const gw_html_form *f, const char *text)
{
    if (f->error == GW_HTML_MSG_NONE)
        return;
    put(b, "<p class=\"error\" role=\"alert\" id=\"form-error\">");
    if (text != NULL)
        put(b, text);
    else
        put_text(b, gw_html_msg_text(f->error, f->lang));
    put(b, "</p>\n");
}

static void form_error(page_buf *b, const gw_html_form *f)
{
    form_error_text(b, f, NULL);
}

/* "Too many attempts" with the wait in whole seconds or minutes. */
static const char *wait_text(char *buf, size_t len, gw_lang l, long seconds)
{
    if (seconds <= 0)
        return NULL;
    if (seconds < 120)
        snprintf(buf, len,
                 T(l, "Zu viele Versuche. Bitte in %ld Sekunde%s noch einmal versuchen.",
                   "Too many attempts. Please try again in %ld second%s."),
                 seconds, seconds == 1 ? "" : T(l, "n", "s"));
    else
        snprintf(buf, len,
                 T(l, "Zu viele Versuche. Bitte in %ld Minuten noch einmal versuchen.",
                   "Too many attempts. Please try again in %ld minutes."),
                 (seconds + 59) / 60);
    return buf;
}

static void hidden(page_buf *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    put(b, "<input type=\"hidden\" name=\"");
    put(b, name);
    put(b, "\" value=\"");
    put_text(b, value);
    put(b, "\">\n");
}

static void form_open(page_buf *b, const gw_html_form *f, const char *action)
{
    put(b, "<form method=\"post\" action=\"");
    put(b, action);
    put(b, "\">\n");
    hidden(b, "csrf", f->csrf_token);
    hidden(b, "request", f->request);
}

/* One labelled input. `value` is user data (escaped); `extra` is fixed
 * markup. The error, when shown, describes every field. */
static void field(page_buf *b, const gw_html_form *f, const char *id, const char *type, const char *label, const char *hint,
                  const char *autocomplete, const char *value, const char *extra)
{
    put(b, "<label for=\"");
    put(b, id);
    put(b, "\">");
    put(b, label);
    put(b, "</label>\n");
    if (hint != NULL) {
        put(b, "<p class=\"hint\" id=\"");
        put(b, id);
        put(b, "-hint\">");
        put(b, hint);
        put(b, "</p>\n");
    }
    put(b, "<input id=\"");
    put(b, id);
    put(b, "\" name=\"");
    put(b, id);
    put(b, "\" type=\"");
    put(b, type);
    put(b, "\" autocomplete=\"");
    put(b, autocomplete);
    put(b, "\" required");
    if (value != NULL) {
        put(b, " value=\"");
        put_text(b, value);
        put(b, "\"");
    }
    if (hint != NULL || f->error != GW_HTML_MSG_NONE) {
        put(b, " aria-describedby=\"");
        if (f->error != GW_HTML_MSG_NONE)
            put(b, "form-error");
        if (hint != NULL && f->error != GW_HTML_MSG_NONE)
            put(b, " ");
        if (hint != NULL) {
            put(b, id);
            put(b, "-hint");
        }
        put(b, "\"");
    }
    if (f->error != GW_HTML_MSG_NONE)
        put(b, " aria-invalid=\"true\"");
    if (extra != NULL) {
        put(b, " ");
        put(b, extra);
    }
    put(b, ">\n");
}

/* <a href="path?request=..."> for the links between the login and
 * enrollment pages, so that the pending request survives the detour. */
static void link_with_request(page_buf *b, const char *path, const char *request)
{
    put(b, "<a href=\"");
    put(b, path);
    if (request != NULL) {
        put(b, "?request=");
        put_text(b, request); /* sealed requests need no percent-encoding */
    }
    put(b, "\">");
}

/* ----------------------------------------------------------------- pages */

int gw_html_render_login(h2o_mem_pool_t *pool, const gw_html_login *page, h2o_iovec_t *out)
{
    const gw_html_form *f = &page->form;
    gw_lang l = f->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Anmelden", "Sign in"));
    if (page->client_name != NULL) {
        put(&b, T(l, "<p>weiter zu „", "<p>to continue to “"));
        put_text(&b, page->client_name);
        put(&b, T(l, "“</p>\n", "”</p>\n"));
    }
    char wait[160];
    form_error_text(&b, f, f->error == GW_HTML_MSG_TOO_MANY_ATTEMPTS ? wait_text(wait, sizeof(wait), l, page->wait_seconds) : NULL);
    form_open(&b, f, "/oidc/login");
    field(&b, f, "username", "text", T(l, "Benutzername", "User name"), NULL, "username", page->username,
          "autocapitalize=\"none\" spellcheck=\"false\"");
    field(&b, f, "password", "password", T(l, "Passwort", "Password"), NULL, "current-password", NULL, NULL);
    if (page->totp)
        field(&b, f, "totp", "text", T(l, "Code aus der Authenticator-App", "Code from the authenticator app"),
              T(l, "6 Ziffern, alle 30 Sekunden neu", "6 digits, new every 30 seconds"), "one-time-code", NULL,
              "inputmode=\"numeric\" pattern=\"[0-9 ]{6,7}\" maxlength=\"7\" spellcheck=\"false\"");
    put(&b, "<button type=\"submit\">");
    put(&b, T(l, "Anmelden", "Sign in"));
    put(&b, "</button>\n</form>\n<footer>\n<p>");
    link_with_request(&b, "/oidc/enroll", f->request);
    put(&b, T(l, "Zum ersten Mal hier? Zugang mit Code einrichten", "First time here? Set up your account with a code"));
    put(&b, "</a></p>\n<p class=\"small\">");
    put(&b, T(l, "Passwort vergessen? Eine Lehrkraft oder die Schulverwaltung kann einen neuen Code ausgeben.",
              "Forgot your password? A teacher or the school office can issue a new code."));
    put(&b, "</p>\n</footer>\n");
    page_close(&b);
    return buf_finish(&b, out);
}

/* What a scope lets the client see, in plain words. */
static const char *scope_text(const char *scope, gw_lang l)
{
    if (strcmp(scope, "openid") == 0)
        return T(l, "bestätigen, wer angemeldet ist (eine feste Kennung, kein Name)",
                 "confirm who is signed in (a fixed identifier, not a name)");
    if (strcmp(scope, "profile") == 0)
        return T(l, "Vorname, Nachname und Benutzername", "first name, last name and user name");
    if (strcmp(scope, "school") == 0)
        return T(l, "Schulen, Rollen (zum Beispiel Lehrkraft oder Schülerin/Schüler) und Gruppen wie Klassen und Kurse",
                 "schools, roles (for example teacher or pupil) and groups such as classes and courses");
    if (strcmp(scope, "offline_access") == 0)
        return T(l, "diese Angaben auch dann abrufen, wenn gerade niemand angemeldet ist",
                 "fetch this information even when nobody is signed in");
    return NULL;
}

int gw_html_render_consent(h2o_mem_pool_t *pool, const gw_html_consent *page, h2o_iovec_t *out)
{
    const gw_html_form *f = &page->form;
    gw_lang l = f->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Zugriff erlauben?", "Allow access?"));
    form_error(&b, f);
    put(&b, T(l, "<p>„", "<p>“"));
    put_text(&b, page->client_name);
    put(&b, T(l, "“ möchte Folgendes verwenden:</p>\n", "” would like to:</p>\n"));
    put(&b, "<ul class=\"scopes\">\n");
    for (size_t i = 0; i < page->nscopes; i++) {
        const char *known = scope_text(page->scopes[i], l);
        put(&b, "<li>");
        if (known != NULL) {
            put(&b, known);
        } else {
            put(&b, T(l, "eine weitere Berechtigung: <code>", "another permission: <code>"));
            put_text(&b, page->scopes[i]);
            put(&b, "</code>");
        }
        put(&b, "</li>\n");
    }
    put(&b, "</ul>\n<p class=\"small\">");
    put(&b, T(l, "Nur erlauben, wenn diese Anwendung bekannt und vertrauenswürdig ist.",
              "Only allow this if you know and trust this application."));
    put(&b, "</p>\n");
    form_open(&b, f, "/oidc/consent");
    put(&b, "<button type=\"submit\" name=\"decision\" value=\"allow\">");
    put(&b, T(l, "Erlauben", "Allow"));
    put(&b, "</button>\n<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">");
    put(&b, T(l, "Ablehnen", "Deny"));
    put(&b, "</button>\n</form>\n");
    page_close(&b);
    return buf_finish(&b, out);
}

int gw_html_render_enroll(h2o_mem_pool_t *pool, const gw_html_enroll *page, h2o_iovec_t *out)
{
    const gw_html_form *f = &page->form;
    gw_lang l = f->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Zugang einrichten", "Set up your account"));
    put(&b, "<p>");
    put(&b, T(l, "Mit dem Code aus dem Brief der Schule ein eigenes Passwort festlegen.",
              "Use the code from the school's letter to choose your own password."));
    put(&b, "</p>\n");
    form_error(&b, f);
    form_open(&b, f, "/oidc/enroll");
    field(&b, f, "username", "text", T(l, "Benutzername", "User name"), NULL, "username", page->username,
          "autocapitalize=\"none\" spellcheck=\"false\"");
    field(&b, f, "code", "text", "Code", T(l, "steht im Brief der Schule", "printed in the school's letter"), "one-time-code", NULL,
          "autocapitalize=\"characters\" spellcheck=\"false\"");
    field(&b, f, "new_password", "password", T(l, "Neues Passwort", "New password"),
          T(l, "Lang ist besser als kompliziert: zum Beispiel drei oder vier Wörter.",
            "Long beats complicated: three or four words, for example."),
          "new-password", NULL, NULL);
    field(&b, f, "new_password2", "password", T(l, "Neues Passwort wiederholen", "Repeat the new password"), NULL, "new-password",
          NULL, NULL);
    put(&b, "<button type=\"submit\">");
    put(&b, T(l, "Passwort festlegen", "Set password"));
    put(&b, "</button>\n</form>\n<footer>\n<p>");
    link_with_request(&b, "/oidc/login", f->request);
    put(&b, T(l, "Zurück zur Anmeldung", "Back to sign-in"));
    put(&b, "</a></p>\n</footer>\n");
    page_close(&b);
    return buf_finish(&b, out);
}

int gw_html_render_error(h2o_mem_pool_t *pool, const gw_html_error *page, h2o_iovec_t *out)
{
    gw_lang l = page->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Das hat nicht geklappt", "Something went wrong"));
    put(&b, "<p>");
    put_text(&b, gw_html_msg_text(page->message, l));
    put(&b, "</p>\n<p>");
    put(&b, T(l,
              "Bitte zur Anwendung zurückkehren und die Anmeldung dort neu beginnen. Wenn es wieder passiert, hilft die "
              "Schulverwaltung mit den Angaben unten weiter.",
              "Please go back to the application and start signing in again from there. If it happens again, the school "
              "office can help with the details below."));
    put(&b, "</p>\n");
    if (page->code != NULL || page->request_id != NULL) {
        put(&b, "<p class=\"small\">");
        if (page->code != NULL) {
            put(&b, T(l, "Fehler: <code>", "Error: <code>"));
            put_text(&b, page->code);
            put(&b, "</code>");
        }
        if (page->code != NULL && page->request_id != NULL)
            put(&b, "<br>\n");
        if (page->request_id != NULL) {
            put(&b, T(l, "Anfrage: <code>", "Request: <code>"));
            put_text(&b, page->request_id);
            put(&b, "</code>");
        }
        put(&b, "</p>\n");
    }
    page_close(&b);
    return buf_finish(&b, out);
}

int gw_html_render_logout(h2o_mem_pool_t *pool, const gw_html_logout *page, h2o_iovec_t *out)
{
    const gw_html_form *f = &page->form;
    gw_lang l = f->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Abmelden?", "Sign out?"));
    form_error(&b, f);
    if (page->client_name != NULL) {
        put(&b, T(l, "<p>„", "<p>“"));
        put_text(&b, page->client_name);
        put(&b, T(l, "“ möchte die Anmeldung beenden.</p>\n", "” asks to end your sign-in.</p>\n"));
    }
    put(&b, "<p>");
    put(&b, T(l, "Damit endet die Anmeldung bei Kreide, auch für andere Anwendungen, die sie nutzen.",
              "This ends your sign-in at Kreide, also for other applications that use it."));
    put(&b, "</p>\n<form method=\"post\" action=\"/oidc/logout\">\n");
    hidden(&b, "csrf", f->csrf_token);
    for (size_t i = 0; i < page->nfields; i++) {
        if (page->fields[i].value == NULL)
            continue;
        put(&b, "<input type=\"hidden\" name=\"");
        put_text(&b, page->fields[i].name);
        put(&b, "\" value=\"");
        put_text(&b, page->fields[i].value);
        put(&b, "\">\n");
    }
    put(&b, "<button type=\"submit\">");
    put(&b, T(l, "Abmelden", "Sign out"));
    put(&b, "</button>\n</form>\n");
    page_close(&b);
    return buf_finish(&b, out);
}

int gw_html_render_signed_out(h2o_mem_pool_t *pool, const gw_html_signed_out *page, h2o_iovec_t *out)
{
    gw_lang l = page->lang;
    page_buf b;
    buf_init(&b, pool);
    page_open(&b, l, T(l, "Abgemeldet", "Signed out"));
    put(&b, "<p>");
    put(&b, T(l, "Die Anmeldung bei Kreide ist beendet. Dieses Fenster kann jetzt geschlossen werden.",
              "You are signed out of Kreide. You can close this window now."));
    put(&b, "</p>\n<footer>\n<p><a href=\"/oidc/login\">");
    put(&b, T(l, "Wieder anmelden", "Sign in again"));
    put(&b, "</a></p>\n</footer>\n");
    page_close(&b);
    return buf_finish(&b, out);
}
