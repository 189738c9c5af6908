"""Sample quality of an image GAN run: every metric of :mod:`gandy.core.images.quality` with its protocol.

For each member (seed) of a run, ``n_fake`` images are generated from fresh latents and compared
with ``n_real`` real images of the target's evaluation split:

==================  =====================================================================
``fid``             Frechet distance of the digit classifier's 128 penultimate features
                    (Color MNIST: per channel, concatenated to 384 features)
``kid``             kernel distance on the same features (mean over subsets of <= 1,000)
``score``           classifier score exp E KL(p(y|x) || p(y)): 10 classes (MNIST) or the
                    1,000 digit triples (Color MNIST, p(y|x) the product of the channels')
``modes_covered``   classes (MNIST, of 10) or digit triples (Color MNIST, of 1,000) predicted
                    for at least one image; ``kl_to_uniform`` beside it
``ms_ssim``         mean pairwise MS-SSIM in 5 batches of 64 (lower = more diverse)
``w_critic``        an independent WGAN-GP critic trained on one half of the real and fake
                    images, E f(real) - E f(fake) on the other half
==================  =====================================================================

Each metric is written as ``{"value": ..., "protocol": {...}}``; the protocol names the feature
extractor and its sha256, its test accuracy, ``n_real``, ``n_fake``, the real ``split`` and the
``seed`` of every random choice, so a number can be reproduced or refused as incomparable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from gandy.core.datafile import check_data_file
from gandy.core.errors import ConfigError
from gandy.core.images import quality as Q
from gandy.core.images.classifier import load_classifier
from gandy.core.images.data import color_mnist
from gandy.core.rng import Stream
from gandy.core.targets import ColorMnist

METRICS = ("fid", "kid", "score", "modes_covered", "ms_ssim", "w_critic")
METRIC_DOCS = {
    "fid": "Frechet distance of the digit classifier's 128 penultimate features (Color MNIST: 3 x 128), "
           "metrics.images.n_fake generated vs n_real real images of metrics.images.split",
    "kid": "kernel (polynomial) distance on the same features, mean over subsets of <= 1,000",
    "score": "classifier score exp E KL(p(y|x) || p(y)) over the generated images (10 classes or 1,000 triples)",
    "modes_covered": "classes (or digit triples) predicted for at least one generated image",
    "ms_ssim": "mean pairwise MS-SSIM of generated images, 5 batches of 64 (lower = more diverse)",
    "w_critic": "E f(real) - E f(fake) of an independent WGAN-GP critic trained on held-out halves",
    "fid_inception": "FID on torch-fidelity's Inception-v3 pool features (with local weights)",
}
"""One line per image metric, for reports; each run's summary.json holds the full protocol."""


def real_images(target, split: str, n: int) -> np.ndarray:
    """``n`` real images ``(n, C, 28, 28)`` of the target's law on ``split`` (deterministic).

    MNIST and user images: the first ``n`` of a fixed permutation of the split (``n`` is cut to
    its size); Color MNIST: images number 0 .. n-1 of the split.
    """
    c = target.image_shape[0]
    if isinstance(target, ColorMnist):
        return color_mnist(np.arange(n), split, target.data_seed)[0]
    if target.split_images is not None:
        x = target.split_images(split)
    else:
        x = target.data.cpu().numpy()
    perm = np.random.default_rng(0).permutation(len(x))[:n]
    return np.asarray(x[perm], dtype=np.float32).reshape(-1, c, 28, 28)


class Extractor:
    """The digit classifier applied to 1- or 3-channel images: features, class probabilities and
    mode ids (digits, or digit triples ``100 r + 10 g + b``)."""

    def __init__(self, classifier, channels: int):
        self.clf, self.c = classifier, channels
        self.n_modes = 10 ** channels

    def features(self, x: np.ndarray) -> np.ndarray:
        return self.clf.features(x) if self.c == 1 else self.clf.features_per_channel(x)

    def probs(self, x: np.ndarray) -> np.ndarray:
        """``(n, 10^C)``: p(y|x) over digits, or over triples as the product of the channels'."""
        if self.c == 1:
            return self.clf.probs(x)
        p = self.clf.probs(x.reshape(-1, 1, 28, 28)).reshape(len(x), 3, 10)
        return np.einsum("ni,nj,nk->nijk", p[:, 0], p[:, 1], p[:, 2]).reshape(len(x), 1000)

    def modes(self, x: np.ndarray) -> np.ndarray:
        if self.c == 1:
            return self.clf.predict(x)
        lab = self.clf.predict_per_channel(x)
        return lab[:, 0] * 100 + lab[:, 1] * 10 + lab[:, 2]

    def protocol(self) -> dict:
        return {"extractor": self.clf.name + ("" if self.c == 1 else " per channel"),
                "extractor_sha256": self.clf.checksum, "extractor_test_accuracy": self.clf.test_accuracy}


