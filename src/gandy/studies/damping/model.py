"""Critical damping (docs/model.md, "Critical damping"): linear theory, the Jacobian of the whole update map,
and measured convergence of several penalty weights run as one batched simulation.

Linear theory. Point-mass (or one-Gaussian) target mu_P, linear critic f(x) = w.x + c trained by
SGD (rate eta_D, weight decay wd) on the ipm game, a penalty whose gradient on a linear critic is
``friction * lambda * w`` (sobolev: lambda(|w|^2 - 1) -> friction 2; r1, r2: lambda/2 |w|^2 ->
friction 1), and a kernel mode of eigenvalue kappa (the centre of mass: kappa = g1 + (N-1) g2,
or the mean row sum of K; the relative modes: g1 - g2). With e = mu_P - mu_Q::

    dw/dt = eta_D (e - (friction lambda + wd) w),    de/dt = -eta_G kappa w
    e'' + (friction lambda + wd) eta_D e' + eta_G eta_D kappa e = 0

omega_0^2 = eta_G eta_D kappa, damping ratio zeta = (friction lambda + wd) eta_D / (2 omega_0),
critical at lambda_c = (2 sqrt(eta_G kappa / eta_D) - wd) / friction. With finite steps the loop
is the linear map (w, e) -> A (w, e) below, whose spectral radius sets the decay per step; its
optimum moves away from lambda_c as the steps grow.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch

from gandy.core.atomic import write_atomic
from gandy.core.kernels import TwoNumber
from gandy.core.lazy import LazyModule
from gandy.core.objectives import LINEAR_FRICTION
from gandy.core.optim import BatchedOptimizer
from gandy.core.step import MemberValues, Simulation, State, advance, start
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.runs.loop import drive
from gandy.runs.members import member_values
from gandy.runs.store import atomic_dir, prepare_out, write_parquet
from gandy.studies.damping.figures import plot_damping

optimize = LazyModule("scipy.optimize")  # 0.8 s of start-up, paid by the first damping scan
sparse_linalg = LazyModule("scipy.sparse.linalg")


# ----------------------------------------------------------------------------- theory
@dataclass(frozen=True)
class LinearModel:
    """The linearised critic-generator pair of one kernel mode (see the module docstring)."""

    eta_g: float
    eta_d: float
    kappa: float
    friction: float
    weight_decay: float = 0.0
    order: str = "alternating"

    def gamma(self, lam):
        """Friction coefficient (friction * lambda + wd) * eta_D of the oscillator."""
        return (self.friction * np.asarray(lam, float) + self.weight_decay) * self.eta_d

    @property
    def omega0(self) -> float:
        return math.sqrt(self.eta_g * self.eta_d * self.kappa)

    def zeta(self, lam):
        return self.gamma(lam) / (2 * self.omega0)

    @property
    def lambda_c(self) -> float:
        """Critical penalty weight in continuous time (zeta = 1)."""
        return (2 * math.sqrt(self.eta_g * self.kappa / self.eta_d) - self.weight_decay) / self.friction

    def continuous_eigenvalues(self, lam) -> np.ndarray:
        """``(..., 2)`` complex roots of s^2 + gamma s + omega0^2."""
        g = self.gamma(lam)
        disc = np.sqrt((g**2 - 4 * self.omega0**2).astype(complex))
        return np.stack([(-g + disc) / 2, (-g - disc) / 2], axis=-1)

    def continuous_decay(self, lam):
        """Decay rate per unit time (per step, since each step is one unit of time)."""
        return -self.continuous_eigenvalues(lam).real.max(-1)

    def step_matrix(self, lam) -> np.ndarray:
        """``(..., 2, 2)`` one-step map of (w, e) along one coordinate, for the loop's order."""
        lam = np.asarray(lam, float)
        a = 1 - self.gamma(lam)
        k = self.eta_g * self.kappa
        A = np.empty(lam.shape + (2, 2))
        A[..., 0, 0], A[..., 0, 1] = a, self.eta_d
        if self.order == "alternating":  # critic first, then the particles see the new critic
            A[..., 1, 0], A[..., 1, 1] = -k * a, 1 - k * self.eta_d
        else:
            A[..., 1, 0], A[..., 1, 1] = -k, 1.0
        return A

    def discrete_eigenvalues(self, lam) -> np.ndarray:
        return np.linalg.eigvals(self.step_matrix(lam))

    def spectral_radius(self, lam):
        return np.abs(self.discrete_eigenvalues(lam)).max(-1)

    def discrete_decay(self, lam):
        """-log of the spectral radius: decay of |e| per step."""
        return -np.log(self.spectral_radius(lam))

    def best_lambda(self) -> float:
        """The penalty weight that minimises the one-step map's spectral radius."""
        hi = 4 * max(self.lambda_c, 1e-12) + 2 / (self.friction * self.eta_d)
        grid = np.linspace(0, hi, 4001)
        i = int(np.argmin(self.spectral_radius(grid)))
        lo, up = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        r = optimize.minimize_scalar(lambda x: float(self.spectral_radius(x)), bounds=(lo, up), method="bounded",
                            options={"xatol": 1e-10 * max(up, 1e-12)})
        return float(r.x)


