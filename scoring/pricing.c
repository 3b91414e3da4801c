// pricing.c — one serving model over roofline or measured prices (see pricing.h).
#include "pricing.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

// ---- scenarios -------------------------------------------------------------------------
int pz_serve_scenario_parse(const char *s, pz_serve_scenario *out, char *err) {
    memset(out, 0, sizeof *out);
    if (!strncmp(s, "prefill:", 8) || !strncmp(s, "decode:", 7)) {
        long b, n;
        char tail;
        const char *p = strchr(s, ':') + 1;
        if (sscanf(p, "%ldx%ld%c", &b, &n, &tail) != 2 || b < 1 || n < 1 || b > 1000000 || n > 100000000)
            return pz_err(err, "scenario '%s': want prefill:BxS or decode:BxC with positive B, S, C", s);
        out->pass = (pz_scenario){s[0] == 'p' ? PZ_PHASE_PREFILL : PZ_PHASE_DECODE, b, n};
        pz_prof_scenario_name(&out->pass, out->name, sizeof out->name);
        return 0;
    }
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *sv, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
        long v;
        char tail;
        if (sscanf(tok, "input=%ld%c", &v, &tail) == 1 && v >= 1 && v <= 100000000) out->input = v;
        else if (sscanf(tok, "output=%ld%c", &v, &tail) == 1 && v >= 1 && v <= 100000000) out->output = v;
        else
            return pz_err(err, "scenario '%s': want input=I,output=O (positive token counts), prefill:BxS or "
                               "decode:BxC", s);
    }
    if (!out->input || !out->output) return pz_err(err, "scenario '%s': needs both input= and output=", s);
    out->request = 1;
    snprintf(out->name, sizeof out->name, "input=%ld,output=%ld", out->input, out->output);
    return 0;
}

long pz_serve_decode_context(const pz_serve_scenario *sc) { return sc->input + sc->output / 2; }

long pz_serve_context_tokens(const pz_serve_scenario *sc) {
    if (sc->request) return sc->input + sc->output;
    return sc->pass.phase == PZ_PHASE_DECODE ? sc->pass.len + 1 : sc->pass.len;
}

int pz_serve_passes(const pz_serve_scenario *sc, long B, pz_scenario out[3]) {
    if (!sc->request) {
        out[0] = sc->pass;
        out[0].batch = B;
        return 1;
    }
    int n = 0;
    out[n++] = (pz_scenario){PZ_PHASE_PREFILL, B, sc->input};
    out[n++] = (pz_scenario){PZ_PHASE_DECODE, B, pz_serve_decode_context(sc)};
    if (B != 1) out[n++] = (pz_scenario){PZ_PHASE_PREFILL, 1, sc->input};
    return n;
}

double pz_serve_throughput(const pz_serve_scenario *sc, long B, double time_s) {
    if (sc->request) return (double)B * (double)sc->output / time_s;
    return sc->pass.phase == PZ_PHASE_DECODE ? (double)B / time_s : (double)B * (double)sc->pass.len / time_s;
}

// ---- one pass ------------------------------------------------------------------------
// The measured row of this variant and pass, or NULL.
static const pz_price_row *measured_row(const pz_pricer *pr, const pz_prof_variant *v, const pz_scenario *sc) {
    char name[48];
    pz_prof_scenario_name(sc, name, sizeof name);
    const char *part = pz_prof_part_name(v->part), *kind = pz_prof_kind_name(v);
    int size = (v->part == PZ_PROF_ATTN || v->part == PZ_PROF_FFN) ? v->size : 0;
    for (int i = 0; i < pr->n_rows; i++) {
        const pz_price_row *r = &pr->rows[i];
        if (r->size == size && !strcmp(r->part, part) && !strcmp(r->kind, kind) && !strcmp(r->scenario, name))
            return r;
    }
    return NULL;
}

// The error of a measured-only pricer without the row, naming the command that measures it.
static int missing_row(const pz_pricer *pr, const pz_prof_variant *v, const pz_scenario *sc, char *err) {
    char name[48];
    pz_prof_scenario_name(sc, name, sizeof name);
    const char *part = pz_prof_part_name(v->part), *kind = pz_prof_kind_name(v);
    int size = (v->part == PZ_PROF_ATTN || v->part == PZ_PROF_FFN) ? v->size : 0;
    const char *dev = pr->device ? pr->device : "cpu", *dt = pr->dtype ? pr->dtype : "?";
    return pz_err(err, "no profile of %s %s%s%.0d for %s on %s (%s): run puzzle profile --db RUN.db --scenario %s "
                       "--dtype %s",
                  part, kind, size ? " " : "", size, name, dev, dt, name, dt);
}

