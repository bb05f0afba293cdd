#!/usr/bin/env bash
# The GPU measurements of docs/train-speed.md in one call, for a machine that has PyTorch with CUDA
# but not this package installed (the repo root on PYTHONPATH). Writes the JSON records under
# bench/results and copies them to $OUT when that is set.
#
#   RSIR_DATA_DIR=/path/to/data bash bench/device_check.sh
#
# 1. bench/train_speed.py: ours at RecBole's targets and the strong config, 3 timed epochs each;
# 2. the strong config to early stop (time to early stop, test metrics);
# 3. a K = 3 run of the beauty recipe through `rsir run`, timed end to end (bench/run_timing.py).
# DEVICE (default cuda), DATA (beauty), RECIPE (beauty) and ITERATIONS (3) change what is run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
device=${DEVICE:-cuda} data=${DATA:-beauty} recipe=${RECIPE:-beauty} iterations=${ITERATIONS:-3}
python=${PYTHON:-python3}
where=${device//:/} name=$(basename "${data%.txt}")

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$python" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')"

"$python" bench/train_speed.py --data "$data" --device "$device" --systems rsir rsir_strong --epochs 3 \
    --tag "epochs3-$where"
"$python" bench/train_speed.py --data "$data" --device "$device" --systems rsir_strong --full \
    --tag "full-$where"
"$python" bench/run_timing.py --data "$data" --recipe "$recipe" --iterations "$iterations" --device "$device" \
    --tag "k$iterations-$where"

if [ -n "${OUT:-}" ]; then
    cp bench/results/train-speed-"$name"-*"$where".json bench/results/run-timing-"$name"-*"$where".json "$OUT"/
fi
