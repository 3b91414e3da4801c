// cmd_search.c — `puzzle search --db RUN.db --budget 8xH100 ...`: chooses one
// attention and one FFN variant per layer from the run's scored library so
// that the child is as close to the parent as possible within the budget
// (puzzle/search.h builds the problem, solver/ solves it), stores the search
// and its solutions in the run database and prints them. Baselines on the
// same scores and costs with --method.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "search.h"
#include "search_ctx.h"

#define MAX_BATCHES 32
#define MAX_SOLUTIONS 64

void pz_usage_search(FILE *out) {
    fprintf(out,
            "usage: puzzle search --db RUN.db --budget N x NAME | cpu [--scenario S] [--throughput TOK_S | --speedup X]\n"
            "                     [--max-memory GIB] [--max-latency MS] [--max-ttft MS] [--max-params N]\n"
            "                     [--batch B|auto] [--solutions K] [--diversity D] [--objective kl|loss]\n"
            "                     [--method mip|greedy|uniform-ffn|drop-layers|shortgpt] [--time-limit S] [--tp N]\n"
            "                     [--dtype bf16|fp8] [--kv-dtype bf16|fp8] [--scores HASH] [--device DEV]\n"
            "                     [--in-context [--rounds N] [--tries N] [--step-penalty X] [--context-tokens N]\n"
            "                      [--context-data FILE] [--margin X] [--threads T] [--prec f32|bf16]]\n\n"
            "Chooses one attention and one FFN variant per layer from the run's library, minimizing the sum\n"
            "of replace-1-block scores (puzzle score) within the budget: a mixed-integer program solved with\n"
            "GLPK's branch-and-cut. The search and its solutions are stored in the run database (tables\n"
            "searches, solutions, solution_layers; views solution_summary, solution_choices, pareto_front).\n"
            "An infeasible budget is answered with the binding constraint and the closest feasible value.\n\n"
            "  --budget N x NAME   N accelerators (scoring/hardware: h100_sxm, h200_sxm, a100_80gb_sxm, b200,\n"
            "                      l40s, or aliases like H100), priced by the roofline cost model as tp-way\n"
            "                      tensor-parallel replicas; cpu: this CPU, priced by `puzzle profile` rows\n"
            "  --scenario S        input=I,output=O (serving requests; default input=128,output=1024),\n"
            "                      decode:BxC (one decode step of B sequences over C cached tokens) or\n"
            "                      prefill:BxS (one prefill of B prompts of S tokens)\n"
            "  --throughput TOK_S  at least this many output tokens/s in total (prompt tokens/s for prefill)\n"
            "  --speedup X         at least X times the parent's best throughput under the same budget and\n"
            "                      scenario (for decode:BxC, X times the parent's decode speed)\n"
            "  --max-memory GIB    memory per device (default: the device's usable memory)\n"
            "  --max-latency MS    decode step (time per output token) at most MS\n"
            "  --max-ttft MS       time to first token at most MS (request or prefill scenarios)\n"
            "  --max-params N      at most N parameters (suffixes K, M, B allowed: 100M)\n"
            "  --batch B|auto      sequences in flight (default auto: try powers of two, or the batches\n"
            "                      profiled on the CPU, and keep the best child)\n"
            "  --solutions K       K diverse solutions (default 1); each differs from every earlier one in\n"
            "                      at least a fraction D of the layer choices (--diversity, default 0.2)\n"
            "  --objective         kl (default: KL divergence to the parent) or loss (LM-loss change)\n"
            "  --method            mip (default), or a baseline on the same scores and costs: greedy (per\n"
            "                      layer, by score per unit of time saved), uniform-ffn (one FFN width\n"
            "                      everywhere), drop-layers (remove whole layers by score), shortgpt\n"
            "                      (remove whole layers by least block influence, 1 - cos(layer input,\n"
            "                      output), as ShortGPT; measured by `puzzle score`)\n"
            "  --time-limit S      per MIP solve (default 60); the best solution found is kept\n"
            "  --tp N              tensor-parallel degree (default: the parent's fastest that divides N)\n"
            "  --dtype, --kv-dtype weights/GEMMs and KV cache in bf16 (default) or fp8 (GPU budgets)\n"
            "  --scores HASH       which scoring data (default: the data covering the most blocks)\n"
            "  --device DEV        cpu budgets: which profiled CPU device (default: the only one); GPU\n"
            "                      budgets: price each sub-block by DEV's measured rows (puzzle profile\n"
            "                      --device cuda) where they exist, at tp 1, and by the roofline elsewhere\n"
            "  --hardware-dir DIR  where hardware JSON files live\n"
            "  --in-context        search in context (mip only): after the one-shot solution, score every\n"
            "                      candidate swapped into THAT child (KL against the parent, minus the child's\n"
            "                      own), solve again on these scores, measure the new child, and repeat while\n"
            "                      its measured KL falls; every round is stored (table context_rounds, scores\n"
            "                      in context_scores) and a rerun continues from the last one\n"
            "  --rounds N          at most N rounds after the one-shot child (default 3)\n"
            "  --tries N           solves per round, each measured, the best kept: penalty 0, then X, 2X, ...\n"
            "                      nats per layer half changed from the round's base child (default 4)\n"
            "  --step-penalty X    that X (default 0.005): a trust region for the first-order scores\n"
            "  --context-tokens N  tokens of the context windows (default: as many as the scores used)\n"
            "  --context-data FILE their text (default: the file the scores were computed on)\n"
            "  --margin X          rescore only candidates whose one-shot score is within X (nats) of the\n"
            "                      chosen variant's in their group (default: all); the others keep the\n"
            "                      one-shot difference\n"
            "  --threads T, --prec scorer threads (default: all cores) and products (default f32)\n"
            "  --result-file FILE  write the chosen solution's id there (the in-context search's best child;\n"
            "                      0 when no child meets the budget): what `puzzle run` reads\n");
}

