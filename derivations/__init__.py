"""Symbolic, checked derivations of the mean-field formulas (sympy).

Every formula here is *derived* by sympy from the model definitions of THEORY.md (Gaussian and
Bernoulli expectations integrated by sympy, recursions solved by ``summation``/``rsolve``, fixed
points by ``solve``, penalties by ``series``), never typed in as a final answer; where sympy cannot
do an integral the literature step is named in the docstring and checked by independent quadrature
in the tests. Each module has numeric twins (``lambdify``) and a ``DERIVATIONS`` list pairing every
derivation with the check that evaluates it against an independent route: the numeric core
``meanfield``, scipy quadrature, exact mask enumeration or Monte Carlo.

Modules: ``linear``, ``relu``, ``erf``, ``sparseout``, ``kwinners``; symbols in ``symbols``.

    >>> from derivations import linear
    >>> linear.g_aa_exact()                      # sympy expression in sigma_w2, sigma_b2, rho, k
    >>> import sympy; print(sympy.latex(linear.q_star()))

``registry()`` lists every derivation (name, module, function, LaTeX, check); ``run_checks()`` runs
the checks and gives one result per registered derivation. A check returns
``{derivation function name: max relative error}`` for exactly the derivations it evaluated; a
registered derivation missing from its check's report fails ("not evaluated by its check").
``python -m derivations [--check | --latex]`` prints them and runs every check.
"""

from __future__ import annotations

import functools
import importlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = ["Derivation", "CheckFailed", "CheckResult", "registry", "run_checks", "numeric_twin",
           "compare", "record", "compare_maps_with_core"]

MODULES = ("linear", "relu", "erf", "sparseout", "kwinners")


class CheckFailed(AssertionError):
    """A symbolic result disagrees with the numeric core or an independent reference."""


def record(errors: dict[str, float], name: str, err: float) -> float:
    """Note that derivation ``name`` was evaluated with relative error ``err`` (the max is kept)."""
    errors[name] = max(errors.get(name, 0.0), float(err))
    return err


