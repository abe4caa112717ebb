"""Acceptance studies for the exact backprop theory (issue 3): theory versus finite-width simulation.

    nice -n 10 python -m experiments.gradient_study [--studies linear nonlinear pair univer reference]
        [--db results/gradient_study.sqlite] [--quick] [--serial | --workers N | --scheduler ADDRESS]

Studies (each simulation is one task of ``experiments.runner`` and one row of the SQLite store,
keyed by its configuration, so an interrupted run resumes where it stopped and never repeats or
duplicates a finished simulation; all simulations of the chosen studies run first, in parallel on
Dask unless ``--serial``, then the tables are printed):

- ``linear``: Huang's Fig. 2 setting (sigma_w^2 = 0.5, sigma_b^2 = 0.1, N = 1000, L = 200, R = 100,
  keep 0.6..1.0): simulation versus Huang's closed forms per layer (z-scores), and the core's exact
  recursion versus the closed forms (max relative difference).
- ``nonlinear``: tanh 1.4, ReLU 1.0, hard-tanh 1.4, erf 1.4 (sigma_b^2 = 0.1, keep 0.6..1.0,
  N = 2000): exact theory and GIA theory versus simulation for g_aa over the 30 layers nearest the
  output, with standard errors; GIA-mode simulation versus GIA theory for keep 0.8.
- ``pair``: tanh 1.4 and ReLU 1.0 at keep 0.8, N = 250, 1000, 4000: mean g_ab versus exact theory,
  the layer where the per-network pair metric leaves the theory (its sd exceeds |theory|) versus
  ``crossover_depth(N)``, and the floor sd(g_ab)/mean(g_aa) beyond the crossover fitted against N
  (exponent with a bootstrap interval; theory -1/2).
- ``univer``: log V vs log m exponents (Figs. 4-5) from simulation and from the authors' per-network
  values.
- ``reference``: the authors' per-layer means (Figs. 2-3) against theory and simulation.

Prints the tables; ``--quick`` shrinks every study (smoke test, minutes).
"""
from __future__ import annotations

import argparse
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments import reference as ref  # noqa: E402
from experiments.runner import Task, add_runner_arguments, run, runner_from_args  # noqa: E402
from experiments.store import Store  # noqa: E402
from experiments.universality import fit_samples  # noqa: E402
from meanfield import analyze, gradient_metrics  # noqa: E402

DEFAULT_DB = ROOT / "results" / "gradient_study.sqlite"
KEEPS = (0.6, 0.7, 0.8, 0.9, 1.0)
NONLINEAR = (("tanh", 1.4), ("relu", 1.0), ("hard_tanh", 1.4), ("erf", 1.4))
SB = 0.1
METRICS = ("g_aa", "g_bb", "g_ab", "g_abs")

COLUMNS = {"study": "TEXT", "activation": "TEXT", "sigma_w2": "REAL", "sigma_b2": "REAL", "keep": "REAL",
           "width": "INTEGER", "depth": "INTEGER", "realisations": "INTEGER", "gia": "INTEGER",
           "seed": "INTEGER", "engine": "TEXT", "q0": "REAL", "c0": "REAL", "seconds": "REAL",
           "g_aa": "BLOB", "g_bb": "BLOB", "g_ab": "BLOB", "g_abs": "BLOB"}
KEY = ("study", "activation", "sigma_w2", "sigma_b2", "keep", "width", "depth", "realisations", "gia",
       "seed", "engine")


def _to_blob(a):
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def _from_blob(b):
    return np.load(io.BytesIO(b), allow_pickle=False)


def fixed_point(act, sw, keep):
    if act == "linear":
        q = SB / (1 - sw / keep)
        return q, (SB / (1 - sw)) / q
    r = analyze(activation=act, sigma_w2=sw, sigma_b2=SB, keep=keep, noise="dropout")
    return float(r.q_star), float(r.c_star)


def _key(s):
    return {k: (int(s[k]) if k == "gia" else s[k]) for k in KEY}


