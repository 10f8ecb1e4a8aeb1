"""Data on the device, sampled in-graph: flat transitions (`Data`) and H-step trajectory
windows over whole episodes (`Windows`).

An algorithm's `make_train(config, data, env)` takes either an `envs.datasets.OfflineDataset`
(a Minari dataset on disk) or a mapping of arrays already in memory or on the device (real,
synthetic or mixed: `obs`, `action`, `reward`, `next_obs`, `terminated`), so a generator's
samples can be handed straight to TD3+BC or IQL (`prepare` below).
"""
from __future__ import annotations

from typing import Dict, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from algos.config import ConfigError

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated")


@flax.struct.dataclass
class Normalizer:
    """Maps env observations and actions to what the networks see, and back.

    Networks act in `[-1, 1]^act_dim`; `to_env` rescales to the env's action bounds."""
    obs_mean: jax.Array
    obs_std: jax.Array
    act_mid: jax.Array
    act_half: jax.Array

    def obs(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    def to_env(self, action):
        return self.act_mid + self.act_half * action

    def from_env(self, action):
        return (action - self.act_mid) / self.act_half


@flax.struct.dataclass
class Data:
    """Flat transitions on device, already normalised (observations, actions in [-1, 1],
    scaled rewards); `terminal` is 1.0 where the episode terminated (not where it was
    truncated: a time limit is no terminal state)."""
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminal: jax.Array
    norm: Normalizer

    @property
    def size(self) -> int:
        return self.obs.shape[0]

    def sample(self, key, batch_size: int) -> Dict[str, jax.Array]:
        idx = jax.random.randint(key, (batch_size,), 0, self.size)
        return {"obs": self.obs[idx], "action": self.action[idx], "reward": self.reward[idx],
                "next_obs": self.next_obs[idx], "terminal": self.terminal[idx]}


def _transitions(data, env):
    """`(arrays, episode returns or None, name)` of a dataset or a mapping of arrays."""
    if isinstance(data, Mapping):
        missing = [k for k in TRANSITION_KEYS if k not in data]
        if missing:
            raise ConfigError(f"transition arrays lack {', '.join(missing)}; give "
                              f"{', '.join(TRANSITION_KEYS)}")
        n = {len(data[k]) for k in TRANSITION_KEYS}
        if len(n) != 1:
            raise ConfigError(f"transition arrays differ in length: {sorted(n)}")
        return data, None, "the transition arrays"
    if data.env_id is not None and data.env_id != env.env_id:
        raise ConfigError(f"dataset {data.dataset_id} was recorded on {data.env_id}, "
                          f"not on {env.env_id}")
    return data.transitions, data.episode_returns or None, f"dataset {data.dataset_id}"


def env_arrays(data, env):
    """`(arrays, episode returns or None, name)`: a dataset's or a mapping's transitions as
    float32 arrays in env units (`obs`, `action`, `reward`, `next_obs`), checked against
    `env`'s recording and dimensions."""
    tr, returns, name = _transitions(data, env)
    arrays = {k: np.asarray(tr[k], np.float32) for k in ("obs", "action", "reward", "next_obs")}
    obs, action = arrays["obs"], arrays["action"]
    if obs.ndim != 2 or action.ndim != 2 or obs.shape[1] != env.obs_dim \
            or action.shape[1] != env.act_dim:
        raise ConfigError(f"{name} has obs/action shapes {obs.shape}/{action.shape}, env "
                          f"{env.env_id} has dims {env.obs_dim}/{env.act_dim}")
    arrays["terminated"] = tr["terminated"]
    return arrays, returns, name


def prepare(data, env, config) -> Data:
    """Transitions (a dataset, or a mapping of arrays) as a `Data` for `env` under `config`'s
    normalisations (`normalize_obs`, `reward_scale`)."""
    tr, returns, name = env_arrays(data, env)
    obs, action = tr["obs"], tr["action"]
    if len(obs) < config.batch_size:
        raise ConfigError(f"{name} has {len(obs)} transitions, fewer than batch_size="
                          f"{config.batch_size}")
    lo, hi = env.spec.action_low, env.spec.action_high
    mid, half = (hi + lo) / 2.0, (hi - lo) / 2.0
    if config.normalize_obs:
        mean, std = obs.mean(0), obs.std(0) + 1e-3
    else:
        mean, std = np.zeros(obs.shape[1], np.float32), np.ones(obs.shape[1], np.float32)
    norm = Normalizer(jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32),
                      jnp.full((env.act_dim,), mid, jnp.float32),
                      jnp.full((env.act_dim,), half, jnp.float32))
    reward = np.asarray(tr["reward"], np.float32)
    if config.reward_scale == "iql":
        # IQL's locomotion rule r * 1000 / (max - min return), with 1000 = the episode length
        # there: returns then span one reward unit per step. L is this env's episode length.
        if returns is None:
            raise ConfigError("reward_scale='iql' needs whole episodes: hand a dataset, or "
                              "scale the rewards yourself and set reward_scale=none")
        spread = max(returns) - min(returns)
        reward = reward * (env.episode_length / spread if spread > 0 else 1.0)
    action = np.clip((action - mid) / half, -1.0, 1.0)
    return Data(obs=norm.obs(jnp.asarray(obs)), action=jnp.asarray(action),
                reward=jnp.asarray(reward),
                next_obs=norm.obs(jnp.asarray(tr["next_obs"], jnp.float32)),
                terminal=jnp.asarray(tr["terminated"], jnp.float32), norm=norm)


