// backend_cuda.c — fills the pz_backend interface (backend.h) for one CUDA
// device: memory through cudaMalloc, every op enqueued on the backend's one
// stream, failures of enqueued work (launch errors, device faults, bad ids
// found by kernels) kept and reported by synchronize. The kernels live one
// op family per file in this folder (cuda_impl.h lists them); products go
// through cuBLASLt (matmul_lt.c); the training ops are train_ops.c.
//
// Device: PUZZLE_CUDA_DEVICE (an index) if set, else 0; a tensor-parallel
// job runs one process per GPU and sets it per rank. With no device (or no
// driver) creation fails with "no CUDA device".
#include "backend_cuda.h"
#include "cuda_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_BYTES ((size_t)32 << 20)  // cuBLASLt workspace (Hopper's kernels want up to 32 MiB)
#define DEV_FLOATS 16               // pz_cuda.dev_f

static pz_cuda *C(const pz_backend *b) { return (pz_cuda *)b->impl; }

void pz_cuda_fail(pz_cuda *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

int pz_cuda_grow(void **p, size_t *cap, size_t bytes, char *err) {
    if (bytes <= *cap && *p) return 0;
    size_t n = bytes < 4096 ? 4096 : bytes + bytes / 4;
    void *q = NULL;
    cudaError_t e = cudaMalloc(&q, n);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: scratch of %zu bytes: %s", n, cudaGetErrorString(e));
        return -1;
    }
    cudaFree(*p);  // waits for the device: no enqueued op still reads the old buffer
    *p = q;
    *cap = n;
    return 0;
}

// Records a launcher's result; pointwise ops return nothing, so synchronize reports it.
static void launched(pz_cuda *c, cudaError_t e, const char *op) {
    if (e != cudaSuccess) pz_cuda_fail(c, "%s: %s", op, cudaGetErrorString(e));
}

static int fail_now(char *err, cudaError_t e, const char *op) {
    if (e == cudaSuccess) return 0;
    if (err) snprintf(err, PZ_ERRLEN, "%s: %s", op, cudaGetErrorString(e));
    return -1;
}

// An op's graph signature: its kind and the device pointers and sizes it
// was called with (graph.c); nonzero "skip" means a replay enqueues nothing.
static uint64_t sig(int op, const uint64_t *v, size_t n) {
    return pz_cuda_sig(pz_cuda_sig(14695981039346656037ull, &op, sizeof op), v, n * sizeof *v);
}
#define SIG(op, ...) sig(op, (const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / 8)
#define U(p) ((uint64_t)(uintptr_t)(p))
static int replaying(pz_cuda *c, uint64_t s) { return c->g ? pz_cuda_graph_op(c, s) : 0; }
static int staged(const pz_cuda *c) { return c->g && (c->gmode == PZ_GRAPH_CAPTURE || c->gmode == PZ_GRAPH_REPLAY); }

static int cuda_supports(const pz_backend *b, pz_op op, pz_dt dt) {
    (void)b;
    switch (op) {
    case PZ_OP_MATMUL: return dt == PZ_DT_F32 || dt == PZ_DT_BF16 || dt == PZ_DT_E4M3;
    case PZ_OP_EMBED: return dt == PZ_DT_F32 || dt == PZ_DT_BF16;
    case PZ_OP_ATTENTION: return dt == PZ_DT_F32 || dt == PZ_DT_BF16 || dt == PZ_DT_E4M3;
    case PZ_OP_RMSNORM:
    case PZ_OP_ROPE:
    case PZ_OP_SWIGLU:
    case PZ_OP_ADD: return dt == PZ_DT_F32;
    case PZ_OP_TRAIN: return dt == PZ_DT_F32 || dt == PZ_DT_BF16;  // train_ops.c
    default: return 0;
    }
}

