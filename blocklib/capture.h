// capture.h — parent activation capture for Blockwise Local Distillation.
// The parent runs once over calibration tokens (cut into windows of
// seq_len tokens, each starting at position 0), and for every selected
// layer four tensors of (n_tokens, hidden) go to disk:
//   PZ_CAP_ATTN_IN   the residual stream entering the layer (attention input)
//   PZ_CAP_ATTN_OUT  the attention branch output (what the residual adds)
//   PZ_CAP_FFN_IN    the residual stream entering the FFN (= ATTN_IN + ATTN_OUT)
//   PZ_CAP_FFN_OUT   the FFN branch output
// so training never re-runs the parent. The forward uses the training
// sub-block code (subblock.h), the same code that trains the children.
// The forward runs in backend memory; each stored layer's input and
// branch come back to the host (one copy each per chunk) to be written.
//
// Files: DIR/capture_L007.bin, one per layer:
//   header (128 bytes, see pz_capture_info), zero padding to 4096, then the
//   four tensors in the order above, each n_tokens·hidden elements of fp32
//   or bf16, row-major. Written to a .tmp name, fsync'ed and renamed, so a
//   file that exists is complete; the reader also checks the magic, the
//   version, the size against the header (truncation), a checksum of the
//   parent config (pz_capture_config_hash) and, when asked, of the tokens.
#ifndef PZ_CAPTURE_H
#define PZ_CAPTURE_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "model.h"

typedef enum {
    PZ_CAP_ATTN_IN = 0,
    PZ_CAP_ATTN_OUT = 1,
    PZ_CAP_FFN_IN = 2,
    PZ_CAP_FFN_OUT = 3,
} pz_cap_tensor;

// Progress: windows done of total, tokens per second so far. Return
// nonzero to stop (pz_capture_run then returns -1, err "interrupted", and
// leaves no file for the layers of this run).
typedef int (*pz_capture_progress_fn)(void *user, long windows_done, long windows_total,
                                      double tokens_per_s);
// Receives the residual stream after the last layer for rows [row0,
// row0 + n_rows) (before the final norm): for tests and scoring.
typedef void (*pz_capture_final_fn)(void *user, const float *x, long row0, int n_rows, int hidden);

typedef struct {
    int seq_len;            // tokens per window (default 256)
    pz_dt dtype;            // storage: PZ_DT_BF16 (default) or PZ_DT_F32
    pz_dt prec;             // products of the parent forward (default PZ_DT_F32)
    int n_threads;          // default 1
    pz_backend_kind backend; // where the forward runs (default CPU)
    pz_backend *be;          // borrowed backend to run on instead (NULL: create one of kind backend)
    int max_rows;           // rows per forward chunk (default 2048, rounded down to windows)
    const int *layers;      // layers to store (NULL: all); the forward runs up to the last
    int n_layers;
    pz_capture_progress_fn progress;
    pz_capture_final_fn on_final;  // when set, the forward runs through every layer
    void *user;
} pz_capture_params;

pz_capture_params pz_capture_default_params(void);

// 64-bit FNV-1a of the architecture (sizes, RoPE, eps and every layer's
// spec). Weights are not hashed: a different checkpoint of the same
// architecture must use a different directory (or tokens hash).
uint64_t pz_capture_config_hash(const pz_config *c);
uint64_t pz_capture_tokens_hash(const int32_t *tokens, long n_tokens);

// Bytes the capture will write: n_layers files for the whole windows in
// n_tokens (n_layers <= 0: all of c's layers).
size_t pz_capture_disk_bytes(const pz_config *c, long n_tokens, int seq_len, pz_dt dtype,
                             int n_layers);

// Runs m over tokens (n_tokens / seq_len whole windows; the tail is
// dropped) and writes the files into dir (which must exist). Returns 0 or
// -1 with err filled; on failure no partial file is left at a final name.
int pz_capture_run(const pz_model *m, const int32_t *tokens, long n_tokens, const char *dir,
                   const pz_capture_params *p, char *err);

// ---- reading ------------------------------------------------------------------
typedef struct {
    uint32_t version;
    pz_dt dtype;
    int layer, hidden, seq_len;
    long n_seq, n_tokens;          // n_tokens = n_seq * seq_len
    uint64_t config_hash, tokens_hash;
} pz_capture_info;

typedef struct pz_capture pz_capture;

// Opens and memory-maps dir/capture_L<layer>.bin. Checks the header, the
// file size, the layer and hidden size against c and the config hash;
// tokens_hash 0 skips that check. Returns NULL with err filled ("stale",
// "truncated", ...). The mapping lives until pz_capture_close.
pz_capture *pz_capture_open(const char *dir, int layer, const pz_config *c, uint64_t tokens_hash,
                            char *err);
void pz_capture_close(pz_capture *cap);
const pz_capture_info *pz_capture_get_info(const pz_capture *cap);
// The raw mapped tensor (fp32 or bf16 per info.dtype).
const void *pz_capture_data(const pz_capture *cap, pz_cap_tensor which);
// Rows [row0, row0+n) of a tensor as fp32 into dst (n·hidden floats).
int pz_capture_rows(const pz_capture *cap, pz_cap_tensor which, long row0, long n, float *dst,
                    char *err);
// The file name for a layer: "capture_L007.bin" into buf.
char *pz_capture_file_name(int layer, char *buf, size_t cap);

#endif
