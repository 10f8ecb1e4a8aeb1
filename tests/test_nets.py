"""algos.nets: shapes over horizons, condition dropout, vmapped seeds, and a denoiser that
learns a multimodal distribution that a Gaussian cannot fit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algos import diffusion as D
from algos import nets

KEY = jax.random.PRNGKey(0)


def test_sinusoidal_embedding_formula():
    t = jnp.array([0.0, 1.0, 7.5])
    e = nets.sinusoidal_embedding(t, 8)
    freqs = 10000.0 ** (-np.arange(4) / 3)
    np.testing.assert_allclose(e, np.concatenate([np.sin(np.outer(t, freqs)),
                                                  np.cos(np.outer(t, freqs))], axis=1), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="even dim"):
        nets.sinusoidal_embedding(t, 7)


def test_mish_and_drop_condition():
    x = jnp.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(nets.mish(x), x * np.tanh(np.log1p(np.exp(x))), rtol=1e-6)
    # the one-exponential form equals x tanh(softplus(x)), value and gradient, over a wide range
    wide = jnp.linspace(-40.0, 40.0, 4001)
    ref = lambda v: v * jnp.tanh(jax.nn.softplus(v))  # noqa: E731
    np.testing.assert_allclose(nets.mish(wide), ref(wide), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(nets.mish))(wide),
                               jax.vmap(jax.grad(ref))(wide), rtol=1e-5, atol=1e-6)
    e = jnp.ones((3, 4))
    out = nets.drop_condition(e, jnp.array([True, False, True]))
    np.testing.assert_array_equal(out.sum(-1), [0, 4, 0])
    assert nets.drop_condition(e, None) is e


@pytest.mark.parametrize("kernel,length", [(5, 4), (5, 16), (3, 2), (1, 8)])
def test_conv1d_equals_flax_conv(kernel, length):
    import flax.linen as nn

    x = jax.random.normal(KEY, (2, length, 6))
    ref = nn.Conv(7, (kernel,), padding=kernel // 2)
    params = ref.init(KEY, x)
    np.testing.assert_allclose(nets.Conv1d(7, kernel).apply(params, x), ref.apply(params, x),
                               rtol=1e-5, atol=1e-5)


# One module per architecture, shared by the tests, jitted once per input shape.
UNET = nets.TemporalUnet(dim=8, dim_mults=(1, 2, 4, 8), attention=True,
                         cond_encoder=nets.ReturnEncoder(8))
UNET_SHALLOW = nets.TemporalUnet(dim=8, dim_mults=(1, 2, 4), cond_encoder=nets.ReturnEncoder(8))
DIT = nets.DiTDenoiser(hidden=32, depth=2, heads=4, cond_encoder=nets.ReturnEncoder(8))


# the shallow U-Net, then 2 and 8 at its deepest level (16, a compile of 17 s that 64's shape
# path already covers, runs in `make test-slow`)
@pytest.mark.parametrize("horizon", [4, pytest.param(16, marks=pytest.mark.slow), 64])
@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_trajectory_denoisers_keep_the_shape(arch, horizon):
    model = {"unet": UNET if horizon >= 8 else UNET_SHALLOW, "dit": DIT}[arch]
    x = jax.random.normal(KEY, (3, horizon, 14))
    returns = jnp.array([0.1, 0.5, 0.9])
    # random parameters of the right shapes drawn on the host: a jitted `model.init` spends
    # 20-30 s of its compile on the U-Net's 242 threefry draws on 2 cores (the planners'
    # tests run the real initialisation)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype),
                          jax.eval_shape(model.init, KEY, x, jnp.zeros(3), returns))
    out = jax.jit(model.apply)(params, x, jnp.array([0, 5, 19]), returns)
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("mults,attention,authors", [
    ((1, 2, 4, 8), False, 3_956_302),   # Diffuser's locomotion U-Net (config/locomotion.py)
    ((1, 4, 8), False, 3_683_918),      # its maze2d U-Net (maze2d branch, config/maze2d.py)
    ((1, 2, 4, 8), True, 4_450_702),
    ((1, 4, 8), True, 4_112_398),       # halfcheetah's U-Net (attention), here at 14 dims
])
def test_unet_has_the_authors_parameter_count_and_flops(mults, attention, authors):
    """Counts from instantiating jannerm/diffuser's `TemporalUnet(horizon, 14, dim=32, ...)`
    in PyTorch (and by hand: a residual block (i -> o) has 5io + 5o^2 + 39o parameters, plus
    io + o for its 1x1 skip conv). FLOPs: the authors' convolutions and linear layers do
    19,601,408 multiply-adds per forward pass of one horizon-32 trajectory with dim_mults
    (1, 2, 4, 8) (55% of them at horizon 4); XLA's count adds norms, Mish and sums on top."""
    model = nets.TemporalUnet(dim=32, dim_mults=mults, attention=attention)
    x = jnp.zeros((1, 32, 14))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, 0)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(shapes)) == authors
    if mults == (1, 2, 4, 8) and not attention:
        cost = jax.jit(lambda p, x: model.apply(p, x, 0)).lower(shapes, x).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        assert 2 * 19_601_408 <= cost["flops"] <= 1.03 * 2 * 19_601_408, cost["flops"]


