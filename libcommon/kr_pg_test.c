#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kr_pg.h"
#include "testdata/pg_fixture.h"

static pgfix fix;

static int setup_server(void **state)
{
    char err[1024];
    if (pgfix_start(&fix, err, sizeof(err)) != 0) {
        fprintf(stderr, "cannot start PostgreSQL for the tests: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown_server(void **state)
{
    pgfix_stop(&fix);
    return 0;
}

static int setup_pg(void **state)
{
    *state = kr_pg_new(fix.conninfo);
    return 0;
}

static int teardown_pg(void **state)
{
    kr_pg_free(*state);
    return 0;
}

/* Runs a statement that must succeed and returns its single value as an
 * integer (or 0 when it returns no rows). */
static long scalar(kr_pg *pg, const char *sql, int n, const char *const *params)
{
    char err[256] = "";
    PGresult *r = kr_pg_exec(pg, sql, n, params, err, sizeof(err));
    if (!r)
        fail_msg("%s: %s", sql, err);
    long v = PQntuples(r) > 0 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return v;
}

static void ok(kr_pg *pg, const char *sql)
{
    char err[256] = "";
    PGresult *r = kr_pg_exec(pg, sql, 0, NULL, err, sizeof(err));
    if (!r)
        fail_msg("%s: %s", sql, err);
    PQclear(r);
}

static void backend_pid(kr_pg *pg, char *out, size_t outlen)
{
    snprintf(out, outlen, "%ld", scalar(pg, "SELECT pg_backend_pid()", 0, NULL));
}

/* Ends `pg`'s server process from another connection and waits until it is
 * gone, as a failover or an administrator would. */
static void terminate_backend_of(kr_pg *pg)
{
    char pid[32];
    backend_pid(pg, pid, sizeof(pid));
    kr_pg *admin = kr_pg_new(fix.conninfo);
    const char *p[] = {pid};
    /* With a timeout, pg_terminate_backend returns only once the process has
     * exited (PostgreSQL 14 and later). */
    assert_int_equal(scalar(admin, "SELECT pg_terminate_backend($1::int, 10000)::int", 1, p), 1);
    kr_pg_free(admin);
}

static void exec_passes_parameters_as_values(void **state)
{
    kr_pg *pg = *state;
    ok(pg, "CREATE TABLE people (id int PRIMARY KEY, name text)");
    const char *hostile = "O'Brien'); DROP TABLE people; --";
    const char *p1[] = {"1", hostile};
    PGresult *r = kr_pg_exec(pg, "INSERT INTO people VALUES ($1, $2)", 2, p1, NULL, 0);
    assert_non_null(r);
    assert_string_equal(PQcmdTuples(r), "1");
    PQclear(r);
    const char *p2[] = {"2", NULL};
    r = kr_pg_exec(pg, "INSERT INTO people VALUES ($1, $2)", 2, p2, NULL, 0);
    assert_non_null(r);
    PQclear(r);

    const char *q[] = {"1"};
    r = kr_pg_exec(pg, "SELECT name FROM people WHERE id = $1", 1, q, NULL, 0);
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), hostile);
    PQclear(r);
    assert_int_equal(scalar(pg, "SELECT count(*) FROM people WHERE name IS NULL", 0, NULL), 1);
    assert_int_equal(kr_pg_last_error(pg), KR_PG_OK);
    assert_string_equal(kr_pg_sqlstate(pg), "");
    ok(pg, "DROP TABLE people");
}

static void exec_rejects_bad_arguments(void **state)
{
    kr_pg *pg = *state;
    char err[128] = "";
    assert_null(kr_pg_exec(pg, "SELECT $1", 1, NULL, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_EINVAL);
    assert_true(err[0] != '\0');
    assert_null(kr_pg_exec(pg, "", 0, NULL, NULL, 0));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_EINVAL);
    /* Parameterised execution takes one statement only, so a second one
     * smuggled into the text is refused rather than run. */
    assert_null(kr_pg_exec(pg, "SELECT 1; SELECT 2", 0, NULL, NULL, 0));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ESQL);
}

