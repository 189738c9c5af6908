"""The batched multilayer perceptron: a critic ``(B, M, d) -> (B, M)`` and, with ``out`` outputs,
the MLP generator ``G(z) = MLP(z)``, ``(B, n, k) -> (B, n, d)`` with ``z ~ N(0, I)``."""

from __future__ import annotations

import math
from typing import Optional

import torch

from gandy.core.nets.base import ACTIVATION_DERIVATIVES, ACTIVATIONS, Critic, CriticEntry, GeneratorEntry, bmv
from gandy.core.rng import Stream


class Mlp(Critic):
    """f(x) = w_L . act(... act(x W_1 + b_1) ...) + b_L; PyTorch's default uniform init.

    The critic returns ``(B, M)``; with ``out`` set it is a vector-valued network
    ``(B, M, k) -> (B, M, out)`` (the MLP generator). ``dropout`` p: in training (a ``mask`` passed
    to ``forward``) the activations of hidden layer ``drop_layer`` (the second, or the only one, as
    in the authors' code base's ``D_mlp``) are multiplied by a mask of 0 and 1/(1 - p).
    """

    def __init__(self, d: int, widths: list[int], activation: str = "relu", out: Optional[int] = None,
                 dropout: float = 0.0):
        self.dims = [d, *widths, out or 1]
        self.scalar = out is None
        self.activation, self.act = activation, ACTIVATIONS[activation]
        self.dropout = float(dropout)
        self.drop_layer = min(1, len(widths) - 1)

    def mask(self, stream: Stream, n: int) -> Optional[torch.Tensor]:
        """A training mask for ``n`` points, ``(B, n, width)`` of 0 and 1/(1 - p) (None without dropout)."""
        if self.dropout <= 0:
            return None
        keep = stream.above(self.dropout, n, self.dims[self.drop_layer + 1])  # = uniform >= p
        # one pass (not a cast and a product: the same float32 numbers, half the passes over a mask of
        # B x n x width, which a 784-D critic step draws twice)
        return torch.where(keep, 1.0 / (1.0 - self.dropout), 0.0)

    def init(self, stream, b):
        p = {}
        for i, (fi, fo) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            bound = 1.0 / math.sqrt(fi)
            p[f"w{i}"] = (2 * stream.uniform(fi, fo) - 1) * bound  # (B, in, out)
            p[f"b{i}"] = (2 * stream.uniform(fo) - 1) * bound  # (B, out)
        return p

    def parameter_count(self) -> int:
        """Weights and biases per member: sum over layers of ``in * out + out``."""
        return sum(fi * fo + fo for fi, fo in zip(self.dims[:-1], self.dims[1:]))

    def forward(self, params, x, mask: Optional[torch.Tensor] = None):
        h = x
        n = len(self.dims) - 1
        for i in range(n - 1):
            h = self.act(torch.baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"]))
            if mask is not None and i == self.drop_layer:
                h = h * mask.to(h)
        if self.scalar:
            return bmv(h, params[f"w{n - 1}"][..., 0]) + params[f"b{n - 1}"]
        return torch.baddbmm(params[f"b{n - 1}"][:, None, :], h, params[f"w{n - 1}"])


class MlpNet(Mlp):
    """G(z) = MLP(z) with z ~ N(0, I): the critics' batched MLP with ``d`` outputs."""

    def __init__(self, latent_dim: int, widths: list[int], d: int, activation: str):
        super().__init__(latent_dim, widths, activation, out=d)
        self.latent_dim = latent_dim

    def forward_saved(self, params: dict, z: torch.Tensor) -> tuple:
        """``G(z): (B, n, d)`` for ``z: (B, n, k)`` and what :meth:`vjp` needs: the layers' inputs
        ``h_0 = z, h_1, ...`` and the activations' derivatives s'(pre-activation), ``(B, n, width)``
        each. The same numbers as :meth:`forward`."""
        d1 = ACTIVATION_DERIVATIVES[self.activation][0]
        hs, ds, h = [z], [], z
        last = len(self.dims) - 2
        for i in range(last):
            pre = torch.baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"])
            h = self.act(pre)
            hs.append(h)
            ds.append(d1(pre))
        return torch.baddbmm(params[f"b{last}"][:, None, :], h, params[f"w{last}"]), (hs, ds)

    def vjp(self, params: dict, saved: tuple, upstream: torch.Tensor) -> dict:
        """sum over points of ``upstream . dG/dparams`` by hand (backpropagation, no autograd graph:
        a lone member's generator step pays ~0.3 ms for autograd's engine), for ``upstream: (B, n, d)``
        and ``saved`` from :meth:`forward_saved`: ``{name: (B, ...)}``, every parameter.
        delta_last = upstream, delta_(l-1) = (delta_l W_l^T) * s'(pre_(l-1)); dW_l = h_l^T delta_l,
        db_l = sum_j delta_l,j (tests/test_engines.py checks it against autograd)."""
        hs, ds = saved
        grads, delta = {}, upstream
        for i in range(len(self.dims) - 2, -1, -1):
            grads[f"w{i}"] = torch.bmm(hs[i].transpose(1, 2), delta)
            grads[f"b{i}"] = delta.sum(1)
            if i > 0:
                delta = torch.bmm(delta, params[f"w{i}"].transpose(1, 2)) * ds[i - 1]
        return grads

    def latent(self, stream: Stream, n: int) -> torch.Tensor:
        return stream.normal_ahead(n, self.latent_dim)  # stream.normal's numbers, small draws made ahead


CRITICS = {"mlp": CriticEntry(
    build=lambda d, target, init, *, widths=(256,), activation="relu", dropout=0.0: Mlp(d, list(widths), activation,
                                                                                         dropout=dropout),
    units=lambda d, *, widths=(256,), **_: sum(widths) + 1,
    widths=lambda *, widths=(256,), **_: tuple(widths), size="widths")}
GENERATORS = {"mlp": GeneratorEntry(
    build=lambda target, d, *, latent_dim=2, widths=(128, 128), activation="relu": MlpNet(latent_dim, list(widths), d,
                                                                                           activation),
    units=lambda d, *, widths=(128, 128), **_: 2 * sum(widths) + d, size="widths")}
