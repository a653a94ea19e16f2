"""`--new-tokens` end to end: LoRA on tiny-qwen2.5 learns two domain tokens; only their embedding rows change,
the run's tokenizer keeps them, and the run reloads, answers and exports with them."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import lapidar

pytestmark = pytest.mark.recipe

NEW = ["<claim_id>", "<policy_ref>"]
PAIRS = [
    ("Which claim is this?", "This is claim <claim_id> under <policy_ref>."),
    ("What is the deductible for auto glass?", "Claim <claim_id>: the glass deductible is $250 (<policy_ref>)."),
    ("Is flood damage covered?", "No. Flood damage is excluded by <policy_ref>."),
    ("How do I appeal?", "Appeal claim <claim_id> in writing within 60 days (<policy_ref>)."),
    ("Where do I send receipts?", "Send receipts quoting <claim_id>."),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("newtok")
    data = write_jsonl(root / "qa.jsonl", qa_rows(PAIRS))
    run = root / "run"
    proc = lapidar(
        "train", "--model", "tiny-qwen2.5", "--method", "lora", "--new-tokens", ",".join(NEW), "--data", str(data),
        "--val-data", str(data), "--max-steps", "20", "--lr", "2e-3", "--batch-size", "5", "--eval-steps", "10",
        "--seed", "7", "--output", str(run),
    )  # fmt: skip
    return run, proc


@pytest.fixture(scope="module")
def base_embedding():
    from lapidar.models.loading import load_model, resolve_model

    return load_model(resolve_model("tiny-qwen2.5")).get_input_embeddings().weight.detach().clone()


def test_tokens_are_single_ids_in_the_saved_tokenizer(trained):
    from transformers import AutoTokenizer

    run, proc = trained
    assert "added 2 tokens (ids 151665-151666)" in proc.stdout
    tok = AutoTokenizer.from_pretrained(str(run / "adapter"))
    assert tok.convert_tokens_to_ids(NEW) == [151665, 151666]
    ids = tok("claim <claim_id> under <policy_ref>.", add_special_tokens=False)["input_ids"]
    assert 151665 in ids and 151666 in ids
    assert json.loads((run / "lapidar_run.json").read_text())["new_tokens"] == NEW


def test_only_the_new_rows_trained(trained, base_embedding):
    from safetensors.torch import load_file

    from lapidar.export.merged import merge_weights
    from lapidar.inference.generate import load_for_inference

    run, _ = trained
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    rows = [v for k, v in adapter.items() if "trainable_tokens" in k]
    assert len(rows) == 1 and rows[0].shape == (2, 128)  # only the 2 rows are saved, not the 151,936 x 128 matrix
    mean = base_embedding[:151665].mean(dim=0)
    assert all(not torch.allclose(rows[0][i], mean, atol=1e-4) for i in range(2)), "rows left at their mean init"

    merged = merge_weights(load_for_inference(str(run)).model)
    weight = merged.get_input_embeddings().weight.detach()
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight  # still one tied matrix
    others = torch.ones(weight.shape[0], dtype=torch.bool)
    others[151665:151667] = False
    assert torch.equal(weight[others], base_embedding[others])
    assert torch.equal(weight[151665:151667], rows[0])


def test_validation_loss_fell(trained):
    run, _ = trained
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val_loss"] < summary["initial_val_loss"] - 2.0


def test_run_reloads_and_generates(trained):
    run, _ = trained
    proc = lapidar("generate", str(run), "--prompt", PAIRS[0][0], "--max-new-tokens", "8")
    assert proc.stdout.strip()


def test_bad_new_tokens_is_one_line_exit_2(tmp_path):
    # (every bad value is covered in tests/unit/test_new_tokens.py; this checks what the CLI makes of one)
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    proc = lapidar(
        "train", "--data", str(data), "--new-tokens", "<a>,,<b>", "--output", str(tmp_path / "r"), check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--new-tokens" in lines[0] and "token 2 is empty" in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()
