"""The run diagnosis on hand-made curves: each failure mode is recognised, with the step it starts at, and a
healthy run gets no false alarm. (The same checks on real tiny-model runs: tests/recipes/test_report_recipe.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from lapidar.errors import UserError
from lapidar.evaluation.diagnosis import SEVERITIES, diagnose


def make_run(
    root: Path,
    train: list[tuple[int, float]],
    val: list[tuple[int, float]] = (),  # type: ignore[assignment]
    summary: dict | None = None,
    config: dict | None = None,
    eval_json: dict | None = None,
    extra: list[dict] = (),  # type: ignore[assignment]
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    records = [{"step": s, "train_loss": v, "lr": 1e-3, "tokens_per_s": 100.0} for s, v in train]
    records += [{"step": s, "val_loss": v} for s, v in val]
    records += list(extra)
    records.sort(key=lambda r: (r["step"], "val_loss" in r))
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "config.yaml").write_text(yaml.safe_dump(config or {"lr": 2e-4, "eval_steps": 10}))
    if summary is not False:
        base = {"steps": max(s for s, _ in train) if train else 0, "stop_reason": "reached max_steps"}
        (root / "summary.json").write_text(json.dumps(base | (summary or {})))
    if eval_json is not None:
        (root / "eval").mkdir()
        (root / "eval" / "eval.json").write_text(json.dumps(eval_json))
    return root


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def falling(n: int = 6, start: float = 6.0, end: float = 0.5, every: int = 10) -> list[tuple[int, float]]:
    return [(every * (i + 1), start + (end - start) * i / (n - 1)) for i in range(n)]


def test_overfitting_names_the_step_validation_loss_turned(tmp_path):
    val = [(0, 12.0), (10, 5.0), (20, 3.1), (30, 2.5), (40, 2.8), (50, 3.4), (60, 4.0)]
    run = make_run(tmp_path, falling(), val, summary={"saved_from_step": 30, "best_step": 30})
    findings = diagnose(run)
    over = next(f for f in findings if f.code == "overfitting")
    assert over.step == 30 and over.severity == "warning"
    assert "2.500 at step 30" in over.evidence and "4.000 by step 60" in over.evidence
    assert "kept the weights from step 30" in over.suggestion and "--max-steps 30" in over.suggestion
    assert "train_val_gap" not in codes(findings)  # the gap is explained by the overfitting finding


def test_small_wobble_is_not_overfitting(tmp_path):
    val = [(0, 12.0), (10, 5.0), (20, 3.0), (30, 2.99), (40, 3.02)]
    assert "overfitting" not in codes(diagnose(make_run(tmp_path, falling(4), val)))


def test_nan_loss_is_divergence(tmp_path):
    run = make_run(tmp_path, [(5, 9.0), (10, 7.0), (15, math.nan)], [(0, 12.0)], summary=False, config={"lr": 5.0})
    findings = diagnose(run)
    assert findings[0].severity == "problem" and findings[0].code == "divergence" and findings[0].step == 15
    assert "--lr 2e-4" in findings[0].suggestion
    assert "unfinished" in codes(findings)


def test_loss_spike_is_divergence(tmp_path):
    run = make_run(tmp_path, [(5, 8.0), (10, 4.0), (15, 2.0), (20, 6.5), (25, 9.0)], [(0, 12.0), (25, 9.5)])
    div = next(f for f in diagnose(run) if f.code == "divergence")
    assert div.step == 20 and "jumped to 6.500 at step 20" in div.evidence


def test_flat_loss_is_underfitting_and_suggests_a_higher_lr(tmp_path):
    train = [(10, 11.95), (20, 11.9), (30, 11.88), (40, 11.87)]
    run = make_run(tmp_path, train, [(0, 12.0), (20, 11.93), (40, 11.9)], config={"lr": 1e-6})
    flat = next(f for f in diagnose(run) if f.code == "underfitting")
    assert "--lr 5e-6" in flat.suggestion and "over 40 steps" in flat.evidence


def test_far_too_low_learning_rate_is_named_with_the_default_to_use(tmp_path):
    train = [(5, 12.496), (10, 12.4957), (15, 12.4953), (20, 12.4951)]
    run = make_run(tmp_path, train, [(0, 12.516), (10, 12.5156), (20, 12.5154)], config={"lr": 1e-7})
    flat = next(f for f in diagnose(run) if f.code == "underfitting")
    assert flat.title.startswith("Learning rate 1e-7 is too low") and "--lr 2e-4" in flat.suggestion
    assert "12.496 (step 5) to 12.495" in flat.evidence and "12.516 (untrained) to 12.515" in flat.evidence


def test_easier_validation_rows_do_not_make_a_learning_run_look_flat(tmp_path):
    # Validation rows easier than training rows: validation starts at 2.0, where training ends; both fell a lot.
    train = [(10, 3.0), (20, 2.6), (30, 2.3), (40, 2.0)]
    run = make_run(tmp_path, train, [(0, 2.0), (20, 1.6), (40, 1.5)], config={"lr": 2e-4})
    assert "underfitting" not in codes(diagnose(run))


def test_quick_drop_then_plateau_is_not_underfitting(tmp_path):
    # All the learning happened before the first logged training loss: validation shows it.
    train = [(10, 2.01), (20, 2.0), (30, 1.99), (40, 1.98)]
    run = make_run(tmp_path, train, [(0, 12.0), (20, 2.1), (40, 2.08)])
    assert "underfitting" not in codes(diagnose(run))


def test_still_falling_at_the_end_asks_for_more_steps(tmp_path):
    run = make_run(tmp_path, falling(), [(0, 12.0), (20, 6.0), (40, 4.0), (60, 3.0)], summary={"steps": 60})
    more = next(f for f in diagnose(run) if f.code == "too_few_steps")
    assert more.step == 60 and "--max-steps 120" in more.suggestion


def test_early_stopping_is_reported_with_its_reason(tmp_path):
    reason = "early stopping: validation loss did not improve for 2 evaluations after step 30"
    val = [(0, 12.0), (10, 5.0), (20, 3.0), (30, 2.9), (40, 2.95), (50, 2.97)]
    run = make_run(tmp_path, falling(5), val, summary={"stop_reason": reason, "best_step": 30, "steps": 50})
    stop = next(f for f in diagnose(run) if f.code == "early_stopping")
    assert stop.step == 30 and reason in stop.evidence


def test_answers_that_do_not_stop(tmp_path):
    ev = {"rows": 12, "data": "t.jsonl", "model": {"scores": {"eos_rate": 0.25, "answer_length": 61.0}},
          "settings": {"max_new_tokens": 64}}  # fmt: skip
    run = make_run(tmp_path, falling(), [(0, 12.0), (60, 1.0)], eval_json=ev)
    eos = next(f for f in diagnose(run) if f.code == "no_eos")
    assert eos.severity == "problem" and "25%" in eos.evidence and "limit 64" in eos.evidence


def test_eos_rate_logged_during_training_is_used_without_eval(tmp_path):
    extra = [{"step": 60, "val_eos_rate": 0.6, "val_accuracy": 0.3}]
    run = make_run(tmp_path, falling(), [(0, 12.0), (60, 1.0)], extra=extra)
    assert "no_eos" in codes(diagnose(run))


def test_wide_train_validation_gap(tmp_path):
    run = make_run(tmp_path, falling(end=0.3), [(0, 12.0), (30, 2.6), (60, 2.5)])
    gap = next(f for f in diagnose(run) if f.code == "train_val_gap")
    assert gap.step == 60


def test_healthy_run_gets_only_good_news(tmp_path):
    run = make_run(tmp_path, falling(end=2.3), [(0, 12.0), (20, 3.0), (40, 2.52), (60, 2.51)])
    findings = diagnose(run)
    assert codes(findings) == ["healthy"] and findings[0].severity == "good"


def test_comparison_and_forgetting_from_eval_json(tmp_path):
    ev = {
        "rows": 12,
        "primary_metric": "accuracy",
        "comparison": {"accuracy": {"base": 0.0, "model": 0.75, "change": 0.75}},
        "row_changes": {"better": [{}] * 9, "worse": [], "unchanged": 3},
        "probe": {"forgetting": True, "verdict": "possible forgetting: correct probe answers fell from 80% to 50%"},
    }
    run = make_run(tmp_path, falling(), [(0, 12.0), (60, 1.0)], eval_json=ev)
    findings = {f.code: f for f in diagnose(run)}
    assert (
        "0.000 -> 0.750" in findings["better_than_base"].evidence
        and "9 rows better" in findings["better_than_base"].evidence
    )
    assert "80% to 50%" in findings["forgetting"].evidence


def test_findings_are_sorted_most_serious_first(tmp_path):
    run = make_run(tmp_path, [(5, 8.0), (10, math.inf)], summary=False)
    ranks = [SEVERITIES.index(f.severity) for f in diagnose(run)]
    assert ranks == sorted(ranks)
    assert "no_validation" in codes(diagnose(run))


def test_not_a_run_and_broken_metrics(tmp_path):
    with pytest.raises(UserError, match=r"metrics\.jsonl is missing"):
        diagnose(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "val_loss": 1}\n{oops\n{"step": 5, "train_loss": 1}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl: line 2: not valid JSON"):
        diagnose(tmp_path)
    # a cut last line (run killed mid-write) is ignored
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "val_loss": 1}\n{"step": 5, "train_lo')
    assert diagnose(tmp_path)


def test_loss_worse_than_the_untrained_model_is_divergence(tmp_path):
    run = make_run(tmp_path, [(5, 10.7), (10, 10.6), (15, 10.5)], [(0, 12.4), (5, 13.4), (10, 10.6)])
    div = next(f for f in diagnose(run) if f.code == "divergence")
    assert div.step == 5 and "above the untrained model's 12.400" in div.evidence


def test_absurd_learning_rate_that_freezes_the_loss(tmp_path):
    train = [(5, 12.0), (10, 10.31), (15, 10.28), (20, 10.27), (25, 10.27), (30, 10.26)]
    val = [(0, 12.4), (10, 10.5), (20, 10.49), (30, 10.48)]
    div = next(f for f in diagnose(make_run(tmp_path / "a", train, val, config={"lr": 1.0})) if f.code == "divergence")
    assert "froze" in div.title and "default --lr 2e-4" in div.suggestion
    # the same curve with an ordinary learning rate is not blamed on it
    assert "divergence" not in codes(diagnose(make_run(tmp_path / "b", train, val, config={"lr": 2e-4})))


def test_stop_reason_naming_divergence(tmp_path):
    run = make_run(tmp_path, [(5, 10.0)], summary={"stop_reason": "diverged at step 7 (loss is nan)", "steps": 7})
    div = diagnose(run)[0]
    assert div.code == "divergence" and div.step == 7


def test_ordinary_learning_rate_is_lowered_tenfold(tmp_path):
    run = make_run(tmp_path, [(5, 8.0), (10, 4.0), (15, 2.0), (20, 6.5)], config={"lr": 3e-3})
    assert "(--lr 3e-4, now 3e-3)" in diagnose(run)[0].suggestion
