"""Symbolic, checked derivations of the mean-field formulas (sympy).

Every formula here is *derived* by sympy from the model definitions of THEORY.md (Gaussian and
Bernoulli expectations integrated by sympy, recursions solved by ``summation``/``rsolve``, fixed
points by ``solve``, penalties by ``series``), never typed in as a final answer; where sympy cannot
do an integral the literature step is named in the docstring and checked by independent quadrature
in the tests. Each module has numeric twins (``lambdify``) and a ``check()`` comparing the symbolic
result with the numeric core ``meanfield`` (and Monte Carlo where stated).

Modules: ``linear``, ``relu``, ``erf``, ``sparseout``, ``kwinners``; symbols in ``symbols``.

    >>> from derivations import linear
    >>> linear.g_aa_exact()                      # sympy expression in sigma_w2, sigma_b2, rho, k
    >>> import sympy; print(sympy.latex(linear.q_star()))

``registry()`` lists every derivation (name, module, function, LaTeX, check);
``python -m derivations [--check]`` prints them and runs every check.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["Derivation", "CheckFailed", "CoreMissing", "registry", "run_checks", "numeric_twin"]

MODULES = ("linear", "relu", "erf", "sparseout", "kwinners")


class CheckFailed(AssertionError):
    """A symbolic result disagrees with the numeric core or a Monte Carlo estimate."""


class CoreMissing(RuntimeError):
    """The numeric-core function a check compares against is not available (never a silent pass)."""


def core(name: str):
    """Return ``meanfield.<name>`` (dotted names allowed) or raise :class:`CoreMissing`."""
    try:
        obj = importlib.import_module("meanfield")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CoreMissing(f"cannot import the numeric core 'meanfield': {exc}") from exc
    path = "meanfield"
    for part in name.split("."):
        path += "." + part
        try:
            obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(path)
        except ImportError as exc:
            raise CoreMissing(f"{path} is not available in the numeric core yet") from exc
    return obj


def compare(what: str, derived, reference, rtol: float, atol: float = 0.0) -> float:
    """Raise :class:`CheckFailed` unless |derived - reference| <= atol + rtol |reference|.

    Returns the largest relative error (for the report table).
    """
    d = np.asarray(derived, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if d.shape != ref.shape and d.size != 1 and ref.size != 1:
        raise CheckFailed(f"{what}: shape {d.shape} != {ref.shape}")
    both_inf = np.isinf(d) & np.isinf(ref) & (np.sign(d) == np.sign(ref))
    diff = np.where(both_inf, 0.0, np.abs(d - ref))
    bad = ~(diff <= atol + rtol * np.abs(np.where(both_inf, 1.0, ref)))
    if np.any(bad):
        raise CheckFailed(f"{what}: derived {d[bad] if d.ndim else d} vs reference "
                          f"{ref[bad] if ref.ndim else ref} (rtol={rtol}, atol={atol})")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(both_inf, 0.0, diff / np.maximum(np.abs(ref), 1e-300))
    return float(np.max(rel, initial=0.0))


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
    """One registered derivation: ``function()`` returns the sympy expression; ``check(rng)`` runs
    the (possibly shared) numeric check covering it and returns the largest relative error."""

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


def registry() -> list[Derivation]:
    """Every derivation of every module, in module order."""
    out = []
    for mod_name in MODULES:
        mod = importlib.import_module(f"{__name__}.{mod_name}")
        for func, check in mod.DERIVATIONS:
            doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
            out.append(Derivation(f"{mod_name}.{func.__name__}", mod_name, func, check,
                                  f"{mod_name}.{check.__name__.lstrip('_')}", doc))
    return out


def run_checks(derivations: Sequence[Derivation] | None = None, seed: int = 0):
    """Run every distinct check once; returns {check_name: (passed, max_rel_err or message, seconds)}."""
    import time

    derivations = registry() if derivations is None else derivations
    results = {}
    for d in derivations:
        if d.check_name in results:
            continue
        t0 = time.perf_counter()
        try:
            err = d.check(np.random.default_rng(seed))
            results[d.check_name] = (True, err, time.perf_counter() - t0)
        except (CheckFailed, CoreMissing) as exc:
            results[d.check_name] = (False, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    return results


def module_check(derivation_list, seed: int = 0) -> dict[str, float]:
    """Run a module's distinct checks; raise on the first disagreement; return max relative errors."""
    done: dict[str, float] = {}
    for _, chk in derivation_list:
        if chk.__name__ not in done:
            done[chk.__name__] = chk(np.random.default_rng(seed))
    return done
