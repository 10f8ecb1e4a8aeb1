"""`python -m bench fidelity DATASET_ID`: how faithful a derived dataset's transitions are to
the simulator that the real data came from, and to the real data's distribution.

Dynamics error, where the truth is known: on envs whose observation determines the state
(`Env.state_from_obs`: Pendulum, MountainCar, Maze2D, inverted_pendulum), each transition's
`obs` is put into the simulator, stepped with its `action`, and the simulator's next
observation and reward are compared with the transition's `next_obs` and `reward`. The same is
done for the source's real transitions, whose error is the floor (float rounding; nonzero where
the env's dynamics are stochastic). Reported: median, mean and 90th percentile of the L2 error
of next_obs and of the absolute reward error.

Marginal fidelity (`marginal`): a two-sample distance between generated rows and real ones,
MMD^2 with a Gaussian kernel (its permutation p-value) and a classifier two-sample test, each
beside the value two disjoint halves of the real data give.

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


def _rows(arrays) -> np.ndarray:
    """Transitions as rows `[obs, action, reward, next_obs, terminal]` (SynthER's layout)."""
    from algos import synther

    f32 = lambda k: np.asarray(arrays[k], np.float32)  # noqa: E731
    return synther.as_rows(f32("obs"), f32("action"), f32("reward"), f32("next_obs"),
                           f32("terminated"))


def mmd2(x, y, bandwidth: float) -> float:
    """Unbiased squared MMD with the Gaussian kernel `exp(-|a - b|^2 / (2 bandwidth^2))`
    (Gretton et al. 2012, eq. 3)."""
    import jax.numpy as jnp

    def k(a, b):
        d = jnp.sum(a ** 2, 1)[:, None] + jnp.sum(b ** 2, 1)[None] - 2 * a @ b.T
        return jnp.exp(-jnp.maximum(d, 0.0) / (2 * bandwidth ** 2))

    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - jnp.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - jnp.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def c2st(x, y, seed: int = 0, steps: int = 2000) -> float:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): held-out accuracy of an MLP
    (2 x 64 ReLU, Adam 1e-3, batch 256) told to separate `x` from `y`, trained on half of
    each and scored on the other half. 0.5: indistinguishable."""
    import jax
    import jax.numpy as jnp
    import optax

    from algos.nets.layers import MLP

    rng = np.random.default_rng(seed)
    n = min(len(x), len(y))
    data = np.concatenate([x[rng.permutation(len(x))[:n]], y[rng.permutation(len(y))[:n]]])
    label = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
    order = rng.permutation(2 * n)
    train, test = order[: n], order[n:]
    net = MLP((64, 64), out_dim=1, activation="relu")
    tx = optax.adam(1e-3)
    xtr, ytr = jnp.asarray(data[train], jnp.float32), jnp.asarray(label[train])

    def loss(p, idx):
        logit = net.apply(p, xtr[idx])[:, 0]
        return optax.sigmoid_binary_cross_entropy(logit, ytr[idx]).mean()

    @jax.jit
    def fit(key):
        p = net.init(key, xtr[:1])

        def step(c, k):
            p, o = c
            g = jax.grad(loss)(p, jax.random.randint(k, (256,), 0, xtr.shape[0]))
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), None
        (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), jax.random.split(key, steps))
        return p

    p = fit(jax.random.PRNGKey(seed))
    pred = np.asarray(net.apply(p, jnp.asarray(data[test], jnp.float32))[:, 0]) > 0
    return float((pred == (label[test] > 0.5)).mean())


def marginal(real: Dict[str, np.ndarray], made: Dict[str, np.ndarray], n: int = 2000,
             permutations: int = 200, seed: int = 0) -> dict:
    """How far the generated rows' distribution is from the real one's, beside what two
    disjoint halves of the real data give (the reference): MMD^2 (Gaussian kernel on rows
    z-scored by the real data, bandwidth the median pairwise distance of the real rows), its
    permutation p-value against the real half, and the classifier two-sample accuracy."""
    rng = np.random.default_rng(seed)
    r, g = _rows(real), _rows(made)
    mean, std = r.mean(0), r.std(0) + 1e-6
    r, g = (r - mean) / std, (g - mean) / std
    idx = rng.permutation(len(r))
    n = min(n, len(r) // 2, len(g))
    r1, r2 = r[idx[:n]], r[idx[n:2 * n]]
    g = g[rng.permutation(len(g))[:n]]
    d = np.sqrt(((r1[:500, None] - r1[None, :500]) ** 2).sum(-1))
    bw = float(np.median(d[np.triu_indices(len(d), 1)]))
    stat, ref = mmd2(g, r1, bw), mmd2(r2, r1, bw)
    pooled = np.concatenate([g, r1])
    null = []
    for _ in range(permutations):
        p = rng.permutation(2 * n)
        null.append(mmd2(pooled[p[:n]], pooled[p[n:]], bw))
    return {"rows": n, "bandwidth": bw, "mmd2": stat, "mmd2_real_ref": ref,
            "mmd_p": float((1 + np.sum(np.asarray(null) >= stat)) / (1 + permutations)),
            "c2st": c2st(g, r1, seed), "c2st_real_ref": c2st(r2, r1, seed)}


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
    m = marginal(real, made)
    log(f"  marginal: MMD^2 {m['mmd2']:.4g} (real vs real {m['mmd2_real_ref']:.4g}, "
        f"permutation p {m['mmd_p']:.3g}); classifier accuracy {m['c2st']:.3f} (real vs "
        f"real {m['c2st_real_ref']:.3f})")
    result = {"dataset": dataset_id, "env_id": data.env_id, "source": d["source_id"],
              "marginal": m,
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
    md = (f"# Fidelity of {dataset_id}\n\n`python -m bench fidelity {dataset_id}`\n\n"
          f"## Dynamics error\n\n{d['method']} transitions of {d['source_id']} "
          f"({data.env_id}), put into the simulator at their `obs` and stepped with their "
          f"`action`, beside the source's real transitions.\n\n{table}\n\n"
          f"## Marginal distribution\n\n{m['rows']:,d} generated rows against {m['rows']:,d} "
          f"real ones, and, for reference, two disjoint halves of the real data (rows "
          f"`[obs, action, reward, next_obs, terminal]` z-scored by the real data):\n\n"
          f"| measure | generated vs real | real vs real |\n|---|---|---|\n"
          f"| MMD^2, Gaussian kernel, bandwidth {m['bandwidth']:.3g} (median distance) | "
          f"{m['mmd2']:.4g} (permutation p {m['mmd_p']:.3g}) | {m['mmd2_real_ref']:.4g} |\n"
          f"| classifier two-sample test: held-out accuracy (0.5: indistinguishable) | "
          f"{m['c2st']:.3f} | {m['c2st_real_ref']:.3f} |\n\n{sysinfo.hardware_line()}\n")
    sysinfo.atomic_write_text(Path(out) / f"{stem}.md", md)
    log(f"(written to {Path(out) / stem}.md and .json)")
    return result
