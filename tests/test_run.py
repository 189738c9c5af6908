"""The Python API (gandy.run / gandy.load_run), determinism, per-seed divergence isolation and the
phase counts (the phase rule itself: tests/test_phases.py)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

import gandy
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import PHASES as ALL_PHASES
from gandy.runs import loop
from gandy.runs.api import assemble
from gandy.runs.build import build
from gandy.runs.config import ConfigError, load_config

from conftest import TINY

PHASES = set(ALL_PHASES)
SCALARS = ["seed", "step", *ORDER_PARAMETERS]


def _scalars(m: pd.DataFrame, seed=None) -> pd.DataFrame:
    """The scalar metric columns (mode_hist is a list column), optionally for one seed."""
    if seed is not None:
        m = m[m.seed == seed]
    return m[SCALARS].sort_values(["seed", "step"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def api_result():
    return gandy.run(load_config(TINY), out=None)


# ----------------------------------------------------------------------------- API shape
def test_run_result_in_memory(api_result):
    res = api_result
    assert isinstance(res, gandy.RunResult)
    assert res.path is None
    assert isinstance(res.metrics, pd.DataFrame) and isinstance(res.results, pd.DataFrame)
    assert {"seed", "step", *ORDER_PARAMETERS} <= set(res.metrics.columns)
    assert len(res.metrics) == 2 * 4  # seeds x logged steps 0, 20, 40, 60
    assert list(res.results.seed) == [0, 1]
    assert set(res.results.phase) <= PHASES
    assert (res.results.diverged_step == -1).all()
    # (S, T, n, d): seeds, snapshots (snapshot_every defaults to log_every), particles, coordinates
    assert res.particles.shape == (2, 4, 16, 1)
    assert np.isfinite(res.particles).all()
    assert list(res.trajectory["steps"]) == [0, 20, 40, 60]
    assert list(res.trajectory["seeds"]) == [0, 1]
    assert res.trajectory["modes"].shape == (2, 1)
    # the results row of a seed holds its final logged order parameters
    last = res.metrics[res.metrics.step == 60].set_index("seed")
    for r in res.results.itertuples():
        for k in ORDER_PARAMETERS:
            assert getattr(r, k) == last.loc[r.seed, k]
    # mode coverage metrics are in range
    m = res.metrics
    assert ((m.on_mode >= 0) & (m.on_mode <= 1)).all()
    assert ((m.coverage_kl >= -1e-12) & (m.coverage_kl <= math.log(2) + 1e-12)).all()
    assert set(m.modes_covered) <= {0.0, 1.0, 2.0}


def test_summary(api_result):
    s = api_result.summary
    assert s["phases"] == {str(r.seed): r.phase for r in api_result.results.itertuples()}
    assert sum(s["phase_counts"].values()) == 2 and set(s["phase_counts"]) == PHASES
    assert s["n_particles"] == 16 and s["dim"] == 1 and s["n_modes"] == 2
    json.dumps(s, default=float)  # serialisable


def test_initial_particles_follow_the_init(api_result):
    x0 = api_result.particles[:, 0, :, 0]
    assert abs(x0.mean()) < 0.1 and 0.05 < x0.std() < 0.2  # gaussian, mean 0, std 0.1
    assert not np.array_equal(x0[0], x0[1])  # seeds differ


# ----------------------------------------------------------------------------- determinism
def test_same_config_same_metrics(api_result):
    again = gandy.run(dict(TINY), figures=False)
    pd.testing.assert_frame_equal(again.metrics, api_result.metrics, check_exact=True)
    pd.testing.assert_frame_equal(again.results, api_result.results, check_exact=True)
    assert np.array_equal(again.particles, api_result.particles)


def test_cli_directory_matches_api_and_load_run_round_trips(cli_run):
    _, out, _ = cli_run
    loaded = gandy.load_run(out)
    assert loaded.path == out
    mem = gandy.run(TINY, overrides=["kernel.g2=0.5"])
    assert loaded.config == mem.config
    assert loaded.config.kernel.g2 == 0.5
    pd.testing.assert_frame_equal(_scalars(loaded.metrics), _scalars(mem.metrics), check_exact=True)
    assert [list(h) for h in loaded.metrics.mode_hist] == list(mem.metrics.mode_hist)
    pd.testing.assert_frame_equal(loaded.results, mem.results, check_exact=True)
    assert set(loaded.trajectory) == set(mem.trajectory)
    for k, v in mem.trajectory.items():
        assert np.array_equal(loaded.trajectory[k], v, equal_nan=True), k
    assert loaded.particles.shape == (2, 4, 16, 1)
    for k in ("phases", "phase_counts", "n_particles", "dim", "n_modes", "kernel", "final"):
        assert loaded.summary[k] == json.loads(json.dumps(mem.summary[k], default=float)), k


def test_api_bad_config_writes_nothing(tmp_path):
    out = tmp_path / "runs" / "out"
    with pytest.raises(ConfigError) as ei:
        gandy.run(TINY, out=out, overrides=["particles.init.mean=[0, 0]"])
    assert ei.value.field == "particles.init"
    assert not out.exists() and not out.parent.exists()
    assert os.listdir(tmp_path) == []


def test_api_existing_out_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as ei:
        gandy.run(TINY, out=tmp_path / "out")
    assert ei.value.field == "out"
    assert os.listdir(tmp_path / "out") == ["notes.txt"]


def test_api_writes_into_an_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    gandy.run(TINY, out=tmp_path / "out", overrides=["steps=2", "log_every=1"], figures=False)
    assert (tmp_path / "out" / "results.parquet").is_file()


def test_run_accepts_yaml_path_and_overrides(tiny_yaml):
    res = gandy.run(tiny_yaml, overrides=["steps=2", "log_every=1", "seeds=[7]"])
    assert res.config.steps == 2 and res.config.seeds == [7]
    assert res.particles.shape == (1, 3, 16, 1)
    assert list(res.metrics.step) == [0, 1, 2]


# ----------------------------------------------------------------------------- divergence isolation
SHORT = ["steps=20", "log_every=5", "engine=eager"]  # eager: a lone member is bit-identical to its batched self


def _simulate(seeds, poison: dict | None = None, overrides=SHORT):
    """``simulate`` on the tiny config; ``poison = {member index: value}`` puts ``value`` into
    one initial particle of that member (wrapping ``sim.init_particles``, which ``simulate`` calls
    once with the per-member particle stream)."""
    sim = build(load_config(TINY, overrides))
    if poison:
        orig = sim.init_particles

        def init(stream, n):
            x = orig(stream, n).clone()
            for i, v in poison.items():
                x[i, 3, 0] = v
            return x

        sim.init_particles = init
    return sim, loop.simulate(sim, seeds)


@pytest.fixture(scope="module")
def clean3():
    return _simulate([0, 1, 2])


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_member_is_isolated(clean3, bad):
    sim, out = _simulate([0, 1, 2], poison={1: bad})
    assert list(out.diverged_step) == [-1, 1, -1]
    m = pd.DataFrame(out.metrics)
    # the poisoned member: NaN everywhere (its particles were never finite), never a number
    assert m[m.seed == 1][list(ORDER_PARAMETERS)].isna().all().all()
    assert np.isnan(out.final_particles[1]).all()
    assert not np.isfinite(out.snapshots[0][1]).all()  # step 0: the poisoned init as it was
    assert all(np.isnan(s[1]).all() for s in out.snapshots[1:])  # zeroed, shown as NaN afterwards
    # the healthy members are bit-identical to the run without the poisoned member's blow-up
    _, ref = clean3
    mc = pd.DataFrame(ref.metrics)
    for seed, i in ((0, 0), (2, 2)):
        pd.testing.assert_frame_equal(_scalars(m, seed), _scalars(mc, seed), check_exact=True)
        assert np.array_equal(out.final_particles[i], ref.final_particles[i])
    # ... and to a batch without that member at all
    _, pair = _simulate([0, 2])
    mp = pd.DataFrame(pair.metrics)
    for seed in (0, 2):
        pd.testing.assert_frame_equal(_scalars(m, seed), _scalars(mp, seed), check_exact=True)
    # labelled in the results
    res = assemble(sim, out, 1.0)
    phases = dict(zip(res.results.seed, res.results.phase))
    assert phases[1] == "diverged"
    assert phases[0] != "diverged" and phases[2] != "diverged"
    assert res.summary["phase_counts"]["diverged"] == 1


def test_healthy_member_close_to_single_seed_run():
    _, out = _simulate([0, 1], poison={1: math.inf})
    _, alone = _simulate([0])
    a = _scalars(pd.DataFrame(out.metrics), 0)
    b = _scalars(pd.DataFrame(alone.metrics), 0)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-7)


def test_healthy_member_bit_identical_to_single_seed_run():
    _, out = _simulate([0, 1], poison={1: math.inf})
    _, alone = _simulate([0])
    a = _scalars(pd.DataFrame(out.metrics), 0)
    b = _scalars(pd.DataFrame(alone.metrics), 0)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_blowup_diverges_one_seed_through_the_config():
    """A real config (no patching) in which one seed blows up and the others go on.

    Wide init (std 1) and a negligible generator step: each seed's particles stay where they
    started, and ``phase.blowup`` is set between the largest and second largest initial radius, so
    exactly the seed with the farthest particle counts as blown up at step 1.
    """
    base = ["particles.init.std=1.0", "optim.generator.lr=1e-9", "seeds=[0, 1, 2]", "log_every=1"]
    probe = gandy.run(TINY, overrides=[*base, "steps=1"], figures=False)  # snapshot 0: the start
    radius = np.abs(probe.particles[:, 0, :, 0]).max(-1)  # target mean is 0
    order = np.argsort(radius)
    worst, second = radius[order[-1]], radius[order[-2]]
    assert worst - second > 1e-3 * worst  # room for the threshold
    blowup = 0.5 * (worst + second) / probe.summary["target_scale"]
    bad_seed = int(probe.trajectory["seeds"][order[-1]])
    good_seeds = [s for s in (0, 1, 2) if s != bad_seed]

    res = gandy.run(TINY, overrides=[*base, "steps=3", f"phase.blowup={float(blowup)!r}"], figures=False)
    r = res.results.set_index("seed")
    assert r.loc[bad_seed, "phase"] == "diverged"
    assert r.loc[bad_seed, "diverged_step"] == 1
    assert r.loc[bad_seed, "final_step"] == 0  # last finite logged row
    for s in good_seeds:
        assert r.loc[s, "phase"] != "diverged" and r.loc[s, "diverged_step"] == -1
    m = res.metrics
    bad = m[m.seed == bad_seed].set_index("step")
    assert bad.loc[0, list(ORDER_PARAMETERS)].notna().all()
    assert bad.loc[[1, 2, 3], list(ORDER_PARAMETERS)].isna().all().all()
    assert m[m.seed.isin(good_seeds)][list(ORDER_PARAMETERS)].notna().all().all()
    i = list(res.trajectory["seeds"]).index(bad_seed)
    assert np.isfinite(res.particles[i, 0]).all() and np.isnan(res.particles[i, 1:]).all()
    assert res.summary["phase_counts"]["diverged"] == 1

    # the healthy seeds do not notice: same numbers as a run without the diverging seed
    pair = gandy.run(TINY, overrides=[*base, "steps=3", f"phase.blowup={float(blowup)!r}", f"seeds={good_seeds}"],
                     figures=False)
    for s in good_seeds:
        pd.testing.assert_frame_equal(_scalars(m, s), _scalars(pair.metrics, s), check_exact=True)
    pd.testing.assert_frame_equal(
        res.results[res.results.seed.isin(good_seeds)].reset_index(drop=True), pair.results, check_exact=True
    )


def test_diverged_run_is_written(tmp_path):
    """All members blowing up still gives a complete run directory labelled diverged."""
    out = tmp_path / "out"
    res = gandy.run(TINY, out=out, overrides=["steps=2", "log_every=1", "phase.blowup=1e-6"], figures=False)
    assert set(res.results.phase) == {"diverged"}
    loaded = gandy.load_run(out)
    assert set(loaded.results.phase) == {"diverged"}
    assert (loaded.results.diverged_step == 1).all()
    assert loaded.summary["phase_counts"]["diverged"] == 2


def test_threads_key_sets_torch_threads_for_the_run_and_restores_them(monkeypatch):
    """``threads: 2`` runs the simulation with two torch threads and gives the process its own back;
    GANDY_THREADS (what ``gandy --threads N`` sets) wins over the key."""
    import torch

    seen = []
    real = gandy.runs.api.simulate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(gandy.runs.api, "simulate", spy)
    monkeypatch.delenv("GANDY_THREADS", raising=False)
    before = torch.get_num_threads()
    gandy.run(TINY, overrides=["steps=2", "threads=2"], figures=False)
    monkeypatch.setenv("GANDY_THREADS", "1")
    gandy.run(TINY, overrides=["steps=2", "threads=2"], figures=False)
    assert seen == [2, 1] and torch.get_num_threads() == before
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["threads=0"])
    assert e.value.field == "threads"
