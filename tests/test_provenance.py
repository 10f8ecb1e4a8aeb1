"""Provenance and faults: every results file names the data, code and hardware behind it; other
data, damaged files, concurrent runs and bad arguments end in one line (exit 2) or a rerun,
never in a traceback, a reused result or a wrong number."""
import dataclasses
import json
import os
import shutil
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from algos import checkpoint
from algos.config import ConfigError
from bench import leaderboard, sweep, sysinfo
from bench import train as bench_train
from bench.cli import main as cli
from envs import datasets
from envs.datasets import behaviour, minari_io
from envs.registry import make

BANDIT = "jaxrl/bandit/multimodal-v0"
SETS = {"eval_every": "3", "eval_episodes": "2", "hidden": "32,32", "batch_size": "32"}
ONE_CELL = """
[[group]]
algos = ["bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 2
steps = 6
set = { eval_every = 3, eval_episodes = 2, hidden = [32, 32], batch_size = 32 }
[[group]]
algos = ["bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 2
steps = 6
label = "BC (wide)"
set = { eval_every = 3, eval_episodes = 2, hidden = [48, 48], batch_size = 32 }
"""


@pytest.fixture(scope="module", autouse=True)
def bandit_dataset():
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)


@pytest.fixture
def ckpts(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_train, "CHECKPOINTS", tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def _train_argv(out, *extra):
    argv = ["train", "--algo", "bc", "--dataset", BANDIT, "--seeds", "2", "--steps", "6",
            "--out", str(out)]
    for k, v in SETS.items():
        argv += ["--set", f"{k}={v}"]
    return argv + list(extra)


# --- provenance -------------------------------------------------------------------------------
def test_a_results_file_names_its_data_code_and_hardware_and_other_data_is_refused(
        tmp_path, ckpts, capsys):
    assert cli(_train_argv(tmp_path / "runs")) == 0
    capsys.readouterr()
    path = next((tmp_path / "runs").rglob("*.json"))
    res = json.loads(path.read_text())
    data = datasets.load(BANDIT)
    assert res["schema"] == bench_train.SCHEMA == 2
    assert res["data"]["content_hash"] == data.content_hash == datasets.stored_hash(BANDIT)
    assert res["data"]["transitions"] == data.num_transitions
    assert res["data"]["behaviour_score"] == pytest.approx(
        data.metadata["diffrl"]["behaviour_normalized_score"])
    assert len(res["code"]["commit"]) == 40 and isinstance(res["code"]["dirty"], bool)
    assert res["hardware"]["cpu_flags"] == sysinfo.cpu_flags()
    # the checkpoint folder is keyed by the data's content
    assert list(ckpts.rglob(f"data-{data.content_hash[:16]}"))

    # the same cell over other data (here: the file says so) is refused, never reused
    res["data"]["content_hash"] = "0" * 64
    path.write_text(json.dumps(res))
    assert cli(_train_argv(tmp_path / "runs")) == 2
    _one_line(capsys, "trained on other data", "000000000000", data.content_hash[:12], "--force")
    assert json.loads(path.read_text())["data"]["content_hash"] == "0" * 64  # left alone
    assert cli(_train_argv(tmp_path / "runs", "--force")) == 0
    assert json.loads(path.read_text())["data"]["content_hash"] == data.content_hash


def test_a_sweep_checks_every_cell_against_the_data_before_the_first_starts(tmp_path, ckpts,
                                                                           capsys):
    path = tmp_path / "s.toml"
    path.write_text(ONE_CELL)
    s = sweep.load(path)
    argv = ["sweep", str(path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert cli(argv) == 0
    capsys.readouterr()
    first, second = (c.path(tmp_path / "runs") for c in s.cells)
    md = (tmp_path / "out" / "leaderboard-s.md").read_text()
    assert "## Data and code" in md and datasets.stored_hash(BANDIT)[:12] in md
    res = json.loads(second.read_text())
    res["data"]["content_hash"] = "f" * 64
    second.write_text(json.dumps(res))
    # the tables flag cells of one task trained on different data
    rows = leaderboard.collect(s, tmp_path / "runs")
    assert "different data" in leaderboard.markdown(s, rows, [], [])
    first.unlink()
    assert cli(argv) == 2
    _one_line(capsys, str(second), "trained on other data", "--force")
    assert not first.exists()  # nothing ran


def test_results_files_that_are_damaged_are_one_line(tmp_path, ckpts, capsys):
    path = tmp_path / "s.toml"
    path.write_text(ONE_CELL)
    argv = ["sweep", str(path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert cli(argv) == 0
    capsys.readouterr()
    target = sweep.load(path).cells[0].path(tmp_path / "runs")
    good = target.read_text()
    for bad in (good[: len(good) // 2], "[1, 2]", '{"schema": 2, "complete": true}'):
        target.write_text(bad)
        for cmd in (argv, ["table", "--sweep", str(path), "--runs", str(tmp_path / "runs"),
                           "--out", str(tmp_path / "out")]):
            assert cli(cmd) == 2, bad
            _one_line(capsys, str(target))


# --- checkpoints ------------------------------------------------------------------------------
def _tree():
    # "act": a zero-size array, as MJX's state holds (orbax alone refuses to save one)
    return {"w": np.arange(4096, dtype=np.float32).reshape(64, 64), "step": np.array(3, np.int32),
            "act": np.zeros((2, 0), np.float32)}


def test_checkpoint_round_trip_and_every_damage_is_named(tmp_path):
    d = tmp_path / "c"
    checkpoint.save(d, 1, _tree())
    checkpoint.save(d, 2, _tree())
    assert [f.name for f in d.glob("digest-*.json")] == ["digest-2.json"]
    step, tree = checkpoint.restore(d, _tree())
    assert step == 2 and np.array_equal(tree["w"], _tree()["w"])
    assert tree["act"].shape == (2, 0) and tree["act"].dtype == np.float32

    # altered values: the digest no longer matches
    (d / "digest-2.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(checkpoint.CheckpointError, match="does not match its digest"):
        checkpoint.restore(d, _tree())
    (d / "digest-2.json").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="no readable digest"):
        checkpoint.restore(d, _tree())
    # another structure under the same name (other code): named, no orbax traceback
    checkpoint.save(d, 3, _tree())
    with pytest.raises(checkpoint.CheckpointError, match="cannot be restored"):
        checkpoint.restore(d, {"w": np.zeros((64, 64), np.float32), "other": np.zeros(2)})
    # truncated array files
    for f in (d / "3").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(checkpoint.CheckpointError, match=str(d)):
        checkpoint.restore(d, _tree())


def test_a_jitted_step_on_restored_state_reuses_its_compiled_program(tmp_path):
    """Resuming costs no second compile: restored arrays arrive as a jitted function returns
    them (orbax's come committed to their device, and jit compiled again for those)."""
    step = jax.jit(lambda t: jax.tree.map(lambda x: x + 1, t))
    out = step(jax.tree.map(jax.numpy.asarray, _tree()))
    checkpoint.save(tmp_path / "c", 1, out)
    _, restored = checkpoint.restore(tmp_path / "c", out)
    chex.assert_trees_all_equal(restored, out)
    step(out)
    step(restored)
    assert step._cache_size() == 1


def test_a_damaged_checkpoint_stops_the_run_with_one_line(tmp_path, ckpts, capsys):
    argv = _train_argv(tmp_path / "runs")
    assert cli(argv) == 0
    capsys.readouterr()
    for f in next((tmp_path / "runs").rglob("*.json")), *ckpts.rglob("digest-*.json"):
        f.unlink()  # results gone, checkpoint without its digest: resuming would be blind
    assert cli(argv) == 2
    _one_line(capsys, "no readable digest", "--force")
    assert cli(argv + ["--force"]) == 0


def test_a_second_run_of_the_same_cell_says_it_is_running(tmp_path, ckpts, capsys):
    config = bench_train.make_config("bc", 6, SETS, BANDIT)
    name = bench_train.cell_name("bc", BANDIT, config)
    d = ckpts / name  # one lock per cell, whatever its seeds or data
    with checkpoint.lock(d, "the first"):
        assert cli(_train_argv(tmp_path / "runs")) == 2
        _one_line(capsys, "already running", f"process {os.getpid()}")
        with pytest.raises(checkpoint.CheckpointError, match="the second is already running"):
            with checkpoint.lock(d, "the second"):
                pass
    assert not (tmp_path / "runs").exists()
    assert cli(_train_argv(tmp_path / "runs")) == 0  # released: the run goes ahead


# --- datasets and behaviour agents ------------------------------------------------------------
def test_committed_agents_are_intact_and_a_damaged_one_is_named(tmp_path):
    for env_id, recipe in behaviour.RECIPES.items():
        path = behaviour.agent_path(behaviour.REPO_AGENTS, env_id, 0, recipe)
        if not path.exists():
            continue
        agent = behaviour.load_agent(behaviour.REPO_AGENTS, env_id, 0, recipe)
        info = json.loads(path.with_suffix(".json").read_text())
        assert agent.sha256 == info["sha256"] and agent.returns == info["snapshot_returns"]
        assert info["recipe_hash"] == behaviour.recipe_hash(recipe)
    pend = behaviour.PPO_RECIPES["Pendulum-v1"]
    src = behaviour.agent_path(behaviour.REPO_AGENTS, "Pendulum-v1", 0, pend)
    assert src.exists(), "the quick tier's Pendulum agent is committed"
    copy = tmp_path / src.name
    shutil.copy(src.with_suffix(".json"), copy.with_suffix(".json"))
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(arrays)[3]
    arrays[key] = arrays[key] + 1e-3
    np.savez(copy, **arrays)
    with pytest.raises(datasets.DatasetError, match="does not match its SHA-256"):
        behaviour.load_agent(tmp_path, "Pendulum-v1", 0, pend)
    # agents trained for a datasets root live inside it: two roots never share them
    assert behaviour.behaviour_root().parent == datasets.datasets_root()


TINY_SAC = behaviour.SACRecipe(num_timesteps=300, snapshot_every=100, overrides=(
    ("start_steps", 50), ("hidden", (16, 16)), ("batch_size", 16)))


@pytest.mark.slow   # three compiles of the SAC program and two of the scoring, ~35 s
def test_an_interrupted_sac_agent_training_resumes_bit_for_bit(monkeypatch, tmp_path):
    recipe = TINY_SAC
    monkeypatch.setitem(behaviour.RECIPES, "Pendulum-v1", recipe)
    env = make("Pendulum-v1")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "a"))
    whole = behaviour.train_sac(env, 0, log=lambda m: None)
    assert whole.steps == [100, 200, 300]

    class Stop(Exception):
        pass

    def stop_after_two(line):
        if "200 env steps" in line:
            raise Stop

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "b"))
    with pytest.raises(Stop):
        behaviour.train_sac(env, 0, log=stop_after_two)
    lines = []
    resumed = behaviour.train_sac(env, 0, log=lines.append)
    assert any("resumed at 200 env steps" in m for m in lines)
    assert sum("env steps," in m for m in lines) == 1  # only the third period ran again
    for a, b in zip(whole.params, resumed.params):
        chex.assert_trees_all_equal(a, b)
    assert resumed.returns == whole.returns


def test_a_sac_agent_keeps_the_snapshots_its_levels_use(monkeypatch, tmp_path):
    recipe = TINY_SAC
    monkeypatch.setitem(behaviour.RECIPES, "Pendulum-v1", recipe)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    env = make("Pendulum-v1")
    actor = behaviour._params_template("Pendulum-v1", recipe)
    # four different actors (what they do does not matter here), as a training leaves them
    params = [jax.tree.map(lambda x, i=i: x + 0.1 * i, actor) for i in range(4)]
    agent = behaviour.TrainedAgent("Pendulum-v1", [100, 200, 300, 400], params,
                                   [-1500.0, -1000.0, -300.0, -800.0], 1.0)
    # the stored agent keeps the snapshots up to the expert one (medium-replay, expert) only
    assert behaviour.level_snapshots(env, agent.returns) == {
        "medium": [1], "expert": [2], "medium-expert": [1, 2], "medium-replay": [0, 1]}
    path = behaviour.save_agent(tmp_path, agent, 0, recipe)
    assert "-sac-" in path.name
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["stored_snapshots"] == [0, 1, 2] and info["algorithm"].startswith("SAC")
    back = behaviour.load_agent(tmp_path, "Pendulum-v1", 0, recipe)
    assert back.params[3] is None and back.returns == agent.returns
    for i in range(3):
        chex.assert_trees_all_equal(back.params[i], agent.params[i])
    # the datasets roll out the stored actors; a medium-replay dataset names SAC
    monkeypatch.setattr(behaviour, "trained_agent", lambda env, seed, log: back)
    ds = datasets.build("Pendulum-v1", "medium-replay", n_transitions=400, log=lambda m: None)
    meta = datasets.load(ds).metadata["diffrl"]
    assert meta["behaviour"]["policy"].startswith("SAC")
    assert [s["at"] for s in meta["behaviour"]["snapshots"]] == [100, 200]
    # a level whose snapshot the stored agent does not keep is one line naming the fix
    monkeypatch.setattr(behaviour, "trained_agent", lambda env, seed, log: dataclasses.replace(
        back, returns=[-1500.0, -1000.0, -800.0, -300.0]))  # the expert is now snapshot 3
    with pytest.raises(datasets.DatasetError, match="does not keep the snapshots at \\[400\\].*"
                       "bench data agent --env Pendulum-v1 --retrain"):
        datasets.build("Pendulum-v1", "expert", n_transitions=400, log=lambda m: None)


TINY_PPO = behaviour.PPORecipe(num_timesteps=4_000, num_envs=8, batch_size=8,
                               num_minibatches=4, unroll_length=8, num_updates_per_batch=1,
                               num_evals=3, hidden=(8, 8))


@pytest.mark.slow   # one compile of brax's PPO program and one of the scoring, ~40 s
def test_a_ppo_agent_trains_on_one_machine_and_is_scored_on_another(monkeypatch, tmp_path,
                                                                   capsys):
    monkeypatch.setitem(behaviour.PPO_RECIPES, "Pendulum-v1", TINY_PPO)
    monkeypatch.setitem(behaviour.RECIPES, "Pendulum-v1", TINY_PPO)
    monkeypatch.setattr(behaviour, "REPO_AGENTS", tmp_path / "repo")
    seen = []  # the files as each snapshot leaves them, as a training cut short would
    real_save = behaviour.save_agent

    def save(folder, agent, seed, recipe):
        path = real_save(folder, agent, seed, recipe)
        seen.append(json.loads(path.with_suffix(".json").read_text())["snapshot_env_steps"])
        return path

    monkeypatch.setattr(behaviour, "save_agent", save)
    gpu = tmp_path / "gpu"
    assert cli(["data", "agent", "--env", "Pendulum-v1", "--unscored-to", str(gpu)]) == 0
    assert [len(s) for s in seen] == [1, 2, 3] and seen[-1][0] == 0
    unscored = behaviour.load_agent(gpu, "Pendulum-v1", 0, TINY_PPO)
    assert all(np.isnan(unscored.returns))
    assert not (tmp_path / "repo").exists()
    # the training machine is another one: its record must survive the scoring here
    gpu_json = behaviour.agent_path(gpu, "Pendulum-v1", 0, TINY_PPO).with_suffix(".json")
    trained = json.loads(gpu_json.read_text())
    assert trained["snapshot_returns"] == [None] * 3   # unscored: null, valid JSON
    trained["trained_on"] = {"device_kind": "a GPU machine"}
    trained["versions"] = {"jax": "the GPU machine's"}
    gpu_json.write_text(json.dumps(trained))
    assert cli(["data", "agent", "--env", "Pendulum-v1", "--score-from", str(gpu)]) == 0
    assert "3 snapshots scored here" in capsys.readouterr().out
    scored = behaviour.load_agent(tmp_path / "repo", "Pendulum-v1", 0, TINY_PPO)
    # the same snapshots, now with this machine's evaluation of each
    assert scored.sha256 == unscored.sha256 and scored.steps == unscored.steps
    env = make("Pendulum-v1")
    assert scored.returns == behaviour.score_snapshots(env, TINY_PPO, unscored.params, 0)
    info = json.loads(behaviour.agent_path(tmp_path / "repo", "Pendulum-v1", 0, TINY_PPO)
                      .with_suffix(".json").read_text())
    from bench.sysinfo import hardware

    assert info["trained_on"] == {"device_kind": "a GPU machine"}
    assert info["versions"] == {"jax": "the GPU machine's"}
    assert info["scored_on"] == hardware() and "jax" in info["scored_with"]
    # an unscored agent where the datasets look for one is refused, not rolled out
    shutil.copy(gpu_json, behaviour.agent_path(tmp_path / "repo", "Pendulum-v1", 0, TINY_PPO)
                .with_suffix(".json"))
    with pytest.raises(datasets.DatasetError, match="is unscored.*--score-from"):
        behaviour.trained_agent(env, 0, log=lambda m: None)
    assert cli(["data", "agent", "--env", "Pendulum-v1"]) == 2
    _one_line(capsys, "is committed unscored", "--score-from")


def test_agent_split_flags_are_checked(tmp_path, capsys):
    assert cli(["data", "agent", "--env", "mujoco/Hopper-v5", "--unscored-to",
                str(tmp_path)]) == 2
    _one_line(capsys, "for PPO agents", "recipe is SAC")
    assert cli(["data", "agent", "--env", "Pendulum-v1", "--unscored-to", str(tmp_path),
                "--score-from", str(tmp_path)]) == 2
    _one_line(capsys, "not both")
    assert cli(["data", "agent", "--env", "Pendulum-v1", "--score-from", str(tmp_path)]) == 2
    _one_line(capsys, "no agent of Pendulum-v1", "Pendulum-v1-ppo-", "--unscored-to wrote")
    (tmp_path / "file").write_text("")
    assert cli(["data", "agent", "--env", "Pendulum-v1", "--unscored-to",
                str(tmp_path / "file" / "agents")]) == 2   # checked before anything trains
    _one_line(capsys, "--unscored-to", "is a file")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_ppo_datasets_come_from_the_committed_agent_and_are_reproducible(monkeypatch, tmp_path):
    pend = behaviour.PPO_RECIPES["Pendulum-v1"]
    sha = behaviour.load_agent(behaviour.REPO_AGENTS, "Pendulum-v1", 0, pend).sha256
    hashes = []
    for root in ("a", "b"):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / root))
        ds = datasets.build("Pendulum-v1", "medium-expert", n_transitions=2_000,
                            log=lambda m: None)
        meta = datasets.load(ds).metadata["diffrl"]
        assert meta["behaviour"]["agent_sha256"] == sha
        assert "committed in the repo" in meta["behaviour"]["agent_source"]
        hashes.append(meta["content_hash"])
        assert not (tmp_path / root / ".behaviour").exists()  # nothing trained
    assert hashes[0] == hashes[1]


def test_staging_folders_of_dead_builds_are_removed_and_list_flags_damage(tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    staging = tmp_path / "root" / ".staging"
    dead, live, old = staging / "999999999-abc", staging / f"{os.getpid()}-def", staging / "ff"
    for d in (dead, live, old):
        (d / "x").mkdir(parents=True)
    assert set(minari_io.clean_staging()) == {dead, old}
    assert live.exists()
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)  # a build cleans too
    # damage the data: the cheap listing names it only when the file cannot be opened;
    # --verify reads every dataset and checks its content hash
    import h5py

    f = next((tmp_path / "root" / BANDIT / "data").glob("*.hdf5"))
    with h5py.File(f, "r+") as h:
        h["episode_0"]["rewards"][0] += 1.0
    assert cli(["data", "list"]) == 0
    assert "cannot be trusted" not in capsys.readouterr().out
    assert cli(["data", "list", "--verify"]) == 1
    out = capsys.readouterr().out
    assert "cannot be trusted" in out and "does not match its content hash" in out
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    assert cli(["data", "list"]) == 0
    assert "cannot be read" in capsys.readouterr().out


# --- bad input --------------------------------------------------------------------------------
def test_bad_arguments_are_one_line_before_anything_runs(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    board = tmp_path / "board"
    board.mkdir()
    (board / "leaderboard.md").write_text("published")
    for argv, expect in [
        (["train", "--algo", "bc", "--dataset", BANDIT, "--seeds", "0"], "--seeds"),
        (["train", "--algo", "bc", "--dataset", BANDIT, "--steps", "-3"], "--steps"),
        (["train", "--algo", "bc", "--dataset", BANDIT, "--out", str(a_file)], "is a file"),
        (["train", "--algo", "bc", "--dataset", BANDIT, "--out", str(a_file / "x")],
         "is a file"),
        (["data", "build", "--env", "Pendulum-v1", "--quality", "medium", "--transitions", "0"],
         "--transitions"),
        (["data", "build", "--tier", "quick", "--seed", "-1"], "--seed"),
        (["bandit", "--seeds", "0"], "--seeds"),
        (["speed", "policies", "--max-seed-seconds", "0"], "--max-seed-seconds"),
        (["table", "--runs", str(tmp_path / "nope")], "no such folder"),
        (["table", "--runs", str(empty), "--out", str(board)], "nothing written"),
        (["sweep", "quick", "--runs", str(a_file)], "is a file"),
    ]:
        assert cli(argv) == 2, argv
        _one_line(capsys, expect)
    assert (board / "leaderboard.md").read_text() == "published"


def test_the_memory_estimate_refuses_what_would_not_fit():
    import envs

    data = datasets.load(BANDIT)
    config = bench_train.make_config("bc", 6, SETS, BANDIT)
    tr = __import__("algos").get("bc").make_train(config, data, envs.make("bandit-2d"))
    roomy = (1 << 40, "test")
    need = {n: bench_train.memory_check(tr, bench_train.seed_keys(n), data, n, available=roomy)
            for n in (4, 8)}
    # on a CPU: the state three times (its size from the parameter count: BC keeps params and
    # Adam's two moments) and the data twice
    params = jax.eval_shape(tr.init, jax.random.PRNGKey(0))
    per_seed = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
    assert need[8] - need[4] == 3 * 4 * per_seed
    assert need[4] == 3 * 4 * per_seed + 2 * sum(v.nbytes for v in data.transitions.values())
    with pytest.raises(ConfigError, match="4 seeds need at least .* GiB .* test has"):
        bench_train.memory_check(tr, bench_train.seed_keys(4), data, 4, available=(1000, "test"))


def test_compare_matches_cells_of_two_results_folders_seed_by_seed(tmp_path, ckpts, capsys):
    for out in ("a", "b"):
        assert cli(_train_argv(tmp_path / out, "--force")) == 0
    capsys.readouterr()
    path = next((tmp_path / "b").rglob("*.json"))
    res = json.loads(path.read_text())
    res["final"][1]["score"] += 0.5  # one seed moved
    path.write_text(json.dumps(res))
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--write",
                str(tmp_path / "c.md")]) == 0
    md = (tmp_path / "c.md").read_text()
    assert "1 cells in both" in md and "equal in 1 of 1 cells that record it" in md
    assert "| 1/2 | 1/2 | 0.5 |" in md
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_two_processes_on_one_cell_the_second_says_it_is_running(tmp_path):
    """The same as above with two real `python -m bench train` processes."""
    import subprocess
    import sys
    import time

    ckpts = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "DIFFRL_CHECKPOINTS": str(ckpts)}
    argv = [sys.executable, "-m", "bench", "train", "--algo", "diffusion_bc", "--dataset", BANDIT,
            "--seeds", "2", "--steps", "6000", "--set", "eval_every=2000", "--set",
            "diffusion.T=20", "--out", str(tmp_path / "runs"), "--force"]
    first = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    lock = None
    while time.time() < deadline and lock is None:  # wait until the first holds its lock
        for f in ckpts.glob("diffusion_bc/*/*/.lock"):
            if f.read_text().strip() == str(first.pid):
                lock = f
        time.sleep(0.2)
    assert lock is not None, "the first run never took its lock"
    second = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 2, second.stderr
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and "already running" in err[0] and str(first.pid) in err[0]
    assert first.wait(timeout=600) == 0, first.stdout.read()
    assert len(list((tmp_path / "runs").rglob("*.json"))) == 1


