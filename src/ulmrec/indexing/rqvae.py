"""RQ-VAE (paper 4.1, Eq. 2-6; the residual quantizer of LC-Rec / Zeghidour et al. [40]).

The MLP encoder maps a user embedding x to z; level l picks the nearest code of its codebook for the
residual r_l (Eq. 2), subtracts it (Eq. 3), and the decoder reconstructs x from z_hat = sum_l v_{d_l}.
Loss (Eq. 4-6): ||x - x_hat||^2 + sum_l ||sg[r_l] - v_l||^2 + beta ||r_l - sg[v_l]||^2 (squared errors
averaged over elements, as LC-Rec computes them), with the straight-through estimator at every level.
Codebooks are initialised by k-means on the residuals of the whole training set, level by level. The last
level may assign codes by Sinkhorn balancing (LC-Rec's ``sk_epsilon``) to spread users over its codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on ``x`` (N, D) -> centres (k, D); deterministic for a generator state.

    With fewer distinct points than ``k`` the spare centres are copies of data points plus tiny noise (they
    stay unused until training moves them)."""
    n = x.shape[0]
    if n == 0:
        return torch.randn(k, x.shape[1], generator=generator) * 1e-3
    if n >= k:
        centres = x[torch.randperm(n, generator=generator)[:k]].clone()
    else:
        picks = torch.cat([torch.arange(n), torch.randint(n, (k - n,), generator=generator)])
        centres = x[picks].clone()
        centres[n:] += torch.randn(k - n, x.shape[1], generator=generator) * (x.std() + 1e-6) * 1e-2
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)  # (N,)
        sums = torch.zeros_like(centres).index_add(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
        if empty.any() and n >= k:
            # re-seed empty clusters on the points worst served by their centre
            far = torch.cdist(x, centres).min(1).values.argsort(descending=True)[: int(empty.sum())]
            centres[empty] = x[far]
    return centres


@torch.no_grad()
def sinkhorn_assign(dist: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Balanced assignment (LC-Rec ``sinkhorn_algorithm``): ``dist`` (B, K) squared distances -> codes (B,)."""
    d = dist.double()
    mid = (d.max() + d.min()) / 2
    d = (d - mid) / (d.max() - mid + 1e-5)  # centred into [-1, 1] as LC-Rec does
    d = d - d.min(dim=1, keepdim=True).values  # row shift: same transport plan, no overflow
    q = torch.exp(-d / epsilon)  # (B, K)
    b, k = q.shape
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(0, keepdim=True).clamp(min=1e-300) / k
        q = q / q.sum(1, keepdim=True).clamp(min=1e-300) / b
    return q.argmax(1)


class ResidualQuantizer(nn.Module):
    """``levels`` codebooks of ``codebook_size`` vectors of ``code_dim`` (Eq. 2-3, 5)."""

    def __init__(self, levels: int, codebook_size: int, code_dim: int, beta: float = 0.25,
                 sinkhorn_epsilon: float = 0.0, sinkhorn_iters: int = 50):
        super().__init__()
        self.levels, self.codebook_size, self.beta = levels, codebook_size, beta
        self.sinkhorn_epsilon, self.sinkhorn_iters = sinkhorn_epsilon, sinkhorn_iters
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, code_dim) * 0.01)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, iters: int, generator: torch.Generator) -> None:
        r = z
        for level in range(self.levels):
            centres = kmeans(r, self.codebook_size, iters, generator)
            self.codebooks[level].copy_(centres)
            r = r - centres[torch.cdist(r, centres).argmin(1)]
        self.initialised.fill_(True)

    def forward(self, z: torch.Tensor, balance: bool = False):
        """``z`` (B, D) -> ``z_q`` (B, D, straight-through), ``codes`` (B, L), ``loss`` (Eq. 5), ``residuals``
        (B, L, D): the residual r_l each level quantized. ``balance``: Sinkhorn on the last level."""
        r = z
        z_hat = torch.zeros_like(z)
        codes, residuals, loss = [], [], z.new_zeros(())
        for level in range(self.levels):
            book = self.codebooks[level]  # (K, D)
            dist = (r.pow(2).sum(1, keepdim=True) - 2 * r @ book.T + book.pow(2).sum(1)[None])  # (B, K)
            if balance and level == self.levels - 1 and self.sinkhorn_epsilon > 0:
                idx = sinkhorn_assign(dist.detach(), self.sinkhorn_epsilon, self.sinkhorn_iters)
            else:
                idx = dist.argmin(1)  # Eq. 2
            v = book[idx]  # (B, D)
            loss = loss + F.mse_loss(v, r.detach()) + self.beta * F.mse_loss(r, v.detach())  # Eq. 5
            residuals.append(r)
            codes.append(idx)
            z_hat = z_hat + v
            r = r - v.detach()  # Eq. 3
        z_q = z + (z_hat - z).detach()  # straight-through
        return z_q, torch.stack(codes, 1), loss, torch.stack(residuals, 1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` (B, L) -> z_hat (B, D) = sum_l v^l_{codes[:, l]}."""
        return sum(self.codebooks[level][codes[:, level]] for level in range(self.levels))


class RQVAE(nn.Module):
    """MLP encoder -> residual quantizer -> mirrored MLP decoder (Eq. 4-6)."""

    def __init__(self, in_dim: int, hidden_dims: list[int], levels: int, codebook_size: int, code_dim: int,
                 beta: float = 0.25, sinkhorn_epsilon: float = 0.0, sinkhorn_iters: int = 50):
        super().__init__()
        dims = [in_dim, *hidden_dims, code_dim]
        self.encoder = mlp(dims)
        self.decoder = mlp(dims[::-1])
        self.quantizer = ResidualQuantizer(levels, codebook_size, code_dim, beta, sinkhorn_epsilon, sinkhorn_iters)

    def forward(self, x: torch.Tensor, balance: bool = False):
        """``x`` (B, in_dim) -> ``x_hat``, ``codes`` (B, L), ``recon_loss`` (Eq. 4), ``rq_loss`` (Eq. 5)."""
        z = self.encoder(x)  # (B, code_dim)
        z_q, codes, rq_loss, _ = self.quantizer(z, balance=balance)
        x_hat = self.decoder(z_q)
        return x_hat, codes, F.mse_loss(x_hat, x), rq_loss
