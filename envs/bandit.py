"""The 2-D multi-modal bandit of Diffusion-QL's Figure 1 (Wang et al. 2023), in pure JAX.

One step per episode from a constant observation (0,). The behaviour policy draws actions
from four well separated Gaussian modes, one on each half-axis; each mode pays a different
reward. A policy that averages the modes (a Gaussian fitted by likelihood lands between them)
earns nothing; one that covers them imitates the behaviour; one that also maximises return
picks the best mode.

- modes `CENTERS` (±0.7 on each axis), behaviour std `MODE_STD` = 0.08 per coordinate,
  equal weights;
- reward: `REWARDS[k]` when the action lies within `RADIUS` = 0.25 (> 3 std) of centre k,
  else 0; `terminated` after the one step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Env, EnvSpec

CENTERS = np.array([[0.7, 0.0], [0.0, 0.7], [-0.7, 0.0], [0.0, -0.7]], np.float32)
REWARDS = np.array([10.0, 7.5, 5.0, 2.5], np.float32)
MODE_STD = 0.08
RADIUS = 0.25
OBS_DIM, ACT_DIM = 1, 2

# Uniform actions on [-1, 1]^2 hit mode k with probability (pi RADIUS^2) / 4 (each disc lies
# inside the box): the random policy's expected reward, exactly.
RANDOM_RETURN = float(np.pi * RADIUS ** 2 / 4.0 * REWARDS.sum())
BEST_RETURN = float(REWARDS.max())


def nearest_mode(action):
    """Index of the closest centre and the distance to it, for actions `(..., 2)`."""
    d = jnp.linalg.norm(action[..., None, :] - jnp.asarray(CENTERS), axis=-1)
    return jnp.argmin(d, -1), jnp.min(d, -1)


def reward(action):
    k, d = nearest_mode(action)
    return jnp.where(d <= RADIUS, jnp.asarray(REWARDS)[k], 0.0)


def behaviour_action(key):
    """One action of the behaviour policy: a uniformly chosen mode plus N(0, MODE_STD^2 I)."""
    k_mode, k_noise = jax.random.split(key)
    k = jax.random.randint(k_mode, (), 0, len(CENTERS))
    return jnp.asarray(CENTERS)[k] + MODE_STD * jax.random.normal(k_noise, (ACT_DIM,))


def mode_coverage(actions) -> dict:
    """Per-mode fractions of `actions (n, 2)` within RADIUS of a centre, their total, the
    number of modes holding at least 5% of the actions, and the mean reward."""
    actions = jnp.asarray(actions)
    k, d = nearest_mode(actions)
    near = d <= RADIUS
    per_mode = np.array([float(jnp.mean(near & (k == i))) for i in range(len(CENTERS))])
    return {"in_mode": float(near.mean()), "per_mode": per_mode.tolist(),
            "modes_covered": int((per_mode >= 0.05).sum()),
            "reward": float(reward(actions).mean())}


def make_bandit(spec: EnvSpec) -> Env:
    def raw_reset(key):
        del key
        return jnp.zeros((OBS_DIM,), jnp.float32), jnp.zeros((), jnp.float32)

    def raw_step(key, inner, action):
        del key
        return jnp.zeros((OBS_DIM,), jnp.float32), inner, reward(action), jnp.ones((), bool)

    return Env(spec, raw_reset, raw_step, lambda obs: jnp.zeros((), jnp.float32))
