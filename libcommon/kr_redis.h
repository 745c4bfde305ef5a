/*
 * kr_redis — a synchronous Redis client for the services (hiredis 0.14).
 *
 * Redis holds only state that can be rebuilt (sessions, rate-limit counters,
 * presence, the event bus), so the client favours failing fast over waiting:
 * every connect and every command is bounded by one timeout, and a command
 * is re-sent after a reconnect only when the caller says it is safe to run
 * twice.
 *
 * Threading: a kr_redis is NOT thread-safe. Give each worker thread its own
 * (like its PostgreSQL connection); they share nothing.
 *
 * Signals: a write to a connection the server has closed raises SIGPIPE. The
 * client blocks SIGPIPE in the calling thread while it talks to Redis and
 * discards one it caused, so a restarted Redis cannot kill the process.
 *
 * TLS: hiredis 0.14 has no TLS; `rediss://` URLs are rejected.
 */
#ifndef KR_REDIS_H
#define KR_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

/* Error codes of this module; 0 is success. */
typedef enum {
    KR_REDIS_OK = 0,
    KR_REDIS_EINVAL,    /* bad argument or URL */
    KR_REDIS_ECONNECT,  /* could not connect (refused, unreachable, connect timeout) */
    KR_REDIS_EAUTH,     /* the server refused AUTH or SELECT */
    KR_REDIS_EIO,       /* the connection broke while a command was under way */
    KR_REDIS_ETIMEDOUT, /* no reply within the command timeout */
    KR_REDIS_EPROTO,    /* the server sent something hiredis could not parse */
    KR_REDIS_ENOTCONN,  /* asynchronous client: no connection at the moment */
    KR_REDIS_ELIMIT,    /* a fixed limit of this module was reached */
    KR_REDIS_EEXIST,    /* asynchronous client: already subscribed */
} kr_redis_err;

/* A static, human-readable text for a kr_redis_err; never NULL. */
const char *kr_redis_strerror(int err);

/* Longest accepted host name (RFC 1035 limits a name to 253 characters). */
#define KR_REDIS_HOST_MAX 253
/* Longest accepted socket path: sockaddr_un.sun_path on Linux holds 108 bytes
 * including the terminating NUL. */
#define KR_REDIS_PATH_MAX 107
/* Longest accepted user name or password after percent-decoding. */
#define KR_REDIS_SECRET_MAX 255

/* Where and how to connect; filled by kr_redis_url_parse. */
typedef struct {
    bool is_unix;                           /* true: `path` is used, else host/port */
    char host[KR_REDIS_HOST_MAX + 1];       /* name or address, IPv6 without brackets */
    int port;                               /* 1..65535, default 6379 */
    char path[KR_REDIS_PATH_MAX + 1];       /* absolute socket path */
    char user[KR_REDIS_SECRET_MAX + 1];     /* empty: AUTH with the password alone */
    char password[KR_REDIS_SECRET_MAX + 1]; /* empty: no AUTH */
    int db;                                 /* database for SELECT; 0 is not selected */
} kr_redis_target;

/* Parses a Redis URL into `out`. Accepted forms:
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:///absolute/path.sock[?db=N][&password=P]
 *
 * `host` may be an IPv6 address in brackets; user and password may be
 * percent-encoded. Returns 0, or KR_REDIS_EINVAL with a message in `err`
 * (never containing the password) when `errlen` > 0. `out` is unspecified
 * on failure. */
__attribute__((warn_unused_result)) int kr_redis_url_parse(const char *url, kr_redis_target *out, char *err, size_t errlen);

/* One connection to one Redis server, opened lazily. */
typedef struct st_kr_redis_t kr_redis;

/* Whether a command may be sent a second time after a reconnect. */
typedef enum {
    /* At most once: after the connection broke mid-command the command may or
     * may not have run, so it fails with KR_REDIS_EIO (INCR, LPUSH, PUBLISH). */
    KR_REDIS_ONCE = 0,
    /* Running it twice has the effect of running it once (GET, SET, DEL,
     * EXPIRE, HSET with fixed values): it is re-sent once on a fresh
     * connection when an existing connection turns out to be broken. */
    KR_REDIS_IDEMPOTENT = 1,
} kr_redis_retry;

/* Creates a client for `url` (see kr_redis_url_parse) whose connects and
 * commands each time out after `timeout_ms` (> 0). Does not connect yet.
 * Returns NULL when the URL is invalid or timeout_ms <= 0; use
 * kr_redis_url_parse first to learn why. Free with kr_redis_free. */
__attribute__((warn_unused_result)) kr_redis *kr_redis_new(const char *url, int timeout_ms);

/* Same for an already parsed target (copied). Returns NULL only when
 * timeout_ms <= 0. */
__attribute__((warn_unused_result)) kr_redis *kr_redis_new_target(const kr_redis_target *target, int timeout_ms);

/* Closes the connection, if any, and frees `r`. NULL is ignored. */
void kr_redis_free(kr_redis *r);

/* Runs one command, formatted like hiredis's redisCommand (`%s` for a C
 * string, `%b` for a pointer and size_t length, binary-safe). Connects first
 * when there is no connection, sending AUTH and SELECT as the target asks.
 *
 * Returns the reply, which the caller frees with freeReplyObject. A Redis
 * error reply (WRONGTYPE, NOSCRIPT, ...) is a reply of type
 * REDIS_REPLY_ERROR, not a failure. Returns NULL when no reply could be
 * obtained; kr_redis_errcode and kr_redis_errstr then say why, and the
 * connection has been closed (the next call reconnects). */
__attribute__((warn_unused_result)) redisReply *kr_redis_command(kr_redis *r, kr_redis_retry retry, const char *fmt, ...);

/* Same with an argument vector: `argc` arguments, `argv[i]` of `argvlen[i]`
 * bytes (or strlen(argv[i]) when argvlen is NULL). */
__attribute__((warn_unused_result)) redisReply *kr_redis_commandargv(kr_redis *r, kr_redis_retry retry, int argc, const char **argv,
                                                                     const size_t *argvlen);

/* The kr_redis_err of the last failed call on `r`, 0 after a success. */
int kr_redis_errcode(const kr_redis *r);

/* A message describing the last failure on `r` ("" after a success). Owned
 * by `r`, valid until its next call. */
const char *kr_redis_errstr(const kr_redis *r);

#endif
