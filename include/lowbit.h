/*
 * lowbit.h - the public API of liblowbit.
 *
 * liblowbit loads Hugging Face checkpoints (config.json, *.safetensors, tokenizer.json), tokenizes text,
 * runs the model on the CPU and measures it (perplexity, KL divergence, top-1 agreement).
 *
 * Conventions
 * - Every fallible call returns lb_status (LB_OK == 0, failures negative) and, when `err` is not NULL,
 *   writes a one-line human-readable reason into it ("model.safetensors: header length 9999999 exceeds
 *   file size 1234"). Results come back through out-parameters, which are untouched on failure.
 * - The library never prints and never exits. Progress is reported through callbacks.
 * - Ownership: an object returned through `**out` belongs to the caller and is released with its
 *   lb_<thing>_free(); every lb_<thing>_free(NULL) is a no-op. Buffers returned as `**out` arrays are
 *   released with lb_free().
 * - Thread safety: a loaded lb_model and lb_tokenizer are immutable and may be shared by any number of
 *   threads. An lb_context (KV cache + scratch) is used by one thread at a time.
 * - Element counts are int64_t, byte sizes size_t. Shapes are given in HF order: (rows, cols) with cols
 *   the contiguous dimension.
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------------------------------
 * Status and errors
 * ---------------------------------------------------------------------------------------------- */

typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_IO = -1,          /* a file could not be opened, read, mapped or written */
    LB_ERR_FORMAT = -2,      /* a file is malformed, truncated or inconsistent */
    LB_ERR_UNSUPPORTED = -3, /* valid input this version cannot handle (architecture, dtype, option) */
    LB_ERR_NOMEM = -4,       /* an allocation failed */
    LB_ERR_ARG = -5,         /* the caller passed an invalid argument */
    LB_ERR_CANCELLED = -6,   /* a progress callback asked to stop */
    LB_ERR_DEVICE = -7,      /* a compute device is missing, out of memory or failed (no driver, bad index) */
} lb_status;

#define LB_ERROR_MAX 512

/* A one-line message describing the last failure of the call it was passed to. */
typedef struct lb_error {
    char msg[LB_ERROR_MAX];
} lb_error;

/* Static string naming a status ("format error"). Never NULL. */
const char *lb_status_str(lb_status s);

/* Release a buffer the library returned through an out-parameter. NULL is a no-op. */
void lb_free(void *p);

/* ------------------------------------------------------------------------------------------------
 * Output files
 * ---------------------------------------------------------------------------------------------- */

/*
 * Check an output path before any work: fails (LB_ERR_ARG, or LB_ERR_IO for a missing or unwritable
 * directory) when `output` exists and is not a regular file (a directory, a symbolic link, a device, a
 * FIFO: lowbit never replaces one), when its directory does not exist, when it is the same file (device
 * and inode) as one of the n_inputs `inputs` (files, or checkpoint directories and the files in them), or
 * when it lies inside an input directory. NULL inputs are skipped. lb_quantize_model() and
 * lb_imatrix_compute() check the inputs they read themselves; callers add any others (calibration text).
 * Every output is written to `<output>.lowbit-tmp`, locked with flock() while it is written (a second
 * process writing the same output fails at once), and renamed over `output` when complete.
 */
lb_status lb_output_check(const char *output, const char *const *inputs, int n_inputs, lb_error *err);

/*
 * Delete the temporary files of every output this process is writing. Async-signal-safe: meant for the
 * caller's SIGINT/SIGTERM/SIGHUP handler, which then ends the process (the library installs no handlers).
 * After it the writes in progress fail or produce nothing.
 */
void lb_remove_temporaries(void);

/* ------------------------------------------------------------------------------------------------
 * Element types
 * ---------------------------------------------------------------------------------------------- */

/* Tensor element types: plain floats and the ggml block formats (docs/formats.md section 2). */
typedef enum lb_type {
    LB_TYPE_F32 = 0,
    LB_TYPE_F16 = 1,
    LB_TYPE_BF16 = 2,
    LB_TYPE_Q4_0 = 3,
    LB_TYPE_Q4_1 = 4,
    LB_TYPE_Q5_0 = 5,
    LB_TYPE_Q5_1 = 6,
    LB_TYPE_Q8_0 = 7,
    LB_TYPE_Q8_1 = 8,   /* activations only (dot products of q4_1 / q5_1) */
    LB_TYPE_Q2_K = 9,
    LB_TYPE_Q3_K = 10,
    LB_TYPE_Q4_K = 11,
    LB_TYPE_Q5_K = 12,
    LB_TYPE_Q6_K = 13,
    LB_TYPE_Q8_K = 14,  /* activations only (dot products of k-quants and iq4_xs) */
    LB_TYPE_IQ4_NL = 15,
    LB_TYPE_IQ4_XS = 16,
    LB_TYPE_COUNT
} lb_type;

