"""Diffuser (Janner et al. 2022, "Planning with Diffusion for Flexible Behavior Synthesis"),
its Maze2D setting: a diffusion model of whole state-action trajectories, planning to a goal
by inpainting, the plan tracked by a controller.

Followed: the authors' `maze2d` branch of jannerm/diffuser (13b4d40):
- `config/maze2d.py`: horizon 256 and T=256 (base), umaze 128/64, large 384/256 (medium keeps
  the base: `task_defaults`); x0-prediction (`predict_epsilon=False`), `dim_mults (1, 4, 8)`,
  U-Net dim 32, action weight 1, loss discount 1, l2 loss, clipped x0, no padding, Adam at
  2e-4, batch 32 with 2 gradient-accumulation steps, EMA 0.995; 2e6 training steps.
- `diffuser/models/diffusion.py` (`GaussianDiffusion`): cosine schedule, the conditioned
  entries overwritten in the noised input and in the reconstruction (so they carry no loss),
  the first action's loss weight, posterior-variance ancestral sampling.
- `diffuser/datasets/sequence.py` (`GoalDataset`): windows `[actions, observations]` of
  `horizon` steps inside a path, conditioned on their first and last observation;
  `diffuser/datasets/normalization.py` (`LimitsNormalizer`): every dimension mapped from its
  [min, max] over the dataset to [-1, 1], samples clipped to [-1, 1] when unnormalised.
- `diffuser/datasets/preprocessing.py` (`maze2d_set_terminals`): paths are cut where the agent
  leaves the env's goal (`algos.data.split_where_goal_is_left`).
- `diffuser/utils/training.py` (`Trainer`): EMA every 10 steps, a plain copy before step 2000.
- `scripts/plan_maze2d.py`: one plan at the episode's first step, start inpainted at step 0
  and `[goal, 0, 0]` at step H-1; the env is driven by the controller
  `a = (w_pos - s_pos) + (w_vel - s_vel)` towards the next planned state `w` (the plan's
  state t+1 at step t), and after the plan ends towards its last state with zero velocity.
  Planning uses the EMA model, one plan per episode (`batch_size 1`).

`act_with="actions"` is the paper's ablation: execute the diffused actions open loop instead
of tracking the planned states (after the plan's actions run out, brake: `a = -velocity`, as
the authors' commented-out branch of `plan_maze2d.py` does).

Multi2D (the same model with a goal drawn per episode) is evaluation over sampled goals: the
policy reads the goal from the env's task (`Env.task`), so `make_evaluate(...)` vmapped over
goals runs it.

Deviations:
- batch 64 in one step instead of 32 twice with gradients accumulated: the same mean gradient.
- the last window start of every path is kept (the authors' `range(max_start)` drops it).
- a dimension that is constant over the dataset is mapped with a range of 1e-6 (the authors'
  normaliser divides by zero there).
- Flax's default initialisers (see `nets.TemporalUnet`).
- Not built yet (issue 13): the locomotion setting (value function, guided sampling,
  replanning every step); Diffuser here needs an env with a goal (Maze2D).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algos.config import BaseConfig, ConfigError
from algos.data import Windows, env_arrays, split_where_goal_is_left
from algos.diffusion_spec import DiffusionSpec, check_backbone, make_denoiser, make_loss, \
    make_sampler
from algos.loop import Policy, adam, gradient_step, make_offline_train
from algos.nets import as_denoiser

LABEL = "Diffuser"
ORDER = 70
KIND = "planner"
TINY = {"horizon": "8", "diffusion.T": "4", "diffusion.width": "8", "diffusion.mults": "1,2"}
ACT_WITH = ("controller", "actions")
GOAL_RADIUS = 0.5   # maze2d_set_terminals' threshold (D4RL's goal reward radius)

# The authors' maze2d config: (horizon, T) per layout; medium keeps the base (256, 256).
MAZE = {"umaze": (128, 64), "medium": (256, 256), "large": (384, 256)}


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    diffusion: DiffusionSpec = DiffusionSpec(
        schedule="cosine", T=256, parameterization="x0", sampler="ddpm", clip_x0=1.0,
        backbone="unet", width=32, mults=(1, 4, 8))
    horizon: int = 256
    steps: int = 2_000_000
    eval_every: int = 10_000
    batch_size: int = 64            # the authors' 32 x 2 accumulated gradients
    lr: float = 2e-4
    action_weight: float = 1.0      # loss weight of the first action
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_start: int = 2000           # before this step the EMA model is a plain copy
    act_with: str = "controller"    # controller | actions (the paper's ablation)

    def check(self):
        check_backbone(self.diffusion, sequence=True)
        if self.diffusion.sampler == "edm":
            raise ConfigError("Diffuser inpaints the noised trajectories of a discrete "
                              "schedule; diffusion.sampler=edm does not apply")
        if self.act_with not in ACT_WITH:
            raise ConfigError(f"act_with must be one of {', '.join(ACT_WITH)}, "
                              f"got {self.act_with!r}")
        if self.horizon < 2:
            raise ConfigError(f"horizon must be at least 2 (start and goal), got {self.horizon}")
        factor = 2 ** (len(self.diffusion.mults) - 1)
        if self.diffusion.backbone == "unet" and self.horizon % factor:
            raise ConfigError(f"horizon={self.horizon} must be a multiple of {factor} for the "
                              f"U-Net with mults {self.diffusion.mults}")
        if self.ema_every < 1 or not 0 <= self.ema_decay <= 1 or self.ema_start < 0:
            raise ConfigError("ema_every >= 1, 0 <= ema_decay <= 1 and ema_start >= 0")
        if self.normalize_obs or self.reward_scale != "none":
            raise ConfigError("Diffuser maps every dimension to [-1, 1] by its limits (the "
                              "authors' LimitsNormalizer); normalize_obs and reward_scale do "
                              "not apply")


def task_defaults(dataset_id: str) -> dict:
    """The authors' horizon and T for a Maze2D layout (`jaxrl/maze2d/<layout>-v0`)."""
    parts = dataset_id.split("/")
    if len(parts) == 3 and parts[1] == "maze2d":
        layout = parts[2].rsplit("-v", 1)[0]
        if layout in MAZE:
            horizon, T = MAZE[layout]
            return {"horizon": horizon, "diffusion.T": T}
    return {}


