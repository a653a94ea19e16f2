"""report.html on a hand-made run: self-contained (opens offline), carries the diagnosis, the curves, the
evaluation tables and sample answers; metrics.png appears when generation metrics were logged."""

from __future__ import annotations

import json
import re

from lapidar.evaluation.report import plot_generation_metrics, write_report
from tests.unit.test_diagnosis import falling, make_run


def _eval_files(run):
    ev = {
        "data": "test.jsonl",
        "rows": 2,
        "task_shape": "classification",
        "metrics": ["accuracy", "eos_rate"],
        "primary_metric": "accuracy",
        "settings": {"max_new_tokens": 11},
        "model": {"scores": {"accuracy": 1.0, "eos_rate": 1.0}, "loss": 0.5, "perplexity": 1.65,
                  "confusion_matrix": {"labels": ["a", "b"], "columns": ["a", "b"], "matrix": [[1, 0], [0, 1]]}},
        "base": {"scores": {"accuracy": 0.0, "eos_rate": 0.0}, "loss": 12.0, "perplexity": 1.6e5},
        "comparison": {"accuracy": {"base": 0.0, "model": 1.0, "change": 1.0}},
        "row_changes": {"metric": "accuracy", "better": [{"index": 1}], "worse": [], "unchanged": 1},
        "probe": {"rows": 30, "model": {"scores": {"contains": 0.5}, "loss": 3.0},
                  "base": {"scores": {"contains": 0.6}, "loss": 2.9}, "verdict": "no sign of forgetting on the probe"},
    }  # fmt: skip
    rows = [
        {"index": i, "prompt": [{"role": "user", "content": f"question <{i}>"}], "reference": ref,
         "prediction": ref, "stopped_at_eos": True, "scores": {"accuracy": 1.0},
         "base": {"prediction": "garbage & noise", "scores": {"accuracy": 0.0}}}
        for i, ref in enumerate(["a", "b"])
    ]  # fmt: skip
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "eval.json").write_text(json.dumps(ev))
    (run / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_is_self_contained_and_complete(tmp_path):
    val = [(0, 12.0), (10, 5.0), (20, 3.1), (30, 2.5), (40, 2.8), (50, 3.4), (60, 4.0)]
    extra = [
        {"step": s, "val_accuracy": a, "val_eos_rate": e} for s, a, e in [(0, 0.0, 0.0), (30, 0.7, 1.0), (60, 0.6, 1.0)]
    ]
    run = make_run(tmp_path / "run", falling(), val, summary={"random_init": True, "best_step": 30, "steps": 60},
                   config={"lr": 2e-3, "data": "train.jsonl", "max_length": 512}, extra=extra)  # fmt: skip
    _eval_files(run)
    page = write_report(run).read_text()

    # opens offline: nothing is fetched (no scripts, stylesheets, or remote images)
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert images == ["loss curves", "learning rate", "throughput", "validation metrics"]

    assert "RANDOMLY INITIALISED" in page
    assert "Overfitting after step 30" in page  # the diagnosis
    assert "Before / after" in page and "fine-tuned" in page and "no sign of forgetting" in page
    # green for better, red for worse: a loss that fell is better, an accuracy that rose too
    assert re.search(r"<td>loss</td><td>[^<]+</td><td>[^<]+</td><td><span class=better>-11\.5</span>", page)
    assert re.search(r"<td>accuracy</td><td>[^<]+</td><td>[^<]+</td><td><span class=better>\+1</span>", page)
    assert "Confusion matrix" in page
    assert "question &lt;1&gt;" in page and "garbage &amp; noise" in page  # sample answers, escaped
    assert "train.jsonl (no longer readable)" in page  # data summary copes with a moved file
    assert (run / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_eval_or_summary(tmp_path):
    run = make_run(tmp_path / "run", [(5, 9.0), (10, 7.0)], [(0, 12.0)], summary=False)
    page = write_report(run).read_text()
    assert "did not finish" in page and "lapidar eval" in page
    assert plot_generation_metrics(run) is None and not (run / "metrics.png").exists()
