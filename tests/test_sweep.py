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


def test_every_published_results_file_is_a_cell_of_todays_sweeps():
    """Every committed results file under results/runs is the file of a cell some shipped sweep
    declares, by today's config hash, and each committed leaderboard's 'N of M cells have
    results' still holds. A change that moves a published cell's hash (a new Config field
    recorded at its default, in a nested config too) orphans its file and fails here; so does
    a sweep file or a results file committed without its table rebuilt (`bench table`).
    Reads results files only."""
    import re

    from bench import leaderboard, train

    results = Path(__file__).resolve().parent.parent / "results"
    sweeps = {p.stem: sweep.load(p.stem) for p in sweep.SWEEPS.glob("*.toml")}
    cells = {c.path(train.RUNS).resolve() for s in sweeps.values() for c in s.cells
             if not c.is_acting}
    files = sorted(p.resolve() for p in (results / "runs").rglob("*.json"))
    assert len(files) >= 100
    orphans = [str(p.relative_to(results)) for p in files if p not in cells]
    assert not orphans, f"results files no sweep cell names today: {orphans}"
    published = sorted(results.glob("leaderboard*.md"))
    assert len(published) >= 9
    for md in published:
        name = md.stem.split("-", 1)[1] if "-" in md.stem else "quick"
        done, total = map(int, re.search(r"(\d+) of (\d+) cells have results",
                                         md.read_text()).groups())
        rows = leaderboard.collect(sweeps[name], train.RUNS)
        missing = [(r["label"], r["dataset"]) for r in rows if r["status"] != "done"]
        assert (total - len(missing), len(rows)) == (done, total), (name, missing)


def test_throughput_rows_never_pool_machines():
    """One throughput row per method and machine: a method with cells on a CPU and on a GPU
    gets two rows, each the median of its own cells; variants and unfinished cells are left
    out."""
    from bench import leaderboard

    def row(label, hw, wall, status="done", acting=False):
        return {"label": label, "hardware": hw, "seeds": 5, "steps": 100, "wall_s": wall,
                "compile_s": wall / 10, "status": status, "acting": acting}

    rows = [row("A", "cpu", 10.0), row("A", "cpu", 50.0), row("A", "cpu", 20.0),
            row("A", "gpu", 1.0), row("B", "cpu", 5.0, status="running"),
            row("A (variant)", "cpu", 1.0, acting=True)]
    got = {(r["label"], r["hardware"]): r for r in leaderboard.speed_rows(rows)}
    assert sorted(got) == [("A", "cpu"), ("A", "gpu")]
    assert got[("A", "cpu")]["cells"] == 3 and got[("A", "cpu")]["seed_steps_per_s"] == 25.0
    assert (got[("A", "cpu")]["min"], got[("A", "cpu")]["max"]) == (10.0, 50.0)
    assert got[("A", "gpu")]["seed_steps_per_s"] == 500.0 and got[("A", "gpu")]["cells"] == 1


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


ACTING = """
[[group]]
algos = ["bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 2
steps = 6
set = { eval_every = 3, eval_episodes = 2, hidden = [32, 32], batch_size = 32 }
act = [{ label = "BC (sampled)", set = { eval_sample = true } }]
[leaderboard]
compare = [["BC (sampled)", "BC"]]
"""


