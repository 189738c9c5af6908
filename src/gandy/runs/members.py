"""The per-member keys of a config: which keys may differ between the members of one batch, and
their values as the core's ``(B,)`` tensor bundle (:class:`gandy.core.step.MemberValues`)."""

from __future__ import annotations

import torch

from gandy.core.step import MemberValues

_MISSING = object()

PER_MEMBER = {"kernel.g1": "g1", "kernel.g2": "g2", "optim.critic.lr": "critic_lr",
              "optim.generator.lr": "generator_lr", "penalty.weight": "penalty_weight"}
"""Config keys that may differ between the members of one batch, each the name of its (B,) field of
MemberValues. Every other key (shapes, critic architecture, target, game, steps) is shared by a
batch. A key absent from a config (g1 outside two_number kernels) is not per-member there."""


def get_dotted(cfg, key: str, default=_MISSING):
    """``cfg.a.b`` for ``key = "a.b"``; ``default`` where a part is missing (else AttributeError)."""
    obj = cfg
    for part in key.split("."):
        if default is not _MISSING and not hasattr(obj, part):
            return default
        obj = getattr(obj, part)
    return obj


def per_member_keys(cfg) -> list[str]:
    """The per-member keys this config has (``PER_MEMBER`` keys present in it)."""
    return [k for k in PER_MEMBER if get_dotted(cfg, k, None) is not None]


def member_values(cfgs: list, device) -> MemberValues:
    """The per-member numbers of one batch, member i's from ``cfgs[i]``: each field ``(B,)``
    float32 on ``device``, None where the configs lack the key."""
    def col(key):
        return torch.tensor([float(get_dotted(c, key)) for c in cfgs], dtype=torch.float32, device=device)

    present = per_member_keys(cfgs[0])
    return MemberValues(**{field: col(key) if key in present else None for key, field in PER_MEMBER.items()})
