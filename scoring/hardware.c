// hardware.c — loads and validates accelerator JSON files (see hardware.h).
#include "hardware.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "common.h"

#ifndef PZ_HARDWARE_DIR
#define PZ_HARDWARE_DIR "scoring/hardware"
#endif

#define HW_MAX_FILE (1u << 20)

const char *pz_hw_default_dir(void) {
    const char *env = getenv("PUZZLE_HARDWARE_DIR");
    return env && *env ? env : PZ_HARDWARE_DIR;
}

static int get_string(const cJSON *o, const char *key, char *dst, size_t cap, const char *what, char *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return pz_err(err, "hardware %s: missing or empty string field '%s'", what, key);
    if (strlen(v->valuestring) >= cap) return pz_err(err, "hardware %s: field '%s' is too long", what, key);
    snprintf(dst, cap, "%s", v->valuestring);
    return 0;
}

// A required (or, with optional, nullable) positive finite number.
static int get_number(const cJSON *o, const char *key, int optional, double *out, const char *what, char *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (optional) {
            *out = 0;
            return 0;
        }
        return pz_err(err, "hardware %s: missing field '%s'", what, key);
    }
    if (!cJSON_IsNumber(v)) return pz_err(err, "hardware %s: field '%s' must be a number", what, key);
    double d = v->valuedouble;
    if (!isfinite(d) || d <= 0)
        return pz_err(err, "hardware %s: field '%s' must be a positive number (got %g)", what, key, d);
    *out = d;
    return 0;
}

static int check_source(const cJSON *sources, const char *key, const char *what, char *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(sources, key);
    const cJSON *t = s ? cJSON_GetObjectItemCaseSensitive(s, "title") : NULL;
    const cJSON *u = s ? cJSON_GetObjectItemCaseSensitive(s, "url") : NULL;
    if (!cJSON_IsObject(s) || !cJSON_IsString(t) || !t->valuestring[0] || !cJSON_IsString(u) || !u->valuestring[0])
        return pz_err(err, "hardware %s: sources.%s needs a {\"title\", \"url\"} entry", what, key);
    return 0;
}

