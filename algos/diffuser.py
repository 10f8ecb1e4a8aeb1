"""Diffuser (Janner et al. 2022, "Planning with Diffusion for Flexible Behavior Synthesis"): a
diffusion model of whole state-action trajectories, in both of the paper's settings. The env
decides which: one with a goal (Maze2D) plans to it by inpainting and tracks the plan with a
controller; one without (locomotion) plans from every state with value guidance.

Maze2D setting, followed: the authors' `maze2d` branch of jannerm/diffuser (13b4d40):
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
policy reads the goal from the env's task (`Env.task`), so `make_evaluate(...,
sample_tasks=True)` runs it (`python -m bench evaluate ... --tasks sampled` on a trained cell),
scored, as the paper scores Multi2D, against the single-task references.

Locomotion setting, followed: the authors' `main` branch (7ea4228):
- `config/locomotion.py` (`task_defaults` gives it for every dataset of an env without a
  goal): horizon 32, T=20, x0-prediction, no x0 clipping, first-action loss weight 10, U-Net
  dim 32 mults (1, 2, 4, 8), GaussianNormalizer, use_padding, lr 2e-4, batch 32 x 2, EMA 0.995,
  1e6 steps; value function of the same size and horizon, its target discounted by 0.997 (the
  `plan` config loads `values/defaults_H32_T20_d0.997`), termination penalty -100; planning
  with 64 plans, guide scale 0.1, 2 guide steps, t_stopgrad 2, gradients scaled by the
  posterior variance. The per-dataset overrides: hopper medium-expert (scale 1e-4,
  t_stopgrad 4); halfcheetah medium / medium-replay / medium-expert (horizon 4, mults (1, 4,
  8), linear attention in the U-Net, the value function at the same horizon and mults, scale
  1e-3, t_stopgrad 4), applied to our halfcheetah datasets of the same levels.
- `diffuser/datasets/sequence.py` (`SequenceDataset`, `ValueDataset`): windows start at every
  step of an episode and are padded with zeros past its end (`use_padding`), none reaching
  past step 999 (`max_path_length` 1000: a 1000-step time-limited episode is never padded);
  the value target is the discounted sum of rewards from the window's start to the episode's
  end, the penalty added to a terminal step's reward (`buffer.py`).
- `diffuser/models/temporal.py` (`ValueFunction`, here `nets.TemporalValue`) and
  `diffuser/models/diffusion.py` (`ValueDiffusion.p_losses`): the value of a noised window with
  its start inpainted, L2 to the target.
- `diffuser/sampling/functions.py` (`n_step_guided_p_sample`), `sampling/policies.py`
  (`GuidedPolicy`): `make_guided_planner`; the plans sorted by value, the first action of the
  best executed, a new plan at every env step.

Deviations:
- the value function trains beside the diffusion model, one step of each per gradient step
  with the same windows, for `steps` steps; the authors train it alone for 2e5 steps.
- plans are ranked by the value of the last denoising step's input at t=0, which is the value
  the authors' sampler returns whenever t_stopgrad >= 1 (their default 2).
- a dimension with zero spread is divided by 1e-6 (GaussianNormalizer divides by zero).
- batch 64 in one step instead of 32 twice with gradients accumulated: the same mean gradient.
- the last window start of every path (Maze2D) or episode (locomotion) is kept (the
  authors' `range(max_start)` drops it).
- a dimension that is constant over the dataset is mapped with a range of 1e-6 (the authors'
  normaliser divides by zero there).
- Flax's default initialisers (see `nets.TemporalUnet`).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algos import diffusion as D
from algos.config import BaseConfig, ConfigError
from algos.data import Windows, env_arrays, split_where_goal_is_left
from algos.diffusion_spec import DiffusionSpec, check_backbone, make_denoiser, make_loss, \
    make_sampler
from algos.diffusion_spec import SAMPLING_FIELDS
from algos.loop import Policy, adam, gradient_step, make_offline_train
from algos.nets import TemporalValue, as_denoiser

LABEL = "Diffuser"
# the value function is trained whatever the guide scale
ACTING = ("n_plans", "guide_scale", "n_guide_steps", "t_stopgrad", "act_with") + SAMPLING_FIELDS
ORDER = 70
KIND = "planner"
TINY = {"horizon": "8", "diffusion.T": "4", "diffusion.width": "8", "diffusion.mults": "1,2"}
ACT_WITH = ("controller", "actions")
NORMALIZERS = ("limits", "gaussian")
GOAL_RADIUS = 0.5   # maze2d_set_terminals' threshold (D4RL's goal reward radius)
MAX_PATH_LENGTH = 1000  # locomotion windows never reach past this step (`max_path_length`)

# The authors' maze2d config: (horizon, T) per layout; medium keeps the base (256, 256).
MAZE = {"umaze": (128, 64), "medium": (256, 256), "large": (384, 256)}

# The authors' locomotion config (main branch, `config/locomotion.py`), for every dataset of an
# env without a goal: horizon 32, T=20, mults (1, 2, 4, 8), first-action weight 10, no x0
# clipping, GaussianNormalizer, 1e6 steps; the plan executes the best plan's first action.
LOCOMOTION = {"horizon": "32", "diffusion.T": "20", "diffusion.mults": "1,2,4,8",
              "diffusion.clip_x0": "0", "action_weight": "10", "normalizer": "gaussian",
              "act_with": "actions", "steps": "1000000"}
# ... and its per-dataset overrides (`hopper_medium_expert_v2`; `halfcheetah_medium_v2`,
# `_medium_replay_v2` and `_medium_expert_v2`: horizon 4, mults (1, 4, 8) and attention for the
# diffusion model, the same horizon and mults for the value, scale 1e-3 and t_stopgrad 4).
HALFCHEETAH = {"horizon": "4", "diffusion.mults": "1,4,8", "diffusion.attention": "true",
               "guide_scale": "0.001", "t_stopgrad": "4"}
LOCOMOTION_BY_DATASET = {"hopper/medium-expert": {"guide_scale": "0.0001", "t_stopgrad": "4"},
                         **{f"halfcheetah/{level}": HALFCHEETAH
                            for level in ("medium", "medium-replay", "medium-expert")}}


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
    normalizer: str = "limits"      # limits (maze2d branch) | gaussian (main branch)
    # Locomotion (an env without a goal): the value function and value-guided planning.
    discount: float = 0.997         # of the released value functions (`plan` config)
    termination_penalty: float = -100.0   # added to the reward of a terminal step
    n_plans: int = 64               # plans sampled per decision (`plan` batch_size)
    guide_scale: float = 0.1
    n_guide_steps: int = 2
    t_stopgrad: int = 2             # no guidance at diffusion steps t < t_stopgrad

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
        check_horizon_and_ema(self)
        if self.normalizer not in NORMALIZERS:
            raise ConfigError(f"normalizer must be one of {', '.join(NORMALIZERS)}, "
                              f"got {self.normalizer!r}")
        if not 0 < self.discount <= 1 or self.n_plans < 1 or self.n_guide_steps < 0 \
                or self.t_stopgrad < 0:
            raise ConfigError("0 < discount <= 1, n_plans >= 1, n_guide_steps >= 0 and "
                              "t_stopgrad >= 0")
        if self.normalize_obs or self.reward_scale != "none":
            raise ConfigError("Diffuser normalises every dimension itself (normalizer="
                              "limits or gaussian); normalize_obs and reward_scale do not "
                              "apply")


def check_horizon_and_ema(config):
    """The checks every trajectory planner with the authors' Trainer shares: a horizon the
    U-Net can halve at each level, and the EMA schedule."""
    factor = 2 ** (len(config.diffusion.mults) - 1)
    if config.diffusion.backbone == "unet" and config.horizon % factor:
        raise ConfigError(f"horizon={config.horizon} must be a multiple of {factor} for the "
                          f"U-Net with mults {config.diffusion.mults}")
    if config.ema_every < 1 or not 0 <= config.ema_decay <= 1 or config.ema_start < 0:
        raise ConfigError("ema_every >= 1, 0 <= ema_decay <= 1 and ema_start >= 0")


def task_defaults(dataset_id: str) -> dict:
    """The authors' settings for a dataset: horizon and T for a Maze2D layout
    (`jaxrl/maze2d/<layout>-v0`; the Config's defaults are the rest of their maze2d config),
    their locomotion config for any other env, with their per-dataset overrides where the env
    and level match exactly (a subset or a SynthER-derived id, `medium-5pct`, gets the
    env's plain locomotion config, as it would with the authors' name lookup)."""
    parts = dataset_id.split("/")   # jaxrl/<env>/<level>-vN, jaxrl/mujoco/<env>/<level>-vN,
    name = "/".join(parts[-2:]).rsplit("-v", 1)[0] if len(parts) >= 3 else ""  # mujoco/<env>/..
    if name.startswith("maze2d/"):
        layout = name.split("/")[1]
        if layout in MAZE:
            horizon, T = MAZE[layout]
            return {"horizon": horizon, "diffusion.T": T}
        return {}
    return {**LOCOMOTION, **LOCOMOTION_BY_DATASET.get(name, {})}


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
class Gaussian:
    """The authors' GaussianNormalizer (locomotion): every dimension standardised by its mean
    and standard deviation over the dataset, not clipped when unnormalised."""
    obs_mean: jax.Array
    obs_std: jax.Array
    act_mean: jax.Array
    act_std: jax.Array

    def obs(self, x):
        return (x - self.obs_mean) / self.obs_std

    def act(self, x):
        return (x - self.act_mean) / self.act_std

    def obs_from(self, x):
        return x * self.obs_std + self.obs_mean

    def act_from(self, x):
        return x * self.act_std + self.act_mean


@flax.struct.dataclass
class State:
    params: dict
    ema: dict            # the model that plans
    opt: optax.OptState
    norm: Limits | Gaussian
    step: jax.Array      # gradient steps taken (the EMA schedule)
    value: dict | None = None        # locomotion: the value function, its EMA (which guides)
    value_ema: dict | None = None
    value_opt: optax.OptState | None = None


class Plan(NamedTuple):
    obs: jax.Array       # (H, obs_dim) planned states, env units
    action: jax.Array    # (H, act_dim) planned actions, env units
    t: jax.Array         # env steps since the plan was made


def _limits(lo, hi):
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    return jnp.asarray(lo), jnp.asarray(np.where(hi - lo > 0, hi, lo + 1e-6))


def condition_mask(horizon: int, act_dim: int, obs_dim: int, goal: bool = True):
    """`(H, act_dim + obs_dim)` bool: the first observation (the start), and with `goal` the
    last one (Maze2D's goal)."""
    mask = np.zeros((horizon, act_dim + obs_dim), bool)
    mask[[0, horizon - 1] if goal else [0], act_dim:] = True
    return jnp.asarray(mask)


def loss_weights(horizon: int, act_dim: int, obs_dim: int, action_weight: float,
                 goal: bool = True):
    """The authors' weights (first action x `action_weight`), zero on the conditioned entries,
    whose reconstruction they overwrite with the truth."""
    w = np.ones((horizon, act_dim + obs_dim), np.float32)
    w[0, :act_dim] = action_weight
    w[np.asarray(condition_mask(horizon, act_dim, obs_dim, goal))] = 0.0
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


class Plans(NamedTuple):
    """Guided plans from one state, best first."""
    obs: jax.Array       # (n_plans, H, obs_dim), env units
    action: jax.Array    # (n_plans, H, act_dim), env units
    value: jax.Array     # (n_plans,) the value function's estimate, descending


def value_net(config: Config):
    return TemporalValue(dim=config.diffusion.width, dim_mults=config.diffusion.mults)


def make_guided_planner(config: Config, act_dim: int, obs_dim: int, value_fn=None):
    """`plan(state, obs, key) -> Plans`: the authors' guided sampling (`n_step_guided_p_sample`
    in `diffuser/sampling/functions.py`, `GuidedPolicy` in `diffuser/sampling/policies.py`).
    `n_plans` trajectories from `obs` (inpainted at step 0) by the EMA model; before every
    denoising step `n_guide_steps` times `x += guide_scale * var_t * grad V(x, t)` (no
    guidance below `t_stopgrad`); plans sorted by the value of the last denoising step's input,
    as the authors sort by the value their sampler returns. `value_fn(state, x, t) -> (n,)`
    replaces the trained value function (tests use closed forms). `scale` (may be traced: one
    compile for every scale) replaces the config's `guide_scale`."""
    spec, h, n = config.diffusion, config.horizon, config.n_plans
    net, sample, vnet = make_denoiser(spec), make_sampler(spec), value_net(config)
    mask = condition_mask(h, act_dim, obs_dim, goal=False)
    if value_fn is None:
        value_fn = lambda state, x, t: vnet.apply(state.value_ema, x, t)  # noqa: E731

    def plan(state: State, obs, key, scale=None):
        values = jnp.zeros((h, act_dim + obs_dim), jnp.float32)
        values = values.at[0, act_dim:].set(state.norm.obs(obs))
        scale = config.guide_scale if scale is None else scale
        guide = D.ValueGuide(lambda x, t, c: value_fn(state, x, t), scale=scale,
                             n_guide_steps=config.n_guide_steps, t_stopgrad=config.t_stopgrad)
        _, chain = sample(as_denoiser(net, state.ema), key, (n, h, act_dim + obs_dim),
                          inpaint=(mask, values), guide=guide, return_chain=True)
        v = value_fn(state, chain[-2], jnp.zeros((n,), jnp.int32))
        order = jnp.argsort(-v)
        x = chain[-1][order]
        return Plans(state.norm.obs_from(x[..., act_dim:]),
                     state.norm.act_from(x[..., :act_dim]), v[order])

    return plan


def controller(plan: Plan, obs, act_dim: int):
    """The authors' tracking rule for `[position, velocity]` observations."""
    h = plan.obs.shape[0]
    nxt = plan.obs[jnp.minimum(plan.t + 1, h - 1)]
    last = plan.obs[h - 1].at[act_dim:].set(0.0)
    waypoint = jnp.where(plan.t < h - 1, nxt, last)
    return (waypoint[:act_dim] - obs[:act_dim]) + (waypoint[act_dim:] - obs[act_dim:])


def make_policy(config: Config, env_spec, goal: bool = True):
    """Maze2D (`goal`): one plan per episode to the env's goal, tracked. Locomotion: a guided
    plan from every state, the best plan's first action executed (the carry counts steps)."""
    act_dim, obs_dim = env_spec.act_dim, env_spec.obs_dim
    lo, hi = env_spec.action_low, env_spec.action_high
    if not goal:
        guided = make_guided_planner(config, act_dim, obs_dim)

        def act_guided(state: State, carry, obs, key):
            return jnp.clip(guided(state, obs, key).action[0, 0], lo, hi), carry + 1

        return Policy(lambda state, obs, task, key: jnp.zeros((), jnp.int32), act_guided)
    plan = make_planner(config, act_dim, obs_dim)

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
    """Checks against the env; returns whether it has a goal (the Maze2D setting)."""
    if env.spec.episode_length < 2:
        raise ConfigError(f"{env.env_id} has one-step episodes: there is no trajectory to "
                          "plan; use a policy (bc, diffusion_bc, ...)")
    if env.tasks is None:
        if config.act_with != "actions":
            raise ConfigError(f"{env.env_id} has no goal: Diffuser executes the first action "
                              "of its best value-guided plan there; set act_with=actions")
        if config.diffusion.sampler != "ddpm":
            raise ConfigError("value-guided planning (an env without a goal) runs the "
                              "authors' ddpm sampler; set diffusion.sampler=ddpm")
        top = config.diffusion.width * config.diffusion.mults[-1]
        if top % 32:
            raise ConfigError(f"the value function narrows the U-Net's deepest width "
                              f"(diffusion.width x mults[-1] = {top}) to a half and a quarter, "
                              "each in 8 norm groups: make it a multiple of 32")
        return False
    if config.act_with == "controller" and env.obs_dim != 2 * env.act_dim:
        raise ConfigError(f"act_with=controller tracks [position, velocity] observations; "
                          f"{env.env_id} has obs {env.obs_dim}, actions {env.act_dim}: use "
                          "act_with=actions")
    return True


def _normalizer(config: Config, obs, action):
    if config.normalizer == "limits":
        return Limits(*_limits(obs.min(0), obs.max(0)), *_limits(action.min(0), action.max(0)))
    std = lambda x: np.maximum(x.std(0), 1e-6).astype(np.float32)  # noqa: E731
    return Gaussian(jnp.asarray(obs.mean(0)), jnp.asarray(std(obs)),
                    jnp.asarray(action.mean(0)), jnp.asarray(std(action)))


def prepare_windows(config: Config, data, env, goal: bool = True):
    """`(Windows of normalised observations and actions, normaliser)` from a dataset's
    episodes. Maze2D (`goal`): windows inside paths cut where the agent leaves the env's goal.
    Locomotion: windows from every step of an episode, padded with zeros (in env units, then
    normalised, as the authors' `use_padding`) past its end, their value target the discounted
    return to the episode's end with `termination_penalty` at a terminal step."""
    if not hasattr(data, "raw_episodes"):
        raise ConfigError("Diffuser trains on whole episodes: hand it a dataset, not "
                          "transition arrays")
    tr, _, _ = env_arrays(data, env)
    from envs.datasets import pad_episodes

    norm = _normalizer(config, tr["obs"], tr["action"])
    if not goal:
        w = Windows.create(data.episodes, config.horizon, discount=config.discount,
                           termination_penalty=config.termination_penalty, pad=True,
                           max_length=MAX_PATH_LENGTH)
        return w.replace(obs=norm.obs(w.obs), action=norm.act(w.action)), norm
    goal_pos = np.asarray(env.default_task(), np.float64)
    paths = split_where_goal_is_left(data.raw_episodes, goal_pos, GOAL_RADIUS)
    eps = pad_episodes(paths)
    eps["observations"] = np.asarray(norm.obs(eps["observations"]))
    eps["actions"] = np.asarray(norm.act(eps["actions"]))
    return Windows.create(eps, config.horizon, pad=False), norm


def ema_update(config, step, params, ema):
    """The authors' `Trainer.step_ema`: every `ema_every` steps (counted before this one), a
    copy of the model before `ema_start`, an average with `ema_decay` after."""
    due = step % config.ema_every == 0
    averaged = optax.incremental_update(params, ema, 1.0 - config.ema_decay)
    target = jax.tree_util.tree_map(
        lambda p, a: jnp.where(step < config.ema_start, p, a), params, averaged)
    return jax.tree_util.tree_map(lambda t, e: jnp.where(due, t, e), target, ema)


def make_train(config: Config, data, env):
    goal = _check_env(config, env)
    windows, norm = prepare_windows(config, data, env, goal)
    if windows.size < config.batch_size:
        raise ConfigError(f"{windows.size} windows of {config.horizon} steps, fewer than "
                          f"batch_size={config.batch_size}")
    act_dim, obs_dim, h = env.act_dim, env.obs_dim, config.horizon
    spec = config.diffusion
    net, vnet = make_denoiser(spec), value_net(config)
    loss_fn = make_loss(spec)
    mask = condition_mask(h, act_dim, obs_dim, goal)
    weights = loss_weights(h, act_dim, obs_dim, config.action_weight, goal)
    tx = adam(config.lr)
    x_init, t_init = jnp.zeros((1, h, act_dim + obs_dim)), jnp.zeros((1,), jnp.int32)

    def init(key):
        params = net.init(key, x_init, t_init)
        s = State(params, params, tx.init(params), norm, jnp.zeros((), jnp.int32))
        if goal:
            return s
        value = vnet.init(jax.random.fold_in(key, 1), x_init, t_init)
        return s.replace(value=value, value_ema=value, value_opt=tx.init(value))

    def loss(params, key, x0):
        return loss_fn(as_denoiser(net, params), key, x0, weights=weights, inpaint=(mask, x0))

    def value_loss(params, key, x0, target):
        # the authors' ValueDiffusion.p_losses: the value of a noised window, start inpainted
        k_t, k_eps = jax.random.split(key)
        t = jax.random.randint(k_t, (x0.shape[0],), 0, spec.T)
        x_t = D.q_sample(spec.sched, x0, t, jax.random.normal(k_eps, x0.shape))
        x_t = D.apply_inpainting(x_t, (mask, x0))
        return jnp.mean((vnet.apply(params, x_t, t) - target) ** 2)

    def update(s: State, key):
        if goal:
            k_batch, k_loss = jax.random.split(key)
        else:
            k_batch, k_loss, k_value = jax.random.split(key, 3)
        b = windows.sample(k_batch, config.batch_size)
        x0 = jnp.concatenate([b["action"], b["obs"]], axis=-1)
        params, opt, value, _ = gradient_step(loss, tx, s.params, s.opt, k_loss, x0)
        metrics = {"diffusion_loss": value}
        s = s.replace(params=params, ema=ema_update(config, s.step, params, s.ema), opt=opt)
        if not goal:
            vparams, vopt, vloss, _ = gradient_step(value_loss, tx, s.value, s.value_opt,
                                                    k_value, x0, b["value"])
            s = s.replace(value=vparams,
                          value_ema=ema_update(config, s.step, vparams, s.value_ema),
                          value_opt=vopt)
            metrics["value_loss"] = vloss
        return s.replace(step=s.step + 1), metrics

    return make_offline_train(config, env, init, update, make_policy(config, env.spec, goal))
