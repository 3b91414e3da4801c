// cmd_profile.c — `puzzle profile`: times every distinct sub-block variant
// of a run's library on the local CPU per scenario and records it in the run
// database (profiles, hardware); `--calibrate` writes a hardware JSON of the
// local CPU for the roofline model; `--report HW` compares the roofline's
// predictions on HW with the measured rows (results/cpu_profile.md).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend.h"
#include "cli.h"
#include "common.h"
#include "costmodel.h"
#include "hardware.h"
#include "pricing.h"
#include "profile.h"
#include "rundb.h"

#define MAX_SCEN 32
#define MAX_VAR 128

void pz_usage_profile(FILE *out) {
    fprintf(out,
            "usage: puzzle profile --db RUN.db [--device cpu|cuda] [--scenario S[,S...]]... [--dtype f32|bf16|fp8]\n"
            "                      [--repeats N] [--warmup N] [--sequential] [--threads T]\n"
            "                      [--cold-mib N]\n"
            "       puzzle profile --calibrate [--db RUN.db] [--out FILE] [--threads T] [--repeats N] [--eff-gemm X ...]\n"
            "       puzzle profile --db RUN.db --report HW [--dtype bf16] [--threads T]\n\n"
            "Times each distinct sub-block variant of the run's library (attention and FFN kinds and\n"
            "sizes, plus the embedding and the LM head) in isolation on the local CPU with the runtime's\n"
            "kernels, on random weights of the variant's shapes. Timings depend on shapes only, so each\n"
            "variant is timed once and shared by every layer (view block_profiles). Rows already measured\n"
            "for the same device, dtype and scenario are skipped, so a rerun resumes. Noop sub-blocks run\n"
            "nothing and are stored as exactly 0.\n\n"
            "  --scenario S      prefill:BxS (B prompts of S tokens), decode:BxC (B sequences, one new\n"
            "                    token over C cached), or input=I,output=O (the passes a cpu search of\n"
            "                    that scenario prices at batch 1: prefill:1xI, decode:1x(I+O/2));\n"
            "                    repeatable or comma-separated (default " PZ_SERVE_DEFAULT ", the\n"
            "                    default scenario of puzzle search)\n"
            "  --dtype           weight type of the products (default f32)\n"
            "  --repeats N       timed rounds (default 10), after --warmup N untimed ones (default 2):\n"
            "                    each round times every row still to measure once, in an order that\n"
            "                    rotates by one per round, and a row keeps the median over rounds, so\n"
            "                    that load on a shared machine falls on all variants alike\n"
            "  --sequential      time the rows one after another instead (all repeats of one row,\n"
            "                    then the next's: the order before rounds; for comparisons)\n"
            "  --cold-mib N      rotate over copies of each variant's weights totalling N MiB (at most\n"
            "                    32 copies) so they are read from memory, as in a full model whose\n"
            "                    weights exceed the caches; 0 = one copy, cache-warm (default 256)\n"
            "  --device D        cpu (default) or cuda (builds with the CUDA backend; device\n"
            "                    PUZZLE_CUDA_DEVICE, default 0); part of the device description\n"
            "  --threads T       CPU threads (default: all cores); part of the device description\n"
            "  --calibrate       measure the CPU's GEMM rate (fp32, bf16), its bf16 rate at 1-64 rows\n"
            "                    (cost_params.gemm_rows_eff), weight-streaming bandwidth and per-op\n"
            "                    overhead, and write a hardware JSON usable as `plan --hardware FILE`\n"
            "  --eff-gemm X, --eff-attn X, --eff-mem X\n"
            "                    with --calibrate: store these CPU efficiency factors (fractions of the\n"
            "                    measured rates) as the file's optional \"cost_params\" (results/cpu_profile.md)\n"
            "  --out FILE        where --calibrate writes (default ~/.cache/puzzle/hardware/cpu_local.json);\n"
            "                    with --db as well, the JSON is also stored in the run's hardware row\n"
            "  --report HW       print measured vs roofline-predicted times (markdown) for the rows of\n"
            "                    this device and dtype; HW a hardware name or JSON path; its optional\n"
            "                    \"cost_params\" object (eff_gemm, eff_attn, eff_mem) overrides the defaults\n");
}