int pz_hw_parse(const char *json, size_t len, const char *what, pz_hw *hw, char *err) {
    memset(hw, 0, sizeof *hw);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return pz_err(err, "hardware %s: not valid JSON", what);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        pz_err(err, "hardware %s: top level must be an object", what);
        goto done;
    }
    if (get_string(root, "id", hw->id, sizeof hw->id, what, err) ||
        get_string(root, "name", hw->name, sizeof hw->name, what, err) ||
        get_string(root, "interconnect", hw->interconnect, sizeof hw->interconnect, what, err))
        goto done;
    static const char *keys[] = {"flops_bf16", "flops_fp8", "mem_bandwidth_bytes_per_s", "mem_bytes",
                                 "link_bandwidth_bytes_per_s", "link_latency_s", "launch_overhead_s"};
    double *dst[] = {&hw->flops_bf16, &hw->flops_fp8, &hw->mem_bw, &hw->mem_bytes,
                     &hw->link_bw, &hw->link_latency, &hw->launch_overhead};
    const cJSON *sources = cJSON_GetObjectItemCaseSensitive(root, "sources");
    if (!cJSON_IsObject(sources)) {
        pz_err(err, "hardware %s: missing object 'sources' (a data-sheet source for every figure)", what);
        goto done;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (get_number(root, keys[i], dst[i] == &hw->flops_fp8, dst[i], what, err)) goto done;
        if (check_source(sources, keys[i], what, err)) goto done;
    }
    const cJSON *cp = cJSON_GetObjectItemCaseSensitive(root, "cost_params");
    if (cp) {
        static const char *eff_keys[] = {"eff_gemm", "eff_attn", "eff_mem", "eff_link"};
        double *eff_dst[] = {&hw->eff_gemm, &hw->eff_attn, &hw->eff_mem, &hw->eff_link};
        for (size_t i = 0; i < sizeof eff_keys / sizeof eff_keys[0]; i++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(cp, eff_keys[i]);
            if (!e) continue;
            if (!cJSON_IsNumber(e) || !(e->valuedouble > 0 && e->valuedouble <= 1)) {
                pz_err(err, "hardware %s: cost_params.%s must be a number in (0, 1]", what, eff_keys[i]);
                goto done;
            }
            *eff_dst[i] = e->valuedouble;
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cp, "gemm_rows_eff");
        if (t) {
            int n = cJSON_IsArray(t) ? cJSON_GetArraySize(t) : -1;
            if (n < 1 || n > PZ_HW_MAX_ROWS_EFF) {
                pz_err(err, "hardware %s: cost_params.gemm_rows_eff must be an array of 1 to %d [rows, factor] pairs",
                       what, PZ_HW_MAX_ROWS_EFF);
                goto done;
            }
            for (int i = 0; i < n; i++) {
                const cJSON *pt = cJSON_GetArrayItem(t, i), *m = cJSON_GetArrayItem(pt, 0), *f = cJSON_GetArrayItem(pt, 1);
                if (!cJSON_IsArray(pt) || cJSON_GetArraySize(pt) != 2 || !cJSON_IsNumber(m) || !cJSON_IsNumber(f) ||
                    !(m->valuedouble >= 1) || !(f->valuedouble > 0 && f->valuedouble <= 4) ||
                    (i > 0 && !(m->valuedouble > hw->rows_eff_m[i - 1]))) {
                    pz_err(err, "hardware %s: cost_params.gemm_rows_eff[%d] must be [rows >= 1, factor in (0, 4]] "
                                "with rows ascending", what, i);
                    goto done;
                }
                hw->rows_eff_m[i] = m->valuedouble, hw->rows_eff[i] = f->valuedouble;
            }
            hw->n_rows_eff = n;
        }
    }
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(root, "aliases");
    if (aliases && !cJSON_IsArray(aliases)) {
        pz_err(err, "hardware %s: 'aliases' must be an array of strings", what);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

double pz_hw_rows_eff(const pz_hw *hw, double rows) {
    int n = hw->n_rows_eff;
    if (n < 1) return 1;
    if (rows <= hw->rows_eff_m[0]) return hw->rows_eff[0];
    if (rows >= hw->rows_eff_m[n - 1]) return hw->rows_eff[n - 1];
    int i = 1;
    while (rows > hw->rows_eff_m[i]) i++;
    double a = log(hw->rows_eff_m[i - 1]), b = log(hw->rows_eff_m[i]), u = (log(rows) - a) / (b - a);
    return hw->rows_eff[i - 1] + u * (hw->rows_eff[i] - hw->rows_eff[i - 1]);
}

int pz_hw_load_file(const char *path, pz_hw *hw, char *err) {
    size_t len;
    char *txt = pz_read_file(path, HW_MAX_FILE, &len, err);
    if (!txt) return -1;
    const char *base = strrchr(path, '/');
    int rc = pz_hw_parse(txt, len, base ? base + 1 : path, hw, err);
    free(txt);
    return rc;
}

// 1 when the file's id or one of its aliases equals name (case-insensitive).
static int file_matches(const char *path, const char *name) {
    char e[PZ_ERRLEN];
    size_t len;
    char *txt = pz_read_file(path, HW_MAX_FILE, &len, e);
    if (!txt) return 0;
    cJSON *root = cJSON_ParseWithLength(txt, len);
    free(txt);
    int hit = 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (cJSON_IsString(id) && strcasecmp(id->valuestring, name) == 0) hit = 1;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(root, "aliases")) {
        if (cJSON_IsString(a) && strcasecmp(a->valuestring, name) == 0) hit = 1;
    }
    cJSON_Delete(root);
    return hit;
}

static int is_json_name(const char *n) {
    size_t l = strlen(n);
    return l > 5 && strcmp(n + l - 5, ".json") == 0 && n[0] != '.';
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int pz_hw_list(const char *dir, char *buf, size_t cap) {
    if (!dir) dir = pz_hw_default_dir();
    if (cap) buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256)
        if (is_json_name(de->d_name) && (names[n] = strdup(de->d_name))) n++;
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (used < cap) {
            size_t l = strlen(names[i]) - 5;  // without ".json"
            int w = snprintf(buf + used, cap - used, "%s%.*s", i ? ", " : "", (int)l, names[i]);
            if (w > 0) used += (size_t)w;
        }
        free(names[i]);
    }
    return n;
}

int pz_hw_find(const char *name, const char *dir, pz_hw *hw, char *err) {
    if (!name || !*name) return pz_err(err, "no hardware named");
    if (strchr(name, '/') || is_json_name(name)) return pz_hw_load_file(name, hw, err);
    if (!dir) dir = pz_hw_default_dir();
    DIR *d = opendir(dir);
    if (!d) return pz_err(err, "cannot read hardware directory %s (set PUZZLE_HARDWARE_DIR)", dir);
    char path[4096], found[4096] = "";
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_json_name(de->d_name)) continue;
        pz_path_join(path, sizeof path, dir, de->d_name);
        if (file_matches(path, name)) {
            snprintf(found, sizeof found, "%s", path);
            break;
        }
    }
    closedir(d);
    if (found[0]) return pz_hw_load_file(found, hw, err);
    char known[1024];
    pz_hw_list(dir, known, sizeof known);
    return pz_err(err, "unknown hardware '%s' (known: %s)", name, known[0] ? known : "none");
}
