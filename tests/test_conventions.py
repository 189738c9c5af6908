"""The authors' conventions as options (issue 16; docs/bridge.md, "Conventions"): AMSGrad, an
optimiser re-created every particle step, more critic steps at the first particle step, the Sobolev
penalty on the batch-mean output's gradient, and data-like initial clouds. Each is checked against
an independent computation: torch.optim.Adam(amsgrad=True), a fresh torch optimiser per particle
step, autograd of the authors' formula, and moments of the drawn clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gandy.core.optim import BatchedOptimizer
from gandy.core.step import advance, critic_loss, start
from gandy.runs import config as C
from gandy.runs.build import build, optim_spec

from conftest import TINY

D64 = torch.float64


# ----------------------------------------------------------------------------- optimiser
@pytest.mark.parametrize("fused", [False, True])
def test_amsgrad_matches_torch_member_by_member(fused):
    cfg = C.CriticOptim(name="adam", lr=0.01, weight_decay=0.1, amsgrad=True)
    dtype = torch.float32 if fused else D64
    p0 = {"w": torch.randn(2, 3, 4, dtype=dtype)}
    lrs = torch.tensor([0.01, 0.003], dtype=dtype)
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, lrs, fused=fused)
    refs = [torch.nn.Parameter(p0["w"][i].clone()) for i in range(2)]
    tops = [torch.optim.Adam([r], lr=float(lrs[i]), weight_decay=0.1, amsgrad=True) for i, r in enumerate(refs)]
    p = p0
    for step in range(6):
        # gradients that shrink: AMSGrad's max(v) then differs from v
        g = {"w": torch.sin(p["w"] * (step + 1)) / (1 + 3 * step)}
        p = opt.step(p, g)
        for i, (r, o) in enumerate(zip(refs, tops)):
            r.grad = g["w"][i].clone()
            o.step()
            tol = dict(rtol=1e-5, atol=1e-6) if fused else dict(rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(p["w"][i], r.detach(), **tol)
    plain = BatchedOptimizer(optim_spec(C.CriticOptim(name="adam", lr=0.01, weight_decay=0.1), "optim.critic"), p0, lrs)
    q = p0
    for step in range(6):
        q = plain.step(q, {"w": torch.sin(q["w"] * (step + 1)) / (1 + 3 * step)})
    assert not torch.equal(q["w"], p["w"])  # the variant changed the numbers (slightly: max(v) ~ v here)


def test_reset_is_a_freshly_created_optimiser():
    """Two particle steps of two critic steps each with ``reset``: the same as a new
    torch.optim.Adam(amsgrad=True) created at each particle step (the authors' loop)."""
    cfg = C.CriticOptim(name="adam", lr=0.02, amsgrad=True, reset=True)
    p0 = {"w": torch.randn(1, 5, dtype=D64)}
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, torch.tensor([0.02], dtype=D64))
    ref = torch.nn.Parameter(p0["w"][0].clone())
    p = p0
    for outer in range(3):
        opt.reset_()
        top = torch.optim.Adam([ref], lr=0.02, amsgrad=True)
        for inner in range(2):
            g = {"w": torch.cos(p["w"] * (outer + 2)) * (inner + 1)}
            p = opt.step(p, g)
            ref.grad = g["w"][0].clone()
            top.step()
        torch.testing.assert_close(p["w"][0], ref.detach(), rtol=1e-12, atol=1e-14)
    assert opt.t == 2


# ----------------------------------------------------------------------------- critic steps
def _linear_sgd(overrides):
    """A linear critic f(x) = w.x + c trained by SGD on the IPM loss with no penalty: each critic
    step adds lr (mean real - mean fake) to w, so w counts the critic steps taken."""
    cfg = C.load_config(TINY, ["critic={name: linear}", "penalty=none", "optim.critic.name=sgd",
                               "optim.critic.lr=0.01", "seeds=[0]", "engine=eager", *overrides])
    return build(cfg)


def test_startup_steps_count_by_data_draws():
    """Each critic step draws one data batch: 7 + 2 + 2 draws after three particle steps."""
    sim = _linear_sgd(["optim.critic.steps=2", "optim.critic.startup_steps=7"])
    st = start(sim, [0, 1])
    c0 = st.streams["data"].counter
    advance(sim, st)
    per_draw = (st.streams["data"].counter - c0) / 7
    advance(sim, st)
    advance(sim, st)
    assert st.streams["data"].counter - c0 == pytest.approx(11 * per_draw)
    assert st.opt.t == 11  # one persistent optimiser


def test_reset_recreates_the_optimiser_at_every_particle_step():
    sim = _linear_sgd(["optim.critic.name=adam", "optim.critic.steps=3", "optim.critic.reset=true"])
    st = start(sim, [0, 1])
    advance(sim, st)
    advance(sim, st)
    assert st.opt.t == 3  # counted from zero again at the second particle step


