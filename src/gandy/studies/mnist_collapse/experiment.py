"""mnist-collapse: the mode-collapse phase diagram of the effective model in 784-D.

Runs ``config.yaml`` (beside this module) (100 particles against the first 100 MNIST digits, ReLU MLP
critic, Sobolev penalty 1.25, particle step 1e-4, 1,000 steps) as one batched sweep over
g2/g1 x critic learning rate into ``OUT/sweep/``, then writes ``OUT/figures/mnist-collapse.png``
(coverage_kl and mean |cos| over the grid; g2/g1 = 0 drawn one grid step left of the smallest
positive value, on the log axis), ``OUT/boundary.parquet`` (per critic learning rate, the smallest
g2/g1 at which the run collapsed or ran away) and ``OUT/summary.json``.

The full grid (25 x 18 = 450 members) is a GPU job; ``--quick`` runs 5 x 3 of its points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from gandy.core.metrics.phases import PHASES, SPLIT_FAILED
from gandy.runs.config import load_config
from gandy.runs.store import read_parquet
from gandy.runs.summaries import digit_stats, read_table
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.mnist_collapse.figures import X, Y, plot_mnist_collapse, plot_mnist_diagram, plot_mnist_samples
from gandy.views.plots import grid_boundary

DESCRIPTION = "100 particles in 784-D vs 100 MNIST digits: collapse phase diagram over g2/g1 x critic lr"


def base_config() -> dict:
    return packaged(__name__)


def quick_overrides() -> list[str]:
    """200 steps on 0, 0.01, 0.0464, 0.215 and 0.977 of the full grid x three critic learning rates."""
    sweep = base_config()["sweep"]
    g2, lr = sweep[X], sweep[Y]
    return ["steps=200", f"sweep.{X}=[{', '.join(str(v) for v in (g2[0], g2[1], g2[9], g2[17], g2[25]))}]",
            f"sweep.{Y}=[{', '.join(str(v) for v in (lr[8], lr[17], lr[25]))}]"]


def boundary(results: pd.DataFrame) -> pd.DataFrame:
    """Per critic learning rate, the smallest g2/g1 whose run collapsed or ran away (SPLIT_FAILED;
    NaN if none did), and how many runs of each phase the row holds."""
    rows = []
    for lr, t in results.groupby(Y):
        hit = t[t.phase.isin(SPLIT_FAILED)][X]
        rows.append({Y: float(lr), "g2_critical": float(hit.min()) if len(hit) else float("nan"),
                     "split_failed": int(len(hit)), "points": int(len(t)),
                     **{p: int((t.phase == p).sum()) for p in PHASES}})
    return pd.DataFrame(rows)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    cfg = load_config(base_config(), [*(quick_overrides() if options.quick else []), *options.overrides])
    open_study(out, options)
    options.echo(f"mnist-collapse: {'quick' if options.quick else 'full'} grid")
    res, _, s = run_sweep(cfg, out / "sweep", **options.sweep())
    b = boundary(res)
    summary = {"experiment": "mnist-collapse", "quick": options.quick, "phase_counts": s["phase_counts"],
               "boundary": b.to_dict(orient="records")}
    write_summary(out, summary, {"boundary": b})
    return [plot_mnist_collapse(res, out / "figures" / "mnist-collapse.png", X, Y)]


AUTHORS_TABLE = "../shared/reference/durr_mnist_calibration.csv"
"""Where the project keeps the authors' calibration table (mnist-calibrate's ``calibration.table``,
relative to the working directory); outside the repository, so it may be absent."""


def diagram_figures(folder: Path, table: Optional[str] = None) -> list[Path]:
    """The MNIST diagram of a finished boundary search or sweep in ``folder`` (its
    ``results.parquet`` and ``config.yaml``; the boundary of ``boundary.parquet``, or for a grid
    the logistic fit of each critic-lr row, :func:`gandy.views.plots.grid_boundary`), with the
    authors' published clouds from ``table`` (default: :data:`AUTHORS_TABLE` where it exists), and
    the final particles of one run per cloud phase: ``figures/mnist-diagram.png`` and
    ``figures/mnist-samples.png`` in ``folder``. A malformed table is refused (ConfigError naming
    ``calibration.table``) before anything is drawn."""
    folder = Path(folder)
    authors = read_table(table) if table is not None else (read_table(AUTHORS_TABLE) if Path(AUTHORS_TABLE).is_file() else None)
    results = read_parquet(folder / "results.parquet")
    digits = digit_stats(load_config(str(folder / "config.yaml")).target)["mean_norm"]
    if (folder / "boundary.parquet").is_file():
        rows = read_parquet(folder / "boundary.parquet")
    else:
        rows = grid_boundary(results[results[X] > 0], X, Y, xlog=True)
    out = [plot_mnist_diagram(results, rows, folder / "figures" / "mnist-diagram.png", digits, authors)]
    if "samples_uint8" in results:
        out.append(plot_mnist_samples(results, folder / "figures" / "mnist-samples.png", digits))
    return out


EXPERIMENT = Experiment("mnist-collapse", DESCRIPTION, run, sweep_config=base_config, boundary_figures=diagram_figures)
