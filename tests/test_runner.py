"""experiments.runner: one plan -> execute seam, serial or on a real 2-worker Dask LocalCluster.

Same rows and the same numbers on both engines for the real studies (k-winners, gradient
simulations, a robustness network); a worker SIGKILLed mid-sweep and a driver SIGKILLed mid-sweep
lose nothing that had finished and leave exactly one row per key after the rerun.
"""
import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import runner
from experiments.runner import Task
from experiments.store import Store

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"
COLS = {"i": "INTEGER", "x": "REAL", "y": "BLOB"}


def _row(i, delay=0.0):
    """A test task: deterministic numbers from the seed i, after ``delay`` seconds of 'work'."""
    time.sleep(delay)
    v = np.random.default_rng(i).standard_normal(3)
    return {"i": i, "x": float(v[0]), "y": v.tobytes()}


def _failing(i):
    raise RuntimeError(f"task {i} failed")


def _tasks(n, delay=0.0, weight=1):
    return [Task(keys=[(i,)], fn=_row, args=(i, delay), weight=weight) for i in range(n)]


def _store(path):
    return Store(path, "t", COLS, ("i",))


def _sorted_rows(store, drop=()):
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in store.rows()),
                  key=lambda r: [str(r[k]) for k in store.key])


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with runner.local_cluster(2) as cluster, Client(cluster) as c:
        yield c


# --- no cluster ---------------------------------------------------------------------------------

def test_serial_run_resumes_and_counts_rows(tmp_path, capsys):
    with _store(tmp_path / "s.sqlite") as st:
        assert runner.run(_tasks(2, weight=3), st, engine="serial", progress=False) == 2
        assert runner.run(_tasks(4, weight=3), st, engine="serial", desc="demo") == 2
        bar = capsys.readouterr().err
        assert "demo" in bar and "12/12" in bar  # the 6 finished networks count from the start
        assert [r["i"] for r in st.rows()] == [0, 1, 2, 3]
        assert st.rows(i=3)[0]["y"] == _row(3)["y"]
        # everything stored: nothing runs, and no engine is contacted (nobody listens on port 9)
        assert runner.run(_tasks(4), st, engine="tcp://127.0.0.1:9", progress=False) == 0


def test_task_errors_keep_finished_rows(tmp_path):
    with _store(tmp_path / "s.sqlite") as st:
        tasks = _tasks(2) + [Task(keys=[(7,)], fn=_failing, args=(7,))] + _tasks(4)[2:]
        with pytest.raises(RuntimeError, match="task 7 failed"):
            runner.run(tasks, st, engine="serial", progress=False)
        assert [r["i"] for r in st.rows()] == [0, 1]  # serial stops at the failure
        wrong = Task(keys=[(5,)], fn=_row, args=(6,))  # returns row 6 for key 5: never "done"
        with pytest.raises(ValueError, match=r"_row returned rows with keys \[\(6,\)\].*\[\(5,\)\]"):
            runner.run([wrong], st, engine="serial", progress=False)
        assert len(st) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="keys"):
        Task(keys=[], fn=_row)
    with pytest.raises(ValueError, match="weight"):
        Task(keys=[(0,)], fn=_row, weight=-1)
    with pytest.raises(ValueError, match="callable"):
        Task(keys=[(0,)], fn="_row")
    with _store(tmp_path / "s.sqlite") as st:
        for kwargs, match in (({"engine": "spark"}, "scheduler address"),
                              ({"engine": 3}, "engine must be"),
                              ({"engine": "local", "workers": 0}, "workers must be"),
                              ({"engine": "serial", "workers": 2}, "local engine only"),
                              ({"engine": "tcp://h:1", "workers": 2}, "local engine only")):
            with pytest.raises(ValueError, match=match):
                runner.run(_tasks(1), st, progress=False, **kwargs)
        with pytest.raises(ValueError, match="Task objects"):
            runner.run([_row], st, engine="serial", progress=False)
    for good in ("tcp://127.0.0.1:8786", "tcp://node-7.cluster:1", "tls://[::1]:65535"):
        assert runner.scheduler_address(good) == good
    for bad in ("127.0.0.1:8786", "tcp://host", "tcp://host:0", "tcp://host:70000", "http://h:80",
                "tcp://a b:1", ""):
        with pytest.raises(ValueError, match="tcp://HOST:PORT"):
            runner.scheduler_address(bad)
    with pytest.raises(ValueError, match="devices"):
        runner.local_cluster(devices=[])


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT", "1s")
    monkeypatch.setenv(runner.SCHEDULER_ENV, "tcp://127.0.0.1:9")  # the default engine reads it
    with _store(tmp_path / "s.sqlite") as st, \
            pytest.raises(ConnectionError, match=r"no Dask scheduler reachable at tcp://127.0.0.1:9"):
        runner.run(_tasks(1), st, progress=False)