def simulate_row(s, device="cpu"):
    """One simulation of the study, the compute function of its ``experiments.runner`` task.

    Parameters
    ----------
    s : dict
        A spec from :func:`spec` (configuration and seed; the store key).
    device : str
        Torch device.

    Returns
    -------
    dict
        The ``gradient_sims`` row: the key, the layer-0 start (q0, c0) at the fixed point, the
        seconds it took, and per metric an ``np.save`` blob of shape (realisations, depth). It
        depends only on ``s`` and never touches the store.

    References
    ----------
    docs/THEORY.md §4 (the metrics); ``meanfield.simulation.simulate_gradients``.
    """
    import time

    from meanfield.simulation import simulate_gradients
    q0, c0 = fixed_point(s["activation"], s["sigma_w2"], s["keep"])
    t = time.perf_counter()
    r = simulate_gradients(s["activation"], s["sigma_w2"], s["sigma_b2"], noise="dropout", keep=s["keep"],
                           width=s["width"], depth=s["depth"], realisations=s["realisations"],
                           gia=bool(s["gia"]), seed=s["seed"], engine=s["engine"], q0=q0, c0=c0,
                           device=device)
    row = dict(_key(s), q0=q0, c0=c0, seconds=time.perf_counter() - t)
    row.update({m: _to_blob(getattr(r, m)) for m in METRICS})
    return row


@dataclass(frozen=True)
class Simulations:
    """The ``gradient_sims`` table and how to fill it (``engine``/``workers`` of ``runner.run``)."""

    store: Store
    device: str = "cpu"
    engine: Any = None
    workers: int | None = None

    def compute(self, specs, progress=True):
        """Run every spec not yet stored, one runner task (weight = realisations) each."""
        tasks = [Task(keys=[_key(s)], fn=simulate_row, args=(s, self.device), weight=s["realisations"])
                 for s in specs]
        return run(tasks, self.store, engine=self.engine, workers=self.workers,
                   cuda=self.device.startswith("cuda"), progress=progress, desc="simulations")

    def get(self, s):
        """The stored metrics of spec ``s``: arrays (realisations x depth) and the seconds it took."""
        rows = self.store.rows(**_key(s))
        if not rows:
            raise KeyError(_key(s))
        return {m: _from_blob(rows[0][m]) for m in METRICS} | {"seconds": rows[0]["seconds"]}


def open_simulations(db, device="cpu", engine=None, workers=None) -> Simulations:
    """The ``gradient_sims`` table of a SQLite file and how to fill it.

    Parameters
    ----------
    db : str or path-like
        SQLite file (created with its folder if missing).
    device : str
        Torch device of the simulations ("cuda": one worker per GPU on the embedded cluster).
    engine, workers
        As in ``experiments.runner.run``.

    Returns
    -------
    Simulations
        Its ``store`` is open; close it (``with sims.store:``) when done.
    """
    return Simulations(Store(db, "gradient_sims", COLUMNS, KEY), device, engine, workers)


def spec(study, act, sw, keep, width, depth, reals, gia=False, seed=0, engine="projected"):
    return dict(study=study, activation=act, sigma_w2=float(sw), sigma_b2=SB, keep=float(keep),
                width=int(width), depth=int(depth), realisations=int(reals), gia=bool(gia), seed=int(seed),
                engine=engine)


def huang_linear(sw, keep, depth):
    """Huang's closed forms (THEORY §4), index 0 = layer 1."""
    q = SB / (1 - sw / keep)
    qab = SB / (1 - sw)
    chi = sw / keep
    k = np.arange(depth)[::-1].astype(float)
    geo = np.array([sum(chi ** j for j in range(1, int(kk) + 1)) for kk in k])  # sum_{j=1..k} chi^j
    gaa = 4 * q * q / keep * chi ** k * (1 + geo / keep)
    r2 = sw / keep ** 2
    geo2 = np.array([sum(r2 ** j for j in range(int(kk) + 1)) for kk in k])
    gab = 4 * qab * qab * sw ** k * geo2
    return gaa, gab


def mean_sem(x):
    return x.mean(0), x.std(0, ddof=1) / math.sqrt(x.shape[0])


def floor_window(theory, widths, depth):
    """Mask over layers (k = L - 1 - index from the output) of the deep window where the pair
    metric sits at its finite-width floor: k >= twice the largest predicted crossover depth among
    ``widths`` (at least 5 layers beyond it, at most L - 4); empty when the crossover is undefined."""
    kx_max = max(float(theory.crossover_depth(n)) for n in widths)
    k = np.arange(depth)[::-1]
    return k >= min(max(2 * kx_max, kx_max + 5), depth - 4)


def noise_floor(g_ab, g_aa, window):
    """The pair-metric floor sd(g_ab) / mean(g_aa) (over networks, axis 0), median over ``window``."""
    return np.median(g_ab.std(0, ddof=1)[window] / g_aa.mean(0)[window])


# ----------------------------------------------------------------------------------------------


