"""The effective model's physics: kernel coupling, the mode-collapse mechanism, docs coverage."""

import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

import gandy
from gandy.core.kernels import Dense
from gandy.core.metrics.phases import PHASES
from gandy.core.step import advance, start
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.studies.demo.experiment import demo_config

ROOT = Path(__file__).resolve().parents[1]


def test_particle_step_is_lr_times_kernel_times_force():
    """One step with a fixed critic moves X by exactly lr K F, F = grad f for ipm."""
    cfg = C.load_config(None, ["particles.n=8", "critic.widths=[16]", "seeds=[0]", "optim.generator.lr=0.01",
                               "kernel.g2=0.4", "optim.order=simultaneous"])
    sim = build(cfg)
    st = start(sim, [0])
    x0 = st.x.clone()
    p0 = {k: v.clone() for k, v in st.params.items()}
    xg = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sim.critic.forward(p0, xg).sum(), xg)
    advance(sim, st)
    k = sim.kernel.dense()
    assert torch.allclose(st.x - x0, 0.01 * (k @ grad[0])[None], atol=1e-6)


def test_two_number_and_dense_kernels_give_the_same_run():
    over = ["particles.n=16", "critic.widths=[32]", "steps=40", "seeds=[3]", "kernel.g2=0.2"]
    sim_a = build(C.load_config(None, over))
    sim_b = build(C.load_config(None, over))
    sim_b.kernel = Dense(sim_a.kernel.dense())
    a, b = start(sim_a, [3]), start(sim_b, [3])
    for _ in range(40):
        advance(sim_a, a)
        advance(sim_b, b)
    assert torch.allclose(a.x, b.x, atol=1e-4)


def test_centre_of_mass_only_moves_when_g2_is_one():
    """g1 = g2: K = g J moves every particle by the same vector, so shapes never change."""
    cfg = C.load_config(None, ["particles.n=10", "critic.widths=[16]", "kernel.g1=0.1", "kernel.g2=0.1", "seeds=[0]"])
    sim = build(cfg)
    st = start(sim, [0])
    x0 = st.x.clone()
    for _ in range(20):
        advance(sim, st)
    shift = st.x - x0
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)
    assert float(shift.abs().max()) > 1e-3


@pytest.mark.parametrize("ratio, expect", [(0.01, "split"), (0.9, "collapse")])
def test_mode_collapse_appears_at_large_g2_over_g1(ratio, expect):
    """The demo's mechanism: small g2/g1 splits the cloud over both modes, g2/g1 near 1 collapses it."""
    res = gandy.run(demo_config(), overrides=[f"kernel.g2={ratio}", "steps=2500", "seeds=[0,1]", "log_every=50"],
                    figures=False)
    late = res.metrics[res.metrics.step >= 1900]
    if expect == "split":
        assert (late.coverage_kl < 0.05).all()
        assert (res.results.modes_covered == 2).all()
        assert (res.results.phase != "collapsed").all()
    else:
        assert late.coverage_kl.mean() > 0.6  # log 2 = 0.69: one mode at a time
        assert (res.results.phase == "collapsed").all()


def _sections(annotation):
    """Every config Section class inside a (possibly Annotated / Union / Optional) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, C.Section):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _sections(arg)


def test_every_config_field_is_documented():
    text = (ROOT / "docs" / "config.md").read_text()
    missing, seen = [], set()

    def walk(model):
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            if name != "name" and not re.search(rf"`{name}`|\b{name}:", text):
                missing.append(f"{model.__name__}.{name}")
            for sub in _sections(f.annotation):
                walk(sub)

    walk(C.Config)
    assert len(seen) > 20  # every target, kernel, critic, init and section model was visited
    assert not missing, missing


def test_default_config_runs_and_phases_are_known():
    res = gandy.run(None, overrides=["steps=30", "log_every=10", "particles.n=16", "critic.widths=[16]"], figures=False)
    assert set(res.results.phase) <= set(PHASES)
    assert len(res.results) == 3 and np.isfinite(res.results.w1).all()


@pytest.mark.slow
def test_gandy_demo_command_splits_then_collapses(tmp_path):
    """The README's first command: `gandy demo` writes its figures and shows both phases."""
    from typer.testing import CliRunner

    from gandy.cli import app

    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "-q"])
    assert res.exit_code == 0, res.output
    small = gandy.load_run(tmp_path / "demo" / "small_ratio").results
    large = gandy.load_run(tmp_path / "demo" / "large_ratio").results
    assert (small.phase == "converged").all() and (small.modes_covered == 2).all()
    assert (large.phase == "collapsed").all()
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 10_000
    res = __import__("pandas").read_parquet(tmp_path / "demo" / "phase" / "results.parquet")
    assert len(res) == 36 and (tmp_path / "demo" / "phase" / "figures" / "phase_coverage_kl.png").exists()
    low, high = res[res["kernel.g2"] < 0.01], res[res["kernel.g2"] > 0.4]
    assert (high.phase == "collapsed").all() and not (low.phase == "collapsed").any()
