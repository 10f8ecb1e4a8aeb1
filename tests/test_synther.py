"""SynthER: the generator against the authors' architecture and EMA, its fidelity on a
closed-form linear system against noise augmentation, derived datasets through the CLI
(provenance, reuse, resume, refusals), training on them unchanged, and the dynamics-error
command."""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import synther
from algos.config import apply_overrides
from bench import augment
from bench.cli import main as cli
from envs import datasets
from envs.datasets import derived
from envs.datasets.minari_io import DatasetError

SOURCE = "test/pendulum/random-v0"
TINY = [f"{k}={v}" for k, v in synther.TINY.items()]


def _sets(items):
    return [a for kv in items for a in ("--set", kv)]


@pytest.fixture(scope="module")
def source(random_pendulum):
    """2,000 real Pendulum transitions of the uniform random policy, as a Minari dataset."""
    return datasets.load(random_pendulum(SOURCE, 2000, jax.random.PRNGKey(0)))


# --- the generator against the authors' code ---------------------------------------------------
def authors_param_count(d, width=2048, depth=6, dim_t=128, fourier=16):
    """`ResidualMLPDenoiser(d_in=d)` of synther/diffusion/denoiser_network.py, counted from its
    layers: proj, time MLP (fourier + 1 -> dim_t -> dim_t), ResidualMLP (dim_t -> width, depth
    blocks of width x width, width -> d), and the fourier weights (a parameter, not trained)."""
    return ((d * dim_t + dim_t) + ((fourier + 1) * dim_t + dim_t) + (dim_t * dim_t + dim_t)
            + (dim_t * width + width) + depth * (width * width + width) + (width * d + d)
            + fourier // 2)


@pytest.mark.parametrize("width", [1024, 2048])
def test_parameter_count_equals_the_authors(width):
    d = 2 * 17 + 6 + 2   # halfcheetah's transition: obs 17, action 6, reward, terminal
    config = apply_overrides(synther.Config(), {"diffusion.width": width}, typed=True)
    gen = synther.Generator(config, d)
    shapes = jax.eval_shape(lambda: gen.net.init(jax.random.PRNGKey(0), jnp.zeros((1, d)),
                                                 jnp.zeros((1,))))
    n = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
    assert n == authors_param_count(d, width)


def test_ema_follows_ema_pytorch():
    """Our EMA against a line-by-line transcription of ema_pytorch 0.2.1's `EMA.update`."""
    config = synther.Config()
    ema_ref, ema = 0.0, jnp.zeros(())
    counter, initted = 0, False
    for k in range(1, 400):
        p = float(np.sin(k))          # the weights after optimiser step k
        step = counter                # ema_pytorch: step = self.step; self.step += 1
        counter += 1
        if step % 10 == 0:
            if step <= 100 or not initted:
                ema_ref = p
                initted = step > 100
            if step > 100:
                epoch = max(counter - 100 - 1, 0)
                decay = 0.0 if epoch <= 0 else min(1 - (1 + epoch) ** (-2 / 3), 0.995)
                ema_ref = ema_ref + (1 - decay) * (p - ema_ref)
        ema = synther.ema_update(config, jnp.asarray(k - 1), jnp.asarray(p), ema)
        assert float(ema) == pytest.approx(ema_ref, abs=1e-6), k


def test_inputs_and_split_round_trip():
    rng = np.random.default_rng(0)
    arrays = {"obs": rng.normal(3, 2, (50, 3)), "action": rng.normal(size=(50, 1)),
              "reward": rng.normal(size=50), "next_obs": rng.normal(size=(50, 3)),
              "terminated": rng.random(50) < 0.2}
    x, norm = synther.inputs(arrays)
    assert x.shape == (50, 9)
    np.testing.assert_allclose(norm.mean[:3], arrays["obs"].mean(0), rtol=1e-5)
    # torch's std is unbiased; the terminal column is not normalised
    np.testing.assert_allclose(norm.std[:3], arrays["obs"].std(0, ddof=1) + 1e-5, rtol=1e-5)
    assert float(norm.mean[-1]) == 0.0 and float(norm.std[-1]) == 1.0
    back = synther.split(np.asarray(norm.unnormalize(norm.normalize(x))), 3, 1)
    for k in ("obs", "action", "reward", "next_obs"):
        np.testing.assert_allclose(back[k], arrays[k], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(back["terminated"], arrays["terminated"])


# --- fidelity on a closed-form system -------------------------------------------------------------
A = np.array([[0.9, 0.2], [-0.2, 0.9]], np.float32)
B = np.array([[0.0], [0.5]], np.float32)


def _linear_data(n, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return {"obs": obs, "action": act, "reward": -(obs ** 2).sum(1),
            "next_obs": obs @ A.T + act @ B.T, "terminated": np.zeros(n, bool)}


def _dynamics_error(a):
    return np.linalg.norm(a["next_obs"] - (a["obs"] @ A.T + a["action"] @ B.T), axis=1)


def test_generator_reproduces_linear_dynamics_better_than_noise():
    """x' = A x + B a, r = -|x|^2: SynthER's transitions obey the dynamics (median error a third
    of 0.1-std Gaussian perturbation's; a model that ignored the dependence of x' on x would
    be off by ~1.4) and keep the marginals."""
    data = _linear_data(4096)
    x, norm = synther.inputs(data)
    config = apply_overrides(synther.Config(), {
        "diffusion.width": 128, "diffusion.depth": 3, "diffusion.steps": 32, "steps": 3000,
        "small_batch_size": 256, "sample_batch": 2000, "ema_after": 10}, typed=True)
    gen = synther.Generator(config, x.shape[1])
    state, _ = gen.run(gen.init(jax.random.PRNGKey(0), norm), jnp.asarray(x),
                       jax.random.PRNGKey(1), config.steps)
    syn = synther.split(gen.sample(state, jax.random.PRNGKey(2), 2000), 2, 1)
    noise = augment.perturb(augment.NoiseConfig(scale=0.1), data, 2000)
    e_syn, e_noise = np.median(_dynamics_error(syn)), np.median(_dynamics_error(noise))
    assert e_syn < 0.5 * e_noise, (e_syn, e_noise)
    assert np.median(np.abs(syn["reward"] + (syn["obs"] ** 2).sum(1))) < 0.3
    np.testing.assert_allclose(syn["obs"].std(0), 1.0, atol=0.1)
    np.testing.assert_allclose(syn["obs"].mean(0), 0.0, atol=0.1)
    assert not syn["terminated"].any()
    for k in ("obs", "action", "reward", "next_obs"):   # within the data's range, give or take
        z = (syn[k] - data[k].mean(0)) / data[k].std(0)
        assert np.abs(z).max() < 8, (k, np.abs(z).max())
    assert np.abs(syn["action"]).max() < 1.5            # the data's actions lie in [-1, 1]


# --- derived datasets through the CLI -------------------------------------------------------------
def _only_id(prefix):
    root = datasets.datasets_root()
    found = sorted(str(p.parent.relative_to(root)) for p in root.rglob("data")
                   if str(p.parent.relative_to(root)).startswith(prefix))
    assert len(found) == 1, found
    return found[0]


def test_synther_dataset_has_the_data_shapes_bounds_and_provenance(source, capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("DIFFRL_CHECKPOINTS", str(tmp_path / "ckpt"))
    assert cli(["augment", SOURCE, *_sets(TINY)]) == 0
    out_id = _only_id("test/pendulum/random-synther-")
    data = datasets.load(out_id)               # content hash verified
    tr, real = data.transitions, source.transitions
    assert data.num_transitions == synther.TINY["size"] and data.num_episodes == 0
    assert tr["obs"].shape == (512, 3) and tr["action"].shape == (512, 1)
    assert tr["reward"].shape == tr["terminated"].shape == (512,)
    assert set(np.unique(tr["terminated"])) <= {False, True}
    assert np.isfinite(tr["obs"]).all() and np.isfinite(tr["reward"]).all()
    assert real["obs"].shape[1] == tr["obs"].shape[1]
    meta = data.metadata["diffrl"]
    d = meta["derived"]
    assert d["source_id"] == SOURCE and d["source_content_hash"] == source.content_hash
    assert d["generated"] == 512 and d["real"] == 0 and d["method"] == "synther"
    assert d["config"]["diffusion"]["width"] == 32 and d["checkpoint_sha256"]
    assert meta["env_id"] == "Pendulum-v1" and meta["code"]["commit"]
    assert data.metadata["ref_max_score"] == source.metadata["ref_max_score"]
    assert meta["source_episode_returns"] == pytest.approx(source.episode_returns)
    assert data.provenance["derived_from"]["source_id"] == SOURCE
    # trajectory models are refused in one line: these rows are not episodes
    with pytest.raises(DatasetError, match="not episodes"):
        data.episodes
    # listed like any dataset
    capsys.readouterr()
    assert cli(["data", "list"]) == 0
    assert out_id in capsys.readouterr().out
    # the same command finds it; another size reuses the trained generator
    assert cli(["augment", SOURCE, *_sets(TINY)]) == 0
    assert "exists" in capsys.readouterr().out
    assert cli(["augment", SOURCE, *_sets(t for t in TINY if not t.startswith("size=")),
                "--set", "size=300"]) == 0
    log = capsys.readouterr().out
    assert "generator restored" in log and "step 20/20" in log
    second = datasets.load(next(r["dataset_id"] for r in datasets.list_datasets()
                                if r["dataset_id"].startswith("test/pendulum/random-synther-")
                                and r["transitions"] == 300))
    assert second.metadata["diffrl"]["derived"]["checkpoint_sha256"] == d["checkpoint_sha256"]


def test_generator_resumes_from_its_checkpoint(source, tmp_path):
    """A generator interrupted after its step-10 checkpoint resumes to the state of an
    uninterrupted run (20 steps)."""
    config = augment.make_config("synther", None, dict(s.split("=") for s in TINY))
    assert config.steps == 20 and config.save_every == 10
    x, norm = synther.inputs(source.transitions)

    def interrupt(message):
        if "generator step" in message:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        augment.train_generator(config, x, norm, tmp_path / "a", log=interrupt)
    logs = []
    _, s_resumed, _ = augment.train_generator(config, x, norm, tmp_path / "a", logs.append)
    assert "at step 10/20" in logs[0]
    _, s_full, _ = augment.train_generator(config, x, norm, tmp_path / "b", lambda m: None)
    assert int(s_resumed.step) == int(s_full.step) == 20
    for a, b in zip(jax.tree_util.tree_leaves(s_resumed), jax.tree_util.tree_leaves(s_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_noise_mixed_dataset_keeps_the_real_rows_and_trains_td3_bc(source, capsys):
    n_real = source.num_transitions
    assert cli(["augment", SOURCE, "--method", "noise", "--set", "mode=mixed",
                "--set", f"size={n_real + 500}"]) == 0
    out_id = _only_id("test/pendulum/random-noise-")
    tr = datasets.load(out_id).transitions
    assert len(tr["obs"]) == n_real + 500
    for k in ("obs", "action", "reward", "next_obs"):
        np.testing.assert_array_equal(tr[k][:n_real], source.transitions[k])
    # perturbed rows: real actions and rewards, moved observations
    assert not np.allclose(tr["obs"][n_real:].std(0), 0)
    # any algorithm trains on it unchanged
    assert cli(["train", "--algo", "td3_bc", "--dataset", out_id, "--seeds", "1",
                "--steps", "20", "--set", "eval_every=20", "--set", "eval_episodes=1",
                "--set", "batch_size=16"]) == 0
    # the dynamics-error command: real rows exact, perturbed ones off
    capsys.readouterr()
    out = datasets.datasets_root().parent / "fidelity"
    assert cli(["fidelity", out_id, "--out", str(out)]) == 0
    result = json.loads(next(out.glob("*.json")).read_text())
    rows = {r["set"]: r for r in result["rows"]}
    assert rows["real (source)"]["next_obs_median"] < 1e-4
    assert rows["noise"]["next_obs_median"] > 100 * rows["real (source)"]["next_obs_median"]
    assert rows["noise"]["rows"] == 500
    m = result["marginal"]
    assert 0 <= m["c2st"] <= 1 and 0 < m["mmd_p"] <= 1 and m["rows"] == 500


def test_marginal_fidelity_tells_a_shifted_set_from_a_real_one():
    """Two halves of one Gaussian: MMD's p-value is not small and the classifier is near
    chance; shifting one half by one standard deviation in 2 of 7 columns is caught by both."""
    from bench import fidelity

    rng = np.random.default_rng(0)

    def sample(n, shift=0.0):
        obs = rng.normal(size=(n, 2)) + shift
        return {"obs": obs, "action": rng.normal(size=(n, 1)), "reward": rng.normal(size=n),
                "next_obs": rng.normal(size=(n, 2)), "terminated": np.zeros(n, bool)}

    real = sample(4000)
    same = fidelity.marginal(real, sample(1000), n=1000, permutations=100)
    shifted = fidelity.marginal(real, sample(1000, shift=1.0), n=1000, permutations=100)
    assert same["mmd_p"] > 0.01 and 0.4 < same["c2st"] < 0.6
    assert 0.4 < same["c2st_real_ref"] < 0.6
    assert shifted["mmd_p"] < 0.02 and shifted["c2st"] > 0.65
    assert shifted["mmd2"] > 10 * abs(same["mmd2_real_ref"])


@pytest.mark.parametrize("args, message", [
    (["--set", "mode=mixed", "--set", "size=10"], "size must exceed"),
    (["--set", "mode=both"], "mode must be one of"),
    (["--set", "diffusion.sampler=ddim", "--set", "diffusion.steps=5"], "must be 'edm'"),
    (["--set", "diffusion.backbone=unet"], "does not denoise flat"),
    (["--preset", "huge"], "unknown preset"),
    (["--method", "noise", "--set", "scale=0"], "scale must be positive"),
])
def test_bad_input_is_one_line_and_exit_2(source, capsys, args, message):
    assert cli(["augment", SOURCE, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_derived_ids_and_refusals(source, capsys):
    assert derived.derived_id("jaxrl/pendulum/medium-replay-v0", "synther", "ab12cd34") == \
        "jaxrl/pendulum/medium-replay-synther-ab12cd34-v0"
    assert cli(["augment", "jaxrl/pendulum/nope-v0"]) == 2
    assert cli(["fidelity", SOURCE]) == 2
    assert "not a derived dataset" in capsys.readouterr().err
    assert cli(["train", "--algo", "td3_bc", "--dataset",
                "jaxrl/pendulum/medium-replay-synther-00000000-v0"]) == 2
    err = capsys.readouterr().err
    assert "python -m bench augment jaxrl/pendulum/medium-replay-v0 --method synther" in err


# --- subsets and sweeps -----------------------------------------------------------------------------
def test_subset_keeps_whole_episodes_and_is_the_same_every_time(source, capsys):
    assert cli(["data", "subset", SOURCE, "--fraction", "0.25"]) == 0
    sub = datasets.load("test/pendulum/random-25pct-v0")
    n = source.num_transitions
    assert 0.25 * n <= sub.num_transitions < 0.25 * n + 200   # whole 200-step episodes
    starts = {e["observations"][0].tobytes() for e in source.raw_episodes}
    assert all(e["observations"][0].tobytes() in starts for e in sub.raw_episodes)
    assert sub.metadata["diffrl"]["derived"]["source_content_hash"] == source.content_hash
    keep = derived.choose_episodes([200] * 10, 0.25)
    np.testing.assert_array_equal(keep, derived.choose_episodes([200] * 10, 0.25))
    assert len(keep) == 3 and len(derived.choose_episodes([200] * 10, 0.25, seed=1)) == 3
    assert cli(["data", "subset", SOURCE, "--fraction", "0"]) == 2
    assert "fraction must be in (0, 1]" in capsys.readouterr().err


def test_a_sweep_refuses_derived_data_made_from_an_older_source(random_pendulum, tmp_path):
    """Subsets and augmentations found on disk are checked, through their metadata, against
    the source's current data: after the source is rebuilt with other data the sweep stops with
    one line naming every folder to delete (the stale subset and both augmentations made from
    it), and once they are deleted it makes them again."""
    import shutil

    from bench import sweep
    from envs.datasets import minari_io

    stale = "test/pendulum/stale-v0"
    random_pendulum(stale, 400, jax.random.PRNGKey(1))
    path = tmp_path / "s.toml"
    path.write_text("".join(f'''
[[group]]
algos = ["td3_bc"]
datasets = ["{stale}"]
subset = 0.5
augment = {{ method = "noise", set = {{ size = 50, scale = {scale} }} }}
seeds = 1
steps = 10
label = "TD3+BC (noise {scale})"
''' for scale in (0.1, 0.2)))
    cells = sweep.load(path).cells
    quiet = dict(log=lambda m: None)
    for c in cells:
        sweep.make_data(c, "quick", **quiet)
    subset = "test/pendulum/stale-50pct-v0"
    made = [subset] + [c.dataset for c in cells]
    assert len(set(made)) == 3
    sweep.check_made_from(made)                      # found, and made from the current data
    shutil.rmtree(minari_io.dataset_path(stale))   # the source rebuilt with other data
    random_pendulum(stale, 400, jax.random.PRNGKey(2))
    with pytest.raises(DatasetError, match=re.escape(f"{subset} was made from other data")) as e:
        sweep.run(sweep.load(path), runs=tmp_path / "runs", **quiet)   # before any cell runs
    assert "delete the 3 dataset(s) made from stale data" in str(e.value)
    assert "\n" not in str(e.value) and not (tmp_path / "runs").exists()
    for d in made:                                   # every one named, in one error
        assert str(minari_io.dataset_path(d)) in str(e.value)
        shutil.rmtree(minari_io.dataset_path(d))
    for c in cells:                                  # made again, from the current data
        sweep.make_data(c, "quick", **quiet)
    sweep.check_made_from(made)
    now = minari_io.read_metadata(subset)["diffrl"]["content_hash"]
    for c in cells:
        assert datasets.load(c.dataset).metadata["diffrl"]["derived"][
            "source_content_hash"] == now


def test_sweep_groups_train_on_subsets_and_augmentations(source, tmp_path):
    from bench import sweep

    path = tmp_path / "s.toml"
    path.write_text(f'''
[[group]]
algos = ["td3_bc"]
datasets = ["{SOURCE}"]
subset = 0.5
augment = {{ method = "noise", set = {{ size = 300, scale = 0.2 }} }}
seeds = 1
steps = 10
set = {{ eval_every = 10 }}
label = "TD3+BC (50% + noise)"
''')
    sw = sweep.load(path)
    (cell,) = sw.cells
    assert cell.source == SOURCE and cell.subset == 0.5
    assert cell.dataset.startswith("test/pendulum/random-50pct-noise-")
    assert cell.dataset == augment.derived_for("test/pendulum/random-50pct-v0", "noise", None,
                                               {"size": 300, "scale": 0.2}, typed=True)
    sweep.make_data(cell, "quick", log=lambda m: None)
    made = datasets.load(cell.dataset)
    assert made.num_transitions == 300
    assert made.metadata["diffrl"]["derived"]["source_id"] == "test/pendulum/random-50pct-v0"
    for bad, message in [("subset = 2", "'subset' is the fraction"),
                         ('augment = { method = "noise", scale = 1 }', "'augment' is a table"),
                         ('augment = { method = "noise", set = { sclae = 1 } }',
                          "unknown config field 'sclae'")]:
        path.write_text(f'[[group]]\nalgos = ["td3_bc"]\ndatasets = ["{SOURCE}"]\n{bad}\n'
                        'seeds = 1\n')
        with pytest.raises(sweep.SweepError, match=re.escape(message)):
            sweep.load(path)
