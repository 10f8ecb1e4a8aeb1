"""A probabilistic ensemble of MLP dynamics-and-reward models (PETS, Chua et al. 2018; MBPO,
Janner et al. 2019; MOPO, Yu et al. 2020): the autoregressive model the planners are compared
with, and the model inside the MPC baseline.

Followed: jannerm/mbpo `mbpo/models/constructor.py` (`construct_model`) and `mbpo/models/bnn.py`
(`BNN`), which MOPO reuses:
- 7 members, 5 elites chosen by held-out MSE; per member 4 hidden layers of 200 with swish,
  weight decay 2.5e-5, 5e-5, 7.5e-5, 7.5e-5 and 1e-4 on the five layers;
- inputs `[obs, action]` standardised by the data's statistics; outputs a Gaussian over
  `[reward, next_obs - obs]`, its log-variance softly bounded by learned `max_logvar` (init 0.5)
  and `min_logvar` (init -10), with `0.01 * (sum max_logvar - sum min_logvar)` added to the loss;
- the loss: per member, the mean over the batch of `(mu - y)^2 exp(-logvar) + logvar`
  (averaged over output dimensions), summed over members; each member its own batch drawn
  with replacement (the bootstrap); Adam at 1e-3, batch 256.

Deviations: the held-out split is a fixed 10% of the transitions chosen by the run's key
(MBPO: 20%, at most 5000, reshuffled per training call), and training runs a fixed number of
steps (MBPO trains until the held-out loss stops improving for 5 epochs).

`predict(state, obs, action)` is the elites' mean prediction; `rollout(state, obs0, actions)`
feeds it its own predictions for a sequence of actions (the autoregressive rollout whose error
compounds).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algos.config import ConfigError
from algos.data import env_arrays

WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)   # MBPO's per layer


@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
    members: int = 7
    elites: int = 5
    width: int = 200
    depth: int = 4            # hidden layers
    lr: float = 1e-3
    holdout: float = 0.1      # share of transitions held out to choose the elites

    def check(self):
        if not 1 <= self.elites <= self.members:
            raise ConfigError(f"need 1 <= elites <= members, got {self.elites} of "
                              f"{self.members}")
        if self.width < 1 or self.depth < 1:
            raise ConfigError("ensemble width and depth must be at least 1")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")


class Member(nn.Module):
    out_dim: int
    width: int = 200
    depth: int = 4

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.swish(nn.Dense(self.width)(x))
        out = nn.Dense(2 * self.out_dim)(x)
        return out[..., :self.out_dim], out[..., self.out_dim:]


@flax.struct.dataclass
class Model:
    params: dict              # leading (members,) axis
    max_logvar: jax.Array     # (out_dim,)
    min_logvar: jax.Array
    in_mean: jax.Array
    in_std: jax.Array
    elites: jax.Array         # (elites,) member indices


def _decay(params, depth: int):
    """MBPO's L2 penalty `rate * sum(w^2) / 2`, one rate per layer: the output layer's 1e-4,
    hidden layers past the fourth the fourth's."""
    total = 0.0
    for i in range(depth + 1):
        rate = WEIGHT_DECAY[-1] if i == depth else WEIGHT_DECAY[min(i, len(WEIGHT_DECAY) - 2)]
        kernel = params["params"][f"Dense_{i}"]["kernel"]
        total = total + rate * 0.5 * jnp.sum(jnp.square(kernel))
    return total


def make_ensemble(spec: EnsembleSpec, obs_dim: int, act_dim: int):
    """`(init(key, data) -> Model, loss(model_params, batch) , apply(model, obs, act))`."""
    out_dim = 1 + obs_dim
    member = Member(out_dim, spec.width, spec.depth)

    def bounded(logvar, max_lv, min_lv):
        """MBPO's soft bounds on the log-variance."""
        logvar = max_lv - jax.nn.softplus(max_lv - logvar)
        return min_lv + jax.nn.softplus(logvar - min_lv)

    def apply_all(params, max_lv, min_lv, x):
        mu, logvar = jax.vmap(lambda p: member.apply(p, x))(params)
        return mu, bounded(logvar, max_lv, min_lv)

    def inputs(model, obs, act):
        return (jnp.concatenate([obs, act], -1) - model.in_mean) / model.in_std

    def init(key, in_mean, in_std):
        keys = jax.random.split(key, spec.members)
        params = jax.vmap(lambda k: member.init(k, jnp.zeros((1, obs_dim + act_dim))))(keys)
        return Model(params, jnp.full((out_dim,), 0.5), jnp.full((out_dim,), -10.0),
                     in_mean, in_std, jnp.arange(spec.elites))

    def loss(trainable, model, x, y):
        """`x (members, batch, in)` standardised inputs, `y (members, batch, out)` targets."""
        params, max_lv, min_lv = trainable
        mu, logvar = jax.vmap(lambda p, xi: member.apply(p, xi))(params, x)
        logvar = bounded(logvar, max_lv, min_lv)
        nll = (jnp.square(mu - y) * jnp.exp(-logvar) + logvar).mean(-1).mean(-1).sum()
        decay = jax.vmap(lambda p: _decay(p, spec.depth))(params).sum()
        return nll + 0.01 * (max_lv.sum() - min_lv.sum()) + decay

    def predict(model, obs, act):
        """The elites' mean `(reward, next_obs)` (only the elites are evaluated)."""
        elites = jax.tree_util.tree_map(lambda p: p[model.elites], model.params)
        mu, _ = apply_all(elites, model.max_logvar, model.min_logvar, inputs(model, obs, act))
        mu = mu.mean(0)
        return mu[..., 0], obs + mu[..., 1:]

    def mse(model, obs, act, reward, next_obs):
        """Per member, the held-out MSE of the mean prediction."""
        mu, _ = apply_all(model.params, model.max_logvar, model.min_logvar,
                          inputs(model, obs, act))
        y = jnp.concatenate([reward[..., None], next_obs - obs], -1)
        return jnp.square(mu - y).mean((-1, -2))

    return init, loss, predict, mse


