"""Fuzz test over every command line and every flag (issue 12 section 6, acceptance).

Each call ends with exit status 0, or 2 with a last stderr line ``error: ...`` (or argparse's
``prog: error: ...``) that names a flag or parameter of that command line (1 with a
``please report`` error line: a ConvergenceError); never a traceback, never a NaN in a printed
table, and within a time and memory budget.

The flags come from each command line's own parser (``build_parser()``), so a flag added later is
fuzzed too; values mix edge numbers (0, negatives, nan, inf, 1e308, integers past 64 bits),
malformed and degenerate grids, nonexistent, unwritable and wrong-kind paths, unknown choices and
arbitrary text, appended to a valid base command (argparse keeps the last value of a flag).

Command lines whose valid arguments start heavy work (training, simulations, data loads, figure
runs, symbolic checks) are fuzzed at their validation seam ``parse_args(argv)``, which does every
check before any heavy import or data load (``test_seams_import_nothing_heavy``); the cheap ones
run end to end (``main``): depth scales, gradient theory (``--realisations 0``), fits of a given
boundary or of ``docs/examples/heatmap.csv`` without bootstrap, and the derivations' LaTeX.

Calls run in one child process that stays up between calls (imports are paid once), under an
address-space cap (``RLIMIT_AS``) so a runaway allocation fails in the child instead of taking
the machine, with CPU time measured per call and a wall-clock limit on each answer.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import resource
import select
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "heatmap.csv"
CAP = 4 << 30            # address space of the child that runs the calls
CALL_CPU = 10.0          # CPU seconds per call (imports are warm)
CALL_WALL = 60.0         # no answer within this: the call is killed and fails
HEAVY = ("torch", "sympy", "matplotlib", "dask", "distributed")

WORKER = r"""
import contextlib, importlib, io, json, sys, time, traceback
reply = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    mod, _, name = req["target"].partition(":")
    fn = getattr(importlib.import_module(mod), name)
    out, err = io.StringIO(), io.StringIO()
    rep = {"code": None, "exception": None}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            r = fn(req["argv"]) if req["argv"] is not None else None
        rep["code"] = r if isinstance(r, int) else 0
    except SystemExit as e:
        rep["code"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        rep["exception"] = traceback.format_exc()
    rep.update(out=out.getvalue()[-20000:], err=err.getvalue()[-4000:],
               wall=time.perf_counter() - t0, cpu=time.process_time() - c0)
    reply.write(json.dumps(rep) + "\n")
    reply.flush()
"""


@dataclass(frozen=True)
class Cli:
    name: str
    target: str                 # "module:function" the fuzz calls with argv
    bases: tuple = ((),)        # valid commands the fuzzed flags are appended to
    suffix: tuple = ()          # appended last (e.g. theory only)
    examples: int = 40

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def parser(self) -> argparse.ArgumentParser:
        return importlib.import_module(self.module).build_parser()


FIT_GIVEN = ("--sigma-w2", "1.5,2,3", "--lmax", "60,90,40", "--keep", "0.98", "--bootstrap", "0")
FIT_TABLE = ("--table", str(EXAMPLE), "--keep", "0.98", "--bootstrap", "0")
CLIS = [
    # end to end
    Cli("depthscale", "meanfield.cli.depthscale:main",
        bases=((), ("--sigma-w2", "1,2.5"), ("--activation", "relu", "--sigma-w2", "1:2:0.5"))),
    Cli("gradients-theory", "meanfield.cli.gradients:main", bases=((), ("--depth", "12")),
        suffix=("--realisations", "0")),
    Cli("fit", "experiments.fit:main", bases=(FIT_GIVEN, FIT_TABLE, FIT_TABLE + ("--per-step", "each"))),
    Cli("derivations-latex", "derivations.__main__:main", suffix=("--latex",), examples=15),
    # validation seams
    Cli("gradients", "meanfield.cli.gradients:parse_args"),
    Cli("derivations", "derivations.__main__:parse_args"),
    Cli("fit-seam", "experiments.fit:parse_args", bases=(FIT_GIVEN, FIT_TABLE, ("--db", "sweep.sqlite"))),
    Cli("trainability", "experiments.trainability:parse_args", bases=(("--preset", "smoke"), ())),
    Cli("robustness", "experiments.robustness:parse_args", examples=25),
    Cli("gradient_study", "experiments.gradient_study:parse_args", examples=25),
    Cli("kwinners_study", "experiments.kwinners_study:parse_args", examples=25),
    Cli("noise_study", "experiments.noise_study:parse_args", examples=25),
    Cli("floor_scaling", "experiments.floor_scaling:parse_args", examples=25),
    Cli("data", "experiments.data:parse_args", examples=25),
    Cli("figures", "experiments.figures.__main__:parse_args", examples=25),
]

NUMBERS = ["0", "-0", "1", "2", "3", "-1", "-3", "0.5", "0.98", "1.5", "1e-300", "1e308", "1e309",
           "inf", "-inf", "nan", "NaN", "9" * 40, str(2 ** 63), "0x10", "1_0", " 2", "1e6"]
GRIDS = ["1,2", "1.5,2,3", "1:2:0.5", "1:4:0", "4:1:0.5", "1:2", "1:2:3:4", "1,,2", ",", ":",
         "1:inf:1", "nan:1:1", "0:1:1e-7", "1:1e9:1e-9", "-1:1:1", "60,90,40", "0,1,-1"]
PATHS = ["/nonexistent/x.csv", "/nonexistent/x.json", "/nonexistent/dir", "out.csv", "out.json",
         "out.png", "out.txt", "new/sub/x.sqlite", "/", ".", "/etc/passwd/x.sqlite", "-", "",
         str(EXAMPLE), str(REPO / "README.md"), "x" * 300]
WORDS = ["abc", "--", "tanh", "relu", "linear", "dropout", "none", "cuda", "cuda:7", "cpu", "auto",
         "foo", "dropout(keep=2)", "sparseout(keep=0.9, s=1.5)", "gaussian(sigma_eps2=0.1)",
         "mnist", "svhn", "tcp://localhost:1", "tcp://host", "fig1_maps"]
VALUES = st.one_of(st.sampled_from(NUMBERS + GRIDS + PATHS + WORDS),
                   st.integers(-5, 60).map(str),
                   st.floats().map(repr),
                   st.text(max_size=6))


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _values(action: argparse.Action):
    if action.choices:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), VALUES)
    return VALUES


def action_argv(action: argparse.Action):
    """Strategy: one occurrence of ``action`` on a command line (flag and values)."""
    lo, hi = {None: (1, 1), "?": (0, 1), "+": (1, 3), "*": (0, 3)}.get(action.nargs,
                                                                      (action.nargs, action.nargs))
    values = st.lists(_values(action), min_size=lo, max_size=hi)
    if not action.option_strings:   # a positional
        return values
    return st.tuples(st.sampled_from(action.option_strings), values).map(lambda t: [t[0], *t[1]])


def cli_argv(cli: Cli, actions: list[argparse.Action]):
    """Strategy: a valid base with up to four fuzzed flags appended."""
    flags = st.lists(st.sampled_from(actions).flatmap(action_argv), max_size=4)
    return st.tuples(st.sampled_from(cli.bases), flags).map(
        lambda t: [*t[0], *[w for occurrence in t[1] for w in occurrence], *cli.suffix])


class Worker:
    """The child process that runs the calls (see the module docstring)."""

    def __init__(self, cwd: Path, warm: list[str]):
        self.cwd, self.warm = cwd, warm
        self.log = cwd / "worker.stderr"
        self._start()

    def _start(self):
        env = {k: v for k, v in os.environ.items() if k != "MEANFIELD_SCHEDULER"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        with self.log.open("a") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=self.cwd, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (CAP, CAP))
        for target in self.warm:
            rep = self.call(target, None, wall=300)
            assert rep["exception"] is None, rep["exception"]

    def call(self, target: str, argv, wall: float = CALL_WALL) -> dict:
        self.proc.stdin.write(json.dumps({"target": target, "argv": argv}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], wall)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            died = self.proc.poll()
            self.close()
            self._start()
            how = f"the child died (status {died})" if died is not None else f"no answer in {wall} s"
            raise AssertionError(f"{target} {argv}: {how}; its stderr:\n"
                                 f"{self.log.read_text()[-3000:]}")
        return json.loads(line)

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("fuzz_cli")
    with sqlite3.connect(cwd / "sweep.sqlite") as con:   # a SQLite file for fit's --db (relative)
        con.execute("CREATE TABLE t (x)")
    con.close()
    w = Worker(cwd,
               ["torch:__name__", "sympy:__name__", "matplotlib.pyplot:__name__"]
               + [c.target for c in CLIS])
    yield w
    w.close()


def _names(parser: argparse.ArgumentParser) -> list[str]:
    """What an error line may call a parameter: flags, destinations (``sigma_w2``), metavars."""
    names = set()
    for a in _actions(parser):
        names.update(a.option_strings)
        if len(a.dest) > 1:
            names.update({a.dest, a.dest.replace("_", "-")})
        if isinstance(a.metavar, str):
            names.add(a.metavar)
    return sorted(names)


NAN = re.compile(r"(?<![\w.])nan(?![\w(])", re.IGNORECASE)
ERROR = re.compile(r"^(.*?: )?error: ")
UNRECOGNIZED = re.compile(r"error: unrecognized arguments:(.*)$")


def check(cli: Cli, names: list[str], argv: list[str], rep: dict) -> None:
    what = f"{cli.target} {argv}"
    assert rep["exception"] is None, f"{what} raised:\n{rep['exception']}"
    assert "Traceback" not in rep["err"], f"{what} printed a traceback:\n{rep['err']}"
    assert rep["cpu"] < CALL_CPU, f"{what} took {rep['cpu']:.1f} s of CPU"
    if rep["code"] == 0:
        if cli.target.endswith(":main"):
            assert not NAN.search(rep["out"]), f"{what} printed a NaN:\n{rep['out'][-3000:]}"
        return
    last = rep["err"].strip().split("\n")[-1]   # a terminal's lines (not str.splitlines')
    assert rep["code"] == 2 or (rep["code"] == 1 and "please report" in last), \
        f"{what} exited {rep['code']}:\n{rep['err']}"
    assert ERROR.match(last), f"{what}: the last line is not an error line:\n{rep['err']}"
    if rep["code"] == 1:   # a ConvergenceError: the line asks for a report of the command
        return
    stray = UNRECOGNIZED.search(last)
    if stray:   # argparse names the stray words (e.g. '-1e+16', which it takes for a flag)
        assert set(stray.group(1).split()) <= set(" ".join(argv).split()), last
        return
    assert any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", last) for n in names), \
        f"{what}: the error names no flag or parameter: {last!r}"


@pytest.mark.parametrize("cli", CLIS, ids=[c.name for c in CLIS])
def test_every_flag(cli, worker):
    parser = cli.parser()
    actions, names = _actions(parser), _names(parser)
    assert actions

    @settings(max_examples=cli.examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(argv=cli_argv(cli, actions))
    def fuzz(argv):
        check(cli, names, argv, worker.call(cli.target, argv))

    fuzz()


def test_bases_are_valid(worker):
    """The base commands succeed, so the fuzzed flags are judged on a valid configuration."""
    for cli in CLIS:
        for base in cli.bases:
            argv = [*base, *cli.suffix]
            rep = worker.call(cli.target, argv)
            assert rep["exception"] is None and rep["code"] == 0, (cli.target, argv, rep["err"])


@pytest.mark.parametrize("cli", [c for c in CLIS if c.target.endswith(":parse_args")],
                         ids=lambda c: c.name)
def test_seams_import_nothing_heavy(cli):
    """``parse_args`` of a valid and of an invalid command imports no heavy module (torch, sympy,
    matplotlib, dask): validation comes before them."""
    code = (f"import json, sys\nfrom {cli.module} import parse_args\n"
            "for argv in (json.loads(sys.argv[1]), ['--no-such-flag']):\n"
            "    try:\n        parse_args(argv)\n    except SystemExit:\n        pass\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(list(cli.bases[0]))], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == [], p.stdout


# --- the issue's cases that no other test file checks -------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--width", "0"], "argument --width: must be an integer >= 2, got '0'"),
    (["--n-out", "-3"], "argument --n-out: must be an integer >= 1, got '-3'"),
    (["--last", "-1"], "argument --last: must be an integer >= 0, got '-1'"),
    (["--out", "/nonexistent/x.csv"], "argument --out: folder '/nonexistent' does not exist"),
    (["--device", "foo"], "argument --device: must be cpu, cuda or cuda:N"),
])
def test_gradients_cli_rejects_the_issues_flags(argv, message, capsys):
    from meanfield.cli.gradients import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err.strip().splitlines()[-1], err


def test_depthscale_json_is_strict_and_goes_to_stdout_without_a_path(tmp_path, capsys):
    from meanfield.cli.depthscale import build_parser, main

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    # ReLU at sigma_w2 = 3 has no fixed point and at 2 (keep 1) an infinite xi_c: both not finite
    argv = ["--activation", "relu", "--keep", "1", "--sigma-w2", "1,2,3", "--json"]
    assert main(argv) == 0
    recs = strict(capsys.readouterr().out)
    assert len(recs) == 3 and recs[2]["q_star"] is None and recs[1]["xi_c"] is None
    assert math.isfinite(recs[0]["xi_c"])
    assert main([*argv, str(tmp_path / "r.json")]) == 0
    assert strict((tmp_path / "r.json").read_text()) == recs
    with pytest.raises(SystemExit) as e:
        main(["--json", "/nonexistent/x.json"])
    assert e.value.code == 2
    assert "argument --json: folder '/nonexistent' does not exist" in capsys.readouterr().err
    assert "null" in " ".join(build_parser().format_help().split())


def test_gradients_without_torch_names_the_extra(tmp_path):
    """With torch unimportable (a sitecustomize that blocks it), a simulation request ends in an
    error line naming the [torch] extra, exit 2; theory only still works."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    cmd = [sys.executable, "-m", "meanfield.gradients", "--depth", "3", "--width", "4"]
    p = subprocess.run([*cmd, "--realisations", "2"], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120, check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and "error:" in last and "meanfield[torch]" in last, p.stderr
    assert "Traceback" not in p.stderr
    p = subprocess.run([*cmd, "--realisations", "0"], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120, check=False)
    assert p.returncode == 0 and "exact g_aa" in p.stdout, p.stderr


def test_fit_of_an_all_censored_sweep_is_a_report(tmp_path, capsys):
    """A sweep in which every depth trains (the smoke preset's) has only censored boundaries: the
    fit says which laws cannot be fitted and why, prints no NaN, exit 0."""
    from experiments import fit
    rows = ["sigma_w2,depth,keep,accuracy"] + [f"{sw},{d},{k},0.9" for sw in (1, 2.5)
                                                for d in (2, 4) for k in (1, 0.9)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert fit.main(["--table", str(tmp_path / "t.csv"), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "cannot fit (needs >= 1 interior points, has 0)" in out
    assert "> (every depth with data trains)" in out and not NAN.search(out)


def test_gradients_simulation_larger_than_memory_is_refused():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "import sys; from meanfield.cli.gradients import main\n"
            "sys.exit(main(['--width', '1000000000', '--depth', '2', '--realisations', '2']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120, check=False)
    last = p.stderr.strip().split("\n")[-1]
    assert p.returncode == 2 and last.startswith("error:") and "width" in last, p.stderr[-2000:]
