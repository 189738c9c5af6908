"""Games and gradient penalties (gandy.core.objectives): hand-computed values, sign conventions,
finite-difference gradients of every penalty w.r.t. the critic parameters, and the force."""

from __future__ import annotations

import math

import pytest
import torch

from gandy.core.nets.base import Critic
from gandy.core.nets.features import Linear
from gandy.core.nets.mlp import Mlp
from gandy.core.objectives import GAMES, PENALTIES, input_grad
from gandy.core.rng import Stream, member_keys
from gandy.core.step import particle_force
from gandy.runs.build import build, optim_spec, penalty_spec
from gandy.runs.config import Config, GeneratorOptim, LinearCritic, OptimConfig, PenaltyConfig

D64 = torch.float64


def sp(x: float) -> float:
    """softplus written out by hand."""
    return math.log(1.0 + math.exp(x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ============================================================================ game values
F_REAL = [[0.0, 2.0], [1.0, -3.0]]
F_FAKE = [[-1.0, 1.0], [0.5, 2.0]]


def _expected_critic(game: str, fr: list[float], ff: list[float]) -> float:
    mr = lambda h: sum(h(v) for v in fr) / len(fr)  # noqa: E731
    mf = lambda h: sum(h(v) for v in ff) / len(ff)  # noqa: E731
    if game == "ipm":  # critic minimises E_Q f - E_P f
        return mf(lambda v: v) - mr(lambda v: v)
    if game in ("mm", "ns"):  # -E_P log D - E_Q log(1 - D)
        return mr(lambda v: -math.log(sig(v))) + mf(lambda v: -math.log(1.0 - sig(v)))
    if game == "ls":
        return mr(lambda v: 0.5 * (v - 1.0) ** 2) + mf(lambda v: 0.5 * v**2)
    if game == "hinge":
        return mr(lambda v: max(0.0, 1.0 - v)) + mf(lambda v: max(0.0, 1.0 + v))
    raise KeyError(game)


def _expected_gen(game: str, ff: list[float]) -> list[float]:
    if game in ("ipm", "hinge"):
        return [-v for v in ff]
    if game == "mm":  # log(1 - D)
        return [math.log(1.0 - sig(v)) for v in ff]
    if game == "ns":  # -log D
        return [-math.log(sig(v)) for v in ff]
    if game == "ls":
        return [0.5 * (v - 1.0) ** 2 for v in ff]
    raise KeyError(game)


BASE = ("ipm", "mm", "ns", "ls", "hinge")  # the hand values below are for these; the named games reuse them


def test_registry_holds_the_base_and_named_games():
    assert set(GAMES) == {*BASE, "wgan", "wgan_gp", "gan_gp", "dragan", "dragan_ns"}
    for name, g in GAMES.items():
        assert g.name == name


def test_hand_values_first_row_written_out():
    """f_real = [0, 2], f_fake = [-1, 1], every number written out by hand."""
    fr = torch.tensor([[0.0, 2.0]], dtype=D64)
    ff = torch.tensor([[-1.0, 1.0]], dtype=D64)
    ce = (math.log(2.0) + math.log(1 + math.exp(-2.0))) / 2 + (math.log(1 + math.exp(-1.0)) + math.log(1 + math.e)) / 2
    expected_critic = {
        "ipm": (-1.0 + 1.0) / 2 - (0.0 + 2.0) / 2,  # = -1
        "mm": ce,
        "ns": ce,
        "ls": 0.5 * ((0 - 1) ** 2 + (2 - 1) ** 2) / 2 + 0.5 * ((-1) ** 2 + 1**2) / 2,  # = 1
        "hinge": (1.0 + 0.0) / 2 + (0.0 + 2.0) / 2,  # = 1.5
    }
    expected_gen = {
        "ipm": [1.0, -1.0],
        "hinge": [1.0, -1.0],
        "mm": [-math.log(1 + math.exp(-1.0)), -math.log(1 + math.e)],
        "ns": [math.log(1 + math.e), math.log(1 + math.exp(-1.0))],
        "ls": [2.0, 0.0],
    }
    for name, g in ((n, GAMES[n]) for n in BASE):
        c = g.critic_loss(fr, ff)
        assert c.shape == (1,)
        assert c.item() == pytest.approx(expected_critic[name], rel=1e-12, abs=1e-12), name
        gl = g.gen_loss(ff)
        assert gl.shape == (1, 2)
        assert gl[0].tolist() == pytest.approx(expected_gen[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("game", BASE)
def test_critic_and_gen_loss_values_batched(game):
    """Two members with different (M, N) contents: the reduction is per member, over the last axis."""
    g = GAMES[game]
    fr = torch.tensor(F_REAL, dtype=D64)
    ff = torch.tensor(F_FAKE, dtype=D64)
    c = g.critic_loss(fr, ff)
    assert c.shape == (2,)
    for b in range(2):
        assert c[b].item() == pytest.approx(_expected_critic(game, F_REAL[b], F_FAKE[b]), rel=1e-12, abs=1e-12)
    gl = g.gen_loss(ff)
    assert gl.shape == (2, 2)
    for b in range(2):
        assert gl[b].tolist() == pytest.approx(_expected_gen(game, F_FAKE[b]), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("game", BASE)
def test_critic_loss_allows_m_different_from_n(game):
    fr = torch.tensor([[0.3, -0.2, 1.7]], dtype=D64)
    ff = torch.tensor([[0.4, -2.5, 0.1, 0.9, -0.6]], dtype=D64)
    c = GAMES[game].critic_loss(fr, ff)
    exp = _expected_critic(game, fr[0].tolist(), ff[0].tolist())
    assert c.item() == pytest.approx(exp, rel=1e-12, abs=1e-12)


def test_mm_gen_loss_is_log_one_minus_sigmoid():
    f = torch.linspace(-8.0, 8.0, 81, dtype=D64)[None]
    ref = torch.log(1.0 - torch.sigmoid(f))
    torch.testing.assert_close(GAMES["mm"].gen_loss(f), ref, rtol=1e-10, atol=1e-12)


def test_ns_gen_loss_is_minus_log_sigmoid():
    f = torch.linspace(-8.0, 8.0, 81, dtype=D64)[None]
    ref = -torch.log(torch.sigmoid(f))
    torch.testing.assert_close(GAMES["ns"].gen_loss(f), ref, rtol=1e-10, atol=1e-12)


def test_mm_and_ns_share_the_critic_loss():
    g = torch.Generator().manual_seed(0)
    fr = torch.randn(3, 7, generator=g, dtype=D64)
    ff = torch.randn(3, 5, generator=g, dtype=D64)
    torch.testing.assert_close(GAMES["mm"].critic_loss(fr, ff), GAMES["ns"].critic_loss(fr, ff))


def test_ce_games_are_stable_for_large_logits():
    fr = torch.tensor([[80.0, -80.0]], dtype=torch.float32)
    ff = torch.tensor([[-80.0, 80.0]], dtype=torch.float32)
    c = GAMES["ns"].critic_loss(fr, ff)
    assert torch.isfinite(c).all()
    assert c.item() == pytest.approx((0.0 + 80.0) / 2 + (0.0 + 80.0) / 2, rel=1e-5)
    for name in ("mm", "ns"):
        assert torch.isfinite(GAMES[name].gen_loss(ff)).all()


# ---------------------------------------------------------------------------- sign conventions
# active regions: hinge needs f_real < 1 and f_fake > -1; ls needs f_real < 1 and f_fake > 0.
_ACTIVE_REAL = [[-0.7, 0.2, 0.8]]
_ACTIVE_FAKE = [[-0.5, 0.3, 0.9, 1.4]]


def _grads(fn, *xs):
    xs = [torch.tensor(x, dtype=D64, requires_grad=True) for x in xs]
    out = fn(*xs).sum()
    return torch.autograd.grad(out, xs)


@pytest.mark.parametrize("game", ["ipm", "mm", "ns", "hinge", "ls"])
def test_critic_loss_decreases_when_real_up_fake_down(game):
    g_real, g_fake = _grads(GAMES[game].critic_loss, _ACTIVE_REAL, [[0.1, 0.3, 0.9, 1.4]] if game == "ls" else _ACTIVE_FAKE)
    assert (g_real < 0).all(), g_real
    assert (g_fake > 0).all(), g_fake
    # and the loss actually moves that way under a finite step
    fr = torch.tensor(_ACTIVE_REAL, dtype=D64)
    ff = torch.tensor(_ACTIVE_FAKE if game != "ls" else [[0.1, 0.3, 0.9, 1.4]], dtype=D64)
    base = GAMES[game].critic_loss(fr, ff)
    assert (GAMES[game].critic_loss(fr + 0.05, ff) < base).all()
    assert (GAMES[game].critic_loss(fr, ff - 0.05) < base).all()


def test_hinge_critic_loss_is_flat_outside_margin():
    fr = torch.tensor([[1.5, 3.0]], dtype=D64, requires_grad=True)
    ff = torch.tensor([[-1.5, -4.0]], dtype=D64, requires_grad=True)
    loss = GAMES["hinge"].critic_loss(fr, ff)
    assert loss.item() == 0.0
    gr, gf = torch.autograd.grad(loss.sum(), [fr, ff])
    assert (gr == 0).all() and (gf == 0).all()


@pytest.mark.parametrize("game", ["ipm", "mm", "ns", "hinge", "ls"])
def test_gen_loss_decreases_when_fake_logit_increases(game):
    f = [[-3.0, -0.5, 0.0, 0.4, 0.9]]  # all below 1 so that ls is in its decreasing branch
    (gf,) = _grads(GAMES[game].gen_loss, f)
    assert (gf < 0).all(), gf


def test_ls_gen_loss_increases_above_one():
    (gf,) = _grads(GAMES["ls"].gen_loss, [[1.2, 3.0]])
    assert (gf > 0).all()


def test_gen_loss_derivatives_by_hand():
    f = [[-1.0, 0.5, 2.0]]
    fv = f[0]
    expected = {
        "ipm": [-1.0] * 3,
        "hinge": [-1.0] * 3,
        "mm": [-sig(v) for v in fv],  # d/df log(1 - sigma) = -sigma
        "ns": [-(1 - sig(v)) for v in fv],  # d/df -log sigma = -(1 - sigma)
        "ls": [v - 1.0 for v in fv],
    }
    for name, exp in expected.items():
        (gf,) = _grads(GAMES[name].gen_loss, f)
        assert gf[0].tolist() == pytest.approx(exp, rel=1e-12), name


# ============================================================================ penalties
PEN_NAMES = ["sobolev", "wgan_gp", "r1", "r2", "dragan"]


def test_penalty_registry():
    assert set(PENALTIES) == {"none", *PEN_NAMES}


def _pcfg(name, on="logit", perturbation="gaussian", scale=0.5):
    return penalty_spec(PenaltyConfig(name=name, weight=1.0, on=on, perturbation=perturbation, scale=scale))


def _data(b=2, m=4, n=6, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(b, m, d, generator=g, dtype=D64) * 0.8 + 0.3
    fake = torch.randn(b, n, d, generator=g, dtype=D64) * 1.2 - 0.2
    return real, fake


KEYS = member_keys([3, 11])


def _eval_penalty(name, critic, params, real, fake, cfg):
    stream = Stream(KEYS, "penalty")  # fresh stream each time: identical eps / delta
    return PENALTIES[name](critic.forward, params, real, fake, stream, cfg)


PEN_CASES = [(n, on, "gaussian") for n in PEN_NAMES for on in ("logit", "probability")] + [
    ("dragan", on, "uniform") for on in ("logit", "probability")
]


@pytest.mark.parametrize("name,on,perturbation", PEN_CASES)
def test_penalty_param_gradient_matches_finite_differences(name, on, perturbation):
    critic = Mlp(d=2, widths=[5], activation="tanh")
    params = {k: v.to(D64) for k, v in critic.init(Stream(KEYS, "critic"), 2).items()}
    # enlarge the weights a little so that |grad f| is of order one (the unit-gap penalties see both sides)
    params = {k: 1.7 * v for k, v in params.items()}
    real, fake = _data()
    cfg = _pcfg(name, on, perturbation)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    val = _eval_penalty(name, critic, leaves, real, fake, cfg)
    assert val.shape == (2,)
    assert torch.isfinite(val).all()
    # the output bias never reaches grad_x f: autograd reports it unused, its true gradient is 0
    grads = torch.autograd.grad(val.sum(), list(leaves.values()), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves.values(), grads)]

    h = 1e-6
    for (k, p), g in zip(params.items(), grads):
        fd = torch.zeros_like(p)
        flat = fd.view(-1)
        for i in range(p.numel()):
            pp = p.clone()
            pp.view(-1)[i] += h
            fp = _eval_penalty(name, critic, {**params, k: pp}, real, fake, cfg).sum()
            pm = p.clone()
            pm.view(-1)[i] -= h
            fm = _eval_penalty(name, critic, {**params, k: pm}, real, fake, cfg).sum()
            flat[i] = (fp - fm) / (2 * h)
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-8, msg=f"{name}/{on}/{k}")
    total = torch.cat([g.reshape(-1) for g in grads])
    assert total.abs().max() > 1e-4  # the check is not vacuous


@pytest.mark.parametrize("name,on,perturbation", PEN_CASES)
def test_penalty_is_per_member(name, on, perturbation):
    """Member 0's penalty does not depend on member 1's parameters or data."""
    critic = Mlp(d=2, widths=[5], activation="tanh")
    params = {k: v.to(D64) for k, v in critic.init(Stream(KEYS, "critic"), 2).items()}
    real, fake = _data()
    cfg = _pcfg(name, on, perturbation)
    base = _eval_penalty(name, critic, params, real, fake, cfg)
    p2 = {k: v.clone() for k, v in params.items()}
    for v in p2.values():
        v[1] = v[1] * 3.0 + 0.1
    real2, fake2 = real.clone(), fake.clone()
    real2[1] += 5.0
    fake2[1] -= 2.0
    other = _eval_penalty(name, critic, p2, real2, fake2, cfg)
    assert other[0].item() == pytest.approx(base[0].item(), rel=1e-12, abs=1e-14)
    assert other[1].item() != pytest.approx(base[1].item(), rel=1e-6)


def test_no_penalty_is_zero():
    real, fake = _data()
    critic = Linear(2, bias=False)
    params = {"w": torch.ones(2, 2, dtype=D64)}
    out = PENALTIES["none"](critic.forward, params, real, fake, Stream(KEYS, "penalty"), _pcfg("none"))
    assert out.shape == (2,) and (out == 0).all()


# ---------------------------------------------------------------------------- hand checks
W = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4]], dtype=D64)


def _linear_case():
    critic = Linear(3, bias=False)
    g = torch.Generator().manual_seed(1)
    real = torch.randn(2, 5, 3, generator=g, dtype=D64)
    fake = torch.randn(2, 7, 3, generator=g, dtype=D64) + 1.0
    return critic, {"w": W.clone()}, real, fake


@pytest.mark.parametrize("perturbation", ["gaussian", "uniform"])
def test_linear_critic_penalties_by_hand(perturbation):
    critic, params, real, fake = _linear_case()
    sq = [sum(v * v for v in row) for row in W.tolist()]
    expected = {
        "sobolev": [s - 1.0 for s in sq],
        "r1": [s / 2 for s in sq],
        "r2": [s / 2 for s in sq],
        "wgan_gp": [(math.sqrt(s) - 1.0) ** 2 for s in sq],
        "dragan": [(math.sqrt(s) - 1.0) ** 2 for s in sq],
    }
    for name, exp in expected.items():
        out = _eval_penalty(name, critic, params, real, fake, _pcfg(name, "logit", perturbation))
        assert out.tolist() == pytest.approx(exp, rel=1e-9, abs=1e-10), name


def test_linear_critic_penalties_on_probability_by_hand():
    """grad_x sigmoid(w.x) = s (1 - s) w: the penalty sees the squashed gradient."""
    critic, params, real, fake = _linear_case()
    for name, pts in (("r1", real), ("r2", fake), ("sobolev", fake)):
        out = _eval_penalty(name, critic, params, real, fake, _pcfg(name, "probability"))
        for b in range(2):
            w = W[b].tolist()
            sq = sum(v * v for v in w)
            vals = []
            for x in pts[b].tolist():
                s = sig(sum(wi * xi for wi, xi in zip(w, x)))
                vals.append((s * (1 - s)) ** 2 * sq)
            mean = sum(vals) / len(vals)
            exp = {"r1": mean / 2, "r2": mean / 2, "sobolev": mean - 1.0}[name]
            assert out[b].item() == pytest.approx(exp, rel=1e-10), (name, b)


class HalfSquare(Critic):
    """f(x) = a/2 |x|^2 per member: grad f = a x, so |grad f| depends on the position."""

    def init(self, stream, b):
        return {"a": torch.ones(b, dtype=D64)}

    def forward(self, params, x):
        return 0.5 * params["a"][:, None] * (x * x).sum(-1)


A = torch.tensor([0.8, 1.9], dtype=D64)
# The penalties draw eps / delta in float32 (the stream's default dtype) and mix them with the
# float64 data, so e.g. 1 - eps is rounded in float32: the manual checks below use rtol 1e-6.


def _quad_case(m=3, n=5, d=2):
    g = torch.Generator().manual_seed(2)
    real = torch.randn(2, m, d, generator=g, dtype=D64) + 0.5
    fake = torch.randn(2, n, d, generator=g, dtype=D64) * 0.7 - 0.3
    return HalfSquare(), {"a": A.clone()}, real, fake


def test_wgan_gp_one_eps_per_pair_and_per_sample_norm():
    critic, params, real, fake = _quad_case(m=3, n=5)
    out = _eval_penalty("wgan_gp", critic, params, real, fake, _pcfg("wgan_gp"))
    eps = Stream(KEYS, "penalty").uniform(5, 1).to(D64)  # (B, N, 1): one eps per (real, fake) pair
    assert eps.shape == (2, 5, 1)
    assert eps.std() > 0.05  # the eps really differ between pairs
    for b in range(2):
        terms = []
        for j in range(5):
            e = eps[b, j, 0].item()
            xr = real[b, j % 3].tolist()  # fake j is paired with real j mod M
            xf = fake[b, j].tolist()
            xh = [e * r + (1 - e) * f for r, f in zip(xr, xf)]
            norm = abs(A[b].item()) * math.sqrt(sum(v * v for v in xh))
            terms.append((norm - 1.0) ** 2)
        assert out[b].item() == pytest.approx(sum(terms) / len(terms), rel=1e-6), b


def test_wgan_gp_differs_from_norm_of_mean_gradient():
    """The penalty is the mean of per-sample (|g_j| - 1)^2, not (|mean g| - 1)^2 or (mean|g| - 1)^2."""
    critic, params, real, fake = _quad_case(m=3, n=5)
    out = _eval_penalty("wgan_gp", critic, params, real, fake, _pcfg("wgan_gp"))
    eps = Stream(KEYS, "penalty").uniform(5, 1).to(D64)
    idx = torch.arange(5) % 3
    xh = eps * real[:, idx] + (1 - eps) * fake
    norms = A[:, None] * xh.norm(dim=-1)
    assert not torch.allclose(out, (norms.mean(-1) - 1) ** 2, rtol=1e-6)
    torch.testing.assert_close(out, ((norms - 1) ** 2).mean(-1), rtol=1e-6, atol=1e-9)


def test_r1_r2_sobolev_on_position_dependent_critic():
    critic, params, real, fake = _quad_case()
    a2 = A**2
    r1 = _eval_penalty("r1", critic, params, real, fake, _pcfg("r1"))
    r2 = _eval_penalty("r2", critic, params, real, fake, _pcfg("r2"))
    sob = _eval_penalty("sobolev", critic, params, real, fake, _pcfg("sobolev"))
    torch.testing.assert_close(r1, 0.5 * a2 * (real**2).sum(-1).mean(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r2, 0.5 * a2 * (fake**2).sum(-1).mean(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sob, a2 * (fake**2).sum(-1).mean(-1) - 1.0, rtol=1e-12, atol=1e-12)


def test_dragan_gaussian_on_position_dependent_critic():
    critic, params, real, fake = _quad_case(m=4)
    scale = 0.3
    out = _eval_penalty("dragan", critic, params, real, fake, _pcfg("dragan", perturbation="gaussian", scale=scale))
    delta = scale * Stream(KEYS, "penalty").normal(4, 2).to(D64)
    norms = A[:, None] * (real + delta).norm(dim=-1)
    torch.testing.assert_close(out, ((norms - 1) ** 2).mean(-1), rtol=1e-6, atol=1e-9)
    # and the perturbation matters (a point-wise penalty at the data alone would differ)
    norms0 = A[:, None] * real.norm(dim=-1)
    assert not torch.allclose(out, ((norms0 - 1) ** 2).mean(-1), rtol=1e-4)


def test_dragan_uniform_on_position_dependent_critic():
    """delta = scale * std(member's real batch, all coordinates) * U[0, 1) per coordinate."""
    critic, params, real, fake = _quad_case(m=4)
    scale = 0.5
    out = _eval_penalty("dragan", critic, params, real, fake, _pcfg("dragan", perturbation="uniform", scale=scale))
    u = Stream(KEYS, "penalty").uniform(4, 2).to(D64)
    std = real.reshape(2, -1).std(-1, correction=0)  # ddof 0, as numpy's x.std() in the DRAGAN code
    delta = scale * std[:, None, None] * u
    assert (delta >= 0).all()
    norms = A[:, None] * (real + delta).norm(dim=-1)
    torch.testing.assert_close(out, ((norms - 1) ** 2).mean(-1), rtol=1e-6, atol=1e-9)


def test_wgan_gp_gradient_in_a_by_hand():
    """d/da mean((a |x_hat| - 1)^2) = mean(2 (a |x_hat| - 1) |x_hat|) for a > 0."""
    critic, params, real, fake = _quad_case(m=3, n=5)
    a = params["a"].clone().requires_grad_(True)
    out = _eval_penalty("wgan_gp", critic, {"a": a}, real, fake, _pcfg("wgan_gp"))
    (ga,) = torch.autograd.grad(out.sum(), a)
    eps = Stream(KEYS, "penalty").uniform(5, 1).to(D64)
    r = (eps * real[:, torch.arange(5) % 3] + (1 - eps) * fake).norm(dim=-1)
    torch.testing.assert_close(ga, (2 * (A[:, None] * r - 1) * r).mean(-1), rtol=1e-6, atol=1e-9)


def test_input_grad_matches_hand_gradient():
    critic, params, real, _ = _quad_case()
    g = input_grad(critic.forward, params, real, "logit")
    torch.testing.assert_close(g, A[:, None, None] * real)
    gp = input_grad(critic.forward, params, real, "probability")
    f = 0.5 * A[:, None] * (real**2).sum(-1)
    s = torch.sigmoid(f)
    torch.testing.assert_close(gp, (s * (1 - s))[..., None] * A[:, None, None] * real)


# ============================================================================ force
def _sim(game, force_mode="per_particle"):
    cfg = Config(
        critic=LinearCritic(name="linear", bias=True),
        objective=game,
        optim=OptimConfig(generator=GeneratorOptim(force=force_mode)),
    )
    return build(cfg)


@pytest.mark.parametrize("game", BASE)
def test_force_is_minus_input_gradient_of_gen_loss(game):
    sim = _sim(game)
    params = {"w": torch.tensor([[1.5], [-0.7]]), "c": torch.tensor([0.2, -0.4])}
    x = torch.tensor([[[-1.0], [0.0], [0.5]], [[2.0], [-0.3], [1.0]]])
    F = particle_force(sim, params, x)
    assert F.shape == x.shape
    for b in range(2):
        w, c = params["w"][b, 0].item(), params["c"][b].item()
        for j in range(3):
            f = w * x[b, j, 0].item() + c
            dl_df = {"ipm": -1.0, "hinge": -1.0, "mm": -sig(f), "ns": -(1 - sig(f)), "ls": f - 1.0}[game]
            assert F[b, j, 0].item() == pytest.approx(-dl_df * w, rel=1e-5, abs=1e-6), (b, j)


def test_force_mean_divides_by_n():
    x = torch.tensor([[[-1.0], [0.0], [0.5], [1.5]]])
    params = {"w": torch.tensor([[0.9]]), "c": torch.tensor([0.1])}
    fp = particle_force(_sim("ns"), params, x)
    fm = particle_force(_sim("ns", "mean"), params, x)
    torch.testing.assert_close(fm, fp / 4)


# ----------------------------------------------------------------------------- Fedus et al.'s named games
@pytest.mark.parametrize("name, base, penalty", [("wgan", "ipm", None), ("wgan_gp", "ipm", "wgan_gp"),
                                                 ("gan_gp", "ns", "wgan_gp"), ("dragan", "mm", "dragan"),
                                                 ("dragan_ns", "ns", "dragan")])
def test_named_games_are_their_base_game_plus_regulariser(name, base, penalty):
    import gandy

    fr, ff = torch.tensor([[0.0, 2.0]]), torch.tensor([[-1.0, 1.0]])
    g, b = GAMES[name], GAMES[base]
    torch.testing.assert_close(g.critic_loss(fr, ff), b.critic_loss(fr, ff))
    torch.testing.assert_close(g.gen_loss(ff), b.gen_loss(ff))
    cfg = gandy.load_config({"objective": name})
    if penalty:
        assert cfg.penalty.name == penalty and cfg.penalty.weight == 10.0  # Fedus et al.: lambda = 10
        assert cfg.optim.critic.clip is None
    else:
        assert cfg.penalty.name == "none" and cfg.optim.critic.clip == 0.01
    again = gandy.load_config(cfg)  # a resolved config reloads to itself
    assert again == cfg


def test_named_game_refuses_a_different_penalty_and_keeps_a_given_weight():
    import gandy
    from gandy.runs.config import ConfigError

    with pytest.raises(ConfigError) as e:
        gandy.load_config({"objective": "gan_gp", "penalty": {"name": "r1", "weight": 1.0}})
    assert e.value.field == "penalty.name"
    assert gandy.load_config({"objective": "dragan_ns", "penalty": {"weight": 3.0}}).penalty.weight == 3.0


def test_wgan_clipping_keeps_every_critic_weight_in_range():
    import gandy
    from gandy.core.step import advance, start
    from gandy.runs.build import build

    cfg = gandy.load_config({"objective": "wgan", "critic": {"name": "mlp", "widths": [16, 16]},
                             "optim": {"critic": {"name": "rmsprop", "lr": 0.05, "steps": 3}}, "seeds": [0, 1]})
    sim = build(cfg)
    st = start(sim, [0, 1])
    assert max(float(v.abs().max()) for v in st.params.values()) > 0.01  # the init is not clipped yet
    for _ in range(5):
        advance(sim, st)
    for k, v in st.params.items():
        assert float(v.abs().max()) <= 0.01 + 1e-9, k
    assert any(float(v.abs().max()) == pytest.approx(0.01) for v in st.params.values())  # clipping was active


def test_rmsprop_matches_torch():
    from gandy.core.optim import BatchedOptimizer
    from gandy.runs.config import CriticOptim

    torch.manual_seed(0)
    w0 = torch.randn(2, 3, dtype=torch.float64)
    lrs = torch.tensor([0.01, 0.03], dtype=torch.float64)
    opt = BatchedOptimizer(optim_spec(CriticOptim(name="rmsprop", lr=0.01, weight_decay=0.1), "optim.critic"), {"w": w0}, lrs)
    p = {"w": w0.clone()}
    refs = [w0[i].clone().requires_grad_(True) for i in range(2)]
    topts = [torch.optim.RMSprop([refs[i]], lr=float(lrs[i]), alpha=0.99, eps=1e-8, weight_decay=0.1) for i in range(2)]
    for _ in range(5):
        grads = {"w": 2 * p["w"] - 1.0}
        p = opt.step(p, grads)
        for i in range(2):
            topts[i].zero_grad()
            (refs[i] ** 2 - refs[i]).sum().backward()
            topts[i].step()
    torch.testing.assert_close(p["w"], torch.stack([r.detach() for r in refs]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(GAMES))
def test_game_derivatives_by_hand_match_autograd(name):
    """Each game's hand-written dL/df (critic) and dl_G/df (generator), which the closed-form engine
    uses instead of autograd, against autograd of its loss; logits include the hinge's kinks
    (f = +-1, where autograd's relu takes the derivative 0) and large ones (the sigmoids saturate)."""
    game = GAMES[name]
    assert game.critic_dloss is not None and game.gen_dloss is not None  # every named game has both
    g = torch.Generator().manual_seed(3)
    special = torch.tensor([-1.0, 1.0, 0.0, -30.0, 30.0])
    fr = torch.cat([3 * torch.randn(2, 27, generator=g, dtype=torch.float64), special.double().expand(2, 5)], 1)
    ff = torch.cat([3 * torch.randn(2, 14, generator=g, dtype=torch.float64), special.double().expand(2, 5)], 1)
    leaves = [fr.clone().requires_grad_(True), ff.clone().requires_grad_(True)]
    want = torch.autograd.grad(game.critic_loss(*leaves).sum(), leaves)
    got = game.critic_dloss(fr, ff)
    for w, h in zip(want, got):
        torch.testing.assert_close(h, w, rtol=1e-12, atol=1e-15)
    leaf = ff.clone().requires_grad_(True)
    (want_g,) = torch.autograd.grad(game.gen_loss(leaf).sum(), leaf)
    torch.testing.assert_close(game.gen_dloss(ff), want_g, rtol=1e-12, atol=1e-15)
