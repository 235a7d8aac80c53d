#!/bin/bash
# Issue 14's GPU checks in one run: nvJPEG vs CPU tile decoding (bench_decode_gpu.py), DLA34-up
# at 512 px with stain jitter on the device and on the host, the E-step over JPEG slides vs
# model-only throughput with the direct reader and with OpenSlide (bench_gpu.py), and the
# reader's scaling with loader processes on the machine's cores (bench_read.py).
# Carry .gpu/wheels (benchmarks/README.md, with cachetools), .gpu/codecs (the imagecodecs
# wheel: JPEG tiles) and .gpu/svs (CMU-1-Small-Region.svs). Each result file lands in $OUT as
# it is written. DRY=1: a CPU rehearsal on two small slides.
set -u -o pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
OUT=${OUT:-/tmp/feed_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/benchmarks HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
stamp() { echo "t=$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/log.txt"; }
if [ "${DRY:-0}" = 1 ]; then
  N=2 SIZE=2048 BENCH="BENCH_ITERS=1 BENCH_BATCH=2 BENCH_WORKERS=0,2 BENCH_READERS=auto,openslide BENCH_TILES=256" RW=0,2
else
  python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl .gpu/codecs/*.whl 2>&1 \
    | grep -v -i warn | tail -2
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/log.txt"
  N=16 SIZE=12288 BENCH="BENCH_WORKERS=8,15 BENCH_READERS=auto,openslide" RW=0,1,2,4,8
fi
python3 -c "import mixsup.train.api, openslide, zarr, timm, tifffile, imagecodecs, cachetools
print('imports ok: tifffile', tifffile.__version__, 'imagecodecs', imagecodecs.__version__)" \
  2>&1 | tee -a "$OUT/log.txt" || exit 3
D=/tmp/feed_data
rm -rf $D ${D}_parts
python3 benchmarks/gpu/gen_shapes.py $N $SIZE $D 0.5 jpeg 2>&1 | tee -a "$OUT/log.txt" || exit 4
stamp "data ready"
env $BENCH python3 benchmarks/bench_decode_gpu.py .gpu/svs/*.svs $D/slides/slide_000.tiff 2>&1 \
  | grep -v -i warning | tee "$OUT/decode.txt"
stamp "decode done"
env $BENCH python3 benchmarks/bench_gpu.py $D 2>&1 | grep -v -i warning | tee "$OUT/gpu.txt"
stamp "bench_gpu done"
python3 benchmarks/bench_read.py --slide $D/slides/slide_001.tiff --workers $RW 2>&1 \
  | grep -v -i warning | tee "$OUT/read.txt"
stamp "bench_read done"
