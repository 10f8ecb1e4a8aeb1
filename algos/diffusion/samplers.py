"""Samplers: pure functions of ``(denoise_fn, schedule or sigmas, key, shape, ...)``.

Each is one ``lax.scan`` over its steps, so it jits, vmaps (over keys, conditions, or the
parameters closed over by ``denoise_fn``) and differentiates. A denoiser is any function
``(x, t, cond) -> prediction``; ``t`` is passed as a scalar (an int index for the discrete
samplers, the noise level sigma for EDM), and networks broadcast it over the batch. Every sampler
returns the final sample, or ``(sample, chain)`` with ``return_chain=True``, where ``chain`` stacks
the initial noise and the state after every step (``steps + 1`` entries).

Discrete-time samplers (DDPM, DDIM, DPM-Solver++) take a ``Schedule``; EDM takes a decreasing
array of noise levels ending in 0 (``edm_sigmas``) and a preconditioned denoiser
(``edm_precondition``) that predicts the clean sample.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from algos.diffusion.guidance import ValueGuide, apply_inpainting, guide_step
from algos.diffusion.schedules import Schedule, _at, expand_like, q_posterior, x0_and_eps


# Chains of at most this many steps are unrolled into straight-line code: XLA then fuses
# across steps (measured on the 2-core CPU: Diffusion-QL's train step 26% faster at T=5) and
# its cost analysis counts every step, not the loop body once. Longer chains stay loops, which
# keeps compile time flat in the number of steps.
UNROLL_MAX = 32


def _scan(step, init, xs, length: int, unroll: bool = True):
    return jax.lax.scan(step, init, xs, unroll=True if unroll and length <= UNROLL_MAX else 1)


def _x0_eps(denoise_fn, sched, x, t, cond, parameterization, clip_x0):
    """The denoiser's clean-sample and noise estimates at ``x_t``, with optional x0 clipping
    (Diffuser and Diffusion-QL clip x0 to the data range; the noise is recomputed to match)."""
    x0, eps = x0_and_eps(sched, x, t, denoise_fn(x, t, cond), parameterization)
    if clip_x0 is not None:
        x0, eps = x0_and_eps(sched, x, t, jnp.clip(x0, -clip_x0, clip_x0), "x0")
    return x0, eps


def _finish(x, xs, x_init, return_chain):
    if not return_chain:
        return x
    return x, jnp.concatenate([x_init[None], xs], axis=0)


def _initial(key, shape, scale, x_T, inpaint):
    x = scale * jax.random.normal(key, shape) if x_T is None else jnp.asarray(x_T)
    return apply_inpainting(x, inpaint)


SPACINGS = ("even", "logsnr")


def sampling_timesteps(T: int, steps: int, spacing: str = "even",
                       alphas_cumprod=None) -> np.ndarray:
    """``steps`` distinct indices of ``0 .. T-1``, decreasing, from ``T-1`` down to 0.

    ``spacing="even"``: evenly spread indices. ``"logsnr"``: evenly spread in the log
    signal-to-noise ratio ``lambda_t = log(sqrt(abar_t) / sqrt(1 - abar_t))`` of the schedule
    (``alphas_cumprod`` needed), the spacing DPM-Solver recommends: even spacing of a cosine
    schedule crowds the steps where lambda changes slowly and over-disperses at ~20 steps. Each
    target lambda maps to its nearest index, then collisions are pushed apart so exactly
    ``steps`` distinct indices remain.
    """
    steps = int(steps)
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if steps == 1:
        return np.array([T - 1])
    if spacing == "even":
        return np.round(np.linspace(0, T - 1, steps)).astype(np.int32)[::-1].copy()
    if alphas_cumprod is None:
        raise ValueError("log-SNR spacing needs the schedule's alphas_cumprod")
    abar = np.asarray(alphas_cumprod, np.float64)
    lam = 0.5 * (np.log(abar) - np.log1p(-abar))              # decreasing in t
    targets = np.linspace(lam[0], lam[-1], steps)               # from t = 0 to t = T - 1
    idx = np.abs(lam[None, :] - targets[:, None]).argmin(1)     # increasing, maybe repeated
    idx[0], idx[-1] = 0, T - 1
    for i in range(1, steps):                                   # distinct, increasing ...
        idx[i] = max(idx[i], idx[i - 1] + 1)
    for i in range(steps - 1, -1, -1):                          # ... and within 0 .. T-1
        idx[i] = min(idx[i], T - 1 - (steps - 1 - i))
    return idx.astype(np.int32)[::-1].copy()


def ddpm_sample(denoise_fn, sched: Schedule, key, shape, cond=None, *, parameterization="eps",
                clip_x0=None, variance="posterior", guide: ValueGuide | None = None,
                inpaint=None, x_T=None, return_chain=False, temperature=1.0):
    """Ancestral sampling over all ``T`` steps (Ho et al. 2020).

    ``variance``: ``"posterior"`` (beta tilde, clipped log at t=0: Diffuser and Diffusion-QL) or
    ``"beta"`` (DDPM's fixed-large choice). ``clip_x0``: clip the x0 estimate to
    ``[-clip_x0, clip_x0]`` before forming the posterior mean (``None``: no clipping).
    ``guide``: Diffuser-style value-gradient guidance applied to ``x_t`` before each step.
    ``inpaint=(mask, values)``: entries held at ``values`` throughout. ``temperature``
    multiplies the initial noise and every step's noise (Decision Diffuser samples at 0.5).
    """
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}")
    k_init, k_steps = jax.random.split(key)
    x_init = _initial(k_init, shape, temperature, x_T, inpaint)
    # DDPM's fixed-large variance uses beta_t, with the posterior variance at t=1 for t=0.
    large_logvar = jnp.log(jnp.concatenate([sched.posterior_variance[1:2], sched.betas[1:]]))

    def step(x, t):
        if guide is not None:
            # Diffuser scales by exp(clipped posterior log-variance): nonzero at t = 0 too.
            var = jnp.exp(_at(sched.posterior_log_variance_clipped, t, x))
            x = guide_step(guide, var, x, t, cond, inpaint)
        x0, _ = _x0_eps(denoise_fn, sched, x, t, cond, parameterization, clip_x0)
        mean, _, logvar = q_posterior(sched, x0, x, t)
        if variance == "beta":
            logvar = _at(large_logvar, t, x)
        z = temperature * jax.random.normal(jax.random.fold_in(k_steps, t), x.shape, x.dtype)
        x = mean + jnp.where(t > 0, jnp.exp(0.5 * logvar), 0.0) * z
        x = apply_inpainting(x, inpaint)
        return x, x

    # A guided step holds 2 x n_guide_steps more network passes: unrolled, Diffuser's T=20
    # guided planner took minutes to compile on 2 cores.
    x, xs = _scan(step, x_init, jnp.arange(sched.T - 1, -1, -1), sched.T,
                  unroll=guide is None)
    return _finish(x, xs, x_init, return_chain)


def ddim_sample(denoise_fn, sched: Schedule, key, shape, cond=None, *, steps=None, eta=0.0,
                parameterization="eps", clip_x0=None, inpaint=None, x_T=None,
                return_chain=False, spacing="even", temperature=1.0):
    """DDIM (Song et al. 2021) over ``steps <= T`` timesteps (``spacing``: see
    ``sampling_timesteps``).

    ``eta = 0`` is the deterministic probability-flow sampler; ``eta = 1`` with ``steps = T``
    has DDPM's posterior variance. ``temperature`` multiplies the initial noise and the
    injected noise (with ``eta = 0`` only the initial one).
    """
    ts = sampling_timesteps(sched.T, sched.T if steps is None else steps, spacing,
                            sched.alphas_cumprod)
    k_init, k_steps = jax.random.split(key)
    x_init = _initial(k_init, shape, temperature, x_T, inpaint)
    abar = sched.alphas_cumprod
    abar_prev = jnp.concatenate([abar[ts[1:]], jnp.ones((1,), abar.dtype)])

    def step(x, inputs):
        i, t, ab_prev = inputs
        x0, eps = _x0_eps(denoise_fn, sched, x, t, cond, parameterization, clip_x0)
        ab = abar[t]
        sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        z = temperature * jax.random.normal(jax.random.fold_in(k_steps, i), x.shape, x.dtype)
        x = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma ** 2, 0.0)) * eps
             + sigma * z)
        x = apply_inpainting(x, inpaint)
        return x, x

    x, xs = _scan(step, x_init, (jnp.arange(len(ts)), jnp.asarray(ts), abar_prev), len(ts))
    return _finish(x, xs, x_init, return_chain)


def dpm_solver_pp_sample(denoise_fn, sched: Schedule, key, shape, cond=None, *, steps=10,
                         parameterization="eps", clip_x0=None, inpaint=None, x_T=None,
                         return_chain=False, spacing="even"):
    """DPM-Solver++(2M) (Lu et al. 2022), the multistep second-order data-prediction solver.

    Runs ``steps`` denoiser calls over the timesteps of ``sampling_timesteps(T, steps,
    spacing)`` (``"logsnr"`` is the solver's own recommendation). The first step is first
    order (no history yet) and so is the last one, which lands on the clean sample
    (lambda = +inf), as in the reference implementations; one step is one first-order jump
    from ``T-1`` to the clean sample.
    """
    ts = sampling_timesteps(sched.T, steps, spacing, sched.alphas_cumprod)
    n = len(ts)
    k_init, _ = jax.random.split(key)
    x_init = _initial(k_init, shape, 1.0, x_T, inpaint)

    abar = sched.alphas_cumprod[ts]
    alpha, sigma = jnp.sqrt(abar), jnp.sqrt(1 - abar)
    lam = jnp.log(alpha) - jnp.log(sigma)
    h = lam[1:] - lam[:-1]                               # n - 1 finite step sizes
    last = jnp.arange(n) == n - 1
    pad = lambda a, v: jnp.concatenate([a, jnp.full((1,), v, a.dtype)])  # noqa: E731
    c_x = pad(sigma[1:] / sigma[:-1], 0.0)               # x_next = c_x x + c_d D
    c_d = pad(-alpha[1:] * jnp.expm1(-h), 1.0)
    # r_i = h_{i-1} / h_i for the steps that have a previous one (n - 2 of them), 1 elsewhere.
    r = jnp.concatenate([jnp.ones((1,), h.dtype), h[:-1] / h[1:],
                         jnp.ones((min(n - 1, 1),), h.dtype)])
    second = (jnp.arange(n) > 0) & ~last                  # steps that use the previous D
    w_cur = jnp.where(second, 1 + 0.5 / r, 1.0)
    w_prev = jnp.where(second, -0.5 / r, 0.0)

    def step(carry, inputs):
        x, d_prev = carry
        t, cx, cd, wc, wp = inputs
        d, _ = _x0_eps(denoise_fn, sched, x, t, cond, parameterization, clip_x0)
        x = apply_inpainting(cx * x + cd * (wc * d + wp * d_prev), inpaint)
        return (x, d), x

    (x, _), xs = _scan(step, (x_init, jnp.zeros_like(x_init)),
                       (jnp.asarray(ts), c_x, c_d, w_cur, w_prev), n)
    return _finish(x, xs, x_init, return_chain)


# ----------------------------------------------------------------------------------------- EDM

def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
    """Karras et al.'s noise levels: ``steps`` values from ``sigma_max`` down to ``sigma_min``
    spaced evenly in ``sigma^(1/rho)``, then a final 0."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"EDM needs steps >= 1, got {steps}")
    i = np.arange(steps, dtype=np.float64) / max(steps - 1, 1)
    s = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return jnp.asarray(np.append(s, 0.0), jnp.float32)


def edm_precondition(raw_fn, sigma_data: float = 0.5):
    """EDM's preconditioned denoiser ``D(x, sigma, cond) = c_skip x + c_out F(c_in x, c_noise,
    cond)`` around a raw network ``raw_fn(x, c_noise, cond)``, with ``c_noise = ln(sigma) / 4``.

    ``sigma`` is a scalar or one level per sample. With ``F = 0``, ``D`` is the ideal denoiser of
    zero-mean Gaussian data with standard deviation ``sigma_data``.
    """
    def denoise(x, sigma, cond):
        sigma = jnp.asarray(sigma, x.dtype)
        s = expand_like(sigma, x)
        total = s ** 2 + sigma_data ** 2
        c_skip = sigma_data ** 2 / total
        c_out = s * sigma_data / jnp.sqrt(total)
        c_in = 1 / jnp.sqrt(total)
        return c_skip * x + c_out * raw_fn(c_in * x, jnp.log(sigma) / 4, cond)
    return denoise


def edm_sample(denoise_fn, sigmas, key, shape, cond=None, *, S_churn=0.0, S_tmin=0.0,
               S_tmax=float("inf"), S_noise=1.0, clip_x0=None, inpaint=None, x_T=None,
               return_chain=False):
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2).

    ``sigmas``: decreasing noise levels ending in 0 (``edm_sigmas``). ``denoise_fn(x, sigma,
    cond)`` returns the clean-sample estimate. ``S_churn = 0`` gives the deterministic Heun ODE
    solver; SynthER samples with ``S_churn=80, S_tmin=0.05, S_tmax=50, S_noise=1.003`` over 128
    steps. Each step costs two denoiser calls; the last one (to sigma = 0) is an Euler step
    whose second call is computed and discarded, which keeps one compiled copy of the denoiser.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)
    n = sigmas.shape[0] - 1
    if n < 1:
        raise ValueError("sigmas must hold at least one noise level and the final 0")
    k_init, k_steps = jax.random.split(key)
    x_init = _initial(k_init, shape, sigmas[0], x_T, inpaint)
    gamma_max = min(S_churn / n, np.sqrt(2.0) - 1.0)

    def D(x, s):
        d = denoise_fn(x, s, cond)
        return d if clip_x0 is None else jnp.clip(d, -clip_x0, clip_x0)

    def step(x, inputs):
        i, s, s_next = inputs
        gamma = jnp.where((s >= S_tmin) & (s <= S_tmax), gamma_max, 0.0)
        s_hat = s * (1 + gamma)
        z = jax.random.normal(jax.random.fold_in(k_steps, i), x.shape, x.dtype)
        # sqrt(s_hat^2 - s^2), written so that rounding cannot make it the root of a negative.
        x_hat = apply_inpainting(x + s * jnp.sqrt(gamma * (2 + gamma)) * S_noise * z, inpaint)
        d = (x_hat - D(x_hat, s_hat)) / s_hat
        x_next = x_hat + (s_next - s_hat) * d
        # Heun's correction, except on the final step to sigma = 0. Under vmap a `cond` would
        # evaluate both branches anyway; the guarded sigma keeps the unused branch finite.
        s_safe = jnp.where(s_next > 0, s_next, 1.0)
        d2 = (x_next - D(x_next, s_safe)) / s_safe
        x_next = jnp.where(s_next > 0, x_hat + (s_next - s_hat) * 0.5 * (d + d2), x_next)
        x_next = apply_inpainting(x_next, inpaint)
        return x_next, x_next

    x, xs = _scan(step, x_init, (jnp.arange(n), sigmas[:-1], sigmas[1:]), n)
    return _finish(x, xs, x_init, return_chain)
