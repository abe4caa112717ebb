"""Benchmark: Huang et al.'s Figure 2 protocol (linear, sigma_w^2 = 0.5, sigma_b^2 = 0.1, N = 1000,
L = 200, R = 100, two inputs) with the batched simulator versus a plain per-realisation loop.

    nice -n 10 python benchmarks/bench_gradsim.py [--keeps 0.6 0.7 0.8 0.9 1.0] [--loop-reps 2]

The plain loop is what one would write first: for each network, draw the L explicit N x N weight
matrices, run forward and autograd backward, read the metrics. It is timed on ``--loop-reps``
networks and extrapolated linearly to R (stated in the output). The batched run is also checked
against Huang's closed form for g_aa at every layer (largest |z| over layers). Wall and CPU
(process) times are both printed: on a shared machine the CPU time is the fairer number.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from meanfield.nn import unit_noise  # noqa: E402
from meanfield.noise import Dropout  # noqa: E402
from meanfield.simulation import simulate_gradients  # noqa: E402

SW, SB = 0.5, 0.1


def closed_form_gaa(keep, depth):
    q = SB / (1 - SW / keep)
    chi = SW / keep
    k = np.arange(depth)[::-1]
    geo = np.array([sum(chi ** j for j in range(1, kk + 1)) for kk in k])
    return 4 * q * q / keep * chi ** k * (1 + geo / keep)


def plain_loop_one(keep, n, depth, q0, c0, gen):
    """One network, explicit weights, autograd; returns g_aa per layer (for a sanity check)."""
    dt = torch.float64
    noise = Dropout(keep=keep)

    def dropout(p):
        return unit_noise(noise, p, torch.rand(n, 2, generator=gen, dtype=dt))

    e = torch.randn(n, 2, generator=gen, dtype=dt)
    z0 = torch.stack([e[:, 0], c0 * e[:, 0] + math.sqrt(1 - c0 * c0) * e[:, 1]], 1) * math.sqrt(q0)
    x = dropout(z0)
    xs, zs = [], []
    for layer in range(depth):
        w = torch.randn(n, n, generator=gen, dtype=dt) * math.sqrt(SW / n)
        b = torch.randn(n, 1, generator=gen, dtype=dt) * math.sqrt(SB)
        if layer == 0:
            x.requires_grad_(True)
        z = w @ x + b
        xs.append(x)
        zs.append(z)
        x = dropout(z)
    energy = (zs[-1] ** 2).sum()
    deltas = torch.autograd.grad(energy, zs)
    return np.array([((d[:, 0] ** 2).mean() * (xx[:, 0] ** 2).mean()).item() for d, xx in zip(deltas, xs)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keeps", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0])
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--depth", type=int, default=200)
    p.add_argument("--realisations", type=int, default=100)
    p.add_argument("--loop-reps", type=int, default=2, help="networks timed in the plain loop")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    n, depth, rr = a.width, a.depth, a.realisations
    print(f"Figure 2 protocol: linear sigma_w2={SW} sigma_b2={SB} N={n} L={depth} R={rr}, "
          f"torch {torch.__version__}, {a.threads} threads")
    total = total_cpu = 0.0
    for keep in a.keeps:
        q0 = SB / (1 - SW / keep)
        c0 = (SB / (1 - SW)) / q0
        t, c = time.perf_counter(), time.process_time()
        res = simulate_gradients("linear", SW, SB, keep, width=n, depth=depth, realisations=rr,
                                 q0=q0, c0=c0, seed=1)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        total += dt
        total_cpu += dc
        z = (res.mean("g_aa") - closed_form_gaa(keep, depth)) / res.sem("g_aa")
        print(f"  keep={keep:.1f} (drop={1 - keep:.1f}): batched {dt:7.2f} s wall, {dc:7.2f} s CPU;  "
              f"max |z| vs closed form over {depth} layers = {np.max(np.abs(z)):.2f}")
    print(f"batched total for {len(a.keeps)} keep values: {total:.1f} s wall, {total_cpu:.1f} s CPU; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

    keep = a.keeps[0]
    q0 = SB / (1 - SW / keep)
    c0 = (SB / (1 - SW)) / q0
    gen = torch.Generator().manual_seed(2)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(a.loop_reps):
        plain_loop_one(keep, n, depth, q0, c0, gen)
    per = (time.perf_counter() - t) / a.loop_reps
    per_cpu = (time.process_time() - c) / a.loop_reps
    print(f"plain per-realisation loop: {per:.2f} s wall, {per_cpu:.2f} s CPU per network (timed on "
          f"{a.loop_reps}, extrapolated to R={rr}: {per * rr:.0f} s wall, {per_cpu * rr:.0f} s CPU per keep value)")
    print(f"speed-up batched vs plain loop: {per * rr / (total / len(a.keeps)):.0f}x wall, "
          f"{per_cpu * rr / (total_cpu / len(a.keeps)):.0f}x CPU; load average {os.getloadavg()[0]:.1f}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