def test_shared_flags(monkeypatch, capsys):
    def parse(argv):
        ap = argparse.ArgumentParser(prog="study")
        runner.add_runner_arguments(ap)
        return runner.runner_from_args(ap.parse_args(argv))

    monkeypatch.delenv(runner.SCHEDULER_ENV, raising=False)
    assert parse([]) == {"engine": "local", "workers": None}
    assert parse(["--serial"]) == {"engine": "serial", "workers": None}
    assert parse(["--workers", "3"]) == {"engine": "local", "workers": 3}
    assert parse(["--scheduler", "tcp://10.0.0.2:8786"]) == {"engine": "tcp://10.0.0.2:8786",
                                                             "workers": None}
    for argv, message in ((["--workers", "0"], "argument --workers: must be an integer in [1, 256]"),
                          (["--workers", "two"], "argument --workers: must be an integer in [1, 256]"),
                          (["--workers", "257"], "argument --workers: must be an integer in [1, 256]"),
                          (["--scheduler", "10.0.0.2:8786"], "argument --scheduler: scheduler "
                                                             "address must look like"),
                          (["--serial", "--workers", "2"], "argument --workers: not allowed with argument")):
        with pytest.raises(SystemExit) as e:
            parse(argv)
        assert e.value.code == 2
        assert "error: " + message in capsys.readouterr().err
    monkeypatch.setenv(runner.SCHEDULER_ENV, "tcp://10.0.0.3:8786")
    assert parse([]) == {"engine": "tcp://10.0.0.3:8786", "workers": None}
    assert parse(["--workers", "2"]) == {"engine": "local", "workers": 2}  # flags win
    assert parse(["--serial"])["engine"] == "serial"
    monkeypatch.setenv(runner.SCHEDULER_ENV, "10.0.0.3")
    with pytest.raises(SystemExit) as e:
        parse([])
    assert e.value.code == 2 and runner.SCHEDULER_ENV in capsys.readouterr().err