/* Lower-case name as llama.cpp spells it ("f32", "q4_0", "q4_k", "iq4_xs"); "?" for an unknown value. */
const char *lb_type_name(lb_type t);
/* The type called name (case-insensitive), or -1. */
int lb_type_from_name(const char *name);
/* Elements per block (1 for float types) and bytes per block; 0 for an unknown type. */
int64_t lb_type_block_elems(lb_type t);
size_t lb_type_block_bytes(lb_type t);
/* ggml / GGUF type id; -1 for an unknown type. */
int lb_type_gguf_id(lb_type t);
/* The type with that GGUF id, or -1. */
int lb_type_from_gguf_id(int id);

/* Bytes taken by n elements of type t (n must be a whole number of blocks); 0 for an unknown type. */
size_t lb_type_row_size(lb_type t, int64_t n);

/* The CPU kernels matrix products use, chosen once from the CPU's features: "avx512vnni" (AVX-512 VNNI on
 * 256-bit vectors + AVX2/FMA/F16C), "avx2" (AVX2 + FMA + F16C) or "ref" (scalar; forced by LB_FORCE_REF=1).
 * All three give bit-identical results. Thread-safe. */
const char *lb_cpu_kernels_name(void);

/* ------------------------------------------------------------------------------------------------
 * Models
 * ---------------------------------------------------------------------------------------------- */

typedef enum lb_rope_scaling {
    LB_ROPE_NONE = 0,
    LB_ROPE_LINEAR = 1,
    LB_ROPE_LLAMA3 = 2,
} lb_rope_scaling;

/* Hyperparameters of a loaded decoder-only transformer. */
typedef struct lb_model_info {
    char architecture[64]; /* as in config.json: "LlamaForCausalLM", "Qwen2ForCausalLM", ... */
    char model_type[32];   /* "llama", "mistral", "qwen2", "qwen3", "phi3" */
    int64_t n_vocab;
    int64_t n_embd;        /* hidden size */
    int64_t n_layer;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;
    int64_t n_ff;          /* MLP intermediate size */
    int64_t n_ctx_train;   /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    lb_rope_scaling rope_scaling;
    float rope_factor;                 /* linear and llama3 */
    float rope_low_freq_factor;        /* llama3 */
    float rope_high_freq_factor;       /* llama3 */
    int64_t rope_orig_ctx;             /* llama3: original_max_position_embeddings */
    int tied_embeddings;   /* lm_head shares the token embedding */
    int attn_bias;         /* q/k/v projections carry biases (Qwen2) */
    int attn_out_bias;     /* o_proj carries a bias */
    int mlp_bias;          /* gate/up/down carry biases */
    int qk_norm;           /* per-head RMSNorm on q and k (Qwen3) */
    int32_t bos_id;        /* -1 when absent */
    int32_t eos_id;        /* -1 when absent */
    int64_t n_params;      /* elements over all tensors */
    size_t n_bytes;        /* bytes of tensor data */
} lb_model_info;

/* Description of one tensor of a model. */
typedef struct lb_tensor_info {
    const char *name;  /* checkpoint name, valid while the model lives */
    lb_type type;
    int n_dims;
    int64_t shape[4];  /* HF order: shape[n_dims-1] is contiguous */
    int64_t n_elements;
    size_t n_bytes;
} lb_tensor_info;

typedef struct lb_model lb_model;

/*
 * Load a model. `path` is a Hugging Face directory holding config.json and either model.safetensors or
 * model.safetensors.index.json with its shards. Tensor data is memory-mapped and used in place.
 * The tokenizer is not loaded here; see lb_tokenizer_load().
 */
lb_status lb_model_load(const char *path, lb_model **out, lb_error *err);

/* Options of lb_model_load_with(). */
typedef struct lb_model_params {
    int allow_nonfinite; /* accept NaN/Inf weights; by default loading fails naming the first such tensor and element */
} lb_model_params;
lb_model_params lb_model_default_params(void);

/*
 * lb_model_load() with options. Every weight is checked to be finite at load (one pass over the data; the
 * error names the tensor and the first bad element) unless p->allow_nonfinite. lb_model_load() is this with
 * the defaults. Tensors the architecture does not use (a layer count or a bias flag that does not describe
 * the checkpoint) are an error.
 */
lb_status lb_model_load_with(const char *path, const lb_model_params *p, lb_model **out, lb_error *err);
void lb_model_free(lb_model *m);

