"""`python -m bench train`: one cell (algorithm x dataset x config), all seeds in one program.

Seed k trains from `PRNGKey(k)`, so its result does not depend on how many seeds run beside
it. The run advances one evaluation period per call of one compiled program
(`Train.run_seeds(states, 1)`: updates vmapped over seeds; on a CPU the seeds' evaluation
episodes run one seed after another, where a vmapped loop would pay for every seed's finished
episodes until the slowest ends, see `envs.evaluation.default_seed_batch`). After each period
the state of every seed is checkpointed with orbax, so a killed run resumes where it stopped.
The results file (JSON, written atomically) holds one row per seed and evaluation: algo,
dataset, seed, config hash, step, score, return, wall and compile time, beside the full config
and what makes the numbers traceable: the dataset's content hash and behaviour score, the
code's commit (and whether the tree was modified), package versions, and the hardware down to
the CPU's vector extensions.

A cell is keyed by its config hash; its data by the dataset's content hash. Checkpoints live
under both, so a rebuilt or different dataset never resumes another's run, and a results file
trained on other data is refused with one line naming `--force` (never silently reused). One
process at a time runs a cell (a lock in its checkpoint folder).

`bench train` writes to `.cache/runs/` unless `--out` says otherwise, so an ad-hoc run never
changes the published tables (they read `results/runs/`, which the sweeps write).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

import algos
from algos import checkpoint
from algos.config import ConfigError, apply_overrides, config_dict, config_hash
from bench import sysinfo
from envs.evaluation import default_seed_batch

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "runs"
ADHOC = ROOT / ".cache" / "runs"
CHECKPOINTS = ROOT / ".cache" / "checkpoints"  # or $DIFFRL_CHECKPOINTS (e.g. a scratch disk)
SCHEMA = 2  # 2: the dataset's content hash, the code version and the CPU's vector extensions


def finite_seeds(state, seeds: int) -> np.ndarray:
    """Per seed, whether every float of its state is finite. A seed whose state holds inf or
    NaN diverged, whatever its last evaluation returned (an env can score a NaN action like
    any other): training and `bench evaluate` both count it so."""
    finite = np.ones(seeds, bool)
    for leaf in jax.tree_util.tree_leaves(checkpoint.host_copy(state)):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            finite &= np.isfinite(leaf.reshape(seeds, -1)).all(axis=1)
    return finite


def set_text(value) -> str:
    """A typed setting as `--set` takes it (`true`, `1,2,4`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def parse_sets(pairs, flag: str = "--set") -> Dict[str, str]:
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"{flag} {pair}: expected key=value")
        key, value = pair.split("=", 1)
        if key.strip() in out:
            raise ConfigError(f"{flag} {key.strip()} is given twice; give it once")
        out[key.strip()] = value.strip()
    return out


def make_config(algo: str, steps: Optional[int] = None, overrides: Optional[dict] = None,
                dataset_id: Optional[str] = None, typed: bool = False):
    """The algorithm's Config for `dataset_id`: its defaults, then the paper's per-task settings
    for that dataset (`task_defaults`, e.g. Diffusion-QL's eta and gradient clip), then
    `--steps` and the overrides: `--set` strings, or a sweep file's typed values (`typed`);
    one-line errors."""
    module = algos.get(algo)
    base = module.Config()
    if dataset_id is not None:
        base = apply_overrides(base, algos.task_defaults(algo, dataset_id))
    overrides = dict(overrides or {})
    if steps is not None:
        if "steps" in overrides and str(overrides["steps"]) != str(steps):
            raise ConfigError(f"--steps {steps} and --set steps={overrides['steps']} disagree; "
                              "give one of them")
        overrides.setdefault("steps", steps)
        if "eval_every" not in overrides and steps < base.eval_every:
            overrides["eval_every"] = steps
    return apply_overrides(base, overrides, typed)


