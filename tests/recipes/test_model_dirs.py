"""`lapidar train --model DIR` on Qwen2 directories saved by plain transformers, as a user brings them.

QLoRA (and LoRA, freeze) must train on any shape: layers, hidden sizes, grouped-query heads, tied or untied
embeddings, with or without attention biases, fp32 or bf16 weights. A broken directory fails with one line, exit 2.
Every run goes through the CLI in a subprocess, as a user runs it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import qa_rows, write_jsonl

pytestmark = pytest.mark.recipe

PAIRS = [
    ("Is hail damage to my roof covered?", "Yes, hail is a covered peril (§2.1); the $500 deductible applies."),
    ("Is flood damage covered?", "No. Flood is excluded (§3.2); flood cover needs a separate policy."),
    ("My bike was stolen from the garage. Covered?", "Yes, theft of personal property is covered (§1.4)."),
    ("Is mould covered?", "Only when caused by a sudden covered water leak (§3.5)."),
] * 2
# (name, layers, hidden, heads, kv heads, tied embeddings, attention biases saved, saved dtype)
SHAPES = [
    ("l1-h64-kv1-untied", 1, 64, 4, 1, False, True, torch.float32),
    ("l2-h96-kv2-tied", 2, 96, 6, 2, True, True, torch.float32),
    ("l3-h128-kv4-untied-nobias", 3, 128, 8, 4, False, False, torch.float32),
    ("l2-h64-mha-tied-bf16", 2, 64, 2, 2, True, True, torch.bfloat16),
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=600)


def save_qwen_dir(path: Path, tokenizer_dir: Path, layers: int, hidden: int, heads: int, kv: int, tied: bool,
                  bias: bool = True, dtype: torch.dtype = torch.float32) -> Path:  # fmt: skip
    """A random Qwen2 model saved by plain transformers, with the real Qwen2.5 tokenizer files beside it."""
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, tie_word_embeddings=tied, vocab_size=151936, bos_token_id=151643,
        eos_token_id=151645,
    )  # fmt: skip
    Qwen2ForCausalLM(config).to(dtype).save_pretrained(str(path))
    if not bias:  # a bias-free attention: the checkpoint simply has no q/k/v bias tensors
        weights = path / "model.safetensors"
        state = {k: v for k, v in load_file(weights).items() if not k.endswith("_proj.bias")}
        save_file(state, weights, metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, path / name)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_source) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dirs")
    return {name: save_qwen_dir(root / name, tiny_source.path, *shape) for name, *shape in SHAPES}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "claims.jsonl", qa_rows(PAIRS))


def train(model: Path, data: Path, out: Path, method: str, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "train", "--model", str(model), "--data", str(data), "--method", method, "--max-steps", "3",
        "--batch-size", "2", "--max-length", "64", "--eval-steps", "3", "--output", str(out), *extra,
    )  # fmt: skip


def assert_trained(proc: subprocess.CompletedProcess, out: Path) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 3
    assert math.isfinite(summary["final_train_loss"]) and math.isfinite(summary["best_val_loss"])
    return summary


@pytest.mark.parametrize("name", [s[0] for s in SHAPES])
def test_qlora_trains_on_a_plain_transformers_directory(name, dirs, data, tmp_path):
    """The issue-13 crash: bitsandbytes' `result += bias` in matmul_4bit after a validation pass on AVX512-BF16
    CPUs; and a bias-free checkpoint whose biases bitsandbytes left as uninitialised memory (a NaN loss)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    out = tmp_path / "run"
    assert_trained(train(dirs[name], data, out, "qlora"), out)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_lora_trains_on_the_same_directories(dirs, data, tmp_path):
    out = tmp_path / "run"
    assert_trained(train(dirs["l3-h128-kv4-untied-nobias"], data, out, "lora"), out)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_freeze_on_a_model_with_no_more_layers_than_it_trains_says_so(dirs, data, tmp_path):
    out = tmp_path / "run"
    proc = train(dirs["l2-h96-kv2-tied"], data, out, "freeze")  # the default freeze_trainable_layers is 2
    assert_trained(proc, out)
    flat = " ".join(proc.stdout.split())
    assert (
        "freeze: freeze_trainable_layers=2 and the model has 2 layers: all 2 layers train, this is nearly a full "
        "fine-tune (only the embeddings, final norm and lm_head stay frozen); lower --freeze-trainable-layers below 2 "
        "to freeze the first layers, or use --method full"
    ) in flat


