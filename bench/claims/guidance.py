"""Claim 6, guidance strength: stronger guidance makes a diffusion planner's samples more
targeted (higher return) and less diverse (the survey's design trade-off "guidance strength vs
diversity").

Measured for both kinds of guidance on Pendulum medium-expert, where `state_from_obs` is
exact, each from the same trained models at every strength:
- Decision Diffuser's classifier-free guidance on the return (the `decision` sweep's fast
  preset) at weights `WEIGHTS` (the authors' 1.2 among them);
- Diffuser's value-gradient guidance (the `guidance` sweep's cell at the authors' scale 0.1) at
  guide scales `SCALES`, the 64 plans of one decision (`measure_diffuser`).
1. held-out start states: fresh Pendulum resets (`PRNGKey(HELD_OUT_KEY)`), the states an
   episode starts from;
2. from each start, each seed's model samples `SAMPLES` plans at each weight (the preset's
   sampler, target return and temperature; only `w` changes, and every weight draws the same
   noise: common random numbers, so weights are compared on equal draws);
3. per plan: its *return*, the reward the true env pays for executing it open loop from the
   start (the inverse dynamics' actions between consecutive planned states, replayed for
   H - 1 steps; Diffuser's plans carry their own actions); its *consistency error*, the
   distance of each planned state from the true step of the previous planned state under that
   action;
4. per start: the plans' *diversity*, the mean pairwise RMS distance between their state
   sequences after the inpainted start, each dimension in units of the dataset's standard
   deviation;
5. per seed: the means over starts and plans.
The closed-loop score at each strength the sweeps evaluated (replanning every step: the
`decision` sweep's acting variants, the `guidance` sweep's cells at scale 0 and 0.1) is drawn
beside them. Two tests per planner, fixed before the run, at the authors' strength against none
(w = 0, scale 0), paired by seed (the same models, starts and noise): the mean over seeds of a
seed's difference in return, and in diversity, each with its 95% bootstrap interval over seeds
against 0.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Guidance strength: the return of a planner's samples vs their diversity"
STATEMENT = ("Stronger guidance produces more targeted samples but reduces their diversity "
             "(survey, design trade-offs: guidance strength vs diversity; Decision "
             "Diffuser's classifier-free guidance on the return, Ajay et al. 2023, and "
             "Diffuser's value-gradient guidance, Janner et al. 2022).")
SWEEP = "decision"
PLANNER = "Decision Diffuser (fast)"
WEIGHTS = (0.0, 0.6, 1.2, 2.5, 5.0)   # guidance weights w; the authors' 1.2
STARTS = 16         # held-out start states per seed
SAMPLES = 64        # plans per start and weight
HELD_OUT_KEY = 7_777
DIFFUSER_SWEEP = "guidance"   # Diffuser's value guidance: its cell at the authors' scale
DIFFUSER = "Diffuser"
SCALES = (0.0, 0.03, 0.1, 0.3, 1.0)   # guide scales; the authors' 0.1


def diversity(states, obs_std):
    """Mean pairwise RMS distance of plans `states (S, H, obs_dim)` after their shared start,
    each dimension in units of `obs_std`; over the S (S - 1) ordered pairs of distinct plans."""
    n = states.shape[0]
    z = (states[:, 1:] / obs_std).reshape(n, -1)
    d = jnp.sqrt(jnp.mean((z[:, None] - z[None]) ** 2, -1))         # (S, S), zero diagonal
    return d.sum() / (n * (n - 1))


def replay(env, start, states, actions, obs_std):
    """A plan `states (H, obs_dim)`, `actions (H - 1, act_dim)` (env units) executed open loop
    in the true env from `start`: `(return, consistency error)`, the reward summed over the
    H - 1 steps, and the mean over steps of the RMS distance (in `obs_std` units) of each planned
    state from the true step of the previous planned state under its action."""
    def step(st, a):
        _, st, r, *_ = env.step(jax.random.PRNGKey(0), st, a)
        return st, r

    _, rewards = jax.lax.scan(step, env.state_from_obs(start), actions)
    nxt = jax.vmap(lambda s, a: env.step(jax.random.PRNGKey(0), env.state_from_obs(s), a)[0])(
        states[:-1], actions)
    return rewards.sum(), jnp.sqrt(jnp.mean(((states[1:] - nxt) / obs_std) ** 2, -1)).mean()


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
        ret, cons = replay(env, start, states, actions, obs_std)
        return ret, states, cons

    def one_start(args):
        start, w, k = args
        ret, states, cons = jax.vmap(lambda kk: one_plan(start, w, kk))(
            jax.random.split(k, SAMPLES))
        return ret.mean(), diversity(states, obs_std), cons.mean()

    return _over_grid(one_start, starts, weights, key)


def _over_grid(one_start, starts, weights, key):
    """`one_start((start, weight, key)) -> tuple of scalars` over every start and weight (one
    key per start, the same at every weight: common random numbers), each averaged over the
    starts: a tuple of `(len(weights),)` arrays."""
    n, nw = starts.shape[0], weights.shape[0]
    grid_s = jnp.tile(starts, (nw, 1))                                # weight-major
    grid_w = jnp.repeat(weights, n)
    keys = jnp.tile(jax.random.split(key, n), (nw, 1))               # one start, one noise
    out = jax.lax.map(one_start, (grid_s, grid_w, keys))
    return tuple(v.reshape(nw, n).mean(1) for v in out)


def measure_diffuser(state, config, env, starts, scales, key, obs_std):
    """Diffuser's value guidance, one seed's models: `(return, diversity, consistency, value)`,
    each `(len(scales),)`, means over `starts` and the `n_plans` guided plans of one decision
    (`algos.diffuser.make_guided_planner`, the guide scale traced; the same noise at every
    scale). A plan executes its own first H - 1 actions; `value` is the value function's
    estimate of a plan, the quantity guidance climbs."""
    from algos import diffuser

    plan = diffuser.make_guided_planner(config, env.act_dim, env.obs_dim)
    if config.horizon - 1 >= env.spec.episode_length:
        raise ValueError(f"horizon {config.horizon} is not below {env.spec.env_id}'s episode "
                         "length")

    def one_start(args):
        start, scale, k = args
        p = plan(state, start, k, scale)
        ret, cons = jax.vmap(lambda o, a: replay(env, start, o, a[:-1], obs_std))(
            p.obs, p.action)
        return ret.mean(), diversity(p.obs, obs_std), cons.mean(), p.value.mean()

    return _over_grid(one_start, starts, scales, key)


def closed_loop(sw, runs: Path, cell, field: str = "guidance_w") -> Dict[float, np.ndarray]:
    """`{value of field: final normalised scores}` of the planner's trained `cell` and of the
    sweep's other cells on the same dataset (acting variants, or cells trained apart) whose
    config differs from the cell's in `field` only (from the leaderboard's rows: diverged
    seeds left out, a variant only when it evaluated this training)."""
    from bench import leaderboard

    rows = {(r["label"], r["dataset"]): r for r in leaderboard.collect(sw, runs)
            if r["status"] == "done"}
    out = {}
    for c in varied(sw, cell, field):
        row = rows.get((c.label, c.dataset))
        x = float(getattr(c.act_config() if c.is_acting else c.config(), field))
        if row is not None and x not in out:
            out[x] = np.asarray(row["scores"], float)
    return dict(sorted(out.items()))


def varied(sw, cell, field: str):
    """The cells of `sw` (`cell` among them: acting variants or cells trained apart) that
    differ from `cell` in `field` only: the same algorithm, dataset, seeds, tasks and config."""
    base = cell.config()
    out = []
    for c in sw.cells:
        if (c.algo != cell.algo or c.dataset != cell.dataset or c.seeds != cell.seeds
                or c.tasks != cell.tasks):
            continue
        cfg = c.act_config() if c.is_acting else c.config()
        if dataclasses.replace(cfg, **{field: getattr(base, field)}) == base:
            out.append(c)
    return out


def _restored(cell, runs: Path, starts: int, log: Callable[[str], None]):
    """A planner cell trained (or restored: `bench.train.run`), with what measuring its plans
    needs: `(result, trained state, dataset, env, obs_std, start observations, key)`."""
    import envs
    from bench import train
    from envs import datasets

    result, trained = train.run(cell.algo, cell.dataset, cell.seeds, steps=cell.steps,
                                overrides=cell.sets, out=runs, log=log, return_state=True,
                                typed=True)
    data = datasets.load(cell.dataset)
    env = envs.make(data.env_id)
    obs_std = jnp.asarray(np.asarray(data.transitions["obs"], np.float32).std(0) + 1e-6)
    keys = jax.random.split(jax.random.PRNGKey(HELD_OUT_KEY), starts + 1)
    start_obs = jax.vmap(lambda k: env.reset(k)[0])(keys[1:])
    return result, trained, data, env, obs_std, start_obs, keys[0]


def measured(cell, runs: Path, weights, starts: int = STARTS,
             log: Callable[[str], None] = print):
    """A Decision Diffuser cell's plans measured from `starts` held-out starts at each weight:
    `(results, dataset, (return, diversity, consistency))`, each `(seeds, weights)`, and its
    denoiser's parameter count."""
    result, trained, data, env, obs_std, start_obs, key = _restored(cell, runs, starts, log)
    config = cell.config()
    w = jnp.asarray(weights, jnp.float32)
    log(f"{cell.label}: {cell.seeds} seeds x {starts} starts x {SAMPLES} plans at w = "
        f"{', '.join(f'{x:g}' for x in weights)}")
    per_seed = jax.jit(jax.vmap(lambda s, k: measure(s, config, env, start_obs, w, k,
                                                     obs_std)))
    out = per_seed(trained.algo, jax.random.split(key, cell.seeds))
    n_params = sum(int(np.prod(x.shape[1:])) for x in
                   jax.tree_util.tree_leaves(trained.algo.params["denoiser"]))
    return result, data, tuple(np.asarray(x) for x in out), n_params


