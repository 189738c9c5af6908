"""Executors: where the chunks of a sweep run. One registry, ``EXECUTORS``: name -> :class:`Executor`.

An executor is a generic map and knows nothing of sweeps: ``run(task, chunks, done, address, step,
checkpoints, workers)`` calls ``task(chunk, on_step=..., checkpoint=checkpoints(chunk))`` for every chunk
(here or in other processes; ``task`` must pickle) and ``done(chunk, task's result)`` in the
driver process for every finished chunk, in any order, and ``step(k)`` for progress (k units of
work, a chunk's ``len(members) * config["steps"]``). Its ``check(address, timeout)`` runs before
the caller writes anything: a cluster that cannot be reached is refused there, with nothing left
behind. The driver writes the store, so results are identical whichever executor ran the chunks.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from gandy.runs.build import env_threads
from gandy.runs.config import ConfigError

CONNECT_TIMEOUT = 20.0
"""Seconds ``--executor ray --address`` waits for the cluster before giving up (``--connect-timeout``)."""


def run_local(task: Callable, chunks: list, done: Callable, address: Optional[str] = None,
              step: Callable = lambda k: None, checkpoints: Callable = lambda ch: None,
              workers: int = 1) -> None:
    """In this process, one chunk after another (progress as the task reports it)."""
    for ch in chunks:
        done(ch, task(ch, on_step=step, checkpoint=checkpoints(ch)))


def _start_worker(threads: int) -> None:
    """A worker process: ``threads`` torch threads (GANDY_THREADS, inherited, says so for runs);
    SIGTERM (the driver stopping it) unwinds it, so that a checkpoint being written is not left
    behind under its temporary name."""
    os.environ["GANDY_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _stop_worker)


def _stop_worker(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_processes(task: Callable, chunks: list, done: Callable, address: Optional[str] = None,
                  step: Callable = lambda k: None, checkpoints: Callable = lambda ch: None,
                  workers: int = 1) -> None:
    """Chunks in ``workers`` local processes (spawned; each with cores / workers torch threads, at
    least one, unless GANDY_THREADS says otherwise), gathered as they finish; the driver writes
    every result, so the store is the one a single process writes. Checkpoints as in one process.
    Interrupted (Ctrl-C, SIGTERM, a failed chunk), the driver stops the workers at once instead of
    waiting for their chunks: those resume from their checkpoints."""
    threads = env_threads() or max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(chunks))), mp_context=ctx,
                               initializer=_start_worker, initargs=(threads,))
    pending = {pool.submit(_call, task, ch, checkpoints(ch)): ch for ch in chunks}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                ch = pending.pop(fut)
                done(ch, fut.result())
                step(len(ch.members) * ch.config["steps"])  # progress per finished chunk
    except BaseException:
        workers_ = list((getattr(pool, "_processes", None) or {}).values())  # the pool's own processes
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_:
            proc.terminate()
        for proc in workers_:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        raise
    pool.shutdown()


def _ray():
    try:
        import ray  # optional extra: gandy[ray]
    except ImportError:
        raise ConfigError("executor", "the ray executor needs Ray: pip install 'gandy[ray]'") from None
    return ray


def _host_port(address: str) -> Optional[tuple[str, int]]:
    """``host:port`` of ``ray://host:port`` or ``host:port``; None for ``auto`` and the like."""
    a = address.split("://", 1)[-1]
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_ray(address: Optional[str], timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse an unreachable cluster before any work: a TCP connection to ``address``, then a Ray
    client that connects and disconnects in a child process killed after ``timeout`` seconds (Ray
    itself retries for ever). ``address`` None starts a local instance later: nothing to check."""
    _ray()
    if address is None:
        return
    if not timeout > 0:
        raise ConfigError("connect_timeout", f"must be > 0 seconds, got {timeout}")
    hp = _host_port(address)
    if hp is not None:
        try:
            socket.create_connection(hp, timeout=timeout).close()
        except OSError as e:
            raise ConfigError("address", f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None
    probe = ("import ray, sys; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
             "logging_level='ERROR'); ray.shutdown()")
    env = {**os.environ, "RAY_gcs_rpc_server_connect_timeout_s": str(max(1, int(timeout)))}
    try:
        r = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True,
                           timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConfigError("address", f"no Ray cluster answered at {address} within {timeout:g} s "
                                     f"(--connect-timeout)") from None
    if r.returncode != 0:
        last = next((ln for ln in reversed(r.stderr.splitlines()) if ln.strip()), "unknown error")
        raise ConfigError("address", f"cannot connect to a Ray cluster at {address}: {last.strip()}")


def _call(task: Callable, chunk, checkpoint):
    """A chunk's task in a worker process (no progress callback crosses processes)."""
    return task(chunk, on_step=None, checkpoint=checkpoint)


def run_ray(task: Callable, chunks: list, done: Callable, address: Optional[str] = None,
            step: Callable = lambda k: None, checkpoints: Callable = lambda ch: None,
            workers: int = 1) -> None:
    """Chunks as Ray tasks (one GPU per task where the cluster has GPUs), gathered as they finish.

    ``address``: a running cluster (``ray://host:port`` or ``host:port``); None starts or joins a
    local instance. Needs the optional extra ``gandy[ray]``. Chunks checkpoint only on a local
    instance (``address`` None), whose workers share this machine's files.
    """
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(_call)
        task_ref = ray.put(task)  # shipped once, shared by every chunk
        pending = {remote.remote(task_ref, ch, checkpoints(ch) if address is None else None): ch for ch in chunks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                ch = pending.pop(ref)
                done(ch, ray.get(ref))
                step(len(ch.members) * ch.config["steps"])  # progress per finished chunk
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class Executor:
    name: str
    run: Callable
    check: Callable[[Optional[str], float], None] = lambda address, timeout: None


EXECUTORS: dict[str, Executor] = {
    "local": Executor("local", run_local),
    "processes": Executor("processes", run_processes),
    "ray": Executor("ray", run_ray, check_ray),
}
