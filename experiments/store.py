"""A small SQLite results store shared by the experiments (standard library ``sqlite3`` only).

One table per experiment, one row per finished unit of work (e.g. one trained network). A unique
key over the configuration columns makes reruns idempotent: a sweep asks ``is_done(key)`` /
``done_keys()`` before working and ``insert(row)`` afterwards. Each insert (``insert_many``: each
batch of rows, atomically) is committed on its own, so killing a sweep loses at most the work in
progress and never duplicates a row. ``experiments.runner`` does this for every study.

Example::

    from experiments.store import Store
    cols = {"dataset": "TEXT", "depth": "INTEGER", "sigma_w2": "REAL", "seed": "INTEGER",
            "test_acc": "REAL"}
    with Store("results/demo.sqlite", "runs", cols, key=("dataset", "depth", "sigma_w2", "seed")) as st:
        if not st.is_done({"dataset": "mnist", "depth": 10, "sigma_w2": 1.5, "seed": 0}):
            st.insert({"dataset": "mnist", "depth": 10, "sigma_w2": 1.5, "seed": 0, "test_acc": 0.9})
        rows = st.rows()                  # list of dicts, in insertion order

Column types are SQLite's ``TEXT``, ``INTEGER``, ``REAL``, ``BLOB``. REAL key values are rounded to
``KEY_DIGITS`` significant digits on the way in, so ``1.0 + 0.1 * 3`` and ``1.3`` are the same key.
Opening an existing table with a different column spec or key raises ``ValueError`` (no silent
schema drift). Several processes may write to one file (SQLite locking, 60 s busy timeout).
"""
from __future__ import annotations

import math
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Store", "KEY_DIGITS"]

KEY_DIGITS = 12
_TYPES = {"TEXT", "INTEGER", "REAL", "BLOB"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _round_real(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v != 0.0:
        return float(f"{v:.{KEY_DIGITS}g}")
    return v


class Store:
    """SQLite table with a unique configuration key; see the module docstring."""

    def __init__(self, path: str | os.PathLike, table: str, columns: Mapping[str, str],
                 key: Sequence[str]):
        if not _NAME.match(table):
            raise ValueError(f"table must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {table!r}")
        if not columns:
            raise ValueError("columns must name at least one column")
        for name, typ in columns.items():
            if not _NAME.match(name):
                raise ValueError(f"column names must be identifiers, got {name!r}")
            if typ.upper() not in _TYPES:
                raise ValueError(f"column {name!r}: type must be one of {sorted(_TYPES)}, got {typ!r}")
        key = tuple(key)
        if not key or any(k not in columns for k in key):
            raise ValueError(f"key must be a non-empty subset of the columns {list(columns)}, got {key}")
        self.path = Path(path)
        self.table = table
        self.columns = {n: t.upper() for n, t in columns.items()}
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._create_or_check()

    def _create_or_check(self) -> None:
        existing = self._con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name=?", (self.table,)).fetchone()
        if existing is None:
            cols = ", ".join(f"{n} {t}" for n, t in self.columns.items())
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({cols}, "
                              f"UNIQUE ({', '.join(self.key)}))")
            return
        info = self._con.execute(f"PRAGMA table_info({self.table})").fetchall()
        have = {row[1]: row[2].upper() for row in info}
        if have != self.columns:
            raise ValueError(f"table {self.table!r} in {self.path} has columns {have}, "
                             f"but the store was opened with {self.columns}")
        uniq = set()
        for idx in self._con.execute(f"PRAGMA index_list({self.table})").fetchall():
            if idx[2]:  # unique index
                uniq.add(tuple(r[2] for r in self._con.execute(f"PRAGMA index_info({idx[1]})")))
        if self.key not in uniq:
            raise ValueError(f"table {self.table!r} in {self.path} has unique keys {sorted(uniq)}, "
                             f"not {self.key}")

    def key_of(self, key: Mapping[str, Any] | Sequence[Any]) -> tuple:
        """The stored form of a key (a row/mapping or a tuple in key order): a tuple, REALs rounded."""
        if isinstance(key, Mapping):
            missing = [k for k in self.key if k not in key]
            if missing:
                raise ValueError(f"key is missing the columns {missing}")
            key = [key[k] for k in self.key]
        key = tuple(key)
        if len(key) != len(self.key):
            raise ValueError(f"key must have {len(self.key)} values {self.key}, got {len(key)}")
        return tuple(_round_real(v) for v in key)

    def done_keys(self) -> set[tuple]:
        """All stored keys, as tuples in the order of ``self.key``."""
        cur = self._con.execute(f"SELECT {', '.join(self.key)} FROM {self.table}")
        return {tuple(r) for r in cur}

    def is_done(self, key: Mapping[str, Any] | Sequence[Any]) -> bool:
        """Whether a row with this key (mapping or tuple in key order) is stored."""
        kt = self.key_of(key)
        where = " AND ".join(f"{k} IS ?" for k in self.key)
        return self._con.execute(f"SELECT 1 FROM {self.table} WHERE {where} LIMIT 1",
                                 kt).fetchone() is not None

    def insert(self, row: Mapping[str, Any]) -> bool:
        """Insert-or-ignore one row and commit it; True if it was new."""
        unknown = [c for c in row if c not in self.columns]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; the table has {list(self.columns)}")
        self.key_of(row)  # all key columns present
        names = list(row)
        values = [_round_real(row[n]) if n in self.key else row[n] for n in names]
        cur = self._con.execute(
            f"INSERT OR IGNORE INTO {self.table} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))})", values)
        return cur.rowcount == 1

    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert-or-ignore rows in one transaction (all or none); returns how many were new."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            added = sum(self.insert(r) for r in rows)
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")
        return added

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Stored rows as dicts in insertion order, optionally filtered by column equality."""
        unknown = [c for c in where if c not in self.columns]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; the table has {list(self.columns)}")
        sql = f"SELECT {', '.join(self.columns)} FROM {self.table}"
        args = [_round_real(v) if c in self.key else v for c, v in where.items()]
        if where:
            sql += " WHERE " + " AND ".join(f"{c} IS ?" for c in where)
        cur = self._con.execute(sql + " ORDER BY rowid", args)
        return [dict(zip(self.columns, r)) for r in cur]

    def __len__(self) -> int:
        return self._con.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
