"""Brax locomotion environments behind the shared API.

Each env id fixes the backend (measured on CPU, see README's env table), an episode length of
1000 and Brax's default reward. Brax's own `step` never resets and its `AutoResetWrapper`
restores a cached first state; `Env` resets with a fresh key instead.

Backends (measured on 2 CPU cores, README's env table): `spring` is 4-8x faster than
`positional` and `generalized`, so the locomotion robots use it. But spring (like positional)
integrates maximal coordinates: the bodies' positions and velocities, held together by stiff
joint springs whose small deformations the observation `(q, qd)` does not show. Rebuilding the
state from `(q, qd)` then stepping misses the true next observation by ~0.02-0.5, so those ids
do not offer `state_from_obs`. `inverted_pendulum` runs on `generalized`, where `(q, qd)` *is*
the state and its observation is exactly `(q, qd)`: there `state_from_obs` is exact.
"""
from __future__ import annotations

import jax.numpy as jnp

from envs.core import Env, EnvSpec


def _load(name: str, backend: str):
    from brax import envs as brax_envs

    return brax_envs.get_environment(name, backend=backend)


def _fix_types(state):
    # Brax's reset returns float zeros while step returns weakly-typed ones for `done`; equal
    # dtypes keep `lax.scan` carries stable and avoid a recompile on the second step.
    return state.replace(reward=jnp.asarray(state.reward, jnp.float32),
                         done=jnp.asarray(state.done, jnp.float32))


def make_brax(spec: EnvSpec, name: str):
    env = _load(name, spec.backend)

    def raw_reset(key):
        state = _fix_types(env.reset(key))
        return state.obs, state

    def raw_step(key, state, action):
        del key  # Brax dynamics are deterministic
        state = _fix_types(env.step(state, action))
        return state.obs, state, state.reward, state.done > 0.5

    def raw_state_from_obs(obs):
        import jax

        template = _fix_types(env.reset(jax.random.PRNGKey(0)))
        nq = env.sys.q_size()
        pipeline_state = env.pipeline_init(obs[:nq], obs[nq:])
        return template.replace(pipeline_state=pipeline_state,
                                obs=env._get_obs(pipeline_state))

    return Env(spec, raw_reset, raw_step, raw_state_from_obs if spec.state_from_obs else None)