typedef struct {
    const char *db, *out, *report;
    int calibrate, threads, warmup, repeats, sequential;
    pz_backend_kind kind;  // --device
    pz_dt wtype;
    long cold_mib;
    double eff_gemm, eff_attn, eff_mem;  // --calibrate: optional cost_params to store
    int n_scen;
    pz_scenario scen[MAX_SCEN];
} opts;

// A request scenario (input=I,output=O) stands for the passes that pricing.h
// needs to price it at batch 1: exactly what `puzzle search --budget cpu
// --scenario` the same (and, without either, the default) will look up.
static int add_request(opts *o, const char *req, char *err) {
    pz_serve_scenario sc;
    if (pz_serve_scenario_parse(req, &sc, err)) return -1;
    if (!sc.request) return pz_err(err, "'%s' is not a request scenario", req);
    pz_scenario pass[3];
    int n = pz_serve_passes(&sc, 1, pass);
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < o->n_scen; j++)
            dup |= o->scen[j].phase == pass[i].phase && o->scen[j].batch == pass[i].batch && o->scen[j].len == pass[i].len;
        if (dup) continue;
        if (o->n_scen == MAX_SCEN) return pz_err(err, "at most %d scenarios", MAX_SCEN);
        o->scen[o->n_scen++] = pass[i];
    }
    return 0;
}

static int parse(int argc, char **argv, opts *o) {
    const char *cmd = "profile", *v;
    long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--db")) {
            if (!(o->db = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--out")) {
            if (!(o->out = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--report")) {
            if (!(o->report = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (!strcmp(a, "--calibrate")) {
            o->calibrate = 1;
        } else if (!strcmp(a, "--device")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return -1;
            if (pz_backend_kind_parse(v, &o->kind)) {
                fprintf(stderr, "puzzle profile: --device: cpu or cuda (got '%s')\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &o->wtype)) return -1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1024, &n)) return -1;
            o->threads = (int)n;
        } else if (!strcmp(a, "--repeats")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 100000, &n)) return -1;
            o->repeats = (int)n;
        } else if (!strncmp(a, "--eff-", 6)) {
            double *d = !strcmp(a, "--eff-gemm") ? &o->eff_gemm : !strcmp(a, "--eff-attn") ? &o->eff_attn
                      : !strcmp(a, "--eff-mem")  ? &o->eff_mem  : NULL;
            if (!d) {
                fprintf(stderr, "puzzle profile: unknown argument '%s' (see puzzle profile --help)\n", a);
                return -1;
            }
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0.01, 10, d)) return -1;
        } else if (!strcmp(a, "--cold-mib")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1 << 20, &o->cold_mib)) return -1;
        } else if (!strcmp(a, "--sequential")) {
            o->sequential = 1;
        } else if (!strcmp(a, "--warmup")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 100000, &n)) return -1;
            o->warmup = (int)n;
        } else if (!strcmp(a, "--scenario")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return -1;
            char buf[1024], err[PZ_ERRLEN];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *sv, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
                if (o->n_scen == MAX_SCEN) {
                    fprintf(stderr, "puzzle profile: at most %d scenarios\n", MAX_SCEN);
                    return -1;
                }
                if (!strncmp(tok, "input=", 6) || !strncmp(tok, "output=", 7)) {  // a request: I and O together
                    char *next = strtok_r(NULL, ",", &sv);
                    char req[256];
                    snprintf(req, sizeof req, "%s,%s", tok, next ? next : "");
                    o->n_scen--;
                    if (add_request(o, req, err)) {
                        fprintf(stderr, "puzzle profile: --scenario: %s\n", err);
                        return -1;
                    }
                } else if (pz_prof_scenario_parse(tok, &o->scen[o->n_scen++], err)) {
                    fprintf(stderr, "puzzle profile: --scenario: %s\n", err);
                    return -1;
                }
            }
        } else {
            fprintf(stderr, "puzzle profile: unknown argument '%s' (see puzzle profile --help)\n", a);
            return -1;
        }
    }
    if (!o->calibrate && !o->db) {
        fprintf(stderr, "puzzle profile: --db RUN.db is missing (or use --calibrate)\n");
        return -1;
    }
    if (!o->n_scen && add_request(o, PZ_SERVE_DEFAULT, NULL)) return -1;  // what a default search needs
    return 0;
}

// ---- calibrate -----------------------------------------------------------------------

static int mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    return 0;
}

