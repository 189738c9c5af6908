"""Batched DCGAN networks: each member equals a plain torch.nn network with its weights, members
never interact, input gradients match finite differences, and double backward works."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gandy.core.nets.dcgan import DcganCritic, DcganGenerator
from gandy.core.rng import Stream, member_keys


def _stream(b=3, name="w"):
    return Stream(member_keys(list(range(b))), name)


def _perturb_norm(params):
    # init has scales 1 and shifts 0: move them so that the affine part is tested too
    g = torch.Generator().manual_seed(0)
    return {k: v + 0.3 * torch.randn(v.shape, generator=g) if k.startswith("n") else v for k, v in params.items()}


def _norm_module(kind, c):
    if kind == "batch":
        return nn.BatchNorm2d(c, eps=1e-5, track_running_stats=False)
    if kind == "layer":
        return nn.GroupNorm(1, c, eps=1e-5)
    return nn.Identity()


def _set_norm(mod, gamma, beta):
    if not isinstance(mod, nn.Identity):
        mod.weight.data, mod.bias.data = gamma.clone(), beta.clone()


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_critic_member_equals_a_torch_nn_critic(norm):
    c, w, b = 3, 8, 3
    crit = DcganCritic(c, w, norm)
    p = _perturb_norm(crit.init(_stream(b), b))
    x = torch.rand(b, 10, c * 784) * 2 - 1
    f = crit.forward(p, x)
    for i in range(b):
        conv1, conv2 = nn.Conv2d(c, w, 4, 2, 1), nn.Conv2d(w, 2 * w, 4, 2, 1)
        conv1.weight.data, conv1.bias.data = p["c1_w"][i].clone(), p["c1_b"][i].clone()
        conv2.weight.data, conv2.bias.data = p["c2_w"][i].clone(), p["c2_b"][i].clone()
        nm = _norm_module(norm, 2 * w)
        if norm != "none":
            _set_norm(nm, p["n_g"][i], p["n_b"][i])
        fc = nn.Linear(2 * w * 49, 1)
        fc.weight.data, fc.bias.data = p["fc_w"][i][None].clone(), p["fc_b"][i][None].clone()
        net = nn.Sequential(conv1, nn.LeakyReLU(0.2), conv2, nm, nn.LeakyReLU(0.2), nn.Flatten(), fc).train()
        ref = net(x[i].reshape(10, c, 28, 28))[:, 0]
        torch.testing.assert_close(f[i], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_generator_member_equals_a_torch_nn_generator(norm):
    k, c, w, b = 5, 1, 8, 2
    gen = DcganGenerator(k, c, w, norm)
    p = _perturb_norm(gen.init(_stream(b), b))
    z = gen.latent(_stream(b, "z"), 7)
    out = gen.forward(p, z)
    assert out.shape == (b, 7, c * 784) and float(out.abs().max()) <= 1.0
    for i in range(b):
        fc = nn.Linear(k, 2 * w * 49)
        fc.weight.data, fc.bias.data = p["fc_w"][i].T.clone(), p["fc_b"][i].clone()
        up1, up2 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ConvTranspose2d(w, c, 4, 2, 1)
        up1.weight.data, up1.bias.data = p["up1_w"][i].clone(), p["up1_b"][i].clone()
        up2.weight.data, up2.bias.data = p["up2_w"][i].clone(), p["up2_b"][i].clone()
        n0, n1 = _norm_module(norm, 2 * w), _norm_module(norm, w)
        if norm != "none":
            _set_norm(n0, p["n0_g"][i], p["n0_b"][i])
            _set_norm(n1, p["n1_g"][i], p["n1_b"][i])
        h = fc(z[i]).reshape(7, 2 * w, 7, 7)
        ref = torch.tanh(up2(torch.relu(n1(up1(torch.relu(n0(h)))))))
        torch.testing.assert_close(out[i], ref.reshape(7, -1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_members_never_interact(norm):
    gen, crit = DcganGenerator(4, 1, 4, norm), DcganCritic(1, 4, norm)
    pg, pc = gen.init(_stream(2), 2), crit.init(_stream(2, "c"), 2)
    z = gen.latent(_stream(2, "z"), 6)
    x = gen.forward(pg, z)
    f = crit.forward(pc, x)
    pg2 = {k: torch.cat([v[:1] * 3.0 + 1.0, v[1:]]) for k, v in pg.items()}  # member 0 changed only
    z2 = torch.cat([z[:1] * -2.0, z[1:]])
    x2 = gen.forward(pg2, z2)
    pc2 = {k: torch.cat([v[:1] * 5.0 - 1.0, v[1:]]) for k, v in pc.items()}
    f2 = crit.forward(pc2, x2)
    torch.testing.assert_close(x2[1], x[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(f2[1], f[1], rtol=0, atol=1e-6)
    assert not torch.allclose(f2[0], f[0])


@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
def test_critic_input_gradient_matches_finite_differences_and_double_backward_works(norm):
    torch.manual_seed(0)
    crit = DcganCritic(1, 3, norm)
    p = {k: v.double() for k, v in _perturb_norm(crit.init(_stream(2), 2)).items()}
    p = {k: v * (5.0 if k.endswith("_w") else 1.0) for k, v in p.items()}  # larger weights: a non-trivial f
    x = (torch.rand(2, 4, 784, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: crit.forward(p, x), (x,), eps=1e-6, atol=1e-5)
    # the gradient-penalty path: d/dparams |grad_x f|^2 is finite and not zero
    train = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    (g,) = torch.autograd.grad(crit.forward(train, x).sum(), x, create_graph=True)
    grads = torch.autograd.grad((g * g).sum(), [train["c1_w"], train["fc_w"]])
    assert all(torch.isfinite(t).all() and t.abs().sum() > 0 for t in grads)


def test_init_follows_dcgan():
    gen, crit = DcganGenerator(64, 1, 32, "batch"), DcganCritic(1, 32, "layer")
    pg, pc = gen.init(_stream(4), 4), crit.init(_stream(4, "c"), 4)
    for w in (pg["fc_w"], pg["up1_w"], pc["c1_w"], pc["c2_w"]):
        assert float(w.std()) == pytest.approx(0.02, rel=0.05) and abs(float(w.mean())) < 2e-3
    assert (pg["fc_b"] == 0).all() and (pg["n0_g"] == 1).all() and (pc["n_b"] == 0).all()
    assert pg["up1_w"].shape == (4, 64, 32, 4, 4) and pc["c1_w"].shape == (4, 32, 1, 4, 4)


def test_sgd_on_a_toy_objective_lowers_it_for_every_member():
    gen = DcganGenerator(8, 1, 4, "batch")
    p = gen.init(_stream(3), 3)
    z = gen.latent(_stream(3, "z"), 16)
    target = -0.5  # every pixel towards -0.5

    def loss(params):
        return ((gen.forward(params, z) - target) ** 2).mean((1, 2))  # (B,)

    before = loss(p)
    for _ in range(20):
        train = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        grads = torch.autograd.grad(loss(train).sum(), list(train.values()))
        p = {k: v - 0.5 * g for (k, v), g in zip(p.items(), grads)}
    assert (loss(p) < 0.7 * before).all()
