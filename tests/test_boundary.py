"""The adaptive boundary search (``gandy boundary``): the Firth fit against a direct maximisation of
its penalised likelihood, the bisection against a planted step, a planted logistic boundary recovered
inside its interval, and the real search: fewer members than the grid, the table's columns, resume
after a kill to the same rows, bad input refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.optimize import minimize

from gandy.core.metrics.boundary import firth_logistic, fit_boundary, row_boundaries, t50
from gandy.runs import boundary as B
from gandy.runs.config import ConfigError, load_config
from gandy.views.plots import plot_boundary

# ----------------------------------------------------------------------------- the fit


def _penalised_nll(beta, t, k, n):
    """Minus Firth's penalised log-likelihood, written out directly: -(l(b) + log det I(b) / 2)."""
    eta = beta[0] + beta[1] * t
    p = 1 / (1 + np.exp(-eta))
    ll = np.sum(k * eta - n * np.logaddexp(0, eta))
    X = np.stack([np.ones_like(t), t], 1)
    info = X.T @ (X * (n * p * (1 - p))[:, None])
    return -(ll + 0.5 * np.linalg.slogdet(info)[1])


@pytest.mark.parametrize("k", [[0, 1, 2, 5, 5], [0, 0, 0, 5, 5], [1, 0, 3, 2, 5]])
def test_firth_fit_maximises_the_penalised_likelihood(k):
    """Newton on the modified score lands where a general optimiser finds the penalised likelihood's
    maximum, separated data (second case: every run below t = 0.5 succeeded, every one above failed)
    included, where plain maximum likelihood has none."""
    t = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    n = np.full(5, 5.0)
    k = np.asarray(k, float)
    beta = firth_logistic(t, k, n)
    ref = minimize(_penalised_nll, np.zeros(2), args=(t, k, n), method="BFGS", options={"gtol": 1e-10}).x
    assert np.isfinite(beta).all()
    assert beta == pytest.approx(ref, abs=1e-4)


def test_firth_fits_a_batch_like_each_data_set_alone():
    t = np.linspace(-1, 1, 4)
    n = np.array([3.0, 4.0, 5.0, 3.0])
    ks = np.array([[0, 1, 3, 3], [1, 1, 2, 3], [0, 0, 1, 2]], float)
    together = firth_logistic(t, ks, n)
    for i in range(3):
        assert together[i] == pytest.approx(firth_logistic(t, ks[i], n), abs=1e-9)


def test_x50_is_where_the_fitted_probability_is_half_and_censoring_is_named():
    x = np.geomspace(0.01, 1.0, 5)
    b = fit_boundary(x, [0, 1, 2, 4, 5], [5, 5, 5, 5, 5])
    raw = np.log(x)
    t = (raw - raw.mean()) / raw.std()
    beta = firth_logistic(t, np.array([0, 1, 2, 4, 5.0]), np.full(5, 5.0))
    assert b.x50 == pytest.approx(np.exp(t50(beta) * raw.std() + raw.mean()), rel=1e-9)
    assert b.lo < b.x50 < b.hi and b.slope > 0 and b.runs == 25 and b.points == 5
    assert fit_boundary(x, [0] * 5, [5] * 5).censored == "none_failed"
    none = fit_boundary(x, [5] * 5, [5] * 5)
    assert none.censored == "all_failed" and np.isnan(none.x50)


def test_row_boundaries_pool_runs_per_point():
    x = np.array([1, 1, 2, 2, 4, 4, 1, 2, 4.0])
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1.0])
    failed = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0], bool)
    rows = row_boundaries(x, y, failed)
    assert [yv for yv, _ in rows] == [0.0, 1.0]
    assert rows[0][1].runs == 6 and rows[0][1].points == 3 and rows[1][1].censored == "none_failed"
    assert rows[0][1].x50 == pytest.approx(fit_boundary([1, 2, 4], [0, 1, 2], [2, 2, 2]).x50)


