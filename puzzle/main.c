// main.c — the `puzzle` command line: dispatches to one subcommand per file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const pz_command commands[] = {
    {"info", "describe a model: architecture, per-layer blocks, parameter and KV bytes", pz_cmd_info, pz_usage_info},
    {"generate", "generate text from a prompt, streaming tokens", pz_cmd_generate, pz_usage_generate},
    {"eval", "perplexity on a text file; KL and top-1 agreement against a reference model", pz_cmd_eval, pz_usage_eval},
    {"tokenize", "tokenize standard input", pz_cmd_tokenize, pz_usage_tokenize},
    {"convert", "write a model as a Hugging Face DeciLM directory", pz_cmd_convert, pz_usage_convert},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out) {
    fprintf(out,
            "puzzle %s — derive faster children of Llama-family models (Puzzle, arXiv 2411.19146)\n\n"
            "usage: puzzle COMMAND [options]   (puzzle COMMAND --help for details)\n\n"
            "A MODEL is a GGUF file or a Hugging Face directory (config.json + safetensors).\n\n"
            "commands:\n",
            PZ_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
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
