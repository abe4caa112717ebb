"""Registry and ``python -m derivations``: every derivation renders LaTeX; failures are reported."""

import pytest

import derivations
from derivations import CheckFailed, CoreMissing, __main__ as cli


def test_registry_lists_every_module_with_latex():
    reg = derivations.registry()
    assert {d.module for d in reg} == set(derivations.MODULES)
    names = {d.name for d in reg}
    for needed in ["linear.g_aa_exact", "linear.g_ab_exact", "linear.g_aa_gia", "relu.kernel",
                   "erf.kernel", "sparseout.glm_penalty", "sparseout.kappa", "kwinners.G"]:
        assert needed in names
    for d in reg:
        assert d.latex and d.doc


def test_missing_core_function_raises():
    with pytest.raises(CoreMissing):
        derivations.core("no_such_function_in_the_core")


def test_cli_check_exit_codes(monkeypatch, capsys):
    assert cli.main(["--check", "--module", "kwinners"]) == 0
    reg = [d for d in derivations.registry() if d.module == "kwinners"]

    def failing(rng):
        raise CheckFailed("forced disagreement")

    broken = [derivations.Derivation(d.name, d.module, d.function, failing, d.check_name, d.doc) for d in reg]
    monkeypatch.setattr(cli, "registry", lambda: broken)
    assert cli.main(["--check"]) == 1
    assert "FAIL" in capsys.readouterr().out
