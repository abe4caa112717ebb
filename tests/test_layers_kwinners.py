"""experiments.layers k-winners: duty cycles for any batch size, checkpoints, KWinners2d, bad input.

Duty cycles are checked against routes that do not use the update rule: the plain mean of the
winner indicators (while at most ``period`` samples have been seen), the batch mean (B > period),
the explicit exponential weights, and the conservation sum_i d_i = k that holds for any average when
every winner is positive.
"""
import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.layers import KWinners, KWinners2d, update_boost_strength

torch.set_num_threads(1)


def _on(y):
    """Winner indicators 1(y > 0) per sample and unit, float64 numpy (B, n)."""
    return (y.detach().flatten(1) > 0).double().numpy()


def test_duty_cycle_is_the_running_mean_up_to_the_period():
    torch.manual_seed(0)
    layer = KWinners(30, 6, boost_strength=0.5, duty_cycle_period=25)
    seen = []
    for b in [5, 3, 9, 1, 7]:  # 25 samples in all
        seen.append(_on(layer(torch.randn(b, 30, dtype=torch.float64))))
        np.testing.assert_allclose(layer.duty_cycle.numpy(), np.concatenate(seen).mean(axis=0),
                                   rtol=0, atol=1e-7)
    assert int(layer.samples_seen) == 25
    layer.eval()
    before = layer.duty_cycle.clone()
    layer(torch.randn(4, 30))
    assert torch.equal(layer.duty_cycle, before)  # frozen in eval mode