static void sql_error_reports_sqlstate_and_keeps_connection(void **state)
{
    kr_pg *pg = *state;
    ok(pg, "CREATE TABLE uniq (k text PRIMARY KEY)");
    const char *p[] = {"a"};
    PGresult *r = kr_pg_exec(pg, "INSERT INTO uniq VALUES ($1)", 1, p, NULL, 0);
    assert_non_null(r);
    PQclear(r);
    uint64_t gen = kr_pg_generation(pg);

    char err[256] = "";
    assert_null(kr_pg_exec(pg, "INSERT INTO uniq VALUES ($1)", 1, p, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ESQL);
    assert_string_equal(kr_pg_sqlstate(pg), "23505");
    assert_non_null(strstr(err, "duplicate key"));
    assert_string_equal(err, kr_pg_errmsg(pg));

    assert_null(kr_pg_exec(pg, "SELEKT 1", 0, NULL, err, sizeof(err)));
    assert_string_equal(kr_pg_sqlstate(pg), "42601");

    /* The same connection goes on working and the state is cleared. */
    assert_true(kr_pg_ping(pg));
    assert_string_equal(kr_pg_sqlstate(pg), "");
    assert_int_equal(kr_pg_generation(pg), gen);
    ok(pg, "DROP TABLE uniq");
}

static void reconnects_after_backend_terminated(void **state)
{
    kr_pg *pg = *state;
    char before[32], after[32];
    backend_pid(pg, before, sizeof(before));
    uint64_t gen = kr_pg_generation(pg);

    terminate_backend_of(pg);

    char err[256] = "";
    PGresult *r = kr_pg_exec(pg, "SELECT 41 + 1", 0, NULL, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    assert_int_equal(kr_pg_generation(pg), gen + 1);
    backend_pid(pg, after, sizeof(after));
    assert_string_not_equal(before, after);
}

static void connection_lost_in_transaction_is_not_retried(void **state)
{
    kr_pg *pg = *state;
    ok(pg, "CREATE TABLE txlost (v int)");
    assert_int_equal(kr_pg_begin(pg), KR_PG_OK);
    ok(pg, "INSERT INTO txlost VALUES (1)");
    terminate_backend_of(pg);

    char err[256] = "";
    assert_null(kr_pg_exec(pg, "INSERT INTO txlost VALUES (2)", 0, NULL, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNLOST);
    /* Either the server's own farewell (57P01 admin_shutdown) or, when libpq
     * only saw the socket close, connection_failure. */
    assert_true(strcmp(kr_pg_sqlstate(pg), "57P01") == 0 || strcmp(kr_pg_sqlstate(pg), "08006") == 0);
    assert_non_null(strstr(err, "inside a transaction"));

    /* Until the caller acknowledges the loss, nothing runs on the fresh
     * connection as if it were still the old transaction. */
    assert_null(kr_pg_exec(pg, "INSERT INTO txlost VALUES (3)", 0, NULL, NULL, 0));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNLOST);
    assert_int_equal(kr_pg_commit(pg), KR_PG_ECONNLOST);
    assert_int_equal(kr_pg_begin(pg), KR_PG_ECONNLOST);
    assert_int_equal(kr_pg_rollback(pg), KR_PG_OK);

    assert_int_equal(scalar(pg, "SELECT count(*) FROM txlost", 0, NULL), 0);
    ok(pg, "DROP TABLE txlost");
}

static void reconnects_after_server_restart(void **state)
{
    if (!fix.own)
        skip(); /* a server given by KREIDE_TEST_PG_URL is not ours to restart */
    kr_pg *pg = *state;
    assert_true(kr_pg_ping(pg));
    uint64_t gen = kr_pg_generation(pg);

    char err[1024];
    assert_int_equal(pgfix_server_stop(&fix), 0);
    assert_false(kr_pg_ping(pg));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNECT);
    if (pgfix_server_start(&fix, err, sizeof(err)) != 0)
        fail_msg("restart: %s", err);

    PGresult *r = kr_pg_exec(pg, "SELECT 'back'", 0, NULL, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "back");
    PQclear(r);
    assert_true(kr_pg_generation(pg) > gen);
}

static void transactions_commit_and_roll_back(void **state)
{
    kr_pg *pg = *state;
    ok(pg, "CREATE TABLE tx (v int PRIMARY KEY)");

    assert_int_equal(kr_pg_begin(pg), KR_PG_OK);
    assert_int_equal(kr_pg_begin(pg), KR_PG_EINVAL);
    ok(pg, "INSERT INTO tx VALUES (1)");
    assert_int_equal(kr_pg_commit(pg), KR_PG_OK);

    assert_int_equal(kr_pg_begin(pg), KR_PG_OK);
    ok(pg, "INSERT INTO tx VALUES (2)");
    assert_int_equal(kr_pg_rollback(pg), KR_PG_OK);

    /* A commit after a failed statement must not look like success. */
    assert_int_equal(kr_pg_begin(pg), KR_PG_OK);
    ok(pg, "INSERT INTO tx VALUES (3)");
    assert_null(kr_pg_exec(pg, "INSERT INTO tx VALUES (1)", 0, NULL, NULL, 0));
    assert_string_equal(kr_pg_sqlstate(pg), "23505");
    assert_int_equal(kr_pg_commit(pg), KR_PG_EABORTED);
    assert_int_equal(kr_pg_rollback(pg), KR_PG_OK);

    assert_int_equal(kr_pg_commit(pg), KR_PG_EINVAL);
    assert_int_equal(scalar(pg, "SELECT count(*) FROM tx", 0, NULL), 1);
    assert_int_equal(scalar(pg, "SELECT max(v) FROM tx", 0, NULL), 1);
    ok(pg, "DROP TABLE tx");
}

static void session_settings_are_applied(void **state)
{
    kr_pg *pg = kr_pg_new(fix.conninfo);
    kr_pg_set_application_name(pg, "kreide-test");
    kr_pg_set_statement_timeout(pg, 50);
    PGresult *r =
        kr_pg_exec(pg, "SELECT current_setting('application_name'), current_setting('statement_timeout')", 0, NULL, NULL, 0);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "kreide-test");
    assert_string_equal(PQgetvalue(r, 0, 1), "50ms");
    PQclear(r);

    assert_null(kr_pg_exec(pg, "SELECT pg_sleep(30)", 0, NULL, NULL, 0));
    assert_string_equal(kr_pg_sqlstate(pg), "57014");
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ESQL);

    /* The settings survive a reconnect. */
    terminate_backend_of(pg);
    r = kr_pg_exec(pg, "SELECT current_setting('statement_timeout')", 0, NULL, NULL, 0);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "50ms");
    PQclear(r);
    kr_pg_free(pg);
}

