"""Offline datasets: Minari round trip, quality levels, atomic builds, bad input, corruption."""
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bench.cli import main as cli
from envs import datasets
from envs.datasets import builder as build_mod
from envs.datasets import minari_io
from envs.datasets.minari_io import DatasetError


def _maze_episodes(n=3000, seed=0):
    env = envs.make("maze2d-umaze")
    return build_mod.collect_maze(env, jax.random.PRNGKey(seed), n)


def _write(ds_id, episodes):
    env = envs.make("maze2d-umaze")
    return minari_io.write(ds_id, episodes, obs_low=-np.inf, obs_high=np.inf,
                           act_low=-1.0, act_high=1.0, ref_min_score=env.spec.ref_min_score,
                           ref_max_score=env.spec.ref_max_score, algorithm_name="test",
                           description="test", extra_metadata={"env_id": "maze2d-umaze"})


def test_collected_episodes_are_consistent():
    eps = _maze_episodes()
    assert sum(len(e["actions"]) for e in eps) >= 3000
    for e in eps:
        n = len(e["actions"])
        assert e["observations"].shape == (n + 1, 4)
        assert e["rewards"].shape == e["terminations"].shape == e["truncations"].shape == (n,)
        # exactly one end per episode, at its last step
        ends = e["terminations"] | e["truncations"]
        assert ends[-1] and not ends[:-1].any()
        assert n <= 300


def test_collection_runs_a_policy_with_a_carry_as_evaluation_does():
    """A Policy whose carry counts the steps of its episode and acts with it: collection
    starts the carry afresh at every episode (Pendulum times out at 200 steps), unless told
    to keep it, as the Maze2D controller keeps its goal."""
    from envs.evaluation import Policy

    env = envs.make("Pendulum-v1")
    counter = Policy(lambda params, obs, task, key: jnp.zeros((), jnp.int32),
                     lambda params, t, obs, key: (params * t[None].astype(jnp.float32), t + 1))
    eps = build_mod.collect(env, counter, jnp.float32(0.005), jax.random.PRNGKey(0), 2000)
    full = [e for e in eps if e["truncations"][-1] and len(e["actions"]) == 200]
    assert len(full) == 8 and len(eps) == 16  # 8 lanes of 250 steps: 200, then 50
    for e in eps:
        np.testing.assert_allclose(e["actions"][:, 0], 0.005 * np.arange(len(e["actions"])),
                                   rtol=1e-6)
    kept = build_mod.collect(env, counter, jnp.float32(0.005), jax.random.PRNGKey(0), 2000,
                             carry_across_episodes=True)
    second = [e for e in kept if len(e["actions"]) == 50]
    assert second and all(e["actions"][0, 0] == pytest.approx(1.0) for e in second)


def test_round_trip_through_minari_gives_identical_arrays():
    eps = _maze_episodes(seed=1)
    _write("test/roundtrip/a-v0", eps)
    data = datasets.load("test/roundtrip/a-v0")
    assert data.num_episodes == len(eps)
    for a, b in zip(eps, data.raw_episodes):
        for f in minari_io.FIELDS:
            np.testing.assert_array_equal(a[f], b[f])
    # the flat view lines up obs and next_obs within each episode
    tr = data.transitions
    n = data.num_transitions
    assert tr["obs"].shape == tr["next_obs"].shape == (n, 4)
    np.testing.assert_array_equal(tr["next_obs"][: len(eps[0]["actions"])],
                                  eps[0]["observations"][1:])
    # the padded view holds the same numbers under its mask
    ep = data.episodes
    assert ep["mask"].sum() == n
    np.testing.assert_array_equal(ep["actions"][ep["mask"]], tr["action"])
    np.testing.assert_array_equal(ep["rewards"][ep["mask"]], tr["reward"])


def test_dataset_next_obs_matches_the_true_dynamics():
    env = envs.make("maze2d-umaze")
    tr = datasets.load("test/roundtrip/a-v0").transitions

    @jax.jit
    def replay(o, a):
        return env.step(jax.random.PRNGKey(0), env.state_from_obs(o), a)[5]["final_obs"]

    pred = jax.vmap(replay)(tr["obs"][:500], tr["action"][:500])
    np.testing.assert_allclose(np.asarray(pred), tr["next_obs"][:500], atol=1e-5)


