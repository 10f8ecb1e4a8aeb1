"""Claim 5, long-horizon planning: a diffusion planner that generates the whole path from the
start to the goal (both inpainted) solves sparse-reward navigation that offline model-free
agents and short-horizon model-based planning do not, and its lead holds as the maze grows.

Runs the `maze` sweep (`bench/sweeps/maze.toml`: Diffuser, the model-free policies and MPC with
a learned ensemble on Maze2D umaze and medium, 5 seeds) and tests, per maze and per reference,
whether a Diffuser seed's final normalised score is above a seed's of the reference (bench.stats'
probability of improvement over seeds, with its 95% bootstrap interval). The references are
IQL (the paper's model-free reference), Diffusion-QL (the strongest diffusion policy here) and
MPC with the ensemble (the autoregressive planner). Diverged seeds are left out, as in every
table. The figure draws each method's seeds per maze.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Long-horizon planning: a diffusion planner vs model-free and autoregressive agents"
STATEMENT = ("Generating the whole trajectory with the start and the goal inpainted lets a "
             "diffusion planner solve long-horizon, sparse-reward tasks where offline "
             "model-free RL struggles, and the advantage holds as the horizon grows (survey "
             "§4.3, after Janner et al. 2022: on D4RL's Maze2D umaze / medium / large, Diffuser "
             "113.9 / 121.5 / 123.0 against IQL's 47.4 / 34.9 / 58.6).")
SWEEP = "maze"
PLANNER = "Diffuser"
REFERENCES = ("IQL", "Diffusion-QL", "MPC (ensemble)")


def final_scores(sw, runs: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """`{dataset: {label: final scores of the seeds that did not diverge}}` for every trained
    cell of the sweep that has a results file."""
    from bench.runs_table import read_results

    out: Dict[str, Dict[str, np.ndarray]] = {}
    for c in sw.cells:
        path = c.path(runs)
        if c.is_acting or not path.exists():   # a variant's scores are the leaderboard's
            continue
        final = read_results(path)["final"]
        scores = np.array([f["score"] for f in final if not f["diverged"]], float)
        out.setdefault(c.dataset, {})[c.label] = scores[np.isfinite(scores)]
    return out


def tests_of(scores: Dict[str, Dict[str, np.ndarray]], planner: str = PLANNER,
             references=REFERENCES):
    """One test per maze and reference that both have seeds: P(a planner seed scores above a
    reference seed), its interval, against 0.5."""
    tests = []
    for ds, by in scores.items():
        maze = ds.split("/")[-1].rsplit("-v", 1)[0]
        for ref in references:
            if len(by.get(planner, ())) and len(by.get(ref, ())):
                est = stats.improvement_interval({maze: by[planner]}, {maze: by[ref]})
                tests.append(Test(f"Maze2D {maze}: {planner} vs {ref}",
                                  "P(a seed's final normalised score is above a seed's of the "
                                  "reference)", *est, 0.5))
    return tests


def run(runs: Path, out: Path, log: Callable[[str], None] = print,
        sweep_name: str = SWEEP) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    sweep.run(sw, runs=runs, log=log)
    scores = final_scores(sw, runs)
    tests = tests_of(scores)
    fig = figure(scores, out / "figures" / "claim_long_horizon.png")
    planners = {c.dataset: c for c in sw.cells if c.label == PLANNER and not c.is_acting}
    budget = "; ".join(
        f"{ds.split('/')[-1]}: Diffuser horizon {c.config().horizon}, "
        f"T={c.config().diffusion.T}, U-Net dim {c.config().diffusion.width}, "
        f"{c.steps:,d} steps" for ds, c in planners.items())
    first = next(c for c in sw.cells if not c.is_acting)
    cfg = first.config()
    setup = (f"Sweep `{sw.name}` (`bench/sweeps/{sw.path.name}`; table "
             f"`results/{leaderboard.outputs(sw, out)['md'].name}`): "
             f"{', '.join(scores)}; {first.seeds} seeds, {first.steps:,d} gradient steps per "
             f"cell, the final evaluation over {cfg.eval_episodes} episodes, each to a goal "
             f"drawn by the env. {budget}. Diffuser plans once per episode and tracks the "
             f"plan with the authors' controller; MPC replans every step over a short "
             f"horizon with the learned ensemble.")
    notes = "Mean final normalised score ± std over seeds: " + "; ".join(
        f"{ds.split('/')[-1]}: " + ", ".join(f"{k} {v.mean():.1f} ± {v.std():.1f}"
                                             for k, v in by.items() if len(v))
        for ds, by in scores.items()) + "."
    return Finding("long_horizon", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(scores, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mazes = list(scores)
    labels = list(dict.fromkeys(k for by in scores.values() for k in by))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        for i, ds in enumerate(mazes):
            v = scores[ds].get(label, np.array([]))
            if not len(v):
                continue
            x = i + (j - (len(labels) - 1) / 2) * width
            ax.bar(x, v.mean(), width * 0.9, color=f"C{j}", alpha=0.5,
                   label=label if i == 0 else None)
            ax.plot(np.full(len(v), x), v, "k.", ms=3)
    ax.set_xticks(range(len(mazes)), [ds.split("/")[-1] for ds in mazes])
    ax.set_ylabel("final normalised score (bars: mean; dots: seeds)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, ncol=2)
    sysinfo.save_figure(fig, path)
    return path
