"""The batched multilayer perceptron: a critic ``(B, M, d) -> (B, M)`` and, with ``out`` outputs,
the MLP generator ``G(z) = MLP(z)``, ``(B, n, k) -> (B, n, d)`` with ``z ~ N(0, I)``."""

from __future__ import annotations

import math
from typing import Optional

import torch

from gandy.core.nets.base import ACTIVATIONS, Critic, bmv
from gandy.core.rng import Stream


class Mlp(Critic):
    """f(x) = w_L . act(... act(x W_1 + b_1) ...) + b_L; PyTorch's default uniform init.

    The critic returns ``(B, M)``; with ``out`` set it is a vector-valued network
    ``(B, M, k) -> (B, M, out)`` (the MLP generator).
    """

    def __init__(self, d: int, widths: list[int], activation: str = "relu", out: Optional[int] = None):
        self.dims = [d, *widths, out or 1]
        self.scalar = out is None
        self.act = ACTIVATIONS[activation]

    def init(self, stream, b):
        p = {}
        for i, (fi, fo) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            bound = 1.0 / math.sqrt(fi)
            p[f"w{i}"] = (2 * stream.uniform(fi, fo) - 1) * bound  # (B, in, out)
            p[f"b{i}"] = (2 * stream.uniform(fo) - 1) * bound  # (B, out)
        return p

    def forward(self, params, x):
        h = x
        n = len(self.dims) - 1
        for i in range(n - 1):
            h = self.act(torch.baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"]))
        if self.scalar:
            return bmv(h, params[f"w{n - 1}"][..., 0]) + params[f"b{n - 1}"]
        return torch.baddbmm(params[f"b{n - 1}"][:, None, :], h, params[f"w{n - 1}"])


class MlpNet(Mlp):
    """G(z) = MLP(z) with z ~ N(0, I): the critics' batched MLP with ``d`` outputs."""

    def __init__(self, latent_dim: int, widths: list[int], d: int, activation: str):
        super().__init__(latent_dim, widths, activation, out=d)
        self.latent_dim = latent_dim

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.normal(n, self.latent_dim)


CRITICS = {"mlp": lambda cfg, d, target, init: Mlp(d, cfg.widths, cfg.activation)}
GENERATORS = {"mlp": lambda cfg, target, d: MlpNet(cfg.latent_dim, cfg.widths, d, cfg.activation)}
