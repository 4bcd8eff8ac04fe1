/*
 * test_cuda_forward.c - the forward pass and eval on a CUDA device against the CPU. Needs a GPU.
 *
 * - The five conformance architectures (Llama-3 RoPE scaling, Qwen3 q/k norms, Mistral, Phi-3, tied BF16
 *   Llama) and tiny (Qwen2 biases): GPU logits for a whole prompt (cuBLAS path), for the same tokens fed
 *   as a prompt and then one by one (fused decode kernels), against Hugging Face's goldens and the CPU.
 *   The GPU rounds the activations entering every weight product to F16 and keeps an F16 KV cache, so a
 *   logit differs from the CPU's by about 2^-11 of the sum of its products' magnitudes: on these models'
 *   logits up to 2.7e-2 on 48-token prompts (measured, tests/cuda output in docs/BENCHMARKS.md). The bound
 *   is KL(cpu || gpu) below 1e-5 per position, the same argmax where the CPU's lead is clear, and 3e-2 on
 *   logits against the transformers goldens (the CPU's own test holds 1e-3 with f32 activations).
 * - Repeated runs on the GPU are bit-identical.
 * - tiny quantized to every weight type (--pure) and to q4_k_m: `eval` on the GPU (device-side scoring)
 *   against the CPU's, then a decode through the fused kernels against the CPU's. Both executors round the
 *   activations entering a block-type product to 8 bits per weight block with the same operations, but
 *   from inputs that differ at the F16 level (F16 KV cache, F16 weight tiles, other summation orders), and
 *   an input difference of 2^-11 of a block's largest value moves about 2 * 127 * 2^-11 = 12 % of the codes
 *   by one step: the two results are two independent 8-bit roundings, as far apart as each is from exact
 *   activations (q8_0: KL(cpu || gpu) 4.4e-4 against its KL(base || model) 5.0e-4). Measured on the H200
 *   (bench/results/cuda-h200/run7_forward_actround.log): KL(cpu || gpu) 4.1e-4 to 1.9e-3 per position,
 *   perplexity up to 0.28 % apart in eval and 1.1 % over the decode's 63 tokens, KL(base || model) up to
 *   1.6 % apart. The bounds sit above that spread (eval: 0.5 %, KL 4e-3, 3 % of KL(base || model);
 *   decode: 2 %, KL 5e-3); float weights, whose activations are not rounded, agree to 4.5e-7. Wiring faults
 *   (activation layouts, batch sizes, the decode graph) break the logits outright; the kernels' arithmetic
 *   is checked exactly in test_cuda_kernels.
 * - An exact context (lb_context_params.exact, cuda/exact.cu: every float operation the CPU's, in the CPU's order): the
 *   GPU's logits are the CPU's bit for bit (memcmp) on the five architectures, tiny and every weight type, for prompts
 *   and decodes; eval's perplexity and KL(base || model) within 1e-9 (check_exact). `test_cuda_forward --exact DIR`
 *   runs check_exact on DIR's model in every type (the small model, carried to the GPU machine).
 * - A device index that does not exist: LB_ERR_DEVICE with one line.
 */
#include "core/json.h"
#include "model/model.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static lb_device cuda0 = {LB_DEVICE_CUDA, 0};

/* all logits of ids through a context on dev: one batch of `first` tokens, then the rest one by one (exact: an exact
 * context, lb_context_params) */
static float *run_x(const lb_model *m, lb_device dev, const int32_t *ids, int64_t n, int64_t first, int exact) {
    int64_t V = lb_model_get_info(m)->n_vocab;
    lb_context_params p = {.n_ctx = n + 8, .n_threads = 2, .device = dev, .exact = exact};
    lb_context *c = NULL;
    lb_error e;
    REQUIRE(lb_context_new(m, &p, &c, &e) == LB_OK, "%s", e.msg);
    float *lg = malloc((size_t)(n * V) * sizeof *lg);
    REQUIRE(lb_context_eval(c, ids, first, lg, 1, &e) == LB_OK, "%s", e.msg);
    for (int64_t i = first; i < n; i++) REQUIRE(lb_context_eval(c, ids + i, 1, lg + i * V, 1, &e) == LB_OK, "%s", e.msg);
    lb_context_free(c);
    return lg;
}
static float *run(const lb_model *m, lb_device dev, const int32_t *ids, int64_t n, int64_t first) { return run_x(m, dev, ids, n, first, 0); }

