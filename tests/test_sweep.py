"""Sweeps: grid parsing, batched = single runs bit for bit, isolation, chunking, store, resume."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import gandy
from gandy.core.metrics.phases import PHASES
from gandy.runs import config as C
from gandy.runs.grammar import parse_sweep
from gandy.runs.plan import expand, plan
from gandy.runs.store import final_particles
from gandy.runs.sweep import run_sweep
from gandy.views.plots import phase_grid, plot_sweep

BASE = {
    "target": {"name": "two_modes_1d"},
    "particles": {"n": 16},
    "critic": {"name": "mlp", "widths": [16]},
    "optim": {"critic": {"name": "adam", "lr": 0.01}, "generator": {"lr": 0.01}},
    "steps": 40,
    "log_every": 20,
    "seeds": [0, 1],
    "sweep": {"kernel.g2": [0.0, 0.5], "optim.critic.lr": [0.001, 0.01]},
}


def cfg_with(**sweep) -> C.Config:
    d = copy.deepcopy(BASE)
    if sweep:
        d["sweep"] = sweep
    return C.load_config(d)


# ----------------------------------------------------------------------------- grid
def test_grid_specs_give_values_not_exponents():
    axes, bs = parse_sweep({"a.b": [1, 2, 3], "c": {"linspace": [0, 1], "num": 5}, "d": {"logspace": [0.01, 1.0], "num": 3},
                            "batch_size": 7})
    assert bs == 7
    assert axes[0].values == (1, 2, 3) and axes[0].scale == "linear"
    assert axes[1].values == pytest.approx((0, 0.25, 0.5, 0.75, 1.0))
    assert axes[2].values == pytest.approx((0.01, 0.1, 1.0)) and axes[2].scale == "log"
    assert parse_sweep({"x": [1e-3, 1e-2, 1e-1]})[0][0].scale == "log"  # a geometric list is a log grid


def test_nested_sweep_entries_are_dotted_keys_and_overrides_work():
    cfg = C.load_config(BASE, ["sweep.kernel.g2=[0.1, 0.2, 0.3]"])
    axes, members, _ = expand(cfg)
    assert [a.key for a in axes] == ["kernel.g2", "optim.critic.lr"]
    assert axes[0].values == (0.1, 0.2, 0.3)
    assert len(members) == 3 * 2 * 2
    m = members[5]
    assert m.config.kernel.g2 == m.values["kernel.g2"] and m.config.seeds == [m.seed]


@pytest.mark.parametrize("sweep, field", [
    ({"kernel.g2": [2.0]}, "sweep.kernel.g2"),  # g2 > g1
    ({"kernel.bogus": [1]}, "sweep.kernel.bogus"),
    ({"optim.critic.lr": {"logspace": [0, 1], "num": 3}}, "sweep.optim.critic.lr"),
    ({"optim.critic.lr": {"linspace": [0, 1]}}, "sweep.optim.critic.lr"),
    ({"optim.critic.lr": []}, "sweep.optim.critic.lr"),
    ({"kernel.g2": [0.1], "batch_size": 0}, "sweep.batch_size"),
])
def test_bad_sweeps_name_the_field(sweep, field):
    with pytest.raises(C.ConfigError) as e:
        expand(cfg_with(**sweep))
    assert e.value.field == field


def test_members_group_by_shape_and_chunk():
    cfg = cfg_with(**{"kernel.g2": [0.0, 0.5], "critic.widths": [[16], [8]], "batch_size": 3})
    p = plan(cfg)
    assert len(p.members) == 8
    widths = [ch.config["critic"]["widths"] for ch in p.chunks]
    assert sorted(map(tuple, widths)) == [(8,), (8,), (16,), (16,)]  # 4 members per width, chunks of <= 3
    assert sorted(i for ch in p.chunks for i, _, _ in ch.members) == list(range(8))


# ----------------------------------------------------------------------------- engine
def _point(results, **vals):
    sel = np.ones(len(results), bool)
    for k, v in vals.items():
        sel &= np.isclose(results[k], v)
    return results[sel].sort_values("seed").reset_index(drop=True)


COLS = ["coverage_kl", "mean_dist", "com_error", "w1", "phase"]


def test_sweep_members_equal_single_runs_bit_for_bit(tmp_path):
    res, metrics, _ = run_sweep(cfg_with(), tmp_path / "s")
    for g2 in (0.0, 0.5):
        for lr in (0.001, 0.01):
            # engine: eager by name: a config's own run then takes the sweep's engine and padding
            # (under auto a lone run may take a faster engine, equal to rounding: tests/test_lone.py)
            single = gandy.run(C.load_config({**BASE, "sweep": None}, [f"kernel.g2={g2}", f"optim.critic.lr={lr}",
                                                                        "engine=eager"]), figures=False)
            got = _point(res, **{"kernel.g2": g2, "optim.critic.lr": lr})
            pd.testing.assert_frame_equal(got[COLS], single.results[COLS], check_exact=True)


def test_unstable_member_cannot_change_the_others(tmp_path):
    stable = cfg_with(**{"optim.generator.lr": [0.01, 0.02]})
    unstable = cfg_with(**{"optim.generator.lr": [0.01, 0.02, 1.0e6]})
    a, _, _ = run_sweep(stable, tmp_path / "a")
    b, _, _ = run_sweep(unstable, tmp_path / "b")
    assert (b[b["optim.generator.lr"] == 1.0e6].phase == "diverged").all()
    assert (b[b["optim.generator.lr"] == 1.0e6].diverged_step > 0).all()
    keep = b[b["optim.generator.lr"] < 1.0].drop(columns="member").reset_index(drop=True)
    pd.testing.assert_frame_equal(keep, a.drop(columns="member"), check_exact=True)


@pytest.mark.parametrize("bs", [1, 3])
def test_chunk_size_does_not_change_numbers(tmp_path, bs):
    ref, mref, _ = run_sweep(cfg_with(), tmp_path / "ref")
    got, mgot, _ = run_sweep(cfg_with(**{**BASE["sweep"], "batch_size": bs}), tmp_path / "bs")
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    pd.testing.assert_frame_equal(mgot, mref, check_exact=True)


# ----------------------------------------------------------------------------- store
def test_store_columns_and_figures(tmp_path):
    out = tmp_path / "s"
    run_sweep(cfg_with(), out, draw=plot_sweep)
    res = pd.read_parquet(out / "results.parquet")
    met = pd.read_parquet(out / "metrics.parquet")
    for col in ("kernel.g2", "optim.critic.lr", "seed", "coverage_kl", "w1", "phase"):
        assert col in res.columns
    for col in ("kernel.g2", "optim.critic.lr", "seed", "step", "coverage_kl"):
        assert col in met.columns
    assert len(res) == 8 and not res.duplicated(["kernel.g2", "optim.critic.lr", "seed"]).any()
    assert len(met) == 8 * 3  # steps 0, 20, 40
    assert (out / "figures" / "phase_coverage_kl.png").stat().st_size > 5000
    assert yaml.safe_load((out / "config.yaml").read_text())["sweep"]["kernel.g2"] == [0.0, 0.5]


def test_existing_directory_needs_resume_or_force(tmp_path):
    out = tmp_path / "s"
    run_sweep(cfg_with(), out)
    with pytest.raises(C.ConfigError):
        run_sweep(cfg_with(), out)
    with pytest.raises(C.ConfigError) as e:
        run_sweep(cfg_with(**{"kernel.g2": [0.1]}), out, resume=True)
    assert "different" in e.value.message


def test_a_sweep_started_before_a_key_was_added_resumes_and_a_changed_value_does_not(tmp_path):
    """config.yaml written by a gandy without ``metrics.phase_2x`` (the key removed from the stored
    text, as an earlier version wrote it) reads back, with the key's default, to the same config: the
    sweep resumes to the same rows. A stored config with another value is another sweep."""
    out = tmp_path / "s"
    res0, _, _ = run_sweep(cfg_with(), out)
    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["metrics"]["phase_2x"]
    (out / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    res1, _, _ = run_sweep(cfg_with(), out, resume=True)
    pd.testing.assert_frame_equal(res0, res1)
    stored["metrics"]["phase_2x"] = True
    (out / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    with pytest.raises(C.ConfigError, match="different sweep"):
        run_sweep(cfg_with(), out, resume=True)


def test_a_resume_may_change_where_it_runs_but_not_what(tmp_path):
    """``device`` and ``threads`` say where a sweep computes: a sweep started with device cpu and one
    thread (a GPU lease that ended, say, or a sweep from before ``device: auto`` became the default)
    resumes under ``device: auto`` and two threads, keeps its finished chunk, runs the other to the
    same rows, and keeps the config.yaml it was started with. Any other key is another sweep."""
    out = tmp_path / "s"
    d = copy.deepcopy(BASE)
    d["sweep"] = {"kernel.g2": [0.0, 0.5]}
    started = C.load_config({**d, "device": "cpu", "threads": 1})
    res0, _, _ = run_sweep(started, out, workers=2)
    text = (out / "config.yaml").read_text()
    first, second = sorted((out / "chunks").glob("*.results.parquet"))
    second.unlink()  # as if cut off after the first chunk
    kept = first.stat().st_mtime_ns
    res1, _, _ = run_sweep(C.load_config({**d, "device": "auto", "threads": 2}), out, resume=True, workers=2)
    pd.testing.assert_frame_equal(res0, res1)
    assert first.stat().st_mtime_ns == kept and (out / "config.yaml").read_text() == text
    with pytest.raises(C.ConfigError, match="different sweep"):
        run_sweep(C.load_config({**d, "device": "cpu", "threads": 1, "steps": BASE["steps"] + 20}), out, resume=True,
                  workers=2)


def test_phase_grid_statistics_by_hand():
    res = pd.DataFrame({
        "x": [1, 1, 2, 2, 1, 1, 2, 2], "y": [5, 5, 5, 5, 6, 6, 6, 6],
        "coverage_kl": [0.0, 0.2, 0.6, 0.7, 0.1, 0.1, 0.3, 9.0],
        "phase": ["converged", "oscillating", "collapsed", "runaway", "converged", "collapsed", "collapsed", "diverged"],
    })
    g = phase_grid(res, "x", "y", "coverage_kl")
    np.testing.assert_allclose(g["mean"], [[0.1, 0.65], [0.1, 0.3]])  # the diverged 9.0 is not averaged in
    np.testing.assert_allclose(g["split_failed"], [[0.0, 1.0], [0.5, 0.5]])  # collapsed or ran away
    # most common phase, ties to the first in PHASES: converged, collapsed / converged, collapsed
    code = {p: i for i, p in enumerate(PHASES)}
    np.testing.assert_array_equal(g["phase"], [[code["converged"], code["collapsed"]], [code["converged"], code["collapsed"]]])
    np.testing.assert_allclose(g["diverged"], [[0.0, 0.0], [0.0, 0.5]])
    assert np.isnan(g["std"][1, 1])  # one finite seed: no spread


# ----------------------------------------------------------------------------- CLI: kill and resume
def _gandy(*args, **kw):
    exe = Path(sys.executable).with_name("gandy")
    return subprocess.Popen([str(exe), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_then_resume_gives_exactly_the_uninterrupted_rows(tmp_path):
    d = copy.deepcopy(BASE)
    d.update(steps=60, sweep={"kernel.g2": [0.0, 0.2, 0.4, 0.6], "optim.critic.lr": [0.001, 0.01], "batch_size": 2})
    cfg_path = tmp_path / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    ref_dir, out = tmp_path / "ref", tmp_path / "out"
    assert _gandy("run", cfg_path, "--out", ref_dir, "-q").wait(timeout=300) == 0
    proc = _gandy("run", cfg_path, "--out", out, "-q")
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "chunks").glob("*.results.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "chunks").glob("*.results.parquet")))
    assert 2 <= done < 8, "the kill should land mid-sweep (8 chunks of 2 members)"
    assert not (out / "results.parquet").exists()
    res = _gandy("run", cfg_path, "--out", out, "--resume", "-q")
    stdout, stderr = res.communicate(timeout=300)
    assert res.returncode == 0, stderr
    assert f"16 members in 8 chunks; {done} already done" in stdout
    got = pd.read_parquet(out / "results.parquet")
    ref = pd.read_parquet(ref_dir / "results.parquet")
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), pd.read_parquet(ref_dir / "metrics.parquet"), check_exact=True)


def test_cli_sweep_bad_input_exits_2_and_writes_nothing(tmp_path):
    d = copy.deepcopy(BASE)
    d["sweep"] = {"kernel.g2": [0.1, 3.0]}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    proc = _gandy("run", p, "--out", tmp_path / "o", "-q")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().startswith("error: sweep.kernel.g2") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_plot_phase(tmp_path):
    from typer.testing import CliRunner

    from gandy.cli import app

    out = tmp_path / "s"
    run_sweep(cfg_with(), out)
    r = CliRunner().invoke(app, ["plot", "phase", str(out), "--x", "kernel.g2", "--y", "optim.critic.lr", "--color", "w1"])
    assert r.exit_code == 0, r.output
    assert (out / "figures" / "phase_w1.png").exists()
    r = CliRunner().invoke(app, ["plot", "phase", str(out), "--x", "kernel.g2", "--y", "nope"])
    assert r.exit_code == 2


def test_cli_plot_samples_draws_the_kept_final_particles_of_an_image_sweep(tmp_path):
    """One row per member, three images each; a sweep against a point target, or one without kept
    particles, is refused with exit 2."""
    from typer.testing import CliRunner

    from gandy.cli import app
    from gandy.views import plots

    img = C.load_config({"target": {"name": "mnist", "n": 8, "split": "all", "pixels": "standardized", "modes": "points"},
                         "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]}, "steps": 2, "log_every": 1,
                         "seeds": [0], "metrics": {"keep_particles": True}, "sweep": {"kernel.g2": [0.0, 0.5]}})
    out = tmp_path / "img"
    run_sweep(img, out)
    drawn = {}
    real = plots.draw_image_rows
    plots.draw_image_rows = lambda images, labels, colors, path, title: drawn.update(shape=images.shape, labels=labels) or real(
        images, labels, colors, path, title)
    try:
        r = CliRunner().invoke(app, ["plot", "samples", str(out)])
    finally:
        plots.draw_image_rows = real
    assert r.exit_code == 0, r.output
    assert (out / "figures" / "final_samples.png").exists()
    assert drawn["shape"] == (2, 3, 28, 28) and drawn["labels"][1].startswith("g2 0.5")
    points = tmp_path / "pts"
    run_sweep(cfg_with(**{"kernel.g2": [0.1]}), points)
    assert CliRunner().invoke(app, ["plot", "samples", str(points)]).exit_code == 2


# ----------------------------------------------------------------------------- Ray
def test_ray_executor_gives_identical_results(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        cfg = cfg_with(**{**BASE["sweep"], "batch_size": 3})
        a, ma, _ = run_sweep(cfg, tmp_path / "local")
        b, mb, s = run_sweep(cfg, tmp_path / "ray", executor="ray")
        assert s["sweep"]["executor"] == "ray" and s["sweep"]["chunks"] == 3
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    finally:
        ray.shutdown()


def test_kept_final_particles_are_every_members_full_cloud(tmp_path):
    """metrics.keep_particles: every member's final particles, in member order across chunks, whose
    norms give results.parquet's mean_norm (the same particles the order parameters saw)."""
    d = copy.deepcopy(BASE)
    d["sweep"] = {"kernel.g2": [0.0, 0.2, 0.5], "batch_size": 2}
    d["metrics"] = {**d.get("metrics", {}), "keep_particles": True}
    res, _, _ = run_sweep(C.load_config(d), tmp_path / "s")
    members, x = final_particles(tmp_path / "s")
    assert len(list((tmp_path / "s" / "chunks").glob("*.final.npz"))) >= 2  # several chunks, merged
    assert members.tolist() == sorted(res.member.tolist())
    assert x.shape == (len(res), C.load_config(d).particles.n, 1)
    norms = np.linalg.norm(x, axis=-1).mean(-1)
    np.testing.assert_allclose(norms, res.sort_values("member").mean_norm.to_numpy(), rtol=1e-5)
    with pytest.raises(FileNotFoundError):
        final_particles(tmp_path / "missing")


