"""`python -m bench augment DATASET_ID`: upsample a local dataset into a derived dataset.

    python -m bench augment jaxrl/pendulum/medium-replay-v0 --preset quick
    python -m bench augment jaxrl/pendulum/medium-replay-v0 --method noise --set scale=0.1
    python -m bench train --algo td3_bc --dataset jaxrl/pendulum/medium-replay-synther-<key>-v0

`--method synther` trains SynthER's generator (`algos.synther`) on the dataset's transitions
and samples it; `--method noise` perturbs resampled real transitions with Gaussian noise (the
survey's perturbation baseline, `NoiseConfig`). Either writes `<id>-<method>-<key>-v0`
(`envs.datasets.derived`), `<key>` a hash of the method and its config, whose metadata
records the config, the source's id and content hash (checked when the id is asked for again:
a source rebuilt with other data needs `--force`), the real and generated counts, the
generator's checkpoint digest, timings, code version, versions and hardware.

The generator checkpoints with orbax every `save_every` steps under
`.cache/checkpoints/synther-<train key>/`: an interrupted run resumes, and a second derived
dataset from the same trained generator (another `size` or `mode`, other sampling settings)
reuses it, since the train key leaves out the fields that only sampling reads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from algos.config import ConfigError, apply_overrides, config_dict
from algos import synther

METHODS = ("synther", "noise")
# Fields only sampling and writing read: a generator trained under one value serves them all.
SAMPLING_ONLY = ("size", "mode", "sample_batch", "terminal_threshold", "seed",
                 "diffusion.steps", "diffusion.churn", "diffusion.s_tmin", "diffusion.s_tmax",
                 "diffusion.s_noise", "diffusion.sigma_min", "diffusion.sigma_max")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Perturbation (S4RL's Gaussian noise, Sinha et al. 2021): `size` rows drawn with
    replacement from the real transitions, obs and next_obs each plus independent
    `N(0, (scale * std_d)^2)` noise, `std_d` the data's standard deviation of dimension d
    (the scale is chosen on the data, per dimension). Actions, rewards and terminals are the
    real ones."""
    scale: float = 0.1
    size: int = 5_000_000
    mode: str = "synthetic"
    seed: int = 0

    def check(self):
        if not self.scale > 0:
            raise ConfigError(f"scale must be positive, got {self.scale}")
        if self.size < 1:
            raise ConfigError(f"size must be at least 1, got {self.size}")
        if self.mode not in synther.MODES:
            raise ConfigError(f"mode must be one of {', '.join(synther.MODES)}, got "
                              f"{self.mode!r}")


def make_config(method: str, preset: Optional[str] = None, overrides: Optional[dict] = None,
                typed: bool = False):
    """The method's config: defaults, then the preset, then the overrides (strings from
    `--set`, or typed values from a sweep file with `typed`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    if method == "noise":
        if preset:
            raise ConfigError("--preset applies to --method synther")
        return apply_overrides(NoiseConfig(), overrides or {}, typed=typed)
    if preset is not None and preset not in synther.PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(synther.PRESETS)}")
    base = apply_overrides(synther.Config(), synther.PRESETS.get(preset, {}), typed=True)
    return apply_overrides(base, overrides or {}, typed=typed)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def keys(method: str, config, source_hash: str):
    """`(dataset key, generator train key)`: the derived id's hash (of the method and its
    config, so a sweep file names the id before any data exists; the source's content hash is
    checked against the one the derived dataset records), and the checkpoint's (of the
    training fields and the source's content hash)."""
    d = config_dict(config)
    key = _hash({"method": method, "config": d})
    train = dict(d)
    train["diffusion"] = dict(d.get("diffusion", {}))
    for f in SAMPLING_ONLY:
        head, _, sub = f.partition(".")
        (train[head] if sub else train).pop(sub or head, None)
    return key, _hash({"config": train, "source": source_hash})


def _generated_count(config, n_real: int) -> int:
    """Rows of synthetic data to make: `size` (synthetic), or `size - real` (mixed)."""
    if config.mode == "synthetic":
        return config.size
    if config.size <= n_real:
        raise ConfigError(f"mode=mixed fills the real data's {n_real:,d} transitions up to "
                          f"size, so size must exceed it, got {config.size:,d}")
    return config.size - n_real


def perturb(config: NoiseConfig, arrays, n: int):
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(arrays["obs"]), n)
    std = np.asarray(arrays["obs"], np.float64).std(0)
    out = {k: np.asarray(arrays[k])[idx] for k in ("obs", "action", "reward", "next_obs",
                                                   "terminated")}
    for k in ("obs", "next_obs"):
        out[k] = (out[k] + config.scale * std * rng.standard_normal(out[k].shape)) \
            .astype(np.float32)
    out["truncated"] = np.zeros(n, bool)
    return out


