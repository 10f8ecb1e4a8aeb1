"""SynthER (Lu et al. 2023, "Synthetic Experience Replay"): a diffusion model of whole
transitions `[obs, action, reward, next_obs, terminal]`, trained on an offline dataset and
sampled to upsample it. Not a policy: its product is data (`bench.augment` writes it as a
derived dataset that every algorithm trains on unchanged).

Follows the authors' released code, conglu1997/SynthER at e6835a5:
`config/resmlp_denoiser.gin` (the defaults), `synther/diffusion/denoiser_network.py` (the
residual MLP, `nets.ResidualMLPDenoiser`), `synther/diffusion/elucidated_diffusion.py` (EDM
training, the Heun sampler and the `Trainer`: AdamW, cosine rate, gradient clip, EMA),
`synther/diffusion/norm.py` and `utils.py` (z-scored inputs, terminals left unnormalised and
thresholded at 0.5), `synther/diffusion/train_diffuser.py` (5M samples from the EMA model).

    config = Config()                       # the authors' defaults
    x, norm = inputs(arrays)                # (N, d) transitions and their z-score
    gen = Generator(config, x.shape[1])
    state = gen.init(key, norm); state = gen.run(state, x, key, config.steps)
    sample = gen.sample(state, key, n)      # (n, d) in data units, terminals 0/1

Defaults (the authors'): residual MLP width 2048 (their w1024 config: `diffusion.width=1024`),
6 blocks, time features `[t, sin, cos]` of 8 random Fourier frequencies into 128 dims, ReLU, no
LayerNorm; EDM with sigma_data 1, log-normal training sigma (mean -1.2, std 1.2), 128 Heun
steps with S_churn 80, S_tmin 0.05, S_tmax 50, S_noise 1.003, sigmas 0.002..80 at rho 7, no
clamping (the authors clamp only with a min-max normaliser); 100k steps of AdamW (lr 3e-4,
betas 0.9/0.99, no weight decay) with the rate on a cosine to 0, gradient norm clipped to 1;
batch 1024, or 256 when the dataset has fewer than 800k transitions; EMA as `ema_pytorch`
0.2.1 (the version of the paper's time; the authors pin none): every 10 steps, a copy for the
first 110, then decay `1 - (1 + k)^(-2/3)` capped at 0.995, k the steps past 100; standard
normaliser `(x - mean) / (std + 1e-5)` with torch's unbiased std, the terminal column as is.

Deviations:
- Batches are drawn with replacement; the authors' DataLoader shuffles epochs.
- Initialisation is Flax's (LeCun normal), not PyTorch's (Kaiming uniform).
- Samples are drawn in chunks of `sample_batch` (the authors': 100k), each chunk one jitted
  call; the chunk's key is folded from the seed, so a resumed generation redraws the same
  chunks.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algos.config import ConfigError, validate
from algos.diffusion_spec import DiffusionSpec, check_backbone, make_denoiser, make_loss, \
    make_sampler
from algos.nets import as_denoiser

SPEC = DiffusionSpec(sampler="edm", steps=128, backbone="resmlp", width=2048, depth=6,
                     clip_x0=0.0, sigma_data=1.0, sigma_min=0.002, sigma_max=80.0,
                     p_mean=-1.2, p_std=1.2, churn=80.0, s_tmin=0.05, s_tmax=50.0,
                     s_noise=1.003)
MODES = ("synthetic", "mixed")

# Small enough for the quick tier on 2 CPU cores (`bench augment --preset quick`).
PRESETS = {
    "quick": {"diffusion.width": 256, "steps": 20_000, "size": 100_000},
}
TINY = {"diffusion.width": 32, "diffusion.depth": 2, "diffusion.steps": 4, "steps": 20,
        "save_every": 10, "size": 512, "sample_batch": 256, "small_batch_size": 64,
        "ema_after": 2}


@dataclasses.dataclass(frozen=True)
class Config:
    diffusion: DiffusionSpec = SPEC
    steps: int = 100_000            # gradient steps
    batch_size: int = 1024
    small_batch_size: int = 256     # used when the data has fewer than `small_data` rows
    small_data: int = 800_000
    lr: float = 3e-4
    adam_b2: float = 0.99
    grad_norm: float = 1.0
    ema_decay: float = 0.995        # the cap of ema_pytorch's warm-up decay
    ema_every: int = 10
    ema_after: int = 100            # steps of plain copies before averaging starts
    ema_power: float = 2 / 3
    terminal_threshold: float = 0.5
    size: int = 5_000_000           # transitions in the derived dataset
    mode: str = "synthetic"         # synthetic: all generated (the authors'); mixed: the real
                                    # data plus `size - real` generated (CleanDiffuser's)
    sample_batch: int = 100_000     # samples per jitted sampling call
    save_every: int = 10_000        # steps between checkpoints
    seed: int = 0

    def check(self):
        check_backbone(self.diffusion, sequence=False)
        if self.diffusion.sampler != "edm":
            raise ConfigError(f"diffusion.sampler must be 'edm' (SynthER trains and samples "
                              f"with EDM), got {self.diffusion.sampler!r}")
        for name in ("steps", "batch_size", "small_batch_size", "ema_every", "size",
                     "sample_batch", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 < self.ema_decay < 1.0 or self.lr <= 0 or self.grad_norm < 0:
            raise ConfigError("need 0 < ema_decay < 1, lr > 0 and grad_norm >= 0")

    def batch_for(self, rows: int) -> int:
        """The authors' rule: the small batch for datasets under `small_data` transitions."""
        return self.small_batch_size if rows < self.small_data else self.batch_size


