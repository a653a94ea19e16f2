"""Training objectives, one registry: name -> `Objective` (how rows are encoded, what a batch's loss is).

The one training loop (`training/loop.py`) knows nothing about sft or DPO; it asks the objective to encode rows,
to start (a reference model for DPO/KTO), and to turn a batch into a `BatchLoss`: a summed loss, how many units it
sums over (label tokens for sft/pretrain, examples for dpo/kto), the tokens processed and extra statistics. The loop
divides the summed loss of an accumulated step by the units of the whole step — summed across processes when there
are several — so every token (or example) weighs the same wherever it landed.

- **sft**: next-token cross-entropy on the answers only (`training/loss.py`).
- **pretrain**: the same loss on every token of packed blocks of raw text.
- **dpo** (Rafailov et al. 2023, arXiv:2305.18290): for a prompt x with a chosen answer y_w and a rejected y_l, the
  implicit reward of an answer is `r(x, y) = β · (log π(y|x) − log π_ref(y|x))` and the loss is
  `−log σ(r(x, y_w) − r(x, y_l))`. It starts at ln 2 = 0.693 (policy = reference).
- **kto** (Ethayarajh et al. 2024, arXiv:2402.01306, Eq. 7-8): rows are rated one at a time. With the same reward
  `r` and a reference point z0 ≈ KL(π ‖ π_ref), a 👍 row costs `λ_D · (1 − σ(β (r − z0)))` and a 👎 row
  `λ_U · (1 − σ(β (z0 − r)))`. Like TRL's KTOTrainer, z0 is estimated per batch from *mismatched* pairs — prompt
  i with the completion of row i−1 — detached and clamped at 0.

Preference log-probabilities are summed over the answer tokens only (the answer and its EOS; the prompt, including
earlier assistant turns, is masked). The reference is the base model with the LoRA adapter switched off
(`model.disable_adapter()`, no second copy of the weights) or, for full fine-tuning, a frozen copy made before the
first step. Its log-probabilities never change, so each one is computed once and cached.

Preference metrics: `rewards_chosen`, `rewards_rejected`, `reward_margin` (= chosen − rejected), `reward_accuracy`,
`logp_chosen`, `logp_rejected`, and for KTO `kl` (z0). For KTO "chosen" means the 👍 rows and "rejected" the 👎 rows,
and `reward_accuracy` is the share of rows whose reward has the sign of their label.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from lapidar.data.batching import pack_texts
from lapidar.data.formats import Example, Message
from lapidar.data.tokenize import IGNORE, Encoded, collate, collate_padding_free, encode_conversation
from lapidar.errors import UserError, unknown_choice
from lapidar.models.qwen import BASE_EOS
from lapidar.training.distributed import unwrap
from lapidar.training.loss import CHUNK, causal_lm_loss, label_forward

if TYPE_CHECKING:
    from lapidar.config import TrainConfig

__all__ = [
    "KINDS_FOR_OBJECTIVE",
    "OBJECTIVES",
    "OBJECTIVE_FOR_KIND",
    "BatchLoss",
    "Objective",
    "PreferenceRow",
    "dpo_loss",
    "encode_answer",
    "get_objective",
    "kto_kl",
    "kto_loss",
    "sequence_logps",
]

# What each kind of data trains by default, and which kinds each objective accepts.
OBJECTIVE_FOR_KIND = {"sft": "sft", "text": "pretrain", "preference": "dpo", "feedback": "kto"}
KINDS_FOR_OBJECTIVE = {"sft": ("sft",), "pretrain": ("text",), "dpo": ("preference",), "kto": ("feedback",)}


@dataclass
class BatchLoss:
    """What one micro-batch gives the loop.

    loss_sum: the summed loss (scalar, with grad in training) · units: what it sums over (label tokens or examples)
    · tokens: tokens that went through the model (for tokens/s) · stats: extra statistics as name -> (sum, count).
    """

    loss_sum: torch.Tensor
    units: int
    tokens: int
    stats: dict[str, tuple[float, int]] = field(default_factory=dict)


def _add(stats: dict[str, tuple[float, int]], key: str, values: torch.Tensor) -> None:
    values = values.detach().float().reshape(-1)
    s, n = stats.get(key, (0.0, 0))
    stats[key] = (s + values.sum().item(), n + values.numel())


def _autocast(ctx: Context):
    """The run's 16-bit autocast (bf16, or fp16 under loss scaling), or none (fp32)."""
    return torch.autocast(ctx.device.type, dtype=torch.float16 if ctx.fp16 else torch.bfloat16,
                          enabled=ctx.bf16 or ctx.fp16)  # fmt: skip


