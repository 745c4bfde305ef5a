#include "kr_pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Long enough for PostgreSQL's primary message plus detail; longer ones are
 * cut, which is fine for logs and error replies. */
#define KR_PG_MSG_MAX 512

struct kr_pg {
    char *conninfo;
    char *app_name;
    int statement_timeout_ms;
    PGconn *conn;
    uint64_t generation;
    /* Whether the connection was inside a transaction block after the last
     * statement: once a connection breaks, libpq can no longer say. */
    bool in_tx;
    /* A connection broke inside a transaction and the caller has not yet
     * acknowledged it with kr_pg_rollback. */
    bool tx_lost;
    /* Names of the statements prepared on the current connection; they die
     * with it, so drop_conn and every new connection empty the list. */
    char **prepared;
    size_t nprepared, capprepared;
    kr_pg_error last;
    char sqlstate[6];
    char msg[KR_PG_MSG_MAX];
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

const char *kr_pg_strerror(kr_pg_error e)
{
    switch (e) {
    case KR_PG_OK:
        return "success";
    case KR_PG_EINVAL:
        return "invalid argument or call";
    case KR_PG_ECONNECT:
        return "cannot connect to PostgreSQL";
    case KR_PG_ECONNLOST:
        return "connection to PostgreSQL lost";
    case KR_PG_ESQL:
        return "PostgreSQL rejected the statement";
    case KR_PG_EABORTED:
        return "transaction was aborted and rolled back";
    }
    return "unknown kr_pg error";
}

kr_pg *kr_pg_new(const char *conninfo)
{
    kr_pg *pg = xcalloc(1, sizeof(*pg));
    pg->conninfo = xstrdup(conninfo ? conninfo : "");
    return pg;
}

static void forget_prepared(kr_pg *pg)
{
    for (size_t i = 0; i < pg->nprepared; i++)
        free(pg->prepared[i]);
    pg->nprepared = 0;
}

static bool is_prepared(const kr_pg *pg, const char *name)
{
    for (size_t i = 0; i < pg->nprepared; i++)
        if (strcmp(pg->prepared[i], name) == 0)
            return true;
    return false;
}

static void remember_prepared(kr_pg *pg, const char *name)
{
    if (pg->nprepared == pg->capprepared) {
        size_t cap = pg->capprepared ? 2 * pg->capprepared : 16;
        char **p = realloc(pg->prepared, cap * sizeof(*p));
        if (!p)
            abort();
        pg->prepared = p;
        pg->capprepared = cap;
    }
    pg->prepared[pg->nprepared++] = xstrdup(name);
}

void kr_pg_free(kr_pg *pg)
{
    if (!pg)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    forget_prepared(pg);
    free(pg->prepared);
    free(pg->conninfo);
    free(pg->app_name);
    free(pg);
}

void kr_pg_set_application_name(kr_pg *pg, const char *name)
{
    free(pg->app_name);
    pg->app_name = name ? xstrdup(name) : NULL;
}

void kr_pg_set_statement_timeout(kr_pg *pg, int ms)
{
    pg->statement_timeout_ms = ms > 0 ? ms : 0;
}

static void clear_error(kr_pg *pg)
{
    pg->last = KR_PG_OK;
    pg->sqlstate[0] = '\0';
    pg->msg[0] = '\0';
}

/* libpq messages end in a newline and may span lines; logs want one line. */
static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

__attribute__((format(printf, 3, 4))) static void set_error(kr_pg *pg, kr_pg_error e, const char *fmt, ...)
{
    pg->last = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pg->msg, sizeof(pg->msg), fmt, ap);
    va_end(ap);
    one_line(pg->msg);
}

static void set_sqlstate(kr_pg *pg, const char *state)
{
    snprintf(pg->sqlstate, sizeof(pg->sqlstate), "%s", state ? state : "");
}

/* Takes the code and message from a failed result; falls back to the
 * connection's message for errors libpq made up itself. */
static void set_error_from_result(kr_pg *pg, kr_pg_error e, const PGresult *r)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (primary && detail)
        set_error(pg, e, "%s (%s)", primary, detail);
    else if (primary)
        set_error(pg, e, "%s", primary);
    else if (r && *PQresultErrorMessage(r))
        set_error(pg, e, "%s", PQresultErrorMessage(r));
    else if (pg->conn && *PQerrorMessage(pg->conn))
        set_error(pg, e, "%s", PQerrorMessage(pg->conn));
    else
        set_error(pg, e, "%s", kr_pg_strerror(e));
    set_sqlstate(pg, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL);
    if (!pg->sqlstate[0] && e == KR_PG_ECONNLOST)
        set_sqlstate(pg, "08006");
}

static void copy_err(const kr_pg *pg, char *err, size_t errlen)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", pg->msg);
}

/* Forgets the connection. Closing it makes the server roll back whatever
 * transaction was open, so remember that the caller's transaction is gone. */
static void drop_conn(kr_pg *pg)
{
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    forget_prepared(pg);
    if (pg->in_tx)
        pg->tx_lost = true;
    pg->in_tx = false;
}

