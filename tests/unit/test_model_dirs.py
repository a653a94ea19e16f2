"""A model directory is user input: each way it can be broken is one `UserError` line, found before any weights load.

The directories are saved by plain transformers (`Qwen2ForCausalLM(config).save_pretrained`) at a small vocabulary,
then broken the way a cut-short copy or a hand edit breaks them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.methods import apply_method
from lapidar.models.loading import check_model_dir, load_model, read_model_config, resolve_model


def save_qwen(path: Path, layers: int = 2, hidden: int = 32, heads: int = 2, kv: int = 1, tied: bool = True) -> Path:
    """A randomly initialised Qwen2 directory as plain transformers saves it, with stand-in tokenizer files."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=512, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=tied,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(str(path))
    (path / "tokenizer.json").write_text("{}", encoding="utf-8")  # only its presence is checked here
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_qwen(tmp_path_factory.mktemp("good") / "qwen")


@pytest.fixture
def model_dir(good, tmp_path) -> Path:
    """A fresh copy of the good directory, to break."""
    return Path(shutil.copytree(good, tmp_path / "m"))


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")


def error_of(path: Path) -> str:
    with pytest.raises(UserError) as info:
        check_model_dir(path, read_model_config(path))
    message = str(info.value)
    assert "\n" not in message
    return message


REFETCH = "copy the directory again from its source (for a hub model: `hf download ORG/NAME --local-dir {}`)"


def test_a_good_directory_passes_every_check(good):
    config = read_model_config(good)
    check_model_dir(good, config)
    assert config["num_hidden_layers"] == 2


def test_truncated_config_json(model_dir):
    (model_dir / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 3', encoding="utf-8")
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: not valid JSON (Expecting ',' delimiter: line 1 column 57), the file is "
        f"truncated or damaged; {REFETCH.format(model_dir)}"
    )


@pytest.mark.parametrize(
    ("model_type", "architecture"), [("llama", "LlamaForCausalLM"), ("mistral", "MistralForCausalLM")]
)
def test_another_architecture_is_named(model_dir, model_type, architecture):
    edit_config(model_dir, model_type=model_type, architectures=[architecture])
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: model_type {model_type!r}, architectures ['{architecture}']: another "
        "architecture; lapidar fine-tunes Qwen2/Qwen2.5 causal LMs (model_type 'qwen2', architectures "
        "['Qwen2ForCausalLM']); pass a Qwen2.5 model directory, a hub id such as Qwen/Qwen2.5-0.5B-Instruct, or a "
        "preset from `lapidar models`"
    )


def test_a_qwen2_classifier_is_not_a_causal_lm(model_dir):
    edit_config(model_dir, architectures=["Qwen2ForSequenceClassification"])
    assert "architectures ['Qwen2ForSequenceClassification']: not a causal language model" in error_of(model_dir)


def test_layer_types_shorter_than_the_layers(model_dir):
    edit_config(model_dir, layer_types=["full_attention"])
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: field 'layer_types' has 1 entry but num_hidden_layers=2; expected one entry per "
        "layer (full_attention or sliding_attention), or remove 'layer_types'"
    )


def test_heads_that_do_not_divide_the_hidden_size(model_dir):
    edit_config(model_dir, num_attention_heads=3, num_key_value_heads=1)
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: hidden_size=32 is not a multiple of num_attention_heads=3 (each head gets "
        "hidden_size / num_attention_heads dimensions); fix config.json"
    )


def test_query_heads_not_a_multiple_of_kv_heads(model_dir):
    edit_config(model_dir, num_key_value_heads=3)
    assert "num_attention_heads=2 is not a multiple of num_key_value_heads=3" in error_of(model_dir)


def test_a_missing_size_field(model_dir):
    edit_config(model_dir, hidden_size=None)
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: field 'hidden_size' is missing, expected a positive integer (every Qwen2 "
        f"config.json has it); {REFETCH.format(model_dir)}"
    )


def test_missing_weights_lists_what_is_there(model_dir):
    (model_dir / "model.safetensors").unlink()
    assert error_of(model_dir) == (
        f"{model_dir}: no model weights (expected model.safetensors, or model.safetensors.index.json and its "
        "shards; found config.json, generation_config.json, tokenizer.json); copy the weight files into the "
        "directory, or save the model there with `model.save_pretrained(DIR)`"
    )


def test_truncated_safetensors(model_dir):
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(size // 2)
    assert error_of(model_dir) == (
        f"{weights}: truncated: {size // 2:,} bytes but its header describes {size:,}, the copy or download was cut "
        f"short; {REFETCH.format(model_dir)}"
    )


def test_safetensors_cut_inside_its_header(model_dir):
    weights = model_dir / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(100)
    assert error_of(model_dir).startswith(f"{weights}: truncated or not a safetensors file (100 bytes, no complete")


def test_a_missing_shard_of_an_index(model_dir):
    (model_dir / "model.safetensors").rename(model_dir / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                            "model.norm.weight": "model-00002-of-00002.safetensors"}}  # fmt: skip
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert error_of(model_dir) == (
        f"{model_dir}/model.safetensors.index.json: 1 of 2 weight shards are missing "
        f"(model-00002-of-00002.safetensors); {REFETCH.format(model_dir)}"
    )


