"""`python -m bench evaluate`: a trained cell acting under other settings, without retraining.

The trade-offs the survey names (sampling steps against return and decision latency, guidance
scale against return) are questions about how one trained model acts. Retraining a cell per
setting answers them badly: every setting gets other weights, so training noise hides the
effect, and each costs a training run. Here the finished cell's checkpoint (every seed's final
state, from `python -m bench train` or a sweep) is restored and evaluated with acting fields
changed, e.g.

    python -m bench evaluate --algo decision_diffuser_fast \\
        --dataset jaxrl/pendulum/medium-expert-v0 --seeds 5 --steps 3000 \\
        --act diffusion.steps=5

`--steps`/`--set` name the trained cell exactly as `bench train` did; `--act` changes only what
an algorithm declares as acting (its module's `ACTING`, see `algos.acting_fields`): a field
that changes training is refused with one line listing the acting ones. `--episodes` sets the
evaluation episodes. `--tasks sampled` draws every episode's task instead of the env id's
(Maze2D: a goal per episode; for a goal-conditioned planner, Diffuser's Multi2D), on an env
that has task parameters. Its scores are normalised with the env id's references (Maze2D's:
the waypoint expert on the fixed goal, as Diffuser's paper normalises Multi2D), and its
difference from the trained score is a change of task, not of acting.

Paired by construction: seed k is evaluated with the keys of its own last training evaluation,
so with no acting change the scores are the cell's final scores (tested), and a difference is
the acting change alone, seed by seed. The results file (JSON, atomic) holds both per seed,
the acting overrides and the full acting config, the evaluation's wall and compile time and
the time per step of its episode loop, beside the same provenance as a training results file
(data content hash, code version, versions, hardware). It goes to `.cache/evals/` unless
`--out` says otherwise (`results/evals/` for published figures), under the cell's name and the
acting config's hash (`-sampled-tasks` added with `--tasks sampled`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import textwrap
import time
from pathlib import Path
from typing import Callable, Optional

import jax
import numpy as np

import algos
from algos import checkpoint
from algos.config import ConfigError, apply_overrides, config_dict, config_hash
from bench import sysinfo, train as bench_train
from bench.tables import change_text, signed
from envs.evaluation import default_seed_batch, make_evaluate, over_seeds

EDM_ONLY = ("sigma_min", "sigma_max", "churn", "s_tmin", "s_tmax", "s_noise")
ROOT = Path(__file__).resolve().parent.parent
ADHOC = ROOT / ".cache" / "evals"   # --out results/evals publishes


def beside(runs: Path) -> Path:
    """Where a sweep's evaluations go: beside its folder of results files, `results/runs` ->
    `results/evals`, `.cache/runs` -> `.cache/evals`, and any other name its own
    (`results/runs-new` -> `results/runs-new-evals`: a reproduction next to the published
    results never reads or writes their evaluations)."""
    runs = Path(runs)
    return runs.parent / ("evals" if runs.name == "runs" else f"{runs.name}-evals")


TASKS = ("default", "sampled")


def path_of(out: Path, cell_name: str, act, seeds: int, tasks: str = "default") -> Path:
    """The file of one evaluation: `<out>/<cell>/<acting config hash>-seeds<N>.json`, with
    `-sampled-tasks` before `.json` where every episode drew its own task."""
    extra = "" if tasks == "default" else f"-{tasks}-tasks"
    return Path(out) / cell_name / f"{config_hash(act)}-seeds{seeds}{extra}.json"


def tasks_of(evaluation: dict) -> str:
    """How an evaluation's episodes got their task (files from before the field: the env
    id's)."""
    return evaluation.get("tasks", "default")


def require_tasks(env_id, has_tasks: bool, flag: str, fix: str = "") -> None:
    """One line unless the env `env_id` has task parameters to draw (`flag`: the option that
    asked, `fix`: what to do instead)."""
    if not has_tasks:
        raise ConfigError(f"{flag}: {env_id} has no task parameters to draw (Maze2D's goal is "
                          f"one){fix}")


