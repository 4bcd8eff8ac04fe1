/*
 * hf_config.h - config.json of a Hugging Face causal LM, into lb_model_info.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM.
 * Both layouts are accepted: transformers 4 (rope_theta and rope_scaling at top level, torch_dtype) and
 * transformers 5 (rope_parameters {rope_type, rope_theta, ...}, dtype). Rope types: default/none,
 * linear, llama3. Anything else (other architectures, other rope types, sliding-window attention in
 * use, non-SiLU activation) is LB_ERR_UNSUPPORTED with a message naming it.
 */
#ifndef LB_HF_CONFIG_H
#define LB_HF_CONFIG_H

#include "../core/core.h"

/* Parse config.json text. Fills every lb_model_info field except n_params and n_bytes. */
lb_status hf_config_parse(const char *text, size_t len, lb_model_info *info, lb_error *err);
/* Read and parse <dir>/config.json. */
lb_status hf_config_load(const char *dir, lb_model_info *info, lb_error *err);

#endif