const lb_model_info *lb_model_get_info(const lb_model *m);
int64_t lb_model_n_tensors(const lb_model *m);
/* Fills `out` for tensor i (0 <= i < n_tensors), in checkpoint order. Returns LB_ERR_ARG if out of range. */
lb_status lb_model_tensor(const lb_model *m, int64_t i, lb_tensor_info *out);

/* ------------------------------------------------------------------------------------------------
 * Tokenizer
 * ---------------------------------------------------------------------------------------------- */

typedef struct lb_tokenizer lb_tokenizer;

/*
 * Load a Hugging Face tokenizer.json: byte-level BPE or SentencePiece-style BPE with byte fallback,
 * with added/special tokens, its normalizers (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend)
 * and pre-tokenizers (ByteLevel, Split, Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace).
 * `path` may be the file, the directory holding it, or a GGUF file: its tokenizer.ggml.* metadata read
 * as llama.cpp reads it (model "gpt2" with any tokenizer.ggml.pre value llama.cpp knows, or "llama",
 * SentencePiece); an unknown pre value is LB_ERR_UNSUPPORTED naming it.
 */
lb_status lb_tokenizer_load(const char *path, lb_tokenizer **out, lb_error *err);
void lb_tokenizer_free(lb_tokenizer *t);

/*
 * Tokenize `len` bytes of UTF-8 text. Added tokens written in the text are matched as such. No BOS/EOS
 * is added. On success *ids (release with lb_free) holds *n_ids ids. Invalid UTF-8 is an error.
 */
lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int32_t **ids,
                              int64_t *n_ids, lb_error *err);

/*
 * Decode ids to text as Hugging Face's decode(skip_special_tokens=False) does. On success *text (release
 * with lb_free) is NUL-terminated and *len excludes the NUL. Bytes that do not form valid UTF-8 are
 * replaced with U+FFFD.
 */
lb_status lb_tokenizer_decode(const lb_tokenizer *t, const int32_t *ids, int64_t n_ids, char **text,
                              size_t *len, lb_error *err);

/*
 * Append the raw bytes of one token to buf, for streaming output. Byte-level tokens may hold partial
 * UTF-8 sequences. Returns the number of bytes the token has (which may exceed cap; then only `cap`
 * bytes are written), or -1 for an unknown id.
 */
int64_t lb_tokenizer_token_bytes(const lb_tokenizer *t, int32_t id, char *buf, size_t cap);

int64_t lb_tokenizer_n_vocab(const lb_tokenizer *t);
/* 1 when tokenizer.json's post-processor puts BOS in front of a sequence (Llama-2 style), else 0. */
int lb_tokenizer_add_bos(const lb_tokenizer *t);
/* BOS id from the post-processor, -1 when the file does not say. */
int32_t lb_tokenizer_bos_id(const lb_tokenizer *t);
/* Vocabulary string of a token as written in tokenizer.json; NULL for an unknown id. */
const char *lb_tokenizer_token_text(const lb_tokenizer *t, int32_t id);

/* ------------------------------------------------------------------------------------------------
 * Chat templates
 * ---------------------------------------------------------------------------------------------- */

/*
 * A model's chat template: the Jinja program (tokenizer.chat_template) that turns a conversation into
 * the prompt text the model was trained on. lowbit renders the Jinja subset real templates use (ChatML,
 * Llama-3, Mistral, Qwen, Phi, Gemma...) exactly as Hugging Face does (jinja2 with trim_blocks and
 * lstrip_blocks): {{ }}, {% %}, {# #}, whitespace control, if/elif/else, for (loop.*, `if` filters,
 * else, break/continue), set (also namespace attributes and set blocks), macro, filter blocks, the
 * operators, tests and filters of jinja2 that templates use, str and dict methods, raise_exception,
 * strftime_now, namespace and range. Anything else ({% include %}, {% call %}, str.format specs, ...) is an
 * LB_ERR_UNSUPPORTED error naming the line and the construct.
 * A parsed template is immutable and may be rendered from several threads at once.
 */
typedef struct lb_chat_template lb_chat_template;

typedef struct lb_chat_message {
    const char *role;    /* "system", "user", "assistant", ... (UTF-8, NUL-terminated) */
    const char *content;
} lb_chat_message;

/* Parse `len` bytes of template source. Syntax errors: LB_ERR_FORMAT with the line; unsupported
 * constructs: LB_ERR_UNSUPPORTED. */
