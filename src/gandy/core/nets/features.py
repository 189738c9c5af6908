"""Critics linear in their learned weights (fixed features: RBF bumps, random Fourier features, the
coordinates themselves) and the affine generator ``G(z) = a z + b``. Shapes as in
:mod:`gandy.core.nets.base`: ``x: (B, M, d)``, outputs ``(B, M)``."""

from __future__ import annotations

import math

import torch

from gandy.core.errors import ConfigError
from gandy.core.nets.base import Critic, CriticEntry, GeneratorEntry, bmv
from gandy.core.rng import Stream
from gandy.core.targets import Embedded, Segment


class Rbf(Critic):
    """f(x) = sum_c a_c exp(-|x - mu_c|^2 / (2 sigma^2)); fixed centres mu (B, C, d), learned a (B, C)."""

    frozen = ("centers",)

    def __init__(self, d: int, sigma: float, n_centers: int, target, init_sampler):
        self.d, self.sigma, self.c = d, sigma, n_centers
        self.target, self.init_sampler = target, init_sampler

    def init(self, stream, b):
        half = self.c // 2
        centres = torch.cat([self.target.sample(stream, half), self.init_sampler(stream, self.c - half)], dim=1)
        return {"centers": centres.contiguous(), "a": torch.zeros(b, self.c, device=centres.device)}

    def parameter_count(self) -> int:
        """Centres ``(C, d)`` and weights ``(C,)`` per member."""
        return self.c * self.d + self.c

    def forward(self, params, x):
        c = params["centers"]
        sq = (x * x).sum(-1, keepdim=True) - 2 * x @ c.transpose(1, 2) + (c * c).sum(-1)[:, None, :]
        return bmv(torch.exp(-sq.clamp_min(0) / (2 * self.sigma**2)), params["a"])


class RandomFeatures(Critic):
    """f(x) = sqrt(2/F) sum_k a_k cos(omega_k . x + phi_k); omega ~ N(0, sigma^-2 I), phi ~ U[0, 2 pi)."""

    frozen = ("omega", "phase")

    def __init__(self, d: int, features: int, sigma: float):
        self.d, self.f, self.sigma = d, features, sigma

    def init(self, stream, b):
        return {
            "omega": stream.normal(self.d, self.f) / self.sigma,
            "phase": 2 * math.pi * stream.uniform(self.f),
            "a": torch.zeros(b, self.f, device=stream.keys.device),
        }

    def parameter_count(self) -> int:
        """Frequencies ``(d, F)``, phases ``(F,)`` and weights ``(F,)`` per member."""
        return self.d * self.f + 2 * self.f

    def forward(self, params, x):
        feats = torch.cos(torch.baddbmm(params["phase"][:, None, :], x, params["omega"]))
        return math.sqrt(2.0 / self.f) * bmv(feats, params["a"])


class Linear(Critic):
    """f(x) = w . x + c, both initialised at zero."""

    def __init__(self, d: int, bias: bool = True):
        self.d, self.bias = d, bias

    def init(self, stream, b):
        dev = stream.keys.device
        p = {"w": torch.zeros(b, self.d, device=dev)}
        if self.bias:
            p["c"] = torch.zeros(b, device=dev)
        return p

    def parameter_count(self) -> int:
        """``w (d,)`` and the bias."""
        return self.d + int(self.bias)

    def forward(self, params, x):
        f = bmv(x, params["w"])
        return f + params["c"][:, None] if self.bias else f


class Affine:
    """G(z) = a z + b with z ~ U[0, 1] (one latent): a segment from b to a + b."""

    latent_dim = 1

    def __init__(self, a0: torch.Tensor, b0: torch.Tensor):
        self.a0, self.b0 = a0, b0

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.uniform(n, 1)

    def init(self, stream: Stream, b: int) -> dict:
        return {"a": self.a0.expand(b, -1).clone(), "b": self.b0.expand(b, -1).clone()}

    def parameter_count(self) -> int:
        """``a (d,)`` and ``b (d,)``."""
        return int(self.a0.numel() + self.b0.numel())

    def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor:
        return z * params["a"][:, None, :] + params["b"][:, None, :]


def _affine(target, d: int, *, init_offset: float = 1.0):
    base, q = (target.base, target.q) if isinstance(target, Embedded) else (target, None)
    if not isinstance(base, Segment):
        raise ConfigError("generator.name", "the affine generator starts beside a segment: use target parallel_lines")
    a, start = base.b - base.a, base.a.clone()
    normal = torch.zeros_like(a)
    normal[int(torch.argmin(a.abs()))] = 1.0  # a coordinate direction orthogonal-ish to the segment
    normal = normal - (normal @ a) / (a @ a) * a
    normal = normal / normal.norm()
    b = start + init_offset * normal
    if q is not None:
        a, b = a @ q.T, b @ q.T
    return Affine(a, b)


CRITICS = {
    "rbf": CriticEntry(build=lambda d, target, init, *, sigma=0.5, centers=64: Rbf(d, sigma, centers, target, init),
                       units=lambda d, *, centers=64, **_: 2 * centers + 1,
                       widths=lambda *, centers=64, **_: (centers,), size="centers", engines=("eager", "compiled")),
    "random_features": CriticEntry(
        build=lambda d, target, init, *, features=256, sigma=1.0: RandomFeatures(d, features, sigma),
        units=lambda d, *, features=256, **_: 2 * features + 1,
        widths=lambda *, features=256, **_: (features,), size="features", engines=("eager", "compiled")),
    "linear": CriticEntry(build=lambda d, target, init, *, bias=True: Linear(d, bias),
                          units=lambda d, **_: 1,  # the logit alone
                          widths=lambda **_: (8,),  # the planner's nominal MLP size (its value before #25)
                          size=None,
                          engines=("eager", "compiled")),
}
GENERATORS = {"affine": GeneratorEntry(build=_affine, units=lambda d, **_: d, size=None)}
