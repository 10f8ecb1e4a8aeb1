"""Claim 6, guidance strength: stronger guidance makes a diffusion planner's samples more
targeted (higher return) and less diverse (the survey's design trade-off "guidance strength vs
diversity").

Measured with Decision Diffuser's classifier-free guidance on the return (the `decision`
sweep's fast preset on Pendulum medium-expert, where `state_from_obs` is exact), at guidance
weights `WEIGHTS` (the authors' 1.2 among them), from the same trained models. (The `guidance`
sweep is the other kind of guidance, Diffuser's value gradient at scale 0 and 0.1, scored in
closed loop only.)
1. held-out start states: fresh Pendulum resets (`PRNGKey(HELD_OUT_KEY)`), the states an
   episode starts from;
2. from each start, each seed's model samples `SAMPLES` plans at each weight (the preset's
   sampler, target return and temperature; only `w` changes, and every weight draws the same
   noise: common random numbers, so weights are compared on equal draws);
3. per plan: its *return*, the reward the true env pays for executing it open loop from the
   start (the inverse dynamics' actions between consecutive planned states, replayed for
   H - 1 steps); its *consistency error*, the distance of each planned state from the true
   step of the previous planned state under that action;
4. per start: the plans' *diversity*, the mean pairwise RMS distance between their state
   sequences after the inpainted start, each dimension in units of the dataset's standard
   deviation;
5. per seed: the means over starts and plans.
The closed-loop score at each weight the sweep's acting variants evaluated (replanning every
step, `bench/sweeps/decision.toml`) is drawn beside them. Two tests, fixed before the run, at
the authors' weight against none (w = 0), paired by seed (the same models, starts and noise):
the mean over seeds of a seed's difference in return, and in diversity, each with its 95%
bootstrap interval over seeds against 0.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Guidance strength: the return of a planner's samples vs their diversity"
STATEMENT = ("Stronger guidance produces more targeted samples but reduces their diversity "
             "(survey, design trade-offs: guidance strength vs diversity; Decision "
             "Diffuser's classifier-free guidance on the return, Ajay et al. 2023).")
SWEEP = "decision"
PLANNER = "Decision Diffuser (fast)"
WEIGHTS = (0.0, 0.6, 1.2, 2.5, 5.0)   # guidance weights w; the authors' 1.2
STARTS = 16         # held-out start states per seed
SAMPLES = 64        # plans per start and weight
HELD_OUT_KEY = 7_777


def diversity(states, obs_std):
    """Mean pairwise RMS distance of plans `states (S, H, obs_dim)` after their shared start,
    each dimension in units of `obs_std`; over the S (S - 1) ordered pairs of distinct plans."""
    n = states.shape[0]
    z = (states[:, 1:] / obs_std).reshape(n, -1)
    d = jnp.sqrt(jnp.mean((z[:, None] - z[None]) ** 2, -1))         # (S, S), zero diagonal
    return d.sum() / (n * (n - 1))


def measure(state, config, env, starts, weights, key, obs_std):
    """One seed's model: `(return, diversity, consistency)`, each `(len(weights),)`, means
    over `starts (n, obs_dim)` and `config`'s planner's samples (`SAMPLES` per start; the
    same noise at every weight)."""
    from algos import decision_diffuser as dd

    act_dim, obs_dim = env.act_dim, env.obs_dim
    plan = dd.make_planner(config, act_dim, obs_dim)
    h = config.horizon
    if h - 1 >= env.spec.episode_length:   # the replay must not reach an auto-reset
        raise ValueError(f"horizon {h} is not below {env.spec.env_id}'s episode length")

    def one_plan(start, w, k):
        x, _ = plan(state, start, k, None, w)                       # (H, obs_dim) normalised
        states = state.norm.obs_from(x)
        actions = dd.plan_actions(state, x, act_dim, config.inv_hidden)   # (H - 1, act_dim)

        def step(st, a):
            _, st, r, *_ = env.step(jax.random.PRNGKey(0), st, a)
            return st, r

        _, rewards = jax.lax.scan(step, env.state_from_obs(start), actions)
        nxt = jax.vmap(lambda s, a: env.step(jax.random.PRNGKey(0), env.state_from_obs(s),
                                             a)[0])(states[:h - 1], actions)
        cons = jnp.sqrt(jnp.mean(((states[1:] - nxt) / obs_std) ** 2, -1)).mean()
        return rewards.sum(), states, cons

    def one_start(args):
        start, w, k = args
        ret, states, cons = jax.vmap(lambda kk: one_plan(start, w, kk))(
            jax.random.split(k, SAMPLES))
        return ret.mean(), diversity(states, obs_std), cons.mean()

    n, nw = starts.shape[0], weights.shape[0]
    grid_s = jnp.tile(starts, (nw, 1))                                # weight-major
    grid_w = jnp.repeat(weights, n)
    keys = jnp.tile(jax.random.split(key, n), (nw, 1))               # one start, one noise
    ret, div, cons = jax.lax.map(one_start, (grid_s, grid_w, keys))
    return tuple(v.reshape(nw, n).mean(1) for v in (ret, div, cons))


def closed_loop(sw, runs: Path, cell) -> Dict[float, np.ndarray]:
    """`{w: final normalised scores}` of the planner's trained `cell` and of its acting
    variants on the same dataset that change the guidance weight and nothing else (from the
    leaderboard's rows: diverged seeds left out, a variant only when it evaluated this
    training)."""
    from bench import leaderboard

    rows = {(r["label"], r["dataset"]): r for r in leaderboard.collect(sw, runs)
            if r["status"] == "done"}
    base = cell.config()
    out = {}
    for c in sw.cells:
        if c.trained.label != cell.label or c.dataset != cell.dataset:
            continue
        cfg = c.act_config() if c.is_acting else base
        row = rows.get((c.label, c.dataset))
        w = float(cfg.guidance_w)
        if (row is not None and w not in out
                and dataclasses.replace(cfg, guidance_w=base.guidance_w) == base):
            out[w] = np.asarray(row["scores"], float)
    return dict(sorted(out.items()))


def measured(cell, runs: Path, weights, starts: int = STARTS,
             log: Callable[[str], None] = print):
    """A planner cell trained (or restored: `bench.train.run`) and its plans measured from
    `starts` held-out starts at each weight: `(results, dataset, (return, diversity,
    consistency))`, each `(seeds, weights)`, and its denoiser's parameter count."""
    import envs
    from bench import train
    from envs import datasets

    result, trained = train.run(cell.algo, cell.dataset, cell.seeds, steps=cell.steps,
                                overrides=cell.sets, out=runs, log=log, return_state=True,
                                typed=True)
    config = cell.config()
    data = datasets.load(cell.dataset)
    env = envs.make(data.env_id)
    obs_std = jnp.asarray(np.asarray(data.transitions["obs"], np.float32).std(0) + 1e-6)
    keys = jax.random.split(jax.random.PRNGKey(HELD_OUT_KEY), starts + 1)
    start_obs = jax.vmap(lambda k: env.reset(k)[0])(keys[1:])
    w = jnp.asarray(weights, jnp.float32)
    log(f"{cell.label}: {cell.seeds} seeds x {starts} starts x {SAMPLES} plans at w = "
        f"{', '.join(f'{x:g}' for x in weights)}")
    per_seed = jax.jit(jax.vmap(lambda s, k: measure(s, config, env, start_obs, w, k,
                                                     obs_std)))
    out = per_seed(trained.algo, jax.random.split(keys[0], cell.seeds))
    n_params = sum(int(np.prod(x.shape[1:])) for x in
                   jax.tree_util.tree_leaves(trained.algo.params["denoiser"]))
    return result, data, tuple(np.asarray(x) for x in out), n_params


