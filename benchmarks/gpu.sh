#!/usr/bin/env bash
# Every GPU number gandy records, in one run of at most ~8 minutes (issue 15):
#   bash benchmarks/gpu.sh            # writes $OUT (default: gpu-out/) and prints everything
# 1. the 784-D step per engine (benchmarks/mnist_step.py), 2. the 256-member 1-D sweep benchmark
# (benchmarks/sweep_batched.py, compiled), 3. the full mnist-collapse grid with gandy's earlier
# set-up (one critic step, per-point penalty, [512] critic; 676 members x 1,000 steps, goal <= 1 min),
# 4. the grid with the authors' conventions, mnist-collapse's default (20 critic steps per particle
# step; goal <= 15 min; cut off by its timeout, whose partial store says how far it got: resume it
# with `gandy run mnist-collapse device=cuda -o DIR --resume`), 5. the MNIST calibration search
# (issue 28; from the repository root, its table at ../shared/reference; cut off by its timeout,
# resumable with --resume) and 6. the robustness study at full size (issue 29; likewise cut off:
# its store says how many trials finished in the limit). Copy the lines into
# benchmarks/RESULTS.md with the GPU's name and the date.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    | tee "$OUT/device.txt" || exit 1
python -c "import gandy" 2>/dev/null || pip install -q -e . --no-deps || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/device.txt"
export GANDY_THREADS=4
run() {  # name, timeout (s), command...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$OUT/gpu.txt"
    local t0=$(date +%s.%N)
    timeout "$limit" "$@" 2>&1 | tail -n 25 | tee "$OUT/$name.txt" | tee -a "$OUT/gpu.txt"
    echo "== $name: exit ${PIPESTATUS[0]}, $(python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s wall" | tee -a "$OUT/gpu.txt"
}
run mnist_step 60 python benchmarks/mnist_step.py --device cuda --members 64 --steps 20 --threads 4
run sweep_batched 90 python benchmarks/sweep_batched.py --device cuda --steps 500 --seq-members 1 --engine compiled
BEFORE=$(python -c "from gandy.studies.mnist_ablation.experiment import OLD; print(' '.join(repr(o) for o in OLD))")
eval run mnist_grid 150 gandy run mnist-collapse device=cuda "$BEFORE" -o "$OUT/mnist-grid" --quiet --force
run mnist_grid_authors 150 gandy run mnist-collapse device=cuda -o "$OUT/mnist-grid-20" --quiet --force
run mnist_calibrate 90 gandy run mnist-calibrate device=cuda -o "$OUT/mnist-calibrate" --quiet --force
run robustness 90 gandy run robustness device=cuda -o "$OUT/robustness" --quiet --force
python - "$OUT" <<'PY'
import json, sys, pathlib
for name in ("mnist-grid", "mnist-grid-20"):
    s = pathlib.Path(sys.argv[1]) / name / "sweep" / "summary.json"
    if s.is_file():
        d = json.loads(s.read_text())
        print(name, "wall", round(d["wall_seconds_this_invocation"], 1), "s;", d["phase_counts"])
    else:
        done = list((pathlib.Path(sys.argv[1]) / name / "sweep" / "chunks").glob("*.results.parquet"))
        print(name, "not finished within its limit;", len(done), "chunks done")
PY
