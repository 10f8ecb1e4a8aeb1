"""One pure-functional, vmappable API over every environment source.

An environment source (Gymnax, Brax, our own Maze2D) provides three raw functions for a single
episode:

    raw_reset(key) -> (obs, inner)
    raw_step(key, inner, action) -> (obs, inner, reward, terminated)
    raw_state_from_obs(obs) -> inner            (optional)

`Env` adds the episode bookkeeping every source shares: a step counter, truncation at the env
id's episode length, the running return, and auto-reset with a *fresh random start* (a new
`raw_reset` with a new key, not a cached first state), keeping the finished episode's last
observation in `info["final_obs"]` so datasets can store the true `next_obs`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp


class EnvError(ValueError):
    """Bad user input about environments (unknown id, unsupported operation)."""


class EnvState(NamedTuple):
    inner: Any            # the source environment's own state pytree
    t: jax.Array          # steps taken in the current episode (int32)
    ep_return: jax.Array  # undiscounted return so far in the current episode (float32)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Everything that fixes the task: an env id means exactly one of these."""

    env_id: str
    source: str            # "gymnax" | "brax" | "maze2d"
    backend: str           # physics backend or implementation
    obs_dim: int
    act_dim: int
    action_low: float
    action_high: float
    episode_length: int
    ref_min_score: float   # mean return of the uniform random policy
    ref_max_score: float   # mean return of the expert behaviour agent
    state_from_obs: str    # "" when unsupported, else how exact it is
    description: str = ""

    def normalize(self, returns):
        """D4RL normalised score: 100 * (R - R_random) / (R_expert - R_random)."""
        return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def tree_where(cond, a, b):
    """Elementwise select between two pytrees of identical structure."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


@dataclasses.dataclass(frozen=True, eq=False)
class Env:
    spec: EnvSpec
    raw_reset: Callable
    raw_step: Callable
    raw_state_from_obs: Optional[Callable] = None

    # --- the functional API -------------------------------------------------------------
    def reset(self, key):
        obs, inner = self.raw_reset(key)
        state = EnvState(inner, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))
        return obs.astype(jnp.float32), state

    def step(self, key, state: EnvState, action):
        """One step with auto-reset.

        Returns `(obs, state, reward, terminated, truncated, info)`. When the episode ends,
        `obs` is the first observation of a fresh episode and `info["final_obs"]` is the last
        observation of the one that ended; `info["episode_return"]` and
        `info["episode_length"]` describe the episode up to and including this step.
        """
        k_step, k_reset = jax.random.split(key)
        action = jnp.clip(action, self.spec.action_low, self.spec.action_high)
        obs, inner, reward, terminated = self.raw_step(k_step, state.inner, action)
        obs = obs.astype(jnp.float32)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        t = state.t + 1
        truncated = jnp.logical_and(t >= self.spec.episode_length, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        ep_return = state.ep_return + reward
        info = {"final_obs": obs, "episode_return": ep_return, "episode_length": t}

        reset_obs, reset_inner = self.raw_reset(k_reset)
        next_obs = jnp.where(done, reset_obs.astype(jnp.float32), obs)
        next_state = EnvState(
            tree_where(done, reset_inner, inner),
            jnp.where(done, 0, t).astype(jnp.int32),
            jnp.where(done, 0.0, ep_return).astype(jnp.float32),
        )
        return next_obs, next_state, reward, terminated, truncated, info

    @property
    def supports_state_from_obs(self) -> bool:
        return self.raw_state_from_obs is not None

    def state_from_obs(self, obs) -> EnvState:
        """The state an observation describes (time step 0 of a new episode)."""
        if self.raw_state_from_obs is None:
            raise EnvError(
                f"{self.spec.env_id}: the observation does not determine the state, so "
                "state_from_obs is unsupported (see the env table in README.md)"
            )
        inner = self.raw_state_from_obs(jnp.asarray(obs, jnp.float32))
        return EnvState(inner, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

    # --- conveniences -------------------------------------------------------------------
    @property
    def env_id(self) -> str:
        return self.spec.env_id

    @property
    def obs_dim(self) -> int:
        return self.spec.obs_dim

    @property
    def act_dim(self) -> int:
        return self.spec.act_dim

    @property
    def episode_length(self) -> int:
        return self.spec.episode_length

    def random_action(self, key, shape=()):
        return jax.random.uniform(
            key, shape + (self.spec.act_dim,), jnp.float32,
            self.spec.action_low, self.spec.action_high,
        )

    def normalize(self, returns):
        return self.spec.normalize(returns)
