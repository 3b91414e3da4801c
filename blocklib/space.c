// space.c — see space.h.
#include "space.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double ffn_fracs[] = {0.87, 0.75, 0.50, 0.25, 0.20, 0.10};

void pz_space_free(pz_space *s) {
    if (!s) return;
    free(s->layers);
    s->layers = NULL;
    s->n_layers = 0;
}

int pz_variant_eq(pz_sub_kind half, pz_variant a, pz_variant b) {
    if (a.size != b.size) return 0;
    return half == PZ_SUB_ATTN ? a.attn == b.attn : a.ffn == b.ffn;
}

int pz_variant_is_linear(pz_sub_kind half, pz_variant v) {
    return half == PZ_SUB_ATTN ? v.attn == PZ_ATTN_LINEAR : v.ffn == PZ_FFN_LINEAR;
}

int pz_variant_is_noop(pz_sub_kind half, pz_variant v) {
    return half == PZ_SUB_ATTN ? v.attn == PZ_ATTN_NOOP : v.ffn == PZ_FFN_NOOP;
}

static int has_variant(pz_sub_kind half, const pz_variant *v, int n, pz_variant x) {
    for (int i = 0; i < n; i++)
        if (pz_variant_eq(half, v[i], x)) return 1;
    return 0;
}

// A child's config.json gives each FFN width as DeciLM's ffn_mult, which
// transformers and vLLM read back as round_up(int(2*ffn_mult*hidden/3), 256):
// a width other readers can load must come out of that rule for some
// ffn_mult we write, i.e. be a multiple of 256 (pz_decilm_ffn_mult finds the
// multiplier). A parent whose own width is not one cannot be read by them
// as DeciLM at all (the small random test models); its children carry exact
// widths in our per-block "intermediate_size" and only this toolkit reads them.
static int parent_decilm_expressible(const pz_config *c) {
    for (int l = 0; l < c->n_layer; l++)
        if (c->layers[l].ffn == PZ_FFN_SWIGLU && pz_decilm_ffn_mult(c->layers[l].n_ff, c->hidden) <= 0)
            return 0;
    return 1;
}

static int refuse_width(const char *where, int w, const pz_config *c, char *err) {
    int lo = w / 256 * 256, hi = lo + 256;
    char alt[64];
    if (lo > 0) snprintf(alt, sizeof alt, "%d or %d", lo, hi);
    else snprintf(alt, sizeof alt, "%d", hi);
    return pz_err(err, "%s: FFN width %d cannot be written to a DeciLM config.json that transformers and "
                  "vLLM read back (they take ffn_mult to round_up(int(2*ffn_mult*%d/3), 256), so widths are "
                  "multiples of 256); use %s", where, w, c->hidden, alt);
}

int pz_space_default(pz_space *s, const pz_config *c, int round_to, char *err) {
    memset(s, 0, sizeof *s);
    if (round_to <= 0) round_to = 256;
    if (round_to % 256 != 0 && parent_decilm_expressible(c))
        return pz_err(err, "space: round_to %d gives FFN widths that other DeciLM readers (transformers, "
                      "vLLM) cannot load: their rule rounds every width to a multiple of 256", round_to);
    s->round_to = round_to;
    s->all_layers = 1;
    int max_kv = 0, max_ff = 0;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->layers[l].attn == PZ_ATTN_GQA && c->layers[l].n_kv > max_kv) max_kv = c->layers[l].n_kv;
        if (c->layers[l].ffn == PZ_FFN_SWIGLU && c->layers[l].n_ff > max_ff) max_ff = c->layers[l].n_ff;
    }
    if (c->n_layer <= 0 || c->n_head <= 0) return pz_err(err, "space: parent has no layers or heads");
    // Attention: parent KV count, then every smaller divisor of n_head.
    for (int kv = max_kv; kv >= 1; kv--) {
        if (c->n_head % kv != 0 && kv != max_kv) continue;
        if (s->n_attn >= PZ_SPACE_MAX_VARIANTS - 2) break;
        s->attn[s->n_attn++] = (pz_variant){.attn = PZ_ATTN_GQA, .size = kv};
    }
    s->attn[s->n_attn++] = (pz_variant){.attn = PZ_ATTN_LINEAR};
    s->attn[s->n_attn++] = (pz_variant){.attn = PZ_ATTN_NOOP};
    // FFN: parent width, then the fractions rounded to round_to.
    if (max_ff > 0) {
        s->ffn[s->n_ffn++] = (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = max_ff};
        for (size_t i = 0; i < sizeof ffn_fracs / sizeof ffn_fracs[0]; i++) {
            long w = lround(ffn_fracs[i] * max_ff / round_to) * round_to;
            if (w < round_to) w = round_to;
            if (w > max_ff) w = max_ff;
            pz_variant v = {.ffn = PZ_FFN_SWIGLU, .size = (int)w};
            if (!has_variant(PZ_SUB_FFN, s->ffn, s->n_ffn, v)) s->ffn[s->n_ffn++] = v;
        }
    }
    s->ffn[s->n_ffn++] = (pz_variant){.ffn = PZ_FFN_LINEAR};
    s->ffn[s->n_ffn++] = (pz_variant){.ffn = PZ_FFN_NOOP};
    return 0;
}

