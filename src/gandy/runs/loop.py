"""The loop: :func:`drive` steps the game (:func:`gandy.core.step.advance`) and calls hooks to log
and save; every run is driven by it. :func:`simulate` runs a simulation's steps for every member,
logging order parameters, divergences and snapshots, with checkpoints from which a killed run
resumes bit-identically; the studies (the bridge, damping) drive it with their own hooks."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Pipe
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch

from gandy.core.atomic import record, write_atomic
from gandy.core.metrics.order import ORDER_PARAMETERS, order_parameters
from gandy.core.optim import BatchedOptimizer
from gandy.core.rng import Stream
from gandy.core.step import MemberValues, Mover, Simulation, State, advance, points, start
from gandy.core.targets import sample_ahead
from gandy.runs.tracking import Seen, seen, stack, tracked


class LiveRows:
    """A chunk's logged rows as JSON lines at ``path``, each line written and flushed as its log is
    measured, so that another process sees a running sweep's curves (``gandy watch``). Started
    with the rows a resumed simulation already holds (the file then says what the tables will:
    nothing lost, nothing twice); ``columns[i]`` is added to member i's rows. The file is gandy's
    (recorded in the output's manifest); the chunk's tables replace it when the chunk is stored.
    ``recorded=False``: kept out of the manifest (a single run's, deleted before its folder is
    finished: :data:`gandy.runs.store.RUN_LIVE`)."""

    def __init__(self, path: Path, rows: list, columns: Optional[list] = None, recorded: bool = True):
        self.path, self.columns = Path(path), columns
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        self._fh = os.fdopen(fd, "w", encoding="utf-8")  # never through a link (gandy makes none)
        if recorded:
            record(self.path)
        self.write(rows)

    def write(self, rows: list) -> None:
        for row in rows:
            extra = self.columns[row["member"]] if self.columns is not None else {}
            self._fh.write(json.dumps({**row, **extra}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


BACKGROUND_LOGS: Optional[bool] = None
"""Whether :func:`simulate` measures its logs on a worker thread (:class:`Background`); None: where
torch's threads leave a core of this process idle (:func:`background_helps`)."""


LOG_BATCH = 8
"""How many logs :func:`simulate` measures in one pass on the worker thread (:class:`Background`):
their members stacked along the member axis, so the order parameters and the divergence
estimators make as many array operations for 8 logs as for one
(:func:`gandy.core.metrics.divergences.sample_divergences_batch`). On the worker each operation
hands the GIL back and forth with the run's thread: at 8 logs a pass the tracked lab's overhead at
log_every 10 fell from 29 % to 15 % (1 thread, benchmarks/lab_step.py, one run); the rest is the
log's compute on the other core, which a batch does not reduce. A log's rows are therefore
written (and told to ``on_log`` and ``gandy watch``) up to :data:`LOG_DELAY` seconds or 8 logs
late; a checkpoint and the end of the run wait for every log taken before them; the numbers do
not depend on the batching (tests/test_loop.py). Logs measured in place are measured at once."""
LOG_DELAY = 1.0
"""The longest a log waits on the worker thread for others to share its pass, in seconds."""
LOG_BATCH_ELEMENTS = 1 << 24
"""Fewer logs to a pass where 8 would hold more particle coordinates than this (128 MB in float64)."""


def background_helps() -> bool:
    """Whether a log worker has a core of its own: torch runs fewer intra-op threads than this
    process may use. Measured on the 2-core VM (benchmarks/lab_step.py): at 1 thread the tracked
    lab's overhead at log_every 10 fell from 70 % to ~20 %; at 2 threads the worker slowed the
    steps more than it saved (82 % against 70 %)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return torch.get_num_threads() < cores


class Background:
    """Measures the logs a run takes (``measure(logs)``: order parameters, tracked divergences, a
    pure function of what each log took from the state) on one worker thread while the run steps
    on, up to ``batch`` logs in one pass: the worker waits until ``batch`` logs are waiting, or the
    first of them has waited ``delay`` seconds, or the run asks for them all (:meth:`wait`: a
    checkpoint, the end of the run), or a log taken ``now`` is waiting (the run's last ``batch``
    logs: the worker then takes what is waiting as soon as it is free, so the end of the run
    waits for about one log, not a batch of them). Logs are measured in the order taken, so rows keep their
    order; a run more than ``2 batch`` logs ahead waits; an error in a log is raised in the run, at
    the latest at its end. ``on=False`` measures each log in place, at once. The numbers are the
    same either way (tests/test_loop.py): every input is a copy or a draw made in order on the
    run's thread, and the estimators give each member what it gives alone.

    Why: a tracked 2-D log costs ~12 ms of one core (exact W1, k-NN divergences with half-sample
    errors), five lab steps; torch's kernels, numpy's sorts and POT's solver release the GIL, so
    the worker uses a core the steps leave idle (where there is one: :data:`BACKGROUND_LOGS`).
    What a log on the worker costs the steps is partly the GIL handed back and forth at each of its
    array operations (a stand-in making one GIL-free C call as long costs what a sleep does;
    benchmarks/lab_step.py --diagnose), partly its compute on the other core: measuring ``batch``
    logs in one pass makes as many operations as one log, which halved the cost
    (:data:`LOG_BATCH`); ``measure`` may hand the pass's compute to a forked process
    (:class:`LogProcess`), which takes the GIL hand-offs away (:func:`simulate` does so where
    divergences are tracked: :data:`LOG_PROCESS`)."""

    def __init__(self, measure: Callable[[list], None], on: bool, batch: int = 1, delay: float = 1.0):
        self._measure, self.batch, self._delay = measure, max(1, batch), delay
        self._cond = threading.Condition()
        self._waiting: list = []  # (taken at, log), in order
        self._busy = self._closed = self._now = False
        self._flushing = 0
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name="gandy-log", daemon=True) if on else None
        if self._thread is not None:
            self._thread.start()

    def __call__(self, item, now: bool = False) -> None:
        if self._thread is None:
            self._measure([item])
            return
        with self._cond:
            while len(self._waiting) >= 2 * self.batch and self._error is None:
                self._cond.wait()
            self._raise()
            self._waiting.append((time.monotonic(), item))
            self._now = self._now or now
            self._cond.notify_all()

    def wait(self) -> None:
        """Until every log taken so far is measured; raises a log's error."""
        if self._thread is None:
            return
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while (self._waiting or self._busy) and self._error is None:
                    self._cond.wait()
            finally:
                self._flushing -= 1
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _due(self) -> bool:
        return bool(self._waiting) and (self._closed or self._flushing > 0 or self._now or len(self._waiting) >= self.batch
                                        or time.monotonic() - self._waiting[0][0] >= self._delay)

    def _work(self) -> None:
        with self._cond:
            while True:
                while not self._due() and not (self._closed and not self._waiting):
                    self._cond.wait(None if not self._waiting else
                                    max(1e-3, self._delay - (time.monotonic() - self._waiting[0][0])))
                if not self._waiting:
                    return
                logs = [item for _, item in self._waiting[:self.batch]]
                del self._waiting[:self.batch]
                self._busy = True
                self._cond.release()
                try:
                    self._measure(logs)
                except BaseException as e:  # noqa: BLE001 - raised in the run's thread
                    error = e
                else:
                    error = None
                finally:
                    self._cond.acquire()
                    self._busy = False
                if error is not None:
                    self._error = error
                    self._waiting.clear()
                self._cond.notify_all()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, kind, *_) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            if self._thread is not None:
                with self._cond:
                    if kind is not None:
                        self._waiting.clear()
                    self._closed = True
                    self._cond.notify_all()
                self._thread.join()


