"""Gymnasium's MuJoCo v5 locomotion tasks, stepped in MJX (MuJoCo's JAX port).

The physics is MuJoCo's own, on the MJCF files gymnasium ships (`gymnasium/envs/mujoco/
assets/*.xml`), so an id here is the task that Minari's `mujoco/<env>/*-v0` datasets (the
successors of D4RL) were recorded on, not Brax's `spring` look-alike. Everything else is read
from gymnasium 1.3.0's source and cited per task below: observation, reward terms, health and
termination rules, frame skip, reset noise. The episode length (1000) is gymnasium's
`max_episode_steps` for these ids; `Env` truncates there.

Deliberate differences from gymnasium's CPU env:
- MJX computes in float32 (JAX's default) where MuJoCo computes in float64, with MJX's own
  collision and solver code. Every step taken from gymnasium's own states agrees to float32
  precision (next observation within 2e-5 relative, reward 1e-4, same termination), and free
  rollouts from its reset states under random actions stay within 1e-4 for 30 steps on Hopper
  and Walker2d (measured at most 8e-6 and 1.4e-5) but only 12-27 on HalfCheetah, whose
  contacts amplify float32 rounding (`tests/test_mujoco_envs.py`): long rollouts part, as on
  two CPU generations.
- MJX's constraint solver is capped at 8 Newton and 16 line-search iterations (MuJoCo's
  defaults, 100 and 50, cost MJX its speed and, measured, change no step; `SOLVER_CAPS`).
- Gymnasium draws its reset noise from numpy's generator; here it is `jax.random` with the
  same distribution (uniform in `[-reset_noise_scale, reset_noise_scale]` per coordinate).
- `Env.step` clips actions to the box before the physics; gymnasium passes them on and MuJoCo
  clamps `ctrl` to `ctrlrange` (the same box), but gymnasium's control cost is computed on the
  unclipped action. Inside the box the two agree.

`state_from_obs`: the observation is `qpos[1:]` and `qvel`, clipped to [-10, 10] on Hopper and
Walker2d. The root's x position (`qpos[0]`) is left out, and neither the dynamics nor the
reward (a difference of x) depend on it, so it is set to 0. The state is exact on
HalfCheetah, and on Hopper and Walker2d while every velocity is inside the clip (a clipped
velocity is not recoverable).

Ant-v5 is not here yet: its v5 observation holds the contact forces `cfrc_ext`, which
gymnasium fills with `mj_rnePostConstraint`.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from envs.core import Env, EnvSpec


def assets_dir() -> Path:
    import gymnasium

    return Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"


@dataclasses.dataclass(frozen=True)
class Locomotion:
    """One gymnasium v5 locomotion task: the defaults of its class in gymnasium 1.3.0."""
    xml_file: str
    frame_skip: int
    ctrl_cost_weight: float
    reset_noise_scale: float
    qvel_noise: str = "uniform"            # reset_model: uniform, or scale * standard normal
    velocity_clip: float | None = 10.0     # _get_obs: np.clip(qvel, -10, 10), or no clip
    forward_reward_weight: float = 1.0
    healthy_reward: float = 1.0            # 0: no health term, no termination
    healthy_z_range: tuple = (-float("inf"), float("inf"))
    healthy_angle_range: tuple = (-float("inf"), float("inf"))
    healthy_state_range: tuple | None = None   # Hopper: state_vector()[2:] inside it

    @property
    def terminates(self) -> bool:
        return self.healthy_reward > 0


TASKS = {
    # gymnasium/envs/mujoco/hopper_v5.py
    "Hopper-v5": Locomotion("hopper.xml", 4, 1e-3, 5e-3, healthy_z_range=(0.7, float("inf")),
                            healthy_angle_range=(-0.2, 0.2),
                            healthy_state_range=(-100.0, 100.0)),
    # gymnasium/envs/mujoco/walker2d_v5.py
    "Walker2d-v5": Locomotion("walker2d_v5.xml", 4, 1e-3, 5e-3, healthy_z_range=(0.8, 2.0),
                              healthy_angle_range=(-1.0, 1.0)),
    # gymnasium/envs/mujoco/half_cheetah_v5.py: no health term, never terminates
    "HalfCheetah-v5": Locomotion("half_cheetah.xml", 5, 0.1, 0.1, qvel_noise="normal",
                                 velocity_clip=None, healthy_reward=0.0),
}


# Caps on MJX's constraint solver: (Newton iterations, line-search iterations per iteration).
# The MJCF files keep MuJoCo's defaults (100, 50), which MuJoCo in C leaves early on its
# tolerance. MJX runs the line search as a scan over all 50 slots, and under vmap every lane
# computes every slot: with caps (8, 16) `python -m bench envs` steps 1.9-3.1x faster on this
# CPU (Hopper 330 -> 1,012 env-steps/s at batch 1, 1,427 -> 3,504 at batch 256; Walker2d
# 260 -> 647 and 1,467 -> 2,810; HalfCheetah 1,036 -> 1,986 and 4,076 -> 7,708).
# The caps change no result: one env step from 512 states of long random-action rollouts
# (the robot fallen and dragged too), against MuJoCo in C in float64, has the same error
# with caps (8, 16) as with (100, 50) on all three tasks, to the last bit (largest relative
# error 3.7e-6 Hopper, 7.1e-6 Walker2d, 5.8e-5 HalfCheetah); (4, 8) is exact on Hopper and
# HalfCheetah but not on Walker2d (1.4e-2), and Brax's (1, 4) is wrong by 7e-2 to 3.1.
SOLVER_CAPS = (8, 16)


@functools.lru_cache(maxsize=None)
def _model(xml_file: str):
    import mujoco
    from mujoco import mjx

    mj = mujoco.MjModel.from_xml_path(str(assets_dir() / xml_file))
    mj.opt.iterations, mj.opt.ls_iterations = SOLVER_CAPS
    return mj, mjx.put_model(mj)


def make_locomotion(spec: EnvSpec) -> Env:
    """The env of `spec.env_id` (`mujoco/<gymnasium id>`), stepped as gymnasium's class does
    (`step`, `_get_obs`, `_get_rew`, `is_healthy`, `reset_model`; MujocoEnv's `set_state`,
    `do_simulation` and `dt`)."""
    from mujoco import mjx

    task = TASKS[spec.env_id.split("/", 1)[1]]
    mj, model = _model(task.xml_file)
    dt = float(mj.opt.timestep) * task.frame_skip   # MujocoEnv.dt
    init_qpos = jnp.asarray(mj.qpos0, jnp.float32)  # MujocoEnv: data.qpos of a fresh MjData
    init_qvel = jnp.zeros(mj.nv, jnp.float32)
    template = mjx.make_data(model)

    def set_state(qpos, qvel):  # MujocoEnv.set_state: qpos, qvel, then mj_forward
        return mjx.forward(model, template.replace(qpos=qpos, qvel=qvel))

    def obs_of(data):  # _get_obs, exclude_current_positions_from_observation=True
        vel = data.qvel
        if task.velocity_clip is not None:
            vel = jnp.clip(vel, -task.velocity_clip, task.velocity_clip)
        return jnp.concatenate([data.qpos[1:], vel])

    def healthy(data):  # is_healthy
        z, angle = data.qpos[1], data.qpos[2]
        ok = ((task.healthy_z_range[0] < z) & (z < task.healthy_z_range[1])
              & (task.healthy_angle_range[0] < angle) & (angle < task.healthy_angle_range[1]))
        if task.healthy_state_range is not None:
            state = jnp.concatenate([data.qpos, data.qvel])[2:]   # state_vector()[2:]
            lo, hi = task.healthy_state_range
            ok = ok & jnp.all((lo < state) & (state < hi))
        return ok

    def raw_reset(key):  # reset_model
        k_pos, k_vel = jax.random.split(key)
        s = task.reset_noise_scale
        qpos = init_qpos + jax.random.uniform(k_pos, init_qpos.shape, jnp.float32, -s, s)
        if task.qvel_noise == "normal":
            qvel = init_qvel + s * jax.random.normal(k_vel, init_qvel.shape, jnp.float32)
        else:
            qvel = init_qvel + jax.random.uniform(k_vel, init_qvel.shape, jnp.float32, -s, s)
        data = set_state(qpos, qvel)
        return obs_of(data), data

    def raw_step(key, data, action):  # step, terminate_when_unhealthy=True
        del key  # the physics is deterministic
        x_before = data.qpos[0]
        data = data.replace(ctrl=action)
        data = jax.lax.fori_loop(0, task.frame_skip, lambda _, d: mjx.step(model, d), data)
        x_velocity = (data.qpos[0] - x_before) / dt
        reward = (task.forward_reward_weight * x_velocity
                  - task.ctrl_cost_weight * jnp.sum(jnp.square(action)))
        if not task.terminates:
            return obs_of(data), data, reward, jnp.zeros((), bool)
        ok = healthy(data)
        reward = reward + ok * task.healthy_reward   # v5: the healthy reward only if healthy
        return obs_of(data), data, reward, ~ok

    def raw_state_from_obs(obs):
        qpos = jnp.concatenate([jnp.zeros((1,), jnp.float32), obs[:mj.nq - 1]])
        return set_state(qpos, obs[mj.nq - 1:])

    return Env(spec, raw_reset, raw_step, raw_state_from_obs)
