#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kr_metrics.h"

/* ------------------------------------------- a small exposition-text reader */

#define MAX_SAMPLES 4096
#define MAX_FAMILIES 512

typedef struct {
    char series[512]; /* name{labels} exactly as rendered */
    double value;
} sample_t;

typedef struct {
    sample_t samples[MAX_SAMPLES];
    size_t nsamples;
    char *text;
} scrape_t;

/* The family a sample line belongs to: histogram sample names carry a
 * _bucket, _sum or _count suffix after the family name from # TYPE. */
static bool belongs_to(const char *series, const char *family, bool histogram)
{
    size_t n = strlen(family);
    if (strncmp(series, family, n) != 0)
        return false;
    const char *rest = series + n;
    if (histogram) {
        if (strncmp(rest, "_bucket", 7) == 0)
            rest += 7;
        else if (strncmp(rest, "_sum", 4) == 0)
            rest += 4;
        else if (strncmp(rest, "_count", 6) == 0)
            rest += 6;
        else
            return false;
    }
    return *rest == '{' || *rest == '\0';
}

/* Renders and parses everything, failing the test when a name has more than
 * one # HELP / # TYPE, a sample is not under its family's # TYPE, or a
 * sample line is malformed. Caller frees with scrape_free(). */
static scrape_t *scrape(void)
{
    scrape_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    size_t len;
    s->text = kr_metrics_render(&len);
    assert_non_null(s->text);
    assert_int_equal(strlen(s->text), len);
    assert_true(len == 0 || s->text[len - 1] == '\n');

    static char families[MAX_FAMILIES][256];
    size_t nfamilies = 0;
    char current[256] = "";
    bool current_hist = false, saw_help = false;

    char *copy = strdup(s->text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], type[32];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%255s", name), 1);
            for (size_t i = 0; i < nfamilies; i++) {
                if (strcmp(families[i], name) == 0)
                    fail_msg("second # HELP for %s", name);
            }
            assert_true(nfamilies < MAX_FAMILIES);
            strcpy(families[nfamilies++], name);
            saw_help = true;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%255s %31s", name, type), 2);
            assert_true(saw_help);
            assert_string_equal(name, families[nfamilies - 1]);
            saw_help = false;
            strcpy(current, name);
            current_hist = strcmp(type, "histogram") == 0;
        } else {
            char *sp = strrchr(line, ' ');
            assert_non_null(sp);
            *sp = '\0';
            if (!belongs_to(line, current, current_hist))
                fail_msg("sample %s outside its family (current %s)", line, current);
            assert_true(s->nsamples < MAX_SAMPLES);
            sample_t *smp = &s->samples[s->nsamples++];
            assert_true(strlen(line) < sizeof(smp->series));
            strcpy(smp->series, line);
            char *end;
            smp->value = strtod(sp + 1, &end);
            assert_true(end != sp + 1 && *end == '\0');
        }
    }
    free(copy);
    return s;
}

static void scrape_free(scrape_t *s)
{
    free(s->text);
    free(s);
}

static double value_of(const scrape_t *s, const char *series)
{
    for (size_t i = 0; i < s->nsamples; i++) {
        if (strcmp(s->samples[i].series, series) == 0)
            return s->samples[i].value;
    }
    fail_msg("no sample %s in:\n%s", series, s->text);
    return NAN;
}

