"""Network generators for the GAN lab, batched like the critics: every member has its own weights.

A generator is ``forward(params, z: (B, n, k)) -> (B, n, d)`` with ``latent(stream, n) -> z`` and
``init(stream, B) -> params`` (a dict of ``(B, ...)`` tensors). In the loop it replaces the
kernel-coupled particles: its parameters take the gradient that the critic's force
back-propagates, through one of the batched optimisers. ``GENERATORS`` maps config names to
builders.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from . import config as C
from .critics import ACTIVATIONS
from .rng import Stream
from .targets import Embedded, Segment


class MlpNet:
    """G(z) = W_L act(... act(z W_1 + b_1) ...) + b_L, z ~ N(0, I); PyTorch's default init."""

    def __init__(self, latent_dim: int, widths: list[int], d: int, activation: str):
        self.latent_dim = latent_dim
        self.dims = [latent_dim, *widths, d]
        self.act = ACTIVATIONS[activation]

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.normal(n, self.latent_dim)

    def init(self, stream: Stream, b: int) -> dict:
        p = {}
        for i, (fi, fo) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            bound = 1.0 / math.sqrt(fi)
            p[f"w{i}"] = (2 * stream.uniform(fi, fo) - 1) * bound
            p[f"b{i}"] = (2 * stream.uniform(fo) - 1) * bound
        return p

    def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor:
        h = z
        n = len(self.dims) - 1
        for i in range(n):
            h = torch.baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"])
            if i < n - 1:
                h = self.act(h)
        return h


class Affine:
    """G(z) = a z + b with z ~ U[0, 1] (one latent): a segment from b to a + b."""

    latent_dim = 1

    def __init__(self, a0: torch.Tensor, b0: torch.Tensor):
        self.a0, self.b0 = a0, b0

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.uniform(n, 1)

    def init(self, stream: Stream, b: int) -> dict:
        return {"a": self.a0.expand(b, -1).clone(), "b": self.b0.expand(b, -1).clone()}

    def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor:
        return z * params["a"][:, None, :] + params["b"][:, None, :]


def _affine(cfg, target, d: int):
    base, q = (target.base, target.q) if isinstance(target, Embedded) else (target, None)
    if not isinstance(base, Segment):
        raise C.ConfigError("generator.name", "the affine generator starts beside a segment: use target parallel_lines")
    a, start = base.b - base.a, base.a.clone()
    normal = torch.zeros_like(a)
    normal[int(torch.argmin(a.abs()))] = 1.0  # a coordinate direction orthogonal-ish to the segment
    normal = normal - (normal @ a) / (a @ a) * a
    normal = normal / normal.norm()
    b = start + cfg.init_offset * normal
    if q is not None:
        a, b = a @ q.T, b @ q.T
    return Affine(a, b)


GENERATORS: dict[str, Callable] = {
    "mlp": lambda cfg, target, d: MlpNet(cfg.latent_dim, cfg.widths, d, cfg.activation),
    "affine": _affine,
}


def build_generator(cfg, target, d: int):
    return GENERATORS[cfg.name](cfg, target, d)
