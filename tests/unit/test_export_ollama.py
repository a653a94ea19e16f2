"""The Ollama Modelfile: its Go TEMPLATE must render exactly the chat format the model was trained with.

Ollama is not installed here, so the test renders the template with a small interpreter for the part of Go's
text/template language the templates use (if/else if/else/range/variables, eq ne and or not len slice,
whitespace trimming) and compares with the Jinja chat templates rendered by transformers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from lapidar.export.ollama import DEFAULT_SYSTEM, TEMPLATES, create_command, modelfile
from lapidar.models.qwen import chat_template

# ---------------------------------------------------------------- a tiny Go text/template interpreter

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _lex(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", s)] with {{- and -}} whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = template[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(items: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()) -> tuple[list, int, str]:
    nodes: list = []
    while i < len(items):
        kind, value = items[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        head = value.split(" ", 1)[0]
        if head in stop:
            return nodes, i, value
        if head == "if":
            branches, else_body = [], []
            cond = value[3:]
            while True:
                body, i, closer = _parse(items, i + 1, ("else", "end"))
                branches.append((cond, body))
                if closer.startswith("else if "):
                    cond = closer[len("else if ") :]
                    continue
                if closer == "else":
                    else_body, i, closer = _parse(items, i + 1, ("end",))
                break
            nodes.append(("if", branches, else_body))
            i += 1
        elif head == "range":
            m = re.fullmatch(r"range\s+(\$\w*)\s*,\s*(\$\w*)\s*:=\s*(.+)", value)
            assert m, value
            body, i, _ = _parse(items, i + 1, ("end",))
            nodes.append(("range", m.group(1), m.group(2), m.group(3), body))
            i += 1
        elif re.match(r"\$\w+\s*:=", value):
            name, expr = value.split(":=", 1)
            nodes.append(("set", name.strip(), expr.strip()))
            i += 1
        else:
            nodes.append(("out", value))
            i += 1
    return nodes, i, ""


def _tokens(expr: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\(|\)|[^\s()]+', expr)


FUNCS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "and": lambda *a: next((x for x in a if not x), a[-1]),
    "or": lambda *a: next((x for x in a if x), a[-1]),
    "not": lambda a: not a,
    "len": len,
    "slice": lambda a, i: a[i:],
    "index": lambda a, i: a[i],
}


def _operand(tok: list[str], dot: Any, env: dict) -> Any:
    t = tok.pop(0)
    if t == "(":
        value = _call(tok, dot, env)
        assert tok.pop(0) == ")"
        return value
    if t.startswith('"'):
        return t[1:-1].replace('\\"', '"')
    if t.isdigit():
        return int(t)
    if t.startswith("$"):
        var, _, path = t.partition(".")
        value = env[var]
        for part in filter(None, path.split(".")):
            value = value.get(part, "")
        return value
    if t.startswith("."):
        value = dot
        for part in filter(None, t.split(".")):
            value = value.get(part, "")
        return value
    raise AssertionError(f"unsupported token {t}")


def _call(tok: list[str], dot: Any, env: dict) -> Any:
    if tok[0] in FUNCS:
        fn = FUNCS[tok.pop(0)]
        args = []
        while tok and tok[0] != ")":
            args.append(_operand(tok, dot, env))
        return fn(*args)
    return _operand(tok, dot, env)


def _eval(expr: str, dot: Any, env: dict) -> Any:
    tok = _tokens(expr)
    value = _call(tok, dot, env)
    assert not tok, f"unparsed {tok} in {expr}"
    return value


def _exec(nodes: list, dot: Any, env: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "out":
            out.append(str(_eval(node[1], dot, env)))
        elif node[0] == "set":
            env[node[1]] = _eval(node[2], dot, env)
        elif node[0] == "if":
            for cond, body in node[1]:
                if _eval(cond, dot, env):
                    out.append(_exec(body, dot, dict(env)))
                    break
            else:
                out.append(_exec(node[2], dot, dict(env)))
        elif node[0] == "range":
            for i, item in enumerate(_eval(node[3], dot, env)):
                out.append(_exec(node[4], item, {**env, node[1]: i, node[2]: item}))
    return "".join(out)


def render_go(template: str, **values: Any) -> str:
    """Render `template` with Ollama's variables (Messages, System, Prompt, Response)."""
    root = {"Messages": [], "System": "", "Prompt": "", "Response": "", **values}
    nodes, _, _ = _parse(_lex(template))
    return _exec(nodes, root, {"$": root})


def ollama_messages(messages: list[dict], system: str | None) -> list[dict]:
    """What Ollama passes to the template: the Modelfile SYSTEM first when the request has no system message."""
    msgs = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    if system and (not msgs or msgs[0]["Role"] != "system"):
        msgs.insert(0, {"Role": "system", "Content": system})
    return msgs


# ---------------------------------------------------------------- tests

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "and\n2+2?"},
    ],
    [
        {"role": "system", "content": "You call tools."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": '{"temp": 21}'},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["user", "system", "multi-turn", "tool"])
def test_chatml_template_renders_qwen25_format(tokenizer, messages):
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    got = render_go(TEMPLATES["instruct"], Messages=ollama_messages(messages, DEFAULT_SYSTEM))
    assert got == expected


def test_chatml_without_system_message_uses_qwen_default(tokenizer):
    got = render_go(
        TEMPLATES["instruct"], Messages=ollama_messages([{"role": "user", "content": "Hi"}], DEFAULT_SYSTEM)
    )
    assert (
        got
        == f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml_legacy_prompt_form(tokenizer):
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert render_go(TEMPLATES["instruct"], System=DEFAULT_SYSTEM, Prompt="Hi") == expected
    assert render_go(TEMPLATES["instruct"], System=DEFAULT_SYSTEM, Prompt="Hi", Response="Yo").endswith(
        "assistant\nYo<|im_end|>"
    )


@pytest.mark.parametrize("messages", CONVERSATIONS[:3], ids=["user", "system", "multi-turn"])
def test_plain_template_renders_base_format(tokenizer, messages):
    from jinja2 import Template

    expected = Template(chat_template("base")).render(messages=messages, add_generation_prompt=True)
    got = render_go(TEMPLATES["base"], Messages=ollama_messages(messages, None))
    assert got == expected


def test_modelfile_has_stops_parameters_and_system():
    text = modelfile("run-q4_k_m.gguf", "instruct", num_ctx=2048, note="line one\nline two")
    assert text.startswith("# line one\n# line two\nFROM ./run-q4_k_m.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'PARAMETER stop "<|endoftext|>"' in text
    assert "PARAMETER num_ctx 2048" in text
    assert f'SYSTEM """{DEFAULT_SYSTEM}"""' in text
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S)
    assert template and template.group(1) == TEMPLATES["instruct"]
    assert "SYSTEM" not in modelfile("m.gguf", "base")
    assert create_command("my-run", "out/Modelfile") == "ollama create my-run -f out/Modelfile"
