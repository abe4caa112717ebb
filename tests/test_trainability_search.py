"""The adaptive boundary search (experiments.search) against synthetic trainability oracles: pure
functions of depth, sigma_w^2 and budget standing in for training, so the search logic is checked
exactly: the brackets equal those of the full grid, non-monotone columns are reported, a killed
search resumes with the same decisions, and the network counts of the presets."""
import math

import numpy as np
import pytest

from experiments import search as S
from experiments import trainability as tr

GRID = (10, 13, 16, 20, 25, 30, 36, 43, 51, 60, 72, 86, 100, 115, 130)


def _grid_bracket(reach, grid):
    """(last trainable, first untrainable) on the full grid for a monotone column: train <= reach."""
    ok = [d for d in grid if d <= reach]
    bad = [d for d in grid if d > reach]
    return (ok[-1] if ok else None), (bad[0] if bad else None)


def _oracle(reach, good=0.9, chance=0.1, calls=None):
    """train(probes): accuracy ``good`` where depth <= reach[column][T], else ``chance``."""
    def train(probes):
        if calls is not None:
            calls.append(list(probes))
        return {(c, d): {T: good if d <= r else chance for T, r in reach[c].items()}
                for c, d in probes}
    return train


def _bracket_of(res, c, T, relative=0.5):
    ok = S._classify(res.results, relative, [T])[c][T]
    return S.bracket(ok)


def test_brackets_equal_the_full_grid_and_cost_less():
    rng = np.random.default_rng(0)
    cols, reach = [], {}
    for j, s in enumerate(np.linspace(1, 4, 40)):
        xi = float(rng.uniform(2, 40))
        c = S.Column(("mnist", "dropout(keep=1.0)"), float(s), S.start_depths(xi, GRID))
        cols.append(c)
        true = float(xi * rng.uniform(2, 6))    # the boundary is not where the theory starts
        reach[c] = {100.0: 0.6 * true, 300.0: true}
    for budgets, share in ((None, 0.6), ([300.0], 0.45)):
        res = S.search(cols, GRID, _oracle(reach), resolution=0.1, budgets=budgets)
        assert res.non_monotone == []
        for c in cols:
            for T in (budgets or [100.0, 300.0]):
                lo, hi = _bracket_of(res, c, T)
                assert (lo, hi) == _grid_bracket(reach[c][T], GRID), (c, T)
        assert res.probes <= share * len(cols) * len(GRID), res.probes


def test_resolution_stops_before_adjacency():
    grid = tuple(range(10, 251, 2))
    c = S.Column("p", 2.0, (100,))
    res = S.search([c], grid, _oracle({c: {1.0: 163.0}}), resolution=0.25)
    lo, hi = _bracket_of(res, c, 1.0)
    assert lo <= 163 < hi and hi / lo <= 1.25 and grid.index(hi) - grid.index(lo) > 1


def test_censored_columns_and_a_protocol_where_nothing_learns():
    deep = S.Column("a", 1.0, S.start_depths(math.inf, GRID))
    shallow = S.Column("a", 3.0, S.start_depths(0.5, GRID))
    assert deep.start == (10, 130) and shallow.start == (10,)
    dead = S.Column("b", 2.0, (20, 60))
    reach = {deep: {1.0: 1e9}, shallow: {1.0: 0.0}, dead: {1.0: 1e9}}

    def train(probes):
        out = _oracle(reach)(probes)
        for (c, d) in probes:
            if c is dead:
                out[(c, d)] = {1.0: 0.12}   # never beats chance by MIN_LIFT
        return out
    res = S.search([deep, shallow, dead], GRID, train)
    # deep: all train up to the grid top (right-censored), checked one below;
    # shallow: the shallowest fails (left-censored), checked one above; dead: every probe fails
    assert sorted(d for c, d in res.results if c is deep) == [10, 115, 130]
    assert sorted(d for c, d in res.results if c is shallow) == [10, 13]
    assert _bracket_of(res, dead, 1.0) == (None, 10)


