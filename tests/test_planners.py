"""Trajectory planners (Diffuser on Maze2D and value-guided on locomotion, MPC): path
segmentation against the authors' rule, the loss weights and inpainting against their formulas,
the controller, windows and value targets against numpy, guidance on a closed-form value, the
harness (vmapped seeds, resume), one-line errors, and learning."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algos
import envs
from algos import checkpoint, diffuser
from algos.config import ConfigError, apply_overrides
from algos.data import split_where_goal_is_left
from algos.diffusion import diffusion_loss, schedule
from bench import train as bench_train
from bench.cli import main as cli
from envs.datasets import builder as build_mod
from envs.datasets import load, minari_io
from envs.maze2d import load_maze

MAZE_ID = "test/maze2d/umaze-v0"
TINY = {"steps": "4", "eval_every": "2", "eval_episodes": "2", "batch_size": "16"}


@pytest.fixture(scope="module")
def maze():
    """A Maze2D umaze dataset of the D4RL-style controller (20k transitions) and its env."""
    env = envs.make("maze2d-umaze")
    if not minari_io.exists(MAZE_ID):
        eps = build_mod.collect_maze(env, jax.random.PRNGKey(0), 20_000)
        minari_io.write(MAZE_ID, eps, obs_low=-np.inf, obs_high=np.inf, act_low=-1.0,
                        act_high=1.0, ref_min_score=env.spec.ref_min_score,
                        ref_max_score=env.spec.ref_max_score, algorithm_name="test",
                        description="test", extra_metadata={"env_id": "maze2d-umaze"})
    return load(MAZE_ID), env


def _tiny(algo="diffuser", **sets):
    mod = algos.get(algo)
    return apply_overrides(mod.Config(), {**TINY, **mod.TINY, **sets})


PENDULUM_ID = "test/pendulum/planners-v0"


@pytest.fixture(scope="module")
def pendulum(random_pendulum):
    """1000 random Pendulum transitions (8 episodes cut at 125 steps, so some windows run past
    their end): Diffuser's locomotion setting. Its own id: other tests build random Pendulum
    data at other sizes in the same session (test_synther's test/pendulum/random-v0)."""
    env = envs.make("Pendulum-v1")
    key = jax.random.fold_in(jax.random.PRNGKey(0), build_mod._level_index("random"))
    random_pendulum(PENDULUM_ID, 1000, key)
    return load(PENDULUM_ID), env


def _loco(**sets):
    """The authors' locomotion config (`task_defaults`) made tiny."""
    cfg = apply_overrides(diffuser.Config(), diffuser.task_defaults("jaxrl/pendulum/random-v0"))
    return apply_overrides(cfg, {**TINY, "horizon": "8", "diffusion.T": "4",
                                 "diffusion.width": "16", "diffusion.mults": "1,2",
                                 "n_plans": "8", **sets})


# --- data ---------------------------------------------------------------------------------
def test_paths_are_cut_where_the_agent_leaves_the_goal(maze):
    """The authors' maze2d_set_terminals on one stream: a path ends at step t when the agent
    is within 0.5 of the goal at t and not at t + 1 (here also at every episode's end)."""
    data, env = maze
    goal = np.asarray(env.default_task())
    paths = split_where_goal_is_left(data.raw_episodes, goal, 0.5)
    ends = []
    for e in data.raw_episodes:                       # a plain loop, step by step
        obs, n = e["observations"], len(e["actions"])
        for t in range(n):
            here = np.linalg.norm(obs[t, :2] - goal) < 0.5
            there = np.linalg.norm(obs[t + 1, :2] - goal) < 0.5
            if t == n - 1 or (here and not there):
                ends.append(t)
    assert len(paths) == len(ends) > len(data.raw_episodes)     # the goal is left inside some
    assert sum(len(p["actions"]) for p in paths) == data.num_transitions
    # pieces join back into the episodes, the last observation of one piece the first of the next
    i = 0
    for e in data.raw_episodes:
        acts, obs = [], [paths[i]["observations"][0]]
        while sum(len(a) for a in acts) < len(e["actions"]):
            acts.append(paths[i]["actions"])
            obs.extend(paths[i]["observations"][1:])
            i += 1
        np.testing.assert_array_equal(np.concatenate(acts), e["actions"])
        np.testing.assert_array_equal(np.stack(obs), e["observations"])


def test_windows_are_normalised_to_limits_and_fit_inside_paths(maze):
    data, env = maze
    cfg = _tiny(horizon="32")
    windows, norm = diffuser.prepare_windows(cfg, data, env)
    b = jax.jit(lambda k: windows.sample(k, 512))(jax.random.PRNGKey(0))
    assert bool(b["mask"].all())                       # no padding: whole windows only
    x = np.concatenate([b["action"], b["obs"]], -1)
    assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
    # the limits are the dataset's, and map back
    tr = data.transitions
    np.testing.assert_allclose(norm.obs_from(norm.obs(tr["obs"][:100])), tr["obs"][:100],
                               atol=1e-5)
    np.testing.assert_allclose(norm.obs_min, tr["obs"].min(0), atol=0)
    # consecutive planned-from-data states move at most the ball's top speed per step
    pos = np.asarray(norm.obs_from(b["obs"]))[..., :2]
    assert np.abs(np.diff(pos, axis=1)).max() < 0.25   # 2 cells/s x 0.1 s, with noise


def test_locomotion_windows_are_standardised_padded_and_valued(pendulum):
    """The authors' SequenceDataset/ValueDataset with GaussianNormalizer and use_padding:
    windows from every step, zeros (env units) past the episode's end, the value target the
    0.997-discounted return to the episode's end, computed here by a plain loop."""
    data, env = pendulum
    cfg = _loco(horizon="16")
    windows, norm = diffuser.prepare_windows(cfg, data, env, goal=False)
    assert isinstance(norm, diffuser.Gaussian)
    obs = np.asarray(data.transitions["obs"], np.float64)
    np.testing.assert_allclose(norm.obs_mean, obs.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.obs_std, obs.std(0), rtol=1e-4)
    assert windows.size == data.num_transitions          # a window starts at every step
    b = jax.jit(lambda k: windows.sample(k, 256))(jax.random.PRNGKey(0))
    zero = np.asarray(norm.obs(jnp.zeros(3)))
    for i in range(256):
        e, start = int(b["episode"][i]), int(b["start"][i])
        ep = data.raw_episodes[e]
        rewards = np.asarray(ep["rewards"], np.float64)[start:]
        expect = sum(0.997 ** k * r for k, r in enumerate(rewards))
        np.testing.assert_allclose(float(b["value"][i]), expect, rtol=1e-4, atol=1e-3)
        n = min(16, len(ep["actions"]) - start)
        np.testing.assert_allclose(b["obs"][i, :n], norm.obs(ep["observations"][start:start + n]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b["obs"][i, n:], np.broadcast_to(zero, (16 - n, 3)),
                                   atol=1e-6)
    assert not bool(b["mask"].all())                      # some run past their episode


def test_loss_weights_match_the_authors_overwritten_reconstruction():
    """The authors overwrite the conditioned entries of the reconstruction with the truth and
    weight the first action: with a perfect x0 model the loss is 0, an error on a conditioned
    entry costs nothing, an error e on the first action costs action_weight * e^2 / entries."""
    h, a, d = 8, 2, 4
    x0 = jax.random.normal(jax.random.PRNGKey(0), (3, h, a + d))
    mask = diffuser.condition_mask(h, a, d)
    w = diffuser.loss_weights(h, a, d, action_weight=10.0)
    sched = schedule("cosine", 16)

    def loss(offset):
        return diffusion_loss(lambda x, t, c: x0 + offset, sched, jax.random.PRNGKey(1), x0,
                              parameterization="x0", weights=w, inpaint=(mask, x0))

    assert float(loss(0.0)) == 0.0
    assert float(loss(jnp.where(mask, 5.0, 0.0))) == 0.0
    first_action = jnp.zeros((h, a + d)).at[0, :a].set(0.5)
    np.testing.assert_allclose(float(loss(first_action)), 10.0 * 0.25 * a / (h * (a + d)),
                               rtol=1e-6)
    # the start and goal observations are what is masked
    assert np.asarray(mask).sum() == 2 * d and bool(mask[0, a:].all() & mask[h - 1, a:].all())


# --- acting -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_train(maze):
    data, env = maze
    tr = diffuser.make_train(_tiny(), data, env)
    return tr, jax.jit(tr.init)(jax.random.PRNGKey(0))


def test_plans_hold_the_start_and_the_goal(tiny_train):
    tr, state = tiny_train
    policy = diffuser.make_policy(tr.config, tr.env.spec)
    obs = jnp.array([3.05, 1.02, 0.1, -0.2])
    goal = jnp.array([3.0, 3.0])      # not the env's own goal: Multi2D's per-episode goals
    plan = jax.jit(policy.init_carry)(state.algo, obs, goal, jax.random.PRNGKey(3))
    h = tr.config.horizon
    assert plan.obs.shape == (h, 4) and plan.action.shape == (h, 2) and int(plan.t) == 0
    np.testing.assert_allclose(plan.obs[0], obs, atol=1e-5)
    np.testing.assert_allclose(plan.obs[-1], [3.0, 3.0, 0.0, 0.0], atol=1e-5)


def test_controller_is_the_authors_tracking_rule(tiny_train):
    tr, state = tiny_train
    policy = diffuser.make_policy(tr.config, tr.env.spec)
    h = tr.config.horizon
    rng = np.random.default_rng(0)
    plan = diffuser.Plan(jnp.asarray(rng.uniform(1, 3, (h, 4)), jnp.float32),
                         jnp.asarray(rng.uniform(-1, 1, (h, 2)), jnp.float32),
                         jnp.asarray(0, jnp.int32))
    s = np.array([2.0, 2.0, 0.1, 0.0], np.float32)
    for t in [0, 3, h - 2, h - 1, h + 5]:
        w = np.array(plan.obs[t + 1]) if t < h - 1 else np.r_[plan.obs[-1, :2], 0.0, 0.0]
        expect = np.clip((w[:2] - s[:2]) + (w[2:] - s[2:]), -1, 1)
        a, carry = policy.act(state.algo, plan._replace(t=jnp.asarray(t)), jnp.asarray(s), None)
        np.testing.assert_allclose(a, expect, rtol=1e-6, atol=1e-6)
        assert int(carry.t) == t + 1
    ablation = diffuser.make_policy(_tiny(act_with="actions"), tr.env.spec)
    a, _ = ablation.act(state.algo, plan._replace(t=jnp.asarray(2)), jnp.asarray(s), None)
    np.testing.assert_allclose(a, plan.action[2])
    a, _ = ablation.act(state.algo, plan._replace(t=jnp.asarray(h)), jnp.asarray(s), None)
    np.testing.assert_allclose(a, [-0.1, 0.0])          # past the plan: brake


@pytest.fixture(scope="module")
def loco_train(pendulum):
    data, env = pendulum
    tr = diffuser.make_train(_loco(), data, env)
    return tr, jax.jit(tr.init)(jax.random.PRNGKey(0))


def test_guidance_raises_the_value_of_plans_and_the_best_one_acts(loco_train):
    """With a closed-form value (the sum of a plan's normalised actions), guided plans hold
    the start, come sorted by value, and are worth more than unguided ones from the same
    noise; the policy executes the best plan's first action."""
    tr, state = loco_train
    value = lambda s, x, t: x[..., 0].sum(-1)             # noqa: E731
    obs = jnp.array([0.3, -0.9, 1.5])
    key = jax.random.PRNGKey(4)

    def plans(scale):
        cfg = dataclasses.replace(tr.config, guide_scale=scale, t_stopgrad=0, n_plans=64)
        return jax.jit(diffuser.make_guided_planner(cfg, 1, 3, value))(state.algo, obs, key)

    plain, guided = plans(0.0), plans(3.0)
    np.testing.assert_allclose(guided.obs[:, 0], np.broadcast_to(obs, (64, 3)), atol=1e-4)
    assert np.all(np.diff(np.asarray(guided.value)) <= 0)
    gain = float(guided.value.mean() - plain.value.mean())
    assert gain > 0.5 * float(plain.value.std()), (gain, plain.value.std())
    policy = diffuser.make_policy(tr.config, tr.env.spec, goal=False)
    best = diffuser.make_guided_planner(tr.config, 1, 3)(state.algo, obs, key)
    a, carry = jax.jit(policy.act)(state.algo, jnp.zeros((), jnp.int32), obs, key)
    np.testing.assert_allclose(a, np.clip(best.action[0, 0], -2.0, 2.0), rtol=1e-5, atol=1e-5)
    assert int(carry) == 1


@pytest.mark.slow
def test_value_function_learns_the_returns_to_go(loco_train, pendulum):
    """300 steps take the value loss from the targets' second moment (an untrained net says
    ~0 for returns of a few hundred below zero) to below half of it (0.26 measured), and its
    predictions on clean windows correlate with the targets (0.31 measured; 0.04 is the
    spread of a correlation by chance here): a sign error in the loss or the update would do
    neither."""
    tr, state = loco_train
    run = jax.jit(lambda s, k: jax.lax.scan(lambda s, k: tr.update(s, k), s,
                                            jax.random.split(k, 300)))
    algo, metrics = run(state.algo, jax.random.PRNGKey(1))
    loss = np.asarray(metrics["value_loss"])
    assert loss[-50:].mean() < 0.5 * loss[:5].mean(), (loss[:5], loss[-50:].mean())
    data, env = pendulum
    windows, _ = diffuser.prepare_windows(tr.config, data, env, goal=False)
    b = windows.sample(jax.random.PRNGKey(2), 512)
    x0 = jnp.concatenate([b["action"], b["obs"]], -1)
    v = diffuser.value_net(tr.config).apply(algo.value, x0, jnp.zeros((512,), jnp.int32))
    assert np.corrcoef(np.asarray(v), np.asarray(b["value"]))[0, 1] > 0.15


# --- the harness --------------------------------------------------------------------------
# The locomotion case is slow-marked for time (its cold-cache segfault inside jax's
# persistent-cache write is why tests/conftest.py turns that cache off). To keep `make test`
# inside its budget, Decision Diffuser's presets
# (79 s and 39 s of compiles on 2 cores; their training, planning and errors are tested
# below) and MPC (16 s; its search and acting are tested below) run in `make test-slow`.
SLOW = ("decision_diffuser", "decision_diffuser_fast", "mpc")


@pytest.mark.parametrize("algo,setting", [(a, "maze") for a in algos.PLANNERS if a not in SLOW]
                         + [pytest.param(a, "maze", marks=pytest.mark.slow) for a in SLOW]
                         + [pytest.param("diffuser", "locomotion", marks=pytest.mark.slow)])
def test_planner_seeds_vmap_and_resume(algo, setting, maze, pendulum, tmp_path):
    data, env = maze if setting == "maze" else pendulum
    # the locomotion case with halfcheetah's U-Net attention, so that option trains too
    cfg = (_tiny(algo) if setting == "maze"
           else _loco(n_plans="2", **{"diffusion.attention": "true"}))
    tr = algos.get(algo).make_train(cfg, data, env)
    assert tr.periods == 2
    # One compiled program, `bench train`'s: one period of both seeds, every episode loop in
    # lockstep (seed batch None; the policies' tests run the CPU default, one seed's
    # evaluation after another). That `run_seeds` is `run` vmapped is a property of
    # `algos.loop.Train`, which runs planners and policies alike: test_algos checks it on
    # every policy.
    init = jax.jit(tr.init_seeds)
    states = init(bench_train.seed_keys(2))
    period = jax.jit(lambda s: tr.run_seeds(s, 1, None))
    first_state, first = period(states)
    _, second = period(first_state)
    metrics = {k: np.concatenate([first[k], second[k]], 1) for k in first}
    assert metrics["score"].shape == (2, 2)
    assert all(np.isfinite(v).all() for v in metrics.values())
    # seeds do not see each other: the seeds swapped are the same runs swapped (a carry or
    # key shared across the seed axis would not be)
    _, swapped = period(jax.tree_util.tree_map(lambda x: x[::-1], states))
    for k in first:
        np.testing.assert_allclose(swapped[k][::-1], first[k], rtol=1e-4, atol=1e-5)
    # saved after one period, restored into a fresh run's structure and finished, the run is
    # the one that went on in memory
    checkpoint.save(tmp_path / "ckpt", 1, first_state)
    _, restored = checkpoint.restore(tmp_path / "ckpt", init(bench_train.seed_keys(2) + 1))
    _, resumed = period(restored)
    for k in first:
        np.testing.assert_allclose(resumed[k], second[k], rtol=1e-4, atol=1e-5)


def test_diffuser_refuses_what_it_cannot_plan_on(maze, pendulum):
    data, env = maze
    loco_data, pend = pendulum
    with pytest.raises(ConfigError, match="Pendulum-v1 has no goal.*set act_with=actions"):
        diffuser.make_train(_loco(act_with="controller"), loco_data, pend)
    with pytest.raises(ConfigError, match="set diffusion.sampler=ddpm"):
        diffuser.make_train(_loco(**{"diffusion.sampler": "ddim"}), loco_data, pend)
    with pytest.raises(ConfigError, match="= 16.*multiple of 32"):
        diffuser.make_train(_loco(**{"diffusion.width": "8"}), loco_data, pend)
    with pytest.raises(ConfigError, match="one-step episodes"):
        diffuser.make_train(_loco(), loco_data, envs.make("bandit-2d"))
    with pytest.raises(ConfigError, match="whole episodes"):
        diffuser.make_train(_tiny(), data.transitions, env)
    with pytest.raises(ConfigError, match="multiple of 4"):
        _tiny(**{"horizon": "30", "diffusion.mults": "1,2,4"})
    with pytest.raises(ConfigError, match="sampler=edm does not apply"):
        _tiny(**{"diffusion.sampler": "edm", "diffusion.steps": "4"})
    with pytest.raises(ConfigError, match="act_with must be one of controller, actions"):
        _tiny(act_with="mpc")
    with pytest.raises(ConfigError, match="attention is the U-Net's"):
        _tiny(**{"diffusion.attention": "true", "diffusion.backbone": "dit"})
    with pytest.raises(ConfigError, match="no episode is 512 steps long"):
        diffuser.make_train(_tiny(horizon="512"), data, env)
    assert diffuser.task_defaults("jaxrl/maze2d/umaze-v0") == {"horizon": 128, "diffusion.T": 64}
    assert diffuser.task_defaults("jaxrl/maze2d/large-v0") == {"horizon": 384, "diffusion.T": 256}
    assert diffuser.task_defaults("jaxrl/pendulum/medium-v0") == diffuser.LOCOMOTION
    hopper = diffuser.task_defaults("jaxrl/hopper/medium-expert-v0")
    assert hopper["guide_scale"] == "0.0001" and hopper["t_stopgrad"] == "4"
    # the same overrides on MuJoCo ids (ours under jaxrl/mujoco/, Minari's public mujoco/)
    assert diffuser.task_defaults("jaxrl/mujoco/hopper/medium-expert-v0") == hopper
    assert diffuser.task_defaults("jaxrl/mujoco/walker2d/medium-v0") == diffuser.LOCOMOTION
    for ds in ("jaxrl/halfcheetah/medium-v0", "jaxrl/mujoco/halfcheetah/medium-replay-v0",
               "mujoco/halfcheetah/medium-expert-v0"):
        hc = apply_overrides(diffuser.Config(), diffuser.task_defaults(ds))
        assert (hc.horizon, hc.diffusion.mults, hc.diffusion.attention, hc.guide_scale,
                hc.t_stopgrad, hc.diffusion.T) == (4, (1, 4, 8), True, 0.001, 4, 20), ds
    # ... and the attention reaches the U-Net: the authors' count for that U-Net at 14
    # transition dims (tests/test_nets.py; halfcheetah's own 23 dims give another)
    from algos.diffusion_spec import make_denoiser
    shapes = jax.eval_shape(make_denoiser(hc.diffusion).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 4, 14)), 0)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(shapes)) == 4_112_398


