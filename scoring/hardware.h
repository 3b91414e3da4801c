// hardware.h — accelerator descriptions for the roofline cost model
// (docs/ARCHITECTURE.md "The pipeline", step 3). An accelerator is a JSON file in
// scoring/hardware/: dense peak FLOP/s per dtype, memory bandwidth and size,
// interconnect bandwidth (per direction) and latency, kernel launch overhead,
// and a "sources" object that names the data sheet behind every figure.
//
// Files are found by name, case-insensitively, through each file's "id" and
// "aliases" ("H100" -> h100_sxm.json). The directory searched is the one the
// caller gives, else $PUZZLE_HARDWARE_DIR, else the directory compiled in
// (PZ_HARDWARE_DIR: the source tree's scoring/hardware). A name containing
// '/' or ending in ".json" is read as a path.
#ifndef PZ_HARDWARE_H
#define PZ_HARDWARE_H

#include <stddef.h>

#define PZ_HW_MAX_ROWS_EFF 8

typedef struct {
    char id[64];            // file id, e.g. "h100_sxm"
    char name[128];         // human name
    char interconnect[96];  // e.g. "NVLink 4 (NVSwitch)"
    double flops_bf16;      // dense tensor-core FLOP/s in bf16 (> 0)
    double flops_fp8;       // dense FLOP/s in fp8; 0 when the device has no fp8 tensor cores
    double mem_bw;          // device memory bandwidth, bytes/s
    double mem_bytes;       // device memory, bytes
    double link_bw;         // GPU-to-GPU bandwidth per direction, bytes/s
    double link_latency;    // seconds per ring step of a collective
    double launch_overhead; // seconds per kernel launch
    // Efficiency factors measured for this device (the optional
    // "cost_params" object of a file written by `puzzle profile --calibrate`);
    // 0 where the file gives none, so the cost model's defaults apply.
    double eff_gemm, eff_attn, eff_mem, eff_link;
    // Row-count-dependent GEMM efficiency (optional "cost_params"
    // "gemm_rows_eff": [[rows, factor], ...], rows ascending): a product of
    // M rows runs at factor(M) times the rate the cost model otherwise
    // assumes, interpolated linearly in log M between the points and held
    // beyond them. n_rows_eff = 0: factor 1 at every M (the GPU files).
    int n_rows_eff;
    double rows_eff_m[PZ_HW_MAX_ROWS_EFF], rows_eff[PZ_HW_MAX_ROWS_EFF];
} pz_hw;

// factor(M) of hw's gemm_rows_eff table (1 without one).
double pz_hw_rows_eff(const pz_hw *hw, double rows);

// Parses one hardware JSON text; `what` names it in messages. Checks every
// required figure is a finite positive number (flops_fp8 may be null or
// absent: unsupported) and that "sources" has a {title, url} entry for each
// figure present. Returns 0, or -1 with one line in err.
int pz_hw_parse(const char *json, size_t len, const char *what, pz_hw *hw, char *err);
int pz_hw_load_file(const char *path, pz_hw *hw, char *err);

// The directory searched when the caller passes dir == NULL.
const char *pz_hw_default_dir(void);

// Finds `name` (id or alias, case-insensitive, or a path) in dir (NULL: the
// default). On an unknown name err says so and lists the known ids.
int pz_hw_find(const char *name, const char *dir, pz_hw *hw, char *err);

// Writes the known ids, sorted and comma-separated, into buf. Returns the
// number of files found, or -1 when the directory cannot be read.
int pz_hw_list(const char *dir, char *buf, size_t cap);

#endif
