"""Read a run's numbers and say in plain words what went wrong (or right), with a concrete next step.

Inputs are the files a run leaves behind: metrics.jsonl (train loss every `log_steps`, validation loss at each
evaluation including step 0), summary.json (absent when the run crashed or diverged), config.yaml, and eval/eval.json
when `lapidar eval` has been run. The thresholds below are deliberately simple and are stated in each finding's
evidence, so a reader can check the verdict against the curve.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from lapidar.errors import UserError

__all__ = ["SEVERITIES", "Finding", "RunRecords", "diagnose", "print_findings", "read_run"]

SEVERITIES = ("problem", "warning", "info", "good")

SPIKE_NATS = 1.0  # a logged train loss this many nats above the lowest so far ...
SPIKE_SHARE = 0.25  # ... and this share above it is a spike
HIGH_LR = 1e-2  # above this, a loss that stops moving high up is blamed on the learning rate ...
STALLED_MOVE = 0.02  # ... when the last third of the run moves less than this share ...
STALLED_LEVEL = 0.6  # ... and stays above this share of the starting loss
OVERFIT_RISE = 0.05  # validation loss this share above its minimum (after the minimum) is a real rise
FLAT_DROP = 0.05  # less than this relative fall of the loss over the run is "flat"
LOW_LR = 1e-6  # a flat loss below this learning rate is blamed on it (even DPO's 5e-7 is a deliberate choice)
STILL_IMPROVING = 0.02  # last evaluation still this share better than the one before
GAP_NATS = 0.5  # validation loss this far above training loss ...
GAP_RATIO = 1.5  # ... and this many times it is a wide gap
EOS_OK = 0.9  # at least this share of answers should end on their own


@dataclass(frozen=True)
class Finding:
    """One verdict about a run: how serious, what, the numbers behind it, and what to do."""

    severity: str  # one of SEVERITIES
    title: str
    evidence: str
    suggestion: str
    code: str = ""  # stable identifier: "overfitting", "divergence", "underfitting", ...
    step: int | None = None  # the optimiser step the finding points at, when there is one


@dataclass
class RunRecords:
    """Everything `diagnose` and the report read from a run directory."""

    run_dir: Path
    train: list[tuple[int, float]]
    val: list[tuple[int, float]]
    lr: list[tuple[int, float]]
    throughput: list[tuple[int, float]]
    generation: dict[str, list[tuple[int, float]]]
    summary: dict | None
    config: dict
    eval: dict | None
    rows: list[dict] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def read_run(run_dir: Path) -> RunRecords:
    """Load metrics.jsonl, summary.json, config.yaml and eval/eval.json (those that exist)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{run_dir} is not a training run: {metrics.name} is missing")
    rows = []
    lines = metrics.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if lineno < len(lines):
                raise UserError(f"{metrics}: line {lineno}: not valid JSON") from None
            # the last line of a run killed mid-write may be cut; everything before it is still good

    def series(key: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[key])) for r in rows if key in r and r[key] is not None]

    generation = {
        k.removeprefix("val_"): series(k)
        for k in dict.fromkeys(k for r in rows for k in r)
        if k.startswith("val_") and k != "val_loss"
    }
    cfg_path = run_dir / "config.yaml"
    config = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}) if cfg_path.is_file() else {}
    summary_path, eval_path = run_dir / "summary.json", run_dir / "eval" / "eval.json"
    return RunRecords(
        run_dir=run_dir,
        train=series("train_loss"),
        val=series("val_loss"),
        lr=series("lr"),
        throughput=series("tokens_per_s"),
        generation=generation,
        summary=_read_json(summary_path) if summary_path.is_file() else None,
        config=config,
        eval=_read_json(eval_path) if eval_path.is_file() else None,
        rows=rows,
    )


# ---------------------------------------------------------------- helpers