def test_a_field_added_later_keeps_published_hashes_until_it_is_set():
    """`diffusion.attention` joined the configs after results were published: at its default
    it is left out of the recorded config, so the quick tier's Diffuser cell keeps the hash
    that names its published results file; set, it is recorded and changes the hash."""
    from algos.config import config_dict, config_hash
    from bench import sweep

    cell = next(c for c in sweep.load("quick").cells
                if c.label == "Diffuser" and c.dataset == "jaxrl/maze2d/umaze-v0")
    config = cell.config()
    assert config.diffusion.attention is False
    assert "attention" not in config_dict(config)["diffusion"]
    assert config_hash(config) == "06a59588"          # results/runs/diffuser/..umaze-v0/
    on = apply_overrides(config, {"diffusion.attention": "true"})
    assert config_dict(on)["diffusion"]["attention"] is True
    assert config_hash(on) != "06a59588"
    # wherever a DiffusionSpec sits: online SynthER's generator (its published cell b0f5318c)
    from algos import sac_synther
    assert "attention" not in config_dict(sac_synther.Config())["generator"]["diffusion"]


def test_cli_diffuser_tracking_on_an_env_without_goal_is_one_line(pendulum, capsys):
    code = cli(["train", "--algo", "diffuser", "--dataset", PENDULUM_ID,
                "--seeds", "1", "--steps", "2", "--set", "act_with=controller"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no goal" in err[0]


# --- learning -----------------------------------------------------------------------------
@pytest.mark.slow
def test_diffuser_learns_to_plan_around_the_maze_walls(maze):
    """From the bottom-left cell to the goal top-left, the straight line crosses the U's wall:
    after 1500 steps (~75 s on 2 cores, so `make test-slow`) Diffuser's plans go around it (an untrained or 600-step model
    puts ~40% of planned states inside walls), and the controller tracking them beats its
    own fallback (the same controller driving straight at the goal: score ~56 here)."""
    data, env = maze
    cfg = apply_overrides(diffuser.Config(), {
        "steps": 1500, "eval_every": 1500, "eval_episodes": 50, "batch_size": 32,
        "horizon": 64, "diffusion.T": 40, "diffusion.width": 16})
    tr = diffuser.make_train(cfg, data, env)
    state, metrics = jax.jit(tr)(jax.random.PRNGKey(0))
    policy = diffuser.make_policy(cfg, env.spec)
    plans = jax.jit(jax.vmap(policy.init_carry, in_axes=(None, None, None, 0)))(
        state.algo, jnp.array([3.0, 1.0, 0.0, 0.0]), jnp.array([1.0, 1.0]),
        jax.random.split(jax.random.PRNGKey(5), 32))
    pos = np.asarray(plans.obs[..., :2])
    walls = load_maze("umaze").walls
    cells = np.clip(np.floor(pos + 0.5).astype(int), 0, 4)
    in_wall = walls[cells[..., 0], cells[..., 1]].mean()
    assert in_wall < 0.05, in_wall
    assert (pos[..., 1].max(1) > 2.5).mean() > 0.9       # round through the right column
    # the fallback alone: the same controller towards the goal from the first step
    straight = diffuser.Plan(jnp.tile(diffuser.goal_state(env.default_task(), 4), (64, 1)),
                             jnp.zeros((64, 2)), jnp.zeros((), jnp.int32))
    from envs.evaluation import Policy, make_evaluate

    fallback = Policy(lambda s, o, task, k: straight,
                      lambda s, c, o, k: (diffuser.controller(c, o, 2), c._replace(t=c.t + 1)))
    returns, _ = jax.jit(make_evaluate(fallback, env, 50))(None, jax.random.PRNGKey(1))
    assert float(metrics["score"][-1]) > float(env.normalize(returns).mean()) + 5


# --- the autoregressive baseline: MPC with the ensemble -----------------------------------
@pytest.fixture(scope="module")
def mpc_trained(maze):
    """An MPC whose ensemble has fit the umaze dynamics (small: 600 steps, 3 members)."""
    from algos import mpc

    data, env = maze
    cfg = apply_overrides(mpc.Config(), {
        "steps": 600, "eval_every": 600, "eval_episodes": 1, "batch_size": 128,
        "ensemble.members": 3, "ensemble.elites": 2, "ensemble.width": 64,
        "ensemble.depth": 2, "horizon": 12, "population": 64, "cem_elites": 8,
        "iterations": 4})
    tr = mpc.make_train(cfg, data, env)
    trained, _ = jax.jit(tr)(jax.random.PRNGKey(0))
    return cfg, env, trained.algo


def test_cem_beats_random_shooting_on_its_objective(mpc_trained):
    from algos import mpc

    cfg, env, model_state = mpc_trained
    objective, cem = mpc.make_search(cfg, env.spec)
    obs, goal = jnp.array([1.0, 3.0, 0.0, 0.0]), jnp.array([1.0, 1.0])
    mean = jnp.zeros((cfg.horizon, 2))
    keys = jax.random.split(jax.random.PRNGKey(4), 8)
    searched = jax.jit(jax.vmap(lambda k: objective(
        model_state.model, obs, cem(model_state.model, obs, goal, mean, k), goal)))(keys)
    random = jax.jit(jax.vmap(lambda k: objective(
        model_state.model, obs, jax.random.uniform(k, (cfg.horizon, 2), minval=-1, maxval=1),
        goal)))(jax.random.split(jax.random.PRNGKey(5), cfg.population))
    assert float(searched.min()) > float(random.max())     # every search beats every guess


def test_mpc_drives_to_a_goal_in_sight(mpc_trained):
    """From the top-right cell the goal (top-left) is a straight run: MPC on the learned model
    gets there and stays (a sign error in the objective would drive it away)."""
    from algos import mpc

    cfg, env, model_state = mpc_trained
    policy = mpc.make_policy(cfg, env.spec)
    carry = policy.init_carry(model_state, None, env.default_task(), None)
    state = env.state_from_obs(jnp.array([1.0, 3.0, 0.0, 0.0]))
    obs = jnp.array([1.0, 3.0, 0.0, 0.0])
    act = jax.jit(policy.act)
    step = jax.jit(env.step)
    dist = []
    for t in range(40):
        a, carry = act(model_state, carry, obs, jax.random.PRNGKey(t))
        obs, state, *_ = step(jax.random.PRNGKey(t), state, a)
        dist.append(float(jnp.linalg.norm(obs[:2] - jnp.array([1.0, 1.0]))))
    assert min(dist[:30]) < 0.5 and dist[-1] < 0.5, dist


# --- Decision Diffuser ----------------------------------------------------------------------
def _dd(algo="decision_diffuser", **sets):
    mod = algos.get(algo)
    cfg = apply_overrides(mod.Config(), mod.task_defaults(PENDULUM_ID))
    return apply_overrides(cfg, {**TINY, **mod.TINY, **sets})


def test_cdf_normaliser_is_the_authors_empirical_cdf():
    """The authors' CDFNormalizer1d: `2 interp1d(unique values, cumulative counts / N)(clip(x))
    - 1`, a constant dimension passed through; with more unique values than knots, within one
    knot's spacing of the full table, exact at both ends."""
    from algos.decision_diffuser import CDF, CDF_KNOTS

    rng = np.random.default_rng(0)
    n = 3000
    x = np.stack([rng.integers(0, 50, n) * 0.1, rng.normal(size=n), np.full(n, 3.0)], 1)
    norm = CDF.fit(x, x[:, :1])
    probe = np.stack([np.linspace(-1.0, 6.0, 301), np.linspace(-4.0, 4.0, 301),
                      np.linspace(0.0, 5.0, 301)], 1)
    got = np.asarray(jax.jit(norm.obs)(jnp.asarray(probe, jnp.float32)))

    def full(col, z):
        q, c = np.unique(col, return_counts=True)
        return 2.0 * np.interp(np.clip(z, q[0], q[-1]), q, np.cumsum(c) / col.size) - 1.0

    np.testing.assert_allclose(got[:, 0], full(x[:, 0], probe[:, 0]), atol=1e-5)   # 50 values
    assert len(np.unique(x[:, 1])) > CDF_KNOTS
    assert np.abs(got[:, 1] - full(x[:, 1], probe[:, 1])).max() < 4 * 2 * n / CDF_KNOTS / n
    assert got[0, 1] == pytest.approx(2.0 / n - 1.0, abs=1e-6) and got[-1, 1] == 1.0
    np.testing.assert_array_equal(got[:, 2], probe[:, 2].astype(np.float32))      # constant
    # the inverse maps the data's own values back (they are knots of the 50-value column)
    back = np.asarray(norm.obs_from(norm.obs(jnp.asarray(x[:200], jnp.float32))))
    np.testing.assert_allclose(back[:, 0], x[:200, 0], atol=1e-4)
    np.testing.assert_allclose(back[:, 2], 3.0)
    np.testing.assert_allclose(np.asarray(norm.act_from(norm.act(jnp.asarray(x[:5, :1],
                                                                             jnp.float32)))),
                               x[:5, :1], atol=1e-4)


def test_decision_diffuser_unet_has_the_authors_parameter_count():
    """The authors' TemporalUnet(returns_condition=True) counted by instantiating their
    PyTorch code (anuragajay/decision-diffuser 01ce528): 59,732,491 at hopper's 11 states,
    horizon 100, dim 128, mults (1, 4, 8); 17,523 at 3 states, dim 8, mults (1, 2)."""
    from algos import decision_diffuser as dd

    def count(cfg, h, d):
        shapes = jax.eval_shape(dd.denoiser(cfg).init, jax.random.PRNGKey(0),
                                jnp.zeros((1, h, d)), jnp.zeros((1,), jnp.int32),
                                jnp.zeros((1,)))
        return sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))

    assert count(dd.Config(), 100, 11) == 59_732_491
    assert count(apply_overrides(dd.Config(), {"diffusion.width": "8",
                                               "diffusion.mults": "1,2"}), 8, 3) == 17_523


