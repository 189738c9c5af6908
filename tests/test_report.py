"""gandy report: the page's data (encoding, budget, kinds, bad stores) and, in headless Chromium,
the page itself (no console errors, the metric menu, a click on a cell, the layout)."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gandy.runs import config as C
from gandy.runs.config import ConfigError
from gandy.runs.snapshots import principal_plane
from gandy.views.plots import PHASE_COLORS
from gandy.views.report import BUDGET, budget_shape, detect, member_blob, payload, render, write_report

from datafiles import synthetic_sweep

SWEEP = {
    "target": {"name": "two_modes_1d"},
    "particles": {"n": 16},
    "critic": {"name": "mlp", "widths": [16]},
    "optim": {"critic": {"name": "adam", "lr": 0.01}},
    "steps": 60, "log_every": 10, "seeds": [0, 1],
    "sweep": {"kernel.g2": [0.01, 0.3, 0.9], "optim.critic.lr": [0.001, 0.03]},
}
LAB = {
    "target": {"name": "ring8"},
    "generator": {"name": "mlp", "latent_dim": 2, "widths": [16]},
    "critic": {"name": "mlp", "widths": [16]},
    "objective": "ns", "penalty": None, "particles": {"n": 64}, "batch_size": 64,
    "steps": 40, "log_every": 10, "seeds": [0, 1],
    "optim": {"critic": {"name": "adam"}, "generator": {"name": "adam"}},
}
IMAGES = {
    "target": {"name": "mnist"},
    "generator": {"name": "dcgan", "latent_dim": 8, "width": 4}, "critic": {"name": "dcgan", "width": 4},
    "objective": "ns", "penalty": None, "particles": {"n": 16}, "batch_size": 16,
    "steps": 4, "log_every": 2, "seeds": [0], "metrics": {"images": {"enabled": False}},
}


def gandy_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gandy.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One of each kind of run directory, made by the real commands."""
    from gandy import run
    from gandy.runs.sweep import run_sweep
    from gandy.studies.damping.model import run_damping

    root = tmp_path_factory.mktemp("stores")
    run_sweep(C.load_config(SWEEP), root / "sweep")
    run(C.load_config(LAB), out=root / "lab", progress=False, figures=False)
    run(C.load_config(IMAGES), out=root / "images", progress=False, figures=False)
    dcfg = C.load_config(yaml.safe_load((Path(__file__).parents[1] / "src/gandy/studies/damping/config.yaml").read_text()), ["steps=300"])
    run_damping(dcfg, [0.03, 0.3, 3.0], root / "damping", figures=False)
    return root


def decode_blob(b64: str, s: int, k: int, f: int, p: int, dims: int):
    """The page's decoding of :func:`member_blob`, in Python (the layout is the contract)."""
    raw = base64.b64decode(b64)
    nf = s * (k + 1) + f + 4
    floats = np.frombuffer(raw[:4 * nf], "<f4")
    codes = np.frombuffer(raw[4 * nf:], np.uint8).reshape(f, p, dims)
    return floats[:s], floats[s:s * (k + 1)].reshape(k, s), floats[s * (k + 1):s * (k + 1) + f], floats[-4:], codes


# ----------------------------------------------------------------------------- the data
def test_member_blob_round_trips_series_exactly_and_particles_to_half_a_quantum():
    rng = np.random.default_rng(1)
    steps, series = np.arange(0, 50, 10), rng.normal(size=(3, 5))
    series[1, 2] = np.nan
    parts = rng.normal(size=(4, 6, 2)) * [1.0, 10.0]
    parts[2, 3, 0] = np.nan
    st, se, fs, box, codes = decode_blob(member_blob(steps, series, np.arange(4), parts), 5, 3, 4, 6, 2)
    assert np.array_equal(st, steps.astype(np.float32))
    np.testing.assert_array_equal(se, series.astype(np.float32))  # NaN stays NaN, in place
    assert np.array_equal(fs, np.arange(4))
    finite = np.isfinite(parts).all(-1)
    assert codes[2, 3, 0] == 255 and codes[2, 3, 1] == 255 and (codes[finite] < 255).all()
    for j in range(2):
        lo, hi = box[2 * j], box[2 * j + 1]
        assert lo == pytest.approx(np.nanmin(parts[..., j][finite]), rel=1e-6)
        back = lo + codes[..., j] / 254 * (hi - lo)
        assert np.abs(back - parts[..., j])[finite].max() <= (hi - lo) / 254 / 2 * 1.001


