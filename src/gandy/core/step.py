"""The step of the game, written once, batched over members (seeds, or a sweep's grid points).

One step (``optim.order: alternating``; docs/model.md)::

    repeat optim.critic.steps times:                 # critic ascent on its objective
        y ~ P  (B, M, d);  L_D = critic_loss(f(y), f(X)) + weight * penalty
        psi <- optimiser(psi, grad_psi L_D)
    F = -grad_x l_G(f(x)) at x = X                   # (B, N, d), per particle, not divided by N
    X <- X + lr_G * K F                              # the mover: kernel-coupled particles here

``simultaneous`` computes F with the critic of the start of the step. How the generator side moves
is a :class:`Mover`: kernel-coupled particles, a network generator, or (the bridge) a torch network
moved in parameter space, each beside the others in one batch if need be. Members never interact:
all reductions run inside a member, a member whose particles or critic turn non-finite (or blow
up) is frozen, zeroed and labelled ``diverged`` from that step on.

Everything here is a function of its arguments: a :class:`Simulation` (the built parts and the
frozen specs that say how a step runs: :class:`StepSpec`, :class:`InitSpec`, the penalty's
:class:`gandy.core.objectives.PenaltySpec`, the optimisers' :class:`gandy.core.optim.OptimSpec`),
the run's :class:`State` and its per-member numbers (:class:`MemberValues`). No config is read:
:mod:`gandy.runs.build` turns a config into these. ``create_graph`` (:func:`critic_update`,
:func:`advance`) keeps the step differentiable, for Jacobians of the real update.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Optional, Protocol

import torch

from gandy.core.errors import ConfigError
from gandy.core.kernels import Kernel
from gandy.core.nets.base import Critic
from gandy.core.objectives import SQUARED_GRADIENT, Game, Penalty, PenaltySpec, graph_input_grad
from gandy.core.optim import BatchedOptimizer, OptimSpec, keep_alive
from gandy.core.rng import Stream, member_keys
from gandy.core.targets import Target, sample_ahead


@dataclass(frozen=True)
class StepSpec:
    """How one step runs (docs/model.md): ``critic_steps`` optimiser steps of the critic per step
    (``startup_steps`` instead at the first, where set), from a fresh optimiser state at every step
    where ``reset``; ``order`` alternating (the force from the updated critic) or simultaneous (from
    the critic of the start of the step); the force per particle or divided by N (``force:
    mean``); a member whose points leave ``blowup`` x the target's scale is diverged."""

    critic_steps: int = 1
    startup_steps: Optional[int] = None
    reset: bool = False
    order: str = "alternating"
    force: str = "per_particle"
    blowup: float = 1e6
    matmul: str = "float32"
    """The closed form's matrix products (:mod:`gandy.core.closed_form`): ``float32``, or
    ``bfloat16`` (inputs rounded to bfloat16, each product rounded once, everything else float32)."""


@dataclass(frozen=True)
class InitSpec:
    """Where the particles start (``particles.init``): ``gaussian`` around ``mean`` (None: the
    origin) with ``std``; ``uniform`` in the box [``low``, ``high``]; ``data_mean``, N(target mean,
    std^2 I); ``data_gaussian``, the target's own mean and covariance (estimated from ``reference``
    samples where the target holds no data set), its spread times ``scale``."""

    name: str = "gaussian"
    mean: Optional[tuple[float, ...]] = None
    std: float = 0.1
    low: Optional[tuple[float, ...]] = None
    high: Optional[tuple[float, ...]] = None
    scale: float = 1.0
    reference: int = 1024


@dataclass(frozen=True)
class NetSpec:
    """A network as its registry names it: ``name`` and its ``options`` as sorted ``(key, value)``
    pairs (what identifies a compiled engine's functions, :func:`gandy.core.compiled.compiled_step`)."""

    name: str
    options: tuple = ()


class Generator(Protocol):
    """A batched network generator (:mod:`gandy.core.nets`)."""

    def init(self, stream: Stream, b: int) -> dict: ...

    def latent(self, stream: Stream, n: int) -> torch.Tensor: ...

    def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor: ...