/* libpq's default prints notices and warnings to stderr; a library must not,
 * and nothing here acts on them. */
static void ignore_notice(void *arg, const char *message)
{
}

static bool apply_session_settings(kr_pg *pg)
{
    if (pg->statement_timeout_ms <= 0)
        return true;
    char ms[16];
    snprintf(ms, sizeof(ms), "%d", pg->statement_timeout_ms);
    const char *params[] = {ms};
    PGresult *r = PQexecParams(pg->conn, "SELECT set_config('statement_timeout', $1, false)", 1, NULL, params, NULL, NULL, 0);
    bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        set_error_from_result(pg, KR_PG_ECONNECT, r);
    PQclear(r);
    return ok;
}

PGconn *kr_pg_conn(kr_pg *pg, char *err, size_t errlen)
{
    clear_error(pg);
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return pg->conn;
    drop_conn(pg);

    const char *keys[3] = {"dbname", NULL, NULL};
    const char *vals[3] = {pg->conninfo, NULL, NULL};
    if (pg->app_name) {
        keys[1] = "fallback_application_name";
        vals[1] = pg->app_name;
    }
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (!pg->conn)
        abort(); /* libpq returns NULL only when it cannot allocate */
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        set_error(pg, KR_PG_ECONNECT, "%s", PQerrorMessage(pg->conn));
        set_sqlstate(pg, "08001");
        PQfinish(pg->conn);
        pg->conn = NULL;
        copy_err(pg, err, errlen);
        return NULL;
    }
    pg->generation++;
    forget_prepared(pg);
    PQsetNoticeProcessor(pg->conn, ignore_notice, NULL);
    if (!apply_session_settings(pg)) {
        PQfinish(pg->conn);
        pg->conn = NULL;
        copy_err(pg, err, errlen);
        return NULL;
    }
    return pg->conn;
}

static bool in_transaction(PGconn *c)
{
    PGTransactionStatusType t = PQtransactionStatus(c);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static PGresult *fail(kr_pg *pg, kr_pg_error e, char *err, size_t errlen, const char *msg)
{
    set_error(pg, e, "%s", msg);
    if (e == KR_PG_ECONNLOST)
        set_sqlstate(pg, "08006");
    copy_err(pg, err, errlen);
    return NULL;
}

/* Prepares `name` on `c` unless it already is: NULL and PGRES_COMMAND_OK
 * both mean ready, anything else is the failed PQprepare's result. */
static PGresult *prepare_once(kr_pg *pg, PGconn *c, const char *name, const char *sql, int nparams, bool *failed)
{
    *failed = false;
    if (is_prepared(pg, name))
        return NULL;
    PGresult *r = PQprepare(c, name, sql, nparams, NULL);
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        remember_prepared(pg, name);
        return NULL;
    }
    *failed = true;
    return r;
}

/* kr_pg_exec and kr_pg_exec_prepared: `name` NULL runs `sql` unnamed. */
static PGresult *exec_any(kr_pg *pg, const char *name, const char *sql, int nparams, const char *const *params, char *err,
                          size_t errlen)
{
    clear_error(pg);
    if (!sql || !*sql || nparams < 0 || (nparams > 0 && !params))
        return fail(pg, KR_PG_EINVAL, err, errlen, "kr_pg_exec: empty statement or missing parameters");
    if (pg->tx_lost)
        return fail(pg, KR_PG_ECONNLOST, err, errlen, "the connection was lost inside a transaction; call kr_pg_rollback first");

    for (int attempt = 0;; attempt++) {
        PGconn *c = kr_pg_conn(pg, err, errlen);
        if (!c)
            return NULL;
        if (pg->tx_lost)
            return fail(pg, KR_PG_ECONNLOST, err, errlen,
                        "the connection was lost inside a transaction; call kr_pg_rollback first");

        bool was_in_tx = in_transaction(c);
        PGresult *r = NULL;
        bool prepare_failed = false;
        if (name == NULL)
            r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
        else if ((r = prepare_once(pg, c, name, sql, nparams, &prepare_failed)) == NULL)
            r = PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (!prepare_failed && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
            pg->in_tx = in_transaction(c);
            return r;
        }
        if (PQstatus(c) == CONNECTION_OK) {
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                /* The connection is now stuck in COPY mode; starting afresh
                 * is the only way back to a known state. */
                PQclear(r);
                pg->in_tx = was_in_tx;
                drop_conn(pg);
                return fail(pg, KR_PG_EINVAL, err, errlen, "kr_pg_exec does not support COPY");
            }
            set_error_from_result(pg, KR_PG_ESQL, r);
            PQclear(r);
            pg->in_tx = in_transaction(c);
            if (name != NULL && strcmp(pg->sqlstate, "26000") == 0) {
                /* Someone deallocated the statement on this connection
                 * (DEALLOCATE ALL, DISCARD ALL): prepare it afresh, once,
                 * unless a transaction was open (it is aborted now). */
                forget_prepared(pg);
                if (!was_in_tx && attempt == 0)
                    continue;
            }
            copy_err(pg, err, errlen);
            return NULL;
        }

        set_error_from_result(pg, KR_PG_ECONNLOST, r);
        PQclear(r);
        pg->in_tx = was_in_tx;
        drop_conn(pg);
        if (was_in_tx || attempt > 0) {
            if (was_in_tx) {
                char why[KR_PG_MSG_MAX];
                snprintf(why, sizeof(why), "%s", pg->msg);
                set_error(pg, KR_PG_ECONNLOST, "connection lost inside a transaction: %s", why);
            }
            copy_err(pg, err, errlen);
            return NULL;
        }
    }
}

