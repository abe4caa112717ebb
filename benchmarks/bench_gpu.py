"""How busy the batched ensemble keeps the device: network-steps per second for Huang et al.'s
protocol (width 400, batch 1000, SGD, dropout keep 0.98, MNIST-shaped synthetic data) on one
ensemble, and the fraction of the device's dense-matmul peak it reaches, measured in the same run.

    python benchmarks/bench_gpu.py                        # CUDA when present: 31 networks, depth 50
    python benchmarks/bench_gpu.py --device cpu --members 4 --threads 2
    python benchmarks/bench_gpu.py --precision float32+tf32   # TF32 matrix products (CUDA)
    python benchmarks/bench_gpu.py --json out.json

Training FLOPs are counted by ``experiments.trainability.step_flops`` (the matrix products of the
forward and backward passes: 6 x batch x weights per network-step; element-wise work, masks and
the optimiser are not counted, so the fraction is of useful matmul work). The peak is the best of
repeated N x N matrix products in the same precision on the same device (N = 8192 on CUDA, 2048
on CPU). On CPU both are timed in this process's CPU time (robust to other jobs on a shared
machine; use one thread, or the spin-waiting of idle threads counts too), on CUDA in wall time.
Training time comes from ``experiments.trainability.measure_flops`` (k steps timed as the
difference of a (k+1)-step and a 1-step run, so set-up and evaluation cancel). On CPU the default
is 4 networks (31 at width 400 and batch 1000 hold ~10 GB of activations); the FLOP rate per
network barely depends on the ensemble size there, the fraction of peak is what the run reports.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install

from experiments.trainability import PRECISIONS, PRESETS, measure_flops, step_flops  # noqa: E402
from meanfield.cli.args import cuda_problem, device as device_arg  # noqa: E402


def matmul_peak(device: str, precision: str, n: int, seconds: float = 1.0) -> float:
    """Best FLOP/s of n x n matrix products (2 n^3 each) over about ``seconds`` of the same clock
    as the training measurement (CPU time of this process on CPU, wall time on CUDA)."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = precision == "float32+tf32"
    dtype = torch.float64 if precision == "float64" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype, device=device)
    b = torch.randn(n, n, generator=gen, dtype=dtype, device=device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = time.perf_counter if cuda else time.process_time
    a @ b
    sync()
    best, t_end = 0.0, clock() + seconds
    while clock() < t_end:
        t0 = clock()
        c = a @ b
        sync()
        best = max(best, 2.0 * n ** 3 / max(clock() - t0, 1e-9))
    del c
    return best


def main(argv=None) -> int:
    import torch
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", type=device_arg(auto=True), default="auto",
                   help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--members", type=int, default=None, help="networks (default 31 on CUDA, 4 on CPU)")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--precision", choices=PRECISIONS, default="float32")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timed training per measurement")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    problem = cuda_problem(device)
    if problem:
        p.error(f"argument --device: {problem}")
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = device.startswith("cuda")
    members = a.members or (31 if cuda else 4)
    from dataclasses import replace
    sweep = replace(PRESETS["paper"], width=a.width, batch_size=a.batch, datasets=("mnist",),
                    noises=("dropout(keep=0.98)",), depths=(a.depth,))
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    train = measure_flops(sweep, device, a.precision, depth=a.depth, members=members,
                          min_seconds=a.seconds, max_steps=256 if cuda else 8)
    peak = matmul_peak(device, a.precision, 8192 if cuda else 2048)
    per_net = step_flops(784, a.width, a.depth, 10, a.batch)
    out = {"device": name, "precision": a.precision, "members": members, "depth": a.depth,
           "width": a.width, "batch": a.batch, "train_flops_per_s": train,
           "network_steps_per_s": train / per_net, "matmul_peak_flops_per_s": peak,
           "fraction_of_peak": train / peak, "flops_per_network_step": per_net}
    print(f"{name}, {a.precision}: {members} networks of depth {a.depth}, width {a.width}, batch {a.batch}")
    print(f"  training: {train / 1e12:.4g} TFLOP/s = {train / per_net:.4g} network-steps/s "
          f"({per_net / 1e9:.3g} GFLOP per network-step)")
    print(f"  dense matmul peak in the same run: {peak / 1e12:.4g} TFLOP/s; "
          f"fraction reached: {train / peak:.1%}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