@dataclass(frozen=True)
class CurvedModel(LinearModel):
    """The effective theory with the critic's curvature: a nonlinear critic's gradient differs
    between the data and the particles, by H (mu_Q - mu_P) = -H e near equilibrium (H the Hessian
    of f at the data, ``curvature`` = e^ . H e^ along the error's direction). With u = grad f(data),
    v = grad f(particles) = u - h e (the force), and ``eta_d`` already scaled by theta::

        critic step:    u' = u + eta_D (e - friction lambda p),  p = v (``at_data`` False: sobolev,
                        r2, at the particles) or p = u (``at_data`` True: r1, at the data)
        particle step:  e' = e - eta_G kappa v'

    In continuous time: e'' + gamma e' + omega^2 e = 0 with gamma = friction lambda eta_D - eta_G
    kappa h and omega^2 = eta_G kappa eta_D (1 - friction lambda h) for a penalty at the data,
    eta_G kappa eta_D at the particles. A penalty at the data thus also stiffens the game (h < 0:
    a critic peaked at the data) and its critical weight grows with |h|; at the particles the
    curvature only adds the small friction -eta_G kappa h. With h = 0 this is :class:`LinearModel`."""

    curvature: float = 0.0
    at_data: bool = False

    def gamma(self, lam):
        return super().gamma(lam) - self.eta_g * self.kappa * self.curvature

    def omega2(self, lam):
        """omega^2 of the continuous-time oscillator (depends on lambda for a penalty at the data)."""
        lam = np.asarray(lam, float)
        stiff = 1 - self.friction * lam * self.curvature if self.at_data else np.ones_like(lam)
        return self.eta_g * self.kappa * self.eta_d * stiff

    @property
    def lambda_c(self) -> float:
        """The weight with gamma^2 = 4 omega^2 (zeta = 1; weight decay left out), the positive root
        of a^2 l^2 + (2 c f h [at the data] - 2 a b) l + b^2 - 4 c = 0, a = f eta_D, b = eta_G kappa h,
        c = eta_G kappa eta_D."""
        a, b, c = self.friction * self.eta_d, self.eta_g * self.kappa * self.curvature, self.eta_g * self.kappa * self.eta_d
        lin = (4 * c * self.friction * self.curvature if self.at_data else 0.0) - 2 * a * b
        return float((-lin + math.sqrt(lin**2 - 4 * a**2 * (b**2 - 4 * c))) / (2 * a**2))

    def zeta(self, lam):
        return self.gamma(lam) / (2 * np.sqrt(self.omega2(lam)))

    def continuous_eigenvalues(self, lam) -> np.ndarray:
        g, w2 = self.gamma(lam), self.omega2(lam)
        disc = np.sqrt((g**2 - 4 * w2).astype(complex))
        return np.stack([(-g + disc) / 2, (-g - disc) / 2], axis=-1)

    def step_matrix(self, lam) -> np.ndarray:
        """``(..., 2, 2)`` one-step map of (u, e) along the error's direction."""
        lam = np.asarray(lam, float)
        fl, h, k = self.friction * lam, self.curvature, self.eta_g * self.kappa
        a = 1 - self.gamma(lam) - k * h  # 1 - (friction lambda + wd) eta_D
        b = self.eta_d * (1 + (0.0 if self.at_data else fl * h))
        A = np.empty(lam.shape + (2, 2))
        A[..., 0, 0], A[..., 0, 1] = a, b
        if self.order == "alternating":  # the particles move with v' = u' - h e
            A[..., 1, 0], A[..., 1, 1] = -k * a, 1 + k * h - k * b
        else:  # with v = u - h e
            A[..., 1, 0], A[..., 1, 1] = -k, 1 + k * h
        return A


