"""IDQL (Hansen-Estruch et al. 2023): IQL's critics (expectile V, TD Q through V) beside a
diffusion behaviour policy trained by pure denoising; at decision time N candidates from the
behaviour policy are resampled with critic weights. The default weight is the paper's
expectile one, `|tau - 1(Q < V)| / |Q - V|`; `argmax` and `softmax` over Q are the
alternatives it discusses."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp
import optax

from algos.common import BaseConfig, ConfigError, adam, make_offline_train, prepare
from algos.diffusion_policy import DiffusionActor, select
from algos.iql import State, iql_critic, make_init


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    reward_scale: str = "iql"
    hidden: Tuple[int, ...] = (256, 256)          # critics and value
    actor_hidden: Tuple[int, ...] = (256, 256, 256)
    T: int = 5
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    lr_decay: bool = True                         # cosine decay of the actor's rate
    expectile: float = 0.7
    tau: float = 0.005
    n_candidates: int = 32
    selection: str = "expectile"                  # "expectile", "argmax" or "softmax"

    def check(self):
        if self.selection not in ("expectile", "argmax", "softmax"):
            raise ConfigError("selection must be 'expectile', 'argmax' or 'softmax', "
                              f"got {self.selection!r}")


def _actor(config, act_dim):
    return DiffusionActor(act_dim, config.actor_hidden, config.T)


def make_act(config: Config):
    critic = iql_critic(config)

    def act(state: State, obs, key):
        actor = _actor(config, state.norm.act_mid.shape[-1])
        k_sample, k_pick = jax.random.split(key)
        obs = state.norm.obs(obs)
        n = config.n_candidates
        cands = actor.candidates(state.actor, k_sample, obs, n)
        obs_n = jnp.broadcast_to(obs, (n,) + obs.shape)
        q = critic.q_target(state.critic, obs_n, cands)
        if config.selection == "expectile":
            adv = q - critic.value(state.critic, obs_n)
            w = jnp.where(adv < 0, 1.0 - config.expectile, config.expectile)
            idx = select(k_pick, w / jnp.maximum(jnp.abs(adv), 1e-6), "weights")
        else:
            idx = select(k_pick, q, config.selection)
        return state.norm.to_env(cands[idx])

    return act


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    critic = iql_critic(config)
    actor = _actor(config, env.act_dim)
    actor_tx = adam(config.actor_lr, config.steps, cosine=config.lr_decay)
    init = make_init(critic, actor, actor_tx, data)

    def update(s: State, key):
        k_batch, k_bc = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        crit, metrics = critic.update(s.critic, b)
        bc, grads = jax.value_and_grad(actor.loss)(s.actor, k_bc, b["obs"], b["action"])
        upd, actor_opt = actor_tx.update(grads, s.actor_opt, s.actor)
        metrics["bc_loss"] = bc
        return s.replace(critic=crit, actor=optax.apply_updates(s.actor, upd),
                         actor_opt=actor_opt), metrics

    return make_offline_train(config, env, init, update, make_act(config))