def test_an_acting_variant_evaluates_the_trained_cell_and_is_paired_with_it(tmp_path):
    path = _write(tmp_path, ACTING)
    s = sweep.load(path)
    base, var = s.cells
    assert (var.label, var.trained, var.acting) == ("BC (sampled)", base,
                                                    (("eval_sample", True),))
    assert var.act_config().eval_sample and not base.config().eval_sample
    # its file is an evaluation beside the runs folder; its config is the trained one
    cell = base.path(tmp_path / "runs").relative_to(tmp_path / "runs").with_suffix("")
    assert var.path(tmp_path / "runs").parent == tmp_path / "evals" / cell
    msgs = []
    _run_cli(path, tmp_path, msgs.append)
    assert any("the trained BC acting with eval_sample=True" in m for m in msgs), msgs
    trained = json.loads(base.path(tmp_path / "runs").read_text())
    ev = json.loads(var.path(tmp_path / "runs").read_text())
    # paired: the evaluation restored the very training the results file holds
    assert [f["trained_score"] for f in ev["final"]] == [f["score"] for f in trained["final"]]
    assert [f["score"] for f in ev["final"]] != [f["score"] for f in trained["final"]]
    assert ev["acting"] == {"eval_sample": True} and ev["trained_config_hash"] == \
        trained["config_hash"]
    assert len(trained["checkpoint_sha256"]) == 64   # the final checkpoint's, restored
    assert ev["checkpoint_sha256"] == trained["checkpoint_sha256"]

    md, paths = leaderboard.write(s, tmp_path / "runs", tmp_path / "out", reps=500)
    assert "2 of 2 cells have results" in md and "## Acting variants, paired" in md
    (row,) = [r for r in leaderboard.collect(s, tmp_path / "runs") if r["acting"]]
    assert row["difference"] == pytest.approx(
        sum(f["score"] - f["trained_score"] for f in ev["final"]) / 2)
    assert f"| BC (sampled) | BC ({trained['config_hash']}) | eval_sample=True |" in md
    speed = Path(paths[-1]).read_text()
    assert "| BC |" in speed and "BC (sampled)" not in speed   # it trains nothing
    assert (tmp_path / "evals" / cell / "README.md").exists()   # bench evaluate's table

    again = []
    _run_cli(path, tmp_path, again.append)
    assert any("2 finished, 0 to run" in m for m in again), again

    # an evaluation of another training than the results file holds (another final
    # checkpoint: a retraining) is never reused, nor scored in the tables
    trained["checkpoint_sha256"] = "0" * 64
    base.path(tmp_path / "runs").write_text(json.dumps(trained))
    with pytest.raises(sweep.SweepError, match="evaluated a training of BC .* other than"):
        _run_cli(path, tmp_path)
    (row,) = [r for r in leaderboard.collect(s, tmp_path / "runs") if r["acting"]]
    assert row["status"] == "evaluated another training" and row["scores"] == []
    md = leaderboard.write(s, tmp_path / "runs", tmp_path / "out", reps=100)[0]
    assert "; evaluated another training: BC (sampled) on" in md and "## Acting" not in md
    # nor is a checkpoint that is not the training its results file holds evaluated
    var.path(tmp_path / "runs").unlink()
    with pytest.raises(bench_train.ConfigError, match="is not the training .* holds") as e:
        _run_cli(path, tmp_path)
    assert "\n" not in str(e.value) and "--force" in str(e.value)
    # a results file without its checkpoint (published, trained elsewhere): found before
    # anything runs, with the command that retrains both into the sweep's folder
    (tmp_path / "ckpt").rename(tmp_path / "ckpt-away")
    with pytest.raises(sweep.SweepError, match="no finished training of bc") as e:
        _run_cli(path, tmp_path)
    assert f"--out {tmp_path / 'runs'} --force" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("act, expect", [
    ("act = { set = { eval_sample = true } }", "'act' is a list of { label"),
    ("act = [{ set = {} }]", "'act' is a list of { label"),
    ("act = [{ set = { diffusion = {} } }]", "'act' is a list of { label"),
    ("act = [{ set = { lr = 0.1 } }]", "bc on jaxrl/bandit/multimodal-v0: act lr: not one of "
                                      "the fields that only change how bc acts (any other field "
                                      "changes training: give it in the group's set)"),
    ("act = [{ set = { eval_sample = 'yes' } }]", "eval_sample"),
    ("act = [{ set = { eval_sample = false } }]", "already acts so as trained"),
    ("act = [{ label = 'A', set = { eval_sample = true } }, { label = 'B', set = "
     "{ eval_sample = true } }]", "act eval_sample=True: bc on jaxrl/bandit/multimodal-v0 "
                                  "acts as act eval_sample=True does; give the change once"),
    ("act = [{ tasks = 'all' }]", "act tasks = 'all': one of 'default', 'sampled'"),
    ("act = [{ tasks = 'default' }]", "'act' is a list of { label"),
    ("act = [{ label = 'A', tasks = 'sampled' }]", "act tasks = \"sampled\": "
     "jaxrl/bandit/multimodal-v0's env has no task parameters to draw"),
    ("act = [{ label = 'BC2', set = { eval_sample = true } }]\n[[group]]\nalgos = ['bc']\n"
     "label = 'BC2'\ndatasets = ['jaxrl/pendulum/medium-expert-v0']\nseeds = 2\n",
     "label 'BC2' names both an acting variant and a trained cell"),
])
def test_malformed_acting_variants_are_one_line_errors(tmp_path, act, expect):
    text = ACTING.replace('act = [{ label = "BC (sampled)", set = { eval_sample = true } }]',
                          act).replace('[leaderboard]\ncompare = [["BC (sampled)", "BC"]]', "")
    with pytest.raises(sweep.SweepError) as e:
        sweep.load(_write(tmp_path, text))
    assert expect in str(e.value) and "\n" not in str(e.value), str(e.value)


MULTI = """
[[group]]
algos = ["bc"]
datasets = ["jaxrl/maze2d/umaze-v0"]
seeds = 2
steps = 4
set = { eval_every = 4, eval_episodes = 2, hidden = [16, 16], batch_size = 16 }
act = [{ label = "BC (Multi2D)", tasks = "sampled" }]
"""


