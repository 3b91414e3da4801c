// search.c — see search.h.
#include "search.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common.h"

// ---- budgets -----------------------------------------------------------------------------
int pz_search_budget_parse(const char *s, const char *hw_dir, pz_search_budget *b, char *err) {
    memset(b, 0, sizeof *b);
    if (!strcasecmp(s, "cpu")) {
        b->cpu = 1, b->n_devices = 1;
        snprintf(b->name, sizeof b->name, "cpu");
        return 0;
    }
    char *end;
    long n = strtol(s, &end, 10);
    while (*end == ' ') end++;
    if (end == s || n < 1 || n > 65536 || (*end != 'x' && *end != 'X'))
        return pz_err(err, "budget '%s': want N x NAME (e.g. 8xH100) or cpu", s);
    end++;
    while (*end == ' ') end++;
    if (!*end) return pz_err(err, "budget '%s': the hardware name is missing", s);
    if (pz_hw_find(end, hw_dir, &b->hw, err)) return -1;
    b->n_devices = (int)n;
    snprintf(b->name, sizeof b->name, "%ldx%s", n, b->hw.id);
    return 0;
}

// ---- the loaded library ----------------------------------------------------------------
typedef struct {
    int layer;
    pz_sub_kind sub;  // ATTN / FFN groups (decoupled) or PAIR (one group per layer)
    int first, n;     // items[first .. first+n)
} group;

struct pz_search {
    pz_config parent;
    pz_search_budget budget;
    pz_search_scenario scen;
    pz_cost_params cp;
    pz_search_objective obj;
    char data_hash[40];
    long data_seq_len;
    char device[256], dtype[8];
    double mem_usable;      // per device, before fixed costs
    pz_price_row *prof;     // measured rows (cpu budgets; GPU budgets with --device)
    int n_prof;
    char gpu_profiled[256]; // GPU budgets: the profiled device whose rows price tp 1, or ""
    pz_pricer pricer;       // roofline (GPU budgets) or the measured rows
    pz_search_item *items;
    int n_items;
    group *groups;
    int n_groups;
};

const pz_config *pz_search_parent(const pz_search *s) { return &s->parent; }
const char *pz_search_data_hash(const pz_search *s) { return s->data_hash; }
long pz_search_data_seq_len(const pz_search *s) { return s->data_seq_len; }
const char *pz_search_device(const pz_search *s) { return s->device; }
const char *pz_search_dtype(const pz_search *s) { return s->dtype; }
int pz_search_tp(const pz_search *s) { return s->cp.tp; }
int pz_search_replicas(const pz_search *s) { return s->budget.cpu ? 1 : s->budget.n_devices / s->cp.tp; }
int pz_search_n_groups(const pz_search *s) { return s->n_groups; }
int pz_search_n_items(const pz_search *s, int g) { return s->groups[g].n; }
const pz_search_item *pz_search_item_at(const pz_search *s, int g, int i) {
    return &s->items[s->groups[g].first + i];
}

void pz_search_set_score(pz_search *s, int g, int i, double score) { s->items[s->groups[g].first + i].score = score; }

int pz_search_choice_of(const pz_search *s, const pz_rundb_solution_layer *layers, int n_layers, int *choice,
                        char *err) {
    for (int g = 0; g < s->n_groups; g++) {
        const group *gr = &s->groups[g];
        const pz_rundb_solution_layer *L = NULL;
        for (int k = 0; k < n_layers; k++)
            if (layers[k].layer == gr->layer) L = &layers[k];
        if (!L) return pz_err(err, "the solution has no layer %d", gr->layer);
        choice[g] = -1;
        for (int i = 0; i < gr->n && choice[g] < 0; i++) {
            const pz_search_item *it = &s->items[gr->first + i];
            if ((gr->sub == PZ_SUB_FFN || pz_variant_eq(PZ_SUB_ATTN, it->attn, L->attn)) &&
                (gr->sub == PZ_SUB_ATTN || pz_variant_eq(PZ_SUB_FFN, it->ffn, L->ffn)))
                choice[g] = i;
        }
        if (choice[g] < 0)
            return pz_err(err, "layer %d of the solution (%s, %s) is not in the library", gr->layer, L->attn_variant,
                          L->ffn_variant);
    }
    return 0;
}

void pz_search_free(pz_search *s) {
    if (!s) return;
    free(s->prof);
    free(s->items);
    free(s->groups);
    free(s);
}

