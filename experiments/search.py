"""Adaptive search for the trainable-depth boundary on a depth grid (issue 11 section 1).

No torch: training is a callable, so the search logic is tested exactly against a
synthetic trainability oracle (``tests/test_trainability_search.py``) and driven by
``experiments.trainability`` with real networks.

A *column* is one (protocol, sigma_w^2): every network of one data set and noise layer at one
sigma_w^2 (all seeds). A *probe* trains a column at one grid depth and returns the accuracy of the
cell (mean over seeds) at every budget T (checkpoint). The search, per column:

1. **Start** at the shallowest grid depth and the grid depths nearest ``factors`` x xi_c (default
   {2, 6, 12} x xi_c, the theory's correlation depth scale; clipped to the grid), all probed in
   the first round. The shallowest depth measures the column's best accuracy (accuracy falls with
   depth), so the protocol's best cell, the reference of the relative threshold below, is in the
   store as it is in a full grid: on the cpu preset, leaving it out lowered the keep-0.98
   threshold from 0.475 to 0.447 and moved 3 of 7 boundaries by a grid step.
2. **Bracket** at each budget T: the first untrainable depth ``hi`` (the smallest probed depth
   that fails) and the last trainable depth ``lo`` (the largest probed depth below ``hi`` that
   trains). A missing side is sought at the grid edge first (the deepest grid depth when every
   probe trains, the shallowest when none does).
3. **Bisect** in log-depth: the next probe is the unprobed grid depth between ``lo`` and ``hi``
   nearest their geometric mean, for the largest budget still open (one probe per column and
   round), until ``lo`` and ``hi`` are adjacent on the grid or ``hi / lo <= 1 + resolution``.
   A budget is also settled when the shallowest grid depth fails (left-censored) or the deepest
   trains (right-censored).
4. **Check**: once every budget is settled, the grid neighbours of each bracket (one below ``lo``,
   one above ``hi``) are trained; a neighbour that contradicts the bracket reopens it (back to 3).
   Columns whose final pattern over the probed depths is not trainable-then-untrainable at some
   budget are reported (``SearchResult.non_monotone``), never hidden.

**Trainable** is ``experiments.fit``'s rule (``relative_threshold``, imported): a cell trains
when its accuracy reaches ``chance + threshold (best - chance)``, at least ``chance + MIN_LIFT``.
The final ``best``
(the best cell of the protocol over the whole sweep) is not known during the search; the rule used
is the best cell of the protocol *probed so far* (all budgets), recomputed every round, and every
bracket is re-derived from all probes with the current threshold, so an early decision made under
a lower bar is revisited. The boundaries reported by the project always come from
``experiments.fit`` on the stored rows; the search only chooses which networks to train.

Determinism: a round's decisions depend only on the results of earlier rounds, so replaying the
search on a store that already holds some results (a resumed sweep) makes the same decisions.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from .fit import MIN_LIFT, THRESHOLD
from .fit import relative_threshold as threshold

__all__ = ["Column", "SearchResult", "start_depths", "bracket", "next_depths", "search",
           "threshold", "FACTORS", "THRESHOLD", "MIN_LIFT"]

FACTORS = (2.0, 6.0, 12.0)


@dataclass(frozen=True)
class Column:
    """One column of the search.

    Parameters
    ----------
    group : hashable
        The protocol (e.g. ``(dataset, noise spec)``): columns of a group share the threshold.
    sigma_w2 : float
        Weight variance of the column.
    start : tuple of int
        Grid depths probed in the first round (``start_depths``).
    chance : float
        Chance accuracy of the group's task (1 / classes).
    """

    group: Hashable
    sigma_w2: float
    start: tuple[int, ...]
    chance: float = 0.1


@dataclass
class SearchResult:
    """What a search did.

    Attributes
    ----------
    results : dict
        ``(column, depth) -> {T: accuracy}`` for every probe.
    rounds : int
        Training rounds (each trains every probe it plans, e.g. in parallel).
    non_monotone : list of (Column, T, str)
        Columns whose final pattern is not trainable-then-untrainable at budget T, with the
        pattern over the probed depths (``depth:+`` trains, ``depth:-`` does not).
    """

    results: dict = field(default_factory=dict)
    rounds: int = 0
    non_monotone: list = field(default_factory=list)

    @property
    def probes(self) -> int:
        """Number of (column, depth) cells trained."""
        return len(self.results)


def start_depths(xi_c: float, depths: Sequence[int], factors: Sequence[float] = FACTORS) -> tuple[int, ...]:
    """The shallowest grid depth and the grid depths nearest (in log-depth) ``factors`` x ``xi_c``,
    clipped to the grid, distinct.

    Parameters
    ----------
    xi_c : float
        Correlation depth scale (layers; inf or a huge value clips to the deepest depth).
    depths : sequence of int
        The depth grid (>= 1).
    factors : sequence of float
        Multiples of xi_c.

    Returns
    -------
    tuple of int
        Sorted distinct grid depths.
    """
    grid = sorted({int(d) for d in depths})
    out = {grid[0]}
    for f in factors:
        target = f * xi_c if math.isfinite(xi_c) and xi_c > 0 else grid[-1]
        target = min(max(target, grid[0]), grid[-1])
        out.add(min(grid, key=lambda d: abs(math.log(d / target))))
    return tuple(sorted(out))


def bracket(ok: Mapping[int, bool]) -> tuple[int | None, int | None]:
    """(lo, hi): ``hi`` the smallest probed depth that fails, ``lo`` the largest probed depth below
    it that trains (None when there is none).

    Parameters
    ----------
    ok : mapping depth -> bool
        Whether each probed depth trains.
    """
    fails = [d for d, good in ok.items() if not good]
    hi = min(fails) if fails else None
    lo = max((d for d, good in ok.items() if good and (hi is None or d < hi)), default=None)
    return lo, hi


def _settled(lo, hi, grid, probed, resolution) -> bool:
    if hi is None:
        return grid[-1] in probed               # right-censored: the deepest depth trains
    if lo is None:
        return hi == grid[0]                    # left-censored: the shallowest depth fails
    return grid.index(hi) - grid.index(lo) == 1 or hi / lo <= 1 + resolution


def _bisect(lo, hi, grid, probed) -> int:
    """Next depth for an open bracket: a missing edge first, else the unprobed grid depth nearest
    the geometric mean of lo and hi."""
    if hi is None:
        return grid[-1]
    if lo is None:
        return grid[0]
    inside = [d for d in grid if lo < d < hi and d not in probed]
    mid = math.sqrt(lo * hi)
    return min(inside, key=lambda d: (abs(math.log(d / mid)), d))


def next_depths(ok_by_budget: Mapping[float, Mapping[int, bool]], grid: Sequence[int],
                resolution: float) -> list[int]:
    """The depths a column probes next (empty: the column is done).

    Parameters
    ----------
    ok_by_budget : mapping T -> (mapping depth -> bool)
        Trainable or not, per budget and probed depth (every budget has the same probed depths).
    grid : sequence of int
        The depth grid, increasing.
    resolution : float
        Relative bracket width that counts as resolved (> 0).

    Returns
    -------
    list of int
        One bisection depth for the largest open budget; else the missing check neighbours of all
        budgets (sorted, distinct); else nothing.
    """
    grid = list(grid)
    for T in sorted(ok_by_budget, reverse=True):
        ok = ok_by_budget[T]
        lo, hi = bracket(ok)
        if not _settled(lo, hi, grid, ok, resolution):
            return [_bisect(lo, hi, grid, ok)]
    checks = set()
    for ok in ok_by_budget.values():
        lo, hi = bracket(ok)
        if lo is not None and grid.index(lo) > 0:
            checks.add(grid[grid.index(lo) - 1])
        if hi is not None and grid.index(hi) < len(grid) - 1:
            checks.add(grid[grid.index(hi) + 1])
    probed = next(iter(ok_by_budget.values()), {})
    return sorted(checks - set(probed))


def _pattern(ok: Mapping[int, bool]) -> str:
    return " ".join(f"{d}:{'+' if ok[d] else '-'}" for d in sorted(ok))


def _monotone(ok: Mapping[int, bool]) -> bool:
    seq = [ok[d] for d in sorted(ok)]
    return seq == sorted(seq, reverse=True)


def search(columns: Sequence[Column], grid: Sequence[int],
           train: Callable[[list[tuple[Column, int]]], Mapping[tuple[Column, int], Mapping[float, float]]],
           *, resolution: float = 0.1, relative: float = THRESHOLD,
           budgets: Sequence[float] | None = None, max_rounds: int = 1000) -> SearchResult:
    """Run the boundary search (module docstring) for every column.

    Parameters
    ----------
    columns : sequence of Column
    grid : sequence of int
        Depth grid (>= 1); every probe is a grid depth.
    train : callable
        ``train(probes)`` with ``probes`` a list of ``(column, depth)`` returns, for each probe,
        ``{T: accuracy}`` (mean over seeds; NaN counts as untrainable) with the same budgets T
        for every probe. Called once per round with all of the round's probes.
    resolution : float
        Bracket resolution (> 0), e.g. 0.1 for 10 %.
    relative : float
        Relative threshold in (0, 1) (``threshold``).
    budgets : sequence of float, optional
        Budgets T to bracket (default: every budget ``train`` returns).
    max_rounds : int
        Safety cap (the search ends by itself: every round probes new grid depths).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValueError
        An empty or invalid grid, resolution <= 0, a threshold outside (0, 1), or ``train``
        returning budgets that differ between probes.
    """
    grid = sorted({int(d) for d in grid})
    if not grid or grid[0] < 1:
        raise ValueError(f"grid must hold depths >= 1, got {grid}")
    if not (resolution > 0 and math.isfinite(resolution)):
        raise ValueError(f"resolution must be a finite number > 0, got {resolution!r}")
    if not 0 < relative < 1:
        raise ValueError(f"relative threshold must be in (0, 1), got {relative!r}")
    out = SearchResult()
    pending = {c: sorted(set(c.start) & set(grid)) or [grid[0]] for c in columns}
    seen_budgets = None
    while pending:
        if out.rounds >= max_rounds:
            raise RuntimeError(f"boundary search did not end in {max_rounds} rounds")
        probes = [(c, d) for c, ds in pending.items() for d in ds]
        got = train(probes)
        out.rounds += 1
        for p in probes:
            acc = {float(T): float(v) for T, v in got[p].items()}
            if seen_budgets is None:
                seen_budgets = sorted(acc)
            elif sorted(acc) != seen_budgets:
                raise ValueError(f"train returned budgets {sorted(acc)} for {p}, {seen_budgets} before")
            out.results[p] = acc
        ok = _classify(out.results, relative, budgets or seen_budgets)
        pending = {}
        for c in columns:
            ds = next_depths(ok[c], grid, resolution)
            if ds:
                pending[c] = ds
    ok = _classify(out.results, relative, budgets or seen_budgets or [])
    for c in columns:
        for T, okT in sorted(ok[c].items()):
            if not _monotone(okT):
                out.non_monotone.append((c, T, _pattern(okT)))
    return out


def _classify(results, relative, budgets) -> dict:
    """column -> T -> depth -> trains, with each group's threshold from its best cell so far."""
    best = defaultdict(lambda: -math.inf)
    for (c, _), acc in results.items():
        for v in acc.values():
            if not math.isnan(v):
                best[c.group] = max(best[c.group], v)
    ok = defaultdict(lambda: defaultdict(dict))
    for (c, d), acc in results.items():
        thr = threshold(best[c.group], c.chance, relative)
        for T in budgets:
            ok[c][float(T)][d] = acc[float(T)] >= thr
    return ok
