"""The ``gandy`` command.

    gandy [--threads N] [--debug] COMMAND ...
    gandy run CONFIG.yaml|EXPERIMENT [key=value ...] --out DIR [--resume] [--force]
              [--executor local|processes|ray] [--workers N] [--address ADDR] [--connect-timeout S] [--checkpoint-every S] [--quick]
    gandy experiments
    gandy watch DIR [--columns COL,...] [--follow SECONDS] [--rows N]
    gandy report DIR
    gandy plot phase DIR --x KEY --y KEY [--color METRIC]
    gandy plot samples DIR [--per-run K]
    gandy boundary CONFIG.yaml|EXPERIMENT [key=value ...] --x KEY --y KEY [--seeds K] [--resolution R] [--per-round K] --out DIR
              [--resume] [--force] [--executor ...] [--workers N] [--fail PHASE,...]
    gandy damping CONFIG.yaml --weights W1,W2,... [--out DIR] [--tol T]
    gandy demo [--out DIR]

Bad input (a config, an option, an output location, a data file) prints one
``error: FIELD: message`` line on stderr and exits with code 2, before any work and with nothing
written. An unexpected internal error prints one line and exits with code 1; ``--debug`` shows its
traceback. Ctrl-C prints one line and exits with code 130; SIGTERM (``kill``, a job scheduler)
runs the same clean-ups (no half-written output is left), prints one line and exits with 143.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from gandy.core.errors import CALLER, ConfigError, did_you_mean, one_line
from gandy.core.lazy import LazyModule
from gandy.core.metrics.phases import SPLIT_FAILED

# What the commands run is loaded when a command runs: ``gandy --help`` and every command's
# ``--help`` load neither torch (~1.5 s) nor the studies (~3-4 s in all; tests/test_cli.py).
torch = LazyModule("torch")
api = LazyModule("gandy.runs.api")
boundary = LazyModule("gandy.runs.boundary")
config_ = LazyModule("gandy.runs.config")
executors = LazyModule("gandy.runs.executors")
loggers = LazyModule("gandy.runs.loggers")
outputs = LazyModule("gandy.runs.outputs")
sweep = LazyModule("gandy.runs.sweep")
studies = LazyModule("gandy.studies")
study_base = LazyModule("gandy.studies.base")
damping_model = LazyModule("gandy.studies.damping.model")
demo = LazyModule("gandy.studies.demo.experiment")
mnist_collapse = LazyModule("gandy.studies.mnist_collapse.experiment")
universality = LazyModule("gandy.studies.universality.model")
plots = LazyModule("gandy.views.plots")
report_ = LazyModule("gandy.views.report")
sweep_store = LazyModule("gandy.runs.store")

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="GAN dynamics: the effective particle model and a GAN lab.")
plot_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Figures from a run directory.")
app.add_typer(plot_app, name="plot")

DEFAULT_THREADS = 1
"""Torch threads unless ``--threads`` or GANDY_THREADS says otherwise: runs.build.DEFAULT_THREADS
(a copy, so that ``gandy --help`` loads no torch; tests/test_cli.py checks they agree)."""

_DEBUG = {"on": False}
_THREADS = {"n": DEFAULT_THREADS}
"""torch threads the root options chose (:func:`_root`), applied as a command starts (:func:`_use_threads`)."""


def _say(text: str) -> None:
    """One ``error: ...`` line on stderr: ``text`` may quote a user's keys, values and paths, so its
    newlines, escape sequences and other control characters are written as visible escapes."""
    typer.echo(f"error: {one_line(text)}", err=True)


def _fail(e: Exception) -> None:
    _say(str(e))
    raise typer.Exit(2)


def _guarded(fn):
    """Every command's failures as one line: ConfigError (bad input) and OSError (a file or folder
    the system refused) exit 2, Ctrl-C 130, anything else 1 with a hint to rerun with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        CALLER["cli"] = True  # messages name options as flags (--force), not Python arguments
        try:
            _use_threads()
            with outputs.scoped_locks():  # the outputs a command locked are free again when it returns
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except ConfigError as e:
            _fail(e)
        except KeyboardInterrupt:
            _say("interrupted (a sweep resumes with --resume)")
            raise typer.Exit(130) from None
        except OSError as e:
            if _DEBUG["on"]:
                raise
            where = e.filename or "system"
            _say(f"{where}: {e.strerror or e}")
            raise typer.Exit(2) from None
        except Exception as e:
            if _DEBUG["on"]:
                raise
            _say(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                 f"(rerun with --debug for the traceback)")
            raise typer.Exit(1) from None
        finally:
            CALLER["cli"] = False

    return wrapper


