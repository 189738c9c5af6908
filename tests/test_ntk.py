"""`gandy ntk` and the kernel-universality experiment: analytic numbers against hand computation,
the empirical kernel approaching them with width, bad input, the experiment's files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from gandy.cli import app
from gandy.kernels import ntk_g1_g2
from gandy.universality import empirical

runner = CliRunner()


def _json(*args):
    r = runner.invoke(app, ["ntk", *args, "--json"])
    assert r.exit_code == 0, r.output
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


def test_json_matches_the_library_for_erf_with_biases():
    out = _json("--depth", "3", "--activation", "erf", "--weight-var", "1.5", "--bias-var", "0.2")
    g1, g2 = ntk_g1_g2(3, "erf", 1.5, 0.2)
    assert (out["g1"], out["g2"]) == (pytest.approx(g1), pytest.approx(g2))


def test_empirical_block_and_its_approach_to_the_two_numbers():
    out = _json("--depth", "1", "--width", "2048", "--latent-dim", "512", "--samples", "12", "--networks", "2")
    e = out["empirical"]
    assert e["width"] == 2048 and e["latent_dim"] == 512 and e["samples"] == 12 and e["networks"] == 2
    assert e["diag_mean"] == pytest.approx(2.0, rel=0.05)
    assert e["offdiag_mean"] == pytest.approx(1 / math.pi, abs=0.05)
    # wider networks and higher-dimensional latents bring the kernel closer to the two numbers
    dist = [empirical(2, "erf", 1.5, 0.1, w, 256, 12, 2)["rel_distance"] for w in (16, 128, 1024)]
    assert dist[0] > dist[1] > dist[2]
    low_dz = empirical(2, "erf", 1.5, 0.1, 1024, 4, 12, 2)["offdiag_std"]
    high_dz = empirical(2, "erf", 1.5, 0.1, 1024, 256, 12, 2)["offdiag_std"]
    assert high_dz < 0.5 * low_dz  # near-orthogonal latents: off-diagonal entries all near g2


@pytest.mark.parametrize("args, option", [
    (["--depth", "0"], "--depth"),
    (["--depth", "2", "--activation", "tanh"], "--activation"),
    (["--depth", "2", "--weight-var", "-1"], "--weight-var"),
    (["--depth", "2", "--bias-var", "-0.1"], "--bias-var"),
    (["--depth", "2", "--width", "0"], "--width"),
    (["--depth", "2", "--width", "8", "--samples", "1"], "--samples"),
])
def test_bad_input_names_the_option_and_exits_2(args, option):
    r = runner.invoke(app, ["ntk", *args])
    assert r.exit_code == 2
    assert f"error: {option}:" in r.output


def test_text_output_lists_the_numbers():
    r = runner.invoke(app, ["ntk", "--depth", "2", "--width", "64", "--samples", "4", "--networks", "1"])
    assert r.exit_code == 0 and "g2/g1" in r.stdout and "off-diagonal" in r.stdout


def test_kernel_universality_quick_writes_table_and_figures(tmp_path):
    from gandy.experiments import kernel_universality as K

    r = runner.invoke(app, ["run", "kernel-universality", "--quick", "--out", str(tmp_path / "ku")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "ku" / "universality.parquet")
    assert len(t) == 2 * len(K.QUICK["widths"]) * len(K.QUICK["latent_dims"])
    for name in ("spread.png", "distance.png"):
        assert (tmp_path / "ku" / "figures" / name).stat().st_size > 10000
    erf = t[(t.activation == "erf") & (t.latent_dim == max(K.QUICK["latent_dims"]))].sort_values("width")
    assert erf.rel_distance.iloc[-1] < erf.rel_distance.iloc[0]