static int calibrate(pz_backend *b, const opts *o, pz_rundb *rdb, int argc, char **argv) {
    char err[PZ_ERRLEN], path[4096], date[32], cmdline[1024] = "puzzle";
    if (o->out) snprintf(path, sizeof path, "%s", o->out);
    else {
        const char *home = getenv("HOME");
        snprintf(path, sizeof path, "%s/.cache/puzzle/hardware/cpu_local.json", home && *home ? home : ".");
    }
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
    }
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(stderr, "calibrating %s ...\n", b->name);
    pz_calib c;
    if (pz_profile_calibrate(b, o->repeats > 0 ? o->repeats : 7, &c, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    pz_cost_params eff = pz_cost_default_params();
    int have_eff = o->eff_gemm > 0 || o->eff_attn > 0 || o->eff_mem > 0;
    if (o->eff_gemm > 0) eff.eff_gemm = o->eff_gemm;
    if (o->eff_attn > 0) eff.eff_attn = o->eff_attn;
    if (o->eff_mem > 0) eff.eff_mem = o->eff_mem;
    char *json = pz_calib_to_json(&c, date, cmdline, have_eff ? &eff : NULL);
    pz_hw hw;
    if (!json || pz_hw_parse(json, strlen(json), "calibration", &hw, err)) {
        fprintf(stderr, "puzzle profile: internal: calibration JSON does not load: %s\n", json ? err : "oom");
        free(json);
        return PZ_EXIT_FAIL;
    }
    mkdirs(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (rdb) {  // --db too: the calibration becomes this device's hardware row
        char dev[256];
        pz_profile_device_desc(b, dev, sizeof dev);
        if (pz_rundb_store_device(rdb, dev, b->n_threads, json, err)) {
            fprintf(stderr, "puzzle profile: %s\n", err);
            free(json);
            return PZ_EXIT_FAIL;
        }
    }
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(json, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(json);
    if (!ok || rename(tmp, path)) {
        fprintf(stderr, "puzzle profile: cannot write %s\n", path);
        remove(tmp);
        return PZ_EXIT_FAIL;
    }
    printf("%s\n  gemm fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s, weight streaming %.2f GB/s, op overhead %.1f us\n"
           "wrote %s\n",
           c.cpu, c.gemm_f32 / 1e9, c.gemm_bf16 / 1e9, c.mem_bw / 1e9, c.launch_s * 1e6, path);
    printf("  bf16 rate by rows (fraction of M=512):");
    for (int i = 0; i < PZ_CALIB_ROWS; i++) printf(" M=%.0f %.3f", c.rows_m[i], c.rows_eff[i]);
    printf("\n");
    return PZ_EXIT_OK;
}

// ---- the run's variants -----------------------------------------------------------------

// The parent's configuration, and the distinct variants to time: the
// embedding, the LM head, and every attention and FFN variant of the run.
static int load_run(pz_rundb *db, pz_config *c, pz_rundb_variant *vars, int *nv, char *err) {
    pz_rundb_variant *rows = NULL;
    int n = 0;
    if (pz_rundb_parent_config(db, c, err) || pz_rundb_list_variants(db, &rows, &n, err)) return -1;
    *nv = 0;
    vars[(*nv)++] = (pz_rundb_variant){.v = {.part = PZ_PROF_EMBED}, .kind = "embed"};
    vars[(*nv)++] = (pz_rundb_variant){.v = {.part = PZ_PROF_HEAD}, .kind = "head"};
    if (n > MAX_VAR - 2) {
        free(rows);
        return pz_err(err, "more than %d distinct variants", MAX_VAR);
    }
    for (int i = 0; i < n; i++) vars[(*nv)++] = rows[i];
    free(rows);
    return 0;
}

// ---- report: measured vs predicted --------------------------------------------------------

// Reads the optional "cost_params" object of a hardware file into p.
static void read_cost_params(const char *path, pz_cost_params *p) {
    char err[PZ_ERRLEN];
    size_t len;
    char *txt = pz_read_file(path, 1u << 20, &len, err);
    if (!txt) return;
    cJSON *r = cJSON_ParseWithLength(txt, len);
    free(txt);
    const cJSON *cp = cJSON_GetObjectItemCaseSensitive(r, "cost_params");
    static const char *k[] = {"eff_gemm", "eff_attn", "eff_mem"};
    double *d[] = {&p->eff_gemm, &p->eff_attn, &p->eff_mem};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cp, k[i]);
        if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble <= 10) *d[i] = v->valuedouble;
    }
    cJSON_Delete(r);
}