def test_resume_with_another_cut_into_chunks_keeps_the_finished_chunks_and_runs_every_other_member_once(tmp_path):
    """A sweep cut by workers=2 and cut off after its first chunk, resumed with workers=1 (or on a
    device whose chunks are another size): the finished chunk is kept as stored, the members it does
    not hold are cut afresh and run once each, and the rows are those of the uninterrupted sweep."""
    cfg = cfg_with()
    whole, _, _ = run_sweep(cfg, tmp_path / "whole")
    out = tmp_path / "s"
    run_sweep(cfg, out, workers=2)
    first, *rest = sorted((out / "chunks").glob("*.results.parquet"))
    for f in rest:
        f.unlink()  # as if killed after the first chunk
    kept, held = first.stat().st_mtime_ns, sorted(pd.read_parquet(first).member)
    res, _, s = run_sweep(cfg, out, resume=True, workers=1)
    assert first.stat().st_mtime_ns == kept
    assert sorted(res.member) == list(range(len(expand(cfg)[1])))  # every member once
    assert s["sweep"]["chunks"] == 2 and held != sorted(res.member)
    pd.testing.assert_frame_equal(res.sort_values("member").reset_index(drop=True),
                                  whole.sort_values("member").reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("raw, field, message", [
    ({"x": [1], "batch_size": "big"}, "sweep.batch_size", "must be a positive integer or auto"),
    ({"x": [], "y": 3}, "sweep.x", "needs at least one value"),
    ({"x": 3}, "sweep.x", "expected a list, {linspace: ...} or {logspace: ...}"),
    ({"x": {"linspace": [0, 1]}}, "sweep.x", "expected a list, {linspace: [a, b], num: n} or {logspace: [a, b], num: n}"),
    ({"x": {"logspace": [1], "num": 2}}, "sweep.x", "logspace needs two numbers [a, b]"),
    ({"x": {"linspace": [0, 1], "num": 2.0}}, "sweep.x", "num must be a positive integer"),
    ({"x": {"linspace": [0, 1], "num": 2_000_000}}, "sweep.x", "num 2,000,000 is more values than a sweep's 1,000,000 members"),
    ({"x": {"logspace": [0, 1], "num": 3}}, "sweep.x", "logspace endpoints are values and must be > 0"),
    ({"seeds": [1, 2], "x": [1]}, "sweep.seeds", "seeds are crossed with the grid already; list them under seeds"),
    ({"kernel": {"g2": "x"}}, "sweep.kernel.g2", "expected a list, {linspace: ...} or {logspace: ...}"),
])
def test_sweep_grammar_refusals_word_for_word(raw, field, message):
    """The grammar's refusals: batch_size first, then each axis in the order written (nested
    sections as dotted keys), then the reserved seeds, each with its field and words."""
    with pytest.raises(C.ConfigError) as e:
        parse_sweep(raw)
    assert (e.value.field, e.value.message) == (field, message)


def test_yaml_number_strings_are_numbers_in_a_list_axis():
    axes, _ = parse_sweep({"x": ["1e-05", "1.5e-04", "2e-3"], "y": ["relu", "1e-x"]})
    assert axes[0].values == (1e-05, 1.5e-04, 2e-3) and axes[1].values == ("relu", "1e-x")


def test_colour_image_samples_are_drawn_in_colour(tmp_path):
    """Color MNIST panels keep their three channels (they were averaged to grey): the drawn
    array is RGB and the PNG holds pixels whose channels differ."""
    import matplotlib.image as mpimg

    from gandy.views import plots

    cfg = C.load_config({"target": {"name": "color_mnist"}, "particles": {"n": 6},
                         "critic": {"name": "mlp", "widths": [8]}, "steps": 2, "log_every": 1, "seeds": [0],
                         "metrics": {"keep_particles": True}, "sweep": {"kernel.g2": [0.0, 0.5]}})
    out = tmp_path / "colour"
    run_sweep(cfg, out)
    drawn = {}
    real = plots.draw_image_rows
    plots.draw_image_rows = lambda images, *a: drawn.update(shape=images.shape) or real(images, *a)
    try:
        path = plots.plot_final_samples(out)
    finally:
        plots.draw_image_rows = real
    assert drawn["shape"] == (2, 3, 28, 28, 3)
    png = mpimg.imread(path)[..., :3]
    assert (png.max(-1) - png.min(-1) > 0.05).mean() > 0.05  # coloured noise (grey panels: 0 everywhere)


@pytest.mark.parametrize("values, recorded, log", [
    ([1e-4, 1e-2], "linear", True),       # two learning rates: log, whatever the count
    ([0.2, 0.5], "linear", False),        # a span under 3x stays linear
    ([0.0, 0.5, 0.9], "linear", False),   # zero on the grid: linear
    ([1.0, 1.2, 1.44], "log", True),      # a log axis as recorded stays log
    ([1.0, 2.0, 3.0, 4.0, 5.0], "linear", True),  # positive, spanning 5x
])
def test_positive_grids_spanning_more_than_3x_are_drawn_on_log_axes(values, recorded, log):
    from gandy.views.plots import is_log_axis

    summary = {"sweep": {"axes": [{"key": "k", "values": values, "scale": recorded}]}}
    assert is_log_axis(summary, "k", np.array(values)) is log


def test_a_two_value_learning_rate_sweep_is_drawn_on_a_log_axis(tmp_path, monkeypatch):
    """plot_phase of a sweep over two critic learning rates: the x axis is logarithmic (it was
    linear, reaching below zero)."""
    from gandy.views import plots

    cfg = C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                         "steps": 4, "log_every": 2, "seeds": [0],
                         "sweep": {"optim.critic.lr": [1e-4, 1e-2], "kernel.g2": [0.1, 0.5]}})
    run_sweep(cfg, tmp_path / "s")
    seen = {}
    real = plots.save_figure

    def spy(fig, path):
        seen["scales"] = [ax.get_xscale() for ax in fig.axes]
        seen["lims"] = [ax.get_xlim() for ax in fig.axes if ax.get_xscale() == "log"]
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", spy)
    plots.plot_phase(tmp_path / "s", "optim.critic.lr", "kernel.g2", "coverage_kl")
    assert "log" in seen["scales"] and all(lo > 0 for lo, _ in seen["lims"])