def compare(errors: dict[str, float], name: str, where: str, derived, reference, rtol: float,
            atol: float = 0.0) -> float:
    """Record derivation ``name`` in ``errors``; raise :class:`CheckFailed` unless
    |derived - reference| <= atol + rtol |reference| everywhere.

    Parameters
    ----------
    errors : dict
        The calling check's report, ``{derivation function name: max relative error}``.
    name : str
        Function name of the derivation whose numeric twin produced ``derived``.
    where : str
        The parameter point, for the failure message.
    derived, reference : array_like
        Broadcast-compatible values; equal infinities agree.
    rtol, atol : float
        Relative and absolute tolerance.

    Returns
    -------
    float
        The largest relative error (also recorded under ``name``).

    Raises
    ------
    CheckFailed
        On any disagreement, NaN included, or incompatible shapes.
    """
    d = np.asarray(derived, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if d.shape != ref.shape and d.size != 1 and ref.size != 1:
        raise CheckFailed(f"{name} {where}: shape {d.shape} != {ref.shape}")
    both_inf = np.isinf(d) & np.isinf(ref) & (np.sign(d) == np.sign(ref))
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity: masked
        diff = np.where(both_inf, 0.0, np.abs(d - ref))
    # an infinity agrees only with the same infinity (else inf <= rtol * inf would pass)
    lone_inf = (np.isinf(d) | np.isinf(ref)) & ~both_inf
    bad = lone_inf | ~(diff <= atol + rtol * np.abs(np.where(both_inf, 1.0, ref)))
    if np.any(bad):
        raise CheckFailed(f"{name} {where}: derived {d[bad] if d.ndim else d} vs reference "
                          f"{ref[bad] if ref.ndim else ref} (rtol={rtol}, atol={atol})")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(both_inf, 0.0, diff / np.maximum(np.abs(ref), 1e-300))
    return record(errors, name, np.max(rel, initial=0.0))


def compare_maps_with_core(errors: dict[str, float], rng: np.random.Generator, activation: str,
                           points, *, q_map=None, covariance_map=None, c_map=None,
                           noise: str = "dropout", rtol: float = 1e-10, n: int = 4,
                           **noise_params) -> dict[str, float]:
    """Compare derived maps with ``meanfield``'s at each parameter point and ``n`` random
    q in [0.05, 3], c in [-1, 1].

    Parameters
    ----------
    errors : dict
        The calling check's report; each map compared is recorded under its derivation name.
    rng : numpy.random.Generator
        Source of the (q, c) points.
    activation : str
        Core activation name (``meanfield.ACTIVATIONS``).
    points : sequence of (float, float, float)
        Parameter points (sigma_w2, sigma_b2, keep probability rho).
    q_map : (str, callable) or None
        Derivation name and ``f(sigma_w2, sigma_b2, rho, q)``, compared with ``meanfield.q_map``.
    covariance_map : (str, callable) or None
        Derivation name and ``f(sigma_w2, sigma_b2, rho, q, c)``, compared with
        ``meanfield.covariance_map``.
    c_map : (str, callable) or None
        Derivation name and ``f(sigma_w2, sigma_b2, rho, q_star, c)``, compared with
        ``meanfield.c_map`` at the core's q* (where the core's denominator q_map(q*) equals q*).
    noise : str
        Core noise kind.
    rtol : float
        Relative tolerance.
    n : int
        Number of random (q, c) per parameter point.
    **noise_params
        Further noise parameters for the core (Sparseout: ``s``, ``backward``).

    Returns
    -------
    dict
        ``errors``, updated.

    Raises
    ------
    CheckFailed
        On the first disagreement.

    References
    ----------
    THEORY §3 (variance, covariance and correlation maps).
    """
    import meanfield

    for point in points:
        par = dict(zip(("sigma_w2", "sigma_b2", "keep"), point), activation=activation, noise=noise,
                   **noise_params)
        qs, cs = rng.uniform(0.05, 3.0, n), rng.uniform(-1.0, 1.0, n)
        where = f"at {', '.join(f'{key}={val}' for key, val in par.items())}"
        if q_map is not None:
            name, fn = q_map
            compare(errors, name, f"{where}, q={qs}", fn(*point, qs), meanfield.q_map(q=qs, **par), rtol)
        if covariance_map is not None:
            name, fn = covariance_map
            compare(errors, name, f"{where}, q={qs}, c={cs}", fn(*point, qs, cs),
                    meanfield.covariance_map(q=qs, c=cs, **par), rtol)
        if c_map is not None:
            name, fn = c_map
            q_star = float(meanfield.q_star(**par))
            compare(errors, name, f"{where}, q=q*={q_star}, c={cs}", fn(*point, q_star, cs),
                    meanfield.c_map(q=q_star, c=cs, **par), rtol)
    return errors


def numeric_twin(func: Callable, args: Sequence[str]):
    """Numpy/scipy twin of a derivation: ``lambdify`` of ``func()`` in the named symbols, built once."""

    @functools.lru_cache(maxsize=None)
    def build():
        import sympy as sp

        expr = func()
        by_name = {sym.name: sym for sym in expr.free_symbols}
        from . import symbols as S

        syms = [by_name.get(a, getattr(S, a, None) or sp.Symbol(a)) for a in args]
        return sp.lambdify(syms, expr, modules=["scipy", "numpy"])

    def twin(*values):
        return build()(*values)

    twin.__name__ = f"{func.__name__}_numeric"
    twin.__doc__ = f"Numeric twin of {func.__module__}.{func.__name__}; arguments {tuple(args)}."
    return twin


@dataclass(frozen=True)
class Derivation:
    """One registered derivation: ``function()`` returns the sympy expression; ``check(rng)``
    (possibly shared with other derivations) returns ``{function name: max relative error}`` for
    the derivations it evaluated."""

    name: str
    module: str
    function: Callable
    check: Callable
    check_name: str
    doc: str

    @property
    def latex(self) -> str:
        import sympy as sp

        return sp.latex(self.function())


@dataclass(frozen=True)
class CheckResult:
    """Outcome for one registered (derivation, check) pair; ``seconds`` is the whole check's time."""

    derivation: str
    check: str
    passed: bool
    max_rel_err: float
    message: str
    seconds: float


def registry(modules: Iterable[str] | None = None) -> list[Derivation]:
    """Every derivation of the given modules (default: all of ``MODULES``), in module order.

    Raises
    ------
    ValueError
        If a module name is not one of ``MODULES``.
    """
    wanted = MODULES if modules is None else tuple(modules)
    unknown = [m for m in wanted if m not in MODULES]
    if unknown:
        raise ValueError(f"modules must be among {', '.join(MODULES)}; got {', '.join(map(repr, unknown))}")
    out = []
    for mod_name in MODULES:
        if mod_name not in wanted:
            continue
        mod = importlib.import_module(f"{__name__}.{mod_name}")
        for func, check in mod.DERIVATIONS:
            doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
            out.append(Derivation(f"{mod_name}.{func.__name__}", mod_name, func, check,
                                  f"{mod_name}.{check.__name__.lstrip('_')}", doc))
    return out


def run_checks(derivations: Sequence[Derivation] | None = None, seed: int = 0) -> list[CheckResult]:
    """Run every distinct check once and judge every registered derivation by its check's report.

    A derivation passes only if its check completed and reported a finite error for it; one its
    check did not report fails as "not evaluated by its check". A check that raises (a
    :class:`CheckFailed` disagreement or any other error) fails all its derivations with the
    exception's message, and so does one that reports names it is not registered for (a misspelt
    name would otherwise hide a gap).

    Parameters
    ----------
    derivations : sequence of Derivation, optional
        Default: ``registry()``.
    seed : int
        Seed of each check's own ``numpy.random.default_rng(seed)``.

    Returns
    -------
    list of CheckResult
        One per registered (derivation, check) pair, in registry order.
    """
    derivations = registry() if derivations is None else derivations
    covered: dict[str, set[str]] = {}
    for d in derivations:
        covered.setdefault(d.check_name, set()).add(d.function.__name__)
    reports: dict[str, tuple[dict[str, float] | None, str, float]] = {}
    for d in derivations:
        if d.check_name in reports:
            continue
        t0 = time.perf_counter()
        try:
            report, message = dict(d.check(np.random.default_rng(seed))), ""
            # a subset of the registry may be run: names registered with the check are not strays
            registered = {x.function.__name__ for x in registry([d.module]) if x.check_name == d.check_name}
            strays = sorted(set(report) - covered[d.check_name] - registered)
            if strays:
                report, message = None, f"check reported derivations not registered with it: {', '.join(strays)}"
        except Exception as exc:  # noqa: BLE001 - any crash of a check fails its derivations, reported by name
            report, message = None, f"{type(exc).__name__}: {exc}"
        reports[d.check_name] = (report, message, time.perf_counter() - t0)
    results = []
    for d in derivations:
        report, message, secs = reports[d.check_name]
        fn_name = d.function.__name__
        err = np.nan if report is None else report.get(fn_name, np.nan)
        if report is not None and fn_name not in report:
            message = "not evaluated by its check"
        elif report is not None and not np.isfinite(err):
            message = f"its check reported a non-finite error {err}"
        results.append(CheckResult(d.name, d.check_name, not message, float(err), message, secs))
    return results
