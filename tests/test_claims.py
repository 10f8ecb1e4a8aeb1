"""The claims framework: verdicts decided by intervals, the claims.md section, and the
expressiveness claim end to end on a tiny budget (slow)."""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import claims
from bench.claims import Finding, Test


@pytest.mark.parametrize("lo, hi, expect", [(0.6, 0.9, "supported"), (0.1, 0.4, "not supported"),
                                            (0.3, 0.7, "inconclusive"),
                                            (0.5, 0.7, "inconclusive")])
def test_a_test_is_decided_by_where_its_interval_lies(lo, hi, expect):
    assert Test("t", "P", (lo + hi) / 2, lo, hi, 0.5).verdict == expect


def test_a_claim_holds_only_when_its_tests_agree(tmp_path):
    yes, no = Test("a", "P", 0.8, 0.7, 0.9, 0.5), Test("b", "P", 0.2, 0.1, 0.3, 0.5)
    assert Finding("k", "T", "S", "setup", [yes, yes], None).verdict == "supported"
    assert Finding("k", "T", "S", "setup", [no, no], None).verdict == "not supported"
    mixed = Finding("k", "T", "S", "setup", [yes, no], tmp_path / "figures" / "k.png")
    assert mixed.verdict == "inconclusive"
    text = claims.section(mixed, tmp_path)
    assert "## T: **inconclusive**" in text and "0.80 [0.70, 0.90]" in text
    assert "| b | P | 0.20 [0.10, 0.30] | 0.5 | not supported |" in text
    assert "![k](figures/k.png)" in text


def test_running_one_claim_keeps_the_others_sections(tmp_path):
    """`bench claims compounding` rewrites its own section of claims.md, in CLAIMS order, and
    keeps the expressiveness section as it was."""
    t = Test("x", "P(...)", 0.9, 0.8, 1.0, 0.5)
    old = [Finding(k, claims.get(k).TITLE, "old claim", f"old setup {k}", [t], None, "")
           for k in claims.CLAIMS]
    text = claims.markdown(old, tmp_path, "hw")
    new = Finding("compounding", claims.get("compounding").TITLE, "new claim", "new setup",
                  [t], None, "")
    kept = claims.kept_sections(text, ["compounding"])
    assert set(kept) == set(claims.CLAIMS) - {"compounding"}
    merged = claims.markdown([new], tmp_path, "hw", kept)
    assert merged == text.replace("old setup compounding", "new setup").replace(
        "*Claim.* old claim\n\n*Setup.* new setup", "*Claim.* new claim\n\n*Setup.* new setup")


def test_the_backbone_claim_runs_with_the_compilation_cache_off_from_the_start():
    """`python -m bench claims` sets JAX_ENABLE_COMPILATION_CACHE=false before jax is
    imported where the backbone claim runs (its crash with the cache on: bench/jaxcache.py),
    and nowhere else; a value the user gave is kept."""
    import subprocess
    import sys

    from bench.jaxcache import avoid_known_crash

    def env(*argv, **given):
        environ = dict(given)
        avoid_known_crash(list(argv), environ)
        return environ.get("JAX_ENABLE_COMPILATION_CACHE")

    assert env("claims") == env("claims", "backbone") == "false"
    assert env("claims", "--runs", "r", "--out", "o") == "false"        # every claim
    assert env("claims", "--out", "backbone", "guidance") is None       # a folder's name
    assert env("claims", "guidance", "compounding") is None
    assert env("claims", "backbone", JAX_ENABLE_COMPILATION_CACHE="true") == "true"
    assert env("sweep", "quick") is None and env() is None
    # the claims command takes no abbreviated option the check above could misread
    from bench.cli import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["claims", "--o", "x"])
    # the entry point applies it before jax is imported
    # (an unwritable --out stops the command before any claim runs)
    code = ("import runpy, sys; sys.argv = ['bench', 'claims', 'backbone', '--out', "
            "'/dev/null/x']\n"
            "try:\n    runpy.run_module('bench', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "import os, jax; print(os.environ.get('JAX_ENABLE_COMPILATION_CACHE'), "
            "jax.config.jax_enable_compilation_cache)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in __import__("os").environ.items()
                              if k != "JAX_ENABLE_COMPILATION_CACHE"})
    assert out.stdout.split() == ["false", "False"], out


def test_unknown_claim_is_a_one_line_error():
    from algos.config import ConfigError

    with pytest.raises(ConfigError, match="unknown claim 'nope'; claims: expressiveness"):
        claims.get("nope")


SWEEP = """
[[group]]
algos = ["bc", "td3_bc", "iql", "diffusion_bc", "diffusion_ql", "idql"]
datasets = ["jaxrl/mountaincar/medium-expert-v0"]
seeds = 5
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 32 }
"""


