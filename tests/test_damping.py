"""Critical damping: the linear theory by hand, against the Jacobian of the real update map, and
against measured convergence."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gandy.core.errors import ConfigError
from gandy.core.step import MemberValues, advance, start
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.studies.damping.model import (
    CurvedModel,
    LinearModel,
    critic_geometry,
    critic_gradient_kernel,
    envelope_decay,
    jacobian_spectrum,
    judged_tolerance,
    linear_model,
    residual_floor,
    run_damping,
    steps_to,
    transverse_radius,
    update_map,
)

BASE = {
    "target": {"name": "point_mass", "location": [1.0, -0.5]},
    "particles": {"n": 5, "init": {"name": "gaussian", "std": 0.1}},
    "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.3},
    "critic": {"name": "linear"},
    "objective": "ipm",
    "penalty": {"name": "sobolev", "weight": 1.0},
    "optim": {"critic": {"name": "sgd", "lr": 0.1}, "generator": {"lr": 0.002}},
    "steps": 800,
    "seeds": [0],
}


def cfg(*over):
    return C.load_config(BASE, list(over))


def _weighted(sim, weight: float, **values) -> MemberValues:
    """One member's numbers: the simulation's defaults with penalty weight ``weight`` and ``values``."""
    d = sim.defaults
    return dataclasses.replace(d, penalty_weight=torch.tensor([weight]),
                               **{k: torch.tensor([v], dtype=torch.float32) for k, v in values.items()})


def test_theory_by_hand():
    m = LinearModel(eta_g=0.002, eta_d=0.1, kappa=2.2, friction=2.0)
    assert m.lambda_c == pytest.approx(math.sqrt(0.002 * 2.2 / 0.1))
    assert m.zeta(m.lambda_c) == pytest.approx(1.0)
    s = m.continuous_eigenvalues(m.lambda_c)
    np.testing.assert_allclose(s, [-m.omega0, -m.omega0], atol=1e-9)  # double root at critical damping
    lam = 0.05
    a, k = 1 - 2 * lam * 0.1, 0.002 * 2.2
    np.testing.assert_allclose(m.step_matrix(lam), [[a, 0.1], [-k * a, 1 - k * 0.1]])
    ms = LinearModel(0.002, 0.1, 2.2, 2.0, order="simultaneous")
    np.testing.assert_allclose(ms.step_matrix(lam), [[a, 0.1], [-k, 1.0]])
    # r1's friction is half sobolev's: its critical weight is twice as large
    assert LinearModel(0.002, 0.1, 2.2, 1.0).lambda_c == pytest.approx(2 * m.lambda_c)
    # the discrete optimum sits near lambda_c for small steps and minimises the spectral radius
    best = m.best_lambda()
    assert m.spectral_radius(best) <= m.spectral_radius(np.linspace(0, 3 * m.lambda_c, 500)).min() + 1e-12


def test_curved_theory_by_hand():
    lin = LinearModel(eta_g=0.002, eta_d=0.6, kappa=5.5, friction=1.0)
    flat = CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=0.0, at_data=True)
    lam = np.array([0.05, 0.3, 2.0])
    np.testing.assert_allclose(flat.step_matrix(lam), lin.step_matrix(lam), rtol=1e-14)
    assert flat.lambda_c == pytest.approx(lin.lambda_c, rel=1e-12)
    h, k = -1.5, 0.002 * 5.5
    for at_data in (True, False):
        m = CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=h, at_data=at_data)
        assert m.zeta(m.lambda_c) == pytest.approx(1.0, rel=1e-9)  # the root is where gamma^2 = 4 omega^2
        # one step by hand: u' = u + eta_D (e - lam p), p = u (data) or u - h e (particles); e' = e - k (u' - h e)
        u, e, w = 0.3, -0.7, 0.4
        p_ = u if at_data else u - h * e
        u1 = u + 0.6 * (e - w * p_)
        e1 = e - k * (u1 - h * e)
        np.testing.assert_allclose(m.step_matrix(w) @ [u, e], [u1, e1], rtol=1e-13)
        # small steps: log of the map's eigenvalues -> the continuous-time roots (per unit time)
        small = CurvedModel(0.002 * 1e-3, 0.6 * 1e-3, 5.5, 1.0, curvature=h, at_data=at_data)
        z = np.sort_complex(np.log(small.discrete_eigenvalues(w).astype(complex)) / 1e-3)
        s_ = np.sort_complex(CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=h, at_data=at_data).continuous_eigenvalues(w))
        np.testing.assert_allclose(z, s_, rtol=2e-3, atol=1e-6)
    # a penalty at the data pins grad f there, but the particles still climb the critic's curvature:
    # the slow rate tends to eta_G kappa |h| as lambda grows; at the particles it tends to 0
    big = 1e4
    at_d = CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=h, at_data=True).continuous_decay(big)
    at_p = CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=h, at_data=False).continuous_decay(big)
    assert at_d == pytest.approx(k * abs(h), rel=1e-3) and at_p < 1e-4
    # and its critical weight grows with the curvature (a critic peaked at the data stiffens the game)
    assert CurvedModel(0.002, 0.6, 5.5, 1.0, curvature=-3.0, at_data=True).lambda_c > lin.lambda_c


def test_critic_geometry_against_finite_differences():
    lin = build(cfg())
    theta, hess = critic_geometry(lin, start(lin, [0]).params, torch.tensor([1.0, -0.5]))
    np.testing.assert_allclose(theta.numpy(), np.eye(2), atol=1e-12)
    np.testing.assert_allclose(hess.numpy(), 0.0, atol=1e-12)
    mlp = build(cfg("critic={name: mlp, widths: [16], activation: tanh}"))
    params = {k: v.double() for k, v in start(mlp, [3]).params.items()}
    x0 = torch.tensor([0.4, -0.2], dtype=torch.float64)
    theta, hess = critic_geometry(mlp, params, x0)

    def grad_at(x):
        x = x.reshape(1, 1, -1).clone().requires_grad_(True)
        return torch.autograd.grad(mlp.critic.forward(params, x).sum(), x)[0].reshape(-1)

    eps = 1e-5
    fd = torch.stack([(grad_at(x0 + eps * d) - grad_at(x0 - eps * d)) / (2 * eps) for d in torch.eye(2, dtype=torch.float64)])
    np.testing.assert_allclose(hess.numpy(), fd.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hess.numpy(), hess.numpy().T, atol=1e-12)
    assert float(torch.linalg.eigvalsh(theta).mean()) == pytest.approx(
        critic_gradient_kernel(build(cfg("critic={name: mlp, widths: [16], activation: tanh}", "target.location=[0.4, -0.2]")), 3),
        rel=1e-6)


def test_scan_records_the_final_critics_geometry_and_the_curved_theory():
    c = cfg("particles.n=16", "critic={name: mlp, widths: [16], activation: tanh}", "penalty.name=r1", "steps=300")
    tab, summary = run_damping(c, [0.2, 0.6, 1.5], None, seed=1)
    assert np.isfinite(tab.theta_final).all() and np.isfinite(tab.curvature_final).all()
    assert summary["curved"]["at_data"] and summary["seed"] == 1
    # the effective theory takes theta from the seed's own initial critic
    assert summary["theory"]["eta_d_effective"] == pytest.approx(0.1 * critic_gradient_kernel(build(c), 1), rel=1e-6)
    np.testing.assert_allclose(tab.curved_decay_rate, CurvedModel(
        0.002, 0.1 * summary["curved"]["theta"], 1.0 + 15 * 0.3, 1.0, curvature=summary["curved"]["curvature"],
        at_data=True).discrete_decay(np.array([0.2, 0.6, 1.5])), rtol=1e-9)


def test_kernel_mode_of_the_config():
    m = linear_model(cfg())
    assert m.kappa == pytest.approx(1.0 + 4 * 0.3)  # g1 + (N - 1) g2
    assert linear_model(cfg(), "relative").kappa == pytest.approx(0.7)  # g1 - g2


@pytest.mark.parametrize("order", ["alternating", "simultaneous"])
@pytest.mark.parametrize("lam", [0.0, 0.05, 0.2, 0.8])
def test_theory_eigenvalues_equal_the_jacobian_of_the_update_map(order, lam):
    c = cfg(f"optim.order={order}")
    sim = build(c)
    st = start(sim, [0], _weighted(sim, lam))
    st.t = 1  # past the first step (startup_steps would apply there)
    spec = jacobian_spectrum(sim, st)
    moving = list(spec[np.abs(spec - 1) > 1e-7])
    theory = np.repeat(linear_model(c).discrete_eigenvalues(lam), 2)  # once per coordinate (d = 2)
    assert len(moving) == len(theory)
    for z in theory:  # match each theory eigenvalue to its nearest numerical one
        j = int(np.argmin(np.abs(np.array(moving) - z)))
        assert abs(moving[j] - z) <= 1e-7 * abs(z)  # the run's float32 learning rates, the theory's exact ones
        moving.pop(j)
    # and the rest are exactly neutral: the critic's bias and the N - 1 particle shapes per coordinate
    assert np.sum(np.abs(spec - 1) <= 1e-7) == 1 + (5 - 1) * 2


def test_without_a_penalty_the_linear_game_does_not_converge():
    c = cfg("steps=1500")
    m = linear_model(c)
    assert m.spectral_radius(0.0) >= 1 - 1e-12  # det A = 1: no contraction
    tab, _ = run_damping(c, [1e-9], None)  # sobolev with a vanishing weight
    assert tab.spectral_radius[0] >= 1 - 1e-6
    assert tab.steps_to_converge[0] == -1
    # a weight that never converged has no decay rate, and says so
    assert not tab.converged[0] and np.isnan(tab.decay_rate[0])


def test_a_residual_floor_raises_the_tolerance_and_the_decay_is_fitted_above_it():
    """Runs that decay at 0.02 per step onto floors of 2e-3..4e-3 (as an MLP critic's do): at a
    fixed 1e-3 none would converge and the ranking would follow the floor; the judged tolerance is
    3x the median floor, every run converges, the faster decay wins, and the rate fitted over the
    transient only is the true one."""
    t = np.arange(1500)
    runs = {0.02: np.exp(-0.02 * t) + 3e-3, 0.01: np.exp(-0.01 * t) + 2e-3, 0.03: np.exp(-0.03 * t) + 4e-3}
    floors = [residual_floor(e) for e in runs.values()]
    np.testing.assert_allclose(floors, [3e-3, 2e-3, 4e-3], rtol=0.05)
    falling = np.exp(-0.002 * t)  # still falling at the end: no floor
    assert residual_floor(falling) == 0.0
    tol = judged_tolerance(floors + [math.inf, 0.5, 0.0], 1e-3)  # blown up, stuck, still falling: not counted
    assert tol == pytest.approx(3 * 3e-3, rel=0.05)
    assert judged_tolerance([1e-14, 1e-15], 1e-3) == 1e-3  # a linear critic: the requested tolerance
    assert all(steps_to(e, 1e-3) == -1 for e in runs.values())
    steps = {k: steps_to(e, tol) for k, e in runs.items()}
    assert steps[0.03] < steps[0.02] < steps[0.01]
    for k, e in runs.items():
        assert envelope_decay(e, lo=10 * residual_floor(e)) == pytest.approx(k, rel=0.1)
        assert envelope_decay(e) != pytest.approx(k, rel=0.1)  # fitted into the floor: wrong


def test_measured_best_weight_matches_the_discrete_theory():
    c = cfg("particles.n=16")
    m = linear_model(c)
    weights = list(m.lambda_c * np.geomspace(0.25, 4, 13))
    tab, summary = run_damping(c, weights, None)
    ratio = summary["lambda_best"] / summary["lambda_best_theory"]
    assert 1 / 1.5 <= ratio <= 1.5, (summary["lambda_best"], summary["lambda_best_theory"])
    # the late-time decay measured in the simulation is the theory's
    good = tab[tab.decay_rate.notna() & (tab.steps_to_converge > 0)]
    np.testing.assert_allclose(good.decay_rate, good.theory_decay_rate, rtol=0.12)


def test_measurement_helpers_by_hand():
    t = np.arange(2000)
    err = np.exp(-0.01 * t) * np.abs(np.cos(0.05 * t)) + 1e-12
    assert envelope_decay(err) == pytest.approx(0.01, rel=0.02)
    assert steps_to(np.array([1.0, 0.5, 1e-4, 2e-3, 1e-4, 1e-5]), 1e-3) == 4
    assert steps_to(np.array([1.0, 0.5, 0.2]), 1e-3) == -1
    assert transverse_radius(np.array([1.0, 1.0 + 1e-9, 0.9 + 0.1j, 0.5])) == pytest.approx(abs(0.9 + 0.1j))


def test_linear_critic_has_unit_gradient_kernel_and_mlp_does_not():
    assert critic_gradient_kernel(build(cfg())) == pytest.approx(1.0, abs=1e-12)
    theta = critic_gradient_kernel(build(cfg("critic={name: mlp, widths: [64], activation: tanh}")))
    assert theta > 1.5


def test_damping_cli_writes_its_tables_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from gandy.cli import app

    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["damping", str(p), "steps=300", "--weights", "0.05,0.2,0.8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    tab = pd.read_parquet(out / "damping.parquet")
    for col in ("weight", "steps_to_converge", "decay_rate", "theory_decay_rate", "spectral_radius"):
        assert col in tab.columns
    summ = yaml.safe_load((out / "summary.json").read_text())
    assert summ["lambda_c"] == pytest.approx(linear_model(cfg()).lambda_c)
    for f in ("convergence_time.png", "trajectories.png", "eigenvalues.png"):
        assert (out / "figures" / f).stat().st_size > 5000
    bad = tmp_path / "bad"
    for args in (["--weights", "x,y"], ["--weights", "-1"], ["--weights", "0.1", "--tol", "2"]):
        r = CliRunner().invoke(app, ["damping", str(p), *args, "--out", str(bad)])
        assert r.exit_code == 2 and not bad.exists()
    r = CliRunner().invoke(app, ["damping", str(p), "optim.critic.name=adam", "--weights", "0.1", "--out", str(bad)])
    assert r.exit_code == 2 and "sgd" in r.output + (r.stderr if hasattr(r, "stderr") else "")


def test_arnoldi_on_jacobian_vector_products_finds_the_dense_spectrum():
    c = cfg("critic={name: mlp, widths: [8], activation: tanh}", "particles.n=4")
    sim = build(c)
    st = start(sim, [0], _weighted(sim, 0.3))
    dense = jacobian_spectrum(sim, st)
    top = jacobian_spectrum(sim, st, dense_max=10, k=4)
    want = np.sort(np.abs(dense))[::-1][:4]
    np.testing.assert_allclose(np.sort(np.abs(top))[::-1], want, rtol=1e-6)


def _jacobian_and_finite_differences(sim, st, h: float = 1e-6):
    """The Jacobian of the update map at member 0 of ``st``, and central differences of one real,
    non-differentiable ``advance`` from the same state (float64), column by column."""
    um = update_map(sim, st)
    J = torch.autograd.functional.jacobian(um.f, um.z0)

    def real(z):
        return um.pack(advance(um.sim, um.state(z))).detach()

    fd = torch.stack([(real(um.z0 + h * e) - real(um.z0 - h * e)) / (2 * h)
                      for e in torch.eye(um.z0.numel(), dtype=torch.float64)], 1)
    return um, J, fd


@pytest.mark.parametrize("t", [0, 3])
def test_the_jacobian_is_the_real_update_differentiated(t):
    """A small MLP critic with weight decay, clipping, startup steps (which apply at step 0 only)
    and two critic steps; a two-number kernel whose per-member g1, g2 differ from the config's: the
    Jacobian of update_map equals central differences of the real advance, at step 0 and later."""
    c = cfg("critic={name: mlp, widths: [6], activation: tanh}", "particles.n=4", "optim.critic.clip=0.4",
            "optim.critic.weight_decay=0.01", "optim.critic.steps=2", "optim.critic.startup_steps=3",
            "optim.critic.lr=0.05", "optim.generator.lr=0.01", "target={name: gaussian_mixture, means: [[1.0, -0.5]], std: 0.3}",
            "penalty.name=wgan_gp")
    sim = build(c)
    st = start(sim, [0, 1], _weighted(sim, 0.3, g1=1.7, g2=-0.2).pad(2))
    for _ in range(t):
        advance(sim, st)
    clipped = sum(int((v.abs() >= 0.4 - 1e-7).sum()) for k, v in st.params.items())
    um, J, fd = _jacobian_and_finite_differences(sim, st)
    assert t == 0 or clipped > 0  # the clip is active at the later state
    np.testing.assert_allclose(J.numpy(), fd.numpy(), atol=1e-7, rtol=1e-6)
    # the rebuilt float64 state is the run's: one real step from it matches the float32 run's
    nxt = um.pack(advance(um.sim, um.state(um.z0))).detach()
    advance(sim, st)
    assert torch.allclose(nxt, torch.cat([*(st.params[k][:1].double().reshape(-1) for k in st.params),
                                          st.x[:1].double().reshape(-1)]), atol=1e-5)
    # and the per-member g1, g2 enter it: the config's kernel gives another map
    other = start(sim, [0, 1], _weighted(sim, 0.3).pad(2))
    for _ in range(t):
        advance(sim, other)
    J2 = torch.autograd.functional.jacobian(update_map(sim, other).f, update_map(sim, other).z0)
    assert not torch.allclose(J, J2, atol=1e-6)


def test_dropout_is_honoured_with_fixed_masks():
    c = cfg("critic={name: mlp, widths: [6], activation: tanh, dropout: 0.3}", "particles.n=3")
    sim = build(c)
    st = start(sim, [0], _weighted(sim, 0.3))
    _, J, fd = _jacobian_and_finite_differences(sim, st)
    np.testing.assert_allclose(J.numpy(), fd.numpy(), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("over,field", [
    (["optim.critic.name=adam"], "optim.critic.name"),
    (["optim.critic.name=rmsprop"], "optim.critic.name"),
    (["generator={name: mlp, latent_dim: 2, widths: [4]}"], "generator.name"),
])
def test_what_the_jacobian_cannot_differentiate_is_refused_by_name(over, field):
    sim = build(cfg(*over))
    st = start(sim, [0])
    with pytest.raises(ConfigError) as e:
        update_map(sim, st)
    assert e.value.field == field
    with pytest.raises(ConfigError) as e:  # before the run
        run_damping(cfg(*over, "steps=100000"), [0.1], None)  # (auto engine: compiled for the run)
    assert e.value.field == field


def test_the_study_gives_geometric_means_over_seeds_with_t_intervals_on_the_log():
    from gandy.studies.damping.experiment import best_row, log_interval

    # logs of 0.1, 0.2, 0.4: mean log 0.2, s = log 2; t_{0.975, 2} = 0.95 / sqrt(2 * 0.975 * 0.025)
    out = log_interval([0.1, 0.2, 0.4, None, float("nan")])
    half = 0.95 / math.sqrt(2 * 0.975 * 0.025) * math.log(2) / math.sqrt(3)
    assert out["n"] == 3 and out["mean"] == pytest.approx(0.2)
    assert (out["lo"], out["hi"]) == (pytest.approx(0.2 * math.exp(-half)), pytest.approx(0.2 * math.exp(half)))
    assert log_interval([None, None]) == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert log_interval([0.3])["lo"] is None and log_interval([0.3])["mean"] == pytest.approx(0.3)
    s = {"lambda_c": 0.3, "lambda_best": 0.6, "lambda_best_theory": 0.2, "curved": {"lambda_best": 0.3, "theta": 5.0, "curvature": -1.0}}
    r = best_row("mlp-r1", 4, s)
    assert (r["critic"], r["penalty"], r["seed"]) == ("mlp", "r1", 4)
    assert r["ratio"] == pytest.approx(3.0) and r["ratio_curved"] == pytest.approx(2.0)
    none = best_row("linear-wgan_gp", 0, {"lambda_c": None, "lambda_best": None, "lambda_best_theory": None, "curved": None})
    assert none["ratio"] is None and none["lambda_best_curved"] is None
