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

/* MT19937 (Matsumoto and Nishimura's reference, init_genrand), and the double
 * NumPy's legacy RandomState.random_sample makes of two draws: 53 random bits
 * (27 of the first, 26 of the second) over 2^53. */
enum { MT_M = 397 };

void mt_seed(Mt19937 *mt, uint32_t seed)
{
    mt->s[0] = seed;
    for (int i = 1; i < MT_N; i++)
        mt->s[i] = 1812433253u * (mt->s[i - 1] ^ (mt->s[i - 1] >> 30)) + (uint32_t)i;
    mt->i = MT_N;
}

/* the next 624 words of state at once, as the reference does */
static void mt_twist(Mt19937 *mt)
{
    for (int k = 0; k < MT_N; k++) {
        uint32_t y = (mt->s[k] & 0x80000000u) | (mt->s[(k + 1) % MT_N] & 0x7fffffffu);
        mt->s[k] = mt->s[(k + MT_M) % MT_N] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
    }
    mt->i = 0;
}

uint32_t mt_next(Mt19937 *mt)
{
    if (mt->i >= MT_N)
        mt_twist(mt);
    uint32_t y = mt->s[mt->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

double mt_double(Mt19937 *mt)
{
    uint32_t a = mt_next(mt) >> 5, b = mt_next(mt) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}