def test_a_sampled_task_variant_evaluates_the_trained_cell_with_a_goal_per_episode(tmp_path):
    from envs import datasets

    datasets.build("maze2d-umaze", "umaze", n_transitions=5000, log=lambda m: None)
    path = _write(tmp_path, MULTI)
    s = sweep.load(path)
    base, var = s.cells
    assert (var.tasks, var.acting, var.trained) == ("sampled", (), base)
    assert var.path(tmp_path / "runs").name.endswith("-seeds2-sampled-tasks.json")
    _run_cli(path, tmp_path)
    ev = json.loads(var.path(tmp_path / "runs").read_text())
    trained = json.loads(base.path(tmp_path / "runs").read_text())
    assert ev["tasks"] == "sampled" and ev["acting"] == {}
    assert [f["trained_score"] for f in ev["final"]] == [f["score"] for f in trained["final"]]
    md = leaderboard.write(s, tmp_path / "runs", tmp_path / "out", reps=100)[0]
    assert f"| BC (Multi2D) | BC ({trained['config_hash']}) | a task sampled per " \
           "episode |" in md
    assert "its difference is a change of task, not of acting" in md
    assert "Not in the aggregates (a task sampled per episode: other tasks than the " \
           "dataset's env id's): BC (Multi2D)." in md and "| BC (Multi2D) | 1 |" not in md
    again = []
    _run_cli(path, tmp_path, again.append)                 # found: nothing evaluated again
    assert any("2 finished, 0 to run" in m for m in again), again
    # a change with and without a task per episode are two variants; the same one twice is
    # one line
    two = sweep.load(_write(tmp_path, MULTI.replace(
        'act = [{ label = "BC (Multi2D)", tasks = "sampled" }]',
        'act = [{ set = { eval_sample = true } }, '
        '{ set = { eval_sample = true }, tasks = "sampled" }]'), "two.toml"))
    assert [c.label for c in two.cells] == [
        "BC", "BC (eval_sample=True)", "BC (eval_sample=True, a task sampled per episode)"]
    with pytest.raises(sweep.SweepError, match="acts as act a task sampled per episode does"):
        sweep.load(_write(tmp_path, MULTI.replace(
            '"BC (Multi2D)", tasks = "sampled" }', '"A", tasks = "sampled" }, '
            '{ label = "B", tasks = "sampled" }'), "dup.toml"))
    # on an env without tasks: refused when the file is loaded
    bandit = _write(tmp_path, ACTING.replace('set = { eval_sample = true }',
                                             'tasks = "sampled"'), "b.toml")
    with pytest.raises(sweep.SweepError, match="has no task parameters to draw") as e:
        sweep.load(bandit)
    assert "\n" not in str(e.value)


def test_an_acting_variant_without_its_trained_cell_is_refused(tmp_path):
    _write(tmp_path, ACTING, "base.toml")
    path = _write(tmp_path, "include = [{ sweep = 'base', skip = ['BC'] }]\n")
    with pytest.raises(sweep.SweepError, match="needs its trained cell 'BC'"):
        sweep.load(path)
    # an include may list a variant before its trained cell: the cell still comes first
    ordered = sweep.load(_write(tmp_path, "include = [{ sweep = 'base', skip = ['BC'] }]\n"
                                + ACTING.split("[leaderboard]")[0], "o.toml"))
    assert [c.label for c in ordered.cells] == ["BC", "BC (sampled)"]
    d = sweep.load(_write(tmp_path, ACTING.replace('label = "BC (sampled)", ', "")
                          .replace("[leaderboard]", "").replace(
                              'compare = [["BC (sampled)", "BC"]]', ""), "d.toml"))
    assert d.cells[1].label == "BC (eval_sample=True)"


def test_a_training_is_recognised_by_its_final_scores_and_returns():
    """What pairs an evaluation with its cell's results file (bench.evaluate.same_training)."""
    from bench.evaluate import same_training

    nan = float("nan")
    final = [{"score": 10.0, "return": -500.0}, {"score": 20.0, "return": -400.0}]
    assert same_training(final, [10.0, 20.0], [-500.0, -400.0])
    assert not same_training(final, [10.0, 20.5], [-500.0, -400.0])
    assert not same_training(final, [10.0], [-500.0])
    # a diverged seed: NaN in the file by the divergence rule, finite in the checkpoint
    final[1].update(score=nan, **{"return": nan, "diverged": True})
    assert same_training(final, [10.0, 3.0], [-500.0, -9.0])
    # no expert reference: NaN scores, and the returns decide
    final = [{"score": nan, "return": -500.0}]
    assert same_training(final, [nan], [-500.0]) and not same_training(final, [nan], [-501.0])

    from bench.evaluate import same_source

    ev = {"final": [{"trained_score": nan, "trained_return": -500.0}]}
    assert same_source({"final": final}, ev)        # files without digests: the scores
    assert not same_source({"final": final, "checkpoint_sha256": "a"},
                           {**ev, "checkpoint_sha256": "b"})   # the digests decide
