#!/bin/bash
# Issue 13's GPU run: the cells of the `maze` sweep (bench/sweeps/maze.toml) that two CPU cores
# do not finish in a session: Diffuser on Maze2D large (horizon 384, T 256) with its two acting
# variants, MPC on large, and Decision Diffuser's fast preset on the three mazes (it replans
# every env step). `python -m bench sweep maze` skips every cell whose results file is already
# in results/runs (checked against its config and the local data's content hash), so the call
# runs only those.
#
# Before the call, here: copy $MINARI_DATASETS_PATH/jaxrl/maze2d (the quick tier's umaze and
# medium and `bench data build --env maze2d-large --quality large`; their content hashes must be
# the published files') to .gpu-maze/minari/jaxrl/maze2d, and the wheels the maze code imports
# (brax 0.14.2, gymnax 1.0.1, minari 0.5.4, gymnasium 1.3.0, farama-notifications, jaxopt,
# ml_collections, orbax-export, tensorboardx, flask, flask-cors, blinker, itsdangerous: those of
# bench/reference/device_mujoco.sh without mujoco's, which the maze code never imports) to
# .whl-maze; carry .gpu-maze and .whl-maze. What comes back: $OUT/maze-results.tar.gz (the
# results and evaluation files this call wrote, paths from the repository root: untar with
# `tar xzf F`), $OUT/sweep-{1,2}.log and $OUT/hardware.txt. A cut-off call keeps every cell it
# finished (each results file is written whole when its cell ends).
# COMMIT names the local commit the working tree is at, for hardware.txt (the results files
# record this machine's .git, which is the session's first snapshot, not the tree it ran).
# WHEELS=none skips the install (a machine with the pinned stack); SWEEP (one or more, run at
# once) and RUNS name other sweeps and another results folder (a tiny sweep to try the script
# on a CPU); TIMEOUT bounds each sweep.
# Provenance: the GPU calls behind the committed maze and maze-long cells ran this script as
# of 740c063 and 5df6396 (`results/speed/gpu-maze-h200.log`); its split handling (acting
# variants, data tier, the check), its timing and COMMIT came after and ran on a CPU only.
set -u
OUT=${OUT:-/tmp/device-out}
PY=${PY:-python3}
RUNS=${RUNS:-results/runs}
mkdir -p "$OUT" "$RUNS"
if [ "${WHEELS:-.whl-maze}" != none ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${WHEELS:-.whl-maze}"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
    unset JAX_PLATFORMS
fi
export PYTHONUNBUFFERED=1
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-$PWD/.gpu-maze/minari}
{ nvidia-smi -L 2>/dev/null; lscpu | grep -E "Model name|^CPU\(s\)"
  echo "code: ${COMMIT:-unknown (pass COMMIT=<the local commit>: this machine's .git is the session's first snapshot)}"
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print(jax.devices(), 'jax', \
      jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, \
      'orbax', o.__version__)"; } > "$OUT/hardware.txt" 2>&1
marker=$(mktemp)
sleep 1   # results files written from here on are newer than the marker
# Two processes share the GPU (compiling is most of a cell's time there, and it runs on the
# host's cores): the sweep NAME (default maze) without the methods SECOND (default Decision
# Diffuser's, comma-separated labels), and those methods alone. Each is a sweep file named
# NAME.toml in a folder of its own that includes the repository's with `skip`, so the results
# files record the command `python -m bench sweep NAME`. A cell's file name is its config's
# hash, whatever sweep file declared it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
name=${NAME:-maze}
if [ -n "${SWEEP:-}" ]; then parts="$SWEEP"; else
    mkdir -p /tmp/sweep-a /tmp/sweep-b
    $PY - "$PWD/bench/sweeps/$name.toml" "${SECOND:-Decision Diffuser (fast)}" <<'PY' || exit 1
import json, sys
from bench import sweep
path, second = sys.argv[1], sys.argv[2].split(",")
sw = sweep.load(path)
labels = list(dict.fromkeys(c.label for c in sw.cells))
if set(second) - set(labels):
    sys.exit(f"SECOND names {sorted(set(second) - set(labels))}; {sw.name} has {labels}")
# an acting variant runs in the process of the cell it evaluates
second += list(dict.fromkeys(c.label for c in sw.cells if c.is_acting
                             and c.trained_label in second and c.label not in second))
for folder, skip in (("a", second), ("b", [x for x in labels if x not in second])):
    with open(f"/tmp/sweep-{folder}/{sw.name}.toml", "w") as f:
        f.write(f"data_tier = {json.dumps(sw.data_tier)}\n"
                f"include = [{{ sweep = {json.dumps(path)}, skip = {json.dumps(skip)} }}]\n")
parts = [sweep.load(f"/tmp/sweep-{x}/{sw.name}.toml").cells for x in "ab"]
assert sorted(c.label + c.dataset for p in parts for c in p) == \
    sorted(c.label + c.dataset for c in sw.cells), "the two parts do not make the sweep"
PY
    parts="/tmp/sweep-a/$name.toml /tmp/sweep-b/$name.toml"
fi
pids=(); i=0
for part in $parts; do
    i=$((i + 1))
    (start=$SECONDS; timeout "${TIMEOUT:-480}" $PY -m bench sweep "$part" --runs "$RUNS" \
         --out "$OUT/tables-$i"; code=$?
     echo "sweep $i: exit $code, wall $((SECONDS - start)) s"; exit $code) \
        > "$OUT/sweep-$i.log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
evals=$($PY -c "import sys; from bench.evaluate import beside; print(beside(sys.argv[1]))" \
    "$RUNS") || { echo "bench does not import: no evaluations folder"; rc=1; evals=$RUNS; }
find "$RUNS" "$evals" -type f -newer "$marker" 2>/dev/null | sort > "$OUT/written.txt"
tar czf "$OUT/maze-results.tar.gz" -T "$OUT/written.txt" || rc=1
rm -rf "$OUT"/tables-*   # remade from the results files on the CPU
for f in "$OUT"/sweep-*.log; do echo "=== $f"; grep -v -E "Failed to import.*warp" "$f" | tail -n 25; done
cat "$OUT/hardware.txt" "$OUT/written.txt"
exit $rc
