/* Unit tests of text.c: the markdown subset, the small value checks, the
 * search query and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

static msg_text_error check(const char *s)
{
    size_t offset;
    return msg_text_check(s, MSG_TEXT_MAX_CHARS, &offset);
}

static void accepts_the_subset(void **state)
{
    assert_int_equal(check("Hallo Klasse 1a!"), MSG_TEXT_OK);
    assert_int_equal(check("**fett**, *kursiv*, _auch kursiv_, ~~durch~~, `code`"), MSG_TEXT_OK);
    assert_int_equal(check("- eins\n- zwei\n\n1. erstens\n2. zweitens"), MSG_TEXT_OK);
    assert_int_equal(check("> zitiert\n\nAntwort"), MSG_TEXT_OK);
    assert_int_equal(check("[Elternbrief](https://schule.example.org/brief.pdf)"), MSG_TEXT_OK);
    assert_int_equal(check("[Mail](mailto:sekretariat@schule.example.org)"), MSG_TEXT_OK);
    assert_int_equal(check("[alt](http://example.org)"), MSG_TEXT_OK);
    assert_int_equal(check("[case](HTTPS://EXAMPLE.ORG)"), MSG_TEXT_OK);
    assert_int_equal(check("Umlaute äöüß, Emoji 😀, Tab\tund\nZeilen"), MSG_TEXT_OK);
    /* A '<' that starts no tag is text. */
    assert_int_equal(check("3 < 4 and 5 <= 6, <3"), MSG_TEXT_OK);
    /* HTML inside code is literal. */
    assert_int_equal(check("Schreibe `<b>` für fett"), MSG_TEXT_OK);
    assert_int_equal(check("``a `<i>` b``"), MSG_TEXT_OK);
    assert_int_equal(check("```html\n<script>alert(1)</script>\n```\nfertig"), MSG_TEXT_OK);
    assert_int_equal(check("~~~\n<div>\n~~~"), MSG_TEXT_OK);
    /* An unclosed fence runs to the end: all of it is code. */
    assert_int_equal(check("```\n<div>"), MSG_TEXT_OK);
    /* Escaped characters are literal. */
    assert_int_equal(check("\\<div> and \\![x](javascript:y)"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("\\<div>"), MSG_TEXT_OK);
    assert_int_equal(check("Wow![nicht]"), MSG_TEXT_OK);
}

static void refuses_raw_html(void **state)
{
    size_t offset = 0;
    assert_int_equal(msg_text_check("Hallo <b>fett</b>", MSG_TEXT_MAX_CHARS, &offset), MSG_TEXT_HTML);
    assert_int_equal(offset, 6);
    assert_int_equal(check("<script>alert(1)</script>"), MSG_TEXT_HTML);
    assert_int_equal(check("x </p>"), MSG_TEXT_HTML);
    assert_int_equal(check("<!-- comment -->"), MSG_TEXT_HTML);
    assert_int_equal(check("<?php ?>"), MSG_TEXT_HTML);
    assert_int_equal(check("<img src=x onerror=alert(1)>"), MSG_TEXT_HTML);
    /* Autolinks look like tags and are refused too: plain URLs work. */
    assert_int_equal(check("<https://example.org>"), MSG_TEXT_HTML);
    /* A code span must close on its line to hide anything. */
    assert_int_equal(check("`a\n# <script>\n`"), MSG_TEXT_HTML);
    assert_int_equal(check("`` x ` <b>"), MSG_TEXT_HTML);
    /* A fence with a backtick in its info string is no fence. */
    assert_int_equal(check("``` a`b\n<b>\n```"), MSG_TEXT_HTML);
    /* A fence indented by four spaces is no fence. */
    assert_int_equal(check("    ```\n<b>\n    ```"), MSG_TEXT_HTML);
    /* After a closed fence, checking resumes. */
    assert_int_equal(check("```\ncode\n```\n<b>"), MSG_TEXT_HTML);
}

