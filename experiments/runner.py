"""The plan -> execute seam of every study that trains or simulates: tasks in, SQLite rows out.

A study plans a list of :class:`Task` (the store keys of the rows a task produces, a picklable
module-level compute function with its arguments, and a weight = the networks or realisations it
stands for) and hands them to :func:`run` with its :class:`~experiments.store.Store`. ``run`` drops
the tasks whose rows are all stored, executes the rest in this process (``engine="serial"``) or on
Dask (``dask.distributed``), and inserts each task's rows on the driver as soon as the task
finishes, in one committed transaction. Workers never touch SQLite: compute functions return rows
(dicts of plain values and bytes). Killing the driver or a worker therefore loses at most the tasks
in flight, and rerunning the same command resumes (Dask reruns a task whose worker died, up to
``distributed.scheduler.allowed-failures`` times).

Engines (``engine=``, or on the command line the flags of :func:`add_runner_arguments`):

- ``None`` (no flag): the scheduler in ``$MEANFIELD_SCHEDULER`` if set, else ``"local"``.
- ``"local"``: an embedded cluster on this machine: one single-threaded worker process per core
  (``--workers N`` to choose), or with ``cuda=True`` one worker per visible GPU, each with its own
  ``CUDA_VISIBLE_DEVICES``. Started for the sweep and closed after it.
- ``"tcp://HOST:PORT"`` (``--scheduler``): an existing cluster, started e.g. with
  ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786 --nworkers N --nthreads 1``
  on each of the others, or by dask-jobqueue on SLURM/PBS (its ``cluster.scheduler_address``).
  The workers need this repository importable and, for data-driven studies, the data folder at the
  same path.
- ``"serial"`` (``--serial``): this process, one task after another, no Dask (debugging, and the
  reference the tests compare Dask against).
- a ``distributed.Client``: used as it is and left open (tests, notebooks, dask-jobqueue).
- a :class:`Session` (``with session(engine, workers=..., cuda=...) as s: run(..., engine=s)``):
  one cluster for several ``run`` calls (e.g. the rounds of a boundary search), started on the
  first call that has work and closed when the ``with`` block ends.

An engine this module starts (the embedded cluster, or a client of a scheduler) is closed client
first, then cluster, each within ``CLOSE_TIMEOUT``. A worker process slow to exit (a CUDA context
being torn down) is killed by its nanny after 4 s; that kill and the closed connections it leaves
are expected, so their log records (``Worker process still alive ... killing``, ``CommClosedError``)
are dropped while closing, and only then.

A task's rows depend only on its arguments (seeds included), never on the worker or the order, so
every engine stores the same numbers. Torch work is single-threaded on Dask workers
(``OMP_NUM_THREADS=1``); the serial engine uses the driver's torch thread count.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from experiments.store import Store
from meanfield.cli.args import integer

__all__ = ["Task", "Session", "run", "session", "local_cluster", "cores", "scheduler_address",
           "add_runner_arguments", "runner_from_args", "SCHEDULER_ENV", "CONNECT_TIMEOUT",
           "CLOSE_TIMEOUT"]

SCHEDULER_ENV = "MEANFIELD_SCHEDULER"
CONNECT_TIMEOUT = "10s"  # how long to wait for an existing scheduler
CLOSE_TIMEOUT = 60.0     # seconds to close a client, then its cluster (nannies kill after 4 s)
_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*):([0-9]{1,5})$")


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args, **kwargs)`` returns the rows with exactly the keys ``keys``
    (a row dict, or a list of them).

    Parameters
    ----------
    keys : sequence of mappings or tuples
        The store keys of the rows the task produces (a row/mapping, or a tuple in the store's key
        order). The task counts as done when all of them are stored.
    fn : callable
        A module-level function (picklable by reference, so a Dask worker can import it) returning
        a row dict or a list of them. It must not touch the store.
    args : tuple
    kwargs : mapping
    weight : int
        What the task counts for on the progress bar (networks or realisations), >= 0.
    """

    keys: tuple
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weight: int = 1

    def __post_init__(self):
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "args", tuple(self.args))
        if not self.keys:
            raise ValueError("Task.keys must name at least one row")
        if not callable(self.fn):
            raise ValueError(f"Task.fn must be callable, got {self.fn!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 0:
            raise ValueError(f"Task.weight must be an integer >= 0, got {self.weight!r}")

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


def run(tasks: Iterable[Task], store: Store, *, engine: Any = None, workers: int | None = None,
        cuda: bool = False, progress: bool = True, desc: str | None = None,
        unit: str = "network") -> int:
    """Execute every task whose rows are not all in ``store``; insert the rows; count the new ones.

    Parameters
    ----------
    tasks : iterable of Task
        In order of priority (Dask starts them in this order; serial runs them in it).
    store : Store
        Written by this process only, one committed transaction per finished task.
    engine : None, "serial", "local", scheduler address, distributed.Client or Session
        See the module docstring; None means ``$MEANFIELD_SCHEDULER`` if set, else "local".
    workers : int, optional
        Worker processes of the "local" engine (default: one per core, or per GPU with ``cuda``);
        a Session has its own.
    cuda : bool
        "local" engine only: one worker per visible GPU (``workers`` of them, assigned round robin
        when given), each seeing only its own device as ``cuda``; a Session has its own.
    progress : bool
        tqdm bar over the summed task weights, the finished ones counted from the start.
    desc, unit : str
        Label and unit of the bar.

    Returns
    -------
    int
        Rows inserted (0 when everything was stored; no cluster is started then).

    Raises
    ------
    ValueError
        Bad ``engine`` / ``workers``, ``workers`` or ``cuda`` given with a Session, a closed
        Session, or a task whose rows do not carry exactly its keys (a task that could never
        count as done).
    ConnectionError
        No scheduler reachable at the address within ``CONNECT_TIMEOUT``.
    Exception
        The first error a task raises; the other tasks are cancelled, stored rows stay.

    References
    ----------
    Issue 11 section 3 (the distributed engine); module docstring of ``experiments.store``.
    """
    if isinstance(engine, Session):
        if workers is not None or cuda:
            raise ValueError("workers and cuda are the session's: give them to session(), not run()")
        if engine.closed:
            raise ValueError("the session is closed: run inside its with block")
    else:
        engine = _engine(engine, workers)
    tasks = list(tasks)
    for t in tasks:
        if not isinstance(t, Task):
            raise ValueError(f"tasks must be Task objects, got {t!r}")
    done = store.done_keys()
    todo = [t for t in tasks if not all(store.key_of(k) in done for k in t.keys)]
    if not todo:
        return 0
    from tqdm import tqdm

    total = sum(t.weight for t in tasks)
    added = 0
    with tqdm(total=total, initial=total - sum(t.weight for t in todo), unit=unit, desc=desc,
              disable=not progress, dynamic_ncols=True) as bar, \
            _client(engine, workers, cuda) as client:
        finished = _serial(todo) if client is None else _distributed(client, todo)
        try:
            for task, rows in finished:
                added += _insert(store, task, rows)
                bar.update(task.weight)
        finally:
            finished.close()  # on an error: cancel the queued tasks now, not when collected
    return added


def _engine(engine, workers):
    """Validated engine: "serial", "local", a scheduler address or a Client."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 (worker processes), got {workers!r}")
    if engine is None:
        engine = os.environ.get(SCHEDULER_ENV) or "local"
    if (hasattr(engine, "submit") and hasattr(engine, "scheduler_info")  # a distributed.Client
            or engine in ("serial", "local")):
        chosen = engine
    elif isinstance(engine, str):
        chosen = scheduler_address(engine)
    else:
        raise ValueError(f"engine must be None, 'serial', 'local', a scheduler address "
                         f"(tcp://HOST:PORT) or a distributed.Client, got {engine!r}")
    if workers is not None and chosen != "local":
        raise ValueError(f"workers applies to the local engine only, not to {chosen!r}")
    return chosen


def scheduler_address(address: str) -> str:
    """``address`` if it has the form ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.

    Parameters
    ----------
    address : str
        A Dask scheduler address; HOST a name, IPv4 address or bracketed IPv6 address, PORT in
        1..65535.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Any other form (the message gives the expected one).
    """
    m = _ADDRESS.match(address) if isinstance(address, str) else None
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise ValueError(f"scheduler address must look like tcp://HOST:PORT (PORT in 1..65535), "
                         f"got {address!r}")
    return address


def cores() -> int:
    """The CPU cores this process may use: the default worker count of the "local" engine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cuda_devices() -> list[str]:
    """The GPU ids this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    import torch

    n = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in visible.split(",") if s.strip()] if visible else list(map(str, range(n)))
    return ids[:n]


def local_cluster(workers: int | None = None, devices: Sequence[str] | None = None):
    """A Dask cluster on this machine: single-threaded worker processes, one per core or device.

    Parameters
    ----------
    workers : int, optional
        Number of worker processes (default: the cores this process may use, or ``len(devices)``).
    devices : sequence of str, optional
        GPU ids; worker i gets ``CUDA_VISIBLE_DEVICES=devices[i % len(devices)]``.

    Returns
    -------
    distributed.SpecCluster
        Scheduler on 127.0.0.1 (no dashboard), one ``Nanny`` per worker (a killed worker process
        is restarted); close it (context manager) when done.

    Raises
    ------
    ValueError
        ``workers`` < 1, or an empty ``devices``.
    """
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    if devices is not None and not devices:
        raise ValueError("devices must name at least one GPU (no CUDA device is visible)")
    n = workers if workers is not None else (len(devices) if devices else cores())
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"workers must be an integer >= 1, got {n!r}")
    host = "127.0.0.1"
    spec = {}
    for i in range(n):
        env = {"CUDA_VISIBLE_DEVICES": str(devices[i % len(devices)])} if devices else {}
        spec[i] = {"cls": Nanny, "options": {"host": host, "nthreads": 1, "env": env,
                                             "silence_logs": logging.WARNING, "dashboard": False,
                                             "dashboard_address": None}}
    # no dashboard (it needs bokeh); its HTTP routes on a free port, so that sweeps can coexist
    scheduler = {"cls": Scheduler, "options": {"host": host, "dashboard": False,
                                               "dashboard_address": ":0"}}
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 fixes glibc's trim and mmap thresholds, so every
    # large tensor is mapped and faulted in afresh: +40 % CPU in our simulations (measured). The
    # workers keep glibc's adaptive default instead (None unsets it; read when each Nanny starts).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return SpecCluster(workers=spec, scheduler=scheduler, silence_logs=logging.WARNING,
                           name="meanfield")


class Session:
    """An engine shared by several :func:`run` calls; made by :func:`session`.

    Attributes
    ----------
    engine : "serial", "local", a scheduler address or a distributed.Client
        The validated engine.
    closed : bool
        True once the session's ``with`` block has ended.
    """

    def __init__(self, engine, workers: int | None, cuda: bool):
        self.engine = _engine(engine, workers)
        self._workers, self._cuda = workers, cuda
        self._cluster = self._client = None
        self.closed = False

    def client(self):
        """None for the serial engine, else a Client: the given one, or the session's own,
        started (embedded cluster) or connected (scheduler address) on the first call."""
        if self.engine == "serial":
            return None
        if not isinstance(self.engine, str):
            return self.engine
        if self._client is None:
            self._cluster, self._client = _connect(self.engine, self._workers, self._cuda)
        return self._client

    def close(self) -> None:
        """Close the session's own client, then its cluster (a given Client stays open)."""
        self.closed = True
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            with _quiet_shutdown():
                client.close(timeout=CLOSE_TIMEOUT)
                if cluster is not None:
                    cluster.close(timeout=CLOSE_TIMEOUT)


@contextmanager
def session(engine: Any = None, *, workers: int | None = None, cuda: bool = False) -> Iterator[Session]:
    """One engine for several :func:`run` calls: ``with session(...) as s: run(..., engine=s)``.

    Parameters
    ----------
    engine : None, "serial", "local", scheduler address, distributed.Client or Session
        As in :func:`run`; a Session is yielded as it is (its owner closes it).
    workers, cuda :
        As in :func:`run` (the "local" engine's worker processes and GPUs).

    Yields
    ------
    Session
        Pass it to :func:`run` as ``engine``. Its cluster (or scheduler connection) is made on the
        first ``run`` with work, so a session whose runs find everything stored starts nothing;
        it is closed when the block ends, also on an error.

    Raises
    ------
    ValueError
        Bad ``engine`` / ``workers`` (as :func:`run`).
    ConnectionError
        No scheduler reachable at the address (on the first ``run`` with work).
    """
    if isinstance(engine, Session):
        yield engine
        return
    s = Session(engine, workers, cuda)
    try:
        yield s
    finally:
        s.close()


def _connect(engine: str, workers, cuda):
    """(cluster or None, Client) of the "local" engine or of a scheduler address."""
    from distributed import Client

    if engine == "local":
        cluster = local_cluster(workers, _cuda_devices() if cuda else None)
        try:
            return cluster, Client(cluster)
        except BaseException:
            cluster.close(timeout=CLOSE_TIMEOUT)
            raise
    try:
        return None, Client(engine, timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise ConnectionError(f"no Dask scheduler reachable at {engine} within {CONNECT_TIMEOUT} "
                              f"({e}); start one with `dask scheduler`, or drop --scheduler / "
                              f"${SCHEDULER_ENV} to use the embedded cluster") from e


class _ShutdownNoise(logging.Filter):
    """Drops the log records of an orderly shutdown: a nanny killing a worker process that is slow
    to exit, and the closed connections (``CommClosedError``) that leaves behind."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError

        if record.getMessage().startswith("Worker process still alive after"):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, CommClosedError) or "CommClosedError" in record.getMessage())


@contextmanager
def _quiet_shutdown() -> Iterator[None]:
    """``_ShutdownNoise`` on every ``distributed`` logger while the block runs."""
    noise = _ShutdownNoise()
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "distributed" or name.startswith("distributed.")]
    for lg in loggers:
        lg.addFilter(noise)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(noise)


@contextmanager
def _client(engine, workers, cuda) -> Iterator[Any]:
    """None for the serial engine, else a Client (closed afterwards unless given or a session's)."""
    with session(engine, workers=workers, cuda=cuda) as s:
        yield s.client()


def _serial(todo: list[Task]) -> Iterator[tuple[Task, Any]]:
    for task in todo:
        yield task, task()


def _distributed(client, todo: list[Task]) -> Iterator[tuple[Task, Any]]:
    """Submit every task (earlier = higher priority), yield results as they complete."""
    from distributed import as_completed

    n = len(todo)
    futures = {client.submit(t, pure=False, priority=n - i): t for i, t in enumerate(todo)}
    try:
        for fut in as_completed(futures):
            rows = fut.result()  # re-raises the task's error
            task = futures.pop(fut)
            fut.release()
            yield task, rows
    finally:
        if futures:  # an error or an abandoned generator: stop what is still queued
            client.cancel(list(futures))


def _insert(store: Store, task: Task, rows) -> int:
    """Insert a finished task's rows in one transaction, after checking they are its rows."""
    name = getattr(task.fn, "__qualname__", repr(task.fn))
    if isinstance(rows, Mapping):
        rows = [rows]
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError(f"{name} must return a row dict or a list of them, got {type(rows).__name__}")
    want = [store.key_of(k) for k in task.keys]
    got = [store.key_of(r) for r in rows]
    if len(got) != len(want) or set(got) != set(want):
        raise ValueError(f"{name} returned rows with keys {got}, but its task promised {want}")
    return store.insert_many(rows)


MAX_WORKERS = 256   # worker processes one command line may start on this machine


def _address_arg(text: str) -> str:
    try:
        return scheduler_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (from --scheduler or ${SCHEDULER_ENV})") from None


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shared engine flags ``--serial | --workers N | --scheduler ADDRESS`` to ``parser``.

    Parsing validates them (``--workers 0``, a malformed address or a malformed
    ``$MEANFIELD_SCHEDULER`` end in ``error: ...`` and exit code 2); the flags exclude each other,
    and ``--serial`` / ``--workers`` override ``$MEANFIELD_SCHEDULER``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    group = parser.add_argument_group(
        "execution", "default: an embedded Dask cluster, one single-threaded worker per core "
        f"(or the scheduler in ${SCHEDULER_ENV})")
    flags = group.add_mutually_exclusive_group()
    flags.add_argument("--serial", action="store_true",
                       help="run every task in this process, one after another (no Dask)")
    flags.add_argument("--workers", type=integer(1, MAX_WORKERS), metavar="N",
                       help="worker processes of the embedded cluster (default: one per core, "
                            "or one per GPU for CUDA work)")
    flags.add_argument("--scheduler", type=_address_arg, metavar="tcp://HOST:PORT",
                       default=os.environ.get(SCHEDULER_ENV) or None,
                       help=f"use an existing Dask cluster (default ${SCHEDULER_ENV})")


def runner_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``engine`` and ``workers`` keywords of :func:`run` for parsed shared flags.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser given :func:`add_runner_arguments`.

    Returns
    -------
    dict
        ``{"engine": ..., "workers": ...}``.
    """
    if args.serial:
        return {"engine": "serial", "workers": None}
    if args.workers is not None:
        return {"engine": "local", "workers": args.workers}
    return {"engine": args.scheduler or "local", "workers": None}
