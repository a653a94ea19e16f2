"""Equivalence checks after an export: does the exported model answer like the model that was trained?

`reference()` records, for a few prompts, what the run's own model does (prompt token ids, greedy answer, and the
next-token logits along that answer). `check_merged()` reloads the merged folder with plain transformers and
`check_gguf()` loads the GGUF file with llama-cpp-python; both compare against the reference and return `Check`
rows for the result table. Logits are compared teacher-forced on the reference sequence, so one early
disagreement does not hide how close the rest is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lapidar.inference.generate import Loaded
from lapidar.training.hardware import cpu_has_amx

__all__ = ["Check", "Reference", "check_gguf", "check_merged", "reference"]

# A tokenizer torture line: repeated spaces, tabs, digits (Qwen splits them one by one), accents, CJK, emoji,
# a contraction and a control token written in the text.
TOKENIZER_PROBE = "Hello  world!\n\t1234567 naïve café 你好 🤖 don't <|im_end|> end"


@dataclass
class Check:
    """One row of the result table. `required` checks failing make the export command exit with status 1."""

    name: str
    value: str
    expected: str
    ok: bool
    required: bool = True


@dataclass
class Reference:
    """What the source model does on one prompt."""

    messages: list[dict]
    prompt_text: str
    prompt_ids: list[int]
    answer_ids: list[int]  # greedy continuation, ending with an end-of-turn id when it stopped
    answer_text: str
    logits: torch.Tensor  # [len(answer_ids), vocab] float32: the logits that chose each answer token


def _sequence_logits(model, ids: list[int], n_prompt: int) -> torch.Tensor:
    """Teacher-forced logits at the positions that predict tokens n_prompt.. of `ids`: [len(ids) - n_prompt, V]."""
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device)).logits[0]
    return out[n_prompt - 1 : len(ids) - 1].float().cpu()


def _stop_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]


@torch.no_grad()
def reference(loaded: Loaded, prompts: list[list[dict]], max_new_tokens: int) -> list[Reference]:
    """Greedy answers and their logits from the source model (adapter not yet merged)."""
    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    refs = []
    for messages in prompts:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        out = model.generate(
            input_ids=torch.tensor([ids], device=device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        answer = out[0, len(ids) :].tolist()
        logits = _sequence_logits(model, ids + answer, len(ids))
        refs.append(Reference(messages, text, ids, answer, tok.decode(answer, skip_special_tokens=True), logits))
    return refs


def _tolerance(dtype: torch.dtype) -> float:
    # Merging W + B·A·s in fp32 moves logits by ~1e-5; in bf16/fp16 each merged weight is rounded once more
    # (~0.4% relative), which can move large logits by more than 0.1 and, rarely, flip a near-tie.
    return 1e-3 if dtype == torch.float32 else 0.1


@torch.no_grad()
def check_merged(directory: Path, refs: list[Reference], max_new_tokens: int) -> list[Check]:
    """Reload `directory` with plain transformers (no lapidar, no peft) and compare with the reference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype="auto").eval()
    templates_equal = all(
        tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) == r.prompt_text for r in refs
    )
    max_diff, same_text, agree, total = 0.0, 0, 0, 0
    for r in refs:
        logits = _sequence_logits(model, r.prompt_ids + r.answer_ids, len(r.prompt_ids))
        max_diff = max(max_diff, float((logits - r.logits).abs().max()))
        agree += int((logits.argmax(-1) == r.logits.argmax(-1)).sum())
        total += len(r.answer_ids)
        # Plain generate: the end-of-turn token comes from the saved generation_config.json.
        out = model.generate(
            input_ids=torch.tensor([r.prompt_ids]),
            attention_mask=torch.ones(1, len(r.prompt_ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
        same_text += tok.decode(out[0, len(r.prompt_ids) :], skip_special_tokens=True) == r.answer_text
    tol = _tolerance(model.dtype)
    exact = model.dtype == torch.float32  # bf16/fp16: only near-ties may differ, so those two checks only warn
    rate = agree / max(total, 1)
    tied = model.config.tie_word_embeddings
    shared = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return [
        Check("chat template (plain AutoTokenizer)", "identical" if templates_equal else "differs", "identical",
              templates_equal),
        Check("max |Δ logit| vs source model", f"{max_diff:.2e}", f"≤ {tol:g}", max_diff <= tol, required=exact),
        Check("top-1 agreement (teacher-forced)", f"{rate:.1%} of {total}", "100%" if exact else "≥ 98%",
              rate >= (1.0 if exact else 0.98)),
        Check("greedy answers identical", f"{same_text}/{len(refs)}", f"{len(refs)}/{len(refs)}",
              same_text == len(refs), required=exact),
        Check("tied embeddings", f"tied={tied}, shared={shared}", "shared when tied", shared == tied),
    ]  # fmt: skip


def _llama(path: Path, n_ctx: int):
    """Load a GGUF file in llama.cpp for the checks.

    On a CPU with AMX, llama.cpp's AMX weight repacking crashes (SIGSEGV in ggml_backend_amx_mul_mat) on K-quant
    files such as q4_k_m (llama.cpp issue #20824), so weights are loaded without extra buffer types there, as
    llama-server does with its no-repack option: the same kernels' plain CPU path, same answers.
    """
    import llama_cpp.llama_cpp as capi
    from llama_cpp import Llama

    threads = max(1, min(4, os.cpu_count() or 1))

    def load():
        return Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, logits_all=True, verbose=False, seed=0
        )

    if not cpu_has_amx():
        return load()
    defaults = capi.llama_model_default_params

    def no_repack():
        params = defaults()
        params.use_extra_bufts = False
        return params

    capi.llama_model_default_params = no_repack  # llama-cpp-python's Llama() takes no use_extra_bufts argument
    try:
        return load()
    finally:
        capi.llama_model_default_params = defaults


def _llama_greedy(llm, prompt_ids: list[int], max_new_tokens: int, stop: set[int]) -> list[int]:
    llm.reset()
    llm.eval(prompt_ids)
    answer: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        answer.append(nxt)
        if nxt in stop:
            break
        llm.eval([nxt])
    return answer


def _llama_logits(llm, ids: list[int], n_prompt: int) -> torch.Tensor:
    llm.reset()
    llm.eval(ids)
    return torch.from_numpy(np.array(llm.scores[n_prompt - 1 : len(ids) - 1], dtype=np.float32))


def check_gguf(path: Path, tokenizer, refs: list[Reference], max_new_tokens: int, exact: bool) -> list[Check]:
    """Load the GGUF file in llama.cpp and compare tokenisation, chat template, greedy tokens and top-1 choices.

    `exact` (f32/f16/bf16): greedy tokens must match the reference; quantised files report agreement only.
    """
    n_ctx = max(len(r.prompt_ids) + max(len(r.answer_ids), max_new_tokens) for r in refs) + 8
    llm = _llama(path, max(256, n_ctx))
    stop = set(_stop_ids(tokenizer))
    probe_ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    same_tokens = llm.tokenize(TOKENIZER_PROBE.encode(), add_bos=False, special=True) == probe_ids and all(
        llm.tokenize(r.prompt_text.encode(), add_bos=False, special=True) == r.prompt_ids for r in refs
    )
    template_ok = llm.metadata.get("tokenizer.chat_template") == tokenizer.chat_template
    same_greedy, agree, total, max_diff = 0, 0, 0, 0.0
    for r in refs:
        same_greedy += _llama_greedy(llm, r.prompt_ids, max_new_tokens, stop) == r.answer_ids
        logits = _llama_logits(llm, r.prompt_ids + r.answer_ids, len(r.prompt_ids))
        agree += int((logits.argmax(-1) == r.logits.argmax(-1)).sum())
        total += len(r.answer_ids)
        max_diff = max(max_diff, float((logits - r.logits).abs().max()))
    llm.close()
    rate = agree / max(total, 1)
    n = len(refs)
    return [
        Check("tokenizer (llama.cpp vs HF ids)", "identical" if same_tokens else "differs", "identical", same_tokens),
        Check("chat template in GGUF", "identical" if template_ok else "differs", "identical", template_ok),
        Check("greedy tokens identical", f"{same_greedy}/{n}", f"{n}/{n}", same_greedy == n, required=exact),
        Check("top-1 agreement (teacher-forced)", f"{rate:.1%} of {total}", "100%" if exact else "≥ 90%",
              rate >= (1.0 if exact else 0.9), required=exact),
        Check("max |Δ logit| vs source model", f"{max_diff:.3f}", "informational", True, required=False),
    ]  # fmt: skip
