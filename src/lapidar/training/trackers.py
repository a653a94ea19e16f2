"""Experiment trackers for `--report-to wandb|mlflow`: observers that mirror metrics.jsonl to an outside tool.

Each tracker has three calls, made by the training loop: `start(config)` once, `log(record, step)` for every
record written to metrics.jsonl, `finish()` at the end. Both work with no network: Weights & Biases runs offline
(WANDB_MODE=offline, chosen automatically when no API key is configured; `wandb sync RUN/wandb` uploads later) and
MLflow writes a file store in RUN/mlruns unless MLFLOW_TRACKING_URI points elsewhere. The packages are optional:
`pip install 'lapidar[wandb]'` or `'lapidar[mlflow]'`.
"""

from __future__ import annotations

import importlib
import netrc
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lapidar.errors import UserError, unknown_choice

__all__ = ["TRACKERS", "MlflowTracker", "Tracker", "Trackers", "WandbTracker", "open_trackers", "tracker_key"]


class Tracker(Protocol):
    """What the training loop calls on a tracker."""

    def start(self, config: dict) -> None:
        """Open the tracked run and record the run config."""
        ...

    def log(self, record: dict, step: int) -> None:
        """Record the numeric values of one metrics.jsonl record at optimiser step `step`."""
        ...

    def finish(self, ok: bool = True) -> None:
        """Close the run (marked failed when `ok` is False)."""
        ...


def tracker_key(key: str) -> str:
    """Metric name as TensorBoard shows it too: train_loss -> train/loss, val_accuracy -> val/accuracy."""
    return key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key


def _scalars(record: dict) -> dict[str, float]:
    return {
        tracker_key(k): float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _flatten(config: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, f"{key}.")
        else:
            out[key] = ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
    return out


def _import(package: str, extra: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"--report-to {extra} needs the {package} package, which is not installed; "
            f"run: pip install 'lapidar[{extra}]'"
        ) from None


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbTracker:
    """Weights & Biases; offline unless an API key is configured or WANDB_MODE says otherwise."""

    def __init__(self, run_dir: Path, run_name: str):
        self._wandb = _import("wandb", "wandb")
        self.run_dir, self.run_name = run_dir, run_name
        self.mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key_configured() else "offline")
        self._run: Any = None

    def start(self, config: dict) -> None:
        """Open the W&B run; its files go to RUN/wandb."""
        self._run = self._wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lapidar"),
            name=self.run_name,
            dir=str(self.run_dir),
            config=config,
            mode=self.mode,
            settings=self._wandb.Settings(console="off", silent=True),
        )

    def log(self, record: dict, step: int) -> None:
        """Log one record at `step`."""
        if self._run is not None:
            self._run.log(_scalars(record), step=step)

    def finish(self, ok: bool = True) -> None:
        """Close the run."""
        if self._run is not None:
            self._run.finish(exit_code=0 if ok else 1)
            self._run = None


class MlflowTracker:
    """MLflow; a file store in RUN/mlruns unless MLFLOW_TRACKING_URI is set (no server needed)."""

    def __init__(self, run_dir: Path, run_name: str):
        self._mlflow = _import("mlflow", "mlflow")
        self.run_dir, self.run_name = run_dir, run_name
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        self._client: Any = None
        self.run_id: str | None = None

    def start(self, config: dict) -> None:
        """Create the MLflow run and log the config as parameters."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.uri.startswith("file:"):
            # MLflow 3 keeps the file store (no server, no database) behind this switch ("maintenance mode").
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # A client, not the global `mlflow.start_run` state, so lapidar never touches a run the caller has open.
        self._client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "lapidar")
        experiment = self._client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(name)
        self.run_id = self._client.create_run(experiment_id, run_name=self.run_name).info.run_id
        params = [Param(k, v[:6000]) for k, v in _flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
            self._client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, record: dict, step: int) -> None:
        """Log one record's numbers at `step`."""
        from mlflow.entities import Metric

        if self._client is None or self.run_id is None:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _scalars(record).items()]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def finish(self, ok: bool = True) -> None:
        """Mark the run finished (or failed)."""
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")
            self._client = None


# name -> tracker class; each class checks its package when it is created, before any training starts.
TRACKERS: dict[str, type[WandbTracker] | type[MlflowTracker]] = {"wandb": WandbTracker, "mlflow": MlflowTracker}


class Trackers:
    """Several trackers behind the same three calls (none at all is fine)."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def start(self, config: dict) -> None:
        """Start every tracker."""
        for t in self.trackers:
            t.start(config)

    def log(self, record: dict, step: int) -> None:
        """Send one record to every tracker."""
        for t in self.trackers:
            t.log(record, step)

    def finish(self, ok: bool = True) -> None:
        """Finish every tracker."""
        for t in self.trackers:
            t.finish(ok)


def open_trackers(report_to: str | Sequence[str] | None, run_dir: Path, run_name: str) -> Trackers:
    """Create the trackers named in `report_to` ("wandb", "mlflow", "wandb,mlflow", "none" or None).

    Fails with a UserError (naming the pip extra) when a package is missing, so call it before training starts.
    """
    if report_to is None:
        names: list[str] = []
    elif isinstance(report_to, str):
        names = [n.strip() for n in report_to.split(",") if n.strip()]
    else:
        names = list(report_to)
    names = [n for n in names if n != "none"]
    for n in names:
        if n not in TRACKERS:
            raise unknown_choice("--report-to tracker", n, [*TRACKERS, "none"])
    return Trackers([TRACKERS[n](run_dir, run_name) for n in dict.fromkeys(names)])
