"""The algorithm layer: the diffusion sub-config and its overrides, every sampler and backbone
and option through training, policies with a carry, env tasks, trajectory windows against a
numpy reference, data handed in as arrays, action bounds, and learning tests whose thresholds
a sign error in a Q term fails."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algos
import envs
from algos import diffusion as D
from algos.config import ConfigError, apply_overrides
from algos.data import Windows, discounted_returns_to_go, prepare
from algos.diffusion_spec import DiffusionSpec, make_sampler
from bench import train as bench_train
from envs import bandit, datasets
from envs.datasets import builder
from envs.evaluation import make_evaluate

BANDIT = "jaxrl/bandit/multimodal-v0"
TINY = {"steps": 4, "eval_every": 2, "eval_episodes": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def bandit_data():
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    return datasets.load(BANDIT), envs.make("bandit-2d")


def _config(algo, **sets):
    return apply_overrides(algos.get(algo).Config(), {**TINY, **algos.get(algo).TINY, **sets})


# --- the diffusion sub-config ---------------------------------------------------------------
def test_dotted_overrides_reach_the_spec_and_typed_values_stay_typed():
    cfg = apply_overrides(algos.get("diffusion_ql").Config(),
                          {"diffusion.sampler": "ddim", "diffusion.steps": "3",
                           "diffusion.mults": "1,4,8"})
    assert (cfg.diffusion.sampler, cfg.diffusion.steps, cfg.diffusion.mults) == \
        ("ddim", 3, (1, 4, 8))
    typed = apply_overrides(algos.get("diffusion_ql").Config(),
                            {"diffusion.T": 20, "eta": 2, "hidden": [64, 64]}, typed=True)
    assert (typed.diffusion.T, typed.eta, typed.hidden) == (20, 2.0, (64, 64))
    for sets, typed_, expect in [
        ({"diffusion.T": "20"}, True, "diffusion.T = '20': expected int"),
        ({"diffusion.T": 2.5}, True, "expected int"),
        ({"eta": True}, True, "expected float"),
        ({"diffusion.nope": "1"}, False, "unknown config field 'diffusion.nope'; valid fields "
                                         "of diffusion: schedule"),
        ({"diffusion": "ddim"}, False, "is a group of fields"),
        ({"eta.x": "1"}, False, "has no sub-fields"),
        ({"diffusion.sampler": "euler"}, False, "diffusion.sampler must be one of ddpm"),
        ({"diffusion.steps": "3"}, False, "ddpm runs all T=5 steps"),
        ({"diffusion.sampler": "ddim", "diffusion.steps": "9"}, False, "exceeds T=5"),
        ({"diffusion.sampler": "edm"}, False, "sampler=edm needs steps"),
        ({"diffusion.backbone": "dit"}, False, "does not denoise flat vectors"),
        ({"diffusion.T": "0"}, False, "T must be at least 1"),
        ({"eval_episodes": "0"}, False, "eval_episodes must be at least 1"),
        ({"eta": "nan"}, False, "eta must be finite"),
        ({"hidden": "0,4"}, False, "hidden must hold positive sizes"),
    ]:
        with pytest.raises(ConfigError, match=None) as e:
            apply_overrides(algos.get("diffusion_ql").Config(), sets, typed=typed_)
        assert expect in str(e.value) and "\n" not in str(e.value), (sets, str(e.value))


def test_dpm_solver_one_step_is_one_first_order_jump_to_the_clean_estimate():
    gm = D.GaussianMixture.create(jnp.ones(2), jnp.array([[-1.0], [1.0]]),
                                  jnp.full((2, 1, 1), 0.1))
    sched = D.schedule("linear", 50)   # abar stays far from 0: no amplified round-off
    den = gm.vp_denoiser(sched, "eps")
    x_T = jax.random.normal(jax.random.PRNGKey(0), (64, 1))
    out = D.dpm_solver_pp_sample(den, sched, jax.random.PRNGKey(1), (64, 1), steps=1, x_T=x_T)
    x0, _ = D.x0_and_eps(sched, x_T, sched.T - 1, den(x_T, sched.T - 1, None), "eps")
    np.testing.assert_allclose(out, x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T", [5, 20, 100, 1000])
def test_logsnr_timesteps_are_distinct_decreasing_and_span_the_chain(T):
    abar = D.schedule("cosine", T).alphas_cumprod
    for steps in sorted({1, 2, 3, T // 2 or 1, T - 1 or 1, T}):
        ts = D.sampling_timesteps(T, steps, "logsnr", abar)
        assert len(ts) == steps and ts[0] == T - 1 and (ts[-1] == 0 or steps == 1)
        assert (np.diff(ts) < 0).all()


def test_logsnr_spacing_fixes_dpm_solver_over_dispersion_at_20_steps():
    """A two-mode mixture under the cosine schedule, T=1000, exact denoiser: 20 evenly spaced
    DPM-Solver++ steps spread each mode too wide; log-SNR spacing lands within 5%."""
    std = 0.05
    gm = D.GaussianMixture.create(jnp.ones(2), jnp.array([[-0.5], [0.5]]),
                                  jnp.full((2, 1, 1), std ** 2))
    sched = D.schedule("cosine", 1000)
    den = gm.vp_denoiser(sched, "eps")
    spread = {}
    for spacing in ("even", "logsnr"):
        x = D.dpm_solver_pp_sample(den, sched, jax.random.PRNGKey(0), (20000, 1), steps=20,
                                   spacing=spacing)
        spread[spacing] = float(jnp.std(jnp.abs(x) - 0.5)) / std
    assert abs(spread["logsnr"] - 1) < 0.05, spread
    assert spread["even"] - 1 > 2 * abs(spread["logsnr"] - 1), spread


@pytest.mark.parametrize("sets", [
    {"diffusion.sampler": "ddim", "diffusion.steps": 3, "diffusion.backbone": "resmlp"},
    {"diffusion.sampler": "dpm_solver_pp", "diffusion.steps": 2, "diffusion.spacing": "logsnr",
     "diffusion.parameterization": "v", "diffusion.schedule": "cosine"},
    {"diffusion.sampler": "edm", "diffusion.steps": 4, "diffusion.churn": 5.0},
    {"diffusion.parameterization": "x0", "diffusion.schedule": "linear",
     "diffusion.clip_x0": 0.0},
], ids=["ddim-resmlp", "dpm-logsnr-v", "edm", "ddpm-x0-noclip"])
def test_every_sampler_and_backbone_trains_and_acts_in_bounds(sets, bandit_data):
    data, env = bandit_data
    cfg = _config("diffusion_ql", action_approx=True, **sets)
    tr = algos.get("diffusion_ql").make_train(cfg, data, env)
    state, metrics = jax.jit(tr)(jax.random.PRNGKey(0))
    for k, v in metrics.items():
        assert np.isfinite(np.asarray(v)).all(), (k, v)
    policy = algos.get("diffusion_ql").make_policy(cfg, env.spec)
    a = jax.vmap(lambda k: policy.act(state.algo, (), jnp.zeros(1), k)[0])(
        jax.random.split(jax.random.PRNGKey(1), 16))
    assert a.shape == (16, 2) and float(jnp.abs(a).max()) <= 1.0


def test_spec_sampler_matches_the_direct_sampler_call():
    spec = DiffusionSpec(schedule="cosine", T=30, sampler="ddim", steps=7, eta=0.3,
                         clip_x0=0.0)
    gm = D.GaussianMixture.create(jnp.ones(2), jnp.array([[-1.0, 0.0], [1.0, 0.5]]),
                                  jnp.broadcast_to(0.05 * jnp.eye(2), (2, 2, 2)))
    den = gm.vp_denoiser(spec.sched, "eps")
    a = make_sampler(spec)(den, jax.random.PRNGKey(0), (8, 2))
    b = D.ddim_sample(den, D.schedule("cosine", 30), jax.random.PRNGKey(0), (8, 2), steps=7,
                      eta=0.3)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# --- every option through training ----------------------------------------------------------
@pytest.mark.parametrize("algo, sets", [
    ("diffusion_ql", {"max_q_backup": True, "n_backup": 3, "q_loss": "edp",
                      "selection": "argmax", "lr_decay": False}),
    ("diffusion_bc", {"lr_decay": False, "grad_norm": 0.0}),
    ("iql", {"lr_decay": False, "reward_scale": "none", "normalize_obs": True}),
    ("bc", {"eval_sample": True}),
    ("td3_bc", {"policy_freq": 1}),
], ids=["dql-maxq-edp-argmax", "dbc-const", "iql-const", "bc-sampled", "td3bc-freq1"])
def test_options_run_through_training(algo, sets, bandit_data):
    data, env = bandit_data
    cfg = _config(algo, **sets)
    _, metrics = jax.jit(algos.get(algo).make_train(cfg, data, env))(jax.random.PRNGKey(0))
    for k, v in metrics.items():
        assert np.isfinite(np.asarray(v)).all(), (algo, k)


def test_every_idql_selection_rule_acts_from_one_trained_state(bandit_data):
    data, env = bandit_data
    mod = algos.get("idql")
    tr = mod.make_train(_config("idql"), data, env)
    state, _ = jax.jit(tr)(jax.random.PRNGKey(0))
    for rule in ("argmax", "expectile", "quantile", "softmax"):
        policy = mod.make_policy(_config("idql", selection=rule), env.spec)
        ret, _ = jax.jit(make_evaluate(policy, env, 4))(state.algo, jax.random.PRNGKey(1))
        assert np.isfinite(np.asarray(ret)).all(), rule


def test_idql_expectile_weight_has_no_division_and_quantile_has():
    from algos.idql import selection_weights

    adv = jnp.array([-2.0, -0.5, 0.5, 2.0])
    np.testing.assert_allclose(selection_weights(adv, 0.7, "expectile"), [0.3, 0.3, 0.7, 0.7])
    np.testing.assert_allclose(selection_weights(adv, 0.7, "quantile"),
                               [0.15, 0.6, 1.4, 0.35], rtol=1e-6)


def test_diffusion_ql_per_task_settings_follow_the_paper():
    cfg = bench_train.make_config("diffusion_ql", dataset_id="jaxrl/hopper/medium-replay-v0")
    assert (cfg.grad_norm, cfg.eta, cfg.max_q_backup) == (4.0, 1.0, False)
    cfg = bench_train.make_config("diffusion_ql", dataset_id="jaxrl/walker2d/medium-v0",
                                  overrides={"grad_norm": "2"})
    assert cfg.grad_norm == 2.0          # the user's setting wins over the task's
    assert bench_train.make_config("diffusion_ql", dataset_id=BANDIT).grad_norm == 9.0


def test_stepped_cosine_keeps_the_rate_near_its_start_as_the_released_code():
    from algos.loop import lr_schedule

    lr = lr_schedule(1.0, decay="stepped_cosine", decay_every=50_000, decay_horizon=2000)
    # torch's CosineAnnealingLR after k scheduler steps: 0.5 (1 + cos(pi k / T_max))
    torch_rule = lambda k: 0.5 * (1 + np.cos(np.pi * k / 2000))  # noqa: E731
    for step, k in [(0, 0), (49_999, 0), (50_000, 1), (2_000_000, 40)]:
        assert float(lr(step)) == pytest.approx(torch_rule(k), rel=1e-6)
    assert float(lr(2_000_000)) > 0.998
    assert float(lr_schedule(1.0, 1000, "cosine")(1000)) == 0.0
    assert lr_schedule(0.5) == 0.5


# --- policies, tasks and evaluation ---------------------------------------------------------
def test_maze_goal_is_a_task_kept_across_resets_and_evaluation_vmaps_over_goals():
    from envs.maze2d import load_maze, waypoint_action

    env = envs.make("maze2d-umaze")
    maze = load_maze("umaze")
    np.testing.assert_array_equal(env.default_task(), maze.goal)
    goal = jnp.array([3.0, 1.0])
    obs, st = env.reset(jax.random.PRNGKey(0), goal)
    np.testing.assert_array_equal(env.task(st), goal)
    # the default-task reset draws exactly what the plain reset did (datasets unchanged)
    o1, s1 = env.reset(jax.random.PRNGKey(3))
    o2, s2 = env.reset(jax.random.PRNGKey(3), env.default_task())
    np.testing.assert_array_equal(o1, o2)
    # auto-reset keeps the episode's goal
    for t in range(env.episode_length):
        obs, st, *_ = env.step(jax.random.PRNGKey(t), st, jnp.zeros(2))
    assert int(st.t) == 0 and np.array_equal(env.task(st), goal)
    # a goal-conditioned policy reads the goal from its carry; evaluation vmaps over goals
    cells = jnp.asarray(maze.free_cells, jnp.float32)

    def init_carry(state, obs, task, key):
        return jnp.argmin(jnp.abs(cells - task).sum(1))      # the goal's cell index

    def act(state, carry, obs, key):
        return waypoint_action(maze, obs, carry), carry

    from algos.loop import Policy

    run = jax.jit(jax.vmap(make_evaluate(Policy(init_carry, act), env, 4),
                           in_axes=(None, None, 0)))
    goals = jnp.array([[1.0, 1.0], [3.0, 1.0], [3.0, 3.0]])
    returns, _ = run(None, jax.random.PRNGKey(1), goals)
    blind = jax.jit(jax.vmap(make_evaluate(
        lambda obs, key: waypoint_action(maze, obs, maze.goal_index), env, 4, stateful=False),
        in_axes=(None, None, 0)))(None, jax.random.PRNGKey(1), goals)[0]
    assert (returns.mean(1) > 100).all(), returns.mean(1)          # reaches every goal
    assert float(blind[1:].mean()) < 0.5 * float(returns[1:].mean())  # the fixed goal does not


# --- data -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maze_data():
    ds_id = builder.build("maze2d-umaze", "umaze", seed=0, n_transitions=2000, log=lambda m: None)
    return datasets.load(ds_id)


@pytest.mark.parametrize("pad, penalty", [(True, -100.0), (False, 0.0)])
def test_windows_match_a_plain_numpy_reference(maze_data, pad, penalty):
    eps = maze_data.raw_episodes
    H, gamma = 16, 0.97
    w = Windows.create(maze_data.episodes, H, gamma, termination_penalty=penalty, pad=pad)
    expected_starts = [(i, s) for i, e in enumerate(eps)
                       for s in range(len(e["actions"]) if pad else len(e["actions"]) - H + 1)]
    assert w.size == len(expected_starts)
    b = jax.jit(lambda k: w.sample(k, 64))(jax.random.PRNGKey(0))
    for j in range(64):
        e, s = int(b["episode"][j]), int(b["start"][j])
        ep = eps[e]
        n = len(ep["actions"])
        rew = ep["rewards"] + penalty * ep["terminations"]
        valid = min(H, n - s)
        np.testing.assert_allclose(b["obs"][j, :valid], ep["observations"][s:s + valid])
        np.testing.assert_allclose(b["action"][j, :valid], ep["actions"][s:s + valid])
        np.testing.assert_allclose(b["reward"][j, :valid], rew[s:s + valid], rtol=1e-6)
        assert np.asarray(b["mask"][j]).tolist() == [k < valid for k in range(H)]
        assert not np.asarray(b["obs"][j, valid:]).any()
        ret = sum(gamma ** k * rew[s + k] for k in range(n - s))
        assert float(b["value"][j]) == pytest.approx(ret, rel=1e-4, abs=1e-4)
        np.testing.assert_allclose(b["goal_obs"][j], ep["observations"][s + valid - 1])
        np.testing.assert_allclose(b["start_obs"][j], ep["observations"][s])


def test_returns_to_go_stop_at_the_episode_end():
    g = discounted_returns_to_go(np.array([[1.0, 1.0, 1.0, 5.0]]), np.array([3]), 0.5)
    np.testing.assert_allclose(g, [[1.75, 1.5, 1.0, 0.0]])


def test_arrays_handed_in_train_exactly_like_the_dataset(bandit_data):
    data, env = bandit_data
    cfg = _config("td3_bc")
    arrays = {k: jnp.asarray(v) for k, v in data.transitions.items()}
    mod = algos.get("td3_bc")
    a = jax.jit(mod.make_train(cfg, data, env))(jax.random.PRNGKey(0))[1]
    b = jax.jit(mod.make_train(cfg, arrays, env))(jax.random.PRNGKey(0))[1]
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
    with pytest.raises(ConfigError, match="lack next_obs"):
        prepare({k: v for k, v in arrays.items() if k != "next_obs"}, env, cfg)
    with pytest.raises(ConfigError, match="reward_scale='iql' needs whole episodes"):
        mod_iql = algos.get("iql")
        mod_iql.make_train(_config("iql"), arrays, env)
    with pytest.raises(ConfigError, match="fewer than batch_size"):
        prepare({k: v[:8] for k, v in arrays.items()}, env, cfg)


# --- action bounds and learning -------------------------------------------------------------
@pytest.fixture(scope="module")
def pendulum_random():
    return datasets.load(builder.build("Pendulum-v1", "random", n_transitions=2000,
                                       log=lambda m: None))


@pytest.mark.parametrize("algo", algos.POLICIES)
def test_actions_arrive_in_the_env_units_of_pendulum(algo, pendulum_random):
    """Pendulum's torque is in [-2, 2]: the normaliser maps the networks' [-1, 1] onto it."""
    env = envs.make("Pendulum-v1")
    mod = algos.get(algo)
    cfg = _config(algo)
    tr = mod.make_train(cfg, pendulum_random, env)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    np.testing.assert_allclose(state.algo.norm.to_env(jnp.array([-1.0, 1.0])), [-2.0, 2.0])
    policy = mod.make_policy(cfg, env.spec)
    obs = jax.random.normal(jax.random.PRNGKey(1), (256, 3))
    a = jax.jit(jax.vmap(lambda o, k: policy.act(state.algo, (), o, k)[0]))(
        obs, jax.random.split(jax.random.PRNGKey(2), 256))
    assert a.shape == (256, 1) and float(jnp.abs(a).max()) <= 2.0
    if algo == "diffusion_bc":   # an untrained sampler spreads over the whole box
        assert float(jnp.abs(a).max()) > 1.2


def _bandit_choices(algo, cfg, state, seeds):
    """Per seed: the mean projection of the actions on the direction from the worst mode to
    the best (0 for the symmetric behaviour data, 0.49 at the best mode's centre), the share
    of actions nearer the best mode than any other, and the share within its reward radius."""
    from bench.bandit import sample_actions

    centers, best = np.asarray(bandit.CENTERS), int(np.argmax(bandit.REWARDS))
    direction = centers[best] - centers[int(np.argmin(bandit.REWARDS))]
    direction = direction / np.linalg.norm(direction)
    out = []
    for a in sample_actions(algo, cfg, state, seeds, n=400):
        nearest = np.linalg.norm(a[:, None] - centers[None], axis=-1).argmin(1)
        out.append(((a @ direction).mean(), (nearest == best).mean(),
                    bandit.mode_coverage(a)["per_mode"][best]))
    return np.array(out)


# Each Q-based method on the bandit, a budget of seconds, 2 seeds. The behaviour data is
# symmetric (projection 0, a quarter nearest the best mode, 22% inside it). Every method must
# move its actions towards the high-reward modes (projection > 0.3); the stochastic and
# resampling ones must put most actions nearest the best mode, IDQL (argmax over behaviour
# samples) inside it. TD3+BC is held to the projection alone: a deterministic policy under
# an interpolating critic settles between the two best modes (the expressiveness claim).
# A sign error in any Q term, target or advantage sends the actions the other way.
LEARNING = {
    "td3_bc": ({"alpha": 10.0, "hidden": "64,64", "actor_lr": 3e-3, "critic_lr": 3e-3},
               (0.3, None, None)),
    "iql": ({"reward_scale": "none", "hidden": "64,64", "actor_lr": 3e-3, "critic_lr": 3e-3,
             "value_lr": 1e-2}, (0.3, 0.8, None)),
    "diffusion_ql": ({"diffusion.T": 10, "diffusion.width": 64, "diffusion.depth": 2,
                      "hidden": "64,64", "n_candidates": 10, "lr_decay": False,
                      "actor_lr": 3e-3, "critic_lr": 3e-3, "eta": 2.0}, (0.3, 0.8, None)),
    "idql": ({"diffusion.T": 10, "diffusion.width": 64, "diffusion.depth": 2, "hidden": "64,64",
              "n_candidates": 16, "actor_lr": 3e-3, "critic_lr": 3e-3, "lr_decay": False,
              "actor_tau": 0.05}, (0.3, 0.8, 0.4)),
}
# (Observations are all zero on the bandit, so a network's output moves by about its rate per
# Adam step: the default 3e-4 needs thousands of steps to cross the 0.7 to a mode, hence 3e-3.)


@pytest.mark.parametrize("algo", sorted(LEARNING))
def test_q_methods_head_for_the_best_bandit_mode(algo, bandit_data):
    data, env = bandit_data
    sets, thresholds = LEARNING[algo]
    cfg = apply_overrides(algos.get(algo).Config(), {
        "steps": 1000, "eval_every": 1000, "eval_episodes": 2, **sets})
    tr = algos.get(algo).make_train(cfg, data, env)
    state, _ = jax.jit(jax.vmap(tr))(bench_train.seed_keys(2))
    got = _bandit_choices(algo, cfg, state, 2)
    behaviour = np.asarray(data.transitions["action"])
    assert abs(float((behaviour @ np.array([0.7, 0.7]) / 0.99).mean())) < 0.05
    for column, threshold in enumerate(thresholds):
        if threshold is not None:
            assert got[:, column].min() > threshold, (column, got)


def test_bc_reaches_the_behaviour_score_on_an_expert_dataset():
    ds = datasets.load(builder.build("MountainCarContinuous-v0", "expert", n_transitions=20_000,
                                     log=lambda m: None))
    env = envs.make(ds.env_id)
    cfg = apply_overrides(algos.get("bc").Config(), {"steps": 1500, "eval_every": 1500,
                                                     "eval_episodes": 10})
    _, metrics = jax.jit(jax.vmap(algos.get("bc").make_train(cfg, ds, env)))(
        bench_train.seed_keys(2))
    behaviour = ds.metadata["diffrl"]["behaviour_normalized_score"]
    assert behaviour > 85
    assert float(metrics["score"][:, -1].min()) > behaviour - 15, metrics["score"]