static void unreachable_server_fails_cleanly(void **state)
{
    char info[512] = "";
    assert_true(pgfix_append_kv(info, sizeof(info), "host", "/nonexistent-kreide-socket-dir"));
    assert_true(pgfix_append_kv(info, sizeof(info), "connect_timeout", "2"));
    kr_pg *pg = kr_pg_new(info);
    char err[256] = "";
    assert_null(kr_pg_conn(pg, err, sizeof(err)));
    assert_true(err[0] != '\0');
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNECT);
    assert_false(kr_pg_ping(pg));
    assert_null(kr_pg_exec(pg, "SELECT 1", 0, NULL, NULL, 0));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNECT);
    assert_int_equal(kr_pg_generation(pg), 0);
    kr_pg_free(pg);
    kr_pg_free(NULL);
}

/* Runs the prepared "add" statement and returns its value. */
static long prepared_add(kr_pg *pg, const char *a, const char *b)
{
    char err[256] = "";
    const char *p[] = {a, b};
    PGresult *r = kr_pg_exec_prepared(pg, "test_add", "SELECT $1::int + $2::int", 2, p, err, sizeof(err));
    if (!r)
        fail_msg("test_add: %s", err);
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static long prepared_count(kr_pg *pg)
{
    return scalar(pg, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'test_add'", 0, NULL);
}

static void prepared_statements_prepare_once_per_connection(void **state)
{
    kr_pg *pg = *state;
    assert_int_equal(prepared_add(pg, "2", "3"), 5);
    assert_int_equal(prepared_count(pg), 1);
    assert_int_equal(prepared_add(pg, "40", "2"), 42);
    assert_int_equal(prepared_count(pg), 1);
    uint64_t gen = kr_pg_generation(pg);

    /* A new connection knows nothing of the old one's statements. */
    terminate_backend_of(pg);
    assert_int_equal(prepared_add(pg, "1", "1"), 2);
    assert_true(kr_pg_generation(pg) > gen);
    assert_int_equal(prepared_count(pg), 1);

    /* Dropped behind the handle's back: prepared again. */
    ok(pg, "DEALLOCATE ALL");
    assert_int_equal(prepared_count(pg), 0);
    assert_int_equal(prepared_add(pg, "5", "5"), 10);
    assert_int_equal(prepared_count(pg), 1);

    /* Parameters are values, never SQL. */
    char err[256] = "";
    const char *evil[] = {"1; DROP TABLE x", "1"};
    assert_null(kr_pg_exec_prepared(pg, "test_add", "SELECT $1::int + $2::int", 2, evil, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ESQL);
    assert_string_equal(kr_pg_sqlstate(pg), "22P02");
    assert_int_equal(prepared_add(pg, "1", "2"), 3);

    /* Inside a transaction, and a lost one is not retried. */
    assert_int_equal(kr_pg_begin(pg), KR_PG_OK);
    assert_int_equal(prepared_add(pg, "3", "4"), 7);
    terminate_backend_of(pg);
    const char *p[] = {"1", "1"};
    assert_null(kr_pg_exec_prepared(pg, "test_add", "SELECT $1::int + $2::int", 2, p, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ECONNLOST);
    assert_int_equal(kr_pg_rollback(pg), KR_PG_OK);
    assert_int_equal(prepared_add(pg, "3", "4"), 7);
    assert_int_equal(prepared_count(pg), 1);
}

static void prepared_statement_errors(void **state)
{
    kr_pg *pg = *state;
    char err[256] = "";
    assert_null(kr_pg_exec_prepared(pg, "", "SELECT 1", 0, NULL, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_EINVAL);
    assert_null(kr_pg_exec_prepared(pg, "test_bad", "SELEC 1", 0, NULL, err, sizeof(err)));
    assert_int_equal(kr_pg_last_error(pg), KR_PG_ESQL);
    assert_string_equal(kr_pg_sqlstate(pg), "42601");
    assert_true(err[0] != '\0');
    /* The connection stays usable, and a failed prepare is not remembered. */
    assert_int_equal(scalar(pg, "SELECT count(*) FROM pg_prepared_statements", 0, NULL), 0);
    assert_int_equal(prepared_add(pg, "1", "2"), 3);
}

static void strerror_covers_every_code(void **state)
{
    for (int e = KR_PG_OK; e <= KR_PG_EABORTED; e++)
        assert_string_not_equal(kr_pg_strerror((kr_pg_error)e), "unknown kr_pg error");
    assert_string_equal(kr_pg_strerror((kr_pg_error)99), "unknown kr_pg error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(exec_passes_parameters_as_values, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(exec_rejects_bad_arguments, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(sql_error_reports_sqlstate_and_keeps_connection, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(reconnects_after_backend_terminated, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(connection_lost_in_transaction_is_not_retried, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(reconnects_after_server_restart, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(transactions_commit_and_roll_back, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(prepared_statements_prepare_once_per_connection, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(prepared_statement_errors, setup_pg, teardown_pg),
        cmocka_unit_test(session_settings_are_applied),
        cmocka_unit_test(unreachable_server_fails_cleanly),
        cmocka_unit_test(strerror_covers_every_code),
    };
    return cmocka_run_group_tests(tests, setup_server, teardown_server);
}