# --- transitions as one vector ----------------------------------------------------------------
@flax.struct.dataclass
class ZScore:
    mean: jax.Array
    std: jax.Array

    def normalize(self, x):
        return (x - self.mean) / self.std

    def unnormalize(self, x):
        return x * self.std + self.mean


def as_rows(obs, action, reward, next_obs, terminal, xp=np):
    """The layout SynthER models, one row per transition: `[obs, action, reward, next_obs,
    terminal]`. `xp` is numpy, or `jax.numpy` inside a traced function."""
    return xp.concatenate([obs, action, reward[:, None], next_obs, terminal[:, None]], axis=1)


def columns(x, obs_dim: int, act_dim: int) -> dict:
    """`as_rows`' rows back to their columns (slices, numpy or traced)."""
    o, a = obs_dim, act_dim
    return {"obs": x[:, :o], "action": x[:, o:o + a], "reward": x[:, o + a],
            "next_obs": x[:, o + a + 1:2 * o + a + 1], "terminal": x[:, -1]}


def inputs(arrays: Dict[str, np.ndarray]):
    """`(x, norm)`: the transitions as rows (`as_rows`) and the authors' standard normaliser
    (unbiased std + 1e-5; the terminal column left as is)."""
    f32 = lambda k: np.asarray(arrays[k], np.float32)  # noqa: E731
    x = as_rows(f32("obs"), f32("action"), f32("reward"), f32("next_obs"), f32("terminated"))
    if len(x) < 2:
        raise ConfigError(f"SynthER needs at least 2 transitions, got {len(x)}")
    mean = x.mean(0, dtype=np.float64)
    std = x.std(0, ddof=1, dtype=np.float64) + 1e-5
    mean[-1], std[-1] = 0.0, 1.0
    return x, ZScore(jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))


def masked_zscore(x, size) -> ZScore:
    """`inputs`' normaliser of the first `size` rows of `x` (in-graph: a replay buffer's
    filled part, `size` traced)."""
    w = (jnp.arange(x.shape[0]) < size).astype(x.dtype)[:, None]
    n = jnp.maximum(size, 2).astype(x.dtype)
    mean = (w * x).sum(0) / n
    std = jnp.sqrt((w * (x - mean) ** 2).sum(0) / (n - 1)) + 1e-5
    return ZScore(mean.at[-1].set(0.0), std.at[-1].set(1.0))


def split(x, obs_dim: int, act_dim: int, threshold: float = 0.5) -> Dict[str, np.ndarray]:
    """Rows of `as_rows`' layout back to transition arrays, terminals thresholded (the
    authors' `split_diffusion_samples`)."""
    x = np.asarray(x, np.float32)
    if x.shape[1] != 2 * obs_dim + act_dim + 2:
        raise ValueError(f"rows of width {x.shape[1]} do not hold obs {obs_dim} / action "
                         f"{act_dim} transitions")
    c = columns(x, obs_dim, act_dim)
    terminal = c.pop("terminal")
    return {**c, "terminated": terminal > threshold, "truncated": np.zeros(len(x), bool)}


