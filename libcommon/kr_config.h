/*
 * kr_config — configuration from environment variables, validated at start.
 *
 * A daemon reads all of its settings through one kr_config, then calls
 * kr_config_check(): every problem found is reported at once, one line per
 * variable ("KREIDE_WORKERS: expected an integer from 1 to 256, got 'x'"), so
 * an operator fixes them in one go instead of one restart per mistake.
 *
 * Secrets may also come from files: for a variable read with KR_CFG_SECRET,
 * NAME_FILE names a file whose contents (one trailing newline stripped, at
 * most 64 KiB) are the value. That is how Kubernetes Secrets are mounted.
 * Setting both NAME and NAME_FILE is an error.
 *
 * Returned strings are owned by the kr_config and live until kr_config_free().
 * Not thread-safe: configure before starting threads.
 */
#ifndef KR_CONFIG_H
#define KR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_kr_config_t kr_config;

enum {
    KR_CFG_REQUIRED = 1 << 0, /* missing or empty is an error */
    KR_CFG_SECRET = 1 << 1,   /* NAME_FILE is accepted; the value is never logged */
};

/* Creates an empty configuration reader. Aborts on out-of-memory. */
kr_config *kr_config_new(void);

/* Frees the reader and every string it returned. */
void kr_config_free(kr_config *cfg);

/* A string setting: the variable's value, else `def` (may be NULL). On an
 * error (required but missing, unreadable file) records it and returns `def`. */
const char *kr_config_str(kr_config *cfg, const char *name, const char *def, unsigned flags);

/* An integer setting within [min, max]; `def` when unset. Records an error
 * for anything that is not a decimal integer in range. */
int64_t kr_config_int(kr_config *cfg, const char *name, int64_t def, int64_t min, int64_t max);

/* A boolean setting: true/false/1/0/yes/no/on/off (case-insensitive). */
bool kr_config_bool(kr_config *cfg, const char *name, bool def);

/* Records a problem found by the daemon's own validation of a value, e.g.
 * "KREIDE_HTTP_ADDR: expected host:port, got 'x'". */
void kr_config_fail(kr_config *cfg, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Number of problems recorded so far. */
size_t kr_config_error_count(const kr_config *cfg);

/* The i-th recorded problem as a full line (without newline), 0 <= i < count. */
const char *kr_config_error(const kr_config *cfg, size_t i);

/* Writes every recorded problem to stderr, prefixed with `program`, and
 * returns the number of problems (0 = configuration is valid). */
size_t kr_config_check(const kr_config *cfg, const char *program);

#endif
