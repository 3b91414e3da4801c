// cmd_plan.c — `puzzle plan MODEL --hardware H100 --gpus 8 ...`: capacity
// planning from a model's configuration alone (config.json or GGUF metadata,
// no weights) with the roofline cost model in scoring/: memory per GPU, the
// largest batch, throughput, TTFT and TPOT; with --qps and SLOs, the number
// of GPUs needed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "costmodel.h"
#include "hardware.h"
#include "model.h"
#include "plan.h"

void pz_usage_plan(FILE *out) {
    fprintf(out,
            "usage: puzzle plan MODEL --hardware NAME --gpus N --input TOKENS --output TOKENS\n"
            "                   [--tp N] [--batch B|auto] [--dtype bf16|fp8] [--kv-dtype bf16|fp8]\n"
            "                   [--qps Q --ttft-slo MS --tpot-slo MS] [--hardware-dir DIR] [--json]\n\n"
            "Predicts, from MODEL's configuration alone (a Hugging Face directory or its\n"
            "config.json, Llama or DeciLM, or a GGUF file's metadata), how it serves on\n"
            "N accelerators: memory per GPU, the largest batch that fits, output tokens/s\n"
            "per GPU and in total, time to first token (TTFT) and time per output token\n"
            "(TPOT). GPUs form gpus/tp data-parallel replicas of tp-way tensor parallelism.\n"
            "The numbers come from a roofline model (data-sheet peaks times efficiency\n"
            "factors); real engines are slower: see results/costmodel_validation.md.\n\n"
            "  --hardware NAME   accelerator: h100_sxm, h200_sxm, a100_80gb_sxm, b200, l40s\n"
            "                    (case-insensitive aliases such as H100), or a JSON file path\n"
            "  --gpus N          GPUs in total (optional with --qps)\n"
            "  --tp N            tensor-parallel degree (default: the best of 1, 2, 4, 8)\n"
            "  --input, --output prompt and generated tokens per request\n"
            "  --batch B|auto    sequences in flight per replica (default auto: the largest that fits)\n"
            "  --dtype           weights and GEMMs in bf16 (default) or fp8\n"
            "  --kv-dtype        KV cache in bf16 (default) or fp8\n"
            "  --qps Q --ttft-slo MS --tpot-slo MS\n"
            "                    size the deployment: fewest GPUs serving Q requests/s within both SLOs\n"
            "  --hardware-dir    where hardware JSON files live (default $PUZZLE_HARDWARE_DIR or the source tree)\n"
            "  --eff-gemm, --eff-attn, --eff-mem, --eff-link X\n"
            "                    override an efficiency factor (fraction of peak; defaults 0.55, 0.50,\n"
            "                    0.80, 0.70) to calibrate against measurements\n"
            "  --json            machine-readable output\n");
}

static void add_plan_json(cJSON *o, const pz_plan *r) {
    cJSON_AddNumberToObject(o, "tp", r->tp);
    cJSON_AddNumberToObject(o, "replicas", r->replicas);
    cJSON_AddNumberToObject(o, "gpus", r->gpus);
    cJSON_AddNumberToObject(o, "batch", (double)r->batch);
    cJSON_AddNumberToObject(o, "max_batch", (double)r->max_batch);
    cJSON *m = cJSON_AddObjectToObject(o, "memory_per_gpu_bytes");
    cJSON_AddNumberToObject(m, "weights", r->mem.weights);
    cJSON_AddNumberToObject(m, "kv_cache", r->mem.kv);
    cJSON_AddNumberToObject(m, "kv_per_sequence", r->mem.kv_per_seq);
    cJSON_AddNumberToObject(m, "workspace", r->mem.workspace);
    cJSON_AddNumberToObject(m, "reserve", r->mem.reserve);
    cJSON_AddNumberToObject(m, "total", r->mem.total);
    cJSON_AddNumberToObject(m, "usable", r->mem.usable);
    cJSON_AddNumberToObject(o, "prefill_ms", r->prefill_s * 1e3);
    cJSON_AddNumberToObject(o, "decode_step_ms", r->step_s * 1e3);
    cJSON_AddNumberToObject(o, "ttft_ms", r->ttft_s * 1e3);
    cJSON_AddNumberToObject(o, "tpot_ms", r->tpot_s * 1e3);
    cJSON_AddNumberToObject(o, "tokens_per_s_per_gpu", r->tok_s_gpu);
    cJSON_AddNumberToObject(o, "tokens_per_s_total", r->tok_s_total);
    cJSON_AddNumberToObject(o, "requests_per_s", r->req_s_total);
}