// The scoring windows to use: the given hash, else those covering the most blocks.
static int pick_scores(pz_rundb *db, const char *want, char *hash, long *seq_len, char *err) {
    int found = pz_rundb_pick_scores(db, want, hash, seq_len, err);
    if (found < 0) return -1;
    if (!found) {
        if (want)
            return pz_err(err, "no scores with data hash %s (the hashes scored: column data_hash of table scores)",
                          want);
        return pz_err(err, "the library has no scores: run puzzle score first");
    }
    return 0;
}

static int load_rows(pz_search *s, pz_rundb *db, const char *device, const char *dtype, char *err);

static int load_profiles(pz_search *s, pz_rundb *db, const char *device, const char *dtype, char *err) {
    // The device: the one asked for, else the only CPU device with profile rows.
    pz_rundb_device_dtype *dd = NULL;
    int n = 0;
    if (pz_rundb_cpu_profiled(db, device, dtype, &dd, &n, err)) return -1;
    char list[512] = "";
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s'%s' %s", len ? ", " : "", dd[i].device, dd[i].dtype);
    }
    if (n > 0) {
        snprintf(s->device, sizeof s->device, "%s", dd[0].device);
        snprintf(s->dtype, sizeof s->dtype, "%s", dd[0].dtype);
    }
    free(dd);
    if (n == 0)
        return pz_err(err, "no CPU profiles%s in the run database: run puzzle profile --db RUN.db (the default scenario) "
                           "or --scenario S (the scenario of the search)",
                      device || dtype ? " for the device/dtype asked" : "");
    if (n > 1) return pz_err(err, "profiles of several CPU devices or dtypes (%s): choose with --device/--dtype", list);
    // Physical memory: the device's calibration JSON when stored, else this machine's.
    char *json = NULL;
    int have = pz_rundb_device_json(db, s->device, &json, err);
    if (have < 0) return -1;
    double mem = 0;
    if (have) {
        cJSON *j = cJSON_Parse(json);
        cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "mem_bytes");
        if (cJSON_IsNumber(m)) mem = m->valuedouble;
        cJSON_Delete(j);
        free(json);
    }
    if (!(mem > 0)) mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    s->mem_usable = mem * s->cp.mem_util;
    return load_rows(s, db, s->device, s->dtype, err);
}

// The database's measured rows of device and dtype, as the pricer reads them.
static int load_rows(pz_search *s, pz_rundb *db, const char *device, const char *dtype, char *err) {
    pz_rundb_profile *rows = NULL;
    int nr = 0;
    if (pz_rundb_list_profiles(db, device, dtype, 1, &rows, &nr, err)) return -1;
    s->prof = nr ? calloc((size_t)nr, sizeof *s->prof) : NULL;
    if (nr && !s->prof) {
        free(rows);
        return pz_err(err, "out of memory");
    }
    for (int i = 0; i < nr; i++) {
        pz_price_row *r = &s->prof[i];
        snprintf(r->part, sizeof r->part, "%s", rows[i].part);
        snprintf(r->kind, sizeof r->kind, "%s", rows[i].kind);
        r->size = rows[i].size;
        snprintf(r->scenario, sizeof r->scenario, "%s", rows[i].scenario);
        r->median_s = rows[i].median_s;
        r->param_bytes = rows[i].param_bytes;
        r->kv_bytes_per_token = rows[i].kv_bytes_per_token;
    }
    s->n_prof = nr;
    free(rows);
    return 0;
}

static double variant_params(const pz_config *c, int attn_half, const pz_variant *v) {
    double h = c->hidden, q = (double)c->n_head * c->head_dim;
    if (attn_half) {
        if (v->attn == PZ_ATTN_GQA) return h + 2 * h * q + 2 * h * (double)v->size * c->head_dim;
        return v->attn == PZ_ATTN_LINEAR ? h + h * h : 0;
    }
    if (v->ffn == PZ_FFN_SWIGLU) return h + 3 * h * (double)v->size;
    return v->ffn == PZ_FFN_LINEAR ? h + h * h : 0;
}

static int add_item(pz_search *s, int *cap, const pz_search_item *it, char *err) {
    if (s->n_items == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        pz_search_item *p = realloc(s->items, (size_t)*cap * sizeof *p);
        if (!p) return pz_err(err, "out of memory");
        s->items = p;
    }
    s->items[s->n_items++] = *it;
    return 0;
}

