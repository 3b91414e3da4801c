// capture.c — see capture.h.
#include "capture.h"
#include "common.h"
#include "devmem.h"
#include "subblock.h"
#include "tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAP_MAGIC "PZCAPTR1"
#define CAP_VERSION 1u
#define CAP_DATA_OFFSET 4096u

// On-disk header, little-endian, 128 bytes.
typedef struct {
    char magic[8];
    uint32_t version, dtype;
    uint32_t layer, hidden;
    uint32_t seq_len, pad0;
    uint64_t n_seq, n_tokens;
    uint64_t config_hash, tokens_hash;
    uint64_t data_offset, tensor_bytes;
    uint64_t header_hash;  // FNV-1a of the bytes before this field
    uint8_t reserved[128 - 88];
} cap_header;
_Static_assert(sizeof(cap_header) == 128, "capture header is 128 bytes");

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
#define FNV0 1469598103934665603ull

uint64_t pz_capture_config_hash(const pz_config *c) {
    uint64_t h = FNV0;
    int32_t ints[] = {c->n_layer, c->hidden, c->n_head, c->head_dim, c->vocab, (int)c->rope_scaling,
                      c->rope_orig_ctx};
    float fl[] = {c->rope_theta, c->norm_eps, c->rope_factor, c->rope_low_freq_factor,
                  c->rope_high_freq_factor};
    h = fnv(h, ints, sizeof ints);
    h = fnv(h, fl, sizeof fl);
    for (int l = 0; l < c->n_layer && l < PZ_MAX_LAYERS; l++) {
        int32_t s[4] = {(int)c->layers[l].attn, c->layers[l].n_kv, (int)c->layers[l].ffn, c->layers[l].n_ff};
        h = fnv(h, s, sizeof s);
    }
    return h;
}

uint64_t pz_capture_tokens_hash(const int32_t *tokens, long n_tokens) {
    return fnv(FNV0, tokens, sizeof(int32_t) * (size_t)(n_tokens > 0 ? n_tokens : 0)) | 1;
}

pz_capture_params pz_capture_default_params(void) {
    pz_capture_params p;
    memset(&p, 0, sizeof p);
    p.seq_len = 256;
    p.dtype = PZ_DT_BF16;
    p.prec = PZ_DT_F32;
    p.n_threads = 1;
    p.max_rows = 2048;
    return p;
}

char *pz_capture_file_name(int layer, char *buf, size_t cap) {
    snprintf(buf, cap, "capture_L%03d.bin", layer);
    return buf;
}

size_t pz_capture_disk_bytes(const pz_config *c, long n_tokens, int seq_len, pz_dt dtype,
                             int n_layers) {
    if (seq_len <= 0 || n_tokens < seq_len) return 0;
    if (n_layers <= 0) n_layers = c->n_layer;
    size_t toks = (size_t)(n_tokens / seq_len) * (size_t)seq_len;
    size_t per = CAP_DATA_OFFSET + 4 * toks * (size_t)c->hidden * (dtype == PZ_DT_BF16 ? 2 : 4);
    return per * (size_t)n_layers;
}

// ---- writing ------------------------------------------------------------------

typedef struct {
    int layer;
    int fd;
    char path[4096], tmp[4112];
} cap_out;

static int pwrite_all(int fd, const void *buf, size_t n, off_t off) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w, n -= (size_t)w, off += w;
    }
    return 0;
}

// Exec handles for each distinct half variant of the parent, made on demand.
typedef struct {
    pz_sub_exec *e[2 * PZ_MAX_LAYERS];
    int n;
} exec_cache;

static pz_sub_exec *get_exec(exec_cache *ec, const pz_config *c, pz_sub_kind half, pz_variant v,
                             int max_rows, pz_dt prec, pz_backend *be, char *err) {
    for (int i = 0; i < ec->n; i++) {
        pz_variant w = pz_sub_exec_variant(ec->e[i]);
        if (pz_sub_exec_half(ec->e[i]) == half && pz_variant_eq(half, w, v)) return ec->e[i];
    }
    pz_sub_exec *e = pz_sub_exec_create(c, half, v, max_rows, prec, be, err);
    if (e) ec->e[ec->n++] = e;
    return e;
}

