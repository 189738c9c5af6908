"""Network generators in the same loop as the particles (GAN lab groundwork)."""

from __future__ import annotations

import math

import pytest
import torch

import gandy
from gandy.core.step import advance, start
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.studies.base import StudyOptions

LINES = {"target": {"name": "parallel_lines"}, "generator": {"name": "affine", "init_offset": 1.0},
         "objective": "ns", "penalty": None, "critic": {"name": "mlp", "widths": [64]},
         "optim": {"critic": {"name": "adam", "lr": 1e-3}, "generator": {"name": "adam", "lr": 1e-2}},
         "batch_size": 128, "particles": {"n": 64}, "steps": 300, "log_every": 50, "seeds": [0, 1]}


def test_affine_generator_starts_as_the_data_segment_moved_by_the_offset():
    sim = build(C.load_config(LINES, ["generator.init_offset=0.7"]))
    st = start(sim, [0, 1])
    torch.testing.assert_close(st.gen["a"], torch.tensor([[0.0, 1.0]] * 2))
    torch.testing.assert_close(st.gen["b"], torch.tensor([[0.7, 0.0]] * 2))
    assert torch.allclose(st.x[..., 0], torch.full_like(st.x[..., 0], 0.7))  # G(z) on the line x1 = 0.7


def test_non_saturating_game_moves_the_disjoint_generator_onto_the_data():
    """Fedus et al.'s first claim, with a real (affine) generator: JS is log 2 for every offset,
    yet the ns game's generator moves onto the data segment."""
    res = gandy.run(LINES, figures=False)
    first = res.metrics[res.metrics.step == 0].w1.to_numpy()
    last = res.metrics[res.metrics.step == 300].w1.to_numpy()
    assert (first > 0.95).all() and (last < 0.7 * first).all()


def test_mlp_generator_trains_its_parameters_and_is_deterministic():
    over = ["generator={name: mlp, latent_dim: 2, widths: [16]}", "critic.widths=[16]", "steps=20",
            "optim.generator={name: adam, lr: 0.001}", "particles.n=32", "seeds=[0, 1]"]
    sim = build(C.load_config(None, over))
    st = start(sim, [0, 1])
    g0 = {k: v.clone() for k, v in st.gen.items()}
    for _ in range(5):
        advance(sim, st)
    assert all(not torch.equal(g0[k], st.gen[k]) for k in g0)
    assert st.x.shape == (2, 32, 1)
    a, b = gandy.run(None, overrides=over, figures=False), gandy.run(None, overrides=over, figures=False)
    assert a.metrics.drop(columns="mode_hist").equals(b.metrics.drop(columns="mode_hist"))


def test_generator_members_are_independent_of_their_batch():
    """Under engine: eager a member's numbers are bit for bit those it has alone (padded to two);
    under auto a lone member runs alone, the same numbers to rounding."""
    over = ["generator={name: mlp, latent_dim: 2, widths: [16]}", "critic.widths=[16]", "steps=10", "engine=eager",
            "optim.generator={name: adam, lr: 0.001}", "particles.n=16"]
    alone = gandy.run(None, overrides=over + ["seeds=[3]"], figures=False).results
    inside = gandy.run(None, overrides=over + ["seeds=[1, 3, 5]"], figures=False).results
    assert inside[inside.seed == 3].w1.item() == alone.w1.item()
    unpadded = gandy.run(None, overrides=[o for o in over if o != "engine=eager"] + ["seeds=[3]"], figures=False)
    assert unpadded.summary["engine"] in ("eager", "closed_form")  # a one-hidden-layer critic: the closed form
    assert unpadded.results.w1.item() == pytest.approx(alone.w1.item(), rel=1e-4)


@pytest.mark.parametrize("over, field", [
    (["generator={name: affine}"], "generator.name"),  # the default target is no segment
    (["optim.generator.name=adam"], "optim.generator.name"),  # particles take the kernel step
])
def test_generator_bad_input(over, field):
    with pytest.raises(C.ConfigError) as e:
        build(C.load_config(None, over))
    assert e.value.field == field


def test_divergences_tracked_every_log_with_their_methods():

    res = gandy.run(LINES, figures=False)
    m = res.metrics
    assert (m.js == math.log(2)).all() and (m.kl_pq == math.inf).all() and (m.kl_qp == math.inf).all()
    assert res.summary["divergences"]["js"] == "exact:segments"
    first, last = m[m.step == 0].w1.to_numpy(), m[m.step == 300].w1.to_numpy()
    assert (last < 0.7 * first).all()  # W1 falls while JS gives no signal
    assert (m.mmd.notna()).all()


