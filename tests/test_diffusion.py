"""algos.diffusion against independent answers: closed forms, Gaussian conditioning, exact
probability-flow maps, and the known distributions that the samplers must reproduce."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from algos import diffusion as D

KEY = jax.random.PRNGKey(0)
# A 2-D mixture with unequal weights and a correlated component: the target of the sampler tests.
MIXTURE = D.GaussianMixture.create([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]],
                                   [np.eye(2) * 0.25, [[0.5, 0.2], [0.2, 0.3]]])
GAUSSIAN = D.GaussianMixture.create([1.0], [[1.0, -0.5]], [[[0.6, 0.25], [0.25, 0.4]]])
N = 8192


# ------------------------------------------------------------------------------------ schedules

def test_vp_betas_match_the_vp_sde_closed_form():
    T, bmin, bmax = 5, 0.1, 10.0
    abar = D.make_schedule(D.vp_betas(T, bmin, bmax)).alphas_cumprod
    t = np.arange(1, T + 1)
    # prod_{s<=t} (1 - beta_s) = exp(-(bmin t / T + (bmax - bmin) t^2 / (2 T^2)))
    np.testing.assert_allclose(abar, np.exp(-(bmin * t / T + 0.5 * (bmax - bmin) * t ** 2 / T ** 2)),
                               rtol=1e-5)


def test_cosine_and_linear_betas():
    T, s = 50, 0.008
    abar = np.cumprod(1 - D.cosine_betas(T, s))
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(abar[:-1], f(np.arange(1, T)) / f(0), rtol=1e-9)
    lin = D.linear_betas(10, 1e-4, 2e-2)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(2e-2)
    np.testing.assert_allclose(np.diff(lin), (2e-2 - 1e-4) / 9)


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown schedule"):
        D.schedule("quadratic", 10)
    with pytest.raises(ValueError, match="T >= 1"):
        D.schedule("cosine", 0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        D.make_schedule([0.1, 1.0])


def test_q_posterior_equals_gaussian_conditioning():
    sched = D.schedule("linear", 10, beta_start=0.05, beta_end=0.3)
    for t in (1, 4, 9):
        abar_prev = float(sched.alphas_cumprod[t - 1])
        beta = float(sched.betas[t])
        # Joint of (x0, x_{t-1}, x_t) for scalar x0 ~ N(0, 1), built step by step.
        a_prev, s_prev = np.sqrt(abar_prev), np.sqrt(1 - abar_prev)
        A = np.array([[1, 0, 0], [a_prev, s_prev, 0],
                      [np.sqrt(1 - beta) * a_prev, np.sqrt(1 - beta) * s_prev, np.sqrt(beta)]])
        cov = A @ A.T  # x = A @ (x0, e1, e2)
        obs = [0, 2]
        gain = cov[1, obs] @ np.linalg.inv(cov[np.ix_(obs, obs)])
        var = cov[1, 1] - gain @ cov[obs, 1]
        x0, xt = jnp.array([0.7]), jnp.array([-1.3])
        mean, v, _ = D.q_posterior(sched, x0, xt, t)
        np.testing.assert_allclose(mean, gain @ np.array([0.7, -1.3]), rtol=1e-4)
        np.testing.assert_allclose(v, var, rtol=1e-4)


def test_expand_like_broadcasts_per_sample_values():
    x = jnp.ones((3, 4, 2))
    assert D.expand_like(jnp.array([1.0, 2.0, 3.0]), x).shape == (3, 1, 1)
    assert D.expand_like(2.0, x).shape == (1, 1, 1)
    np.testing.assert_array_equal((D.expand_like(jnp.arange(3.0), x) * x)[:, 2, 1], [0, 1, 2])


def test_q_sample_moments():
    sched = D.schedule("cosine", 20)
    t = 12
    x0 = jnp.full((200_000,), 1.5)
    xt = D.q_sample(sched, x0, t, jax.random.normal(KEY, x0.shape))
    abar = float(sched.alphas_cumprod[t])
    assert float(xt.mean()) == pytest.approx(1.5 * np.sqrt(abar), abs=0.01)
    assert float(xt.var()) == pytest.approx(1 - abar, rel=0.02)


@pytest.mark.parametrize("param", D.PARAMETERIZATIONS)
def test_targets_and_x0_eps_invert_each_other(param):
    sched = D.schedule("cosine", 30)
    k1, k2, k3 = jax.random.split(KEY, 3)
    x0 = jax.random.normal(k1, (64, 3))
    eps = jax.random.normal(k2, (64, 3))
    t = jax.random.randint(k3, (64,), 0, 30)
    xt = D.q_sample(sched, x0, t, eps)
    x0_hat, eps_hat = D.x0_and_eps(sched, xt, t, D.prediction_target(sched, x0, eps, t, param), param)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
    np.testing.assert_allclose(eps_hat, eps, atol=2e-3)


# --------------------------------------------------------------------------------------- analytic

def test_mixture_log_prob_matches_scipy():
    x = np.array([[0.3, -0.2], [2.5, 1.0], [-2.0, 0.4]])
    ref = np.log(sum(w * multivariate_normal(m, c).pdf(x) for w, m, c in
                     zip(MIXTURE.weights, MIXTURE.means, MIXTURE.covs)))
    np.testing.assert_allclose(MIXTURE.log_prob(jnp.asarray(x)), ref, rtol=1e-5)


def test_posterior_mean_is_tweedie_of_the_noised_density():
    # E[x0 | x] = (x + s^2 grad log p_noised(x)) / a: the score route is independent of ours.
    a, s = 0.8, 0.6
    x = jax.random.normal(KEY, (16, 2)) * 2
    score = jax.vmap(jax.grad(lambda y: MIXTURE.log_prob(y, a, s)))(x)
    np.testing.assert_allclose(MIXTURE.posterior_mean(x, a, s), (x + s ** 2 * score) / a,
                               rtol=1e-4, atol=1e-4)


def test_mixture_sample_moments():
    x, comp = MIXTURE.sample(KEY, 40_000)
    assert float((comp == 1).mean()) == pytest.approx(0.7, abs=0.01)
    for k in (0, 1):
        mean, cov = _moments(x[np.asarray(comp == k)])
        np.testing.assert_allclose(mean, MIXTURE.means[k], atol=0.02)
        np.testing.assert_allclose(cov, MIXTURE.covs[k], atol=0.02)


# ----------------------------------------------------------------------------------------- losses

def test_weighted_mse_weights_and_mask():
    pred, target = jnp.zeros((2, 3)), jnp.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    assert float(D.weighted_mse(pred, target)) == pytest.approx((1 + 4 + 9 + 3) / 6)
    w = jnp.array([10.0, 1.0, 1.0])
    assert float(D.weighted_mse(pred, target, w)) == pytest.approx((10 + 4 + 9 + 10 + 2) / 6)
    mask = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    assert float(D.weighted_mse(pred, target, None, mask)) == pytest.approx(3 / 3)


def test_diffusion_loss_of_a_zero_denoiser_is_the_noise_energy():
    sched = D.schedule("cosine", 10)
    x0 = jax.random.normal(KEY, (20_000, 3))
    zero = lambda x, t, c: jnp.zeros_like(x)  # noqa: E731
    loss = D.diffusion_loss(zero, sched, KEY, x0, parameterization="eps",
                            weights=jnp.array([10.0, 1.0, 1.0]))
    assert float(loss) == pytest.approx(12 / 3, rel=0.02)       # E[w eps^2] per entry
    loss = D.diffusion_loss(zero, sched, KEY, x0, parameterization="x0")
    assert float(loss) == pytest.approx(1.0, rel=0.02)          # E[x0^2]


def test_diffusion_loss_of_the_ideal_denoiser_is_the_posterior_variance():
    sd = 1.7
    gm = D.GaussianMixture.create([1.0], [[0.0]], [[[sd ** 2]]])
    sched = D.schedule("cosine", 16)
    x0, _ = gm.sample(KEY, 100_000)
    loss = D.diffusion_loss(gm.vp_denoiser(sched, "eps"), sched, jax.random.PRNGKey(3), x0)
    abar = np.asarray(sched.alphas_cumprod, np.float64)
    # Var(eps | x_t) = 1 - (1 - abar) / (abar sd^2 + 1 - abar), averaged over uniform t.
    expected = np.mean(1 - (1 - abar) / (abar * sd ** 2 + 1 - abar))
    assert float(loss) == pytest.approx(expected, rel=0.03)


def test_diffusion_loss_inpainting_shows_clean_entries_to_the_denoiser():
    sched = D.schedule("cosine", 10)
    x0 = jax.random.normal(KEY, (8, 4, 2))
    mask, values = D.inpaint_at((4, 2), (0, slice(None)), jnp.zeros(2))
    seen = []

    def spy(x, t, c):
        seen.append(x)
        return jnp.zeros_like(x)

    D.diffusion_loss(spy, sched, KEY, x0, inpaint=(mask, x0[:, :1] * 0 + x0[:, :1]))
    np.testing.assert_array_equal(seen[0][:, 0], x0[:, 0])
    assert not np.allclose(seen[0][:, 1:], x0[:, 1:])
    assert mask.sum() == 2 and values.shape == (4, 2)


def test_edm_loss_of_the_ideal_denoiser_is_one():
    sd = 0.5
    gm = D.GaussianMixture.create([1.0], [[0.0, 0.0]], [np.eye(2) * sd ** 2])
    x0, _ = gm.sample(KEY, 100_000)
    loss = D.edm_loss(gm.edm_denoiser(), jax.random.PRNGKey(5), x0, sigma_data=sd)
    assert float(loss) == pytest.approx(1.0, rel=0.02)


def test_edm_precondition_with_a_zero_network_is_the_ideal_gaussian_denoiser():
    sd = 0.7
    gm = D.GaussianMixture.create([1.0], [[0.0, 0.0]], [np.eye(2) * sd ** 2])
    seen = {}

    def raw(x, c_noise, cond):
        seen["x"], seen["c"] = x, c_noise
        return jnp.zeros_like(x)

    sigma = jnp.array([0.1, 1.0, 10.0, 80.0])
    x = jax.random.normal(KEY, (4, 2)) * jnp.sqrt(sd ** 2 + sigma[:, None] ** 2)
    np.testing.assert_allclose(D.edm_precondition(raw, sd)(x, sigma, None),
                               gm.edm_denoiser()(x, sigma), rtol=1e-5)
    np.testing.assert_allclose(seen["c"], np.log(sigma) / 4, rtol=1e-6)
    np.testing.assert_allclose(seen["x"], x / np.sqrt(sd ** 2 + sigma[:, None] ** 2), rtol=1e-6)


# -------------------------------------------------------------------------------------- samplers

def test_step_grids():
    ts = D.sampling_timesteps(100, 7)
    assert ts[0] == 99 and ts[-1] == 0 and len(set(ts)) == 7 and np.all(np.diff(ts) < 0)
    assert list(D.sampling_timesteps(5, 5)) == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="between 1 and T"):
        D.sampling_timesteps(5, 6)
    rho = 7.0
    sig = np.asarray(D.edm_sigmas(8, 0.002, 80.0, rho), np.float64)
    assert sig[-1] == 0 and sig[0] == pytest.approx(80) and sig[-2] == pytest.approx(0.002)
    np.testing.assert_allclose(np.diff(np.diff(sig[:-1] ** (1 / rho))), 0, atol=1e-5)


SCHED = D.schedule("cosine", 500)

SAMPLERS = {
    "ddpm": lambda gm, k, n: D.ddpm_sample(gm.vp_denoiser(SCHED), SCHED, k, (n, 2)),
    "ddpm-x0-beta": lambda gm, k, n: D.ddpm_sample(gm.vp_denoiser(SCHED, "x0"), SCHED, k, (n, 2),
                                                   parameterization="x0", variance="beta"),
    "ddim-eta1": lambda gm, k, n: D.ddim_sample(gm.vp_denoiser(SCHED), SCHED, k, (n, 2),
                                                steps=250, eta=1.0),
    "ddim-eta0-v": lambda gm, k, n: D.ddim_sample(gm.vp_denoiser(SCHED, "v"), SCHED, k, (n, 2),
                                                  steps=100, parameterization="v"),
    "dpm-solver++": lambda gm, k, n: D.dpm_solver_pp_sample(gm.vp_denoiser(SCHED, "x0"), SCHED, k,
                                                           (n, 2), steps=25, parameterization="x0"),
    "edm-synther-churn": lambda gm, k, n: D.edm_sample(
        gm.edm_denoiser(), D.edm_sigmas(128), k, (n, 2), S_churn=80, S_tmin=0.05, S_tmax=50,
        S_noise=1.003),
    "edm-ode": lambda gm, k, n: D.edm_sample(gm.edm_denoiser(), D.edm_sigmas(32), k, (n, 2)),
}


def _moments(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x.T)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_reproduces_a_gaussian_mixture(name):
    x = jax.jit(SAMPLERS[name], static_argnums=2)(MIXTURE, jax.random.PRNGKey(11), N)
    assert x.shape == (N, 2) and bool(jnp.all(jnp.isfinite(x)))
    right = np.asarray(x[:, 0] > 0)          # the modes sit at x = -2 and x = +2
    assert right.mean() == pytest.approx(0.7, abs=0.02)
    for mask, k in ((~right, 0), (right, 1)):
        mean, cov = _moments(x[mask])
        np.testing.assert_allclose(mean, MIXTURE.means[k], atol=0.05)
        np.testing.assert_allclose(cov, MIXTURE.covs[k], atol=0.05)


@pytest.mark.parametrize("name", ["ddpm", "ddim-eta0-v", "edm-synther-churn"])
def test_sampler_reproduces_a_gaussian(name):
    x = jax.jit(SAMPLERS[name], static_argnums=2)(GAUSSIAN, jax.random.PRNGKey(12), N)
    mean, cov = _moments(x)
    np.testing.assert_allclose(mean, GAUSSIAN.means[0], atol=0.04)
    np.testing.assert_allclose(cov, GAUSSIAN.covs[0], atol=0.04)


def test_ddim_with_eta_zero_is_deterministic():
    sched = D.schedule("cosine", 50)
    x_T = jax.random.normal(KEY, (256, 2))
    run = jax.jit(lambda k, eta: D.ddim_sample(MIXTURE.vp_denoiser(sched), sched, k, (256, 2),
                                               steps=10, eta=eta, x_T=x_T))
    a, b = run(jax.random.PRNGKey(1), 0.0), run(jax.random.PRNGKey(2), 0.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(run(jax.random.PRNGKey(1), 1.0), run(jax.random.PRNGKey(2), 1.0))


def _exact_flow(x_start, a, s):
    """The probability-flow ODE's exact endpoint for Gaussian data: an affine map between
    Gaussians whose covariances commute, x0 = mu + Sigma^1/2 (a^2 Sigma + s^2 I)^-1/2 (x - a mu)."""
    mu, cov = np.asarray(GAUSSIAN.means[0], np.float64), np.asarray(GAUSSIAN.covs[0], np.float64)
    lam, U = np.linalg.eigh(cov)
    A = U @ np.diag(np.sqrt(lam / (a ** 2 * lam + s ** 2))) @ U.T
    return mu + (np.asarray(x_start, np.float64) - a * mu) @ A.T


def _flow_errors(run, steps_list, x_start, a, s):
    exact = _exact_flow(x_start, a, s)
    return [float(np.mean(np.linalg.norm(np.asarray(run(n)) - exact, axis=-1))) for n in steps_list]


@pytest.mark.parametrize("solver,order", [("ddim", 1), ("dpm-solver++", 2)])
def test_discrete_ode_solvers_converge_to_the_exact_flow_at_their_order(solver, order):
    sched = D.schedule("cosine", 1000)
    x_T = jax.random.normal(KEY, (512, 2))
    fn = {"ddim": D.ddim_sample, "dpm-solver++": D.dpm_solver_pp_sample}[solver]
    run = lambda n: fn(GAUSSIAN.vp_denoiser(sched), sched, KEY, (512, 2), steps=n,  # noqa: E731
                       x_T=x_T)
    a, s = float(sched.sqrt_alphas_cumprod[-1]), float(sched.sqrt_one_minus_alphas_cumprod[-1])
    errs = _flow_errors(run, [6, 12, 24, 48], x_T, a, s)
    ratios = [e1 / e2 for e1, e2 in zip(errs, errs[1:])]
    # Doubling the steps divides the error by about 2^order once the steps are small enough
    # (measured: DDIM 2.1, 2.0, 2.0; DPM-Solver++(2M) 2.2, 3.5, 4.1).
    assert min(ratios) > 1.8 and ratios[-1] > 0.8 * 2 ** order, (errs, ratios)


def test_edm_heun_converges_to_the_exact_flow_at_second_order():
    x_T = 80.0 * jax.random.normal(KEY, (512, 2))
    run = lambda n: D.edm_sample(GAUSSIAN.edm_denoiser(), D.edm_sigmas(n), KEY, (512, 2),  # noqa: E731
                                 x_T=x_T)
    # chains longer than samplers.UNROLL_MAX, so loops: 4 s on 2 cores where 8, 16 and 32
    # steps, unrolled, compiled for 59 s
    errs = _flow_errors(run, [33, 66, 132], x_T, 1.0, 80.0)
    ratios = [e1 / e2 for e1, e2 in zip(errs, errs[1:])]
    assert min(ratios) > 3.2 and errs[-1] < 0.02, (errs, ratios)   # measured 4.27, 4.14


def test_return_chain_starts_at_noise_and_ends_at_the_sample():
    sched = D.schedule("cosine", 20)
    x, chain = D.ddim_sample(MIXTURE.vp_denoiser(sched), sched, KEY, (16, 2), steps=5,
                             return_chain=True)
    assert chain.shape == (6, 16, 2)
    np.testing.assert_array_equal(chain[-1], x)
    x, chain = D.edm_sample(MIXTURE.edm_denoiser(), D.edm_sigmas(5), KEY, (16, 2),
                            return_chain=True)
    assert chain.shape == (6, 16, 2) and float(jnp.std(chain[0])) > 20


# ---------------------------------------------------------------------------------------- guidance

INPAINT = (jnp.array([True, False]), jnp.array([1.2345, 0.0]))


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm", "edm"])
def test_inpainted_entries_are_exact(name):
    sched = D.schedule("cosine", 20)
    den = MIXTURE.vp_denoiser(sched)
    # DDPM over T=40, a loop: at T=20 its chain is unrolled (samplers.UNROLL_MAX), 24 s of
    # compile on 2 cores for the same inpainting code
    long = D.schedule("cosine", 40)
    x = {"ddpm": lambda: D.ddpm_sample(MIXTURE.vp_denoiser(long), long, KEY, (64, 2),
                                       inpaint=INPAINT),
         "ddim": lambda: D.ddim_sample(den, sched, KEY, (64, 2), steps=5, inpaint=INPAINT),
         "dpm": lambda: D.dpm_solver_pp_sample(den, sched, KEY, (64, 2), steps=5, inpaint=INPAINT),
         "edm": lambda: D.edm_sample(MIXTURE.edm_denoiser(), D.edm_sigmas(8), KEY, (64, 2),
                                     S_churn=5, inpaint=INPAINT)}[name]()
    np.testing.assert_array_equal(x[:, 0], np.float32(1.2345))
    assert float(jnp.std(x[:, 1])) > 0.1


def test_classifier_free_guidance_interpolates_between_the_two_models():
    sched = D.schedule("cosine", 20)
    cond_gm = D.GaussianMixture.create([1.0], [[3.0, 3.0]], [np.eye(2) * 0.1])
    cond_fn, uncond_fn = cond_gm.vp_denoiser(sched), MIXTURE.vp_denoiser(sched)
    x = jax.random.normal(KEY, (32, 2))
    for w, ref in ((0.0, uncond_fn), (1.0, cond_fn)):
        np.testing.assert_allclose(D.classifier_free(cond_fn, uncond_fn, w)(x, 7, None),
                                   ref(x, 7, None), rtol=1e-6, atol=1e-6)
    # Sampling with w = 0 is sampling the unconditional model; w = 1 the conditional one.
    run = jax.jit(lambda fn: D.ddim_sample(fn, sched, KEY, (32, 2), steps=5), static_argnums=0)
    for w, ref in ((0.0, uncond_fn), (1.0, cond_fn)):
        np.testing.assert_allclose(run(D.classifier_free(cond_fn, uncond_fn, w)), run(ref),
                                   atol=1e-5)
    # w = 2 extrapolates past the conditional prediction.
    two = D.classifier_free(cond_fn, uncond_fn, 2.0)(x, 7, None)
    np.testing.assert_allclose(two, 2 * cond_fn(x, 7, None) - uncond_fn(x, 7, None), atol=1e-5)


def test_condition_dropout_rate():
    drop = D.condition_dropout(KEY, 100_000, 0.25)
    assert drop.dtype == jnp.bool_ and float(drop.mean()) == pytest.approx(0.25, abs=0.01)


def test_value_guidance_moves_samples_uphill():
    # Data N(0, I); value = x[0] (its gradient is (1, 0) everywhere). Guidance must raise the
    # first coordinate and leave the second alone, and t_stopgrad >= T must switch it off.
    gm = D.GaussianMixture.create([1.0], [[0.0, 0.0]], [np.eye(2)])
    sched = D.schedule("cosine", 50)
    value = lambda x, t, c: x[:, 0]  # noqa: E731

    def run(guide):
        return D.ddpm_sample(gm.vp_denoiser(sched), sched, KEY, (4096, 2), guide=guide)

    plain = run(None)
    guided = run(D.ValueGuide(value, scale=1.0, n_guide_steps=2, t_stopgrad=0))
    off = run(D.ValueGuide(value, scale=1.0, n_guide_steps=2, t_stopgrad=50))
    shift = float(guided[:, 0].mean() - plain[:, 0].mean())
    assert shift > 0.3, shift
    np.testing.assert_allclose(guided[:, 1], plain[:, 1], atol=1e-5)
    np.testing.assert_allclose(off, plain, atol=1e-6)
    # The direct effect of one guided step at t is 2 * scale * posterior variance(t) (clipped at
    # t = 0, as in Diffuser); the total shift cannot exceed the sum of those kicks.
    assert shift < 2 * float(jnp.sum(jnp.exp(sched.posterior_log_variance_clipped)))


# -------------------------------------------------------------------------------------------- vmap

def test_samplers_vmap_over_seeds():
    sched = D.schedule("cosine", 20)
    long = D.schedule("cosine", 40)  # DDPM's chain as a loop: unrolled, its compile is 24 s
    keys = jax.random.split(KEY, 3)
    runs = {
        "ddpm": lambda k: D.ddpm_sample(MIXTURE.vp_denoiser(long), long, k, (8, 2)),
        "dpm": lambda k: D.dpm_solver_pp_sample(MIXTURE.vp_denoiser(sched), sched, k, (8, 2), steps=4),
        "edm": lambda k: D.edm_sample(MIXTURE.edm_denoiser(), D.edm_sigmas(4), k, (8, 2), S_churn=5),
    }
    for name, run in runs.items():
        batched = jax.jit(jax.vmap(run))(keys)
        one = jax.jit(run)
        for i, k in enumerate(keys):
            np.testing.assert_allclose(batched[i], one(k), rtol=1e-5, atol=1e-5, err_msg=name)
