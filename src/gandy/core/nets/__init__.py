"""The batched networks and their two registries: ``CRITICS`` and ``GENERATORS`` map a config's
``critic.name`` / ``generator.name`` to an entry (:class:`CriticEntry`, :class:`GeneratorEntry`):
its builder, which takes the section's options as keyword arguments, and what others need to know
of it (size, widths, engines).

Every network is batched over members (its parameters carry a leading axis B): a critic is
``forward(params, x: (B, M, d)) -> (B, M)``, a generator ``forward(params, z: (B, n, k)) -> (B, n, d)``
with ``latent(stream, n) -> z`` (docs/architecture.md, "add a critic"). Each module of networks lists its own builders; these
registries merge them.
"""

from __future__ import annotations

from gandy.core.errors import ConfigError
from gandy.core.nets import dcgan, features, mlp
from gandy.core.nets.base import Critic, CriticEntry, GeneratorEntry

CRITICS: dict[str, CriticEntry] = {**mlp.CRITICS, **dcgan.CRITICS, **features.CRITICS}
"""``critic.name`` -> :class:`CriticEntry`."""

GENERATORS: dict[str, GeneratorEntry] = {**mlp.GENERATORS, **features.GENERATORS, **dcgan.GENERATORS}
"""``generator.name`` -> :class:`GeneratorEntry`."""


def critic_entry(name: str) -> CriticEntry:
    """The registry entry of critic ``name``; ConfigError on ``critic.name`` for an unknown one."""
    if name not in CRITICS:
        raise ConfigError("critic.name", f"unknown critic {name!r}; known: {', '.join(CRITICS)}")
    return CRITICS[name]


def generator_entry(name: str) -> GeneratorEntry:
    """The registry entry of generator ``name``; ConfigError on ``generator.name`` for an unknown one."""
    if name not in GENERATORS:
        raise ConfigError("generator.name", f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    return GENERATORS[name]


def build_critic(name: str, d: int, target, init_sampler, **options) -> Critic:
    """The critic ``name`` for ``d``-dimensional points of ``target`` from its ``options`` (the
    critic section's other keys); ``init_sampler(stream, n)`` draws initial particles (RBF centres
    are half data, half initial particles)."""
    return critic_entry(name).build(d, target, init_sampler, **options)


def build_generator(name: str, target, d: int, **options):
    """The network generator ``name`` producing ``d``-dimensional points of ``target`` from its ``options``."""
    return generator_entry(name).build(target, d, **options)