// ---- JSON -------------------------------------------------------------------

static int parse_variants(cJSON *arr, int is_attn, pz_variant *out, int *n, const char *what,
                          char *err) {
    const char *half = is_attn ? "attention" : "ffn";
    if (!cJSON_IsArray(arr)) return pz_err(err, "%s: \"%s\" must be an array", what, half);
    int k = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (k >= PZ_SPACE_MAX_VARIANTS)
            return pz_err(err, "%s: more than %d %s variants", what, PZ_SPACE_MAX_VARIANTS, half);
        if (!cJSON_IsObject(it)) return pz_err(err, "%s: %s[%d] is not an object", what, half, k);
        cJSON *kind = cJSON_GetObjectItemCaseSensitive(it, "kind");
        if (!cJSON_IsString(kind)) return pz_err(err, "%s: %s[%d] has no string \"kind\"", what, half, k);
        const char *sizekey = is_attn ? "n_kv" : "n_ff";
        const char *big = is_attn ? "gqa" : "swiglu";
        pz_variant v = {.size = 0};
        if (strcmp(kind->valuestring, big) == 0) {
            if (is_attn) v.attn = PZ_ATTN_GQA;
            else v.ffn = PZ_FFN_SWIGLU;
            cJSON *sz = cJSON_GetObjectItemCaseSensitive(it, sizekey);
            if (!cJSON_IsNumber(sz))
                return pz_err(err, "%s: %s[%d] (%s) needs a number \"%s\"", what, half, k, big, sizekey);
            double d = sz->valuedouble;
            if (d != floor(d) || d < -1e9 || d > 1e9)
                return pz_err(err, "%s: %s[%d]: %s %g is not an integer", what, half, k, sizekey, d);
            v.size = (int)d;
            if (v.size <= 0)
                return pz_err(err, "%s: %s[%d]: %s %d must be positive (a %s of width 0 is a noop)",
                              what, half, k, sizekey, v.size, big);
        } else if (strcmp(kind->valuestring, "linear") == 0) {
            if (is_attn) v.attn = PZ_ATTN_LINEAR;
            else v.ffn = PZ_FFN_LINEAR;
        } else if (strcmp(kind->valuestring, "noop") == 0) {
            if (is_attn) v.attn = PZ_ATTN_NOOP;
            else v.ffn = PZ_FFN_NOOP;
        } else {
            return pz_err(err, "%s: %s[%d]: unknown kind \"%s\" (expected %s, linear or noop)", what,
                          half, k, kind->valuestring, big);
        }
        if (has_variant(is_attn ? PZ_SUB_ATTN : PZ_SUB_FFN, out, k, v))
            return pz_err(err, "%s: %s[%d] duplicates an earlier variant", what, half, k);
        out[k++] = v;
    }
    *n = k;
    return 0;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int pz_space_from_json(pz_space *s, const char *json, size_t len, const char *what,
                       const pz_config *c, char *err) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return pz_err(err, "%s: not valid JSON", what);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        pz_err(err, "%s: the space must be a JSON object", what);
        goto out;
    }
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble != 1)) {
        pz_err(err, "%s: unsupported version (expected 1)", what);
        goto out;
    }
    cJSON *rt = cJSON_GetObjectItemCaseSensitive(root, "round_to");
    s->round_to = 256;
    if (rt) {
        if (!cJSON_IsNumber(rt) || rt->valuedouble < 1 || rt->valuedouble > 1e6 ||
            rt->valuedouble != floor(rt->valuedouble)) {
            pz_err(err, "%s: \"round_to\" must be a positive integer", what);
            goto out;
        }
        s->round_to = (int)rt->valuedouble;
    }
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!layers || (cJSON_IsString(layers) && strcmp(layers->valuestring, "all") == 0)) {
        s->all_layers = 1;
    } else if (cJSON_IsArray(layers)) {
        int n = cJSON_GetArraySize(layers);
        if (n <= 0 || n > PZ_MAX_LAYERS) {
            pz_err(err, "%s: \"layers\" must list 1..%d layers", what, PZ_MAX_LAYERS);
            goto out;
        }
        s->layers = malloc(sizeof(int) * (size_t)n);
        if (!s->layers) {
            pz_err(err, "%s: out of memory", what);
            goto out;
        }
        int k = 0;
        cJSON *it;
        cJSON_ArrayForEach(it, layers) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= PZ_MAX_LAYERS ||
                it->valuedouble != floor(it->valuedouble)) {
                pz_err(err, "%s: layers[%d] is not a layer index", what, k);
                goto out;
            }
            s->layers[k++] = (int)it->valuedouble;
        }
        qsort(s->layers, (size_t)k, sizeof(int), cmp_int);
        for (int i = 1; i < k; i++)
            if (s->layers[i] == s->layers[i - 1]) {
                pz_err(err, "%s: layer %d listed twice", what, s->layers[i]);
                goto out;
            }
        s->n_layers = k;
    } else {
        pz_err(err, "%s: \"layers\" must be \"all\" or an array of layer indices", what);
        goto out;
    }
    if (parse_variants(cJSON_GetObjectItemCaseSensitive(root, "attention"), 1, s->attn, &s->n_attn,
                       what, err) ||
        parse_variants(cJSON_GetObjectItemCaseSensitive(root, "ffn"), 0, s->ffn, &s->n_ffn, what, err))
        goto out;
    if (s->n_attn == 0 && s->n_ffn == 0) {
        pz_err(err, "%s: the space has no variants", what);
        goto out;
    }
    if (c && pz_space_validate(s, c, err)) {
        char tmp[PZ_ERRLEN];
        snprintf(tmp, sizeof tmp, "%s", err ? err : "");
        pz_err(err, "%s: %s", what, tmp);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) pz_space_free(s);
    return rc;
}

