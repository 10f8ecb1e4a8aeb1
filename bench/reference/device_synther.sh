#!/bin/bash
# Issue 14's GPU run: SynthER's generator at the authors' default size (`algos/synther.py`:
# width 2048, 6 blocks, 100k steps, 128 EDM steps) on the three data-scarcity subsets of
# `bench/sweeps/synther-authors.toml`, 100k generated transitions each, written as the derived
# datasets that sweep trains on. The three generators train at once, one process each, on the
# one GPU (a batch of 256 leaves it mostly idle: `results/speed/gpu-synther.md`).
#
# Before the call, here: build the subsets (the quick tier's jaxrl/pendulum/medium-expert-v0,
# which `python -m bench sweep synther-authors` or `make bench` builds, then `python -m bench
# data subset jaxrl/pendulum/medium-expert-v0 --fraction F` for 0.01, 0.05, 0.2), copy
# $MINARI_DATASETS_PATH/jaxrl/pendulum/medium-expert-{1,5,20}pct-v0 and its
# namespace_metadata.json under .gpu-data/minari/jaxrl/pendulum/, and carry .gpu-data and .whl
# (the wheels of bench/reference/device_mujoco.sh). What comes back: $OUT/<derived id with '/'
# as '__'>.tar.gz for each subset (untar with `tar xzf F -C $MINARI_DATASETS_PATH`), the logs
# and $OUT/hardware.txt. WHEELS=none skips the install (a machine with the pinned stack);
# EXTRA adds `--set` arguments (e.g. tiny sizes to try the script on a CPU).
set -u
OUT=${OUT:-/tmp/device-out}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ "${WHEELS:-.whl}" != none ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${WHEELS:-.whl}"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
# Three processes share the GPU: none may take 75% of its memory up front.
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-$PWD/.gpu-data/minari}
{ nvidia-smi -L 2>/dev/null; lscpu | grep -E "Model name|^CPU\(s\)"
  git log -1 --format=%H 2>/dev/null
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print(jax.devices(), 'jax', \
      jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, \
      'orbax', o.__version__)"; } > "$OUT/hardware.txt" 2>&1
shares=${SHARES:-1pct 5pct 20pct}
pids=()
for s in $shares; do
    /usr/bin/time -f "$s wall %e s" timeout "${TIMEOUT:-420}" $PY -m bench augment \
        "jaxrl/pendulum/medium-expert-$s-v0" --set size=100000 ${EXTRA:-} \
        > "$OUT/augment-$s.log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
for s in $shares; do
    grep -v -E "Failed to import.*warp" "$OUT/augment-$s.log" | tail -n 20
    # the id this run wrote or found, from its log (not a glob: the folder may hold others)
    id=$(sed -n -E -e 's/^wrote ([^:]*):.*/\1/p' \
        -e 's/^([^ ]+) exists \(made from the same data\).*/\1/p' "$OUT/augment-$s.log")
    if [ -z "$id" ] || [ ! -d "$MINARI_DATASETS_PATH/$id" ]; then
        echo "no derived dataset for $s"; rc=1; continue
    fi
    tar czf "$OUT/${id//\//__}.tar.gz" -C "$MINARI_DATASETS_PATH" "$id" || rc=1
done
cat "$OUT/hardware.txt"; ls -la "$OUT"
exit $rc
