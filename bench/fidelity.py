"""`python -m bench fidelity DATASET_ID`: how faithful a derived dataset's transitions are to
the simulator that the real data came from.

Dynamics error, where the truth is known: on envs whose observation determines the state
(`Env.state_from_obs`: Pendulum, MountainCar, Maze2D, inverted_pendulum), each transition's
`obs` is put into the simulator, stepped with its `action`, and the simulator's next
observation and reward are compared with the transition's `next_obs` and `reward`. The same is
done for the source's real transitions, whose error is the floor (float rounding; nonzero where
the env's dynamics are stochastic). Reported: median, mean and 90th percentile of the L2 error
of next_obs and of the absolute reward error.

    python -m bench fidelity jaxrl/pendulum/medium-replay-synther-<key>-v0
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np

from bench.tables import markdown_table

RESULTS = Path(__file__).resolve().parent.parent / "results" / "fidelity"
MAX_ROWS = 100_000   # rows checked per set (a uniform subsample beyond)


def dynamics_errors(env, arrays: Dict[str, np.ndarray], key=0, chunk: int = 50_000):
    """Per-row `(next_obs L2 error, |reward error|)` of `arrays` against `env`'s simulator."""
    import jax
    import jax.numpy as jnp

    if not env.supports_state_from_obs:
        env.state_from_obs(np.zeros(env.obs_dim))   # raises the env's one-line error

    @jax.jit
    def errs(obs, action, next_obs, reward, k):
        def one(o, a, k):
            _, _, r, _, _, info = env.step(k, env.state_from_obs(o), a)
            return info["final_obs"], r
        sim_next, sim_r = jax.vmap(one)(obs, action, jax.random.split(k, obs.shape[0]))
        return jnp.linalg.norm(sim_next - next_obs, axis=-1), jnp.abs(sim_r - reward)

    out_s, out_r = [], []
    n = len(arrays["obs"])
    for i in range(0, n, chunk):
        sl = slice(i, min(i + chunk, n))
        s, r = errs(*(jnp.asarray(arrays[k][sl], jnp.float32)
                      for k in ("obs", "action", "next_obs", "reward")),
                    jax.random.fold_in(jax.random.PRNGKey(key), i))
        out_s.append(np.asarray(s))
        out_r.append(np.asarray(r))
    return np.concatenate(out_s), np.concatenate(out_r)


def _subsample(arrays, n: int, seed: int = 0):
    size = len(arrays["obs"])
    if size <= n:
        return arrays
    idx = np.sort(np.random.default_rng(seed).choice(size, n, replace=False))
    return {k: np.asarray(v)[idx] for k, v in arrays.items()}


def summary(errors) -> dict:
    s, r = errors
    return {"next_obs_median": float(np.median(s)), "next_obs_mean": float(np.mean(s)),
            "next_obs_p90": float(np.quantile(s, 0.9)), "reward_median": float(np.median(r)),
            "reward_mean": float(np.mean(r)), "reward_p90": float(np.quantile(r, 0.9)),
            "rows": int(len(s))}


def run(dataset_id: str, out: Path = RESULTS, log=print) -> dict:
    import envs
    from bench import sysinfo
    from envs import datasets

    data = datasets.load(dataset_id)
    ours = data.metadata.get("diffrl") or {}
    d = ours.get("derived")
    if d is None:
        raise datasets.DatasetError(f"{dataset_id} is not a derived dataset; give one made by "
                                    "`python -m bench augment`")
    env = envs.make(data.env_id)
    if not env.supports_state_from_obs:
        raise envs.EnvError(f"{data.env_id}: its observation does not determine the state, so "
                            "the dynamics error cannot be measured (see the env table)")
    real = datasets.load(d["source_id"]).transitions
    made = {k: np.asarray(v)[d["real"]:] for k, v in data.transitions.items()}
    sets = {"real (source)": real, d["method"]: made}
    rows = []
    for name, arrays in sets.items():
        sub = _subsample(arrays, MAX_ROWS)
        s = summary(dynamics_errors(env, sub))
        rows.append({"set": name, **s})
        log(f"  {name:>14}: next_obs L2 error median {s['next_obs_median']:.4g}, mean "
            f"{s['next_obs_mean']:.4g}; reward error median {s['reward_median']:.4g}")
    result = {"dataset": dataset_id, "env_id": data.env_id, "source": d["source_id"],
              "source_content_hash": d["source_content_hash"],
              "content_hash": data.content_hash, "method": d["method"], "rows": rows,
              "code": sysinfo.code_version(), "hardware": sysinfo.hardware(),
              "versions": sysinfo.versions()}
    stem = dataset_id.replace("/", "__")
    sysinfo.atomic_write_text(Path(out) / f"{stem}.json", json.dumps(result, indent=1))
    g = lambda k: (lambda r: f"{r[k]:.4g}")  # noqa: E731
    table = markdown_table(rows, [
        ("set", lambda r: r["set"]), ("rows", lambda r: f"{r['rows']:,d}"),
        ("next_obs L2 median", g("next_obs_median")), ("mean", g("next_obs_mean")),
        ("p90", g("next_obs_p90")), ("abs reward median", g("reward_median")),
        ("mean", g("reward_mean")), ("p90", g("reward_p90"))])
    md = (f"# Dynamics error of {dataset_id}\n\n{d['method']} transitions of {d['source_id']} "
          f"({data.env_id}), put into the simulator at their `obs` and stepped with their "
          f"`action` (`python -m bench fidelity {dataset_id}`).\n\n{table}\n\n"
          f"{sysinfo.hardware_line()}\n")
    sysinfo.atomic_write_text(Path(out) / f"{stem}.md", md)
    log(f"(written to {Path(out) / stem}.md and .json)")
    return result