class Engine(Protocol):
    """How the critic's gradients and the particles' force are taken where not by autograd on the
    batched tensors (``engine: eager``, the reference): a :class:`gandy.core.compiled.CompiledStep`
    (``compiled``) or a :class:`gandy.core.closed_form.ClosedForm` (``closed_form``)."""

    name: str
    fuse: bool

    def critic_grads(self, params: dict, trainable: list, real: torch.Tensor, fake: torch.Tensor,
                     weight: torch.Tensor, masks: tuple = (None, None)) -> list: ...

    def loss_grad(self, params: dict, x: torch.Tensor) -> torch.Tensor: ...

    # optional: ``whole_step(sim, st, mover) -> ok (B,) | None``, one whole step of :func:`advance`
    # (critic, force, move; not the isolation of diverged members) where the engine can take it,
    # None where not (:func:`gandy.core.fused.whole_step`)


@dataclass
class MemberValues:
    """Per-member numbers of a batch, each ``(B,)`` float32 (or None where the simulation has no such
    number: g1 and g2 outside two_number kernels): the numbers that may differ between the members
    of one batch (:data:`gandy.runs.members.PER_MEMBER` names the config keys they come from)."""

    critic_lr: torch.Tensor
    generator_lr: torch.Tensor
    penalty_weight: torch.Tensor
    g1: Optional[torch.Tensor] = None  # two_number kernels only
    g2: Optional[torch.Tensor] = None

    def pad(self, b: int) -> "MemberValues":
        """Repeat the last member up to ``b`` members (see the padding note in :func:`gandy.runs.loop.simulate`)."""
        def rep(t):
            return None if t is None else torch.cat([t, t[-1:].expand(b - t.shape[0])])

        return MemberValues(**{f.name: rep(getattr(self, f.name)) for f in fields(self)})


@dataclass
class Simulation:
    """Everything a run needs, built and validated at once (:func:`gandy.runs.build.build`), no state
    of the run itself: the target, the kernel coupling the particles, the critic, the game and its
    penalty, ``n`` particles in ``d`` dimensions, ``critic_batch`` target samples per critic step (and generated samples per generator step), the specs
    of the step, the particles' start, the penalty and the two optimisers, and ``defaults``, the
    per-member numbers of every member where a caller gives none (each ``(1,)``)."""

    device: torch.device
    target: Target
    kernel: Kernel
    critic: Critic
    critic_spec: NetSpec
    game: Game
    penalty: Penalty
    penalty_spec: PenaltySpec
    n: int
    d: int
    critic_batch: int
    step: StepSpec
    init: InitSpec
    critic_optim: OptimSpec
    generator_optim: OptimSpec
    defaults: MemberValues
    generator: Optional[Generator] = None
    """A network generator (:mod:`gandy.core.nets`) in place of the particles, or None."""
    engine: Optional[Engine] = None
    """What takes the critic's gradients and the particles' force; None: autograd (``engine: eager``)."""

    @property
    def mover(self) -> "Mover":
        """How the generator side moves: a network generator, or particles coupled by the kernel."""
        return Network() if self.generator is not None else Particles()

    def init_particles(self, stream: Stream, n: int) -> torch.Tensor:
        """Every member's starting particles ``(B, n, d)`` from its ``stream`` (:class:`InitSpec`)."""
        return init_particles(self.init, self.target, self.d, self.device, stream, n)


def init_particles(init: InitSpec, target: Target, d: int, device, stream: Stream, n: int) -> torch.Tensor:
    """Every member's starting particles ``(B, n, d)`` from its ``stream``, as ``init`` says."""
    if init.name == "gaussian":
        mean = torch.tensor(init.mean or [0.0] * d, dtype=torch.float32, device=device)
        return mean + init.std * stream.normal(n, d).to(device)
    if init.name == "data_mean":
        return target.mean.to(device) + init.std * stream.normal(n, d).to(device)
    if init.name == "data_gaussian":
        data = getattr(target, "data", None)
        ref = data[None] if data is not None else target.sample(stream, init.reference)
        dev = ref - ref.mean(-2, keepdim=True)  # (1 | B, m, d): the covariance's square root, times sqrt(m)
        z = stream.normal(n, ref.shape[-2]).to(device)  # (B, n, m)
        return ref.mean(-2, keepdim=True).to(device) + init.scale * (z @ dev.to(device)) / ref.shape[-2] ** 0.5
    lo = torch.tensor(init.low, dtype=torch.float32, device=device)
    hi = torch.tensor(init.high, dtype=torch.float32, device=device)
    return lo + (hi - lo) * stream.uniform(n, d).to(device)


