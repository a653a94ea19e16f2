"""The fused LoRA layer (methods.fused_lora) against peft's own layer: the same outputs and gradients, with and
without dropout, in fp32 and under bf16 autocast; the same adapter on disk; peft's path wherever fusing would not
compute the same function."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from lapidar.methods.fused_lora import FusedLoraLinear, draw_seed, keep_mask, lora_linear


def _pair(bias: bool = True, dropout: float = 0.0, r: int = 4, bf16_base: bool = False):
    """Two identical one-layer peft models: peft's layer and the fused one."""
    out = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(24, 40, bias=bias))
        if bf16_base:
            model[0].to(torch.bfloat16)
        cfg = LoraConfig(r=r, lora_alpha=8, lora_dropout=dropout, target_modules=["0"])
        if fused:
            cfg._register_custom_module({nn.Linear: FusedLoraLinear})
        peft_model = get_peft_model(model, cfg)
        layer = peft_model.base_model.model[0]
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.3)  # B starts at zero
        out.append((peft_model, layer))
    assert type(out[0][1]) is not FusedLoraLinear and type(out[1][1]) is FusedLoraLinear
    return out


def _grads(model, x, autocast: bool):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return y.detach(), x.grad, grads


@pytest.mark.parametrize(
    ("autocast", "bias", "bf16_base"),
    [(False, True, False), (False, False, False), (True, True, False), (True, True, True)],
)
def test_outputs_and_gradients_match_peft(autocast, bias, bf16_base):
    (ref, _), (fused, _) = _pair(bias=bias, bf16_base=bf16_base)
    x = torch.randn(3, 7, 24)
    y0, gx0, g0 = _grads(ref, x, autocast=autocast)
    y1, gx1, g1 = _grads(fused, x, autocast=autocast)
    assert y1.dtype == y0.dtype == (torch.bfloat16 if autocast else torch.float32)
    assert gx1.dtype == gx0.dtype == torch.float32
    assert g1.keys() == g0.keys() and len(g0) == 2
    # Under autocast one bf16 rounding sits elsewhere (scaling before or after B, the two input gradients summed
    # in bf16); in fp32 the same function to float precision.
    tol = {"rtol": 2e-2, "atol": 2e-2} if autocast else {"rtol": 1e-5, "atol": 1e-5}
    for got, want in [(y1.float(), y0.float()), (gx1, gx0), *((g1[n], g0[n]) for n in g0)]:
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, **tol)


def test_dropout_matches_the_same_mask_applied_by_hand():
    torch.manual_seed(3)
    x = torch.randn(6, 24, requires_grad=True)
    w, b = torch.randn(40, 24), torch.randn(40)
    a = torch.randn(4, 24, requires_grad=True)
    bb = torch.randn(40, 4, requires_grad=True)
    mask, kept = keep_mask((6, 24), 0.25, torch.device("cpu"), seed=11)
    assert kept == 0.25 and 0 < mask.sum() < mask.numel()
    y = lora_linear(x, w, b, a, bb, scaling=2.0, p=0.25, seed=11)
    (y * torch.linspace(-1, 1, 40)).sum().backward()
    fused = (x.grad, a.grad, bb.grad)
    x2, a2, b2 = (t.detach().clone().requires_grad_(True) for t in (x, a, bb))
    ref = x2 @ w.t() + b + ((x2 * mask / 0.75) @ a2.t()) @ b2.t() * 2.0
    (ref * torch.linspace(-1, 1, 40)).sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(fused, (x2.grad, a2.grad, b2.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_keep_mask_drops_at_the_rate_asked_and_follows_the_seed():
    cpu = torch.device("cpu")
    mask, p = keep_mask((512, 1024), 0.1, cpu, seed=5)
    assert mask.dtype == torch.bool and mask.shape == (512, 1024)
    assert abs(p - 0.1) < 1 / 65536
    assert abs((~mask).float().mean().item() - 0.1) < 0.003
    # Every 16-bit lane is random (a draw that leaves the sign bit of each word unset would keep every 4th element).
    lanes = (~mask).view(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.1).abs() < 0.005), lanes
    assert torch.equal(mask, keep_mask((512, 1024), 0.1, cpu, seed=5)[0])
    assert not torch.equal(mask, keep_mask((512, 1024), 0.1, cpu, seed=6)[0])
    assert keep_mask((3, 5), 0.0, cpu, seed=1)[0].all()
    torch.manual_seed(0)
    seeds = [draw_seed(), draw_seed()]
    torch.manual_seed(0)
    assert [draw_seed(), draw_seed()] == seeds and seeds[0] != seeds[1]


def test_checkpointed_recompute_draws_the_same_masks():
    (_, _), (fused, _) = _pair(dropout=0.3)
    x = torch.randn(8, 24)

    def grads(checkpointed: bool):
        fused.zero_grad()
        torch.manual_seed(4)
        xi = x.clone().requires_grad_(True)
        run = (
            fused if not checkpointed else (lambda t: torch.utils.checkpoint.checkpoint(fused, t, use_reentrant=False))
        )
        (run(xi) * torch.linspace(-1, 1, 40)).sum().backward()
        return [xi.grad.clone()] + [p.grad.clone() for p in fused.parameters() if p.grad is not None]

    for plain, recomputed in zip(grads(False), grads(True), strict=True):
        assert torch.equal(plain, recomputed)


def test_dropout_runs_only_in_training_mode_and_is_unbiased():
    (_, _), (fused, layer) = _pair(dropout=0.5, bias=False)
    x = torch.randn(4000, 24)
    fused.eval()
    with torch.no_grad():
        clean = fused(x)
        assert torch.equal(clean, fused(x))  # no dropout in eval mode
    fused.train()
    torch.manual_seed(1)
    with torch.no_grad():
        noisy = torch.stack([fused(x) for _ in range(8)]).mean(0)
    assert not torch.equal(noisy, clean)
    base = x @ layer.base_layer.weight.t()
    # The mean over masks of the LoRA update is the update without dropout (the rescaling is right).
    ratio = ((noisy - base).norm() / (clean - base).norm()).item()
    assert 0.9 < ratio < 1.1


def test_peft_forward_runs_where_fusing_would_change_the_function():
    (_, _), (fused, layer) = _pair()
    x = torch.randn(2, 24)
    with fused.disable_adapter():
        torch.testing.assert_close(fused(x), x @ layer.base_layer.weight.t() + layer.base_layer.bias)
    layer.base_layer.weight.requires_grad_(True)  # a trainable base: peft's path gives it a gradient
    fused(x).sum().backward()
    assert layer.base_layer.weight.grad is not None
    layer.base_layer.weight.requires_grad_(False)
    assert layer._fusable(x.to(torch.bfloat16), (), {}) is None  # mixed dtypes without autocast
    assert layer._fusable(x, (), {}) == "default"


def test_the_adapter_on_disk_is_peft_s_and_merges(tmp_path):
    _, (fused, _) = _pair(dropout=0.1)
    fused.save_pretrained(tmp_path)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(24, 40))
    loaded = PeftModel.from_pretrained(plain, tmp_path)
    assert type(loaded.base_model.model[0]) is not FusedLoraLinear
    x = torch.randn(5, 24)
    fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), fused(x))
        merged = fused.merge_and_unload()
        torch.testing.assert_close(merged(x), loaded(x), rtol=1e-5, atol=1e-5)


