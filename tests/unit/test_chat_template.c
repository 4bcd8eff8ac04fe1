/*
 * test_chat_template.c - the chat-template engine's public API: rendering a conversation through
 * lb_chat_template_render (messages, add_generation_prompt, bos/eos), the JSON variant, loading from an
 * HF directory (string and list-of-named-templates forms), and that every error is one line naming the
 * template line and the construct. Output equality with jinja2 over real templates is
 * tests/python/test_chat_template.py.
 */
#include "test.h"

#include "lowbit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *CHATML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static char *render(const char *src, const lb_chat_message *m, int n, int gen, lb_status *st, lb_error *e) {
    lb_chat_template *t = NULL;
    char *out = NULL;
    size_t len = 0;
    *st = lb_chat_template_parse(src, strlen(src), &t, e);
    if (*st == LB_OK) {
        lb_chat_params p = {gen, "<s>", "</s>"};
        *st = lb_chat_template_render(t, m, n, &p, &out, &len, e);
        if (*st == LB_OK && strlen(out) != len) *st = LB_ERR_FORMAT;
    }
    lb_chat_template_free(t);
    return out;
}

/* The error a template gives (parse or render), or "" when it renders. */
static void expect_error(const char *src, lb_status want, const char *needle) {
    lb_chat_message m[1] = {{"system", "s"}};
    lb_error e = {{0}};
    lb_status st;
    char *out = render(src, m, 1, 1, &st, &e);
    CHECK(st == want, "template %s: status %d, want %d (%s)", src, st, want, e.msg);
    CHECK(strstr(e.msg, needle) != NULL, "template %s: message \"%s\" lacks \"%s\"", src, e.msg, needle);
    CHECK(strchr(e.msg, '\n') == NULL, "message has a newline: %s", e.msg);
    lb_free(out);
}

static void test_render(void) {
    lb_chat_message m[3] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}};
    lb_error e;
    lb_status st;
    char *out = render(CHATML, m, 2, 1, &st, &e);
    const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    CHECK(st == LB_OK && out && !strcmp(out, want), "chatml: [%s] %s", out ? out : "", e.msg);
    lb_free(out);
    out = render(CHATML, m, 3, 0, &st, &e);
    want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n";
    CHECK(st == LB_OK && out && !strcmp(out, want), "chatml, no generation prompt: [%s]", out ? out : "");
    lb_free(out);
    out = render("{{ bos_token }}[{{ eos_token }}]{{ tools is none }}", m, 0, 0, &st, &e);
    CHECK(st == LB_OK && out && !strcmp(out, "<s>[</s>]True"), "special tokens: [%s]", out ? out : "");
    lb_free(out);
    /* HF's whitespace settings: trim_blocks and lstrip_blocks, one trailing newline dropped */
    out = render("{% if true %}\n    {% for x in [1, 2] %}\n  {{ x }}\n    {% endfor %}\n{% endif %}\n", m, 0, 0, &st, &e);
    CHECK(st == LB_OK && out && !strcmp(out, "  1\n  2\n"), "whitespace: [%s]", out ? out : "");
    lb_free(out);
    /* a set inside a loop stays there; a namespace carries it out */
    out = render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for m in messages %}{% set n = n + 1 %}"
                 "{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }}/{{ ns.n }}/{{ messages[1:] | length }}",
                 m, 3, 0, &st, &e);
    CHECK(st == LB_OK && out && !strcmp(out, "0/3/2"), "scoping: [%s]", out ? out : "");
    lb_free(out);
    /* integer powers, huge exponents of 0, 1 and -1 at once (a loop of 4e11 steps was a hang the fuzzer found) */
    out = render("{{ 3 ** 5 }} {{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 1 ** 412222222222 }} {{ (-1) ** 1000000000001 }} {{ 0 ** 99999999999 }} "
                 "{{ 7 ** 0 }}",
                 m, 0, 0, &st, &e);
    CHECK(st == LB_OK && out && !strcmp(out, "243 4611686018427387904 -9223372036854775808 1 -1 0 1"), "powers: [%s] %s",
          out ? out : "", e.msg);
    lb_free(out);
    expect_error("{{ 2 ** 63 }}", LB_ERR_UNSUPPORTED, "integer too large");
    expect_error("{{ 3 ** 412222222222 }}", LB_ERR_UNSUPPORTED, "integer too large");
}

