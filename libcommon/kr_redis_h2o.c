#include "kr_redis_h2o.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ================================================================ adapter */

/* How hiredis's hooks map onto h2o 2.2's evloop:
 *
 *  - Reading: the socket is created with H2O_SOCKET_FLAG_DONT_READ, so when
 *    h2o_socket_read_start's callback fires h2o has only seen readiness and
 *    read nothing; hiredis then reads the descriptor itself.
 *  - Writing: h2o_socket_notify_write is a one-shot "tell me when writable"
 *    (h2o clears its callback before calling it). The watcher asks again
 *    after each event for as long as hiredis wants write events; there is no
 *    public call to withdraw a request, so delWrite only records that the
 *    next notification is to be ignored.
 *  - Closing: h2o_socket_close closes the descriptor h2o was given, and
 *    redisFree closes hiredis's. h2o gets a dup, so each closes its own. */
typedef struct {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
    bool want_write;  /* hiredis wants write events (until delWrite) */
    bool write_armed; /* a notification is requested from h2o */
    bool in_write;    /* inside watch_on_write */
    bool closed;      /* cleanup ran inside watch_on_write; free on return */
} kr_watch;

static void watch_on_read(h2o_socket_t *sock, const char *err)
{
    kr_watch *w = sock->data;
    redisAsyncHandleRead(w->ac);
}

static void watch_on_write(h2o_socket_t *sock, const char *err)
{
    kr_watch *w = sock->data;
    w->write_armed = false;
    if (!w->want_write)
        return;
    w->in_write = true;
    redisAsyncHandleWrite(w->ac);
    w->in_write = false;
    if (w->closed) {
        free(w);
        return;
    }
    /* hiredis expects a level-triggered watcher: interest lasts until
     * delWrite, and while a connect is still in progress it returns without
     * asking again. */
    if (w->want_write && !w->write_armed) {
        w->write_armed = true;
        h2o_socket_notify_write(w->sock, watch_on_write);
    }
}

static void watch_add_read(void *p)
{
    kr_watch *w = p;
    if (!h2o_socket_is_reading(w->sock))
        h2o_socket_read_start(w->sock, watch_on_read);
}

static void watch_del_read(void *p)
{
    kr_watch *w = p;
    if (h2o_socket_is_reading(w->sock))
        h2o_socket_read_stop(w->sock);
}

static void watch_add_write(void *p)
{
    kr_watch *w = p;
    w->want_write = true;
    if (!w->write_armed) {
        w->write_armed = true;
        h2o_socket_notify_write(w->sock, watch_on_write);
    }
}

static void watch_del_write(void *p)
{
    kr_watch *w = p;
    w->want_write = false;
}

static void watch_cleanup(void *p)
{
    kr_watch *w = p;
    /* Some hiredis versions run the cleanup hook more than once; with the
     * hooks gone the later calls find nothing to do. */
    memset(&w->ac->ev, 0, sizeof(w->ac->ev));
    h2o_socket_close(w->sock);
    w->sock = NULL;
    if (w->in_write)
        w->closed = true;
    else
        free(w);
}