int pz_capture_run(const pz_model *m, const int32_t *tokens, long n_tokens, const char *dir,
                   const pz_capture_params *pp, char *err) {
    pz_capture_params p = pp ? *pp : pz_capture_default_params();
    const pz_config *c = &m->cfg;
    const int H = c->hidden, T = p.seq_len;
    if (T <= 0 || n_tokens < T) return pz_err(err, "capture: %ld tokens make no window of %d", n_tokens, T);
    if (p.dtype != PZ_DT_F32 && p.dtype != PZ_DT_BF16) return pz_err(err, "capture: bad dtype");
    if (p.n_threads <= 0) p.n_threads = 1;
    int win_per_chunk = p.max_rows / T;
    if (win_per_chunk < 1) win_per_chunk = 1;
    const long n_seq = n_tokens / T, n_tok = n_seq * T;
    const int R = win_per_chunk * T;
    const size_t esz = p.dtype == PZ_DT_BF16 ? 2 : 4;
    const size_t tensor_bytes = (size_t)n_tok * H * esz;
    for (long i = 0; i < n_tok; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return pz_err(err, "capture: token %ld has id %d outside the vocabulary (%d)", i, tokens[i],
                          c->vocab);

    // Which layers to store, and how far the forward must run.
    int n_out = p.layers ? p.n_layers : c->n_layer;
    int last = -1;
    cap_out *outs = calloc((size_t)(n_out > 0 ? n_out : 1), sizeof *outs);
    int *slot_of = malloc(sizeof(int) * (size_t)c->n_layer);
    // Host: the chunk's residual and branch as the files and on_final read
    // them (hx, hy). Backend: the same (x, y) and the layer's weights (wd;
    // w itself when the backend's memory is the host's).
    float *hx = malloc(sizeof(float) * (size_t)R * H), *hy = malloc(sizeof(float) * (size_t)R * H);
    float *x = NULL, *y = NULL;
    void *conv = malloc(esz * (size_t)R * H);
    exec_cache *ec = calloc(1, sizeof *ec);
    pz_backend *be = p.be ? p.be : pz_backend_create(p.backend, p.n_threads, err);
    pz_block_weights w, wd;
    memset(&w, 0, sizeof w), memset(&wd, 0, sizeof wd);
    int rc = -1, opened = 0, shared = 0;
    if (!be) goto out;
    if (!outs || !slot_of || !hx || !hy || !conv || !ec) {
        pz_err(err, "capture: out of memory");
        goto out;
    }
    shared = pz_dev_host_shared(be);
    if (!(x = pz_dev_alloc(be, sizeof(float) * (size_t)R * H, "capture", err)) ||
        !(y = pz_dev_alloc(be, sizeof(float) * (size_t)R * H, "capture", err)))
        goto out;
    for (int l = 0; l < c->n_layer; l++) slot_of[l] = -1;
    for (int i = 0; i < n_out; i++) {
        int l = p.layers ? p.layers[i] : i;
        if (l < 0 || l >= c->n_layer || slot_of[l] >= 0) {
            pz_err(err, "capture: bad or repeated layer %d", l);
            goto out;
        }
        slot_of[l] = i;
        if (l > last) last = l;
        outs[i].layer = l;
        outs[i].fd = -1;
    }
    if (p.on_final) last = c->n_layer - 1;
    uint64_t chash = pz_capture_config_hash(c), thash = pz_capture_tokens_hash(tokens, n_tok);
    for (int i = 0; i < n_out; i++) {
        char name[64];
        pz_path_join(outs[i].path, sizeof outs[i].path, dir, pz_capture_file_name(outs[i].layer, name, sizeof name));
        snprintf(outs[i].tmp, sizeof outs[i].tmp, "%s.tmp", outs[i].path);
        outs[i].fd = open(outs[i].tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (outs[i].fd < 0) {
            pz_err(err, "capture: %s: %s", outs[i].tmp, strerror(errno));
            goto out;
        }
        opened = i + 1;
        cap_header h;
        memset(&h, 0, sizeof h);
        memcpy(h.magic, CAP_MAGIC, 8);
        h.version = CAP_VERSION, h.dtype = (uint32_t)p.dtype, h.layer = (uint32_t)outs[i].layer;
        h.hidden = (uint32_t)H, h.seq_len = (uint32_t)T, h.n_seq = (uint64_t)n_seq;
        h.n_tokens = (uint64_t)n_tok, h.config_hash = chash, h.tokens_hash = thash;
        h.data_offset = CAP_DATA_OFFSET, h.tensor_bytes = tensor_bytes;
        h.header_hash = fnv(FNV0, &h, offsetof(cap_header, header_hash));
        if (pwrite_all(outs[i].fd, &h, sizeof h, 0) ||
            ftruncate(outs[i].fd, (off_t)(CAP_DATA_OFFSET + 4 * tensor_bytes)) != 0) {
            pz_err(err, "capture: %s: %s", outs[i].tmp, strerror(errno));
            goto out;
        }
    }

    const double t0 = pz_now();
    for (long s0 = 0; s0 < n_seq; s0 += win_per_chunk) {
        const int ns = (int)(n_seq - s0 < win_per_chunk ? n_seq - s0 : win_per_chunk);
        const int M = ns * T;
        const long row0 = s0 * T;
        const size_t MHb = sizeof(float) * (size_t)M * H;
        // Embedding (gathered on the host, one copy).
        for (int r = 0; r < M; r++) {
            int id = tokens[row0 + r];
            if (m->tok_embd.type == PZ_DT_F32)
                memcpy(hx + (size_t)r * H, (const float *)m->tok_embd.data + (size_t)id * H, sizeof(float) * H);
            else
                pz_bf16_to_f32_row((const uint16_t *)m->tok_embd.data + (size_t)id * H, hx + (size_t)r * H, (size_t)H);
        }
        if (be->copy(be, x, hx, MHb, PZ_COPY_H2D, err)) goto out;
        for (int l = 0; l <= last; l++) {
            const pz_layer_spec *s = &c->layers[l];
            const int slot = slot_of[l];
            if (pz_block_weights_from_parent(&w, m, l, PZ_SUB_PAIR, err)) goto out;
            if (!shared && pz_block_weights_dev(be, &w, 1, &wd, err)) goto out;
            const pz_block_weights *wl = shared ? &w : &wd;
            for (int half = 0; half < 2; half++) {
                pz_sub_kind hk = half ? PZ_SUB_FFN : PZ_SUB_ATTN;
                pz_variant v = half ? (pz_variant){.ffn = s->ffn, .size = s->n_ff} : (pz_variant){.attn = s->attn, .size = s->n_kv};
                pz_sub_exec *e = get_exec(ec, c, hk, v, R, p.prec, be, err);
                if (!e || pz_sub_exec_fwd(e, wl, x, ns, T, y, err)) goto out;
                // Store input (x) and branch (y), then x += y.
                if (slot >= 0 && (be->copy(be, hx, x, MHb, PZ_COPY_D2H, err) ||
                                  be->copy(be, hy, y, MHb, PZ_COPY_D2H, err) || be->synchronize(be, err)))
                    goto out;
                for (int k = 0; slot >= 0 && k < 2; k++) {
                    const float *src = k ? hy : hx;
                    const void *buf = src;
                    if (esz == 2) {
                        pz_f32_to_bf16_row(src, conv, (size_t)M * H);
                        buf = conv;
                    }
                    off_t off = (off_t)CAP_DATA_OFFSET + (off_t)(2 * half + k) * (off_t)tensor_bytes +
                                (off_t)row0 * H * (off_t)esz;
                    if (pwrite_all(outs[slot].fd, buf, esz * (size_t)M * H, off)) {
                        pz_err(err, "capture: %s: %s", outs[slot].tmp, strerror(errno));
                        goto out;
                    }
                }
                be->add(be, x, y, (size_t)M * H);
            }
            pz_block_weights_free(&w);
            pz_block_weights_dev_free(be, &wd);
        }
        if (p.on_final) {
            if (be->copy(be, hx, x, MHb, PZ_COPY_D2H, err) || be->synchronize(be, err)) goto out;
            p.on_final(p.user, hx, row0, M, H);
        }
        if (p.progress) {
            double dt = pz_now() - t0;
            long done = s0 + ns;
            if (p.progress(p.user, done, n_seq, dt > 0 ? (double)done * T / dt : 0)) {
                pz_err(err, "capture: interrupted");
                goto out;
            }
        }
    }
    for (int i = 0; i < n_out; i++) {
        if (fsync(outs[i].fd) != 0 || close(outs[i].fd) != 0) {
            outs[i].fd = -1;
            pz_err(err, "capture: %s: %s", outs[i].tmp, strerror(errno));
            goto out;
        }
        outs[i].fd = -1;
        if (rename(outs[i].tmp, outs[i].path) != 0) {
            pz_err(err, "capture: rename %s: %s", outs[i].tmp, strerror(errno));
            goto out;
        }
        outs[i].tmp[0] = 0;
    }
    rc = 0;
out:
    pz_block_weights_free(&w);
    if (be) {
        pz_block_weights_dev_free(be, &wd);
        be->free(be, x);
        be->free(be, y);
    }
    for (int i = 0; i < opened; i++) {
        if (outs[i].fd >= 0) close(outs[i].fd);
        if (rc && outs[i].tmp[0]) unlink(outs[i].tmp);
    }
    if (ec)
        for (int i = 0; i < ec->n; i++) pz_sub_exec_free(ec->e[i]);
    free(ec);
    if (!p.be) pz_backend_free(be);
    free(outs);
    free(slot_of);
    free(hx);
    free(hy);
    free(conv);
    return rc;
}

// ---- reading ------------------------------------------------------------------

struct pz_capture {
    pz_capture_info info;
    void *map;
    size_t map_len;
    const char *data;
    size_t tensor_bytes;
};

pz_capture *pz_capture_open(const char *dir, int layer, const pz_config *c, uint64_t tokens_hash,
                            char *err) {
    char name[64], path[4200];
    pz_path_join(path, sizeof path, dir, pz_capture_file_name(layer, name, sizeof name));
    int fd = open(path, O_RDONLY);
    if (fd < 0) return pz_err(err, "%s: %s", path, strerror(errno)), NULL;
    struct stat st;
    cap_header h;
    pz_capture *cap = NULL;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        pz_err(err, "%s: truncated capture file (no header)", path);
        goto fail;
    }
    if (memcmp(h.magic, CAP_MAGIC, 8) != 0 || h.header_hash != fnv(FNV0, &h, offsetof(cap_header, header_hash))) {
        pz_err(err, "%s: not a capture file (bad magic or header checksum)", path);
        goto fail;
    }
    if (h.version != CAP_VERSION) {
        pz_err(err, "%s: capture version %u, expected %u", path, h.version, CAP_VERSION);
        goto fail;
    }
    size_t esz = h.dtype == PZ_DT_BF16 ? 2 : h.dtype == PZ_DT_F32 ? 4 : 0;
    if (!esz || h.seq_len == 0 || h.n_tokens != h.n_seq * h.seq_len || h.hidden == 0 ||
        h.data_offset < sizeof h || h.n_tokens > (1ull << 40) ||
        h.tensor_bytes != h.n_tokens * h.hidden * esz) {
        pz_err(err, "%s: inconsistent capture header", path);
        goto fail;
    }
    if (h.config_hash != pz_capture_config_hash(c) || (int)h.hidden != c->hidden || (int)h.layer != layer) {
        pz_err(err, "%s: stale capture: made for a different model architecture", path);
        goto fail;
    }
    if (tokens_hash && h.tokens_hash != tokens_hash) {
        pz_err(err, "%s: stale capture: made from different calibration tokens", path);
        goto fail;
    }
    size_t need = h.data_offset + 4 * h.tensor_bytes;
    if ((uint64_t)st.st_size != need) {
        pz_err(err, "%s: truncated capture file (%lld bytes, header says %zu)", path,
               (long long)st.st_size, need);
        goto fail;
    }
    cap = calloc(1, sizeof *cap);
    if (!cap) {
        pz_err(err, "%s: out of memory", path);
        goto fail;
    }
    cap->map = mmap(NULL, need, PROT_READ, MAP_SHARED, fd, 0);
    if (cap->map == MAP_FAILED) {
        pz_err(err, "%s: mmap: %s", path, strerror(errno));
        free(cap);
        cap = NULL;
        goto fail;
    }
    close(fd);
    cap->map_len = need;
    cap->data = (const char *)cap->map + h.data_offset;
    cap->tensor_bytes = h.tensor_bytes;
    cap->info = (pz_capture_info){.version = h.version, .dtype = (pz_dt)h.dtype, .layer = (int)h.layer,
                                  .hidden = (int)h.hidden, .seq_len = (int)h.seq_len,
                                  .n_seq = (long)h.n_seq, .n_tokens = (long)h.n_tokens,
                                  .config_hash = h.config_hash, .tokens_hash = h.tokens_hash};
    return cap;
fail:
    close(fd);
    return NULL;
}

void pz_capture_close(pz_capture *cap) {
    if (!cap) return;
    munmap(cap->map, cap->map_len);
    free(cap);
}

const pz_capture_info *pz_capture_get_info(const pz_capture *cap) { return &cap->info; }

const void *pz_capture_data(const pz_capture *cap, pz_cap_tensor which) {
    return cap->data + (size_t)which * cap->tensor_bytes;
}

int pz_capture_rows(const pz_capture *cap, pz_cap_tensor which, long row0, long n, float *dst,
                    char *err) {
    if ((int)which < 0 || which > PZ_CAP_FFN_OUT || row0 < 0 || n < 0 || row0 + n > cap->info.n_tokens)
        return pz_err(err, "capture: rows %ld..%ld out of range (%ld tokens)", row0, row0 + n,
                      cap->info.n_tokens);
    const size_t H = (size_t)cap->info.hidden;
    const char *base = (const char *)pz_capture_data(cap, which);
    if (cap->info.dtype == PZ_DT_F32)
        memcpy(dst, base + (size_t)row0 * H * 4, (size_t)n * H * 4);
    else
        pz_bf16_to_f32_row((const uint16_t *)(base + (size_t)row0 * H * 2), dst, (size_t)n * H);
    return 0;
}
