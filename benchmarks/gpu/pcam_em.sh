#!/bin/bash
# Do the EM rounds improve the pseudo-labels? Two mixed runs in parallel on one GPU (DLA34-up,
# hard negatives kept over rounds, R = 2:1:7 and 52:9:40) on a 120-slide PCam mosaic; each
# round's IoU table (`mixsup rounds`) lands in $OUT as soon as it exists.
# Needs .gpu/wheels (benchmarks/README.md) and .gpu/pcam_gpu: PCam's train patches and 500
# valid patches per class from ../shared/data/pcam (the full set is over the 64 MiB carry limit).
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
export PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl 2>&1 | grep -v -i warn | tail -2
python3 benchmarks/gpu/gen_pcam_zlib.py /tmp/pc .gpu/pcam_gpu || exit 3
S="--preset small --set model.encoder=dla34 --set stage1.keep_negatives=true --set runtime.num_workers=7 --set stage1.batch_size=40 --set stage1.infer_batch_size=512 --set stage1.epochs_init=30 --set stage1.steps_per_epoch=100 --set stage1.epochs_per_round=10 --set stage2.epochs=2 --set stage2.steps_per_epoch=5"
python3 -m mixsup -q train /tmp/pc --out /tmp/rD $S > $OUT/D.log 2>&1 &
python3 -m mixsup -q train /tmp/pc --out /tmp/rE $S --set "stage1.ratio=[52,9,40]" > $OUT/E.log 2>&1 &
while [ -n "$(jobs -r)" ]; do
  sleep 20
  for r in D E; do
    python3 -m mixsup rounds /tmp/r$r --data /tmp/pc > $OUT/rounds_$r.txt 2>/dev/null
    cp /tmp/r$r/log.jsonl $OUT/log_$r.jsonl 2>/dev/null
  done
  echo "t=$(( $(date +%s) - T0 )) s: $(for r in D E; do echo -n "$r[$(ls -d /tmp/r$r/round_* 2>/dev/null | wc -l)] "; done)"
done
for r in D E; do echo "== run $r"; cat $OUT/rounds_$r.txt; tail -2 $OUT/$r.log; done
echo "total $(( $(date +%s) - T0 )) s"
