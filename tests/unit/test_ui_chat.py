"""`lapidar ui`'s chat, feedback and diagnosis routes, over a real workspace holding a real 2-step tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from lapidar.data.formats import load_dataset
from lapidar.ui.app import _next_step, create_app

QUESTION = [{"role": "user", "content": "My parked car was hit. What do I do?"}]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with one finished 2-step LoRA run, `r1`, trained through the jobs API."""
    root = tmp_path_factory.mktemp("chat") / "ws"
    app = create_app(root)
    c = TestClient(app)
    config = {"data": "example:claims", "max_steps": 2, "batch_size": 2, "max_length": 128}
    job = c.post("/api/jobs", json={"kind": "train", "config": config, "name": "r1"}).json()["job"]
    done = app.state.jobs.wait(job["id"], timeout=300)
    assert done["status"] == "done", (root / "runs" / "r1" / "train.log").read_text(errors="replace")[-3000:]
    return root


def _events(c: TestClient, body: dict) -> list[dict]:
    with c.stream("POST", "/api/chat", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]


def test_chat_streams_the_run_and_its_base(ws: Path) -> None:
    c = TestClient(create_app(ws))
    run = _events(c, {"run": "r1", "messages": QUESTION, "max_tokens": 6})
    assert run[0]["model"].startswith("run r1 (lora on tiny-qwen2.5") and run[0]["random"] is True
    assert run[-1]["done"] and run[-1]["completion_tokens"] <= 6 and run[-1]["prompt_tokens"] > 10
    base = _events(c, {"run": "r1", "side": "base", "messages": QUESTION, "max_tokens": 6})
    assert "before run r1" in base[0]["model"]
    # The same greedy answer twice from the same weights: the stream is the model's, not random noise per request.
    again = _events(c, {"run": "r1", "messages": QUESTION, "max_tokens": 6})
    assert [e.get("delta") for e in again] == [e.get("delta") for e in run]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"run": "nope", "messages": QUESTION}, "no run 'nope'"),
        ({"run": "r1", "messages": []}, "messages: expected a list"),
        ({"run": "r1", "messages": [{"role": "assistant", "content": "hi"}]}, "the last turn must be the user's"),
        ({"run": "r1", "messages": QUESTION, "side": "left"}, "side 'left'"),
        ({"run": "r1", "messages": QUESTION, "max_tokens": 0}, "max_tokens: expected 1 to"),
        ({"run": "../x", "messages": QUESTION}, "run name '../x'"),
    ],
)
def test_bad_chat_requests_get_one_line(ws: Path, body: dict, error: str) -> None:
    r = TestClient(create_app(ws)).post("/api/chat", json=body)
    assert r.status_code == 400 and error in r.json()["error"]


def test_votes_become_kto_and_preference_files_lapidar_reads(ws: Path) -> None:
    c = TestClient(create_app(ws))
    up = {"run": "r1", "id": "a1", "messages": QUESTION, "answer": "Call the police.", "label": True}
    assert c.post("/api/feedback", json=up).json()["up"] == 1
    down = {"run": "r1", "id": "a2", "messages": QUESTION, "answer": "Buy a boat.", "label": False}
    c.post("/api/feedback", json=down)
    fixed = c.post("/api/feedback", json=down | {"correction": "Photograph the damage and call your insurer."})
    summary = fixed.json()
    assert (summary["up"], summary["down"], summary["corrections"]) == (1, 1, 1)  # the second vote replaced the first
    kto = load_dataset(ws / summary["kto"])
    assert kto.kind == "feedback" and [e.label for e in kto.examples] == [True, False, True]
    pairs = load_dataset(ws / summary["pairs"])
    assert pairs.kind == "preference" and len(pairs.examples) == 1
    assert c.get("/api/feedback?run=r1").json()["votes"][1]["correction"].startswith("Photograph")
    for bad, error in (
        ({**up, "label": "yes"}, "label: expected true"),
        ({**up, "id": ""}, "id: send the answer's id"),
        ({**up, "answer": " "}, "answer: expected the text"),
        ({**up, "run": "nope"}, "no run 'nope'"),
    ):
        r = c.post("/api/feedback", json=bad)
        assert r.status_code == 400 and error in r.json()["error"]


def test_feedback_job_exports_then_trains_kto_from_the_run(ws: Path) -> None:
    app = create_app(ws)
    c = TestClient(app)
    c.post("/api/feedback", json={"run": "r1", "id": "b1", "messages": QUESTION, "answer": "Call.", "label": True})
    r = c.post("/api/jobs", json={"kind": "feedback", "run": "r1", "name": "r1-kto"})
    assert r.status_code == 200, r.text
    kinds = [(j["kind"], j["run"]) for j in c.get("/api/jobs").json()["jobs"] if j["status"] in ("queued", "running")]
    assert kinds == [("export", "r1"), ("train", "r1-kto")]  # the adapter is merged first, then trained on
    done = app.state.jobs.wait(r.json()["job"]["id"], timeout=400)
    log = (ws / "runs" / "r1-kto" / "train.log").read_text(errors="replace")
    assert done["status"] == "done", log[-3000:]
    detail = c.get("/api/runs/r1-kto").json()
    assert detail["config"]["objective"] == "kto" and detail["config"]["model"] == "runs/r1/export/merged"
    assert detail["config"]["data"] == "feedback/r1-kto.jsonl"
    assert isinstance(detail["diagnosis"], list) and all("next_step" in d for d in detail["diagnosis"])
    r = c.post("/api/jobs", json={"kind": "feedback", "run": "r1", "objective": "orpo"})
    assert r.status_code == 400 and "kto" in r.json()["error"]


def test_next_step_reads_the_flags_a_suggestion_names() -> None:
    assert _next_step("Lower the learning rate about 10x (--lr 2e-05, now 2e-4) and keep a warmup "
                      "(--warmup-ratio 0.03 to 0.1)") == {"lr": 2e-05, "warmup_ratio": 0.03}  # fmt: skip
    assert _next_step("Train longer: --max-steps 12 (or twice the --epochs)") == {"max_steps": 12}
    assert _next_step("Pass --val-data (or keep the hold-out) and --gpus 2") == {}