def test_same_seed_same_data():
    a, b = _maze_episodes(seed=4), _maze_episodes(seed=4)
    assert minari_io.content_hash(a) == minari_io.content_hash(b)
    assert minari_io.content_hash(a) != minari_io.content_hash(_maze_episodes(seed=5))


def test_interrupted_write_leaves_nothing_visible_and_rerun_succeeds(monkeypatch):
    from minari.dataset._storages import hdf5_storage

    eps = _maze_episodes(seed=2)
    real = hdf5_storage.HDF5Storage.update_episodes

    def dies(self, episodes):
        raise KeyboardInterrupt  # the user pressed Ctrl-C mid-write

    monkeypatch.setattr(hdf5_storage.HDF5Storage, "update_episodes", dies)
    with pytest.raises(KeyboardInterrupt):
        _write("test/interrupted/a-v0", eps)
    assert not minari_io.exists("test/interrupted/a-v0")
    assert not minari_io.dataset_path("test/interrupted/a-v0").exists()
    assert not any((minari_io.datasets_root() / ".staging").iterdir())
    monkeypatch.setattr(hdf5_storage.HDF5Storage, "update_episodes", real)
    _write("test/interrupted/a-v0", eps)
    assert datasets.load("test/interrupted/a-v0").num_episodes == len(eps)


def _hdf5(ds_id):
    return next((minari_io.dataset_path(ds_id) / "data").glob("*.hdf5"))


def test_the_episodes_cache_gives_minaris_episodes_and_gives_way_when_stale(monkeypatch):
    """`read` serves the episodes from the numpy file beside the data, equal field by field
    to Minari's own reading of the HDF5; a cache made from another HDF5 file, or damaged,
    is passed over for the HDF5 data and made again."""
    import minari

    eps = _maze_episodes(seed=7)
    path = _write("test/cached/a-v0", eps)
    cache = path / minari_io.EPISODES_CACHE
    assert cache.is_file()  # written with the dataset
    with minari_io._minari_root(minari_io.datasets_root()):
        truth = [{f: getattr(ep, f) for f in minari_io.FIELDS}
                 for ep in minari.load_dataset("test/cached/a-v0").iterate_episodes()]

    def same(got):
        assert len(got) == len(truth) == len(eps)
        for g, t in zip(got, truth):
            for f in minari_io.FIELDS:
                assert g[f].dtype == (bool if f in ("terminations", "truncations")
                                      else np.float32), f
                np.testing.assert_array_equal(g[f], t[f])

    real_load = minari.load_dataset

    def unused(*a, **k):
        raise AssertionError("read the HDF5 file although the cache is current")

    monkeypatch.setattr(minari, "load_dataset", unused)
    same(minari_io.read("test/cached/a-v0")[0])
    monkeypatch.setattr(minari, "load_dataset", real_load)

    # the HDF5 file rewritten (same data, another mtime): the stale cache is passed over
    f = _hdf5("test/cached/a-v0")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert minari_io._read_episodes_cache(path) is None
    same(minari_io.read("test/cached/a-v0")[0])
    assert minari_io._read_episodes_cache(path) is not None  # made again by that read

    # a damaged cache: read from the HDF5 file, no error
    cache.write_bytes(cache.read_bytes()[:100])
    assert minari_io._read_episodes_cache(path) is None
    same(datasets.load("test/cached/a-v0").raw_episodes)

    # a cache whose stamp is current but whose data differs fails our content hash: the HDF5
    # data is served and the cache made again from it
    with np.load(cache) as z:
        arrays = dict(z)
    arrays["rewards"] = arrays["rewards"] + 1.0
    with open(cache, "wb") as fh:
        np.savez(fh, **arrays)
    assert minari_io._read_episodes_cache(path) is not None
    same(minari_io.read("test/cached/a-v0")[0])
    same(minari_io._read_episodes_cache(path))
    # `data list --verify` checks the HDF5 file itself, whatever the cache holds
    monkeypatch.setattr(minari_io, "_read_episodes_cache", unused)
    (row,) = [r for r in datasets.list_datasets(verify=True)
              if r["dataset_id"] == "test/cached/a-v0"]
    assert row["verified"] and not row.get("error")


