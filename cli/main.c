/*
 * main.c - the lowbit command-line tool: a table of subcommands, each in its own cmd_<name>.c.
 */
#include "cli.h"

#include <signal.h>
#include <string.h>

int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_bench(int argc, char **argv);

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"quantize", cmd_quantize, "quantize an HF checkpoint or GGUF file into a GGUF file (q4_k_m, q8_0, ...)"},
    {"imatrix", cmd_imatrix, "importance matrix of a model over calibration text (for quantize --imatrix)"},
    {"export", cmd_export, "write a model (HF or GGUF, any type) as a Hugging Face directory (f16/bf16/f32)"},
    {"inspect", cmd_inspect, "show a model's architecture, parameters and tensors"},
    {"eval", cmd_eval, "perplexity on a text; with --base, KL divergence and top-1 agreement"},
    {"run", cmd_run, "generate text from a prompt (--chat: as a conversation, through the chat template)"},
    {"tokenize", cmd_tokenize, "the token ids of a text under a model's tokenizer"},
    {"template", cmd_template, "print the prompt a model's chat template makes of a conversation"},
    {"bench", cmd_bench, "prompt and generation speed (llama-bench style) and decode against memory bandwidth"},
};

static void usage(FILE *f) {
    fprintf(f, "lowbit %s - quantize, measure and run LLMs\n\nusage: lowbit <command> [options]\n\ncommands:\n",
            LB_VERSION_STRING);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n'lowbit <command> --help' shows a command's options.\n");
}

/* SIGINT/SIGTERM/SIGHUP: delete the temporary file of the output being written, then die of the signal */
static void on_signal(int sig) {
    lb_remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        /* a signal ignored by whoever started us (nohup) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, NULL);
    }
}

int main(int argc, char **argv) {
    install_handlers();
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
    char names[256] = "";
    for (size_t i = 0, k = 0; i < sizeof COMMANDS / sizeof COMMANDS[0] && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", COMMANDS[i].name);
    cli_fail("unknown command \"%s\" (commands: %s; see 'lowbit --help')", argv[1], names);
    return 2;
}