LOG_PROCESS: Optional[bool] = None
"""Whether the log worker of :func:`simulate` hands the logs' measuring to a forked child process
(:class:`LogProcess`); None: where divergences are tracked on the CPU, the logs go to the worker
(:data:`BACKGROUND_LOGS`) and the platform forks cheaply and safely (Linux, outside Ray's
workers). Why: on the worker thread each of a log's few hundred array operations hands the GIL
back and forth with the stepping thread, and that handing, not the log's compute, was most of
what the logs cost the run: the batched k-NN work run without pause beside a bare lab run slowed
it by 26 % on a thread and 6.5 % in a process; tracking the lab at log_every 10 cost 5.0-9.8 %
with the process against 9.3-15.3 % on the thread (benchmarks/lab_step.py, 1 thread, five runs;
benchmarks/RESULTS.md)."""


def log_process_helps(sim, tracked_logs: bool) -> bool:
    """Whether :func:`simulate`'s log worker should measure in a :class:`LogProcess` (see
    :data:`LOG_PROCESS`): divergences tracked, a CPU simulation (a forked child cannot use its
    parent's CUDA context), Linux, the main thread, and not inside a Ray worker (whose service
    threads make a fork unsafe)."""
    return (tracked_logs and getattr(sim, "device", torch.device("cpu")).type == "cpu" and sys.platform == "linux"
            and threading.current_thread() is threading.main_thread() and "ray" not in sys.modules)


