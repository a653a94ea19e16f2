"""Data formats: detect which one a file is in and convert every row into one internal form, `Example`.

Files are read by `lapidar.data.readers` (JSON, JSONL, CSV/TSV, Parquet, text, directories); the formats below are
a registry, `name -> Format(kind, identifying fields, converter)`. Detection looks at every row: each row's fields
select the formats it fits (the most specific wins: `instruction, output` beats `input, output`; a `text` column
only decides when nothing else fits). A file whose rows fit different formats, or a row that fits two, is an error
that names the candidates; `--format NAME` forces one, and `--columns prompt=COL,...` maps other column names.

Four kinds of data come out, so a training objective can pick what it understands:

- `sft`: chat conversations ending with an assistant answer (`Example.messages`);
- `text`: raw text for continued pretraining (`Example.text`);
- `preference`: a prompt (`messages`) with a `chosen` and a `rejected` answer (DPO-style);
- `feedback`: a prompt with one `completion` and a thumbs-up/down `label` (KTO-style).

Turns are read in the layouts OpenAI, TRL, LLaMA-Factory and Axolotl document: `{role, content}` or
`{from, value}`; content as text or as parts with the text under `text`, `value` or `content`; tool calls
(`tool_calls`, `function_call`) as Qwen2.5's `<tool_call>` blocks and tool specs (`tools`, `functions`) as OpenAI's;
an answer's reasoning (`reasoning_content`, reasoning parts) as a `<think>` prefix, noted on the row; per-message
loss weights (`weight`, `loss_weight`, `train`, `training`: 0 = context only, 1 = trained) kept as `weight`.
"""

from __future__ import annotations

import contextvars
import importlib.resources
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lapidar.data.readers import SPEAKERS, Row, json_type, read_rows
from lapidar.errors import UserError, unknown_choice

__all__ = [
    "FIELD_NAMES",
    "FORMATS",
    "KINDS",
    "Dataset",
    "Example",
    "Format",
    "Message",
    "bundled_example",
    "convert_rows",
    "detect_format",
    "load_dataset",
    "load_examples",
    "load_spec",
    "normalize_tools",
    "parse_columns",
    "parse_label",
    "require_kind",
    "trains",
]

# One turn: {"role", "content"} (both text), and "weight" (0 or 1) only where it differs from the role's default —
# see `trains`.
Message = dict[str, Any]
KINDS = ("sft", "text", "preference", "feedback")


def trains(message: Message) -> bool:
    """Whether a turn carries loss: an assistant turn unless its weight is 0, any other turn only with weight 1."""
    return bool(message.get("weight", 1 if message["role"] == "assistant" else 0))


@dataclass(frozen=True)
class Example:
    """One example in lapidar's internal form, and where it came from.

    `messages` is the whole conversation for `sft` rows and the prompt turns for `preference`/`feedback` rows; the
    other fields are set only for the kinds that use them.
    """

    messages: list[Message]
    source: str  # "file: line 3", for error messages
    kind: str = "sft"
    text: str | None = None  # text: the raw text
    chosen: list[Message] | None = None  # preference: the preferred answer turn(s)
    rejected: list[Message] | None = None  # preference: the worse answer turn(s)
    completion: list[Message] | None = None  # feedback: the rated answer turn(s)
    label: bool | None = None  # feedback: True = good (👍), False = bad (👎)
    tools: list[Any] | None = None  # function-calling tool specs the conversation may use
    ref: str = ""  # "line 3", or "sub/a.jsonl: line 3" in a directory — how reports point at the row
    # What reading and converting the row changed, each naming the field (a number read as text, a key given twice);
    # never silent: the quality report lists them as warnings.
    notes: tuple[str, ...] = ()

    def conversations(self) -> list[list[Message]]:
        """The full conversations a model would be trained on (prompt + each answer); none for raw text."""
        if self.kind == "preference":
            return [self.messages + (self.chosen or []), self.messages + (self.rejected or [])]
        if self.kind == "feedback":
            return [self.messages + (self.completion or [])]
        if self.kind == "text":
            return []
        return [self.messages]

    def answers(self) -> list[tuple[str, str]]:
        """`(field, text)` of every piece the model learns to produce: assistant turns, chosen/rejected, text."""
        if self.kind == "text":
            return [("text", self.text or "")]
        if self.kind == "preference":
            return [("chosen", m["content"]) for m in self.chosen or [] if m["role"] == "assistant"] + [
                ("rejected", m["content"]) for m in self.rejected or [] if m["role"] == "assistant"
            ]
        if self.kind == "feedback":
            return [("completion", m["content"]) for m in self.completion or [] if m["role"] == "assistant"]
        # Weight-0 answers are context (OpenAI's and Axolotl's per-message weights): nothing is learnt from them.
        return [("assistant", m["content"]) for m in self.messages if m["role"] == "assistant" and trains(m)]

    def final_answer(self) -> str:
        """The answer that ends the example (the chosen one for preference rows)."""
        answers = [text for name, text in self.answers() if name != "rejected"]
        return answers[-1] if answers else ""

    def prompt(self) -> list[Message]:
        """The turns before the final answer."""
        if self.kind in ("preference", "feedback"):
            return self.messages
        trained = [i for i, m in enumerate(self.messages) if m["role"] == "assistant" and trains(m)]
        return self.messages[: trained[-1] if trained else len(self.messages)]

    def fields(self) -> list[tuple[str, str]]:
        """`(field, text)` of every piece of text in the example (field = role, or chosen/rejected/...)."""
        out = [(m["role"], m["content"]) for m in self.messages]
        if self.kind == "text":
            out.append(("text", self.text or ""))
        for name, turns in (("chosen", self.chosen), ("rejected", self.rejected), ("completion", self.completion)):
            out += [(name if m["role"] == "assistant" else m["role"], m["content"]) for m in turns or []]
        return out