int kr_redis_h2o_attach(h2o_loop_t *loop, redisAsyncContext *ac)
{
    if (loop == NULL || ac == NULL || ac->ev.data != NULL)
        return KR_REDIS_EINVAL;
    int fd = fcntl(ac->c.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return KR_REDIS_ELIMIT;
    kr_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->ac = ac;
    w->sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    w->sock->data = w;
    ac->ev.data = w;
    ac->ev.addRead = watch_add_read;
    ac->ev.delRead = watch_del_read;
    ac->ev.addWrite = watch_add_write;
    ac->ev.delWrite = watch_del_write;
    ac->ev.cleanup = watch_cleanup;
    return 0;
}

/* ================================================================= client */

static const uint64_t backoff_ms[] = KR_REDIS_ASYNC_BACKOFF_MS;
#define BACKOFF_STEPS (sizeof(backoff_ms) / sizeof(backoff_ms[0]))

typedef struct {
    kr_redis_async *owner;
    bool is_sub;
    redisAsyncContext *ac; /* NULL between attempts */
    bool connected;
    unsigned backoff_step;
    h2o_timeout_entry_t retry_entry;
    h2o_timeout_entry_t connect_entry;
    /* pub/sub connection: subscriptions sent but not yet confirmed */
    unsigned unconfirmed;
    bool subs_up;
} kr_conn;

typedef struct {
    char *name;
    size_t len;
    bool pattern;
    kr_redis_message_cb cb;
    void *privdata;
} kr_sub;

typedef struct {
    kr_redis_async *owner;
    redisCallbackFn *cb;
    void *privdata;
} kr_pending;

struct st_kr_redis_async_t {
    h2o_loop_t *loop;
    kr_redis_target target;
    int connect_timeout_ms;
    h2o_timeout_t connect_timeout;
    h2o_timeout_t backoff[BACKOFF_STEPS];
    kr_conn cmd, sub;
    bool sub_started;
    bool closing;
    size_t pending;
    kr_sub subs[KR_REDIS_ASYNC_MAX_SUBSCRIPTIONS];
    size_t nsubs;
    kr_redis_state_cb state_cb;
    void *state_data;
    char errstr[256];
};

static void start_connect(kr_conn *c);

static void set_errstr(kr_redis_async *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_errstr(kr_redis_async *r, const char *fmt, ...)
{
    const kr_redis_target *t = &r->target;
    int n;
    if (t->is_unix)
        n = snprintf(r->errstr, sizeof(r->errstr), "unix:%s: ", t->path);
    else
        n = snprintf(r->errstr, sizeof(r->errstr), strchr(t->host, ':') != NULL ? "[%s]:%d: " : "%s:%d: ", t->host, t->port);
    if (n < 0 || (size_t)n >= sizeof(r->errstr))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr + n, sizeof(r->errstr) - (size_t)n, fmt, ap);
    va_end(ap);
}

static void notify_state(kr_redis_async *r, bool up)
{
    if (r->state_cb != NULL && !r->closing)
        r->state_cb(r, up, r->state_data);
}

static void schedule_retry(kr_conn *c)
{
    kr_redis_async *r = c->owner;
    if (r->closing)
        return;
    unsigned step = c->backoff_step < BACKOFF_STEPS ? c->backoff_step : BACKOFF_STEPS - 1;
    if (c->backoff_step < BACKOFF_STEPS)
        c->backoff_step++;
    h2o_timeout_unlink(&c->retry_entry);
    h2o_timeout_link(r->loop, &r->backoff[step], &c->retry_entry);
}

/* The connection is gone or about to be freed by hiredis. */
static void conn_lost(kr_conn *c)
{
    kr_redis_async *r = c->owner;
    c->ac = NULL;
    c->connected = false;
    h2o_timeout_unlink(&c->connect_entry);
    if (c->is_sub && c->subs_up) {
        c->subs_up = false;
        notify_state(r, false);
    }
    schedule_retry(c);
}

static void on_retry(h2o_timeout_entry_t *entry)
{
    kr_conn *c = H2O_STRUCT_FROM_MEMBER(kr_conn, retry_entry, entry);
    start_connect(c);
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    kr_conn *c = H2O_STRUCT_FROM_MEMBER(kr_conn, connect_entry, entry);
    if (c->ac == NULL || c->connected)
        return;
    set_errstr(c->owner, "connect timed out after %d ms", c->owner->connect_timeout_ms);
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    /* not yet connected, so hiredis calls no disconnect callback */
    redisAsyncFree(ac);
    conn_lost(c);
}

static void maybe_subs_up(kr_conn *c)
{
    if (c->is_sub && c->connected && !c->subs_up && c->unconfirmed == 0) {
        c->subs_up = true;
        notify_state(c->owner, true);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    kr_conn *c = ac->data;
    if (status != REDIS_OK) {
        set_errstr(c->owner, "cannot connect: %s", ac->errstr);
        conn_lost(c);
        return;
    }
    c->connected = true;
    c->backoff_step = 0;
    h2o_timeout_unlink(&c->connect_entry);
    maybe_subs_up(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    kr_conn *c = ac->data;
    if (status != REDIS_OK)
        set_errstr(c->owner, "connection lost: %s", ac->errstr);
    conn_lost(c);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    kr_conn *c = ac->data;
    if (rep == NULL || rep->type != REDIS_REPLY_ERROR)
        return;
    set_errstr(c->owner, "%s refused: %.*s", (const char *)privdata, (int)(rep->len > 120 ? 120 : rep->len), rep->str);
    /* a wrong password will stay wrong for a while: retry slowly */
    c->backoff_step = BACKOFF_STEPS - 1;
    redisAsyncDisconnect(ac);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    kr_sub *s = privdata;
    kr_conn *c = ac->data;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0 || strcasecmp(kind, "psubscribe") == 0) {
        if (c->unconfirmed > 0)
            c->unconfirmed--;
        maybe_subs_up(c);
        return;
    }
    kr_redis_message m = {0};
    if (strcasecmp(kind, "message") == 0) {
        m.channel = rep->element[1]->str;
        m.channel_len = rep->element[1]->len;
        m.payload = rep->element[2]->str;
        m.payload_len = rep->element[2]->len;
    } else if (strcasecmp(kind, "pmessage") == 0 && rep->elements >= 4) {
        m.pattern = rep->element[1]->str;
        m.pattern_len = rep->element[1]->len;
        m.channel = rep->element[2]->str;
        m.channel_len = rep->element[2]->len;
        m.payload = rep->element[3]->str;
        m.payload_len = rep->element[3]->len;
    } else {
        return;
    }
    s->cb(c->owner, &m, s->privdata);
}

static void send_subscribe(kr_conn *c, kr_sub *s)
{
    if (redisAsyncCommand(c->ac, on_sub_reply, s, s->pattern ? "PSUBSCRIBE %b" : "SUBSCRIBE %b", s->name, s->len) == REDIS_OK)
        c->unconfirmed++;
}

static void start_connect(kr_conn *c)
{
    kr_redis_async *r = c->owner;
    const kr_redis_target *t = &r->target;
    redisAsyncContext *ac = t->is_unix ? redisAsyncConnectUnix(t->path) : redisAsyncConnect(t->host, t->port);
    if (ac == NULL)
        abort(); /* hiredis returns NULL only when it cannot allocate */
    if (ac->err != 0) {
        set_errstr(r, "cannot connect: %s", ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    if (kr_redis_h2o_attach(r->loop, ac) != 0) {
        set_errstr(r, "cannot watch the connection: %s", strerror(errno));
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->connected = false;
    c->unconfirmed = 0;

    /* Queued before anything else, so they reach the server first. */
    if (t->password[0] != '\0') {
        if (t->user[0] != '\0')
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", t->user, t->password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", t->password);
    }
    /* Pub/sub channels are not per database; only the command side selects. */
    if (t->db != 0 && !c->is_sub)
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", t->db);
    if (c->is_sub)
        for (size_t i = 0; i < r->nsubs; i++)
            send_subscribe(c, &r->subs[i]);

    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect);
    h2o_timeout_unlink(&c->connect_entry);
    h2o_timeout_link(r->loop, &r->connect_timeout, &c->connect_entry);
}

static void conn_init(kr_redis_async *r, kr_conn *c, bool is_sub)
{
    c->owner = r;
    c->is_sub = is_sub;
    c->retry_entry.cb = on_retry;
    c->connect_entry.cb = on_connect_timeout;
}

kr_redis_async *kr_redis_async_new(h2o_loop_t *loop, const char *url, int connect_timeout_ms, char *err, size_t errlen)
{
    kr_redis_target t;
    if (loop == NULL || connect_timeout_ms <= 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "a loop and a positive connect timeout are required");
        return NULL;
    }
    if (kr_redis_url_parse(url, &t, err, errlen) != 0)
        return NULL;

    kr_redis_async *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->loop = loop;
    r->target = t;
    r->connect_timeout_ms = connect_timeout_ms;
    h2o_timeout_init(loop, &r->connect_timeout, (uint64_t)connect_timeout_ms);
    for (size_t i = 0; i < BACKOFF_STEPS; i++)
        h2o_timeout_init(loop, &r->backoff[i], backoff_ms[i]);
    conn_init(r, &r->cmd, false);
    conn_init(r, &r->sub, true);
    start_connect(&r->cmd);
    return r;
}

static void conn_close(kr_conn *c)
{
    h2o_timeout_unlink(&c->retry_entry);
    h2o_timeout_unlink(&c->connect_entry);
    if (c->ac != NULL) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac);
    }
}

