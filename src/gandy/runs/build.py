"""Build a :class:`gandy.core.step.Simulation` from a config, with every cross-check between its
parts (dimensions, the particle optimiser, image metrics, pixels, memory) made before anything
large is allocated."""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from gandy.core import closed_form, compiled, fused
from gandy.core.errors import ConfigError
from gandy.core.images.evaluate import ImageMetricsSpec, check_inception
from gandy.core.kernels import Kernel, build_kernel
from gandy.core.metrics.phases import PhaseRule
from gandy.core.nets import build_critic, build_generator, critic_entry
from gandy.core.objectives import GAMES, PENALTIES, SQUARED_GRADIENT, PenaltySpec
from gandy.core.optim import OptimSpec
from gandy.core.step import InitSpec, NetSpec, Simulation, StepSpec, init_particles
from gandy.core.targets import Target, build_target
from gandy.runs import config as C
from gandy.runs.budget import critic_widths, require_memory
from gandy.runs.members import member_values


@dataclass(frozen=True)
class Sizes:
    """What the memory estimate (:func:`gandy.runs.budget.memory_parts`) reads of a simulation,
    known before its kernel (an N x N matrix for most) is built."""

    cfg: C.Config
    device: torch.device
    target: Target
    critic: object
    generator: Optional[object]
    n: int
    d: int
    critic_batch: int


@dataclass(frozen=True)
class LoopSpec:
    """The schedule :func:`gandy.runs.loop.simulate` runs: ``steps``; order parameters every
    ``log_every`` steps and snapshots of the first ``snapshot_points`` particles every
    ``snapshot_every``, both at the last step too; divergences ``tracked`` at every logged step
    (``metrics.divergences``: true, or auto for a network generator on a non-image target); the
    target sample of a logged step holds ``reference`` points (as many as the snapshot where
    divergences are tracked: their two-sample estimators compare samples of one size).
    ``horizon``: the config's ``steps``, at which ``phase`` is judged; with ``metrics.phase_2x``
    the loop runs ``steps`` = 2 x ``horizon`` and also logs and snapshots at ``horizon``."""

    steps: int
    log_every: int
    snapshot_every: int
    snapshot_points: int
    max_points: int
    tracked: bool
    reference: int
    horizon: int


def run_steps(cfg: C.Config) -> int:
    """The steps a config's loop runs: ``steps``, twice that with ``metrics.phase_2x``."""
    return cfg.steps * (2 if cfg.metrics.phase_2x else 1)


def loop_spec(cfg: C.Config, target: Target, n: int, network: bool) -> LoopSpec:
    """The loop's schedule of a config for ``n`` particles of ``target`` (``network``: a network generator)."""
    most = cfg.metrics.max_points
    tracked = cfg.metrics.divergences is True or (cfg.metrics.divergences == "auto" and network
                                                  and target.image_shape is None)
    points = min(n, most)
    return LoopSpec(run_steps(cfg), cfg.log_every, cfg.snapshot_every or cfg.log_every, points, most, tracked,
                    points if tracked else min(target.default_batch or most, most), cfg.steps)


@dataclass
class BuiltSimulation(Simulation):
    """A :class:`gandy.core.step.Simulation` with the config it was built from (``cfg``), for the
    runs layer's own reading (logging, metrics, outputs), and the loop's schedule (``loop``); the
    core reads neither."""

    cfg: C.Config = dataclasses.field(kw_only=True)
    loop: LoopSpec = dataclasses.field(kw_only=True)
    single: bool = dataclasses.field(default=False, kw_only=True)
    """Built for one config's own run (its seeds the batch; not a sweep's chunk): ``auto`` picks
    the engine by estimated time alone, and a lone member runs unpadded unless ``engine: eager``
    is asked for by name (:func:`gandy.runs.loop.simulate`)."""


# ----------------------------------------------------------------------------- config -> core arguments
def options(section, *exclude: str) -> dict:
    """A config section's keys other than ``name`` and ``exclude``, as keyword arguments of a
    registry's builder."""
    return section.model_dump(exclude={"name", *exclude})


def target_of(section: C.TargetConfig, device="cpu") -> Target:
    """The target a ``target:`` section describes."""
    return build_target(section.name, device, **options(section))


def kernel_of(section: C.KernelConfig, n: int, d: int, device="cpu", plugins=(),
              module: Optional[torch.nn.Module] = None) -> Kernel:
    """The kernel a ``kernel:`` section describes for ``n`` particles in ``d`` dimensions;
    ``module``: an ``empirical_ntk`` module given directly (``kernel_module``)."""
    return build_kernel(section.name, n, d, device, plugins=plugins, instance=module, **options(section))


def net_spec(section) -> NetSpec:
    """A critic or generator section as a :class:`gandy.core.step.NetSpec`."""
    return NetSpec(section.name, tuple(sorted(options(section).items())))