def test_decision_diffuser_windows_carry_the_scaled_return_to_go(pendulum):
    """The condition is the 0.99-discounted return from the window's start to the episode's
    end (a plain loop here) over `returns_scale` (the code), or mapped to [0, 1] over the
    dataset's windows (`range`, the paper's appendix)."""
    from algos import decision_diffuser as dd

    data, env = pendulum
    scaled, _ = dd.prepare_windows(_dd(returns_norm="scale"), data, env)
    ranged, _ = dd.prepare_windows(_dd(returns_norm="range"), data, env)
    b = jax.jit(lambda k: scaled.sample(k, 64))(jax.random.PRNGKey(0))
    for i in range(64):
        e, start = int(b["episode"][i]), int(b["start"][i])
        rewards = np.asarray(data.raw_episodes[e]["rewards"], np.float64)[start:]
        expect = sum(0.99 ** k * r for k, r in enumerate(rewards)) / 400.0
        np.testing.assert_allclose(float(b["value"][i]), expect, rtol=1e-4, atol=1e-5)
    at = lambda w: np.asarray(w.rtg)[np.asarray(w.starts)[:, 0], np.asarray(w.starts)[:, 1]]  # noqa: E731
    r, s = at(ranged), at(scaled)
    assert r.min() == 0.0 and r.max() == pytest.approx(1.0)
    np.testing.assert_allclose(r, (s - s.min()) / (s.max() - s.min()), atol=1e-5)


