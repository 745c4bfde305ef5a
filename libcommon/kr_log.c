#include "kr_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Upper bound of one line including the newline. Log collectors split or drop
 * longer lines, and the bound lets the line live on the stack. */
#define LINE_MAX_BYTES 16384
/* Kept free at the end of the line so that a cut string can always be closed
 * and the object finished: `"` + `,"truncated":true` + `}\n`. */
#define LINE_TAIL 32
#define SERVICE_MAX 64
#define REQUEST_ID_MAX 64

static char g_service[SERVICE_MAX + 1];
/* Atomic only so that a late kr_log_init() is not a data race; the contract
 * still asks for it to be called before threads start. */
static atomic_int g_min_level = KR_LOG_INFO;
static __thread char tl_request_id[REQUEST_ID_MAX + 1];

typedef struct {
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool truncated;
} line_t;

static const char *level_name(kr_log_level level)
{
    switch (level) {
    case KR_LOG_DEBUG:
        return "debug";
    case KR_LOG_INFO:
        return "info";
    case KR_LOG_WARN:
        return "warn";
    default:
        return "error";
    }
}

void kr_log_init(const char *service, kr_log_level min_level)
{
    size_t n = service ? strnlen(service, SERVICE_MAX) : 0;
    if (n > 0)
        memcpy(g_service, service, n);
    g_service[n] = '\0';
    atomic_store_explicit(&g_min_level, (int)min_level, memory_order_relaxed);
}

bool kr_log_level_parse(const char *s, kr_log_level *out)
{
    static const struct {
        const char *name;
        kr_log_level level;
    } names[] = {
        {"debug", KR_LOG_DEBUG},
        {"info", KR_LOG_INFO},
        {"warn", KR_LOG_WARN},
        {"error", KR_LOG_ERROR},
    };
    if (s == NULL)
        return false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return true;
        }
    }
    return false;
}

bool kr_log_enabled(kr_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_min_level, memory_order_relaxed);
}

void kr_log_set_request_id(const char *request_id)
{
    size_t n = request_id ? strnlen(request_id, REQUEST_ID_MAX) : 0;
    if (n > 0)
        memcpy(tl_request_id, request_id, n);
    tl_request_id[n] = '\0';
}

const char *kr_log_request_id(void)
{
    return tl_request_id;
}

/* Appends n bytes if they fit before the tail reserve; otherwise marks the
 * line truncated, after which nothing but the closing bytes is appended. */
static bool put(line_t *l, const char *s, size_t n)
{
    if (l->truncated || n > LINE_MAX_BYTES - LINE_TAIL - l->len) {
        l->truncated = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

/* Appends into the tail reserve; only for the few closing bytes it exists for. */
static void put_tail(line_t *l, const char *s, size_t n)
{
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Length of the well-formed UTF-8 sequence at s, or 0 when s[0] does not
 * start one. The byte ranges are those of RFC 3629, section 4, so overlong
 * forms, surrogates and code points above U+10FFFF are all rejected. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return need;
}

/* Appends the body of a JSON string. Each character or escape goes in whole,
 * so a cut string is still valid JSON. Invalid UTF-8 bytes become U+FFFD one
 * by one, because jq, Loki and friends reject lines that are not UTF-8. */
static void put_escaped(line_t *l, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        char esc[8];
        const char *out = esc;
        size_t outlen, step = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            outlen = 2;
        } else if (c < 0x20) {
            switch (c) {
            case '\n':
                out = "\\n";
                outlen = 2;
                break;
            case '\r':
                out = "\\r";
                outlen = 2;
                break;
            case '\t':
                out = "\\t";
                outlen = 2;
                break;
            default:
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                outlen = 6;
                break;
            }
        } else if (c < 0x80) {
            out = (const char *)s + i;
            outlen = 1;
        } else if ((step = utf8_len(s + i, n - i)) > 0) {
            out = (const char *)s + i;
            outlen = step;
        } else {
            out = "\\ufffd";
            outlen = 6;
            step = 1;
        }
        if (!put(l, out, outlen))
            return;
        i += step;
    }
}

