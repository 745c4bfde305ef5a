#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "html.h"

static h2o_mem_pool_t pool;

static int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

static const char *esc(const char *s)
{
    return gw_html_escape(&pool, s, s != NULL ? strlen(s) : 0).base;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* -------------------------------------------------------------- escaping */

static void escape_replaces_the_five_characters(void **state)
{
    assert_string_equal(esc("a & b"), "a &amp; b");
    assert_string_equal(esc("<script>"), "&lt;script&gt;");
    assert_string_equal(esc("\"quoted\""), "&quot;quoted&quot;");
    assert_string_equal(esc("it's"), "it&#39;s");
    assert_string_equal(esc("&amp;"), "&amp;amp;");
    assert_string_equal(esc("\"'><&"), "&quot;&#39;&gt;&lt;&amp;");
    assert_string_equal(esc("plain text 123 -_.:/?=#%"), "plain text 123 -_.:/?=#%");
    assert_string_equal(esc(""), "");
    assert_string_equal(esc(NULL), "");
    h2o_iovec_t v = gw_html_escape(&pool, "<<<<", 4);
    assert_int_equal(v.len, 16);
}

static void escape_keeps_utf8_and_replaces_the_rest(void **state)
{
    assert_string_equal(esc("Grüße, Jürgen – ☀ 🙂"), "Grüße, Jürgen – ☀ 🙂");
    assert_string_equal(esc("a\xff"
                            "b"),
                        "a\xef\xbf\xbd"
                        "b");
    assert_string_equal(esc("\xc3"), "\xef\xbf\xbd");                 /* cut short */
    assert_string_equal(esc("\xc0\xbc"), "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong '<' */
    assert_string_equal(esc("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
    assert_string_equal(esc("bell\a esc\x1b del\x7f"), "bell\xef\xbf\xbd esc\xef\xbf\xbd del\xef\xbf\xbd");
    h2o_iovec_t v = gw_html_escape(&pool, "a\0<", 3);
    assert_int_equal(v.len, 1 + 3 + 4);
    assert_memory_equal(v.base, "a\xef\xbf\xbd&lt;", v.len);
}

/* ------------------------------------------------------------- languages */

static gw_lang al(const char *header)
{
    return gw_html_lang_negotiate(NULL, 0, header, header != NULL ? strlen(header) : 0);
}

static void lang_defaults_to_german(void **state)
{
    assert_int_equal(al(NULL), GW_LANG_DE);
    assert_int_equal(al(""), GW_LANG_DE);
    assert_int_equal(al("fr-FR, fr;q=0.9"), GW_LANG_DE);
    assert_int_equal(al("garbage;;;,,,"), GW_LANG_DE);
    assert_int_equal(al("*"), GW_LANG_DE);
    assert_int_equal(al("de;q=0"), GW_LANG_DE);
}

static void lang_follows_q_values(void **state)
{
    assert_int_equal(al("en"), GW_LANG_EN);
    assert_int_equal(al("EN-gb"), GW_LANG_EN);
    assert_int_equal(al("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7"), GW_LANG_DE);
    assert_int_equal(al("en-US,en;q=0.9,de;q=0.8"), GW_LANG_EN);
    assert_int_equal(al("de;q=0.5, en;q=0.6"), GW_LANG_EN);
    assert_int_equal(al("de;q=0.5,en;q=0.500"), GW_LANG_DE); /* a tie goes to the first listed */
    assert_int_equal(al("en;q=0.5,de;q=0.5"), GW_LANG_EN);
    assert_int_equal(al("fr, en;q=0.1"), GW_LANG_EN);
    assert_int_equal(al("de;q=0, en;q=0.001"), GW_LANG_EN);
    assert_int_equal(al("en;q=0"), GW_LANG_DE);
    assert_int_equal(al("de;q=0, *"), GW_LANG_EN); /* the wildcard covers what is not named */
    assert_int_equal(al("*;q=0.5, en;q=0.4"), GW_LANG_DE);
    assert_int_equal(al("  en ; q=1.0 "), GW_LANG_EN);
    assert_int_equal(al("en;Q=0.9"), GW_LANG_EN);
    assert_int_equal(al("de-AT"), GW_LANG_DE);
    assert_int_equal(al("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"), GW_LANG_EN);
}

static void lang_skips_malformed_ranges(void **state)
{
    assert_int_equal(al("en;q=2"), GW_LANG_DE);
    assert_int_equal(al("en;q=1.5"), GW_LANG_DE);
    assert_int_equal(al("en;q=0.1234"), GW_LANG_DE);
    assert_int_equal(al("en;q=-1"), GW_LANG_DE);
    assert_int_equal(al("en;q="), GW_LANG_DE);
    assert_int_equal(al("en;x=1"), GW_LANG_DE);
    assert_int_equal(al("e n"), GW_LANG_DE);
    assert_int_equal(al("english"), GW_LANG_DE); /* primary subtag "english" is not "en" */
    assert_int_equal(al("en-"), GW_LANG_DE);
    assert_int_equal(al("en-toolongsubtag"), GW_LANG_DE);
    assert_int_equal(al("en;q=2, de;q=0.1"), GW_LANG_DE);
    assert_int_equal(al("xx;q=bad, en;q=0.3"), GW_LANG_EN);
}

static void lang_reads_a_bounded_header(void **state)
{
    char h[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(h, "fr;q=0.9,");
    strcat(h, "en");
    assert_int_equal(al(h), GW_LANG_DE); /* "en" is the 41st range: not read */
    char big[1100];
    memset(big, ' ', sizeof(big));
    memcpy(big, "en", 2);
    assert_int_equal(gw_html_lang_negotiate(NULL, 0, big, sizeof(big)), GW_LANG_DE);
    assert_int_equal(gw_html_lang_negotiate(NULL, 0, big, 1024), GW_LANG_EN);
}

static void lang_prefers_ui_locales(void **state)
{
    assert_int_equal(gw_html_lang_negotiate("en", 2, "de", 2), GW_LANG_EN);
    assert_int_equal(gw_html_lang_negotiate("fr-CA fr en-US de", 17, "de", 2), GW_LANG_EN);
    assert_int_equal(gw_html_lang_negotiate("fr", 2, "en", 2), GW_LANG_EN);
    assert_int_equal(gw_html_lang_negotiate("de-CH", 5, "en", 2), GW_LANG_DE);
    assert_int_equal(gw_html_lang_negotiate("", 0, "en", 2), GW_LANG_EN);
    assert_int_equal(gw_html_lang_negotiate("<en>", 4, "de", 2), GW_LANG_DE);
    assert_string_equal(gw_html_lang_tag(GW_LANG_DE), "de");
    assert_string_equal(gw_html_lang_tag(GW_LANG_EN), "en");
}

/* ----------------------------------------------------------------- pages */

/* What every page must be: one language, one heading, nothing loaded from
 * elsewhere, no script. */
static void assert_page_shape(const char *html, gw_lang lang)
{
    /* checked on pages whose strings hold no markup; escaped markup is text */
    assert_true(strncmp(html, "<!DOCTYPE html>\n<html lang=\"", 28) == 0);
    assert_memory_equal(html + 28, lang == GW_LANG_EN ? "en\"" : "de\"", 3);
    assert_int_equal(count(html, "<h1>"), 1);
    assert_int_equal(count(html, "</h1>"), 1);
    assert_int_equal(count(html, "<title>"), 1);
    assert_int_equal(count(html, "<meta charset=\"utf-8\">"), 1);
    assert_int_equal(count(html, "<script"), 0);
    assert_int_equal(count(html, " src="), 0);
    assert_int_equal(count(html, "<link"), 0);
    assert_int_equal(count(html, "<img"), 0);
    assert_int_equal(count(html, "url("), 0);
    assert_int_equal(count(html, "http:"), 0);
    assert_int_equal(count(html, "https:"), 0);
    assert_int_equal(count(html, "=\"javascript"), 0);
    assert_non_null(strstr(html, ":focus-visible{"));
    assert_non_null(strstr(html, "</html>\n"));
}

/* Every <input> that is not hidden has a <label for> with its id. */
static void assert_inputs_labelled(const char *html)
{
    for (const char *p = strstr(html, "<input id=\""); p != NULL; p = strstr(p + 1, "<input id=\"")) {
        const char *id = p + 11, *q = strchr(id, '"');
        char label[64];
        snprintf(label, sizeof(label), "<label for=\"%.*s\">", (int)(q - id), id);
        if (strstr(html, label) == NULL)
            fail_msg("no %s", label);
    }
}

static void login_page_in_both_languages(void **state)
{
    for (int l = GW_LANG_DE; l <= GW_LANG_EN; l++) {
        gw_html_login page = {.form = {.lang = (gw_lang)l}};
        h2o_iovec_t out;
        assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
        assert_int_equal(out.len, strlen(out.base));
        assert_page_shape(out.base, (gw_lang)l);
        assert_inputs_labelled(out.base);
        assert_non_null(strstr(out.base, "<form method=\"post\" action=\"/oidc/login\">"));
        assert_non_null(strstr(out.base, "autocomplete=\"username\""));
        assert_non_null(strstr(out.base, "type=\"password\" autocomplete=\"current-password\""));
        assert_non_null(strstr(out.base, l == GW_LANG_EN ? "<h1>Sign in</h1>" : "<h1>Anmelden</h1>"));
        assert_null(strstr(out.base, "role=\"alert\""));
        assert_null(strstr(out.base, "type=\"hidden\""));
        assert_null(strstr(out.base, "aria-invalid"));
    }
}

static void login_page_escapes_what_it_echoes(void **state)
{
    gw_html_login page = {
        .form = {.lang = GW_LANG_DE,
                 .csrf_token = "\" autofocus onfocus=\"alert(1)",
                 .request = "r<1>",
                 .error = GW_HTML_MSG_BAD_CREDENTIALS},
        .client_name = "<img src=x onerror=alert(1)>",
        .username = "\"><script>alert('x')</script>",
    };
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_int_equal(count(out.base, "<h1>"), 1);
    assert_int_equal(count(out.base, "<script"), 0);
    assert_int_equal(count(out.base, "<img"), 0);
    assert_int_equal(count(out.base, "onfocus=\""), 0);
    assert_int_equal(count(out.base, "autofocus"), 1); /* inside the escaped value only */
    assert_non_null(strstr(out.base, "value=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\""));
    assert_non_null(strstr(out.base, "<input type=\"hidden\" name=\"csrf\" value=\"&quot; autofocus onfocus=&quot;alert(1)\">"));
    assert_non_null(strstr(out.base, "<input type=\"hidden\" name=\"request\" value=\"r&lt;1&gt;\">"));
    /* the way to enrollment keeps the pending request */
    assert_non_null(strstr(out.base, "<a href=\"/oidc/enroll?request=r&lt;1&gt;\">"));
    assert_non_null(strstr(out.base, "weiter zu „&lt;img src=x onerror=alert(1)&gt;“"));
    assert_null(strstr(out.base, "<img"));
    /* the error is announced and tied to the fields */
    assert_non_null(
        strstr(out.base, "<p class=\"error\" role=\"alert\" id=\"form-error\">Benutzername oder Passwort ist falsch.</p>"));
    assert_int_equal(count(out.base, "aria-describedby=\"form-error\""), 2);
    assert_int_equal(count(out.base, "aria-invalid=\"true\""), 2);
}

static void login_page_asks_for_the_second_factor(void **state)
{
    gw_html_login page = {.form = {.lang = GW_LANG_EN, .csrf_token = "c", .request = "r", .error = GW_HTML_MSG_TOTP_REQUIRED},
                          .username = "tom.lehrer",
                          .totp = true};
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_EN);
    assert_inputs_labelled(out.base);
    assert_non_null(strstr(out.base, "<label for=\"totp\">Code from the authenticator app</label>"));
    assert_non_null(strstr(out.base, "name=\"totp\" type=\"text\" autocomplete=\"one-time-code\" required"));
    assert_non_null(strstr(out.base, "inputmode=\"numeric\""));
    assert_non_null(strstr(out.base, "aria-describedby=\"form-error totp-hint\""));
    assert_non_null(strstr(out.base, "role=\"alert\" id=\"form-error\">This account is also protected"));
    /* the user name stays, the password is never echoed */
    assert_non_null(strstr(out.base, "value=\"tom.lehrer\""));
    assert_int_equal(count(out.base, "type=\"password\""), 1);
    assert_null(strstr(out.base, "type=\"password\" autocomplete=\"current-password\" required value="));
    /* without the flag, no such field */
    page.totp = false;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_null(strstr(out.base, "name=\"totp\""));
}

static void login_page_says_how_long_to_wait(void **state)
{
    gw_html_login page = {.form = {.lang = GW_LANG_DE, .error = GW_HTML_MSG_TOO_MANY_ATTEMPTS}, .wait_seconds = 8};
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, "role=\"alert\" id=\"form-error\">Zu viele Versuche. Bitte in 8 Sekunden noch einmal"));
    page.wait_seconds = 1;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, "Bitte in 1 Sekunde noch einmal versuchen."));
    page.form.lang = GW_LANG_EN;
    page.wait_seconds = 300;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, "Too many attempts. Please try again in 5 minutes."));
    page.wait_seconds = 121;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, "Please try again in 3 minutes."));
    /* unknown: the general text */
    page.wait_seconds = 0;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, gw_html_msg_text(GW_HTML_MSG_TOO_MANY_ATTEMPTS, GW_LANG_EN)));
    /* the wait belongs to that message only */
    page.form.error = GW_HTML_MSG_BAD_CREDENTIALS;
    page.wait_seconds = 8;
    assert_int_equal(gw_html_render_login(&pool, &page, &out), GW_HTML_OK);
    assert_null(strstr(out.base, "8 seconds"));
}