lb_status lb_chat_template_parse(const char *source, size_t len, lb_chat_template **out, lb_error *err);
/*
 * The template of a model: a GGUF file's tokenizer.chat_template, or in a Hugging Face directory
 * tokenizer_config.json's chat_template (a string, or the list of named templates, of which the one named
 * "default" is used) or else chat_template.jinja. The BOS and EOS token texts the files name are kept as
 * the variables bos_token / eos_token. A model without a template is LB_ERR_UNSUPPORTED.
 */
lb_status lb_chat_template_load(const char *model_path, lb_chat_template **out, lb_error *err);
void lb_chat_template_free(lb_chat_template *t);
/* The template's source text (NUL-terminated, valid while t lives); *len gets its length if not NULL. */
const char *lb_chat_template_source(const lb_chat_template *t, size_t *len);

typedef struct lb_chat_params {
    int add_generation_prompt; /* end with the header of the assistant's turn */
    const char *bos_token;     /* NULL: the model's (when lb_chat_template_load found one) */
    const char *eos_token;     /* NULL: the model's */
} lb_chat_params;

/*
 * Render a conversation. The template sees messages (a list of {role, content}), add_generation_prompt,
 * bos_token, eos_token, and tools = documents = none, as transformers' apply_chat_template passes them.
 * On success *text (release with lb_free) is NUL-terminated and *len excludes the NUL. A template's
 * raise_exception() is LB_ERR_ARG with its message.
 */
lb_status lb_chat_template_render(const lb_chat_template *t, const lb_chat_message *messages, int64_t n_messages,
                                  const lb_chat_params *params, char **text, size_t *len, lb_error *err);
/* The same with the variables given as a JSON object ({"messages": [...], "add_generation_prompt": true,
 * "tools": [...], ...}); bos_token / eos_token default to the model's. */
lb_status lb_chat_template_render_json(const lb_chat_template *t, const char *json, size_t json_len, char **text,
                                       size_t *len, lb_error *err);

/* ------------------------------------------------------------------------------------------------
 * Devices
 * ---------------------------------------------------------------------------------------------- */

typedef enum lb_device_kind {
    LB_DEVICE_CPU = 0,  /* the default: every zero-initialized lb_device is the CPU */
    LB_DEVICE_CUDA = 1, /* an NVIDIA GPU, through the CUDA backend (builds with LOWBIT_CUDA) */
} lb_device_kind;

/* Where a model runs. */
typedef struct lb_device {
    lb_device_kind kind;
    int index; /* CUDA device ordinal */
} lb_device;

/* Parse "cpu", "cuda" (device 0) or "cuda:N". Only the spelling is checked here: whether the device
 * exists is known when a context is created on it (LB_ERR_DEVICE, with the reason). */
lb_status lb_device_parse(const char *s, lb_device *out, lb_error *err);

#define LB_MAX_DEVICES 16
/* lb_device_parse's spellings and, for work spread over several GPUs (calibration, a pipeline of layers), a
 * set "cuda:N,M,..." (distinct, at most LB_MAX_DEVICES) or "cuda:all": *out is the one device or the set's
 * first; *n_devices 0 for one device, the set's size with devices[] filled, or -1 for every visible GPU. */
lb_status lb_device_set_parse(const char *s, lb_device *out, int *n_devices, int devices[LB_MAX_DEVICES], lb_error *err);
/* 1 when this library was built with the CUDA backend, else 0. Says nothing about a GPU being present. */
int lb_cuda_compiled(void);

/* ------------------------------------------------------------------------------------------------
 * Running a model
 * ---------------------------------------------------------------------------------------------- */

typedef struct lb_context lb_context;

typedef struct lb_context_params {
    int64_t n_ctx;   /* KV cache length in tokens; 0 = the model's n_ctx_train, which is also the most allowed */
    int n_threads;   /* worker threads; 0 = all online CPUs */
    lb_device device; /* where the forward pass runs (zero = CPU). A CUDA context uploads the model's weights
                         to the GPU once, in their stored types, when it is created; the lb_model stays as it is */
    int n_devices;    /* with a CUDA device: 0 or 1 for it alone; more: the layers split over devices[0..n_devices)
                         in that order (a pipeline: each GPU holds its layers' weights and KV cache, and the
                         residual stream passes from one to the next), for a model larger than one GPU's memory;
                         -1: every visible GPU. The same results as on one GPU, bit for bit */
    int devices[LB_MAX_DEVICES];
    int kv_f16;       /* on the CPU: keep the KV cache in F16 (half its memory and half of what attention reads of
                         it; keys and values rounded to F16 as llama.cpp's default cache rounds them); 0 (default):
                         F32, the reference arithmetic. A CUDA context's cache is F16 whatever this says (F32 when
                         exact) */
    int exact;        /* with a CUDA device: compute as the CPU does, every float operation in the CPU's order (an
                         F32 KV cache; block types on the CPU's 8-bit activations): the CPU's logits bit for bit, at
                         the cost of speed (several times slower than the default) and twice the cache memory; for
                         checking a GPU against the CPU. 0 (default): an F16 cache, prompts on tensor cores (block
                         types then differ from the CPU by one independent 8-bit rounding of the activations:
                         KL(cpu || gpu) 4e-4 to 3e-3 per type on tiny; docs/BENCHMARKS.md). Ignored on the CPU */
} lb_context_params;

