#!/bin/bash
# Issue 15's GPU run: brax.training PPO behaviour agents for gymnasium's MuJoCo v5 tasks in MJX
# (the recipes `mujoco/*` of envs/datasets/behaviour.py), then MJX env-steps/s at batch 1, 256
# and 4096. Run from the repository root on a GPU machine whose Python has jax, flax, optax,
# chex, orbax, numpy, pandas and h5py, with the missing wheels in .whl/ (brax 0.14.2, mujoco
# 4.0.0 with mujoco-core and mujoco-studio, mujoco-mjx 3.17.0, gymnasium 1.3.0,
# farama-notifications, glfw, ml_collections, jaxopt, trimesh 5.2.0, orbax-export).
# Arguments: the tasks to train, one after another (default: Hopper). Measured on an H100 with
# jax 0.11.2: compiling MJX programs there takes minutes (three agents trained at once, one
# process each, had not finished their first evaluation's compile after 4 minutes), so train
# one task per call and leave it the whole call. Then the env speeds, if time is left
# (ENVS_TIMEOUT seconds). What comes back: $OUT/agents.tar (the agents' .npz and .json, to
# untar into envs/datasets/agents/), $OUT/log.txt, $OUT/envs.md.
set -u
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/logs
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site MINARI_DATASETS_PATH=/tmp/minari XLA_PYTHON_CLIENT_MEM_FRACTION=0.25
unset JAX_PLATFORMS
{ nvidia-smi -L; python3 -c "import jax, mujoco, brax; print(jax.devices(), 'jax', jax.__version__, 'mujoco', mujoco.__version__, 'brax', brax.__version__)"; } > /tmp/logs/0-hardware.txt 2>&1
for e in "${@:-Hopper}"; do
  /usr/bin/time -f "$e wall %e s" timeout "${TRAIN_TIMEOUT:-420}" \
      python3 bench/reference/jax_compat.py data agent --env "mujoco/$e-v5" \
      > "/tmp/logs/ppo-$e.txt" 2>&1
done
agents=$(cd envs/datasets/agents && ls mujoco_* 2>/dev/null)
if [ -n "$agents" ]; then tar -cf "$OUT/agents.tar" -C envs/datasets/agents $agents
else echo "no agent finished: no agents.tar" > /tmp/logs/1-agents.txt; fi
timeout "${ENVS_TIMEOUT:-100}" python3 bench/reference/jax_compat.py envs \
    --ids mujoco/Hopper-v5,mujoco/Walker2d-v5,mujoco/HalfCheetah-v5 --batches 1,256,4096 \
    > "$OUT/envs.md" 2> /tmp/logs/envs.txt
for f in /tmp/logs/*; do echo "=== $f"; grep -v "Failed to import mujoco_warp" "$f"; done > "$OUT/log.txt"
cat "$OUT/log.txt" "$OUT/envs.md"