static void logout_page_posts_back_what_it_was_given(void **state)
{
    const gw_html_hidden fields[] = {
        {"client_id", "abc"},
        {"post_logout_redirect_uri", "https://app.example.org/bye?a=1&b=\"2\""},
        {"state", "<s>"},
        {"id_token_hint", NULL},
    };
    gw_html_logout page = {
        .form = {.lang = GW_LANG_DE, .csrf_token = "tok"}, .client_name = "Moodle <Schule>", .fields = fields, .nfields = 4};
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_logout(&pool, &page, &out), GW_HTML_OK);
    /* (the shape is checked below, on a page without a URI in it) */
    assert_non_null(strstr(out.base, "<html lang=\"de\">"));
    assert_int_equal(count(out.base, "<script"), 0);
    assert_non_null(strstr(out.base, "<h1>Abmelden?</h1>"));
    assert_non_null(strstr(out.base, "<form method=\"post\" action=\"/oidc/logout\">"));
    assert_non_null(strstr(out.base, "<input type=\"hidden\" name=\"csrf\" value=\"tok\">"));
    assert_non_null(strstr(out.base, "<input type=\"hidden\" name=\"client_id\" value=\"abc\">"));
    assert_non_null(
        strstr(out.base, "name=\"post_logout_redirect_uri\" value=\"https://app.example.org/bye?a=1&amp;b=&quot;2&quot;\""));
    assert_non_null(strstr(out.base, "name=\"state\" value=\"&lt;s&gt;\""));
    assert_null(strstr(out.base, "id_token_hint"));
    assert_non_null(strstr(out.base, "„Moodle &lt;Schule&gt;“ möchte die Anmeldung beenden."));
    assert_non_null(strstr(out.base, "<button type=\"submit\">Abmelden</button>"));

    page = (gw_html_logout){.form = {.lang = GW_LANG_EN, .csrf_token = "tok"}};
    assert_int_equal(gw_html_render_logout(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_EN);
    assert_non_null(strstr(out.base, "<h1>Sign out?</h1>"));
    assert_null(strstr(out.base, "asks to end"));
    assert_int_equal(count(out.base, "type=\"hidden\""), 1);
}