def test_weights_of_another_shape_than_the_config(model_dir):
    edit_config(model_dir, intermediate_size=48)
    assert error_of(model_dir) == (
        f"{model_dir}/model.safetensors: tensor 'layers.0.mlp.gate_proj.weight' has shape [64, 32] but config.json "
        "implies [48, 32] (hidden_size, intermediate_size, heads, vocab_size); the weights and config.json come from "
        f"different models: {REFETCH.format(model_dir)}"
    )


def test_more_layers_in_the_weights_than_in_the_config(model_dir):
    edit_config(model_dir, num_hidden_layers=1, layer_types=["full_attention"])
    assert error_of(model_dir) == (
        f"{model_dir}/config.json: num_hidden_layers=1 but the weight files hold 2 layers; set num_hidden_layers to "
        "2 or copy the matching config.json"
    )


def test_untied_config_with_tied_weights(model_dir):
    edit_config(model_dir, tie_word_embeddings=False)
    assert "the weights have no lm_head.weight but config.json says tie_word_embeddings=false" in error_of(model_dir)


def test_missing_tokenizer(model_dir):
    (model_dir / "tokenizer.json").unlink()
    assert error_of(model_dir) == (
        f"{model_dir}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt, next to config.json); every "
        "Qwen2.5 model uses the same tokenizer: `hf download Qwen/Qwen2.5-0.5B-Instruct tokenizer.json "
        f"tokenizer_config.json vocab.json merges.txt --local-dir {model_dir}`"
    )


def test_config_and_tokenizer_are_checked_on_resolving_the_weights_on_loading(model_dir):
    """`lapidar estimate` and the fit check need no weights; loading them checks them first."""
    (model_dir / "model.safetensors").unlink()
    source = resolve_model(str(model_dir))
    with pytest.raises(UserError, match="no model weights"):
        load_model(source)
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer"):
        resolve_model(str(model_dir))


def test_absent_attention_biases_load_as_zero_even_quantised(model_dir):
    """A checkpoint without q/k/v biases (a bias-free attention) is accepted; the biases are zero, also under
    bitsandbytes, which otherwise leaves them as uninitialised memory (a NaN QLoRA loss)."""
    pytest.importorskip("bitsandbytes")
    from safetensors.torch import load_file, save_file
    from transformers import BitsAndBytesConfig

    weights = model_dir / "model.safetensors"
    state = {k: v for k, v in load_file(weights).items() if not k.endswith("_proj.bias")}
    save_file(state, weights, metadata={"format": "pt"})
    source = resolve_model(str(model_dir))
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    for quantization_config in (None, quant):
        model = load_model(source, quantization_config=quantization_config)
        for layer in model.model.layers:
            for proj in ("q_proj", "k_proj", "v_proj"):
                assert torch.count_nonzero(getattr(layer.self_attn, proj).bias) == 0


@pytest.mark.parametrize(("trainable", "says"), [(1, False), (2, True), (5, True)])
def test_freeze_that_freezes_no_layer_says_so(good, trainable, says):
    model = load_model(resolve_model(str(good)))
    notes: list[str] = []
    apply_method(model, TrainConfig(method="freeze", freeze_trainable_layers=trainable), notes=notes)
    frozen = [layer for layer in model.model.layers if not any(p.requires_grad for p in layer.parameters())]
    assert len(frozen) == (0 if says else 1)
    if not says:
        assert notes == []
        return
    joint = "but" if trainable > 2 else "and"
    assert notes == [
        f"freeze: freeze_trainable_layers={trainable} {joint} the model has 2 layers: all 2 layers train, this is "
        "nearly a full fine-tune (only the embeddings, final norm and lm_head stay frozen); lower "
        "--freeze-trainable-layers below 2 to freeze the first layers, or use --method full"
    ]


def test_a_damaged_generation_config_is_not_ignored(model_dir):
    (model_dir / "generation_config.json").write_text('{"eos_token_id": [151645, 1516', encoding="utf-8")
    with pytest.raises(UserError) as info:
        resolve_model(str(model_dir))
    assert str(info.value) == (
        f"{model_dir}/generation_config.json: not valid JSON: Expecting ',' delimiter: line 1 column 31 (char 30); "
        "transformers would ignore the file and generate with config.json's defaults; "
        f"{REFETCH.format(model_dir)}, or delete the file"
    )
