#!/bin/bash
# Issue 15's GPU run: a brax.training PPO behaviour agent for one of gymnasium's MuJoCo v5 tasks
# in MJX (the recipes `mujoco/*` of envs/datasets/behaviour.py), then MJX env-steps/s at batch
# 1, 256 and 4096 on the GPU. Run from the repository root on a GPU machine whose Python has
# jax, flax, optax, chex, orbax, numpy, pandas and h5py, with the missing wheels in .whl/
# (brax 0.14.2, mujoco 4.0.0 with mujoco-core and mujoco-studio, mujoco-mjx 3.17.0, gymnasium
# 1.3.0, gymnax 1.0.1, minari 0.5.4, farama-notifications, glfw, pyopengl, ml_collections,
# jaxopt, trimesh 5.2.0, orbax-export, tensorboardx, flask, flask-cors, blinker,
# itsdangerous).
#
# Argument: the task to train (default Walker2d). The training writes its snapshots to
# $OUT/agents/ as they come and scores none (`bench data agent --unscored-to`), so a training
# cut off by TRAIN_TIMEOUT keeps every snapshot it reached; score them on the CPU machine the
# datasets are built on: `python -m bench data agent --env mujoco/<task>-v5 --score-from DIR`.
# The env speeds run after the training, alone on the GPU (ENVS_TIMEOUT seconds; each
# measurement is logged as it finishes, so a timeout keeps the ones done).
# Measured on an H100 with jax 0.11.2: compiling MJX programs there takes minutes, so one task
# per call. What comes back: $OUT/agents/ (.npz and .json), $OUT/log.txt.
set -u
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT/agents" /tmp/logs
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site MINARI_DATASETS_PATH=/tmp/minari PYTHONUNBUFFERED=1
unset JAX_PLATFORMS
{ nvidia-smi -L; lscpu | grep -E "Model name|^CPU\(s\)"
  python3 -c "import jax, mujoco, brax; print(jax.devices(), 'jax', jax.__version__, \
      'mujoco', mujoco.__version__, 'brax', brax.__version__)"; } > /tmp/logs/0-hardware.txt 2>&1
task=${1:-Walker2d}
/usr/bin/time -f "$task PPO wall %e s" timeout "${TRAIN_TIMEOUT:-390}" \
    python3 bench/reference/jax_compat.py data agent --env "mujoco/$task-v5" \
    --unscored-to "$OUT/agents" > "/tmp/logs/1-ppo-$task.txt" 2>&1
/usr/bin/time -f "env speeds wall %e s" timeout "${ENVS_TIMEOUT:-150}" \
    python3 bench/reference/jax_compat.py envs \
    --ids "${ENV_IDS:-mujoco/Walker2d-v5,mujoco/Hopper-v5}" --batches 1,4096,256 \
    > /tmp/logs/2-envs.txt 2>&1
for f in /tmp/logs/*; do echo "=== $f"; grep -v "Failed to import.*warp" "$f"; done > "$OUT/log.txt"
cat "$OUT/log.txt"