typedef struct {
    char id[80];
    int layer;
    pz_sub_kind sub;
    pz_variant attn, ffn;
    int is_parent, scored;
    double score;
} lib_row;

// The finished blocks with their scores.
static int load_library(pz_search *s, pz_rundb *db, lib_row **rows, int *n, int *n_unscored, char *err) {
    pz_rundb_scored_block *b = NULL;
    int nb = 0;
    *rows = NULL, *n = 0, *n_unscored = 0;
    if (pz_rundb_list_scored(db, s->data_hash, s->data_seq_len, &b, &nb, err)) return -1;
    if (nb && !(*rows = malloc((size_t)nb * sizeof **rows))) {
        free(b);
        return pz_err(err, "out of memory");
    }
    for (int i = 0; i < nb; i++) {
        lib_row r = {0};
        snprintf(r.id, sizeof r.id, "%s", b[i].b.block_id);
        r.layer = b[i].b.layer;
        r.sub = b[i].b.sub;
        if (r.layer < 0 || r.layer >= s->parent.n_layer) continue;
        r.attn = b[i].b.attn, r.ffn = b[i].b.ffn;
        r.is_parent = b[i].b.is_parent;
        double v = s->obj == PZ_OBJ_KL ? b[i].kl : b[i].loss_delta;
        r.scored = !isnan(v);
        r.score = r.scored ? v : 0;
        if (!r.scored && !r.is_parent) {
            (*n_unscored)++;
            continue;
        }
        (*rows)[(*n)++] = r;
    }
    free(b);
    return 0;
}

// FFN width families for the uniform baseline: the distinct swiglu widths.
static int ffn_family(const int *widths, int n_widths, const pz_variant *v) {
    if (v->ffn != PZ_FFN_SWIGLU) return -1;
    for (int i = 0; i < n_widths; i++)
        if (widths[i] == v->size) return i;
    return -1;
}