@dataclass
class Dataset:
    """A loaded file: its raw rows, the converted examples (one per row, same order) and the detected format."""

    path: Path
    rows: list[Row]
    examples: list[Example]
    fmt: str
    reason: str  # why this format: "every row has the fields instruction, output" / "chosen with --format"
    kind: str
    columns: dict[str, str] = field(default_factory=dict)


def bundled_example(name: str) -> tuple[Path, Path]:
    """Paths of a bundled dataset (`example:claims`): (train, validation)."""
    files = importlib.resources.files("lapidar.resources")
    known = {
        "claims": ("claims_train.jsonl", "claims_validation.jsonl"),
        # The quickstart's task (claim note -> team), generated by lapidar.recipes.routing_data.
        "claims-routing": ("claims_routing_train.jsonl", "claims_routing_validation.jsonl"),
    }
    if name not in known:
        raise unknown_choice("bundled example", name, [f"example:{k}" for k in known])
    train, val = known[name]
    return Path(str(files.joinpath(train))), Path(str(files.joinpath(val)))


# ---------------------------------------------------------------- field helpers


# Notes on the row being converted (see `Example.notes`); `convert_rows` sets a fresh list for each row.
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("_NOTES", default=None)


def _note(text: str) -> None:
    notes = _NOTES.get()
    if notes is not None and text not in notes:
        notes.append(text)


def _text(value: Any, where: str, field: str) -> str:
    """A text field; null counts as empty (the quality report flags it), numbers become text (noted on the row)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        text = str(value)
        _note(
            f"field {field!r}: expected text, got {json_type(value)} ({json.dumps(value)}); read as the text {text!r}"
        )
        return text
    raise UserError(f"{where}: field {field!r}: expected text, got {json_type(value)}")


def _json_cell(value: Any) -> Any:
    """CSV and Parquet cells hold nested values as JSON text; decode them when they look like JSON."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _list(value: Any, where: str, field: str, what: str) -> list:
    value = _json_cell(value)
    if not isinstance(value, list):
        raise UserError(f"{where}: field {field!r}: expected a list of {what}, got {json_type(value)}")
    return value


_ROLES = SPEAKERS  # speaker name -> role, shared with the reader's turn-order notes


def _tool_call_text(payload: Any) -> str:
    """Tool calls as Qwen2.5's chat template writes them: `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`.

    Byte for byte what the template renders for structured `tool_calls` (its `tojson` is `json.dumps` with
    `ensure_ascii=False`); a list (LLaMA-Factory's parallel calls in one `function_call` turn) gives one block per
    call, joined by a newline as the template joins them.
    """
    if isinstance(payload, list):
        return "\n".join(_tool_call_text(call) for call in payload)
    if isinstance(payload, str):
        return f"<tool_call>\n{payload.strip()}\n</tool_call>"
    return f"<tool_call>\n{json.dumps(payload, ensure_ascii=False)}\n</tool_call>"


# Where other tools keep a content part's text: OpenAI/TRL `text`, LLaMA-Factory/Axolotl-style `value`, `content`.
_TEXT_KEYS = ("text", "value", "content")
_TEXT_PARTS = ("text", "input_text", "output_text")  # OpenAI chat parts, and the Responses API's names
_REASONING_PARTS = ("reasoning", "thinking")  # Anthropic: {"type": "thinking", "thinking": ...}


def _part_text(part: dict, where: str, field: str, kind: str) -> str:
    for key in (*_TEXT_KEYS, kind):
        if key in part:
            return _text(part[key], where, f"{field}.{key}")
    raise UserError(
        f"{where}: field {field!r}: a {kind!r} part holds its text under 'text' (or 'value', 'content'); this part "
        f"has the keys {sorted(part)}"
    )


