"""Disk cache for the expensive inputs of the figures (simulations, sweeps, phase diagrams).

Each input is one ``.npz`` file named ``<kind>-<hash>.npz``, where the hash covers the kind, the
exact parameters (JSON, sorted keys) and ``VERSION``. Re-rendering loads the files instantly; a
changed parameter changes only the hashes of the inputs it enters, so only those are recomputed.
Files are written to a temporary name and renamed, so an interrupted run never leaves a truncated
entry and resumes with the inputs it had finished. The parameters are stored inside each file
(``__params__``) and checked on reading. An entry damaged from outside (not a zip, truncated, a bad
member, parameters that are not its own) is reported in a warning naming the file, deleted and
recomputed; it never ends the run. ``DEFAULT_DIR`` is relative to the working directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

VERSION = 1
DEFAULT_DIR = Path("figures") / "cache"


def _canonical(params) -> str:
    def norm(v):
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(f"{float(v):.12g}")  # 0.1 + 0.2 and 0.3 are one key
        return v
    return json.dumps(norm(params), sort_keys=True)


class Cache:
    """``cache.get(kind, params, compute)`` -> dict of arrays, computed once per parameter set."""

    def __init__(self, directory=DEFAULT_DIR):
        self.dir = Path(directory)
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, params: dict) -> Path:
        if not kind.replace("_", "").isalnum():
            raise ValueError(f"kind must be alphanumeric with underscores, got {kind!r}")
        h = hashlib.sha256(f"{kind}|{VERSION}|{_canonical(params)}".encode()).hexdigest()[:16]
        return self.dir / f"{kind}-{h}.npz"

    def get(self, kind: str, params: dict, compute: Callable[[], dict]) -> dict:
        p = self.path(kind, params)
        cached = self._load(p, params) if p.is_file() else None
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        data = {k: np.asarray(v) for k, v in compute().items()}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, __params__=np.array(_canonical(params)), **data)
        os.replace(tmp, p)
        return data

    @staticmethod
    def _load(p: Path, params: dict) -> dict | None:
        """The arrays of entry ``p``; None (after a warning naming it, and deleting it) if damaged."""
        try:
            with np.load(p, allow_pickle=False) as z:
                stored = str(z["__params__"])
                data = {k: z[k] for k in z.files if k != "__params__"}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            problem = f"unreadable ({type(e).__name__}: {e})"
        else:
            if stored == _canonical(params):
                return data
            problem = f"stored with other parameters ({stored[:80]!r})"
        warnings.warn(f"figure cache entry {p} is {problem}; deleting it and recomputing", stacklevel=3)
        p.unlink(missing_ok=True)
        return None

    def sqlite_path(self, kind: str, params: dict) -> Path:
        """A per-parameter-set SQLite file (for resumable stores such as training sweeps)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.path(kind, params).with_suffix(".sqlite")