class LogProcess:
    """``compute(logs)`` (a pure function of the logs: their measured numbers) in a child forked
    now, so that its array operations never contend for this process's GIL: each call pickles the
    logs to the child and waits for its answer (the wait releases the GIL). The child is a copy of
    this process at the fork (the simulation, the estimators), computes the same numbers from the
    same inputs, ignores Ctrl-C (the run's interrupt closes the pipe) and leaves with
    ``os._exit`` when the pipe closes (no atexit, no flushing of the parent's buffers); SIGTERM
    ends it. Its memory is the parent's, shared copy-on-write: at most what the parent held at the
    fork is held twice, as the parent writes its pages. A child that dies or cannot be reached is
    not waited for: the calls from then on compute in this process, so a run never loses a log to
    it. An error in ``compute`` is raised here."""

    def __init__(self, compute: Callable[[list], object]):
        self._compute = compute
        mine, theirs = Pipe()
        with warnings.catch_warnings():  # 3.12+ warns of a fork beside threads; the child only computes
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (its numbers are checked through the parent)
            try:
                mine.close()
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent closes the pipe
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handlers (cli, executors)
                torch.set_num_threads(1)
                self._serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid: Optional[int] = pid
        self._conn = mine

    def _serve(self, conn) -> None:  # pragma: no cover - runs in the child
        while True:
            try:
                logs = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return
            try:
                answer = (True, self._compute(logs))
            except BaseException as e:  # noqa: BLE001 - raised in the parent
                answer = (False, e)
            try:
                blob = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an error that does not pickle goes as its text
                blob = pickle.dumps((False, RuntimeError(f"a log failed in the log process: {answer[1]!r}")))
            try:
                conn.send_bytes(blob)
            except OSError:
                return

    def __call__(self, logs: list):
        if self.pid is not None:
            try:
                self._conn.send_bytes(pickle.dumps(logs, pickle.HIGHEST_PROTOCOL))
                ok, value = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):  # the child is gone: measure here from now on
                self.close()
            else:
                if not ok:
                    raise value
                return value
        return self._compute(logs)

    def close(self) -> None:
        """Close the pipe and reap the child (it leaves at once, or after the pass it is in)."""
        if self.pid is not None:
            pid, self.pid = self.pid, None
            self._conn.close()
            os.waitpid(pid, 0)


class Taken(NamedTuple):
    """What one log of :func:`simulate` took from the state at step ``t`` (copies, or draws made in
    order on the run's thread), for its measuring: the ``b`` members' visible points ``x`` and
    initial points ``x0`` ``(b, N, d)``, the target sample ``ref: (b, M, d)``, the logged state
    numbers (``State.LOGGED``, each ``(b,)``) and, with divergences tracked, the :class:`Seen` copy."""

    t: int
    x: torch.Tensor
    x0: torch.Tensor
    ref: torch.Tensor
    logged: dict
    view: Optional[Seen]


Observer = tuple[int, Callable[[int], None]]
"""``(every, fn)``: :func:`drive` calls ``fn(t)`` at the steps ``t`` it observes (see there)."""