def _content(value: Any, where: str, field: str) -> tuple[str, str]:
    """Message content as (text, reasoning): text, or parts `[{type: text, text|value|content: ...}, ...]`.

    Reasoning parts (`type: reasoning|thinking`) come back apart, for the caller to place; any other part (an
    image, audio) is an error naming its type.
    """
    if not isinstance(value, list):
        return _text(value, where, field), ""
    texts, reasoning = [], []
    for j, part in enumerate(value):
        f = f"{field}[{j}]"
        if not isinstance(part, dict):
            raise UserError(
                f"{where}: field {f!r}: expected a content part {{type: text, text: ...}}, got {json_type(part)}"
            )
        kind = part.get("type", "text")  # a part with no type but with text is read as text
        if kind in _TEXT_PARTS:
            texts.append(_part_text(part, where, f, kind))
        elif kind in _REASONING_PARTS:
            reasoning.append(_part_text(part, where, f, kind))
        else:
            raise UserError(
                f"{where}: field {f!r}: only text parts (and reasoning parts in an answer) are supported, got a "
                f"{kind!r} part; lapidar trains text-only models"
            )
    return "".join(texts), "\n\n".join(r for r in reasoning if r.strip())


# Per-message loss weights: OpenAI (`weight` on assistant messages), Axolotl (`weight`, or `train`/`training` with
# message_field_training), `loss_weight` elsewhere. 0 = context only, 1 = train on this turn.
_WEIGHT_KEYS = ("weight", "loss_weight", "train", "training")
# Qwen2.5 has no reasoning field; where other tools keep an answer's reasoning (DeepSeek/vLLM/Qwen3
# `reasoning_content`, OpenRouter-style `reasoning`, `thinking`).
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _weight(turn: dict, role: str, where: str, field: str) -> dict[str, int]:
    """The turn's weight as `{"weight": 0|1}`, only where it differs from the role's default (see `trains`)."""
    if turn.get("train_detail") is not None:
        raise UserError(
            f"{where}: field '{field}.train_detail': per-character training spans (Axolotl's train_detail) are not "
            'supported; give the whole turn "weight": 0 (context only) or 1 (train on it)'
        )
    given = [(k, turn[k]) for k in _WEIGHT_KEYS if turn.get(k) is not None]
    if not given:
        return {}
    values = []
    for key, value in given:
        ok = isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1))
        if not ok:
            raise UserError(
                f"{where}: field '{field}.{key}': expected 0 (context only, no loss) or 1 (train on this turn), got "
                f"{json.dumps(value)}; lapidar trains a turn whole or not at all"
            )
        values.append(int(value))
    if len(set(values)) > 1:
        keys = " and ".join(f"{k}={json.dumps(v)}" for k, v in given)
        raise UserError(f"{where}: field {field!r}: {keys} disagree; keep one of them")
    default = 1 if role == "assistant" else 0
    return {} if values[0] == default else {"weight": values[0]}


def _reasoning(turn: dict, role: str, where: str, field: str, from_parts: str) -> str:
    """An answer's reasoning (a message key or reasoning parts), checked to belong to an assistant turn."""
    found = [(k, turn[k]) for k in _REASONING_KEYS if turn.get(k) not in (None, "")]
    pieces = [from_parts] if from_parts else []
    pieces += [_text(v, where, f"{field}.{k}") for k, v in found]
    where_from = ", ".join(f"{field}.{k}" for k, _ in found) or f"{field}.content"
    if pieces and role != "assistant":
        raise UserError(
            f"{where}: field {where_from!r}: reasoning belongs to an assistant answer, this turn is {role}; move it "
            "to the answer or remove it"
        )
    text = "\n\n".join(p.strip() for p in pieces if p.strip())
    if text:
        _note(
            f"field {where_from!r}: Qwen2.5's chat template has no reasoning field; the reasoning is kept as a "
            "<think>…</think> prefix of the answer, so the model learns to write it before answering"
        )
    return text


