"""IDQL (Hansen-Estruch et al. 2023): IQL's critics (expectile V, TD Q through V) beside a
diffusion behaviour policy trained by pure denoising; at decision time N candidates from an
EMA copy of the behaviour policy are scored by the critics and one is picked.

Follows `philippe-eecs/IDQL`: `jaxrl5/agents/ddpm_iql_simple/ddpm_iql_learner.py` (the learner
its package exports) and `launcher/examples/train_ddpm_iql_offline.py` (the reported settings):
- critics: IQL's (expectile 0.7, rates 3e-4, 2x256), rewards as in `algos.iql`;
- actor: the `diffusion` sub-config (VP, T=5, DDPM, x0 clipped to [-1, 1]), plain denoising
  loss, rate 3e-4 with cosine decay over the run, EMA copy with rate `actor_tau` = 0.001 per
  step (`optax.incremental_update`, as the learner);
- acting (`selection="argmax"`, the rule behind the reported scores): N = 64 candidates from
  the EMA actor, the argmax of the target critics' min Q.
The weighted resampling rules of the paper's earlier learner (`ddpm_iql/ddpm_iql_learner.py`,
`sample_implicit_policy`) are options: `expectile` draws with weights `|tau - 1(A < 0)|`,
`quantile` with those weights divided by `|A|`, with `A = Q_target - V`; `softmax` draws by
softmax over Q.

Deviations: the actor is Diffusion-QL's 3x256 Mish MLP denoiser (the reference uses an
LN-ResNet of 3 blocks with dropout 0.1; `diffusion.backbone=resmlp` is the closest here); batch
256 (the launcher uses 512); the cosine decay spans this run's steps (the launcher's 3M).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.config import BaseConfig, ConfigError
from algos.data import Normalizer, prepare
from algos.diffusion_policy import DiffusionActor, select
from algos.diffusion_spec import SAMPLING_FIELDS, DiffusionSpec, check_backbone
from algos.iql import CriticState, iql_critic
from algos.loop import adam, gradient_step, make_offline_train, soft_update, stateless

LABEL = "IDQL"
# the critics learn from dataset actions alone: the chain is sampled only to act
ACTING = ("n_candidates", "selection") + SAMPLING_FIELDS
ORDER = 60
TINY = {"hidden": "32,32", "diffusion.width": "32", "diffusion.depth": "2",
        "n_candidates": "4"}
SELECTIONS = ("argmax", "expectile", "quantile", "softmax")


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    reward_scale: str = "iql"
    diffusion: DiffusionSpec = DiffusionSpec()
    hidden: Tuple[int, ...] = (256, 256)          # critics and value
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    lr_decay: bool = True                         # cosine decay of the actor's rate
    actor_tau: float = 0.001                      # EMA rate of the acting copy of the actor
    expectile: float = 0.7
    tau: float = 0.005
    n_candidates: int = 64
    selection: str = "argmax"

    def check(self):
        check_backbone(self.diffusion, sequence=False)
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, "
                              f"got {self.selection!r}")
        if self.n_candidates < 1:
            raise ConfigError(f"n_candidates must be at least 1, got {self.n_candidates}")
        if not (0.0 <= self.actor_tau <= 1.0 and 0.0 < self.expectile < 1.0):
            raise ConfigError("actor_tau must be in [0, 1] and expectile in (0, 1)")


@flax.struct.dataclass
class State:
    critic: CriticState
    actor: dict
    ema: dict
    actor_opt: optax.OptState
    norm: Normalizer


def selection_weights(adv, expectile: float, rule: str):
    """The resampling weight of each candidate from its advantage (before normalising)."""
    w = jnp.where(adv < 0, 1.0 - expectile, expectile)     # |tau - 1(A < 0)|
    if rule == "quantile":
        w = w / jnp.maximum(jnp.abs(adv), 1e-6)
    return w


def make_policy(config: Config, env_spec):
    critic = iql_critic(config)
    actor = DiffusionActor(env_spec.act_dim, config.diffusion)
    n = config.n_candidates

    def act(state: State, obs, key):
        k_sample, k_pick = jax.random.split(key)
        obs = state.norm.obs(obs)
        cands = actor.candidates(state.ema, k_sample, obs, n)
        obs_n = jnp.broadcast_to(obs, (n,) + obs.shape)
        q = critic.q_target(state.critic, obs_n, cands)
        if config.selection in ("expectile", "quantile"):
            adv = q - critic.value(state.critic, obs_n)
            idx = select(k_pick, selection_weights(adv, config.expectile, config.selection),
                         "weights")
        else:
            idx = select(k_pick, q, config.selection)
        return state.norm.to_env(cands[idx])

    return stateless(act)


def make_train(config: Config, data, env):
    data = prepare(data, env, config)
    critic = iql_critic(config)
    actor = DiffusionActor(env.act_dim, config.diffusion)
    actor_tx = adam(config.actor_lr, config.steps, "cosine" if config.lr_decay else "none")

    def init(key):
        kc, ka = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        return State(critic.init(kc, data.obs[:1], data.action[:1]), a_params, a_params,
                     actor_tx.init(a_params), data.norm)

    def update(s: State, key):
        k_batch, k_bc = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        crit, metrics = critic.update(s.critic, b)
        params, actor_opt, bc, _ = gradient_step(actor.loss, actor_tx, s.actor, s.actor_opt,
                                                 k_bc, b["obs"], b["action"])
        metrics["bc_loss"] = bc
        return s.replace(critic=crit, actor=params, actor_opt=actor_opt,
                         ema=soft_update(s.ema, params, config.actor_tau)), metrics

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
