"""many-paths: every game of Fedus et al. (2018) on real generators, with divergences tracked.

For each target in ``config.yaml`` (beside this module) and each game in ``GAMES_RUN``, one run (its seeds
batched) into ``OUT/<target>/<game>/``. Then, from those directories:

* ``OUT/figures/samples_<target>.png``: samples over time per game (seed 0);
* ``OUT/figures/divergences_<target>.png``: js, kl_pq, w1, mmd against step per game (seed mean);
* ``OUT/increases.parquet`` and ``OUT/figures/increases.png``: per game, the fraction of logged
  steps at which each divergence increased by more than twice its combined standard error
  (:func:`increases`; Fedus et al.: GANs need not decrease a divergence at every step), the final
  W1 and JS (means over seeds) and the final W1's Student-t 95 % interval over seeds
  (``final_w1_lo``, ``final_w1_hi``, ``final_w1_n``: :func:`final_w1_interval`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.api import run as run_one
from gandy.runs.config import load_config
from gandy.runs.store import read_json, read_parquet
from gandy.runs.summaries import seed_interval
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.many_paths.figures import plot_many_paths
from gandy.views.plots import plot_run

DESCRIPTION = "every game (mm, ns, wgan, wgan_gp, gan_gp, dragan, dragan_ns, ls, hinge) on parallel_lines and ring8, divergences tracked"
GAMES_RUN = ("mm", "ns", "wgan", "wgan_gp", "gan_gp", "dragan", "dragan_ns", "ls", "hinge")
TRACKED = ("js", "kl_pq", "kl_qp", "w1", "mmd")
QUICK = {"parallel_lines": ["steps=300", "seeds=[0, 1]"], "ring8": ["steps=600", "seeds=[0, 1]", "log_every=50"]}


def _yaml() -> dict:
    return packaged(__name__)


def configs() -> dict:
    """Each target's base config (``config.yaml`` (beside this module) without its ``critic_steps``)."""
    return {k: v for k, v in _yaml().items() if k != "critic_steps"}


def critic_steps(game: str) -> int:
    """n_critic for ``game`` (the yaml's ``critic_steps``; 1 for games not listed)."""
    return int(_yaml().get("critic_steps", {}).get(game, 1))


RISE_TOL = 1e-12
"""A rise of a column without a standard error (exact, ``*_se`` NaN or absent) must exceed this."""


def increases(metrics: pd.DataFrame) -> dict:
    """Fraction of logged steps (after the first) at which each tracked divergence rose by more
    than its noise, pooled over seeds.

    Between consecutive logged steps of one seed a rise counts only when it exceeds twice the
    combined standard error ``2 sqrt(se_t^2 + se_{t-1}^2)`` (the ``*_se`` columns; about 2.3 % of
    steps for a constant estimate with Gaussian errors); where either standard error is NaN or the
    column has none (exact values: JS and KL of two segments, ``w1``) any rise beyond ``RISE_TOL``
    counts, as before the standard errors were used. Steps with a non-finite value or
    difference are left out; NaN where none is left.
    """
    out = {}
    m = metrics.sort_values(["seed", "step"])
    for key in TRACKED:
        if key not in m:
            continue
        by = m.groupby("seed")
        diff = by[key].diff()
        if f"{key}_se" in m:
            se = m[f"{key}_se"].astype(float)
            noise = 2 * np.sqrt(se**2 + by[f"{key}_se"].shift() ** 2)
            bar = noise.where(np.isfinite(noise), RISE_TOL)
        else:
            bar = pd.Series(RISE_TOL, index=m.index)
        ok = np.isfinite(diff)
        out[key] = float((diff[ok] > bar[ok]).mean()) if ok.any() else float("nan")
    return out


def final_w1_interval(results: pd.DataFrame) -> dict:
    """The final W1 of a run's seeds (``results``: one row per seed, column ``w1``): their mean and
    Student-t 95 % interval (:func:`gandy.runs.summaries.seed_interval`), as ``final_w1``,
    ``final_w1_lo``, ``final_w1_hi``, ``final_w1_n``."""
    return dict(zip(("final_w1", "final_w1_lo", "final_w1_hi", "final_w1_n"), seed_interval(results.w1)))


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    cfgs = {(target, game): load_config(base, [f"objective={game}", f"optim.critic.steps={critic_steps(game)}",
                                               *(QUICK[target] if options.quick else []), *options.overrides])
            for target, base in configs().items() for game in GAMES_RUN}  # every run validated first
    open_study(out, options, parts=[f"{t}/{g}" for t, g in cfgs])
    rows, summary = [], {"experiment": "many-paths", "quick": options.quick, "runs": {}}
    for (target, game), cfg in cfgs.items():
        d = out / target / game
        if not (options.resume and (d / "metrics.parquet").exists()):
            options.echo(f"many-paths: {target} / {game}")
            run_one(cfg, out=d, progress=options.progress, draw=plot_run)
        m = read_parquet(d / "metrics.parquet")
        res = read_parquet(d / "results.parquet")
        inc = increases(m)
        rows.append({"target": target, "game": game, **{f"increased_{k}": v for k, v in inc.items()},
                     **final_w1_interval(res), "final_js": float(m[m.step == m.step.max()].js.mean())})
        summary["runs"][f"{target}/{game}"] = read_json(d / "summary.json")["divergences"]
    table = pd.DataFrame(rows)
    write_summary(out, summary, {"increases": table})
    return plot_many_paths(out, list(configs()), list(GAMES_RUN))


EXPERIMENT = Experiment("many-paths", DESCRIPTION, run)