def test_watch_reads_a_sweep_while_it_runs(tmp_path, hold_at):
    """A sweep held at step 30 of 60 in another thread: its live rows (chunks/ID.live.jsonl) are
    there, and ``gandy watch`` prints every member at its last log so far; once it finishes, the
    live file is gone and watch reads the stored tables (the same numbers at the same step)."""
    import threading

    from typer.testing import CliRunner

    from gandy.cli import app

    cfg = C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                         "steps": 60, "log_every": 10, "seeds": [0, 1], "sweep": {"kernel.g2": [0.1, 0.5]}})
    held, go = hold_at(30)
    out = tmp_path / "s"
    worker = threading.Thread(target=run_sweep, args=(cfg, out), kwargs={"checkpoint_steps": 1000})
    worker.start()
    try:
        assert held.wait(60)
        live = list((out / "chunks").glob("*.live.jsonl"))
        assert live
        # the step-30 log may still be measured on the log's worker thread (loop.Background): wait
        # for its rows, as a user's next look would see them
        from gandy.runs.store import latest_rows

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (len(rows := latest_rows(out)[0]) == 4 and (rows.step == 30).all()):
            time.sleep(0.05)
        r = CliRunner().invoke(app, ["watch", str(out)])
        assert r.exit_code == 0, r.output
        assert f"running (process {os.getpid()}); chunks stored 0, running 1; 4 members logged" in r.output
        rows = [line.split() for line in r.output.splitlines()[2:]]
        assert len(rows) == 4 and {row[3] for row in rows} == {"30"}  # member, g2, seed, step: at its last log
        # a copy of the folder as it is now is a sweep cut off: no process writes it
        shutil.copytree(out, tmp_path / "cut")
        r = CliRunner().invoke(app, ["watch", str(tmp_path / "cut")])
        assert r.exit_code == 0 and "stopped before the end (no gandy process is writing it; --resume continues it); " \
            "chunks stored 0, cut off 1; 4 members logged" in r.output, r.output
    finally:
        go.set()
        worker.join(60)
    assert not list((out / "chunks").glob("*.live.jsonl"))
    r = CliRunner().invoke(app, ["watch", str(out), "--columns", "w1"])
    assert r.exit_code == 0 and "finished" in r.output and {line.split()[3] for line in r.output.splitlines()[2:]} == {"60"}
    assert CliRunner().invoke(app, ["watch", str(out), "--columns", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["watch", str(tmp_path)]).exit_code == 2


def test_watch_reads_an_experiments_parts(tmp_path, hold_at):
    """``gandy watch`` of an experiment's folder (a study's): a line per sweep inside it, nested
    folders included, a finished one and one held at step 30 of 60 (its chunks stored and running);
    the experiment is stopped while no process holds its own lock, and finished with its summary."""
    import threading

    from typer.testing import CliRunner

    from gandy.cli import app
    from gandy.runs.outputs import open_output, release

    exp = tmp_path / "exp"
    open_output(exp, "experiment")
    cfg = C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                         "steps": 60, "log_every": 10, "seeds": [0, 1], "sweep": {"kernel.g2": [0.1, 0.5]}})
    run_sweep(cfg, exp / "grid" / "a")
    held, go = hold_at(30)
    worker = threading.Thread(target=run_sweep, args=(cfg, exp / "b"), kwargs={"checkpoint_steps": 1000})
    worker.start()
    try:
        assert held.wait(60)
        r = CliRunner().invoke(app, ["watch", str(exp)])
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        # this process claimed the experiment's folder (open_output holds its lock, as a study does)
        assert lines[0] == f"{exp}: an experiment, running (process {os.getpid()}); 1 of 2 parts begun so far finished"
        assert lines[1].startswith("  b: chunks stored 0, running 1; ") and lines[2] == "  grid/a: finished; 4 members logged"
        release(exp)
        r = CliRunner().invoke(app, ["watch", str(exp)])
        assert r.output.splitlines()[0] == f"{exp}: an experiment, stopped before the end (no gandy process is writing " \
                                           "it; --resume continues it); 1 of 2 parts begun so far finished"
    finally:
        go.set()
        worker.join(60)
    (exp / "summary.json").write_text("{}")
    r = CliRunner().invoke(app, ["watch", str(exp), "--follow", "0.1"])  # finished: returns at once
    assert r.exit_code == 0 and r.output.splitlines() == [f"{exp}: an experiment, finished; 2 of 2 parts begun so far finished",
                                                          "  b: finished; 4 members logged", "  grid/a: finished; 4 members logged"]


