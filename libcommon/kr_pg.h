/*
 * kr_pg — one PostgreSQL connection that reconnects by itself.
 *
 * A kr_pg holds at most one libpq connection and opens it lazily. Every
 * statement goes through kr_pg_exec, which only takes parameterised SQL
 * (PQexecParams, text format): values travel separately from the statement,
 * so nothing taken from a request is ever spliced into SQL text.
 *
 * When the server goes away (restart, failover, pg_terminate_backend), the
 * next call notices, opens a new connection and, if no transaction was open,
 * runs the statement again once. Inside a transaction nothing is retried: the
 * server has thrown the transaction away, so the caller gets
 * KR_PG_ECONNLOST and must call kr_pg_rollback before going on.
 *
 * Not thread-safe: give every thread its own kr_pg (the RPC server gives each
 * worker one, so handlers may block on the database).
 */
#ifndef KR_PG_H
#define KR_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes of this module; 0 means success. */
typedef enum {
    KR_PG_OK = 0,
    /* A bad argument, or a call that makes no sense in the current state
     * (kr_pg_begin inside a transaction, kr_pg_commit outside one). */
    KR_PG_EINVAL,
    /* No connection could be opened. */
    KR_PG_ECONNECT,
    /* The connection broke while a statement ran and it was not retried:
     * either a transaction was open (it is gone; call kr_pg_rollback) or the
     * single retry failed too. */
    KR_PG_ECONNLOST,
    /* The server rejected the statement; kr_pg_sqlstate tells why. The
     * connection stays usable. */
    KR_PG_ESQL,
    /* kr_pg_commit found the transaction aborted by an earlier error and
     * rolled it back instead. */
    KR_PG_EABORTED,
} kr_pg_error;

typedef struct kr_pg kr_pg;

/* A short English description of `e`; never NULL, static storage. */
const char *kr_pg_strerror(kr_pg_error e);

/* Makes a handle for `conninfo`, a libpq connection string
 * ("host=... dbname=...") or URI ("postgresql://..."). Does not connect: the
 * first kr_pg_conn / kr_pg_exec does. The string is copied. Aborts on
 * out-of-memory; never returns NULL. Free with kr_pg_free. */
kr_pg *kr_pg_new(const char *conninfo);

/* Closes the connection (the server rolls back an open transaction and
 * releases session advisory locks) and frees `pg`. NULL is ignored. */
void kr_pg_free(kr_pg *pg);

/* Names the program in pg_stat_activity: passed as libpq's
 * fallback_application_name, so an application_name in the conninfo or the
 * PGAPPNAME environment variable still wins. Copied. Takes effect at the next
 * connection, so call it right after kr_pg_new. NULL clears it. */
void kr_pg_set_application_name(kr_pg *pg, const char *name);

/* Sets statement_timeout (milliseconds, 0 = the server's default) on every
 * connection this handle opens. A statement that runs longer fails with
 * KR_PG_ESQL and SQLSTATE 57014. Takes effect at the next connection, so call
 * it right after kr_pg_new. */
void kr_pg_set_statement_timeout(kr_pg *pg, int ms);

/* Returns a live connection, opening one when there is none or the last one
 * broke. The connection stays owned by `pg`: do not PQfinish it, and do not
 * keep it across calls that may reconnect. Use it only for what kr_pg_exec
 * cannot do (running a trusted SQL script, COPY). On failure returns NULL,
 * writes a message to `err` (may be NULL), and kr_pg_last_error is
 * KR_PG_ECONNECT. */
__attribute__((warn_unused_result)) PGconn *kr_pg_conn(kr_pg *pg, char *err, size_t errlen);

/* Runs one statement with `nparams` text parameters ($1 .. $n; a NULL element
 * is SQL NULL; `params` may be NULL when nparams is 0). On success returns
 * the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), which the caller must
 * PQclear. On failure returns NULL, writes a message to `err` (may be NULL)
 * and sets kr_pg_last_error / kr_pg_sqlstate / kr_pg_errmsg.
 *
 * A broken connection outside a transaction is reopened and the statement run
 * once more; note that a statement whose connection broke after the server
 * had finished it is then run twice, so keep autocommit writes idempotent or
 * wrap them in a transaction. */
__attribute__((warn_unused_result)) PGresult *kr_pg_exec(kr_pg *pg, const char *sql, int nparams, const char *const *params,
                                                         char *err, size_t errlen);

/* Like kr_pg_exec, but as the named prepared statement `name`: the first
 * call on a connection prepares `sql` (PQprepare, parameter types inferred
 * as for kr_pg_exec), later calls only send the parameters (PQexecPrepared),
 * which spares the server parsing and planning on hot paths. A name stands
 * for one SQL text for the life of the handle: pass the same `sql` every
 * time (a string literal), and never reuse a name for other SQL. After a
 * reconnect the statement is prepared again on the new connection; if the
 * server lost it otherwise (DEALLOCATE ALL), it is prepared again once,
 * outside a transaction. Errors, retries and ownership as for kr_pg_exec. */
__attribute__((warn_unused_result)) PGresult *kr_pg_exec_prepared(kr_pg *pg, const char *name, const char *sql, int nparams,
                                                                  const char *const *params, char *err, size_t errlen);

/* Opens a transaction (BEGIN). KR_PG_EINVAL when one is already open,
 * KR_PG_ECONNLOST when an earlier one was lost and not yet rolled back. */
__attribute__((warn_unused_result)) int kr_pg_begin(kr_pg *pg);

/* Commits the open transaction. KR_PG_EABORTED when an earlier statement had
 * failed (the transaction is rolled back instead), KR_PG_ESQL when the commit
 * itself fails (deferred constraints), KR_PG_ECONNLOST when the connection
 * broke (the outcome is then unknown), KR_PG_EINVAL when no transaction is
 * open. After any failure call kr_pg_rollback. */
__attribute__((warn_unused_result)) int kr_pg_commit(kr_pg *pg);

/* Ends the open transaction without keeping its changes, and clears the
 * "transaction lost" state after KR_PG_ECONNLOST. Does nothing when no
 * transaction is open. If the server refuses the ROLLBACK, the connection is
 * dropped (which makes the server discard the transaction) and the error is
 * returned; in every case no transaction is open afterwards. */
int kr_pg_rollback(kr_pg *pg);

/* True when the server answers SELECT 1 (reconnecting if needed): for health
 * checks. */
bool kr_pg_ping(kr_pg *pg);

/* The error code of the last kr_pg_* call on `pg` (KR_PG_OK after success). */
kr_pg_error kr_pg_last_error(const kr_pg *pg);

/* The SQLSTATE of the last failure ("23505" unique violation, "40001"
 * serialization failure, "57014" statement timeout, ...), "08006" for a
 * broken connection the server gave no code for, "" after success. Owned by
 * `pg`, valid until the next call. */
const char *kr_pg_sqlstate(const kr_pg *pg);

/* The message of the last failure, "" after success. Owned by `pg`, valid
 * until the next call. */
const char *kr_pg_errmsg(const kr_pg *pg);

/* Counts the connections `pg` has opened. Server-side session state
 * (prepared statements, advisory locks, SET without LOCAL) lives only as long
 * as one connection, so code that relies on it compares this number before
 * and after. */
uint64_t kr_pg_generation(const kr_pg *pg);

#endif
