/*
 * test_quant_golden.c - every type of the type table against the test vectors ggml itself produced
 * (tests/golden/ggml, copied from shared/golden/ggml; format and caveats in its README.md):
 *   - table row vs block struct vs ggml's types.json (block bytes and elements, GGUF id, vec_dot type);
 *   - dequant.bin: to_float of stored blocks, bit for bit (f16/bf16: all 65536 bit patterns, NaNs too);
 *   - quant.bin: from_float_ref bytes exactly (where flags bit0 marks bytes that depend on ggml's
 *     uninitialized memory, the dequantized values instead), and our decoding of them == ggml's;
 *   - quant_imatrix.bin: quantize_ref over all 16 rows in one call (nrows 16, n_per_row 256) with the
 *     stored importance matrix == data_imatrix, and with NULL == data_noimatrix;
 *   - dot.bin: vec_dot_ref on the stored weight and activation bytes vs ggml's result (tolerance below),
 *     and the reference quantizer of the activation type on the stored floats == the stored bytes.
 * Prints one summary line per type; types without goldens (f32, q8_1, q8_k) are listed as such.
 */
#include "core/core.h"
#include "core/json.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GOLDEN_DIR "tests/golden/ggml"
#define ROW 256        /* elements per quant/dot record row */
#define NROWS 16       /* records per quant / quant_imatrix / dot file */
#define SHOW_FAILS 3   /* failing records described per type and file */

/* Dot tolerance |mine - result| <= DOT_REL * max(abs_sum, |result|) + DOT_ABS. ggml's `result` came from
 * its AVX2/AVX-512 kernels: the same exact integer sums per block as ours, but a different float order
 * for scaling and accumulating the per-block partial sums (SIMD lanes, FMA). That reordering moves the
 * result by a few float ulps of the summed magnitudes: a per-block double reimplementation stayed within
 * 2.1e-7 * max(abs_sum, |result|) of `result` (README). 1e-5 leaves a 50x margin over that and is still
 * 20x below what a real kernel error costs (e.g. using fp16(d)*sum(qs) instead of q8_1's `s` moves q4_1
 * and q5_1 by up to 2e-4 * abs_sum). DOT_ABS covers rows whose products are all zero (abs_sum = 0). */
#define DOT_REL 1e-5
#define DOT_ABS 1e-7

typedef struct {
    uint8_t *data;
    size_t size;
    uint32_t count;
} golden;

typedef struct {
    int pass, total;
} tally;

/* ---- little-endian field access at unaligned offsets ---- */

static uint32_t rd_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static float rd_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static double rd_f64(const uint8_t *p) { double v; memcpy(&v, p, 8); return v; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    REQUIRE(p, "out of memory (%zu bytes)", n);
    return p;
}

/* Floats of a record, copied to an aligned array (n floats). */
static float *rd_floats(const uint8_t *p, size_t n) {
    float *f = xmalloc(n * sizeof *f);
    memcpy(f, p, n * sizeof *f);
    return f;
}

static bool golden_load(const char *type, const char *kind, golden *g) {
    char path[256];
    snprintf(path, sizeof path, GOLDEN_DIR "/%s.%s.bin", type, kind);
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->data = xmalloc(sz > 0 ? (size_t)sz : 1);
    g->size = sz > 0 && fread(g->data, 1, (size_t)sz, f) == (size_t)sz ? (size_t)sz : 0;
    fclose(f);
    if (g->size < 16 || memcmp(g->data, "LBGOLDEN", 8) != 0 || rd_u32(g->data + 8) != 1) {
        fprintf(stderr, "%s: not a version-1 LBGOLDEN file\n", path);
        return false;
    }
    g->count = rd_u32(g->data + 12);
    return true;
}

static void golden_free(golden *g) { free(g->data); }

/* Next record of `rec_size` bytes at *off, or NULL (and a failure) when the file is too short. */
static const uint8_t *next_record(const golden *g, size_t *off, size_t rec_size) {
    if (*off > g->size || g->size - *off < rec_size) return NULL;
    const uint8_t *r = g->data + *off;
    *off += rec_size;
    return r;
}