def test_watch_lists_the_parts_a_study_planned_and_has_not_begun(tmp_path):
    """A study that lists its parts when it opens (parts.json) has every part watched in its own
    order, those not begun yet said so, and the count out of all of them; a part begun but not
    listed comes after; a damaged parts.json is refused naming it; a part path outside the folder
    is refused before anything is written."""
    from typer.testing import CliRunner

    from gandy.cli import app
    from gandy.runs.store import planned_parts, write_planned_parts
    from gandy.studies.base import StudyOptions, open_study

    exp = tmp_path / "exp"
    open_study(exp, StudyOptions(), parts=["zeta", "grid/a", "b", "x/y/z"])
    assert planned_parts(exp) == ["zeta", "grid/a", "b", "x/y/z"] and planned_parts(tmp_path) is None
    cfg = C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                         "steps": 20, "log_every": 10, "seeds": [0], "sweep": {"kernel.g2": [0.1, 0.5]}})
    run_sweep(cfg, exp / "grid" / "a")
    run_sweep(cfg, exp / "extra")
    run_sweep(cfg, exp / "x" / "y" / "z")  # deeper than an unlisted part is looked for
    r = CliRunner().invoke(app, ["watch", str(exp)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [f"{exp}: an experiment, running (process {os.getpid()}); 3 of 5 parts finished",
                                     "  zeta: not begun", "  grid/a: finished; 2 members logged", "  b: not begun",
                                     "  x/y/z: finished; 2 members logged", "  extra: finished; 2 members logged"]
    for damaged in ('{"parts": "b"}', '["b"]', '{"parts": ["../b"]}', '{"parts": [1]}', "{"):
        (exp / "parts.json").write_text(damaged)
        r = CliRunner().invoke(app, ["watch", str(exp)])
        assert r.exit_code == 2 and "parts.json" in r.output, (damaged, r.output)
    for bad in (["../x"], ["/abs"], [""]):
        with pytest.raises(ValueError, match="relative paths"):
            write_planned_parts(tmp_path / "other", bad)
    assert not (tmp_path / "other").exists()


def test_one_dimensional_runs_draw_no_mean_abs_cos_panel(tmp_path, monkeypatch):
    """mean |cos| is 1 for every pair of points on the line: its panel is left out in 1-D, kept in 2-D."""
    from gandy.views import plots

    labels = {}
    real = plots.save_figure

    def spy(fig, path):
        labels[Path(path).name] = [ax.get_ylabel() for ax in fig.axes]
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", spy)
    for target, d in (("two_modes_1d", 1), ("ring8", 2)):
        gandy.run({"target": {"name": target}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                   "steps": 4, "log_every": 2, "seeds": [0]}, out=tmp_path / target)
        assert (plots.LABELS["mean_abs_cos"] in labels["order_parameters.png"]) is (d == 2)


def test_swept_keys_are_labelled_in_words_with_the_key_beneath():
    from gandy.views.plots import axis_label

    assert axis_label("optim.critic.lr") == "critic learning rate\noptim.critic.lr"
    assert axis_label("kernel.g2").startswith("g2/g1") and axis_label("kernel.g2").endswith("\nkernel.g2")
    assert axis_label("target.std") == "target.std"  # a key without words: the key alone
