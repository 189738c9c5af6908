"""The batched networks and their two registries: ``CRITICS`` and ``GENERATORS`` map a config's
``critic.name`` / ``generator.name`` to a builder ``(cfg, ...) -> network``.

Every network is batched over members (its parameters carry a leading axis B): a critic is
``forward(params, x: (B, M, d)) -> (B, M)``, a generator ``forward(params, z: (B, n, k)) -> (B, n, d)``
with ``latent(stream, n) -> z`` (docs/architecture.md, "add a critic"). Each module of networks lists its own builders; these
registries merge them.
"""

from __future__ import annotations

from typing import Callable

from gandy.core.nets import dcgan, features, mlp
from gandy.core.nets.base import Critic

CRITICS: dict[str, Callable] = {**mlp.CRITICS, **dcgan.CRITICS, **features.CRITICS}
"""``critic.name`` -> builder ``(cfg, d, target, init_sampler) -> Critic``."""

GENERATORS: dict[str, Callable] = {**mlp.GENERATORS, **features.GENERATORS, **dcgan.GENERATORS}
"""``generator.name`` -> builder ``(cfg, target, d) -> generator``."""


def build_critic(cfg, d: int, target, init_sampler) -> Critic:
    """The critic named by ``cfg.name`` for ``d``-dimensional points of ``target``; ``init_sampler(stream, n)``
    draws initial particles (RBF centres are half data, half initial particles)."""
    return CRITICS[cfg.name](cfg, d, target, init_sampler)


def build_generator(cfg, target, d: int):
    """The network generator named by ``cfg.name`` producing ``d``-dimensional points of ``target``."""
    return GENERATORS[cfg.name](cfg, target, d)
