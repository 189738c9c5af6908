"""The whole particle step as one compiled call (``engine: compiled``, low-dimensional particles).

Under the compiled engine a step otherwise makes three compiled calls (the critic's gradients, its
Adam update, the force) and a few dozen eager ops between them (the kernel, the move, the checks),
each call paying dynamo's guards (~0.1 ms) and each op torch's dispatch (a few microseconds on a
CPU): for a lone 1-D member that overhead is nearly the whole step (issue 27). Here one function
does, for every member at once::

    g = d(critic loss)/d(psi) at (real, X)          # torch.func, as the compiled engine
    psi <- Adam(psi, g)                               # gandy.core.optim's formulas
    F = -grad_x l_G(f(X)) (/ N for force: mean)      # from the new critic (alternating) or the old
    X <- X + lr_G K F;  ok = finite and within blowup

and ``torch.compile`` fuses it into a handful of loops. The random draws (the target batch) stay
outside, from gandy's streams, in the same order as :func:`gandy.core.step.critic_update` makes
them, so the numbers agree with the compiled engine's and the eager engine's to rounding
(tests/test_lone.py). It applies where the step is one critic update of a particle mover with the
config's kernel and an Adam critic without dropout, below ``compiled.WIDE`` dimensions (above, the
matrix products dominate and the step's pieces are compiled as before); :func:`applies` says when.
"""

from __future__ import annotations

import dataclasses
import json
import math

import torch
from torch.func import grad, vmap

from gandy.core import closed_form
from gandy.core.compiled import WIDE, CompiledStep, func_input_grad
from gandy.core.optim import _adam_update
from gandy.core.step import Particles, blowup_limit, critic_loss, healthy
from gandy.core.targets import sample_ahead


def applies_to(sim) -> bool:
    """Whether the steps of ``sim`` (after the first) can run as one compiled call under ``engine:
    compiled``: particles moved by the config's kernel (no network generator), one critic step per
    step, an Adam critic without clipping or dropout, fewer than ``compiled.WIDE`` dimensions."""
    return (sim.step.critic_steps == 1 and sim.d < WIDE and sim.generator is None and sim.critic_optim.name == "adam"
            and sim.critic_optim.clip is None and sim.critic.dropout <= 0)


def applies(sim, st, mover) -> bool:
    """Whether :func:`advance` runs this step (:func:`applies_to`, and this step is one critic
    update, ``startup_steps`` at step 0 counted, of the plain particle mover)."""
    steps = sim.step.startup_steps if st.t == 0 and sim.step.startup_steps else sim.step.critic_steps
    return (getattr(sim.engine, "name", None) == "compiled" and applies_to(sim) and steps == 1
            and type(mover) is Particles and mover.kernel is None)


_STEPS: dict = {}
_OF_SIM: dict = {}  # id(sim) -> (sim, trainable, step): the key below costs ~0.1 ms to build


def _step_fn(sim, trainable: tuple):
    """The compiled step for ``sim`` (shared by simulations whose step would be the same function:
    critic, game, penalty, kernel, step and optimiser specs, dimension, device)."""
    known = _OF_SIM.get(id(sim))
    if known is not None and known[0] is sim and known[1] == trainable:
        return known[2]
    key = json.dumps({"critic": dataclasses.asdict(sim.critic_spec), "objective": sim.game.name,
                      "penalty": dataclasses.asdict(sim.penalty_spec), "d": sim.d, "device": str(sim.device),
                      "step": dataclasses.asdict(sim.step), "optim": dataclasses.asdict(sim.critic_optim),
                      "kernel": type(sim.kernel).__name__, "mean": sim.target.mean.tolist(),
                      "scale": float(sim.target.scale), "trainable": trainable}, sort_keys=True, default=repr)
    if key not in _STEPS:
        _STEPS[key] = torch.compile(_particle_step(sim, trainable), dynamic=False)
    _OF_SIM[id(sim)] = (sim, trainable, _STEPS[key])
    return _STEPS[key]