static void *cuda_alloc(pz_backend *b, size_t bytes) {
    pz_cuda *c = C(b);
    void *p = NULL;
    size_t n = bytes < 256 ? 256 : bytes;
    if (cudaMalloc(&p, n) != cudaSuccess) return NULL;  // cudaMalloc aligns to 256 bytes
    if (cudaMemsetAsync(p, 0, n, c->stream) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(pz_backend *b, void *p) {
    (void)b;
    if (p) cudaFree(p);
}

static int cuda_copy(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind,
                     char *err) {
    if (!bytes) return 0;
    pz_cuda *c = C(b);
    if (staged(c) && kind != PZ_COPY_D2D)
        return pz_cuda_graph_copy(c, dst, src, bytes, kind == PZ_COPY_D2H, err);
    if (kind == PZ_COPY_D2D && replaying(c, SIG(1, U(dst), U(src), bytes))) return 0;
    enum cudaMemcpyKind k = kind == PZ_COPY_H2D   ? cudaMemcpyHostToDevice
                            : kind == PZ_COPY_D2H ? cudaMemcpyDeviceToHost
                                                  : cudaMemcpyDeviceToDevice;
    return fail_now(err, cudaMemcpyAsync(dst, src, bytes, k, C(b)->stream), "copy");
}

static void *cuda_upload_weights(pz_backend *b, const void *host, size_t bytes, char *err) {
    (void)b;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e == cudaSuccess && bytes) e = cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        cudaFree(p);
        if (err) snprintf(err, PZ_ERRLEN, "upload of %zu weight bytes: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static int cuda_synchronize(pz_backend *b, char *err) {
    pz_cuda *c = C(b);
    cudaError_t e = cudaSuccess;
    if (c->g) e = pz_cuda_graph_launch(c);  // an armed graph: end the capture, launch
    if (e != cudaSuccess) pz_cuda_fail(c, "cuda graph: %s", cudaGetErrorString(e));
    e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess && !c->failed) pz_cuda_fail(c, "device: %s", cudaGetErrorString(e));
    pz_cuda_fault f = {0};
    if (e == cudaSuccess && cudaMemcpy(&f, c->fault, sizeof f, cudaMemcpyDeviceToHost) == cudaSuccess &&
        f.code) {
        cudaMemset(c->fault, 0, sizeof f);
        if (f.code == PZ_CUDA_FAULT_TOKEN)
            pz_cuda_fail(c, "token id %d at position %d is outside the vocabulary (0..%d)", f.a, f.b, f.c - 1);
        else
            pz_cuda_fail(c, "kv_write: row %d names page %d of a %d-page pool (or a negative position)",
                         f.b, f.a, f.c);
    }
    if (c->g) pz_cuda_graph_done(c, !c->failed);
    if (!c->failed) return 0;
    if (err) snprintf(err, PZ_ERRLEN, "%s", c->err);
    c->failed = 0;
    c->err[0] = 0;
    return -1;
}

static int cuda_prepare_weight(pz_backend *b, pz_weight *w, char *err) {
    return pz_cuda_lt_prepare(C(b), w, err);
}

static void cuda_release_weight(pz_backend *b, pz_weight *w) { pz_cuda_lt_release(C(b), w); }

static int cuda_matmul(pz_backend *b, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                       const pz_weight *w, int M, int acc, char *err) {
    // Activations enter as fp32, or (FP8 weights only) quantized to e4m3.
    if (M < 0 || (M > 0 && (!y || !x)) || ldx < w->cols || ldy < w->rows ||
        (xt != PZ_DT_F32 && !(xt == PZ_DT_E4M3 && w->type == PZ_DT_E4M3))) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda matmul: bad arguments (M %d, ldx %d, ldy %d, %s activations "
                          "with %s weights)", M, ldx, ldy, pz_dt_name(xt), pz_dt_name(w->type));
        return -1;
    }
    if (replaying(C(b), SIG(2, U(y), ldy, U(x), ldx, xt, U(w->data), M, acc))) return 0;
    return pz_cuda_lt_matmul(C(b), y, ldy, x, ldx, xt, w, M, acc, err);
}

static void cuda_rmsnorm(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps) {
    if (replaying(C(b), SIG(3, U(y), U(x), U(w), M, n))) return;
    launched(C(b), pz_cu_rmsnorm(C(b)->stream, y, x, w, M, n, eps), "rmsnorm");
}

static void cuda_rope(pz_backend *b, float *x, int ld, const int32_t *pos, int M, int n_heads,
                      int head_dim, const float *inv_freq) {
    if (replaying(C(b), SIG(4, U(x), ld, U(pos), M, n_heads, head_dim, U(inv_freq)))) return;
    launched(C(b), pz_cu_rope(C(b)->stream, x, ld, pos, M, n_heads, head_dim, inv_freq), "rope");
}