def _loss_at(series: list[tuple[int, float]], step: int) -> float | None:
    """The logged value at `step`, or the last one logged before it (the first one if none is)."""
    before = [v for s, v in series if s <= step]
    if before:
        return before[-1]
    return series[0][1] if series else None


def _fmt_lr(lr: float) -> str:
    """0.5, 10, 2e-4 (the way people write learning rates)."""
    if lr >= 0.01:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# ---------------------------------------------------------------- the checks, one per failure mode


def _divergence(r: RunRecords) -> Finding | None:
    lr = r.config.get("lr")
    if not lr:
        lower = "Lower --lr about 10x"
    elif lr > HIGH_LR:
        lower = f"--lr {_fmt_lr(lr)} is far above the usual 1e-5 to 5e-3: start from lapidar's default --lr 2e-4"
    else:
        lower = f"Lower the learning rate about 10x (--lr {_fmt_lr(lr / 10)}, now {_fmt_lr(lr)})"
    suggestion = f"{lower} and keep a warmup (--warmup-ratio 0.03 to 0.1); gradient clipping (max_grad_norm 1.0) is on."

    def found(title: str, evidence: str, step: int | None) -> Finding:
        return Finding("problem", f"Training diverged: {title}", evidence, suggestion, "divergence", step)

    broken = [(s, name) for name, series in (("training", r.train), ("validation", r.val)) for s, v in series
              if not math.isfinite(v)]  # fmt: skip
    if broken:
        step, name = min(broken)
        stopped = str((r.summary or {}).get("stop_reason", ""))
        evidence = f"the {name} loss is not a finite number from step {step}" + (f" ({stopped})" if stopped else "")
        return found(f"the loss became NaN/inf at step {step}", evidence, step)
    reason = str((r.summary or {}).get("stop_reason", ""))
    if "diverg" in reason:
        return found("the run stopped", reason, (r.summary or {}).get("steps"))
    for i in range(1, len(r.train)):
        step, value = r.train[i]
        low_step, low = min(r.train[:i], key=lambda p: p[1])
        if value - low > max(SPIKE_NATS, SPIKE_SHARE * low):
            return found(
                f"the loss spiked at step {step}",
                f"training loss jumped to {value:.3f} at step {step} after reaching {low:.3f} at step {low_step} "
                f"(more than {SPIKE_NATS} nats and {SPIKE_SHARE:.0%} above its lowest value so far)",
                step,
            )
    if r.val and r.val[0][0] == 0:
        start = r.val[0][1]
        for step, value in r.val[1:]:
            train = _loss_at(r.train, step)
            if value > 1.02 * start and train is not None and train > 0.5 * start:
                return found(
                    f"the model got worse than untrained at step {step}",
                    f"validation loss {value:.3f} at step {step} is above the untrained model's {start:.3f}, and "
                    f"training loss is high too ({train:.3f})",
                    step,
                )
    if len(r.train) >= 2 and r.train[-1][1] > 1.1 * r.train[0][1]:
        return found(
            "the loss ended higher than it started",
            f"training loss went from {r.train[0][1]:.3f} (step {r.train[0][0]}) to {r.train[-1][1]:.3f} "
            f"(step {r.train[-1][0]})",
            r.train[0][0],
        )
    # Far too high a learning rate often does not explode (clipping bounds each step) but wrecks the weights:
    # the loss drops once, then freezes far above where a sane learning rate would take it.
    tail = r.train[-max(2, len(r.train) // 3) :]
    start = r.val[0][1] if r.val and r.val[0][0] == 0 else (r.train[0][1] if r.train else 0.0)
    if lr and lr > HIGH_LR and len(r.train) >= 3 and start > 0:
        values = [v for _, v in tail]
        moved = (max(values) - min(values)) / max(values)
        if moved < STALLED_MOVE and values[-1] > STALLED_LEVEL * start:
            return found(
                f"learning rate {_fmt_lr(lr)} froze the model at a high loss",
                f"--lr {_fmt_lr(lr)} is far above the usual range (1e-5 to 5e-3); training loss stopped moving at "
                f"{values[-1]:.3f} from step {tail[0][0]} (changed {moved:.1%}), still "
                f"{values[-1] / start:.0%} of the starting loss {start:.3f}",
                tail[0][0],
            )
    return None


def _overfitting(r: RunRecords) -> Finding | None:
    if len(r.val) < 3:
        return None
    best_i = min(range(len(r.val)), key=lambda i: r.val[i][1])
    if best_i == len(r.val) - 1:
        return None
    best_step, best = r.val[best_i]
    last_step, last = r.val[-1]
    if last - best <= max(OVERFIT_RISE * best, 0.02):
        return None
    train_best, train_last = _loss_at(r.train, best_step), _loss_at(r.train, last_step)
    if train_best is None or train_last is None or train_last >= train_best:
        return None  # both rising: that is instability, not memorisation
    saved = (r.summary or {}).get("saved_from_step")
    keep = (
        f"lapidar kept the weights from step {best_step} (best validation loss), so the saved model is not the "
        "overfitted one. Next time "
        if saved == best_step
        else ""
    )
    return Finding(
        "warning",
        f"Overfitting after step {best_step}",
        f"validation loss fell to {best:.3f} at step {best_step}, then rose to {last:.3f} by step {last_step} "
        f"(+{(last - best) / best:.0%}) while training loss kept falling ({train_best:.3f} -> {train_last:.3f}): "
        "the model is memorising the training rows",
        f"{keep}train for about {best_step} steps (--max-steps {best_step}) or keep early stopping on (--patience 3); "
        "more varied data, a lower --lr, or a smaller --lora-r also delay it.",
        "overfitting",
        best_step,
    )


def _flat(r: RunRecords) -> Finding | None:
    # Like with like: training loss from its first to its last records, validation loss from the untrained model
    # (step 0) to its best. Comparing validation at step 0 with training at the end mixes two data sets: when the
    # validation rows are easier than the training rows, a run that learnt a lot looked flat.
    if len(r.train) < 2:
        return None
    (first_step, first), last_step = r.train[0], r.train[-1][0]
    end = min(v for _, v in r.train[-max(1, len(r.train) // 5) :])
    if first <= 0 or (first - end) / first >= FLAT_DROP:
        return None
    evidence = f"training loss went from {first:.3f} (step {first_step}) to {end:.3f} ({(first - end) / first:.1%})"
    if len(r.val) >= 2 and r.val[0][0] == 0:
        untrained, best = r.val[0][1], min(v for _, v in r.val)
        moved = (untrained - best) / untrained if untrained > 0 else 1.0
        if moved >= FLAT_DROP:
            return None  # validation loss fell from the untrained model's: learnt early, then plateaued
        evidence += f" and validation loss from {untrained:.3f} (untrained) to {best:.3f} ({moved:.1%})"
    evidence += f", less than {FLAT_DROP:.0%} over {last_step} steps"
    lr = r.config.get("lr")
    more = "train for more steps and check that the answers in the data are what you want learnt."
    if lr and lr < LOW_LR:
        return Finding(
            "warning",
            f"Learning rate {_fmt_lr(lr)} is too low: the loss barely moved (underfitting)",
            f"{evidence}; --lr {_fmt_lr(lr)} is far below the usual range (1e-5 to 5e-3)",
            "Start from lapidar's default --lr 2e-4 (1e-5 to 5e-5 for --method full); if the loss still barely "
            f"moves, {more}",
            "underfitting",
            last_step,
        )
    return Finding(
        "warning",
        "The loss barely moved (underfitting)",
        evidence,
        (f"Raise the learning rate 3-10x (--lr {_fmt_lr(lr * 5)}, now {_fmt_lr(lr)}) " if lr else "Raise --lr ")
        + "and/or "
        + more,
        "underfitting",
        last_step,
    )


def _too_few_steps(r: RunRecords) -> Finding | None:
    series = r.val if len(r.val) >= 2 else r.train
    if len(series) < 2:
        return None
    (prev_step, prev), (last_step, last) = series[-2], series[-1]
    if min(v for _, v in series) < last or prev <= 0 or (prev - last) / prev < STILL_IMPROVING:
        return None
    steps = (r.summary or {}).get("steps") or last_step
    if "early stopping" in str((r.summary or {}).get("stop_reason", "")):
        return None
    what = "validation" if series is r.val else "training"
    return Finding(
        "info",
        "Still improving when training stopped: more steps would likely help",
        f"{what} loss fell from {prev:.3f} (step {prev_step}) to {last:.3f} (step {last_step}), "
        f"{(prev - last) / prev:.1%} in the last interval, and was at its lowest at the end",
        f"Train longer: --max-steps {2 * steps} (or twice the --epochs); lapidar keeps the best checkpoint, so a "
        "longer run costs nothing if it starts to overfit.",
        "too_few_steps",
        last_step,
    )


def _early_stopping(r: RunRecords) -> Finding | None:
    reason = str((r.summary or {}).get("stop_reason", ""))
    if not reason.startswith("early stopping"):
        return None
    best = (r.summary or {}).get("best_step")
    eval_steps = r.config.get("eval_steps")
    quick = best is not None and eval_steps and best <= eval_steps
    return Finding(
        "info",
        f"Early stopping ended the run at step {(r.summary or {}).get('steps')}",
        f"{reason}; the saved weights are from step {best}",
        "It stopped almost at once: the learning rate may be too high or the validation rows unlike the training "
        "rows; try a lower --lr."
        if quick
        else "This is early stopping doing its job; to let a run go further, raise --patience.",
        "early_stopping",
        best,
    )


def _eos(r: RunRecords) -> Finding | None:
    rate, where, length = None, "", None
    if r.eval is not None:
        scores = (r.eval.get("model") or {}).get("scores") or {}
        rate, length = scores.get("eos_rate"), scores.get("answer_length")
        where = f"on the {r.eval.get('rows')} test rows of {r.eval.get('data')}"
    elif r.generation.get("eos_rate"):
        step, rate = r.generation["eos_rate"][-1]
        where = f"on validation rows at step {step}"
    if rate is None or rate >= EOS_OK:
        return None
    limit = (r.eval or {}).get("settings", {}).get("max_new_tokens")
    detail = f"; answers averaged {length:.0f} tokens (limit {limit})" if length is not None and limit else ""
    return Finding(
        "warning" if rate >= 0.5 else "problem",
        "Answers do not stop on their own",
        f"only {rate:.0%} of answers ended with the end-of-answer token {where}{detail}",
        "Train longer or with a higher --lr (the model learns to stop together with the answers); check the training "
        "answers are complete; if answers are legitimately long, raise --max-new-tokens.",
        "no_eos",
    )


def _gap(r: RunRecords) -> Finding | None:
    if not r.val or not r.train:
        return None
    step, val = r.val[-1]
    train = _loss_at(r.train, step)
    if train is None or val - train <= GAP_NATS or val <= GAP_RATIO * train:
        return None
    return Finding(
        "warning",
        "Validation loss is far above training loss",
        f"at step {step}: validation {val:.3f} vs training {train:.3f} (gap {val - train:.2f} nats)",
        "The model fits the training rows much better than unseen ones: add more (and more varied) training rows, "
        "check the validation rows are the same kind of task, or lower --lr / --lora-r.",
        "train_val_gap",
        step,
    )


def _comparison(r: RunRecords) -> list[Finding]:
    out: list[Finding] = []
    ev = r.eval or {}
    primary = ev.get("primary_metric")
    comp = (ev.get("comparison") or {}).get(primary or "")
    if comp:
        before, after = comp["base"], comp["model"]
        rows = ev.get("row_changes") or {}
        counts = f" ({len(rows.get('better', []))} rows better, {len(rows.get('worse', []))} worse)" if rows else ""
        if after > before:
            worse = len(rows.get("worse", []))
            out.append(
                Finding(
                    "good",
                    f"The fine-tune beats the base model on {primary}",
                    f"{primary} {before:.3f} -> {after:.3f} on {ev.get('rows')} test rows{counts}",
                    f"Read the {worse} rows that got worse (eval/eval.json, row_changes) before shipping."
                    if worse
                    else "No row got worse; confirm on a larger test set before shipping.",
                    "better_than_base",
                )
            )
        else:
            out.append(
                Finding(
                    "warning",
                    f"The fine-tune is not better than the base model on {primary}",
                    f"{primary} {before:.3f} -> {after:.3f} on {ev.get('rows')} test rows{counts}",
                    "Check that the test rows match the training task; train longer or with more data.",
                    "not_better_than_base",
                )
            )
    probe = ev.get("probe") or {}
    if probe.get("forgetting"):
        out.append(
            Finding(
                "warning",
                "Possible forgetting of general ability",
                probe["verdict"],
                "Lower --lr, train fewer steps, use LoRA with a smaller --lora-r, or mix general "
                "instruction data into the training set.",
                "forgetting",
            )
        )
    return out


def diagnose(run_dir: Path | str) -> list[Finding]:
    """Plain-language findings about a run, most serious first."""
    r = read_run(Path(run_dir))
    findings: list[Finding] = []
    if r.summary is None:
        last = r.rows[-1]["step"] if r.rows else 0
        findings.append(
            Finding(
                "warning",
                "The run did not finish",
                f"summary.json is missing; the last record in metrics.jsonl is from step {last}",
                "Look at the error the run printed (divergence, out of memory or an interruption); "
                "the findings below use the records up to that point.",
                "unfinished",
                last,
            )
        )
    diverged = _divergence(r)
    if diverged:
        findings.append(diverged)
    else:
        findings += [f for f in (_overfitting(r), _flat(r), _too_few_steps(r)) if f]
    overfit = any(f.code == "overfitting" for f in findings)
    findings += [f for f in (_early_stopping(r), _eos(r), None if overfit or diverged else _gap(r)) if f]
    findings += _comparison(r)
    if not r.val:
        findings.append(
            Finding(
                "info",
                "No validation loss",
                "the run had no validation rows",
                "Pass --val-data (or keep the 10% hold-out) so overfitting can be seen and early stopping can work.",
                "no_validation",
            )
        )
    if (r.summary or {}).get("random_init"):
        findings.append(
            Finding(
                "info",
                "Random base weights",
                "the base model is randomly initialised (tiny-qwen2.5 or --init random)",
                "These numbers test the pipeline, not a real model; use a pretrained preset for real answers.",
                "random_init",
            )
        )
    if not any(f.severity in ("problem", "warning") for f in findings) and len(r.val) >= 2:
        first, best = r.val[0][1], min(v for _, v in r.val)
        findings.append(
            Finding(
                "good",
                "Training looks healthy",
                f"validation loss fell from {first:.3f} to {best:.3f} ({(first - best) / first:.0%})",
                "Run `lapidar eval RUN --data TEST --compare-base` to check answers, not just loss.",
                "healthy",
            )
        )
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


_STYLE = {"problem": "bold red", "warning": "yellow", "info": "cyan", "good": "green"}


def print_findings(console: Console, findings: list[Finding]) -> None:
    """Print findings as a short list: severity, title, evidence, suggestion."""
    if not findings:
        return
    console.print("[bold]Diagnosis[/bold]")
    for f in findings:
        style = _STYLE.get(f.severity, "")
        console.print(f"[{style}]{f.severity:>7}[/{style}]  [bold]{escape(f.title)}[/bold]")
        console.print(f"         {escape(f.evidence)}")
        console.print(f"         [dim]→ {escape(f.suggestion)}[/dim]")
