"""Image GANs end to end: image targets, DCGAN configs, the metrics with their protocols, the
FID sanity check on real data, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import gandy
from gandy.core.images import quality as Q
from gandy.core.images.classifier import load_classifier
from gandy.core.images.data import mnist
from gandy.core.images.evaluate import METRICS, Extractor, evaluate_images
from gandy.core.rng import Stream, member_keys
from gandy.runs import config as C
from gandy.runs.build import target_of
from gandy.studies.base import StudyOptions

TINY_IMG = {
    "target": {"name": "mnist"},
    "generator": {"name": "dcgan", "latent_dim": 8, "width": 4},
    "critic": {"name": "dcgan", "width": 4},
    "objective": "ns", "penalty": None,
    "optim": {"critic": {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]},
              "generator": {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}},
    "particles": {"n": 16}, "batch_size": 16, "steps": 4, "log_every": 2, "seeds": [0, 1],
    "metrics": {"images": {"n_fake": 256, "n_real": 256, "w_critic_steps": 20}},
}


def test_image_targets_shapes_ranges_and_determinism(tmp_path):
    t = target_of(C.MnistTarget(name="mnist"))
    assert t.data.shape == (4000, 784) and t.image_shape == (1, 28, 28) and t.default_batch == 64
    assert float(t.data.min()) == -1.0 and float(t.data.max()) == 1.0 and t.modes is None
    test = target_of(C.MnistTarget(name="mnist", split="test", n=100))
    assert test.modes.shape == (100, 784) and test.default_batch == 100  # small sets: modes, whole batches
    cm = target_of(C.ColorMnistTarget(name="color_mnist"))
    a = cm.sample(Stream(member_keys([0, 1]), "data"), 8)
    b = cm.sample(Stream(member_keys([1]), "data"), 8)
    assert a.shape == (2, 8, 3 * 784) and torch.equal(a[1], b[0])  # a member's images follow its seed
    x = (np.random.default_rng(0).random((5, 28, 28, 3)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    im = target_of(C.ImagesTarget(name="images", path=str(tmp_path / "x.npy")))
    assert im.image_shape == (3, 28, 28) and im.data.shape == (5, 3 * 784)
    with pytest.raises(C.ConfigError) as e:
        target_of(C.ImagesTarget(name="images", path=str(tmp_path / "missing.npy")))
    assert e.value.field == "target.path"


@pytest.mark.parametrize("over, field", [
    (["target={name: ring8}"], "critic.name"),
    (["target={name: ring8}", "critic={name: mlp}"], "generator.name"),
    (["target.pixels=standardized"], "target.pixels"),
    (["generator=null", "optim.generator.name=sgd", "metrics.images.enabled=true"], "metrics.images.enabled"),
    (["critic.norm=group"], "critic.norm"),
])
def test_bad_image_configs_name_the_field(over, field):
    with pytest.raises(C.ConfigError) as e:
        gandy.run(C.load_config(TINY_IMG, over), figures=False)
    assert e.value.field == field


def test_image_run_writes_metrics_with_protocols_and_sample_grids(tmp_path):
    res = gandy.run(TINY_IMG, out=tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    clf = load_classifier()
    for k in METRICS:
        entry = summary[k]
        assert set(entry["values"]) == {"0", "1"} and np.isfinite(entry["mean"])
        proto = entry["protocol"]
        for field in ("n_real", "n_fake", "split", "seed", "extractor"):
            assert field in proto, (k, field)
        assert proto["n_fake"] == 256 and proto["split"] == "test"
        assert k in res.results.columns
    assert summary["fid"]["protocol"]["extractor_sha256"] == clf.checksum
    assert summary["fid"]["protocol"]["extractor_test_accuracy"] == pytest.approx(clf.test_accuracy)
    assert 0 <= summary["modes_covered"]["mean"] <= 10
    assert "js" not in res.metrics.columns  # no k-NN divergences in 784-D
    grids = sorted((tmp_path / "r" / "figures" / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_000000.png", "step_000002.png", "step_000004.png"]
    assert (tmp_path / "r" / "figures" / "samples_final.png").stat().st_size > 2000


def test_fid_of_real_halves_is_small_next_to_real_against_noise():
    clf = load_classifier()
    x, _ = mnist("all")
    perm = np.random.default_rng(0).permutation(len(x))
    a, b = x[perm[:2000]], x[perm[2000:4000]]
    noise = np.random.default_rng(1).uniform(-1, 1, size=a.shape).astype(np.float32)
    ext = Extractor(clf, 1)
    real = Q.fid(ext.features(a), ext.features(b))
    fake = Q.fid(ext.features(a), ext.features(noise))
    assert real < 0.02 * fake
    out = evaluate_images(b[:500], a[:500], ext, "test", 0, w_critic_steps=50)
    assert out["modes_covered"]["value"] == 10 and out["score"]["value"] > 8.0  # real digits: all classes
    assert out["ms_ssim"]["value"] < 0.5


def test_a_blown_up_member_is_labelled_not_averaged(monkeypatch):
    from gandy.core.images import evaluate as E

    real_generate = E.generate

    def generate(sim, st, n, chunk=500):
        x = real_generate(sim, st, n, chunk)
        x[1] = float("nan")  # member 1 produced garbage
        return x

    monkeypatch.setattr(E, "generate", generate)
    res = gandy.run(TINY_IMG, figures=False)
    fid = res.summary["fid"]
    assert np.isnan(fid["values"]["1"]) and fid["diverged_seeds"] == ["1"]
    assert fid["mean"] == pytest.approx(fid["values"]["0"])


def test_robustness_experiment_tables_and_figures(tmp_path):
    from gandy.studies.robustness.experiment import game_config, run

    over = ["steps=2", "log_every=1", "generator.width=4", "critic.width=4", "metrics.images.n_fake=128",
            "metrics.images.n_real=128", "metrics.images.w_critic_steps=5"]
    ns, gp = game_config("ns", True, over), game_config("gan_gp", True, over)
    assert "penalty.weight" not in ns.search["params"] and ns.penalty.name == "none"
    assert gp.penalty.name == "wgan_gp" and "penalty.weight" in gp.search["params"]
    figs = run(tmp_path / "rob", StudyOptions(quick=True, overrides=over, progress=False, echo=lambda s: None))
    assert [f.name for f in figs] == ["fid.png", "modes.png", "samples.png", "paired.png"]
    table = pd.read_parquet(tmp_path / "rob" / "robustness.parquet")
    assert sorted(set(table.game)) == ["dragan_ns", "gan_gp", "ns", "wgan_gp"]
    assert len(table) == 4 * 4  # 4 games x 4 quick trials x 1 seed
    assert table.groupby("game").trial.nunique().eq(4).all()
    summary = json.loads((tmp_path / "rob" / "summary.json").read_text())
    assert set(summary["games"]) == set(table.game) and "median" in summary["games"]["ns"]["fid"]
    for game, t in table.groupby("game"):  # the good share is the table's, against the packaged threshold
        th = summary["threshold"]
        want = int(((t.fid <= th["fid"]) & (t.modes_covered >= th["modes_covered"]) & ~t.diverged).sum())
        assert summary["games"][game]["good"]["k"] == want == int(t.good.sum())
        assert summary["games"][game]["good"]["n"] == len(t)
        assert summary["games"][game]["good_draws"]["n"] == 4  # one seed: a draw is a run
    draws = pd.read_parquet(tmp_path / "rob" / "draws.parquet")
    assert len(draws) == 16 and draws.good.tolist() == table.sort_values(["game", "trial"]).set_index(["game", "trial"]).loc[
        list(zip(draws.game, draws.trial)), "good"].tolist()
    # every game ran the same 4 draws of the learning rates, beta1 and n_critic: the comparisons are paired
    comp = summary["comparisons"]
    assert [(c["a"], c["b"]) for c in comp] == [("gan_gp", "ns"), ("dragan_ns", "ns"), ("wgan_gp", "ns"),
                                                ("gan_gp", "wgan_gp"), ("dragan_ns", "wgan_gp")]
    assert all(c["paired"] and c["draws"] == 4 for c in comp)
    for c in comp:
        a, b = (draws[draws.game == g].set_index("trial").sort_index() for g in (c["a"], c["b"]))
        assert c["score"]["a_better"] == int((a.fid < b.fid).sum()) and c["good"]["a_only"] == int((a.good & ~b.good).sum())
    # summary.md: a row per game with the table's counts, a row per comparison with the draws' counts
    text = (tmp_path / "rob" / "summary.md").read_text()
    assert text.startswith("# robustness (--quick")
    rows = {r[0]: r for r in (line[2:-2].split(" | ") for line in text.splitlines()
                              if line.startswith("| ") and "---" not in line)}
    for game, t in table.groupby("game"):
        assert rows[game][1:3] == [str(len(t)), str(int(t.diverged.sum()))]
        assert rows[game][3].startswith(f"{int(t.good.sum())}/{len(t)}:")
    for c in comp:
        a, b = (draws[draws.game == g].set_index("trial").sort_index() for g in (c["a"], c["b"]))
        counts = [(a.good & b.good).sum(), (a.good & ~b.good).sum(), (~a.good & b.good).sum(), (~a.good & ~b.good).sum()]
        assert rows[f"{c['a']} vs {c['b']}"][2] == " / ".join(str(int(k)) for k in counts)
    # resuming a finished study recomputes nothing and gives the same table
    run(tmp_path / "rob", StudyOptions(quick=True, overrides=over, resume=True, progress=False, echo=lambda s: None))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rob" / "robustness.parquet"), table)


def test_inception_fid_goes_through_torch_fidelity_with_local_weights(tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity")
    import torch_fidelity

    with pytest.raises(C.ConfigError) as e:
        gandy.run(C.load_config(TINY_IMG, [f"metrics.images.inception={tmp_path / 'none.pth'}"]), figures=False)
    assert e.value.field == "metrics.images.inception"
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"weights")  # never read by the stand-in below
    seen = {}

    def calculate_metrics(input1, input2, **kw):
        a = input1[0]
        seen.update(n=(len(input1), len(input2)), dtype=a.dtype, shape=tuple(a.shape), kw=kw)
        return {"frechet_inception_distance": 12.5}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", calculate_metrics)
    res = gandy.run(C.load_config(TINY_IMG, [f"metrics.images.inception={weights}"]), figures=False)
    assert seen["n"] == (256, 256) and seen["dtype"] == torch.uint8 and seen["shape"] == (3, 28, 28)
    assert seen["kw"]["feature_extractor_weights_path"] == str(weights) and seen["kw"]["fid"] is True
    fi = res.summary["fid_inception"]
    assert fi["values"] == {"0": 12.5, "1": 12.5} and fi["protocol"]["n_fake"] == 256
    assert "fid_inception" in res.results.columns


@pytest.mark.parametrize("game", ["ns", "mm", "gan_gp", "dragan_ns", "wgan_gp"])
def test_the_baseline_config_is_the_one_docs_images_md_states(game):
    """docs/images.md's baseline table was run from studies/robustness/baseline.yaml: width 32,
    3,000 steps, Adam(2e-4, (0.5, 0.999)), batch 64, FID on 2,000 against 1,000 images; every
    game of the table loads from it on both data sets (penalty weight 10 where the game has one)."""
    from pathlib import Path

    import gandy.studies.robustness as rob
    from gandy.core.objectives import GAMES

    path = Path(rob.__file__).parent / "baseline.yaml"
    for data in ("mnist", "color_mnist"):
        over = [f"objective={game}", f"target={{name: {data}}}", *(["penalty.weight=10"] if GAMES[game].penalty else [])]
        cfg = gandy.load_config(path, over)
        assert (cfg.steps, cfg.batch_size, cfg.generator.width, cfg.critic.width) == (3000, 64, 32, 32)
        assert cfg.optim.generator.lr == cfg.optim.critic.lr == 2e-4 and tuple(cfg.optim.critic.betas) == (0.5, 0.999)
        assert (cfg.metrics.images.n_fake, cfg.metrics.images.n_real) == (2000, 1000)
        assert cfg.penalty.name == (GAMES[game].penalty or "none")
        assert cfg.penalty.weight == (10 if GAMES[game].penalty else 0)


def test_robustness_good_share_and_its_wilson_interval_by_hand():
    """A run is good when it did not diverge, its FID is at most the threshold's and it covers at
    least its modes; the share is over all runs, diverged ones included, with the Wilson 95 %
    interval computed here from its formula."""
    from gandy.core.errors import ConfigError
    from gandy.studies.robustness.experiment import check_threshold, score, summarise

    th = {"fid": 100.0, "modes_covered": 5}
    t = pd.DataFrame({"game": ["ns"] * 5 + ["gan_gp"] * 3,
                      "fid": [50.0, 100.0, 100.5, 20.0, np.nan, 10.0, 99.0, np.inf],
                      "modes_covered": [5, 9, 9, 4, 9, 7, 5, 9]})
    for k in ("kid", "score", "ms_ssim", "w_critic"):
        t[k] = 1.0
    s = score(t, th)
    assert s.good.tolist() == [True, True, False, False, False, True, True, False]
    assert s.diverged.tolist() == [False] * 4 + [True] + [False] * 2 + [True]
    out = summarise(s)
    z = 1.959963984540054

    def wilson(k, n):
        p, c = k / n, z * z / n
        mid, half = (p + c / 2) / (1 + c), z * np.sqrt(p * (1 - p) / n + c / (4 * n)) / (1 + c)
        return mid - half, mid + half

    for game, k, n in (("ns", 2, 5), ("gan_gp", 2, 3)):
        g = out[game]["good"]
        assert (g["k"], g["n"]) == (k, n) and g["fraction"] == pytest.approx(k / n)
        assert (g["lo"], g["hi"]) == pytest.approx(wilson(k, n), abs=1e-9)
    assert out["ns"]["diverged"] == 1 and out["ns"]["best_fid"] == 20.0
    for bad in ({"fid": 0, "modes_covered": 5}, {"fid": 10}, {"fid": 10, "modes_covered": 2.5}, None):
        with pytest.raises(ConfigError, match="threshold"):
            check_threshold(bad)