def drive(sim: Simulation, st: State, steps: int, observe: Sequence[Observer] = (),
          after_step: Optional[Callable[[int], None]] = None, stop: Optional[Callable[[int], bool]] = None,
          mover: Optional[Mover] = None) -> int:
    """Step the game in place from step ``st.t`` up to ``steps`` (:func:`advance`, with ``mover``:
    default the simulation's), calling hooks; returns the step it ended at.

    * ``observe``: ``(every, fn)`` pairs; ``fn(t)`` is called, in the order given, at every step
      ``t`` (steps made so far, from ``st.t`` on) with ``t % every == 0`` and at the last step,
      before the step from ``t`` is taken: state ``t`` is what it sees;
    * ``after_step(t)``: after each step, ``t`` the steps made (progress, checkpoints);
    * ``stop(t)``: asked after each step (after ``after_step``); True ends the run at ``t``, which
      is then the last step (the observers see it, once).
    """
    t = st.t
    while True:
        last = t == steps
        for every, fn in observe:
            if t % every == 0 or last:
                fn(t)
        if last:
            return t
        advance(sim, st, mover)
        t += 1
        if after_step is not None:
            after_step(t)
        if stop is not None and stop(t):
            for _, fn in observe:
                fn(t)
            return t


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
    resumed_from: int = 0  # the step a checkpoint let the simulation continue from (0: from the start)
    discarded: Optional[str] = None  # why a checkpoint found on disk was not used (None: none was)


@dataclass
class Checkpoint:
    """Where and how often :func:`simulate` saves its whole state, so that a killed simulation
    resumes from the last save with numbers exactly equal to an uninterrupted run.

    ``path``: the checkpoint file (written atomically; deleted by the caller once the results are
    stored). ``fingerprint``: identifies the simulation (config, members, seeds). A save is due
    every ``every_seconds`` of wall time (at least 10 times the last save's duration, so saving
    never takes more than ~10 % of the time) or, when ``every_steps`` is set, every that many steps.

    Every save carries a SHA-256 of its content (:func:`digest`). A file that cannot be read, has
    no or a wrong checksum, or belongs to another simulation is not used (:meth:`load` returns
    None and ``discarded`` says why); the simulation then starts over and its next save replaces
    the file.
    """

    path: Path
    fingerprint: str
    every_seconds: float = 60.0
    every_steps: Optional[int] = None
    live: Optional[Path] = None
    """Where :func:`simulate` also writes every logged row as a line of JSON as it is measured
    (:class:`LiveRows`; ``gandy watch`` reads it while the run goes on), None for none."""
    live_columns: Optional[list] = None
    """Columns added to member i's live rows (a sweep's member index and swept values)."""
    discarded: Optional[str] = field(default=None, repr=False)
    _last: float = field(default=0.0, repr=False)
    _cost: float = field(default=0.0, repr=False)

    def due(self, t: int) -> bool:
        if self.every_steps is not None:
            return t % self.every_steps == 0
        return time.monotonic() - self._last >= max(self.every_seconds, 10 * self._cost)

    def save(self, st: "State", out: "SimOutput", t_next: int) -> None:
        t0 = time.monotonic()
        blob = {
            "fingerprint": self.fingerprint, "t_next": t_next, **_state_blob(st),
            "metrics": out.metrics, "snapshot_steps": out.snapshot_steps,
            "snapshots": [torch.from_numpy(a) for a in out.snapshots], "divergence_methods": out.divergence_methods,
        }
        blob["checksum"] = digest(blob)
        buf = io.BytesIO()
        torch.save(blob, buf)
        write_atomic(self.path, buf.getvalue())
        self._last = time.monotonic()
        self._cost = self._last - t0

    def load(self, device) -> Optional[dict]:
        """The saved state, or None when there is none or it cannot be trusted (then
        ``discarded`` says why: unreadable, no or a wrong checksum, another simulation's)."""
        self._last = time.monotonic()
        self.discarded = None
        if not self.path.exists():
            return None
        try:
            blob = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as e:  # a damaged file (a kill cannot make one: writes are atomic)
            return self._discard(f"cannot read it: {type(e).__name__}")
        if not isinstance(blob, dict):
            return self._discard("not a gandy checkpoint")
        stored = blob.pop("checksum", None)
        if stored is None:
            return self._discard("no checksum: written by an earlier gandy")
        if digest(blob) != stored:
            return self._discard("checksum mismatch")
        if blob.get("fingerprint") != self.fingerprint:
            return self._discard("it belongs to another simulation")
        return blob

    def _discard(self, why: str) -> None:
        self.discarded = why
        return None


