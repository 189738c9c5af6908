"""Image data (gandy.core.images.data): MNIST split, Color MNIST, user images and sample grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gandy.core.images.data import color_mnist, color_mode_ids, grid, load_images, mnist
from gandy.runs.config import ConfigError
from gandy.views.plots import save_grid

FIELD = "data.path"


# --------------------------------------------------------------------------- MNIST split
def test_split_sizes_balance_and_range():
    for split, n in (("train", 4000), ("test", 1000), ("all", 5000)):
        x, y = mnist(split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
        assert x.min() == -1.0 and x.max() == 1.0


def test_split_is_disjoint_and_follows_the_rule():
    xa, ya = mnist("all")
    xr, yr = mnist("train")
    xt, yt = mnist("test")
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert not rows(xr) & rows(xt)
    # the rule: per class, the last 20 % in stored order are the test digits, order kept
    for c in range(10):
        xc = xa[ya == c]
        np.testing.assert_array_equal(xt[yt == c], xc[400:])
        np.testing.assert_array_equal(xr[yr == c], xc[:400])


def test_mnist_returns_copies_and_rejects_bad_split():
    x, y = mnist("train")
    x[:] = 0.5
    y[:] = 7
    x2, y2 = mnist("train")
    assert x2.min() == -1.0 and np.bincount(y2).tolist() == [400] * 10
    with pytest.raises(ValueError, match="split"):
        mnist("validation")


# --------------------------------------------------------------------------- Color MNIST
def test_color_mnist_shapes_and_channels_are_digits_of_their_labels():
    im, lab = color_mnist(np.arange(40), "train", seed=3)
    assert im.shape == (40, 3, 28, 28) and im.dtype == np.float32
    assert lab.shape == (40, 3) and lab.dtype == np.int64
    assert im.min() >= -1.0 and im.max() <= 1.0
    x, y = mnist("train")
    for k in range(40):
        for c in range(3):
            same = x[y == lab[k, c], 0]
            assert (same == im[k, c]).all(axis=(1, 2)).any(), (k, c)


def test_color_mnist_image_depends_on_its_index_only():
    a, la = color_mnist([5, 17, 99, 123456789], seed=1)
    b, lb = color_mnist([123456789, 2, 17], seed=1)
    c, lc = color_mnist(torch.tensor([99]), seed=1)
    np.testing.assert_array_equal(a[1], b[2])
    np.testing.assert_array_equal(a[3], b[0])
    np.testing.assert_array_equal(a[2], c[0])
    assert la[1].tolist() == lb[2].tolist()
    # repeats give the same image; other seeds and splits give other images
    d, _ = color_mnist([7, 7])
    np.testing.assert_array_equal(d[0], d[1])
    other_seed, _ = color_mnist([5, 17, 99, 123456789], seed=2)
    assert not (other_seed == a).all(axis=(1, 2, 3)).any()
    test_split, _ = color_mnist([5, 17, 99, 123456789], split="test", seed=1)
    assert not (test_split == a).all(axis=(1, 2, 3)).any()


def test_color_mnist_covers_all_modes_evenly():
    _, lab = color_mnist(np.arange(20_000))
    ids = color_mode_ids(lab)
    assert ids.min() >= 0 and ids.max() < 1000 and len(np.unique(ids)) == 1000
    for c in range(3):  # 2,000 expected per digit, sd ~42
        counts = np.bincount(lab[:, c], minlength=10)
        assert counts.min() > 1800 and counts.max() < 2200
    # channels are drawn independently: R and G agree about 10 % of the time
    assert 0.08 < (lab[:, 0] == lab[:, 1]).mean() < 0.12


def test_color_mnist_rejects_bad_indices():
    with pytest.raises(ValueError, match="integers"):
        color_mnist([0.5, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        color_mnist([-1])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        color_mnist([2**32])
    with pytest.raises(ValueError, match="1-D"):
        color_mnist(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="split"):
        color_mnist([0], split="val")
    im, lab = color_mnist([])
    assert im.shape == (0, 3, 28, 28) and lab.shape == (0, 3)


def test_color_mode_ids():
    lab = np.array([[1, 2, 3], [0, 0, 0], [9, 9, 9], [0, 5, 0]])
    assert color_mode_ids(lab).tolist() == [123, 0, 999, 50]
    assert color_mode_ids(torch.tensor(lab)).dtype == np.int64
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        color_mode_ids(np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match="0..9"):
        color_mode_ids(np.array([[1, 10, 0]]))


# --------------------------------------------------------------------------- load_images
@pytest.fixture
def grey_u8():
    """Five 28x28 uint8 images with distinct, known pixels (0 and 255 present)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    a[0, 0, 0], a[0, 0, 1] = 0, 255
    return a