static void signed_out_page_in_both_languages(void **state)
{
    h2o_iovec_t out;
    gw_html_signed_out page = {.lang = GW_LANG_DE};
    assert_int_equal(gw_html_render_signed_out(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_DE);
    assert_non_null(strstr(out.base, "<h1>Abgemeldet</h1>"));
    assert_null(strstr(out.base, "<form"));
    page.lang = GW_LANG_EN;
    assert_int_equal(gw_html_render_signed_out(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_EN);
    assert_non_null(strstr(out.base, "<h1>Signed out</h1>"));
    assert_non_null(strstr(out.base, "<a href=\"/oidc/login\">Sign in again</a>"));
}

static void consent_page_explains_scopes(void **state)
{
    const char *scopes[] = {"openid", "profile", "school", "offline_access", "calendar<b>"};
    gw_html_consent page = {
        .form = {.lang = GW_LANG_EN, .csrf_token = "t0k3n", .request = "req-1"},
        .client_name = "Moodle & Co",
        .scopes = scopes,
        .nscopes = 5,
    };
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_consent(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_EN);
    assert_non_null(strstr(out.base, "“Moodle &amp; Co” would like to:"));
    assert_int_equal(count(out.base, "<li>"), 5);
    assert_non_null(strstr(out.base, "first name, last name and user name"));
    assert_non_null(strstr(out.base, "another permission: <code>calendar&lt;b&gt;</code>"));
    assert_non_null(strstr(out.base, "name=\"decision\" value=\"allow\""));
    assert_non_null(strstr(out.base, "name=\"decision\" value=\"deny\""));
    assert_non_null(strstr(out.base, "name=\"csrf\" value=\"t0k3n\""));
    assert_non_null(strstr(out.base, "action=\"/oidc/consent\""));

    page.form.lang = GW_LANG_DE;
    assert_int_equal(gw_html_render_consent(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_DE);
    assert_non_null(strstr(out.base, "„Moodle &amp; Co“ möchte Folgendes verwenden:"));
    assert_non_null(strstr(out.base, "Vorname, Nachname und Benutzername"));
}

static void enroll_page_has_code_and_two_new_passwords(void **state)
{
    gw_html_enroll page = {.form = {.lang = GW_LANG_DE, .error = GW_HTML_MSG_PASSWORDS_DIFFER}, .username = "mia.k"};
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_enroll(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_DE);
    assert_inputs_labelled(out.base);
    assert_non_null(strstr(out.base, "action=\"/oidc/enroll\""));
    assert_non_null(strstr(out.base, "autocomplete=\"one-time-code\""));
    assert_int_equal(count(out.base, "autocomplete=\"new-password\""), 2);
    assert_non_null(strstr(out.base, "value=\"mia.k\""));
    assert_non_null(strstr(out.base, "<a href=\"/oidc/login\">")); /* no pending request */
    page.form.request = "k1.abc.def";
    assert_int_equal(gw_html_render_enroll(&pool, &page, &out), GW_HTML_OK);
    assert_non_null(strstr(out.base, "<input type=\"hidden\" name=\"request\" value=\"k1.abc.def\">"));
    assert_non_null(strstr(out.base, "<a href=\"/oidc/login?request=k1.abc.def\">"));
    assert_non_null(strstr(out.base, "role=\"alert\""));
    assert_non_null(strstr(out.base, "Die beiden Passwörter sind nicht gleich."));
    /* a field with a hint is described by the error and the hint */
    assert_non_null(strstr(out.base, "aria-describedby=\"form-error code-hint\""));
}

static void error_page_never_leads_back(void **state)
{
    gw_html_error page = {
        .lang = GW_LANG_EN, .message = GW_HTML_MSG_BAD_REDIRECT_URI, .code = "invalid_request<x>", .request_id = "01J-abc"};
    h2o_iovec_t out;
    assert_int_equal(gw_html_render_error(&pool, &page, &out), GW_HTML_OK);
    assert_page_shape(out.base, GW_LANG_EN);
    assert_null(strstr(out.base, "<form"));
    assert_null(strstr(out.base, "<a "));
    assert_null(strstr(out.base, "http-equiv"));
    assert_non_null(strstr(out.base, "return address that is not registered"));
    assert_non_null(strstr(out.base, "<code>invalid_request&lt;x&gt;</code>"));
    assert_non_null(strstr(out.base, "<code>01J-abc</code>"));
}

static void every_message_has_both_languages(void **state)
{
    assert_string_equal(gw_html_msg_text(GW_HTML_MSG_NONE, GW_LANG_DE), "");
    for (int m = GW_HTML_MSG_NONE + 1; m < GW_HTML_MSG_COUNT_; m++) {
        const char *de = gw_html_msg_text((gw_html_msg)m, GW_LANG_DE), *en = gw_html_msg_text((gw_html_msg)m, GW_LANG_EN);
        assert_true(strlen(de) > 10);
        assert_true(strlen(en) > 10);
        assert_string_not_equal(de, en);
        assert_null(strpbrk(de, "<>&\"")); /* texts are escaped anyway; keep them plain */
    }
    assert_string_equal(gw_html_msg_text(GW_HTML_MSG_COUNT_, GW_LANG_DE), "");
    assert_string_equal(gw_html_msg_text((gw_html_msg)-1, GW_LANG_EN), "");
}

static void pages_are_bounded(void **state)
{
    static char big[8000];
    memset(big, '<', sizeof(big) - 1);
    const char *scopes[4] = {big, big, big, big};
    gw_html_consent page = {.form = {.lang = GW_LANG_DE}, .client_name = "x", .scopes = scopes, .nscopes = 4};
    h2o_iovec_t out;
    /* 4 x 8000 x "&lt;" is past the limit */
    assert_int_equal(gw_html_render_consent(&pool, &page, &out), GW_HTML_ETOOBIG);
    assert_int_equal(out.len, 0);
    page.nscopes = 1;
    assert_int_equal(gw_html_render_consent(&pool, &page, &out), GW_HTML_OK);
    assert_true(out.len > 32000 && out.len < GW_HTML_MAX_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escape_replaces_the_five_characters),
        cmocka_unit_test(escape_keeps_utf8_and_replaces_the_rest),
        cmocka_unit_test(lang_defaults_to_german),
        cmocka_unit_test(lang_follows_q_values),
        cmocka_unit_test(lang_skips_malformed_ranges),
        cmocka_unit_test(lang_reads_a_bounded_header),
        cmocka_unit_test(lang_prefers_ui_locales),
        cmocka_unit_test(login_page_in_both_languages),
        cmocka_unit_test(login_page_escapes_what_it_echoes),
        cmocka_unit_test(consent_page_explains_scopes),
        cmocka_unit_test(enroll_page_has_code_and_two_new_passwords),
        cmocka_unit_test(error_page_never_leads_back),
        cmocka_unit_test(every_message_has_both_languages),
        cmocka_unit_test(pages_are_bounded),
        cmocka_unit_test(login_page_asks_for_the_second_factor),
        cmocka_unit_test(login_page_says_how_long_to_wait),
        cmocka_unit_test(logout_page_posts_back_what_it_was_given),
        cmocka_unit_test(signed_out_page_in_both_languages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
