"""IQL (Kostrikov et al. 2022): expectile regression of V on the target twin-Q, a TD target
through V (no out-of-dataset actions), and advantage-weighted regression of a Gaussian policy,
`exp(beta (Q - V))` clipped at 100. Defaults are the paper's locomotion settings.

The critic half (`IQLCritic`) is shared with IDQL."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.common import (BaseConfig, Normalizer, adam, expectile_loss, make_offline_train,
                          prepare, soft_update)
from algos.nets import Critic, GaussianPolicy, ValueNet, gaussian_log_prob


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
    cosine_lr: bool = True        # cosine decay of the actor's learning rate (as in IQL)


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

        v_loss, v_grads = jax.value_and_grad(value_loss)(s.value)
        v_upd, value_opt = self.v_tx.update(v_grads, s.value_opt, s.value)
        value = optax.apply_updates(s.value, v_upd)
        y = b["reward"] + self.discount * (1.0 - b["done"]) * self.v_net.apply(value,
                                                                              b["next_obs"])

        def critic_loss(params):
            return ((self.q_net.apply(params, b["obs"], b["action"]) - y) ** 2).mean(1).sum()

        q_loss, q_grads = jax.value_and_grad(critic_loss)(s.critic)
        q_upd, critic_opt = self.q_tx.update(q_grads, s.critic_opt, s.critic)
        critic = optax.apply_updates(s.critic, q_upd)
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


def make_act(config: Config):
    def act(state: State, obs, key):
        mean, _ = _actor(config, state.norm.act_mid.shape[-1]).apply(state.actor,
                                                                      state.norm.obs(obs))
        return state.norm.to_env(jnp.tanh(mean))

    return act


def make_init(critic: IQLCritic, actor, actor_tx, data):
    """`init(key) -> State` for an IQL critic beside any actor with `init(key, obs)` (IQL's
    Gaussian, IDQL's diffusion policy)."""
    def init(key):
        kc, ka = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        return State(critic.init(kc, data.obs[:1], data.action[:1]), a_params,
                     actor_tx.init(a_params), data.norm)

    return init


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    critic = iql_critic(config)
    actor = _actor(config, env.act_dim)
    actor_tx = adam(config.actor_lr, config.steps, cosine=config.cosine_lr)
    init = make_init(critic, actor, actor_tx, data)

    def update(s: State, key):
        b = data.sample(key, config.batch_size)
        crit, metrics = critic.update(s.critic, b)
        adv = critic.q_target(crit, b["obs"], b["action"]) - critic.value(crit, b["obs"])
        weights = jnp.minimum(jnp.exp(config.beta * adv), config.max_weight)

        def actor_loss(params):
            # IQL's policy: a Gaussian around tanh(mean), its log-likelihood of the data action.
            mean, log_std = actor.apply(params, b["obs"])
            return -(weights * gaussian_log_prob(jnp.tanh(mean), log_std, b["action"])).mean()

        a_loss, a_grads = jax.value_and_grad(actor_loss)(s.actor)
        a_upd, actor_opt = actor_tx.update(a_grads, s.actor_opt, s.actor)
        metrics["actor_loss"] = a_loss
        return s.replace(critic=crit, actor=optax.apply_updates(s.actor, a_upd),
                         actor_opt=actor_opt), metrics

    return make_offline_train(config, env, init, update, make_act(config))