@pytest.mark.parametrize("horizon,dims,mults,authors", [
    (32, 14, (1, 2, 4, 8), 2_294_817),   # Diffuser's locomotion value function (hopper: 11 + 3)
    (4, 23, (1, 4, 8), 2_180_833),       # halfcheetah's (horizon 4, 17 + 6)
])
def test_value_function_has_the_authors_parameter_count(horizon, dims, mults, authors):
    """Counts from instantiating jannerm/diffuser's `ValueFunction(horizon, dims, 0, dim=32,
    dim_mults)` (main branch, `diffuser/models/temporal.py`) in PyTorch 2.9.1."""
    model = nets.TemporalValue(dim=32, dim_mults=mults)
    x = jnp.zeros((2, horizon, dims))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, jnp.zeros((2,), jnp.int32))
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(shapes)) == authors
    assert jax.eval_shape(model.apply, shapes, x, jnp.zeros((2,), jnp.int32)).shape == (2,)


def test_unet_rejects_a_horizon_it_cannot_halve():
    with pytest.raises(ValueError, match="multiple of 8"):
        UNET.init(KEY, jnp.zeros((1, 12, 3)), 0)


def test_dropped_condition_is_ignored():
    model = nets.MLPDenoiser(hidden=(32, 32), cond_encoder=nets.StateEncoder(8, (16,)))
    x, s = jnp.ones((4, 3)), jax.random.normal(KEY, (4, 5))
    params = model.init(KEY, x, 0, s)
    drop = jnp.array([True, True, False, False])
    a = model.apply(params, x, 2, s, drop)
    b = model.apply(params, x, 2, s + 10.0, drop)
    np.testing.assert_allclose(a[:2], b[:2], rtol=1e-6)           # dropped: condition unseen
    assert not np.allclose(a[2:], b[2:])                          # kept: condition matters
    # Classifier-free guidance with w=0 is the dropped model; with w=1 the conditional one.
    cond_fn = nets.as_denoiser(model, params)
    uncond_fn = nets.as_denoiser(model, params, drop=True)
    np.testing.assert_allclose(D.classifier_free(cond_fn, uncond_fn, 0.0)(x, 2, s),
                               uncond_fn(x, 2, s), rtol=1e-6)
    np.testing.assert_allclose(D.classifier_free(cond_fn, uncond_fn, 1.0)(x, 2, s),
                               cond_fn(x, 2, s), rtol=1e-5, atol=1e-6)


