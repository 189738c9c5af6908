"""The ``gandy`` command.

    gandy run CONFIG.yaml [key=value ...] --out DIR [--force]
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


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="dotted overrides, e.g. kernel.g2=0.9"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default: runs/<config name>)"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Run a config for all its seeds and write the run directory."""
    from .api import run

    out = out or Path("runs") / config.stem
    try:
        res = run(config, out=out, overrides=list(overrides or []), progress=not quiet, force=force)
    except ConfigError as e:
        _fail(e)
    phases = ", ".join(f"seed {r.seed}: {r.phase}" for r in res.results.itertuples())
    typer.echo(f"{out}: {phases}")


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
