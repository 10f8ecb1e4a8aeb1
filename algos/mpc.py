"""MPC with a learned dynamics ensemble: the autoregressive model-based planner the diffusion
planners are compared with (PETS, Chua et al. 2018, with MBPO's ensemble).

The model is `algos.dynamics` (MBPO's probabilistic ensemble; its elites are chosen on held-out
transitions after every training period). Acting is PETS's MPC: at every env step the
cross-entropy method searches `horizon`-step action sequences, each scored by rolling the
model forward from the current observation, and the first action of the final mean is
executed; the next search starts from that solution shifted by one step.

Followed: kchua/handful-of-trials (e1a62f2), `dmbrl/misc/optimizers/cem.py` (`CEMOptimizer`: mean at
the middle of the action bounds, variance `(ub - lb)^2 / 16`, samples from a normal truncated
at 2 standard deviations with the variance capped by the squared half-distance to the
nearest bound, elites' mean and variance smoothed by `alpha`, stopping early when the
variance falls below `epsilon`) and `dmbrl/controllers/MPC.py` (replanning every step, the
warm start shifted with zeros appended, the variance reset each step); the settings of its
`dmbrl/config/halfcheetah.py`: population 500, 50 elites, 5 iterations, alpha 0.1, horizon 30.

The objective: PETS scores candidates with a known cost function of the predicted states;
here it is the model's predicted reward summed over the horizon, or, for an env with a goal
(Maze2D), the negative distance of the predicted position to the goal summed over the horizon
(Maze2D's own reward is sparse: 1 within 0.5 of the goal).

Deviations: every candidate is scored by the elites' mean prediction (PETS propagates 20
particles through randomly chosen members, TS-inf); the early stop on `epsilon` is not taken
(a fixed number of iterations keeps the search one compiled loop); Maze2D's dense objective
above.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from algos.config import BaseConfig, ConfigError
from algos.dynamics import EnsembleSpec, EnsembleState, make_ensemble, make_ensemble_train
from algos.loop import Policy, make_offline_train

LABEL = "MPC (ensemble)"
# training fits the ensemble; the search is acting alone
ACTING = ("horizon", "population", "cem_elites", "iterations", "alpha")
ORDER = 80
KIND = "planner"
TINY = {"ensemble.width": "8", "ensemble.depth": "1", "ensemble.members": "2",
        "ensemble.elites": "1", "horizon": "3", "population": "8", "cem_elites": "2",
        "iterations": "1"}


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    ensemble: EnsembleSpec = EnsembleSpec()
    horizon: int = 30
    population: int = 500
    cem_elites: int = 50
    iterations: int = 5
    alpha: float = 0.1

    def check(self):
        self.ensemble.check()
        if self.horizon < 1 or self.population < 1 or self.iterations < 1:
            raise ConfigError("horizon, population and iterations must be at least 1")
        if not 1 <= self.cem_elites <= self.population:
            raise ConfigError(f"need 1 <= cem_elites <= population, got {self.cem_elites} of "
                              f"{self.population}")
        if not 0 <= self.alpha < 1:
            raise ConfigError(f"alpha must be in [0, 1), got {self.alpha}")
        if self.normalize_obs or self.reward_scale != "none":
            raise ConfigError("the ensemble standardises its own inputs; normalize_obs and "
                              "reward_scale do not apply")


class Carry(NamedTuple):
    solution: jax.Array   # (horizon, act_dim): the last search's mean, to warm-start the next
    goal: jax.Array       # the episode's task (Maze2D's goal; empty without one)


def make_search(config: Config, env_spec):
    """`(objective(model, obs, actions, goal) -> value, cem(model, obs, goal, init_mean, key)
    -> (horizon, act_dim) mean)`."""
    act_dim, obs_dim, h = env_spec.act_dim, env_spec.obs_dim, config.horizon
    lo, hi = env_spec.action_low, env_spec.action_high
    _, _, predict, _ = make_ensemble(config.ensemble, obs_dim, act_dim)

    def objective(model, obs, actions, goal):
        """The return of one action sequence under the model (higher is better)."""
        def step(o, a):
            r, nxt = predict(model, o, a)
            if goal.shape[-1]:
                r = -jnp.linalg.norm(nxt[:goal.shape[-1]] - goal)
            return nxt, r
        _, rewards = jax.lax.scan(step, obs, actions)
        return rewards.sum()

    def cem(model, obs, goal, init_mean, key):
        var0 = jnp.full((h, act_dim), (hi - lo) ** 2 / 16.0)

        def iteration(c, k):
            mean, var = c
            cap = jnp.minimum(jnp.square((mean - lo) / 2), jnp.square((hi - mean) / 2))
            std = jnp.sqrt(jnp.minimum(cap, var))
            z = jax.random.truncated_normal(k, -2.0, 2.0, (config.population, h, act_dim))
            cand = mean + std * z
            value = jax.vmap(lambda a: objective(model, obs, a, goal))(cand)
            elites = cand[jnp.argsort(-value)[:config.cem_elites]]
            mean = config.alpha * mean + (1 - config.alpha) * elites.mean(0)
            var = config.alpha * var + (1 - config.alpha) * elites.var(0)
            return (mean, var), None

        (mean, _), _ = jax.lax.scan(iteration, (init_mean, var0),
                                    jax.random.split(key, config.iterations))
        return mean

    return objective, cem


def make_policy(config: Config, env_spec):
    act_dim, h = env_spec.act_dim, config.horizon
    lo, hi = env_spec.action_low, env_spec.action_high
    mid = (lo + hi) / 2.0
    _, cem = make_search(config, env_spec)

    def init_carry(state: EnsembleState, obs, task, key):
        del state, obs, key
        return Carry(jnp.full((h, act_dim), mid, jnp.float32),
                     jnp.asarray(task, jnp.float32).reshape(-1))

    def act(state: EnsembleState, carry: Carry, obs, key):
        plan = cem(state.model, obs, carry.goal, carry.solution, key)
        shifted = jnp.concatenate([plan[1:], jnp.full((1, act_dim), mid, jnp.float32)])
        return jnp.clip(plan[0], lo, hi), carry._replace(solution=shifted)

    return Policy(init_carry, act)


def make_train(config: Config, data, env):
    init, update, choose_elites, _ = make_ensemble_train(config.ensemble, data, env,
                                                         config.batch_size)

    def step(s: EnsembleState, key):
        s, loss = update(s, key)
        return s, {"model_loss": loss}

    return make_offline_train(config, env, init, step, make_policy(config, env.spec),
                              end_period=choose_elites)
