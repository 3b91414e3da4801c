// backend_cpu.h — the CPU backend: host memory, oneDNN/OpenBLAS products
// (matmul.h), OpenMP for everything else. Created through
// pz_backend_create(PZ_BACKEND_CPU, ...) in backend.h.
#ifndef PZ_CPU_BACKEND_CPU_H
#define PZ_CPU_BACKEND_CPU_H

#include "backend.h"

pz_backend *pz_backend_cpu_create(int n_threads, char *err);

#endif
