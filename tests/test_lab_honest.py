"""Issue 17's lab measurements: the game's own penalty, the generator's gradient, exact W1 and the
error-bar columns in a run, and the penalties / saturation experiments end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from gandy.core.metrics.convergence import w1_measures
from gandy.core.step import generator_update, start
from gandy.runs import config as C
from gandy.runs.api import run as run_one
from gandy.runs.build import build
from gandy.runs.plan import expand
from gandy.runs.summaries import seed_interval
from gandy.studies.base import StudyOptions
from gandy.studies.penalties.experiment import run as run_penalties
from gandy.studies.saturation.experiment import run as run_saturation

LINES = {"target": {"name": "parallel_lines"}, "generator": {"name": "affine", "init_offset": 1.0},
         "critic": {"name": "mlp", "widths": [16]}, "batch_size": 32, "particles": {"n": 32}, "steps": 4,
         "log_every": 2, "seeds": [0]}


@pytest.mark.parametrize("game", ["mm", "ns", "ls", "hinge", "ipm"])
def test_a_network_generators_game_has_no_penalty_unless_one_is_named(game):
    assert C.load_config(LINES, [f"objective={game}"]).penalty.name == "none"
    named = C.load_config(LINES, [f"objective={game}", "penalty={name: r1, weight: 2.0}"]).penalty
    assert (named.name, named.weight) == ("r1", 2.0)
    # the effective model's particle runs keep the Sobolev default
    assert C.load_config({}, [f"objective={game}"]).penalty.name == "sobolev"
    assert C.load_config(LINES, ["objective=gan_gp"]).penalty.name == "wgan_gp"


@pytest.mark.parametrize("game, weight", [("mm", lambda f: torch.sigmoid(f)), ("ns", lambda f: torch.sigmoid(-f))])
def test_the_logged_generator_gradient_is_sigma_times_the_critics_slope(game, weight):
    """force_norm of a network generator = mean_j |d l_G(f(x_j)) / d x_j|: sigma(f)|grad f| for mm
    (-log(1 - D) = -softplus(f)) and sigma(-f)|grad f| for ns (softplus(-f)), by autograd per sample."""
    cfg = C.load_config(LINES, [f"objective={game}"])
    sim = build(cfg, members=2)
    st = start(sim, [0, 1])
    params = {k: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in st.params.items()}
    zz = sim.generator.latent(st.streams["latent"], sim.critic_batch)
    sim.generator.latent = lambda stream, n: zz  # the batch generator_update draws is this one
    gen0 = {k: v.clone() for k, v in st.gen.items()}
    generator_update(sim, st, params)
    x = sim.generator.forward(gen0, zz).detach().requires_grad_(True)
    f = sim.critic.forward(params, x)
    (gx,) = torch.autograd.grad(f.sum(), x)
    want = (weight(f.detach()) * gx.norm(dim=-1)).mean(-1)
    torch.testing.assert_close(st.force_norm, want, rtol=1e-5, atol=1e-7)


def test_yaml_numbers_without_a_dot_are_numbers_in_a_sweep():
    cfg = C.load_config(LINES, ["objective=ns", "sweep={optim.critic.lr: [1e-05, 1.0e-3]}"])
    axes, members, _ = expand(cfg)
    assert axes[0].values == (1e-05, 1e-3) and all(isinstance(v, float) for v in axes[0].values)
    assert members[0].config.optim.critic.lr == 1e-05


def test_tracked_run_logs_exact_w1_sliced_w1_apart_and_error_bars(tmp_path):
    """In 12-D (an embedded segment: JS exact, no density) w1 is the exact transport cost and sw1 a
    separate, smaller column; on ring8 (a density) kl_qp uses it; every estimate has a finite
    standard error, every exact value none."""
    cfg = C.load_config(LINES, ["objective=ns", "target={name: parallel_lines, embed_dim: 12}", "metrics.divergences=true",
                                "metrics.max_points=32", "snapshot_every=2"])
    d = tmp_path / "lines12"
    run_one(cfg, out=d, progress=None)
    m = pd.read_parquet(d / "metrics.parquet")
    for k in ("mmd_se", "sw1"):
        assert np.isfinite(m[k]).all(), k
    assert m.js_se.isna().all()  # two segments: JS is exact, with no error bar
    assert (m.sw1 < m.w1).all()
    methods = json.loads((d / "summary.json").read_text())["divergences"]
    assert methods["w1"].startswith("exact:emd") and methods["sw1"].startswith("estimate:sliced")
    ring = C.load_config(LINES, ["objective=ns", "target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [16]}",
                                 "metrics.divergences=true"])
    run_one(ring, out=tmp_path / "ring", progress=None)
    d = tmp_path / "ring"
    methods = json.loads((d / "summary.json").read_text())["divergences"]
    assert methods["kl_qp"].startswith("estimate:knn+density") and methods["js"].startswith("estimate:knn, s.e. by half_sampling")
    m = pd.read_parquet(d / "metrics.parquet")
    assert "sw1" not in m and np.isfinite(m.kl_qp_se).all()
    assert np.isfinite(m.high_quality_fraction_se).all()


def test_w1_measures_by_hand():
    steps = np.arange(0, 110, 10)
    w = np.array([1.0, 0.5, 0.2, 0.09, 0.3, 0.1, 0.5, 0.1, 0.5, 0.1, 0.3])
    got = w1_measures(steps, w)
    assert got["t_w1"] == 30 and got["final_w1"] == 0.3
    # steps 50..100: 0.1, 0.5, 0.1, 0.5, 0.1, 0.3 about their least-squares line
    t, v = steps[5:], w[5:]
    resid = v - np.polyval(np.polyfit(t, v, 1), t)
    assert got["w1_swing"] == pytest.approx((resid.max() - resid.min()) / 2) and 0.15 < got["w1_swing"] < 0.25
    assert w1_measures(steps, 1.0 - 0.009 * steps)["w1_swing"] == pytest.approx(0.0, abs=1e-12)  # a steady decline
    assert np.isnan(w1_measures(steps, np.ones(11))["t_w1"])


@pytest.mark.slow
def test_penalties_quick_one_centred_penalties_swing_where_r1_does_not(tmp_path):
    run_penalties(tmp_path / "pen", StudyOptions(quick=True, progress=False, echo=lambda s: None))
    cells = pd.read_parquet(tmp_path / "pen" / "cells.parquet")
    at = cells[(cells["penalty.weight"] == 10.0) & (cells["optim.critic.steps"] == 5)].set_index("game").w1_swing
    assert at["gan_gp"] > 3 * at["ns_r1"] and at["wgan_gp"] > 3 * at["ns_r1"]
    # each cell's final W1: the mean over its 3 seeds and the t interval of seed_interval
    per = pd.read_parquet(tmp_path / "pen" / "penalties.parquet")
    row = cells.iloc[0]
    mine = per[(per.game == row.game) & (per["penalty.weight"] == row["penalty.weight"])
               & (per["optim.critic.steps"] == row["optim.critic.steps"])].final_w1
    assert (row.final_w1_n, row.final_w1_mean) == (3, pytest.approx(mine.mean()))
    assert (row.final_w1_lo, row.final_w1_hi) == pytest.approx(seed_interval(mine)[1:3])
    assert {"swing_parallel_lines.png", "time_parallel_lines.png", "w1_parallel_lines.png"} <= {
        p.name for p in (tmp_path / "pen" / "figures").iterdir()}


@pytest.mark.slow
def test_saturation_quick_a_confident_critic_starves_minimax_only(tmp_path):
    run_saturation(tmp_path / "sat", StudyOptions(quick=True, progress=False, echo=lambda s: None))
    cells = pd.read_parquet(tmp_path / "sat" / "cells.parquet")
    ratio = cells.groupby("critic").mm_over_ns_first_force.median()
    assert ratio["sgd 0.1 x5 +500"] < 0.1 and ratio["adam 1e-4 x1"] > 0.5
    per = pd.read_parquet(tmp_path / "sat" / "saturation.parquet")
    for _, row in cells.iterrows():
        mine = per[(per.critic == row.critic) & (per.generator == row.generator) & (per.game == row.game)].final_w1
        assert row.final_w1_n == 3 and (row.final_w1_mean, row.final_w1_lo, row.final_w1_hi) == pytest.approx(seed_interval(mine)[:3])
    assert (tmp_path / "sat" / "figures" / "saturation.png").exists()
