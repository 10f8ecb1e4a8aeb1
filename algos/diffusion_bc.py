"""Diffusion-BC: behaviour cloning with a diffusion policy (Diffusion-QL with eta = 0 and no
critic, the paper's BC ablation; `Zhendong-Wang/Diffusion-Policies-for-Offline-RL`,
`agents/bc_diffusion.py`). Acts with one sample of the reverse chain.

Defaults: the actor of Diffusion-QL (`diffusion`: 3x256 Mish MLP, VP, T=5, DDPM, x0 clipped to
[-1, 1]), lr 3e-4 with Diffusion-QL's stepped cosine, gradient-norm clip 9. Deviation: the
reference BC agent clips no gradients; we keep Diffusion-QL's clip so the ablation differs
from Diffusion-QL in the Q term alone.
"""
from __future__ import annotations

import dataclasses

import flax.struct
import jax
import optax

from algos.config import BaseConfig
from algos.data import Normalizer, prepare
from algos.diffusion_policy import DiffusionActor
from algos.diffusion_spec import SAMPLING_FIELDS, DiffusionSpec, check_backbone
from algos.loop import adam, gradient_step, make_offline_train, stateless

LABEL = "Diffusion-BC"
ORDER = 40
TINY = {"diffusion.width": "32", "diffusion.depth": "2"}
ACTING = SAMPLING_FIELDS           # training never samples the chain


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    diffusion: DiffusionSpec = DiffusionSpec()
    lr: float = 3e-4
    lr_decay: bool = True         # Diffusion-QL's stepped cosine (see algos.loop.adam)
    lr_decay_every: int = 50_000
    lr_decay_horizon: int = 2000
    grad_norm: float = 9.0

    def check(self):
        check_backbone(self.diffusion, sequence=False)


@flax.struct.dataclass
class State:
    params: dict
    opt: optax.OptState
    norm: Normalizer


def make_policy(config: Config, env_spec):
    actor = DiffusionActor(env_spec.act_dim, config.diffusion)

    def act(state: State, obs, key):
        return state.norm.to_env(actor.sample(state.params, key, state.norm.obs(obs)[None])[0])

    return stateless(act)


def make_train(config: Config, data, env):
    data = prepare(data, env, config)
    actor = DiffusionActor(env.act_dim, config.diffusion)
    tx = adam(config.lr, config.steps, "stepped_cosine" if config.lr_decay else "none",
              config.grad_norm, config.lr_decay_every, config.lr_decay_horizon)

    def init(key):
        params = actor.init(key, data.obs[:1])
        return State(params, tx.init(params), data.norm)

    def update(s: State, key):
        k_batch, k_loss = jax.random.split(key)
        b = data.sample(k_batch, config.batch_size)
        params, opt, loss, _ = gradient_step(actor.loss, tx, s.params, s.opt, k_loss,
                                             b["obs"], b["action"])
        return s.replace(params=params, opt=opt), {"bc_loss": loss}

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
