#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kr_migrate.h"
#include "kr_pg.h"
#include "testdata/pg_fixture.h"

static pgfix fix;

/* Each test gets a connection and an empty directory of migrations it writes
 * itself, so it can change files between runs. */
typedef struct {
    kr_pg *pg;
    char dir[256];
} mt;

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

static int setup(void **state)
{
    mt *t = calloc(1, sizeof(*t));
    const char *tmp = getenv("TMPDIR");
    snprintf(t->dir, sizeof(t->dir), "%s/kreide-migtest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    t->pg = kr_pg_new(fix.conninfo);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    mt *t = *state;
    kr_pg_free(t->pg);
    nftw(t->dir, pgfix_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static void put(const char *dir, const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

static void rm(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

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

/* Whether a relation such as "schema.table" exists. */
static bool exists(kr_pg *pg, const char *relation)
{
    const char *p[] = {relation};
    return scalar(pg, "SELECT (to_regclass($1) IS NOT NULL)::int", 1, p) == 1;
}

static long recorded(kr_pg *pg, const char *schema)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.schema_migrations", schema);
    return scalar(pg, sql, 0, NULL);
}

/* Whether the migration lock of `schema` is free, seen from another session. */
static bool lock_is_free(const char *schema)
{
    char key[24];
    snprintf(key, sizeof(key), "%" PRId64, kr_migrate_lock_key(schema));
    const char *p[] = {key};
    kr_pg *other = kr_pg_new(fix.conninfo);
    bool free_now = scalar(other, "SELECT pg_try_advisory_lock($1::bigint)::int", 1, p) == 1;
    if (free_now)
        assert_int_equal(scalar(other, "SELECT pg_advisory_unlock($1::bigint)::int", 1, p), 1);
    kr_pg_free(other);
    return free_now;
}

static int migrate(mt *t, const char *schema, kr_migrate_report *rep, char *err, size_t errlen)
{
    return kr_migrate_run(t->pg, schema, t->dir, rep, err, errlen);
}

static void applies_each_file_once_and_new_files_later(void **state)
{
    mt *t = *state;
    const char *first = "-- things a school owns\n"
                        "CREATE TABLE things (id int PRIMARY KEY, label text NOT NULL);\n";
    put(t->dir, "001_create_things.sql", first);
    put(t->dir, "002_seed_things.sql", "INSERT INTO things VALUES (1, 'chalk');\nCREATE INDEX things_label ON things (label);\n");
    put(t->dir, "README.md", "not a migration, ignored\n");

    kr_migrate_report rep;
    char err[512] = "";
    assert_int_equal(migrate(t, "mig_once", &rep, err, sizeof(err)), KR_MIGRATE_OK);
    assert_string_equal(err, "");
    assert_int_equal(rep.applied, 2);
    assert_int_equal(rep.current_version, 2);
    /* Unqualified names in the files landed in the service's schema. */
    assert_true(exists(t->pg, "mig_once.things"));
    assert_false(exists(t->pg, "public.things"));
    assert_int_equal(scalar(t->pg, "SELECT count(*) FROM mig_once.things", 0, NULL), 1);

    /* What was recorded: versions, file names and a SHA-256 of the text. */
    unsigned char d[32];
    unsigned int dn = 0;
    assert_true(EVP_Digest(first, strlen(first), d, &dn, EVP_sha256(), NULL));
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    PGresult *r =
        kr_pg_exec(t->pg, "SELECT version, name, checksum, applied_at IS NOT NULL FROM mig_once.schema_migrations ORDER BY 1", 0,
                   NULL, NULL, 0);
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 2);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    assert_string_equal(PQgetvalue(r, 0, 1), "001_create_things.sql");
    assert_string_equal(PQgetvalue(r, 0, 2), hex);
    assert_string_equal(PQgetvalue(r, 0, 3), "t");
    assert_string_equal(PQgetvalue(r, 1, 1), "002_seed_things.sql");
    PQclear(r);

    /* A second run applies nothing; a plain CREATE TABLE run twice would
     * have failed. */
    assert_int_equal(migrate(t, "mig_once", &rep, err, sizeof(err)), KR_MIGRATE_OK);
    assert_int_equal(rep.applied, 0);
    assert_int_equal(rep.current_version, 2);
    assert_int_equal(scalar(t->pg, "SELECT count(*) FROM mig_once.things", 0, NULL), 1);

    put(t->dir, "010_more_things.sql", "CREATE TABLE more_things (id int);");
    assert_int_equal(migrate(t, "mig_once", &rep, err, sizeof(err)), KR_MIGRATE_OK);
    assert_int_equal(rep.applied, 1);
    assert_int_equal(rep.current_version, 10);
    assert_true(exists(t->pg, "mig_once.more_things"));
    assert_int_equal(recorded(t->pg, "mig_once"), 3);
    assert_true(lock_is_free("mig_once"));
}

static void empty_directory_creates_bookkeeping_only(void **state)
{
    mt *t = *state;
    kr_migrate_report rep = {.applied = -1, .current_version = -1};
    assert_int_equal(migrate(t, "mig_empty", &rep, NULL, 0), KR_MIGRATE_OK);
    assert_int_equal(rep.applied, 0);
    assert_int_equal(rep.current_version, 0);
    assert_true(exists(t->pg, "mig_empty.schema_migrations"));
}

static void changed_file_is_refused(void **state)
{
    mt *t = *state;
    put(t->dir, "001_init.sql", "CREATE TABLE a (id int);");
    kr_migrate_report rep;
    char err[512] = "";
    assert_int_equal(migrate(t, "mig_changed", &rep, err, sizeof(err)), KR_MIGRATE_OK);

    put(t->dir, "001_init.sql", "CREATE TABLE a (id bigint);");
    put(t->dir, "002_next.sql", "CREATE TABLE b (id int);");
    assert_int_equal(migrate(t, "mig_changed", &rep, err, sizeof(err)), KR_MIGRATE_EMISMATCH);
    assert_non_null(strstr(err, "001_init.sql"));
    assert_non_null(strstr(err, "changed"));
    /* Refusing means refusing everything, not just the changed file. */
    assert_false(exists(t->pg, "mig_changed.b"));
    assert_int_equal(rep.applied, 0);
    assert_true(lock_is_free("mig_changed"));

    put(t->dir, "001_init.sql", "CREATE TABLE a (id int);");
    assert_int_equal(migrate(t, "mig_changed", &rep, err, sizeof(err)), KR_MIGRATE_OK);
    assert_int_equal(rep.applied, 1);
}

static void missing_renamed_or_late_files_are_refused(void **state)
{
    mt *t = *state;
    put(t->dir, "001_init.sql", "CREATE TABLE a (id int);");
    put(t->dir, "003_third.sql", "CREATE TABLE c (id int);");
    char err[512] = "";
    kr_migrate_report rep;
    assert_int_equal(migrate(t, "mig_missing", &rep, err, sizeof(err)), KR_MIGRATE_OK);

    /* A file numbered below the applied version was never applied. */
    put(t->dir, "002_late.sql", "CREATE TABLE b (id int);");
    assert_int_equal(migrate(t, "mig_missing", &rep, err, sizeof(err)), KR_MIGRATE_EMISMATCH);
    assert_non_null(strstr(err, "002_late.sql"));
    assert_false(exists(t->pg, "mig_missing.b"));
    rm(t->dir, "002_late.sql");

    rm(t->dir, "001_init.sql");
    assert_int_equal(migrate(t, "mig_missing", &rep, err, sizeof(err)), KR_MIGRATE_EMISMATCH);
    assert_non_null(strstr(err, "001_init.sql"));
    assert_non_null(strstr(err, "missing"));

    put(t->dir, "001_renamed.sql", "CREATE TABLE a (id int);");
    assert_int_equal(migrate(t, "mig_missing", &rep, err, sizeof(err)), KR_MIGRATE_EMISMATCH);
    assert_non_null(strstr(err, "001_init.sql"));
    assert_non_null(strstr(err, "001_renamed.sql"));
}

static void failing_migration_is_rolled_back_and_named(void **state)
{
    mt *t = *state;
    put(t->dir, "001_good.sql", "CREATE TABLE good (id int);");
    put(t->dir, "002_broken.sql",
        "CREATE TABLE half_done (id int);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "SELECT 1 / 0;\n");
    put(t->dir, "003_after.sql", "CREATE TABLE after_broken (id int);");
    kr_migrate_report rep;
    char err[512] = "";
    assert_int_equal(migrate(t, "mig_broken", &rep, err, sizeof(err)), KR_MIGRATE_EFAILED);
    assert_non_null(strstr(err, "002_broken.sql"));
    assert_non_null(strstr(err, "division by zero"));
    assert_non_null(strstr(err, "22012"));
    assert_int_equal(rep.applied, 1);
    assert_int_equal(rep.current_version, 1);

    assert_true(exists(t->pg, "mig_broken.good"));
    assert_false(exists(t->pg, "mig_broken.half_done"));
    assert_false(exists(t->pg, "mig_broken.after_broken"));
    assert_int_equal(recorded(t->pg, "mig_broken"), 1);
    assert_true(lock_is_free("mig_broken"));
    /* The connection is usable and outside any transaction afterwards. */
    assert_int_equal(kr_pg_begin(t->pg), KR_PG_OK);
    assert_int_equal(kr_pg_rollback(t->pg), KR_PG_OK);

    put(t->dir, "002_broken.sql", "CREATE TABLE half_done (id int);\n");
    assert_int_equal(migrate(t, "mig_broken", &rep, err, sizeof(err)), KR_MIGRATE_OK);
    assert_int_equal(rep.applied, 2);
    assert_int_equal(rep.current_version, 3);
}

static void syntax_error_names_file_and_line(void **state)
{
    mt *t = *state;
    put(t->dir, "001_typo.sql", "CREATE TABLE fine (id int);\n\nCREATE TABEL oops (id int);\n");
    char err[512] = "";
    kr_migrate_report rep;
    assert_int_equal(migrate(t, "mig_typo", &rep, err, sizeof(err)), KR_MIGRATE_EFAILED);
    if (!strstr(err, "001_typo.sql") || !strstr(err, "line 3") || !strstr(err, "syntax error"))
        fail_msg("unhelpful error: %s", err);
    assert_false(exists(t->pg, "mig_typo.fine"));
    assert_int_equal(rep.current_version, 0);
}

static void migration_that_commits_itself_is_refused(void **state)
{
    mt *t = *state;
    put(t->dir, "001_sneaky.sql", "CREATE TABLE sneaky (id int); COMMIT;");
    char err[512] = "";
    kr_migrate_report rep;
    assert_int_equal(migrate(t, "mig_commit", &rep, err, sizeof(err)), KR_MIGRATE_EFAILED);
    assert_non_null(strstr(err, "001_sneaky.sql"));
    assert_int_equal(recorded(t->pg, "mig_commit"), 0);
    assert_true(lock_is_free("mig_commit"));
}

static void copy_from_stdin_fails_cleanly(void **state)
{
    mt *t = *state;
    put(t->dir, "001_copy.sql", "CREATE TABLE copied (id int);\nCOPY copied FROM STDIN;\n");
    char err[512] = "";
    kr_migrate_report rep;
    assert_int_equal(migrate(t, "mig_copy", &rep, err, sizeof(err)), KR_MIGRATE_EFAILED);
    assert_non_null(strstr(err, "001_copy.sql"));
    assert_false(exists(t->pg, "mig_copy.copied"));
    assert_true(kr_pg_ping(t->pg));
}

typedef struct {
    const char *dir;
    int rc;
    kr_migrate_report rep;
    char err[512];
} runner;

static void *run_in_thread(void *arg)
{
    runner *r = arg;
    kr_pg *pg = kr_pg_new(fix.conninfo);
    r->rc = kr_migrate_run(pg, "mig_race", r->dir, &r->rep, r->err, sizeof(r->err));
    kr_pg_free(pg);
    return NULL;
}

static long waiting_advisory_locks(kr_pg *pg)
{
    return scalar(pg,
                  "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                  "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                  0, NULL);
}

static void concurrent_runners_apply_each_file_once(void **state)
{
    mt *t = *state;
    /* Plain CREATE TABLE and a unique insert: applying any file twice fails. */
    put(t->dir, "001_a.sql", "CREATE TABLE a (id int PRIMARY KEY);");
    put(t->dir, "002_b.sql", "CREATE TABLE b (id int); INSERT INTO a VALUES (1);");
    put(t->dir, "003_c.sql", "CREATE TABLE c (id int);");

    /* Hold the lock so both runners are provably waiting at the same time
     * before either may start. */
    char key[24];
    snprintf(key, sizeof(key), "%" PRId64, kr_migrate_lock_key("mig_race"));
    const char *p[] = {key};
    scalar(t->pg, "SELECT pg_advisory_lock($1::bigint)", 1, p);

    runner r[2] = {{.dir = t->dir}, {.dir = t->dir}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, run_in_thread, &r[i]), 0);

    double deadline = pgfix_now() + 30;
    while (waiting_advisory_locks(t->pg) < 2) {
        if (pgfix_now() > deadline)
            fail_msg("the two runners never both waited for the migration lock");
        pgfix_pause();
    }
    assert_int_equal(scalar(t->pg, "SELECT pg_advisory_unlock($1::bigint)::int", 1, p), 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    for (int i = 0; i < 2; i++) {
        if (r[i].rc != KR_MIGRATE_OK)
            fail_msg("runner %d: %s", i, r[i].err);
        assert_int_equal(r[i].rep.current_version, 3);
    }
    assert_int_equal(r[0].rep.applied + r[1].rep.applied, 3);
    assert_true(r[0].rep.applied == 0 || r[1].rep.applied == 0);
    assert_int_equal(recorded(t->pg, "mig_race"), 3);
    assert_int_equal(scalar(t->pg, "SELECT count(*) FROM mig_race.a", 0, NULL), 1);
    assert_true(lock_is_free("mig_race"));
}

static void bad_schema_names_are_refused(void **state)
{
    mt *t = *state;
    put(t->dir, "001_a.sql", "CREATE TABLE a (id int);");
    const char *bad[] = {
        "",
        "Identity",
        "1identity",
        "iden-tity",
        "identity;drop",
        "ident\"ity",
        "pg_identity",
        "id\xc3\xa9ntity",
        "a234567890123456789012345678901234567890123456789012345678901234", /* 64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512] = "";
        kr_migrate_report rep = {.applied = -1};
        assert_int_equal(migrate(t, bad[i], &rep, err, sizeof(err)), KR_MIGRATE_EINVAL);
        assert_non_null(strstr(err, "schema"));
        assert_int_equal(rep.applied, 0);
    }
    assert_int_equal(migrate(t, NULL, NULL, NULL, 0), KR_MIGRATE_EINVAL);
    assert_int_equal(scalar(t->pg, "SELECT count(*) FROM pg_namespace WHERE nspname ILIKE '%identity%'", 0, NULL), 0);
    /* 63 characters is PostgreSQL's limit and fine. */
    char err[512] = "";
    assert_int_equal(migrate(t, "_23456789012345678901234567890123456789012345678901234567890123", NULL, err, sizeof(err)),
                     KR_MIGRATE_OK);
}

static void bad_file_names_are_refused(void **state)
{
    mt *t = *state;
    const char *bad[] = {
        "01_short.sql",  "001-dash.sql",  "001_Upper.sql",        "001_.sql",      "abc_letters.sql",
        "001_x.SQL",     "001_x.sql.sql", "000_zero.sql",         "001 space.sql", ".001_hidden.sql",
        "001_dot.x.sql", "001_x-y.sql",   "99999999999_huge.sql",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put(t->dir, "001_fine.sql", "CREATE TABLE fine (id int);");
        put(t->dir, bad[i], "SELECT 1;");
        char err[512] = "";
        assert_int_equal(migrate(t, "mig_names", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
        if (!strstr(err, bad[i]))
            fail_msg("error for %s does not name it: %s", bad[i], err);
        rm(t->dir, bad[i]);
    }
    /* Nothing was touched by the refused runs. */
    assert_false(exists(t->pg, "mig_names.schema_migrations"));
}

static void duplicate_versions_and_odd_files_are_refused(void **state)
{
    mt *t = *state;
    char err[512] = "";
    put(t->dir, "001_a.sql", "SELECT 1;");
    put(t->dir, "001_b.sql", "SELECT 2;");
    assert_int_equal(migrate(t, "mig_dup", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
    assert_non_null(strstr(err, "001_a.sql"));
    assert_non_null(strstr(err, "001_b.sql"));
    rm(t->dir, "001_b.sql");

    put(t->dir, "0001_b.sql", "SELECT 2;");
    assert_int_equal(migrate(t, "mig_dup", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
    assert_non_null(strstr(err, "0001_b.sql"));
    rm(t->dir, "0001_b.sql");

    char sub[512];
    snprintf(sub, sizeof(sub), "%s/002_directory.sql", t->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(migrate(t, "mig_dup", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
    assert_non_null(strstr(err, "002_directory.sql"));
    assert_int_equal(rmdir(sub), 0);

    char path[512];
    snprintf(path, sizeof(path), "%s/002_nul.sql", t->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite("SELECT 1;\0DROP TABLE x;", 1, 23, f), 23);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(migrate(t, "mig_dup", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
    assert_non_null(strstr(err, "002_nul.sql"));
    rm(t->dir, "002_nul.sql");

    assert_int_equal(kr_migrate_run(t->pg, "mig_dup", "/nonexistent-kreide-migrations", NULL, err, sizeof(err)), KR_MIGRATE_EDIR);
    assert_non_null(strstr(err, "/nonexistent-kreide-migrations"));

    assert_int_equal(migrate(t, "mig_dup", NULL, err, sizeof(err)), KR_MIGRATE_OK);
}

static void refuses_to_run_inside_a_transaction(void **state)
{
    mt *t = *state;
    assert_int_equal(kr_pg_begin(t->pg), KR_PG_OK);
    char err[512] = "";
    assert_int_equal(migrate(t, "mig_intx", NULL, err, sizeof(err)), KR_MIGRATE_EINVAL);
    assert_non_null(strstr(err, "transaction"));
    assert_int_equal(kr_pg_rollback(t->pg), KR_PG_OK);
}

static void unreachable_database_is_reported(void **state)
{
    mt *t = *state;
    put(t->dir, "001_a.sql", "SELECT 1;");
    kr_pg *pg = kr_pg_new("host=/nonexistent-kreide-socket-dir connect_timeout=2");
    char err[512] = "";
    assert_int_equal(kr_migrate_run(pg, "mig_down", t->dir, NULL, err, sizeof(err)), KR_MIGRATE_EDB);
    assert_true(err[0] != '\0');
    kr_pg_free(pg);
}

static void lock_key_depends_only_on_schema(void **state)
{
    const char *in = "kreide.migrate:identity";
    unsigned char d[32];
    unsigned int n = 0;
    assert_true(EVP_Digest(in, strlen(in), d, &n, EVP_sha256(), NULL));
    uint64_t want = 0;
    for (int i = 0; i < 8; i++)
        want = (want << 8) | d[i];
    assert_true(kr_migrate_lock_key("identity") == (int64_t)want);
    assert_true(kr_migrate_lock_key("identity") != kr_migrate_lock_key("messaging"));
    for (int e = KR_MIGRATE_OK; e <= KR_MIGRATE_EFAILED; e++)
        assert_string_not_equal(kr_migrate_strerror((kr_migrate_error)e), "unknown kr_migrate error");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(applies_each_file_once_and_new_files_later),
        T(empty_directory_creates_bookkeeping_only),
        T(changed_file_is_refused),
        T(missing_renamed_or_late_files_are_refused),
        T(failing_migration_is_rolled_back_and_named),
        T(syntax_error_names_file_and_line),
        T(migration_that_commits_itself_is_refused),
        T(copy_from_stdin_fails_cleanly),
        T(concurrent_runners_apply_each_file_once),
        T(bad_schema_names_are_refused),
        T(bad_file_names_are_refused),
        T(duplicate_versions_and_odd_files_are_refused),
        T(refuses_to_run_inside_a_transaction),
        T(unreachable_database_is_reported),
        cmocka_unit_test(lock_key_depends_only_on_schema),
    };
#undef T
    return cmocka_run_group_tests(tests, setup_server, teardown_server);
}