lb_context_params lb_context_default_params(void);

/* A KV cache and scratch space for one sequence. The model must outlive the context. On a CUDA device
 * the cache (F16; F32 when exact) and the activations live on the GPU; LB_ERR_DEVICE when there is no driver or
 * device, the index does not exist or the GPU's memory is too small. Results on one GPU are identical run to run;
 * they differ from the CPU's by rounding (docs/BENCHMARKS.md gives the measured perplexity and KL gap; an exact
 * context's are the CPU's bits). */
lb_status lb_context_new(const lb_model *m, const lb_context_params *p, lb_context **out, lb_error *err);
void lb_context_free(lb_context *c);

/* Forget the sequence: the next lb_context_eval() starts at position 0. */
void lb_context_reset(lb_context *c);
/* Number of tokens in the cache. */
int64_t lb_context_pos(const lb_context *c);

/*
 * Append n tokens to the sequence and run them as one batch. If `logits` is not NULL it receives
 * (n, n_vocab) logits when all_logits is non-zero, else (1, n_vocab) for the last token only.
 * Results are identical for any thread count.
 */
lb_status lb_context_eval(lb_context *c, const int32_t *tokens, int64_t n, float *logits, int all_logits,
                          lb_error *err);

/* Points of the forward pass where the input of a matrix product can be observed. */
typedef enum lb_obs_point {
    LB_OBS_ATTN_IN = 0,     /* input of attn_q / attn_k / attn_v (after the attention norm), n_embd wide */
    LB_OBS_ATTN_OUT_IN = 1, /* input of attn_output (the attention result), n_head * head_dim wide */
    LB_OBS_FFN_IN = 2,      /* input of ffn_gate / ffn_up (after the FFN norm), n_embd wide */
    LB_OBS_FFN_DOWN_IN = 3, /* input of ffn_down (silu(gate) * up), n_ff wide */
    LB_OBS_OUTPUT_IN = 4,   /* input of the output head (after the final norm), n_embd wide; layer = -1 */
} lb_obs_point;

/* Called with x of shape (n_tokens, dim), valid only during the call. */
typedef void (*lb_observer_fn)(void *user, int64_t layer, lb_obs_point point, const float *x, int64_t n_tokens,
                               int64_t dim);

/* Observe every matrix-product input of later lb_context_eval() calls (NULL stops). Calibration statistics
 * (importance matrices, GPTQ Hessians, AWQ scales) are gathered this way, by the code that runs the model. */
void lb_context_set_observer(lb_context *c, lb_observer_fn fn, void *user);

/* ------------------------------------------------------------------------------------------------
 * Sampling
 * ---------------------------------------------------------------------------------------------- */

typedef struct lb_sampler_params {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    uint64_t seed;
} lb_sampler_params;

/* Pick a token from logits (n_vocab floats, modified in place). `state` is the RNG state, seeded by the
 * caller from params->seed; deterministic for a given state. */
int32_t lb_sample(float *logits, int64_t n_vocab, const lb_sampler_params *p, uint64_t *state);

/* ------------------------------------------------------------------------------------------------
 * Evaluation
 * ---------------------------------------------------------------------------------------------- */

/* Progress callback: done of total units; return non-zero to cancel. */
typedef int (*lb_progress_fn)(int64_t done, int64_t total, void *user);

typedef struct lb_eval_params {
    int64_t ctx;       /* window length in tokens (default 512) */
    int64_t max_chunks; /* number of windows; 0 = all full windows in the text */
    int n_threads;     /* 0 = all online CPUs */
    lb_progress_fn progress;
    void *progress_user;
    lb_device device;  /* where the models run (zero = CPU); on a GPU the scoring runs there too */
    int allow_nonfinite; /* report NaN/Inf results; by default a window whose logits are not finite is an error */
    int n_devices;     /* with a CUDA device: the models' layers split over devices[0..n_devices) as in
                          lb_context_params (0 or 1: the device alone; -1: every visible GPU) */
    int devices[LB_MAX_DEVICES];
    int kv_f16;        /* on the CPU: the contexts' `kv_f16` (an F16 KV cache; lb_context_params) */
    int exact;         /* with a CUDA device: the contexts' `exact` (lb_context_params) */
} lb_eval_params;