def run(runs: Path, out: Path, log: Callable[[str], None] = print, sweep_name: str = SWEEP,
        starts: int = STARTS, weights=WEIGHTS) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    cell = next(c for c in sw.cells if c.label == PLANNER)
    config = cell.config()
    authors = config.guidance_w
    if authors not in weights or 0.0 not in weights:
        raise ValueError(f"weights must include 0 and the preset's {authors:g}")
    # the planner's cell and its variants (the sweep's other cells answer other questions)
    sweep.run(dataclasses.replace(sw, cells=tuple(c for c in sw.cells
                                                  if c.trained.label == PLANNER)),
              runs=runs, log=log)
    result, data, (ret, div, cons), _ = measured(cell, runs, weights, starts, log)
    seeds = cell.seeds
    i0, ia = list(weights).index(0.0), list(weights).index(authors)
    t1 = stats.interval(stats.mean, {"return": ret[:, ia] - ret[:, i0]})
    t2 = stats.interval(stats.mean, {"diversity": div[:, i0] - div[:, ia]})
    where = (f"{data.env_id}, {starts} starts x {SAMPLES} plans x {seeds} seeds, "
             f"w {authors:g} vs 0")
    tests = [Test(where, "Mean over seeds of a seed's gain in plan return (the reward its "
                         "plans earn executed open loop from the start) from guidance at the "
                         "authors' weight; paired: the same models, starts and noise", *t1, 0.0),
             Test(where, "Mean over seeds of a seed's loss of plan diversity (mean pairwise "
                         "RMS distance of the planned states, in data standard deviations) "
                         "from guidance at the authors' weight; paired the same way", *t2, 0.0)]
    closed = closed_loop(sw, runs, cell)
    fig = figure(weights, ret, div, cons, closed, authors,
                 out / "figures" / "claim_guidance.png")
    setup = (f"Decision Diffuser: the `{sw.name}` sweep's preset (`bench/sweeps/"
             f"{sw.path.name}`; table `results/{leaderboard.outputs(sw, out)['md'].name}`), "
             f"{cell.dataset}, horizon {config.horizon}, {config.diffusion.sampler} over "
             f"{config.diffusion.sampling_steps} steps, temperature {config.temperature:g}, target "
             f"return {config.target_return:g}, {config.steps:,d} steps, {seeds} seeds "
             f"(results `{result['config_hash']}`). {starts} held-out starts (env resets, "
             f"PRNGKey({HELD_OUT_KEY})), {SAMPLES} plans each per weight; a plan's return is "
             f"the true env's reward over its {config.horizon - 1} steps executed open loop "
             "through the inverse dynamics. Closed-loop scores: the sweep's acting variants "
             "(the same models, replanning every step).")
    rows = []
    for j, x in enumerate(weights):
        cl = closed.get(float(x))
        rows.append(f"w {x:g}: return {ret[:, j].mean():.1f}, diversity {div[:, j].mean():.3f}, "
                    f"consistency error {cons[:, j].mean():.3f}"
                    + (f", closed-loop score {cl.mean():.1f} ± {cl.std():.1f}"
                       if cl is not None and len(cl) else ""))
    notes = "Means over seeds: " + "; ".join(rows) + "."
    return Finding("guidance", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(weights, ret, div, cons, closed, authors: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.asarray(weights, float)
    fig, axes = plt.subplots(1, 4, figsize=(12.0, 3.2))
    for ax, v, label in [(axes[0], ret, "open-loop return of a plan"),
                         (axes[1], div, "plan diversity (data stds)"),
                         (axes[2], cons, "consistency error (data stds)")]:
        ax.plot(w, v.mean(0), "o-", color="tab:blue")
        ax.fill_between(w, v.min(0), v.max(0), color="tab:blue", alpha=0.2)
        ax.set_ylabel(label, fontsize=8)
    ax = axes[3]
    if closed:
        for x, s in closed.items():
            ax.plot(np.full(len(s), x), s, "k.", ms=3)
        xs = list(closed)
        ax.plot(xs, [closed[x].mean() if len(closed[x]) else np.nan for x in xs], "o-",
                color="tab:red")
    ax.set_ylabel("closed-loop normalised score", fontsize=8)
    for ax in axes:
        ax.set_xlabel("guidance weight w", fontsize=8)
        ax.axvline(authors, color="k", lw=0.5, ls=":")
    fig.suptitle("Decision Diffuser: guidance weight vs return, diversity, consistency "
                 "(mean over seeds, min-max band; dotted: the authors' w)", fontsize=8)
    fig.tight_layout()
    sysinfo.save_figure(fig, path)
    return path
