/*
 * flash.cu - causal grouped-query attention for prompts on tensor cores, flash style (the FlashAttention-2 loop):
 * a block of four warps takes FA_ROWS = 64 query rows (the hb heads of one KV head's group for 64 / hb
 * consecutive tokens, so the rows share every K and V tile), walks the visible keys in tiles of FA_BK = 64 through
 * shared memory, and keeps per row the running maximum, the running sum of the exponentials and the unnormalized
 * output in registers (the online softmax): no score row is held whole, the context is not bounded by shared
 * memory, and nothing but the K / V tiles goes through shared memory.
 *
 * Products: mma.sync m16n8k16, F16 operands, F32 accumulation. K and V are F16 in the cache, so they are exact
 * operands; q (F32) and the probabilities p (F32) are each split into two F16 halves, hi = f16(x) and
 * lo = f16(x - hi), and both halves are multiplied (S = Qhi K^T + Qlo K^T, O += Phi V + Plo V): the operands carry
 * about 22 bits, so the scores and outputs are F32-class (against ops.cu's k_attention, which follows the CPU: F32
 * q, float exponentials, double sums), at twice the tensor-core work, which is not what bounds this kernel.
 *
 * Register fragments (PTX ISA, mma.m16n8k16 .f16): with g = lane / 4 and c = 2 (lane % 4),
 *   A (16 x 16, row-major): a0 = (g, c..c+1), a1 = (g+8, c..c+1), a2 = (g, c+8..c+9), a3 = (g+8, c+8..c+9);
 *   B (16 x 8): b0 = (k c..c+1, n g), b1 = (k c+8..c+9, n g);
 *   C (16 x 8, F32): c0, c1 = (g, c..c+1), c2, c3 = (g+8, c..c+1).
 * A score tile's C fragments are the next product's A fragments (two n8 tiles make one k16 step), so P never
 * leaves registers. K's B fragments are 32-bit loads from its rows (two consecutive dimensions of one key); V's
 * come from ldmatrix .trans (two consecutive keys of one dimension). Rows of the tiles are padded by 8 halves, so
 * the eight rows a warp's loads touch at once fall in distinct banks.
 *
 * Head sizes 32, 48, 64, 96 and 128 (the accumulators are per-thread arrays of D / 8 fragments, sized at compile
 * time); other shapes, decode (at most LB_CUDA_MV_MAX tokens) and LB_CUDA_FLASH=0 take cu_attention.
 */
#include "kernels.cuh"

#include <math.h>
#include <stdlib.h>

#define STREAM lb_cu_stream
#define FA_ROWS 64 /* query rows per block: four warps of 16 */
#define FA_BK 64   /* keys per tile */
#define FA_THREADS 128

static __device__ __forceinline__ uint32_t pack_h2(__half lo, __half hi) {
    return (uint32_t)__half_as_ushort(lo) | ((uint32_t)__half_as_ushort(hi) << 16);
}

/* x0, x1 (adjacent columns) as the hi and lo halves of an A fragment register pair */
static __device__ __forceinline__ void split2(float x0, float x1, uint32_t *hi, uint32_t *lo) {
    const __half h0 = __float2half_rn(x0), h1 = __float2half_rn(x1);
    *hi = pack_h2(h0, h1);
    *lo = pack_h2(__float2half_rn(x0 - __half2float(h0)), __float2half_rn(x1 - __half2float(h1)));
}

static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* four 8x8 matrices of b16, transposed: lanes 8 i .. 8 i + 7 give the row addresses of matrix i */
static __device__ __forceinline__ void ldsm_x4_t(const __half *p, uint32_t *r) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* grid (ceil(T / bq), KV): block (x, kvh) takes tokens [x bq, x bq + bq) and the hb heads of KV head kvh; row r of
 * the block is token x bq + r / hb, head kvh hb + r % hb (rows from bq hb on are padding) */
