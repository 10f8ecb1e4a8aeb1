import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("DIFFRL_TEST_JAX_CACHE") != "1":
    # off from jax's import on, as `python -m bench claims` does for the backbone claim
    # (switched off only after the import, that claim still segfaulted: bench/jaxcache.py)
    os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
# A test's time is mostly XLA compiling small programs once. With LLVM at -O1 instead of
# XLA's default they compile faster and run about as fast (2-core AVX2 EPYC: a tiny U-Net's
# parameter init 16 s -> 3.7 s; Diffusion-QL's bandit training program 32 s -> 25 s to
# compile, 15 to 18 s either way to run, where -O0 runs it in 60 s; with the finished-cell
# change of the same commit, the default test run 27.7 -> 22.1 min). The HLO passes are the
# same, the last bits of the floats are not (a Pendulum dataset built at -O1 has another
# SHA-256): tests compare results of one run with each other, never with results files the
# harness wrote outside the tests, which keeps XLA's default; a few slow tests check committed
# agents and published reference scores, within tolerances far wider than such bits.
# Subprocesses the tests start inherit the flag. DIFFRL_TEST_XLA_DEFAULT=1 keeps XLA's
# default, an optimisation level already in XLA_FLAGS the level given. (Timings: CPU; on a GPU
# the flag also applies to its kernels' LLVM code.)
if (os.environ.get("DIFFRL_TEST_XLA_DEFAULT") != "1"
        and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=1").strip()

import pytest  # noqa: E402

import jax  # noqa: E402

from bench import jaxcache  # noqa: E402

# JAX's persistent compilation cache is off in the tests unless DIFFRL_TEST_JAX_CACHE=1: on a
# cold cache (a clean clone: CI) writing some executables segfaults inside
# `compilation_cache.put_executable_and_time` (three times so far, on two planner tests; with
# the cache off that code never runs), and a cold cache saves little within one run. The harness commands the
# tests call keep the flag as set here.
if os.environ.get("DIFFRL_TEST_JAX_CACHE") == "1":
    jaxcache.enable()
else:
    jax.config.update("jax_enable_compilation_cache", False)


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory):
    """Every test writes datasets (and behaviour agents) into a private folder."""
    root = tmp_path_factory.mktemp("minari") / "datasets"
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session", autouse=True)
def checkpoint_root(tmp_path_factory):
    """Training checkpoints of runs that name no folder go to a private one too, not the
    clone's `.cache/checkpoints`: `make test` runs test files in parallel processes, and two of
    them must never share (or resume) a cell's checkpoint. A test that sets the folder itself
    (argument, `DIFFRL_CHECKPOINTS` or its own monkeypatch) still wins."""
    from bench import train

    root = tmp_path_factory.mktemp("checkpoints")
    with pytest.MonkeyPatch.context() as mp:   # read by train.checkpoint_root, for every run
        mp.setattr(train, "CHECKPOINTS", root)
        mp.delenv("DIFFRL_CHECKPOINTS", raising=False)   # a developer's own folder, too
        yield root


@pytest.fixture(scope="session", autouse=True)
def adhoc_results(tmp_path_factory):
    """`bench train` and `bench evaluate` called without --out write their files into a
    private folder too, not the clone's `.cache/runs` and `.cache/evals`: a file left there by
    an earlier `make test`, on data built with other floats, would refuse the next run's."""
    from bench import cli

    root = tmp_path_factory.mktemp("adhoc")
    with pytest.MonkeyPatch.context() as mp:   # read when the CLI's parser is built
        mp.setattr(cli, "ADHOC", root / "runs")
        mp.setattr(cli, "EVALS", root / "evals")
        yield root


@pytest.fixture(scope="session")
def random_pendulum():
    """`make(dataset_id, transitions, key) -> dataset_id`: a Minari dataset of Pendulum-v1 under
    the uniform random policy, written once per id into the session's datasets folder. Tests
    that need other sizes or keys give their own id (the folder is shared within a process)."""
    import numpy as np

    import envs
    from envs.datasets import builder, minari_io

    def make(dataset_id: str, transitions: int, key) -> str:
        if not minari_io.exists(dataset_id):
            env = envs.make("Pendulum-v1")
            eps = builder.collect(env, builder._random_policy(env), None, key, transitions)
            minari_io.write(dataset_id, eps, obs_low=-np.inf, obs_high=np.inf, act_low=-2.0,
                            act_high=2.0, ref_min_score=env.spec.ref_min_score,
                            ref_max_score=env.spec.ref_max_score, algorithm_name="random",
                            description="test", extra_metadata={"env_id": "Pendulum-v1"})
        return dataset_id
    return make