def critic_of(section: C.CriticConfig, d: int, target, init_sampler):
    """The critic a ``critic:`` section describes (:func:`gandy.core.nets.build_critic`)."""
    return build_critic(section.name, d, target, init_sampler, **options(section))


def generator_of(section: C.GeneratorConfig, target, d: int):
    """The network generator a ``generator:`` section describes."""
    return build_generator(section.name, target, d, **options(section))


def optim_spec(section, field: str) -> OptimSpec:
    """An ``optim.critic`` / ``optim.generator`` section (``field``) as an :class:`OptimSpec`."""
    return OptimSpec(name=section.name, betas=tuple(section.betas), eps=section.eps, weight_decay=section.weight_decay,
                     alpha=section.alpha, amsgrad=bool(getattr(section, "amsgrad", False)), clip=section.clip,
                     field=field)


def penalty_spec(section: C.PenaltyConfig) -> PenaltySpec:
    """A ``penalty:`` section, less its (per-member) weight."""
    return PenaltySpec(name=section.name, on=section.on, reduce=section.reduce, perturbation=section.perturbation,
                       scale=section.scale)


def step_spec(cfg: C.Config) -> StepSpec:
    """The step's settings from ``optim`` and ``phase.blowup``."""
    o = cfg.optim
    return StepSpec(critic_steps=o.critic.steps, startup_steps=o.critic.startup_steps, reset=o.critic.reset,
                    order=o.order, force=o.generator.force, blowup=cfg.phase.blowup, matmul=cfg.matmul)


def init_spec(section: C.InitConfig) -> InitSpec:
    """A ``particles.init`` section as an :class:`InitSpec`: the fields the section has (lists as
    tuples); a field its kind lacks keeps the spec's default, which that kind never reads."""
    given = {f.name: getattr(section, f.name) for f in dataclasses.fields(InitSpec) if hasattr(section, f.name)}
    return InitSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def phase_rule(section: C.PhaseConfig) -> PhaseRule:
    """A ``phase:`` section's classification thresholds."""
    return PhaseRule(**{f.name: getattr(section, f.name) for f in dataclasses.fields(PhaseRule)})


def image_metrics_spec(section: C.ImageMetricsConfig) -> ImageMetricsSpec:
    """A ``metrics.images`` section's settings for :func:`gandy.core.images.evaluate.run_metrics`."""
    return ImageMetricsSpec(**{f.name: getattr(section, f.name) for f in dataclasses.fields(ImageMetricsSpec)})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but torch sees no CUDA device")
    return torch.device(name)



