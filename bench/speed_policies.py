"""`python -m bench speed policies`: throughput of the offline algorithms.

- Gradient steps: each algorithm's own `update` (batch sampling, every loss, every optimiser
  and target update of one step) on the hopper medium-replay dataset (state 11, action 3),
  default Config (batch 256, standard networks). One call runs `STEPS_PER_CALL` updates in a
  `lax.scan`; measured for 1 seed, 8 seeds vmapped and 8 seeds one after another.
  Diffusion-QL is measured with and without EDP's one-step action approximation.
- Decision: one jitted action selection for one observation (the diffusion policies sample
  their candidates through the whole chain), decisions/s and its latency.
- Evaluation: env-steps/s of whole hopper episodes with the policy in the loop (the diffusion
  policies sample their N candidates through the full chain at every step), 10 episodes per
  seed: 1 seed, 8 seeds vmapped into one lockstep episode loop, 8 seeds in one program as
  the harness evaluates them (`over_seeds` with the backend's `default_seed_batch`: on a CPU
  one seed after another inside the program), and the same 8 seeds in 8 calls one after
  another. The reference of the two 8-seed programs is the in-turn row (same seeds, same
  episodes); seed 0 alone is another workload, since every seed's policy has its own
  episode lengths.
"""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp

import algos
from algos.config import apply_overrides
from bench import speed

DATASET = ("hopper", "medium-replay")
QUICK_DATASET = ("bandit-2d", "multimodal")   # --quick: checks the harness, in seconds
STEPS_PER_CALL = 20
EPISODES = 10


def cases():
    """(label, algorithm, overrides): every algorithm at its defaults, and Diffusion-QL with
    EDP's action approximation."""
    out = [(a, a, {}) for a in algos.POLICIES]
    i = [c[0] for c in out].index("diffusion_ql") + 1
    return out[:i] + [("diffusion_ql + EDP", "diffusion_ql", {"action_approx": True})] + out[i:]


def _trains(quick: bool, log):
    import envs
    from envs import datasets

    env_id, level = QUICK_DATASET if quick else DATASET
    ds_id = datasets.build(env_id, level, log=log)
    data, env = datasets.load(ds_id), envs.make(env_id)
    out = []
    for label, algo, sets in cases():
        sets = dict(sets)
        if quick:
            sets.update(algos.get(algo).TINY, batch_size=16, eval_every=1, steps=1)
        cfg = apply_overrides(algos.get(algo).Config(), sets)
        out.append((label, algo, cfg, algos.get(algo).make_train(cfg, data, env)))
    return out, env


def run_policies(quick=False, log=print, max_seed_seconds=60.0):
    """Rows in the format of `bench.speed` (same table and csv writers)."""
    sizes = (256,) if quick else (1024, 2048, 4096)
    peak = speed.matmul_peak(sizes)
    log(f"float32 matmul peak: {peak:,.1f} GFLOP/s")
    trains, env = _trains(quick, log)
    k = 2 if quick else STEPS_PER_CALL
    rows, notes = [], []
    for label, algo, cfg, tr in trains:
        wl = SimpleNamespace(name=label, size=f"batch {cfg.batch_size}, {_nets(cfg)}")
        log(f"{label} ({wl.size})")

        def steps(state, key, tr=tr):
            return jax.lax.scan(tr.update, state, jax.random.split(key, k))

        def args_of(key, tr=tr):
            return jax.jit(tr.init_algo)(key), key

        one, _ = speed.compile_fn(tr.update, *args_of(jax.random.PRNGKey(0)))
        flops = speed.flops_of(one)
        rows += speed._three_ways(wl, "grad steps", steps, args_of, k, "seed-steps/s",
                                  None if flops is None else k * flops, peak, True, log,
                                  max_seed_seconds, notes)
    for label, algo, cfg, tr in trains:
        if label.endswith("EDP"):  # acts like Diffusion-QL
            continue
        rows += _decision_rows(label, algo, cfg, tr, env, peak, log)
        rows += _eval_rows(label, algo, cfg, tr, env, 2 if quick else EPISODES, peak, log)
    return rows, (peak, speed.matmul_peak(sizes)), notes


def _decision_rows(label, algo, cfg, tr, env, peak, log):
    """Action selection alone: one jitted `act` for one observation (Diffusion-QL: its
    candidates through the whole chain and the critic), the latency a deployed policy pays.
    Chains of up to `samplers.UNROLL_MAX` steps are unrolled, so the FLOPs count every step."""
    policy = algos.get(algo).make_policy(cfg, env.spec)
    state = jax.jit(tr.init_algo)(jax.random.PRNGKey(0))
    obs, _ = env.reset(jax.random.PRNGKey(1))
    carry = policy.init_carry(state, obs, env.default_task(), jax.random.PRNGKey(2))

    def act(state, carry, obs, key):
        return policy.act(state, carry, obs, key)[0]

    args = (state, carry, obs, jax.random.PRNGKey(2))
    compiled, c_s = speed.compile_fn(act, *args)
    sec, n = speed._time_calls(lambda: compiled(*args))
    wl = SimpleNamespace(name=label, size=f"one {env.env_id} observation")
    log(f"  decision: {1e3 * sec:.3f} ms, compile {c_s:.1f}s")
    return [speed._row(wl, "decision", "1", speed.Timing(c_s, sec, n), 1, "decisions/s",
                       speed.flops_of(compiled), peak)]


