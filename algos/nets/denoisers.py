"""Denoiser networks. Each is called as ``model.apply(params, x, t, cond=None, drop=None)`` and
returns an array shaped like ``x``; ``t`` is a scalar or one value per sample (a discrete step
index, or EDM's ``c_noise``). Wrapped as ``lambda x, t, c: model.apply(params, x, t, c)`` each
is a denoiser for every sampler in ``algos.diffusion``.

- ``MLPDenoiser``: Diffusion-QL's action denoiser (3 x 256, Mish, 16-d time embedding), the
  state condition concatenated to the input.
- ``ResidualMLPDenoiser``: SynthER's transition denoiser (random Fourier time features,
  residual blocks of width up to 2048).
- ``TemporalUnet``: Diffuser's 1-D U-Net over ``(batch, horizon, transition_dim)`` trajectories.
- ``TemporalValue``: Diffuser's value function over noised trajectories (guided planning).
- ``DiTDenoiser``: a DiT-style transformer (adaLN-Zero) over the same trajectories: it swaps with
  the U-Net in a Config.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from algos.nets.layers import (ACTIVATIONS, Conv1d, RandomFourierEmbedding, TimeMLP,
                               batch_times, drop_condition, mish, sinusoidal_embedding)


class MLPDenoiser(nn.Module):
    """Diffusion-QL: ``[x, time_mlp(t), cond] -> 3 x (Dense 256, Mish) -> Dense(dim x)``.

    ``cond`` (the state) is concatenated raw, or embedded by ``cond_encoder`` when one is given.
    """
    hidden: Sequence[int] = (256, 256, 256)
    t_dim: int = 16
    cond_encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, x, t, cond=None, drop=None):
        h = [x, TimeMLP(self.t_dim, 2 * self.t_dim, self.t_dim)(batch_times(t, x))]
        if cond is not None:
            c = (self.cond_encoder(cond, drop) if self.cond_encoder is not None
                 else drop_condition(jnp.asarray(cond, x.dtype), drop))
            h.append(c)
        h = jnp.concatenate(h, axis=-1)
        for width in self.hidden:
            h = mish(nn.Dense(width)(h))
        return nn.Dense(x.shape[-1])(h)


class ResidualMLPDenoiser(nn.Module):
    """SynthER: ``proj([x, cond]) + time_mlp(t)``, then ``Dense(width)``, ``depth`` residual
    blocks ``h + Dense(act(LN(h)))``, and ``Dense(dim x)(act(LN(h)))``. SynthER's setting is
    width 2048 (1024 for its smaller model), depth 6, dim_t 128, ReLU, no layer norm."""
    width: int = 1024
    depth: int = 6
    dim_t: int = 128
    fourier_dim: int = 16
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x, t, cond=None, drop=None):
        act = ACTIVATIONS[self.activation]
        norm = (lambda: nn.LayerNorm()) if self.layer_norm else (lambda: (lambda y: y))
        te = RandomFourierEmbedding(self.fourier_dim)(batch_times(t, x))
        te = nn.Dense(self.dim_t)(nn.silu(nn.Dense(self.dim_t)(te)))
        inp = x if cond is None else jnp.concatenate(
            [x, drop_condition(jnp.asarray(cond, x.dtype), drop)], axis=-1)
        h = nn.Dense(self.width)(nn.Dense(self.dim_t)(inp) + te)
        for _ in range(self.depth):
            h = h + nn.Dense(self.width)(act(norm()(h)))
        return nn.Dense(x.shape[-1])(act(norm()(h)))


# ------------------------------------------------------------------------------ temporal U-Net

class Conv1dBlock(nn.Module):
    features: int
    kernel: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x):
        x = Conv1d(self.features, self.kernel)(x)
        return mish(nn.GroupNorm(num_groups=self.groups, epsilon=1e-5)(x))  # torch's eps


class ResidualTemporalBlock(nn.Module):
    features: int
    kernel: int = 5

    @nn.compact
    def __call__(self, x, emb):
        h = Conv1dBlock(self.features, self.kernel)(x)
        h = h + nn.Dense(self.features)(mish(emb))[:, None, :]
        h = Conv1dBlock(self.features, self.kernel)(h)
        skip = x if x.shape[-1] == self.features else Conv1d(self.features, 1)(x)
        return h + skip


class LinearAttention(nn.Module):
    """Pre-norm residual linear attention over the horizon (Diffuser's optional attention)."""
    heads: int = 4
    dim_head: int = 32

    @nn.compact
    def __call__(self, x):
        b, n, c = x.shape
        qkv = nn.Dense(3 * self.heads * self.dim_head, use_bias=False)(
            nn.LayerNorm(epsilon=1e-5)(x))
        q, k, v = jnp.split(qkv.reshape(b, n, 3, self.heads, self.dim_head), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]                       # (b, n, h, d)
        q = q * self.dim_head ** -0.5          # the authors scale q and softmax k only
        k = nn.softmax(k, axis=1)
        context = jnp.einsum("bnhd,bnhe->bhde", k, v)
        out = jnp.einsum("bhde,bnhd->bnhe", context, q).reshape(b, n, -1)
        return x + nn.Dense(c)(out)


class TemporalUnet(nn.Module):
    """Diffuser's temporal U-Net over ``x (batch, horizon, transition_dim)``, the authors'
    architecture: jannerm/diffuser `diffuser/models/temporal.py` (`TemporalUnet`, main branch
    7ea4228, lines 48-123) and `diffuser/models/helpers.py` (Conv1dBlock, Downsample1d,
    Upsample1d, SinusoidalPosEmb, LinearAttention); the maze2d branch's is the same without
    attention.

    Channels ``dim * dim_mults``. Down path: per level two residual temporal blocks (conv
    kernel ``kernel``, GroupNorm(8), Mish, the time embedding added between them), optional
    linear attention, the output kept as a skip, then a stride-2 conv except at the last
    level. Middle: block, attention, block. Up path, one stage per level but the last: the
    deepest unused skip concatenated, two blocks, attention, then a stride-2 transposed conv;
    so the finest skip is never used, as in the authors' code. Then Conv1dBlock and a 1x1 conv.
    The horizon must be a multiple of ``2 ** (len(dim_mults) - 1)``. Parameters at dim 32,
    dim_mults (1, 2, 4, 8), 14 dims: 3,956,302, the authors' count (tested).

    Deviations: weights start from Flax's initialisers (lecun-normal, zero bias), not
    PyTorch's uniform ones; a ``cond_encoder`` embedding (returns, for Decision Diffuser) may
    be concatenated to the time embedding, which Diffuser itself does not have (it conditions
    by inpainting).
    """
    dim: int = 32
    dim_mults: Sequence[int] = (1, 2, 4, 8)
    kernel: int = 5
    attention: bool = False
    cond_encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, x, t, cond=None, drop=None):
        b, horizon, transition_dim = x.shape
        factor = 2 ** (len(self.dim_mults) - 1)
        if horizon % factor:
            raise ValueError(f"TemporalUnet with dim_mults={tuple(self.dim_mults)} needs a horizon "
                             f"that is a multiple of {factor}, got {horizon}")
        emb = TimeMLP(self.dim, 4 * self.dim, self.dim)(batch_times(t, x))
        if self.cond_encoder is not None and cond is not None:
            emb = jnp.concatenate([emb, self.cond_encoder(cond, drop)], axis=-1)
        attn = (lambda y: LinearAttention()(y)) if self.attention else (lambda y: y)

        dims = [self.dim * m for m in self.dim_mults]
        h, skips = x, []
        for i, d in enumerate(dims):
            h = ResidualTemporalBlock(d, self.kernel)(h, emb)
            h = ResidualTemporalBlock(d, self.kernel)(h, emb)
            h = attn(h)
            skips.append(h)
            if i < len(dims) - 1:
                h = nn.Conv(d, (3,), strides=(2,), padding=1)(h)          # downsample
        h = ResidualTemporalBlock(dims[-1], self.kernel)(h, emb)
        h = attn(h)
        h = ResidualTemporalBlock(dims[-1], self.kernel)(h, emb)
        for d in reversed(dims[:-1]):
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = ResidualTemporalBlock(d, self.kernel)(h, emb)
            h = ResidualTemporalBlock(d, self.kernel)(h, emb)
            h = attn(h)
            h = nn.ConvTranspose(d, (4,), strides=(2,), padding="SAME")(h)  # upsample
        h = Conv1dBlock(self.dim, self.kernel)(h)
        return Conv1d(transition_dim, 1)(h)