def test_threshold_follows_the_best_cell_seen_so_far():
    """A column that reaches 0.5 counts as trainable while the group's best is 0.6 and stops
    counting once another column shows 0.95 (threshold 0.525): the bracket is re-derived."""
    a = S.Column("g", 1.0, (10,))
    b = S.Column("g", 2.0, (10,))

    def train(probes):
        out = {}
        for c, d in probes:
            if c is a:
                out[(c, d)] = {1.0: 0.5 if d <= 43 else 0.1}
            else:   # b learns well only once probed at depth >= 130 (a late discovery)
                out[(c, d)] = {1.0: 0.95 if d == 130 else (0.6 if d <= 100 else 0.1)}
        return out
    res = S.search([a, b], GRID, train)
    assert S.threshold(0.95, 0.1) == pytest.approx(0.525)
    # with the final best 0.95, a's 0.5 cells are untrainable: left-censored at the shallowest depth
    assert _bracket_of(res, a, 1.0) == (None, 10)
    assert res.non_monotone and res.non_monotone[0][0] is b   # 0.6 ... 0.95 at 130: not monotone


def test_non_monotone_column_is_reported_not_hidden():
    c = S.Column("p", 2.0, (20, 60, 115))

    def train(probes):   # trains up to 60, fails at 72, trains again at 86
        return {(cc, d): {1.0: 0.9 if d <= 60 or d == 86 else 0.1} for cc, d in probes}
    res = S.search([c], GRID, train)
    (col, T, pattern), = res.non_monotone
    assert col is c and T == 1.0
    # the check neighbour above the bracket (60, 72) exposes the second trainable region
    assert "60:+ 72:- 86:+ 100:-" in pattern
    assert _bracket_of(res, c, 1.0) == (60, 72)


def test_killed_search_replays_the_same_decisions():
    rng = np.random.default_rng(3)
    cols = [S.Column("p", float(s), S.start_depths(float(rng.uniform(3, 30)), GRID))
            for s in np.linspace(1, 4, 12)]
    reach = {c: {1.0: float(rng.uniform(5, 140))} for c in cols}
    calls = []
    full = S.search(cols, GRID, _oracle(reach, calls=calls))
    store = {}

    class Killed(Exception):
        pass

    rounds_left = 3

    def stored_then_killed(probes):   # a store that survives the kill
        nonlocal rounds_left
        out = _oracle(reach)(probes[: len(probes) // 2])   # part of the round got stored
        store.update(out)
        rounds_left -= 1
        if rounds_left == 0:
            raise Killed
        out.update(_oracle(reach)(probes[len(probes) // 2:]))
        store.update(out)
        return out
    with pytest.raises(Killed):
        S.search(cols, GRID, stored_then_killed)
    trained = []

    def resume(probes):
        todo = [p for p in probes if p not in store]
        trained.extend(todo)
        store.update(_oracle(reach)(todo))
        return {p: store[p] for p in probes}
    again = S.search(cols, GRID, resume)
    assert again.results == full.results and again.rounds == full.rounds
    assert len(trained) == full.probes - len([p for p in store if p not in trained])
    assert set(trained).isdisjoint(p for r in calls[:2] for p in r)   # finished rounds not redone


def test_start_depths_and_validation():
    assert S.start_depths(5.0, GRID) == (10, 30, 60)
    assert S.start_depths(0.1, GRID) == (10,)
    assert S.start_depths(math.inf, (10, 20)) == (10, 20)
    c = S.Column("p", 1.0, (10,))
    with pytest.raises(ValueError, match="resolution must be a finite number > 0"):
        S.search([c], GRID, _oracle({c: {1.0: 20}}), resolution=0)
    with pytest.raises(ValueError, match="grid must hold depths >= 1"):
        S.search([c], (0, 10), _oracle({c: {1.0: 20}}))
    with pytest.raises(ValueError, match=r"relative threshold must be in \(0, 1\)"):
        S.search([c], GRID, _oracle({c: {1.0: 20}}), relative=1.0)


def test_preset_network_counts():
    """The boundary mode's networks predicted by the oracle L_max = 4 xi_c: at most half of the cpu
    grid and a quarter of the paper grid (the numbers the README reports)."""
    for name, limit in (("cpu", 0.5), ("paper", 0.25)):
        sweep = tr.PRESETS[name]
        from dataclasses import replace
        b = replace(sweep, search="boundary")
        n = len(tr.planned_networks(b))
        assert n <= limit * len(sweep.networks()), (name, n)
