"""bench.stats against independent computations: scipy's trimmed mean and Mann-Whitney U,
closed forms, and the coverage of its bootstrap intervals on a known distribution."""
import numpy as np
import pytest
from scipy import stats as sps

from bench import stats


def _scores(seed=0, tasks=4, runs=5, ragged=False):
    rng = np.random.default_rng(seed)
    return {f"t{i}": rng.normal(50 + 10 * i, 15, size=runs - (i % 2 if ragged else 0))
            for i in range(tasks)}


def test_iqm_is_scipy_trimmed_mean_of_pooled_runs():
    for ragged in (False, True):
        s = _scores(ragged=ragged)
        pooled = np.concatenate(list(s.values()))
        assert stats.iqm(s) == pytest.approx(sps.trim_mean(pooled, 0.25), rel=1e-12)


def test_median_mean_and_gap_closed_forms():
    s = {"a": np.array([0.0, 10.0]), "b": np.array([40.0, 60.0, 80.0]), "c": np.array([150.0])}
    # task means 5, 60, 150
    assert stats.mean(s) == pytest.approx(215 / 3)
    assert stats.median(s) == pytest.approx(60.0)
    # runs clipped at 100: 0, 10, 40, 60, 80, 100 -> mean 290/6
    assert stats.optimality_gap(s) == pytest.approx(100 - 290 / 6)


def test_probability_of_improvement_is_mann_whitney_u():
    x, y = _scores(1), _scores(2)
    y["t0"] = x["t0"].copy()  # ties count half
    expected = np.mean([sps.mannwhitneyu(x[t], y[t]).statistic / (len(x[t]) * len(y[t]))
                        for t in x])
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected, rel=1e-12)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    # only the tasks both ran count
    x["only_x"] = np.array([1e9])
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected, rel=1e-12)


def test_statistics_are_batched_over_leading_axes():
    s = _scores(3, ragged=True)
    batched = {t: np.stack([v, v + 1.0]) for t, v in s.items()}
    for f in stats.AGGREGATES.values():
        out = f(batched)
        assert out.shape == (2,)
        assert out[0] == pytest.approx(f(s))


def test_bootstrap_interval_of_the_mean_matches_normal_theory():
    """One task, many runs: the percentile interval of the mean approaches mean ± 1.96 sd/√n."""
    x = np.random.default_rng(4).normal(0.0, 1.0, size=400)
    point, lo, hi = stats.interval(stats.mean, {"t": x}, reps=20_000)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert point == pytest.approx(x.mean())
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_bootstrap_is_stratified_and_reproducible():
    # constant tasks have nothing to resample within: the interval collapses to the point
    s = {"a": np.full(5, 10.0), "b": np.full(3, 70.0)}
    # pooled and sorted: 10 x5, 70 x3; the middle four are 10, 10, 10, 70
    assert stats.interval(stats.iqm, s, reps=500) == pytest.approx((25.0, 25.0, 25.0))
    s = _scores(5)
    assert stats.interval(stats.iqm, s, reps=1000, seed=3) == \
        stats.interval(stats.iqm, s, reps=1000, seed=3)


def test_interval_coverage_on_a_known_distribution():
    """Over 200 experiments of 3 tasks x 10 runs from known normals, the 95% interval of the
    mean of task means holds the true value about 95% of the time (percentile bootstrap is a
    little narrow at n=10)."""
    truth = np.mean([20.0, 50.0, 80.0])
    rng = np.random.default_rng(6)
    hits = 0
    for i in range(200):
        s = {f"t{m}": rng.normal(m, 10.0, size=10) for m in (20.0, 50.0, 80.0)}
        _, lo, hi = stats.interval(stats.mean, s, reps=1000, seed=i)
        hits += lo <= truth <= hi
    assert 0.85 <= hits / 200 <= 0.99


def test_improvement_interval_brackets_point():
    x, y = _scores(7), {t: v - 20 for t, v in _scores(8).items()}
    point, lo, hi = stats.improvement_interval(x, y, reps=2000)
    assert lo <= point <= hi and 0 <= lo and hi <= 1
    assert point > 0.5


def test_performance_profile_closed_form():
    """Runs uniform on [0, 100]: the fraction above tau is 1 - tau/100."""
    rng = np.random.default_rng(9)
    s = {"a": rng.uniform(0, 100, 20_000), "b": rng.uniform(0, 100, 10_000)}
    taus = np.array([0.0, 25.0, 50.0, 90.0])
    np.testing.assert_allclose(stats.performance_profile(s, taus), 1 - taus / 100, atol=0.01)
    # every task weighs the same, whatever its run count
    s = {"a": np.array([10.0, 90.0]), "b": np.array([90.0])}
    assert stats.performance_profile(s, [50.0])[0] == pytest.approx((0.5 + 1.0) / 2)
    prof, lo, hi = stats.profile_band(_scores(10), taus, reps=500)
    assert np.all(lo <= prof + 1e-12) and np.all(prof <= hi + 1e-12)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one run"):
        stats.interval(stats.iqm, {"a": np.array([])})
    with pytest.raises(ValueError, match="at least one task"):
        stats.probability_of_improvement({"a": np.ones(2)}, {"b": np.ones(2)})