@pytest.mark.slow
def test_expressiveness_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from envs import datasets

    datasets.build("MountainCarContinuous-v0", "medium-expert", n_transitions=5000,
                   log=lambda m: None)
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(SWEEP)
    from bench.claims import expressiveness

    f = expressiveness.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                           sweep_name=str(sweep_file), bandit_seeds=2, bandit_steps=4)
    assert len(f.tests) == 2 and f.verdict in claims.VERDICTS
    for t in f.tests:
        assert 0 <= t.lo <= t.estimate <= t.hi <= 1
    assert "3 matched pairs" in f.tests[0].name and "3 pair x task" in f.tests[1].name
    assert Path(f.figure).stat().st_size > 10_000
    md = claims.markdown([f], tmp_path, "test machine")
    assert "## Expressiveness" in md and "(figures/claim_expressiveness.png)" in md
    assert (tmp_path / "bandit.md").exists()
    bandit_runs = list((tmp_path / "runs").glob("*/jaxrl_bandit_multimodal-v0/*.json"))
    assert bandit_runs and all(json.loads(p.read_text())["command"] == "python -m bench claims"
                               for p in bandit_runs)
    assert np.isfinite([t.estimate for t in f.tests]).all()


MAZE_SWEEP = """
[[group]]
algos = ["diffuser"]
datasets = ["jaxrl/maze2d/umaze-v0"]
seeds = 2
steps = 20
set = { eval_every = 20, eval_episodes = 2, batch_size = 16, horizon = 16, diffusion = { T = 8, width = 8 } }
"""


@pytest.mark.slow
def test_compounding_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from bench.claims import compounding
    from envs import datasets

    datasets.build("maze2d-umaze", "umaze", n_transitions=5000, log=lambda m: None)
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(MAZE_SWEEP)
    f = compounding.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                        sweep_name=str(sweep_file), ensemble_steps=50, held_out=8)
    assert len(f.tests) == 2 and f.verdict in claims.VERDICTS
    for t in f.tests:
        assert 0 <= t.lo <= t.estimate <= t.hi <= 1
    assert "8 held-out windows x 2 seeds, step 15" in f.tests[0].name
    assert "growth from step 1 to step 15" in f.tests[1].name
    assert Path(f.figure).stat().st_size > 10_000
    assert "Ensemble rollout vs replay: k=1:" in f.notes


SCARCITY_SWEEP = """
[[group]]
algos = ["td3_bc"]
datasets = ["jaxrl/pendulum/medium-expert-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16 }
""" + "".join(f"""
[[group]]
algos = ["td3_bc"]
datasets = ["jaxrl/pendulum/medium-expert-v0"]
subset = 0.2
{aug}
seeds = 3
steps = 4
set = {{ eval_every = 4, eval_episodes = 1, batch_size = 16 }}
label = "TD3+BC (20%{suffix})"
""" for aug, suffix in [
    ("", ""),
    ('augment = { method = "synther", set = { diffusion = { width = 16, depth = 1, steps = 2 }, '
     'steps = 4, save_every = 4, size = 64, sample_batch = 64 } }', " + SynthER"),
    ('augment = { method = "noise", set = { size = 64 } }', " + noise")])


def test_scarcity_reads_the_authors_size_rows_apart_from_the_quick_ones(tmp_path):
    """The claim tells `X (5% + SynthER, authors' size)` from `X (5% + SynthER)` and says so
    when sweep synther-authors has no finished runs (it never trains them)."""
    from bench.claims import scarcity

    rows = [{"label": lab, "status": "done", "scores": sc} for lab, sc in [
        ("IQL (5%)", [1.0, 2.0]), ("IQL (5% + SynthER)", [3.0]),
        ("IQL (5% + SynthER, authors' size)", [5.0, 6.0]), ("IQL (5% + noise 0.01)", [7.0]),
        ("IQL (5% + noise)", [0.0]), ("IQL", [9.0])]]
    grid = scarcity._grid(rows)
    assert grid[("IQL", "5%", "SynthER, authors' size")].tolist() == [5.0, 6.0]
    assert grid[("IQL", "5%", "SynthER")].tolist() == [3.0]
    assert grid[("IQL", "5%", "real")].tolist() == [1.0, 2.0]
    assert grid[("IQL", "5%", "noise")].tolist() == [7.0]  # the better noise scale
    assert sorted(grid) == sorted(("IQL", "5%", k) for k in (
        "real", "SynthER", "SynthER, authors' size", "noise 0.01", "noise 0.1", "noise"))
    note = scarcity.authors_note(tmp_path, tmp_path, scarcity.AUTHORS_SWEEP)
    assert note.startswith("At the authors' generator size: no finished authors'-size cells "
                           "of sweep `synther-authors`") and "device_synther.sh" in note
    assert scarcity.authors_note(tmp_path, tmp_path, None) == ""


