"""Argument types shared by every command line: one grid parser, range-checked numbers, and the
noise-layer flags generated from the registry (numpy only: no heavy imports).

Every invalid value is rejected by argparse at parse time: ``error: argument --width: must be an
integer >= 1, got 0`` and exit status 2.
"""
from __future__ import annotations

import argparse
import math
import re

import numpy as np

from ..noise import NoiseLayer, make_noise, noise_class, registered_noises

__all__ = ["MAX_GRID_POINTS", "parse_grid", "grid", "real", "integer", "output_path",
           "creatable_path", "path_problem", "one_of", "device", "cuda_problem", "add_noise_arguments",
           "noise_from_args", "json_safe", "returns_exit_code", "run_main", "HelpFormatter"]

MAX_GRID_POINTS = 1_000_000


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the description's layout and shows each flag's default, except where it is
    None (an absent flag whose meaning its help states, e.g. the noise parameters)."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parse_grid(text: str, *, integer: bool = False) -> np.ndarray:
    """'1.6' -> [1.6]; 'a,b,c' -> [a, b, c]; 'start:stop:step' -> start, start + step, ... <= stop.

    The range includes ``stop`` when it lies on the grid (within 1e-9 of a step) and never goes
    past it: ``1:4:0.8`` gives [1, 1.8, 2.6, 3.4]. Values are rounded to 12 decimals so that
    ``1:2:0.1`` gives 1.3, not 1.3000000000000003.

    Raises
    ------
    ValueError
        For malformed text, a step <= 0, stop < start, non-finite values, non-integers when
        ``integer`` is set, or more than ``MAX_GRID_POINTS`` points.
    """
    kind = "integers" if integer else "numbers"
    try:
        if ":" in text:
            parts = [float(t) for t in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not all(map(math.isfinite, parts)):
                raise ValueError
            if step <= 0:
                raise ValueError(f"the step of start:stop:step {text!r} must be > 0")
            if stop < start:
                raise ValueError(f"the stop of start:stop:step {text!r} must be >= its start")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            if n > MAX_GRID_POINTS:
                raise ValueError(f"{text!r} has {n} points; at most {MAX_GRID_POINTS} are allowed")
            vals = np.round(start + step * np.arange(n), 12)
        else:
            vals = np.array([float(t) for t in text.split(",")])
            if vals.size == 0 or not np.all(np.isfinite(vals)):
                raise ValueError
    except ValueError as err:
        msg = str(err) if str(err) and "could not convert" not in str(err) else \
            f"expected a number, a comma list or start:stop:step of finite {kind}, got {text!r}"
        raise ValueError(msg) from None
    if integer:
        if not np.all(vals == np.round(vals)):
            raise ValueError(f"expected integers, got {text!r}")
        return vals.astype(int)
    return vals


def grid(*, integer=False, lo=-math.inf, lo_open=False):
    """argparse type: :func:`parse_grid` whose values all lie above ``lo``."""
    def parse(text):
        try:
            vals = parse_grid(text, integer=integer)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        bad = vals <= lo if lo_open else vals < lo
        if np.any(bad):
            raise argparse.ArgumentTypeError(
                f"every value must be {'>' if lo_open else '>='} {lo:g}, got {text!r}")
        return vals
    return parse


def real(lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False, what="value"):
    """argparse type: a finite float in the interval; ``what`` names it in the error."""
    if math.isinf(hi):
        valid = f"be {'>' if lo_open else '>='} {lo:g}"
    else:
        valid = f"lie in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be one number, got {text!r}") from None
        if math.isinf(v):
            raise argparse.ArgumentTypeError(f"{what} must be finite, got {text!r}")
        if not ((v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)):  # nan too
            raise argparse.ArgumentTypeError(f"{what} must {valid}, got {text!r}")
        return v
    return parse


