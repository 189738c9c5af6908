"""Resource estimates made before any work: memory of a batched simulation and disk of its output.

:func:`memory_parts` adds up, by contributor, what one batch of members holds at its peak (critic and generator
parameters with their gradients and optimiser moments, the critic's activations on the real and
generated points through a double backward, the particles and their snapshots, the O(N^2) metric
distance matrices, a dense kernel). The factors are calibrated against the measured peak resident
memory of real runs (``benchmarks/memory_estimate.py``, numbers in benchmarks/RESULTS.md): the
estimate is an upper bound, within a few times the measured peak. :func:`require_memory` refuses a
run that cannot fit with one ``ConfigError`` naming the largest contributor.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from gandy.core.rng import Stream, member_keys
from gandy.runs import config as C

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
    """Activation values per input point in one critic forward (hidden units, feature maps)."""
    c = cfg.critic
    if c.name == "mlp":
        return sum(c.widths) + 1
    if c.name == "rbf":
        return 2 * c.centers + 1
    if c.name == "random_features":
        return 2 * c.features + 1
    if c.name == "dcgan":
        return 294 * c.width + d  # (w, 14, 14) and (2w, 7, 7) feature maps
    return 1


def generator_units(cfg: C.Config, d: int) -> int:
    g = cfg.generator
    if g is None:
        return 0
    if g.name == "mlp":
        return 2 * sum(g.widths) + d
    if g.name == "dcgan":
        return 294 * g.width + d
    return d


def _count(params: dict) -> int:
    return sum(int(v[0].numel()) for v in params.values())


def memory_parts(sim, members: int) -> dict:
    """Bytes by contributor (keys name the config field that controls each) for ``members``
    members of the built simulation ``sim`` (a batch of one is padded to two)."""
    cfg, d, n = sim.cfg, sim.d, sim.n
    b = max(2, members)
    batch = sim.batch
    stream = Stream(member_keys([0], sim.device), "budget")
    p_critic = _count(sim.critic.init(stream, 1))
    p_gen = _count(sim.generator.init(stream, 1)) if sim.generator is not None else 0
    fake = batch if sim.generator is not None else n
    snaps = cfg.steps // (cfg.snapshot_every or cfg.log_every) + 2
    pm = min(n, cfg.metrics.max_points)
    ref = min(sim.target.default_batch or cfg.metrics.max_points, cfg.metrics.max_points)
    units_c, units_g = critic_units(cfg, d), generator_units(cfg, d)
    parts = {
        "particles.n": b * FLOAT * (fake * (units_c * ACTIVATION_COPIES + d * POINT_COPIES)
                                    + n * (units_g * ACTIVATION_COPIES if units_g else d * POINT_COPIES)
                                    + snaps * pm * d),
        "batch_size": b * FLOAT * batch * (units_c * ACTIVATION_COPIES + d * POINT_COPIES),
        "critic": b * FLOAT * PARAMETER_COPIES * (p_critic + p_gen),
        # mean |cos| batched over members (B, pm, pm); W1 and the divergences one member at a time,
        # float64 cost matrices with the transport plan and temporaries
        "metrics.max_points": b * FLOAT * 2 * pm * pm + 8 * 4 * (pm + ref) ** 2,
    }
    parts["allocator"] = OVERHEAD
    if cfg.kernel.name != "two_number" and sim.generator is None:
        parts["kernel"] = 3 * 8 * n * n
    return parts


def available_memory(device: torch.device) -> tuple[int, str]:
    """Bytes this process may still allocate on ``device``, and where the number comes from."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {torch.cuda.get_device_name(device)}"
    avail, source = None, "physical memory"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail, source = int(line.split()[1]) * 1024, "MemAvailable"
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    try:  # a container's own limit (cgroup v2)
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max" and int(limit) - used < avail:
            avail, source = int(limit) - used, "the cgroup memory limit"
    except (OSError, ValueError):
        pass
    return int(avail), source


def human(n: float) -> str:
    """Bytes in decimal units: ``1.2 GB``."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"  # pragma: no cover


def require_memory(sim, members: int, available: Optional[int] = None) -> int:
    """Raise ConfigError unless ``members`` members of ``sim`` fit in the memory available on its
    device; returns the estimate in bytes."""
    parts = memory_parts(sim, members)
    need = int(sum(parts.values()))
    have, source = (available, "given") if available is not None else available_memory(sim.device)
    if need > have:
        field = max(parts, key=parts.get)
        cfg = sim.cfg
        what = (f"{members} member{'s' if members != 1 else ''} x {sim.n:,} particles x {sim.d} dims, "
                f"critic {cfg.critic.name}" + (f" {list(cfg.critic.widths)}" if cfg.critic.name == "mlp" else ""))
        raise C.ConfigError(field, f"this run needs about {human(need)} of memory ({what}; largest part: {field} "
                                   f"{human(parts[field])}) but {human(have)} is available ({source})")
    return need


def output_bytes(cfg: C.Config, d: int, n_modes: int, members: int, sweep: bool) -> int:
    """An upper bound on the bytes a run (or a sweep of ``members`` members) writes."""
    logs = cfg.steps // cfg.log_every + 2
    columns = 32 + n_modes
    metrics = members * logs * columns * 8
    if sweep:
        snaps = members * 40 * 64 * min(d, 2) * 2
    else:
        snaps = members * (cfg.steps // (cfg.snapshot_every or cfg.log_every) + 2) * min(cfg.particles.n, cfg.metrics.max_points) * d * FLOAT
    return int(metrics + snaps + 4_000_000)  # figures, config, summary


__all__ = ["memory_parts", "require_memory", "available_memory", "output_bytes", "human", "critic_units"]