static size_t cuda_kv_page_bytes(const pz_backend *b, int n_kv, int head_dim, pz_dt dt) {
    if (!cuda_supports(b, PZ_OP_ATTENTION, dt) || n_kv <= 0 || head_dim <= 0) return 0;
    return (size_t)PZ_KV_PAGE * n_kv * head_dim * pz_dt_size(dt);
}

static int cuda_kv_write(pz_backend *b, const pz_kv_write *w, char *err) {
    if (!cuda_supports(b, PZ_OP_ATTENTION, w->kv_type) || w->n_kv <= 0 || w->head_dim <= 0 ||
        w->R < 0 || w->ld < 2 * w->n_kv * w->head_dim ||
        (w->kv_type == PZ_DT_E4M3 && !(w->k_scale > 0 && w->v_scale > 0))) {
        if (err) snprintf(err, PZ_ERRLEN, "kv_write: bad call (%s cache, %d KV heads of %d, ld %d, scales %g/%g)",
                          pz_dt_name(w->kv_type), w->n_kv, w->head_dim, w->ld, (double)w->k_scale,
                          (double)w->v_scale);
        return -1;
    }
    if (replaying(C(b), SIG(5, U(w->k_pool), U(w->v_pool), w->n_pages, U(w->kv), w->ld, U(w->row_page),
                            U(w->pos), w->R, w->kv_type)))
        return 0;
    return fail_now(err, pz_cu_kv_write(C(b)->stream, w, C(b)->fault), "kv_write");
}

static int cuda_attention(pz_backend *b, const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv,
                          int head_dim, char *err) {
    pz_cuda *c = C(b);
    if (head_dim <= 0 || head_dim % 2 || head_dim > PZ_CUDA_MAX_HEAD_DIM || n_kv <= 0 ||
        n_head % n_kv || n_seq < 0) {
        if (err) snprintf(err, PZ_ERRLEN, "attention: unsupported shape (%d heads, %d KV heads, head_dim %d; "
                          "the CUDA kernel takes even head_dim <= %d)", n_head, n_kv, head_dim,
                          PZ_CUDA_MAX_HEAD_DIM);
        return -1;
    }
    for (int i = 0; i < n_seq; i++)
        if (seqs[i].kv_ld == 0 && seqs[i].n_q > 0 && !cuda_supports(b, PZ_OP_ATTENTION, seqs[i].kv_type)) {
            if (err) snprintf(err, PZ_ERRLEN, "attention: no %s KV cache", pz_dt_name(seqs[i].kv_type));
            return -1;
        }
    if (n_seq == 0) return 0;
    if (n_seq > c->desc_cap) {
        size_t cap = 0;
        void *d = c->desc;
        if (pz_cuda_grow(&d, &cap, sizeof(pz_cuda_attn_desc) * (size_t)n_seq, err)) return -1;
        pz_cuda_attn_desc *h = realloc(c->hdesc, cap);
        if (!h) {
            if (err) snprintf(err, PZ_ERRLEN, "attention: out of memory");
            return -1;
        }
        c->desc = d, c->hdesc = h;
        c->desc_cap = (int)(cap / sizeof(pz_cuda_attn_desc));
    }
    int rows = pz_cuda_flatten_attn(seqs, n_seq, n_head, head_dim, c->hdesc, err);
    if (rows < 0) return -1;
    if (rows == 0) return 0;
    const size_t db = sizeof(pz_cuda_attn_desc) * (size_t)n_seq;
    const pz_cuda_attn_desc *d = c->desc;
    if (staged(c)) {  // a graph: the descriptors through its staging, refreshed on each replay
        if (!(d = pz_cuda_graph_stage(c, c->hdesc, db, SIG(6, n_seq, rows, n_head, n_kv, head_dim), err)))
            return -1;
        if (c->gmode == PZ_GRAPH_REPLAY) return 0;
    }
    // From pageable memory the copy is staged before it returns, so hdesc is free again.
    if (d == c->desc &&
        fail_now(err, cudaMemcpyAsync(c->desc, c->hdesc, db, cudaMemcpyHostToDevice, c->stream),
                 "attention descriptors"))
        return -1;
    return fail_now(err, pz_cu_attention(c->stream, d, n_seq, rows, n_head, n_kv, head_dim), "attention");
}