def kernel_modes(sim) -> dict:
    """Eigenvalues of the kernel's centre-of-mass and (largest) relative mode."""
    k = sim.kernel
    if isinstance(k, TwoNumber):
        return {"com": k.g1 + (sim.n - 1) * k.g2, "relative": k.g1 - k.g2}
    K = k.dense().double().cpu()
    n = K.shape[0]
    P = torch.eye(n, dtype=torch.float64, device=K.device) - 1.0 / n
    return {"com": float(K.sum() / n), "relative": float(torch.linalg.eigvalsh(P @ K @ P).max())}


def critic_geometry(sim, params: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's input-gradient tangent kernel and its curvature at one point, in float64.

    ``params``: one critic's parameters (each with a leading member axis of 1); ``x``: ``(d,)``.
    Returns ``theta = J J^T`` with ``J = d(grad_x f(x)) / d(trainable params)`` and the Hessian
    ``H = d^2 f / dx^2`` at x, both ``(d, d)``. For the linear critic theta = I and H = 0."""
    params = {k: v.detach().double().requires_grad_(k not in sim.critic.frozen) for k, v in params.items()}
    train = [v for k, v in params.items() if k not in sim.critic.frozen]
    x = x.double().reshape(1, 1, -1).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(sim.critic.forward(params, x).sum(), x, create_graph=True)
    rows, hess = [], []
    for a in range(g.shape[-1]):
        ga = torch.autograd.grad(g[0, 0, a], [*train, x], retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(ga[:-1], train)]))
        hess.append(ga[-1].reshape(-1) if ga[-1] is not None else torch.zeros(g.shape[-1], dtype=torch.float64))
    J = torch.stack(rows)
    return J @ J.T, torch.stack(hess)


def critic_gradient_kernel(sim, seed: int = 0) -> float:
    """Mean eigenvalue of the critic's input-gradient tangent kernel at initialisation (seed
    ``seed``), at the target's mean: theta = J J^T with J = d(grad_x f(mu_P)) / d(params), a
    (d x d) matrix (:func:`critic_geometry`).

    Near equilibrium a critic step moves grad_x f by eta_D theta (e - friction lambda grad_x f), so
    a nonlinear critic behaves like the linear one with eta_D -> eta_D theta (theta = 1 for the
    linear critic). This is the effective theory used for nonlinear critics.
    """
    theta, _ = critic_geometry(sim, start(sim, [seed]).params, sim.target.mean)
    return float(torch.linalg.eigvalsh(theta).mean())


def linear_model(cfg: C.Config, mode: str = "com", effective: bool = False, seed: Optional[int] = None) -> LinearModel:
    """The linear theory of a config, or a ConfigError naming what it lacks. ``effective``: allow
    any critic, with eta_D scaled by :func:`critic_gradient_kernel` (exactly 1 for linear) of the
    critic drawn with ``seed`` (default the config's first seed)."""
    if cfg.critic.name != "linear" and not effective:
        raise C.ConfigError("critic.name", "the linear theory needs critic: {name: linear}")
    if cfg.target.name not in ("point_mass",) and not (cfg.target.name == "gaussian_mixture" and len(cfg.target.means) == 1):
        raise C.ConfigError("target.name", "the linear theory needs a point_mass (or one-Gaussian) target")
    if cfg.objective != "ipm":
        raise C.ConfigError("objective", "the linear theory is derived for the ipm game")
    if cfg.optim.critic.name != "sgd" or cfg.optim.critic.steps != 1:
        raise C.ConfigError("optim.critic", "the linear theory needs one sgd critic step per particle step")
    if cfg.penalty.name not in LINEAR_FRICTION:
        raise C.ConfigError("penalty.name", f"no linear theory for {cfg.penalty.name}; valid: {', '.join(LINEAR_FRICTION)}")
    if cfg.optim.generator.force != "per_particle":
        raise C.ConfigError("optim.generator.force", "the linear theory uses force: per_particle")
    sim = build(cfg)
    theta = critic_gradient_kernel(sim, cfg.seeds[0] if seed is None else seed) if cfg.critic.name != "linear" else 1.0
    return LinearModel(cfg.optim.generator.lr, cfg.optim.critic.lr * theta, kernel_modes(sim)[mode],
                       LINEAR_FRICTION[cfg.penalty.name], cfg.optim.critic.weight_decay, cfg.optim.order)


# ----------------------------------------------------------------------------- the update map
def float64_copy(obj):
    """A copy of ``obj`` (a :class:`gandy.core.step.Simulation` or any part of one) whose floating
    tensors are float64: every tensor the core's own objects hold (target, kernel, critic, the
    per-member defaults) is converted; everything else (specs' numbers, functions, the config) is
    shared. The core runs in float32; the Jacobian of its update map is taken in float64 on such a
    copy, so that finite differences and eigenvalues are accurate to ~1e-12 instead of ~1e-4."""
    if isinstance(obj, torch.Tensor):
        return obj.double() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: float64_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(float64_copy(v) for v in obj)
    if isinstance(obj, torch.nn.Module):
        return copy.deepcopy(obj).double()
    if isinstance(obj, Simulation):
        out = copy.copy(obj)
        for f in dataclasses.fields(obj):
            object.__setattr__(out, f.name, float64_copy(getattr(obj, f.name)))
        return out
    if type(obj).__module__.startswith("gandy.core.") and hasattr(obj, "__dict__") and not callable(obj):
        out = copy.copy(obj)
        out.__dict__.update({k: float64_copy(v) for k, v in vars(obj).items()})
        return out
    return obj


@dataclass(frozen=True)
class UpdateMap:
    """The loop's one-step map of one member as a function of a flat float64 vector, the real
    update (:func:`gandy.core.step.advance`) on a float64 copy of the simulation (:func:`float64_copy`).

    z = (the critic's trainable parameters, in the order of ``st.params``, then the particles),
    flattened. ``state(z)``: a fresh state of the member at z, with everything else as in the state
    the map was taken at (frozen critic parameters, per-member numbers, step count, the random
    streams at their counters: target samples, penalty draws and dropout masks are the same at
    every call: fixed noise). ``f(z)``: z after one differentiable ``advance`` from ``state(z)``
    (``create_graph``). ``z0``: the state it was taken at. ``sim``: the float64 simulation."""

    sim: Simulation
    z0: torch.Tensor
    state: Callable[[torch.Tensor], State]
    pack: Callable[[State], torch.Tensor]

    def f(self, z: torch.Tensor) -> torch.Tensor:
        """z after one step: ``(D,)`` float64 -> ``(D,)``, differentiable in z."""
        return self.pack(advance(self.sim, self.state(z), create_graph=True))


def update_map(sim: Simulation, st: State, member: int = 0) -> UpdateMap:
    """The one-step map of member ``member`` of the run state ``st`` of ``sim`` (see :class:`UpdateMap`).

    Everything the real step honours is in it: the critic's optimiser step with its weight decay
    and clip, ``startup_steps`` at step 0, ``reset``, dropout (fixed masks, from the stream), the
    step order, the per-member g1, g2, learning rates and penalty weight. The gradients are
    autograd's (``engine: eager``) whatever engine ran the simulation: the compiled and closed-form
    engines compute the same update, to rounding. What cannot be differentiated is refused, its
    field named, here (the map is evaluated once at z0): an adam or rmsprop critic
    (``optim.critic.name``: their moments are updated in place), a network generator
    (``generator.name``)."""
    sim64 = float64_copy(dataclasses.replace(sim, engine=None))
    i = member
    frozen = {k: v[i:i + 1].double() for k, v in st.params.items() if k in sim.critic.frozen}
    shapes = {k: v[i:i + 1].shape for k, v in st.params.items() if k not in sim.critic.frozen}
    xshape = st.x[i:i + 1].shape
    members = MemberValues(**{f.name: None if (v := getattr(st.members, f.name)) is None else v[i:i + 1].double()
                              for f in dataclasses.fields(MemberValues)})
    streams = {}
    for name, s in st.streams.items():
        streams[name] = copy.copy(s)
        streams[name].keys = s.keys[i:i + 1]

    def state(z: torch.Tensor) -> State:
        params, j = dict(frozen), 0
        for k, shape in shapes.items():
            n = math.prod(shape)
            params[k] = z[j:j + n].reshape(shape)
            j += n
        x = z[j:].reshape(xshape)
        trainable = {k: params[k] for k in shapes}
        opt = BatchedOptimizer(sim64.critic_optim, trainable, members.critic_lr)
        fresh = {k: copy.copy(s) for k, s in streams.items()}  # each at the counter of st's
        return State(x, {k: params[k] for k in st.params}, opt, torch.ones(1, dtype=torch.bool, device=z.device),
                     torch.full((1,), -1, dtype=torch.int64), fresh, members, t=st.t, x0=x,
                     force_norm=torch.full((1,), float("nan"), dtype=torch.float64, device=z.device))

    def pack(s: State) -> torch.Tensor:
        return torch.cat([s.params[k].reshape(-1) for k in shapes] + [s.x.reshape(-1)])

    z0 = torch.cat([st.params[k][i:i + 1].double().reshape(-1) for k in shapes] + [st.x[i:i + 1].double().reshape(-1)])
    um = UpdateMap(sim64, z0, state, pack)
    um.f(z0.clone().requires_grad_(True))  # refuses here, naming the field, what it cannot differentiate
    return um


def jacobian_spectrum(sim: Simulation, st: State, member: int = 0, dense_max: int = 1500, k: int = 6) -> np.ndarray:
    """Eigenvalues of the Jacobian of the whole one-step map (critic and particles together,
    :func:`update_map`) at member ``member`` of the run state ``st``.

    Dense (torch.autograd.functional.jacobian, then numpy) up to ``dense_max`` state dimensions;
    above, the ``k`` of largest modulus by Arnoldi (scipy's eigs) on Jacobian-vector products.
    """
    um = update_map(sim, st, member)
    z0 = um.z0
    if z0.numel() <= dense_max:
        J = torch.autograd.functional.jacobian(um.f, z0)
        return np.linalg.eigvals(J.cpu().numpy())

    def mv(v):
        _, jv = torch.autograd.functional.jvp(um.f, z0, torch.as_tensor(np.real(v), dtype=torch.float64, device=z0.device).reshape(-1))
        return jv.cpu().numpy()

    op = sparse_linalg.LinearOperator((z0.numel(), z0.numel()), matvec=mv, dtype=np.float64)
    return sparse_linalg.eigs(op, k=k, which="LM", return_eigenvectors=False, tol=1e-8)


def transverse_radius(eigs: np.ndarray, tol: float = 1e-7) -> float:
    """Spectral radius over the eigenvalues not equal to 1: eigenvalue 1 belongs to directions
    along a family of equilibria (the critic's bias in ipm, particle shapes a linear critic cannot
    see), which neither grow nor decay."""
    e = np.asarray(eigs)
    moving = e[np.abs(e - 1) > tol]
    return float(np.abs(moving).max()) if moving.size else 1.0


# ----------------------------------------------------------------------------- measurement
def envelope_decay(err: np.ndarray, hi: float = 1e-1, lo: float = 1e-5) -> float:
    """Late-time decay rate per step of ``err`` (relative to err[0]): slope of log of the future
    envelope max_{s >= t} err_s over the steps where it lies between ``lo`` and ``hi``."""
    r = err / err[0]
    env = np.maximum.accumulate(r[::-1])[::-1]
    sel = (env < hi) & (env > lo) & np.isfinite(env)
    if sel.sum() < 5:
        return float("nan")
    t = np.arange(len(r))[sel]
    return float(-np.polyfit(t, np.log(env[sel]), 1)[0])


def residual_floor(err: np.ndarray, tail: float = 0.1) -> float:
    """The level ``err`` (relative to err[0]) has settled on: its largest value over the last
    ``tail`` of the run where that is at least 0.8 of its largest value over the ``tail`` before
    (a plateau); 0 while it is still falling faster than that (no floor reached); inf if it blew up."""
    r = err / err[0]
    k = max(1, int(math.ceil(tail * len(r))))
    last, before = r[-k:], r[-2 * k:-k]
    if not (np.isfinite(last).all() and np.isfinite(before).all()):
        return math.inf
    return float(last.max()) if len(before) and last.max() >= 0.8 * before.max() else 0.0


def judged_tolerance(floors, tol: float, factor: float = 3.0, settled: float = 0.01) -> float:
    """The tolerance a scan's convergence is judged at: ``tol``, or ``factor`` times the median
    floor of the runs that settled on one (a plateau below ``settled``) if that is larger. A
    nonlinear critic leaves a residual |e| of order 1e-3 of the start even at its best weight; a
    fixed tolerance below it would rank weights by noise in that floor. Runs still falling (floor
    0) or stuck far from the target (floor >= ``settled``, e.g. wgan_gp's) do not set it."""
    f = np.asarray([v for v in floors if np.isfinite(v) and 0 < v < settled], dtype=float)
    return float(max(tol, factor * np.median(f))) if f.size else float(tol)


def steps_to(err: np.ndarray, tol: float) -> int:
    """First step after which err stays at or below tol * err[0]; -1 if never."""
    r = err / err[0]
    bad = np.nonzero(~(r <= tol))[0]
    if bad.size == 0:
        return 0
    return int(bad[-1] + 1) if bad[-1] + 1 < len(r) else -1


def run_damping(cfg: C.Config, weights: list[float], out: Optional[Path] = None, tol: float = 1e-3,
                replace: bool = False, figures: bool = True, seed: Optional[int] = None) -> tuple[pd.DataFrame, dict]:
    """Run ``weights`` as one batched simulation (members share the seed, so the same start), and
    compare measured convergence with theory. Returns ``(table, summary)``; writes ``out``.

    Convergence is judged at ``tol`` or, where the scan's runs settle on a residual floor above it
    (nonlinear critics), at three times the median floor (:func:`judged_tolerance`; recorded as
    ``tol_used``); ``decay_rate`` is fitted over the transient only and is NaN, with
    ``converged: false``, for a weight that never converged."""
    if not weights or any((not math.isfinite(w)) or w < 0 for w in weights):
        raise C.ConfigError("weights", "need one or more finite, non-negative penalty weights")
    if cfg.penalty.name == "none":
        raise C.ConfigError("penalty.name", "choose a penalty to vary its weight")
    sim = build(cfg, members=len(weights))
    seed = cfg.seeds[0] if seed is None else seed
    cfgs = [cfg.model_copy(update={"penalty": cfg.penalty.model_copy(update={"weight": float(w)})}) for w in weights]
    st = start(sim, [seed] * len(weights), member_values(cfgs, sim.device))
    if out is not None:
        prepare_out(Path(out), "damping", replace=replace)
    update_map(sim, st)  # an option the Jacobian cannot differentiate is refused before the run
    kind = "linear critic" if cfg.critic.name == "linear" else "effective: eta_D scaled by the critic's gradient kernel"
    try:
        model = linear_model(cfg, effective=True, seed=seed)
        rel_model = linear_model(cfg, "relative", effective=True, seed=seed)
    except C.ConfigError as e:
        model, rel_model, why = None, None, str(e)
    mu = sim.target.mean.double()
    e0 = (mu - st.x.double().mean(1))[0]  # every member starts from the same state
    e_hat = e0 / e0.norm()
    errs = []  # |mean(x) - mu| per member at every step
    drive(sim, st, cfg.steps, [(1, lambda t: errs.append(((st.x.double().mean(1) - mu).norm(dim=-1)).cpu().numpy()))])
    err = np.stack(errs, 1)  # (B, T + 1)
    floors = [residual_floor(err[i]) if bool(st.alive[i]) else math.inf for i in range(len(weights))]
    tol_used = judged_tolerance(floors, tol)
    rows = []
    for i, w in enumerate(weights):
        alive = bool(st.alive[i])
        theta, hess = critic_geometry(sim, {k: v[i:i + 1] for k, v in st.params.items()}, mu) if alive else (None, None)
        steps = steps_to(err[i], tol_used) if alive else -1
        converged = steps >= 0
        spec = jacobian_spectrum(sim, st, i) if alive else np.array([np.nan])
        rho = transverse_radius(spec) if alive else float("nan")
        rows.append({
            "weight": float(w),
            "steps_to_converge": steps,
            "converged": converged,
            "tol_used": tol_used,
            "residual_floor": floors[i],
            # fitted over the transient only: from 10 % of the start down to ten times the floor
            "decay_rate": envelope_decay(err[i], lo=max(1e-5, 10 * floors[i])) if converged else float("nan"),
            "theory_decay_rate": float(model.discrete_decay(w)) if model else float("nan"),
            "spectral_radius": rho,
            "jacobian_decay_rate": -math.log(rho) if alive and rho > 0 else float("nan"),
            "theory_spectral_radius": float(model.spectral_radius(w)) if model else float("nan"),
            "continuous_decay_rate": float(model.continuous_decay(w)) if model else float("nan"),
            "zeta": float(model.zeta(w)) if model else float("nan"),
            "diverged": not alive,
            "theta_final": float(torch.linalg.eigvalsh(theta).mean()) if alive else float("nan"),
            "curvature_final": float(e_hat @ hess @ e_hat) if alive else float("nan"),
            "eigenvalues": [[float(z.real), float(z.imag)] for z in np.atleast_1d(spec)],
        })
    table = pd.DataFrame(rows)
    ok = table[(table.steps_to_converge >= 0) & ~table.diverged]
    curved = curved_model(cfg, model, ok) if model is not None and len(ok) else None
    table.insert(table.columns.get_loc("spectral_radius"), "curved_decay_rate",
                 [float(curved.discrete_decay(w)) if curved else float("nan") for w in weights])
    summary = {
        "lambda_c": model.lambda_c if model else None,
        "lambda_best_theory": model.best_lambda() if model else None,
        "lambda_best": float(ok.loc[ok.steps_to_converge.idxmin(), "weight"]) if len(ok) else None,
        "tol": tol, "tol_used": tol_used, "steps": cfg.steps, "seed": seed, "penalty": cfg.penalty.name, "critic": cfg.critic.name,
        "theory": ({"kind": kind, "eta_d_effective": model.eta_d, "kappa_com": model.kappa,
                    "kappa_relative": rel_model.kappa, "omega0": model.omega0,
                    "friction": model.friction, "lambda_c_relative": rel_model.lambda_c, "order": model.order}
                   if model else {"available": False, "why": why}),
        "curved": ({"theta": curved.eta_d / cfg.optim.critic.lr, "curvature": curved.curvature, "at_data": curved.at_data,
                    "lambda_c": curved.lambda_c, "lambda_best": curved.best_lambda()} if curved else None),
    }
    if out is not None:
        write_damping(Path(out), C.dump_config(cfg), damping_tables(table, err, weights, model), summary,
                      draw=plot_damping if figures else None)
    return table, summary


AT_DATA = ("r1",)
"""The penalties of LINEAR_FRICTION evaluated at the data (the others, sobolev and r2, at the particles)."""


def curved_model(cfg: C.Config, model: LinearModel, converged: pd.DataFrame) -> CurvedModel:
    """The effective theory with curvature (:class:`CurvedModel`) of a finished scan: theta and the
    curvature h are the medians of ``theta_final`` and ``curvature_final`` (the critic at the data
    at the end of the run, near an equilibrium) over the weights that converged."""
    theta = float(np.median(converged.theta_final))
    return CurvedModel(model.eta_g, cfg.optim.critic.lr * theta, model.kappa, model.friction, model.weight_decay, model.order,
                       curvature=float(np.median(converged.curvature_final)), at_data=cfg.penalty.name in AT_DATA)


def damping_tables(table: pd.DataFrame, err: np.ndarray, weights, model) -> dict:
    """The tables of a damping directory: ``damping`` (one row per weight), ``trajectories`` (the
    centre-of-mass error per weight and step) and, with a linear model, ``theory`` (its curves on a
    fine grid of weights)."""
    tables = {"damping": table,
              "trajectories": pd.DataFrame({"weight": np.repeat(weights, err.shape[1]),
                                            "step": np.tile(np.arange(err.shape[1]), len(weights)),
                                            "com_error": err.reshape(-1)})}
    if model is not None:
        lc = max(model.lambda_c, 1e-12)
        grid = np.geomspace(lc / 30, lc * 30, 600)
        eig = model.discrete_eigenvalues(grid)
        tables["theory"] = pd.DataFrame({
            "weight": grid, "spectral_radius": model.spectral_radius(grid), "decay_rate": model.discrete_decay(grid),
            "continuous_decay_rate": model.continuous_decay(grid),
            "eig1_re": eig[:, 0].real, "eig1_im": eig[:, 0].imag, "eig2_re": eig[:, 1].real, "eig2_im": eig[:, 1].imag})
    return tables


def write_damping(out: Path, config_text: str, tables: dict[str, pd.DataFrame], summary: dict,
                  draw: Optional[Callable[[Path], object]] = None) -> Path:
    """Write a damping directory atomically: ``config.yaml``, ``NAME.parquet`` for each table
    (``damping``: the columns of :data:`gandy.views.report.DAMPING_COLUMNS`; ``trajectories``; ``theory``), ``summary.json``
    and, with ``draw(dir)``, its figures."""
    with atomic_dir(out, "damping") as tmp:
        write_atomic(tmp / "config.yaml", config_text.encode())
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
        write_atomic(tmp / "summary.json", json.dumps(summary, indent=2).encode())
        if draw is not None:
            draw(tmp)
    return out
