"""The shared environment API: shapes, auto-reset, truncation, state_from_obs, references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs

CHEAP = ["Pendulum-v1", "MountainCarContinuous-v0", "maze2d-umaze", "maze2d-medium",
         "maze2d-large"]


@functools.lru_cache(maxsize=None)
def _rollout_fn(env_id, steps):
    """A jitted random-action rollout recording everything a dataset would store."""
    env = envs.make(env_id)

    @jax.jit
    def roll(key):
        obs, state = env.reset(key)

        def body(c, k):
            obs, state = c
            ka, ks = jax.random.split(k)
            a = env.random_action(ka)
            nobs, state2, r, term, trunc, info = env.step(ks, state, a)
            return (nobs, state2), (obs, a, r, term, trunc, info["final_obs"], nobs, state.t)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return roll


# Brax's spring hopper (a 15 s compile) in `make test-slow`: its reset, step and auto-reset
# are also checked by test_termination_and_auto_reset_in_brax_hopper
@pytest.mark.parametrize("env_id", CHEAP + ["bandit-2d", pytest.param("hopper",
                                                                     marks=pytest.mark.slow),
                                            "inverted_pendulum"])
def test_reset_step_shapes_and_dtypes(env_id):
    env = envs.make(env_id)
    # jitted: a Brax env run eagerly dispatches op by op (inverted_pendulum 13-16 s; jitted 7)
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert obs.shape == (env.obs_dim,) and obs.dtype == jnp.float32
    out = jax.jit(env.step)(jax.random.PRNGKey(1), state, jnp.zeros(env.act_dim))
    nobs, _, r, term, trunc, info = out
    assert nobs.shape == (env.obs_dim,) and r.dtype == jnp.float32
    assert term.dtype == bool and trunc.dtype == bool
    assert info["final_obs"].shape == (env.obs_dim,)
    assert np.isfinite(np.asarray(nobs)).all()


def test_unknown_env_id_lists_known_ids():
    with pytest.raises(envs.EnvError, match="unknown env id 'hoper'.*hopper"):
        envs.make("hoper")


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "maze2d-umaze"])
def test_truncation_at_episode_length_and_fresh_restarts(env_id):
    env = envs.make(env_id)
    length = env.episode_length
    obs, a, r, term, trunc, final_obs, nobs, t = jax.device_get(
        _rollout_fn(env_id, 3 * length)(jax.random.PRNGKey(3)))
    ends = np.flatnonzero(trunc)
    assert list(ends) == [length - 1, 2 * length - 1, 3 * length - 1]
    assert not term.any()
    # the step counter restarts after each end
    assert t[length] == 0 and t[length - 1] == length - 1
    # the observation after an end starts a new episode: it is not the final observation,
    # and the three episodes start from three different random states (fresh resets, not a
    # cached first state as in Brax's AutoResetWrapper)
    starts = [obs[0], obs[length], obs[2 * length]]
    assert not np.allclose(starts[0], starts[1]) and not np.allclose(starts[1], starts[2])
    for e in ends:
        assert not np.allclose(final_obs[e], nobs[e])
    # away from episode ends, final_obs is simply the next observation
    mid = np.setdiff1d(np.arange(3 * length), ends)
    np.testing.assert_array_equal(final_obs[mid], nobs[mid])


def test_termination_and_auto_reset_in_brax_hopper():
    # a random hopper falls within ~100 steps: termination, then a fresh random start
    obs, a, r, term, trunc, final_obs, nobs, t = jax.device_get(
        _rollout_fn("hopper", 300)(jax.random.PRNGKey(0)))
    ends = np.flatnonzero(term)
    assert len(ends) >= 2 and not trunc.any()
    e0, e1 = ends[0], ends[1]
    assert t[e0 + 1] == 0
    assert not np.allclose(obs[e0 + 1], obs[0])          # not the cached first state
    assert not np.allclose(obs[e0 + 1], obs[e1 + 1])
    # a terminal observation is unhealthy: torso height below 0.7 or tilt beyond 0.2
    z, angle = final_obs[e0][0], final_obs[e0][1]
    assert z < 0.7 or abs(angle) > 0.2


@pytest.mark.parametrize("env_id", CHEAP + ["bandit-2d", "inverted_pendulum"])
def test_state_from_obs_then_step_reproduces_next_obs(env_id):
    env = envs.make(env_id)
    assert env.supports_state_from_obs
    steps = min(env.episode_length, 150)
    obs, a, r, term, trunc, final_obs, nobs, t = _rollout_fn(env_id, steps)(
        jax.random.PRNGKey(7))

    @jax.jit
    def replay(o, act):
        _, _, r2, term2, _, info = env.step(jax.random.PRNGKey(0), env.state_from_obs(o), act)
        return info["final_obs"], r2, term2

    o2, r2, term2 = jax.vmap(replay)(obs, a)
    np.testing.assert_allclose(np.asarray(o2), np.asarray(final_obs), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(r2), np.asarray(r), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(term2), np.asarray(term))


@pytest.mark.parametrize("env_id", ["hopper", "halfcheetah", "walker2d", "ant"])
def test_state_from_obs_unsupported_on_spring_backend_is_a_clear_error(env_id):
    env = envs.make(env_id)
    assert not env.supports_state_from_obs
    assert env.spec.backend == "spring"
    with pytest.raises(envs.EnvError, match="does not determine the state"):
        env.state_from_obs(jnp.zeros(env.obs_dim))


@pytest.mark.parametrize("env_id", CHEAP + ["bandit-2d", "inverted_pendulum"])
def test_random_policy_scores_about_zero(env_id):
    env = envs.make(env_id)
    res = envs.evaluate(lambda obs, key: env.random_action(key), env,
                        jax.random.PRNGKey(123), 1000)
    assert res["returns"].shape == (1000,)
    score = float(res["normalized"].mean())
    assert abs(score) < 5.0, (env_id, score, float(res["returns"].mean()))


@pytest.mark.parametrize("layout", ["umaze", "medium", "large"])
def test_maze_waypoint_expert_scores_about_hundred(layout):
    from envs.datasets.builder import maze_expert_return

    env = envs.make(f"maze2d-{layout}")
    score = float(env.normalize(maze_expert_return(env, seed=5)))
    assert 90.0 < score < 110.0, score


def test_maze_walls_are_never_entered():
    from envs.maze2d import RADIUS, load_maze

    maze = load_maze("medium")
    obs = np.asarray(_rollout_fn("maze2d-medium", 600)(jax.random.PRNGKey(11))[0])
    for dx in (-RADIUS, RADIUS):
        for dy in (-RADIUS, RADIUS):
            cells = np.floor(obs[:, :2] + np.array([dx, dy]) + 0.5).astype(int)
            assert not maze.walls[cells[:, 0], cells[:, 1]].any()


def test_evaluate_with_seed_axis_equals_each_seed_alone():
    env = envs.make("Pendulum-v1")

    def act(gain, obs, key):  # a linear policy whose gain is the "policy state"
        return jnp.clip(gain * obs[2:3] + 0.1 * jax.random.normal(key, (1,)), -2, 2)

    gains = jnp.array([-1.0, 0.0, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    # all three seeds in one lockstep loop, one after another, and two then one
    for seed_batch in (None, 1, 2):
        both = envs.evaluate(act, env, keys, 8, policy_state=gains, seed_axis=True,
                             seed_batch=seed_batch)
        assert both["returns"].shape == (3, 8)
        for i in range(3):
            alone = envs.evaluate(act, env, keys[i], 8, policy_state=gains[i])
            np.testing.assert_allclose(both["returns"][i], alone["returns"],
                                       rtol=1e-5, atol=1e-3)
