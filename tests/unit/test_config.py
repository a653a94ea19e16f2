"""Run config: YAML + command-line overrides, validated with clear messages."""

from __future__ import annotations

import pytest
import yaml

from lapidar.config import TrainConfig, load_config
from lapidar.errors import UserError


def test_yaml_then_flags_override(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: tiny-qwen2.5\nlr: 0.001\nbatch-size: 2\ntarget_modules: attention\n")
    cfg = load_config(cfg_file, {"lr": 0.005, "epochs": None})
    assert cfg.lr == 0.005 and cfg.batch_size == 2 and cfg.epochs == 3.0
    assert cfg.target_modules == ["attention"]


def test_unknown_key_names_valid_keys(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("learning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"unknown config key 'learning_rate' in .*c.yaml; valid keys: .*\blr\b"):
        load_config(cfg_file, {})


def test_bad_value_names_field_and_value():
    with pytest.raises(UserError, match=r"batch_size: .*greater than or equal to 1.*got 0"):
        load_config(None, {"batch_size": 0})


def test_broken_yaml_names_line(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 0.1\nmodel: [unclosed\n")
    with pytest.raises(UserError, match=r"c.yaml line \d+: not valid YAML"):
        load_config(cfg_file, {})


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", {})


def test_defaults_are_lora_on_attention_and_mlp():
    cfg = TrainConfig()
    assert cfg.method == "lora" and cfg.target_modules == ["all-linear"] and cfg.patience == 3


def test_shipped_configs_are_valid():
    from pathlib import Path

    from lapidar.training.sweep_space import load_sweep_config

    for path in sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")):
        if "sweep" in (yaml.safe_load(path.read_text()) or {}):
            load_sweep_config(path)  # a search space: `lapidar sweep` reads it
        else:
            load_config(path, {})


def test_quickstart_matches_its_documented_config():
    from pathlib import Path

    from lapidar.recipes.quickstart import QUICKSTART

    cfg = load_config(Path(__file__).parents[2] / "configs" / "claims-routing.yaml", {})
    for key, value in QUICKSTART.items():
        if key != "name":
            assert getattr(cfg, key) == value, key


def test_train_config_with_a_sweep_section_points_to_lapidar_sweep(tmp_path):
    from lapidar.config import load_config
    from lapidar.errors import UserError

    path = tmp_path / "s.yaml"
    path.write_text("data: example:claims\nsweep:\n  trials: 2\n")
    with pytest.raises(UserError, match=r"read by `lapidar sweep .*s\.yaml`"):
        load_config(path, {})