typedef struct {
    const char *db, *budget, *scenario, *scores, *device, *hw_dir, *dtype_cpu, *method;
    pz_search_limits lim;
    long batch, tp, n_solutions;
    double diversity, time_limit;
    pz_search_objective obj;
    pz_cost_params cp;
    int dtype_given;
    int in_context;
    pz_ctx_params ctx;
    const char *result_file;
} opts;

static int parse_count(const char *cmd, const char *opt, const char *v, double *out) {
    char *end;
    double x = strtod(v, &end);
    double mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1e3, end++;
    else if (*end == 'M' || *end == 'm') mult = 1e6, end++;
    else if (*end == 'B' || *end == 'b' || *end == 'G' || *end == 'g') mult = 1e9, end++;
    if (end == v || *end || !(x > 0) || !isfinite(x)) {
        fprintf(stderr, "puzzle %s: %s wants a positive count (e.g. 100M), got '%s'\n", cmd, opt, v);
        return -1;
    }
    *out = x * mult;
    return 0;
}

// --result-file: the chosen solution's id and a newline, written whole (a temporary, renamed).
static int write_result(const char *path, long id, char *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return pz_err(err, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "%ld\n", id);
    if (fclose(f) || rename(tmp, path)) return pz_err(err, "writing %s failed", path);
    return 0;
}