def measured_diffuser(cell, runs: Path, scales, starts: int = STARTS,
                      log: Callable[[str], None] = print):
    """A Diffuser cell's guided plans measured the same way at each guide scale: `(results,
    dataset, (return, diversity, consistency, value))`, each `(seeds, scales)`."""
    result, trained, data, env, obs_std, start_obs, key = _restored(cell, runs, starts, log)
    config = cell.config()
    log(f"{cell.label}: {cell.seeds} seeds x {starts} starts x {config.n_plans} plans at "
        f"scale = {', '.join(f'{x:g}' for x in scales)}")
    per_seed = jax.jit(jax.vmap(lambda s, k: measure_diffuser(
        s, config, env, start_obs, jnp.asarray(scales, jnp.float32), k, obs_std)))
    out = per_seed(trained.algo, jax.random.split(key, cell.seeds))
    return result, data, tuple(np.asarray(x) for x in out)


def run(runs: Path, out: Path, log: Callable[[str], None] = print, sweep_name: str = SWEEP,
        starts: int = STARTS, weights=WEIGHTS, diffuser_sweep: Optional[str] = DIFFUSER_SWEEP,
        scales=SCALES) -> Finding:
    from bench import leaderboard, sweep

    sw = sweep.load(sweep_name)
    cell = next(c for c in sw.cells if c.label == PLANNER)
    config = cell.config()
    authors = config.guidance_w
    if authors not in weights or 0.0 not in weights:
        raise ValueError(f"weights must include 0 and the preset's {authors:g}")
    dsw = dcell = None
    if diffuser_sweep:
        dsw = sweep.load(diffuser_sweep)
        dcell = next((c for c in dsw.cells if c.label == DIFFUSER), None)
        if dcell is None:
            raise ValueError(f"sweep {dsw.name} has no cell labelled {DIFFUSER!r}")
        if dcell.config().guide_scale not in scales or 0.0 not in scales:
            raise ValueError(f"scales must include 0 and the cell's "
                             f"{dcell.config().guide_scale:g}")
    # the planner's cell and its variants (the sweep's other cells answer other questions)
    sweep.run(dataclasses.replace(sw, cells=tuple(c for c in sw.cells
                                                  if c.trained.label == PLANNER)),
              runs=runs, log=log)
    result, data, (ret, div, cons), _ = measured(cell, runs, weights, starts, log)
    seeds = cell.seeds
    tests = _tests(f"Decision Diffuser: {data.env_id}, {starts} starts x {SAMPLES} plans x "
                   f"{seeds} seeds, w {authors:g} vs 0", weights, authors, ret, div,
                   "guidance at the authors' weight")
    closed = closed_loop(sw, runs, cell)
    panels = [("Decision Diffuser: classifier-free guidance weight w", weights, ret, div, cons,
               None, closed, authors)]
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
    notes = "Decision Diffuser, means over seeds: " + "; ".join(
        _row(f"w {x:g}", j, ret, div, cons, None, closed.get(float(x)))
        for j, x in enumerate(weights)) + "."
    if dcell is not None:
        dcfg = dcell.config()
        # its cell and the cells that differ from it in the guide scale only
        sweep.run(dataclasses.replace(dsw, cells=tuple(varied(dsw, dcell, "guide_scale"))),
                  runs=runs, log=log)
        dres, ddata, (dret, ddiv, dcons, dval) = measured_diffuser(dcell, runs, scales, starts,
                                                                   log)
        tests += _tests(f"Diffuser: {ddata.env_id}, {starts} starts x {dcfg.n_plans} plans x "
                        f"{dcell.seeds} seeds, scale {dcfg.guide_scale:g} vs 0", scales,
                        dcfg.guide_scale, dret, ddiv, "value guidance at the authors' scale")
        dclosed = closed_loop(dsw, runs, dcell, "guide_scale")
        panels.append(("Diffuser: value-gradient guide scale", scales, dret, ddiv, dcons, dval,
                       dclosed, dcfg.guide_scale))
        setup += (f" Diffuser: the `{dsw.name}` sweep's cell (`bench/sweeps/{dsw.path.name}`), "
                  f"{dcell.dataset}, horizon {dcfg.horizon}, {dcfg.diffusion.sampler} over "
                  f"T={dcfg.diffusion.T}, {dcfg.n_guide_steps} guide steps, t_stopgrad "
                  f"{dcfg.t_stopgrad}, U-Net dim {dcfg.diffusion.width}, {dcfg.steps:,d} steps, "
                  f"{dcell.seeds} seeds (results `{dres['config_hash']}`); the same starts, "
                  f"the {dcfg.n_plans} plans of one decision per scale (the guide scale traced, "
                  f"the same noise at every scale), each plan executing its own first "
                  f"{dcfg.horizon - 1} actions open loop; value: the value function's estimate "
                  f"of a plan, what the guidance climbs. Closed-loop scores: the sweep's cells "
                  f"that differ in the scale only (trained apart on the same seeds: the scale "
                  f"acts only when planning).")
        notes += " Diffuser, means over seeds: " + "; ".join(
            _row(f"scale {x:g}", j, dret, ddiv, dcons, dval, dclosed.get(float(x)))
            for j, x in enumerate(scales)) + "."
    fig = figure(panels, out / "figures" / "claim_guidance.png")
    return Finding("guidance", TITLE, STATEMENT, setup, tests, fig, notes)