template <int D>
__global__ void __launch_bounds__(FA_THREADS) k_flash(const float *__restrict__ q, const __half *__restrict__ kc,
                                                      const __half *__restrict__ vc, float *__restrict__ out, int T, int H, int KV,
                                                      int hb, int bq, const int64_t *pos) {
    constexpr int LD = D + 8;   /* a tile row, in halves (16-byte aligned: D % 16 == 0) */
    constexpr int KS = D / 16;  /* k16 steps of S = Q K^T */
    constexpr int NO = D / 8;   /* n8 tiles of O */
    constexpr int NS = FA_BK / 8; /* n8 tiles of S */
    __shared__ __align__(16) __half Ks[FA_BK * LD];
    __shared__ __align__(16) __half Vs[FA_BK * LD];
    const int64_t pos0 = *pos;
    const int kvh = blockIdx.y, t0 = blockIdx.x * bq, h0 = kvh * hb, kvd = KV * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = 2 * (lane % 4);

    /* this thread's two rows (g and g + 8 of the warp's 16): their query positions, or -1 for padding */
    int64_t qp[2];
    uint32_t qh[KS][4], ql[KS][4];
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + g + 8 * i, tl = r / hb, t = t0 + tl;
        const bool ok = tl < bq && t < T;
        qp[i] = ok ? pos0 + t : -1;
        const float *qr = q + ((int64_t)(ok ? t : 0) * H + h0 + r % hb) * D;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int half = 0; half < 2; half++) { /* columns c and c + 8 of the k16 step */
                const int col = kk * 16 + c + 8 * half;
                const float x0 = ok ? qr[col] : 0.0f, x1 = ok ? qr[col + 1] : 0.0f;
                split2(x0, x1, &qh[kk][i + 2 * half], &ql[kk][i + 2 * half]);
            }
    }
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    const int t_last = (t0 + bq < T ? t0 + bq : T) - 1;
    const int64_t nkeys = pos0 + t_last + 1;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t k0 = 0; k0 < nkeys; k0 += FA_BK) {
        __syncthreads(); /* the previous tile's readers are done */
        for (int i = threadIdx.x; i < FA_BK * (D / 8); i += FA_THREADS) {
            const int j = i / (D / 8), c8 = (i % (D / 8)) * 8;
            const int64_t p = k0 + j;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (p < nkeys) {
                kv = *(const uint4 *)(kc + p * kvd + (int64_t)kvh * D + c8);
                vv = *(const uint4 *)(vc + p * kvd + (int64_t)kvh * D + c8);
            }
            *(uint4 *)(Ks + j * LD + c8) = kv;
            *(uint4 *)(Vs + j * LD + c8) = vv;
        }
        __syncthreads();

        /* S (16 rows x 64 keys) = Q K^T, in C fragments */
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const __half *kr = Ks + (n * 8 + g) * LD + c;
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                const uint32_t b0 = *(const uint32_t *)(kr + kk * 16), b1 = *(const uint32_t *)(kr + kk * 16 + 8);
                mma16816(s[n], qh[kk], b0, b1);
                mma16816(s[n], ql[kk], b0, b1);
            }
        }

        /* the online softmax of the thread's two rows; the four lanes of a quad hold one row's 64 scores */
        float alpha[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int64_t p = k0 + n * 8 + c + e;
                    const float v = p <= qp[i] ? s[n][2 * i + e] * scale : -INFINITY;
                    s[n][2 * i + e] = v;
                    mx = fmaxf(mx, v);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = fmaxf(m[i], mx);
            float sum = 0.0f;
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = mn == -INFINITY ? 0.0f : expf(s[n][2 * i + e] - mn);
                    s[n][2 * i + e] = p;
                    sum += p;
                }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            alpha[i] = m[i] == -INFINITY ? 0.0f : expf(m[i] - mn);
            l[i] = l[i] * alpha[i] + sum;
            m[i] = mn;
        }
#pragma unroll
        for (int n = 0; n < NO; n++) o[n][0] *= alpha[0], o[n][1] *= alpha[0], o[n][2] *= alpha[1], o[n][3] *= alpha[1];

        /* O (16 rows x D) += P V: key step kk takes S tiles 2 kk and 2 kk + 1 as its A fragment */
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            uint32_t ph[4], pl[4];
            split2(s[2 * kk][0], s[2 * kk][1], &ph[0], &pl[0]);
            split2(s[2 * kk][2], s[2 * kk][3], &ph[1], &pl[1]);
            split2(s[2 * kk + 1][0], s[2 * kk + 1][1], &ph[2], &pl[2]);
            split2(s[2 * kk + 1][2], s[2 * kk + 1][3], &ph[3], &pl[3]);
            /* lanes 0-7: keys kk 16 + 0..7, 8-15: + 8..15, at dimensions n 8; lanes 16-31 the same at (n + 1) 8 */
            const __half *vr = Vs + (kk * 16 + (lane % 16)) * LD + (lane / 16) * 8;
#pragma unroll
            for (int n = 0; n < NO; n += 2) {
                uint32_t b[4];
                ldsm_x4_t(vr + n * 8, b);
                mma16816(o[n], ph, b[0], b[1]);
                mma16816(o[n], pl, b[0], b[1]);
                mma16816(o[n + 1], ph, b[2], b[3]);
                mma16816(o[n + 1], pl, b[2], b[3]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (qp[i] < 0) continue;
        const int r = warp * 16 + g + 8 * i, t = t0 + r / hb;
        const float inv = 1.0f / l[i];
        float *orow = out + ((int64_t)t * H + h0 + r % hb) * D + c;
#pragma unroll
        for (int n = 0; n < NO; n++) *(float2 *)(orow + n * 8) = make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
}

/* read once (a function-local static: initialized once even when several host threads ask at the same time) */
bool cu_attention_flash_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_FLASH", '0');
    return on;
}

bool cu_attention_flash_fits(int H, int KV, int D) {
    return KV > 0 && H % KV == 0 && H / KV <= FA_ROWS && (D == 32 || D == 48 || D == 64 || D == 96 || D == 128);
}

bool cu_attention_flash_ok(int H, int KV, int D) { return cu_attention_flash_on() && cu_attention_flash_fits(H, KV, D); }

void cu_attention_flash(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos) {
    const int hb = H / KV, bq = FA_ROWS / hb;
    const dim3 grid((unsigned)((T + bq - 1) / bq), (unsigned)KV);
    switch (D) {
    case 32: k_flash<32><<<grid, FA_THREADS, 0, STREAM>>>(q, kc, vc, out, T, H, KV, hb, bq, pos); break;
    case 48: k_flash<48><<<grid, FA_THREADS, 0, STREAM>>>(q, kc, vc, out, T, H, KV, hb, bq, pos); break;
    case 64: k_flash<64><<<grid, FA_THREADS, 0, STREAM>>>(q, kc, vc, out, T, H, KV, hb, bq, pos); break;
    case 96: k_flash<96><<<grid, FA_THREADS, 0, STREAM>>>(q, kc, vc, out, T, H, KV, hb, bq, pos); break;
    default: k_flash<128><<<grid, FA_THREADS, 0, STREAM>>>(q, kc, vc, out, T, H, KV, hb, bq, pos); break;
    }
}
