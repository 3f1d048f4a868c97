#!/usr/bin/env bash
# The GPU measurements of one short device call (issue 23): grokjax's training call beside the
# batched PyTorch peer on the same shapes, in one process session, everything under $OUT.
#
#   OUT=/tmp/gpu bash benchmarks/gpu.sh          # on the GPU machine (python3 holds jax and torch)
#   SMALL=1 OUT=/tmp/gpu bash benchmarks/gpu.sh  # a dry run on CPU with tiny grids
#
# Results: device.txt, steps.txt (each step's exit status and seconds), log.txt, summary.md and
# bench.csv. The peer (../shared/bench/torch_batched.py) travels in benchmarks/peer/
# (git-ignored): copy it there before the call, and carry that folder. Each step has its own time cap, so a slow one costs only its share and
# the rest still runs; the caps sum to 510 s (a 10-minute call with the machine's start).
set -u
OUT=${OUT:?set OUT to the folder the results go to}
PY=${PYTHON:-python3}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
R=1024; R_PAPER=105; PEER_STEPS=300
if [ "${SMALL:-0}" = 1 ]; then R=8; R_PAPER=2; PEER_STEPS=3; fi

step() {  # step NAME SECONDS COMMAND...: run with a cap, log to $OUT/log.txt, note its status
  local name=$1 cap=$2; shift 2
  local start=$SECONDS
  echo "== $name" >>"$OUT/log.txt"
  timeout "$cap" "$@" >>"$OUT/log.txt" 2>&1
  echo "$name rc=$? $((SECONDS - start))s" | tee -a "$OUT/steps.txt"
}

{ nvidia-smi -L; $PY -c "import jax, sys; print(sys.version); print(jax.__version__, jax.devices())"; } \
  >"$OUT/device.txt" 2>&1
# Z_23 K=256 and Z_71 K=512 at eval every 100, R=1024, fp32 (highest): against the peer.
step highest 150 $PY benchmarks/bench.py --buckets 0 1 --runs $R --eval-every 100 \
  --precision highest --repeats 3 --out "$OUT/highest"
step peer_eager 60 bash -c "$PY benchmarks/peer/torch_batched.py 23 256 0.1 $R 100 $PEER_STEPS; \
  $PY benchmarks/peer/torch_batched.py 71 512 0.6 $R 100 $PEER_STEPS"
# Z_71 K=2048 R=105 eval every 10 (the wd sweep at paper scale): the peak fraction and compile s.
step paper_highest 120 $PY benchmarks/bench.py --buckets 4 --runs $R_PAPER --eval-every 10 \
  --precision highest --repeats 3 --out "$OUT/paper_highest"
step paper_tf32 90 $PY benchmarks/bench.py --buckets 4 --runs $R_PAPER --eval-every 10 \
  --precision tf32 --repeats 3 --out "$OUT/paper_tf32"
step peer_compile 90 bash -c "$PY benchmarks/peer/torch_batched.py 23 256 0.1 $R 100 $PEER_STEPS compile; \
  $PY benchmarks/peer/torch_batched.py 71 512 0.6 $R 100 $PEER_STEPS compile"
# At most 8 files come back from the machine: the tables into two, the folders removed.
tail -n +1 "$OUT"/*/bench.md >"$OUT/summary.md" 2>/dev/null
cat "$OUT"/*/bench.csv >"$OUT/bench.csv" 2>/dev/null
rm -rf "$OUT"/*/
