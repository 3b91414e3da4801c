// kvcache.h — bookkeeping of the engine's paged KV cache: which pages are
// free, which are held by sequences (reference counts), and which full
// pages are remembered by the tokens they hold, so that a later sequence
// with the same prefix can attach them (the prefix cache). Host-side only;
// the pages' bytes live in the backend (runtime/engine.c).
//
// A cached page is identified by its content *in context*: the node id of
// the page before it in its sequence (0 for the first page) and its own
// PZ_KV_PAGE tokens. Node ids are never reused, so an entry whose parent
// page was evicted can never match a new sequence by accident; it only
// waits for its own eviction. Pages no sequence holds but the cache
// remembers are evicted least recently released first, when the free list
// is empty.
#ifndef PZ_KVCACHE_H
#define PZ_KVCACHE_H

#include <stdint.h>
#include "backend.h"  // PZ_KV_PAGE

typedef struct pz_kvcache pz_kvcache;

// n_pages pages, all free. prefix_cache 0: nothing is ever remembered.
pz_kvcache *pz_kvcache_create(int n_pages, int prefix_cache);
void pz_kvcache_free(pz_kvcache *c);

// A page for a sequence (reference count 1): from the free list, else by
// evicting the least recently released cached page. -1 when every page is
// held by some sequence.
int pz_kvcache_alloc(pz_kvcache *c);
// One more holder of page p (a cached page leaves the eviction list).
void pz_kvcache_ref(pz_kvcache *c, int p);
// One holder fewer; at zero a remembered page joins the eviction list as
// its most recent entry, any other page returns to the free list.
void pz_kvcache_unref(pz_kvcache *c, int p);

// Remembers full page p (tokens: its PZ_KV_PAGE tokens) as the child of
// node `parent` and returns its node id. If an identical page (same parent,
// same tokens) is already remembered, p stays unremembered and that page's
// node id is returned, so the sequence's later pages chain on it. 0 when
// the cache is off or out of memory.
uint64_t pz_kvcache_publish(pz_kvcache *c, int p, uint64_t parent, const int32_t *tokens);
// The remembered page with this parent and tokens, or -1; *node receives
// its node id. Does not take a reference.
int pz_kvcache_lookup(pz_kvcache *c, uint64_t parent, const int32_t *tokens, uint64_t *node);

// The remembered page with this parent whose tokens start with the longest
// run of tokens[0..n) (n capped at PZ_KV_PAGE), at least one token; *len
// receives the run's length. -1 (and *len 0) when none starts with
// tokens[0]. Pages with the same parent are chained by parent, so this
// reads only them. Does not take a reference.
int pz_kvcache_lookup_partial(pz_kvcache *c, uint64_t parent, const int32_t *tokens, int n, int *len);
typedef struct {
    int total, free, cached, used;  // used: held by at least one sequence
    long long evictions;
} pz_kvcache_counts;
void pz_kvcache_counts_get(const pz_kvcache *c, pz_kvcache_counts *out);
int pz_kvcache_refcount(const pz_kvcache *c, int p);

#endif
