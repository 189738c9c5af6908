"""The ``gandy`` command.

    gandy run CONFIG.yaml|EXPERIMENT [key=value ...] --out DIR [--resume] [--force]
              [--executor local|ray] [--address ADDR] [--quick]
    gandy experiments
    gandy report DIR
    gandy plot phase DIR --x KEY --y KEY [--color METRIC]
    gandy damping CONFIG.yaml --weights W1,W2,... [--out DIR] [--tol T]
    gandy demo [--out DIR]

Bad input prints one ``error: FIELD: message`` line on stderr and exits with code 2, before any
output directory is created.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="GAN dynamics: the effective particle model and a GAN lab.")
plot_app = typer.Typer(no_args_is_help=True, help="Figures from a run directory.")
app.add_typer(plot_app, name="plot")


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command("run")
def run_cmd(
    config: str = typer.Argument(..., help="YAML config file, or the name of an experiment (gandy experiments)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="dotted overrides, e.g. kernel.g2=0.9"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default: runs/<config name>)"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted sweep in DIR"),
    executor: str = typer.Option("local", "--executor", help="local | ray (sweeps)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local instance)"),
    quick: bool = typer.Option(False, "--quick", help="experiments: the reduced version"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    report: bool = typer.Option(False, "--report", help="also write DIR/report.html (gandy report)"),
):
    """Run a config (all its seeds, or its whole sweep) or a named experiment."""
    from .experiments import EXPERIMENTS

    try:
        from .executors import EXECUTORS

        if executor not in EXECUTORS:
            raise ConfigError("executor", f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
        if config in EXPERIMENTS and not Path(config).is_file():
            out = out or Path("runs") / config
            figures = EXPERIMENTS[config].run(out, quick=quick, overrides=list(overrides or []), resume=resume,
                                              force=force, executor=executor, address=address,
                                              progress=not quiet, echo=typer.echo)
            typer.echo("figures:")
            for f in figures:
                typer.echo(f"  {f}")
            _report(out, report)
            return
        if not Path(config).suffix and not Path(config).exists():
            raise ConfigError("config", f"{config!r} is neither a file nor an experiment; experiments: {', '.join(EXPERIMENTS)}")
        from .config import load_config

        cfg = load_config(config, list(overrides or []))
        out = out or Path("runs") / Path(config).stem
        if cfg.sweep or cfg.search:
            from .sweep import run_sweep

            results, _, _ = run_sweep(cfg, out, resume=resume, force=force, executor=executor, address=address,
                                      progress=not quiet, echo=typer.echo)
            counts = results.phase.value_counts().to_dict()
            typer.echo(f"{out}: {len(results)} members: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            _report(out, report)
            return
        from .api import run

        res = run(cfg, out=out, progress=not quiet, force=force or resume)
        phases = ", ".join(f"seed {r.seed}: {r.phase}" for r in res.results.itertuples())
        typer.echo(f"{out}: {phases}")
        _report(out, report)
    except ConfigError as e:
        _fail(e)


def _report(out: Path, wanted: bool) -> None:
    if wanted:
        from .report import write_report

        write_report(out, echo=typer.echo)


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run, sweep, search or damping directory, or one holding several"),
):
    """Write DIR/report.html: one self-contained interactive page (phase diagram with a metric menu,
    a member's series and particle animation on a click, divergence traces, damping curves,
    config and metric protocols). Works on runs made before it."""
    from .report import write_report

    try:
        write_report(run_dir, echo=typer.echo)
    except ConfigError as e:
        _fail(e)


@app.command("ntk")
def ntk_cmd(
    depth: int = typer.Option(..., "--depth", help="hidden layers L"),
    activation: str = typer.Option("relu", "--activation", help="relu | erf"),
    weight_var: float = typer.Option(2.0, "--weight-var", help="sigma_w^2"),
    bias_var: float = typer.Option(0.0, "--bias-var", help="sigma_b^2"),
    width: Optional[int] = typer.Option(None, "--width", help="also the empirical NTK of random networks this wide"),
    latent_dim: int = typer.Option(100, "--latent-dim", help="d_z: latents on S^(d_z - 1)"),
    samples: int = typer.Option(32, "--samples", help="latents per network"),
    networks: int = typer.Option(4, "--networks", help="random networks"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """The analytic g1, g2 and g2/g1 of an FC network's NTK; with --width, the empirical NTK of
    random networks beside them (mean and spread of its diagonal and off-diagonal entries)."""
    import json

    from .universality import analytic, empirical

    try:
        out = analytic(depth, activation, weight_var, bias_var)
        if width is not None:
            out["empirical"] = empirical(depth, activation, weight_var, bias_var, width, latent_dim, samples, networks, seed)
    except ConfigError as e:
        _fail(e)
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


@app.command("damping")
def damping_cmd(
    config: Path = typer.Argument(..., help="YAML config (linear theory: critic linear, point_mass target, sgd)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="dotted overrides"),
    weights: str = typer.Option(..., "--weights", help="penalty weights, comma-separated: 0.1,0.3,1"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default: runs/<config name>-damping)"),
    tol: float = typer.Option(1e-3, "--tol", help="converged when |mu_P - mu_Q| <= tol * initial, for good"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    report: bool = typer.Option(False, "--report", help="also write DIR/report.html (gandy report)"),
):
    """Penalty weights as one batched run: convergence time, decay rate, theory, Jacobian spectra."""
    from .config import load_config
    from .damping import run_damping

    try:
        try:
            ws = [float(w) for w in weights.split(",") if w.strip()]
        except ValueError:
            raise ConfigError("weights", f"{weights!r} is not a comma-separated list of numbers") from None
        if not (0 < tol < 1):
            raise ConfigError("tol", "must lie in (0, 1)")
        cfg = load_config(config, list(overrides or []))
        out = out or Path("runs") / f"{config.stem}-damping"
        table, summary = run_damping(cfg, ws, out, tol=tol, force_out=force)
        _report(out, report)
    except ConfigError as e:
        _fail(e)
    for key in ("lambda_c", "lambda_best_theory", "lambda_best"):
        v = summary[key]
        typer.echo(f"{key:20s} {v:.4g}" if v is not None else f"{key:20s} -")
    typer.echo(f"{out}: damping.parquet, summary.json, figures/")


@app.command("experiments")
def experiments_cmd():
    """List the named experiments."""
    from .experiments import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, exp in EXPERIMENTS.items():
        typer.echo(f"{name:{width}s}  {exp.description}")


@plot_app.command("phase")
def plot_phase_cmd(
    run_dir: Path = typer.Argument(..., help="a sweep's run directory"),
    x: str = typer.Option(..., "--x", help="swept key on the x axis"),
    y: str = typer.Option(..., "--y", help="swept key on the y axis"),
    color: str = typer.Option("coverage_kl", "--color", help="order parameter to colour by"),
):
    """Phase diagram of a 2-D sweep: seed mean, half-collapse boundary and seed spread."""
    from .plots import plot_phase

    if not (run_dir / "results.parquet").exists():
        _fail(ConfigError("run_dir", f"{run_dir} holds no results.parquet"))
    try:
        path = plot_phase(run_dir, x, y, color)
    except KeyError as e:
        _fail(ConfigError("--x/--y/--color", str(e.args[0])))
    typer.echo(str(path))


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("gandy-demo"), "--out", "-o", help="where to write the demo runs"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Two-mode 1-D target at a small and a large g2/g1: particles split, then collapse."""
    from .demo import run_demo

    try:
        figures = run_demo(out, progress=not quiet, echo=typer.echo)
    except ConfigError as e:
        _fail(e)
    typer.echo("figures:")
    for f in figures:
        typer.echo(f"  {f}")


def main(argv: Optional[list[str]] = None) -> None:
    app(args=argv, prog_name="gandy")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
