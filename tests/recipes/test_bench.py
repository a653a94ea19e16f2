"""`lapidar bench` end to end on tiny-qwen2.5: both stacks train the same batches, lapidar's path is faster and
smaller, and the loss curves agree."""

from __future__ import annotations

import json
import os

import pytest
from rich.console import Console

from lapidar.recipes.bench import BenchSpec, main

pytestmark = pytest.mark.recipe


@pytest.mark.slow
def test_bench_compares_the_plain_recipe_with_lapidar(tmp_path):
    spec = BenchSpec(model="tiny-qwen2.5", steps=4, eval_steps=2, plain_bf16=False)
    console = Console(file=open(os.devnull, "w"), width=160)  # noqa: SIM115
    report = main(spec, tmp_path, console, n_train=24, n_val=4)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["ratios"] == report["ratios"]
    plain, ours = report["stacks"]["plain"], report["stacks"]["lapidar"]
    # The same examples in the same order: the per-step losses agree (fp32 both, different kernels).
    assert len(plain["train_loss"]) == len(ours["train_loss"]) == 4
    assert report["max_train_loss_diff"] < 1e-2 and report["max_val_loss_diff"] < 1e-2
    assert ours["val_loss"][4] < ours["val_loss"][0]
    # On the tiny model the full [B, T, 151936] logits dominate the plain recipe: lapidar never builds them.
    assert report["ratios"]["tokens_per_s"] > 1.2
    assert report["ratios"]["peak_rss"] < 0.8
    assert 0 < report["plain_padding_share"] < 1
    assert report["lengths"]["rows"] == 24 and report["lengths"]["max"] <= spec.max_length