# --- trajectory windows ---------------------------------------------------------------------
def discounted_returns_to_go(rewards, lengths, discount: float) -> np.ndarray:
    """`G[e, t] = sum_{k >= t} discount^(k - t) r[e, k]` up to each episode's end (zero past it)."""
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros_like(rewards)
    acc = np.zeros(rewards.shape[0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        acc = np.where(t < lengths, rewards[:, t] + discount * acc, 0.0)
        out[:, t] = acc
    return out.astype(np.float32)


@flax.struct.dataclass
class Windows:
    """Every episode padded by `horizon` steps, and the `(episode, start)` pairs windows may
    start at. `sample(key, batch)` draws windows uniformly over those pairs, in-graph.

    A window holds `horizon` steps from `start`: observations, actions, rewards (with the
    termination penalty added at terminal steps, as Diffuser does), terminals, a mask that is
    false past the episode's end (padding is zeros), the discounted return from each step to
    the end of the episode (`rtg`; `value` is its first entry, Diffuser's value target and
    Decision Diffuser's return condition), and the window's first and last valid observation
    (`start_obs`, `goal_obs`: a goal-conditioned planner inpaints them)."""
    obs: jax.Array          # (E, L + H, obs_dim)
    action: jax.Array       # (E, L + H, act_dim)
    reward: jax.Array       # (E, L + H)
    terminal: jax.Array     # (E, L + H)
    rtg: jax.Array          # (E, L + H)
    length: jax.Array       # (E,)
    starts: jax.Array       # (N, 2): episode, start step
    horizon: int = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, episodes: Mapping[str, np.ndarray], horizon: int, discount: float = 0.99,
               termination_penalty: float = 0.0, pad: bool = True,
               max_length: int | None = None) -> "Windows":
        """From padded episode arrays (`OfflineDataset.episodes`: observations (E, L+1, d),
        actions, rewards, terminations (E, L), lengths). `pad=True` lets windows start at any
        step and run past the episode's end (masked); `pad=False` keeps only windows that fit
        inside their episode (episodes shorter than `horizon` give none). `max_length`: no
        window reaches past step `max_length - 1` of its episode (Diffuser's and Decision
        Diffuser's `max_path_length`, 1000: a time-limited 1000-step episode is never padded
        after its truncation)."""
        if horizon < 1:
            raise ConfigError(f"a window needs horizon >= 1, got {horizon}")
        lengths = np.asarray(episodes["lengths"], np.int64)
        e, length_max = np.asarray(episodes["actions"]).shape[:2]
        padded = lambda a, n: np.concatenate(  # noqa: E731
            [np.asarray(a)[:, :length_max], np.zeros((e, n) + np.asarray(a).shape[2:],
                                                     np.asarray(a).dtype)], axis=1)
        terminal = np.asarray(episodes["terminations"], bool)
        reward = np.asarray(episodes["rewards"], np.float32) + termination_penalty * terminal
        valid = np.arange(length_max)[None] < lengths[:, None]
        reward = np.where(valid, reward, 0.0).astype(np.float32)
        rtg = discounted_returns_to_go(reward, lengths, discount)
        # observations hold one more entry (the last next observation): past an episode's end
        # a window holds zeros, as the mask says, whatever the longest episode's length
        obs = np.asarray(episodes["observations"])[:, :length_max]
        obs = np.where(valid.reshape(valid.shape + (1,) * (obs.ndim - 2)), obs, 0)
        last = lengths if pad else lengths - horizon + 1
        if max_length is not None:
            last = np.minimum(last, int(max_length) - horizon + 1)
        starts = np.array([(i, s) for i in range(e) for s in range(max(int(last[i]), 0))],
                          np.int32).reshape(-1, 2)
        if len(starts) == 0:
            raise ConfigError(f"no episode is {horizon} steps long: shorten the horizon or "
                              "allow padded windows")
        return cls(obs=jnp.asarray(padded(obs, horizon), jnp.float32),
                   action=jnp.asarray(padded(episodes["actions"], horizon), jnp.float32),
                   reward=jnp.asarray(padded(reward, horizon)),
                   terminal=jnp.asarray(padded(terminal, horizon), jnp.float32),
                   rtg=jnp.asarray(padded(rtg, horizon)), length=jnp.asarray(lengths, jnp.int32),
                   starts=jnp.asarray(starts), horizon=int(horizon))

    @property
    def size(self) -> int:
        return self.starts.shape[0]

    def window(self, episode, start) -> Dict[str, jax.Array]:
        h = self.horizon
        take = lambda a: jax.lax.dynamic_slice_in_dim(a[episode], start, h, 0)  # noqa: E731
        steps = start + jnp.arange(h)
        mask = steps < self.length[episode]
        n_valid = jnp.clip(self.length[episode] - start, 1, h)
        obs = take(self.obs)
        return {"obs": obs, "action": take(self.action), "reward": take(self.reward),
                "terminal": take(self.terminal), "rtg": take(self.rtg), "mask": mask,
                "value": self.rtg[episode, start], "start_obs": obs[0],
                "goal_obs": obs[n_valid - 1], "episode": episode, "start": start}

    def sample(self, key, batch_size: int) -> Dict[str, jax.Array]:
        idx = jax.random.randint(key, (batch_size,), 0, self.size)
        pick = self.starts[idx]
        return jax.vmap(self.window)(pick[:, 0], pick[:, 1])


def split_where_goal_is_left(raw_episodes, goal, radius: float):
    """Episodes cut after every step `t` at which the agent is within `radius` of `goal` and at
    `t + 1` is not: Diffuser's `maze2d_set_terminals` (jannerm/diffuser, maze2d branch,
    `diffuser/datasets/preprocessing.py`), which turns D4RL's long Maze2D stream into paths
    between departures from the goal. Positions are the first `len(goal)` observation entries.
    Our episodes are separate resets, so they are cut at their own ends as well. Each piece is
    an episode in Minari's layout (observations one longer than actions)."""
    goal = np.asarray(goal, np.float64)
    out = []
    for e in raw_episodes:
        obs = np.asarray(e["observations"])
        at_goal = np.linalg.norm(obs[:, :len(goal)] - goal, axis=-1) < radius
        length = len(e["actions"])
        # a cut after step t (0 <= t < length - 1): at the goal at t, away from it at t + 1
        cuts = (np.flatnonzero(at_goal[:length - 1] & ~at_goal[1:length]) + 1).tolist()
        for a, b in zip([0] + cuts, cuts + [length]):
            out.append({"observations": obs[a:b + 1], "actions": e["actions"][a:b],
                        "rewards": e["rewards"][a:b], "terminations": e["terminations"][a:b],
                        "truncations": e["truncations"][a:b]})
    return out
