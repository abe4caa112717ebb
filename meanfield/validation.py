"""One set of argument checks for the whole toolkit (theory core, simulator, torch layers, CLIs).

Every check raises ``ValueError`` whose message names the parameter and its valid range, e.g.
``keep (keep probability rho) must lie in (0, 1], got 1.5``. numpy only.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["finite_array", "checked", "real", "integer", "choice", "keep_from", "correlation",
           "KEEP", "DROP", "CORRELATION", "C_ROUND"]

KEEP = "keep (keep probability rho)"
DROP = "drop (drop probability 1 - rho)"
CORRELATION = "c (correlation)"
# |c| - 1 up to this is rounding of a computed correlation (a ratio of two integrals, each good to
# ~1e-13 relative), taken as +-1; anything beyond is not a correlation
C_ROUND = 1e-10


def _float_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 array (NaN and inf kept); else ValueError naming ``name``."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None


def finite_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 array whose entries are all finite; else ValueError naming ``name``."""
    arr = _float_array(name, value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def checked(name: str, value, valid: str, ok: Callable[[np.ndarray], np.ndarray], *,
            finite: bool = True) -> np.ndarray:
    """A float array, finite unless ``finite=False``, whose every element passes ``ok``; else
    ``ValueError("name must valid")``.

    The message quotes the first offending element at full precision.
    """
    arr = finite_array(name, value) if finite else _float_array(name, value)
    bad = ~np.asarray(ok(arr), bool)
    if np.any(bad):
        raise ValueError(f"{name} must {valid}, got {_first(arr, bad)}")
    return arr


def _first(arr, bad) -> str:
    """The first element of arr where bad, as repr(float), with its index if arr is an array."""
    if arr.ndim == 0:
        return repr(float(arr))
    i = tuple(int(j) for j in np.argwhere(np.broadcast_to(bad, arr.shape))[0])
    return f"{float(arr[i])!r} (at index {i[0] if len(i) == 1 else i})"


def correlation(value, name: str = CORRELATION) -> np.ndarray:
    """Correlations as a float array in [-1, 1]; values within ``C_ROUND`` of +-1 are clipped.

    Raises
    ------
    ValueError
        Naming ``name`` if some value is not finite or lies further outside [-1, 1].
    """
    c = checked(name, value, f"lie in [-1, 1] (within {C_ROUND:g})",
                lambda a: np.abs(a) <= 1 + C_ROUND)
    return np.clip(c, -1.0, 1.0)


def _interval(lo, hi, lo_open, hi_open) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def real(name: str, value, lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False) -> float:
    """A finite Python float in the interval (open or closed ends as given)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in {_interval(lo, hi, lo_open, hi_open)}, "
                         f"got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ValueError(f"{name} must be a finite number in {_interval(lo, hi, lo_open, hi_open)}, "
                         f"got {value!r}")
    return v


def integer(name: str, value, lo: int = 0, hi: int | None = None) -> int:
    """A Python int in [lo, hi] (bools and floats are rejected, even 3.0)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def choice(name: str, value, choices: Iterable[str]):
    """``value`` if it is one of ``choices``; else ValueError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def keep_from(keep=None, drop=None, default=None) -> np.ndarray:
    """The keep probability rho from ``keep`` or ``drop`` = 1 - rho (never both), as a float array.

    ``keep`` must lie in (0, 1], ``drop`` in [0, 1). With neither given, ``default`` is used (a
    ValueError if that is None too).
    """
    if keep is not None and drop is not None:
        raise ValueError("give keep (keep probability rho) or drop (= 1 - rho), not both")
    if drop is not None:
        return 1.0 - checked(DROP, drop, "lie in [0, 1)", lambda a: (a >= 0) & (a < 1))
    if keep is None:
        if default is None:
            raise ValueError("give keep (keep probability rho in (0, 1]) or drop (= 1 - rho)")
        keep = default
    return checked(KEEP, keep, "lie in (0, 1]", lambda a: (a > 0) & (a <= 1))