static bool has_series(const scrape_t *s, const char *series)
{
    for (size_t i = 0; i < s->nsamples; i++) {
        if (strcmp(s->samples[i].series, series) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------- tests */

static void counter_and_gauge_values_render(void **state)
{
    kr_metric *c = kr_metrics_counter("t1_requests_total", "Requests handled.", "method=\"GET\"");
    kr_counter_add(c, 1);
    kr_counter_add(c, 41);
    kr_metric *g = kr_metrics_gauge("t1_connections", "Open connections.", NULL);
    kr_gauge_set(g, 10);
    kr_gauge_add(g, -13);

    scrape_t *s = scrape();
    assert_true(value_of(s, "t1_requests_total{method=\"GET\"}") == 42);
    assert_true(value_of(s, "t1_connections") == -3);
    assert_non_null(strstr(s->text, "# HELP t1_requests_total Requests handled.\n# TYPE t1_requests_total counter\n"));
    assert_non_null(strstr(s->text, "# TYPE t1_connections gauge\n"));
    scrape_free(s);
}

static void same_name_and_labels_return_the_same_metric(void **state)
{
    kr_metric *a = kr_metrics_counter("t2_total", "h", NULL);
    assert_ptr_equal(a, kr_metrics_counter("t2_total", "h", ""));
    kr_metric *b = kr_metrics_counter("t2_total", "h", "k=\"v\"");
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(b, kr_metrics_counter("t2_total", "other help", "k=\"v\""));
    kr_counter_add(b, 5);
    scrape_t *s = scrape();
    assert_true(value_of(s, "t2_total") == 0);
    assert_true(value_of(s, "t2_total{k=\"v\"}") == 5);
    scrape_free(s);
}

static void series_are_grouped_under_one_help_and_type(void **state)
{
    kr_metric *a1 = kr_metrics_counter("t3_a_total", "A.", "x=\"1\"");
    kr_metric *b = kr_metrics_gauge("t3_b", "B.", NULL);
    kr_metric *a2 = kr_metrics_counter("t3_a_total", "A.", "x=\"2\"");
    kr_counter_add(a1, 1);
    kr_counter_add(a2, 2);
    kr_gauge_set(b, 7);
    /* scrape() fails on a repeated # HELP or a sample outside its family. */
    scrape_t *s = scrape();
    assert_true(value_of(s, "t3_a_total{x=\"1\"}") == 1);
    assert_true(value_of(s, "t3_a_total{x=\"2\"}") == 2);
    assert_true(value_of(s, "t3_b") == 7);
    scrape_free(s);
}

static void histogram_buckets_are_cumulative_with_sum_and_count(void **state)
{
    static const double bounds[] = {0.1, 1, 10};
    kr_metric *h = kr_metrics_histogram("t4_seconds", "Latency.", "route=\"/x\"", bounds, 3);
    kr_metric *bare = kr_metrics_histogram("t4_seconds", "Latency.", NULL, bounds, 3);
    static const double obs[] = {0.05, 0.1, 0.5, 5, 50};
    for (size_t i = 0; i < 5; i++)
        kr_histogram_observe(h, obs[i]);
    kr_histogram_observe(bare, 2);

    scrape_t *s = scrape();
    assert_true(value_of(s, "t4_seconds_bucket{route=\"/x\",le=\"0.1\"}") == 2);
    assert_true(value_of(s, "t4_seconds_bucket{route=\"/x\",le=\"1\"}") == 3);
    assert_true(value_of(s, "t4_seconds_bucket{route=\"/x\",le=\"10\"}") == 4);
    assert_true(value_of(s, "t4_seconds_bucket{route=\"/x\",le=\"+Inf\"}") == 5);
    assert_true(value_of(s, "t4_seconds_count{route=\"/x\"}") == 5);
    assert_float_equal(value_of(s, "t4_seconds_sum{route=\"/x\"}"), 55.65, 1e-9);

    assert_true(value_of(s, "t4_seconds_bucket{le=\"1\"}") == 0);
    assert_true(value_of(s, "t4_seconds_bucket{le=\"10\"}") == 1);
    assert_true(value_of(s, "t4_seconds_bucket{le=\"+Inf\"}") == 1);
    assert_true(value_of(s, "t4_seconds_sum") == 2);
    assert_true(value_of(s, "t4_seconds_count") == 1);
    assert_non_null(strstr(s->text, "# TYPE t4_seconds histogram\n"));
    scrape_free(s);
}

static void latency_bounds_render_as_short_decimals(void **state)
{
    assert_int_equal(kr_metrics_latency_nbounds, 14);
    assert_true(kr_metrics_latency_bounds[0] == 0.0005);
    assert_true(kr_metrics_latency_bounds[kr_metrics_latency_nbounds - 1] == 10);
    for (size_t i = 1; i < kr_metrics_latency_nbounds; i++)
        assert_true(kr_metrics_latency_bounds[i] > kr_metrics_latency_bounds[i - 1]);

    kr_metric *h = kr_metrics_histogram("t5_seconds", "L.", NULL, kr_metrics_latency_bounds, kr_metrics_latency_nbounds);
    kr_histogram_observe(h, 0.003);
    scrape_t *s = scrape();
    assert_true(value_of(s, "t5_seconds_bucket{le=\"0.0025\"}") == 0);
    assert_true(value_of(s, "t5_seconds_bucket{le=\"0.005\"}") == 1);
    assert_true(value_of(s, "t5_seconds_bucket{le=\"0.0005\"}") == 0);
    assert_true(has_series(s, "t5_seconds_bucket{le=\"2.5\"}"));
    scrape_free(s);

    /* Each bound prints as the shortest text that reads back exactly. */
    static const double odd[] = {1e-5, 0.1 + 0.2, 100, 1e6, 1e20};
    kr_metrics_histogram("t5_odd", "O.", NULL, odd, 5);
    s = scrape();
    assert_true(has_series(s, "t5_odd_bucket{le=\"1e-05\"}"));
    assert_true(has_series(s, "t5_odd_bucket{le=\"0.30000000000000004\"}"));
    assert_true(has_series(s, "t5_odd_bucket{le=\"100\"}"));
    assert_true(has_series(s, "t5_odd_bucket{le=\"1000000\"}"));
    assert_true(has_series(s, "t5_odd_bucket{le=\"1e+20\"}"));
    scrape_free(s);
}

static void label_values_and_help_are_escaped(void **state)
{
    char out[64];
    assert_string_equal(kr_metrics_escape_label("a\"b\\c\nd", out, sizeof(out)), "a\\\"b\\\\c\\nd");
    assert_string_equal(kr_metrics_escape_label(NULL, out, sizeof(out)), "");
    /* Cuts never split an escape or a UTF-8 character. */
    assert_string_equal(kr_metrics_escape_label("\"\"\"", out, 4), "\\\"");
    assert_string_equal(kr_metrics_escape_label("ab\"", out, 4), "ab");
    assert_string_equal(kr_metrics_escape_label("\xc3\xa9\xc3\xa9", out, 4), "\xc3\xa9");
    assert_string_equal(kr_metrics_escape_label("a\xe2\x82\xac", out, 4), "a");
    assert_string_equal(kr_metrics_escape_label("a\xe2\x82\xac", out, 5), "a\xe2\x82\xac");
    out[0] = 'x';
    kr_metrics_escape_label("abc", out, 1);
    assert_int_equal(out[0], '\0');

    char esc[64], labels[96];
    snprintf(labels, sizeof(labels), "path=\"%s\"", kr_metrics_escape_label("/a\"b\\c\nd", esc, sizeof(esc)));
    kr_metric *c = kr_metrics_counter("t6_total", "Help with \\ and\nnewline.", labels);
    kr_counter_add(c, 3);
    scrape_t *s = scrape();
    assert_true(value_of(s, "t6_total{path=\"/a\\\"b\\\\c\\nd\"}") == 3);
    assert_non_null(strstr(s->text, "# HELP t6_total Help with \\\\ and\\nnewline.\n"));
    scrape_free(s);
}

#define THREADS 4
#define PER_THREAD 100000

struct shared {
    pthread_barrier_t barrier;
    kr_metric *counter, *gauge, *hist;
};

static void *hammer(void *p)
{
    struct shared *sh = p;
    pthread_barrier_wait(&sh->barrier);
    for (int i = 0; i < PER_THREAD; i++) {
        kr_counter_add(sh->counter, 1);
        kr_gauge_add(sh->gauge, (i & 1) ? -1 : 1);
        kr_histogram_observe(sh->hist, 0.5);
    }
    return NULL;
}

static void concurrent_updates_lose_nothing(void **state)
{
    static const double bounds[] = {0.25, 1};
    struct shared sh = {
        .counter = kr_metrics_counter("t7_total", "C.", NULL),
        .gauge = kr_metrics_gauge("t7_gauge", "G.", NULL),
        .hist = kr_metrics_histogram("t7_seconds", "H.", NULL, bounds, 2),
    };
    pthread_barrier_init(&sh.barrier, NULL, THREADS);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &sh), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&sh.barrier);

    scrape_t *s = scrape();
    assert_true(value_of(s, "t7_total") == THREADS * PER_THREAD);
    assert_true(value_of(s, "t7_gauge") == 0);
    assert_true(value_of(s, "t7_seconds_bucket{le=\"0.25\"}") == 0);
    assert_true(value_of(s, "t7_seconds_bucket{le=\"1\"}") == THREADS * PER_THREAD);
    assert_true(value_of(s, "t7_seconds_count") == THREADS * PER_THREAD);
    /* Halves add exactly in a double, so a lost CAS update would show. */
    assert_true(value_of(s, "t7_seconds_sum") == THREADS * PER_THREAD * 0.5);
    scrape_free(s);
}

/* ------------------------------------------------------ programming errors */

enum { REG_COUNTER, REG_GAUGE, REG_HIST };

struct bad_reg {
    int kind;
    const char *name, *labels;
    const double *bounds;
    size_t nbounds;
};

/* True when registering `r` in a child process aborts it. */
static bool registration_aborts(const struct bad_reg *r)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        if (r->kind == REG_COUNTER)
            kr_metrics_counter(r->name, "h", r->labels);
        else if (r->kind == REG_GAUGE)
            kr_metrics_gauge(r->name, "h", r->labels);
        else
            kr_metrics_histogram(r->name, "h", r->labels, r->bounds, r->nbounds);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void invalid_registrations_abort(void **state)
{
    static const double ok[] = {1, 2};
    static const double unsorted[] = {2, 1};
    static const double dup[] = {1, 1};
    static const double with_inf[] = {1, INFINITY};
    static const double many[33] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                    18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33};
    kr_metrics_counter("t8_total", "h", NULL);
    kr_metrics_histogram("t8_seconds", "h", NULL, ok, 2);

    static const struct bad_reg bad[] = {
        {REG_COUNTER, "", NULL, NULL, 0},
        {REG_COUNTER, NULL, NULL, NULL, 0},
        {REG_COUNTER, "1abc", NULL, NULL, 0},
        {REG_COUNTER, "a-b", NULL, NULL, 0},
        {REG_COUNTER, "a b", NULL, NULL, 0},
        {REG_COUNTER, "t8_ok", "a=b", NULL, 0},
        {REG_COUNTER, "t8_ok", "a=\"x", NULL, 0},
        {REG_COUNTER, "t8_ok", "a=\"x\",", NULL, 0},
        {REG_COUNTER, "t8_ok", "a=\"x\ny\"", NULL, 0},
        {REG_COUNTER, "t8_ok", "a=\"\\t\"", NULL, 0},
        {REG_COUNTER, "t8_ok", "1a=\"x\"", NULL, 0},
        {REG_GAUGE, "t8_total", NULL, NULL, 0},
        {REG_HIST, "t8_seconds", NULL, unsorted, 2},
        {REG_HIST, "t8_new_seconds", NULL, unsorted, 2},
        {REG_HIST, "t8_new_seconds", NULL, dup, 2},
        {REG_HIST, "t8_new_seconds", NULL, with_inf, 2},
        {REG_HIST, "t8_new_seconds", NULL, many, 33},
        {REG_HIST, "t8_seconds", NULL, ok, 1},
        {REG_HIST, "t8_new_seconds", "le=\"1\"", ok, 2},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!registration_aborts(&bad[i]))
            fail_msg("case %zu (%s / %s) did not abort", i, bad[i].name ? bad[i].name : "NULL",
                     bad[i].labels ? bad[i].labels : "NULL");
    }

    /* The same checks let good names and label sets through. */
    static const struct bad_reg good[] = {
        {REG_COUNTER, "a:b_c9", NULL, NULL, 0},        {REG_COUNTER, "_x", "a=\"\",_b=\"\\\\\\\"\\n\"", NULL, 0},
        {REG_GAUGE, ":y", "le=\"1\"", NULL, 0},        {REG_HIST, "t8_seconds", "x=\"1\"", ok, 2},
        {REG_HIST, "t8_many_seconds", NULL, many, 32},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_false(registration_aborts(&good[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_and_gauge_values_render),
        cmocka_unit_test(same_name_and_labels_return_the_same_metric),
        cmocka_unit_test(series_are_grouped_under_one_help_and_type),
        cmocka_unit_test(histogram_buckets_are_cumulative_with_sum_and_count),
        cmocka_unit_test(latency_bounds_render_as_short_decimals),
        cmocka_unit_test(label_values_and_help_are_escaped),
        cmocka_unit_test(concurrent_updates_lose_nothing),
        cmocka_unit_test(invalid_registrations_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
