"""Build a :class:`gandy.core.step.Simulation` from a config, with every cross-check between its
parts (dimensions, the particle optimiser, image metrics, pixels, memory) made before anything
large is allocated."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Optional

import torch

from gandy.core import closed_form, compiled
from gandy.core.errors import ConfigError
from gandy.core.images.evaluate import check_inception
from gandy.core.kernels import build_kernel
from gandy.core.nets import build_critic, build_generator
from gandy.core.objectives import GAMES, PENALTIES, SQUARED_GRADIENT
from gandy.core.step import Simulation
from gandy.core.targets import build_target
from gandy.runs import config as C
from gandy.runs.budget import require_memory


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


@contextmanager
def run_threads(cfg):
    """Torch threads for the duration of a run: GANDY_THREADS (which ``gandy --threads N`` sets)
    where it is given, else the config's ``threads``; left as they are where neither says."""
    n = env_threads() or cfg.threads
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


ENGINES: dict[str, Callable] = {"eager": lambda sim: None, "closed_form": closed_form.ClosedForm,
                                 "compiled": compiled.compiled_step}
"""``engine`` name -> what takes a built simulation's gradients (``Simulation.grads``; None: autograd)."""

COMPILE_AFTER_SECONDS = 20.0
"""``engine: auto`` compiles a batch whose eager run is estimated to take at least this long
(compilation costs 5-15 s per batch shape on a CPU, then 1-D steps run 6-10x faster)."""


def eager_seconds(sim: Simulation, members: int) -> float:
    """A rough estimate of a batch's eager run time on a CPU: per step, 2.5 ms of per-operation
    overhead whatever the batch; per member-step, 200 us plus the critic's matrix products at
    50 GFLOP/s (for an MLP's weight matrices of sizes f_i x f_(i+1), 2 sum_i f_i f_(i+1) (2 M + 7 N)
    multiply-adds per critic step; the closed form's count for one hidden layer). Measured:
    2.6-3.4 ms per step for a lone member, 180-350 us per member-step at 256 members in 1-D,
    21-24 ms in 784-D at width 512 (benchmarks/RESULTS.md)."""
    cfg = sim.cfg
    dims = [sim.d, *cfg.critic.widths, 1] if cfg.critic.name == "mlp" else [sim.d, 256, 1]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    flops = 2 * weights * (2 * sim.batch + 7 * sim.n) * cfg.optim.critic.steps
    return cfg.steps * (2.5e-3 + members * (2e-4 + flops / 5e10))


def choose_engine(sim: Simulation, members: int) -> str:
    """The config's ``engine``; for ``auto``, the fastest engine that runs it: ``compiled`` where it
    applies and the batch runs long enough to repay compilation (:data:`COMPILE_AFTER_SECONDS`),
    else ``closed_form`` where it applies and the input is wide (``compiled.WIDE``: below it,
    eager's fused autograd kernels beat the closed form's passes), else ``eager``."""
    if sim.cfg.engine != "auto":
        return sim.cfg.engine
    if compiled.unsupported(sim) is None and eager_seconds(sim, members) >= COMPILE_AFTER_SECONDS:
        return "compiled"
    if sim.d >= compiled.WIDE and closed_form.unsupported(sim) is None:
        return "closed_form"
    return "eager"


def engine_of(sim: Simulation) -> str:
    """The engine a built simulation runs with (what ``auto`` chose)."""
    return "eager" if sim.grads is None else sim.grads.name


def progress_label(engines: set) -> str:
    """The engines for a progress line, with the compiled engine's warm-up said: its first step
    per batch shape compiles (5-15 s on a CPU), which the rate shown at the start includes."""
    return ", ".join(f"{e}: the first step of each batch shape compiles" if e == "compiled" else e
                     for e in sorted(engines))


def build(cfg: C.Config, kernel_module: Optional[torch.nn.Module] = None, members: Optional[int] = None) -> Simulation:
    """Validate a config against itself (dimensions, matrices, data files) and build the pieces.

    ``members``: how many members will run as one batch (default: the config's seeds); a batch that
    cannot fit in the device's memory is refused here, before anything large is allocated
    (:func:`gandy.runs.budget.require_memory`)."""
    device = resolve_device(cfg.device)
    target = build_target(cfg.target, device)
    d = target.dim
    init = cfg.particles.init
    given = getattr(init, "mean", None) if init.name == "gaussian" else getattr(init, "low", None)
    init_dim = d if given is None else len(given)  # data_mean and data_gaussian take the target's dimension
    if init_dim != d:
        raise ConfigError("particles.init", f"init has dimension {init_dim} but the target has dimension {d}")
    n = cfg.particles.n
    kw = {"module": kernel_module} if kernel_module is not None else {}
    if kw and cfg.kernel.name != "empirical_ntk":
        raise ConfigError("kernel.name", "a module was given, so the kernel must be empirical_ntk")
    sim = Simulation(cfg, device, target, None, None, GAMES[cfg.objective], PENALTIES[cfg.penalty.name],
                     n, d, cfg.batch_size or target.default_batch or n)
    sim.critic = build_critic(cfg.critic, d, target, sim.init_particles)
    if sim.critic.dropout > 0 and cfg.penalty.name not in ("none", *SQUARED_GRADIENT):
        raise ConfigError("critic.dropout", f"dropout masks the points of the loss; the {cfg.penalty.name} penalty "
                                            f"differentiates at other points: use penalty none, {', '.join(SQUARED_GRADIENT)}")
    if cfg.generator is not None:
        sim.generator = build_generator(cfg.generator, target, d)
    elif cfg.optim.generator.name != "sgd":
        raise ConfigError("optim.generator.name", "the particle step X <- X + lr K F is plain sgd; other "
                                                   "optimisers need a network generator")
    require_memory(sim, len(cfg.seeds) if members is None else members)
    engine = choose_engine(sim, len(cfg.seeds) if members is None else members)
    sim.grads = ENGINES[engine](sim)
    sim.kernel = build_kernel(cfg.kernel, n, d, device, plugins=cfg.plugins, **kw)
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
