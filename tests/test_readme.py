"""Every command in README.md runs as written on a fresh clone (issue 12 section 6).

Which text is a command:

- every line of a fenced ```bash block; the ``$ `` lines of other fenced blocks (the lines after
  one, up to the next ``$ `` line or the fence, are its printed output and must match it); every
  line of an indented (4-space) code block; inline code spans that start with ``python -m`` or
  ``nice -n 10 python -m`` (also in tables). A line ending in a backslash continues on the next.
  The same command text is run once.

How they run:

- with bash, in README order, in a copy of the repository's tracked files (their working-tree
  versions) placed next to a ``shared`` link to the real shared folder, so ``../shared/data``
  resolves as it does next to the developers' checkout. One shell's state carries from command to
  command (exported variables, the working directory), as when a reader types them. The
  environment is the test run's, without ``MEANFIELD_DATA_DIR`` and ``MEANFIELD_SCHEDULER`` (a
  new user has neither; the README's own ``export`` sets the first).
- ``pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest -q`` is what
  ``.ci/run`` runs (it would run this test again): skipped.
- ``pip install . && CMD``: the copy is installed into a throwaway virtual environment
  (``--system-site-packages --without-pip``, the test environment's site-packages on its path)
  with ``pip install --no-deps --no-build-isolation`` (no network, the test's own environment
  unchanged); CMD then runs with that environment first on PATH from a folder outside the copy,
  so the installed package is what runs (checked).
- ``--download`` needs a network: it runs with ``MEANFIELD_DATA_DIR=../shared/data``, where every
  file is present, so nothing is fetched and the checksums are verified.
- Long commands (``LONG`` below, marked here and not in the README: full sweeps and studies, full
  figure runs, the cluster recipe, training on CUDA) run after the others, as written, under
  ``nice``, ``LONG_PARALLEL`` at a time, for ``LONG_SECONDS``; they must then still be running or
  have exited 0, with no traceback and no ``error:`` line, and are killed (they resume by
  design). Without CUDA, ``--device cuda`` is not long: it must end in an ``error:`` line naming
  CUDA, exit status 2.
- The cluster recipe (``dask scheduler``; ``dask worker tcp://HOST:8786 ...``; a sweep with
  ``--scheduler tcp://HOST:8786``) runs as one: HOST, the README's placeholder for the scheduler's
  machine, is ``localhost``; the scheduler and the worker run in the background, the worker must
  register with the scheduler, and the sweep runs as a long command.
- Commands that reproduce the README's reported numbers from the stored rows of a long sweep
  (``NEEDS_RESULTS``: ``experiments.fit --db results/trainability_cpu-large.sqlite``) cannot run on
  a fresh clone, which has no ``results/`` (an hour of training): they must end at once in the
  command line's ``error:`` line naming the missing file, exit status 2, and no traceback.
- Every other command must exit 0 within ``COMMAND_SECONDS``.
- ``>>>`` examples run as doctests; other ```python blocks (the SLURM example: it needs a cluster)
  must compile.
"""
from __future__ import annotations

import doctest
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared"
COMMAND_SECONDS = 180     # the slowest finishing command, the paper plan, takes ~15 s (2.3 GB)
LONG_SECONDS = 8          # enough to parse, import and start work; errors of usage are instant
LONG_PARALLEL = 3
CI_COMMAND = 'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest -q'
CLUSTER = re.compile(r"^dask (scheduler|worker)\b|--scheduler tcp://HOST:")
LONG = [   # (pattern, why the command does not finish within a test)
    (r"--preset cpu\b", "a full CPU sweep or study (minutes to hours)"),
    (r"^nice -n 10 python -m experiments\.figures\s*(#.*)?$", "every figure at full size"),
    (r"experiments\.figures fig2_linear_gradients", "one figure at full size (minutes)"),
    (r"experiments\.figures --quick", "every figure at CI sizes (minutes)"),
    (r"meanfield\.gradients .*--width 2000", "a 2000-wide simulation (30 s, 2.6 GB)"),
    (r"experiments\.(gradient_study|floor_scaling|noise_study|kwinners_study)$", "a full study"),
    (CLUSTER.pattern, "the cluster recipe"),
]
NEEDS_RESULTS = re.compile(r"--db results/trainability_(?!smoke)[\w-]+\.sqlite")
TRACEBACK = re.compile(r"^Traceback \(most recent call last\)|^(\S.*: )?error: ", re.MULTILINE)