# --- what a red-team pass found ---------------------------------------------------------------
def test_red_team_inputs_are_one_line(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "latin1.toml").write_bytes(b"\xff\xfe description = 1\n")
    cell = ('[[group]]\nalgos = ["{a}"]\ndatasets = ["{d}"]\n'
            'seeds = 2\nsteps = 6\nset = {{ eval_every = 3 }}\nlabel = "X"\n')
    (sweeps / "clash.toml").write_text(cell.format(a="bc", d=BANDIT) + cell.format(
        a="td3_bc", d="jaxrl/pendulum/medium-expert-v0"))
    (sweeps / "skip.toml").write_text('include = [{ sweep = "bandit", skip = [["BC"]] }]\n')
    (sweeps / "board.toml").write_text(cell.format(a="bc", d=BANDIT)
                                       + "[leaderboard]\ncompare = 5\n")
    base = ["train", "--algo", "bc", "--dataset", BANDIT, "--seeds", "2", "--out",
            str(tmp_path / "runs")]
    for argv, expect in [
        (base + ["--set", "lr=1e300"], "finite in float32"),
        (base + ["--set", "steps=3000000000", "--set", "eval_every=3000000000"], "int32"),
        (["train", "--algo", "diffusion_bc", "--dataset", BANDIT, "--set",
          "diffusion.T=1000000"], "T must be at most"),
        (base + ["--set", "lr=1e-3", "--set", "lr=2e-3"], "given twice"),
        (base + ["--steps", "20", "--set", "steps=40"], "disagree"),
        (base[:6] + ["99999999999999999999"] + base[7:], "--seeds must be between"),
        (["data", "build", "--env", "bandit-2d", "--quality", "multimodal", "--transitions",
          "99999999999999"], "--transitions must be between"),
        (["sweep", str(sweeps)], "is a folder"),
        (["sweep", str(sweeps / "latin1.toml")], "UTF-8"),
        (["sweep", str(sweeps / "clash.toml")], "names two algorithms"),
        (["sweep", str(sweeps / "skip.toml")], "an include is"),
        (["sweep", str(sweeps / "board.toml")], "must be a list of pairs"),
    ]:
        assert cli(argv) == 2, argv
        _one_line(capsys, expect)
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(a_file))
    assert cli(_train_argv(tmp_path / "runs2")) == 2
    _one_line(capsys, "Not a directory", "DIFFRL_CHECKPOINTS")