// Groups: per layer, a PAIR group when the layer has coupled blocks (pairs,
// plus every attention × FFN combination of its decoupled blocks), else an
// attention group and an FFN group. Every group holds the parent's variant.
static int build_groups(pz_search *s, const lib_row *rows, int n, char *err) {
    int icap = 0, widths[PZ_SPACE_MAX_VARIANTS * 4], n_widths = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].sub != PZ_SUB_ATTN && rows[i].ffn.ffn == PZ_FFN_SWIGLU &&
            ffn_family(widths, n_widths, &rows[i].ffn) < 0 && n_widths < (int)(sizeof widths / sizeof *widths))
            widths[n_widths++] = rows[i].ffn.size;
    if (!(s->groups = calloc((size_t)s->parent.n_layer * 2, sizeof *s->groups))) return pz_err(err, "out of memory");
    int r0 = 0;
    for (int l = 0; l < s->parent.n_layer; l++) {
        int r1 = r0;
        while (r1 < n && rows[r1].layer == l) r1++;
        const pz_layer_spec *pl = &s->parent.layers[l];
        pz_variant pa = {.attn = pl->attn, .size = pl->attn == PZ_ATTN_GQA ? pl->n_kv : 0};
        pz_variant pf = {.ffn = pl->ffn, .size = pl->ffn == PZ_FFN_SWIGLU ? pl->n_ff : 0};
        int pairs = 0;
        for (int i = r0; i < r1; i++) pairs |= rows[i].sub == PZ_SUB_PAIR;
        for (int half = 0; half < (pairs ? 1 : 2); half++) {
            group *g = &s->groups[s->n_groups++];
            g->layer = l, g->sub = pairs ? PZ_SUB_PAIR : half ? PZ_SUB_FFN : PZ_SUB_ATTN, g->first = s->n_items;
            pz_search_item it;
            if (!pairs) {
                int have_parent = 0;
                for (int i = r0; i < r1; i++) {
                    const lib_row *r = &rows[i];
                    if (r->sub != g->sub) continue;
                    memset(&it, 0, sizeof it);
                    it.layer = l, it.sub = g->sub, it.attn = r->attn, it.ffn = r->ffn, it.is_parent = r->is_parent;
                    it.score = r->score;
                    snprintf(half ? it.ffn_block : it.attn_block, sizeof it.attn_block, "%s", r->id);
                    it.noop = half ? r->ffn.ffn == PZ_FFN_NOOP : r->attn.attn == PZ_ATTN_NOOP;
                    it.family = half ? ffn_family(widths, n_widths, &r->ffn) : -1;
                    if (half) it.attn = pa;
                    else it.ffn = pf;
                    have_parent |= r->is_parent;
                    if (add_item(s, &icap, &it, err)) return -1;
                }
                if (!have_parent) {  // a layer outside the library: the parent's half only
                    memset(&it, 0, sizeof it);
                    it.layer = l, it.sub = g->sub, it.attn = pa, it.ffn = pf, it.is_parent = 1;
                    it.noop = half ? pf.ffn == PZ_FFN_NOOP : pa.attn == PZ_ATTN_NOOP;
                    it.family = half ? ffn_family(widths, n_widths, &pf) : -1;
                    if (add_item(s, &icap, &it, err)) return -1;
                }
            } else {
                for (int i = r0; i < r1; i++) {  // coupled blocks
                    const lib_row *r = &rows[i];
                    if (r->sub != PZ_SUB_PAIR) continue;
                    memset(&it, 0, sizeof it);
                    it.layer = l, it.sub = PZ_SUB_PAIR, it.attn = r->attn, it.ffn = r->ffn, it.score = r->score;
                    snprintf(it.attn_block, sizeof it.attn_block, "%s", r->id);
                    snprintf(it.ffn_block, sizeof it.ffn_block, "%s", r->id);
                    it.is_parent = pz_variant_eq(PZ_SUB_ATTN, r->attn, pa) && pz_variant_eq(PZ_SUB_FFN, r->ffn, pf);
                    it.noop = r->attn.attn == PZ_ATTN_NOOP && r->ffn.ffn == PZ_FFN_NOOP;
                    it.family = ffn_family(widths, n_widths, &r->ffn);
                    if (add_item(s, &icap, &it, err)) return -1;
                }
                int have_parent = 0;
                for (int i = r0; i < r1; i++) {  // decoupled halves, combined (scores add)
                    if (rows[i].sub != PZ_SUB_ATTN) continue;
                    for (int j = r0; j < r1; j++) {
                        if (rows[j].sub != PZ_SUB_FFN) continue;
                        memset(&it, 0, sizeof it);
                        it.layer = l, it.sub = PZ_SUB_PAIR, it.attn = rows[i].attn, it.ffn = rows[j].ffn;
                        it.score = rows[i].score + rows[j].score;
                        snprintf(it.attn_block, sizeof it.attn_block, "%s", rows[i].id);
                        snprintf(it.ffn_block, sizeof it.ffn_block, "%s", rows[j].id);
                        it.is_parent = rows[i].is_parent && rows[j].is_parent;
                        it.noop = rows[i].attn.attn == PZ_ATTN_NOOP && rows[j].ffn.ffn == PZ_FFN_NOOP;
                        it.family = ffn_family(widths, n_widths, &rows[j].ffn);
                        have_parent |= it.is_parent;
                        if (add_item(s, &icap, &it, err)) return -1;
                    }
                }
                for (int i = g->first; i < s->n_items; i++) have_parent |= s->items[i].is_parent;
                if (!have_parent) {
                    memset(&it, 0, sizeof it);
                    it.layer = l, it.sub = PZ_SUB_PAIR, it.attn = pa, it.ffn = pf, it.is_parent = 1;
                    it.family = ffn_family(widths, n_widths, &pf);
                    if (add_item(s, &icap, &it, err)) return -1;
                }
            }
            g->n = s->n_items - g->first;
        }
        r0 = r1;
    }
    return 0;
}

