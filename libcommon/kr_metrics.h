/*
 * kr_metrics — Prometheus metrics in the text exposition format (0.0.4).
 *
 * One process-wide registry. Registering is rare and takes a lock; updating a
 * metric is a lock-free atomic operation, safe from any thread. A metric is
 * identified by name plus its label set, given preformatted as Prometheus
 * writes them inside braces: `method="GET",status="200"` (values escaped with
 * kr_metrics_escape_label). Registering the same name and labels again
 * returns the same metric; the same name with a different type is a
 * programming error and aborts.
 */
#ifndef KR_METRICS_H
#define KR_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_kr_metric_t kr_metric;

/* A monotonically increasing counter. `labels` may be NULL or "". */
kr_metric *kr_metrics_counter(const char *name, const char *help, const char *labels);

/* A gauge that can go up and down. */
kr_metric *kr_metrics_gauge(const char *name, const char *help, const char *labels);

/* A histogram with the given ascending upper bounds (the +Inf bucket is
 * implicit); `nbuckets` at most 32. All histograms of one name must use the
 * same bounds. */
kr_metric *kr_metrics_histogram(const char *name, const char *help, const char *labels, const double *bounds, size_t nbuckets);

/* Adds `n` to a counter. */
void kr_counter_add(kr_metric *m, uint64_t n);

/* Sets / adds to a gauge. */
void kr_gauge_set(kr_metric *m, int64_t v);
void kr_gauge_add(kr_metric *m, int64_t delta);

/* Records one observation in a histogram. */
void kr_histogram_observe(kr_metric *m, double v);

/* Default latency buckets in seconds, 0.5 ms .. 10 s, and their count. */
extern const double kr_metrics_latency_bounds[];
extern const size_t kr_metrics_latency_nbounds;

/* Renders every registered metric as exposition text, grouped by name with
 * one # HELP and # TYPE line each. Returns a malloc'd NUL-terminated string
 * (caller frees) and its length in *len when len is not NULL. */
char *kr_metrics_render(size_t *len);

/* Escapes a label value (backslash, double quote, newline) into `out`
 * (NUL-terminated, truncated to outlen). Returns `out`. */
char *kr_metrics_escape_label(const char *value, char *out, size_t outlen);

#endif
