// graph.c — CUDA graphs over the backend's ordinary op calls, so that a
// caller (the engine's decode) can run a whole forward pass as one launch
// without knowing about graphs beyond arming one (backend_cuda.h).
//
// A graph is armed for the ops up to the next synchronize. Its first armed
// pass runs eagerly (a warm-up: scratch buffers grow and cuBLASLt's
// algorithm trials run, neither of which a capture allows); the second is
// captured and instantiated; later passes replay it. The op calls of a
// replayed pass must be the same as the captured ones: every op hashes its
// device pointers and sizes into a signature, and a replayed call whose
// signature differs breaks the graph (the pass fails at synchronize and
// the caller goes back to eager passes or a new graph). In a replay no
// kernel is enqueued by the calls; only host data moves:
//   - host-to-device copies and attention descriptors go through pinned
//     staging slices whose addresses the graph captured, so a replay
//     refreshes their contents and the graph's copy nodes carry the new
//     values (a replayed copy may be shorter than the captured one: page
//     tables grow; the captured length is copied);
//   - device-to-host copies land in pinned slices and are copied to the
//     caller's buffer after the launch, at synchronize.
// Pinned staging and the descriptors' device slices are sized at creation
// and never move. The backend's own scratch (cuBLASLt workspace, converted
// activations) can: a graph whose capture saw other scratch addresses is
// captured again on its next pass.
#include "cuda_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t off, bytes;  // in the pinned arena (and the device one for attention)
    void *dst;          // device-to-host: the caller's buffer of this pass
    int d2h;
} gslot;

struct pz_cuda_graph {
    int runs;  // passes completed: 0 warm-up next, 1 capture next, >= 2 replays
    int broken;
    cudaGraphExec_t exec;
    uint64_t *sig;
    int n_sig, cap_sig, cur_sig;
    gslot *slot;
    int n_slot, cap_slot, cur_slot;
    char *pinned, *dev;  // staging: host (cudaHostAlloc) and device, stage_bytes each
    size_t stage_bytes, used;
    void *scratch[3];    // the backend's scratch buffers the capture baked in (ws, xbuf, tbuf)
};

static void scratch_now(const pz_cuda *c, void *out[3]) {
    out[0] = c->ws, out[1] = c->xbuf, out[2] = c->tbuf;
}

uint64_t pz_cuda_sig(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;  // FNV-1a
    return h;
}

pz_cuda_graph *pz_cuda_graph_new(size_t stage_bytes, char *err) {
    pz_cuda_graph *g = calloc(1, sizeof *g);
    if (!g) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda graph: out of memory");
        return NULL;
    }
    g->stage_bytes = stage_bytes ? stage_bytes : (size_t)1 << 20;
    cudaError_t e = cudaHostAlloc((void **)&g->pinned, g->stage_bytes, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc((void **)&g->dev, g->stage_bytes);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda graph: staging of %zu bytes: %s", g->stage_bytes,
                          cudaGetErrorString(e));
        pz_cuda_graph_delete(g);
        return NULL;
    }
    return g;
}

void pz_cuda_graph_delete(pz_cuda_graph *g) {
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    cudaFreeHost(g->pinned);
    cudaFree(g->dev);
    free(g->sig);
    free(g->slot);
    free(g);
}

int pz_cuda_graph_arm(pz_cuda *c, pz_cuda_graph *g, char *err) {
    if (c->g) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda graph: a graph is already armed (synchronize first)");
        return -1;
    }
    if (g->broken) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda graph: this graph broke on an earlier pass; make a new one");
        return -1;
    }
    c->g = g;
    g->cur_sig = g->cur_slot = 0;
    void *now[3];
    scratch_now(c, now);
    if (g->exec && memcmp(now, g->scratch, sizeof now)) {
        // A scratch buffer grew (and moved) since the capture, for another
        // graph's or an eager pass's larger shapes: capture this one again.
        cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
    }
    if (g->runs == 0) {
        c->gmode = PZ_GRAPH_WARMUP;
    } else if (!g->exec) {
        g->n_sig = g->n_slot = 0;
        g->used = 0;
        cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) {
            c->g = NULL;
            if (err) snprintf(err, PZ_ERRLEN, "cuda graph: begin capture: %s", cudaGetErrorString(e));
            return -1;
        }
        c->gmode = PZ_GRAPH_CAPTURE;
    } else {
        c->gmode = PZ_GRAPH_REPLAY;
    }
    return 0;
}

static void breaks(pz_cuda *c, const char *why, int at) {
    c->g->broken = 1;
    pz_cuda_fail(c, "cuda graph replay: call %d %s", at, why);
}

