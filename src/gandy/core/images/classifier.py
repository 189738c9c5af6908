"""A small CNN digit classifier for sample-quality metrics on MNIST and Color MNIST.

Architecture (input ``(n, 1, 28, 28)`` in [-1, 1])::

    conv 3x3, 1 -> 16, pad 1, ReLU, max-pool 2    -> (n, 16, 14, 14)
    conv 3x3, 16 -> 32, pad 1, ReLU, max-pool 2   -> (n, 32, 7, 7)
    flatten, linear 1568 -> 128, ReLU             -> (n, 128)   the "features"
    linear 128 -> 10                              -> (n, 10)    logits

It is trained on ``mnist("train")`` (4,000 digits) with Adam, random shifts of up to 2 pixels and a
cosine learning-rate decay, all drawn from a generator seeded by ``seed``: on one machine with a
given thread count, two trainings with the same seed give bit-identical weights. Test accuracy on
``mnist("test")`` (1,000 held-out digits) is measured after training and stored with the weights.

:func:`load_classifier` keeps one trained copy in a cache folder: ``<name>.pt`` (the state dict,
``torch.save``) and ``<name>.json`` (test accuracy, split sizes, seed, epochs, version and the
sha256 of the ``.pt`` file). Both are written atomically; on load the checksum is verified and a
missing, corrupt or mismatched cache is retrained (with a warning when a cache existed).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gandy.core.atomic import write_atomic
from gandy.core.images.data import SIDE, mnist

NAME = "gandy-mnist-cnn-v1"
"""Version string of the architecture and training recipe; change it when either changes."""
FEATURES = 128
SEED = 0
EPOCHS = 12
BATCH_SIZE = 50
LR = 2e-3
MAX_SHIFT = 2
EVAL_BATCH = 500

ArrayLike = Union[np.ndarray, torch.Tensor]


class DigitNet(nn.Module):
    """The CNN above: ``forward(x (n, 1, 28, 28)) -> (logits (n, 10), features (n, 128))``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, FEATURES)
        self.fc2 = nn.Linear(FEATURES, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        f = F.relu(self.fc1(h.flatten(1)))
        return self.fc2(f), f


# --------------------------------------------------------------------------- the wrapper
class Classifier:
    """A trained :class:`DigitNet` in eval mode, with numpy in / numpy out helpers.

    Every method takes grey images ``(n, 1, 28, 28)`` (also ``(n, 28, 28)`` or flat ``(n, 784)``),
    numpy or torch, with values in [-1, 1]; they run in batches of ``EVAL_BATCH`` under
    ``torch.no_grad`` on ``self.device`` and return numpy arrays. Values outside [-1.01, 1.01] or
    non-finite values raise ValueError (they usually mean a wrong normalisation).

    Attributes: ``name`` (version string), ``checksum`` (sha256 hex of the serialised weights, the
    bytes of the cached ``.pt`` file), ``test_accuracy`` (on ``mnist("test")``), ``info`` (the
    sidecar dict), ``module``, ``device``.
    """

    def __init__(self, module: DigitNet, info: dict, checksum: str):
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.info = dict(info)
        self.checksum = checksum
        self.name = info.get("name", NAME)
        self.test_accuracy = float(info.get("test_accuracy", math.nan))
        self.device = next(module.parameters()).device

    def __repr__(self) -> str:
        return f"Classifier({self.name}, test_accuracy={self.test_accuracy:.4f}, sha256={self.checksum[:12]})"

    def to(self, device) -> "Classifier":
        """Move the network to ``device`` (in place); returns self."""
        self.module.to(device)
        self.device = torch.device(device)
        return self

    # ---- batching
    def _grey(self, images: ArrayLike) -> torch.Tensor:
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
        n = x.shape[0] if x.ndim else 0
        if (x.ndim == 2 and x.shape[1] == SIDE * SIDE) or (x.ndim == 3 and x.shape[1:] == (SIDE, SIDE)):
            x = x.reshape(n, 1, SIDE, SIDE)
        if x.ndim != 4 or x.shape[1:] != (1, SIDE, SIDE):
            raise ValueError(f"expected grey images (n, 1, 28, 28), got shape {tuple(x.shape)}")
        return x

    def _run(self, images: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (n, 10), features (n, F))`` float64 CPU tensors."""
        x = self._grey(images)
        logits, feats = [], []
        with torch.no_grad():
            for i in range(0, x.shape[0], EVAL_BATCH):
                b = x[i:i + EVAL_BATCH].to(self.device, torch.float32)
                if not torch.isfinite(b).all():
                    raise ValueError("images contain NaN or Inf")
                lo, hi = float(b.min()), float(b.max())
                if lo < -1.01 or hi > 1.01:
                    raise ValueError(f"images must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
                out, f = self.module(b)
                logits.append(out.double().cpu())
                feats.append(f.double().cpu())
        if not logits:
            return torch.zeros(0, 10, dtype=torch.float64), torch.zeros(0, FEATURES, dtype=torch.float64)
        return torch.cat(logits), torch.cat(feats)

    # ---- grey images
    def features(self, images: ArrayLike) -> np.ndarray:
        """Penultimate-layer activations ``(n, 128)`` float64 of grey ``images (n, 1, 28, 28)``."""
        return self._run(images)[1].numpy()

    def logits(self, images: ArrayLike) -> np.ndarray:
        """Class logits ``(n, 10)`` float64."""
        return self._run(images)[0].numpy()

    def probs(self, images: ArrayLike) -> np.ndarray:
        """Class probabilities ``(n, 10)`` float64 (rows sum to 1)."""
        return torch.softmax(self._run(images)[0], dim=1).numpy()

    def predict(self, images: ArrayLike) -> np.ndarray:
        """Predicted digits ``(n,)`` int64."""
        return self._run(images)[0].argmax(1).numpy()

    # ---- three-channel (Color MNIST) images
    @staticmethod
    def _channels(images: ArrayLike) -> tuple[ArrayLike, int]:
        x = images if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.ndim == 2 and x.shape[1] == 3 * SIDE * SIDE:
            x = x.reshape(x.shape[0], 3, SIDE, SIDE)
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, SIDE, SIDE):
            raise ValueError(f"expected RGB images (n, 3, 28, 28), got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0] * 3, 1, SIDE, SIDE), x.shape[0]

    def features_per_channel(self, images: ArrayLike) -> np.ndarray:
        """Features of each channel of ``images (n, 3, 28, 28)``, concatenated R, G, B:
        ``(n, 3 * 128)`` float64."""
        x, n = self._channels(images)
        return self.features(x).reshape(n, 3 * FEATURES)

    def predict_per_channel(self, images: ArrayLike) -> np.ndarray:
        """The digit in each channel of ``images (n, 3, 28, 28)``: ``(n, 3)`` int64 (R, G, B)."""
        x, n = self._channels(images)
        return self.predict(x).reshape(n, 3)


# --------------------------------------------------------------------------- training
def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image of ``x (B, 1, 28, 28)`` by whole pixels in [-max_shift, max_shift]
    (independently in each axis), filling with background (-1)."""
    if max_shift <= 0:
        return x
    b = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)[:, 0]  # (B, 28 + 2s, 28 + 2s)
    d = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen)
    ar = torch.arange(SIDE)
    rows = (d[:, 0:1] + ar)[:, :, None]  # (B, 28, 1)
    cols = (d[:, 1:2] + ar)[:, None, :]  # (B, 1, 28)
    return pad[torch.arange(b)[:, None, None], rows, cols][:, None]