def test_scarcity_note_on_the_published_authors_size_runs():
    """The note from the committed results files (`results/runs`, `results/fidelity`): the
    pooled probabilities as `bench.stats` computes them from those files, the config from the
    sweep file, the fidelity errors from their JSON."""
    from bench import leaderboard, stats, sweep
    from bench.claims import scarcity

    results = Path(__file__).resolve().parent.parent / "results"
    note = scarcity.authors_note(results / "runs", results, scarcity.AUTHORS_SWEEP)
    grid = scarcity._grid(leaderboard.collect(sweep.load("synther-authors"), results / "runs"))
    pairs = [(a, s) for a in ("TD3+BC", "IQL") for s in ("1%", "5%", "20%")]
    for other, what in (("real", "the share alone"), ("SynthER", "the quick preset's rows")):
        est = stats.improvement_interval(
            {f"{a}/{s}": grid[(a, s, scarcity.AUTHORS)] for a, s in pairs},
            {f"{a}/{s}": grid[(a, s, other)] for a, s in pairs})
        assert (f"above a seed on {what}) = {est[0]:.2f} [{est[1]:.2f}, {est[2]:.2f}] over 6 "
                f"algorithm x share pairs") in note
    # the published figures (README, claims.md)
    assert "share alone) = 0.47 [0.31, 0.63]" in note and "rows) = 0.69 [0.54, 0.82]" in note
    assert "width 2048, 100,000 training steps, 100,000 generated rows" in note
    for a, s in pairs:
        assert f"{a} {s} {grid[(a, s, scarcity.AUTHORS)].mean():.1f}" in note
        fid = json.loads((results / "fidelity" / f"jaxrl__pendulum__medium-expert-{s[:-1]}pct-"
                          "synther-b8d4597e-v0.json").read_text())
        err = next(r for r in fid["rows"] if r["set"] != "real (source)")["next_obs_median"]
        assert f"{s}: {err:.3g}" in note


@pytest.mark.slow
def test_scarcity_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from bench.claims import scarcity
    from envs import datasets

    datasets.build("Pendulum-v1", "medium-expert", n_transitions=2000, log=lambda m: None)
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(SCARCITY_SWEEP)
    f = scarcity.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                     sweep_name=str(sweep_file))
    assert len(f.tests) == 2 and f.verdict in claims.VERDICTS
    for t in f.tests:
        assert 0 <= t.lo <= t.estimate <= t.hi <= 1
    assert "1 algorithm x share pairs" in f.tests[0].name
    assert "noise-upsampled" in f.tests[1].name
    assert Path(f.figure).stat().st_size > 10_000
    assert "TD3+BC 20%: alone" in f.notes and "on all of the data: TD3+BC" in f.notes
    assert len(list((tmp_path / "fidelity").glob("*.json"))) == 2


ONLINE_SWEEP = "".join(f"""
[[group]]
algos = ["{algo}"]
label = "{label}"
datasets = ["env:Pendulum-v1"]
seeds = 3
steps = 300
set = {{ eval_every = 150, eval_episodes = 1, start_steps = 64, hidden = [16, 16], batch_size = 16, {extra} }}
""" for algo, label, extra in [
    ("sac", "SAC (UTD 1)", "utd = 1"),
    ("sac", "SAC (UTD 20)", "utd = 2, policy_delay = 2"),
    ("sac_synther", "SAC + SynthER (UTD 20)",
     "utd = 2, policy_delay = 2, retrain_every = 150, synthetic = 64, generator = { diffusion = "
     "{ width = 16, depth = 1, steps = 2 }, steps = 4, sample_batch = 64 }")])


@pytest.mark.slow
def test_online_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from bench.claims import online

    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(ONLINE_SWEEP)
    f = online.run(tmp_path / "runs", tmp_path, log=lambda m: None, sweep_name=str(sweep_file))
    assert len(f.tests) == 2 and f.verdict in claims.VERDICTS
    for t in f.tests:
        assert 0 <= t.lo <= t.estimate <= t.hi <= 1
    assert "SAC + SynthER (UTD 20) vs SAC (UTD 1)" in f.tests[1].name
    assert Path(f.figure).stat().st_size > 10_000
    assert "150 steps" in f.notes and "300 steps" in f.notes