# ----------------------------------------------------------------------------- the bisection
def test_bisection_brackets_a_planted_step_in_log2_rounds():
    """Rows failing from position 6, from position 0 (censored: all fail), never (censored), and
    a row failing below position 11 (decreasing): each open row ends with its one-position bracket after
    round 0 plus ceil(log2(16)) = 4 rounds."""
    R = 17
    steps = {0: lambda i: i >= 6, 1: lambda i: True, 2: lambda i: False, 3: lambda i: i < 11}
    calls = []

    def evaluate(points):
        calls.append(points)
        return [float(steps[r](i)) for r, i in points]

    rows = B.bisect(R, 4, evaluate)
    assert (rows[0].lo, rows[0].hi, rows[0].state) == (5, 6, "done")
    assert rows[1].censored == "half_failed_at_both_ends" and rows[2].censored == "under_half_failed_at_both_ends"
    assert (rows[3].lo, rows[3].hi, rows[3].up) == (10, 11, False)
    assert len(calls) == 5
    assert sorted({i for c in calls for r, i in c if r == 0}) == [0, 4, 5, 6, 8, 16]


def test_k_section_brackets_every_planted_step_in_fewer_wider_rounds():
    """K = 7 positions per round on 25 positions (the MNIST g2/g1 axis): every planted step, rising
    or falling, ends in the one-position bracket that holds it after round 0 plus two rounds (24 ->
    3 -> 1), where bisection takes five; each round asks only positions strictly inside the open
    brackets, none twice."""
    R = 25
    for K, n_rounds in ((7, 3), (3, 4), (1, 6)):
        for edge in range(1, R):
            for up in (True, False):
                calls = []

                def evaluate(points, edge=edge, up=up):
                    calls.append(points)
                    return [float(i >= edge) if up else float(i < edge) for _, i in points]

                (row,) = B.bisect(R, 1, evaluate, per_round=K)
                assert (row.lo, row.hi, row.state, row.up) == ((edge - 1, edge, "done", True) if up
                                                               else (edge - 1, edge, "done", False))
                asked = [i for c in calls for _, i in c]
                assert len(asked) == len(set(asked)) and all(len(c) <= (K if k else 2) for k, c in enumerate(calls))
                assert len(calls) <= n_rounds
    assert B._inside(0, 24, 7) == [3, 6, 9, 12, 15, 18, 21] and B._inside(3, 6, 7) == [4, 5] and B._inside(5, 6, 3) == []



def test_k_section_takes_the_first_change_from_the_end_that_does_not_fail():
    """A row that fails at 6..10 and 20..24 but not at 0 or 11..19 (not monotone): K-section keeps
    the first crossing seen from its non-failing end, as bisection keeps one crossing."""
    fails = set(range(6, 11)) | set(range(20, 25))
    (row,) = B.bisect(25, 1, lambda pts: [float(i in fails) for _, i in pts], per_round=7)
    assert (row.lo, row.hi) == (5, 6)


def test_a_planted_logistic_boundary_is_recovered_inside_its_interval():
    """Seeds drawn from a known P(fail) = sigma((log x - log x0) / w) at the positions the bisection
    asks for (17 positions, 5 seeds): the 95 % interval holds x0 in at least 85 % of 60 planted
    boundaries, with fewer runs than the grid's 85 per row."""
    rng = np.random.default_rng(7)
    xs = np.geomspace(1e-3, 0.5, 17)
    hits, used = 0, []
    for _ in range(60):
        x0, w = np.exp(rng.uniform(np.log(3e-3), np.log(0.2))), rng.choice([0.05, 0.3, 0.8])
        seen = {}

        def evaluate(points):
            out = []
            for _, i in points:
                k = rng.binomial(5, 1 / (1 + np.exp(-(np.log(xs[i]) - np.log(x0)) / w)))
                seen[i] = k
                out.append(k / 5)
            return out

        B.bisect(len(xs), 1, evaluate)
        idx = sorted(seen)
        b = fit_boundary(xs[idx], [seen[i] for i in idx], [5] * len(idx), draws=500)
        hits += b.lo <= x0 <= b.hi
        used.append(5 * len(idx))
    assert hits >= 51
    assert max(used) < 85


