"""How firm are the phase labels of finished runs and sweeps? For every output folder under the
given directories (a run's or a sweep's: ``config.yaml``, ``results.parquet``, ``metrics.parquet``):
how many labels change between ``phase`` (at ``steps``) and ``phase_2x`` (at twice the steps,
where the runs had ``metrics.phase_2x: true``), and how many change when one threshold of the
phase rule (docs/phases.md) is scaled by 0.5 or 1.5, the others kept
(:func:`gandy.runs.results.threshold_sensitivity`). Prints markdown tables: one per folder and,
where a directory holds several, their sum.

    python benchmarks/phase_sensitivity.py DIR [DIR ...] [--factors 0.5 1.5]

Nothing is simulated: the labels are recomputed from the stored order parameters (seconds).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import yaml

from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs.build import phase_rule, target_of
from gandy.runs.config import load_config
from gandy.runs.results import label_changes, relabel, threshold_sensitivity
from gandy.runs.store import read_config_text, read_parquet


def outputs(root: Path) -> list[Path]:
    """The run and sweep folders under ``root`` (itself included), sorted."""
    return sorted(p.parent for p in Path(root).rglob("results.parquet")
                  if (p.parent / "metrics.parquet").is_file() and (p.parent / "config.yaml").is_file())


def folder(path: Path, factors: tuple[float, ...]) -> tuple[pd.DataFrame, dict]:
    """One output folder's sensitivity table and its phase -> phase_2x changes (None without)."""
    cfg = load_config(yaml.safe_load(read_config_text(path)))
    target = target_of(cfg.target)
    n_modes = 0 if target.modes is None else int(target.modes.shape[0])
    metrics, results = read_parquet(path / "metrics.parquet"), read_parquet(path / "results.parquet")
    rule = phase_rule(cfg.phase)
    again = relabel(metrics, results, n_modes, target.scale, rule, cfg.steps)
    if not (again == results.phase).all():
        raise SystemExit(f"error: {path}: the stored labels are not the rule's ({int((again != results.phase).sum())} differ)")
    table = threshold_sensitivity(metrics, results, n_modes, target.scale, rule, factors, cfg.steps)
    return table, label_changes(results)


def boundaries(results: pd.DataFrame, x: str = "kernel.g2", y: str = "optim.critic.lr") -> str:
    """A g2/g1 x critic lr sweep's collapse boundary judged at ``steps`` and at twice the steps:
    per critic lr, the smallest g2/g1 at which at least half the seeds failed to split
    (``SPLIT_FAILED``; NaN: none did), by ``phase`` and by ``phase_2x``; "" for other tables."""
    if x not in results or y not in results or "phase_2x" not in results:
        return ""
    rows = []
    for lr, g in results.groupby(y):
        first = {}
        for col in ("phase", "phase_2x"):
            frac = g.assign(f=g[col].isin(SPLIT_FAILED)).groupby(x).f.mean()
            hit = frac.index[frac.to_numpy() >= 0.5]
            first[col] = float(hit.min()) if len(hit) else float("nan")
        same = first["phase"] == first["phase_2x"] or all(map(math.isnan, first.values()))
        rows.append(f"| {lr:.3g} | {first['phase']:.3g} | {first['phase_2x']:.3g} | {'' if same else 'moved'} |")
    return "\n".join(["| critic lr | g2/g1 boundary at steps | at 2 x steps | |", "|---|---|---|---|", *rows, ""])


def merged(cells) -> str:
    """Transition cells ("a -> b: 3; c -> d: 1") summed over folders, by count."""
    counts: dict[str, int] = {}
    for cell in cells:
        for part in filter(None, cell.split("; ")):
            k, v = part.rsplit(": ", 1)
            counts[k] = counts.get(k, 0) + int(v)
    return "; ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def markdown(table: pd.DataFrame) -> str:
    lines = ["| threshold | x | value | changed / members | across the boundary | transitions |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.threshold} | {r.factor:g} | {r.value:.4g} | {r.changed} / {r.members} | {r.split_failed_changed} "
                     f"| {r.transitions} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--factors", nargs="+", type=float, default=[0.5, 1.5])
    args = ap.parse_args()
    for root in args.dirs:
        tables, changes = [], []
        for path in outputs(root):
            table, ch = folder(path, tuple(args.factors))
            tables.append(table)
            changes.append(ch)
            print(f"\n### {path}\n")
            if ch is not None:
                print(f"phase -> phase_2x: {ch['changed']} of {ch['members']} changed, {ch['split_failed_changed']} across "
                      f"the collapse boundary; {ch['transitions']}\n")
                print(boundaries(read_parquet(path / "results.parquet")))
            print(markdown(table))
        if len(tables) > 1:
            total = pd.concat(tables).groupby(["threshold", "factor"], sort=False).agg(
                value=("value", "first"), members=("members", "sum"), changed=("changed", "sum"),
                split_failed_changed=("split_failed_changed", "sum"), transitions=("transitions", merged)).reset_index()
            print(f"\n### {root}: all {len(tables)} folders (value: the first folder's)\n")
            have = [c for c in changes if c is not None]
            if have:
                moved: dict[str, int] = {}
                for c in have:
                    for k, v in c["transitions"].items():
                        moved[k] = moved.get(k, 0) + v
                print(f"phase -> phase_2x: {sum(c['changed'] for c in have)} of {sum(c['members'] for c in have)} "
                      f"changed, {sum(c['split_failed_changed'] for c in have)} across the collapse boundary; "
                      f"{dict(sorted(moved.items(), key=lambda kv: -kv[1]))}\n")
            print(markdown(total))


if __name__ == "__main__":
    main()