static void cuda_swiglu(pz_backend *b, float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n) {
    if (replaying(C(b), SIG(7, U(h), ldh, U(g), U(u), gu_ld, M, n))) return;
    launched(C(b), pz_cu_swiglu(C(b)->stream, h, ldh, g, u, gu_ld, M, n), "swiglu");
}

static void cuda_add(pz_backend *b, float *y, const float *x, size_t n) {
    if (replaying(C(b), SIG(8, U(y), U(x), n))) return;
    launched(C(b), pz_cu_add(C(b)->stream, y, x, n), "add");
}

static int cuda_embed(pz_backend *b, float *y, const pz_weight *table, const int32_t *ids, int M, char *err) {
    if (table->type != PZ_DT_F32 && table->type != PZ_DT_BF16) {
        if (err) snprintf(err, PZ_ERRLEN, "embed: no %s table", pz_dt_name(table->type));
        return -1;
    }
    if (replaying(C(b), SIG(9, U(y), U(table->data), U(ids), M))) return 0;
    return fail_now(err, pz_cu_embed(C(b)->stream, y, table->data, table->type, table->ld, table->rows,
                                     table->cols, ids, M, C(b)->fault),
                    "embed");
}

int pz_cuda_argmax(pz_backend *b, int32_t *out, const float *logits, int ld, int M, int n, char *err) {
    if (b->kind != PZ_BACKEND_CUDA || ld < n) {
        if (err) snprintf(err, PZ_ERRLEN, "argmax: not a CUDA backend or ld %d < n %d", ld, n);
        return -1;
    }
    if (replaying(C(b), SIG(10, U(out), U(logits), ld, M, n))) return 0;
    return fail_now(err, pz_cu_argmax(C(b)->stream, out, logits, ld, M, n), "argmax");
}

void *pz_cuda_stream(pz_backend *b) { return b->kind == PZ_BACKEND_CUDA ? (void *)C(b)->stream : NULL; }

int pz_cuda_device(pz_backend *b) { return b->kind == PZ_BACKEND_CUDA ? C(b)->device : -1; }

void pz_cuda_device_name(pz_backend *b, char *buf, size_t cap) {
    struct cudaDeviceProp prop;
    if (b->kind != PZ_BACKEND_CUDA || cudaGetDeviceProperties(&prop, C(b)->device) != cudaSuccess)
        snprintf(buf, cap, "?");
    else
        snprintf(buf, cap, "%s (device %d, sm_%d%d)", prop.name, C(b)->device, prop.major, prop.minor);
}

pz_cuda_graph *pz_cuda_graph_create(pz_backend *b, size_t stage_bytes, char *err) {
    if (b->kind != PZ_BACKEND_CUDA) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda graph: not a CUDA backend");
        return NULL;
    }
    return pz_cuda_graph_new(stage_bytes, err);
}

void pz_cuda_graph_free(pz_backend *b, pz_cuda_graph *g) {
    pz_cuda *c = b->kind == PZ_BACKEND_CUDA ? C(b) : NULL;
    if (c && g && c->g == g) {  // armed by a pass that never reached synchronize
        if (c->gmode == PZ_GRAPH_CAPTURE) {  // release the stream from capture mode
            cudaGraph_t graph = NULL;
            cudaStreamEndCapture(c->stream, &graph);
            if (graph) cudaGraphDestroy(graph);
        }
        c->g = NULL;
        c->gmode = PZ_GRAPH_OFF;
    }
    pz_cuda_graph_delete(g);
}

int pz_cuda_graph_begin(pz_backend *b, pz_cuda_graph *g, char *err) {
    return pz_cuda_graph_arm(C(b), g, err);
}

// backend.h's graph interface: the same graphs behind the opaque pz_graph.
static pz_graph *cuda_graph_create(pz_backend *b, size_t stage_bytes, char *err) {
    return (pz_graph *)pz_cuda_graph_create(b, stage_bytes, err);
}
static void cuda_graph_free(pz_backend *b, pz_graph *g) { pz_cuda_graph_free(b, (pz_cuda_graph *)g); }
static int cuda_graph_begin(pz_backend *b, pz_graph *g, char *err) {
    return pz_cuda_graph_begin(b, (pz_cuda_graph *)g, err);
}