@flax.struct.dataclass
class EnsembleState:
    model: Model
    opt: optax.OptState


def make_ensemble_train(spec: EnsembleSpec, data, env, batch_size: int = 256):
    """Everything an algorithm needs to fit the ensemble on `data` (a dataset or arrays, in
    env units): `(init(key) -> EnsembleState, update(state, key) -> (state, loss),
    choose_elites(state) -> state, predict)`. The held-out transitions are the last
    `holdout` share of a permutation fixed by the data (seeded by 0), the same for every
    seed, so seeds differ in their weights and batches alone."""
    spec.check()
    arrays, _, _ = env_arrays(data, env)
    n = len(arrays["obs"])
    perm = np.random.default_rng(0).permutation(n)
    n_hold = max(1, int(round(spec.holdout * n)))
    if n - n_hold < batch_size:
        raise ConfigError(f"{n - n_hold} training transitions after the held-out "
                          f"{n_hold}, fewer than batch_size={batch_size}")
    train_idx, hold_idx = perm[n_hold:], perm[:n_hold]
    keys = ("obs", "action", "reward", "next_obs")
    tr = {k: jnp.asarray(arrays[k][train_idx]) for k in keys}
    ho = {k: jnp.asarray(arrays[k][hold_idx]) for k in keys}
    x_all = np.concatenate([arrays["obs"], arrays["action"]], -1)[train_idx]
    in_mean = jnp.asarray(x_all.mean(0), jnp.float32)
    in_std = jnp.asarray(x_all.std(0) + 1e-6, jnp.float32)
    init_model, loss, predict, mse = make_ensemble(spec, env.obs_dim, env.act_dim)
    tx = optax.adam(spec.lr)

    def init(key):
        model = init_model(key, in_mean, in_std)
        trainable = (model.params, model.max_logvar, model.min_logvar)
        return EnsembleState(model, tx.init(trainable))

    def update(s: EnsembleState, key):
        idx = jax.random.randint(key, (spec.members, batch_size), 0, len(train_idx))
        obs, act = tr["obs"][idx], tr["action"][idx]
        x = (jnp.concatenate([obs, act], -1) - in_mean) / in_std
        y = jnp.concatenate([tr["reward"][idx][..., None], tr["next_obs"][idx] - obs], -1)
        m = s.model
        trainable = (m.params, m.max_logvar, m.min_logvar)
        value, grads = jax.value_and_grad(loss)(trainable, m, x, y)
        updates, opt = tx.update(grads, s.opt, trainable)
        params, max_lv, min_lv = optax.apply_updates(trainable, updates)
        return EnsembleState(m.replace(params=params, max_logvar=max_lv, min_logvar=min_lv),
                             opt), value

    def choose_elites(s: EnsembleState):
        err = mse(s.model, ho["obs"], ho["action"], ho["reward"], ho["next_obs"])
        return s.replace(model=s.model.replace(elites=jnp.argsort(err)[:spec.elites]))

    return init, update, choose_elites, predict


def rollout(predict, model: Model, obs0, actions):
    """`(H + 1, obs_dim)` states from `obs0` under `actions (H, act_dim)`, each step fed the
    model's own previous prediction (autoregressive)."""
    def step(obs, act):
        _, nxt = predict(model, obs, act)
        return nxt, nxt

    _, states = jax.lax.scan(step, obs0, actions)
    return jnp.concatenate([obs0[None], states], 0)


__all__ = ["EnsembleSpec", "EnsembleState", "Model", "make_ensemble", "make_ensemble_train",
           "rollout"]
