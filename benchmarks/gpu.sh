#!/usr/bin/env bash
# Every GPU number gandy records, in one run of at most 9 minutes (a lent GPU's session has 15
# minutes of device time, the machine's start included, so this is sized to run once):
#
#   bash benchmarks/gpu.sh           # prints everything; $OUT (default gpu-out/) gets gpu.txt and results.tgz
#
# The default runs three studies side by side, each launch-bound on its own (benchmarks/RESULTS.md:
# a lone 784-D member uses the H200 at ~1 % of its rate), each under its own time limit (a study cut
# off by its limit still reports what it did: its finished chunks and live rows come back):
#   boundary    the MNIST-100 diagram's boundary at mnist-collapse's default over ten critic-lr rows
#               (1e-5 to 2.6e-3, the three calibration rows among them), g2/g1 on the paper's 25
#               log-spaced positions 0.01-0.977, 2 seeds a point, K-section with 7 positions a round
#               (3 rounds of 1,000 steps; issue 28, item 3);
#   calibrate   every point of the calibration table (65), 2 seeds, 1,000 steps: the default
#               (generator lr 5e-5 since 2026-12-05: 108 of 130 runs within on the CPU) beside
#               the authors' literal 1e-4 and 2.5e-5 (docs/bridge.md; issue 28's aim);
#   robustness  the CPU-sized robustness study (gandy run robustness: 4 games x 12 draws x 2 seeds x
#               3,000 steps on Color MNIST), its games side by side and each game's chunks in 3
#               processes (benchmarks/robustness_parallel.py; issue 29, item 2).
# STEPS="..." runs only the steps it names; the others (one after another, after those three):
# calibrate_search (the search around the
# default at 1,000 steps), mnist_grid (the 676-point grid), robustness_full (the paper's full size),
# mnist_step, sweep_batched, image_step, lab_step (the step benchmarks of 2026-12-04, RESULTS.md).
# SCALE=1.4 stretches every limit; DRY=1 DEV=cpu shrinks every study to a few steps (a dry run of
# this script on a CPU).
#
# The device machine is bare and reaches no registry: gandy's dependencies that its image lacks
# (pydantic, POT, mlxtend) travel as wheels in .gpu-in/wheels (ignored by git; fetched here by
# `bash benchmarks/gpu.sh --fetch`), with the calibration table (.gpu-in/durr_mnist_calibration.csv)
# where ../shared is not beside the checkout. Copy the numbers into benchmarks/RESULTS.md with the
# GPU's name and the date.
set -u
cd "$(dirname "$0")/.."
IN=.gpu-in
if [ "${1:-}" = "--fetch" ]; then  # on a machine that reaches PyPI: the wheels the device machine lacks
    mkdir -p "$IN/wheels"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$IN/wheels" pydantic==2.13.4 pydantic_core==2.46.4 \
        annotated-types==0.7.0 typing-inspection==0.4.2 typing_extensions==4.15.0 POT==0.9.7.post1 mlxtend==0.25.0
    cp ../shared/reference/durr_mnist_calibration.csv "$IN/" 2>/dev/null
    exit 0
fi
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/gandy-gpu}
DEV=${DEV:-cuda}  # DEV=cpu SCALE=0.1 bash benchmarks/gpu.sh: a dry run of this script on a CPU, every limit x 0.1
SCALE=${SCALE:-1}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu.txt"
export PYTHONUNBUFFERED=1 GANDY_THREADS=2  # three studies side by side on 16 cores
if ! python3 -c "import pydantic, ot, mlxtend" 2>/dev/null && [ -d "$IN/wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$IN"/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
TABLE=../shared/reference/durr_mnist_calibration.csv
[ -f "$TABLE" ] || TABLE=$IN/durr_mnist_calibration.csv
mkdir -p "$WORK/bin"  # gandy's console script, for `timeout` (which runs programs, not shell functions)
printf '#!/bin/sh\nexec python3 -c %s "$@"\n' "'import sys; from gandy.cli import main; sys.argv[0] = \"gandy\"; sys.exit(main())'" \
    > "$WORK/bin/gandy" && chmod +x "$WORK/bin/gandy"
command -v gandy >/dev/null || export PATH="$WORK/bin:$PATH"
{
    date -u +"%Y-%m-%d %H:%M UTC"
    python3 -c "import torch, gandy; print('torch', torch.__version__, '| gandy', gandy.__version__, '|',
                torch.cuda.get_device_name(0) if '$DEV' == 'cuda' else 'no GPU: a dry run')" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
    echo "$(nproc) CPU cores"
} 2>&1 | tee "$LOG"
run() {  # name, limit (s), command...: output in $WORK/name.txt and the tail in the log
    local name=$1 limit; limit=$(python3 -c "print(max(5, round($2 * $SCALE)))"); shift 2
    [ -z "$STEPS" ] || [[ " $STEPS " == *" $name "* ]] || return 0
    echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout -k 15 -s TERM "$limit" "$@" > "$WORK/$name.txt" 2>&1
    local rc=$?
    { echo "== $name: last lines"; tail -n 40 "$WORK/$name.txt"; echo "== $name: exit $rc, $((SECONDS - t0)) s wall"; } \
        | tee -a "$LOG"
}
STEPS=${STEPS:-boundary calibrate robustness}
DRY=${DRY:-}
EVERY=1
ROWS="[1.0e-05, 1.33352e-05, 1.95734e-05, 0.0001, 0.000177828, 0.000316228, 0.000464159, 0.000825404, 0.0014678, 0.00261016]"
MNIST=(engine=closed_form)   # the closed form: no compilation per chunk shape
ROB=()
if [ -n "$DRY" ]; then
    MNIST+=(steps=4 log_every=2 optim.critic.startup_steps=2 optim.critic.steps=2)
    ROB=(steps=4 log_every=2 search.trials=2 generator.width=8 critic.width=8 metrics.images.n_fake=128
         metrics.images.n_real=128 metrics.images.w_critic_steps=2)
    ROWS="[1.0e-05, 0.00261016]"
    EVERY=8