def _turns(value: Any, where: str, field: str) -> list[Message]:
    """A list of turns in either style — `{role, content}` (OpenAI, TRL) or `{from, value}` (ShareGPT).

    A turn may also carry a loss weight (`weight`, `loss_weight`, `train`, `training`: 0 or 1), tool calls (OpenAI
    `tool_calls`, the legacy `function_call`) and reasoning (`reasoning_content`, `reasoning`, `thinking`, or
    reasoning content parts), kept as a `<think>` prefix of the answer.
    """
    out = []
    for i, t in enumerate(_list(value, where, field, "{role, content} or {from, value} objects")):
        f = f"{field}[{i}]"
        if isinstance(t, dict) and "role" in t:
            speaker, speaker_key, text_keys = t["role"], "role", ("content", "value", "text")
        elif isinstance(t, dict) and "from" in t:
            speaker, speaker_key, text_keys = t["from"], "from", ("value", "content", "text")
        else:
            keys = f"; it has the keys {sorted(t)}" if isinstance(t, dict) else f", got {json_type(t)}"
            raise UserError(
                f"{where}: field {f!r}: expected an object with 'role' and 'content' (or 'from', 'value'){keys}"
            )
        role = _ROLES.get(str(speaker).lower())
        if role is None:
            raise UserError(
                f"{where}: field '{f}.{speaker_key}': unknown speaker {speaker!r}; expected one of {', '.join(_ROLES)}"
            )
        text_key = next((k for k in text_keys if k in t), None)
        calls = t.get("tool_calls") or []
        legacy_call = t.get("function_call") if isinstance(t.get("function_call"), dict) else None
        if text_key is None and not calls and legacy_call is None:
            raise UserError(
                f"{where}: field {f!r}: no text under {text_keys[0]!r} (or {text_keys[1]!r}, {text_keys[2]!r}); the "
                f"message has the keys {sorted(t)}"
            )
        if str(speaker).lower() == "function_call":
            content, parts_reasoning = _tool_call_text(_json_cell(t.get(text_key) if text_key else None)), ""
        else:
            content, parts_reasoning = _content(t.get(text_key) if text_key else None, where, f"{f}.{text_key}")
        reasoning = _reasoning(t, role, where, f, parts_reasoning)
        if reasoning:
            content = f"<think>\n{reasoning}\n</think>\n\n{content}"
        if not isinstance(calls, list):
            raise UserError(f"{where}: field '{f}.tool_calls': expected a list of tool calls, got {json_type(calls)}")
        if legacy_call is not None:  # OpenAI's deprecated single `function_call` on an assistant message
            calls = [*calls, {"function": legacy_call}]
        for j, call in enumerate(calls):  # OpenAI: the assistant calls a function
            fn = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(fn, dict) or "name" not in fn:
                raise UserError(f"{where}: field '{f}.tool_calls[{j}]': expected {{function: {{name, arguments}}}}")
            payload = {"name": fn["name"], "arguments": _json_cell(fn.get("arguments", {}))}
            content = (content + "\n" if content else "") + _tool_call_text(payload)
        out.append({"role": role, "content": content, **_weight(t, role, where, f)})
    return out


def _prompt(value: Any, where: str, field: str) -> list[Message]:
    """A prompt: plain text (one user turn) or a list of turns."""
    value = _json_cell(value)
    return (
        _turns(value, where, field)
        if isinstance(value, list)
        else [{"role": "user", "content": _text(value, where, field)}]
    )


def _answer(value: Any, where: str, field: str) -> list[Message]:
    """An answer: plain text (one assistant turn), one turn object, or a list of turns."""
    value = _json_cell(value)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return _turns(value, where, field)
    return [{"role": "assistant", "content": _text(value, where, field)}]


def _system(row: dict, where: str) -> list[Message]:
    text = _text(row.get("system"), where, "system")
    return [{"role": "system", "content": text}] if text else []


def normalize_tools(value: Any, where: str, field: str = "tools") -> list[dict[str, Any]]:
    """Function specs, each as OpenAI writes it: `{type: function, function: {name, description, parameters}}`.

    `value` is a list of specs or that list as JSON text (LLaMA-Factory's sharegpt `tools`). Bare
    `{name, description, parameters}` specs (LLaMA-Factory, OpenAI's legacy `functions`) are wrapped as OpenAI's:
    the form Qwen2.5's documentation passes to the chat template, so training, generation and serving render one
    spec the same way whichever form it came in.
    """
    raw = _json_cell(value)
    if isinstance(raw, str):
        raise UserError(
            f"{where}: field {field!r}: expected a list of tool specs (or that list as JSON text), got text that is "
            f"not valid JSON: {raw[:60]!r}"
        )
    specs = []
    for i, spec in enumerate(_list(raw, where, field, "tool specs")):
        if isinstance(spec, dict) and isinstance(spec.get("function"), dict) and "name" in spec["function"]:
            specs.append({"type": spec.get("type", "function"), **spec})
        elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
            specs.append({"type": "function", "function": spec})
        else:
            got = f"an object with the keys {sorted(spec)}" if isinstance(spec, dict) else json_type(spec)
            raise UserError(
                f"{where}: field '{field}[{i}]': expected a function spec — {{type: function, function: {{name, "
                f"description, parameters}}}} or {{name, description, parameters}} — got {got}"
            )
    return specs


def _tools(row: dict, where: str) -> dict[str, Any]:
    """The row's `tools` (OpenAI, TRL, LLaMA-Factory), or OpenAI's legacy `functions`."""
    for key in ("tools", "functions"):
        if row.get(key) not in (None, "", []):
            return {"tools": normalize_tools(row[key], where, key)}
    return {}


def _with_system(row: dict, where: str, turns: list[Message]) -> list[Message]:
    return turns if turns and turns[0]["role"] == "system" else _system(row, where) + turns


def _alpaca_prompt(row: dict, where: str) -> list[Message]:
    prompt = _text(row["instruction"], where, "instruction")
    extra = _text(row.get("input"), where, "input")
    if extra:
        prompt = f"{prompt}\n\n{extra}"
    out = _system(row, where)
    for i, pair in enumerate(_list(row.get("history") or [], where, "history", "[question, answer] pairs")):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise UserError(f"{where}: field 'history[{i}]': expected a [question, answer] pair")
        out += [
            {"role": "user", "content": _text(pair[0], where, f"history[{i}][0]")},
            {"role": "assistant", "content": _text(pair[1], where, f"history[{i}][1]")},
        ]
    return [*out, {"role": "user", "content": prompt}]


