"""What gandy's safe writes cost: ``write_atomic`` inside a gandy output (walk up to the marker,
read its manifest, refuse a foreign file, append the entry once) against the same write outside
any output and against a hand-written temporary-file-and-rename, for files of a chunk's sizes.

    python benchmarks/write_overhead.py      # prints microseconds per write and the ratios

Interleaved repeats in one process; the median of each is reported. No torch involved.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from gandy.core.atomic import write_atomic
from gandy.runs.outputs import open_output


def hand_written(path: Path, data: bytes) -> None:
    """What a user would write: a temporary file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def timed(fn, path: Path, data: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn(path, data)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="gandy-write-bench-"))
    out = root / "out"
    open_output(out, "sweep")
    (out / "chunks").mkdir()
    for i in range(200):  # a manifest of a 200-chunk sweep's files
        write_atomic(out / "chunks" / f"{i:07d}.results.parquet", b"x")
    plain = root / "plain"
    plain.mkdir()
    for size in (1_000, 1_000_000):
        data = os.urandom(size)
        rows = {"hand-written rename": [], "write_atomic outside an output": [], "write_atomic inside (manifest)": []}
        for _ in range(7):
            rows["hand-written rename"].append(timed(hand_written, plain / "a.bin", data, 50))
            rows["write_atomic outside an output"].append(timed(write_atomic, plain / "b.bin", data, 50))
            rows["write_atomic inside (manifest)"].append(timed(write_atomic, out / "chunks" / "c.bin", data, 50))
        base = statistics.median(rows["hand-written rename"])
        print(f"file of {size:,} bytes, manifest of {len(open(out / '.gandy').read().splitlines()) - 1} entries:")
        for name, vals in rows.items():
            med = statistics.median(vals)
            print(f"  {name:34s} {med:9.1f} us   x{med / base:.2f}")


if __name__ == "__main__":
    main()
