"""mnist-collapse: the mode-collapse phase diagram of the effective model in 784-D.

Runs ``config.yaml`` (beside this module) (100 particles against 100 MNIST digits, ten of each
class, ReLU MLP critic [64, 1024, 64] with dropout, Sobolev penalty 12.5 and particle step 5e-5 (two
fits; the authors' 1.25 and 1e-4: docs/bridge.md), 1,000 steps) as one batched sweep over
g2/g1 x critic learning rate into ``OUT/sweep/``, then writes ``OUT/figures/mnist-collapse.png``
(coverage_kl and mean |cos| over the grid; g2/g1 = 0 drawn one grid step left of the smallest
positive value, on the log axis), ``OUT/boundary.parquet`` (per critic learning rate, the smallest
g2/g1 at which the run collapsed or ran away) and ``OUT/summary.json``.

The full grid (26 x 26 = 676 members) is a GPU job; ``--quick`` runs 5 x 3 of its points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Optional

import pandas as pd

from gandy.core.datafile import check_data_file
from gandy.core.errors import ConfigError
from gandy.core.metrics.phases import PHASES, SPLIT_FAILED
from gandy.runs.config import load_config, load_yaml
from gandy.runs.store import read_json, read_parquet
from gandy.runs.summaries import digit_stats, read_table
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.mnist_collapse.figures import X, Y, plot_mnist_collapse, plot_mnist_diagram, plot_mnist_samples
from gandy.views.plots import grid_boundary

DESCRIPTION = "100 particles in 784-D vs 100 MNIST digits: collapse phase diagram over g2/g1 x critic lr"

FAIL = (*SPLIT_FAILED, "diverged")
"""What fails in the MNIST diagram and its boundary search (``gandy boundary mnist-collapse``
without ``--fail``): collapsed, ran away, or diverged. A diverged MNIST run is a runaway that
overflowed, or a blow-up of the fast critics at the largest g2/g1 (docs/bridge.md): not a data-like
cloud, so it counts as failing, where a generic search (SPLIT_FAILED) would count it as a point
that did not fail."""


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
    open_study(out, options, parts=["sweep"])
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


def mnist_runs(folder: Path) -> tuple:
    """The finished MNIST runs of ``folder`` and the target config they ran on: ``(results, target)``
    (a DataFrame and the config's ``target`` section),
    one row per member. ``folder`` holds a boundary search or a sweep (``results.parquet`` and
    ``config.yaml``) or a ``gandy run mnist-calibrate`` output (``results.parquet`` and
    ``calibration.json``; its base setting's members only, ``trial`` 0: the candidates are other
    configs). Anything else raises ConfigError("DIR", ...) naming the folder."""
    folder = Path(folder)
    if not (folder / "results.parquet").is_file():
        raise ConfigError("DIR", f"{folder} holds no finished search, sweep or calibration (results.parquet)")
    results = read_parquet(folder / "results.parquet")
    if (folder / "config.yaml").is_file():
        cfg = load_config(str(folder / "config.yaml"))
    elif (folder / "calibration.json").is_file():
        record = check_data_file(folder / "calibration.json", "DIR", expected="mnist-calibrate's calibration.json")
        try:
            text = json.loads(record.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError("DIR", f"{folder}/calibration.json is not a mnist-calibrate record ({e})") from None
        cfg = load_config(load_yaml(text, f"{folder}/calibration.json", "DIR"))
        results = results[results["trial"] == 0] if "trial" in results else results
    else:
        raise ConfigError("DIR", f"{folder} holds no config.yaml or calibration.json beside its results.parquet")
    missing = {X, Y, "seed", "mean_abs_cos", "mean_norm", "coverage_kl"} - set(results.columns)
    if missing:
        raise ConfigError("DIR", f"{folder} is not an MNIST search, sweep or calibration over {X} and {Y} "
                                 f"(its results lack {', '.join(sorted(missing))})")
    return results, cfg.target


def pooled_runs(folders) -> tuple:
    """The runs of every folder (:func:`mnist_runs`) in one table, and their one target section:
    ``(results, target)``. Refused (ConfigError naming ``DIR``) before anything is drawn: folders
    whose targets differ, and a point and seed present in two folders (its seeds would count
    twice in the majority)."""
    runs = [mnist_runs(f) for f in folders]
    if len({json.dumps(t.model_dump(mode="json"), sort_keys=True) for _, t in runs}) > 1:
        raise ConfigError("DIR", "the folders ran on different targets (their target sections differ); "
                                 "one diagram pools runs of one target")
    results = pd.concat([r for r, _ in runs], ignore_index=True)
    twice = results.duplicated([X, Y, "seed"])
    if len(runs) > 1 and twice.any():
        first = results[twice].iloc[0]
        raise ConfigError("DIR", f"{X} = {first[X]:g}, {Y} = {first[Y]:g}, seed {int(first.seed)} is in two of the "
                                 "folders; pooled runs must be distinct (a point's seeds would count twice)")
    return results, runs[0][1]


class DiagramInputs(NamedTuple):
    """What the MNIST diagram draws, read and checked (:func:`diagram_inputs`): the folders, their
    pooled ``results`` (one row per member), their one ``target`` section, and the authors'
    calibration table (None where there is none)."""

    folders: list[Path]
    results: pd.DataFrame
    target: Any
    authors: Optional[pd.DataFrame]


def diagram_inputs(folders, table: Optional[str] = None) -> DiagramInputs:
    """Read and check everything the diagram needs, before anything is written: the runs of one
    or more folders (:func:`pooled_runs`) and the authors' published clouds from ``table``
    (default: :data:`AUTHORS_TABLE` where it exists; a malformed table is refused, ConfigError
    naming ``calibration.table``)."""
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    results, target = pooled_runs(folders)
    authors = read_table(table) if table is not None else (read_table(AUTHORS_TABLE) if Path(AUTHORS_TABLE).is_file() else None)
    return DiagramInputs(folders, results, target, authors)


def draw_diagram(inputs: DiagramInputs, out: Optional[Path] = None) -> list[Path]:
    """The MNIST diagram of :func:`diagram_inputs`, with the authors' published clouds beside,
    and the final particles of one run per cloud phase: ``figures/mnist-diagram.png`` and
    ``figures/mnist-samples.png`` in ``out`` (default: the first folder). The boundary is that of
    the folder's ``boundary.parquet`` (one search: its own ``fail`` phases), else the logistic fit
    of each critic-lr row with :data:`FAIL` (:func:`gandy.views.plots.grid_boundary`)."""
    folders, results = inputs.folders, inputs.results
    digits = digit_stats(inputs.target)["mean_norm"]
    out = Path(out) if out is not None else folders[0]
    if len(folders) == 1 and (folders[0] / "boundary.parquet").is_file():
        rows = read_parquet(folders[0] / "boundary.parquet")
        fail = tuple(read_json(folders[0] / "summary.json").get("boundary", {}).get("fail", SPLIT_FAILED))
    else:
        rows, fail = grid_boundary(results[results[X] > 0], X, Y, xlog=True, fail=FAIL), FAIL
    paths = [plot_mnist_diagram(results, rows, out / "figures" / "mnist-diagram.png", digits, inputs.authors,
                                fail=fail)]
    kept = results["samples_uint8"].notna() if "samples_uint8" in results else None
    if kept is not None and kept.any():  # runs kept without samples: left out of the panel
        paths.append(plot_mnist_samples(results[kept], out / "figures" / "mnist-samples.png", digits))
    return paths


def diagram_figures(folders, table: Optional[str] = None, out: Optional[Path] = None) -> list[Path]:
    """:func:`draw_diagram` of :func:`diagram_inputs`: the MNIST diagram of one or more finished
    runs (boundary searches, sweeps, mnist-calibrate outputs; several are pooled, and must share
    one target) in ``out`` (default: the first folder)."""
    return draw_diagram(diagram_inputs(folders, table), out)


EXPERIMENT = Experiment("mnist-collapse", DESCRIPTION, run, sweep_config=base_config, boundary_figures=diagram_figures,
                        boundary_fail=FAIL)
