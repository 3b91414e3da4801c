// kvcache.c — see kvcache.h. Pages are indices 0..n-1 into parallel arrays;
// the free list is a stack, the eviction list a doubly linked list through
// lru_prev/lru_next (head: least recent), and the prefix index a chained
// hash table through hnext (by parent and tokens), plus one through pnext
// by parent alone (partial lookups).
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int refcnt;
    uint64_t node;    // 0: not remembered
    uint64_t parent;  // node id of the page before it (0: first page)
    int32_t tokens[PZ_KV_PAGE];
    int lru_prev, lru_next;  // eviction list (remembered, refcnt 0)
    int in_lru;
    int hnext;        // next page in the same hash bucket
    int pnext;        // next remembered page in the same parent bucket
} kv_page;

struct pz_kvcache {
    int n, prefix_cache;
    kv_page *pg;
    int *free_stack, n_free;
    int lru_head, lru_tail, n_cached;
    int *bucket;      // (n_buckets) first page, or -1
    int *pbucket;     // (n_buckets) by parent alone (pz_kvcache_lookup_partial)
    uint32_t n_buckets;
    uint64_t next_node;
    long long evictions;
};

static uint64_t key_hash(uint64_t parent, const int32_t *t) {
    uint64_t h = parent * 0x9E3779B97F4A7C15ull ^ 0xcbf29ce484222325ull;
    for (int i = 0; i < PZ_KV_PAGE; i++) {
        h ^= (uint32_t)t[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static uint32_t parent_hash(const pz_kvcache *c, uint64_t parent) {
    return (uint32_t)((parent * 0x9E3779B97F4A7C15ull) >> 32) & (c->n_buckets - 1);
}

pz_kvcache *pz_kvcache_create(int n_pages, int prefix_cache) {
    if (n_pages <= 0) return NULL;
    pz_kvcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n = n_pages;
    c->prefix_cache = prefix_cache;
    c->n_buckets = 16;
    while (c->n_buckets < 2u * (uint32_t)n_pages) c->n_buckets <<= 1;
    c->pg = calloc((size_t)n_pages, sizeof *c->pg);
    c->free_stack = malloc(sizeof(int) * (size_t)n_pages);
    c->bucket = malloc(sizeof(int) * c->n_buckets);
    c->pbucket = malloc(sizeof(int) * c->n_buckets);
    if (!c->pg || !c->free_stack || !c->bucket || !c->pbucket) {
        pz_kvcache_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < c->n_buckets; i++) c->bucket[i] = c->pbucket[i] = -1;
    // Pages are handed out in increasing order from a fresh pool.
    for (int i = 0; i < n_pages; i++) c->free_stack[i] = n_pages - 1 - i;
    c->n_free = n_pages;
    c->lru_head = c->lru_tail = -1;
    c->next_node = 1;
    return c;
}

void pz_kvcache_free(pz_kvcache *c) {
    if (!c) return;
    free(c->pg);
    free(c->free_stack);
    free(c->bucket);
    free(c->pbucket);
    free(c);
}

static void lru_remove(pz_kvcache *c, int p) {
    kv_page *g = &c->pg[p];
    if (!g->in_lru) return;
    if (g->lru_prev >= 0) c->pg[g->lru_prev].lru_next = g->lru_next;
    else c->lru_head = g->lru_next;
    if (g->lru_next >= 0) c->pg[g->lru_next].lru_prev = g->lru_prev;
    else c->lru_tail = g->lru_prev;
    g->in_lru = 0;
    c->n_cached--;
}

static void lru_push_tail(pz_kvcache *c, int p) {
    kv_page *g = &c->pg[p];
    g->lru_prev = c->lru_tail;
    g->lru_next = -1;
    if (c->lru_tail >= 0) c->pg[c->lru_tail].lru_next = p;
    else c->lru_head = p;
    c->lru_tail = p;
    g->in_lru = 1;
    c->n_cached++;
}

static void unindex(pz_kvcache *c, int p) {
    kv_page *g = &c->pg[p];
    if (!g->node) return;
    int *link = &c->bucket[key_hash(g->parent, g->tokens) & (c->n_buckets - 1)];
    while (*link >= 0 && *link != p) link = &c->pg[*link].hnext;
    if (*link == p) *link = g->hnext;
    link = &c->pbucket[parent_hash(c, g->parent)];
    while (*link >= 0 && *link != p) link = &c->pg[*link].pnext;
    if (*link == p) *link = g->pnext;
    g->node = 0;
}

int pz_kvcache_alloc(pz_kvcache *c) {
    int p;
    if (c->n_free > 0) {
        p = c->free_stack[--c->n_free];
    } else if (c->lru_head >= 0) {
        p = c->lru_head;
        lru_remove(c, p);
        unindex(c, p);
        c->evictions++;
    } else {
        return -1;
    }
    c->pg[p].refcnt = 1;
    return p;
}

void pz_kvcache_ref(pz_kvcache *c, int p) {
    if (c->pg[p].refcnt++ == 0) lru_remove(c, p);
}

void pz_kvcache_unref(pz_kvcache *c, int p) {
    kv_page *g = &c->pg[p];
    if (g->refcnt <= 0 || --g->refcnt > 0) return;
    if (g->node) lru_push_tail(c, p);
    else c->free_stack[c->n_free++] = p;
}

int pz_kvcache_lookup(pz_kvcache *c, uint64_t parent, const int32_t *tokens, uint64_t *node) {
    if (!c->prefix_cache) return -1;
    for (int p = c->bucket[key_hash(parent, tokens) & (c->n_buckets - 1)]; p >= 0; p = c->pg[p].hnext) {
        const kv_page *g = &c->pg[p];
        if (g->parent == parent && !memcmp(g->tokens, tokens, sizeof g->tokens)) {
            if (node) *node = g->node;
            return p;
        }
    }
    return -1;
}

uint64_t pz_kvcache_publish(pz_kvcache *c, int p, uint64_t parent, const int32_t *tokens) {
    if (!c->prefix_cache) return 0;
    uint64_t node;
    if (pz_kvcache_lookup(c, parent, tokens, &node) >= 0) return node;
    kv_page *g = &c->pg[p];
    if (g->node) return g->node;  // already remembered (cannot happen for a page being filled)
    g->node = c->next_node++;
    g->parent = parent;
    memcpy(g->tokens, tokens, sizeof g->tokens);
    uint32_t b = key_hash(parent, tokens) & (c->n_buckets - 1);
    g->hnext = c->bucket[b];
    c->bucket[b] = p;
    b = parent_hash(c, parent);
    g->pnext = c->pbucket[b];
    c->pbucket[b] = p;
    return g->node;
}

int pz_kvcache_lookup_partial(pz_kvcache *c, uint64_t parent, const int32_t *tokens, int n, int *len) {
    int best = -1, best_len = 0;
    if (n > PZ_KV_PAGE) n = PZ_KV_PAGE;
    if (!c->prefix_cache || n <= 0) return -1;
    for (int p = c->pbucket[parent_hash(c, parent)]; p >= 0 && best_len < n; p = c->pg[p].pnext) {
        const kv_page *g = &c->pg[p];
        if (g->parent != parent) continue;
        int k = 0;
        while (k < n && g->tokens[k] == tokens[k]) k++;
        if (k > best_len) best = p, best_len = k;
    }
    if (len) *len = best_len;
    return best;
}

void pz_kvcache_counts_get(const pz_kvcache *c, pz_kvcache_counts *out) {
    out->total = c->n;
    out->free = c->n_free;
    out->cached = c->n_cached;
    out->used = c->n - c->n_free - c->n_cached;
    out->evictions = c->evictions;
}

int pz_kvcache_refcount(const pz_kvcache *c, int p) { return p >= 0 && p < c->n ? c->pg[p].refcnt : -1; }