static int parse(int argc, char **argv, opts *o) {
    const char *cmd = "search", *v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double x;
        long n;
        if (!strcmp(a, "--db")) {
            if (!(o->db = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--budget")) {
            if (!(o->budget = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--scenario")) {
            if (!(o->scenario = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--scores")) {
            if (!(o->scores = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--device")) {
            if (!(o->device = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--hardware-dir")) {
            if (!(o->hw_dir = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--method")) {
            if (!(o->method = pz_arg_value(cmd, argc, argv, &i))) return -1;
            if (strcmp(o->method, "mip") && strcmp(o->method, "greedy") && strcmp(o->method, "uniform-ffn") &&
                strcmp(o->method, "drop-layers") && strcmp(o->method, "shortgpt")) {
                fprintf(stderr, "puzzle search: --method wants mip, greedy, uniform-ffn, drop-layers or shortgpt, "
                                "got '%s'\n", o->method);
                return -1;
            }
        } else if (!strcmp(a, "--in-context")) {
            o->in_context = 1;
        } else if (!strcmp(a, "--result-file")) {
            if (!(o->result_file = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--rounds")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1000, &n)) return -1;
            o->ctx.rounds = (int)n;
        } else if (!strcmp(a, "--tries")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 30, &n)) return -1;
            o->ctx.tries = (int)n;
        } else if (!strcmp(a, "--step-penalty")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0, 1e6, &o->ctx.step_penalty))
                return -1;
        } else if (!strcmp(a, "--context-tokens")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 2, 1L << 40, &o->ctx.tokens))
                return -1;
        } else if (!strcmp(a, "--context-data")) {
            if (!(o->ctx.data = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--margin")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0, 1e30, &o->ctx.margin))
                return -1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1024, &n)) return -1;
            o->ctx.threads = (int)n;
        } else if (!strcmp(a, "--prec")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &o->ctx.prec)) return -1;
            if (o->ctx.prec == PZ_DT_E4M3) {
                fprintf(stderr, "puzzle search: --prec wants f32 or bf16\n");
                return -1;
            }
        } else if (!strcmp(a, "--throughput")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-9, 1e15, &o->lim.throughput))
                return -1;
        } else if (!strcmp(a, "--speedup")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-3, 1e6, &o->lim.speedup))
                return -1;
        } else if (!strcmp(a, "--max-memory")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-6, 1e9, &x)) return -1;
            o->lim.max_memory = x * 1073741824.0;
        } else if (!strcmp(a, "--max-latency") || !strcmp(a, "--max-ttft")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-9, 1e12, &x)) return -1;
            *(!strcmp(a, "--max-ttft") ? &o->lim.max_ttft : &o->lim.max_latency) = x / 1e3;
        } else if (!strcmp(a, "--max-params")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || parse_count(cmd, a, v, &o->lim.max_params)) return -1;
        } else if (!strcmp(a, "--batch")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return -1;
            if (!strcmp(v, "auto")) o->batch = 0;
            else if (pz_arg_int(cmd, a, v, 1, 1000000, &o->batch)) return -1;
        } else if (!strcmp(a, "--solutions")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, MAX_SOLUTIONS, &o->n_solutions))
                return -1;
        } else if (!strcmp(a, "--diversity")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0.001, 1, &o->diversity)) return -1;
        } else if (!strcmp(a, "--time-limit")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0.01, 1e6, &o->time_limit))
                return -1;
        } else if (!strcmp(a, "--tp")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1024, &o->tp)) return -1;
        } else if (!strcmp(a, "--objective")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return -1;
            if (!strcmp(v, "kl")) o->obj = PZ_OBJ_KL;
            else if (!strcmp(v, "loss")) o->obj = PZ_OBJ_LOSS;
            else {
                fprintf(stderr, "puzzle search: --objective wants kl or loss, got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--dtype") || !strcmp(a, "--kv-dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return -1;
            if (!strcmp(a, "--dtype") && (!strcmp(v, "f32") || !strcmp(v, "fp32"))) {
                o->dtype_cpu = "f32";  // the profiled CPU dtypes
                continue;
            }
            if (pz_cost_dtype_parse(v, !strcmp(a, "--dtype") ? &o->cp.dtype : &o->cp.kv_dtype)) {
                fprintf(stderr, "puzzle search: %s wants bf16 or fp8 (f32 for cpu profiles), got '%s'\n", a, v);
                return -1;
            }
            if (!strcmp(a, "--dtype")) o->dtype_cpu = v, o->dtype_given = 1;
        } else {
            fprintf(stderr, "puzzle search: unknown %s '%s'\n", a[0] == '-' ? "option" : "argument", a);
            return -1;
        }
    }
    if (!o->db || !o->budget) {
        fprintf(stderr, "puzzle search: %s is missing (see puzzle search --help)\n", !o->db ? "--db" : "--budget");
        return -1;
    }
    if (o->in_context && strcmp(o->method, "mip")) {
        fprintf(stderr, "puzzle search: --in-context applies to --method mip\n");
        return -1;
    }
    if (o->lim.throughput > 0 && o->lim.speedup > 0) {
        fprintf(stderr, "puzzle search: --throughput and --speedup are alternatives; give one\n");
        return -1;
    }
    return 0;
}

// ---- solving ---------------------------------------------------------------------------------
typedef struct {
    pz_solver_solution sol;
    pz_search_eval ev;
    long batch;
} found;

// bi: the parent's block influence per layer (shortgpt only).
static int run_method(pz_solver *p, const opts *o, const pz_solver_params *sp, const double *bi, int n_layer,
                      pz_solver_solution *sol, char *err) {
    if (!strcmp(o->method, "greedy")) return pz_solver_greedy(p, 0, sol, err);
    if (!strcmp(o->method, "uniform-ffn")) return pz_solver_uniform(p, sol, err);
    if (!strcmp(o->method, "drop-layers")) return pz_solver_drop_layers(p, sol, err);
    if (!strcmp(o->method, "shortgpt")) return pz_solver_drop_layers_by(p, bi, n_layer, sol, err);
    return pz_solver_solve(p, sp, sol, err);
}

static int is_solution(const pz_solver_solution *s) {
    return s->status == PZ_SOLVER_OPTIMAL || s->status == PZ_SOLVER_FEASIBLE;
}

// The parent's reference throughput: its best over the batches where it fits.
static double parent_reference(pz_search *s, const long *batches, int nb, const pz_search_limits *lim,
                               pz_search_eval *best, char *err) {
    double ref = 0;
    memset(best, 0, sizeof *best);
    for (int b = 0; b < nb; b++) {
        pz_search_eval ev;
        if (pz_search_evaluate(s, batches[b], NULL, &ev, err)) return -1;
        int fits = lim->max_memory > 0 ? ev.memory_bytes <= lim->max_memory : ev.fits;
        if (fits && ev.throughput > ref) ref = ev.throughput, *best = ev;
    }
    if (ref == 0 && pz_search_evaluate(s, batches[0], NULL, best, err) == 0) ref = best->throughput;  // fits nowhere
    return ref;
}

