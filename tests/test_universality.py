"""log V vs log m fits: against scipy's linregress, known exponents, and interval coverage."""
import numpy as np
import pytest
from scipy import stats

from experiments.universality import fit_log_log, fit_samples, mean_variance


def test_ols_matches_linregress():
    rng = np.random.default_rng(0)
    m = np.exp(rng.uniform(-5, 3, 30))
    v = 0.3 * m ** 1.7 * np.exp(rng.normal(0, 0.2, 30))
    fit = fit_log_log(m, v, confidence=0.9)
    ref = stats.linregress(np.log(m), np.log(v))
    assert fit.exponent == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.exponent_stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue ** 2, rel=1e-12)
    t = stats.t.ppf(0.95, 28)
    assert fit.exponent_ci[1] - fit.exponent == pytest.approx(t * ref.stderr, rel=1e-10)
    assert fit.predict(2.0) == pytest.approx(np.exp(ref.intercept) * 2.0 ** ref.slope)


def test_exact_power_law_recovered():
    m = np.geomspace(1e-6, 1e3, 12)
    fit = fit_log_log(m, 4.0 * m ** 2)
    assert fit.exponent == pytest.approx(2.0, abs=1e-12)
    assert fit.intercept == pytest.approx(np.log(4.0), abs=1e-10)


def test_ols_interval_coverage():
    """The 90% t-interval covers the true slope in ~90% of repeated experiments (binomial bounds)."""
    rng = np.random.default_rng(1)
    x = np.linspace(-3, 3, 15)
    hits = 0
    for _ in range(400):
        y = 1.5 * x + 0.2 + rng.normal(0, 0.5, x.size)
        lo, hi = fit_log_log(np.exp(x), np.exp(y), confidence=0.9).exponent_ci
        hits += lo <= 1.5 <= hi
    assert 0.9 * 400 - 4 * np.sqrt(400 * 0.09) < hits < 0.9 * 400 + 4 * np.sqrt(400 * 0.09)


def test_bootstrap_on_multiplicative_samples():
    """samples = m_l * X with X iid across layers: V = Var(X) m^2 exactly, exponent 2."""
    rng = np.random.default_rng(2)
    m_true = np.geomspace(1e-4, 10, 20)
    x = rng.lognormal(0, 0.5, size=(300, 1)) * rng.lognormal(0, 0.3, size=(300, 20))
    samples = x * m_true
    fit = fit_samples(samples, confidence=0.95, method="bootstrap", n_boot=500)
    assert fit.exponent_ci[0] < 2.0 < fit.exponent_ci[1]
    assert fit.exponent_ci[1] - fit.exponent_ci[0] < 0.2
    m, v = mean_variance(samples)
    assert m.shape == (20,) and np.allclose(v, samples.var(0, ddof=1))


@pytest.mark.parametrize("call,word", [
    (lambda: fit_log_log([1, 2, -3], [1, 2, 3]), "> 0"),
    (lambda: fit_log_log([1, 2], [1, 2]), "at least 3"),
    (lambda: fit_log_log([1, 2, 3], [1, 2]), "same size"),
    (lambda: fit_log_log([1, 2, 3], [1, 2, 3], confidence=1.5), "confidence"),
    (lambda: fit_samples(np.ones((1, 5))), "shape"),
    (lambda: fit_samples(np.ones((5, 5)), method="wls"), "method"),
    (lambda: fit_log_log([2, 2, 2], [1, 2, 3]), "distinct"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
