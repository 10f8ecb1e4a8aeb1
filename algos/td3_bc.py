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

from algos.config import BaseConfig
from algos.data import Normalizer, prepare
from algos.loop import adam, gradient_step, make_offline_train, soft_update, stateless
from algos.nets import Critic, DeterministicPolicy

LABEL = "TD3+BC"
ORDER = 20
TINY = {"hidden": "32,32"}


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


def make_policy(config: Config, env_spec):
    actor, _ = _nets(config, env_spec.act_dim)

    def act(state: State, obs, key):
        return state.norm.to_env(actor.apply(state.actor, state.norm.obs(obs)))

    return stateless(act)


def make_train(config: Config, data, env):
    data = prepare(data, env, config)
    actor, critic = _nets(config, env.act_dim)
    actor_tx, critic_tx = adam(config.actor_lr), adam(config.critic_lr)

    def init(key):
        ka, kc = jax.random.split(key)
        a_params = actor.init(ka, data.obs[:1])
        c_params = critic.init(kc, data.obs[:1], data.action[:1])
        return State(a_params, a_params, c_params, c_params, actor_tx.init(a_params),
                     critic_tx.init(c_params), jnp.zeros((), jnp.int32), data.norm)

    def critic_loss(params, b, y):
        return ((critic.apply(params, b["obs"], b["action"]) - y) ** 2).mean(1).sum()

    def actor_loss(params, critic_params, b):
        pi = actor.apply(params, b["obs"])
        q = critic.apply(critic_params, b["obs"], pi)[0]
        lmbda = config.alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
        return -lmbda * q.mean() + ((pi - b["action"]) ** 2).mean()

    def update(s: State, key):
        k_batch, k_noise = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        noise = jnp.clip(config.policy_noise * jax.random.normal(k_noise, b["action"].shape),
                         -config.noise_clip, config.noise_clip)
        next_a = jnp.clip(actor.apply(s.actor_target, b["next_obs"]) + noise, -1.0, 1.0)
        target_q = critic.apply(s.critic_target, b["next_obs"], next_a).min(0)
        y = b["reward"] + config.discount * (1.0 - b["terminal"]) * target_q
        critic_params, critic_opt, c_loss, _ = gradient_step(critic_loss, critic_tx, s.critic,
                                                             s.critic_opt, b, y)
        actor_new, actor_opt_new, a_loss, _ = gradient_step(actor_loss, actor_tx, s.actor,
                                                            s.actor_opt, critic_params, b)
        # Delayed policy updates: the actor and both targets move every `policy_freq` steps.
        do = (s.step % config.policy_freq) == 0
        pick = lambda new, old: optax.tree_utils.tree_where(do, new, old)  # noqa: E731
        new = s.replace(
            actor=pick(actor_new, s.actor), actor_opt=pick(actor_opt_new, s.actor_opt),
            actor_target=pick(soft_update(s.actor_target, actor_new, config.tau), s.actor_target),
            critic=critic_params, critic_opt=critic_opt,
            critic_target=pick(soft_update(s.critic_target, critic_params, config.tau),
                               s.critic_target),
            step=s.step + 1)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": y.mean()}

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
