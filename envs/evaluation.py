"""Evaluation rollouts: whole episodes, vmapped over episodes (and over seeds)."""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from envs.core import Env
from envs.registry import spec as _spec


def normalized_score(env_id: str, returns):
    """D4RL normalised score `100 * (R - R_random) / (R_expert - R_random)` for an env id."""
    return _spec(env_id).normalize(returns)


def make_evaluate(act_fn: Callable, env: Env, episodes: int, stateful: bool):
    """A pure function `(policy_state, key) -> (returns, lengths)` for `episodes` episodes.

    `act_fn(obs, key)` (or `act_fn(policy_state, obs, key)` when `stateful`) acts on one
    observation; it is vmapped over episodes here. Episodes run until every one of them has
    ended (terminated, or truncated at the env's episode length); the loop stops early once
    all are done, so short failing episodes cost little.
    """
    policy = act_fn if stateful else (lambda _, obs, key: act_fn(obs, key))
    horizon = env.spec.episode_length

    def run(policy_state, key):
        k_reset, k_loop = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))
        alive = jnp.ones((episodes,), bool)
        ret = jnp.zeros((episodes,), jnp.float32)
        length = jnp.zeros((episodes,), jnp.int32)

        def cond(carry):
            t, _, _, alive, _, _ = carry
            return jnp.logical_and(t < horizon, alive.any())

        def body(carry):
            t, obs, state, alive, ret, length = carry
            k_act, k_env = jax.random.split(jax.random.fold_in(k_loop, t))
            act = jax.vmap(policy, in_axes=(None, 0, 0))(
                policy_state, obs, jax.random.split(k_act, episodes))
            obs, state, r, term, trunc, _ = jax.vmap(env.step)(
                jax.random.split(k_env, episodes), state, act)
            ret = ret + jnp.where(alive, r, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(term | trunc)
            return t + 1, obs, state, alive, ret, length

        carry = (jnp.zeros((), jnp.int32), obs, state, alive, ret, length)
        _, _, _, _, ret, length = jax.lax.while_loop(cond, body, carry)
        return ret, length

    return run


@functools.lru_cache(maxsize=64)
def _jitted(act_fn, env, episodes, stateful, seed_axis):
    run = make_evaluate(act_fn, env, episodes, stateful)
    if seed_axis:
        run = jax.vmap(run)
    return jax.jit(run)


def evaluate(act_fn: Callable, env: Env, key, episodes: int,
             policy_state=None, seed_axis: bool = False) -> dict:
    """Run `episodes` whole episodes of `env` with `act_fn`, all in one jitted program.

    Without `policy_state`, `act_fn(obs, key) -> action`. With it,
    `act_fn(policy_state, obs, key) -> action`; with `seed_axis=True` the policy state and
    `key` carry a leading seed axis and every seed is evaluated in the same program.

    Returns a dict of arrays, shape `(episodes,)` or `(seeds, episodes)`: `returns`,
    `lengths` and `normalized` (D4RL normalised score of each episode).
    """
    stateful = policy_state is not None
    run = _jitted(act_fn, env, int(episodes), stateful, bool(seed_axis))
    returns, lengths = run(policy_state, key)
    return {"returns": returns, "lengths": lengths,
            "normalized": env.normalize(returns)}