lb_eval_params lb_eval_default_params(void);

typedef struct lb_eval_result {
    int64_t n_tokens;   /* tokens in the text */
    int64_t chunks;     /* windows evaluated */
    int64_t n_scored;   /* positions scored */
    double mean_nll;
    double ppl;
    /* Filled only when a base model is given: */
    int has_base;
    double base_mean_nll;
    double base_ppl;
    double kld_mean;    /* mean over positions of KL(base || model) in nats */
    double kld_p99;     /* 99th percentile of per-position KL */
    double kld_max;
    double top1;        /* fraction of positions where both argmaxes agree */
    double seconds;
    double load_seconds; /* of seconds: making the contexts (on a GPU: uploading every model's weights) before the
                            first window; the windows took seconds - load_seconds */
} lb_eval_result;

/*
 * Perplexity over `tokens` by the windowed protocol: non-overlapping windows of ctx tokens from the
 * start, the tail shorter than a window dropped, every position after the first of a window scored
 * (the NLL of token i+1 given tokens of the window up to i). No BOS is inserted.
 * With `base` non-NULL, the base model runs on the same windows and KL(base || model), its 99th
 * percentile and top-1 agreement are measured; both models must have the same vocabulary size.
 * Fails with LB_ERR_ARG when the text is shorter than one window.
 */
lb_status lb_eval_perplexity(const lb_model *m, const lb_model *base, const int32_t *tokens, int64_t n_tokens,
                             const lb_eval_params *p, lb_eval_result *out, lb_error *err);

/*
 * The same for n_models models on the same windows (out has n_models results): the base model runs once
 * per window and is shared, which is how one compares many quantizations of a model cheaply. All models
 * must have the same vocabulary size. `seconds` is the time of the whole run.
 */
lb_status lb_eval_perplexity_multi(const lb_model *const *models, int n_models, const lb_model *base, const int32_t *tokens,
                                   int64_t n_tokens, const lb_eval_params *p, lb_eval_result *out, lb_error *err);

/* ------------------------------------------------------------------------------------------------
 * Quantization
 * ---------------------------------------------------------------------------------------------- */

typedef enum lb_encoder {
    LB_ENCODER_DEFAULT = 0, /* lowbit's encoders: never a larger (weighted) error than ggml's, lower on average */
    LB_ENCODER_REF = 1,     /* ggml's reference encoders, bit for bit (what llama-quantize writes) */
} lb_encoder;

/* How the values of each quantized matrix are chosen. All but RTN need calibration tokens. */
typedef enum lb_method {
    LB_METHOD_RTN = 0,      /* the encoder alone (weighted by the --imatrix file when one is given) */
    LB_METHOD_IMATRIX = 1,  /* the encoder weighted by E[x^2] of each input column, measured on the calibration text */
    LB_METHOD_GPTQ = 2,     /* GPTQ with the target block format as the quantizer */
    LB_METHOD_AWQ = 3,      /* activation-aware per-channel scaling, folded into the previous norm / matrix */
    LB_METHOD_AWQ_GPTQ = 4, /* AWQ scaling, then GPTQ */
} lb_method;

/* "rtn", "imatrix", "gptq", "awq", "awq+gptq"; the method called name, or -1. */
const char *lb_method_name(lb_method m);
int lb_method_from_name(const char *name);

/* Progress of a quantization: tensor `name` is number done (1-based) of total. Non-zero cancels. */
typedef int (*lb_quant_progress_fn)(const char *name, int64_t done, int64_t total, void *user);

