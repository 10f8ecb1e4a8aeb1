"""The environment table: ids, sizes, references, and env-steps/s measured here."""
from __future__ import annotations

import time

import jax

import envs


def steps_per_second(env, batch: int, steps: int = 200, repeats: int = 3) -> float:
    """Random-action env-steps/s of one jitted scan over `batch` vmapped envs (median)."""

    @jax.jit
    def run(key):
        obs, state = jax.vmap(env.reset)(jax.random.split(key, batch))

        def body(state, k):
            ka, ks = jax.random.split(k)
            action = env.random_action(ka, (batch,))
            _, state, r, *_ = jax.vmap(env.step)(jax.random.split(ks, batch), state, action)
            return state, r

        # Return the final state too: with a constant reward (inverted_pendulum) XLA would
        # otherwise drop the physics as dead code.
        return jax.lax.scan(body, state, jax.random.split(key, steps))

    jax.block_until_ready(run(jax.random.PRNGKey(0)))  # compile + warm-up
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run(jax.random.PRNGKey(i + 1)))
        times.append(time.perf_counter() - t)
    return batch * steps / sorted(times)[len(times) // 2]


def env_rows(measure_refs=False, batches=(1, 256), log=print, ids=None):
    """One row per env id (all registered ones, or `ids`), with env-steps/s per batch."""
    rows = []
    for env_id in ids or envs.env_ids():
        env = envs.make(env_id)
        s = env.spec
        row = {"env_id": env_id, "source": s.source, "backend": s.backend, "obs_dim": s.obs_dim,
               "act_dim": s.act_dim, "episode_length": s.episode_length,
               "ref_min_score": s.ref_min_score, "ref_max_score": s.ref_max_score,
               "state_from_obs": s.state_from_obs}
        for b in batches:
            t0 = time.perf_counter()
            row[f"steps_per_s_{b}"] = steps_per_second(env, b)
            log(f"{env_id} at batch {b}: {row[f'steps_per_s_{b}']:,.0f} env-steps/s "
                f"({time.perf_counter() - t0:.0f} s with the compile)")
        if measure_refs:
            res = envs.evaluate(lambda obs, key, env=env: env.random_action(key), env,
                                jax.random.PRNGKey(0), 1000)
            row["random_measured"] = float(res["returns"].mean())
        rows.append(row)
    return rows
