"""Claim 1, expressiveness: diffusion policies fit multi-modal behaviour that Gaussian (or
deterministic) policies cannot.

Each diffusion method is matched with the Gaussian method that has the same objective
(Diffusion-BC/BC, Diffusion-QL/TD3+BC, IDQL/IQL), and two tests ask whether the diffusion side
does better, as a probability of improvement over matched pairs (bench.stats, pairs and
tasks playing rliable's tasks):
1. on the multi-modal bandit, the fraction of a seed's sampled actions that land within the
   reward radius of a behaviour mode (bench.bandit);
2. on the mixture datasets of the `policies` sweep (medium-expert: two behaviour policies;
   medium-replay: a training run's replay buffer), the final normalised score.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Expressiveness: diffusion policies vs Gaussian policies"
STATEMENT = ("Gaussian policies cannot fit datasets whose actions come from complex, "
             "multi-modal distributions (several behaviour policies, several modes); diffusion "
             "policies can, and offline RL built on them does better on such data (survey "
             "§4.1 and Diffusion-QL's 2-D bandit, its Figure 1).")
SWEEP = "policies"
PAIRS = (("Diffusion-BC", "BC"), ("Diffusion-QL", "TD3+BC"), ("IDQL", "IQL"))
BANDIT = "jaxrl/bandit/multimodal-v0"


def run(runs: Path, out: Path, log: Callable[[str], None] = print, sweep_name: str = SWEEP,
        bandit_seeds=None, bandit_steps=None) -> Finding:
    from bench import bandit, leaderboard, sweep

    sw = sweep.load(sweep_name)
    sweep.run(sw, runs=runs, log=log)  # trains whatever is missing
    coverage = bandit.run(seeds=bandit_seeds, steps=bandit_steps, out=out, runs=runs, log=log,
                          command="python -m bench claims")
    in_mode: Dict[str, np.ndarray] = {}
    for label in dict.fromkeys(r["method"] for r in coverage):
        in_mode[label] = np.array([r["in_mode"] for r in coverage if r["method"] == label])
    rows = [r for r in leaderboard.collect(sw, runs) if r["dataset"] != BANDIT]
    tasks = list(dict.fromkeys(r["dataset"] for r in rows))
    score = {(r["label"], r["dataset"]): np.asarray(r["scores"], float) for r in rows
             if r["status"] == "done" and r["scores"]}

    pairs = [p for p in PAIRS if p[0] in in_mode and p[1] in in_mode]
    t1 = stats.improvement_interval({f"{d}/{g}": in_mode[d] for d, g in pairs},
                                    {f"{d}/{g}": in_mode[g] for d, g in pairs})
    keyed = [(d, g, t) for d, g in PAIRS for t in tasks if (d, t) in score and (g, t) in score]
    t2 = stats.improvement_interval({f"{d}/{g}/{t}": score[(d, t)] for d, g, t in keyed},
                                    {f"{d}/{g}/{t}": score[(g, t)] for d, g, t in keyed})
    tests = [
        Test(f"bandit: {len(pairs)} matched pairs", "P(a diffusion seed puts more of its "
             "actions in a behaviour mode than a seed of its Gaussian match)", *t1, 0.5),
        Test(f"mixture datasets: {len(keyed)} pair x task comparisons",
             "P(a diffusion seed scores above a seed of its Gaussian match)", *t2, 0.5)]
    fig = figure(in_mode, score, tasks, out / "figures" / "claim_expressiveness.png")
    cells = [c for c in sw.cells if c.dataset != BANDIT]
    short = lambda ds: ds.removeprefix("jaxrl/").removesuffix("-v0")  # noqa: E731
    setup = (f"The bandit with every method (`bench/sweeps/bandit.toml`: "
             f"{coverage[0]['steps']:,d} steps, {len(in_mode[next(iter(in_mode))])} seeds, "
             f"{bandit.SAMPLES} actions sampled per seed from its acting rule; "
             f"`results/bandit.md`) and the mixture datasets of sweep `{sw.name}` "
             f"(`bench/sweeps/{sw.path.name}`: {', '.join(short(t) for t in tasks)}; "
             f"{cells[0].config().steps:,d} steps, {cells[0].seeds} seeds; "
             f"`results/{leaderboard.outputs(sw, out)['md'].name}`). Pairs: "
             + ", ".join(f"{d} vs {g}" for d, g in PAIRS) + ".")
    means = "; ".join(f"{k} {v.mean():.2f}" for k, v in in_mode.items())
    mix = "; ".join(f"{short(t)}: " + ", ".join(f"{lb} {score[(lb, t)].mean():.1f}"
                                               for pair in PAIRS for lb in pair
                                               if (lb, t) in score) for t in tasks)
    notes = (f"Mean fraction of actions in a mode, bandit: {means}. Mean normalised score on "
             f"the mixtures: {mix}.")
    return Finding("expressiveness", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(in_mode, score, tasks, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffusion = {d for d, _ in PAIRS}
    fig, axes = plt.subplots(1, 1 + len(tasks), figsize=(4.2 * (1 + len(tasks)), 3.6),
                             squeeze=False)
    panels = [("bandit: fraction of actions in a mode", in_mode)] + [
        (f"{t.split('/', 1)[1]}: normalised score",
         {lb: score[(lb, t)] for pair in PAIRS for lb in pair[::-1] if (lb, t) in score})
        for t in tasks]
    for ax, (title, data) in zip(axes[0], panels):
        labels = list(data)
        for i, lb in enumerate(labels):
            v = data[lb]
            color = "tab:blue" if lb.split(" ")[0] in diffusion else "tab:gray"
            ax.bar(i, v.mean(), color=color, alpha=0.6)
            ax.scatter(np.full(len(v), i), v, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    sysinfo.save_figure(fig, path)
    return path
