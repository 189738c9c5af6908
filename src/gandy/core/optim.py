"""Optimisers over batched parameters: every member of a batch steps with its own learning rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from gandy.core.errors import ConfigError

OPTIMISERS = ("sgd", "adam", "rmsprop")
"""The names ``optim.critic.name`` and ``optim.generator.name`` take (torch semantics)."""


@dataclass(frozen=True)
class OptimSpec:
    """An optimiser's settings (``optim.critic`` / ``optim.generator``; the learning rate is per
    member, in :class:`gandy.core.step.MemberValues`): ``name`` one of :data:`OPTIMISERS`; Adam's
    ``betas`` and ``amsgrad``, RMSProp's ``alpha``, both ``eps``; ``weight_decay`` added to the
    gradient; ``clip``: every weight clamped to [-clip, clip] after the step (None: no clipping).
    ``field``: the config section it came from, named by errors."""

    name: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    alpha: float = 0.99
    amsgrad: bool = False
    clip: Optional[float] = None
    field: str = "optim"


FOREACH_BELOW = 1 << 16
"""Adam steps of at most this many numbers (all tensors, all members) run as ``_foreach`` ops
(:meth:`BatchedOptimizer._adam_foreach`): per-op overhead is their cost. Above, the loop writes
into kept scratch buffers (a fresh allocation of a wide critic's size costs more than the pass)."""


class BatchedOptimizer:
    """SGD, Adam or RMSProp (torch semantics: weight decay added to the gradient) over a dict of
    ``(B, ...)`` tensors, with per-member learning rates ``lr: (B,)``; optional clipping of every
    weight to [-clip, clip] after the step (WGAN)."""

    def __init__(self, spec: OptimSpec, params: dict, lr: torch.Tensor, fused: bool = False):
        self.spec, self.lr, self.t, self.fused = spec, lr, 0, fused and spec.name == "adam"
        self.amsgrad = bool(spec.amsgrad)
        self._scratch: dict = {}
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()} if spec.name in ("adam", "rmsprop") else None
        self.vmax = {k: torch.zeros_like(v) for k, v in params.items()} if self.amsgrad else None
        """AMSGrad's running maximum of v (torch's ``max_exp_avg_sq``)."""

    def reset_(self) -> None:
        """Zero the moments and the step count: the state of a freshly created optimiser
        (``optim.critic.reset``)."""
        self.t = 0
        for state in (self.m, self.v or {}, self.vmax or {}):
            for v in state.values():
                v.zero_()

    def step(self, params: dict, grads: dict, create_graph: bool = False) -> dict:
        """New parameters (fresh tensors; ``params`` is not modified) after one step on ``grads``.
        ``create_graph``: the new parameters stay differentiable functions of ``params`` and
        ``grads`` (sgd only: Adam's and RMSProp's moments are updated in place; ConfigError naming
        ``<field>.name`` otherwise).
        The moments are updated in place, with torch's update formulas (``torch.optim.Adam``:
        ``p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)``): about 4x fewer passes over memory than
        writing each formula out, which is what the step costs for wide critics. ``fused`` (Adam
        only; ``engine: compiled``): the whole update of a tensor as one compiled loop, about 7x
        faster again on a 784 x 512 critic (~4 s of compilation per parameter shape)."""
        spec = self.spec
        if create_graph and spec.name != "sgd":
            raise ConfigError(f"{spec.field}.name", f"a differentiable step needs sgd; {spec.name} updates its "
                                                   "moments in place")
        self.t += 1
        new = dict(params)
        if self.fused:  # every tensor in one compiled call (each call costs ~0.1 ms of guards)
            b1, b2 = spec.betas
            keys = list(grads)
            scale = torch.tensor([1 / (1 - b1**self.t), 1 / math.sqrt(1 - b2**self.t)], device=self.lr.device)
            out = _fused_adam()([params[k] for k in keys], [grads[k] for k in keys], [self.m[k] for k in keys],
                                [self.v[k] for k in keys], self.lr, scale, b1, b2, spec.eps, spec.weight_decay,
                                [self.vmax[k] for k in keys] if self.amsgrad else None)
            new.update(zip(keys, out if spec.clip is None else [o.clamp_(-spec.clip, spec.clip) for o in out]))
            return new
        if spec.name == "adam" and not create_graph and self.lr.numel() == 1:
            new.update(self._adam_kernel(params, grads))
            return new
        if spec.name == "adam" and not create_graph and sum(g.numel() for g in grads.values()) <= FOREACH_BELOW:
            new.update(self._adam_foreach(params, grads))
            return new
        for k, g in grads.items():
            p = params[k]
            lr = self.lr.view(-1, *([1] * (p.ndim - 1)))
            if spec.weight_decay:
                g = g.add(p, alpha=spec.weight_decay)
            if spec.name == "sgd":
                new[k] = p - lr * g
            elif spec.name == "rmsprop":
                self.v[k].mul_(spec.alpha).addcmul_(g, g, value=1 - spec.alpha)
                new[k] = p - lr * g / self.v[k].sqrt().add_(spec.eps)
            else:
                b1, b2 = spec.betas
                self.m[k].lerp_(g, 1 - b1)
                self.v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                buf = self._buffer(k, p)
                v = self.v[k]
                if self.amsgrad:  # torch: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq), used in the denominator
                    v = torch.maximum(self.vmax[k], v, out=self.vmax[k])
                torch.sqrt(v, out=buf).div_(math.sqrt(1 - b2**self.t)).add_(spec.eps)
                torch.div(self.m[k], buf, out=buf).mul_(lr / (1 - b1**self.t))
                new[k] = p - buf
            if spec.clip is not None:
                new[k] = new[k].clamp(-spec.clip, spec.clip) if create_graph else new[k].clamp_(-spec.clip, spec.clip)
        return new

    def _adam_kernel(self, params: dict, grads: dict) -> dict:
        """One member (a scalar learning rate): torch's fused Adam kernel, what
        ``torch.optim.Adam(fused=True)`` runs, one op for every tensor, on copies of the parameters
        (``params`` is not modified). torch's formulas: equal to the loop's to rounding (tested),
        not bit for bit; a member alone is not padded to two under ``engine: auto`` only, so the
        reference (``engine: eager``, batches of two or more) keeps the loop."""
        spec, keys = self.spec, list(grads)
        new = [params[k].clone() for k in keys]
        step = torch.tensor(float(self.t), device=self.lr.device)
        # the kernel walks each tensor's memory in order: a transposed gradient (autograd gives
        # some) must be laid out as its parameter first
        torch._fused_adam_(new, [grads[k].contiguous() for k in keys], [self.m[k] for k in keys], [self.v[k] for k in keys],
                           [self.vmax[k] for k in keys] if self.amsgrad else [], [step] * len(keys),
                           amsgrad=self.amsgrad, lr=float(self.lr.reshape(())), beta1=spec.betas[0], beta2=spec.betas[1],
                           weight_decay=spec.weight_decay, eps=spec.eps, maximize=False)
        if spec.clip is not None:
            torch._foreach_clamp_min_(new, -spec.clip)
            torch._foreach_clamp_max_(new, spec.clip)
        return dict(zip(keys, new))

    def _adam_foreach(self, params: dict, grads: dict) -> dict:
        """The Adam step of the loop below for all tensors at once with torch's ``_foreach`` ops: the
        same elementwise operations in the same order (the same numbers, bit for bit: tested), in
        ~10 calls instead of ~9 per tensor, for small critics whose step is per-op overhead."""
        spec, keys = self.spec, list(grads)
        b1, b2 = spec.betas
        ps, gs = [params[k] for k in keys], [grads[k] for k in keys]
        ms, vs = [self.m[k] for k in keys], [self.v[k] for k in keys]
        if spec.weight_decay:
            gs = torch._foreach_add(gs, ps, alpha=spec.weight_decay)
        torch._foreach_lerp_(ms, gs, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        if self.amsgrad:
            vmax = [self.vmax[k] for k in keys]
            torch._foreach_maximum_(vmax, vs)
            vs = vmax
        den = torch._foreach_sqrt(vs)
        torch._foreach_div_(den, math.sqrt(1 - b2**self.t))
        torch._foreach_add_(den, spec.eps)
        step = torch._foreach_div(ms, den)
        lr = self.lr / (1 - b1**self.t)  # (B,): the loop's lr.view(...) / (1 - b1^t), element for element
        torch._foreach_mul_(step, [lr.view(-1, *([1] * (p.ndim - 1))) for p in ps])
        new = torch._foreach_sub(ps, step)
        if spec.clip is not None:
            torch._foreach_clamp_min_(new, -spec.clip)
            torch._foreach_clamp_max_(new, spec.clip)
        return dict(zip(keys, new))

    def _buffer(self, k: str, like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor shaped like ``like``, kept between steps: a fresh allocation of a wide
        critic's size costs more than the arithmetic (page faults), measured 5x an in-place pass."""
        buf = self._scratch.get(k)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._scratch[k] = torch.empty_like(like)
        return buf

    def mask_(self, alive: torch.Tensor) -> None:
        """Zero the state of dead members so that nothing non-finite survives in it."""
        for state in (self.m, self.v or {}, self.vmax or {}):
            for k, v in state.items():
                state[k] = keep_alive(alive, v, 0.0)


def _adam_update(ps: list, gs: list, ms: list, vs: list, lr, scale, b1: float, b2: float, eps: float, wd: float,
                 vmaxs: list | None = None) -> list:
    """One Adam update of every tensor: moments in place, the new parameters returned; ``lr: (B,)``;
    ``scale`` holds 1/bc1 and 1/sqrt(bc2) as a tensor, so that a compiled update is not recompiled
    every step. ``vmaxs``: AMSGrad's running maxima of v (updated in place), or None."""
    out = []
    for i, (p, g, m, v) in enumerate(zip(ps, gs, ms, vs)):
        lr_p = lr.view(-1, *([1] * (p.ndim - 1)))
        if wd:
            g = g + wd * p
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        if vmaxs is not None:
            v = torch.maximum(vmaxs[i], v, out=vmaxs[i])
        out.append(p - (lr_p * scale[0]) * m / (v.sqrt() * scale[1] + eps))
    return out


_COMPILED: dict = {}


def _fused_adam():
    """:func:`_adam_update` compiled once per process (torch.compile specialises it per set of shapes)."""
    if "adam" not in _COMPILED:
        _COMPILED["adam"] = torch.compile(_adam_update, dynamic=False)
    return _COMPILED["adam"]


def keep_alive(alive: torch.Tensor, v: torch.Tensor, other: float) -> torch.Tensor:
    """``v: (B, ...)`` where ``alive: (B,)``, ``other`` for the dead members."""
    return torch.where(alive.view(-1, *([1] * (v.ndim - 1))), v, torch.full_like(v, other))