# ----------------------------------------------------------------------------- batch-mean penalty
def _usd_sobolev(sim, params, x):
    """The authors' constraint written as in their code: the gradient of the batch-mean output
    Eq_f = mean_i f(x_i) w.r.t. the points, squared, summed over dimensions, averaged over points."""
    x = x.detach().requires_grad_(True)
    eq_f = sim.critic.forward(params, x).mean(-1)  # (B,)
    (g,) = torch.autograd.grad(eq_f.sum(), x, create_graph=True)
    return (g * g).sum(-1).mean(-1) - 1.0


@pytest.mark.parametrize("engine", ["eager", "closed_form", "compiled"])
def test_batch_mean_penalty_is_the_authors_formula(engine):
    over = ["penalty={name: sobolev, weight: 1.25, reduce: batch_mean}", "critic.widths=[8]", "seeds=[0, 1]",
            f"engine={engine}"]
    sim = build(C.load_config(TINY, over))
    st = start(sim, [0, 1])
    real = sim.target.sample(st.streams["data"], sim.critic_batch)
    params = {k: v.detach().requires_grad_(True) for k, v in st.params.items()}
    weight = torch.full((2,), 1.25)
    ours = critic_loss(sim, params, real, st.x, st.streams["penalty"], weight)
    game = sim.game.critic_loss(sim.critic.forward(params, real), sim.critic.forward(params, st.x))
    usd = game + 1.25 * _usd_sobolev(sim, params, st.x)
    torch.testing.assert_close(ours, usd, rtol=1e-5, atol=1e-6)
    # gradients, against autograd of the authors' formula, through whichever engine the config names
    trainable = [k for k in params if k not in sim.critic.frozen]
    ref = torch.autograd.grad(usd.sum(), [params[k] for k in trainable])
    if sim.engine is not None:
        got = sim.engine.critic_grads(st.params, trainable, real, st.x, weight)
    else:
        got = torch.autograd.grad(ours.sum(), [params[k] for k in trainable])
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and it is n^2 weaker than the per-point penalty's gradient term
    per_point = build(C.load_config(TINY, [*over[:0], "penalty={name: sobolev, weight: 1.25}", "critic.widths=[8]",
                                           "seeds=[0, 1]", "engine=eager"]))
    pp = critic_loss(per_point, params, real, st.x, st.streams["penalty"], weight) - game
    n = st.x.shape[1]
    torch.testing.assert_close((ours - game) / 1.25 + 1.0, (pp / 1.25 + 1.0) / n**2, rtol=1e-3, atol=1e-7)


def test_batch_mean_is_refused_for_penalties_it_does_not_define():
    with pytest.raises(C.ConfigError) as e:
        C.load_config(TINY, ["penalty={name: wgan_gp, weight: 10, reduce: batch_mean}"])
    assert e.value.field == "penalty.reduce"
    with pytest.raises(C.ConfigError) as e:
        C.load_config(TINY, ["penalty.reduce=sum"])
    assert e.value.field == "penalty.reduce"


def test_amsgrad_is_refused_for_other_optimisers():
    with pytest.raises(C.ConfigError) as e:
        C.load_config(TINY, ["optim.critic.name=sgd", "optim.critic.amsgrad=true"])
    assert e.value.field == "optim.critic.amsgrad"
    with pytest.raises(C.ConfigError) as e:
        C.load_config(TINY, ["optim.critic.startup_steps=0"])
    assert e.value.field == "optim.critic.startup_steps"


# ----------------------------------------------------------------------------- initial clouds
def test_data_mean_init_is_noise_around_the_target_mean():
    sim = build(C.load_config(TINY, ["particles.init={name: data_mean, std: 0.5}", "particles.n=4000", "seeds=[0]"]))
    st = start(sim, [0, 1])
    x = st.x.double()
    torch.testing.assert_close(x.mean(1), sim.target.mean.double().expand(2, -1), atol=0.05, rtol=0)
    assert float(x.std(1).mean()) == pytest.approx(0.5, rel=0.05)


def test_data_gaussian_init_has_the_data_covariance(tmp_path):
    """On a 2-D empirical data set: the drawn cloud's mean and covariance match the data's (ddof 0),
    scaled by ``scale`` on the deviation."""
    data = [[0.0, 0.0], [2.0, 1.0], [4.0, 0.0], [1.0, 3.0]]
    np.save(tmp_path / "d.npy", np.array(data, dtype=np.float32))
    base = {"target": {"name": "empirical", "path": str(tmp_path / "d.npy")}, "particles": {"n": 20000, "init": {"name": "data_gaussian", "scale": 2.0}},
            "critic": {"name": "mlp", "widths": [8]}, "seeds": [0], "steps": 1}
    sim = build(C.load_config(base))
    x = start(sim, [0, 1]).x[0].double()
    d = torch.tensor(data, dtype=D64)
    cov = (d - d.mean(0)).T @ (d - d.mean(0)) / len(d)
    torch.testing.assert_close(x.mean(0), d.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(x.T, correction=0), 4.0 * cov, atol=0.15, rtol=0.05)