/* Appends a complete JSON string value; returns false when not even its
 * opening quote fitted (then nothing was appended). */
static bool put_string(line_t *l, const char *s, size_t n)
{
    if (!put(l, "\"", 1))
        return false;
    put_escaped(l, s, n);
    put_tail(l, "\"", 1);
    return true;
}

/* Appends `,"key":"value"` (or null). A member whose key and opening quote do
 * not fit is left out entirely; only its value may be cut short. */
static void put_member(line_t *l, const char *key, const char *value, size_t vlen)
{
    size_t start = l->len;
    if (!put(l, ",", 1) || !put_string(l, key, strlen(key)) || l->truncated || !put(l, ":", 1))
        goto rollback;
    if (value == NULL) {
        if (!put(l, "null", 4))
            goto rollback;
    } else if (!put_string(l, value, vlen)) {
        goto rollback;
    }
    return;
rollback:
    l->len = start;
    l->truncated = true;
}

static void put_header(line_t *l, kr_log_level level)
{
    struct timespec ts;
    struct tm tm;
    char stamp[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000L);

    l->len = 0;
    l->truncated = false;
    put(l, "{\"ts\":\"", 7);
    put(l, stamp, strlen(stamp));
    put(l, "\"", 1);
    put_member(l, "level", level_name(level), strlen(level_name(level)));
    put_member(l, "service", g_service, strlen(g_service));
    if (tl_request_id[0] != '\0')
        put_member(l, "request_id", tl_request_id, strlen(tl_request_id));
}

/* Finishes the object and writes it. One write(2) keeps lines whole when
 * threads log at once; on a pipe POSIX guarantees that only up to PIPE_BUF
 * bytes, which covers ordinary lines. A short write is completed so the line
 * at least stays well-formed; any other failure drops the line. */
static void emit(line_t *l)
{
    if (l->truncated)
        put_tail(l, ",\"truncated\":true", 17);
    put_tail(l, "}\n", 2);

    int saved_errno = errno;
    size_t off = 0;
    while (off < l->len) {
        ssize_t w = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
    errno = saved_errno;
}

void kr_log(kr_log_level level, const char *msg, ...)
{
    if (!kr_log_enabled(level))
        return;
    line_t l;
    put_header(&l, level);
    if (msg == NULL)
        msg = "";
    put_member(&l, "msg", msg, strlen(msg));

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        const char *value = va_arg(ap, const char *);
        put_member(&l, key, value, value ? strlen(value) : 0);
    }
    va_end(ap);
    emit(&l);
}

void kr_logf(kr_log_level level, const char *fmt, ...)
{
    if (!kr_log_enabled(level))
        return;
    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    else if ((size_t)n >= sizeof(msg))
        n = (int)sizeof(msg) - 1;

    line_t l;
    put_header(&l, level);
    put_member(&l, "msg", msg, (size_t)n);
    emit(&l);
}

void kr_log_raw(kr_log_level level, const char *json_members, size_t len)
{
    if (!kr_log_enabled(level))
        return;
    line_t l;
    put_header(&l, level);
    if (json_members != NULL && len > 0) {
        size_t start = l.len;
        if (put(&l, ",", 1) && put(&l, json_members, len)) {
            /* Outside JSON strings a newline is mere whitespace and inside
             * one it is invalid anyway: blanking them keeps one record per
             * line whatever the caller built. */
            for (size_t i = start; i < l.len; i++) {
                if (l.buf[i] == '\n' || l.buf[i] == '\r')
                    l.buf[i] = ' ';
            }
        } else {
            /* Raw members cannot be cut safely; say what was dropped instead. */
            char note[96];
            int n = snprintf(note, sizeof(note), "log record of %zu bytes dropped: over the line limit", len);
            l.len = start;
            l.truncated = false;
            put_member(&l, "msg", note, (size_t)n);
            l.truncated = true;
        }
    }
    emit(&l);
}
