"""`lapidar eval` end to end on tiny-qwen2.5: a LoRA run on a small topic-classification set (sports / weather /
food) must beat its base model, and every number in eval.json must match an independent scikit-learn computation
on predictions.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.recipe

FIXTURES = Path(__file__).parents[1] / "fixtures" / "eval"
TRAIN, VAL, TEST = (FIXTURES / f"topics_{s}.jsonl" for s in ("train", "val", "test"))


def lapidar(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # One OpenMP thread: on a shared 2-core machine a second thread spin-waits for a busy core and makes the tiny
    # model ~4x slower; results are identical.
    env = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=600, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Train 40 LoRA steps on 24 labelled sentences, then `eval --compare-base` on 12 unseen ones."""
    run = tmp_path_factory.mktemp("eval") / "topics"
    lapidar(
        "train", "--model", "tiny-qwen2.5", "--data", str(TRAIN), "--val-data", str(VAL), "--max-steps", "40",
        "--lr", "2e-3", "--batch-size", "8", "--eval-steps", "10", "--save-steps", "1000", "--seed", "7",
        "--output", str(run),
    )  # fmt: skip
    proc = lapidar("eval", str(run), "--data", str(TEST), "--compare-base")
    result = json.loads((run / "eval" / "eval.json").read_text())
    return run, proc, result, read_jsonl(run / "eval" / "predictions.jsonl")


def test_finetune_beats_base_on_accuracy_and_f1(evaluated):
    _, proc, result, rows = evaluated
    assert result["task_shape"] == "classification" and result["primary_metric"] == "accuracy"
    assert result["metrics"][:2] == ["accuracy", "macro_f1"] and len(rows) == result["rows"] == 12
    comp = result["comparison"]
    for metric in ("accuracy", "macro_f1", "eos_rate"):
        assert comp[metric]["model"] > comp[metric]["base"], metric
    assert comp["accuracy"]["base"] == 0.0 and comp["accuracy"]["model"] >= 0.5
    assert comp["loss"]["model"] < comp["loss"]["base"]
    # The untrained tiny model's loss on these 12 answers does not depend on training: pinned.
    assert comp["loss"]["base"] == pytest.approx(12.41, abs=0.05)
    # printed side by side, with the rows that changed, and labelled as a random model
    assert "fine-tuned" in proc.stdout and "change" in proc.stdout and "better" in proc.stdout
    assert "RANDOMLY INITIALISED" in proc.stdout and all(r["note"].startswith("(RANDOMLY") for r in rows)


def test_numbers_match_scikit_learn(evaluated):
    sk = pytest.importorskip("sklearn.metrics")
    _, _, result, rows = evaluated
    # An independent reading of the raw strings: a label is the answer lowercased, without the final full stop.
    y_true = [r["reference"].strip().lower().rstrip(".") for r in rows]
    for side, preds in (
        ("model", [r["prediction"].strip().lower().rstrip(".") for r in rows]),
        ("base", [r["base"]["prediction"].strip().lower().rstrip(".") for r in rows]),
    ):
        labels = sorted(set(y_true))
        scores = result[side]["scores"]
        assert scores["accuracy"] == pytest.approx(sk.accuracy_score(y_true, preds)), side
        assert scores["macro_f1"] == pytest.approx(
            sk.f1_score(y_true, preds, labels=labels, average="macro", zero_division=0)
        ), side
        cm = result[side]["confusion_matrix"]
        assert [row[: len(labels)] for row in cm["matrix"]] == sk.confusion_matrix(
            y_true, preds, labels=labels
        ).tolist()
        assert scores["eos_rate"] == pytest.approx(
            sum((r if side == "model" else r["base"])["stopped_at_eos"] for r in rows) / len(rows)
        )
    assert [r["labels"]["prediction"] for r in rows] == [r["prediction"].strip().lower().rstrip(".") for r in rows]