def test_long_horizon_tests_pair_the_planner_with_each_reference_per_maze():
    """P(planner > reference) per maze: 1 when every planner seed beats every reference seed
    (the interval too, since every resample keeps that order), 0.5 for equal seeds, 0 when
    every reference seed is above; a reference with fewer than MIN_SEEDS finite seeds (here
    IQL on medium, two left after a divergence) or without a cell gives no test."""
    from bench.claims import long_horizon

    def s(*v, diverged=0):
        return {"scores": np.array(v, float), "diverged": diverged}

    scores = {"jaxrl/maze2d/umaze-v0": {"Diffuser": s(60, 70, 80), "IQL": s(1, 2, 3),
                                        "MPC (ensemble)": s(60, 70, 80)},
              "jaxrl/maze2d/medium-v0": {"Diffuser": s(5, 6, 7), "IQL": s(1, 2, diverged=1),
                                         "Diffusion-QL": s(50, 60, 70)}}
    assert long_horizon.MIN_SEEDS == 3
    tests = long_horizon.tests_of(scores)
    by = {t.name: t for t in tests}
    assert sorted(by) == ["Maze2D medium: Diffuser vs Diffusion-QL (3 vs 3 seeds)",
                          "Maze2D umaze: Diffuser vs IQL (3 vs 3 seeds)",
                          "Maze2D umaze: Diffuser vs MPC (ensemble) (3 vs 3 seeds)"]
    iql = by["Maze2D umaze: Diffuser vs IQL (3 vs 3 seeds)"]
    assert (iql.estimate, iql.lo, iql.hi, iql.verdict) == (1.0, 1.0, 1.0, "supported")
    assert by["Maze2D umaze: Diffuser vs MPC (ensemble) (3 vs 3 seeds)"].estimate == 0.5
    dql = by["Maze2D medium: Diffuser vs Diffusion-QL (3 vs 3 seeds)"]
    assert (dql.estimate, dql.verdict) == (0.0, "not supported")
    assert len(long_horizon.tests_of(scores, min_seeds=2)) == 4
    # Decision Diffuser is tested against IQL only, with the same rule
    scores["jaxrl/maze2d/umaze-v0"][long_horizon.OTHER_PLANNER] = s(0, 1, 2)
    dd = long_horizon.tests_of(scores, long_horizon.OTHER_PLANNER, long_horizon.OTHER_REFERENCES)
    assert [t.name for t in dd] == ["Maze2D umaze: Decision Diffuser (fast) vs IQL (3 vs 3 seeds)"]
    # (0, 1, 2) against (1, 2, 3): one win (2 > 1) and two ties (counted half) of 9 pairs
    assert dd[0].estimate == pytest.approx(2 / 9)


def test_long_horizon_scores_keep_only_rows_the_leaderboard_scores(monkeypatch):
    """`final_scores` reads the leaderboard's rows: a cell not run and a variant that evaluated
    another training are left out; a diverged seed is counted, not scored, and the notes say
    so."""
    from bench import leaderboard
    from bench.claims import long_horizon

    ds = "jaxrl/maze2d/medium-v0"
    rows = [{"status": "done", "dataset": ds, "label": "Diffuser", "scores": [30.0, 40.0],
             "diverged": 1},
            {"status": "not run", "dataset": ds, "label": "IQL", "scores": []},
            {"status": "evaluated another training", "dataset": ds,
             "label": "Diffuser (diffused actions)", "scores": []}]
    monkeypatch.setattr(leaderboard, "collect", lambda sw, runs: rows)
    got = long_horizon.final_scores(None, None)
    assert list(got) == [ds] and list(got[ds]) == ["Diffuser"]
    assert got[ds]["Diffuser"]["scores"].tolist() == [30.0, 40.0]
    assert got[ds]["Diffuser"]["diverged"] == 1
    assert long_horizon.tests_of(got) == []   # two finite seeds: below MIN_SEEDS
    # how the notes print a method, all of whose seeds may have diverged
    assert long_horizon._mean_std("Diffuser", got[ds]["Diffuser"]) == \
        "Diffuser 35.0 ± 5.0 (1 diverged)"
    assert long_horizon._mean_std("IQL", {"scores": np.array([]), "diverged": 3}) == \
        "IQL none (3 diverged)"


def test_long_horizon_budget_note_on_the_published_runs(tmp_path):
    """The larger-budget sweep's note from the committed results files: each method's mean as
    the files hold it, the planner's probability of improvement as `bench.stats` computes it
    from them, the machine the files name; a sentence naming the command where there are no
    results."""
    from bench import stats, sweep
    from bench.claims import long_horizon

    runs = Path(__file__).resolve().parent.parent / "results" / "runs"
    note = long_horizon.budget_note(runs)
    assert note.startswith("At 15,000 gradient steps (sweep `maze-long`, `bench/sweeps/maze-long"
                           ".toml`, evaluated every 5,000 steps, every other setting the same")
    assert "NVIDIA H200" in note
    sw = sweep.load(long_horizon.BUDGET_SWEEP)
    for maze in ("medium", "large"):
        final = {}
        for c in sw.cells:
            if c.dataset.endswith(f"/{maze}-v0"):
                res = json.loads(c.path(runs).read_text())
                final[c.label] = np.array([s["score"] for s in res["final"]])
        assert set(final) == {"Diffuser", "IQL", "Diffusion-QL", "MPC (ensemble)"}
        for label, x in final.items():
            assert f"{label} {x.mean():.1f} ± {x.std():.1f}" in note
        for ref in long_horizon.REFERENCES:
            est = stats.improvement_interval({maze: final["Diffuser"]}, {maze: final[ref]})
            assert f"P(Diffuser > {ref}) = {est[0]:.2f} [{est[1]:.2f}, {est[2]:.2f}]" in note
    # the published figures (README, claims.md)
    assert "P(Diffuser > MPC (ensemble)) = 0.48 [0.08, 0.88]; large" in note
    assert long_horizon.budget_note(tmp_path) == (
        "The sweep `maze-long` (the same cells at 15,000 steps) has no results here: "
        "`python -m bench sweep maze-long`.")


