"""Presets hold the real Qwen2.5 architectures; lookups fail loudly."""

from __future__ import annotations

import json

import pytest

from lapidar.errors import UserError
from lapidar.methods import resolve_targets
from lapidar.models.loading import resolve_model
from lapidar.models.presets import PRESETS, get_preset
from tests.conftest import FIXTURES

CONFIGS = json.loads((FIXTURES / "qwen25_configs.json").read_text(encoding="utf-8"))["models"]
FIELDS = [
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "rope_theta",
    "rms_norm_eps",
    "tie_word_embeddings",
]


@pytest.mark.parametrize("hub_id", sorted(CONFIGS))
def test_preset_matches_official_config(hub_id):
    official = CONFIGS[hub_id]
    preset = get_preset(hub_id).config_dict()
    for field in FIELDS:
        if field not in official.get("unverified", []):
            assert preset[field] == official[field], field


def test_every_size_and_variant_is_there():
    for size in ("0.5b", "1.5b", "3b", "7b", "14b", "32b", "72b"):
        assert f"qwen2.5-{size}" in PRESETS and f"qwen2.5-{size}-instruct" in PRESETS
    assert PRESETS["qwen2.5-7b-instruct"].hub_id == "Qwen/Qwen2.5-7B-Instruct"
    assert PRESETS["qwen2.5-7b"].kind == "base" and PRESETS["qwen2.5-7b-instruct"].kind == "instruct"


def test_param_counts_match_published_sizes():
    assert get_preset("qwen2.5-0.5b").n_params == pytest.approx(494e6, rel=0.01)
    assert get_preset("qwen2.5-7b").n_params == pytest.approx(7.62e9, rel=0.01)
    assert get_preset("qwen2.5-72b").n_params == pytest.approx(72.7e9, rel=0.01)


def test_unknown_preset_lists_choices():
    with pytest.raises(UserError, match=r"unknown model preset 'qwen9'.*tiny-qwen2.5"):
        get_preset("qwen9")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(UserError, match=r"unknown model 'qwen9'.*valid presets"):
        resolve_model("qwen9")


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="model directory not found"):
        resolve_model(str(tmp_path / "missing"))


def test_hub_id_offline_fails_fast_with_how_to(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"cannot reach the Hugging Face hub.*--model DIR"):
        resolve_model("qwen2.5-0.5b-instruct")


def test_target_module_presets():
    assert resolve_targets(["attention"]) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert resolve_targets(["mlp", "q_proj"]) == ["gate_proj", "up_proj", "down_proj", "q_proj"]
    with pytest.raises(UserError, match="unknown target module 'qkv'"):
        resolve_targets(["qkv"])


def test_tiny_is_labelled_random(tiny_source):
    assert tiny_source.random_init and "RANDOMLY INITIALISED" in tiny_source.label
    assert "RANDOMLY INITIALISED" in PRESETS["tiny-qwen2.5"].description