# ---------------------------------------------------------------- converters: row -> Example fields


def _from_messages(row: dict, where: str) -> dict[str, Any]:
    return {"messages": _turns(row["messages"], where, "messages"), **_tools(row, where)}


def _from_sharegpt(row: dict, where: str) -> dict[str, Any]:
    return {
        "messages": _with_system(row, where, _turns(row["conversations"], where, "conversations")),
        **_tools(row, where),
    }


def _from_alpaca(row: dict, where: str) -> dict[str, Any]:
    answer = {"role": "assistant", "content": _text(row["output"], where, "output")}
    return {"messages": [*_alpaca_prompt(row, where), answer]}


def _pair(prompt_key: str, answer_key: str) -> Callable[[dict, str], dict[str, Any]]:
    def convert(row: dict, where: str) -> dict[str, Any]:
        prompt = _with_system(row, where, _prompt(row[prompt_key], where, prompt_key))
        return {"messages": prompt + _answer(row[answer_key], where, answer_key), **_tools(row, where)}

    return convert


def _from_text(row: dict, where: str) -> dict[str, Any]:
    return {"messages": [], "text": _text(row["text"], where, "text")}


def _from_preference(row: dict, where: str) -> dict[str, Any]:
    chosen, rejected = _answer(row["chosen"], where, "chosen"), _answer(row["rejected"], where, "rejected")
    if row.get("conversations") is not None:
        prompt = _with_system(row, where, _turns(row["conversations"], where, "conversations"))
    elif row.get("prompt") is not None:
        prompt = _with_system(row, where, _prompt(row["prompt"], where, "prompt"))
    elif row.get("instruction") is not None:
        prompt = _alpaca_prompt(row, where)
    elif row.get("question") is not None:
        prompt = _with_system(row, where, _prompt(row["question"], where, "question"))
    else:
        prompt = []
    if chosen and rejected and chosen[0]["role"] != "assistant" and rejected[0]["role"] != "assistant":
        # Whole conversations: TRL's implicit prompt (no prompt field), or UltraFeedback-style rows whose `prompt`
        # is repeated as the conversations' first turn. Split at the first differing turn.
        shared, chosen, rejected = _split_pair(chosen, rejected, where, ("chosen", "rejected"))
        asked = [m["content"] for m in prompt if m["role"] == "user"]
        repeated = [m["content"] for m in shared if m["role"] == "user"]
        if asked and (not repeated or asked[-1].strip() != repeated[-1].strip()):
            raise UserError(
                f"{where}: field 'chosen': chosen and rejected are whole conversations, but their last question "
                f"({(repeated or [''])[-1][:40]!r}) is not the row's prompt ({asked[-1][:40]!r}); give the answers "
                "only, or conversations that start with the prompt"
            )
        prompt = _with_system(row, where, shared)
    return {"messages": prompt, "chosen": chosen, "rejected": rejected, **_tools(row, where)}


def _split_pair(
    chosen: list[Message], rejected: list[Message], where: str, names: tuple[str, str]
) -> tuple[list[Message], list[Message], list[Message]]:
    """Two whole conversations -> (shared prompt, chosen answer turns, rejected answer turns).

    They are split at the first turn that differs, which must be an assistant turn in both: that is the answer
    being compared.
    """
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    for name, turns in zip(names, (chosen, rejected), strict=True):
        if n >= len(turns) or turns[n]["role"] != "assistant":
            got = f"a {turns[n]['role']} turn" if n < len(turns) else "nothing"
            raise UserError(
                f"{where}: field '{name}[{n}]': the two conversations first differ at turn {n}, which should be the "
                f"assistant answers being compared, but {name} has {got} there; give both the same turns up to the "
                "answer (or put the shared turns under 'prompt')"
            )
    return chosen[:n], chosen[n:], rejected[n:]


def _from_message_pairs(row: dict, where: str) -> dict[str, Any]:
    """`chosen_messages` / `rejected_messages`: two whole conversations that share their first turns."""
    chosen = _turns(row["chosen_messages"], where, "chosen_messages")
    rejected = _turns(row["rejected_messages"], where, "rejected_messages")
    prompt, chosen, rejected = _split_pair(chosen, rejected, where, ("chosen_messages", "rejected_messages"))
    return {"messages": _with_system(row, where, prompt), "chosen": chosen, "rejected": rejected, **_tools(row, where)}


def _from_openai_preference(row: dict, where: str) -> dict[str, Any]:
    """OpenAI's DPO layout: `input: {messages, tools?}`, `preferred_output` and `non_preferred_output` turn lists."""
    given = _json_cell(row["input"])
    if not isinstance(given, dict) or given.get("messages") is None:
        got = f"an object with the keys {sorted(given)}" if isinstance(given, dict) else json_type(given)
        raise UserError(f"{where}: field 'input': expected an object {{messages: [...], tools?}}, got {got}")
    prompt = _turns(given["messages"], where, "input.messages")
    tools = _tools(given, where) or _tools(row, where)
    chosen = _answer(row["preferred_output"], where, "preferred_output")
    rejected = _answer(row["non_preferred_output"], where, "non_preferred_output")
    return {"messages": _with_system(row, where, prompt), "chosen": chosen, "rejected": rejected, **tools}


