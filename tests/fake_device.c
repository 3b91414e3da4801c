// fake_device.c — see fake_device.h.
#include "fake_device.h"
#include "common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    pz_backend *in;        // the CPU backend doing the work
    char *arena;
    size_t cap, used, peak;
    int open;              // nesting depth of unprotected sections
    long calls;
    size_t d2h;            // bytes copied device to host
    pz_train_ops train;
} fake;

static fake *F(const pz_backend *b) { return (fake *)b->impl; }

// The arena of the latest fake device, for the fault handler's message.
static char *g_arena;
static size_t g_cap;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const char *a = si->si_addr;
    if (g_arena && a >= g_arena && a < g_arena + g_cap) {
        static const char msg[] = "fake_device: the host touched backend memory outside an op or a copy\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(128 + sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void unprotect(fake *f) {
    f->calls++;
    if (f->open++ == 0 && mprotect(f->arena, f->cap, PROT_READ | PROT_WRITE)) {
        perror("fake_device: mprotect");
        abort();
    }
}

static void protect(fake *f) {
    if (--f->open == 0 && mprotect(f->arena, f->cap, PROT_NONE)) {
        perror("fake_device: mprotect");
        abort();
    }
}

static int inside(const fake *f, const void *p, size_t n) {
    const char *c = p;
    return c >= f->arena && c + n <= f->arena + f->cap;
}

static int outside(const fake *f, const void *p, size_t n) {
    const char *c = p;
    return c + n <= f->arena || c >= f->arena + f->cap;
}

// ---- memory ----------------------------------------------------------------------------

// Each block is preceded by 64 bytes holding its size, so a free of the
// topmost block returns it to the arena.
static void *fk_alloc(pz_backend *b, size_t bytes) {
    fake *f = F(b);
    size_t n = (bytes + 63) / 64 * 64 + 64;
    if (f->used + n > f->cap) return NULL;
    char *p = f->arena + f->used;
    unprotect(f);
    memset(p, 0, n);
    *(size_t *)p = n;
    protect(f);
    f->used += n;
    if (f->used > f->peak) f->peak = f->used;
    return p + 64;
}

static void fk_free(pz_backend *b, void *ptr) {
    if (!ptr) return;
    fake *f = F(b);
    char *p = (char *)ptr - 64;
    if (!inside(f, p, 64)) {
        fprintf(stderr, "fake_device: free of %p, not backend memory\n", ptr);
        abort();
    }
    unprotect(f);
    size_t n = *(size_t *)p;
    protect(f);
    if (p + n == f->arena + f->used) f->used -= n;
}

static int fk_copy(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind, char *err) {
    fake *f = F(b);
    if (!bytes) return 0;
    int ok = kind == PZ_COPY_H2D   ? inside(f, dst, bytes) && outside(f, src, bytes)
             : kind == PZ_COPY_D2H ? outside(f, dst, bytes) && inside(f, src, bytes)
                                   : inside(f, dst, bytes) && inside(f, src, bytes);
    if (!ok)
        return pz_err(err, "fake_device: a %s copy of %zu bytes from %p to %p crosses the arena wrongly",
                      kind == PZ_COPY_H2D ? "H2D" : kind == PZ_COPY_D2H ? "D2H" : "D2D", bytes, src, dst);
    if (kind == PZ_COPY_D2H) f->d2h += bytes;
    unprotect(f);
    memmove(dst, src, bytes);
    protect(f);
    return 0;
}

static void *fk_upload(pz_backend *b, const void *host, size_t bytes, char *err) {
    void *p = fk_alloc(b, bytes);
    if (!p) return pz_err(err, "fake_device: arena full (%zu bytes)", bytes), NULL;
    if (fk_copy(b, p, host, bytes, PZ_COPY_H2D, err)) {
        fk_free(b, p);
        return NULL;
    }
    return p;
}

static void fk_free_weights(pz_backend *b, void *p) { fk_free(b, p); }

static int fk_sync(pz_backend *b, char *err) { return F(b)->in->synchronize(F(b)->in, err); }
static int fk_supports(const pz_backend *b, pz_op op, pz_dt dt) { return F(b)->in->supports(F(b)->in, op, dt); }

// ---- ops: each runs the CPU op with the arena open ----------------------------------------

#define IN (F(b)->in)
#define RUN_INT(call)             \
    do {                          \
        unprotect(F(b));          \
        int rc_ = (call);         \
        protect(F(b));            \
        return rc_;               \
    } while (0)
#define RUN_VOID(call)   \
    do {                 \
        unprotect(F(b)); \
        call;            \
        protect(F(b));   \
    } while (0)