def test_budget_keeps_small_runs_whole_and_fits_large_sweeps():
    assert budget_shape(3, 7, 60, 40, 64, 2) == {"s": 60, "f": 40, "p": 64}
    for members in (4096, 16384):
        b = budget_shape(members, 12, 1000, 200, 256, 2)
        assert members * 13 * 4 * b["s"] <= BUDGET["series"] or b["s"] == 16
        assert members * b["f"] * b["p"] * 2 <= BUDGET["particles"] or (b["f"], b["p"]) == (8, 8)
        assert b["s"] >= 16 and b["f"] >= 8 and b["p"] >= 8


def test_image_budget_thins_snapshots_then_images():
    from gandy.views.report import BUDGET, image_budget

    assert image_budget(2, 10, 16, 784) == (10, 16)  # a run keeps every snapshot and image
    f, n = image_budget(4096, 1, 16, 784)
    assert f == 1 and 4096 * n * 784 <= BUDGET["images"] and n >= 1
    f, n = image_budget(50, 24, 16, 784)
    assert 50 * f * n * 784 <= BUDGET["images"] and n == 16 and f >= 2


def test_principal_plane_finds_the_two_widest_directions():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    x = rng.normal(size=(4000, 5)) * [5.0, 3.0, 0.3, 0.2, 0.1] @ q.T
    basis = principal_plane(x)
    assert basis.shape == (5, 2)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(basis.T @ q[:, :2]), np.eye(2), atol=0.02)


def test_sweep_stores_snapshots_equal_to_the_single_run_of_the_same_member(stores, tmp_path):
    from gandy import run

    z = np.load(next((stores / "sweep" / "chunks").glob("*.snapshots.npz")))
    res = pd.read_parquet(stores / "sweep" / "results.parquet")
    j = 3
    m = int(z["members"][j])
    row = res[res.member == m].iloc[0]
    single = C.load_config({**copy.deepcopy(SWEEP), "sweep": None, "seeds": [int(row.seed)]},
                           [f"kernel.g2={row['kernel.g2']}", f"optim.critic.lr={row['optim.critic.lr']}"])
    r = run(single, progress=False)
    assert list(z["steps"]) == list(r.trajectory["steps"])
    np.testing.assert_array_equal(z["particles"][j], r.trajectory["particles"][0].astype(np.float16))
    assert z["target_samples"].shape == (400, 1) and z["density"].ndim == 1


def test_payload_table_is_the_results_table(stores):
    data = payload(stores / "sweep")
    res = pd.read_parquet(stores / "sweep" / "results.parquet").sort_values("member")
    assert data["kind"] == "sweep" and [a["key"] for a in data["axes"]] == ["kernel.g2", "optim.critic.lr"]
    np.testing.assert_allclose(data["table"]["coverage_kl"], res.coverage_kl, rtol=1e-6)
    assert data["table"]["phase"] == res.phase.tolist()
    assert "coverage_kl" in data["metrics_menu"] and "member" not in data["metrics_menu"]
    assert {r[0] for r in data["protocols"]} >= {"coverage_kl", "w1", "phase"}
    k, s = len(data["series_names"]), data["detail"]["s"][0]
    steps, series, *_ = decode_blob(data["detail"]["blob"][0], s, k, data["detail"]["f"][0], data["detail"]["p"][0], 1)
    met = pd.read_parquet(stores / "sweep" / "metrics.parquet")
    first = met[met.member == res.member.iloc[0]].sort_values("step")
    np.testing.assert_array_equal(steps, first.step.to_numpy(np.float32))
    np.testing.assert_array_equal(series[data["series_names"].index("mean_dist")], first.mean_dist.to_numpy(np.float32))


def test_detect_names_each_kind_and_refuses_what_is_not_a_run(stores, tmp_path):
    assert [detect(stores / k) for k in ("sweep", "lab", "damping")] == ["sweep", "run", "damping"]
    assert detect(stores) == "collection"
    with pytest.raises(ConfigError, match="holds no gandy run"):
        detect(tmp_path)
    (tmp_path / "half" / "chunks").mkdir(parents=True)
    (tmp_path / "half" / "config.yaml").write_text("steps: 3\n")
    with pytest.raises(ConfigError, match="unfinished sweep.*--resume"):
        detect(tmp_path / "half")


