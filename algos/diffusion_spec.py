"""One sub-config for every diffusion axis (CleanDiffuser's axes, made reachable): the noise
model, its schedule and length, the parameterisation, the sampler and its steps, the timestep
spacing, x0 clipping and the backbone with its size. Every diffusion algorithm embeds it as its
`diffusion` field, so

    python -m bench train --algo diffusion_ql ... \
        --set diffusion.sampler=ddim --set diffusion.steps=3

reaches the sampler, and a sweep file can write `set = { diffusion = { sampler = "ddim" } }`.

    spec = DiffusionSpec(schedule="cosine", T=20, sampler="dpm_solver_pp", steps=10)
    net = make_denoiser(spec)                     # a Flax module, (x, t, cond) -> prediction
    loss = make_loss(spec)(net_fn, key, x0, cond) # the training loss the spec's model needs
    x = make_sampler(spec)(net_fn, key, shape, cond)

`net_fn(x, t, cond)` is the raw network (`nets.as_denoiser(net, params)`); the functions here
add what the noise model needs around it (EDM's preconditioning). Two noise models:

- discrete (`sampler` ddpm / ddim / dpm_solver_pp): a `schedule` of `T` steps, trained by the
  DDPM loss on the `parameterization`'s target. DDPM runs all T steps; DDIM and DPM-Solver++
  run `steps` of them, spread by `spacing` (even, or even in log-SNR).
- `sampler = "edm"`: Karras et al.'s continuous noise levels, trained by EDM's loss (log-normal
  sigma, `p_mean`, `p_std`) with its preconditioning, sampled by its stochastic Heun sampler
  over `steps` levels (`churn`, `s_tmin`, `s_tmax`, `s_noise`; churn 0 is the deterministic
  ODE). `schedule`, `T` and `parameterization` do not apply to it.

The schedule is built once per spec (`spec.sched`), the one source of T for loss and sampler.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp

from algos import diffusion as D
from algos.config import ConfigError
from algos import nets

SAMPLERS = ("ddpm", "ddim", "dpm_solver_pp", "edm")
BACKBONES = tuple(nets.DENOISERS)           # mlp, resmlp, unet, dit
MAX_T = 100_000                            # longer schedules: use a continuous-time one (EDM)
SEQUENCE_BACKBONES = ("unet", "dit")        # denoise (batch, horizon, dim) trajectories


# The fields that change only how a trained model samples, never its loss (EDM's noise levels
# and churn included): an algorithm whose training never samples lists them among its `ACTING`
# fields. Switching between EDM and a discrete sampler is another model (checked by
# `bench.evaluate`).
SAMPLING_FIELDS = tuple(f"diffusion.{f}" for f in (
    "sampler", "steps", "eta", "spacing", "clip_x0", "sigma_min", "sigma_max", "churn",
    "s_tmin", "s_tmax", "s_noise"))


@dataclasses.dataclass(frozen=True)
class DiffusionSpec:
    schedule: str = "vp"            # linear | cosine | vp (discrete samplers)
    T: int = 5                      # diffusion steps of the discrete noise model
    parameterization: str = "eps"   # eps | x0 | v: what the network predicts
    sampler: str = "ddpm"           # ddpm | ddim | dpm_solver_pp | edm
    steps: int = 0                  # sampling steps; 0: T (ddpm always runs all T; edm needs it)
    eta: float = 0.0                # DDIM's noise (0: deterministic)
    spacing: str = "even"           # even | logsnr: which timesteps DDIM/DPM-Solver++ visit
    clip_x0: float = 1.0            # clip the x0 estimate to [-clip_x0, clip_x0]; 0: off
    backbone: str = "mlp"           # mlp | resmlp | unet | dit
    width: int = 256                # mlp/resmlp hidden width, U-Net base dim, DiT hidden
    depth: int = 3                  # mlp layers, resmlp blocks, DiT blocks
    mults: Tuple[int, ...] = (1, 2, 4, 8)  # U-Net channel multipliers
    attention: bool = False         # U-Net linear attention per level (Diffuser's halfcheetah)
    # fields added after results were published, with their value from before (config_dict)
    ADDED_LATER: ClassVar[Dict[str, object]] = {"attention": False}
    heads: int = 4                  # DiT attention heads
    # EDM (sampler = "edm"): training noise distribution and the Heun sampler's settings.
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    p_mean: float = -1.2
    p_std: float = 1.2
    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 1000.0          # above sigma_max: churn at every level
    s_noise: float = 1.0

    def check(self):
        for name, value, options in [("schedule", self.schedule, tuple(D.BETA_SCHEDULES)),
                                     ("parameterization", self.parameterization,
                                      D.PARAMETERIZATIONS),
                                     ("sampler", self.sampler, SAMPLERS),
                                     ("spacing", self.spacing, ("even", "logsnr")),
                                     ("backbone", self.backbone, BACKBONES)]:
            if value not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        for name in ("T", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.T > MAX_T:
            raise ConfigError(f"T must be at most {MAX_T:,d} (its schedule is a table of T "
                              f"entries), got {self.T:,d}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0 (0: T), got {self.steps}")
        if self.attention and self.backbone != "unet":
            raise ConfigError(f"attention is the U-Net's (backbone=unet); backbone="
                              f"{self.backbone} has none, set diffusion.attention=false")
        if self.clip_x0 < 0 or self.eta < 0:
            raise ConfigError("clip_x0 and eta must be >= 0")
        if self.sampler == "ddpm" and self.steps not in (0, self.T):
            raise ConfigError(f"steps={self.steps}: ddpm runs all T={self.T} steps; use "
                              "sampler=ddim or dpm_solver_pp for fewer")
        if self.sampler in ("ddim", "dpm_solver_pp") and self.steps > self.T:
            raise ConfigError(f"steps={self.steps} exceeds T={self.T}")
        if self.sampler == "edm":
            if self.steps < 1:
                raise ConfigError("sampler=edm needs steps (its number of noise levels), e.g. "
                                  "diffusion.steps=18")
            if not 0 < self.sigma_min < self.sigma_max or self.sigma_data <= 0 \
                    or self.p_std <= 0 or self.churn < 0 or self.s_noise <= 0:
                raise ConfigError("EDM needs 0 < sigma_min < sigma_max, sigma_data > 0, "
                                  "p_std > 0, churn >= 0, s_noise > 0")
        if self.spacing == "logsnr" and self.sampler not in ("ddim", "dpm_solver_pp"):
            raise ConfigError("spacing=logsnr applies to the ddim and dpm_solver_pp samplers")

    @property
    def sampling_steps(self) -> int:
        return self.steps or self.T

    @functools.cached_property
    def sched(self) -> D.Schedule:
        # Concrete arrays even when first asked for inside a trace, so every later trace (one
        # seed, vmapped seeds, the acting rule) reuses the same constants.
        with jax.ensure_compile_time_eval():
            return D.schedule(self.schedule, self.T)

    @property
    def clip(self):
        return self.clip_x0 if self.clip_x0 > 0 else None


def check_backbone(spec: DiffusionSpec, sequence: bool):
    """One line when a backbone does not fit the data: action and transition models take the
    MLPs, trajectory models the U-Net and the transformer."""
    if sequence != (spec.backbone in SEQUENCE_BACKBONES):
        fits = SEQUENCE_BACKBONES if sequence else tuple(
            b for b in BACKBONES if b not in SEQUENCE_BACKBONES)
        kind = "trajectories" if sequence else "flat vectors (actions, transitions)"
        raise ConfigError(f"diffusion.backbone={spec.backbone!r} does not denoise {kind}; "
                          f"use one of {', '.join(fits)}")


def make_denoiser(spec: DiffusionSpec, cond_encoder=None):
    """The backbone as a Flax module called `(x, t, cond, drop) -> prediction`."""
    if spec.backbone == "mlp":
        return nets.MLPDenoiser(hidden=(spec.width,) * spec.depth, cond_encoder=cond_encoder)
    if spec.backbone == "resmlp":
        return nets.ResidualMLPDenoiser(width=spec.width, depth=spec.depth)
    if spec.backbone == "unet":
        return nets.TemporalUnet(dim=spec.width, dim_mults=spec.mults, attention=spec.attention,
                                 cond_encoder=cond_encoder)
    return nets.DiTDenoiser(hidden=spec.width, depth=spec.depth, heads=spec.heads,
                            cond_encoder=cond_encoder)


def _edm(spec, net_fn):
    return D.edm_precondition(net_fn, spec.sigma_data)


def make_loss(spec: DiffusionSpec):
    """`loss(net_fn, key, x0, cond=None, *, weights=None, mask=None, inpaint=None)`: the
    denoising loss of the spec's noise model (one noise level per sample)."""
    def loss(net_fn, key, x0, cond=None, *, weights=None, mask=None, inpaint=None):
        if spec.sampler == "edm":
            if inpaint is not None:
                raise ValueError("EDM training with inpainting is not supported")
            return D.edm_loss(_edm(spec, net_fn), key, x0, cond, sigma_data=spec.sigma_data,
                              P_mean=spec.p_mean, P_std=spec.p_std, weights=weights, mask=mask)
        return D.diffusion_loss(net_fn, spec.sched, key, x0, cond,
                                parameterization=spec.parameterization, weights=weights,
                                mask=mask, inpaint=inpaint)
    return loss


