"""The diagnosis on real tiny-qwen2.5 runs made to fail on purpose: a run that overfits (6 rows, high constant LR,
no early stopping), a run that diverges (absurd LR) and one that underfits (LR 2000x too low); and `lapidar report`
on them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from lapidar.evaluation.diagnosis import diagnose
from tests.recipes.test_eval_recipe import TEST, TRAIN, lapidar, read_jsonl

pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, Path]:
    """6 training and 6 validation rows of the topic task (two per label)."""
    root = tmp_path_factory.mktemp("report")
    train, val = root / "train.jsonl", root / "val.jsonl"
    train.write_text("".join(TRAIN.read_text().splitlines(keepends=True)[:6]))
    val.write_text("".join(TEST.read_text().splitlines(keepends=True)[:6]))
    return train, val


def train_with(root: Path, name: str, data: tuple[Path, Path], check: bool = True, **values):
    config = root / f"{name}.yaml"
    run = root / name
    # save_steps beyond the run: no periodic checkpoints to write (the best weights are still saved)
    values = {"model": "tiny-qwen2.5", "data": str(data[0]), "val_data": str(data[1]), "output": str(run),
              "seed": 7, "batch_size": 6, "save_steps": 1000, **values}  # fmt: skip
    config.write_text(yaml.safe_dump(values))
    return run, lapidar("train", str(config), check=check)


@pytest.fixture(scope="module")
def overfitted(small_data, tmp_path_factory):
    # 40 steps = 40 epochs of 6 rows at a constant 5e-3, no dropout, early stopping off (--patience 0).
    run, _ = train_with(
        tmp_path_factory.mktemp("overfit"), "overfit", small_data,
        lr=5e-3, scheduler="constant", lora_dropout=0.0, max_steps=40, eval_steps=5, patience=0,
    )  # fmt: skip
    return run


@pytest.fixture(scope="module")
def diverged(small_data, tmp_path_factory):
    # lr 10 is ~5000x the default: the weights blow up within a few steps. Validation every step, so the curve
    # shows exactly where.
    return train_with(
        tmp_path_factory.mktemp("diverge"), "diverge", small_data, check=False, lr=10.0, max_steps=10, eval_steps=1
    )


@pytest.fixture(scope="module")
def underfitted(small_data, tmp_path_factory):
    # lr 1e-7 is 2000x below the default: 20 steps (20 epochs of 6 rows) move the loss by less than 0.1%.
    run, proc = train_with(
        tmp_path_factory.mktemp("underfit"), "underfit", small_data, lr=1e-7, max_steps=20, eval_steps=5
    )
    return run, proc


def test_overfitting_is_found_at_the_step_validation_loss_was_lowest(overfitted):
    records = read_jsonl(overfitted / "metrics.jsonl")
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    best_step, best = min(val, key=lambda p: p[1])
    # the run really overfits: validation loss ends well above its minimum while training loss keeps falling
    assert 0 < best_step < val[-1][0] and val[-1][1] > 1.05 * best
    assert train[-1][1] < min(v for s, v in train if s <= best_step)

    findings = diagnose(overfitted)
    over = next(f for f in findings if f.code == "overfitting")
    assert over.step == best_step and over.title == f"Overfitting after step {best_step}"
    assert f"--max-steps {best_step}" in over.suggestion
    assert "divergence" not in [f.code for f in findings] and "underfitting" not in [f.code for f in findings]
    summary = json.loads((overfitted / "summary.json").read_text())
    assert summary["best_step"] == best_step  # and lapidar kept the weights from before the overfitting
    assert f"kept the weights from step {best_step}" in over.suggestion


def test_divergence_is_found_with_its_step(diverged):
    run, proc = diverged
    assert proc.returncode == 2 and "diverged" in proc.stderr
    records = read_jsonl(run / "metrics.jsonl")
    first_bad = min(
        r["step"] for r in records for k in ("train_loss", "val_loss") if k in r and not math.isfinite(r[k])
    )
    findings = diagnose(run)
    assert findings[0].code == "divergence" and findings[0].severity == "problem"
    assert findings[0].step == first_bad and "--lr 10 is far above" in findings[0].suggestion


def test_far_too_low_learning_rate_is_underfitting(underfitted):
    run, proc = underfitted
    records = read_jsonl(run / "metrics.jsonl")
    train = [r["train_loss"] for r in records if "train_loss" in r]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    # the curve really is flat: both losses moved by less than 1% in 20 steps
    assert len(train) == 4 and len(val) == 5
    assert abs(train[0] - train[-1]) < 0.01 * train[0] and abs(val[0] - min(val)) < 0.01 * val[0]

    findings = diagnose(run)
    assert [f.code for f in findings if f.severity in ("problem", "warning")] == ["underfitting"]
    flat = findings[0]
    assert flat.title == "Learning rate 1e-7 is too low: the loss barely moved (underfitting)"
    assert "--lr 1e-7 is far below" in flat.evidence and "over 20 steps" in flat.evidence
    assert "--lr 2e-4" in flat.suggestion
    # `lapidar train` prints the same verdict at the end of the run
    assert "Learning rate 1e-7 is too low" in proc.stdout


def test_report_command_on_an_overfitted_run(overfitted):
    proc = lapidar("report", str(overfitted))
    assert "Overfitting after step" in proc.stdout and "report.html" in proc.stdout
    page = (overfitted / "report.html").read_text()
    assert "Overfitting after step" in page and "No evaluation yet" in page
    assert "<script" not in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count('src="data:image/png;base64,') == 3  # loss, learning rate, throughput


def test_report_names_the_divergence(diverged):
    run, _ = diverged
    page = (run / "report.html").read_text() if (run / "report.html").exists() else ""
    if not page:
        from lapidar.evaluation.report import write_report

        page = write_report(run).read_text()
    assert "Training diverged" in page and "problem" in page
