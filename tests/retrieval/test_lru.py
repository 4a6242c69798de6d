"""The LRU parallel scan equals a plain sequential loop over each sequence's real items (forward and
gradients), so left padding never leaks into the recurrent state."""

from __future__ import annotations

import torch

from ulmrec.retrieval.lru import LRULayer, LRURec, LRURecConfig


def sequential_reference(layer: LRULayer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LRULayer.forward written as a loop in complex arithmetic that only ever visits real items."""
    lam = torch.exp(torch.complex(-torch.exp(layer.nu_log), torch.exp(layer.theta_log)))  # (H,)
    gamma = torch.exp(layer.gamma_log)
    out = torch.zeros_like(x)
    for b in range(x.size(0)):
        h = torch.zeros(layer.state, dtype=lam.dtype)
        for t in torch.nonzero(mask[b]).flatten().tolist():
            u = layer.in_proj(x[b, t]) * gamma.repeat(2)
            h = lam * h + torch.complex(u[: layer.state], u[layer.state:])
            y = layer.out_proj(torch.cat([h.real, h.imag]))
            out[b, t] = layer.norm(y + x[b, t])
    return out


def grad_or_zeros(p: torch.Tensor) -> torch.Tensor:
    return p.grad.clone() if p.grad is not None else torch.zeros_like(p)


def random_padded(B: int, L: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L  # one row without padding
    mask = torch.arange(L)[None, :] >= (L - lengths)[:, None]  # left padding
    x = torch.randn(B, L, d, generator=g, dtype=torch.float64) * 3  # padding rows hold garbage, not zeros
    return x, mask


def test_parallel_scan_equals_sequential_loop_forward_and_gradients():
    torch.manual_seed(0)
    for L in (1, 5, 8, 13):  # powers of two and not
        layer = LRULayer(d_model=6, dropout=0.0).double().eval()
        x, mask = random_padded(B=4, L=L, d=6, seed=L)
        w = torch.randn(4, L, 6, dtype=torch.float64) * mask[..., None]  # only real positions count

        xa = x.clone().requires_grad_(True)
        fast = layer(xa, mask)
        (fast * w).sum().backward()
        grads_fast = {n: grad_or_zeros(p) for n, p in layer.named_parameters()}
        gx_fast = xa.grad.clone()
        layer.zero_grad()

        xb = x.clone().requires_grad_(True)
        slow = sequential_reference(layer, xb, mask)
        (slow * w).sum().backward()

        torch.testing.assert_close(fast[mask], slow[mask], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(gx_fast, xb.grad, rtol=1e-9, atol=1e-9)
        assert not gx_fast[~mask].abs().gt(0).any(), "gradient reached a padding input"
        for n, p in layer.named_parameters():
            torch.testing.assert_close(grads_fast[n], grad_or_zeros(p), rtol=1e-8, atol=1e-10, msg=f"gradient of {n}")


def test_extra_left_padding_changes_nothing():
    torch.manual_seed(1)
    model = LRURec(LRURecConfig(num_items=40)).eval()
    items = torch.tensor([[0, 0, 3, 7, 9], [1, 2, 3, 4, 5]])
    more = torch.cat([torch.zeros(2, 6, dtype=torch.long), items], dim=1)
    torch.testing.assert_close(model.predict(items), model.predict(more))


def test_ring_initialisation():
    torch.manual_seed(2)
    layer = LRULayer(d_model=32, dropout=0.0, r_min=0.8, r_max=0.99)
    modulus = torch.exp(-torch.exp(layer.nu_log))
    assert modulus.min() >= 0.8 - 1e-6 and modulus.max() <= 0.99 + 1e-6
    torch.testing.assert_close(torch.exp(layer.gamma_log), torch.sqrt(1 - modulus**2))
    assert torch.exp(layer.theta_log).max() <= 2 * torch.pi
