/*
 * kr_arena — a bump allocator for request scratch memory.
 *
 * Everything a request allocates (its decoded input, its output message and
 * the strings in it) comes from one arena and is released at once when the
 * request is done, so handlers never free piecemeal. Allocation aborts on
 * out-of-memory. An arena is used by one thread at a time.
 */
#ifndef KR_ARENA_H
#define KR_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stddef.h>

typedef struct st_kr_arena_chunk_t kr_arena_chunk;

/* An arena. Zero-initialise it or call kr_arena_init(); members are private. */
typedef struct st_kr_arena_t {
    kr_arena_chunk *_head;
    size_t _used;  /* bytes used in the head chunk */
    size_t _total; /* bytes handed out since the last reset */
} kr_arena;

/* Prepares an empty arena (equivalent to zero-initialising it). */
void kr_arena_init(kr_arena *a);

/* Returns `size` bytes aligned for any type, zero-filled. Never NULL. */
void *kr_arena_alloc(kr_arena *a, size_t size);

/* Copies a NUL-terminated string (NULL gives ""). */
char *kr_arena_strdup(kr_arena *a, const char *s);

/* Copies `len` bytes and appends a NUL. */
char *kr_arena_strndup(kr_arena *a, const char *s, size_t len);

/* printf into the arena. */
char *kr_arena_printf(kr_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Releases everything but keeps the first chunk for reuse. */
void kr_arena_reset(kr_arena *a);

/* Releases everything. The arena may be used again afterwards. */
void kr_arena_free(kr_arena *a);

/* Bytes handed out since the last reset (for limits and tests). */
size_t kr_arena_used(const kr_arena *a);

/* A protobuf-c allocator drawing from `a`: messages unpacked with it are
 * released with the arena and must not be passed to free_unpacked. */
ProtobufCAllocator kr_arena_allocator(kr_arena *a);

#endif
