"""kernel-universality: how the empirical NTK of random finite networks approaches the two-number
kernel (g1, g2) as width and latent dimension d_z grow (SCIENCE.md section 1.2).

For each activation (ReLU and erf, depth 2, the default variances) and each (width, d_z) on log
grids, :func:`gandy.universality.empirical` measures several random networks at N latents.
Writes ``OUT/universality.parquet`` (one row per activation x width x d_z), ``OUT/summary.json``
and ``OUT/figures/{spread,distance}.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

DESCRIPTION = "empirical NTK of random networks vs the analytic (g1, g2) as width and d_z grow"
FULL = {"widths": [16, 64, 256, 1024, 2048], "latent_dims": [4, 16, 64, 256, 1024], "networks": 4, "samples": 24}
QUICK = {"widths": [16, 64, 256, 1024], "latent_dims": [4, 32, 256], "networks": 2, "samples": 16}
NETS = {"relu": {"weight_var": 2.0, "bias_var": 0.0}, "erf": {"weight_var": 1.5, "bias_var": 0.1}}
DEPTH = 2


def run(out: Path, quick: bool = False, overrides=(), resume: bool = False, force: bool = False,
        executor: str = "local", address=None, progress: bool = True, echo=print) -> list[Path]:
    from ..config import ConfigError
    from ..plots import plot_universality
    from ..store import atomic_dir
    from ..universality import analytic, empirical

    out = Path(out)
    if overrides:
        raise ConfigError("overrides", "kernel-universality takes no config overrides")
    if out.exists() and not (force or resume):
        raise ConfigError("out", f"{out} already exists (use --force to replace it)")
    grid = QUICK if quick else FULL
    rows = []
    for act, var in NETS.items():
        a = analytic(DEPTH, act, var["weight_var"], var["bias_var"])
        echo(f"kernel-universality: {act} (g1 = {a['g1']:.4g}, g2 = {a['g2']:.4g})")
        for w in grid["widths"]:
            for dz in grid["latent_dims"]:
                e = empirical(DEPTH, act, var["weight_var"], var["bias_var"], w, dz, grid["samples"], grid["networks"])
                rows.append({"activation": act, **var, "depth": DEPTH, "g1": a["g1"], "g2": a["g2"], **e,
                             "diag_rel_error": abs(e["diag_mean"] / a["g1"] - 1),
                             "offdiag_rel_spread": e["offdiag_std"] / a["g1"],
                             "offdiag_rel_error": abs(e["offdiag_mean"] - a["g2"]) / a["g1"]})
    table = pd.DataFrame(rows)
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / "universality.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps({"experiment": "kernel-universality", "quick": quick, "depth": DEPTH,
                                                      "grid": grid, "rows": rows}, indent=2))
        plot_universality(table, tmp / "figures")
    return [out / "figures" / "spread.png", out / "figures" / "distance.png"]
