"""`python -m bench bandit`: the multi-modal bandit test bed (Diffusion-QL's Figure 1).

Every method trains on `jaxrl/bandit/multimodal-v0` with the same budget (one cell per method
through `bench.train.run`, seeds vmapped); then each seed's acting rule (`make_policy`, exactly
what evaluation uses) draws `SAMPLES` actions. Reported per method and seed: the fraction of
actions within `envs.bandit.RADIUS` of a behaviour mode, the modes holding at least 5% of them,
the share of each mode, and the mean reward. Writes `results/bandit.md`, `results/bandit.csv`
and `results/figures/bandit_actions.png` (actions of seed 0 of every method over the data).
"""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import algos
from bench import sweep, sysinfo, train
from bench.tables import markdown_table, num

DATASET = "jaxrl/bandit/multimodal-v0"
SAMPLES = 1000
# The methods and their settings (why the diffusion actors use T=20 and a constant 1e-3 here)
# are declared in bench/sweeps/bandit.toml, which the quick tier includes.
SWEEP = "bandit"


def sample_actions(algo: str, config, state, seeds: int, n: int = SAMPLES, seed: int = 0):
    """`(seeds, n, 2)` actions of each seed's acting rule at the bandit's observation."""
    from envs.registry import spec

    policy = algos.get(algo).make_policy(config, spec("bandit-2d"))

    def act(st, obs, k):
        return policy.act(st, policy.init_carry(st, obs, None, k), obs, k)[0]

    obs = jnp.zeros((1,), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(10_000 + seed), seeds * n).reshape(seeds, n, -1)
    per_seed = jax.vmap(lambda st, ks: jax.vmap(lambda k: act(st, obs, k))(ks))
    return np.asarray(jax.jit(per_seed)(state.algo, keys))


def cells(seeds: Optional[int] = None, steps: Optional[int] = None):
    """The bandit sweep's cells; `seeds`/`steps` replace the file's (one evaluation, at the end)."""
    out = []
    for c in sweep.load(SWEEP).cells:
        if c.is_acting:   # its samples and scores would be the trained cell's
            raise sweep.SweepError(f"{SWEEP}.toml: {c.label!r} is an acting variant (act), which "
                                   "the bandit's mode coverage does not evaluate; give it its "
                                   "own group")
        sets = c.sets
        if steps is not None:
            sets["eval_every"] = steps
        out.append(dataclasses.replace(c, seeds=seeds or c.seeds, steps=steps or c.steps,
                                       overrides=tuple(sets.items())))
    return out


def run(seeds: Optional[int] = None, steps: Optional[int] = None,
        out: Path = train.ROOT / "results", runs: Path = train.RUNS, force: bool = False,
        log: Callable[[str], None] = print, command: str = "python -m bench bandit"):
    from envs import bandit, datasets

    datasets.build("bandit-2d", "multimodal", log=log)
    rows, shown = [], {}
    todo = cells(seeds, steps)
    for c in todo:
        result, state = train.run(c.algo, c.dataset, c.seeds, steps=c.steps, overrides=c.sets,
                                  out=runs, force=force, log=log, return_state=True,
                                  typed=True, command=command)
        config = c.config()
        actions = sample_actions(c.algo, config, state, c.seeds)
        shown[c.label] = actions[0]
        for s in range(c.seeds):
            cov = bandit.mode_coverage(actions[s])
            rows.append({"method": c.label, "algo": c.algo, "seed": s,
                         "config_hash": result["config_hash"], "steps": config.steps,
                         "settings": " ".join(f"{k}={train.set_text(v)}" for k, v in c.overrides
                                              if k not in ("eval_every", "eval_episodes")),
                         "in_mode": cov["in_mode"], "modes_covered": cov["modes_covered"],
                         **{f"mode_{i}": f for i, f in enumerate(cov["per_mode"])},
                         "reward": cov["reward"],
                         "eval_score": result["final"][s]["score"]})
    seeds, steps = todo[0].seeds, todo[0].config().steps
    data = datasets.load(DATASET).transitions["action"]
    hw, vers = sysinfo.hardware_line(), sysinfo.versions()
    out = Path(out)
    sysinfo.atomic_write_text(out / "bandit.md", markdown(rows, seeds, steps, hw, vers))
    sysinfo.atomic_write_text(out / "bandit.csv", csv_text(rows))
    figure(data, shown, out / "figures" / "bandit_actions.png")
    return rows