int pz_space_read_file(pz_space *s, const char *path, const pz_config *c, char *err) {
    size_t len = 0;
    char *txt = pz_read_file(path, 1 << 20, &len, err);
    if (!txt) return -1;
    int rc = pz_space_from_json(s, txt, len, path, c, err);
    free(txt);
    return rc;
}

static cJSON *variant_json(const pz_variant *v, int is_attn) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const char *kn = is_attn ? pz_attn_kind_name(v->attn)
                             : pz_ffn_kind_name(v->ffn);
    cJSON_AddStringToObject(o, "kind", kn);
    if (is_attn ? v->attn == PZ_ATTN_GQA : v->ffn == PZ_FFN_SWIGLU) cJSON_AddNumberToObject(o, is_attn ? "n_kv" : "n_ff", v->size);
    return o;
}

char *pz_space_to_json(const pz_space *s) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddNumberToObject(root, "round_to", s->round_to);
    if (s->all_layers) {
        cJSON_AddStringToObject(root, "layers", "all");
    } else {
        cJSON *a = cJSON_AddArrayToObject(root, "layers");
        for (int i = 0; a && i < s->n_layers; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(s->layers[i]));
    }
    cJSON *a = cJSON_AddArrayToObject(root, "attention");
    for (int i = 0; a && i < s->n_attn; i++) cJSON_AddItemToArray(a, variant_json(&s->attn[i], 1));
    cJSON *f = cJSON_AddArrayToObject(root, "ffn");
    for (int i = 0; f && i < s->n_ffn; i++) cJSON_AddItemToArray(f, variant_json(&s->ffn[i], 0));
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

