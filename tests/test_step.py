"""The step written once (gandy.core.step): the movers against hand computation, and one advance
whatever mover carries the particles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gandy
from gandy.core.errors import ConfigError
from gandy.core.kernels import Dense, TwoNumber
from gandy.core.step import Particles, Sides, TorchNetwork, advance, start
from gandy.runs import config as C
from gandy.runs.build import build

TINY = {"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
        "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.3}, "optim": {"generator": {"lr": 0.05}},
        "steps": 3, "seeds": [0, 1]}


def test_particles_move_by_eta_k_f():
    """Particles(kernel).step_x is x + lr K F with the kernel's own numbers (per member lr)."""
    sim = build(C.load_config(TINY))
    k = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 3.0]])
    x, f = torch.randn(2, 3, 2), torch.randn(2, 3, 2)
    lr = torch.tensor([0.1, 0.01])
    got = Particles(Dense(k, "test")).step_x(sim, x, f, lr, None, None)
    want = torch.stack([x[i] + lr[i] * k @ f[i] for i in range(2)])
    torch.testing.assert_close(got, want)


def test_sides_of_the_config_kernel_equal_the_batched_step():
    """Two members each moved by their own Particles() slice give exactly the batched step."""
    sim = build(C.load_config(TINY))
    a, b = start(sim, [0, 1]), start(sim, [0, 1])
    for _ in range(3):
        advance(sim, a)
        advance(sim, b, Sides([Particles(), Particles()]))
    assert torch.equal(a.x, b.x)
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_sides_keep_each_kernel_own_numbers():
    """A side given its own kernel ignores the members' g1, g2: a TwoNumber(1, 0) side moves each
    particle by lr F alone, where the config's kernel (g2 = 0.3) couples them."""
    sim = build(C.load_config(TINY))
    x, f = torch.randn(2, 8, 1), torch.randn(2, 8, 1)
    lr, g1, g2 = torch.full((2,), 0.1), torch.ones(2), torch.full((2,), 0.3)
    got = Sides([Particles(TwoNumber(8, 1.0, 0.0)), Particles()]).step_x(sim, x, f, lr, g1, g2)
    torch.testing.assert_close(got[0], x[0] + 0.1 * f[0])
    torch.testing.assert_close(got[1], x[1] + 0.1 * (0.7 * f[1] + 0.3 * f[1].sum(0, keepdim=True)))


def test_torch_network_takes_the_gradient_step_of_its_outputs_force():
    """For a linear network G(z) = W z + b, theta += lr J^T F is W += lr sum_j F_j z_j^T, b += lr sum_j F_j."""
    sim = build(C.load_config(TINY))
    net = torch.nn.Linear(3, 2)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    z, f = torch.randn(5, 3), torch.randn(1, 5, 2)
    out = TorchNetwork(net, z).step_x(sim, torch.zeros(1, 5, 2), f, torch.tensor([0.1]), None, None)
    w1, b1 = w0 + 0.1 * f[0].T @ z, b0 + 0.1 * f[0].sum(0)
    torch.testing.assert_close(net.weight.detach(), w1)
    torch.testing.assert_close(net.bias.detach(), b1)
    torch.testing.assert_close(out[0], z @ w1.T + b1)


@pytest.mark.parametrize("over", [[], ["objective=ns", "penalty.name=none", "critic.activation=tanh"],
                                  ["penalty={name: r1, weight: 0.5}", "critic={name: random_features, features: 64}"]])
def test_compiled_engine_agrees_with_eager_over_200_steps(over):
    """engine: compiled (torch.func + torch.compile) against the eager reference: the same draws,
    the same phases, order parameters and particles equal to rounding after 200 steps."""
    base = ["steps=200", "log_every=50", "seeds=[0, 1, 2]", *over]
    eager = gandy.run(TINY, overrides=base, figures=False)
    comp = gandy.run(TINY, overrides=[*base, "engine=compiled"], figures=False)
    assert list(comp.results.phase) == list(eager.results.phase)
    np.testing.assert_allclose(comp.trajectory["particles"], eager.trajectory["particles"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(comp.metrics.w1, eager.metrics.w1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("over, words", [(["penalty.name=wgan_gp"], "penalties none, sobolev, r1, r2"),
                                         (["generator={name: mlp, latent_dim: 2}", "optim.generator.name=adam"], "network generator")])
def test_compiled_engine_refuses_what_it_does_not_run(over, words):
    with pytest.raises(ConfigError) as e:
        build(C.load_config(TINY, [*over, "engine=compiled"]))
    assert e.value.field == "engine" and words in e.value.message
