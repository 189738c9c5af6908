"""The game loop of the effective model, batched over members (seeds).

One step (``optim.order: alternating``)::

    repeat optim.critic.steps times:                 # critic ascent on its objective
        y ~ P  (B, M, d);  L_D = critic_loss(f(y), f(X)) + weight * penalty
        psi <- optimiser(psi, grad_psi L_D)
    F = -grad_x l_G(f(x)) at x = X                   # (B, N, d), per particle, not divided by N
    X <- X + lr_G * K F                              # kernel couples the particles

``simultaneous`` computes F with the critic of the start of the step. Members never interact:
all reductions run inside a member, a member whose particles or critic turn non-finite (or
blow up) is frozen, zeroed and labelled ``diverged`` from that step on.
"""

from __future__ import annotations

import functools
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import config as C
from .budget import require_memory
from .critics import Critic, build_critic
from .kernels import Kernel, build_kernel
from .metrics.order import ORDER_PARAMETERS, order_parameters
from .objectives import GAMES, PENALTIES, Game
from .rng import Stream, member_keys
from .targets import Target, build_target

PHASES = ("converged", "collapsed", "oscillating", "diverged")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise C.ConfigError("device", "cuda was requested but torch sees no CUDA device")
    return torch.device(name)


# ----------------------------------------------------------------------------- optimisers
class BatchedOptimizer:
    """SGD, Adam or RMSProp (torch semantics: weight decay added to the gradient) over a dict of
    ``(B, ...)`` tensors, with per-member learning rates ``lr: (B,)``; optional clipping of every
    weight to [-clip, clip] after the step (WGAN)."""

    def __init__(self, cfg: C.CriticOptim, params: dict, lr: torch.Tensor):
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
                state[k] = _where(alive, v, 0.0)


def _where(alive: torch.Tensor, v: torch.Tensor, other: float) -> torch.Tensor:
    return torch.where(alive.view(-1, *([1] * (v.ndim - 1))), v, torch.full_like(v, other))


# ----------------------------------------------------------------------------- simulation
@dataclass
class Simulation:
    """Everything a run needs, built and validated from a config (no state of the run itself)."""

    cfg: C.Config
    device: torch.device
    target: Target
    kernel: Kernel
    critic: Critic
    game: Game
    penalty: Callable
    n: int
    d: int
    batch: int
    generator: Optional[object] = None
    """A network generator (gandy.generators) in place of the particles, or None."""

    def init_particles(self, stream: Stream, n: int) -> torch.Tensor:
        init = self.cfg.particles.init
        if init.name == "gaussian":
            mean = torch.tensor(init.mean or [0.0] * self.d, dtype=torch.float32, device=self.device)
            return mean + init.std * stream.normal(n, self.d).to(self.device)
        lo = torch.tensor(init.low, dtype=torch.float32, device=self.device)
        hi = torch.tensor(init.high, dtype=torch.float32, device=self.device)
        return lo + (hi - lo) * stream.uniform(n, self.d).to(self.device)


def build(cfg: C.Config, kernel_module: Optional[torch.nn.Module] = None, members: Optional[int] = None) -> Simulation:
    """Validate a config against itself (dimensions, matrices, data files) and build the pieces.

    ``members``: how many members will run as one batch (default: the config's seeds); a batch that
    cannot fit in the device's memory is refused here, before anything large is allocated
    (:func:`gandy.budget.require_memory`)."""
    device = resolve_device(cfg.device)
    target = build_target(cfg.target, device)
    d = target.dim
    init = cfg.particles.init
    init_dim = (d if init.mean is None else len(init.mean)) if init.name == "gaussian" else len(init.low)
    if init_dim != d:
        raise C.ConfigError("particles.init", f"init has dimension {init_dim} but the target has dimension {d}")
    n = cfg.particles.n
    kw = {"module": kernel_module} if kernel_module is not None else {}
    if kw and cfg.kernel.name != "empirical_ntk":
        raise C.ConfigError("kernel.name", "a module was given, so the kernel must be empirical_ntk")
    sim = Simulation(cfg, device, target, None, None, GAMES[cfg.objective], PENALTIES[cfg.penalty.name],
                     n, d, cfg.batch_size or target.default_batch or n)
    sim.critic = build_critic(cfg.critic, d, target, sim.init_particles)
    if cfg.generator is not None:
        from .generators import build_generator

        sim.generator = build_generator(cfg.generator, target, d)
    elif cfg.optim.generator.name != "sgd":
        raise C.ConfigError("optim.generator.name", "the particle step X <- X + lr K F is plain sgd; other "
                                                   "optimisers need a network generator")
    require_memory(sim, len(cfg.seeds) if members is None else members)
    sim.kernel = build_kernel(cfg.kernel, n, d, device, **kw)
    images = target.image_shape is not None
    if cfg.metrics.images.enabled is True and not (images and sim.generator is not None):
        raise C.ConfigError("metrics.images.enabled", "image metrics need a network generator on an image "
                                                      "target (mnist, color_mnist, images)")
    if cfg.metrics.images.inception is not None:
        from .images.evaluate import check_inception

        check_inception(cfg.metrics.images.inception)
    if images and cfg.target.name == "mnist" and cfg.target.pixels != "signed" and sim.generator is not None \
            and cfg.metrics.images.enabled is not False:
        raise C.ConfigError("target.pixels", "image GANs and their metrics use pixels in [-1, 1]: set pixels: signed "
                                             "(or metrics.images.enabled: false)")
    return sim


