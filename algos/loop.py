"""The training loop every offline algorithm shares, its policy interface, and the small
optimisation pieces they all use.

An algorithm module provides pure functions and hands them to `make_offline_train`:

    init(key) -> algo_state                   networks, optimisers, the normaliser
    update(algo_state, key) -> (algo_state, metrics)   one gradient step on a fresh batch
    policy = make_policy(config, env_spec)    how the trained state acts (below)

A `Policy` acts with a carry, so planners can keep a plan and a replanning counter, Decision
Diffuser its history, a goal-conditioned policy its goal:

    carry = policy.init_carry(algo_state, obs, task, key)  at an episode's first observation
    action, carry = policy.act(algo_state, carry, obs, key) every step, env action units

`task` is the env's task parameters (`Env.task(state)`, e.g. Maze2D's goal). Memoryless
policies use `stateless(act)`. Evaluation runs the policy inside the same jitted, vmapped
program as training.

`make_offline_train` returns a `Train`: `train(key) -> (state, metrics)` is the whole run, one
`lax.scan` over evaluation periods, each a `lax.scan` of `eval_every` updates followed by
`eval_episodes` full episodes of the env. `train.init` and `train.run(state, periods)` split the
same run so it can be checkpointed and resumed: `run(run(init(k), a), b) == train(k)` when
`a + b == train.periods`. `train.run_seeds(states, periods)` is `run` for a leading seed axis
in one program, as the harness calls it (`init_seeds(keys)` makes the states); it chooses how
many seeds evaluate in lockstep.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.config import validate
from envs.core import Env
from envs.evaluation import Policy, make_evaluate, over_seeds, stateless

# Policy and stateless live with the episode loop that runs them (envs never imports algos);
# algorithms take them from here with the rest of the loop.
__all__ = ["Policy", "Train", "TrainState", "adam", "gradient_step", "lr_schedule",
           "make_offline_train", "soft_update", "stateless"]


# --- optimisation ---------------------------------------------------------------------------
def lr_schedule(lr: float, steps: int = 0, decay: str = "none", decay_every: int = 1,
                decay_horizon: int = 0):
    """The learning rate per update (a schedule, or the constant `lr` itself).

    `decay="cosine"`: cosine from `lr` to 0 over `steps` updates (optax's
    `cosine_decay_schedule`). `decay="stepped_cosine"`: PyTorch's
    `CosineAnnealingLR(T_max=decay_horizon)` stepped once every `decay_every` updates, as
    Diffusion-QL's released code does (one scheduler step per 50k-update `agent.train` call,
    T_max its epoch count), which keeps the rate near `lr` for the whole run."""
    if decay == "cosine":
        return optax.cosine_decay_schedule(lr, steps)
    if decay == "stepped_cosine":
        def schedule(step):
            k = jnp.minimum(step // decay_every, decay_horizon)
            return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * k / decay_horizon))
        return schedule
    return lr  # a plain rate: optax keeps no schedule state for it


def adam(lr: float, steps: int = 0, decay: str = "none", clip: float = 0.0,
         decay_every: int = 1, decay_horizon: int = 0):
    """Adam at `lr_schedule(lr, steps, decay, ...)`, with global-norm clipping when
    `clip > 0`."""
    opt = optax.adam(lr_schedule(lr, steps, decay, decay_every, decay_horizon))
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt


def gradient_step(loss_fn: Callable, tx: optax.GradientTransformation, params, opt_state,
                  *args, has_aux: bool = False):
    """One optimiser step on `loss_fn(params, *args)`: `(params, opt_state, loss, aux)`
    (`aux` is None without `has_aux`)."""
    out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
    loss, aux = out if has_aux else (out, None)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


def soft_update(target, online, tau):
    """Polyak averaging `(1 - tau) target + tau online` (target networks, EMA actors)."""
    return optax.incremental_update(online, target, tau)


# --- the training loop ----------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
    algo: Any             # the algorithm's own state pytree
    key: jax.Array        # the run's PRNG key, split once per period
    period: jax.Array     # evaluation periods completed (int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Train:
    """`train(key)` runs everything; `init` + `run` do the same in resumable pieces."""
    init_algo: Callable
    update: Callable
    policy: Policy
    env: Env
    config: Any
    end_period: Callable | None = None   # algo_state -> algo_state, after each period's
                                         # updates, before its evaluation (e.g. elite choice)

    @property
    def periods(self) -> int:
        return self.config.steps // self.config.eval_every

    def init(self, key) -> TrainState:
        k_init, k_run = jax.random.split(key)
        return TrainState(self.init_algo(k_init), k_run, jnp.zeros((), jnp.int32))

    @staticmethod
    def period_keys(state: TrainState, period):
        """`(update key, evaluation key)` of one seed's `period` (0-based): what its updates
        and its evaluation at that period's end draw from (`bench evaluate` replays the
        last one)."""
        k_upd, k_eval = jax.random.split(jax.random.fold_in(state.key, period))
        return k_upd, k_eval

    def _updates(self, state: TrainState):
        """One seed's `eval_every` updates of its current period: (algo, mean metrics,
        the period's evaluation key)."""
        k_upd, k_eval = self.period_keys(state, state.period)
        algo, metrics = jax.lax.scan(self.update, state.algo,
                                     jax.random.split(k_upd, self.config.eval_every))
        metrics = jax.tree_util.tree_map(lambda m: m.mean(0), metrics)
        if self.end_period is not None:
            algo = self.end_period(algo)
        return algo, metrics, k_eval

    def _finish(self, state: TrainState, algo, metrics, returns):
        metrics = {**metrics, "step": (state.period + 1) * self.config.eval_every,
                   "return": returns.mean(), "score": self.env.normalize(returns).mean()}
        return TrainState(algo, state.key, state.period + 1), metrics

    def run(self, state: TrainState, periods: int):
        """`periods` more evaluation periods. Metrics have a leading `(periods,)` axis:
        each update metric is its mean over the period; `step`, `return`, `score` (the
        normalised score) are the mean over the evaluation episodes at the period's end."""
        evaluate = make_evaluate(self.policy, self.env, self.config.eval_episodes)

        def period(state: TrainState, _):
            algo, metrics, k_eval = self._updates(state)
            returns, _ = evaluate(algo, k_eval)
            return self._finish(state, algo, metrics, returns)

        return jax.lax.scan(period, state, None, length=periods)

    def run_seeds(self, states: TrainState, periods: int, eval_seed_batch: int | None = None):
        """`run` for every seed of `states` (a leading seed axis), in one program: the same
        results as `jax.vmap(lambda s: self.run(s, periods))(states)`, metrics shaped
        `(seeds, periods)`. Updates are vmapped over seeds; the evaluation runs
        `eval_seed_batch` seeds in lockstep at a time (`over_seeds`; None: all of them)."""
        evaluate = over_seeds(make_evaluate(self.policy, self.env, self.config.eval_episodes),
                              eval_seed_batch)

        def period(states: TrainState, _):
            algo, metrics, k_eval = jax.vmap(self._updates)(states)
            returns, _ = evaluate(algo, k_eval)
            return jax.vmap(self._finish)(states, algo, metrics, returns)

        states, metrics = jax.lax.scan(period, states, None, length=periods)
        return states, jax.tree_util.tree_map(lambda m: jnp.swapaxes(m, 0, 1), metrics)

    def init_seeds(self, keys) -> TrainState:
        return jax.vmap(self.init)(keys)

    def __call__(self, key):
        return self.run(self.init(key), self.periods)


def make_offline_train(config, env: Env, init_algo, update, policy: Policy,
                       end_period: Callable | None = None) -> Train:
    validate(config)
    return Train(init_algo, update, policy, env, config, end_period)
