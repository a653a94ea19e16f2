"""Padding-free batches: one row per batch, attention kept within each example, same loss and gradients as padding."""

from __future__ import annotations

import json
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lapidar.data.batching import batches as _batches
from lapidar.data.tokenize import IGNORE, Encoded, collate, collate_padding_free
from lapidar.models.attention import PADDING_FREE, enable_padding_free
from lapidar.models.loading import load_model, resolve_model
from lapidar.training.loss import causal_lm_loss


def _example(rng: random.Random, n: int) -> Encoded:
    ids = [rng.randrange(1000, 30000) for _ in range(n)]
    return Encoded(ids, [t if i >= n // 3 else IGNORE for i, t in enumerate(ids)], False)


@pytest.fixture(scope="module")
def batch() -> list[Encoded]:
    rng = random.Random(0)
    return [_example(rng, n) for n in (37, 5, 120, 64)]


def _tiny():
    torch.manual_seed(0)
    return load_model(resolve_model("tiny-qwen2.5", "random"))


def test_collate_concatenates_restarts_positions_and_masks_each_first_label(batch):
    out = collate_padding_free(batch)
    assert out["input_ids"].shape == (1, 226)
    assert out["cu_seq_lens_q"].tolist() == [0, 37, 42, 162, 226]
    assert out["position_ids"][0, 35:39].tolist() == [35, 36, 0, 1]
    assert out["position_ids"][0, -1].item() == 63
    assert out["input_ids"][0, 42:162].tolist() == batch[2].input_ids
    starts = out["cu_seq_lens_q"][:-1].long()
    assert (out["labels"][0, starts] == IGNORE).all()
    # Every other label is the example's own.
    assert out["labels"][0, 43:162].tolist() == batch[2].labels[1:]


def _loss_and_grads(model, tensors):
    model.zero_grad()
    loss, n = causal_lm_loss(model, tensors)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.item(), n, grads


@pytest.mark.parametrize("checkpointing", [False, True])
def test_same_loss_and_lora_gradients_as_the_padded_batch(batch, checkpointing):
    model = get_peft_model(_tiny(), LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0))
    # B starts at zero in LoRA; make it non-zero so the gradients of A are not trivially zero.
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    padded = _loss_and_grads(model, collate(batch, pad_id=0))
    assert enable_padding_free(model)
    assert model.get_base_model().config._attn_implementation == PADDING_FREE
    packed = _loss_and_grads(model, collate_padding_free(batch))
    assert packed[1] == padded[1] == sum(e.n_answer_tokens for e in batch)
    assert packed[0] == pytest.approx(padded[0], rel=1e-5)
    assert padded[2].keys() == packed[2].keys() and len(packed[2]) > 0
    for name, g in padded[2].items():
        assert torch.allclose(packed[2][name], g, rtol=1e-3, atol=1e-6), name


def test_attention_never_crosses_examples(batch):
    model = _tiny()
    enable_padding_free(model)
    model.eval()
    changed = [Encoded([7] * len(batch[0].input_ids), batch[0].labels, False), *batch[1:]]
    with torch.no_grad():
        a = model.model(**{k: v for k, v in collate_padding_free(batch).items() if k != "labels"}).last_hidden_state
        b = model.model(**{k: v for k, v in collate_padding_free(changed).items() if k != "labels"}).last_hidden_state
    assert not torch.allclose(a[0, :37], b[0, :37])  # the changed example's own states differ...
    assert torch.equal(a[0, 37:], b[0, 37:])  # ...and nothing after it sees the change


def test_generation_and_saved_config_are_unchanged(tmp_path, batch):
    model = _tiny()
    prompt = torch.tensor([batch[2].input_ids[:20]])
    before = model.generate(prompt, max_new_tokens=8, do_sample=False)
    enable_padding_free(model)
    after = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(before, after)
    model.save_pretrained(tmp_path)
    assert PADDING_FREE not in json.dumps(json.loads((tmp_path / "config.json").read_text()))


def test_padding_free_batches_are_random_draws_of_the_seed():
    rng = random.Random(1)
    data = [_example(rng, n) for n in rng.choices(range(4, 200), k=50)]
    a = _batches(data, 4, seed=3, shuffle=True, padding_free=True)
    assert a == _batches(data, 4, seed=3, shuffle=True, padding_free=True)
    assert sorted(id(e) for b in a for e in b) == sorted(id(e) for e in data)
    assert [len(b) for b in a] == [4] * 12 + [2]
    # Not length-grouped: the padded loader sorts within windows, this one does not.
    widths = [max(len(e.input_ids) for e in b) - min(len(e.input_ids) for e in b) for b in a]
    grouped = _batches(data, 4, seed=3, shuffle=True)
    assert sum(widths) > 2 * sum(max(len(e.input_ids) for e in b) - min(len(e.input_ids) for e in b) for b in grouped)
