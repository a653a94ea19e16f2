"""Preference tuning recipe: DPO on chosen/rejected pairs, KTO on thumbs-up/down rows.

`lapidar train` calls `fit_preference(run, model, console)` when the objective is `dpo` or `kto`; the data and the
model arrive prepared, the loop below does the rest: encode -> reference -> optimiser -> loop -> best weights ->
summary. Both objectives compare the policy (the model being trained) with a frozen *reference*, the model as it was
before training:

- **DPO** (Rafailov et al. 2023, arXiv:2305.18290): for a prompt x with a chosen answer y_w and a rejected y_l, the
  implicit reward of an answer is `r(x, y) = β · (log π(y|x) − log π_ref(y|x))` and the loss is
  `−log σ(r(x, y_w) − r(x, y_l))`. It starts at ln 2 = 0.693 (policy = reference) and falls as the policy puts more
  probability on the chosen answer relative to the rejected one than the reference did.
- **KTO** (Ethayarajh et al. 2024, arXiv:2402.01306, Eq. 7-8): rows are rated one at a time. With the same reward
  `r` and a reference point z0 ≈ KL(π ‖ π_ref), a 👍 row costs `λ_D · (1 − σ(β (r − z0)))` and a 👎 row
  `λ_U · (1 − σ(β (z0 − r)))`. Like TRL's KTOTrainer, z0 is estimated per batch from *mismatched* pairs — prompt
  i with the completion of row i−1 — detached and clamped at 0, so a row only gains by beating what the policy
  does on an arbitrary answer.

Log-probabilities are summed over the answer tokens only (the answer and its EOS; the prompt, including earlier
assistant turns of a multi-turn prompt, is masked). The reference is the base model with the LoRA adapter switched
off (`model.disable_adapter()`, no second copy of the weights) or, for full fine-tuning, a frozen copy made before
the first step. Its log-probabilities never change, so each one is computed once and cached.

Metrics (metrics.jsonl): `train_loss`, `rewards_chosen`, `rewards_rejected`, `reward_margin` (= chosen − rejected),
`reward_accuracy`, `logp_chosen`, `logp_rejected`, and for KTO `kl` (z0). For KTO, "chosen" means the 👍 rows and
"rejected" the 👎 rows, and `reward_accuracy` is the share of rows whose reward has the sign of their label. The
same keys prefixed `val_` come from every evaluation; `val_loss` is the preference loss on the validation rows.
"""

from __future__ import annotations

import copy
import math
import random
import signal
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape

from lapidar.data.formats import Example, Message
from lapidar.data.tokenize import IGNORE, Encoded, collate, encode_conversation
from lapidar.errors import UserError
from lapidar.io import write_json
from lapidar.methods import get_method
from lapidar.recipes.train import peak_rss_mib, save_weights, use_bf16
from lapidar.training.loss import CHUNK, decoder_and_head
from lapidar.training.observers import EarlyStopping, MetricsLog, plot_losses, progress_bar
from lapidar.training.optim import build_optimizer
from lapidar.training.schedule import lr_factor

if TYPE_CHECKING:
    from lapidar.recipes.train import RunData

__all__ = ["OBJECTIVES", "dpo_loss", "encode_answer", "fit_preference", "kto_kl", "kto_loss", "sequence_logps"]


# ---------------------------------------------------------------- the losses


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
    """Summed log-probability of each row's label tokens; float32 [B] for input_ids/attention_mask/labels [B, T].

    Like `causal_lm_loss`, only the label positions are projected onto the vocabulary, in chunks, so the
    `[B, T, 151936]` logits tensor is never built.
    """
    decoder, head = decoder_and_head(model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t+1
    keep = targets != IGNORE
    rows = keep.nonzero()[:, 0]  # [N]: which sequence each label token belongs to
    h = hidden[:, :-1][keep]  # [N, H]
    y = targets[keep]  # [N]
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, y.numel(), CHUNK):
        logits = head(h[s : s + CHUNK]).float()  # [n, V]
        token_logps = -F.cross_entropy(logits, y[s : s + CHUNK], reduction="none")  # [n]
        out = out.index_add(0, rows[s : s + CHUNK], token_logps)
    return out


# ---------------------------------------------------------------- data


