"""`python -m bench speed planners`: throughput of the trajectory planners.

- Diffuser's train step at the authors' locomotion size (hopper's dims 11 + 3, horizon 32,
  U-Net dim 32 with mults (1, 2, 4, 8), T=20, x0-prediction, first-action weight 10, batch
  32, Adam) on random trajectories: the workload the authors' PyTorch code is timed on in
  `results/speed/diffuser-vs-pytorch.md`. 1 seed, 8 seeds vmapped, 8 one after another.
- Plans: 64 trajectories sampled at once at the locomotion size (start and end inpainted),
  with DDPM over all 20 steps, DDIM with 10 and 5, DPM-Solver++ with 10; plans/s. DDPM-20
  again with 1024 plans at once (the batch at which a GPU is busy). One umaze
  plan (horizon 128, DDPM-64): what Diffuser pays at an episode's first step.
- Value-guided plans: one locomotion decision, 64 plans from one state with DDPM-20, 2 guide
  steps through the value function (dim 32, mults (1, 2, 4, 8)) at every denoising step, the
  plans ranked by value: what Diffuser pays at every env step on locomotion.
- Decision Diffuser: one decision (one plan from one state with classifier-free guidance on
  the return, the conditional and null predictions in one call, then the inverse dynamics) at
  the original preset (horizon 100, T=200 DDPM, U-Net dim 128 mults (1, 4, 8): the authors'
  59.7M-parameter model) and at the fast one (horizon 32, DiT width 128 x 4 blocks, DDIM-20),
  hopper's 11 state dims.
- MPC: one decision (a whole CEM search through the ensemble) at PETS's settings and at the
  quick tier's.
"""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from algos.config import apply_overrides
from bench import speed

OBS, ACT, H = 11, 3, 32           # hopper's dims; the authors' locomotion horizon
PLANS = 64
BIG_PLANS = 1024                  # DDPM-20 again at a batch that fills a GPU


def _diffuser_config(quick: bool, **sets):
    from algos import diffuser

    base = {"horizon": H, "diffusion.T": 20, "diffusion.mults": "1,2,4,8",
            "action_weight": 10.0, "batch_size": 32}
    if quick:
        base.update({"horizon": 8, "diffusion.T": 4, "diffusion.width": 8,
                     "diffusion.mults": "1,2", "batch_size": 4})
    return apply_overrides(diffuser.Config(), {**base, **sets})


def _train_rows(quick, peak, log, max_seed_seconds, notes):
    """The locomotion-size train step on random trajectories (the side-by-side workload)."""
    import optax

    from algos import diffuser
    from algos.diffusion_spec import make_denoiser, make_loss
    from algos.nets import as_denoiser

    cfg = _diffuser_config(quick)
    h, d = cfg.horizon, ACT + OBS
    net, loss_fn = make_denoiser(cfg.diffusion), make_loss(cfg.diffusion)
    mask = diffuser.condition_mask(h, ACT, OBS)
    weights = diffuser.loss_weights(h, ACT, OBS, cfg.action_weight)
    tx = optax.adam(cfg.lr)
    k = 2 if quick else 10

    def loss(params, key, x0):
        return loss_fn(as_denoiser(net, params), key, x0, weights=weights, inpaint=(mask, x0))

    def one(s, k_):
        params, opt = s
        k_x, k_l = jax.random.split(k_)
        x0 = jax.random.uniform(k_x, (cfg.batch_size, h, d), minval=-1, maxval=1)
        value, grads = jax.value_and_grad(loss)(params, k_l, x0)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), value

    def steps(state, key):
        return jax.lax.scan(one, state, jax.random.split(key, k))

    def args_of(key):
        params = net.init(key, jnp.zeros((1, h, d)), jnp.zeros((1,), jnp.int32))
        return (params, tx.init(params)), key

    d_ = cfg.diffusion
    wl = SimpleNamespace(name="Diffuser train step", size=f"U-Net dim {d_.width} {d_.mults}, H={h}, "
                                               f"{ACT}+{OBS} dims, batch {cfg.batch_size}")
    log(f"Diffuser train step ({wl.size})")
    # XLA counts a scan's body once: the FLOPs of one step, times k
    compiled_one, _ = speed.compile_fn(one, *args_of(jax.random.PRNGKey(0)))
    flops = speed.flops_of(compiled_one)
    return speed._three_ways(wl, "grad steps", steps, args_of, k, "seed-steps/s",
                             None if flops is None else k * flops, peak, True, log,
                             max_seed_seconds, notes)


