"""`lapidar ui` in a real headless browser (Debian's chromium driven by Playwright), as a new user goes through it:
upload a spreadsheet, read the detected format and the report, start a tiny-qwen2.5 run, watch the loss chart
move, reload the page and still see the job, stop it (a loadable checkpoint stays), chat with the result next to
its base, rate answers 👍 and 👎 (both land in the feedback dataset) and train on that feedback. A second test
restarts the app itself during a run. The page may make no request outside 127.0.0.1.

Screenshots of every tab go to the test's tmp dir, or to $LAPIDAR_UI_SCREENSHOTS (README's come from
`LAPIDAR_UI_SCREENSHOTS=docs/ui python -m pytest tests/recipes/test_ui_browser.py`)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.recipes.test_eval_recipe import TEST, TRAIN

pytestmark = pytest.mark.recipe
httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UI:
    """`lapidar ui --workspace WS --port P --no-browser` as a user starts it; `stop()` then `start()` restarts it."""

    def __init__(self, workspace: Path, logs: Path):
        self.workspace, self.logs, self.port = workspace, logs, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"ui-{self.starts}.log").open("w")
        argv = [sys.executable, "-m", "lapidar", "ui", "--workspace", str(self.workspace), "--port", str(self.port)]
        self.proc = subprocess.Popen([*argv, "--no-browser"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lapidar ui exited with {self.proc.returncode}: {Path(log.name).read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/api/info", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"lapidar ui did not answer in 90 s: {Path(log.name).read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        r = httpx.request(method, f"{self.base}/api{path}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def kill_jobs(self) -> None:
        """Leave no training process behind when a test fails half-way."""
        for f in (self.workspace / "jobs").glob("*.json"):
            job = json.loads(f.read_text())
            if job.get("status") == "running" and job.get("pid"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job["pid"], signal.SIGKILL)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    app = UI(tmp_path / "workspace", tmp_path)
    app.start()
    try:
        yield app
    finally:
        app.kill_jobs()
        app.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("LAPIDAR_UI_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _spreadsheet(path: Path) -> Path:
    """The topics training rows as a CSV with a question and an answer column (a spreadsheet a user exports)."""
    rows = [json.loads(line)["messages"] for line in TRAIN.read_text().splitlines()]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        for m in rows:
            w.writerow([m[1]["content"], m[2]["content"]])
    return path


def _open(browser, ui: UI):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{ui.base}/", wait_until="load")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page, requests


def _shot(page, path: Path, selector: str | None = None) -> None:
    """A screenshot of the window, scrolled to `selector` (a full-page one repeats the fixed header mid-page)."""
    if selector:
        page.locator(selector).scroll_into_view_if_needed()
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def _chart_points(page) -> int:
    return int(page.get_attribute("[data-testid=loss-chart] svg", "data-points") or 0)


def _status(page) -> str:
    return page.get_attribute("[data-testid=monitor-status]", "data-status") or ""


def test_new_user_goes_from_a_spreadsheet_to_feedback_training(browser, ui: UI, shots: Path, tmp_path: Path) -> None:
    page, requests = _open(browser, ui)
    page.wait_for_selector("[data-testid=start-task] option", state="attached")  # the first-time path offers tasks
    _shot(page, shots / "start.png")

    # ---- Data: a broken file gets the CLI's one-line explanation on the page, and the page keeps working
    page.click("[data-testid=tab-data]")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "Hi", "output": "Hello"}\n{"instruction": "oops", "output": \n')
    page.set_input_files("[data-testid=upload-input]", str(broken))
    page.wait_for_selector("[data-testid=error]:not([hidden])")
    message = page.text_content("#error-text")
    assert "broken.jsonl" in message and "line 2" in message, message
    page.click("#error-close")

    # ---- Data: upload a CSV, see its format, the rows as the model sees them, and the report
    page.set_input_files("[data-testid=upload-input]", str(_spreadsheet(tmp_path / "topics.csv")))
    page.wait_for_selector("[data-testid=inspect]:not([hidden])")
    assert page.text_content("[data-testid=data-format]") == "question-answer"
    assert page.text_content("[data-testid=data-rows]") == "24"
    assert page.locator("[data-testid=rendered-example] .learned").count() >= 3  # the answers are highlighted
    assert page.text_content("[data-testid=data-report]").strip()
    page.click("[data-testid=finding-row-link] >> nth=0")  # a finding's row opens as the file holds it
    page.wait_for_selector("[data-testid=finding-row] pre")
    page.set_input_files("[data-testid=upload-input]", str(TEST))  # a test file for later
    page.wait_for_function("document.querySelector('[data-testid=data-format]').textContent === 'messages'")
    page.click("[data-testid=data-file]:has-text('topics.csv')")
    page.wait_for_function("document.querySelector('[data-testid=data-format]').textContent === 'question-answer'")
    _shot(page, shots / "data.png", "[data-testid=data-report]")

    # ---- Train: the form, the estimate, start; the loss chart moves while it runs
    page.click("[data-testid=data-use]")
    assert page.input_value("[data-testid=field-data]") == "data/topics.csv"
    page.fill("[data-testid=run-name]", "topics")
    page.fill("[data-testid=field-max_steps]", "3000")
    page.fill("[data-testid=field-batch_size]", "2")
    page.fill("[data-testid=field-max_length]", "96")
    page.click("[data-testid=advanced] summary")
    page.fill("[data-testid=field-save_steps]", "10")
    page.fill("[data-testid=field-eval_steps]", "10")
    page.fill("[data-testid=field-log_steps]", "5")
    page.wait_for_selector("[data-testid=estimate] .badge")  # fits / tight / does-not-fit for this machine
    page.wait_for_function("document.querySelector('[data-testid=yaml]').textContent.includes('max_steps: 3000')")
    page.click("[data-testid=train-start]")
    page.wait_for_function("document.querySelector('[data-testid=monitor-status]').dataset.status === 'running'")
    page.wait_for_function(
        "+document.querySelector('[data-testid=loss-chart] svg').dataset.points >= 2", timeout=180_000
    )
    first = _chart_points(page)
    page.wait_for_function(
        f"+document.querySelector('[data-testid=loss-chart] svg').dataset.points > {first}", timeout=120_000
    )
    _shot(page, shots / "train.png", "[data-testid=monitor]")

    # ---- a reload forgets nothing: the job is still there, still running, and followed again
    page.reload(wait_until="load")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function("document.querySelector('[data-testid=monitor-run]').textContent === 'topics'")
    page.wait_for_function("document.querySelector('[data-testid=monitor-status]').dataset.status === 'running'")
    page.wait_for_function("+document.querySelector('[data-testid=loss-chart] svg').dataset.points >= 2")
    page.wait_for_function(
        "!!document.querySelector('[data-testid=monitor-stats]').textContent.match(/checkpoint/)", timeout=120_000
    )

    # ---- stop: the process checkpoints and exits; the checkpoint loads
    page.click("[data-testid=train-stop]")
    page.wait_for_function(
        "document.querySelector('[data-testid=monitor-status]').dataset.status === 'stopped'", timeout=120_000
    )
    run_dir = ui.workspace / "runs" / "topics"
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    assert checkpoints and (checkpoints[-1] / "adapter_model.safetensors").is_file()
    from lapidar.inference.generate import generate, load_for_inference

    loaded = load_for_inference(str(run_dir), str(checkpoints[-1].relative_to(run_dir)))
    from lapidar.inference.generate import SamplingOptions

    assert isinstance(
        generate(loaded, [{"role": "user", "content": "Rain?"}], SamplingOptions(max_new_tokens=3))[0], str
    )
    page.click("[data-testid=tab-runs]")
    page.wait_for_selector("[data-testid=run-row][data-run=topics] [data-status=stopped]")
    _shot(page, shots / "runs.png")

    # ---- chat: the run and its base answer side by side; 👍 one answer, 👎 the other with a better one
    page.click("[data-testid=tab-chat]")
    page.select_option("[data-testid=chat-run]", "topics")
    page.fill("[data-testid=chat-max]", "8")
    page.fill("[data-testid=chat-input]", "The striker scored twice in the final.")
    page.click("[data-testid=chat-send]")
    page.wait_for_selector("[data-testid=chat-run-log] [data-testid=thumb-up]", timeout=120_000)
    page.wait_for_selector("[data-testid=chat-base-log] [data-testid=thumb-down]", timeout=120_000)
    page.click("[data-testid=chat-run-log] [data-testid=thumb-up]")
    page.wait_for_function("document.querySelector('[data-testid=feedback-counts]').dataset.up === '1'")
    page.fill("[data-testid=chat-base-log] [data-testid=correction]", "sports")
    page.click("[data-testid=chat-base-log] [data-testid=thumb-down]")
    page.wait_for_function("document.querySelector('[data-testid=feedback-counts]').dataset.down === '1'")
    _shot(page, shots / "chat.png")
    votes = [json.loads(line) for line in (ui.workspace / "feedback" / "topics.votes.jsonl").read_text().splitlines()]
    assert sorted((v["side"], v["label"]) for v in votes) == [("base", False), ("run", True)]
    kto = [json.loads(line) for line in (ui.workspace / "feedback" / "topics-kto.jsonl").read_text().splitlines()]
    assert sorted(r["label"] for r in kto) == [False, True, True]  # the correction is a 👍 row of its own
    assert kto[0]["prompt"] == [{"role": "user", "content": "The striker scored twice in the final."}]
    pairs = (ui.workspace / "feedback" / "topics-pairs.jsonl").read_text().splitlines()
    assert len(pairs) == 1 and json.loads(pairs[0])["chosen"] == "sports"

    # ---- train on that feedback: the stopped run is merged, then trained with KTO on the two votes
    page.click("[data-testid=chat-train-feedback]")
    page.wait_for_function("document.querySelector('[data-testid=monitor-run]').textContent.startsWith('topics-kto')")
    page.wait_for_function(
        "document.querySelector('[data-testid=monitor-status]').dataset.status === 'done'", timeout=300_000
    )
    feedback_run = page.text_content("[data-testid=monitor-run]")
    config = ui.api("GET", f"/runs/{feedback_run}")["config"]
    assert config["objective"] == "kto" and config["data"] == "feedback/topics-kto.jsonl"
    page.wait_for_selector("[data-testid=diagnosis-item]")

    # ---- evaluate and export, from their tabs
    page.click("[data-testid=tab-evaluate]")
    page.select_option("[data-testid=eval-run]", "topics")
    page.select_option("[data-testid=eval-data]", "data/topics_test.jsonl")
    page.click("[data-testid=eval-start]")
    page.wait_for_selector("[data-testid=eval-metrics]", timeout=300_000)
    _shot(page, shots / "evaluate.png")
    page.wait_for_selector("[data-testid=eval-rows]")  # the answers, before and after, side by side
    page.click("[data-testid=tab-export]")
    page.select_option("[data-testid=export-run]", "topics")
    page.check("[data-testid=export-gguf]")
    page.select_option("[data-testid=export-quant]", "q8_0")
    page.click("[data-testid=export-start]")
    page.wait_for_selector("[data-testid=export-item][data-format=gguf] [data-status=passed]", timeout=300_000)
    _shot(page, shots / "export.png")
    links = page.eval_on_selector_all("[data-testid=export-download]", "links => links.map(a => a.href)")
    assert any(u.endswith(".gguf") for u in links) and any(u.endswith("?zip=1") for u in links), links
    for url in links:
        with httpx.stream("GET", url, timeout=120) as r:
            assert r.status_code == 200 and next(r.iter_bytes())[:4] in (b"GGUF", b"PK\x03\x04"), url

    outside = [u for u in requests if not u.startswith((ui.base + "/", "data:", "blob:"))]
    assert not outside, outside
    assert not page.is_visible("[data-testid=error]"), page.text_content("[data-testid=error]")


def test_the_app_restarted_during_a_run_shows_the_run_and_its_result(browser, ui: UI) -> None:
    config = {"data": "example:claims", "max_steps": 150, "batch_size": 2, "max_length": 96, "log_steps": 2}
    job = ui.api("POST", "/jobs", {"kind": "train", "config": config, "name": "survivor"})["job"]
    deadline = time.time() + 120
    while not (ui.workspace / "runs" / "survivor" / "metrics.jsonl").is_file():
        assert time.time() < deadline, "the run wrote no metrics in 120 s"
        time.sleep(0.5)
    ui.stop()  # Ctrl-C on `lapidar ui`: the training process goes on
    record = json.loads((ui.workspace / "jobs" / f"{job['id']}.json").read_text())
    assert record["status"] == "running"
    os.kill(record["pid"], 0)  # still alive with no app around it
    ui.start()
    page, _ = _open(browser, ui)
    page.wait_for_function("document.querySelector('[data-testid=monitor-run]').textContent === 'survivor'")
    page.wait_for_function(
        "document.querySelector('[data-testid=monitor-status]').dataset.status === 'done'", timeout=300_000
    )
    assert "best validation loss" in page.text_content("[data-testid=monitor-stats]")
    jobs = ui.api("GET", "/jobs")["jobs"]
    assert [(j["id"], j["status"], j["returncode"]) for j in jobs] == [(job["id"], "done", 0)]
    summary = ui.api("GET", "/runs/survivor")["summary"]
    assert summary["steps"] == 150
