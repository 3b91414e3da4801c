// isa.c — see isa.h.
#include "isa.h"

#include <stdlib.h>
#include <string.h>

pz_isa pz_cpu_isa_detected(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            have = PZ_ISA_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            have = PZ_ISA_AVX2;
        else
            have = PZ_ISA_PLAIN;
    }
    return (pz_isa)have;
}

static int cap = -1;  // -1: not read from the environment yet

static int env_cap(void) {
    const char *s = getenv("PZ_CPU_ISA");
    if (s && strcmp(s, "plain") == 0) return PZ_ISA_PLAIN;
    if (s && strcmp(s, "avx2") == 0) return PZ_ISA_AVX2;
    return PZ_ISA_AVX512;
}

pz_isa pz_cpu_isa(void) {
    if (cap < 0) cap = env_cap();
    pz_isa d = pz_cpu_isa_detected();
    return (int)d < cap ? d : (pz_isa)cap;
}

pz_isa pz_cpu_isa_set_max(pz_isa max) {
    cap = (int)max;
    return pz_cpu_isa();
}

const char *pz_cpu_isa_name(pz_isa isa) {
    switch (isa) {
    case PZ_ISA_AVX512: return "avx512";
    case PZ_ISA_AVX2: return "avx2";
    default: return "plain";
    }
}

int pz_cpu_have_avx512(void) { return pz_cpu_isa() >= PZ_ISA_AVX512; }

int pz_cpu_have_avx512_bf16(void) {
    static int have = -1;
    if (have < 0) {
        // cpuid leaf 7 subleaf 1, eax bit 5 = AVX512_BF16.
        unsigned a = 0, b = 0, c = 0, d = 0;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
        have = (a >> 5) & 1;
    }
    return pz_cpu_have_avx512() && have;
}
