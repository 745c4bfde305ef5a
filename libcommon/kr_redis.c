#include "kr_redis.h"

#include "kr_url.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define DEFAULT_PORT 6379

struct st_kr_redis_t {
    kr_redis_target target;
    struct timeval timeout;
    int timeout_ms;
    redisContext *ctx;
    int errcode;
    char errstr[256];
};

const char *kr_redis_strerror(int err)
{
    switch (err) {
    case KR_REDIS_OK:
        return "success";
    case KR_REDIS_EINVAL:
        return "invalid argument";
    case KR_REDIS_ECONNECT:
        return "cannot connect to Redis";
    case KR_REDIS_EAUTH:
        return "Redis refused AUTH or SELECT";
    case KR_REDIS_EIO:
        return "connection to Redis lost";
    case KR_REDIS_ETIMEDOUT:
        return "Redis did not answer in time";
    case KR_REDIS_EPROTO:
        return "Redis protocol error";
    case KR_REDIS_ENOTCONN:
        return "not connected to Redis";
    case KR_REDIS_ELIMIT:
        return "limit reached";
    case KR_REDIS_EEXIST:
        return "already subscribed";
    }
    return "unknown error";
}

/* ------------------------------------------------------------ URL parsing */

static int url_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int url_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return KR_REDIS_EINVAL;
}

/* Percent-decodes src[0..len) into dst (capacity cap, NUL-terminated).
 * Returns 0, or -1 for a bad escape, a decoded NUL or an overlong result. */
static int pct_decode(const char *src, size_t len, char *dst, size_t cap)
{
    return kr_url_decode(src, len, dst, cap, 0) < 0 ? -1 : 0;
}

/* Parses exactly src[0..len) as a decimal number in [min, max]. */
static int parse_uint(const char *src, size_t len, long min, long max, long *out)
{
    long v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (src[i] < '0' || src[i] > '9')
            return -1;
        v = v * 10 + (src[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static bool host_char_ok(char c, bool bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.')
        return true;
    if (bracketed)
        return c == ':';
    return c == '-' || c == '_';
}

static int parse_tcp(const char *s, kr_redis_target *out, char *err, size_t errlen)
{
    size_t auth_len = strcspn(s, "/?#");
    const char *rest = s + auth_len;
    const char *at = NULL;

    for (size_t i = 0; i < auth_len; i++)
        if (s[i] == '@')
            at = s + i;

    const char *hostport = s;
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon == NULL)
            return url_fail(err, errlen, "credentials must be written as [user]:password@");
        if (pct_decode(s, (size_t)(colon - s), out->user, sizeof(out->user)) != 0)
            return url_fail(err, errlen, "user name is badly percent-encoded or longer than %d bytes", KR_REDIS_SECRET_MAX);
        if (pct_decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password)) != 0)
            return url_fail(err, errlen, "password is badly percent-encoded or longer than %d bytes", KR_REDIS_SECRET_MAX);
        if (out->password[0] == '\0')
            return url_fail(err, errlen, "password after ':' is empty");
        hostport = at + 1;
    }

    size_t hp_len = (size_t)(rest - hostport);
    const char *host = hostport, *port = NULL;
    size_t host_len, port_len = 0;
    bool bracketed = hp_len > 0 && hostport[0] == '[';
    if (bracketed) {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL)
            return url_fail(err, errlen, "IPv6 address lacks its closing ']'");
        host = hostport + 1;
        host_len = (size_t)(close - host);
        const char *after = close + 1;
        if (after < rest) {
            if (*after != ':')
                return url_fail(err, errlen, "unexpected characters after ']'");
            port = after + 1;
            port_len = (size_t)(rest - port);
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        host_len = colon != NULL ? (size_t)(colon - hostport) : hp_len;
        if (colon != NULL) {
            port = colon + 1;
            port_len = (size_t)(rest - port);
        }
    }
    if (host_len == 0)
        return url_fail(err, errlen, "host is missing");
    if (host_len > KR_REDIS_HOST_MAX)
        return url_fail(err, errlen, "host is longer than %d characters", KR_REDIS_HOST_MAX);
    for (size_t i = 0; i < host_len; i++)
        if (!host_char_ok(host[i], bracketed))
            return url_fail(err, errlen, "host contains a character that is not allowed at position %zu", i + 1);
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';

    out->port = DEFAULT_PORT;
    if (port != NULL) {
        long v;
        if (parse_uint(port, port_len, 1, 65535, &v) != 0)
            return url_fail(err, errlen, "port must be a number from 1 to 65535");
        out->port = (int)v;
    }

    if (*rest == '?' || *rest == '#')
        return url_fail(err, errlen, "redis:// URLs take no query or fragment; write the database as /N");
    if (*rest == '/') {
        const char *db = rest + 1;
        size_t db_len = strlen(db);
        if (db_len > 0) {
            long v;
            if (parse_uint(db, db_len, 0, INT_MAX, &v) != 0)
                return url_fail(err, errlen, "database after '/' must be a non-negative number and nothing else");
            out->db = (int)v;
        }
    }
    return 0;
}