def env_threads() -> Optional[int]:
    """GANDY_THREADS (which ``gandy --threads N`` sets) as a thread count, or None where it is unset
    or not a positive whole number."""
    env = os.environ.get("GANDY_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) >= 1 else None


DEFAULT_THREADS = 1
"""Torch threads of a run where neither GANDY_THREADS nor the config's ``threads`` says (the
``gandy`` command's default too). gandy's tensors are small: a second OpenMP thread gains little,
and on a busy machine threads spinning against other processes made runs 3-8 times slower
(measured again 2026-12-04 from Python, load 4 on 2 cores: a 200-step 1-D run took 5.1 s at torch's
default of 2 threads, 0.23 s at 1; one fused Adam step 23 ms against ~20 us)."""


@contextmanager
def run_threads(cfg):
    """Torch threads for the duration of a run (restored after it): GANDY_THREADS (which ``gandy
    --threads N`` sets) where it is given, else the config's ``threads``, else
    :data:`DEFAULT_THREADS`."""
    n = env_threads() or cfg.threads or DEFAULT_THREADS
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


ENGINES: dict[str, Callable] = {"eager": lambda sim: None, "closed_form": closed_form.ClosedForm,
                                 "compiled": lambda sim: fused.with_whole_step(compiled.compiled_step(sim))}
"""``engine`` name -> what takes a built simulation's gradients (``Simulation.engine``; None: autograd)."""

COMPILE_SECONDS = 12.0
"""What ``engine: auto`` counts for compiling a batch shape on a CPU (measured 5-15 s: torch.compile's
tracing, then a C++ build of its kernels; a few seconds when torch's cache on disk already holds them)."""

STEP_COST = {  # engine -> (seconds per step whatever the batch, seconds per member-step besides matmuls)
    "eager": (1.6e-3, 2.0e-4),
    "closed_form": (1.1e-3, 3.0e-4),
    "compiled": (0.3e-3, 3.0e-5),
}
"""Rough CPU costs of a step below ``compiled.WIDE`` dimensions, from benchmarks/single_run.py and
benchmarks/sweep_batched.py (2-core AMD EPYC, 1 thread): a lone 1-D member (N = 64, width 128) takes
~2 ms a step eager (padded to two members), ~1.4 closed_form, ~0.35 compiled as one call; at 256
members ~180-350 us per member-step eager, 270-510 closed_form, 25-30 compiled. The matrix products
are counted at 50 GFLOP/s on top (:func:`eager_seconds`)."""


def engine_seconds(sim: Simulation, members: int, engine: str) -> float:
    """A rough estimate of a batch's run time with ``engine`` on a CPU: per step the engine's
    overhead, per member-step its cost (:data:`STEP_COST`) plus the critic's matrix products at
    50 GFLOP/s (for an MLP's weight matrices of sizes f_i x f_(i+1), 2 sum_i f_i f_(i+1) (2 M + 7 N)
    FLOP per critic step: the closed form's count for one hidden layer), plus
    :data:`COMPILE_SECONDS` for the compiled engine. The eager engine pads a lone member to two. It
    counts ``steps``, not the doubled steps of ``metrics.phase_2x``, so that such a run takes the
    engine a run of ``steps`` takes and its first ``steps`` are the same numbers."""
    cfg = sim.cfg
    dims = [sim.d, *critic_widths(cfg), 1]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    flops = 2 * weights * (2 * sim.critic_batch + 7 * sim.n) * cfg.optim.critic.steps
    per_step, per_member = STEP_COST[engine]
    if engine == "compiled" and not fused.applies_to(sim):
        per_step = STEP_COST["closed_form"][0]  # its pieces compiled apart, the eager ops between them
    b = max(members, 2) if engine == "eager" else members
    return cfg.steps * (per_step + b * (per_member + flops / 5e10)) + (COMPILE_SECONDS if engine == "compiled" else 0.0)


def eager_seconds(sim: Simulation, members: int) -> float:
    """:func:`engine_seconds` of the eager engine (the memory and time estimates' reference)."""
    return engine_seconds(sim, members, "eager")


def engine_runs(sim: Simulation, engine: str) -> Optional[str]:
    """Why ``engine`` cannot run the built simulation ``sim`` (None: it can): the critic's and
    penalty's registry entries, then the engine's own checks."""
    if engine == "eager":
        return None
    if engine not in critic_entry(sim.cfg.critic.name).engines:
        return f"the {engine} engine does not run the {sim.cfg.critic.name} critic"
    return (compiled.unsupported if engine == "compiled" else closed_form.unsupported)(sim)


def low_precision_runs(sim: Simulation, engine: str) -> Optional[str]:
    """Why ``engine`` cannot take ``matmul: bfloat16`` (None: it can, or the products are float32):
    only the closed form rounds its products, run eagerly or compiled from ``compiled.WIDE``
    input dimensions."""
    if sim.step.matmul == "float32":
        return None
    if (engine == "closed_form" and closed_form.unsupported(sim) is None) or (
            engine == "compiled" and compiled.compiles_closed_form(sim)):
        return None
    return (f"bfloat16 products run in the closed form only (engine closed_form, or compiled from "
            f"{compiled.WIDE} input dimensions, with an MLP critic it runs); engine {engine} on this "
            f"config computes in float32")


def choose_engine(sim: Simulation, members: int, single: bool = False) -> str:
    """The config's ``engine``; for ``auto``, the engine that runs it and is estimated fastest:

    * ``single`` (one config's own run, below ``compiled.WIDE`` dimensions): the least estimated
      time (:func:`engine_seconds`): a lone short run takes closed_form (the fewest ops), a long
      one compiled (repaying its compilation);
    * a sweep's chunks (and wide inputs): ``compiled`` where the eager run would take at least
      :data:`COMPILE_AFTER_SECONDS`, else ``closed_form`` for wide inputs where it applies, else
      ``eager``; so that chunks of one sweep, cut into any sizes, run on one engine (except where the
      cut decides between compiling or not) and a member's numbers do not depend on the cut."""
    if sim.cfg.engine != "auto":
        return sim.cfg.engine
    runs = [e for e in ("eager", "closed_form", "compiled")
            if engine_runs(sim, e) is None and low_precision_runs(sim, e) is None]
    if not runs:
        raise ConfigError("matmul", low_precision_runs(sim, "eager"))
    if single and sim.d < compiled.WIDE:
        return min(runs, key=lambda e: engine_seconds(sim, members, e))
    if "compiled" in runs and eager_seconds(sim, members) >= COMPILE_AFTER_SECONDS:
        return "compiled"
    if sim.d >= compiled.WIDE and "closed_form" in runs:
        return "closed_form"
    return "eager" if "eager" in runs else runs[0]  # matmul: bfloat16 leaves no eager


COMPILE_AFTER_SECONDS = 20.0
"""At wide inputs ``engine: auto`` compiles a batch whose eager run is estimated to take at least
this long (matrix products dominate there; the closed form does the fewest)."""


def engine_of(sim: Simulation) -> str:
    """The engine a built simulation runs with (what ``auto`` chose)."""
    return "eager" if sim.engine is None else sim.engine.name


def progress_label(engines: set, auto: bool = False) -> str:
    """The engines for a progress line (``auto``: the config asked for ``engine: auto``, which is said,
    with what it chose), with the compiled engine's warm-up said: its first step per batch shape
    compiles (5-15 s on a CPU), which the rate shown at the start includes."""
    names = ", ".join(f"{e}: the first step of each batch shape compiles" if e == "compiled" else e
                      for e in sorted(engines))
    return f"engine auto chose {names}" if auto else f"engine {names}"


def build(cfg: C.Config, kernel_module: Optional[torch.nn.Module] = None, members: Optional[int] = None) -> BuiltSimulation:
    """Validate a config against itself (dimensions, matrices, data files) and build the pieces.

    ``members``: how many members will run as one batch, for a sweep's chunk (default: the config's
    seeds, the config's own run: :attr:`BuiltSimulation.single`); a batch that
    cannot fit in the device's memory is refused here, before anything large is allocated
    (:func:`gandy.runs.budget.require_memory`)."""
    device = resolve_device(cfg.device)
    target = target_of(cfg.target, device)
    d = target.dim
    init = cfg.particles.init
    given = getattr(init, "mean", None) if init.name == "gaussian" else getattr(init, "low", None)
    init_dim = d if given is None else len(given)  # data_mean and data_gaussian take the target's dimension
    if init_dim != d:
        raise ConfigError("particles.init", f"init has dimension {init_dim} but the target has dimension {d}")
    n = cfg.particles.n
    if kernel_module is not None and cfg.kernel.name != "empirical_ntk":
        raise ConfigError("kernel.name", "a module was given, so the kernel must be empirical_ntk")
    start_spec = init_spec(init)
    critic = critic_of(cfg.critic, d, target, lambda stream, k: init_particles(start_spec, target, d, device, stream, k))
    if critic.dropout > 0 and cfg.penalty.name not in ("none", *SQUARED_GRADIENT):
        raise ConfigError("critic.dropout", f"dropout masks the points of the loss; the {cfg.penalty.name} penalty "
                                            f"differentiates at other points: use penalty none, {', '.join(SQUARED_GRADIENT)}")
    generator = None
    if cfg.generator is not None:
        generator = generator_of(cfg.generator, target, d)
    elif cfg.optim.generator.name != "sgd":
        raise ConfigError("optim.generator.name", "the particle step X <- X + lr K F is plain sgd; other "
                                                   "optimisers need a network generator")
    b = len(cfg.seeds) if members is None else members
    critic_batch = cfg.batch_size or target.default_batch or n
    require_memory(Sizes(cfg, device, target, critic, generator, n, d, critic_batch), b)  # before the kernel's N x N matrix
    kernel = kernel_of(cfg.kernel, n, d, device, plugins=cfg.plugins, module=kernel_module)
    sim = BuiltSimulation(device=device, target=target, kernel=kernel, critic=critic, critic_spec=net_spec(cfg.critic),
                          game=GAMES[cfg.objective], penalty=PENALTIES[cfg.penalty.name],
                          penalty_spec=penalty_spec(cfg.penalty), n=n, d=d, critic_batch=critic_batch, step=step_spec(cfg),
                          init=start_spec, critic_optim=optim_spec(cfg.optim.critic, "optim.critic"),
                          generator_optim=optim_spec(cfg.optim.generator, "optim.generator"),
                          defaults=member_values([cfg], device), generator=generator, cfg=cfg,
                          loop=loop_spec(cfg, target, n, generator is not None), single=members is None)
    engine = choose_engine(sim, b, single=members is None)
    why = low_precision_runs(sim, engine)
    if why:
        raise ConfigError("matmul", why)
    if engine != "eager":  # the eager simulation is complete; another engine takes its gradients
        sim = dataclasses.replace(sim, engine=ENGINES[engine](sim))  # refuses, with its reason, what it cannot run
        if engine not in critic_entry(cfg.critic.name).engines:
            raise ConfigError("engine", f"the {engine} engine does not run the {cfg.critic.name} critic; "
                                        "run it with engine: eager")
    images = target.image_shape is not None
    if cfg.metrics.images.enabled is True and not (images and sim.generator is not None):
        raise ConfigError("metrics.images.enabled", "image metrics need a network generator on an image "
                                                      "target (mnist, color_mnist, images)")
    if cfg.metrics.images.inception is not None:
        check_inception(cfg.metrics.images.inception)
    if images and not target.signed_pixels and sim.generator is not None \
            and cfg.metrics.images.enabled is not False:
        raise ConfigError("target.pixels", "image GANs and their metrics use pixels in [-1, 1]: set pixels: signed "
                                             "(or metrics.images.enabled: false)")
    return sim