def integer(lo=0, hi=None):
    """argparse type: an integer in [lo, hi]."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, got {text!r}")
        return v
    return parse


def one_of(valid, what: str):
    """argparse type: a name among ``valid`` (a registry's keys), else ``unknown <what> 'x'; valid
    names: ...`` (for positional NAME lists, where argparse's ``choices`` would print the list of
    a large registry in the usage line)."""
    def parse(text):
        if text not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid names: {', '.join(valid)}")
        return text
    return parse


def device(*, auto: bool = False):
    """argparse type: a torch device name, ``cpu``, ``cuda`` or ``cuda:N`` (and ``auto`` if
    ``auto``); whether it exists here is :func:`cuda_problem`'s question (it needs torch)."""
    names = ("auto", "cpu", "cuda") if auto else ("cpu", "cuda")

    def parse(text):
        head, _, index = text.partition(":")
        if text in names or (head == "cuda" and index.isdigit()):
            return text
        raise argparse.ArgumentTypeError(f"must be {', '.join(names)} or cuda:N (N a GPU index), "
                                         f"got {text!r}")
    return parse


def cuda_problem(name: str) -> str | None:
    """Why the torch device ``name`` (as :func:`device` accepts it) cannot be used on this machine
    (no CUDA, no GPU of that index), or None. Imports torch for CUDA devices only."""
    if not name.startswith("cuda"):
        return None
    import torch
    if not torch.cuda.is_available():
        return f"device {name!r} requested but CUDA is not available"
    count = torch.cuda.device_count()
    if name != "cuda" and int(name[5:]) >= count:
        return f"device {name!r} requested but this machine has {count} CUDA device(s)"
    return None


def add_noise_arguments(parser: argparse.ArgumentParser, default: str = "dropout"):
    """Add ``--noise`` (the registry's names), ``--keep`` / ``--drop`` (alias ``--rate``) and every
    other parameter of a registered noise layer (``--s``, ``--backward``, ...)."""
    g = parser.add_argument_group(
        "noise layer", f"--noise chooses the layer (default {default}, or the layer whose "
                       "parameters the given flags name); the other flags are its parameters")
    g.add_argument("--noise", choices=registered_noises(), default=None,
                   help="noise layer after each hidden activation")
    kd = g.add_mutually_exclusive_group()
    kd.add_argument("--keep", type=real(0, 1, lo_open=True, what="keep probability rho"),
                    help="keep probability rho in (0, 1] (the papers' 'dropout rate'; default 1)")
    kd.add_argument("--drop", "--rate", dest="drop",
                    type=real(0, 1, hi_open=True, what="drop probability 1 - rho"),
                    help="drop probability 1 - rho in [0, 1) (PyTorch's p, Keras' rate)")
    seen = {"keep"}
    for name in registered_noises():
        for f in noise_class(name).param_fields():
            if f.name in seen:
                continue
            seen.add(f.name)
            meta = f.metadata
            g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                           type=meta["cli_type"], choices=meta["choices"], help=meta["help"])
    parser.set_defaults(_noise_default=default, _noise_params=tuple(sorted(seen - {"keep"})))


def noise_from_args(args, parser: argparse.ArgumentParser) -> NoiseLayer:
    """The noise layer the parsed flags describe; ``parser.error`` (exit 2) naming the flag if not."""
    given = {p: getattr(args, p) for p in args._noise_params if getattr(args, p) is not None}
    has_keep = args.keep is not None or args.drop is not None
    name = args.noise
    if name is None:
        wanted = set(given) | ({"keep"} if has_keep else set())
        fits = [n for n in registered_noises()
                if wanted <= {f.name for f in noise_class(n).param_fields()}]
        name = args._noise_default if not wanted or args._noise_default in fits else \
            (fits[0] if fits else args._noise_default)
    names = {f.name for f in noise_class(name).param_fields()}
    for p in given:
        if p not in names:
            parser.error(f"--{p.replace('_', '-')} is not a parameter of {name} noise "
                         f"(its parameters: {', '.join(sorted(names)) or 'none'})")
    if has_keep and "keep" not in names and (args.keep not in (None, 1.0) or args.drop not in (None, 0.0)):
        parser.error(f"--keep/--drop: {name} noise has no keep probability")
    try:
        return make_noise(name, keep=args.keep if "keep" in names else None,
                          drop=args.drop if "keep" in names else None, **given)
    except ValueError as err:   # the layer refuses a value: name the flag that gave it
        msg = str(err)
        flag = next((p for p in given if re.match(rf"{p}\b", msg)), None)
        parser.error(f"argument --{flag.replace('_', '-')}: {msg}" if flag else
                     f"argument --noise {name}: {msg}")


