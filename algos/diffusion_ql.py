"""Diffusion-QL (Wang, Hunt & Zhou 2023): a diffusion policy trained with the denoising loss
plus `eta` times a Q-maximisation term through the sampled action, twin critics trained on
actions from an EMA copy of the actor, and action selection among N sampled candidates.

Defaults follow the paper's hopper/walker/halfcheetah settings (T=5 VP schedule, 3x256 Mish,
lr 3e-4 with cosine decay, eta 1, gradient-norm clip 9, EMA 0.995 every 5 steps from step 1000,
50 candidates picked by softmax over Q). `action_approx=True` is EDP's one-step action
approximation (Kang et al. 2023) for the Q term: no backpropagation through the chain.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.common import (BaseConfig, ConfigError, Normalizer, adam, make_offline_train,
                          prepare, soft_update)
from algos.diffusion_policy import DiffusionActor, select
from algos.nets import Critic


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    hidden: Tuple[int, ...] = (256, 256, 256)
    T: int = 5
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    lr_decay: bool = True
    eta: float = 1.0              # weight of the Q term (per task in the paper)
    grad_norm: float = 9.0        # global-norm clip of actor and critic gradients; 0: off
    tau: float = 0.005
    max_q_backup: bool = False    # target: max over `n_backup` sampled next actions
    n_backup: int = 10
    ema_decay: float = 0.995
    ema_every: int = 5
    ema_start: int = 1000
    n_candidates: int = 50
    selection: str = "softmax"    # "softmax" over Q, or "argmax"
    action_approx: bool = False   # EDP: one-step action approximation in the Q term

    def check(self):
        if self.selection not in ("softmax", "argmax"):
            raise ConfigError(f"selection must be 'softmax' or 'argmax', got {self.selection!r}")


@flax.struct.dataclass
class State:
    actor: dict
    ema: dict
    critic: dict
    critic_target: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    step: jax.Array
    norm: Normalizer


def _nets(config, act_dim):
    return DiffusionActor(act_dim, config.hidden, config.T), Critic(hidden=config.hidden, n=2)


def make_act(config: Config):
    def act(state: State, obs, key):
        actor, critic = _nets(config, state.norm.act_mid.shape[-1])
        k_sample, k_pick = jax.random.split(key)
        obs = state.norm.obs(obs)
        cands = actor.candidates(state.actor, k_sample, obs, config.n_candidates)
        q = critic.apply(state.critic_target, jnp.broadcast_to(obs, (config.n_candidates,)
                                                               + obs.shape), cands).min(0)
        return state.norm.to_env(cands[select(k_pick, q, config.selection)])

    return act


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    actor, critic = _nets(config, env.act_dim)
    actor_tx = adam(config.actor_lr, config.steps, cosine=config.lr_decay, clip=config.grad_norm)
    critic_tx = adam(config.critic_lr, config.steps, cosine=config.lr_decay,
                     clip=config.grad_norm)

    def init(key):
        ka, kc = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        c_params = critic.init(kc, data.obs[:1], data.action[:1])
        return State(a_params, a_params, c_params, c_params, actor_tx.init(a_params),
                     critic_tx.init(c_params), jnp.zeros((), jnp.int32), data.norm)

    def target(s: State, key, next_obs):
        if config.max_q_backup:
            n = config.n_backup
            rep = jnp.repeat(next_obs, n, axis=0)
            q = critic.apply(s.critic_target, rep, actor.sample(s.ema, key, rep))
            return q.reshape(2, -1, n).max(-1).min(0)
        return critic.apply(s.critic_target, next_obs, actor.sample(s.ema, key, next_obs)).min(0)

    def update(s: State, key):
        k_batch, k_next, k_bc, k_new, k_head = jax.random.split(key, 5)
        b = data.sample(k_batch, config.batch_size)
        y = b["reward"] + config.discount * (1.0 - b["done"]) * target(s, k_next, b["next_obs"])

        def critic_loss(params):
            return ((critic.apply(params, b["obs"], b["action"]) - y) ** 2).mean(1).sum()

        c_loss, c_grads = jax.value_and_grad(critic_loss)(s.critic)
        c_upd, critic_opt = critic_tx.update(c_grads, s.critic_opt, s.critic)
        critic_params = optax.apply_updates(s.critic, c_upd)
        head = jax.random.bernoulli(k_head).astype(jnp.int32)  # which critic leads, at random

        def actor_loss(params):
            bc = actor.loss(params, k_bc, b["obs"], b["action"])
            new_a = (actor.one_step(params, k_new, b["obs"], b["action"]) if config.action_approx
                     else actor.sample(params, k_new, b["obs"]))
            q = critic.apply(critic_params, b["obs"], new_a)
            q_lead, q_other = q[head], q[1 - head]
            q_loss = -q_lead.mean() / jax.lax.stop_gradient(jnp.abs(q_other).mean())
            return bc + config.eta * q_loss, (bc, q_loss)

        (a_loss, (bc, q_loss)), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(s.actor)
        a_upd, actor_opt = actor_tx.update(a_grads, s.actor_opt, s.actor)
        actor_params = optax.apply_updates(s.actor, a_upd)
        # The EMA actor stays at its initial copy until `ema_start`, then tracks every
        # `ema_every` steps (as in the reference implementation).
        do_ema = (s.step >= config.ema_start) & (s.step % config.ema_every == 0)
        ema = jax.tree_util.tree_map(
            lambda e, p: jnp.where(do_ema, config.ema_decay * e + (1 - config.ema_decay) * p, e),
            s.ema, actor_params)
        new = s.replace(actor=actor_params, ema=ema, critic=critic_params,
                        critic_target=soft_update(s.critic_target, critic_params, config.tau),
                        actor_opt=actor_opt, critic_opt=critic_opt, step=s.step + 1)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "bc_loss": bc,
                     "q_loss": q_loss, "q": y.mean()}

    return make_offline_train(config, env, init, update, make_act(config))
