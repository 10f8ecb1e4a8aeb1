"""`python -m bench speed diffusion`: throughput of the diffusion core at the standard sizes.

For each workload (Diffusion-QL's MLP, Diffuser's U-Net, SynthER's residual MLP at two widths)
it measures the denoiser's train step (loss, gradient, Adam update) and its samplers, each for
one seed, 8 seeds in one vmapped program, and 8 seeds run one after another.

How the figures are taken:
- compile time is the AOT ``lower().compile()`` of the program, apart from run time; the
  persistent compilation cache is off for this command, so it is a real compile;
- run time is the median over calls after one warm-up call, each call blocked on its result
  (a program whose first call takes over 5 s is timed on that call alone);
- FLOPs come from XLA's cost analysis: of the compiled train step, and of one denoiser call times
  the number of calls for a sampler (XLA counts a loop body once, whatever its trip count);
- every table carries the float32 matmul peak measured in the same run (the best square
  ``jnp.dot`` of 1024, 2048 and 4096, before and after the workloads), and each workload's
  achieved GFLOP/s as a fraction of it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from algos import diffusion as D
from algos import nets
from bench.tables import markdown_table, num

SEEDS = 8


@dataclass
class Timing:
    compile_s: float
    seconds: float          # median seconds per call
    calls: int


def _block(x):
    return jax.block_until_ready(x)


def _time_calls(call, warmup_limit=5.0, min_time=1.0, max_calls=20) -> tuple[float, int]:
    t = time.perf_counter()
    _block(call())
    first = time.perf_counter() - t
    if first >= warmup_limit:
        return first, 1
    times = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < max_calls):
        t = time.perf_counter()
        _block(call())
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def compile_fn(fn, *args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t


def flops_of(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def matmul_peak(sizes=(1024, 2048, 4096)) -> float:
    """This machine's float32 matmul rate in GFLOP/s: the best, over square sizes, of the median
    of timed ``jnp.dot`` calls."""
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
        compiled, _ = compile_fn(jnp.dot, a, b)
        seconds, _ = _time_calls(lambda: compiled(a, b), min_time=1.0, max_calls=30)
        best = max(best, 2 * n ** 3 / seconds / 1e9)
    return best


# ------------------------------------------------------------------------------------- workloads

@dataclass
class Sampler:
    label: str
    calls: int                       # denoiser calls per sample
    run: Callable                    # (denoise_fn, key, shape, cond) -> x
    seeds: bool = False              # also measure 8 seeds vmapped / sequential


@dataclass
class Workload:
    name: str
    model: object
    x_shape: tuple
    cond_dim: int | None
    loss: Callable                   # (denoise_fn, key, x0, cond) -> scalar
    t0: object                       # a time input for init
    samplers: list = field(default_factory=list)
    size: str = ""
    edm_sigma_data: float | None = None   # wrap the network in EDM's preconditioning


def workloads(quick: bool = False) -> list[Workload]:
    """The issue's standard sizes (``quick``: tiny ones for the tests)."""
    out = []
    # Diffusion-QL: halfcheetah-sized state 17 / action 6, MLP 3 x 256, VP schedule T = 5.
    batch, T = (8, 5) if quick else (256, 5)
    sched = D.schedule("vp", T)
    out.append(Workload(
        "diffusion-ql mlp", nets.MLPDenoiser(hidden=(16, 16) if quick else (256, 256, 256)),
        (batch, 6), 17,
        lambda f, k, x, c, s=sched: D.diffusion_loss(f, s, k, x, c), jnp.zeros(()),
        [Sampler(f"ddpm {T}", T, lambda f, k, sh, c, s=sched: D.ddpm_sample(
            f, s, k, sh, c, clip_x0=1.0), seeds=True),
         Sampler(f"ddim {T}", T, lambda f, k, sh, c, s=sched: D.ddim_sample(
             f, s, k, sh, c, clip_x0=1.0)),
         Sampler("dpm-solver++ 3", 3, lambda f, k, sh, c, s=sched: D.dpm_solver_pp_sample(
             f, s, k, sh, c, steps=3, clip_x0=1.0))],
        f"batch {batch}, state 17, action 6, T={T}, MLP {'2x16' if quick else '3x256'}"))

    # Diffuser: hopper-sized transitions (11 + 3 = 14), horizon 32, batch 32, cosine T = 20,
    # x0 prediction, the first state inpainted, first action weighted 10x.
    batch, H, T = (2, 8, 4) if quick else (32, 32, 20)
    sched = D.schedule("cosine", T)
    unet = (nets.TemporalUnet(dim=8, dim_mults=(1, 2)) if quick
            else nets.TemporalUnet(dim=32, dim_mults=(1, 2, 4, 8)))
    weights = jnp.ones((H, 14)).at[0, 11:].set(10.0)
    start = (jnp.zeros((H, 14), bool).at[0, :11].set(True), jnp.zeros((H, 14)))

    def diffuser_loss(f, k, x, c, s=sched):
        inpaint = (start[0], jnp.where(start[0], x, 0.0))
        return D.diffusion_loss(f, s, k, x, parameterization="x0", weights=weights,
                                inpaint=inpaint)

    def diffuser_sampler(kind, steps):
        def run(f, k, sh, c, s=sched):
            kw = dict(parameterization="x0", clip_x0=1.0, inpaint=start)
            if kind == "ddpm":
                return D.ddpm_sample(f, s, k, sh, **kw)
            if kind == "ddim":
                return D.ddim_sample(f, s, k, sh, steps=steps, **kw)
            return D.dpm_solver_pp_sample(f, s, k, sh, steps=steps, **kw)
        return run

    out.append(Workload(
        "diffuser unet", unet, (batch, H, 14), None, diffuser_loss, jnp.zeros(()),
        [Sampler(f"ddpm {T}", T, diffuser_sampler("ddpm", T)),
         Sampler(f"ddim {T // 2}", T // 2, diffuser_sampler("ddim", T // 2), seeds=True),
         Sampler("dpm-solver++ 5", min(5, T), diffuser_sampler("dpm", min(5, T)))],
        f"batch {batch}, horizon {H}, 14 dims, T={T}, U-Net dim {8 if quick else 32}"))

    # SynthER: hopper transitions (11 + 3 + 1 + 11 + 1 = 27), batch 1024, EDM, 128 steps.
    batch, steps = (8, 4) if quick else (1024, 128)
    for width in ((16,) if quick else (1024, 2048)):
        model = nets.ResidualMLPDenoiser(width=width, depth=6, dim_t=16 if quick else 128)

        def edm_loss(f, k, x, c):
            return D.edm_loss(f, k, x, sigma_data=1.0)

        def edm_run(f, k, sh, c, n=steps):
            return D.edm_sample(f, D.edm_sigmas(n), k, sh, S_churn=80, S_tmin=0.05, S_tmax=50,
                                S_noise=1.003)

        out.append(Workload(
            f"synther resmlp w{width}", model, (batch, 27), None, edm_loss, jnp.zeros(()),
            [Sampler(f"edm heun {steps}", 2 * steps, edm_run, seeds=True)],
            f"batch {batch}, 27 dims, width {width}, 6 blocks, EDM {steps} steps",
            edm_sigma_data=1.0))
    return out


def _denoise_fn(wl: Workload, params):
    fn = nets.as_denoiser(wl.model, params)
    if wl.edm_sigma_data is not None:
        return D.edm_precondition(fn, sigma_data=wl.edm_sigma_data)
    return fn


# ----------------------------------------------------------------------------------- measurement

def _row(wl, case, seeds, timing, per_call_units, unit, flops, peak, speedup=None):
    gflops = None if flops is None else flops / timing.seconds / 1e9
    return {"workload": wl.name, "size": wl.size, "case": case, "seeds": seeds,
            "compile_s": timing.compile_s, "ms_per_call": 1e3 * timing.seconds,
            "calls_timed": timing.calls, "throughput": per_call_units / timing.seconds,
            "unit": unit, "gflops": gflops,
            "pct_peak": None if gflops is None else 100 * gflops / peak, "speedup": speedup}


def _three_ways(wl, case, fn, args_of, per_call_units, unit, flops_one, peak, seeds, log,
                max_seed_seconds, notes):
    """Rows for one seed, and, when ``seeds``, 8 vmapped vs 8 one after another."""
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    one_args = args_of(keys[0])
    compiled, c_s = compile_fn(fn, *one_args)
    flops = flops_one if flops_one is not None else flops_of(compiled)
    sec, n = _time_calls(lambda: compiled(*one_args))
    one = Timing(c_s, sec, n)
    rows = [_row(wl, case, "1", one, per_call_units, unit, flops, peak)]
    log(f"  {case}: {1e3 * sec:,.1f} ms/call, compile {c_s:.1f}s")
    if not seeds:
        return rows
    if SEEDS * sec > max_seed_seconds:
        notes.append(f"{wl.name} / {case}: 8-seed runs skipped, one call takes {sec:.1f} s "
                     f"(raise --max-seed-seconds above {SEEDS * sec:.0f} to run them)")
        log("  " + notes[-1])
        return rows
    per_seed = [args_of(k) for k in keys]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *per_seed)
    vcompiled, vc_s = compile_fn(jax.vmap(fn), *stacked)
    vsec, vn = _time_calls(lambda: vcompiled(*stacked))
    ssec, sn = _time_calls(lambda: [compiled(*a) for a in per_seed])
    flops8 = None if flops is None else SEEDS * flops
    rows.append(_row(wl, case, f"{SEEDS} vmapped", Timing(vc_s, vsec, vn),
                     SEEDS * per_call_units, unit, flops8, peak, speedup=ssec / vsec))
    rows.append(_row(wl, case, f"{SEEDS} sequential", Timing(c_s, ssec, sn),
                     SEEDS * per_call_units, unit, flops8, peak))
    log(f"  {case}: 8 seeds vmapped {vsec:.3f}s vs sequential {ssec:.3f}s "
        f"({ssec / vsec:.2f}x)")
    return rows


