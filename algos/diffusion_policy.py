"""The diffusion actor that Diffusion-BC, Diffusion-QL and IDQL share: a state-conditioned
denoiser over actions in [-1, 1], built, trained and sampled from the algorithm's
`DiffusionSpec` (by default Diffusion-QL's: 3x256 Mish MLP, VP schedule, T=5, eps-prediction,
DDPM with x0 clipped to the action box; Wang et al. 2023)."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from algos.diffusion_spec import (DiffusionSpec, make_denoiser, make_loss, make_one_step,
                                  make_sampler)
from algos.nets import as_denoiser


@dataclasses.dataclass(frozen=True)
class DiffusionActor:
    act_dim: int
    spec: DiffusionSpec

    @functools.cached_property
    def net(self):
        return make_denoiser(self.spec)

    def init(self, key, obs):
        return self.net.init(key, jnp.zeros(obs.shape[:-1] + (self.act_dim,)),
                             jnp.zeros(obs.shape[:-1], jnp.int32), obs)

    def loss(self, params, key, obs, action):
        """The denoising (behaviour-cloning) loss on a batch of (state, action)."""
        return make_loss(self.spec)(as_denoiser(self.net, params), key, action, obs)

    def sample(self, params, key, obs):
        """One action per state, `(batch, act_dim)`, by the spec's sampler."""
        return make_sampler(self.spec)(as_denoiser(self.net, params), key,
                                       obs.shape[:-1] + (self.act_dim,), obs)

    def one_step(self, params, key, obs, action):
        """EDP's action approximation (Kang et al. 2023): the dataset action noised to a random
        level and denoised in one network call, instead of the chain."""
        return make_one_step(self.spec)(as_denoiser(self.net, params), key, action, obs)

    def candidates(self, params, key, obs, n: int):
        """`n` sampled actions for one observation: `(n, act_dim)`."""
        return self.sample(params, key, jnp.broadcast_to(obs, (n,) + obs.shape))


def select(key, scores, how: str):
    """Index of the chosen candidate: `argmax` of the scores, or a draw with probabilities
    `softmax(scores)` (Diffusion-QL) or proportional to non-negative `scores` (`weights`)."""
    if how == "argmax":
        return jnp.argmax(scores)
    if how == "softmax":
        return jax.random.categorical(key, scores)
    if how == "weights":
        return jax.random.categorical(key, jnp.log(jnp.maximum(scores, 1e-30)))
    raise ValueError(f"unknown selection {how!r}")
