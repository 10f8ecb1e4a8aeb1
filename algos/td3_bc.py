"""TD3+BC (Fujimoto & Gu 2021): TD3 with a behaviour-cloning term in the actor loss,
`-lambda Q(s, pi(s)) + (pi(s) - a)^2` with `lambda = alpha / mean|Q|`, on standardised states.
The deterministic baseline of the expressiveness claim."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.common import BaseConfig, Normalizer, adam, make_offline_train, prepare, soft_update
from algos.nets import Critic, DeterministicPolicy


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    normalize_obs: bool = True
    hidden: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha: float = 2.5
    tau: float = 0.005
    policy_noise: float = 0.2     # target policy smoothing, in [-1, 1] action units
    noise_clip: float = 0.5
    policy_freq: int = 2          # actor and target updates every `policy_freq` critic steps


@flax.struct.dataclass
class State:
    actor: dict
    actor_target: dict
    critic: dict
    critic_target: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    step: jax.Array
    norm: Normalizer


def _nets(config, act_dim):
    return (DeterministicPolicy(act_dim, hidden=config.hidden),
            Critic(hidden=config.hidden, n=2, activation="relu"))


def make_act(config: Config):
    def act(state: State, obs, key):
        actor, _ = _nets(config, state.norm.act_mid.shape[-1])
        return state.norm.to_env(actor.apply(state.actor, state.norm.obs(obs)))

    return act


def make_train(config: Config, dataset, env):
    data = prepare(dataset, env, config)
    actor, critic = _nets(config, env.act_dim)
    actor_tx, critic_tx = adam(config.actor_lr, config.steps), adam(config.critic_lr, config.steps)

    def init(key):
        ka, kc = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        c_params = critic.init(kc, data.obs[:1], data.action[:1])
        return State(a_params, a_params, c_params, c_params, actor_tx.init(a_params),
                     critic_tx.init(c_params), jnp.zeros((), jnp.int32), data.norm)

    def update(s: State, key):
        k_batch, k_noise = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        noise = jnp.clip(config.policy_noise * jax.random.normal(k_noise, b["action"].shape),
                         -config.noise_clip, config.noise_clip)
        next_a = jnp.clip(actor.apply(s.actor_target, b["next_obs"]) + noise, -1.0, 1.0)
        target_q = critic.apply(s.critic_target, b["next_obs"], next_a).min(0)
        y = b["reward"] + config.discount * (1.0 - b["done"]) * target_q

        def critic_loss(params):
            q = critic.apply(params, b["obs"], b["action"])
            return ((q - y) ** 2).mean(1).sum()

        c_loss, c_grads = jax.value_and_grad(critic_loss)(s.critic)
        c_upd, critic_opt = critic_tx.update(c_grads, s.critic_opt, s.critic)
        critic_params = optax.apply_updates(s.critic, c_upd)

        def actor_loss(params):
            pi = actor.apply(params, b["obs"])
            q = critic.apply(critic_params, b["obs"], pi)[0]
            lmbda = config.alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
            return -lmbda * q.mean() + ((pi - b["action"]) ** 2).mean()

        a_loss, a_grads = jax.value_and_grad(actor_loss)(s.actor)
        a_upd, actor_opt_new = actor_tx.update(a_grads, s.actor_opt, s.actor)
        actor_new = optax.apply_updates(s.actor, a_upd)
        # Delayed policy updates: the actor and both targets move every `policy_freq` steps.
        do = (s.step % config.policy_freq) == 0
        pick = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
            lambda n, o: jnp.where(do, n, o), new, old)
        new = s.replace(
            actor=pick(actor_new, s.actor), actor_opt=pick(actor_opt_new, s.actor_opt),
            actor_target=pick(soft_update(s.actor_target, actor_new, config.tau), s.actor_target),
            critic=critic_params, critic_opt=critic_opt,
            critic_target=pick(soft_update(s.critic_target, critic_params, config.tau),
                               s.critic_target),
            step=s.step + 1)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": y.mean()}

    return make_offline_train(config, env, init, update, make_act(config))