def run_diffusion(quick=False, log=print, max_seed_seconds=60.0):
    """Measure every workload; returns ``(rows, peaks, notes)``. The matmul peak is measured
    before and after the workloads (the machine is shared: the two show its drift); the
    percentages use the higher one."""
    sizes = (256,) if quick else (1024, 2048, 4096)
    peak = matmul_peak(sizes)
    log(f"float32 matmul peak: {peak:,.1f} GFLOP/s")
    rows, notes = [], []
    opt = optax.adam(3e-4)
    for wl in workloads(quick):
        log(f"{wl.name} ({wl.size})")
        x = jnp.zeros(wl.x_shape)
        cond_of = ((lambda k, wl=wl: jax.random.normal(k, (wl.x_shape[0], wl.cond_dim)))
                   if wl.cond_dim else (lambda k: None))

        def init(key, wl=wl, x=x, cond_of=cond_of):
            params = wl.model.init(key, x, wl.t0, cond_of(key))
            return params, opt.init(params)

        init_j = jax.jit(init)

        def train_step(params, opt_state, key, x0, cond, wl=wl):
            loss, grads = jax.value_and_grad(
                lambda p: wl.loss(_denoise_fn(wl, p), key, x0, cond))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def train_args(key, init_j=init_j, cond_of=cond_of, wl=wl):
            params, opt_state = init_j(key)
            x0 = jax.random.uniform(key, wl.x_shape, minval=-1, maxval=1)
            return params, opt_state, key, x0, cond_of(key)

        rows += _three_ways(wl, "train step", train_step, train_args, 1, "seed-steps/s", None,
                            peak, True, log, max_seed_seconds, notes)

        # FLOPs of one denoiser call, for the samplers' loops.
        params0, _ = init_j(jax.random.PRNGKey(0))
        cond0 = cond_of(jax.random.PRNGKey(0))
        call, _ = compile_fn(lambda p, xx, c: _denoise_fn(wl, p)(xx, jnp.float32(1.0), c),
                             params0, x, cond0)
        call_flops = flops_of(call)
        for s in wl.samplers:
            def sample(params, key, cond, s=s, wl=wl):
                return s.run(_denoise_fn(wl, params), key, wl.x_shape, cond)

            def sample_args(key, init_j=init_j, cond_of=cond_of):
                return init_j(key)[0], key, cond_of(key)

            flops = None if call_flops is None else s.calls * call_flops
            rows += _three_ways(wl, s.label, sample, sample_args, wl.x_shape[0], "samples/s",
                                flops, peak, s.seeds, log, max_seed_seconds, notes)
    peak_after = matmul_peak(sizes)
    log(f"float32 matmul peak after the workloads: {peak_after:,.1f} GFLOP/s")
    if peak_after > peak:
        for r in rows:
            if r["gflops"] is not None:
                r["pct_peak"] = 100 * r["gflops"] / peak_after
    return rows, (peak, peak_after), notes