def _npy(tmp_path, arr, name="x.npy"):
    p = tmp_path / name
    np.save(p, arr)
    return str(p)


def test_load_npy_layouts(tmp_path, grey_u8):
    expect = grey_u8.astype(np.float32) / 255 * 2 - 1  # (5, 28, 28)
    out = load_images(_npy(tmp_path, grey_u8), FIELD)  # (n, 28, 28) uint8
    assert out.shape == (5, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], expect, atol=1e-6)
    assert out.min() == -1.0 and out.max() == 1.0
    # (n, 1, 28, 28) floats in [0, 1]
    out = load_images(_npy(tmp_path, (grey_u8 / 255.0)[:, None]), FIELD)
    np.testing.assert_allclose(out[:, 0], expect, atol=1e-6)
    # (n, 3, 28, 28) floats in [-1, 1] pass through
    rgb = np.stack([expect, -expect, np.zeros_like(expect)], axis=1)
    out = load_images(_npy(tmp_path, rgb), FIELD)
    assert out.shape == (5, 3, 28, 28)
    np.testing.assert_array_equal(out, rgb)
    # (n, 28, 28, 3) uint8: channels last are moved first
    hwc = np.stack([grey_u8, 255 - grey_u8, np.full_like(grey_u8, 255)], axis=-1)
    out = load_images(_npy(tmp_path, hwc), FIELD)
    assert out.shape == (5, 3, 28, 28)
    np.testing.assert_allclose(out[:, 0], expect, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], -expect, atol=1e-6)
    assert (out[:, 2] == 1.0).all()


def _png_folder(tmp_path, arrays, name="pngs"):
    d = tmp_path / name
    d.mkdir()
    for k, a in enumerate(arrays):
        Image.fromarray(a).save(d / f"img{k:03d}.png")
    return d


