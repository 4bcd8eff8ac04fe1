/*
 * kernels.cuh - launchers of the CUDA kernels (mv.cu: weight products and dequantization; ops.cu: the
 * rest of the forward pass and eval scoring). All run on the current device's default stream and only
 * enqueue work; callers check cudaGetLastError / synchronize where they need to. Shapes are row-major.
 */
#ifndef LB_CUDA_KERNELS_CUH
#define LB_CUDA_KERNELS_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>

#include "lowbit.h"

/* Whether environment variable `name` is set and starts with c (a switch; callers read it once, into a function-local
 * static, so every later call sees the first answer). */
static inline bool cu_env_is(const char *name, char c) {
    const char *v = getenv(name);
    return v && v[0] == c;
}

/* Environment variable `name` as an integer, or dflt where it is unset or empty (read once by callers, as cu_env_is). */
static inline long long cu_env_int(const char *name, long long dflt) {
    const char *v = getenv(name);
    return v && *v ? atoll(v) : dflt;
}

/* The current device's ordinal (-1 where the runtime cannot say). Shared memory limits raised by cudaFuncSetAttribute,
 * multiprocessor counts and occupancies are per device: launchers keep them per ordinal, CU_DEVS at most (a later ordinal
 * asks every time), so every GPU of a pipeline or calibration set gets its own. */
#define CU_DEVS 64
static inline int cu_device(void) {
    int d = -1;
    return cudaGetDevice(&d) == cudaSuccess ? d : -1;
}
/* A value per device ordinal, asked once a device: the value stored before `have` is released (host threads of several
 * GPUs share the launchers; two that ask for the same device at once store the same value). */
template <typename T> struct cu_dev_cache {
    T v[CU_DEVS];
    std::atomic<bool> have[CU_DEVS];
};
template <typename T, typename F> static inline T cu_per_device(cu_dev_cache<T> &c, F ask) {
    const int dev = cu_device();
    if (dev < 0 || dev >= CU_DEVS) return ask(dev);
    if (!c.have[dev].load(std::memory_order_acquire)) {
        c.v[dev] = ask(dev);
        c.have[dev].store(true, std::memory_order_release);
    }
    return c.v[dev];
}

/* the current device's multiprocessors (1 where the runtime does not say) */
static inline int cu_dev_sms(void) {
    static cu_dev_cache<int> cache;
    return cu_per_device(cache, [](int dev) {
        int n = 0;
        return dev >= 0 && cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && n > 0 ? n : 1;
    });
}

/* the current device's compute capability major (0 where the runtime does not say) */
static inline int cu_dev_major(void) {
    static cu_dev_cache<int> cache;
    return cu_per_device(cache, [](int dev) {
        int n = 0;
        return dev >= 0 && cudaDeviceGetAttribute(&n, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess ? n : 0;
    });
}

/* the largest dynamic shared memory a block may opt in to on the current device (0 where the runtime does not say) */
static inline int cu_dev_smem_optin(void) {
    static cu_dev_cache<int> cache;
    return cu_per_device(cache, [](int dev) {
        int n = 0;
        return dev >= 0 && cudaDeviceGetAttribute(&n, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess ? n : 0;
    });
}

/* The stream every launcher enqueues on, per host thread (each GPU context sets its own before its work). */
extern thread_local cudaStream_t lb_cu_stream;

/*
 * Programmatic dependent launch (on compute capability 9 devices unless LB_CUDA_PDL=0; tg128 +4-6 % in run 15):
 * the forward pass's kernels are launched with cudaLaunchAttributeProgrammaticStreamSerialization, so a kernel's blocks
 * may start while the kernel before it in the stream finishes. Every such kernel calls pdl_enter() (or, after reading
 * only data no kernel writes, the weights, pdl_wait() then pdl_go()) before it reads or writes anything another kernel
 * touches, on every path of every block: griddepcontrol.wait returns once the previous grid has completed and its
 * writes are visible, so each grid's completion implies its predecessors' and the stream stays ordered. pdl_go lets
 * the next kernel launch once every block of this one has passed its wait: at most two grids overlap. Without the
 * attribute (the default, or devices before sm_90) both instructions return at once.
 */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_go() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_enter() {
    pdl_wait();
    pdl_go();
}

/* cp.async (sm_80 and later; plain loads before): bytes (16, 8 or 4) from global g to shared smem, asynchronously;
 * cp_commit closes the thread's group of copies, cp_wait<N> waits until at most N of its groups are pending */
__device__ __forceinline__ void cp_async(void *smem, const void *g, int bytes) {
#if __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const size_t ga = __cvta_generic_to_global(g);
    if (bytes == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(ga));
    else if (bytes == 8) asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(ga));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(ga));
#else
    if (bytes == 16) *(uint4 *)smem = __ldg((const uint4 *)g);
    else if (bytes == 8) *(uint2 *)smem = __ldg((const uint2 *)g);
    else *(uint32_t *)smem = __ldg((const uint32_t *)g);
#endif
}
__device__ __forceinline__ void cp_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void cp_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

