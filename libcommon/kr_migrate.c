#include "kr_migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* Bounds on what a migration directory may hold; real ones are far below. */
#define MIG_MAX_FILES 10000
#define MIG_MAX_FILE_BYTES (16u * 1024 * 1024)
/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes. */
#define MIG_MAX_SCHEMA 63

typedef struct {
    int version;
    bool applied;
    char name[NAME_MAX + 1];
    char *sql;
    char checksum[65];
} mig_file;

typedef struct {
    mig_file *v;
    size_t n, cap;
} mig_list;

typedef struct {
    kr_pg *pg;
    const char *schema;
    const char *dir;
    char qschema[MIG_MAX_SCHEMA + 3]; /* the schema as a quoted identifier */
    char key[24];                     /* the advisory lock key as text */
    uint64_t generation;              /* the connection that holds the lock */
    char *err;
    size_t errlen;
    kr_migrate_report rep;
} mig_ctx;

const char *kr_migrate_strerror(kr_migrate_error e)
{
    switch (e) {
    case KR_MIGRATE_OK:
        return "success";
    case KR_MIGRATE_EINVAL:
        return "invalid argument";
    case KR_MIGRATE_EDIR:
        return "bad migration directory";
    case KR_MIGRATE_EDB:
        return "database error while migrating";
    case KR_MIGRATE_EMISMATCH:
        return "migration files do not match the applied migrations";
    case KR_MIGRATE_EFAILED:
        return "a migration failed and was rolled back";
    }
    return "unknown kr_migrate error";
}

__attribute__((format(printf, 3, 4))) static int say(mig_ctx *m, int rc, const char *fmt, ...)
{
    if (m->err && m->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->err, m->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != 32)
        abort(); /* only fails when OpenSSL cannot allocate */
}

int64_t kr_migrate_lock_key(const char *schema)
{
    static const char prefix[] = "kreide.migrate:";
    char buf[sizeof(prefix) + MIG_MAX_SCHEMA + 1];
    int n = snprintf(buf, sizeof(buf), "%s%s", prefix, schema ? schema : "");
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1;
    unsigned char d[32];
    sha256(buf, (size_t)n, d);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = (k << 8) | d[i];
    return (int64_t)k;
}

static bool valid_schema(const char *s)
{
    if (!s || !*s || strlen(s) > MIG_MAX_SCHEMA)
        return false;
    if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    /* PostgreSQL reserves the pg_ prefix for system schemas. */
    return strncmp(s, "pg_", 3) != 0;
}

static bool ends_with_sql(const char *name)
{
    size_t n = strlen(name);
    return n >= 4 && strcasecmp(name + n - 4, ".sql") == 0;
}

/* Checks NNN_name.sql (^[0-9]{3,}_[a-z0-9_]+\.sql$) and parses the version;
 * -1 for a bad name, -2 for a version beyond int. */
static int parse_file_name(const char *name)
{
    const char *p = name;
    long long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return -2;
        p++;
    }
    if (p - name < 3 || *p != '_')
        return -1;
    const char *label = ++p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
        p++;
    if (p == label || strcmp(p, ".sql") != 0)
        return -1;
    return (int)v;
}