def _new_net(seed: int) -> DigitNet:
    """A freshly initialised :class:`DigitNet` (init drawn from ``seed``; the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitNet()


def _serialise(module: nn.Module) -> bytes:
    """The state dict as ``torch.save`` bytes (deterministic for equal weights)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    return buf.getvalue()


def train_classifier(seed: int = SEED, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR,
                     max_shift: int = MAX_SHIFT, max_steps: Optional[int] = None) -> Classifier:
    """Train :class:`DigitNet` on ``mnist("train")`` on the CPU, deterministically in ``seed``.

    Adam (``lr``, cosine decay to 0 over the run), minibatches of ``batch_size`` in a seeded random
    order each epoch, random shifts of up to ``max_shift`` pixels. ``max_steps`` caps the number of steps (the
    cosine decay then spans them; for tests). Trains on one intra-op thread (restored afterwards):
    the weights, hence the checksum, then do not depend on the caller's thread count, and on a small
    busy machine one thread was 5-15x faster than two. Leaves the global torch RNG state untouched.
    Returns the classifier with its test accuracy on ``mnist("test")``; ``info["train_seconds"]``
    is the wall time.
    """
    if epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"epochs, batch_size and max_steps must be >= 1, got {epochs}, {batch_size}, {max_steps}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seed, epochs, batch_size, lr, max_shift, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(seed, epochs, batch_size, lr, max_shift, max_steps) -> Classifier:
    t0 = time.perf_counter()
    x, y = mnist("train")
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    n = len(y)
    net = _new_net(seed)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / total)))
    net.train()
    step = 0
    while step < total:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb = _shift(x[idx], gen, max_shift)
            loss = F.cross_entropy(net(xb)[0], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
    net.eval()
    xt, yt = mnist("test")
    info = {"name": NAME, "seed": int(seed), "epochs": int(epochs), "steps": step, "batch_size": int(batch_size),
            "lr": float(lr), "max_shift": int(max_shift), "n_train": n, "n_test": len(yt),
            "torch": torch.__version__, "torch_threads": 1}
    clf = Classifier(net, info, hashlib.sha256(_serialise(net)).hexdigest())
    clf.test_accuracy = float((clf.predict(xt) == yt).mean())
    clf.info.update(test_accuracy=clf.test_accuracy, sha256=clf.checksum,
                    train_seconds=round(time.perf_counter() - t0, 2))
    return clf


# --------------------------------------------------------------------------- the cache
def resolve_cache_dir(cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$GANDY_CACHE``, else ``$XDG_CACHE_HOME/gandy``, else
    ``~/.cache/gandy``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("GANDY_CACHE"):
        return Path(os.environ["GANDY_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "gandy"
    return Path.home() / ".cache" / "gandy"


def cache_paths(cache_dir: Optional[Union[str, Path]] = None) -> tuple[Path, Path]:
    """``(weights .pt, sidecar .json)`` paths in the cache folder."""
    d = resolve_cache_dir(cache_dir)
    return d / f"{NAME}.pt", d / f"{NAME}.json"


def _load_cached(pt: Path, meta: Path) -> Classifier:
    """The cached classifier; raises ValueError (with the reason) if anything does not check out."""
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {meta}: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{meta} is not a JSON object")
    if info.get("name") != NAME:
        raise ValueError(f"{meta} is for {info.get('name')!r}, not {NAME!r}")
    blob = pt.read_bytes()  # hash and load the same bytes
    digest = hashlib.sha256(blob).hexdigest()
    if digest != info.get("sha256"):
        raise ValueError(f"checksum mismatch: {pt} has sha256 {digest[:12]}..., {meta.name} expects "
                         f"{str(info.get('sha256'))[:12]}...")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        net = _new_net(0)
        net.load_state_dict(state)
        float(info["test_accuracy"])
    except Exception as e:
        raise ValueError(f"cannot load {pt}: {e}") from None
    return Classifier(net, info, digest)


def load_classifier(cache_dir: Optional[Union[str, Path]] = None) -> Classifier:
    """The cached trained classifier (folder: :func:`resolve_cache_dir`), training and caching it
    once if absent. A cache that fails its checks (unreadable sidecar, other version, checksum
    mismatch, weights that do not load) is retrained and overwritten, with a warning."""
    pt, meta = cache_paths(cache_dir)
    if pt.exists() or meta.exists():
        try:
            return _load_cached(pt, meta)
        except (OSError, ValueError) as e:
            warnings.warn(f"gandy classifier cache in {pt.parent} is unusable ({e}); retraining", stacklevel=2)
    clf = train_classifier()
    blob = _serialise(clf.module)  # the bytes whose sha256 is clf.checksum
    pt.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(pt, blob)
    write_atomic(meta, (json.dumps(clf.info, indent=2, sort_keys=True) + "\n").encode())
    return clf
