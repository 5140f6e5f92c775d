/* u64map.h -- an open-addressing hash map from 64-bit keys to non-negative int32 values (header-only, internal):
** the token tries of the LM cache and the n-gram model are maps (parent node, token) -> child node.
** Memory is malloc'd; plm_u64map_free releases it. Lookups of absent keys return -1. */
#ifndef PLM_U64MAP_H
#define PLM_U64MAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct plm_u64map {
    uint64_t *keys;
    int32_t *vals;   /* -1 marks an empty slot */
    size_t cap, n;   /* cap is a power of two */
} plm_u64map;

static inline uint64_t plm_u64map_hash(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline void plm_u64map_free(plm_u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Returns 0 on success, -1 when out of memory (m is then unchanged). */
static inline int plm_u64map_init(plm_u64map *m, size_t cap)
{
    size_t c = 16;
    while (c < 2 * cap) c <<= 1;
    m->keys = malloc(c * sizeof *m->keys);
    m->vals = malloc(c * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        return -1;
    }
    memset(m->vals, 0xff, c * sizeof *m->vals);
    m->cap = c;
    m->n = 0;
    return 0;
}

static inline void plm_u64map_clear(plm_u64map *m)
{
    if (m->vals) memset(m->vals, 0xff, m->cap * sizeof *m->vals);
    m->n = 0;
}

static inline int32_t plm_u64map_get(const plm_u64map *m, uint64_t key)
{
    size_t i, mask = m->cap - 1;
    if (!m->cap) return -1;
    for (i = plm_u64map_hash(key) & mask; m->vals[i] >= 0; i = (i + 1) & mask)
        if (m->keys[i] == key) return m->vals[i];
    return -1;
}

/* Insert or overwrite; returns 0, or -1 when out of memory. */
static inline int plm_u64map_put(plm_u64map *m, uint64_t key, int32_t val)
{
    size_t i, mask;
    if (!m->cap && plm_u64map_init(m, 16)) return -1;
    if (2 * (m->n + 1) > m->cap) {   /* grow at half load so probe runs stay short */
        plm_u64map big;
        size_t j;
        if (plm_u64map_init(&big, m->cap)) return -1;
        for (j = 0; j < m->cap; j++)
            if (m->vals[j] >= 0) plm_u64map_put(&big, m->keys[j], m->vals[j]);
        plm_u64map_free(m);
        *m = big;
    }
    mask = m->cap - 1;
    for (i = plm_u64map_hash(key) & mask; m->vals[i] >= 0; i = (i + 1) & mask)
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

#endif
