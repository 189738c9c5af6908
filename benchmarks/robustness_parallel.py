"""The robustness study (``gandy run robustness``) with its games run side by side, one process each.

The study runs its games one after another; each game's sweep is one batched chunk that, on a GPU,
is launch-bound (benchmarks/RESULTS.md), so the games' processes share the device almost for free.
This script writes exactly what ``gandy run robustness -o OUT [KEY=VALUE ...]`` writes: the study
folder, ``OUT/<game>/`` per game (the same sweep configs, so the same members under the same
numbers), then the study's tables and figures from the finished chunks::

    python benchmarks/robustness_parallel.py OUT [KEY=VALUE ...] [--workers N] [--resume]

A game's draws differ in keys that one batch cannot mix (beta1, the critic steps), so its sweep is
some ten chunks; ``--workers N`` runs each game's chunks in N processes (the ``processes``
executor), so 4 N processes share the device.

A game cut off by a time limit keeps its checkpoints; ``--resume`` here, or
``gandy run robustness -o OUT --resume [KEY=VALUE ...]`` on any machine, finishes it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from pathlib import Path


def _game(game: str, out: str, overrides: list, resume: bool, workers: int) -> None:
    import torch

    from gandy.runs.sweep import run_sweep
    from gandy.studies.robustness.experiment import game_config

    torch.set_num_threads(int(os.environ.get("GANDY_THREADS", "1")))
    run_sweep(game_config(game, False, overrides), Path(out) / game, resume=resume, checkpoint_seconds=60.0,
              executor="processes" if workers > 1 else "local", workers=workers,
              echo=lambda s: print(f"[{game}] {s}", flush=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="each game's chunks in this many processes (default 1)")
    a = ap.parse_args()
    from gandy.studies.base import StudyOptions, open_study
    from gandy.studies.robustness.experiment import EXPERIMENT, game_config, spec

    games = spec()["games"]
    for g in games:
        game_config(g, False, a.overrides)  # every game's config validated before anything is written
    open_study(a.out, StudyOptions(resume=a.resume))
    ctx = mp.get_context("spawn")  # no CUDA state is forked
    procs = {g: ctx.Process(target=_game, args=(g, str(a.out), a.overrides, a.resume or (a.out / g).exists(), a.workers))
             for g in games}
    for p in procs.values():
        p.start()
    for p in procs.values():
        p.join()
    failed = [g for g, p in procs.items() if p.exitcode != 0]
    if failed:
        print(f"games that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    # every chunk is finished: the study's own run reads them and writes its tables and figures
    EXPERIMENT.run(a.out, StudyOptions(resume=True, overrides=tuple(a.overrides), progress=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