static int push(void **arr, int *n, int *cap, size_t esize) {
    if (*n < *cap) return 0;
    int nc = *cap ? 2 * *cap : 256;
    void *p = realloc(*arr, (size_t)nc * esize);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

int pz_cuda_graph_op(pz_cuda *c, uint64_t sig) {
    pz_cuda_graph *g = c->g;
    if (!g || c->gmode == PZ_GRAPH_WARMUP) return 0;
    if (c->gmode == PZ_GRAPH_CAPTURE) {
        if (push((void **)&g->sig, &g->n_sig, &g->cap_sig, sizeof *g->sig)) {
            pz_cuda_fail(c, "cuda graph: out of memory");
            g->broken = 1;
            return 0;
        }
        g->sig[g->n_sig++] = sig;
        return 0;
    }
    if (g->broken) return 1;
    if (g->cur_sig >= g->n_sig || g->sig[g->cur_sig] != sig)
        breaks(c, g->cur_sig >= g->n_sig ? "is one more than the capture made" : "differs from the capture",
               g->cur_sig);
    g->cur_sig++;
    return 1;
}

// The next staging slot: captured (a fresh slice) or replayed (the same one).
static gslot *slot_for(pz_cuda *c, size_t bytes, int d2h, void *dst) {
    pz_cuda_graph *g = c->g;
    if (c->gmode == PZ_GRAPH_CAPTURE) {
        size_t need = (bytes + 255) / 256 * 256;
        if (g->used + need > g->stage_bytes ||
            push((void **)&g->slot, &g->n_slot, &g->cap_slot, sizeof *g->slot)) {
            g->broken = 1;
            pz_cuda_fail(c, "cuda graph: staging full (%zu of %zu bytes); make the graph with more",
                         g->used + need, g->stage_bytes);
            return NULL;
        }
        gslot *s = &g->slot[g->n_slot++];
        *s = (gslot){.off = g->used, .bytes = bytes, .dst = dst, .d2h = d2h};
        g->used += need;
        return s;
    }
    if (g->broken) return NULL;
    if (g->cur_slot >= g->n_slot) {
        breaks(c, "stages more data than the capture", g->cur_sig);
        return NULL;
    }
    gslot *s = &g->slot[g->cur_slot++];
    if (s->d2h != d2h || (d2h ? bytes != s->bytes : bytes > s->bytes)) {
        breaks(c, "moves other bytes than the capture", g->cur_sig);
        return NULL;
    }
    if (d2h) s->dst = dst;
    return s;
}

int pz_cuda_graph_copy(pz_cuda *c, void *dst, const void *src, size_t bytes, int d2h, char *err) {
    uint64_t sig = pz_cuda_sig(d2h ? 0xd2 : 0x42, d2h ? (const void *)&src : (const void *)&dst, sizeof(void *));
    pz_cuda_graph_op(c, sig);
    gslot *s = slot_for(c, bytes, d2h, dst);
    if (!s) {
        if (err) snprintf(err, PZ_ERRLEN, "%s", c->err);
        return -1;
    }
    char *stage = c->g->pinned + s->off;
    if (!d2h) memcpy(stage, src, bytes);
    if (c->gmode == PZ_GRAPH_REPLAY) return 0;
    // Captured: the copy node reads (or fills) the slice; a replay reuses it.
    cudaError_t e = d2h ? cudaMemcpyAsync(stage, src, bytes, cudaMemcpyDeviceToHost, c->stream)
                        : cudaMemcpyAsync(dst, stage, s->bytes, cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "copy (captured): %s", cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

const void *pz_cuda_graph_stage(pz_cuda *c, const void *host, size_t bytes, uint64_t sig, char *err) {
    pz_cuda_graph_op(c, sig);
    gslot *s = slot_for(c, bytes, 0, NULL);
    if (!s) {
        if (err) snprintf(err, PZ_ERRLEN, "%s", c->err);
        return NULL;
    }
    memcpy(c->g->pinned + s->off, host, bytes);
    void *d = c->g->dev + s->off;
    if (c->gmode == PZ_GRAPH_CAPTURE) {
        cudaError_t e = cudaMemcpyAsync(d, c->g->pinned + s->off, s->bytes, cudaMemcpyHostToDevice, c->stream);
        if (e != cudaSuccess) {
            if (err) snprintf(err, PZ_ERRLEN, "descriptors (captured): %s", cudaGetErrorString(e));
            return NULL;
        }
    }
    return d;
}

// Ends the armed pass before the stream is synchronized: ends the capture
// and instantiates the graph, then launches it (capture and replay).
cudaError_t pz_cuda_graph_launch(pz_cuda *c) {
    pz_cuda_graph *g = c->g;
    cudaError_t e = cudaSuccess;
    if (c->gmode == PZ_GRAPH_CAPTURE) {
        cudaGraph_t graph = NULL;
        e = cudaStreamEndCapture(c->stream, &graph);
        if (e == cudaSuccess && !g->broken && !c->failed) {
            e = cudaGraphInstantiate(&g->exec, graph, 0);
            scratch_now(c, g->scratch);
        }
        else if (e == cudaSuccess)
            g->broken = 1;
        if (graph) cudaGraphDestroy(graph);
        if (e != cudaSuccess) g->broken = 1;
    } else if (c->gmode == PZ_GRAPH_REPLAY && !g->broken && g->cur_sig != g->n_sig) {
        breaks(c, "ends the pass before the capture did", g->cur_sig);
    }
    if ((c->gmode == PZ_GRAPH_CAPTURE || c->gmode == PZ_GRAPH_REPLAY) && !g->broken && e == cudaSuccess)
        e = cudaGraphLaunch(g->exec, c->stream);
    return e;
}

// After the stream is synchronized: the device-to-host copies reach the
// caller's buffers, and the pass is over.
void pz_cuda_graph_done(pz_cuda *c, int ok) {
    pz_cuda_graph *g = c->g;
    if (ok && (c->gmode == PZ_GRAPH_CAPTURE || c->gmode == PZ_GRAPH_REPLAY) && !g->broken)
        for (int i = 0; i < g->n_slot; i++)
            if (g->slot[i].d2h) memcpy(g->slot[i].dst, g->pinned + g->slot[i].off, g->slot[i].bytes);
    if (ok && !g->broken) g->runs++;
    c->g = NULL;
    c->gmode = PZ_GRAPH_OFF;
}
