"""The fused full-softmax loss equals autograd's cross-entropy, and precision resolves as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsir import losses
from rsir.losses import linear_cross_entropy
from rsir.precision import compute_dtype, cpu_has_native_bf16


def _reference(hidden, table, target, weights):
    logits = hidden @ table.T
    logits[:, 0] = float("-inf")
    per = F.cross_entropy(logits, target, reduction="none")
    return (per * weights).sum() / weights.sum()


def _case(n=37, items=300, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, dim, generator=g, requires_grad=True)
    table = torch.randn(items + 1, dim, generator=g, requires_grad=True)
    target = torch.randint(1, items + 1, (n,), generator=g)
    weights = torch.rand(n, generator=g) + 0.25
    return hidden, table, target, weights


@pytest.mark.parametrize("block", [losses.SOFTMAX_BLOCK_ELEMENTS, 301 * 5])  # one block, and rows in blocks of 5
def test_fp32_matches_cross_entropy_and_its_gradients(monkeypatch, block):
    monkeypatch.setattr(losses, "SOFTMAX_BLOCK_ELEMENTS", block)
    hidden, table, target, weights = _case()
    expected = _reference(hidden, table, target, weights)
    grads = torch.autograd.grad(expected, (hidden, table))
    got = linear_cross_entropy(hidden, table, target, weights)
    fused = torch.autograd.grad(got * 3.0, (hidden, table))  # the incoming gradient scales both
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(grads, fused, strict=True):
        torch.testing.assert_close(b, 3.0 * a, rtol=1e-5, atol=1e-7)
    assert fused[1][0].abs().max() == 0  # padding is never a class


def test_bf16_stays_close_to_fp32():
    hidden, table, target, weights = _case(n=64, items=2000, dim=32)
    expected = _reference(hidden, table, target, weights)
    grads = torch.autograd.grad(expected, (hidden, table))
    got = linear_cross_entropy(hidden, table, target, weights, torch.bfloat16)
    fused = torch.autograd.grad(got, (hidden, table))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected.item(), rel=2e-2)
    for a, b in zip(grads, fused, strict=True):
        assert b.dtype == a.dtype and ((b - a).norm() / a.norm()).item() < 2e-2


def test_the_logits_buffer_is_reused_grown_and_released():
    """Successive steps write their logits into one buffer, which changes no value or gradient."""
    losses.release_buffers()
    results, kept = [], []
    for n in (37, 20, 50, 37):  # a larger batch grows the buffer, a smaller one reuses it
        hidden, table, target, weights = _case(n=n)
        loss = linear_cross_entropy(hidden, table, target, weights)
        results.append((loss, *torch.autograd.grad(loss, (hidden, table))))
        kept.append(losses._buffers.logits)
    assert kept[0] is kept[1] and kept[2] is kept[3] and kept[2].numel() == 50 * 301 > kept[0].numel()
    hidden, table, target, weights = _case(n=37)
    again = linear_cross_entropy(hidden, table, target, weights)
    for a, b in zip(results[-1], (again, *torch.autograd.grad(again, (hidden, table))), strict=True):
        assert torch.equal(a, b)  # the previous contents of the buffer change nothing
    losses.release_buffers()
    assert losses._buffers.logits is None


def test_a_sure_target_costs_nothing_and_a_hopeless_one_stays_finite():
    table = torch.zeros(4, 2)
    table[1], table[2] = torch.tensor([100.0, 0.0]), torch.tensor([-100.0, 0.0])
    hidden = torch.tensor([[1.0, 0.0]])
    sure = linear_cross_entropy(hidden, table, torch.tensor([1]), torch.ones(1))
    hopeless = linear_cross_entropy(hidden * 10, table, torch.tensor([2]), torch.ones(1))
    assert sure.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(hopeless) and hopeless.item() > 80


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert compute_dtype("fp32", cpu) == torch.float32
    assert compute_dtype("bf16", cpu) == torch.bfloat16
    assert compute_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
