/* strmap.c - FNV-1a hashed, linearly probed string -> int map. */
#include "src/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

int otl_strmap_init(otl_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 1)
        cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->n = 0;
    if (!m->keys || !m->vals) {
        otl_strmap_free(m);
        return 0;
    }
    return 1;
}

void otl_strmap_free(otl_strmap *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}

static size_t slot(const otl_strmap *m, const char *key)
{
    size_t i = (size_t)hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int otl_strmap_put(otl_strmap *m, const char *key, int val)
{
    if ((m->n + 1) * 2 > m->cap) {
        otl_strmap big;
        if (!otl_strmap_init(&big, m->cap))
            return 0;
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = slot(&big, m->keys[i]);
                big.keys[j] = m->keys[i];
                big.vals[j] = m->vals[i];
                big.n++;
            }
        otl_strmap_free(m);
        *m = big;
    }
    size_t i = slot(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
    return 1;
}

int otl_strmap_get(const otl_strmap *m, const char *key, int dflt)
{
    if (!m->cap)
        return dflt;
    size_t i = slot(m, key);
    return m->keys[i] ? m->vals[i] : dflt;
}

int otl_strmap_has(const otl_strmap *m, const char *key)
{
    return m->cap && m->keys[slot(m, key)] != NULL;
}
