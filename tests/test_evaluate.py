"""`python -m bench evaluate`: a finished cell re-evaluated under other acting settings, from
its checkpoint, paired seed by seed with its last training evaluation."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from bench import cli, evaluate as bench_eval, train as bench_train

# Pendulum: a continuous reward, so another way of acting shows in every return
DATA = "test/pendulum/evaluate-v0"
SETS = {"eval_every": "3", "eval_episodes": "2", "diffusion.width": "32",
        "diffusion.depth": "2", "batch_size": "32"}


def cell(steps: int):
    return ["--algo", "diffusion_bc", "--dataset", DATA, "--seeds", "2", "--steps",
            str(steps)] + [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, random_pendulum):
    random_pendulum(DATA, 600, jax.random.PRNGKey(0))
    root = tmp_path_factory.mktemp("evaluate")
    result = bench_train.run("diffusion_bc", DATA, 2, steps=6, overrides=SETS,
                             out=root / "runs", checkpoints=root / "ckpt", log=lambda m: None)
    return root, result


def test_no_acting_change_gives_the_cells_final_scores(trained):
    root, result = trained
    r = bench_eval.evaluate("diffusion_bc", DATA, 2, steps=6, overrides=SETS,
                            out=root / "evals", checkpoints=root / "ckpt", log=lambda m: None)
    final = [f["score"] for f in result["final"]]
    # the same keys as the last training evaluation: the same episodes, another program
    np.testing.assert_allclose([f["score"] for f in r["final"]], final, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([f["trained_score"] for f in r["final"]], final, rtol=0, atol=0)
    assert abs(r["difference"]["mean"]) < 1e-3
    assert r["acting"] == {} and r["config"] == result["config"]
    assert r["data"]["content_hash"] == result["data"]["content_hash"]
    assert r["loop_steps"] >= 2 and r["ms_per_loop_step"] > 0


def test_an_acting_change_from_the_cli_acts_otherwise_and_is_recorded(trained, monkeypatch,
                                                                        capsys):
    root, result = trained
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(root / "ckpt"))
    out = root / "cli"
    args = ["evaluate", *cell(6), "--act", "diffusion.sampler=ddim", "--act", "diffusion.steps=1",
            "--episodes", "3", "--out", str(out)]
    assert cli.main(args) == 0
    files = list(out.rglob("*.json"))
    assert len(files) == 1
    r = json.loads(files[0].read_text())
    assert r["kind"] == "evaluation" and r["eval_episodes"] == 3
    assert r["acting"] == {"diffusion.sampler": "ddim", "diffusion.steps": "1"}
    assert r["config"]["diffusion"]["sampler"] == "ddim" and r["config"]["diffusion"]["steps"] == 1
    assert r["trained_config"] == json.loads(json.dumps(result["config"]))
    assert r["trained_config_hash"] == result["config_hash"] != r["config_hash"]
    assert r["data"]["content_hash"] == result["data"]["content_hash"]
    assert r["command"].startswith("python -m bench evaluate")
    for key in ("code", "versions", "hardware"):
        assert r[key]
    # one DDIM step acts otherwise than the trained five DDPM steps
    new = np.array([f["score"] for f in r["final"]])
    assert np.isfinite(new).all()
    assert not np.allclose(new, [f["trained_score"] for f in r["final"]], atol=1e-3), new
    assert np.unique(new).size == 2                     # two seeds, two policies
    # a second setting of the same cell: one table row each, and the trade-off figure
    bench_eval.evaluate("diffusion_bc", DATA, 2, steps=6, overrides=SETS, out=out,
                        acting={"diffusion.sampler": "ddim", "diffusion.steps": "2"},
                        log=lambda m: None)
    table = (files[0].parent / "README.md").read_text()
    assert "| diffusion.sampler=ddim, diffusion.steps=1 | 2 x 3 |" in table
    assert "| diffusion.sampler=ddim, diffusion.steps=2 | 2 x 2 |" in table
    assert (files[0].parent / "tradeoff.png").stat().st_size > 1000
    capsys.readouterr()
    assert cli.main(args) == 0          # finished: nothing recomputed
    assert "nothing to do" in capsys.readouterr().out

    # the folder's table holds one training's evaluations: another training's (here: other
    # trained scores, one of them NaN as a diverged seed's) is named below it, never a row
    other = json.loads(files[0].read_text())
    other["final"][0].update(trained_score=float("nan"), trained_return=float("nan"))
    stray = files[0].parent / "00000000-seeds2.json"
    stray.write_text(json.dumps(other))
    table = bench_eval.write_table(files[0].parent, files[0]).read_text()
    assert "| diffusion.sampler=ddim, diffusion.steps=1 | 2 x 3 |" in table
    assert table.count("| diffusion.sampler=ddim, diffusion.steps=1 |") == 1
    assert "Left out: 1 evaluation(s) of another training of this cell" in table
    table = bench_eval.write_table(files[0].parent, stray).read_text()   # NaN: no crash
    assert table.count("| diffusion.sampler=ddim, diffusion.steps=1 |") == 1
    assert "Left out: 2 evaluation(s)" in table
    stray.unlink()


@pytest.mark.parametrize("algo, act, says", [
    ("diffusion_bc", "lr=0.1", "acting fields are diffusion.sampler"),
    ("td3_bc", "n_candidates=4", "td3_bc has none"),
    ("bc", "hidden=8,8", "its acting fields are eval_sample"),
    ("diffusion_bc", "diffusion.steps", "--act diffusion.steps: expected key=value"),
    ("diffusion_bc", "diffusion.churn=5", "does nothing with the ddpm sampler"),
    ("idql", "diffusion.eta=0.5", "does nothing with the ddpm sampler"),
    ("diffusion_bc", "diffusion.sampler=edm", "EDM's noise model is another model"),
    ("diffusion_ql", "diffusion.steps=2", "acting fields are n_candidates, selection"),
])
def test_a_field_that_changes_training_is_one_line(algo, act, says, capsys):
    assert cli.main(["evaluate", "--algo", algo, "--dataset", DATA, "--act", act]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_a_cell_never_trained_names_the_training_command(tmp_path, capsys, monkeypatch,
                                                        random_pendulum):
    random_pendulum(DATA, 600, jax.random.PRNGKey(0))
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(tmp_path))
    assert cli.main(["evaluate", *cell(9), "--act",
                     "diffusion.steps=2", "--act", "diffusion.sampler=ddim"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no finished training" in err and "python -m bench train --algo diffusion_bc" in err
    assert "--steps 9" in err and len(err.splitlines()) == 1, err


def test_every_acting_field_is_a_field_of_its_config():
    import functools

    import algos
    from algos.config import apply_overrides

    for algo in algos.ALGOS:
        config = algos.get(algo).Config()
        for field in algos.acting_fields(algo):
            value = functools.reduce(getattr, field.split("."), config)
            assert apply_overrides(config, {field: value}, typed=True) == config, (algo, field)


def test_a_damaged_checkpoint_names_the_retraining_command(trained, tmp_path, monkeypatch,
                                                           capsys):
    import shutil

    root, _ = trained
    shutil.copytree(root / "ckpt", tmp_path / "ckpt")
    for f in (tmp_path / "ckpt").rglob("digest-*.json"):
        f.unlink()                       # a checkpoint that can no longer be checked
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(tmp_path / "ckpt"))
    assert cli.main(["evaluate", *cell(6), "--out", str(tmp_path / "evals")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no readable digest" in err and len(err.splitlines()) == 1, err
    assert err.endswith("--force") and "python -m bench train --algo diffusion_bc" in err


def test_evaluations_go_beside_their_results_folder(tmp_path):
    assert bench_eval.beside(tmp_path / "results" / "runs") == tmp_path / "results" / "evals"
    assert bench_eval.beside(tmp_path / "runs-new") == tmp_path / "runs-new-evals"


def test_sampled_tasks_give_every_episode_its_own_goal_from_the_same_starts():
    """Multi2D's mechanism: with `sample_tasks` each episode of Maze2D umaze gets its own goal,
    the env rewards that goal and the policy's carry sees it, from the same starts as the
    evaluation in the layout's goal. D4RL's waypoint controller steered to the carried goal
    reaches it; steered to the layout's fixed goal instead it earns less on sampled goals."""
    import jax.numpy as jnp

    import envs
    from envs.evaluation import Policy, make_evaluate, start_lanes
    from envs.maze2d import load_maze, waypoint_action

    env, maze = envs.make("maze2d-umaze"), load_maze("umaze")
    free = jnp.asarray(maze.free_cells, jnp.float32)

    def index_of(goal):
        return jnp.argmin(jnp.linalg.norm(free - goal, axis=-1))

    to_carried = Policy(lambda s, obs, task, key: index_of(task),
                        lambda s, idx, obs, key: (waypoint_action(maze, obs, idx), idx))
    to_fixed = Policy(lambda s, obs, task, key: jnp.asarray(maze.goal_index, jnp.int32),
                      lambda s, idx, obs, key: (waypoint_action(maze, obs, idx), idx))
    key, n = jax.random.PRNGKey(4), 16
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.fold_in(key, 2), n))
    k_reset = jax.random.split(jax.random.split(key)[0], n)
    k_carry = jax.random.split(jax.random.fold_in(key, 1), n)
    obs, state, carry = start_lanes(env, to_carried, None, k_reset, k_carry, lane_tasks=tasks)
    obs0, _, carry0 = start_lanes(env, to_carried, None, k_reset, k_carry)
    np.testing.assert_array_equal(obs, obs0)                     # the same starts
    np.testing.assert_array_equal(jax.vmap(env.task)(state), tasks)
    np.testing.assert_array_equal(carry, jax.vmap(index_of)(tasks))
    assert len(np.unique(np.asarray(carry))) >= 3 and (np.asarray(carry0) == maze.goal_index).all()

    sampled = jax.jit(make_evaluate(to_carried, env, n, sample_tasks=True))(None, key)[0]
    assert (np.asarray(sampled) > 0).all(), sampled               # every goal reached
    fixed = jax.jit(make_evaluate(to_fixed, env, n, sample_tasks=True))(None, key)[0]
    assert float(fixed.mean()) < 0.7 * float(sampled.mean()), (fixed, sampled)
    # paired: were every drawn task the layout's own, the evaluation would be the default one
    # (the same reset, carry and loop keys), bit for bit
    same = dataclasses.replace(env, tasks=env.tasks._replace(sample=lambda k: env.tasks.default()))
    np.testing.assert_array_equal(
        jax.jit(make_evaluate(to_carried, same, n, sample_tasks=True))(None, key)[0],
        jax.jit(make_evaluate(to_carried, env, n))(None, key)[0])
    with pytest.raises(ValueError, match="no task parameters"):
        make_evaluate(to_carried, envs.make("Pendulum-v1"), 2, sample_tasks=True)
    # the Multi2D expert: the same controller, the same way (measured 102 on 100 episodes)
    from envs.datasets import builder

    expert = builder.maze_expert_return(env, episodes=n, seed=4, sample_tasks=True)
    np.testing.assert_allclose(expert, float(sampled.mean()), rtol=1e-6)