def _plan_rows(quick, peak, log):
    from algos import diffuser

    rows = []
    samplers = [("ddpm", 0)] if quick else [("ddpm", 0), ("ddim", 10), ("ddim", 5),
                                            ("dpm_solver_pp", 10)]
    for sampler, steps in samplers:
        cfg = _diffuser_config(quick, **{"diffusion.sampler": sampler,
                                         "diffusion.steps": steps})
        rows.append(_plans(diffuser, cfg, ACT, OBS, 4 if quick else PLANS,
                           f"{sampler}-{cfg.diffusion.sampling_steps}", peak, log))
    if not quick:
        rows.append(_plans(diffuser, _diffuser_config(False), ACT, OBS, BIG_PLANS,
                           f"ddpm-{cfg.diffusion.T}", peak, log))
        umaze = apply_overrides(diffuser.Config(),
                                diffuser.task_defaults("jaxrl/maze2d/umaze-v0"))
        rows.append(_plans(diffuser, umaze, 2, 4, 1, "ddpm-64 (Maze2D umaze)", peak, log))
    return rows


def _plans(diffuser, cfg, act_dim, obs_dim, n, label, peak, log):
    plan = diffuser.make_planner(cfg, act_dim, obs_dim)
    d = act_dim + obs_dim
    net_params = diffuser.make_denoiser(cfg.diffusion).init(
        jax.random.PRNGKey(0), jnp.zeros((1, cfg.horizon, d)), jnp.zeros((1,), jnp.int32))
    lim = diffuser.Limits(-jnp.ones(obs_dim), jnp.ones(obs_dim), -jnp.ones(act_dim),
                          jnp.ones(act_dim))
    state = diffuser.State(net_params, net_params, (), lim, jnp.zeros((), jnp.int32))
    obs, goal = jnp.zeros(obs_dim), jnp.full(obs_dim, 0.5)

    def many(state, key):
        return jax.vmap(lambda k: plan(state, obs, goal, k).obs)(jax.random.split(key, n))

    compiled, c_s = speed.compile_fn(many, state, jax.random.PRNGKey(1))
    sec, calls = speed._time_calls(lambda: compiled(state, jax.random.PRNGKey(1)))
    wl = SimpleNamespace(name=f"Diffuser, {label}", size=f"{n} plans of H={cfg.horizon}, "
                         f"U-Net dim {cfg.diffusion.width} {cfg.diffusion.mults}, "
                         f"{act_dim}+{obs_dim} dims")
    log(f"  {wl.size}: {n / sec:,.1f} plans/s, compile {c_s:.1f}s")
    return speed._row(wl, "plans", "1", speed.Timing(c_s, sec, calls), n, "plans/s",
                      speed.flops_of(compiled), peak)


def _guided_rows(quick, peak, log):
    from algos import diffuser

    cfg = _diffuser_config(quick, **{"diffusion.clip_x0": 0.0, "normalizer": "gaussian",
                                     "act_with": "actions"})
    if quick:
        cfg = apply_overrides(cfg, {"diffusion.width": 16, "n_plans": 4})
    plan = diffuser.make_guided_planner(cfg, ACT, OBS)
    x, t = jnp.zeros((1, cfg.horizon, ACT + OBS)), jnp.zeros((1,), jnp.int32)
    params = diffuser.make_denoiser(cfg.diffusion).init(jax.random.PRNGKey(0), x, t)
    value = diffuser.value_net(cfg).init(jax.random.PRNGKey(1), x, t)
    norm = diffuser.Gaussian(jnp.zeros(OBS), jnp.ones(OBS), jnp.zeros(ACT), jnp.ones(ACT))
    state = diffuser.State(params, params, (), norm, jnp.zeros((), jnp.int32), value, value, ())
    obs = jnp.zeros(OBS)

    def decide(state, key):
        return plan(state, obs, key).action[0, 0]

    compiled, c_s = speed.compile_fn(decide, state, jax.random.PRNGKey(1))
    sec, calls = speed._time_calls(lambda: compiled(state, jax.random.PRNGKey(1)))
    n = cfg.n_plans
    wl = SimpleNamespace(name=f"Diffuser, value-guided ddpm-{cfg.diffusion.T}", size=(
        f"{n} plans of H={cfg.horizon}, U-Net and value dim {cfg.diffusion.width} "
        f"{cfg.diffusion.mults}, {cfg.n_guide_steps} guide steps, {ACT}+{OBS} dims"))
    log(f"  guided decision ({wl.size}): {n / sec:,.1f} plans/s, {1e3 * sec:.1f} ms/decision, "
        f"compile {c_s:.1f}s")
    return [speed._row(wl, "plans", "1", speed.Timing(c_s, sec, calls), n, "plans/s",
                       speed.flops_of(compiled), peak)]