def evaluate_images(fake: np.ndarray, real: np.ndarray, extractor: Extractor, split: str, seed: int,
                    w_critic_steps: int = 300, device: str = "cpu") -> dict:
    """Every metric of one member: ``{name: {"value", "protocol", ...}}``.

    ``fake (n, C, 28, 28)``, ``real (m, C, 28, 28)``, both in [-1, 1]; ``fake`` must be finite
    (a member that blew up is not evaluated: its values are NaN, labelled by the caller).
    """
    base = {**extractor.protocol(), "n_real": int(len(real)), "n_fake": int(len(fake)), "split": split,
            "seed": int(seed)}
    f_real, f_fake = extractor.features(real), extractor.features(fake)
    out = {"fid": {"value": Q.fid(f_real, f_fake), "protocol": base}}
    kid, kid_std = Q.kid(f_real, f_fake, subsets=50, subset_size=1000, seed=seed)
    out["kid"] = {"value": kid, "std": kid_std, "protocol": {**base, "subsets": 50, "subset_size": 1000,
                                                             "kernel": "(x.y / F + 1)^3"}}
    score, score_std = Q.classifier_score(extractor.probs(fake), splits=10)
    out["score"] = {"value": score, "std": score_std, "protocol": {**base, "n_real": 0, "splits": 10,
                                                                   "classes": extractor.n_modes}}
    cov = Q.mode_coverage(extractor.modes(fake), extractor.n_modes)
    out["modes_covered"] = {"value": cov["modes_covered"], "kl_to_uniform": cov["kl_to_uniform"],
                            "protocol": {**base, "n_real": 0, "modes": extractor.n_modes}}
    batch = min(64, len(fake))
    out["ms_ssim"] = {"value": Q.ms_ssim_diversity(fake, batches=5, batch_size=batch, seed=seed),
                      "protocol": {"n_real": 0, "n_fake": int(len(fake)), "split": split, "seed": int(seed),
                                   "extractor": "none (pixels)", "batches": 5, "batch_size": batch,
                                   "window": "gaussian 7x7 sigma 1.5, 3 scales"}}
    h_r, h_f = len(real) // 2, len(fake) // 2
    w = Q.w_critic(real[:h_r], fake[:h_f], real[h_r:], fake[h_f:], steps=w_critic_steps, seed=seed, device=device)
    out["w_critic"] = {"value": w["value"], "stderr": w["stderr"],
                       "protocol": {"extractor": "none (a fresh MLP critic on pixels, WGAN-GP)", "n_real": int(len(real)),
                                    "n_fake": int(len(fake)), "split": split,
                                    "halves": "the first half of each sample trains the critic, the second tests it",
                                    "seed": int(seed), "steps": w_critic_steps, "gp_weight": 10.0}}
    return out


def check_inception(path: str) -> None:
    """``metrics.images.inception`` must name a file and torch-fidelity must be installed."""
    check_data_file(path, "metrics.images.inception", expected="an Inception weights file")
    try:
        __import__("torch_fidelity")  # optional extra: gandy[fidelity]
    except ImportError as e:
        raise ConfigError("metrics.images.inception", f"Inception FID needs torch-fidelity and torchvision ({e}): "
                                                      "pip install -e '.[fidelity]'") from None