@pytest.mark.parametrize("damage", ["results", "summary", "npz", "column"])
def test_a_damaged_store_gives_one_error_naming_the_file_and_writes_no_report(stores, tmp_path, damage):
    d = tmp_path / "run"
    shutil.copytree(stores / "lab", d)
    if damage == "results":
        (d / "results.parquet").write_bytes(b"not parquet")
    elif damage == "summary":
        (d / "summary.json").write_text("{broken")
    elif damage == "npz":
        (d / "trajectory.npz").write_bytes(b"PK\x03\x04garbage")
    else:
        pd.read_parquet(d / "metrics.parquet").drop(columns="step").to_parquet(d / "metrics.parquet")
    r = gandy_cli("report", d)
    assert r.returncode == 2
    name = {"results": "results.parquet", "summary": "summary.json", "npz": "trajectory.npz", "column": "metrics.parquet"}[damage]
    assert r.stderr.startswith("error: ") and name in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (d / "report.html").exists()


def test_a_sweep_made_before_snapshots_still_reports_and_says_so(stores, tmp_path):
    d = tmp_path / "old"
    shutil.copytree(stores / "sweep", d)
    for p in (d / "chunks").glob("*.snapshots.npz"):
        p.unlink()
    data = payload(d)
    assert set(data["detail"]["p"]) == {0} and any("no particle snapshots" in n for n in data["notes"])


def test_a_4096_member_sweep_report_stays_under_20_MB_and_says_it_is_downsampled(tmp_path):
    d = synthetic_sweep(tmp_path / "big", side=64, logged=200, frames=40, particles=64)
    out = write_report(d)
    size = out.stat().st_size
    assert size < 20e6, size
    data = json.loads(out.read_text().split('type="application/json">')[1].split("</script>")[0])
    assert len(data["table"]["member"]) == 4096
    assert any("series downsampled" in n for n in data["notes"]) and any("snapshots downsampled" in n for n in data["notes"])


def test_run_with_report_flag_and_collection_index(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**SWEEP, "steps": 20}))
    r = gandy_cli("run", cfg, "--out", tmp_path / "s", "--report", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "report.html").exists() and "report.html: sweep" in r.stdout
    r = gandy_cli("report", tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "overview.png").write_bytes((tmp_path / "s" / "figures" / "phase_coverage_kl.png").read_bytes())
    r = gandy_cli("report", tmp_path)
    index = (tmp_path / "report.html").read_text()
    assert '"href":"./s/report.html"' in index and '"name":"overview.png"' in index  # the directory's own figure too


def test_render_escapes_script_ends_in_the_data():
    page = render({"kind": "collection", "children": [], "config": "x </script><b>y</b>", "title": "t", "path": "/p"})
    assert page.count("</script>") == 2  # the data block's and the code's, none from the data


HOSTILE = ["javascript:alert(4)", "<!--<script>", "</script><script>alert(1)</script>", "\"><img src=x onerror=alert(2)>",
           "'><svg onload=alert(3)>", "\u2028\u2029", "&lt;b&gt;", "{{7*7}}", "${alert(5)}", "x#frag?q=1&r=<2>", "100% sure",
           "<!--", "]]>", "\\u003c", " JaVaScRiPt:alert(6)", "data:text/html,<script>alert(7)</script>"]
"""Strings that break a page that writes them unescaped into HTML, an attribute, a URL or a script."""


def embedded(page: str):
    """The JSON text of the page's data block."""
    return page.split('type="application/json">', 1)[1].split("</script>", 1)[0]


def test_embedded_json_escapes_every_markup_character_and_parses_back_to_the_same_strings():
    data = {"kind": "collection", "children": [], "config": "\n".join(HOSTILE), "title": HOSTILE[1], "path": "/p",
            "notes": HOSTILE, "summary": {h: h for h in HOSTILE}}
    page = render(data)
    blob = embedded(page)
    assert json.loads(blob) == data
    assert not set(blob) & set("<>&\u2028\u2029"), "a markup character left literal in the data block"
    assert page.count("<script") == 2 and page.count("</script>") == 2 and page.count("<!--") == 0


def test_child_links_are_relative_quoted_paths_whatever_the_folder_names(tmp_path):
    from urllib.parse import unquote, urljoin, urlsplit

    from gandy.views.report import collection_payload

    kids = [tmp_path / h for h in HOSTILE if "/" not in h] + [tmp_path / "{{7*7}}" / "javascript:alert(4)"]
    hrefs = [c["href"] for c in collection_payload(tmp_path, [(k, "run") for k in kids])["children"]]
    assert hrefs[0] == "./javascript%3Aalert%284%29/report.html"
    base = (tmp_path / "report.html").as_uri()
    for k, h in zip(kids, hrefs):
        assert h.startswith("./") and not set(h) & set("<>\"'&#?: \u2028\u2029"), h
        url = urlsplit(urljoin(base, h))
        assert url.scheme == "file" and not url.query and not url.fragment
        assert unquote(url.path) == (k / "report.html").as_posix()