# --- the generator ----------------------------------------------------------------------------
@flax.struct.dataclass
class State:
    params: dict
    ema: dict
    opt: optax.OptState
    norm: ZScore
    step: jax.Array       # gradient steps taken (int32)


def ema_decay(config: Config, step):
    """ema_pytorch 0.2.1's decay at its update counter `step` (updates before this one); 0
    (a copy) up to its first averaging call past `ema_after`, which copies too (it first
    initialises the average with the weights, then moves it toward them)."""
    first = (config.ema_after // config.ema_every + 1) * config.ema_every
    k = (step - config.ema_after).astype(jnp.float32)
    warm = 1.0 - (1.0 + k) ** (-config.ema_power)
    return jnp.where(step <= first, 0.0, jnp.minimum(warm, config.ema_decay))


def ema_update(config: Config, step, params, ema):
    """`EMA.update()` after optimiser step `step + 1`: on every `ema_every`-th call a copy
    up to `ema_after` (and once past it), then a move of `1 - decay` toward the weights."""
    decay = ema_decay(config, step)
    new = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    due = step % config.ema_every == 0
    return jax.tree_util.tree_map(lambda n, e: jnp.where(due, n, e), new, ema)


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    config: Config
    dim: int

    def __post_init__(self):
        validate(self.config)

    @functools.cached_property
    def net(self):
        return make_denoiser(self.config.diffusion)

    @functools.cached_property
    def tx(self):
        c = self.config
        opt = optax.adamw(optax.cosine_decay_schedule(c.lr, c.steps), b1=0.9, b2=c.adam_b2,
                          weight_decay=0.0)
        return optax.chain(optax.clip_by_global_norm(c.grad_norm), opt) if c.grad_norm > 0 \
            else opt

    def init(self, key, norm: ZScore) -> State:
        params = self.net.init(key, jnp.zeros((1, self.dim)), jnp.zeros((1,)))
        return State(params, params, self.tx.init(params), norm, jnp.zeros((), jnp.int32))

    def loss(self, params, key, x):
        return make_loss(self.config.diffusion)(as_denoiser(self.net, params), key, x)

    def update(self, state: State, x, key, size=None):
        """One gradient step on a batch of `x`'s rows (drawn with replacement; among the first
        `size` when given: a replay buffer's filled part)."""
        k_batch, k_loss = jax.random.split(key)
        idx = jax.random.randint(k_batch, (self.config.batch_for(x.shape[0]),), 0,
                                 x.shape[0] if size is None else jnp.maximum(size, 1))
        batch = state.norm.normalize(x[idx])
        loss, grads = jax.value_and_grad(self.loss)(state.params, k_loss, batch)
        updates, opt = self.tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(self.config, state.step, params, state.ema)
        return State(params, ema, opt, state.norm, state.step + 1), loss

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def run(self, state: State, x, key, n: int):
        """`n` more gradient steps; returns the state and the mean loss. Step `s` uses
        `fold_in(key, s)`, so `run` in pieces equals one `run`."""
        def body(s, _):
            return self.update(s, x, jax.random.fold_in(key, s.step))
        state, losses = jax.lax.scan(body, state, None, length=n)
        return state, losses.mean()

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def sample_chunk(self, state: State, key, n: int):
        """`n` rows from the EMA model in data units, the terminal column thresholded."""
        sampler = make_sampler(self.config.diffusion)
        z = sampler(as_denoiser(self.net, state.ema), key, (n, self.dim))
        x = state.norm.unnormalize(z)
        return x.at[:, -1].set((x[:, -1] > self.config.terminal_threshold).astype(x.dtype))

    def sample(self, state: State, key, n: int) -> np.ndarray:
        """`n` rows, chunk `i` drawn with `fold_in(key, i)` (so chunks can be drawn apart)."""
        c = self.config.sample_batch
        out = [np.asarray(self.sample_chunk(state, jax.random.fold_in(key, i), c))
               for i in range(-(-n // c))]
        return np.concatenate(out)[:n] if out else np.zeros((0, self.dim), np.float32)
