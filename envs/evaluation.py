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


def as_policy(policy) -> Policy:
    """`policy` as a `Policy`: one as it is (anything with `init_carry` and `act`), a plain
    `act(policy_state, obs, key)` wrapped by `stateless`."""
    return _as_policy(policy, stateful=True)


def start_lanes(env: Env, policy: Policy, policy_state, reset_keys, carry_keys, task=None,
                lane_tasks=None):
    """Reset one env per key of `reset_keys` (with `task`, or each lane's own of `lane_tasks`
    (a leading lane axis), or the env id's) and start the policy's carry of each lane at its
    first observation. Returns `(obs, state, carry)`."""
    if lane_tasks is not None:
        obs, state = jax.vmap(env.reset)(reset_keys, lane_tasks)
    elif task is None:
        obs, state = jax.vmap(env.reset)(reset_keys)
    else:
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, task)
    carry = jax.vmap(policy.init_carry, in_axes=(None, 0, 0, 0))(
        policy_state, obs, jax.vmap(env.task)(state), carry_keys)
    return obs, state, carry


def step_lanes(env: Env, policy: Policy, policy_state, obs, state, carry, key,
               clip: bool = False):
    """One step of every lane, the step evaluation and dataset collection share: each lane's
    policy acts on its observation with its carry, the action is clipped to the env's box if
    `clip`, and each env steps (`key` splits into the acting and the stepping key, each split
    once more per lane). Returns `(action, carry, (next_obs, state, reward, term, trunc,
    info))`."""
    lanes = obs.shape[0]
    k_act, k_env = jax.random.split(key)
    action, carry = jax.vmap(policy.act, in_axes=(None, 0, 0, 0))(
        policy_state, carry, obs, jax.random.split(k_act, lanes))
    if clip:
        action = jnp.clip(action, env.spec.action_low, env.spec.action_high)
    out = jax.vmap(env.step)(jax.random.split(k_env, lanes), state, action)
    return action, carry, out


def make_evaluate(policy, env: Env, episodes: int, stateful: bool = True,
                  sample_tasks: bool = False):
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

    `sample_tasks`: every episode draws its own task (`env.sample_task`; Maze2D's goal, so
    Diffuser's Multi2D) from a branch of `key` of its own, so the starts and the acting keys
    are those of the same evaluation with the env id's task.
    """
    policy = _as_policy(policy, stateful)
    horizon = env.spec.episode_length
    if sample_tasks and env.tasks is None:
        raise ValueError(f"{env.spec.env_id} has no task parameters to sample")

    def run(policy_state, key, task=None):
        if sample_tasks and task is not None:
            raise ValueError("run(..., task) with sample_tasks: each episode draws its own")
        k_reset, k_loop = jax.random.split(key)
        lane_tasks = (jax.vmap(env.sample_task)(jax.random.split(
            jax.random.fold_in(key, 2), episodes)) if sample_tasks else None)
        # The carry's keys come from `fold_in(key, 1)`, added after the memoryless policies'
        # keys were fixed, so a planner changed none of theirs. (With jax's partitionable
        # threefry, `split(key)[1]` is that same key, so lane i's carry key is the loop's key of
        # step i; harmless, and changing it would move every published evaluation.)
        obs, state, carry = start_lanes(
            env, policy, policy_state, jax.random.split(k_reset, episodes),
            jax.random.split(jax.random.fold_in(key, 1), episodes), task, lane_tasks)
        alive = jnp.ones((episodes,), bool)
        ret = jnp.zeros((episodes,), jnp.float32)
        length = jnp.zeros((episodes,), jnp.int32)

        def cond(c):
            return jnp.logical_and(c[0] < horizon, c[4].any())

        def body(c):
            t, obs, state, carry, alive, ret, length = c
            _, carry, (obs, state, r, term, trunc, _) = step_lanes(
                env, policy, policy_state, obs, state, carry, jax.random.fold_in(k_loop, t))
            ret = ret + jnp.where(alive, r, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(term | trunc)
            return t + 1, obs, state, carry, alive, ret, length

        c = (jnp.zeros((), jnp.int32), obs, state, carry, alive, ret, length)
        c = jax.lax.while_loop(cond, body, c)
        return c[5], c[6]

    return run


def default_seed_batch() -> int | None:
    """How many seeds evaluate in lockstep by default: all of them (None) on an accelerator,
    one at a time on a CPU.

    An episode loop runs in lockstep until its longest episode ends, and a finished episode's
    lane still computes. On an accelerator the extra lanes are nearly free; on a CPU every lane
    costs its FLOPs, so 8 seeds in one lockstep loop ran at 0.44-0.96x the env-steps/s of the
    same seeds one after another (`results/speed/policies.md`, before this default)."""
    return 1 if jax.default_backend() == "cpu" else None


def over_seeds(run: Callable, seed_batch: int | None = None) -> Callable:
    """`run(policy_state, key, ...)` over a leading seed axis of its arguments, in one program.

    `seed_batch` seeds share one lockstep episode loop at a time (`lax.map` with that batch
    size, the batches one after another); None vmaps all seeds into one loop. Every seed gets
    the same result either way, up to float rounding of batched against unbatched matmuls."""
    if seed_batch is None:
        return jax.vmap(run)
    if seed_batch < 1:
        raise ValueError(f"seed_batch must be >= 1 or None, got {seed_batch}")
    # batch size 1 maps `run` itself: lax.map's batched form would vmap it over an axis of
    # one, whose batched matmuls measured 7-14% slower on the cheap policies' evaluation
    batch = {} if seed_batch == 1 else {"batch_size": seed_batch}
    return lambda *args: jax.lax.map(lambda a: run(*a), args, **batch)


@functools.lru_cache(maxsize=64)
def _jitted(act_fn, env, episodes, stateful, seed_axis, seed_batch):
    run = make_evaluate(act_fn, env, episodes, stateful)
    if seed_axis:
        run = over_seeds(run, seed_batch)
    return jax.jit(run)


def evaluate(act_fn: Callable, env: Env, key, episodes: int,
             policy_state=None, seed_axis: bool = False, seed_batch="default") -> dict:
    """Run `episodes` whole episodes of `env` with `act_fn`, all in one jitted program.

    Without `policy_state`, `act_fn(obs, key) -> action`. With it,
    `act_fn(policy_state, obs, key) -> action`; with `seed_axis=True` the policy state and
    `key` carry a leading seed axis and every seed is evaluated in the same program,
    `seed_batch` of them in lockstep at a time (`over_seeds`; default `default_seed_batch()`).

    Returns a dict of arrays, shape `(episodes,)` or `(seeds, episodes)`: `returns`,
    `lengths` and `normalized` (D4RL normalised score of each episode).
    """
    stateful = policy_state is not None
    if seed_batch == "default":
        seed_batch = default_seed_batch()
    run = _jitted(act_fn, env, int(episodes), stateful, bool(seed_axis), seed_batch)
    returns, lengths = run(policy_state, key)
    return {"returns": returns, "lengths": lengths,
            "normalized": env.normalize(returns)}