def make_sampler(spec: DiffusionSpec):
    """`sample(net_fn, key, shape, cond=None, *, inpaint=None, guide=None, return_chain=False,
    temperature=1.0)` with the spec's sampler, steps, spacing and clipping (`temperature`, the
    noise multiplier of low-temperature sampling: ddpm and ddim only)."""
    def sample(net_fn, key, shape, cond=None, *, inpaint=None, guide=None, return_chain=False,
               temperature=1.0):
        kw = dict(clip_x0=spec.clip, inpaint=inpaint, return_chain=return_chain)
        if guide is not None and spec.sampler != "ddpm":
            raise ValueError("value guidance is implemented for the ddpm sampler")
        if temperature != 1.0:
            if spec.sampler not in ("ddpm", "ddim"):
                raise ValueError("temperature is implemented for the ddpm and ddim samplers")
            kw["temperature"] = temperature
        if spec.sampler == "ddpm":
            return D.ddpm_sample(net_fn, spec.sched, key, shape, cond, guide=guide,
                                 parameterization=spec.parameterization, **kw)
        if spec.sampler == "ddim":
            return D.ddim_sample(net_fn, spec.sched, key, shape, cond, eta=spec.eta,
                                 steps=spec.sampling_steps, spacing=spec.spacing,
                                 parameterization=spec.parameterization, **kw)
        if spec.sampler == "dpm_solver_pp":
            return D.dpm_solver_pp_sample(net_fn, spec.sched, key, shape, cond,
                                          steps=spec.sampling_steps, spacing=spec.spacing,
                                          parameterization=spec.parameterization, **kw)
        sigmas = D.edm_sigmas(spec.sampling_steps, spec.sigma_min, spec.sigma_max)
        return D.edm_sample(_edm(spec, net_fn), sigmas, key, shape, cond, S_churn=spec.churn,
                            S_tmin=spec.s_tmin, S_tmax=spec.s_tmax, S_noise=spec.s_noise, **kw)
    return sample


def make_one_step(spec: DiffusionSpec):
    """`one_step(net_fn, key, x0, cond) -> x0_hat`: EDP's action approximation (Kang et al.
    2023). Noise `x0` to a level drawn as in training and denoise it in one network call,
    instead of running the chain; gradients then flow through one call."""
    def one_step(net_fn, key, x0, cond=None):
        k_t, k_eps = jax.random.split(key)
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        if spec.sampler == "edm":
            sigma = jnp.exp(spec.p_mean + spec.p_std * jax.random.normal(k_t, x0.shape[:1]))
            x0_hat = _edm(spec, net_fn)(x0 + D.expand_like(sigma, x0) * eps, sigma, cond)
        else:
            t = jax.random.randint(k_t, x0.shape[:1], 0, spec.T)
            x_t = D.q_sample(spec.sched, x0, t, eps)
            x0_hat, _ = D.x0_and_eps(spec.sched, x_t, t, net_fn(x_t, t, cond),
                                     spec.parameterization)
        return x0_hat if spec.clip is None else jnp.clip(x0_hat, -spec.clip, spec.clip)
    return one_step