pz_search *pz_search_load(pz_rundb *rdb, const pz_search_budget *b, const pz_search_scenario *sc,
                          const pz_cost_params *cp, pz_search_objective obj, const char *data_hash,
                          const char *device, const char *dtype, char *warn, size_t warn_cap, char *err) {
    lib_row *rows = NULL;
    int n_rows = 0, n_unscored = 0;
    pz_search *s = calloc(1, sizeof *s);
    if (!s) {
        pz_err(err, "out of memory");
        return NULL;
    }
    if (warn && warn_cap) warn[0] = 0;
    s->budget = *b, s->scen = *sc, s->cp = *cp, s->obj = obj;
    if (pz_rundb_parent_config(rdb, &s->parent, err)) goto fail;
    if (pick_scores(rdb, data_hash, s->data_hash, &s->data_seq_len, err)) goto fail;
    if (b->cpu) {
        if (load_profiles(s, rdb, device, dtype, err)) goto fail;
        s->cp.tp = 1;
        s->pricer = (pz_pricer){.model = &s->parent, .measured = 1, .rows = s->prof, .n_rows = s->n_prof,
                                .device = s->device, .dtype = s->dtype};
    } else {
        snprintf(s->device, sizeof s->device, "%s", b->hw.id);
        snprintf(s->dtype, sizeof s->dtype, "%s", pz_dt_name(cp->dtype));
        if (device) {  // measured GPU profiles (puzzle profile --device cuda) price what they cover
            if (load_rows(s, rdb, device, s->dtype, err)) goto fail;
            if (!s->n_prof) {
                pz_err(err, "no measured profiles of device '%s' in %s: run puzzle profile --db RUN.db --device cuda "
                            "--dtype %s on it (the profiled devices: SELECT DISTINCT device, dtype FROM profiles)", device, s->dtype,
                       s->dtype);
                goto fail;
            }
            snprintf(s->gpu_profiled, sizeof s->gpu_profiled, "%s", device);
        }
        if (pz_search_set_tp(s, cp->tp, err)) goto fail;
    }
    if (load_library(s, rdb, &rows, &n_rows, &n_unscored, err)) goto fail;
    if (n_unscored && warn)
        snprintf(warn, warn_cap, "%d finished blocks have no %s score on data %s and are left out (run puzzle score)",
                 n_unscored, obj == PZ_OBJ_KL ? "KL" : "loss", s->data_hash);
    if (build_groups(s, rows, n_rows, err)) goto fail;
    free(rows);
    return s;
fail:
    free(rows);
    pz_search_free(s);
    return NULL;
}

int pz_search_set_tp(pz_search *s, int tp, char *err) {
    if (s->budget.cpu) return tp == 1 ? 0 : pz_err(err, "a cpu budget has no tensor parallelism");
    if (tp < 1 || s->budget.n_devices % tp != 0)
        return pz_err(err, "%d devices do not divide into tp %d replicas", s->budget.n_devices, tp);
    pz_cost_params cp = s->cp;
    cp.tp = tp;
    if (pz_cost_check(&s->parent, &s->budget.hw, &cp, err)) return -1;
    s->cp = cp;
    s->pricer = (pz_pricer){.model = &s->parent, .hw = s->budget.hw, .cp = s->cp};
    // Measured GPU rows are one whole layer on one GPU: they price tp 1 (where
    // a row exists; the roofline elsewhere), never a split layer.
    if (s->gpu_profiled[0] && tp == 1)
        s->pricer = (pz_pricer){.model = &s->parent, .measured = PZ_PRICE_MEASURED_WHERE_PROFILED, .hw = s->budget.hw,
                                .cp = s->cp, .rows = s->prof, .n_rows = s->n_prof, .device = s->gpu_profiled,
                                .dtype = s->dtype};
    pz_mem m;
    pz_cost_memory(&s->parent, &s->budget.hw, &s->cp, 1, 1, &m);
    s->mem_usable = m.usable;
    return 0;
}

// ---- pricing a batch ---------------------------------------------------------------------
// Everything that depends on the batch: per-item costs and the fixed part.
typedef struct {
    double time, step, ttft, weight, kv, params;
} costs;

static long context_tokens(const pz_search *s) { return pz_serve_context_tokens(&s->scen); }

// Serving costs of one half at batch B, as pricing.h computes them.
static int half_costs(const pz_search *s, pz_prof_part part, const pz_variant *v, long B, int want_ttft, costs *out,
                      char *err) {
    pz_prof_variant pv = {.part = part, .size = v->size};
    if (part == PZ_PROF_ATTN) pv.attn = v->attn;
    else pv.ffn = v->ffn;
    pz_serve_cost k;
    if (pz_price_serve(&s->pricer, &s->scen, &pv, B, want_ttft && s->scen.request, &k, err)) return -1;
    *out = (costs){k.time_s, k.step_s, k.ttft_s, k.weight_bytes, k.kv_bytes_per_token, 0};
    return 0;
}