// ---- the database --------------------------------------------------------------------------------

static int store(pz_rundb *rdb, const opts *o, pz_search *s, const char *command, const pz_search_eval *par,
                 double ref, const char *status, const char *explanation, const pz_solver_infeasibility *inf,
                 long inf_batch, const found *sols, int n_sols, double wall, long *search_id, long *first_id,
                 char *err) {
    char bm[32];
    if (o->batch) snprintf(bm, sizeof bm, "%ld", o->batch);
    else snprintf(bm, sizeof bm, "auto");
    const pz_search_limits *l = &o->lim;
#define LIM(x) ((x) > 0 ? (x) : NAN)  // an unset limit is NULL
    pz_rundb_search row = {command, o->method, o->budget, pz_search_device(s), pz_search_dtype(s),
                           pz_search_replicas(s) * pz_search_tp(s), pz_search_tp(s), o->scenario, bm,
                           o->obj == PZ_OBJ_KL ? "kl" : "loss", pz_search_data_hash(s), LIM(l->throughput),
                           LIM(l->speedup), LIM(l->max_memory), LIM(l->max_latency), LIM(l->max_ttft),
                           LIM(l->max_params), o->n_solutions, o->diversity, par->batch, ref, par->time_s, status,
                           explanation && *explanation ? explanation : NULL, n_sols, wall};
#undef LIM
    int n_cons = inf ? inf->n_constraints : 0, rc = -1;
    const pz_config *pc = pz_search_parent(s);
    pz_rundb_constraint *cons = calloc((size_t)n_cons + 1, sizeof *cons);
    pz_rundb_solution *rs = calloc((size_t)n_sols + 1, sizeof *rs);
    pz_rundb_solution_layer *layers = calloc((size_t)(n_sols + 1) * (size_t)pc->n_layer, sizeof *layers);
    if (!cons || !rs || !layers) {
        pz_err(err, "out of memory");
        goto out;
    }
    for (int c = 0; c < n_cons; c++)
        cons[c] = (pz_rundb_constraint){inf->names[c], inf_batch, inf->rhs[c], inf->min_value[c],
                                        isfinite(inf->ratio[c]) ? inf->ratio[c] : NAN, inf->violated[c],
                                        c == inf->binding};
    int mip = !strcmp(o->method, "mip");
    for (int k = 0; k < n_sols; k++) {
        const found *f = &sols[k];
        int n_changed = 0;
        for (int g = 0; g < pz_search_n_groups(s); g++) n_changed += !pz_search_item_at(s, g, f->sol.choice[g])->is_parent;
        pz_rundb_solution_layer *ls = &layers[(size_t)k * (size_t)pc->n_layer];
        rs[k] = (pz_rundb_solution){k + 1, mip ? pz_solver_status_name(f->sol.status) : "baseline", f->sol.objective,
                                    mip && isfinite(f->sol.bound) ? f->sol.bound : NAN, f->batch, f->ev.time_s,
                                    f->ev.throughput, ref > 0 ? f->ev.throughput / ref : NAN, f->ev.latency_s,
                                    isfinite(f->ev.ttft_s) ? f->ev.ttft_s : NAN, f->ev.memory_bytes, f->ev.params,
                                    n_changed, f->sol.seconds, ls, pc->n_layer};
        // Per layer: merge the groups of each layer.
        for (int li = 0; li < pc->n_layer; li++) {
            const pz_layer_spec *pl = &pc->layers[li];
            const pz_variant pa = {.attn = pl->attn, .size = pl->attn == PZ_ATTN_GQA ? pl->n_kv : 0};
            const pz_variant pf = {.ffn = pl->ffn, .size = pl->ffn == PZ_FFN_SWIGLU ? pl->n_ff : 0};
            pz_rundb_solution_layer *L = &ls[li];
            L->layer = li, L->attn = pa, L->ffn = pf;
            for (int g = 0; g < pz_search_n_groups(s); g++) {
                const pz_search_item *it = pz_search_item_at(s, g, f->sol.choice[g]);
                if (it->layer != li) continue;
                L->score += it->score;
                if (it->sub != PZ_SUB_FFN) {
                    L->attn = it->attn;
                    snprintf(L->attn_block, sizeof L->attn_block, "%s", it->attn_block);
                }
                if (it->sub != PZ_SUB_ATTN) {
                    L->ffn = it->ffn;
                    snprintf(L->ffn_block, sizeof L->ffn_block, "%s", it->ffn_block);
                }
            }
            // The library holds one block per variant, so a half is the parent's exactly when its variant is.
            L->attn_is_parent = pz_variant_eq(PZ_SUB_ATTN, L->attn, pa);
            L->ffn_is_parent = pz_variant_eq(PZ_SUB_FFN, L->ffn, pf);
        }
    }
    rc = pz_rundb_record_search(rdb, &row, cons, n_cons, rs, n_sols, search_id, first_id, err);
out:
    free(cons);
    free(rs);
    free(layers);
    return rc;
}

