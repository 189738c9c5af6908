"""``engine: compiled``: the two autograd-heavy parts of a step, the critic's parameter gradients
(with the penalty's nested gradient) and the particles' force, written for one member with
torch.func (``grad``, ``vmap`` over members) and compiled with ``torch.compile`` (for wide inputs,
the compiled closed form instead; see ``WIDE``), and the critic's Adam step fused.

Everything else (random draws from gandy's counter-based streams, the kernel and the isolation of
diverged members) stays in :func:`gandy.core.step.advance`, and the optimiser keeps its formulas
(fused into one compiled call, ``fuse``), so every engine draws the same numbers and stores the
same state. One member's functions are the batched ones at a
batch of one: the critic, the game and the penalty are not written twice. The numbers agree with
the eager engine to rounding, not bit for bit (tests/test_step.py, tests/test_engines.py); a compile costs ~10 s per
shape (members, particles, batch), paid once per chunk.
"""

from __future__ import annotations

import dataclasses
import json

import torch
import torch._dynamo
from torch.func import grad, vmap

from gandy.core import closed_form
from gandy.core.errors import ConfigError
from gandy.core.objectives import PENALTIES
from gandy.core.rng import compile_large_draws
from gandy.core.step import Simulation, critic_loss

torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
"""A compiled function meets a few shapes per run (balanced chunks: two batch sizes; the optimiser:
one per parameter shape); above dynamo's default of 8 it would fall back to eager silently."""

WIDE = 64
"""From this input dimension on, and where it applies, the compiled engine compiles the closed form
(:mod:`gandy.core.closed_form`) instead of torch.func's vmap(grad): matrix products dominate
there, and the closed form does the fewest (784-D: 13.3 ms per member-step against 19.5 ms)."""

def func_input_grad(forward, params, x: torch.Tensor, on: str = "logit") -> torch.Tensor:
    """grad_x of f (or sigmoid f) at every point, by torch.func (composes with grad and vmap)."""
    def total(xx):
        f = forward(params, xx)
        return (torch.sigmoid(f) if on == "probability" else f).sum()

    return grad(total)(x)


def compiles_closed_form(sim: Simulation) -> bool:
    """Whether the compiled engine compiles the closed form for ``sim`` (wide inputs it runs, see
    :data:`WIDE`) rather than torch.func's vmap(grad)."""
    return sim.d >= WIDE and closed_form.unsupported(sim) is None


def unsupported(sim: Simulation) -> str | None:
    """Why the compiled engine cannot run ``sim`` (None: it can)."""
    if sim.generator is not None:
        return "the compiled engine moves particles; a network generator runs with engine: eager"
    if "compiled" not in sim.penalty.engines:
        supported = [k for k, p in PENALTIES.items() if "compiled" in p.engines]
        return (f"the compiled engine supports penalties {', '.join(supported)}; "
                f"{sim.penalty_spec.name} runs with engine: eager")
    return None


def check(sim: Simulation) -> None:
    """Refuse, with the field named, a config the compiled engine does not run."""
    why = unsupported(sim)
    if why:
        raise ConfigError("engine", why)


_STEPS: dict[str, "CompiledStep"] = {}


def compiled_step(sim: Simulation) -> "CompiledStep":
    """The :class:`CompiledStep` for ``sim``, shared by every simulation whose compiled functions
    would be the same (critic, game, penalty other than its weight, dimension, device): torch.compile
    caches per function object, so a sweep's chunks compile once per batch shape, not once each
    (and never run into dynamo's recompile limit, past which it falls back to eager silently)."""
    check(sim)
    key = json.dumps({"critic": dataclasses.asdict(sim.critic_spec), "objective": sim.game.name,
                      "penalty": dataclasses.asdict(sim.penalty_spec), "d": sim.d, "device": str(sim.device),
                      "matmul": sim.step.matmul},
                     sort_keys=True, default=repr)
    if key not in _STEPS:
        _STEPS[key] = CompiledStep(sim)
    return _STEPS[key]


class CompiledStep:
    """The critic's gradients and the force's gradient for a built simulation; ``critic_grads`` and
    ``loss_grad`` take and return the batched ``(B, ...)`` tensors of :mod:`gandy.core.step`."""

    name = "compiled"
    fuse = True
    """The critic's optimiser step is compiled too (:class:`gandy.core.optim.BatchedOptimizer`)."""

    def __init__(self, sim: Simulation):
        check(sim)
        self.sim = sim
        if sim.critic.dropout > 0:
            compile_large_draws()  # the masks: 2 x B x n x width numbers per critic step
        self._grads, self._force, self._trainable = None, None, None
        if compiles_closed_form(sim):
            closed = closed_form.ClosedForm(sim)
            self.critic_grads = torch.compile(closed.critic_grads, dynamic=False)
            self.loss_grad = torch.compile(closed.loss_grad, dynamic=False)

    def _one(self, params: dict, *xs):
        """One member's tensors as a batch of one, for the batched critic, game and penalty."""
        return {k: v[None] for k, v in params.items()}, *(x[None] for x in xs)

    def critic_grads(self, params: dict, trainable: list, real: torch.Tensor, fake: torch.Tensor,
                     weight: torch.Tensor, masks: tuple = (None, None)) -> list:
        """d(critic loss)/d(trainable parameters) of every member, in the order of ``trainable``;
        ``masks``: the dropout masks of the real and generated points (both None, or both tensors
        drawn outside, from gandy's streams, and passed in)."""
        sim = self.sim
        if self._grads is None or self._trainable != trainable:
            def loss_one(train, frozen, real_i, fake_i, w_i, *masks_i):
                p, r, f, w = self._one({**frozen, **train}, real_i, fake_i, w_i)
                m = tuple(x[None] for x in masks_i) if masks_i else (None, None)
                return critic_loss(sim, p, r, f, None, w, grad=func_input_grad, masks=m)[0]

            self._trainable = list(trainable)
            self._grads = torch.compile(vmap(grad(loss_one)), dynamic=False)
        frozen = {k: v for k, v in params.items() if k not in trainable}
        extra = () if masks[0] is None else masks
        g = self._grads({k: params[k].detach() for k in trainable}, frozen, real, fake.detach(), weight, *extra)
        return [g[k] for k in trainable]

    def loss_grad(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """grad_x l_G(f(x)) per particle, ``(B, N, d)`` (the force is its negative, scaled by
        :func:`gandy.core.step.particle_force`)."""
        sim = self.sim
        if self._force is None:
            def gen_one(p_i, x_i):
                p, xx = self._one(p_i, x_i)
                return sim.game.gen_loss(sim.critic.forward(p, xx)).sum()

            self._force = torch.compile(vmap(grad(gen_one, argnums=1)), dynamic=False)
        return self._force({k: v.detach() for k, v in params.items()}, x.detach())
