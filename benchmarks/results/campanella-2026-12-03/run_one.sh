#!/bin/bash
# usage: run_one.sh NAME [--set ...]  -> train, predict test, evaluate
set -e
name=$1; shift
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=${SRC:-/work/campanella/src}
PY=/work/campanella/.venv/bin/python
R=/work/campanella-runs/$name
start=$(date +%s)
$PY -m mixsup -q train /work/exp/pcm --mode image --preset small --out $R "$@"
t1=$(date +%s)
$PY -m mixsup -q predict $R --data /work/exp/pcm --split test --out $R/pred-test
$PY -m mixsup -q evaluate $R/pred-test/predictions.csv --labels /work/exp/pcm/slides.csv --out $R/eval-test
t2=$(date +%s)
echo "train_s=$((t1-start)) predict_eval_s=$((t2-t1))"
