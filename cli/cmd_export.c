/*
 * cmd_export.c - `lowbit export MODEL -o DIR [--dtype f16|bf16|f32]`: a model (HF directory or GGUF
 * file, any weight types) written as a Hugging Face directory that transformers loads.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit export MODEL -o DIR [--dtype f16|bf16|f32] [--json]\n\n"
          "  MODEL          a Hugging Face model directory or a GGUF file (quantized weights are dequantized)\n"
          "  -o, --output   the directory to make (must not exist): model.safetensors, config.json,\n"
          "                 generation_config.json, tokenizer.json, tokenizer_config.json\n"
          "  --dtype T      dtype of every tensor in model.safetensors (default f16)\n"
          "  --json         print a JSON summary on stdout\n",
          f);
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *dt = "f16";
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) { out = v; i++; }
        else if (!strcmp(a, "--dtype") && v) { dt = v; i++; }
        else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-') { usage(stderr); return cli_fail("export: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("export: unexpected argument %s", a); }
    }
    if (!model || !out) {
        usage(stderr);
        return cli_fail("export: MODEL and -o DIR are required");
    }
    int t = lb_type_from_name(dt);
    if (t != LB_TYPE_F16 && t != LB_TYPE_BF16 && t != LB_TYPE_F32) return cli_fail("export: --dtype must be f16, bf16 or f32, not %s", dt);
    double t0 = cli_now();
    lb_error e;
    lb_status s = lb_export_hf(model, out, (lb_type)t, &e);
    if (s != LB_OK) return cli_fail_lb(s, &e);
    if (json) {
        printf("{\"input\": ");
        cli_json_str(stdout, model);
        printf(", \"output\": ");
        cli_json_str(stdout, out);
        printf(", \"dtype\": \"%s\", \"seconds\": %.3f}\n", lb_type_name((lb_type)t), cli_now() - t0);
    } else {
        printf("wrote %s (%s, %.2f s)\n", out, lb_type_name((lb_type)t), cli_now() - t0);
    }
    return 0;
}
