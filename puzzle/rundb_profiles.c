// rundb_profiles.c — devices and measured sub-block timings (`puzzle
// profile`, see rundb.h): the hardware rows, the profiles rows, and the
// variants of a run that profiling times.
#include "rundb_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int pz_rundb_store_device(pz_rundb *db, const char *device, int threads, const char *json, char *err) {
    if (rundb_begin(db, err)) return -1;
    // kind: 'gpu' for the CUDA backend's devices ("cuda: NAME", scoring/profile.c), so that a
    // cpu budget never prices by a GPU's rows
    int rc = rundb_exec(db, err,
                        "INSERT INTO hardware (device, kind, threads, json, measured) VALUES "
                        "(?1, CASE WHEN ?1 LIKE 'cuda%' THEN 'gpu' ELSE 'cpu' END, ?2, ?3, 1) "
                        "ON CONFLICT (device) DO UPDATE SET json = IFNULL(excluded.json, hardware.json)",
                        "tit", device, threads, json);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_device_json(pz_rundb *db, const char *device, char **json, char *err) {
    rundb_stmt q;
    *json = NULL;
    if (rundb_prepare(db, &q, err, "SELECT json FROM hardware WHERE device = ? AND json IS NOT NULL", "t", device))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1 && !(*json = strdup(rundb_text(&q, 0)))) rc = pz_err(err, "out of memory");
    rundb_done(&q);
    return rc;
}

int pz_rundb_have_profile(pz_rundb *db, const char *part, const char *kind, int size, const char *scenario,
                          const char *device, const char *dtype, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT 1 FROM profiles WHERE part = ? AND kind = ? AND size = ? AND scenario = ? AND "
                      "device = ? AND dtype = ? AND measured = 1",
                      "ttittt", part, kind, size, scenario, device, dtype))
        return -1;
    int rc = rundb_step(&q);
    rundb_done(&q);
    return rc;
}

int pz_rundb_store_profile(pz_rundb *db, const pz_rundb_profile *p, char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT OR REPLACE INTO profiles (part, kind, size, scenario, phase, batch, len, device, "
                        "dtype, median_s, p10_s, p90_s, repeats, param_bytes, kv_bytes_per_token, measured) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                        "ttittllttdddidd", p->part, p->kind, p->size, p->scenario,
                        p->pass.phase == PZ_PHASE_PREFILL ? "prefill" : "decode", p->pass.batch, p->pass.len,
                        p->device, p->dtype, p->median_s, p->p10_s, p->p90_s, p->repeats, p->param_bytes,
                        p->kv_bytes_per_token);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_list_profiles(pz_rundb *db, const char *device, const char *dtype, int measured_only,
                           pz_rundb_profile **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT part, kind, size, scenario, phase, batch, len, device, dtype, median_s, p10_s, p90_s, "
                      "repeats, IFNULL(param_bytes, 0), IFNULL(kv_bytes_per_token, 0), measured FROM profiles "
                      "WHERE device = ? AND dtype = ? AND (? = 0 OR measured = 1) "
                      "ORDER BY part DESC, kind, size DESC, phase DESC, batch, len",
                      "tti", device, dtype, measured_only))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        pz_rundb_profile *p = &(*rows)[(*n)++];
        memset(p, 0, sizeof *p);
        rundb_copy(&q, 0, p->part, sizeof p->part);
        rundb_copy(&q, 1, p->kind, sizeof p->kind);
        p->size = rundb_int(&q, 2);
        rundb_copy(&q, 3, p->scenario, sizeof p->scenario);
        p->pass.phase = strcmp(rundb_text(&q, 4), "prefill") ? PZ_PHASE_DECODE : PZ_PHASE_PREFILL;
        p->pass.batch = (long)rundb_int64(&q, 5);
        p->pass.len = (long)rundb_int64(&q, 6);
        rundb_copy(&q, 7, p->device, sizeof p->device);
        rundb_copy(&q, 8, p->dtype, sizeof p->dtype);
        p->median_s = rundb_double(&q, 9);
        p->p10_s = rundb_double(&q, 10);
        p->p90_s = rundb_double(&q, 11);
        p->repeats = rundb_int(&q, 12);
        p->param_bytes = rundb_double(&q, 13);
        p->kv_bytes_per_token = rundb_double(&q, 14);
        p->measured = rundb_int(&q, 15);
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}

int pz_rundb_cpu_profiled(pz_rundb *db, const char *device, const char *dtype, pz_rundb_device_dtype **rows,
                          int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT DISTINCT p.device, p.dtype FROM profiles p JOIN hardware h ON h.device = p.device "
                      "WHERE h.kind = 'cpu' AND p.measured = 1 AND (?1 IS NULL OR p.device = ?1) AND "
                      "(?2 IS NULL OR p.dtype = ?2)",
                      "tt", device, dtype))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        rundb_copy(&q, 0, (*rows)[*n].device, sizeof (*rows)[*n].device);
        rundb_copy(&q, 1, (*rows)[*n].dtype, sizeof (*rows)[*n].dtype);
        (*n)++;
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}

int pz_rundb_list_variants(pz_rundb *db, pz_rundb_variant **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT DISTINCT 'attn', attn_kind, IFNULL(attn_size, 0) FROM blocks WHERE attn_kind IS NOT NULL "
                      "UNION SELECT DISTINCT 'ffn', ffn_kind, IFNULL(ffn_size, 0) FROM blocks WHERE ffn_kind IS NOT "
                      "NULL UNION "
                      // the parent's own variants, which a search space may leave out
                      "SELECT 'attn', attn, CASE attn WHEN 'gqa' THEN n_kv ELSE 0 END FROM layers "
                      "JOIN models m ON m.id = model_id AND m.role = 'parent' UNION "
                      "SELECT 'ffn', ffn, CASE ffn WHEN 'swiglu' THEN n_ff ELSE 0 END FROM layers "
                      "JOIN models m ON m.id = model_id AND m.role = 'parent' ORDER BY 1, 2, 3 DESC",
                      ""))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        pz_rundb_variant *r = &(*rows)[*n];
        memset(r, 0, sizeof *r);
        r->v.part = strcmp(rundb_text(&q, 0), "attn") ? PZ_PROF_FFN : PZ_PROF_ATTN;
        rundb_copy(&q, 1, r->kind, sizeof r->kind);
        r->v.size = rundb_int(&q, 2);
        int bad = r->v.part == PZ_PROF_ATTN ? pz_attn_kind_parse(r->kind, &r->v.attn)
                                          : pz_ffn_kind_parse(r->kind, &r->v.ffn);
        if (bad) {
            rc = pz_err(err, "unknown variant kind '%s' in blocks", r->kind);
            break;
        }
        (*n)++;
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}