/* First element where two float arrays differ by bit pattern, or -1. */
static int64_t first_float_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (f32_bits(a[i]) != f32_bits(b[i])) return i;
    return -1;
}

static int64_t first_byte_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return (int64_t)i;
    return -1;
}

static void note_fail(tally *t, const char *type, const char *what, int rec, const char *fmt, double a, double b,
                      int64_t at) {
    if (t->total - t->pass <= SHOW_FAILS)
        fprintf(stderr, "  %s %s record %d: %s %lld: mine %.9g, ggml %.9g\n", type, what, rec, fmt, (long long)at, a, b);
}

/* ---- dequant.bin ---- */

static tally check_dequant(const lb_type_traits *tt, const golden *g) {
    tally t = {0, 0};
    size_t off = 16;
    for (uint32_t r = 0; r < g->count; r++) {
        const uint8_t *p = g->data + off;
        if (g->size - off < 16) break;
        const uint32_t E = rd_u32(p + 8), B = rd_u32(p + 12);
        if (!(p = next_record(g, &off, 16 + (size_t)B + 4 * (size_t)E))) break;
        t.total++;
        if (E % tt->block_elems || B != E / tt->block_elems * tt->block_bytes) {
            note_fail(&t, tt->name, "dequant", (int)r, "bad E/B", E, B, 0);
            continue;
        }
        uint8_t *blocks = xmalloc(B);
        memcpy(blocks, p + 16, B);
        float *want = rd_floats(p + 16 + B, E), *got = xmalloc(E * sizeof *got);
        tt->to_float(blocks, got, E);
        const int64_t at = first_float_diff(got, want, E);
        if (at < 0) t.pass++;
        else note_fail(&t, tt->name, "dequant", (int)r, "element", got[at], want[at], at);
        free(blocks), free(want), free(got);
    }
    return t;
}

/* ---- quant.bin ---- */

static tally check_quant(const lb_type_traits *tt, const golden *g) {
    tally t = {0, 0};
    size_t off = 16;
    for (uint32_t r = 0; r < g->count; r++) {
        const uint8_t *p = g->data + off;
        if (g->size - off < 16) break;
        const uint32_t E = rd_u32(p + 8), B = rd_u32(p + 12);
        if (!(p = next_record(g, &off, 20 + 8 * (size_t)E + B))) break;
        t.total++;
        const uint32_t flags = rd_u32(p + 16);
        float *in = rd_floats(p + 20, E), *deq = rd_floats(p + 20 + 4 * E + B, E), *got = xmalloc(E * sizeof *got);
        uint8_t *mine = xmalloc(B);
        tt->from_float_ref(in, mine, E);
        tt->to_float(mine, got, E);
        const int64_t bat = (flags & 1) ? -1 : first_byte_diff(mine, p + 20 + 4 * E, B);
        const int64_t fat = first_float_diff(got, deq, E);
        if (bat < 0 && fat < 0) t.pass++;
        else if (bat >= 0) note_fail(&t, tt->name, "quant", (int)r, "byte", mine[bat], p[20 + 4 * E + bat], bat);
        else note_fail(&t, tt->name, "quant", (int)r, "round-trip element", got[fat], deq[fat], fat);
        free(in), free(deq), free(got), free(mine);
    }
    return t;
}

/* ---- quant_imatrix.bin ---- */

typedef struct {
    float *in, *imatrix;      /* (NROWS, ROW), (ROW) */
    uint8_t *want_im, *want_no; /* (NROWS, B) each */
    float *deq_im;            /* (NROWS, ROW) */
    size_t B;
} imatrix_set;