def test_load_png_folder_grey_and_rgb(tmp_path, grey_u8):
    d = _png_folder(tmp_path, list(grey_u8))
    (d / "notes.txt").write_text("ignored")
    out = load_images(str(d), FIELD)
    assert out.shape == (5, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], grey_u8 / 255 * 2 - 1, atol=1e-6)
    hwc = np.stack([grey_u8, 255 - grey_u8, grey_u8 // 2], axis=-1)
    out = load_images(str(_png_folder(tmp_path, list(hwc), "rgb")), FIELD)
    assert out.shape == (5, 3, 28, 28)
    np.testing.assert_allclose(out, hwc.transpose(0, 3, 1, 2) / 255 * 2 - 1, atol=1e-6)


def _bad_inputs(tmp_path, grey_u8):
    """(path, expected message fragment) for every kind of bad input."""
    cases = [(str(tmp_path / "missing.npy"), "no such file")]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((str(empty), "no .png"))
    only_txt = tmp_path / "txt"
    only_txt.mkdir()
    (only_txt / "a.txt").write_text("x")
    cases.append((str(only_txt), "no .png"))
    cases.append((_npy(tmp_path, np.zeros((4, 32, 32), np.uint8), "big.npy"), "shape"))
    cases.append((_npy(tmp_path, np.zeros((4, 2, 28, 28), np.uint8), "two.npy"), "shape"))
    cases.append((_npy(tmp_path, np.zeros((28, 28), np.uint8), "one.npy"), "shape"))
    cases.append((_npy(tmp_path, np.zeros((0, 28, 28), np.uint8), "none.npy"), "no images"))
    nan = np.zeros((3, 28, 28), np.float32)
    nan[1, 2, 3] = np.nan
    cases.append((_npy(tmp_path, nan, "nan.npy"), "NaN"))
    inf = np.zeros((3, 28, 28))
    inf[0, 0, 0] = np.inf
    cases.append((_npy(tmp_path, inf, "inf.npy"), "NaN or Inf"))
    cases.append((_npy(tmp_path, grey_u8.astype(np.float64), "f255.npy"), "span"))
    cases.append((_npy(tmp_path, grey_u8.astype(np.int16) - 1, "neg.npy"), "span"))
    cases.append((_npy(tmp_path, np.full((3, 28, 28), "a"), "str.npy"), "numeric"))
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([None, 1], dtype=object), allow_pickle=True)
    cases.append((str(obj), "cannot read"))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    cases.append((str(junk), "cannot read"))
    npz = tmp_path / "x.npz"
    np.savez(npz, x=grey_u8)
    cases.append((str(npz), ".npz"))
    mixed = _png_folder(tmp_path, [grey_u8[0], np.stack([grey_u8[1]] * 3, axis=-1)], "mixed")
    cases.append((str(mixed), "mixes grey and RGB"))
    wrong_size = _png_folder(tmp_path, [grey_u8[0], np.zeros((32, 32), np.uint8)], "size")
    cases.append((str(wrong_size), "32x32"))
    broken = _png_folder(tmp_path, [grey_u8[0]], "broken")
    (broken / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases.append((str(broken), "cannot read"))
    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    Image.fromarray(grey_u8[0]).save(jpeg / "a.png", format="JPEG")
    cases.append((str(jpeg), "not a PNG"))
    return cases


def test_load_images_bad_inputs_raise_config_error(tmp_path, grey_u8):
    for path, fragment in _bad_inputs(tmp_path, grey_u8):
        with pytest.raises(ConfigError) as e:
            load_images(path, FIELD)
        assert e.value.field == FIELD, path
        assert fragment in e.value.message, (path, e.value.message)


# --------------------------------------------------------------------------- grids
def test_save_grid_writes_a_png_of_the_right_size(tmp_path):
    x, _ = mnist("test")
    imgs = x[:11].copy()
    imgs[0] = 1.0  # an all-white first tile
    p = save_grid(imgs, tmp_path / "sub" / "grid.png", nrow=4)
    assert p.exists() and [f.name for f in p.parent.iterdir()] == ["grid.png"]  # no temp file left
    with Image.open(p) as im:
        assert im.format == "PNG"
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)  # (width, height): 4 columns, ceil(11/4) rows
        rgb = np.asarray(im.convert("RGB"))
    assert (rgb[2:30, 2:30] == 255).all()  # the white tile
    assert (rgb[:2] == 0).all() and (rgb[:, :2] == 0).all()  # padding
    assert (rgb[62:, 92:] == 0).all()  # the cell past the 11th image stays empty
    assert (rgb[62:, 2:92] > 0).any()  # the 9th to 11th images are drawn
    # torch input and RGB images; overwriting an existing file
    im3, _ = color_mnist(range(3))
    save_grid(torch.from_numpy(im3), p)
    with Image.open(p) as im:
        assert im.size == (3 * 30 + 2, 32)


def test_grid_rejects_bad_shapes_and_tolerates_nan():
    with pytest.raises(ValueError, match="shape"):
        grid(np.zeros((2, 2, 28, 28)))
    with pytest.raises(ValueError, match="shape"):
        grid(np.zeros((0, 1, 28, 28)))
    g = grid(np.full((1, 1, 28, 28), np.nan))
    assert np.isfinite(g).all() and g[10, 10, 0] == 0.5
