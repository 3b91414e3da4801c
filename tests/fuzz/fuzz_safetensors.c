// fuzz_safetensors.c — libFuzzer entry point for the safetensors reader: any
// input opens (and every tensor's bytes lie inside it) or fails with a message.
#include "common.h"
#include "safetensors.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[PZ_ERRLEN];
    err[0] = 0;
    pz_st *st = pz_st_open_buffer(data, size, err);
    if (!st) {
        if (!err[0]) __builtin_trap();
        return 0;
    }
    for (int64_t i = 0; i < pz_st_n_tensors(st); i++) {
        const pz_st_tensor *t = pz_st_tensor_at(st, i);
        if (pz_st_find(st, t->name) != t) __builtin_trap();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) __builtin_trap();
        if (t->nbytes) (void)*(volatile const uint8_t *)&p[t->nbytes - 1];
    }
    pz_st_metadata(st, "format");
    pz_st_close(st);
    return 0;
}
