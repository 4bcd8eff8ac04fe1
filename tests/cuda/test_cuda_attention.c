/*
 * test_cuda_attention.c - the GPU's attention kernels against a float64 reference: causal grouped-query attention
 * of T queries at positions pos0.. over F16 K and V caches (the values the kernels read, so both sides see the
 * same operands), for the prompt kernel on tensor cores (cuda/flash.cu), the per-token kernel (ops.cu's
 * k_attention), the kernel split over the positions (ops.cu's k_att_split + k_att_combine) and its single launch for
 * short contexts (k_att_one, lb_cuda_test_attention's 6-9), on shapes that
 * cover every head size the flash kernel has (32, 48, 64, 96, 128) and two it has not (80, 256), head groups of 1,
 * 3, 4, 8 and 64 query heads per KV head (3: padding rows in a block), contexts that end inside a key tile or
 * chunk and span several, a cache already holding up to 5,000 positions, and 1-21 query tokens. Needs a GPU.
 *
 * Bound, per output element: with s_j = q.k_j / sqrt(D) and A = max_j sum_i |q_i k_ji| / sqrt(D),
 *   |gpu - ref| <= max|v| (2 A (D + 8) 2^-23 + (n + 16) 2^-22) + 2^-40
 * the scores' F32 sums (D + 8 additions of terms at most A, doubled for the softmax's sensitivity to a score
 * error: d out / d s_j = p_j (v_j - out)), the exponentials and probabilities (a few ulp each) and the weighted
 * sum over n positions in F32. The flash kernel's F16 hi/lo halves of q and p carry about 22 bits, inside the
 * same bound. A wrong fragment, mask or tile is off by a sizeable part of max|v|, far outside it.
 * Outputs are poisoned with NaN before each run (lb_cuda_test_attention), so an unwritten element fails.
 */
#include "core/core.h"
#include "cuda/cuda.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

/* the heads a block of the decode attention kernels take, as documented (README, LB_CUDA_ATT_HB): two of a group of
 * four to eight heads sharing a KV head where D is a multiple of 128, else the group (up to 8), else one;
 * LB_CUDA_ATT_HB=N: N where N divides the group, else the group */
static int heads_a_block(int H, int KV, int D) {
    const char *v = getenv("LB_CUDA_ATT_HB");
    const int want = v && *v ? atoi(v) : 0, g = H / KV, whole = g <= 8 ? g : 1;
    if (want > 0) return want < g && g % want == 0 ? want : whole;
    return whole > 2 && whole % 2 == 0 && D % 128 == 0 ? 2 : whole;
}


