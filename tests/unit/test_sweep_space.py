"""The `sweep:` section: parsing, one-line errors that name the field, the memory combinations, the fit check."""

from __future__ import annotations

import pytest
import yaml
from rich.console import Console

from lapidar.errors import UserError
from lapidar.recipes.sweep import check_space_fits
from lapidar.training.sweep_space import load_sweep_config, memory_combinations, trial_config

BASE = {"model": "tiny-qwen2.5", "method": "lora", "max_steps": 4}


def write(tmp_path, sweep, **extra):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra, "sweep": sweep}))
    return path


def test_parses_space_and_direction(tmp_path):
    path = write(tmp_path, {"params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}})
    base, spec = load_sweep_config(path)
    assert base.max_steps == 4 and spec.resolved_direction() == "minimize"
    _, spec = load_sweep_config(
        write(tmp_path, {"objective": "accuracy", "params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-2}}})
    )
    assert spec.resolved_direction() == "maximize"


@pytest.mark.parametrize(
    "sweep, expected",
    [
        (
            {"params": {"lrr": {"type": "float", "low": 1, "high": 2}}},
            "sweep.params.lrr is not a config field; valid fields: model,",
        ),
        ({"params": {"lr": {"type": "float", "low": 2, "high": 1}}}, "sweep.params.lr: low (2.0) is above high (1.0)"),
        (
            {"params": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "sweep.params.lr: log: true needs low > 0",
        ),
        ({"params": {"lora_r": {"type": "categorical"}}}, "sweep.params.lora_r: a categorical parameter needs"),
        ({"params": {"lora_r": {"type": "int", "low": 1.5, "high": 4}}}, "an int parameter needs whole numbers"),
        (
            {"params": {"scheduler": {"type": "categorical", "choices": ["cosine", "cubic"]}}},
            "sweep.params.scheduler: 'cubic' is not a valid scheduler",
        ),
        ({"params": {"lora_r": {"type": "int", "low": 0, "high": 4}}}, "sweep.params.lora_r: 0 is not a valid lora_r"),
        (
            {"objective": "bleu2", "params": {"lr": {"type": "float", "low": 1, "high": 2}}},
            "sweep.objective: objective 'bleu2' is not val_loss",
        ),
        ({"pruner": {"type": "fast"}, "params": {"lr": {"type": "float", "low": 1, "high": 2}}}, "sweep.pruner.type"),
        ({"params": {"output": {"type": "categorical", "choices": ["a"]}}}, "sweep.params.output cannot vary"),
        ({"params": {}}, "params is empty"),
    ],
)
def test_errors_name_the_field(tmp_path, sweep, expected):
    with pytest.raises(UserError) as err:
        load_sweep_config(write(tmp_path, sweep))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_training_keys_still_checked_and_no_section(tmp_path):
    with pytest.raises(UserError, match="unknown config key 'lrate'"):
        load_sweep_config(write(tmp_path, {"params": {"lr": {"type": "float", "low": 1, "high": 2}}}, lrate=1))
    plain = tmp_path / "p.yaml"
    plain.write_text(yaml.safe_dump(BASE))
    with pytest.raises(UserError, match="no `sweep:` section"):
        load_sweep_config(plain)


def test_memory_combinations_use_extremes(tmp_path):
    space = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "batch_size": {"type": "int", "low": 2, "high": 9, "step": 3},
        "lora_r": {"type": "categorical", "choices": [4, 8, 16]},
    }
    base, spec = load_sweep_config(write(tmp_path, {"params": space}))
    combos = memory_combinations(base, spec)
    # lr does not change memory; batch_size's grid is 2, 5, 8: its ends are 2 and 8.
    assert len(combos) == 6 and {c["batch_size"] for c in combos} == {2, 8} and all("lr" not in c for c in combos)
    cfg = trial_config(base, {"lr": 0.01, "lora_r": 4}, tmp_path / "t")
    assert cfg.lr == 0.01 and cfg.output == str(tmp_path / "t")


def test_fit_check_refuses_what_cannot_fit(tmp_path):
    space = {"model": {"type": "categorical", "choices": ["tiny-qwen2.5", "Qwen2.5-72B-Instruct"]}}
    base, spec = load_sweep_config(write(tmp_path, {"params": space}, method="full", max_length=512))
    out = Console(record=True, width=200)
    with pytest.raises(UserError) as err:
        check_space_fits(base, spec, out)
    message = str(err.value)
    assert "1 parameter combinations cannot fit" in message and "model=Qwen2.5-72B-Instruct" in message
    assert "tiny-qwen2.5" not in message and "cheapest change" in message
    small, spec = load_sweep_config(write(tmp_path, {"params": {"lora_r": {"type": "categorical", "choices": [4, 8]}}}))
    check_space_fits(small, spec, out)
    assert "2 of 2 combinations of lora_r fit" in out.export_text()
