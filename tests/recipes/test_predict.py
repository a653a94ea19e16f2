"""`lapidar predict`: answers for every row, input columns kept, resumable after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lapidar.errors import UserError
from lapidar.inference.predict import prompt_messages, read_prompts
from tests.conftest import write_jsonl
from tests.recipes.test_export_recipe import PAIRS, lapidar, trained_run

pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run_answers(run) -> dict[str, str]:
    from lapidar.inference.generate import SamplingOptions, generate, load_for_inference

    loaded = load_for_inference(str(run))
    return {q: generate(loaded, [{"role": "user", "content": q}], SamplingOptions(64))[0] for q, _ in PAIRS}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prompt_is_conversation_without_final_answer(tmp_path):
    user, answer = {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}
    assert prompt_messages([user, answer]) == [user]
    assert prompt_messages([user, answer, user]) == [user, answer, user]
    assert prompt_messages([user]) == [user]

    rows = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q1", "id": 7}, {"question": "Q2", "answer": "A2"}])
    got = read_prompts(rows)
    assert [p.messages for p in got] == [[{"role": "user", "content": "Q1"}], [{"role": "user", "content": "Q2"}]]
    assert got[0].row == {"question": "Q1", "id": 7}
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Do", "input": "this"}])
    assert read_prompts(alpaca)[0].messages == [{"role": "user", "content": "Do\n\nthis"}]
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "raw"}])
    with pytest.raises(UserError, match="raw text"):
        read_prompts(text)


def test_predict_keeps_columns_and_resumes(run, run_answers, tmp_path):
    questions = [q for q, _ in PAIRS]
    data = write_jsonl(tmp_path / "in.jsonl", [{"question": q, "id": i} for i, q in enumerate(questions)])
    out = tmp_path / "out.jsonl"
    lapidar(
        "predict", str(run), "--data", str(data), "--output", str(out), "--batch-size", "2", "--max-new-tokens", "64"
    )
    rows = _read(out)
    assert [r["id"] for r in rows] == list(range(len(questions)))
    assert [r["prediction"] for r in rows] == [run_answers[q] for q in questions]
    assert all("RANDOMLY INITIALISED" in r["prediction_warning"] for r in rows)

    # Interrupted after two rows, in the middle of writing the third: the rerun keeps those two and finishes.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[2][:15])
    proc = lapidar("predict", str(run), "--data", str(data), "--output", str(out), "--max-new-tokens", "64")
    assert "resuming: 2 of 5 rows" in proc.stderr
    assert _read(out) == rows

    other = write_jsonl(tmp_path / "other.jsonl", [{"question": "Something else?"}])
    proc = lapidar("predict", str(run), "--data", str(other), "--output", str(out), check=False)
    assert proc.returncode == 2 and "holds predictions for other data" in proc.stderr