static int parse_unix(const char *s, kr_redis_target *out, char *err, size_t errlen)
{
    if (s[0] != '/')
        return url_fail(err, errlen, "unix:// needs an absolute path, as in unix:///run/redis.sock");
    size_t path_len = strcspn(s, "?#");
    if (s[path_len] == '#')
        return url_fail(err, errlen, "unix:// URLs take no fragment");
    if (path_len < 2 || s[path_len - 1] == '/')
        return url_fail(err, errlen, "socket path is missing");
    if (path_len > KR_REDIS_PATH_MAX)
        return url_fail(err, errlen, "socket path is longer than %d bytes", KR_REDIS_PATH_MAX);
    memcpy(out->path, s, path_len);
    out->path[path_len] = '\0';
    out->is_unix = true;

    const char *q = s + path_len;
    if (*q == '\0')
        return 0;
    q++;
    while (*q != '\0') {
        size_t pair_len = strcspn(q, "&");
        const char *eq = memchr(q, '=', pair_len);
        if (eq == NULL)
            return url_fail(err, errlen, "query parameters must be written as key=value");
        size_t key_len = (size_t)(eq - q), val_len = pair_len - key_len - 1;
        if (key_len == 2 && memcmp(q, "db", 2) == 0) {
            long v;
            if (parse_uint(eq + 1, val_len, 0, INT_MAX, &v) != 0)
                return url_fail(err, errlen, "db must be a non-negative number");
            out->db = (int)v;
        } else if (key_len == 8 && memcmp(q, "password", 8) == 0) {
            if (pct_decode(eq + 1, val_len, out->password, sizeof(out->password)) != 0 || out->password[0] == '\0')
                return url_fail(err, errlen, "password is empty, badly percent-encoded or longer than %d bytes",
                                KR_REDIS_SECRET_MAX);
        } else {
            return url_fail(err, errlen, "unknown query parameter (known: db, password)");
        }
        q += pair_len;
        if (*q == '&')
            q++;
    }
    return 0;
}

int kr_redis_url_parse(const char *url, kr_redis_target *out, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return url_fail(err, errlen, "no output target given");
    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0')
        return url_fail(err, errlen, "Redis URL is empty");
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return url_fail(err, errlen, "Redis URL contains a space or control character");

    if (strncasecmp(url, "redis://", 8) == 0)
        return parse_tcp(url + 8, out, err, errlen);
    if (strncasecmp(url, "unix://", 7) == 0)
        return parse_unix(url + 7, out, err, errlen);
    if (strncasecmp(url, "rediss://", 9) == 0)
        return url_fail(err, errlen,
                        "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; reach Redis over a private network "
                        "or a local TLS tunnel and use redis://");
    return url_fail(err, errlen, "unsupported URL scheme; expected redis://host[:port][/db] or unix:///path.sock");
}

/* ------------------------------------------------------------- the client */

kr_redis *kr_redis_new_target(const kr_redis_target *target, int timeout_ms)
{
    if (target == NULL || timeout_ms <= 0)
        return NULL;
    kr_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->target = *target;
    r->timeout_ms = timeout_ms;
    r->timeout.tv_sec = timeout_ms / 1000;
    r->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    return r;
}

kr_redis *kr_redis_new(const char *url, int timeout_ms)
{
    kr_redis_target t;
    if (kr_redis_url_parse(url, &t, NULL, 0) != 0)
        return NULL;
    return kr_redis_new_target(&t, timeout_ms);
}

static void drop_connection(kr_redis *r)
{
    if (r->ctx != NULL) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
}

void kr_redis_free(kr_redis *r)
{
    if (r == NULL)
        return;
    drop_connection(r);
    explicit_bzero(&r->target, sizeof(r->target));
    free(r);
}

int kr_redis_errcode(const kr_redis *r)
{
    return r->errcode;
}

const char *kr_redis_errstr(const kr_redis *r)
{
    return r->errstr;
}

static int set_err(kr_redis *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int set_err(kr_redis *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof(r->errstr), fmt, ap);
    va_end(ap);
    r->errcode = code;
    return code;
}

static const char *where(const kr_redis *r, char *buf, size_t len)
{
    if (r->target.is_unix)
        snprintf(buf, len, "unix:%s", r->target.path);
    else if (strchr(r->target.host, ':') != NULL)
        snprintf(buf, len, "[%s]:%d", r->target.host, r->target.port);
    else
        snprintf(buf, len, "%s:%d", r->target.host, r->target.port);
    return buf;
}

/* Runs one setup command (AUTH, SELECT) on a fresh connection. */
static int setup_command(kr_redis *r, redisContext *c, const char *what, int argc, const char **argv)
{
    char w[KR_REDIS_HOST_MAX + 16];
    redisReply *reply = redisCommandArgv(c, argc, argv, NULL);
    if (reply == NULL)
        return set_err(r, KR_REDIS_ECONNECT, "%s on %s failed: %s", what, where(r, w, sizeof(w)), c->errstr);
    int rc = 0;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = set_err(r, KR_REDIS_EAUTH, "%s refused by %s: %.*s", what, where(r, w, sizeof(w)),
                     (int)(reply->len > 120 ? 120 : reply->len), reply->str);
    freeReplyObject(reply);
    return rc;
}