_GOOD = {"true", "1", "1.0", "yes", "y", "up", "good", "👍", "+1", "thumbs_up", "thumbsup", "desirable"}
_BAD = {"false", "0", "0.0", "no", "n", "down", "bad", "👎", "-1", "thumbs_down", "thumbsdown", "undesirable"}


def parse_label(value: Any, where: str, field: str = "label") -> bool:
    """A feedback label: true/false, 1/0, yes/no, up/down, good/bad, 👍/👎 (any skin tone)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    for mark in ("👍", "👎"):
        if text.startswith(mark):
            text = mark  # drop skin-tone modifiers
    if text in _GOOD:
        return True
    if text in _BAD:
        return False
    raise UserError(
        f"{where}: field {field!r}: {value!r} is not a feedback label; use true/false, 1/0, yes/no, up/down, "
        "good/bad or 👍/👎"
    )


def _from_sharegpt_feedback(row: dict, where: str) -> dict[str, Any]:
    """LLaMA-Factory's KTO layout: a ShareGPT conversation whose last answer is rated by `kto_tag`."""
    turns = _with_system(row, where, _turns(row["conversations"], where, "conversations"))
    last = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=len(turns))
    label = parse_label(row["kto_tag"], where, "kto_tag")
    return {"messages": turns[:last], "completion": turns[last:], "label": label, **_tools(row, where)}


def _from_alpaca_feedback(row: dict, where: str) -> dict[str, Any]:
    """LLaMA-Factory's KTO layout in alpaca form: instruction, input?, output, kto_tag."""
    answer = {"role": "assistant", "content": _text(row["output"], where, "output")}
    label = parse_label(row["kto_tag"], where, "kto_tag")
    return {"messages": _alpaca_prompt(row, where), "completion": [answer], "label": label}


def _from_feedback(row: dict, where: str) -> dict[str, Any]:
    prompt = _with_system(row, where, _prompt(row["prompt"], where, "prompt"))
    completion = _answer(row["completion"], where, "completion")
    return {
        "messages": prompt,
        "completion": completion,
        "label": parse_label(row["label"], where),
        **_tools(row, where),
    }


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Format:
    """A data format: the kind of data it holds, the fields that identify it, and its converter."""

    kind: str
    keys: tuple[str, ...]
    convert: Callable[[dict, str], dict[str, Any]]
    looks_like: str  # one-line description for messages and --help
    # Other fields it reads (the rest are reported as unused). `parallel_tool_calls` (OpenAI) only tells their API
    # whether calls may come several at once; the calls in the rows are trained as they are.
    optional: tuple[str, ...] = ("system", "tools", "functions", "parallel_tool_calls")


FORMATS: dict[str, Format] = {
    "messages": Format("sft", ("messages",), _from_messages, "messages: [{role, content}, ...] (OpenAI/TRL)"),
    "sharegpt": Format(
        "sft", ("conversations",), _from_sharegpt, "conversations: [{from: human|gpt|..., value}], system?, tools?"
    ),
    "alpaca": Format(
        "sft",
        ("instruction", "output"),
        _from_alpaca,
        "instruction, input?, output, system?, history?",
        ("input", "system", "history"),
    ),
    "prompt-completion": Format("sft", ("prompt", "completion"), _pair("prompt", "completion"), "prompt, completion"),
    "question-answer": Format("sft", ("question", "answer"), _pair("question", "answer"), "question, answer"),
    "input-output": Format("sft", ("input", "output"), _pair("input", "output"), "input, output"),
    "text": Format("text", ("text",), _from_text, "text (raw text for continued pretraining)", ()),
    "preference": Format(
        "preference",
        ("chosen", "rejected"),
        _from_preference,
        "prompt?, chosen, rejected (text or message lists)",
        ("prompt", "instruction", "input", "question", "history", "system", "tools", "functions"),
    ),
    "preference-messages": Format(
        "preference",
        ("chosen_messages", "rejected_messages"),
        _from_message_pairs,
        "chosen_messages, rejected_messages (two whole conversations sharing their first turns)",
    ),
    "openai-preference": Format(
        "preference",
        ("input", "preferred_output", "non_preferred_output"),
        _from_openai_preference,
        "input: {messages, tools?}, preferred_output, non_preferred_output (OpenAI DPO)",
    ),
    "sharegpt-preference": Format(
        "preference",
        ("conversations", "chosen", "rejected"),
        _from_preference,
        "conversations, chosen: {from, value}, rejected: {from, value}",
    ),
    "feedback": Format("feedback", ("prompt", "completion", "label"), _from_feedback, "prompt, completion, label"),
    "sharegpt-feedback": Format(
        "feedback", ("conversations", "kto_tag"), _from_sharegpt_feedback, "conversations, kto_tag (true/false)"
    ),
    "alpaca-feedback": Format(
        "feedback",
        ("instruction", "output", "kto_tag"),
        _from_alpaca_feedback,
        "instruction, input?, output, kto_tag (true/false)",
        ("input", "system", "history"),
    ),
}

