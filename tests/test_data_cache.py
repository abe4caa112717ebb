"""The figures' data cache (experiments.figures.cache): damaged entries are named, deleted and
recomputed; default output and cache folders are relative to the working directory, also when the
package is imported from an installed location."""
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from experiments.figures.cache import Cache

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"q": 0.5, "layers": [1, 2, 3]}


def _compute(calls):
    def compute():
        calls.append(1)
        return {"x": np.linspace(0.0, 1.0, 200), "n": np.arange(5)}
    return compute


def _flip_array_byte(p: Path):
    """Change one byte inside a stored array (the zip's CRC no longer matches)."""
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.getinfo("x.npy")
    raw[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # past the local header
    p.write_bytes(bytes(raw))


def _other_params(p: Path):
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__params__"] = np.array('{"q": 0.5, "layers": [1, 2')  # bad JSON, not its parameters
    with open(p, "wb") as f:
        np.savez(f, **arrays)


def _no_params(p: Path):
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files if k != "__params__"}
    with open(p, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(b"garbage, not a zip file"), "unreadable"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable"),
    (lambda p: p.write_bytes(b""), "unreadable"),
    (_flip_array_byte, "unreadable"),
    (_other_params, "stored with other parameters"),
    (_no_params, "unreadable"),
])
def test_damaged_entry_is_named_deleted_and_recomputed(tmp_path, damage, problem):
    cache, calls = Cache(tmp_path), []
    first = cache.get("sweep", PARAMS, _compute(calls))
    p = cache.path("sweep", PARAMS)
    damage(p)
    with pytest.warns(UserWarning, match=f"figure cache entry {p} is {problem}.*recomputing"):
        again = cache.get("sweep", PARAMS, _compute(calls))
    assert len(calls) == 2 and cache.misses == 2 and cache.hits == 0
    assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = cache.get("sweep", PARAMS, _compute(calls))  # rewritten: a clean hit
    assert len(calls) == 2 and cache.hits == 1
    np.testing.assert_array_equal(third["x"], first["x"])
    assert [q.name for q in tmp_path.iterdir()] == [p.name]  # no temporary files left


def test_defaults_are_relative_to_the_working_directory_when_installed(tmp_path):
    # a copy of the package in a site-packages-like folder, imported from another directory
    site, work = tmp_path / "site-packages", tmp_path / "work"
    work.mkdir()
    (site / "experiments").mkdir(parents=True)
    for src in [REPO / "experiments" / "__init__.py", *(REPO / "experiments" / "figures").glob("*.py")]:
        dest = site / src.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
    code = ("import inspect, experiments.figures as f\n"
            "print(f.__file__)\n"
            "print(f.DEFAULT_OUT.resolve())\n"
            "print(f.Context().cache.dir.resolve())\n"
            "print(inspect.signature(f.render_all).parameters['out'].default.resolve())\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    package, out, cache, render_out = map(Path, r.stdout.split())
    assert package.is_relative_to(site)
    assert out == render_out == work / "figures"
    assert cache == work / "figures" / "cache"
