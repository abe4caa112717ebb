"""Reference-data loader: layout checks against Huang's linear closed forms (independent route)."""
import math

import numpy as np
import pytest

from experiments import reference as ref



@pytest.mark.parametrize("width", [500, 1000])
def test_fig2_output_layer_matches_closed_form(width):
    """Last row is the output layer: g_aa^L = 4 q*^2 / rho, g_ab^L = 4 q_ab*^2 (about 3 % noise)."""
    for keep in (0.6, 0.7, 0.8, 0.9):
        q = 0.1 / (1 - 0.5 / keep)
        gaa = ref.load_fig2(keep, "g_aa", width)
        gab = ref.load_fig2(keep, "g_ab", width)
        assert gaa.shape == (200,) and gab.shape == (200,)
        assert gaa[-1] == pytest.approx(4 * q * q / keep, rel=0.1)
        assert gab[-1] == pytest.approx(4 * 0.2 ** 2, rel=0.15)
        # decays towards the input with slope ln(sigma_w^2/rho) per layer (authors' own check)
        slope = np.polyfit(np.arange(150, 190), np.log(gaa[150:190]), 1)[0]
        assert slope == pytest.approx(-math.log(0.5 / keep), rel=0.05)


def test_fig2_abs_metric_is_absolute_pair_metric():
    """g~_ab^L = 4 (E|u1 u2|)^2 with E|u1 u2| = q (2/pi)(sqrt(1-c^2) + c asin c) at q*, c*."""
    for keep in (0.6, 0.8):
        q = 0.1 / (1 - 0.5 / keep)
        c = 0.2 / q
        e_abs = q * 2 / math.pi * (math.sqrt(1 - c * c) + c * math.asin(c))
        assert ref.load_fig2(keep, "g_abs", 500)[-1] == pytest.approx(4 * e_abs ** 2, rel=0.1)


def test_fig3_and_univer_shapes():
    for act in ("tanh", "relu", "hard_tanh", "linear"):
        for m in ("g_aa", "g_ab", "g_abs"):
            assert ref.load_fig3(act, 0.8, m).shape == (200,)
    avail = ref.available_univer()
    assert ("tanh", 500, 0.9) in avail
    x = ref.load_univer("tanh", 500, 0.9, "g_aa")
    assert x.shape[0] == 100 and x.shape[1] in (20, 21)


def test_missing_directory_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MEANFIELD_HUANG2019_DIR", str(tmp_path))
    monkeypatch.setattr(ref, "__file__", str(tmp_path / "x" / "reference.py"))
    with pytest.raises(FileNotFoundError, match="MEANFIELD_HUANG2019_DIR"):
        ref.huang2019_dir()


@pytest.mark.parametrize("call,word", [
    (lambda: ref.load_fig2(0.65), "keep"), (lambda: ref.load_fig2(0.6, width=700), "width"),
    (lambda: ref.load_fig3("gelu", 0.6), "activation"), (lambda: ref.load_fig3("tanh", 0.6, "x"), "metric"),
    (lambda: ref.load_univer("tanh", 550, 0.9), "width"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