// ---- search in context ---------------------------------------------------------------------------
// What the rounds' re-solves need (puzzle/search_ctx.h, pz_ctx_solve_fn).
typedef struct {
    pz_rundb *db;
    const opts *o;
    pz_search *s;
    const char *command;
    const pz_search_eval *par;
    double ref;
    long batch;
    pz_solver_params sp;
} ctx_user;

// Solves at the one-shot child's batch with the scores as they are, stores it as a search.
static int ctx_solve(void *user, int round, int *choice, long *solution_id, double *objective, char *err) {
    ctx_user *u = user;
    pz_solver *p = pz_search_problem(u->s, u->batch, &u->o->lim, u->ref, err);
    if (!p) return -1;
    found f;
    memset(&f, 0, sizeof f);
    int rc = pz_solver_solve(p, &u->sp, &f.sol, err);
    pz_solver_free(p);
    if (rc) return -1;
    if (!is_solution(&f.sol)) {
        pz_solver_solution_free(&f.sol);
        return 1;
    }
    f.batch = u->batch;
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "%s [in context, round %d]", u->command, round);
    opts o1 = *u->o;
    o1.n_solutions = 1;
    long sid = 0, first = 0;
    if (pz_search_evaluate(u->s, u->batch, f.sol.choice, &f.ev, err) ||
        store(u->db, &o1, u->s, cmd, u->par, u->ref, "solved", NULL, NULL, 0, &f, 1, f.sol.seconds, &sid, &first,
              err)) {
        pz_solver_solution_free(&f.sol);
        return -1;
    }
    memcpy(choice, f.sol.choice, sizeof(int) * (size_t)pz_search_n_groups(u->s));
    *solution_id = first, *objective = f.sol.objective;
    pz_solver_solution_free(&f.sol);
    return 0;
}

// ---- printing ------------------------------------------------------------------------------------
static void print_changes(pz_search *s, const int *choice) {
    int n = 0;
    printf("  changed:");
    for (int g = 0; g < pz_search_n_groups(s); g++) {
        const pz_search_item *it = pz_search_item_at(s, g, choice[g]);
        if (it->is_parent) continue;
        char a[32], f[32];
        pz_variant_name(PZ_SUB_ATTN, &it->attn, a, sizeof a);
        pz_variant_name(PZ_SUB_FFN, &it->ffn, f, sizeof f);
        printf("%s L%02d %s%s%s", !n ? "" : n % 6 ? "," : ",\n          ", it->layer,
               it->sub == PZ_SUB_FFN ? "ffn " : it->sub == PZ_SUB_ATTN ? "attn " : "",
               it->sub == PZ_SUB_FFN ? f : a, it->sub == PZ_SUB_PAIR ? "+" : "");
        if (it->sub == PZ_SUB_PAIR) printf("%s", f);
        n++;
    }
    printf("%s\n", n ? "" : " none (the parent)");
}

static const char *tput_unit(const pz_search_scenario *sc) {
    return !sc->request && sc->pass.phase == PZ_PHASE_PREFILL ? "prompt tok/s" : "tok/s";
}

