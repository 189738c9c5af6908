"""The bridge from networks to particles: one step of the network is the NTK step to first order,
the lazy (empirical-NTK) particle model tracks the network better as width grows, bad input."""

from __future__ import annotations

import pytest
import torch

from gandy.core.kernels import NtkMlp, empirical_ntk, sphere_latents
from gandy.runs import config as C
from gandy.studies.base import StudyOptions
from gandy.studies.bridge.experiment import spec
from gandy.studies.bridge.model import SIDES, run_bridge, summarise


def _cfg(*over):
    return C.load_config(spec()["base"], ["particles.n=32", "critic.widths=[32]", *over])


def test_all_sides_start_together_and_one_network_step_is_the_ntk_step():
    tab = run_bridge(_cfg("steps=1", "log_every=1", "seeds=[0]", "optim.generator.lr=0.001"), width=512,
                     latent_dim=64)
    start = tab[tab.step == 0]
    assert list(start.side) == list(SIDES) and (start.discrepancy == 0).all()
    assert start.w1.nunique() == 1  # identical points at step 0
    one = tab[tab.step == 1].set_index("side")
    # the network moved by eta Theta F + O(eta^2); the lazy particle model by eta Theta F exactly
    moved = one.loc["network", "com_error"] - start.set_index("side").loc["network", "com_error"]
    assert abs(moved) > 0
    assert one.loc["empirical_ntk", "discrepancy"] < 1e-3 * one.loc["two_number", "discrepancy"] + 1e-6


def test_network_step_equals_eta_ntk_times_force_to_first_order():
    # the identity behind the bridge, checked directly: theta += eta J^T F moves G(z) by eta K F
    net = NtkMlp(32, 1024, 2, 1, generator=torch.Generator().manual_seed(0))
    z = sphere_latents(16, 32, 0).float()
    k = empirical_ntk(net, z)  # output-averaged, d = 1
    f = torch.randn(16, 1, generator=torch.Generator().manual_seed(1))
    eta = 1e-4
    x0 = net(z).detach()
    grads = torch.autograd.grad(-(net(z) * f).sum(), list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p -= eta * g
    dx = net(z).detach() - x0
    torch.testing.assert_close(dx, eta * k @ f, rtol=2e-2, atol=1e-7)


def test_lazy_particles_track_wider_networks_better():
    over = ["steps=120", "log_every=40", "seeds=[0, 1]"]
    tabs = [run_bridge(_cfg(*over), width=w, latent_dim=64).assign(width=w) for w in (32, 512)]
    import pandas as pd

    s = summarise(pd.concat(tabs)).set_index(["side", "width"])
    assert s.loc[("empirical_ntk", 512), "final_discrepancy"] < 0.5 * s.loc[("empirical_ntk", 32), "final_discrepancy"]
    assert (s.blew_up == 0).all()


def test_bridge_refuses_a_network_generator_config():
    cfg = C.load_config(spec()["base"], ["generator={name: mlp}", "optim.generator.name=adam"])
    with pytest.raises(C.ConfigError) as e:
        run_bridge(cfg, width=16)
    assert e.value.field == "generator"


def test_bridge_experiment_writes_its_tables_and_figure(tmp_path):
    import json

    import pandas as pd

    from gandy.studies.bridge.experiment import run

    figs = run(tmp_path / "b", StudyOptions(quick=True, overrides=["steps=4", "log_every=2", "particles.n=16"],
                            progress=False, echo=lambda s: None))
    assert figs[0].exists() and figs[0].stat().st_size > 10000
    table = pd.read_parquet(tmp_path / "b" / "bridge.parquet")
    assert sorted(table.width.unique()) == sorted(spec()["widths"]) and set(table.side) == set(SIDES)
    summ = json.loads((tmp_path / "b" / "summary.json").read_text())["summary"]
    assert len(summ) == 2 * len(spec()["widths"])  # two particle sides per width
    with pytest.raises(C.ConfigError):
        run(tmp_path / "b", StudyOptions(quick=True, progress=False, echo=lambda s: None))  # exists: needs --force
