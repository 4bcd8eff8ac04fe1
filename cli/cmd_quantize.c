/*
 * cmd_quantize.c - `lowbit quantize INPUT -o OUT.gguf --type TYPE`: an HF checkpoint or a GGUF file into
 * a quantized GGUF, with llama-quantize's mixture names and overrides. Progress (tensor, done/total,
 * elapsed) on stderr; a summary table at the end, or one JSON object with --json.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_OVERRIDES 64

static void usage(FILE *f) {
    fputs("usage: lowbit quantize INPUT -o OUTPUT.gguf --type TYPE [options]\n\n"
          "  INPUT                      Hugging Face model directory, or a GGUF file (F32/F16/BF16)\n"
          "  -o, --output FILE          the GGUF file to write (written whole or not at all)\n"
          "  --type TYPE                q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0, q4_1, q5_0, q5_1,\n"
          "                             q3_k_l, q3_k_m, q3_k_s, q2_k, iq4_nl, iq4_xs, f16, bf16, f32\n"
          "  --encoder default|ref      lowbit's encoders (lower error) or ggml's reference ones, bit for bit\n"
          "  --pure                     no mixture rules: every quantized tensor gets TYPE's base type\n"
          "  --tensor-type REGEX=TYPE   tensors whose GGUF name matches REGEX get TYPE (repeatable; first wins)\n"
          "  --output-tensor-type TYPE  type of output.weight (or of the tied embedding)\n"
          "  --token-embedding-type TYPE type of token_embd.weight\n"
          "  --imatrix FILE             importance matrix (llama.cpp's .dat or GGUF imatrix file) weighting the error\n"
          "  --method M                 rtn (default), imatrix, gptq, awq, awq+gptq; all but rtn need --calib\n"
          "  --calib FILE               calibration text (UTF-8); never evaluate on it\n"
          "  --device D                 cpu (default), cuda or cuda:N: where calibration runs the model, sums\n"
          "                             statistics and solves GPTQ's algebra (AWQ's search stays on CPU threads);\n"
          "                             cuda:N,M,... or cuda:all spread the statistics over several GPUs (NCCL)\n"
          "  --calib-tokens N           calibration tokens, as N / 512 windows (default 65536)\n"
          "  --seed S                   which calibration windows (default 1)\n"
          "  --damp F                   GPTQ damping, fraction of mean(diag H) (default 0.01, and 0.3 for a\n"
          "                             matrix with fewer than 16 calibration tokens per column)\n"
          "  --act-order                GPTQ in decreasing activation order\n"
          "  --passes N                 GPTQ sweeps, each re-choosing block scales from the last (1-16, default 4)\n"
          "  --cd-sweeps N              coordinate-descent sweeps over the codes after GPTQ (0-64, default 4)\n"
          "  --codes-only-cd            the coordinate descent leaves the sub-block scales alone (default: it\n"
          "                             also steps k-quant / iq4_xs sub-block scales and mins by +-1)\n"
          "  --own-target               GPTQ targets each matrix's own output on the quantized model's inputs\n"
          "                             (default: the unquantized model's output, which needs a second copy\n"
          "                             of the calibration activations)\n"
          "  --ref-damp F               pull of that target towards the original weights, a fraction of\n"
          "                             mean(diag H) (default 1)\n"
          "  --allow-requantize         accept an already-quantized GGUF input (loses quality)\n"
          "  --allow-nonfinite          quantize NaN/Inf weights as they come (default: an error naming the first)\n"
          "  -t, --threads N            worker threads (default: all CPUs); output is identical for any N\n"
          "  --json                     the summary as one JSON object on stdout\n"
          "  -q, --quiet                no progress on stderr\n",
          f);
}

typedef struct qopts {
    const char *input, *output, *calib;
    lb_quantize_params p;
    const char *patterns[MAX_OVERRIDES];
    lb_type types[MAX_OVERRIDES];
    char *pattern_buf[MAX_OVERRIDES];
    bool json, quiet;
} qopts;

static bool parse_type(const char *opt, const char *v, int *out) {
    int t = lb_type_from_name(v);
    if (t < 0 || !strcmp(v, "q8_1") || !strcmp(v, "q8_k")) {
        cli_fail("%s: unknown tensor type \"%s\" (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)",
                 opt, v);
        return false;
    }
    *out = t;
    return true;
}

static int parse(int argc, char **argv, qopts *o) {
    o->p = lb_quantize_default_params();
    o->p.ftype = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return -1; }
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--pure")) o->p.pure = 1;
        else if (!strcmp(a, "--allow-requantize")) o->p.allow_requantize = 1;
        else if (!strcmp(a, "--allow-nonfinite")) o->p.allow_nonfinite = 1;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) { o->output = v; i++; }
        else if (!strcmp(a, "--type") && v) { o->p.ftype = v; i++; }
        else if (!strcmp(a, "--encoder") && v) {
            if (!strcmp(v, "ref")) o->p.encoder = LB_ENCODER_REF;
            else if (!strcmp(v, "default")) o->p.encoder = LB_ENCODER_DEFAULT;
            else return cli_fail("--encoder expects default or ref, got \"%s\"", v);
            i++;
        } else if (!strcmp(a, "--output-tensor-type") && v) { if (!parse_type(a, v, &o->p.output_type)) return 1; i++; }
        else if (!strcmp(a, "--token-embedding-type") && v) { if (!parse_type(a, v, &o->p.token_embd_type)) return 1; i++; }
        else if (!strcmp(a, "--tensor-type") && v) {
            const char *eq = strrchr(v, '=');
            int t;
            if (!eq || eq == v) return cli_fail("--tensor-type expects REGEX=TYPE, got \"%s\"", v);
            if (o->p.n_tensor_types == MAX_OVERRIDES) return cli_fail("--tensor-type: at most %d overrides", MAX_OVERRIDES);
            if (!parse_type(a, eq + 1, &t)) return 1;
            char *pat = strndup(v, (size_t)(eq - v));
            if (!pat) return cli_fail("out of memory");
            o->pattern_buf[o->p.n_tensor_types] = pat;
            o->patterns[o->p.n_tensor_types] = pat;
            o->types[o->p.n_tensor_types++] = (lb_type)t;
            i++;
        } else if (!strcmp(a, "--method") && v) {
            int m = lb_method_from_name(v);
            if (m < 0) return cli_fail("--method expects rtn, imatrix, gptq, awq or awq+gptq, got \"%s\"", v);
            o->p.method = (lb_method)m;
            i++;
        } else if (!strcmp(a, "--calib") && v) {
            o->calib = v;
            i++;
        } else if (!strcmp(a, "--calib-tokens") && v) {
            if (!cli_int(a, v, 2, INT64_MAX / 2, &o->p.calib_n_tokens)) return 1;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            int64_t n;
            if (!cli_int(a, v, 0, INT64_MAX, &n)) return 1;
            o->p.calib_seed = (uint64_t)n;
            i++;
        } else if (!strcmp(a, "--damp") && v) {
            if (!cli_float(a, v, 1e-6, 10, &o->p.gptq_damp)) return 1;
            i++;
        } else if (!strcmp(a, "--passes") && v) {
            int64_t n;
            if (!cli_int(a, v, 1, 16, &n)) return 1;
            o->p.gptq_passes = (int)n;
            i++;
        } else if (!strcmp(a, "--cd-sweeps") && v) {
            int64_t n;
            if (!cli_int(a, v, 0, 64, &n)) return 1;
            o->p.gptq_cd_sweeps = n ? (int)n : -1;
            i++;
        } else if (!strcmp(a, "--ref-damp") && v) {
            if (!cli_float(a, v, 1e-6, 1e6, &o->p.gptq_ref_damp)) return 1;
            i++;
        } else if (!strcmp(a, "--codes-only-cd")) {
            o->p.gptq_cd_scales = -1;
        } else if (!strcmp(a, "--own-target")) {
            o->p.gptq_own_target = 1;
        } else if (!strcmp(a, "--act-order")) {
            o->p.gptq_act_order = 1;
        } else if (!strcmp(a, "--imatrix") && v) {
            o->p.imatrix = v;
            i++;
        } else if (!strcmp(a, "--device") && v) {
            lb_error de;
            if (lb_device_set_parse(v, &o->p.device, &o->p.n_devices, o->p.devices, &de) != LB_OK) {
                cli_fail("--device: %s", de.msg);
                return 1;
            }
            i++;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) {
            int64_t n;
            if (!cli_int(a, v, 1, 256, &n)) return 1;
            o->p.n_threads = (int)n;
            i++;
        } else if (a[0] == '-') { usage(stderr); return cli_fail("quantize: unknown option or missing value: %s", a); }
        else if (!o->input) o->input = a;
        else { usage(stderr); return cli_fail("quantize: unexpected argument %s", a); }
    }
    if (o->p.method != LB_METHOD_RTN && !o->calib)
        return cli_fail("quantize: --method %s needs calibration text: --calib FILE", lb_method_name(o->p.method));
    if (!o->input || !o->output || !o->p.ftype) {
        usage(stderr);
        return cli_fail("quantize: INPUT, -o OUTPUT and --type TYPE are required");
    }
    o->p.tensor_type_patterns = o->patterns;
    o->p.tensor_type_types = o->types;
    return 0;
}

typedef struct qprogress {
    double t0;
    bool tty, quiet;
} qprogress;

static int on_progress(const char *name, int64_t done, int64_t total, void *user) {
    qprogress *q = user;
    if (q->quiet) return 0;
    double el = cli_now() - q->t0;
    if (q->tty) {
        fprintf(stderr, "\r\033[Kquantize [%3lld/%lld] %-40s %6.1fs", (long long)done, (long long)total, name, el);
        if (done == total) fputc('\n', stderr);
    } else if (10 * done / total != 10 * (done - 1) / total || done == total) { /* logs: every tenth */
        fprintf(stderr, "quantize [%lld/%lld] %s %.1fs\n", (long long)done, (long long)total, name, el);
    }
    fflush(stderr);
    return 0;
}