def test_a_diverged_seed_is_nan_even_where_the_env_scores_nan_actions(tmp_path, ckpts, capsys):
    # lr 1e30 fits float32 but blows the parameters up; the bandit pays 0 for a NaN action,
    # the same as an untrained policy, so only the state shows the divergence
    assert cli(_train_argv(tmp_path / "runs", "--set", "lr=1e30")) == 0
    res = json.loads(next((tmp_path / "runs").rglob("*.json")).read_text())
    assert all(f["diverged"] and f["score"] != f["score"] for f in res["final"])
    assert "DIVERGED" in capsys.readouterr().out


def test_an_env_without_an_expert_reference_reports_returns_not_divergence(
        tmp_path, ckpts, capsys, monkeypatch):
    # a new env's first expert (mujoco/* today) trains before there is a reference: its
    # scores are NaN, its returns are what the run reports, and no seed is called diverged
    import dataclasses

    from envs import registry

    spec, factory = registry._REGISTRY["bandit-2d"]
    monkeypatch.setitem(registry._REGISTRY, "bandit-2d",
                        (dataclasses.replace(spec, ref_max_score=float("nan")), factory))
    monkeypatch.setattr(registry, "_CACHE", {})
    assert cli(_train_argv(tmp_path / "runs")) == 0
    res = json.loads(next((tmp_path / "runs").rglob("*.json")).read_text())
    assert all(not f["diverged"] and f["score"] != f["score"] and np.isfinite(f["return"])
               for f in res["final"])
    out = capsys.readouterr().out
    assert "mean return" in out and "DIVERGED" not in out and "nan ± nan" not in out
    assert any(line.lstrip().startswith("step") and "  return " in line
               for line in out.splitlines())  # progress lines report the return