static void list_free(mig_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].sql);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int by_version(const void *a, const void *b)
{
    const mig_file *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Reads one migration file whole; text only, bounded in size. */
static int read_file(mig_ctx *m, int dfd, mig_file *f)
{
    int fd = openat(dfd, f->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return say(m, KR_MIGRATE_EDIR, "cannot open migration %s: %s", f->name, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return say(m, KR_MIGRATE_EDIR, "migration %s is not a regular file", f->name);
    }
    if ((uintmax_t)st.st_size > MIG_MAX_FILE_BYTES) {
        close(fd);
        return say(m, KR_MIGRATE_EDIR, "migration %s is larger than %u bytes", f->name, MIG_MAX_FILE_BYTES);
    }
    size_t size = (size_t)st.st_size;
    f->sql = malloc(size + 1);
    if (!f->sql)
        abort();
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, f->sql + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            return say(m, KR_MIGRATE_EDIR, "cannot read migration %s: %s", f->name, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    f->sql[size] = '\0';
    /* libpq sends the text as a C string: a NUL would silently cut it. */
    if (memchr(f->sql, '\0', size))
        return say(m, KR_MIGRATE_EDIR, "migration %s contains a NUL byte", f->name);

    unsigned char d[32];
    sha256(f->sql, size, d);
    for (int i = 0; i < 32; i++)
        snprintf(f->checksum + 2 * i, 3, "%02x", d[i]);
    return KR_MIGRATE_OK;
}

static int scan_dir(mig_ctx *m, mig_list *l)
{
    DIR *d = opendir(m->dir);
    if (!d)
        return say(m, KR_MIGRATE_EDIR, "cannot open migration directory %s: %s", m->dir, strerror(errno));
    int rc = KR_MIGRATE_OK;
    struct dirent *e;
    while (rc == KR_MIGRATE_OK && (errno = 0, e = readdir(d)) != NULL) {
        if (!ends_with_sql(e->d_name))
            continue;
        int v = parse_file_name(e->d_name);
        if (v == -1) {
            rc = say(m, KR_MIGRATE_EDIR, "bad migration file name %s: must be NNN_name.sql (3 or more digits, then [a-z0-9_])",
                     e->d_name);
            break;
        }
        if (v == -2 || v == 0) {
            rc = say(m, KR_MIGRATE_EDIR, "bad migration file name %s: the version must be between 1 and %d", e->d_name, INT_MAX);
            break;
        }
        if (l->n == MIG_MAX_FILES) {
            rc = say(m, KR_MIGRATE_EDIR, "more than %d migration files in %s", MIG_MAX_FILES, m->dir);
            break;
        }
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 16;
            l->v = realloc(l->v, l->cap * sizeof(*l->v));
            if (!l->v)
                abort();
        }
        mig_file *f = &l->v[l->n++];
        memset(f, 0, sizeof(*f));
        f->version = v;
        snprintf(f->name, sizeof(f->name), "%s", e->d_name);
        rc = read_file(m, dirfd(d), f);
    }
    if (rc == KR_MIGRATE_OK && errno != 0)
        rc = say(m, KR_MIGRATE_EDIR, "cannot list migration directory %s: %s", m->dir, strerror(errno));
    closedir(d);
    if (rc != KR_MIGRATE_OK)
        return rc;

    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), by_version);
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i].version == l->v[i - 1].version)
            return say(m, KR_MIGRATE_EDIR, "migrations %s and %s both have version %d", l->v[i - 1].name, l->v[i].name,
                       l->v[i].version);
    return KR_MIGRATE_OK;
}

/* Runs a bookkeeping statement. Fails if kr_pg had to reconnect: the lock
 * belonged to the old session, so nothing may go on without it. */
static PGresult *db(mig_ctx *m, const char *what, const char *sql, int n, const char *const *params, int *rc)
{
    char msg[512];
    PGresult *r = kr_pg_exec(m->pg, sql, n, params, msg, sizeof(msg));
    if (r && kr_pg_generation(m->pg) == m->generation)
        return r;
    PQclear(r);
    if (r || kr_pg_last_error(m->pg) == KR_PG_ECONNLOST)
        *rc = say(m, KR_MIGRATE_EDB, "connection to PostgreSQL lost while %s; the migration lock went with it, stopping", what);
    else
        *rc = say(m, KR_MIGRATE_EDB, "%s: %s", what, msg);
    return NULL;
}

static bool db_ok(mig_ctx *m, const char *what, const char *sql, int n, const char *const *params, int *rc)
{
    PGresult *r = db(m, what, sql, n, params, rc);
    PQclear(r);
    return r != NULL;
}

/* PostgreSQL reports where an error is as a 1-based character offset into
 * the whole script; a line number is what a person can find. */
static int line_of(const char *sql, const char *pos)
{
    long chars = pos ? strtol(pos, NULL, 10) : 0;
    if (chars <= 0)
        return 0;
    int line = 1;
    for (const unsigned char *p = (const unsigned char *)sql; *p && chars > 1; p++) {
        if ((*p & 0xc0) != 0x80)
            chars--;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* Reads and throws away whatever the script still sends, so the connection is
 * back in a state where ROLLBACK can be sent. */
static void drain(PGconn *c)
{
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st == PGRES_COPY_IN) {
            PQputCopyEnd(c, "COPY FROM STDIN is not supported in migrations");
        } else if (st == PGRES_COPY_OUT) {
            char *buf;
            while (PQgetCopyData(c, &buf, 0) > 0)
                PQfreemem(buf);
        }
    }
}