def test_duty_cycle_exponential_weights_after_the_period():
    torch.manual_seed(1)
    period, b = 20, 5
    layer = KWinners(16, 4, boost_strength=0.3, duty_cycle_period=period)
    first = np.concatenate([_on(layer(torch.randn(b, 16))) for _ in range(period // b)])
    means = [_on(layer(torch.randn(b, 16))).mean(axis=0) for _ in range(7)]
    a = b / period  # each later batch has weight a, older estimates decay by 1 - a per batch
    t = len(means)
    expect = (1 - a) ** t * first.mean(axis=0) + sum(a * (1 - a) ** (t - 1 - j) * m
                                                     for j, m in enumerate(means))
    np.testing.assert_allclose(layer.duty_cycle.numpy(), expect, rtol=0, atol=1e-6)


def test_duty_cycle_matches_the_reference_rule_where_that_is_valid():
    # nupic.torch: d <- (d (T - B) + sum 1(y > 0)) / T, T = min(period, seen); same while B <= T
    torch.manual_seed(2)
    period = 12
    layer = KWinners(30, 6, boost_strength=0.5, duty_cycle_period=period)
    d, seen = np.zeros(30), 0
    for b in [5, 5, 5, 7, 3]:
        on = _on(layer(torch.randn(b, 30, dtype=torch.float64)))
        seen += b
        T = min(period, seen)
        d = (d * (T - b) + on.sum(axis=0)) / T
        np.testing.assert_allclose(layer.duty_cycle.numpy(), d, rtol=0, atol=1e-7)


def test_batches_larger_than_the_period_issue_case():
    # issue 12 §5: KWinners(100, 10, duty_cycle_period=64) on batches of 1000 went to -2.7e8 and
    # every boost factor to inf within 12 steps
    torch.manual_seed(3)
    layer = KWinners(100, 10, duty_cycle_period=64)
    for _ in range(30):
        on = _on(layer(torch.randn(1000, 100)))
        d = layer.duty_cycle.double().numpy()
        assert (d >= 0).all() and (d <= 1).all()
        np.testing.assert_allclose(d, on.mean(axis=0), rtol=0, atol=1e-7)  # T = B: the batch mean
        boost = np.exp(float(layer.boost_strength) * (layer.f - d))
        assert np.isfinite(boost).all() and (boost > 0).all()


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.integers(1, 300), min_size=1, max_size=12),
       period=st.integers(1, 200), positive=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_duty_cycles_stay_in_unit_interval_for_any_batch_and_period(batches, period, positive, seed):
    g = torch.Generator().manual_seed(seed)
    layer = KWinners(12, 3, boost_strength=2.0, duty_cycle_period=period)
    for b in batches:
        x = torch.randn(b, 12, generator=g)
        layer(x.abs() + 0.1 if positive else x)
        d = layer.duty_cycle
        assert bool(((d >= 0) & (d <= 1)).all()), (d, b, period)
        if positive:  # every sample has exactly k = 3 units on, so any average sums to 3
            assert float(d.double().sum()) == pytest.approx(3.0, rel=1e-5)
    assert int(layer.samples_seen) == sum(batches)


def test_state_dict_restores_boost_strength_and_duty_cycles_exactly():
    torch.manual_seed(4)
    kw = dict(boost_strength=1.5, boost_strength_factor=0.9, duty_cycle_period=40)
    layer = KWinners(50, 5, **kw)
    for _ in range(3):  # three epochs of two batches
        layer(torch.randn(16, 50))
        layer(torch.randn(16, 50))
        layer.update_boost_strength()
    assert float(layer.boost_strength) == 1.5 * 0.9 * 0.9 * 0.9
    assert float(layer.boost_strength) == pytest.approx(1.0935)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = KWinners(50, 5, **kw)  # boost strength 1.5 until loaded
    fresh.load_state_dict(torch.load(buf))
    assert float(fresh.boost_strength) == float(layer.boost_strength)
    assert torch.equal(fresh.duty_cycle, layer.duty_cycle)
    assert int(fresh.samples_seen) == int(layer.samples_seen) == 96
    x = torch.rand(8, 50)
    assert torch.equal(fresh(x), layer(x))  # training step: same winners, same duty update
    assert torch.equal(fresh.duty_cycle, layer.duty_cycle)
    fresh.eval(), layer.eval()
    assert torch.equal(fresh(x), layer(x))


def test_update_boost_strength_reaches_every_kwinners_layer():
    model = torch.nn.Sequential(KWinners2d(2, 3, boost_strength=2.0, boost_strength_factor=0.5),
                                torch.nn.Flatten(), KWinners(8, 2, boost_strength=1.0,
                                                             boost_strength_factor=0.25))
    update_boost_strength(model)
    assert float(model[0].boost_strength) == 1.0 and float(model[2].boost_strength) == 0.25
    assert model(torch.randn(3, 2, 2, 2)).shape == (3, 8)


@pytest.mark.parametrize("k, factor, expect", [(1, 1.5, 2), (3, 1.5, 5), (5, 1.5, 8), (10, 1.5, 15),
                                               (7, 1.3, 9), (4, 1.0, 4), (60, 1.5, 64)])
def test_inference_k_rounds_half_up_and_is_capped_at_n(k, factor, expect):
    # nupic.torch truncates int(1.5 k) (k = 3 -> 4); we round 1.5 k to nearest, halves up (-> 5)
    layer = KWinners(64, k, k_inference_factor=factor, boost_strength=0.0)
    assert layer.k_inference == expect
    layer.eval()
    assert ((layer(torch.randn(4, 64)) != 0).sum(dim=1) == expect).all()


def test_huge_boost_strength_stays_finite_and_exact():
    torch.manual_seed(5)
    layer = KWinners(20, 4, boost_strength=1e6)
    layer.duty_cycle.copy_(torch.rand(20))
    x = torch.randn(6, 20)
    for train, k in ((True, 4), (False, 6)):
        layer.train(train)
        mask = layer.winner_mask(x, k)  # before forward: a training step updates the duty cycles
        assert (mask.sum(dim=1) == k).all()
        y = layer(x)
        assert torch.isfinite(y).all() and torch.equal(y != 0, mask)
        assert torch.isfinite(layer.duty_cycle).all()


def test_empty_batch_gives_empty_output_and_leaves_state_alone():
    for layer, shape in ((KWinners(10, 2), (0, 10)), (KWinners(12, 2), (0, 3, 4)),
                         (KWinners2d(3, 2), (0, 3, 4, 4))):
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        for train in (True, False):
            layer.train(train)
            x = torch.empty(shape, requires_grad=True)
            y = layer(x)
            assert y.shape == shape
            y.sum().backward()
        assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("n, k, name", [
    (0, 1, "n "), (2.5, 1, "n "), (True, 1, "n "), ("10", 2, "n "),
    (10, 0, "k "), (10, 11, "k "), (10, 2.5, "k "), (10, 2.0, "k "), (10, None, "k "),
])
def test_kwinners_bad_sizes(n, k, name):
    with pytest.raises(ValueError, match=name):
        KWinners(n, k)


@pytest.mark.parametrize("layer", [lambda **kw: KWinners(10, 2, **kw),
                                   lambda **kw: KWinners2d(3, 2, **kw)])
@pytest.mark.parametrize("option, value", [
    ("boost_strength", NAN), ("boost_strength", INF), ("boost_strength", -0.1),
    ("boost_strength", "1.0"), ("k_inference_factor", INF), ("k_inference_factor", NAN),
    ("k_inference_factor", 0.5), ("boost_strength_factor", 1.5), ("boost_strength_factor", NAN),
    ("boost_strength_factor", -0.5), ("duty_cycle_period", 0), ("duty_cycle_period", 2.5),
    ("duty_cycle_period", "10"),
])
def test_kwinners_bad_options(layer, option, value):
    with pytest.raises(ValueError, match=f"{option} must"):
        layer(**{option: value})


def test_kwinners2d_bad_sizes():
    for channels, k in ((0, 1), (2.0, 1), (3, 0), (3, 1.5)):
        with pytest.raises(ValueError, match="channels" if channels != 3 else "k "):
            KWinners2d(channels, k)


def test_huge_inference_factor_is_capped_not_an_overflow():
    layer = KWinners(10, 3, k_inference_factor=1e308)
    assert layer.k_inference == 10
    layer2d = KWinners2d(2, 3, k_inference_factor=1e308).eval()
    assert ((layer2d(torch.randn(2, 2, 3, 3)) != 0).flatten(1).sum(dim=1) == 18).all()


def test_kwinners_bad_input_shapes():
    with pytest.raises(ValueError, match="expects n=10"):
        KWinners(10, 2)(torch.randn(2, 11))
    with pytest.raises(ValueError, match="shape"):
        KWinners(10, 2)(torch.randn(10))
    with pytest.raises(ValueError, match="channels=3"):
        KWinners2d(3, 2)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="channels=3"):
        KWinners2d(3, 2)(torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match="k=13 winners exceed the 12"):
        KWinners2d(3, 13)(torch.randn(2, 3, 2, 2))


# ---------------------------------------------------------------------------- KWinners2d

def test_kwinners2d_is_a_global_top_k_over_channels_and_positions():
    torch.manual_seed(6)
    x = torch.randn(5, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = KWinners2d(3, 7)(x)  # duty cycles start equal: no boost preference
    flat = x.detach().flatten(1).numpy()
    expect = np.zeros_like(flat)
    for row, out in zip(flat, expect):
        top = np.argsort(-row)[:7]
        out[top] = row[top]
    np.testing.assert_array_equal(y.detach().flatten(1).numpy(), expect)
    y.sum().backward()
    assert torch.equal(x.grad, (y.detach() != 0).double())
    ties = torch.zeros(1, 2, 2, 2)  # all tied: the lowest flat indices (channel 0 first) win
    assert KWinners2d(2, 3).winner_mask(ties, 3).flatten().tolist() == [True] * 3 + [False] * 5


def test_kwinners2d_duty_cycle_per_channel():
    torch.manual_seed(7)
    layer = KWinners2d(4, 10, boost_strength=0.7, duty_cycle_period=30)
    assert layer.duty_cycle.shape == (4,)
    fractions = []
    for b in [6, 10, 14]:  # 30 samples: the running mean
        y = layer(torch.rand(b, 4, 3, 3) + 0.01)  # positive: every winner is on
        on = (y.detach() > 0).double().numpy()
        fractions.append(on.reshape(b, 4, 9).mean(axis=2))  # fraction of each channel's positions
        np.testing.assert_allclose(layer.duty_cycle.numpy(), np.concatenate(fractions).mean(axis=0),
                                   rtol=0, atol=1e-7)
        assert float(layer.duty_cycle.double().sum()) * 9 == pytest.approx(10)  # k per sample
    big = KWinners2d(4, 10, duty_cycle_period=8)
    for _ in range(5):  # batches larger than the period: the batch mean, in [0, 1]
        y = big(torch.randn(100, 4, 3, 3))
        expect = (y.detach() > 0).double().numpy().reshape(100, 4, 9).mean(axis=(0, 2))
        np.testing.assert_allclose(big.duty_cycle.numpy(), expect, rtol=0, atol=1e-7)


def test_kwinners2d_boosts_per_channel():
    torch.manual_seed(8)
    beta = 3.0
    layer = KWinners2d(3, 6, boost_strength=beta)
    layer.duty_cycle.copy_(torch.tensor([0.9, 0.1, 0.0]))
    x = torch.rand(4, 3, 2, 2, dtype=torch.float64) + 0.5
    f = 6 / 12
    factor = np.exp(beta * (f - np.array([0.9, 0.1, 0.0])))  # the published form, not normalised
    boosted = (x.numpy() * factor[None, :, None, None]).reshape(4, 12)
    expect = np.zeros((4, 12), bool)
    for row, out in zip(boosted, expect):
        out[np.argsort(-row)[:6]] = True
    mask = layer.winner_mask(x, 6)
    np.testing.assert_array_equal(mask.flatten(1).numpy(), expect)
    assert mask[:, 0].sum() < mask[:, 2].sum()  # the busy channel loses winners to the idle one
    y = layer(x)
    assert torch.equal(y[mask], x[mask])  # un-boosted values are passed on


def test_kwinners2d_inference_and_checkpoint():
    torch.manual_seed(9)
    layer = KWinners2d(2, 5, boost_strength=1.5, duty_cycle_period=10)
    assert layer.k_inference == 8
    for _ in range(3):
        layer(torch.randn(7, 2, 3, 3))
        layer.update_boost_strength()
    fresh = KWinners2d(2, 5, boost_strength=1.5, duty_cycle_period=10)
    fresh.load_state_dict(layer.state_dict())
    assert float(fresh.boost_strength) == float(layer.boost_strength) == 1.5 * 0.9 * 0.9 * 0.9
    assert torch.equal(fresh.duty_cycle, layer.duty_cycle)
    fresh.eval(), layer.eval()
    x = torch.randn(4, 2, 3, 3)
    y = layer(x)
    assert torch.equal(fresh(x), y)
    assert ((y != 0).flatten(1).sum(dim=1) == 8).all()
    assert ((layer(torch.randn(2, 2, 2, 2)) != 0).flatten(1).sum(dim=1) == 8).all()
    assert ((KWinners2d(1, 3).eval()(torch.randn(2, 1, 2, 2)) != 0).flatten(1).sum(dim=1) == 4).all()


def test_kwinners2d_with_equal_duty_cycles_equals_kwinners_on_the_flattened_map():
    torch.manual_seed(10)
    a, b = KWinners2d(3, 11, boost_strength=2.0), KWinners(48, 11, boost_strength=2.0)
    x = torch.randn(6, 3, 4, 4)
    torch.testing.assert_close(a(x).flatten(1), b(x.flatten(1)), rtol=0, atol=0)