static void check_shape(int T, int H, int KV, int D, int64_t pos0, float qscale) {
    const int64_t n = pos0 + T, kvd = (int64_t)KV * D;
    const size_t qn = (size_t)T * H * D;
    float *q = malloc(qn * sizeof(float)), *out = malloc(qn * sizeof(float));
    uint16_t *kc = malloc((size_t)(n * kvd) * 2), *vc = malloc((size_t)(n * kvd) * 2);
    double *ref = malloc(qn * sizeof(double)), *bound = malloc(qn * sizeof(double)), *p = malloc((size_t)n * sizeof(double));
    REQUIRE(q && out && kc && vc && ref && bound && p, "out of memory");
    for (size_t i = 0; i < qn; i++) q[i] = qscale * test_gauss();
    for (int64_t i = 0; i < n * kvd; i++) kc[i] = lb_f32_to_fp16(test_gauss()), vc[i] = lb_f32_to_fp16(test_gauss());
    const int hb = H / KV;
    const double scale = 1.0 / sqrt((double)D);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const float *qr = q + ((size_t)t * H + h) * D;
            const int64_t nv = pos0 + t + 1;
            const int kvh = h / hb;
            double mx = -INFINITY, A = 0.0, vmax = 0.0;
            for (int64_t j = 0; j < nv; j++) {
                double s = 0.0, a = 0.0;
                for (int i = 0; i < D; i++) {
                    const double kv = lb_fp16_to_f32(kc[j * kvd + (int64_t)kvh * D + i]);
                    s += (double)qr[i] * kv;
                    a += fabs((double)qr[i] * kv);
                    const double vv = fabs(lb_fp16_to_f32(vc[j * kvd + (int64_t)kvh * D + i]));
                    vmax = vv > vmax ? vv : vmax;
                }
                p[j] = s * scale;
                mx = p[j] > mx ? p[j] : mx;
                A = a * scale > A ? a * scale : A;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < nv; j++) sum += (p[j] = exp(p[j] - mx));
            for (int i = 0; i < D; i++) {
                double o = 0.0;
                for (int64_t j = 0; j < nv; j++) o += p[j] * lb_fp16_to_f32(vc[j * kvd + (int64_t)kvh * D + i]);
                ref[((size_t)t * H + h) * D + i] = o / sum;
                bound[((size_t)t * H + h) * D + i] =
                    vmax * (2.0 * A * (D + 8) * ldexp(1.0, -23) + (double)(nv + 16) * ldexp(1.0, -22)) + ldexp(1.0, -40);
            }
        }
    static const char *const kname[8] = {"plain", "flash", "split", "split+round", "", "", "one", "one+round"};
    /* the single launch (6, 7): contexts of at most 32768 / D positions (a multiple of 8), which sm_90's shared memory
     * holds for every head group here; with rounding, a block's hb D elements whole blocks of the weight's */
    const int ghb = heads_a_block(H, KV, D), abe = (H * D) % 256 == 0 ? 256 : 32;
    const bool one_fits = n <= 32768 / D / 8 * 8;
    float *split_out = malloc(qn * sizeof(float));
    bool have_split = false;
    for (int flash = 0; flash < 8; flash++) {
        if (flash == 4 || flash == 5) continue; /* the rotating kernels: below */
        lb_error e;
        const lb_status s = lb_cuda_test_attention(0, q, kc, vc, out, T, H, KV, D, pos0, flash, &e);
        const bool round_fits = D % 8 == 0 && T <= 16 && (H * D) % 32 == 0;
        if ((flash == 6 && !one_fits) || (flash == 7 && round_fits && (!one_fits || (ghb * D) % abe))) {
            CHECK(s == LB_ERR_UNSUPPORTED && strstr(e.msg, "single-launch"), "%s T %d H %d KV %d D %d pos0 %lld: status %d, %s",
                  kname[flash], T, H, KV, D, (long long)pos0, (int)s, s == LB_OK ? "" : e.msg);
            continue;
        }
        if (flash == 3 || flash == 7) { /* the split kernel (or the single launch) rounding for the o product: its result
                                         * without rounding bit for bit, and (checked by the entry point) cu_act_prepare's
                                         * bytes of it */
            if (!round_fits) {
                CHECK(s == LB_ERR_UNSUPPORTED, "%s T %d H %d KV %d D %d: status %d", kname[flash], T, H, KV, D, (int)s);
                continue;
            }
            CHECK(s == LB_OK, "%s T %d H %d KV %d D %d pos0 %lld: status %d, %s", kname[flash], T, H, KV, D, (long long)pos0, (int)s,
                  e.msg);
            if (s == LB_OK && have_split)
                CHECK(!memcmp(out, split_out, qn * sizeof(float)), "%s T %d H %d KV %d D %d: the output differs from the kernel's without",
                      kname[flash], T, H, KV, D);
            continue;
        }
        if (flash == 6) have_split = false;
        const bool flash_shape = (D == 32 || D == 48 || D == 64 || D == 96 || D == 128) && H / KV <= 64;
        if (flash == 1 && !flash_shape) { /* no tensor-core variant: said so */
            CHECK(s == LB_ERR_UNSUPPORTED, "flash T %d H %d KV %d D %d: status %d", T, H, KV, D, (int)s);
            continue;
        }
        CHECK(s == LB_OK, "%s T %d H %d KV %d D %d pos0 %lld: status %d, %s", kname[flash], T, H, KV, D, (long long)pos0, (int)s, e.msg);
        if (s != LB_OK) continue;
        double worst = 0.0, worst_ratio = 0.0;
        size_t bad = 0, first_bad = 0;
        for (size_t i = 0; i < qn; i++) {
            const double d = fabs((double)out[i] - ref[i]);
            if (!(d <= bound[i])) {
                if (!bad) first_bad = i;
                bad++;
            }
            if (d > worst || d != d) worst = d;
            if (d / bound[i] > worst_ratio || d != d) worst_ratio = d / bound[i];
        }
        CHECK(bad == 0, "%s T %d H %d KV %d D %d pos0 %lld: %zu of %zu outside the bound; first at %zu: %.9g against %.9g (bound %.3g)",
              kname[flash], T, H, KV, D, (long long)pos0, bad, qn, first_bad, out[first_bad], ref[first_bad],
              bound[first_bad]);
        printf("%s T %4d H %2d KV %2d D %3d pos0 %4lld: max |gpu - ref| %.3g, at most %.3g of the bound\n", kname[flash], T, H,
               KV, D, (long long)pos0, worst, worst_ratio);
        if (flash == 2 || flash == 6) {
            memcpy(split_out, out, qn * sizeof(float));
            have_split = true;
        }
    }
    if (T == 1 && D % 8 == 0) /* decode: the split kernel's (and the single launch's) own rotation of q and the new key
                                 * (both layouts) against cu_rope_kv's launch, the output and the caches bit for bit
                                 * (compared by the entry point) */
        for (int k = 4; k < 10; k++) {
            if (k == 6 || k == 7 || (k >= 8 && !one_fits)) continue;
            lb_error e;
            const lb_status s = lb_cuda_test_attention(0, q, kc, vc, out, T, H, KV, D, pos0, k, &e);
            CHECK(s == LB_OK, "%s+rope%s H %d KV %d D %d pos0 %lld: status %d, %s", k < 8 ? "split" : "one", k % 2 ? " interleaved" : "", H,
                  KV, D, (long long)pos0, (int)s, e.msg);
        }
    free(split_out);
    free(q);
    free(out);
    free(kc);
    free(vc);
    free(ref);
    free(bound);
    free(p);
}

