#include "kr_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Bounds. A daemon reads a few dozen settings, so the limits on strings and
 * problems are far above real use and only stop a runaway loop. */
#define SECRET_FILE_MAX 65536
#define MAX_STRINGS 4096
#define MAX_ERRORS 256
#define ERROR_LINE_MAX 512
/* How much of a bad value an error line quotes. */
#define SHOWN_VALUE_MAX 64

struct st_kr_config_t {
    char **strings;
    size_t nstrings, capstrings;
    char *errors[MAX_ERRORS];
    size_t nerrors;
    size_t dropped; /* problems beyond MAX_ERRORS, counted only */
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

kr_config *kr_config_new(void)
{
    kr_config *cfg = xrealloc(NULL, sizeof(*cfg));
    memset(cfg, 0, sizeof(*cfg));
    return cfg;
}

void kr_config_free(kr_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nstrings; i++)
        free(cfg->strings[i]);
    free(cfg->strings);
    for (size_t i = 0; i < cfg->nerrors; i++)
        free(cfg->errors[i]);
    free(cfg);
}

/* Takes ownership of `s` and returns it. */
static const char *keep(kr_config *cfg, char *s)
{
    if (cfg->nstrings == cfg->capstrings) {
        /* Each call stores at most one string; this many means a caller loops. */
        if (cfg->capstrings >= MAX_STRINGS)
            abort();
        cfg->capstrings = cfg->capstrings ? cfg->capstrings * 2 : 16;
        cfg->strings = xrealloc(cfg->strings, cfg->capstrings * sizeof(*cfg->strings));
    }
    cfg->strings[cfg->nstrings++] = s;
    return s;
}

static void vrecord(kr_config *cfg, const char *name, const char *fmt, va_list ap)
{
    if (cfg->nerrors == MAX_ERRORS) {
        cfg->dropped++;
        return;
    }
    char line[ERROR_LINE_MAX];
    int n = snprintf(line, sizeof(line), "%s: ", name);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    /* An error is one line: a newline from a caller's format would split it. */
    for (char *p = line; *p; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    cfg->errors[cfg->nerrors++] = xstrndup(line, strlen(line));
}

static void __attribute__((format(printf, 3, 4))) record(kr_config *cfg, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(cfg, name, fmt, ap);
    va_end(ap);
}

void kr_config_fail(kr_config *cfg, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(cfg, name, fmt, ap);
    va_end(ap);
}

/* Quotes a value for an error line: printable ASCII as is, other bytes as
 * \xNN, cut after SHOWN_VALUE_MAX bytes, so a stray control character or a
 * pasted blob cannot garble the operator's terminal. */
static const char *shown(const char *v, char *out, size_t outlen)
{
    size_t o = 0, i;
    for (i = 0; i < SHOWN_VALUE_MAX && v[i] != '\0' && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    if (v[i] != '\0' && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* The variable's value, treating set-but-empty like unset: an empty value in
 * a Kubernetes manifest or .env file almost always means "not configured". */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Reads a secret file into a new string, one trailing newline (LF or CRLF)
 * removed. Records a problem against `file_var` and returns NULL on failure. */
static char *read_secret(kr_config *cfg, const char *file_var, const char *path)
{
    char pathbuf[SHOWN_VALUE_MAX * 4 + 8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        record(cfg, file_var, "cannot open '%s': %s", shown(path, pathbuf, sizeof(pathbuf)), strerror(errno));
        return NULL;
    }
    /* One byte more than allowed tells an oversized file from a full one,
     * without trusting st_size (pipes and procfs report 0). */
    char *buf = xrealloc(NULL, SECRET_FILE_MAX + 2);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, SECRET_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            record(cfg, file_var, "cannot read '%s': %s", shown(path, pathbuf, sizeof(pathbuf)), strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > SECRET_FILE_MAX) {
            record(cfg, file_var, "'%s' is larger than %d bytes", shown(path, pathbuf, sizeof(pathbuf)), SECRET_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    if (memchr(buf, '\0', len) != NULL) {
        record(cfg, file_var, "'%s' contains a NUL byte", shown(path, pathbuf, sizeof(pathbuf)));
        free(buf);
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    buf[len] = '\0';
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}

const char *kr_config_str(kr_config *cfg, const char *name, const char *def, unsigned flags)
{
    const char *value = env(name);
    bool secret = (flags & KR_CFG_SECRET) != 0;

    if (secret) {
        size_t nl = strlen(name);
        char *file_var = xrealloc(NULL, nl + sizeof("_FILE"));
        memcpy(file_var, name, nl);
        memcpy(file_var + nl, "_FILE", sizeof("_FILE"));
        const char *path = env(file_var);
        if (path != NULL && value != NULL) {
            record(cfg, name, "both %s and %s are set; set only one", name, file_var);
            free(file_var);
            return def;
        }
        if (path != NULL) {
            char *content = read_secret(cfg, file_var, path);
            if (content == NULL) {
                free(file_var);
                return def;
            }
            if (content[0] != '\0') {
                free(file_var);
                return keep(cfg, content);
            }
            free(content);
            if (flags & KR_CFG_REQUIRED)
                record(cfg, name, "required, but the file named by %s is empty", file_var);
            free(file_var);
            return def;
        }
        free(file_var);
    }

    if (value != NULL)
        return keep(cfg, xstrndup(value, strlen(value)));
    if (flags & KR_CFG_REQUIRED) {
        if (secret)
            record(cfg, name, "required, but neither %s nor %s_FILE is set", name, name);
        else
            record(cfg, name, "required, but not set");
    }
    return def;
}

/* Strict decimal: optional sign, then digits only. strtoll alone would accept
 * leading blanks and stop silently at trailing junk. */
static bool parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (*p == '\0')
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = (int64_t)v;
    return true;
}

int64_t kr_config_int(kr_config *cfg, const char *name, int64_t def, int64_t min, int64_t max)
{
    const char *value = env(name);
    if (value == NULL)
        return def;
    int64_t v;
    if (!parse_int(value, &v) || v < min || v > max) {
        char buf[SHOWN_VALUE_MAX * 4 + 8];
        record(cfg, name, "expected an integer from %" PRId64 " to %" PRId64 ", got '%s'", min, max,
               shown(value, buf, sizeof(buf)));
        return def;
    }
    return v;
}

bool kr_config_bool(kr_config *cfg, const char *name, bool def)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    const char *value = env(name);
    if (value == NULL)
        return def;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(value, yes[i]) == 0)
            return true;
        if (strcasecmp(value, no[i]) == 0)
            return false;
    }
    char buf[SHOWN_VALUE_MAX * 4 + 8];
    record(cfg, name, "expected true/false, yes/no, on/off or 1/0, got '%s'", shown(value, buf, sizeof(buf)));
    return def;
}

size_t kr_config_error_count(const kr_config *cfg)
{
    return cfg->nerrors;
}

const char *kr_config_error(const kr_config *cfg, size_t i)
{
    return i < cfg->nerrors ? cfg->errors[i] : NULL;
}

size_t kr_config_check(const kr_config *cfg, const char *program)
{
    const char *prefix = program ? program : "";
    const char *sep = program ? ": " : "";
    for (size_t i = 0; i < cfg->nerrors; i++)
        fprintf(stderr, "%s%s%s\n", prefix, sep, cfg->errors[i]);
    if (cfg->dropped > 0)
        fprintf(stderr, "%s%s%zu more configuration problems not shown\n", prefix, sep, cfg->dropped);
    fflush(stderr);
    return cfg->nerrors + cfg->dropped;
}