LONG_SWEEP = """
[[group]]
algos = ["iql"]
datasets = ["jaxrl/maze2d/umaze-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16 }

[[group]]
algos = ["diffuser"]
datasets = ["jaxrl/maze2d/umaze-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16, horizon = 16, diffusion = { T = 4, width = 8 } }
act = [{ label = "Diffuser (diffused actions)", set = { act_with = "actions" } }]

[[group]]
algos = ["decision_diffuser_fast"]
datasets = ["jaxrl/maze2d/umaze-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16, horizon = 8, inv_hidden = 16, diffusion = { T = 4, steps = 2, width = 16, depth = 1 } }
"""


@pytest.mark.slow
def test_long_horizon_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from bench.claims import long_horizon
    from envs import datasets

    datasets.build("maze2d-umaze", "umaze", n_transitions=5000, log=lambda m: None)
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(LONG_SWEEP)
    f = long_horizon.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                         sweep_name=str(sweep_file))
    # Decision Diffuser inpaints no goal: beside the tests, in the notes, not in the verdict
    assert [t.name for t in f.tests] == ["Maze2D umaze: Diffuser vs IQL (3 vs 3 seeds)"]
    assert 0 <= f.tests[0].lo <= f.tests[0].estimate <= f.tests[0].hi <= 1
    assert re.search(r"P\(a Decision Diffuser \(fast\) seed's final normalised score is above an "
                     r"IQL seed's\): umaze \d\.\d\d \[\d\.\d\d, \d\.\d\d\]\. The sweep `maze-long` "
                     r"\(the same cells at 15,000 steps\) has no results here", f.notes)
    assert ("On umaze Diffuser has horizon 16, T=4 and U-Net dim 8; on every maze it plans once"
            in f.setup)
    assert ("Decision Diffuser (fast) has horizon 8, ddim over 2 of T=4 steps, a DiT of width "
            "16, guidance 1.2 toward the return 0.9 (mapped to [0, 1] over the dataset)"
            in f.setup)
    assert "3 seeds and 4 gradient steps per cell" in f.setup and "fixed goal" in f.setup
    # the ablation, an acting variant of the trained cell, is in the notes (not in a test)
    assert re.search(r"umaze: IQL -?\d+\.\d ± ", f.notes)
    assert re.search(r"Diffuser \(diffused actions\) -?\d+\.\d ± ", f.notes)
    assert re.search(r"Decision Diffuser \(fast\) -?\d+\.\d ± ", f.notes)
    assert Path(f.figure).stat().st_size > 10_000


def _pendulum_replay(obs, actions):
    """Pendulum-v1 from `obs = [cos, sin, thdot]` under `actions`, in numpy from the gym
    source's closed form (g 10, m = l = 1, dt 0.05, |u| <= 2, |thdot| <= 8): the summed
    reward and the observation after each step."""
    th, thdot, total, seen = float(np.arctan2(obs[1], obs[0])), float(obs[2]), 0.0, []
    for u in np.clip(np.asarray(actions, np.float64)[:, 0], -2.0, 2.0):
        norm = ((th + np.pi) % (2 * np.pi)) - np.pi
        total -= norm ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
        thdot = np.clip(thdot + (15.0 * np.sin(th) + 3.0 * u) * 0.05, -8.0, 8.0)
        th = th + thdot * 0.05
        seen.append([np.cos(th), np.sin(th), thdot])
    return total, np.asarray(seen)


def test_plan_diversity_is_the_mean_pairwise_rms_distance_after_the_start():
    from bench.claims import guidance

    std = np.array([2.0, 0.5])
    a = np.zeros((3, 2))
    b = a.copy()
    b[1:] = [[2.0, 0.0], [0.0, 0.5]]          # one std along each dimension, at steps 1 and 2
    c = a.copy()
    c[0] = [9.0, 9.0]                         # differs only at the (inpainted) start
    # b from a: squared distances 1 and 1 over 4 entries after the start -> RMS sqrt(0.5)
    got = float(guidance.diversity(np.stack([a, b, c]), std))
    np.testing.assert_allclose(got, 4 * np.sqrt(0.5) / 6, rtol=1e-6)


