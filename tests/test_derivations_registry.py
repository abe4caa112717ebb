"""Registry, ``run_checks`` and ``python -m derivations``: results per derivation, a derivation its
check does not evaluate fails, every usage error is an ``error:`` line with exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import derivations
from derivations import CheckFailed
from derivations import __main__ as cli

ROOT = Path(__file__).resolve().parents[1]


def test_registry_lists_every_module_with_latex():
    reg = derivations.registry()
    assert {d.module for d in reg} == set(derivations.MODULES)
    names = {d.name for d in reg}
    for needed in ["linear.g_aa_exact", "linear.g_ab_exact", "linear.g_aa_gia", "relu.kernel",
                   "erf.kernel", "sparseout.glm_penalty", "sparseout.kappa", "kwinners.G"]:
        assert needed in names
    for d in reg:
        assert d.latex and d.doc


def test_registry_rejects_unknown_module():
    with pytest.raises(ValueError, match="modules must be among"):
        derivations.registry(["linear", "tanh"])


def _kwinners_with_check(check):
    return [derivations.Derivation(d.name, d.module, d.function, check, d.check_name, d.doc)
            for d in derivations.registry(["kwinners"])]


def test_check_that_skips_a_derivation_makes_check_fail(monkeypatch, capsys):
    real = derivations.registry(["kwinners"])[0].check

    def skips_G(rng):
        report = real(rng)
        del report["G"]
        return report

    broken = _kwinners_with_check(skips_G)
    results = {r.derivation: r for r in derivations.run_checks(broken)}
    assert not results["kwinners.G"].passed
    assert results["kwinners.G"].message == "not evaluated by its check"
    assert all(r.passed for name, r in results.items() if name != "kwinners.G")

    monkeypatch.setattr(derivations, "registry", lambda modules: broken)
    assert cli.main(["--check"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("kwinners.G "))
    assert "FAIL" in row
    assert "not evaluated by its check" in out
    assert f"{len(broken) - 1}/{len(broken)} derivations passed" in out


@pytest.mark.parametrize("error", [CheckFailed("forced disagreement"), TypeError("core API changed")])
def test_failing_check_fails_every_derivation_it_covers(monkeypatch, capsys, error):
    def failing(rng):
        raise error

    broken = _kwinners_with_check(failing)
    assert not any(r.passed for r in derivations.run_checks(broken))
    monkeypatch.setattr(derivations, "registry", lambda modules: broken)
    assert cli.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == len(broken) and f"{type(error).__name__}: {error}" in out


@pytest.mark.parametrize("report", [{"G": float("nan")}, {"G_typo": 0.0}])
def test_non_finite_or_unregistered_report_fails(report):
    real = derivations.registry(["kwinners"])[0].check
    broken = _kwinners_with_check(lambda rng: {**real(rng), **report})
    results = {r.derivation: r for r in derivations.run_checks(broken)}
    assert not results["kwinners.G"].passed
    if "G_typo" in report:  # a stray name fails the whole check: it may hide a gap
        assert not any(r.passed for r in results.values())
        assert "G_typo" in results["kwinners.threshold"].message


def test_subset_of_a_check_is_judged_alone():
    """Running one derivation of a shared check: the check's other names are not strays."""
    (only,) = [d for d in derivations.registry(["relu"]) if d.name == "relu.kernel"]
    (result,) = derivations.run_checks([only])
    assert result.passed and result.derivation == "relu.kernel"


def test_cli_check_passes_per_derivation(capsys):
    assert cli.main(["--check", "--module", "kwinners", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("kwinners.")]
    assert len(rows) == len(derivations.registry(["kwinners"]))
    assert all(" pass " in row for row in rows)
    assert "seed 3" in out


def test_cli_latex_prints_only_latex(capsys):
    import sympy as sp

    assert cli.main(["--latex", "--module", "linear"]) == 0
    lines = capsys.readouterr().out.splitlines()
    reg = derivations.registry(["linear"])
    assert len(lines) == 2 * len(reg)
    assert lines[::2] == [f"% {d.name}: {d.doc}" for d in reg]  # LaTeX comments
    q_star = next(d for d in reg if d.name == "linear.q_star")
    assert rf"\[ {sp.latex(q_star.function())} \]" in lines
    assert all(line.startswith(r"\[ ") and line.endswith(r" \]") for line in lines[1::2])
    assert not any("pass" in line or "derivations passed" in line for line in lines)


def _run_cli(*args):
    """Run the CLI in a fresh interpreter and report whether sympy (a heavy import) got loaded."""
    code = ("import sys; from derivations.__main__ import main; rc = main(sys.argv[1:]); "
            "print('sympy loaded' if 'sympy' in sys.modules else 'sympy not loaded'); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--seed", "-1"], "error: --seed must be an integer >= 0, got -1"),
    (["--seed", "1.5"], "error: --seed must be an integer >= 0, got 1.5"),
    (["--seed", "abc"], "error: --seed must be an integer >= 0, got abc"),
    (["--module", "tanh"],
     "error: --module must be one of linear, relu, erf, sparseout, kwinners, got 'tanh'"),
    (["--check", "--latex"], "error: --check and --latex cannot be combined"),
])
def test_cli_usage_errors_before_heavy_imports(args, message):
    proc = _run_cli(*args)
    assert proc.returncode == 2
    assert any(line.startswith(message) for line in proc.stderr.splitlines()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "sympy not loaded"


def test_cli_help_documents_latex():
    proc = _run_cli("--help")
    assert proc.returncode == 0
    assert "--latex" in proc.stdout and r"\[ ... \]" in proc.stdout and "no check" in proc.stdout
    assert "integer >= 0" in proc.stdout


@pytest.mark.parametrize("module", derivations.MODULES)
def test_every_derivation_passes_its_check(module):
    """Each module's checks evaluate every registered derivation and agree (seed differs from
    the CLI default so another set of random points is exercised)."""
    results = derivations.run_checks(derivations.registry([module]), seed=5)
    failed = [(r.derivation, r.message) for r in results if not r.passed]
    assert not failed


def test_compare_records_and_rejects():
    errs = {}
    assert derivations.compare(errs, "f", "", [1.0, np.inf], [1.0 + 1e-12, np.inf], rtol=1e-10) < 2e-12
    derivations.compare(errs, "f", "", 2.0, 2.0 * (1 + 1e-11), rtol=1e-10)
    assert errs["f"] == pytest.approx(1e-11, rel=1e-3)  # the largest relative error is kept
    for derived, reference in [(np.nan, 1.0), (np.inf, -np.inf), (1.0, np.inf), (np.inf, 1.0), (1.0, 1.1),
                               ([1.0, 2.0], [1.0, 2.0, 3.0])]:
        with pytest.raises(CheckFailed, match="^g at x"):
            derivations.compare(errs, "g", "at x", derived, reference, rtol=1e-3)
    assert "g" not in errs