static double lse(const float *x, int64_t n) {
    double mx = x[0], s = 0;
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++) s += exp(x[i] - mx);
    return log(s) + mx;
}
static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}
/* mean over rows of KL(p || q), and the argmax disagreements at rows where p's best logit leads its second
 * by more than 0.05 (closer ties may flip under any rounding difference) */
static double kl_rows(const float *p, const float *q, int64_t rows, int64_t V, int64_t *flips) {
    double tot = 0;
    *flips = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *a = p + r * V, *b = q + r * V;
        double la = lse(a, V), lq = lse(b, V), k = 0;
        for (int64_t i = 0; i < V; i++) k += exp(a[i] - la) * ((a[i] - la) - (b[i] - lq));
        tot += k;
        int64_t best = argmax(a, V);
        double second = -INFINITY;
        for (int64_t i = 0; i < V; i++)
            if (i != best && a[i] > second) second = a[i];
        *flips += argmax(b, V) != best && a[best] - second > 0.05;
    }
    return tot / (double)rows;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* how many of n logits differ in their bits between a and b, and the largest difference */
static int64_t n_differ(const float *a, const float *b, int64_t n, double *mx) {
    int64_t k = 0;
    *mx = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) {
            k++;
            *mx = fmax(*mx, fabs((double)a[i] - b[i]));
        }
    return k;
}

static void compare_model(const char *dir, const char *goldens) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load(dir, &m, &e) == LB_OK, "%s: %s", dir, e.msg);
    const int64_t V = lb_model_get_info(m)->n_vocab, n = 48;
    int32_t ids[48];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    float *cpu = run(m, (lb_device){LB_DEVICE_CPU, 0}, ids, n, n);
    float *g1 = run(m, cuda0, ids, n, n), *g2 = run(m, cuda0, ids, n, n), *g3 = run(m, cuda0, ids, n, n - 8);
    CHECK(memcmp(g1, g2, (size_t)(n * V) * sizeof(float)) == 0, "%s: two GPU runs differ", dir);
    int64_t f1, f3;
    double k1 = kl_rows(cpu, g1, n, V, &f1), k3 = kl_rows(cpu, g3, n, V, &f3);
    double d1 = max_diff(cpu, g1, n * V), d3 = max_diff(cpu, g3, n * V);
    CHECK(k1 < 1e-5 && f1 == 0, "%s prompt: KL(cpu||gpu) %.3g, %lld argmax flips", dir, k1, (long long)f1);
    CHECK(k3 < 1e-5 && f3 == 0, "%s decode: KL(cpu||gpu) %.3g, %lld argmax flips", dir, k3, (long long)f3);
    printf("%-45s prompt: KL %.2e max|dlogit| %.2e   prompt+decode: KL %.2e max|dlogit| %.2e\n", dir, k1, d1, k3, d3);
    /* an exact context (check_exact): the CPU's logits bit for bit, for the prompt and for the prompt then 8 decode steps
     * (the CPU's prompt and decode give the same bits, tests/unit/test_forward.c) */
    float *x1 = run_x(m, cuda0, ids, n, n, 1), *x3 = run_x(m, cuda0, ids, n, n - 8, 1);
    double dx1, dx3;
    const int64_t n1 = n_differ(cpu, x1, n * V, &dx1), n3 = n_differ(cpu, x3, n * V, &dx3);
    CHECK(n1 == 0 && n3 == 0, "%s exact: %lld (prompt) and %lld (prompt + decode) of %lld logits differ from the CPU's (by up to %.3g, %.3g)",
          dir, (long long)n1, (long long)n3, (long long)(n * V), dx1, dx3);
    printf("%-45s exact: logits differing from the CPU's: prompt %lld, prompt + decode %lld\n", dir, (long long)n1, (long long)n3);
    free(x1);
    free(x3);
    if (goldens) {
        char *text;
        size_t len;
        json_doc *g = NULL;
        REQUIRE(lb_read_file(goldens, (size_t)1 << 30, &text, &len, &e) == LB_OK, "%s", e.msg);
        REQUIRE(json_parse(text, len, &g, &e) == LB_OK, "%s", e.msg);
        free(text);
        const json_value *sq = json_at(json_get(json_root(g), "sequences"), 0);
        const json_value *ja = json_get(sq, "ids"), *L = json_get(sq, "logits");
        int64_t gn = (int64_t)json_len(ja);
        int32_t *gid = malloc((size_t)gn * sizeof *gid);
        for (int64_t i = 0; i < gn; i++) {
            int64_t v = 0;
            json_int(json_at(ja, (size_t)i), &v);
            gid[i] = (int32_t)v;
        }
        float *lg = run(m, cuda0, gid, gn, gn > 20 ? gn : 1);
        double mx = 0;
        for (int64_t i = 0; i < gn; i++)
            for (int64_t j = 0; j < V; j++) {
                double want = 0;
                json_num(json_at(json_at(L, (size_t)i), (size_t)j), &want);
                mx = fmax(mx, fabs(lg[i * V + j] - want));
            }
        CHECK(mx <= 3e-2, "%s: GPU vs transformers: max |logit diff| %.3g > 3e-2", dir, mx);
        printf("%-45s GPU vs transformers (%lld tokens): max |logit diff| %.2e\n", dir, (long long)gn, mx);
        free(gid);
        free(lg);
        json_free(g);
    }
    free(cpu);
    free(g1);
    free(g2);
    free(g3);
    lb_model_free(m);
}

