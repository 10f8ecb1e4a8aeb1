#!/bin/bash
# Issues 11 and 14's GPU run: Diffusion-QL and SynthER, ours against the authors' PyTorch code on
# the same card. Run from the repository root on a GPU machine whose python3 has
# jax, flax, optax, chex, numpy, torch, einops, tqdm, python-dateutil and tabulate (the lent
# machines' image has them), with:
#   .whl/ema_pytorch-0.2.1-py3-none-any.whl   (SynthER's EMA; pure Python)
#   .authors/dql/{agents,utils}/              (Zhendong-Wang/Diffusion-Policies-for-Offline-RL
#                                              at d871f5c: `git archive d871f5c agents utils`)
#   .authors/synther/synther/diffusion/       (conglu1997/SynthER at e6835a5)
# Both folders are ignored by git (.git/info/exclude) and carried with the call. What comes
# back under $OUT: hardware.txt, dql-pytorch.jsonl, dql-ours.json, synther-pytorch.jsonl,
# synther-pytorch-tf32.jsonl (theirs with TORCH_TF32=1),
# synther.md / synther.csv (`python -m bench speed synther --out`), fp32/synther.md (the same
# with JAX_DEFAULT_MATMUL_PRECISION=highest), log.txt. Each step has its own timeout, so a slow
# one costs only its own lines (`bench speed synther` writes its files at the end: a step
# stopped by its timeout leaves only its log lines). Arguments: the steps to run.
set -u
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/ema_pytorch-*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
unset JAX_PLATFORMS
log="$OUT/log.txt"
step() {  # step SECONDS NAME COMMAND...: run with a timeout, log its stderr and wall time
  local t=$1 name=$2; shift 2
  local t0=$SECONDS
  timeout "$t" "$@" 2>> "$log"
  echo "== $name: rc $? in $((SECONDS - t0)) s" | tee -a "$log" >&2   # not into the step's stdout file
}
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())"
  lscpu | grep -E "Model name|^CPU\(s\)"; } > "$OUT/hardware.txt" 2>&1
cat "$OUT/hardware.txt"
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
# the steps to run: dql-torch dql-ours synther-torch synther-torch-tf32 synther-ours
# synther-fp32. All of them take longer than one call (10 minutes): the default is the first
# five (about 5 minutes on an H200); run synther-fp32 (about 4 minutes) in a call of its own.
only="${*:-dql-torch dql-ours synther-torch synther-torch-tf32 synther-ours}"
# Diffusion-QL: theirs at Maze2D umaze's shapes (state 4, action 2: those of bench.speed_seeds'
# data) and hopper's (11, 3); ours through bench.speed_seeds (one seed, 50 steps per call)
if want dql-torch; then
  for dims in "4 2" "11 3"; do
    set -- $dims
    AUTHORS=.authors/dql step 60 "dql torch $1x$2" python3 bench/reference/dql_torch.py \
        --state-dim "$1" --action-dim "$2" --steps 50 >> "$OUT/dql-pytorch.jsonl"
  done
fi
want dql-ours && step 90 "dql ours" python3 -m bench.speed_seeds --seeds 1 --steps 50 \
    --algos diffusion_ql --out "$OUT/dql-ours.json"
# SynthER: theirs (100k transitions per generation call, 20k for width 2048), then ours with
# JAX's default matmul precision (TF32 on this GPU) and with float32 throughout, as torch's
# default is
want synther-torch && AUTHORS=.authors/synther SAMPLES_2048=20000 step 90 "synther torch" \
    python3 bench/reference/synther_torch.py >> "$OUT/synther-pytorch.jsonl"
want synther-torch-tf32 && AUTHORS=.authors/synther SAMPLES_2048=20000 TORCH_TF32=1 \
    step 90 "synther torch tf32" python3 bench/reference/synther_torch.py \
    >> "$OUT/synther-pytorch-tf32.jsonl"
want synther-ours && step 200 "synther ours" python3 -m bench speed synther --out "$OUT"
want synther-fp32 && JAX_DEFAULT_MATMUL_PRECISION=highest step 360 "synther ours fp32" \
    python3 -m bench speed synther --out "$OUT/fp32"
cat "$OUT"/*.json* 2>/dev/null
grep -E "^\|" "$OUT/synther.md" "$OUT/fp32/synther.md" 2>/dev/null || true