static void test_json(void) {
    lb_chat_template *t = NULL;
    lb_error e;
    char *out = NULL;
    size_t len;
    const char *src = "{{ messages[0].content | tojson }}|{{ x | tojson(indent=2) }}|{{ y }}";
    const char *vars = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\\"b\\n\\u00e9\"}], \"x\": {\"k\": [1, 2.5]},"
                       " \"y\": [true, null, \"s\"]}";
    REQUIRE(lb_chat_template_parse(src, strlen(src), &t, &e) == LB_OK, "%s", e.msg);
    lb_status st = lb_chat_template_render_json(t, vars, strlen(vars), &out, &len, &e);
    const char *want = "\"a\\\"b\\n\xc3\xa9\"|{\n  \"k\": [\n    1,\n    2.5\n  ]\n}|[True, None, 's']";
    CHECK(st == LB_OK && out && !strcmp(out, want), "json: [%s] %s", out ? out : "", e.msg);
    lb_free(out);
    st = lb_chat_template_render_json(t, "[1]", 3, &out, &len, &e);
    CHECK(st == LB_ERR_ARG && strstr(e.msg, "not a JSON object"), "json array: %d %s", st, e.msg);
    lb_chat_template_free(t);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void test_load_hf(void) {
    char dir[] = "/tmp/lb_chat_XXXXXX", path[256];
    REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    lb_chat_template *t = NULL;
    lb_error e;
    char *out = NULL;
    size_t len;
    lb_chat_message m[1] = {{"user", "q"}};
    write_file(path, "{\"bos_token\": {\"content\": \"<B>\"}, \"eos_token\": \"<E>\", \"chat_template\": "
                     "[{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", "
                     "\"template\": \"{{ bos_token }}{{ messages[0].content }}{{ eos_token }}\"}]}");
    lb_status st = lb_chat_template_load(dir, &t, &e);
    CHECK(st == LB_OK, "list form: %s", e.msg);
    if (st == LB_OK) {
        st = lb_chat_template_render(t, m, 1, NULL, &out, &len, &e);
        CHECK(st == LB_OK && out && !strcmp(out, "<B>q<E>"), "list form render: [%s]", out ? out : "");
        lb_free(out);
        lb_chat_template_free(t);
    }
    write_file(path, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    st = lb_chat_template_load(dir, &t, &e);
    CHECK(st == LB_ERR_UNSUPPORTED && strstr(e.msg, "no template named \"default\"") && strstr(e.msg, "tool_use"),
          "no default: %d %s", st, e.msg);
    write_file(path, "{\"eos_token\": \"<E>\"}");
    st = lb_chat_template_load(dir, &t, &e);
    CHECK(st == LB_ERR_UNSUPPORTED && strstr(e.msg, "no chat template"), "absent: %d %s", st, e.msg);
    unlink(path);
    rmdir(dir);
    st = lb_chat_template_load("models/tiny/model.safetensors", &t, &e);
    CHECK(st != LB_OK, "a non-GGUF file is not a template source");
}

static void test_errors(void) {
    expect_error("{% include 'x.jinja' %}", LB_ERR_UNSUPPORTED, "line 1: '{% include %}' is not supported");
    expect_error("a\n{% for m in messages %}\n{{ m }}\n", LB_ERR_FORMAT, "line 2: block opened here is never closed (no '{% endfor %}')");
    expect_error("x\n\n{{ messages[0].role ", LB_ERR_FORMAT, "line 3: unclosed '{{' tag");
    expect_error("{# note", LB_ERR_FORMAT, "unclosed comment");
    expect_error("{% if true %}{% endfor %}", LB_ERR_FORMAT, "unexpected '{% endfor %}' (expected '{% endif %}')");
    expect_error("\n{{ raise_exception('Roles must alternate') }}", LB_ERR_ARG, "line 2: raise_exception: Roles must alternate");
    expect_error("{{ messages | frobnicate }}", LB_ERR_UNSUPPORTED, "line 1: filter 'frobnicate' is not supported");
    expect_error("{{ nothing.attr }}", LB_ERR_ARG, "'nothing' is undefined");
    expect_error("{{ 'a' + 1 }}", LB_ERR_ARG, "unsupported operand types for +: 'str' and 'int'");
    expect_error("{{ 'unterminated }}", LB_ERR_FORMAT, "unterminated string literal");
    expect_error("{% set x = 1 %}{% set x.y = 2 %}", LB_ERR_ARG, "not a namespace()");
    expect_error("{{ '{:>5}'.format(1) }}", LB_ERR_UNSUPPORTED, "only plain {} / {N} / {name} fields");
    expect_error("{{ messages[0].role.zfill(3) }}", LB_ERR_UNSUPPORTED, "str method 'zfill' is not supported");
    expect_error("{% if false %}{% break %}{% endif %}", LB_ERR_FORMAT, "line 1: '{% break %}' outside a for loop");
    expect_error("{% for m in messages %}{% macro f() %}{% continue %}{% endmacro %}{% endfor %}", LB_ERR_FORMAT,
                 "'{% continue %}' outside a for loop");
    expect_error("{{ 1 2 }}", LB_ERR_FORMAT, "unexpected 'a number' at the end of a tag");
    expect_error("{% for x in 5 %}{% endfor %}", LB_ERR_ARG, "'int' object is not iterable");
    expect_error("{{ range(100000000) }}", LB_ERR_UNSUPPORTED, "range() longer than");
}

int main(void) {
    test_render();
    test_json();
    test_load_hf();
    test_errors();
    TEST_DONE();
}