MAZE = "test/maze2d/evaluate-v0"
MAZE_SETS = {"eval_every": "3", "eval_episodes": "2", "batch_size": "32"}


def test_sampled_tasks_from_the_cli_are_recorded_and_kept_apart(tmp_path, monkeypatch, capsys,
                                                               random_pendulum):
    """`--tasks sampled`: its own file beside the default-task evaluation, the field in the
    file, a row of the folder's table saying so; one line on an env without tasks."""
    import envs
    from envs.datasets import builder, minari_io

    random_pendulum(DATA, 600, jax.random.PRNGKey(0))
    env = envs.make("maze2d-umaze")
    if not minari_io.exists(MAZE):
        eps = builder.collect_maze(env, jax.random.PRNGKey(0), 3000)
        minari_io.write(MAZE, eps, obs_low=-np.inf, obs_high=np.inf, act_low=-1.0, act_high=1.0,
                        ref_min_score=env.spec.ref_min_score,
                        ref_max_score=env.spec.ref_max_score, algorithm_name="test",
                        description="test", extra_metadata={"env_id": "maze2d-umaze"})
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(tmp_path / "ckpt"))
    bench_train.run("bc", MAZE, 2, steps=3, overrides=MAZE_SETS, out=tmp_path / "runs",
                    log=lambda m: None)
    args = ["evaluate", "--algo", "bc", "--dataset", MAZE, "--seeds", "2", "--steps", "3",
            *[a for k, v in MAZE_SETS.items() for a in ("--set", f"{k}={v}")],
            "--out", str(tmp_path / "evals")]
    assert cli.main(args) == 0
    assert cli.main(args + ["--tasks", "sampled"]) == 0
    files = sorted((tmp_path / "evals").rglob("*.json"), key=lambda f: len(f.name))
    assert [f.name.endswith("-seeds2-sampled-tasks.json") for f in files] == [False, True]
    plain, multi = (json.loads(f.read_text()) for f in files)
    assert plain["tasks"] == "default" and multi["tasks"] == "sampled"
    assert multi["acting"] == {} and multi["config_hash"] == plain["config_hash"]
    assert [f["trained_score"] for f in multi["final"]] == [f["trained_score"]
                                                            for f in plain["final"]]
    # the goals were drawn: the same policies from the same starts earn otherwise
    assert [f["return"] for f in multi["final"]] != [f["return"] for f in plain["final"]]
    table = (files[0].parent / "README.md").read_text()
    assert "| (none) | 2 x 2 |" in table
    assert "| a task sampled per episode | 2 x 2 |" in table
    assert "a change of task, not of acting" in table
    capsys.readouterr()
    assert cli.main(args + ["--tasks", "sampled"]) == 0            # finished: kept apart
    assert "nothing to do" in capsys.readouterr().out
    # before anything else: an untrained Pendulum cell is told that no training would help
    for bad, says in [("sampled", "has no task parameters"), ("all", "--tasks all: one of")]:
        assert cli.main(["evaluate", *cell(9), "--tasks", bad, "--out",
                         str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