# ----------------------------------------------------------------------------- the page, in Chromium
CHROMIUM = os.environ.get("GANDY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set GANDY_CHROMIUM)"
    if missing:
        if os.environ.get("GANDY_REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A report opened in Chromium, with every console error and page error collected."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("window.gandy && window.gandy.ready", timeout=20000)

    def js(self, expr):
        return self.page.evaluate(expr)

    def pixels(self, selector):
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.page.locator(selector).screenshot())).convert("RGB")).astype(int)

    def shot(self, name):
        """A full-page screenshot, also kept in $GANDY_SCREENSHOTS when set (to look at)."""
        png = self.page.screenshot(full_page=True)
        if os.environ.get("GANDY_SCREENSHOTS"):
            Path(os.environ["GANDY_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            (Path(os.environ["GANDY_SCREENSHOTS"]) / f"{name}.png").write_bytes(png)
        return png


def orange(px) -> int:
    """Pixels of the particles' colour (rgba(230, 81, 0, 0.6 to 0.85) over white); the legend's
    swatch alone is under 40."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return int(((r > 200) & (g > 50) & (g < 170) & (b < 120) & (r - b > 100)).sum())


def cell_means(stores, metric):
    res = pd.read_parquet(stores / "sweep" / "results.parquet")
    res = res[res.phase != "diverged"]  # the page leaves blown-up members out of a cell's mean
    return res.groupby(["kernel.g2", "optim.critic.lr"])[metric].mean().unstack()  # rows: g2 (x), columns: lr (y)


def test_sweep_page_menu_switches_the_metric_and_a_cell_click_shows_its_member(stores, browser):
    write_report(stores / "sweep")
    pg = Page(browser, stores / "sweep" / "report.html")
    assert pg.page.get_attribute("#phase", "data-metric") == "coverage_kl"
    assert "click a cell" in pg.page.inner_text("#member-title")
    before = pg.pixels("#phase")
    pg.page.select_option("#metric", "mean_dist")
    assert pg.page.get_attribute("#phase", "data-metric") == "mean_dist"
    assert np.abs(pg.pixels("#phase") - before).sum() > 0
    pg.page.select_option("#metric", "phase")
    assert pg.page.get_attribute("#phase", "data-metric") == "phase"

    res = pd.read_parquet(stores / "sweep" / "results.parquet")
    g2s, lrs = sorted(res["kernel.g2"].unique()), sorted(res["optim.critic.lr"].unique())
    ix, iy = 2, 1
    c = pg.js(f"window.gandy.cellCenter({ix}, {iy})")
    box = pg.page.locator("#phase").bounding_box()
    pg.page.mouse.click(box["x"] + c["x"], box["y"] + c["y"])
    want = res[(res["kernel.g2"] == g2s[ix]) & (res["optim.critic.lr"] == lrs[iy])].sort_values("member")
    title = pg.page.inner_text("#member-title")
    assert f"member {want.member.iloc[0]}" in title and "kernel.g2 = 0.9" in title and "optim.critic.lr = 0.03" in title
    assert f"phase {want.phase.iloc[0]}" in title
    assert pg.page.locator("#cell-members button").count() == len(want) == 2
    n_series = len(pg.js("window.gandy.data.series_names"))
    assert pg.page.locator("#member-series canvas").count() == n_series >= 7
    assert orange(pg.pixels("#particles")) > 150  # the member's particles are drawn
    label = pg.page.inner_text("#frame-label")
    pg.page.click("#play")
    pg.page.wait_for_function(f"document.getElementById('frame-label').textContent !== {json.dumps(label)}", timeout=5000)
    pg.page.click("#play")
    pg.page.click("#cell-members button >> nth=1")
    assert f"member {want.member.iloc[1]}" in pg.page.inner_text("#member-title")
    assert pg.errors == []


def test_sweep_page_screenshot_matches_the_expected_layout_and_colours(stores, browser):
    write_report(stores / "sweep")
    pg = Page(browser, stores / "sweep" / "report.html")
    pg.shot("sweep")
    boxes = {s: pg.page.locator(s).bounding_box() for s in ("header", "#phase-section", "#phase", "#cell-info", "#member",
                                                            "#protocols-section", "#config-section")}
    assert boxes["header"]["y"] == 0 and boxes["header"]["y"] + boxes["header"]["height"] <= boxes["#phase-section"]["y"]
    assert boxes["#phase"]["x"] + boxes["#phase"]["width"] <= boxes["#cell-info"]["x"]  # cell list right of the diagram
    assert boxes["#phase-section"]["y"] + boxes["#phase-section"]["height"] <= boxes["#member"]["y"]
    assert boxes["#member"]["y"] < boxes["#protocols-section"]["y"] < boxes["#config-section"]["y"]
    assert boxes["#phase"]["width"] == 600 and boxes["#phase"]["height"] == 440
    # the heat map: the cell of the largest seed mean is viridis' top colour, the smallest its bottom
    means = cell_means(stores, "coverage_kl")
    px = pg.pixels("#phase")
    for pick, rgb in ((np.nanargmax, (253, 231, 37)), (np.nanargmin, (68, 1, 84))):
        i, j = np.unravel_index(pick(means.to_numpy()), means.shape)
        c = pg.js(f"window.gandy.cellCenter({i}, {j})")
        assert np.abs(px[int(c["y"]), int(c["x"])] - rgb).max() <= 3, (pick.__name__, px[int(c["y"]), int(c["x"])])
    pg.page.select_option("#metric", "phase")
    px = pg.pixels("#phase")
    res = pd.read_parquet(stores / "sweep" / "results.parquet").sort_values("member")
    colours = {p: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for p, c in PHASE_COLORS.items()}
    first = res.groupby(["kernel.g2", "optim.critic.lr"]).phase.agg(lambda s: s.value_counts().index[0] if s.nunique() == 1 else None)
    for (g2, lr), ph in first.dropna().items():
        i, j = sorted(res["kernel.g2"].unique()).index(g2), sorted(res["optim.critic.lr"].unique()).index(lr)
        c = pg.js(f"window.gandy.cellCenter({i}, {j})")
        assert np.abs(px[int(c["y"]), int(c["x"])] - colours[ph]).max() <= 3, (g2, lr, ph)
    assert pg.errors == []


def test_lab_run_page_shows_divergence_traces_and_sample_snapshots(stores, browser):
    write_report(stores / "lab")
    pg = Page(browser, stores / "lab" / "report.html")
    pg.shot("lab")
    assert pg.page.inner_text("#traces h2").startswith("Divergence traces")
    assert pg.page.locator("#traces canvas").count() == len(pg.js("window.gandy.data.series_names"))
    assert {"js", "kl_pq", "kl_qp", "mmd", "w1"} <= set(pg.js("window.gandy.data.series_names"))
    assert "seed 0" in pg.page.inner_text("#member-title")
    assert orange(pg.pixels("#particles")) > 150
    pg.page.click("#members-table tbody tr >> nth=1")
    assert "seed 1" in pg.page.inner_text("#member-title")
    last = pg.pixels("#member-series canvas >> nth=0")
    pg.page.fill("#frame", "0")
    pg.page.dispatch_event("#frame", "input")
    assert pg.page.inner_text("#frame-label").startswith("step 0 ")
    moved = np.abs(pg.pixels("#member-series canvas >> nth=0") - last).sum(-1) > 0
    assert 0 < moved.sum() < 0.05 * moved.size  # the step marker moved; the plot itself stayed
    assert pg.errors == []


def test_image_run_page_draws_sample_grids(stores, browser):
    write_report(stores / "images")
    pg = Page(browser, stores / "images" / "report.html")
    px = pg.pixels("#image-grid")
    assert px.shape[0] > 50 and px[20:].std() > 5  # images, not a blank canvas
    assert not pg.page.locator("#particles").is_visible()
    assert pg.errors == []


def test_image_sweep_page_draws_each_members_final_samples(tmp_path, browser):
    from gandy.runs.sweep import run_sweep

    run_sweep(C.load_config({**IMAGES, "steps": 2, "sweep": {"optim.critic.lr": [1e-4, 1e-3]}}), tmp_path / "s")
    data = payload(tmp_path / "s")
    assert data["images"]["shape"] == [1, 28, 28] and len(data["images"]["blob"]) == 2
    res = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert base64.b64decode(data["images"]["blob"][1]) == np.asarray(res.samples_uint8.iloc[1], np.uint8).tobytes()
    write_report(tmp_path / "s")
    pg = Page(browser, tmp_path / "s" / "report.html")
    c = pg.js("window.gandy.cellCenter(1, 0)")
    box = pg.page.locator("#phase").bounding_box()
    pg.page.mouse.click(box["x"] + c["x"], box["y"] + c["y"])
    assert "optim.critic.lr = 0.001" in pg.page.inner_text("#member-title")
    assert pg.pixels("#image-grid")[20:].std() > 5
    assert pg.errors == []


def test_damping_page_draws_curves_rates_and_eigenvalues(stores, browser):
    write_report(stores / "damping")
    pg = Page(browser, stores / "damping" / "report.html")
    pg.shot("damping")
    for sel in ("#convergence", "#rates", "#eigenvalues", "#spectral-radius"):
        assert pg.pixels(sel).std() > 10, sel
    assert pg.page.locator("#damping-table tbody tr").count() == 3
    assert pg.page.locator("#protocols tbody tr").count() == len(pd.read_parquet(stores / "damping" / "damping.parquet").columns) - 1
    assert pg.errors == []


def test_large_sweep_page_loads_and_answers_a_click(tmp_path, browser):
    d = synthetic_sweep(tmp_path / "big", side=64, logged=100, frames=20, particles=32)
    write_report(d)
    pg = Page(browser, d / "report.html")
    c = pg.js("window.gandy.cellCenter(63, 0)")
    box = pg.page.locator("#phase").bounding_box()
    pg.page.mouse.click(box["x"] + c["x"], box["y"] + c["y"])
    assert "member 4032 " in pg.page.inner_text("#member-title") + " "
    assert pg.errors == []


def test_script_ends_in_the_data_stay_text_in_the_page(tmp_path, browser):
    p = tmp_path / "x.html"
    p.write_text(render({"kind": "collection", "children": [], "config": "a </script><b id='injected'>b</b>", "title": "t",
                         "path": "/p", "created": "now", "protocols": []}))
    pg = Page(browser, p)
    assert pg.page.inner_text("#config") == "a </script><b id='injected'>b</b>"
    assert pg.page.locator("#injected").count() == 0
    assert pg.errors == []


def test_the_page_links_only_relative_path_hrefs_and_shows_any_other_as_text(tmp_path, browser):
    kids = [{"href": h, "name": f"n{i}", "kind": "run"} for i, h in enumerate(
        ["javascript:alert(1)", " javascript:alert(2)", "https://example.org/x", "//example.org/x", "/etc/passwd", "../up",
         "./fine/report.html"])]
    p = tmp_path / "x.html"
    p.write_text(render({"kind": "collection", "children": kids, "config": "", "title": "t", "path": "/p", "created": "now",
                         "protocols": []}))
    pg = Page(browser, p)
    assert pg.page.eval_on_selector_all("#children a", "as => as.map((a) => a.getAttribute('href'))") == ["./fine/report.html"]
    assert pg.page.eval_on_selector_all("#children li > span", "s => s.map((e) => e.textContent)") == [f"n{i}" for i in range(6)]
    assert pg.errors == []


def test_blown_up_members_are_labelled_not_averaged_into_the_phase_diagram(tmp_path, browser):
    from gandy.runs.sweep import run_sweep

    cfg = {**SWEEP, "steps": 20, "sweep": {"kernel.g2": [0.01, 0.9], "optim.generator.lr": [0.1, 1.0e6]}}
    res, _, _ = run_sweep(C.load_config(cfg), tmp_path / "s")
    blown = res[res["optim.generator.lr"] == 1.0e6]
    assert (blown.phase == "diverged").all() and np.isfinite(blown.coverage_kl).all()  # last values before the blow-up
    write_report(tmp_path / "s")
    pg = Page(browser, tmp_path / "s" / "report.html")
    assert f"{len(blown)} of {len(res)} members diverged" in pg.page.inner_text("#phase-note")
    px = pg.pixels("#phase")
    for ix in range(2):
        c = pg.js(f"window.gandy.cellCenter({ix}, 1)")
        y, x = int(c["y"]) + 30, int(c["x"])  # off the grey cell's diagonal cross
        assert np.abs(px[y, x] - (187, 187, 187)).max() <= 3, px[y, x]  # grey: no mean of blown-up values
        c = pg.js(f"window.gandy.cellCenter({ix}, 0)")
        assert np.abs(px[int(c["y"]) + 30, int(c["x"])] - (187, 187, 187)).max() > 30  # healthy cells are coloured
    assert pg.errors == []


def test_particles_in_more_than_two_dimensions_are_drawn_on_the_targets_principal_plane(tmp_path, browser):
    from gandy import run

    cfg = C.load_config({"target": {"name": "ring8", "embed_dim": 5}, "particles": {"n": 32}, "critic": {"name": "mlp", "widths": [16]},
                         "steps": 20, "log_every": 10, "seeds": [0]})
    r = run(cfg, out=tmp_path / "r", progress=False, figures=False)
    data = payload(tmp_path / "r")
    t = data["targets"][0]
    assert t["projected"] and np.asarray(t["samples"]).shape[1] == 2 and np.asarray(t["modes"]).shape == (8, 2)
    assert any("principal plane" in n for n in data["notes"])
    # the ring lies in a 2-D plane of R^5: its projected modes keep their pairwise distances
    modes = r.trajectory["modes"].astype(float)
    d5 = np.linalg.norm(modes[:, None] - modes[None], axis=-1)
    d2 = np.linalg.norm(np.asarray(t["modes"])[:, None] - np.asarray(t["modes"])[None], axis=-1)
    np.testing.assert_allclose(d2, d5, atol=0.05)
    write_report(tmp_path / "r")
    pg = Page(browser, tmp_path / "r" / "report.html")
    assert orange(pg.pixels("#particles")) > 150
    assert pg.errors == []


def test_an_experiments_own_tables_and_figures_get_a_page(tmp_path, browser):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = tmp_path / "exp"
    (d / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(d / "figures" / "line.png")
    plt.close(fig)
    pd.DataFrame({"width": [16, 64, 256], "error": [0.5, 0.25, np.nan], "per_net": [[1.0], [2.0], [3.0]]}).to_parquet(d / "t.parquet")
    assert detect(d) == "files"
    data = payload(d)
    assert data["tables"][0]["columns"] == ["width", "error"] and data["tables"][0]["data"]["error"][2] is None
    assert any("array columns left out (per_net)" in n for n in data["notes"])
    write_report(d)
    pg = Page(browser, d / "report.html")
    assert pg.js("document.querySelector('#figures img').naturalWidth") == 300
    assert pg.page.locator("section.table tbody tr").count() == 3
    assert not pg.page.locator("#config-section").is_visible()
    assert pg.errors == []


def test_hostile_folder_names_and_config_strings_stay_text_in_chromium(tmp_path, browser):
    """A collection whose run folders, configs, summaries, figures and tables are named and filled
    from :data:`HOSTILE`: in Chromium no dialog opens, no page is blank, every string shows as
    itself, every child link is a relative file link that opens that child's report."""
    from urllib.parse import unquote, urlsplit

    from PIL import Image

    from gandy import run
    from gandy.runs.store import read_config_text

    one = tmp_path / "one"
    run(C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
                       "steps": 10, "log_every": 5, "seeds": [0]}), out=one, progress=False, figures=False)
    root = tmp_path / "hostile"
    names = [h for h in HOSTILE if "/" not in h]
    kids = [root / h for h in names] + [root / "&amp;<i>" / "?#" / "javascript:alert(4)"]  # and two levels down
    for k in kids:
        shutil.copytree(one, k)
        cfg = yaml.safe_load((k / "config.yaml").read_text())
        cfg["phase"] = {**cfg.get("phase", {}), "note": HOSTILE}  # shown in the protocols table, as JSON
        text = yaml.safe_dump({**cfg, "note": HOSTILE}, allow_unicode=True)
        (k / "config.yaml").write_text(text + "".join(f"# {h}\n" for h in HOSTILE if "\u2028" not in h))
        summary = json.loads((k / "summary.json").read_text())
        (k / "summary.json").write_text(json.dumps({**summary, "note": HOSTILE, **{h: h for h in HOSTILE}}, ensure_ascii=False))
    Image.new("RGB", (8, 8), (200, 30, 30)).save(root / f"{HOSTILE[3]}.png")
    pd.DataFrame({HOSTILE[2]: HOSTILE, HOSTILE[1]: range(len(HOSTILE))}).to_parquet(root / f"{HOSTILE[4]}.parquet")
    write_report(root)

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def opened(path: Path, name: str):  # the page (loaded: its code has run) shows its title as text, nothing injected
        got = page.evaluate("""() => ({ready: !!(window.gandy && window.gandy.ready), title: document.getElementById('title').textContent,
            subtitle: document.getElementById('subtitle').textContent, scripts: document.querySelectorAll('script').length,
            injected: document.querySelectorAll('svg, iframe, object, embed, [onerror], [onload]').length})""")
        assert got["ready"], f"{path}: the page's code did not run (a blank page): {got}, {errors}"
        assert got["title"] == f"gandy report: {name}", got
        assert got["scripts"] == 2 and got["injected"] == 0 and got["subtitle"].count(str(path.resolve())) == 1, got

    page.goto((root / "report.html").as_uri())
    opened(root, "hostile")
    assert sorted(page.evaluate("window.gandy.data.children.map((c) => c.name)")) == sorted(str(k.relative_to(root)) for k in kids)
    links = page.eval_on_selector_all("#children a", "as => as.map((a) => [a.getAttribute('href'), a.href, a.textContent])")
    assert len(links) == len(kids)
    for href, absolute, text in links:
        assert href.startswith("./"), href
        url = urlsplit(absolute)
        assert url.scheme == "file" and unquote(url.path) == (root / text / "report.html").as_posix()
    assert page.evaluate("[...document.querySelectorAll('img')].map((i) => [i.alt, i.title])") == [[f"{HOSTILE[3]}.png"] * 2]
    assert page.inner_text("section.table h2") == f"{HOSTILE[4]}.parquet ({len(HOSTILE)} rows)"
    assert page.eval_on_selector_all("section.table th", "t => t.map((e) => e.textContent)") == [HOSTILE[2], HOSTILE[1]]
    assert page.eval_on_selector_all("section.table tbody tr td:first-child", "t => t.map((e) => e.textContent)") == HOSTILE

    for i, (href, absolute, text) in enumerate(links):
        if ":" in text:  # a scheme-like name: followed by a click in the page (a name of blanks makes an invisible link)
            page.goto((root / "report.html").as_uri())
            opened(root, "hostile")
            with page.expect_navigation(timeout=5000):
                page.evaluate("(i) => document.querySelectorAll('#children a')[i].click()", i)
        else:  # the others where their links lead (one page load each, not two)
            page.goto(absolute)
        kid = root / text
        opened(kid, kid.name)
        assert page.evaluate("document.getElementById('config').textContent") == read_config_text(kid)
        assert json.loads(page.evaluate("document.getElementById('summary').textContent"))["note"] == HOSTILE
        assert page.locator("#traces canvas").count() > 0 and page.locator("#protocols tbody tr").count() > 0
        assert json.dumps(HOSTILE) in page.inner_text("#protocols")  # the phase rule's settings, as text
    assert dialogs == [] and errors == []
    page.close()


