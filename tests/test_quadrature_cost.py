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


def _tanh_sech2_mean(q):
    """E[sech^2(sqrt(q) z)] to O(q^-2.5): Laplace's expansion of the Gaussian density around 0,
    with int sech^2 = 2 and int x^2 sech^2 = pi^2 / 6."""
    return (2 - math.pi ** 2 / (12 * q)) / math.sqrt(2 * math.pi * q)


def test_tanh_asymptotics_used_below_against_mpmath():
    import mpmath
    mpmath.mp.dps = 30
    q = 1e4  # the neglected terms are O(q^-2) relative: 1e-8 here, 1e-40 at q = 1e20
    sech2 = mpmath.quad(lambda x: mpmath.sech(x) ** 2 * mpmath.npdf(x, 0, mpmath.sqrt(q)),
                        [-mpmath.inf, -20, 0, 20, mpmath.inf])
    sech4 = mpmath.quad(lambda x: mpmath.sech(x) ** 4 * mpmath.npdf(x, 0, mpmath.sqrt(q)),
                        [-mpmath.inf, -20, 0, 20, mpmath.inf])
    assert _tanh_sech2_mean(q) == pytest.approx(float(sech2), rel=1e-7)
    assert 4 / 3 / math.sqrt(2 * math.pi * q) == pytest.approx(float(sech4), rel=1e-3)


def test_huge_q_star_of_bounded_activations():
    # q* above 1e12 was refused for bounded activations although their bracket [sigma_b^2,
    # 2 (sigma_w^2 E[xi^2] + sigma_b^2)] is valid at any size. For tanh q* solves
    # q = sigma_w^2 / keep (1 - E[sech^2]) + sigma_b^2, chi_1 = sigma_w^2 / keep E[sech^4] with
    # E[sech^4] = 4/3 / sqrt(2 pi q) (1 + O(1/q)), and (keep = 1, c* ~ sigma_b^2 / q* ~ 0)
    # chi_c = sigma_w^2 E[sech^2]^2 -> 2/pi
    out = run_code(
        "for sw, sb, keep in ((1.5, 1e20, 0.9), (1e25, 0.05, 1.0)):\n"
        "    r = mf.analyze('tanh', sw, sb, keep)\n"
        "    print(*(repr(float(getattr(r, k))) for k in ('q_star', 'c_star', 'chi_1', 'chi_c')))\n")
    (q1, c1, chi1_1, chic1), (q2, c2, chi1_2, chic2) = (map(float, line.split())
                                                         for line in out.strip().splitlines())
    for (sw, sb, keep), q, chi1 in (((1.5, 1e20, 0.9), q1, chi1_1), ((1e25, 0.05, 1.0), q2, chi1_2)):
        exact = sb + sw / keep
        for _ in range(4):  # a contraction with factor ~1e-13: two steps reach rounding
            exact = sw / keep * (1 - _tanh_sech2_mean(exact)) + sb
        assert q == pytest.approx(exact, rel=1e-13)  # the quadrature's tolerance
        assert chi1 == pytest.approx(sw / keep * 4 / 3 / math.sqrt(2 * math.pi * exact), rel=1e-12)
    assert exact < 1e25 * (1 - 2e-13)  # the correction the check above resolves
    # sigma_b^2 = 1e20 dominates: c* = 1 - O(1e-21); chi_c = sigma_w^2 Kd <= sigma_w^2 D2 = keep chi_1
    assert 1 - 1e-15 <= c1 <= 1 and 0 < chic1 <= 0.9 * chi1_1
    assert abs(c2) <= 1e-10  # c* is solved to 1e-10 absolute
    assert chic2 == pytest.approx(1e25 * _tanh_sech2_mean(q2) ** 2, rel=1e-12)
    assert chic2 == pytest.approx(2 / math.pi, rel=1e-12)


def test_huge_q_star_of_unbounded_activations():
    # the upper bracket of an unbounded map is searched up to Q_CAP = 1e100 (it was 1e12):
    # ReLU q* = sigma_b^2 / (1 - sigma_w^2 / 2), linear q* = sigma_b^2 / (1 - sigma_w^2)
    out = run_code("print(repr(float(mf.q_star('relu', 1.0, 1e20))), "
                   "repr(float(mf.q_star('linear', 0.5, 1e60))))\n"
                   "try:\n    mf.q_star('relu', 1.0, 1e100)\n"
                   "except mf.NoFixedPointError as err:\n    print(err)\n")
    relu, linear, *error = out.split()
    assert float(relu) == pytest.approx(2e20, rel=1e-12)
    assert float(linear) == pytest.approx(2e60, rel=1e-12)
    assert "above the diagonal up to q = 1e+100" in " ".join(error)
