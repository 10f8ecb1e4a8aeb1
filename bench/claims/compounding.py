"""Claim 3, compounding error: a diffusion planner generates a whole trajectory at once, so the
errors of step-by-step (autoregressive) model rollouts do not accumulate in it.

Measured on Maze2D umaze, where an observation is the whole state (`state_from_obs` exact):
1. held-out paths: episodes of the dataset's own behaviour (the waypoint controller with its
   action noise) drawn from a key the dataset never used; from each, an H-step window gives a
   start and the goal H - 1 steps later;
2. each seed's Diffuser (the quick sweep's cell) plans `[actions, states]` from that start to
   that goal; the true env replays the planned actions from the same start;
3. each seed's dynamics ensemble (`algos.dynamics`, MBPO's, trained on the same dataset) rolls
   the same actions out autoregressively from the same start;
4. position error against the replay at every step k: Diffuser's planned states, and the
   ensemble's rollout; also Diffuser's own dynamic consistency, the distance of planned state
   k + 1 from the true step of planned state k under planned action k.
Two tests (bench.stats' probability of improvement over seeds and its interval): whether a
seed's Diffuser error at the plan's last step is below a seed's ensemble error there (the
payoff the survey promises), and whether it grows less from the first step to the last (the
mechanism: no accumulation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bench import stats, sysinfo
from bench.claims import Finding, Test

TITLE = "Compounding error: whole-trajectory generation vs autoregressive rollouts"
STATEMENT = ("Autoregressive (per-step) model-based planning suffers from compounding error; "
             "diffusion planners generate the whole trajectory at once, so their errors do not "
             "accumulate along the horizon (survey §3 and §4.3, after Janner et al. 2022).")
SWEEP = "quick"
DATASET = "jaxrl/maze2d/umaze-v0"
ENV = "maze2d-umaze"
HELD_OUT = 64          # held-out windows per seed
ENSEMBLE_STEPS = 3000  # gradient steps of each seed's ensemble
HELD_OUT_KEY = 7_777   # the held-out episodes' key (the dataset used PRNGKey(0) folded by level)


def held_out_windows(env, horizon: int, n: int, key):
    """`(starts (n, obs_dim), goals (n, obs_dim))`: windows of fresh behaviour episodes."""
    from envs.datasets import builder

    eps = builder.collect_maze(env, key, 40 * env.spec.episode_length)
    eps = [e for e in eps if len(e["actions"]) >= horizon]
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2 ** 30)))
    picks = [(i, int(rng.integers(0, len(eps[i]["actions"]) - horizon + 1)))
             for i in rng.integers(0, len(eps), n)]
    starts = np.stack([eps[i]["observations"][s] for i, s in picks])
    goals = np.stack([eps[i]["observations"][s + horizon - 1] for i, s in picks])
    return jnp.asarray(starts), jnp.asarray(goals)


def replay(env, start, actions):
    """`(H + 1, obs_dim)` true states from `start` under `actions` (no auto-reset: H is below
    the episode length)."""
    state = env.state_from_obs(start)

    def step(st, a):
        obs, st, *_ = env.step(jax.random.PRNGKey(0), st, a)
        return st, obs

    _, obs = jax.lax.scan(step, state, actions)
    return jnp.concatenate([start[None], obs], 0)


def one_step(env, states, actions):
    """The true next state of every planned state under its planned action."""
    return jax.vmap(lambda s, a: env.step(jax.random.PRNGKey(0), env.state_from_obs(s), a)[0])(
        states, actions)


def measure(diffuser_state, ensemble_state, config, env, starts, goals, key, predict):
    """Per held-out window: position errors `(n, H)` of Diffuser's plan, the ensemble's
    rollout, and Diffuser's one-step consistency `(n, H - 1)`."""
    from algos import diffuser
    from algos.dynamics import rollout

    plan = diffuser.make_planner(config, env.act_dim, env.obs_dim)
    h = config.horizon

    def one(start, goal, k):
        p = plan(diffuser_state, start, goal, k)
        actions = p.action[:h - 1]
        true = replay(env, start, actions)                      # (H, obs_dim)
        model = rollout(predict, ensemble_state.model, start, actions)
        err_d = jnp.linalg.norm(p.obs[:, :2] - true[:, :2], axis=-1)
        err_e = jnp.linalg.norm(model[:, :2] - true[:, :2], axis=-1)
        nxt = one_step(env, p.obs[:h - 1], actions)
        consistency = jnp.linalg.norm(p.obs[1:, :2] - nxt[:, :2], axis=-1)
        return err_d, err_e, consistency

    keys = jax.random.split(key, starts.shape[0])
    return jax.vmap(one)(starts, goals, keys)