/* The CPU's 8-bit rounding of activations (lb_act_quantize) in IEEE operations, shared by every kernel that rounds (mv.cu's
 * k_act_round, ops.cu's producers), so their codes and scales agree to the bit: from the block's amax, the inverse scale
 * id and the scale d; a value's code (clamped, NaN to -127, rounded to nearest even) */
__device__ __forceinline__ void act_scales(float amax, float *id, float *d) {
    *id = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    *d = __fdiv_rn(amax, 127.0f);
}
__device__ __forceinline__ int act_code(float v, float id) {
    float u = __fmul_rn(v, id);
    u = u >= -127.0f ? u : -127.0f; /* NaN -> -127, as the CPU */
    u = u <= 127.0f ? u : 127.0f;
    return __float2int_rn(u);
}
/* LB_CUDA_PDL is not 0 and the current device has compute capability 9 or more (asked once a device) */
bool cu_pdl_on(void);
/* kernel<<<grid, block, smem, lb_cu_stream>>>(args...), with the programmatic serialization attribute when cu_pdl_on();
 * the kernel must follow pdl_enter's rule. Launch errors are left for cudaGetLastError, as with <<<>>>.
 * cu_launch_cluster: the grid's blocks in clusters of cy along y (cy > 1: sm_90 and later, dividing grid.y; at most 8,
 * or 16 for a kernel allowed non-portable cluster sizes). */
template <typename... P, typename... A>
static inline void cu_launch_cluster(void (*kernel)(P...), dim3 grid, dim3 block, unsigned cy, size_t smem, A... args) {
    const bool pdl = cu_pdl_on();
    if (!pdl && cy <= 1) {
        kernel<<<grid, block, smem, lb_cu_stream>>>(args...);
        return;
    }
    cudaLaunchAttribute at[2];
    unsigned n = 0;
    if (pdl) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cy > 1) {
        at[n].id = cudaLaunchAttributeClusterDimension;
        at[n].val.clusterDim.x = 1;
        at[n].val.clusterDim.y = cy;
        at[n++].val.clusterDim.z = 1;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = lb_cu_stream;
    cfg.attrs = at;
    cfg.numAttrs = n;
    (void)cudaLaunchKernelEx(&cfg, kernel, ((P)args)...);
}
template <typename... P, typename... A> static inline void cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... args) {
    cu_launch_cluster(kernel, grid, block, 1, smem, args...);
}

/* A weight matrix on the device: rows of row_bytes, cols a multiple of 32. */
typedef struct dweight {
    lb_type type;
    const uint8_t *data;
    int64_t rows, cols;
    size_t row_bytes;
} dweight;

/* Most tokens the fused dequantize-multiply kernels take; longer batches go through cuBLAS. */
#define LB_CUDA_MV_MAX 16

/* Whether the type has device decoders (every weight type of the table). */
bool cu_type_supported(lb_type t);

/* Whether W's fused kernel takes 8-bit activations (the integer-grid block types) rather than F16. */
bool cu_matvec_q8(lb_type t);
/* x (T, K) f32 in the layout cu_matvec takes for a weight of type wtype, into xa (at least 2 T K bytes,
 * 16-byte aligned): F16, or 8 bits per element with a scale and a code sum per 32 (mv.cu). Activations
 * of block-type weights are rounded to 8 bits per weight block exactly as the CPU rounds them. */
