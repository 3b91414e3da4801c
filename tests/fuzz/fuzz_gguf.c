// fuzz_gguf.c — libFuzzer entry point for the GGUF reader: any input must
// either open (and then every tensor and metadata value must be readable
// without touching memory outside the input) or fail with a message.
#include "common.h"
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[PZ_ERRLEN];
    err[0] = 0;
    pz_gguf *g = pz_gguf_open_buffer(data, size, err);
    if (!g) {
        if (!err[0]) __builtin_trap();  // every failure must explain itself
        return 0;
    }
    for (int64_t i = 0; i < pz_gguf_n_kv(g); i++) {
        pz_gguf_str k = pz_gguf_key_name(g, i);
        char key[128];
        if (k.len >= sizeof key) continue;
        memcpy(key, k.data, (size_t)k.len);
        key[k.len] = 0;
        int64_t iv;
        float fv;
        int bv;
        pz_gguf_str s;
        pz_gguf_type et;
        uint64_t n;
        pz_gguf_get_i64(g, key, &iv);
        pz_gguf_get_f32(g, key, &fv);
        pz_gguf_get_bool(g, key, &bv);
        if (pz_gguf_get_str(g, key, &s) == 0 && s.len) (void)*(volatile const char *)&s.data[s.len - 1];
        if (pz_gguf_get_arr(g, key, &et, &n) == 0 && n > 0) {
            for (uint64_t j = 0; j < n && j < 64; j++) {
                pz_gguf_arr_i64(g, key, j, &iv);
                pz_gguf_arr_f32(g, key, j, &fv);
                if (pz_gguf_arr_str(g, key, j, &s) == 0 && s.len)
                    (void)*(volatile const char *)&s.data[s.len - 1];
            }
            pz_gguf_arr_str(g, key, n - 1, &s);
        }
    }
    for (int64_t i = 0; i < pz_gguf_n_tensors(g); i++) {
        const pz_gguf_tensor *t = pz_gguf_tensor_at(g, i);
        if (pz_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->n_elems > (1u << 24)) continue;  // data already bounds-checked; keep runs fast
        float *out = malloc(t->n_elems * sizeof(float) + 1);
        if (out) pz_to_f32(t->type, t->data, out, t->n_elems);
        free(out);
    }
    pz_gguf_close(g);
    return 0;
}