void kr_redis_async_free(kr_redis_async *r)
{
    if (r == NULL)
        return;
    r->closing = true;
    conn_close(&r->cmd);
    conn_close(&r->sub);
    h2o_timeout_dispose(r->loop, &r->connect_timeout);
    for (size_t i = 0; i < BACKOFF_STEPS; i++)
        h2o_timeout_dispose(r->loop, &r->backoff[i]);
    for (size_t i = 0; i < r->nsubs; i++)
        free(r->subs[i].name);
    explicit_bzero(&r->target, sizeof(r->target));
    free(r);
}

static void on_command_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    kr_pending *p = privdata;
    p->owner->pending--;
    if (p->cb != NULL)
        p->cb(ac, reply, p->privdata);
    free(p);
}

static int send_formatted(kr_redis_async *r, redisCallbackFn *cb, void *privdata, const char *cmd, size_t len)
{
    if (r->closing || r->cmd.ac == NULL)
        return KR_REDIS_ENOTCONN;
    if (r->pending >= KR_REDIS_ASYNC_MAX_PENDING)
        return KR_REDIS_ELIMIT;
    kr_pending *p = malloc(sizeof(*p));
    if (p == NULL)
        abort();
    *p = (kr_pending){r, cb, privdata};
    if (redisAsyncFormattedCommand(r->cmd.ac, on_command_reply, p, cmd, len) != REDIS_OK) {
        /* the context is shutting down; its disconnect callback follows */
        free(p);
        return KR_REDIS_ENOTCONN;
    }
    r->pending++;
    return 0;
}