static void print_summary(const qopts *o, const lb_quantize_report *r) {
    if (o->json) {
        printf("{\"input\": ");
        cli_json_str(stdout, o->input);
        printf(", \"output\": ");
        cli_json_str(stdout, o->output);
        printf(", \"type\": ");
        cli_json_str(stdout, o->p.ftype);
        printf(", \"method\": \"%s\"", lb_method_name(o->p.method));
        printf(", \"encoder\": \"%s\", \"architecture\": \"%s\", \"n_params\": %lld, \"file_bytes\": %zu, "
               "\"bits_per_weight\": %.4f, \"seconds\": %.3f, \"peak_rss_bytes\": %zu, \"gpu_peak_bytes\": %zu, \"stats_seconds\": %.3f, \"stats_phase_seconds\": [%.3f, %.3f, %.3f], \"solve_seconds\": %.3f, \"convert_seconds\": %.3f, \"setup_seconds\": %.3f, \"head_seconds\": %.3f, \"windows_seconds\": %.3f, \"requantized\": %s, \"imatrix_covered\": %lld, \"imatrix_matrices\": %lld, \"gpu_fallbacks\": %lld, \"gpus\": %d, \"allreduce_seconds\": %.3f, \"gptq_solvers\": %d, "
               "\"gptq_seconds\": {\"factor\": %.3f, \"columns\": %.3f, \"update\": %.3f, \"cd\": %.3f, \"products\": %.3f, \"ref_target\": %.3f, \"encode\": %.3f}, \"types\": {",
               o->p.encoder == LB_ENCODER_REF ? "ref" : "default", r->architecture, (long long)r->n_params, r->file_bytes,
               r->bits_per_weight, r->seconds, r->peak_rss_bytes, r->gpu_peak_bytes, r->stats_seconds, r->stats_phase_seconds[0], r->stats_phase_seconds[1], r->stats_phase_seconds[2], r->solve_seconds, r->convert_seconds, r->setup_seconds, r->head_seconds, r->windows_seconds, r->requantized ? "true" : "false",
               (long long)r->imatrix_covered, (long long)r->imatrix_matrices, (long long)r->gpu_fallbacks, r->gpus,
               r->allreduce_seconds, r->gptq_solvers, r->gptq_factor_seconds, r->gptq_columns_seconds, r->gptq_update_seconds, r->gptq_cd_seconds,
               r->gptq_products_seconds, r->gptq_ref_seconds, r->gptq_encode_seconds);
        int first = 1;
        for (int t = 0; t < LB_TYPE_COUNT; t++) {
            if (!r->type_tensors[t]) continue;
            printf("%s\"%s\": {\"tensors\": %lld, \"elements\": %lld}", first ? "" : ", ", lb_type_name((lb_type)t),
                   (long long)r->type_tensors[t], (long long)r->type_elements[t]);
            first = 0;
        }
        printf("}, \"tensors\": [");
        for (int64_t i = 0; i < r->n_tensors; i++) {
            const lb_quantize_tensor *t = &r->tensors[i];
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_str(stdout, t->name);
            printf(", \"type\": \"%s\", \"ne\": [%lld, %lld], \"bytes\": %zu, \"fallback\": %s}", lb_type_name(t->type),
                   (long long)t->ne[0], (long long)t->ne[1], t->n_bytes, t->fallback ? "true" : "false");
        }
        printf("]}\n");
        return;
    }
    printf("%-8s %8s %12s %8s\n", "type", "tensors", "elements", "share");
    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        if (!r->type_tensors[t]) continue;
        printf("%-8s %8lld %12lld %7.2f%%\n", lb_type_name((lb_type)t), (long long)r->type_tensors[t],
               (long long)r->type_elements[t], 100.0 * (double)r->type_elements[t] / (double)r->n_params);
    }
    int64_t fb = 0;
    for (int64_t i = 0; i < r->n_tensors; i++) fb += r->tensors[i].fallback;
    if (fb) printf("%lld tensors used a fallback type because their rows do not fit the block size\n", (long long)fb);
    printf("wrote %s: %zu bytes (%.2f MiB), %lld parameters, %.3f bits per weight, %.2f s, peak memory %.1f MiB\n",
           o->output, r->file_bytes, (double)r->file_bytes / 1048576.0, (long long)r->n_params, r->bits_per_weight,
           r->seconds, (double)r->peak_rss_bytes / 1048576.0);
}