static bool load_imatrix_set(const golden *g, imatrix_set *s) {
    size_t off = 16;
    memset(s, 0, sizeof *s);
    if (g->count != NROWS || g->size < 32) return false;
    s->B = rd_u32(g->data + 16 + 12);
    s->in = xmalloc(NROWS * ROW * sizeof(float));
    s->imatrix = xmalloc(ROW * sizeof(float));
    s->deq_im = xmalloc(NROWS * ROW * sizeof(float));
    s->want_im = xmalloc(NROWS * s->B);
    s->want_no = xmalloc(NROWS * s->B);
    for (int r = 0; r < NROWS; r++) {
        const uint8_t *p = next_record(g, &off, 20 + 12 * ROW + 2 * s->B);
        if (!p || rd_u32(p + 8) != ROW || rd_u32(p + 12) != s->B) return false;
        memcpy(s->in + r * ROW, p + 20, ROW * sizeof(float));
        if (r == 0) memcpy(s->imatrix, p + 20 + 4 * ROW, ROW * sizeof(float));
        else if (memcmp(s->imatrix, p + 20 + 4 * ROW, ROW * sizeof(float)) != 0) return false;
        memcpy(s->want_im + r * s->B, p + 20 + 8 * ROW, s->B);
        memcpy(s->want_no + r * s->B, p + 20 + 8 * ROW + s->B, s->B);
        memcpy(s->deq_im + r * ROW, p + 20 + 8 * ROW + 2 * s->B, ROW * sizeof(float));
    }
    return true;
}

static void free_imatrix_set(imatrix_set *s) {
    free(s->in), free(s->imatrix), free(s->deq_im), free(s->want_im), free(s->want_no);
}

/* One quantize_ref call over all rows; *t gets one entry per row. */
static void check_chunk(const lb_type_traits *tt, const imatrix_set *s, bool with_imatrix, tally *t) {
    uint8_t *mine = xmalloc(NROWS * s->B);
    float *got = xmalloc(ROW * sizeof *got);
    memset(mine, 0xA5, NROWS * s->B);
    tt->quantize_ref(s->in, mine, NROWS, ROW, with_imatrix ? s->imatrix : NULL);
    const uint8_t *want = with_imatrix ? s->want_im : s->want_no;
    for (int r = 0; r < NROWS; r++) {
        t->total++;
        const int64_t bat = first_byte_diff(mine + r * s->B, want + r * s->B, s->B);
        int64_t fat = -1;
        if (with_imatrix) {
            tt->to_float(mine + r * s->B, got, ROW);
            fat = first_float_diff(got, s->deq_im + r * ROW, ROW);
        }
        const char *what = with_imatrix ? "imatrix" : "noimatrix";
        if (bat < 0 && fat < 0) t->pass++;
        else if (bat >= 0) note_fail(t, tt->name, what, r, "byte", mine[r * s->B + bat], want[r * s->B + bat], bat);
        else note_fail(t, tt->name, what, r, "deq element", got[fat], s->deq_im[r * ROW + fat], fat);
    }
    free(mine), free(got);
}

/* ---- dot.bin ---- */

typedef struct {
    tally dot, act;
    double worst; /* max |mine - result| / tolerance */
} dot_result;

static void check_dot_record(const lb_type_traits *tt, const lb_type_traits *at, const uint8_t *p, uint32_t B,
                             uint32_t A, int r, dot_result *d) {
    uint8_t *w = xmalloc(B), *a = xmalloc(A), *aq = xmalloc(A);
    memcpy(w, p + 32, B);
    memcpy(a, p + 32 + B + 4 * ROW, A);
    float *act = rd_floats(p + 32 + B, ROW);
    const float result = rd_f32(p + 32 + B + 4 * ROW + A);
    const double abs_sum = rd_f64(p + 44 + B + 4 * ROW + A);
    float mine = NAN;
    tt->vec_dot_ref(ROW, &mine, w, a);
    const double tol = DOT_REL * fmax(abs_sum, fabs((double)result)) + DOT_ABS, err = fabs((double)mine - result);
    d->dot.total++;
    if (err <= tol) d->dot.pass++;
    else note_fail(&d->dot, tt->name, "dot", r, "tolerance", mine, result, 0);
    if (err / tol > d->worst || isnan(err)) d->worst = isnan(err) ? INFINITY : err / tol;
    /* flags bit0: the stored activation bytes equal the reference quantizer's output */
    if (rd_u32(p + 28) & 1) {
        at->from_float_ref(act, aq, ROW);
        const int64_t bat = first_byte_diff(aq, a, A);
        d->act.total++;
        if (bat < 0) d->act.pass++;
        else note_fail(&d->act, at->name, "activation quant", r, "byte", aq[bat], a[bat], bat);
    }
    free(w), free(a), free(aq), free(act);
}