def _particle_step(sim, trainable: tuple):
    """One member's critic loss and force, vmapped, composed with Adam, the move and the checks
    into one function of tensors (compiled by :func:`_step_fn`)."""
    def loss_one(train, frozen, real_i, fake_i, w_i):
        p = {k: v[None] for k, v in {**frozen, **train}.items()}
        return critic_loss(sim, p, real_i[None], fake_i[None], None, w_i[None], grad=func_input_grad)[0]

    def gen_one(p_i, x_i):
        p = {k: v[None] for k, v in p_i.items()}
        return sim.game.gen_loss(sim.critic.forward(p, x_i[None])).sum()

    if closed_form.unsupported(sim) is None:  # hand-derived: the fastest to compile (~3x) and to run
        closed = closed_form.ClosedForm(sim)

        def critic_grads(train, frozen, real, fake, weight):
            return dict(zip(trainable, closed.critic_grads({**frozen, **train}, list(trainable), real, fake, weight)))

        def loss_grad(params, x):
            return closed.loss_grad(params, x)
    else:
        critic_grads = vmap(grad(loss_one))
        loss_grad = vmap(grad(gen_one, argnums=1))
    spec, opt = sim.step, sim.critic_optim
    b1, b2 = opt.betas

    def step(train: dict, frozen: dict, m: list, v: list, vmax, x, real, weight, lr_c, scale, lr_g, g1, g2, limit):
        """``x: (B, N, d)``, ``real: (B, M, d)``; per member ``weight, lr_c, lr_g, g1, g2: (B,)``;
        ``scale``: Adam's 1/bc1 and 1/sqrt(bc2); ``limit``: :func:`blowup_limit`. Returns the new
        trainable tensors (in the order of ``trainable``), the moved ``x``, the force's mean norm
        ``(B,)`` and ``ok: (B,)``."""
        old = {**frozen, **train}
        g = critic_grads(train, frozen, real, x, weight)
        new = _adam_update([train[k] for k in trainable], [g[k] for k in trainable], m, v, lr_c, scale,
                           b1, b2, opt.eps, opt.weight_decay, vmax)
        params = {**frozen, **dict(zip(trainable, new))}
        f = -loss_grad(old if spec.order == "simultaneous" else params, x)
        if spec.force == "mean":
            f = f / x.shape[1]
        moved = x + lr_g[:, None, None] * sim.kernel.apply(f, g1, g2)
        return new, moved, f.norm(dim=-1).mean(-1), healthy(moved, list(params.values()), sim.target.mean, limit)

    return step


def whole_step(sim, st, mover):
    """:func:`advance` where it :func:`applies`, else None (the engine's ``whole_step`` hook of
    :func:`gandy.core.step.advance`)."""
    return advance(sim, st) if applies(sim, st, mover) else None


def with_whole_step(engine: CompiledStep) -> CompiledStep:
    """The compiled engine with its whole-step hook (:func:`whole_step`)."""
    engine.whole_step = whole_step
    return engine


def advance(sim, st) -> torch.Tensor:
    """One step of every member in place (``st.params``, the optimiser's moments, ``st.x``,
    ``st.force_norm``), drawing the target batch from ``st.streams`` as
    :func:`gandy.core.step.critic_update` does. Returns ``ok: (B,)`` (finite and within blowup), for
    :func:`gandy.core.step.advance` to isolate diverged members as after any step."""
    opt = st.opt
    trainable = tuple(k for k in st.params if k not in sim.critic.frozen)
    if sim.step.reset:
        opt.reset_()
    real = sample_ahead(sim.target, st.streams["data"], sim.critic_batch)
    opt.t += 1
    b1, b2 = sim.critic_optim.betas
    scale = torch.tensor([1 / (1 - b1**opt.t), 1 / math.sqrt(1 - b2**opt.t)], device=opt.lr.device)
    mv = st.members
    new, st.x, st.force_norm, ok = _step_fn(sim, trainable)(
        {k: st.params[k] for k in trainable}, {k: v for k, v in st.params.items() if k not in trainable},
        [opt.m[k] for k in trainable], [opt.v[k] for k in trainable],
        [opt.vmax[k] for k in trainable] if opt.amsgrad else None,
        st.x, real, mv.penalty_weight, opt.lr, scale, mv.generator_lr, mv.g1, mv.g2, blowup_limit(sim, st))
    st.params = {**st.params, **dict(zip(trainable, new))}
    return ok
