/*
 * cmd_imatrix.c - `lowbit imatrix MODEL --calib FILE -o OUT`: the importance matrix of a model over
 * calibration text, in llama.cpp's imatrix file layout (for lowbit quantize --imatrix and llama-quantize).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit imatrix MODEL --calib FILE -o OUT.imatrix [options]\n\n"
          "  --calib FILE         calibration text (UTF-8); never evaluate on it\n"
          "  -o, --output FILE    the importance matrix to write (llama.cpp's imatrix layout)\n"
          "  --calib-tokens N     calibration tokens, taken as N / ctx windows (default 65536 = 128 x 512)\n"
          "  --ctx N              window length (default 512)\n"
          "  --seed S             which windows are used (default 1)\n"
          "  -t, --threads N      worker threads (default: all CPUs)\n"
          "  --device D           cpu (default), cuda or cuda:N\n"
          "  --allow-nonfinite    load NaN/Inf weights (the statistics must still come out finite)\n"
          "  -q, --quiet          no progress on stderr\n",
          f);
}

int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *calib = NULL, *out = NULL;
    lb_calib_params p = lb_calib_default_params();
    bool quiet = false;
    lb_model_params mp = lb_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--allow-nonfinite")) mp.allow_nonfinite = 1;
        else if (!strcmp(a, "--calib") && v) { calib = v; i++; }
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) { out = v; i++; }
        else if (!strcmp(a, "--calib-tokens") && v) { if (!cli_int(a, v, 2, INT64_MAX / 2, &p.n_tokens)) return 1; i++; }
        else if (!strcmp(a, "--ctx") && v) { if (!cli_int(a, v, 2, 1 << 20, &p.ctx)) return 1; i++; }
        else if (!strcmp(a, "--seed") && v) { if (!cli_int(a, v, 0, INT64_MAX, &n)) return 1; p.seed = (uint64_t)n; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { if (!cli_int(a, v, 1, 256, &n)) return 1; p.n_threads = (int)n; i++; }
        else if (!strcmp(a, "--device") && v) { if (!cli_device(v, &p.device)) return 1; i++; }
        else if (a[0] == '-') { usage(stderr); return cli_fail("imatrix: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("imatrix: unexpected argument %s", a); }
    }
    if (!model || !calib || !out) {
        usage(stderr);
        return cli_fail("imatrix: MODEL, --calib FILE and -o OUT are required");
    }
    lb_error e;
    const char *inputs[2] = {model, calib};
    lb_status s = lb_output_check(out, inputs, 2, &e);
    if (s != LB_OK) return cli_fail_lb(s, &e);
    char *text = NULL;
    size_t len;
    int rc = cli_read_text(calib, &text, &len);
    if (rc) return rc;
    lb_model *m = NULL;
    lb_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    s = lb_model_load_with(model, &mp, &m, &e);
    if (s == LB_OK) s = lb_tokenizer_load(model, &tok, &e);
    if (s == LB_OK) s = lb_tokenizer_encode(tok, text, len, &ids, &n_ids, &e);
    if (s == LB_OK) {
        cli_progress prog;
        cli_progress_init(&prog, "imatrix", quiet);
        p.progress = cli_progress_cb;
        p.progress_user = &prog;
        const char *base = strrchr(calib, '/');
        s = lb_imatrix_compute(m, ids, n_ids, &p, base ? base + 1 : calib, out, &e);
        if (s == LB_OK && !quiet)
            fprintf(stderr, "wrote %s (%lld-token windows of %s, %.1f s)\n", out, (long long)p.ctx, calib, cli_now() - prog.t0);
    }
    if (s != LB_OK) rc = cli_fail_lb(s, &e);
    lb_free(ids);
    free(text);
    lb_tokenizer_free(tok);
    lb_model_free(m);
    return rc;
}