fi
# the three studies, side by side
run boundary 520 gandy boundary mnist-collapse "${MNIST[@]}" "sweep.kernel.g2={logspace: [0.01, 0.977], num: 25}" \
    "sweep.optim.critic.lr=$ROWS" --x kernel.g2 --y optim.critic.lr --seeds 2 --per-round 7 -q -o "$WORK/mnist-boundary" &
run calibrate 520 gandy run mnist-calibrate "calibration.table=$TABLE" steps=1000 log_every=100 "seeds=[0,1]" \
    "calibration.every=$EVERY" "calibration.choices={generator_lr: [optim.generator.lr=1.0e-4, optim.generator.lr=2.5e-5]}" \
    "${MNIST[@]}" -q -o "$WORK/mnist-calibrate" &
GANDY_THREADS=1 run robustness 520 python3 benchmarks/robustness_parallel.py "$WORK/robustness" "${ROB[@]}" --workers 3 &
wait
if [ -n "$DRY" ]; then  # the steps below, shrunk too
    MNIST=("${MNIST[@]}" "sweep.kernel.g2=[0.0, 0.977]" "sweep.optim.critic.lr=[1.0e-05]")
fi
# and any others STEPS names, one after another
run calibrate_search 290 gandy run mnist-calibrate "calibration.table=$TABLE" steps=1000 log_every=100 "seeds=[0,1]" \
    "calibration.choices={penalty_weight: [penalty.weight=1.25, penalty.weight=25, penalty.weight=40]}" "${MNIST[@]}" \
    -q -o "$WORK/mnist-calibrate-search"
run mnist_grid 540 gandy run mnist-collapse "${MNIST[@]}" "seeds=[0,1,2]" -q -o "$WORK/mnist-grid"
run robustness_full 540 gandy run robustness steps=10000 generator.width=64 critic.width=64 search.trials=24 \
    metrics.images.n_fake=10000 metrics.images.n_real=10000 metrics.images.w_critic_steps=500 -q -o "$WORK/robustness-full"
run mnist_step 45 python3 benchmarks/mnist_step.py --device "$DEV" --threads 4 --members 16 128 --steps 5 --rounds 3 \
    --engines eager closed_form --member-engines eager closed_form
run sweep_batched 25 python3 benchmarks/sweep_batched.py --device "$DEV" --steps 300 --seq-members 1
run image_step 25 python3 benchmarks/image_step.py --device "$DEV" --steps 10 --members 16 --skip-memory
run lab_step 25 python3 benchmarks/lab_step.py --device "$DEV" --threads 4 --steps 200 --repeats 2 --no-games
# how far the cut-off sweeps got: every live row and finished chunk, with its time
python3 - "$WORK" <<'PY' 2>&1 | tee -a "$LOG"
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
for live in sorted(work.rglob("*.jsonl")):
    rows = [json.loads(line) for line in live.read_text().splitlines() if line.strip()]
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    print(f"{live.relative_to(work)}: {len(rows)} rows, steps {steps[:1]}..{steps[-1:]}")
for summary in sorted(work.rglob("summary.json")):
    d = json.loads(summary.read_text())
    print(summary.relative_to(work), {k: d[k] for k in ("wall_seconds_this_invocation", "phase_counts", "best") if k in d})
PY
# everything but particles and snapshots, in one file
(cd "$WORK" && find . -type f \( -name '*.txt' -o -name '*.json' -o -name '*.jsonl' -o -name '*.png' \
    -o -name 'calibration.parquet' -o -name 'points.parquet' -o -name '*results.parquet' -o -name '*metrics.parquet' \) \
    -size -8M -print0 | tar czf - --null -T -) > "$OUT/results.tgz"
ls -la "$OUT"