static void print_plan(const pz_plan *r) {
    const double G = 1e9;
    printf("deployment    %d GPUs = %d replica%s x tp %d\n", r->gpus, r->replicas, r->replicas == 1 ? "" : "s", r->tp);
    printf("batch         %ld sequences per replica (largest that fits: %ld)\n", r->batch, r->max_batch);
    printf("memory/GPU    weights %.2f GB + KV %.2f GB (%.1f MB/seq) + workspace %.2f GB + reserve %.2f GB\n",
           r->mem.weights / G, r->mem.kv / G, r->mem.kv_per_seq / 1e6, r->mem.workspace / G, r->mem.reserve / G);
    printf("              = %.2f GB of %.2f GB usable\n", r->mem.total / G, r->mem.usable / G);
    printf("latency       TTFT %.2f ms, TPOT %.3f ms (decode step %.3f ms, batch prefill %.1f ms)\n", r->ttft_s * 1e3,
           r->tpot_s * 1e3, r->step_s * 1e3, r->prefill_s * 1e3);
    printf("throughput    %.0f output tok/s per GPU, %.0f in total (%.2f requests/s)\n", r->tok_s_gpu, r->tok_s_total,
           r->req_s_total);
}

int pz_cmd_plan(int argc, char **argv) {
    const char *cmd = "plan", *path = NULL, *hw_name = NULL, *hw_dir = NULL, *v;
    long gpus = 0, tp = 0, input = 0, output = 0, batch = 0;
    double qps = 0, ttft = 0, tpot = 0;
    int json = 0;
    pz_cost_params p = pz_cost_default_params();
    int eff_given[4] = {0};  // --eff-gemm/attn/mem/link on the command line beat the file's
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--hardware") == 0) {
            if (!(hw_name = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--hardware-dir") == 0) {
            if (!(hw_dir = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--gpus") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1000000, &gpus)) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--tp") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1024, &tp)) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--input") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 100000000, &input))
                return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--output") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 100000000, &output))
                return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (strcmp(v, "auto") == 0) batch = 0;
            else if (pz_arg_int(cmd, a, v, 1, 10000000, &batch)) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--dtype") == 0 || strcmp(a, "--kv-dtype") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (pz_cost_dtype_parse(v, strcmp(a, "--dtype") == 0 ? &p.dtype : &p.kv_dtype)) {
                fprintf(stderr, "puzzle plan: %s wants bf16 or fp8, got '%s'\n", a, v);
                return PZ_EXIT_USAGE;
            }
        } else if (strcmp(a, "--qps") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-9, 1e9, &qps)) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--ttft-slo") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-6, 1e9, &ttft)) return PZ_EXIT_USAGE;
        } else if (strcmp(a, "--tpot-slo") == 0) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 1e-6, 1e9, &tpot)) return PZ_EXIT_USAGE;
        } else if (strncmp(a, "--eff-", 6) == 0) {
            double *dst = !strcmp(a, "--eff-gemm") ? &p.eff_gemm : !strcmp(a, "--eff-attn") ? &p.eff_attn
                        : !strcmp(a, "--eff-mem")  ? &p.eff_mem  : !strcmp(a, "--eff-link") ? &p.eff_link : NULL;
            if (!dst) {
                fprintf(stderr, "puzzle plan: unknown option '%s'\n", a);
                return PZ_EXIT_USAGE;
            }
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0.01, 1, dst)) return PZ_EXIT_USAGE;
            eff_given[dst == &p.eff_gemm ? 0 : dst == &p.eff_attn ? 1 : dst == &p.eff_mem ? 2 : 3] = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle plan: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) path = a;
        else {
            fprintf(stderr, "puzzle plan: one MODEL only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    int slo = qps > 0 || ttft > 0 || tpot > 0;
    if (!path || !hw_name || !input || !output) {
        fprintf(stderr, "puzzle plan: needs MODEL, --hardware, --input and --output (see puzzle plan --help)\n");
        return PZ_EXIT_USAGE;
    }
    if (slo && !(qps > 0 && ttft > 0 && tpot > 0)) {
        fprintf(stderr, "puzzle plan: --qps, --ttft-slo and --tpot-slo go together\n");
        return PZ_EXIT_USAGE;
    }
    if (!slo && !gpus) {
        fprintf(stderr, "puzzle plan: needs --gpus N (or --qps with SLOs to size the deployment)\n");
        return PZ_EXIT_USAGE;
    }
    if (tp && gpus && gpus % tp != 0) {
        fprintf(stderr, "puzzle plan: --gpus %ld is not a multiple of --tp %ld\n", gpus, tp);
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN];
    pz_hw hw;
    if (pz_hw_find(hw_name, hw_dir, &hw, err)) {
        fprintf(stderr, "puzzle plan: %s\n", err);
        return PZ_EXIT_USAGE;
    }
    // A calibrated file (puzzle profile --calibrate) carries its own factors.
    if (hw.eff_gemm > 0 && !eff_given[0]) p.eff_gemm = hw.eff_gemm;
    if (hw.eff_attn > 0 && !eff_given[1]) p.eff_attn = hw.eff_attn;
    if (hw.eff_mem > 0 && !eff_given[2]) p.eff_mem = hw.eff_mem;
    if (hw.eff_link > 0 && !eff_given[3]) p.eff_link = hw.eff_link;
    if (p.dtype == PZ_DT_E4M3 && hw.flops_fp8 <= 0) {
        fprintf(stderr, "puzzle plan: %s has no fp8 tensor cores; use --dtype bf16\n", hw.name);
        return PZ_EXIT_USAGE;
    }
    static pz_config c;
    if (pz_model_load_config(path, &c, err) != 0) {
        fprintf(stderr, "puzzle plan: %s\n", err);
        return PZ_EXIT_FAIL;
    }

    if (tp) {  // a fixed degree the model cannot be split by is a usage error
        p.tp = (int)tp;
        if (pz_cost_check(&c, &hw, &p, err)) {
            fprintf(stderr, "puzzle plan: %s\n", err);
            return PZ_EXIT_USAGE;
        }
    }
    pz_plan best;
    int have = 0;
    if (gpus) {
        static const int tps[] = {1, 2, 4, 8};
        char last[PZ_ERRLEN] = "";
        for (size_t k = 0; k < (tp ? 1 : sizeof tps / sizeof tps[0]); k++) {
            p.tp = tp ? (int)tp : tps[k];
            if (p.tp > gpus || gpus % p.tp != 0) continue;
            pz_plan r;
            if (pz_plan_eval(&c, &hw, &p, input, output, batch, (int)gpus, &r, err)) {
                snprintf(last, sizeof last, "%s", err);
                continue;
            }
            if (!have || r.tok_s_total > best.tok_s_total) best = r, have = 1;
        }
        if (!have) {
            fprintf(stderr, "puzzle plan: %s\n", last[0] ? last : "no tensor-parallel degree divides the GPUs");
            return PZ_EXIT_FAIL;
        }
    }
    pz_plan_slo s;
    memset(&s, 0, sizeof s);
    if (slo) {
        p.tp = tp ? (int)tp : 1;
        if (pz_plan_for_slo(&c, &hw, &p, tp != 0, input, output, qps, ttft / 1e3, tpot / 1e3, &s, err)) {
            fprintf(stderr, "puzzle plan: %s\n", err);
            return PZ_EXIT_USAGE;
        }
    }

    size_t n_params = pz_config_n_params(&c);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddNumberToObject(o, "n_params", (double)n_params);
        cJSON_AddNumberToObject(o, "n_layer", c.n_layer);
        cJSON *h = cJSON_AddObjectToObject(o, "hardware");
        cJSON_AddStringToObject(h, "id", hw.id);
        cJSON_AddStringToObject(h, "name", hw.name);
        cJSON_AddStringToObject(o, "dtype", pz_dt_name(p.dtype));
        cJSON_AddStringToObject(o, "kv_dtype", pz_dt_name(p.kv_dtype));
        cJSON *eff = cJSON_AddObjectToObject(o, "efficiency");
        cJSON_AddNumberToObject(eff, "gemm", p.eff_gemm);
        cJSON_AddNumberToObject(eff, "attn", p.eff_attn);
        cJSON_AddNumberToObject(eff, "mem", p.eff_mem);
        cJSON_AddNumberToObject(eff, "link", p.eff_link);
        cJSON_AddNumberToObject(o, "input", (double)input);
        cJSON_AddNumberToObject(o, "output", (double)output);
        if (have) add_plan_json(o, &best);
        if (slo) {
            cJSON *so = cJSON_AddObjectToObject(o, "slo");
            cJSON_AddNumberToObject(so, "qps", qps);
            cJSON_AddNumberToObject(so, "ttft_slo_ms", ttft);
            cJSON_AddNumberToObject(so, "tpot_slo_ms", tpot);
            cJSON_AddBoolToObject(so, "found", s.found);
            if (s.found) {
                cJSON_AddNumberToObject(so, "gpus_needed", s.best.gpus);
                add_plan_json(so, &s.best);
                if (gpus) cJSON_AddBoolToObject(so, "enough_gpus", gpus >= s.best.gpus);
            } else {
                cJSON_AddStringToObject(so, "binding", s.binding);
                cJSON_AddStringToObject(so, "why", s.why);
            }
        }
        char *txt = cJSON_PrintUnformatted(o);
        printf("%s\n", txt);
        cJSON_free(txt);
        cJSON_Delete(o);
        return PZ_EXIT_OK;
    }
    printf("model         %s: %d layers, hidden %d, %d heads, %.2f B parameters\n", path, c.n_layer, c.hidden, c.n_head,
           n_params / 1e9);
    printf("hardware      %s (%s): %.0f TFLOP/s bf16, ", hw.name, hw.id, hw.flops_bf16 / 1e12);
    if (hw.flops_fp8 > 0) printf("%.0f TFLOP/s fp8, ", hw.flops_fp8 / 1e12);
    printf("%.2f TB/s, %.0f GiB, %s %.0f GB/s per direction\n", hw.mem_bw / 1e12, hw.mem_bytes / 1073741824.0, hw.interconnect,
           hw.link_bw / 1e9);
    printf("scenario      input %ld, output %ld tokens; weights %s, KV cache %s\n", input, output,
           pz_dt_name(p.dtype), pz_dt_name(p.kv_dtype));
    if (have) print_plan(&best);
    if (slo) {
        printf("\nSLO           %.3g requests/s, TTFT <= %.4g ms, TPOT <= %.4g ms\n", qps, ttft, tpot);
        if (s.found) {
            printf("needed        %d GPUs (%d replica%s x tp %d at batch %ld): TTFT %.2f ms, TPOT %.3f ms, %.2f requests/s\n",
                   s.best.gpus, s.best.replicas, s.best.replicas == 1 ? "" : "s", s.best.tp, s.best.batch,
                   s.best.ttft_s * 1e3, s.best.tpot_s * 1e3, s.best.req_s_total);
            if (gpus)
                printf("              --gpus %ld is %s\n", gpus, gpus >= s.best.gpus ? "enough" : "not enough");
        } else {
            printf("needed        no configuration meets them: %s bound binds (%s)\n", s.binding, s.why);
        }
    }
    printf("\n(roofline estimate at full utilization; queueing and kernel inefficiencies beyond the\n"
           " efficiency factors are not modelled: see results/costmodel_validation.md)\n");
    return PZ_EXIT_OK;
}