/*
 * An exact context (lb_context_params.exact; cuda/exact.cu): every float operation of the forward pass is the CPU's, in
 * the CPU's order (quant/cpu/cpu.h, model/forward.c), so the GPU's logits are the CPU's bit for bit, compared with
 * memcmp: a whole prompt of 256 tokens, and a decode (8 tokens, then 56 one by one). Eval with the GPU scoring four
 * windows in one batch against the CPU's eval (rc, made with params pc): the same positions, perplexity, KL(base ||
 * model) and base perplexity within 1e-9 relative (the device's scoring sums its doubles in another order), the same
 * top-1 agreement. name: the model and type, for messages.
 */
static void check_exact(const char *name, const lb_model *m, const lb_model *base, const int32_t *ids, int64_t n_ids,
                        const lb_eval_params *pc, const lb_eval_result *rc) {
    const int64_t V = lb_model_get_info(m)->n_vocab, ctx = 256, nd = 64;
    lb_error e;
    lb_eval_params p = *pc;
    p.device = cuda0;
    p.exact = 1;
    lb_eval_result rx;
    setenv("LB_EVAL_GPU_BATCH", "2048", 1);
    REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &rx, &e) == LB_OK, "%s exact: %s", name, e.msg);
    unsetenv("LB_EVAL_GPU_BATCH");
    const double xrel = fabs(rx.ppl / rc->ppl - 1.0), krel = fabs(rx.kld_mean - rc->kld_mean) / fmax(rc->kld_mean, 1e-30);
    const double brel = base ? fabs(rx.base_ppl / rc->base_ppl - 1.0) : 0.0;
    CHECK(rx.n_scored == rc->n_scored && xrel < 1e-9 && (krel < 1e-9 || fabs(rx.kld_mean - rc->kld_mean) < 1e-15) && brel < 1e-9 &&
              rx.top1 == rc->top1,
          "%s exact eval: GPU perplexity %.9f vs CPU %.9f, KL(base||model) %.9g vs %.9g, base %.9f vs %.9f, top-1 %.6f vs %.6f, %lld / %lld positions",
          name, rx.ppl, rc->ppl, rx.kld_mean, rc->kld_mean, rx.base_ppl, rc->base_ppl, rx.top1, rc->top1, (long long)rx.n_scored,
          (long long)rc->n_scored);
    float *lc = run(m, (lb_device){LB_DEVICE_CPU, 0}, ids, ctx, ctx), *lx = run_x(m, cuda0, ids, ctx, ctx, 1);
    double dp, dd;
    const int64_t np = n_differ(lc, lx, ctx * V, &dp);
    CHECK(np == 0, "%s exact prompt: %lld of %lld logits differ from the CPU's (by up to %.3g)", name, (long long)np, (long long)(ctx * V), dp);
    free(lc);
    free(lx);
    lc = run(m, (lb_device){LB_DEVICE_CPU, 0}, ids, nd, 8);
    lx = run_x(m, cuda0, ids, nd, 8, 1);
    const int64_t ndf = n_differ(lc, lx, nd * V, &dd);
    CHECK(ndf == 0, "%s exact decode: %lld of %lld logits differ from the CPU's (by up to %.3g)", name, (long long)ndf, (long long)(nd * V), dd);
    printf("%-12s exact: logits differing from the CPU's: prompt %lld, decode %lld; eval ppl rel %.1e, KL(base||m) cpu %.9f gpu %.9f\n", name,
           (long long)np, (long long)ndf, xrel, rc->kld_mean, rx.kld_mean);
    free(lc);
    free(lx);
}

