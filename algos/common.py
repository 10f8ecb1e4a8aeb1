"""What every offline algorithm shares: the dataset on device, normalisation, batches, the
training loop with periodic evaluation, and `--set key=value` overrides of a Config.

An algorithm module provides three pure functions and hands them to `make_offline_train`:

    init(key) -> algo_state                  (networks, optimisers, the normaliser)
    update(algo_state, key) -> (algo_state, metrics)   one gradient step on a fresh batch
    act(algo_state, obs, key) -> action      one observation, env action units

`make_offline_train` returns a `Train`: `train(key) -> (state, metrics)` is the whole run, one
`lax.scan` over evaluation periods, each a `lax.scan` of `eval_every` updates followed by
`eval_episodes` full episodes of the env. `train.init` and `train.run(state, periods)` split the
same run so it can be checkpointed and resumed: `run(run(init(k), a), b) == train(k)` when
`a + b == train.periods`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any, Callable, Dict

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs.core import Env
from envs.evaluation import make_evaluate


class ConfigError(ValueError):
    """A malformed `--set` override or Config value (printed as one line by the CLI)."""


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Fields every offline algorithm has; each algorithm's Config extends it."""
    steps: int = 100_000          # gradient steps
    batch_size: int = 256
    eval_every: int = 5_000       # gradient steps between evaluations
    eval_episodes: int = 10
    discount: float = 0.99
    normalize_obs: bool = False   # standardise observations with the dataset's statistics
    reward_scale: str = "none"    # "none", or "iql": r * L / (max - min episode return)


# --- config overrides ---------------------------------------------------------------------
def _parse(value: str, typ, name: str):
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(float(value)) if float(value).is_integer() else int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return value
        if origin is tuple:
            (inner, *_) = typing.get_args(typ)
            parts = [p for p in value.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(_parse(p.strip(), inner, name) for p in parts)
    except ValueError:
        pass
    raise ConfigError(f"--set {name}={value}: expected {getattr(typ, '__name__', typ)}")


def field_types(config_cls) -> Dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def apply_overrides(config, overrides: Dict[str, str]):
    """A copy of `config` with `{field: string value}` parsed to each field's type."""
    types = field_types(type(config))
    for name in overrides:
        if name not in types:
            raise ConfigError(f"unknown config field {name!r} for {type(config).__module__}; "
                              f"valid fields: {', '.join(types)}")
    new = dataclasses.replace(config, **{k: _parse(v, types[k], k) for k, v in overrides.items()})
    validate(new)
    return new


def validate(config):
    """Cross-field checks shared by every Config; algorithms add their own in `check`."""
    if config.steps <= 0 or config.eval_every <= 0 or config.batch_size <= 0:
        raise ConfigError("steps, eval_every and batch_size must be positive")
    if config.steps % config.eval_every:
        raise ConfigError(f"steps ({config.steps}) must be a multiple of eval_every "
                          f"({config.eval_every}); set both with --set")
    if config.reward_scale not in ("none", "iql"):
        raise ConfigError(f"reward_scale must be 'none' or 'iql', got {config.reward_scale!r}")
    check = getattr(config, "check", None)
    if check is not None:
        check()


def config_dict(config) -> dict:
    return {"algo": type(config).__module__.rsplit(".", 1)[-1], **dataclasses.asdict(config)}


def config_hash(config) -> str:
    """Eight hex digits that change whenever any field of the config changes."""
    text = json.dumps(config_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- data -----------------------------------------------------------------------------------
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
    scaled rewards); `done` is 1.0 where the episode terminated (not where it was truncated)."""
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    norm: Normalizer

    @property
    def size(self) -> int:
        return self.obs.shape[0]

    def sample(self, key, batch_size: int) -> Dict[str, jax.Array]:
        idx = jax.random.randint(key, (batch_size,), 0, self.size)
        return {"obs": self.obs[idx], "action": self.action[idx], "reward": self.reward[idx],
                "next_obs": self.next_obs[idx], "done": self.done[idx]}


def prepare(dataset, env: Env, config: BaseConfig) -> Data:
    """The dataset's transitions as a `Data` for `env` under `config`'s normalisations."""
    if dataset.env_id is not None and dataset.env_id != env.env_id:
        raise ConfigError(f"dataset {dataset.dataset_id} was recorded on {dataset.env_id}, "
                          f"not on {env.env_id}")
    tr = dataset.transitions
    obs = np.asarray(tr["obs"], np.float32)
    if obs.shape[1] != env.obs_dim or tr["action"].shape[1] != env.act_dim:
        raise ConfigError(f"dataset {dataset.dataset_id} has obs/action dims "
                          f"{obs.shape[1]}/{tr['action'].shape[1]}, env {env.env_id} has "
                          f"{env.obs_dim}/{env.act_dim}")
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
        returns = [float(e["rewards"].sum()) for e in dataset.raw_episodes]
        spread = max(returns) - min(returns)
        reward = reward * (env.episode_length / spread if spread > 0 else 1.0)
    action = np.clip((np.asarray(tr["action"], np.float32) - mid) / half, -1.0, 1.0)
    return Data(obs=norm.obs(jnp.asarray(obs)), action=jnp.asarray(action),
                reward=jnp.asarray(reward),
                next_obs=norm.obs(jnp.asarray(tr["next_obs"], jnp.float32)),
                done=jnp.asarray(tr["terminated"], jnp.float32), norm=norm)


# --- small shared pieces --------------------------------------------------------------------
def adam(lr: float, steps: int, cosine: bool = False, clip: float = 0.0):
    """Adam with optional cosine decay over `steps` and optional global-norm clipping."""
    schedule = optax.cosine_decay_schedule(lr, steps) if cosine else lr
    opt = optax.adam(schedule)
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt


def soft_update(target, online, tau: float):
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def expectile_loss(diff, expectile: float):
    """IQL's asymmetric L2: |expectile - 1(diff < 0)| * diff^2."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff ** 2


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
    act: Callable
    env: Env
    config: Any

    @property
    def periods(self) -> int:
        return self.config.steps // self.config.eval_every

    def init(self, key) -> TrainState:
        k_init, k_run = jax.random.split(key)
        return TrainState(self.init_algo(k_init), k_run, jnp.zeros((), jnp.int32))

    def run(self, state: TrainState, periods: int):
        """`periods` more evaluation periods. Metrics have a leading `(periods,)` axis:
        each update metric is its mean over the period; `step`, `return`, `score` (the
        normalised score) are the mean over the evaluation episodes at the period's end."""
        cfg = self.config
        evaluate = make_evaluate(self.act, self.env, cfg.eval_episodes, stateful=True)

        def period(state: TrainState, _):
            key = jax.random.fold_in(state.key, state.period)
            k_upd, k_eval = jax.random.split(key)
            algo, metrics = jax.lax.scan(self.update, state.algo,
                                         jax.random.split(k_upd, cfg.eval_every))
            metrics = jax.tree_util.tree_map(lambda m: m.mean(0), metrics)
            returns, _ = evaluate(algo, k_eval)
            metrics["step"] = (state.period + 1) * cfg.eval_every
            metrics["return"] = returns.mean()
            metrics["score"] = self.env.normalize(returns).mean()
            return TrainState(algo, state.key, state.period + 1), metrics

        return jax.lax.scan(period, state, None, length=periods)

    def __call__(self, key):
        return self.run(self.init(key), self.periods)


def make_offline_train(config, env: Env, init_algo, update, act) -> Train:
    validate(config)
    return Train(init_algo, update, act, env, config)
