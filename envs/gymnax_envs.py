"""Gymnax classic-control environments behind the shared API.

Gymnax's own `step` auto-resets and folds the time limit into `done`; we call `step_env` and
`is_terminated` instead, so termination and truncation stay separate and `Env` does the
episode bookkeeping for every source alike.
"""
from __future__ import annotations

import jax.numpy as jnp

from envs.core import Env, EnvSpec


def _gymnax(name):
    import gymnax  # imported lazily: gymnax pulls in a lot at import time

    env, params = gymnax.make(name)
    # Time limits are ours (EnvSpec.episode_length), never gymnax's.
    params = params.replace(max_steps_in_episode=2**30)
    return env, params


def _make(spec: EnvSpec, gymnax_name: str, state_from_obs):
    env, params = _gymnax(gymnax_name)

    def raw_reset(key):
        obs, state = env.reset_env(key, params)
        return obs, state

    def raw_step(key, state, action):
        obs, state, reward, _, _ = env.step_env(key, state, action, params)
        terminated = env.is_terminated(state, params)
        return obs, state, reward, terminated

    return Env(spec, raw_reset, raw_step,
               None if state_from_obs is None else (lambda obs: state_from_obs(env, obs)))


def _pendulum_state(env, obs):
    from gymnax.environments.classic_control.pendulum import EnvState

    return EnvState(time=jnp.zeros((), jnp.int32),
                    theta=jnp.arctan2(obs[1], obs[0]), theta_dot=obs[2], last_u=jnp.zeros(()))


def _mountain_car_state(env, obs):
    from gymnax.environments.classic_control.continuous_mountain_car import EnvState

    return EnvState(time=jnp.zeros((), jnp.int32), position=obs[0], velocity=obs[1])


def make_pendulum(spec):
    return _make(spec, "Pendulum-v1", _pendulum_state)


def make_mountain_car(spec):
    return _make(spec, "MountainCarContinuous-v0", _mountain_car_state)
