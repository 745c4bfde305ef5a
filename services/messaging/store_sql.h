/*
 * store_sql — what the store_*.c files share and nothing else includes.
 */
#ifndef MSG_STORE_SQL_H
#define MSG_STORE_SQL_H

#include "kr_arena.h"

/* A timestamp column as RFC 3339 UTC with milliseconds ("" when NULL). */
#define TS(col) "coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), '')"

/* A PostgreSQL array literal of quoted, escaped text elements, from `arena`. */
char *msg_pg_array(kr_arena *arena, const char *const *items, size_t n);

/* `s` as a JSON string literal (quoted and escaped), from `arena`. */
char *msg_json_string(kr_arena *arena, const char *s);

#endif