int kr_redis_async_command(kr_redis_async *r, redisCallbackFn *cb, void *privdata, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    if (r == NULL || fmt == NULL)
        return KR_REDIS_EINVAL;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return KR_REDIS_EINVAL;
    int rc = send_formatted(r, cb, privdata, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int kr_redis_async_commandargv(kr_redis_async *r, redisCallbackFn *cb, void *privdata, int argc, const char **argv,
                               const size_t *argvlen)
{
    char *cmd = NULL;
    if (r == NULL || argc <= 0 || argv == NULL)
        return KR_REDIS_EINVAL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        abort(); /* only fails when it cannot allocate */
    int rc = send_formatted(r, cb, privdata, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int kr_redis_async_subscribe(kr_redis_async *r, const char *name, bool pattern, kr_redis_message_cb cb, void *privdata)
{
    if (r == NULL || name == NULL || cb == NULL || r->closing)
        return KR_REDIS_EINVAL;
    size_t len = strlen(name);
    if (len == 0 || len > KR_REDIS_ASYNC_MAX_CHANNEL)
        return KR_REDIS_EINVAL;
    for (size_t i = 0; i < r->nsubs; i++)
        if (r->subs[i].pattern == pattern && r->subs[i].len == len && memcmp(r->subs[i].name, name, len) == 0)
            return KR_REDIS_EEXIST;
    if (r->nsubs == KR_REDIS_ASYNC_MAX_SUBSCRIPTIONS)
        return KR_REDIS_ELIMIT;

    kr_sub *s = &r->subs[r->nsubs++];
    s->name = strdup(name);
    if (s->name == NULL)
        abort();
    s->len = len;
    s->pattern = pattern;
    s->cb = cb;
    s->privdata = privdata;

    if (!r->sub_started) {
        r->sub_started = true;
        start_connect(&r->sub);
    } else if (r->sub.ac != NULL) {
        send_subscribe(&r->sub, s);
    }
    return 0;
}

void kr_redis_async_on_subscriptions(kr_redis_async *r, kr_redis_state_cb cb, void *privdata)
{
    r->state_cb = cb;
    r->state_data = privdata;
}

bool kr_redis_async_is_connected(const kr_redis_async *r)
{
    return r->cmd.connected;
}

const char *kr_redis_async_errstr(const kr_redis_async *r)
{
    return r->errstr;
}
