"""Aggregate statistics over tasks and seeds, with rliable's definitions (Agarwal et al. 2021).

rliable itself is not a dependency: rliable 1.2 pins `arch<8`, and arch 7.2 fails at import
beside pandas 3 (`deprecate_kwarg() missing 1 required positional argument`); with arch 8
rliable's bootstrap call fails instead (`random_state` must be an array). Checked with the
pinned stack on 2026-11-24. The estimators below follow rliable's `metrics` and `library`
modules and are tested against independent computations (scipy's trimmed mean and Mann-Whitney
U, closed forms) in tests/test_stats.py.

Scores come as `{task: 1-D array of per-seed normalised scores}`. Tasks may hold different
numbers of seeds (a diverged seed is dropped by the caller, which counts it). Every statistic
takes such a mapping whose arrays may carry leading batch axes (the bootstrap replicates) and
reduces the last axis only, so one call evaluates all replicates at once.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

Scores = Mapping[str, np.ndarray]
# rliable's defaults: 95% percentile intervals from 50,000 stratified bootstrap replicates
# (its `get_interval_estimates`). Our score scale is 0-100, so the optimality gap's threshold
# is 100 where rliable's is 1.
REPS = 50_000
CONFIDENCE = 0.95
GAMMA = 100.0


def _arrays(scores: Scores):
    return [np.asarray(v, float) for v in scores.values()]


def iqm(scores: Scores) -> np.ndarray:
    """Interquartile mean of all runs of all tasks pooled: the mean of the middle 50%, cutting
    `int(0.25 n)` runs from each end (rliable: `scipy.stats.trim_mean(scores, 0.25, axis=None)`)."""
    pooled = np.sort(np.concatenate(_arrays(scores), axis=-1), axis=-1)
    n = pooled.shape[-1]
    cut = int(0.25 * n)
    return pooled[..., cut:n - cut].mean(axis=-1)


def task_means(scores: Scores) -> np.ndarray:
    """Per-task mean score, tasks on the last axis."""
    return np.stack([a.mean(axis=-1) for a in _arrays(scores)], axis=-1)


def median(scores: Scores) -> np.ndarray:
    """Median over tasks of the per-task mean (rliable's `aggregate_median`)."""
    return np.median(task_means(scores), axis=-1)


def mean(scores: Scores) -> np.ndarray:
    """Mean over tasks of the per-task mean (rliable's `aggregate_mean`)."""
    return task_means(scores).mean(axis=-1)


def optimality_gap(scores: Scores, gamma: float = GAMMA) -> np.ndarray:
    """How far the per-run scores fall short of `gamma`, scores above it counting as `gamma`:
    `gamma - mean(min(score, gamma))` over all runs of all tasks pooled (rliable's
    `aggregate_optimality_gap`; lower is better)."""
    pooled = np.concatenate(_arrays(scores), axis=-1)
    return gamma - np.minimum(pooled, gamma).mean(axis=-1)


AGGREGATES: Dict[str, Callable[[Scores], np.ndarray]] = {
    "IQM": iqm, "median": median, "mean": mean, "optimality gap": optimality_gap}


def _poi_task(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 for one task, from all pairs of runs (Mann-Whitney U / n_x n_y)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(x: Scores, y: Scores) -> np.ndarray:
    """Probability that a run of X beats a run of Y on a task drawn uniformly from the tasks
    both have (rliable's `probability_of_improvement`)."""
    tasks = [t for t in x if t in y]
    if not tasks:
        raise ValueError("probability of improvement needs at least one task both methods ran")
    return np.mean([_poi_task(np.asarray(x[t], float), np.asarray(y[t], float))
                    for t in tasks], axis=0)


def _resample(scores: Scores, rng: np.random.Generator, reps: int) -> Dict[str, np.ndarray]:
    """Stratified bootstrap: each task's runs are resampled with replacement, within the task."""
    out = {}
    for task, runs in scores.items():
        runs = np.asarray(runs, float)
        out[task] = runs[rng.integers(0, len(runs), size=(reps, len(runs)))]
    return out


def _percentile_interval(replicates: np.ndarray, confidence: float) -> Tuple[float, float]:
    lo, hi = np.percentile(replicates, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def interval(statistic: Callable[[Scores], np.ndarray], scores: Scores, reps: int = REPS,
             confidence: float = CONFIDENCE, seed: int = 0) -> Tuple[float, float, float]:
    """(point estimate, low, high): the statistic on the data and its percentile interval from
    `reps` stratified bootstrap replicates (rliable's `get_interval_estimates`)."""
    if not scores or any(len(np.asarray(v)) == 0 for v in scores.values()):
        raise ValueError("interval needs at least one run in every task")
    rng = np.random.default_rng(seed)
    point = float(statistic(scores))
    return (point, *_percentile_interval(statistic(_resample(scores, rng, reps)), confidence))


def improvement_interval(x: Scores, y: Scores, reps: int = REPS,
                         confidence: float = CONFIDENCE,
                         seed: int = 0) -> Tuple[float, float, float]:
    """Probability of improvement of X over Y with its interval; X's and Y's runs are resampled
    independently, each stratified by task (rliable's `StratifiedIndependentBootstrap`)."""
    tasks = [t for t in x if t in y]
    x, y = {t: x[t] for t in tasks}, {t: y[t] for t in tasks}
    rng = np.random.default_rng(seed)
    point = float(probability_of_improvement(x, y))
    reps_x, reps_y = _resample(x, rng, reps), _resample(y, rng, reps)
    return (point, *_percentile_interval(probability_of_improvement(reps_x, reps_y), confidence))


def performance_profile(scores: Scores, taus: Sequence[float]) -> np.ndarray:
    """Score distribution: for each threshold tau, the fraction of runs scoring above tau,
    averaged over tasks so that every task weighs the same (rliable's run-score
    distribution). Returns `(len(taus),)` (or with the scores' leading axes first)."""
    taus = np.asarray(taus, float)
    per_task = [(a[..., None, :] > taus[:, None]).mean(axis=-1) for a in _arrays(scores)]
    return np.mean(per_task, axis=0)


def profile_band(scores: Scores, taus: Sequence[float], reps: int = 2_000,
                 confidence: float = CONFIDENCE, seed: int = 0):
    """Performance profile with pointwise percentile bands: `(profile, low, high)`."""
    rng = np.random.default_rng(seed)
    reps_ = performance_profile(_resample(scores, rng, reps), taus)
    lo, hi = np.percentile(reps_, [50 * (1 - confidence), 50 * (1 + confidence)], axis=0)
    return performance_profile(scores, taus), lo, hi
