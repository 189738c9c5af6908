"""Executors: where the chunks of a sweep run. One registry, ``EXECUTORS``.

An executor is ``run(chunks, axis_keys, values_by_index, done, address, step)``; it calls
``done(chunk, (metrics, results, snapshots))`` in the driver process for every finished chunk, in any order,
and ``step(k)`` for progress (k member-steps made).
The driver writes the store, so results are identical whichever executor ran the chunks.
"""

from __future__ import annotations

from typing import Callable, Optional

from .sweep import Chunk, run_chunk


def run_local(chunks: list[Chunk], keys, values, done: Callable, address: Optional[str] = None,
              step: Callable = lambda k: None) -> None:
    """In this process, one batched chunk after another (progress at every step)."""
    for ch in chunks:
        done(ch, run_chunk(ch, keys, values, step))


def run_ray(chunks: list[Chunk], keys, values, done: Callable, address: Optional[str] = None,
            step: Callable = lambda k: None) -> None:
    """Chunks as Ray tasks (one GPU per task where the cluster has GPUs), gathered as they finish.

    ``address``: a running cluster (``ray://host:port`` or ``host:port``); None starts or joins a
    local instance. Needs the optional extra ``gandy[ray]``.
    """
    try:
        import ray
    except ImportError:
        from .config import ConfigError

        raise ConfigError("executor", "the ray executor needs Ray: pip install 'gandy[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(run_chunk)
        keys_ref, values_ref = ray.put(keys), ray.put(values)
        pending = {task.remote(ch, keys_ref, values_ref): ch for ch in chunks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                ch = pending.pop(ref)
                done(ch, ray.get(ref))
                step(len(ch.members) * ch.config["steps"])  # progress per finished chunk
    finally:
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Callable] = {"local": run_local, "ray": run_ray}
