"""Claim 5, long-horizon planning: a diffusion planner that generates the whole path from the
start to the goal (both inpainted) solves sparse-reward navigation that offline model-free
agents and short-horizon model-based planning do not, and its lead holds as the maze grows.

Runs the `maze` sweep (`bench/sweeps/maze.toml`: Diffuser, the model-free policies and MPC
with a learned ensemble on Maze2D umaze and medium, 5 seeds) and tests, per maze and per
reference, whether a Diffuser seed's final normalised score is above a seed's of the reference
(bench.stats' probability of improvement over seeds, with its 95% bootstrap interval; a pair
needs at least `MIN_SEEDS` seeds a side). The references are IQL (the paper's model-free
reference), Diffusion-QL (the strongest diffusion policy here) and MPC with the ensemble (the
autoregressive planner). Scores come from the leaderboard's rows (`bench.leaderboard.collect`):
diverged seeds are counted and left out, and an acting variant (the diffused-actions ablation)
is shown in the notes and the figure only when it evaluated the training its cell's results
file holds. Decision Diffuser (`OTHER_PLANNER`, which replans from the current state with no
goal inpainted), where the sweep has it, is scored beside them; its probability of improvement
over IQL is given in the notes, not as a test of the claim (the claim is about inpainting the
start and the goal). A second sweep, `BUDGET_SWEEP` (`maze-long`: Diffuser, MPC, IQL and
Diffusion-QL at ten times the budget on medium and large, made on a GPU), is read from its
results files only, never trained here (`budget_note`): its means and the planner's
probabilities of improvement are in the notes, not in the verdict.
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
OTHER_PLANNER = "Decision Diffuser (fast)"   # against IQL in the notes, not in the verdict
OTHER_REFERENCES = ("IQL",)
BACKBONES = {"unet": "U-Net", "dit": "DiT", "mlp": "MLP", "resmlp": "residual MLP"}
BUDGET_SWEEP = "maze-long"   # the same cells at 10x the steps: notes only, never trained here
MIN_SEEDS = 3      # seeds a side that did not diverge, for a test to be made


def final_scores(sw, runs: Path) -> Dict[str, Dict[str, dict]]:
    """`{dataset: {label: {"scores": final scores of the seeds that did not diverge,
    "diverged": how many did}}}` for every cell of the sweep with a usable file."""
    from bench import leaderboard

    out: Dict[str, Dict[str, dict]] = {}
    for row in leaderboard.collect(sw, runs):
        if row["status"] == "done":
            out.setdefault(row["dataset"], {})[row["label"]] = {
                "scores": np.asarray(row["scores"], float), "diverged": row["diverged"]}
    return out


def tests_of(scores: Dict[str, Dict[str, dict]], planner: str = PLANNER,
             references=REFERENCES, min_seeds: int = None):
    """One test per maze and reference where both have at least `min_seeds` finite seeds:
    P(a planner seed scores above a reference seed), its interval, against 0.5."""
    min_seeds = MIN_SEEDS if min_seeds is None else min_seeds
    tests = []
    for ds, by in scores.items():
        maze = _maze(ds)
        if planner not in by:
            continue
        x = by[planner]["scores"]
        for ref in references:
            y = by.get(ref, {}).get("scores", np.array([]))
            if len(x) >= min_seeds and len(y) >= min_seeds:
                est = stats.improvement_interval({maze: x}, {maze: y})
                tests.append(Test(f"Maze2D {maze}: {planner} vs {ref} ({len(x)} vs {len(y)} "
                                  f"seeds)", "P(a seed's final normalised score is above a "
                                  "seed's of the reference)", *est, 0.5))
    return tests


def _maze(dataset: str) -> str:
    return dataset.split("/")[-1].rsplit("-v", 1)[0]


def _values(xs) -> str:
    """`1,500` for one value, `4 / 1,500` for several."""
    return " / ".join(f"{x:,d}" for x in sorted(set(xs)))


def run(runs: Path, out: Path, log: Callable[[str], None] = print,
        sweep_name: str = SWEEP, budget_sweep: str = BUDGET_SWEEP) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    sweep.run(sw, runs=runs, log=log)
    scores = final_scores(sw, runs)
    tests = tests_of(scores)
    beside = tests_of(scores, OTHER_PLANNER, OTHER_REFERENCES)
    fig = figure(scores, out / "figures" / "claim_long_horizon.png")
    trained = [c for c in sw.cells if not c.is_acting]
    planners = [c for c in trained if c.label == PLANNER]
    parts = [f"On {_maze(c.dataset)} Diffuser has horizon {c.config().horizon}, "
             f"T={c.config().diffusion.T} and U-Net dim {c.config().diffusion.width}"
             for c in planners]
    if planners:
        parts[-1] += "; on every maze it plans once per episode and tracks the plan with the " \
                     "authors' controller"
    others = [c for c in trained if c.label == OTHER_PLANNER]
    if others:
        c = others[0].config()
        parts.append(
            f"{OTHER_PLANNER} has horizon {c.horizon}, {c.diffusion.sampler} over "
            f"{c.diffusion.sampling_steps} of T={c.diffusion.T} steps, a "
            f"{BACKBONES.get(c.diffusion.backbone, c.diffusion.backbone)} of width "
            f"{c.diffusion.width}, guidance {c.guidance_w:g} toward the return "
            f"{c.target_return:g} ("
            + ("mapped to [0, 1] over the dataset" if c.returns_norm == "range"
               else f"returns_norm {c.returns_norm}")
            + "); it sees no goal and replans every step from the current state")
    budget = ". ".join(parts + ["MPC replans every step over a short horizon with the learned "
                                "ensemble"])
    setup = (f"Sweep `{sw.name}` (`bench/sweeps/{sw.path.name}`; table "
             f"`results/{leaderboard.outputs(sw, out)['md'].name}`): "
             f"{', '.join(sw.datasets)}; {_values(c.seeds for c in trained)} seeds and "
             f"{_values(c.config().steps for c in trained)} gradient steps per cell, the final "
             f"evaluation over {_values(c.config().eval_episodes for c in trained)} episodes, "
             f"each from a random start cell to the layout's fixed goal (D4RL's single-task "
             f"Maze2D, the paper's setting; the model-free policies see no goal, and with one "
             f"fixed goal they need none; a Multi2D row, where shown, is Diffuser's trained "
             f"models with a goal drawn per episode, in the notes and figure only). {budget}. "
             f"Cells run on {_hardware(trained, runs)}. A test needs {MIN_SEEDS} seeds a side "
             f"that did not diverge.")
    notes = "Mean final normalised score ± std over the seeds that did not diverge: " + "; ".join(
        f"{_maze(ds)}: " + ", ".join(_mean_std(k, v) for k, v in by.items())
        for ds, by in scores.items()) + "."
    if beside:
        notes += (f" Beside the tests (it inpaints no goal, so it does not decide the verdict), "
                  f"P(a {OTHER_PLANNER} seed's final normalised score is above an IQL seed's): "
                  + "; ".join(f"{t.name.split(':')[0].replace('Maze2D ', '')} {t.estimate:.2f} "
                              f"[{t.lo:.2f}, {t.hi:.2f}]" for t in beside) + ".")
    if budget_sweep:
        notes += " " + budget_note(runs, budget_sweep)
    return Finding("long_horizon", TITLE, STATEMENT, setup, tests, fig, notes)


def budget_note(runs: Path, sweep_name: str = BUDGET_SWEEP) -> str:
    """The sweep `sweep_name` (the claim's cells at a larger budget) from its results files
    alone: per maze, each method's mean final score and the planner's probability of
    improvement over each reference; a sentence naming the command when it has none."""
    from bench import sweep

    sw = sweep.load(sweep_name)
    scores = final_scores(sw, runs)
    trained = [c for c in sw.cells if not c.is_acting]
    steps = _values(c.config().steps for c in trained)
    if not scores:
        return (f"The sweep `{sw.name}` (the same cells at {steps} steps) has no results here: "
                f"`python -m bench sweep {sw.name}`.")
    tests: Dict[str, list] = {}
    for t in tests_of(scores):             # per maze: "Maze2D medium" -> its tests
        tests.setdefault(t.name.split(":")[0], []).append(t)
    return (f"At {steps} gradient steps (sweep `{sw.name}`, `bench/sweeps/{sw.path.name}`, "
            f"evaluated every {_values(c.config().eval_every for c in trained)} steps, every "
            f"other setting the same; run on {_hardware(trained, runs)}), mean final normalised "
            f"score ± std: " + "; ".join(
                f"{_maze(ds)}: " + ", ".join(_mean_std(k, v) for k, v in by.items())
                + "".join(f"; P({PLANNER} > {t.name.split(' vs ', 1)[1].rsplit(' (', 1)[0]}) = "
                          f"{t.estimate:.2f} [{t.lo:.2f}, {t.hi:.2f}]"
                          for t in tests.get(f"Maze2D {_maze(ds)}", []))
                for ds, by in scores.items()) + ".")


def _mean_std(label: str, v: dict) -> str:
    """`IQL 36.0 ± 13.1`, `(2 diverged)` after it where seeds diverged, `none` if all did."""
    if not len(v["scores"]):
        return f"{label} none ({v['diverged']} diverged)"
    return (f"{label} {v['scores'].mean():.1f} ± {v['scores'].std():.1f}"
            + (f" ({v['diverged']} diverged)" if v["diverged"] else ""))


def _hardware(cells, runs: Path) -> str:
    """The machines the cells' results files were made on, one line each, '; '-separated."""
    import json

    return "; ".join(sorted({sysinfo.hardware_line(json.loads(p.read_text())["hardware"])
                             for c in cells if (p := c.path(runs)).is_file()})) or "-"


def figure(scores, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mazes = list(scores)
    labels = list(dict.fromkeys(k for by in scores.values() for k in by))
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        shown = False
        for i, ds in enumerate(mazes):
            v = scores[ds].get(label, {}).get("scores", np.array([]))
            if not len(v):
                continue
            x = i + (j - (len(labels) - 1) / 2) * width
            ax.bar(x, v.mean(), width * 0.9, color=plt.get_cmap("tab20")(j % 20), alpha=0.5,
                   label=None if shown else label)
            ax.plot(np.full(len(v), x), v, "k.", ms=3)
            shown = True
    ax.set_xticks(range(len(mazes)), [_maze(ds) for ds in mazes])
    ax.set_ylabel("final normalised score (bars: mean; dots: seeds)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # beside the bars
    sysinfo.save_figure(fig, path)
    return path