int pz_price_pass(const pz_pricer *pr, const pz_prof_variant *v, const pz_scenario *sc, pz_price *out, char *err) {
    memset(out, 0, sizeof *out);
    if ((v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_NOOP) || (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_NOOP))
        return 0;
    if (pr->measured) {
        const pz_price_row *r = measured_row(pr, v, sc);
        if (r) {
            *out = (pz_price){r->median_s, r->param_bytes, r->kv_bytes_per_token};
            return 0;
        }
        if (pr->measured != PZ_PRICE_MEASURED_WHERE_PROFILED) return missing_row(pr, v, sc, err);
    }
    const pz_config *c = pr->model;
    pz_cost k;
    pz_layer_spec l = {0};
    switch (v->part) {
    case PZ_PROF_ATTN:
        l.attn = v->attn, l.n_kv = v->size;
        if (pz_cost_attn(c, &l, &pr->hw, &pr->cp, sc, &k, err)) return -1;
        break;
    case PZ_PROF_FFN:
        l.ffn = v->ffn, l.n_ff = v->size;
        if (pz_cost_ffn(c, &l, &pr->hw, &pr->cp, sc, &k, err)) return -1;
        break;
    case PZ_PROF_EMBED: pz_cost_embed(c, &pr->hw, &pr->cp, sc, &k); break;
    case PZ_PROF_HEAD: pz_cost_head(c, &pr->hw, &pr->cp, sc, &k); break;
    default: return pz_err(err, "unknown part %d", (int)v->part);
    }
    *out = (pz_price){k.time_s, k.weight_bytes, k.kv_bytes_per_token};
    return 0;
}

// ---- the serving model -----------------------------------------------------------------
int pz_price_serve(const pz_pricer *pr, const pz_serve_scenario *sc, const pz_prof_variant *v, long B, int want_ttft,
                   pz_serve_cost *out, char *err) {
    memset(out, 0, sizeof *out);
    pz_price p;
    if (!sc->request) {
        pz_scenario pass = sc->pass;
        pass.batch = B;
        if (pz_price_pass(pr, v, &pass, &p, err)) return -1;
        int pre = pass.phase == PZ_PHASE_PREFILL;
        *out = (pz_serve_cost){p.time_s, pre ? p.time_s : 0, p.time_s, pre ? p.time_s : NAN, p.weight_bytes,
                               p.kv_bytes_per_token};
        return 0;
    }
    pz_scenario pass[3];
    pz_serve_passes(sc, B, pass);
    if (pz_price_pass(pr, v, &pass[0], &p, err)) return -1;
    out->prefill_s = p.time_s;
    out->weight_bytes = p.weight_bytes, out->kv_bytes_per_token = p.kv_bytes_per_token;
    if (pz_price_pass(pr, v, &pass[1], &p, err)) return -1;
    out->step_s = p.time_s;
    out->time_s = out->prefill_s + (double)sc->output * out->step_s;
    out->ttft_s = out->step_s;
    if (want_ttft) {
        double pre1 = out->prefill_s;
        if (B != 1) {
            if (pz_price_pass(pr, v, &pass[2], &p, err)) return -1;
            pre1 = p.time_s;
        }
        out->ttft_s += pre1;
    }
    return 0;
}

static void add(pz_serve_cost *sum, const pz_serve_cost *c) {
    sum->time_s += c->time_s;
    sum->prefill_s += c->prefill_s;
    sum->step_s += c->step_s;
    sum->ttft_s += c->ttft_s;
    sum->weight_bytes += c->weight_bytes;
    sum->kv_bytes_per_token += c->kv_bytes_per_token;
}

int pz_price_serve_model(const pz_pricer *pr, const pz_config *c, const pz_serve_scenario *sc, long B,
                         int want_ttft, pz_serve_cost *out, char *err) {
    memset(out, 0, sizeof *out);
    pz_serve_cost k;
    pz_prof_variant v = {.part = PZ_PROF_EMBED};
    if (pz_price_serve(pr, sc, &v, B, want_ttft, &k, err)) return -1;
    add(out, &k);
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *l = &c->layers[i];
        v = (pz_prof_variant){.part = PZ_PROF_ATTN, .attn = l->attn, .size = l->n_kv};
        if (pz_price_serve(pr, sc, &v, B, want_ttft, &k, err)) return -1;
        add(out, &k);
        v = (pz_prof_variant){.part = PZ_PROF_FFN, .ffn = l->ffn, .size = l->n_ff};
        if (pz_price_serve(pr, sc, &v, B, want_ttft, &k, err)) return -1;
        add(out, &k);
    }
    v = (pz_prof_variant){.part = PZ_PROF_HEAD};
    if (pz_price_serve(pr, sc, &v, B, want_ttft, &k, err)) return -1;
    add(out, &k);
    return 0;
}