typedef struct lb_quantize_params {
    const char *ftype;        /* llama.cpp mixture name: "q4_k_m", "q8_0", "iq4_xs", "f16", ... */
    int n_threads;            /* 0 = all online CPUs */
    lb_encoder encoder;
    int pure;                 /* every quantizable tensor gets the mixture's base type (--pure) */
    int allow_requantize;     /* accept a GGUF input whose weights are already quantized */
    int output_type;          /* lb_type for output.weight (or the tied embedding); -1 = by the mixture */
    int token_embd_type;      /* lb_type for token_embd.weight; -1 = by the mixture */
    int n_tensor_types;       /* overrides: tensors whose GGUF name matches pattern i (POSIX extended
                                 regex, searched anywhere in the name) get type i; the first match wins */
    const char *const *tensor_type_patterns;
    const lb_type *tensor_type_types;
    const char *imatrix;      /* importance matrix file (llama.cpp's .dat or GGUF imatrix format), or NULL */
    lb_method method;
    const int32_t *calib_tokens; /* the tokenized calibration text (methods other than RTN) */
    int64_t n_calib_tokens;
    int64_t calib_ctx;        /* calibration window length (default 512) */
    int64_t calib_n_tokens;   /* calibration tokens used (default 128 x 512) */
    uint64_t calib_seed;      /* which windows (default 1) */
    double gptq_damp;         /* GPTQ damping, a fraction of mean(diag H) (default: 0.01, and 0.3 for a matrix
                                 with fewer than 16 calibration tokens per column; a value given is used as is) */
    int gptq_act_order;       /* GPTQ in decreasing diag(H) order */
    int gptq_passes;          /* GPTQ sweeps, each re-choosing the block scales from the last (0: default 4) */
    int gptq_cd_sweeps;       /* coordinate-descent sweeps over the codes after GPTQ (-1: none, 0: default 4) */
    int gptq_cd_scales;       /* the coordinate descent also steps the integer sub-block scales of k-quants and
                                 iq4_xs (-1: codes only, 0: default on) */
    int gptq_own_target;      /* GPTQ reproduces each matrix's own output on the quantized model's inputs
                                 instead of the unquantized model's output (0: the unquantized model's) */
    double gptq_ref_damp;     /* the pull of that target towards the original weights, a fraction of mean(diag H)
                                 (default 1) */
    lb_quant_progress_fn progress;
    void *progress_user;
    int allow_nonfinite;      /* quantize NaN/Inf weights as they come; by default the first one is an error naming
                                 the tensor and the element */
    lb_device device;         /* where the calibrated methods run the model and sum their statistics (zero = CPU;
                                 on a CUDA device LB_ERR_DEVICE before any work when it cannot be used) and GPTQ's
                                 algebra runs */
    int n_devices;            /* with a CUDA device: 0 for it alone, else the calibration's statistics data
                                 parallel over devices[0..n_devices) (-1: every visible GPU; lb_device_set_parse),
                                 the solver on the first */
    int devices[LB_MAX_DEVICES];
} lb_quantize_params;

lb_quantize_params lb_quantize_default_params(void);

typedef struct lb_quantize_tensor {
    char name[64];      /* GGUF name */
    lb_type type;
    int n_dims;
    int64_t ne[4];      /* GGUF order (ne[0] contiguous) */
    int64_t n_elements;
    size_t n_bytes;
    int fallback;       /* the row length forced another type than the mixture chose */
    double seconds;
} lb_quantize_tensor;

typedef struct lb_quantize_report {
    int64_t n_tensors;
    lb_quantize_tensor *tensors;       /* in file order; released by lb_quantize_report_free */
    int64_t type_tensors[LB_TYPE_COUNT];  /* tensors per type */
    int64_t type_elements[LB_TYPE_COUNT]; /* elements per type */
    int64_t n_params;
    size_t file_bytes;
    double bits_per_weight;           /* file bytes * 8 / n_params */
    double seconds;
    size_t peak_rss_bytes;            /* of the whole process, at the end */
    size_t gpu_peak_bytes;            /* calibration on a GPU: the most device memory seen in use (0 on the CPU) */
    double stats_seconds;             /* calibrated methods: the forward passes and statistics (both streams) */
    double stats_phase_seconds[3];    /* ... on a GPU with LB_CALIB_PROFILE=1 in the environment (a profile that
                                         waits for the device between phases): the forward passes, the
                                         statistics' products and sums, their copies to the host; else 0 */
    double solve_seconds;             /* ... and the rest of the layers' work: GPTQ / AWQ solvers and the encoders */
    double convert_seconds;           /* ... of which the layers' matrices read into their F32 work copies */
    double setup_seconds;             /* calibrated methods: from the start to the first layer's calibration (reading,
                                         the embedding, the calibration windows) */
    double head_seconds;              /* ... and in the output head's (statistics and solve) */
    double windows_seconds;           /* ... of setup_seconds, making the calibration's state (the windows embedded and,
                                         on a GPU, uploaded; the device's buffers) */
    int requantized;                  /* the input's tensors were already in a quantized type */
    char architecture[32];            /* GGUF general.architecture written */
    int64_t imatrix_entries;          /* entries of the --imatrix file (0 without one) */
    int64_t imatrix_covered;          /* quantized matrices it has an entry for (none is an error) ... */
    int64_t imatrix_matrices;         /* ... of this many quantized matrices */
    int64_t gpu_fallbacks;            /* calibration on a GPU: GPTQ computations (a matrix's solve or reference
                                         target) that ran on CPU threads instead (no cuSOLVER, out of GPU memory) */
    char gpu_fallback_reason[200];    /* ... the first one's reason ("" when none) */
    /* GPTQ's part of solve_seconds, summed over matrices (a profile; wall time): preparing H and the inverse
     * factor, the columns of each batch and the block scales (CPU threads), the delayed block updates
     * (device or CPU), the coordinate descent's steps and its products H e, the reference target, and the
     * block encoders where a GPU runs them (else they are part of the columns) */
    double gptq_factor_seconds, gptq_columns_seconds, gptq_update_seconds, gptq_cd_seconds, gptq_products_seconds,
        gptq_ref_seconds, gptq_encode_seconds;
    int gpus;                         /* calibration on a set of GPUs: the ranks its statistics were split over
                                         (1 for one GPU, 0 on the CPU) ... */
    double allreduce_seconds;         /* ... the time in the all-reduce of their sums (part of stats_seconds) */
    int gptq_solvers;                 /* GPTQ: the solvers a layer stage's matrices or row panels ran on side by
                                         side (one per GPU of a set; 1 otherwise) */
} lb_quantize_report;

