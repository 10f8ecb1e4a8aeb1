"""The offline algorithms: vmapped seeds, seed independence, checkpoint/resume, the CLI, and
the multi-modal bandit they are compared on."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algos
import envs
from algos import checkpoint
from algos.config import ConfigError, apply_overrides, config_hash
from bench import train as bench_train
from bench.cli import main as cli
from envs import bandit, datasets

BANDIT = "jaxrl/bandit/multimodal-v0"
# Tiny budgets: 4 updates in 2 evaluation periods, narrow networks, 2 episodes per evaluation.
TINY = {"steps": "4", "eval_every": "2", "eval_episodes": "2", "batch_size": "32"}


@pytest.fixture(scope="module")
def bandit_data():
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    return datasets.load(BANDIT), envs.make("bandit-2d")


def _tiny(algo):
    return apply_overrides(algos.get(algo).Config(), {**TINY, **algos.get(algo).TINY})


_TRAINS = {}


def _train(algo, bandit_data):
    """One Train and its jitted entry points per algorithm, shared by the tests below."""
    if algo not in _TRAINS:
        data, env = bandit_data
        tr = algos.get(algo).make_train(_tiny(algo), data, env)
        # the seeds as the harness runs them on a CPU: updates vmapped, evaluation in turn
        seeds = jax.jit(lambda k: tr.run_seeds(tr.init_seeds(k), tr.periods, 1))
        _TRAINS[algo] = (tr, seeds, jax.jit(tr.init), jax.jit(lambda s: tr.run(s, 1)))
    return _TRAINS[algo]


def _close(a, b, tol=2e-3):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("algo", algos.POLICIES)
def test_seeds_in_one_program_each_equal_the_seed_alone_saved_and_resumed(
        algo, bandit_data, tmp_path):
    """Seed 1 beside seed 0 in the harness's program is the same run as seed 1 alone, saved
    after one period, restored into another run's structure and finished; and that restored
    run continues exactly as the one kept in memory. (No program beyond the harness's and
    the one-period step is compiled.)"""
    tr, seeds, init, run1 = _train(algo, bandit_data)
    keys = bench_train.seed_keys(2)
    state, metrics = seeds(keys)
    assert metrics["score"].shape == (2, tr.periods) == (2, 2)
    np.testing.assert_array_equal(metrics["step"][0], [2, 4])
    for k, v in metrics.items():
        assert np.isfinite(np.asarray(v)).all(), (algo, k)
    loss_keys = [k for k in metrics if k.endswith("_loss")]
    assert loss_keys, metrics.keys()
    half, first = run1(init(keys[1]))
    checkpoint.save(tmp_path / "ckpt", 1, half)
    template = init(jax.random.PRNGKey(99))  # same structure, other numbers
    step, restored = checkpoint.restore(tmp_path / "ckpt", template)
    assert step == 1 and int(restored.period) == 1
    alone, second = run1(restored)
    # the restored run continues exactly as the one kept in memory (same program, to 1e-5)
    kept, second_kept = run1(half)
    _close(kept, alone, tol=1e-5)
    _close(second_kept, second, tol=1e-5)
    _close({k: v[1] for k, v in metrics.items()},
           {k: np.concatenate([first[k], second[k]]) for k in first})
    _close(jax.tree_util.tree_map(lambda x: x[1], state), alone)


@pytest.mark.parametrize("algo", algos.POLICIES)
def test_act_returns_actions_inside_the_env_bounds(algo, bandit_data):
    tr, _, init, _ = _train(algo, bandit_data)
    state = init(jax.random.PRNGKey(0))
    policy = algos.get(algo).make_policy(tr.config, envs.make("bandit-2d").spec)
    a = jax.jit(jax.vmap(lambda k: policy.act(state.algo, (), jnp.zeros(1), k)[0]))(
        jax.random.split(jax.random.PRNGKey(1), 64))
    assert a.shape == (64, 2)
    assert float(jnp.abs(a).max()) <= 1.0


def test_overrides_parse_types_and_reject_unknown_or_ill_typed_fields():
    from algos import diffusion_ql

    cfg = apply_overrides(diffusion_ql.Config(), {"eta": "0.5", "max_q_backup": "true",
                                                  "hidden": "64,64", "steps": "1e3",
                                                  "eval_every": "500"})
    assert (cfg.eta, cfg.max_q_backup, cfg.hidden, cfg.steps) == (0.5, True, (64, 64), 1000)
    assert config_hash(cfg) != config_hash(diffusion_ql.Config())
    with pytest.raises(ConfigError, match="unknown config field 'etaa'.*valid fields of diffusion_ql: steps"):
        apply_overrides(cfg, {"etaa": "1"})
    with pytest.raises(ConfigError, match="eta='abc': expected float"):
        apply_overrides(cfg, {"eta": "abc"})
    with pytest.raises(ConfigError, match="multiple of eval_every"):
        apply_overrides(cfg, {"steps": "1200"})
    with pytest.raises(ConfigError, match="selection must be"):
        apply_overrides(cfg, {"selection": "max"})


def test_cli_train_bad_input_is_one_line(capsys):
    for argv, expect in [
        (["train", "--algo", "dqn", "--dataset", BANDIT], "unknown algorithm 'dqn'"),
        (["train", "--algo", "bc", "--dataset", BANDIT, "--set", "lr=fast"],
         "--set lr='fast': expected float"),
        (["train", "--algo", "bc", "--dataset", BANDIT, "--set", "foo=1"],
         "unknown config field 'foo'"),
        (["train", "--algo", "bc", "--dataset", "jaxrl/nope/x-v0"], "unknown dataset id"),
    ]:
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err, err


def test_cli_train_writes_per_seed_rows_and_an_interrupted_run_resumes(bandit_data, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(bench_train, "CHECKPOINTS", tmp_path / "ckpt")
    sets = {"eval_every": "3", "eval_episodes": "2", "hidden": "32,32", "batch_size": "32"}
    kw = dict(steps=9, overrides=sets, checkpoints=tmp_path / "ckpt", log=lambda m: None)
    full = bench_train.run("bc", BANDIT, 2, out=tmp_path / "a", **kw)

    calls = []

    def killer(msg):  # interrupt right after the second evaluation period's checkpoint
        calls.append(msg)
        if msg.strip().startswith("step") and msg.strip().split()[1].startswith("6/"):
            raise KeyboardInterrupt

    kw["checkpoints"] = tmp_path / "ckpt2"
    with pytest.raises(KeyboardInterrupt):
        bench_train.run("bc", BANDIT, 2, out=tmp_path / "b", **{**kw, "log": killer})
    assert not (tmp_path / "b").exists()  # no results file until the run is complete
    resumed_log = []
    resumed = bench_train.run("bc", BANDIT, 2, out=tmp_path / "b",
                              **{**kw, "log": resumed_log.append})
    assert any("resumed" in m and "step 6" in m for m in resumed_log), resumed_log
    assert [r["score"] for r in resumed["rows"]] == pytest.approx(
        [r["score"] for r in full["rows"]], abs=1e-4)

    written = json.loads(next((tmp_path / "a").rglob("*.json")).read_text())
    assert written["seeds"] == 2 and written["config"]["hidden"] == [32, 32]
    assert len(written["rows"]) == 2 * 3
    row = written["rows"][-1]
    assert set(row) >= {"algo", "dataset", "seed", "config_hash", "step", "score", "wall_s",
                        "compile_s"}
    assert (row["algo"], row["dataset"], row["step"]) == ("bc", BANDIT, 9)
    assert written["versions"]["jax"] and written["hardware"]["cores"] >= 1
    # a rerun finds the finished cell and does nothing
    again = []
    bench_train.run("bc", BANDIT, 2, out=tmp_path / "a", **{**kw, "log": again.append})
    assert any("nothing to do" in m for m in again)

    # a finished cell's final state (what claims and `bench bandit` ask for) is restored from
    # its checkpoint with no training step compiled: the interrupted run's equals the other's
    def no_compile(*a, **k):
        raise AssertionError("a finished cell compiled its training step")

    monkeypatch.setattr(jax.stages.Lowered, "compile", no_compile)
    states = []
    for out, ckpt in (("a", "ckpt"), ("b", "ckpt2")):
        _, state = bench_train.run("bc", BANDIT, 2, out=tmp_path / out, return_state=True,
                                   **{**kw, "checkpoints": tmp_path / ckpt})
        assert np.asarray(state.period).tolist() == [3, 3]
        states.append(state)
    _close(states[0], states[1], tol=1e-4)


def test_bandit_dataset_env_and_coverage_metric(bandit_data):
    data, env = bandit_data
    acts = data.transitions["action"]
    assert acts.shape == (4000, 2) and data.transitions["terminated"].all()
    cov = bandit.mode_coverage(acts)
    # 4 equal Gaussian modes, std 0.08, radius 0.25: P(r <= 0.25) = 1 - exp(-0.25^2/(2 0.08^2))
    assert cov["in_mode"] == pytest.approx(1 - np.exp(-0.25 ** 2 / (2 * 0.08 ** 2)), abs=0.005)
    assert cov["modes_covered"] == 4
    assert all(abs(f - 0.25) < 0.03 for f in cov["per_mode"])
    np.testing.assert_allclose(data.transitions["reward"], bandit.reward(acts))
    # the averaged action (what a Gaussian fit's mean lands on) earns nothing
    assert float(bandit.reward(jnp.asarray(acts).mean(0))) == 0.0
    # the random reference is exact: a Monte Carlo estimate agrees
    u = jax.random.uniform(jax.random.PRNGKey(0), (400_000, 2), minval=-1, maxval=1)
    assert float(bandit.reward(u).mean()) == pytest.approx(bandit.RANDOM_RETURN, rel=0.02)


def test_few_step_ddpm_cannot_hit_narrow_modes_even_with_the_exact_denoiser():
    """Why the bandit uses T=20: DDPM's discretisation at T=5 spreads samples off the modes,
    whatever the network (the exact mixture denoiser here)."""
    from algos import diffusion as D

    gm = D.GaussianMixture.create(jnp.ones(4), jnp.asarray(bandit.CENTERS),
                                  jnp.broadcast_to(jnp.eye(2) * bandit.MODE_STD ** 2, (4, 2, 2)))
    inside = {}
    for T in (5, 20):
        sched = D.schedule("vp", T)
        x = D.ddpm_sample(gm.vp_denoiser(sched, "eps"), sched, jax.random.PRNGKey(0),
                          (4000, 2), clip_x0=1.0)
        inside[T] = bandit.mode_coverage(x)["in_mode"]
    assert inside[5] < 0.5 < 0.95 < inside[20], inside


def test_diffusion_bc_covers_every_mode_where_gaussian_bc_covers_none(bandit_data):
    """The expressiveness claim in miniature: same data, same budget, 2 seeds."""
    from bench.bandit import sample_actions

    data, env = bandit_data
    cover = {}
    for algo, sets in [("bc", {}), ("diffusion_bc", {"diffusion.T": "20", "lr": "1e-3",
                                                     "lr_decay": "false"})]:
        cfg = apply_overrides(algos.get(algo).Config(), {
            "steps": "2000", "eval_every": "2000", "eval_episodes": "2", **sets})
        tr = algos.get(algo).make_train(cfg, data, env)
        state, _ = jax.jit(jax.vmap(tr))(bench_train.seed_keys(2))
        actions = sample_actions(algo, cfg, state, 2, n=500)
        cover[algo] = [bandit.mode_coverage(a) for a in actions]
    for c in cover["bc"]:
        assert c["in_mode"] < 0.05 and c["reward"] < 0.5
    for c in cover["diffusion_bc"]:
        assert c["in_mode"] > 0.7 and c["modes_covered"] == 4, c


@pytest.mark.slow
def test_speed_policies_quick_measures_every_case():
    """~75 s of compiles on 2 cores: `make test-slow`."""
    from bench import speed_policies

    rows, peaks, notes = speed_policies.run_policies(quick=True, log=lambda m: None)
    labels = {r["workload"] for r in rows}
    assert {"bc", "diffusion_ql", "diffusion_ql + EDP", "idql"} <= labels
    grad = [r for r in rows if r["case"] == "grad steps"]
    assert all(r["throughput"] > 0 for r in rows)
    assert {r["seeds"] for r in grad} == {"1", "8 vmapped", "8 sequential"}
    assert all(r["speedup"] > 0 for r in grad if r["seeds"] == "8 vmapped")
    assert any(r["case"] == "evaluation" and r["unit"] == "env-steps/s" for r in rows)
    decisions = {r["workload"]: r for r in rows if r["case"] == "decision"}
    assert set(decisions) == set(algos.POLICIES)
    assert all(r["throughput"] > 0 and r["unit"] == "decisions/s" for r in decisions.values())
    md = speed_policies.markdown(rows, peaks, notes, "test hw", {"jax": "x"}, "cmd")
    assert md.startswith("# Offline policy speed") and "diffusion_ql + EDP" in md


def test_policies_table_from_results(tmp_path, capsys):
    # the score table is rebuilt from results files alone; a diverged seed is counted apart
    run = {"schema": 2, "complete": True, "algo": "bc", "dataset": "jaxrl/x/y-v0",
           "config": {}, "config_hash": "abc", "seeds": 3, "versions": {},
           "steps": 10, "eval_episodes": 2, "wall_s": 1.0, "compile_s": 2.0,
           "hardware": {"platform": "cpu", "cpu": "cpu", "cores": 2},
           "final": [{"seed": 0, "score": 10.0}, {"seed": 1, "score": 30.0},
                     {"seed": 2, "score": float("nan")}],
           "rows": [{"seed": s, "step": st, "score": v} for s, st, v in
                    [(0, 5, 15.0), (0, 10, 10.0), (1, 5, 20.0), (1, 10, 30.0),
                     (2, 5, 50.0), (2, 10, float("nan"))]]}
    (tmp_path / "runs" / "bc").mkdir(parents=True)
    (tmp_path / "runs" / "bc" / "abc.json").write_text(json.dumps(run))
    assert cli(["table", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)]) == 0
    table = (tmp_path / "policies.md").read_text()
    # best during training: seed 0 15, seed 1 30; the diverged seed 2 is left out
    assert "| jaxrl/x/y-v0 | bc | abc | - | 20.0 ± 10.0 (1 diverged) | 22.5 ± 7.5 | 3 |" in table