def run(runs: Path, out: Path, log: Callable[[str], None] = print, sweep_name: str = SWEEP,
        ensemble_steps: int = ENSEMBLE_STEPS, held_out: int = HELD_OUT) -> Finding:
    import envs
    from algos.dynamics import EnsembleSpec, make_ensemble_train
    from bench import sweep, train
    from envs import datasets

    sw = sweep.load(sweep_name)
    cell = next(c for c in sw.cells if c.label == "Diffuser" and c.dataset == DATASET)
    result, dstate = train.run(cell.algo, cell.dataset, cell.seeds, steps=cell.steps,
                               overrides=cell.sets, out=runs, log=log, return_state=True,
                               typed=True)
    config = cell.config()
    env = envs.make(ENV)
    data = datasets.load(DATASET)
    spec = EnsembleSpec()
    init, update, choose, predict = make_ensemble_train(spec, data, env)

    def fit(key):
        s, losses = jax.lax.scan(update, init(key), jax.random.split(key, ensemble_steps))
        return choose(s), losses[-100:].mean()

    seeds = cell.seeds
    log(f"compounding: {seeds} ensembles of {spec.members} x {spec.depth}x{spec.width}, "
        f"{ensemble_steps:,d} steps each, vmapped")
    estate, last_loss = jax.jit(jax.vmap(fit))(train.seed_keys(seeds))
    starts, goals = held_out_windows(env, config.horizon, held_out,
                                     jax.random.PRNGKey(HELD_OUT_KEY))
    per_seed = jax.jit(jax.vmap(
        lambda d, e, k: measure(d, e, config, env, starts, goals, k, predict)))
    err_d, err_e, cons = (np.asarray(x) for x in per_seed(
        dstate.algo, estate, jax.random.split(jax.random.PRNGKey(HELD_OUT_KEY + 1), seeds)))
    # (seeds, windows, steps): the test compares each seed's mean error at the last step
    last_d, last_e = err_d[:, :, -1].mean(1), err_e[:, :, -1].mean(1)
    t1 = stats.improvement_interval({"last step": -last_d}, {"last step": -last_e})
    # and whether the error accumulates: its growth from the first step to the last
    grow_d = last_d - err_d[:, :, 1].mean(1)
    grow_e = last_e - err_e[:, :, 1].mean(1)
    t2 = stats.improvement_interval({"growth": -grow_d}, {"growth": -grow_e})
    h = config.horizon
    where = f"Maze2D umaze, {held_out} held-out windows x {seeds} seeds"
    tests = [Test(f"{where}, step {h - 1}",
                  "P(a Diffuser seed's planned states end nearer the true replay of its "
                  "actions than an ensemble seed's rollout of the same actions)", *t1, 0.5),
             Test(f"{where}, growth from step 1 to step {h - 1}",
                  "P(a Diffuser seed's error grows less along the plan than an ensemble "
                  "seed's)", *t2, 0.5)]
    fig = figure(err_d, err_e, cons, out / "figures" / "claim_compounding.png")
    at = sorted({k for k in (1, 8, 16, 32) if k < h - 1} | {h - 1})
    row = lambda e: ", ".join(f"k={k}: {e[:, :, k].mean():.3f}" for k in at)  # noqa: E731
    setup = (f"Diffuser: the quick sweep's cell (`bench/sweeps/{sw.path.name}`, horizon {h}, "
             f"{config.steps:,d} steps, {seeds} seeds, results `{result['config_hash']}`). "
             f"Ensemble: `algos/dynamics.py` (MBPO's: {spec.members} members, "
             f"{spec.elites} elites, {spec.depth}x{spec.width} swish), {ensemble_steps:,d} "
             f"steps per seed on the same dataset (final NLL "
             f"{float(np.mean(last_loss)):.2f}). Held-out windows from fresh behaviour "
             f"episodes (PRNGKey({HELD_OUT_KEY})); errors are position distances in cells, "
             "against the true env replaying the plan's actions from the same start.")
    notes = (f"Mean position error, Diffuser's plan vs replay: {row(err_d)}. Ensemble rollout "
             f"vs replay: {row(err_e)}. Diffuser's one-step dynamic consistency: mean "
             f"{cons.mean():.3f}, at k=1 {cons[:, :, 0].mean():.3f}, at k={h - 2} "
             f"{cons[:, :, -1].mean():.3f}.")
    return Finding("compounding", TITLE, STATEMENT, setup, tests, fig, notes)


def figure(err_d, err_e, cons, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for e, label, color in [(err_d, "Diffuser plan vs replay of its actions", "tab:blue"),
                            (err_e, "ensemble rollout (autoregressive) vs replay", "tab:red"),
                            (cons, "Diffuser one-step consistency", "tab:cyan")]:
        per_seed = e.mean(1)                          # (seeds, steps)
        k = np.arange(per_seed.shape[1]) + (1 if e is cons else 0)
        if e is not cons:                             # step 0 is the shared start: no error
            k, per_seed = k[1:], per_seed[:, 1:]
        ax.plot(k, per_seed.mean(0), color=color, label=label)
        ax.fill_between(k, per_seed.min(0), per_seed.max(0), color=color, alpha=0.2)
    ax.set_xlabel("step k along the plan")
    ax.set_ylabel("position error (cells)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Maze2D umaze: error along the horizon (mean over seeds, min-max band)",
                 fontsize=8)
    sysinfo.save_figure(fig, path)
    return path