# --------------------------------------------------------------------------------- transformer

class TemporalValue(nn.Module):
    """Diffuser's value function over noised trajectories ``x (batch, horizon, transition_dim)``
    at diffusion step ``t``, returning ``(batch,)``: jannerm/diffuser `diffuser/models/
    temporal.py` (`ValueFunction`, main branch). Per level of ``dim * dim_mults`` two residual
    temporal blocks and a stride-2 conv (at every level, the last included), then two middle
    blocks to ``dims[-1] // 2`` and ``// 4`` channels, each followed by a stride-2 conv, the
    result flattened and joined with the time embedding, then ``Dense(fc // 2), Mish,
    Dense(1)``. Parameters at dim 32, dim_mults (1, 2, 4, 8), horizon 32, 14 dims: 2,294,817,
    the authors' count (tested).

    Deviation: the authors size the first dense layer from a horizon count that skips the last
    level's downsampling, which matches the tensor only at some sizes (horizon 32 with mults
    (1, 2) fails there); here the layer takes whatever length the convolutions leave.
    """
    dim: int = 32
    dim_mults: Sequence[int] = (1, 2, 4, 8)
    kernel: int = 5

    @nn.compact
    def __call__(self, x, t):
        emb = TimeMLP(self.dim, 4 * self.dim, self.dim)(batch_times(t, x))
        h = x
        for m in self.dim_mults:
            h = ResidualTemporalBlock(self.dim * m, self.kernel)(h, emb)
            h = ResidualTemporalBlock(self.dim * m, self.kernel)(h, emb)
            h = nn.Conv(self.dim * m, (3,), strides=(2,), padding=1)(h)       # downsample
        mid = self.dim * self.dim_mults[-1]
        for d in (mid // 2, mid // 4):
            h = ResidualTemporalBlock(d, self.kernel)(h, emb)
            h = nn.Conv(d, (3,), strides=(2,), padding=1)(h)
        flat = h.reshape(h.shape[0], -1)
        h = nn.Dense(flat.shape[-1] // 2)(jnp.concatenate([flat, emb], axis=-1))
        return nn.Dense(1)(mish(h))[:, 0]


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    hidden: int
    heads: int
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, h, c):
        mod = nn.Dense(6 * self.hidden, kernel_init=nn.initializers.zeros)(nn.silu(c))
        s1, sc1, g1, s2, sc2, g2 = jnp.split(mod, 6, axis=-1)
        y = _modulate(nn.LayerNorm(use_scale=False, use_bias=False)(h), s1, sc1)
        h = h + g1[:, None, :] * nn.MultiHeadDotProductAttention(num_heads=self.heads)(y, y)
        y = _modulate(nn.LayerNorm(use_scale=False, use_bias=False)(h), s2, sc2)
        y = nn.Dense(self.hidden)(nn.gelu(nn.Dense(self.mlp_ratio * self.hidden)(y)))
        return h + g2[:, None, :] * y


class DiTDenoiser(nn.Module):
    """A DiT-style transformer over ``x (batch, horizon, transition_dim)`` (Peebles & Xie 2023).

    Each horizon step is a token (linear projection plus a fixed sinusoidal position embedding,
    so any horizon works); time (and the ``cond_encoder`` embedding, if any) condition every
    block through adaLN-Zero, and the output layer starts at zero.
    """
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    cond_encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, x, t, cond=None, drop=None):
        b, horizon, transition_dim = x.shape
        pos = sinusoidal_embedding(jnp.arange(horizon), self.hidden)
        h = nn.Dense(self.hidden)(x) + pos[None]
        c = TimeMLP(self.hidden, 4 * self.hidden, self.hidden)(batch_times(t, x))
        if self.cond_encoder is not None and cond is not None:
            c = c + nn.Dense(self.hidden)(self.cond_encoder(cond, drop))
        for _ in range(self.depth):
            h = DiTBlock(self.hidden, self.heads, self.mlp_ratio)(h, c)
        shift, scale = jnp.split(
            nn.Dense(2 * self.hidden, kernel_init=nn.initializers.zeros)(nn.silu(c)), 2, axis=-1)
        h = _modulate(nn.LayerNorm(use_scale=False, use_bias=False)(h), shift, scale)
        return nn.Dense(transition_dim, kernel_init=nn.initializers.zeros)(h)
