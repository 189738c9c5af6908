"""The frequency principle as a measurement: batched least-squares fits of a critic to target
functions of rising frequency on an interval, every (frequency, learning rate, seed) one member.

Shapes: ``x: (M,)`` the fitting grid, targets ``(B, M)``, the critic ``(B, M, 1) -> (B, M)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from gandy.core.optim import BatchedOptimizer
from gandy.core.rng import Stream, member_keys
from gandy.core.targets import Target
from gandy.runs.build import critic_of, optim_spec

HALF_WIDTH = 3.0
"""Fits run on [-3, 3]: the collapse-1d target's modes at +-2 and the particles between them."""

BUMP_CENTRE = 1.5


class Interval(Target):
    """Uniform on [-HALF_WIDTH, HALF_WIDTH] in 1-D: where the RBF critics' centres are drawn."""

    dim, modes = 1, None
    mean = torch.zeros(1)
    scale = HALF_WIDTH

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        return (2 * stream.uniform(n, 1) - 1) * HALF_WIDTH


def target_function(family: str, k: float, x: torch.Tensor) -> torch.Tensor:
    """``sin``: sin(k x); ``bumps``: two Gaussian bumps of opposite sign at +-1.5, of width 1/k
    (a witness function that resolves two modes at the length scale 1/k)."""
    if family == "sin":
        return torch.sin(k * x)
    if family == "bumps":
        return torch.exp(-0.5 * (k * (x - BUMP_CENTRE)) ** 2) - torch.exp(-0.5 * (k * (x + BUMP_CENTRE)) ** 2)
    raise ValueError(f"unknown family {family!r}; valid: sin, bumps")


FAMILIES = ("sin", "bumps")


def fit_curves(critic_cfg, optim_cfg, family: str, ks: list, lrs: list, seeds: list, steps: int,
               log_every: int, points: int = 512) -> pd.DataFrame:
    """Learning curves of one critic type: every (k, lr, seed) a member of one batch, fitted by
    ``optim_cfg`` (its lr replaced by the member's) to ``target_function(family, k)`` on ``points``
    evenly spaced points. Members of one seed start from the same critic. Returns one row per
    member and logged step: ``k``, ``lr``, ``seed``, ``step``, ``rel_error`` = |f - g| / |g| (L2 on
    the grid); NaN where the fit blew up."""
    members = list(itertools.product(ks, lrs, seeds))
    x = torch.linspace(-HALF_WIDTH, HALF_WIDTH, points)
    g = torch.stack([target_function(family, float(k), x) for k, _, _ in members])  # (B, M)
    g_norm = g.pow(2).mean(-1).sqrt()
    interval = Interval()
    critic = critic_of(critic_cfg, 1, interval, interval.sample)
    params = critic.init(Stream(member_keys([s for _, _, s in members]), "critic"), len(members))
    trainable = [k for k in params if k not in critic.frozen]
    lr = torch.tensor([float(v) for _, v, _ in members])
    opt = BatchedOptimizer(optim_spec(optim_cfg, "optimiser"), {k: params[k] for k in trainable}, lr)
    xs = x[None, :, None].expand(len(members), -1, -1)
    rows = []
    for t in range(steps + 1):
        train = {k: params[k].detach().requires_grad_(True) for k in trainable}
        f = critic.forward({**params, **train}, xs)
        err = f - g
        if t % log_every == 0 or t == steps:
            rel = (err.detach().pow(2).mean(-1).sqrt() / g_norm).numpy()
            rows.extend({"k": float(k), "lr": float(v), "seed": int(s), "step": t, "rel_error": float(r)}
                        for (k, v, s), r in zip(members, rel))
        if t == steps:
            break
        grads = torch.autograd.grad(err.pow(2).mean(-1).sum(), [train[k] for k in trainable])
        new = opt.step({k: params[k] for k in trainable}, dict(zip(trainable, grads)))
        params = {**params, **{k: v.detach() for k, v in new.items()}}
    out = pd.DataFrame(rows)
    out.loc[~np.isfinite(out.rel_error), "rel_error"] = np.nan
    return out


def fit_times(curves: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (k, lr, seed): ``steps_to_fit``, the first logged step with rel_error <= threshold (NaN
    if never within the budget), and ``final_error``."""
    rows = []
    for (k, lr, seed), t in curves.groupby(["k", "lr", "seed"]):
        t = t.sort_values("step")
        hit = t.step[t.rel_error <= threshold]
        rows.append({"k": k, "lr": lr, "seed": seed, "steps_to_fit": float(hit.iloc[0]) if len(hit) else math.nan,
                     "final_error": float(t.rel_error.iloc[-1])})
    return pd.DataFrame(rows)


def frequency_exponent(times: pd.DataFrame) -> float:
    """The median over (lr, seed) of the slope of log(steps_to_fit) against log k, over the
    frequencies fitted within the budget (at least two): how steeply the time to fit grows with the
    frequency. Frequencies never fitted are left out, so the slope is a lower bound; NaN where no
    (lr, seed) fitted two frequencies."""
    slopes = []
    for _, t in times.dropna(subset=["steps_to_fit"]).groupby(["lr", "seed"]):
        t = t[t.steps_to_fit > 0]
        if t.k.nunique() >= 2:
            slopes.append(float(np.polyfit(np.log(t.k), np.log(t.steps_to_fit), 1)[0]))
    return float(np.median(slopes)) if slopes else math.nan
