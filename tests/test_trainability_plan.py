"""The plan and cost model printed before a sweep: checkpoint series, FLOPs per network-step
against an independent count over the layers of the actual model, the estimate's bookkeeping, and
a throughput measurement that is finite and positive."""
import math
from dataclasses import replace

import pytest

from experiments import trainability as tr
from experiments.models import NetConfig


def test_checkpoint_series():
    assert tr.checkpoint_series(1000) == (100, 300)
    assert tr.checkpoint_series(10000) == (100, 300, 1000, 3000)
    assert tr.checkpoint_series(300) == (100,)
    assert tr.checkpoint_series(100) == ()
    assert tr.checkpoint_series(50, first=5) == (5, 15)
    with pytest.raises(ValueError, match="first must be >= 1"):
        tr.checkpoint_series(100, first=0)


def test_step_flops_counts_every_weight_matrix():
    for n_in, width, depth, n_out, batch in ((784, 400, 50, 10, 1000), (3072, 48, 1, 10, 64)):
        cfg = NetConfig(n_in, width, depth, n_out)
        weights = sum(a * b for a, b in cfg.layer_sizes)   # the model's own layer list
        # forward: one multiply-add per weight and example; backward: twice that
        assert tr.step_flops(n_in, width, depth, n_out, batch) == 6 * batch * weights


def test_estimate_and_plan():
    sweep = tr.PRESETS["smoke"]
    nets = tr.planned_networks(sweep)
    assert nets == sweep.networks()          # grid mode plans the grid
    est = tr.estimate(sweep, nets)
    assert est.networks == len(nets) and est.network_steps == len(nets) * sweep.steps
    assert math.isclose(sum(est.panels.values()), est.flops)
    assert set(est.panels) == {("mnist", nz) for nz in sweep.noises}
    # training: 6 flops per weight, example and step; each checkpoint: a forward pass (2 flops per
    # weight and image) over the evaluation batch and the test set
    weights = [sum(a * b for a, b in NetConfig(784, n.width, n.depth, 10).layer_sizes) for n in nets]
    expected = sum(w * (6 * n.batch_size * n.steps + 2 * len(sweep.budgets) * (n.eval_size + n.test_size))
                   for w, n in zip(weights, nets))
    assert est.flops == pytest.approx(expected, rel=1e-12)
    b = replace(sweep, search="boundary", depths=tuple(range(1, 21)))
    planned = tr.planned_networks(b)
    assert 0 < len(planned) < len(b.networks())
    assert {(n.dataset, n.noise, n.sigma_w2, n.depth) for n in planned} <= {
        (n.dataset, n.noise, n.sigma_w2, n.depth) for n in b.networks()}


def test_measured_throughput_is_positive():
    import torch
    torch.set_num_threads(1)
    rate = tr.measure_flops(tr.PRESETS["smoke"], "cpu", depth=2, members=2, min_seconds=0.05,
                            max_steps=8)
    assert math.isfinite(rate) and rate > 1e6
