"""critic-types and mnist-ablation: tiny runs end to end, and the tables they are built from."""

from __future__ import annotations

import pandas as pd

from gandy.runs import config as C
from gandy.studies.base import StudyOptions
from gandy.studies.critic_types.experiment import TARGETS, critics, run
from gandy.studies.frequency.experiment import settings
from gandy.studies.mnist_ablation.experiment import VARIANTS, summarise
from gandy.studies.mnist_collapse.experiment import base_config


def test_critic_types_are_the_frequency_experiments_critics():
    assert critics() == {k: v.model_dump(mode="json") for k, v in settings().critics.items()}
    assert {c["name"] for c in critics().values()} == {"mlp", "rbf", "random_features"}


def test_tiny_critic_types_run_writes_a_boundary_per_target_critic_and_lr(tmp_path):
    over = ["steps=20", "log_every=10", "particles.n=16", "sweep={kernel.g2: [0.001, 0.5], optim.critic.lr: [0.001, 0.01]}"]
    figs = run(tmp_path / "ct", StudyOptions(overrides=over, progress=False, echo=lambda s: None))
    assert [f.name for f in figs] == ["critic-types.png", "critic-types-phases.png"]
    b = pd.read_parquet(tmp_path / "ct" / "boundary.parquet")
    assert len(b) == len(TARGETS) * len(critics()) * 2
    assert set(b.target) == set(TARGETS) and set(b.critic) == set(critics())
    res = pd.read_parquet(tmp_path / "ct" / "ring8" / "relu_128" / "results.parquet")
    assert len(res) == 2 * 2 * 5 and set(res.seed) == {0, 1, 2, 3, 4}  # the config's 5 seeds


def test_every_ablation_variant_is_a_valid_config():
    for name, extra in VARIANTS.items():
        cfg = C.load_config(base_config(), extra)
        assert cfg.particles.n == 100, name
    assert C.load_config(base_config(), VARIANTS["gandy_before"]).penalty.reduce == "per_point"


def test_ablation_summary_takes_the_peak_force_over_the_run():
    metrics = pd.DataFrame({"member": [0, 0, 0, 1, 1, 1], "force_norm": [float("nan"), 5.0, 2.0, float("nan"), 1.0, 9.0]})
    results = pd.DataFrame({"member": [0, 1], "kernel.g2": [0.01, 0.5], "phase": ["stalled", "runaway"],
                            "phase_margin": [0.5, 0.2], "force_norm": [2.0, 9.0], "mean_norm": [28.0, 300.0],
                            "mean_abs_cos": [0.03, 0.99], "coverage_kl": [0.8, 4.6], "on_mode": [0.0, 0.0],
                            "mean_dist": [39.0, 290.0], "displacement": [0.1, 280.0], "diverged_step": [-1, -1]})
    t = summarise(metrics, results, "v")
    assert t.max_force_norm.tolist() == [5.0, 9.0] and (t.variant == "v").all()


def test_tiny_mnist_ablation_writes_its_table_and_figure(tmp_path):
    from gandy.studies.mnist_ablation.experiment import run as run_ablation

    over = ["steps=2", "log_every=1", "optim.critic.steps=2", "optim.critic.startup_steps=2",
            "sweep={kernel.g2: [0.01, 0.977]}"]
    figs = run_ablation(tmp_path / "ma", StudyOptions(overrides=over, progress=False, echo=lambda s: None))
    assert figs[0].name == "mnist-ablation.png" and figs[0].stat().st_size > 10_000
    t = pd.read_parquet(tmp_path / "ma" / "ablation.parquet")
    assert len(t) == 2 * len(VARIANTS) and set(t.variant) == set(VARIANTS)
    assert t.max_force_norm.notna().all() and (t.max_force_norm > 0).all()
