"""The engines (config key ``engine``): the closed form's gradients against autograd in float64,
whole runs of every engine against the eager reference, the choice ``auto`` makes, the optimiser's
fused step, and what reproducibility holds (docs/architecture.md, "Engines")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gandy
from gandy.core.closed_form import ClosedForm
from gandy.core.errors import ConfigError
from gandy.core.nets.base import ACTIVATION_DERIVATIVES, ACTIVATIONS
from gandy.core.objectives import PENALTIES, SQUARED_GRADIENT, input_grad
from gandy.core.optim import BatchedOptimizer
from gandy.core.step import advance, critic_loss, start
from gandy.runs import config as C
from gandy.runs.build import build, choose_engine, optim_spec
from gandy.runs.members import member_values
from gandy.runs.plan import plan
from gandy.runs.sweep import run_sweep

TINY = {"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
        "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.3}, "optim": {"generator": {"lr": 0.05}},
        "penalty": {"name": "sobolev", "weight": 1.0}, "steps": 3, "seeds": [0, 1]}
D64 = torch.float64


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_equal_autograd(name):
    assert set(ACTIVATION_DERIVATIVES) == set(ACTIVATIONS)
    z = torch.linspace(-3, 3, 61, dtype=D64)
    z = z[(z.abs() > 1e-3)].requires_grad_(True)  # away from the kink of the piecewise-linear ones
    (d1,) = torch.autograd.grad(ACTIVATIONS[name](z).sum(), z, create_graph=True)
    d1_hand, d2_hand = ACTIVATION_DERIVATIVES[name]
    torch.testing.assert_close(d1_hand(z.detach()), d1.detach())
    if d1.requires_grad:
        (d2,) = torch.autograd.grad(d1.sum(), z)
    else:
        d2 = torch.zeros_like(z)
    torch.testing.assert_close(torch.zeros_like(z) if d2_hand is None else d2_hand(z.detach()), d2)


@pytest.mark.parametrize("name", sorted(SQUARED_GRADIENT))
def test_squared_gradient_table_describes_each_penalty(name):
    """coef * mean |grad f|^2 on the named side differs from the penalty by a constant only."""
    side, coef = SQUARED_GRADIENT[name]
    sim = build(C.load_config(TINY, [f"penalty.name={name}"]))
    real, fake = torch.randn(2, 7, 1), torch.randn(2, 5, 1)
    gaps = []
    for seed in (0, 1):
        params = sim.critic.init(start(sim, [seed, seed + 2]).streams["critic"], 2)
        pen = PENALTIES[name](sim.critic.forward, params, real, fake, None, sim.penalty_spec)
        g = input_grad(sim.critic.forward, params, fake if side == "fake" else real)
        gaps.append(pen - coef * (g * g).sum(-1).mean(-1))
    torch.testing.assert_close(gaps[0], gaps[1])


def _float64_case(over):
    sim = build(C.load_config(TINY, [*over, "engine=closed_form", "critic.widths=[6]", "target.embed_dim=3"]))
    st = start(sim, [0, 1])
    params = {k: v.to(D64) for k, v in st.params.items()}
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 7, 3, generator=gen, dtype=D64), torch.randn(2, 5, 3, generator=gen, dtype=D64)
    return sim, params, real, fake, torch.tensor([0.7, 2.0], dtype=D64)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("penalty", ["none", *sorted(SQUARED_GRADIENT)])
def test_closed_form_critic_gradients_equal_autograd(activation, penalty):
    sim, params, real, fake, w = _float64_case([f"critic.activation={activation}", f"penalty.name={penalty}"])
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = critic_loss(sim, train, real, fake, None, w)
    expect = torch.autograd.grad(loss.sum(), list(train.values()))
    got = ClosedForm(sim).critic_grads(params, list(params), real, fake, w)
    for k, e, g in zip(params, expect, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12, msg=k)


@pytest.mark.parametrize("objective", ["ipm", "ns", "mm", "ls", "hinge"])
def test_closed_form_takes_any_game_and_its_force(objective):
    sim, params, real, fake, w = _float64_case([f"objective={objective}", "critic.activation=tanh"])
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    expect = torch.autograd.grad(critic_loss(sim, train, real, fake, None, w).sum(), list(train.values()))
    for e, g in zip(expect, ClosedForm(sim).critic_grads(params, list(params), real, fake, w)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    x = fake.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(sim.game.gen_loss(sim.critic.forward(params, x)).sum(), x)
    torch.testing.assert_close(ClosedForm(sim).loss_grad(params, fake), gx)


def _deep_case(activation, penalty, reduce, widths, dropout, objective="ipm"):
    """A float64 case of the layer-by-layer closed form: a piecewise-linear MLP of ``widths`` with
    dropout masks drawn from the run's stream (none where ``dropout`` is 0)."""
    pen = "penalty.name=none" if penalty == "none" else f"penalty={{name: {penalty}, weight: 1.0, reduce: {reduce}}}"
    sim = build(C.load_config(TINY, [f"critic={{name: mlp, widths: {widths}, activation: {activation}, "
                                     f"dropout: {dropout}}}", pen, f"objective={objective}", "engine=closed_form",
                                     "target.embed_dim=3"]))
    st = start(sim, [0, 1])
    params = {k: v.to(D64) for k, v in st.params.items()}
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(2, 7, 3, generator=gen, dtype=D64), torch.randn(2, 5, 3, generator=gen, dtype=D64)
    masks = tuple(None if m is None else m.to(D64) for m in (sim.critic.mask(st.streams["dropout"], 7),
                                                              sim.critic.mask(st.streams["dropout"], 5)))
    return sim, params, real, fake, torch.tensor([0.7, 2.0], dtype=D64), masks


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("penalty, reduce", [("none", "per_point"), ("sobolev", "per_point"), ("sobolev", "batch_mean"),
                                             ("r1", "batch_mean"), ("r2", "per_point")])
