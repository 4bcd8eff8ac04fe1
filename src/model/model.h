/*
 * model.h - the in-memory model every runner and measurer shares: hyperparameters plus views of the
 * weights in their stored type (memory-mapped, used in place), and small f32 vectors (norms, biases)
 * converted once at load.
 */
#ifndef LB_MODEL_H
#define LB_MODEL_H

#include "../core/core.h"
#include "../io/safetensors.h"
#include "../quant/quant.h"

typedef struct lb_layer {
    float *attn_norm, *ffn_norm; /* (n_embd) */
    float *q_norm, *k_norm;      /* (head_dim), Qwen3 only, else NULL */
    lb_weight wq, wk, wv, wo;    /* (n_head*hd, n_embd), (n_kv*hd, n_embd) x2, (n_embd, n_head*hd) */
    float *bq, *bk, *bv, *bo;    /* biases or NULL */
    lb_weight w_gate, w_up, w_down; /* (n_ff, n_embd) x2, (n_embd, n_ff) */
    float *b_gate, *b_up, *b_down;
} lb_layer;

typedef struct lb_model_tensor_rec {
    const char *name;
    lb_type type;
    int n_dims;
    int64_t shape[4];
    int64_t n_elements;
    size_t n_bytes;
} lb_model_tensor_rec;

struct lb_model {
    lb_model_info info;
    char *path;          /* what it was loaded from */
    st_file *st;         /* the source: safetensors ... */
    struct gguf_file *gguf; /* ... or a GGUF file */
    lb_weight tok_embd;  /* (n_vocab, n_embd) */
    lb_weight output;    /* (n_vocab, n_embd): tok_embd when tied */
    float *out_norm;     /* (n_embd) */
    lb_layer *layers;    /* n_layer */
    bool rope_interleaved; /* q/k rows in llama.cpp's permuted layout (GGUF arch "llama") */
    int64_t n_tensors;
    lb_model_tensor_rec *tensors;
    void **owned;        /* f32 vectors allocated at load */
    int64_t n_owned, cap_owned;
};

/* lb_model_load_with() choosing which weights are checked to be finite at load: the matrices (one pass over
 * them) and the small vectors (norms, biases). The quantizer checks the matrices itself as it converts them. */
lb_status lb_model_load_checked(const char *path, bool check_matrices, bool check_vectors, lb_model **out, lb_error *err);

/*
 * Run decoder layer il with the weights `l` (the model's own or replacements, e.g. quantized ones) on
 * x (T, n_embd): one sequence from position 0, T at most the context's batch; x is replaced by the
 * layer's output. The context's observer sees the matrix inputs. For calibration.
 */
lb_status lb_context_run_layer(lb_context *c, const lb_layer *l, int64_t il, float *x, int64_t T, lb_error *err);
/* The same computation stopped right after the observer has seen point `stop` (a point inside the layer):
 * what statistics of that point need, without the rest of the layer; x is left as it is. */
lb_status lb_context_run_layer_until(lb_context *c, const lb_layer *l, int64_t il, const float *x, int64_t T,
                                     lb_obs_point stop, lb_error *err);
/*
 * Part of the same computation, for calibration runs that resume where an earlier one stopped: the layer
 * from point `from` up to point `stop` (from <= stop <= LB_OBS_FFN_DOWN_IN) or to its end (stop -1), the
 * observer seeing every point from `from` on. x (T, n_embd) in: the layer's input for from = LB_OBS_ATTN_IN
 * or LB_OBS_ATTN_OUT_IN, the residual stream after the attention block (input + attn_output's product)
 * for LB_OBS_FFN_IN; out: the residual stream where the run stopped (the layer's output for stop -1; the
 * stream after the attention block when the run got past it). att (T, n_head * head_dim): the attention
 * output the run starts from for from = LB_OBS_ATTN_OUT_IN; otherwise NULL or, for a run from the start
 * past the attention, where that output is copied. Bit for bit the values of lb_context_run_layer(_until).
 */
lb_status lb_context_run_layer_part(lb_context *c, const lb_layer *l, int64_t il, float *x, float *att, int64_t T,
                                    lb_obs_point from, int stop, lb_error *err);

/*
 * Scoring on the device, for eval: run tokens[0..n) from an empty cache (n at most one batch) keeping the
 * logits on the GPU, then per position i < n-1 the log-sum-exp, NLL of tokens[i+1], argmax and, with a
 * base context on the same device that last scored the same tokens, KL(base || c) (arrays of n-1). Only
 * for contexts on a CUDA device (LB_ERR_UNSUPPORTED otherwise). win > 0: tokens are n / win independent
 * windows of win tokens run in one batch (lb_context_new_scoring's n_seq at least n / win), each scored on
 * its positions 0 .. win-2: (n / win) (win - 1) entries, window after window.
 */
lb_status lb_context_score(lb_context *c, const lb_context *base, const int32_t *tokens, int64_t n, int64_t win, double *lse,
                           double *nll, int64_t *amax, double *kl, lb_error *err);
/* lb_context_new for scoring: on a CUDA device, batches of n_seq whole contexts (n_seq windows of p->n_ctx for
 * lb_context_score, a KV cache of n_seq sequences, every position's logits: n_seq n_ctx n_vocab floats); on the
 * CPU the same as lb_context_new. */
lb_status lb_context_new_scoring(const lb_model *m, const lb_context_params *p, int64_t n_seq, lb_context **out, lb_error *err);
/* 1 when the context runs on a CUDA device. */
int lb_context_on_gpu(const lb_context *c);
/* The context's thread pool (NULL on a CUDA device), for work beside the forward pass such as scoring. */
lb_pool *lb_context_pool(lb_context *c);
/* Rotary inverse frequencies inv[0 .. head_dim/2) with the model's frequency scaling (both executors). */
void lb_rope_inv_freq(const lb_model_info *h, float *inv);

/* The layers of m over R pipeline stages in order (a CUDA context on several GPUs): stage r runs layers
 * first[r] .. first[r+1]-1 (first has R + 1 entries, first[0] = 0, first[R] = n_layer), each stage at least
 * one layer, the boundaries nearest r / R of the weight bytes, counting the token embedding in stage 0 and
 * the head in stage R-1 (a tied head is a second copy there when R > 1). LB_ERR_ARG when the model has
 * fewer layers than stages. */
lb_status lb_model_pipeline_split(const lb_model *m, int R, int64_t *first, lb_error *err);

#endif
