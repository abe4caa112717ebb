"""Fit trainable-depth laws L_max(sigma_w^2) (and L_max(sigma_w^2, T) over training budgets T) to
trainability heatmaps, with censoring in the likelihood and bootstrap uncertainty.

Usage::

    python -m experiments.fit --db results/trainability_cpu.sqlite
    python -m experiments.fit --db results/trainability_cpu.sqlite --per-step each  # budgets T
    python -m experiments.fit --table heatmap.csv --keep 0.98 --plot heatmap.png
    python -m experiments.fit --sigma-w2 1.5,2,3 --lmax 60,90,40 --keep 0.98   # a published boundary
    python -m experiments.fit --sigma-w2 1.5:2.5:0.5 --lmax 60,90,40 --noise "sparseout(keep=0.9, s=1.5)"

**Inputs.** ``--db``: rows of ``experiments.trainability``. ``--table FILE.csv`` (``read_table`` /
``fit_table`` in Python): a long-format CSV, one row per evaluation of a network, with the required
columns ``sigma_w2``, ``depth``, ``accuracy`` (a fraction in [0, 1]; an empty cell, ``nan``, ``NA``,
``None`` or ``null`` is *missing*) and the optional columns of ``PROTOCOL`` plus ``steps`` and
``seed``. Lines starting with ``#`` are comments; other columns are ignored (with a warning). A table
without ``activation`` / ``sigma_b2`` takes ``--activation`` / ``--sigma-b2``, else the defaults tanh
/ 0.05 with a warning naming each defaulted field.

**Noise layer.** A protocol's noise layer is its ``noise`` cell, the spec text of any ``meanfield``
noise layer (``meanfield.noise_from_spec``; quote it in a CSV: ``"sparseout(keep=0.9, s=1.5)"``),
when the rows have that column (a ``keep`` beside it must agree), else dropout at its ``keep``. Rows
with neither column take ``--noise SPEC`` or ``--keep`` (default keep 1, with a warning). Labels name
the layer (``keep=0.98`` for dropout, else its spec); the theory depth scales are those of that layer.

**Networks and budgets.** A network is its protocol (the ``PROTOCOL`` columns present, including
``max_steps``, the steps it was trained for), sigma_w^2, depth and seed; ``steps`` is the step at
which it was evaluated, i.e. the training budget T of that evaluation. ``per_step`` (``--per-step``):

- ``last`` (default): each network's last step with a recorded metric (a per-step log becomes its
  final value); one boundary per protocol, T = the largest such step (a warning when the networks
  of a protocol end at different steps);
- ``each``: every step is a budget; one boundary per (protocol, T). A sweep that evaluates its
  networks at checkpoints gives boundaries at several budgets from one training run.

Rows at ``steps`` <= 0 (untrained) are dropped with a warning. sigma_w^2 values within a relative
``SW_RTOL`` of each other are one grid value (1.7 and 1.7000000000000002 are one point); float
protocol fields are compared at 10 significant digits.

**Boundary extraction** (``extract_boundaries``): the metric (``eval_acc`` for a database, the
``accuracy`` column of a table) is averaged over the seeds of each (sigma_w^2, depth) cell; a missing
value is left out, never counted as a failed network. A network is trainable when its cell reaches
``chance + threshold (best - chance)`` (relative, default 0.5; ``best`` = the best cell of the
protocol over all its budgets, so the bar is the same at every T; chance = 1 / classes) but at least
``chance + MIN_LIFT``, so a protocol where nothing learned gives no boundary; ``--absolute`` uses a
fixed accuracy. At each sigma_w^2 the depths *with data* are sorted and the boundary is the cut
"trainable up to here, not beyond" with the fewest disagreeing depths (ties: the geometric middle of
the tied cuts); ``L_max`` is the geometric mean of the last trainable and the first untrainable
depth. When every depth with data trains, ``L_max`` > the deepest of them (right-censored); when none
does, ``L_max`` < the shallowest (left-censored).

**Laws** (``LAWS``), with theory depth scales from ``depth_scales`` (``meanfield.analyze`` with the
boundary's noise layer, xi capped at ``XI_CAP`` where it diverges at criticality): ``a*xi_c``,
``a*xi_1``, ``a*min(xi_1,xi_c)``, ``a*xi_c+b``; ``two-scale``: ``1/L = 1/(a xi_c) + 1/(b xi_1)``
(both scales limit depth, the smaller dominates smoothly); ``constant``: ``L = b`` (no theory, e.g.
a limit set by the budget); ``6*xi_c`` (Schoenholz et al.) is the fixed reference. Budget-aware
laws (``budget_laws``) scale one depth scale by a(T): ``a``, ``a0 + a1 ln T``, ``a T^b`` and
``a_inf T / (T + T_half)``.

**Fit: censored-normal (Tobit) likelihood** on ln L_max: ``ln L_max = ln L_law + e``, ``e ~ N(0,
sigma^2)``, with sigma fitted alongside the constants (floored at ``SIGMA_MIN``, 1 % in depth, so
exactly fitting points do not make the likelihood infinite). An interior point contributes the normal
density; a right-censored point at value v contributes ``P(ln L > ln v) = Phi((ln L_law - ln v) /
sigma)`` (left-censored: the opposite tail). So a censored point at the top of the grid pulls a law
only when the law predicts below (or within about sigma of) it. Confidence intervals: expanded
percentile bootstrap (95 %; Hesterberg 2015: the plain percentile interval covered 6 in only ~77 %
of synthetic 12-point sweeps) resampling *whole protocols* when several are pooled (their constants
differ), else the sigma_w^2 grid points of the one protocol (each with all its budgets); the output
says which. ``--bootstrap 0`` means no CI; the default is ``N_BOOT`` (400) resamples. The
likelihood is maximised by ``scipy.optimize.minimize`` (SLSQP, bounded) from several starts, each
resample from the fit to all points.

**Comparison**: each law is fitted on one boundary and scored on every other boundary at the same
budget (another keep, data set or panel) by the RMS of the log residuals ``ln L_law - ln L_max``,
where a censored point counts only when the law violates its bound; the winner has the smallest mean
held-out error (within ``TIE_RTOL`` a tie, won by the law with fewer constants; a law whose extra
constant ran off to its bound in every fold is named as the simpler law it then is, e.g.
``two-scale`` with b unbounded is ``a*xi_c``: ``simplest``). Results are keyed by boundary index,
so equal labels never merge pairs. With several budgets, ``a(T)`` is fitted per budget and each
budget-aware law is fitted on all budgets but one and scored on the one left out.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import log_ndtr

from .config import PROTOCOL as STORE_PROTOCOL

if TYPE_CHECKING:
    from meanfield.noise import NoiseLayer

__all__ = ["Boundary", "Law", "LAWS", "REFERENCE", "SCALES", "FitResult", "NoFit", "Analysis",
           "extract_boundaries", "boundary_from_arrays", "read_table", "read_db", "fit_table",
           "depth_scales", "budget_laws", "fit_law", "fit_all", "compare_held_out",
           "per_budget_constants", "compare_budgets", "run_fits", "report", "plot",
           "rms_log_error", "get_law", "simplest", "relative_threshold", "held_out_winner", "main",
           "parse_args", "XI_CAP", "SIGMA_MIN", "RUNAWAY", "MIN_LIFT", "THRESHOLD", "PROTOCOL"]

XI_CAP = 1e4
SIGMA_MIN = 0.01       # floor of the fitted scatter of ln L_max (1 % in depth)
SW_RTOL = 1e-6         # sigma_w^2 values closer than this (relative) are one grid value
MIN_LIFT = 0.05        # a trained network beats chance by at least this accuracy
THRESHOLD = 0.5        # default relative threshold (of the way from chance to the best cell)
MIN_BOOT = 100         # fewer resamples cannot place the tails of an expanded 95 % interval
MAX_BOOT = 100_000     # the resample counts are one array; each resample is an optimisation
# Default resamples. Each is one scipy fit (~1.5 ms): at 1000 the CLI took 52 s (one budget) and
# 183 s (four budgets, 16 boundaries) of CPU on benchmarks/bench_fit.py's heatmap. At 400 the ends
# of a 95 % interval vary between bootstrap seeds by 3-14 % of its half-width (2-10 % at 1000;
# 40 seeds on the benchmark's 13-point boundary), well inside the interval's own uncertainty.
N_BOOT = 400
PRED_FLOOR = 1e-3      # depth predicted by a law is floored here before the log
# a positive constant fitted beyond RUNAWAY (or below 1 / RUNAWAY) has run off towards its bound:
# its term no longer matters (relative effect ~1e-6) and the law is a simpler one (``Law.limits``)
RUNAWAY = 1e6
TIE_RTOL = 1e-6        # held-out errors this close (relative) are a tie: fewer constants win
# the store's protocol columns (the configuration schema) and a table's free grouping column
PROTOCOL = STORE_PROTOCOL + ("panel",)
N_CLASSES = {"mnist": 10, "cifar10": 10}


def _sig(v: float) -> float:
    """A float at 10 significant digits: float noise does not split a protocol or grid value."""
    return float(f"{v:.10g}")


def _fmt(v) -> str:
    return f"{v:.10g}" if isinstance(v, float) else str(v)


def _noise_layer(noise):
    """A ``meanfield`` noise layer (scalar parameters) from a layer, its spec text
    (``meanfield.noise_from_spec``, e.g. ``"sparseout(keep=0.9, s=1.5)"``) or a number, the keep
    probability of dropout."""
    from meanfield.noise import Dropout, NoiseLayer, noise_from_spec
    if isinstance(noise, NoiseLayer):
        if noise.shape != ():
            raise ValueError(f"noise must have scalar parameters (one layer per boundary), "
                             f"got {noise!r}")
        return noise
    if isinstance(noise, str):
        return noise_from_spec(noise)
    if isinstance(noise, (int, float, np.integer, np.floating)) and not isinstance(noise, bool):
        return Dropout(keep=float(noise))
    raise ValueError(f"noise must be a meanfield noise layer, its spec text or a keep probability, "
                     f"got {noise!r}")


def _noise_label(noise) -> str:
    """``keep=0.98`` for dropout (the papers' parameter), else the layer's spec."""
    from meanfield.noise import Dropout
    return f"keep={noise.keep:g}" if type(noise) is Dropout else noise.spec()


@dataclass(frozen=True, eq=False)
class Boundary:
    """Trainable-depth boundary of one sweep at one budget.

    Parameters
    ----------
    label : str
        Display name (``extract_boundaries`` makes it unique; results are keyed by index anyway).
    noise : meanfield NoiseLayer
        The noise layer of the networks (its spec text, or a number = the keep probability of
        dropout, is converted); ``keep`` is its keep probability (1 for a layer without one).
    sigma_w2, L_max, censor, xi_c, xi_1 : ndarray, shape (n,)
        Grid values, boundary depth (layers), censoring (0 interior, +1 lower bound: every depth
        with data trained, -1 upper bound: none did) and theory depth scales (layers).
    lower, upper : ndarray, shape (n,), optional
        Bracketing grid depths (NaN when censored or unknown; default all NaN).
    threshold : float
        Accuracy a network had to reach.
    budget : float or None
        Training steps T at which the networks were evaluated (None: unknown).
    protocol : tuple or None
        ``(field, value)`` pairs; boundaries with equal protocol share networks (one bootstrap
        unit). None: a protocol of its own.
    activation, sigma_b2 :
        Theory parameters of the depth scales.
    depths, accuracy : ndarray, optional
        Heatmap: depths with data, shape (m,), and the mean metric, shape (m, n), NaN = missing.
    """

    label: str
    noise: NoiseLayer
    sigma_w2: np.ndarray
    L_max: np.ndarray
    censor: np.ndarray
    xi_c: np.ndarray
    xi_1: np.ndarray
    lower: np.ndarray = field(default=None)
    upper: np.ndarray = field(default=None)
    threshold: float = float("nan")
    budget: float | None = None
    protocol: tuple | None = None
    activation: str = "tanh"
    sigma_b2: float = 0.05
    depths: np.ndarray = field(default=None)
    accuracy: np.ndarray = field(default=None)

    def __post_init__(self):
        n = len(self.sigma_w2)
        for name in ("L_max", "censor", "xi_c", "xi_1"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have the length of sigma_w2 ({n})")
        if np.any(~(np.asarray(self.L_max) > 0)):
            raise ValueError("L_max must be > 0 everywhere")
        if not set(np.unique(self.censor)) <= {-1, 0, 1}:
            raise ValueError("censor must contain only -1, 0, +1")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"budget (training steps T) must be None or > 0, got {self.budget}")
        object.__setattr__(self, "noise", _noise_layer(self.noise))
        for name in ("lower", "upper"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(n, np.nan))

    @property
    def keep(self) -> float:
        return float(getattr(self.noise, "keep", 1.0))


def depth_scales(sigma_w2, noise, *, activation: str = "tanh", sigma_b2: float = 0.05):
    """Theory depth scales of a network with a noise layer.

    Parameters
    ----------
    sigma_w2 : array_like, shape (n,)
        Weight variances sigma_w^2 (> 0).
    noise : meanfield NoiseLayer, str or float
        The noise layer, its spec text (``meanfield.noise_from_spec``) or a keep probability rho
        in (0, 1] (dropout).
    activation : str
        A ``meanfield`` activation name.
    sigma_b2 : float
        Bias variance sigma_b^2 >= 0.

    Returns
    -------
    xi_c, xi_1 : ndarray, shape (n,)
        Correlation and gradient depth scales (layers), capped at ``XI_CAP``.

    Raises
    ------
    ValueError
        Parameters out of range (from ``meanfield.analyze``).

    References
    ----------
    docs/THEORY.md section 3 (depth scales) and section 8 (trainability).
    """
    import meanfield
    r = meanfield.analyze(activation=activation, sigma_w2=np.asarray(sigma_w2, dtype=float),
                          sigma_b2=sigma_b2, noise=_noise_layer(noise))

    def cap(x):
        x = np.asarray(x, dtype=float)
        return np.minimum(np.where(np.isfinite(x), x, XI_CAP), XI_CAP)
    return cap(r.xi_c), cap(r.xi_1)


def boundary_from_arrays(sigma_w2, L_max, *, keep: float | None = None, noise=None, censor=None,
                         label: str | None = None, activation: str = "tanh",
                         sigma_b2: float = 0.05, budget: float | None = None) -> Boundary:
    """A boundary given directly (e.g. read off a published heatmap).

    Parameters
    ----------
    sigma_w2, L_max : array_like, shape (n,)
        Grid values and boundary depths (layers, > 0).
    keep : float, optional
        Keep probability rho in (0, 1] of dropout networks.
    noise : meanfield NoiseLayer or str, optional
        Any noise layer, or its spec text (instead of ``keep``).
    censor : array_like of int, shape (n,), optional
        0 interior (default), +1 lower bound (L_max > value), -1 upper bound.
    label : str, optional
        Display name (default ``given keep=<keep>``, or ``given <noise spec>``).
    activation, sigma_b2 :
        Theory parameters of the depth scales.
    budget : float, optional
        Training steps T of the boundary.

    Returns
    -------
    Boundary

    Raises
    ------
    ValueError
        Not exactly one of ``keep`` and ``noise``, mismatched lengths, non-positive L_max, censor
        values other than -1, 0, 1.
    """
    if (keep is None) == (noise is None):
        raise ValueError("give exactly one of keep (dropout) and noise (any noise layer)")
    layer = _noise_layer(keep if noise is None else noise)
    s = np.atleast_1d(np.asarray(sigma_w2, dtype=float))
    L = np.atleast_1d(np.asarray(L_max, dtype=float))
    if s.shape != L.shape:
        raise ValueError(f"sigma_w2 and L_max must have the same length, got {s.shape} and {L.shape}")
    c = np.zeros(len(s), dtype=int) if censor is None else np.atleast_1d(np.asarray(censor, dtype=int))
    if c.shape != s.shape:
        raise ValueError(f"censor must have the length of sigma_w2 ({len(s)}), got {len(c)}")
    xi_c, xi_1 = depth_scales(s, layer, activation=activation, sigma_b2=sigma_b2)
    return Boundary(label if label is not None else f"given {_noise_label(layer)}", layer, s, L, c,
                    xi_c, xi_1, budget=budget, activation=activation, sigma_b2=sigma_b2)


# ---------------------------------------------------------------------------------------------
# boundary extraction


def _cut(ok: np.ndarray) -> np.ndarray:
    """Indices k of the best cuts 'depths[:k] train, depths[k:] do not' (fewest disagreements)."""
    errors = np.array([np.sum(~ok[:k]) + np.sum(ok[k:]) for k in range(len(ok) + 1)])
    return np.flatnonzero(errors == errors.min())


def _grid_values(values, rtol: float = SW_RTOL) -> dict:
    """Map each value to its grid value: sorted values within ``rtol`` (relative) of the previous
    one are one grid value, represented by their median at 10 significant digits."""
    u = np.unique(np.asarray(list(values), dtype=float))
    groups, cur = [], [u[0]]
    for v in u[1:]:
        if v - cur[-1] <= rtol * abs(v):
            cur.append(v)
        else:
            groups.append(cur)
            cur = [v]
    groups.append(cur)
    return {float(v): _sig(float(np.median(g))) for g in groups for v in g}


def _metric(v) -> float:
    """A metric value, NaN when missing (None, NaN, infinite)."""
    if v is None:
        return math.nan
    v = float(v)
    return v if math.isfinite(v) else math.nan


def relative_threshold(best: float, chance: float, relative: float = THRESHOLD) -> float:
    """Accuracy a cell must reach: ``max(chance + relative (best - chance), chance + MIN_LIFT)``."""
    return max(chance + relative * (best - chance), chance + MIN_LIFT)


def _protocol_noise(g: dict):
    """The noise layer of a protocol: its ``noise`` spec (which must agree with its ``keep``, if
    any), else dropout at its ``keep``."""
    if g.get("noise") is None:
        if g.get("keep") is None:
            raise ValueError(f"protocol {g} has neither a noise spec nor a keep probability")
        return _noise_layer(g["keep"])
    layer = _noise_layer(g["noise"])
    rho = getattr(layer, "keep", 1.0)
    if g.get("keep") is not None and not math.isclose(g["keep"], rho, rel_tol=1e-9):
        raise ValueError(f"keep = {g['keep']:g} disagrees with the noise layer {layer.spec()} "
                         f"(keep probability {rho:g})")
    return layer


def _labels(keys: list[tuple], fields: list[str], budgets: list, layers: list) -> list[str]:
    """Unique labels: dataset, noise layer, every other protocol field that differs, and T."""
    differ = [i for i, f in enumerate(fields) if f not in ("dataset", "keep", "noise")
              and len({k[i] for k in keys}) > 1]
    out = []
    for key, T, layer in zip(keys, budgets, layers):
        g = dict(zip(fields, key))
        parts = [str(g["dataset"])] if g.get("dataset") is not None else []
        parts += [_noise_label(layer)] + [f"{fields[i]}={_fmt(key[i])}" for i in differ]
        if T is not None:
            parts.append(f"T={T:g}")
        out.append(" ".join(parts))
    return out


def extract_boundaries(rows: list[dict], *, threshold: float = THRESHOLD, relative: bool = True,
                       metric: str = "eval_acc", per_step: str = "last", n_classes: int | None = None,
                       activation: str | None = None, sigma_b2: float | None = None,
                       keep: float | None = None, noise=None, xi: bool = True) -> list[Boundary]:
    """One boundary per protocol (``per_step='last'``) or per (protocol, budget T) (``'each'``).

    Parameters
    ----------
    rows : list of dict
        One dict per evaluation of a network: ``sigma_w2``, ``depth``, the metric and any of
        ``PROTOCOL``, ``steps``, ``seed`` (see the module docstring).
    threshold : float
        Relative position between chance and the best cell, in (0, 1); with ``relative=False`` an
        accuracy in [0, 1].
    metric : str
        The accuracy column.
    per_step : {'last', 'each'}
        How evaluations of one network at several steps are used (module docstring).
    n_classes : int, optional
        Classes for the chance level (default: from the data set name; 10 with a warning).
    activation, sigma_b2 : optional
        Theory parameters for rows that lack these columns (default tanh, 0.05 with a warning
        naming each defaulted field).
    keep, noise : optional
        For rows with neither a ``keep`` nor a ``noise`` column: the keep probability of dropout,
        or any noise layer (a ``meanfield`` NoiseLayer or its spec text); default keep = 1 with a
        warning. A protocol's noise layer is its ``noise`` spec when present, else dropout at
        its ``keep``.
    xi : bool
        Compute the theory depth scales (False leaves them NaN).

    Returns
    -------
    list of Boundary
        Protocols in the order of their first row, budgets increasing; labels are unique.

    Raises
    ------
    ValueError
        Empty rows, a missing required column, parameters out of range.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to extract a boundary from")
    if per_step not in ("last", "each"):
        raise ValueError(f"per_step must be 'last' or 'each', got {per_step!r}")
    if relative and not (0 < threshold < 1):
        raise ValueError(f"a relative threshold must be in (0, 1), got {threshold}")
    if not relative and not (0 <= threshold <= 1):
        raise ValueError(f"an absolute threshold (accuracy) must be in [0, 1], got {threshold}")
    if n_classes is not None and n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    for i, r in enumerate(rows):
        missing = [c for c in ("sigma_w2", "depth", metric) if c not in r]
        if missing:
            raise ValueError(f"row {i} lacks the column(s) {missing}; it has {sorted(r)}")
        if not (isinstance(r["sigma_w2"], (int, float)) and math.isfinite(r["sigma_w2"])
                and r["sigma_w2"] > 0):
            raise ValueError(f"row {i}: sigma_w2 must be finite and > 0, got {r['sigma_w2']!r}")
    if keep is not None and noise is not None:
        raise ValueError("give keep (dropout) or noise (any noise layer), not both")
    # (field filled, value given, default, the columns that make it unnecessary)
    layer_field = ("noise", noise) if noise is not None else ("keep", keep)
    fill = {}
    for name, value, default, columns in (("activation", activation, "tanh", ("activation",)),
                                          ("sigma_b2", sigma_b2, 0.05, ("sigma_b2",)),
                                          (*layer_field, 1.0, ("keep", "noise"))):
        present = [c for c in columns if c in rows[0]]
        if present and value is not None:
            raise ValueError(f"{name}={value} given but the rows have a {present[0]} column "
                             f"(use one or the other)")
        if not present:
            if value is None:
                flags = " or ".join("--" + c.replace("_", "-") for c in columns)
                warnings.warn(f"no {' or '.join(columns)} column: {name} = {default} assumed "
                              f"(give {flags})", stacklevel=2)
            fill[name] = default if value is None else value
    if "noise" in fill:   # validated here: the error is about the argument, not a row
        fill["noise"] = _noise_layer(fill["noise"]).spec()
    fields = [f for f in PROTOCOL if f in rows[0] or f in fill]
    specs = {}   # noise spec text -> canonical spec (validated once)

    def protocol_value(f, v, i):
        if f == "noise" and v is not None:
            if v not in specs:
                try:
                    specs[v] = _noise_layer(v).spec()
                except ValueError as e:
                    raise ValueError(f"row {i}: noise: {e}") from None
            return specs[v]
        return _sig(v) if isinstance(v, float) else v
    has_steps = "steps" in rows[0]
    grid = _grid_values(r["sigma_w2"] for r in rows)

    # one entry per evaluation: (protocol key, network, steps, value)
    evals = []
    dropped_untrained = 0
    for i, r in enumerate(rows):
        steps = r["steps"] if has_steps else None
        if steps is not None and steps <= 0:
            dropped_untrained += 1
            continue
        key = tuple(protocol_value(f, fill[f] if f in fill else r.get(f), i) for f in fields)
        net = (key, grid[float(r["sigma_w2"])], int(r["depth"]), r.get("seed"))
        evals.append((net, steps, _metric(r[metric])))
    if dropped_untrained:
        warnings.warn(f"{dropped_untrained} rows at steps <= 0 (untrained) dropped: not a budget",
                      stacklevel=2)
    # cell values per (protocol, budget)
    cells = defaultdict(lambda: defaultdict(list))   # (key, T) -> (sigma_w2, depth) -> values
    if per_step == "each" or not has_steps:
        for net, steps, v in evals:
            if math.isfinite(v):
                cells[(net[0], steps)][net[1:3]].append(v)
    else:
        last = {}
        for net, steps, v in evals:
            if math.isfinite(v) and (net not in last or steps > last[net][0]):
                last[net] = (steps, [v])
            elif math.isfinite(v) and steps == last[net][0]:
                last[net][1].append(v)   # replicate rows of one evaluation are averaged
        ends = defaultdict(set)
        for net, (steps, _) in last.items():
            ends[net[0]].add(steps)
        for net, (steps, vals) in last.items():
            cells[(net[0], max(ends[net[0]]))][net[1:3]].extend(vals)
        for key, s in ends.items():
            if len(s) > 1:
                warnings.warn(f"networks of protocol {dict(zip(fields, key))} end at different "
                              f"steps ({min(s)} to {max(s)}); each network's last step is used",
                              stacklevel=2)
    if not cells:
        raise ValueError(f"no row has a recorded {metric}: nothing to extract a boundary from")
    best = defaultdict(float)
    for (key, _), cell in cells.items():
        best[key] = max(best[key], max(float(np.mean(v)) for v in cell.values()))

    first = {key: i for i, key in reversed(list(enumerate(net[0] for net, _, _ in evals)))}
    groups = sorted(cells, key=lambda kt: (first[kt[0]], kt[1] if kt[1] is not None else 0))
    layers = {key: _protocol_noise(dict(zip(fields, key))) for key, _ in groups}
    labels = _labels([k for k, _ in groups], fields, [T for _, T in groups],
                     [layers[k] for k, _ in groups])
    warned_chance = False
    out = []
    for (key, T), label in zip(groups, labels):
        g = dict(zip(fields, key))
        mean = {k: float(np.mean(v)) for k, v in cells[(key, T)].items()}
        if n_classes is None and g.get("dataset") not in N_CLASSES and relative and not warned_chance:
            warnings.warn(f"data set {g.get('dataset')!r} has no known number of classes: chance "
                          f"accuracy 1/10 assumed (give --classes)", stacklevel=2)
            warned_chance = True
        chance = 1.0 / (n_classes or N_CLASSES.get(g.get("dataset"), 10))
        thr = relative_threshold(best[key], chance, threshold) if relative else threshold
        sig = np.array(sorted({s for s, _ in mean}))
        all_depths = np.array(sorted({d for _, d in mean}))
        acc = np.full((len(all_depths), len(sig)), np.nan)
        L, cens, lo, hi = [], [], [], []
        for j, s in enumerate(sig):
            depths = np.array(sorted(d for (ss, d) in mean if ss == s))
            acc[np.searchsorted(all_depths, depths), j] = [mean[(s, d)] for d in depths]
            ok = np.array([mean[(s, d)] >= thr for d in depths])
            ks = _cut(ok)
            if ks.min() == len(depths):
                L.append(depths[-1]); cens.append(1); lo.append(depths[-1]); hi.append(np.nan)
            elif ks.max() == 0:
                L.append(depths[0]); cens.append(-1); lo.append(np.nan); hi.append(depths[0])
            else:
                ks = ks[(ks > 0) & (ks < len(depths))]
                mids = [math.log(depths[k - 1] * depths[k]) / 2 for k in ks]
                L.append(math.exp(float(np.mean(mids))))
                cens.append(0); lo.append(depths[ks.min() - 1]); hi.append(depths[ks.max()])
        if xi:
            xi_c, xi_1 = depth_scales(sig, layers[key], activation=g["activation"],
                                      sigma_b2=g["sigma_b2"])
        else:
            xi_c = xi_1 = np.full(len(sig), np.nan)
        out.append(Boundary(label, layers[key], sig, np.array(L, float), np.array(cens), xi_c, xi_1,
                            np.array(lo, float), np.array(hi, float), thr,
                            budget=float(T) if T is not None else None,
                            protocol=tuple(zip(fields, key)), activation=g["activation"],
                            sigma_b2=g["sigma_b2"], depths=all_depths.astype(float), accuracy=acc))
    return out


# ---------------------------------------------------------------------------------------------
# reading tables and databases

_MISSING = {"", "nan", "na", "n/a", "none", "null"}
_INT_FIELDS = {"depth", "steps", "seed", "width", "batch_size", "max_steps", "data_seed",
               "eval_size", "test_size"}
_FLOAT_FIELDS = {"sigma_w2", "accuracy", "keep", "sigma_b2", "lr"}
_REQUIRED_CELLS = {"sigma_w2", "depth", "steps", "activation", "sigma_b2", "keep", "noise"}
TABLE_COLUMNS = ("sigma_w2", "depth", "accuracy", "steps", "seed") + PROTOCOL
_CHECKS = {   # column -> (test, valid range text)
    "sigma_w2": (lambda v: math.isfinite(v) and v > 0, "finite and > 0"),
    "depth": (lambda v: v >= 1, ">= 1"),
    "accuracy": (lambda v: 0 <= v <= 1, "in [0, 1] (a fraction, not a percentage)"),
    "keep": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "sigma_b2": (lambda v: math.isfinite(v) and v >= 0, "finite and >= 0"),
    "lr": (lambda v: math.isfinite(v) and v > 0, "finite and > 0"),
    "steps": (lambda v: v >= 0, ">= 0"),
    "max_steps": (lambda v: v >= 1, ">= 1"),
    "width": (lambda v: v >= 1, ">= 1"),
}


def _parse_cell(name: str, text: str, where: str):
    t = text.strip()
    if t.lower() in _MISSING:
        if name in _REQUIRED_CELLS:
            raise ValueError(f"{where}: {name} is empty; every row needs it")
        return None
    if name in _FLOAT_FIELDS or name in _INT_FIELDS:
        try:
            v = float(t)
        except ValueError:
            raise ValueError(f"{where}: {name} must be a number, got {t!r}") from None
        if name in _INT_FIELDS:
            if not (math.isfinite(v) and abs(v - round(v)) <= 1e-9 * max(1.0, abs(v))):
                raise ValueError(f"{where}: {name} must be an integer, got {t!r}")
            v = round(v)
        test, text_range = _CHECKS.get(name, (lambda v: True, ""))
        if not test(v):
            raise ValueError(f"{where}: {name} must be {text_range}, got {t!r}")
        return v
    if name == "activation":
        from meanfield.activations import ACTIVATIONS
        if t not in ACTIVATIONS:
            raise ValueError(f"{where}: activation must be one of {list(ACTIVATIONS)}, got {t!r}")
    if name == "noise":
        try:
            return _noise_layer(t).spec()
        except ValueError as e:
            raise ValueError(f"{where}: noise: {e}") from None
    return t


def read_table(path, *, dataset: str | None = None) -> list[dict]:
    """Rows of a long-format CSV heatmap (module docstring), validated and typed.

    Parameters
    ----------
    path : str or Path
        CSV file with a header line.
    dataset : str, optional
        Keep only rows of this data set.

    Returns
    -------
    list of dict
        One dict per data line with the known columns present in the file; ``accuracy`` is None
        where missing.

    Raises
    ------
    ValueError
        Unreadable file, missing required columns, a malformed or out-of-range cell (the message
        names the line and the column).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the table {path}: {e}") from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"table {path} is empty")
    reader = csv.reader([ln for _, ln in lines])
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in ("sigma_w2", "depth", "accuracy") if c not in header]
    if missing:
        raise ValueError(f"table {path} lacks the required column(s) {missing}; its columns are "
                         f"{header} (required: sigma_w2, depth, accuracy; optional: "
                         f"{', '.join(c for c in TABLE_COLUMNS[3:])})")
    if len(set(header)) != len(header):
        raise ValueError(f"table {path} repeats a column name: {header}")
    unknown = [h for h in header if h not in TABLE_COLUMNS]
    if unknown:
        warnings.warn(f"table columns not used: {', '.join(unknown)}", stacklevel=2)
    used = [(j, h) for j, h in enumerate(header) if h in TABLE_COLUMNS]
    rows = []
    for (lineno, _), cells in zip(lines[1:], reader):
        where = f"{path.name} line {lineno}"
        if len(cells) != len(header):
            raise ValueError(f"{where} has {len(cells)} fields, the header has {len(header)}")
        row = {h: _parse_cell(h, cells[j], where) for j, h in used}
        if dataset is None or row.get("dataset") == dataset:
            rows.append(row)
    if dataset is not None and "dataset" not in header:
        raise ValueError(f"--dataset {dataset} given but table {path} has no dataset column")
    if not rows:
        raise ValueError(f"table {path} has no data rows" + (f" for dataset {dataset!r}" if dataset else ""))
    return rows


def read_db(path, *, dataset: str | None = None) -> list[dict]:
    """Rows of a ``experiments.trainability`` SQLite store (one per network and checkpoint).

    Raises
    ------
    ValueError
        The file does not exist, holds no rows (for ``dataset``), or its table has other columns
        than ``experiments.config.COLUMNS`` (e.g. a store written before checkpoints, without
        ``max_steps``: ``experiments.store`` refuses to open it).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--db must name an existing results database, got {path}")
    from .trainability import open_store
    with open_store(path) as st:
        rows = st.rows() if dataset is None else st.rows(dataset=dataset)
    if not rows:
        raise ValueError(f"database {path} has no rows" + (f" for dataset {dataset!r}" if dataset else ""))
    return rows


# ---------------------------------------------------------------------------------------------
# laws


@dataclass(frozen=True)
class Law:
    """A trainable-depth law ``L = predict(theta, xi_c, xi_1, T)``.

    ``theta`` entries may be arrays of shape (B, 1) (B fits at once); ``positive`` constants are
    fitted as ``ln theta``; ``min_budgets`` is the number of distinct budgets T a fit needs (the
    law's T-dependent constants; 0 for budget-blind laws). ``limits``: ``(index, side, name)``
    entries: when the positive constant ``index`` runs off to infinity (``side`` +1) or to 0 (-1),
    the law is the law ``name`` with the other constants, in order (``simplest``).
    """

    name: str
    param_names: tuple[str, ...]
    predict: Callable
    positive: tuple[bool, ...]
    init: tuple[float, ...]
    min_budgets: int = 0
    limits: tuple[tuple[int, int, str], ...] = ()

    def to_theta(self, u):
        return [np.exp(ui) if pos else ui for ui, pos in zip(u, self.positive)]

    def from_theta(self, theta) -> np.ndarray:
        return np.array([math.log(t) if pos else t for t, pos in zip(theta, self.positive)], float)


LAWS = {
    "a*xi_c": Law("a*xi_c", ("a",), lambda t, xc, x1, T=None: t[0] * xc, (True,), (6.0,)),
    "a*xi_1": Law("a*xi_1", ("a",), lambda t, xc, x1, T=None: t[0] * x1, (True,), (6.0,)),
    "a*min(xi_1,xi_c)": Law("a*min(xi_1,xi_c)", ("a",),
                            lambda t, xc, x1, T=None: t[0] * np.minimum(xc, x1), (True,), (6.0,)),
    "a*xi_c+b": Law("a*xi_c+b", ("a", "b"), lambda t, xc, x1, T=None: t[0] * xc + t[1],
                    (True, False), (6.0, 0.0)),
    # null model: a depth limit that ignores the theory (e.g. set by the training budget)
    "constant": Law("constant", ("b",), lambda t, xc, x1, T=None: t[0] + 0.0 * xc, (True,), (20.0,)),
    "two-scale": Law("two-scale", ("a", "b"),
                     lambda t, xc, x1, T=None: 1.0 / (1.0 / (t[0] * xc) + 1.0 / (t[1] * x1)),
                     (True, True), (6.0, 12.0), limits=((1, 1, "a*xi_c"), (0, 1, "a*xi_1"))),
}
REFERENCE = Law("6*xi_c", (), lambda t, xc, x1, T=None: 6.0 * xc, (), ())
DEFAULT_LAWS = {**LAWS, REFERENCE.name: REFERENCE}
SCALES = {"xi_c": lambda xc, x1: xc, "xi_1": lambda xc, x1: x1,
          "min(xi_1,xi_c)": lambda xc, x1: np.minimum(xc, x1)}


def budget_laws(scale: str = "xi_c") -> dict[str, Law]:
    """Budget-aware laws ``L = a(T) * scale`` and the budget-blind ``a * scale``.

    Parameters
    ----------
    scale : {'xi_c', 'xi_1', 'min(xi_1,xi_c)'}
        The depth scale multiplied by a(T).

    Returns
    -------
    dict of Law
        ``a*<scale>`` (a constant), ``(a0+a1 ln T)*<scale>``, ``a*T^b*<scale>`` and
        ``a_inf*T/(T+T_half)*<scale>`` (saturating).

    Raises
    ------
    ValueError
        Unknown scale.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    f = SCALES[scale]
    return {
        f"a*{scale}": LAWS[f"a*{scale}"],
        f"(a0+a1 ln T)*{scale}": Law(f"(a0+a1 ln T)*{scale}", ("a0", "a1"),
                                     lambda t, xc, x1, T: (t[0] + t[1] * np.log(T)) * f(xc, x1),
                                     (False, False), (6.0, 0.0), 2),
        f"a*T^b*{scale}": Law(f"a*T^b*{scale}", ("a", "b"),
                              lambda t, xc, x1, T: t[0] * T ** t[1] * f(xc, x1),
                              (True, False), (6.0, 0.0), 2),
        f"a_inf*T/(T+T_half)*{scale}": Law(f"a_inf*T/(T+T_half)*{scale}", ("a_inf", "T_half"),
                                           lambda t, xc, x1, T: t[0] * T / (T + t[1]) * f(xc, x1),
                                           (True, True), (6.0, 100.0), 2,
                                           limits=((1, -1, f"a*{scale}"),)),
    }


def get_law(law) -> Law:
    """A law by name (``LAWS``, any ``budget_laws`` scale, ``REFERENCE``), or ``law`` itself."""
    if isinstance(law, Law):
        return law
    for table in (LAWS, *(budget_laws(s) for s in SCALES)):
        if law in table:
            return table[law]
    if law == REFERENCE.name:
        return REFERENCE
    raise ValueError(f"law must be a Law or one of {list(LAWS)} (or a budget law), got {law!r}")


# ---------------------------------------------------------------------------------------------
# censored-normal (Tobit) fit


@dataclass(frozen=True)
class _Data:
    y: np.ndarray         # ln L_max, shape (n,)
    c: np.ndarray
    xc: np.ndarray
    x1: np.ndarray
    T: np.ndarray         # budget per point (NaN: unknown)
    unit: np.ndarray      # bootstrap unit index per point, 0 .. n_units - 1
    unit_note: str

    @property
    def n_units(self) -> int:
        return int(self.unit.max()) + 1 if len(self.unit) else 0


def _stack(bs: list[Boundary]) -> _Data:
    cat = lambda name: np.concatenate([np.asarray(getattr(b, name), float) for b in bs])
    T = np.concatenate([np.full(len(b.L_max), b.budget if b.budget is not None else np.nan)
                        for b in bs])
    protos = [b.protocol if b.protocol is not None else ("#", i) for i, b in enumerate(bs)]
    distinct = list(dict.fromkeys(protos))
    if len(distinct) >= 2:
        unit = np.concatenate([np.full(len(b.L_max), distinct.index(p)) for b, p in zip(bs, protos)])
        note = f"resampling whole protocols ({len(distinct)})"
    else:
        values, unit = np.unique([_sig(v) for v in cat("sigma_w2")], return_inverse=True)
        note = (f"resampling the {len(values)} boundary points (one protocol)" if len(bs) == 1 else
                f"resampling the {len(values)} sigma_w^2 grid points of one protocol, each with all "
                f"its budgets")
    return _Data(np.log(cat("L_max")), np.concatenate([np.asarray(b.censor, int) for b in bs]),
                 cat("xi_c"), cat("xi_1"), T, np.asarray(unit, int), note)


def _ln_law(law: Law, theta, d: _Data) -> np.ndarray:
    """ln L_law at the points of ``d`` (a prediction below ``PRED_FLOOR`` or NaN counts as the
    floor); ``theta`` entries of shape (B, 1) give shape (B, n)."""
    return np.log(np.fmax(law.predict(theta, d.xc, d.x1, d.T), PRED_FLOOR))


_FD_STEP = np.finfo(float).eps ** (1 / 3)   # central differences: truncation ~ rounding error
_LN_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _tobit(law: Law, d: _Data, w: np.ndarray) -> Callable:
    """The censored-normal negative log-likelihood (without its constant) of the points of ``d``
    weighted by ``w``, and its gradient, as a function of v = (the law's constants as fitted,
    ln sigma).

    A right-censored point (``c = +1``) contributes -ln P(ln L > y) = -ln Phi((mu - y) / sigma),
    a left-censored one -ln Phi((y - mu) / sigma) (``scipy.special.log_ndtr``: ``scipy.stats.norm``
    would cost ~80 us of argument handling per call on this hot path, ~60 times the arithmetic).
    The derivatives of ln L_law in the law's constants are central differences (any ``Law``).
    """
    p = len(law.param_names)
    steps = np.vstack([np.zeros(p), np.eye(p), -np.eye(p)])          # (1 + 2p, p)
    inside = d.c == 0
    w_in, w_cens = np.where(inside, w, 0.0), np.where(inside, 0.0, w)
    w_sum_in = float(np.sum(w_in))

    def f(v):
        u, ln_s = v[:p], v[p]
        h = _FD_STEP * np.maximum(1.0, np.abs(u))
        M = np.atleast_2d(_ln_law(law, law.to_theta((u + steps * h).T[:, :, None]), d))
        dmu = (M[1:p + 1] - M[p + 1:]) / (2 * h[:, None])            # d mu / du, (p, n)
        s = math.exp(ln_s)
        z = (d.y - M[0]) / s
        t = -d.c * z                    # a censored point has probability Phi(t)
        log_p = log_ndtr(t)
        # d(-ln likelihood of a point) / dz: z inside, c phi(t) / Phi(t) when censored
        dz = np.where(inside, z, d.c * np.exp(-0.5 * t * t - _LN_SQRT_2PI - log_p))
        wdz = w * dz
        grad = np.empty(p + 1)
        grad[:p] = -(dmu @ wdz) / s
        grad[p] = w_sum_in - wdz @ z
        return w_in @ (0.5 * z * z + ln_s) - w_cens @ log_p, grad
    return f


def _bounds(law: Law) -> list[tuple[float, float]]:
    """ln of a positive constant in [-30, 30], a free constant in [-1e6, 1e6], sigma in
    [SIGMA_MIN, e^3]."""
    return [(-30.0, 30.0) if pos else (-1e6, 1e6) for pos in law.positive] + \
        [(math.log(SIGMA_MIN), 3.0)]


def _starts(law: Law) -> np.ndarray:
    """Starting points: each constant at 0.3, 1 and 3 times its initial value (or +-0.5 for a
    free constant), sigma at 0.2."""
    options = []
    for t, pos in zip(law.init, law.positive):
        options.append([t * m for m in (1.0, 0.3, 3.0)] if pos
                       else [t + dt * max(1.0, abs(t)) for dt in (0.0, -0.5, 0.5)])
    return np.array([np.append(law.from_theta(c), math.log(0.2))
                     for c in itertools.product(*options)])


def _minimize(law: Law, d: _Data, w: np.ndarray, starts):
    """The best converged SLSQP run (``scipy.optimize.minimize``, bounded) from ``starts``:
    (v, nll), or None when no run converged.

    SLSQP rather than L-BFGS-B: the latter's BLAS calls on these 2-3 parameter problems start
    OpenBLAS threads, 100 times slower than the fit itself on a loaded machine."""
    from scipy.optimize import minimize
    f, bounds, best = _tobit(law, d, w), _bounds(law), None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for v0 in starts:
            r = minimize(f, v0, jac=True, method="SLSQP", bounds=bounds,
                         options={"ftol": 1e-14, "maxiter": 500})
            if r.success and np.isfinite(r.fun) and (best is None or r.fun < best.fun):
                best = r
    return None if best is None else (best.x, float(best.fun))


def _requirement(law: Law, d: _Data, w: np.ndarray | None = None) -> str | None:
    """Why ``law`` cannot be fitted to the points of ``d`` with weight ``w`` > 0 (None: it can)."""
    used = np.ones(len(d.y), bool) if w is None else w > 0
    if not used.any():
        return "cannot fit (no points)"
    if law.min_budgets and not np.all(np.isfinite(d.T[used])):
        return "cannot fit (needs training budgets T: a steps column)"
    interior = used & (d.c == 0)
    n_int = int(interior.sum())
    if n_int < len(law.param_names):
        return f"cannot fit (needs >= {len(law.param_names)} interior points, has {n_int})"
    if law.min_budgets:
        n_T = len(np.unique(d.T[interior]))
        if n_T < law.min_budgets:
            return f"cannot fit (needs >= {law.min_budgets} budgets with interior points, has {n_T})"
    return None


@dataclass(frozen=True)
class FitResult:
    """A fitted law.

    ``ci_low`` / ``ci_high`` are NaN when there is no interval (``ci_note`` says why, or what was
    resampled; ``n_skipped`` resamples were left out: too few interior points to fit, or the
    optimiser did not converge); ``sigma`` is the fitted scatter of ln L_max about the law;
    ``rmse`` the in-sample RMS log error (censored points count only when violated);
    ``aic = 2 (constants + 1) + 2 nll``.
    """

    law: str
    param_names: tuple[str, ...]
    theta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    rmse: float
    n_points: int
    n_censored: int
    sigma: float = float("nan")
    nll: float = float("nan")
    aic: float = float("nan")
    ci_note: str = ""
    n_skipped: int = 0


@dataclass(frozen=True)
class NoFit:
    """A law that could not be fitted, and why."""

    law: str
    reason: str


def _log_residuals(law: Law, theta, d: _Data) -> np.ndarray:
    r = _ln_law(law, list(theta), d) - d.y
    r = np.where(d.c == 1, np.minimum(r, 0.0), r)
    return np.where(d.c == -1, np.maximum(r, 0.0), r)


def rms_log_error(law: Law | str, theta, b: Boundary | list[Boundary]) -> float:
    """RMS of the log residuals ``ln L_law - ln L_max`` over the points of ``b``; a censored point
    counts only when the law violates its bound (a score of predictions, not the fit likelihood)."""
    bs = [b] if isinstance(b, Boundary) else list(b)
    r = _log_residuals(get_law(law), theta, _stack(bs))
    return float(np.sqrt(np.mean(r ** 2)))


def _expanded_alpha(alpha: float, n: int, p: int) -> float:
    """Tail level of the *expanded* percentile bootstrap interval (Hesterberg 2015): the plain
    percentile interval is too narrow for the few (7-10) points or protocols of a fit; the z
    quantile is replaced by ``sqrt(n / (n - p)) t_{n-p}``."""
    from scipy.stats import norm, t
    df = max(n - p, 1)
    z = math.sqrt(n / df) * t.ppf(1 - alpha / 2, df)
    return float(2 * norm.sf(z))


def _check_n_boot(n_boot: int, name: str = "n_boot") -> None:
    if n_boot != 0 and not MIN_BOOT <= n_boot <= MAX_BOOT:
        raise ValueError(f"{name} must be 0 (no CI) or >= {MIN_BOOT} (at most {MAX_BOOT}), "
                         f"got {n_boot}")


def fit_law(law: Law | str, boundaries: Boundary | list[Boundary], *, n_boot: int = N_BOOT,
            seed: int = 0, level: float = 0.95) -> FitResult:
    """Fit one law to the pooled points of ``boundaries`` by censored-normal maximum likelihood.

    The optimiser is ``scipy.optimize.minimize`` (SLSQP within ``_bounds``) from several starts;
    each bootstrap resample starts from the fit to all points.

    Parameters
    ----------
    law : Law or str
        A law or its name (``LAWS``, ``budget_laws``, ``REFERENCE``).
    boundaries : Boundary or list of Boundary
        Points to fit; budget-aware laws need every boundary's ``budget``.
    n_boot : int
        Bootstrap resamples: 0 (no interval) or >= ``MIN_BOOT``.
    seed : int
        Seed of the resampling.
    level : float
        Confidence level of the expanded percentile interval, in (0, 1).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        Too few interior points or budgets for the law, or no start converged (the message
        starts "cannot fit"), bad ``n_boot`` or ``level``.

    References
    ----------
    Tobin (1958) for the censored-normal likelihood; Hesterberg (2015) for the expanded interval.
    """
    law = get_law(law)
    _check_n_boot(n_boot)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    bs = [boundaries] if isinstance(boundaries, Boundary) else list(boundaries)
    if not bs:
        raise ValueError("boundaries is empty: nothing to fit")
    d = _stack(bs)
    why = _requirement(law, d)
    if why is not None:
        raise ValueError(f"law {law.name}: {why}")
    best = _minimize(law, d, np.ones(len(d.y)), _starts(law))
    if best is None:
        raise ValueError(f"law {law.name}: cannot fit (the optimiser converged from no start)")
    v, nll = best
    p = len(law.param_names)
    theta = np.array([float(t) for t in law.to_theta(v[:p])])

    ci_lo = ci_hi = np.full(p, np.nan)
    skipped = 0
    if p == 0:
        note = "no constants"
    elif n_boot == 0:
        note = "no CI (0 resamples)"
    elif d.n_units < 2:
        note = f"no CI ({d.n_units} resampling unit)"
    else:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(d.n_units, np.full(d.n_units, 1.0 / d.n_units), size=n_boot)
        boots = []
        for w in counts[:, d.unit].astype(float):
            res = _minimize(law, d, w, [v]) if _requirement(law, d, w) is None else None
            if res is not None:
                boots.append(law.to_theta(res[0][:p]))
        skipped = n_boot - len(boots)
        if len(boots) < n_boot / 2:
            note = (f"no CI (only {len(boots)} of {n_boot} resamples could be fitted; "
                    f"{d.unit_note})")
        else:
            alpha = _expanded_alpha(1 - level, d.n_units, p) / 2
            ci_lo, ci_hi = np.quantile(boots, [alpha, 1 - alpha], axis=0)
            note = d.unit_note + (" (few units: a coarse interval)" if d.n_units < 5 else "")
    r = _log_residuals(law, theta, d)
    return FitResult(law.name, law.param_names, theta, np.asarray(ci_lo), np.asarray(ci_hi),
                     float(np.sqrt(np.mean(r ** 2))), len(d.y), int(np.sum(d.c != 0)),
                     math.exp(v[p]), nll, 2 * (p + 1) + 2 * nll, note, skipped)


def _reason(e: ValueError) -> str:
    """'law X: cannot fit (...)' -> 'cannot fit (...)'."""
    return str(e).split(": ", 1)[-1]


def fit_all(boundaries, *, laws: dict[str, Law] | None = None, n_boot: int = N_BOOT,
            seed: int = 0) -> dict[str, FitResult | NoFit]:
    """Fit every law (default ``LAWS`` and ``REFERENCE``); a law that cannot be fitted is a
    ``NoFit`` with the reason, the others are still fitted."""
    laws = DEFAULT_LAWS if laws is None else laws
    out = {}
    for name, law in laws.items():
        try:
            out[name] = fit_law(law, boundaries, n_boot=n_boot, seed=seed)
        except ValueError as e:
            if "cannot fit" not in str(e):
                raise
            out[name] = NoFit(name, _reason(e))
    return out


def _held_out(laws: dict[str, Law], folds: list[tuple], score) -> dict:
    """``folds``: (key, training boundaries, test boundaries); per law (name) the ``Law``, the
    score of each fold and the constants fitted on its training boundaries."""
    out = {}
    for name, law in laws.items():
        errs, thetas, reasons = {}, {}, {}
        for key, train, test in folds:
            try:
                thetas[key] = fit_law(law, train, n_boot=0).theta
            except ValueError as e:
                reasons[key] = _reason(e)
                continue
            errs[key] = score(law, thetas[key], test)
        out[name] = {"law": law, "errors": errs, "theta": thetas,
                     "mean": float(np.mean(list(errs.values()))) if errs else math.nan,
                     "reason": next(iter(reasons.values()), None), "unfitted": reasons}
    return out


def compare_held_out(boundaries: list[Boundary], *, laws: dict[str, Law] | None = None) -> dict:
    """Fit each law on one boundary, score it on every other boundary at the same budget.

    Parameters
    ----------
    boundaries : list of Boundary
        At least two at one budget (boundaries without a budget count as one budget).
    laws : dict of Law, optional
        Default ``LAWS`` and ``REFERENCE``.

    Returns
    -------
    dict
        ``{name: {"law": Law, "errors": {(i, j): rms}, "theta": {(i, j): constants},
        "mean": float, "reason": str or None}}``: ``(i, j)`` indexes ``boundaries`` (fit on i, scored on j);
        ``reason`` says why a fold is missing.

    Raises
    ------
    ValueError
        No two boundaries at one budget.
    """
    laws = DEFAULT_LAWS if laws is None else laws
    pairs = [(i, j) for i, a in enumerate(boundaries) for j, b in enumerate(boundaries)
             if i != j and a.budget == b.budget]
    if not pairs:
        raise ValueError("held-out comparison needs at least two boundaries at the same budget "
                         "(another keep, data set or panel)")
    folds = [((i, j), [boundaries[i]], [boundaries[j]]) for i, j in pairs]
    return _held_out(laws, folds, rms_log_error)


def per_budget_constants(boundaries: list[Boundary], *, scale: str = "xi_c", n_boot: int = N_BOOT,
                         seed: int = 0) -> dict[float, FitResult | NoFit]:
    """The constant a(T) of ``a*<scale>`` fitted separately at each budget T (protocols pooled).

    Returns
    -------
    dict
        ``{T: FitResult or NoFit}`` in increasing T.
    """
    law = budget_laws(scale)[f"a*{scale}"]
    Ts = sorted({b.budget for b in boundaries if b.budget is not None})
    return {T: fit_all([b for b in boundaries if b.budget == T], laws={law.name: law},
                       n_boot=n_boot, seed=seed)[law.name] for T in Ts}


def compare_budgets(boundaries: list[Boundary], *, scale: str = "xi_c") -> dict:
    """Leave-one-budget-out comparison of the budget laws.

    Each law of ``budget_laws(scale)`` is fitted on the boundaries of every budget but T and scored
    (RMS log error, censoring-aware) on all points at T.

    Returns
    -------
    dict
        ``{name: {"law": Law, "errors": {T: rms}, "theta": {T: constants}, "mean": float,
        "reason": str or None}}``.

    Raises
    ------
    ValueError
        Fewer than two distinct budgets.
    """
    Ts = sorted({b.budget for b in boundaries if b.budget is not None})
    if len(Ts) < 2:
        raise ValueError(f"held-out budgets need at least two distinct budgets T, got {len(Ts)}")
    with_T = [b for b in boundaries if b.budget is not None]
    folds = [(T, [b for b in with_T if b.budget != T], [b for b in with_T if b.budget == T])
             for T in Ts]
    return _held_out(budget_laws(scale), folds, rms_log_error)


def simplest(law: Law | str, theta) -> tuple[str, np.ndarray]:
    """The simplest law that fitted constants amount to: a constant that ran off towards its bound
    (beyond ``RUNAWAY``, or below 1 / ``RUNAWAY``) drops its term (``Law.limits``), repeatedly.

    Parameters
    ----------
    law : Law or str
    theta : array_like, shape (p,)
        Fitted constants of ``law``.

    Returns
    -------
    name : str
        E.g. ``a*xi_c`` for ``two-scale`` with b = 1e13; ``law``'s own name when nothing ran off.
    theta : ndarray
        The constants of that law.
    """
    law, theta = get_law(law), np.asarray(theta, float)
    for index, side, name in law.limits:
        t = theta[index]
        if (t >= RUNAWAY) if side > 0 else (0 < t <= 1 / RUNAWAY):
            return simplest(name, np.delete(theta, index))
    return law.name, theta


def held_out_winner(comp: dict, exclude=(REFERENCE.name,)) -> str | None:
    """The law with the smallest mean held-out error among those scored on the most folds.

    Errors within ``TIE_RTOL`` (relative) of the smallest are a tie, won by the law with the
    fewest constants. A winner that reduced to one simpler law in every fold (``simplest``: e.g.
    ``two-scale`` with b at its bound is ``a*xi_c``) is named as that law.

    Parameters
    ----------
    comp : dict
        ``compare_held_out`` or ``compare_budgets`` result.
    exclude : sequence of str
        Laws that cannot win (default the fixed reference 6 xi_c).

    Returns
    -------
    str or None
        None when no law has a finite mean error.
    """
    cand = {k: v for k, v in comp.items() if k not in exclude and np.isfinite(v["mean"])}
    if not cand:
        return None
    most = max(len(v["errors"]) for v in cand.values())
    cand = {k: v for k, v in cand.items() if len(v["errors"]) == most}
    best = min(v["mean"] for v in cand.values())
    tied = [k for k, v in cand.items() if v["mean"] <= best + TIE_RTOL * best]
    winner = min(tied, key=lambda k: (len(cand[k]["law"].param_names), cand[k]["mean"]))
    reduced = {simplest(cand[winner]["law"], t)[0] for t in cand[winner]["theta"].values()}
    return reduced.pop() if len(reduced) == 1 else winner


# ---------------------------------------------------------------------------------------------
# the whole analysis, report and plot


@dataclass(frozen=True)
class Analysis:
    """Everything ``report`` prints and ``plot`` draws (see ``run_fits``)."""

    boundaries: tuple
    per_boundary: tuple           # one {law: FitResult | NoFit} per boundary
    pooled: dict | None           # over all boundaries (None with one boundary)
    held_out: dict | None         # compare_held_out (None without two boundaries at one budget)
    scale: str
    per_budget: dict | None       # per_budget_constants (None with fewer than two budgets)
    budget_fits: dict | None      # budget laws fitted on every budget
    held_out_budgets: dict | None
    best: str | None              # the law drawn by ``plot``
    best_theta: np.ndarray
    best_why: str
    notes: tuple = ()

    @property
    def labels(self) -> tuple:
        """Unique display labels, by index (equal labels are numbered)."""
        count = defaultdict(int)
        for b in self.boundaries:
            count[b.label] += 1
        return tuple(f"{b.label} #{i + 1}" if count[b.label] > 1 else b.label
                     for i, b in enumerate(self.boundaries))


def run_fits(boundaries: list[Boundary], *, n_boot: int = N_BOOT, seed: int = 0, scale: str = "xi_c",
             progress: bool = False, notes=()) -> Analysis:
    """Per-boundary and pooled fits, held-out comparisons and the budget analysis.

    Parameters
    ----------
    boundaries : list of Boundary
    n_boot : int
        Bootstrap resamples per fit (0: no confidence intervals, else >= ``MIN_BOOT``).
    seed : int
    scale : str
        Depth scale of the budget laws (``SCALES``).
    progress : bool
        Show a tqdm bar (stderr, terminals only).
    notes : sequence of str
        Lines for the report header (e.g. warnings raised while reading).

    Returns
    -------
    Analysis

    Raises
    ------
    ValueError
        No boundaries, bad ``n_boot`` or ``scale``.
    """
    bs = list(boundaries)
    if not bs:
        raise ValueError("boundaries is empty: nothing to fit")
    _check_n_boot(n_boot)
    budget_laws(scale)   # validates scale
    Ts = sorted({b.budget for b in bs if b.budget is not None})
    with_budgets = len(Ts) >= 2
    from tqdm import tqdm
    steps = len(bs) + (len(bs) > 1) + (2 * len(Ts) + 2 if with_budgets else 0)
    bar = tqdm(total=steps, desc="fitting laws", unit="fit", disable=None if progress else True,
               file=sys.stderr)
    per_boundary = []
    for b in bs:
        per_boundary.append(fit_all([b], n_boot=n_boot, seed=seed))
        bar.update()
    pooled = None
    if len(bs) > 1:
        pooled = fit_all(bs, n_boot=n_boot, seed=seed)
        bar.update()
    try:
        held = compare_held_out(bs)
    except ValueError:
        held = None
    per_T = fits_T = held_T = None
    if with_budgets:
        per_T = per_budget_constants(bs, scale=scale, n_boot=n_boot, seed=seed)
        bar.update(len(Ts))
        fits_T = fit_all([b for b in bs if b.budget is not None], laws=budget_laws(scale),
                         n_boot=n_boot, seed=seed)
        bar.update(2)
        held_T = compare_budgets(bs, scale=scale)
        bar.update(len(Ts))
    bar.close()
    # the law to draw: budget winner, else held-out winner, else smallest AIC of the pooled fit
    theta, best, why = np.array([]), None, "no law could be fitted"
    chosen = None
    if held_T is not None and held_out_winner(held_T) is not None:
        best, why = held_out_winner(held_T), "smallest mean held-out-budget error"
        chosen = fits_T[best]
    elif held is not None and held_out_winner(held) is not None:
        best, why = held_out_winner(held), "smallest mean held-out error"
        chosen = (pooled or per_boundary[0])[best]
    else:
        fits = pooled or per_boundary[0]
        ok = {k: v for k, v in fits.items() if isinstance(v, FitResult) and k != REFERENCE.name}
        if ok:
            best = min(ok, key=lambda k: ok[k].aic)
            why, chosen = "smallest AIC (no held-out comparison possible)", ok[best]
    if isinstance(chosen, FitResult):
        theta = chosen.theta
    elif best is not None:
        best, why = None, f"the winner {best} could not be fitted on all points"
    return Analysis(tuple(bs), tuple(per_boundary), pooled, held, scale,
                    per_T, fits_T, held_T, best, theta, why, tuple(notes))


def _fmt_theta(f: FitResult | NoFit) -> str:
    if isinstance(f, NoFit):
        return f.reason
    if not f.param_names:
        return "(fixed)"
    # a constant running off to ~1e6+ (or a positive one to ~0) means that term drops out: the law
    # degenerates to a simpler one
    g = lambda v: ("unbounded" if abs(v) >= RUNAWAY else "~0" if 0 < abs(v) < 1 / RUNAWAY
                   else f"{v:.3g}")
    if not np.all(np.isfinite(f.ci_low)):
        return ", ".join(f"{p} = {g(t)}" for p, t in zip(f.param_names, f.theta)) + " (no CI)"
    return ", ".join(f"{p} = {g(t)} [{g(lo)}, {g(hi)}]"
                     for p, t, lo, hi in zip(f.param_names, f.theta, f.ci_low, f.ci_high))


def _fit_table(fits: dict) -> list[str]:
    lines = ["| law | constants [95 % CI] | scatter sigma | AIC | RMS log error | points (censored) |",
             "|---|---|---|---|---|---|"]
    for name, f in fits.items():
        if isinstance(f, NoFit):
            lines.append(f"| {name} | {f.reason} | | | | |")
        else:
            lines.append(f"| {name} | {_fmt_theta(f)} | {f.sigma:.3f} | {f.aic:.1f} | {f.rmse:.3f} "
                         f"| {f.n_points} ({f.n_censored}) |")
    fitted = [f for f in fits.values() if isinstance(f, FitResult) and f.param_names]
    notes = sorted({f.ci_note for f in fitted})
    lines += ["", "CI: " + "; ".join(notes) + "."] if notes else []
    skipped = [f"{f.law} {f.n_skipped}" for f in fitted if f.n_skipped]
    if skipped:
        lines.append("Resamples skipped (too few interior points, or no convergence): "
                     + ", ".join(skipped) + ".")
    return lines + [""]


def _held_table(comp: dict, keys: list, head: Callable) -> list[str]:
    lines = ["| law | " + " | ".join(head(k) for k in keys) + " | mean |",
             "|---|" + "---|" * (len(keys) + 1)]
    for name, v in comp.items():
        cells = [f"{v['errors'][k]:.3f}" if k in v["errors"] else "n/a" for k in keys]
        mean = f"{v['mean']:.3f}" if math.isfinite(v["mean"]) else "n/a"   # no law scored
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    reasons = [f"{name} at {head(k)}: {r}" for name, v in comp.items() for k, r in v["unfitted"].items()]
    return lines + ([""] + [f"n/a: {r}" for r in reasons] if reasons else []) + [""]


def report(analysis: Analysis | list[Boundary], *, n_boot: int = N_BOOT, seed: int = 0,
           header: str = "") -> str:
    """Markdown report: boundaries, fits with CIs, held-out tables, budget analysis, winner.

    ``analysis`` is a ``run_fits`` result, or boundaries to analyse with ``n_boot`` and ``seed``."""
    a = analysis if isinstance(analysis, Analysis) else run_fits(analysis, n_boot=n_boot, seed=seed)
    bs, labels = a.boundaries, a.labels
    lines = [header, ""] if header else []
    lines += [f"> warning: {n}" for n in a.notes] + ([""] if a.notes else [])
    for i, (b, lab) in enumerate(zip(bs, labels)):
        thr = f", threshold {b.threshold:.3f}" if np.isfinite(b.threshold) else ""
        lines += [f"### Boundary #{i + 1}: {lab}{thr}\n",
                  "| sigma_w^2 | L_max | censoring | bracketing depths | xi_c | xi_1 | 6 xi_c |",
                  "|---|---|---|---|---|---|---|"]
        for s, L, c, lo, hi, xc, x1 in zip(b.sigma_w2, b.L_max, b.censor, b.lower, b.upper, b.xi_c,
                                           b.xi_1):
            cs = {0: "", 1: "> (every depth with data trains)", -1: "< (no depth trains)"}[int(c)]
            br = f"{lo:g}-{hi:g}" if np.isfinite(lo) and np.isfinite(hi) else ""
            lines.append(f"| {s:g} | {L:.1f} | {cs} | {br} | {xc:.2f} | {x1:.2f} | {6 * xc:.1f} |")
        lines.append("")
    for i, fits in enumerate(a.per_boundary):
        lines += [f"### Fits on #{i + 1}: {labels[i]}\n"] + _fit_table(fits)
    if a.pooled is not None:
        lines += [f"### Fits pooled over all {len(bs)} boundaries\n"] + _fit_table(a.pooled)
    if a.held_out is not None:
        keys = sorted({k for v in a.held_out.values() for k in (*v["errors"], *v["unfitted"])})
        lines += ["### Held-out RMS log error (fit on #i, scored on #j at the same budget)\n"]
        lines += _held_table(a.held_out, keys, lambda k: f"#{k[0] + 1} -> #{k[1] + 1}")
        w = held_out_winner(a.held_out)
        if w is not None and a.pooled is not None:
            lines.append(f"**Held-out winner: {w}**, pooled constants: {_fmt_theta(a.pooled[w])}; "
                         f"mean held-out error {a.held_out[w]['mean']:.3f} vs "
                         f"{a.held_out[REFERENCE.name]['mean']:.3f} for 6 xi_c.\n")
    if a.per_budget is not None:
        lines += [f"### Training budget: per-budget constant a(T) of a*{a.scale}\n",
                  "| T | a(T) [95 % CI] | scatter sigma | points (censored) |", "|---|---|---|---|"]
        for T, f in a.per_budget.items():
            if isinstance(f, NoFit):
                lines.append(f"| {T:g} | {f.reason} | | |")
            else:
                lines.append(f"| {T:g} | {_fmt_theta(f)} | {f.sigma:.3f} | {f.n_points} ({f.n_censored}) |")
        lines += ["", f"### Budget-aware laws L = a(T) * {a.scale}, fitted on every budget\n"]
        lines += _fit_table(a.budget_fits)
        lines += ["### Held-out budgets (fit on the other budgets, RMS log error at T)\n"]
        lines += _held_table(a.held_out_budgets, sorted({k for v in a.held_out_budgets.values()
                                                         for k in (*v["errors"], *v["unfitted"])}),
                             lambda T: f"T={T:g}")
        w, blind = held_out_winner(a.held_out_budgets), f"a*{a.scale}"
        if w == blind:
            lines.append(f"**Budget winner: the budget-blind {w}** (no budget law predicts held-out "
                         f"budgets better), constants: {_fmt_theta(a.budget_fits[w])}.\n")
        elif w is not None:
            lines.append(f"**Budget winner: {w}**, constants: {_fmt_theta(a.budget_fits[w])}; mean "
                         f"held-out-budget error {a.held_out_budgets[w]['mean']:.3f} vs "
                         f"{a.held_out_budgets[blind]['mean']:.3f} for the budget-blind {blind}.\n")
    lines.append(f"Best law (the one --plot and the figures draw): {a.best or 'none'} ({a.best_why}).")
    return "\n".join(lines)


def plot(analysis: Analysis, path) -> Path:
    """Heatmap per protocol (its largest budget) with the boundary, 6 xi_c and the chosen law.

    Parameters
    ----------
    analysis : Analysis
    path : str or Path
        Output file; the format follows the suffix (.png, .pdf, .svg).

    Returns
    -------
    Path
    """
    from experiments.figures import style
    from experiments.figures.training import cell_edges
    a = analysis
    panels = {}
    for i, b in enumerate(a.boundaries):
        key = b.protocol if b.protocol is not None else ("#", i)
        if key not in panels or (b.budget or 0) > (panels[key][1].budget or 0):
            panels[key] = (i, b)
    import textwrap
    ncols = min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    fig, axes = style.figure(nrows, ncols, width=3.2 * ncols, height=3.1 * nrows + 0.4)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    law = get_law(a.best) if a.best is not None else None
    im = None
    for ax, (i, b) in zip(axes.flat, panels.values()):
        if b.accuracy is not None:
            im = ax.pcolormesh(cell_edges(b.sigma_w2), cell_edges(b.depths), b.accuracy,
                               cmap=style.CMAP, vmin=0.0, vmax=1.0)
        fine = np.linspace(b.sigma_w2.min(), b.sigma_w2.max(), 100) if len(b.sigma_w2) > 1 else b.sigma_w2
        xc, x1 = depth_scales(fine, b.noise, activation=b.activation, sigma_b2=b.sigma_b2)
        ax.plot(fine, 6 * xc, color=style.color(1), label=r"$6\,\xi_c$ (Schoenholz)", gid="6xi_c")
        if law is not None:
            T = b.budget if b.budget is not None else np.nan
            ax.plot(fine, law.predict(list(a.best_theta), xc, x1, T), color=style.color(5), ls="--",
                    label=f"{a.best}: " + ", ".join(f"{t:.3g}" for t in a.best_theta), gid="law")
        for c, mk, lab in ((0, "o", "boundary $L_{max}$"), (1, "^", "$L_{max}$ > (all train)"),
                           (-1, "v", "$L_{max}$ < (none trains)")):
            sel = b.censor == c
            if sel.any():
                ax.plot(b.sigma_w2[sel], b.L_max[sel], mk, color="w", mec="k", ms=4.5, label=lab)
        if b.depths is not None:
            ax.set_ylim(*cell_edges(b.depths)[[0, -1]])
        else:
            ax.set_ylim(0, 2 * float(np.max(b.L_max)))
        ax.set_xlabel(r"$\sigma_w^2$")
        ax.set_title(textwrap.fill(a.labels[i], 34), fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("depth $L$")
    legend = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=3)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9).set_label("accuracy")
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def fit_table(path, *, activation: str | None = None, sigma_b2: float | None = None,
              keep: float | None = None, noise=None, dataset: str | None = None,
              per_step: str = "last", threshold: float = THRESHOLD, relative: bool = True,
              n_classes: int | None = None, n_boot: int = N_BOOT, seed: int = 0, scale: str = "xi_c") -> Analysis:
    """``python -m experiments.fit --table`` in Python: read, extract boundaries, fit.

    Parameters are those of ``read_table``, ``extract_boundaries`` and ``run_fits``; warnings
    (defaulted fields, ignored columns) are raised as ``UserWarning`` and kept in the notes.

    Returns
    -------
    Analysis
        Print it with ``report``, draw it with ``plot``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_table(path, dataset=dataset)
        bs = extract_boundaries(rows, metric="accuracy", per_step=per_step, threshold=threshold,
                                relative=relative, n_classes=n_classes, activation=activation,
                                sigma_b2=sigma_b2, keep=keep, noise=noise)
    for w in caught:
        warnings.warn(w.message, stacklevel=2)
    return run_fits(bs, n_boot=n_boot, seed=seed, scale=scale,
                    notes=[str(w.message) for w in caught])


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    from meanfield.activations import ACTIVATIONS
    from meanfield.cli.args import grid, integer
    p = argparse.ArgumentParser(prog="python -m experiments.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (exactly one)")
    src.add_argument("--db", type=Path, help="SQLite file written by experiments.trainability")
    src.add_argument("--table", type=Path, help="long-format CSV: sigma_w2, depth, accuracy, ...")
    src.add_argument("--sigma-w2", type=grid(lo=0, lo_open=True),
                     help="boundary given directly: sigma_w^2 values > 0 (a,b,c or start:stop:step)")
    src.add_argument("--lmax", type=grid(lo=0, lo_open=True),
                     help="boundary given directly: L_max values > 0, one per sigma_w^2 value")
    src.add_argument("--censor", type=grid(integer=True),
                     help="per given point: 0 interior, 1 lower bound, -1 upper bound")
    p.add_argument("--metric", default=None, choices=("eval_acc", "train_acc_last", "test_acc"),
                   help="accuracy column of a --db (default eval_acc)")
    p.add_argument("--per-step", choices=("last", "each"), default=None,
                   help="networks evaluated at several steps: last step only (default) or each "
                        "step as a training budget T")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"relative (default {THRESHOLD:g} of the way from chance to the best) or, with "
                        "--absolute, an accuracy")
    p.add_argument("--absolute", action="store_true")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes (chance level); default from the data set name")
    p.add_argument("--dataset", help="only this data set")
    p.add_argument("--keep", type=float, default=None,
                   help="keep probability rho in (0, 1] of dropout, for a given boundary or rows "
                        "without a keep or noise column (default 1.0, with a warning)")
    p.add_argument("--noise", default=None,
                   help="instead of --keep: any noise layer by its spec, e.g. "
                        "\"sparseout(keep=0.9, s=1.5)\" or \"gaussian(sigma_eps2=0.1)\"")
    p.add_argument("--sigma-b2", type=float, default=None, help="sigma_b^2 >= 0 (default 0.05)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None, help="(default tanh)")
    p.add_argument("--bootstrap", type=int, default=N_BOOT,
                   help=f"bootstrap resamples: 0 (no CI) or {MIN_BOOT} ... {MAX_BOOT} (default "
                        f"{N_BOOT}; 1000 or more for final numbers)")
    p.add_argument("--seed", type=integer(0), default=0, help="bootstrap seed >= 0")
    p.add_argument("--budget-scale", choices=list(SCALES), default="xi_c",
                   help="depth scale of the budget laws a(T) * scale (default xi_c)")
    p.add_argument("--plot", type=Path, help="draw the heatmap with boundary and law (.png/.pdf/.svg)")
    return p


def _check(args) -> None:
    """Range checks of the command line, before any file is read (ValueError names the flag)."""
    given = args.sigma_w2 is not None or args.lmax is not None
    sources = [n for n, v in (("--db", args.db), ("--table", args.table)) if v is not None]
    if given:
        sources.append("--sigma-w2/--lmax")
    if len(sources) != 1:
        raise ValueError(f"give exactly one input: --db, --table or --sigma-w2 with --lmax "
                         f"(got {', '.join(sources) or 'none'})")
    if given:
        if args.sigma_w2 is None or args.lmax is None:
            raise ValueError("--sigma-w2 and --lmax must be given together")
        if len(args.lmax) != len(args.sigma_w2):
            raise ValueError(f"--lmax needs one value per --sigma-w2 value ({len(args.sigma_w2)}), "
                             f"got {len(args.lmax)}")
        if args.censor is not None and (len(args.censor) != len(args.sigma_w2)
                                        or not np.all(np.isin(args.censor, (-1, 0, 1)))):
            raise ValueError(f"--censor needs one value in {{-1, 0, 1}} per --sigma-w2 value, got "
                             f"{args.censor.tolist()}")
        for flag, v in (("--per-step", args.per_step), ("--metric", args.metric),
                        ("--dataset", args.dataset), ("--classes", args.classes)):
            if v is not None:
                raise ValueError(f"{flag} applies to --db or --table, not to a given boundary")
    elif args.censor is not None:
        raise ValueError("--censor applies to a boundary given with --sigma-w2 and --lmax")
    if args.table is not None and args.metric is not None:
        raise ValueError("--metric applies to --db; a table's metric is its accuracy column")
    if args.keep is not None and not 0 < args.keep <= 1:
        raise ValueError(f"--keep (keep probability rho) must be in (0, 1], got {args.keep}")
    if args.noise is not None:
        if args.keep is not None:
            raise ValueError("give --keep (dropout) or --noise (any noise layer), not both")
        try:
            _noise_layer(args.noise)
        except ValueError as e:
            raise ValueError(f"--noise: {e}") from None
    if args.sigma_b2 is not None and not (math.isfinite(args.sigma_b2) and args.sigma_b2 >= 0):
        raise ValueError(f"--sigma-b2 must be finite and >= 0, got {args.sigma_b2}")
    if args.absolute and not 0 <= args.threshold <= 1:
        raise ValueError(f"--threshold with --absolute is an accuracy in [0, 1], got {args.threshold}")
    if not args.absolute and not 0 < args.threshold < 1:
        raise ValueError(f"--threshold (relative) must be in (0, 1), got {args.threshold}")
    if args.classes is not None and args.classes < 2:
        raise ValueError(f"--classes must be >= 2, got {args.classes}")
    _check_n_boot(args.bootstrap, "--bootstrap")
    if args.plot is not None:
        if args.plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"--plot must end in .png, .pdf or .svg, got {args.plot}")
        if not args.plot.parent.is_dir():
            raise ValueError(f"--plot: directory {args.plot.parent} does not exist")
    for flag, path in (("--db", args.db), ("--table", args.table)):
        if path is not None and not path.is_file():
            raise ValueError(f"{flag} must name an existing file, got {path}")
    if args.db is not None:
        with open(args.db, "rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":   # sqlite3 would raise DatabaseError
            raise ValueError(f"--db must name a SQLite file (experiments.trainability's), got "
                             f"{args.db}")


class _Refused(SystemExit):
    """A combination ``_check`` refused (the message is printed; ``main`` returns 2)."""


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags; every check happens here, before any file is read or a fit started:
    bad input ends in an ``error:`` line naming the flag and its range, exit status 2
    (``SystemExit``)."""
    args = build_parser().parse_args(argv)
    try:
        _check(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise _Refused(2) from None
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except _Refused:
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.sigma_w2 is not None:
                if args.keep is None and args.noise is None:
                    warnings.warn("no --keep or --noise: keep = 1.0 (no dropout) assumed")
                layer = args.noise if args.noise is not None else (args.keep or 1.0)  # 1.0: no keep
                bounds = [boundary_from_arrays(
                    args.sigma_w2, args.lmax, noise=layer, censor=args.censor,
                    activation=args.activation or "tanh",
                    sigma_b2=0.05 if args.sigma_b2 is None else args.sigma_b2)]
                header = "## Trainable-depth fit of a given boundary"
            else:
                if args.db is not None:
                    rows, metric = read_db(args.db, dataset=args.dataset), args.metric or "eval_acc"
                else:
                    rows, metric = read_table(args.table, dataset=args.dataset), "accuracy"
                per_step = args.per_step or "last"
                bounds = extract_boundaries(
                    rows, threshold=args.threshold, relative=not args.absolute, metric=metric,
                    per_step=per_step, n_classes=args.classes, activation=args.activation,
                    sigma_b2=args.sigma_b2, keep=args.keep, noise=args.noise)
                thr = (f"relative {args.threshold:g} of the way from chance to the best cell"
                       if not args.absolute else f"accuracy {args.threshold:g}")
                header = (f"## Trainable-depth fit of {args.db or args.table}\n\nmetric {metric}; "
                          f"trainable: {thr}; steps per network: {per_step}")
        notes = [str(w.message) for w in caught]
        for n in notes:
            print(f"warning: {n}", file=sys.stderr)
        analysis = run_fits(bounds, n_boot=args.bootstrap, seed=args.seed,
                            scale=args.budget_scale, progress=True, notes=notes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(analysis, header=header))
    if args.plot is not None:
        print(f"\nheatmap: {plot(analysis, args.plot)}")
    return 0


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