static int fail_file(mig_ctx *m, const mig_file *f, PGconn *c, PGresult *r)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int line = r ? line_of(f->sql, PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION)) : 0;
    char where[32] = "";
    if (line > 0)
        snprintf(where, sizeof(where), " at line %d", line);
    char reason[400];
    if (primary)
        snprintf(reason, sizeof(reason), "%s%s%s%s [SQLSTATE %s]", primary, detail ? " (" : "", detail ? detail : "",
                 detail ? ")" : "", state ? state : "?");
    else
        snprintf(reason, sizeof(reason), "%s", PQerrorMessage(c));
    for (char *p = reason; *p; p++)
        if (*p == '\n')
            *p = ' ';
    PQclear(r);
    drain(c);
    if (PQstatus(c) != CONNECTION_OK)
        return say(m, KR_MIGRATE_EDB, "connection to PostgreSQL lost while applying %s: %s", f->name, reason);
    return say(m, KR_MIGRATE_EFAILED, "migration %s failed%s and was rolled back: %s", f->name, where, reason);
}

static int apply_one(mig_ctx *m, const mig_file *f)
{
    int rc = KR_MIGRATE_OK;
    if (kr_pg_begin(m->pg) != KR_PG_OK || kr_pg_generation(m->pg) != m->generation)
        return say(m, KR_MIGRATE_EDB, "cannot start the transaction for %s: %s", f->name, kr_pg_errmsg(m->pg));
    char sql[64 + sizeof(m->qschema)];
    snprintf(sql, sizeof(sql), "SET LOCAL search_path TO %s", m->qschema);
    if (!db_ok(m, "setting search_path", sql, 0, NULL, &rc))
        return rc;

    char msg[256];
    PGconn *c = kr_pg_conn(m->pg, msg, sizeof(msg));
    if (!c || kr_pg_generation(m->pg) != m->generation)
        return say(m, KR_MIGRATE_EDB, "connection to PostgreSQL lost before applying %s", f->name);
    /* The simple query protocol runs the whole file, many statements, inside
     * the transaction opened above. The file is trusted code from the
     * service's own tree, never input. */
    PGresult *r = PQexec(c, f->sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        return fail_file(m, f, c, r);
    PQclear(r);
    if (PQtransactionStatus(c) != PQTRANS_INTRANS)
        return say(m, KR_MIGRATE_EFAILED,
                   "migration %s ended the transaction itself (COMMIT or ROLLBACK in the file): it may be partly applied and "
                   "is not recorded; remove the transaction control and repair the schema by hand",
                   f->name);

    char version[16];
    snprintf(version, sizeof(version), "%d", f->version);
    const char *params[] = {version, f->name, f->checksum};
    snprintf(sql, sizeof(sql), "INSERT INTO %s.schema_migrations VALUES ($1::int, $2, $3, now())", m->qschema);
    if (!db_ok(m, "recording the migration", sql, 3, params, &rc))
        return rc;
    if (kr_pg_commit(m->pg) != KR_PG_OK)
        return say(m, KR_MIGRATE_EDB, "committing %s: %s", f->name, kr_pg_errmsg(m->pg));
    return KR_MIGRATE_OK;
}

static mig_file *find_version(mig_list *l, int version)
{
    mig_file key = {.version = version};
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].version < key.version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].version == version ? &l->v[lo] : NULL;
}

/* Compares what schema_migrations records with the files on disk. */
static int check_applied(mig_ctx *m, mig_list *l, PGresult *rows)
{
    for (int i = 0; i < PQntuples(rows); i++) {
        int version = (int)strtol(PQgetvalue(rows, i, 0), NULL, 10);
        const char *name = PQgetvalue(rows, i, 1);
        const char *sum = PQgetvalue(rows, i, 2);
        mig_file *f = find_version(l, version);
        if (!f)
            return say(m, KR_MIGRATE_EMISMATCH,
                       "migration %s (version %d) is recorded as applied in %s.schema_migrations but its file is missing from %s",
                       name, version, m->schema, m->dir);
        if (strcmp(f->name, name) != 0)
            return say(m, KR_MIGRATE_EMISMATCH,
                       "version %d was applied as %s but the file is now named %s; applied migrations must not be renamed", version,
                       name, f->name);
        if (strcmp(f->checksum, sum) != 0)
            return say(m, KR_MIGRATE_EMISMATCH,
                       "migration %s has changed since it was applied (sha256 was %.12s..., is %.12s...); applied migrations are "
                       "immutable: restore the file and put the change in a new migration",
                       f->name, sum, f->checksum);
        f->applied = true;
        if (version > m->rep.current_version)
            m->rep.current_version = version;
    }
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i].applied && l->v[i].version < m->rep.current_version)
            return say(m, KR_MIGRATE_EMISMATCH,
                       "migration %s was never applied but is numbered below the applied version %d; number it above %d",
                       l->v[i].name, m->rep.current_version, m->rep.current_version);
    return KR_MIGRATE_OK;
}