def json_safe(obj):
    """obj with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


NAME_MAX, PATH_MAX = 255, 4095   # bytes per path component and per path (Linux, macOS: less)


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a path at all (empty, a NUL byte, a component too long), or None."""
    import os
    if not text:
        return "an empty path"
    if "\0" in text:
        return f"{text!r} with a NUL byte"
    if any(len(os.fsencode(part)) > NAME_MAX for part in text.split(os.sep)):
        return f"a path with a component longer than {NAME_MAX} bytes"
    if len(os.fsencode(os.path.abspath(text))) > PATH_MAX:
        return f"a path longer than {PATH_MAX} bytes"
    return None


def output_path(text: str) -> str:
    """argparse type: a file path whose folder exists and is writable ('-' means stdout)."""
    import os
    if text == "-":
        return text
    problem = path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"expected a file path, got {problem}")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist (for {text!r})")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {folder!r} is not writable (for {text!r})")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file path")
    if os.path.exists(text) and not os.access(text, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not writable")
    return text


def creatable_path(kind: str = "file"):
    """argparse type: a ``kind`` ('file' or 'folder') path that exists as that kind, or can be
    created with its missing parent folders (the nearest existing ancestor is a writable folder).

    For the SQLite stores and output folders of the studies, which make their parents on first
    write: a path under a file, in a read-only folder, or of the wrong kind is refused at parse time
    rather than after the work.
    """
    import os

    def parse(text):
        problem = path_problem(text)
        if problem:
            raise argparse.ArgumentTypeError(f"expected a {kind} path, got {problem}")
        path = os.path.abspath(os.path.expanduser(text))
        if os.path.exists(path):
            if (kind == "folder") != os.path.isdir(path):
                raise argparse.ArgumentTypeError(f"{text!r} exists and is not a {kind}")
            if not os.access(path, os.W_OK):
                raise argparse.ArgumentTypeError(f"{text!r} is not writable")
            return text
        parent = os.path.dirname(path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise argparse.ArgumentTypeError(f"{text!r} lies under {parent!r}, which is not a folder")
        if not os.access(parent, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {parent!r} is not writable")
        return text
    return parse


def returns_exit_code(main):
    """Decorator for ``main(argv)``: argparse's SystemExit (2 for a usage error, 0 for --help)
    comes back as the return value, so that callers and tests get a status code either way."""
    import functools

    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except SystemExit as stop:
            return stop.code
    return wrapped


def run_main(main) -> None:
    """``sys.exit(main())`` for a ``__main__`` module; a closed stdout (``... | head``: the reader
    left) ends quietly with status 0 instead of a BrokenPipeError traceback.

    Under ``python -m pkg.mod`` the ``main`` of the module imported as ``pkg.mod`` is run, so that
    the functions it sends to Dask workers are pickled by their module's real name: as attributes
    of ``__main__`` they do not exist on a worker that is another program (``dask worker``).
    """
    import importlib
    import os
    import sys

    spec = getattr(sys.modules.get(main.__module__), "__spec__", None)
    if main.__module__ == "__main__" and spec is not None and spec.name != "__main__":
        main = getattr(importlib.import_module(spec.name), main.__name__)
    try:
        sys.exit(main())
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
