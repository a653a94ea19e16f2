"""Selective activation checkpointing: the first N decoder layers recompute their activations; the estimate
counts it, chooses the fewest layers that make a run fit, and the losses and gradients do not change."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.models.loading import load_model, resolve_model
from lapidar.models.presets import get_preset
from lapidar.models.qwen import checkpoint_first_layers
from lapidar.training.estimate import check_fits, checkpoint_choice, cpu_capacity, estimate, fixes, verdict
from lapidar.training.loss import causal_lm_loss
from lapidar.training.memory import ModelShape, Plan, estimate_memory, flops_per_token


def _plan(**kw) -> Plan:
    shape = ModelShape.from_preset(get_preset("qwen2.5-0.5b"))
    return Plan(shape, **{"method": "lora", "weight_bytes": 4, "bf16": True, "device": "cpu", "seq_len": 1024, **kw})


def test_activations_fall_with_each_checkpointed_layer_down_to_full_checkpointing():
    n = _plan().shape.layers
    peaks = [estimate_memory(_plan(checkpoint_layers=k)).activations for k in range(n + 1)]
    # Each layer checkpointed keeps only its input; the last one recomputed needs room for one layer's tensors at
    # the end of the backward pass, so checkpointing every layer saves nothing over all but one.
    assert all(b < a for a, b in itertools.pairwise(peaks[:-1]))
    assert peaks[-2] <= peaks[-1] < peaks[-3]
    assert peaks[-1] == estimate_memory(_plan(gradient_checkpointing=True)).activations
    assert _plan(checkpoint_layers=99).checkpointed_layers == n
    # The recomputed forward is counted in the compute.
    assert (
        flops_per_token(_plan())
        < flops_per_token(_plan(checkpoint_layers=6))
        < flops_per_token(_plan(gradient_checkpointing=True))
    )


def test_the_choice_is_the_fewest_layers_that_fit():
    plan = _plan(batch_size=4)
    totals = {k: estimate_memory(plan.with_(checkpoint_layers=k)).total for k in (5, 6)}
    capacity = totals[6] / 0.84  # k=6 fits by the margin, k=5 does not
    assert verdict(totals[5], capacity) != "fits"
    k, est = checkpoint_choice(plan, capacity)
    assert k == 6 and est.total == totals[6]
    # Nothing fits, even with every layer checkpointed; full checkpointing is never "chosen".
    assert checkpoint_choice(plan, estimate_memory(plan.with_(gradient_checkpointing=True)).total / 2) is None
    assert checkpoint_choice(plan.with_(gradient_checkpointing=True), capacity) is None


def test_fixes_offer_a_few_checkpointed_layers_before_all_of_them():
    plan = _plan(batch_size=16)
    changes = [f.change for f in fixes(plan, estimate_memory(plan).total * 0.8)]
    assert any(c.startswith("--checkpoint-layers ") for c in changes), changes


def test_check_fits_chooses_layers_on_this_machine_and_says_so():
    # A 1.5B-shaped run sized so that on this machine it does not fit without checkpointing, and fits with some.
    capacity = cpu_capacity()
    base = {"model": "qwen2.5-1.5b", "init": "random", "method": "lora", "max_length": 2048, "data": "x.jsonl"}
    for batch in range(1, 65):
        cfg = TrainConfig(**base, batch_size=batch)
        plan = estimate(cfg, probe=False, read_data=False).plan
        # Clearly over (not within the margin), so that RAM freed or taken meanwhile cannot change the verdict.
        if estimate_memory(plan).total > capacity * 1.3:
            break
    else:
        pytest.skip("this machine fits every batch size tried without checkpointing")
    if checkpoint_choice(plan, capacity) is None:
        pytest.skip("the run does not fit here even with every layer checkpointed")
    out = io.StringIO()
    k = check_fits(cfg, Console(file=out, width=400))
    assert k is not None and 1 <= k <= plan.shape.layers
    text = out.getvalue()
    assert f"recomputing the activations of the first {k} of {plan.shape.layers} decoder layers" in text
    assert "--checkpoint-layers 0" in text
    # Set by the user (0: never), the choice is not made.
    assert (
        check_fits(cfg.model_copy(update={"checkpoint_layers": 0, "force": True}), Console(file=io.StringIO())) is None
    )


def _lora_model(checkpointed: int):
    torch.manual_seed(0)
    model = load_model(resolve_model("tiny-qwen2.5", "random"))
    if checkpointed:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert checkpoint_first_layers(model, checkpointed) == checkpointed
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.1))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    return model


def test_checkpointing_the_first_layer_keeps_losses_and_gradients_and_recomputes_only_it():
    results = []
    for checkpointed in (0, 1):
        model = _lora_model(checkpointed)
        layers = model.get_base_model().model.layers
        calls = [0] * len(layers)
        for i, layer in enumerate(layers):
            # A child's hook: transformers checkpoints the layer's forward, so the recomputation runs the children
            # (up to the last saved tensor: torch stops it there, inside the MLP).
            layer.self_attn.register_forward_hook(lambda *_a, i=i, calls=calls: calls.__setitem__(i, calls[i] + 1))
        torch.manual_seed(1)  # the same dropout masks in both runs
        ids = torch.randint(100, 5000, (2, 40), generator=torch.Generator().manual_seed(2))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        loss, n = causal_lm_loss(model, batch)
        (loss / n).backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        results.append((loss.item(), grads, calls))
    (loss0, grads0, calls0), (loss1, grads1, calls1) = results
    assert loss1 == loss0
    assert grads1.keys() == grads0.keys() and grads0
    for name, g in grads0.items():
        assert torch.equal(grads1[name], g), name
    assert calls0 == [1] * len(calls0)
    assert calls1 == [2] + [1] * (len(calls1) - 1)  # only the first layer ran its forward again
