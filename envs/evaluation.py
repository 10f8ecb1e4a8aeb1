"""Evaluation rollouts: whole episodes, vmapped over episodes (and over seeds)."""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from envs.core import Env
from envs.registry import spec as _spec


def normalized_score(env_id: str, returns):
    """D4RL normalised score `100 * (R - R_random) / (R_expert - R_random)` for an env id."""
    return _spec(env_id).normalize(returns)


class Policy(NamedTuple):
    """How a trained state acts, with a carry (a plan, a history, a goal) between steps."""
    init_carry: Callable   # (policy_state, obs, task, key) -> carry (a planner plans here)
    act: Callable          # (policy_state, carry, obs, key) -> (action, carry)


def stateless(act: Callable) -> Policy:
    """A `Policy` from `act(policy_state, obs, key) -> action` that needs no memory."""
    return Policy(lambda state, obs, task, key: (),
                  lambda state, carry, obs, key: (act(state, obs, key), carry))


def _as_policy(policy, stateful: bool) -> Policy:
    """A `Policy` as it is (anything with `init_carry` and `act`), or one made from a plain
    `act(policy_state, obs, key)` (`stateful`) or `act(obs, key)`."""
    if hasattr(policy, "init_carry") and hasattr(policy, "act"):
        return policy
    return stateless(policy if stateful else (lambda _, obs, key: policy(obs, key)))


def make_evaluate(policy, env: Env, episodes: int, stateful: bool = True):
    """A pure function `(policy_state, key, task=None) -> (returns, lengths)` for `episodes`
    episodes.

    `policy` is a `Policy` (`init_carry(state, obs, task, key)`, `act(state, carry, obs, key)
    -> (action, carry)`: the carry holds a plan, a history or a goal), or a memoryless
    `act(policy_state, obs, key)` (`stateful`) / `act(obs, key)`. It is vmapped over episodes
    here. `task`: the env's task parameters for every episode (default: the env id's task);
    vmap the returned function over tasks to evaluate several. Episodes run until every one
    of them has ended (terminated, or truncated at the env's episode length); the loop stops
    early once all are done, so short failing episodes cost little, and a finished episode's
    return and length stop counting.
    """
    init_carry, act = _as_policy(policy, stateful)
    horizon = env.spec.episode_length

    def run(policy_state, key, task=None):
        k_reset, k_loop = jax.random.split(key)
        resets = jax.random.split(k_reset, episodes)
        if task is None:
            obs, state = jax.vmap(env.reset)(resets)
        else:
            obs, state = jax.vmap(env.reset, in_axes=(0, None))(resets, task)
        # The carry's keys come from their own branch of `key`, so adding a planner changed
        # no reset or action key of the memoryless policies.
        carry = jax.vmap(init_carry, in_axes=(None, 0, 0, 0))(
            policy_state, obs, jax.vmap(env.task)(state),
            jax.random.split(jax.random.fold_in(key, 1), episodes))
        alive = jnp.ones((episodes,), bool)
        ret = jnp.zeros((episodes,), jnp.float32)
        length = jnp.zeros((episodes,), jnp.int32)

        def cond(c):
            return jnp.logical_and(c[0] < horizon, c[4].any())

        def body(c):
            t, obs, state, carry, alive, ret, length = c
            k_act, k_env = jax.random.split(jax.random.fold_in(k_loop, t))
            action, carry = jax.vmap(act, in_axes=(None, 0, 0, 0))(
                policy_state, carry, obs, jax.random.split(k_act, episodes))
            obs, state, r, term, trunc, _ = jax.vmap(env.step)(
                jax.random.split(k_env, episodes), state, action)
            ret = ret + jnp.where(alive, r, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(term | trunc)
            return t + 1, obs, state, carry, alive, ret, length

        c = (jnp.zeros((), jnp.int32), obs, state, carry, alive, ret, length)
        c = jax.lax.while_loop(cond, body, c)
        return c[5], c[6]

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