def test_particle_runs_track_divergences_only_when_asked():
    over = ["steps=20", "log_every=10", "particles.n=32", "critic.widths=[16]", "seeds=[0, 1]"]
    off = gandy.run(None, overrides=over, figures=False)
    assert "js" not in off.metrics.columns and off.summary["divergences"] is None
    on = gandy.run(None, overrides=over + ["metrics.divergences=true"], figures=False)
    for col in ("js", "kl_pq", "kl_qp", "mmd", "high_quality_fraction"):
        assert col in on.metrics.columns
    assert on.summary["divergences"]["js"] == "estimate:knn, s.e. by half_sampling(20 halves, delete-d jackknife)"
    assert (on.metrics.high_quality_fraction == on.metrics.on_mode).all()
    assert ((on.metrics.js >= 0) & (on.metrics.js <= math.log(2))).all()  # the k-NN JS is clipped to its range


@pytest.mark.slow
def test_many_paths_experiment_writes_its_tables_and_figures(tmp_path):
    from gandy.studies.many_paths.experiment import GAMES_RUN, run

    figs = run(tmp_path / "mp", StudyOptions(quick=True, overrides=["steps=40"], progress=False, echo=lambda s: None))
    assert len(figs) == 5 and all(f.stat().st_size > 5000 for f in figs)
    import pandas as pd

    inc = pd.read_parquet(tmp_path / "mp" / "increases.parquet")
    assert len(inc) == 2 * len(GAMES_RUN)
    assert inc[inc.target == "parallel_lines"].increased_js.eq(0).all()  # JS is log 2 throughout
    assert (inc.final_w1_n == 2).all() and ((inc.final_w1_lo <= inc.final_w1) & (inc.final_w1 <= inc.final_w1_hi)).all()


RING = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [16]}", "critic.widths=[16]",
        "objective=ns", "batch_size=32", "particles.n=24", "seeds=[0, 1]"]


def test_the_view_is_computed_when_read_and_is_the_generator_at_fixed_latents():
    """points(): after steps the fixed-latent view is G(z_view) of the current generator, computed
    on reading (the loop does not pay a forward pass per step for it)."""
    from gandy.core.step import points

    sim = build(C.load_config(None, RING))
    st = start(sim, [0, 1])
    x0 = st.x.clone()
    for _ in range(3):
        advance(sim, st)
    assert st.x_at == 0 and torch.equal(st.x, x0)  # not recomputed by the steps
    x = points(sim, st)
    assert st.x_at == 3 and torch.equal(x, sim.generator.forward(st.gen, st.z_view))
    assert not torch.equal(x, x0)


def test_a_generator_whose_samples_blow_up_is_labelled_at_that_step():
    """The divergence check reads the batch drawn as the step ends (the generator's samples at its
    new parameters): a member whose output bias is pushed past phase.blowup during step 3 is
    frozen at step 3; the other member runs on."""
    from gandy.core import step as S

    sim = build(C.load_config(None, RING))
    st = start(sim, [0, 1])
    real = S.generator_update

    def poisoned(sim_, st_, critic_params):
        real(sim_, st_, critic_params)
        if st_.t == 2:  # during the third step
            st_.gen = {**st_.gen, "b1": st_.gen["b1"] + torch.tensor([[0.0, 0.0], [1e7, 0.0]])}

    S.generator_update, saved = poisoned, S.generator_update
    try:
        for _ in range(5):
            advance(sim, st)
    finally:
        S.generator_update = saved
    assert st.diverged_step.tolist() == [-1, 3] and st.alive.tolist() == [True, False]


def test_a_generator_sweep_killed_midway_resumes_to_the_same_rows(tmp_path, kill_and_resume):
    """Checkpoints hold the generator's next batch and its view's step: killed at step 47 after
    saves every 20 steps, resumed, the tables equal an uninterrupted run's bit for bit."""
    cfg = C.load_config(None, [*RING, "steps=60", "log_every=10", "metrics.divergences=true",
                               "sweep={optim.critic.lr: [0.001, 0.003]}"])
    assert kill_and_resume(cfg, tmp_path, 47, 20) == 60 - 40  # resumed from the save at step 40
