"""One pure-functional, vmappable API over every environment source.

An environment source (Gymnax, Brax, our own Maze2D) provides three raw functions for a single
episode:

    raw_reset(key) -> (obs, inner)
    raw_step(key, inner, action) -> (obs, inner, reward, terminated)
    raw_state_from_obs(obs) -> inner            (optional)

An env may have task parameters (`TaskSpace`: Maze2D's goal; later a target velocity or
direction) that live in its inner state: `reset(key, task)` starts an episode of that task,
auto-resets keep it, `task(state)` reads it back, and `sample_task(key)` draws one, so
evaluation vmaps over tasks as it vmaps over seeds. Without a task an episode has the env id's
default one (D4RL's fixed goal for Maze2D).

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
    source: str            # "gymnax" | "brax" | "mujoco" | "maze2d" | "bandit"
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


class TaskSpace(NamedTuple):
    """An env's task parameters: a pytree per task (e.g. a goal position)."""
    default: Callable          # () -> task: the env id's own task
    sample: Callable           # key -> task: a task drawn at random
    of: Callable               # inner state -> its task
    reset: Callable            # (key, task) -> (obs, inner): raw_reset for that task


NO_TASK = jnp.zeros((0,), jnp.float32)


def tree_where(cond, a, b):
    """Elementwise select between two pytrees of identical structure."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


@dataclasses.dataclass(frozen=True, eq=False)
class Env:
    spec: EnvSpec
    raw_reset: Callable
    raw_step: Callable
    raw_state_from_obs: Optional[Callable] = None
    tasks: Optional[TaskSpace] = None

    # --- the functional API -------------------------------------------------------------
    def reset(self, key, task=None):
        """A new episode; `task` (see `TaskSpace`) or the env id's default task."""
        if task is None:
            obs, inner = self.raw_reset(key)
        else:
            obs, inner = self._tasks().reset(key, task)
        state = EnvState(inner, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))
        return obs.astype(jnp.float32), state

    def _tasks(self) -> TaskSpace:
        if self.tasks is None:
            raise EnvError(f"{self.spec.env_id} has no task parameters")
        return self.tasks

    def task(self, state: EnvState):
        """The task of the episode in `state` (an empty array for envs without tasks)."""
        return NO_TASK if self.tasks is None else self.tasks.of(state.inner)

    def sample_task(self, key):
        return self._tasks().sample(key)

    def default_task(self):
        return NO_TASK if self.tasks is None else self.tasks.default()

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

        if self.tasks is None:
            reset_obs, reset_inner = self.raw_reset(k_reset)
        else:  # the next episode keeps this episode's task
            reset_obs, reset_inner = self.tasks.reset(k_reset, self.tasks.of(state.inner))
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

    def state_from_obs(self, obs, task=None) -> EnvState:
        """The state an observation describes (time step 0 of a new episode), in `task` (or
        the default task) for envs with task parameters."""
        if self.raw_state_from_obs is None:
            raise EnvError(
                f"{self.spec.env_id}: the observation does not determine the state, so "
                "state_from_obs is unsupported (see the env table in README.md)"
            )
        obs = jnp.asarray(obs, jnp.float32)
        if self.tasks is None:
            inner = self.raw_state_from_obs(obs)
        else:
            inner = self.raw_state_from_obs(obs, self.tasks.default() if task is None else task)
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
