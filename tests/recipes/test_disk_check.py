"""Before a run writes anything, lapidar checks that its directory will fit on the disk: the saved weights and up to
keep_checkpoints + 1 checkpoints (weights + optimiser states). A bf16 full fine-tune of 7B writes ~46 GB per checkpoint."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.recipes import train
from lapidar.training.estimate import plan_from_config
from lapidar.training.hardware import cpu_device
from lapidar.training.memory import disk_bytes
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe


def _size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_the_bound_holds_a_real_full_fine_tune_directory(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:8]))
    cfg = TrainConfig(
        data=str(data), method="full", max_steps=4, save_steps=2, keep_checkpoints=2, val_fraction=0.0,
        batch_size=2, max_length=96, output=str(tmp_path / "run"),
    )  # fmt: skip
    bound = disk_bytes(plan_from_config(cfg, cpu_device(probe=False)), cfg.keep_checkpoints)
    _, run = train.main(cfg, Console(quiet=True))
    written = _size(run)
    # Two checkpoints were kept (the bound allows a third while a new one is written).
    assert 0.5 * bound < written <= bound, (written, bound)


def test_a_run_that_would_fill_the_disk_is_refused_before_writing(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:8]))
    cfg = TrainConfig(data=str(data), method="full", output=str(tmp_path / "runs" / "big"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))  # 1 MiB free
    with pytest.raises(UserError, match=r"runs/big: this run writes up to .* GiB .* has 0.00 GiB free; .*--force"):
        train.setup(cfg, Console(quiet=True))
    assert not (tmp_path / "runs").exists(), "nothing is written"
    # --force tries anyway, with a warning.
    console = Console(record=True, width=400)
    train.setup(cfg.model_copy(update={"force": True}), console)
    assert "warning (--force)" in console.export_text()
