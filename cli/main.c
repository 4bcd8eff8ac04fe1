/*
 * main.c - the lowbit command-line tool: a table of subcommands, each in its own cmd_<name>.c.
 */
#include "cli.h"

#include <string.h>

int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_bench(int argc, char **argv);

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"quantize", cmd_quantize, "quantize an HF checkpoint or GGUF file into a GGUF file (q4_k_m, q8_0, ...)"},
    {"imatrix", cmd_imatrix, "importance matrix of a model over calibration text (for quantize --imatrix)"},
    {"inspect", cmd_inspect, "show a model's architecture, parameters and tensors"},
    {"eval", cmd_eval, "perplexity on a text; with --base, KL divergence and top-1 agreement"},
    {"run", cmd_run, "generate text from a prompt"},
    {"bench", cmd_bench, "prompt and generation speed (llama-bench style) and decode against memory bandwidth"},
};

static void usage(FILE *f) {
    fprintf(f, "lowbit %s - quantize, measure and run LLMs\n\nusage: lowbit <command> [options]\n\ncommands:\n",
            LB_VERSION_STRING);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n'lowbit <command> --help' shows a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lowbit %s\n", LB_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    cli_fail("unknown command \"%s\" (commands: quantize, imatrix, inspect, eval, run; see 'lowbit --help')", argv[1]);
    return 2;
}