def test_guidance_measures_return_diversity_and_consistency_per_weight(random_pendulum,
                                                                        monkeypatch):
    """At temperature 0 every draw of the sampler is zero, so all plans from one start are
    one plan: diversity 0. Each weight's return and consistency error are then that plan's,
    computed in numpy from Pendulum's closed form and the inverse dynamics' actions (3 starts
    x 2 weights: the grid of weights and starts is laid out right); at temperature 0.5 the
    plans differ."""
    import jax
    import jax.numpy as jnp

    import algos
    import envs
    from algos import decision_diffuser as dd
    from algos.config import apply_overrides
    from bench.claims import guidance
    from envs.datasets import load

    monkeypatch.setattr(guidance, "SAMPLES", 4)
    data = load(random_pendulum("test/pendulum/guidance-v0", 600, jax.random.PRNGKey(3)))
    env = envs.make("Pendulum-v1")
    mod = algos.get("decision_diffuser_fast")
    cfg = apply_overrides(mod.Config(), {**mod.TINY, **mod.task_defaults(data.dataset_id),
                                         "steps": "4", "eval_every": "4", "batch_size": "16"})
    state = jax.jit(mod.make_train(cfg, data, env).init)(jax.random.PRNGKey(0)).algo
    state = state.replace(ema=jax.tree_util.tree_map(      # weights away from their init
        lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(1), p.shape), state.ema))
    starts = jnp.array([[1.0, 0.0, 0.5], [-0.6, 0.8, -2.0], [0.0, -1.0, 3.0]])
    weights = [0.0, 4.8]
    std = jnp.array([0.5, 2.0, 4.0])
    cold = dataclasses.replace(cfg, temperature=0.0)
    ret, div, cons = jax.jit(lambda s: guidance.measure(
        s, cold, env, starts, jnp.array(weights), jax.random.PRNGKey(2), std))(state)
    np.testing.assert_array_equal(np.asarray(div), 0.0)
    plan = jax.jit(dd.make_planner(cold, 1, 3))
    for j, w in enumerate(weights):
        want_ret, want_cons = [], []
        for s in starts:
            x, first = plan(state, s, jax.random.PRNGKey(9), None, w)
            actions = np.asarray(dd.plan_actions(state, x, 1, cold.inv_hidden))
            np.testing.assert_allclose(actions[0], first, rtol=1e-5, atol=1e-5)
            states = np.asarray(state.norm.obs_from(x))
            r, _ = _pendulum_replay(np.asarray(s), actions)
            nxt = np.stack([_pendulum_replay(states[k], actions[k:k + 1])[1][0]
                            for k in range(len(actions))])
            want_ret.append(r)
            want_cons.append(np.mean(np.sqrt(np.mean(((states[1:] - nxt) / std) ** 2, -1))))
        np.testing.assert_allclose(float(ret[j]), np.mean(want_ret), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(float(cons[j]), np.mean(want_cons), rtol=2e-3, atol=2e-4)
    assert abs(float(ret[0]) - float(ret[1])) > 1e-3              # the weight acts
    # a traced weight plans what the config's weight plans
    x_cfg, _ = dd.make_planner(dataclasses.replace(cold, guidance_w=4.8), 1, 3)(
        state, starts[0], jax.random.PRNGKey(9))
    np.testing.assert_allclose(plan(state, starts[0], jax.random.PRNGKey(9), None, 4.8)[0],
                               x_cfg, rtol=1e-5, atol=1e-5)
    _, hot, _ = jax.jit(lambda s: guidance.measure(
        s, cfg, env, starts, jnp.array(weights), jax.random.PRNGKey(2), std))(state)
    assert np.all(np.asarray(hot) > 1e-3), hot


def test_diffuser_guidance_measures_each_scale_on_the_plans_of_one_decision(random_pendulum):
    """`measure_diffuser` over 3 starts x 2 guide scales equals each decision's 4 plans
    measured one by one: returns and consistency replayed in numpy from Pendulum's closed
    form, diversity by the formula, the value the planner ranked by; a traced scale plans what
    the config's scale plans, and the scale acts."""
    import jax
    import jax.numpy as jnp

    import algos
    import envs
    from algos import diffuser
    from algos.config import apply_overrides
    from bench.claims import guidance
    from envs.datasets import load

    data = load(random_pendulum("test/pendulum/guidance-v0", 600, jax.random.PRNGKey(3)))
    env = envs.make("Pendulum-v1")
    mod = algos.get("diffuser")
    cfg = apply_overrides(mod.Config(), {**mod.task_defaults(data.dataset_id), **mod.TINY,
                                         "steps": "4", "eval_every": "4", "batch_size": "16",
                                         "n_plans": "4", "diffusion.width": "16"})
    state = jax.jit(mod.make_train(cfg, data, env).init)(jax.random.PRNGKey(0)).algo
    noise = lambda tree, k: jax.tree_util.tree_map(                       # noqa: E731
        lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(k), p.shape), tree)
    state = state.replace(ema=noise(state.ema, 1), value_ema=noise(state.value_ema, 5))
    starts = jnp.array([[1.0, 0.0, 0.5], [-0.6, 0.8, -2.0], [0.0, -1.0, 3.0]])
    scales = [0.0, 50.0]
    std = jnp.array([0.5, 2.0, 4.0])
    got = jax.jit(lambda s: guidance.measure_diffuser(
        s, cfg, env, starts, jnp.array(scales), jax.random.PRNGKey(2), std))(state)
    plan = jax.jit(diffuser.make_guided_planner(cfg, 1, 3))
    keys = jax.random.split(jax.random.PRNGKey(2), 3)         # one per start, at every scale
    for j, scale in enumerate(scales):
        want = {"ret": [], "div": [], "cons": [], "value": []}
        for s, k in zip(starts, keys):
            p = plan(state, s, k, scale)
            obs, act = np.asarray(p.obs), np.asarray(p.action)
            want["div"].append(float(guidance.diversity(p.obs, std)))
            want["value"].append(float(np.mean(p.value)))
            for o, a in zip(obs, act):
                r, _ = _pendulum_replay(np.asarray(s), a[:-1])
                nxt = np.stack([_pendulum_replay(o[k], a[k:k + 1])[1][0]
                                for k in range(len(o) - 1)])
                want["ret"].append(r / len(obs))
                want["cons"].append(np.mean(np.sqrt(np.mean(((o[1:] - nxt) / std) ** 2, -1)))
                                    / len(obs))
        for i, name in enumerate(["ret", "div", "cons", "value"]):
            w = np.sum(want[name]) / 3 if name in ("ret", "cons") else np.mean(want[name])
            np.testing.assert_allclose(float(got[i][j]), w, rtol=2e-3, atol=2e-3, err_msg=name)
    assert abs(float(got[3][1]) - float(got[3][0])) > 1e-3          # the scale acts
    by_cfg = diffuser.make_guided_planner(dataclasses.replace(cfg, guide_scale=50.0), 1, 3)(
        state, starts[0], keys[0])
    np.testing.assert_allclose(plan(state, starts[0], keys[0], 50.0).obs, by_cfg.obs,
                               rtol=1e-5, atol=1e-5)


