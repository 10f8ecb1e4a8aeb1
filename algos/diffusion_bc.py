"""Diffusion-BC: behaviour cloning with a diffusion policy (Diffusion-QL with eta = 0 and no
critic, the paper's BC ablation). Acts with one sample of the reverse chain."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import optax

from algos.common import BaseConfig, Normalizer, adam, make_offline_train, prepare
from algos.diffusion_policy import DiffusionActor


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    hidden: Tuple[int, ...] = (256, 256, 256)
    T: int = 5
    lr: float = 3e-4
    lr_decay: bool = True
    grad_norm: float = 9.0


@flax.struct.dataclass
class State:
    params: dict
    opt: optax.OptState
    norm: Normalizer


def _actor(config, act_dim):
    return DiffusionActor(act_dim, config.hidden, config.T)


def make_act(config: Config):
    def act(state: State, obs, key):
        actor = _actor(config, state.norm.act_mid.shape[-1])
        return state.norm.to_env(actor.sample(state.params, key, state.norm.obs(obs)[None])[0])

    return act


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    actor = _actor(config, env.act_dim)
    tx = adam(config.lr, config.steps, cosine=config.lr_decay, clip=config.grad_norm)

    def init(key):
        params = actor.init(key, data.obs[:1])
        return State(params, tx.init(params), data.norm)

    def update(s: State, key):
        k_batch, k_loss = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        loss, grads = jax.value_and_grad(actor.loss)(s.params, k_loss, b["obs"], b["action"])
        upd, opt = tx.update(grads, s.opt, s.params)
        return s.replace(params=optax.apply_updates(s.params, upd), opt=opt), {"bc_loss": loss}

    return make_offline_train(config, env, init, update, make_act(config))
