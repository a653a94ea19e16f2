"""Write examples in another format: OpenAI/TRL `messages`, `alpaca` or `sharegpt` (LLaMA-Factory's layouts).

Each target handles chat (SFT) rows and preference rows; feedback rows go to `messages` (prompt/completion/label),
`sharegpt` or `alpaca` (`kto_tag`, LLaMA-Factory's KTO layouts). A row a target cannot hold (tool turns in alpaca, say) is an error naming the row.
Everything written here is read back by `lapidar.data.formats` into the same examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lapidar.data.formats import Example, Message
from lapidar.errors import UserError, unknown_choice

__all__ = ["TARGETS", "convert_examples"]


def _to_messages(ex: Example) -> dict[str, Any]:
    tools = {"tools": ex.tools} if ex.tools else {}
    if ex.kind == "sft":
        return {"messages": ex.messages, **tools}
    if ex.kind == "preference":
        return {"prompt": ex.messages, "chosen": ex.chosen, "rejected": ex.rejected, **tools}
    if ex.kind == "feedback":
        return {"prompt": ex.messages, "completion": ex.completion, "label": ex.label, **tools}
    raise UserError(f"{ex.source}: raw text has no conversation to convert; it is already in its simplest form")


def _split_system(ex: Example, turns: list[Message], target: str) -> tuple[str, list[Message]]:
    system = turns[0]["content"] if turns and turns[0]["role"] == "system" else ""
    rest = turns[1:] if system or (turns and turns[0]["role"] == "system") else turns
    for i, m in enumerate(rest):
        if m["role"] == "system":
            raise UserError(f"{ex.source}: message {i}: {target} holds a system message only at the start")
    return system, rest


def _single_answer(ex: Example, turns: list[Message] | None, field: str, target: str) -> str:
    if not turns or len(turns) != 1 or turns[0]["role"] != "assistant":
        raise UserError(f"{ex.source}: field {field!r}: {target} needs exactly one assistant answer here")
    return turns[0]["content"]


def _alpaca_prompt(ex: Example, turns: list[Message]) -> dict[str, Any]:
    system, rest = _split_system(ex, turns, "alpaca")
    roles = [m["role"] for m in rest]
    if not roles or roles[-1] != "user" or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise UserError(
            f"{ex.source}: alpaca needs alternating user/assistant turns (no tool turns) ending with a question; "
            "convert to messages or sharegpt instead"
        )
    out: dict[str, Any] = {"instruction": rest[-1]["content"], "input": ""}
    if system:
        out["system"] = system
    if len(rest) > 1:
        out["history"] = [[rest[i]["content"], rest[i + 1]["content"]] for i in range(0, len(rest) - 1, 2)]
    return out


def _to_alpaca(ex: Example) -> dict[str, Any]:
    if ex.kind == "text":
        raise UserError(f"{ex.source}: raw text has no conversation to convert")
    weighted = [i for i, m in enumerate(ex.messages) if "weight" in m]
    if weighted:
        raise UserError(
            f"{ex.source}: message {weighted[0]} has a loss weight ({ex.messages[weighted[0]]['weight']}), which "
            "alpaca cannot hold; convert to messages or sharegpt instead"
        )
    if ex.kind == "sft":
        if not ex.messages or ex.messages[-1]["role"] != "assistant":
            raise UserError(f"{ex.source}: alpaca needs the conversation to end with an assistant answer")
        return {**_alpaca_prompt(ex, ex.messages[:-1]), "output": ex.messages[-1]["content"]}
    if ex.kind == "preference":
        return {
            **_alpaca_prompt(ex, ex.messages),
            "chosen": _single_answer(ex, ex.chosen, "chosen", "alpaca"),
            "rejected": _single_answer(ex, ex.rejected, "rejected", "alpaca"),
        }
    if ex.kind == "feedback":  # LLaMA-Factory's KTO layout in alpaca form
        answer = _single_answer(ex, ex.completion, "completion", "alpaca")
        return {**_alpaca_prompt(ex, ex.messages), "output": answer, "kto_tag": ex.label}
    raise UserError(f"{ex.source}: alpaca has no layout for {ex.kind} rows; use --to messages")


_FROM = {"user": "human", "assistant": "gpt", "tool": "observation"}
_TOOL_CALL = re.compile(r"\A<tool_call>\n(.*)\n</tool_call>\Z", re.S)


def _sharegpt_turn(m: Message) -> dict[str, Any]:
    # A turn's loss weight travels as Axolotl writes it in ShareGPT rows (`weight`: 0 or 1).
    weight = {"weight": m["weight"]} if "weight" in m else {}
    call = _TOOL_CALL.match(m["content"]) if m["role"] == "assistant" else None
    if call:  # an answer that is only tool calls is ShareGPT's `function_call` turn
        blocks = call.group(1).split("\n</tool_call>\n<tool_call>\n")
        try:  # several calls: LLaMA-Factory's JSON list of {name, arguments}
            value = (
                call.group(1) if len(blocks) == 1 else json.dumps([json.loads(b) for b in blocks], ensure_ascii=False)
            )
        except json.JSONDecodeError:
            value = call.group(1)
        return {"from": "function_call", "value": value, **weight}
    return {"from": _FROM[m["role"]], "value": m["content"], **weight}


def _to_sharegpt(ex: Example) -> dict[str, Any]:
    if ex.kind == "text":
        raise UserError(f"{ex.source}: raw text has no conversation to convert")
    system, prompt = _split_system(ex, ex.messages, "sharegpt")
    out: dict[str, Any] = {}
    if ex.kind == "sft":
        out["conversations"] = [_sharegpt_turn(m) for m in prompt]
    elif ex.kind == "preference":
        out["conversations"] = [_sharegpt_turn(m) for m in prompt]
        out["chosen"] = {"from": "gpt", "value": _single_answer(ex, ex.chosen, "chosen", "sharegpt")}
        out["rejected"] = {"from": "gpt", "value": _single_answer(ex, ex.rejected, "rejected", "sharegpt")}
    else:  # feedback: LLaMA-Factory's KTO layout
        out["conversations"] = [_sharegpt_turn(m) for m in prompt + (ex.completion or [])]
        out["kto_tag"] = ex.label
    if system:
        out["system"] = system
    if ex.tools:
        out["tools"] = json.dumps(ex.tools, ensure_ascii=False)
    return out


TARGETS: dict[str, Callable[[Example], dict[str, Any]]] = {
    "messages": _to_messages,
    "alpaca": _to_alpaca,
    "sharegpt": _to_sharegpt,
}


def convert_examples(examples: list[Example], to: str) -> list[dict[str, Any]]:
    """Every example as a row of format `to` (messages, alpaca or sharegpt)."""
    if to not in TARGETS:
        raise unknown_choice("target format", to, list(TARGETS))
    return [TARGETS[to](ex) for ex in examples]