# Ties the subset rule cannot break: alpaca's optional `input` makes its rows fit input-output too.
# A `messages` column next to chosen/rejected (UltraFeedback's binarised rows) is the chosen conversation again.
_SHADOWS = {"alpaca": ("input-output",), "alpaca-feedback": ("input-output",), "preference": ("messages",)}

# Every field name a format reads: the targets `--columns` may map onto.
FIELD_NAMES = sorted(
    {k for f in FORMATS.values() for k in f.keys} | {"system", "history", "tools", "prompt", "instruction"}
)


def _candidates(row: dict) -> list[str]:
    present = {k for k, v in row.items() if v is not None}
    fits = [n for n, f in FORMATS.items() if set(f.keys) <= present]
    fits = [n for n in fits if not any(set(FORMATS[n].keys) < set(FORMATS[m].keys) for m in fits)]
    fits = [n for n in fits if not any(n in _SHADOWS.get(m, ()) for m in fits)]
    if len(fits) > 1 and "text" in fits:
        fits.remove("text")  # `text` is a common extra column; it decides the format only on its own
    return fits


def _first(refs: list[str], n: int = 3) -> str:
    return ", ".join(refs[:n]) + (", …" if len(refs) > n else "")


def detect_format(rows: list[Row], values: list[Any] | None = None) -> tuple[str, str]:
    """Name the format every row is in, and why; a mixed, ambiguous or unknown file is a UserError."""
    values = values if values is not None else [r.value for r in rows]
    fits: dict[str, list[str]] = {}
    for row, value in zip(rows, values, strict=True):
        if not isinstance(value, dict):
            raise UserError(f"{row.where}: expected an object (one example) per row, got {json_type(value)}")
        c = _candidates(value)
        if len(c) > 1:
            options = "; ".join(f"{n} ({', '.join(FORMATS[n].keys)})" for n in c)
            raise UserError(
                f"{row.where}: the fields {sorted(value)} fit several formats — {options}; choose one with "
                f"--format {c[0]}"
            )
        fits.setdefault(c[0] if c else "", []).append(row.ref)
    if "" in fits:
        bad = next(r for r, v in zip(rows, values, strict=True) if not _candidates(v))
        others = [n for n in fits if n]
        hint = f"the other rows are {others[0]} ({', '.join(FORMATS[others[0]].keys)}); " if len(others) == 1 else ""
        wanted = "; ".join(f"{n}: {f.looks_like}" for n, f in FORMATS.items())
        present = sorted(k for k, v in bad.value.items() if v is not None)
        nulls = sorted(k for k, v in bad.value.items() if v is None)
        null_note = f" (null: {', '.join(nulls)})" if nulls else ""
        raise UserError(
            f"{bad.where}: cannot tell the format from fields {present}{null_note}; {hint}expected one of — {wanted}; "
            "or map your column names with --columns prompt=COLUMN,completion=COLUMN"
        )
    if len(fits) > 1:
        parts = sorted(fits.items(), key=lambda kv: -len(kv[1]))
        listing = "; ".join(
            f"{len(refs)} row{' looks' if len(refs) == 1 else 's look'} like {n} (first: {_first(refs)})"
            for n, refs in parts
        )
        raise UserError(
            f"{rows[0].path}: mixed formats — {listing}; keep one format per file, or force one with --format NAME"
        )
    fmt = next(iter(fits))
    spec = FORMATS[fmt]
    unused = sorted({k for v in values for k in v} - set(spec.keys) - set(spec.optional))
    reason = f"every row has the fields {', '.join(spec.keys)}"
    if unused:
        # A `label` next to `text`, say, is easy to miss: say what is ignored, so a mapping can be added.
        shown = ", ".join(unused[:6]) + (", …" if len(unused) > 6 else "")
        reason += f"; not used: {shown} (map them with --columns if they matter)"
    return fmt, reason


def parse_columns(spec: str | None) -> dict[str, str]:
    """`--columns prompt=pergunta,completion=resposta` -> {"prompt": "pergunta", "completion": "resposta"}."""
    mapping: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        target, sep, source = (s.strip() for s in part.partition("="))
        if not sep or not target or not source:
            raise UserError(f"--columns: {part.strip()!r} is not FIELD=COLUMN; e.g. --columns prompt=pergunta")
        if target not in FIELD_NAMES:
            raise unknown_choice("--columns field", target, FIELD_NAMES)
        mapping[target] = source
    return mapping


def _map_columns(row: Row, mapping: dict[str, str]) -> Any:
    value = row.value
    if not mapping or not isinstance(value, dict):
        return value
    for target, source in mapping.items():
        if source not in value:
            raise UserError(
                f"{row.where}: no column {source!r} (mapped to {target} by --columns); the row has {sorted(value)}"
            )
    out = {k: v for k, v in value.items() if k not in mapping.values()}
    out.update({target: value[source] for target, source in mapping.items()})
    return out