static int fk_prepare(pz_backend *b, pz_weight *w, char *err) { RUN_INT(IN->prepare_weight(IN, w, err)); }
static void fk_release(pz_backend *b, pz_weight *w) { RUN_VOID(IN->release_weight(IN, w)); }
static int fk_matmul(pz_backend *b, float *y, int ldy, const float *x, int ldx, pz_dt xt, const pz_weight *w,
                     int M, int acc, char *err) {
    RUN_INT(IN->matmul(IN, y, ldy, x, ldx, xt, w, M, acc, err));
}
static void fk_rmsnorm(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps) {
    RUN_VOID(IN->rmsnorm(IN, y, x, w, M, n, eps));
}
static void fk_rope(pz_backend *b, float *x, int ld, const int32_t *pos, int M, int nh, int hd, const float *f) {
    RUN_VOID(IN->rope(IN, x, ld, pos, M, nh, hd, f));
}
static size_t fk_kv_page_bytes(const pz_backend *b, int n_kv, int hd, pz_dt dt) {
    return IN->kv_page_bytes(IN, n_kv, hd, dt);
}
static int fk_kv_write(pz_backend *b, const pz_kv_write *w, char *err) { RUN_INT(IN->kv_write(IN, w, err)); }
static int fk_attention(pz_backend *b, const pz_attn_seq *s, int n, int nh, int nkv, int hd, char *err) {
    RUN_INT(IN->attention(IN, s, n, nh, nkv, hd, err));
}
static void fk_swiglu(pz_backend *b, float *h, int ldh, const float *g, const float *u, int ld, int M, int n) {
    RUN_VOID(IN->swiglu(IN, h, ldh, g, u, ld, M, n));
}
static void fk_add(pz_backend *b, float *y, const float *x, size_t n) { RUN_VOID(IN->add(IN, y, x, n)); }
static int fk_embed(pz_backend *b, float *y, const pz_weight *t, const int32_t *ids, int M, char *err) {
    RUN_INT(IN->embed(IN, y, t, ids, M, err));
}

#define TR (IN->train)
static int fk_gemm(pz_backend *b, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                   int ldb, float *C, int ldc, int acc, pz_dt prec, char *err) {
    RUN_INT(TR->gemm(IN, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, prec, err));
}
static int fk_linear_fwd(pz_backend *b, float *y, const float *x, const float *w, int M, int N, int K, pz_dt prec,
                         char *err) {
    RUN_INT(TR->linear_fwd(IN, y, x, w, M, N, K, prec, err));
}
static int fk_linear_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                         const float *w, int M, int N, int K, pz_dt prec, char *err) {
    RUN_INT(TR->linear_bwd(IN, dx, dx_acc, dw, dy, x, w, M, N, K, prec, err));
}
static void fk_rmsnorm_fwd(pz_backend *b, float *y, float *rstd, const float *x, const float *w, int M, int n,
                           float eps) {
    RUN_VOID(TR->rmsnorm_fwd(IN, y, rstd, x, w, M, n, eps));
}
static void fk_rmsnorm_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                           const float *w, const float *rstd, int M, int n) {
    RUN_VOID(TR->rmsnorm_bwd(IN, dx, dx_acc, dw, dy, x, w, rstd, M, n));
}
static pz_attn_block_train *fk_attn_create(pz_backend *b, const pz_attn_block_cfg *cfg, int max_rows, char *err) {
    return TR->attn_block_create(IN, cfg, max_rows, err);  // its state is the CPU backend's own (host)
}
static void fk_attn_free(pz_backend *b, pz_attn_block_train *s) { TR->attn_block_free(IN, s); }
static int fk_attn_fwd(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w, const float *x, int n_seq,
                       int T, const int32_t *pos, const float *inv_freq, float *y, char *err) {
    RUN_INT(TR->attn_block_fwd(IN, s, w, x, n_seq, T, pos, inv_freq, y, err));
}
static int fk_attn_bwd(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w, const pz_attn_block_w *dw,
                       const float *x, const float *dy, float *dx, char *err) {
    RUN_INT(TR->attn_block_bwd(IN, s, w, dw, x, dy, dx, err));
}
static pz_ffn_block_train *fk_ffn_create(pz_backend *b, const pz_ffn_block_cfg *cfg, int max_rows, char *err) {
    return TR->ffn_block_create(IN, cfg, max_rows, err);
}
static void fk_ffn_free(pz_backend *b, pz_ffn_block_train *s) { TR->ffn_block_free(IN, s); }
static int fk_ffn_fwd(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w, const float *x, int M,
                      float *y, char *err) {
    RUN_INT(TR->ffn_block_fwd(IN, s, w, x, M, y, err));
}
static int fk_ffn_bwd(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w, const pz_ffn_block_w *dw,
                      const float *x, const float *dy, float *dx, char *err) {
    RUN_INT(TR->ffn_block_bwd(IN, s, w, dw, x, dy, dx, err));
}
static double fk_adamw(pz_backend *b, pz_adamw_tensor *t, int n, long step, float lr, const pz_adamw_params *hp) {
    unprotect(F(b));
    double r = TR->adamw_step(IN, t, n, step, lr, hp);
    protect(F(b));
    return r;
}
static double fk_nmse(pz_backend *b, const float *yp, const float *yc, size_t n, float *d, float gs) {
    unprotect(F(b));
    double r = TR->nmse_loss(IN, yp, yc, n, d, gs);
    protect(F(b));
    return r;
}
static double fk_token_nmse(pz_backend *b, const float *yp, const float *yc, int rows, int cols, float eps,
                            float *d, float gs) {
    unprotect(F(b));
    double r = TR->token_nmse_loss(IN, yp, yc, rows, cols, eps, d, gs);
    protect(F(b));
    return r;
}
static double fk_cosine(pz_backend *b, const float *yp, const float *yc, int n_mat, size_t stride, int rows,
                        int cols, float *d, double gs) {
    unprotect(F(b));
    double r = TR->cosine_loss(IN, yp, yc, n_mat, stride, rows, cols, d, gs);
    protect(F(b));
    return r;
}
static double fk_kl(pz_backend *b, const float *p, const float *q, int rows, int vocab, float *d, double gs) {
    unprotect(F(b));
    double r = TR->kl_loss(IN, p, q, rows, vocab, d, gs);
    protect(F(b));
    return r;
}

