"""`gandy ntk` and the kernel-universality experiment: analytic numbers against hand computation,
the empirical kernel approaching them with width, bad input, the experiment's files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from gandy.cli import app
from gandy.core.kernels import ntk_g1_g2
from gandy.studies.universality.model import empirical_stats

runner = CliRunner()


def _json(*args):
    r = runner.invoke(app, ["ntk", *args, "--json"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().count("\n") == 0  # one JSON object on one line
    return json.loads(r.stdout)


def test_depth1_relu_by_hand():
    # depth 1, sigma_w^2 = 2, sigma_b^2 = 0: Sigma0 = rho; cos(phi) = rho;
    # Sigma1 = (2 / 2 pi)(sin phi + (pi - phi) rho), dSigma1 = 2 (pi - phi) / 2 pi, Theta = rho dSigma1 + Sigma1.
    # rho = 1: phi = 0, Sigma1 = 1, dSigma1 = 1, Theta = 2. rho = 0: phi = pi/2, Sigma1 = 1/pi,
    # dSigma1 = 1/2, Theta = 1/pi.
    out = _json("--depth", "1")
    assert out["g1"] == pytest.approx(2.0) and out["g2"] == pytest.approx(1 / math.pi)
    assert out["ratio"] == pytest.approx(1 / (2 * math.pi))
    assert set(out) == {"g1", "g2", "ratio"}


def test_depth1_erf_by_hand():
    # depth 1, sigma_w^2 = 1, sigma_b^2 = 0: Sigma0 = rho, Sigma0_xx = 1, so 1 + 2 Sigma0_xx = 3;
    # Sigma1 = (2/pi) asin(2 rho / 3), dSigma1 = 4 / (pi sqrt(9 - 4 rho^2)), Theta = rho dSigma1 + Sigma1.
    # rho = 1: (2/pi) asin(2/3) + 4 / (pi sqrt 5). rho = 0: 0 (erf is odd and there is no bias).
    out = _json("--depth", "1", "--activation", "erf", "--weight-var", "1")
    assert out["g1"] == pytest.approx(2 / math.pi * math.asin(2 / 3) + 4 / (math.pi * math.sqrt(5)))
    assert out["g2"] == pytest.approx(0.0, abs=1e-12) and out["ratio"] == pytest.approx(0.0, abs=1e-12)


def test_json_matches_the_library_for_erf_with_biases():
    out = _json("--depth", "3", "--activation", "erf", "--weight-var", "1.5", "--bias-var", "0.2")
    g1, g2 = ntk_g1_g2(3, "erf", 1.5, 0.2)
    assert (out["g1"], out["g2"]) == (pytest.approx(g1), pytest.approx(g2))


def test_empirical_block_and_its_approach_to_the_two_numbers():
    out = _json("--depth", "1", "--width", "2048", "--latent-dim", "512", "--samples", "12", "--networks", "2")
    e = out["empirical"]
    assert {"diag_mean", "diag_std", "offdiag_mean", "offdiag_std"} <= set(e)
    assert e["width"] == 2048 and e["latent_dim"] == 512 and e["samples"] == 12 and e["networks"] == 2
    # autograd through real networks against the recursion: an independent check of ntk_analytic
    assert e["diag_mean"] == pytest.approx(2.0, rel=0.05)
    assert e["offdiag_mean"] == pytest.approx(1 / math.pi, abs=0.05)
    assert e["diag_std"] < 0.15 * 2.0 and e["offdiag_std"] < 0.15 * 2.0


def test_spread_shrinks_with_width_like_one_over_sqrt_width():
    stats = [empirical_stats(2, "erf", 1.5, 0.1, w, 256, 12, 2) for w in (16, 128, 1024)]
    dist = [s["rel_distance"] for s in stats]
    diag_std = [s["diag_std"] for s in stats]
    assert dist[0] > dist[1] > dist[2]
    assert diag_std[0] > diag_std[1] > diag_std[2]
    # width x 64 should divide a width^{-1/2} spread by about 8; no shrinkage at all would give 1
    assert 3 < diag_std[0] / diag_std[2] < 20
    relu = [empirical_stats(2, "relu", 2.0, 0.0, w, 256, 12, 2)["diag_std"] for w in (16, 128, 1024)]
    assert relu[0] > relu[1] > relu[2] and relu[0] / relu[2] > 3


def test_small_latent_dimension_leaves_a_floor_that_width_cannot_remove():
    low = empirical_stats(2, "erf", 1.5, 0.1, 1024, 4, 12, 2)
    high = empirical_stats(2, "erf", 1.5, 0.1, 1024, 256, 12, 2)
    # at d_z = 4 the off-diagonal spread is the rho-dependence of Theta itself: the wide network
    # reproduces the infinite-width spread at its own latents
    assert low["offdiag_std"] == pytest.approx(low["offdiag_std_limit"], rel=0.15)
    # the floor falls like d_z^{-1/2} (z_i . z_j ~ d_z^{-1/2}): 8x from d_z = 4 to 256
    assert 4 < low["offdiag_std_limit"] / high["offdiag_std_limit"] < 16
    assert high["offdiag_std"] < 0.5 * low["offdiag_std"]
    assert high["offdiag_mean_limit"] == pytest.approx(0.375, rel=0.05)  # -> g2 as latents become orthogonal


@pytest.mark.parametrize("args, option", [
    (["--depth", "0"], "--depth"),
    (["--depth", "2", "--activation", "tanh"], "--activation"),
    (["--depth", "2", "--weight-var", "-1"], "--weight-var"),
    (["--depth", "2", "--bias-var", "-0.1"], "--bias-var"),
    (["--depth", "2", "--width", "0"], "--width"),
    (["--depth", "2", "--width", "8", "--samples", "1"], "--samples"),
    (["--depth", "2", "--width", "8", "--latent-dim", "1"], "--latent-dim"),
    (["--depth", "2", "--width", "8", "--networks", "0"], "--networks"),
    (["--depth", "2", "--weight-var", "nan"], "--weight-var"),
])
def test_bad_input_names_the_option_and_exits_2(args, option):
    r = runner.invoke(app, ["ntk", *args])
    assert r.exit_code == 2
    assert f"error: {option}:" in r.output


def test_text_output_lists_the_numbers():
    r = runner.invoke(app, ["ntk", "--depth", "2", "--width", "64", "--samples", "4", "--networks", "1"])
    assert r.exit_code == 0 and "g2/g1" in r.stdout and "off-diagonal" in r.stdout


def test_kernel_universality_quick_writes_table_and_figures(tmp_path):
    from gandy.studies.universality import experiment as K

    out = tmp_path / "ku"
    r = runner.invoke(app, ["run", "kernel-universality", "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(out / "universality.parquet")
    assert len(t) == 2 * len(K.QUICK["widths"]) * len(K.QUICK["latent_dims"])
    for col in ("g1", "g2", "diag_rel_error", "diag_rel_spread", "offdiag_rel_error", "offdiag_rel_spread",
                "offdiag_rel_spread_limit", "rel_distance"):
        assert t[col].notna().all() and (t[col] >= 0).all(), col
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "kernel-universality" and summary["quick"] and len(summary["rows"]) == len(t)
    for name in ("spread.png", "distance.png"):
        assert (out / "figures" / name).stat().st_size > 10000
    for act in ("relu", "erf"):
        s = t[(t.activation == act) & (t.latent_dim == max(K.QUICK["latent_dims"]))].sort_values("width")
        assert s.rel_distance.iloc[-1] < 0.5 * s.rel_distance.iloc[0]
        assert s.diag_rel_spread.iloc[-1] < 0.5 * s.diag_rel_spread.iloc[0]
    # an existing directory is refused without --force
    r = runner.invoke(app, ["run", "kernel-universality", "--quick", "--out", str(out)])
    assert r.exit_code == 2 and "error: out:" in r.output
