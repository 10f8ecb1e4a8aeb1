"""SAC (Haarnoja et al. 2018), online: the suite's first algorithm that collects its own data,
and the base of online SynthER. Pure-functional like every algorithm here: one env step and
its `utd` gradient steps are one `update`, so the shared loop (`algos.loop`) scans them,
evaluates every `eval_every` env steps and vmaps seeds; the replay buffer lives in the state.

Follows the code SynthER's online experiments run on, REDQ's `REDQSACAgent`
(watchernyu/REDQ at 7b5d1bf, `redq/algos/redq_sac.py` and `core.py`; SynthER's
`config/online/sac.gin` selects its SAC setting: 2 Q-networks, UTD 1):
- twin Q-networks (2 x 256 ReLU) with target copies (Polyak 0.995), the target the minimum
  of `num_min` of the `num_q` target networks (REDQ; SAC: 2 of 2) minus the entropy term;
  the Q loss `num_q * MSE`;
- a tanh-Gaussian actor (2 x 256 ReLU, log-std clipped to [-20, 2]) trained on
  `alpha log pi - mean_i Q_i` (the mean over the Q-networks, REDQ's choice);
- the temperature learned (`log alpha` from 0) toward the target entropy: MBPO's per-task
  value where it has one (hopper -1, halfcheetah -3, walker2d -3, ant -4: the Brax ids), else
  `-act_dim`, SAC's own default, which the MJX ids (`mujoco/Hopper-v5`, ...) use;
- Adam 3e-4 everywhere, batch 256, discount 0.99, replay 1M;
- uniform random actions until the buffer holds `start_steps` (5000) transitions, no updates
  before either; then `utd` updates per env step, the actor and temperature on every
  `policy_delay`-th one and on the last;
- time-limit truncations are not terminal (the target bootstraps through them).

Deviations: Flax's default initialisation (REDQ: Xavier-uniform weights, zero biases); the
first critic update uses `exp(log_alpha) = 1` where REDQ's first call still uses its 0.2
(it overwrites it at the first temperature step); `policy_delay` must divide `utd` or exceed
it (REDQ's schedule is then the same).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from algos.config import BaseConfig, ConfigError
from algos.loop import make_offline_train, soft_update, stateless
from algos.nets import Critic, GaussianPolicy, tanh_gaussian_sample

LABEL = "SAC"
ORDER = 80
KIND = "online"
TINY = {"hidden": "32,32", "start_steps": "64", "batch_size": "16", "eval_episodes": "1"}
MBPO_TARGET_ENTROPY = {"hopper": -1.0, "halfcheetah": -3.0, "walker2d": -3.0, "ant": -4.0}


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    steps: int = 100_000            # env steps (each with `utd` gradient steps)
    eval_every: int = 5_000         # env steps between evaluations
    eval_episodes: int = 10
    hidden: Tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    tau: float = 0.005              # 1 - REDQ's polyak 0.995
    utd: int = 1                    # gradient steps per env step
    num_q: int = 2
    num_min: int = 2
    policy_delay: int = 20
    start_steps: int = 5000
    replay_size: int = 1_000_000
    auto_alpha: bool = True
    alpha: float = 0.2              # the fixed temperature when not auto_alpha
    target_entropy: float = 0.0     # 0: MBPO's per-task value, else -act_dim

    def check(self):
        if self.utd < 1 or self.policy_delay < 1 or self.num_q < 1 or self.replay_size < 1:
            raise ConfigError("utd, policy_delay, num_q and replay_size must be at least 1")
        if not 1 <= self.num_min <= self.num_q:
            raise ConfigError(f"num_min must be in [1, num_q={self.num_q}], got {self.num_min}")
        if self.policy_delay < self.utd and self.utd % self.policy_delay:
            raise ConfigError(f"policy_delay ({self.policy_delay}) must divide utd ({self.utd}) "
                              "or be at least utd")
        if self.start_steps < 0 or self.start_steps >= self.steps:
            raise ConfigError(f"start_steps must be in [0, steps={self.steps}), got "
                              f"{self.start_steps}")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau}")


@flax.struct.dataclass
class Buffer:
    obs: jax.Array
    action: jax.Array       # in [-1, 1]
    reward: jax.Array
    next_obs: jax.Array
    terminal: jax.Array
    size: jax.Array         # transitions stored (int32, at most capacity)
    ptr: jax.Array          # next slot (a ring)

    @classmethod
    def create(cls, capacity: int, obs_dim: int, act_dim: int):
        z = lambda *s: jnp.zeros((capacity,) + s, jnp.float32)  # noqa: E731
        return cls(z(obs_dim), z(act_dim), z(), z(obs_dim), z(), jnp.zeros((), jnp.int32),
                   jnp.zeros((), jnp.int32))

    def add(self, obs, action, reward, next_obs, terminal):
        i = self.ptr
        cap = self.reward.shape[0]
        return Buffer(self.obs.at[i].set(obs), self.action.at[i].set(action),
                      self.reward.at[i].set(reward), self.next_obs.at[i].set(next_obs),
                      self.terminal.at[i].set(terminal.astype(jnp.float32)),
                      jnp.minimum(self.size + 1, cap), (i + 1) % cap)

    def sample(self, key, n: int):
        idx = jax.random.randint(key, (n,), 0, jnp.maximum(self.size, 1))
        return {"obs": self.obs[idx], "action": self.action[idx], "reward": self.reward[idx],
                "next_obs": self.next_obs[idx], "terminal": self.terminal[idx]}


@flax.struct.dataclass
class State:
    actor: dict
    critic: dict
    critic_target: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    buffer: Buffer
    env_state: object
    obs: jax.Array
    steps: jax.Array        # env steps taken (int32)


def target_entropy(config: Config, env_id: str, act_dim: int) -> float:
    if config.target_entropy != 0.0:
        return config.target_entropy
    return MBPO_TARGET_ENTROPY.get(env_id, -float(act_dim))


def _nets(config, act_dim):
    return (GaussianPolicy(act_dim, hidden=config.hidden, activation="relu",
                           log_std_min=-20.0, log_std_max=2.0),
            Critic(hidden=config.hidden, n=config.num_q, activation="relu"))


def _to_env(env_spec, a):
    lo, hi = env_spec.action_low, env_spec.action_high
    return (hi + lo) / 2.0 + (hi - lo) / 2.0 * a


def make_policy(config: Config, env_spec):
    """Evaluation acts with the mean action `tanh(mu(s))` (REDQ's `get_test_action`)."""
    actor, _ = _nets(config, env_spec.act_dim)

    def act(state: State, obs, key):
        mean, _ = actor.apply(state.actor, obs)
        return _to_env(env_spec, jnp.tanh(mean))

    return stateless(act)


def make_learner(config: Config, obs_dim: int, act_dim: int, entropy_target: float):
    """`(init(key) -> nets, update(nets, sample_batch, key) -> (nets, metrics))`: SAC's `utd`
    gradient steps on batches from `sample_batch(key)`, reusable by any data source (a replay
    buffer, or one mixed with synthetic data)."""
    actor, critic = _nets(config, act_dim)
    tx = optax.adam(config.lr)

    def init(key):
        k_a, k_c = jax.random.split(key)
        o, a = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        pa, pc = actor.init(k_a, o), critic.init(k_c, o, a)
        log_alpha = jnp.zeros(())
        return (pa, pc, pc, log_alpha, tx.init(pa), tx.init(pc), tx.init(log_alpha))

    def alpha_of(log_alpha):
        return jnp.exp(log_alpha) if config.auto_alpha else jnp.asarray(config.alpha)

    def critic_loss(pc, pt, pa, log_alpha, b, key):
        k_pi, k_min = jax.random.split(key)
        mean, log_std = actor.apply(pa, b["next_obs"])
        a2, logp2 = tanh_gaussian_sample(k_pi, mean, log_std)
        q_next = critic.apply(pt, b["next_obs"], a2)                       # (num_q, B)
        pick = jax.random.permutation(k_min, config.num_q)[:config.num_min]
        q_min = q_next[pick].min(0)
        y = jax.lax.stop_gradient(b["reward"] + config.discount * (1.0 - b["terminal"])
                                  * (q_min - alpha_of(log_alpha) * logp2))
        q = critic.apply(pc, b["obs"], b["action"])
        return jnp.mean((q - y) ** 2) * config.num_q, q.mean()

    def actor_loss(pa, pc, log_alpha, b, key):
        mean, log_std = actor.apply(pa, b["obs"])
        a, logp = tanh_gaussian_sample(key, mean, log_std)
        q = critic.apply(pc, b["obs"], a).mean(0)
        return jnp.mean(alpha_of(log_alpha) * logp - q), logp

    def step(nets, b, key, with_actor: bool):
        pa, pc, pt, log_alpha, oa, oc, oal = nets
        k_c, k_a = jax.random.split(key)
        (lc, qmean), gc = jax.value_and_grad(critic_loss, has_aux=True)(pc, pt, pa, log_alpha,
                                                                      b, k_c)
        metrics = {"critic_loss": lc / config.num_q, "q": qmean}
        if with_actor:  # on the critic before this step's update, as REDQ orders it
            (la, logp), ga = jax.value_and_grad(actor_loss, has_aux=True)(pa, pc, log_alpha,
                                                                          b, k_a)
            ua, oa = tx.update(ga, oa, pa)
            pa = optax.apply_updates(pa, ua)
            if config.auto_alpha:
                g_alpha = -jnp.mean(jax.lax.stop_gradient(logp) + entropy_target)
                ual, oal = tx.update(g_alpha, oal, log_alpha)
                log_alpha = optax.apply_updates(log_alpha, ual)
            metrics.update(actor_loss=la, entropy=-logp.mean(), alpha=alpha_of(log_alpha))
        uc, oc = tx.update(gc, oc, pc)
        pc = optax.apply_updates(pc, uc)
        pt = soft_update(pt, pc, config.tau)
        return (pa, pc, pt, log_alpha, oa, oc, oal), metrics

    delay = min(config.policy_delay, config.utd)
    groups = config.utd // delay

    def update(nets, sample_batch, key):
        def group(nets, k):
            def critic_only(n, kk):
                k_b, k_s = jax.random.split(kk)
                n, m = step(n, sample_batch(k_b), k_s, False)
                return n, m["critic_loss"]
            ks = jax.random.split(k, delay)
            nets, _ = jax.lax.scan(critic_only, nets, ks[:-1])
            k_b, k_s = jax.random.split(ks[-1])
            return step(nets, sample_batch(k_b), k_s, True)
        nets, metrics = jax.lax.scan(group, nets, jax.random.split(key, groups))
        return nets, jax.tree_util.tree_map(lambda m: m[-1], metrics)

    return init, update


def make_env_step(config: Config, env, learn):
    """`step(state, key, batches) -> (state, metrics)`: one env step (uniform random actions
    until the buffer holds `start_steps` transitions, then the actor's samples), the
    transition stored, then `learn`'s `utd` gradient steps on `batches(buffer)(key)` once the
    buffer holds more than `start_steps` (REDQ's `delay_update_steps='auto'`)."""
    actor, _ = _nets(config, env.act_dim)
    quiet = {"critic_loss": 0.0, "q": 0.0, "actor_loss": 0.0, "entropy": 0.0, "alpha": 0.0}

    def step(s: State, key, batches):
        k_pi, k_rand, k_env, k_upd = jax.random.split(key, 4)
        mean, log_std = actor.apply(s.actor, s.obs)
        a_pi, _ = tanh_gaussian_sample(k_pi, mean, log_std)
        a_rand = jax.random.uniform(k_rand, (env.act_dim,), minval=-1.0, maxval=1.0)
        a = jnp.where(s.buffer.size > config.start_steps, a_pi, a_rand)
        obs, env_state, reward, term, _, info = env.step(k_env, s.env_state,
                                                         _to_env(env.spec, a))
        buffer = s.buffer.add(s.obs, a, reward, info["final_obs"], term)
        nets = (s.actor, s.critic, s.critic_target, s.log_alpha, s.actor_opt, s.critic_opt,
                s.alpha_opt)
        nets, metrics = jax.lax.cond(
            buffer.size > config.start_steps,
            lambda n: learn(n, batches(buffer), k_upd),
            lambda n: (n, jax.tree_util.tree_map(jnp.float32, quiet)), nets)
        return State(*nets, buffer, env_state, obs, s.steps + 1), metrics

    return step


def make_init(config: Config, env, init_nets):
    capacity = min(config.replay_size, config.steps)

    def init(key):
        k_nets, k_env = jax.random.split(key)
        obs, env_state = env.reset(k_env)
        return State(*init_nets(k_nets), Buffer.create(capacity, env.obs_dim, env.act_dim),
                     env_state, obs, jnp.zeros((), jnp.int32))

    return init


def make_train(config: Config, data, env):
    """`data` is unused: SAC collects its own (`KIND = "online"`)."""
    init_nets, learn = make_learner(config, env.obs_dim, env.act_dim,
                                    target_entropy(config, env.env_id, env.act_dim))
    step = make_env_step(config, env, learn)

    def update(s: State, key):
        return step(s, key, lambda buffer: lambda k: buffer.sample(k, config.batch_size))

    return make_offline_train(config, env, make_init(config, env, init_nets), update,
                              make_policy(config, env.spec))
