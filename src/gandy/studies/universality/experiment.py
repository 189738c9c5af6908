"""kernel-universality: how the empirical NTK of random finite networks approaches the two-number
kernel (g1, g2) as width and latent dimension d_z grow (docs/model.md, "The two-number kernel").

For each activation (ReLU and erf, depth 2, the default variances) and each (width, d_z) on log
grids, :func:`gandy.studies.universality.model.empirical_stats` measures several random networks at N latents.
Writes ``OUT/universality.parquet`` (one row per activation x width x d_z: the statistics, and
relative to the analytic numbers: ``diag_rel_error``, the root mean square over networks of
(network's mean diagonal / g1 - 1), ``diag_rel_spread = diag_std / g1``, ``offdiag_rel_error``
(the same with the mean off-diagonal entry and g2), ``offdiag_rel_spread = offdiag_std / g2``,
and the same two for the infinite-width kernel at the same latents,
``offdiag_rel_{error,spread}_limit``: the floor that finite d_z sets), ``OUT/summary.json`` and
``OUT/figures/{spread,distance}.png``. Both networks have g2 > 0 (erf needs the bias for that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.config import ConfigError
from gandy.runs.store import atomic_dir, prepare_out
from gandy.studies.base import Experiment, StudyOptions, write_summary
from gandy.studies.universality.figures import plot_universality
from gandy.studies.universality.model import analytic, empirical_stats

DESCRIPTION = "empirical NTK of random networks vs the analytic (g1, g2) as width and d_z grow"
FULL = {"widths": [16, 32, 64, 128, 256, 512, 1024, 2048], "latent_dims": [4, 16, 64, 256, 1024], "networks": 8, "samples": 24}
QUICK = {"widths": [16, 64, 256, 1024], "latent_dims": [4, 32, 256], "networks": 2, "samples": 16}
NETS = {"relu": {"weight_var": 2.0, "bias_var": 0.0}, "erf": {"weight_var": 1.5, "bias_var": 0.1}}
DEPTH = 2


def _rms(means, g) -> float:
    """Root mean square over networks of each network's relative error ``mean / g - 1``."""
    return float(np.sqrt(np.mean((np.asarray(means) / g - 1) ** 2)))


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    if options.overrides:
        raise ConfigError("overrides", "kernel-universality takes no config overrides")
    prepare_out(out, "experiment", replace=options.replace, resume=options.resume)
    grid = QUICK if options.quick else FULL
    rows = []
    for act, var in NETS.items():
        a = analytic(DEPTH, act, var["weight_var"], var["bias_var"])
        options.echo(f"kernel-universality: {act} (g1 = {a['g1']:.4g}, g2 = {a['g2']:.4g})")
        for w in grid["widths"]:
            for dz in grid["latent_dims"]:
                e = empirical_stats(DEPTH, act, var["weight_var"], var["bias_var"], w, dz, grid["samples"], grid["networks"])
                rows.append({"activation": act, **var, "depth": DEPTH, "g1": a["g1"], "g2": a["g2"], **e,
                             "diag_rel_error": _rms(e["diag_mean_per_network"], a["g1"]),
                             "diag_rel_spread": e["diag_std"] / a["g1"],
                             "offdiag_rel_error": _rms(e["offdiag_mean_per_network"], a["g2"]),
                             "offdiag_rel_spread": e["offdiag_std"] / a["g2"],
                             "offdiag_rel_error_limit": _rms(e["offdiag_mean_limit_per_network"], a["g2"]),
                             "offdiag_rel_spread_limit": e["offdiag_std_limit"] / a["g2"]})
                if options.progress:
                    r = rows[-1]
                    options.echo(f"  width {w:5d}  d_z {dz:5d}: diagonal {r['diag_mean']:.4g} +- {r['diag_std']:.3g}, "
                         f"off-diagonal {r['offdiag_mean']:.4g} +- {r['offdiag_std']:.3g}, "
                         f"distance {r['rel_distance']:.3g}")
    table = pd.DataFrame(rows)
    with atomic_dir(out, "experiment") as tmp:
        write_summary(tmp, {"experiment": "kernel-universality", "quick": options.quick, "depth": DEPTH, "grid": grid, "rows": rows},
                      {"universality": table})
        plot_universality(table, tmp / "figures")
    return [out / "figures" / "spread.png", out / "figures" / "distance.png"]


EXPERIMENT = Experiment("kernel-universality", DESCRIPTION, run)