/* tiny in type `ftype`: GPU eval against CPU eval, and the logits' KL(cpu || gpu) */
static void check_quantized(const char *ftype, const int32_t *ids, int64_t n_ids, const lb_model *base) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/lowbit-cuda-test-%d-%s.gguf", (int)getpid(), ftype);
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = ftype;
    qp.pure = strcmp(ftype, "q4_k_m") != 0; /* q4_k_m: llama.cpp's mixture of q4_K and q6_K */
    qp.n_threads = 4;
    lb_quantize_report r;
    lb_error e;
    REQUIRE(lb_quantize_model("models/tiny", path, &qp, &r, &e) == LB_OK, "%s: %s", ftype, e.msg);
    lb_quantize_report_free(&r);
    lb_model *m = NULL;
    REQUIRE(lb_model_load(path, &m, &e) == LB_OK, "%s", e.msg);
    const int64_t V = lb_model_get_info(m)->n_vocab, ctx = 256;
    lb_eval_params p = lb_eval_default_params();
    p.ctx = ctx;
    p.max_chunks = 4;
    p.n_threads = 4;
    lb_eval_result rc, rg;
    REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &rc, &e) == LB_OK, "%s", e.msg);
    p.device = cuda0;
    setenv("LB_EVAL_GPU_BATCH", "2048", 1); /* the four windows in one batch */
    REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &rg, &e) == LB_OK, "%s", e.msg);
    unsetenv("LB_EVAL_GPU_BATCH");
    double rel = fabs(rg.ppl / rc.ppl - 1.0), krel = fabs(rg.kld_mean - rc.kld_mean);
    CHECK(rel < 5e-3, "%s: GPU perplexity %.6f vs CPU %.6f", ftype, rg.ppl, rc.ppl);
    CHECK(krel < fmax(1e-5, 0.03 * rc.kld_mean), "%s: GPU KL(base||model) %.6g vs CPU %.6g", ftype, rg.kld_mean, rc.kld_mean);
    CHECK(fabs(rg.base_ppl / rc.base_ppl - 1.0) < 1e-3, "%s: base perplexity GPU %.6f vs CPU %.6f", ftype, rg.base_ppl, rc.base_ppl);
    /* the four windows above ran in one batch (lb_cuda_ctx_eval_windows); one window to a batch gives the same up to the
     * products' rounding (other GEMM shapes), which the 8-bit activation rounding of block types can amplify */
    setenv("LB_EVAL_GPU_BATCH", "1", 1);
    lb_eval_result r1;
    REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &r1, &e) == LB_OK, "%s", e.msg);
    unsetenv("LB_EVAL_GPU_BATCH");
    const double wrel = fabs(r1.ppl / rg.ppl - 1.0), wk = fabs(r1.kld_mean - rg.kld_mean);
    CHECK(r1.n_scored == rg.n_scored && wrel < 1e-3 && wk < fmax(1e-5, 0.03 * rg.kld_mean),
          "%s: windows one to a batch: ppl %.6f (batched %.6f), KL %.6g (batched %.6g), %lld / %lld positions", ftype, r1.ppl, rg.ppl,
          r1.kld_mean, rg.kld_mean, (long long)r1.n_scored, (long long)rg.n_scored);
    printf("%-7s GPU eval, windows one to a batch against four: ppl rel %.1e, KL %.3g against %.3g\n", ftype, wrel, r1.kld_mean,
           rg.kld_mean);
    /* the logits themselves: KL(cpu || gpu) over the first window */
    float *lc = run(m, (lb_device){LB_DEVICE_CPU, 0}, ids, ctx, ctx), *lg = run(m, cuda0, ids, ctx, ctx);
    int64_t flips;
    double kl = kl_rows(lc, lg, ctx, V, &flips);
    CHECK(kl < 4e-3, "%s: KL(cpu||gpu) %.3g", ftype, kl);
    printf("%-7s ppl cpu %.4f gpu %.4f (rel %.1e)  KL(base||m) cpu %.6f gpu %.6f  KL(cpu||gpu) %.2e  argmax flips %lld/%lld\n",
           ftype, rc.ppl, rg.ppl, rel, rc.kld_mean, rg.kld_mean, kl, (long long)flips, (long long)ctx);
    free(lc);
    free(lg);
    /* decode through the fused kernels: an 8-token prompt, then 56 tokens one by one; the perplexity of the
     * 63 next-token predictions and KL(cpu || gpu) per position (bounds: see the top of the file) */
    const int64_t nd = 64;
    lc = run(m, (lb_device){LB_DEVICE_CPU, 0}, ids, nd, 8);
    lg = run(m, cuda0, ids, nd, 8);
    double nc = 0, ng = 0;
    for (int64_t i = 0; i + 1 < nd; i++) {
        nc += lse(lc + i * V, V) - lc[i * V + ids[i + 1]];
        ng += lse(lg + i * V, V) - lg[i * V + ids[i + 1]];
    }
    const double dpc = exp(nc / (double)(nd - 1)), dpg = exp(ng / (double)(nd - 1)), drel = fabs(dpg / dpc - 1.0);
    kl = kl_rows(lc, lg, nd, V, &flips);
    CHECK(drel < 2e-2 && kl < 5e-3, "%s decode: perplexity GPU %.6f vs CPU %.6f, KL(cpu||gpu) %.3g", ftype, dpg, dpc, kl);
    printf("%-7s decode (8 + 56 tokens): ppl cpu %.4f gpu %.4f (rel %.1e)  KL(cpu||gpu) %.2e  argmax flips %lld/%lld\n", ftype,
           dpc, dpg, drel, kl, (long long)flips, (long long)nd);
    free(lg);
    free(lc);
    p.device = (lb_device){LB_DEVICE_CPU, 0};
    check_exact(ftype, m, base, ids, n_ids, &p, &rc);
    lb_model_free(m);
    remove(path);
}