int pz_space_write_file(const pz_space *s, const char *path, char *err) {
    char *txt = pz_space_to_json(s);
    if (!txt) return pz_err(err, "%s: out of memory", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(txt);
        return pz_err(err, "%s: %s", tmp, strerror(errno));
    }
    size_t n = strlen(txt);
    int ok = fwrite(txt, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    free(txt);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pz_err(err, "%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

int pz_space_validate(const pz_space *s, const pz_config *c, char *err) {
    int max_kv = 0, max_ff = 0;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->layers[l].attn == PZ_ATTN_GQA && c->layers[l].n_kv > max_kv) max_kv = c->layers[l].n_kv;
        if (c->layers[l].ffn == PZ_FFN_SWIGLU && c->layers[l].n_ff > max_ff) max_ff = c->layers[l].n_ff;
    }
    if (s->round_to <= 0) return pz_err(err, "round_to %d must be positive", s->round_to);
    int decilm = parent_decilm_expressible(c);
    if (!s->all_layers) {
        if (s->n_layers <= 0 || !s->layers) return pz_err(err, "no layers selected");
        for (int i = 0; i < s->n_layers; i++)
            if (s->layers[i] < 0 || s->layers[i] >= c->n_layer)
                return pz_err(err, "layer %d out of range (the parent has %d layers)", s->layers[i],
                              c->n_layer);
    }
    for (int i = 0; i < s->n_attn; i++) {
        const pz_variant *v = &s->attn[i];
        if (v->attn < PZ_ATTN_GQA || v->attn > PZ_ATTN_NOOP)
            return pz_err(err, "attention[%d]: unknown kind %d", i, (int)v->attn);
        if (v->attn == PZ_ATTN_GQA) {
            if (v->size <= 0) return pz_err(err, "attention[%d]: n_kv %d must be positive", i, v->size);
            if (c->n_head % v->size != 0)
                return pz_err(err, "attention[%d]: n_kv %d does not divide the %d query heads", i,
                              v->size, c->n_head);
            if (v->size > max_kv)
                return pz_err(err, "attention[%d]: n_kv %d exceeds the parent's %d KV heads", i,
                              v->size, max_kv);
        } else if (v->size != 0) {
            return pz_err(err, "attention[%d]: %s takes no size", i,
                          pz_attn_kind_name(v->attn));
        }
        if (has_variant(PZ_SUB_ATTN, s->attn, i, *v))
            return pz_err(err, "attention[%d] duplicates an earlier variant", i);
    }
    for (int i = 0; i < s->n_ffn; i++) {
        const pz_variant *v = &s->ffn[i];
        if (v->ffn < PZ_FFN_SWIGLU || v->ffn > PZ_FFN_NOOP)
            return pz_err(err, "ffn[%d]: unknown kind %d", i, (int)v->ffn);
        if (v->ffn == PZ_FFN_SWIGLU) {
            if (v->size <= 0) return pz_err(err, "ffn[%d]: width %d must be positive", i, v->size);
            if (v->size > max_ff)
                return pz_err(err, "ffn[%d]: width %d exceeds the parent's %d", i, v->size, max_ff);
            if (decilm && pz_decilm_ffn_mult(v->size, c->hidden) <= 0) {
                char where[32];
                snprintf(where, sizeof where, "ffn[%d]", i);
                return refuse_width(where, v->size, c, err);
            }
        } else if (v->size != 0) {
            return pz_err(err, "ffn[%d]: %s takes no size", i, pz_ffn_kind_name(v->ffn));
        }
        if (has_variant(PZ_SUB_FFN, s->ffn, i, *v))
            return pz_err(err, "ffn[%d] duplicates an earlier variant", i);
    }
    return 0;
}

// ---- blocks -----------------------------------------------------------------

char *pz_variant_name(pz_sub_kind sub, const pz_variant *v, char *buf, size_t cap) {
    if (sub == PZ_SUB_ATTN) {
        if (v->attn == PZ_ATTN_GQA) snprintf(buf, cap, "gqa_kv%d", v->size);
        else snprintf(buf, cap, "%s", pz_attn_kind_name(v->attn));
    } else {
        if (v->ffn == PZ_FFN_SWIGLU) snprintf(buf, cap, "swiglu_%d", v->size);
        else snprintf(buf, cap, "%s", pz_ffn_kind_name(v->ffn));
    }
    return buf;
}

void pz_block_make_id(pz_block *b, int n_layer) {
    int digits = 2;
    for (int n = n_layer - 1; n >= 100; n /= 10) digits++;
    char a[24], f[24];
    pz_variant_name(PZ_SUB_ATTN, &b->attn, a, sizeof a);
    pz_variant_name(PZ_SUB_FFN, &b->ffn, f, sizeof f);
    if (b->sub == PZ_SUB_ATTN) snprintf(b->id, sizeof b->id, "L%0*d.attn.%s", digits, b->layer, a);
    else if (b->sub == PZ_SUB_FFN) snprintf(b->id, sizeof b->id, "L%0*d.ffn.%s", digits, b->layer, f);
    else snprintf(b->id, sizeof b->id, "L%0*d.pair.%s+%s", digits, b->layer, a, f);
}

static int attn_derivable(const pz_layer_spec *p, const pz_variant *v) {
    if (v->attn == PZ_ATTN_NOOP) return 1;
    if (v->attn == PZ_ATTN_LINEAR) return p->attn != PZ_ATTN_NOOP;
    return p->attn == PZ_ATTN_GQA && v->size <= p->n_kv;
}

static int ffn_derivable(const pz_layer_spec *p, const pz_variant *v) {
    if (v->ffn == PZ_FFN_NOOP) return 1;
    if (v->ffn == PZ_FFN_LINEAR) return p->ffn != PZ_FFN_NOOP;
    return p->ffn == PZ_FFN_SWIGLU && v->size <= p->n_ff;
}

static int attn_is_parent(const pz_layer_spec *p, const pz_variant *v) {
    return p->attn == v->attn && (v->attn != PZ_ATTN_GQA || v->size == p->n_kv);
}

static int ffn_is_parent(const pz_layer_spec *p, const pz_variant *v) {
    return p->ffn == v->ffn && (v->ffn != PZ_FFN_SWIGLU || v->size == p->n_ff);
}

int pz_space_blocks(const pz_space *s, const pz_config *c, int coupled, pz_block **out, int *n,
                    char *err) {
    *out = NULL;
    *n = 0;
    if (pz_space_validate(s, c, err)) return -1;
    int nl = s->all_layers ? c->n_layer : s->n_layers;
    size_t per = coupled ? (size_t)s->n_attn * (size_t)s->n_ffn : (size_t)(s->n_attn + s->n_ffn);
    pz_block *b = malloc(sizeof(pz_block) * (per * (size_t)nl + 1));
    if (!b) return pz_err(err, "space: out of memory");
    int k = 0;
    for (int li = 0; li < nl; li++) {
        int l = s->all_layers ? li : s->layers[li];
        const pz_layer_spec *p = &c->layers[l];
        if (coupled) {
            for (int i = 0; i < s->n_attn; i++) {
                if (!attn_derivable(p, &s->attn[i])) continue;
                for (int j = 0; j < s->n_ffn; j++) {
                    if (!ffn_derivable(p, &s->ffn[j])) continue;
                    pz_block *x = &b[k++];
                    memset(x, 0, sizeof *x);
                    x->layer = l, x->sub = PZ_SUB_PAIR, x->attn = s->attn[i], x->ffn = s->ffn[j];
                    x->is_parent = attn_is_parent(p, &x->attn) && ffn_is_parent(p, &x->ffn);
                    x->needs_training = !x->is_parent && !(x->attn.attn == PZ_ATTN_NOOP &&
                                                           x->ffn.ffn == PZ_FFN_NOOP);
                    pz_block_make_id(x, c->n_layer);
                }
            }
            continue;
        }
        for (int i = 0; i < s->n_attn; i++) {
            if (!attn_derivable(p, &s->attn[i])) continue;
            pz_block *x = &b[k++];
            memset(x, 0, sizeof *x);
            x->layer = l, x->sub = PZ_SUB_ATTN, x->attn = s->attn[i];
            x->ffn = (pz_variant){.ffn = p->ffn, .size = p->n_ff};
            x->is_parent = attn_is_parent(p, &x->attn);
            x->needs_training = !x->is_parent && x->attn.attn != PZ_ATTN_NOOP;
            pz_block_make_id(x, c->n_layer);
        }
        for (int j = 0; j < s->n_ffn; j++) {
            if (!ffn_derivable(p, &s->ffn[j])) continue;
            pz_block *x = &b[k++];
            memset(x, 0, sizeof *x);
            x->layer = l, x->sub = PZ_SUB_FFN, x->ffn = s->ffn[j];
            x->attn = (pz_variant){.attn = p->attn, .size = p->n_kv};
            x->is_parent = ffn_is_parent(p, &x->ffn);
            x->needs_training = !x->is_parent && x->ffn.ffn != PZ_FFN_NOOP;
            pz_block_make_id(x, c->n_layer);
        }
    }
    *out = b;
    *n = k;
    return 0;
}