class _Uint8Images(torch.utils.data.Dataset):
    """Images ``(n, C, 28, 28)`` in [-1, 1] as torch-fidelity wants them: uint8 RGB ``(3, 28, 28)``
    (grey repeated over the channels; torch-fidelity resizes for Inception itself)."""

    def __init__(self, x: np.ndarray):
        x = np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
        self.x = torch.from_numpy(np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def inception_fid(real: np.ndarray, fake: np.ndarray, weights: str, seed: int, device: str = "cpu") -> dict:
    """torch-fidelity's Inception FID (2048-D pool features of its ``inception-v3-compat``) with
    local ``weights``; ``{"value", "protocol"}``."""
    import torch_fidelity  # optional extra: gandy[fidelity]

    out = torch_fidelity.calculate_metrics(
        input1=_Uint8Images(fake), input2=_Uint8Images(real), fid=True, cuda=device.startswith("cuda"),
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=weights, verbose=False,
        save_cpu_ram=True)
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    return {"value": float(out["frechet_inception_distance"]),
            "protocol": {"extractor": f"torch-fidelity {torch_fidelity.__version__} inception-v3-compat",
                         "extractor_sha256": sha, "n_real": int(len(real)), "n_fake": int(len(fake)),
                         "seed": int(seed), "resize": "torch-fidelity's own, 28 -> 299"}}


def generate(sim, st, n: int, chunk: int = 500) -> torch.Tensor:
    """``(B, n, d)`` images from fresh latents (stream ``evaluation``) for every member; batch norm
    sees chunks of ``chunk`` images."""
    stream = Stream(st.streams["latent"].keys, "evaluation")
    g = sim.generator
    outs = []
    with torch.no_grad():
        for i in range(0, n, chunk):
            outs.append(g.forward(st.gen, g.latent(stream, min(chunk, n - i)).to(sim.device)).cpu())
    return torch.cat(outs, 1)


@dataclass(frozen=True)
class ImageMetricsSpec:
    """What :func:`run_metrics` computes (``metrics.images``): ``n_fake`` generated and ``n_real``
    held-out images of ``split``, the metrics' ``seed``, the W-critic's ``w_critic_steps`` and the
    Inception weights file for ``fid_inception`` (None: not computed)."""

    n_fake: int = 2000
    n_real: int = 1000
    split: str = "test"
    seed: int = 0
    w_critic_steps: int = 300
    inception: Optional[str] = None


def run_metrics(sim, st, b: int, spec: ImageMetricsSpec, classifier=None) -> list[dict]:
    """Image metrics of the first ``b`` members at the end of a run: one ``{metric: {...}}`` per
    member; members that diverged or produced non-finite images get ``{"value": NaN, "diverged": True}``."""
    mc = spec
    target = sim.target
    ext = Extractor(classifier or load_classifier(), target.image_shape[0])
    real = real_images(target, mc.split, mc.n_real)
    fake = generate(sim, st, mc.n_fake).numpy()
    out = []
    for i in range(b):
        x = fake[i].reshape(-1, *target.image_shape)
        if not bool(st.alive[i]) or not np.isfinite(x).all():
            out.append({k: {"value": float("nan"), "diverged": True} for k in METRICS})  # (and no fid_inception)
            continue
        m = evaluate_images(np.clip(x, -1, 1), real, ext, mc.split, mc.seed, mc.w_critic_steps, str(sim.device))
        if mc.inception is not None:
            m["fid_inception"] = inception_fid(real, np.clip(x, -1, 1), mc.inception, mc.seed, str(sim.device))
            m["fid_inception"]["protocol"]["split"] = mc.split
        out.append(m)
    return out


def metric_columns(per_member: list[dict]) -> dict:
    """Per-member result columns ``{metric: [value per member]}`` (NaN where a member has none)."""
    keys = [*METRICS, *(("fid_inception",) if any("fid_inception" in m for m in per_member) else ())]
    return {k: [float(m.get(k, {"value": float("nan")})["value"]) for m in per_member] for k in keys}


def summarise(seeds: list[int], per_member: list[dict]) -> dict:
    """Summary entries ``{metric: {"values": {seed: v}, "mean", "protocol"}}`` of one run's seeds;
    non-finite values are listed but left out of the mean (with ``diverged_seeds``)."""
    out = {}
    for k in (*METRICS, *(("fid_inception",) if any("fid_inception" in m for m in per_member) else ())):
        vals = {str(s): m.get(k, {"value": float("nan")})["value"] for s, m in zip(seeds, per_member)}
        good = [float(v) for v in vals.values() if np.isfinite(v)]
        proto: Optional[dict] = next((m[k]["protocol"] for m in per_member if "protocol" in m.get(k, {})), None)
        out[k] = {"values": vals, "mean": float(np.mean(good)) if good else float("nan"), "protocol": proto,
                  "diverged_seeds": [s for s, v in vals.items() if not np.isfinite(v)]}
    return out