def test_task_and_return_encoders():
    tasks = nets.TaskEncoder(num_tasks=3, dim=4)
    p = tasks.init(KEY, jnp.array([0, 2]))
    e = tasks.apply(p, jnp.array([0, 2, 0]))
    np.testing.assert_array_equal(e[0], e[2])
    assert e.shape == (3, 4) and not np.allclose(e[0], e[1])
    ret = nets.ReturnEncoder(dim=6)
    p = ret.init(KEY, jnp.zeros(2))
    assert ret.apply(p, jnp.zeros((5, 1))).shape == (5, 6)


def test_residual_mlp_fourier_frequencies_get_no_gradient():
    model = nets.ResidualMLPDenoiser(width=32, depth=2, dim_t=16)
    x = jax.random.normal(KEY, (8, 5))
    params = model.init(KEY, x, jnp.zeros(8))
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x, jnp.linspace(-1, 1, 8)) ** 2))(params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    freq = [g for path, g in flat if "frequencies" in jax.tree_util.keystr(path)]
    assert len(freq) == 1 and float(jnp.abs(freq[0]).sum()) == 0.0
    assert any(float(jnp.abs(g).sum()) > 0 for path, g in flat
               if "frequencies" not in jax.tree_util.keystr(path))


def test_parameters_and_keys_vmap_over_seeds():
    model = nets.MLPDenoiser(hidden=(32, 32))
    sched = D.schedule("vp", 5)
    x0 = jax.random.normal(KEY, (16, 2))
    state = jnp.ones((16, 3))

    def init_and_grad(key):
        params = model.init(key, x0, jnp.zeros(16), state)
        loss_fn = lambda p: D.diffusion_loss(nets.as_denoiser(model, p), sched, key, x0, state)  # noqa: E731
        loss, grads = jax.value_and_grad(loss_fn)(params)
        sample = D.ddpm_sample(nets.as_denoiser(model, params), sched, key, (16, 2), state)
        return loss, grads, sample

    keys = jax.random.split(KEY, 3)
    batched = jax.jit(jax.vmap(init_and_grad))(keys)
    one = jax.jit(init_and_grad)
    for i in range(3):
        single = one(keys[i])
        jax.tree.map(lambda b, s: np.testing.assert_allclose(b[i], s, rtol=2e-5, atol=2e-6),
                     batched, single)
    assert not np.allclose(batched[0][0], batched[0][1])


def _ring(key, n, modes=8, radius=2.0, std=0.1):
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (n,), 0, modes)
    angle = 2 * jnp.pi * idx / modes
    centres = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    return centres + std * jax.random.normal(k2, (n, 2))


def _mode_stats(x, modes=8, radius=2.0, tol=0.5):
    angle = 2 * np.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], -1)
    d = np.linalg.norm(np.asarray(x)[:, None] - centres[None], axis=-1)
    near, which = d.min(1) < tol, d.argmin(1)
    counts = np.bincount(which[near], minlength=modes) / len(x)
    return near.mean(), counts