static int item_costs(const pz_search *s, const pz_search_item *it, long B, int want_ttft, costs *out, char *err) {
    costs a = {0}, f = {0};
    int do_attn = it->sub != PZ_SUB_FFN, do_ffn = it->sub != PZ_SUB_ATTN;
    if (do_attn && half_costs(s, PZ_PROF_ATTN, &it->attn, B, want_ttft, &a, err)) return -1;
    if (do_ffn && half_costs(s, PZ_PROF_FFN, &it->ffn, B, want_ttft, &f, err)) return -1;
    *out = (costs){a.time + f.time, a.step + f.step, a.ttft + f.ttft, a.weight + f.weight, a.kv + f.kv,
                   (do_attn ? variant_params(&s->parent, 1, &it->attn) : 0) +
                       (do_ffn ? variant_params(&s->parent, 0, &it->ffn) : 0)};
    return 0;
}

// Embedding + LM head (and, on GPUs, the reserve and workspace in memory).
static int fixed_costs(const pz_search *s, long B, int want_ttft, costs *out, char *err) {
    costs e, h;
    pz_variant none = {.size = 0};
    if (half_costs(s, PZ_PROF_EMBED, &none, B, want_ttft, &e, err) ||
        half_costs(s, PZ_PROF_HEAD, &none, B, want_ttft, &h, err))
        return -1;
    *out = (costs){e.time + h.time, e.step + h.step, e.ttft + h.ttft, e.weight + h.weight, 0, 0};
    const pz_config *c = &s->parent;
    out->params = (double)c->vocab * c->hidden * (c->tie_embeddings ? 1 : 2) + c->hidden;
    if (!s->budget.cpu) {  // GPU: the reserve and activations workspace of the parent
        pz_mem m;
        pz_cost_memory(c, &s->budget.hw, &s->cp, B, context_tokens(s), &m);
        out->weight += m.reserve + m.workspace;
    }
    return 0;
}

static double throughput_of(const pz_search *s, long B, double time) {
    return pz_serve_throughput(&s->scen, B, time) * pz_search_replicas(s);
}

int pz_search_batches(pz_search *s, long batch, const pz_search_limits *lim, long *out, int cap, char *err) {
    if (!s->scen.request) {
        if (batch > 0 && batch != s->scen.pass.batch)
            return pz_err(err, "--batch %ld contradicts the scenario %s (its batch is %ld)", batch, s->scen.name,
                          s->scen.pass.batch);
        out[0] = s->scen.pass.batch;
        return 1;
    }
    if (batch > 0) {
        out[0] = batch;
        return 1;
    }
    int n = 0;
    if (s->budget.cpu) {  // the batches whose passes (pricing.h) are all profiled for the LM head
        for (long B = 1; B <= 65536 && n < cap; B *= 2) {
            pz_scenario pass[3];
            int np = pz_serve_passes(&s->scen, B, pass), have = 0;
            for (int j = 0; j < np; j++) {
                pz_price pr;
                pz_prof_variant head = {.part = PZ_PROF_HEAD};
                have += pz_price_pass(&s->pricer, &head, &pass[j], &pr, NULL) == 0;
            }
            if (have == np) out[n++] = B;
        }
        if (!n) {
            long c = pz_serve_decode_context(&s->scen);
            return pz_err(err, "no batch size has both prefill:Bx%ld and decode:Bx%ld profiles on %s: run puzzle "
                               "profile --db RUN.db --scenario %s",
                          s->scen.input, c, s->device, s->scen.name);
        }
        return n;
    }
    // GPUs: powers of two while the child with the least memory still fits.
    double cap_bytes = lim->max_memory > 0 ? lim->max_memory : s->mem_usable;
    for (long B = 1; B <= s->cp.max_batch && n < cap; B *= 2) {
        costs fx;
        if (fixed_costs(s, B, 0, &fx, err)) return -1;
        double need = fx.weight;
        for (int g = 0; g < s->n_groups; g++) {
            double best = INFINITY;
            for (int i = 0; i < s->groups[g].n; i++) {
                costs c;
                if (item_costs(s, &s->items[s->groups[g].first + i], B, 0, &c, err)) continue;
                double m = c.weight + (double)B * context_tokens(s) * c.kv;
                if (m < best) best = m;
            }
            need += best;
        }
        if (need > cap_bytes && n > 0) break;
        out[n++] = B;
        if (need > cap_bytes) break;  // keep batch 1 so that an infeasible budget is explained
    }
    return n;
}