def change_of(evaluation: dict) -> str:
    """What an evaluation changed from the cell as trained, in words."""
    text = change_text(evaluation["acting"])
    if tasks_of(evaluation) == "sampled":
        text = ", ".join(t for t in (text, "a task sampled per episode") if t)
    return text


def acting_config(algo: str, config, acting: Optional[dict], episodes: Optional[int] = None,
                  typed: bool = False, flag: str = "--act", retrain: str = "retrain with --set"):
    """`config` with the `acting` overrides (fields of `algos.acting_fields(algo)` only) and
    `episodes` evaluation episodes; one line for anything else (`flag` and `retrain` name the
    option and the fix where they were given: a sweep file's say `act` and the group's
    `set`)."""
    allowed = algos.acting_fields(algo)
    acting = dict(acting or {})
    wrong = sorted(k for k in acting if k not in allowed)
    if wrong:
        which = (f"its acting fields are {', '.join(allowed)}" if allowed else
                 f"{algo} has none (it acts by one fixed rule)")
        raise ConfigError(f"{flag} {wrong[0]}: not one of the fields that only change how "
                          f"{algo} acts (any other field changes training: {retrain}); {which}")
    sampler, trained = acting.get("diffusion.sampler"), getattr(config, "diffusion", None)
    if sampler is not None and (str(sampler) == "edm") != (trained.sampler == "edm"):
        raise ConfigError(f"{flag} diffusion.sampler={sampler}: the cell was trained for the "
                          f"{trained.sampler} sampler, and EDM's noise model is another model; "
                          "a discrete model samples with ddpm, ddim or dpm_solver_pp")
    act = apply_overrides(config, acting, typed)
    if trained is not None:
        spec = act.diffusion
        idle = [k for k in acting if k.startswith("diffusion.") and k[10:] in EDM_ONLY] \
            if spec.sampler != "edm" else []
        if "diffusion.eta" in acting and spec.sampler != "ddim":
            idle.append("diffusion.eta")
        if idle:
            raise ConfigError(f"{flag} {idle[0]}: does nothing with the {spec.sampler} sampler "
                              "(eta is DDIM's noise; sigma_min, sigma_max, churn, s_tmin, s_tmax "
                              "and s_noise are EDM's), so the evaluation would change nothing")
    if episodes is not None:
        if episodes < 1:
            raise ConfigError(f"--episodes must be at least 1, got {episodes}")
        act = dataclasses.replace(act, eval_episodes=episodes)
    return act


def _train_command(algo, dataset_id, seeds, steps, overrides) -> str:
    source = (f"--env {dataset_id[len(bench_train.ONLINE_PREFIX):]}"
              if bench_train.is_online(dataset_id) else f"--dataset {dataset_id}")
    sets = "".join(f" --set {shlex.quote(f'{k}={bench_train.set_text(v)}')}"
                   for k, v in (overrides or {}).items())
    return (f"python -m bench train --algo {algo} {source} --seeds {seeds}"
            + (f" --steps {steps}" if steps is not None else "") + sets)


def _paired_interval(diff: np.ndarray, reps: int = 10_000, seed: int = 0):
    """95% percentile-bootstrap interval of the mean of per-seed differences."""
    if diff.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (reps, diff.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def read(path: Path) -> dict:
    """A finished evaluation file, whole; anything else is one line naming it."""
    try:
        r = json.loads(Path(path).read_text())
        d = r.get("difference") if isinstance(r, dict) else None
        ok = (isinstance(r, dict) and r.get("kind") == "evaluation"
              and r.get("schema") == bench_train.SCHEMA and r.get("complete") is True
              and all(k in r for k in ("algo", "dataset", "config", "seeds", "steps", "acting",
                                       "final", "code", "hardware", "eval_episodes",
                                       "ms_per_loop_step", "wall_s", "compile_s", "command",
                                       "config_hash", "trained_config", "trained_config_hash"))
              and r.get("measure") in ("score", "return") and r.get("tasks", "default") in TASKS
              and all(isinstance(r[k], dict) for k in ("acting", "data", "config", "hardware"))
              and isinstance(d, dict) and all(k in d for k in ("mean", "low", "high"))
              and isinstance(r["final"], list) and len(r["final"]) == r["seeds"]
              and all(isinstance(f, dict) and all(isinstance(f.get(k), (int, float)) for k in
                                                  ("score", "return", "trained_score",
                                                   "trained_return"))
                      for f in r["final"]))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} is not a readable evaluation file of this code; move it "
                          "away and evaluate again")
    # files from before the count was written: the seeds whose difference is finite
    d.setdefault("seeds", sum(math.isfinite(f[r["measure"]] - f["trained_" + r["measure"]])
                              for f in r["final"]))
    return r