# ----------------------------------------------------------------------------- the search
SMALL = {
    "target": {"name": "two_modes_1d", "separation": 4.0, "std": 0.1},
    "particles": {"n": 16, "init": {"name": "gaussian", "std": 0.1}},
    "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.1},
    "critic": {"name": "mlp", "widths": [16], "activation": "relu"},
    "objective": "ipm", "penalty": {"name": "sobolev", "weight": 1.0},
    "optim": {"critic": {"name": "adam", "lr": 0.001}, "generator": {"lr": 0.004}},
    "steps": 120, "log_every": 40, "seeds": [0, 1],
    "sweep": {"kernel.g2": {"logspace": [0.001, 0.9], "num": 9}, "optim.critic.lr": [0.001, 0.01]},
}
X, Y = "kernel.g2", "optim.critic.lr"


def _search(out, **kw):
    return B.run_boundary(load_config(SMALL), out, X, Y, seeds=3, **kw)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("boundary") / "b"
    table, summary = _search(out, draw=plot_boundary)
    return out, table, summary


def test_the_search_writes_its_table_with_fewer_members_than_the_grid(searched):
    out, table, summary = searched
    stored = pd.read_parquet(out / "boundary.parquet")
    for col in (Y, "x50", "lo", "hi", "members", "seeds"):
        assert col in stored.columns
    assert sorted(stored[Y]) == [0.001, 0.01] and (stored.seeds == 3).all()
    b = summary["boundary"]
    assert b["full_grid_members"] == 9 * 2 * 3 and b["members"] < b["full_grid_members"]
    res = pd.read_parquet(out / "results.parquet")
    assert len(res) == b["members"] == stored.members.sum()
    assert res.member.is_unique and set(res.seed) == {0, 1, 2}
    pts = pd.read_parquet(out / "points.parquet")
    assert (pts.runs == 3).all() and len(pts) * 3 == len(res)
    # every row's x50 is what the fit gives on the stored runs, and a crossing lies inside its bracket
    assert not stored.censored.astype(bool).all()  # a row to check below
    for row in stored.itertuples():
        r = res[res[Y] == stored.loc[row.Index, Y]]
        if row.censored:
            assert np.isnan(row.x50)
            continue
        f = r.assign(f=r.phase.isin(["collapsed", "runaway"])).groupby(X).f.agg(["sum", "count"])
        assert row.x50 == pytest.approx(fit_boundary(f.index.to_numpy(), f["sum"], f["count"]).x50, rel=1e-9)
        assert row.lo <= row.x50 <= row.hi
        # the bracket is one position wide (where a bisection ends) and the points change across it
        xs, here = b["xs"], pts[pts[Y] == stored.loc[row.Index, Y]].set_index(X).fail_fraction
        i = int(np.argmin(np.abs(np.asarray(xs) - row.bracket_lo)))
        assert xs[i] == pytest.approx(row.bracket_lo) and xs[i + 1] == pytest.approx(row.bracket_hi)
        assert (here.loc[xs[i]] >= 0.5) != (here.loc[xs[i + 1]] >= 0.5)
    assert (out / "figures" / "boundary.png").stat().st_size > 10_000