def train_generator(config: synther.Config, x, norm, ckpt: Path,
                    log: Callable[[str], None] = print):
    """The trained generator's state, from `ckpt` when it holds the finished run (resuming a
    partial one). Returns `(generator, state, info)`."""
    import jax
    import jax.numpy as jnp

    from algos import checkpoint

    gen = synther.Generator(config, x.shape[1])
    key = jax.random.PRNGKey(config.seed)
    k_init, k_run = jax.random.split(key)
    state = gen.init(k_init, norm)
    restored = checkpoint.restore(ckpt, {"state": state, "wall": np.zeros(())})
    done, wall = 0, 0.0
    if restored is not None:
        done, tree = restored
        state, wall = tree["state"], float(tree["wall"])
        log(f"generator restored from {ckpt} at step {done:,d}/{config.steps:,d}")
    xj = jnp.asarray(x)
    t0 = time.time() - wall
    while done < config.steps:
        n = min(config.save_every, config.steps - done)
        state, loss = gen.run(state, xj, k_run, n)
        loss = float(loss)  # waits for the steps, so the wall time below is theirs
        done += n
        wall = time.time() - t0
        checkpoint.save(ckpt, done, {"state": state, "wall": np.asarray(wall)})
        log(f"  generator step {done:>9,d}/{config.steps:,d}  loss {loss:.4f}  "
            f"({wall:.0f}s)")
    return gen, state, {"train_seconds": round(wall, 1),
                        "checkpoint": str(ckpt), "checkpoint_sha256": checkpoint.digest(state)}


def _made_already(out_id: str, source_id: str, source_hash: str, log) -> bool:
    """Whether `out_id` exists, made from the source's current data; a one-line error when
    it was made from other data (a rebuilt source)."""
    from envs.datasets import DatasetError, derived, minari_io

    if not minari_io.exists(out_id):
        return False
    made_from = derived.made_from(minari_io.read_metadata(out_id)).get("source_content_hash")
    if made_from != source_hash:
        raise DatasetError(f"{out_id} was made from other data (source content hash "
                           f"{str(made_from)[:12]}, {source_id} now has {source_hash[:12]}); "
                           "rerun with --force to remake it")
    log(f"{out_id} exists (made from the same data); --force remakes it")
    return True


def derived_for(dataset_id: str, method: str = "synther", preset: Optional[str] = None,
                overrides: Optional[dict] = None, typed: bool = False) -> str:
    """The id `run` writes, from the arguments alone (no data read)."""
    from envs.datasets import derived

    config = make_config(method, preset, overrides, typed)
    return derived.derived_id(dataset_id, method, keys(method, config, "")[0])


def run(dataset_id: str, method: str = "synther", preset: Optional[str] = None,
        overrides: Optional[dict] = None, force: bool = False, checkpoints: Optional[Path] = None,
        command: str = "", log: Callable[[str], None] = print, typed: bool = False) -> str:
    """Make (or find) the derived dataset; returns its id."""
    from bench import sysinfo
    from envs import datasets
    from envs.datasets import derived

    config = make_config(method, preset, overrides, typed)  # bad input fails before any data
    source = datasets.load(dataset_id)
    if source.flat is not None:
        raise ConfigError(f"{dataset_id} is itself a derived dataset; augment its source "
                          f"{(source.metadata.get('diffrl') or {}).get('source_id')}")
    key, train_key = keys(method, config, source.content_hash)
    out_id = derived.derived_id(dataset_id, method, key)
    if not force and _made_already(out_id, dataset_id, source.content_hash, log):
        return out_id
    arrays = source.transitions
    n_real = len(arrays["obs"])
    n_new = _generated_count(config, n_real)
    t0 = time.time()
    info = {}
    if method == "noise":
        made = perturb(config, arrays, n_new)
    else:
        from algos.checkpoint import lock
        from bench.train import checkpoint_root

        root = checkpoint_root(checkpoints)
        ckpt = root / f"synther-{train_key}"
        x, norm = synther.inputs(arrays)
        log(f"SynthER on {dataset_id}: {n_real:,d} transitions of width {x.shape[1]}, "
            f"batch {config.batch_for(n_real)}, {config.steps:,d} steps, generator "
            f"{train_key}")
        with lock(ckpt, f"SynthER's generator {train_key}"):
            gen, state, info = train_generator(config, x, norm, ckpt, log)
        import jax

        t1 = time.time()
        rows = gen.sample(state, jax.random.fold_in(jax.random.PRNGKey(config.seed), 1 << 20),
                          n_new)
        info["sample_seconds"] = round(time.time() - t1, 1)
        made = synther.split(rows, arrays["obs"].shape[1], arrays["action"].shape[1],
                             config.terminal_threshold)
        log(f"  sampled {n_new:,d} transitions in {info['sample_seconds']:.0f}s")
    if config.mode == "mixed":
        made = {k: np.concatenate([np.asarray(arrays[k]), made[k]]) for k in made}
    ours = source.metadata.get("diffrl") or {}
    meta = {
        "env_id": source.env_id, "backend": ours.get("backend"),
        "behaviour_return": ours.get("behaviour_return"),
        "behaviour_normalized_score": ours.get("behaviour_normalized_score"),
        "source_episode_returns": source.episode_returns,
        "derived": {"method": method, "key": key, "config": config_dict(config),
                    "source_id": dataset_id, "source_content_hash": source.content_hash,
                    "real": n_real if config.mode == "mixed" else 0, "generated": n_new,
                    "mode": config.mode, "seconds": round(time.time() - t0, 1), **info},
        "code": sysinfo.code_version(), "versions": sysinfo.versions(),
        "hardware": sysinfo.hardware(), "command": command}
    label = "SynthER" if method == "synther" else "Gaussian noise augmentation"
    derived.write(out_id, made, source_meta=source.metadata, algorithm_name=label,
                  description=f"{label} ({config.mode}, {len(made['obs']):,d} transitions) of "
                              f"{dataset_id}", extra_metadata=meta, replace=force)
    log(f"wrote {out_id}: {len(made['obs']):,d} transitions ({config.mode}); train on it with "
        f"`python -m bench train --algo td3_bc --dataset {out_id} --seeds 5`")
    return out_id