@dataclass
class Context:
    """What every batch of a run needs: the model, its reference (dpo/kto), how to build tensors, the settings."""

    model: Any
    tokenizer: Any
    cfg: TrainConfig
    bf16: bool
    padding_free: bool
    reference: Any = None
    fp16: bool = False  # fp16 autocast (the loop scales the loss); bf16 and fp16 are never both on

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tensors(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """A batch as model inputs on the model's device: one padding-free row, or right-padded rows."""
        batch = (
            collate_padding_free(list(encoded))
            if self.padding_free
            else collate(list(encoded), self.tokenizer.pad_token_id)
        )
        return {k: v.to(self.device) for k, v in batch.items()}


@dataclass(frozen=True)
class Objective:
    """One training objective.

    encode(tokenizer, examples, cfg, notes, what) -> items · units(item) -> how many loss units it carries ·
    length(item) -> tokens, for batching · start(ctx) -> sets up what the objective needs (a reference) and returns
    a line for the run header ("" = nothing to say) ·
    batch(ctx, items, split) -> BatchLoss · memory_rows(items) -> the Encoded rows one batch puts through the model,
    per item, for the memory estimate.
    """

    encode: Callable[[Any, list[Example], TrainConfig, list[str], str], list[Any]]
    units: Callable[[Any], int]
    length: Callable[[Any], int]
    batch: Callable[[Context, Sequence[Any], str], BatchLoss]
    item_name: str  # "rows", "blocks", "pairs", "rated rows"
    start: Callable[[Context], str] = lambda ctx: ""
    group_by_length: bool = True  # padded batches sorted by length within windows (sft/pretrain)
    generates: bool = False  # answers can be generated and scored during training (--eval-every)
    preference: bool = False  # compared with a reference: the summary carries beta and the reward statistics
    memory_rows: Callable[[Sequence[Any]], list[Encoded]] = lambda items: list(items)
    rows_per_item: int = 1


# ---------------------------------------------------------------- sft and pretrain


def _encode_chats(tokenizer, examples: list[Example], cfg: TrainConfig, notes: list[str], what: str) -> list[Encoded]:
    out, truncated, dropped = [], 0, 0
    for ex in examples:
        enc = encode_conversation(tokenizer, ex.messages, cfg.max_length, ex.source, ex.tools)
        truncated += enc.truncated
        if enc.n_answer_tokens == 0:
            dropped += 1
            continue
        out.append(enc)
    if truncated:
        notes.append(f"{truncated} {what} rows are longer than max_length={cfg.max_length} tokens and were cut")
    if dropped:
        notes.append(f"{dropped} {what} rows were skipped: their answer starts after max_length={cfg.max_length}")
    return out


def _encode_texts(tokenizer, examples: list[Example], cfg: TrainConfig, notes: list[str], what: str) -> list[Encoded]:
    blocks = pack_texts(
        tokenizer, [ex.text or "" for ex in examples], cfg.max_length, tokenizer.convert_tokens_to_ids(BASE_EOS)
    )
    if examples and what == "training":
        notes.append(f"packed {len(examples)} documents into {len(blocks)} blocks of up to {cfg.max_length} tokens")
    return blocks


def _lm_batch(ctx: Context, items: Sequence[Encoded], split: str) -> BatchLoss:
    batch = ctx.tensors(items)
    with _autocast(ctx):
        loss_sum, n = causal_lm_loss(ctx.model, batch)
    return BatchLoss(loss_sum, n, sum(len(e.input_ids) for e in items))


# ---------------------------------------------------------------- dpo and kto: losses


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO sigmoid loss per pair (arXiv:2305.18290, Eq. 7). Inputs: summed answer log-probs, shape [P].

    Returns (losses [P], chosen rewards [P], rejected rewards [P]); rewards are `β·(log π − log π_ref)`, detached.
    """
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_logratio - rejected_logratio))
    return losses, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


def kto_kl(policy_mismatched: torch.Tensor, ref_mismatched: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: mean log-ratio of mismatched (prompt, completion) pairs, detached, at least 0."""
    return (policy_mismatched - ref_mismatched).mean().detach().clamp(min=0)


def kto_loss(
    policy: torch.Tensor,
    ref: torch.Tensor,
    good: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO loss per row (arXiv:2402.01306, Eq. 7-8). `policy`/`ref`: summed answer log-probs [N]; `good`: bool [N].

    Returns (weighted losses [N], rewards [N] = `β·(log π − log π_ref)`, detached).
    """
    logratio = policy - ref
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (logratio - kl)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratio)))
    return torch.where(good, desirable, undesirable), beta * logratio.detach()


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probability of each example's label tokens, float32 [S].

    `batch` is padded (input_ids/attention_mask/labels [S, T]) or one padding-free row (input_ids/labels/
    position_ids [1, N] and cu_seq_lens_q [S+1]). Like `causal_lm_loss`, only the label positions are projected
    onto the vocabulary, in chunks, so the `[S, T, 151936]` logits tensor is never built.
    """
    targets = batch["labels"][:, 1:]  # position t predicts token t+1
    if "cu_seq_lens_q" in batch:
        bounds = batch["cu_seq_lens_q"].long()
        n_rows = bounds.numel() - 1
        segment = torch.repeat_interleave(torch.arange(n_rows, device=targets.device), bounds.diff())  # [N]
        rows = segment[1:][targets[0] != IGNORE]  # each example's first label is IGNORE: t and t+1 share a segment
    else:
        n_rows = targets.shape[0]
        rows = (targets != IGNORE).nonzero()[:, 0]  # [L]: which sequence each label token belongs to
    y = targets[targets != IGNORE]  # [L]

    def reduce(hidden: torch.Tensor, keep: torch.Tensor, head) -> torch.Tensor:
        h = hidden[:, :-1][keep]  # [L, H]
        out = torch.zeros(n_rows, dtype=torch.float32, device=hidden.device)
        for s in range(0, y.numel(), CHUNK):
            logits = head(h[s : s + CHUNK]).float()  # [n, V]
            token_logps = -F.cross_entropy(logits, y[s : s + CHUNK], reduction="none")  # [n]
            out = out.index_add(0, rows[s : s + CHUNK], token_logps)
        return out

    return label_forward(model, batch, reduce)


# ---------------------------------------------------------------- dpo and kto: data


def encode_answer(
    tokenizer,
    prompt: list[Message],
    answer: list[Message],
    max_length: int,
    where: str = "",
    tools: list[Any] | None = None,
) -> Encoded:
    """Encode prompt + answer with labels on the answer turns (and their EOS) only.

    Assistant turns inside a multi-turn prompt are not what is being rated, so only turns from the answer on carry
    labels. `tools` are the row's function specs, rendered into the system turn as in training.
    """
    return encode_conversation(tokenizer, prompt + answer, max_length, where, tools, train_from=len(prompt))


@dataclass(frozen=True)
class PreferenceRow:
    """One encoded preference example. DPO: `answers` = (chosen, rejected). KTO: (completion,), `good` = its label.

    `index` names the row (within its split) in the reference cache.
    """

    index: int
    prompt: list[Message]
    completion: list[Message]  # KTO: reused to build the mismatched pairs
    answers: tuple[Encoded, ...]
    good: bool
    source: str
    tools: list[Any] | None = None  # the row's function specs (KTO renders its mismatched pairs with them)


def _encode_preference(objective: str):
    want = "preference" if objective == "dpo" else "feedback"

    def encode(
        tokenizer, examples: list[Example], cfg: TrainConfig, notes: list[str], what: str
    ) -> list[PreferenceRow]:
        rows: list[PreferenceRow] = []
        truncated, dropped = 0, 0
        for ex in examples:
            if ex.kind != want:
                raise UserError(
                    f"{ex.source}: --objective {objective} needs {want} rows "
                    f"({'prompt, chosen, rejected' if want == 'preference' else 'prompt, completion, label'}), "
                    f"got a {ex.kind} row"
                )
            turns = [ex.chosen or [], ex.rejected or []] if objective == "dpo" else [ex.completion or []]
            answers = tuple(
                encode_answer(tokenizer, ex.messages, t, cfg.max_length, ex.source, ex.tools) for t in turns
            )
            truncated += any(a.truncated for a in answers)
            if any(a.n_answer_tokens == 0 for a in answers):
                dropped += 1
                continue
            rows.append(
                PreferenceRow(len(rows), ex.messages, ex.completion or [], answers, bool(ex.label), ex.source, ex.tools)
            )
        if truncated:
            notes.append(f"{truncated} {what} rows are longer than max_length={cfg.max_length} tokens and were cut")
        if dropped:
            notes.append(f"{dropped} {what} rows were skipped: an answer starts after max_length={cfg.max_length}")
        if objective == "kto" and what == "training" and rows:
            balance = _kto_balance_note(rows, cfg.desirable_weight, cfg.undesirable_weight)
            notes += [balance] if balance else []
            if cfg.batch_size < 2:
                notes.append("kto with --batch-size 1 cannot mismatch prompts and answers to estimate its KL term")
        return rows

    return encode


def _kto_balance_note(rows: list[PreferenceRow], desirable_weight: float, undesirable_weight: float) -> str | None:
    """KTO paper Eq. 8: λ_D·n_D / (λ_U·n_U) should lie in [1, 4/3]; say which weights fit when it does not."""
    n_good = sum(r.good for r in rows)
    n_bad = len(rows) - n_good
    if not n_good or not n_bad:
        which = "👍" if not n_good else "👎"
        return f"kto: the training rows hold no {which} rows; KTO needs both kinds to learn a preference"
    ratio = desirable_weight * n_good / (undesirable_weight * n_bad)
    if 1.0 <= ratio <= 4 / 3:
        return None
    low, high = n_bad * undesirable_weight / n_good, n_bad * undesirable_weight / n_good * 4 / 3
    return (
        f"kto: {n_good} 👍 and {n_bad} 👎 rows with these weights are off balance (arXiv:2402.01306 Eq. 8); "
        f"try --desirable-weight between {low:.2f} and {high:.2f}"
    )


# ---------------------------------------------------------------- dpo and kto: the reference and one batch


class Reference:
    """Answer log-probs under the frozen reference, each computed once (the reference never changes).

    peft models: the same weights with the adapter switched off. Other models: a frozen copy taken before training.
    """

    def __init__(self, model):
        self.peft = hasattr(model, "disable_adapter")
        self.frozen = None if self.peft else copy.deepcopy(model).eval().requires_grad_(False)
        self.cache: dict[Hashable, float] = {}

    @torch.no_grad()
    def logps(self, ctx: Context, keys: Sequence[Hashable], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reference log-probs [S] of `batch`, whose examples are named by `keys` for the cache."""
        if not all(k in self.cache for k in keys):
            with _autocast(ctx):
                if self.frozen is not None:
                    values = sequence_logps(self.frozen, batch)
                else:
                    # The mode is left as it is: with the adapter off no LoRA dropout runs (Qwen2's attention
                    # dropout is 0), and an eval-mode forward would repack 4-bit QLoRA weights mid-training.
                    model = unwrap(ctx.model)  # outside DDP: no gradient sync for the reference
                    with model.disable_adapter():
                        values = sequence_logps(model, batch)
            self.cache.update(zip(keys, values.tolist(), strict=True))
        return torch.tensor([self.cache[k] for k in keys], dtype=torch.float32, device=ctx.device)


def _start_reference(ctx: Context) -> str:
    ctx.reference = Reference(ctx.model)  # before the first step: for full fine-tuning this copies the initial weights
    what = "the base model (adapter off)" if ctx.reference.peft else "a frozen copy of the initial weights"
    return f"beta {ctx.cfg.beta}; reference: {what}"


def _dpo_batch(ctx: Context, rows: Sequence[PreferenceRow], split: str) -> BatchLoss:
    """DPO on `rows`: chosen and rejected answers go through the model in one forward of 2n examples."""
    n = len(rows)
    batch = ctx.tensors([r.answers[0] for r in rows] + [r.answers[1] for r in rows])
    keys = [(split, r.index, "chosen") for r in rows] + [(split, r.index, "rejected") for r in rows]
    ref_logps = ctx.reference.logps(ctx, keys, batch)
    with _autocast(ctx):
        logps = sequence_logps(ctx.model, batch)  # [2n]
    losses, r_chosen, r_rejected = dpo_loss(logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], ctx.cfg.beta)
    stats: dict[str, tuple[float, int]] = {}
    _add(stats, "rewards_chosen", r_chosen)
    _add(stats, "rewards_rejected", r_rejected)
    _add(stats, "reward_accuracy", (r_chosen > r_rejected).float())
    _add(stats, "logp_chosen", logps[:n])
    _add(stats, "logp_rejected", logps[n:])
    tokens = sum(len(a.input_ids) for r in rows for a in r.answers)
    return BatchLoss(losses.sum(), n, tokens, stats)


def _kto_batch(ctx: Context, rows: Sequence[PreferenceRow], split: str) -> BatchLoss:
    """KTO on the rated `rows`; the reference point comes from this batch's mismatched pairs.

    Mismatched pairs rotate the completions by one, as TRL's KTOTrainer does: (x_1, y_n), (x_2, y_1), ... — the
    same answers as the batch, each after another prompt. With a batch of one row there is nothing to mismatch
    and the row's own pair is used.
    """
    others = [rows[k - 1] for k in range(len(rows))]
    mismatched = [
        encode_answer(ctx.tokenizer, r.prompt, o.completion, ctx.cfg.max_length, r.source, r.tools)
        for r, o in zip(rows, others, strict=True)
    ]
    kl_batch = ctx.tensors(mismatched)
    ref_kl = ctx.reference.logps(
        ctx, [(split, r.index, "kl", o.index) for r, o in zip(rows, others, strict=True)], kl_batch
    )
    with torch.no_grad(), _autocast(ctx):
        policy_kl = sequence_logps(ctx.model, kl_batch)
    kl = kto_kl(policy_kl, ref_kl)

    batch = ctx.tensors([r.answers[0] for r in rows])  # [n examples]
    ref_logps = ctx.reference.logps(ctx, [(split, r.index, "completion") for r in rows], batch)
    with _autocast(ctx):
        logps = sequence_logps(ctx.model, batch)  # [n]
    good = torch.tensor([r.good for r in rows], device=ctx.device)
    cfg = ctx.cfg
    losses, rewards = kto_loss(logps, ref_logps, good, kl, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
    stats: dict[str, tuple[float, int]] = {}
    _add(stats, "rewards_chosen", rewards[good])
    _add(stats, "rewards_rejected", rewards[~good])
    _add(stats, "reward_accuracy", torch.where(good, rewards > 0, rewards < 0).float())
    _add(stats, "logp_chosen", logps[good])
    _add(stats, "logp_rejected", logps[~good])
    _add(stats, "kl", kl)
    tokens = sum(len(r.answers[0].input_ids) for r in rows) + sum(len(e.input_ids) for e in mismatched)
    return BatchLoss(losses.sum(), len(rows), tokens, stats)


def _answer_tokens(item: Encoded) -> int:
    return item.n_answer_tokens


def _answers_length(row: PreferenceRow) -> int:
    return sum(len(a.input_ids) for a in row.answers)


def _answers(rows: Sequence[PreferenceRow]) -> list[Encoded]:
    return [a for r in rows for a in r.answers]


OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(_encode_chats, _answer_tokens, lambda e: len(e.input_ids), _lm_batch, "rows", generates=True),
    "pretrain": Objective(_encode_texts, _answer_tokens, lambda e: len(e.input_ids), _lm_batch, "blocks"),
    "dpo": Objective(
        _encode_preference("dpo"),
        lambda row: 1,
        _answers_length,
        _dpo_batch,
        "pairs",
        start=_start_reference,
        group_by_length=False,
        preference=True,
        memory_rows=_answers,
        rows_per_item=2,
    ),
    "kto": Objective(
        _encode_preference("kto"),
        lambda row: 1,
        _answers_length,
        _kto_batch,
        "rated rows",
        start=_start_reference,
        group_by_length=False,
        preference=True,
        memory_rows=_answers,
        rows_per_item=2,  # the rated answers and their mismatched pairs
    ),
}


def get_objective(name: str) -> Objective:
    """Look an objective up; an unknown name lists the valid ones."""
    if name not in OBJECTIVES:
        raise unknown_choice("objective", name, list(OBJECTIVES))
    return OBJECTIVES[name]