/*
 * Quantize `input` (a Hugging Face model directory or a GGUF file) into a GGUF file at `output`, tensor
 * by tensor: memory stays about one tensor plus per-thread buffers. `output` is checked first with
 * lb_output_check() against `input` and p->imatrix. The file is written under a temporary name and renamed
 * when complete; on any failure no file is left at `output`. NaN/Inf weights are an error naming the
 * tensor and element unless p->allow_nonfinite; an importance matrix that covers none of the quantized
 * matrices is an error. The report (may be NULL) is filled on success; release it with
 * lb_quantize_report_free().
 */
lb_status lb_quantize_model(const char *input, const char *output, const lb_quantize_params *p,
                            lb_quantize_report *report, lb_error *err);
void lb_quantize_report_free(lb_quantize_report *r);

/*
 * Write `input` (an HF directory or a GGUF file, any weight types) as a new Hugging Face directory
 * `out_dir` (which must not exist): model.safetensors with every tensor converted to `dtype`
 * (LB_TYPE_F16, LB_TYPE_BF16 or LB_TYPE_F32; quantized blocks are dequantized), config.json,
 * generation_config.json, and the tokenizer (an HF input's files copied; a GGUF file's byte-level BPE
 * vocabulary written as tokenizer.json + tokenizer_config.json with its chat template). Built under a
 * temporary name and renamed when complete; on failure nothing is left at `out_dir`.
 */
lb_status lb_export_hf(const char *input, const char *out_dir, lb_type dtype, lb_error *err);

/* ------------------------------------------------------------------------------------------------
 * Calibration
 * ---------------------------------------------------------------------------------------------- */

typedef struct lb_calib_params {
    int64_t ctx;        /* window length in tokens (default 512) */
    int64_t n_tokens;   /* calibration tokens: n_tokens / ctx windows (default 128 x 512) */
    uint64_t seed;      /* which windows of the text are used (default 1); the same seed, the same windows */
    int n_threads;      /* 0 = all online CPUs */
    lb_progress_fn progress;
    void *progress_user;
    lb_device device;   /* where the model runs for lb_imatrix_compute (zero = CPU) */
    int n_devices;      /* calibrated quantize on a CUDA device: 0 for it alone, else the statistics data parallel
                           over devices[0..n_devices) (-1: every visible GPU) */
    int devices[LB_MAX_DEVICES];
} lb_calib_params;

lb_calib_params lb_calib_default_params(void);

/*
 * Choose calibration windows: the text's tokens are cut into non-overlapping windows of ctx tokens and
 * n_tokens / ctx of them are picked by a seeded shuffle (all of them if the text has fewer), returned in
 * text order. *starts (release with lb_free) receives *n_windows token offsets.
 */
lb_status lb_calib_windows(int64_t n_text_tokens, const lb_calib_params *p, int64_t **starts, int64_t *n_windows,
                           lb_error *err);

/*
 * Importance matrix: run the model over the calibration windows and write, for every matrix, the mean
 * squared input activation E[x_j^2] of each input column, in llama.cpp's imatrix file format (the legacy
 * .dat layout that llama-quantize --imatrix and lowbit quantize --imatrix read). `dataset` names the text.
 * `out_path` is checked first with lb_output_check() against the model's own path; a mean that comes out
 * NaN or infinite is an error naming the entry and column, and nothing is written.
 */
lb_status lb_imatrix_compute(const lb_model *m, const int32_t *tokens, int64_t n_tokens, const lb_calib_params *p,
                             const char *dataset, const char *out_path, lb_error *err);

#ifdef __cplusplus
}
#endif

#endif /* LOWBIT_H */
