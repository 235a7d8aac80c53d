#!/usr/bin/env bash
# Train each mode on the embedded shapes dataset (tiny preset), predict its test split and
# evaluate; collects predictions.csv, topk.csv and metrics.json under OUT/snapshot/<mode>/.
# Two snapshots, from two versions of mixsup, compared with `diff -r`, show whether a change
# kept the predictions. Usage: scripts/snapshot_predictions.sh OUT [MIXSUP_COMMAND]
set -euo pipefail
out=$1
mixsup=${2:-mixsup}
export HF_HUB_OFFLINE=1
[ -f "$out/data/slides.csv" ] || $mixsup -q synth "$out/data"
for mode in mixed pixel image; do
  $mixsup -q train "$out/data" --out "$out/run-$mode" --mode "$mode" --preset tiny \
    $( [ -f "$out/run-$mode/config.yaml" ] && echo --resume ) > /dev/null
  $mixsup -q predict "$out/run-$mode" --data "$out/data" --split test --out "$out/pred-$mode" \
    > /dev/null
  $mixsup -q evaluate "$out/pred-$mode/predictions.csv" --labels "$out/data/slides.csv" \
    --out "$out/report-$mode" > /dev/null
  mkdir -p "$out/snapshot/$mode"
  cp "$out/pred-$mode/predictions.csv" "$out/pred-$mode/topk.csv" \
    "$out/report-$mode/metrics.json" "$out/snapshot/$mode/"
done
echo "snapshot: $out/snapshot"