void cu_act_prepare(lb_type wtype, const float *x, int T, int64_t K, void *xa);
/* x (T, K) as F16 for a product with a weight of type wtype: for block types the CPU's 8-bit rounding
 * (per weight block) first, then d * q in F16; float types plain F16. */
void cu_act_f16(lb_type wtype, const float *x, int T, int64_t K, __half *y);
/* out (T, ldo) = x (T, K) . W^T for T <= LB_CUDA_MV_MAX, fused: each weight byte read once; x as
 * cu_act_prepare laid it out for W's type, the products and sums in F32 (integer sums for 8-bit activations).
 * add: out += x . W^T instead (each element plus its product, one IEEE addition: cu_add's result). */
void cu_matvec(const dweight *w, const void *x, int T, float *out, int64_t ldo, bool add = false);
/* rows [r0, r0 + R) of W dequantized to dst (R, K), F16 or F32. */
void cu_dequant_f16(const dweight *w, int64_t r0, int64_t R, __half *dst);
void cu_dequant_f32(const dweight *w, int64_t r0, int64_t R, float *dst);
/* out (T, K) = rows tokens[t] of W as f32. */
void cu_embed(const dweight *w, const int32_t *tokens, int T, float *out);

void cu_f32_to_f16(const float *x, int64_t n, __half *y);
/* out[r] = w * x[r] / rms(x[r]) for n_rows rows of n (in and out rows `stride` floats apart; may alias) */
void cu_rmsnorm(const float *x, const float *w, float *out, int64_t n_rows, int n, int64_t stride, float eps);
/* x += y, then out = cu_rmsnorm(x), for n_rows contiguous rows of n (one launch) */
void cu_add_rmsnorm(float *x, const float *y, const float *w, float *out, int64_t n_rows, int n, float eps);
void cu_add_bias(float *y, const float *b, int T, int n);
void cu_add(float *x, const float *y, int64_t n);
void cu_silu_mul(float *g, const float *u, int64_t n);
/* Producers that also round their result for the next product's 8-bit path (cu_act_prepare's bytes for a weight
 * of block be = 32 or 256, into xa) in the same launch, where cu_act_fusable(row length, be) and every pointer is
 * 16-byte aligned: cu_rmsnorm of contiguous rows (the sum of squares in its own fixed order: results within
 * rounding of cu_rmsnorm's), and cu_silu_mul (the same floats). */
bool cu_act_fusable(int64_t n, int be);
void cu_rmsnorm_act(const float *x, const float *w, float *out, int64_t n_rows, int n, float eps, int be, void *xa);
void cu_silu_act(float *g, const float *u, int64_t n, int be, void *xa);
/* The position of the batch's first token, pos0, is read from device memory (*pos), so that one captured
 * graph serves every decode step. */
/* rotary embedding of q (T, H, D) and k (T, KV, D) at positions pos0.. (tables (n_ctx, D/2)), then cache rows
 * pos0..pos0+T-1 of the (n_ctx, KV D) F16 caches from the rotated k and from v, in one launch */
void cu_rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn,
                const int64_t *pos0, bool interleaved, __half *kc, __half *vc);
/* the same into F32 caches (exact contexts) */
void cu_rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn,
                const int64_t *pos0, bool interleaved, float *kc, float *vc);
/* causal grouped-query attention of T queries at pos0.. over the layer's cache; out (T, H*D); max_n: an
 * upper bound of pos0 + T (sizes the shared memory) */
void cu_attention(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D,
                  const int64_t *pos, int64_t max_n);
/* the same over F32 caches in the CPU's order of operations (exact contexts, exact.cu; cu_attention_prepare covers both) */
void cu_attention(const float *q, const float *kc, const float *vc, float *out, int T, int H, int KV, int D, const int64_t *pos,
                  int64_t max_n);
