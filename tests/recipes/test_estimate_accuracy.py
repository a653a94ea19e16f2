"""`lapidar estimate` against real peaks: short trainings on this machine, each in its own process, must peak
within ±15% of the estimate (the full table is bench/ESTIMATE_ACCURACY.md)."""

from __future__ import annotations

import pytest

from lapidar.config import TrainConfig
from lapidar.recipes.bench import long_conversations, measure_peak
from lapidar.training.estimate import estimate

pytestmark = pytest.mark.recipe

BASE = {"init": "random", "max_steps": 3, "val_fraction": 0.0, "patience": None, "log_steps": 1, "seed": 42}
CASES = {
    "tiny-lora-b4-l512": {"model": "tiny-qwen2.5", "method": "lora", "batch_size": 4, "max_length": 512},
    "tiny-full-b4-l256": {"model": "tiny-qwen2.5", "method": "full", "batch_size": 4, "max_length": 256},
    "tiny-lora-b2-l512-ckpt": {
        "model": "tiny-qwen2.5", "method": "lora", "batch_size": 2, "max_length": 512, "gradient_checkpointing": True,
    },
    "0.5b-lora-b1-l128": {"model": "qwen2.5-0.5b", "method": "lora", "batch_size": 1, "max_length": 128},
}  # fmt: skip


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory):
    return long_conversations(tmp_path_factory.mktemp("estimate") / "long.jsonl")


# The 0.5B shape takes a minute: it runs with the slow tests (`python -m pytest -m slow`).
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("0.5b") else n for n in CASES]
)
def test_estimate_is_within_15_percent_of_the_measured_peak(name, long_rows, tmp_path):
    cfg = TrainConfig(**{**BASE, **CASES[name], "data": str(long_rows), "output": str(tmp_path / "run")})
    predicted = estimate(cfg, probe=False).estimate.total / 2**20
    measured = measure_peak(cfg, tmp_path / "measure")["peak_memory_mib"]
    assert abs(predicted / measured - 1) <= 0.15, f"{name}: predicted {predicted:.0f} MiB, measured {measured:.0f}"
