// fake_device.h — a test backend that behaves like a device whose memory
// the host cannot touch: it wraps the CPU backend, hands out memory from
// one arena kept PROT_NONE (mprotect) except while one of its own ops or
// copies runs, and checks each copy's direction against where its pointers
// are. Any host dereference of backend memory by the code under test is a
// SIGSEGV, so a stage that runs through it bit-identically to the plain
// CPU backend keeps every tensor in backend memory and moves data only by
// copies. Test-only (tests/test_devmem.c).
#ifndef PZ_FAKE_DEVICE_H
#define PZ_FAKE_DEVICE_H

#include <stddef.h>
#include "backend.h"

// A fake device of arena_bytes (virtual; freed blocks at the top of the
// arena are reused, others leak until destroy), running the CPU kernels
// with n_threads. NULL with err. Free with pz_backend_free.
pz_backend *pz_fake_device_create(int n_threads, size_t arena_bytes, char *err);

// Bytes of the arena in use, and its high-water mark.
size_t pz_fake_device_used(const pz_backend *b, size_t *peak);
// Ops and copies the fake device has run (each one unprotects the arena).
long pz_fake_device_calls(const pz_backend *b);
// Bytes copied device to host so far.
size_t pz_fake_device_d2h_bytes(const pz_backend *b);

#endif
