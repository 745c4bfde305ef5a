/*
 * kr_log — structured logging as JSON lines on stderr.
 *
 * Every line is one JSON object:
 *   {"ts":"2026-11-22T05:40:00.123Z","level":"info","service":"identity",
 *    "request_id":"...","msg":"school created","school_id":"..."}
 * `request_id` is taken from the calling thread's current request (set by the
 * RPC server and the gateway around each request) and omitted when none.
 * A line is written with a single write(2), so lines from several threads
 * never interleave. Logging never fails the caller: a line that cannot be
 * written is dropped.
 */
#ifndef KR_LOG_H
#define KR_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    KR_LOG_DEBUG = 0,
    KR_LOG_INFO = 1,
    KR_LOG_WARN = 2,
    KR_LOG_ERROR = 3,
} kr_log_level;

/* Sets the service name written into every line and the lowest level that is
 * written. Call once at start, before any thread logs. */
void kr_log_init(const char *service, kr_log_level min_level);

/* Parses "debug", "info", "warn" or "error" (case-insensitive). Returns false
 * and leaves *out unchanged for anything else. */
bool kr_log_level_parse(const char *s, kr_log_level *out);

/* True when lines of `level` would be written (to skip costly formatting). */
bool kr_log_enabled(kr_log_level level);

/* Sets the calling thread's current request id (copied, truncated to 64
 * bytes); NULL clears it. */
void kr_log_set_request_id(const char *request_id);

/* The calling thread's current request id, or "" when none. */
const char *kr_log_request_id(void);

/* Writes one line: `msg` plus any number of key/value string pairs ending
 * with NULL, e.g. kr_log(KR_LOG_INFO, "school created", "school_id", id, NULL).
 * A NULL value is written as JSON null. Keys must be plain identifiers. */
void kr_log(kr_log_level level, const char *msg, ...) __attribute__((sentinel));

/* printf-style message without extra fields. */
void kr_logf(kr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes a preformatted JSON object as one line, adding "ts", "level" and
 * "service" in front of its members. `json_members` is the inside of an
 * object without braces, e.g. "\"status\":200,\"path\":\"/x\"" — used by the
 * gateway's access log, which builds its members itself. */
void kr_log_raw(kr_log_level level, const char *json_members, size_t len);

#endif
