/*
 * kr_migrate — brings a service's PostgreSQL schema up to date from its
 * numbered migration files (services/<name>/migrations/NNN_name.sql).
 *
 * Rules (docs/migrations.md explains them):
 *  - A migration file is named NNN_name.sql: at least three digits (the
 *    version, 1 or more, each used once), an underscore, then [a-z0-9_].
 *    Any other *.sql name in the directory is an error; other files are
 *    ignored.
 *  - Files are applied in version order, each in its own transaction with
 *    search_path set to the service's schema, and recorded in
 *    <schema>.schema_migrations with a SHA-256 of the file.
 *  - An applied file is immutable: if it changed, was renamed or removed, the
 *    run is refused. So is a new file numbered below an applied version.
 *  - Runs are serialised by a session advisory lock derived from the schema
 *    name, so replicas starting together apply each file once.
 */
#ifndef KR_MIGRATE_H
#define KR_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "kr_pg.h"

/* Error codes of this module; 0 means success. */
typedef enum {
    KR_MIGRATE_OK = 0,
    /* Bad argument, e.g. a schema name outside [a-z_][a-z0-9_]*. */
    KR_MIGRATE_EINVAL,
    /* The directory cannot be read, or holds a bad or duplicate file name,
     * or a file that is too large or not text. */
    KR_MIGRATE_EDIR,
    /* The database failed outside a migration file: connecting, locking,
     * reading or writing schema_migrations, or the connection was lost. */
    KR_MIGRATE_EDB,
    /* The directory disagrees with what was applied: a changed, renamed or
     * missing file, or a new file numbered below an applied version. */
    KR_MIGRATE_EMISMATCH,
    /* A migration file failed; its transaction was rolled back. */
    KR_MIGRATE_EFAILED,
} kr_migrate_error;

/* What a run did. Filled on success and on failure. */
typedef struct {
    /* Files applied by this run. */
    int applied;
    /* Highest applied version afterwards, 0 when none. */
    int current_version;
} kr_migrate_report;

/* A short English description of `e`; never NULL, static storage. */
const char *kr_migrate_strerror(kr_migrate_error e);

/* Applies the migrations in `dir` to `schema` through `pg`.
 *
 * Creates the schema and <schema>.schema_migrations when missing, then, under
 * the advisory lock, checks every applied version against its file and
 * applies the missing ones in order, each in its own transaction. Stops at
 * the first failing file: that file leaves nothing behind, earlier ones stay
 * applied. The lock is released before returning, also on failure.
 *
 * `pg` must not be inside a transaction; `report` and `err` may be NULL. On
 * failure returns a kr_migrate_error and writes a message naming the file and
 * PostgreSQL's reason to `err`. */
__attribute__((warn_unused_result)) int kr_migrate_run(kr_pg *pg, const char *schema, const char *dir, kr_migrate_report *report,
                                                       char *err, size_t errlen);

/* The pg_advisory_lock key kr_migrate_run holds for `schema`: the first 8
 * bytes of SHA-256("kreide.migrate:" schema), big-endian. Stable across
 * versions and replicas; useful to see in pg_locks who is migrating. */
int64_t kr_migrate_lock_key(const char *schema);

#endif