def test_guidance_tests_compare_the_authors_strength_with_none_and_figures_draw(tmp_path,
                                                                              monkeypatch):
    """`_tests`: gain in return and loss of diversity at the authors' strength against 0,
    paired by seed, whatever the order of the strengths; the figure draws one row per planner
    for strengths spanning decades, two values, or one, the four panels of a row on one x
    range that holds every strength (on a log axis, 0 inside the left edge and no negative
    decade)."""
    from bench import sysinfo
    from bench.claims import guidance

    saved, ticks = [], []
    save = sysinfo.save_figure
    monkeypatch.setattr(sysinfo, "save_figure", lambda fig, path: saved.append(
        [[ax.get_xlim() for ax in fig.axes[4 * r:4 * r + 4]] for r in range(3)])
        or ticks.append([t.get_text() for t in fig.axes[0].get_xticklabels()]) or save(fig, path))

    xs = (0.1, 0.0, 1.0)                    # the authors' first: the columns are found by value
    ret = np.array([[1.0, 0.0, 5.0], [3.0, 0.0, 5.0]])
    div = np.array([[0.5, 1.0, 0.1], [0.7, 1.0, 0.1]])
    gain, loss = guidance._tests("here", xs, 0.1, ret, div, "guidance")
    assert gain.estimate == pytest.approx(2.0) and loss.estimate == pytest.approx(0.4)
    assert gain.name == loss.name == "here" and gain.threshold == loss.threshold == 0.0
    v = np.ones((2, 5))
    panels = [("A: scale", guidance.SCALES, v, v, v, v, {0.0: np.ones(2), 0.1: np.zeros(2)},
               0.1),
              ("B: weight", (0.0, 1.2), v[:, :2], v[:, :2], v[:, :2], None, {}, 1.2),
              ("C: weight", (0.0,), v[:, :1], v[:, :1], v[:, :1], None, {2.0: np.ones(2)},
               0.0)]
    assert guidance.figure(panels, tmp_path / "g.png").stat().st_size > 10_000
    rows = saved[0]
    for lims, (_, xs, *_, closed, _) in zip(rows, panels):
        assert len(set(lims)) == 1                      # one range for the row's four panels
        lo, hi = lims[0]
        assert lo < min(xs) and max([*xs, *closed]) < hi   # a closed-loop strength too
    assert -min(x for x in guidance.SCALES if x > 0) < rows[0][0][0] < 0
    assert ticks[0] == [f"{x:g}" for x in sorted(guidance.SCALES)]   # the strengths, plainly


DD_GROUP = """
[[group]]
algos = ["decision_diffuser_fast"]
datasets = ["jaxrl/pendulum/medium-expert-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16, horizon = 8, diffusion = { T = 4, steps = 2, width = 16, depth = 1 }, inv_hidden = 16 }
"""
GUIDANCE_SWEEP = DD_GROUP + """act = [{ label = "Decision Diffuser (fast, w 0)", set = { guidance_w = 0.0 } },
       { label = "Decision Diffuser (fast, DDIM-1)", set = { diffusion = { steps = 1 } } }]

[[group]]
algos = ["decision_diffuser_fast"]
label = "Other"
datasets = ["jaxrl/pendulum/medium-expert-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 8, horizon = 8, diffusion = { T = 4, steps = 2, width = 16, depth = 1 }, inv_hidden = 16 }
"""


DIFFUSER_GROUP = """
algos = ["diffuser"]
datasets = ["jaxrl/pendulum/medium-expert-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16, horizon = 8, n_plans = 4, diffusion = { T = 4, width = 16, mults = [1, 2] }%s }
"""
# the cell at the authors' scale, one trained apart at scale 0, and one that differs otherwise
DIFFUSER_SWEEP = ('[[group]]\nlabel = "Diffuser (scale 0)"' + DIFFUSER_GROUP % ", guide_scale = 0.0"
                  + "\n[[group]]" + DIFFUSER_GROUP % ""
                  + '\n[[group]]\nlabel = "Other"' + DIFFUSER_GROUP % ", n_guide_steps = 1")


