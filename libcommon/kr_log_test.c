#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kr_log.h"

/* The line bound promised in kr_log.c, newline included. */
#define LINE_LIMIT 16384

/* ------------------------------------------------------ capturing stderr */

typedef struct {
    int saved_fd;
    FILE *file;
} capture_t;

static void capture_begin(capture_t *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns everything written meanwhile (caller frees). */
static char *capture_end(capture_t *c, size_t *len)
{
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    assert_int_equal(fseek(c->file, 0, SEEK_END), 0);
    long size = ftell(c->file);
    assert_true(size >= 0);
    rewind(c->file);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, c->file), (size_t)size);
    buf[size] = '\0';
    fclose(c->file);
    *len = (size_t)size;
    return buf;
}

/* Parses every line as one JSON object into a new array. Fails the test on a
 * line that is not valid JSON, has duplicate keys, is over the limit or lacks
 * its newline. */
static json_t *parse_lines(const char *text, size_t len)
{
    json_t *arr = json_array();
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        assert_non_null(nl);
        size_t linelen = (size_t)(nl - (text + pos));
        assert_true(linelen + 1 <= LINE_LIMIT);
        json_error_t err;
        json_t *obj = json_loadb(text + pos, linelen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
        if (obj == NULL)
            fail_msg("line is not valid JSON (%s): %.*s", err.text, (int)(linelen > 200 ? 200 : linelen), text + pos);
        assert_true(json_is_object(obj));
        json_array_append_new(arr, obj);
        pos += linelen + 1;
    }
    return arr;
}

/* Runs `fn` with stderr captured and returns the parsed lines. */
static json_t *capture_lines(void (*fn)(void *), void *arg, char **raw_out)
{
    capture_t c;
    size_t len;
    capture_begin(&c);
    fn(arg);
    char *raw = capture_end(&c, &len);
    json_t *lines = parse_lines(raw, len);
    if (raw_out)
        *raw_out = raw;
    else
        free(raw);
    return lines;
}

