"""Batched critics (gandy.core.nets) and the batched critic optimiser (gandy.core.optim.BatchedOptimizer)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gandy.core.nets import CRITICS
from gandy.core.nets.base import ACTIVATIONS
from gandy.core.nets.features import Linear, RandomFeatures, Rbf
from gandy.core.nets.mlp import Mlp
from gandy.core.optim import BatchedOptimizer
from gandy.core.rng import Stream, member_keys
from gandy.runs.build import critic_of, optim_spec, target_of
from gandy.runs.config import (
    CriticOptim,
    LinearCritic,
    MlpCritic,
    RandomFeaturesCritic,
    RbfCritic,
    Ring8Target,
    TwoModes1dTarget,
)

D64 = torch.float64


def _target(d):
    if d == 1:
        return target_of(TwoModes1dTarget(name="two_modes_1d"))
    return target_of(Ring8Target(name="ring8"))


def _init_sampler(d):
    return lambda stream, n: stream.normal(n, d)


CFGS = (
    [MlpCritic(name="mlp", widths=[7, 5], activation=a) for a in ACTIVATIONS]
    + [
        RbfCritic(name="rbf", sigma=0.5, centers=6),
        RandomFeaturesCritic(name="random_features", features=8, sigma=1.0),
        LinearCritic(name="linear", bias=True),
        LinearCritic(name="linear", bias=False),
    ]
)
IDS = [f"{c.name}-{getattr(c, 'activation', getattr(c, 'bias', ''))}" for c in CFGS]


def _build(cfg, d):
    return critic_of(cfg, d, _target(d), _init_sampler(d))


def _params(critic, keys, seed=0):
    """init, then give the zero-initialised learned parts (a, w, c) random values."""
    p = critic.init(Stream(keys, "critic"), keys.shape[0])
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in p.items():
        if k in critic.frozen or v.abs().sum() > 0:
            out[k] = v
        else:
            out[k] = torch.randn(v.shape, generator=g, dtype=v.dtype)
    return out


def _x(b, m, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(b, m, d, generator=g)


def test_registry_and_activations():
    assert set(CRITICS) == {"mlp", "rbf", "random_features", "linear", "dcgan"}
    assert set(ACTIVATIONS) == {"relu", "leaky_relu", "tanh", "sigmoid", "gelu", "sin"}


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_init_and_forward_shapes(cfg, d):
    critic = _build(cfg, d)
    b, m = 3, 11
    params = critic.init(Stream(member_keys(range(b)), "critic"), b)
    for k, v in params.items():
        assert v.shape[0] == b, k
        assert torch.isfinite(v).all(), k
    for k in critic.frozen:
        assert k in params
    out = critic.forward(params, _x(b, m, d))
    assert out.shape == (b, m)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_members_are_independent(cfg, d):
    critic = _build(cfg, d)
    keys = member_keys([0, 1, 2])
    params = _params(critic, keys)
    x = _x(3, 9, d)
    base = critic.forward(params, x)
    # perturb every parameter (frozen ones too) of member 0 and member 0's inputs
    g = torch.Generator().manual_seed(5)
    p2 = {k: v.clone() for k, v in params.items()}
    for v in p2.values():
        v[0] += 0.5 * torch.randn(v[0].shape, generator=g)
    x2 = x.clone()
    x2[0] += 1.0
    out = critic.forward(p2, x2)
    torch.testing.assert_close(out[1:], base[1:], rtol=0, atol=0)
    assert not torch.allclose(out[0], base[0])
    # a member alone gives the same output as inside the batch
    solo = critic.forward({k: v[1:2] for k, v in params.items()}, x[1:2])
    torch.testing.assert_close(solo[0], base[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_init_is_batch_independent(cfg, d):
    """A member's initial parameters do not depend on which members share its batch."""
    critic = _build(cfg, d)
    alone = critic.init(Stream(member_keys([7]), "critic"), 1)
    inside = critic.init(Stream(member_keys([3, 7, 9]), "critic"), 3)
    for k in alone:
        torch.testing.assert_close(inside[k][1], alone[k][0], rtol=0, atol=0)
    if any(v.abs().sum() > 0 for v in inside.values()):
        assert any(not torch.equal(inside[k][0], inside[k][1]) for k in inside)


# ---------------------------------------------------------------------------- MLP
_TORCH_ACT = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "sin": lambda: _Sin(),
}


