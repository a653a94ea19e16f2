"""Render conversations with the model's chat template, tokenise, and mask everything but the trained turns.

The loss is computed only on the assistant's answers and the end-of-turn token that follows them, so the model
learns to answer and to stop — not to repeat questions. A turn's `weight` changes that (Axolotl's and OpenAI's
per-message weights, read by `lapidar.data.formats`): an assistant turn with weight 0 is context only, any other
turn with weight 1 is trained too. Trained spans are found on the rendered *text* (the template is rendered for each
prefix of the conversation) and mapped to tokens with the tokenizer's offsets, so this works for any
prefix-consistent chat template, not only ChatML.

Tool specs (`Example.tools`) go to the template's `tools=` argument: Qwen2.5's official template writes them into
the system turn, so they are context like the rest of the prompt; tool results (role `tool`) become the template's
`<tool_response>` user turn, also context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from lapidar.data.formats import trains
from lapidar.errors import UserError

__all__ = [
    "IGNORE",
    "Encoded",
    "answer_spans",
    "collate",
    "collate_padding_free",
    "encode_conversation",
    "render_conversation",
    "render_prompt",
]

IGNORE = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: `input_ids` and `labels` of equal length (labels = IGNORE outside answers)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_answer_tokens(self) -> int:
        """How many tokens carry loss."""
        return sum(1 for x in self.labels if x != IGNORE)


def _plain(messages: list[dict]) -> list[dict]:
    # The template sees role, content (and tool_calls/name when a caller passes them), never lapidar's `weight`.
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, tools: list[Any] | None) -> str:
    return tokenizer.apply_chat_template(
        _plain(messages), tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
    )


# Whether a chat template writes tool specs into the prompt, by template text: a property of the template, so it is
# rendered once per template rather than twice for every row that carries tools.
_SHOWS_TOOLS: dict[str, bool] = {}
_PROBE_TOOLS = [
    {"type": "function", "function": {"name": "probe", "description": "", "parameters": {"type": "object"}}}
]


def _check_tools_rendered(tokenizer, messages: list[dict], tools: list[Any] | None, where: str) -> None:
    """A template that ignores `tools` (lapidar's plain template for base models) would drop the specs silently."""
    if not tools:
        return
    key = str(tokenizer.chat_template)
    if key not in _SHOWS_TOOLS:
        probe = [{"role": "user", "content": "?"}]
        _SHOWS_TOOLS[key] = _render(tokenizer, probe, False, _PROBE_TOOLS) != _render(tokenizer, probe, False, None)
    if not _SHOWS_TOOLS[key]:
        first = json.dumps(tools[0], ensure_ascii=False)[:60]
        raise UserError(
            f"{where}: the row carries tool specs (tools: {first}…) but this model's chat template has no place for "
            "them (base models use a plain question/answer template); train an instruct (chat) model — "
            "`lapidar models` lists them — or remove the tools field"
        )


def render_prompt(tokenizer, messages: list[dict], tools: list[Any] | None = None) -> str:
    """The text a model continues to answer `messages`: the chat template with the generation prompt.

    `tools` are function specs (OpenAI style, `{"type": "function", "function": {name, description, parameters}}`);
    Qwen2.5's template lists them in the system turn and tells the model to answer with `<tool_call>` blocks.
    Generation, chat, the server and eval call this so that they show the model what training showed it.
    """
    _check_tools_rendered(tokenizer, messages, tools, "prompt")
    return _render(tokenizer, messages, add_generation_prompt=True, tools=tools)


def render_conversation(tokenizer, messages: list[dict], tools: list[Any] | None = None) -> str:
    """A whole conversation as the model is trained on it (no generation prompt)."""
    return _render(tokenizer, messages, add_generation_prompt=False, tools=tools)


def answer_spans(
    tokenizer, messages: list[dict], where: str = "", tools: list[Any] | None = None, train_from: int = 0
) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages`; return the text and the character spans `[start, end)` that the loss is taken on.

    Each span covers one trained turn — by default every assistant answer (see `lapidar.data.formats.trains`) —
    plus the EOS token the template puts after it. Turns before index `train_from` are context whatever their
    weight (the prompt of a preference pair).
    """
    _check_tools_rendered(tokenizer, messages, tools, where)
    text = _render(tokenizer, messages, False, tools)
    eos = tokenizer.eos_token
    spans = []
    for i, m in enumerate(messages):
        if i < train_from or not trains(m):
            continue
        if m["role"] != "assistant":
            # A trained user/system/tool turn (weight 1): its content, and the EOS when the template closes the
            # turn right after it. Found in the text after the preceding turns.
            # (A prefix ending in a tool turn closes it, where the whole text may go on with another tool
            # result: only the part the two renderings share is known to come before this turn.)
            before = _render(tokenizer, messages[:i], False, tools) if i else ""
            shared = next((k for k, (a, b) in enumerate(zip(before, text, strict=False)) if a != b), len(before))
            start = text.find(m["content"], shared) if m["content"] else -1
            if start < 0:
                raise UserError(f"{where}: the chat template does not render message {i} as it is written")
            end = start + len(m["content"])
            spans.append((start, end + len(eos) if text.startswith(eos, end) else end))
            continue
        prompt = _render(tokenizer, messages[:i], True, tools) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False, tools)
        if not (text.startswith(upto) and upto.startswith(prompt)):
            raise UserError(f"{where}: the chat template does not render this conversation prefix by prefix")
        end = upto.rfind(eos)
        if end < len(prompt):
            raise UserError(
                f"{where}: the chat template does not end assistant message {i} with the EOS token {eos!r}; "
                "the model would never learn to stop"
            )
        spans.append((len(prompt), end + len(eos)))
    return text, spans


def encode_conversation(
    tokenizer,
    messages: list[dict],
    max_length: int,
    where: str = "",
    tools: list[Any] | None = None,
    train_from: int = 0,
) -> Encoded:
    """Tokenise one conversation and build its labels (trained turns + EOS kept, everything else IGNORE)."""
    text, spans = answer_spans(tokenizer, messages, where, tools, train_from)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    si = 0
    for t, (start, end) in enumerate(enc["offset_mapping"]):
        while si < len(spans) and start >= spans[si][1]:
            si += 1
        if si < len(spans) and start >= spans[si][0] and end <= spans[si][1] and end > start:
            labels[t] = ids[t]
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example. Shapes: input_ids/labels/attention_mask [B, T]."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def collate_padding_free(batch: list[Encoded]) -> dict[str, torch.Tensor]:
    """Concatenate a batch into one row with no padding (see `lapidar.models.attention`).

    Returns input_ids/labels/position_ids [1, N] (N = the examples' total length, positions restarting at 0 for each
    example) and cu_seq_lens_q [S+1] (the examples' start offsets, then N). Each example's first label is IGNORE, so
    the last token of one example is never trained to predict the first token of the next; a padded batch never
    uses that label either (position t predicts t+1).
    """
    lengths = [len(e.input_ids) for e in batch]
    ids = torch.tensor([t for e in batch for t in e.input_ids], dtype=torch.long)[None]
    labels = torch.tensor([t for e in batch for t in e.labels], dtype=torch.long)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    bounds = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    labels[0, bounds[:-1].long()] = IGNORE
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "cu_seq_lens_q": bounds}
