"""The config is declared once (TrainConfig): every field is a `lapidar train` flag and a YAML key, `lapidar
estimate` takes its fields from the same declaration, and docs/config.md is what the schema generates."""

from __future__ import annotations

import typing
from typing import Any, Literal

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lapidar.cli import app
from lapidar.commands.estimate import ESTIMATE_FIELDS
from lapidar.config import GROUPS, TrainConfig, load_config, reference_markdown
from lapidar.config.options import flag_name, value_type
from lapidar.config.reference import REFERENCE_PATH
from lapidar.config.schema import field_group
from lapidar.errors import UserError

FIELDS = list(TrainConfig.model_fields)


def _command(name: str) -> Any:
    """The click command typer builds for `lapidar NAME` (typer vendors its own click)."""
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _parse(name: str, args: list[str]) -> dict[str, Any]:
    """The values `lapidar NAME ARGS` would call its function with, without calling it."""
    return _command(name).make_context(name, args).params


def _other_value(field: str) -> Any:
    """A valid value different from the default, found from the field's type and bounds."""
    info = TrainConfig.model_fields[field]
    default = info.get_default(call_default_factory=True)
    base = value_type(info)
    if base is bool:
        candidates: list[Any] = [not default]
    elif typing.get_origin(base) is Literal:
        candidates = [v for v in typing.get_args(base) if v != default]
    elif typing.get_origin(base) is list:
        candidates = [["q_proj", "v_proj"], ["<a>", "<b>"]]
    elif base is str:
        candidates = ["something-else"]
    else:
        start = default if default is not None else 1
        candidates = [base(v) for v in (start * 2, start + 1, start / 2, 0.5, 7, 1)]
    for value in candidates:
        if value == default:
            continue
        try:
            TrainConfig(**{field: value})
        except ValueError:
            continue
        return value
    raise AssertionError(f"no non-default value found for {field}; teach _other_value its type")


def _as_flag(field: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag_name(field) if value else f"--no-{flag_name(field)[2:]}"]
    if isinstance(value, list):
        return [flag_name(field), ",".join(value)]
    return [flag_name(field), str(value)]


def test_every_field_is_a_train_flag_and_round_trips_into_the_config():
    values = {f: _other_value(f) for f in FIELDS}
    args = [a for f, v in values.items() for a in _as_flag(f, v)]
    params = _parse("train", args)
    cfg = load_config(None, {k: v for k, v in params.items() if k not in ("config", "resume")})
    for field, value in values.items():
        assert getattr(cfg, field) == value, field


def test_no_flag_given_overrides_nothing(tmp_path):
    """Generated flags default to None ("not given"), so a YAML value survives a run with no flags."""
    params = _parse("train", [])
    assert all(params[f] is None for f in FIELDS)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 0.001\npadding_free: false\n")
    cfg = load_config(cfg_file, {k: v for k, v in params.items() if k not in ("config", "resume")})
    assert cfg.lr == 0.001 and cfg.padding_free is False


def test_every_field_round_trips_through_yaml(tmp_path):
    values = {f: _other_value(f) for f in FIELDS}
    cfg_file = tmp_path / "all.yaml"
    cfg_file.write_text(yaml.safe_dump(values))
    cfg = load_config(cfg_file, {})
    assert cfg.model_dump() == values
    # and the saved form (config.yaml in a run directory) loads back as it is
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    assert load_config(cfg_file, {}) == cfg


def test_every_field_is_documented_with_a_group():
    for field, info in TrainConfig.model_fields.items():
        assert info.description and info.description.strip(), field
        assert field_group(field) in GROUPS, field


def test_train_help_lists_every_flag():
    result = CliRunner().invoke(app, ["train", "--help"], env={"TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    for field in FIELDS:
        assert flag_name(field) in result.output, field
    assert "--resume" in result.output and "--force" in result.output and "--desirable-weight" in result.output


def test_choices_come_from_the_schema():
    assert _parse("train", ["--optimizer", "q-galore"])["optimizer"] == "q-galore"
    result = CliRunner().invoke(app, ["train", "--optimizer", "sgd"])
    assert result.exit_code == 2 and "--optimizer" in result.output


def test_resume_refuses_other_flags(tmp_path):
    with pytest.raises(UserError, match="drop --lr"):
        _command("train").main(["--resume", str(tmp_path), "--lr", "0.1"], standalone_mode=False)


def test_estimate_takes_its_config_flags_from_the_schema():
    params = {p.name: p for p in _command("estimate").params}
    assert set(ESTIMATE_FIELDS) <= set(FIELDS)
    for field in ESTIMATE_FIELDS:
        assert flag_name(field) in params[field].opts, field
    # its own options stay
    assert {"config", "quant", "gpus", "zero", "device", "memory", "json_output"} <= set(params)
    assert _parse("estimate", ["--optimizer", "q-galore"])["optimizer"] == "q-galore"
    # and only the memory model's fields: a flag that the estimate would ignore is not offered
    assert "lr" not in params and "eval_steps" not in params


def test_estimate_flags_reach_the_config():
    params = _parse("estimate", ["--galore-rank", "64", "--freeze-extra-modules", "norm,lm_head", "--no-padding-free"])
    overrides = {k: params[k] for k in ESTIMATE_FIELDS}
    cfg = load_config(None, overrides)
    assert cfg.galore_rank == 64 and cfg.freeze_extra_modules == ["norm", "lm_head"] and cfg.padding_free is False


def test_docs_config_md_is_current():
    assert REFERENCE_PATH.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/config.md is stale: regenerate it with `python -m lapidar.config`"
    )
    for field in FIELDS:
        assert f"| `{field}` |" in reference_markdown(), field


def test_bad_values_name_each_field(tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("batch_size: 0\nlora_r: -1\nwarmup_ratio: 2\n")
    with pytest.raises(UserError) as err:
        load_config(cfg_file, {"galore_rank": 0})
    message = str(err.value)
    assert "\n" not in message
    parts = message.split("; ")
    assert len(parts) == 4
    for field in ("batch_size", "lora_r", "warmup_ratio", "galore_rank"):
        assert sum(f": {field}: " in part for part in parts) == 1, (field, parts)


def test_bad_flag_value_names_the_field():
    result = CliRunner().invoke(app, ["train", "--galore-rank", "0", "--data", "example:claims"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError) and "galore_rank" in str(result.exception)


@pytest.mark.parametrize("flag", ["--output", "--output-dir"])
def test_data_split_takes_output_like_train(flag, tmp_path):
    params = _command("data").commands["split"].make_context("split", ["in.jsonl", flag, str(tmp_path)]).params
    assert params["output"] == tmp_path