def digest(blob) -> str:
    """SHA-256 (hex) of a checkpoint's content: its structure and every value other than a tensor,
    as pickled (protocol 4; a loaded checkpoint pickles to the same bytes as the saved one), then
    every tensor's dtype, shape and bytes, in the order met. One flipped bit anywhere in the data
    changes it."""
    tensors: list = []

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):  # tensors are hashed by their bytes, below
            if isinstance(obj, torch.Tensor):
                tensors.append(obj)
                return len(tensors) - 1
            return None

    buf = io.BytesIO()
    _Pickler(buf, protocol=4).dump(blob)
    h = hashlib.sha256(buf.getvalue())
    for t in tensors:
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{flat.dtype}:{tuple(t.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


def _encode(v, name: str):
    """One State field as a checkpoint holds it: tensors, dicts of tensors, integers and None as
    they are; an optimiser as its moments and step count; the random streams as their counters;
    the per-member numbers as a dict of their fields. A field of another type is refused (a
    TypeError naming it), so that no field of State can be left out of the checkpoint unnoticed."""
    if isinstance(v, BatchedOptimizer):
        return {"m": v.m, "v": v.v, "vmax": v.vmax, "t": v.t}
    if isinstance(v, MemberValues):
        return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
    if isinstance(v, dict) and v and all(isinstance(s, Stream) for s in v.values()):
        return {k: s.counter for k, s in v.items()}
    if v is None or isinstance(v, (torch.Tensor, int, dict)):
        return v
    raise TypeError(f"a checkpoint cannot save State.{name}, a {type(v).__name__}")


def _decode(fresh, saved, name: str):
    """A checkpoint's ``saved`` entry as the State field whose fresh value is ``fresh`` (optimisers
    and streams are restored in place; tensors go to the fresh one's device)."""
    if isinstance(fresh, BatchedOptimizer):
        fresh.m, fresh.v, fresh.vmax, fresh.t = saved["m"], saved["v"], saved["vmax"], saved["t"]
        return fresh
    if isinstance(fresh, MemberValues):
        return MemberValues(**saved)
    if isinstance(fresh, dict) and fresh and all(isinstance(s, Stream) for s in fresh.values()):
        for k, c in saved.items():
            fresh[k].counter = c
        return fresh
    if isinstance(fresh, torch.Tensor) and isinstance(saved, torch.Tensor):
        return saved.to(fresh.device)
    return saved


def _state_blob(st: "State") -> dict:
    """Every field of a state as a checkpoint saves it (:func:`_encode`), by the field's name."""
    return {f.name: _encode(getattr(st, f.name), f.name) for f in dataclasses.fields(st)}


def _differ(fresh, saved, name: str) -> Optional[str]:
    """How ``saved`` departs from the layout of ``fresh`` (a freshly started state's part): a
    missing or extra entry, a tensor of another shape or dtype, a counter that is not an integer;
    None where it fits."""
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{name} is not a tensor"
        if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            return (f"{name} is {str(saved.dtype).removeprefix('torch.')} {tuple(saved.shape)}, expected "
                    f"{str(fresh.dtype).removeprefix('torch.')} {tuple(fresh.shape)}")
        return None
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            return f"{name} holds other entries than this simulation's"
        return next((d for k in fresh if (d := _differ(fresh[k], saved[k], f"{name}.{k}")) is not None), None)
    if fresh is None:
        return None if saved is None else f"{name} should be empty"
    if isinstance(fresh, int) and not isinstance(fresh, bool):
        return None if type(saved) is int else f"{name} is not an integer"
    return None


def _mismatch(st: "State", blob: dict, b: int, snap_n: int, steps: int) -> Optional[str]:
    """Why a checkpoint (checksum already verified) does not fit the freshly started state ``st``
    of ``b`` members: its tensors' shapes and dtypes, its dicts' entries, its step within
    ``[1, steps)``, its snapshots ``(b, snap_n, d)``; None where it fits."""
    fresh = _state_blob(st)
    wanted = set(fresh) | {"fingerprint", "t_next", "metrics", "snapshot_steps", "snapshots", "divergence_methods"}
    if set(blob) != wanted:
        return "its entries are not this gandy's"
    problem = _differ(fresh, {k: blob[k] for k in fresh}, "state")
    if problem is not None:
        return problem
    t_next = blob["t_next"]
    if type(t_next) is not int or not 1 <= t_next < steps:
        return f"its step {t_next!r} lies outside 1..{steps - 1}"
    snaps, snap_steps = blob["snapshots"], blob["snapshot_steps"]
    if not (isinstance(blob["metrics"], list) and isinstance(snaps, list) and isinstance(snap_steps, list)
            and len(snaps) == len(snap_steps)):
        return "its logged series are malformed"
    shape = (b, min(snap_n, st.x.shape[1]), st.x.shape[-1])
    for a in snaps:
        if not isinstance(a, torch.Tensor) or tuple(a.shape) != shape or a.dtype != st.x.dtype:
            return f"a snapshot is {getattr(a, 'dtype', type(a).__name__)} {tuple(getattr(a, 'shape', ()))}, expected {shape}"
    return None


def _restore(st: "State", out: "SimOutput", blob: dict) -> int:
    """Put a checkpoint's state into ``st`` (every field, :func:`_decode`) and ``out``; returns the
    step to continue from."""
    for f in dataclasses.fields(st):
        setattr(st, f.name, _decode(getattr(st, f.name), blob[f.name], f.name))
    out.metrics = list(blob["metrics"])
    out.snapshot_steps = list(blob["snapshot_steps"])
    out.snapshots = [a.cpu().numpy() for a in blob["snapshots"]]  # loaded onto the device
    out.divergence_methods = blob["divergence_methods"]
    return int(blob["t_next"])


def simulate(sim: Simulation, seeds: list[int], progress: Optional[Callable[[int], None]] = None,
             members: Optional[MemberValues] = None, checkpoint: Optional[Checkpoint] = None,
             on_log: Optional[Callable[[list], None]] = None) -> SimOutput:
    """Run the game for every member at once, logging order parameters and snapshots.

    ``seeds[i]`` keys member i's randomness; ``members`` its per-member numbers (default: the
    config's). MemberValues of one config are its seeds; a sweep passes one entry per grid point x seed.
    ``checkpoint``: save the state at intervals and, where a matching save exists, continue from it
    (``progress`` is then told of the steps already made, at once; ``resumed_from`` of the output
    says from which step). A save that cannot be trusted (see :class:`Checkpoint`) or does not fit
    this simulation's state (shapes, dtypes, entries) is not used: the simulation starts at step 0
    and the output's ``discarded`` says why. ``on_log(rows)``: told of each log's rows (one dict
    per member, as ``metrics`` holds them) as soon as they are measured, in order, possibly on the
    log's worker thread (:class:`Background`): a logger's hook.
    """
    spec = sim.loop
    b = len(seeds)
    members = members or sim.defaults.pad(b)
    # A one-member batch takes other kernels in torch's bmm (and its backward) than a batch of two
    # or more, whose rounding differs; a lone member padded to two keeps its numbers bit-identical
    # whether it runs alone or beside others: a sweep's chunk of one is, and a config's own run
    # where ``engine: eager`` (the reference) is asked for by name. Otherwise a config's own lone
    # member runs alone (padding doubles the arithmetic; issue 27), equal to rounding.
    cfg = getattr(sim, "cfg", None)
    pad = b == 1 and not (getattr(sim, "single", False) and cfg is not None and cfg.engine != "eager")
    st = start(sim, [seeds[0], seeds[0] + 1], members.pad(2)) if pad else start(sim, list(seeds), members)
    out = SimOutput(seeds=list(seeds))
    snap_n = spec.snapshot_points
    saved = checkpoint.load(sim.device) if checkpoint is not None else None
    if saved is not None:
        problem = _mismatch(st, saved, b, snap_n, spec.steps)
        if problem is not None:
            checkpoint.discarded, saved = problem, None
    if checkpoint is not None:
        out.discarded = checkpoint.discarded
    if saved is not None:
        out.resumed_from = _restore(st, out, saved)
        if progress is not None:
            for _ in range(out.resumed_from):
                progress(1)
    track = spec.tracked

    def visible():
        return torch.where(st.alive[:b, None, None], points(sim, st)[:b], torch.nan)

    def log(t: int) -> None:
        # what the log measures, taken now (the reference drawn in order from the metrics stream);
        # the measuring may run on the worker thread while the run steps on (see Background)
        ref = sample_ahead(sim.target, st.streams["metrics"], spec.reference)[:b]  # small draws made many logs ahead
        logged = {name: torch.where(st.alive[:b], getattr(st, name)[:b], torch.nan).double().cpu()
                  for name in State.LOGGED}  # NaN before the first step and for diverged members
        # clones: a view of a larger block (the reference drawn ahead, the padded state) would
        # carry the whole block to a LogProcess
        background(Taken(t, visible(), st.x0[:b].clone(), ref.clone(), logged, seen(sim, st, b) if track else None),
                   now=t > spec.steps - background.batch * spec.log_every)  # the run's last logs: no waiting for a batch

    def compute(logs: list) -> tuple:
        """The logs' rows (a list per log, a dict per member) and the divergences' methods (None
        untracked): the logs' members stacked along the member axis (log j's member i at j * b + i)
        and measured in one pass; with divergences tracked, W1 comes from their pooled distance
        matrix. A pure function of the logs: it may run in a :class:`LogProcess`."""
        x, x0, ref = (torch.cat([getattr(lg, name) for lg in logs]) for name in ("x", "x0", "ref"))
        vals = {**order_parameters(x, sim.target, None if track else ref, spec.max_points, x0),
                **{name: torch.cat([lg.logged[name] for lg in logs]) for name in State.LOGGED}}
        methods = None
        if track:
            div, methods = tracked(sim, stack([lg.view for lg in logs]), ref, len(logs) * b, vals)
            vals = {**vals, **div}
        keys = [*ORDER_PARAMETERS, *(k for k in vals if k not in ORDER_PARAMETERS and k != "mode_hist")]
        columns = {k: np.asarray(vals[k], dtype=np.float64).tolist() for k in keys}  # each entry's float()
        rows = []
        for j, lg in enumerate(logs):
            rows.append([])
            for i, seed in enumerate(seeds):
                row = {"member": i, "seed": seed, "step": lg.t, **{k: columns[k][j * b + i] for k in keys}}
                if "mode_hist" in vals:
                    row["mode_hist"] = vals["mode_hist"][j * b + i].tolist()
                rows[-1].append(row)
        return rows, methods

    def measure(logs: list) -> None:
        rows, methods = (child or compute)(logs)
        if methods is not None:
            out.divergence_methods = methods
        for log_rows in rows:
            out.metrics.extend(log_rows)
            if live is not None:
                live.write(log_rows)
            if on_log is not None:
                on_log(log_rows)

    def snapshot(t: int) -> None:
        out.snapshot_steps.append(t)
        out.snapshots.append(visible()[:, :snap_n].cpu().numpy())

    def after_step(t: int) -> None:
        if progress is not None:
            progress(1)
        if checkpoint is not None and t < spec.steps and checkpoint.due(t):
            background.wait()  # the saved output holds every log up to t
            checkpoint.save(st, out, t)

    def at(every: int, fn: Callable[[int], None]) -> Observer:
        """``fn`` at the steps a run of ``spec.horizon`` steps observes (multiples of ``every``
        and the horizon itself), and at the multiples and the last step after it (metrics.phase_2x)."""
        return (1, lambda t: fn(t) if t % every == 0 or t in (spec.horizon, spec.steps) else None)

    on = background_helps() if BACKGROUND_LOGS is None else BACKGROUND_LOGS
    # a batch of logs at most as large as memory allows (LOG_BATCH_ELEMENTS)
    batch = max(1, min(LOG_BATCH, LOG_BATCH_ELEMENTS // max(1, b * st.x.shape[1] * st.x.shape[2])))
    use_child = on and (log_process_helps(sim, track) if LOG_PROCESS is None else LOG_PROCESS)
    child = live = None
    try:
        if checkpoint is not None and checkpoint.live is not None:
            live = LiveRows(checkpoint.live, out.metrics, checkpoint.live_columns)
        if use_child:  # forked on the run's thread, before the log worker starts
            try:
                child = LogProcess(compute)
            except OSError:  # no fork to be had (limits, sandboxes): the worker thread measures
                child = None
        background = Background(measure, on, batch, LOG_DELAY)
        with background:
            drive(sim, st, spec.steps, [at(spec.log_every, log), at(spec.snapshot_every, snapshot)], after_step)
    finally:
        if child is not None:
            child.close()
        if live is not None:
            live.close()
    out.diverged_step = st.diverged_step[:b].numpy()
    out.final_particles = visible().cpu().numpy()
    out.state = st
    return out
