"""Checkpoint evaluation (issue 11 section 2): evaluating a network at step T during a longer run
gives exactly the metrics of the same network trained for T steps (evaluation draws nothing and
does not touch the minibatch stream), for a network alone and for ensemble members."""
import numpy as np
import pytest
import torch

from experiments.data import Dataset
from experiments.ensemble import train_ensemble
from experiments.models import NetConfig, TrainConfig, train_network
from meanfield.noise import Dropout

torch.set_num_threads(1)


def _toy_data(n=400, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + 0.7 * rng.normal(size=(n, d))
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
    return Dataset("toy", x[:300], y[:300].astype(np.int64), x[300:], y[300:].astype(np.int64))


def _metrics(c):
    return (c.train_acc_last, c.train_loss_last, c.eval_acc, c.eval_loss, c.test_acc)


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "ensemble"])
def test_checkpoint_equals_shorter_training(alone):
    data = _toy_data()
    cfgs = [NetConfig(12, 10, 3, n_out=3, sigma_w2=s, noise=Dropout(keep=0.8)) for s in (1.2, 2.5)]
    seeds = [3, 4]
    long = TrainConfig(optimizer="sgd", lr=0.1, batch_size=25, steps=30, data_seed=2, eval_size=80,
                       checkpoints=(5, 12))

    def train(tcfg):
        if alone:
            return [train_network(c, tcfg, data, s, dtype=torch.float64) for c, s in zip(cfgs, seeds)]
        return train_ensemble(cfgs, seeds, tcfg, data, dtype=torch.float64)

    full = train(long)
    for r in full:
        assert [c.steps for c in r.checkpoints] == [5, 12, 30]
        assert _metrics(r.checkpoints[-1]) == (r.train_acc_last, r.train_loss_last, r.eval_acc,
                                                r.eval_loss, r.test_acc)
        walls = [c.wall_time for c in r.checkpoints]
        assert 0 < walls[0] < walls[1] < walls[2] <= r.wall_time
    for k, T in enumerate((5, 12)):
        short = train(TrainConfig(optimizer="sgd", lr=0.1, batch_size=25, steps=T, data_seed=2,
                                  eval_size=80))
        for r, s in zip(full, short):
            assert _metrics(r.checkpoints[k]) == _metrics(s.checkpoints[-1])
            np.testing.assert_array_equal(r.losses[:T], s.losses)
    # the checkpoints moved: training changed the metrics (not a frozen network compared with itself)
    assert any(r.checkpoints[0].eval_loss != r.checkpoints[-1].eval_loss for r in full)


def test_checkpoints_are_validated_and_include_the_last_step():
    assert TrainConfig(steps=10, checkpoints=(3, 3, 1)).checkpoints == (1, 3, 10)
    assert TrainConfig(steps=10).checkpoints == (10,)
    with pytest.raises(ValueError, match="checkpoints must lie in 1..steps = 10"):
        TrainConfig(steps=10, checkpoints=(20,))
    with pytest.raises(ValueError, match="checkpoints must be an integer >= 1"):
        TrainConfig(steps=10, checkpoints=(0,))