# ----------------------------------------------------------------------------- dropout
def test_dropout_masks_the_second_hidden_layer_in_training_only():
    """The masked forward equals the network computed by hand with the mask after the second hidden
    layer's activation; without a mask (the particles' force) it is the whole network."""
    from gandy.core.nets.mlp import Mlp
    from gandy.core.rng import Stream, member_keys

    net = Mlp(3, [4, 6, 5], "relu", dropout=0.5)
    keys = member_keys([0, 1])
    p = net.init(Stream(keys, "critic"), 2)
    x = torch.randn(2, 7, 3)
    mask = net.mask(Stream(keys, "dropout"), 7)
    assert mask.shape == (2, 7, 6) and set(mask.unique().tolist()) == {0.0, 2.0}  # 0 or 1/(1-p)
    h = torch.relu(x @ p["w0"] + p["b0"][:, None])
    h = torch.relu(h @ p["w1"] + p["b1"][:, None]) * mask
    h = torch.relu(h @ p["w2"] + p["b2"][:, None])
    torch.testing.assert_close(net.forward(p, x, mask=mask), (h @ p["w3"])[..., 0] + p["b3"], rtol=1e-5, atol=1e-6)
    whole = Mlp(3, [4, 6, 5], "relu")
    torch.testing.assert_close(net.forward(p, x), whole.forward(p, x))
    assert Mlp(3, [4], "relu").mask(Stream(keys, "dropout"), 7) is None  # no dropout, no mask


def test_dropout_critic_loss_penalises_the_masked_network():
    over = ["critic={name: mlp, widths: [8, 8], dropout: 0.3}", "seeds=[0, 1]", "engine=eager"]
    sim = build(C.load_config(TINY, over))
    assert sim.engine is None  # the eager engine's loss (the closed form runs this critic too)
    st = start(sim, [0, 1])
    real = sim.target.sample(st.streams["data"], sim.critic_batch)
    masks = (sim.critic.mask(st.streams["dropout"], real.shape[1]), sim.critic.mask(st.streams["dropout"], st.x.shape[1]))
    params = st.params
    weight = torch.ones(2)
    ours = critic_loss(sim, params, real, st.x, st.streams["penalty"], weight, masks=masks)
    xf = st.x.detach().requires_grad_(True)
    f_fake = sim.critic.forward(params, xf, mask=masks[1])
    (g,) = torch.autograd.grad(f_fake.sum(), xf)
    hand = sim.game.critic_loss(sim.critic.forward(params, real, mask=masks[0]), f_fake) + (g * g).sum(-1).mean(-1) - 1.0
    torch.testing.assert_close(ours, hand.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, critic_loss(sim, params, real, st.x, st.streams["penalty"], weight))


def test_dropout_refused_where_it_is_not_defined():
    with pytest.raises(C.ConfigError) as e:
        build(C.load_config(TINY, ["critic.dropout=0.2", "penalty={name: wgan_gp, weight: 10}"]))
    assert e.value.field == "critic.dropout"
    with pytest.raises(C.ConfigError) as e:
        build(C.load_config(TINY, ["critic.dropout=0.2", "critic.activation=tanh", "engine=closed_form"]))
    assert e.value.field == "engine"
    with pytest.raises(C.ConfigError) as e:
        C.load_config(TINY, ["critic.dropout=1.0"])
    assert e.value.field == "critic.dropout"


def test_dropout_runs_compiled_with_the_same_numbers_as_eager():
    """The masks are drawn outside the compiled function from gandy's streams, so both engines
    train the same masked critics: the particles agree to rounding after 10 steps (later, a ReLU
    unit flipping on a rounding difference amplifies it: 4e-4 after 30 steps in one member)."""
    over = ["critic={name: mlp, widths: [8, 8], dropout: 0.3}", "steps=30", "seeds=[0, 1]"]
    out = {}
    for engine in ("eager", "compiled"):
        sim = build(C.load_config(TINY, [*over, f"engine={engine}"]))
        st = start(sim, [0, 1])
        for _ in range(10):
            advance(sim, st)
        out[engine] = st.x
    torch.testing.assert_close(out["compiled"], out["eager"], rtol=1e-4, atol=1e-5)
    nodrop = build(C.load_config(TINY, [*over, "critic.dropout=0.0", "engine=eager"]))
    st = start(nodrop, [0, 1])
    for _ in range(10):
        advance(nodrop, st)
    assert not torch.allclose(st.x, out["eager"], atol=1e-4)  # the masks did something