int cmd_quantize(int argc, char **argv) {
    qopts o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc == 0) {
        qprogress prog = {cli_now(), isatty(2) != 0, o.quiet};
        o.p.progress = on_progress;
        o.p.progress_user = &prog;
        lb_quantize_report r;
        lb_error e;
        lb_status s = LB_OK;
        int32_t *ids = NULL;
        const char *inputs[3] = {o.input, o.p.imatrix, o.calib};
        if ((s = lb_output_check(o.output, inputs, 3, &e)) != LB_OK) {
            rc = cli_fail_lb(s, &e);
            goto out;
        }
        if (o.calib) { /* the calibration text, tokenized by the input's own tokenizer */
            char *text = NULL;
            size_t len;
            lb_tokenizer *tok = NULL;
            if ((rc = cli_read_text(o.calib, &text, &len))) goto out;
            s = lb_tokenizer_load(o.input, &tok, &e);
            if (s == LB_OK) s = lb_tokenizer_encode(tok, text, len, &ids, &o.p.n_calib_tokens, &e);
            o.p.calib_tokens = ids;
            lb_tokenizer_free(tok);
            free(text);
        }
        if (s == LB_OK) s = lb_quantize_model(o.input, o.output, &o.p, &r, &e);
        lb_free(ids);
        if (s != LB_OK) {
            if (!o.quiet && prog.tty) fputc('\n', stderr);
            rc = cli_fail_lb(s, &e);
        } else {
            if (r.requantized)
                fprintf(stderr, "lowbit: warning: %s was already quantized; requantizing compounds the rounding error\n", o.input);
            if (r.gpu_fallbacks)
                fprintf(stderr, "lowbit: warning: %lld GPTQ computations ran on CPU threads instead of the GPU: %s\n",
                        (long long)r.gpu_fallbacks, r.gpu_fallback_reason);
            if (o.p.imatrix && !o.quiet)
                fprintf(stderr, "importance matrix %s: %lld of %lld quantized matrices covered (%lld entries in the file)%s\n",
                        o.p.imatrix, (long long)r.imatrix_covered, (long long)r.imatrix_matrices, (long long)r.imatrix_entries,
                        r.imatrix_covered < r.imatrix_matrices ? "; the others are quantized without it" : "");
            print_summary(&o, &r);
            lb_quantize_report_free(&r);
        }
    }
out:
    for (int k = 0; k < o.p.n_tensor_types; k++) free(o.pattern_buf[k]);
    return rc < 0 ? 0 : rc;
}
