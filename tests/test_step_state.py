"""The step's state and its differentiable mode: the checkpoint saves every State field by
iterating over them (a new field cannot be forgotten), logged per-member quantities are declared
once (State.LOGGED), and critic_update / advance with ``create_graph`` differentiate the real
update (their Jacobians equal finite differences of the ordinary update)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pytest
import torch

from gandy.core.errors import ConfigError
from gandy.core.step import State, advance, critic_update, start
from gandy.core.targets import Target
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.runs.loop import SimOutput, _restore, _state_blob, simulate

TINY = {"target": {"name": "two_modes_1d", "separation": 2.0, "std": 0.3}, "particles": {"n": 3},
        "critic": {"name": "mlp", "widths": [4], "activation": "tanh"}, "penalty": {"name": "sobolev", "weight": 0.5},
        "optim": {"critic": {"name": "sgd", "lr": 0.05, "steps": 2}, "generator": {"lr": 0.1}},
        "batch_size": 4, "steps": 4, "log_every": 2, "seeds": [0], "engine": "eager"}


@dataclasses.dataclass
class Extended(State):
    """State with one more field, as a future change might add."""

    extra: Optional[torch.Tensor] = None


def test_a_new_state_field_is_saved_and_restored_by_the_checkpoint():
    sim = build(C.load_config(TINY))
    st = start(sim, [0, 1])
    ext = Extended(**{f.name: getattr(st, f.name) for f in dataclasses.fields(st)}, extra=torch.arange(2.0))
    blob = _state_blob(ext)
    assert set(blob) == {f.name for f in dataclasses.fields(Extended)}
    assert torch.equal(blob["extra"], torch.arange(2.0))
    fresh = start(sim, [0, 1])
    target = Extended(**{f.name: getattr(fresh, f.name) for f in dataclasses.fields(fresh)})
    _restore(target, SimOutput([0, 1]), {**blob, "metrics": [], "snapshot_steps": [], "snapshots": [],
                                        "divergence_methods": None, "t_next": 1})
    assert torch.equal(target.extra, torch.arange(2.0))
    # a field of a type the checkpoint cannot hold is refused by name, not skipped
    with pytest.raises(TypeError, match="State.extra"):
        _state_blob(Extended(**{f.name: getattr(st, f.name) for f in dataclasses.fields(st)}, extra=object()))


def test_logged_fields_are_metric_columns():
    """Each State.LOGGED field is a metrics column: NaN at step 0, finite after a step."""
    sim = build(C.load_config(TINY))
    out = simulate(sim, [0, 1])
    for name in State.LOGGED:
        first = [r[name] for r in out.metrics if r["step"] == 0]
        last = [r[name] for r in out.metrics if r["step"] == 4]
        assert all(v != v for v in first) and all(v == v and v > 0 for v in last)


class _Float64(Target):
    """A target whose samples are float64, for a float64 Jacobian test."""

    def __init__(self, base: Target):
        self.base, self.dim, self.modes, self.scale = base, base.dim, base.modes, base.scale
        self.mean = base.mean.double()

    def sample(self, stream, n):
        return self.base.sample(stream, n).double()


def _setup(overrides=()):
    sim = build(C.load_config(TINY, list(overrides)))
    sim = dataclasses.replace(sim, target=_Float64(sim.target))
    st = start(sim, [3])
    st.params = {k: v.double() for k, v in st.params.items()}
    st.x = st.x.double()
    trainable = [k for k in st.params if k not in sim.critic.frozen]
    shapes = {k: st.params[k].shape for k in trainable}
    counters = {k: s.counter for k, s in st.streams.items()}
    base_params, base_x = dict(st.params), st.x.clone()

    def unpack(z):
        out, i = {}, 0
        for k, s in shapes.items():
            out[k] = z[i:i + s.numel()].reshape(s)
            i += s.numel()
        return out, z[i:].reshape(base_x.shape)

    def pack(params, x):
        return torch.cat([params[k].reshape(-1) for k in shapes] + [x.reshape(-1)])

    def reset():  # the same random draws at every call
        for k, s in st.streams.items():
            s.counter = counters[k]
        st.t, st.opt.t = 0, 0

    return sim, st, unpack, pack, reset, pack(base_params, base_x).detach()


def _fd_jacobian(f, z0, eps=1e-6):
    cols = []
    for i in range(z0.numel()):
        e = torch.zeros_like(z0)
        e[i] = eps
        cols.append((f(z0 + e) - f(z0 - e)) / (2 * eps))
    return torch.stack(cols, 1)


def test_differentiable_critic_update_matches_finite_differences():
    sim, st, unpack, pack, reset, z0 = _setup()

    def update(z, create_graph):
        reset()
        params, x = unpack(z)
        new = critic_update(sim, st, {**st.params, **params}, x, create_graph=create_graph)
        return torch.cat([new[k].reshape(-1) for k in unpack(z)[0]])

    jac = torch.autograd.functional.jacobian(lambda z: update(z, True), z0)
    fd = _fd_jacobian(lambda z: update(z, False), z0)
    assert jac.shape == fd.shape and fd.abs().max() > 0.1  # the map moves: its Jacobian is not zero
    n_params = sum(v.numel() for v in unpack(z0)[0].values())
    assert fd[:, n_params:].abs().max() > 1e-4  # and the penalty and game depend on the particles
    torch.testing.assert_close(jac, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", ["alternating", "simultaneous"])
def test_differentiable_advance_matches_finite_differences(order):
    """One real step of the game (critic update, force, kernel move, startup/reset/clip honoured)."""
    sim, st, unpack, pack, reset, z0 = _setup([f"optim.order={order}", "optim.critic.clip=0.9",
                                               "optim.critic.startup_steps=3"])

    def step(z, create_graph):
        reset()
        st.params, st.x = {**st.params, **unpack(z)[0]}, unpack(z)[1]
        st.alive = torch.ones(1, dtype=torch.bool)
        advance(sim, st, create_graph=create_graph)
        return pack(st.params, st.x)

    jac = torch.autograd.functional.jacobian(lambda z: step(z, True), z0)
    fd = _fd_jacobian(lambda z: step(z, False), z0)
    torch.testing.assert_close(jac, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("overrides, field", [
    (["optim.critic={name: adam, lr: 0.01}"], "optim.critic.name"),
    (["optim.critic={name: rmsprop, lr: 0.01}"], "optim.critic.name"),
    (["engine=closed_form", "critic.activation=relu"], "engine"),
])
def test_what_cannot_be_differentiated_is_refused_by_field(overrides, field):
    sim = build(C.load_config(TINY, overrides))
    st = start(sim, [0])
    with pytest.raises(ConfigError) as e:
        critic_update(sim, st, st.params, st.x, create_graph=True)
    assert e.value.field == field


def test_a_network_generator_step_is_not_differentiated():
    cfg = C.load_config(TINY, ["generator={name: mlp, latent_dim: 2, widths: [4]}", "optim.generator.name=adam"])
    sim = build(cfg)
    with pytest.raises(ConfigError) as e:
        advance(sim, start(sim, [0]), create_graph=True)
    assert e.value.field == "generator.name"