def test_projections_reading_one_input_share_its_cast_and_match_peft():
    # q/k/v-like: three LoRA layers read the same fp32 hidden states under bf16 autocast.
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = nn.ModuleDict({n: nn.Linear(24, 40) for n in ("q", "k", "v")})
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q", "k", "v"])
        if fused:
            cfg._register_custom_module({nn.Linear: FusedLoraLinear})
        models.append(get_peft_model(model, cfg))
        for name, p in models[-1].named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(6, 24)
    results = []
    for model in models:
        xi = x.clone().requires_grad_(True)
        inner = model.base_model.model
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ys = [inner[n](xi) for n in ("q", "k", "v")]
        sum((y.float() * (i + 1)).sum() for i, y in enumerate(ys)).backward()
        results.append((ys, xi.grad))
    (ys0, gx0), (ys1, gx1) = results
    for y0, y1 in zip(ys0, ys1, strict=True):
        torch.testing.assert_close(y1.float(), y0.float(), rtol=2e-2, atol=2e-2)
    assert gx1.dtype == torch.float32
    torch.testing.assert_close(gx1, gx0, rtol=2e-2, atol=2e-2)


def test_the_shared_cast_is_never_stale():
    from lapidar.methods.fused_lora import _shared_cast

    x = torch.randn(4, 8)
    first = _shared_cast(x, torch.bfloat16)
    assert _shared_cast(x, torch.bfloat16) is first  # the same unchanged tensor: one copy
    del first  # nothing keeps the copy (no backward pass saved it): it is gone, not held between steps
    assert _shared_cast.entry is not None and _shared_cast.entry[2]() is None
    first = _shared_cast(x, torch.bfloat16)  # made again
    assert torch.equal(first, x.to(torch.bfloat16))
    x.add_(1.0)  # changed in place: cast again
    again = _shared_cast(x, torch.bfloat16)
    assert again is not first and torch.equal(again, x.to(torch.bfloat16))
    assert _shared_cast(x.clone(), torch.bfloat16) is not again  # another tensor with the same values
    assert _shared_cast(x, torch.float32).data_ptr() == x.data_ptr()  # no cast needed: no copy


def test_a_bf16_held_base_computes_in_fp32_without_keeping_an_fp32_copy():
    """A bf16 checkpoint in a run that computes in fp32 (methods.upcast_for_fp32_compute): the fused layer upcasts
    the 16-bit weight inside each matmul; outputs and gradients are those of the same weight held in fp32."""
    (_, _), (held16, layer16) = _pair(dropout=0.1, bf16_base=True)
    (_, _), (held32, layer32) = _pair(dropout=0.1, bf16_base=True)
    layer32.base_layer.float()  # the exact upcast of the same bf16 values
    for layer in (layer16, layer32):
        layer.lora_B["default"].weight.data = layer32.lora_B["default"].weight.data.clone()
    x = torch.randn(3, 7, 24)
    assert layer16._fusable(x, (), {}) == "default"
    saved: list[torch.dtype] = []
    torch.manual_seed(5)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        y16, gx16, g16 = _grads(held16, x, autocast=False)
    torch.manual_seed(5)
    y32, gx32, g32 = _grads(held32, x, autocast=False)
    assert y16.dtype == gx16.dtype == torch.float32
    for got, want in [(y16, y32), (gx16, gx32), *((g16[n], g32[n]) for n in g32)]:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert torch.bfloat16 in saved, "the weight is kept as held (bf16) for the backward pass, not as an fp32 copy"
    with held16.disable_adapter():  # the base alone (a preference run's reference pass)
        torch.testing.assert_close(held16(x), held32.base_model.model[0].base_layer(x), rtol=1e-6, atol=1e-6)
