"""Benchmark: the overhead of experiments.runner's Dask engine against the serial engine.

    nice -n 10 python benchmarks/bench_runner.py [--workers 2] [--width 1000] [--sims 8]

One small sweep of gradient simulations (tanh, sigma_w^2 = 1.4, keep 0.8, depth 30, 40 networks
each, one task per simulation, distinct seeds), stored in a fresh SQLite file per engine:

- ``serial``: in this process, torch with one thread;
- ``local``: the embedded LocalCluster with ``--workers`` single-threaded worker processes,
  start-up (cluster, worker imports) included, as a user running a study CLI sees it.

Prints the wall time of each and checks that both stores hold the same numbers. On a machine with
at least ``--workers`` idle cores the sweep part scales with the workers; the fixed cost is the
cluster start plus each worker's first import of torch (seconds).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--sims", type=int, default=8, help="simulations (tasks) in the sweep")
    a = ap.parse_args(argv)
    if a.workers < 1 or a.width < 2 or a.sims < 1:
        ap.error("--workers and --sims must be >= 1, --width >= 2")
    import torch

    from experiments import gradient_study as gs

    torch.set_num_threads(1)
    specs = [gs.spec("bench", "tanh", 1.4, 0.8, a.width, 30, 40, seed=s) for s in range(a.sims)]
    seconds, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in (("serial", {"engine": "serial"}), ("local", {"engine": "local", "workers": a.workers})):
            sims = gs.open_simulations(Path(tmp) / f"{name}.sqlite", **kw)
            with sims.store:
                t = time.perf_counter()
                sims.compute(specs, progress=False)
                seconds[name] = time.perf_counter() - t
                rows[name] = [sims.get(s)["g_ab"].tobytes() for s in specs]
    print(f"{a.sims} simulations (N = {a.width}, L = 30, R = 40): serial {seconds['serial']:.1f} s, "
          f"LocalCluster with {a.workers} workers {seconds['local']:.1f} s (start-up included); "
          f"identical numbers: {rows['serial'] == rows['local']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