@pytest.mark.parametrize("widths, dropout", [("[6, 7, 5]", 0.3), ("[6, 5]", 0.0), ("[6]", 0.2), ("[4, 9, 3, 5]", 0.5)])
def test_deep_closed_form_critic_gradients_equal_autograd(activation, penalty, reduce, widths, dropout):
    """Piecewise-linear critics of any depth, with dropout: the layer-by-layer closed form against
    autograd's double backward through the same masked network, in float64."""
    sim, params, real, fake, w, masks = _deep_case(activation, penalty, reduce, widths, dropout)
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = critic_loss(sim, train, real, fake, None, w, masks=masks)
    expect = torch.autograd.grad(loss.sum(), list(train.values()))
    closed = ClosedForm(sim)
    assert closed.deep
    got = closed.critic_grads(params, list(params), real, fake, w, masks)
    for k, e, g in zip(params, expect, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12, msg=k)
    if dropout:  # the masks matter: without them the gradients differ
        unmasked = closed.critic_grads(params, list(params), real, fake, w)
        assert not all(torch.allclose(a, b) for a, b in zip(unmasked, got))


@pytest.mark.parametrize("objective", ["ns", "ls", "hinge"])
def test_deep_closed_form_takes_any_game_and_its_force(objective):
    sim, params, real, fake, w, masks = _deep_case("leaky_relu", "sobolev", "batch_mean", "[6, 7, 5]", 0.3, objective)
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    expect = torch.autograd.grad(critic_loss(sim, train, real, fake, None, w, masks=masks).sum(), list(train.values()))
    for e, g in zip(expect, ClosedForm(sim).critic_grads(params, list(params), real, fake, w, masks)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    x = fake.clone().requires_grad_(True)  # the force: the critic in eval mode (no mask)
    (gx,) = torch.autograd.grad(sim.game.gen_loss(sim.critic.forward(params, x)).sum(), x)
    torch.testing.assert_close(ClosedForm(sim).loss_grad(params, fake), gx, rtol=1e-10, atol=1e-12)


MNIST_LIKE = ["target.embed_dim=64", "critic={name: mlp, widths: [8, 32, 8], dropout: 0.2}",
              "penalty={name: sobolev, weight: 1.25, reduce: batch_mean}",
              "optim.critic={name: adam, lr: 0.001, weight_decay: 0.0001, steps: 5, startup_steps: 20, reset: true, "
              "amsgrad: true}", "particles.init={name: gaussian, std: 0.3}"]
"""The mnist-collapse critic's structure, small: a wide input, three hidden layers, dropout after
the second, the batch-mean penalty, amsgrad Adam re-created at every particle step."""


@pytest.mark.parametrize("engine", ["closed_form", "compiled"])
@pytest.mark.parametrize("members", [1, 3])
def test_deep_dropout_critic_runs_agree_with_eager(engine, members):
    """The compiled engine compiles the layer-by-layer closed form at d >= compiled.WIDE; a lone
    member runs unpadded under both engines (simulate's rule): its particles after 10 steps equal
    the eager reference's (padded to two members, as simulate runs it) to rounding."""
    out = {}
    for e in ("eager", engine):
        sim = build(C.load_config(TINY, [*MNIST_LIKE, f"engine={e}"]), members=members)
        assert e == "eager" or sim.engine.name == e
        if e == "compiled":  # the compiled closed form, not torch.func's vmap(grad)
            assert "critic_grads" in vars(sim.engine)
        seeds = [0, 1] if e == "eager" and members == 1 else list(range(members))
        st = start(sim, seeds)
        for _ in range(10):
            advance(sim, st)
        out[e] = st.x[:members]
    torch.testing.assert_close(out[engine], out["eager"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("over, words", [(["critic.widths=[8, 8]", "critic.activation=tanh"], "piecewise-linear"),
                                         (["critic.dropout=0.2", "critic.activation=gelu"], "piecewise-linear"),
                                         (["critic={name: rbf}"], "an MLP critic"),
                                         (["penalty.name=wgan_gp"], "penalties none, sobolev, r1, r2"),
                                         (["penalty.on=probability"], "on the logit")])
def test_closed_form_refuses_what_it_does_not_run(over, words):
    with pytest.raises(ConfigError) as e:
        build(C.load_config(TINY, [*over, "engine=closed_form"]))
    assert e.value.field == "engine" and words in e.value.message


@pytest.mark.parametrize("over", [[], ["objective=ns", "penalty.name=r1", "critic.activation=gelu"],
                                  ["target.embed_dim=64", "particles.init={name: gaussian, std: 0.1}"]])
def test_closed_form_runs_agree_with_eager_over_200_steps(over):
    base = ["steps=200", "log_every=50", "seeds=[0, 1, 2]", *over]
    eager = gandy.run(TINY, overrides=[*base, "engine=eager"], figures=False)
    closed = gandy.run(TINY, overrides=[*base, "engine=closed_form"], figures=False)
    assert list(closed.results.phase) == list(eager.results.phase)
    np.testing.assert_allclose(closed.trajectory["particles"], eager.trajectory["particles"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(closed.metrics.w1, eager.metrics.w1, rtol=1e-4, atol=1e-5)


def test_compiled_closed_form_of_wide_inputs_agrees_with_eager():
    """d >= compiled.WIDE: the compiled engine compiles the closed form (and fuses Adam)."""
    base = ["steps=100", "log_every=50", "seeds=[0, 1]", "target.embed_dim=64", "critic.widths=[32]"]
    eager = gandy.run(TINY, overrides=[*base, "engine=eager"], figures=False)
    comp = gandy.run(TINY, overrides=[*base, "engine=compiled"], figures=False)
    assert list(comp.results.phase) == list(eager.results.phase)
    np.testing.assert_allclose(comp.trajectory["particles"], eager.trajectory["particles"], rtol=1e-4, atol=1e-4)


def _float32_case(over, d=64):
    sim = build(C.load_config(TINY, [*over, "engine=closed_form", "critic.widths=[48, 40]", "critic.dropout=0.2",
                                     f"target.embed_dim={d}"]))
    params = sim.critic.init(start(sim, [0, 1]).streams["critic"], 2)
    gen = torch.Generator().manual_seed(3)
    real, fake = torch.randn(2, 30, d, generator=gen), torch.randn(2, 20, d, generator=gen)
    masks = tuple((torch.rand(2, n, 40, generator=gen) > 0.2).float() / 0.8 for n in (30, 20))
    return sim, params, real, fake, torch.tensor([1.25, 12.5]), masks


def test_bfloat16_products_stay_within_bfloat16_rounding_of_float32():
    """matmul: bfloat16 rounds each product's inputs to bfloat16 (8 significant bits): the critic's
    gradients and the force of a deep dropout critic with the Sobolev penalty (the mnist-collapse
    form) differ from float32's, but by at most 2^-5 relative (2^-8 a product, grown through two
    hidden layers and the game's cancelling sums: measured 0.4-2.2 %); the last bias, a sum of
    the game's derivatives with no product, is float32's exactly."""
    sim, params, real, fake, w, masks = _float32_case(["penalty.name=sobolev", "penalty.reduce=batch_mean"])
    low = build(C.load_config(TINY, ["penalty.name=sobolev", "penalty.reduce=batch_mean", "engine=closed_form",
                                     "critic.widths=[48, 40]", "critic.dropout=0.2", "target.embed_dim=64",
                                     "matmul=bfloat16"]))
    assert low.step.matmul == "bfloat16" and sim.step.matmul == "float32"
    exact, rounded = ClosedForm(sim), ClosedForm(low)
    pairs = dict(zip(params, zip(exact.critic_grads(params, list(params), real, fake, w, masks),
                                 rounded.critic_grads(params, list(params), real, fake, w, masks))))
    pairs["force"] = (exact.loss_grad(params, fake), rounded.loss_grad(params, fake))
    assert torch.equal(*pairs.pop("b2"))
    for e, g in pairs.values():
        assert g.dtype == torch.float32
        rel = float((g - e).norm() / e.norm())
        assert 2**-14 < rel < 2**-5, rel


def test_bfloat16_products_are_refused_where_nothing_rounds_them():
    """Only the closed form rounds its products: engine eager, and compiled below compiled.WIDE
    dimensions (torch.func's vmap(grad)), are refused with the field named; engine auto picks
    an engine that does round them."""
    for over in (["engine=eager"], ["engine=compiled"]):
        with pytest.raises(ConfigError) as e:
            build(C.load_config(TINY, [*over, "matmul=bfloat16"]))
        assert e.value.field == "matmul" and "closed form" in e.value.message
    assert build(C.load_config(TINY, ["matmul=bfloat16"])).engine.name == "closed_form"
    assert build(C.load_config(TINY, ["matmul=bfloat16"]), members=4).engine.name == "closed_form"
    wide = ["target.embed_dim=64", "engine=compiled"]
    low, full = (build(C.load_config(TINY, [*wide, f"matmul={m}"])) for m in ("bfloat16", "float32"))
    assert low.engine.name == "compiled" and low.engine is not full.engine  # compiled apart, never shared
    with pytest.raises(ConfigError) as e:  # nothing runs a wgan_gp penalty in closed form
        build(C.load_config(TINY, ["matmul=bfloat16", "penalty.name=wgan_gp"]))
    assert e.value.field == "matmul"


def test_auto_picks_by_estimated_time_and_closed_form_for_wide_inputs():
    """A config's own short run of a few members: closed_form (the fewest ops); of many: eager
    (autograd's fused kernels); a sweep's short chunks: eager whatever their size; long ones:
    compiled (tests/test_lone.py has the lone member's choices)."""
    assert choose_engine(build(C.load_config(TINY, [])), 2, single=True) == "closed_form"
    assert choose_engine(build(C.load_config(TINY, [])), 32, single=True) == "eager"
    assert choose_engine(build(C.load_config(TINY, [])), 2) == "eager"
    assert choose_engine(build(C.load_config(TINY, ["steps=100000"])), 256) == "compiled"
    wide = build(C.load_config(TINY, ["target.embed_dim=64"]))
    assert choose_engine(wide, 2) == "closed_form"
    assert build(C.load_config(TINY, ["target.embed_dim=64", "engine=eager"])).engine is None
    # nothing faster runs a two-layer critic with a wgan_gp penalty: eager, however long
    assert choose_engine(build(C.load_config(TINY, ["penalty.name=wgan_gp", "critic.widths=[8, 8]",
                                                    "steps=100000"])), 256) == "eager"


def test_optimiser_step_leaves_its_inputs_and_matches_torch_adam():
    """The in-place moments and the scratch buffer: params are not modified, and the numbers are
    torch.optim.Adam's (with weight decay) member by member."""
    cfg = C.CriticOptim(name="adam", lr=0.01, weight_decay=0.1)
    p0 = {"w": torch.randn(2, 3, 4, dtype=D64)}
    lrs = torch.tensor([0.01, 0.003], dtype=D64)
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, lrs)
    refs = [torch.nn.Parameter(p0["w"][i].clone()) for i in range(2)]
    tops = [torch.optim.Adam([r], lr=float(lrs[i]), weight_decay=0.1) for i, r in enumerate(refs)]
    p = p0
    for step in range(4):
        g = {"w": torch.sin(p["w"] * (step + 1))}
        before = p["w"].clone()
        new = opt.step(p, g)
        torch.testing.assert_close(p["w"], before, rtol=0, atol=0)
        for i, (r, o) in enumerate(zip(refs, tops)):
            r.grad = g["w"][i].clone()
            o.step()
            torch.testing.assert_close(new["w"][i], r.detach(), rtol=1e-12, atol=1e-14)
        p = new


def test_fused_adam_equals_the_eager_update():
    cfg = C.CriticOptim(name="adam", lr=0.01, weight_decay=0.1)
    p0 = {"w": torch.randn(3, 5, 4), "b": torch.randn(3, 4)}
    lrs = torch.tensor([0.01, 0.003, 0.1])
    a, b = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, lrs), BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, lrs, fused=True)
    pa = pb = p0
    for step in range(5):
        g = {k: torch.cos(v * (step + 1)) for k, v in pa.items()}
        pa, pb = a.step(pa, g), b.step(pb, g)
        for k in p0:
            torch.testing.assert_close(pb[k], pa[k], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- reproducibility
def _run_members(engine, lrs, steps=60):
    """Particles after ``steps`` of members 0..len(lrs)-1, seed 0 each, critic lr per member."""
    cfg = C.load_config(TINY, [f"engine={engine}", f"steps={steps}"])
    sim = build(cfg, members=len(lrs))
    cfgs = [cfg.model_copy(update={"optim": cfg.optim.model_copy(update={
        "critic": cfg.optim.critic.model_copy(update={"lr": lr})})}) for lr in lrs]
    st = start(sim, [0] * len(lrs), member_values(cfgs, sim.device))
    for _ in range(steps):
        advance(sim, st)
    return st


@pytest.mark.parametrize("engine", ["eager", "closed_form", "compiled"])
def test_reproducibility_under_each_engine(engine):
    """Same config, same machine: identical numbers. A member that blows up changes no other
    member's numbers. The same member in a batch of another size: equal to 1e-5 (bit-identical
    for eager and closed_form batches of two or more)."""
    a = _run_members(engine, [1e-3, 2e-3])
    b = _run_members(engine, [1e-3, 2e-3])
    assert torch.equal(a.x, b.x)
    blown = _run_members(engine, [1e-3, 1e9])  # member 1 diverges within a few steps
    assert not bool(blown.alive[1]) and bool(blown.alive[0])
    assert torch.equal(blown.x[0], a.x[0])
    big = _run_members(engine, [1e-3, 2e-3, 5e-3, 1e-2, 3e-3])
    torch.testing.assert_close(big.x[:2], a.x, rtol=1e-5, atol=1e-5)
    if engine != "compiled":
        assert torch.equal(big.x[:2], a.x)


def test_plan_balances_chunks_makes_a_multiple_of_the_workers_and_no_chunk_of_one():
    cfg = C.load_config(TINY, ["sweep={kernel.g2: {linspace: [0.1, 0.9], num: 9}}", "seeds=[0]"])
    assert [len(c.members) for c in plan(cfg, min_chunks=2).chunks] in ([4, 5], [5, 4])
    # a budget for one member a chunk: two a chunk, since a chunk of one is padded to two anyway
    sizes = [len(c.members) for c in plan(cfg, memory_budget=1.0, min_chunks=1).chunks]
    assert sorted(sizes) == [2, 2, 2, 3]
    sizes = [len(c.members) for c in plan(cfg, min_chunks=4).chunks]
    assert len(sizes) == 4 and max(sizes) - min(sizes) <= 1 and sum(sizes) == 9
    # eight workers asked of nine members: four chunks, not eight chunks of one (each padded to two)
    assert sorted(len(c.members) for c in plan(cfg, min_chunks=8).chunks) == [2, 2, 2, 3]
    two = C.load_config(TINY, ["sweep={kernel.g2: [0.2, 0.4]}", "seeds=[0]"])
    assert [len(c.members) for c in plan(two, min_chunks=2).chunks] == [2]
    assert [len(c.members) for c in plan(two, chunk=1).chunks] == [1, 1]  # asked for by name: kept


def test_processes_executor_writes_what_one_process_writes(tmp_path):
    cfg = C.load_config(TINY, ["steps=20", "log_every=10", "seeds=[0]",
                               "sweep={kernel.g2: {linspace: [0.1, 0.9], num: 4}}"])
    one, m1, _ = run_sweep(cfg, tmp_path / "one", workers=2)
    two, m2, s = run_sweep(cfg, tmp_path / "two", executor="processes", workers=2)
    assert s["sweep"]["chunks"] == 2 and s["sweep"]["executor"] == "processes"
    num = one.select_dtypes("number").columns
    np.testing.assert_array_equal(one[num].to_numpy(), two[num].to_numpy())
    assert list(one.phase) == list(two.phase)
    np.testing.assert_array_equal(m1.select_dtypes("number").to_numpy(), m2.select_dtypes("number").to_numpy())


def test_workers_must_be_a_whole_number(tmp_path):
    cfg = C.load_config(TINY, ["sweep={kernel.g2: [0.1, 0.2]}"])
    with pytest.raises(ConfigError) as e:
        run_sweep(cfg, tmp_path / "x", workers=0)
    assert e.value.field == "workers" and not (tmp_path / "x").exists()


MNIST = str(Path(gandy.__file__).parent / "studies" / "mnist_collapse" / "config.yaml")


def test_closed_form_gradients_at_the_mnist_collapse_critic_equal_autograd():
    """The mnist-collapse critic itself (784 -> 64 -> 1024 -> 64 -> 1, dropout 0.2 after the 1024
    layer, batch-mean Sobolev penalty) at its initial parameters, 100 digits and 100 particles,
    masks from its stream: the closed form against autograd in float64."""
    sim = build(gandy.load_config(MNIST, ["sweep=null", "engine=closed_form"]), members=1)
    st = start(sim, [0])
    params = {k: v.to(D64) for k, v in st.params.items()}
    real = sim.target.sample(st.streams["data"], sim.critic_batch).to(D64)
    masks = tuple(sim.critic.mask(st.streams["dropout"], 100).to(D64) for _ in range(2))
    w = st.members.penalty_weight.to(D64)
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = critic_loss(sim, train, real, st.x.to(D64), None, w, masks=masks)
    expect = torch.autograd.grad(loss.sum(), list(train.values()))
    got = sim.engine.critic_grads(params, list(params), real, st.x.to(D64), w, masks)
    for k, e, g in zip(params, expect, got):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-14, msg=k)


@pytest.mark.slow
def test_mnist_collapse_steps_under_the_compiled_closed_form_agree_with_eager():
    """The mnist-collapse config (784-D, critic [64, 1024, 64] with dropout), with 20 start-up and 5
    critic steps per particle step: a lone member's particles after four particle steps under the
    compiled engine (the compiled layer-by-layer closed form, unpadded) equal the eager reference's
    (padded to two members, as simulate runs it) to rounding, and so does the critic as a function.
    (With the config's 200 start-up steps, rounding grows: after one particle step the eager engine
    in float32 is 0.031 from itself in float64 (max over coordinates; particles moved up to 4.8),
    the closed form 0.039; after two, 0.16 and 0.10. The gradients agree to 1e-17 in float64: the
    test above.)

    The critic's weights are not compared coordinate by coordinate: the config's Adam (amsgrad) is
    re-created at every particle step (``reset``), and a fresh Adam's first update moves each
    coordinate by the learning rate times the sign of its gradient, whatever its size, so a
    coordinate whose gradient is at float32's rounding level (the two engines sum in different
    orders) moves by +-lr in one engine and -+lr in the other. On the AVX-512 host (2026-12-05)
    2.5 % of the first layer's weights differed by more than 1e-4 (at most 4.7e-3, lr = 1e-3), and
    the critic's outputs on the particles by 0.3 % of their scale; the AVX2 host of 2026-12-04 gave
    agreement to 1e-4 by luck of its rounding."""
    over = ["sweep=null", "optim.critic.startup_steps=20", "optim.critic.steps=5"]
    out = {}
    for engine, seeds in (("eager", [0, 1]), ("compiled", [0])):
        sim = build(gandy.load_config(MNIST, [*over, f"engine={engine}"]), members=1)
        st = start(sim, seeds)
        for _ in range(4):
            advance(sim, st)
        out[engine] = st
    eager, compiled = out["eager"], out["compiled"]
    assert not torch.allclose(eager.x[0], eager.x0[0], atol=1e-3)  # the particles moved
    torch.testing.assert_close(compiled.x[0], eager.x[0], rtol=1e-5, atol=1e-5)

    def critic(params: dict, x: torch.Tensor) -> torch.Tensor:  # member 0, no dropout mask: the function itself
        return sim.critic.forward({k: v[:1] for k, v in params.items()}, x)

    real = sim.target.sample(st.streams["data"], 100)  # (1, 100, 784): the compiled simulation's one member
    for x in (eager.x[:1], real[:1]):
        want = critic(eager.params, x)
        assert (critic(compiled.params, x) - want).abs().max() <= 0.01 * want.abs().max()
    for k, v in compiled.params.items():  # all but the sign-amplified few coordinates to rounding
        off = ((v[0] - eager.params[k][0]).abs() > 1e-4).double().mean()
        assert off <= 0.05, (k, float(off))


@pytest.mark.parametrize("p", [0.2, 0.3, 0.7])
def test_dropout_mask_is_the_keep_draw_times_the_scale_in_float32(p):
    """The mask of :meth:`Mlp.mask` (one pass) has the numbers of the draw cast and scaled: 0 or
    1/(1 - p) in float32, kept where the stream's uniform is >= p."""
    from gandy.core.nets.mlp import Mlp
    from gandy.core.rng import Stream, member_keys

    keys = member_keys([0, 1, 2])
    mask = Mlp(5, [4, 64, 3], dropout=p).mask(Stream(keys, "dropout"), 33)
    keep = Stream(keys, "dropout").uniform(33, 64) >= p
    assert mask.dtype == torch.float32
    assert torch.equal(mask, keep.to(torch.float32) * (1.0 / (1.0 - p)))


def test_relu_derivative_is_autograds_at_the_kink():
    """0 at z = 0 (and -0), 1 for any z > 0 however small: what autograd's relu backward takes."""
    z = torch.tensor([0.0, -0.0, 1e-38, -1e-38, 2.5, -2.5])
    torch.testing.assert_close(ACTIVATION_DERIVATIVES["relu"][0](z), torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(ACTIVATION_DERIVATIVES["leaky_relu"][0](z), torch.tensor([0.2, 0.2, 1.0, 0.2, 1.0, 0.2]))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_mlp_generator_backpropagation_by_hand_equals_autograd(name):
    """MlpNet.vjp (the generator's step without an autograd graph) against autograd, float64."""
    from gandy.core.nets.mlp import MlpNet
    from gandy.core.rng import Stream, member_keys

    net = MlpNet(3, [5, 7], 2, name)
    params = {k: v.double() for k, v in net.init(Stream(member_keys([0, 1], torch.device("cpu")), "g"), 2).items()}
    g = torch.Generator().manual_seed(1)
    z, up = torch.randn(2, 11, 3, generator=g, dtype=D64), torch.randn(2, 11, 2, generator=g, dtype=D64)
    out, saved = net.forward_saved(params, z)
    torch.testing.assert_close(out, net.forward(params, z))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    want = torch.autograd.grad((net.forward(leaves, z) * up).sum(), list(leaves.values()))
    got = net.vjp(params, saved, up)
    assert set(got) == set(params)
    for k, w in zip(leaves, want):
        torch.testing.assert_close(got[k], w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("objective,steps", [("ns", 150), ("mm", 150), ("hinge", 10)])
def test_network_generator_runs_agree_with_eager(objective, steps):
    """The lab with an MLP generator: the closed form's critic step and its generator step
    backpropagated by hand (no autograd graph) follow the eager engine (hinge over fewer steps:
    its loss has kinks, and a point whose logit lands on one by rounding switches a term, after
    which the runs part: by ~1e-5 in the points at step 20 (0.3 % in the force) and ~4e-3 at 150)."""
    lab = {"target": {"name": "ring8"}, "generator": {"name": "mlp", "latent_dim": 2, "widths": [16, 16]},
           "critic": {"name": "mlp", "widths": [16, 16]}, "objective": objective, "penalty": None,
           "optim": {"generator": {"name": "adam", "lr": 5e-4}}, "batch_size": 32, "particles": {"n": 32},
           "steps": steps, "log_every": 10, "seeds": [0, 1], "metrics": {"divergences": False}}
    eager = gandy.run(lab, overrides=["engine=eager"], figures=False)
    closed = gandy.run(lab, overrides=["engine=closed_form"], figures=False)
    assert closed.summary["engine"] == "closed_form"
    np.testing.assert_allclose(closed.trajectory["particles"], eager.trajectory["particles"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(closed.metrics.force_norm, eager.metrics.force_norm, rtol=1e-4, atol=1e-6)