def test_truncated_file_is_refused_naming_the_file():
    _write("test/truncated/a-v0", _maze_episodes(seed=3))
    f = _hdf5("test/truncated/a-v0")
    size = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DatasetError, match=f"corrupted or truncated.*{f.name}"):
        datasets.load("test/truncated/a-v0")


def test_changed_data_is_refused_by_the_content_hash():
    _write("test/tampered/a-v0", _maze_episodes(seed=6))
    f = _hdf5("test/tampered/a-v0")
    with h5py.File(f, "r+") as h:
        h["episode_0"]["rewards"][0] += 1.0
    with pytest.raises(DatasetError, match=f"does not match its content hash.*{f.name}|"
                                           f"{f.name}.*does not match its content hash"):
        datasets.load("test/tampered/a-v0")


def test_unknown_ids_and_levels_give_one_line_errors(capsys):
    cases = [
        (["data", "build", "--env", "hoper", "--quality", "medium"], "unknown env id 'hoper'"),
        (["data", "build", "--env", "hopper", "--quality", "meduim"],
         "unknown quality level 'meduim' for hopper; levels: random, medium"),
        (["data", "build", "--tier", "huge"], "unknown tier 'huge'; tiers: quick, medium, full"),
        (["data", "build", "--env", "maze2d-umaze", "--quality", "large"],
         "unknown quality level 'large' for maze2d-umaze; levels: umaze"),
    ]
    for argv, msg in cases:
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and msg in err, err
    with pytest.raises(DatasetError, match="not built yet.*--env hopper --quality expert"):
        datasets.load("jaxrl/hopper/expert-v0")
    with pytest.raises(DatasetError, match="unknown dataset id 'jaxrl/hopper/best-v0'"):
        datasets.load("jaxrl/hopper/best-v0")
    with pytest.raises(DatasetError, match="minari download mujoco/hopper/medium-v0"):
        datasets.load("mujoco/hopper/medium-v0")


def test_public_minari_dataset_loads_when_present():
    """A dataset written by Minari's own collector (as public ones are) loads the same way."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for i in range(3):
        n = 10 + i
        buffers.append(EpisodeBuffer(
            id=i, observations=rng.normal(size=(n + 1, 3)).astype(np.float32),
            actions=rng.normal(size=(n, 1)).astype(np.float32),
            rewards=rng.normal(size=n), terminations=np.eye(n, dtype=bool)[-1],
            truncations=np.zeros(n, bool)))
    box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    minari.create_dataset_from_buffers("mujoco/fake/medium-v0", buffers, env=None,
                                       observation_space=box,
                                       action_space=gym.spaces.Box(-1, 1, (1,), np.float32))
    data = datasets.load("mujoco/fake/medium-v0")
    assert data.env_id is None and data.num_transitions == 10 + 11 + 12
    np.testing.assert_allclose(data.transitions["action"][:10], buffers[0].actions)


def _gym_hopper_dataset(ds_id, episodes=3, **gym_kwargs):
    """A dataset in exactly the format of Minari's mujoco/hopper/* (Minari's own writer,
    gymnasium's Hopper-v5 env spec, D4RL-style reference scores), recorded from gymnasium."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Hopper-v5", **gym_kwargs)
    rng = np.random.default_rng(0)
    buffers = []
    for i in range(episodes):
        obs = [env.reset(seed=i)[0]]
        acts, rews, terms = [], [], []
        while True:
            a = rng.uniform(-1, 1, 3).astype(np.float32)
            o, r, term, trunc, _ = env.step(a)
            obs.append(o), acts.append(a), rews.append(r), terms.append(term)
            if term or trunc:
                break
        buffers.append(EpisodeBuffer(id=i, observations=np.stack(obs), actions=np.stack(acts),
                                     rewards=np.array(rews), terminations=np.array(terms),
                                     truncations=np.zeros(len(acts), bool)))
    minari.create_dataset_from_buffers(ds_id, buffers, env=env, algorithm_name="random",
                                       ref_min_score=-20.3, ref_max_score=3234.3)
    return buffers