static dot_result check_dot(const lb_type_traits *tt, const golden *g) {
    dot_result d = {{0, 0}, {0, 0}, 0};
    const lb_type_traits *at = lb_type_traits_get(tt->vec_dot_type);
    size_t off = 16;
    for (uint32_t r = 0; r < g->count; r++) {
        const uint8_t *p = g->data + off;
        if (g->size - off < 32) break;
        const uint32_t E = rd_u32(p + 8), B = rd_u32(p + 12), A = rd_u32(p + 20);
        if (!(p = next_record(g, &off, 52 + (size_t)B + 4 * (size_t)E + A))) break;
        if (E != ROW || (int)rd_u32(p + 16) != at->gguf_id || A != lb_type_row_size(tt->vec_dot_type, ROW)) {
            d.dot.total++;
            note_fail(&d.dot, tt->name, "dot", (int)r, "bad E / activation type / A", E, rd_u32(p + 16), A);
            continue;
        }
        check_dot_record(tt, at, p, B, A, (int)r, &d);
    }
    return d;
}

/* ---- layout: table row vs block struct vs types.json ---- */

static size_t struct_size(lb_type t) {
    switch (t) {
    case LB_TYPE_F32: return sizeof(float);
    case LB_TYPE_F16: case LB_TYPE_BF16: return sizeof(uint16_t);
    case LB_TYPE_Q4_0: return sizeof(block_q4_0);
    case LB_TYPE_Q4_1: return sizeof(block_q4_1);
    case LB_TYPE_Q5_0: return sizeof(block_q5_0);
    case LB_TYPE_Q5_1: return sizeof(block_q5_1);
    case LB_TYPE_Q8_0: return sizeof(block_q8_0);
    case LB_TYPE_Q8_1: return sizeof(block_q8_1);
    case LB_TYPE_Q2_K: return sizeof(block_q2_K);
    case LB_TYPE_Q3_K: return sizeof(block_q3_K);
    case LB_TYPE_Q4_K: return sizeof(block_q4_K);
    case LB_TYPE_Q5_K: return sizeof(block_q5_K);
    case LB_TYPE_Q6_K: return sizeof(block_q6_K);
    case LB_TYPE_Q8_K: return sizeof(block_q8_K);
    case LB_TYPE_IQ4_NL: return sizeof(block_iq4_nl);
    case LB_TYPE_IQ4_XS: return sizeof(block_iq4_xs);
    default: return 0;
    }
}

static const json_value *types_json_entry(const json_value *types, const char *name) {
    for (size_t i = 0; i < json_len(types); i++) {
        const char *n = json_str(json_get(json_at(types, i), "name"), NULL);
        if (n && strcmp(n, name) == 0) return json_at(types, i);
    }
    return NULL;
}

static bool check_layout(lb_type t, const lb_type_traits *tt, const json_value *e) {
    int64_t bb = -1, be = -1, id = -1, vid = -1;
    json_int(json_get(e, "block_bytes"), &bb);
    json_int(json_get(e, "block_elements"), &be);
    json_int(json_get(e, "ggml_type_id"), &id);
    json_int(json_get(e, "vec_dot_type_id"), &vid);
    const lb_type_traits *vt = lb_type_traits_get(tt->vec_dot_type);
    bool ok = tt->block_bytes == struct_size(t) && (int64_t)tt->block_bytes == bb && tt->block_elems == be &&
              tt->gguf_id == id && vt && vt->gguf_id == vid && tt->to_float && tt->from_float_ref &&
              tt->quantize_ref && tt->vec_dot_ref;
    if (!ok)
        fprintf(stderr, "  %s layout: table %zu B / %lld el / id %d / dot id %d; struct %zu B; ggml %lld B / %lld el / id %lld / dot id %lld\n",
                tt->name, tt->block_bytes, (long long)tt->block_elems, tt->gguf_id, vt ? vt->gguf_id : -1, struct_size(t),
                (long long)bb, (long long)be, (long long)id, (long long)vid);
    return ok;
}

