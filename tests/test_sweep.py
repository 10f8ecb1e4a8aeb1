"""Sweeps declared in data, the leaderboard built from results files, and the promise that
killing a sweep at any moment and rerunning it loses nothing and ends with the same tables."""
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from bench import leaderboard, sweep
from bench import train as bench_train
from bench.cli import main as cli
from envs import datasets

BANDIT = "jaxrl/bandit/multimodal-v0"
# Two cheap methods, 2 seeds, 3 evaluation periods of 3 tiny updates each.
SMALL = """
description = "test sweep"
[[group]]
algos = ["bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 2
steps = 9
set = { eval_every = 3, eval_episodes = 2, hidden = [32, 32], batch_size = 32 }
[[group]]
algos = ["diffusion_bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 2
steps = 9
set = { eval_every = 3, eval_episodes = 2, batch_size = 32, diffusion = { width = 32, depth = 2 } }
[leaderboard]
compare = [["Diffusion-BC", "BC"]]
"""


@pytest.fixture(scope="module", autouse=True)
def bandit_dataset():
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)


def _write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in sweep.SWEEPS.glob("*.toml")))
def test_every_shipped_sweep_file_is_valid(name):
    s = sweep.load(name)
    assert s.cells and all(c.seeds >= 5 for c in s.cells), "publishable cells use >= 5 seeds"


def test_an_include_can_skip_methods():
    quick = sweep.load("quick")
    bandit = [c for c in quick.cells if c.dataset == BANDIT]
    assert {c.label for c in bandit} == set(sweep.load("bandit").labels) - {"Diffusion-QL"}


def test_groups_expand_to_cells_and_settings_reach_the_config(tmp_path):
    s = sweep.load(_write(tmp_path, SMALL))
    assert [(c.label, c.algo) for c in s.cells] == [("BC", "bc"), ("Diffusion-BC", "diffusion_bc")]
    assert s.cells[0].config().hidden == (32, 32)
    config = s.cells[1].config()
    assert (config.steps, config.eval_every, config.batch_size) == (9, 3, 32)
    assert (config.diffusion.width, config.diffusion.depth) == (32, 2)
    assert s.compare == (("Diffusion-BC", "BC"),)


