#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "password.h"

/* The cheapest parameters the module accepts keep the tests fast. */
static const ident_argon2_params cheap = {.memory_kib = IDENT_ARGON2_MIN_MEMORY_KIB, .iterations = 1, .lanes = 1};

/* ------------------------------------------------------------- hashing */

static void hash_then_verify(void **state)
{
    char enc[IDENT_PASSWORD_HASH_MAX];
    const char *pw = "Mein Hund heißt Bello";
    assert_int_equal(ident_password_hash(&cheap, pw, strlen(pw), enc, sizeof(enc)), IDENT_PW_OK);
    assert_true(strncmp(enc, "$argon2id$v=19$m=8192,t=1,p=1$", 30) == 0);
    assert_int_equal(ident_password_verify(enc, pw, strlen(pw)), IDENT_PW_OK);
    assert_int_equal(ident_password_verify(enc, "Mein Hund heisst Bello", 22), IDENT_PW_MISMATCH);
    assert_int_equal(ident_password_verify(enc, pw, strlen(pw) - 1), IDENT_PW_MISMATCH);
    assert_int_equal(ident_password_verify(enc, "", 0), IDENT_PW_MISMATCH);
}

static void same_password_gets_a_new_salt(void **state)
{
    char a[IDENT_PASSWORD_HASH_MAX], b[IDENT_PASSWORD_HASH_MAX];
    assert_int_equal(ident_password_hash(&cheap, "sonnenaufgang am see", 20, a, sizeof(a)), IDENT_PW_OK);
    assert_int_equal(ident_password_hash(&cheap, "sonnenaufgang am see", 20, b, sizeof(b)), IDENT_PW_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(ident_password_verify(a, "sonnenaufgang am see", 20), IDENT_PW_OK);
    assert_int_equal(ident_password_verify(b, "sonnenaufgang am see", 20), IDENT_PW_OK);
}

/* A hash made by another argon2id implementation with known inputs
 * (password "password", salt "somesalt", m=65536, t=2, p=1, 32 bytes; the
 * argon2 reference implementation's test values). */
static void verifies_reference_hash(void **state)
{
    const char *enc = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
    assert_int_equal(ident_password_verify(enc, "password", 8), IDENT_PW_OK);
    assert_int_equal(ident_password_verify(enc, "Password", 8), IDENT_PW_MISMATCH);
}

static void refuses_bad_arguments(void **state)
{
    char enc[IDENT_PASSWORD_HASH_MAX];
    ident_argon2_params weak = {.memory_kib = 4096, .iterations = 1, .lanes = 1};
    assert_int_equal(ident_password_hash(&weak, "x", 1, enc, sizeof(enc)), IDENT_PW_EINVAL);
    ident_argon2_params no_pass = {.memory_kib = 8192, .iterations = 0, .lanes = 1};
    assert_int_equal(ident_password_hash(&no_pass, "x", 1, enc, sizeof(enc)), IDENT_PW_EINVAL);
    assert_int_equal(ident_password_hash(&cheap, "x", 1, enc, 16), IDENT_PW_EINVAL);
    static char huge[IDENT_PASSWORD_MAX_BYTES + 2];
    memset(huge, 'a', sizeof(huge) - 1);
    assert_int_equal(ident_password_hash(&cheap, huge, sizeof(huge) - 1, enc, sizeof(enc)), IDENT_PW_EINVAL);
    assert_int_equal(ident_password_hash(&cheap, "x", 1, enc, sizeof(enc)), IDENT_PW_OK);
    assert_int_equal(ident_password_verify(enc, huge, sizeof(huge) - 1), IDENT_PW_EINVAL);
    ident_argon2_params def = ident_argon2_defaults();
    assert_true(ident_argon2_params_valid(&def));
}

static void unreadable_hashes_are_format_errors(void **state)
{
    const char *bad[] = {
        "",
        "plaintext",
        "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
        "$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=65536,t=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=065536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=99999999999,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$!!!!",
        "$2b$12$abcdefghijklmnopqrstuu5Yl8Qp0hUJXgvBpxC8e2F.9Q7rr9aKG",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = ident_password_verify(bad[i], "password", 8);
        if (rc != IDENT_PW_EFORMAT)
            fail_msg("%s: expected a format error, got %s", bad[i], ident_pw_strerror(rc));
    }
}

static void needs_rehash_when_parameters_change(void **state)
{
    char enc[IDENT_PASSWORD_HASH_MAX];
    assert_int_equal(ident_password_hash(&cheap, "eine lange reise", 16, enc, sizeof(enc)), IDENT_PW_OK);
    assert_false(ident_password_needs_rehash(&cheap, enc));
    ident_argon2_params p;
    assert_int_equal(ident_password_hash_params(enc, &p), IDENT_PW_OK);
    assert_int_equal(p.memory_kib, 8192);
    assert_int_equal(p.iterations, 1);
    assert_int_equal(p.lanes, 1);

    ident_argon2_params more = cheap;
    more.iterations = 2;
    assert_true(ident_password_needs_rehash(&more, enc));
    more = cheap;
    more.memory_kib = 16384;
    assert_true(ident_password_needs_rehash(&more, enc));
    more = cheap;
    more.lanes = 2;
    assert_true(ident_password_needs_rehash(&more, enc));
    assert_true(ident_password_needs_rehash(&cheap, "$argon2i$v=19$m=8192,t=1,p=1$c29tZXNhbHQ$AAAA"));
    assert_true(ident_password_needs_rehash(&cheap, "garbage"));
}

/* -------------------------------------------------------------- policy */

static ident_denylist *deny;

/* The shipped list, found beside this file. */
static int load_shipped_list(void **state)
{
    char path[512], err[256];
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    int dirlen = slash != NULL ? (int)(slash - file) : 1;
    snprintf(path, sizeof(path), "%.*s/data/common-passwords.txt", dirlen, slash != NULL ? file : ".");
    if (ident_denylist_load(path, &deny, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int free_list(void **state)
{
    ident_denylist_free(deny);
    return 0;
}

static void expect(const char *pw, const ident_pwp_person *who, ident_pwp_reason want)
{
    ident_pwp_reason got = ident_password_policy_check(deny, pw, who);
    if (got != want)
        fail_msg("'%s': expected %s, got %s", pw, ident_pwp_code(want), ident_pwp_code(got));
}

static void shipped_list_is_loaded(void **state)
{
    assert_true(ident_denylist_size(deny) >= 300);
    assert_true(ident_denylist_contains(deny, "passwort"));
    assert_true(ident_denylist_contains(deny, "SCHULE"));
    assert_true(ident_denylist_contains(deny, "Fußball"));
    assert_false(ident_denylist_contains(deny, "grüne giraffe tanzt"));
}

static void length_counts_code_points(void **state)
{
    expect("", NULL, IDENT_PWP_TOO_SHORT);
    expect("kurz", NULL, IDENT_PWP_TOO_SHORT);
    /* seven code points in 14 bytes: still too short */
    expect("äöüäöüß", NULL, IDENT_PWP_TOO_SHORT);
    /* eight code points */
    expect("grünweiß", NULL, IDENT_PWP_OK);
    expect("🦒🦓🐘🦁🐯🐻🐼🐨", NULL, IDENT_PWP_OK);
    expect("🦒🦓🐘🦁🐯🐻🐼", NULL, IDENT_PWP_TOO_SHORT);

    char longest[IDENT_PASSWORD_MAX_CHARS * 2 + 2];
    for (int i = 0; i < IDENT_PASSWORD_MAX_CHARS; i++)
        longest[i] = "dertigerschlaeft"[i % 16];
    longest[IDENT_PASSWORD_MAX_CHARS] = '\0';
    expect(longest, NULL, IDENT_PWP_OK);
    longest[IDENT_PASSWORD_MAX_CHARS] = 'x';
    longest[IDENT_PASSWORD_MAX_CHARS + 1] = '\0';
    expect(longest, NULL, IDENT_PWP_TOO_LONG);
    static char far_too_long[4096];
    memset(far_too_long, 'q', sizeof(far_too_long) - 1);
    expect(far_too_long, NULL, IDENT_PWP_TOO_LONG);
}

static void no_composition_rules(void **state)
{
    expect("einhornpupsregenbogen", NULL, IDENT_PWP_OK);
    expect("mein pferd heisst blitz", NULL, IDENT_PWP_OK);
    expect("kxvqmtrw", NULL, IDENT_PWP_OK);
}

static void invalid_utf8_and_controls(void **state)
{
    expect("abc\xff"
           "defghij",
           NULL, IDENT_PWP_INVALID_CHARS);
    expect("abcdefg\xc3", NULL, IDENT_PWP_INVALID_CHARS);              /* truncated */
    expect("abcdefgh\xc0\xaf", NULL, IDENT_PWP_INVALID_CHARS);         /* overlong '/' */
    expect("abcdefgh\xed\xa0\x80", NULL, IDENT_PWP_INVALID_CHARS);     /* surrogate */
    expect("abcdefgh\xf4\x90\x80\x80", NULL, IDENT_PWP_INVALID_CHARS); /* beyond U+10FFFF */
    expect("abcd\tefghij", NULL, IDENT_PWP_INVALID_CHARS);
    expect("abcdefghij\x7f", NULL, IDENT_PWP_INVALID_CHARS);
    expect("abcdefghij\xc2\x85", NULL, IDENT_PWP_INVALID_CHARS); /* U+0085, a C1 control */
}

static void common_passwords_and_variants(void **state)
{
    expect("passwort", NULL, IDENT_PWP_COMMON);
    expect("Passwort", NULL, IDENT_PWP_COMMON);
    expect("PASSWORT1", NULL, IDENT_PWP_COMMON);
    expect("passwort123!", NULL, IDENT_PWP_COMMON);
    expect("!!passwort!!", NULL, IDENT_PWP_COMMON);
    expect("p4ssw0rt", NULL, IDENT_PWP_COMMON);
    expect("P@ssw0rd2024", NULL, IDENT_PWP_COMMON);
    expect("schule123", NULL, IDENT_PWP_COMMON);
    expect("hallo123", NULL, IDENT_PWP_COMMON);
    expect("fussball", NULL, IDENT_PWP_COMMON);
    expect("Fußball2015", NULL, IDENT_PWP_COMMON);
    expect("FUSSBALL", NULL, IDENT_PWP_COMMON);
    expect("ich liebe dich", NULL, IDENT_PWP_COMMON);
    expect("schalke04", NULL, IDENT_PWP_COMMON);
    expect("1q2w3e4r", NULL, IDENT_PWP_COMMON);
    expect("123123123", NULL, IDENT_PWP_REPEATED);
    /* a common word inside a longer phrase is fine: length is what counts */
    expect("fussball im regen", NULL, IDENT_PWP_OK);
    expect("hallo kleiner drache", NULL, IDENT_PWP_OK);
}

static void sequences_and_repetitions(void **state)
{
    expect("12345678", NULL, IDENT_PWP_SEQUENCE);
    expect("87654321", NULL, IDENT_PWP_SEQUENCE);
    expect("1234567890", NULL, IDENT_PWP_SEQUENCE);
    expect("abcdefgh", NULL, IDENT_PWP_SEQUENCE);
    expect("qwertzui", NULL, IDENT_PWP_SEQUENCE);
    expect("QWERTYUIOP", NULL, IDENT_PWP_SEQUENCE);
    expect("asdfghjklöä", NULL, IDENT_PWP_SEQUENCE);
    expect("yxcvbnm123", NULL, IDENT_PWP_SEQUENCE);
    expect("qwertz123", NULL, IDENT_PWP_SEQUENCE);
    expect("1234abcd", NULL, IDENT_PWP_SEQUENCE);
    expect("aaaaaaaa", NULL, IDENT_PWP_REPEATED);
    expect("11111111", NULL, IDENT_PWP_REPEATED);
    expect("ääääääää", NULL, IDENT_PWP_REPEATED);
    expect("abababab", NULL, IDENT_PWP_REPEATED);
    expect("hundhundhund", NULL, IDENT_PWP_REPEATED);
    expect("12121212", NULL, IDENT_PWP_REPEATED);
    /* a sequence and a word is not refused by the sequence rule */
    expect("zebra12345678", NULL, IDENT_PWP_OK);
    expect("abcpferdxyz", NULL, IDENT_PWP_OK);
}

static void the_persons_own_names(void **state)
{
    ident_pwp_person lisa = {.username = "lisa.mueller", .given_name = "Lisa", .family_name = "Müller"};
    expect("lisa.mueller", &lisa, IDENT_PWP_PERSONAL);
    expect("LisaMüller", &lisa, IDENT_PWP_PERSONAL);
    expect("MuellerLisa", &lisa, IDENT_PWP_PERSONAL);
    expect("mueller2015", &lisa, IDENT_PWP_PERSONAL);
    expect("Lisa2015!", &lisa, IDENT_PWP_PERSONAL);
    expect("l1s4mu3ll3r", &lisa, IDENT_PWP_PERSONAL);
    expect("lisa mag pferde", &lisa, IDENT_PWP_OK);
    /* without the person, the same password is only a name on the list */
    expect("Lisa2015!", NULL, IDENT_PWP_COMMON);
    /* short names are not compared */
    ident_pwp_person bo = {.username = "bo", .given_name = "Bo", .family_name = "Li"};
    expect("bo-xy-2015", &bo, IDENT_PWP_OK);
    expect("bo-li-2015", &bo, IDENT_PWP_PERSONAL); /* both names together are long enough */
    ident_pwp_person ole = {.username = "o.eks", .given_name = "Ole", .family_name = "Eks"};
    expect("ole-2015!", &ole, IDENT_PWP_PERSONAL);
    expect("Eks.Ole.2015", &ole, IDENT_PWP_PERSONAL);
    ident_pwp_person none = {0};
    expect("dertigerschlaeft", &none, IDENT_PWP_OK);
}

static void without_a_list_only_rules_apply(void **state)
{
    assert_int_equal(ident_password_policy_check(NULL, "passwort1", NULL), IDENT_PWP_OK);
    assert_int_equal(ident_password_policy_check(NULL, "12345678", NULL), IDENT_PWP_SEQUENCE);
    assert_int_equal(ident_password_policy_check(NULL, NULL, NULL), IDENT_PWP_TOO_SHORT);
}

static void every_reason_has_code_and_both_languages(void **state)
{
    for (int r = IDENT_PWP_OK; r <= IDENT_PWP_COMMON; r++) {
        const char *code = ident_pwp_code((ident_pwp_reason)r);
        assert_true(strncmp(code, "password.", 9) == 0);
        assert_string_not_equal(code, "password.unknown");
        const char *de = ident_pwp_message((ident_pwp_reason)r, "de");
        const char *en = ident_pwp_message((ident_pwp_reason)r, "en");
        assert_string_not_equal(de, en);
        assert_string_equal(en, ident_pwp_message((ident_pwp_reason)r, NULL));
        assert_string_equal(de, ident_pwp_message((ident_pwp_reason)r, "de-AT"));
    }
    assert_string_equal(ident_pwp_code(IDENT_PWP_TOO_SHORT), "password.too_short");
    assert_non_null(strstr(ident_pwp_message(IDENT_PWP_TOO_SHORT, "de"), "mindestens 8 Zeichen"));
    assert_non_null(strstr(ident_pwp_message(IDENT_PWP_TOO_SHORT, "en"), "at least 8 characters"));
}

/* ---------------------------------------------------- deny-list itself */

static void list_folds_trims_and_deduplicates(void **state)
{
    ident_denylist *dl = ident_denylist_new();
    ident_denylist_add(dl, "  Hallo\r\n");
    ident_denylist_add(dl, "hallo");
    ident_denylist_add(dl, "GRÜN");
    ident_denylist_add(dl, "");
    ident_denylist_add(dl, "   ");
    ident_denylist_add(dl, "bad\xff");
    assert_int_equal(ident_denylist_size(dl), 2);
    assert_true(ident_denylist_contains(dl, "HALLO"));
    assert_true(ident_denylist_contains(dl, "gruen"));
    assert_true(ident_denylist_contains(dl, "Grün"));
    assert_false(ident_denylist_contains(dl, "hall"));
    assert_false(ident_denylist_contains(dl, ""));
    /* grows well past its first table */
    char w[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(w, sizeof(w), "wort%d", i);
        ident_denylist_add(dl, w);
    }
    assert_int_equal(ident_denylist_size(dl), 5002);
    for (int i = 0; i < 5000; i += 97) {
        snprintf(w, sizeof(w), "WORT%d", i);
        assert_true(ident_denylist_contains(dl, w));
    }
    assert_false(ident_denylist_contains(dl, "wort5000"));
    ident_denylist_free(dl);
}

static void load_reports_a_missing_file(void **state)
{
    ident_denylist *dl = NULL;
    char err[256] = "";
    assert_int_equal(ident_denylist_load("/nonexistent/common-passwords.txt", &dl, err, sizeof(err)), -1);
    assert_null(dl);
    assert_non_null(strstr(err, "/nonexistent/common-passwords.txt"));
}

static void load_skips_comments_and_blank_lines(void **state)
{
    char path[] = "/tmp/kr-denylist-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# a comment\n\nerster\n  zweiter  \n#dritter\nvierter";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ident_denylist *dl = NULL;
    char err[256];
    assert_int_equal(ident_denylist_load(path, &dl, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(ident_denylist_size(dl), 3);
    assert_true(ident_denylist_contains(dl, "zweiter"));
    assert_true(ident_denylist_contains(dl, "vierter"));
    assert_false(ident_denylist_contains(dl, "#dritter"));
    ident_denylist_free(dl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_then_verify),
        cmocka_unit_test(same_password_gets_a_new_salt),
        cmocka_unit_test(verifies_reference_hash),
        cmocka_unit_test(refuses_bad_arguments),
        cmocka_unit_test(unreadable_hashes_are_format_errors),
        cmocka_unit_test(needs_rehash_when_parameters_change),
        cmocka_unit_test(shipped_list_is_loaded),
        cmocka_unit_test(length_counts_code_points),
        cmocka_unit_test(no_composition_rules),
        cmocka_unit_test(invalid_utf8_and_controls),
        cmocka_unit_test(common_passwords_and_variants),
        cmocka_unit_test(sequences_and_repetitions),
        cmocka_unit_test(the_persons_own_names),
        cmocka_unit_test(without_a_list_only_rules_apply),
        cmocka_unit_test(every_reason_has_code_and_both_languages),
        cmocka_unit_test(list_folds_trims_and_deduplicates),
        cmocka_unit_test(load_reports_a_missing_file),
        cmocka_unit_test(load_skips_comments_and_blank_lines),
    };
    return cmocka_run_group_tests_name("password", tests, load_shipped_list, free_list);
}