# ---------------------------------------------------------------------------------------- report

def _sig(row):
    """Throughput to three significant digits below 100, thousands separators above."""
    v = row["throughput"]
    return "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")


COLUMNS = [("workload", lambda r: r["workload"]), ("case", lambda r: r["case"]),
           ("seeds", lambda r: r["seeds"]), ("compile s", num("compile_s")),
           ("ms/call", num("ms_per_call", ",.1f")), ("throughput", _sig),
           ("unit", lambda r: r["unit"]), ("GFLOP/s", num("gflops", ",.1f")),
           ("% of peak", num("pct_peak", ".0f")), ("vmap speed-up", num("speedup", ".2f", "x"))]


EXPLANATION = (
    "A train step is one denoiser update (loss, gradient, Adam) on one batch; throughput "
    "counts seed-steps (8 seeds vmapped do 8 per call). Sampler throughput counts samples "
    "(batch x seeds per call). Compile time is a cold XLA compile; ms/call is the median "
    "after a warm-up call. GFLOP/s from XLA's cost analysis (samplers: one denoiser call "
    "x calls per sample). vmap speed-up = time of 8 seeds one after another / time of 8 "
    "seeds in one vmapped program.")


def markdown(rows, peaks, notes, hw_line, versions, command, title="Diffusion core speed",
             explanation=EXPLANATION) -> str:
    lines = [f"# {title}", "",
             f"`{command}` on {hw_line}.",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
             f"float32 matmul peak measured in the same run: **{max(peaks):,.1f} GFLOP/s** "
             f"(best square `jnp.dot`; {peaks[0]:,.1f} before the workloads, {peaks[1]:,.1f} "
             "after). A workload can exceed 100% where its matmuls suit the CPU better than "
             "square ones.", "", explanation, "", markdown_table(rows, COLUMNS)]
    sizes = {}
    for r in rows:
        sizes.setdefault(r["workload"], r["size"])
    lines += ["", "Sizes:"] + [f"- {k}: {v}" for k, v in sizes.items()]
    if notes:
        lines += ["", "Not measured:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def csv_text(rows, peaks, hw_line, versions) -> str:
    import io

    import pandas as pd

    df = pd.DataFrame(rows)
    df["matmul_peak_gflops"] = max(peaks)
    df["hardware"] = hw_line
    df["versions"] = "; ".join(f"{k}={v}" for k, v in versions.items())
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()