def make_subset(dataset_id: str, fraction: float, seed: int = 0, force: bool = False,
                command: str = "", log: Callable[[str], None] = print) -> str:
    """Keep whole episodes of a dataset, drawn in a seeded order, until they hold `fraction`
    of its transitions (the data-scarcity experiments: the same subset for every method).
    Written as an ordinary (episodic) dataset `<id>-<pct>pct-v0`; returns its id."""
    from bench import sysinfo
    from envs import datasets
    from envs.datasets import derived, minari_io

    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if not 0 <= seed < 2 ** 31:
        raise ConfigError(f"seed must be in [0, 2^31), got {seed}")
    out_id = derived.subset_id(dataset_id, fraction, seed)
    source = datasets.load(dataset_id)
    if source.flat is not None:
        raise ConfigError(f"{dataset_id} holds generated transitions, not episodes; take the "
                          "subset of its source")
    if not force and _made_already(out_id, dataset_id, source.content_hash, log):
        return out_id
    eps = source.raw_episodes
    keep = derived.choose_episodes([len(e["actions"]) for e in eps], fraction, seed)
    chosen = [eps[i] for i in keep]
    n = sum(len(e["actions"]) for e in chosen)
    meta = source.metadata
    ours = meta.get("diffrl") or {}
    act = json.loads(meta["action_space"]) if isinstance(meta.get("action_space"), str) else {}
    obs = json.loads(meta["observation_space"]) \
        if isinstance(meta.get("observation_space"), str) else {}
    returns = [float(e["rewards"].sum()) for e in chosen]
    extra = {"env_id": source.env_id, "backend": ours.get("backend"),
             "behaviour": ours.get("behaviour"),
             "behaviour_return": float(np.mean(returns)),
             "derived": {"method": "subset", "fraction": fraction, "seed": seed,
                         "source_id": dataset_id, "source_content_hash": source.content_hash,
                         "episodes": len(chosen), "transitions": n,
                         "episode_indices_sha256": hashlib.sha256(
                             keep.astype(np.int64).tobytes()).hexdigest()},
             "code": sysinfo.code_version(), "command": command}
    if source.env_id is not None:
        import envs

        extra["behaviour_normalized_score"] = float(
            envs.make(source.env_id).normalize(np.mean(returns)))
    minari_io.write(out_id, chosen, obs_low=np.asarray(obs.get("low", -np.inf), np.float32),
                    obs_high=np.asarray(obs.get("high", np.inf), np.float32),
                    act_low=np.asarray(act.get("low", -1.0), np.float32),
                    act_high=np.asarray(act.get("high", 1.0), np.float32),
                    ref_min_score=meta.get("ref_min_score"),
                    ref_max_score=meta.get("ref_max_score"),
                    algorithm_name=meta.get("algorithm_name", "subset"),
                    description=f"{fraction:.0%} of {dataset_id}: {len(chosen)} of {len(eps)} "
                                f"episodes, {n:,d} transitions", extra_metadata=extra,
                    replace=force)
    log(f"wrote {out_id}: {len(chosen)} of {len(eps)} episodes, {n:,d} of "
        f"{source.num_transitions:,d} transitions")
    return out_id
