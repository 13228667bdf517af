#!/usr/bin/env bash
# Every GPU figure that benchmarks/README.md leaves unmeasured, in one run sized for a short GPU lease:
# the step ratio to plain PyTorch (batch 128 and 1024, M2 with enumeration), one 60k-image epoch with the
# torch.profiler split (eager and --jit), log p(x) of 10,000 images x 5,000 samples against a plain estimator,
# and a DistributedDataParallel run on NCCL. JSON and logs go to OUT (default benchmarks/results/gpu).
#
#   bash benchmarks/gpu.sh OUT
#
# With pyrovae installed (pip install -e .) it runs as it is. On a machine with torch but without Pyro (the
# device machines lent to this project's sessions), put the wheels of pyro-ppl and pyro-api in WHEELS (default
# .whl) and they are installed into /tmp/site first:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl pyro-ppl==1.9.2 pyro-api==0.1.2
# DEVICE (default cuda), POINTS (default 10000) and QUICK=1 (a few steps per timing) make a dry run on a CPU:
#   DEVICE=cpu POINTS=20 QUICK=1 bash benchmarks/gpu.sh /tmp/gpu-dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu}
device=${DEVICE:-cuda}
points=${POINTS:-10000}
wheels=${WHEELS:-.whl}
steps=() profile=()
if [ "${QUICK:-0}" = 1 ]; then steps=(--rounds 1 --steps 2 --warmup 1) profile=(--epochs 1 --profile-steps 3); fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if ! python3 -c "import pyro" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-}:$PWD
run() {  # run NAME COMMAND...: the command's output to the screen and to OUT/NAME.log, its wall time after it
    local name=$1
    shift
    local start=$SECONDS
    "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}
{
    date -u
    python3 -c "import platform, torch, pyro; print('python', platform.python_version(), 'torch', torch.__version__, \
'pyro', pyro.__version__, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
} | tee "$out/summary.txt"
run step_time python3 benchmarks/step_time.py --device "$device" "${steps[@]}" --out "$out/step_time.json"
run step_time_b1024 python3 benchmarks/step_time.py --device "$device" --batch-size 1024 --rounds 5 "${steps[@]}" \
    --out "$out/step_time_b1024.json"
run epoch_time_jit python3 benchmarks/epoch_time.py --device "$device" --jit "${profile[@]}" \
    --out "$out/epoch_time_jit.json"
run epoch_time python3 benchmarks/epoch_time.py --device "$device" "${profile[@]}" --out "$out/epoch_time.json"
run estimator_speed python3 benchmarks/estimator_speed.py --device "$device" --points "$points" --data-chunk 100 \
    --repeats 1 --out "$out/estimator_speed.json"
run ddp python3 -m torch.distributed.run --nproc_per_node=1 -m pyrovae train --distributed --device "$device" \
    --epochs 2 --quiet --out "$out/ddp"
rm -rf "$out/ddp"  # its checkpoint and pictures: the log holds the figures