/* `test_cuda_forward --exact DIR`: check_exact on the model in DIR (the small model, which does not travel with the
 * repository to the GPU machine) quantized to each type (--pure but q4_k_m), against DIR's model as the base */
static void exact_model(const char *dir, const char *const *types, size_t n_types) {
    lb_error e;
    lb_model *base = NULL;
    lb_tokenizer *tok = NULL;
    char *text;
    size_t len;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    REQUIRE(lb_model_load(dir, &base, &e) == LB_OK, "%s: %s", dir, e.msg);
    REQUIRE(lb_tokenizer_load(dir, &tok, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file("tests/golden/data/valid.txt", (size_t)1 << 26, &text, &len, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_tokenizer_encode(tok, text, len, &ids, &n_ids, &e) == LB_OK, "%s", e.msg);
    for (size_t i = 0; i < n_types; i++) {
        char path[256], name[64];
        snprintf(path, sizeof path, "/tmp/lowbit-cuda-test-%d-x-%s.gguf", (int)getpid(), types[i]);
        snprintf(name, sizeof name, "small %s", types[i]);
        lb_quantize_params qp = lb_quantize_default_params();
        qp.ftype = types[i];
        qp.pure = strcmp(types[i], "q4_k_m") != 0;
        qp.n_threads = 8;
        lb_quantize_report r;
        REQUIRE(lb_quantize_model(dir, path, &qp, &r, &e) == LB_OK, "%s: %s", types[i], e.msg);
        lb_quantize_report_free(&r);
        lb_model *m = NULL;
        REQUIRE(lb_model_load(path, &m, &e) == LB_OK, "%s", e.msg);
        lb_eval_params p = lb_eval_default_params();
        p.ctx = 256;
        p.max_chunks = 4;
        p.n_threads = 8;
        lb_eval_result rc;
        REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &rc, &e) == LB_OK, "%s", e.msg);
        check_exact(name, m, base, ids, n_ids, &p, &rc);
        lb_model_free(m);
        remove(path);
    }
    free(text);
    lb_free(ids);
    lb_tokenizer_free(tok);
    lb_model_free(base);
}