def linear_specs(quick):
    n, depth, reals = (200, 40, 40) if quick else (1000, 200, 100)
    return [spec("linear", "linear", 0.5, k, n, depth, reals, seed=1) for k in KEEPS]


def study_linear(sims, quick):
    specs = linear_specs(quick)
    n, depth, reals = (specs[0][k] for k in ("width", "depth", "realisations"))
    print(f"\n## linear (sigma_w2 = 0.5, sigma_b2 = 0.1, N = {n}, L = {depth}, R = {reals})")
    print("keep | max|z| g_aa | layers |z|<2 | max|z| g_ab | recursion vs closed form (max rel) | sim s")
    for s in specs:
        d = sims.get(s)
        gaa, gab = huang_linear(0.5, s["keep"], depth)
        m, e = mean_sem(d["g_aa"])
        z = (m - gaa) / e
        mb, eb = mean_sem(d["g_ab"])
        zb = (mb - gab) / eb
        t = gradient_metrics("linear", 0.5, SB, s["keep"], depth, noise="dropout", method="exact")
        rec = f"{max(np.max(np.abs(t.g_aa / gaa - 1)), np.max(np.abs(t.g_ab / gab - 1))):.1e}"
        print(f"{s['keep']:.1f} | {np.max(np.abs(z)):.2f} | {np.mean(np.abs(z) < 2):.0%} | "
              f"{np.max(np.abs(zb)):.2f} | {rec} | {d['seconds']:.1f}")