def _tests(where: str, xs, authors: float, ret, div, what: str):
    """The two paired tests at `authors` against 0: the mean over seeds of a seed's gain in
    return, and of its loss of diversity, each with its bootstrap interval against 0."""
    i0, ia = list(xs).index(0.0), list(xs).index(authors)
    t1 = stats.interval(stats.mean, {"return": ret[:, ia] - ret[:, i0]})
    t2 = stats.interval(stats.mean, {"diversity": div[:, i0] - div[:, ia]})
    return [Test(where, f"Mean over seeds of a seed's gain in plan return (the reward its plans "
                        f"earn executed open loop from the start) from {what}; paired: the "
                        f"same models, starts and noise", *t1, 0.0),
            Test(where, f"Mean over seeds of a seed's loss of plan diversity (mean pairwise RMS "
                        f"distance of the planned states, in data standard deviations) from "
                        f"{what}; paired the same way", *t2, 0.0)]


def _row(name: str, j: int, ret, div, cons, value, closed) -> str:
    return (f"{name}: return {ret[:, j].mean():.1f}, "
            + (f"value {value[:, j].mean():.1f}, " if value is not None else "")
            + f"diversity {div[:, j].mean():.3f}, consistency error {cons[:, j].mean():.3f}"
            + (f", closed-loop score {closed.mean():.1f} ± {closed.std():.1f}"
               if closed is not None and len(closed) else ""))


