"""`python -m bench.speed_seeds [--seeds 1,8,64] [--steps N] [--out FILE]`: how throughput
scales with vmapped seeds, for the accelerator target "64 vmapped seeds >= 40x one seed".

Self-contained, so it runs where Minari and the simulators are not installed (the GPU
machines): the data are 100k transitions of uniform random actions in Maze2D umaze (our pure-
JAX env), generated in-graph and handed to the algorithms as arrays. For each algorithm and
seed count: one compiled call of `N` gradient steps (`Train.update` in a `lax.scan`, every
seed's own batch) timed after a warm-up, the median of 3 (`bench.speed`'s timer: a call of 5 s
or more is timed once); seed-steps/s and `vs_first`, the throughput over that of the first
seed count (give 1 first: the ratio to one seed). Also the Diffusion-QL decision latency (50
candidates through the chain) for one observation. Prints one JSON line per measurement and writes them all to `--out`.
"""
from __future__ import annotations

import argparse
import json
import platform

import jax

from bench import speed


def random_maze_data(n: int = 100_000, lanes: int = 500):
    import envs

    env = envs.make("maze2d-umaze")

    def run(key):
        k_reset, k_loop = jax.random.split(key)
        obs, st = jax.vmap(env.reset)(jax.random.split(k_reset, lanes))

        def body(c, k):
            obs, st = c
            ka, ks = jax.random.split(k)
            a = env.random_action(ka, (lanes,))
            nobs, st, r, term, trunc, info = jax.vmap(env.step)(jax.random.split(ks, lanes),
                                                                st, a)
            return (nobs, st), (obs, a, r, info["final_obs"], term)

        _, out = jax.lax.scan(body, (obs, st), jax.random.split(k_loop, n // lanes))
        return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), out)

    o, a, r, no, t = jax.jit(run)(jax.random.PRNGKey(0))
    return env, {"obs": o, "action": a, "reward": r, "next_obs": no, "terminated": t}


def _time(fn, *args, reps=3):
    """Median seconds of exactly `reps` calls after a warm-up call (`bench.speed`'s timer)."""
    return speed._time_calls(lambda: fn(*args), min_time=float("inf"), max_calls=reps)[0]


def main(argv=None):
    import algos
    from algos.config import apply_overrides

    p = argparse.ArgumentParser(prog="python -m bench.speed_seeds")
    p.add_argument("--seeds", default="1,8,64")
    p.add_argument("--steps", type=int, default=100, help="gradient steps per timed call")
    p.add_argument("--algos", default="diffusion_ql,idql,td3_bc")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    dev = jax.devices()[0]
    env, arrays = random_maze_data()
    rows = []

    def emit(row):
        row.update(device=f"{dev.platform}: {dev.device_kind}", jax=jax.__version__,
                   host=platform.processor() or platform.machine())
        print(json.dumps(row), flush=True)
        rows.append(row)

    for algo in args.algos.split(","):
        mod = algos.get(algo)
        cfg = apply_overrides(mod.Config(), {"steps": args.steps, "eval_every": args.steps,
                                             "reward_scale": "none"})
        tr = mod.make_train(cfg, arrays, env)

        def steps(state, key, tr=tr):
            return jax.lax.scan(tr.update, state, jax.random.split(key, args.steps))[0]

        base = None
        for n in seeds:
            keys = jax.random.split(jax.random.PRNGKey(1), n)
            states = jax.jit(jax.vmap(tr.init_algo))(keys)
            fn, compile_s = speed.compile_fn(jax.vmap(steps), states, keys)
            sec = _time(fn, states, keys)
            rate = n * args.steps / sec
            if base is None:
                base = rate / n   # the first (smallest) seed count, per seed
            emit({"algo": algo, "seeds": n, "seed_steps_per_s": round(rate, 1),
                  "vs_first": round(rate / base, 2),
                  "compile_s": round(compile_s, 1), "batch": cfg.batch_size})
        if algo == "diffusion_ql":
            policy = mod.make_policy(cfg, env.spec)
            state = jax.jit(tr.init_algo)(jax.random.PRNGKey(0))
            # compiled before timing: `_time`'s warm-up call would otherwise hold the compile,
            # and a warm-up of 5 s or more is returned as the time (6 s on an H200 once)
            act_args = (state, arrays["obs"][0], jax.random.PRNGKey(2))
            act, _ = speed.compile_fn(lambda s, o, k: policy.act(s, (), o, k)[0], *act_args)
            sec = _time(act, *act_args, reps=20)
            emit({"algo": algo, "decision_ms": round(1e3 * sec, 3),
                  "candidates": cfg.n_candidates, "T": cfg.diffusion.T})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
