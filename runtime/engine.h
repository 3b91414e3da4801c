// engine.h — the forward pass of a heterogeneous Llama-family model over a
// per-layer KV cache, for one or many sequences ("slots"). Every stage of the
// toolkit (scoring, distillation, serving) runs models through this.
//
// Prefill of one slot processes many tokens in one pass; batched decode
// processes one new token for each of several slots in one pass (the shape
// continuous batching needs).
//
// KV cache: one pool of pages per attention layer (PZ_KV_PAGE positions of
// that layer's KV heads each; linear and noop attention layers hold none),
// shared by all slots through per-slot page tables, so a slot takes only
// the pages its sequence needs, not a fixed share of the context. A page
// index spans the layers: page p of the model is page p of every layer's
// pool. Full pages of a sequence are remembered by their token prefix (the
// prefix cache): when a slot is reset its full pages stay cached while no
// one uses them, a new sequence with the same leading tokens attaches them
// instead of recomputing (pz_engine_prefix_attach), and cached pages are
// evicted least recently used first when the pool runs out of free pages.
// Only full pages are shared, and a slot writes only positions past its
// shared ones, so no page is ever written while shared (a prompt that
// shares part of a cached page gets a copy of it, see
// pz_engine_prefix_attach).
//
// Numerics: activations are fp32. With bf16 weights, products of more than
// 32 rows (prefill, large decode batches) round the activations to bf16 on
// machines where oneDNN has bf16 products (bf16 x bf16 -> fp32), while up to
// 32 rows multiply the exact bf16 weights with fp32 activations. With
// batch_invariant, decode products are split by the backend's
// invariant_rows (16 on the CPU), and prefill products too on a backend with
// rowwise_prefill (the CPU; exact fp32 activations then, whatever the
// length), else they run in fixed blocks of 64 rows (the last one padded),
// so one sequence's logits do not depend on what it is batched with, nor on
// how much of its prompt came from the prefix cache. The price: a batch
// above 16 rows streams the weights once per 16 rows (CPU), or prefill pads
// its last block of every product to 64 rows (elsewhere).
//
// Tensor parallelism (params.comm with more than one rank): every rank
// builds an engine over its share of the model (runtime/tp_plan.h, the
// Megatron split): q/k/v and gate/up rows and o_proj/down_proj columns of
// the sharded sub-blocks. The model is either this rank's shard
// (pz_model_load_shard with align PZ_ENGINE_TP_ALIGN: never whole in this
// process), used as it is, or the whole model, whose slices the engine
// copies out at create (the caller may not free it early); its KV pools
// hold only its own KV heads. The partial o/down products are summed over
// the ranks by one fp32 all-reduce per sharded sub-block (rank 0 adds the
// residual, the others contribute their partial alone). Replicated
// sub-blocks (linear, GQA whose KV heads neither divide nor are divided
// by the rank count), the embedding, the norms and lm_head run whole on
// every rank. Rank 0 drives: its calls below are broadcast (the call and
// its token ids) to the other ranks, which run the same call inside
// pz_engine_follow, so every rank holds the same slots, pages and prefix
// cache; only rank 0 computes logits. Sums differ from one rank's only by
// the order of fp32 additions.
//
// Threads: OpenMP (the engine's own kernels and oneDNN). On a machine shared
// with other busy processes, run with OMP_WAIT_POLICY=passive: libgomp's
// default spinning at each of the ~150 barriers of a decode step starves the
// thread it waits for (measured 10-30x slower decode); the variable is read
// when libgomp loads, so it must be set in the environment.
#ifndef PZ_ENGINE_H
#define PZ_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "model.h"

struct pz_comm;

// FFN channels are dealt to tensor-parallel ranks in units of this many
// (runtime/tp_plan.h; 16 keeps FP8 products legal).
#define PZ_ENGINE_TP_ALIGN 16

typedef struct {
    int n_threads;     // 0: all cores (omp_get_num_procs)
    int n_slots;       // sequences held at once (default 1)
    int max_ctx;       // KV positions per slot (default min(model max_ctx, 4096))
    int max_batch;     // most tokens in one forward call (default 512)
    int kv_pages;      // pages in the KV pool (default: n_slots * ceil(max_ctx / PZ_KV_PAGE),
                       // every slot can fill its context at once)
    int prefix_cache;  // 1: keep full pages of reset slots for reuse (default 1)
    int batch_invariant; // 1: a row's result never depends on the rows that share its call:
                         // decode products split by the backend's invariant_rows, prefill
                         // products in fixed blocks of 64 rows (the last padded), so a
                         // prefix hit reproduces a cold prefill bit for bit (default 0)
    pz_backend_kind backend;  // where weights, KV cache and every op live (default CPU)
    pz_dt kv_type;     // KV page elements: PZ_DT_F32 (default), PZ_DT_BF16, or PZ_DT_E4M3 with
                       // the model's per-layer k_scale / v_scale (1 where uncalibrated)
    int act_fp8;       // 1: products with e4m3 weights that carry an input scale (x_scale > 0)
                       // quantize their activations to e4m3 too, as an FP8 GEMM (default 0)
    int graphs;        // 1: decode through the backend's captured graphs where it has them
                       // (backend.h graph_*; the CUDA backend), see "Decode graphs" below
                       // (default 1; the CPU backend has none, so nothing changes there)
    // Called once with the engine's backend right after it is created, before
    // any use (NULL: not called): lets a caller instrument or wrap its ops
    // (the tests' fake graph backend). The backend stays the engine's.
    void (*on_backend)(pz_backend *b, void *ctx);
    void *on_backend_ctx;
    float *amax;       // calibration: NULL, or n_layer * PZ_ENGINE_AMAX floats the forward
                       // pass raises to the largest |value| seen at each point below (the
                       // caller zeroes them first; host memory, owned by the caller)
    struct pz_comm *comm;  // tensor parallel: NULL or one rank: none; else this rank's share of
                           // comm->size ranks (borrowed; it must outlive the engine). The
                           // engine runs on comm->b (borrowed; its kind must be `backend`,
                           // n_threads is then the backend's) and every rank must create
                           // its engine with the same model and params. Refused with amax.
} pz_engine_params;

