"""Claim 4, online sample efficiency: generated experience lets an online agent learn from fewer
env steps (SynthER's online result: SAC at UTD 20 with half of every batch generated).

Runs the `online` sweep (`bench/sweeps/online.toml`: SAC at UTD 1, SAC at UTD 20, SAC +
SynthER at UTD 20, equal env steps) and tests, with bench.stats' probability of improvement
over seeds, whether a SAC + SynthER seed's learning curve lies above a seed's of SAC at the
same UTD without synthesis, and above a seed's of SAC at UTD 1. A curve is summarised by the
mean of its normalised scores over the evaluations after the generator's first retrain (the
area under it where synthetic data is in use: sample efficiency, not only the last point);
the figure draws every curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Online: SynthER's generated experience vs SAC at equal env steps"
STATEMENT = ("Upsampling an online agent's replay data with a diffusion model makes it more "
             "sample-efficient: at the same number of env steps, SAC trained on half-synthetic "
             "batches at a high update-to-data ratio beats SAC at the same ratio without "
             "synthesis and SAC at its usual ratio (survey §4.4, after SynthER, Lu et al. "
             "2023, its online experiments).")
SWEEP = "online"
SYNTHER = "SAC + SynthER (UTD 20)"
BASELINES = ("SAC (UTD 20)", "SAC (UTD 1)")


def curves(sw, runs: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """`{label: {"steps": (P,), "scores": (seeds, P)}}` from each cell's results file."""
    from bench.runs_table import read_results

    out = {}
    for c in sw.cells:
        path = c.path(runs)
        if c.is_acting or not path.exists():   # a variant has no learning curve
            continue
        rows = read_results(path)["rows"]
        steps = sorted({r["step"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        grid = np.full((len(seeds), len(steps)), np.nan)
        for r in rows:
            grid[seeds.index(r["seed"]), steps.index(r["step"])] = r["score"]
        out[c.label] = {"steps": np.asarray(steps), "scores": grid}
    return out


def run(runs: Path, out: Path, log: Callable[[str], None] = print,
        sweep_name: str = SWEEP) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    sweep.run(sw, runs=runs, log=log)
    cur = curves(sw, runs)
    c = next(c for c in sw.cells if c.label == SYNTHER)
    cfg = c.config()
    # Before the first retrain no synthetic row has been used: up to there SynthER's agent is
    # SAC at UTD 20 under other random keys, so those evaluations say nothing about synthesis.
    auc = {k: np.nanmean(v["scores"][:, v["steps"] > cfg.retrain_every], axis=1)
           for k, v in cur.items()}
    final = {k: v["scores"][:, -1] for k, v in cur.items()}
    tests = []
    for base in BASELINES:
        if SYNTHER in auc and base in auc:
            est = stats.improvement_interval({"curve": auc[SYNTHER]}, {"curve": auc[base]})
            tests.append(Test(f"{SYNTHER} vs {base}", "P(a seed's mean score over the "
                              "evaluations after the first retrain is above a seed's of the "
                              "baseline)", *est, 0.5))
    fig = figure(cur, out / "figures" / "claim_online.png", cfg.retrain_every)
    setup = (f"Sweep `{sw.name}` (`bench/sweeps/{sw.path.name}`; table "
             f"`results/{leaderboard.outputs(sw, out)['md'].name}`): {c.dataset[4:]}, "
             f"{cfg.steps:,d} env steps ({cfg.start_steps:,d} random), evaluated every "
             f"{cfg.eval_every:,d} over {cfg.eval_episodes} episodes, {c.seeds} seeds; SynthER "
             f"retrained every {cfg.retrain_every:,d} steps ({cfg.synthetic:,d} samples, "
             f"generator width {cfg.generator.diffusion.width}, {cfg.generator.steps:,d} "
             f"steps), half of each batch synthetic. A test compares the seeds' mean score "
             f"over the evaluations after the first retrain (the area under the curve where "
             f"synthetic data is in use; before it SynthER's agent is SAC at UTD 20).")
    pts = "; ".join(f"{k}: " + ", ".join(f"{s:,d} steps {np.nanmean(v['scores'][:, i]):.1f}"
                                         for i, s in enumerate(v["steps"]))
                    for k, v in cur.items())
    notes = (f"Mean normalised score at each evaluation: {pts}. Final: "
             + "; ".join(f"{k} {v.mean():.1f} ± {v.std():.1f}" for k, v in final.items()) + ".")
    return Finding("online", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(cur, path: Path, first_retrain: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, v in cur.items():
        m = np.nanmean(v["scores"], axis=0)
        lo, hi = np.nanpercentile(v["scores"], [10, 90], axis=0)
        ax.plot(v["steps"], m, marker="o", label=label)
        ax.fill_between(v["steps"], lo, hi, alpha=0.2)
    ax.axvline(first_retrain, color="k", ls=":", lw=1, label="first retrain")
    ax.set_xlabel("env steps")
    ax.set_ylabel("normalised score (mean; 10-90% of seeds)")
    ax.legend(fontsize=7)
    sysinfo.save_figure(fig, path)
    return path