// ---- the command ------------------------------------------------------------------------------------
int pz_cmd_search(int argc, char **argv) {
    opts o = {.method = "mip", .n_solutions = 1, .diversity = 0.2, .time_limit = 60, .cp = pz_cost_default_params(),
              .ctx = pz_ctx_default_params()};
    {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o.ctx.threads = nc > 0 ? (int)nc : 1;
    }
    if (parse(argc, argv, &o)) return PZ_EXIT_USAGE;
    char err[PZ_ERRLEN], warn[512];
    pz_search_scenario sc;
    pz_search_budget bud;
    if (!o.scenario) o.scenario = PZ_SERVE_DEFAULT;  // what a default `puzzle profile` measures
    if (pz_search_scenario_parse(o.scenario, &sc, err) || pz_search_budget_parse(o.budget, o.hw_dir, &bud, err)) {
        fprintf(stderr, "puzzle search: %s\n", err);
        return PZ_EXIT_USAGE;
    }
    o.scenario = sc.name;
    if (!bud.cpu) {  // a hardware file's calibrated factors apply
        if (bud.hw.eff_gemm > 0) o.cp.eff_gemm = bud.hw.eff_gemm;
        if (bud.hw.eff_attn > 0) o.cp.eff_attn = bud.hw.eff_attn;
        if (bud.hw.eff_mem > 0) o.cp.eff_mem = bud.hw.eff_mem;
        if (bud.hw.eff_link > 0) o.cp.eff_link = bud.hw.eff_link;
        if (o.cp.dtype == PZ_DT_E4M3 && bud.hw.flops_fp8 <= 0) {
            fprintf(stderr, "puzzle search: %s has no fp8 tensor cores; use --dtype bf16\n", bud.hw.name);
            return PZ_EXIT_USAGE;
        }
        if (o.tp && bud.n_devices % o.tp) {
            fprintf(stderr, "puzzle search: --tp %ld does not divide %d devices\n", o.tp, bud.n_devices);
            return PZ_EXIT_USAGE;
        }
    } else if (o.tp > 1) {
        fprintf(stderr, "puzzle search: --tp applies to GPU budgets only\n");
        return PZ_EXIT_USAGE;
    }
    char command[2048] = "puzzle";
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(command);
        snprintf(command + len, sizeof command - len, " %s", argv[i]);
    }

    int rc = PZ_EXIT_FAIL;
    double *bi = NULL;
    pz_rundb *db = NULL;
    pz_search *s = NULL;
    pz_solver *prob = NULL;
    found sols[MAX_SOLUTIONS];
    int n_sols = 0;
    memset(sols, 0, sizeof sols);
    pz_solver_infeasibility inf;
    memset(&inf, 0, sizeof inf);
    int have_inf = 0;
    long inf_batch = 0;
    char explanation[2048] = "";
    double t0 = pz_now();

    if (!(db = pz_rundb_open(o.db, 0, err))) goto fail;
    const char *dtype = bud.cpu ? (o.dtype_cpu ? o.dtype_cpu : NULL) : NULL;
    // The tensor-parallel degree: given, or the parent's fastest among the divisors of N.
    long batches[MAX_BATCHES];
    int nb = 0;
    double ref = 0;
    pz_search_eval par;
    memset(&par, 0, sizeof par);
    pz_cost_params cp = o.cp;
    cp.tp = o.tp ? (int)o.tp : 1;
    if (!(s = pz_search_load(db, &bud, &sc, &cp, o.obj, o.scores, o.device, dtype, warn, sizeof warn, err))) goto fail;
    if (!bud.cpu && o.device)
        fprintf(stderr, "search: prices at tp 1 from the measured rows of '%s' where profiled, else the roofline\n",
                o.device);
    {
        int best_tp = 0;
        char last[PZ_ERRLEN] = "";
        for (int tp = 1; tp <= (bud.cpu ? 1 : bud.n_devices); tp++) {
            if (bud.n_devices % tp || (o.tp && tp != o.tp)) continue;
            if (pz_search_set_tp(s, tp, last)) continue;  // the parent cannot be split tp ways
            long bt[MAX_BATCHES];
            pz_search_eval pe;
            int n = pz_search_batches(s, o.batch, &o.lim, bt, MAX_BATCHES, err);
            double r = n > 0 ? parent_reference(s, bt, n, &o.lim, &pe, err) : -1;
            if (n <= 0 || r < 0) goto fail;
            if (r > ref) {
                ref = r, best_tp = tp, nb = n, par = pe;
                memcpy(batches, bt, sizeof bt);
            }
        }
        if (!best_tp) {
            pz_err(err, "%s", last[0] ? last : "no tensor-parallel degree fits");
            goto fail;
        }
        if (pz_search_set_tp(s, best_tp, err)) goto fail;
    }
    if (warn[0]) fprintf(stderr, "puzzle search: note: %s\n", warn);
    if (!(o.lim.max_memory > 0 ? par.memory_bytes <= o.lim.max_memory : par.fits))
        fprintf(stderr, "puzzle search: note: the parent itself does not fit this budget (%.3g GiB per device at batch "
                        "%ld); speed-ups are relative to its throughput there as if it did\n",
                par.memory_bytes / 1073741824.0, par.batch);
    const pz_config *pc = pz_search_parent(s);
    fprintf(stderr, "search: %d layers, %d groups, %s; budget %s (%s, tp %d x %d replica%s), scenario %s, %d batch "
                    "size%s to try\n",
            pc->n_layer, pz_search_n_groups(s), o.method, bud.name, pz_search_device(s), pz_search_tp(s),
            pz_search_replicas(s), pz_search_replicas(s) == 1 ? "" : "s", sc.name, nb, nb == 1 ? "" : "s");

    if (!strcmp(o.method, "shortgpt")) {
        int got = -1;
        if ((bi = malloc(sizeof(double) * (size_t)pc->n_layer)))
            got = pz_rundb_influence(db, pz_search_data_hash(s), pz_search_data_seq_len(s), bi, pc->n_layer, err);
        else
            pz_err(err, "out of memory");
        if (got < 0) goto fail;
        if (!got) {
            pz_err(err, "%s has no block influence for scores %s: rerun `puzzle score` with the same --data, "
                        "--tokens and --seq-len (it measures it in its parent pass)", o.db, pz_search_data_hash(s));
            goto fail;
        }
    }
    pz_solver_params sp = pz_solver_default_params();
    sp.time_limit_s = o.time_limit;
    long best_batch = 0;
    for (int b = 0; b < nb; b++) {
        long B = batches[b];
        pz_solver *p = pz_search_problem(s, B, &o.lim, ref, err);
        if (!p) goto fail;
        pz_solver_solution sol;
        memset(&sol, 0, sizeof sol);
        if (run_method(p, &o, &sp, bi, pc->n_layer, &sol, err)) {
            pz_solver_free(p);
            goto fail;
        }
        if (is_solution(&sol)) {
            pz_search_eval ev;
            if (pz_search_evaluate(s, B, sol.choice, &ev, err)) {
                pz_solver_solution_free(&sol);
                pz_solver_free(p);
                goto fail;
            }
            fprintf(stderr, "  batch %-5ld %-9s score %.5g, %.4g %s (%.3gx), %.3g GiB, %.2f s\n", B,
                    strcmp(o.method, "mip") ? "found" : pz_solver_status_name(sol.status), sol.objective, ev.throughput,
                    tput_unit(&sc), ref > 0 ? ev.throughput / ref : NAN, ev.memory_bytes / 1073741824.0, sol.seconds);
            int better = !n_sols || sol.objective < sols[0].sol.objective - 1e-12 ||
                         (fabs(sol.objective - sols[0].sol.objective) <= 1e-12 && ev.throughput > sols[0].ev.throughput);
            if (better) {
                if (n_sols) pz_solver_solution_free(&sols[0].sol);
                sols[0] = (found){sol, ev, B};
                n_sols = 1, best_batch = B;
                pz_solver_free(prob);
                prob = p;
                continue;
            }
        } else {
            fprintf(stderr, "  batch %-5ld %s\n", B, pz_solver_status_name(sol.status));
        }
        pz_solver_solution_free(&sol);
        pz_solver_free(p);
    }

    const char *status = "solved";
    if (!n_sols) {
        // Explain: at the batch where the violated rows are closest to their limits.
        status = "no_solution";
        double best_gap = INFINITY;
        for (int b = 0; b < nb; b++) {
            pz_solver *p = pz_search_problem(s, batches[b], &o.lim, ref, err);
            if (!p) goto fail;
            pz_solver_infeasibility e;
            if (pz_solver_explain(p, &sp, &e, err)) {
                pz_solver_free(p);
                goto fail;
            }
            double gap = 0;
            for (int c = 0; c < e.n_constraints; c++)
                if (e.violated[c]) gap = fmax(gap, isfinite(e.ratio[c]) ? e.ratio[c] : 1e300);
            if (e.feasible) gap = 0;
            if (!have_inf || gap < best_gap) {
                if (have_inf) pz_solver_infeasibility_free(&inf);
                inf = e, have_inf = 1, best_gap = gap, inf_batch = batches[b];
                pz_search_explain(s, batches[b], &inf, ref, explanation, sizeof explanation);
            } else {
                pz_solver_infeasibility_free(&e);
            }
            pz_solver_free(p);
        }
        if (have_inf && !inf.feasible) status = "infeasible";
        else if (strcmp(o.method, "mip"))
            snprintf(explanation, sizeof explanation,
                     "the %s baseline finds no child that meets the budget; the MIP does (--method mip)", o.method);
        else
            snprintf(explanation, sizeof explanation,
                     "no solution within the time limit (%.3g s per solve), though the budget is feasible; raise "
                     "--time-limit", o.time_limit);
    } else if (o.n_solutions > 1) {
        if (strcmp(o.method, "mip")) {
            fprintf(stderr, "puzzle search: note: --solutions applies to --method mip; the baseline gives one\n");
        } else {
            pz_solver_solution ds[MAX_SOLUTIONS];
            int nf = 0;
            if (pz_solver_solve_diverse(prob, &sp, (int)o.n_solutions, 1.0 - o.diversity, ds, &nf, err)) goto fail;
            // ds[0] is the optimum again (solution 1 above, re-solved): kept once.
            for (int k = 0; k < nf; k++) {
                if (k == 0 || !is_solution(&ds[k])) {
                    pz_solver_solution_free(&ds[k]);
                    continue;
                }
                found f = {ds[k], {0}, best_batch};
                if (pz_search_evaluate(s, best_batch, ds[k].choice, &f.ev, err)) {
                    for (int j = k; j < nf; j++) pz_solver_solution_free(&ds[j]);
                    goto fail;
                }
                sols[n_sols++] = f;
            }
        }
    }

    double wall = pz_now() - t0;
    long search_id = 0, first_id = 0;
    if (store(db, &o, s, command, &par, ref, status, explanation, have_inf ? &inf : NULL, inf_batch, sols, n_sols, wall,
              &search_id, &first_id, err))
        goto fail;
    pz_rundb_event(db, "search", "finish", "search %ld: %s, %d solution%s in %.1f s", search_id, status, n_sols,
                   n_sols == 1 ? "" : "s", wall);

    // ---- the table ----
    printf("search %ld: %s, budget %s (%s, tp %d x %d), scenario %s, objective %s, data %s\n", search_id, o.method,
           bud.name, pz_search_device(s), pz_search_tp(s), pz_search_replicas(s), sc.name,
           o.obj == PZ_OBJ_KL ? "kl" : "loss", pz_search_data_hash(s));
    printf("parent: batch %ld, %.4g %s, time %.4g ms, memory %.3g GiB/device, %.1f M params\n", par.batch,
           par.throughput, tput_unit(&sc), par.time_s * 1e3, par.memory_bytes / 1073741824.0, par.params / 1e6);
    if (!n_sols) {
        printf("no child meets the budget%s: %s\n", have_inf && inf.feasible ? " (time limit)" : "", explanation);
        if (o.result_file && write_result(o.result_file, 0, err)) goto fail;
        rc = PZ_EXIT_OK;
        goto out;
    }
    printf("\n%4s %6s %-9s %10s %8s %12s %6s %10s %10s %9s %8s\n", "rank", "id", "status",
           o.obj == PZ_OBJ_KL ? "KL" : "dloss", "speedup", tput_unit(&sc), "batch", "step ms", "mem GiB", "params M",
           "changed");
    for (int k = 0; k < n_sols; k++) {
        const found *f = &sols[k];
        int n_changed = 0;
        for (int g = 0; g < pz_search_n_groups(s); g++) n_changed += !pz_search_item_at(s, g, f->sol.choice[g])->is_parent;
        printf("%4d %6ld %-9s %10.5g %7.3fx %12.5g %6ld %10.4g %10.4g %9.2f %8d\n", k + 1, first_id + k,
               strcmp(o.method, "mip") ? o.method : pz_solver_status_name(f->sol.status), f->sol.objective,
               ref > 0 ? f->ev.throughput / ref : NAN, f->ev.throughput, f->batch, f->ev.latency_s * 1e3,
               f->ev.memory_bytes / 1073741824.0, f->ev.params / 1e6, n_changed);
    }
    printf("\nsolution %ld:\n", first_id);
    print_changes(s, sols[0].sol.choice);
    printf("(puzzle solution --db %s %ld for every layer; puzzle realize --db %s --solution %ld --out DIR)\n", o.db,
           first_id, o.db, first_id);
    if (o.in_context) {
        fflush(stdout);
        char key[1024];
        const pz_search_limits *l = &o.lim;
        snprintf(key, sizeof key,
                 "budget %s|device %s|dtype %s|scenario %s|batch %ld|throughput %.6g|speedup %.6g|memory %.6g|"
                 "latency %.6g|ttft %.6g|params %.6g|objective %s|scores %s/%ld",
                 bud.name, pz_search_device(s), pz_search_dtype(s), sc.name, best_batch, l->throughput, l->speedup,
                 l->max_memory, l->max_latency, l->max_ttft, l->max_params, o.obj == PZ_OBJ_KL ? "kl" : "loss",
                 pz_search_data_hash(s), pz_search_data_seq_len(s));
        ctx_user u = {db, &o, s, command, &par, ref, best_batch, sp};
        long best = 0;
        pz_install_stop_signals();
        if (pz_search_in_context(db, s, key, &o.ctx, sols[0].sol.choice, first_id, ctx_solve, &u, &best, err))
            goto fail;
        printf("(puzzle realize --db %s --solution %ld --out DIR)\n", o.db, best);
        // Stopped by a signal: the rounds so far are stored; not finished, so not a result.
        if (pz_stop_signal) {
            pz_err(err, "in-context search interrupted (signal %d); rerun to resume", (int)pz_stop_signal);
            goto fail;
        }
        first_id = best;
    }
    if (o.result_file && write_result(o.result_file, first_id, err)) goto fail;
    rc = PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle search: %s\n", err);
out:
    for (int k = 0; k < n_sols; k++) pz_solver_solution_free(&sols[k].sol);
    if (have_inf) pz_solver_infeasibility_free(&inf);
    pz_solver_free(prob);
    pz_search_free(s);
    pz_rundb_close(db);
    free(bi);
    return rc;
}
