"""Network generators for the GAN lab, batched like the critics: every member has its own weights.

A generator is ``forward(params, z: (B, n, k)) -> (B, n, d)`` with ``latent(stream, n) -> z`` and
``init(stream, B) -> params`` (a dict of ``(B, ...)`` tensors). In the loop it replaces the
kernel-coupled particles: its parameters take the gradient that the critic's force
back-propagates, through one of the batched optimisers. ``GENERATORS`` maps config names to
builders.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import config as C
from .core.nets.base import image_channels
from .critics import Mlp
from .rng import Stream
from .targets import Embedded, Segment


class MlpNet(Mlp):
    """G(z) = MLP(z) with z ~ N(0, I): the critics' batched MLP with ``d`` outputs."""

    def __init__(self, latent_dim: int, widths: list[int], d: int, activation: str):
        super().__init__(latent_dim, widths, activation, out=d)
        self.latent_dim = latent_dim

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.normal(n, self.latent_dim)


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


def _dcgan(cfg, target, d: int):
    from .images.nets import DcganGenerator

    return DcganGenerator(cfg.latent_dim, image_channels(target, "generator.name"), cfg.width, cfg.norm)


GENERATORS: dict[str, Callable] = {
    "mlp": lambda cfg, target, d: MlpNet(cfg.latent_dim, cfg.widths, d, cfg.activation),
    "affine": _affine,
    "dcgan": _dcgan,
}


def build_generator(cfg, target, d: int):
    return GENERATORS[cfg.name](cfg, target, d)
