"""What every batched network shares: activations, the member-safe batched product, the critic
protocol and the image-channel check.

A critic is a pure function ``forward(params, x: (B, M, d)) -> (B, M)`` (the logit f) of a dict of
parameter tensors, each with a leading member axis B; ``init(stream, B)`` draws fresh parameters,
and names in ``frozen`` (fixed random features, centres) are left alone by the optimisers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as Fn

from gandy.core.errors import ConfigError
from gandy.core.rng import Stream

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": lambda x: Fn.leaky_relu(x, 0.2),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": Fn.gelu,
    "sin": torch.sin,
}

_SQRT_2PI = 2.5066282746310002


def _gelu_d1(z):
    return 0.5 * (1 + torch.erf(z / 1.4142135623730951)) + z * torch.exp(-0.5 * z * z) / _SQRT_2PI


def _gelu_d2(z):
    return (2 - z * z) * torch.exp(-0.5 * z * z) / _SQRT_2PI


ACTIVATION_DERIVATIVES: dict[str, tuple[Callable, Callable | None]] = {
    # 1 where z > 0, else 0, as sign(relu(z)): two float passes, ~6x cheaper than (z > 0).to(z.dtype),
    # whose bool-to-float cast dominates (~190 us against ~30 at 512 x 128, 1 thread)
    "relu": (lambda z: torch.sign(torch.relu(z)), None),
    "leaky_relu": (lambda z: 0.2 + 0.8 * torch.sign(torch.relu(z)), None),
    "tanh": (lambda z: 1 - torch.tanh(z) ** 2, lambda z: -2 * torch.tanh(z) * (1 - torch.tanh(z) ** 2)),
    "sigmoid": (lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
                lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)) * (1 - 2 * torch.sigmoid(z))),
    "gelu": (_gelu_d1, _gelu_d2),
    "sin": (torch.cos, lambda z: -torch.sin(z)),
}
"""Each activation's first and second derivatives (None: zero almost everywhere, piecewise-linear
activations), for the closed-form gradients of :mod:`gandy.core.closed_form`; same keys as
ACTIVATIONS (tested against autograd)."""


def bmv(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product ``h: (B, M, k)``, ``w: (B, k)`` -> ``(B, M)``.

    Written as a product and a sum rather than ``bmm(h, w[..., None])``: torch sends a
    one-member bmm with one output column down another kernel, whose rounding differs, so a seed
    alone would not reproduce the same seed inside a batch bit for bit.
    """
    return (h * w[:, None, :]).sum(-1)


class Critic:
    frozen: tuple[str, ...] = ()
    dropout: float = 0.0
    """Dropout probability in training (MLP critics; the others have none)."""

    def mask(self, stream: Stream, n: int) -> Optional[torch.Tensor]:
        """A training (dropout) mask for ``n`` points, passed to ``forward(..., mask=)``; None without dropout."""
        return None

    def init(self, stream: Stream, b: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def parameter_count(self) -> int:
        """Numbers per member in what ``init`` returns (learned and fixed), from the shapes alone:
        the memory estimate asks this before anything is allocated."""
        raise NotImplementedError

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def image_channels(target, field: str) -> int:
    """Channels of an image target; a ConfigError naming ``field`` for any other target."""
    shape = target.image_shape
    if shape is None:
        raise ConfigError(field, "dcgan networks need an image target (mnist, color_mnist or images)")
    return shape[0]


ENGINES_ALL = ("eager", "compiled", "closed_form")


@dataclass(frozen=True)
class CriticEntry:
    """A critic's registry entry: what builds it and what the rest of gandy needs to know of it
    without building it. Every callable takes the critic section's options (its keys other than
    ``name``) as keyword arguments.

    * ``build(d, target, init_sampler, **options) -> Critic`` for ``d``-dimensional points of
      ``target``; ``init_sampler(stream, n)`` draws initial particles (RBF centres);
    * ``units(d, **options) -> int``: activation values per input point in one forward (hidden
      units, feature maps), what the memory estimate (:mod:`gandy.runs.budget`) multiplies;
    * ``widths(**options) -> tuple``: the hidden sizes of the MLP the batch planner's memory and
      speed model (:func:`gandy.runs.build.eager_seconds`, the sweep's chunk sizes) treats it as;
    * ``size``: the option that sets its size (what a memory refusal names), None where none does;
    * ``engines``: the engines that can run it (the closed form further needs one hidden layer);
    * ``cpu_chunk``: the most members an auto chunk takes on a CPU, where batching members is
      measured to buy nothing (None: the planner's speed model decides). Not 1: a sweep pads a
      chunk of one member to two (:func:`gandy.runs.loop.simulate`), so a chunk of two costs the
      same and trains two.
    """

    build: Callable[..., Critic]
    units: Callable[..., int]
    widths: Callable[..., tuple]
    size: Optional[str]
    engines: tuple[str, ...] = ENGINES_ALL
    cpu_chunk: Optional[int] = None


@dataclass(frozen=True)
class GeneratorEntry:
    """A network generator's registry entry: ``build(target, d, **options)`` (the generator
    section's options as keywords), ``units(d, **options)``, activation values per generated
    point in one forward (the memory estimate), and ``size``, the option that sets its size (None
    where none does). Network generators run with ``engine: eager``."""

    build: Callable
    units: Callable[..., int]
    size: Optional[str]
    engines: tuple[str, ...] = ("eager",)
