/*
 * fuzz_chat_template.c - fuzz target for the chat-template engine: each input is parsed as a template
 * (the source comes from model files, so it is untrusted) and, when it parses, rendered with a small
 * conversation through both render calls. Nothing may crash, hang or leak, and every failure must be a
 * one-line message.
 *
 * Built with -DLB_LIBFUZZER it is a libFuzzer target (LLVMFuzzerTestOneInput). Otherwise it has a
 * main() that runs a deterministic mutation loop over built-in seed templates:
 *     fuzz_chat_template [iterations (default 20000)] [seed (default 1)]
 */
#include "lowbit.h"

#define FUZZ_OWN_MAIN
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what, const char *msg) {
    if (!ok) {
        fprintf(stderr, "fuzz_chat_template: invariant broken: %s (%s)\n", what, msg);
        abort();
    }
}

static void check_error(const lb_error *e) {
    check(e->msg[0] != 0, "an error has a message", "");
    check(strchr(e->msg, '\n') == NULL, "an error is one line", e->msg);
}

static long n_parsed, n_rendered;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_chat_template *t = NULL;
    lb_error e = {{0}};
    if (lb_chat_template_parse((const char *)data, size, &t, &e) != LB_OK) {
        check_error(&e);
        return 0;
    }
    n_parsed++;
    lb_chat_message m[3] = {{"system", "sys"}, {"user", "Hello"}, {"assistant", "  Hi  "}};
    lb_chat_params p = {1, "<s>", "</s>"};
    char *out = NULL;
    size_t len = 0;
    if (lb_chat_template_render(t, m, 3, &p, &out, &len, &e) == LB_OK) {
        check(strlen(out) <= len, "length", "");
        n_rendered++;
    } else {
        check_error(&e);
    }
    lb_free(out);
    out = NULL;
    const char *vars = "{\"messages\": [{\"role\": \"user\", \"content\": \"q\", \"tool_calls\": [{\"function\": "
                       "{\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}], \"tools\": [{\"type\": \"function\"}], "
                       "\"add_generation_prompt\": false}";
    if (lb_chat_template_render_json(t, vars, strlen(vars), &out, &len, &e) != LB_OK) check_error(&e);
    lb_free(out);
    lb_chat_template_free(t);
    return 0;
}

#ifndef LB_LIBFUZZER
static const char *const SEEDS[] = {
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
    "{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}{{- '<|start_header_id|>"
    "assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "{%- set ns = namespace(index=0, found=false) %}{%- for m in messages if m.role != 'system' %}{%- set ns.index = "
    "ns.index + 1 %}{% if loop.last %}{{ loop.index }}/{{ ns.index }}{% endif %}{%- endfor %}{# comment #}"
    "{{ tools | tojson(indent=4) }}{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(', ') }}",
    "{% macro render(m, sep='\\n') %}{{ m.content.strip().split(' ')[::-1] | join(sep) }}{% endmacro %}"
    "{% for k, v in {'a': 1, 'b': [1, 2]}.items() %}{{ k ~ v }}{% if v is mapping %}{% break %}{% endif %}{% endfor %}"
    "{{ render(messages[-1]) if messages else 'none' }}{{ (1 + 2 * 3 // 2 % 5 - -1) ** 2 }}{{ 'x' in 'xyz' and not false }}",
};


static const char *const TOKENS[] = {"{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "(", ")", "[", "]", "'",
                                     "\"", "|", ".", ",", ":", " if ", " else ", " for x in ", " endfor ", " endif ",
                                     " set ", " macro ", " not ", " is ", "=", "\\", "\n", "loop.", "ns.", "9999999"};

static void mutate(char *buf, size_t *len, size_t cap) {
    int n = 1 + (int)(fuzz_rnd() % 4);
    for (int k = 0; k < n; k++) {
        size_t pos = *len ? fuzz_rnd() % *len : 0;
        switch (fuzz_rnd() % 4) {
        case 0: if (*len) buf[pos] = (char)fuzz_rnd(); break;
        case 1: { /* delete a range */
            size_t d = 1 + fuzz_rnd() % 16;
            if (pos + d > *len) d = *len - pos;
            memmove(buf + pos, buf + pos + d, *len - pos - d);
            *len -= d;
            break;
        }
        case 2: { /* insert a token */
            const char *t = TOKENS[fuzz_rnd() % (sizeof TOKENS / sizeof *TOKENS)];
            size_t tl = strlen(t);
            if (*len + tl > cap) break;
            memmove(buf + pos + tl, buf + pos, *len - pos);
            memcpy(buf + pos, t, tl);
            *len += tl;
            break;
        }
        default: { /* duplicate a range */
            size_t d = 1 + fuzz_rnd() % 32;
            if (pos + d > *len) d = *len - pos;
            if (*len + d > cap) break;
            memmove(buf + pos + d, buf + pos, *len - pos);
            *len += d;
            break;
        }
        }
    }
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    fuzz_seed_rng(argc > 2 ? (uint64_t)atoll(argv[2]) : 1);
    enum { CAP = 8192 };
    char *buf = malloc(CAP);
    if (!buf) return 1;
    size_t n_seeds = sizeof SEEDS / sizeof *SEEDS;
    for (size_t i = 0; i < n_seeds; i++) LLVMFuzzerTestOneInput((const uint8_t *)SEEDS[i], strlen(SEEDS[i]));
    for (long it = 0; it < iters; it++) {
        const char *seed = SEEDS[fuzz_rnd() % n_seeds];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        mutate(buf, &len, CAP);
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    }
    free(buf);
    printf("fuzz_chat_template: %ld inputs (%ld parsed, %ld rendered), no crash\n", iters, n_parsed, n_rendered);
    return 0;
}
#endif
