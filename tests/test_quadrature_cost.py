"""Cost that does not grow with q* (issue 12, section 1), under a memory cap.

Each case runs in a child process whose address space is capped at 1 GiB (``RLIMIT_AS``), so a
regression to grids of ~q* x q* nodes (23 GiB at sigma_w^2 = 1e6, TiB at q = 1e30) fails here
instead of taking the machine down; a wall-clock limit catches a cost that grows without bound.
The values are checked too (closed forms, or the bounded map's limits).
"""
import math
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAP = 1 << 30


def run_capped(args, timeout=120):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def run_code(code, timeout=120):
    return run_capped(["-c", "import numpy as np, meanfield as mf\n" + code], timeout)


@pytest.mark.parametrize("args", [["--sigma-w2", "1e6"], ["--sigma-w2", "1e4", "--keep", "0.9"],
                                  ["--keep", "1e-4", "--sigma-w2", "1.5"], ["--activation", "silu"]])
def test_depthscale_cli_cases_from_the_issue(args):
    out = run_capped(["-m", "meanfield.depthscale", *args])
    assert "q_star" in out


def test_extreme_variances_in_the_api():
    out = run_code(
        "r = mf.analyze('tanh', 1.5, 0.05, keep=1e-6)\n"
        "print(float(r.q_star), float(r.c_star), float(r.chi_c))\n"
        "r = mf.analyze('tanh', 1.5, 1e8, keep=0.9)\n"
        "print(float(r.q_star), float(r.c_star), float(r.chi_c))\n"
        "print(repr(float(mf.q_map(1e30, 'tanh', 1.5, 0.05))))\n")
    lines = [[float(v) for v in line.split()] for line in out.strip().splitlines()]
    q1, c1, chic1 = lines[0]
    # keep = 1e-6: q* ~ sigma_w^2 / keep E[tanh^2] ~ 1.5e6, the dropout noise decorrelates
    assert 1.4e6 < q1 < 1.5e6 + 1 and 0 < c1 < 1e-6 and 0 < chic1 < 1e-5
    q2, c2, chic2 = lines[1]
    # sigma_b^2 = 1e8 dominates: q* = 1e8 + 1.5/0.9 E[tanh^2] and c* -> 1 - O(1/q*)
    assert q2 == pytest.approx(1e8 + 1.5 / 0.9, rel=1e-9) and 1 - 1e-8 < c2 < 1 and 0 < chic2 < 1
    # q = 1e30: E[tanh^2] = 1 - E[sech^2] = 1 - 2 / sqrt(2 pi q) to O(q^-1.5)
    assert lines[2][0] == pytest.approx(1.5 * (1 - 2 / math.sqrt(2 * math.pi * 1e30)) + 0.05, rel=1e-15)


def test_gelu_and_silu_c_map_at_huge_variance():
    # issue 12: a GELU c-map step at q ~ 2e6 raised ConvergenceError; at large q both behave as
    # ReLU: the c-map tends to the arc-cosine map (sqrt(1 - c^2) + (pi - arccos c) c) / pi
    out = run_code("print(float(mf.c_map(2e6, 0.5, 'gelu', 1.0, 0.0)), float(mf.c_map(2e6, 0.5, 'silu', 1.0, 0.0)))")
    relu = (math.sqrt(0.75) + (math.pi - math.acos(0.5)) * 0.5) / math.pi
    for v in map(float, out.split()):
        assert v == pytest.approx(relu, rel=1e-3)


def test_phase_diagrams_with_large_sigma_w2():
    out = run_code(
        "pd = mf.phase_diagram('tanh', [0.5, 10.0, 50.0], [0.05, 0.3], 0.95, exact=True)\n"
        "print(np.nanmax(pd.result.q_star), np.nanmax(pd.result.xi_c))\n"
        "pd = mf.phase_diagram('silu', [0.5, 1.5, 3.0], [0.05, 0.3], 0.9, exact=True)\n"
        "print(np.isfinite(pd.result.q_star).sum())\n")
    first, second = out.strip().splitlines()
    assert 40 < float(first.split()[0]) < 50 / 0.95 + 0.3
    assert int(second) >= 2


@pytest.mark.slow
def test_many_points_in_one_call_stay_under_the_cap():
    # 30,000 points (issue 12: > 6 GB, nothing chunked), and 2,000 with dropout (pair integrals)
    out = run_code(
        "r = mf.analyze('tanh', np.linspace(0.2, 0.99, 30000), 0.05)\n"
        "print(np.isfinite(r.q_star).all(), (r.c_star == 1).all())\n"
        "r = mf.analyze('tanh', np.linspace(1.0, 4.0, 2000), 0.05, 0.95)\n"
        "print(np.isfinite(r.xi_c).all())\n", timeout=300)
    assert out.split() == ["True", "True", "True"]