def test_a_killed_search_resumes_to_the_rows_of_an_uninterrupted_one(searched, tmp_path, monkeypatch):
    out0, table0, _ = searched
    out = tmp_path / "b"
    real = B.run_members
    calls = {"n": 0}

    def dying(members, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed in the third round, after two rounds' chunks were written
        return real(members, where, **kw)

    monkeypatch.setattr(B, "run_members", dying)
    with pytest.raises(KeyboardInterrupt):
        _search(out)
    monkeypatch.setattr(B, "run_members", real)
    with pytest.raises(ConfigError, match="out"):
        _search(out)  # a half-done search is not a new folder
    table, _ = _search(out, resume=True)
    cols = ["member", "seed", X, Y, "phase", "final_step"]
    a = pd.read_parquet(out0 / "results.parquet")[cols]
    b = pd.read_parquet(out / "results.parquet")[cols]
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(table0, table)
    with pytest.raises(ConfigError, match="another boundary search"):
        B.run_boundary(load_config(SMALL), out, X, Y, seeds=2, resume=True)


def test_a_k_section_search_finds_the_bisection_brackets_in_fewer_rounds(searched, tmp_path):
    """The same search with 3 positions per round: every row's final bracket is the bisection's
    (the points' outcomes do not depend on which round ran them), in fewer rounds; a resume must
    ask for the same positions per round."""
    out0, table0, summary0 = searched
    out = tmp_path / "k3"
    table, summary = _search(out, per_round=3)
    assert summary["boundary"]["per_round"] == 3 and json.loads((out / "boundary.json").read_text())["per_round"] == 3
    assert summary["boundary"]["rounds"] < summary0["boundary"]["rounds"]
    pd.testing.assert_frame_equal(table[["censored", "bracket_lo", "bracket_hi"]], table0[["censored", "bracket_lo", "bracket_hi"]])
    with pytest.raises(ConfigError, match="another boundary search"):
        _search(out, resume=True)  # per_round 1


@pytest.mark.parametrize("kw, field", [
    ({"x": "kernel.g1"}, "x"), ({"y": "kernel.g2"}, "y"), ({"resolution": 2}, "resolution"),
    ({"seeds": 0}, "seeds"), ({"fail": ("bogus",)}, "fail"), ({"per_round": 0}, "per_round"),
    ({"per_round": 2.5}, "per_round"),
])
def test_bad_search_options_are_refused_before_anything_is_written(tmp_path, kw, field):
    args = {"x": X, "y": Y, **kw}
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as e:
        B.run_boundary(load_config(SMALL), out, args.pop("x"), args.pop("y"), **args)
    assert e.value.field == field
    assert not out.exists()


def test_the_cli_runs_a_search_and_refuses_a_third_axis(tmp_path, invoke_cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**SMALL, "steps": 40, "sweep": {**SMALL["sweep"], "kernel.g2": {"logspace": [0.001, 0.9], "num": 5}}}))
    res = invoke_cli(["boundary", cfg, "--x", X, "--y", Y, "--seeds", "2", "--out", tmp_path / "o", "-q"])
    assert res.exit_code == 0, res.stderr
    assert f"{Y} = 0.001" in res.stdout and (tmp_path / "o" / "boundary.parquet").exists()
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["boundary"]["resolution"] == 5
    for row in pd.read_parquet(tmp_path / "o" / "boundary.parquet").to_dict("records"):  # each row's line says its step
        line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith(f"{Y} = {row[Y]:.4g}:"))
        step = f"the points change between {row['bracket_lo']:.4g} and {row['bracket_hi']:.4g}"
        assert (step in line) if np.isfinite(row["bracket_lo"]) else ("the points change" not in line), line
    cfg.write_text(yaml.safe_dump({**SMALL, "sweep": {**SMALL["sweep"], "penalty.weight": [0.5, 1.0]}}))
    bad = invoke_cli(["boundary", cfg, "--x", X, "--y", Y, "--out", tmp_path / "p"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: sweep:") and "penalty.weight" in bad.stderr
    assert not (tmp_path / "p").exists()


def test_the_report_shows_the_search_as_a_sweep_with_its_table_and_figure(searched):
    from gandy.views.report import payload

    out, _, _ = searched
    data = payload(out)
    assert data["kind"] == "sweep"
    assert {t["name"] for t in data["tables"]} == {"boundary.parquet", "points.parquet"}
    assert [f["name"] for f in data["figures"]] == ["boundary.png"]


def test_the_mnist_diagram_is_searchable_on_a_log_axis():
    """mnist-collapse's grid has a g2 = 0 column (a linear axis); with a log axis in its place the
    search plans 25 log-spaced positions over 26 critic lrs, validated without running anything."""
    from gandy.studies.mnist_collapse.experiment import EXPERIMENT

    cfg = load_config(EXPERIMENT.sweep_config(), ["sweep.kernel.g2={logspace: [0.01, 0.977], num: 25}"])
    s = B.plan_search(cfg, X, Y, seeds=3)
    assert s.scale == "log" and s.resolution == 25 and len(s.ys) == 26 and s.seeds == (0, 1, 2)
    assert s.xs[0] == pytest.approx(0.01) and s.xs[-1] == pytest.approx(0.977)
    linear = B.plan_search(load_config(EXPERIMENT.sweep_config()), X, Y)
    assert linear.scale == "linear" and linear.xs[0] == 0.0


def test_a_crossing_outside_the_positions_tried_is_labelled_not_reported():
    """Two of five seeds failing at the last position only: the fitted crossing lies beyond the
    range, so the row says ``above_range`` (the plots and the CLI show no x50 for it)."""
    b = fit_boundary(np.geomspace(0.01, 1.0, 4), [0, 0, 0, 2], [5, 5, 5, 5])
    assert b.censored == "above_range" and b.x50 > 1.0
    flat = fit_boundary(np.geomspace(0.01, 1.0, 4), [1, 0, 0, 1], [5, 5, 5, 5])  # no trend: the crossing is far away
    assert flat.censored in ("above_range", "below_range") and np.isfinite([flat.lo]).all()


def test_the_step_bracket_is_where_the_points_change_and_says_so_where_the_fit_does_not():
    """Counts by hand: the bracket is the last position that did not fail and the first that did
    (a point fails at half its seeds), walking from the end that does not fail, in either
    direction; NaN where the ends agree. A sharp step at the last position of seven, two seeds
    each, is fitted with its x50 above the positions (Firth's shrinkage), and the bracket still
    says where the points changed."""
    from gandy.core.metrics.boundary import step_bracket

    x = [0.01, 0.1, 0.3, 0.55, 0.67, 0.81, 0.98]
    assert step_bracket(x, [0, 0, 0, 0, 0, 0, 2], [2] * 7) == (0.81, 0.98)
    assert step_bracket(x[::-1], [0, 0, 0, 0, 0, 0, 2][::-1], [2] * 7) == (0.81, 0.98)  # any order
    assert step_bracket(x, [2, 1, 0, 0, 0, 0, 0], [2] * 7) == (0.1, 0.3)  # failing on the low side; 1 of 2 fails
    assert step_bracket(x, [0, 2, 0, 0, 0, 0, 2], [2] * 7) == (0.01, 0.1)  # not monotone: the first change
    assert all(np.isnan(step_bracket(x, [0] * 7, [2] * 7))) and all(np.isnan(step_bracket(x, [2] * 7, [2] * 7)))
    fit = fit_boundary(np.array(x), [0, 0, 0, 0, 0, 0, 2], [2] * 7)
    assert fit.censored == "above_range" and fit.x50 > 0.98

    from gandy.views.plots import grid_boundary
    runs = pd.DataFrame([{"x": v, "y": 1.0, "seed": s, "phase": "runaway" if v == 0.98 else "converged"}
                         for v in x for s in (0, 1)])
    row = grid_boundary(runs, "x", "y", xlog=True).iloc[0]
    assert (row.bracket_lo, row.bracket_hi) == (0.81, 0.98) and row.censored == "above_range"