static const char *str_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        fail_msg("missing field %s", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static int setup(void **state)
{
    kr_log_init("identity", KR_LOG_DEBUG);
    kr_log_set_request_id(NULL);
    return 0;
}

/* --------------------------------------------------------------- fields */

static void log_school_created(void *arg)
{
    kr_log(KR_LOG_INFO, "school created", "school_id", "0190b3c4-7d2e-7a11-9f00-0123456789ab", "note", NULL, NULL);
}

static void line_has_all_fields_and_utc_millisecond_timestamp(void **state)
{
    time_t before = time(NULL);
    json_t *lines = capture_lines(log_school_created, NULL, NULL);
    time_t after = time(NULL);
    assert_int_equal(json_array_size(lines), 1);
    json_t *o = json_array_get(lines, 0);

    assert_int_equal(json_object_size(o), 6);
    assert_string_equal(str_field(o, "level"), "info");
    assert_string_equal(str_field(o, "service"), "identity");
    assert_string_equal(str_field(o, "msg"), "school created");
    assert_string_equal(str_field(o, "school_id"), "0190b3c4-7d2e-7a11-9f00-0123456789ab");
    assert_true(json_is_null(json_object_get(o, "note")));
    assert_null(json_object_get(o, "request_id"));

    const char *ts = str_field(o, "ts");
    assert_int_equal(strlen(ts), 24);
    struct tm tm = {0};
    const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    assert_true(rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' && rest[2] >= '0' && rest[2] <= '9' && rest[3] >= '0' &&
                rest[3] <= '9' && rest[4] == 'Z' && rest[5] == '\0');
    time_t t = timegm(&tm);
    assert_true(t >= before && t <= after);
    json_decref(lines);
}

static void log_errno_check(void *arg)
{
    errno = EAGAIN;
    kr_log(KR_LOG_INFO, "x", NULL);
    *(int *)arg = errno;
}

static void logging_preserves_errno(void **state)
{
    int after = 0;
    json_decref(capture_lines(log_errno_check, &after, NULL));
    assert_int_equal(after, EAGAIN);
}

/* ------------------------------------------------------------- escaping */

static const char tricky[] = "q\"b\\s/n\nr\rt\tc\x01\x1f\x7f é €𝄞";

static void log_tricky(void *arg)
{
    kr_log(KR_LOG_WARN, tricky, "value", tricky, NULL);
}

static void control_quotes_and_backslashes_are_escaped(void **state)
{
    char *raw;
    json_t *lines = capture_lines(log_tricky, NULL, &raw);
    assert_int_equal(json_array_size(lines), 1);
    json_t *o = json_array_get(lines, 0);
    assert_string_equal(str_field(o, "msg"), tricky);
    assert_string_equal(str_field(o, "value"), tricky);
    /* Control characters appear escaped, never raw, in the line itself. */
    assert_non_null(strstr(raw, "\\u0001"));
    assert_non_null(strstr(raw, "\\u001f"));
    assert_null(memchr(raw, '\x01', strlen(raw)));
    free(raw);
    json_decref(lines);
}

static const struct {
    const char *in, *want;
} bad_utf8[] = {
    {"a\xff"
     "b",
     "a\xef\xbf\xbd"
     "b"},
    {"\xc3", "\xef\xbf\xbd"},                                                 /* cut at the end */
    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                                 /* overlong '/' */
    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* surrogate */
    {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
    {"\xe2\x82x", "\xef\xbf\xbd\xef\xbf\xbdx"},                               /* cut in the middle */
    {"\xf0\x9d\x84\x9e", "\xf0\x9d\x84\x9e"},                                 /* valid 4-byte stays */
};

static void log_bad_utf8(void *arg)
{
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
        kr_log(KR_LOG_INFO, bad_utf8[i].in, "v", bad_utf8[i].in, NULL);
}

static void invalid_utf8_becomes_replacement_characters(void **state)
{
    json_t *lines = capture_lines(log_bad_utf8, NULL, NULL);
    size_t n = sizeof(bad_utf8) / sizeof(bad_utf8[0]);
    assert_int_equal(json_array_size(lines), n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(lines, i);
        assert_string_equal(str_field(o, "msg"), bad_utf8[i].want);
        assert_string_equal(str_field(o, "v"), bad_utf8[i].want);
    }
    json_decref(lines);
}

static void log_printf(void *arg)
{
    kr_logf(KR_LOG_ERROR, "n=%d s=%s nul=%c.", 42, "x\"y", 0);
}

static void logf_formats_and_escapes(void **state)
{
    json_t *lines = capture_lines(log_printf, NULL, NULL);
    assert_int_equal(json_array_size(lines), 1);
    json_t *o = json_array_get(lines, 0);
    json_t *msg = json_object_get(o, "msg");
    /* The embedded NUL survives as \u0000, so compare with the length. */
    static const char want[] = "n=42 s=x\"y nul=\0.";
    assert_int_equal(json_string_length(msg), sizeof(want) - 1);
    assert_memory_equal(json_string_value(msg), want, sizeof(want) - 1);
    assert_string_equal(str_field(o, "level"), "error");
    json_decref(lines);
}

/* ------------------------------------------------------------- levels */

static void log_every_level(void *arg)
{
    kr_log(KR_LOG_DEBUG, "d", NULL);
    kr_log(KR_LOG_INFO, "i", NULL);
    kr_logf(KR_LOG_INFO, "i%d", 2);
    kr_log_raw(KR_LOG_DEBUG, "\"x\":1", 5);
    kr_log(KR_LOG_WARN, "w", NULL);
    kr_logf(KR_LOG_ERROR, "e%d", 2);
}

static void lines_below_the_minimum_level_are_dropped(void **state)
{
    kr_log_init("identity", KR_LOG_WARN);
    assert_false(kr_log_enabled(KR_LOG_DEBUG));
    assert_false(kr_log_enabled(KR_LOG_INFO));
    assert_true(kr_log_enabled(KR_LOG_WARN));
    assert_true(kr_log_enabled(KR_LOG_ERROR));
    json_t *lines = capture_lines(log_every_level, NULL, NULL);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(str_field(json_array_get(lines, 0), "level"), "warn");
    assert_string_equal(str_field(json_array_get(lines, 0), "msg"), "w");
    assert_string_equal(str_field(json_array_get(lines, 1), "level"), "error");
    assert_string_equal(str_field(json_array_get(lines, 1), "msg"), "e2");
    json_decref(lines);
}

static void level_names_parse_case_insensitively(void **state)
{
    kr_log_level l = KR_LOG_ERROR;
    assert_true(kr_log_level_parse("DEBUG", &l));
    assert_int_equal(l, KR_LOG_DEBUG);
    assert_true(kr_log_level_parse("Info", &l));
    assert_int_equal(l, KR_LOG_INFO);
    assert_true(kr_log_level_parse("warn", &l));
    assert_int_equal(l, KR_LOG_WARN);
    assert_true(kr_log_level_parse("eRRoR", &l));
    assert_int_equal(l, KR_LOG_ERROR);

    l = KR_LOG_INFO;
    assert_false(kr_log_level_parse("warning", &l));
    assert_false(kr_log_level_parse("", &l));
    assert_false(kr_log_level_parse("inf", &l));
    assert_false(kr_log_level_parse(NULL, &l));
    assert_int_equal(l, KR_LOG_INFO);
}

/* ----------------------------------------------------------- truncation */

struct big_args {
    const char *msg;
    const char *value;
    bool four_fields; /* the value under k0..k3 instead of once under "after" */
};

static void log_big(void *arg)
{
    struct big_args *a = arg;
    if (a->four_fields)
        kr_log(KR_LOG_INFO, a->msg, "k0", a->value, "k1", a->value, "k2", a->value, "k3", a->value, NULL);
    else
        kr_log(KR_LOG_INFO, a->msg, "after", a->value, NULL);
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

/* Checks the one captured line is cut, marked and made only of `unit`s. */
static void check_cut_string(const char *got, const char *unit)
{
    size_t ul = strlen(unit), gl = strlen(got);
    assert_true(gl > 0);
    assert_int_equal(gl % ul, 0);
    for (size_t i = 0; i < gl; i += ul)
        assert_memory_equal(got + i, unit, ul);
}

static void oversized_lines_are_cut_to_the_limit_and_stay_valid(void **state)
{
    static const char *units[] = {"a", "\xe2\x82\xac", "\x01", "\"", "\xf0\x9d\x84\x9e"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        char *big = repeat(units[u], 40000);
        struct big_args a = {big, "tail", false};
        char *raw;
        json_t *lines = capture_lines(log_big, &a, &raw);
        assert_int_equal(json_array_size(lines), 1);
        /* Cut near the limit, not far below it. */
        assert_true(strlen(raw) > LINE_LIMIT - 64);
        json_t *o = json_array_get(lines, 0);
        assert_true(json_is_true(json_object_get(o, "truncated")));
        check_cut_string(str_field(o, "msg"), units[u]);
        assert_null(json_object_get(o, "after"));
        assert_string_equal(str_field(o, "service"), "identity");
        free(raw);
        json_decref(lines);
        free(big);
    }
}

static void an_oversized_value_is_cut_and_the_message_kept(void **state)
{
    char *big = repeat("v", 12000);
    struct big_args a = {"short message", big, true};
    json_t *lines = capture_lines(log_big, &a, NULL);
    assert_int_equal(json_array_size(lines), 1);
    json_t *o = json_array_get(lines, 0);
    assert_string_equal(str_field(o, "msg"), "short message");
    assert_string_equal(str_field(o, "k0"), big);
    check_cut_string(str_field(o, "k1"), "v");
    assert_true(strlen(str_field(o, "k1")) < 12000);
    assert_null(json_object_get(o, "k2"));
    assert_true(json_is_true(json_object_get(o, "truncated")));
    json_decref(lines);
    free(big);
}

/* ---------------------------------------------------------- request ids */

static void log_plain(void *arg)
{
    kr_log(KR_LOG_INFO, "m", NULL);
}

static void request_id_is_written_truncated_and_cleared(void **state)
{
    kr_log_set_request_id("req-1");
    assert_string_equal(kr_log_request_id(), "req-1");
    json_t *lines = capture_lines(log_plain, NULL, NULL);
    assert_string_equal(str_field(json_array_get(lines, 0), "request_id"), "req-1");
    json_decref(lines);

    char *longid = repeat("r", 100);
    kr_log_set_request_id(longid);
    assert_int_equal(strlen(kr_log_request_id()), 64);
    assert_memory_equal(kr_log_request_id(), longid, 64);
    free(longid);

    kr_log_set_request_id(NULL);
    assert_string_equal(kr_log_request_id(), "");
    lines = capture_lines(log_plain, NULL, NULL);
    assert_null(json_object_get(json_array_get(lines, 0), "request_id"));
    json_decref(lines);
}

#define PER_THREAD 300

struct thread_arg {
    const char *id;
    pthread_barrier_t *barrier;
    char seen_after[80];
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    kr_log_set_request_id(a->id);
    /* Both threads log at the same time, so interleaved writes would show. */
    pthread_barrier_wait(a->barrier);
    for (int i = 0; i < PER_THREAD; i++)
        kr_log(KR_LOG_INFO, a->id, "i", "x", NULL);
    snprintf(a->seen_after, sizeof(a->seen_after), "%s", kr_log_request_id());
    return NULL;
}

static void run_two_threads(void *arg)
{
    struct thread_arg *args = arg;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        args[i].barrier = &barrier;
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
}

static void request_id_is_per_thread(void **state)
{
    kr_log_set_request_id("main-thread");
    struct thread_arg args[2] = {{.id = "thread-a"}, {.id = "thread-b"}};
    json_t *lines = capture_lines(run_two_threads, args, NULL);
    assert_int_equal(json_array_size(lines), 2 * PER_THREAD);
    int count_a = 0;
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *o = json_array_get(lines, i);
        assert_string_equal(str_field(o, "request_id"), str_field(o, "msg"));
        count_a += strcmp(str_field(o, "msg"), "thread-a") == 0;
    }
    assert_int_equal(count_a, PER_THREAD);
    assert_string_equal(args[0].seen_after, "thread-a");
    assert_string_equal(args[1].seen_after, "thread-b");
    assert_string_equal(kr_log_request_id(), "main-thread");
    kr_log_set_request_id(NULL);
    json_decref(lines);
}

/* ------------------------------------------------------------ raw lines */

static void log_raw_lines(void *arg)
{
    static const char access[] = "\"status\":200,\n\"path\":\"/x\"";
    kr_log_raw(KR_LOG_INFO, access, sizeof(access) - 1);
    kr_log_raw(KR_LOG_WARN, NULL, 0);
    char *big = repeat("x", 20000);
    memcpy(big, "\"k\":\"", 5);
    big[19999] = '"';
    kr_log_raw(KR_LOG_INFO, big, strlen(big));
    free(big);
}

static void raw_members_follow_the_standard_fields(void **state)
{
    char *raw;
    json_t *lines = capture_lines(log_raw_lines, NULL, &raw);
    assert_int_equal(json_array_size(lines), 3);

    json_t *o = json_array_get(lines, 0);
    assert_int_equal(json_object_size(o), 5);
    assert_string_equal(str_field(o, "level"), "info");
    assert_string_equal(str_field(o, "service"), "identity");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_string_equal(str_field(o, "path"), "/x");
    assert_true(strncmp(raw, "{\"ts\":\"", 7) == 0);

    o = json_array_get(lines, 1);
    assert_int_equal(json_object_size(o), 3);
    assert_string_equal(str_field(o, "level"), "warn");

    o = json_array_get(lines, 2);
    assert_null(json_object_get(o, "k"));
    assert_non_null(strstr(str_field(o, "msg"), "20000 bytes"));
    assert_true(json_is_true(json_object_get(o, "truncated")));
    free(raw);
    json_decref(lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(line_has_all_fields_and_utc_millisecond_timestamp, setup),
        cmocka_unit_test_setup(logging_preserves_errno, setup),
        cmocka_unit_test_setup(control_quotes_and_backslashes_are_escaped, setup),
        cmocka_unit_test_setup(invalid_utf8_becomes_replacement_characters, setup),
        cmocka_unit_test_setup(logf_formats_and_escapes, setup),
        cmocka_unit_test_setup(lines_below_the_minimum_level_are_dropped, setup),
        cmocka_unit_test_setup(level_names_parse_case_insensitively, setup),
        cmocka_unit_test_setup(oversized_lines_are_cut_to_the_limit_and_stay_valid, setup),
        cmocka_unit_test_setup(an_oversized_value_is_cut_and_the_message_kept, setup),
        cmocka_unit_test_setup(request_id_is_written_truncated_and_cleared, setup),
        cmocka_unit_test_setup(request_id_is_per_thread, setup),
        cmocka_unit_test_setup(raw_members_follow_the_standard_fields, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