def summary(rows):
    """Mean and std over seeds of each metric, per method, in the sweep's order."""
    out = []
    for label in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == label]
        row = {"method": label, "seeds": len(rs), "settings": rs[0]["settings"]}
        for k in ("in_mode", "modes_covered", "reward", "mode_0", "mode_1", "mode_2", "mode_3",
                  "eval_score"):
            v = np.array([r[k] for r in rs], float)
            row[k], row[k + "_std"] = float(v.mean()), float(v.std())
        out.append(row)
    return out


def markdown(rows, seeds, steps, hw, vers) -> str:
    from envs import bandit

    pm = lambda k, fmt: (lambda r: f"{r[k]:{fmt}} ± {r[k + '_std']:{fmt}}")  # noqa: E731
    cols = [("method", lambda r: r["method"]), ("settings", lambda r: r["settings"] or "-"),
            ("seeds", lambda r: str(r["seeds"])),
            ("in a mode", pm("in_mode", ".2f")), ("modes covered", pm("modes_covered", ".1f")),
            *[(f"mode {i} (r={bandit.REWARDS[i]:g})", num(f"mode_{i}", ".2f")) for i in range(4)],
            ("reward", pm("reward", ".2f")), ("normalised score", pm("eval_score", ".1f"))]
    per_seed = [("method", lambda r: r["method"]), ("seed", lambda r: str(r["seed"])),
                ("in a mode", num("in_mode", ".3f")), ("modes covered", num("modes_covered", "d")),
                *[(f"mode {i}", num(f"mode_{i}", ".3f")) for i in range(4)],
                ("reward", num("reward", ".2f")), ("normalised score", num("eval_score", ".1f"))]
    return "\n".join([
        "# Multi-modal bandit (Diffusion-QL's Figure 1)", "",
        f"`python -m bench bandit --seeds {seeds} --steps {steps}` on {hw} "
        f"({', '.join(f'{k} {v}' for k, v in vers.items())}).", "",
        f"Dataset `{DATASET}`: {len(bandit.CENTERS)} modes at ±0.7 on each axis, std "
        f"{bandit.MODE_STD}, equal weights; rewards {', '.join(f'{r:g}' for r in bandit.REWARDS)}"
        f" within {bandit.RADIUS} of a centre, else 0. Every method: {steps} gradient steps, "
        "batch 256, its default networks and hyperparameters but for the 'settings' shown "
        f"(why: `bench/sweeps/{SWEEP}.toml`); {SAMPLES} actions per seed from "
        "its acting rule (what evaluation uses). 'modes covered': modes holding >= 5% of the "
        "actions; 'mode k': share of actions within the radius of mode k; 'normalised score': "
        f"100 episodes of evaluation (random actions 0, best mode 100). Mean ± std over seeds.",
        "", markdown_table(summary(rows), cols), "",
        "![actions](figures/bandit_actions.png)", "", "## Per seed", "",
        markdown_table(rows, per_seed), ""])


def csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def figure(data, shown: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from envs import bandit

    panels = [("behaviour data", np.asarray(data))] + list(shown.items())
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, a) in zip(axes.flat, panels):
        for c, r in zip(bandit.CENTERS, bandit.REWARDS):
            ax.add_patch(plt.Circle(c, bandit.RADIUS, fill=False, color="0.6", lw=0.8))
            ax.text(c[0], c[1] + bandit.RADIUS + 0.04, f"r={r:g}", ha="center", fontsize=7,
                    color="0.4")
        ax.scatter(a[:, 0], a[:, 1], s=2, alpha=0.3)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    sysinfo.save_figure(fig, path)