@dataclass
class Command:
    text: str
    line: int                              # 1-based line in README.md
    output: list[str] = field(default_factory=list)   # printed output shown after a `$ ` line


def readme_commands(text: str) -> list[Command]:
    """The commands of the README, in order, each once (see the module docstring)."""
    cmds: list[Command] = []
    lines = text.splitlines()
    fence = None            # language of the open fence, or None outside fences
    pending: list[str] = []  # a command continued by backslashes
    start = 0
    out_of = None           # the `$ ` command whose output lines follow

    def add(cmd: str, line: int) -> Command | None:
        cmd = cmd.strip()
        if not cmd or cmd.startswith("#") or any(c.text == cmd for c in cmds):
            return None
        cmds.append(Command(cmd, line))
        return cmds[-1]

    def take(body: str, line: int) -> Command | None:
        nonlocal pending, start
        if not pending:
            start = line
        if body.rstrip().endswith("\\"):
            pending.append(body.rstrip()[:-1].strip())
            return None
        cmd = " ".join(pending + [body.strip()])
        pending = []
        return add(cmd, start)

    for i, raw in enumerate(lines, 1):
        if raw.startswith("```"):
            fence = raw[3:].strip() if fence is None else None
            out_of = None
            continue
        if fence is not None:
            if fence in ("bash", "sh", "shell"):
                take(raw, i)
            elif fence not in ("python", "py") and raw.startswith("$ "):
                out_of = take(raw[2:], i)
            elif out_of is not None:
                out_of.output.append(raw)
            continue
        indented = raw.startswith("    ") and raw.strip()
        if indented and (pending or not lines[i - 2].strip() or lines[i - 2].startswith("    ")):
            take(raw[4:], i)
            continue
        for m in re.finditer(r"`((?:nice -n 10 )?python -m [^`]+)`", raw):
            add(m.group(1), i)
    return cmds


def long_reason(cmd: str) -> str | None:
    return next((why for pat, why in LONG if re.search(pat, cmd)), None)


def _cuda() -> bool:
    code = "import torch; print(torch.cuda.is_available())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


