"""Online algorithms: SAC (REDQ's SAC setting) learns Pendulum, its replay buffer and
exploration, and online SynthER's mixed batches and generator retraining; both through the
harness with `--env`."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from algos import sac, sac_synther
from algos.config import ConfigError, apply_overrides
from bench import train
from bench.cli import main as cli


def test_buffer_is_a_ring_that_keeps_the_newest_rows():
    buf = sac.Buffer.create(4, 2, 1)
    for i in range(6):
        buf = buf.add(jnp.full(2, i), jnp.full(1, i), jnp.float32(i), jnp.full(2, i + 1),
                      jnp.asarray(False))
    assert int(buf.size) == 4 and int(buf.ptr) == 2
    assert sorted(np.asarray(buf.reward).tolist()) == [2, 3, 4, 5]
    b = buf.sample(jax.random.PRNGKey(0), 256)
    assert set(np.asarray(b["reward"]).tolist()) == {2, 3, 4, 5}
    np.testing.assert_array_equal(b["next_obs"][:, 0], b["obs"][:, 0] + 1)


@pytest.fixture(scope="module")
def pendulum():
    return envs.make("Pendulum-v1")


def _config(module, **sets):
    return apply_overrides(module.Config(), {k: str(v) for k, v in sets.items()})


def test_exploration_is_uniform_and_truncation_is_not_terminal(pendulum):
    """Before `start_steps` the actions are uniform in [-1, 1] and nothing is updated;
    Pendulum's time-limit ends (every 200 steps) are stored as non-terminal."""
    config = _config(sac, steps=1000, eval_every=1000, start_steps=999, hidden="8,8",
                     eval_episodes=1)
    train_ = sac.make_train(config, None, pendulum)
    state = train_.init(jax.random.PRNGKey(0))
    algo, metrics = jax.lax.scan(train_.update, state.algo,
                                 jax.random.split(jax.random.PRNGKey(1), 600))
    a = np.asarray(algo.buffer.action[:600, 0])
    assert abs(a.mean()) < 0.08 and abs(a.std() - 1 / np.sqrt(3)) < 0.05
    assert not np.asarray(algo.buffer.terminal).any()
    assert int(algo.steps) == 600 and float(np.abs(metrics["critic_loss"]).max()) == 0.0
    jax.tree_util.tree_map(np.testing.assert_array_equal, algo.actor, state.algo.actor)


def test_sac_learns_pendulum(tmp_path):
    """2 seeds, 8000 env steps (1000 random): the mean normalised score passes 50 (a uniform
    random policy scores 0, a sign error in the actor's or the critic's loss stays near it)."""
    res = train.run("sac", "env:Pendulum-v1", 2, 8000, {
        "eval_every": "4000", "hidden": "64,64", "start_steps": "1000", "batch_size": "128",
        "eval_episodes": "5"}, out=tmp_path, checkpoints=tmp_path / "ckpt", log=lambda m: None)
    scores = [r["score"] for r in res["final"]]
    assert np.mean(scores) > 50, scores
    assert res["data"]["online_env"] == "Pendulum-v1" and res["data"]["content_hash"] is None
    assert res["dataset"] == "env:Pendulum-v1"
    assert (tmp_path / "sac" / "env_Pendulum-v1").is_dir()


def test_learner_schedules_actor_updates_as_redq(pendulum):
    """UTD 4 with policy_delay 2: the actor moves on updates 2 and 4 of the 4, the critic on
    all; with UTD 1 both move every step."""
    for utd, delay in ((4, 2), (1, 20)):
        config = _config(sac, utd=utd, policy_delay=delay, hidden="8,8", start_steps=0,
                         batch_size=8)
        init, learn = sac.make_learner(config, 3, 1, -1.0)
        nets = init(jax.random.PRNGKey(0))

        def batch(k):
            return {"obs": jax.random.normal(k, (8, 3)), "action": jnp.zeros((8, 1)),
                    "reward": jnp.ones(8), "next_obs": jnp.zeros((8, 3)),
                    "terminal": jnp.zeros(8)}
        new, m = learn(nets, batch, jax.random.PRNGKey(1))
        assert int(new[4][0].count) == utd // min(delay, utd)   # the actor's Adam steps
        assert int(new[5][0].count) == utd                      # the critic's
        assert {"critic_loss", "actor_loss", "alpha", "entropy", "q"} <= set(m)