def same_training(final: list, scores, returns) -> bool:
    """Whether per-seed final `scores` and `returns` (a checkpoint's, or those an evaluation
    file restored) are those of a results file's `final` entries: the same training. A seed
    the file marks diverged is skipped (its file scores are NaN by the divergence rule, its
    checkpoint's need not be), as is a NaN score of an env without an expert reference."""
    if len(final) != len(scores) or len(final) != len(returns):
        return False
    for f, s, r in zip(final, scores, returns):
        if f.get("diverged"):
            continue
        for kept, held in ((f["score"], s), (f["return"], r)):
            if math.isfinite(kept) and not (math.isfinite(held) and
                                            abs(kept - held) <= 1e-6 * max(1.0, abs(kept))):
                return False
    return True


def same_source(results: dict, evaluation: dict) -> bool:
    """Whether an evaluation restored the training a results file holds: the same final
    checkpoint digest where both files record it (exact), else `same_training` on the final
    scores and returns (files from before the digest was recorded)."""
    a, b = results.get("checkpoint_sha256"), evaluation.get("checkpoint_sha256")
    if a and b:
        return a == b
    return same_training(results["final"], *trained_of(evaluation))


def trained_of(evaluation: dict):
    """The per-seed final scores and returns of the training an evaluation file restored."""
    return ([f["trained_score"] for f in evaluation["final"]],
            [f["trained_return"] for f in evaluation["final"]])


def existing(path: Path, seeds: int, act, force: bool, content_hash,
             tasks: str = "default") -> Optional[dict]:
    """The finished evaluation at `path` if it is this one (acting config, seeds, tasks, data), None
    if there is none (or `force`); one line for anything else, which is never replaced
    silently."""
    if force or not path.exists():
        return None
    fix = "move it away, or rerun with --force to replace it"
    prev = read(path)
    if (prev["config"] != json.loads(json.dumps(config_dict(act))) or prev["seeds"] != seeds
            or tasks_of(prev) != tasks):
        raise ConfigError(f"{path} holds another evaluation under the same name; {fix}")
    was = prev["data"].get("content_hash")
    if was != content_hash:
        raise ConfigError(f"{path} was evaluated on other data ({str(was)[:12]}, the local copy "
                          f"is {str(content_hash)[:12]}); {fix}")
    return prev


def trained_checkpoint(algo, dataset_id, seeds, steps, overrides, content_hash,
                       checkpoints=None, typed=False, out_note: str = ""):
    """The finished checkpoint folder of a trained cell (the config, the data's
    `content_hash` and the seed count name it), checked before anything compiles; one line
    giving the training command when it is missing or unfinished (`out_note`: extra options
    for it, e.g. `--out results/runs --force` where a results file exists without its
    checkpoint)."""
    config = bench_train.make_config(algo, steps, overrides, dataset_id, typed)
    name = bench_train.cell_name(algo, dataset_id, config)
    ckpt_dir = bench_train.checkpoint_dir(bench_train.checkpoint_root(checkpoints), name,
                                          content_hash, seeds)
    periods = config.steps // config.eval_every
    done = checkpoint.latest_step(ckpt_dir) or 0
    if done != periods:
        raise ConfigError(
            f"no finished training of {algo} on {dataset_id} with {seeds} seeds and this "
            f"config ({config_hash(config)}) in {ckpt_dir} ({done} of {periods} evaluation "
            f"periods); train it first: "
            f"{_train_command(algo, dataset_id, seeds, steps, overrides)}{out_note}")
    return ckpt_dir


