"""bridge: when does the effective model follow a real generator?

For every generator width and step size eta of ``config.yaml`` (beside this module), :func:`gandy.studies.bridge.model.run_bridge`
runs the network, the particle model with its empirical NTK at initialisation, and the particle
model with the analytic two-number kernel, side by side with one critic initialisation and one set
of data draws per seed. Writes ``OUT/bridge.parquet`` (every logged step), ``OUT/summary.parquet``
and ``OUT/summary.json`` (per width, eta and side: final and time-averaged discrepancy to the
network, final order-parameter gaps) and ``OUT/figures/bridge.png``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gandy.runs.config import load_config
from gandy.runs.store import atomic_dir, prepare_out
from gandy.studies.base import Experiment, StudyOptions, packaged, write_summary
from gandy.studies.bridge.figures import plot_bridge
from gandy.studies.bridge.model import run_bridge, summarise

DESCRIPTION = "MLP generator vs the particle model with its empirical NTK and with two numbers, across widths"


def spec() -> dict:
    return packaged(__name__)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    s = spec()
    cfg = load_config(s["base"], [*(s["quick"] if options.quick else []), *options.overrides])
    prepare_out(out, "experiment", replace=options.replace, resume=options.resume)
    etas = s["quick_learning_rates"] if options.quick else s["learning_rates"]
    tables = []
    for eta in etas:
        c = cfg.model_copy(update={"optim": cfg.optim.model_copy(
            update={"generator": cfg.optim.generator.model_copy(update={"lr": float(eta)})})})
        for width in s["widths"]:
            options.echo(f"bridge: width {width}, eta {eta}")
            t = run_bridge(c, int(width), s["depth"], s["latent_dim"], s["activation"])
            tables.append(t.assign(width=int(width), eta=float(eta)))
    table = pd.concat(tables, ignore_index=True)
    summ = pd.concat([summarise(t).assign(eta=eta) for eta, t in table.groupby("eta")], ignore_index=True)
    with atomic_dir(out, "experiment") as tmp:
        write_summary(tmp, {"experiment": "bridge", "quick": options.quick, "depth": s["depth"], "latent_dim": s["latent_dim"],
                            "activation": s["activation"], "summary": summ.to_dict(orient="records")},
                      {"bridge": table, "summary": summ})
        plot_bridge(table, summ, tmp / "figures" / "bridge.png")
    return [out / "figures" / "bridge.png"]


EXPERIMENT = Experiment("bridge", DESCRIPTION, run)
