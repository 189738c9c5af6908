"""Resource estimates made before any work: memory of a batched simulation and disk of its output.

:func:`memory_parts` adds up, by contributor, what one batch of members holds at its peak (critic and generator
parameters with their gradients and optimiser moments, the critic's activations on the real and
generated points through a double backward, the particles and their snapshots, the O(N^2) metric
distance matrices, a dense kernel). The factors are calibrated against the measured peak resident
memory of real runs (``benchmarks/memory_estimate.py``, numbers in benchmarks/RESULTS.md): the
estimate is an upper bound, within a few times the measured peak. :func:`require_memory` refuses a
run that cannot fit with one ``ConfigError`` naming the largest contributor.

A sweep is sized here too: :func:`check_size` refuses a plan whose members cannot all be held
(their configs, :data:`MEMBER_BYTES` each, and their metric rows) before they are expanded, and
:func:`chunk_members` says how many members an auto chunk takes, from :func:`member_bytes` (the one
per-member working-memory estimate chunk sizing uses) and :func:`fast_chunk`. A chunk so sized is
then checked whole by :func:`require_memory` when it is built.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from gandy.core.nets import critic_entry, generator_entry
from gandy.core.resources import host_memory, human
from gandy.core.rng import Stream, member_keys
from gandy.runs import config as C
from gandy.runs.grammar import MAX_MEMBERS

FLOAT = 4  # bytes: everything in the engine is float32
ACTIVATION_COPIES = 16
"""Copies of each activation a critic step keeps alive: forward, backward and the penalty's double
backward on real, generated and interpolated points (calibrated, see the module docstring)."""
PARAMETER_COPIES = 16
"""Parameter, gradients (the penalty's double backward included), two optimiser moments, the new
values and the temporaries of one Adam update (calibrated: the 784-D MNIST case)."""
OVERHEAD = 64_000_000
"""Bytes the allocator and the loop's bookkeeping hold beyond the tensors counted above."""
POINT_COPIES = 8
"""Copies of the particles and their coordinates: x, the force, K F, the critic's input gradient,
the visible copy, the penalty's interpolates."""


def critic_units(cfg: C.Config, d: int) -> int:
    """Activation values per input point in one critic forward (hidden units, feature maps): the
    critic's registry entry's ``units`` (ConfigError on ``critic.name`` for an unknown critic)."""
    c = cfg.critic
    return int(critic_entry(c.name).units(d, **c.model_dump(exclude={"name"})))


def generator_units(cfg: C.Config, d: int) -> int:
    """Activation values per generated point in one generator forward (its registry entry's
    ``units``; 0 without a network generator)."""
    g = cfg.generator
    if g is None:
        return 0
    return int(generator_entry(g.name).units(d, **g.model_dump(exclude={"name"})))


def _count(params: dict) -> int:
    return sum(int(v[0].numel()) for v in params.values())


def parameter_count(net) -> int:
    """Learned and fixed parameters per member of a critic or generator, from its shapes alone
    (``net.parameter_count()``; a network without that method is initialised for one member and
    counted, which allocates it)."""
    try:
        return int(net.parameter_count())
    except (AttributeError, NotImplementedError):
        return _count(net.init(Stream(member_keys([0]), "budget"), 1))


def critic_field(cfg: C.Config) -> str:
    """The config field that sets the critic's size (its registry entry's ``size``: widths,
    centres, features or width; ``critic.name`` for a critic no option sizes)."""
    size = critic_entry(cfg.critic.name).size
    return f"critic.{size}" if size else "critic.name"


def memory_parts(sim, members: int) -> dict:
    """Bytes by contributor for ``members`` members of the built simulation ``sim`` (a batch of one
    is padded to two). Each key names the config field that drives its term, so a refusal blames
    the right one: the critic's activations go to the larger of their two factors (the points,
    ``particles.n`` or ``batch_size``, or the critic's size, e.g. ``critic.widths``), the
    snapshots and log rows that grow with the run's length to ``steps``. Nothing is allocated:
    parameters are counted from the networks' shapes (:func:`parameter_count`)."""
    cfg, d, n = sim.cfg, sim.d, sim.n
    b = max(2, members)
    critic_batch = sim.critic_batch
    p_critic = parameter_count(sim.critic)
    p_gen = parameter_count(sim.generator) if sim.generator is not None else 0
    fake = critic_batch if sim.generator is not None else n
    steps, extra = cfg.steps * (2 if cfg.metrics.phase_2x else 1), 3 if cfg.metrics.phase_2x else 2  # phase_2x: a log at steps too
    snaps = steps // (cfg.snapshot_every or cfg.log_every) + extra
    logs = steps // cfg.log_every + extra
    n_modes = 0 if sim.target.modes is None else int(sim.target.modes.shape[0])
    pm = min(n, cfg.metrics.max_points)
    ref = min(sim.target.default_batch or cfg.metrics.max_points, cfg.metrics.max_points)
    units_c, units_g = critic_units(cfg, d), generator_units(cfg, d)
    wide = critic_field(cfg)
    parts: dict = {}

    def add(key: str, nbytes: int) -> None:
        parts[key] = parts.get(key, 0) + nbytes

    # the critic on the generated points (the particles, or a generator's batch) and on the data batch
    add(wide if units_c > fake else "particles.n", b * FLOAT * fake * units_c * ACTIVATION_COPIES)
    add("particles.n", b * FLOAT * (fake * d * POINT_COPIES
                                    + n * (units_g * ACTIVATION_COPIES if units_g else d * POINT_COPIES)))
    add(wide if units_c > critic_batch else "batch_size", b * FLOAT * critic_batch * units_c * ACTIVATION_COPIES)
    add("batch_size", b * FLOAT * critic_batch * d * POINT_COPIES)
    add(wide if p_critic >= p_gen else generator_field(cfg), b * FLOAT * PARAMETER_COPIES * (p_critic + p_gen))
    add("steps", b * (FLOAT * snaps * pm * d + 8 * logs * (32 + n_modes)))
    # mean |cos| batched over members (B, pm, pm); W1 and the divergences one member at a time,
    # float64 cost matrices with the transport plan and temporaries
    add("metrics.max_points", b * FLOAT * 2 * pm * pm + 8 * 4 * (pm + ref) ** 2)
    parts["allocator"] = OVERHEAD
    if cfg.kernel.name != "two_number" and sim.generator is None:
        add("kernel", 3 * 8 * n * n)
    return parts


def available_memory(device: torch.device) -> tuple[int, str]:
    """Bytes this process may still allocate on ``device``, and where the number comes from: a
    GPU's free memory, or on the host the smallest of MemAvailable, the cgroup limit (v2 and v1)
    and the address-space limit RLIMIT_AS less what the process maps
    (:func:`gandy.core.resources.host_memory`)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {torch.cuda.get_device_name(device)}"
    return host_memory()


def require_memory(sim, members: int, available: Optional[int] = None) -> int:
    """Raise ConfigError unless ``members`` members of ``sim`` fit in the memory available on its
    device; returns the estimate in bytes. The error names the field behind the largest part of
    :func:`memory_parts` and the limit that sets the memory available."""
    parts = memory_parts(sim, members)
    need = int(sum(parts.values()))
    have, source = (available, "given") if available is not None else available_memory(sim.device)
    if need > have:
        field = max(parts, key=parts.get)
        cfg = sim.cfg
        what = (f"{members} member{'s' if members != 1 else ''} x {sim.n:,} particles x {sim.d} dims, "
                f"critic {cfg.critic.name}" + (f" {list(cfg.critic.widths)}" if cfg.critic.name == "mlp" else "")
                + f", {cfg.steps:,} steps")
        raise C.ConfigError(field, f"this run needs about {human(need)} of memory ({what}; largest part: {field} "
                                   f"{human(parts[field])}) but {human(have)} is available ({source})")
    return need


def generator_field(cfg: C.Config) -> str:
    """The config field that sets a network generator's size."""
    g = cfg.generator
    size = generator_entry(g.name).size if g is not None else None
    return f"generator.{size}" if size else "generator.name"


# ----------------------------------------------------------------------------- sweeps
MEMBER_BYTES = 16_000
"""Memory one expanded member holds until the sweep ends (its config and bookkeeping; measured
7.5 kB), for the check that a sweep's plan fits in memory before it is expanded."""


def check_size(cfg: C.Config, points: int, available: Optional[int] = None) -> int:
    """Refuse a sweep or search of ``points`` grid points (or trials) x ``cfg.seeds`` before it is
    expanded: more than :data:`MAX_MEMBERS` members, or members whose configs
    (:data:`MEMBER_BYTES` each) and metric rows (``steps / log_every`` rows each, collected at the
    end) cannot be held in the memory available (:func:`gandy.core.resources.host_memory`, or
    ``available``). The error names ``sweep`` (``search``), or ``steps`` where the rows dominate.
    Returns the number of members."""
    section = "search" if cfg.search else "sweep"
    seeds = len(cfg.seeds)
    members = points * seeds
    what = f"{points:,} {'trials' if cfg.search else 'grid points'} x {seeds} seed{'s' if seeds != 1 else ''}"
    if members > MAX_MEMBERS:
        raise C.ConfigError(section, f"{what} = {members:,} members; at most {MAX_MEMBERS:,} (split it into several sweeps)")
    parts = {section: members * MEMBER_BYTES, "steps": members * (cfg.steps // cfg.log_every + 2) * 40 * 8}
    have, source = (available, "given") if available is not None else host_memory()
    need = sum(parts.values())
    if need > have:
        field_ = max(parts, key=parts.get)
        raise C.ConfigError(field_, f"{what} = {members:,} members need about {human(need)} of memory for their "
                                    f"configs and metric rows (largest part: {field_} {human(parts[field_])}) but "
                                    f"{human(have)} is available ({source})")
    return members


def critic_widths(cfg: C.Config) -> list[int]:
    """The hidden sizes of the MLP the speed and memory models treat the critic as: its registry
    entry's ``widths`` (an MLP's own widths; features or centres for the kernel critics; ConfigError
    on ``critic.name`` for an unknown critic)."""
    c = cfg.critic
    return list(critic_entry(c.name).widths(**c.model_dump(exclude={"name"})))


def member_bytes(cfg: C.Config, n_target: int, d: int = 1) -> int:
    """A generous estimate of one member's working memory in bytes (activations of the forward,
    backward and double backward, critic parameters with gradients and Adam moments), in ``d``
    dimensions: what :func:`chunk_members` divides a chunk's memory budget by. (It reads the config
    alone, before anything is built; :func:`memory_parts` then checks the built chunk whole.)"""
    n = cfg.particles.n
    widths = critic_widths(cfg)
    points = n + (cfg.batch_size or n_target or n)
    act = 16 * points * sum(widths)
    n_params = sum(a * b for a, b in zip([d, *widths], [*widths, 1])) + sum(widths)
    return 4 * (act + 8 * n_params + 8 * n * max(d, 1))


FAST_TENSOR_BYTES = 24e6
"""Auto chunks keep every batched weight matrix of the critic (with its gradient and Adam moments,
fresh or rewritten at every step) below this size. Larger ones are allocated by mmap (glibc's limit
is 32 MB) and page-faulted afresh at every step: in 784-D at width 512 a chunk of 112 members spent
40 % of its time in the kernel and took 18 ms per member-step against 11 ms in chunks of 16
(benchmarks/RESULTS.md, "784-D"). Activations are not counted: the compiled engine fuses most of
them away, and capping them cut a 1-D sweep's chunks from 940 to 341 members and slowed it 28 %."""


def fast_chunk(cfg: C.Config, d: int) -> int:
    """The most members per chunk whose largest critic weight stays under FAST_TENSOR_BYTES, or
    the critic's own ``cpu_chunk`` where its registry entry sets one (the DCGAN critic: 2) (CPU
    runs only: a GPU wants its chunks as large as memory allows)."""
    own = critic_entry(cfg.critic.name).cpu_chunk
    if own is not None:
        return own
    widths = critic_widths(cfg)
    dims = [d, *widths, 1]
    largest = max(a * b for a, b in zip(dims[:-1], dims[1:]))
    return max(1, int(FAST_TENSOR_BYTES // (4 * largest)))


MAX_CHUNK = 1024
"""The most members an auto chunk takes."""


GPU_SHARE = 0.25
"""The share of a GPU's total memory an auto chunk may take (:func:`chunk_budget`)."""


def chunk_budget(device: torch.device, memory_budget: float) -> float:
    """Bytes an auto chunk may take on ``device``: ``memory_budget`` on the host; on a GPU the larger
    of it and :data:`GPU_SHARE` of the device's *total* memory. A GPU's chunk is bound by kernel
    launches, not arithmetic, until its products are large (an H200, 2026-12-04: 5.2 ms per member-step
    of the 784-D MNIST critic at 16 members, 1.0 at 128), so it takes as many members as fit. The
    total, not the free memory: the same members cut into the same chunks on every invocation, so
    that a resumed sweep's chunk cut off mid-way finds its checkpoint."""
    if device.type != "cuda":
        return memory_budget
    return max(memory_budget, GPU_SHARE * torch.cuda.get_device_properties(device).total_memory)


def chunk_members(cfg: C.Config, n_target: int, d: int, cpu: bool, memory_budget: float) -> int:
    """Members per auto chunk of members like ``cfg`` (``d`` dimensions, ``n_target`` target
    samples per batch): as many as fit ``memory_budget`` bytes by :func:`member_bytes`, at most
    :data:`MAX_CHUNK` and, on a CPU (``cpu``), at most :func:`fast_chunk`; at least one."""
    fast = fast_chunk(cfg, d) if cpu else MAX_CHUNK
    return int(max(1, min(MAX_CHUNK, memory_budget // max(member_bytes(cfg, n_target, d), 1), fast)))


def output_parts(cfg: C.Config, d: int, n_modes: int, members: int, sweep: bool) -> dict:
    """An upper bound on the bytes a run (or a sweep of ``members`` members) writes, by the config
    field that drives each part: the metric rows and a run's snapshots grow with ``steps``, a
    sweep's thinned snapshots with its members (``sweep``), the figures, config and summary are a
    fixed ``out`` allowance."""
    steps, extra = cfg.steps * (2 if cfg.metrics.phase_2x else 1), 3 if cfg.metrics.phase_2x else 2  # phase_2x: a log at steps too
    logs = steps // cfg.log_every + extra
    columns = 32 + n_modes
    parts = {"steps": members * logs * columns * 8}
    if sweep:
        parts["search" if cfg.search else "sweep"] = members * 40 * 64 * min(d, 2) * 2
    else:
        parts["steps"] += members * (steps // (cfg.snapshot_every or cfg.log_every) + extra) \
            * min(cfg.particles.n, cfg.metrics.max_points) * d * FLOAT
    parts["out"] = 4_000_000  # figures, config, summary
    return parts


def output_bytes(cfg: C.Config, d: int, n_modes: int, members: int, sweep: bool) -> int:
    """An upper bound on the bytes a run (or a sweep of ``members`` members) writes: the sum of
    :func:`output_parts`."""
    return int(sum(output_parts(cfg, d, n_modes, members, sweep).values()))


def existing_ancestor(path: Path) -> Path:
    """``path`` (made absolute) or its nearest ancestor that exists."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def require_disk(out: Path, parts: dict) -> int:
    """Raise ConfigError, naming the field behind the largest of ``parts`` (:func:`output_parts`),
    unless the filesystem that will hold ``out`` (its nearest existing ancestor) has room for their
    sum; returns the sum in bytes. Nothing is written."""
    need = int(sum(parts.values()))
    where = existing_ancestor(out)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return need  # the output check (gandy.runs.outputs.check_writable) says what is wrong with the place
    if need > free:
        field = max(parts, key=parts.get)
        raise C.ConfigError(field, f"the output would need about {human(need)} of disk (largest part: {field} "
                                   f"{human(parts[field])}) but {where} has {human(free)} free")
    return need


__all__ = ["memory_parts", "require_memory", "available_memory", "output_parts", "output_bytes", "require_disk",
           "existing_ancestor", "human", "critic_units", "parameter_count", "check_size", "member_bytes",
           "fast_chunk", "chunk_members"]