static int run_locked(mig_ctx *m, mig_list *l)
{
    int rc = KR_MIGRATE_OK;
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS %s", m->qschema);
    if (!db_ok(m, "creating the schema", sql, 0, NULL, &rc))
        return rc;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS %s.schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
             "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
             m->qschema);
    if (!db_ok(m, "creating schema_migrations", sql, 0, NULL, &rc))
        return rc;
    snprintf(sql, sizeof(sql), "SELECT version, name, checksum FROM %s.schema_migrations ORDER BY version", m->qschema);
    PGresult *rows = db(m, "reading schema_migrations", sql, 0, NULL, &rc);
    if (!rows)
        return rc;
    rc = check_applied(m, l, rows);
    PQclear(rows);
    if (rc != KR_MIGRATE_OK)
        return rc;

    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].applied)
            continue;
        rc = apply_one(m, &l->v[i]);
        if (rc != KR_MIGRATE_OK)
            return rc;
        m->rep.applied++;
        m->rep.current_version = l->v[i].version;
    }
    return KR_MIGRATE_OK;
}

int kr_migrate_run(kr_pg *pg, const char *schema, const char *dir, kr_migrate_report *report, char *err, size_t errlen)
{
    mig_ctx m = {.pg = pg, .schema = schema, .dir = dir, .err = err, .errlen = errlen};
    if (err && errlen > 0)
        err[0] = '\0';
    if (report)
        *report = m.rep;
    if (!pg || !dir)
        return say(&m, KR_MIGRATE_EINVAL, "kr_migrate_run: no connection or directory given");
    if (!valid_schema(schema))
        return say(&m, KR_MIGRATE_EINVAL, "bad schema name '%.80s': must match [a-z_][a-z0-9_]*, at most %d characters, not pg_*",
                   schema ? schema : "(null)", MIG_MAX_SCHEMA);
    snprintf(m.qschema, sizeof(m.qschema), "\"%s\"", schema);
    snprintf(m.key, sizeof(m.key), "%" PRId64, kr_migrate_lock_key(schema));

    mig_list l = {0};
    int rc = scan_dir(&m, &l);
    if (rc != KR_MIGRATE_OK) {
        list_free(&l);
        return rc;
    }

    char msg[512];
    PGconn *c = kr_pg_conn(pg, msg, sizeof(msg));
    if (!c) {
        list_free(&l);
        return say(&m, KR_MIGRATE_EDB, "cannot connect to PostgreSQL: %s", msg);
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        list_free(&l);
        return say(&m, KR_MIGRATE_EINVAL, "kr_migrate_run: the connection is inside a transaction");
    }

    /* Session-level, not transaction-level: the lock must span the many
     * transactions of one run. pg_advisory_lock waits for a replica that got
     * there first; once it returns, that replica's work is visible. */
    const char *key[] = {m.key};
    PGresult *r = kr_pg_exec(pg, "SELECT pg_advisory_lock($1::bigint)", 1, key, msg, sizeof(msg));
    if (!r) {
        list_free(&l);
        return say(&m, KR_MIGRATE_EDB, "taking the migration lock for schema %s: %s", schema, msg);
    }
    PQclear(r);
    m.generation = kr_pg_generation(pg);

    rc = run_locked(&m, &l);

    kr_pg_rollback(pg);
    if (kr_pg_generation(pg) == m.generation) {
        /* Unlocking only matters while the locking session lives; a lost
         * session released the lock when it ended. */
        char unlock_msg[256];
        r = kr_pg_exec(pg, "SELECT pg_advisory_unlock($1::bigint)", 1, key, unlock_msg, sizeof(unlock_msg));
        if (!r && rc == KR_MIGRATE_OK)
            rc = say(&m, KR_MIGRATE_EDB, "releasing the migration lock for schema %s: %s", schema, unlock_msg);
        PQclear(r);
    }
    list_free(&l);
    if (report)
        *report = m.rep;
    return rc;
}