def test_mlp_denoiser_learns_eight_modes_a_gaussian_cannot():
    model = nets.MLPDenoiser(hidden=(128, 128, 128))
    sched = D.schedule("cosine", 50)
    opt = optax.adam(1e-3)
    params = model.init(KEY, jnp.zeros((1, 2)), 0)

    def train(params, key):
        def step(carry, k):
            params, opt_state = carry
            k_data, k_loss = jax.random.split(k)
            loss, g = jax.value_and_grad(lambda p: D.diffusion_loss(
                nets.as_denoiser(model, p), sched, k_loss, _ring(k_data, 512)))(params)
            updates, opt_state = opt.update(g, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss
        (params, _), losses = jax.lax.scan(step, (params, opt.init(params)),
                                           jax.random.split(key, 3000))
        return params, losses

    params, losses = jax.jit(train)(params, KEY)
    assert float(losses[-200:].mean()) < float(losses[:200].mean())
    sample = jax.jit(lambda p, k: D.ddpm_sample(nets.as_denoiser(model, p), sched, k, (4000, 2)))
    x = sample(params, jax.random.PRNGKey(1))
    near, counts = _mode_stats(x)
    # Every mode holds 1/8 of the data; the diffusion model puts mass on all eight.
    assert near > 0.85 and counts.min() > 0.06, (near, counts)
    # The maximum-likelihood Gaussian of the same data has most of its mass between the modes.
    data = np.asarray(_ring(jax.random.PRNGKey(2), 4000))
    fit = np.random.default_rng(0).multivariate_normal(data.mean(0), np.cov(data.T), 4000)
    assert _mode_stats(fit)[0] < 0.3


# ------------------------------------------------------------------------ critics and policies

def test_tanh_gaussian_density_integrates_to_one_and_matches_samples():
    mean, log_std = jnp.array([[0.4]]), jnp.array([[jnp.log(0.8)]])
    grid = jnp.linspace(-1 + 1e-4, 1 - 1e-4, 20_001)[:, None]
    dens = jnp.exp(nets.tanh_gaussian_log_prob(mean, log_std, grid))
    assert float(jnp.trapezoid(dens, grid[:, 0])) == pytest.approx(1.0, abs=2e-3)
    # Sampled actions: P(a < 0.2) equals the Gaussian CDF at atanh(0.2).
    from scipy.stats import norm
    a, logp = nets.tanh_gaussian_sample(KEY, jnp.broadcast_to(mean, (100_000, 1)),
                                        jnp.broadcast_to(log_std, (100_000, 1)))
    assert float(jnp.abs(a).max()) <= 1.0
    assert float((a < 0.2).mean()) == pytest.approx(norm.cdf(np.arctanh(0.2), 0.4, 0.8), abs=0.005)
    # The returned log-prob is the density at the returned action.
    np.testing.assert_allclose(logp[:100], nets.tanh_gaussian_log_prob(
        jnp.broadcast_to(mean, (100, 1)), jnp.broadcast_to(log_std, (100, 1)), a[:100]),
        rtol=1e-3, atol=1e-3)


def test_gaussian_log_prob_matches_scipy():
    from scipy.stats import norm
    mean, log_std = jnp.array([0.1, -0.3]), jnp.array([0.0, -1.0])
    x = jnp.array([0.5, 0.2])
    ref = norm.logpdf(0.5, 0.1, 1.0) + norm.logpdf(0.2, -0.3, np.exp(-1.0))
    assert float(nets.gaussian_log_prob(mean, log_std, x)) == pytest.approx(ref, rel=1e-5)


def test_critics_and_policies_shapes_bounds_and_independent_heads():
    obs, act = jax.random.normal(KEY, (5, 4)), jnp.zeros((5, 2))
    critic = nets.Critic(hidden=(16, 16), n=2)
    q = critic.apply(critic.init(KEY, obs, act), obs, act)
    assert q.shape == (2, 5) and not np.allclose(q[0], q[1])     # twin heads, own parameters
    v = nets.ValueNet(hidden=(16,))
    assert v.apply(v.init(KEY, obs), obs).shape == (5,)
    det = nets.DeterministicPolicy(2, hidden=(16,))
    a = det.apply(det.init(KEY, obs), obs * 100)
    assert a.shape == (5, 2) and float(jnp.abs(a).max()) <= 1.0
    pol = nets.GaussianPolicy(2, hidden=(16,), state_dependent_std=False, log_std_min=-3.0)
    params = pol.init(KEY, obs)
    mean, log_std = pol.apply(params, obs)
    assert mean.shape == log_std.shape == (5, 2)
    np.testing.assert_array_equal(log_std, 0.0)                  # one learned log-std, init 0
    params = jax.tree.map(lambda p: p, params)
    params["params"]["log_std"] = jnp.full((2,), -10.0)
    np.testing.assert_array_equal(pol.apply(params, obs)[1], -3.0)  # clipped