def _decision_rows(quick, peak, log):
    from algos import decision_diffuser, decision_diffuser_fast
    from algos.decision_diffuser import CDF, InverseDynamics, State, denoiser, make_planner

    rows = []
    for mod in (decision_diffuser, decision_diffuser_fast):
        cfg = apply_overrides(mod.Config(), mod.TINY if quick else {})
        h = cfg.horizon
        x, t, r = jnp.zeros((1, h, OBS)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,))
        params = {"denoiser": denoiser(cfg).init(jax.random.PRNGKey(0), x, t, r),
                  "inv": InverseDynamics(cfg.inv_hidden, ACT).init(
                      jax.random.PRNGKey(1), jnp.zeros(OBS), jnp.zeros(OBS))}
        rng = np.random.default_rng(0)
        norm = CDF.fit(rng.normal(size=(4096, OBS)), rng.uniform(-1, 1, (4096, ACT)))
        state = State(params, params, (), norm, jnp.zeros((), jnp.int32))
        plan = make_planner(cfg, ACT, OBS)
        obs = jnp.zeros(OBS)

        def decide(state, key):
            return plan(state, obs, key)[1]

        compiled, c_s = speed.compile_fn(decide, state, jax.random.PRNGKey(1))
        sec, calls = speed._time_calls(lambda: compiled(state, jax.random.PRNGKey(1)))
        d = cfg.diffusion
        net = (f"U-Net dim {d.width} {d.mults}" if d.backbone == "unet"
               else f"DiT width {d.width} x {d.depth}")
        wl = SimpleNamespace(name=f"{mod.LABEL}, {d.sampler}-{d.sampling_steps} CFG",
                             size=f"1 plan of H={h}, {net}, {OBS} state dims, inverse "
                                  f"dynamics {cfg.inv_hidden}")
        log(f"  Decision Diffuser decision ({wl.size}): {1e3 * sec:.1f} ms, compile {c_s:.1f}s")
        rows.append(speed._row(wl, "decision", "1", speed.Timing(c_s, sec, calls), 1,
                               "decisions/s", speed.flops_of(compiled), peak))
    return rows


def _mpc_rows(quick, peak, log):
    import envs
    from algos import mpc
    from algos.dynamics import EnsembleState, make_ensemble

    env = envs.make("maze2d-umaze")
    rows = []
    settings = [("quick tier", {"horizon": 16, "population": 32, "cem_elites": 4,
                                "iterations": 2})]
    if not quick:
        settings.append(("PETS", {}))
    for name, sets in settings:
        if quick:
            sets = {**sets, **mpc.TINY}
        cfg = apply_overrides(mpc.Config(), sets)
        init, *_ = make_ensemble(cfg.ensemble, env.obs_dim, env.act_dim)
        model = init(jax.random.PRNGKey(0), jnp.zeros(6), jnp.ones(6))
        state = EnsembleState(model, ())
        policy = mpc.make_policy(cfg, env.spec)
        obs = jnp.array([3.0, 1.0, 0.0, 0.0])
        carry = policy.init_carry(state, obs, env.default_task(), None)

        def act(state, carry, obs, key):
            return policy.act(state, carry, obs, key)[0]

        args = (state, carry, obs, jax.random.PRNGKey(2))
        compiled, c_s = speed.compile_fn(act, *args)
        sec, calls = speed._time_calls(lambda: compiled(*args))
        wl = SimpleNamespace(name=f"MPC (ensemble), {name}", size=(
            f"H={cfg.horizon}, {cfg.population} candidates x {cfg.iterations} "
            f"iterations, {cfg.ensemble.elites} elites {cfg.ensemble.depth}x"
            f"{cfg.ensemble.width}"))
        log(f"  MPC decision ({wl.size}): {1e3 * sec:.2f} ms")
        rows.append(speed._row(wl, "decision", "1", speed.Timing(c_s, sec, calls), 1,
                               "decisions/s", speed.flops_of(compiled), peak))
    return rows


GROUPS = ("train", "plans", "guided", "decision", "mpc")


def run_planners(quick=False, log=print, max_seed_seconds=60.0, only=GROUPS):
    """Rows in the format of `bench.speed` (same table and csv writers); `only` names the
    groups of rows to measure (`GROUPS`)."""
    sizes = (256,) if quick else (1024, 2048, 4096)
    peak = speed.matmul_peak(sizes)
    log(f"float32 matmul peak: {peak:,.1f} GFLOP/s")
    notes, rows = [], []
    if "train" in only:
        rows += _train_rows(quick, peak, log, max_seed_seconds, notes)
    for group, fn in (("plans", _plan_rows), ("guided", _guided_rows),
                      ("decision", _decision_rows), ("mpc", _mpc_rows)):
        if group in only:
            rows += fn(quick, peak, log)
    return rows, (peak, speed.matmul_peak(sizes)), notes


EXPLANATION = (
    __doc__.split("\n", 2)[2].strip() + "\n\nCompile time is a cold XLA compile; ms/call the "
    "median after a warm-up call. GFLOP/s from XLA's cost analysis (chains longer than 32 "
    "steps, and guided chains, are loops, whose body XLA counts once). vmap speed-up = time of 8 seeds one after "
    "another / time of 8 seeds in one vmapped program.")


def markdown(rows, peaks, notes, hw_line, versions, command) -> str:
    return speed.markdown(rows, peaks, notes, hw_line, versions, command,
                          title="Planner speed", explanation=EXPLANATION)