def test_low_temperature_scales_every_noise_draw():
    """With a denoiser that predicts x0 = 0 every sample is linear in the noise drawn, so at
    temperature 0.5 it is exactly half the sample at 1 (same key): the initial noise and every
    step's noise are scaled (the authors' `0.5 * randn` in both places)."""
    from algos import diffusion as D

    sched = schedule("cosine", 10)
    zero = lambda x, t, c: jnp.zeros_like(x)  # noqa: E731
    key = jax.random.PRNGKey(3)
    for sample in (lambda **kw: D.ddpm_sample(zero, sched, key, (4, 3), parameterization="x0",
                                              **kw),
                   lambda **kw: D.ddim_sample(zero, sched, key, (4, 3), eta=1.0, steps=5,
                                              parameterization="x0", **kw)):
        hot, cold = sample(return_chain=True), sample(return_chain=True, temperature=0.5)
        np.testing.assert_allclose(cold[1], 0.5 * hot[1], atol=1e-6)
        assert float(jnp.abs(hot[1][1]).min()) > 0          # the chain is noise, not zeros


def test_decision_diffuser_plans_with_classifier_free_guidance(pendulum):
    """One plan is the spec's sampler over `eps_null + w (eps_cond - eps_null)` (two separate
    network calls here: the `classifier_free` helper) at temperature 0.5, the current state
    held at step 0, and the action is the inverse dynamics of the first two states."""
    from algos import decision_diffuser as dd
    from algos import diffusion as D
    from algos.diffusion_spec import make_sampler
    from algos.nets import as_denoiser

    data, env = pendulum
    cfg = _dd()
    tr = dd.make_train(cfg, data, env)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0)).algo
    # EMA weights away from their init, so the condition matters
    state = state.replace(ema=jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape), state.ema))
    obs, key = jnp.array([0.3, -0.9, 1.5]), jax.random.PRNGKey(2)
    plan = jax.jit(dd.make_planner(cfg, 1, 3))
    x, action = plan(state, obs, key, 0.9)
    net = dd.denoiser(cfg)
    cf = D.classifier_free(as_denoiser(net, state.ema["denoiser"], False),
                           as_denoiser(net, state.ema["denoiser"], True), cfg.guidance_w)
    mask = diffuser.condition_mask(cfg.horizon, 0, 3, goal=False)
    s0 = state.norm.obs(obs)
    values = jnp.zeros((cfg.horizon, 3)).at[0].set(s0)
    ref = make_sampler(cfg.diffusion)(cf, key, (1, cfg.horizon, 3), jnp.full((1,), 0.9),
                                      inpaint=(mask, values), temperature=0.5)[0]
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x[0], s0, atol=1e-6)
    inv = dd.InverseDynamics(cfg.inv_hidden, 1)
    np.testing.assert_allclose(action, state.norm.act_from(
        inv.apply(state.ema["inv"], x[0], x[1])), rtol=1e-5, atol=1e-5)
    other, _ = plan(state, obs, key, 0.0)
    assert float(jnp.abs(other - x).max()) > 1e-4              # the target return acts