@pytest.mark.parametrize("text, expect", [
    ("[[group]\n", "not valid TOML"),
    ("foo = 1\n", "unknown key 'foo'"),
    ("[[group]]\nalgos=['dqn']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=5\n",
     "group 1: unknown algorithm 'dqn'"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/nope-v0']\nseeds=5\n",
     "group 1: unknown dataset 'jaxrl/nope-v0'"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\n", "missing 'seeds'"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=0\n",
     "'seeds' must be a positive integer"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=5\n"
     "set={lr='fast'}\n", "lr = 'fast': expected float"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=5\n"
     "set={nope=1}\n", "unknown config field 'nope'"),
    ("[[group]]\nalgos=['bc','iql']\nlabel='x'\ndatasets=['jaxrl/bandit/multimodal-v0']\n"
     "seeds=5\n", "'label' names one method"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=5\n"
     "[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=3\n",
     "declared twice with different settings"),
    ("[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\nseeds=5\n"
     "[leaderboard]\ncompare=[['BC','IQL']]\n", "must be a pair of methods of the sweep"),
    ("include = ['s']\n", "includes itself"),
    (f"include = [{{ sweep = '{sweep.SWEEPS / 'bandit.toml'}', skip = ['Nope'] }}]\n",
     "skips 'Nope', which it does not have"),
    ("include = [{ sweep = 's', except = [] }]\n", "an include is a sweep name or"),
    ("description = 'nothing'\n", "no cells"),
    ("data_tier = 'huge'\n[[group]]\nalgos=['bc']\ndatasets=['jaxrl/bandit/multimodal-v0']\n"
     "seeds=5\n", "data_tier must be one of quick, medium, full, got 'huge'"),
])
def test_malformed_sweep_files_are_one_line_errors(tmp_path, capsys, text, expect):
    path = _write(tmp_path, text)
    with pytest.raises(sweep.SweepError, match=None) as e:
        sweep.load(path)
    assert expect in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert cli(["sweep", str(path), "--runs", str(tmp_path / "runs"),
                "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err
    assert not (tmp_path / "runs").exists(), "nothing may run before the whole file is checked"


def test_unknown_sweep_name_lists_the_known_ones():
    with pytest.raises(sweep.SweepError, match="unknown sweep 'nope'; sweeps: .*quick"):
        sweep.load("nope")


def _run_cli(path, tmp, log=None):
    return sweep.run(sweep.load(path), runs=tmp / "runs", checkpoints=tmp / "ckpt",
                     log=log or (lambda m: None))


def test_a_sweep_killed_at_random_points_ends_with_the_same_tables(tmp_path):
    path = _write(tmp_path, SMALL)
    s = sweep.load(path)
    # uninterrupted
    ref = tmp_path / "ref"
    msgs = []
    _run_cli(path, ref, msgs.append)
    ref_md, ref_paths = leaderboard.write(s, ref / "runs", ref, reps=2000)
    assert any("[1/2]" in m for m in msgs) and any("[2/2]" in m for m in msgs)
    n_msgs = len(msgs)

    # killed three times at random log points, then run to the end
    work = tmp_path / "work"
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        at, calls = rng.randrange(1, n_msgs), []

        def killer(msg, at=at, calls=calls):
            calls.append(msg)
            if len(calls) == at:
                raise KeyboardInterrupt

        try:
            _run_cli(path, work, killer)
        except KeyboardInterrupt:
            kills += 1
    assert kills >= 2
    final = []
    _run_cli(path, work, final.append)
    md, paths = leaderboard.write(s, work / "runs", work, reps=2000)
    assert "2 of 2 cells have results" in md
    assert md == ref_md
    timing = ["wall_s", "compile_s", "file"]  # all else must match to the last digit
    pd.testing.assert_frame_equal(pd.read_csv(paths[1]).drop(columns=timing),
                                  pd.read_csv(ref_paths[1]).drop(columns=timing))

    # a second run finds everything finished and changes nothing
    again = []
    before = {p: p.read_text() for p in (work / "runs").rglob("*.json")}
    _run_cli(path, work, again.append)
    assert any("2 finished, 0 to run" in m for m in again), again
    assert {p: p.read_text() for p in (work / "runs").rglob("*.json")} == before


def test_results_from_another_schema_or_seed_count_are_never_overwritten(tmp_path, capsys):
    path = _write(tmp_path, SMALL)
    s = sweep.load(path)
    _run_cli(path, tmp_path)
    target = s.cells[0].path(tmp_path / "runs")
    data = json.loads(target.read_text())
    data["schema"] = 0
    target.write_text(json.dumps(data))
    before = target.read_text()
    assert cli(["sweep", str(path), "--runs", str(tmp_path / "runs"),
                "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results schema 0" in err and "--force" in err
    assert target.read_text() == before

    other = _write(tmp_path, SMALL.replace("seeds = 2", "seeds = 3"), "t.toml")
    data["schema"] = bench_train.SCHEMA
    target.write_text(json.dumps(data))
    with pytest.raises(bench_train.ConfigError, match="has 2 seeds where this run asks for 3"):
        _run_cli(other, tmp_path)


def test_leaderboard_counts_a_diverged_seed_and_leaves_it_out_of_every_average(tmp_path):
    path = _write(tmp_path, SMALL)
    s = sweep.load(path)
    _run_cli(path, tmp_path)
    target = s.cells[1].path(tmp_path / "runs")
    data = json.loads(target.read_text())
    kept = data["final"][0]["score"]
    data["final"][1].update(score=float("nan"), diverged=True)
    target.write_text(json.dumps(data))
    rows = leaderboard.collect(s, tmp_path / "runs")
    assert rows[1]["diverged"] == 1 and rows[1]["scores"] == [kept]
    md, written = leaderboard.write(s, tmp_path / "runs", tmp_path / "out", reps=500)
    assert "(1 diverged)" in md
    aggs = {a["label"]: a for a in leaderboard.aggregates(
        leaderboard.scores_by_method(rows, s.datasets), reps=500)}
    assert aggs["Diffusion-BC"]["runs"] == 1 and aggs["Diffusion-BC"]["mean"] == \
        pytest.approx(kept)
    assert {Path(p).name for p in written} == {"leaderboard-s.md", "leaderboard-s.csv",
                                               "speed-s.md"}


def test_a_pair_is_compared_on_the_tasks_both_have_results_on():
    """A planner that runs on Maze2D alone still gets its probability of improvement there."""
    from bench import leaderboard

    rows = [{"label": "A", "dataset": "t1", "status": "done", "scores": [1.0, 2.0, 3.0]},
            {"label": "A", "dataset": "t2", "status": "done", "scores": [-9.0, -9.0]},
            {"label": "B", "dataset": "t1", "status": "done", "scores": [0.0, 0.5]},
            {"label": "C", "dataset": "t2", "status": "running", "scores": []}]
    by_task = leaderboard.scores_by_task(rows)
    (p,) = leaderboard.improvements(by_task, [("A", "B")], reps=200)
    assert p["tasks"] == 1 and p["p"] == p["lo"] == p["hi"] == 1.0   # t2 is A's alone
    assert leaderboard.improvements(by_task, [("A", "C"), ("C", "B")], reps=200) == []
    # a cell trained on data derived from t1 (a subset, an augmentation) counts on t1
    rows.append({"label": "D", "dataset": "t1-synther-x", "task": "t1", "status": "done",
                 "scores": [5.0, 6.0]})
    (p,) = leaderboard.improvements(leaderboard.scores_by_task(rows), [("D", "B")], reps=200)
    assert p["tasks"] == 1 and p["p"] == 1.0
