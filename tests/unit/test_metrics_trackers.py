"""`--report-to` trackers: metric names, offline defaults, the error for a missing package; and, when the packages
are installed, a real offline W&B run and a real MLflow file store."""

from __future__ import annotations

import sys
import types

import pytest

from lapidar.errors import UserError
from lapidar.training.trackers import open_trackers, tracker_key

RECORDS = [
    {"step": 0, "epoch": 0.0, "val_loss": 12.5},
    {"step": 5, "epoch": 0.5, "train_loss": 3.0, "lr": 2e-3, "tokens_per_s": 900.0},
    {"step": 10, "epoch": 1.0, "train_loss": 2.0, "lr": 1e-3, "tokens_per_s": 950.0},
    {"step": 10, "epoch": 1.0, "val_loss": 2.5, "val_accuracy": 0.75, "note": "text is skipped"},
]


def play(trackers) -> None:
    trackers.start({"lr": 2e-3, "target_modules": ["all-linear"]})
    for r in RECORDS:
        trackers.log(r, r["step"])
    trackers.finish()


def test_metric_names_match_tensorboard():
    assert tracker_key("train_loss") == "train/loss"
    assert tracker_key("val_accuracy") == "val/accuracy"
    assert tracker_key("tokens_per_s") == "tokens_per_s"


def test_none_and_unknown(tmp_path):
    assert open_trackers(None, tmp_path, "r").trackers == []
    assert open_trackers("none", tmp_path, "r").trackers == []
    with pytest.raises(UserError, match=r"unknown --report-to tracker 'comet'; valid choices: mlflow, none, wandb"):
        open_trackers("comet", tmp_path, "r")


def test_missing_package_names_the_pip_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(UserError, match=r"pip install 'lapidar\[wandb\]'"):
        open_trackers("wandb", tmp_path, "r")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(UserError, match=r"pip install 'lapidar\[mlflow\]'"):
        open_trackers("mlflow", tmp_path, "r")


def test_wandb_goes_offline_without_a_key(tmp_path, monkeypatch):
    calls: list = []

    class FakeRun:
        def log(self, data, step):
            calls.append(("log", step, data))

        def finish(self, exit_code=0):
            calls.append(("finish", exit_code))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or FakeRun(), Settings=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    play(open_trackers("wandb", tmp_path, "my-run"))
    init = calls[0][1]
    assert init["mode"] == "offline" and init["dir"] == str(tmp_path) and init["name"] == "my-run"
    assert init["config"]["lr"] == 2e-3
    logged = [c for c in calls if c[0] == "log"]
    assert logged[0] == ("log", 0, {"epoch": 0.0, "val/loss": 12.5})
    assert logged[-1] == ("log", 10, {"epoch": 1.0, "val/loss": 2.5, "val/accuracy": 0.75})
    assert calls[-1] == ("finish", 0)

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert open_trackers("wandb", tmp_path, "r").trackers[0].mode == "disabled"


def test_real_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    play(open_trackers("wandb", tmp_path, "offline-run"))
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_real_mlflow_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    trackers = open_trackers("mlflow", tmp_path, "file-run")
    play(trackers)
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    run = client.get_run(trackers.trackers[0].run_id)
    assert run.info.status == "FINISHED" and run.data.params["target_modules"] == "all-linear"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(5, 3.0), (10, 2.0)]
    assert run.data.metrics["val/accuracy"] == 0.75