def load_spec(spec: str, fmt: str | None = None, columns: str | None = None) -> tuple[Dataset, Dataset | None]:
    """A file or directory, or `example:NAME` (a bundled dataset: its train and validation files), as the
    `lapidar data` commands and the web app name data; `columns` as `--columns` (prompt=question,...)."""
    mapping = parse_columns(columns)
    if spec.startswith("example:"):
        train, val = bundled_example(spec.removeprefix("example:"))
        return load_dataset(train, fmt, mapping), load_dataset(val, fmt, mapping)
    return load_dataset(Path(spec), fmt, mapping), None


def load_dataset(path: Path, fmt: str | None = None, columns: dict[str, str] | None = None) -> Dataset:
    """Read a file (or directory), detect or apply its format and convert every row.

    Content problems (empty answers, odd text) are left for the quality report; structural ones (a missing field,
    a wrong type) are a UserError naming the row and the field.
    """
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: the file holds no rows")
    columns = columns or {}
    values = [_map_columns(r, columns) for r in rows]
    if fmt is None:
        fmt, reason = detect_format(rows, values)
    elif fmt not in FORMATS:
        raise unknown_choice("data format", fmt, list(FORMATS))
    else:
        reason = "chosen with --format"
    if columns:
        reason += " (after --columns " + ",".join(f"{t}={s}" for t, s in columns.items()) + ")"
    examples = convert_rows(rows, fmt, columns, values)
    return Dataset(path, rows, examples, fmt, reason, FORMATS[fmt].kind, columns)


def convert_rows(
    rows: list[Row], fmt: str, columns: dict[str, str] | None = None, values: list[Any] | None = None
) -> list[Example]:
    """Convert raw rows in format `fmt` (after the `--columns` mapping) into examples, one per row."""
    spec = FORMATS[fmt]
    values = values if values is not None else [_map_columns(r, columns or {}) for r in rows]
    examples = []
    for row, value in zip(rows, values, strict=True):
        if not isinstance(value, dict):
            raise UserError(f"{row.where}: expected an object (one example) per row, got {json_type(value)}")
        missing = [k for k in spec.keys if value.get(k) is None]
        if missing:
            raise UserError(
                f"{row.where}: missing field {missing[0]!r} (the file is in {fmt} format, which needs "
                f"{', '.join(spec.keys)}); fix the row or remove it"
            )
        notes: list[str] = list(row.notes)
        token = _NOTES.set(notes)
        try:
            fields = spec.convert(value, row.where)
        finally:
            _NOTES.reset(token)
        examples.append(Example(**fields, source=row.where, kind=spec.kind, ref=row.ref, notes=tuple(notes)))
    return examples


_KIND_WORDS = {
    "sft": "chat rows (messages, sharegpt, alpaca, prompt/completion ...)",
    "text": "raw text (a `text` field, or .txt/.md files)",
    "preference": "preference rows (prompt, chosen, rejected)",
    "feedback": "feedback rows (prompt, completion, label)",
}


def require_kind(ds: Dataset, kinds: tuple[str, ...], needed_by: str = "this command") -> None:
    """Fail clearly when a caller that needs, e.g., chat rows is given preference or raw-text data."""
    if ds.kind not in kinds:
        wanted = " or ".join(_KIND_WORDS[k] for k in kinds)
        raise UserError(
            f"{ds.path}: the rows are {_KIND_WORDS[ds.kind]} — format {ds.fmt}, {ds.reason}; {needed_by} needs "
            f"{wanted}. Check it with `lapidar data check {ds.path}`"
        )


def _check_conversation(messages: list[Message], where: str) -> None:
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise UserError(f"{where}: no assistant message, so there is nothing to learn; add the expected answer")
    if not any(m["content"].strip() for m in messages if m["role"] == "assistant"):
        raise UserError(f"{where}: every assistant answer is empty; fill in the answer or remove the row")
    if not any(m["content"].strip() for m in messages if trains(m)):
        raise UserError(
            f"{where}: every assistant answer has weight 0 (context only), so there is nothing to learn; set "
            '"weight": 1 on the answer to train on, or remove the row'
        )


def load_examples(
    path: Path, fmt: str | None = None, *, columns: dict[str, str] | None = None, kinds: tuple[str, ...] = ("sft",)
) -> tuple[list[Example], str]:
    """Read a file of training rows; returns (examples, format name). By default only chat (SFT) data is accepted.

    Chat rows without an answer are refused here, one row at a time; `lapidar data check` lists them all.
    """
    ds = load_dataset(path, fmt, columns)
    require_kind(ds, kinds, "supervised fine-tuning (`lapidar train`)" if kinds == ("sft",) else "this command")
    if ds.kind == "sft":
        for ex in ds.examples:
            _check_conversation(ex.messages, ex.source)
    return ds.examples, ds.fmt