static int report(pz_rundb *db, const pz_config *c, const char *hwname, const char *dev, const char *dt) {
    char err[PZ_ERRLEN];
    pz_hw hw;
    if (pz_hw_find(hwname, NULL, &hw, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    pz_cost_params p = pz_cost_default_params();
    if (strchr(hwname, '/') || strstr(hwname, ".json")) read_cost_params(hwname, &p);
    pz_rundb_profile *rows = NULL;
    int n_rows = 0;
    if (pz_rundb_list_profiles(db, dev, dt, 0, &rows, &n_rows, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    printf("device: %s, weights %s; model: %s (%.0f GFLOP/s bf16, %.1f GB/s, %.1f us/op), "
           "eff_gemm %.2f eff_attn %.2f eff_mem %.2f\n\n",
           dev, dt, hw.id, hw.flops_bf16 / 1e9, hw.mem_bw / 1e9, hw.launch_overhead * 1e6, p.eff_gemm, p.eff_attn,
           p.eff_mem);
    printf("| variant | scenario | measured ms (p10–p90) | predicted ms | compute / memory / launch ms "
           "| error %% |\n");
    printf("|---|---|---|---|---|---|\n");
    int printed = 0;
    for (int i = 0; i < n_rows; i++) {
        const char *part = rows[i].part, *kind = rows[i].kind;
        int size = rows[i].size;
        pz_scenario s;
        if (pz_prof_scenario_parse(rows[i].scenario, &s, err)) continue;
        double med = rows[i].median_s, p10 = rows[i].p10_s, p90 = rows[i].p90_s;
        pz_cost cost;
        memset(&cost, 0, sizeof cost);
        pz_layer_spec l = {0};
        int ok = 0;
        if (!strcmp(part, "attn") && !pz_attn_kind_parse(kind, &l.attn)) {
            l.n_kv = size;
            ok = !pz_cost_attn(c, &l, &hw, &p, &s, &cost, err);
        } else if (!strcmp(part, "ffn") && !pz_ffn_kind_parse(kind, &l.ffn)) {
            l.n_ff = size;
            ok = !pz_cost_ffn(c, &l, &hw, &p, &s, &cost, err);
        } else if (!strcmp(part, "embed")) {
            pz_cost_embed(c, &hw, &p, &s, &cost), ok = 1;
        } else if (!strcmp(part, "head")) {
            pz_cost_head(c, &hw, &p, &s, &cost), ok = 1;
        }
        if (!ok) continue;
        char name[48], scen[48];
        snprintf(name, sizeof name, size ? "%s %s %d" : "%s %s", part, kind, size);
        pz_prof_scenario_name(&s, scen, sizeof scen);
        char errs[16] = "—";
        if (med > 0) snprintf(errs, sizeof errs, "%+.0f", 100.0 * (cost.time_s - med) / med);
        else if (cost.time_s == 0) snprintf(errs, sizeof errs, "0");
        printf("| %s | %s | %.3f (%.3f–%.3f) | %.3f | %.3f / %.3f / %.3f | %s |\n", name, scen, med * 1e3, p10 * 1e3,
               p90 * 1e3, cost.time_s * 1e3, cost.compute_s * 1e3, cost.memory_s * 1e3, cost.launch_s * 1e3, errs);
        printed++;
    }
    free(rows);
    if (!printed) {
        fprintf(stderr, "puzzle profile: no profile rows for device '%s' and dtype %s\n", dev, dt);
        return PZ_EXIT_FAIL;
    }
    return PZ_EXIT_OK;
}

// ---- main -----------------------------------------------------------------------------

int pz_cmd_profile(int argc, char **argv) {
    opts o = {.warmup = 2, .repeats = 0, .cold_mib = 256};
    if (parse(argc, argv, &o)) return PZ_EXIT_USAGE;
    char err[PZ_ERRLEN];
    pz_backend *b = pz_backend_create(o.kind, o.threads, err);
    if (!b) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    int ret = PZ_EXIT_FAIL;
    pz_rundb *rdb = NULL;
    if (o.db && !(rdb = pz_rundb_open(o.db, 0, err))) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        goto out;
    }
    if (o.calibrate) {
        ret = calibrate(b, &o, rdb, argc, argv);
        goto out;
    }
    static pz_config c;
    pz_rundb_variant vars[MAX_VAR];
    int nv = 0;
    if (load_run(rdb, &c, vars, &nv, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        goto out;
    }
    char dev[256];
    pz_profile_device_desc(b, dev, sizeof dev);
    const char *dt = pz_dt_name(o.wtype);
    if (o.report) {
        ret = report(rdb, &c, o.report, dev, dt);
        goto out;
    }
    if (pz_rundb_store_device(rdb, dev, b->n_threads, NULL, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        goto out;
    }
    pz_prof_params pp = pz_prof_default_params();
    pp.dtype = o.wtype;
    pp.warmup = o.warmup;
    pp.cold_bytes = (size_t)o.cold_mib << 20;
    if (o.repeats) pp.repeats = o.repeats;
    pp.sequential = o.sequential;
    // The rows still to measure, then timed together in interleaved rounds.
    int total = nv * o.n_scen, n_todo = 0;
    int *todo = malloc((size_t)total * sizeof *todo);
    pz_prof_result *res = calloc((size_t)total, sizeof *res);
    pz_prof_variant *tv = calloc((size_t)total, sizeof *tv);
    pz_scenario *ts = calloc((size_t)total, sizeof *ts);
    if (!todo || !res || !tv || !ts) {
        fprintf(stderr, "puzzle profile: out of memory\n");
        goto loop_fail;
    }
    for (int k = 0; k < total; k++) {
        int si = k / nv, vi = k % nv;
        char scen[48];
        pz_prof_scenario_name(&o.scen[si], scen, sizeof scen);
        int have = pz_rundb_have_profile(rdb, pz_prof_part_name(vars[vi].v.part), vars[vi].kind, vars[vi].v.size,
                                         scen, dev, dt, err);
        if (have < 0) {
            fprintf(stderr, "puzzle profile: %s\n", err);
            goto loop_fail;
        }
        if (!have) tv[n_todo] = vars[vi].v, ts[n_todo] = o.scen[si], todo[n_todo++] = k;
    }
    double t0 = pz_now();
    fprintf(stderr, "profiling %d variants x %d scenarios on %s, %s weights: %d rows to measure, %s\n", nv,
            o.n_scen, dev, dt, n_todo, o.sequential ? "one after another" : "in interleaved rounds");
    if (pz_profile_variants(b, &c, n_todo, tv, ts, &pp, res, err)) {
        fprintf(stderr, "puzzle profile: %s\n", err);
        goto loop_fail;
    }
    for (int t = 0; t < n_todo; t++) {
        int k = todo[t], si = k / nv, vi = k % nv;
        pz_prof_result fin = res[t];
        char scen[48];
        pz_prof_scenario_name(&o.scen[si], scen, sizeof scen);
        pz_rundb_profile row = {.size = vars[vi].v.size, .pass = o.scen[si], .median_s = fin.median_s,
                                .p10_s = fin.p10_s, .p90_s = fin.p90_s, .repeats = fin.repeats,
                                .param_bytes = fin.param_bytes, .kv_bytes_per_token = fin.kv_bytes_per_token,
                                .measured = 1};
        snprintf(row.part, sizeof row.part, "%s", pz_prof_part_name(vars[vi].v.part));
        snprintf(row.kind, sizeof row.kind, "%s", vars[vi].kind);
        snprintf(row.scenario, sizeof row.scenario, "%s", scen);
        snprintf(row.device, sizeof row.device, "%s", dev);
        snprintf(row.dtype, sizeof row.dtype, "%s", dt);
        if (pz_rundb_store_profile(rdb, &row, err)) {
            fprintf(stderr, "puzzle profile: %s\n", err);
            goto loop_fail;
        }
        fprintf(stderr, "[%d/%d] %-5s %-6s %5d %-16s %9.3f ms (p10 %.3f, p90 %.3f)\n", t + 1, n_todo,
                pz_prof_part_name(vars[vi].v.part), vars[vi].kind, vars[vi].v.size, scen, fin.median_s * 1e3,
                fin.p10_s * 1e3, fin.p90_s * 1e3);
    }
    int ran = n_todo;
    free(todo);
    free(res);
    free(tv);
    free(ts);
    printf("profiled %d rows (%d already measured) in %.1f s\n", ran, total - ran, pz_now() - t0);
    ret = PZ_EXIT_OK;
    goto out;
loop_fail:
    free(todo);
    free(res);
    free(tv);
    free(ts);
out:
    pz_rundb_close(rdb);
    pz_backend_free(b);
    return ret;
}