static int do_connect(kr_redis *r)
{
    char w[KR_REDIS_HOST_MAX + 16];
    redisContext *c = r->target.is_unix ? redisConnectUnixWithTimeout(r->target.path, r->timeout)
                                        : redisConnectWithTimeout(r->target.host, r->target.port, r->timeout);
    if (c == NULL)
        abort(); /* hiredis returns NULL only when it cannot allocate */
    if (c->err != 0) {
        set_err(r, KR_REDIS_ECONNECT, "cannot connect to %s: %s", where(r, w, sizeof(w)), c->errstr);
        redisFree(c);
        return KR_REDIS_ECONNECT;
    }
    if (redisSetTimeout(c, r->timeout) != REDIS_OK) {
        set_err(r, KR_REDIS_ECONNECT, "cannot set timeouts on %s: %s", where(r, w, sizeof(w)), c->errstr);
        redisFree(c);
        return KR_REDIS_ECONNECT;
    }
    if (!r->target.is_unix)
        (void)redisEnableKeepAlive(c); /* only shortens the detection of dead peers; failure is harmless */

    if (r->target.password[0] != '\0') {
        const char *argv[3] = {"AUTH", r->target.user, r->target.password};
        int rc = r->target.user[0] != '\0' ? setup_command(r, c, "AUTH", 3, argv)
                                           : setup_command(r, c, "AUTH", 2, (const char *[]){"AUTH", r->target.password});
        if (rc != 0) {
            redisFree(c);
            return rc;
        }
    }
    if (r->target.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->target.db);
        int rc = setup_command(r, c, "SELECT", 2, (const char *[]){"SELECT", db});
        if (rc != 0) {
            redisFree(c);
            return rc;
        }
    }
    r->ctx = c;
    return 0;
}

/* A write to a socket whose peer has gone raises SIGPIPE, whose default
 * action ends the process. Blocking it in this thread for the duration of a
 * call and consuming the one we caused keeps the process alive without
 * touching the process-wide disposition. */
typedef struct {
    sigset_t old;
    bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigemptyset(&pending);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE) == 1) {
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static redisReply *run_formatted(kr_redis *r, kr_redis_retry retry, const char *cmd, size_t len)
{
    char w[KR_REDIS_HOST_MAX + 16];
    redisReply *reply = NULL;
    sigpipe_guard guard;

    sigpipe_block(&guard);
    for (int attempt = 0;; attempt++) {
        bool reused = r->ctx != NULL;
        if (r->ctx == NULL && do_connect(r) != 0)
            break;
        redisContext *c = r->ctx;
        int rc = redisAppendFormattedCommand(c, cmd, len);
        if (rc == REDIS_OK)
            rc = redisGetReply(c, (void **)&reply);
        int saved_errno = errno;
        if (rc == REDIS_OK && reply != NULL) {
            r->errcode = 0;
            r->errstr[0] = '\0';
            break;
        }
        reply = NULL;

        /* The state of the connection is unknown now (a late reply could
         * still arrive on it), so it is never used again. */
        int herr = c->err;
        char hmsg[sizeof(c->errstr)];
        snprintf(hmsg, sizeof(hmsg), "%s", c->errstr);
        drop_connection(r);

        if (herr == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
            set_err(r, KR_REDIS_ETIMEDOUT, "no reply from %s within %d ms", where(r, w, sizeof(w)), r->timeout_ms);
            break;
        }
        if (herr == REDIS_ERR_PROTOCOL) {
            set_err(r, KR_REDIS_EPROTO, "protocol error from %s: %s", where(r, w, sizeof(w)), hmsg);
            break;
        }
        if (herr == REDIS_ERR_OOM)
            abort();
        /* Only a connection that was already open can have gone stale behind
         * our back (server restarted, idle connection cut); a fresh one that
         * fails will fail again. */
        if (retry == KR_REDIS_IDEMPOTENT && reused && attempt == 0)
            continue;
        if (retry == KR_REDIS_ONCE && reused)
            set_err(r, KR_REDIS_EIO, "connection to %s lost: %s; the command was not retried because it may already have run",
                    where(r, w, sizeof(w)), hmsg);
        else
            set_err(r, KR_REDIS_EIO, "connection to %s lost: %s", where(r, w, sizeof(w)), hmsg);
        break;
    }
    sigpipe_restore(&guard);
    return reply;
}

redisReply *kr_redis_command(kr_redis *r, kr_redis_retry retry, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    if (r == NULL || fmt == NULL)
        return NULL;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        set_err(r, KR_REDIS_EINVAL, "invalid command format");
        return NULL;
    }
    redisReply *reply = run_formatted(r, retry, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return reply;
}

redisReply *kr_redis_commandargv(kr_redis *r, kr_redis_retry retry, int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    if (r == NULL)
        return NULL;
    if (argc <= 0 || argv == NULL) {
        set_err(r, KR_REDIS_EINVAL, "a command needs at least one argument");
        return NULL;
    }
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        abort(); /* only fails when it cannot allocate */
    redisReply *reply = run_formatted(r, retry, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return reply;
}
