#include "kr_arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KR_ARENA_CHUNK 8192
#define KR_ARENA_ALIGN 16

struct st_kr_arena_chunk_t {
    kr_arena_chunk *next;
    size_t size;
    _Alignas(KR_ARENA_ALIGN) unsigned char data[];
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fputs("kr_arena: out of memory\n", stderr);
        abort();
    }
    return p;
}

void kr_arena_init(kr_arena *a)
{
    memset(a, 0, sizeof(*a));
}

void *kr_arena_alloc(kr_arena *a, size_t size)
{
    size_t need = (size + (KR_ARENA_ALIGN - 1)) & ~(size_t)(KR_ARENA_ALIGN - 1);
    if (need < size)
        abort();
    if (a->_head == NULL || a->_head->size - a->_used < need) {
        /* Large requests get a chunk of their own, pushed behind the head so
         * the head's free space stays usable. */
        size_t csize = need > KR_ARENA_CHUNK / 4 ? need : KR_ARENA_CHUNK;
        kr_arena_chunk *c = xmalloc(sizeof(*c) + csize);
        c->size = csize;
        if (a->_head != NULL && csize == need) {
            c->next = a->_head->next;
            a->_head->next = c;
            a->_total += size;
            memset(c->data, 0, need);
            return c->data;
        }
        c->next = a->_head;
        a->_head = c;
        a->_used = 0;
    }
    void *p = a->_head->data + a->_used;
    a->_used += need;
    a->_total += size;
    memset(p, 0, need);
    return p;
}

char *kr_arena_strndup(kr_arena *a, const char *s, size_t len)
{
    char *p = kr_arena_alloc(a, len + 1);
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *kr_arena_strdup(kr_arena *a, const char *s)
{
    if (s == NULL)
        s = "";
    return kr_arena_strndup(a, s, strlen(s));
}

char *kr_arena_printf(kr_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return kr_arena_strdup(a, "");
    char *p = kr_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void kr_arena_reset(kr_arena *a)
{
    if (a->_head == NULL)
        return;
    /* Keep one standard-size chunk: the common case is many small requests. */
    kr_arena_chunk *keep = NULL, *c = a->_head;
    while (c != NULL) {
        kr_arena_chunk *next = c->next;
        if (keep == NULL && c->size == KR_ARENA_CHUNK) {
            keep = c;
            keep->next = NULL;
        } else {
            free(c);
        }
        c = next;
    }
    a->_head = keep;
    a->_used = 0;
    a->_total = 0;
}

void kr_arena_free(kr_arena *a)
{
    kr_arena_chunk *c = a->_head;
    while (c != NULL) {
        kr_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    kr_arena_init(a);
}

size_t kr_arena_used(const kr_arena *a)
{
    return a->_total;
}

static void *arena_pb_alloc(void *data, size_t size)
{
    return kr_arena_alloc(data, size);
}

static void arena_pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

ProtobufCAllocator kr_arena_allocator(kr_arena *a)
{
    ProtobufCAllocator al = {.alloc = arena_pb_alloc, .free = arena_pb_free, .allocator_data = a};
    return al;
}