// Costs of every item at batch B (items that cannot be priced, e.g. a KV
// count that tp does not split, get time = NAN).
static int all_costs(pz_search *s, long B, int want_ttft, costs *ic, char *err) {
    char e2[PZ_ERRLEN];
    for (int i = 0; i < s->n_items; i++) {
        if (item_costs(s, &s->items[i], B, want_ttft, &ic[i], e2)) {
            if (s->budget.cpu || s->items[i].is_parent) return pz_err(err, "%s", e2);
            ic[i].time = NAN;
        }
    }
    return 0;
}

pz_solver *pz_search_problem(pz_search *s, long B, const pz_search_limits *lim, double ref_tput, char *err) {
    int want_ttft = lim->max_ttft > 0;
    if (want_ttft && !s->scen.request && s->scen.pass.phase != PZ_PHASE_PREFILL) {
        pz_err(err, "--max-ttft needs a request scenario (input=I,output=O) or a prefill pass");
        return NULL;
    }
    costs *ic = calloc((size_t)s->n_items, sizeof *ic), fx;
    pz_solver *p = pz_solver_new(err);
    if (!ic || !p) {
        pz_err(err, "out of memory");
        goto fail;
    }
    if (all_costs(s, B, want_ttft, ic, err) || fixed_costs(s, B, want_ttft, &fx, err)) goto fail;
    for (int g = 0; g < s->n_groups; g++) {
        int gi = pz_solver_add_group(p, s->groups[g].layer, err);
        for (int i = 0; i < s->groups[g].n; i++) {
            int k = s->groups[g].first + i;
            const pz_search_item *it = &s->items[k];
            pz_solver_costs c = {ic[k].time, ic[k].weight, ic[k].kv, ic[k].params};
            // An item tp cannot split stays (item indices must not shift) but can never be chosen.
            if (isnan(c.time)) c = (pz_solver_costs){1e30, 1e30, 0, 0};
            if (pz_solver_add_item(p, gi, it->score, &c, it->family, it->noop, err) < 0) goto fail;
        }
    }
    double ctx = (double)B * context_tokens(s);
    double mem_cap = lim->max_memory > 0 ? lim->max_memory : s->mem_usable;
    if (pz_solver_add_memory(p, "memory", ctx, mem_cap - fx.weight, err) < 0) goto fail;
    double target = lim->throughput > 0 ? lim->throughput : lim->speedup > 0 ? lim->speedup * ref_tput : 0;
    if (target > 0) {
        // throughput(T) = target  <=>  T = B·(tokens per pass)·replicas / target
        double t_max = throughput_of(s, B, 1.0) / target;
        if (pz_solver_add_runtime(p, "throughput", t_max - fx.time, err) < 0) goto fail;
    }
    if (lim->max_latency > 0) {
        int c = pz_solver_add_constraint(p, "latency", lim->max_latency - fx.step, err);
        if (c < 0) goto fail;
        for (int g = 0; g < s->n_groups; g++)
            for (int i = 0; i < s->groups[g].n; i++)
                pz_solver_set_coef(p, c, g, i, isnan(ic[s->groups[g].first + i].time) ? 1e30 : ic[s->groups[g].first + i].step, NULL);
    }
    if (want_ttft) {
        int c = pz_solver_add_constraint(p, "ttft", lim->max_ttft - fx.ttft, err);
        if (c < 0) goto fail;
        for (int g = 0; g < s->n_groups; g++)
            for (int i = 0; i < s->groups[g].n; i++)
                pz_solver_set_coef(p, c, g, i, isnan(ic[s->groups[g].first + i].time) ? 1e30 : ic[s->groups[g].first + i].ttft, NULL);
    }
    if (lim->max_params > 0 && pz_solver_add_params(p, "params", lim->max_params - fx.params, err) < 0) goto fail;
    free(ic);
    return p;
fail:
    free(ic);
    pz_solver_free(p);
    return NULL;
}