class _Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("d", [1, 2])
def test_mlp_matches_torch_nn(activation, d):
    widths = [7, 5]
    critic = Mlp(d, widths, activation)
    b = 3
    params = {k: v.to(D64) for k, v in critic.init(Stream(member_keys(range(b)), "critic"), b).items()}
    x = _x(b, 13, d).to(D64)
    out = critic.forward(params, x)
    dims = [d, *widths, 1]
    for m in range(b):
        layers = []
        for i, (fi, fo) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.Linear(fi, fo).to(D64)
            with torch.no_grad():
                lin.weight.copy_(params[f"w{i}"][m].T)
                lin.bias.copy_(params[f"b{i}"][m])
            layers.append(lin)
            if i < len(dims) - 2:
                layers.append(_TORCH_ACT[activation]())
        net = nn.Sequential(*layers)
        with torch.no_grad():
            ref = net(x[m])[:, 0]
        torch.testing.assert_close(out[m], ref, rtol=1e-12, atol=1e-12)


def test_mlp_by_hand_loop():
    """One hidden layer, tanh, written as explicit sums."""
    critic = Mlp(2, [3], "tanh")
    params = {
        "w0": torch.tensor([[[0.5, -1.0, 0.2], [1.5, 0.3, -0.7]]], dtype=D64),
        "b0": torch.tensor([[0.1, -0.2, 0.3]], dtype=D64),
        "w1": torch.tensor([[[2.0], [-1.0], [0.5]]], dtype=D64),
        "b1": torch.tensor([[0.25]], dtype=D64),
    }
    xs = [[0.3, -1.1], [2.0, 0.5]]
    out = critic.forward(params, torch.tensor([xs], dtype=D64))
    for j, x in enumerate(xs):
        f = 0.25
        for k in range(3):
            pre = params["b0"][0, k].item() + sum(x[i] * params["w0"][0, i, k].item() for i in range(2))
            f += math.tanh(pre) * params["w1"][0, k, 0].item()
        assert out[0, j].item() == pytest.approx(f, rel=1e-12)


def test_leaky_relu_slope_is_0_2():
    x = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    assert ACTIVATIONS["leaky_relu"](x).tolist() == pytest.approx([-0.4, -0.1, 0.0, 1.5])