def test_a_failed_forced_rebuild_keeps_the_old_dataset(tmp_path, monkeypatch):
    from envs.datasets import builder

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    before = datasets.stored_hash(BANDIT)

    def broken(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "collect", broken)
    with pytest.raises(KeyboardInterrupt):
        datasets.build("bandit-2d", "multimodal", seed=1, force=True, log=lambda m: None)
    assert datasets.stored_hash(BANDIT) == before and datasets.load(BANDIT).num_transitions


def test_a_table_of_bandit_runs_only_leaves_the_runs_table_alone(tmp_path, ckpts, capsys):
    assert cli(_train_argv(tmp_path / "runs")) == 0
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "policies.md").write_text("published")
    assert cli(["table", "--sweep", "quick", "--runs", str(tmp_path / "runs"), "--out",
                str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "policies.md").read_text() == "published"


@pytest.mark.parametrize("argv, needle", [
    (["--ids", "Pendulum-v1,nope"], "unknown env id(s) nope"),
    (["--ids", ","], "--ids names no env id"),
    (["--batches", "1,x"], "--batches takes positive integers"),
    (["--batches", "0"], "--batches takes positive integers"),
])
def test_env_table_arguments_are_checked_before_measuring(argv, needle, capsys):
    assert cli(["envs"] + argv) == 2
    _one_line(capsys, needle)