def encode_answer(tokenizer, prompt: list[Message], answer: list[Message], max_length: int, where: str = "") -> Encoded:
    """Encode prompt + answer with labels on the answer turns (and their EOS) only.

    `encode_conversation` labels every assistant turn; the ones inside a multi-turn prompt are not what is being
    rated, so their label runs (one contiguous run per turn: template tokens separate them) are masked again.
    """
    enc = encode_conversation(tokenizer, prompt + answer, max_length, where)
    to_mask = sum(1 for m in prompt if m["role"] == "assistant")
    labels = list(enc.labels)
    t = 0
    while to_mask and t < len(labels):
        if labels[t] != IGNORE:
            while t < len(labels) and labels[t] != IGNORE:
                labels[t] = IGNORE
                t += 1
            to_mask -= 1
        t += 1
    return Encoded(enc.input_ids, labels, enc.truncated)


@dataclass(frozen=True)
class _Row:
    """One encoded example. DPO: `answers` = (chosen, rejected). KTO: `answers` = (completion,), `good` = label."""

    prompt: list[Message]
    completion: list[Message]  # KTO: reused to build the mismatched pairs
    answers: tuple[Encoded, ...]
    good: bool
    source: str


def _encode_rows(
    tokenizer, examples: list[Example], objective: str, max_length: int, notes: list[str], what: str
) -> list[_Row]:
    rows, truncated, dropped = [], 0, 0
    want = "preference" if objective == "dpo" else "feedback"
    for ex in examples:
        if ex.kind != want:
            raise UserError(
                f"{ex.source}: --objective {objective} needs {want} rows "
                f"({'prompt, chosen, rejected' if want == 'preference' else 'prompt, completion, label'}), "
                f"got a {ex.kind} row"
            )
        turns = [ex.chosen or [], ex.rejected or []] if objective == "dpo" else [ex.completion or []]
        answers = tuple(encode_answer(tokenizer, ex.messages, t, max_length, ex.source) for t in turns)
        truncated += any(a.truncated for a in answers)
        if any(a.n_answer_tokens == 0 for a in answers):
            dropped += 1
            continue
        rows.append(_Row(ex.messages, ex.completion or [], answers, bool(ex.label), ex.source))
    if truncated:
        notes.append(f"{truncated} {what} rows are longer than max_length={max_length} tokens and were cut")
    if dropped:
        notes.append(f"{dropped} {what} rows were skipped: an answer starts after max_length={max_length}")
    return rows


def _batches(n: int, batch_size: int, seed: int, shuffle: bool) -> list[list[int]]:
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[b : b + batch_size] for b in range(0, n, batch_size)]


# ---------------------------------------------------------------- the reference model


