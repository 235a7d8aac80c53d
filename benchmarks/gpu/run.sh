#!/bin/bash
# One prepared GPU check for the device tool (no network there): install the wheels the image
# lacks from .gpu/wheels (fetch them here first, see benchmarks/README.md), generate data,
# benchmark, and run a short paper-preset training.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1
python3 -m pip install -q --no-deps --no-index --force-reinstall .gpu/wheels/*.whl 2>&1 | tail -2
python3 -c "import mixsup.train.api, mixsup.predict.engine, openslide, zarr, timm; print('imports ok', openslide.__library_version__, zarr.__version__, timm.__version__)" || exit 3
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/gpu/gen_shapes.py 8 8192 /tmp/gpudata 0.5
python3 benchmarks/bench_gpu.py /tmp/gpudata 2>&1 | grep -v Warning
start=$(date +%s)
python3 -m mixsup -q train /tmp/gpudata --out /tmp/gpurun --preset paper \
  --set runtime.num_workers=8 --set stage1.epochs_init=2 --set stage1.rounds=1 \
  --set stage1.epochs_per_round=1 --set stage1.steps_per_epoch=30 --set stage2.epochs=1 \
  --set stage2.steps_per_epoch=5 2>&1 | grep -v -i warning | tail -8
echo "short paper-preset training (init 2x30 steps, 1 round, stage 2): $(( $(date +%s) - start )) s"
python3 - <<'PY'
import json
for r in (0, 1):
    s = json.load(open(f"/tmp/gpurun/round_{r}/summary.json"))
    print(f"round {r}: train {s['seconds_train']} s, E-step {s['seconds_infer']} s, "
          f"{s['infer_patches_per_s']} patches/s, losses {[round(x, 4) for x in s['losses']]}")
PY
