"""The diffusion actor that Diffusion-BC, Diffusion-QL and IDQL share: a state-conditioned
MLP denoiser (Diffusion-QL's 3x256 Mish) over actions in [-1, 1], trained with the DDPM loss
and sampled by DDPM with x0 clipped to the action box (Wang et al. 2023)."""
from __future__ import annotations

import dataclasses
import functools
from typing import Tuple

import jax
import jax.numpy as jnp

from algos import diffusion
from algos.nets import MLPDenoiser, as_denoiser


@dataclasses.dataclass(frozen=True)
class DiffusionActor:
    act_dim: int
    hidden: Tuple[int, ...] = (256, 256, 256)
    T: int = 5
    schedule: str = "vp"

    @functools.cached_property
    def net(self):
        return MLPDenoiser(hidden=self.hidden)

    @functools.cached_property
    def sched(self):
        # Concrete arrays even when first asked for inside a trace: the cached schedule is
        # reused by later traces (jit of one seed, of vmapped seeds, of the acting rule).
        with jax.ensure_compile_time_eval():
            return diffusion.schedule(self.schedule, self.T)

    def init(self, key, obs):
        return self.net.init(key, jnp.zeros(obs.shape[:-1] + (self.act_dim,)),
                             jnp.zeros(obs.shape[:-1], jnp.int32), obs)

    def loss(self, params, key, obs, action):
        """The denoising (behaviour-cloning) loss on a batch of (state, action)."""
        return diffusion.diffusion_loss(as_denoiser(self.net, params), self.sched, key,
                                        action, obs)

    def sample(self, params, key, obs):
        """One action per state, `(batch, act_dim)`, by the full T-step reverse chain."""
        return diffusion.ddpm_sample(as_denoiser(self.net, params), self.sched, key,
                                     obs.shape[:-1] + (self.act_dim,), obs, clip_x0=1.0)

    def one_step(self, params, key, obs, action):
        """EDP's action approximation (Kang et al. 2023): noise the dataset action to a random
        step and denoise it in one shot, `a0_hat = (a_t - sqrt(1 - abar) eps_hat) / sqrt(abar)`,
        instead of running the chain; gradients then flow through one network call."""
        k_t, k_eps = jax.random.split(key)
        t = jax.random.randint(k_t, action.shape[:-1], 0, self.T)
        a_t = diffusion.q_sample(self.sched, action, t,
                                 jax.random.normal(k_eps, action.shape, action.dtype))
        a0, _ = diffusion.x0_and_eps(self.sched, a_t, t, self.net.apply(params, a_t, t, obs),
                                     "eps")
        return jnp.clip(a0, -1.0, 1.0)

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
