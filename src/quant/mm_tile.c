/*
 * mm_tile.c - one tile of the matrix product (see mm_tile.h) on the kernels of quant/cpu: the single place
 * that chooses a kernel for a tile, used by lb_matmul (matmul.c) and by the forward pass's staged runs
 * (model/forward.c). Quantized weights: one token through the fused row products (several rows at a time
 * where the type has them); several tokens through an interleaved tile (qgemm, AVX-512 VNNI) or unpacked
 * rows multiplied with up to 4 tokens at a time. Float weights: one token reads the rows in place (fgemv),
 * from LB_FGEMM_MIN_T tokens the f32 tile kernel (fgemm), else a tile converted to f32 (fconv + ftile).
 * Every choice gives the same bits (cpu.h's order).
 */
#include "mm_tile.h"

#include "cpu/cpu.h"

/* Tokens per cache block of the unpacked product: their activations stay resident while the tile's rows
 * pass over them. */
#define QTOKENS 64

_Static_assert(LB_MM_TILE == LB_QTILE_ROWS, "a tile's rows are one interleaved tile");

int64_t lb_mm_act_block(const lb_weight *w) {
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    return tt->is_quant && lb_cpu_kernels_best()->unpack[w->type] ? tt->block_elems : 0;
}

size_t lb_mm_act_row_bytes(int64_t K, int64_t be) { return LB_ALIGN64(lb_act_bytes(K, be)); }

size_t lb_mm_slot_bytes(int64_t K) {
    size_t f = lb_fgemm_slot_bytes(K), q = 0;
    if ((size_t)LB_MM_TILE * (size_t)K * sizeof(float) > f) f = (size_t)LB_MM_TILE * (size_t)K * sizeof(float);
    if (K % 32 == 0) {
        q = (size_t)LB_MM_TILE * lb_qrow_bytes(K, 32);
        size_t it = lb_qtile_bytes(K, 32) + lb_qrow_bytes(K, 32);
        if (it > q) q = it;
    }
    return LB_ALIGN64(f > q ? f : q);
}

static const lb_cpu_kernels *kernels(const lb_mm_in *in) { return in->k ? in->k : lb_cpu_kernels_best(); }

static lb_act act_row(const lb_mm_in *in, int64_t t) {
    return lb_act_at(in->act + (size_t)t * lb_mm_act_row_bytes(in->K, in->be), in->K, in->be);
}

void lb_mm_quantize(const lb_mm_in *in, int64_t t, int64_t k0, int64_t n) {
    lb_act a = act_row(in, t);
    lb_act part = {a.q + k0, a.bsum + k0 / 16, a.d + k0 / in->be, a.off + k0 / 32};
    kernels(in)->actq(in->x + t * in->K + k0, n, in->be, &part);
}

static void tile_float(const lb_cpu_kernels *k, const lb_mm_in *in, const lb_weight *w, int64_t r0, int R,
                       float *out, int64_t ldo, void *slot) {
    if (k->fgemv && in->T == 1) {
        k->fgemv(w, r0, R, in->x, out + r0);
        return;
    }
    if (k->fgemm && in->T >= LB_FGEMM_MIN_T) {
        k->fgemm(w, r0, R, in->x, in->T, out + r0, ldo, slot);
        return;
    }
    const float *wt;
    if (w->type == LB_TYPE_F32) {
        wt = (const float *)w->data + r0 * w->cols;
    } else {
        k->fconv(w, r0, R, slot);
        wt = slot;
    }
    k->ftile(in->x, in->T, in->K, wt, R, out + r0, ldo);
}

static void tile_unpacked(const lb_cpu_kernels *k, const lb_mm_in *in, const lb_weight *w, int64_t r0, int R,
                          float *out, int64_t ldo, void *slot) {
    int64_t K = in->K, be = in->be;
    size_t wrow = lb_weight_row_bytes(w), rstride = lb_qrow_bytes(K, be);
    bool has_min = lb_qtype_has_min(w->type);
    lb_qrow rows[LB_MM_TILE];
    for (int r = 0; r < R; r++) {
        rows[r] = lb_qrow_at((uint8_t *)slot + (size_t)r * rstride, K, be);
        k->unpack[w->type]((const uint8_t *)w->data + (size_t)(r0 + r) * wrow, K, &rows[r]);
    }
    size_t astride = lb_mm_act_row_bytes(K, be);
    lb_act a[QTOKENS];
    for (int64_t t0 = 0; t0 < in->T; t0 += QTOKENS) {
        int nb = (int)(in->T - t0 < QTOKENS ? in->T - t0 : QTOKENS);
        for (int i = 0; i < nb; i++) a[i] = lb_act_at(in->act + (size_t)(t0 + i) * astride, K, be);
        for (int r = 0; r < R; r++) {
            float *o = out + t0 * ldo + r0 + r;
            for (int i = 0; i < nb; i += 4)
                k->qdot(&rows[r], a + i, nb - i < 4 ? nb - i : 4, K, be, has_min, o + i * ldo, ldo);
        }
    }
}

void lb_mm_tile(const lb_mm_in *in, const lb_weight *w, int64_t r0, int R, float *out, int64_t ldo, void *slot) {
    const lb_cpu_kernels *k = kernels(in);
    if (in->be == 0) {
        tile_float(k, in, w, r0, R, out, ldo, slot);
        return;
    }
    size_t wrow = lb_weight_row_bytes(w);
    const uint8_t *base = (const uint8_t *)w->data + (size_t)r0 * wrow;
    if (in->T == 1 && k->gemvr[w->type]) {
        lb_act a = act_row(in, 0);
        k->gemvr[w->type](base, wrow, R, in->K, &a, out + r0);
        return;
    }
    if (in->T > 1 && k->qgemm) {
        lb_qtile tile = lb_qtile_pack(w->type, k->unpack[w->type], base, wrow, R, in->K, slot,
                                      (uint8_t *)slot + lb_qtile_bytes(in->K, in->be));
        k->qgemm(&tile, R, in->act, lb_mm_act_row_bytes(in->K, in->be), in->T, in->K, in->be, out + r0, ldo);
        return;
    }
    tile_unpacked(k, in, w, r0, R, out, ldo, slot);
}