def critic_loss(sim: Simulation, params, real, fake, pstream: Stream, weight: torch.Tensor, grad=None,
                masks: tuple = (None, None)) -> torch.Tensor:
    """``(B,)`` critic loss of ``sim.game`` including ``sim.penalty`` (as ``sim.penalty_spec`` says),
    weighted per member by ``weight: (B,)``; ``grad``: how the penalty takes grad_x f (default
    autograd; the compiled engine: torch.func); ``masks``: dropout masks of the real and the
    generated points (None: the whole network). A squared-gradient penalty differentiates the same
    masked network as its side's loss term."""
    fwd = [sim.critic.forward if m is None else functools.partial(sim.critic.forward, mask=m) for m in masks]
    loss = sim.game.critic_loss(fwd[0](params, real), fwd[1](params, fake))
    pen = sim.penalty_spec
    if pen.name != "none":
        side = SQUARED_GRADIENT.get(pen.name, ("fake",))[0]
        loss = loss + weight * sim.penalty(fwd[side == "fake"], params, real, fake, pstream, pen, grad=grad)
    return loss


def particle_force(sim: Simulation, params, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """F = -grad_x l_G(f(x)) per particle of the critic ``sim.critic`` at ``params`` in the game
    ``sim.game``, ``(B, N, d)`` (divided by N where ``sim.step.force`` is ``mean``), taken by
    ``sim.engine`` (autograd where None).

    ``create_graph``: keep F differentiable w.r.t. ``params`` and ``x`` (for Jacobians of the
    update map; by autograd whatever the engine: the same derivative); otherwise both are detached.
    """
    if sim.engine is not None and not create_graph:
        g = sim.engine.loss_grad(params, x)
    else:
        if not create_graph:
            params = {k: v.detach() for k, v in params.items()}
        with torch.enable_grad():
            # with create_graph, differentiate w.r.t. a copy: the partial derivative at fixed params,
            # even where params themselves depend on x (as after a critic step on these particles)
            xg = x.clone() if create_graph else x.detach().requires_grad_(True)
            lg = sim.game.gen_loss(sim.critic.forward(params, xg))
            (g,) = torch.autograd.grad(lg.sum(), xg, create_graph=create_graph)
    f = -g
    if sim.step.force == "mean":
        f = f / x.shape[1]
    return f


@dataclass
class State:
    """The state of a batched run: particles ``x: (B, N, d)`` (and ``x0``, where they started),
    critic ``params`` (B, ...), the optimiser, the random streams and the ``alive: (B,)`` mask.

    A checkpoint (:mod:`gandy.runs.loop`) saves and restores every field, by iterating over them.
    ``LOGGED`` names the ``(B,)`` fields the loop logs per member at every logged step (a metrics
    column each, NaN until the first step and for diverged members)."""

    LOGGED: ClassVar[tuple[str, ...]] = ("force_norm",)

    x: torch.Tensor
    params: dict
    opt: BatchedOptimizer
    alive: torch.Tensor
    diverged_step: torch.Tensor  # (B,) int64 on the CPU, -1 while alive
    streams: dict
    members: MemberValues
    t: int = 0
    gen: Optional[dict] = None  # network generator parameters (B, ...)
    gen_opt: Optional[BatchedOptimizer] = None
    z_view: Optional[torch.Tensor] = None  # fixed latents (B, N, k) whose images x shows
    x0: Optional[torch.Tensor] = None  # the particles at step 0 (B, N, d), for the displacement
    force_norm: Optional[torch.Tensor] = None  # (B,) mean |F_j| = |grad_x l_G(f(x_j))| of the last step's force (NaN before)
    fake: Optional[torch.Tensor] = None
    """A network generator's batch G(z) ``(B, M, d)`` for the next critic update, drawn as the last
    step ended (at :func:`start` for the first): the generator's samples at its current parameters,
    which the divergence check reads (:class:`Network`)."""
    x_at: int = 0
    """The step whose generator a network generator's ``x`` shows: its view G(z_view) is computed
    when read (:func:`points`), not at every step (particles' ``x`` is always current)."""


STREAMS = ("particles", "critic", "data", "penalty", "metrics", "generator", "latent", "dropout")
"""The random streams of a run, one per use (:class:`gandy.core.rng.Stream`)."""


def start(sim: Simulation, seeds: list[int], members: Optional[MemberValues] = None) -> State:
    """Initial particles, critic and optimiser for every member.

    ``seeds[i]`` keys member i's random numbers; ``members`` holds its per-member numbers
    (default: ``sim.defaults`` for every member).
    """
    keys = member_keys(seeds, sim.device)
    b = len(seeds)
    members = members or sim.defaults.pad(b)
    streams = {k: Stream(keys, k) for k in STREAMS}
    x = sim.init_particles(streams["particles"], sim.n)
    params = sim.critic.init(streams["critic"], b)
    trainable = {k: v for k, v in params.items() if k not in sim.critic.frozen}
    opt = BatchedOptimizer(sim.critic_optim, trainable, members.critic_lr, fused=sim.engine is not None and sim.engine.fuse)
    st = State(x, params, opt, torch.ones(b, dtype=torch.bool, device=sim.device),
               torch.full((b,), -1, dtype=torch.int64), streams, members)
    if sim.generator is not None:
        g = sim.generator
        st.gen = {k: v.to(sim.device) for k, v in g.init(streams["generator"], b).items()}
        st.gen_opt = BatchedOptimizer(sim.generator_optim, st.gen, members.generator_lr)
        st.z_view = g.latent(streams["generator"], sim.n).to(sim.device)
        st.x = g.forward(st.gen, st.z_view).detach()
        st.fake = Network.draw(sim, st)
    st.x0 = st.x.clone()
    st.force_norm = torch.full((b,), float("nan"), device=sim.device)
    return st


def critic_and_force(sim: Simulation, params: dict, x, update: Callable, force: Callable):
    """The step order, written once: ``sim.step.order`` alternating updates the critic
    (``update(params, x) -> params``) and then takes the force from the new critic
    (``force(params, x)``); ``simultaneous`` takes the force from the critic of the start of the step.
    Returns ``(new params, force)``. The loop, the bridge and the damping Jacobian's one-step map
    all step through here (each with its own update and force: batched, lazy, differentiable)."""
    if sim.step.order == "simultaneous":
        f = force(params, x)
        return update(params, x), f
    params = update(params, x)
    return params, force(params, x)


def critic_update(sim: Simulation, st: State, params: dict, fake: torch.Tensor, create_graph: bool = False) -> dict:
    """``sim.step.critic_steps`` optimiser steps (``st.opt``, learning rates ``st.members.critic_lr``)
    of every member's critic against ``fake: (B, N, d)`` (``startup_steps`` at the first particle
    step, ``st.t == 0``), from a fresh optimiser state where ``sim.step.reset`` says so; target
    samples, dropout masks and penalty draws come from ``st.streams``, penalty weights from
    ``st.members.penalty_weight``.

    ``create_graph``: the new parameters stay differentiable functions of ``params`` and ``fake``
    (nothing detached; for Jacobians of the real update): eager autograd only (ConfigError on
    ``engine`` otherwise) and sgd only (ConfigError on ``optim.critic.name``)."""
    step = sim.step
    trainable = [k for k in params if k not in sim.critic.frozen]
    if create_graph and sim.engine is not None:
        raise ConfigError("engine", f"a differentiable critic step takes autograd's gradients; the {sim.engine.name} "
                                    "engine's are not differentiable: use engine: eager")
    if step.reset:
        st.opt.reset_()
    for _ in range(step.startup_steps if st.t == 0 and step.startup_steps else step.critic_steps):
        real = sample_ahead(sim.target, st.streams["data"], sim.critic_batch)
        masks = (sim.critic.mask(st.streams["dropout"], real.shape[1]), sim.critic.mask(st.streams["dropout"], fake.shape[1]))
        if sim.engine is not None:
            grads = sim.engine.critic_grads(params, trainable, real, fake, st.members.penalty_weight, masks)
        elif create_graph:
            with torch.enable_grad():
                train = {k: params[k] if params[k].requires_grad else params[k].detach().requires_grad_(True)
                         for k in trainable}
                loss = critic_loss(sim, {**params, **train}, real, fake, st.streams["penalty"],
                                   st.members.penalty_weight, grad=graph_input_grad, masks=masks)
                grads = torch.autograd.grad(loss.sum(), [train[k] for k in trainable], create_graph=True)
            params = {**params, **train}
        else:
            train = {k: params[k].detach().requires_grad_(True) for k in trainable}
            loss = critic_loss(sim, {**params, **train}, real, fake, st.streams["penalty"], st.members.penalty_weight,
                               masks=masks)
            grads = torch.autograd.grad(loss.sum(), [train[k] for k in trainable])
        new = st.opt.step({k: params[k] for k in trainable}, dict(zip(trainable, grads)), create_graph=create_graph)
        params = {**params, **(new if create_graph else {k: v.detach() for k, v in new.items()})}
    return params


def generator_update(sim: Simulation, st: State, critic_params: dict) -> None:
    """One optimiser step of every member's network generator on the mean l_G(f(G(z))) over a
    fresh latent batch; the critic is held fixed (its parameters detached). Where an engine takes
    the force and the generator backpropagates by hand (``vjp``: the MLP), no autograd graph is
    built: d/dtheta = J^T grad_x l_G / M, the same derivative."""
    g = sim.generator
    z = g.latent(st.streams["latent"], sim.critic_batch).to(sim.device)
    fixed = {k: v.detach() for k, v in critic_params.items()}
    if sim.engine is not None and hasattr(g, "vjp"):  # the engine's force, backpropagated by hand
        fake, saved = g.forward_saved(st.gen, z)  # (B, M, d)
        at_fake = sim.engine.loss_grad(fixed, fake) / fake.shape[1]  # the loss is a batch mean
        by_name = g.vjp(st.gen, saved, at_fake)
        grads = [by_name[k] for k in st.gen]
    else:
        train = {k: v.detach().requires_grad_(True) for k, v in st.gen.items()}
        fake = g.forward(train, z)  # (B, M, d)
        loss = sim.game.gen_loss(sim.critic.forward(fixed, fake)).mean(-1)  # (B,)
        *grads, at_fake = torch.autograd.grad(loss.sum(), [*train.values(), fake])
    # the generator's signal before its Jacobian: mean over the batch of |grad_x l_G(f(x_j))|
    # (the loss is a batch mean, so each sample's own gradient is M times its share)
    st.force_norm = at_fake.detach().norm(dim=-1).mean(-1) * fake.shape[1]
    st.gen = {k: v.detach() for k, v in st.gen_opt.step(st.gen, dict(zip(st.gen, grads))).items()}


# ----------------------------------------------------------------------------- movers
class Mover:
    """How the generator side of the game moves, given the critic. Three kinds:

    * :class:`Particles`: the effective model, ``X <- X + lr_G K F`` with the kernel K coupling the
      particles (the config's kernel, or one given: the bridge's empirical NTK is the lazy,
      linearised network);
    * :class:`Network`: a batched network generator whose parameters take an optimiser step on
      ``l_G(f(G(z)))``;
    * :class:`TorchNetwork`: one ``torch.nn.Module`` moved in parameter space along its outputs'
      force, ``theta <- theta + lr_G sum_j J_j^T F_j`` (the bridge's real network);

    and :class:`Sides`, one mover per member. ``fake`` gives what the critic trains against,
    ``force`` what the move needs from the critic, ``move`` updates ``st.x`` (and any generator).
    ``differentiable``: whether ``force`` and ``move`` can keep the autograd graph
    (``create_graph``, for Jacobians of the update map).
    """

    differentiable: ClassVar[bool] = True

    def fake(self, sim: Simulation, st: State) -> torch.Tensor:
        """Samples of the generator side ``(B, M, d)`` for the critic's update."""
        return st.x

    def force(self, sim: Simulation, params: dict, x: torch.Tensor, create_graph: bool = False):
        """F = -grad_x l_G(f(x)) at the particles, ``(B, N, d)`` (:func:`particle_force`)."""
        return particle_force(sim, params, x, create_graph=create_graph)

    def move(self, sim: Simulation, st: State, force) -> None:
        """``st.x`` moved by ``force`` with the per-member ``st.members`` (generator_lr, g1, g2)."""
        st.x = self.step_x(sim, st.x, force, st.members.generator_lr, st.members.g1, st.members.g2)

    def step_x(self, sim: Simulation, x, f, lr, g1, g2) -> torch.Tensor:
        """The moved points for ``x, f: (B, N, d)`` and per-member ``lr, g1, g2: (B,)``."""
        raise NotImplementedError

    def checked(self, sim: Simulation, st: State) -> torch.Tensor:
        """The points ``(B, n, d)`` the divergence check reads after a move (the particles)."""
        return st.x


@dataclass
class Particles(Mover):
    """``X <- X + lr_G K F``: the config's kernel (per-member g1, g2) or ``kernel`` (its own numbers)."""

    kernel: Optional[Kernel] = None

    def step_x(self, sim, x, f, lr, g1, g2):
        kf = sim.kernel.apply(f, g1, g2) if self.kernel is None else self.kernel.apply(f)
        return x + lr[:, None, None] * kf


class Network(Mover):
    """A batched network generator: the critic trains on a fresh batch G(z); the "force" is the
    critic the generator steps against; one optimiser step on the mean l_G(f(G(z))).

    The critic's next batch is drawn as the move ends (``st.fake``; the latent stream's draws keep
    their order: batch, generator step, batch, ...), so the divergence check reads the generator's
    samples at its new parameters without an extra forward pass; the fixed-latent view ``st.x`` is
    computed only when read (:func:`points`: logs, snapshots, the end)."""

    differentiable: ClassVar[bool] = False

    @staticmethod
    def draw(sim, st) -> torch.Tensor:
        """A fresh batch G(z) ``(B, M, d)`` of the current generator, detached."""
        z = sim.generator.latent(st.streams["latent"], sim.critic_batch).to(sim.device)
        return sim.generator.forward(st.gen, z).detach()

    def fake(self, sim, st):
        return st.fake

    def force(self, sim, params, x, create_graph=False):
        return params

    def move(self, sim, st, force):
        generator_update(sim, st, force)
        st.fake = self.draw(sim, st)

    def checked(self, sim, st) -> torch.Tensor:
        return st.fake


@dataclass
class TorchNetwork(Mover):
    """One ``torch.nn.Module`` ``net`` at fixed latents ``z: (N, k)``: a plain gradient step of
    ``-sum_j F_j . G(z_j)``, i.e. ``theta += lr_G J^T F``; the points become ``G(z)``. One member."""

    net: torch.nn.Module
    z: torch.Tensor
    differentiable: ClassVar[bool] = False

    def step_x(self, sim, x, f, lr, g1, g2):
        params = list(self.net.parameters())
        grads = torch.autograd.grad(-(self.net(self.z) * f[0].to(self.z.device)).sum(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= float(lr[0]) * g
            return self.net(self.z).to(x.device)[None]


@dataclass
class Sides(Mover):
    """Member i moved by ``movers[i]`` (particle-space movers), all against the same critic force."""

    movers: list

    def step_x(self, sim, x, f, lr, g1, g2):
        def part(t, i):
            return None if t is None else t[i:i + 1]

        return torch.cat([m.step_x(sim, x[i:i + 1], f[i:i + 1], lr[i:i + 1], part(g1, i), part(g2, i))
                          for i, m in enumerate(self.movers)])


def blowup_limit(sim: Simulation, st: State):
    """How far from the target mean a member's points may go before it counts as blown up:
    ``phase.blowup`` x the target's scale (a number; ``(B,)`` where a recipe makes it per member).
    The one reader of ``phase.blowup``, for the step and the compiled whole step alike."""
    limit = sim.step.blowup * sim.target.scale
    return limit


def healthy(x: torch.Tensor, tensors: list, mean: torch.Tensor, limit) -> torch.Tensor:
    """``(B,)``: each member's points ``x: (B, N, d)`` within ``limit`` (:func:`blowup_limit`) of the
    target's ``mean: (d,)``, and its ``tensors`` (each ``(B, ...)``) finite. NaN and inf points fail
    the comparison (amax propagates NaN). A tensor is checked by its sum per member, one pass: a sum
    is non-finite where any term is (or where terms past ~1e33 overflow, which counts as blown up
    too; 5x cheaper than isfinite().all() on wide critics), and one isfinite for all of them (a lone
    member's step is a few hundred small ops)."""
    b = x.shape[0]
    ok = (x - mean).norm(dim=-1).amax(-1) <= limit
    return ok & torch.isfinite(torch.stack([v.reshape(b, -1).sum(-1) for v in tensors])).all(0)


def points(sim: Simulation, st: State) -> torch.Tensor:
    """``st.x: (B, N, d)`` as of step ``st.t``: a network generator's view G(z_view) is computed
    here when the generator has moved since it was last read (:class:`Network`); particles are
    always current."""
    if st.x_at != st.t and st.gen is not None and st.z_view is not None:
        st.x = keep_alive(st.alive, sim.generator.forward(st.gen, st.z_view).detach(), 0.0)
    st.x_at = st.t
    return st.x


def advance(sim: Simulation, st: State, mover: Optional[Mover] = None, create_graph: bool = False) -> State:
    """One step of the game for all members, in place: the critic steps and the generator side's
    move in the order :func:`critic_and_force` fixes; ``mover`` defaults to the simulation's
    (particles, or its network generator). A member whose points or parameters turn non-finite
    (or blow up past ``sim.step.blowup`` x the target's scale) is frozen and zeroed from then on.

    ``create_graph``: the new ``st.x`` and ``st.params`` stay differentiable functions of the old
    ones (set them to tensors that require grad first) for Jacobians of the real update: eager
    engine, sgd critic and a particle mover only (ConfigError naming the field otherwise)."""
    mover = mover or sim.mover
    if create_graph and not mover.differentiable:
        raise ConfigError("generator.name", f"a differentiable step moves particles; {type(mover).__name__} does not "
                                            "keep the graph")
    whole = None if create_graph else getattr(sim.engine, "whole_step", None)
    ok = whole(sim, st, mover) if whole is not None else None  # the whole step in one call, where it applies
    if ok is not None:
        st.t += 1
    else:
        fake = mover.fake(sim, st)
        st.params, f = critic_and_force(sim, st.params, fake,
                                        functools.partial(critic_update, sim, st, create_graph=create_graph),
                                        functools.partial(mover.force, sim, create_graph=create_graph))
        if isinstance(f, torch.Tensor):
            st.force_norm = f.detach().norm(dim=-1).mean(-1)
        mover.move(sim, st, f)
        st.t += 1
        ok = healthy(mover.checked(sim, st), [*st.params.values(), *(st.gen or {}).values()], sim.target.mean,
                     blowup_limit(sim, st))
    newly = st.alive & ~ok
    if bool(newly.any()):
        st.diverged_step[newly.cpu()] = st.t
        st.alive = st.alive & ok
        st.x = keep_alive(st.alive, points(sim, st), 0.0)
        if st.fake is not None:
            st.fake = keep_alive(st.alive, st.fake, 0.0)
        st.params = {k: keep_alive(st.alive, v, 0.0) for k, v in st.params.items()}
        st.opt.mask_(st.alive)
        if st.gen is not None:
            st.gen = {k: keep_alive(st.alive, v, 0.0) for k, v in st.gen.items()}
            st.gen_opt.mask_(st.alive)
    return st
