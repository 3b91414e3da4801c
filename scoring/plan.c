// plan.c — capacity planning from the cost model (see plan.h).
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "pricing.h"

// prefill(B), the decode step at B, TTFT and TPOT: the serving model of pricing.h.
static int timings(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long input, long output, long b,
                   pz_plan *r, char *err) {
    pz_pricer pr = {.model = c, .hw = *hw, .cp = *p};
    pz_serve_scenario sc = {.request = 1, .input = input, .output = output};
    pz_serve_cost k;
    if (pz_price_serve_model(&pr, c, &sc, b, 1, &k, err)) return -1;
    r->prefill_s = k.prefill_s;
    r->step_s = k.step_s;
    r->ttft_s = k.ttft_s;
    r->tpot_s = k.time_s / (double)output;
    r->batch = b;
    r->tok_s_replica = pz_serve_throughput(&sc, b, k.time_s);
    return 0;
}

int pz_plan_eval(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long input, long output, long batch,
                 int gpus, pz_plan *out, char *err) {
    memset(out, 0, sizeof *out);
    if (input < 1 || output < 1) return pz_err(err, "input and output lengths must be at least 1");
    if (gpus < 1 || gpus % p->tp != 0) return pz_err(err, "%d GPUs is not a multiple of tp %d", gpus, p->tp);
    if (pz_cost_check(c, hw, p, err)) return -1;
    long seq = input + output;
    out->tp = p->tp;
    out->gpus = gpus;
    out->replicas = gpus / p->tp;
    out->max_batch = pz_cost_max_batch(c, hw, p, seq);
    if (out->max_batch == 0) {
        pz_cost_memory(c, hw, p, 1, seq, &out->mem);
        return pz_err(err, "one sequence of %ld tokens does not fit at tp %d: needs %.1f GB per GPU of %.1f GB usable",
                      seq, p->tp, out->mem.total / 1e9, out->mem.usable / 1e9);
    }
    if (batch <= 0) batch = out->max_batch;
    else if (!pz_cost_fits(c, hw, p, batch, seq)) {
        pz_cost_memory(c, hw, p, batch, seq, &out->mem);
        return pz_err(err, "batch %ld does not fit at tp %d (needs %.1f GB per GPU of %.1f GB usable; the largest is %ld)",
                      batch, p->tp, out->mem.total / 1e9, out->mem.usable / 1e9, out->max_batch);
    }
    pz_cost_memory(c, hw, p, batch, seq, &out->mem);
    if (timings(c, hw, p, input, output, batch, out, err)) return -1;
    out->tok_s_gpu = out->tok_s_replica / p->tp;
    out->tok_s_total = out->tok_s_replica * out->replicas;
    out->req_s_total = out->tok_s_total / (double)output;
    return 0;
}

int pz_plan_for_slo(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, int fixed_tp, long input,
                    long output, double qps, double ttft_s, double tpot_s, pz_plan_slo *out, char *err) {
    memset(out, 0, sizeof *out);
    if (input < 1 || output < 1) return pz_err(err, "input and output lengths must be at least 1");
    if (!(qps > 0) || !(ttft_s > 0) || !(tpot_s > 0)) return pz_err(err, "qps and SLOs must be positive");
    static const int tps[] = {1, 2, 4, 8};
    int any_fit = 0, ttft_ok1 = 0, tpot_ok1 = 0;
    double best_ttft = INFINITY, best_tpot = INFINITY;
    long seq = input + output;
    char e2[PZ_ERRLEN];
    for (size_t k = 0; k < sizeof tps / sizeof tps[0]; k++) {
        pz_cost_params q = *p;
        q.tp = fixed_tp ? p->tp : tps[k];
        if (fixed_tp && k > 0) break;
        if (pz_cost_check(c, hw, &q, e2)) continue;
        long maxb = pz_cost_max_batch(c, hw, &q, seq);
        if (maxb == 0) continue;
        any_fit = 1;
        pz_plan r;
        if (timings(c, hw, &q, input, output, 1, &r, err)) return -1;
        if (r.ttft_s < best_ttft) best_ttft = r.ttft_s;
        if (r.tpot_s < best_tpot) best_tpot = r.tpot_s;
        int ok_t = r.ttft_s <= ttft_s, ok_p = r.tpot_s <= tpot_s;
        ttft_ok1 |= ok_t;
        tpot_ok1 |= ok_p;
        if (!ok_t || !ok_p) continue;
        // TTFT and TPOT grow with the batch: bisect for the largest batch that meets both.
        long lo = 1, hi = maxb;
        pz_plan t;
        if (timings(c, hw, &q, input, output, hi, &t, err)) return -1;
        if (t.ttft_s <= ttft_s && t.tpot_s <= tpot_s) lo = hi;
        while (hi - lo > 1) {
            long mid = lo + (hi - lo) / 2;
            if (timings(c, hw, &q, input, output, mid, &t, err)) return -1;
            if (t.ttft_s <= ttft_s && t.tpot_s <= tpot_s) lo = mid;
            else hi = mid;
        }
        pz_plan cand;
        if (timings(c, hw, &q, input, output, lo, &cand, err)) return -1;
        double req_s = cand.tok_s_replica / (double)output;  // per replica
        double reps = ceil(qps / req_s - 1e-9);
        if (reps < 1) reps = 1;
        if (reps * q.tp > 1e6) continue;
        int gpus = (int)reps * q.tp;
        if (!out->found || gpus < out->best.gpus) {
            if (pz_plan_eval(c, hw, &q, input, output, lo, gpus, &out->best, err)) return -1;
            out->found = 1;
        }
    }
    if (out->found) return 0;
    if (!any_fit) {
        snprintf(out->binding, sizeof out->binding, "memory");
        snprintf(out->why, sizeof out->why, "the model does not fit on %s at any tensor-parallel degree tried", hw->name);
    } else if (!ttft_ok1 && !tpot_ok1) {
        snprintf(out->binding, sizeof out->binding, "ttft+tpot");
        snprintf(out->why, sizeof out->why, "even at batch 1 the best TTFT is %.1f ms and TPOT %.2f ms", best_ttft * 1e3,
                 best_tpot * 1e3);
    } else if (!ttft_ok1) {
        snprintf(out->binding, sizeof out->binding, "ttft");
        snprintf(out->why, sizeof out->why, "even at batch 1 the best TTFT is %.1f ms", best_ttft * 1e3);
    } else if (!tpot_ok1) {
        snprintf(out->binding, sizeof out->binding, "tpot");
        snprintf(out->why, sizeof out->why, "even at batch 1 the best TPOT is %.2f ms", best_tpot * 1e3);
    } else {
        snprintf(out->binding, sizeof out->binding, "ttft+tpot");
        snprintf(out->why, sizeof out->why,
                 "TTFT and TPOT are each met by some parallel degree, never both together (best %.1f ms, %.2f ms)",
                 best_ttft * 1e3, best_tpot * 1e3);
    }
    return 0;
}