def test_mixed_batches_have_the_configured_synthetic_share():
    real = sac.Buffer.create(100, 1, 1)
    syn = sac.Buffer.create(200, 1, 1)
    for _ in range(50):
        real = real.add(jnp.zeros(1), jnp.zeros(1), jnp.float32(1.0), jnp.zeros(1),
                        jnp.asarray(False))
    b = sac_synther.mixed_batch(real, syn, jax.random.PRNGKey(0), 256, 0.5)
    assert float(b["reward"].mean()) == 1.0            # no synthetic rows yet: all real
    for _ in range(100):
        syn = syn.add(jnp.zeros(1), jnp.zeros(1), jnp.float32(-1.0), jnp.zeros(1),
                      jnp.asarray(False))
    # fewer synthetic rows than the batch's synthetic share: still all real (the authors' rule)
    b = sac_synther.mixed_batch(real, syn, jax.random.PRNGKey(0), 256, 0.5)
    assert float(b["reward"].mean()) == 1.0
    for _ in range(100):
        syn = syn.add(jnp.zeros(1), jnp.zeros(1), jnp.float32(-1.0), jnp.zeros(1),
                      jnp.asarray(False))
    for ratio in (0.5, 0.25):
        b = sac_synther.mixed_batch(real, syn, jax.random.PRNGKey(1), 256, ratio)
        assert float((b["reward"] < 0).mean()) == ratio


def test_online_synther_retrains_and_fills_its_synthetic_buffer(pendulum, tmp_path):
    sets = {**sac_synther.TINY, "steps": "400", "eval_every": "200", "retrain_every": "200"}
    config = apply_overrides(sac_synther.Config(), sets)
    train_ = sac_synther.make_train(config, None, pendulum)
    state, metrics = jax.jit(train_)(jax.random.PRNGKey(0))
    algo = state.algo
    assert int(algo.retrains) == 2 and int(algo.synthetic.size) == 64
    # the second period trained on the first retrain's rows
    assert np.asarray(metrics["synthetic_rows"]).tolist() == [0.0, 64.0]
    assert np.isfinite(np.asarray(algo.synthetic.obs)).all()
    assert set(np.unique(np.asarray(algo.synthetic.terminal))) <= {0.0, 1.0}
    assert np.abs(np.asarray(algo.synthetic.action)).max() <= 1.0
    # and through the harness, resumable like any cell
    argv = ["train", "--algo", "sac_synther", "--env", "Pendulum-v1", "--seeds", "2",
            "--out", str(tmp_path)] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    assert cli(argv) == 0
    (path,) = (tmp_path / "sac_synther" / "env_Pendulum-v1").glob("*.json")
    assert json.loads(path.read_text())["complete"]


@pytest.mark.parametrize("module, sets, message", [
    (sac, {"utd": 20, "policy_delay": 3}, "must divide utd"),
    (sac, {"start_steps": 200000}, "start_steps must be in"),
    (sac, {"num_min": 3}, "num_min must be in"),
    (sac_synther, {"retrain_every": 5000}, "must equal eval_every"),
    (sac_synther, {"generator.diffusion.sampler": "ddpm"}, "ddpm runs all"),
])
def test_bad_configs_are_one_line(module, sets, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(module.Config(), {k: str(v) for k, v in sets.items()})


def test_online_and_offline_sources_are_not_mixed_up(capsys):
    for argv, message in [
        (["train", "--algo", "sac", "--dataset", "jaxrl/pendulum/medium-expert-v0"],
         "collects its own data"),
        (["train", "--algo", "td3_bc", "--env", "Pendulum-v1"], "offline algorithm"),
        (["train", "--algo", "sac"], "one of them"),
        (["train", "--algo", "sac", "--env", "Pendulumm-v1"], "Pendulumm-v1"),
    ]:
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
