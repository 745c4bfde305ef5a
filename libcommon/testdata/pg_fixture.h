/*
 * A PostgreSQL server for tests, included by the tests that need one.
 *
 * With KREIDE_TEST_PG_URL set (a superuser conninfo or URI), that server is
 * used. Otherwise a private server is initialised in a fresh temporary
 * directory and listens only on a unix socket there; PostgreSQL refuses to
 * run as root, so under root it runs as the `postgres` user. Either way each
 * run gets a fresh database `kreide_test_<pid>`, dropped at the end.
 * KREIDE_PG_BINDIR overrides where initdb and postgres are found.
 */
#ifndef KR_TEST_PG_FIXTURE_H
#define KR_TEST_PG_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PGFIX_DEFAULT_BINDIR "/usr/lib/postgresql/15/bin"

typedef struct {
    char conninfo[1024]; /* superuser, in the fresh test database */
    char admin[1024];    /* superuser, in the maintenance database */
    char dbname[64];
    char dir[256]; /* own server: its directory (data, socket, log) */
    pid_t pid;     /* own server: the postmaster, 0 when external */
    bool own;
    uid_t uid; /* own server: who runs it */
    gid_t gid;
    bool drop_privileges;
} pgfix;

__attribute__((unused)) static double pgfix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((unused)) static void pgfix_pause(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Appends `key='value'` to a conninfo string, quoting as libpq expects. */
static bool pgfix_append_kv(char *out, size_t outlen, const char *key, const char *val)
{
    size_t n = strlen(out);
    int w = snprintf(out + n, outlen - n, "%s%s='", n ? " " : "", key);
    if (w < 0 || (size_t)w >= outlen - n)
        return false;
    n += (size_t)w;
    for (const char *p = val; *p; p++) {
        if (n + 3 >= outlen)
            return false;
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return true;
}

/* Rewrites `src` (conninfo or URI) to name database `db`. */
static bool pgfix_with_db(const char *src, const char *db, char *out, size_t outlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(src, &perr);
    if (!opts) {
        PQfreemem(perr);
        return false;
    }
    out[0] = '\0';
    bool ok = true;
    for (PQconninfoOption *o = opts; o->keyword && ok; o++) {
        if (strcmp(o->keyword, "dbname") == 0)
            continue;
        if (o->val && *o->val)
            ok = pgfix_append_kv(out, outlen, o->keyword, o->val);
    }
    if (ok)
        ok = pgfix_append_kv(out, outlen, "dbname", db);
    PQconninfoFree(opts);
    return ok;
}

static const char *pgfix_bindir(void)
{
    const char *d = getenv("KREIDE_PG_BINDIR");
    return d && *d ? d : PGFIX_DEFAULT_BINDIR;
}

/* Starts argv[0] (a PostgreSQL program) as the server's user with output
 * appended to the log; returns the child's pid or -1. */
static pid_t pgfix_spawn(pgfix *f, char *const argv[], bool die_with_parent)
{
    char log[300];
    snprintf(log, sizeof(log), "%s/log", f->dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    if (f->drop_privileges) {
        if (setgroups(0, NULL) != 0 || setgid(f->gid) != 0 || setuid(f->uid) != 0)
            _exit(126);
    }
    /* Set after setuid, which clears it: the server must not outlive a test
     * that crashed. */
    if (die_with_parent)
        prctl(PR_SET_PDEATHSIG, SIGINT);
    if (chdir(f->dir) != 0)
        _exit(126);
    execv(argv[0], argv);
    _exit(127);
}

static bool pgfix_wait_exit(pid_t pid, double timeout, int *status)
{
    double deadline = pgfix_now() + timeout;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        if (pgfix_now() > deadline)
            return false;
        pgfix_pause();
    }
}

static void pgfix_tail_log(pgfix *f, char *err, size_t errlen)
{
    char path[300], buf[400];
    snprintf(path, sizeof(path), "%s/log", f->dir);
    FILE *fp = fopen(path, "r");
    size_t n = 0;
    if (fp) {
        if (fseek(fp, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
            rewind(fp);
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
    }
    buf[n] = '\0';
    size_t len = strlen(err);
    snprintf(err + len, errlen - len, "; server log ends: %s", buf);
}

/* Starts the postmaster of an initialised own server and waits until it
 * accepts connections. */
__attribute__((unused)) static int pgfix_server_start(pgfix *f, char *err, size_t errlen)
{
    char prog[300], data[300], sock[300];
    snprintf(prog, sizeof(prog), "%s/postgres", pgfix_bindir());
    snprintf(data, sizeof(data), "%s/data", f->dir);
    snprintf(sock, sizeof(sock), "unix_socket_directories=%s", f->dir);
    char *const argv[] = {prog,
                          "-D",
                          data,
                          "-c",
                          "listen_addresses=",
                          "-c",
                          sock,
                          "-c",
                          "fsync=off",
                          "-c",
                          "full_page_writes=off",
                          "-c",
                          "max_connections=40",
                          NULL};
    f->pid = pgfix_spawn(f, argv, true);
    if (f->pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    double deadline = pgfix_now() + 60;
    for (;;) {
        if (PQping(f->admin) == PQPING_OK)
            return 0;
        int status;
        if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
            f->pid = 0;
            snprintf(err, errlen, "postgres exited during start");
            pgfix_tail_log(f, err, errlen);
            return -1;
        }
        if (pgfix_now() > deadline) {
            snprintf(err, errlen, "postgres did not accept connections within 60 s");
            pgfix_tail_log(f, err, errlen);
            return -1;
        }
        pgfix_pause();
    }
}

/* Fast shutdown of the own server; waits for it to exit. */
__attribute__((unused)) static int pgfix_server_stop(pgfix *f)
{
    if (f->pid <= 0)
        return 0;
    int status;
    kill(f->pid, SIGINT);
    if (!pgfix_wait_exit(f->pid, 60, &status)) {
        kill(f->pid, SIGKILL);
        pgfix_wait_exit(f->pid, 10, &status);
        f->pid = 0;
        return -1;
    }
    f->pid = 0;
    return 0;
}

static int pgfix_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int pgfix_init_own(pgfix *f, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    /* A unix socket path must fit in about 100 bytes. */
    if (!tmp || !*tmp || strlen(tmp) > 60)
        tmp = "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/kreide-pgtest-XXXXXX", tmp);
    if (!mkdtemp(f->dir)) {
        snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
        return -1;
    }
    f->own = true;
    f->uid = geteuid();
    f->gid = getegid();
    if (f->uid == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            snprintf(err, errlen, "running as root and no 'postgres' user exists to run the server");
            return -1;
        }
        f->uid = pw->pw_uid;
        f->gid = pw->pw_gid;
        f->drop_privileges = true;
        if (chown(f->dir, f->uid, f->gid) != 0) {
            snprintf(err, errlen, "chown %s: %s", f->dir, strerror(errno));
            return -1;
        }
    }

    char prog[300], data[300];
    snprintf(prog, sizeof(prog), "%s/initdb", pgfix_bindir());
    snprintf(data, sizeof(data), "%s/data", f->dir);
    char *const argv[] = {prog, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", NULL};
    pid_t pid = pgfix_spawn(f, argv, false);
    int status = 0;
    if (pid < 0 || !pgfix_wait_exit(pid, 120, &status) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "initdb failed (status %d)", status);
        pgfix_tail_log(f, err, errlen);
        return -1;
    }
    f->admin[0] = '\0';
    if (!pgfix_append_kv(f->admin, sizeof(f->admin), "host", f->dir) ||
        !pgfix_append_kv(f->admin, sizeof(f->admin), "user", "postgres") ||
        !pgfix_append_kv(f->admin, sizeof(f->admin), "dbname", "postgres")) {
        snprintf(err, errlen, "conninfo too long");
        return -1;
    }
    return pgfix_server_start(f, err, errlen);
}

static void pgfix_quiet(void *arg, const char *message)
{
}

static int pgfix_admin_exec(pgfix *f, const char *sql, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(f->admin);
    PQsetNoticeProcessor(c, pgfix_quiet, NULL);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "connect: %s", PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            rc = 0;
        else
            snprintf(err, errlen, "%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

/* Tears down whatever pgfix_start set up; safe on a half-started fixture. */
__attribute__((unused)) static void pgfix_stop(pgfix *f)
{
    char err[512], sql[128];
    if (f->dbname[0] && (f->pid > 0 || !f->own)) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", f->dbname);
        if (pgfix_admin_exec(f, sql, err, sizeof(err)) != 0)
            fprintf(stderr, "pg fixture: %s\n", err);
    }
    if (f->own) {
        pgfix_server_stop(f);
        if (f->dir[0])
            nftw(f->dir, pgfix_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    memset(f, 0, sizeof(*f));
}

/* Makes a server and a fresh database available; on failure writes why. */
__attribute__((unused)) static int pgfix_start(pgfix *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    const char *url = getenv("KREIDE_TEST_PG_URL");
    if (url && *url) {
        if (!pgfix_with_db(url, "postgres", f->admin, sizeof(f->admin))) {
            snprintf(err, errlen, "KREIDE_TEST_PG_URL is not a valid conninfo");
            return -1;
        }
    } else if (pgfix_init_own(f, err, errlen) != 0) {
        pgfix_stop(f);
        return -1;
    }
    snprintf(f->dbname, sizeof(f->dbname), "kreide_test_%ld", (long)getpid());
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", f->dbname);
    if (pgfix_admin_exec(f, sql, err, errlen) != 0)
        goto fail;
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", f->dbname);
    if (pgfix_admin_exec(f, sql, err, errlen) != 0)
        goto fail;
    if (!pgfix_with_db(f->admin, f->dbname, f->conninfo, sizeof(f->conninfo))) {
        snprintf(err, errlen, "conninfo too long");
        goto fail;
    }
    return 0;
fail:
    pgfix_stop(f);
    return -1;
}

#endif