/* ---- one type ---- */

static bool all(tally t) { return t.total > 0 && t.pass == t.total; }

static void test_type(lb_type t, const json_value *types) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const json_value *e = types_json_entry(types, tt->name);
    if (!e) {
        printf("%-7s no goldens (%s)\n", tt->name, tt->weight_type ? "not a ggml golden type" : "activation type, tested through the dots");
        return;
    }
    const bool layout = check_layout(t, tt, e);
    CHECK(layout, "%s: table row / struct / types.json disagree", tt->name);
    if (!layout) return; /* sizes unknown: the data checks would read out of bounds */
    golden gd, gq, gi, gt;
    REQUIRE(golden_load(tt->name, "dequant", &gd) && golden_load(tt->name, "quant", &gq) &&
                golden_load(tt->name, "quant_imatrix", &gi) && golden_load(tt->name, "dot", &gt),
            "%s: golden files missing under " GOLDEN_DIR, tt->name);
    const tally deq = check_dequant(tt, &gd), q = check_quant(tt, &gq);
    tally im = {0, 0}, no = {0, 0};
    imatrix_set s;
    if (load_imatrix_set(&gi, &s)) {
        check_chunk(tt, &s, true, &im);
        check_chunk(tt, &s, false, &no);
    } else {
        im.total = no.total = 1;
        fprintf(stderr, "  %s: malformed quant_imatrix.bin\n", tt->name);
    }
    free_imatrix_set(&s);
    const dot_result d = check_dot(tt, &gt);
    CHECK(all(deq), "%s dequant %d/%d", tt->name, deq.pass, deq.total);
    CHECK(all(q), "%s quant %d/%d", tt->name, q.pass, q.total);
    CHECK(all(im), "%s imatrix %d/%d", tt->name, im.pass, im.total);
    CHECK(all(no), "%s noimatrix %d/%d", tt->name, no.pass, no.total);
    CHECK(all(d.dot), "%s dot %d/%d", tt->name, d.dot.pass, d.dot.total);
    CHECK(all(d.act), "%s activation quant (%s) %d/%d", tt->name, lb_type_name(tt->vec_dot_type), d.act.pass, d.act.total);
    const bool ok = all(deq) && all(q) && all(im) && all(no) && all(d.dot) && all(d.act);
    printf("%-7s %s  layout ok  dequant %2d/%-2d quant %2d/%-2d imatrix %2d/%-2d noimatrix %2d/%-2d dot %2d/%-2d "
           "(worst err/tol %.3g)  act(%s) %2d/%-2d\n",
           tt->name, ok ? "PASS" : "FAIL", deq.pass, deq.total, q.pass, q.total, im.pass, im.total, no.pass, no.total,
           d.dot.pass, d.dot.total, d.worst, lb_type_name(tt->vec_dot_type), d.act.pass, d.act.total);
    golden_free(&gd), golden_free(&gq), golden_free(&gi), golden_free(&gt);
}

int main(void) {
    char *text = NULL;
    size_t len = 0;
    lb_error err = {{0}};
    json_doc *doc = NULL;
    REQUIRE(lb_read_file(GOLDEN_DIR "/types.json", 1 << 20, &text, &len, &err) == LB_OK, "%s", err.msg);
    REQUIRE(json_parse(text, len, &doc, &err) == LB_OK, "types.json: %s", err.msg);
    const json_value *types = json_get(json_root(doc), "types");
    REQUIRE(json_len(types) == 14, "types.json: expected 14 types");
    for (int t = 0; t < LB_TYPE_COUNT; t++) test_type((lb_type)t, types);
    json_free(doc);
    free(text);
    TEST_DONE();
}