def test_rows_that_got_better_and_worse(evaluated):
    _, _, result, rows = evaluated
    changes = result["row_changes"]
    better = [r["index"] for r in rows if r["scores"]["accuracy"] > r["base"]["scores"]["accuracy"]]
    worse = [r["index"] for r in rows if r["scores"]["accuracy"] < r["base"]["scores"]["accuracy"]]
    assert sorted(e["index"] for e in changes["better"]) == better and len(better) >= 6
    assert sorted(e["index"] for e in changes["worse"]) == worse
    assert changes["unchanged"] == len(rows) - len(better) - len(worse)


def test_forgetting_probe_runs_before_and_after(evaluated):
    run, _, result, _ = evaluated
    probe = result["probe"]
    assert probe["rows"] == 30 and probe["data"].endswith("probes.jsonl")
    assert set(probe["model"]["scores"]) == {"contains", "token_f1", "eos_rate"} and "base" in probe
    assert "random weights" in probe["verdict"] and probe["forgetting"] is False
    assert len(read_jsonl(run / "eval" / "probe_predictions.jsonl")) == 30


def test_generation_metrics_for_the_training_loop(evaluated, one_thread):
    from lapidar.data.formats import load_examples
    from lapidar.evaluation.evaluate import generation_metrics
    from lapidar.inference.generate import load_for_inference

    run, _, result, _ = evaluated
    loaded = load_for_inference(str(run))
    examples, _ = load_examples(TEST)
    scores = generation_metrics(loaded, None, examples, None, None)
    for name, value in result["model"]["scores"].items():
        assert scores[name] == pytest.approx(value), name
    # a bare model in training mode, as the loop has it: scored, then left in training mode
    loaded.model.train()
    few = generation_metrics(loaded.model, loaded.tokenizer, examples[:3], ["accuracy"], max_new_tokens=4)
    assert set(few) == {"accuracy"} and loaded.model.training


def test_report_includes_the_evaluation(evaluated):
    run, _, _, _ = evaluated
    proc = lapidar("report", str(run))
    page = (run / "report.html").read_text()
    assert "Before / after" in page and "Confusion matrix" in page and "Sample answers" in page
    assert "beats the base model on accuracy" in page and "Diagnosis" in proc.stdout
    # a run that learnt (lr 2e-3) must not be called flat
    assert "underfitting" not in page


def test_options_on_a_preset(tmp_path, one_thread):
    from lapidar.evaluation.evaluate import EvalSettings, main

    out = tmp_path / "out"
    result = main(
        EvalSettings(
            target="tiny-qwen2.5",
            data=TEST,
            output=out,
            metrics=["token_f1", "json_valid"],
            json_schema=FIXTURES / "answer_schema.json",
            metric_fn=f"{FIXTURES / 'my_metric.py'}:first_letter",
            max_new_tokens=4,
            limit=3,
        )
    )
    assert result["metrics"] == ["first_letter", "json_schema", "token_f1", "json_valid"]
    assert result["primary_metric"] == "first_letter" and result["base"] is None and "probe" not in result
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 3 and all(r["stopped_at_eos"] is False and r["n_tokens"] == 4 for r in rows)
    assert result["random_init"] is True and "RANDOMLY" in result["model"]["label"]


def test_user_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "?"}]}) + "\n"
    )
    proc = lapidar("eval", "tiny-qwen2.5", "--data", str(bad), check=False)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().count("\n") == 0
        and "bad.jsonl: line 1: the last message must be the reference" in proc.stderr
    )

    from lapidar.errors import UserError
    from lapidar.evaluation.evaluate import EvalSettings, main

    with pytest.raises(UserError, match="--compare-base needs a run directory"):
        main(EvalSettings(target="tiny-qwen2.5", data=TEST, compare_base=True))
    with pytest.raises(UserError, match="unknown metric 'bleurt'"):
        main(EvalSettings(target="tiny-qwen2.5", data=TEST, metrics=["bleurt"]))