@pytest.mark.slow
def test_guidance_claim_end_to_end_on_a_tiny_budget(tmp_path):
    from bench.claims import guidance

    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(GUIDANCE_SWEEP)
    diffuser_file = tmp_path / "tiny-diffuser.toml"
    diffuser_file.write_text(DIFFUSER_SWEEP)
    f = guidance.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                     sweep_name=str(sweep_file), starts=2, weights=(0.0, 1.2),
                     diffuser_sweep=str(diffuser_file), scales=(0.0, 0.1, 1.0))
    assert len(f.tests) == 4 and f.verdict in claims.VERDICTS
    for t in f.tests:   # mean paired differences against 0
        assert t.lo <= t.estimate <= t.hi and t.threshold == 0
    assert all("2 starts x 64 plans x 3 seeds, w 1.2 vs 0" in t.name for t in f.tests[:2])
    assert all(t.name.startswith("Diffuser: Pendulum-v1, 2 starts x 4 plans x 3 seeds, scale "
                                 "0.1 vs 0") for t in f.tests[2:])
    # closed loop: the cell (w 1.2) and the w 0 variant, never the DDIM-1 one
    assert re.search(r"w 0: return -?\d+\.\d, diversity \d\.\d+, consistency error \d\.\d+, "
                     r"closed-loop score -?\d+\.\d ± ", f.notes)
    assert re.search(r"w 1\.2: .*closed-loop score", f.notes)
    # Diffuser: the two cells that differ in the scale only; scale 1 has no closed loop
    assert re.search(r"scale 0: return -?\d+\.\d, value -?\d+\.\d, diversity \d\.\d+, "
                     r"consistency error \d\.\d+, closed-loop score -?\d+\.\d ± ", f.notes)
    assert re.search(r"scale 1: return -?\d+\.\d, value -?\d+\.\d, diversity \d\.\d+, "
                     r"consistency error \d\.\d+\.$", f.notes)
    assert f.notes.count("closed-loop") == 4
    assert Path(f.figure).stat().st_size > 10_000
    from bench import leaderboard, sweep

    dsw = sweep.load(str(diffuser_file))
    other = next(c for c in dsw.cells if c.label == "Other")    # another question: not run
    closed = guidance.closed_loop(dsw, tmp_path / "runs",
                                  next(c for c in dsw.cells if c.label == "Diffuser"),
                                  "guide_scale")
    assert list(closed) == [0.0, 0.1] and not other.path(tmp_path / "runs").exists()
    drows = {r["label"]: r["scores"] for r in leaderboard.collect(dsw, tmp_path / "runs")}
    np.testing.assert_array_equal(closed[0.0], drows["Diffuser (scale 0)"])
    np.testing.assert_array_equal(closed[0.1], drows["Diffuser"])
    # the closed-loop scores are the cell's (w 1.2) and the w 0 variant's, never DDIM-1's

    sw = sweep.load(str(sweep_file))
    cell = next(c for c in sw.cells if c.label == guidance.PLANNER)
    closed = guidance.closed_loop(sw, tmp_path / "runs", cell)
    rows = {r["label"]: r["scores"] for r in leaderboard.collect(sw, tmp_path / "runs")}
    assert list(closed) == [0.0, 1.2]
    other = next(c for c in sw.cells if c.label == "Other")          # not the claim's: not run
    assert not other.path(tmp_path / "runs").exists()
    np.testing.assert_array_equal(closed[1.2], rows[guidance.PLANNER])
    np.testing.assert_array_equal(closed[0.0], rows["Decision Diffuser (fast, w 0)"])


BACKBONE_SWEEP = DD_GROUP + """
[[group]]
algos = ["decision_diffuser_fast"]
label = "Decision Diffuser (fast, U-Net)"
datasets = ["jaxrl/pendulum/medium-expert-v0"]
seeds = 3
steps = 4
set = { eval_every = 4, eval_episodes = 1, batch_size = 16, horizon = 8, diffusion = { T = 4, steps = 2, backbone = "unet", width = 8, mults = [1, 2] }, inv_hidden = 16 }
"""


@pytest.mark.slow
def test_backbone_claim_end_to_end_on_a_tiny_budget(tmp_path, monkeypatch):
    from bench.claims import backbone, guidance

    monkeypatch.setattr(guidance, "SAMPLES", 8)
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(BACKBONE_SWEEP)
    f = backbone.run(tmp_path / "runs", tmp_path, log=lambda m: None,
                     sweep_name=str(sweep_file), starts=2)
    assert len(f.tests) == 2 and f.verdict in claims.VERDICTS
    for t in f.tests:
        assert 0 <= t.lo <= t.estimate <= t.hi <= 1
    assert f.tests[0].name == "Pendulum-v1, DiT vs U-Net (3 vs 3 seeds)"
    assert f.tests[1].name.endswith("2 starts x 8 plans")
    assert re.search(r"Decision Diffuser \(fast, U-Net\): closed-loop score -?\d+\.\d ± "
                     r"\d+\.\d, plan consistency error \d\.\d+", f.notes)
    assert Path(f.figure).stat().st_size > 10_000