@flax.struct.dataclass
class Limits:
    """The authors' LimitsNormalizer for observations and actions."""
    obs_min: jax.Array
    obs_max: jax.Array
    act_min: jax.Array
    act_max: jax.Array

    @staticmethod
    def _to(x, lo, hi):
        return 2.0 * (x - lo) / (hi - lo) - 1.0

    @staticmethod
    def _from(x, lo, hi):
        return (jnp.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo

    def obs(self, x):
        return self._to(x, self.obs_min, self.obs_max)

    def act(self, x):
        return self._to(x, self.act_min, self.act_max)

    def obs_from(self, x):
        return self._from(x, self.obs_min, self.obs_max)

    def act_from(self, x):
        return self._from(x, self.act_min, self.act_max)


@flax.struct.dataclass
class State:
    params: dict
    ema: dict            # the model that plans
    opt: optax.OptState
    norm: Limits
    step: jax.Array      # gradient steps taken (the EMA schedule)


class Plan(NamedTuple):
    obs: jax.Array       # (H, obs_dim) planned states, env units
    action: jax.Array    # (H, act_dim) planned actions, env units
    t: jax.Array         # env steps since the plan was made


def _limits(lo, hi):
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    return jnp.asarray(lo), jnp.asarray(np.where(hi - lo > 0, hi, lo + 1e-6))


def condition_mask(horizon: int, act_dim: int, obs_dim: int):
    """`(H, act_dim + obs_dim)` bool: the first and last observation (start and goal)."""
    mask = np.zeros((horizon, act_dim + obs_dim), bool)
    mask[[0, horizon - 1], act_dim:] = True
    return jnp.asarray(mask)


def loss_weights(horizon: int, act_dim: int, obs_dim: int, action_weight: float):
    """The authors' weights (first action x `action_weight`), zero on the conditioned entries,
    whose reconstruction they overwrite with the truth."""
    w = np.ones((horizon, act_dim + obs_dim), np.float32)
    w[0, :act_dim] = action_weight
    w[np.asarray(condition_mask(horizon, act_dim, obs_dim))] = 0.0
    return jnp.asarray(w)


def goal_state(task, obs_dim: int):
    """The goal as a state: `[gx, gy, 0, 0]` for Maze2D (position, zero velocity)."""
    task = jnp.asarray(task, jnp.float32).reshape(-1)
    return jnp.zeros((obs_dim,), jnp.float32).at[:task.shape[0]].set(task)


def make_planner(config: Config, act_dim: int, obs_dim: int):
    """`plan(state, obs, goal_obs, key) -> Plan`: one trajectory from `obs` to `goal_obs` (env
    units) by the EMA model, start and goal inpainted."""
    spec, h = config.diffusion, config.horizon
    net, sample = make_denoiser(spec), make_sampler(spec)
    mask = condition_mask(h, act_dim, obs_dim)

    def plan(state: State, obs, goal_obs, key):
        values = jnp.zeros((h, act_dim + obs_dim), jnp.float32)
        values = values.at[0, act_dim:].set(state.norm.obs(obs))
        values = values.at[h - 1, act_dim:].set(state.norm.obs(goal_obs))
        x = sample(as_denoiser(net, state.ema), key, (1, h, act_dim + obs_dim),
                   inpaint=(mask, values))[0]
        return Plan(state.norm.obs_from(x[:, act_dim:]), state.norm.act_from(x[:, :act_dim]),
                    jnp.zeros((), jnp.int32))

    return plan


def controller(plan: Plan, obs, act_dim: int):
    """The authors' tracking rule for `[position, velocity]` observations."""
    h = plan.obs.shape[0]
    nxt = plan.obs[jnp.minimum(plan.t + 1, h - 1)]
    last = plan.obs[h - 1].at[act_dim:].set(0.0)
    waypoint = jnp.where(plan.t < h - 1, nxt, last)
    return (waypoint[:act_dim] - obs[:act_dim]) + (waypoint[act_dim:] - obs[act_dim:])


def make_policy(config: Config, env_spec):
    act_dim, obs_dim = env_spec.act_dim, env_spec.obs_dim
    plan = make_planner(config, act_dim, obs_dim)
    lo, hi = env_spec.action_low, env_spec.action_high

    def init_carry(state: State, obs, task, key):
        return plan(state, obs, goal_state(task, obs_dim), key)

    def act(state: State, carry: Plan, obs, key):
        del key
        if config.act_with == "controller":
            action = controller(carry, obs, act_dim)
        else:
            h = carry.obs.shape[0]
            action = jnp.where(carry.t < h, carry.action[jnp.minimum(carry.t, h - 1)],
                               -obs[act_dim:])
        return jnp.clip(action, lo, hi), carry._replace(t=carry.t + 1)

    return Policy(init_carry, act)


def _check_env(config: Config, env):
    if env.tasks is None:
        raise ConfigError(f"Diffuser plans to a goal and {env.env_id} has none; it runs on "
                          "Maze2D (value-guided locomotion planning is not built yet)")
    if config.act_with == "controller" and env.obs_dim != 2 * env.act_dim:
        raise ConfigError(f"act_with=controller tracks [position, velocity] observations; "
                          f"{env.env_id} has obs {env.obs_dim}, actions {env.act_dim}: use "
                          "act_with=actions")


def prepare_windows(config: Config, data, env):
    """`(Windows of normalised [actions, observations], Limits)` from a dataset's episodes,
    cut where the agent leaves the env's goal."""
    if not hasattr(data, "raw_episodes"):
        raise ConfigError("Diffuser trains on whole episodes: hand it a dataset, not "
                          "transition arrays")
    tr, _, _ = env_arrays(data, env)
    from envs.datasets import pad_episodes

    goal = np.asarray(env.default_task(), np.float64)
    paths = split_where_goal_is_left(data.raw_episodes, goal, GOAL_RADIUS)
    norm = Limits(*_limits(tr["obs"].min(0), tr["obs"].max(0)),
                  *_limits(tr["action"].min(0), tr["action"].max(0)))
    eps = pad_episodes(paths)
    eps["observations"] = np.asarray(norm.obs(eps["observations"]))
    eps["actions"] = np.asarray(norm.act(eps["actions"]))
    return Windows.create(eps, config.horizon, pad=False), norm


def make_train(config: Config, data, env):
    _check_env(config, env)
    windows, norm = prepare_windows(config, data, env)
    if windows.size < config.batch_size:
        raise ConfigError(f"{windows.size} windows of {config.horizon} steps, fewer than "
                          f"batch_size={config.batch_size}")
    act_dim, obs_dim, h = env.act_dim, env.obs_dim, config.horizon
    net = make_denoiser(config.diffusion)
    loss_fn = make_loss(config.diffusion)
    mask = condition_mask(h, act_dim, obs_dim)
    weights = loss_weights(h, act_dim, obs_dim, config.action_weight)
    tx = adam(config.lr)

    def init(key):
        params = net.init(key, jnp.zeros((1, h, act_dim + obs_dim)), jnp.zeros((1,), jnp.int32))
        return State(params, params, tx.init(params), norm, jnp.zeros((), jnp.int32))

    def loss(params, key, x0):
        return loss_fn(as_denoiser(net, params), key, x0, weights=weights, inpaint=(mask, x0))

    def update(s: State, key):
        k_batch, k_loss = jax.random.split(key)
        b = windows.sample(k_batch, config.batch_size)
        x0 = jnp.concatenate([b["action"], b["obs"]], axis=-1)
        params, opt, value, _ = gradient_step(loss, tx, s.params, s.opt, k_loss, x0)
        # the authors' Trainer: every `ema_every` steps (counted before this one), a copy of
        # the model before `ema_start`, an average after
        due = s.step % config.ema_every == 0
        averaged = optax.incremental_update(params, s.ema, 1.0 - config.ema_decay)
        target = jax.tree_util.tree_map(
            lambda p, a: jnp.where(s.step < config.ema_start, p, a), params, averaged)
        ema = jax.tree_util.tree_map(lambda t, e: jnp.where(due, t, e), target, s.ema)
        s = s.replace(params=params, ema=ema, opt=opt, step=s.step + 1)
        return s, {"diffusion_loss": value}

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