# ---------------------------------------------------------------- broken directories: one line, exit 2


def assert_one_line(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and line.startswith("error: ")]
    assert lines == [f"error: {expected}"], proc.stderr[-3000:]


@pytest.fixture
def broken(dirs, tmp_path) -> Path:
    return Path(shutil.copytree(dirs["l1-h64-kv1-untied"], tmp_path / "model"))


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    (path / "config.json").write_text(json.dumps(config | changes), encoding="utf-8")


REFETCH = "copy the directory again from its source (for a hub model: `hf download ORG/NAME --local-dir {}`)"


def test_truncated_config_json(broken, data):
    text = (broken / "config.json").read_text(encoding="utf-8")
    (broken / "config.json").write_text(text[: text.index('"hidden_size"') + 10], encoding="utf-8")
    proc = run_cli("train", "--model", str(broken), "--data", str(data))
    line = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert line.startswith(f"error: {broken}/config.json: not valid JSON (Unterminated string starting at: line ")
    assert_one_line(proc, line.removeprefix("error: "))
    assert line.endswith(f"the file is truncated or damaged; {REFETCH.format(broken)}")


def test_layer_types_shorter_than_the_layers(broken, data):
    edit_config(broken, num_hidden_layers=3)  # layer_types (transformers writes one per layer) has 1
    assert_one_line(
        run_cli("train", "--model", str(broken), "--data", str(data)),
        f"{broken}/config.json: field 'layer_types' has 1 entry but num_hidden_layers=3; expected one entry per layer "
        "(full_attention or sliding_attention), or remove 'layer_types'",
    )


@pytest.mark.parametrize("command", ["train", "estimate", "generate"])
def test_a_llama_directory_is_named_as_such(broken, data, command):
    edit_config(broken, model_type="llama", architectures=["LlamaForCausalLM"])
    args = {"train": ["train", "--model", str(broken), "--data", str(data)],
            "estimate": ["estimate", "--model", str(broken)],
            "generate": ["generate", str(broken), "--prompt", "hi"]}[command]  # fmt: skip
    assert_one_line(
        run_cli(*args),
        f"{broken}/config.json: model_type 'llama', architectures ['LlamaForCausalLM']: another architecture; "
        "lapidar fine-tunes Qwen2/Qwen2.5 causal LMs (model_type 'qwen2', architectures ['Qwen2ForCausalLM']); pass "
        "a Qwen2.5 model directory, a hub id such as Qwen/Qwen2.5-0.5B-Instruct, or a preset from `lapidar models`",
    )


def test_missing_weights(broken, data):
    (broken / "model.safetensors").unlink()
    assert_one_line(
        run_cli("train", "--model", str(broken), "--data", str(data)),
        f"{broken}: no model weights (expected model.safetensors, or model.safetensors.index.json and its shards; "
        "found chat_template.jinja, config.json, generation_config.json, tokenizer.json, tokenizer_config.json); "
        "copy the weight files into the directory, or save the model there with `model.save_pretrained(DIR)`",
    )


def test_truncated_safetensors(broken, data):
    weights = broken / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(size - 1000)
    assert_one_line(
        run_cli("train", "--model", str(broken), "--data", str(data)),
        f"{weights}: truncated: {size - 1000:,} bytes but its header describes {size:,}, the copy or download was cut "
        f"short; {REFETCH.format(broken)}",
    )


def test_missing_tokenizer(broken, data):
    (broken / "tokenizer.json").unlink()
    assert_one_line(
        run_cli("train", "--model", str(broken), "--data", str(data)),
        f"{broken}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt, next to config.json); every "
        "Qwen2.5 model uses the same tokenizer: `hf download Qwen/Qwen2.5-0.5B-Instruct tokenizer.json "
        f"tokenizer_config.json vocab.json merges.txt --local-dir {broken}`",
    )


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_truncated_tokenizer_file(broken, data, name):
    file = broken / name
    text = file.read_text(encoding="utf-8")
    file.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as parse:
        json.loads(file.read_text(encoding="utf-8"))
    assert_one_line(
        run_cli("train", "--model", str(broken), "--data", str(data)),
        f"{file}: the tokenizer could not be loaded (not valid JSON: {parse.value}); the tokenizer files are damaged "
        "or incomplete; every Qwen2.5 model uses the same tokenizer: `hf download Qwen/Qwen2.5-0.5B-Instruct "
        f"tokenizer.json tokenizer_config.json vocab.json merges.txt --local-dir {broken}`",
    )
