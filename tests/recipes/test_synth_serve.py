"""`lapidar data synth` with `lapidar serve` as the endpoint, in every mode: the tiny model is first trained to
reply with one question/answer pair in JSON (so its replies parse), then served; the output is deduplicated, passes
`data check` and trains; the server is killed mid-run and started again, and the file still ends complete with no
duplicate rows."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytestmark = [pytest.mark.recipe, pytest.mark.slow]

KEY = "sk-synth-test"
PAIR = {"question": "Is theft of a bicycle covered?", "answer": "Yes, theft of a bicycle is covered."}
PROMPTS = [f"Question number {i} about claims: what happens to case {i}?" for i in range(24)]


def lapidar(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=900,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


DOC_TEXT = "# Bicycle cover\n\nTheft of a bicycle is covered when it was locked.\n"


def _questions(n: int, answer: str) -> list[dict]:
    return [{"question": q, "answer": answer} for q in PROMPTS[:n]]


@pytest.fixture(scope="module")
def json_run(tmp_path_factory) -> Path:
    """tiny-qwen2.5 taught to answer the requests `data synth` sends (every mode's prompt shape) with PAIR as JSON."""
    from lapidar.data.documents import document_chunks
    from lapidar.data.synth import document_task, paraphrase_task, seeds_task

    root = tmp_path_factory.mktemp("synth-run")
    (root / "docs").mkdir()
    (root / "docs" / "policy.md").write_text(DOC_TEXT)
    chunk = document_chunks([root / "docs" / "policy.md"])[0]
    convs = [[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]
             for r in _questions(24, "We look at it.")]  # fmt: skip
    prompts = [c[:1] for c in convs]
    prompts += [paraphrase_task(c, 0, None).messages for c in convs[:6]]
    prompts += [seeds_task(i, [(c[0]["content"], c[1]["content"]) for c in convs[:6]]).messages for i in range(8)]
    prompts += [document_task(chunk.file, chunk.index, chunk.text, 3).messages] * 4
    reply = {"role": "assistant", "content": json.dumps(PAIR)}
    data = root / "json.jsonl"
    data.write_text("".join(json.dumps({"messages": [*p, reply]}) + "\n" for p in prompts))
    run = root / "run"
    lapidar("train", "--data", str(data), "--max-steps", "200", "--lr", "5e-3", "--batch-size", "8", "--val-fraction",
            "0", "--max-length", "512", "--seed", "0", "--output", str(run))  # fmt: skip
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(run: Path, port: int, log: Path) -> Iterator[subprocess.Popen]:
    out = log.open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lapidar", "serve", str(run), "--port", str(port), "--api-key", KEY],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.time() < deadline, "lapidar serve did not start in 120 s"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        time.sleep(0.3)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        out.close()


def _synth(port: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return lapidar(
        "data", "synth", *args, "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "lapidar",
        "--api-key-env", "SYNTH_KEY", "--temperature", "0", "--concurrency", "2", check=check,
        env={"SYNTH_KEY": KEY},
    )  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_mode_against_lapidar_serve(json_run: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in _questions(6, "We look at it.")))
    doc = tmp_path / "policy.md"
    doc.write_text(DOC_TEXT)
    port = _free_port()
    with serve(json_run, port, tmp_path / "serve.log"):
        outs = {}
        for mode, source in (
            ("answer", questions),
            ("paraphrase", questions),
            ("seeds", questions),
            ("documents", doc),
        ):
            out = tmp_path / f"{mode}.jsonl"
            extra = ("--max-rows", "4") if mode == "seeds" else ()
            proc = _synth(port, str(source), "--mode", mode, "--output", str(out), *extra)
            assert "Next: lapidar data check" in proc.stdout, proc.stdout
            outs[mode] = _rows(out)
        # A rerun reads the output and the sidecar: every input is done already, nothing is asked or added.
        again = _synth(port, str(questions), "--mode", "answer", "--output", str(tmp_path / "answer.jsonl"))
        assert _rows(tmp_path / "answer.jsonl") == outs["answer"], again.stdout
        assert re.search(r"rows written now\W+0\b", again.stdout), again.stdout
        assert re.search(r"inputs already done \(skipped\)\W+6\b", again.stdout), again.stdout
    # The tiny model learnt the JSON reply only roughly: some replies do not parse or repeat a question, and are
    # dropped with their reason; every input is accounted for, and what is kept is unique.
    for mode in ("answer", "paraphrase"):
        assert len(outs[mode]) + _dropped(tmp_path / f"{mode}.jsonl") == 6, mode
    for mode, rows in outs.items():
        questions_out = [r["messages"][0]["content"] for r in rows]
        assert len(questions_out) == len(set(questions_out)), mode
    # Kept rows depend on how well 20M random-init parameters memorised one JSON line; the pipeline's accounting
    # does not: every request ends as rows or as a logged drop, and kept rows carry their provenance.
    assert outs["answer"] and len(outs["seeds"]) <= 4
    assert len(outs["seeds"]) + _dropped(tmp_path / "seeds.jsonl") >= 4
    assert all(r["meta"]["paraphrase_of"].startswith("Question number") for r in outs["paraphrase"])
    assert sum(len(rows) for rows in outs.values()) > len(outs["answer"]), "no mode but answer kept anything"
    # One passage, one request: its pairs carry the passage, or the chunk is logged as dropped with the reason.
    side = (tmp_path / "documents.jsonl.synth.jsonl").read_text() if _dropped(tmp_path / "documents.jsonl") else ""
    assert all(r["meta"]["source"]["file"].endswith("policy.md") for r in outs["documents"])
    assert outs["documents"] or "policy.md#0" in side
    check = lapidar("data", "check", str(tmp_path / "answer.jsonl"), check=False)
    assert check.returncode == 0, check.stdout[-2000:]
    lapidar("train", "--data", str(tmp_path / "answer.jsonl"), "--max-steps", "2", "--val-fraction", "0",
            "--output", str(tmp_path / "trained"))  # fmt: skip
    assert (tmp_path / "trained" / "summary.json").is_file()


def _dropped(out: Path) -> int:
    side = out.with_name(out.name + ".synth.jsonl")
    return len(side.read_text().splitlines()) if side.is_file() else 0


def test_a_server_restart_mid_run_still_finishes_the_file(json_run: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in _questions(24, "We look at it.")))
    out = tmp_path / "answers.jsonl"
    port = _free_port()
    log = tmp_path / "serve.log"
    with serve(json_run, port, log) as server:
        synth = subprocess.Popen(
            [sys.executable, "-m", "lapidar", "data", "synth", str(questions), "--output", str(out), "--base-url",
             f"http://127.0.0.1:{port}/v1", "--model", "lapidar", "--api-key-env", "SYNTH_KEY", "--temperature", "0",
             "--concurrency", "1", "--rate-limit", "2", "--retries", "6"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "SYNTH_KEY": KEY},
        )  # fmt: skip
        deadline = time.time() + 120
        while not out.is_file() or len(out.read_text().splitlines()) < 3:
            assert time.time() < deadline and synth.poll() is None, synth.stdout.read() if synth.stdout else ""
            time.sleep(0.2)
        server.kill()  # the endpoint dies mid-run
        server.wait()
    with serve(json_run, port, log):  # and comes back on the same address while synth retries
        assert synth.wait(timeout=600) == 0, synth.stdout.read() if synth.stdout else ""
    rows = _rows(out)
    keys = [r["meta"]["synth_key"] for r in rows]
    assert len(keys) == len(set(keys)) and len(rows) + _dropped(out) == len(PROMPTS)
