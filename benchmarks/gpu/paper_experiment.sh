#!/bin/bash
# Issue 12's GPU check: the `paper` preset (DLA34-up, 512 px at 0.5 um/px) on the 120-slide PCam
# mosaic of the CPU experiment (`mixsup synth --kind pcam --n-slides 120 --size 2048`, here with
# zlib tiles), mixed, pixel and image, seed 0, the three modes side by side on one GPU.
# Training budgets are cut to fit the device tool's 15 minutes (see OVR below). Results land
# in $OUT as they exist: results.tgz (each run's metrics, predictions, selection, rounds table).
# Needs .gpu/wheels (benchmarks/README.md, without imagecodecs) and .gpu/pcam.tar
# (`tar -cf .gpu/pcam.tar -C ../shared/data pcam`). DRY=1: a CPU dry run on 12 small slides.
set -u
cd "$(dirname "$0")/../.."
T0=$(date +%s)
OUT=${OUT:-/tmp/paper_out}
mkdir -p "$OUT"
W=/tmp/paper_work
rm -rf $W && mkdir -p $W
export PYTHONPATH=$PWD/src${PYTHONPATH_EXTRA:+:$PYTHONPATH_EXTRA} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
if [ "${DRY:-0}" != 1 ]; then
  python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl 2>&1 | grep -v -i warn | tail -2
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 
fi
python3 -c "import mixsup.train.api, mixsup.predict.engine, openslide, zarr, timm; print('imports ok', timm.__version__)" || exit 3
tar -xf .gpu/pcam.tar -C $W || exit 3
if [ "${DRY:-0}" = 1 ]; then N=12 SIZE=1024; else N=120 SIZE=2048; fi
python3 benchmarks/gpu/gen_pcam_zlib.py $W/pcd $W/pcam $SIZE $N > $OUT/synth.log 2>&1 || exit 4
# Tile once, so that the three runs do not tile the same folder at the same time.
python3 -m mixsup -q tile $W/pcd --preset paper > $W/tile.log 2>&1 || exit 5
echo "t=$(( $(date +%s) - T0 )) s: data ready, $(tail -1 $W/tile.log)"

OVR="--set runtime.num_workers=4 --set stage1.infer_batch_size=64
 --set stage1.rounds=2 --set stage1.epochs_init=10 --set stage1.epochs_per_round=3
 --set stage1.steps_per_epoch=50 --set stage2.init=theta1 --set stage2.epochs=4
 --set mil.epochs=10 --set mil.steps_per_epoch=25"
# BUDGET=short: two modes in about 5 minutes (the three-mode budget above did not finish in 7
# minutes on an H100: stage-1 training read 35 patches/s per run with three runs side by side).
if [ "${BUDGET:-}" = short ]; then
  OVR="$OVR --set runtime.num_workers=7 --set stage1.rounds=1 --set stage1.epochs_init=6
 --set stage2.epochs=2"
  export OMP_NUM_THREADS=1
fi
if [ "${DRY:-0}" = 1 ]; then
  OVR="$OVR --set runtime.num_workers=0 --set stage1.rounds=1 --set stage1.epochs_init=1
 --set stage1.epochs_per_round=1 --set stage1.steps_per_epoch=1 --set stage1.batch_size=2
 --set stage1.infer_batch_size=4 --set stage2.epochs=1 --set stage2.steps_per_epoch=1
 --set stage2.top_k=2 --set mil.epochs=1 --set mil.steps_per_epoch=1 --set mil.batch_size=2"
fi
echo "$OVR" > $OUT/overrides.txt
MODES=${MODES:-mixed pixel image}
for m in $MODES; do
  timeout "${LIMIT:-420}" python3 -m mixsup -q experiment $W/pcd --out $W/E_$m --modes $m \
    --seeds 0 --per-center --preset paper $OVR > $OUT/$m.log 2>&1 &
done
pack() {
  (cd $W && tar -czf $OUT/results.tgz --exclude='*.pt' --exclude='*.zarr' --exclude='*.png' \
    --exclude='tiles' --exclude='maps' E_* 2>/dev/null)
}
while [ -n "$(jobs -r)" ]; do
  sleep 15
  python3 -m mixsup rounds $W/E_mixed/runs/mixed_seed0/train --data $W/pcd \
    > $OUT/rounds_mixed.txt 2>/dev/null
  pack
  echo "t=$(( $(date +%s) - T0 )) s: $(for m in $MODES; do
    echo -n "$m[$(ls -d $W/E_$m/runs/*/train/round_* 2>/dev/null | wc -l) rounds"
    [ -f $W/E_$m/results.md ] && echo -n ", done"; echo -n "] "; done)"
done
pack
for m in $MODES; do echo "== $m"; cat $W/E_$m/results.md 2>/dev/null || tail -3 $OUT/$m.log; done
cat $OUT/rounds_mixed.txt
echo "total $(( $(date +%s) - T0 )) s"
