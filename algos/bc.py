"""Behaviour cloning with a tanh-squashed Gaussian policy: maximise the dataset actions'
log-likelihood. The Gaussian baseline of the expressiveness claim (survey Sec. 3)."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.common import BaseConfig, Normalizer, adam, make_offline_train, prepare
from algos.nets import GaussianPolicy, tanh_gaussian_log_prob, tanh_gaussian_sample


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    hidden: Tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    eval_sample: bool = False     # act with a sample of the policy instead of tanh(mean)


@flax.struct.dataclass
class State:
    params: dict
    opt: optax.OptState
    norm: Normalizer


def _net(config, act_dim):
    return GaussianPolicy(act_dim, hidden=config.hidden)


def make_act(config: Config):
    def act(state: State, obs, key):
        net = _net(config, state.norm.act_mid.shape[-1])
        mean, log_std = net.apply(state.params, state.norm.obs(obs))
        a = tanh_gaussian_sample(key, mean, log_std)[0] if config.eval_sample else jnp.tanh(mean)
        return state.norm.to_env(a)

    return act


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    net = _net(config, env.act_dim)
    tx = adam(config.lr, config.steps)

    def init(key):
        params = net.init(key, data.obs[:1])
        return State(params, tx.init(params), data.norm)

    def update(state: State, key):
        b = data.sample(key, config.batch_size)

        def loss_fn(params):
            mean, log_std = net.apply(params, b["obs"])
            return -tanh_gaussian_log_prob(mean, log_std, b["action"]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        upd, opt = tx.update(grads, state.opt, state.params)
        return state.replace(params=optax.apply_updates(state.params, upd), opt=opt), \
            {"actor_loss": loss}

    return make_offline_train(config, env, init, update, make_act(config))