class Shell:
    """bash commands in one working copy whose exported variables and directory carry over."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.state = root.parent / "shell_state.sh"
        self.state.write_text(f"cd {root}\n")
        self.logs = root.parent / "logs"
        self.logs.mkdir()
        self.n = 0

    def _script(self, cmd: str, keep_state: bool) -> str:
        save = (f'__rc=$?; {{ export -p; echo "cd \\"$PWD\\""; }} > {self.state}; exit $__rc'
                if keep_state else "")
        return f"source {self.state}\n{cmd}\n{save}\n"

    def start(self, cmd: str, *, nice: bool = False, env: dict | None = None,
              cwd: Path | None = None, keep_state: bool = False):
        """Popen of ``cmd`` in its own process group; stdout/stderr go to files (``.out``)."""
        self.n += 1
        out = (self.logs / f"{self.n}.out").open("w")
        err = (self.logs / f"{self.n}.err").open("w")
        script = self._script(cmd if cwd is None else f"cd {cwd}\n{cmd}", keep_state)
        argv = (["nice", "-n", "10"] if nice else []) + ["bash", "-c", script]
        with out, err:   # the child holds its own descriptors
            p = subprocess.Popen(argv, stdout=out, stderr=err, env=env or self.env,
                                 start_new_session=True)
        p.out_path, p.err_path = out.name, err.name
        return p

    def run(self, cmd: str, timeout: float = COMMAND_SECONDS, keep_state: bool = True,
            **kw) -> tuple[int | None, str, str]:
        """(exit status or None if killed at the limit, stdout, stderr)."""
        p = self.start(cmd, keep_state=keep_state, **kw)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        stop(p)
        return rc, Path(p.out_path).read_text(), Path(p.err_path).read_text()


def stop(p) -> None:
    """End ``p``'s process group (bash, python, Dask workers): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:   # the whole group has ended
            break
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    p.wait()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the tracked files next to a ``shared`` link, and the shell that runs there."""
    assert (SHARED / "data").is_dir(), f"the shared data folder {SHARED / 'data'} is missing"
    parent = tmp_path_factory.mktemp("readme")
    root = parent / "meanfield"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():   # a tracked file deleted in the working tree is not copied
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    (parent / "shared").symlink_to(SHARED)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEANFIELD_DATA_DIR", "MEANFIELD_SCHEDULER")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return Shell(root, env)


def install_and_run(shell: Shell, rest: str) -> list[str]:
    """``pip install . && rest`` in a throwaway environment (module docstring); failures."""
    venv = shell.root.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                          "--no-deps", "--no-build-isolation", str(shell.root)],
                         capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)
    if pip.returncode:
        return [f"pip install . failed:\n{pip.stderr[-3000:]}"]
    outside = shell.root.parent / "elsewhere"
    outside.mkdir()
    env = dict(shell.env, PATH=f"{venv / 'bin'}{os.pathsep}{shell.env['PATH']}")
    where = 'python -c "import meanfield; print(meanfield.__file__)"'
    problems = []
    for cmd in (rest, where):
        rc, out, err = shell.run(cmd, env=env, cwd=outside, keep_state=False)
        if rc != 0:
            problems.append(f"{cmd!r} after pip install . exited {rc}:\n{err[-3000:]}")
        elif cmd == where and not out.strip().startswith(str(venv)):
            problems.append(f"the installed copy did not run: meanfield came from {out.strip()}")
    return problems


def run_long(shell: Shell, cmds: list[Command]) -> list[str]:
    """Start each long command (the cluster recipe as one), ``LONG_PARALLEL`` at a time; after
    ``LONG_SECONDS`` each must be running or done with exit 0, without a traceback or error."""
    problems: list[str] = []
    units = [[c] for c in cmds if not CLUSTER.search(c.text)]
    cluster = [c for c in cmds if CLUSTER.search(c.text)]
    if cluster:
        units.append(cluster)
    running: list[tuple[float, list, Command]] = []

    def finish(entry):
        t_end, procs, c = entry
        time.sleep(max(0.0, t_end - time.monotonic()))
        p = procs[-1]
        rc = p.poll()
        for q in procs:
            stop(q)
        text = Path(p.out_path).read_text() + Path(p.err_path).read_text()
        bad = TRACEBACK.search(text)
        if (rc not in (None, 0)) or bad:
            problems.append(f"long command (README line {c.line}) {c.text!r}: exit "
                            f"{'running' if rc is None else rc} after {LONG_SECONDS} s:\n{text[-3000:]}")

    for unit in units:
        while len(running) >= LONG_PARALLEL:
            finish(running.pop(0))
        procs = []
        if len(unit) > 1 or CLUSTER.search(unit[0].text):
            procs, main = _start_cluster(shell, unit, problems)
            if main is None:
                continue
        else:
            main = unit[0]
        procs.append(shell.start(main.text.replace("tcp://HOST:", "tcp://localhost:"), nice=True))
        running.append((time.monotonic() + LONG_SECONDS, procs, main))
    for entry in running:
        finish(entry)
    return problems


def _start_cluster(shell: Shell, unit: list[Command], problems: list[str]):
    """Scheduler and worker of the recipe in the background; (their processes, the sweep)."""
    sched = next(c for c in unit if c.text.startswith("dask scheduler"))
    worker = next(c for c in unit if c.text.startswith("dask worker"))
    sweep = next(c for c in unit if c not in (sched, worker))
    with socket.socket() as s:
        if s.connect_ex(("localhost", 8786)) == 0:
            problems.append("the cluster recipe needs port 8786, which is in use on this machine")
            return [], None
    procs = [shell.start(sched.text, nice=True)]

    def log():
        return Path(procs[0].err_path).read_text()
    for marker, cmd in (("Scheduler at", None), ("Register worker", worker.text)):
        if cmd is not None:
            procs.append(shell.start(cmd.replace("tcp://HOST:", "tcp://localhost:"), nice=True))
        deadline = time.monotonic() + 60
        while marker not in log() and time.monotonic() < deadline:
            time.sleep(0.5)
        if marker not in log() or TRACEBACK.search(log()):
            problems.append(f"cluster recipe (README line {sched.line}): no {marker!r} in the "
                            f"scheduler's log:\n{log()[-3000:]}")
            for p in procs:
                stop(p)
            return [], None
    return procs, sweep


def test_commands_are_found_and_classified():
    cmds = readme_commands(README.read_text())
    texts = [c.text for c in cmds]
    assert CI_COMMAND in texts
    assert any(t.startswith("pip install . && ") for t in texts)
    assert any(c.output for c in cmds), "the `$ ` example lost its output"
    assert any("experiments.fit --table" in t for t in texts)
    assert not any("\\" in t for t in texts), "a continued line was not joined"
    for pat, why in LONG:
        assert any(re.search(pat, t) for t in texts), f"no README command is long for {why!r}"
    assert len([t for t in texts if CLUSTER.search(t)]) == 3


def test_readme_commands_run_as_written(workspace):
    shell = workspace
    cmds = readme_commands(README.read_text())
    cuda = _cuda()
    problems, deferred = [], []
    for c in cmds:
        if c.text == CI_COMMAND:
            continue   # .ci/run itself (it runs this test)
        if long_reason(c.text) or ("--device cuda" in c.text and cuda):
            deferred.append(c)
            continue
        if c.text.startswith("pip install . && "):
            problems += [f"README line {c.line}: {p}" for p in
                         install_and_run(shell, c.text.removeprefix("pip install . && "))]
            continue
        env = None
        if "--download" in c.text:
            env = dict(shell.env, MEANFIELD_DATA_DIR=str(SHARED / "data"))
        t0 = time.monotonic()
        rc, out, err = shell.run(c.text, env=env)
        took = time.monotonic() - t0
        where = f"README line {c.line}: {c.text!r}"
        if NEEDS_RESULTS.search(c.text):
            if rc != 2 or not err.startswith("error: --db must name an existing file"):
                problems.append(f"{where} on a fresh clone: exit {rc}, not the missing --db "
                                f"error:\n{err[-3000:]}")
            continue
        if "--device cuda" in c.text:   # and no CUDA here
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if rc != 2 or "error:" not in last or "CUDA" not in last or "Traceback" in err:
                problems.append(f"{where} without CUDA: exit {rc}, last line {last!r}")
            continue
        if rc != 0:
            problems.append(f"{where} exited {'(killed at the limit)' if rc is None else rc} "
                            f"after {took:.0f} s:\n{err[-3000:]}")
        elif c.output and out.rstrip().splitlines() != [ln.rstrip() for ln in c.output]:
            problems.append(f"{where} printed\n{out}\ninstead of the README's\n"
                            + "\n".join(c.output))
    problems += run_long(shell, deferred)
    assert not problems, "\n\n".join(problems)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def test_readme_doctests():
    """Each ```python block with ``>>>`` is one doctest (its own namespace)."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report, examples = [], 0
    for line, block in python_blocks(README.read_text()):
        if ">>>" in block:
            test = doctest.DocTestParser().get_doctest(block, {}, f"README.md:{line}", str(README),
                                                       line - 1)
            examples += len(test.examples)
            runner.run(test, out=report.append)
    assert examples >= 10
    assert runner.failures == 0, "".join(report)


def test_readme_python_blocks_compile():
    plain = [b for _, b in python_blocks(README.read_text()) if ">>>" not in b]
    assert plain, "the SLURM example is gone"
    for b in plain:
        compile(b, "README.md", "exec")