static void refuses_images_and_bad_links(void **state)
{
    assert_int_equal(check("![pixel](https://tracker.example/p.gif)"), MSG_TEXT_IMAGE);
    assert_int_equal(check("![über\nzwei Zeilen](https://tracker.example/p.gif)"), MSG_TEXT_IMAGE);
    assert_int_equal(check("[klick](javascript:alert(1))"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[klick]( javascript:alert(1))"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[klick](<javascript:alert(1)>)"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[x](jav&#x61;script:alert(1))"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[x](data:text/html;base64,PHNjcmlwdD4=)"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[x](/relative/path)"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[x](http&#58;//example.org)"), MSG_TEXT_LINK_SCHEME);
    assert_int_equal(check("[x]: javascript:alert(1)\n\n[x]"), MSG_TEXT_LINK_REFDEF);
    assert_int_equal(check("   [x]: https://example.org"), MSG_TEXT_LINK_REFDEF);
    /* Link text spanning lines still has its target checked. */
    assert_int_equal(check("[a\nb](\njavascript:x)"), MSG_TEXT_LINK_SCHEME);
}

static void refuses_bad_text(void **state)
{
    assert_int_equal(check(""), MSG_TEXT_EMPTY);
    assert_int_equal(check("  \n\t "), MSG_TEXT_EMPTY);
    assert_int_equal(check("a\rb"), MSG_TEXT_CONTROL);
    assert_int_equal(check("bell\a"), MSG_TEXT_CONTROL);
    assert_int_equal(check("c1 \xc2\x85 control"), MSG_TEXT_CONTROL);
    assert_int_equal(check("bad \xff utf-8"), MSG_TEXT_BAD_UTF8);
    assert_int_equal(check("overlong \xc0\xaf"), MSG_TEXT_BAD_UTF8);
    assert_int_equal(check("surrogate \xed\xa0\x80"), MSG_TEXT_BAD_UTF8);
    assert_int_equal(check("cut \xe2\x82"), MSG_TEXT_BAD_UTF8);
    size_t offset;
    assert_int_equal(msg_text_check("12345", 4, &offset), MSG_TEXT_TOO_LONG);
    assert_int_equal(msg_text_check("ääää", 4, &offset), MSG_TEXT_OK);
    char *big = malloc(MSG_TEXT_MAX_BYTES + 2);
    memset(big, 'a', MSG_TEXT_MAX_BYTES + 1);
    big[MSG_TEXT_MAX_BYTES + 1] = '\0';
    assert_int_equal(msg_text_check(big, (size_t)-1, &offset), MSG_TEXT_TOO_LONG);
    free(big);
    assert_string_equal(msg_text_code(MSG_TEXT_HTML), "messaging.text_html");
    assert_string_equal(msg_text_code(MSG_TEXT_LINK_REFDEF), "messaging.text_link");
    assert_non_null(strstr(msg_text_strerror(MSG_TEXT_IMAGE), "attach"));
}

static void small_values(void **state)
{
    assert_true(msg_txn_id_valid("m1"));
    assert_true(msg_txn_id_valid("01J2-abc_DEF.~x"));
    assert_false(msg_txn_id_valid(""));
    assert_false(msg_txn_id_valid("has space"));
    assert_false(msg_txn_id_valid("a/b"));
    assert_false(msg_txn_id_valid("12345678901234567890123456789012345678901234567890123456789012345"));
    assert_true(msg_reaction_key_valid("👍"));
    assert_true(msg_reaction_key_valid("+1"));
    assert_false(msg_reaction_key_valid(""));
    assert_false(msg_reaction_key_valid("a b"));
    assert_false(msg_reaction_key_valid("a\xc2\xa0"));
    assert_false(msg_reaction_key_valid("0123456789012345678901234567890123"));
    assert_true(msg_media_type_valid("image/png"));
    assert_true(msg_media_type_valid("application/vnd.oasis.opendocument.text"));
    assert_false(msg_media_type_valid("image"));
    assert_false(msg_media_type_valid("Image/PNG"));
    assert_false(msg_media_type_valid("text/html; charset=utf-8"));
    assert_false(msg_media_type_valid("/png"));
    assert_true(msg_file_name_valid("Elternbrief März.pdf"));
    assert_false(msg_file_name_valid("../etc/passwd"));
    assert_false(msg_file_name_valid("a\\b"));
    assert_false(msg_file_name_valid(".."));
    assert_false(msg_file_name_valid(""));
    assert_false(msg_file_name_valid("a\nb"));
    assert_int_equal(msg_plain_length("Grüße"), 5);
    assert_int_equal(msg_plain_length("a\tb"), -1);
}

static void search_queries(void **state)
{
    kr_arena a;
    kr_arena_init(&a);
    assert_string_equal(msg_search_query(&a, "Ausflug"), "Ausflug:*");
    assert_string_equal(msg_search_query(&a, "  Ausflug, Zoo! "), "Ausflug:* & Zoo:*");
    assert_string_equal(msg_search_query(&a, "Müller's & (x | !y)"), "Müller:* & s:* & x:* & y:*");
    assert_null(msg_search_query(&a, "&|!():*"));
    assert_null(msg_search_query(&a, ""));
    assert_null(msg_search_query(&a, "bad \xff"));
    kr_arena_free(&a);
}

static void timestamps(void **state)
{
    int64_t ms;
    assert_true(msg_time_parse("1970-01-01T00:00:00Z", &ms));
    assert_int_equal(ms, 0);
    assert_true(msg_time_parse("2026-09-21T14:13:20.123Z", &ms));
    assert_int_equal(ms, 1790000000123LL);
    assert_true(msg_time_parse("2026-09-21T16:13:20+02:00", &ms));
    assert_int_equal(ms, 1790000000000LL);
    assert_false(msg_time_parse("2026-02-30T00:00:00Z", &ms));
    assert_false(msg_time_parse("2026-09-21 14:13:20Z", &ms));
    assert_false(msg_time_parse("2026-09-21T14:13:20", &ms));
    assert_false(msg_time_parse("yesterday", &ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_the_subset), cmocka_unit_test(refuses_raw_html), cmocka_unit_test(refuses_images_and_bad_links),
        cmocka_unit_test(refuses_bad_text),   cmocka_unit_test(small_values),     cmocka_unit_test(search_queries),
        cmocka_unit_test(timestamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