static void fk_destroy(pz_backend *b) {
    fake *f = F(b);
    pz_backend_free(f->in);
    if (g_arena == f->arena) g_arena = NULL;
    munmap(f->arena, f->cap);
    free(f);
    free(b);
}

pz_backend *pz_fake_device_create(int n_threads, size_t arena_bytes, char *err) {
    pz_backend *b = calloc(1, sizeof *b);
    fake *f = calloc(1, sizeof *f);
    if (!b || !f) {
        free(b), free(f);
        return pz_err(err, "fake_device: out of memory"), NULL;
    }
    f->cap = (arena_bytes + 4095) / 4096 * 4096;
    f->arena = mmap(NULL, f->cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->arena == MAP_FAILED || !(f->in = pz_backend_create(PZ_BACKEND_CPU, n_threads, err))) {
        if (f->arena != MAP_FAILED) munmap(f->arena, f->cap);
        else pz_err(err, "fake_device: cannot map %zu bytes", f->cap);
        free(b), free(f);
        return NULL;
    }
    g_arena = f->arena, g_cap = f->cap;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    pz_backend *in = f->in;
    b->kind = in->kind;
    b->name = "fake-device";
    b->n_threads = in->n_threads;
    b->invariant_rows = in->invariant_rows;
    b->impl = f;
    b->supports = fk_supports;
    b->alloc = fk_alloc, b->free = fk_free, b->copy = fk_copy;
    b->upload_weights = fk_upload, b->free_weights = fk_free_weights, b->synchronize = fk_sync;
    b->prepare_weight = fk_prepare, b->release_weight = fk_release, b->matmul = fk_matmul;
    b->rmsnorm = fk_rmsnorm, b->rope = fk_rope, b->kv_page_bytes = fk_kv_page_bytes;
    b->kv_write = fk_kv_write, b->attention = fk_attention, b->swiglu = fk_swiglu, b->add = fk_add;
    b->embed = fk_embed;
    pz_train_ops *t = &f->train;
    t->gemm = fk_gemm, t->linear_fwd = fk_linear_fwd, t->linear_bwd = fk_linear_bwd;
    t->rmsnorm_fwd = fk_rmsnorm_fwd, t->rmsnorm_bwd = fk_rmsnorm_bwd;
    t->attn_block_create = fk_attn_create, t->attn_block_free = fk_attn_free;
    t->attn_block_fwd = fk_attn_fwd, t->attn_block_bwd = fk_attn_bwd;
    t->ffn_block_create = fk_ffn_create, t->ffn_block_free = fk_ffn_free;
    t->ffn_block_fwd = fk_ffn_fwd, t->ffn_block_bwd = fk_ffn_bwd;
    t->adamw_step = fk_adamw, t->nmse_loss = fk_nmse;
    t->token_nmse_loss = in->train->token_nmse_loss ? fk_token_nmse : NULL;
    t->cosine_loss = in->train->cosine_loss ? fk_cosine : NULL;
    t->kl_loss = in->train->kl_loss ? fk_kl : NULL;
    b->train = t;
    b->destroy = fk_destroy;  // graphs: none (graph_create NULL)
    return b;
}

size_t pz_fake_device_used(const pz_backend *b, size_t *peak) {
    if (peak) *peak = F(b)->peak;
    return F(b)->used;
}

long pz_fake_device_calls(const pz_backend *b) { return F(b)->calls; }
size_t pz_fake_device_d2h_bytes(const pz_backend *b) { return F(b)->d2h; }
