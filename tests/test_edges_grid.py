"""Large parameter grids are evaluated in chunks under a memory cap (issue 12, part 1).

Memory is measured with tracemalloc (numpy's allocations are traced). The full 30,000-point
grid of the issue is benchmarks/bench_grid_memory.py; here a smaller grid under a smaller cap.
"""
import tracemalloc

import numpy as np
import pytest

import meanfield as mf
from meanfield import maps

MIB = 2**20


def peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name,sw,keep,kw,q_hi", [
    ("tanh", 1.5, 0.9, {}, 1e8), ("tanh", 3.5, 0.9, {}, 1.0), ("gelu", 1.5, 0.9, {}, 1e6),
    ("silu", 1.5, 0.9, {}, 1e6), ("hard_tanh", 1.8, 0.9, {}, 1e8), ("erf", 2.0, 0.9, {}, 1e2),
    ("tanh", 1.5, 0.9, {"noise": "sparseout", "s": 1.01}, 1e6),
    ("tanh", 1.5, 0.9, {"noise": "sparseout", "s": 0.7}, 1e6)])
def test_chunk_peak_is_bounded_by_point_bytes(monkeypatch, name, sw, keep, kw, q_hi):
    # a chunk of MEMORY_CAP // POINT_BYTES points stays under MEMORY_CAP plus a fixed overhead:
    # the peak's growth per point (each point its own large q*, the costly pair integrals; all
    # points in one chunk) is below POINT_BYTES, and the overhead is a fraction of the cap
    monkeypatch.setattr(maps, "MEMORY_CAP", 2**62)
    run = lambda n: peak(lambda: mf.gradient_metrics(  # noqa: E731
        name, sw, np.geomspace(0.05, q_hi, n), keep, depth=3, **kw))[1]
    small, large = run(4), run(12)
    assert (large - small) / 8 < maps.POINT_BYTES
    assert small < 64 * MIB


def test_analyze_grid_stays_under_the_cap(monkeypatch):
    cap = 24 * MIB
    monkeypatch.setattr(maps, "MEMORY_CAP", cap)
    sw = np.linspace(0.6, 3.0, 25)[None, :]
    sb = np.linspace(0.0, 0.4, 16)[:, None]
    res, used = peak(lambda: mf.analyze("tanh", sw, sb, 0.9))
    assert res.q_star.shape == (16, 25)
    assert used < cap + 4 * MIB  # the results themselves are a few kB
    # chunked equals pointwise
    for i, j in ((0, 0), (7, 13), (15, 24)):
        one = mf.analyze("tanh", float(sw[0, j]), float(sb[i, 0]), 0.9)
        for k in ("q_star", "c_star", "chi_1", "chi_c", "c_slope"):
            assert getattr(res, k)[i, j] == pytest.approx(float(getattr(one, k)), rel=1e-12, abs=1e-300)


def test_phase_diagram_and_maps_stay_under_the_cap(monkeypatch):
    cap = 24 * MIB
    monkeypatch.setattr(maps, "MEMORY_CAP", cap)
    pd, used = peak(lambda: mf.phase_diagram("tanh", np.linspace(0.6, 3.0, 30),
                                             np.linspace(0.0, 0.4, 12), 0.9))
    assert pd.result.q_star.shape == (12, 30) and used < cap + 4 * MIB
    c = np.linspace(-1, 1, 3000)
    out, used = peak(lambda: mf.c_map(0.8, c, "tanh", 1.5, 0.05, 0.9))
    assert out.shape == (3000,) and np.all(np.abs(out) <= 1) and used < cap + 4 * MIB
    q = np.geomspace(1e-6, 5.0, 3000)
    out, used = peak(lambda: mf.q_map(q, "gelu", 1.5, 0.05, 0.9))
    assert out.shape == (3000,) and used < cap + 4 * MIB


def test_chunk_slices():
    assert maps.chunk_slices(0) == []
    sl = maps.chunk_slices(1000, point_bytes=maps.MEMORY_CAP // 300)
    assert [s.stop - s.start for s in sl] == [300, 300, 300, 100]
    assert maps.chunk_slices(5, point_bytes=10 * maps.MEMORY_CAP) == [slice(i, i + 1) for i in range(5)]


def test_gradient_metrics_result_size_is_bounded():
    with pytest.raises(ValueError, match="depth=.* GiB"):
        mf.gradient_metrics("tanh", np.ones(1000), 0.05, 0.9, depth=10**6)