PGresult *kr_pg_exec(kr_pg *pg, const char *sql, int nparams, const char *const *params, char *err, size_t errlen)
{
    return exec_any(pg, NULL, sql, nparams, params, err, errlen);
}

PGresult *kr_pg_exec_prepared(kr_pg *pg, const char *name, const char *sql, int nparams, const char *const *params, char *err,
                              size_t errlen)
{
    if (!name || !*name) {
        clear_error(pg);
        return fail(pg, KR_PG_EINVAL, err, errlen, "kr_pg_exec_prepared: empty statement name");
    }
    return exec_any(pg, name, sql, nparams, params, err, errlen);
}

/* Runs a statement whose result is not needed. */
static int exec_simple(kr_pg *pg, const char *sql)
{
    PGresult *r = kr_pg_exec(pg, sql, 0, NULL, NULL, 0);
    if (!r)
        return pg->last;
    PQclear(r);
    return KR_PG_OK;
}

/* libpq marks a connection bad only once it has tried to use it; if that
 * happened, drop it now so a lost transaction is noticed. */
static void notice_broken(kr_pg *pg)
{
    if (pg->conn && PQstatus(pg->conn) != CONNECTION_OK)
        drop_conn(pg);
}

int kr_pg_begin(kr_pg *pg)
{
    clear_error(pg);
    notice_broken(pg);
    if (pg->tx_lost) {
        fail(pg, KR_PG_ECONNLOST, NULL, 0, "the connection was lost inside a transaction; call kr_pg_rollback first");
        return pg->last;
    }
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK && in_transaction(pg->conn)) {
        fail(pg, KR_PG_EINVAL, NULL, 0, "kr_pg_begin: a transaction is already open");
        return pg->last;
    }
    return exec_simple(pg, "BEGIN");
}

int kr_pg_commit(kr_pg *pg)
{
    clear_error(pg);
    notice_broken(pg);
    if (pg->tx_lost) {
        fail(pg, KR_PG_ECONNLOST, NULL, 0, "the connection was lost inside a transaction; call kr_pg_rollback");
        return pg->last;
    }
    if (!pg->conn || !in_transaction(pg->conn)) {
        fail(pg, KR_PG_EINVAL, NULL, 0, "kr_pg_commit: no transaction is open");
        return pg->last;
    }
    PGresult *r = kr_pg_exec(pg, "COMMIT", 0, NULL, NULL, 0);
    if (!r)
        return pg->last;
    /* PostgreSQL answers COMMIT of an aborted transaction with a successful
     * "ROLLBACK" rather than an error; callers must not mistake that for a
     * commit. */
    bool committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!committed) {
        set_error(pg, KR_PG_EABORTED, "transaction was aborted by an earlier error and has been rolled back");
        set_sqlstate(pg, "25P02");
        return pg->last;
    }
    return KR_PG_OK;
}

int kr_pg_rollback(kr_pg *pg)
{
    clear_error(pg);
    notice_broken(pg);
    if (pg->tx_lost) {
        pg->tx_lost = false;
        return KR_PG_OK;
    }
    if (!pg->conn)
        return KR_PG_OK;
    if (!in_transaction(pg->conn)) {
        pg->in_tx = false;
        return KR_PG_OK;
    }
    int rc = exec_simple(pg, "ROLLBACK");
    if (rc != KR_PG_OK) {
        drop_conn(pg);
        pg->tx_lost = false;
    }
    if (rc == KR_PG_ECONNLOST) {
        /* A server that lost the connection has discarded the transaction,
         * which is all a rollback asks for. */
        clear_error(pg);
        rc = KR_PG_OK;
    }
    return rc;
}

bool kr_pg_ping(kr_pg *pg)
{
    PGresult *r = kr_pg_exec(pg, "SELECT 1", 0, NULL, NULL, 0);
    bool ok = r && PQntuples(r) == 1;
    PQclear(r);
    return ok;
}

kr_pg_error kr_pg_last_error(const kr_pg *pg)
{
    return pg->last;
}

const char *kr_pg_sqlstate(const kr_pg *pg)
{
    return pg->sqlstate;
}

const char *kr_pg_errmsg(const kr_pg *pg)
{
    return pg->msg;
}

uint64_t kr_pg_generation(const kr_pg *pg)
{
    return pg->generation;
}