static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s",
                                    "q4_k_s", "q5_k_s", "q6_k", "iq4_nl", "iq4_xs", "q4_k_m"};

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--exact") == 0) {
        exact_model(argv[2], types, sizeof types / sizeof types[0]);
        TEST_DONE();
    }
    lb_error e;
    lb_model *tiny = NULL;
    REQUIRE(lb_model_load("models/tiny", &tiny, &e) == LB_OK, "%s", e.msg);
    lb_context *c = NULL;
    lb_context_params bad = {.n_ctx = 64, .n_threads = 1, .device = {LB_DEVICE_CUDA, 999}};
    lb_status s = lb_context_new(tiny, &bad, &c, &e);
    CHECK(s == LB_ERR_DEVICE && strstr(e.msg, "does not exist") && !strchr(e.msg, '\n'), "cuda:999: %d '%s'", (int)s, e.msg);

    const char *arch[] = {"llama3_rope", "qwen3", "mistral", "phi3", "llama_tied_bf16"};
    for (size_t i = 0; i < sizeof arch / sizeof arch[0]; i++) {
        char dir[256], gold[256];
        snprintf(dir, sizeof dir, "tests/golden/conformance/arch/%s", arch[i]);
        snprintf(gold, sizeof gold, "tests/golden/conformance/arch/%s/goldens.json", arch[i]);
        compare_model(dir, gold);
    }
    compare_model("models/tiny", NULL);

    lb_tokenizer *tok = NULL;
    char *text;
    size_t len;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    REQUIRE(lb_tokenizer_load("models/tiny", &tok, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file("tests/golden/data/valid.txt", (size_t)1 << 26, &text, &len, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_tokenizer_encode(tok, text, len, &ids, &n_ids, &e) == LB_OK, "%s", e.msg);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_quantized(types[i], ids, n_ids, tiny);
    { /* windows longer than the context's default 512-token batch: one window to a batch, scored whole */
        lb_eval_params p = lb_eval_default_params();
        p.ctx = 1536;
        p.max_chunks = 2;
        p.n_threads = 4;
        lb_eval_result rc, rg;
        REQUIRE(lb_eval_perplexity(tiny, NULL, ids, n_ids, &p, &rc, &e) == LB_OK, "%s", e.msg);
        p.device = cuda0;
        s = lb_eval_perplexity(tiny, NULL, ids, n_ids, &p, &rg, &e);
        CHECK(s == LB_OK && rg.n_scored == rc.n_scored && fabs(rg.ppl / rc.ppl - 1.0) < 1e-4, "ctx 1536 on the GPU: %d %s, ppl %.6f vs CPU %.6f",
              (int)s, s == LB_OK ? "" : e.msg, rg.ppl, rc.ppl);
        printf("tiny ctx 1536: ppl cpu %.6f gpu %.6f\n", rc.ppl, rg.ppl);
    }
    free(text);
    lb_free(ids);
    lb_tokenizer_free(tok);
    lb_model_free(tiny);
    TEST_DONE();
}
