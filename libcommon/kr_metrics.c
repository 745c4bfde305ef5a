#include "kr_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 32
/* Every series is kept for the life of the process and rendered on every
 * scrape, so the registry is bounded: running into this means label values
 * come from unbounded input, which is the bug to fix. */
#define MAX_SERIES 4096
#define MAX_NAME_LEN 200
#define MAX_LABELS_LEN 1024

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

typedef struct st_family_t family_t;

struct st_kr_metric_t {
    kind_t kind;
    const family_t *family;
    char *labels; /* "" when none */
    atomic_uint_least64_t counter;
    atomic_int_least64_t gauge;
    /* Per-bucket counts, the last one for +Inf; made cumulative when
     * rendered, so the +Inf bucket and _count always agree. */
    atomic_uint_least64_t buckets[MAX_BUCKETS + 1];
    /* The double sum as its bit pattern: C11 has no atomic add for double,
     * so observe() adds with a compare-and-swap loop. */
    atomic_uint_least64_t sum_bits;
};

struct st_family_t {
    char *name;
    char *help;
    kind_t kind;
    double bounds[MAX_BUCKETS];
    size_t nbounds;
    kr_metric **series;
    size_t nseries, capseries;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static family_t **g_families;
static size_t g_nfamilies, g_capfamilies, g_total_series;

const double kr_metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t kr_metrics_latency_nbounds = sizeof(kr_metrics_latency_bounds) / sizeof(kr_metrics_latency_bounds[0]);

/* Misuse of the registry is a programming error. The one line names the
 * culprit so the developer sees what to fix before the abort. */
static void __attribute__((noreturn)) die(const char *what, const char *name)
{
    fprintf(stderr, "kr_metrics: %s: '%s'\n", what, name ? name : "(null)");
    abort();
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Metric names as the Prometheus data model defines them:
 * [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > MAX_NAME_LEN)
        return false;
    if (!is_alpha_(name[0]) && name[0] != ':')
        return false;
    for (const char *p = name + 1; *p; p++) {
        if (!is_alpha_(*p) && !is_digit(*p) && *p != ':')
            return false;
    }
    return true;
}

/* Checks a preformatted label set `a="x",b="y"`: label names
 * [a-zA-Z_][a-zA-Z0-9_]*, values with only \\, \" and \n escapes and no raw
 * newline. A histogram may not bring its own `le`, which render() adds. */
static bool labels_valid(const char *s, bool histogram)
{
    if (strlen(s) > MAX_LABELS_LEN)
        return false;
    if (*s == '\0')
        return true;
    for (;;) {
        const char *start = s;
        if (!is_alpha_(*s))
            return false;
        while (is_alpha_(*s) || is_digit(*s))
            s++;
        if (histogram && s - start == 2 && memcmp(start, "le", 2) == 0)
            return false;
        if (s[0] != '=' || s[1] != '"')
            return false;
        for (s += 2; *s != '"'; s++) {
            if (*s == '\0' || *s == '\n')
                return false;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return false;
            }
        }
        s++;
        if (*s == '\0')
            return true;
        if (*s++ != ',')
            return false;
    }
}

static family_t *find_family(const char *name)
{
    for (size_t i = 0; i < g_nfamilies; i++) {
        if (strcmp(g_families[i]->name, name) == 0)
            return g_families[i];
    }
    return NULL;
}

