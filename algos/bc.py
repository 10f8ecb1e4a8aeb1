"""Behaviour cloning with a tanh-squashed Gaussian policy: maximise the dataset actions'
log-likelihood. The Gaussian baseline of the expressiveness claim (survey Sec. 3)."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax.numpy as jnp
import optax

from algos.config import BaseConfig
from algos.data import Normalizer, prepare
from algos.loop import adam, gradient_step, make_offline_train, stateless
from algos.nets import GaussianPolicy, tanh_gaussian_log_prob, tanh_gaussian_sample

LABEL = "BC"
ORDER = 10
TINY = {"hidden": "32,32"}
ACTING = ("eval_sample",)   # a sample of the policy instead of tanh(mean)


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


def make_policy(config: Config, env_spec):
    net = _net(config, env_spec.act_dim)

    def act(state: State, obs, key):
        mean, log_std = net.apply(state.params, state.norm.obs(obs))
        a = tanh_gaussian_sample(key, mean, log_std)[0] if config.eval_sample else jnp.tanh(mean)
        return state.norm.to_env(a)

    return stateless(act)


def make_train(config: Config, data, env):
    data = prepare(data, env, config)
    net = _net(config, env.act_dim)
    tx = adam(config.lr)

    def init(key):
        params = net.init(key, data.obs[:1])
        return State(params, tx.init(params), data.norm)

    def loss_fn(params, b):
        mean, log_std = net.apply(params, b["obs"])
        return -tanh_gaussian_log_prob(mean, log_std, b["action"]).mean()

    def update(state: State, key):
        b = data.sample(key, config.batch_size)
        params, opt, loss, _ = gradient_step(loss_fn, tx, state.params, state.opt, b)
        return state.replace(params=params, opt=opt), {"actor_loss": loss}

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