int pz_search_evaluate(pz_search *s, long B, const int *choice, pz_search_eval *out, char *err) {
    memset(out, 0, sizeof *out);
    int want_ttft = s->scen.request || s->scen.pass.phase == PZ_PHASE_PREFILL;
    costs fx, sum = {0};
    if (fixed_costs(s, B, want_ttft, &fx, err)) return -1;
    for (int g = 0; g < s->n_groups; g++) {
        int k = -1;
        if (choice) k = s->groups[g].first + choice[g];
        else
            for (int i = 0; i < s->groups[g].n; i++)
                if (s->items[s->groups[g].first + i].is_parent) k = s->groups[g].first + i;
        if (k < 0) return pz_err(err, "group %d has no parent item", g);
        costs c;
        if (item_costs(s, &s->items[k], B, want_ttft, &c, err)) return -1;
        sum.time += c.time, sum.step += c.step, sum.ttft += c.ttft, sum.weight += c.weight, sum.kv += c.kv;
        sum.params += c.params;
    }
    out->batch = B;
    out->time_s = sum.time + fx.time;
    out->throughput = throughput_of(s, B, out->time_s);
    out->latency_s = sum.step + fx.step;
    out->ttft_s = want_ttft ? sum.ttft + fx.ttft : NAN;
    out->memory_bytes = sum.weight + fx.weight + (double)B * context_tokens(s) * sum.kv;
    out->params = sum.params + fx.params;
    out->fits = out->memory_bytes <= s->mem_usable;
    return 0;
}

void pz_search_child_layers(const pz_search *s, const int *choice, pz_layer_spec *layers) {
    for (int l = 0; l < s->parent.n_layer; l++) layers[l] = s->parent.layers[l];
    for (int g = 0; g < s->n_groups; g++) {
        const pz_search_item *it = &s->items[s->groups[g].first + choice[g]];
        pz_layer_spec *l = &layers[it->layer];
        if (it->sub != PZ_SUB_FFN) l->attn = it->attn.attn, l->n_kv = it->attn.size;
        if (it->sub != PZ_SUB_ATTN) l->ffn = it->ffn.ffn, l->n_ff = it->ffn.size;
    }
}

int pz_search_explain(pz_search *s, long B, const pz_solver_infeasibility *inf, double ref_tput, char *buf,
                      size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    costs fx;
    char e2[PZ_ERRLEN];
    if (fixed_costs(s, B, 1, &fx, e2)) memset(&fx, 0, sizeof fx);
    for (int c = 0; c < inf->n_constraints && len < cap; c++) {
        if (!inf->violated[c]) continue;
        const char *name = inf->names[c];
        double mv = inf->min_value[c], rhs = inf->rhs[c];
        char line[320];
        if (isnan(mv)) {
            snprintf(line, sizeof line, "%s: the other rows cannot be met together either", name);
        } else if (!strcmp(name, "throughput")) {
            double best = throughput_of(s, B, mv + fx.time), want = throughput_of(s, B, rhs + fx.time);
            if (ref_tput > 0)
                snprintf(line, sizeof line,
                         "throughput: the fastest child that meets the other rows reaches %.3gx the parent "
                         "(%.4g tokens/s; asked %.3gx)", best / ref_tput, best, want / ref_tput);
            else
                snprintf(line, sizeof line,
                         "throughput: the fastest child that meets the other rows reaches %.4g tokens/s (asked %.4g)",
                         best, want);
        } else if (!strcmp(name, "memory")) {
            double need = mv + fx.weight, have = rhs + fx.weight;
            snprintf(line, sizeof line,
                     "memory: needs >= %.3g GiB per device, %.3gx the budget of %.3g GiB (batch %ld)",
                     need / 1073741824.0, need / have, have / 1073741824.0, B);
        } else if (!strcmp(name, "latency") || !strcmp(name, "ttft")) {
            double f = !strcmp(name, "ttft") ? fx.ttft : fx.step;
            snprintf(line, sizeof line, "%s: the lowest reachable is %.4g ms, %.3gx the limit of %.4g ms", name,
                     (mv + f) * 1e3, (mv + f) / (rhs + f), (rhs + f) * 1e3);
        } else if (!strcmp(name, "params")) {
            snprintf(line, sizeof line, "params: needs >= %.4g M parameters, %.3gx the limit of %.4g M",
                     (mv + fx.params) / 1e6, (mv + fx.params) / (rhs + fx.params), (rhs + fx.params) / 1e6);
        } else {
            snprintf(line, sizeof line, "%s: needs >= %.4g (limit %.4g)", name, mv, rhs);
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%s%s", len ? "; " : "", line,
                                c == inf->binding ? " [binding]" : "");
    }
    if (!len) snprintf(buf, cap, "the rows can each be met, but not all together");
    return 0;
}