static kr_metric *reg(kind_t kind, const char *name, const char *help, const char *labels, const double *bounds, size_t nbounds)
{
    if (!name_valid(name))
        die("invalid metric name", name);
    if (labels == NULL)
        labels = "";
    if (!labels_valid(labels, kind == KIND_HISTOGRAM))
        die("invalid label set", labels);
    if (kind == KIND_HISTOGRAM) {
        if (nbounds > MAX_BUCKETS || (nbounds > 0 && bounds == NULL))
            die("too many histogram buckets", name);
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                die("histogram bounds must be finite and ascending", name);
        }
    }

    pthread_mutex_lock(&g_lock);
    family_t *f = find_family(name);
    if (f == NULL) {
        f = xrealloc(NULL, sizeof(*f));
        memset(f, 0, sizeof(*f));
        f->name = xstrdup(name);
        f->help = xstrdup(help ? help : "");
        f->kind = kind;
        if (nbounds > 0)
            memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
        f->nbounds = nbounds;
        if (g_nfamilies == g_capfamilies) {
            g_capfamilies = g_capfamilies ? g_capfamilies * 2 : 16;
            g_families = xrealloc(g_families, g_capfamilies * sizeof(*g_families));
        }
        g_families[g_nfamilies++] = f;
    } else if (f->kind != kind) {
        die("metric registered again with another type", name);
    } else if (kind == KIND_HISTOGRAM &&
               (f->nbounds != nbounds || (nbounds > 0 && memcmp(f->bounds, bounds, nbounds * sizeof(*bounds)) != 0))) {
        die("histogram registered again with other bounds", name);
    }

    for (size_t i = 0; i < f->nseries; i++) {
        if (strcmp(f->series[i]->labels, labels) == 0) {
            kr_metric *m = f->series[i];
            pthread_mutex_unlock(&g_lock);
            return m;
        }
    }
    if (g_total_series == MAX_SERIES)
        die("too many metric series", name);
    kr_metric *m = xrealloc(NULL, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->family = f;
    m->labels = xstrdup(labels);
    if (f->nseries == f->capseries) {
        f->capseries = f->capseries ? f->capseries * 2 : 4;
        f->series = xrealloc(f->series, f->capseries * sizeof(*f->series));
    }
    f->series[f->nseries++] = m;
    g_total_series++;
    pthread_mutex_unlock(&g_lock);
    return m;
}

kr_metric *kr_metrics_counter(const char *name, const char *help, const char *labels)
{
    return reg(KIND_COUNTER, name, help, labels, NULL, 0);
}

kr_metric *kr_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return reg(KIND_GAUGE, name, help, labels, NULL, 0);
}

kr_metric *kr_metrics_histogram(const char *name, const char *help, const char *labels, const double *bounds, size_t nbuckets)
{
    return reg(KIND_HISTOGRAM, name, help, labels, bounds, nbuckets);
}

/* Relaxed ordering throughout: each value is an independent statistic and a
 * scrape needs no ordering between them. */

void kr_counter_add(kr_metric *m, uint64_t n)
{
    if (m->kind != KIND_COUNTER)
        die("not a counter", m->family->name);
    atomic_fetch_add_explicit(&m->counter, n, memory_order_relaxed);
}

void kr_gauge_set(kr_metric *m, int64_t v)
{
    if (m->kind != KIND_GAUGE)
        die("not a gauge", m->family->name);
    atomic_store_explicit(&m->gauge, v, memory_order_relaxed);
}

void kr_gauge_add(kr_metric *m, int64_t delta)
{
    if (m->kind != KIND_GAUGE)
        die("not a gauge", m->family->name);
    atomic_fetch_add_explicit(&m->gauge, delta, memory_order_relaxed);
}

void kr_histogram_observe(kr_metric *m, double v)
{
    if (m->kind != KIND_HISTOGRAM)
        die("not a histogram", m->family->name);
    const family_t *f = m->family;
    size_t i = 0;
    /* NaN compares false everywhere and lands in +Inf, as in Prometheus's
     * own client libraries. */
    while (i < f->nbounds && !(v <= f->bounds[i]))
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);

    uint64_t old = atomic_load_explicit(&m->sum_bits, memory_order_relaxed), next;
    do {
        double sum;
        memcpy(&sum, &old, sizeof(sum));
        sum += v;
        memcpy(&next, &sum, sizeof(next));
    } while (!atomic_compare_exchange_weak_explicit(&m->sum_bits, &old, next, memory_order_relaxed, memory_order_relaxed));
}