def _nets(cfg) -> str:
    parts = [f"hidden {'x'.join(map(str, cfg.hidden))}"] if hasattr(cfg, "hidden") else []
    if hasattr(cfg, "diffusion"):
        d = cfg.diffusion
        parts.append(f"{d.backbone} {d.depth}x{d.width}, T={d.T} {d.sampler}")
    if hasattr(cfg, "n_candidates"):
        parts.append(f"N={cfg.n_candidates}")
    if getattr(cfg, "action_approx", False):
        parts.append("EDP")
    return ", ".join(parts)


def _eval_rows(label, algo, cfg, tr, env, episodes, peak, log):
    """One seed; the same 8 seeds vmapped in one lockstep loop; the 8 in one program as the
    harness evaluates them (`over_seeds`); and those 8 in 8 calls one after another (the fair
    reference for both 8-seed programs: each seed's episodes have their own lengths, so seed
    0 alone is another workload)."""
    from envs.evaluation import default_seed_batch, make_evaluate, over_seeds

    run = make_evaluate(algos.get(algo).make_policy(cfg, env.spec), env, episodes)
    keys = jax.random.split(jax.random.PRNGKey(1), speed.SEEDS)
    states = jax.jit(jax.vmap(tr.init_algo))(keys)
    one = [jax.tree_util.tree_map(lambda x, i=i: x[i], states) for i in range(speed.SEEDS)]
    wl = SimpleNamespace(name=label, size=f"{episodes} {env.env_id} episodes per seed")
    single, c1 = speed.compile_fn(run, one[0], keys[0])
    batched, c8 = speed.compile_fn(jax.vmap(run), states, keys)
    seed_batch = default_seed_batch()
    harness, ch = speed.compile_fn(over_seeds(run, seed_batch), states, keys)
    in_program = f"{speed.SEEDS} in one program, {seed_batch or speed.SEEDS} in lockstep"
    rows, rate = [], {}
    for seeds, c_s, call, n_steps in [
            ("1", c1, lambda: single(one[0], keys[0]), lambda: single(one[0], keys[0])[1]),
            (f"{speed.SEEDS} vmapped", c8, lambda: batched(states, keys),
             lambda: batched(states, keys)[1]),
            (in_program, ch, lambda: harness(states, keys), lambda: harness(states, keys)[1]),
            (f"{speed.SEEDS} in turn", c1,
             lambda: [single(one[i], keys[i]) for i in range(speed.SEEDS)],
             lambda: jnp.stack([single(one[i], keys[i])[1] for i in range(speed.SEEDS)]))]:
        env_steps = int(jnp.sum(n_steps()))
        sec, n = speed._time_calls(call, warmup_limit=30.0)
        rate[seeds] = env_steps / sec
        rows.append(speed._row(wl, "evaluation", seeds, speed.Timing(c_s, sec, n), env_steps,
                               "env-steps/s", None, peak))
        log(f"  evaluation, {seeds}: {env_steps / sec:,.0f} env-steps/s "
            f"({env_steps} steps in {sec:.2f}s, compile {c_s:.1f}s)")
    # vmap speed-up, as for gradient steps: on the vmapped row, its env-steps/s over the
    # in-turn row's (same seeds, same episodes)
    for i, seeds in [(1, f"{speed.SEEDS} vmapped"), (2, in_program)]:
        rows[i]["speedup"] = rate[seeds] / rate[f"{speed.SEEDS} in turn"]
    return rows


EXPLANATION = (
    __doc__.split("\n", 2)[2].strip() + "\n\nThroughput counts seed-steps for gradient steps "
    f"(8 seeds vmapped do 8 x {STEPS_PER_CALL} per call) and env-steps for evaluation (all "
    "episodes of all seeds). Compile time is a cold XLA compile; ms/call the median after a "
    "warm-up call. GFLOP/s from XLA's cost analysis of one update or decision (sampling "
    "chains of up to 32 steps are unrolled, so every step is counted; longer ones are loops, "
    "whose body XLA counts once). vmap speed-up = time of 8 "
    "seeds one after another / time of 8 seeds in one program.")


def markdown(rows, peaks, notes, hw_line, versions, command) -> str:
    return speed.markdown(rows, peaks, notes, hw_line, versions, command,
                          title="Offline policy speed", explanation=EXPLANATION)