def _threads(n: Optional[int]) -> int:
    if n is None:
        env = os.environ.get("GANDY_THREADS")
        if env is None:
            return DEFAULT_THREADS
        if not env.strip().isdigit() or int(env) < 1:
            _fail(ConfigError("GANDY_THREADS", f"must be a positive integer, got {env!r}"))
        return int(env)
    if n < 1:
        _fail(ConfigError("threads", f"must be a positive integer, got {n}"))
    return n


@app.callback()
def _root(
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N",
                                          help=f"torch threads (default: GANDY_THREADS, else {DEFAULT_THREADS})"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an internal error"),
):
    """GAN dynamics: the effective particle model and a GAN lab."""
    _DEBUG["on"] = debug
    n = _threads(threads)
    if threads is not None:
        os.environ["GANDY_THREADS"] = str(n)  # an explicit --threads wins over a config's threads key (run_threads)
    _THREADS["n"] = n


def _use_threads() -> None:
    """torch's thread count as the root options said (:func:`_root`), set as a command starts:
    torch is loaded by the commands, not by ``gandy --help``."""
    n = _THREADS["n"]
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@app.command("run", short_help="Run a config (its seeds or its sweep) or a named experiment.")
@_guarded
def run_cmd(
    config: str = typer.Argument(..., metavar="CONFIG", help="a YAML config file, or the name of an experiment (gandy experiments)"),
    overrides: Optional[List[str]] = typer.Argument(None, metavar="KEY=VALUE", help="dotted overrides, e.g. kernel.g2=0.9"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="output folder (default: runs/NAME); must be new or empty"),
    force: bool = typer.Option(False, "--force", help="replace DIR if it is an earlier gandy output (never anything else)"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted sweep or experiment in DIR (same config)"),
    executor: str = typer.Option("local", "--executor", metavar="NAME", help="where sweeps run: local, processes or ray"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="sweeps: at least N chunks (--executor processes: in N processes; default: one per core there, else 1)"),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDR", help="a Ray cluster (default: a local instance)"),
    connect_timeout: float = typer.Option(20.0, "--connect-timeout", metavar="SECONDS", help="give up on an unreachable Ray cluster after this long"),
    checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", metavar="SECONDS", help="a sweep's chunk saves its state this often (0: every step)"),
    quick: bool = typer.Option(False, "--quick", help="experiments: the reduced version"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    report: bool = typer.Option(False, "--report", help="also write DIR/report.html (gandy report)"),
    tensorboard: Optional[Path] = typer.Option(None, "--tensorboard", metavar="LOGDIR",
                                               help="a single run: also send every log to TensorBoard event files in LOGDIR"),
):
    """Run a config (all its seeds, or its whole sweep) or a named experiment."""
    workers = _options(executor, address, connect_timeout, checkpoint_every, force, resume, workers)
    if tensorboard is not None:
        loggers.check_logdir(tensorboard, "tensorboard")
    options = {"checkpoint_seconds": checkpoint_every, "connect_timeout": connect_timeout, "workers": workers}
    if config in studies.EXPERIMENTS and not Path(config).is_file():
        if tensorboard is not None:
            raise ConfigError("tensorboard", "--tensorboard takes a single run's logs; watch an experiment's sweeps "
                                             "with gandy watch DIR")
        out = Path("runs") / config if out is None else out
        figures = studies.EXPERIMENTS[config].run(out, study_base.StudyOptions(
            quick=quick, overrides=tuple(overrides or ()), resume=resume, replace=force, executor=executor,
            address=address, progress=not quiet, echo=typer.echo, **options))
        typer.echo("figures:")
        for f in figures:
            typer.echo(f"  {f}")
        _report(out, report)
        return
    if not Path(config).exists() and (quick or not Path(config).suffix):
        raise _not_found(config)
    if quick:
        raise ConfigError("quick", "--quick applies to named experiments (gandy experiments), not to a config file")
    cfg = config_.load_config(config, list(overrides or []))
    out = Path("runs") / Path(config).stem if out is None else out
    if cfg.sweep or cfg.search:
        if tensorboard is not None:
            raise ConfigError("tensorboard", "--tensorboard takes a single run's logs; a sweep's running chunks write "
                                             "theirs as JSON lines: gandy watch DIR")
        results, _, _ = sweep.run_sweep(cfg, out, resume=resume, replace=force, executor=executor, address=address,
                                  progress=not quiet, echo=typer.echo, draw=plots.plot_sweep, **options)
        counts = results.phase.value_counts().to_dict()
        typer.echo(f"{out}: {len(results)} members: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if "phase_2x" in results:
            changed = int((results.phase != results.phase_2x).sum())
            typer.echo(f"at twice the steps (phase_2x): {changed} of {len(results)} labels changed")
        _wrote(out)
        _report(out, report)
        return
    if resume:
        raise ConfigError("resume", "only sweeps and searches resume (this config has no sweep: or search: section); "
                                    "a single run is written at its end, so rerun it")
    if executor != "local":
        raise ConfigError("executor", "--executor ray runs the chunks of a sweep; this config has no sweep: section")
    tb = loggers.TensorBoard(tensorboard) if tensorboard is not None else None
    try:
        res = api.run(cfg, out=out, progress=not quiet, replace=force, draw=plots.plot_run, on_log=tb)
    finally:
        if tb is not None:
            tb.close()
    twice = "phase_2x" in res.results
    phases = ", ".join(f"seed {r.seed}: {r.phase}" + (f" (at twice the steps: {r.phase_2x})" if twice else "")
                       for r in res.results.itertuples())
    typer.echo(f"{out}: {phases}")
    _wrote(out)
    _report(out, report)


def _not_found(config: str) -> ConfigError:
    """The error for a CONFIG that is neither a file nor an experiment, with the nearest names."""
    names = list(studies.EXPERIMENTS)
    return ConfigError("config", f"{config!r} is neither a file nor an experiment (experiments: {', '.join(names)})"
                                 f"{did_you_mean(config, names)}")


def _options(executor: str, address: Optional[str], connect_timeout: float, checkpoint_every: float, force: bool,
             resume: bool, workers: Optional[int]) -> int:
    """Check the options ``run`` and ``boundary`` share (ConfigError naming the option); returns
    the number of workers (default: one per core with ``--executor processes``, else 1)."""
    if executor not in executors.EXECUTORS:
        raise ConfigError("executor", f"unknown executor {executor!r}; valid: {', '.join(executors.EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ConfigError("address", "a cluster address needs --executor ray")
    if not connect_timeout > 0:
        raise ConfigError("connect-timeout", f"must be > 0 seconds, got {connect_timeout}")
    if not checkpoint_every >= 0:
        raise ConfigError("checkpoint-every", f"must be >= 0 seconds, got {checkpoint_every}")
    if force and resume:
        raise ConfigError("resume", "--force replaces DIR and --resume continues it: give one")
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {workers}")
    return ((os.cpu_count() or 1) if executor == "processes" else 1) if workers is None else workers


@app.command("boundary", short_help="Adaptive search for the collapse boundary, with intervals.")
@_guarded
def boundary_cmd(
    config: str = typer.Argument(..., metavar="CONFIG", help="a YAML config with a two-axis sweep: section, or an "
                                 "experiment whose config is one (collapse-1d, critic-types, mnist-collapse)"),
    overrides: Optional[List[str]] = typer.Argument(None, metavar="KEY=VALUE", help="dotted overrides, e.g. critic.activation=tanh"),
    x: str = typer.Option(..., "--x", metavar="KEY", help="the swept key searched (its range and scale)"),
    y: str = typer.Option(..., "--y", metavar="KEY", help="the swept key whose values are the rows"),
    seeds: Optional[int] = typer.Option(None, "--seeds", metavar="K", help="seeds 0..K-1 at every point (default: the config's)"),
    resolution: Optional[int] = typer.Option(None, "--resolution", metavar="R", help="positions along x, evenly spaced on its scale (default: the x axis's number of values)"),
    fail: Optional[str] = typer.Option(None, "--fail", metavar="PHASE,...", show_default=False,
                                       help=f"the phases that count as failing [default: {','.join(SPLIT_FAILED)}; "
                                            "an experiment's own where it has one (mnist-collapse: also diverged)]"),
    per_round: int = typer.Option(1, "--per-round", metavar="K", help="positions tried in each open row per round (1: bisection; more: fewer, wider rounds)"),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="output folder; must be new or empty"),
    force: bool = typer.Option(False, "--force", help="replace DIR if it is an earlier gandy output (never anything else)"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted search in DIR (same config and options)"),
    executor: str = typer.Option("local", "--executor", metavar="NAME", help="where rounds run: local, processes or ray"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="at least N chunks per round"),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDR", help="a Ray cluster (default: a local instance)"),
    connect_timeout: float = typer.Option(20.0, "--connect-timeout", metavar="SECONDS", help="give up on an unreachable Ray cluster after this long"),
    checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", metavar="SECONDS", help="a chunk saves its state this often (0: every step)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    report: bool = typer.Option(False, "--report", help="also write DIR/report.html (gandy report)"),
):
    """Bisection (or K-section, --per-round K) along --x for every value of --y on the fraction of
    seeds that fail, a logistic fit per row and a bootstrap interval for x50 (docs/sweeps.md,
    "Boundaries"); an experiment's own figures too (mnist-collapse: the diagram in the authors'
    style, docs/bridge.md)."""
    workers = _options(executor, address, connect_timeout, checkpoint_every, force, resume, workers)
    draw = plots.plot_boundary
    failing = SPLIT_FAILED
    if config in studies.EXPERIMENTS and not Path(config).is_file():
        source = studies.EXPERIMENTS[config].sweep_config
        own = studies.EXPERIMENTS[config].boundary_figures
        failing = studies.EXPERIMENTS[config].boundary_fail or failing
        if own is not None:
            def draw(d):  # the search's figure, then the study's own
                return [*plots.plot_boundary(d), *own(d)]
        if source is None:
            raise ConfigError("config", f"experiment {config!r} has no single sweep config; give a YAML file")
        cfg = config_.load_config(source(), list(overrides or []))
    else:
        if not Path(config).suffix and not Path(config).exists():
            raise _not_found(config)
        cfg = config_.load_config(config, list(overrides or []))
    phases = failing if fail is None else tuple(p.strip() for p in fail.split(",") if p.strip())
    table, summary = boundary.run_boundary(cfg, out, x, y, seeds=seeds, resolution=resolution, fail=phases,
                                  per_round=per_round, resume=resume,
                                  replace=force, executor=executor, address=address, workers=workers,
                                  progress=not quiet, echo=typer.echo, checkpoint_seconds=checkpoint_every,
                                  connect_timeout=connect_timeout, draw=draw)
    for row in table.to_dict("records"):
        cens = row["censored"]
        where = f"x50 {row['x50']:.4g} [{row['lo']:.4g}, {row['hi']:.4g}]" if cens == "" else \
            f"the fit's x50 lies {cens.split('_')[0]} the positions tried" if cens in ("above_range", "below_range") else \
            f"no crossing in the range ({cens.replace('_', ' ')})"
        if math.isfinite(row["bracket_lo"]) and math.isfinite(row["bracket_hi"]):  # NaN: the ends agree
            where += f"; the points change between {row['bracket_lo']:.4g} and {row['bracket_hi']:.4g}"
        typer.echo(f"  {y} = {row[y]:.4g}: {where}  ({row['members']} members)")
    _report(out, report)


def _wrote(out: Path) -> None:
    """The files a run or sweep wrote that a user opens: its tables and summary, then its figures."""
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix in (".parquet", ".json", ".npz", ".yaml"))
    typer.echo(f"wrote {out}/: {', '.join(files)}")
    figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    if figures:
        typer.echo("figures:")
        for f in figures:
            typer.echo(f"  {f}")


def _report(out: Path, wanted: bool) -> None:
    if wanted:
        report_.write_report(out, echo=typer.echo)


@app.command("report", short_help="Write DIR/report.html, an interactive page.")
@_guarded
def report_cmd(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="a run, sweep, search or damping directory, or one holding several"),
):
    """Write DIR/report.html, one self-contained interactive page.

    The page holds the phase diagram with a metric menu, a member's series and particle animation
    on a click, divergence traces, damping curves, the config and every metric's protocol. It works
    on runs made by earlier versions too.
    """
    with outputs.output_lock(run_dir):
        report_.write_report(run_dir, echo=typer.echo)


@app.command("ntk", short_help="g1, g2 of a network's NTK, analytic and empirical.")
@_guarded
def ntk_cmd(
    depth: int = typer.Option(..., "--depth", metavar="L", help="hidden layers"),
    activation: str = typer.Option("relu", "--activation", metavar="NAME", help="relu or erf"),
    weight_var: float = typer.Option(2.0, "--weight-var", metavar="S2", help="weight variance sigma_w^2"),
    bias_var: float = typer.Option(0.0, "--bias-var", metavar="S2", help="bias variance sigma_b^2"),
    width: Optional[int] = typer.Option(None, "--width", metavar="W", help="also the empirical NTK of random networks this wide"),
    latent_dim: int = typer.Option(100, "--latent-dim", metavar="DZ", help="latents on the sphere S^(DZ - 1)"),
    samples: int = typer.Option(32, "--samples", metavar="N", help="latents per network"),
    networks: int = typer.Option(4, "--networks", metavar="N", help="random networks"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="random seed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """The analytic g1, g2 and g2/g1 of a fully connected network's NTK.

    With --width, the empirical NTK of random networks beside them: the mean and spread of its
    diagonal and off-diagonal entries.
    """
    out = universality.analytic(depth, activation, weight_var, bias_var)
    if width is not None:
        out["empirical"] = universality.empirical(depth, activation, weight_var, bias_var, width, latent_dim, samples, networks, seed)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"depth {depth}, {activation}, weight_var {weight_var:g}, bias_var {bias_var:g}")
    typer.echo(f"  g1 = {out['g1']:.6g}   g2 = {out['g2']:.6g}   g2/g1 = {out['ratio']:.6g}")
    if width is not None:
        e = out["empirical"]
        typer.echo(f"  empirical NTK, width {width}, d_z {latent_dim}, {networks} networks x {samples} latents:")
        typer.echo(f"    diagonal      {e['diag_mean']:.4g} +- {e['diag_std']:.3g}   (g1 = {out['g1']:.4g})")
        typer.echo(f"    off-diagonal  {e['offdiag_mean']:.4g} +- {e['offdiag_std']:.3g}   (g2 = {out['g2']:.4g}; "
                   f"infinite width at these latents: {e['offdiag_mean_limit']:.4g} +- {e['offdiag_std_limit']:.3g})")
        typer.echo(f"    |K - two-number K|_F / |two-number K|_F = {e['rel_distance']:.3g}")


@app.command("damping", short_help="Scan gradient-penalty weights: decay rates vs theory.")
@_guarded
def damping_cmd(
    config: Path = typer.Argument(..., metavar="CONFIG", help="a YAML config (linear theory: linear critic, point_mass target, sgd)"),
    overrides: Optional[List[str]] = typer.Argument(None, metavar="KEY=VALUE", help="dotted overrides"),
    weights: str = typer.Option(..., "--weights", metavar="W1,W2,...", help="penalty weights, comma-separated: 0.1,0.3,1"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="output folder (default: runs/NAME-damping); must be new or empty"),
    tol: float = typer.Option(1e-3, "--tol", metavar="T", help="converged when |mu_P - mu_Q| <= T * initial, for good (raised to 3x the runs' median residual floor where that is larger)"),
    force: bool = typer.Option(False, "--force", help="replace DIR if it is an earlier gandy output (never anything else)"),
    report: bool = typer.Option(False, "--report", help="also write DIR/report.html (gandy report)"),
):
    """Penalty weights as one batched run: convergence time, decay rate, theory, Jacobian spectra."""
    try:
        ws = [float(w) for w in weights.split(",") if w.strip()]
    except ValueError:
        raise ConfigError("weights", f"{weights!r} is not a comma-separated list of numbers") from None
    if not (0 < tol < 1):
        raise ConfigError("tol", f"must lie in (0, 1), got {tol}")
    cfg = config_.load_config(config, list(overrides or []))
    out = Path("runs") / f"{config.stem}-damping" if out is None else out
    table, summary = damping_model.run_damping(cfg, ws, out, tol=tol, replace=force)
    _report(out, report)
    for key in ("lambda_c", "lambda_best_theory", "lambda_best"):
        v = summary[key]
        typer.echo(f"{key:20s} {v:.4g}" if v is not None else f"{key:20s} -")
    typer.echo(f"{out}: damping.parquet, summary.json, figures/")


@app.command("watch", short_help="The newest logged numbers of a running sweep or run, member by member; an experiment's parts.")
@_guarded
def watch_cmd(
    run_dir: Path = typer.Argument(..., metavar="DIR",
                                   help="a sweep's, run's or experiment's output folder (running or finished)"),
    columns: str = typer.Option("w1,coverage_kl,mean_norm,force_norm", "--columns", metavar="COL,...",
                                help="the logged columns shown (those a run logs)"),
    follow: float = typer.Option(0.0, "--follow", metavar="SECONDS", help="print again every SECONDS until it is done (0: once)"),
    rows: int = typer.Option(40, "--rows", min=1, metavar="N", help="members shown at most"),
):
    """Every member's newest logged row. A sweep: its stored chunks' tables and its running chunks'
    live rows (chunks/ID.live.jsonl, written as each log is measured); a single run: its live rows
    while it runs (live.jsonl in the folder it is being written in), its metrics.parquet once done.
    An experiment (``gandy run NAME``'s folder): a line per sweep or run inside it."""
    if not follow >= 0:
        raise ConfigError("follow", f"must be >= 0 seconds, got {follow}")
    if run_dir.is_dir() and sweep_store.output_kind(run_dir) == "experiment":
        return _watch_experiment(run_dir, follow)
    single = bool(sweep_store.run_live_files(run_dir)) or sweep_store.output_kind(run_dir) == "run"  # a run stays one
    if not single and not (run_dir / "chunks").is_dir() and not (run_dir / "results.parquet").exists():
        raise ConfigError("DIR", f"{run_dir} holds no sweep or run, and no run is being written there: gandy watch "
                                 "reads a sweep or a single run as it runs")
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    while True:
        latest, done, live = sweep_store.latest_rows(run_dir)
        holder = sweep_store.lock_holder(run_dir)  # the gandy process writing it, if one is
        finished = not live and (run_dir / "results.parquet").exists()
        progress = "a single run" if single else _chunks_state(done, live, holder)
        typer.echo(f"{run_dir}: {_writer_state(finished, holder)}; {progress}; {len(latest)} members logged")
        if len(latest):
            unknown = [c for c in wanted if c not in latest.columns]
            if unknown:
                raise ConfigError("columns", f"{', '.join(unknown)} not logged; logged: {', '.join(latest.columns)}")
            keys = [c for c in latest.columns if "." in c]  # the swept keys
            ids = ["member"] if "member" in latest.columns else []
            table = latest[[*ids, *keys, "seed", "step", *wanted]]
            typer.echo(table.head(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if len(latest) > rows:
                typer.echo(f"... and {len(latest) - rows} more members (--rows)")
        if finished or follow == 0:
            return
        time.sleep(follow)


def _writer_state(finished: bool, holder: Optional[int]) -> str:
    """What a watched folder is doing: finished, written by the live gandy process ``holder``
    (:func:`gandy.runs.store.lock_holder`), or stopped before the end."""
    if finished:
        return "finished"
    if holder is not None:
        return f"running (process {holder})"
    return "stopped before the end (no gandy process is writing it; --resume continues it)"


def _chunks_state(done: int, live: int, holder: Optional[int]) -> str:
    """A sweep's chunks: stored, and those with live rows, running while ``holder`` writes it, else cut off."""
    return f"chunks stored {done}, {'running' if holder is not None else 'cut off'} {live}"


def _watch_experiment(run_dir: Path, follow: float) -> None:
    """``gandy watch`` of an experiment's folder (a study: ``gandy run NAME``): whether a gandy
    process writes it, then a line per sweep or run inside (:func:`gandy.runs.store.output_parts`):
    finished, or its chunks stored and running and its members logged. A study that listed its
    parts when it opened has those not begun yet listed too, in its order
    (:func:`gandy.runs.store.experiment_parts`); another's parts are known only once begun."""
    while True:
        holder = sweep_store.lock_holder(run_dir)
        parts, planned = sweep_store.experiment_parts(run_dir)
        lines, finished = [], 0
        for name, part in parts:
            if part is None:
                lines.append(f"  {name}: not begun")
                continue
            latest, done, live = sweep_store.latest_rows(part)
            end = (part / ("results.parquet" if sweep_store.output_kind(part) == "sweep" else "metrics.parquet")).exists()
            finished += end and not live
            where = "finished" if end and not live else _chunks_state(done, live, sweep_store.lock_holder(part))
            lines.append(f"  {name}: {where}; {len(latest)} members logged")
        whole = (run_dir / "summary.json").exists() and holder is None
        count = f"{finished} of {len(parts)} parts {'finished' if planned else 'begun so far finished'}"
        typer.echo(f"{run_dir}: an experiment, {_writer_state(whole, holder)}; {count}")
        for line in lines:
            typer.echo(line)
        if whole or follow == 0:
            return
        time.sleep(follow)


@app.command("experiments")
@_guarded
def experiments_cmd():
    """List the named experiments."""
    width = max(map(len, studies.EXPERIMENTS))
    for name, exp in studies.EXPERIMENTS.items():
        typer.echo(f"{name:{width}s}  {exp.description}")


@plot_app.command("phase")
@_guarded
def plot_phase_cmd(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="a sweep's output folder"),
    x: str = typer.Option(..., "--x", metavar="KEY", help="swept key on the x axis"),
    y: str = typer.Option(..., "--y", metavar="KEY", help="swept key on the y axis"),
    color: str = typer.Option("coverage_kl", "--color", metavar="METRIC", help="order parameter to colour by"),
):
    """Phase diagram of a 2-D sweep: seed mean, half-collapse boundary and seed spread."""
    if not (run_dir / "results.parquet").exists():
        raise ConfigError("DIR", f"{run_dir} holds no results.parquet")
    if sweep_store.output_kind(run_dir) == "run":
        raise ConfigError("DIR", f"{run_dir} is a single run, not a sweep: a phase diagram needs a sweep over --x and "
                                 "--y (gandy run CONFIG with a sweep: section); its own figures are in DIR/figures")
    try:
        with outputs.output_lock(run_dir):
            path = plots.plot_phase(run_dir, x, y, color)
    except KeyError as e:
        raise ConfigError("--x/--y/--color", str(e.args[0])) from None
    typer.echo(str(path))


@plot_app.command("samples")
@_guarded
def plot_samples_cmd(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="a sweep's output folder (image target, metrics.keep_particles)"),
    per_run: int = typer.Option(3, "--per-run", min=1, max=16, metavar="K", help="particles shown per member"),
):
    """Final particles of every member of an image sweep, as images, one row per member."""
    if not (run_dir / "results.parquet").exists() or not (run_dir / "summary.json").exists():
        raise ConfigError("DIR", f"{run_dir} holds no finished sweep (results.parquet, summary.json)")
    try:
        with outputs.output_lock(run_dir):
            path = plots.plot_final_samples(run_dir, per_run)
    except FileNotFoundError as e:
        raise ConfigError("DIR", str(e)) from None
    typer.echo(str(path))


@plot_app.command("mnist")
@_guarded
def plot_mnist_cmd(
    run_dirs: list[Path] = typer.Argument(..., metavar="DIR...", help="finished MNIST runs: gandy boundary "
                                          "mnist-collapse searches, mnist-collapse sweeps (DIR/sweep of the experiment) "
                                          "or gandy run mnist-calibrate outputs (their base setting); several are pooled"),
    table: Optional[str] = typer.Option(None, "--table", metavar="CSV", help="the authors' calibration table "
                                        "(default: ../shared/reference/durr_mnist_calibration.csv where it exists)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="where the figures go (a new folder); "
                                       "default, and only with one DIR: DIR/figures"),
):
    """The MNIST-100 diagram in the authors' style (g2/g1 against critic lr, points by cloud phase
    and coverage KL, gandy's boundary with its interval, the authors' clouds beside) and sample
    panels, one run per cloud phase (docs/bridge.md)."""
    if out is None and len(run_dirs) > 1:
        raise ConfigError("out", f"{len(run_dirs)} folders are pooled into one diagram: give --out, a new folder for it")
    inputs = mnist_collapse.diagram_inputs(run_dirs, table)  # every folder and the table, before anything is written
    if out is not None:
        outputs.open_output(out, "mnist-diagram")
    with outputs.output_lock(out if out is not None else run_dirs[0]):
        paths = mnist_collapse.draw_diagram(inputs, out)
    for path in paths:
        typer.echo(str(path))


@app.command("demo", short_help="Split vs collapse on a two-mode target, and a phase diagram.")
@_guarded
def demo_cmd(
    out: Path = typer.Option(Path("gandy-demo"), "--out", "-o", metavar="DIR", help="where to write the demo (a new folder, or an earlier demo to replace)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Two-mode 1-D target at a small and a large g2/g1: particles split, then collapse."""
    figures = demo.run_demo(out, progress=not quiet, echo=typer.echo)
    typer.echo("figures:")
    for f in figures:
        typer.echo(f"  {f}")


class Terminated(BaseException):
    """Raised by the SIGTERM handler. A BaseException, as KeyboardInterrupt is: no ``except
    Exception`` swallows it, and every ``finally`` and ``except BaseException`` clean-up on the way
    out runs (a run's temporary folder is deleted, a sweep keeps its finished chunks and checkpoints)."""


def _on_sigterm(signum, frame) -> None:
    """SIGTERM: raise :class:`Terminated` in the main thread; a second SIGTERM during the
    clean-ups is ignored, so that they finish (SIGKILL still ends the process at once)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def main(argv: Optional[list[str]] = None) -> None:
    """The console script. ``--debug`` may stand anywhere on the line. SIGTERM ends it as Ctrl-C
    does, after the clean-ups, with one line and exit code 143 (128 + SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        argv = ["--debug"] + [a for a in argv if a != "--debug"]
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        app(args=argv, prog_name="gandy")
    except Terminated:
        typer.echo("error: terminated (a sweep resumes with --resume)", err=True)
        sys.exit(143)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
