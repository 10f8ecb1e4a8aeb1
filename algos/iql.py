"""IQL (Kostrikov et al. 2022): expectile regression of V on the target twin-Q, a TD target
through V (no out-of-dataset actions), and advantage-weighted regression of a Gaussian policy,
`exp(beta (Q - V))` clipped at 100. Defaults are the paper's locomotion settings
(`ikostrikov/implicit_q_learning`, `configs/mujoco_config.py`, `train_offline.py`): 2x256
ReLU networks, rates 3e-4 with the actor's cosine decay, expectile 0.7, beta 3.

Rewards (`reward_scale`): the reference rescales locomotion rewards by
`1000 / (max - min episode return)` and shifts antmaze rewards by -1. We apply the
locomotion rule with this env's episode length in place of 1000 on every env
(`reward_scale="iql"`, the default), also the non-locomotion ones (Pendulum, MountainCar,
Maze2D, the bandit), where the reference has no rule; `reward_scale=none` turns it off.

The critic half (`IQLCritic`) is shared with IDQL."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.config import BaseConfig
from algos.data import Normalizer, prepare
from algos.loop import adam, gradient_step, make_offline_train, soft_update, stateless
from algos.nets import Critic, GaussianPolicy, ValueNet, gaussian_log_prob

LABEL = "IQL"
ORDER = 30
TINY = {"hidden": "32,32"}


def expectile_loss(diff, expectile: float):
    """IQL's asymmetric L2: |expectile - 1(diff < 0)| * diff^2."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff ** 2


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    reward_scale: str = "iql"
    hidden: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    expectile: float = 0.7
    beta: float = 3.0             # inverse temperature of the advantage weights
    max_weight: float = 100.0
    tau: float = 0.005
    lr_decay: bool = True         # cosine decay of the actor's learning rate (as in IQL)


@flax.struct.dataclass
class CriticState:
    critic: dict
    critic_target: dict
    value: dict
    critic_opt: optax.OptState
    value_opt: optax.OptState


@dataclasses.dataclass(frozen=True)
class IQLCritic:
    """The critic half of IQL: twin Q, target twin Q, and V fitted by expectile regression."""
    hidden: Tuple[int, ...]
    critic_lr: float
    value_lr: float
    expectile: float
    tau: float
    discount: float
    steps: int

    @property
    def q_net(self):
        return Critic(hidden=self.hidden, n=2, activation="relu")

    @property
    def v_net(self):
        return ValueNet(hidden=self.hidden, activation="relu")

    @property
    def q_tx(self):
        return adam(self.critic_lr, self.steps)

    @property
    def v_tx(self):
        return adam(self.value_lr, self.steps)

    def init(self, key, obs, action) -> CriticState:
        kq, kv = jax.random.split(key)
        q = self.q_net.init(kq, obs, action)
        v = self.v_net.init(kv, obs)
        return CriticState(q, q, v, self.q_tx.init(q), self.v_tx.init(v))

    def q_target(self, s: CriticState, obs, action):
        return self.q_net.apply(s.critic_target, obs, action).min(0)

    def value(self, s: CriticState, obs):
        return self.v_net.apply(s.value, obs)

    def update(self, s: CriticState, b):
        target_q = self.q_target(s, b["obs"], b["action"])

        def value_loss(params):
            return expectile_loss(target_q - self.v_net.apply(params, b["obs"]),
                                  self.expectile).mean()

        value, value_opt, v_loss, _ = gradient_step(value_loss, self.v_tx, s.value,
                                                    s.value_opt)
        y = b["reward"] + self.discount * (1.0 - b["terminal"]) * self.v_net.apply(
            value, b["next_obs"])

        def critic_loss(params):
            return ((self.q_net.apply(params, b["obs"], b["action"]) - y) ** 2).mean(1).sum()

        critic, critic_opt, q_loss, _ = gradient_step(critic_loss, self.q_tx, s.critic,
                                                      s.critic_opt)
        new = CriticState(critic, soft_update(s.critic_target, critic, self.tau), value,
                          critic_opt, value_opt)
        return new, {"critic_loss": q_loss, "value_loss": v_loss, "q": target_q.mean()}


def iql_critic(config) -> IQLCritic:
    return IQLCritic(config.hidden, config.critic_lr, config.value_lr, config.expectile,
                     config.tau, config.discount, config.steps)


@flax.struct.dataclass
class State:
    critic: CriticState
    actor: dict
    actor_opt: optax.OptState
    norm: Normalizer


def _actor(config, act_dim):
    return GaussianPolicy(act_dim, hidden=config.hidden, state_dependent_std=False)


def make_policy(config: Config, env_spec):
    actor = _actor(config, env_spec.act_dim)

    def act(state: State, obs, key):
        mean, _ = actor.apply(state.actor, state.norm.obs(obs))
        return state.norm.to_env(jnp.tanh(mean))

    return stateless(act)


def make_train(config: Config, data, env):
    data = prepare(data, env, config)
    critic = iql_critic(config)
    actor = _actor(config, env.act_dim)
    actor_tx = adam(config.actor_lr, config.steps, "cosine" if config.lr_decay else "none")

    def init(key):
        kc, ka = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        return State(critic.init(kc, data.obs[:1], data.action[:1]), a_params,
                     actor_tx.init(a_params), data.norm)

    def actor_loss(params, b, weights):
        # IQL's policy: a Gaussian around tanh(mean), its log-likelihood of the data action.
        mean, log_std = actor.apply(params, b["obs"])
        return -(weights * gaussian_log_prob(jnp.tanh(mean), log_std, b["action"])).mean()

    def update(s: State, key):
        b = data.sample(key, config.batch_size)
        crit, metrics = critic.update(s.critic, b)
        adv = critic.q_target(crit, b["obs"], b["action"]) - critic.value(crit, b["obs"])
        weights = jnp.minimum(jnp.exp(config.beta * adv), config.max_weight)
        params, actor_opt, a_loss, _ = gradient_step(actor_loss, actor_tx, s.actor,
                                                     s.actor_opt, b, weights)
        metrics["actor_loss"] = a_loss
        return s.replace(critic=crit, actor=params, actor_opt=actor_opt), metrics

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
