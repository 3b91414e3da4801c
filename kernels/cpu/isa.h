// isa.h — which vector instruction set the CPU kernels use. Each fast
// kernel is compiled with a function-level target attribute and chosen at
// run time, so the build needs no -march flag and one binary runs on any
// x86-64: AVX-512 (F, BW, VL, DQ) where the processor has it, else AVX2
// with FMA, else plain C.
//
// A cap lowers the level, so tests can run every path a processor supports
// and benchmarks can compare them: PZ_CPU_ISA=plain|avx2|avx512 in the
// environment (read on first use), or pz_cpu_isa_set_max(). The cap never
// raises the level above what the processor has.
#ifndef PZ_CPU_ISA_H
#define PZ_CPU_ISA_H

typedef enum { PZ_ISA_PLAIN = 0, PZ_ISA_AVX2 = 1, PZ_ISA_AVX512 = 2 } pz_isa;

// The level in use: the processor's, lowered to the cap.
pz_isa pz_cpu_isa(void);
// The processor's level, whatever the cap.
pz_isa pz_cpu_isa_detected(void);
// Sets the cap (PZ_ISA_AVX512: no cap). Call it between kernel calls, not
// during one. Returns the level now in use.
pz_isa pz_cpu_isa_set_max(pz_isa max);
// "plain", "avx2" or "avx512".
const char *pz_cpu_isa_name(pz_isa isa);

// 1 when the AVX-512 kernels are in use (level PZ_ISA_AVX512).
int pz_cpu_have_avx512(void);
// 1 when they are and the processor also has AVX512_BF16.
int pz_cpu_have_avx512_bf16(void);

#endif