def test_decision_diffuser_learns_inverse_dynamics_and_the_return_condition(pendulum):
    """3000 steps on the random Pendulum data (~15-30 s on 2 cores). The inverse dynamics
    reads the action off consecutive states (R^2 0.37 here, -0.18 after 600 steps), and plans
    conditioned on the best return in the data hold more reward per planned step than plans
    conditioned on the worst (-7.28 against -7.84 per step here; -6.76 against -7.23 from
    another key)."""
    from algos import decision_diffuser as dd

    data, env = pendulum
    cfg = apply_overrides(dd.Config(), {
        "returns_norm": "range", "horizon": "8", "diffusion.T": "20", "diffusion.width": "16",
        "diffusion.mults": "1,2", "inv_hidden": "64", "steps": "3000", "eval_every": "3000",
        "eval_episodes": "2", "batch_size": "64", "ema_start": "0"})
    tr = dd.make_train(cfg, data, env)
    # the updates alone (no evaluation: the harness runs that in the resume test)
    s, _ = jax.jit(lambda k: jax.lax.scan(tr.update, tr.init_algo(k), jax.random.split(
        jax.random.fold_in(k, 1), cfg.steps)))(jax.random.PRNGKey(0))
    obs, act, nobs = (jnp.asarray(np.asarray(data.transitions[k], np.float32))
                      for k in ("obs", "action", "next_obs"))
    inv = dd.InverseDynamics(cfg.inv_hidden, 1)
    pred = s.norm.act_from(inv.apply(s.ema["inv"], s.norm.obs(obs), s.norm.obs(nobs)))
    r2 = 1.0 - float(jnp.mean((pred - act) ** 2) / jnp.var(act))
    assert r2 > 0.15, r2
    plan = jax.jit(jax.vmap(dd.make_planner(cfg, 1, 3), in_axes=(None, 0, 0, None)))
    starts = obs[::10][:64]
    keys = jax.random.split(jax.random.PRNGKey(5), starts.shape[0])

    def reward_per_step(target):
        x = s.norm.obs_from(plan(s, starts, keys, target)[0][:, 1:])
        theta = jnp.arctan2(x[..., 1], x[..., 0])
        return float(jnp.mean(-(theta ** 2 + 0.1 * x[..., 2] ** 2)))

    low, high = reward_per_step(0.0), reward_per_step(1.0)
    assert high > low + 0.2, (low, high)