def test_mlp_init_is_torch_default_uniform():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, like nn.Linear."""
    critic = Mlp(4, [64, 32], "relu")
    params = critic.init(Stream(member_keys(range(8)), "critic"), 8)
    assert params["w0"].shape == (8, 4, 64) and params["b0"].shape == (8, 64)
    assert params["w1"].shape == (8, 64, 32) and params["b1"].shape == (8, 32)
    assert params["w2"].shape == (8, 32, 1) and params["b2"].shape == (8, 1)
    for i, fan_in in enumerate([4, 64, 32]):
        bound = 1 / math.sqrt(fan_in)
        w = params[f"w{i}"]
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound
        n = w.numel()
        # uniform on [-bound, bound]: mean 0, variance bound^2 / 3 (4-sigma tolerances)
        assert abs(w.mean().item()) < 4 * bound / math.sqrt(3 * n)
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=4 * math.sqrt(4 / 45) * 3 / math.sqrt(n))
        assert params[f"b{i}"].abs().max() <= bound


# ---------------------------------------------------------------------------- RBF
@pytest.mark.parametrize("d", [1, 2])
def test_rbf_matches_direct_sum(d):
    sigma = 0.7
    critic = Rbf(d, sigma, 6, _target(d), _init_sampler(d))
    b = 2
    params = _params(critic, member_keys([4, 5]))
    params = {k: v.to(D64) for k, v in params.items()}
    x = _x(b, 9, d).to(D64)
    out = critic.forward(params, x)
    for m in range(b):
        for j in range(9):
            f = 0.0
            for c in range(6):
                sq = sum((x[m, j, i].item() - params["centers"][m, c, i].item()) ** 2 for i in range(d))
                f += params["a"][m, c].item() * math.exp(-sq / (2 * sigma**2))
            assert out[m, j].item() == pytest.approx(f, rel=1e-9, abs=1e-12)


def test_rbf_float32_matches_float64():
    critic = Rbf(2, 0.5, 6, _target(2), _init_sampler(2))
    params = _params(critic, member_keys([4, 5]))
    x = _x(2, 9, 2)
    out32 = critic.forward(params, x)
    out64 = critic.forward({k: v.to(D64) for k, v in params.items()}, x.to(D64))
    torch.testing.assert_close(out32.to(D64), out64, rtol=1e-4, atol=1e-5)


def test_rbf_init_centres_half_target_half_sampler():
    target = _target(2)
    critic = Rbf(2, 0.5, 7, target, lambda stream, n: 100.0 + stream.normal(n, 2))
    params = critic.init(Stream(member_keys([0, 1]), "critic"), 2)
    assert params["centers"].shape == (2, 7, 2)
    assert params["a"].shape == (2, 7) and (params["a"] == 0).all()
    assert critic.frozen == ("centers",)
    half = 7 // 2
    near_mode = torch.cdist(params["centers"][:, :half].reshape(-1, 2), target.modes).min(-1).values
    assert (near_mode < 0.5).all()  # ring8 std 0.05
    far = params["centers"][:, half:]
    assert ((far - 100.0).norm(dim=-1) < 6).all()


# ---------------------------------------------------------------------------- random features
@pytest.mark.parametrize("d", [1, 2])
def test_random_features_match_direct_sum(d):
    nf = 8
    critic = RandomFeatures(d, nf, 1.3)
    params = {k: v.to(D64) for k, v in _params(critic, member_keys([2, 3])).items()}
    assert params["omega"].shape == (2, d, nf) and params["phase"].shape == (2, nf)
    x = _x(2, 5, d).to(D64)
    out = critic.forward(params, x)
    for m in range(2):
        for j in range(5):
            f = 0.0
            for k in range(nf):
                arg = sum(params["omega"][m, i, k].item() * x[m, j, i].item() for i in range(d))
                f += params["a"][m, k].item() * math.cos(arg + params["phase"][m, k].item())
            assert out[m, j].item() == pytest.approx(math.sqrt(2.0 / nf) * f, rel=1e-9, abs=1e-12)


def test_random_features_init_distribution():
    sigma = 2.0
    critic = RandomFeatures(3, 4000, sigma)
    params = critic.init(Stream(member_keys([0, 1]), "critic"), 2)
    om, ph = params["omega"], params["phase"]
    n = om.numel()
    assert abs(om.mean().item()) < 4 * (1 / sigma) / math.sqrt(n)
    assert om.std().item() == pytest.approx(1 / sigma, rel=0.03)
    assert ph.min() >= 0 and ph.max() < 2 * math.pi
    assert ph.mean().item() == pytest.approx(math.pi, rel=0.03)
    assert (params["a"] == 0).all()
    assert set(critic.frozen) == {"omega", "phase"}


# ---------------------------------------------------------------------------- linear
@pytest.mark.parametrize("bias", [True, False])
def test_linear_is_w_dot_x_plus_c(bias):
    critic = Linear(3, bias=bias)
    params = critic.init(Stream(member_keys([0, 1]), "critic"), 2)
    assert set(params) == ({"w", "c"} if bias else {"w"})
    assert params["w"].shape == (2, 3) and (params["w"] == 0).all()
    params = {"w": torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])}
    if bias:
        params["c"] = torch.tensor([0.25, -4.0])
    x = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 0.0, -2.0]], [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]])
    out = critic.forward(params, x)
    c = [0.25, -4.0] if bias else [0.0, 0.0]
    expected = [[-0.5 + c[0], 1.0 + c[0]], [3.0 + c[1], 1.5 + c[1]]]
    assert out.tolist() == [pytest.approx(r) for r in expected]


# ============================================================================ optimiser
def _quadratic(params, h, t):
    """grad of 0.5 sum h (p - t)^2, per key."""
    return {k: h[k] * (params[k] - t[k]) for k in params}


def _quad_setup(b=3):
    g = torch.Generator().manual_seed(0)
    shapes = {"w": (b, 2, 3), "c": (b,)}
    p0 = {k: torch.randn(s, generator=g, dtype=D64) for k, s in shapes.items()}
    h = {k: torch.rand(s, generator=g, dtype=D64) * 3 + 0.5 for k, s in shapes.items()}
    t = {k: torch.randn(s, generator=g, dtype=D64) for k, s in shapes.items()}
    return p0, h, t


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_adam_matches_torch_optim_adam(wd, betas):
    b = 3
    lrs = [0.1, 0.03, 0.5]
    p0, h, t = _quad_setup(b)
    cfg = CriticOptim(name="adam", lr=0.1, weight_decay=wd, betas=betas, eps=1e-8)
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, torch.tensor(lrs, dtype=D64))
    params = {k: v.clone() for k, v in p0.items()}
    # reference: one torch Adam per member, with that member's learning rate
    refs = []
    for m in range(b):
        leaves = {k: v[m].clone().requires_grad_(True) for k, v in p0.items()}
        refs.append((leaves, torch.optim.Adam(list(leaves.values()), lr=lrs[m], betas=betas, eps=1e-8, weight_decay=wd)))
    for _ in range(5):
        params = opt.step(params, _quadratic(params, h, t))
        for m, (leaves, ropt) in enumerate(refs):
            ropt.zero_grad()
            loss = sum((0.5 * h[k][m] * (leaves[k] - t[k][m]) ** 2).sum() for k in leaves)
            loss.backward()
            ropt.step()
    for m, (leaves, _) in enumerate(refs):
        for k in leaves:
            torch.testing.assert_close(params[k][m], leaves[k].detach(), rtol=1e-9, atol=1e-10)
    # it did move (differently per member, since the learning rates differ)
    assert not torch.allclose(params["w"], p0["w"])


@pytest.mark.parametrize("wd", [0.0, 0.2])
def test_sgd_per_member_learning_rate(wd):
    b = 3
    lrs = torch.tensor([0.1, 0.02, 0.4], dtype=D64)
    p0, h, t = _quad_setup(b)
    cfg = CriticOptim(name="sgd", lr=0.1, weight_decay=wd)
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p0, lrs)
    params = {k: v.clone() for k, v in p0.items()}
    manual = {k: v.clone() for k, v in p0.items()}
    for _ in range(5):
        grads = _quadratic(params, h, t)
        params = opt.step(params, grads)
        mg = _quadratic(manual, h, t)
        for k in manual:
            new = manual[k].clone()
            for m in range(b):
                new[m] = manual[k][m] - lrs[m].item() * (mg[k][m] + wd * manual[k][m])
            manual[k] = new
    for k in params:
        torch.testing.assert_close(params[k], manual[k], rtol=1e-12, atol=1e-12)


def test_sgd_single_step_by_hand():
    cfg = CriticOptim(name="sgd", lr=1.0, weight_decay=0.5)
    p = {"a": torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=D64)}
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p, torch.tensor([0.1, 0.01], dtype=D64))
    new = opt.step(p, {"a": torch.tensor([[2.0, 2.0], [-1.0, 4.0]], dtype=D64)})
    # p - lr (g + wd p)
    assert new["a"][0].tolist() == pytest.approx([1.0 - 0.1 * (2.0 + 0.5), -2.0 - 0.1 * (2.0 - 1.0)])
    assert new["a"][1].tolist() == pytest.approx([3.0 - 0.01 * (-1.0 + 1.5), 0.5 - 0.01 * (4.0 + 0.25)])
    assert p["a"][0, 0].item() == 1.0  # the input dict is not modified in place


def test_adam_first_step_is_lr_times_sign():
    """With bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g)."""
    cfg = CriticOptim(name="adam", lr=0.1)
    p = {"a": torch.zeros(2, 3, dtype=D64)}
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p, torch.tensor([0.1, 0.3], dtype=D64))
    g = torch.tensor([[2.0, -0.5, 1e-3], [-4.0, 1.0, 0.2]], dtype=D64)
    new = opt.step(p, {"a": g})
    expected = -torch.tensor([[0.1], [0.3]], dtype=D64) * torch.sign(g)
    torch.testing.assert_close(new["a"], expected, rtol=1e-4, atol=1e-6)


def test_mask_zeroes_dead_members_state():
    cfg = CriticOptim(name="adam", lr=0.1)
    p = {"a": torch.ones(3, 2, dtype=D64)}
    opt = BatchedOptimizer(optim_spec(cfg, "optim.critic"), p, torch.full((3,), 0.1, dtype=D64))
    opt.step(p, {"a": torch.tensor([[1.0, 2.0], [float("nan"), 1.0], [3.0, 4.0]], dtype=D64)})
    opt.mask_(torch.tensor([True, False, True]))
    assert (opt.m["a"][1] == 0).all() and (opt.v["a"][1] == 0).all()
    assert (opt.m["a"][0] != 0).all() and (opt.v["a"][2] != 0).all()
    assert torch.isfinite(opt.m["a"]).all() and torch.isfinite(opt.v["a"]).all()