def cell_name(algo: str, dataset_id: str, config) -> str:
    return f"{algo}/{dataset_id.replace('/', '_').replace(':', '_')}/{config_hash(config)}"


def seed_keys(seeds: int):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds))


def seed_sharding(seeds: int):
    """Split the leading (seed) axis over the most devices that divide `seeds` evenly: a
    `NamedSharding` over a one-axis mesh named "seed", or None when that is one device.
    `jax.devices()` spans every host once `jax.distributed.initialize()` has run, so the same
    code shards over a GPU node or a pod."""
    devices = jax.devices()
    n = max(d for d in range(1, len(devices) + 1) if seeds % d == 0)
    if n == 1:
        return None
    mesh = jax.sharding.Mesh(np.array(devices[:n]), ("seed",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed"))


def _rows(algo, dataset_id, chash, metrics, periods_done, wall, compile_s):
    rows = []
    seeds = metrics["score"].shape[0]
    for p in range(periods_done):
        for s in range(seeds):
            ret = float(metrics["return"][s, p])
            rows.append({"algo": algo, "dataset": dataset_id, "seed": s, "config_hash": chash,
                         "step": int(metrics["step"][s, p]),
                         "score": float(metrics["score"][s, p]), "return": ret,
                         # judged by the return: an env without an expert reference scores
                         # NaN (no normalised score) on every finite return
                         "diverged": not math.isfinite(ret),
                         "wall_s": round(wall[p], 2), "compile_s": round(compile_s, 2)})
    return rows


ONLINE_PREFIX = "env:"   # `env:Pendulum-v1`: an online algorithm's source, the env itself


@dataclasses.dataclass(frozen=True)
class OnlineSource:
    """What an online algorithm trains on in place of a dataset: the env (no data on disk, so
    no content hash; its results record the env id)."""
    dataset_id: str
    env_id: str
    transitions = {}
    content_hash = None

    @property
    def provenance(self) -> dict:
        return {"id": self.dataset_id, "content_hash": None, "transitions": 0, "episodes": 0,
                "online_env": self.env_id}


def is_online(dataset_id: str) -> bool:
    return dataset_id.startswith(ONLINE_PREFIX)


def load_source(dataset_id: str):
    """A dataset (`envs.datasets.load`), or for `env:ENV_ID` the env as an `OnlineSource`."""
    if is_online(dataset_id):
        import envs

        env_id = dataset_id[len(ONLINE_PREFIX):]
        envs.spec(env_id)  # the one-line unknown-env error
        return OnlineSource(dataset_id, env_id)
    from envs import datasets

    return datasets.load(dataset_id)


def check_kind(algo: str, dataset_id: str) -> None:
    """Online algorithms train on `env:ENV_ID`, the others on datasets: one line otherwise."""
    online = algos.kind(algo) == "online"
    if online and not is_online(dataset_id):
        raise ConfigError(f"{algo} collects its own data: give the env to train in (--env "
                          f"ENV_ID, or env:ENV_ID in a sweep file), not the dataset {dataset_id}")
    if not online and is_online(dataset_id):
        raise ConfigError(f"{algo} is an offline algorithm: give it a dataset (--dataset), not "
                          f"the env {dataset_id[len(ONLINE_PREFIX):]}")


def data_hash(dataset_id: str) -> Optional[str]:
    """The content hash of a local dataset: from its metadata when our builder wrote it (cheap),
    else from its arrays; None for an online algorithm's env."""
    if is_online(dataset_id):
        load_source(dataset_id)
        return None
    from envs import datasets

    return datasets.stored_hash(dataset_id) or datasets.load(dataset_id).content_hash


def existing(path: Path, seeds: int, config, force: bool = False,
             content_hash: Optional[str] = None) -> Optional[dict]:
    """The finished results at `path` if they are this cell's, None if there are none (or
    `force`). A file written by another results schema, config, seed count or dataset content
    (`content_hash`, when given) is a one-line error: nothing is reused or replaced silently."""
    if force or not path.exists():
        return None
    from bench.runs_table import read_results

    fix = "move it away to keep it, or rerun with --force to replace it"
    prev = read_results(path)
    if prev.get("schema") != SCHEMA:
        raise ConfigError(f"{path} was written by results schema {prev.get('schema')} (this "
                          f"code writes {SCHEMA}); {fix}")
    if prev.get("config") != json.loads(json.dumps(config_dict(config))):
        raise ConfigError(f"{path} holds a different config under the same name; {fix}")
    if prev.get("seeds") != seeds:
        raise ConfigError(f"{path} has {prev.get('seeds')} seeds where this run asks for "
                          f"{seeds}; {fix}")
    was = (prev.get("data") or {}).get("content_hash")
    if content_hash is not None and was != content_hash:
        raise ConfigError(
            f"{path} was trained on other data: {prev.get('dataset')} had content "
            f"{str(was)[:12]}, the local copy has {content_hash[:12]} (rebuilt, another seed or "
            f"MINARI_DATASETS_PATH, or another CPU kind: see README); rerun with --force to "
            f"retrain on the local data, or move the file away to keep it")
    return prev if prev.get("complete") else None


def memory_check(train, keys, dataset, seeds: int, available=None, devices: int = 1) -> int:
    """A lower bound on the memory the cell needs, checked against what the machine has before
    anything compiles (state shapes from `jax.eval_shape`: parameters, optimiser moments,
    target networks; nothing allocated). On a CPU, where host and device share one memory:
    the state three times (the state, the updated state, the checkpoint's host copy) and the
    dataset twice (host and device). On an accelerator, what one device must hold: the state
    twice, split over the `devices` the seeds shard over, and the dataset once. Activations
    come on top. One-line `ConfigError` when it does not fit; returns the estimate (bytes)."""
    shapes = jax.eval_shape(train.init_seeds, keys)
    state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    data = sum(v.nbytes for v in dataset.transitions.values())
    on_cpu = jax.devices()[0].platform == "cpu"
    need = 3 * state + 2 * data if on_cpu else 2 * state // devices + data
    have, where = available if available is not None else sysinfo.available_memory()
    if have is not None and need > have:
        gib = 1 << 30
        raise ConfigError(
            f"{seeds} seeds need at least {need / gib:.1f} GiB ({state / seeds / gib:.2f} GiB of "
            f"state per seed, {data / gib:.2f} GiB of data) but {where} has {have / gib:.1f} "
            "GiB free; run fewer seeds (--seeds) or smaller networks")
    return need


def measure_of(env) -> str:
    """What a cell reports: the normalised "score", or the raw "return" for an env without
    an expert reference yet (a new env's first expert)."""
    return "score" if np.isfinite(float(env.normalize(0.0))) else "return"


def checkpoint_root(checkpoints=None) -> Path:
    """Where training checkpoints go: `checkpoints` when given, else $DIFFRL_CHECKPOINTS,
    else the clone's `.cache/checkpoints` (`CHECKPOINTS`)."""
    return Path(checkpoints or os.environ.get("DIFFRL_CHECKPOINTS") or CHECKPOINTS)


def checkpoint_dir(checkpoints: Path, name: str, content_hash: Optional[str],
                   seeds: int) -> Path:
    data = f"data-{content_hash[:16]}" if content_hash else "online"
    return Path(checkpoints) / name / data / f"seeds{seeds}"


def run(algo: str, dataset_id: str, seeds: int, steps: Optional[int] = None,
        overrides: Optional[dict] = None, out: Path = RUNS, checkpoints: Optional[Path] = None,
        command: str = "", force: bool = False, log: Callable[[str], None] = print,
        return_state: bool = False, typed: bool = False):
    """Train `seeds` seeds of `algo` on `dataset_id`; returns (and writes) the results, and
    with `return_state` also the final `TrainState` of every seed (leading seed axis)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    check_kind(algo, dataset_id)
    config = make_config(algo, steps, overrides, dataset_id, typed)
    chash = config_hash(config)
    name = cell_name(algo, dataset_id, config)
    path = Path(out) / f"{name}.json"
    chash_data = data_hash(dataset_id)
    previous = existing(path, seeds, config, force, chash_data)
    if previous is not None and not return_state:
        log(f"{path} exists (same config, data and {seeds} seeds): nothing to do; "
            "--force reruns")
        return previous
    root = checkpoint_root(checkpoints)
    ckpt_dir = checkpoint_dir(root, name, chash_data, seeds)
    # one process per cell (any seed count or data: they share the results file); across
    # hosts the first process holds it for all
    lock = (checkpoint.lock(root / name, f"{algo} on {dataset_id} (config {chash})")
            if jax.process_index() == 0 else contextlib.nullcontext())
    with lock:
        if previous is None and not force:  # finished by another process while we looked?
            previous = existing(path, seeds, config, force, chash_data)
            if previous is not None and not return_state:
                log(f"{path} was just written by another process: nothing to do")
                return previous
        return _run(algo, dataset_id, seeds, config, chash, name, path, previous, ckpt_dir,
                    command, force, log, return_state)


def preflight(algo: str, dataset, seeds: int, config):
    """Everything checked before a cell compiles, on the data it will train on: an env we can
    evaluate in, the algorithm's own checks against the data (e.g. batch size against the
    dataset's size), and the memory estimate. Returns (env, train, keys). The sweep runs it on
    every cell before the first one starts."""
    import envs

    check_kind(algo, dataset.dataset_id)
    if dataset.env_id is None:
        raise ConfigError(f"dataset {dataset.dataset_id} does not record one of our env ids, "
                          "so it cannot be evaluated; train on a jaxrl/... dataset or a "
                          "public one recorded on a mujoco/... env")
    env = envs.make(dataset.env_id)
    refs = getattr(dataset, "reference_scores", None)
    if refs is not None:  # a public dataset's own D4RL-style references normalise its scores
        env = dataclasses.replace(env, spec=dataclasses.replace(
            env.spec, ref_min_score=refs[0], ref_max_score=refs[1]))
    train = algos.get(algo).make_train(
        config, None if isinstance(dataset, OnlineSource) else dataset, env)
    keys = seed_keys(seeds)
    shard = seed_sharding(seeds)
    memory_check(train, keys, dataset, seeds, devices=1 if shard is None else shard.mesh.size)
    return env, train, keys


def _run(algo, dataset_id, seeds, config, chash, name, path, previous, ckpt_dir, command,
         force, log, return_state):
    dataset = load_source(dataset_id)
    env, train, keys = preflight(algo, dataset, seeds, config)
    periods = train.periods
    shard = seed_sharding(seeds)
    on = {} if shard is None else {"in_shardings": shard, "out_shardings": shard}
    if shard is not None:
        keys = jax.device_put(keys, shard)
        log(f"seeds sharded over {shard.mesh.size} devices ({seeds // shard.mesh.size} each)")

    t0 = time.time()
    init = jax.jit(train.init_seeds, **on)
    # seeds sharded over devices evaluate in one vmapped loop; otherwise the backend's default
    eval_seed_batch = None if shard is not None else default_seed_batch()
    step_fn = jax.jit(lambda s: train.run_seeds(s, 1, eval_seed_batch), **on)
    state = init(keys)
    lowered = step_fn.lower(state)  # traced once: the metric shapes come from the same trace
    lower_s = time.time() - t0
    shape = lowered.out_info[1]
    metrics = {k: np.full((seeds, periods), np.nan, np.float32) for k in shape}
    wall = [0.0] * periods
    restored = None if force else checkpoint.restore(
        ckpt_dir, {"state": state, "metrics": metrics, "wall": np.zeros(periods)})
    done = 0
    if previous is not None and restored is not None and restored[0] == periods:
        # a finished cell's state (claims, `bench bandit`): no step left to compile
        log(f"{path} exists (same config, {seeds} seeds): state restored from {ckpt_dir}")
        return previous, restored[1]["state"]
    if restored is not None:   # (before compiling: the template state is freed first)
        done, tree = restored
        state, metrics = tree["state"], {k: np.asarray(v) for k, v in tree["metrics"].items()}
        wall = [float(w) for w in np.asarray(tree["wall"])]
        log(f"resumed from {ckpt_dir} at step {done * config.eval_every:,d}")
    t1 = time.time()
    compiled = lowered.compile()
    compile_s = lower_s + time.time() - t1
    measure = measure_of(env)
    log(f"{algo} on {dataset_id} ({env.env_id}), {seeds} seeds vmapped, "
        f"{config.steps:,d} steps, config {chash}; compiled in {compile_s:.1f}s")
    t_session = time.time()
    t_run = t_session - (wall[done - 1] if done else 0.0)
    for p in range(done, periods):
        state, m = compiled(state)
        m = checkpoint.host_copy(m)
        for k in metrics:
            metrics[k][:, p] = np.asarray(m[k])[:, 0]
        wall[p] = time.time() - t_run
        checkpoint.save(ckpt_dir, p + 1, {"state": state, "metrics": metrics,
                                          "wall": np.asarray(wall)})
        sc = metrics[measure][:, p]
        sc = sc[np.isfinite(sc)]
        eta = (time.time() - t_session) / (p + 1 - done) * (periods - p - 1)
        log(f"  step {(p + 1) * config.eval_every:>9,d}/{config.steps:,d}  {measure} "
            + (f"{sc.mean():7.1f} ± {sc.std():5.1f}" if sc.size else "    nan")
            + f"  ({wall[p]:.0f}s, ~{eta:.0f}s left)")

    finite = finite_seeds(state, seeds)
    metrics["score"][~finite, periods - 1] = np.nan
    metrics["return"][~finite, periods - 1] = np.nan
    rows = _rows(algo, dataset_id, chash, metrics, periods, wall, compile_s)
    final = [r for r in rows if r["step"] == config.steps]
    result = {
        "schema": SCHEMA, "complete": True, "algo": algo, "dataset": dataset_id,
        "env_id": env.env_id, "config": config_dict(config), "config_hash": chash,
        "data": dataset.provenance, "code": sysinfo.code_version(),
        "seeds": seeds, "steps": config.steps, "eval_episodes": config.eval_episodes,
        "final": [{k: r[k] for k in ("seed", "score", "return", "diverged")} for r in final],
        "rows": rows, "wall_s": round(wall[-1], 2), "compile_s": round(compile_s, 2),
        "command": command, "versions": sysinfo.versions(
            ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "brax", "gymnax", "minari",
             "numpy")),
        "hardware": sysinfo.hardware(), "eval_seed_batch": eval_seed_batch,
        # the final checkpoint's digest: what `bench evaluate` restores, so an evaluation
        # names the training it came from
        "checkpoint_sha256": checkpoint.saved_digest(ckpt_dir, periods),
    }
    if jax.process_index() == 0:  # across hosts, one process writes
        sysinfo.atomic_write_text(path, json.dumps(result, indent=1))
    scores = [r[measure] for r in final if not r["diverged"]]
    for r in final:
        log(f"  seed {r['seed']}: {measure} {r[measure]:.1f}"
            + ("  DIVERGED" if r["diverged"] else ""))
    log(f"{algo} on {dataset_id}: mean {'normalised score' if measure == 'score' else 'return'} "
        f"{np.mean(scores) if scores else float('nan'):.1f} ± "
        f"{np.std(scores) if scores else float('nan'):.1f} over {len(scores)} seeds"
        + (f" ({seeds - len(scores)} diverged)" if len(scores) < seeds else "")
        + f"; {result['wall_s']:.0f}s run + {compile_s:.0f}s compile -> {path}")
    return (result, state) if return_state else result
