"""Universality of gradient fluctuations: fit ``log V = exponent * log m + intercept``.

Huang et al. (Figs. 4-5) plot the variance V of a gradient metric over random networks against its
mean m, layer by layer, and find straight lines in log-log axes. Here m and V come from a sample
array of shape (R, K) (R independent networks, K points such as layers), and the exponent is fitted
by least squares on (log m, log V) with a confidence interval:

- ``method="ols"``: Student-t interval of the ordinary least-squares slope (treats the K points as
  independent; they are not quite, layers of one network are correlated);
- ``method="bootstrap"``: percentile interval from resampling whole networks (rows), which keeps the
  correlation between layers and the sampling noise of m and V. Use it for simulated or measured
  per-network data.

numpy / scipy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["PowerLawFit", "mean_variance", "fit_log_log", "fit_samples"]


@dataclass(frozen=True)
class PowerLawFit:
    """V = exp(intercept) m^exponent; intervals at level ``confidence``."""

    exponent: float
    exponent_ci: tuple[float, float]
    intercept: float
    intercept_ci: tuple[float, float]
    exponent_stderr: float
    r2: float
    n_points: int
    confidence: float
    method: str

    def predict(self, m):
        """V predicted at mean m."""
        return np.exp(self.intercept) * np.asarray(m, dtype=float) ** self.exponent

    def __str__(self):
        lo, hi = self.exponent_ci
        return (f"exponent {self.exponent:.4g} [{lo:.4g}, {hi:.4g}] ({100 * self.confidence:g}% {self.method}), "
                f"intercept {self.intercept:.4g}, R^2 {self.r2:.4f}, {self.n_points} points")


def _check_confidence(confidence):
    if not (isinstance(confidence, (float, int)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def mean_variance(samples):
    """m, V per column of ``samples`` (R networks x K points): mean and unbiased variance."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"samples must have shape (R >= 2, K >= 1), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    return x.mean(axis=0), x.var(axis=0, ddof=1)


def _ols(lx, ly):
    n = lx.size
    xm, ym = lx.mean(), ly.mean()
    sxx = np.sum((lx - xm) ** 2)
    if sxx <= 0:
        raise ValueError("m must take at least two distinct values")
    slope = np.sum((lx - xm) * (ly - ym)) / sxx
    icpt = ym - slope * xm
    resid = ly - (icpt + slope * lx)
    sst = np.sum((ly - ym) ** 2)
    r2 = 1.0 - np.sum(resid ** 2) / sst if sst > 0 else 1.0
    s2 = np.sum(resid ** 2) / (n - 2) if n > 2 else np.nan
    se_slope = np.sqrt(s2 / sxx)
    se_icpt = np.sqrt(s2 * (1.0 / n + xm ** 2 / sxx))
    return slope, icpt, se_slope, se_icpt, r2


def fit_log_log(m, v, confidence=0.95):
    """OLS fit of log V on log m with Student-t intervals (n - 2 degrees of freedom)."""
    _check_confidence(confidence)
    m = np.asarray(m, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    if m.shape != v.shape:
        raise ValueError(f"m and v must have the same size, got {m.size} and {v.size}")
    if m.size < 3:
        raise ValueError(f"need at least 3 points for a fit with an interval, got {m.size}")
    bad = ~(np.isfinite(m) & np.isfinite(v) & (m > 0) & (v > 0))
    if bad.any():
        raise ValueError(f"m and v must be finite and > 0 for a log-log fit; {int(bad.sum())} of "
                         f"{m.size} points are not (select points or use |metric|)")
    slope, icpt, se_s, se_i, r2 = _ols(np.log(m), np.log(v))
    t = stats.t.ppf(0.5 + confidence / 2.0, m.size - 2)
    return PowerLawFit(float(slope), (float(slope - t * se_s), float(slope + t * se_s)), float(icpt),
                       (float(icpt - t * se_i), float(icpt + t * se_i)), float(se_s), float(r2),
                       int(m.size), float(confidence), "ols")


def fit_samples(samples, confidence=0.95, method="bootstrap", n_boot=2000, seed=0):
    """Fit log V vs log m from per-network samples (R x K); see the module docstring for ``method``."""
    _check_confidence(confidence)
    if method not in ("ols", "bootstrap"):
        raise ValueError(f"method must be 'ols' or 'bootstrap', got {method!r}")
    x = np.asarray(samples, dtype=float)
    m, v = mean_variance(x)
    point = fit_log_log(m, v, confidence)
    if method == "ols":
        return point
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 100):
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    r = x.shape[0]
    slopes, icpts = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        bm, bv = mean_variance(x[rng.integers(0, r, r)])
        ok = (bm > 0) & (bv > 0)
        if ok.sum() < 3:
            slopes[i] = icpts[i] = np.nan
            continue
        slopes[i], icpts[i], *_ = _ols(np.log(bm[ok]), np.log(bv[ok]))
    good = np.isfinite(slopes)
    if good.mean() < 0.9:
        raise ValueError("bootstrap failed: fewer than 90% of resamples had >= 3 positive (m, V) points")
    a = (1.0 - confidence) / 2.0
    lo_s, hi_s = np.quantile(slopes[good], [a, 1.0 - a])
    lo_i, hi_i = np.quantile(icpts[good], [a, 1.0 - a])
    return PowerLawFit(point.exponent, (float(lo_s), float(hi_s)), point.intercept,
                       (float(lo_i), float(hi_i)), float(np.std(slopes[good], ddof=1)), point.r2,
                       point.n_points, float(confidence), "bootstrap")