void pz_cuda_set_trials(pz_backend *b, int on) {
    if (b->kind == PZ_BACKEND_CUDA) C(b)->trials = on;
}

static void cuda_destroy(pz_backend *b) {
    pz_cuda *c = C(b);
    if (c) {
        cudaStreamSynchronize(c->stream);
        cudaFree(c->ws);
        cudaFree(c->xbuf);
        cudaFree(c->tbuf);
        cudaFree(c->dev_f);
        cudaFree(c->fault);
        cudaFree(c->desc);
        cudaFree(c->trbuf);
        cudaFree(c->dsum);
        free(c->hdesc);
        if (c->ev0) cudaEventDestroy(c->ev0);
        if (c->ev1) cudaEventDestroy(c->ev1);
        if (c->lt) cublasLtDestroy(c->lt);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(b);
}

int pz_cuda_device_count(char *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (err) snprintf(err, PZ_ERRLEN, "no CUDA device (cudaGetDeviceCount: %s)",
                          e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 0;
    }
    return n;
}

pz_backend *pz_backend_cuda_create(int n_threads, char *err) {
    int n = pz_cuda_device_count(err);
    if (n == 0) return NULL;
    int dev = 0;
    const char *env = getenv("PUZZLE_CUDA_DEVICE");
    if (env && *env) dev = atoi(env);
    if (dev < 0 || dev >= n) {
        if (err) snprintf(err, PZ_ERRLEN, "PUZZLE_CUDA_DEVICE=%s: this machine has %d CUDA devices", env, n);
        return NULL;
    }
    pz_backend *b = calloc(1, sizeof *b);
    pz_cuda *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b), free(c);
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: out of memory");
        return NULL;
    }
    b->impl = c;
    b->kind = PZ_BACKEND_CUDA;
    b->name = "cuda";
    b->n_threads = n_threads > 0 ? n_threads : 1;
    b->invariant_rows = PZ_CUDA_GEMV_ROWS;
    b->destroy = cuda_destroy;
    c->device = dev;
    c->trials = 1;
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(&c->ws, WS_BYTES);
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->dev_f, DEV_FLOATS * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->fault, sizeof(pz_cuda_fault));
    if (e == cudaSuccess) e = cudaMemset(c->fault, 0, sizeof(pz_cuda_fault));
    if (e == cudaSuccess) {
        float init[DEV_FLOATS] = {0, 1, 1};
        e = cudaMemcpy(c->dev_f, init, sizeof init, cudaMemcpyHostToDevice);
    }
    if (e == cudaSuccess) e = cudaEventCreate(&c->ev0);
    if (e == cudaSuccess) e = cudaEventCreate(&c->ev1);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend on device %d: %s", dev, cudaGetErrorString(e));
        cuda_destroy(b);
        return NULL;
    }
    c->ws_bytes = WS_BYTES;
    cublasStatus_t st = cublasLtCreate(&c->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: cublasLtCreate failed (%d)", (int)st);
        c->lt = NULL;
        cuda_destroy(b);
        return NULL;
    }
    b->supports = cuda_supports;
    b->alloc = cuda_alloc;
    b->free = cuda_free;
    b->copy = cuda_copy;
    b->upload_weights = cuda_upload_weights;
    b->free_weights = cuda_free;
    b->synchronize = cuda_synchronize;
    b->prepare_weight = cuda_prepare_weight;
    b->release_weight = cuda_release_weight;
    b->matmul = cuda_matmul;
    b->rmsnorm = cuda_rmsnorm;
    b->rope = cuda_rope;
    b->kv_page_bytes = cuda_kv_page_bytes;
    b->kv_write = cuda_kv_write;
    b->attention = cuda_attention;
    b->swiglu = cuda_swiglu;
    b->add = cuda_add;
    b->embed = cuda_embed;
    b->graph_create = cuda_graph_create;
    b->graph_free = cuda_graph_free;
    b->graph_begin = cuda_graph_begin;
    b->train = &pz_cuda_train_ops;
    return b;
}
