"""Optimisers over batched parameters: every member of a batch steps with its own learning rate."""

from __future__ import annotations

import torch

OPTIMISERS = ("sgd", "adam", "rmsprop")
"""The names ``optim.critic.name`` and ``optim.generator.name`` take (torch semantics)."""


class BatchedOptimizer:
    """SGD, Adam or RMSProp (torch semantics: weight decay added to the gradient) over a dict of
    ``(B, ...)`` tensors, with per-member learning rates ``lr: (B,)``; optional clipping of every
    weight to [-clip, clip] after the step (WGAN)."""

    def __init__(self, cfg, params: dict, lr: torch.Tensor):
        self.cfg, self.lr, self.t = cfg, lr, 0
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()} if cfg.name in ("adam", "rmsprop") else None

    def step(self, params: dict, grads: dict) -> dict:
        cfg = self.cfg
        self.t += 1
        new = dict(params)
        for k, g in grads.items():
            p = params[k]
            lr = self.lr.view(-1, *([1] * (p.ndim - 1)))
            if cfg.weight_decay:
                g = g + cfg.weight_decay * p
            if cfg.name == "sgd":
                new[k] = p - lr * g
            elif cfg.name == "rmsprop":
                self.v[k] = cfg.alpha * self.v[k] + (1 - cfg.alpha) * g * g
                new[k] = p - lr * g / (self.v[k].sqrt() + cfg.eps)
            else:
                b1, b2 = cfg.betas
                self.m[k] = b1 * self.m[k] + (1 - b1) * g
                self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
                mh = self.m[k] / (1 - b1**self.t)
                vh = self.v[k] / (1 - b2**self.t)
                new[k] = p - lr * mh / (vh.sqrt() + cfg.eps)
            if cfg.clip is not None:
                new[k] = new[k].clamp(-cfg.clip, cfg.clip)
        return new

    def mask_(self, alive: torch.Tensor) -> None:
        """Zero the state of dead members so that nothing non-finite survives in it."""
        for state in (self.m, self.v or {}):
            for k, v in state.items():
                state[k] = keep_alive(alive, v, 0.0)


def keep_alive(alive: torch.Tensor, v: torch.Tensor, other: float) -> torch.Tensor:
    """``v: (B, ...)`` where ``alive: (B,)``, ``other`` for the dead members."""
    return torch.where(alive.view(-1, *([1] * (v.ndim - 1))), v, torch.full_like(v, other))
