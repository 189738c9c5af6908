"""Random search (``search:``): draws from their distributions, per-trial determinism, shared draws,
bad input, and the sweep store (resume gives the same rows)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

import gandy
from gandy.runs import config as C
from gandy.runs.grammar import parse_search
from gandy.runs.plan import expand
from gandy.runs.sweep import run_sweep

LAB = {
    "target": {"name": "ring8"},
    "generator": {"name": "mlp", "latent_dim": 2, "widths": [16]},
    "critic": {"name": "mlp", "widths": [16]},
    "objective": "ns", "penalty": None,
    "particles": {"n": 32}, "batch_size": 32, "steps": 12, "log_every": 6, "seeds": [0, 1],
    "optim": {"critic": {"name": "adam"}, "generator": {"name": "adam"}},
}
PARAMS = {
    "optim.critic.lr,optim.generator.lr": {"loguniform": [1e-4, 1e-2]},
    "optim.critic.betas,optim.generator.betas": {"choice": [[0.5, 0.999], [0.9, 0.999]]},
    "optim.critic.steps": {"int": [1, 3]},
    "penalty.weight": {"uniform": [0.0, 2.0]},
}


def search_cfg(trials=3, seed=0, params=None) -> C.Config:
    d = copy.deepcopy(LAB)
    d["search"] = {"trials": trials, "seed": seed, "params": params or PARAMS}
    return C.load_config(d)


def test_draws_follow_their_distributions():
    _, points, _ = parse_search({"trials": 4000, "seed": 1, "params": PARAMS})
    lr = np.array([p["optim.critic.lr,optim.generator.lr"] for p in points])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-2
    # log-uniform: log10(lr) uniform on [-4, -2], so a quarter of the draws fall below 10^-3.5
    assert np.mean(lr < 10**-3.5) == pytest.approx(0.25, abs=0.03)
    assert np.mean(np.log10(lr)) == pytest.approx(-3.0, abs=0.03)
    steps = np.array([p["optim.critic.steps"] for p in points])
    assert set(steps) == {1, 2, 3} and np.bincount(steps)[1:].min() > 1200
    betas = [tuple(p["optim.critic.betas,optim.generator.betas"]) for p in points]
    assert set(betas) == {(0.5, 0.999), (0.9, 0.999)}
    w = np.array([p["penalty.weight"] for p in points])
    assert w.min() >= 0 and w.max() <= 2 and np.mean(w) == pytest.approx(1.0, abs=0.05)


def test_a_trial_depends_on_its_number_and_seed_only():
    a = parse_search({"trials": 3, "seed": 7, "params": PARAMS})[1]
    b = parse_search({"trials": 10, "seed": 7, "params": PARAMS})[1]
    assert a == b[:3]  # more trials do not change the first ones
    c = parse_search({"trials": 3, "seed": 8, "params": PARAMS})[1]
    assert a != c


def test_members_are_trials_times_seeds_and_a_shared_draw_sets_every_path():
    _, members, _ = expand(search_cfg(trials=3))
    assert [(m.values["trial"], m.seed) for m in members] == [(t, s) for t in range(3) for s in (0, 1)]
    for m in members:
        lr = m.values["optim.critic.lr,optim.generator.lr"]
        assert m.config.optim.critic.lr == lr and m.config.optim.generator.lr == lr
        assert list(m.config.optim.critic.betas) == list(m.config.optim.generator.betas)
        assert m.config.optim.critic.steps == m.values["optim.critic.steps"]


@pytest.mark.parametrize("search, field", [
    ({"trials": 0, "params": PARAMS}, "search.trials"),
    ({"trials": 2, "params": {}}, "search.params"),
    ({"trials": 2, "params": {"optim.critic.lr": {"normal": [0, 1]}}}, "search.params.optim.critic.lr"),
    ({"trials": 2, "params": {"optim.critic.lr": {"loguniform": [0.0, 1.0]}}}, "search.params.optim.critic.lr"),
    ({"trials": 2, "params": {"optim.critic.steps": {"int": [1.5, 3]}}}, "search.params.optim.critic.steps"),
    ({"trials": 2, "params": {"optim.critic.lr": {"uniform": [2.0, 1.0]}}}, "search.params.optim.critic.lr"),
    ({"trials": 20, "params": {"optim.critic.lr": {"uniform": [-1.0, 1.0]}}}, "search.optim.critic.lr"),
    ({"trials": 2, "bogus": 1, "params": PARAMS}, "search.bogus"),
])
def test_bad_searches_name_the_field(search, field):
    d = copy.deepcopy(LAB)
    d["search"] = search
    with pytest.raises(C.ConfigError) as e:
        expand(C.load_config(d))
    assert e.value.field == field


def test_search_and_sweep_are_exclusive():
    d = copy.deepcopy(LAB)
    d["search"] = {"trials": 2, "params": PARAMS}
    d["sweep"] = {"optim.critic.lr": [0.1, 0.2]}
    with pytest.raises(C.ConfigError):
        C.load_config(d)


def test_search_runs_through_the_store_and_matches_single_runs(tmp_path):
    cfg = search_cfg(trials=2)
    results, _, _ = run_sweep(cfg, tmp_path / "s")
    assert sorted(zip(results.trial, results.seed)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    stored = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert list(stored.columns[:6]) == ["member", "trial", "optim.critic.lr,optim.generator.lr",
                                        "optim.critic.betas,optim.generator.betas", "optim.critic.steps", "penalty.weight"]
    # a trial x seed equals the plain run of its drawn config, number for number
    _, members, _ = expand(cfg)
    m = members[3]
    single = gandy.run(m.config, figures=False).results
    row = results[results.member == 3].iloc[0]
    assert math.isclose(row.w1, float(single.w1.iloc[0]), rel_tol=1e-6)
    # resuming a finished search changes nothing
    again, _, _ = run_sweep(cfg, tmp_path / "s", resume=True)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), results.reset_index(drop=True))


def test_search_through_ray_gives_the_local_rows(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        cfg = search_cfg(trials=3)
        a, ma, _ = run_sweep(cfg, tmp_path / "local")
        b, mb, s = run_sweep(cfg, tmp_path / "ray", executor="ray")
        assert s["sweep"]["executor"] == "ray" and sorted(set(b.trial)) == [0, 1, 2]
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    finally:
        ray.shutdown()


@pytest.mark.parametrize("raw, field, message", [
    ({"trials": 2, "zz": 1, "aa": 2, "params": {}}, "search.aa", "unknown key (expected trials, seed, params, batch_size)"),
    ({"trials": True, "params": PARAMS}, "search.trials", "must be a positive integer"),
    ({"trials": 2, "seed": 1.0, "params": PARAMS}, "search.seed", "must be an integer"),
    ({"trials": 2, "params": {}, "batch_size": 0}, "search.params", "needs at least one dotted key -> distribution"),
    ({"trials": 2, "params": {"a": {"normal": 1}}, "batch_size": 0}, "search.batch_size", "must be a positive integer or auto"),
    ({"trials": 2, "params": {"a": {"uniform": [0, 1], "int": [1, 2]}}}, "search.params.a",
     "expected one of {loguniform: ...}, {uniform: ...}, {int: ...}, {choice: ...}"),
    ({"trials": 2, "params": {"a": {"choice": []}}}, "search.params.a", "choice needs a non-empty list"),
    ({"trials": 2, "params": {"a": {"uniform": [1, "b"]}}}, "search.params.a",  # (a TypeError before issue 25)
     "uniform needs two numbers [low, high] with low <= high"),
    ({"trials": 2, "params": {"a": {"loguniform": [0, 1]}}}, "search.params.a", "loguniform bounds must be > 0"),
    ({"trials": 2, "params": {"a": {"int": [1, 2.5]}}}, "search.params.a", "int bounds must be integers"),
])
def test_search_grammar_refusals_word_for_word(raw, field, message):
    """The grammar's refusals: the first problem in the order the section is read (its own keys,
    then each distribution), with its field and words."""
    with pytest.raises(C.ConfigError) as e:
        parse_search(raw)
    assert (e.value.field, e.value.message) == (field, message)