// Calibration points per layer (pz_engine_params.amax[layer * PZ_ENGINE_AMAX + i]):
// the inputs of the q/k/v products, of o_proj (or the linear attention), of
// gate/up, of down_proj (or the linear FFN), and the K (after RoPE) and V
// values stored in the KV cache.
enum { PZ_AMAX_QKV_IN, PZ_AMAX_O_IN, PZ_AMAX_GU_IN, PZ_AMAX_DOWN_IN, PZ_AMAX_K, PZ_AMAX_V, PZ_ENGINE_AMAX };

pz_engine_params pz_engine_default_params(void);

typedef struct pz_engine pz_engine;

// The engine borrows m (which must outlive it), hands its weight arena to
// the backend once (the CPU backend uses it in place; a device copies it),
// and owns its KV cache and scratch in backend memory, allocated here once;
// no allocation happens per token. Token ids and logits cross between host
// and backend at each call.
pz_engine *pz_engine_create(const pz_model *m, pz_engine_params p, char *err);
void pz_engine_free(pz_engine *e);

// Tensor parallel ranks other than 0: runs the calls rank 0 makes on its
// engine (prefill, decode, slot reset, prefix attach, fork) as rank 0 makes
// them, until rank 0 frees its engine; then returns 0 (the caller frees
// this one). -1 with err when the job failed (below) or a collective
// failed. Errors every rank meets alike are rank 0's to report.
// Calling the functions below directly on such a rank is an error.
int pz_engine_follow(pz_engine *e, char *err);
// This engine's rank and the rank count (0 and 1 without tensor parallelism).
int pz_engine_tp_rank(const pz_engine *e);
int pz_engine_tp_size(const pz_engine *e);
// Failures under tensor parallelism (docs/TP.md "Failures"). After every
// prefill, decode and fork, the ranks exchange the call's outcome (one
// small status collective): the same outcome everywhere (success, or an
// error every rank met alike: bad token ids, a full KV pool) is returned as
// without tensor parallelism; a failure on some ranks only (out of memory,
// a device or op error; the failing rank still makes the pass's remaining
// all-reduces, so the others' passes end) fails the call on every rank with
// "tensor parallel: rank R: WHY" (rank 0's call; the followers'
// pz_engine_follow), and every later call fails with it. When the
// collectives themselves fail or fall out of step, comm->health becomes
// PZ_COMM_BROKEN and the caller must end the job with comm->abort. Engine
// create agrees the same way: a rank that fails to build its share makes
// every rank's create fail, err "rank R: WHY".
// NULL while the job is sound; else the one-line reason (owned by e).
const char *pz_engine_tp_error(const pz_engine *e);

// Appends n tokens to slot's sequence (positions len..len+n-1), splitting
// into chunks of max_batch internally. logits: if non-NULL, receives vocab
// floats for the last token, or n*vocab floats (row per token) when
// all_logits. Returns 0, or -1 with err filled (context full, bad token id,
// KV pool out of pages: PZ_ENGINE_ENOPAGES). Pages are taken as needed,
// evicting cached ones; on failure the slot keeps what it held before.
int pz_engine_prefill(pz_engine *e, int slot, const int32_t *tokens, int n,
                      float *logits, int all_logits, char *err);

// Prefills of n_seq slots (distinct) in a single pass: slot slots[i] appends
// n[i] tokens, tokens holding all of them back to back (sequence 0's first).
// At most max_batch tokens in all (no internal chunking). logits: NULL, or
// n_seq*vocab floats, row i the logits of sequence i's last token where want
// is NULL or want[i] is non-zero (the other rows are scratch). With
// batch_invariant each sequence's result is bit for bit what its own
// pz_engine_prefill gives. Errors as pz_engine_prefill; on PZ_ENGINE_ENOPAGES
// slots before the one that failed keep the pages they took (for the retry),
// and no slot's sequence grows.
int pz_engine_prefill_many(pz_engine *e, int n_seq, const int *slots, const int32_t *tokens, const int *n,
                           float *logits, const int *want, char *err);

