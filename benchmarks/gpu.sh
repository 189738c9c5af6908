#!/usr/bin/env bash
# Every GPU number gandy records, in one run of at most 9 minutes (a lent GPU's session has 15 minutes
# of device time, the machine's start included, so this is sized to run once):
#
#   bash benchmarks/gpu.sh           # prints everything; $OUT (default gpu-out/) gets gpu.txt and results.tgz
#
# Steps, each under its own time limit (a step cut off by its limit still reports what it did: the
# sweeps' live rows and finished chunks say how far they got, so a step time can be read off them);
# the first three are the studies a CPU cannot afford, the rest re-measure the 2026-12-04 numbers
# (benchmarks/RESULTS.md, "The first GPU numbers"):
#   1. calibrate      the MNIST calibration at the authors' 1,000 steps, 2 seeds: the default (the
#                     initial cloud N(0, 0.5^2 I), penalty 12.5), the authors' literal penalty 1.25 and
#                     the weights 25 and 40 around the fit (docs/bridge.md; issue 28);
#   2. mnist_grid     the full 676-point mnist-collapse grid, now one chunk on a GPU (issue 28);
#   3. robustness     the full-size robustness study (24 draws x 2 seeds x 10,000 steps, width 64;
#                     issue 29): its live rows give the trial time;
#   4. mnist_step     the 784-D particle step per engine against the hand-written loop, with the
#                     GPU's fp32/bf16 GEMM rates (benchmarks/mnist_step.py; issue 27);
#   5. sweep_batched  the 256-member 1-D sweep against a lone member (benchmarks/sweep_batched.py);
#   6. image_step     the DCGAN step, B members batched against one at a time (benchmarks/image_step.py);
#   7. lab_step       the 2-D lab's tracking overhead (benchmarks/lab_step.py).
# STEPS="calibrate mnist_grid" runs only those; SCALE=1.4 stretches every limit (a second call in a
# lease that has the time).
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
export PYTHONUNBUFFERED=1 GANDY_THREADS=4
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
STEPS=${STEPS:-}  # STEPS="calibrate lab_step": only these steps
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
    tail -n 40 "$WORK/$name.txt" | tee -a "$LOG"
    echo "== $name: exit $rc, $((SECONDS - t0)) s wall" | tee -a "$LOG"
}
# the closed form: no compilation per chunk shape (the compiled engine's CUDA warm-up is not measured here)
run calibrate 290 gandy run mnist-calibrate device="$DEV" engine=closed_form "calibration.table=$TABLE" \
    steps=1000 log_every=100 "seeds=[0,1]" \
    "calibration.choices={penalty_weight: [penalty.weight=1.25, penalty.weight=25, penalty.weight=40]}" \
    -o "$WORK/mnist-calibrate"
run mnist_grid 80 gandy run mnist-collapse device="$DEV" engine=closed_form -o "$WORK/mnist-grid"
run robustness 50 gandy run robustness device="$DEV" steps=10000 generator.width=64 critic.width=64 search.trials=24 \
    metrics.images.n_fake=10000 metrics.images.n_real=10000 metrics.images.w_critic_steps=500 -o "$WORK/robustness"
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