/* ------------------------------------------------------------------ render */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void __attribute__((format(printf, 2, 3))) buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if ((size_t)n >= b->cap - b->len) {
        while ((size_t)n >= b->cap - b->len)
            b->cap *= 2;
        b->p = xrealloc(b->p, b->cap);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* The shortest decimal that reads back as the same double, so bounds print
 * as le="0.005" rather than le="0.0050000000000000001". */
static const char *fmt_double(double v, char *out, size_t outlen)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    snprintf(out, outlen, "%.*g", prec, v);
    /* %g turns to an exponent once it exceeds the precision ("1e+01" for
     * 10); whole numbers below 1e17 read better spelled out. */
    const char *e = strchr(out, 'e');
    if (e != NULL) {
        long exp = strtol(e + 1, NULL, 10);
        if (exp >= prec && exp < 17)
            snprintf(out, outlen, "%.*g", (int)exp + 1, v);
    }
    return out;
}

/* HELP text escapes only backslash and newline (exposition format 0.0.4). */
static void put_help(buf_t *b, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            buf_printf(b, "\\\\");
        else if (*p == '\n')
            buf_printf(b, "\\n");
        else
            buf_printf(b, "%c", *p);
    }
}

static void render_histogram(buf_t *b, const family_t *f, const kr_metric *m)
{
    const char *sep = m->labels[0] ? "," : "";
    char num[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cumulative += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        const char *le = i < f->nbounds ? fmt_double(f->bounds[i], num, sizeof(num)) : "+Inf";
        buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, m->labels, sep, le, (unsigned long long)cumulative);
    }
    uint64_t bits = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    const char *open = m->labels[0] ? "{" : "", *close = m->labels[0] ? "}" : "";
    buf_printf(b, "%s_sum%s%s%s %s\n", f->name, open, m->labels, close, fmt_double(sum, num, sizeof(num)));
    buf_printf(b, "%s_count%s%s%s %llu\n", f->name, open, m->labels, close, (unsigned long long)cumulative);
}

char *kr_metrics_render(size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    buf_t b = {xrealloc(NULL, 4096), 0, 4096};
    b.p[0] = '\0';

    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nfamilies; i++) {
        const family_t *f = g_families[i];
        buf_printf(&b, "# HELP %s ", f->name);
        put_help(&b, f->help);
        buf_printf(&b, "\n# TYPE %s %s\n", f->name, type_names[f->kind]);
        for (size_t j = 0; j < f->nseries; j++) {
            const kr_metric *m = f->series[j];
            const char *open = m->labels[0] ? "{" : "", *close = m->labels[0] ? "}" : "";
            if (f->kind == KIND_COUNTER)
                buf_printf(&b, "%s%s%s%s %llu\n", f->name, open, m->labels, close,
                           (unsigned long long)atomic_load_explicit(&m->counter, memory_order_relaxed));
            else if (f->kind == KIND_GAUGE)
                buf_printf(&b, "%s%s%s%s %lld\n", f->name, open, m->labels, close,
                           (long long)atomic_load_explicit(&m->gauge, memory_order_relaxed));
            else
                render_histogram(&b, f, m);
        }
    }
    pthread_mutex_unlock(&g_lock);

    if (len != NULL)
        *len = b.len;
    return b.p;
}

char *kr_metrics_escape_label(const char *value, char *out, size_t outlen)
{
    if (outlen == 0)
        return out;
    size_t o = 0;
    bool cut = false;
    for (const char *p = value ? value : ""; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t n = rep ? 2 : 1;
        if (o + n >= outlen) {
            cut = true;
            break;
        }
        if (rep)
            memcpy(out + o, rep, 2);
        else
            out[o] = *p;
        o += n;
    }
    if (cut && o > 0) {
        /* Do not leave half a UTF-8 character at the cut: back up to the last
         * lead byte and drop it if its sequence is incomplete. */
        size_t k = o;
        while (k > 0 && ((unsigned char)out[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)out[k - 1] & 0x80)) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
            if (o - (k - 1) < need)
                o = k - 1;
        }
    }
    out[o] = '\0';
    return out;
}