class _Reference:
    """Answer log-probs under the frozen reference, each computed once (the reference never changes).

    peft models: the same weights with the adapter switched off. Other models: a frozen copy taken before training.
    """

    def __init__(self, model):
        self.peft = hasattr(model, "disable_adapter")
        self.frozen = None if self.peft else copy.deepcopy(model).eval().requires_grad_(False)
        self.cache: dict[Hashable, float] = {}

    @torch.no_grad()
    def logps(self, model, keys: Sequence[Hashable], batch: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
        """Reference log-probs [B] of `batch`, whose rows are named by `keys` for the cache."""
        device = batch["input_ids"].device
        if not all(k in self.cache for k in keys):
            with _autocast(device, bf16):
                if self.frozen is not None:
                    values = sequence_logps(self.frozen, batch)
                else:
                    # The mode is left as it is: with the adapter off no LoRA dropout runs (Qwen2's attention
                    # dropout is 0), and an eval-mode forward would repack 4-bit QLoRA weights mid-training.
                    with model.disable_adapter():
                        values = sequence_logps(model, batch)
            self.cache.update(zip(keys, values.tolist(), strict=True))
        return torch.tensor([self.cache[k] for k in keys], dtype=torch.float32, device=device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ---------------------------------------------------------------- one batch


class _Tally:
    """Sums and counts of per-example statistics; `means()` turns them into the logged metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, values: torch.Tensor) -> None:
        values = values.detach().float().reshape(-1)
        self.sums[key] = self.sums.get(key, 0.0) + values.sum().item()
        self.counts[key] = self.counts.get(key, 0) + values.numel()

    def means(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
        if "rewards_chosen" in out and "rewards_rejected" in out:
            out["reward_margin"] = out["rewards_chosen"] - out["rewards_rejected"]
        return out


@dataclass
class _Ctx:
    """What every batch needs: the model, its reference, how to encode, and the objective's settings."""

    model: Any
    ref: _Reference
    tokenizer: Any
    pad_id: int
    bf16: bool
    max_length: int
    beta: float
    desirable_weight: float
    undesirable_weight: float

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tensors(self, encoded: list[Encoded]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in collate(encoded, self.pad_id).items()}


def _dpo_batch(ctx: _Ctx, rows: list[_Row], ids: list[int], split: str, tally: _Tally) -> tuple[torch.Tensor, int]:
    """DPO on the pairs `ids`: chosen and rejected answers go through the model in one forward of 2n rows.

    Returns (per-pair losses [n] with grad, tokens processed) and adds the batch's statistics to `tally`.
    """
    n = len(ids)
    batch = ctx.tensors([rows[i].answers[0] for i in ids] + [rows[i].answers[1] for i in ids])  # [2n, T]
    keys = [(split, i, "chosen") for i in ids] + [(split, i, "rejected") for i in ids]
    ref_logps = ctx.ref.logps(ctx.model, keys, batch, ctx.bf16)
    with _autocast(ctx.device, ctx.bf16):
        logps = sequence_logps(ctx.model, batch)  # [2n]
    losses, r_chosen, r_rejected = dpo_loss(logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], ctx.beta)
    tally.add("loss", losses)
    tally.add("rewards_chosen", r_chosen)
    tally.add("rewards_rejected", r_rejected)
    tally.add("reward_accuracy", (r_chosen > r_rejected).float())
    tally.add("logp_chosen", logps[:n])
    tally.add("logp_rejected", logps[n:])
    return losses, int(batch["attention_mask"].sum())


def _kto_batch(ctx: _Ctx, rows: list[_Row], ids: list[int], split: str, tally: _Tally) -> tuple[torch.Tensor, int]:
    """KTO on the rated rows `ids`; the reference point comes from this batch's mismatched pairs.

    Mismatched pairs rotate the completions by one, as TRL's KTOTrainer does: (x_1, y_n), (x_2, y_1), ... — the
    same answers as the batch, each after another prompt. With a batch of one row there is nothing to mismatch
    and the row's own pair is used.
    """
    others = [ids[k - 1] for k in range(len(ids))]
    mismatched = [
        encode_answer(ctx.tokenizer, rows[i].prompt, rows[j].completion, ctx.max_length, rows[i].source)
        for i, j in zip(ids, others, strict=True)
    ]
    kl_batch = ctx.tensors(mismatched)
    ref_kl = ctx.ref.logps(
        ctx.model, [(split, i, "kl", j) for i, j in zip(ids, others, strict=True)], kl_batch, ctx.bf16
    )
    with torch.no_grad(), _autocast(ctx.device, ctx.bf16):
        policy_kl = sequence_logps(ctx.model, kl_batch)
    kl = kto_kl(policy_kl, ref_kl)

    batch = ctx.tensors([rows[i].answers[0] for i in ids])  # [n, T]
    ref_logps = ctx.ref.logps(ctx.model, [(split, i, "completion") for i in ids], batch, ctx.bf16)
    with _autocast(ctx.device, ctx.bf16):
        logps = sequence_logps(ctx.model, batch)  # [n]
    good = torch.tensor([rows[i].good for i in ids], device=ctx.device)
    losses, rewards = kto_loss(logps, ref_logps, good, kl, ctx.beta, ctx.desirable_weight, ctx.undesirable_weight)
    tally.add("loss", losses)
    tally.add("rewards_chosen", rewards[good])
    tally.add("rewards_rejected", rewards[~good])
    tally.add("reward_accuracy", torch.where(good, rewards > 0, rewards < 0).float())
    tally.add("logp_chosen", logps[good])
    tally.add("logp_rejected", logps[~good])
    tally.add("kl", kl)
    return losses, int(batch["attention_mask"].sum() + kl_batch["attention_mask"].sum())


# objective -> the function that runs one batch of it
OBJECTIVES = {"dpo": _dpo_batch, "kto": _kto_batch}


@torch.no_grad()
def _evaluate(ctx: _Ctx, rows: list[_Row], objective: str, batch_size: int) -> dict[str, float]:
    """Mean preference loss and reward statistics over `rows`, in eval mode (no dropout), fixed batches."""
    was_training = ctx.model.training
    ctx.model.eval()
    tally = _Tally()
    for ids in _batches(len(rows), batch_size, 0, shuffle=False):
        OBJECTIVES[objective](ctx, rows, ids, "val", tally)
    ctx.model.train(was_training)
    return tally.means()


# ---------------------------------------------------------------- helpers of the loop


def _kto_balance_note(rows: list[_Row], desirable_weight: float, undesirable_weight: float) -> str | None:
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


# ---------------------------------------------------------------- the loop


def fit_preference(run: RunData, model, console: Console) -> dict:
    """Train `model` with DPO or KTO (`run.objective`) on `run.train_examples`; returns the run summary.

    `model` is already prepared by the method registry (a peft model, or a full model whose frozen copy becomes the
    reference). The best weights (lowest validation loss) go to `run_dir/adapter` (peft) or `run_dir/model`.
    """
    cfg, tok, objective = run.cfg, run.tokenizer, run.objective
    if objective not in OBJECTIVES:
        raise UserError(f"unknown preference objective {objective!r}; valid choices: {', '.join(OBJECTIVES)}")
    method = get_method(cfg.method)
    notes = list(run.notes)
    train_rows = _encode_rows(tok, run.train_examples, objective, cfg.max_length, notes, "training")
    val_rows = _encode_rows(tok, run.val_examples, objective, cfg.max_length, notes, "validation")
    if not train_rows:
        raise UserError("no usable training rows: every answer was cut off by max_length; raise --max-length")
    if objective == "kto":
        balance = _kto_balance_note(train_rows, cfg.desirable_weight, cfg.undesirable_weight)
        notes += [balance] if balance else []
        if cfg.batch_size < 2:
            notes.append("kto with --batch-size 1 cannot mismatch prompts and answers to estimate its KL term")

    device = next(model.parameters()).device
    n_params = sum(p.numel() for p in model.parameters())
    bf16 = use_bf16(cfg, n_params)
    ref = _Reference(model)  # before the first step: for full fine-tuning this copies the initial weights
    ctx = _Ctx(
        model, ref, tok, tok.pad_token_id, bf16, cfg.max_length, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight
    )
    optimizer = build_optimizer(model, cfg, method.optimizer)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    steps_per_epoch = math.ceil(math.ceil(len(train_rows) / cfg.batch_size) / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.scheduler))
    stopper = EarlyStopping(cfg.patience if val_rows else None, cfg.min_delta)
    weights_dir = run.run_dir / ("adapter" if method.adapter else "model")
    run_batch = OBJECTIVES[objective]

    n_trainable = sum(p.numel() for p in trainable)
    console.print(
        f"[bold]Training[/bold] {escape(run.source.label)}: {objective} with {cfg.method}, {n_trainable:,} of "
        f"{n_params:,} parameters train ({100 * n_trainable / n_params:.2f}%); {len(train_rows)} train / "
        f"{len(val_rows)} validation {'pairs' if objective == 'dpo' else 'rated rows'}; {total_steps} steps of "
        f"{cfg.batch_size}x{cfg.grad_accum}; beta {cfg.beta}; reference: "
        f"{'the base model (adapter off)' if ref.peft else 'a frozen copy of the initial weights'}; "
        f"{'bf16 autocast' if bf16 else 'fp32'} on {device}"
    )
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")

    history: dict[str, Any] = {"initial": None, "last": None, "best_val_loss": None, "best_step": None}
    step, epoch, tokens_seen = 0, 0, 0

    def run_eval() -> None:
        stats = _evaluate(ctx, val_rows, objective, cfg.batch_size)
        val_loss = stats.pop("loss")
        improved = stopper.update(step, val_loss)
        record = {"val_loss": val_loss, **{f"val_{k}": v for k, v in stats.items()}}
        history["initial"] = history["initial"] or record
        history["last"] = record
        log.write({"step": step, "epoch": round(step / steps_per_epoch, 3), **record})
        mark = "  [green]best so far, saved[/green]" if improved and step > 0 else ""
        console.print(
            f"step {step:>5}  validation loss {val_loss:.4f}  reward margin {stats.get('reward_margin', 0.0):+.4f}  "
            f"accuracy {stats.get('reward_accuracy', 0.0):.2f}{mark}"
        )
        if improved and step > 0:
            save_weights(model, tok, weights_dir)
            history.update(best_val_loss=val_loss, best_step=step)

    torch.manual_seed(cfg.seed)
    model.train()
    stop_reason = "reached max_steps" if cfg.max_steps else "finished all epochs"
    diverged: str | None = None
    window, window_tokens = _Tally(), 0
    last_train: dict[str, float] = {}
    progress = progress_bar(console, objective, "margin")
    # SIGTERM (a scheduler's kill) is handled like Ctrl-C: keep the weights, write the summary, exit.
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    interrupted = False
    log = MetricsLog(run.run_dir, trackers=run.trackers)
    if run.trackers is not None:
        run.trackers.start(cfg.model_dump())
    window_start = started = time.perf_counter()
    try:
        if val_rows:
            run_eval()
        with progress:
            task = progress.add_task(objective, total=total_steps, loss="-", margin="-", tps="-")
            while step < total_steps and not stopper.should_stop and not diverged:
                batches = _batches(len(train_rows), cfg.batch_size, cfg.seed + epoch, shuffle=True)
                for g in range(0, len(batches), cfg.grad_accum):
                    group = batches[g : g + cfg.grad_accum]
                    group_size = sum(len(ids) for ids in group)
                    for ids in group:
                        losses, tokens = run_batch(ctx, train_rows, ids, "train", window)
                        if not torch.isfinite(losses).all():
                            diverged = f"the {objective} loss is not a number at step {step + 1}"
                            break
                        # Mean over the examples of the whole accumulated step, whatever micro-batch they are in.
                        (losses.sum() / group_size).backward()
                        window_tokens += tokens
                        tokens_seen += tokens
                    if diverged:
                        optimizer.zero_grad(set_to_none=True)
                        break
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1

                    if step % cfg.log_steps == 0 or step == total_steps:
                        tps = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                        last_train = window.means()
                        log.write(
                            {
                                "step": step,
                                "epoch": round(step / steps_per_epoch, 3),
                                "train_loss": last_train["loss"],
                                "lr": scheduler.get_last_lr()[0],
                                "tokens_per_s": tps,
                                **{k: v for k, v in last_train.items() if k != "loss"},
                            }
                        )
                        progress.update(
                            task,
                            loss=f"{last_train['loss']:.4f}",
                            margin=f"{last_train.get('reward_margin', 0.0):+.3f}",
                            tps=f"{tps:,.0f}",
                        )
                        window, window_tokens, window_start = _Tally(), 0, time.perf_counter()
                    progress.update(task, completed=step)

                    if val_rows and (step % cfg.eval_steps == 0 or step == total_steps):
                        run_eval()
                    if stopper.should_stop:
                        stop_reason = stopper.reason
                        break
                    if step >= total_steps:
                        break
                epoch += 1
    except KeyboardInterrupt:
        interrupted = True
        optimizer.zero_grad(set_to_none=True)
        stop_reason = f"interrupted at step {step}"
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        log.close(ok=diverged is None)

    if diverged:
        stop_reason = f"diverged: {diverged}"
    elif history["best_step"] is None:
        # No validation, or it never beat the untrained model: the result is the last state.
        save_weights(model, tok, weights_dir)
    wall = time.perf_counter() - started
    initial, last = history["initial"] or {}, history["last"] or {}
    summary = {
        "model": run.source.label,
        "random_init": run.source.random_init,
        "method": cfg.method,
        "objective": objective,
        "beta": cfg.beta,
        "data_format": run.data_format,
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "steps": step,
        "total_steps_planned": total_steps,
        "epochs": round(step / steps_per_epoch, 3),
        "tokens_seen": tokens_seen,
        "final_train_loss": last_train.get("loss", float("nan")),
        "initial_val_loss": initial.get("val_loss"),
        "best_val_loss": history["best_val_loss"],
        "best_step": history["best_step"],
        "final_val_loss": last.get("val_loss"),
        "initial_val_reward_margin": initial.get("val_reward_margin"),
        "initial_val_reward_accuracy": initial.get("val_reward_accuracy"),
        "final_val_reward_margin": last.get("val_reward_margin"),
        "final_val_reward_accuracy": last.get("val_reward_accuracy"),
        "stop_reason": stop_reason,
        "interrupted": interrupted,
        "saved_weights": weights_dir.name,
        "saved_from_step": history["best_step"] if history["best_step"] is not None else step,
        "wall_time_s": round(wall, 1),
        "tokens_per_s": round(tokens_seen / max(wall, 1e-9), 1),
        "peak_memory_mib": peak_rss_mib(),
        "peak_memory_kind": "process RSS",
        "precision": "bf16" if bf16 else "fp32",
        "device": str(device),
    }
    if torch.cuda.is_available():
        summary["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json(run.run_dir / "summary.json", summary)
    plot_losses(
        run.run_dir / "metrics.jsonl", run.run_dir / "loss.png", f"{run.source.label} · {cfg.method} · {objective}"
    )
    if diverged:
        where = f"; the best weights so far are in {weights_dir}" if weights_dir.exists() else ""
        raise UserError(f"training diverged: {diverged}{where}; lower --lr (now {cfg.lr}) and train again")
    if interrupted:
        console.print(f"[yellow]Interrupted at step {step}; weights saved in {weights_dir}[/yellow]")
    return summary
