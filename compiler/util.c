/* util.c: arena memory, growable vectors, "did you mean", checked sizes, the host's caches. */
#include "cnnc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The arena is a list of large chunks; allocations are bumped from the last. */
typedef struct Chunk { struct Chunk *prev; size_t used, cap; max_align_t data[]; } Chunk;
static Chunk *arena;

void *arena_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!arena || arena->used + n > arena->cap) {
        size_t cap = n > (1 << 20) ? n : (1 << 20);
        Chunk *c = malloc(sizeof(Chunk) + cap);
        if (!c)
            internal_error("out of memory (asked for %zu bytes)", n);
        c->prev = arena, c->used = 0, c->cap = cap;
        arena = c;
    }
    void *p = (char *)arena->data + arena->used;
    arena->used += n;
    return memset(p, 0, n);
}

void arena_release(void)
{
    while (arena) {
        Chunk *prev = arena->prev;
        free(arena);
        arena = prev;
    }
}

char *arena_strndup(const char *s, size_t n)
{
    char *p = arena_alloc(n + 1);
    memcpy(p, s, n);
    return p;
}

char *arena_strdup(const char *s) { return arena_strndup(s, strlen(s)); }

char *arena_printf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = arena_alloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void vec_push(Vec *v, void *p)
{
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 8;
        void **at = arena_alloc(sizeof(void *) * (size_t)cap);
        if (v->n)
            memcpy(at, v->at, sizeof(void *) * (size_t)v->n);
        v->at = at, v->cap = cap;
    }
    v->at[v->n++] = p;
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Open addressing with linear probing; the table is at most half full. */
static int slot(const Map *m, const char *key)
{
    int i = (int)(hash(key) & (uint64_t)(m->cap - 1));
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *map_get(const Map *m, const char *key)
{
    if (!m->cap)
        return NULL;
    return m->vals[slot(m, key)];
}

void map_put(Map *m, const char *key, void *val)
{
    if (2 * (m->n + 1) > m->cap) {
        Map bigger = {arena_alloc(sizeof(char *) * (size_t)(m->cap ? 2 * m->cap : 64)),
                      arena_alloc(sizeof(void *) * (size_t)(m->cap ? 2 * m->cap : 64)), 0,
                      m->cap ? 2 * m->cap : 64};
        for (int i = 0; i < m->cap; i++)
            if (m->keys[i])
                map_put(&bigger, m->keys[i], m->vals[i]);
        *m = bigger;
    }
    int i = slot(m, key);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key, m->vals[i] = val;
}

/* Levenshtein distance, capped: words longer than 64 are never "close". */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 1000;
    int row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *closest_word(const char *word, const char *const *cands)
{
    const char *best = NULL;
    int bestd = (int)strlen(word) / 3 + 1;      /* at most a third wrong */
    if (bestd > 3)
        bestd = 3;
    for (; *cands; cands++) {
        int d = edit_distance(word, *cands);
        if (d <= bestd && (!best || d < edit_distance(word, best)))
            best = *cands;
    }
    return best;
}

bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

int64_t host_l2_bytes(void)
{
    static int64_t bytes;
    if (!bytes) {
        const char *env = getenv("CNNC_L2_BYTES");   /* another machine's, for tests */
        char *end;
        long long e = env && *env ? strtoll(env, &end, 10) : 0;
        long n = sysconf(_SC_LEVEL2_CACHE_SIZE);
        bytes = env && *env && !*end && e > 0 ? e : n > 0 ? n : 1 << 20;
    }
    return bytes;
}
