"""Open question 3, the backbone: a transformer in place of the U-Net learns a trajectory's
sequential structure better, so its plans are more consistent and its planner scores higher
(the survey's conjecture; its open question 3).

Measured on Decision Diffuser, whose `decision` sweep trains the fast preset with its DiT and
with a U-Net at the same parameter count (within 1%) on Pendulum medium-expert, 5 seeds each:
1. closed loop: each seed's final normalised score (the sweep's results files, through the
   leaderboard's rows: diverged seeds left out);
2. open loop, on the same held-out starts and plans as the `guidance` claim
   (`bench.claims.guidance.measured`, the preset's weight only): each plan's *consistency
   error*, the distance of each planned state from the true step of the previous planned
   state under the inverse dynamics' action (in data standard deviations), and its return
   executed open loop.
Two tests (bench.stats' probability of improvement over seeds, the models being different,
with its 95% bootstrap interval), fixed before the run: whether a DiT seed scores above a
U-Net seed in closed loop, and whether its plans are more consistent.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test, guidance

TITLE = "Backbone: a transformer vs a U-Net denoiser at equal parameter count"
STATEMENT = ("Replacing the U-Net with a transformer may learn the sequential relationship "
             "in a trajectory more efficiently and output more consistent results, helping "
             "long-horizon planning (the survey's open question 3).")
SWEEP = "decision"
TRANSFORMER = "Decision Diffuser (fast)"
UNET = "Decision Diffuser (fast, U-Net)"


def run(runs: Path, out: Path, log: Callable[[str], None] = print, sweep_name: str = SWEEP,
        starts: int = guidance.STARTS) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    cells = {lb: next(c for c in sw.cells if c.label == lb) for lb in (TRANSFORMER, UNET)}
    w = cells[TRANSFORMER].config().guidance_w
    a, b = cells.values()
    if (b.config().guidance_w, b.dataset, b.seeds) != (w, a.dataset, a.seeds):
        raise ValueError("the two backbones must plan at one guidance weight, on one dataset, "
                         "with as many seeds")
    sub = dataclasses.replace(sw, cells=tuple(cells.values()))
    sweep.run(sub, runs=runs, log=log)
    scores = {r["label"]: np.asarray(r["scores"], float)
              for r in leaderboard.collect(sub, runs) if r["status"] == "done"}
    plans = {}
    for lb, c in cells.items():
        result, data, (ret, div, cons), n = guidance.measured(c, runs, (w,), starts, log)
        plans[lb] = {"return": ret[:, 0], "diversity": div[:, 0], "consistency": cons[:, 0],
                     "config_hash": result["config_hash"], "params": n}
    t1 = stats.improvement_interval({"score": scores[TRANSFORMER]}, {"score": scores[UNET]})
    t2 = stats.improvement_interval({"consistency": -plans[TRANSFORMER]["consistency"]},
                                    {"consistency": -plans[UNET]["consistency"]})
    n = {lb: len(v) for lb, v in scores.items()}
    where = f"{data.env_id}, DiT vs U-Net ({n[TRANSFORMER]} vs {n[UNET]} seeds)"
    tests = [Test(where, "P(a DiT seed's final normalised score is above a U-Net seed's)",
                  *t1, 0.5),
             Test(f"{where}, {starts} starts x {guidance.SAMPLES} plans",
                  "P(a DiT seed's plans are more consistent with the true dynamics than a "
                  "U-Net seed's; consistency error in data standard deviations)", *t2, 0.5)]
    fig = figure(scores, plans, out / "figures" / "claim_backbone.png")
    cfg = {lb: c.config() for lb, c in cells.items()}
    spec = {lb: cfg[lb].diffusion for lb in cells}
    setup = (f"The `{sw.name}` sweep (`bench/sweeps/{sw.path.name}`; table "
             f"`results/{leaderboard.outputs(sw, out)['md'].name}`): Decision Diffuser's fast "
             f"preset on {cells[TRANSFORMER].dataset}, {cfg[TRANSFORMER].steps:,d} steps, "
             f"with its DiT (width {spec[TRANSFORMER].width}, depth {spec[TRANSFORMER].depth}; "
             f"results `{plans[TRANSFORMER]['config_hash']}`) and with a U-Net (width "
             f"{spec[UNET].width}, mults {tuple(spec[UNET].mults)}; results "
             f"`{plans[UNET]['config_hash']}`), {plans[TRANSFORMER]['params']:,d} and "
             f"{plans[UNET]['params']:,d} denoiser parameters, everything else equal. Open "
             f"loop: the `guidance` claim's "
             f"{starts} held-out starts and {guidance.SAMPLES} plans per start at the preset's "
             f"w {w:g}.")
    notes = "Means over seeds: " + "; ".join(
        f"{lb}: closed-loop score {scores[lb].mean():.1f} ± {scores[lb].std():.1f}, plan "
        f"consistency error {p['consistency'].mean():.3f}, open-loop return "
        f"{p['return'].mean():.1f}, diversity {p['diversity'].mean():.3f}"
        for lb, p in plans.items()) + "."
    return Finding("backbone", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(scores, plans, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("closed-loop normalised score", scores),
              ("plan consistency error (data stds)",
               {lb: p["consistency"] for lb, p in plans.items()}),
              ("open-loop return of a plan", {lb: p["return"] for lb, p in plans.items()})]
    fig, axes = plt.subplots(1, len(panels), figsize=(9.6, 3.2))
    for ax, (label, by) in zip(axes, panels):
        for i, (lb, v) in enumerate(by.items()):
            ax.bar(i, np.mean(v), 0.6, color=f"C{i}", alpha=0.5)
            ax.plot(np.full(len(v), i), v, "k.", ms=4)
        ax.set_xticks(range(len(by)), ["DiT" if lb == TRANSFORMER else "U-Net" for lb in by])
        ax.set_ylabel(label, fontsize=8)
    fig.suptitle("Decision Diffuser (fast), DiT vs U-Net, "
                 + " vs ".join(f"{p['params']:,d}" for p in plans.values())
                 + " denoiser parameters (bars: mean; dots: seeds)", fontsize=8)
    fig.tight_layout()
    sysinfo.save_figure(fig, path)
    return path