/* exact.cu: an exact context's other kernels, each the CPU's operations in the CPU's order (bit for bit):
 * out (T, ldo) = x (T, K) . W^T for T <= LB_CUDA_MV_MAX, x in F32 (block types: scratch takes the 8-bit activations,
 * at least 2 T K bytes); RMSNorm (y: x += y first, as cu_add_rmsnorm; rows `stride` apart); silu(g) * u. */
void cu_mm_exact(const dweight *w, const float *x, int T, float *out, int64_t ldo, void *scratch);
void cu_rmsnorm_exact(float *x, const float *y, const float *w, float *out, int64_t n_rows, int n, int64_t stride, float eps);
void cu_silu_mul_exact(float *g, const float *u, int64_t n);
cudaError_t cu_attention_exact_prepare(int64_t n_ctx);
/* flash.cu: the same attention for prompts on tensor cores, flash style (no bound on the context from shared
 * memory; F16 products on operands split into two F16 halves, so F32-class but not the CPU's bits). _fits: the shape
 * has a kernel (H a multiple of KV, H / KV <= 64, head size 32, 48, 64, 96 or 128); _on: enabled (unless
 * LB_CUDA_FLASH=0, read once); _ok: both. */
bool cu_attention_flash_fits(int H, int KV, int D);
bool cu_attention_flash_on(void);
bool cu_attention_flash_ok(int H, int KV, int D);
void cu_attention_flash(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos);
/* The same split over the positions (flash-decoding, ops.cu): any context length, many blocks per token; enabled by
 * default, LB_CUDA_ATT_SPLIT=0 turns it off (read once); _fits: the head size has the kernel (a multiple of 8 from 32
 * to 256); _chunks: the chunks per query for contexts of max_n. part: cu_attention_split_scratch(H, D, max_n) bytes of device scratch.
 * xa: the combining launch also rounds the result for the o product (cu_act_prepare's bytes for a weight of block be = 32
 * or 256 into xa; needs cu_act_fusable(H D, be) and D a multiple of 8); the same result either way. */
/* rope: the new token's unrotated key and value rows (k, v: KV D each), the rotary tables and their layout, for a call
 * that also does cu_rope_kv's work (the rotation of q and k, the cache rows at pos0): for one token inside the split
 * kernel (its q and k buffers stay unrotated), for several by a cu_rope_kv launch first (q and k rotated in place).
 * kc, vc: filled in by cu_attention_split. */
struct cu_att_new {
    const float *k, *v, *cs, *sn;
    int inter;
    __half *kc, *vc;
};
bool cu_attention_split_on(void);
bool cu_attention_split_fits(int D);
int cu_attention_split_chunks(int64_t max_n);
size_t cu_attention_split_scratch(int H, int D, int64_t max_n);
/* one: whether contexts up to cu_attention_one_max(H, KV, D, one > 0) take k_att_one's single launch (-1: where
 * LB_CUDA_ATT_ONE allows, by default wherever it fits; 0: never; 1: wherever it fits), the same result within the attention test's bound */
void cu_attention_split(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos,
                        int64_t max_n, float *part, int be = 0, void *xa = NULL, const cu_att_new *rope = NULL, int one = -1);
/* The longest context (max_n) cu_attention_split takes in one launch on the current device (a multiple of 8; 0: none):
 * its keys and values in shared memory; force: even where LB_CUDA_ATT_ONE does not ask for it */
int64_t cu_attention_one_max(int H, int KV, int D, bool force = false);
/* whether contexts of max_n (and the rounding for weight blocks of be elements, 0: none) take that launch */
bool cu_attention_one_fits(int H, int KV, int D, int64_t max_n, int be, bool force);
/* Allow cu_attention contexts of up to n_ctx positions; an error when the device cannot hold them. */
cudaError_t cu_attention_prepare(int H, int KV, int D, int64_t n_ctx);
/* Per row i < n_rows of logits (V wide): lse, NLL of next[i], argmax and, when base is not NULL, KL(base || row). */
void cu_score(const float *logits, int64_t V, const int32_t *next, int n_rows, const float *base, const double *base_lse,
              double *lse, double *nll, long long *amax, double *kl);

#endif
