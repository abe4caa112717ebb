"""python -m meanfield.depthscale: both probabilities stated, JSON records, errors."""
import json
import subprocess
import sys

import pytest

import meanfield as mf
from meanfield.depthscale import main


def test_rate_prints_keep_and_drop(capsys):
    assert main(["--rate", "0.5", "--sigma-w2", "1.0,2.0"]) == 0
    out = capsys.readouterr().out
    assert "keep (rho) = 0.5" in out and "drop (rate) = 0.5" in out
    for col in ("q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "xi_1", "6*xi_c"):
        assert col in out


def test_default_sweep_is_1_to_4(tmp_path):
    path = tmp_path / "out.json"
    assert main(["--keep", "0.99", "--json", str(path)]) == 0
    recs = json.loads(path.read_text())
    assert [r["sigma_w2"] for r in recs][:2] == [1.0, 1.1] and recs[-1]["sigma_w2"] == 4.0
    assert len(recs) == 31
    r = recs[6]  # sigma_w2 = 1.6: THEORY §5 row
    assert r["keep"] == 0.99 and r["drop"] == pytest.approx(0.01)
    assert r["q_star"] == pytest.approx(0.4836, abs=1e-4) and r["xi_c"] == pytest.approx(12.85, abs=0.01)
    ref = mf.analyze("tanh", 1.6, 0.05, 0.99)
    for name in ("q_star", "c_star", "chi_1", "chi_c", "chi_q", "xi_q", "xi_c", "xi_1"):
        assert r[name] == pytest.approx(float(getattr(ref, name)), rel=1e-12)
    assert r["6_xi_c"] == pytest.approx(6 * r["xi_c"])


def test_rate_and_keep_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["--rate", "0.5", "--keep", "0.5"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["--rate", "1.0"], "--drop/--rate: drop probability 1 - rho must lie in [0, 1)"),
    (["--keep", "0"], "--keep: keep probability rho must lie in (0, 1]"),
    (["--sigma-b2", "-1"], "sigma_b2 (bias variance) must be >= 0"),
    (["--sigma-w2", "4:1:0.1"], "start:stop:step"),
])
def test_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert msg in capsys.readouterr().err


def test_divergent_rows_are_marked_not_nan(capsys):
    assert main(["--activation", "relu", "--keep", "0.8", "--sigma-w2", "1.0,2.0"]) == 0
    out = capsys.readouterr().out
    assert "no stable finite fixed point" in out and "nan" not in out.lower()


def test_sparseout_option(capsys):
    assert main(["--activation", "relu", "--keep", "0.7", "--s", "1.5", "--sigma-w2", "1.2"]) == 0
    assert "sparseout (s = 1.5" in capsys.readouterr().out


def test_module_entry_point_and_help():
    out = subprocess.run([sys.executable, "-m", "meanfield.depthscale", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for opt in ("--rate", "--keep", "--activation", "--sigma-w2", "--sigma-b2", "--s", "--json"):
        assert opt in out
    res = subprocess.run([sys.executable, "-m", "meanfield.depthscale", "--rate", "0.5"],
                         capture_output=True, text=True, check=True)
    assert "drop (rate) = 0.5" in res.stdout


def test_cli_does_not_import_heavy_modules():
    code = ("import sys, meanfield.depthscale; "
            "print(sorted(m for m in ('torch', 'sympy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_q_star_zero_rows_say_what_xi_c_is(capsys):
    # ReLU at sigma_b2 = 0, keep 1, sigma_w2 = 1: q* = 0 and c* = 1, where the c-map is marginal
    # (c_slope = 1) while chi_c = sigma_w2 / 2 is the pair-gradient factor (THEORY §12.1)
    assert main(["--activation", "relu", "--keep", "1", "--sigma-b2", "0", "--sigma-w2", "1"]) == 0
    assert "q* = 0 rows: chi_c is the pair-gradient factor" in capsys.readouterr().out
    assert main(["--activation", "relu", "--keep", "1", "--sigma-b2", "0", "--sigma-w2", "1", "--json", "-"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["q_star"] == 0 and rec["chi_c"] == 0.5 and rec["c_slope"] == 1.0
    assert main(["--activation", "relu", "--sigma-w2", "1"]) == 0
    assert "q* = 0 rows" not in capsys.readouterr().out


def test_large_grid_in_parts_equals_one_call(capsys):
    # the CLI evaluates grids in parts of PART points (its progress bar's step): same numbers
    import numpy as np

    import meanfield as mf
    assert main(["--activation", "relu", "--keep", "0.9", "--sigma-w2", "1:1.7:0.0005", "--json", "-"]) == 0
    recs = json.loads(capsys.readouterr().out)
    sw = np.array([r["sigma_w2"] for r in recs])
    assert sw.size == 1401 > 2 * 512
    whole = mf.analyze("relu", sw, 0.05, 0.9, on_missing="nan")
    for key in ("q_star", "c_star", "chi_1", "xi_c"):
        np.testing.assert_array_equal([r[key] for r in recs], getattr(whole, key))