def nonlinear_specs(quick):
    n, depth, reals = (300, 35, 40) if quick else (2000, 35, 200)
    specs = [spec("nonlinear", a, sw, k, n, depth, reals, seed=2) for a, sw in NONLINEAR for k in KEEPS]
    return specs + [spec("nonlinear", a, sw, 0.8, n, depth, reals // 2, gia=True, seed=3)
                    for a, sw in NONLINEAR]


def study_nonlinear(sims, quick):
    specs = nonlinear_specs(quick)
    n, depth, reals = (specs[0][k] for k in ("width", "depth", "realisations"))
    last = 30
    print(f"\n## nonlinear, g_aa over the {last} layers nearest the output (N = {n}, L = {depth}, R = {reals})")
    print("activation | sigma_w2 | keep | max |sim/exact-1| | median sem/mean | max |z| exact | "
          "max |sim/GIA-1| | sim mode")
    for s in specs:
        d = sims.get(s)
        t_ex = gradient_metrics(s["activation"], s["sigma_w2"], SB, s["keep"], depth, noise="dropout", method="exact")
        t_gi = gradient_metrics(s["activation"], s["sigma_w2"], SB, s["keep"], depth, noise="dropout", method="gia")
        m, e = mean_sem(d["g_aa"][:, -last:])
        ex = np.asarray(t_ex.g_aa)[-last:]
        gi = np.asarray(t_gi.g_aa)[-last:]
        ref_t = gi if s["gia"] else ex
        print(f"{s['activation']} | {s['sigma_w2']} | {s['keep']:.1f} | {np.max(np.abs(m / ex - 1)):.3f} | "
              f"{np.median(e / m):.3f} | {np.max(np.abs((m - ref_t) / e)):.1f} | "
              f"{np.max(np.abs(m / gi - 1)):.3f} | {'GIA' if s['gia'] else 'exact'}")


PAIR_CASES = (("tanh", 1.4), ("relu", 1.0))


def _pair_sizes(quick):
    """(widths, depth, realisations) of the pair study."""
    return ((100, 400), 30, 40) if quick else ((250, 1000, 4000), 40, 200)


def pair_specs(quick):
    widths, depth, reals = _pair_sizes(quick)
    return [spec("pair", a, sw, 0.8, n, depth, reals, seed=4) for a, sw in PAIR_CASES for n in widths]


def study_pair(sims, quick):
    widths, depth, reals = _pair_sizes(quick)
    rng = np.random.default_rng(0)
    print(f"\n## pair metric, keep = 0.8, L = {depth}, R = {reals}")
    for a, sw in PAIR_CASES:
        t = gradient_metrics(a, sw, SB, 0.8, depth, noise="dropout", method="exact")
        tg = gradient_metrics(a, sw, SB, 0.8, depth, noise="dropout", method="gia")
        ex, gi = np.asarray(t.g_ab), np.asarray(tg.g_ab)
        print(f"{a} sigma_w2={sw}: chi_1={float(t.chi_1):.4f} chi_c={float(t.chi_c):.4f} chi_q={float(t.chi_q):.4f}")
        print("N | predicted k_x | observed k_x (sd g_ab > |theory|) | max|z| mean g_ab vs exact, k<=k_x |"
              " same vs GIA | floor sd(g_ab)/mean(g_aa) (median over the window)")
        deep = floor_window(t, widths, depth)   # one layer window for every N
        k = np.arange(depth)[::-1]
        print(f"floor window: k = {k[deep].min()}..{k[deep].max()}")
        logn, floors, boots = [], [], []
        for n in widths:
            d = sims.get(spec("pair", a, sw, 0.8, n, depth, reals, seed=4))
            kx = float(t.crossover_depth(n))
            k = np.arange(depth)[::-1]
            m, e = mean_sem(d["g_ab"])
            sd = d["g_ab"].std(0, ddof=1)
            ks_out = k[sd > np.abs(ex)]
            obs = int(ks_out.min()) if ks_out.size else None
            sel = k <= kx
            z = np.max(np.abs((m - ex) / e)[sel]) if sel.any() else float("nan")
            zg = np.max(np.abs((m - gi) / e)[sel]) if sel.any() else float("nan")
            f0 = noise_floor(d["g_ab"], d["g_aa"], deep)
            bs = []
            for _ in range(300):
                idx = rng.integers(0, reals, reals)
                bs.append(noise_floor(d["g_ab"][idx], d["g_aa"][idx], deep))
            logn.append(math.log(n))
            floors.append(f0)
            boots.append(np.array(bs))
            print(f"{n} | {kx:.1f} | {obs} | {z:.1f} | {zg:.1f} | {f0:.4g} +- {np.std(bs):.2g}")
        logn = np.array(logn)
        slope = np.polyfit(logn, np.log(floors), 1)[0]
        bslopes = [np.polyfit(logn, np.log([b[i] for b in boots]), 1)[0] for i in range(300)]
        lo, hi = np.quantile(bslopes, [0.025, 0.975])
        local = np.diff(np.log(floors)) / np.diff(logn)
        print(f"floor exponent in N: {slope:.3f} [{lo:.3f}, {hi:.3f}] (95% bootstrap; theory -0.5); "
              "between successive N: " + ", ".join(f"{v:.3f}" for v in local))


def univer_specs(quick):
    widths = (100, 300) if quick else (100, 300, 500, 700, 900)
    depth, reals = (60, 40) if quick else (200, 100)
    return [spec("univer", "tanh", 1.4, 0.9, n, depth, reals, seed=5) for n in widths]


def study_univer(sims, quick):
    """Figs. 4-5: exponent of V vs m, simulation (tanh, sampled like the authors) and their data."""
    print("\n## universality: log V vs log m, 95% bootstrap intervals over networks")
    print("source | act | N | keep | metric | exponent [CI] | R^2")
    for act, n, keep in ref.available_univer():
        for m in ("g_aa", "g_ab", "g_abs"):
            # columns 0..19 are layers 1, 11, ..., 191 (checked against the linear closed form); some
            # files have a 21st value per network of unidentified meaning, left out
            try:
                x = ref.load_univer(act, n, keep, m)[:, :20]
            except ValueError as exc:  # e.g. a truncated file
                print(f"authors | {act} | {n} | {keep} | {m} | unusable: {exc}")
                continue
            if m == "g_ab":
                x = np.abs(x)
            x = x[:, np.all(x > 0, axis=0)]  # float32 underflow stored as 0
            if x.shape[1] < 3:
                print(f"authors | {act} | {n} | {keep} | {m} | fewer than 3 positive layers")
                continue
            f = fit_samples(x, method="bootstrap", n_boot=500)
            print(f"authors | {act} | {n} | {keep} | {m} | {f.exponent:.3f} [{f.exponent_ci[0]:.3f}, "
                  f"{f.exponent_ci[1]:.3f}] | {f.r2:.3f}")
    for s in univer_specs(quick):
        d = sims.get(s)
        n = s["width"]
        pick = np.arange(0, s["depth"], 10)
        for m in ("g_aa", "g_ab", "g_abs"):
            x = d[m][:, pick]  # layers 1, 11, ..., like the authors' files
            if m == "g_ab":
                x = np.abs(x)
            f = fit_samples(x, method="bootstrap", n_boot=500)
            print(f"simulation | tanh | {n} | 0.9 | {m} | {f.exponent:.3f} [{f.exponent_ci[0]:.3f}, "
                  f"{f.exponent_ci[1]:.3f}] | {f.r2:.3f}")


def study_reference(sims, quick):
    print("\n## authors' measurements (per-layer means) versus theory")
    print("figure | act | keep | layers | median ref/exact (last 30) | median ref/exact (all > 1e-30) |"
          " fitted ln-slope ref vs exact")
    for keep in KEEPS:
        for width in (1000, 500):
            r = ref.load_fig2(keep, "g_aa", width)
            t, _ = huang_linear(0.5, keep, 200)
            ok = r > 1e-30
            sl = np.polyfit(np.arange(200)[ok], np.log(r[ok]), 1)[0]
            st = np.polyfit(np.arange(200)[ok], np.log(t[ok]), 1)[0]
            print(f"Fig2 N={width} | linear | {keep:.1f} | {ok.sum()} | {np.median(r[-30:] / t[-30:]):.3f} | "
                  f"{np.median(r[ok] / t[ok]):.3f} | {sl:.4f} vs {st:.4f}")
    for act, sw in (("tanh", 1.4), ("relu", 1.0), ("hard_tanh", 1.4), ("linear", 0.5)):
        for keep in KEEPS:
            try:
                t = gradient_metrics(act, sw, SB, keep, 200, noise="dropout", method="exact")
            except ValueError as exc:
                print(f"Fig3 | {act} | {keep:.1f} | theory error: {exc}")
                continue
            for m in ("g_aa", "g_ab"):
                r = ref.load_fig3(act, keep, m)
                th = np.asarray(getattr(t, m))
                ok = (np.abs(r) > 1e-30) & (np.abs(th) > 1e-300)
                sl = np.polyfit(np.arange(200)[ok], np.log(np.abs(r[ok])), 1)[0] if ok.sum() > 2 else np.nan
                st = np.polyfit(np.arange(200)[ok], np.log(np.abs(th[ok])), 1)[0] if ok.sum() > 2 else np.nan
                print(f"Fig3 {m} | {act} | {keep:.1f} | {ok.sum()} | {np.median(r[-30:] / th[-30:]):.4g} | "
                      f"{np.median(r[ok] / th[ok]):.4g} | {sl:.4f} vs {st:.4f}")


STUDIES = {"linear": study_linear, "nonlinear": study_nonlinear, "pair": study_pair,
           "univer": study_univer, "reference": study_reference}
SPECS = {"linear": linear_specs, "nonlinear": nonlinear_specs, "pair": pair_specs,
         "univer": univer_specs}  # the reference study reads the authors' files only


def build_parser() -> argparse.ArgumentParser:
    from meanfield.cli.args import creatable_path, device, integer
    p = argparse.ArgumentParser(prog="python -m experiments.gradient_study",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    p.add_argument("--db", type=creatable_path("file"), default=str(DEFAULT_DB),
                   help="SQLite results (with --quick: its name with _quick)")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--device", type=device(), default="cpu", help="torch device of the "
                   "simulations: cpu, cuda or cuda:N (cuda: one worker per GPU on the embedded "
                   "cluster)")
    p.add_argument("--threads", type=integer(1), default=2,
                   help="torch threads >= 1 of the --serial engine")
    add_runner_arguments(p)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags with the runner's ``engine`` keywords; every check happens here, before
    torch is imported (only a named CUDA device imports it, to ask whether it exists) or a
    simulation starts: bad input ends in an ``error:`` line naming the flag, exit 2."""
    from meanfield.cli.args import cuda_problem
    p = build_parser()
    a = p.parse_args(argv)
    a.engine = runner_from_args(a)
    problem = cuda_problem(a.device)
    if problem:
        p.error(f"argument --device: {problem}")
    if {"univer", "reference"} & set(a.studies):
        try:
            ref.huang2019_dir()
        except FileNotFoundError as e:
            p.error(f"argument --studies: the univer and reference studies need the authors' "
                    f"data: {e}")
    return a


def main(argv=None):
    a = parse_args(argv)
    db = a.db if not a.quick else a.db.replace(".sqlite", "_quick.sqlite")
    if a.engine["engine"] == "serial":
        import torch
        torch.set_num_threads(a.threads)
    sims = open_simulations(db, a.device, **a.engine)
    with sims.store:
        # every simulation of the chosen studies first, in one sweep, then the reports
        sims.compute([s for name in a.studies if name in SPECS for s in SPECS[name](a.quick)])
        for name in a.studies:
            STUDIES[name](sims, a.quick)


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
