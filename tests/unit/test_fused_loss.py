"""The fused chunked linear cross-entropy gives the loss and gradients of the plain projection + cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lapidar.training.loss import linear_cross_entropy


def _reference(h, head, y):
    return F.cross_entropy(head(h).float(), y, reduction="sum")


@pytest.mark.parametrize("head_trains", [False, True])
@pytest.mark.parametrize("chunk", [3, 64])
def test_fused_matches_plain_in_fp32(head_trains, chunk):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(head_trains)
    h = torch.randn(10, 16, requires_grad=True)
    y = torch.randint(0, 50, (10,))
    ref = _reference(h, head, y)
    ref.backward()
    ref_h, ref_w = h.grad.clone(), None if head.weight.grad is None else head.weight.grad.clone()
    h.grad, head.weight.grad = None, None
    loss = linear_cross_entropy(h, head, y, chunk=chunk)
    (loss * 0.5).backward()  # scaling by the caller reaches the gradients
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(h.grad, 0.5 * ref_h, atol=1e-6)
    if head_trains:
        assert torch.allclose(head.weight.grad, 0.5 * ref_w, atol=1e-6)
    else:
        assert head.weight.grad is None


def test_fused_follows_bf16_autocast():
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 70, bias=False).requires_grad_(False)
    h = torch.randn(12, 32, requires_grad=True)
    y = torch.randint(0, 70, (12,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _reference(h, head, y)
        loss = linear_cross_entropy(h, head, y, chunk=5)
    assert torch.allclose(loss, ref, rtol=2e-3)
    (g_ref,) = torch.autograd.grad(ref, h)
    (g,) = torch.autograd.grad(loss, h)
    assert g.dtype == h.dtype
    assert torch.allclose(g, g_ref, atol=2e-2)


def test_fused_without_grad_is_the_loss_only():
    head = torch.nn.Linear(8, 20, bias=False)
    h, y = torch.randn(4, 8), torch.randint(0, 20, (4,))
    with torch.no_grad():
        loss = linear_cross_entropy(h, head, y)
        assert torch.allclose(loss, _reference(h, head, y), atol=1e-5)
    assert not loss.requires_grad