def figure(panels, path: Path) -> Path:
    """One row of four panels per planner: `(title, xs, return, diversity, consistency, value
    or None, closed-loop {x: scores}, the authors' x)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, grid = plt.subplots(len(panels), 4, figsize=(12.0, 3.2 * len(panels)), squeeze=False)
    for axes, (title, xs, ret, div, cons, value, closed, authors) in zip(grid, panels):
        w = np.asarray(xs, float)
        for ax, v, label in [(axes[0], ret, "open-loop return of a plan"),
                             (axes[1], div, "plan diversity (data stds)"),
                             (axes[2], cons, "consistency error (data stds)")]:
            ax.plot(w, v.mean(0), "o-", color="tab:blue")
            ax.fill_between(w, v.min(0), v.max(0), color="tab:blue", alpha=0.2)
            ax.set_ylabel(label, fontsize=8)
        if value is not None:
            twin = axes[0].twinx()
            twin.plot(w, value.mean(0), "s--", color="tab:green", ms=3)
            twin.set_ylabel("value estimate (dashed)", fontsize=8, color="tab:green")
        ax = axes[3]
        if closed:
            for x, s in closed.items():
                ax.plot(np.full(len(s), x), s, "k.", ms=3)
            cx = list(closed)
            ax.plot(cx, [closed[x].mean() if len(closed[x]) else np.nan for x in cx], "o-",
                    color="tab:red")
        ax.set_ylabel("closed-loop normalised score", fontsize=8)
        every = np.r_[w, np.asarray(list(closed or ()), float)]   # the closed loop's too
        pos = every[every > 0]
        log = bool(pos.size and every.max() / pos.min() > 20)  # spans decades: log past 0
        if log:   # 0 drawn just inside the left edge, with no negative decade beside it
            xlim = (-0.3 * pos.min(), 1.5 * every.max())
        else:
            pad = 0.05 * (every.max() - every.min()) or 0.5
            xlim = (every.min() - pad, every.max() + pad)
        for ax in axes:   # one x range for the row, the closed-loop panel's too
            ax.set_xlabel(title.split(": ", 1)[1], fontsize=8)
            ax.axvline(authors, color="k", lw=0.5, ls=":")
            if log:   # ticks at the strengths measured, written plainly (0, 0.03, 0.1, ...)
                ax.set_xscale("symlog", linthresh=float(pos.min()))
                ticks = np.unique(every)
                ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(*xlim)
        axes[0].set_title(title.split(": ", 1)[0], fontsize=9, loc="left")
    fig.suptitle("Guidance strength vs the plans' return, diversity and consistency (mean over "
                 "seeds, min-max band; dotted: the authors' setting)", fontsize=8)
    fig.tight_layout()
    sysinfo.save_figure(fig, path)
    return path
