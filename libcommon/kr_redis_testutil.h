/*
 * kr_redis_testutil — a real redis-server for the Redis tests (test-only,
 * header-only; included by kr_redis_test.c and kr_redis_h2o_test.c).
 *
 * When KREIDE_TEST_REDIS_URL is set the tests use that server and skip what
 * needs a server restart. Otherwise they start their own redis-server on a
 * unix socket in a fresh temporary directory, with persistence off, and kill
 * it at the end. Keys are prefixed with the process id so that several test
 * runs can share one external server.
 */
#ifndef KR_REDIS_TESTUTIL_H
#define KR_REDIS_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct {
    bool own;       /* we started (and may restart) the server */
    pid_t pid;      /* our server's pid, 0 when it is not running */
    char dir[200];  /* its temporary directory */
    char sock[232]; /* dir + "/redis.sock", short enough for sun_path */
    char url[512];
} kr_test_redis;

static inline long long kr_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls until a PING on the socket answers, the server dies or 10 s pass. */
static inline int kr_test_redis_wait_ready(kr_test_redis *s)
{
    long long deadline = kr_test_now_ms() + 10000;
    while (kr_test_now_ms() < deadline) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            fprintf(stderr, "redis-server exited early; see %s/redis.log\n", s->dir);
            return -1;
        }
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c != NULL) {
            redisFree(c);
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL); /* poll interval, not synchronisation */
    }
    fprintf(stderr, "redis-server did not answer within 10 s\n");
    return -1;
}

/* Starts (again) our redis-server on s->sock. */
static inline int kr_test_redis_spawn(kr_test_redis *s)
{
    char log[232];
    snprintf(log, sizeof(log), "%s/redis.log", s->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* a test binary that crashes must not leave its server behind */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", s->sock, "--unixsocketperm", "700", "--save", "",
               "--appendonly", "no", "--dir", s->dir, "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    return kr_test_redis_wait_ready(s);
}

/* Kills our server abruptly (as a crash would) and waits for it to go. */
static inline void kr_test_redis_kill(kr_test_redis *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) == -1 && errno == EINTR)
            ;
        s->pid = 0;
    }
}

static inline int kr_test_redis_start(kr_test_redis *s)
{
    memset(s, 0, sizeof(*s));
    const char *env = getenv("KREIDE_TEST_REDIS_URL");
    if (env != NULL && env[0] != '\0') {
        snprintf(s->url, sizeof(s->url), "%s", env);
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    /* sun_path holds 108 bytes, so a long TMPDIR falls back to /tmp */
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 60)
        tmp = "/tmp";
    snprintf(s->dir, sizeof(s->dir), "%s/kr-redis-test-XXXXXX", tmp);
    if (mkdtemp(s->dir) == NULL)
        return -1;
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    snprintf(s->url, sizeof(s->url), "unix://%s", s->sock);
    s->own = true;
    return kr_test_redis_spawn(s);
}

static inline void kr_test_redis_cleanup(kr_test_redis *s)
{
    if (!s->own)
        return;
    kr_test_redis_kill(s);
    char p[232];
    unlink(s->sock);
    snprintf(p, sizeof(p), "%s/redis.log", s->dir);
    unlink(p);
    rmdir(s->dir);
}

#endif
