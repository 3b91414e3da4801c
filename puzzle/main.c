// main.c — the `puzzle` command line: dispatches to one subcommand per file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const pz_command commands[] = {
    {"info", "describe a model: architecture, per-layer blocks, parameter and KV bytes", pz_cmd_info, pz_usage_info},
    {"generate", "generate text from a prompt, streaming tokens", pz_cmd_generate, pz_usage_generate},
    {"eval", "perplexity on a text file; KL and top-1 agreement against a reference model", pz_cmd_eval, pz_usage_eval},
    {"tokenize", "tokenize standard input", pz_cmd_tokenize, pz_usage_tokenize},
    {"quantize", "write a model as an FP8 checkpoint (vLLM / TensorRT-LLM layout), calibrated", pz_cmd_quantize, pz_usage_quantize},
    {"convert", "write a model as a Hugging Face DeciLM directory", pz_cmd_convert, pz_usage_convert},
    {"build-library", "train the block library (BLD) into a run database; resumable, shardable", pz_cmd_build_library, pz_usage_build_library},
    {"merge-db", "merge shard run databases of one parent and search space", pz_cmd_merge_db, pz_usage_merge_db},
    {"plan", "capacity planning: memory, batch, throughput, latency, GPUs needed (roofline)", pz_cmd_plan, pz_usage_plan},
    {"score", "replace-1-block scores (KL, LM-loss change, top-1) of the library; resumable, shardable", pz_cmd_score, pz_usage_score},
    {"profile", "time each library variant per scenario on the local CPU; --calibrate the CPU", pz_cmd_profile, pz_usage_profile},
    {"search", "choose the child: MIP over the scored library under a hardware budget; baselines", pz_cmd_search, pz_usage_search},
    {"solutions", "list the searches' solutions stored in a run database", pz_cmd_solutions, pz_usage_solutions},
    {"solution", "one solution's per-layer choices", pz_cmd_solution, pz_usage_solution},
    {"realize", "write a solution's child as a Hugging Face DeciLM directory (optionally GGUF)", pz_cmd_realize, pz_usage_realize},
    {"serve", "serve a model over an OpenAI-compatible HTTP API (continuous batching, paged KV)", pz_cmd_serve, pz_usage_serve},
    {"distill", "global distillation of a child against its parent (cosine per layer + KL); resumable", pz_cmd_distill, pz_usage_distill},
    {"run", "the whole chain, parent to distilled, evaluated child: every stage not yet done", pz_cmd_run, pz_usage_run},
    {"report", "Markdown report with gnuplot pictures of a run database", pz_cmd_report, pz_usage_report},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out) {
    fprintf(out,
            "puzzle %s — derive faster children of Llama-family models (Puzzle, arXiv 2411.19146)\n\n"
            "usage: puzzle COMMAND [options]   (puzzle COMMAND --help for details)\n\n"
            "A MODEL is a GGUF file or a Hugging Face directory (config.json + safetensors).\n\n"
            "commands:\n",
            PZ_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
}

// libgomp reads OMP_WAIT_POLICY once, when the library loads, and by
// default its idle threads spin. On a machine whose cores are shared (two
// processes on two cores) spinning made decode 10-30x slower, while passive
// waiting costs nothing measurable here (results/engine_bench.md). So unless
// the user chose a policy, re-execute once with passive waiting.
static void prefer_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on spinning
}

int main(int argc, char **argv) {
    prefer_passive_openmp(argv);
    if (argc < 2 || pz_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (size_t i = 0; i < N_COMMANDS; i++)
                if (strcmp(argv[2], commands[i].name) == 0) {
                    commands[i].usage(stdout);
                    return PZ_EXIT_OK;
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PZ_EXIT_USAGE : PZ_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("puzzle %s\n", PZ_VERSION);
        return PZ_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        for (int a = 2; a < argc; a++)
            if (pz_is_help(argv[a])) {
                commands[i].usage(stdout);
                return PZ_EXIT_OK;
            }
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "puzzle: unknown command '%s' (try: puzzle --help)\n", argv[1]);
    return PZ_EXIT_USAGE;
}