// One new token for each of n slots (distinct) in a single batched pass.
// logits: n*vocab floats, row i for slots[i].
int pz_engine_decode(pz_engine *e, const int *slots, const int32_t *tokens, int n,
                     float *logits, char *err);

// Decode graphs. On a backend with graphs (and p.graphs, no calibration,
// logits asked for), a decode batch of n sequences is padded to a bucket
// of rows (pz_engine_graph_bucket) and runs as that bucket's graph: the
// first pass of a bucket runs eagerly, the second is captured, later ones
// replay it as one launch. Padding rows decode token 0 at position 0 into
// one KV page the engine holds for them (taken from the pool on the first
// graph pass; while the pool has none free, decode stays eager), so they
// touch no sequence's cache. A pass whose graph breaks (the backend could
// not capture it, or a replay differed) is run again eagerly at once and
// that bucket stays eager from then on. With batch_invariant the padded
// rows change no real row's logits; without it, products of a padded
// batch may round differently from an unpadded one (as batch sizes do).
//
// The rows a decode batch of n sequences is padded to: the smallest power
// of two >= n, capped at n_slots and rows (the engine's scratch rows); 0
// (eager) when n exceeds PZ_ENGINE_GRAPH_MAX or n < 1.
#define PZ_ENGINE_GRAPH_MAX 64
int pz_engine_graph_bucket(int n, int n_slots, int rows);

// Decode passes so far: through a graph (warm-up, capture or replay; the
// engine cannot tell which), eagerly, and graphs that broke.
typedef struct {
    long long graph_steps, eager_steps;
    int broken;
} pz_graph_stats;
void pz_engine_graph_stats(const pz_engine *e, pz_graph_stats *st);

int pz_engine_slot_len(const pz_engine *e, int slot);   // tokens in the cache
// Forgets the sequence; its full pages stay in the prefix cache (when on)
// while no other slot uses them, its other pages return to the free list.
void pz_engine_slot_reset(pz_engine *e, int slot);

// Return code of prefill/decode/fork when the KV pool has no page left
// (nothing cached to evict): the caller may wait for other slots to finish.
#define PZ_ENGINE_ENOPAGES (-2)

// Prefix reuse. slot must be empty. Attaches the longest run of cached
// full pages whose tokens equal tokens[0 .. k*PZ_KV_PAGE), with k*PZ_KV_PAGE
// <= n-1 (at least one token is left to prefill, so the caller gets
// logits), then, where a cached page continuing that run starts with the
// next j tokens (1 <= j < PZ_KV_PAGE, k*PZ_KV_PAGE + j <= n-1), a copy of
// that page as the slot's own (a partial page: prompts sharing a system
// prompt and a template rarely part at a page boundary), and sets the
// slot's length to k*PZ_KV_PAGE + j. Partial pages only where a row's
// prefill results do not depend on the rows beside it (the backend's
// rowwise_prefill, or batch_invariant off) and without tensor parallelism.
// Returns the number of tokens attached (0 when nothing matches or the
// cache is off).
int pz_engine_prefix_attach(pz_engine *e, int slot, const int32_t *tokens, int n);
// 1 when pz_engine_prefix_attach attaches partial pages here.
int pz_engine_prefix_partial(const pz_engine *e);
// 1 when a one-token entry of pz_engine_prefill_many (logits wanted) gives
// the bits pz_engine_decode gives for that row: both split the products the
// same way (the backend's rowwise_prefill, or batch_invariant off) and pick
// the attention kernel per sequence. A server may then run its decode rows
// and its prompt chunks in one call, one pass over the weights. Without
// tensor parallelism only (unproven there).
int pz_engine_mixed_steps(const pz_engine *e);

// dst (empty) continues from src's sequence: it shares src's full pages and
// gets its own copy of the partial last page (n > 1 completions of one
// prompt share one prefill). Returns 0, or -1 / PZ_ENGINE_ENOPAGES with err.
int pz_engine_slot_fork(pz_engine *e, int dst, int src, char *err);

// Pages slot would have to take to append n more tokens.
int pz_engine_pages_needed(const pz_engine *e, int slot, int n);

typedef struct {
    int page_tokens;     // PZ_KV_PAGE
    int pages_total;     // pool size
    int pages_free;      // on the free list
    int pages_cached;    // held only by the prefix cache (evictable)
    int pages_used;      // held by at least one slot
    long long prefix_hits;    // pages attached by pz_engine_prefix_attach (partial ones too)
    long long prefix_tokens;  // tokens reused from them
    long long evictions;      // cached pages reclaimed
} pz_kv_stats;
void pz_engine_kv_stats(const pz_engine *e, pz_kv_stats *st);
const pz_model *pz_engine_model(const pz_engine *e);
size_t pz_engine_kv_bytes(const pz_engine *e);          // KV page pools allocated
int pz_engine_n_slots(const pz_engine *e);
int pz_engine_max_ctx(const pz_engine *e);
int pz_engine_max_batch(const pz_engine *e);          // most tokens in one prefill call

#endif
