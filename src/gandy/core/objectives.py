"""Games and gradient penalties as pure functions of tensors. One registry each.

Conventions (f is the critic's logit, D = sigmoid(f) for the cross-entropy games):

* ``Game.critic_loss(f_real: (B, M), f_fake: (B, N)) -> (B,)`` is what the critic *minimises*.
* ``Game.gen_loss(f_fake: (B, N)) -> (B, N)`` is the per-sample generator loss l_G(f(x_j)); the
  force on particle j is F_j = -grad_x l_G(f(x))|_{x_j}.

A penalty is ``penalty(forward, params, real, fake, stream, spec) -> (B,)`` with ``spec`` a
:class:`PenaltySpec`; the loop adds ``weight * penalty`` to the critic loss (the weight is per
member). ``forward(params, x: (B, M, d)) -> (B, M)``. ``PENALTIES`` maps each name to a
:class:`Penalty`: the function and the engines that run it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as Fn

from gandy.core.nets.base import ACTIVATION_DERIVATIVES

Tensor = torch.Tensor


@dataclass(frozen=True)
class Game:
    """A two-player objective: ``critic_loss`` (minimised by the critic) and ``gen_loss`` per sample.

    Fedus et al.'s named games carry their regulariser: ``penalty`` (a PENALTIES name) with
    ``penalty_weight`` (lambda = 10), or ``clip`` (WGAN's weight clipping to [-c, c]).
    """

    name: str
    critic_loss: Callable[[Tensor, Tensor], Tensor]
    gen_loss: Callable[[Tensor], Tensor]
    formula: str
    penalty: Optional[str] = None
    penalty_weight: float = 0.0
    clip: Optional[float] = None
    critic_dloss: Optional[Callable[[Tensor, Tensor], tuple]] = None
    """``(f_real: (B, M), f_fake: (B, N)) -> (dL/df_real, dL/df_fake)`` of ``critic_loss`` by hand
    (None: the closed-form engine takes it by autograd; tests/test_objectives.py checks each one)."""
    gen_dloss: Optional[Callable[[Tensor], Tensor]] = None
    """``f_fake: (B, N) -> dl_G/df`` per sample by hand (None: by autograd)."""


def _ce_critic(fr, ff):
    # -E_P log D(x) - E_Q log(1 - D(x)) = softplus(-f_real) + softplus(f_fake)
    return Fn.softplus(-fr).mean(-1) + Fn.softplus(ff).mean(-1)


def _ipm_critic(fr, ff):
    return ff.mean(-1) - fr.mean(-1)


def _ce_dcritic(fr, ff):
    # d softplus(u)/du = sigmoid(u); each mean divides by its batch
    return -torch.sigmoid(-fr) / fr.shape[-1], torch.sigmoid(ff) / ff.shape[-1]


def _ipm_dcritic(fr, ff):
    return torch.full_like(fr, -1.0 / fr.shape[-1]), torch.full_like(ff, 1.0 / ff.shape[-1])


def _minus_one(ff):
    return torch.full_like(ff, -1.0)


_step = ACTIVATION_DERIVATIVES["relu"][0]  # d relu(u)/du as autograd takes it: 1 where u > 0, 0 at the kink


GAMES: dict[str, Game] = {
    "ipm": Game("ipm", _ipm_critic, lambda ff: -ff,
                "critic maximises E_P f - E_Q f; l_G = -f (particles ascend f)",
                critic_dloss=_ipm_dcritic, gen_dloss=_minus_one),
    "mm": Game("mm", _ce_critic, lambda ff: -Fn.softplus(ff),
               "J_D = softplus(-f(x)) + softplus(f(G z)); l_G = log(1 - D) = -softplus(f)",
               critic_dloss=_ce_dcritic, gen_dloss=lambda ff: -torch.sigmoid(ff)),
    "ns": Game("ns", _ce_critic, lambda ff: Fn.softplus(-ff),
               "J_D as mm; l_G = -log D = softplus(-f)",
               critic_dloss=_ce_dcritic, gen_dloss=lambda ff: -torch.sigmoid(-ff)),
    "ls": Game("ls", lambda fr, ff: 0.5 * ((fr - 1) ** 2).mean(-1) + 0.5 * (ff**2).mean(-1),
               lambda ff: 0.5 * (ff - 1) ** 2,
               "least squares: J_D = 1/2 (f(x) - 1)^2 + 1/2 f(G z)^2; l_G = 1/2 (f - 1)^2",
               critic_dloss=lambda fr, ff: ((fr - 1) / fr.shape[-1], ff / ff.shape[-1]), gen_dloss=lambda ff: ff - 1),
    "hinge": Game("hinge", lambda fr, ff: Fn.relu(1 - fr).mean(-1) + Fn.relu(1 + ff).mean(-1),
                  lambda ff: -ff,
                  "J_D = relu(1 - f(x)) + relu(1 + f(G z)); l_G = -f",
                  critic_dloss=lambda fr, ff: (-_step(1 - fr) / fr.shape[-1], _step(1 + ff) / ff.shape[-1]),
                  gen_dloss=_minus_one),
}
# Fedus et al. (2018), docs/model.md, "Games": the base games with their regularisers
GAMES.update({
    "wgan": replace(GAMES["ipm"], name="wgan", clip=0.01,
                    formula="critic maximises E_P f - E_Q f, weights clipped to [-c, c] (c = 0.01); l_G = -f"),
    "wgan_gp": replace(GAMES["ipm"], name="wgan_gp", penalty="wgan_gp", penalty_weight=10.0,
                       formula="ipm + lambda E (|grad f(x_hat)| - 1)^2 on interpolates (lambda = 10); l_G = -f"),
    "gan_gp": replace(GAMES["ns"], name="gan_gp", penalty="wgan_gp", penalty_weight=10.0,
                      formula="ns + the WGAN-GP penalty (lambda = 10)"),
    "dragan": replace(GAMES["mm"], name="dragan", penalty="dragan", penalty_weight=10.0,
                      formula="mm + the DRAGAN penalty near the data (lambda = 10)"),
    "dragan_ns": replace(GAMES["ns"], name="dragan_ns", penalty="dragan", penalty_weight=10.0,
                         formula="ns + the DRAGAN penalty near the data (lambda = 10)"),
})


# ----------------------------------------------------------------------------- penalties
@dataclass(frozen=True)
class PenaltySpec:
    """A penalty's settings other than its (per-member) weight: ``name`` (a PENALTIES key); ``on``
    the logit or the probability sigmoid(f) whose input gradient is penalised; ``reduce``
    (squared-gradient penalties) ``per_point`` or ``batch_mean``; DRAGAN's ``perturbation``
    (gaussian | uniform) and its ``scale``."""

    name: str = "none"
    on: str = "logit"
    reduce: str = "per_point"
    perturbation: str = "gaussian"
    scale: float = 0.5


def input_grad(forward, params, x: Tensor, on: str = "logit") -> Tensor:
    """grad_x of f (or sigmoid f) at every point, ``(B, M, d)``, differentiable w.r.t. params.
    A penalty's ``grad`` argument replaces it (the compiled engine passes
    :func:`gandy.core.compiled.func_input_grad`, the same derivative by torch.func). The points
    are detached: the gradient is a function of ``params`` alone (see :func:`graph_input_grad`)."""
    x = x.detach().requires_grad_(True)
    f = forward(params, x)
    if on == "probability":
        f = torch.sigmoid(f)
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    return g


def graph_input_grad(forward, params, x: Tensor, on: str = "logit") -> Tensor:
    """:func:`input_grad` that keeps the points in the graph where they require grad: the
    penalty's gradient then depends on them too (a differentiable critic step,
    :func:`gandy.core.step.critic_update` with ``create_graph``)."""
    if not x.requires_grad:
        return input_grad(forward, params, x, on)
    xc = x.clone()  # the partial derivative at fixed params, even where params depend on x
    f = forward(params, xc)
    if on == "probability":
        f = torch.sigmoid(f)
    (g,) = torch.autograd.grad(f.sum(), xc, create_graph=True)
    return g


def _sq_norm(g):
    return (g * g).sum(-1)


def _unit_gap(g):
    # (|g| - 1)^2 with a gradient that stays finite at g = 0
    return (torch.sqrt(_sq_norm(g) + 1e-12) - 1.0) ** 2


def reduced_grad(forward, params, x: Tensor, spec: PenaltySpec, grad=None) -> Tensor:
    """The input gradient a squared-gradient penalty squares, ``(B, n, d)``: of f at each point
    (``penalty.reduce: per_point``), or of the batch's mean output (1/n) sum_j f(x_j), which is
    grad f(x_i) / n (``batch_mean``, the authors' code base: ``grad(outputs=Eq_f, inputs=x_q)``)."""
    g = (grad or input_grad)(forward, params, x, spec.on)
    return g / x.shape[1] if spec.reduce == "batch_mean" else g


def sobolev(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    """E_Q |grad f|^2 - 1 (Durr et al.'s Sobolev/Fisher constraint, on the generated points)."""
    return _sq_norm(reduced_grad(forward, params, fake, spec, grad)).mean(-1) - 1.0


def wgan_gp(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    """E (|grad f(x_hat)| - 1)^2, x_hat = eps x_real + (1 - eps) x_fake, one eps ~ U[0,1] per pair.

    Fake point j is paired with real sample j mod M.
    """
    n = fake.shape[1]
    idx = torch.arange(n, device=fake.device) % real.shape[1]
    eps = stream.uniform(n, 1).to(fake.device)
    x_hat = eps * real[:, idx] + (1 - eps) * fake
    return _unit_gap((grad or input_grad)(forward, params, x_hat, spec.on)).mean(-1)


def r1(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    """1/2 E_P |grad f|^2 (Mescheder et al. 2018)."""
    return 0.5 * _sq_norm(reduced_grad(forward, params, real, spec, grad)).mean(-1)


def r2(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    """1/2 E_Q |grad f|^2."""
    return 0.5 * _sq_norm(reduced_grad(forward, params, fake, spec, grad)).mean(-1)


def dragan(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    """E (|grad f(x + delta)| - 1)^2 near the data.

    ``perturbation: gaussian``: delta ~ N(0, scale^2 I); ``uniform``: delta = scale * std(x) * U[0,1)
    per coordinate, std (ddof 0) over the member's real batch (the DRAGAN authors' numpy code).
    """
    b, m, d = real.shape
    if spec.perturbation == "gaussian":
        delta = spec.scale * stream.normal(m, d).to(real.device)
    else:
        std = real.reshape(b, -1).std(-1, correction=0)[:, None, None]  # numpy's x.std()
        delta = spec.scale * std * stream.uniform(m, d).to(real.device)
    return _unit_gap((grad or input_grad)(forward, params, real + delta, spec.on)).mean(-1)


def no_penalty(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
    return torch.zeros(real.shape[0], device=real.device)


ENGINES = ("eager", "compiled", "closed_form")
"""The engines that take a step's gradients (``engine``; :mod:`gandy.core.compiled`,
:mod:`gandy.core.closed_form`)."""


@dataclass(frozen=True)
class Penalty:
    """A registry entry: the penalty ``function`` (called through the entry) and the ``engines``
    that run it. The compiled engine draws no random numbers inside its compiled function (so not
    wgan_gp's interpolates or dragan's perturbations); the closed form differentiates squared
    gradients only (:data:`SQUARED_GRADIENT`)."""

    function: Callable
    engines: tuple[str, ...]

    def __call__(self, forward, params, real: Tensor, fake: Tensor, stream, spec: PenaltySpec, grad=None) -> Tensor:
        return self.function(forward, params, real, fake, stream, spec, grad=grad)


PENALTIES: dict[str, Penalty] = {
    "none": Penalty(no_penalty, ENGINES),
    "sobolev": Penalty(sobolev, ENGINES),
    "wgan_gp": Penalty(wgan_gp, ("eager",)),
    "r1": Penalty(r1, ENGINES),
    "r2": Penalty(r2, ENGINES),
    "dragan": Penalty(dragan, ("eager",)),
}

SQUARED_GRADIENT: dict[str, tuple[str, float]] = {"sobolev": ("fake", 1.0), "r1": ("real", 0.5), "r2": ("fake", 0.5)}
"""Penalties of the form ``coef * mean_i |grad f(x_i)|^2`` (plus a constant) over one side's
points, ``name -> (side, coef)``: what :mod:`gandy.core.closed_form` differentiates by hand
(tested against each penalty's function). With ``penalty.reduce: batch_mean`` the coefficient
is divided by n^2 for n penalised points (:func:`reduced_grad`)."""

LINEAR_FRICTION: dict[str, float] = {"none": 0.0, "sobolev": 2.0, "r1": 1.0, "r2": 1.0}
"""The friction a penalty adds for a linear critic f(x) = w.x: d(penalty)/dw = LINEAR_FRICTION * w
(docs/model.md, "Critical damping"). wgan_gp and dragan have none: (|w| - 1)^2 has its minimum at
|w| = 1, not at the game's equilibrium w = 0, so the damping study has no linear theory for them."""