def test_decision_diffuser_refuses_what_it_cannot_plan_on(maze, pendulum, capsys):
    from algos import decision_diffuser as dd

    data, env = pendulum
    with pytest.raises(ConfigError, match="whole episodes"):
        dd.make_train(_dd(), data.transitions, env)
    with pytest.raises(ConfigError, match="one-step episodes"):
        dd.make_train(_dd(), data, envs.make("bandit-2d"))
    with pytest.raises(ConfigError, match="ddpm or ddim"):
        _dd(**{"diffusion.sampler": "dpm_solver_pp", "diffusion.steps": "2"})
    with pytest.raises(ConfigError, match=r"condition_dropout must be in \[0, 1\)"):
        _dd(condition_dropout="1")
    with pytest.raises(ConfigError, match="returns_norm must be one of scale, range"):
        _dd(returns_norm="minmax")
    assert dd.task_defaults("jaxrl/hopper/medium-expert-v0") == {}      # the authors' 400
    assert dd.task_defaults("jaxrl/mujoco/hopper/medium-v0") == {}       # MuJoCo ids too
    assert dd.task_defaults("mujoco/hopper/expert-v0") == {}
    assert dd.task_defaults("jaxrl/pendulum/medium-v0") == {"returns_norm": "range"}
    code = cli(["train", "--algo", "decision_diffuser_fast", "--dataset", PENDULUM_ID,
                "--seeds", "1", "--steps", "2", "--set", "temperature=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "temperature > 0" in err[0], err


def test_windows_never_reach_past_max_path_length(pendulum):
    """The authors' `max_path_length`: with it at 40 and horizon 8, windows of the 125-step
    episodes start at steps 0..32 only (so none is padded: they all end by step 39); without
    it, at every step."""
    from algos.data import Windows

    data, _ = pendulum
    capped = Windows.create(data.episodes, 8, pad=True, max_length=40)
    free = Windows.create(data.episodes, 8, pad=True)
    starts = np.asarray(capped.starts)
    assert starts[:, 1].max() == 32 and len(starts) == 33 * len(data.raw_episodes)
    assert len(np.asarray(free.starts)) == data.num_transitions