@dataclass
class SimOutput:
    """Raw output of :func:`simulate`; ``metrics``: one dict per (member, logged step)."""

    seeds: list[int]
    metrics: list[dict] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[np.ndarray] = field(default_factory=list)  # each (B, n_snap, d)
    diverged_step: Optional[np.ndarray] = None  # (B,), -1 if never
    divergence_methods: Optional[dict] = None  # column -> how it was computed
    final_particles: Optional[np.ndarray] = None  # (B, N, d)
    state: Optional["State"] = None  # the final state, for end-of-run evaluations (image metrics)


def critic_loss(sim: Simulation, params, real, fake, pstream: Stream, weight: torch.Tensor) -> torch.Tensor:
    """``(B,)`` critic loss including the penalty, weighted per member by ``weight: (B,)``."""
    f_real = sim.critic.forward(params, real)
    f_fake = sim.critic.forward(params, fake)
    loss = sim.game.critic_loss(f_real, f_fake)
    pen = sim.cfg.penalty
    if pen.name != "none":
        loss = loss + weight * sim.penalty(sim.critic.forward, params, real, fake, pstream, pen)
    return loss


def particle_force(sim: Simulation, params, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """F = -grad_x l_G(f(x)) per particle, ``(B, N, d)`` (divided by N when ``force: mean``).

    ``create_graph``: keep F differentiable w.r.t. ``params`` and ``x`` (for Jacobians of the
    update map); otherwise both are detached.
    """
    if not create_graph:
        params = {k: v.detach() for k, v in params.items()}
    with torch.enable_grad():
        # with create_graph, differentiate w.r.t. a copy: the partial derivative at fixed params,
        # even where params themselves depend on x (as after a critic step on these particles)
        xg = x.clone() if create_graph else x.detach().requires_grad_(True)
        lg = sim.game.gen_loss(sim.critic.forward(params, xg))
        (g,) = torch.autograd.grad(lg.sum(), xg, create_graph=create_graph)
    f = -g
    if sim.cfg.optim.generator.force == "mean":
        f = f / x.shape[1]
    return f


# Config keys that may differ between the members of one batch: each becomes a (B,) tensor.
# Every other key (shapes, critic architecture, target, games, steps) is shared by a batch.
MEMBER_KEYS = ("kernel.g1", "kernel.g2", "optim.critic.lr", "optim.generator.lr", "penalty.weight")


def get_dotted(cfg, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Members:
    """Per-member numbers of a batch, each ``(B,)`` float32: the values of ``MEMBER_KEYS``."""

    critic_lr: torch.Tensor
    generator_lr: torch.Tensor
    penalty_weight: torch.Tensor
    g1: Optional[torch.Tensor] = None  # two_number kernels only
    g2: Optional[torch.Tensor] = None

    @classmethod
    def from_configs(cls, cfgs: list, device) -> "Members":
        def col(key):
            return torch.tensor([float(get_dotted(c, key)) for c in cfgs], dtype=torch.float32, device=device)

        two = cfgs[0].kernel.name == "two_number"
        return cls(col("optim.critic.lr"), col("optim.generator.lr"), col("penalty.weight"),
                   col("kernel.g1") if two else None, col("kernel.g2") if two else None)

    def pad(self, b: int) -> "Members":
        """Repeat the last member up to ``b`` members (see the padding note in :func:`simulate`)."""
        def rep(t):
            return None if t is None else torch.cat([t, t[-1:].expand(b - t.shape[0])])

        return Members(*(rep(getattr(self, f)) for f in ("critic_lr", "generator_lr", "penalty_weight", "g1", "g2")))


@dataclass
class State:
    """The state of a batched run: particles ``x: (B, N, d)``, critic ``params`` (B, ...), the
    optimiser, the random streams and the ``alive: (B,)`` mask."""

    x: torch.Tensor
    params: dict
    opt: BatchedOptimizer
    alive: torch.Tensor
    diverged_step: torch.Tensor  # (B,) int64 on the CPU, -1 while alive
    streams: dict
    members: Members
    t: int = 0
    gen: Optional[dict] = None  # network generator parameters (B, ...)
    gen_opt: Optional[BatchedOptimizer] = None
    z_view: Optional[torch.Tensor] = None  # fixed latents (B, N, k) whose images x shows


def start(sim: Simulation, seeds: list[int], members: Optional[Members] = None) -> State:
    """Initial particles, critic and optimiser for every member.

    ``seeds[i]`` keys member i's random numbers; ``members`` holds its per-member numbers
    (default: the config's values for every member).
    """
    keys = member_keys(seeds, sim.device)
    b = len(seeds)
    members = members or Members.from_configs([sim.cfg] * b, sim.device)
    streams = {k: Stream(keys, k) for k in ("particles", "critic", "data", "penalty", "metrics", "generator", "latent")}
    x = sim.init_particles(streams["particles"], sim.n)
    params = sim.critic.init(streams["critic"], b)
    trainable = {k: v for k, v in params.items() if k not in sim.critic.frozen}
    opt = BatchedOptimizer(sim.cfg.optim.critic, trainable, members.critic_lr)
    st = State(x, params, opt, torch.ones(b, dtype=torch.bool, device=sim.device),
               torch.full((b,), -1, dtype=torch.int64), streams, members)
    if sim.generator is not None:
        g = sim.generator
        st.gen = {k: v.to(sim.device) for k, v in g.init(streams["generator"], b).items()}
        st.gen_opt = BatchedOptimizer(sim.cfg.optim.generator, st.gen, members.generator_lr)
        st.z_view = g.latent(streams["generator"], sim.n).to(sim.device)
        st.x = g.forward(st.gen, st.z_view).detach()
    return st


def critic_and_force(sim: Simulation, params: dict, x, update: Callable, force: Callable):
    """The step order, written once: ``optim.order: alternating`` updates the critic
    (``update(params, x) -> params``) and then takes the force from the new critic
    (``force(params, x)``); ``simultaneous`` takes the force from the critic of the start of the step.
    Returns ``(new params, force)``. The loop, the bridge and the damping Jacobian's one-step map
    all step through here (each with its own update and force: batched, lazy, differentiable)."""
    if sim.cfg.optim.order == "simultaneous":
        f = force(params, x)
        return update(params, x), f
    params = update(params, x)
    return params, force(params, x)


def critic_update(sim: Simulation, st: State, params: dict, fake: torch.Tensor) -> dict:
    """``optim.critic.steps`` optimiser steps of every member's critic against ``fake: (B, N, d)``."""
    trainable = [k for k in params if k not in sim.critic.frozen]
    for _ in range(sim.cfg.optim.critic.steps):
        real = sim.target.sample(st.streams["data"], sim.batch)
        train = {k: params[k].detach().requires_grad_(True) for k in trainable}
        loss = critic_loss(sim, {**params, **train}, real, fake, st.streams["penalty"], st.members.penalty_weight)
        grads = torch.autograd.grad(loss.sum(), [train[k] for k in trainable])
        new = st.opt.step({k: params[k] for k in trainable}, dict(zip(trainable, grads)))
        params = {**params, **{k: v.detach() for k, v in new.items()}}
    return params


def generator_update(sim: Simulation, st: State, critic_params: dict) -> None:
    """One optimiser step of every member's network generator on the mean l_G(f(G(z))) over a
    fresh latent batch; the critic is held fixed (its parameters detached)."""
    g = sim.generator
    z = g.latent(st.streams["latent"], sim.batch).to(sim.device)
    fixed = {k: v.detach() for k, v in critic_params.items()}
    train = {k: v.detach().requires_grad_(True) for k, v in st.gen.items()}
    loss = sim.game.gen_loss(sim.critic.forward(fixed, g.forward(train, z))).mean(-1)  # (B,)
    grads = torch.autograd.grad(loss.sum(), list(train.values()))
    st.gen = {k: v.detach() for k, v in st.gen_opt.step(st.gen, dict(zip(train, grads))).items()}


def advance(sim: Simulation, st: State) -> State:
    """One step of the game for all members, in place: critic steps, then the generator step
    (particles: X <- X + lr_G K F; a network: an optimiser step on its parameters)."""
    update = functools.partial(critic_update, sim, st)
    if sim.generator is not None:
        fake = sim.generator.forward(st.gen, sim.generator.latent(st.streams["latent"], sim.batch).to(sim.device)).detach()
        # the generator's "force" is the critic it steps against
        st.params, judge = critic_and_force(sim, st.params, fake, update, lambda params, _: params)
        generator_update(sim, st, judge)
        st.x = sim.generator.forward(st.gen, st.z_view).detach()
    else:
        st.params, f = critic_and_force(sim, st.params, st.x, update, functools.partial(particle_force, sim))
        m = st.members
        st.x = st.x + m.generator_lr[:, None, None] * sim.kernel.apply(f, m.g1, m.g2)
    st.t += 1
    # isolation: a member that is not finite (or blew up) is frozen and zeroed from now on
    b = st.x.shape[0]
    limit = sim.cfg.phase.blowup * sim.target.scale
    ok = torch.isfinite(st.x).all(-1).all(-1) & ((st.x - sim.target.mean).norm(dim=-1).amax(-1) <= limit)
    for v in [*st.params.values(), *(st.gen or {}).values()]:
        ok &= torch.isfinite(v.reshape(b, -1)).all(-1)
    newly = st.alive & ~ok
    if bool(newly.any()):
        st.diverged_step[newly.cpu()] = st.t
        st.alive = st.alive & ok
        st.x = _where(st.alive, st.x, 0.0)
        st.params = {k: _where(st.alive, v, 0.0) for k, v in st.params.items()}
        st.opt.mask_(st.alive)
        if st.gen is not None:
            st.gen = {k: _where(st.alive, v, 0.0) for k, v in st.gen.items()}
            st.gen_opt.mask_(st.alive)
    return st


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    """Where and how often :func:`simulate` saves its whole state, so that a killed simulation
    resumes from the last save with numbers exactly equal to an uninterrupted run.

    ``path``: the checkpoint file (written atomically; deleted by the caller once the results are
    stored). ``fingerprint``: identifies the simulation (config, members, seeds); a file with
    another fingerprint is ignored. A save is due every ``every_seconds`` of wall time (at least 10
    times the last save's duration, so saving never takes more than ~10 % of the time) or, when
    ``every_steps`` is set, every that many steps.
    """

    path: Path
    fingerprint: str
    every_seconds: float = 60.0
    every_steps: Optional[int] = None
    _last: float = field(default=0.0, repr=False)
    _cost: float = field(default=0.0, repr=False)

    def due(self, t: int) -> bool:
        if self.every_steps is not None:
            return t % self.every_steps == 0
        return time.monotonic() - self._last >= max(self.every_seconds, 10 * self._cost)

    def save(self, st: "State", out: "SimOutput", t_next: int) -> None:
        from .store import write_atomic

        t0 = time.monotonic()
        blob = {
            "fingerprint": self.fingerprint, "t_next": t_next, "t": st.t,
            "x": st.x, "params": st.params, "alive": st.alive, "diverged_step": st.diverged_step,
            "streams": {k: s.counter for k, s in st.streams.items()},
            "opt": _opt_state(st.opt), "gen": st.gen, "gen_opt": _opt_state(st.gen_opt), "z_view": st.z_view,
            "metrics": out.metrics, "snapshot_steps": out.snapshot_steps,
            "snapshots": [torch.from_numpy(a) for a in out.snapshots], "divergence_methods": out.divergence_methods,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        write_atomic(self.path, buf.getvalue())
        self._last = time.monotonic()
        self._cost = self._last - t0

    def load(self, device) -> Optional[dict]:
        """The saved state, or None when there is none or it belongs to another simulation."""
        self._last = time.monotonic()
        if not self.path.exists():
            return None
        try:
            blob = torch.load(self.path, map_location=device, weights_only=True)
        except Exception:  # a damaged file (a kill cannot make one: writes are atomic): start over
            return None
        return blob if isinstance(blob, dict) and blob.get("fingerprint") == self.fingerprint else None


def _opt_state(opt: Optional[BatchedOptimizer]) -> Optional[dict]:
    return None if opt is None else {"m": opt.m, "v": opt.v, "t": opt.t}


def _restore(st: "State", out: "SimOutput", blob: dict) -> int:
    """Put a checkpoint's state into ``st`` and ``out``; returns the step to continue from."""
    st.x, st.params, st.alive, st.t = blob["x"], blob["params"], blob["alive"], blob["t"]
    st.diverged_step = blob["diverged_step"].cpu()
    for k, c in blob["streams"].items():
        st.streams[k].counter = c
    for opt, saved in ((st.opt, blob["opt"]), (st.gen_opt, blob["gen_opt"])):
        if opt is not None:
            opt.m, opt.v, opt.t = saved["m"], saved["v"], saved["t"]
    st.gen, st.z_view = blob["gen"], blob["z_view"]
    out.metrics = list(blob["metrics"])
    out.snapshot_steps = list(blob["snapshot_steps"])
    out.snapshots = [a.numpy() for a in blob["snapshots"]]
    out.divergence_methods = blob["divergence_methods"]
    return int(blob["t_next"])


def simulate(sim: Simulation, seeds: list[int], progress: Optional[Callable[[int], None]] = None,
             members: Optional[Members] = None, checkpoint: Optional[Checkpoint] = None) -> SimOutput:
    """Run the game for every member at once, logging order parameters and snapshots.

    ``seeds[i]`` keys member i's randomness; ``members`` its per-member numbers (default: the
    config's). Members of one config are its seeds; a sweep passes one entry per grid point x seed.
    ``checkpoint``: save the state at intervals and, where a matching save exists, continue from it
    (``progress`` is then told of the steps already made, at once).
    """
    cfg = sim.cfg
    b = len(seeds)
    members = members or Members.from_configs([cfg] * b, sim.device)
    # A one-member batch takes other kernels in torch's bmm (and its backward) than a batch of two
    # or more, whose rounding differs; padding to two members keeps a member's numbers
    # bit-identical whether it runs alone or beside others.
    st = start(sim, list(seeds), members) if b > 1 else start(sim, [seeds[0], seeds[0] + 1], members.pad(2))
    out = SimOutput(seeds=list(seeds))
    t_start = 0
    saved = checkpoint.load(sim.device) if checkpoint is not None else None
    if saved is not None:
        t_start = _restore(st, out, saved)
        if progress is not None:
            for _ in range(t_start):
                progress(1)
    snap_every = cfg.snapshot_every or cfg.log_every
    snap_n = min(sim.n, cfg.metrics.max_points)
    images = sim.target.image_shape is not None
    track = cfg.metrics.divergences is True or (cfg.metrics.divergences == "auto" and sim.generator is not None
                                                and not images)
    # two-sample estimators (and the JS mixture) compare samples of one size: with divergences
    # tracked, the target sample has as many points as the generated one
    ref_n = snap_n if track else min(sim.target.default_batch or cfg.metrics.max_points, cfg.metrics.max_points)
    if track:
        from .metrics.divergences import tracked

    def visible():
        return torch.where(st.alive[:b, None, None], st.x[:b], torch.nan)

    for t in range(t_start, cfg.steps + 1):
        if t % cfg.log_every == 0 or t == cfg.steps:
            ref = sim.target.sample(st.streams["metrics"], ref_n)
            # with divergences tracked, W1 comes from their pooled distance matrix
            vals = order_parameters(visible(), sim.target, None if track else ref[:b], cfg.metrics.max_points)
            if track:
                div, out.divergence_methods = tracked(sim, st, ref, b, vals)
                vals = {**vals, **div}
            keys = [*ORDER_PARAMETERS, *(k for k in vals if k not in ORDER_PARAMETERS and k != "mode_hist")]
            for i, seed in enumerate(seeds):
                row = {"member": i, "seed": seed, "step": t, **{k: float(vals[k][i]) for k in keys}}
                if "mode_hist" in vals:
                    row["mode_hist"] = vals["mode_hist"][i].tolist()
                out.metrics.append(row)
        if t % snap_every == 0 or t == cfg.steps:
            out.snapshot_steps.append(t)
            out.snapshots.append(visible()[:, :snap_n].cpu().numpy())
        if t == cfg.steps:
            break
        advance(sim, st)
        if progress is not None:
            progress(1)
        if checkpoint is not None and t + 1 < cfg.steps and checkpoint.due(t + 1):
            checkpoint.save(st, out, t + 1)
    out.diverged_step = st.diverged_step[:b].numpy()
    out.final_particles = visible().cpu().numpy()
    out.state = st
    return out


# ----------------------------------------------------------------------------- phase
def classify(series: dict[str, np.ndarray], n_modes: int, scale: float, pcfg: C.PhaseConfig, diverged: bool) -> str:
    """Final phase of one member from its logged order parameters (arrays over logged steps).

    Rule (docs/phases.md): ``diverged`` if the run produced non-finite values or blew up;
    otherwise over the last ``window`` fraction of logged steps (at least two points):
    ``collapsed`` if the mean coverage_kl exceeds ``collapse_kl`` (default 0.5 log K);
    ``converged`` if mean_dist moved by at most ``settle_tol * scale`` and the final
    on_mode fraction is at least ``on_mode``; else ``oscillating`` (not settled on the target).
    Targets without modes (``n_modes = 0``) judge settling on w1 and skip the coverage tests.
    """
    if diverged:
        return "diverged"
    md = np.asarray(series["mean_dist" if n_modes > 0 else "w1"], dtype=float)
    if md.size == 0 or not np.isfinite(md).all():
        return "diverged"
    w = max(2, math.ceil(pcfg.window * md.size))
    w = min(w, md.size)
    kl = np.asarray(series["coverage_kl"], dtype=float)[-w:]
    limit = pcfg.collapse_kl if pcfg.collapse_kl is not None else 0.5 * math.log(max(n_modes, 1))
    if n_modes > 1 and kl.mean() > limit:
        return "collapsed"
    settled = (md[-w:].max() - md[-w:].min()) <= pcfg.settle_tol * scale
    if settled and (n_modes == 0 or float(series["on_mode"][-1]) >= pcfg.on_mode):
        return "converged"
    return "oscillating"


def member_tables(sim: Simulation, raw: SimOutput):
    """``(metrics, results)`` DataFrames of a simulation: the logged series with a ``member``
    column, and one row per member with its final order parameters (the last logged values before
    any divergence), ``final_step``, ``phase`` and ``diverged_step``; for image targets also
    ``samples_uint8``, the member's first 16 final images as 0-255 integers (sample grids of a
    sweep or search, whose store keeps no trajectories)."""
    import pandas as pd

    metrics = pd.DataFrame(raw.metrics)
    target = sim.target
    n_modes = 0 if target.modes is None else int(target.modes.shape[0])
    rows = []
    for i, (seed, series) in enumerate(zip(raw.seeds, (g for _, g in metrics.groupby("member", sort=True)))):
        series = series.sort_values("step")
        div = int(raw.diverged_step[i])
        phase = classify({k: series[k].to_numpy() for k in ORDER_PARAMETERS}, n_modes, target.scale, sim.cfg.phase, div >= 0)
        last = (series if div < 0 else series[series.step < div]).iloc[-1]
        rows.append({"member": i, "seed": seed, **{k: float(last[k]) for k in ORDER_PARAMETERS},
                     "final_step": int(last["step"]), "phase": phase, "diverged_step": div})
    results = pd.DataFrame(rows)
    if target.image_shape is not None:
        x = np.nan_to_num(raw.final_particles[:, :16], nan=0.0)
        results["samples_uint8"] = list(np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).reshape(len(x), -1))
    return metrics, results