def test_study_clis_reject_bad_engine_flags_before_work(tmp_path):
    env = dict(os.environ, **{runner.SCHEDULER_ENV: "nonsense"})
    for argv, env_, message in (
            (["experiments.kwinners_study", "--workers", "0"], None, "--workers"),
            (["experiments.gradient_study", "--scheduler", "tcp://host"], None, "--scheduler"),
            (["experiments.robustness", "--preset", "smoke"], env, runner.SCHEDULER_ENV),
            (["experiments.floor_scaling", "--widths", "100", "--serial", "--workers", "2"], None,
             "not allowed")):
        db = tmp_path / "x.sqlite"
        r = subprocess.run([sys.executable, "-m", *argv, "--db", str(db)], cwd=REPO, env=env_,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "error: " in r.stderr and message in r.stderr and "Traceback" not in r.stderr
        assert not db.exists()


def test_session_arguments_and_lazy_start(tmp_path):
    with _store(tmp_path / "s.sqlite") as st:
        assert runner.run(_tasks(2), st, engine="serial", progress=False) == 2
        # nobody listens on port 9: a session connects only when a run has work
        with runner.session("tcp://127.0.0.1:9") as s:
            assert runner.run(_tasks(2), st, engine=s, progress=False) == 0
            with pytest.raises(ValueError, match="the session's"):
                runner.run(_tasks(3), st, engine=s, workers=2, progress=False)
            with pytest.raises(ValueError, match="the session's"):
                runner.run(_tasks(3), st, engine=s, cuda=True, progress=False)
        with runner.session("serial") as s:
            with runner.session(s) as inner:   # a session given is used as it is, not closed
                assert inner is s and runner.run(_tasks(3), st, engine=inner, progress=False) == 1
            assert not s.closed
        assert s.closed
        with pytest.raises(ValueError, match="session is closed"):
            runner.run(_tasks(4), st, engine=s, progress=False)
    with pytest.raises(ValueError, match="local engine only"):
        with runner.session("serial", workers=2):
            pass


# a study whose worker processes are slow to exit (as when a CUDA context is torn down): each
# task registers a 6 s exit handler, longer than the 4 s a nanny waits before killing a worker
_SLOW_EXIT = """
import atexit, os, sys, time
from experiments import runner
from experiments.store import Store

def row(i):
    atexit.register(time.sleep, 6)
    return {"i": i, "x": float(os.getpid()), "y": b""}

with Store(sys.argv[1], "t", {"i": "INTEGER", "x": "REAL", "y": "BLOB"}, ("i",)) as st, \\
        runner.session("local", workers=2) as s:
    for r in range(2):   # two runs, one cluster
        tasks = [runner.Task(keys=[(i,)], fn=row, args=(i,)) for i in range(4 * r, 4 * r + 4)]
        print(runner.run(tasks, st, engine=s, progress=False))
    workers = set(s.client().run(os.getpid).values())
    print(sorted({int(r["x"]) for r in st.rows()}) == sorted(workers))
"""


def test_session_shares_one_cluster_and_closes_it_quietly(tmp_path):
    """Two runs of one session use the same two worker processes; closing it (workers killed
    after 4 s, as CUDA workers were) writes nothing to stderr: no traceback, no kill warning."""
    r = subprocess.run([sys.executable, "-c", _SLOW_EXIT, str(tmp_path / "s.sqlite")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["4", "4", "True"]
    assert r.stderr == "", r.stderr[-3000:]


# --- a real 2-worker LocalCluster ---------------------------------------------------------------

def test_local_cluster_equals_serial_for_every_study(tmp_path, client):
    """Same rows, same numbers (bit for bit) as the serial engine for the same seeds."""
    import torch

    from experiments import gradient_study as gs
    from experiments import kwinners_study as ks
    from experiments import robustness as rb

    assert len(client.scheduler_info()["workers"]) == 2
    # single-threaded torch; glibc's malloc as in this process (Dask's trim threshold cost 40 % CPU)
    env = client.run(lambda: (os.environ["OMP_NUM_THREADS"], os.environ.get("MALLOC_TRIM_THRESHOLD_")))
    assert set(env.values()) == {("1", os.environ.get("MALLOC_TRIM_THRESHOLD_"))}
    kw = {}
    for name, engine in (("serial", "serial"), ("dask", client)):
        kw[name] = ks.run(tmp_path / f"kw_{name}.sqlite", reps=4, depth=4, fs=(0.5, 0.1), ns=(100, 200),
                          progress=False, engine=engine)
    assert len(kw["serial"]) == 8 and kw["serial"] == kw["dask"]  # plan order, equal floats

    specs = [gs.spec("t", act, sw, keep, 64, 6, 5, gia=gia, seed=seed)
             for act, sw, keep, gia, seed in (("tanh", 1.4, 0.8, False, 1), ("relu", 1.0, 0.9, True, 2),
                                              ("linear", 0.5, 0.7, False, 3))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers
    try:
        sims = {}
        for name, engine in (("serial", "serial"), ("dask", client)):
            sims[name] = gs.open_simulations(tmp_path / f"g_{name}.sqlite", engine=engine)
            assert sims[name].compute(specs, progress=False) == 3
        rows = [_sorted_rows(s.store, drop=("seconds",)) for s in sims.values()]
        assert rows[0] == rows[1] and len(rows[0]) == 3  # the BLOBs hold the per-network metrics
        assert sims["dask"].get(specs[0])["g_aa"].shape == (5, 6)
        for s in sims.values():
            s.store.close()

        net = ("smoke", "mlp", "sparse", 0, str(DATA))
        local = rb.network_row(*net)
        remote = client.submit(rb.network_row, *net, pure=False).result()
    finally:
        torch.set_num_threads(threads)
    for r in (local, remote):
        r.pop("train_seconds")
    assert local == remote and local["clean_acc"] > 0.1


def test_worker_killed_mid_sweep(tmp_path, client):
    n, db = 12, tmp_path / "s.sqlite"
    _store(db).close()
    out = {}

    def sweep():  # the driver, in a thread with its own connection
        with _store(db) as st:
            out["added"] = runner.run(_tasks(n, delay=0.4), st, engine=client, progress=False)

    driver = threading.Thread(target=sweep)
    driver.start()
    with sqlite3.connect(db) as watch:
        deadline = time.time() + 60
        while (watch.execute("SELECT COUNT(*) FROM t").fetchone()[0] < 2 and driver.is_alive()
               and time.time() < deadline):
            time.sleep(0.02)
        busy = [w for w, keys in client.processing().items() if keys]
        pids = client.run(os.getpid)
        stored_at_kill = watch.execute("SELECT COUNT(*) FROM t").fetchone()[0]
        assert busy and stored_at_kill < n  # killed mid-sweep, with a task in flight
        os.kill(pids[busy[0]], signal.SIGKILL)
        driver.join(120)
        assert not driver.is_alive() and out["added"] == n
        keys = [r[0] for r in watch.execute("SELECT i FROM t")]
    assert sorted(keys) == list(range(n))  # one row per key, nothing lost
    with _store(db) as st:
        assert _sorted_rows(st) == sorted((_row(i) for i in range(n)), key=lambda r: str(r["i"]))
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    assert pids[busy[0]] not in client.run(os.getpid).values()


def test_scheduler_address_from_the_environment(tmp_path, client, monkeypatch):
    """engine=None reads $MEANFIELD_SCHEDULER and connects to that cluster, leaving it running."""
    monkeypatch.setenv(runner.SCHEDULER_ENV, client.scheduler.address)
    with _store(tmp_path / "s.sqlite") as st:
        assert runner.run(_tasks(4), st, progress=False) == 4
        assert _sorted_rows(st) == sorted((_row(i) for i in range(4)), key=lambda r: str(r["i"]))
    assert client.submit(sum, [1, 2]).result() == 3 and len(client.scheduler_info()["workers"]) == 2


def test_task_error_on_dask_keeps_finished_rows(tmp_path, client):
    with _store(tmp_path / "s.sqlite") as st:
        tasks = _tasks(2) + [Task(keys=[(99,)], fn=_failing, args=(99,))] + _tasks(20, delay=0.1)[2:]
        with pytest.raises(RuntimeError, match="task 99 failed"):
            runner.run(tasks, st, engine=client, progress=False)
        stored = {r["i"] for r in st.rows()}
        assert 99 not in stored and len(stored) < 20  # the queued rest was cancelled
        assert runner.run(tasks[:2] + tasks[3:], st, engine="serial", progress=False) == 20 - len(stored)


def test_driver_killed_mid_sweep_then_rerun(tmp_path):
    from experiments import kwinners_study as ks

    db = tmp_path / "k.sqlite"
    fs, ns = (0.5, 0.2, 0.1, 0.05), (200, 300)
    cmd = [sys.executable, "-m", "experiments.kwinners_study", "--db", str(db), "--reps", "30",
           "--depth", "6", "--f", *map(str, fs), "--n", *map(str, ns)]
    n = 16

    def count():
        try:
            with sqlite3.connect(db) as con:
                return con.execute("SELECT COUNT(*) FROM kwinners_study").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    proc = subprocess.Popen([*cmd, "--workers", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while count() < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        killed_midway = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # its worker processes follow their parent
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = count()
    assert partial >= 2
    if killed_midway:
        assert partial < n
    with Store(db, "kwinners_study", ks.COLUMNS, ks.KEY) as st:
        before = st.rows()
    # rerun (serially: the resume logic is the runner's, whatever the engine)
    rerun = subprocess.run([*cmd, "--serial"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with Store(db, "kwinners_study", ks.COLUMNS, ks.KEY) as st:
        after = st.rows()
    assert len(after) == n == len({tuple(r[k] for k in ks.KEY) for r in after})
    assert after[:partial] == before  # the finished rows were kept, not recomputed
    assert {(r["setting"], r["f"], r["n"]) for r in after} == {(s, f, m) for s in ks.SETTINGS
                                                                 for f in fs for m in ns}
    r = before[0]  # a row the killed Dask sweep stored: the numbers of an in-process computation
    assert r == ks.study_point(r["setting"], r["f"], r["n"], 30, 6)


def test_local_cluster_gives_each_worker_its_gpu():
    from distributed import Client

    with runner.local_cluster(devices=["3", "5"]) as cluster, Client(cluster) as c:
        seen = c.run(lambda: (os.environ["CUDA_VISIBLE_DEVICES"], os.environ["OMP_NUM_THREADS"]))
        assert sorted(seen.values()) == [("3", "1"), ("5", "1")]
        assert {w["nthreads"] for w in c.scheduler_info()["workers"].values()} == {1}


@pytest.mark.parametrize("argv", [
    ["experiments.trainability", "--preset", "smoke", "--data-dir", str(DATA)],
    ["experiments.kwinners_study", "--reps", "4", "--depth", "3", "--f", "0.5", "--n", "100"],
])
def test_python_m_study_on_an_existing_cluster(tmp_path, client, argv):
    """The README's cluster recipe: a study run with ``python -m`` against a scheduler whose
    workers are other programs (here: this pytest's cluster). Task functions must reach them by
    their module's real name, not as attributes of the driver's ``__main__``."""
    p = subprocess.run([sys.executable, "-m", *argv, "--db", str(tmp_path / "s.sqlite"),
                        "--scheduler", client.scheduler.address],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