def test_public_mujoco_dataset_trains_on_the_matching_mjx_env(capsys):
    """A Minari mujoco/hopper dataset names gymnasium's Hopper-v5: it loads on our
    mujoco/Hopper-v5, is normalised by its own reference scores, and the harness accepts it;
    one recorded with other gymnasium arguments, or one not on this machine, is one line."""
    from bench import train

    buffers = _gym_hopper_dataset("mujoco/hopper/tiny-v0")
    data = datasets.load("mujoco/hopper/tiny-v0")
    assert data.env_id == "mujoco/Hopper-v5"
    assert data.reference_scores == (-20.3, 3234.3)
    assert data.provenance["reference_scores"] == [-20.3, 3234.3]
    np.testing.assert_allclose(data.transitions["obs"][:len(buffers[0].actions)],
                               buffers[0].observations[:-1], rtol=1e-6)
    cfg = train.make_config("bc", 2, {"batch_size": "8"}, data.dataset_id)
    env, _, _ = train.preflight("bc", data, 1, cfg)
    assert env.env_id == "mujoco/Hopper-v5"
    assert float(env.normalize(3234.3)) == pytest.approx(100.0)
    _gym_hopper_dataset("mujoco/hopper/wide-v0", episodes=1,
                        exclude_current_positions_from_observation=False)
    with pytest.raises(DatasetError, match=r"observations \(12,\).*has \(11,\)"):
        datasets.load("mujoco/hopper/wide-v0")
    assert cli(["train", "--algo", "bc", "--dataset", "mujoco/hopper/medium-v0"]) == 2
    assert "minari download mujoco/hopper/medium-v0" in capsys.readouterr().err


def test_maze_dataset_build_and_list(capsys):
    ds_id = build_mod.build("maze2d-umaze", "umaze", seed=0, n_transitions=2000,
                            log=lambda m: None)
    assert ds_id == "jaxrl/maze2d/umaze-v0"
    meta = minari_io.read_metadata(ds_id)
    ours = meta["diffrl"]
    assert ours["env_id"] == "maze2d-umaze" and ours["generator_seed"] == 0
    assert meta["ref_min_score"] == envs.spec("maze2d-umaze").ref_min_score
    assert len(ours["content_hash"]) == 64 and ours["versions"]["jax"]
    # building again is a no-op, and the list shows it
    assert build_mod.build("maze2d-umaze", "umaze", log=lambda m: None) == ds_id
    assert cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "jaxrl/maze2d/umaze-v0" in out and "maze2d-umaze" in out


@pytest.fixture(scope="module")
def mountaincar_levels():
    return {lvl: datasets.load(build_mod.build("MountainCarContinuous-v0", lvl,
                                               n_transitions=20_000, log=lambda m: None))
            for lvl in ("random", "medium", "expert")}


def test_quality_levels_random_medium_expert_are_ordered(mountaincar_levels):
    scores = {lvl: d.metadata["diffrl"]["behaviour_normalized_score"]
              for lvl, d in mountaincar_levels.items()}
    assert abs(scores["random"]) < 10, scores
    assert 15 < scores["medium"] < 60, scores
    assert 85 < scores["expert"] < 115, scores


@pytest.mark.slow
def test_ppo_pendulum_levels_are_ordered(monkeypatch, tmp_path):
    """The PPO path end to end: train, snapshot, score, build; ~2 minutes on 2 cores. The
    committed agents are hidden, so PPO really trains."""
    from envs.datasets import behaviour

    monkeypatch.setattr(behaviour, "REPO_AGENTS", tmp_path / "no-agents")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    scores = {}
    for lvl in ("random", "medium", "expert", "medium-replay", "medium-expert"):
        ds = datasets.load(build_mod.build("Pendulum-v1", lvl, n_transitions=20_000,
                                           log=lambda m: None))
        scores[lvl] = ds.metadata["diffrl"]["behaviour_normalized_score"]
    assert abs(scores["random"]) < 10, scores
    assert 15 < scores["medium"] < 60, scores
    assert 85 < scores["expert"] < 115, scores
    assert scores["medium"] < scores["medium-expert"] < scores["expert"], scores
    assert scores["medium-replay"] < scores["medium"] + 10, scores
