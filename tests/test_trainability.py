"""The trainability sweep: smoke preset end to end, resumption after an interruption (in-process
and by SIGKILL of a real process) with exactly one row per configuration and checkpoint. The data
must be there (../shared/data): a missing folder fails these tests, it does not skip them."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import trainability as tr

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
REPO = Path(__file__).parents[1]


def _rows(db):
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT {', '.join(tr.KEY)}, eval_acc, test_acc, train_acc_last "
                           f"FROM {tr.TABLE}").fetchall()


def test_smoke_preset_runs(tmp_path):
    import torch
    torch.set_num_threads(1)
    db = tmp_path / "smoke.sqlite"
    assert tr.main(["--preset", "smoke", "--db", str(db), "--data-dir", str(SHARED),
                    "--threads", "1", "--serial"]) == 0
    rows = _rows(db)
    smoke = tr.PRESETS["smoke"]
    n = len(smoke.configs()) * len(smoke.budgets)   # one row per network and checkpoint
    assert len(rows) == n == len({r[:len(tr.KEY)] for r in rows})
    steps = tr.KEY.index("steps")
    assert sorted({r[steps] for r in rows}) == [10, 20]
    accs = [r[-3:] for r in rows]
    assert all(0.0 <= a <= 1.0 for acc in accs for a in acc)
    # 20 RMSprop steps already lift some shallow network well above chance (0.1)
    assert max(a[0] for a in accs) > 0.3


def test_interrupted_sweep_resumes_without_duplicates(tmp_path):
    import torch
    torch.set_num_threads(1)
    sweep = tr.Sweep(datasets=("mnist",), noises=("dropout(keep=1.0)", "dropout(keep=0.8)"),
                     depths=(1, 2, 3), sigma_w2s=(1.0, 2.0), width=8, optimizer="sgd", lr=0.01,
                     batch_size=16, steps=3, checkpoints=(1,), eval_size=50, test_size=100,
                     max_members=3)
    db = tmp_path / "r.sqlite"
    run = dict(data_dir=SHARED, progress=False, engine="serial")
    rep = tr.run_sweep(sweep, db, max_ensembles=2, **run)
    # depth 1 first: one ensemble of 2 members per keep, two checkpoint rows per network
    assert rep.stopped and rep.trained == 4 and rep.added == 8 and len(_rows(db)) == 8
    first = _rows(db)
    rep = tr.run_sweep(sweep, db, **run)
    assert not rep.stopped and rep.trained == 8 and rep.added == 16
    rows = _rows(db)
    assert len(rows) == 24 == len({r[:len(tr.KEY)] for r in rows})
    assert set(first) <= set(rows)   # finished rows untouched
    assert tr.run_sweep(sweep, db, **run).added == 0


def test_sigkill_midway_then_rerun(tmp_path):
    db = tmp_path / "k.sqlite"
    cmd = [sys.executable, "-m", "experiments.trainability", "--preset", "smoke", "--db", str(db),
           "--data-dir", str(SHARED), "--threads", "1", "--depth", "1,2,3,4,5,6",
           "--sigma-w2", "1.0,2.0", "--keep", "1.0", "--steps", "30", "--max-members", "1",
           "--serial"]
    n = 12 * 2   # networks x checkpoints (10, 30)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if db.exists():
                try:
                    if len(_rows(db)) >= 4:
                        break
                except sqlite3.OperationalError:
                    pass
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        killed_midway = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = len(_rows(db))
    assert partial >= 1
    if killed_midway:
        assert partial < n
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300)
    rows = _rows(db)
    assert len(rows) == n == len({r[:len(tr.KEY)] for r in rows})


def test_bad_sweep_arguments():
    with pytest.raises(ValueError, match=r"noises keep .* must lie in \(0, 1\], got 1.5"):
        tr.Sweep(noises=("dropout(keep=1.5)",))
    with pytest.raises(ValueError, match="dataset must be one of mnist, cifar10, got 'svhn'"):
        tr.Sweep(datasets=("svhn",))
    with pytest.raises(ValueError, match=r"checkpoints must be below steps = 20"):
        tr.Sweep(steps=20, checkpoints=(20,))
    with pytest.raises(SystemExit) as e:
        tr.main(["--preset", "smoke", "--keep", "0", "--dry-run"])
    assert e.value.code == 2


def test_stored_networks_are_not_trained_again_in_a_new_ensemble(tmp_path):
    """A sweep that adds sigma_w^2 values at stored depths trains only the new networks, although
    they share ensembles (data set, depth, noise) with stored ones; the stored rows stay as they
    were and the new ones equal what a separate sweep gives (members are independent)."""
    base = tr.Sweep(datasets=("mnist",), noises=("dropout(keep=0.9)",), depths=(2, 3),
                    sigma_w2s=(1.0,), width=8, optimizer="sgd", lr=0.01, batch_size=16, steps=4,
                    checkpoints=(2,), eval_size=50, test_size=100)
    run = dict(data_dir=SHARED, progress=False, engine="serial")
    db, alone = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    assert tr.run_sweep(base, db, **run).trained == 2
    first = _rows(db)
    more = replace(base, sigma_w2s=(1.0, 2.0))
    rep = tr.run_sweep(more, db, **run)
    assert rep.trained == 2 and rep.added == 4
    assert set(first) <= set(_rows(db))
    tr.run_sweep(replace(base, sigma_w2s=(2.0,)), alone, **run)
    assert set(_rows(alone)) <= set(_rows(db))


def test_boundary_search_rounds_share_one_cluster(tmp_path, monkeypatch):
    """Every round of a boundary search runs on the one embedded cluster of the sweep's session
    (it was restarted each round for CUDA), and a finished sweep starts none."""
    from experiments import runner
    started = []
    real = runner.local_cluster
    monkeypatch.setattr(runner, "local_cluster", lambda *a, **k: started.append(a) or real(*a, **k))
    sweep = tr.Sweep(datasets=("mnist",), noises=("dropout(keep=1.0)",), depths=(1, 2, 3, 4, 6, 8),
                     sigma_w2s=(1.0, 2.0), width=8, optimizer="sgd", lr=0.01, batch_size=16,
                     steps=3, eval_size=50, test_size=100, search="boundary")
    run = dict(data_dir=SHARED, progress=False, device="cpu", engine="local", workers=1)
    rep = tr.run_sweep(sweep, tmp_path / "b.sqlite", **run)
    assert rep.rounds >= 2 and rep.trained == rep.networks > 0 and len(started) == 1
    assert tr.run_sweep(sweep, tmp_path / "b.sqlite", **run).trained == 0 and len(started) == 1
