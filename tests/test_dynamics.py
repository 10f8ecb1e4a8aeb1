"""The dynamics ensemble (MBPO's) and the compounding-error measurement: the loss against a
numpy transcription of MBPO's, elites by held-out error, learning Maze2D's dynamics, the
autoregressive rollout, and the true replay the claim measures against."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from algos import dynamics
from algos.config import ConfigError
from bench.claims import compounding
from envs.datasets import builder as build_mod


@pytest.fixture(scope="module")
def maze_arrays():
    env = envs.make("maze2d-umaze")
    eps = build_mod.collect_maze(env, jax.random.PRNGKey(1), 6000)
    arrays = {"obs": np.concatenate([e["observations"][:-1] for e in eps]),
              "action": np.concatenate([e["actions"] for e in eps]),
              "reward": np.concatenate([e["rewards"] for e in eps]),
              "next_obs": np.concatenate([e["observations"][1:] for e in eps]),
              "terminated": np.concatenate([e["terminations"] for e in eps])}
    return arrays, env


def test_loss_is_mbpos(maze_arrays):
    """Gaussian NLL with soft log-variance bounds, the bound penalty and per-layer decay,
    transcribed from mbpo/models/bnn.py in numpy."""
    _, env = maze_arrays
    spec = dynamics.EnsembleSpec(members=3, elites=2, width=8, depth=2)
    init, loss, _, _ = dynamics.make_ensemble(spec, env.obs_dim, env.act_dim)
    model = init(jax.random.PRNGKey(0), jnp.zeros(6), jnp.ones(6))
    model = model.replace(max_logvar=jnp.full(5, 0.3), min_logvar=jnp.full(5, -2.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 6)).astype(np.float32)
    y = rng.normal(size=(3, 4, 5)).astype(np.float32)
    got = float(loss((model.params, model.max_logvar, model.min_logvar), model, x, y))

    softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731
    swish = lambda z: z / (1 + np.exp(-z))    # noqa: E731
    total, decays = 0.0, (2.5e-5, 5e-5, 1e-4)    # two hidden layers, then the output's
    for m in range(3):
        p = jax.tree_util.tree_map(lambda a: np.asarray(a[m], np.float64), model.params)
        h = x[m].astype(np.float64)
        for i in range(2):
            h = swish(h @ p["params"][f"Dense_{i}"]["kernel"] + p["params"][f"Dense_{i}"]["bias"])
        out = h @ p["params"]["Dense_2"]["kernel"] + p["params"]["Dense_2"]["bias"]
        mu, lv = out[:, :5], out[:, 5:]
        lv = 0.3 - softplus(0.3 - lv)
        lv = -2.0 + softplus(lv + 2.0)
        total += np.mean(np.mean((mu - y[m]) ** 2 * np.exp(-lv), -1)) + np.mean(np.mean(lv, -1))
        total += sum(d * 0.5 * np.sum(p["params"][f"Dense_{i}"]["kernel"] ** 2)
                     for i, d in enumerate(decays))
    total += 0.01 * (0.3 * 5 - (-2.0) * 5)
    np.testing.assert_allclose(got, total, rtol=1e-4)


def test_ensemble_learns_maze_dynamics_and_picks_elites(maze_arrays):
    arrays, env = maze_arrays
    spec = dynamics.EnsembleSpec(members=4, elites=2, width=64, depth=2)
    init, update, choose, predict = dynamics.make_ensemble_train(spec, arrays, env,
                                                                 batch_size=128)

    @jax.jit
    def fit(key):
        s, _ = jax.lax.scan(update, init(key), jax.random.split(key, 1500))
        return choose(s)

    s = fit(jax.random.PRNGKey(0))
    obs, act, nxt = (jnp.asarray(arrays[k][-500:]) for k in ("obs", "action", "next_obs"))
    _, pred = predict(s.model, obs, act)
    err = float(jnp.abs(pred - nxt)[:, :2].mean())
    still = float(jnp.abs(obs - nxt)[:, :2].mean())      # predicting no motion
    assert err < 0.2 * still, (err, still)
    assert len(set(np.asarray(s.model.elites).tolist())) == 2      # two distinct members
    # autoregressive rollout = predict fed its own output
    actions = act[:10]
    states = dynamics.rollout(predict, s.model, obs[0], actions)
    o = obs[0]
    for t in range(10):
        _, o = predict(s.model, o, actions[t])
        np.testing.assert_allclose(states[t + 1], o, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="elites <= members"):
        dynamics.make_ensemble_train(dynamics.EnsembleSpec(members=2, elites=3), arrays, env)


def test_replay_and_one_step_are_the_env(maze_arrays):
    arrays, env = maze_arrays
    start = jnp.asarray(arrays["obs"][0])
    actions = jnp.asarray(arrays["action"][:20])
    states = compounding.replay(env, start, actions)
    np.testing.assert_allclose(states[1:], arrays["next_obs"][:20], atol=1e-5)
    nxt = compounding.one_step(env, jnp.asarray(arrays["obs"][:20]), actions)
    np.testing.assert_allclose(nxt, arrays["next_obs"][:20], atol=1e-5)
