"""How big and how fast a report is for a 4,096-member sweep (issue 8: open in < 3 s, < 20 MB).

    python benchmarks/report_load.py [--real] [--repeats 3]

Stores measured:
* ``synthetic``: a finished 64 x 64 sweep store with the worst shapes the budget meets (200 logged
  steps of 12 series, 40 snapshots of 64 particles in 2-D per member; tests/datafiles.py);
* ``real`` (with --real, ~2 min on 2 cores): a real 64 x 64 sweep (kernel.g2 x critic lr, 1-D
  two-mode target, 32 particles, 40 steps).

For each: the time ``gandy report`` takes to write the page, its size, and against the obvious
alternative (every logged row and snapshot embedded as JSON numbers, no downsampling) the size
ratio. Then in headless Chromium: load time (navigation start to the page drawn, the page's own
``performance.now()``, median of --repeats fresh pages), the time from a click on a cell to the
member's plots and particles drawn, and from choosing another metric in the menu to the phase
diagram redrawn.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def real_sweep(out: Path) -> Path:
    from gandy.runs import config as C
    from gandy.runs.sweep import run_sweep

    cfg = C.load_config({"target": {"name": "two_modes_1d"}, "particles": {"n": 32}, "critic": {"name": "mlp", "widths": [16]},
                         "steps": 40, "log_every": 4, "seeds": [0],
                         "sweep": {"kernel.g2": {"logspace": [0.001, 0.9], "num": 64},
                                   "optim.critic.lr": {"logspace": [0.0001, 0.1], "num": 64}}})
    run_sweep(cfg, out)
    return out


def naive_json_bytes(d: Path) -> int:
    """Size of the no-downsampling alternative: the full metrics table and every snapshot as JSON."""
    met = pd.read_parquet(d / "metrics.parquet")
    met = met[[c for c in met.columns if c != "mode_hist"]]
    n = len(json.dumps(met.to_dict(orient="list")))
    for f in sorted((d / "chunks").glob("*.snapshots.npz")):
        with np.load(f) as z:
            n += len(json.dumps(np.round(z["particles"].astype(float), 4).tolist()))
    return n


def measure(name: str, d: Path, browser, repeats: int) -> dict:
    from gandy.views.report import write_report

    t0 = time.perf_counter()
    out = write_report(d)
    write_s = time.perf_counter() - t0
    size = out.stat().st_size
    naive = naive_json_bytes(d)
    loads, clicks, switches = [], [], []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.resolve().as_uri())
        page.wait_for_function("window.gandy && window.gandy.ready", timeout=60000)
        loads.append(page.evaluate("window.gandy.readyMs") / 1000)
        c = page.evaluate("window.gandy.cellCenter(40, 20)")
        box = page.locator("#phase").bounding_box()
        t = time.perf_counter()
        page.mouse.click(box["x"] + c["x"], box["y"] + c["y"])
        page.wait_for_function("window.gandy.shown !== null")
        page.evaluate("new Promise(r => requestAnimationFrame(() => r()))")
        clicks.append(time.perf_counter() - t)
        t = time.perf_counter()
        page.select_option("#metric", "w1")
        page.evaluate("new Promise(r => requestAnimationFrame(() => r()))")
        switches.append(time.perf_counter() - t)
        assert not errors, errors
        page.close()
    return {"store": name, "members": 4096, "write_s": write_s, "size_mb": size / 1e6, "naive_mb": naive / 1e6,
            "size_ratio": naive / size, "load_s": statistics.median(loads), "load_max_s": max(loads),
            "click_s": statistics.median(clicks), "switch_s": statistics.median(switches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="also a real 64 x 64 sweep (~2 min on 2 cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from datafiles import synthetic_sweep

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        rows.append(measure("synthetic (200 logs x 12 series, 40 x 64 particles, 2-D)",
                            synthetic_sweep(Path(tmp) / "syn", side=64, logged=200, frames=40, particles=64), browser, a.repeats))
        if a.real:
            t = time.perf_counter()
            d = real_sweep(Path(tmp) / "real")
            print(f"real sweep simulated in {time.perf_counter() - t:.0f} s")
            rows.append(measure("real (64 x 64 sweep, 11 logs, 11 x 32 particles, 1-D)", d, browser, a.repeats))
        browser.close()
    print(f"# {platform.machine()}, {platform.processor() or ''} python {platform.python_version()}; Chromium headless")
    print("| store | write (s) | report (MB) | no-downsampling JSON (MB) | ratio | load (s, median; max) | click to member (s) "
          "| switch metric (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['store']} | {r['write_s']:.1f} | {r['size_mb']:.1f} | {r['naive_mb']:.1f} | {r['size_ratio']:.1f}x | "
              f"{r['load_s']:.2f}; {r['load_max_s']:.2f} | {r['click_s']:.3f} | {r['switch_s']:.3f} |")


if __name__ == "__main__":
    main()