def test_the_phase_diagram_draws_the_dashed_half_collapse_boundary(tmp_path, browser):
    """Planted phases (g2 = 0.9 collapsed, smaller g2 converged): the page draws one dashed edge per
    row between the columns where half the seeds fail."""
    from gandy.runs.sweep import run_sweep

    cfg = {**SWEEP, "steps": 10}
    run_sweep(C.load_config(cfg), tmp_path / "s")
    path = tmp_path / "s" / "results.parquet"
    res = pd.read_parquet(path)
    res["phase"] = np.where(res["kernel.g2"] == 0.9, "collapsed", "converged")
    res.to_parquet(path)
    write_report(tmp_path / "s")
    pg = Page(browser, tmp_path / "s" / "report.html")
    assert pg.js("window.gandy.state.x") == "kernel.g2"  # x: g2 (3 columns), y: the critic's lr (2 rows)
    assert pg.js("window.gandy.state.boundary") == 2  # one edge per lr row, between g2 0.3 and 0.9
    c1, c2 = pg.js("window.gandy.cellCenter(1, 0)"), pg.js("window.gandy.cellCenter(2, 0)")
    x = int(round((c1["x"] + c2["x"]) / 2))  # the edge between the columns
    col = pg.pixels("#phase")[int(c1["y"]) + 30 - 40:int(c1["y"]) + 30 + 40, x - 1:x + 2].min(1)
    dark = (col.max(-1) < 60).sum()
    assert 10 < dark < 70  # a dashed line: dark dashes with gaps
    assert pg.errors == []


def test_a_collection_with_a_sweep_opens_on_its_phase_diagram(tmp_path, browser):
    """The demo's top page: a folder holding runs and a sweep shows the sweep's page (its clickable
    diagram) first, in a frame, above the list of everything in it."""
    from gandy import run
    from gandy.runs.sweep import run_sweep

    run(C.load_config({**SWEEP, "steps": 10, "sweep": None}), out=tmp_path / "a_run", progress=False, figures=False)
    run_sweep(C.load_config({**SWEEP, "steps": 10}), tmp_path / "phase")
    write_report(tmp_path)
    pg = Page(browser, tmp_path / "report.html")
    assert pg.page.locator("#diagram iframe").count() == 1
    assert pg.page.locator("#diagram").evaluate("n => n.compareDocumentPosition(document.querySelector('#children'))") & 4
    frame = next(f for f in pg.page.frames if f.url.endswith("phase/report.html"))
    frame.wait_for_function("window.gandy && window.gandy.ready", timeout=20000)
    assert frame.evaluate("window.gandy.data.kind") == "sweep" and frame.locator("#phase").count() == 1
    assert pg.errors == []