int main(void) {
    test_seed(0x2545f4914f6cdd1dULL);
    lb_error e;
    float one = 1.0f;
    uint16_t h0 = 0;
    /* a head size the flash kernel has no variant for: a clear status, not a launch */
    lb_status s = lb_cuda_test_attention(0, &one, &h0, &h0, &one, 1, 1, 1, 80, 0, 1, &e);
    CHECK(s == LB_ERR_UNSUPPORTED, "flash with D 80: status %d, %s", (int)s, e.msg);
    s = lb_cuda_test_attention(0, &one, &h0, &h0, &one, 1, 1, 1, 36, 0, 2, &e); /* the split kernel: head sizes of 8 k */
    CHECK(s == LB_ERR_UNSUPPORTED && strstr(e.msg, "head size"), "split with D 36: status %d, %s", (int)s, e.msg);
    s = lb_cuda_test_attention(0, &one, &h0, &h0, &one, 2, 1, 1, 32, 0, 4, &e); /* the rotating split kernel: one token */
    CHECK(s == LB_ERR_UNSUPPORTED && strstr(e.msg, "one token"), "split+rope with T 2: status %d, %s", (int)s, e.msg);
    s = lb_cuda_test_attention(4096, &one, &h0, &h0, &one, 1, 1, 1, 32, 0, 0, &e);
    CHECK(s == LB_ERR_DEVICE && strstr(e.msg, "does not exist"), "device 4096: status %d, '%s'", (int)s, e.msg);

    check_shape(100, 32, 8, 128, 0, 1.0f);  /* the 8B shape's group of 4; two key tiles */
    check_shape(300, 8, 8, 128, 0, 3.0f);   /* one head per group, five tiles, peaked scores */
    check_shape(20, 64, 1, 128, 7, 1.0f);   /* 64 heads share one KV head: one token per block */
    check_shape(77, 4, 4, 64, 35, 2.0f);    /* a cache holding 35 positions before the batch */
    check_shape(129, 8, 2, 64, 0, 1.0f);    /* small's shape */
    check_shape(130, 4, 2, 32, 0, 1.0f);    /* the conformance models' head size */
    check_shape(65, 4, 2, 48, 3, 2.0f);     /* qwen3's */
    check_shape(40, 6, 2, 96, 100, 1.0f);   /* three heads per group: padding rows in every block */
    check_shape(17, 12, 4, 32, 1000, 4.0f); /* a long cache, few queries */
    /* decode shapes (the split kernel's: several chunks, a last partial one, token groups of 16) */
    check_shape(1, 32, 8, 128, 5000, 2.0f);  /* one token over 5,001 positions: 79 chunks */
    check_shape(1, 12, 4, 64, 77, 1.0f);     /* decode rounding for 256-element blocks over 768 outputs */
    check_shape(2, 6, 2, 96, 10, 1.0f);      /* and for 32-element blocks (576 outputs) */
    check_shape(3, 8, 2, 80, 300, 1.0f);     /* a head size without a flash variant */
    check_shape(16, 4, 4, 256, 129, 1.0f);   /* 16 tokens, head size 256 */
    check_shape(21, 64, 8, 64, 70, 1.0f);    /* two token groups (16 + 5), eight heads a group */
    check_shape(2, 32, 8, 128, 12000, 2.0f); /* 128 chunks of 96 positions: three key tiles a chunk; a last chunk of 1-2 */
    check_shape(5, 9, 3, 64, 33, 1.0f);      /* the 135M model's groups of three; chunks of 8 positions */
    check_shape(1, 64, 4, 128, 40, 1.0f);    /* 16 heads a KV head: groups of one head, the first of each stores the row */
    check_shape(1, 9, 3, 64, 0, 1.0f);       /* the first position: the new row alone */
    /* the single launch's contexts (at most 32768 / D positions) */
    check_shape(1, 32, 8, 128, 127, 2.0f);   /* tg128's last step on the 8B shape */
    check_shape(1, 32, 8, 128, 255, 1.0f);   /* its longest context */
    check_shape(1, 32, 8, 128, 256, 1.0f);   /* one position more: the split kernel's alone */
    check_shape(4, 8, 2, 64, 200, 1.0f);     /* several tokens, 256-element rounding over one group's 256 outputs */
    check_shape(16, 4, 4, 256, 100, 1.0f);   /* 16 tokens, head size 256 */
    check_shape(3, 16, 2, 32, 1000, 3.0f);   /* head size 32: 1,024 positions, eight heads a group */
    TEST_DONE();
}
