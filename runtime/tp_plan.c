// tp_plan.c — see tp_plan.h.
#include "tp_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"  // PZ_ERRLEN

void pz_tp_split(int n, int tp, int rank, int align, int *off, int *len) {
    long units = ((long)n + align - 1) / align;
    long u0 = units * rank / tp, u1 = units * (rank + 1) / tp;
    long a = u0 * align, b = u1 * align;
    if (a > n) a = n;
    if (b > n) b = n;
    *off = (int)a;
    *len = (int)(b - a);
}

int pz_tp_check(const pz_config *c, int tp, char *err) {
    if (tp < 1 || c->n_head % tp) {
        if (err) snprintf(err, PZ_ERRLEN, "tensor parallel %d: the model's %d query heads do not split "
                          "evenly over %d ranks", tp, c->n_head, tp);
        return -1;
    }
    return 0;
}

int pz_tp_plan_layer(const pz_config *c, int layer, int tp, int rank, int align, pz_tp_layer *out,
                     char *err) {
    if (pz_tp_check(c, tp, err)) return -1;
    if (layer < 0 || layer >= c->n_layer || rank < 0 || rank >= tp || align < 1) {
        if (err) snprintf(err, PZ_ERRLEN, "tensor parallel: layer %d of %d, rank %d of %d, align %d",
                          layer, c->n_layer, rank, tp, align);
        return -1;
    }
    const pz_layer_spec *s = &c->layers[layer];
    const long long H = c->hidden, hd = c->head_dim;
    pz_tp_layer L = {0};
    L.kv_replicas = 1;
    switch (s->attn) {
    case PZ_ATTN_GQA: {
        int nkv = s->n_kv;
        if (nkv <= 0 || c->n_head % nkv) {
            if (err) snprintf(err, PZ_ERRLEN, "layer %d: %d KV heads for %d query heads", layer, nkv, c->n_head);
            return -1;
        }
        if (nkv % tp == 0) {
            L.attn_mode = PZ_TP_SHARDED;
            L.n_kv = nkv / tp, L.kv_head0 = rank * L.n_kv;
        } else if (tp % nkv == 0) {
            L.attn_mode = PZ_TP_SHARDED;
            L.kv_replicas = tp / nkv;
            L.n_kv = 1, L.kv_head0 = rank / L.kv_replicas;
        } else {
            L.attn_mode = PZ_TP_REPLICATED;
            L.n_kv = nkv, L.kv_head0 = 0;
        }
        if (L.attn_mode == PZ_TP_SHARDED) {
            L.n_q = c->n_head / tp, L.q_head0 = rank * L.n_q;
            L.all_reduces += tp > 1;
        } else {
            L.n_q = c->n_head, L.q_head0 = 0;
        }
        // norm + q, k, v rows + o columns
        L.params += H + ((long long)L.n_q * 2 + (long long)L.n_kv * 2) * hd * H;
        break;
    }
    case PZ_ATTN_LINEAR:
        L.attn_mode = PZ_TP_REPLICATED;
        L.params += H + H * H;
        break;
    default: L.attn_mode = PZ_TP_NONE; break;
    }
    switch (s->ffn) {
    case PZ_FFN_SWIGLU:
        L.ffn_mode = PZ_TP_SHARDED;
        pz_tp_split(s->n_ff, tp, rank, align, &L.ff0, &L.n_ff);
        L.all_reduces += tp > 1;
        L.params += H + 3LL * L.n_ff * H;
        break;
    case PZ_FFN_LINEAR:
        L.ffn_mode = PZ_TP_REPLICATED;
        L.params += H + H * H;
        break;
    default: L.ffn_mode = PZ_TP_NONE; break;
    }
    *out = L;
    return 0;
}

int pz_tp_fault(const char *what, int rank) {
    const char *v = getenv("PZ_TP_FAULT");
    size_t n = strlen(what);
    if (!v || strncmp(v, what, n) || (v[n] != ':' && v[n] != '@')) return 0;
    const char *at = strchr(v + n, '@');
    if (!at || atoi(at + 1) != rank) return 0;
    return v[n] == ':' ? atoi(v + n + 1) : 1;
}
