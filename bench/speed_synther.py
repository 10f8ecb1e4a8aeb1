"""`python -m bench speed synther`: throughput of SynthER's generator (`algos.synther`).

- Train step: the authors' denoiser (residual MLP, 6 blocks, dim_t 128) at widths 1024 and
  2048 (their two configs) and 256 (this suite's quick preset), EDM loss, AdamW with the
  cosine rate and gradient clip, EMA, on hopper-sized transitions (11 + 3 + 1 + 11 + 1 = 27
  dims, random rows), batch 1024 (the authors' for datasets of 800k transitions or more) and
  256; gradient steps/s, 10 steps per call.
- Generation: 128 EDM Heun steps with churn (the authors' sampler: 255 network calls per
  sample) from the EMA weights, 10,000 transitions per call on a CPU and 100,000 (the
  authors' sample batch) on an accelerator; transitions/s, and the time that rate puts on
  the authors' 5M transitions.

The authors' PyTorch code on the same workloads: `bench/reference/synther_torch.py`, its lines
in `results/speed/*synther-pytorch.jsonl`, side by side in `results/speed/synther-vs-pytorch.md`.
"""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp

from algos import synther
from algos.config import apply_overrides
from bench import speed

DIM = 27                   # hopper's transition: obs 11, action 3, reward, next_obs 11, terminal
SAMPLE_BATCH = {"cpu": 10_000}    # transitions per sampling call, by backend
AUTHORS_SAMPLE_BATCH = 100_000     # theirs, on a GPU: any other backend uses it
AUTHORS_SAMPLES = 5_000_000


def _gen(width: int, quick: bool, batch: int):
    sets = {"diffusion.width": width, "batch_size": batch, "small_batch_size": batch}
    if quick:
        sets.update({"diffusion.width": 16, "diffusion.depth": 1, "diffusion.steps": 4,
                     "batch_size": 8, "small_batch_size": 8})
    return synther.Generator(apply_overrides(synther.Config(), sets, typed=True), DIM)


def _norm():
    return synther.ZScore(jnp.zeros(DIM), jnp.ones(DIM))


def _train_rows(quick, peak, log):
    rows = []
    cases = [(16, 8)] if quick else [(1024, 1024), (2048, 1024), (1024, 256), (2048, 256),
                                     (256, 256)]
    k = 2 if quick else 10
    for width, batch in cases:
        gen = _gen(width, quick, batch)
        x = jax.random.normal(jax.random.PRNGKey(0), (4 * batch if quick else 100_000, DIM))
        state = gen.init(jax.random.PRNGKey(1), _norm())

        def steps(state, x, key):
            def body(s, kk):
                return gen.update(s, x, kk)
            return jax.lax.scan(body, state, jax.random.split(key, k))

        compiled, c_s = speed.compile_fn(steps, state, x, jax.random.PRNGKey(2))
        one, _ = speed.compile_fn(gen.update, state, x, jax.random.PRNGKey(2))
        flops = speed.flops_of(one)
        sec, calls = speed._time_calls(lambda: compiled(state, x, jax.random.PRNGKey(2)))
        w = gen.config.diffusion.width
        wl = SimpleNamespace(name=f"SynthER train step, width {w}",
                             size=f"residual MLP {w} x {gen.config.diffusion.depth}, {DIM} "
                                  f"dims, batch {batch}, AdamW + clip + EMA")
        log(f"  train width {w} batch {batch}: {k / sec:,.1f} steps/s, compile {c_s:.1f}s")
        rows.append(speed._row(wl, f"grad steps, batch {batch}", "1",
                               speed.Timing(c_s, sec, calls), k, "steps/s",
                               None if flops is None else k * flops, peak))
    return rows


def _sample_rows(quick, peak, log, notes):
    rows = []
    n = 16 if quick else SAMPLE_BATCH.get(jax.default_backend(), AUTHORS_SAMPLE_BATCH)
    for width in ((16,) if quick else (256, 1024, 2048)):
        gen = _gen(width, quick, 8)
        state = gen.init(jax.random.PRNGKey(1), _norm())
        compiled, c_s = speed.compile_fn(lambda s, kk: gen.sample_chunk(s, kk, n), state,
                                         jax.random.PRNGKey(3))
        sec, calls = speed._time_calls(lambda: compiled(state, jax.random.PRNGKey(3)))
        c = gen.config.diffusion
        wl = SimpleNamespace(name=f"SynthER generation, width {c.width}",
                             size=f"residual MLP {c.width} x {c.depth}, {DIM} dims, EDM "
                                  f"{c.steps} Heun steps, churn {c.churn:g}")
        rate = n / sec
        log(f"  sample width {c.width}: {rate:,.0f} transitions/s, compile {c_s:.1f}s")
        # a 128-step chain is a loop: XLA counts its body once, so no GFLOP/s is given
        rows.append(speed._row(wl, f"{n:,d} transitions per call", "1",
                               speed.Timing(c_s, sec, calls), n, "transitions/s", None, peak))
        if not quick:
            sec_5m = AUTHORS_SAMPLES / rate
            took = f"{sec_5m / 3600:.2f} h" if sec_5m >= 3600 else f"{sec_5m / 60:.1f} min"
            notes.append(f"width {c.width}: {AUTHORS_SAMPLES:,d} transitions (the authors' "
                         f"count) at {rate:,.0f}/s take {took}")
    return rows


GROUPS = ("train", "sample")


def run_synther(quick=False, log=print, max_seed_seconds=60.0):
    """Rows in the format of `bench.speed` (same table and csv writers). The generator is
    one model trained once per dataset, so seeds are not vmapped here
    (`max_seed_seconds` is unused)."""
    sizes = (256,) if quick else (1024, 2048, 4096)
    peak = speed.matmul_peak(sizes)
    log(f"float32 matmul peak: {peak:,.1f} GFLOP/s")
    notes = []
    rows = _train_rows(quick, peak, log) + _sample_rows(quick, peak, log, notes)
    return rows, (peak, speed.matmul_peak(sizes)), notes


EXPLANATION = (
    __doc__.split("\n", 2)[2].strip() + "\n\nCompile time is a cold XLA compile; ms/call the "
    "median after a warm-up call. GFLOP/s from XLA's cost analysis of one step, times the "
    "steps per call.")


def markdown(rows, peaks, notes, hw_line, versions, command) -> str:
    out = speed.markdown(rows, peaks, notes, hw_line, versions, command,
                         title="SynthER speed", explanation=EXPLANATION)
    return out.replace("\nNot measured:\n", "\nTime for the authors' 5M transitions:\n")
