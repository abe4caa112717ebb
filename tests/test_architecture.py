"""The layout rules of the code base, checked on the source (issue 10's acceptance):

- no import cycles between modules, and nothing imports upward (meanfield never imports
  experiments or derivations; derivations never imports experiments);
- no private name (``_x``) imported from another module;
- the theory core and its command lines import only numpy and scipy: run with sympy, torch,
  matplotlib, tqdm and dask made unimportable, ``python -m meanfield.depthscale --rate 0.5`` works,
  and the package metadata asks for numpy and scipy only.
"""
import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("meanfield", "derivations", "experiments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, modules):
    """(imported module, imported names, at module level?) for each import statement."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            # "from pkg import submodule" imports the submodule
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in modules]
            for s in subs:
                yield s, [], id(node) in top_level
            yield mod, [n for n in names if f"{mod}.{n}" not in modules], id(node) in top_level


def _graph(top_level_only=True):
    modules = _modules()
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for mod, _, top in _imports(name, path, modules):
            if (top or not top_level_only) and mod in modules and mod != name:
                graph[name].add(mod)
    return graph


def test_no_import_cycles():
    graph = _graph()
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            # a package's __init__ importing its own submodules is the package, not a cycle
            if d.startswith(m + ".") and (ROOT / m.replace(".", "/") / "__init__.py").exists():
                continue
            if state.get(d) == 1:
                cyc = stack[stack.index(d):] + [d]
                if not all(c.startswith(d) or d.startswith(c) for c in cyc):
                    pytest.fail("import cycle: " + " -> ".join(cyc))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_nothing_imports_upward():
    order = {"meanfield": 0, "derivations": 1, "experiments": 2}
    bad = []
    for name, deps in _graph(top_level_only=False).items():
        for d in deps:
            if order[d.split(".")[0]] > order[name.split(".")[0]]:
                bad.append(f"{name} -> {d}")
    assert not bad, bad


def test_no_private_names_imported_across_modules():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        for mod, names, _ in _imports(name, path, modules):
            if mod.split(".")[0] in PACKAGES and mod != name:
                bad += [f"{name}: from {mod} import {n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"sympy", "torch", "matplotlib", "tqdm", "dask", "distributed", "mpmath"}:
            raise ImportError(f"{name} is not installed (blocked by the test)")
sys.meta_path.insert(0, Block())
"""


def test_core_runs_with_numpy_and_scipy_only(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "meanfield.depthscale", "--rate", "0.5"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "drop (rate) = 0.5" in res.stdout
    code = ("import meanfield as mf; r = mf.analyze('tanh', 1.6, 0.05, keep=0.99); "
            "print(round(float(r.xi_c), 2)); "
            "print(mf.gradient_metrics('tanh', 1.4, 0.1, 0.8, depth=3).g_aa.shape)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["12.85", "(3,)"]


def test_install_requires_only_numpy_and_scipy():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(d.split(">")[0].split("=")[0].split("[")[0].strip() for d in meta["dependencies"])
    assert names == ["numpy", "scipy"]
    extras = meta["optional-dependencies"]
    for extra in ("derivations", "torch", "figures", "all", "dev"):
        assert extra in extras
