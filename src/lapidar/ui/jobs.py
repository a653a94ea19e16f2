"""Background jobs of the web app: each one an argv of the real `lapidar` CLI, run one at a time, state on disk.

A job is `workspace/jobs/<id>.json`; its process writes stdout and stderr to a log FILE (never a pipe nobody reads,
which stalls a training process once the pipe buffer fills), and its exit status to `<id>.rc` through a tiny
`sh -c` wrapper, so a UI restarted while the job ran still learns how it ended. `JobQueue.tick` starts the next
queued job when none runs; `stop` sends SIGTERM, which `lapidar train` turns into checkpoint-and-exit."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from lapidar.errors import UserError
from lapidar.io import write_json
from lapidar.ui.workspace import Workspace

__all__ = ["JobQueue"]

STATUSES = ("queued", "running", "done", "failed", "stopped")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as finished: reap it.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class JobQueue:
    """Jobs in `workspace/jobs`, one running at a time; `tick()` advances the queue (called by every request and by
    a background thread)."""

    def __init__(self, workspace: Workspace, poll_s: float = 1.0) -> None:
        self.ws = workspace
        self.dir = workspace.dir("jobs")
        self.lock = threading.RLock()
        self._stop_thread = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll_s = poll_s
        self.tick()  # re-attach: a job whose process is alive stays running; a dead one is finished from disk

    # ---- on disk
    def _file(self, job_id: str) -> Path:
        return self.dir / f"{Workspace.check_name(job_id, 'job id')}.json"

    def _save(self, job: dict) -> None:
        write_json(self._file(job["id"]), job)

    def get(self, job_id: str) -> dict:
        """One job's record; UserError when there is no such job."""
        f = self._file(job_id)
        if not f.is_file():
            raise UserError(f"no job {job_id!r} in {self.dir}; GET /api/jobs lists them")
        return json.loads(f.read_text(encoding="utf-8"))

    def all(self) -> list[dict]:
        """Every job, oldest first."""
        jobs = [json.loads(f.read_text(encoding="utf-8")) for f in self.dir.glob("*.json")]
        return sorted(jobs, key=lambda j: (j["created"], j["id"]))

    # ---- life cycle
    def submit(self, kind: str, argv: list[str], run: str | None, log: Path, extra: dict | None = None) -> dict:
        """Queue `argv` (a `python -m lapidar ...` command line) with its output going to `log`."""
        with self.lock:
            job = {
                "id": time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
                "kind": kind,
                "run": run,
                "status": "queued",
                "created": time.time(),
                "started": None,
                "ended": None,
                "returncode": None,
                "pid": None,
                "log": self.ws.relative(log) if log.is_relative_to(self.ws.root) else str(log),
                "argv": argv,
                **(extra or {}),
            }
            self._save(job)
        self.tick()
        return self.get(job["id"])

    def _start(self, job: dict) -> None:
        log = self.ws.root / job["log"]
        log.parent.mkdir(parents=True, exist_ok=True)
        rc_file = self.dir / f"{job['id']}.rc"
        # `exec` would lose the exit status; the shell waits and writes it, so a restarted UI can read it.
        script = f"{shlex.join(job['argv'])}; echo $? > {shlex.quote(str(rc_file))}"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["sh", "-c", script],
                cwd=self.ws.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop reaches python, Ctrl-C of the UI does not
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        job.update(status="running", started=time.time(), pid=proc.pid)
        self._save(job)

    def _finish(self, job: dict) -> None:
        rc_file = self.dir / f"{job['id']}.rc"
        rc = None
        if rc_file.is_file():
            text = rc_file.read_text().strip()
            rc = int(text) if text.lstrip("-").isdigit() else None
        job["returncode"] = rc
        job["ended"] = time.time()
        if job.get("stop_requested"):
            job["status"] = "stopped"
        else:
            job["status"] = "done" if rc == 0 else "failed"
        self._save(job)

    def tick(self) -> None:
        """Finish jobs whose process ended; start the oldest queued job when nothing runs."""
        with self.lock:
            jobs = self.all()
            running = False
            for job in jobs:
                if job["status"] == "running":
                    if _alive(job["pid"]):
                        running = True
                    else:
                        self._finish(job)
            if not running:
                queued = [j for j in jobs if j["status"] == "queued"]
                if queued:
                    self._start(queued[0])

    def stop(self, job_id: str) -> dict:
        """Stop a job: a queued one is cancelled, a running one gets SIGTERM (lapidar train checkpoints and exits)."""
        with self.lock:
            job = self.get(job_id)
            if job["status"] == "queued":
                job.update(status="stopped", ended=time.time())
                self._save(job)
            elif job["status"] == "running":
                job["stop_requested"] = True
                self._save(job)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job["pid"], signal.SIGTERM)
            return self.get(job_id)

    def wait(self, job_id: str, timeout: float) -> dict:
        """Block until the job has ended (tests, scripts); returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            job = self.get(job_id)
            if job["status"] in ("done", "failed", "stopped") and job["ended"]:
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {self.get(job_id)['status']} after {timeout} s")

    def start_thread(self) -> None:
        """Advance the queue every `poll_s` seconds in a daemon thread (the next job starts without a request)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop_thread.wait(self.poll_s):
                with contextlib.suppress(Exception):
                    self.tick()

        self._thread = threading.Thread(target=loop, daemon=True, name="lapidar-ui-jobs")
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread (running jobs keep running: they belong to the workspace, not the UI)."""
        self._stop_thread.set()

    def active_for(self, run: str) -> dict[str, Any] | None:
        """The queued or running job of a run, if any."""
        for job in reversed(self.all()):
            if job.get("run") == run and job["status"] in ("queued", "running"):
                return job
        return None
