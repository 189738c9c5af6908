"""Batched critics D_psi: every member of a batch has its own parameters.

A critic is a pure function ``forward(params, x: (B, M, d)) -> (B, M)`` (the logit f) of a dict of
parameter tensors, each with a leading member axis B. ``init(stream, B)`` draws fresh
parameters; fixed, unlearned parts (RBF centres, random frequencies) live in ``params`` too but are
listed in ``frozen`` so that optimisers leave them alone.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .core.nets.base import ACTIVATIONS, Critic, bmv, image_channels  # noqa: F401 (re-exported)
from .images.nets import DcganCritic


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

    def forward(self, params, x):
        f = bmv(x, params["w"])
        return f + params["c"][:, None] if self.bias else f


def _dcgan(cfg, d, target, init):
    return DcganCritic(image_channels(target, "critic.name"), cfg.width, cfg.norm)


CRITICS: dict[str, Callable] = {
    "mlp": lambda cfg, d, target, init: Mlp(d, cfg.widths, cfg.activation),
    "dcgan": _dcgan,
    "rbf": lambda cfg, d, target, init: Rbf(d, cfg.sigma, cfg.centers, target, init),
    "random_features": lambda cfg, d, target, init: RandomFeatures(d, cfg.features, cfg.sigma),
    "linear": lambda cfg, d, target, init: Linear(d, cfg.bias),
}


def build_critic(cfg, d: int, target, init_sampler) -> Critic:
    return CRITICS[cfg.name](cfg, d, target, init_sampler)
