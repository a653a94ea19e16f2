"""👍/👎 from the chat page, kept as training data.

One record per rated answer lives in `feedback/RUN.votes.jsonl` (with its id, time, column and any corrected
answer); a new vote on the same answer replaces the old one. From those records two files `lapidar train` reads as
they are are rewritten on every vote:

- `feedback/RUN-kto.jsonl`: `{prompt: [turns], completion, label}` rows (the `feedback` format, for `objective:
  kto`); a corrected answer adds a 👍 row of its own;
- `feedback/RUN-pairs.jsonl`: `{prompt: [turns], chosen, rejected}` rows for every corrected answer (the
  `preference` format, for `objective: dpo`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from lapidar.errors import UserError
from lapidar.io import write_text
from lapidar.ui.chat import question_turns
from lapidar.ui.workspace import Workspace

__all__ = ["Feedback", "FeedbackFiles"]

_LOCK = threading.Lock()  # votes arrive from the server's worker threads


class FeedbackFiles:
    """The three files of one run's feedback."""

    def __init__(self, ws: Workspace, run: str):
        Workspace.check_name(run, "run name")
        root = ws.dir("feedback")
        self.votes = root / f"{run}.votes.jsonl"
        self.kto = root / f"{run}-kto.jsonl"
        self.pairs = root / f"{run}-pairs.jsonl"


class Feedback:
    """Read and record the votes of the runs in one workspace."""

    def __init__(self, ws: Workspace):
        self.ws = ws

    def records(self, run: str) -> list[dict[str, Any]]:
        path = FeedbackFiles(self.ws, run).votes
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write: the rest still counts
        return out

    def vote(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record POST /api/feedback's vote; returns the run's summary (as GET /api/feedback)."""
        run = Workspace.check_name(str(body.get("run") or ""), "run name")
        if not self.ws.run_dir(run).is_dir():
            raise UserError(f"no run {run!r} in {self.ws.dir('runs')}; GET /api/runs lists them")
        answer_id = str(body.get("id") or "")
        if not answer_id or len(answer_id) > 100:
            raise UserError("id: send the answer's id (any text up to 100 characters) so a new vote can replace it")
        label = body.get("label")
        if not isinstance(label, bool):
            raise UserError(f"label: expected true (👍) or false (👎), got {label!r}")
        prompt = question_turns(body.get("messages"))  # the conversation the rated answer replies to
        answer = body.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise UserError("answer: expected the text of the rated answer")
        correction = body.get("correction")
        if correction is not None and (not isinstance(correction, str) or not correction.strip()):
            correction = None
        record = {
            "id": answer_id,
            "time": time.time(),
            "side": str(body.get("side") or "run"),
            "messages": prompt,
            "answer": answer,
            "label": label,
            "correction": correction.strip() if correction else None,
        }
        files = FeedbackFiles(self.ws, run)
        with _LOCK:
            kept = [r for r in self.records(run) if r.get("id") != answer_id] + [record]
            write_text(files.votes, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
            _write_datasets(files, kept)
        return self.summary(run)

    def summary(self, run: str) -> dict[str, Any]:
        files = FeedbackFiles(self.ws, run)
        records = self.records(run)
        return {
            "run": run,
            "up": sum(1 for r in records if r.get("label") is True),
            "down": sum(1 for r in records if r.get("label") is False),
            "corrections": sum(1 for r in records if r.get("correction")),
            "kto": self.ws.relative(files.kto) if files.kto.is_file() else None,
            "pairs": self.ws.relative(files.pairs) if files.pairs.is_file() else None,
            "votes": [{k: r.get(k) for k in ("id", "label", "correction", "side")} for r in records],
        }


def _write_datasets(files: FeedbackFiles, records: list[dict[str, Any]]) -> None:
    kto, pairs = [], []
    for r in records:
        kto.append({"prompt": r["messages"], "completion": r["answer"], "label": r["label"]})
        if r.get("correction"):
            kto.append({"prompt": r["messages"], "completion": r["correction"], "label": True})
            pairs.append({"prompt": r["messages"], "chosen": r["correction"], "rejected": r["answer"]})
    _write_jsonl(files.kto, kto)
    _write_jsonl(files.pairs, pairs)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.unlink(missing_ok=True)
        return
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