def evaluate(algo: str, dataset_id: str, seeds: int, steps: Optional[int] = None,
             overrides: Optional[dict] = None, acting: Optional[dict] = None,
             episodes: Optional[int] = None, out: Path = ADHOC,
             checkpoints: Optional[Path] = None, command: str = "", force: bool = False,
             typed: bool = False, trained: Optional[Path] = None,
             log: Callable[[str], None] = print, tasks: str = "default") -> dict:
    """Evaluate the finished cell (`algo`, `dataset_id`, `seeds`, `steps`, `overrides`: as
    trained) with the `acting` overrides, each episode in the env id's task or (`tasks`
    "sampled") its own drawn one; returns (and writes) the results. `trained`, the
    cell's results file when there is one (a sweep's), must be from the training the
    checkpoint holds (`same_source`: the final checkpoint's digest, or for older files the
    final scores), else one line (the checkpoint was retrained elsewhere, or the file came
    from another machine)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if tasks not in TASKS:
        raise ConfigError(f"--tasks {tasks}: one of {', '.join(TASKS)}")
    bench_train.check_kind(algo, dataset_id)
    dataset = None
    if tasks == "sampled":   # before anything else: no training would make it possible
        import envs

        dataset = bench_train.load_source(dataset_id)
        env_id = dataset.env_id
        require_tasks(env_id, env_id is not None and envs.make(env_id).tasks is not None,
                      "--tasks sampled", "; evaluate it without --tasks")
    config = bench_train.make_config(algo, steps, overrides, dataset_id, typed)
    act = acting_config(algo, config, acting, episodes, typed)
    name = bench_train.cell_name(algo, dataset_id, config)
    chash_data = bench_train.data_hash(dataset_id)
    path = path_of(out, name, act, seeds, tasks)
    previous = existing(path, seeds, act, force, chash_data, tasks)
    if previous is not None:
        log(f"{path} exists (same cell, acting config, data and {seeds} seeds): nothing to "
            "do; --force reruns")
        return previous
    # the training's own results file, if given, is where a retraining must go
    out_note = f" --out {Path(trained).parents[2]} --force" if trained is not None else ""
    ckpt_dir = trained_checkpoint(algo, dataset_id, seeds, steps, overrides, chash_data,
                                  checkpoints, typed, out_note)   # before anything compiles
    periods = config.steps // config.eval_every
    retrain = _train_command(algo, dataset_id, seeds, steps, overrides) + out_note
    if dataset is None:   # loaded once
        dataset = bench_train.load_source(dataset_id)
    # Built with the acting config: its state has the trained cell's structure (acting fields
    # never shape the state; the checkpoint's digest would refuse one that differs), so it is
    # the checkpoint's template and its policy acts.
    env, train, keys = bench_train.preflight(algo, dataset, seeds, act)

    # The template of the checkpoint: the state and metrics (shapes only for the metrics:
    # tracing, no compile).
    state = jax.jit(train.init_seeds)(keys)
    # as the training run evaluated: seeds sharded over devices in one lockstep loop, else
    # the backend's default
    batch = None if bench_train.seed_sharding(seeds) is not None else default_seed_batch()
    shapes = jax.eval_shape(lambda s: train.run_seeds(s, 1, batch), state)[1]
    template = {"state": state,
                "metrics": {k: np.zeros((seeds, periods), np.float32) for k in shapes},
                "wall": np.zeros(periods)}
    try:
        restored = checkpoint.restore(ckpt_dir, template)
    except checkpoint.CheckpointError as e:   # its fix names bench train's --force
        raise checkpoint.CheckpointError(
            f"{str(e).rsplit(';', 1)[0]}; retrain the cell: {retrain}"
            + ("" if out_note else " --force")) from None
    if restored is None or restored[0] != periods:   # replaced since we looked
        raise ConfigError(f"the checkpoint in {ckpt_dir} changed while it was read; rerun")
    state, metrics = restored[1]["state"], restored[1]["metrics"]
    sha = checkpoint.digest(restored[1])   # names the training (its metrics and wall too)
    if trained is not None:
        from bench.runs_table import read_results

        written = read_results(Path(trained))
        final = written["final"]
        held = [np.asarray(metrics[k])[:, -1].astype(np.float64).tolist()
                for k in ("score", "return")]
        if not same_source(written, {"checkpoint_sha256": sha, "final": [
                {"trained_score": s, "trained_return": r} for s, r in zip(*held)]}):
            raise ConfigError(
                f"the checkpoint in {ckpt_dir} is not the training {trained} holds (final "
                f"scores {np.round(held[0], 1).tolist()} against "
                f"{[round(f['score'], 1) for f in final]}: one of them was trained again, or "
                f"came from another machine); retrain both as one: {retrain}")
    # seed k's key of its last training evaluation
    keys = jax.vmap(lambda s: train.period_keys(s, s.period - 1)[1])(state)
    run = jax.jit(over_seeds(make_evaluate(train.policy, env, act.eval_episodes,
                                           sample_tasks=tasks == "sampled"), batch))
    t0 = time.time()
    compiled = run.lower(state.algo, keys).compile()
    compile_s = time.time() - t0
    t0 = time.time()
    returns, lengths = jax.block_until_ready(compiled(state.algo, keys))
    wall = time.time() - t0
    returns, lengths = np.asarray(returns, np.float64), np.asarray(lengths)
    trained_score = np.asarray(metrics["score"])[:, -1].astype(np.float64)
    trained_return = np.asarray(metrics["return"])[:, -1].astype(np.float64)
    # a seed whose state is not finite diverged, as training counts it: NaN on both sides
    diverged = ~bench_train.finite_seeds(state, seeds)
    diverged |= ~np.isfinite(returns).all(axis=1)
    for a in (returns, trained_score, trained_return):
        a[diverged] = np.nan
    scores = np.asarray(env.normalize(returns), np.float64).mean(1)
    # `batch` seeds' episodes run in one lockstep loop until the longest ends, one loop after
    # another: one loop step is one decision for every episode still running in it
    per_loop = batch or seeds
    loop_steps = int(sum(lengths[i:i + per_loop].max() for i in range(0, seeds, per_loop)))
    measure = bench_train.measure_of(env)
    new = scores if measure == "score" else returns.mean(1)
    old = trained_score if measure == "score" else trained_return
    diff = (new - old)[np.isfinite(new - old)]   # a diverged seed is left out of both
    low, high = _paired_interval(diff)
    result = {
        "schema": bench_train.SCHEMA, "kind": "evaluation", "complete": True,
        "algo": algo, "dataset": dataset_id, "env_id": env.env_id,
        "config": config_dict(act), "config_hash": config_hash(act),
        "acting": {k: v for k, v in (acting or {}).items()}, "tasks": tasks,
        "trained_config": config_dict(config), "trained_config_hash": config_hash(config),
        "checkpoint": str(ckpt_dir), "data": dataset.provenance,
        "code": sysinfo.code_version(), "seeds": seeds, "steps": config.steps,
        "eval_episodes": act.eval_episodes, "measure": measure,
        "final": [{"seed": s, "score": float(scores[s]), "return": float(returns[s].mean()),
                   "trained_score": float(trained_score[s]),
                   "trained_return": float(trained_return[s]),
                   "mean_length": float(lengths[s].mean()),
                   "diverged": bool(diverged[s])} for s in range(seeds)],
        "difference": {"mean": float(np.mean(diff)) if diff.size else float("nan"),
                       "low": low, "high": high, "seeds": int(diff.size)},
        "wall_s": round(wall, 3), "compile_s": round(compile_s, 2),
        "env_steps": int(lengths.sum()), "loop_steps": loop_steps,
        "ms_per_loop_step": round(1000 * wall / max(loop_steps, 1), 4),
        "eval_seed_batch": batch, "command": command, "checkpoint_sha256": sha,
        "versions": sysinfo.versions(("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                      "brax", "gymnax", "minari", "numpy")),
        "hardware": sysinfo.hardware(),
    }
    if jax.process_index() == 0:
        sysinfo.atomic_write_text(path, json.dumps(result, indent=1))
        write_table(path.parent, path)
    changed = change_of(result) or "no acting change"
    log(f"{algo} on {dataset_id}, trained {config.steps:,d} steps (config "
        f"{config_hash(config)}), acting with {changed}, {act.eval_episodes} episodes per seed:")
    for s in range(seeds):
        log(f"  seed {s}: {measure} {new[s]:.1f} (trained: {old[s]:.1f})")
    d = result["difference"]
    log(f"mean {measure} {np.nanmean(new):.1f} against {np.nanmean(old):.1f} as trained; "
        f"paired difference {signed(d['mean'])} [{signed(low)}, {signed(high)}] (95% "
        f"bootstrap over seeds); {result['ms_per_loop_step']:.2f} ms per step of the episode "
        f"loop ({act.eval_episodes * per_loop} episodes in lockstep), {wall:.1f}s run + "
        f"{compile_s:.0f}s compile -> {path}")
    return result


def write_table(cell_dir: Path, current: Optional[Path] = None) -> Path:
    """`README.md` of one trained cell's folder of evaluations: a row per acting setting
    (from the files alone), so the trade-off of one trained model reads in one table. Only
    the evaluations of one training are rows: that of `current` (the file just written;
    default the newest); files of another training of the cell (other data, or trained
    again) are named below the table, never mixed into it."""
    cell_dir = Path(cell_dir)
    files = sorted(cell_dir.glob("*.json"))
    try:
        found = {f: read(f) for f in files}
    except ConfigError as e:
        raise ConfigError(f"{str(e).split(';')[0]}, so the table of {cell_dir} cannot be "
                          "written; move it away") from None
    current = Path(current) if current is not None else max(files, key=lambda f:
                                                                 f.stat().st_mtime)

    def training(r):   # NaN (a diverged seed, no expert reference) as None: equal to itself
        return (r["data"].get("content_hash"),
                tuple(None if not math.isfinite(x) else round(x, 4)
                      for x in np.asarray(trained_of(r), np.float64).ravel().tolist()))

    def same(r, this=found[current]):   # the final checkpoint's digest decides where known
        a, b = r.get("checkpoint_sha256"), this.get("checkpoint_sha256")
        return training(r) == training(this) and (not a or not b or a == b)
    results = [r for r in found.values() if same(r)]
    others = [f.name for f, r in found.items() if not same(r)]
    results.sort(key=lambda r: (tasks_of(r) != "default", len(r["acting"]),
                                sorted(r["acting"]),
                                [(_number(v) is None, _number(v) or 0.0, str(v))
                                 for _, v in sorted(r["acting"].items())],
                                r["eval_episodes"], r["seeds"]))
    r0 = results[0]
    lines = [f"# {r0['algo']} on {r0['dataset']}: one trained cell, acting otherwise", "",
             f"Written by `python -m bench evaluate` from the files in this folder. The cell: "
             f"config `{r0['trained_config_hash']}`, {r0['steps']:,d} steps, data content "
             f"`{str(r0['data'].get('content_hash'))[:12]}`. Each row restores its seeds' final "
             "states and evaluates them with the acting change, on the keys of their last "
             "training evaluation, so 'as trained' is the cell's own final score and the "
             "difference is paired seed by seed (95% percentile bootstrap over seeds). 'ms per "
             "step' is the episode loop's wall time per step, all episodes of `eval_seed_batch` "
             "seeds in lockstep (one decision for each; one seed at a time on a CPU), compile "
             "apart.", "",
             f"| acting change | seeds x episodes | {r0['measure']} | as trained | difference "
             "| ms per step | hardware | command |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        new = np.array([f[r["measure"]] for f in r["final"]], float)
        old = np.array([f["trained_" + r["measure"]] for f in r["final"]], float)
        d = r["difference"]
        change = change_of(r) or "(none)"
        lines.append(
            f"| {change} | {r['seeds']} x {r['eval_episodes']} | {np.nanmean(new):.1f} ± "
            f"{np.nanstd(new):.1f} | {np.nanmean(old):.1f} | {signed(d['mean'])} "
            f"[{signed(d['low'])}, {signed(d['high'])}] | {r['ms_per_loop_step']:.2f} | "
            f"{sysinfo.hardware_line(r['hardware'])} | `{r['command'] or '(in-process)'}` |")
    same_tasks = [r for r in results if tasks_of(r) == "default"]   # the figure's curves
    if len(same_tasks) < len(results):
        lines += ["", "A row with a task sampled per episode is scored against the env id's "
                  "references (the expert of its fixed task), and its difference from the "
                  "trained score is a change of task, not of acting: the same seeds and starts "
                  "with other goals."]
    if any(r["acting"] for r in same_tasks):
        figure(same_tasks, cell_dir / "tradeoff.png")
        lines += ["", "![score against time per step](tradeoff.png)"]
    if others:
        lines += ["", f"Left out: {len(others)} evaluation(s) of another training of this cell "
                  f"(other data, or trained again): {', '.join(others)}; move them away."]
    return sysinfo.atomic_write_text(cell_dir / "README.md", "\n".join(lines) + "\n")


def _field(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def figure(results, path: Path) -> Path:
    """One panel per changed field (or set of fields): mean score against the field's value,
    the trained setting among them, with the paired 95% interval of each difference drawn
    around it and each point's time per step of the episode loop written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next((r for r in results if not r["acting"]), None)
    if base is None:   # no evaluation without a change (a sweep's): the trained scores alone
        r0 = results[0]
        base = {"acting": {}, "measure": r0["measure"], "config": r0["trained_config"],
                "final": r0["final"], "difference": {"mean": 0.0}, "ms_per_loop_step": None}
    groups: dict = {}
    for r in results:
        if r["acting"]:
            groups.setdefault(tuple(sorted(r["acting"])), []).append(r)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.4), squeeze=False)
    for ax, (keys, rs) in zip(axes[0], groups.items()):
        values = [_number(r["acting"][keys[0]]) for r in rs] if len(keys) == 1 else [None]
        numeric = None not in values
        rs = [base] + rs   # the trained setting: a point of the curve, or the first tick
        for i, r in enumerate(rs):
            m, d = r["measure"], r["difference"]
            y = np.nanmean([f["trained_" + m] for f in r["final"]]) + d["mean"]
            x = (float(_field(r["config"], keys[0])) if numeric else i)
            yerr = ([[max(d["mean"] - d["low"], 0)], [max(d["high"] - d["mean"], 0)]]
                    if r["acting"] and np.isfinite(d["low"]) else None)
            ax.errorbar(x, y, yerr=yerr, fmt="o", capsize=3,
                        color="tab:blue" if r["acting"] else "black")
            if r["ms_per_loop_step"] is not None:
                ax.annotate(f"{r['ms_per_loop_step']:.3g} ms", (x, y), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
        if numeric:
            ax.set_xlabel(keys[0].replace("diffusion.", "diffusion\n"), fontsize=8)
        else:
            ax.set_xticks(range(len(rs)))
            ax.set_xticklabels([change_text(r["acting"]) or "as trained" for r in rs],
                               rotation=30, ha="right", fontsize=6)
        ax.set_ylabel(f"mean {rs[0]['measure']} over seeds", fontsize=8)
    r0 = results[0]
    fig.suptitle(textwrap.fill(f"{r0['algo']} on {r0['dataset']}: one trained cell acting "
                               "otherwise (black: as trained; bars: paired 95% intervals; ms "
                               "per episode-loop step)", 60 * len(groups)), fontsize=8)
    return sysinfo.save_figure(fig, path)
